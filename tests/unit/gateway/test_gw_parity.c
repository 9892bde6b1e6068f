/*
 * test_gw_parity.c - active hash-parity verification. Pure parts: probe length, token ids (range,
 * determinism per seed, freshness across seeds), the probe body (valid JSON, escaping), and the
 * comparison (match, first-block and later-block mismatch, block-size mismatch, nothing seen).
 * State machine end to end on 127.0.0.1 (kernel-chosen ports, one event loop): a fake engine
 * (http_server) answers the probe and publishes its BlockStored (encoded by the engine's
 * kv_events encoder, on a raw ZMQ PUB whose seq the test controls) hashed with its own seed and
 * block size, the real subscriber records it, and the
 * verifier reaches match / mismatch (seed, block size) / no_events / probe_failed (500s and a
 * closed port, with retries), and re-probes after a publisher restart. Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/ev.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/kv_events_int.h"
#include "engine/kv_hash.h"
#include "gateway/gw_parity.h"
#include "gateway/kv_decode.h"
#include "gateway/kv_sub.h"
#include "gateway/prefix_index.h"
#include "http/http_client.h"
#include "http/http_server.h"

/* ------------------------------------------------------------------ pure parts */

static void test_probe_len(void **state)
{
    (void)state;
    assert_int_equal(gwpar_probe_len(16), 128);
    assert_int_equal(gwpar_probe_len(64), 128);
    assert_int_equal(gwpar_probe_len(100), 200);
    assert_int_equal(gwpar_probe_len(1024), 2048);
    assert_int_equal(gwpar_probe_len(1), 128);
}

static void test_probe_tokens(void **state)
{
    (void)state;
    int32_t a[512], b[512], c[512];
    gwpar_probe_tokens(42, a, 512);
    gwpar_probe_tokens(42, b, 512);
    gwpar_probe_tokens(43, c, 512);
    assert_memory_equal(a, b, sizeof(a));
    int same = 0, lo = 1000, hi = -1;
    for (int i = 0; i < 512; i++) {
        same += a[i] == c[i];
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
        assert_true(a[i] >= GWPAR_TOKEN_MIN && a[i] <= GWPAR_TOKEN_MAX);
        assert_true(c[i] >= GWPAR_TOKEN_MIN && c[i] <= GWPAR_TOKEN_MAX);
    }
    assert_true(same < 20);           /* another seed, other ids */
    assert_true(lo < 20 && hi > 230); /* the whole range is used */
    /* seed 0 is fine too */
    gwpar_probe_tokens(0, c, 16);
    assert_true(c[0] != c[1] || c[1] != c[2]);
}

static void test_probe_body(void **state)
{
    (void)state;
    int32_t t[3] = {3, 250, 17};
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gwpar_probe_body(&b, "sim/m\"x", t, 3), ST_OK);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "sim/m\"x");
    json_t *p = json_object_get(j, "prompt");
    assert_int_equal(json_array_size(p), 3);
    assert_int_equal(json_integer_value(json_array_get(p, 1)), 250);
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 1);
    assert_int_equal(json_object_size(j), 3);
    json_decref(j);
    sy_buf_deinit(&b);
}

static void test_compare(void **state)
{
    (void)state;
    uint64_t exp[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    kvsub_probe_result_t o;
    memset(&o, 0, sizeof(o));
    gwpar_verdict_t v;
    gwpar_compare(exp, 8, 16, &o, &v); /* nothing seen */
    assert_int_equal(v.result, GWPAR_NO_EVENTS);
    gwpar_compare(exp, 8, 16, NULL, &v);
    assert_int_equal(v.result, GWPAR_NO_EVENTS);

    o.seen = true;
    o.block_size = 16;
    o.n_hashes = 8;
    memcpy(o.hashes, exp, sizeof(exp));
    gwpar_compare(exp, 8, 16, &o, &v);
    assert_int_equal(v.result, GWPAR_MATCH);
    assert_int_equal(v.compared, 8);
    assert_null(v.why);
    /* fewer published blocks than expected: compared over what is there */
    o.n_hashes = 3;
    gwpar_compare(exp, 8, 16, &o, &v);
    assert_int_equal(v.result, GWPAR_MATCH);
    assert_int_equal(v.compared, 3);
    /* first block differs: the seed */
    o.n_hashes = 8;
    o.hashes[0] = 99;
    gwpar_compare(exp, 8, 16, &o, &v);
    assert_int_equal(v.result, GWPAR_MISMATCH);
    assert_int_equal(v.block, 0);
    assert_true(v.gateway_hash == 1 && v.engine_hash == 99);
    assert_non_null(strstr(v.why, "first block"));
    /* a later block differs */
    o.hashes[0] = 1;
    o.hashes[5] = 0;
    gwpar_compare(exp, 8, 16, &o, &v);
    assert_int_equal(v.result, GWPAR_MISMATCH);
    assert_int_equal(v.block, 5);
    /* the engine's block size differs */
    memcpy(o.hashes, exp, sizeof(exp));
    o.block_size = 32;
    gwpar_compare(exp, 8, 16, &o, &v);
    assert_int_equal(v.result, GWPAR_MISMATCH);
    assert_non_null(strstr(v.why, "block size"));

    assert_string_equal(gwpar_result_name(GWPAR_NO_EVENTS), "no_events");
    assert_string_equal(gwpar_result_name(GWPAR_PROBE_FAILED), "probe_failed");
    assert_string_equal(gwpar_result_name(GWPAR_PENDING), "pending");
}

static void test_create_misuse(void **state)
{
    (void)state;
    gwpar_config_t c;
    gwpar_config_default(&c);
    int st = 0;
    assert_null(gwpar_create(NULL, &c, &st));
    assert_int_equal(st, ST_INVAL);
    gwpar_destroy(NULL);
    gwpar_tick(NULL, NULL, 0);
    gwpar_remove_endpoint(NULL, 0);
    assert_int_equal(gwpar_result(NULL, 0), GWPAR_PENDING);
}

/* ------------------------------------------------------------------ end to end */

#define BS 16

typedef enum fake_mode {
    FAKE_PUBLISH = 0, /* 200 and BlockStored for the prompt's full blocks */
    FAKE_SILENT,      /* 200, no event */
    FAKE_ERROR,       /* 500 */
} fake_mode_t;

typedef struct fixture {
    ev_loop_t *loop;
    http_server_t *srv;
    http_client_t *client;
    pidx_t *pidx;
    kvsub_t *sub;
    void *zctx, *pub; /* raw PUB bound on 127.0.0.1 */
    char pub_ep[256];
    uint64_t seq; /* next seq; set to 0 to look like a restarted engine */
    mx_registry_t *reg;
    gwpar_t *par;
    gw_table_t table;
    gw_endpoint_t ep;
    /* the fake engine */
    fake_mode_t mode;
    const char *engine_seed;
    uint32_t engine_bs;
    int requests;
    bool split; /* publish root and continuation in separate events */
    /* the run */
    uint64_t deadline;
    gwpar_result_t want_not; /* stop when the result differs from this */
    int stop_at_requests;    /* also stop once the fake engine saw this many (0 = off) */
} fixture_t;

/* Publishes one message [topic, seq, batch of the n events linked from head] (NULL = empty). */
static void publish(fixture_t *f, kve_event_t *head, uint32_t n)
{
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(kve_encode_batch(head, n, 1.5, false, true, &b), ST_OK);
    uint8_t sb[8];
    kvd_be64_put(sb, f->seq++);
    assert_true(zmq_send(f->pub, "kv@fake", 7, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(f->pub, sb, 8, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(f->pub, b.data, b.len, 0) >= 0);
    sy_buf_deinit(&b);
    kve_event_free_list(head);
}

static void publish_stored(fixture_t *f, const kvh_digest_t *d, uint32_t n,
                           const kvh_digest_t *parent, const int32_t *toks)
{
    kve_event_t *e = kve_event_new(KVE_EV_STORED, d, n, parent, toks, f->engine_bs);
    assert_non_null(e);
    publish(f, e, 1);
}

static void on_request(http_req_t *req, void *udata)
{
    fixture_t *f = udata;
    f->requests++;
    sy_slice_t path = http_req_path(req);
    if (!sy_slice_eq(path, "/v1/completions") || f->mode == FAKE_ERROR) {
        http_req_respond_error(req, 500, NULL, "fake failure", NULL);
        return;
    }
    sy_slice_t body = http_req_body(req);
    json_t *j = json_loadb(body.ptr, body.len, 0, NULL);
    json_t *p = json_object_get(j, "prompt");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "sim/p");
    size_t n = json_array_size(p);
    assert_true(n >= 128);
    int32_t toks[4096];
    for (size_t i = 0; i < n; i++)
        toks[i] = (int32_t)json_integer_value(json_array_get(p, i));
    json_decref(j);
    if (f->mode == FAKE_PUBLISH) {
        kvh_digest_t d[256], none;
        kvh_none_hash(f->engine_seed, &none);
        uint32_t nb = (uint32_t)(n / f->engine_bs);
        for (uint32_t b = 0; b < nb; b++)
            kvh_block(b ? &d[b - 1] : &none, toks + b * f->engine_bs, f->engine_bs, NULL, 0, &d[b]);
        if (f->split && nb > 1) {
            publish_stored(f, d, 1, NULL, toks);
            publish_stored(f, d + 1, nb - 1, &d[0], toks + f->engine_bs);
        } else {
            publish_stored(f, d, nb, NULL, toks);
        }
    }
    static const char k_ok[] = "{\"choices\":[{\"text\":\"x\"}]}";
    http_req_respond(req, 200, "application/json", k_ok, sizeof k_ok - 1, NULL);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void on_tick(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    fixture_t *f = udata;
    uint64_t now = ev_now_ms(loop);
    gwpar_tick(f->par, &f->table, now);
    if (gwpar_result(f->par, 0) != f->want_not || now >= f->deadline ||
        (f->stop_at_requests && f->requests >= f->stop_at_requests)) {
        ev_stop(loop);
        return;
    }
    ev_timer_add(loop, 10, on_tick, f);
}

/* Runs the loop until slot 0's result leaves `from` (bounded); returns the result. */
static gwpar_result_t run_until_not(fixture_t *f, gwpar_result_t from, uint64_t limit_ms)
{
    f->want_not = from;
    f->deadline = ev_now_ms(f->loop) + limit_ms;
    ev_timer_add(f->loop, 1, on_tick, f);
    ev_run(f->loop);
    return gwpar_result(f->par, 0);
}

/* Slow joiner: empty batches until the subscriber has seen one. */
static void join(fixture_t *f)
{
    bool ok = false;
    for (int i = 0; i < 200 && !ok; i++) {
        publish(f, NULL, 0);
        sleep_ms(20);
        kvsub_stats_t st;
        ok = kvsub_get_stats(f->sub, 0, &st) == ST_OK && st.messages > 0;
    }
    assert_true(ok);
    sleep_ms(30);
}

static void fixture_open(fixture_t *f, const char *gw_seed, fake_mode_t mode, bool dead_port,
                         uint32_t max_attempts)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->engine_seed = "0";
    f->engine_bs = BS;
    f->loop = ev_loop_create();
    assert_non_null(f->loop);
    http_server_config_t hc;
    http_server_config_default(&hc);
    f->srv = http_server_create(f->loop, &hc, on_request, f);
    assert_non_null(f->srv);
    assert_int_equal(http_server_listen(f->srv, "127.0.0.1", 0), ST_OK);
    int port = http_server_port(f->srv);
    if (dead_port) { /* a port nobody listens on: the server's, after it is gone */
        http_server_destroy(f->srv);
        f->srv = NULL;
    }
    http_client_config_t cc;
    http_client_config_default(&cc);
    cc.connect_timeout_ms = 500;
    f->client = http_client_create(f->loop, &cc);
    assert_non_null(f->client);
    int st;
    f->table.ups[0] = http_upstream_create(f->client, "127.0.0.1", port, &st);
    assert_non_null(f->table.ups[0]);
    snprintf(f->ep.name, sizeof f->ep.name, "127.0.0.1:%d", port);
    f->ep.models[0] = "sim/p";
    f->ep.n_models = 1;
    f->ep.m.valid = true; /* "scraped once" */
    f->ep.healthy = true;
    f->table.eps[0] = &f->ep;
    f->table.n = 1;

    f->pidx = pidx_create(10000, 4);
    kvsub_config_t kc;
    kvsub_config_default(&kc);
    kc.poll_ms = 5;
    f->sub = kvsub_create(f->pidx, &kc, &st);
    assert_non_null(f->sub);
    f->zctx = zmq_ctx_new();
    f->pub = zmq_socket(f->zctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(f->pub, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(f->pub, "tcp://127.0.0.1:*"), 0);
    size_t sz = sizeof(f->pub_ep);
    assert_int_equal(zmq_getsockopt(f->pub, ZMQ_LAST_ENDPOINT, f->pub_ep, &sz), 0);
    assert_int_equal(kvsub_add_endpoint(f->sub, 0, f->pub_ep, NULL, NULL), ST_OK);
    join(f);

    f->reg = mx_registry_create();
    gwpar_config_t c;
    gwpar_config_default(&c);
    kvh_none_hash(gw_seed, &c.none_hash);
    c.hash_seed = gw_seed;
    c.block_size = BS;
    c.wait_ms = 300;
    c.settle_ms = 100;
    c.request_timeout_ms = 2000;
    c.max_attempts = max_attempts;
    c.backoff_ms = 20;
    c.no_events_retries = 1;
    c.reprobe_min_ms = 0;
    c.metrics = f->reg;
    f->par = gwpar_create(f->sub, &c, &st);
    assert_int_equal(st, ST_OK);
    assert_non_null(f->par);
}

static void fixture_close(fixture_t *f)
{
    gwpar_remove_endpoint(f->par, 0);
    gwpar_destroy(f->par);
    http_server_destroy(f->srv);
    http_client_destroy(f->client); /* frees the upstream */
    kvsub_destroy(f->sub);
    zmq_close(f->pub);
    zmq_ctx_term(f->zctx);
    pidx_destroy(f->pidx);
    mx_registry_destroy(f->reg);
    ev_loop_destroy(f->loop);
}

/* The metric text has result=<want> at 1 and the others at 0 for the endpoint. */
static void assert_metric(fixture_t *f, const char *want)
{
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(f->reg, &b), ST_OK);
    for (int k = 0; k < GWPAR_N_RESULTS; k++) {
        const char *r = gwpar_result_name((gwpar_result_t)k);
        char line[300];
        snprintf(line, sizeof line,
                 "switchyard_gateway_hash_parity{endpoint=\"%s\",result=\"%s\"} %s\n", f->ep.name,
                 r, strcmp(r, want) == 0 ? "1.0" : "0.0");
        if (!strstr(b.data, line)) {
            fprintf(stderr, "missing: %s---\n%s\n", line, b.data);
            fail();
        }
    }
    sy_buf_deinit(&b);
}

static void test_e2e_match(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_PUBLISH, false, 3);
    f.split = true; /* the chain comes in two events */
    assert_int_equal(gwpar_result(f.par, 0), GWPAR_PENDING);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MATCH);
    assert_int_equal(f.requests, 1);
    assert_metric(&f, "match");
    /* no re-probe without a publisher restart */
    run_until_not(&f, GWPAR_MATCH, 200);
    assert_int_equal(f.requests, 1);
    /* removal zeroes the gauges */
    gwpar_remove_endpoint(f.par, 0);
    assert_int_equal(gwpar_result(f.par, 0), GWPAR_PENDING);
    sy_buf_t b = SY_BUF_INIT;
    mx_registry_render(f.reg, &b);
    assert_null(strstr(b.data, "} 1.0"));
    sy_buf_deinit(&b);
    fixture_close(&f);
}

static void test_e2e_seed_mismatch(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "12345", FAKE_PUBLISH, false, 3);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MISMATCH);
    assert_metric(&f, "mismatch");
    fixture_close(&f);
}

static void test_e2e_block_size_mismatch(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_PUBLISH, false, 3);
    f.engine_bs = 32;
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MISMATCH);
    fixture_close(&f);
}

static void test_e2e_no_events(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_SILENT, false, 3);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_NO_EVENTS);
    assert_int_equal(f.requests, 2); /* one retry against a slow joiner */
    assert_metric(&f, "no_events");
    fixture_close(&f);
}

static void test_e2e_probe_failed(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_ERROR, false, 3);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_PROBE_FAILED);
    assert_int_equal(f.requests, 3);
    assert_metric(&f, "probe_failed");
    fixture_close(&f);

    fixture_open(&f, "0", FAKE_PUBLISH, true, 2); /* connection refused */
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_PROBE_FAILED);
    fixture_close(&f);
}

/* A failing endpoint that comes good before the attempts run out ends in match. */
static void test_e2e_retry_then_match(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_ERROR, false, 5);
    f.stop_at_requests = 2;
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_PENDING);
    assert_int_equal(f.requests, 2);
    f.stop_at_requests = 0;
    f.mode = FAKE_PUBLISH;
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MATCH);
    assert_int_equal(f.requests, 3);
    fixture_close(&f);
}

/* A publisher restart (a new engine process: seq back to 0 on the same address) triggers a new
 * probe, which finds the new process's other seed. */
static void test_e2e_reprobe_after_restart(void **state)
{
    (void)state;
    fixture_t f;
    fixture_open(&f, "0", FAKE_PUBLISH, false, 3);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MATCH);
    assert_int_equal(f.requests, 1);
    f.seq = 0; /* the "new engine process" starts its seq again, and has another seed */
    f.engine_seed = "777";
    publish(&f, NULL, 0);
    bool restarted = false;
    for (int i = 0; i < 200 && !restarted; i++) {
        sleep_ms(10);
        kvsub_stats_t ks;
        restarted = kvsub_get_stats(f.sub, 0, &ks) == ST_OK && ks.restarts > 0;
    }
    assert_true(restarted);
    assert_int_equal(run_until_not(&f, GWPAR_MATCH, 5000), GWPAR_PENDING);
    assert_int_equal(run_until_not(&f, GWPAR_PENDING, 10000), GWPAR_MISMATCH);
    assert_int_equal(f.requests, 2);
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_len),
        cmocka_unit_test(test_probe_tokens),
        cmocka_unit_test(test_probe_body),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_create_misuse),
        cmocka_unit_test(test_e2e_match),
        cmocka_unit_test(test_e2e_seed_mismatch),
        cmocka_unit_test(test_e2e_block_size_mismatch),
        cmocka_unit_test(test_e2e_no_events),
        cmocka_unit_test(test_e2e_probe_failed),
        cmocka_unit_test(test_e2e_retry_then_match),
        cmocka_unit_test(test_e2e_reprobe_after_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
