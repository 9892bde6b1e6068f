/*
 * test_gw_scrape.c - the scraper and health prober on a real loop against in-process http_servers
 * on 127.0.0.1 (one per endpoint): a good engine (two data-parallel ranks), one serving garbage, a
 * slow one (answers after a delay: staleness while keeping the last values), one that never answers
 * /metrics (scrape timeout, one scrape in flight at a time), one with an oversized body, one with a
 * failing /health, one that refuses the name[] query of a filtered scrape (400) and one that
 * answers it with an empty body (both then scraped with the plain path), and a port that refuses
 * connections. No engine process is spawned. Every wait is bounded by a deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/gw_scrape.h"
#include "gateway/prom_parse.h"
#include "http/http_client.h"
#include "http/http_server.h"

#define WAIT_MS 3000

typedef enum kind {
    K_GOOD,
    K_GARBAGE,
    K_SLOW,
    K_HANG,
    K_HUGE,
    K_SICK,
    K_STRICT, /* 400 to a /metrics request with a query */
    K_BLANK,  /* 200 with an empty body to a /metrics request with a query */
    K_N
} kind_t;

/* What the scraper must ask for (gw_scrape.c, GW_SCRAPE_QUERY). */
static const char want_query[] =
    "name%5B%5D=vllm:num_requests_waiting&name%5B%5D=vllm:num_requests_running"
    "&name%5B%5D=vllm:kv_cache_usage_perc&name%5B%5D=vllm:gpu_cache_usage_perc"
    "&name%5B%5D=vllm:cache_config_info";

static const char good_metrics[] =
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 1.0\n"
    "vllm:num_requests_waiting{model_name=\"m\",engine=\"1\"} 2.0\n"
    "vllm:num_requests_running{model_name=\"m\",engine=\"0\"} 3.0\n"
    "vllm:num_requests_running{model_name=\"m\",engine=\"1\"} 2.0\n"
    "vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0.2\n"
    "vllm:kv_cache_usage_perc{model_name=\"m\",engine=\"1\"} 0.4\n"
    "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"1000\",engine=\"0\"} 1.0\n"
    "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"1000\",engine=\"1\"} 1.0\n";

typedef struct srv_app {
    ev_loop_t *loop;
    kind_t kind;
    http_server_t *srv;
    int metrics_reqs;
    int filtered_reqs, plain_reqs; /* /metrics with the expected query, without any query */
    int other_query_reqs;          /* /metrics with some other query */
    int inflight, max_inflight;    /* /metrics exchanges open at once */
    http_req_t *held;              /* SLOW / HANG: answered later (or never) */
    char *huge;
    double running; /* SLOW: changes between answers */
} srv_app_t;

static void held_close(http_req_t *req, void *udata)
{
    srv_app_t *a = udata;
    if (a->held == req)
        a->held = NULL;
    a->inflight--; /* every held request counts until its connection closes */
}

static void slow_answer(ev_loop_t *loop, uint64_t id, void *udata)
{
    srv_app_t *a = udata;
    if (!a->held)
        return;
    char body[128];
    int n = snprintf(body, sizeof body, "vllm:num_requests_running %g\n", a->running);
    a->running += 1;
    http_req_t *req = a->held;
    a->held = NULL;
    a->inflight--;
    http_req_set_on_close(req, NULL, NULL); /* answered: no longer held */
    assert_int_equal(http_req_respond(req, 200, "text/plain", body, (size_t)n, NULL), ST_OK);
}

static bool path_is(const http_req_t *req, const char *p)
{
    sy_slice_t s = http_req_path(req);
    return s.len == strlen(p) && memcmp(s.ptr, p, s.len) == 0;
}

static void on_request(http_req_t *req, void *udata)
{
    srv_app_t *a = udata;
    if (path_is(req, "/health")) {
        int st = a->kind == K_SICK ? 503 : 200;
        assert_int_equal(http_req_respond(req, st, "text/plain", "", 0, NULL), ST_OK);
        return;
    }
    if (!path_is(req, "/metrics")) {
        assert_int_equal(http_req_respond_error(req, 404, NULL, "no", NULL), ST_OK);
        return;
    }
    a->metrics_reqs++;
    sy_slice_t q = http_req_query(req);
    if (q.len == 0)
        a->plain_reqs++;
    else if (q.len == sizeof want_query - 1 && memcmp(q.ptr, want_query, q.len) == 0)
        a->filtered_reqs++;
    else
        a->other_query_reqs++;
    if (q.len > 0 && a->kind == K_STRICT) {
        assert_int_equal(http_req_respond_error(req, 400, NULL, "no query", NULL), ST_OK);
        return;
    }
    if (q.len > 0 && a->kind == K_BLANK) {
        assert_int_equal(http_req_respond(req, 200, "text/plain", "", 0, NULL), ST_OK);
        return;
    }
    a->inflight++;
    if (a->inflight > a->max_inflight)
        a->max_inflight = a->inflight;
    switch (a->kind) {
    case K_GOOD:
    case K_SICK:
    case K_STRICT:
    case K_BLANK:
        a->inflight--;
        assert_int_equal(
            http_req_respond(req, 200, "text/plain", good_metrics, sizeof good_metrics - 1, NULL),
            ST_OK);
        break;
    case K_GARBAGE: {
        static const char junk[] = "\x01\x02{{{\nvllm:num_requests_waiting{ 5\n\xff\xfe garbage\n";
        a->inflight--;
        assert_int_equal(http_req_respond(req, 200, "text/plain", junk, sizeof junk - 1, NULL),
                         ST_OK);
        break;
    }
    case K_SLOW:
        a->held = req;
        http_req_set_on_close(req, held_close, a);
        ev_timer_add(a->loop, 120, slow_answer, a);
        break;
    case K_HANG:
        a->held = req;
        http_req_set_on_close(req, held_close, a);
        break;
    case K_HUGE:
        a->inflight--;
        assert_int_equal(http_req_respond(req, 200, "text/plain", a->huge, 5u << 20, NULL), ST_OK);
        break;
    case K_N:
        break;
    }
}

typedef struct fx {
    ev_loop_t *loop;
    http_client_t *cl;
    gw_scraper_t *sc;
    srv_app_t app[K_N];
    gw_endpoint_t ep[K_N + 1]; /* + the refusing one */
    uint64_t deadline;
    bool (*pred)(struct fx *);
    bool met;
} fx_t;

#define EP_REFUSED K_N

static void on_poll(ev_loop_t *loop, uint64_t id, void *udata)
{
    fx_t *fx = udata;
    if (fx->pred && fx->pred(fx)) {
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

static bool run_until(fx_t *fx, bool (*pred)(fx_t *), int max_ms)
{
    fx->pred = pred;
    fx->deadline = sy_mono_ms() + (uint64_t)max_ms;
    fx->met = false;
    ev_timer_add(fx->loop, 0, on_poll, fx);
    assert_int_equal(ev_run(fx->loop), ST_OK);
    return fx->met;
}

static void ep_init(gw_endpoint_t *ep, uint32_t id, int port)
{
    memset(ep, 0, sizeof *ep);
    ep->id = id;
    snprintf(ep->host, sizeof ep->host, "127.0.0.1");
    ep->port = port;
    snprintf(ep->name, sizeof ep->name, "127.0.0.1:%d", port);
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    return ntohs(a.sin_port);
}

static int setup(void **state)
{
    sy_log_set_level(SY_LOG_ERROR);
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->loop = ev_loop_create();
    assert_non_null(fx->loop);
    fx->cl = http_client_create(fx->loop, NULL);
    assert_non_null(fx->cl);
    gw_scraper_config_t cfg;
    gw_scraper_config_default(&cfg);
    cfg.interval_ms = 20;
    cfg.staleness_ms = 60;
    cfg.scrape_timeout_ms = 200;
    cfg.health_interval_ms = 50;
    cfg.health_timeout_ms = 200;
    fx->sc = gw_scraper_create(fx->loop, fx->cl, &cfg);
    assert_non_null(fx->sc);
    for (int k = 0; k < K_N; k++) {
        srv_app_t *a = &fx->app[k];
        a->loop = fx->loop;
        a->kind = (kind_t)k;
        if (k == K_HUGE) {
            a->huge = malloc(5u << 20);
            assert_non_null(a->huge);
            for (size_t i = 0; i < (5u << 20); i++)
                a->huge[i] = (i % 64 == 63) ? '\n' : 'x';
        }
        a->srv = http_server_create(fx->loop, NULL, on_request, a);
        assert_non_null(a->srv);
        assert_int_equal(http_server_listen(a->srv, "127.0.0.1", 0), ST_OK);
        ep_init(&fx->ep[k], (uint32_t)k, http_server_port(a->srv));
        assert_int_equal(gw_scraper_add(fx->sc, &fx->ep[k]), ST_OK);
    }
    ep_init(&fx->ep[EP_REFUSED], EP_REFUSED, free_port());
    fx->ep[EP_REFUSED].healthy = true;
    assert_int_equal(gw_scraper_add(fx->sc, &fx->ep[EP_REFUSED]), ST_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    gw_scraper_destroy(fx->sc);
    http_client_destroy(fx->cl);
    for (int k = 0; k < K_N; k++) {
        http_server_destroy(fx->app[k].srv);
        free(fx->app[k].huge);
    }
    ev_loop_destroy(fx->loop);
    free(fx);
    assert_int_equal(sy_alloc_live_bytes(), 0);
    return 0;
}

static gw_scrape_stats_t stats(fx_t *fx, int k)
{
    gw_scrape_stats_t st;
    assert_int_equal(gw_scraper_stats(fx->sc, &fx->ep[k], &st), ST_OK);
    return st;
}

static bool pred_settled(fx_t *fx)
{
    return fx->ep[K_GOOD].m.valid && stats(fx, K_GARBAGE).scrapes_failed >= 2 &&
           stats(fx, K_HUGE).scrapes_too_large >= 1 && stats(fx, K_HANG).scrapes_timeout >= 2 &&
           stats(fx, EP_REFUSED).health_failed >= 1 && stats(fx, K_SICK).health_failed >= 1 &&
           stats(fx, K_GOOD).health_ok >= 1 && stats(fx, K_GOOD).scrapes_ok >= 5 &&
           fx->ep[K_STRICT].m.valid && fx->ep[K_BLANK].m.valid;
}

static void test_scraper_endpoints(void **state)
{
    fx_t *fx = *state;
    fx->ep[K_GOOD].ejected = true;
    fx->ep[K_GOOD].consecutive_failures = 3;
    assert_true(fx->ep[K_GOOD].metrics_stale); /* until the first success */
    assert_int_equal(gw_scraper_add(fx->sc, &fx->ep[K_GOOD]), ST_EXISTS);
    assert_true(run_until(fx, pred_settled, WAIT_MS));

    /* good: DP ranks summed / averaged, recovered by the health probe */
    const gw_endpoint_t *g = &fx->ep[K_GOOD];
    assert_true(g->m.valid);
    assert_false(g->metrics_stale);
    assert_true(g->m.waiting == 3.0);
    assert_true(g->m.running == 5.0);
    assert_true(fabs(g->m.kv_usage - 0.3) < 1e-9);
    assert_int_equal(g->m.block_size, 16);
    assert_int_equal(g->m.num_blocks, 2000);
    assert_true(g->healthy);
    assert_false(g->ejected);
    assert_int_equal(g->consecutive_failures, 0);
    assert_int_equal(fx->app[K_GOOD].max_inflight, 1);
    /* every scrape asked for the five gauges only */
    assert_int_equal(fx->app[K_GOOD].filtered_reqs, fx->app[K_GOOD].metrics_reqs);
    assert_int_equal(fx->app[K_GOOD].plain_reqs, 0);

    /* a filtered scrape refused (400) or answered without the metrics: plain path from then on */
    for (int k = K_STRICT; k <= K_BLANK; k++) {
        assert_true(fx->ep[k].m.valid);
        assert_true(fx->ep[k].m.waiting == 3.0);
        assert_int_equal(fx->app[k].filtered_reqs, 1);
        assert_true(fx->app[k].plain_reqs >= 1);
        assert_int_equal(fx->app[k].other_query_reqs, 0);
        assert_int_equal(stats(fx, k).scrapes_failed, 1);
    }

    /* garbage: never valid, stale, counted, still healthy */
    const gw_endpoint_t *x = &fx->ep[K_GARBAGE];
    assert_false(x->m.valid);
    assert_true(x->metrics_stale);
    assert_true(x->healthy);
    assert_true(stats(fx, K_GARBAGE).malformed_lines >= 2);
    assert_int_equal(stats(fx, K_GARBAGE).scrapes_ok, 0);

    /* oversized: failure, stale */
    assert_false(fx->ep[K_HUGE].m.valid);
    assert_true(fx->ep[K_HUGE].metrics_stale);

    /* hang: timeouts, one scrape in flight at a time */
    assert_false(fx->ep[K_HANG].m.valid);
    assert_true(fx->ep[K_HANG].metrics_stale);
    assert_true(fx->app[K_HANG].metrics_reqs >= 2);
    /* The scraper starts the next scrape only after the previous one timed out and its
     * connection was closed: every request but the last one ended in a timeout. (The server may
     * see the next request before it reaps the closed connection, whose on_close runs from its
     * pending timer, so its own in-flight count can briefly read 2.) */
    assert_true(stats(fx, K_HANG).scrapes_timeout + 1 >= (uint64_t)fx->app[K_HANG].metrics_reqs);
    assert_true(fx->app[K_HANG].max_inflight <= 2);

    /* sick: metrics fine, /health 503 -> unhealthy */
    assert_true(fx->ep[K_SICK].m.valid);
    assert_false(fx->ep[K_SICK].healthy);

    /* refused: unhealthy, stale, failures counted */
    assert_false(fx->ep[EP_REFUSED].healthy);
    assert_true(fx->ep[EP_REFUSED].metrics_stale);
    assert_true(stats(fx, EP_REFUSED).scrapes_failed >= 1);

    gw_scrape_stats_t tot;
    assert_int_equal(gw_scraper_stats(fx->sc, NULL, &tot), ST_OK);
    assert_true(tot.scrapes_ok >= stats(fx, K_GOOD).scrapes_ok);
}

static bool pred_slow_valid(fx_t *fx)
{
    return fx->ep[K_SLOW].m.valid && !fx->ep[K_SLOW].metrics_stale;
}

static bool pred_slow_stale(fx_t *fx)
{
    return fx->ep[K_SLOW].metrics_stale;
}

static void test_slow_endpoint_staleness(void **state)
{
    fx_t *fx = *state;
    assert_true(run_until(fx, pred_slow_valid, WAIT_MS));
    double first = fx->ep[K_SLOW].m.running;
    uint64_t at = fx->ep[K_SLOW].m.scraped_ms;
    /* the next answer takes 120 ms > staleness 60 ms: stale, last values kept */
    assert_true(run_until(fx, pred_slow_stale, WAIT_MS));
    assert_true(fx->ep[K_SLOW].m.valid);
    if (fx->ep[K_SLOW].m.scraped_ms == at)
        assert_true(fx->ep[K_SLOW].m.running == first);
    assert_true(run_until(fx, pred_slow_valid, WAIT_MS));
    assert_true(fx->ep[K_SLOW].m.running > first);
    assert_int_equal(fx->app[K_SLOW].max_inflight, 1);
}

static bool pred_never(fx_t *fx)
{
    return false;
}

static void test_remove(void **state)
{
    fx_t *fx = *state;
    run_until(fx, pred_never, 30); /* scrapes in flight */
    assert_int_equal(gw_scraper_remove(fx->sc, &fx->ep[K_HANG]), ST_OK);
    assert_int_equal(gw_scraper_remove(fx->sc, &fx->ep[K_HANG]), ST_NOTFOUND);
    gw_scrape_stats_t st;
    assert_int_equal(gw_scraper_stats(fx->sc, &fx->ep[K_HANG], &st), ST_NOTFOUND);
    int before = fx->app[K_HANG].metrics_reqs;
    run_until(fx, pred_never, 300);
    assert_int_equal(fx->app[K_HANG].metrics_reqs, before);
    assert_null(gw_scraper_create(NULL, fx->cl, NULL));
    gw_scraper_destroy(NULL);
    assert_int_equal(gw_scraper_add(fx->sc, NULL), ST_INVAL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_scraper_endpoints),
        T(test_slow_endpoint_staleness),
        T(test_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
