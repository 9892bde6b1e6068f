/*
 * engine_main.h - `switchyard engine`: command-line parsing, wiring of the engine modules,
 * signal handling (SIGTERM/SIGINT drain) and the event loop.
 * Thread-safety: process entry; runs on the main thread.
 */
#ifndef SY_ENGINE_MAIN_H
#define SY_ENGINE_MAIN_H

/* argv[0] is "engine". Returns the process exit code. */
int engine_main(int argc, char **argv);

#endif
