/*
 * sb_main.h - `switchyard bench`: a streaming load generator for OpenAI-compatible servers
 * (flags, workload and runner wiring, reports), and `switchyard bench plot` (SVG charts of
 * several results files). Usage in README "switchyard bench".
 * Thread-safety: process entry (one thread).
 */
#ifndef SY_SB_MAIN_H
#define SY_SB_MAIN_H

/* argv[0] is "bench". Exit status: 0 the run completed (whatever its error count); 1 no request
 * succeeded at all (server unreachable, every request failed) or an output file could not be
 * written; 2 usage or configuration error; 130 interrupted (results so far are still written). */
int bench_main(int argc, char **argv);

#endif
