/*
 * tpool.c - persistent worker threads for tpool_run (see tpool.h).
 *
 * Design: one 64-bit word holds the current run as (n_tasks << 32 | next). Any thread claims
 * the next task with a CAS that succeeds only while next < n_tasks, then reads fn/ctx (stable
 * until every task of that run has finished, because the run cannot complete before the claimed
 * task does). A worker that wakes late simply finds nothing to claim, and a CAS that succeeds
 * on a later run with an equal word claims a task that really is unclaimed in that run, so no
 * per-run handshake with sleeping workers is needed. The caller counts finished tasks (n_done)
 * and spins until all are done; it claims tasks too, so a run finishes even if no worker wakes.
 * Workers wait for `gen` (bumped per run) to change: spinning first, then FUTEX_WAIT; the caller
 * only issues FUTEX_WAKE when a worker is asleep (n_sleeping, seq_cst on both sides).
 * Thread-safety: see tpool.h.
 */
#include "common/tpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"

#define TPOOL_SPIN 20000 /* pause iterations before a worker sleeps (tens of microseconds) */

typedef struct tpool_worker {
    struct tpool *pool;
    int index;
    pthread_t thread;
    int started;
} tpool_worker_t;

struct tpool {
    int n_threads;
    tpool_worker_t *workers; /* n_threads - 1 */
    _Atomic uint32_t gen;    /* futex word, bumped per run and at stop */
    _Atomic int stop;
    _Atomic int n_sleeping;
    _Atomic int busy;
    _Atomic uint64_t state; /* n_tasks << 32 | next task */
    _Atomic uint64_t n_done;
    tpool_fn fn; /* current run; written before state is published */
    void *ctx;
};

static _Thread_local int tl_in_task;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Claims and runs tasks of the current run until none is left. */
static void pool_work(tpool_t *p, int thread)
{
    for (;;) {
        uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
        for (;;) {
            if ((uint32_t)s >= (uint32_t)(s >> 32))
                return;
            if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                      memory_order_acquire))
                break;
        }
        tl_in_task = 1;
        p->fn(p->ctx, (size_t)(uint32_t)s, thread);
        tl_in_task = 0;
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg)
{
    tpool_worker_t *w = arg;
    tpool_t *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = atomic_load(&p->gen);
        for (int i = 0; g == seen && i < TPOOL_SPIN; i++) {
            cpu_relax();
            g = atomic_load(&p->gen);
        }
        if (g == seen) {
            atomic_fetch_add(&p->n_sleeping, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
                futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->n_sleeping, 1);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        pool_work(p, w->index);
    }
    return NULL;
}

int tpool_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 1024 ? 1024 : (int)n);
}

int tpool_create(int n_threads, tpool_t **out)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = tpool_default_threads();
    tpool_t *p = sy_calloc(1, sizeof *p);
    if (!p)
        return ST_NOMEM;
    p->n_threads = n_threads;
    if (n_threads > 1) {
        p->workers = sy_calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            sy_free(p);
            return ST_NOMEM;
        }
    }
    for (int i = 0; i < n_threads - 1; i++) {
        tpool_worker_t *w = &p->workers[i];
        w->pool = p;
        w->index = i + 1;
        int rc = sy_thread_start(&w->thread, worker_main, w);
        if (rc != ST_OK) {
            tpool_destroy(p);
            return rc;
        }
        w->started = 1;
    }
    *out = p;
    return ST_OK;
}

void tpool_destroy(tpool_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 0; i < p->n_threads - 1; i++)
        if (p->workers[i].started)
            pthread_join(p->workers[i].thread, NULL);
    sy_free(p->workers);
    sy_free(p);
}

int tpool_threads(const tpool_t *p)
{
    return p->n_threads;
}

int tpool_run(tpool_t *p, size_t n_tasks, tpool_fn fn, void *ctx)
{
    if (tl_in_task)
        return ST_STATE;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&p->busy, &idle, 1))
        return ST_STATE;
    if (n_tasks == 0) {
        atomic_store_explicit(&p->busy, 0, memory_order_release);
        return ST_OK;
    }
    SY_ASSERT(n_tasks < UINT32_MAX);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->state, (uint64_t)n_tasks << 32, memory_order_release);
    if (p->n_threads > 1) {
        atomic_fetch_add(&p->gen, 1);
        if (atomic_load(&p->n_sleeping) > 0)
            futex_wake_all(&p->gen);
    }
    pool_work(p, 0);
    for (unsigned spins = 0;
         atomic_load_explicit(&p->n_done, memory_order_acquire) < (uint64_t)n_tasks; spins++) {
        if (spins < 100000)
            cpu_relax();
        else
            sched_yield();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
    return ST_OK;
}
