/*
 * ev.h - a tiny ae-style event loop: fd events over epoll, one-shot timers (min-heap),
 * a before-sleep hook, and a thread-safe async wakeup (eventfd).
 *
 * Does not: own the fds it watches (callers close them), or run callbacks concurrently.
 * Thread-safety: one loop belongs to one thread. Only ev_async_send() and ev_stop() may be
 * called from other threads.
 */
#ifndef SY_EV_H
#define SY_EV_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ev_loop ev_loop_t;
typedef struct ev_async ev_async_t;

#define EV_READ 0x1u
#define EV_WRITE 0x2u
#define EV_ERROR 0x4u /* reported only: EPOLLERR/EPOLLHUP */
/* Registration flag: edge-triggered (EPOLLET). The owner must then read until EAGAIN (or a short
 * read of a stream socket), or come back to the fd itself. Why: with level-triggered epoll every
 * fd returned by a wait is queued again at the tail, so a connection that was active in the last
 * batch and got new bytes since is served ahead of fds that became ready earlier; under load that
 * reorders requests across whole batches and widens the latency distribution. Edge-triggered fds
 * are queued in the order their bytes arrive. */
#define EV_EDGE 0x8u

typedef void (*ev_fd_cb)(ev_loop_t *loop, int fd, uint32_t events, void *udata);
typedef void (*ev_timer_cb)(ev_loop_t *loop, uint64_t timer_id, void *udata);
typedef void (*ev_hook_cb)(ev_loop_t *loop, void *udata);
typedef void (*ev_async_cb)(ev_loop_t *loop, void *udata);

/* Returns an owned loop (free with ev_loop_destroy) or NULL. */
ev_loop_t *ev_loop_create(void);
/* Accepts NULL. Does not close watched fds; pending timers are dropped without firing. */
void ev_loop_destroy(ev_loop_t *loop);

/* Watches fd for mask (EV_READ|EV_WRITE, plus EV_EDGE for edge-triggered; level-triggered
 * otherwise). ST_OK, ST_EXISTS or -errno.
 * udata is borrowed. */
int ev_fd_add(ev_loop_t *loop, int fd, uint32_t mask, ev_fd_cb cb, void *udata);
/* Changes the mask of a watched fd. ST_OK, ST_NOTFOUND or -errno. */
int ev_fd_mod(ev_loop_t *loop, int fd, uint32_t mask);
/* Stops watching fd (safe to call from inside its own callback). ST_OK or ST_NOTFOUND. */
int ev_fd_del(ev_loop_t *loop, int fd);

/* Schedules cb after ms milliseconds (one-shot). Returns a nonzero id, or 0 on ST_NOMEM. */
uint64_t ev_timer_add(ev_loop_t *loop, uint64_t ms, ev_timer_cb cb, void *udata);
/* Cancels a pending timer; ST_OK or ST_NOTFOUND (already fired / cancelled). */
int ev_timer_cancel(ev_loop_t *loop, uint64_t timer_id);

/* Hook called once per iteration before the loop blocks (one per loop; the application's). */
void ev_set_before_sleep(ev_loop_t *loop, ev_hook_cb cb, void *udata);

/* Runs until ev_stop(). Returns ST_OK or -errno on an epoll failure. */
int ev_run(ev_loop_t *loop);
/* Makes ev_run return after the current iteration. Thread-safe. */
void ev_stop(ev_loop_t *loop);

/* Cached monotonic time of the current iteration, in ms / ns. */
uint64_t ev_now_ms(ev_loop_t *loop);
/* Fresh monotonic clock readings (not cached). */
uint64_t sy_mono_ns(void);
uint64_t sy_mono_ms(void);
/* Wall clock in seconds since the epoch (double). */
double sy_wall_s(void);

/* Creates an async wakeup: cb runs on the loop thread after any ev_async_send() (sends are
 * coalesced). Returns owned handle (free with ev_async_destroy on the loop thread) or NULL. */
ev_async_t *ev_async_create(ev_loop_t *loop, ev_async_cb cb, void *udata);
/* Thread-safe, async-signal-safe. */
void ev_async_send(ev_async_t *a);
void ev_async_destroy(ev_async_t *a);

#endif
