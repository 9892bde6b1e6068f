/*
 * http_client.c - HTTP/1.1 upstream client on the event loop (see http_client.h).
 *
 * Upstream connection state machine (uconn_t.state):
 *
 *    conn_open (non-blocking connect)          pool hit in http_call_start
 *        |                                  +--------------------------------- IDLE <-+
 *        v            connected (plain)     v        head parsed (1xx skipped)    ^    |
 *    CONNECTING ------------------------> REQUEST ------------------------> BODY   |    |
 *        | connected (TLS)                  ^ handshake done
 *        +------------------> HANDSHAKE ----+
 *        |                                  |  head without body (HEAD/204/   |    |    |
 *        |                                  |  304/CL 0), keep-alive          |    |    |
 *        |                                  +---------------------------------+----+    |
 *        |                                           body complete, keep-alive  |       |
 *        |                                                                      +-------+
 *        v
 *   any state -- error / EOF / timeout / cancel / not reusable / idle expiry or peer close
 *                while idle / upstream destroyed --> CLOSED --> reaped (deferred)
 *
 * Transitions (from -> to: trigger [function]):
 *   (new)      -> CONNECTING : call started, no idle connection       [conn_open]
 *   CONNECTING -> REQUEST    : SO_ERROR == 0 after EV_WRITE (plain)   [conn_connected]
 *   CONNECTING -> HANDSHAKE  : SO_ERROR == 0 after EV_WRITE (TLS)     [conn_connected]
 *   HANDSHAKE  -> REQUEST    : TLS handshake complete, peer verified  [conn_handshake]
 *   IDLE       -> REQUEST    : call started, LIFO pool pop            [http_call_start]
 *   REQUEST    -> BODY       : final (>= 200) response head parsed    [conn_process]
 *   REQUEST    -> IDLE       : bodiless response done, reusable       [conn_complete]
 *   BODY       -> IDLE       : body complete, reusable                [conn_complete]
 *   REQUEST/BODY -> CLOSED   : response done, connection not reusable [conn_complete]
 *   CONNECTING/HANDSHAKE/REQUEST/BODY -> CLOSED : I/O error, EOF, bad bytes, certificate
 *                             refused, timeout                         [conn_fail]
 *   CONNECTING/REQUEST/BODY -> CLOSED : http_call_cancel              [http_call_cancel]
 *   IDLE       -> CLOSED     : idle timeout, peer closed / sent bytes [on_conn_timer, idle_on_read]
 *   CLOSED     -> (freed)    : 0 ms pending timer after the callbacks ran [on_pend]
 *
 * Calls waiting at the connection cap (cfg.max_conns_per_upstream): such a call is QUEUED
 * (call->queued, on its upstream's FIFO q_head..q_tail, no connection) until a busy connection of
 * its upstream frees up:
 *   QUEUED -> attached : a response completed on a reusable connection: the queue's head takes it
 *                        before the finished call's on_done runs                   [conn_complete]
 *   QUEUED -> attached : a busy connection closed (error, cancel, not reusable): the upstream is
 *                        kicked and the 0 ms pending timer dispatches the head on an idle or a
 *                        new connection                                      [up_kick, up_dispatch]
 *   QUEUED -> (done)   : waited past queue_timeout_ms: on_done(ST_BUSY)          [on_queue_timer]
 *   QUEUED -> (freed)  : http_call_cancel, http_upstream_destroy
 * up->n_busy counts the connections on the busy list; a dispatch happens only while it is under
 * the cap, so a stale keep-alive retry (close, then open for the same call) never lets a queued
 * call in between. One timer per upstream watches the head's deadline (FIFO with one timeout:
 * the head always expires first) and re-arms itself for the next head.
 *
 * Invariants (checked by uconn_assert_state):
 *   CONNECTING : fd open; call attached (call->conn == c); nothing written; deadline = connect.
 *   HANDSHAKE  : as CONNECTING, fd watched, tls set; deadline still the connect one.
 *   REQUEST    : fd open and watched; call attached; the request is being written or was written;
 *                no head parsed yet (1xx heads are consumed here).
 *   BODY       : fd open and watched; call attached; head delivered (on_head ran).
 *   IDLE       : fd open, watched for EV_READ only (peer close detection); no call; no buffered
 *                input; on the upstream's idle list; deadline = idle timeout.
 *   CLOSED     : fd closed; no call; no upstream; queued on the client's pending list for reaping.
 * A live conn is on exactly one of its upstream's lists: idle (IDLE) or busy (other states).
 *
 * Calls and re-entrancy: every user callback runs with call->in_cb raised. http_call_cancel inside
 * a callback closes the connection at once but only marks the call dead; the code that invoked the
 * callback sees the mark when it returns and frees the call (deferred free). Connections are never
 * freed inside a callback: conn_close() marks them CLOSED and a 0 ms loop timer reaps them, so a
 * read loop whose callback closed its own connection still has a valid buffer. http_call_resume
 * never processes buffered bytes synchronously (it schedules the processing on the same timer), and
 * http_call_start never reads and never runs a callback (on a pooled connection it sends the
 * request at once, and a send error is delivered from the pending timer), so callbacks never nest
 * for one connection and the client's shared response-head scratch is safe. A completed connection
 * goes back to the pool before on_done runs, so a call started from on_done reuses it. Stale
 * keep-alive retry: a call on a reused connection that sees EOF / ECONNRESET / EPIPE before any
 * response byte is moved once to a fresh connection (the peer closed the idle connection while our
 * request was in flight). Timeouts are never retried. Timers: one per connection, re-armed lazily
 * (the deadline moves forward on every read; the timer only re-adds itself when it fires early), so
 * the hot path does no heap operation per read. Buffers: one input buffer per connection, grown to
 * the largest head/read seen and reused; body bytes are handed out as slices into it (chunked
 * bodies decoded in place), never copied. Policies: zero fields in http_client_config_t take the
 * defaults. HTTP/1.0 responses are reused only with "Connection: keep-alive"; read-until-close
 * bodies, leftover bytes after a response, or a request not fully written when the response ended
 * make the connection non-reusable. http_client_destroy / http_upstream_destroy must not be called
 * from inside a call callback. TLS: reads and writes go through tls_recv / tls_send, which look
 * like recv / send (errno EAGAIN when OpenSSL would block), so the plain path only tests c->tls;
 * decrypted bytes OpenSSL still holds after a read are picked up by a deferred read (PEND_READ),
 * since the socket will not signal them; close_notify is sent best effort when a connection that
 * had no TLS error is closed. Does not: pipeline requests. Thread-safety: loop thread only.
 */
#include "http/http_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"

#define UC_READ_CHUNK 16384
#define HC_FREE_CALLS 1024 /* finished calls kept for reuse */

typedef enum uc_state {
    UC_CONNECTING,
    UC_HANDSHAKE,
    UC_REQUEST,
    UC_BODY,
    UC_IDLE,
    UC_CLOSED,
} uc_state_t;

typedef enum body_mode { BM_NONE, BM_LENGTH, BM_CHUNKED, BM_CLOSE } body_mode_t;

enum { PEND_REAP = 1u, PEND_PROCESS = 2u, PEND_FAIL = 4u, PEND_READ = 8u };

/* uconn_t.tls_flags */
enum {
    TLS_UP = HTLS_UP,
    TLS_FATAL = HTLS_FATAL,
    TLS_RD_WANTS_WRITE = HTLS_RD_WANTS_WRITE,
    TLS_WR_WANTS_READ = HTLS_WR_WANTS_READ,
};

typedef struct uconn uconn_t;

struct http_call {
    http_upstream_t *up;
    uconn_t *conn; /* NULL once finished / cancelled */
    http_call_cbs_t cbs;
    void *udata;
    sy_buf_t req; /* serialized request (head + body), kept for the stale-connection retry */
    bool head_method;
    bool first_byte;
    bool paused;
    bool retried;
    bool done;   /* on_done delivered or running */
    bool dead;   /* cancelled inside one of its callbacks: freed when the callback returns */
    bool queued; /* waiting at the connection cap, on up->q_head..q_tail */
    unsigned in_cb;
    uint64_t q_deadline_ms;       /* queued: when it times out */
    http_call_t *q_prev, *q_next; /* queued: the upstream's FIFO */
    http_call_t *free_next;       /* on the client's free list */
};

struct uconn {
    http_client_t *cl;
    http_upstream_t *up;  /* NULL once CLOSED */
    uconn_t *prev, *next; /* up->idle or up->busy */
    uconn_t *pend_next;
    unsigned pend_flags;
    bool in_pend;
    int fd;
    bool watched;
    uc_state_t state;
    uint32_t mask;
    http_call_t *call;
    sy_buf_t in; /* input; unprocessed bytes are in.data[in_off..in.len) */
    size_t in_off;
    size_t out_off; /* bytes of call->req written */
    uint64_t timer;
    uint64_t timer_at;
    uint64_t deadline; /* UINT64_MAX = none */
    int connect_err;
    bool reused; /* completed at least one exchange before the current call */
    bool in_process;
    htls_conn_t *tls;  /* NULL = plain (owned) */
    uint32_t tls_want; /* HANDSHAKE: the event the handshake waits for */
    unsigned tls_flags;
    /* response framing of the current call */
    body_mode_t body;
    uint64_t remaining;
    http_chunked_t chunked;
    bool keep_alive;
};

struct http_upstream {
    http_client_t *cl;
    http_upstream_t *prev, *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host;     /* as given (owned): what the TLS certificate is checked against */
    char *host_hdr; /* "host:port" (owned) */
    uconn_t *idle;  /* LIFO: most recently used first */
    size_t n_idle;
    uconn_t *busy;
    size_t n_busy;
    http_call_t *q_head, *q_tail; /* calls waiting at the connection cap, oldest first */
    uint64_t q_timer;             /* watches q_head's deadline; 0 = none */
    http_upstream_t *kick_next;   /* on the client's kick list */
    bool kicked;
    http_upstream_stats_t st; /* counters; st.busy is filled in by http_upstream_stats */
};

struct http_client {
    ev_loop_t *loop;
    http_client_config_t cfg;
    http_limits_t lim;
    http_upstream_t *ups;
    uconn_t *pend_head, *pend_tail;
    uint64_t pend_timer;
    http_upstream_t *kick_head; /* upstreams whose queue may move: dispatched by on_pend */
    http_call_t *free_calls;    /* finished calls kept for reuse (at most HC_FREE_CALLS) */
    size_t n_free_calls;
    http_response_head_t scratch; /* one head parse at a time (see the file comment) */
};

static void conn_process(uconn_t *c);
static void conn_fail(uconn_t *c, int status);
static void up_dispatch(http_upstream_t *up);
static void up_dispatch_idle(http_upstream_t *up);
static void pend_arm(http_client_t *cl);
static void conn_write(uconn_t *c);
static void conn_read(uconn_t *c);

/* ---- small helpers ---- */

static void list_push(uconn_t **head, uconn_t *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_remove(uconn_t **head, uconn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void busy_push(http_upstream_t *up, uconn_t *c)
{
    list_push(&up->busy, c);
    up->n_busy++;
}

static void busy_remove(http_upstream_t *up, uconn_t *c)
{
    list_remove(&up->busy, c);
    up->n_busy--;
}

/* True when a call started now on up would have to wait. */
static bool up_at_cap(const http_upstream_t *up)
{
    size_t cap = up->cl->cfg.max_conns_per_upstream;
    return cap && up->n_busy >= cap;
}

/* Asks on_pend to dispatch up's queue (a busy connection went away). */
static void up_kick(http_upstream_t *up)
{
    if (up->kicked || !up->q_head)
        return;
    up->kicked = true;
    up->kick_next = up->cl->kick_head;
    up->cl->kick_head = up;
    pend_arm(up->cl);
}

static bool conn_out_pending(const uconn_t *c)
{
    return c->call && c->out_off < c->call->req.len;
}

static void uconn_assert_state(const uconn_t *c)
{
    switch (c->state) {
    case UC_CONNECTING:
        SY_ASSERT(c->fd >= 0 && c->up && c->call && c->call->conn == c && c->out_off == 0);
        break;
    case UC_HANDSHAKE:
        SY_ASSERT(c->fd >= 0 && c->watched && c->tls && c->up && c->call && c->call->conn == c);
        SY_ASSERT(c->out_off == 0);
        break;
    case UC_REQUEST:
    case UC_BODY:
        SY_ASSERT(c->fd >= 0 && c->watched && c->up && c->call && c->call->conn == c);
        SY_ASSERT(c->in_off <= c->in.len);
        break;
    case UC_IDLE:
        SY_ASSERT(c->fd >= 0 && c->watched && c->up && !c->call);
        SY_ASSERT(c->in_off == c->in.len && c->mask == EV_READ);
        break;
    case UC_CLOSED:
        SY_ASSERT(c->fd < 0 && !c->call && !c->up && c->in_pend);
        break;
    }
}

static uint32_t conn_want(const uconn_t *c)
{
    switch (c->state) {
    case UC_CONNECTING:
        return EV_WRITE;
    case UC_IDLE:
        return EV_READ;
    case UC_HANDSHAKE:
        return c->tls_want;
    case UC_REQUEST:
    case UC_BODY: {
        uint32_t m = (conn_out_pending(c) ? EV_WRITE : 0u) | (c->call->paused ? 0u : EV_READ);
        if (c->tls) {
            if ((m & EV_READ) && (c->tls_flags & TLS_RD_WANTS_WRITE))
                m |= EV_WRITE;
            if ((m & EV_WRITE) && (c->tls_flags & TLS_WR_WANTS_READ))
                m |= EV_READ;
        }
        return m;
    }
    case UC_CLOSED:
        break;
    }
    return 0;
}

/* Plain TCP upstream connections are edge-triggered (EV_EDGE: responses are then taken in the
 * order they arrive); TLS ones level-triggered (OpenSSL may hold bytes the socket will not
 * signal again). A read that fills its buffer comes back through a deferred PEND_READ. */
static uint32_t conn_edge(const uconn_t *c)
{
    return c->cl->cfg.tls ? 0u : EV_EDGE;
}

static void conn_update_mask(uconn_t *c)
{
    if (!c->watched)
        return;
    uint32_t m = conn_want(c);
    if (m != c->mask && ev_fd_mod(c->cl->loop, c->fd, m | conn_edge(c)) == ST_OK)
        c->mask = m;
}

/* ---- deferred work: reaping, resumed processing, connect errors ---- */

static void on_pend(ev_loop_t *loop, uint64_t id, void *udata)
{
    http_client_t *cl = udata;
    cl->pend_timer = 0;
    uconn_t *list = cl->pend_head;
    cl->pend_head = cl->pend_tail = NULL;
    while (list) {
        uconn_t *c = list;
        list = c->pend_next;
        c->pend_next = NULL;
        unsigned f = c->pend_flags;
        c->pend_flags = 0;
        c->in_pend = false;
        if (c->state != UC_CLOSED) {
            if (f & PEND_FAIL) {
                conn_fail(c, c->connect_err);
            } else {
                if (f & PEND_PROCESS)
                    conn_process(c);
                if ((f & PEND_READ) && (c->state == UC_REQUEST || c->state == UC_BODY) && c->call &&
                    !c->call->paused)
                    conn_read(c);
            }
        }
        if (c->state == UC_CLOSED && !c->in_pend) {
            sy_buf_deinit(&c->in);
            sy_free(c);
        }
    }
    while (cl->kick_head) { /* after the connections: their closes may have kicked more */
        http_upstream_t *up = cl->kick_head;
        cl->kick_head = up->kick_next;
        up->kick_next = NULL;
        up->kicked = false;
        up_dispatch(up);
    }
}

static void conn_pend(uconn_t *c, unsigned flag)
{
    http_client_t *cl = c->cl;
    c->pend_flags |= flag;
    if (!c->in_pend) {
        c->in_pend = true;
        c->pend_next = NULL;
        if (cl->pend_tail)
            cl->pend_tail->pend_next = c;
        else
            cl->pend_head = c;
        cl->pend_tail = c;
    }
    pend_arm(cl);
}

static void pend_arm(http_client_t *cl)
{
    if (!cl->pend_timer) {
        cl->pend_timer = ev_timer_add(cl->loop, 0, on_pend, cl);
        if (!cl->pend_timer)
            sy_error("http_client.timer", "err=nomem"); /* retried on the next conn_pend */
    }
}

/* ---- timers ---- */

static void on_conn_timer(ev_loop_t *loop, uint64_t id, void *udata);

/* Sets the connection's deadline to now + ms (0 = none). */
static void conn_deadline(uconn_t *c, uint32_t ms)
{
    ev_loop_t *loop = c->cl->loop;
    if (ms == 0) {
        c->deadline = UINT64_MAX; /* a pending timer finds nothing to do */
        return;
    }
    c->deadline = ev_now_ms(loop) + ms;
    if (c->timer && c->timer_at <= c->deadline)
        return; /* fires early and re-arms itself */
    if (c->timer)
        ev_timer_cancel(loop, c->timer);
    c->timer = ev_timer_add(loop, ms, on_conn_timer, c);
    c->timer_at = c->deadline;
    if (!c->timer)
        sy_error("http_client.timer", "err=nomem");
}

static void on_conn_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    uconn_t *c = udata;
    c->timer = 0;
    if (c->state == UC_CLOSED || c->deadline == UINT64_MAX)
        return;
    uint64_t now = ev_now_ms(loop);
    if (now < c->deadline) {
        c->timer = ev_timer_add(loop, c->deadline - now, on_conn_timer, c);
        c->timer_at = c->deadline;
        return;
    }
    c->deadline = UINT64_MAX;
    conn_fail(c, ST_TIMEOUT); /* IDLE: just closes */
}

/* ---- connection lifetime ---- */

/* Detaches everything and queues the connection for reaping. The call (if any) is detached but
 * not finished: callers decide what happens to it. */
static void conn_close(uconn_t *c)
{
    if (c->state == UC_CLOSED)
        return;
    http_client_t *cl = c->cl;
    if (c->watched)
        ev_fd_del(cl->loop, c->fd);
    c->watched = false;
    if (c->tls) /* close_notify best effort while the fd is open, never after an error */
        htls_conn_free(c->tls, (c->tls_flags & (TLS_UP | TLS_FATAL)) == TLS_UP);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->timer)
        ev_timer_cancel(cl->loop, c->timer);
    c->timer = 0;
    if (c->up) {
        if (c->state == UC_IDLE) {
            list_remove(&c->up->idle, c);
            c->up->n_idle--;
        } else {
            busy_remove(c->up, c);
            up_kick(c->up);
        }
    }
    c->up = NULL;
    if (c->call)
        c->call->conn = NULL;
    c->call = NULL;
    c->state = UC_CLOSED;
    c->mask = 0;
    conn_pend(c, PEND_REAP);
    uconn_assert_state(c);
}

static void conn_attach(uconn_t *c, http_call_t *call)
{
    c->call = call;
    call->conn = c;
    c->out_off = 0;
    c->in_off = c->in.len = 0;
    c->body = BM_NONE;
    c->remaining = 0;
    c->keep_alive = false;
    http_chunked_init(&c->chunked);
}

static void conn_on_io(ev_loop_t *loop, int fd, uint32_t events, void *udata);

/* New connection in CONNECTING for call. ST_OK (a connect error that shows up at once is
 * delivered from the pending timer) or an error with nothing attached. */
static int conn_open(http_upstream_t *up, http_call_t *call)
{
    http_client_t *cl = up->cl;
    uconn_t *c = sy_calloc(1, sizeof *c);
    if (!c)
        return ST_NOMEM;
    c->cl = cl;
    c->deadline = UINT64_MAX;
    c->fd = socket(up->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int rc = -errno;
        sy_free(c);
        return rc;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int cerr = 0;
    if (connect(c->fd, (const struct sockaddr *)&up->addr, up->addrlen) != 0 &&
        errno != EINPROGRESS)
        cerr = errno;
    if (!cerr) {
        int rc = ev_fd_add(cl->loop, c->fd, EV_WRITE | conn_edge(c), conn_on_io, c);
        if (rc != ST_OK) {
            close(c->fd);
            sy_free(c);
            return rc;
        }
        c->watched = true;
        c->mask = EV_WRITE;
    }
    c->up = up;
    c->state = UC_CONNECTING;
    busy_push(up, c);
    conn_attach(c, call);
    conn_deadline(c, cl->cfg.connect_timeout_ms);
    if (cerr) {
        c->connect_err = -cerr;
        conn_pend(c, PEND_FAIL);
    }
    uconn_assert_state(c);
    return ST_OK;
}

/* ---- calls ---- */

/* Keeps a finished call (and its request buffer, when small) for the next http_call_start. */
static void call_free(http_call_t *call)
{
    http_client_t *cl = call->up ? call->up->cl : NULL;
    if (cl && cl->n_free_calls < HC_FREE_CALLS && call->req.cap <= 65536) {
        sy_buf_t req = call->req;
        sy_buf_reset(&req);
        memset(call, 0, sizeof *call);
        call->req = req;
        call->free_next = cl->free_calls;
        cl->free_calls = call;
        cl->n_free_calls++;
        return;
    }
    sy_buf_deinit(&call->req);
    sy_free(call);
}

/* A zeroed call (with a kept request buffer when recycled), or NULL. */
static http_call_t *call_new(http_client_t *cl)
{
    http_call_t *call = cl->free_calls;
    if (!call)
        return sy_calloc(1, sizeof *call);
    cl->free_calls = call->free_next;
    cl->n_free_calls--;
    call->free_next = NULL;
    return call;
}

/* Runs on_done and frees the call. The call is already detached from its connection. */
static void call_finish(http_call_t *call, int status)
{
    SY_ASSERT(!call->conn && !call->done);
    call->done = true;
    if (call->cbs.on_done) {
        call->in_cb++;
        call->cbs.on_done(call, status, call->first_byte, call->udata);
        call->in_cb--;
    }
    if (call->in_cb == 0)
        call_free(call);
    else
        call->dead = true; /* finished from inside one of its own callbacks: caller frees */
}

/* After a callback: false if the call was cancelled inside it (then it is freed here, unless an
 * outer callback frame is still running). */
static bool call_after_cb(http_call_t *call)
{
    call->in_cb--;
    if (!call->dead)
        return true;
    if (call->in_cb == 0)
        call_free(call);
    return false;
}

static bool call_head(http_call_t *call, const http_response_head_t *h)
{
    if (!call->cbs.on_head)
        return true;
    call->in_cb++;
    call->cbs.on_head(call, h->status, h->headers, h->num_headers, call->udata);
    return call_after_cb(call);
}

static bool call_data(http_call_t *call, const char *p, size_t n)
{
    if (!call->cbs.on_data || n == 0)
        return true;
    call->in_cb++;
    call->cbs.on_data(call, p, n, call->udata);
    return call_after_cb(call);
}

/* ---- response handling ---- */

static void conn_fail(uconn_t *c, int status)
{
    http_call_t *call = c->call;
    bool idle = c->state == UC_IDLE;
    conn_close(c);
    if (!call || idle)
        return;
    bool stale = status == ST_CLOSED || status == -ECONNRESET || status == -EPIPE;
    if (c->reused && stale && !call->first_byte && !call->retried) {
        call->retried = true;
        sy_debug("http_client.retry", "upstream=%s", call->up->host_hdr);
        int rc = conn_open(call->up, call);
        if (rc == ST_OK)
            return;
        status = rc;
    }
    call_finish(call, status);
}

/* The whole response arrived: pool or close the connection, then on_done. */
static void conn_complete(uconn_t *c)
{
    http_call_t *call = c->call;
    http_upstream_t *up = c->up;
    bool reuse = c->keep_alive && c->in_off == c->in.len && !conn_out_pending(c) &&
                 up->n_idle < c->cl->cfg.max_idle_per_upstream;
    call->conn = NULL;
    c->call = NULL;
    if (reuse) {
        busy_remove(up, c);
        list_push(&up->idle, c);
        up->n_idle++;
        c->state = UC_IDLE;
        c->reused = true;
        c->in_off = c->in.len = 0;
        conn_update_mask(c);
        conn_deadline(c, c->cl->cfg.idle_timeout_ms);
        uconn_assert_state(c);
        if (up->q_head)
            up_dispatch_idle(up); /* the waiting head takes this connection: no callback */
    } else {
        conn_close(c);
    }
    call_finish(call, ST_OK);
}

/* Decides the body framing from the head (RFC 9112 §6.3). ST_OK or ST_PROTO. */
static int conn_framing(uconn_t *c, const http_response_head_t *h)
{
    const http_header_t *conn = http_find_header(h->headers, h->num_headers, "connection");
    if (h->minor_version >= 1)
        c->keep_alive = !(conn && http_header_has_token(conn->value, "close"));
    else
        c->keep_alive = conn && http_header_has_token(conn->value, "keep-alive");
    if (c->call->head_method || h->status == 204 || h->status == 304) {
        c->body = BM_NONE;
        return ST_OK;
    }
    const http_header_t *te = http_find_header(h->headers, h->num_headers, "transfer-encoding");
    if (te) {
        sy_slice_t v = te->value;
        static const char chunked[] = "chunked";
        size_t n = sizeof chunked - 1;
        if (v.len >= n && strncasecmp(v.ptr + v.len - n, chunked, n) == 0) {
            c->body = BM_CHUNKED;
            http_chunked_init(&c->chunked);
        } else {
            c->body = BM_CLOSE;
            c->keep_alive = false;
        }
        return ST_OK;
    }
    bool have_cl = false;
    uint64_t len = 0;
    for (size_t i = 0; i < h->num_headers; i++) {
        const http_header_t *hd = &h->headers[i];
        if (hd->name.len != 14 || strncasecmp(hd->name.ptr, "content-length", 14) != 0)
            continue;
        uint64_t v;
        if (http_parse_content_length(hd->value, &v) != ST_OK || (have_cl && v != len))
            return ST_PROTO;
        have_cl = true;
        len = v;
    }
    if (have_cl) {
        c->body = len ? BM_LENGTH : BM_NONE;
        c->remaining = len;
    } else {
        c->body = BM_CLOSE;
        c->keep_alive = false;
    }
    return ST_OK;
}

/* Consumes buffered input for the attached call until it needs more bytes, is paused, finishes or
 * is cancelled. Never called re-entrantly for one connection. */
static void conn_process(uconn_t *c)
{
    http_call_t *call = c->call;
    if (!call || c->in_process)
        return;
    c->in_process = true;
    while ((c->state == UC_REQUEST || c->state == UC_BODY) && c->call == call && !call->paused) {
        char *p = c->in.data + c->in_off;
        size_t n = c->in.len - c->in_off;
        if (n == 0)
            break;
        if (c->state == UC_REQUEST) {
            http_response_head_t *h = &c->cl->scratch;
            int rc = http_parse_response(p, n, &c->cl->lim, h);
            if (rc == ST_AGAIN)
                break;
            if (rc < 0 || h->status == 101) {
                c->in_process = false;
                conn_fail(c, rc < 0 ? rc : ST_PROTO);
                return;
            }
            c->in_off += (size_t)rc; /* the slices stay valid: nothing moves until the next read */
            if (h->status < 200)
                continue; /* 1xx interim response */
            if (conn_framing(c, h) != ST_OK) {
                c->in_process = false;
                conn_fail(c, ST_PROTO);
                return;
            }
            c->state = UC_BODY;
            if (!call_head(call, h))
                return; /* cancelled: the connection is closed (reaped later) */
            if (c->body == BM_NONE) {
                c->in_process = false;
                conn_complete(c);
                return;
            }
            continue;
        }
        if (c->body == BM_LENGTH) {
            size_t take = n < c->remaining ? n : (size_t)c->remaining;
            c->in_off += take;
            c->remaining -= take;
            if (!call_data(call, p, take))
                return;
            if (c->remaining == 0) {
                c->in_process = false;
                conn_complete(c);
                return;
            }
        } else if (c->body == BM_CHUNKED) {
            size_t dl = n;
            int rc = http_chunked_decode(&c->chunked, p, &dl);
            if (rc < 0 && rc != ST_AGAIN) {
                c->in_process = false;
                conn_fail(c, ST_PROTO);
                return;
            }
            c->in_off += rc == ST_AGAIN ? n : (size_t)rc;
            if (!call_data(call, p, dl))
                return;
            if (rc != ST_AGAIN) {
                c->in_process = false;
                conn_complete(c);
                return;
            }
        } else { /* BM_CLOSE */
            c->in_off += n;
            if (!call_data(call, p, n))
                return;
        }
    }
    c->in_process = false;
}

/* Like recv(): bytes, 0 at close_notify, or -1 with errno (EAGAIN when OpenSSL would block;
 * ECONNRESET for an EOF without close_notify, so a stale pooled connection is retried). */
static ssize_t tls_recv(uconn_t *c, char *buf, size_t n)
{
    return htls_recv(c->tls, buf, n, &c->tls_flags, true);
}

/* Like send(): bytes written, or -1 with errno (EAGAIN when OpenSSL would block). */
static ssize_t tls_send(uconn_t *c, const char *buf, size_t n)
{
    return htls_send(c->tls, buf, n, &c->tls_flags);
}

static void conn_eof(uconn_t *c, int err)
{
    if (c->state == UC_BODY && c->body == BM_CLOSE && err == 0) {
        conn_complete(c);
        return;
    }
    conn_fail(c, err ? err : ST_CLOSED);
}

static void conn_read(uconn_t *c)
{
    if (c->in_off > 0) {
        size_t rest = c->in.len - c->in_off;
        if (rest)
            memmove(c->in.data, c->in.data + c->in_off, rest);
        c->in.len = rest;
        c->in_off = 0;
    }
    if (c->in.cap - c->in.len < UC_READ_CHUNK + 1 &&
        sy_buf_reserve(&c->in, UC_READ_CHUNK) != ST_OK) {
        conn_fail(c, ST_NOMEM);
        return;
    }
    ssize_t n;
    size_t room;
    do {
        char *dst = c->in.data + c->in.len;
        room = c->in.cap - c->in.len - 1;
        n = c->tls ? tls_recv(c, dst, room) : recv(c->fd, dst, room, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_eof(c, -errno);
        return;
    }
    if (n == 0) {
        conn_eof(c, 0);
        return;
    }
    c->in.len += (size_t)n;
    c->in.data[c->in.len] = '\0';
    c->call->first_byte = true;
    conn_deadline(c, c->cl->cfg.read_timeout_ms);
    conn_process(c);
    if (c->tls && c->state != UC_CLOSED && htls_pending(c->tls))
        conn_pend(c, PEND_READ); /* decrypted bytes the socket will not signal */
    else if (!c->tls && (size_t)n == room && (c->state == UC_REQUEST || c->state == UC_BODY))
        conn_pend(c, PEND_READ); /* edge-triggered: the socket may hold more */
}

/* Sends what the socket takes of the call's request. ST_OK (all sent, or it would block) or
 * -errno. */
static int conn_send(uconn_t *c)
{
    http_call_t *call = c->call;
    while (c->out_off < call->req.len) {
        const char *p = call->req.data + c->out_off;
        size_t len = call->req.len - c->out_off;
        ssize_t n = c->tls ? tls_send(c, p, len) : send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        c->out_off += (size_t)n;
    }
    return ST_OK;
}

static void conn_write(uconn_t *c)
{
    int rc = conn_send(c);
    if (rc != ST_OK) {
        conn_fail(c, rc);
        return;
    }
    conn_update_mask(c);
}

/* The first write of a call on a pooled connection, from http_call_start: sends what the socket
 * takes at once, so the common case costs one send() and no epoll_ctl (the pooled connection is
 * already watched for EV_READ). Never runs a callback: a send error is handed to the pending timer
 * (PEND_FAIL), which fails the call as conn_write would (a stale pooled connection is retried once
 * on a fresh one there). */
static void conn_write_now(uconn_t *c)
{
    int rc = conn_send(c);
    if (rc != ST_OK) {
        c->connect_err = rc;
        conn_pend(c, PEND_FAIL);
        return;
    }
    conn_update_mask(c);
}

/* HANDSHAKE step: on completion the call's request is sent. */
static void conn_handshake(uconn_t *c)
{
    uint32_t want = 0;
    char err[256];
    int rc = htls_handshake(c->tls, &want, err, sizeof err);
    if (rc == ST_AGAIN) {
        c->tls_want = want;
        conn_update_mask(c);
        return;
    }
    if (rc != ST_OK) {
        c->tls_flags |= TLS_FATAL;
        sy_warn("http_client.tls_failed", "upstream=%s err=\"%s\"", c->up->host_hdr, err);
        conn_fail(c, rc == ST_CLOSED || rc == ST_PROTO ? ST_PROTO : rc);
        return;
    }
    c->tls_flags |= TLS_UP;
    c->state = UC_REQUEST;
    conn_deadline(c, c->cl->cfg.first_byte_timeout_ms);
    uconn_assert_state(c);
    conn_write(c);
}

static void conn_connected(uconn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        conn_fail(c, -err);
        return;
    }
    if (c->cl->cfg.tls) {
        c->tls = htls_client_conn_new(c->cl->cfg.tls, c->fd, c->up->host);
        if (!c->tls) {
            conn_fail(c, ST_NOMEM);
            return;
        }
        c->state = UC_HANDSHAKE;
        c->tls_want = EV_WRITE;
        uconn_assert_state(c);
        conn_handshake(c); /* the connect deadline also bounds the handshake */
        return;
    }
    c->state = UC_REQUEST;
    conn_deadline(c, c->cl->cfg.first_byte_timeout_ms);
    uconn_assert_state(c);
    conn_write(c);
}

/* A pooled connection became readable: the peer closed it (or sent unsolicited bytes). */
static void idle_on_read(uconn_t *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    sy_debug("http_client.idle_close", "upstream=%s", c->up->host_hdr);
    conn_close(c);
}

static void conn_on_io(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    uconn_t *c = udata;
    uconn_assert_state(c);
    switch (c->state) {
    case UC_CONNECTING:
        conn_connected(c);
        return;
    case UC_HANDSHAKE:
        conn_handshake(c);
        return;
    case UC_IDLE:
        idle_on_read(c);
        return;
    case UC_REQUEST:
    case UC_BODY:
        break;
    case UC_CLOSED:
        return;
    }
    http_call_t *call = c->call;
    bool tls_wr = c->tls && (events & EV_READ) && (c->tls_flags & TLS_WR_WANTS_READ);
    if (((events & EV_WRITE) || tls_wr) && conn_out_pending(c)) {
        conn_write(c);
        if (c->call != call || c->state == UC_CLOSED)
            return;
    }
    if (c->tls && (events & EV_WRITE) && (c->tls_flags & TLS_RD_WANTS_WRITE))
        events |= EV_READ; /* OpenSSL's read waited for this */
    if (call->paused) {
        if (events & EV_ERROR) { /* reset while paused: the buffered response is lost */
            int err = 0;
            socklen_t len = sizeof err;
            (void)getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            conn_fail(c, err ? -err : ST_CLOSED);
        }
        return;
    }
    if (events & (EV_READ | EV_ERROR))
        conn_read(c);
}

/* ---- the queue at the connection cap ---- */

static void on_queue_timer(ev_loop_t *loop, uint64_t id, void *udata);

static void queue_arm(http_upstream_t *up)
{
    if (up->q_timer || !up->q_head)
        return;
    uint64_t now = ev_now_ms(up->cl->loop);
    uint64_t at = up->q_head->q_deadline_ms;
    up->q_timer = ev_timer_add(up->cl->loop, at > now ? at - now : 0, on_queue_timer, up);
    if (!up->q_timer)
        sy_error("http_client.timer", "err=nomem"); /* retried on the next queue_push */
}

static void queue_push(http_upstream_t *up, http_call_t *call)
{
    call->queued = true;
    call->q_deadline_ms = ev_now_ms(up->cl->loop) + up->cl->cfg.queue_timeout_ms;
    call->q_next = NULL;
    call->q_prev = up->q_tail;
    if (up->q_tail)
        up->q_tail->q_next = call;
    else
        up->q_head = call;
    up->q_tail = call;
    up->st.queued++;
    up->st.queued_total++;
    queue_arm(up);
}

static void queue_remove(http_upstream_t *up, http_call_t *call)
{
    if (call->q_prev)
        call->q_prev->q_next = call->q_next;
    else
        up->q_head = call->q_next;
    if (call->q_next)
        call->q_next->q_prev = call->q_prev;
    else
        up->q_tail = call->q_prev;
    call->q_prev = call->q_next = NULL;
    call->queued = false;
    up->st.queued--;
}

/* Puts call on up's most recently pooled idle connection and sends the request: no callback runs
 * in here (up->idle must be non-NULL). */
static void start_on_idle(http_upstream_t *up, http_call_t *call)
{
    uconn_t *c = up->idle; /* LIFO: the most recently used one is the most likely alive */
    list_remove(&up->idle, c);
    up->n_idle--;
    busy_push(up, c);
    c->state = UC_REQUEST;
    conn_attach(c, call);
    conn_deadline(c, call->paused ? 0 : up->cl->cfg.first_byte_timeout_ms); /* as http_call_pause */
    conn_write_now(c); /* a send error is delivered from the loop */
    uconn_assert_state(c);
}

/* Sends the queue's head on an idle connection while there is one and room under the cap. */
static void up_dispatch_idle(http_upstream_t *up)
{
    while (up->q_head && up->idle && !up_at_cap(up)) {
        http_call_t *call = up->q_head;
        queue_remove(up, call);
        start_on_idle(up, call);
    }
}

/* From the loop (on_pend): sends queued calls while there is room, opening connections when no
 * idle one is left; a call whose connection cannot be opened ends with that error. */
static void up_dispatch(http_upstream_t *up)
{
    up_dispatch_idle(up);
    while (up->q_head && !up_at_cap(up)) {
        http_call_t *call = up->q_head;
        queue_remove(up, call);
        int rc = conn_open(up, call);
        if (rc != ST_OK)
            call_finish(call, rc);
    }
}

static void on_queue_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    http_upstream_t *up = udata;
    up->q_timer = 0;
    uint64_t now = ev_now_ms(loop);
    while (up->q_head && up->q_head->q_deadline_ms <= now) {
        http_call_t *call = up->q_head;
        queue_remove(up, call);
        up->st.queue_timeouts++;
        sy_debug("http_client.queue_timeout", "upstream=%s", up->host_hdr);
        call_finish(call, ST_BUSY); /* on_done may start calls on up: it stays valid */
    }
    queue_arm(up);
}

/* ---- public API ---- */

void http_client_config_default(http_client_config_t *cfg)
{
    cfg->connect_timeout_ms = 2000;
    cfg->first_byte_timeout_ms = 600000;
    cfg->read_timeout_ms = 600000;
    cfg->idle_timeout_ms = 60000;
    cfg->max_idle_per_upstream = 1024;
    cfg->max_head_bytes = 65536;
    cfg->max_conns_per_upstream = 0;
    cfg->max_queued_per_upstream = 4096;
    cfg->queue_timeout_ms = 30000;
    cfg->tls = NULL;
}

http_client_t *http_client_create(ev_loop_t *loop, const http_client_config_t *cfg)
{
    if (!loop)
        return NULL;
    http_client_t *cl = sy_calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->loop = loop;
    http_client_config_default(&cl->cfg);
    if (cfg)
        cl->cfg = *cfg;
    http_client_config_t d; /* zero fields take the defaults, like the server's config */
    http_client_config_default(&d);
    if (!cl->cfg.connect_timeout_ms)
        cl->cfg.connect_timeout_ms = d.connect_timeout_ms;
    if (!cl->cfg.first_byte_timeout_ms)
        cl->cfg.first_byte_timeout_ms = d.first_byte_timeout_ms;
    if (!cl->cfg.read_timeout_ms)
        cl->cfg.read_timeout_ms = d.read_timeout_ms;
    if (!cl->cfg.idle_timeout_ms)
        cl->cfg.idle_timeout_ms = d.idle_timeout_ms;
    if (!cl->cfg.max_idle_per_upstream)
        cl->cfg.max_idle_per_upstream = d.max_idle_per_upstream;
    if (!cl->cfg.max_head_bytes)
        cl->cfg.max_head_bytes = d.max_head_bytes;
    if (!cl->cfg.max_queued_per_upstream)
        cl->cfg.max_queued_per_upstream = d.max_queued_per_upstream;
    if (!cl->cfg.queue_timeout_ms)
        cl->cfg.queue_timeout_ms = d.queue_timeout_ms;
    cl->lim.max_head_bytes = cl->cfg.max_head_bytes;
    cl->lim.max_headers = HTTP_MAX_HEADERS_HARD;
    return cl;
}

void http_client_destroy(http_client_t *cl)
{
    if (!cl)
        return;
    while (cl->ups)
        http_upstream_destroy(cl->ups);
    if (cl->pend_timer)
        ev_timer_cancel(cl->loop, cl->pend_timer);
    while (cl->pend_head) { /* every connection is CLOSED now */
        uconn_t *c = cl->pend_head;
        cl->pend_head = c->pend_next;
        sy_buf_deinit(&c->in);
        sy_free(c);
    }
    while (cl->free_calls) {
        http_call_t *call = cl->free_calls;
        cl->free_calls = call->free_next;
        sy_buf_deinit(&call->req);
        sy_free(call);
    }
    sy_free(cl);
}

http_upstream_t *http_upstream_create(http_client_t *cl, const char *host, int port, int *status)
{
    int st = ST_INVAL;
    http_upstream_t *up = NULL;
    struct addrinfo *res = NULL;
    if (!cl || !host || !*host || port <= 0 || port > 65535)
        goto fail;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        st = gai == EAI_MEMORY ? ST_NOMEM : gai == EAI_SYSTEM ? -errno : ST_INVAL;
        res = NULL;
        goto fail;
    }
    if (!res || res->ai_addrlen > sizeof up->addr)
        goto fail;
    st = ST_NOMEM;
    up = sy_calloc(1, sizeof *up);
    if (!up)
        goto fail;
    memcpy(&up->addr, res->ai_addr, res->ai_addrlen);
    up->addrlen = res->ai_addrlen;
    size_t hl = strlen(host) + sizeof portstr + 4;
    up->host = sy_strdup(host);
    up->host_hdr = sy_malloc(hl);
    if (!up->host || !up->host_hdr)
        goto fail;
    snprintf(up->host_hdr, hl, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, portstr);
    freeaddrinfo(res);
    up->cl = cl;
    up->next = cl->ups;
    if (cl->ups)
        cl->ups->prev = up;
    cl->ups = up;
    if (status)
        *status = ST_OK;
    return up;
fail:
    if (res)
        freeaddrinfo(res);
    if (up) {
        sy_free(up->host);
        sy_free(up->host_hdr);
    }
    sy_free(up);
    if (status)
        *status = st;
    return NULL;
}

void http_upstream_destroy(http_upstream_t *up)
{
    if (!up)
        return;
    while (up->q_head) {
        http_call_t *call = up->q_head;
        queue_remove(up, call);
        if (call->in_cb)
            call->dead = true;
        else
            call_free(call);
    }
    if (up->q_timer)
        ev_timer_cancel(up->cl->loop, up->q_timer);
    up->q_timer = 0;
    while (up->idle)
        conn_close(up->idle);
    while (up->busy) {
        uconn_t *c = up->busy;
        http_call_t *call = c->call;
        conn_close(c);
        if (call) {
            if (call->in_cb)
                call->dead = true;
            else
                call_free(call);
        }
    }
    http_client_t *cl = up->cl;
    for (http_upstream_t **k = &cl->kick_head; *k; k = &(*k)->kick_next) {
        if (*k == up) {
            *k = up->kick_next;
            break;
        }
    }
    if (up->prev)
        up->prev->next = up->next;
    else
        cl->ups = up->next;
    if (up->next)
        up->next->prev = up->prev;
    sy_free(up->host);
    sy_free(up->host_hdr);
    sy_free(up);
}

size_t http_upstream_idle_connections(const http_upstream_t *up)
{
    return up ? up->n_idle : 0;
}

void http_upstream_stats(const http_upstream_t *up, http_upstream_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!up)
        return;
    *out = up->st;
    out->busy = up->n_busy;
}

static bool token_ok(const char *s, bool allow_empty)
{
    if (!s || (!allow_empty && !*s))
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch == 0x7f)
            return false;
    }
    return true;
}

static int call_serialize(http_call_t *call, const http_upstream_t *up, const char *method,
                          const char *path, const char *extra, const char *body, size_t body_len)
{
    sy_buf_t *b = &call->req;
    size_t extra_len = extra ? strlen(extra) : 0;
    if (sy_buf_reserve(b, strlen(method) + strlen(path) + strlen(up->host_hdr) + extra_len +
                              body_len + 96) != ST_OK)
        return ST_NOMEM;
    /* reserved above: none of these appends can fail */
    sy_buf_append_str(b, method);
    sy_buf_append_char(b, ' ');
    sy_buf_append_str(b, path);
    sy_buf_append_str(b, " HTTP/1.1\r\nHost: ");
    sy_buf_append_str(b, up->host_hdr);
    int rc = sy_buf_append(b, "\r\n", 2);
    if (rc == ST_OK && extra_len)
        rc = sy_buf_append(b, extra, extra_len);
    if (rc == ST_OK && body) {
        rc = sy_buf_append_str(b, "Content-Length: ");
        if (rc == ST_OK)
            rc = sy_buf_append_i64(b, (int64_t)body_len);
        if (rc == ST_OK)
            rc = sy_buf_append(b, "\r\n", 2);
    }
    if (rc == ST_OK)
        rc = sy_buf_append_str(b, "Connection: keep-alive\r\n\r\n");
    if (rc == ST_OK && body_len)
        rc = sy_buf_append(b, body, body_len);
    return rc;
}

int http_call_start(http_upstream_t *up, const char *method, const char *path,
                    const char *extra_headers, const char *body, size_t body_len,
                    const http_call_cbs_t *cbs, void *udata, http_call_t **out)
{
    if (out)
        *out = NULL;
    if (!up || !out || !token_ok(method, false) || !token_ok(path, false) || (body_len && !body))
        return ST_INVAL;
    if (extra_headers && *extra_headers) {
        size_t el = strlen(extra_headers);
        if (el < 2 || memcmp(extra_headers + el - 2, "\r\n", 2) != 0)
            return ST_INVAL;
    }
    http_call_t *call = call_new(up->cl);
    if (!call)
        return ST_NOMEM;
    call->up = up;
    if (cbs)
        call->cbs = *cbs;
    call->udata = udata;
    call->head_method = strcmp(method, "HEAD") == 0;
    int rc = call_serialize(call, up, method, path, extra_headers, body, body_len);
    if (rc != ST_OK) {
        call_free(call);
        return rc;
    }
    if (up_at_cap(up) || up->q_head) { /* FIFO: never overtake a waiting call */
        if (up->st.queued >= up->cl->cfg.max_queued_per_upstream) {
            up->st.queue_full++;
            call_free(call);
            return ST_BUSY;
        }
        queue_push(up, call);
    } else if (up->idle) {
        start_on_idle(up, call);
    } else {
        rc = conn_open(up, call);
        if (rc != ST_OK) {
            call_free(call);
            return rc;
        }
    }
    *out = call;
    return ST_OK;
}

void http_call_pause(http_call_t *call)
{
    if (!call || call->done || call->dead || call->paused)
        return;
    call->paused = true;
    uconn_t *c = call->conn;
    if (c && c->state != UC_CONNECTING && c->state != UC_HANDSHAKE) {
        conn_update_mask(c);
        conn_deadline(c, 0); /* a slow client is not a slow upstream */
    }
}

void http_call_resume(http_call_t *call)
{
    if (!call || call->done || call->dead || !call->paused)
        return;
    call->paused = false;
    uconn_t *c = call->conn;
    if (c && c->state != UC_CONNECTING && c->state != UC_HANDSHAKE) {
        conn_update_mask(c);
        conn_deadline(c, call->first_byte ? c->cl->cfg.read_timeout_ms
                                          : c->cl->cfg.first_byte_timeout_ms);
        if (c->in_off < c->in.len)
            conn_pend(c, PEND_PROCESS);
        if (!c->tls || htls_pending(c->tls))
            conn_pend(c, PEND_READ); /* plain TCP is edge-triggered: bytes may be waiting */
    }
}

void http_call_cancel(http_call_t *call)
{
    if (!call || call->done || call->dead)
        return;
    if (call->queued)
        queue_remove(call->up, call);
    uconn_t *c = call->conn;
    if (c)
        conn_close(c); /* never pooled: the rest of the response is unknown */
    call->conn = NULL;
    if (call->in_cb)
        call->dead = true;
    else
        call_free(call);
}
