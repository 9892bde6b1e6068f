/*
 * test_ev.c - event loop: fd events on pipes (read, write, error/EOF, delete from inside a batch),
 * timer order / FIFO ties / cancel, 0 ms timers not starving fds, before-sleep hook, async wakeups
 * and ev_stop from other threads, stop-before-run, clocks. Every run is bounded by a guard timer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/status.h"

#define GUARD_MS 5000

static bool g_guard_fired;

static void on_guard(ev_loop_t *loop, uint64_t id, void *udata)
{
    g_guard_fired = true;
    ev_stop(loop);
}

/* Runs the loop with a guard timer so a broken test fails instead of hanging. */
static void run_bounded(ev_loop_t *loop)
{
    g_guard_fired = false;
    uint64_t guard = ev_timer_add(loop, GUARD_MS, on_guard, NULL);
    assert_int_not_equal(guard, 0);
    assert_int_equal(ev_run(loop), ST_OK);
    ev_timer_cancel(loop, guard);
    assert_false(g_guard_fired);
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

typedef struct fdrec {
    int calls;
    uint32_t last_events;
    char buf[16];
    ssize_t got;
} fdrec_t;

static void on_readable_stop(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    fdrec_t *r = udata;
    r->calls++;
    r->last_events = events;
    r->got = read(fd, r->buf, sizeof r->buf);
    ev_stop(loop);
}

static void test_fd_read(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    assert_non_null(loop);
    int p[2];
    make_pipe(p);
    fdrec_t r = {0};
    assert_int_equal(ev_fd_add(loop, p[0], EV_READ, on_readable_stop, &r), ST_OK);
    assert_int_equal(ev_fd_add(loop, p[0], EV_READ, on_readable_stop, &r), ST_EXISTS);
    assert_int_equal(write(p[1], "hi", 2), 2);
    run_bounded(loop);
    assert_int_equal(r.calls, 1);
    assert_true(r.last_events & EV_READ);
    assert_int_equal(r.got, 2);
    assert_memory_equal(r.buf, "hi", 2);

    /* EOF: closing the writer reports EV_READ (and EV_ERROR for HUP); read returns 0 */
    close(p[1]);
    run_bounded(loop);
    assert_int_equal(r.calls, 2);
    assert_true(r.last_events & EV_READ);
    assert_int_equal(r.got, 0);

    assert_int_equal(ev_fd_del(loop, p[0]), ST_OK);
    assert_int_equal(ev_fd_del(loop, p[0]), ST_NOTFOUND);
    assert_int_equal(ev_fd_mod(loop, p[0], EV_READ), ST_NOTFOUND);
    assert_int_equal(ev_fd_mod(loop, 100000, EV_READ), ST_NOTFOUND);
    assert_int_equal(ev_fd_add(loop, -1, EV_READ, on_readable_stop, &r), ST_INVAL);
    close(p[0]);
    ev_loop_destroy(loop);
    ev_loop_destroy(NULL);
}

static void on_writable(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    fdrec_t *r = udata;
    r->calls++;
    r->last_events = events;
    /* switch to read interest only: the (empty) pipe is never readable from this end */
    ev_fd_mod(loop, fd, 0);
    ev_stop(loop);
}

static void test_fd_write_and_mod(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    int p[2];
    make_pipe(p);
    fdrec_t r = {0};
    assert_int_equal(ev_fd_add(loop, p[1], EV_WRITE, on_writable, &r), ST_OK);
    run_bounded(loop);
    assert_int_equal(r.calls, 1);
    assert_true(r.last_events & EV_WRITE);
    ev_fd_del(loop, p[1]);
    close(p[0]);
    close(p[1]);
    ev_loop_destroy(loop);
}

typedef struct delrec {
    int fds[2];
    int calls;
} delrec_t;

/* Both fds are readable in the same batch; whichever runs first deletes both. */
static void on_del_both(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    delrec_t *d = udata;
    d->calls++;
    assert_int_equal(ev_fd_del(loop, d->fds[0]), ST_OK);
    assert_int_equal(ev_fd_del(loop, d->fds[1]), ST_OK);
}

static void on_stop_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    ev_stop(loop);
}

static void test_fd_del_inside_batch(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    delrec_t d = {{a[0], b[0]}, 0};
    ev_fd_add(loop, a[0], EV_READ, on_del_both, &d);
    ev_fd_add(loop, b[0], EV_READ, on_del_both, &d);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    ev_timer_add(loop, 30, on_stop_timer, NULL);
    run_bounded(loop);
    assert_int_equal(d.calls, 1);
    /* del + re-add the same fd number inside the loop works */
    fdrec_t r = {0};
    assert_int_equal(ev_fd_add(loop, a[0], EV_READ, on_readable_stop, &r), ST_OK);
    run_bounded(loop);
    assert_int_equal(r.calls, 1);
    ev_fd_del(loop, a[0]);
    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
    }
    ev_loop_destroy(loop);
}

typedef struct order {
    int seq[16];
    int n;
    int stop_at;
} order_t;

typedef struct tctx {
    order_t *o;
    int tag;
} tctx_t;

static void on_order(ev_loop_t *loop, uint64_t id, void *udata)
{
    tctx_t *t = udata;
    t->o->seq[t->o->n++] = t->tag;
    if (t->o->n == t->o->stop_at)
        ev_stop(loop);
}

static void test_timer_order_and_cancel(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    order_t o = {.stop_at = 5};
    tctx_t t[7] = {{&o, 30}, {&o, 10}, {&o, 20}, {&o, 0}, {&o, 11}, {&o, 12}, {&o, 99}};
    uint64_t ids[7];
    ids[0] = ev_timer_add(loop, 30, on_order, &t[0]);
    ids[1] = ev_timer_add(loop, 10, on_order, &t[1]);
    ids[2] = ev_timer_add(loop, 20, on_order, &t[2]);
    ids[3] = ev_timer_add(loop, 0, on_order, &t[3]);
    ids[4] = ev_timer_add(loop, 15, on_order, &t[4]);
    ids[5] = ev_timer_add(loop, 15, on_order, &t[5]); /* same deadline: FIFO after t[4] */
    ids[6] = ev_timer_add(loop, 25, on_order, &t[6]);
    for (int i = 0; i < 7; i++)
        assert_int_not_equal(ids[i], 0);
    assert_int_equal(ev_timer_cancel(loop, ids[4]), ST_OK);
    assert_int_equal(ev_timer_cancel(loop, ids[4]), ST_NOTFOUND);
    assert_int_equal(ev_timer_cancel(loop, ids[6]), ST_OK);
    assert_int_equal(ev_timer_cancel(loop, 0), ST_NOTFOUND);
    assert_int_equal(ev_timer_cancel(loop, 12345678), ST_NOTFOUND);
    uint64_t t0 = sy_mono_ms();
    run_bounded(loop);
    uint64_t elapsed = sy_mono_ms() - t0;
    assert_int_equal(o.n, 5);
    const int want[] = {0, 10, 12, 20, 30};
    assert_memory_equal(o.seq, want, sizeof want);
    assert_true(elapsed >= 29);
    assert_int_equal(ev_timer_cancel(loop, ids[0]), ST_NOTFOUND); /* already fired */
    /* a reused slot does not accept the stale id */
    uint64_t again = ev_timer_add(loop, 1000, on_order, &t[0]);
    assert_int_not_equal(again, ids[0]);
    assert_int_equal(ev_timer_cancel(loop, ids[0]), ST_NOTFOUND);
    assert_int_equal(ev_timer_cancel(loop, again), ST_OK);
    ev_loop_destroy(loop);
}

/* Heap stress: many timers with pseudo-random delays, a third cancelled; fire order is sorted. */
typedef struct stress {
    uint64_t last_deadline;
    int fired, expect;
    bool sorted;
    uint64_t deadlines[300];
} stress_t;

static stress_t g_stress;

static void on_stress(ev_loop_t *loop, uint64_t id, void *udata)
{
    uint64_t d = g_stress.deadlines[(uintptr_t)udata];
    if (d < g_stress.last_deadline)
        g_stress.sorted = false;
    g_stress.last_deadline = d;
    if (++g_stress.fired == g_stress.expect)
        ev_stop(loop);
}

static void test_timer_heap_stress(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    memset(&g_stress, 0, sizeof g_stress);
    g_stress.sorted = true;
    uint64_t ids[300];
    uint32_t x = 12345;
    for (uintptr_t i = 0; i < 300; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t ms = (x >> 16) % 40;
        ids[i] = ev_timer_add(loop, ms, on_stress, (void *)i);
        /* outside ev_run an add reads the clock, so compare absolute deadlines */
        g_stress.deadlines[i] = ev_now_ms(loop) + ms;
    }
    for (int i = 0; i < 300; i += 3)
        assert_int_equal(ev_timer_cancel(loop, ids[i]), ST_OK);
    g_stress.expect = 200;
    run_bounded(loop);
    assert_int_equal(g_stress.fired, 200);
    assert_true(g_stress.sorted);
    ev_loop_destroy(loop);
}

/* A 0 ms timer that re-adds itself must not starve fd events. */
typedef struct starve {
    int spins;
    bool fd_seen;
} starve_t;

static void on_spin(ev_loop_t *loop, uint64_t id, void *udata)
{
    starve_t *s = udata;
    if (++s->spins < 100000 && !s->fd_seen)
        ev_timer_add(loop, 0, on_spin, s);
}

static void on_fd_seen(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    starve_t *s = udata;
    s->fd_seen = true;
    char c;
    ssize_t n = read(fd, &c, 1);
    (void)n;
    ev_stop(loop);
}

static void test_zero_timer_no_starvation(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    int p[2];
    make_pipe(p);
    starve_t s = {0};
    ev_timer_add(loop, 0, on_spin, &s);
    ev_fd_add(loop, p[0], EV_READ, on_fd_seen, &s);
    assert_int_equal(write(p[1], "x", 1), 1);
    run_bounded(loop);
    assert_true(s.fd_seen);
    assert_true(s.spins < 10);
    ev_fd_del(loop, p[0]);
    close(p[0]);
    close(p[1]);
    ev_loop_destroy(loop);
}

static int g_hooks;

static void on_hook(ev_loop_t *loop, void *udata)
{
    g_hooks++;
    assert_ptr_equal(udata, &g_hooks);
    if (g_hooks == 3)
        ev_stop(loop);
    else
        ev_timer_add(loop, 1, on_stop_timer, NULL); /* wake up; stop is re-requested below */
}

static void on_restart(ev_loop_t *loop, uint64_t id, void *udata)
{
}

static void test_before_sleep(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    g_hooks = 0;
    ev_set_before_sleep(loop, on_hook, &g_hooks);
    /* iterations: hook#1 -> timer stop -> run returns; we re-run until 3 hooks */
    for (int i = 0; i < 3 && g_hooks < 3; i++)
        run_bounded(loop);
    assert_int_equal(g_hooks, 3);
    ev_set_before_sleep(loop, NULL, NULL);
    ev_timer_add(loop, 1, on_restart, NULL);
    ev_timer_add(loop, 2, on_stop_timer, NULL);
    run_bounded(loop);
    assert_int_equal(g_hooks, 3);
    ev_loop_destroy(loop);
}

typedef struct async_ctx {
    ev_async_t *a;
    atomic_int sent_all;
    int calls;
} async_ctx_t;

static void on_async(ev_loop_t *loop, void *udata)
{
    async_ctx_t *c = udata;
    c->calls++;
    if (atomic_load(&c->sent_all))
        ev_stop(loop);
}

static void *async_sender(void *arg)
{
    async_ctx_t *c = arg;
    for (int i = 0; i < 1000; i++)
        ev_async_send(c->a);
    atomic_store(&c->sent_all, 1);
    ev_async_send(c->a);
    return NULL;
}

static void test_async_from_thread(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    async_ctx_t c = {0};
    c.a = ev_async_create(loop, on_async, &c);
    assert_non_null(c.a);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, async_sender, &c), 0);
    run_bounded(loop);
    pthread_join(t, NULL);
    assert_true(c.calls >= 1);
    assert_true(c.calls <= 1001); /* coalesced */
    ev_async_destroy(c.a);
    ev_async_destroy(NULL);
    ev_loop_destroy(loop);
}

static void *stopper(void *arg)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ev_stop(arg);
    return NULL;
}

static void test_stop_from_thread(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    pthread_t t;
    uint64_t t0 = sy_mono_ms();
    assert_int_equal(pthread_create(&t, NULL, stopper, loop), 0);
    run_bounded(loop); /* nothing else to do: only the stop wakes it */
    pthread_join(t, NULL);
    assert_true(sy_mono_ms() - t0 < GUARD_MS);

    /* stop before run: the next run returns at once, and the flag does not stick */
    ev_stop(loop);
    run_bounded(loop);
    order_t o = {.stop_at = 1};
    tctx_t tc = {&o, 7};
    ev_timer_add(loop, 5, on_order, &tc);
    run_bounded(loop);
    assert_int_equal(o.n, 1);
    ev_loop_destroy(loop);
}

typedef struct clockrec {
    uint64_t a, b;
} clockrec_t;

static void on_clock(ev_loop_t *loop, uint64_t id, void *udata)
{
    clockrec_t *c = udata;
    c->a = ev_now_ms(loop);
    struct timespec ts = {0, 3 * 1000 * 1000};
    nanosleep(&ts, NULL);
    c->b = ev_now_ms(loop); /* cached: unchanged within the iteration */
    ev_stop(loop);
}

static void test_clocks(void **state)
{
    uint64_t n1 = sy_mono_ns(), n2 = sy_mono_ns();
    assert_true(n2 >= n1);
    assert_true(sy_wall_s() > 1.6e9);
    ev_loop_t *loop = ev_loop_create();
    clockrec_t c = {0};
    ev_timer_add(loop, 1, on_clock, &c);
    run_bounded(loop);
    assert_int_equal(c.a, c.b);
    assert_true(sy_mono_ms() >= c.a);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_read),
        cmocka_unit_test(test_fd_write_and_mod),
        cmocka_unit_test(test_fd_del_inside_batch),
        cmocka_unit_test(test_timer_order_and_cancel),
        cmocka_unit_test(test_timer_heap_stress),
        cmocka_unit_test(test_zero_timer_no_starvation),
        cmocka_unit_test(test_before_sleep),
        cmocka_unit_test(test_async_from_thread),
        cmocka_unit_test(test_stop_from_thread),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
