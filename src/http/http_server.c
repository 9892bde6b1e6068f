/*
 * http_server.c - HTTP/1.1 server connections on the event loop (see http_server.h).
 *
 * Connection state machine (http_conn_t.state):
 *
 *   accept (TLS) --> HANDSHAKE --handshake done--+
 *     | (plain)                                 |
 *     v          head parsed, body follows <----+
 *   READING_HEAD ---------------------------> READING_BODY
 *     ^    |  head parsed, no body                 | body complete
 *     |    +-------------------------------+       |
 *     |                                    v       v
 *     |                                    HANDLING ---- http_req_sse_start ----> STREAMING
 *     |                                       | http_req_respond                      |
 *     |                                       v                                       |
 *     +------ output drained, keep-alive -- WRITING <------- http_req_sse_end --------+
 *                                             | output drained, close
 *          server error (400/408/413/431/501) | (after an error: LINGERING first, discarding
 *          from READING_HEAD/READING_BODY ----+  input until EOF or HTTP_LINGER_MS)
 *                                             v
 *   any state -- EOF / RST / write error / idle or write-stall timeout --> CLOSING --> reaped
 *
 * Transitions (from -> to: trigger [function]):
 *   HANDSHAKE    -> READING_HEAD : TLS handshake complete                  [conn_handshake]
 *   HANDSHAKE    -> CLOSING      : handshake failed, EOF / timed out [conn_handshake/on_rd_timer]
 *   READING_HEAD -> READING_BODY : head parsed, CL > 0 or chunked          [conn_start_request]
 *   READING_HEAD -> HANDLING     : head parsed, no body                    [conn_dispatch]
 *   READING_BODY -> HANDLING     : last body byte / terminating chunk      [conn_dispatch]
 *   READING_*    -> WRITING      : syntax/limit error, read timeout        [conn_send_error]
 *   HANDLING     -> WRITING      : handler answered                        [http_req_respond]
 *   HANDLING     -> STREAMING    : handler started SSE                     [http_req_sse_start]
 *   STREAMING    -> WRITING      : handler ended the stream                [http_req_sse_end]
 *   WRITING      -> READING_HEAD : output drained, keep-alive              [conn_response_done]
 *   WRITING      -> LINGERING    : output drained after a server error     [conn_response_done]
 *   WRITING      -> CLOSING      : output drained, connection not reusable [conn_response_done]
 *   LINGERING    -> CLOSING      : EOF, error, linger timer  [conn_linger_read, on_rd_timer]
 *   any          -> CLOSING      : EOF, RST, I/O error, timeouts, OOM      [conn_close]
 *   CLOSING      -> (freed)      : deferred task after the callbacks ran   [conn_reap]
 *
 * Invariants (checked by http_conn_assert_state):
 *   HANDSHAKE    : tls set; no exchange; no input or output buffered; handshake timer armed.
 *   READING_HEAD : no exchange (req NULL); no queued output; read interest unless EOF.
 *   READING_BODY : req set, not dispatched; read timer armed (the one started with the head).
 *   HANDLING     : req set, dispatched, not streaming; no read timer.
 *   STREAMING    : req set, dispatched, streaming; no read timer.
 *   WRITING      : req NULL (the exchange ended when its last byte was queued); left as soon
 *                  as the output queue drains.
 *   LINGERING    : req NULL; no queued output; write side shut down; linger timer armed.
 *   CLOSING      : fd no longer watched; no timers; queued for reaping. A dispatched exchange
 *                  still attached gets its on_close at reap time.
 *
 * Deferral: connections are never freed inside a callback. conn_close() marks CLOSING and queues
 * the connection on the server's pending list; a 0 ms loop timer (which the loop fires after the
 * fd callbacks of the same iteration) reaps them, delivers on_close, fires on_writable callbacks
 * that were armed while already writable, and resumes pipelined input after a response finished
 * outside the read path. Using a timer rather than ev_set_before_sleep() leaves the loop's single
 * before-sleep hook to the application and lets several servers share one loop.
 * Requests: a finished exchange's http_req_t (with its body buffer up to HS_KEEP_BODY) goes on
 * the server's free list (HS_FREE_REQS) and the next head reuses it; req_new zeroes its fields
 * but not its 4 KB header array, of which only the parsed headers are written and read.
 * Pipelining: a connection handles one exchange at a time; bytes of later requests stay buffered
 * (up to max_head_bytes, then reading pauses) and are parsed once the response is fully written.
 * Policies: EOF from the client during an exchange (also a half-close) counts as the client going
 * away (on_close). A connection whose queued output makes no progress for idle_timeout_ms is
 * closed (write stall). After a server-generated error the server shuts down its write side and
 * discards input for up to HTTP_LINGER_MS so the client can read the error before the close
 * (no RST). Zero fields in http_server_config_t take the defaults. HTTP/1.1 requests without Host
 * are accepted. http_server_destroy() must not be called from inside a server callback.
 * TLS: with a TLS context set, a connection starts in HANDSHAKE (bounded by read_timeout_ms) and
 * all of its reads and writes go through tls_recv / tls_send, which look like recv / send to the
 * rest of the file (errno EAGAIN when OpenSSL would block). Beyond that the plain path tests the
 * c->tls pointer once per read, write and event-mask update. Output is queued in c->out before it
 * is encrypted (no writev over TLS); a write that would block is retried from the queue, which
 * OpenSSL accepts since the bytes stay at the front (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
 * OpenSSL may hold decrypted bytes the socket no longer signals (a record larger than the read),
 * so whenever reading is wanted and htls_pending() is true a deferred read (PEND_READ) is queued.
 * A read that needs the socket writable (or a write that needs it readable) sets a tls_flags bit
 * that adds the other event to the mask. close_notify is sent best effort at reap (and before
 * the lingering close's shutdown(SHUT_WR)), never after a TLS error.
 * Thread-safety: loop thread only.
 */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define HTTP_LINGER_MS 2000
#define HTTP_READ_CHUNK 16384
#define HTTP_BODY_READ_CHUNK 65536
#define HTTP_ACCEPT_BATCH 64
#define HTTP_ACCEPT_BACKOFF_MS 100
#define HS_FREE_REQS 256   /* finished requests kept for reuse */
#define HS_KEEP_BODY 65536 /* ... with their body buffer when it is at most this big */
#define HS_RAW_MIN 1024    /* head bytes room of a new request (most heads fit) */

typedef enum http_conn_state {
    CS_HANDSHAKE,
    CS_READING_HEAD,
    CS_READING_BODY,
    CS_HANDLING,
    CS_STREAMING,
    CS_WRITING,
    CS_LINGERING,
    CS_CLOSING,
} http_conn_state_t;

static const char *const state_names[] = {"handshake", "reading_head", "reading_body", "handling",
                                          "streaming", "writing",      "lingering",    "closing"};

typedef enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED } body_mode_t;
typedef enum rd_kind { RD_NONE, RD_IDLE, RD_READ, RD_LINGER, RD_HANDSHAKE } rd_kind_t;

enum { PEND_PROCESS = 1u, PEND_WRITABLE = 2u, PEND_REAP = 4u, PEND_READ = 8u };

/* http_conn_t.tls_flags */
enum {
    TLS_UP = HTLS_UP,
    TLS_FATAL = HTLS_FATAL,
    TLS_RD_WANTS_WRITE = HTLS_RD_WANTS_WRITE,
    TLS_WR_WANTS_READ = HTLS_WR_WANTS_READ,
};

typedef struct http_conn http_conn_t;

struct http_req {
    http_conn_t *conn;        /* valid for the whole life of the req (conns outlive their reqs) */
    http_request_head_t head; /* slices into raw[] */
    sy_slice_t path, query;
    sy_buf_t body;
    uint64_t start_ns;
    body_mode_t body_mode;
    uint64_t body_remaining; /* BODY_LENGTH */
    http_chunked_t chunked;  /* BODY_CHUNKED */
    bool keep_alive;
    bool head_method;
    bool dispatched;
    bool streaming;
    bool chunked_out; /* SSE framed as chunks (HTTP/1.1) */
    bool gone;        /* client went away; on_close pending at reap */
    bool in_on_close;
    http_req_cb on_close, on_writable;
    void *on_close_ud, *on_writable_ud;
    void *udata;
    size_t raw_len;
    size_t raw_cap;        /* bytes allocated for raw[] */
    http_req_t *free_next; /* on the server's free list */
    char raw[];            /* copy of the head bytes (NUL-terminated) */
};

struct http_conn {
    http_server_t *srv;
    http_conn_t *prev, *next; /* all connections */
    http_conn_t *pend_next;   /* pending list link */
    unsigned pend_flags;
    bool in_pending;
    int fd;
    http_conn_state_t state;
    uint32_t ev_mask;
    sy_buf_t in;  /* unparsed input */
    sy_buf_t out; /* queued output; out.data[out_off..out.len) unsent */
    size_t out_off;
    http_req_t *req; /* current exchange */
    uint64_t rd_timer;
    rd_kind_t rd_kind;
    uint64_t wr_timer;
    uint64_t wr_progress_ms;
    uint64_t req_start_ns; /* first byte of the current head; 0 = none yet */
    bool peer_eof;
    bool rd_more;      /* plain TCP is edge-triggered: conn_read stopped before EAGAIN, so bytes
                        * may wait in the socket with no event to come; read again (deferred)
                        * as soon as reading is wanted */
    bool close_after;  /* close once the current response is written */
    bool linger_after; /* ... after a lingering close (server errors) */
    bool wr_shut;
    bool in_process;   /* conn_process re-entrancy guard */
    htls_conn_t *tls;  /* NULL = plain HTTP (owned) */
    uint32_t tls_want; /* HANDSHAKE: the event the handshake waits for */
    unsigned tls_flags;
    char peer[INET6_ADDRSTRLEN + 8];
};

struct http_server {
    ev_loop_t *loop;
    http_server_config_t cfg;
    http_limits_t lim;
    http_on_request_cb on_request;
    void *udata;
    htls_server_t *tls; /* borrowed; NULL = plain HTTP */
    int lfd;
    int port;
    bool listen_paused;
    bool draining;
    bool destroying;
    uint64_t resume_timer;
    http_conn_t *conns;
    size_t n_conns, n_active;
    http_conn_t *pend_head, *pend_tail;
    uint64_t pend_timer;
    http_request_head_t scratch; /* parse target; copied into the req once complete */
    http_req_t *free_reqs;       /* finished exchanges kept for reuse (at most HS_FREE_REQS) */
    size_t n_free_reqs;
    sy_buf_t head_scratch; /* response heads are built here (http_req_respond) */
};

static void conn_process(http_conn_t *c);
static void conn_close(http_conn_t *c, const char *why);

/* ---- helpers ---- */

static size_t out_pending(const http_conn_t *c)
{
    return c->out.len - c->out_off;
}

static bool slice_eq(sy_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static bool slice_ieq(sy_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

static void http_conn_assert_state(const http_conn_t *c)
{
    switch (c->state) {
    case CS_HANDSHAKE:
        SY_ASSERT(c->tls && c->req == NULL && out_pending(c) == 0 && c->in.len == 0);
        SY_ASSERT(c->rd_kind == RD_HANDSHAKE || c->rd_timer == 0);
        break;
    case CS_READING_HEAD:
        SY_ASSERT(c->req == NULL);
        SY_ASSERT(out_pending(c) == 0);
        break;
    case CS_READING_BODY:
        SY_ASSERT(c->req && !c->req->dispatched);
        SY_ASSERT(c->rd_kind == RD_READ || c->rd_timer == 0); /* 0 only if the add failed */
        break;
    case CS_HANDLING:
        SY_ASSERT(c->req && c->req->dispatched && !c->req->streaming);
        SY_ASSERT(c->rd_timer == 0);
        break;
    case CS_STREAMING:
        SY_ASSERT(c->req && c->req->dispatched && c->req->streaming);
        SY_ASSERT(c->rd_timer == 0);
        break;
    case CS_WRITING:
        SY_ASSERT(c->req == NULL);
        break;
    case CS_LINGERING:
        SY_ASSERT(c->req == NULL && out_pending(c) == 0 && c->wr_shut);
        break;
    case CS_CLOSING:
        SY_ASSERT(c->rd_timer == 0 && c->wr_timer == 0);
        SY_ASSERT(c->req == NULL || c->req->dispatched);
        break;
    }
}

static void set_state(http_conn_t *c, http_conn_state_t s)
{
    c->state = s;
    http_conn_assert_state(c);
}

/* ---- deferred work ---- */

static void on_pend_timer(ev_loop_t *loop, uint64_t id, void *udata);

static void pend_add(http_conn_t *c, unsigned flag)
{
    http_server_t *srv = c->srv;
    if (srv->destroying)
        return;
    c->pend_flags |= flag;
    if (!c->in_pending) {
        c->in_pending = true;
        c->pend_next = NULL;
        if (srv->pend_tail)
            srv->pend_tail->pend_next = c;
        else
            srv->pend_head = c;
        srv->pend_tail = c;
    }
    if (!srv->pend_timer) {
        srv->pend_timer = ev_timer_add(srv->loop, 0, on_pend_timer, srv);
        if (!srv->pend_timer)
            sy_error("http.pend_timer", "err=nomem");
    }
}

/* ---- timers ---- */

static void on_rd_timer(ev_loop_t *loop, uint64_t id, void *udata);
static void on_wr_timer(ev_loop_t *loop, uint64_t id, void *udata);

static void rd_timer_cancel(http_conn_t *c)
{
    if (c->rd_timer)
        ev_timer_cancel(c->srv->loop, c->rd_timer);
    c->rd_timer = 0;
    c->rd_kind = RD_NONE;
}

static void rd_timer_arm(http_conn_t *c, rd_kind_t kind, uint64_t ms)
{
    rd_timer_cancel(c);
    if (c->srv->destroying)
        return;
    c->rd_timer = ev_timer_add(c->srv->loop, ms, on_rd_timer, c);
    c->rd_kind = c->rd_timer ? kind : RD_NONE;
}

static void wr_timer_cancel(http_conn_t *c)
{
    if (c->wr_timer)
        ev_timer_cancel(c->srv->loop, c->wr_timer);
    c->wr_timer = 0;
}

/* ---- events ---- */

/* TLS part of conn_update_events: the mask the handshake or OpenSSL needs on top of m. */
static uint32_t conn_tls_events(http_conn_t *c, uint32_t m)
{
    if (c->state == CS_HANDSHAKE)
        return c->tls_want;
    if ((m & EV_READ) && (c->tls_flags & TLS_RD_WANTS_WRITE))
        m |= EV_WRITE;
    if ((m & EV_WRITE) && (c->tls_flags & TLS_WR_WANTS_READ))
        m |= EV_READ;
    if (!c->peer_eof && (m & EV_READ) && htls_pending(c->tls))
        pend_add(c, PEND_READ); /* decrypted bytes the socket will not signal */
    return m;
}

/* Plain TCP connections are edge-triggered (see EV_EDGE: fd events are then queued in arrival
 * order, so under load requests are read first come, first served); TLS ones level-triggered,
 * since OpenSSL may hold decrypted bytes the socket will not signal again. */
static uint32_t conn_edge(const http_conn_t *c)
{
    return c->tls ? 0u : EV_EDGE;
}

static bool conn_wants_read(const http_conn_t *c)
{
    bool want_read = !c->peer_eof;
    if (c->state == CS_HANDLING || c->state == CS_STREAMING || c->state == CS_WRITING)
        want_read = want_read && c->in.len < c->srv->cfg.max_head_bytes;
    return want_read;
}

/* Edge-triggered: bytes left in the socket by a read that stopped early are read from a deferred
 * call once reading is wanted again (no new edge would announce them). */
static void conn_resume_read(http_conn_t *c)
{
    if (c->rd_more && c->state != CS_CLOSING && c->state != CS_LINGERING && conn_wants_read(c)) {
        c->rd_more = false;
        pend_add(c, PEND_READ);
    }
}

static void conn_update_events(http_conn_t *c)
{
    if (c->state == CS_CLOSING)
        return;
    bool want_read = conn_wants_read(c);
    uint32_t m = (want_read ? EV_READ : 0u) | (out_pending(c) > 0 && !c->wr_shut ? EV_WRITE : 0u);
    if (c->tls)
        m = conn_tls_events(c, m);
    if (m != c->ev_mask) {
        int rc = ev_fd_mod(c->srv->loop, c->fd, m | conn_edge(c));
        if (rc != ST_OK) {
            conn_close(c, "epoll_mod");
            return;
        }
        c->ev_mask = m;
    }
    conn_resume_read(c);
    if ((m & EV_WRITE) && out_pending(c) > 0 && !c->wr_timer && !c->srv->destroying) {
        c->wr_progress_ms = ev_now_ms(c->srv->loop);
        c->wr_timer = ev_timer_add(c->srv->loop, c->srv->cfg.idle_timeout_ms, on_wr_timer, c);
    }
}

/* ---- exchange end ---- */

/* Keeps a finished request (with its body buffer, when small) for the next req_new. */
static void req_free(http_server_t *srv, http_req_t *req)
{
    if (!req)
        return;
    if (srv->n_free_reqs < HS_FREE_REQS && !srv->destroying) {
        if (req->body.cap > HS_KEEP_BODY)
            sy_buf_deinit(&req->body);
        req->free_next = srv->free_reqs;
        srv->free_reqs = req;
        srv->n_free_reqs++;
        return;
    }
    sy_buf_deinit(&req->body);
    sy_free(req);
}

/* Detaches and frees the connection's current exchange (the handler's final call). */
static void exchange_end(http_conn_t *c)
{
    http_req_t *req = c->req;
    if (!req)
        return;
    if (req->dispatched) {
        SY_ASSERT(c->srv->n_active > 0);
        c->srv->n_active--;
    }
    c->req = NULL;
    req_free(c->srv, req);
}

/* ---- close / reap ---- */

static void conn_close(http_conn_t *c, const char *why)
{
    if (c->state == CS_CLOSING)
        return;
    if (SY_LOG_DEBUG_ENABLED())
        sy_debug("http.conn.close", "fd=%d peer=%s state=%s reason=%s", c->fd, c->peer,
                 state_names[c->state], why);
    ev_fd_del(c->srv->loop, c->fd);
    c->ev_mask = 0;
    rd_timer_cancel(c);
    wr_timer_cancel(c);
    if (c->req) {
        if (c->req->dispatched)
            c->req->gone = true; /* on_close at reap */
        else
            exchange_end(c); /* never seen by the handler */
    }
    c->state = CS_CLOSING;
    http_conn_assert_state(c);
    pend_add(c, PEND_REAP);
}

static void listener_resume(http_server_t *srv);

static void conn_reap(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    SY_ASSERT(c->state == CS_CLOSING);
    http_req_t *req = c->req;
    if (req) {
        if (req->on_close) {
            req->in_on_close = true;
            req->on_close(req, req->on_close_ud);
            req->in_on_close = false;
        }
        exchange_end(c);
    }
    if (c->tls) /* close_notify best effort (the fd is still open), never after an error */
        htls_conn_free(c->tls, (c->tls_flags & (TLS_UP | TLS_FATAL)) == TLS_UP);
    close(c->fd);
    sy_buf_deinit(&c->in);
    sy_buf_deinit(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    sy_free(c);
    if (srv->listen_paused && !srv->resume_timer && srv->n_conns < srv->cfg.max_connections)
        listener_resume(srv);
}

/* ---- TLS I/O with the socket calls' conventions ---- */

/* Like recv(): bytes, 0 at EOF, or -1 with errno (EAGAIN when OpenSSL would block). */
static ssize_t tls_recv(http_conn_t *c, char *buf, size_t n)
{
    return htls_recv(c->tls, buf, n, &c->tls_flags, false);
}

/* Like send(): bytes written, or -1 with errno (EAGAIN when OpenSSL would block). */
static ssize_t tls_send(http_conn_t *c, const char *buf, size_t n)
{
    return htls_send(c->tls, buf, n, &c->tls_flags);
}

/* ---- output ---- */

/* Sends queued output until drained or the socket would block. ST_OK, or ST_CLOSED after a write
 * error (the connection is CLOSING). No state transition. */
static int out_send(http_conn_t *c)
{
    while (out_pending(c) > 0) {
        const char *p = c->out.data + c->out_off;
        ssize_t w =
            c->tls ? tls_send(c, p, out_pending(c)) : send(c->fd, p, out_pending(c), MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            c->wr_progress_ms = ev_now_ms(c->srv->loop);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_close(c, "write error");
        return ST_CLOSED;
    }
    return ST_OK;
}

/* TLS part of conn_write: everything is queued, then encrypted from the queue. */
static int conn_write_tls(http_conn_t *c, const struct iovec *iov, int iovcnt)
{
    bool was_empty = out_pending(c) == 0;
    for (int i = 0; i < iovcnt; i++) {
        if (sy_buf_append(&c->out, iov[i].iov_base, iov[i].iov_len) != ST_OK) {
            conn_close(c, "out of memory");
            return ST_NOMEM;
        }
    }
    /* with bytes already queued, EV_WRITE is armed and conn_flush sends in order */
    if (was_empty && out_send(c) != ST_OK)
        return ST_CLOSED;
    conn_update_events(c);
    return ST_OK;
}

/* Queues iov for sending: writes directly when nothing is queued, keeps the rest.
 * ST_OK, ST_CLOSED (connection failed/closing; it is now CLOSING) or ST_NOMEM (closed too). */
static int conn_write(http_conn_t *c, const struct iovec *iov, int iovcnt)
{
    if (c->state == CS_CLOSING || c->wr_shut)
        return ST_CLOSED;
    if (c->tls)
        return conn_write_tls(c, iov, iovcnt);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    size_t sent = 0;
    if (out_pending(c) == 0 && total > 0) {
        struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t w;
        do {
            w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                conn_close(c, "write error");
                return ST_CLOSED;
            }
            w = 0;
        }
        sent = (size_t)w;
        c->wr_progress_ms = ev_now_ms(c->srv->loop);
    }
    if (sent < total) {
        size_t skip = sent;
        for (int i = 0; i < iovcnt; i++) {
            size_t n = iov[i].iov_len;
            if (skip >= n) {
                skip -= n;
                continue;
            }
            if (sy_buf_append(&c->out, (const char *)iov[i].iov_base + skip, n - skip) != ST_OK) {
                conn_close(c, "out of memory");
                return ST_NOMEM;
            }
            skip = 0;
        }
    }
    conn_update_events(c);
    return ST_OK;
}

static void conn_response_done(http_conn_t *c);

static void fire_on_writable(http_conn_t *c)
{
    http_req_t *req = c->req;
    if (!req || req->gone || !req->on_writable || c->state == CS_CLOSING)
        return;
    if (out_pending(c) >= c->srv->cfg.write_high_water)
        return;
    http_req_cb cb = req->on_writable;
    req->on_writable = NULL; /* one shot: the handler re-arms */
    cb(req, req->on_writable_ud);
}

/* EV_WRITE: sends queued output until drained or the socket would block. */
static void conn_flush(http_conn_t *c)
{
    bool was_above = out_pending(c) >= c->srv->cfg.write_high_water;
    if (out_send(c) != ST_OK)
        return;
    if (out_pending(c) == 0) {
        if (c->out.cap > ((size_t)4 << 20))
            sy_buf_deinit(&c->out); /* give a big burst's memory back */
        else
            sy_buf_reset(&c->out);
        c->out_off = 0;
        wr_timer_cancel(c);
    } else if (c->out_off >= 65536 && c->out_off >= c->out.len / 2) {
        sy_buf_consume(&c->out, c->out_off);
        c->out_off = 0;
    }
    if (c->state == CS_WRITING && out_pending(c) == 0) {
        conn_response_done(c);
        return;
    }
    conn_update_events(c);
    if (was_above && (c->state == CS_STREAMING || c->state == CS_HANDLING))
        fire_on_writable(c);
}

/* ---- server-generated answers ---- */

static const char *error_type(int status, char *tmp, size_t cap)
{
    switch (status) {
    case 400:
        return "BadRequestError";
    case 404:
        return "NotFoundError";
    case 405:
        return "MethodNotAllowed";
    case 408:
        return "RequestTimeout";
    case 413:
        return "RequestEntityTooLarge";
    case 431:
        return "RequestHeaderFieldsTooLarge";
    case 500:
        return "InternalServerError";
    case 501:
        return "NotImplementedError";
    case 503:
        return "ServiceUnavailable";
    default:
        break;
    }
    /* other codes: the reason phrase without spaces, e.g. 429 -> "TooManyRequests" */
    const char *r = http_status_reason(status);
    size_t n = 0;
    for (; *r && n + 1 < cap; r++)
        if (*r != ' ' && *r != '-')
            tmp[n++] = *r;
    tmp[n] = '\0';
    return tmp;
}

static int build_error_body(sy_buf_t *b, int status, const char *type, const char *message,
                            const char *param)
{
    char tmp[64];
    if (!type)
        type = error_type(status, tmp, sizeof tmp);
    if (!message)
        message = http_status_reason(status);
    int rc = sy_buf_append_str(b, "{\"error\":{\"message\":\"");
    if (rc == ST_OK)
        rc = sy_buf_append_json_str(b, message, strlen(message));
    if (rc == ST_OK)
        rc = sy_buf_append_str(b, "\",\"type\":\"");
    if (rc == ST_OK)
        rc = sy_buf_append_json_str(b, type, strlen(type));
    if (rc == ST_OK)
        rc = sy_buf_append_str(b, "\",\"param\":");
    if (rc == ST_OK && param) {
        rc = sy_buf_append_char(b, '"');
        if (rc == ST_OK)
            rc = sy_buf_append_json_str(b, param, strlen(param));
        if (rc == ST_OK)
            rc = sy_buf_append_char(b, '"');
    } else if (rc == ST_OK) {
        rc = sy_buf_append_str(b, "null");
    }
    if (rc == ST_OK)
        rc = sy_buf_appendf(b, ",\"code\":%d}}", status);
    return rc;
}

/* Answers a request the handler never saw (syntax, limits, timeout) and closes afterwards. */
static void conn_send_error(http_conn_t *c, int status, const char *message)
{
    sy_debug("http.error", "fd=%d peer=%s status=%d msg=\"%s\"", c->fd, c->peer, status, message);
    exchange_end(c); /* an undispatched req, if any */
    rd_timer_cancel(c);
    c->req_start_ns = 0;
    sy_buf_t body = SY_BUF_INIT, head = SY_BUF_INIT;
    int rc = build_error_body(&body, status, NULL, message, NULL);
    if (rc == ST_OK)
        rc = sy_buf_appendf(&head,
                            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            status, http_status_reason(status), body.len);
    if (rc != ST_OK) {
        sy_buf_deinit(&body);
        sy_buf_deinit(&head);
        conn_close(c, "out of memory");
        return;
    }
    c->close_after = true;
    c->linger_after = true;
    set_state(c, CS_WRITING);
    struct iovec iov[2] = {{head.data, head.len}, {body.data, body.len}};
    conn_write(c, iov, 2);
    sy_buf_deinit(&body);
    sy_buf_deinit(&head);
    if (c->state == CS_WRITING && out_pending(c) == 0)
        conn_response_done(c);
}

/* The response's last byte left: keep-alive, linger or close. */
static void conn_response_done(http_conn_t *c)
{
    SY_ASSERT(c->state == CS_WRITING && out_pending(c) == 0);
    wr_timer_cancel(c);
    if (c->close_after || c->peer_eof || c->srv->draining) {
        if (c->linger_after && !c->peer_eof) {
            if (c->tls && (c->tls_flags & (TLS_UP | TLS_FATAL)) == TLS_UP)
                htls_shutdown(c->tls); /* close_notify before the FIN */
            shutdown(c->fd, SHUT_WR);
            c->wr_shut = true;
            sy_buf_reset(&c->in);
            rd_timer_arm(c, RD_LINGER, HTTP_LINGER_MS);
            set_state(c, CS_LINGERING);
            conn_update_events(c);
        } else {
            conn_close(c, "done");
        }
        return;
    }
    set_state(c, CS_READING_HEAD);
    c->req_start_ns = 0;
    if (c->in.len == 0)
        rd_timer_arm(c, RD_IDLE, c->srv->cfg.idle_timeout_ms);
    else if (!c->in_process)
        pend_add(c, PEND_PROCESS); /* pipelined bytes: parse them outside the caller's stack */
    conn_update_events(c);
}

/* ---- request intake ---- */

/* A request for the head parsed into srv->scratch (head_len bytes at c->in): from the free list
 * when one there has room, else new. Only the fields are zeroed, not the header array (4 KB):
 * the first head.num_headers entries are written below. */
static http_req_t *req_new(http_conn_t *c, size_t head_len)
{
    http_server_t *srv = c->srv;
    http_req_t *req = srv->free_reqs;
    sy_buf_t body = SY_BUF_INIT;
    if (req && req->raw_cap > head_len) {
        srv->free_reqs = req->free_next;
        srv->n_free_reqs--;
        body = req->body;
        sy_buf_reset(&body);
    } else {
        size_t cap = head_len + 1 > HS_RAW_MIN ? head_len + 1 : HS_RAW_MIN;
        req = sy_malloc(sizeof *req + cap);
        if (!req)
            return NULL;
        req->raw_cap = cap;
    }
    size_t cap = req->raw_cap;
    const size_t hdrs = offsetof(http_req_t, head) + offsetof(http_request_head_t, headers);
    const size_t rest = offsetof(http_req_t, head) + offsetof(http_request_head_t, num_headers);
    memset(req, 0, hdrs);
    memset((char *)req + rest, 0, offsetof(http_req_t, raw) - rest);
    req->raw_cap = cap;
    req->body = body;
    req->conn = c;
    req->raw_len = head_len;
    memcpy(req->raw, c->in.data, head_len);
    req->raw[head_len] = '\0';
    const http_request_head_t *h = &c->srv->scratch;
    const char *base = c->in.data;
#define REBASE(s) ((sy_slice_t){req->raw + ((s).ptr - base), (s).len})
    req->head.method = REBASE(h->method);
    req->head.target = REBASE(h->target);
    req->head.minor_version = h->minor_version;
    req->head.num_headers = h->num_headers;
    for (size_t i = 0; i < h->num_headers; i++) {
        req->head.headers[i].name = REBASE(h->headers[i].name);
        req->head.headers[i].value = REBASE(h->headers[i].value);
    }
#undef REBASE
    sy_slice_t t = req->head.target;
    const char *q = memchr(t.ptr, '?', t.len);
    req->path.ptr = t.ptr;
    req->path.len = q ? (size_t)(q - t.ptr) : t.len;
    req->query.ptr = q ? q + 1 : t.ptr + t.len;
    req->query.len = q ? t.len - req->path.len - 1 : 0;
    req->start_ns = c->req_start_ns;
    return req;
}

static bool conn_dispatch(http_conn_t *c)
{
    http_req_t *req = c->req;
    rd_timer_cancel(c);
    c->req_start_ns = 0;
    if (c->peer_eof) {
        conn_close(c, "eof before dispatch");
        return false;
    }
    req->dispatched = true;
    c->srv->n_active++;
    set_state(c, CS_HANDLING);
    c->srv->on_request(req, c->srv->udata);
    return true;
}

/* Validates framing headers of a freshly parsed head and decides the body mode. */
static bool conn_start_request(http_conn_t *c, http_req_t *req)
{
    const http_header_t *hs = req->head.headers;
    size_t nh = req->head.num_headers;
    const http_header_t *te = NULL, *cl = NULL;
    size_t n_te = 0, n_cl = 0;
    for (size_t i = 0; i < nh; i++) {
        if (slice_ieq(hs[i].name, "transfer-encoding")) {
            te = &hs[i];
            n_te++;
        } else if (slice_ieq(hs[i].name, "content-length")) {
            cl = &hs[i];
            n_cl++;
        }
    }
    const http_header_t *conn_h = http_find_header(hs, nh, "connection");
    if (req->head.minor_version >= 1)
        req->keep_alive = !(conn_h && http_header_has_token(conn_h->value, "close"));
    else
        req->keep_alive = conn_h && http_header_has_token(conn_h->value, "keep-alive");
    req->head_method = slice_eq(req->head.method, "HEAD");

    char msg[160];
    if (te) {
        if (n_cl > 0) {
            conn_send_error(c, 400, "Both Content-Length and Transfer-Encoding are present");
            return false;
        }
        if (req->head.minor_version == 0) {
            conn_send_error(c, 400, "Transfer-Encoding is not allowed in HTTP/1.0");
            return false;
        }
        if (n_te > 1 || !slice_ieq(te->value, "chunked")) {
            snprintf(msg, sizeof msg, "Transfer-Encoding '%.*s' is not implemented",
                     (int)(te->value.len > 64 ? 64 : te->value.len), te->value.ptr);
            conn_send_error(c, 501, msg);
            return false;
        }
        req->body_mode = BODY_CHUNKED;
        http_chunked_init(&req->chunked);
    } else if (cl) {
        uint64_t len;
        if (n_cl > 1 || http_parse_content_length(cl->value, &len) != ST_OK) {
            conn_send_error(c, 400, "Invalid Content-Length");
            return false;
        }
        if (len > c->srv->cfg.max_body_bytes) {
            snprintf(msg, sizeof msg, "Request body of %llu bytes exceeds the limit of %zu bytes",
                     (unsigned long long)len, c->srv->cfg.max_body_bytes);
            conn_send_error(c, 413, msg);
            return false;
        }
        req->body_mode = len > 0 ? BODY_LENGTH : BODY_NONE;
        req->body_remaining = len;
    }
    if (req->body_mode == BODY_NONE)
        return conn_dispatch(c);

    set_state(c, CS_READING_BODY);
    const http_header_t *expect = http_find_header(hs, nh, "expect");
    if (expect && req->head.minor_version >= 1 &&
        http_header_has_token(expect->value, "100-continue") && c->in.len == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec iov = {(void *)cont, sizeof cont - 1};
        if (conn_write(c, &iov, 1) != ST_OK)
            return false;
    }
    return true;
}

/* READING_HEAD step. Returns true when the state changed and processing should continue. */
static bool step_head(http_conn_t *c)
{
    http_server_t *srv = c->srv;
    if (c->in.len == 0) {
        if (c->peer_eof)
            conn_close(c, "eof");
        else if (srv->draining)
            conn_close(c, "draining");
        else if (c->rd_kind != RD_IDLE)
            rd_timer_arm(c, RD_IDLE, srv->cfg.idle_timeout_ms);
        return false;
    }
    if (c->req_start_ns == 0) {
        c->req_start_ns = sy_mono_ns();
        rd_timer_arm(c, RD_READ, srv->cfg.read_timeout_ms);
    }
    int rc = http_parse_request(c->in.data, c->in.len, &srv->lim, &srv->scratch);
    if (rc == ST_AGAIN) {
        if (c->peer_eof)
            conn_close(c, "eof in head");
        return false;
    }
    if (rc == ST_LIMIT) {
        conn_send_error(c, 431, "Request header fields too large");
        return false;
    }
    if (rc < 0) {
        conn_send_error(c, 400, "Malformed HTTP request");
        return false;
    }
    http_req_t *req = req_new(c, (size_t)rc);
    if (!req) {
        conn_send_error(c, 503, "Out of memory");
        return false;
    }
    sy_buf_consume(&c->in, (size_t)rc);
    c->req = req;
    if (SY_LOG_DEBUG_ENABLED())
        sy_debug("http.request", "fd=%d peer=%s method=%.*s target=\"%.*s\"", c->fd, c->peer,
                 (int)req->head.method.len, req->head.method.ptr, (int)req->head.target.len,
                 req->head.target.ptr);
    return conn_start_request(c, req);
}

/* READING_BODY step. Returns true when the state changed and processing should continue. */
static bool step_body(http_conn_t *c)
{
    http_req_t *req = c->req;
    size_t max_body = c->srv->cfg.max_body_bytes;
    if (req->body_mode == BODY_LENGTH) {
        if (c->in.len > 0) {
            size_t take = c->in.len < req->body_remaining ? c->in.len : (size_t)req->body_remaining;
            if (sy_buf_append(&req->body, c->in.data, take) != ST_OK) {
                conn_send_error(c, 503, "Out of memory");
                return false;
            }
            sy_buf_consume(&c->in, take);
            req->body_remaining -= take;
        }
        if (req->body_remaining == 0)
            return conn_dispatch(c);
        if (c->peer_eof)
            conn_close(c, "eof in body");
        return false;
    }
    if (c->in.len == 0) {
        if (c->peer_eof)
            conn_close(c, "eof in body");
        return false;
    }
    size_t dlen = c->in.len;
    int rc = http_chunked_decode(&req->chunked, c->in.data, &dlen);
    if (rc != ST_AGAIN && rc < 0) {
        conn_send_error(c, 400, "Malformed chunked request body");
        return false;
    }
    if (req->body.len + dlen > max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request body exceeds the limit of %zu bytes", max_body);
        conn_send_error(c, 413, msg);
        return false;
    }
    if (sy_buf_append(&req->body, c->in.data, dlen) != ST_OK) {
        conn_send_error(c, 503, "Out of memory");
        return false;
    }
    if (rc == ST_AGAIN) {
        sy_buf_reset(&c->in);
        if (c->peer_eof)
            conn_close(c, "eof in body");
        return false;
    }
    sy_buf_consume(&c->in, (size_t)rc);
    return conn_dispatch(c);
}

/* Runs the state machine over buffered input until it needs more bytes or waits for the handler. */
static void conn_process(http_conn_t *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    bool more = true;
    while (more) {
        switch (c->state) {
        case CS_READING_HEAD:
            more = step_head(c);
            break;
        case CS_READING_BODY:
            more = step_body(c);
            break;
        case CS_HANDLING:
        case CS_STREAMING:
            if (c->peer_eof)
                conn_close(c, "client closed");
            more = false;
            break;
        default:
            more = false;
            break;
        }
    }
    c->in_process = false;
    conn_update_events(c);
}

/* ---- input ---- */

static void conn_linger_read(http_conn_t *c)
{
    char scratch[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c, "linger done");
        return;
    }
}

static void conn_read(http_conn_t *c)
{
    if (c->state == CS_LINGERING) {
        conn_linger_read(c);
        return;
    }
    size_t cap_busy = c->srv->cfg.max_head_bytes;
    bool drained = c->peer_eof; /* EAGAIN, a short read or EOF seen */
    for (int iter = 0; iter < 8 && !c->peer_eof; iter++) {
        char *dst;
        size_t room;
        bool to_body = c->state == CS_READING_BODY && c->req->body_mode == BODY_LENGTH &&
                       c->in.len == 0 && c->req->body_remaining > 0;
        sy_buf_t *b;
        if (to_body) {
            /* read the body straight into the request, never past its end */
            b = &c->req->body;
            size_t want = c->req->body_remaining < HTTP_BODY_READ_CHUNK
                              ? (size_t)c->req->body_remaining
                              : HTTP_BODY_READ_CHUNK;
            if (sy_buf_reserve(b, want) != ST_OK) {
                conn_send_error(c, 503, "Out of memory");
                return;
            }
            room = want;
        } else {
            if ((c->state == CS_HANDLING || c->state == CS_STREAMING || c->state == CS_WRITING) &&
                c->in.len >= cap_busy)
                break; /* pipelined bytes wait; reading pauses (see conn_update_events) */
            b = &c->in;
            if (sy_buf_reserve(b, HTTP_READ_CHUNK) != ST_OK) {
                conn_close(c, "out of memory");
                return;
            }
            room = b->cap - b->len - 1;
        }
        dst = b->data + b->len;
        ssize_t n = c->tls ? tls_recv(c, dst, room) : recv(c->fd, dst, room, 0);
        if (n > 0) {
            b->len += (size_t)n;
            b->data[b->len] = '\0';
            if (to_body)
                c->req->body_remaining -= (uint64_t)n;
            if ((size_t)n < room && !c->tls) { /* TLS: one record per read; go on until EAGAIN */
                drained = true;
                break;
            }
            continue;
        }
        if (n == 0) {
            c->peer_eof = true;
            drained = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            drained = true;
            break;
        }
        conn_close(c, errno == ECONNRESET ? "reset" : "read error");
        return;
    }
    if (!drained && conn_edge(c))
        c->rd_more = true; /* the iteration cap or a busy pause: not all bytes were read */
    conn_process(c);
    conn_resume_read(c);
}

/* HANDSHAKE step: on completion the connection reads its first request. */
static void conn_handshake(http_conn_t *c)
{
    uint32_t want = 0;
    char err[256];
    int rc = htls_handshake(c->tls, &want, err, sizeof err);
    if (rc == ST_AGAIN) {
        c->tls_want = want;
        conn_update_events(c);
        return;
    }
    if (rc != ST_OK) {
        c->tls_flags |= TLS_FATAL;
        if (SY_LOG_DEBUG_ENABLED())
            sy_debug("http.tls.handshake_failed", "fd=%d peer=%s err=\"%s\"", c->fd, c->peer, err);
        conn_close(c, "tls handshake failed");
        return;
    }
    c->tls_flags |= TLS_UP;
    if (SY_LOG_DEBUG_ENABLED()) {
        char alpn[32];
        sy_debug("http.tls.up", "fd=%d peer=%s version=%s alpn=\"%s\"", c->fd, c->peer,
                 htls_version(c->tls), htls_alpn(c->tls, alpn, sizeof alpn));
    }
    rd_timer_cancel(c);
    set_state(c, CS_READING_HEAD);
    rd_timer_arm(c, RD_IDLE, c->srv->cfg.idle_timeout_ms);
    conn_read(c); /* the request may have come with the client's last handshake flight */
}

/* conn_on_io for TLS connections: the handshake, and events OpenSSL asked for. */
static void conn_on_io_tls(http_conn_t *c, uint32_t events)
{
    if (c->state == CS_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if ((events & EV_WRITE) || ((events & EV_READ) && (c->tls_flags & TLS_WR_WANTS_READ)))
        conn_flush(c);
    if (c->state == CS_CLOSING)
        return;
    if ((events & EV_READ) || ((events & EV_WRITE) && (c->tls_flags & TLS_RD_WANTS_WRITE)))
        conn_read(c);
    else if (events & EV_ERROR)
        conn_close(c, "hangup");
}

static void conn_on_io(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    http_conn_t *c = udata;
    if (c->state == CS_CLOSING)
        return;
    if (c->tls) {
        conn_on_io_tls(c, events);
        return;
    }
    if (events & EV_WRITE)
        conn_flush(c);
    if (c->state == CS_CLOSING)
        return;
    if (events & EV_READ) {
        conn_read(c);
    } else if (events & EV_ERROR) {
        /* reading is paused (busy) but the socket failed or hung up completely */
        conn_close(c, "hangup");
    }
}

/* ---- timers ---- */

static void on_rd_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    http_conn_t *c = udata;
    rd_kind_t kind = c->rd_kind;
    c->rd_timer = 0;
    c->rd_kind = RD_NONE;
    switch (kind) {
    case RD_IDLE:
        if (c->state == CS_READING_HEAD && c->in.len == 0)
            conn_close(c, "idle timeout");
        break;
    case RD_READ:
        if (c->state == CS_READING_HEAD || c->state == CS_READING_BODY)
            conn_send_error(c, 408, "Request timed out");
        break;
    case RD_LINGER:
        conn_close(c, "linger timeout");
        break;
    case RD_HANDSHAKE:
        if (c->state == CS_HANDSHAKE)
            conn_close(c, "tls handshake timeout");
        break;
    case RD_NONE:
        break;
    }
}

static void on_wr_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    http_conn_t *c = udata;
    c->wr_timer = 0;
    if (c->state == CS_CLOSING || out_pending(c) == 0)
        return;
    uint64_t now = ev_now_ms(loop), limit = c->srv->cfg.idle_timeout_ms;
    if (now - c->wr_progress_ms >= limit) {
        conn_close(c, "write stalled");
        return;
    }
    c->wr_timer = ev_timer_add(loop, limit - (now - c->wr_progress_ms), on_wr_timer, c);
}

static void on_pend_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    http_server_t *srv = udata;
    srv->pend_timer = 0;
    http_conn_t *c = srv->pend_head;
    srv->pend_head = srv->pend_tail = NULL;
    while (c) {
        http_conn_t *next = c->pend_next;
        unsigned flags = c->pend_flags;
        c->pend_flags = 0;
        c->in_pending = false;
        c->pend_next = NULL;
        if (flags & PEND_REAP) {
            conn_reap(c);
        } else {
            if (flags & PEND_PROCESS)
                conn_process(c);
            if ((flags & PEND_READ) && c->state != CS_CLOSING && c->state != CS_HANDSHAKE &&
                c->state != CS_LINGERING)
                conn_read(c);
            if ((flags & PEND_WRITABLE) && c->state != CS_CLOSING)
                fire_on_writable(c);
        }
        c = next;
    }
}

/* ---- accept ---- */

static void on_accept(ev_loop_t *loop, int fd, uint32_t events, void *udata);

static void listener_pause(http_server_t *srv)
{
    if (srv->lfd >= 0 && !srv->listen_paused && ev_fd_mod(srv->loop, srv->lfd, 0) == ST_OK)
        srv->listen_paused = true;
}

static void listener_resume(http_server_t *srv)
{
    if (srv->lfd >= 0 && srv->listen_paused && ev_fd_mod(srv->loop, srv->lfd, EV_READ) == ST_OK)
        srv->listen_paused = false;
}

static void on_resume_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    http_server_t *srv = udata;
    srv->resume_timer = 0;
    if (srv->n_conns < srv->cfg.max_connections)
        listener_resume(srv);
}

static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(out, cap, "unknown");
    }
}

static void conn_new(http_server_t *srv, int fd, const struct sockaddr_storage *ss)
{
    http_conn_t *c = sy_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    peer_text(ss, c->peer, sizeof c->peer);
    if (srv->tls) {
        c->tls = htls_server_conn_new(srv->tls, fd);
        c->tls_want = EV_READ;
        if (!c->tls) {
            sy_warn("http.tls.conn_failed", "peer=%s err=nomem", c->peer);
            sy_free(c);
            close(fd);
            return;
        }
    }
    if (ev_fd_add(srv->loop, fd, EV_READ | (c->tls ? 0u : EV_EDGE), conn_on_io, c) != ST_OK) {
        htls_conn_free(c->tls, false);
        sy_free(c);
        close(fd);
        return;
    }
    c->ev_mask = EV_READ;
    c->state = c->tls ? CS_HANDSHAKE : CS_READING_HEAD;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    if (c->tls)
        rd_timer_arm(c, RD_HANDSHAKE, srv->cfg.read_timeout_ms);
    else
        rd_timer_arm(c, RD_IDLE, srv->cfg.idle_timeout_ms);
    if (SY_LOG_DEBUG_ENABLED())
        sy_debug("http.conn.open", "fd=%d peer=%s", fd, c->peer);
}

static void on_accept(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    http_server_t *srv = udata;
    for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
        if (srv->n_conns >= srv->cfg.max_connections) {
            listener_pause(srv);
            return;
        }
        struct sockaddr_storage ss = {0};
        socklen_t sl = sizeof ss;
        int cfd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            sy_warn("http.accept", "err=\"%s\"", strerror(e));
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* level-triggered: back off instead of spinning on the full backlog */
                listener_pause(srv);
                if (!srv->resume_timer)
                    srv->resume_timer =
                        ev_timer_add(loop, HTTP_ACCEPT_BACKOFF_MS, on_resume_timer, srv);
            }
            return;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_new(srv, cfd, &ss);
    }
}

/* ---- server ---- */

void http_server_config_default(http_server_config_t *cfg)
{
    cfg->max_head_bytes = 16384;
    cfg->max_headers = 64;
    cfg->max_body_bytes = (size_t)8 << 20;
    cfg->read_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->write_high_water = (size_t)256 << 10;
    cfg->max_connections = 100000;
}

http_server_t *http_server_create(ev_loop_t *loop, const http_server_config_t *cfg,
                                  http_on_request_cb on_request, void *udata)
{
    if (!loop || !on_request)
        return NULL;
    http_server_t *srv = sy_calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    http_server_config_t d;
    http_server_config_default(&d);
    if (cfg) {
        /* zero fields keep their defaults */
        srv->cfg = *cfg;
        if (!srv->cfg.max_head_bytes)
            srv->cfg.max_head_bytes = d.max_head_bytes;
        if (!srv->cfg.max_headers)
            srv->cfg.max_headers = d.max_headers;
        if (!srv->cfg.max_body_bytes)
            srv->cfg.max_body_bytes = d.max_body_bytes;
        if (!srv->cfg.read_timeout_ms)
            srv->cfg.read_timeout_ms = d.read_timeout_ms;
        if (!srv->cfg.idle_timeout_ms)
            srv->cfg.idle_timeout_ms = d.idle_timeout_ms;
        if (!srv->cfg.write_high_water)
            srv->cfg.write_high_water = d.write_high_water;
        if (!srv->cfg.max_connections)
            srv->cfg.max_connections = d.max_connections;
    } else {
        srv->cfg = d;
    }
    if (srv->cfg.max_headers > HTTP_MAX_HEADERS_HARD)
        srv->cfg.max_headers = HTTP_MAX_HEADERS_HARD;
    srv->lim.max_head_bytes = srv->cfg.max_head_bytes;
    srv->lim.max_headers = srv->cfg.max_headers;
    srv->loop = loop;
    srv->on_request = on_request;
    srv->udata = udata;
    srv->lfd = -1;
    return srv;
}

int http_server_listen(http_server_t *srv, const char *host, int port)
{
    if (srv->lfd >= 0)
        return ST_STATE;
    if (port < 0 || port > 65535)
        return ST_INVAL;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host ? host : "0.0.0.0", port_s, &hints, &res) != 0 || !res)
        return ST_INVAL;
    int rc = ST_INVAL, fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) {
            rc = ST_OK;
            break;
        }
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (rc != ST_OK)
        return rc;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } addr;
    memset(&addr, 0, sizeof addr);
    socklen_t sl = sizeof addr;
    if (getsockname(fd, &addr.sa, &sl) != 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    srv->port = ntohs(addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port);
    rc = ev_fd_add(srv->loop, fd, EV_READ, on_accept, srv);
    if (rc != ST_OK) {
        close(fd);
        return rc;
    }
    srv->lfd = fd;
    srv->listen_paused = false;
    sy_info("http.listen", "addr=%s:%d", host ? host : "0.0.0.0", srv->port);
    return ST_OK;
}

void http_server_set_tls(http_server_t *srv, htls_server_t *tls)
{
    srv->tls = tls;
}

int http_server_port(const http_server_t *srv)
{
    return srv->port;
}

static void listener_close(http_server_t *srv)
{
    if (srv->resume_timer)
        ev_timer_cancel(srv->loop, srv->resume_timer);
    srv->resume_timer = 0;
    if (srv->lfd >= 0) {
        ev_fd_del(srv->loop, srv->lfd);
        close(srv->lfd);
        srv->lfd = -1;
    }
}

void http_server_stop_accepting(http_server_t *srv)
{
    listener_close(srv);
    srv->draining = true;
    for (http_conn_t *c = srv->conns; c; c = c->next)
        if ((c->state == CS_READING_HEAD && c->in.len == 0) || c->state == CS_HANDSHAKE)
            conn_close(c, "draining");
}

size_t http_server_num_connections(const http_server_t *srv)
{
    return srv->n_conns;
}

size_t http_server_num_active(const http_server_t *srv)
{
    return srv->n_active;
}

void http_server_destroy(http_server_t *srv)
{
    if (!srv)
        return;
    listener_close(srv);
    /* first every connection goes CLOSING (so handler calls made from on_close are no-ops on
     * any connection), then each is reaped (delivering on_close) */
    srv->destroying = true;
    for (http_conn_t *c = srv->conns; c; c = c->next)
        conn_close(c, "server destroyed");
    if (srv->pend_timer)
        ev_timer_cancel(srv->loop, srv->pend_timer);
    srv->pend_timer = 0;
    for (http_conn_t *c = srv->pend_head; c; c = c->pend_next)
        c->in_pending = false;
    srv->pend_head = srv->pend_tail = NULL;
    while (srv->conns)
        conn_reap(srv->conns);
    while (srv->free_reqs) {
        http_req_t *req = srv->free_reqs;
        srv->free_reqs = req->free_next;
        sy_buf_deinit(&req->body);
        sy_free(req);
    }
    sy_buf_deinit(&srv->head_scratch);
    sy_free(srv);
}

/* ---- request accessors ---- */

sy_slice_t http_req_method(const http_req_t *req)
{
    return req->head.method;
}

sy_slice_t http_req_path(const http_req_t *req)
{
    return req->path;
}

sy_slice_t http_req_query(const http_req_t *req)
{
    return req->query;
}

bool http_req_header(const http_req_t *req, const char *name, sy_slice_t *value)
{
    const http_header_t *h = http_find_header(req->head.headers, req->head.num_headers, name);
    if (!h)
        return false;
    if (value)
        *value = h->value;
    return true;
}

sy_slice_t http_req_body(const http_req_t *req)
{
    if (!req->body.data)
        return (sy_slice_t){"", 0};
    return (sy_slice_t){req->body.data, req->body.len};
}

const char *http_req_peer(const http_req_t *req)
{
    return req->conn->peer;
}

uint64_t http_req_start_ns(const http_req_t *req)
{
    return req->start_ns;
}

void http_req_set_udata(http_req_t *req, void *udata)
{
    req->udata = udata;
}

void *http_req_get_udata(const http_req_t *req)
{
    return req->udata;
}

void http_req_set_on_close(http_req_t *req, http_req_cb cb, void *udata)
{
    req->on_close = cb;
    req->on_close_ud = udata;
}

bool http_req_writable(const http_req_t *req)
{
    const http_conn_t *c = req->conn;
    if (req->gone || c->state == CS_CLOSING)
        return false;
    return out_pending(c) < c->srv->cfg.write_high_water;
}

void http_req_set_on_writable(http_req_t *req, http_req_cb cb, void *udata)
{
    req->on_writable = cb;
    req->on_writable_ud = udata;
    /* already below the mark: no drain event will come, so notify from the deferred queue */
    if (cb && !req->gone && http_req_writable(req))
        pend_add(req->conn, PEND_WRITABLE);
}

/* ---- answers ---- */

/* Common prologue: ST_OK when the exchange may still answer, else the status to return. */
static int req_check(http_req_t *req, bool want_streaming)
{
    if (req->in_on_close)
        return ST_CLOSED;
    if (!req->dispatched || req->streaming != want_streaming)
        return ST_STATE;
    return ST_OK;
}

static int append_connection_header(sy_buf_t *h, const http_req_t *req, bool close)
{
    if (close)
        return sy_buf_append_str(h, "Connection: close\r\n");
    if (req->head.minor_version == 0)
        return sy_buf_append_str(h, "Connection: keep-alive\r\n");
    return ST_OK;
}

int http_req_respond(http_req_t *req, int status, const char *content_type, const char *body,
                     size_t body_len, const char *extra_headers)
{
    int rc = req_check(req, false);
    if (rc != ST_OK)
        return rc;
    http_conn_t *c = req->conn;
    if (req->gone) {
        exchange_end(c);
        return ST_CLOSED;
    }
    bool no_body = status < 200 || status == 204 || status == 304;
    bool close = !req->keep_alive || c->srv->draining || c->peer_eof;
    /* the head is built in the server's scratch buffer: conn_write copies what it cannot send */
    sy_buf_t h = c->srv->head_scratch;
    c->srv->head_scratch = (sy_buf_t)SY_BUF_INIT; /* taken: nested use would allocate its own */
    sy_buf_reset(&h);
    rc = sy_buf_append_str(&h, "HTTP/1.1 ");
    if (rc == ST_OK)
        rc = sy_buf_append_i64(&h, status);
    if (rc == ST_OK)
        rc = sy_buf_append_char(&h, ' ');
    if (rc == ST_OK)
        rc = sy_buf_append_str(&h, http_status_reason(status));
    if (rc == ST_OK && content_type) {
        rc = sy_buf_append_str(&h, "\r\nContent-Type: ");
        if (rc == ST_OK)
            rc = sy_buf_append_str(&h, content_type);
    }
    if (rc == ST_OK && !no_body) {
        rc = sy_buf_append_str(&h, "\r\nContent-Length: ");
        if (rc == ST_OK)
            rc = sy_buf_append_i64(&h, (int64_t)body_len);
    }
    if (rc == ST_OK)
        rc = sy_buf_append(&h, "\r\n", 2);
    if (rc == ST_OK)
        rc = append_connection_header(&h, req, close);
    if (rc == ST_OK && extra_headers)
        rc = sy_buf_append_str(&h, extra_headers);
    if (rc == ST_OK)
        rc = sy_buf_append(&h, "\r\n", 2);
    if (rc != ST_OK) {
        sy_buf_deinit(&h);
        conn_close(c, "out of memory");
        exchange_end(c);
        return ST_NOMEM;
    }
    struct iovec iov[2] = {{h.data, h.len}, {(void *)body, body_len}};
    int iovcnt = (no_body || req->head_method || body_len == 0) ? 1 : 2;
    c->close_after = close;
    /* the exchange ends once the response is queued; body may point into req, so write first */
    http_req_t *r = c->req;
    c->req = NULL;
    set_state(c, CS_WRITING);
    rc = conn_write(c, iov, iovcnt);
    c->req = r;
    exchange_end(c);
    if (h.cap <= 65536 && c->srv->head_scratch.cap == 0)
        c->srv->head_scratch = h; /* given back for the next response */
    else
        sy_buf_deinit(&h);
    if (c->state == CS_WRITING && out_pending(c) == 0)
        conn_response_done(c);
    return rc == ST_OK ? ST_OK : ST_CLOSED;
}

int http_req_respond_error(http_req_t *req, int status, const char *type, const char *message,
                           const char *param)
{
    return http_req_respond_error_hdr(req, status, type, message, param, NULL);
}

int http_req_respond_error_hdr(http_req_t *req, int status, const char *type, const char *message,
                               const char *param, const char *extra_headers)
{
    int rc = req_check(req, false);
    if (rc != ST_OK)
        return rc;
    sy_buf_t b = SY_BUF_INIT;
    rc = build_error_body(&b, status, type, message, param);
    if (rc != ST_OK) {
        sy_buf_deinit(&b);
        /* still end the exchange, with a body-less answer */
        return http_req_respond(req, 503, "application/json", "", 0, NULL);
    }
    rc = http_req_respond(req, status, "application/json", b.data, b.len, extra_headers);
    sy_buf_deinit(&b);
    return rc;
}

int http_req_sse_start(http_req_t *req, const char *extra_headers)
{
    int rc = req_check(req, false);
    if (rc != ST_OK)
        return rc;
    http_conn_t *c = req->conn;
    if (req->gone)
        return ST_CLOSED;
    req->chunked_out = req->head.minor_version >= 1;
    bool close = !req->keep_alive || c->srv->draining || !req->chunked_out;
    c->close_after = close;
    sy_buf_t h = SY_BUF_INIT;
    rc = sy_buf_append_str(&h, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n");
    if (rc == ST_OK && req->chunked_out)
        rc = sy_buf_append_str(&h, "Transfer-Encoding: chunked\r\n");
    if (rc == ST_OK)
        rc = append_connection_header(&h, req, close);
    if (rc == ST_OK && extra_headers)
        rc = sy_buf_append_str(&h, extra_headers);
    if (rc == ST_OK)
        rc = sy_buf_append(&h, "\r\n", 2);
    if (rc != ST_OK) {
        sy_buf_deinit(&h);
        conn_close(c, "out of memory");
        return ST_CLOSED;
    }
    req->streaming = true;
    set_state(c, CS_STREAMING);
    struct iovec iov = {h.data, h.len};
    rc = conn_write(c, &iov, 1);
    sy_buf_deinit(&h);
    return rc == ST_OK ? ST_OK : ST_CLOSED;
}

int http_req_sse_send(http_req_t *req, const char *data, size_t len)
{
    int rc = req_check(req, true);
    if (rc != ST_OK)
        return rc;
    http_conn_t *c = req->conn;
    if (req->gone || c->state == CS_CLOSING)
        return ST_CLOSED;
    if (len == 0)
        return ST_OK; /* an empty chunk would end the stream */
    char size_line[24];
    struct iovec iov[3];
    int n = 0;
    if (req->chunked_out) {
        int k = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        iov[n++] = (struct iovec){size_line, (size_t)k};
    }
    iov[n++] = (struct iovec){(void *)data, len};
    if (req->chunked_out)
        iov[n++] = (struct iovec){(void *)"\r\n", 2};
    rc = conn_write(c, iov, n);
    return rc == ST_OK ? ST_OK : ST_CLOSED;
}

int http_req_sse_end(http_req_t *req)
{
    int rc = req_check(req, true);
    if (rc != ST_OK)
        return rc;
    http_conn_t *c = req->conn;
    if (req->gone || c->state == CS_CLOSING) {
        exchange_end(c);
        return ST_CLOSED;
    }
    bool chunked = req->chunked_out;
    exchange_end(c);
    set_state(c, CS_WRITING);
    rc = ST_OK;
    if (chunked) {
        struct iovec iov = {(void *)"0\r\n\r\n", 5};
        rc = conn_write(c, &iov, 1);
    }
    if (c->state == CS_WRITING && out_pending(c) == 0)
        conn_response_done(c);
    return rc == ST_OK ? ST_OK : ST_CLOSED;
}
