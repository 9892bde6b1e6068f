/*
 * test_http_client.c - http_client against real servers on 127.0.0.1 in the same process and loop:
 * the project's http_server (keep-alive reuse, SSE streamed in pieces, 204, HEAD, pause/resume,
 * cancel from callbacks, first-byte timeout) and a scripted raw server for misbehaving peers
 * (responses split at odd points, 1xx, chunked, read-until-close, close mid-body, oversized head,
 * a pooled connection closed by the server before the next call), and the per-upstream connection
 * cap with its FIFO queue (arrival order, queue timeout and queue full as ST_BUSY, cancel / pause
 * / destroy while queued, dispatch on a just-pooled connection and from the loop after a close,
 * counters, the uncapped default). Every wait is bounded: the loop runs under a 1 ms poll timer
 * until a condition holds or a deadline passes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/ev.h"
#include "common/status.h"
#include "http/http_client.h"
#include "http/http_server.h"

#define WAIT_MS 3000
#define BIG_BYTES (1024u * 1024u)
#define RAW_MAX_CONNS 8
#define RAW_MAX_PIECES 8

/* ---- raw scripted server ---- */

typedef struct raw_srv raw_srv_t;

typedef struct raw_conn {
    raw_srv_t *srv;
    int fd;
    char req[8192];
    size_t req_len;
    size_t handled; /* requests answered (or being answered) */
    size_t piece;   /* next piece to send */
    bool sending;
} raw_conn_t;

struct raw_srv {
    ev_loop_t *loop;
    int lfd;
    int port;
    int accepts;
    raw_conn_t *conns[RAW_MAX_CONNS];
    const char *pieces[RAW_MAX_PIECES]; /* response, sent piece by piece with gap_ms between */
    size_t n_pieces;
    uint32_t gap_ms;
    bool close_after; /* close the connection after the last piece */
    bool silent;      /* never answer */
};

static void raw_close(raw_conn_t *rc)
{
    if (rc->fd >= 0) {
        ev_fd_del(rc->srv->loop, rc->fd);
        close(rc->fd);
        rc->fd = -1;
    }
}

static void raw_send_next(ev_loop_t *loop, uint64_t id, void *udata)
{
    raw_conn_t *rc = udata;
    raw_srv_t *s = rc->srv;
    if (rc->fd < 0)
        return;
    const char *p = s->pieces[rc->piece++];
    size_t n = strlen(p);
    assert_int_equal(send(rc->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
    if (rc->piece < s->n_pieces) {
        ev_timer_add(loop, s->gap_ms, raw_send_next, rc);
        return;
    }
    rc->sending = false;
    if (s->close_after)
        raw_close(rc);
}

static void raw_on_read(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    raw_conn_t *rc = udata;
    ssize_t n = recv(fd, rc->req + rc->req_len, sizeof rc->req - 1 - rc->req_len, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            raw_close(rc);
        return;
    }
    rc->req_len += (size_t)n;
    rc->req[rc->req_len] = '\0';
    size_t heads = 0;
    for (const char *q = rc->req; (q = strstr(q, "\r\n\r\n")) != NULL; q += 4)
        heads++;
    if (heads > rc->handled && !rc->sending && !rc->srv->silent) {
        rc->handled++;
        rc->piece = 0;
        rc->sending = true;
        ev_timer_add(loop, 0, raw_send_next, rc);
    }
}

static void raw_on_accept(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    raw_srv_t *s = udata;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    assert_true(s->accepts < RAW_MAX_CONNS);
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    raw_conn_t *rc = calloc(1, sizeof *rc);
    assert_non_null(rc);
    rc->srv = s;
    rc->fd = cfd;
    s->conns[s->accepts++] = rc;
    assert_int_equal(ev_fd_add(loop, cfd, EV_READ, raw_on_read, rc), ST_OK);
}

static void raw_start(raw_srv_t *s, ev_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->gap_ms = 2;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(ev_fd_add(loop, s->lfd, EV_READ, raw_on_accept, s), ST_OK);
}

static void raw_stop(raw_srv_t *s)
{
    for (int i = 0; i < s->accepts; i++) {
        raw_close(s->conns[i]);
        free(s->conns[i]);
    }
    ev_fd_del(s->loop, s->lfd);
    close(s->lfd);
}

/* ---- http_server application ---- */

typedef struct app {
    ev_loop_t *loop;
    int requests;
    int closed;
    http_req_t *pending; /* /slow */
    http_req_t *sse;
    struct rec *sse_watch; /* client record checked when the second SSE event is sent */
    bool sse_first_seen;   /* the client had "data: 1" before the server sent more */
    char *big;
    int dones; /* on_done calls so far (rec_t.order) */
} app_t;

static bool path_is(const http_req_t *req, const char *p)
{
    sy_slice_t s = http_req_path(req);
    return s.len == strlen(p) && memcmp(s.ptr, p, s.len) == 0;
}

static void on_req_close(http_req_t *req, void *udata)
{
    app_t *app = udata;
    app->closed++;
    if (app->pending == req)
        app->pending = NULL;
    if (app->sse == req)
        app->sse = NULL;
}

/* ---- client-side record ---- */

typedef struct rec {
    app_t *app;
    http_call_t *call;
    int heads;
    int status;
    sy_buf_t body;
    int datas;
    bool done;
    int done_status;
    bool first_byte;
    int order;   /* 1 + the on_done calls (of recs with app set) that ran before this one */
    bool x_seen; /* on_head saw header X-Test */
    /* behaviours */
    bool cancel_on_head;
    bool cancel_on_data;
    bool pause_on_data;
    int paused_datas; /* on_data calls while paused (must stay 0) */
    bool is_paused;
    /* chain: start another call from on_done */
    http_upstream_t *chain_up;
    struct rec *chain_rec;
    struct rec *cancel_peer; /* cancelled from on_done (then marked done: it must stay silent) */
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof *r);
    sy_buf_init(&r->body);
}

static void on_sse_more(ev_loop_t *loop, uint64_t id, void *udata)
{
    app_t *app = udata;
    if (!app->sse)
        return;
    rec_t *r = app->sse_watch;
    app->sse_first_seen =
        r && !r->done && r->body.len >= 9 && memcmp(r->body.data, "data: 1\n\n", 9) == 0;
    assert_int_equal(http_req_sse_send(app->sse, "data: 2\n\n", 9), ST_OK);
    assert_int_equal(http_req_sse_send(app->sse, "data: [DONE]\n\n", 14), ST_OK);
    assert_int_equal(http_req_sse_end(app->sse), ST_OK);
    app->sse = NULL;
}

static void on_request(http_req_t *req, void *udata)
{
    app_t *app = udata;
    app->requests++;
    if (path_is(req, "/hello")) {
        assert_int_equal(
            http_req_respond(req, 200, "text/plain", "hello world", 11, "X-Test: yes\r\n"), ST_OK);
    } else if (path_is(req, "/echo")) {
        sy_slice_t b = http_req_body(req);
        assert_int_equal(http_req_respond(req, 200, "text/plain", b.ptr, b.len, NULL), ST_OK);
    } else if (path_is(req, "/nocontent")) {
        assert_int_equal(http_req_respond(req, 204, NULL, NULL, 0, NULL), ST_OK);
    } else if (path_is(req, "/big")) {
        assert_int_equal(
            http_req_respond(req, 200, "application/octet-stream", app->big, BIG_BYTES, NULL),
            ST_OK);
    } else if (path_is(req, "/sse")) {
        app->sse = req;
        http_req_set_on_close(req, on_req_close, app);
        assert_int_equal(http_req_sse_start(req, NULL), ST_OK);
        assert_int_equal(http_req_sse_send(req, "data: 1\n\n", 9), ST_OK);
        ev_timer_add(app->loop, 40, on_sse_more, app);
    } else if (path_is(req, "/slow")) {
        app->pending = req;
        http_req_set_on_close(req, on_req_close, app);
    } else {
        assert_int_equal(http_req_respond_error(req, 404, NULL, "no", NULL), ST_OK);
    }
}

/* ---- fixture ---- */

typedef struct fx {
    ev_loop_t *loop;
    http_server_t *srv;
    app_t app;
    raw_srv_t raw;
    http_client_t *cl;
    http_upstream_t *up;     /* -> http_server */
    http_upstream_t *raw_up; /* -> raw server */
    bool (*pred)(struct fx *, void *);
    void *pred_arg;
    uint64_t deadline;
    bool met;
} fx_t;

static void on_poll(ev_loop_t *loop, uint64_t id, void *udata)
{
    fx_t *fx = udata;
    if (fx->pred && fx->pred(fx, fx->pred_arg)) {
        fx->met = true;
        ev_stop(loop);
        return;
    }
    if (sy_mono_ms() >= fx->deadline) {
        ev_stop(loop);
        return;
    }
    ev_timer_add(loop, 1, on_poll, fx);
}

static bool run_until(fx_t *fx, bool (*pred)(fx_t *, void *), void *arg, int max_ms)
{
    fx->pred = pred;
    fx->pred_arg = arg;
    fx->deadline = sy_mono_ms() + (uint64_t)max_ms;
    fx->met = false;
    ev_timer_add(fx->loop, 0, on_poll, fx);
    assert_int_equal(ev_run(fx->loop), ST_OK);
    return fx->met;
}

static void run_for(fx_t *fx, int ms)
{
    (void)run_until(fx, NULL, NULL, ms);
}

static bool pred_done(fx_t *fx, void *arg)
{
    return ((rec_t *)arg)->done;
}

static void fx_client(fx_t *fx, const http_client_config_t *cfg)
{
    http_client_destroy(fx->cl);
    fx->cl = http_client_create(fx->loop, cfg);
    assert_non_null(fx->cl);
    int st = -1;
    fx->up = http_upstream_create(fx->cl, "127.0.0.1", http_server_port(fx->srv), &st);
    assert_non_null(fx->up);
    assert_int_equal(st, ST_OK);
    fx->raw_up = http_upstream_create(fx->cl, "localhost", fx->raw.port, &st);
    assert_non_null(fx->raw_up);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->loop = ev_loop_create();
    assert_non_null(fx->loop);
    fx->app.loop = fx->loop;
    fx->app.big = malloc(BIG_BYTES);
    assert_non_null(fx->app.big);
    for (size_t i = 0; i < BIG_BYTES; i++)
        fx->app.big[i] = (char)('a' + i % 26);
    http_server_config_t scfg;
    http_server_config_default(&scfg);
    fx->srv = http_server_create(fx->loop, &scfg, on_request, &fx->app);
    assert_non_null(fx->srv);
    assert_int_equal(http_server_listen(fx->srv, "127.0.0.1", 0), ST_OK);
    raw_start(&fx->raw, fx->loop);
    fx_client(fx, NULL);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    http_client_destroy(fx->cl);
    http_server_destroy(fx->srv);
    raw_stop(&fx->raw);
    ev_loop_destroy(fx->loop); /* drops the raw server's pending piece timers unfired */
    free(fx->app.big);
    free(fx);
    assert_int_equal(sy_alloc_live_bytes(), 0);
    return 0;
}

/* ---- callbacks ---- */

static void cb_head(http_call_t *c, int status, const http_header_t *h, size_t n, void *udata)
{
    rec_t *r = udata;
    assert_false(r->done);
    r->heads++;
    r->status = status;
    r->x_seen = http_find_header(h, n, "x-test") != NULL;
    if (r->cancel_on_head) {
        http_call_cancel(c);
        http_call_cancel(c); /* idempotent inside the callback */
        r->done = true;      /* for run_until; on_done must not follow */
    }
}

static void on_resume_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    rec_t *r = udata;
    r->is_paused = false;
    http_call_resume(r->call);
}

static void cb_data(http_call_t *c, const char *d, size_t n, void *udata)
{
    rec_t *r = udata;
    assert_false(r->done);
    assert_true(n > 0);
    r->datas++;
    if (r->is_paused)
        r->paused_datas++;
    assert_int_equal(sy_buf_append(&r->body, d, n), ST_OK);
    if (r->cancel_on_data) {
        http_call_cancel(c);
        r->done = true;
        return;
    }
    if (r->pause_on_data && r->datas == 1) {
        http_call_pause(c);
        http_call_pause(c);
        r->is_paused = true;
        ev_timer_add(r->app->loop, 50, on_resume_timer, r);
    }
}

static void cb_done(http_call_t *c, int status, bool first_byte, void *udata);

static const http_call_cbs_t cbs = {cb_head, cb_data, cb_done};

static void cb_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    rec_t *r = udata;
    assert_false(r->done);
    r->done = true;
    r->done_status = status;
    r->first_byte = first_byte;
    if (r->app)
        r->order = ++r->app->dones;
    http_call_cancel(c); /* ignored: the call is finishing */
    if (r->cancel_peer) {
        http_call_cancel(r->cancel_peer->call);
        r->cancel_peer->done = true;
    }
    if (r->chain_up) {
        rec_t *next = r->chain_rec;
        assert_int_equal(
            http_call_start(r->chain_up, "GET", "/hello", NULL, NULL, 0, &cbs, next, &next->call),
            ST_OK);
    }
}

static void start(fx_t *fx, http_upstream_t *up, const char *method, const char *path, rec_t *r)
{
    r->app = &fx->app;
    assert_int_equal(http_call_start(up, method, path, NULL, NULL, 0, &cbs, r, &r->call), ST_OK);
}

static void check_ok(rec_t *r, int status, const char *body)
{
    assert_true(r->done);
    assert_int_equal(r->done_status, ST_OK);
    assert_true(r->first_byte);
    assert_int_equal(r->heads, 1);
    assert_int_equal(r->status, status);
    assert_int_equal(r->body.len, strlen(body));
    if (r->body.len)
        assert_memory_equal(r->body.data, body, r->body.len);
}

/* ---- tests against http_server ---- */

static void test_keepalive_reuse(void **state)
{
    fx_t *fx = *state;
    rec_t a, b, c;
    rec_init(&a);
    rec_init(&b);
    rec_init(&c);
    a.chain_up = fx->up; /* b starts from a's on_done, c from b's: same pooled connection */
    a.chain_rec = &b;
    b.chain_up = fx->up;
    b.chain_rec = &c;
    b.app = c.app = &fx->app;
    start(fx, fx->up, "GET", "/hello", &a);
    assert_true(run_until(fx, pred_done, &c, WAIT_MS));
    check_ok(&a, 200, "hello world");
    check_ok(&b, 200, "hello world");
    check_ok(&c, 200, "hello world");
    assert_true(a.x_seen);
    assert_int_equal(fx->app.requests, 3);
    assert_int_equal(http_server_num_connections(fx->srv), 1); /* one accept for three calls */
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);

    /* POST with a body and extra headers on the same connection */
    rec_t d;
    rec_init(&d);
    d.app = &fx->app;
    assert_int_equal(http_call_start(fx->up, "POST", "/echo", "X-A: 1\r\nContent-Type: t\r\n",
                                     "ping-pong", 9, &cbs, &d, &d.call),
                     ST_OK);
    assert_int_equal(http_upstream_idle_connections(fx->up), 0);
    assert_true(run_until(fx, pred_done, &d, WAIT_MS));
    check_ok(&d, 200, "ping-pong");
    assert_int_equal(http_server_num_connections(fx->srv), 1);
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&b.body);
    sy_buf_deinit(&c.body);
    sy_buf_deinit(&d.body);
}

static void test_bad_args(void **state)
{
    fx_t *fx = *state;
    http_call_t *c = (http_call_t *)1;
    assert_int_equal(http_call_start(fx->up, "GET", "/a b", NULL, NULL, 0, &cbs, NULL, &c),
                     ST_INVAL);
    assert_null(c);
    assert_int_equal(http_call_start(fx->up, "GET", "/x", "X: y", NULL, 0, &cbs, NULL, &c),
                     ST_INVAL);
    assert_int_equal(http_call_start(fx->up, "G\r\nET", "/x", NULL, NULL, 0, &cbs, NULL, &c),
                     ST_INVAL);
    assert_int_equal(http_call_start(fx->up, "POST", "/x", NULL, NULL, 3, &cbs, NULL, &c),
                     ST_INVAL);
    int st = 0;
    assert_null(http_upstream_create(fx->cl, "127.0.0.1", 0, &st));
    assert_int_equal(st, ST_INVAL);
    assert_null(http_upstream_create(fx->cl, "no such host.invalid", 80, &st));
    assert_true(st != ST_OK);
    http_call_pause(NULL);
    http_call_resume(NULL);
    http_call_cancel(NULL);
    http_upstream_destroy(NULL);
    http_client_destroy(NULL);
}

static void test_sse_streamed(void **state)
{
    fx_t *fx = *state;
    rec_t r;
    rec_init(&r);
    fx->app.sse_watch = &r;
    start(fx, fx->up, "GET", "/sse", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    check_ok(&r, 200, "data: 1\n\ndata: 2\n\ndata: [DONE]\n\n");
    assert_true(fx->app.sse_first_seen); /* on_data delivered the first event before the end */
    assert_true(r.datas >= 2);
    assert_int_equal(http_upstream_idle_connections(fx->up), 1); /* chunked, keep-alive */
    sy_buf_deinit(&r.body);
}

static void test_204_and_head(void **state)
{
    fx_t *fx = *state;
    rec_t r, h;
    rec_init(&r);
    rec_init(&h);
    start(fx, fx->up, "GET", "/nocontent", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    check_ok(&r, 204, "");
    assert_int_equal(r.datas, 0);
    start(fx, fx->up, "HEAD", "/hello", &h);
    assert_true(run_until(fx, pred_done, &h, WAIT_MS));
    check_ok(&h, 200, "");
    assert_int_equal(http_server_num_connections(fx->srv), 1);
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);
}

static void test_pause_resume(void **state)
{
    fx_t *fx = *state;
    rec_t r;
    rec_init(&r);
    r.pause_on_data = true;
    start(fx, fx->up, "GET", "/big", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, ST_OK);
    assert_int_equal(r.body.len, BIG_BYTES);
    assert_memory_equal(r.body.data, fx->app.big, BIG_BYTES);
    assert_int_equal(r.paused_datas, 0);
    assert_true(r.datas > 1);
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);
    sy_buf_deinit(&r.body);
}

static bool pred_server_idle(fx_t *fx, void *arg)
{
    return http_server_num_connections(fx->srv) == 0;
}

static void test_cancel_in_callbacks(void **state)
{
    fx_t *fx = *state;
    rec_t r, h;
    rec_init(&r);
    rec_init(&h);
    r.cancel_on_data = true;
    start(fx, fx->up, "GET", "/big", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    run_for(fx, 20); /* no on_done may follow (cb_done asserts !done) */
    assert_int_equal(r.datas, 1);
    assert_int_equal(http_upstream_idle_connections(fx->up), 0); /* never pooled */

    h.cancel_on_head = true;
    start(fx, fx->up, "GET", "/hello", &h);
    assert_true(run_until(fx, pred_done, &h, WAIT_MS));
    run_for(fx, 20);
    assert_int_equal(h.datas, 0);
    assert_true(run_until(fx, pred_server_idle, NULL, WAIT_MS));

    /* cancel from outside while connecting, and right after the start */
    rec_t x;
    rec_init(&x);
    start(fx, fx->up, "GET", "/hello", &x);
    http_call_cancel(x.call);
    run_for(fx, 20);
    assert_false(x.done);
    sy_buf_deinit(&r.body);
}

static void test_first_byte_timeout(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.first_byte_timeout_ms = 80;
    fx_client(fx, &cfg);
    rec_t r;
    rec_init(&r);
    uint64_t t0 = sy_mono_ms();
    start(fx, fx->up, "GET", "/slow", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, ST_TIMEOUT);
    assert_false(r.first_byte);
    assert_int_equal(r.heads, 0);
    assert_true(sy_mono_ms() - t0 >= 70);
    assert_true(run_until(fx, pred_server_idle, NULL, WAIT_MS)); /* the connection was closed */
    assert_int_equal(fx->app.closed, 1);
}

static void test_refused(void **state)
{
    fx_t *fx = *state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s); /* nobody listens on that port now */
    int st;
    http_upstream_t *up = http_upstream_create(fx->cl, "127.0.0.1", ntohs(a.sin_port), &st);
    assert_non_null(up);
    rec_t r;
    rec_init(&r);
    start(fx, up, "GET", "/x", &r);
    assert_false(r.done); /* never from inside http_call_start */
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, -ECONNREFUSED);
    assert_false(r.first_byte);
    http_upstream_destroy(up);
}

static void test_idle_timeout(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.idle_timeout_ms = 30;
    fx_client(fx, &cfg);
    rec_t r;
    rec_init(&r);
    start(fx, fx->up, "GET", "/hello", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);
    run_for(fx, 100);
    assert_int_equal(http_upstream_idle_connections(fx->up), 0);
    assert_true(run_until(fx, pred_server_idle, NULL, WAIT_MS));
    sy_buf_deinit(&r.body);
}

static void test_destroy_with_calls_in_flight(void **state)
{
    fx_t *fx = *state;
    rec_t r, s;
    rec_init(&r);
    rec_init(&s);
    start(fx, fx->up, "GET", "/slow", &r);
    start(fx, fx->up, "GET", "/hello", &s);
    run_for(fx, 20);
    assert_false(r.done);
    http_upstream_destroy(fx->up); /* cancels both without callbacks */
    fx->up = NULL;
    run_for(fx, 20);
    assert_false(r.done);
    sy_buf_deinit(&s.body);
}

/* ---- tests against the raw server ---- */

static void raw_script(fx_t *fx, bool close_after, const char *p0, const char *p1, const char *p2,
                       const char *p3)
{
    const char *p[4] = {p0, p1, p2, p3};
    fx->raw.n_pieces = 0;
    for (int i = 0; i < 4 && p[i]; i++)
        fx->raw.pieces[fx->raw.n_pieces++] = p[i];
    fx->raw.close_after = close_after;
}

static void test_raw_content_length_split(void **state)
{
    fx_t *fx = *state;
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nContent-Le", "ngth: 11\r\nX-Test: 1\r\n\r\nhel",
               "lo w", "orld");
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/cl", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    check_ok(&r, 200, "hello world");
    assert_true(r.x_seen);
    assert_true(r.datas >= 2);
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 1);
    assert_non_null(strstr(fx->raw.conns[0]->req, "GET /cl HTTP/1.1\r\nHost: localhost:"));
    assert_non_null(strstr(fx->raw.conns[0]->req, "Connection: keep-alive\r\n\r\n"));
    sy_buf_deinit(&r.body);
}

static void test_raw_chunked_split(void **state)
{
    fx_t *fx = *state;
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
               "lo\r\n6;ext=1\r\n worl", "d\r\n0\r\nTrailer: x\r\n", "\r\n");
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/ch", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    check_ok(&r, 200, "hello world");
    assert_true(r.datas >= 3); /* pieces handed out as they arrived */
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 1);

    /* bad chunk syntax -> ST_PROTO after the head */
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", NULL, NULL,
               NULL);
    rec_t b;
    rec_init(&b);
    start(fx, fx->raw_up, "GET", "/bad", &b);
    assert_true(run_until(fx, pred_done, &b, WAIT_MS));
    assert_int_equal(b.done_status, ST_PROTO);
    assert_true(b.first_byte);
    sy_buf_deinit(&r.body);
}

static void test_raw_1xx_and_until_close(void **state)
{
    fx_t *fx = *state;
    raw_script(fx, true, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n",
               "HTTP/1.1 200 OK\r\n\r\nabc", "def", NULL);
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/x", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    check_ok(&r, 200, "abcdef");
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 0);
    sy_buf_deinit(&r.body);
}

static void test_raw_close_mid_body(void **state)
{
    fx_t *fx = *state;
    raw_script(fx, true, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", NULL, NULL, NULL);
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/x", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, ST_CLOSED);
    assert_true(r.first_byte);
    assert_int_equal(r.heads, 1);
    assert_int_equal(fx->raw.accepts, 1); /* not retried: bytes had arrived */
    sy_buf_deinit(&r.body);

    /* closed before any byte on a fresh connection: not retried either */
    raw_script(fx, true, "", NULL, NULL, NULL);
    rec_t e;
    rec_init(&e);
    start(fx, fx->raw_up, "GET", "/x", &e);
    assert_true(run_until(fx, pred_done, &e, WAIT_MS));
    assert_int_equal(e.done_status, ST_CLOSED);
    assert_false(e.first_byte);
    assert_int_equal(fx->raw.accepts, 2);
}

static void test_raw_stale_pooled_retry(void **state)
{
    fx_t *fx = *state;
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", NULL, NULL, NULL);
    rec_t a, b;
    rec_init(&a);
    rec_init(&b);
    start(fx, fx->raw_up, "GET", "/1", &a);
    assert_true(run_until(fx, pred_done, &a, WAIT_MS));
    check_ok(&a, 200, "ok");
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 1);
    /* the server drops the pooled connection; the client has not noticed yet when the next call
     * takes it from the pool */
    raw_close(fx->raw.conns[0]);
    start(fx, fx->raw_up, "GET", "/2", &b);
    assert_true(run_until(fx, pred_done, &b, WAIT_MS));
    check_ok(&b, 200, "ok");
    assert_int_equal(fx->raw.accepts, 2); /* retried once, transparently, on a fresh one */

    /* the same close noticed while idle: the pooled connection is dropped, no retry needed */
    raw_close(fx->raw.conns[1]);
    run_for(fx, 30);
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 0);
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&b.body);
}

static void test_raw_oversized_head(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.max_head_bytes = 1024;
    fx_client(fx, &cfg);
    static char big[4096];
    memcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ", 24);
    memset(big + 24, 'a', sizeof big - 25);
    big[sizeof big - 1] = '\0';
    raw_script(fx, false, big, "\r\n\r\n", NULL, NULL);
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/x", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, ST_LIMIT);
    assert_true(r.first_byte);
    assert_int_equal(r.heads, 0);

    /* garbage status line -> ST_PROTO; a 101 we never asked for -> ST_PROTO */
    raw_script(fx, false, "HTTX/1.1 200 OK\r\n\r\n", NULL, NULL, NULL);
    rec_t g;
    rec_init(&g);
    start(fx, fx->raw_up, "GET", "/x", &g);
    assert_true(run_until(fx, pred_done, &g, WAIT_MS));
    assert_int_equal(g.done_status, ST_PROTO);
    raw_script(fx, false, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", NULL, NULL,
               NULL);
    rec_t u;
    rec_init(&u);
    start(fx, fx->raw_up, "GET", "/x", &u);
    assert_true(run_until(fx, pred_done, &u, WAIT_MS));
    assert_int_equal(u.done_status, ST_PROTO);
    /* conflicting Content-Length values -> ST_PROTO */
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
               NULL, NULL, NULL);
    rec_t d;
    rec_init(&d);
    start(fx, fx->raw_up, "GET", "/x", &d);
    assert_true(run_until(fx, pred_done, &d, WAIT_MS));
    assert_int_equal(d.done_status, ST_PROTO);
}

static void test_raw_read_timeout(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.read_timeout_ms = 60;
    fx_client(fx, &cfg);
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", NULL, NULL, NULL);
    rec_t r;
    rec_init(&r);
    start(fx, fx->raw_up, "GET", "/x", &r);
    assert_true(run_until(fx, pred_done, &r, WAIT_MS));
    assert_int_equal(r.done_status, ST_TIMEOUT);
    assert_true(r.first_byte);
    sy_buf_deinit(&r.body);
}

/* ---- connection cap and queue ---- */

typedef struct recs {
    rec_t *r;
    size_t n;
} recs_t;

static bool pred_all_done(fx_t *fx, void *arg)
{
    const recs_t *rs = arg;
    for (size_t i = 0; i < rs->n; i++)
        if (!rs->r[i].done)
            return false;
    return true;
}

static bool pred_slow_pending(fx_t *fx, void *arg)
{
    return fx->app.pending != NULL;
}

static bool pred_slow_closed(fx_t *fx, void *arg)
{
    return fx->app.closed > 0;
}

/* Recreates the client with a connection cap (0 = keep the default for the other two). */
/* rec_init and GET /hello on fx->up for each of r[0..n), in that order. */
static void start_hellos(fx_t *fx, rec_t *const *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rec_init(r[i]);
        start(fx, fx->up, "GET", "/hello", r[i]);
    }
}

static void fx_capped(fx_t *fx, size_t cap, size_t max_queued, uint32_t queue_timeout_ms)
{
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.max_conns_per_upstream = cap;
    if (max_queued)
        cfg.max_queued_per_upstream = max_queued;
    if (queue_timeout_ms)
        cfg.queue_timeout_ms = queue_timeout_ms;
    fx_client(fx, &cfg);
}

static void check_stats(const http_upstream_t *up, size_t busy, size_t queued, uint64_t total,
                        uint64_t timeouts, uint64_t full)
{
    http_upstream_stats_t st;
    memset(&st, 0xa5, sizeof st);
    http_upstream_stats(up, &st);
    assert_int_equal(st.busy, busy);
    assert_int_equal(st.queued, queued);
    assert_int_equal(st.queued_total, total);
    assert_int_equal(st.queue_timeouts, timeouts);
    assert_int_equal(st.queue_full, full);
}

static void check_silent(const rec_t *r)
{
    assert_int_equal(r->heads, 0);
    assert_int_equal(r->datas, 0);
    assert_int_equal(r->order, 0); /* cb_done never ran */
}

/* Three calls to the raw server (capped client, fresh raw upstream) answered with resp: one runs,
 * two wait; all end 200 "ok" in start order, their completion order numbers from first. */
static void raw_three_capped(fx_t *fx, const char *resp, bool close_after, int first)
{
    raw_script(fx, close_after, resp, NULL, NULL, NULL);
    rec_t q[3];
    for (int i = 0; i < 3; i++) {
        rec_init(&q[i]);
        start(fx, fx->raw_up, "GET", "/q", &q[i]);
    }
    check_stats(fx->raw_up, 1, 2, 2, 0, 0);
    recs_t rq = {q, 3};
    assert_true(run_until(fx, pred_all_done, &rq, WAIT_MS));
    for (int i = 0; i < 3; i++) {
        check_ok(&q[i], 200, "ok");
        assert_int_equal(q[i].order, first + i);
        sy_buf_deinit(&q[i].body);
    }
}

static void test_cap_queue_fifo(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 0);
    rec_t r[4];
    for (int i = 0; i < 4; i++)
        rec_init(&r[i]);
    r[0].chain_up = fx->up; /* started from r[0]'s on_done: behind the two waiting calls */
    r[0].chain_rec = &r[3];
    r[3].app = &fx->app;
    for (int i = 0; i < 3; i++)
        start(fx, fx->up, "GET", "/hello", &r[i]);
    check_stats(fx->up, 1, 2, 2, 0, 0);
    recs_t all = {r, 4};
    assert_true(run_until(fx, pred_all_done, &all, WAIT_MS));
    for (int i = 0; i < 4; i++) {
        check_ok(&r[i], 200, "hello world");
        assert_int_equal(r[i].order, i + 1); /* served in arrival order */
    }
    assert_int_equal(fx->app.requests, 4);
    assert_int_equal(http_server_num_connections(fx->srv), 1); /* one connection for all */
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);
    check_stats(fx->up, 0, 0, 3, 0, 0);
    for (int i = 0; i < 4; i++)
        sy_buf_deinit(&r[i].body);

    /* the same against the raw server: exactly one accept, the requests one after the other */
    raw_three_capped(fx, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, 5);
    assert_int_equal(fx->raw.accepts, 1);
    assert_int_equal(fx->raw.conns[0]->handled, 3);
    check_stats(fx->raw_up, 0, 0, 2, 0, 0);
}

static void test_cap_two(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 2, 0, 0);
    enum { N = 7 };
    rec_t r[N];
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        start(fx, fx->up, "GET", "/hello", &r[i]);
    }
    check_stats(fx->up, 2, N - 2, N - 2, 0, 0);
    recs_t all = {r, N};
    assert_true(run_until(fx, pred_all_done, &all, WAIT_MS));
    for (int i = 0; i < N; i++) {
        check_ok(&r[i], 200, "hello world");
        sy_buf_deinit(&r[i].body);
    }
    assert_int_equal(http_server_num_connections(fx->srv), 2); /* never more than the cap */
    assert_int_equal(http_upstream_idle_connections(fx->up), 2);
    check_stats(fx->up, 0, 0, N - 2, 0, 0);
}

static void test_cap_queue_timeout(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 50);
    rec_t s, q[3];
    rec_init(&s);
    for (int i = 0; i < 3; i++)
        rec_init(&q[i]);
    uint64_t t0 = sy_mono_ms();
    start(fx, fx->up, "GET", "/slow", &s); /* holds the only connection */
    start(fx, fx->up, "GET", "/hello", &q[0]);
    assert_true(run_until(fx, pred_slow_pending, NULL, WAIT_MS));
    q[1].chain_up = fx->up; /* its on_done (from the queue timer) queues q[2] */
    q[1].chain_rec = &q[2];
    q[2].app = &fx->app;
    start(fx, fx->up, "GET", "/hello", &q[1]);
    check_stats(fx->up, 1, 2, 2, 0, 0);
    recs_t all = {q, 3};
    assert_true(run_until(fx, pred_all_done, &all, WAIT_MS));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(q[i].done_status, ST_BUSY); /* at the cap, not an upstream failure */
        assert_false(q[i].first_byte);
        assert_int_equal(q[i].heads, 0);
        assert_int_equal(q[i].datas, 0);
        assert_int_equal(q[i].order, i + 1);
    }
    assert_true(sy_mono_ms() - t0 >= 40);
    check_stats(fx->up, 1, 0, 3, 3, 0);
    assert_false(s.done); /* the slow call is still running */
    assert_non_null(fx->app.pending);
    assert_int_equal(fx->app.requests, 1); /* the queued calls were never sent */
    http_call_cancel(s.call);
    assert_true(run_until(fx, pred_server_idle, NULL, WAIT_MS));
    assert_int_equal(fx->app.closed, 1);
    run_for(fx, 20);
    assert_false(s.done);
    check_stats(fx->up, 0, 0, 3, 3, 0);
}

static void test_cap_queue_full(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 1, 0);
    rec_t a, b, c;
    rec_init(&a);
    rec_init(&b);
    rec_init(&c);
    start(fx, fx->up, "GET", "/hello", &a);
    start(fx, fx->up, "GET", "/hello", &b);
    http_call_t *x = (http_call_t *)1;
    assert_int_equal(http_call_start(fx->up, "GET", "/hello", NULL, NULL, 0, &cbs, &c, &x),
                     ST_BUSY);
    assert_null(x);
    check_stats(fx->up, 1, 1, 1, 0, 1);
    assert_true(run_until(fx, pred_done, &b, WAIT_MS));
    check_ok(&a, 200, "hello world");
    check_ok(&b, 200, "hello world");
    run_for(fx, 10);
    assert_false(c.done); /* refused: no callbacks */
    assert_int_equal(fx->app.requests, 2);
    check_stats(fx->up, 0, 0, 1, 0, 1);
    /* room again: accepted (and sent at once on the pooled connection) */
    start(fx, fx->up, "GET", "/hello", &c);
    check_stats(fx->up, 1, 0, 1, 0, 1);
    assert_true(run_until(fx, pred_done, &c, WAIT_MS));
    check_ok(&c, 200, "hello world");
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&b.body);
    sy_buf_deinit(&c.body);
}

static void test_cap_cancel_queued(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 0);
    rec_t a, b, c, d;
    start_hellos(fx, (rec_t *[]){&a, &b, &c, &d}, 4);
    check_stats(fx->up, 1, 3, 3, 0, 0);
    http_call_cancel(b.call); /* the queue's head */
    check_stats(fx->up, 1, 2, 3, 0, 0);
    http_call_cancel(d.call); /* its tail */
    check_stats(fx->up, 1, 1, 3, 0, 0);
    assert_true(run_until(fx, pred_done, &c, WAIT_MS));
    check_ok(&a, 200, "hello world");
    check_ok(&c, 200, "hello world");
    assert_int_equal(a.order, 1);
    assert_int_equal(c.order, 2);
    run_for(fx, 20);
    assert_false(b.done);
    assert_false(d.done);
    check_silent(&b);
    check_silent(&d);
    assert_int_equal(fx->app.requests, 2); /* the cancelled ones were never sent */
    assert_int_equal(http_server_num_connections(fx->srv), 1);
    check_stats(fx->up, 0, 0, 3, 0, 0);
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&c.body);
}

static void test_cap_cancel_dispatched_from_on_done(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 0);
    rec_t a, b, c;
    rec_init(&a);
    rec_init(&b);
    rec_init(&c);
    a.cancel_peer = &b; /* b got a's pooled connection before a's on_done: cancelled there */
    start(fx, fx->up, "GET", "/hello", &a);
    start(fx, fx->up, "GET", "/hello", &b);
    start(fx, fx->up, "GET", "/hello", &c);
    assert_true(run_until(fx, pred_done, &c, WAIT_MS));
    check_ok(&a, 200, "hello world");
    check_ok(&c, 200, "hello world"); /* sent from the loop on a fresh connection */
    assert_int_equal(c.order, 2);
    run_for(fx, 20);
    check_silent(&b);
    check_stats(fx->up, 0, 0, 2, 0, 0);
    assert_int_equal(http_upstream_idle_connections(fx->up), 1);
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&c.body);
}

static void test_cap_dispatch_after_close(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 0);
    rec_t s, b, d;
    rec_init(&s);
    rec_init(&b);
    rec_init(&d);
    start(fx, fx->up, "GET", "/slow", &s);
    start(fx, fx->up, "GET", "/hello", &b);
    assert_true(run_until(fx, pred_slow_pending, NULL, WAIT_MS));
    check_stats(fx->up, 1, 1, 1, 0, 0);
    http_call_cancel(s.call); /* the busy connection closes: b is sent from the loop */
    check_stats(fx->up, 0, 1, 1, 0, 0);
    start(fx, fx->up, "GET", "/hello", &d); /* under the cap, but must not overtake b */
    check_stats(fx->up, 0, 2, 2, 0, 0);
    assert_true(run_until(fx, pred_done, &d, WAIT_MS));
    check_ok(&b, 200, "hello world");
    check_ok(&d, 200, "hello world");
    assert_int_equal(b.order, 1);
    assert_int_equal(d.order, 2);
    assert_false(s.done);
    assert_int_equal(fx->app.requests, 3);
    check_stats(fx->up, 0, 0, 2, 0, 0);
    sy_buf_deinit(&b.body);
    sy_buf_deinit(&d.body);

    /* a response with Connection: close: the next waiting call goes out on a new connection */
    raw_three_capped(fx, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                     true, 3);
    assert_int_equal(fx->raw.accepts, 3);
    assert_int_equal(http_upstream_idle_connections(fx->raw_up), 0);
    check_stats(fx->raw_up, 0, 0, 2, 0, 0);
}

static void test_cap_dispatch_after_error(void **state)
{
    fx_t *fx = *state;
    fx_capped(fx, 1, 0, 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s); /* nobody listens on that port now */
    int st;
    http_upstream_t *up = http_upstream_create(fx->cl, "127.0.0.1", ntohs(a.sin_port), &st);
    assert_non_null(up);
    rec_t r[3];
    for (int i = 0; i < 3; i++) {
        rec_init(&r[i]);
        start(fx, up, "GET", "/x", &r[i]);
    }
    check_stats(up, 1, 2, 2, 0, 0);
    recs_t all = {r, 3};
    assert_true(run_until(fx, pred_all_done, &all, WAIT_MS));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].done_status, -ECONNREFUSED);
        assert_false(r[i].first_byte);
        assert_int_equal(r[i].order, i + 1);
    }
    check_stats(up, 0, 0, 2, 0, 0);
    http_upstream_destroy(up);
}

static void test_cap_queued_pause_resume(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.max_conns_per_upstream = 1;
    cfg.first_byte_timeout_ms = 50;
    fx_client(fx, &cfg);
    rec_t a, b;
    start_hellos(fx, (rec_t *[]){&a, &b}, 2);
    http_call_pause(b.call); /* while queued */
    assert_true(run_until(fx, pred_done, &a, WAIT_MS));
    check_ok(&a, 200, "hello world");
    run_for(fx, 120); /* past the 50 ms first-byte timeout: a paused call has none */
    assert_false(b.done);
    assert_int_equal(b.heads, 0); /* sent, but its response is not read while paused */
    assert_int_equal(fx->app.requests, 2);
    check_stats(fx->up, 1, 0, 1, 0, 0);
    http_call_resume(b.call);
    assert_true(run_until(fx, pred_done, &b, WAIT_MS));
    check_ok(&b, 200, "hello world");
    check_stats(fx->up, 0, 0, 1, 0, 0);
    sy_buf_deinit(&a.body);
    sy_buf_deinit(&b.body);
}

static void test_cap_destroy_with_queued(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    cfg.max_conns_per_upstream = 1;
    cfg.queue_timeout_ms = 30;
    fx_client(fx, &cfg);
    rec_t s, b, c;
    rec_init(&s);
    start(fx, fx->up, "GET", "/slow", &s);
    start_hellos(fx, (rec_t *[]){&b, &c}, 2);
    http_call_pause(c.call);
    assert_true(run_until(fx, pred_slow_pending, NULL, WAIT_MS));
    http_upstream_destroy(fx->up); /* frees the queued calls and their timer: no callbacks */
    fx->up = NULL;
    run_for(fx, 80); /* past the queue timeout */
    check_silent(&s);
    check_silent(&b);
    check_silent(&c);
    assert_false(s.done || b.done || c.done);
    assert_int_equal(fx->app.requests, 1);
    assert_true(run_until(fx, pred_server_idle, NULL, WAIT_MS));

    /* the whole client, with queued calls on both upstreams */
    fx_client(fx, &cfg);
    raw_script(fx, false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", NULL, NULL, NULL);
    fx->raw.silent = true;
    rec_t t[4];
    for (int i = 0; i < 4; i++)
        rec_init(&t[i]);
    start(fx, fx->up, "GET", "/slow", &t[0]);
    start(fx, fx->up, "GET", "/hello", &t[1]);
    start(fx, fx->raw_up, "GET", "/x", &t[2]);
    start(fx, fx->raw_up, "GET", "/x", &t[3]);
    run_for(fx, 10);
    check_stats(fx->up, 1, 1, 1, 0, 0);
    check_stats(fx->raw_up, 1, 1, 1, 0, 0);
    http_client_destroy(fx->cl);
    fx->cl = NULL;
    fx->up = fx->raw_up = NULL;
    run_for(fx, 80);
    for (int i = 0; i < 4; i++) {
        check_silent(&t[i]);
        assert_false(t[i].done);
    }
}

static void test_nocap_default(void **state)
{
    fx_t *fx = *state;
    http_client_config_t cfg;
    http_client_config_default(&cfg);
    assert_int_equal(cfg.max_conns_per_upstream, 0); /* the default: no cap */
    enum { N = 6 };
    rec_t r[N];
    for (int i = 0; i < N; i++) {
        rec_init(&r[i]);
        start(fx, fx->up, "GET", "/hello", &r[i]);
        check_stats(fx->up, (size_t)i + 1, 0, 0, 0, 0); /* each on its own new connection */
    }
    recs_t all = {r, N};
    assert_true(run_until(fx, pred_all_done, &all, WAIT_MS));
    for (int i = 0; i < N; i++) {
        check_ok(&r[i], 200, "hello world");
        sy_buf_deinit(&r[i].body);
    }
    assert_int_equal(http_server_num_connections(fx->srv), N);
    assert_int_equal(http_upstream_idle_connections(fx->up), N);
    check_stats(fx->up, 0, 0, 0, 0, 0);
    /* pooled connections are reused, still nothing queued */
    rec_t p;
    rec_init(&p);
    start(fx, fx->up, "GET", "/slow", &p);
    check_stats(fx->up, 1, 0, 0, 0, 0);
    assert_true(run_until(fx, pred_slow_pending, NULL, WAIT_MS));
    http_call_cancel(p.call);
    check_stats(fx->up, 0, 0, 0, 0, 0);
    assert_int_equal(http_upstream_idle_connections(fx->up), N - 1);
    assert_true(run_until(fx, pred_slow_closed, NULL, WAIT_MS));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_keepalive_reuse),
        T(test_bad_args),
        T(test_sse_streamed),
        T(test_204_and_head),
        T(test_pause_resume),
        T(test_cancel_in_callbacks),
        T(test_first_byte_timeout),
        T(test_refused),
        T(test_idle_timeout),
        T(test_destroy_with_calls_in_flight),
        T(test_raw_content_length_split),
        T(test_raw_chunked_split),
        T(test_raw_1xx_and_until_close),
        T(test_raw_close_mid_body),
        T(test_raw_stale_pooled_retry),
        T(test_raw_oversized_head),
        T(test_raw_read_timeout),
        T(test_cap_queue_fifo),
        T(test_cap_two),
        T(test_cap_queue_timeout),
        T(test_cap_queue_full),
        T(test_cap_cancel_queued),
        T(test_cap_cancel_dispatched_from_on_done),
        T(test_cap_dispatch_after_close),
        T(test_cap_dispatch_after_error),
        T(test_cap_queued_pause_resume),
        T(test_cap_destroy_with_queued),
        T(test_nocap_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
