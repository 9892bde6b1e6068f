/*
 * ev.c - the event loop: epoll fd events (level-triggered, or edge-triggered with EV_EDGE),
 * one-shot timers in a binary min-heap, a before-sleep hook, eventfd-based async wakeups and a
 * thread-safe stop.
 *
 * One iteration: before-sleep hook -> epoll_wait (timeout = nearest timer) -> refresh the cached
 * clock -> dispatch fd events -> fire due timers.
 *
 * fd handlers live in a table indexed by fd. Each registration gets a 32-bit generation that is
 * packed with the fd into epoll's data word; an event of the current batch is dispatched only if
 * the table entry is still active with the same generation. That makes ev_fd_del (and del + re-add
 * of the same fd number) safe from inside any callback of the batch.
 *
 * Timers live in a slot array; the heap orders slot indices by (deadline, sequence) and every slot
 * remembers its heap position, so cancel is O(log n). A timer id is (generation << 32 | slot + 1):
 * ids of fired or cancelled timers never match a reused slot. Timers added while timers are being
 * fired wait for the next iteration, so a 0 ms timer re-adding itself cannot starve fd events.
 *
 * Does not: own watched fds, support repeating timers (re-add from the callback), or nest ev_run.
 * Thread-safety: one loop per thread; ev_stop() and ev_async_send() may be called from any thread.
 */
#include "common/ev.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define EV_MAX_EVENTS 256

typedef struct ev_fdh {
    ev_fd_cb cb;
    void *udata;
    uint32_t mask;
    uint32_t gen;
    bool active;
} ev_fdh_t;

typedef struct ev_timer_slot {
    uint64_t deadline_ms;
    uint64_t seq; /* insertion order: ties on deadline fire FIFO */
    ev_timer_cb cb;
    void *udata;
    size_t heap_pos; /* index in loop->heap while pending */
    uint32_t gen;
    bool pending;
    uint32_t next_free; /* free-list link (slot index + 1; 0 = end) */
} ev_timer_slot_t;

struct ev_loop {
    int epfd;
    int wake_fd; /* internal eventfd: ev_stop() pokes it */
    atomic_bool stop;
    bool running;
    uint64_t now_ms;

    ev_fdh_t *fds; /* indexed by fd */
    size_t fds_cap;
    uint32_t next_gen;

    ev_timer_slot_t *slots;
    size_t slots_len, slots_cap;
    uint32_t free_head; /* slot index + 1; 0 = none */
    uint32_t *heap;     /* slot indices */
    size_t heap_len, heap_cap;
    uint64_t next_seq;

    ev_hook_cb before_sleep;
    void *before_sleep_udata;

    struct epoll_event events[EV_MAX_EVENTS];
};

struct ev_async {
    ev_loop_t *loop;
    int fd;
    ev_async_cb cb;
    void *udata;
};

/* ---- clocks ---- */

uint64_t sy_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t sy_mono_ms(void)
{
    return sy_mono_ns() / 1000000ull;
}

double sy_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t ev_now_ms(ev_loop_t *loop)
{
    return loop->now_ms;
}

/* ---- fd table ---- */

static void wake_drain(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof v);
    (void)n; /* EAGAIN when already drained is fine */
}

static int fds_grow(ev_loop_t *loop, int fd)
{
    if ((size_t)fd < loop->fds_cap)
        return ST_OK;
    size_t cap = loop->fds_cap ? loop->fds_cap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    ev_fdh_t *p = sy_realloc(loop->fds, cap * sizeof *p);
    if (!p)
        return ST_NOMEM;
    memset(p + loop->fds_cap, 0, (cap - loop->fds_cap) * sizeof *p);
    loop->fds = p;
    loop->fds_cap = cap;
    return ST_OK;
}

static uint32_t to_epoll(uint32_t mask)
{
    return ((mask & EV_READ) ? (uint32_t)EPOLLIN : 0u) |
           ((mask & EV_WRITE) ? (uint32_t)EPOLLOUT : 0u) |
           ((mask & EV_EDGE) ? (uint32_t)EPOLLET : 0u);
}

int ev_fd_add(ev_loop_t *loop, int fd, uint32_t mask, ev_fd_cb cb, void *udata)
{
    if (fd < 0 || !cb)
        return ST_INVAL;
    if (fds_grow(loop, fd) != ST_OK)
        return ST_NOMEM;
    ev_fdh_t *h = &loop->fds[fd];
    if (h->active)
        return ST_EXISTS;
    uint32_t gen = ++loop->next_gen;
    struct epoll_event ee = {.events = to_epoll(mask),
                             .data.u64 = ((uint64_t)gen << 32) | (uint32_t)fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ee) != 0)
        return -errno;
    h->cb = cb;
    h->udata = udata;
    h->mask = mask & (EV_READ | EV_WRITE);
    h->gen = gen;
    h->active = true;
    return ST_OK;
}

int ev_fd_mod(ev_loop_t *loop, int fd, uint32_t mask)
{
    if (fd < 0 || (size_t)fd >= loop->fds_cap || !loop->fds[fd].active)
        return ST_NOTFOUND;
    ev_fdh_t *h = &loop->fds[fd];
    mask &= EV_READ | EV_WRITE;
    if (mask == h->mask)
        return ST_OK;
    struct epoll_event ee = {.events = to_epoll(mask),
                             .data.u64 = ((uint64_t)h->gen << 32) | (uint32_t)fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ee) != 0)
        return -errno;
    h->mask = mask;
    return ST_OK;
}

int ev_fd_del(ev_loop_t *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->fds_cap || !loop->fds[fd].active)
        return ST_NOTFOUND;
    ev_fdh_t *h = &loop->fds[fd];
    /* ENOENT/EBADF (fd already closed by the caller) still unregisters our side */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    h->active = false;
    h->cb = NULL;
    h->udata = NULL;
    h->mask = 0;
    return ST_OK;
}

/* ---- timers ---- */

static bool timer_less(const ev_loop_t *loop, uint32_t a, uint32_t b)
{
    const ev_timer_slot_t *x = &loop->slots[a], *y = &loop->slots[b];
    return x->deadline_ms < y->deadline_ms || (x->deadline_ms == y->deadline_ms && x->seq < y->seq);
}

static void heap_set(ev_loop_t *loop, size_t pos, uint32_t slot)
{
    loop->heap[pos] = slot;
    loop->slots[slot].heap_pos = pos;
}

static void heap_up(ev_loop_t *loop, size_t pos)
{
    uint32_t s = loop->heap[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!timer_less(loop, s, loop->heap[parent]))
            break;
        heap_set(loop, pos, loop->heap[parent]);
        pos = parent;
    }
    heap_set(loop, pos, s);
}

static void heap_down(ev_loop_t *loop, size_t pos)
{
    uint32_t s = loop->heap[pos];
    for (;;) {
        size_t l = 2 * pos + 1, best = pos;
        uint32_t best_slot = s;
        if (l < loop->heap_len && timer_less(loop, loop->heap[l], best_slot)) {
            best = l;
            best_slot = loop->heap[l];
        }
        if (l + 1 < loop->heap_len && timer_less(loop, loop->heap[l + 1], best_slot)) {
            best = l + 1;
            best_slot = loop->heap[l + 1];
        }
        if (best == pos)
            break;
        heap_set(loop, pos, best_slot);
        pos = best;
    }
    heap_set(loop, pos, s);
}

/* Removes the heap entry at pos and returns its slot to the free list. */
static void heap_remove(ev_loop_t *loop, size_t pos)
{
    uint32_t slot = loop->heap[pos];
    SY_ASSERT(loop->slots[slot].pending && loop->slots[slot].heap_pos == pos);
    loop->heap_len--;
    if (pos < loop->heap_len) {
        heap_set(loop, pos, loop->heap[loop->heap_len]);
        heap_down(loop, pos);
        heap_up(loop, pos);
    }
    ev_timer_slot_t *t = &loop->slots[slot];
    t->pending = false;
    t->cb = NULL;
    t->udata = NULL;
    t->gen++;
    t->next_free = loop->free_head;
    loop->free_head = slot + 1;
}

uint64_t ev_timer_add(ev_loop_t *loop, uint64_t ms, ev_timer_cb cb, void *udata)
{
    if (!cb)
        return 0;
    uint32_t slot;
    if (loop->free_head) {
        slot = loop->free_head - 1;
        loop->free_head = loop->slots[slot].next_free;
    } else {
        if (loop->slots_len >= UINT32_MAX - 1)
            return 0;
        if (loop->slots_len == loop->slots_cap) {
            size_t cap = loop->slots_cap ? loop->slots_cap * 2 : 64;
            ev_timer_slot_t *p = sy_realloc(loop->slots, cap * sizeof *p);
            if (!p)
                return 0;
            loop->slots = p;
            loop->slots_cap = cap;
        }
        slot = (uint32_t)loop->slots_len++;
        memset(&loop->slots[slot], 0, sizeof loop->slots[slot]);
        loop->slots[slot].gen = 1;
    }
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        uint32_t *p = sy_realloc(loop->heap, cap * sizeof *p);
        if (!p) {
            loop->slots[slot].next_free = loop->free_head;
            loop->free_head = slot + 1;
            return 0;
        }
        loop->heap = p;
        loop->heap_cap = cap;
    }
    ev_timer_slot_t *t = &loop->slots[slot];
    /* like libuv: relative to the cached iteration time, so a 0 ms timer added by an fd callback
     * fires later in the same iteration */
    uint64_t now = loop->running ? loop->now_ms : (loop->now_ms = sy_mono_ms());
    t->deadline_ms = ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
    t->seq = loop->next_seq++;
    t->cb = cb;
    t->udata = udata;
    t->pending = true;
    loop->heap[loop->heap_len] = slot;
    t->heap_pos = loop->heap_len++;
    heap_up(loop, t->heap_pos);
    return ((uint64_t)t->gen << 32) | (uint64_t)(slot + 1);
}

int ev_timer_cancel(ev_loop_t *loop, uint64_t timer_id)
{
    uint32_t slot1 = (uint32_t)(timer_id & 0xffffffffu);
    uint32_t gen = (uint32_t)(timer_id >> 32);
    if (slot1 == 0 || slot1 > loop->slots_len)
        return ST_NOTFOUND;
    ev_timer_slot_t *t = &loop->slots[slot1 - 1];
    if (!t->pending || t->gen != gen)
        return ST_NOTFOUND;
    heap_remove(loop, t->heap_pos);
    return ST_OK;
}

static void timers_fire(ev_loop_t *loop)
{
    uint64_t seq_limit = loop->next_seq; /* timers added from here on wait an iteration */
    while (loop->heap_len > 0 && !atomic_load_explicit(&loop->stop, memory_order_relaxed)) {
        uint32_t slot = loop->heap[0];
        ev_timer_slot_t *t = &loop->slots[slot];
        if (t->deadline_ms > loop->now_ms || t->seq >= seq_limit)
            break;
        uint64_t id = ((uint64_t)t->gen << 32) | (uint64_t)(slot + 1);
        ev_timer_cb cb = t->cb;
        void *udata = t->udata;
        heap_remove(loop, 0);
        cb(loop, id, udata);
    }
}

static int timers_timeout_ms(const ev_loop_t *loop)
{
    if (loop->heap_len == 0)
        return -1;
    uint64_t deadline = loop->slots[loop->heap[0]].deadline_ms;
    uint64_t now = sy_mono_ms();
    if (deadline <= now)
        return 0;
    uint64_t d = deadline - now;
    return d > 60000 ? 60000 : (int)d;
}

/* ---- loop ---- */

ev_loop_t *ev_loop_create(void)
{
    ev_loop_t *loop = sy_calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->epfd = -1;
    loop->wake_fd = -1;
    atomic_init(&loop->stop, false);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail;
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_fd < 0)
        goto fail;
    if (ev_fd_add(loop, loop->wake_fd, EV_READ, wake_drain, NULL) != ST_OK)
        goto fail;
    loop->now_ms = sy_mono_ms();
    return loop;
fail:
    ev_loop_destroy(loop);
    return NULL;
}

void ev_loop_destroy(ev_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    sy_free(loop->fds);
    sy_free(loop->slots);
    sy_free(loop->heap);
    sy_free(loop);
}

void ev_set_before_sleep(ev_loop_t *loop, ev_hook_cb cb, void *udata)
{
    loop->before_sleep = cb;
    loop->before_sleep_udata = udata;
}

void ev_stop(ev_loop_t *loop)
{
    atomic_store(&loop->stop, true);
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof one);
    (void)n; /* EAGAIN only if the counter is saturated: the loop is awake anyway */
}

static void dispatch(ev_loop_t *loop, const struct epoll_event *e)
{
    int fd = (int)(uint32_t)(e->data.u64 & 0xffffffffu);
    uint32_t gen = (uint32_t)(e->data.u64 >> 32);
    if ((size_t)fd >= loop->fds_cap)
        return;
    ev_fdh_t *h = &loop->fds[fd];
    if (!h->active || h->gen != gen)
        return; /* deleted (or replaced) by an earlier callback of this batch */
    uint32_t ev = 0;
    if (e->events & EPOLLIN)
        ev |= EV_READ;
    if (e->events & EPOLLOUT)
        ev |= EV_WRITE;
    if (e->events & (EPOLLERR | EPOLLHUP))
        ev |= EV_ERROR | (h->mask & EV_READ); /* let the reader see EOF / the error */
    if (ev)
        h->cb(loop, fd, ev, h->udata);
}

int ev_run(ev_loop_t *loop)
{
    SY_ASSERT(!loop->running);
    loop->running = true;
    loop->now_ms = sy_mono_ms();
    int rc = ST_OK;
    while (!atomic_load(&loop->stop)) {
        if (loop->before_sleep)
            loop->before_sleep(loop, loop->before_sleep_udata);
        if (atomic_load(&loop->stop))
            break;
        int n = epoll_wait(loop->epfd, loop->events, EV_MAX_EVENTS, timers_timeout_ms(loop));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            sy_error("ev.epoll_wait", "err=\"%s\"", strerror(errno));
            break;
        }
        loop->now_ms = sy_mono_ms();
        for (int i = 0; i < n; i++)
            dispatch(loop, &loop->events[i]);
        timers_fire(loop);
    }
    atomic_store(&loop->stop, false);
    loop->running = false;
    return rc;
}

/* ---- async ---- */

static void async_on_read(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    ev_async_t *a = udata;
    uint64_t v;
    if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        return; /* spurious: nothing pending */
    a->cb(loop, a->udata);
}

ev_async_t *ev_async_create(ev_loop_t *loop, ev_async_cb cb, void *udata)
{
    if (!cb)
        return NULL;
    ev_async_t *a = sy_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->loop = loop;
    a->cb = cb;
    a->udata = udata;
    a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->fd < 0)
        goto fail;
    if (ev_fd_add(loop, a->fd, EV_READ, async_on_read, a) != ST_OK)
        goto fail;
    return a;
fail:
    if (a->fd >= 0)
        close(a->fd);
    sy_free(a);
    return NULL;
}

void ev_async_send(ev_async_t *a)
{
    uint64_t one = 1;
    ssize_t n = write(a->fd, &one, sizeof one);
    (void)n; /* EAGAIN: counter saturated, a wakeup is pending anyway */
}

void ev_async_destroy(ev_async_t *a)
{
    if (!a)
        return;
    ev_fd_del(a->loop, a->fd);
    close(a->fd);
    sy_free(a);
}
