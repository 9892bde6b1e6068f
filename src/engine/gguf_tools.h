/*
 * gguf_tools.h - the `switchyard gguf-synth` and `switchyard gguf-info` subcommands: write a
 * synthetic llama-architecture GGUF with random weights (for benchmarks and tests), and print a
 * GGUF file's header, metadata and tensor table.
 * Does not: run models.
 * Thread-safety: process entry points; main thread only.
 */
#ifndef SY_GGUF_TOOLS_H
#define SY_GGUF_TOOLS_H

/* argv[0] is "gguf-synth". Returns the exit code: 0, 1 (failure), 2 (usage). */
int gguf_synth_main(int argc, char **argv);
/* argv[0] is "gguf-info". Returns 0, 1 (the file is refused: the reader's message is printed) or
 * 2 (usage). */
int gguf_info_main(int argc, char **argv);

#endif
