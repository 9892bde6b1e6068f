/*
 * test_tpool.c - thread pool: every task runs exactly once (1, 2 and more threads, task counts
 * below, equal to and far above the thread count, zero tasks), thread indexes in range, many
 * back-to-back runs (workers spinning) and runs after the workers went to sleep, nested and
 * concurrent runs refused with ST_STATE, default thread count, destroy(NULL). No timing asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/status.h"
#include "common/tpool.h"

typedef struct count_ctx {
    _Atomic int *hits;
    int n_threads;
    _Atomic int bad_thread;
    _Atomic int seen_thread[8];
} count_ctx_t;

static void on_count(void *arg, size_t task, int thread)
{
    count_ctx_t *c = arg;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads)
        atomic_store(&c->bad_thread, 1);
    else if (thread < 8)
        atomic_store(&c->seen_thread[thread], 1);
}

static void run_counts(tpool_t *p, size_t n_tasks, int rounds)
{
    count_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n_threads = tpool_threads(p);
    c.hits = calloc(n_tasks + 1, sizeof *c.hits);
    assert_non_null(c.hits);
    for (int r = 0; r < rounds; r++)
        assert_int_equal(tpool_run(p, n_tasks, on_count, &c), ST_OK);
    for (size_t i = 0; i < n_tasks; i++)
        assert_int_equal(atomic_load(&c.hits[i]), rounds);
    assert_int_equal(atomic_load(&c.hits[n_tasks]), 0);
    assert_int_equal(atomic_load(&c.bad_thread), 0);
    free(c.hits);
}

static void test_exactly_once(void **state)
{
    static const int threads[] = {1, 2, 3, 5};
    static const size_t tasks[] = {0, 1, 2, 3, 7, 64, 1000};
    uint64_t live = sy_alloc_live_bytes();
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        tpool_t *p = NULL;
        assert_int_equal(tpool_create(threads[i], &p), ST_OK);
        assert_int_equal(tpool_threads(p), threads[i]);
        for (size_t k = 0; k < sizeof tasks / sizeof tasks[0]; k++)
            run_counts(p, tasks[k], 3);
        tpool_destroy(p);
    }
    assert_int_equal(sy_alloc_live_bytes(), live);
}

static void test_many_runs(void **state)
{
    tpool_t *p = NULL;
    assert_int_equal(tpool_create(2, &p), ST_OK);
    run_counts(p, 5, 20000); /* back to back: workers keep spinning between runs */
    tpool_destroy(p);
}

static void test_after_sleep(void **state)
{
    tpool_t *p = NULL;
    assert_int_equal(tpool_create(3, &p), ST_OK);
    for (int i = 0; i < 3; i++) {
        usleep(20000); /* long enough for the workers to stop spinning and sleep */
        run_counts(p, 17, 1);
    }
    tpool_destroy(p);
}

/* Sum of squares with per-task output slots: results visible to the caller after run. */
typedef struct sum_ctx {
    const uint32_t *in;
    uint64_t out[64];
} sum_ctx_t;

static void on_sum(void *arg, size_t task, int thread)
{
    sum_ctx_t *c = arg;
    uint64_t s = 0;
    for (size_t i = task * 1000; i < (task + 1) * 1000; i++)
        s += (uint64_t)c->in[i] * c->in[i];
    c->out[task] = s;
}

static void test_results_visible(void **state)
{
    uint32_t *in = malloc(64000 * sizeof *in);
    assert_non_null(in);
    uint64_t want = 0;
    for (uint32_t i = 0; i < 64000; i++) {
        in[i] = i * 2654435761u >> 12;
        want += (uint64_t)in[i] * in[i];
    }
    tpool_t *p = NULL;
    assert_int_equal(tpool_create(0, &p), ST_OK); /* default: online CPUs */
    assert_int_equal(tpool_threads(p), tpool_default_threads());
    for (int r = 0; r < 50; r++) {
        sum_ctx_t c = {.in = in};
        assert_int_equal(tpool_run(p, 64, on_sum, &c), ST_OK);
        uint64_t got = 0;
        for (int i = 0; i < 64; i++)
            got += c.out[i];
        assert_true(got == want);
    }
    tpool_destroy(p);
    free(in);
}

typedef struct nest_ctx {
    tpool_t *pool;
    _Atomic int refused;
    _Atomic int ran;
} nest_ctx_t;

static void on_nothing(void *arg, size_t task, int thread)
{
    (void)arg;
}

static void on_nest(void *arg, size_t task, int thread)
{
    nest_ctx_t *c = arg;
    atomic_fetch_add(&c->ran, 1);
    if (tpool_run(c->pool, 4, on_nothing, NULL) == ST_STATE)
        atomic_fetch_add(&c->refused, 1);
}

static void test_nested_refused(void **state)
{
    tpool_t *p = NULL, *q = NULL;
    assert_int_equal(tpool_create(2, &p), ST_OK);
    assert_int_equal(tpool_create(2, &q), ST_OK);
    nest_ctx_t c = {.pool = p};
    assert_int_equal(tpool_run(p, 6, on_nest, &c), ST_OK);
    assert_int_equal(atomic_load(&c.ran), 6);
    assert_int_equal(atomic_load(&c.refused), 6);
    /* a task may not run another pool either */
    nest_ctx_t d = {.pool = q};
    assert_int_equal(tpool_run(p, 3, on_nest, &d), ST_OK);
    assert_int_equal(atomic_load(&d.refused), 3);
    /* the pool still works afterwards */
    run_counts(p, 9, 2);
    tpool_destroy(q);
    tpool_destroy(p);
}

/* A second caller while a run is in progress is refused. */
typedef struct conc_ctx {
    tpool_t *pool;
    _Atomic int in_run;
    _Atomic int release;
    int other_rc;
} conc_ctx_t;

static void on_block(void *arg, size_t task, int thread)
{
    conc_ctx_t *c = arg;
    atomic_store(&c->in_run, 1);
    while (!atomic_load(&c->release))
        usleep(100);
}

static void *other_caller(void *arg)
{
    conc_ctx_t *c = arg;
    while (!atomic_load(&c->in_run))
        usleep(100);
    c->other_rc = tpool_run(c->pool, 2, on_nothing, NULL);
    atomic_store(&c->release, 1);
    return NULL;
}

static void test_concurrent_refused(void **state)
{
    tpool_t *p = NULL;
    assert_int_equal(tpool_create(2, &p), ST_OK);
    conc_ctx_t c = {.pool = p};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_caller, &c), 0);
    assert_int_equal(tpool_run(p, 1, on_block, &c), ST_OK);
    pthread_join(t, NULL);
    assert_int_equal(c.other_rc, ST_STATE);
    run_counts(p, 4, 1);
    tpool_destroy(p);
}

static void test_misc(void **state)
{
    assert_true(tpool_default_threads() >= 1);
    tpool_destroy(NULL);
    sy_alloc_fail_after(1);
    tpool_t *p = (tpool_t *)0x1;
    assert_int_equal(tpool_create(2, &p), ST_NOMEM);
    assert_null(p);
    sy_alloc_fail_after(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once),   cmocka_unit_test(test_many_runs),
        cmocka_unit_test(test_after_sleep),    cmocka_unit_test(test_results_visible),
        cmocka_unit_test(test_nested_refused), cmocka_unit_test(test_concurrent_refused),
        cmocka_unit_test(test_misc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
