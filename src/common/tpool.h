/*
 * tpool.h - a persistent thread pool for data-parallel kernels: tpool_run(pool, n, fn, ctx)
 * runs fn(ctx, task, thread) for every task in [0, n) on the pool's workers and the calling
 * thread, and returns when all are done. Workers spin briefly after a run and then sleep on a
 * futex, so back-to-back runs (one per matmul in a forward pass) cost no syscalls.
 *
 * Does not: queue work asynchronously, allocate per run, or nest (a task that calls tpool_run
 * on any pool gets ST_STATE; two threads running the same pool at once: the second gets
 * ST_STATE).
 * Thread-safety: tpool_run may be called from any one thread at a time per pool; create and
 * destroy from the owner only.
 */
#ifndef SY_TPOOL_H
#define SY_TPOOL_H

#include <stddef.h>

typedef struct tpool tpool_t;

/* fn is called once per task index; thread is 0 for the calling thread and 1..n_threads-1 for
 * workers (use it to pick per-thread scratch). */
typedef void (*tpool_fn)(void *ctx, size_t task, int thread);

/* Number of online CPUs (at least 1). */
int tpool_default_threads(void);

/* Starts n_threads - 1 workers (n_threads <= 0: tpool_default_threads()). Returns ST_OK with
 * *out owned (free with tpool_destroy), ST_NOMEM or -errno. */
int tpool_create(int n_threads, tpool_t **out);
/* Stops and joins the workers. NULL ok. Must not be called while a run is in progress. */
void tpool_destroy(tpool_t *pool);
/* Threads including the caller. */
int tpool_threads(const tpool_t *pool);

/* Runs all n_tasks (< 2^32) tasks; returns ST_OK when every task has returned, or ST_STATE
 * (nothing run) when called from inside a task or while another thread is running this pool.
 * Allocation-free. Each task's writes are visible to the caller on return. */
int tpool_run(tpool_t *pool, size_t n_tasks, tpool_fn fn, void *ctx);

#endif
