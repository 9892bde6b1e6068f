/*
 * up_main.h - `switchyard up [cluster.yaml]`: starts a local cluster on 127.0.0.1 (N engines,
 * simulated by default, and the gateway in front of them), waits until every child is ready,
 * prints where to send requests, supervises the children until SIGINT/SIGTERM, then stops the
 * gateway first and the engines after it. The cluster file format is in up_config.h.
 * Thread-safety: process entry; main thread only (children are forked from it).
 */
#ifndef SY_UP_MAIN_H
#define SY_UP_MAIN_H

/* argv[0] is "up". Returns the process exit code: 0 after a clean stop on a signal, 1 when a
 * child failed to start, died while running or did not stop cleanly, 2 for a bad command line or
 * cluster file. */
int up_main(int argc, char **argv);

#endif
