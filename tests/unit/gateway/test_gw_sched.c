/*
 * test_gw_sched.c - the endpoint picker: every filter, every scorer's formula on crafted
 * endpoints, every picker with a fixed RNG seed, weighted totals, profile selection, the
 * hot-spot guard, YAML errors and their messages, the built-in configs against
 * deploy/scheduler/<name>.yaml, decision JSON, and that gws_pick does not allocate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"
#include "gateway/gw_sched.h"

#define NEP 8

static gw_endpoint_t EP[NEP];
static gw_endpoint_t *EPP[NEP];
static char MODEL_A[] = "model-a";
static char MODEL_B[] = "model-b";

/* NEP healthy aggregated endpoints serving model-a, fresh metrics, idle. */
static void reset_eps(void)
{
    memset(EP, 0, sizeof EP);
    for (int i = 0; i < NEP; i++) {
        EP[i].id = (uint32_t)i;
        snprintf(EP[i].name, sizeof EP[i].name, "10.0.0.%d:8000", i);
        EP[i].role = GW_ROLE_BOTH;
        EP[i].models[0] = MODEL_A;
        EP[i].n_models = 1;
        EP[i].healthy = true;
        EP[i].m.valid = true;
        EPP[i] = &EP[i];
    }
}

static gws_sched_t *load(const char *yaml)
{
    gws_sched_t *s = NULL;
    char err[GWS_ERR_MAX];
    int rc = gws_config_load_text(yaml, strlen(yaml), &s, err, sizeof err);
    if (rc != ST_OK)
        fprintf(stderr, "load failed: %s\n", err);
    assert_int_equal(rc, ST_OK);
    gws_sched_seed(s, 42);
    return s;
}

/* A config with one profile: the given plugins (YAML list items) referenced in order. */
static gws_sched_t *load_simple(const char *plugins, const char *refs)
{
    char y[4096];
    snprintf(y, sizeof y,
             "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n%s"
             "schedulingProfiles:\n- name: p\n  plugins:\n%s",
             plugins, refs);
    return load(y);
}

static int n_cand(const gws_decision_t *d)
{
    return (int)d->n_candidates;
}

static void test_model_and_role_filters(void **state)
{
    reset_eps();
    EP[1].models[0] = MODEL_B;
    EP[2].models[1] = MODEL_B;
    EP[2].n_models = 2;
    EP[3].role = GW_ROLE_PREFILL;
    EP[4].role = GW_ROLE_DECODE;
    gws_sched_t *s = load_simple("- type: model-filter\n", "  - pluginRef: model-filter\n");
    gws_request_t r = {.model = "model-b"};
    gws_decision_t d;
    assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d), ST_OK);
    assert_int_equal(n_cand(&d), 2);
    assert_true(d.candidate[1] && d.candidate[2]);
    assert_true(d.endpoint == &EP[1] || d.endpoint == &EP[2]);
    r.model = "nope";
    assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d), ST_NOTFOUND);
    assert_null(d.endpoint);
    assert_int_equal(d.chosen, -1);
    r.model = NULL; /* no model: the filter has no opinion */
    assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d), ST_OK);
    assert_int_equal(n_cand(&d), NEP);
    gws_sched_destroy(s);

    s = load_simple("- type: decode-filter\n", "  - pluginRef: decode-filter\n");
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 1);
    assert_false(d.candidate[3]);
    gws_sched_destroy(s);
    s = load_simple("- type: prefill-filter\n", "  - pluginRef: prefill-filter\n");
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 1);
    assert_false(d.candidate[4]);
    assert_true(d.candidate[3]);
    gws_sched_destroy(s);
}

static void test_health_filter(void **state)
{
    reset_eps();
    EP[0].healthy = false;
    EP[1].ejected = true;
    EP[2].metrics_stale = true;
    gws_sched_t *s = load_simple("- type: health-filter\n", "  - pluginRef: health-filter\n");
    gws_request_t r = {0};
    gws_decision_t d;
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 3);
    assert_false(d.candidate[0] || d.candidate[1] || d.candidate[2]);
    /* every metric stale: keep the healthy, non-ejected ones */
    for (int i = 0; i < NEP; i++)
        EP[i].metrics_stale = true;
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 2);
    assert_true(d.candidate[2]);
    /* nobody healthy: nothing to pick */
    for (int i = 0; i < NEP; i++)
        EP[i].healthy = false;
    assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d), ST_NOTFOUND);
    gws_stats_t st;
    gws_sched_stats(s, &st);
    assert_int_equal(st.picks, 2);
    assert_int_equal(st.no_candidate, 1);
    gws_sched_destroy(s);
}

static void test_saturation_filter(void **state)
{
    reset_eps();
    EP[0].m.waiting = 5;
    EP[0].m.kv_usage = 0.8; /* saturated (both at threshold) */
    EP[1].m.waiting = 50;
    EP[1].m.kv_usage = 0.5; /* long queue but KV free: not saturated */
    EP[2].m.waiting = 1;
    EP[2].m.kv_usage = 0.99; /* full KV, short queue: not saturated */
    EP[3].m.valid = false;   /* no metrics: not saturated */
    EP[3].m.waiting = 100;
    EP[3].m.kv_usage = 1;
    gws_sched_t *s =
        load_simple("- type: saturation-filter\n", "  - pluginRef: saturation-filter\n");
    gws_request_t r = {0};
    gws_decision_t d;
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 1);
    assert_false(d.candidate[0]);
    /* all saturated: keep all */
    for (int i = 0; i < NEP; i++) {
        EP[i].m.valid = true;
        EP[i].m.waiting = 9;
        EP[i].m.kv_usage = 0.95;
    }
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP);
    gws_sched_destroy(s);
    /* parameters */
    s = load_simple("- type: saturation-filter\n  parameters:\n    queueDepthThreshold: 10\n"
                    "    kvCacheUtilThreshold: 0.9\n",
                    "  - pluginRef: saturation-filter\n");
    EP[0].m.waiting = 10; /* 10 >= 10 and 0.95 >= 0.9; the others wait 9 */
    gws_pick(s, NULL, &r, EPP, NEP, NULL, NULL, &d);
    assert_int_equal(n_cand(&d), NEP - 1);
    assert_false(d.candidate[0]);
    gws_sched_destroy(s);
}

/* Runs a one-scorer profile over the first n endpoints and returns its score row. */
static const double *score_with(gws_sched_t *s, gws_request_t *r, size_t n, pidx_t *p, aidx_t *a,
                                gws_decision_t *d)
{
    assert_int_equal(gws_pick(s, NULL, r, EPP, n, p, a, d), ST_OK);
    assert_int_equal(d->n_scorers, 1);
    return d->score[0];
}

#define ONE_SCORER(type, params)                                                                   \
    load_simple("- type: " type "\n" params, "  - pluginRef: " type "\n")

static void test_queue_and_kv_scorers(void **state)
{
    reset_eps();
    EP[0].m.waiting = 0;
    EP[1].m.waiting = 5;
    EP[2].m.waiting = 10;
    EP[0].m.kv_usage = 0.25;
    EP[1].m.kv_usage = 1.0;
    EP[2].m.kv_usage = 0.0;
    gws_request_t r = {0};
    gws_decision_t d;
    gws_sched_t *s = ONE_SCORER("queue-scorer", "");
    const double *sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 1.0, 1e-12);
    assert_float_equal(sc[1], 0.5, 1e-12);
    assert_float_equal(sc[2], 0.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[0]);
    EP[1].m.waiting = EP[2].m.waiting = 0; /* all equal -> 1 */
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[1], 1.0, 1e-12);
    assert_float_equal(sc[2], 1.0, 1e-12);
    gws_sched_destroy(s);
    s = ONE_SCORER("kv-cache-utilization-scorer", "");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 0.75, 1e-12);
    assert_float_equal(sc[1], 0.0, 1e-12);
    assert_float_equal(sc[2], 1.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[2]);
    gws_sched_destroy(s);
}

static void test_load_scorers(void **state)
{
    reset_eps();
    gws_request_t r = {0};
    gws_decision_t d;
    /* active-request-scorer: idle -> 1, else (max - n)/max * maxBusyScore */
    EP[0].inflight_requests = 0;
    EP[1].inflight_requests = 2;
    EP[2].inflight_requests = 8;
    gws_sched_t *s = ONE_SCORER("active-request-scorer", "");
    const double *sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 1.0, 1e-12);
    assert_float_equal(sc[1], 0.75, 1e-12);
    assert_float_equal(sc[2], 0.0, 1e-12);
    gws_sched_destroy(s);
    s = ONE_SCORER("active-request-scorer", "  parameters:\n    idleThreshold: 2\n"
                                            "    maxBusyScore: 0.5\n");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[1], 1.0, 1e-12);
    assert_float_equal(sc[2], 0.0, 1e-12);
    EP[2].inflight_requests = 4;
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[2], 0.0, 1e-12);
    EP[1].inflight_requests = 3;
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[1], 0.125, 1e-12); /* (4-3)/4 * 0.5 */
    gws_sched_destroy(s);

    /* token-load-scorer: 1 - min(1, tokens / threshold) */
    EP[0].inflight_tokens = 0;
    EP[1].inflight_tokens = 1000;
    EP[2].inflight_tokens = 5000;
    s = ONE_SCORER("token-load-scorer", "  parameters:\n    queueThresholdTokens: 4000\n");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 1.0, 1e-12);
    assert_float_equal(sc[1], 0.75, 1e-12);
    assert_float_equal(sc[2], 0.0, 1e-12);
    gws_sched_destroy(s);
    s = ONE_SCORER("token-load-scorer", "");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[2], 1.0 - 5000.0 / 4194304.0, 1e-12);
    gws_sched_destroy(s);

    /* prefill-load-scorer: 1 - p / max(max p, normalizationFloorTokens) */
    EP[0].inflight_prefill_tokens = 0;
    EP[1].inflight_prefill_tokens = 512;
    EP[2].inflight_prefill_tokens = 1024;
    s = ONE_SCORER("prefill-load-scorer", "");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 1.0, 1e-12);
    assert_float_equal(sc[1], 0.75, 1e-12); /* below the floor of 2048: absolute scale */
    assert_float_equal(sc[2], 0.5, 1e-12);
    EP[2].inflight_prefill_tokens = 4096;
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[1], 0.875, 1e-12); /* above it: relative to the most loaded */
    assert_float_equal(sc[2], 0.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[0]);
    gws_sched_destroy(s);
    s = ONE_SCORER("prefill-load-scorer", "  parameters:\n    normalizationFloorTokens: 256\n");
    EP[2].inflight_prefill_tokens = 0;
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[1], 0.0, 1e-12);
    assert_float_equal(sc[2], 1.0, 1e-12);
    gws_sched_destroy(s);
    char err[GWS_ERR_MAX];
    const char *bad = "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
                      "- type: prefill-load-scorer\n  parameters:\n"
                      "    normalizationFloorTokens: 0\n"
                      "schedulingProfiles:\n- name: p\n  plugins:\n"
                      "  - pluginRef: prefill-load-scorer\n";
    assert_int_equal(gws_config_load_text(bad, strlen(bad), &s, err, sizeof err), ST_INVAL);
    assert_non_null(strstr(err, "normalizationFloorTokens must be > 0"));

    /* load-aware-scorer: q = 0 -> 0.5, else 0.5 (1 - min(q, T)/T) */
    EP[0].m.waiting = 0;
    EP[1].m.waiting = 64;
    EP[2].m.waiting = 500;
    s = ONE_SCORER("load-aware-scorer", "");
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 0.5, 1e-12);
    assert_float_equal(sc[1], 0.25, 1e-12);
    assert_float_equal(sc[2], 0.0, 1e-12);
    gws_sched_destroy(s);

    /* session-affinity-scorer */
    s = ONE_SCORER("session-affinity-scorer", "");
    r.session = "10.0.0.2:8000";
    sc = score_with(s, &r, 3, NULL, NULL, &d);
    assert_float_equal(sc[0], 0.0, 1e-12);
    assert_float_equal(sc[2], 1.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[2]);
    assert_int_equal(gws_sched_needs(s), GWS_NEEDS_SESSION);
    gws_sched_destroy(s);
}

static void test_prefix_scorers(void **state)
{
    reset_eps();
    uint64_t blocks[10];
    for (int i = 0; i < 10; i++)
        blocks[i] = 1000 + (uint64_t)i;
    pidx_t *p = pidx_create(1000, NEP);
    aidx_t *a = aidx_create(NEP, 1000);
    pidx_add(p, 1, blocks, 10);
    pidx_add(p, 2, blocks, 4);
    uint64_t holey[3] = {1000, 1001, 1003}; /* block 1002 missing: 2 consecutive */
    pidx_add(p, 3, holey, 3);
    aidx_record(a, 4, blocks, 5);
    aidx_record(a, 5, blocks, 10);
    gws_request_t r = {
        .block_hashes = blocks, .n_block_hashes = 10, .chunk_hashes = blocks, .n_chunk_hashes = 10};
    gws_decision_t d;
    gws_sched_t *s = ONE_SCORER("precise-prefix-cache-scorer", "");
    assert_int_equal(gws_sched_needs(s), GWS_NEEDS_PRECISE);
    const double *sc = score_with(s, &r, NEP, p, a, &d);
    assert_float_equal(sc[1], 1.0, 1e-12);
    assert_float_equal(sc[2], 0.4, 1e-12);
    assert_float_equal(sc[3], 0.2, 1e-12);
    assert_float_equal(sc[0], 0.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[1]);
    assert_int_equal(d.cached_blocks_chosen, 10);
    assert_int_equal(d.cached_blocks_best, 10);
    assert_int_equal(d.cached_chunks_best, 10); /* observability even without an approx scorer */
    /* no precise index: scores 0, no data */
    sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_float_equal(sc[1], 0.0, 1e-12);
    assert_int_equal(d.cached_blocks_best, 0);
    gws_sched_destroy(s);

    s = ONE_SCORER("prefix-cache-scorer", "");
    assert_int_equal(gws_sched_needs(s), GWS_NEEDS_APPROX);
    sc = score_with(s, &r, NEP, p, a, &d);
    assert_float_equal(sc[4], 0.5, 1e-12);
    assert_float_equal(sc[5], 1.0, 1e-12);
    assert_float_equal(sc[1], 0.0, 1e-12);
    assert_ptr_equal(d.endpoint, &EP[5]);
    assert_int_equal(d.cached_chunks_chosen, 10);
    assert_int_equal(d.cached_blocks_chosen, 0); /* regret: precise says endpoint 1 had it all */
    assert_int_equal(d.cached_blocks_best, 10);
    assert_false(d.hotspot);
    gws_sched_destroy(s);
    pidx_destroy(p);
    aidx_destroy(a);
}

static void test_hotspot_guard(void **state)
{
    reset_eps();
    uint64_t blocks[4] = {1, 2, 3, 4};
    aidx_t *a = aidx_create(NEP, 1000);
    aidx_record(a, 0, blocks, 4);
    aidx_record(a, 1, blocks, 2);
    gws_request_t r = {.chunk_hashes = blocks, .n_chunk_hashes = 4};
    gws_decision_t d;
    gws_sched_t *s = ONE_SCORER("prefix-cache-scorer", "");
    /* others average 1 in flight: limit 2 * 1 + 4 = 6 */
    for (int i = 0; i < NEP; i++)
        EP[i].inflight_requests = 1;
    EP[0].inflight_requests = 6;
    const double *sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_false(d.hotspot);
    assert_float_equal(sc[0], 1.0, 1e-12);
    EP[0].inflight_requests = 7;
    sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_true(d.hotspot);
    assert_float_equal(sc[0], 0.5, 1e-12);
    assert_float_equal(sc[1], 0.5, 1e-12);
    gws_stats_t st;
    gws_sched_stats(s, &st);
    assert_int_equal(st.hotspot_fired, 1);
    /* unhealthy endpoints do not count in the mean */
    EP[0].inflight_requests = 20;
    for (int i = 2; i < NEP; i++) {
        EP[i].healthy = false;
        EP[i].inflight_requests = 100;
    }
    EP[1].inflight_requests = 8; /* limit = 2 * 8 + 4 = 20: not over */
    sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_false(d.hotspot);
    gws_sched_destroy(s);
    /* parameters: off, or a stronger penalty */
    EP[1].inflight_requests = 0;
    s = ONE_SCORER("prefix-cache-scorer", "  parameters:\n    hotspotGuard: false\n");
    sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_false(d.hotspot);
    assert_float_equal(sc[0], 1.0, 1e-12);
    gws_sched_destroy(s);
    s = ONE_SCORER("prefix-cache-scorer", "  parameters:\n    hotspotPenalty: 0.1\n"
                                          "    hotspotFactor: 1\n    hotspotSlack: 0\n");
    sc = score_with(s, &r, NEP, NULL, a, &d);
    assert_true(d.hotspot);
    assert_float_equal(sc[0], 0.1, 1e-12);
    /* with queue-scorer weight, the hot endpoint loses to the second-best prefix holder */
    gws_sched_destroy(s);
    aidx_destroy(a);
}

static void test_weights_and_default_picker(void **state)
{
    reset_eps();
    EP[0].m.waiting = 10; /* queue 0, kv 0.9 */
    EP[0].m.kv_usage = 0.1;
    EP[1].m.waiting = 0; /* queue 1, kv 0.2 */
    EP[1].m.kv_usage = 0.8;
    gws_sched_t *s =
        load_simple("- type: queue-scorer\n- name: kv\n  type: kv-cache-utilization-scorer\n",
                    "  - pluginRef: queue-scorer\n    weight: 2\n"
                    "  - pluginRef: kv\n    weight: 3\n");
    gws_request_t r = {0};
    gws_decision_t d;
    assert_int_equal(gws_pick(s, NULL, &r, EPP, 2, NULL, NULL, &d), ST_OK);
    assert_int_equal(d.n_scorers, 2);
    assert_string_equal(d.scorer_names[1], "kv");
    assert_float_equal(d.weights[1], 3.0, 0);
    assert_float_equal(d.total[0], 2 * 0.0 + 3 * 0.9, 1e-9);
    assert_float_equal(d.total[1], 2 * 1.0 + 3 * 0.2, 1e-9);
    assert_ptr_equal(d.endpoint, &EP[0]); /* 2.7 > 2.6, picked by the injected max-score-picker */
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gws_sched_describe(s, &b), ST_OK);
    assert_non_null(strstr(b.data, "picker max-score-picker type=max-score-picker/1"));
    assert_non_null(strstr(b.data, "scorer kv type=kv-cache-utilization-scorer/1 weight=3"));
    sy_buf_deinit(&b);
    gws_sched_destroy(s);
}

static int count_picks(gws_sched_t *s, size_t n, int runs, int *hist)
{
    gws_request_t r = {0};
    gws_decision_t d;
    memset(hist, 0, sizeof(int) * n);
    for (int k = 0; k < runs; k++) {
        assert_int_equal(gws_pick(s, NULL, &r, EPP, n, NULL, NULL, &d), ST_OK);
        hist[d.chosen]++;
    }
    return runs;
}

static void test_pickers(void **state)
{
    reset_eps();
    int hist[NEP];
    /* max-score: 0 and 2 tie on the best queue; both win about half the time, never 1 */
    EP[0].m.waiting = 0;
    EP[1].m.waiting = 4;
    EP[2].m.waiting = 0;
    gws_sched_t *s = load_simple("- type: queue-scorer\n- type: max-score-picker\n",
                                 "  - pluginRef: queue-scorer\n  - pluginRef: max-score-picker\n");
    count_picks(s, 3, 1000, hist);
    assert_int_equal(hist[1], 0);
    assert_in_range(hist[0], 400, 600);
    gws_sched_destroy(s);

    s = load_simple("- type: random-picker\n", "  - pluginRef: random-picker\n");
    count_picks(s, 4, 4000, hist);
    for (int i = 0; i < 4; i++)
        assert_in_range(hist[i], 850, 1150);
    gws_sched_destroy(s);

    /* weighted-random: proportional to the totals (1 : 0.5 : 0 via kv utilization) */
    EP[0].m.kv_usage = 0.0;
    EP[1].m.kv_usage = 0.5;
    EP[2].m.kv_usage = 1.0;
    s = load_simple("- type: kv-cache-utilization-scorer\n- type: weighted-random-picker\n",
                    "  - pluginRef: kv-cache-utilization-scorer\n"
                    "  - pluginRef: weighted-random-picker\n");
    count_picks(s, 3, 3000, hist);
    assert_int_equal(hist[2], 0);
    assert_in_range(hist[0], 1800, 2200);
    gws_sched_destroy(s);

    /* topk-softmax: k=2 never picks the third; low temperature almost always the best */
    EP[0].m.kv_usage = 0.0;
    EP[1].m.kv_usage = 0.1;
    EP[2].m.kv_usage = 0.2;
    EP[3].m.kv_usage = 0.3;
    s = load_simple("- type: kv-cache-utilization-scorer\n- type: topk-softmax-picker\n"
                    "  parameters:\n    k: 2\n    temperature: 0.1\n",
                    "  - pluginRef: kv-cache-utilization-scorer\n"
                    "  - pluginRef: topk-softmax-picker\n");
    count_picks(s, 4, 2000, hist);
    assert_int_equal(hist[2] + hist[3], 0);
    /* p(best) = 1 / (1 + e^-1) = 0.731 */
    assert_in_range(hist[0], 1340, 1580);
    gws_sched_destroy(s);
    s = load_simple("- type: kv-cache-utilization-scorer\n- type: topk-softmax-picker\n",
                    "  - pluginRef: kv-cache-utilization-scorer\n"
                    "  - pluginRef: topk-softmax-picker\n");
    count_picks(s, 4, 2000, hist);
    assert_int_equal(hist[3], 0);
    assert_true(hist[0] > hist[1] && hist[1] > hist[2] && hist[2] > 0);
    gws_sched_destroy(s);

    /* round-robin: id order, wraps, skips filtered endpoints */
    s = load_simple("- type: health-filter\n- type: round-robin-picker\n",
                    "  - pluginRef: health-filter\n  - pluginRef: round-robin-picker\n");
    gws_request_t r = {0};
    gws_decision_t d;
    int seq[8];
    EP[2].healthy = false;
    for (int k = 0; k < 8; k++) {
        gws_pick(s, NULL, &r, EPP, 4, NULL, NULL, &d);
        seq[k] = d.chosen;
    }
    int want[8] = {0, 1, 3, 0, 1, 3, 0, 1};
    assert_memory_equal(seq, want, sizeof want);
    EP[2].healthy = true;
    gws_pick(s, NULL, &r, EPP, 4, NULL, NULL, &d);
    assert_int_equal(d.chosen, 2);
    gws_sched_destroy(s);
}

static void test_profiles(void **state)
{
    reset_eps();
    EP[0].role = GW_ROLE_PREFILL;
    EP[1].role = GW_ROLE_DECODE;
    gws_sched_t *s = load("apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
                          "plugins:\n- type: prefill-filter\n- type: decode-filter\n"
                          "schedulingProfiles:\n"
                          "- name: prefill\n  plugins:\n  - pluginRef: prefill-filter\n"
                          "- name: decode\n  plugins:\n  - pluginRef: decode-filter\n");
    gws_request_t r = {0};
    gws_decision_t d;
    assert_int_equal(gws_pick(s, NULL, &r, EPP, 2, NULL, NULL, &d), ST_OK);
    assert_string_equal(d.profile, "prefill");
    assert_ptr_equal(d.endpoint, &EP[0]);
    assert_int_equal(gws_pick(s, "decode", &r, EPP, 2, NULL, NULL, &d), ST_OK);
    assert_string_equal(d.profile, "decode");
    assert_ptr_equal(d.endpoint, &EP[1]);
    assert_int_equal(gws_pick(s, "nope", &r, EPP, 2, NULL, NULL, &d), ST_NOTFOUND);
    assert_null(d.endpoint);
    assert_int_equal(gws_pick(s, NULL, &r, EPP, 0, NULL, NULL, &d), ST_NOTFOUND);
    assert_int_equal(gws_pick(s, NULL, &r, EPP, GW_MAX_ENDPOINTS + 1, NULL, NULL, &d), ST_INVAL);
    gws_sched_destroy(s);
}

static void expect_error(const char *body, int want_rc, const char *want)
{
    char y[4096];
    snprintf(y, sizeof y, "%s", body);
    gws_sched_t *s = (gws_sched_t *)1;
    char err[GWS_ERR_MAX];
    int rc = gws_config_load_text(y, strlen(y), &s, err, sizeof err);
    if (rc != want_rc || strstr(err, want) == NULL)
        fprintf(stderr, "config:\n%s\nrc=%d err=%s (want %s)\n", y, rc, err, want);
    assert_int_equal(rc, want_rc);
    assert_null(s);
    assert_non_null(strstr(err, want));
}

#define HDR "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
#define PROF "schedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: q\n"

static void test_yaml_errors(void **state)
{
    expect_error(HDR "plugins:\n- type: no-such-scorer\n  name: q\n" PROF, ST_INVAL,
                 "line 4: unknown plugin type 'no-such-scorer'");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: q\n  parameters:\n    foo: 1\n" PROF,
                 ST_INVAL, "line 7: queue-scorer: unknown parameter 'foo' (known: none)");
    expect_error(HDR "plugins:\n- type: saturation-filter\n  name: q\n  parameters:\n"
                     "    queueDepth: 3\n" PROF,
                 ST_INVAL,
                 "plugin 'q': line 7: saturation-filter: unknown parameter 'queueDepth' "
                 "(known: queueDepthThreshold, kvCacheUtilThreshold)");
    expect_error(HDR "plugins:\n- type: saturation-filter\n  name: q\n  parameters:\n"
                     "    queueDepthThreshold: 0.5\n" PROF,
                 ST_INVAL,
                 "line 7: saturation-filter: parameter 'queueDepthThreshold': expected "
                 "an integer, got '0.5'");
    expect_error(HDR "plugins:\n- type: prefix-cache-scorer\n  name: q\n  parameters:\n"
                     "    hotspotGuard: maybe\n" PROF,
                 ST_INVAL, "parameter 'hotspotGuard': expected true or false");
    expect_error(HDR "plugins:\n- type: prefix-cache-scorer\n  name: q\n  parameters:\n"
                     "    hotspotFactor: \"2\"\n" PROF,
                 ST_INVAL, "parameter 'hotspotFactor': expected a number");
    expect_error(HDR "plugins:\n- type: topk-softmax-picker\n  name: q\n  parameters:\n"
                     "    k: 0\n" PROF,
                 ST_INVAL, "plugin 'q': topk-softmax-picker: need 1 <= k");
    expect_error(HDR "plugins:\n- type: queue-scorer\n"
                     "schedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: queue\n",
                 ST_INVAL, "line 8: profile 'p': pluginRef 'queue' names no plugin");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: q\n"
                     "schedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: q\n"
                     "    weight: -1\n",
                 ST_INVAL, "line 10: profile 'p': weight must be a number >= 0");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: q\n  paramters: {}\n" PROF, ST_INVAL,
                 "line 6: plugins[]: unknown key 'paramters'");
    expect_error(HDR
                 "plugins:\n- type: queue-scorer\n  name: q\n- type: kv-cache-utilization-scorer\n"
                 "  name: q\n" PROF,
                 ST_INVAL, "duplicate plugin name 'q'");
    expect_error(HDR "plugins:\n- type: random-picker\n  name: q\n- type: max-score-picker\n"
                     "schedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: q\n"
                     "  - pluginRef: max-score-picker\n",
                 ST_INVAL, "second picker 'max-score-picker'");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: q\n", ST_INVAL,
                 "'schedulingProfiles' must be a non-empty list");
    expect_error("apiVersion: llm-d.ai/v1alpha1\nkind: Deployment\n", ST_INVAL,
                 "line 2: kind must be EndpointPickerConfig");
    expect_error("kind: EndpointPickerConfig\nplugins: []\n", ST_INVAL, "missing 'apiVersion'");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: [q\n", ST_INVAL, "YAML:");
    expect_error(HDR "plugin:\n- type: queue-scorer\n", ST_INVAL, "line 3: unknown key 'plugin'");
    expect_error("", ST_INVAL, "empty config");
    expect_error(HDR "plugins:\n- type: queue-scorer\n  name: q\n  parameters:\n    x:\n"
                     "      y: 1\n" PROF,
                 ST_INVAL, "parameter 'x' must be a scalar");
    gws_sched_t *s = NULL;
    char err[GWS_ERR_MAX];
    assert_int_equal(gws_config_builtin("fastest", &s, err, sizeof err), ST_NOTFOUND);
    assert_non_null(strstr(err, "unknown built-in scheduler 'fastest'"));
    assert_true(gws_config_load_file("/nonexistent/x.yaml", &s, err, sizeof err) < 0);
    assert_null(s);
    /* known-but-unsupported llm-d sections are ignored */
    s = load(HDR "featureGates: []\nplugins:\n- type: queue-scorer\n  name: q\n" PROF);
    gws_sched_destroy(s);
}

static void test_builtins_match_deploy_files(void **state)
{
    const char *root = getenv("SY_SOURCE_DIR");
    if (root == NULL)
        root = ".";
    const char *const *names = gws_builtin_names();
    int n = 0;
    for (; names[n] != NULL; n++) {
        char path[512], err[GWS_ERR_MAX];
        snprintf(path, sizeof path, "%s/deploy/scheduler/%s.yaml", root, names[n]);
        gws_sched_t *from_file = NULL, *builtin = NULL;
        int rc = gws_config_load_file(path, &from_file, err, sizeof err);
        if (rc != ST_OK)
            fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, ST_OK);
        assert_int_equal(gws_config_builtin(names[n], &builtin, err, sizeof err), ST_OK);
        sy_buf_t a = SY_BUF_INIT, b = SY_BUF_INIT;
        assert_int_equal(gws_sched_describe(from_file, &a), ST_OK);
        assert_int_equal(gws_sched_describe(builtin, &b), ST_OK);
        assert_string_equal(a.data, b.data);
        /* literally the same text */
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char text[16384];
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        assert_string_equal(text, gws_builtin_yaml(names[n]));
        /* each starts with the model, health and saturation filters */
        assert_non_null(strstr(a.data, "  filter model-filter type=model-filter/1\n"
                                       "  filter health-filter type=health-filter/1\n"
                                       "  filter saturation-filter type=saturation-filter/1"));
        sy_buf_deinit(&a);
        sy_buf_deinit(&b);
        gws_sched_destroy(from_file);
        gws_sched_destroy(builtin);
    }
    assert_int_equal(n, 7); /* ..., default, pd */
    gws_sched_t *s = NULL;
    assert_int_equal(gws_config_builtin("default", &s, NULL, 0), ST_OK);
    assert_int_equal(gws_sched_needs(s), GWS_NEEDS_PRECISE | GWS_NEEDS_APPROX);
    gws_approx_params_t ap;
    gws_sched_approx_params(s, &ap);
    assert_int_equal(ap.chunk_chars, 64);
    assert_int_equal(ap.max_chunks, 256);
    assert_int_equal(ap.lru_capacity, 31250);
    gws_sched_destroy(s);
    assert_int_equal(gws_config_builtin("prefix-approx", &s, NULL, 0), ST_OK);
    sy_buf_t b = SY_BUF_INIT;
    gws_sched_describe(s, &b);
    assert_non_null(strstr(b.data, "scorer prefix-cache-scorer type=prefix-cache-scorer/1 "
                                   "weight=3 hotspotGuard=true hotspotFactor=2 hotspotSlack=4 "
                                   "hotspotPenalty=0.5 blockSize=16"));
    assert_non_null(strstr(b.data, "scorer queue-scorer type=queue-scorer/1 weight=2\n"));
    sy_buf_deinit(&b);
    gws_sched_destroy(s);
}

static void test_default_pipeline_json_and_no_alloc(void **state)
{
    reset_eps();
    gws_sched_t *s = NULL;
    assert_int_equal(gws_config_builtin("default", &s, NULL, 0), ST_OK);
    gws_sched_seed(s, 7);
    uint64_t blocks[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pidx_t *p = pidx_create(1000, NEP);
    aidx_t *a = aidx_create(NEP, 1000);
    pidx_add(p, 3, blocks, 8);
    aidx_record(a, 3, blocks, 8);
    EP[3].m.kv_usage = 0.5;
    EP[5].models[0] = MODEL_B; /* filtered by model */
    gws_request_t r = {.model = "model-a",
                       .block_hashes = blocks,
                       .n_block_hashes = 8,
                       .chunk_hashes = blocks,
                       .n_chunk_hashes = 8};
    gws_decision_t d;
    uint64_t allocs = sy_alloc_total_count();
    for (int k = 0; k < 100; k++)
        assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, p, a, &d), ST_OK);
    assert_int_equal(sy_alloc_total_count(), allocs);
    assert_ptr_equal(d.endpoint, &EP[3]);
    assert_int_equal(d.n_candidates, NEP - 1);
    assert_int_equal(d.n_scorers, 6);
    /* 3*1 + 3*1 + 1*1 + 1*0.5 + 4*1 + 4*1 */
    assert_float_equal(d.total[3], 15.5, 1e-9);
    assert_float_equal(d.total[0], 10.0, 1e-9); /* 0 + 0 + 1 + 1 + 4 + 4 */
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gws_decision_json(&d, 2, &b), ST_OK);
    const char *want =
        "{\"profile\":\"default\",\"endpoint\":\"10.0.0.3:8000\",\"total\":15.5,\"scores\":{"
        "\"prefix-cache-scorer\":1,\"precise-prefix-cache-scorer\":1,\"queue-scorer\":1,"
        "\"kv-cache-utilization-scorer\":0.5,\"active-request-scorer\":1,"
        "\"prefill-load-scorer\":1},\"candidates\":7,"
        "\"endpoints\":8,\"cachedBlocks\":[8,8],\"cachedChunks\":[8,8],\"hotspot\":false,"
        "\"others\":[{\"endpoint\":\"10.0.0.0:8000\",\"total\":10},{\"endpoint\":\"10.0.0.1:8000\","
        "\"total\":10}]}";
    assert_string_equal(b.data, want);
    sy_buf_reset(&b);
    r.model = "model-c";
    assert_int_equal(gws_pick(s, NULL, &r, EPP, NEP, p, a, &d), ST_NOTFOUND);
    assert_int_equal(gws_decision_json(&d, 3, &b), ST_OK);
    assert_non_null(strstr(b.data, "\"endpoint\":null,\"candidates\":0"));
    assert_non_null(strstr(b.data, "\"cachedBlocks\":[0,8]"));
    sy_buf_deinit(&b);
    gws_sched_destroy(s);
    pidx_destroy(p);
    aidx_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_and_role_filters),
        cmocka_unit_test(test_health_filter),
        cmocka_unit_test(test_saturation_filter),
        cmocka_unit_test(test_queue_and_kv_scorers),
        cmocka_unit_test(test_load_scorers),
        cmocka_unit_test(test_prefix_scorers),
        cmocka_unit_test(test_hotspot_guard),
        cmocka_unit_test(test_weights_and_default_picker),
        cmocka_unit_test(test_pickers),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_builtins_match_deploy_files),
        cmocka_unit_test(test_default_pipeline_json_and_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
