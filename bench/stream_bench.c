/*
 * stream_bench.c - sy-stream-bench: a standalone streaming load generator for vLLM-style
 * servers. It opens C keep-alive connections and on each runs streaming POST /v1/completions
 * requests back to back until R requests have completed, parsing every response incrementally
 * (HTTP/1.1 status line and headers, chunked / Content-Length / until-close bodies, then SSE).
 *
 * Requests ask for stream_options.include_usage, because a server may merge several tokens into
 * one SSE event when the client lags (vLLM does), so events are not tokens. A request succeeds
 * when the status is 200, the SSE stream carries a chunk with a non-null finish_reason, a usage
 * chunk whose completion_tokens equals max_tokens (ignore_eos is set), and ends with
 * "data: [DONE]", and the body ends cleanly. Everything else (non-200, malformed framing, an
 * in-band error event, missing usage, early close, connect failure) is an error.
 * tokens = sum of usage.completion_tokens; text_events = "data:" events with a non-empty "text".
 *
 * Output: one JSON summary line on stdout; exit status 1 if any request errored, 2 on bad usage.
 * Does not: use any project module, speak TLS, or measure latency percentiles.
 * Thread-safety: single-threaded, one epoll loop; all sockets non-blocking, edge-triggered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SB_MAX_HEADER_BYTES 16384
#define SB_MAX_EVENT_BYTES (1u << 20)
#define SB_MAX_ERRORS_SHOWN 8

typedef enum sb_conn_state {
    SB_IDLE,       /* no socket */
    SB_CONNECTING, /* non-blocking connect in progress */
    SB_ACTIVE,     /* request being written and/or response being read */
} sb_conn_state_t;

typedef enum sb_resp_state {
    SB_R_HEAD,        /* reading status line and headers */
    SB_R_CHUNK_SIZE,  /* chunked: reading a chunk-size line */
    SB_R_CHUNK_DATA,  /* chunked: inside chunk data */
    SB_R_CHUNK_CRLF,  /* chunked: CRLF after chunk data */
    SB_R_TRAILER,     /* chunked: trailer lines until an empty line */
    SB_R_LENGTH,      /* Content-Length body */
    SB_R_UNTIL_CLOSE, /* body delimited by connection close */
    SB_R_DONE,
} sb_resp_state_t;

typedef struct sb_buf {
    char *p;
    size_t len, cap;
} sb_buf_t;

typedef struct sb_conn {
    int fd;
    int idx;
    sb_conn_state_t state;
    /* request being sent */
    size_t woff;
    bool in_flight;
    /* response parse state */
    sb_resp_state_t rstate;
    sb_buf_t rbuf;  /* raw bytes not consumed yet */
    sb_buf_t event; /* SSE bytes of the current (unfinished) event */
    int status;
    bool keep_alive;
    uint64_t remaining; /* chunk or content-length bytes left */
    /* per-request SSE verdict */
    bool done_seen;
    bool finish_seen;
    bool after_done; /* data after [DONE] */
    bool bad;        /* error already decided for this request */
    bool restart_queued;
    uint64_t text_events;
    int64_t usage_tokens; /* -1 until a usage chunk arrives */
} sb_conn_t;

typedef struct sb_opts {
    const char *host;
    const char *port;
    const char *model;
    const char *path;
    int concurrency;
    long requests;
    int max_tokens;
    int prompt_len;
    double timeout_s;
} sb_opts_t;

static sb_opts_t g_opt = {"127.0.0.1", "8000", "sim", "/v1/completions", 8, 100, 64, 64, 600.0};
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static int g_ep = -1;
static long g_issued, g_completed, g_errors;
static uint64_t g_tokens, g_text_events;
static int g_errors_shown;
static int g_open_conns, g_peak_open_conns;

/* Connections waiting to be (re)opened; drained by the main loop, so that a failing connect
 * never recurses. */
static int *g_restart;
static int g_n_restart;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_nomem(void)
{
    fprintf(stderr, "sy-stream-bench: out of memory\n");
    exit(2);
}

static void buf_reserve(sb_buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + extra)
        ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np)
        die_nomem();
    b->p = np;
    b->cap = ncap;
}

static void buf_append(sb_buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_consume(sb_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void buf_free(sb_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* The request bytes, built per request (the prompt starts with the request number so that
 * requests do not all share one cached prefix). */
static sb_buf_t g_req;

static void build_request(long reqno)
{
    char head[64];
    int hn = snprintf(head, sizeof head, "request %ld:", reqno);
    static const char filler[] = " the quick brown fox jumps over the lazy dog";
    sb_buf_t body = {0};
    char tmp[512];
    int n = snprintf(tmp, sizeof tmp, "{\"model\":\"%s\",\"prompt\":\"", g_opt.model);
    buf_append(&body, tmp, (size_t)n);
    int plen = g_opt.prompt_len;
    if (hn > plen)
        hn = plen;
    buf_append(&body, head, (size_t)hn);
    for (int i = hn; i < plen; i++)
        buf_append(&body, &filler[(i - hn) % (int)(sizeof filler - 1)], 1);
    n = snprintf(tmp, sizeof tmp,
                 "\",\"max_tokens\":%d,\"ignore_eos\":true,\"stream\":true,"
                 "\"stream_options\":{\"include_usage\":true}}",
                 g_opt.max_tokens);
    buf_append(&body, tmp, (size_t)n);

    g_req.len = 0;
    n = snprintf(tmp, sizeof tmp,
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                 "Accept: text/event-stream\r\nContent-Length: %zu\r\n\r\n",
                 g_opt.path, g_opt.host, g_opt.port, body.len);
    buf_append(&g_req, tmp, (size_t)n);
    buf_append(&g_req, body.p, body.len);
    buf_free(&body);
}

static void report_error(const sb_conn_t *c, const char *what)
{
    if (g_errors_shown >= SB_MAX_ERRORS_SHOWN)
        return;
    g_errors_shown++;
    fprintf(stderr, "sy-stream-bench: conn %d: %s (status %d)\n", c->idx, what, c->status);
}

static void conn_close(sb_conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        g_open_conns--;
    }
    c->state = SB_IDLE;
    c->rbuf.len = 0;
    c->event.len = 0;
}

static void resp_reset(sb_conn_t *c)
{
    c->rstate = SB_R_HEAD;
    c->status = 0;
    c->keep_alive = true;
    c->remaining = 0;
    c->done_seen = c->finish_seen = c->after_done = c->bad = false;
    c->text_events = 0;
    c->usage_tokens = -1;
    c->event.len = 0;
}

/* Finishes the in-flight request of c: ok decides success; counts it. */
static void request_done(sb_conn_t *c, bool ok, const char *why)
{
    if (!c->in_flight)
        return;
    c->in_flight = false;
    g_completed++;
    if (ok && !c->bad) {
        g_tokens += (uint64_t)c->usage_tokens;
        g_text_events += c->text_events;
    } else {
        g_errors++;
        report_error(c, why ? why : "bad stream");
    }
}

/* Skips JSON whitespace. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Finds "key" followed by ':' in [p,end); returns a pointer to the value or NULL. */
static const char *json_find_value(const char *p, const char *end, const char *key)
{
    size_t kl = strlen(key);
    while (p < end) {
        const char *q = memmem(p, (size_t)(end - p), key, kl);
        if (!q)
            return NULL;
        const char *v = skip_ws(q + kl, end);
        if (v < end && *v == ':')
            return skip_ws(v + 1, end);
        p = q + kl;
    }
    return NULL;
}

/* Handles the payload of one "data:" line. */
static void sse_data(sb_conn_t *c, const char *d, size_t n)
{
    const char *end = d + n;
    if (c->done_seen) {
        c->after_done = true;
        c->bad = true;
        return;
    }
    if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
        c->done_seen = true;
        return;
    }
    const char *s = skip_ws(d, end);
    if (s >= end || *s != '{' || end[-1] != '}') {
        c->bad = true;
        return;
    }
    if (json_find_value(d, end, "\"error\"")) {
        c->bad = true;
        return;
    }
    const char *t = json_find_value(d, end, "\"text\"");
    if (t && t + 1 < end && t[0] == '"' && t[1] != '"')
        c->text_events++;
    const char *u = json_find_value(d, end, "\"usage\"");
    if (u && u < end && *u == '{') {
        const char *ct = json_find_value(u, end, "\"completion_tokens\"");
        if (!ct || ct >= end || *ct < '0' || *ct > '9') {
            c->bad = true;
            return;
        }
        c->usage_tokens = strtoll(ct, NULL, 10);
    }
    const char *f = json_find_value(d, end, "\"finish_reason\"");
    if (f && f < end && *f == '"')
        c->finish_seen = true;
}

/* Handles one complete SSE event (without its terminating blank line). */
static void sse_event(sb_conn_t *c, const char *e, size_t n)
{
    const char *p = e, *end = e + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *ls = p;
        size_t ll = (size_t)(le - ls);
        if (ll && ls[ll - 1] == '\r')
            ll--;
        if (ll >= 5 && memcmp(ls, "data:", 5) == 0) {
            const char *v = ls + 5;
            size_t vl = ll - 5;
            if (vl && *v == ' ') {
                v++;
                vl--;
            }
            sse_data(c, v, vl);
        } else if (ll && ls[0] != ':') {
            c->bad = true; /* vLLM sends data lines only */
        }
        p = nl ? nl + 1 : end;
    }
}

/* Feeds decoded body bytes to the SSE splitter. */
static void sse_feed(sb_conn_t *c, const char *s, size_t n)
{
    if (c->status != 200)
        return; /* error bodies are not SSE */
    buf_append(&c->event, s, n);
    size_t start = 0;
    for (;;) {
        char *p = c->event.p + start;
        size_t left = c->event.len - start;
        char *sep = memmem(p, left, "\n\n", 2);
        char *sep2 = memmem(p, left, "\r\n\r\n", 4);
        size_t seplen = 2;
        if (sep2 && (!sep || sep2 < sep)) {
            sep = sep2;
            seplen = 4;
        }
        if (!sep)
            break;
        sse_event(c, p, (size_t)(sep - p));
        start += (size_t)(sep - p) + seplen;
    }
    buf_consume(&c->event, start);
    if (c->event.len > SB_MAX_EVENT_BYTES)
        c->bad = true;
}

/* Parses the status line and headers in rbuf. Returns 1 when complete, 0 if more bytes are
 * needed, -1 on malformed input. */
static int parse_head(sb_conn_t *c)
{
    char *hend = memmem(c->rbuf.p, c->rbuf.len, "\r\n\r\n", 4);
    if (!hend)
        return c->rbuf.len > SB_MAX_HEADER_BYTES ? -1 : 0;
    size_t hlen = (size_t)(hend - c->rbuf.p) + 4;
    char *line = c->rbuf.p;
    char *eol = memmem(line, hlen, "\r\n", 2);
    if ((size_t)(eol - line) < 12 || strncmp(line, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(line + 9);
    if (c->status < 100 || c->status > 599)
        return -1;
    c->keep_alive = line[7] == '1';
    bool chunked = false, have_len = false;
    uint64_t clen = 0;
    line = eol + 2;
    while (line < hend) {
        eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
        size_t ll = (size_t)(eol - line);
        char *colon = memchr(line, ':', ll);
        if (!colon)
            return -1;
        size_t nl = (size_t)(colon - line);
        char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        size_t vl = (size_t)(eol - v);
        if (nl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            if (vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0)
                chunked = true;
        } else if (nl == 14 && strncasecmp(line, "content-length", 14) == 0) {
            char *e2;
            errno = 0;
            unsigned long long x = strtoull(v, &e2, 10);
            if (errno || e2 == v)
                return -1;
            clen = x;
            have_len = true;
        } else if (nl == 10 && strncasecmp(line, "connection", 10) == 0) {
            if (vl >= 5 && strncasecmp(v, "close", 5) == 0)
                c->keep_alive = false;
            else if (vl >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
                c->keep_alive = true;
        }
        line = eol + 2;
    }
    buf_consume(&c->rbuf, hlen);
    if (c->status == 100) { /* interim response: read the real one */
        c->status = 0;
        return parse_head(c);
    }
    if (chunked) {
        c->rstate = SB_R_CHUNK_SIZE;
    } else if (have_len) {
        c->rstate = clen ? SB_R_LENGTH : SB_R_DONE;
        c->remaining = clen;
    } else {
        c->rstate = SB_R_UNTIL_CLOSE;
        c->keep_alive = false;
    }
    return 1;
}

/* Runs the response state machine over rbuf. Returns 0 to continue, 1 when the response is
 * complete, -1 on a protocol error. */
static int parse_resp(sb_conn_t *c)
{
    for (;;) {
        switch (c->rstate) {
        case SB_R_HEAD: {
            int r = parse_head(c);
            if (r <= 0)
                return r;
            break;
        }
        case SB_R_CHUNK_SIZE: {
            char *eol = memmem(c->rbuf.p, c->rbuf.len, "\r\n", 2);
            if (!eol)
                return c->rbuf.len > 1024 ? -1 : 0;
            char *e2;
            errno = 0;
            unsigned long long sz = strtoull(c->rbuf.p, &e2, 16);
            if (errno || e2 == c->rbuf.p || (e2 != eol && *e2 != ';' && *e2 != ' '))
                return -1;
            buf_consume(&c->rbuf, (size_t)(eol - c->rbuf.p) + 2);
            c->remaining = sz;
            c->rstate = sz ? SB_R_CHUNK_DATA : SB_R_TRAILER;
            break;
        }
        case SB_R_CHUNK_DATA:
        case SB_R_LENGTH: {
            if (c->rbuf.len == 0)
                return 0;
            size_t n = c->rbuf.len < c->remaining ? c->rbuf.len : (size_t)c->remaining;
            sse_feed(c, c->rbuf.p, n);
            buf_consume(&c->rbuf, n);
            c->remaining -= n;
            if (c->remaining == 0)
                c->rstate = c->rstate == SB_R_LENGTH ? SB_R_DONE : SB_R_CHUNK_CRLF;
            break;
        }
        case SB_R_CHUNK_CRLF:
            if (c->rbuf.len < 2)
                return 0;
            if (c->rbuf.p[0] != '\r' || c->rbuf.p[1] != '\n')
                return -1;
            buf_consume(&c->rbuf, 2);
            c->rstate = SB_R_CHUNK_SIZE;
            break;
        case SB_R_TRAILER: {
            char *eol = memmem(c->rbuf.p, c->rbuf.len, "\r\n", 2);
            if (!eol)
                return c->rbuf.len > SB_MAX_HEADER_BYTES ? -1 : 0;
            size_t ll = (size_t)(eol - c->rbuf.p);
            buf_consume(&c->rbuf, ll + 2);
            if (ll == 0)
                c->rstate = SB_R_DONE;
            break;
        }
        case SB_R_UNTIL_CLOSE:
            if (c->rbuf.len == 0)
                return 0;
            sse_feed(c, c->rbuf.p, c->rbuf.len);
            c->rbuf.len = 0;
            return 0;
        case SB_R_DONE:
            return 1;
        }
    }
}

static bool stream_verdict(sb_conn_t *c, const char **why)
{
    if (c->status != 200) {
        *why = "non-200 status";
        return false;
    }
    if (c->bad) {
        *why = c->after_done ? "data after [DONE]" : "malformed or error event";
        return false;
    }
    if (c->event.len) {
        *why = "unterminated SSE event";
        return false;
    }
    if (!c->finish_seen) {
        *why = "no chunk with finish_reason";
        return false;
    }
    if (c->usage_tokens < 0) {
        *why = "no usage chunk (stream_options.include_usage)";
        return false;
    }
    if (c->usage_tokens != g_opt.max_tokens) {
        *why = "usage.completion_tokens != max_tokens despite ignore_eos";
        return false;
    }
    if (!c->done_seen) {
        *why = "stream did not end with data: [DONE]";
        return false;
    }
    return true;
}

static void conn_start(sb_conn_t *c);

static void conn_restart_later(sb_conn_t *c)
{
    if (c->restart_queued)
        return;
    c->restart_queued = true;
    g_restart[g_n_restart++] = c->idx;
}

/* Starts the next request on an open connection, or closes it when none is left. */
static void conn_next(sb_conn_t *c)
{
    if (g_issued >= g_opt.requests) {
        conn_close(c);
        return;
    }
    g_issued++;
    c->in_flight = true;
    c->woff = 0;
    resp_reset(c);
}

/* Each connection keeps its own copy of the request bytes it is sending (they differ per
 * request through the prompt prefix). */
typedef struct sb_wbuf {
    sb_buf_t b;
} sb_wbuf_t;
static sb_wbuf_t *g_wbufs;

static int conn_flush(sb_conn_t *c)
{
    sb_buf_t *w = &g_wbufs[c->idx].b;
    while (c->in_flight && c->woff < w->len) {
        ssize_t n = send(c->fd, w->p + c->woff, w->len - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
    return 0;
}

static void conn_prepare_request(sb_conn_t *c)
{
    build_request(g_issued);
    sb_buf_t *w = &g_wbufs[c->idx].b;
    w->len = 0;
    buf_append(w, g_req.p, g_req.len);
}

static void conn_fail(sb_conn_t *c, const char *why)
{
    request_done(c, false, why);
    conn_close(c);
    conn_restart_later(c);
}

/* Opens a connection for c if requests remain. */
static void conn_start(sb_conn_t *c)
{
    if (g_issued >= g_opt.requests)
        return;
    int fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "sy-stream-bench: socket: %s\n", strerror(errno));
        g_issued++;
        g_completed++;
        g_errors++;
        conn_restart_later(c);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    g_open_conns++;
    if (g_open_conns > g_peak_open_conns)
        g_peak_open_conns = g_open_conns;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fprintf(stderr, "sy-stream-bench: epoll_ctl: %s\n", strerror(errno));
        exit(2);
    }
    /* the request is issued (and counted) now so a refused connect consumes one request and
     * the run always terminates */
    conn_prepare_request(c);
    conn_next(c);
    int r = connect(fd, (struct sockaddr *)&g_addr, g_addrlen);
    if (r == 0) {
        c->state = SB_ACTIVE;
    } else if (errno == EINPROGRESS) {
        c->state = SB_CONNECTING;
    } else {
        c->state = SB_ACTIVE;
        conn_fail(c, "connect failed");
    }
}

static void conn_on_event(sb_conn_t *c, uint32_t evs)
{
    if (c->state == SB_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            conn_fail(c, "connect failed");
            return;
        }
        if (!(evs & (EPOLLOUT | EPOLLIN | EPOLLHUP | EPOLLERR)))
            return;
        c->state = SB_ACTIVE;
    }
    if (c->state != SB_ACTIVE)
        return;
    if (conn_flush(c) < 0) {
        conn_fail(c, "send failed");
        return;
    }
    /* read until EAGAIN (edge-triggered) */
    for (;;) {
        buf_reserve(&c->rbuf, 65536);
        ssize_t n = recv(c->fd, c->rbuf.p + c->rbuf.len, c->rbuf.cap - c->rbuf.len, 0);
        if (n > 0) {
            c->rbuf.len += (size_t)n;
            if (!c->in_flight) {
                conn_fail(c, "unsolicited bytes");
                return;
            }
            int r = parse_resp(c);
            if (r < 0) {
                conn_fail(c, "malformed HTTP response");
                return;
            }
            if (r == 1) {
                const char *why = NULL;
                bool ok = stream_verdict(c, &why);
                request_done(c, ok, why);
                bool reuse = c->keep_alive && c->rbuf.len == 0;
                if (!reuse) {
                    conn_close(c);
                    conn_restart_later(c);
                    return;
                }
                conn_prepare_request(c);
                conn_next(c);
                if (c->fd < 0)
                    return;
                if (conn_flush(c) < 0) {
                    conn_fail(c, "send failed");
                    return;
                }
            }
            continue;
        }
        if (n == 0) { /* peer closed */
            if (c->in_flight) {
                if (c->rstate == SB_R_UNTIL_CLOSE) {
                    const char *why = NULL;
                    bool ok = stream_verdict(c, &why);
                    request_done(c, ok, why);
                } else {
                    request_done(c, false, "early close");
                }
            }
            conn_close(c);
            conn_restart_later(c);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR)
            continue;
        conn_fail(c, c->in_flight ? "connection reset" : "connection error");
        return;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sy-stream-bench [options]\n"
               "  --host H          server address (default 127.0.0.1)\n"
               "  --port P          server port (default 8000)\n"
               "  --model M         model name (default sim)\n"
               "  --path PATH       request path (default /v1/completions)\n"
               "  --concurrency C   concurrent keep-alive connections (default 8)\n"
               "  --requests R      total requests to complete (default 100)\n"
               "  --max-tokens N    max_tokens per request, ignore_eos (default 64)\n"
               "  --prompt-len L    prompt length in characters (default 64)\n"
               "  --timeout S       give up after S seconds; unfinished requests are errors "
               "(default 600)\n"
               "Prints a JSON summary line; exits 1 if any request failed.\n");
}

static long parse_long(const char *s, const char *name, long lo, long hi)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || *e || v < lo || v > hi) {
        fprintf(stderr, "sy-stream-bench: bad %s '%s' (%ld..%ld)\n", name, s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"model", required_argument, NULL, 'm'},
        {"path", required_argument, NULL, 'P'},
        {"concurrency", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"max-tokens", required_argument, NULL, 't'},
        {"prompt-len", required_argument, NULL, 'l'},
        {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "H:p:m:P:c:n:t:l:T:h", opts, NULL)) != -1) {
        switch (o) {
        case 'H':
            g_opt.host = optarg;
            break;
        case 'p':
            g_opt.port = optarg;
            break;
        case 'm':
            g_opt.model = optarg;
            break;
        case 'P':
            g_opt.path = optarg;
            break;
        case 'c':
            g_opt.concurrency = (int)parse_long(optarg, "concurrency", 1, 1000000);
            break;
        case 'n':
            g_opt.requests = parse_long(optarg, "requests", 1, 1000000000L);
            break;
        case 't':
            g_opt.max_tokens = (int)parse_long(optarg, "max-tokens", 1, 10000000);
            break;
        case 'l':
            g_opt.prompt_len = (int)parse_long(optarg, "prompt-len", 1, 10000000);
            break;
        case 'T':
            g_opt.timeout_s = (double)parse_long(optarg, "timeout", 1, 86400);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    for (const char *s = g_opt.model; *s; s++) {
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) {
            fprintf(stderr, "sy-stream-bench: model name must not need JSON escaping\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int gr = getaddrinfo(g_opt.host, g_opt.port, &hints, &ai);
    if (gr != 0 || !ai) {
        fprintf(stderr, "sy-stream-bench: %s:%s: %s\n", g_opt.host, g_opt.port, gai_strerror(gr));
        return 2;
    }
    memcpy(&g_addr, ai->ai_addr, ai->ai_addrlen);
    g_addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("epoll_create1");
        return 2;
    }
    int nc = g_opt.concurrency;
    sb_conn_t *conns = calloc((size_t)nc, sizeof *conns);
    g_wbufs = calloc((size_t)nc, sizeof *g_wbufs);
    g_restart = calloc((size_t)nc, sizeof *g_restart);
    if (!conns || !g_wbufs || !g_restart)
        die_nomem();
    double t0 = now_s();
    for (int i = 0; i < nc; i++) {
        conns[i].fd = -1;
        conns[i].idx = i;
        conns[i].state = SB_IDLE;
        conn_start(&conns[i]);
    }

    enum { MAXEV = 256 };
    struct epoll_event evs[MAXEV];
    bool timed_out = false;
    while (g_completed < g_opt.requests) {
        while (g_n_restart > 0) {
            sb_conn_t *c = &conns[g_restart[--g_n_restart]];
            c->restart_queued = false;
            if (c->fd < 0)
                conn_start(c);
        }
        if (g_completed >= g_opt.requests)
            break;
        double left = g_opt.timeout_s - (now_s() - t0);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
        int n = epoll_wait(g_ep, evs, MAXEV, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 2;
        }
        for (int i = 0; i < n; i++) {
            sb_conn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            conn_on_event(c, evs[i].events);
        }
        if (g_open_conns == 0 && g_completed < g_opt.requests && g_issued >= g_opt.requests)
            break; /* cannot happen unless accounting is wrong; avoid spinning */
    }
    double secs = now_s() - t0;
    if (timed_out) {
        fprintf(stderr, "sy-stream-bench: timeout after %.1f s, %ld of %ld requests done\n", secs,
                g_completed, g_opt.requests);
    }
    long unfinished = g_opt.requests - g_completed;
    long errors = g_errors + (unfinished > 0 ? unfinished : 0);
    for (int i = 0; i < nc; i++) {
        conn_close(&conns[i]);
        buf_free(&conns[i].rbuf);
        buf_free(&conns[i].event);
        buf_free(&g_wbufs[i].b);
    }
    free(conns);
    free(g_wbufs);
    free(g_restart);
    buf_free(&g_req);
    close(g_ep);

    if (secs <= 0)
        secs = 1e-9;
    printf("{\"connections\":%d,\"requests\":%ld,\"errors\":%ld,\"tokens\":%llu,"
           "\"seconds\":%.3f,\"tokens_per_s\":%.1f,\"requests_per_s\":%.2f,"
           "\"completed\":%ld,\"text_events\":%llu,\"peak_open_connections\":%d}\n",
           nc, g_opt.requests, errors, (unsigned long long)g_tokens, secs, (double)g_tokens / secs,
           (double)(g_completed - g_errors) / secs, g_completed, (unsigned long long)g_text_events,
           g_peak_open_conns);
    fflush(stdout);
    return errors ? 1 : 0;
}
