/*
 * up_proc.h - one child process of `switchyard up`: fork + exec with its stdout and stderr in a
 * log file, its own process group, and a parent-death signal so that it dies with `up` even when
 * `up` is SIGKILLed; signalling, reaping and reporting how it ended.
 *
 * Child state machine (up_proc_state):
 *
 *   up_proc_spawn ──▶ STARTING ──up_proc_set_ready──▶ READY
 *                        │                              │
 *                        └──────up_proc_terminate───────┴──▶ STOPPING
 *   STARTING / READY / STOPPING ──up_proc_poll sees it exit──▶ EXITED
 *
 *   | from               | to       | performed by        | invariant in the target state     |
 *   | (none)             | STARTING | up_proc_spawn       | pid > 0, not reaped               |
 *   | STARTING           | READY    | up_proc_set_ready   | the caller saw it serve           |
 *   | STARTING, READY    | STOPPING | up_proc_terminate   | SIGTERM sent, term_ms set         |
 *   | any but EXITED     | EXITED   | up_proc_poll        | reaped: pid no longer ours        |
 *
 * up_proc_kill (SIGKILL to the whole process group) is allowed in every state but EXITED and
 * leaves the state as it is (the exit is seen by up_proc_poll).
 * Does not: decide when a child is ready or what to do when it dies (up_main.c does), or handle
 * signals itself (the caller blocks SIGCHLD and calls up_proc_poll).
 * Thread-safety: one thread (the supervisor's). The parent-death signal is tied to the thread
 * that forks, so spawn from the thread that lives as long as the supervisor (the main thread).
 */
#ifndef SY_UP_PROC_H
#define SY_UP_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "common/buf.h"

typedef struct up_proc up_proc_t;

typedef enum up_proc_state {
    UPP_STARTING = 0,
    UPP_READY = 1,
    UPP_STOPPING = 2,
    UPP_EXITED = 3,
} up_proc_state_t;

/* Starts argv[0] with argv (NULL-terminated, borrowed; copied before return) as child `name`
 * (borrowed, copied), stdin from /dev/null, stdout and stderr appended to log_path (created or
 * truncated; the command line is written on its first line). The child gets its own process
 * group, PR_SET_PDEATHSIG(SIGTERM), the signal mask `child_mask` (NULL: empty) and default
 * dispositions of SIGPIPE, SIGINT and SIGTERM. Returns ST_OK with *out (owned: free with
 * up_proc_destroy) in STARTING, or -errno with err set (log file, fork). An exec failure shows
 * as an exit with status 127 and a line in the log. */
int up_proc_spawn(const char *name, char *const argv[], const char *log_path,
                  const sigset_t *child_mask, up_proc_t **out, char *err, size_t errlen);

/* Reaps the child if it has exited (waitpid WNOHANG). Returns true when it went to EXITED by this
 * call. now_ms is the caller's monotonic clock (kept as the exit time). */
bool up_proc_poll(up_proc_t *p, uint64_t now_ms);

/* STARTING -> READY. */
void up_proc_set_ready(up_proc_t *p);

/* Sends SIGTERM to the child (STARTING or READY -> STOPPING; no-op in STOPPING or EXITED) and
 * records now_ms as the start of its grace period. */
void up_proc_terminate(up_proc_t *p, uint64_t now_ms);

/* Sends SIGKILL to the child's process group (anything it started dies with it). No-op when
 * EXITED. */
void up_proc_kill(up_proc_t *p);

up_proc_state_t up_proc_state(const up_proc_t *p);
const char *up_proc_state_name(up_proc_state_t s);
const char *up_proc_name(const up_proc_t *p); /* borrowed, lives as long as p */
const char *up_proc_log(const up_proc_t *p);  /* borrowed */
pid_t up_proc_pid(const up_proc_t *p);
uint64_t up_proc_term_ms(const up_proc_t *p); /* when SIGTERM was sent (STOPPING) */
bool up_proc_killed(const up_proc_t *p);      /* up_proc_kill was called */

/* True when the child has EXITED with status 0, or died of the SIGTERM up_proc_terminate sent
 * (a child still starting may not handle it yet), and was never SIGKILLed. */
bool up_proc_stopped_ok(const up_proc_t *p);
/* Describes how the child ended ("exited with status 1", "killed by signal 9 (Killed)") or that
 * it is still running, into buf[cap]. */
void up_proc_describe(const up_proc_t *p, char *buf, size_t cap);

/* Writes the last max_lines lines of the file at path (at most its last 16 KiB) to f, each line
 * prefixed with indent (borrowed). Returns the lines written, or -errno when the file cannot be
 * read. */
int up_log_tail(const char *path, size_t max_lines, const char *indent, FILE *f);

/* Appends arg to b as one POSIX shell word: as it is when it holds only safe characters
 * ([A-Za-z0-9-_./:=,@+%]), else in single quotes. Allocation failures leave b truncated. */
void up_shell_word(sy_buf_t *b, const char *arg);

/* Kills (SIGKILL to the process group) and reaps a child that has not exited, then frees p.
 * Blocks until the child is reaped. NULL ok. */
void up_proc_destroy(up_proc_t *p);

#endif
