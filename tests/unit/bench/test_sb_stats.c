/*
 * test_sb_stats.c - unit tests of the bench's statistics (sb_stats.h): percentiles by linear
 * interpolation (numpy's default) on known sets, summaries, and the stage accumulator: goodput
 * under TTFT / ITL (TPOT) SLOs with errors and rejections counted against it, error reasons,
 * cached-token share inputs, per-endpoint counts and output-length mismatches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/sb_stats.h"
#include "common/status.h"

static void test_quantiles(void **state)
{
    (void)state;
    double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    /* numpy.percentile(range(1, 11), [50, 90, 99]) = 5.5, 9.1, 9.91 */
    assert_float_equal(sb_quantile_sorted(v, 10, 0.50), 5.5, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 10, 0.90), 9.1, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 10, 0.99), 9.91, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 10, 0.0), 1, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 10, 1.0), 10, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 1, 0.5), 1, 1e-9);
    assert_float_equal(sb_quantile_sorted(v, 0, 0.5), 0, 1e-9);

    sb_dist_t d;
    sb_dist_init(&d);
    for (int i = 1000; i >= 1; i--) /* unsorted input */
        assert_int_equal(sb_dist_add(&d, (double)i), ST_OK);
    sb_summary_t s;
    sb_dist_summarize(&d, &s);
    assert_int_equal(s.n, 1000);
    assert_float_equal(s.mean, 500.5, 1e-9);
    assert_float_equal(s.min, 1, 1e-9);
    assert_float_equal(s.max, 1000, 1e-9);
    assert_float_equal(s.p50, 500.5, 1e-9);
    assert_float_equal(s.p90, 900.1, 1e-9);
    assert_float_equal(s.p99, 990.01, 1e-9);
    sb_dist_deinit(&d);
    sb_dist_summarize(&d, &s);
    assert_int_equal(s.n, 0);
}

static sb_rec_t ok_rec(double ttft, double e2e, int64_t out)
{
    sb_rec_t r = {.outcome = SB_OK,
                  .http_status = 200,
                  .ttft_ms = ttft,
                  .e2e_ms = e2e,
                  .prompt_tokens = 100,
                  .completion_tokens = out,
                  .cached_tokens = 40,
                  .n_chunks = (size_t)out,
                  .max_tokens = 11};
    return r;
}

static void test_goodput(void **state)
{
    (void)state;
    sb_slo_t slo = {.ttft_ms = 100, .itl_ms = 20};
    sb_stage_stats_t s;
    sb_stage_init(&s, &slo);
    double itl[10];
    for (int i = 0; i < 10; i++)
        itl[i] = 10;
    /* good: ttft 50, tpot (150-50)/10 = 10 */
    sb_rec_t r = ok_rec(50, 150, 11);
    r.itl_ms = itl;
    r.n_itl = 10;
    r.endpoint = "e0";
    assert_true(sb_rec_is_good(&r, &slo));
    assert_int_equal(sb_stage_add(&s, &r), ST_OK);
    /* TTFT over the SLO */
    r = ok_rec(150, 250, 11);
    r.endpoint = "e1";
    assert_false(sb_rec_is_good(&r, &slo));
    sb_stage_add(&s, &r);
    /* TPOT over the SLO: (50 + 10*30 - 50)/10 = 30 */
    r = ok_rec(50, 350, 11);
    r.endpoint = "e0";
    assert_false(sb_rec_is_good(&r, &slo));
    sb_stage_add(&s, &r);
    /* a short answer (mismatch with max_tokens) but good */
    r = ok_rec(10, 20, 3);
    sb_stage_add(&s, &r);
    /* rejection and errors are never good */
    sb_rec_t bad = {.outcome = SB_REJECTED,
                    .http_status = 429,
                    .ttft_ms = -1,
                    .e2e_ms = 1,
                    .prompt_tokens = -1,
                    .completion_tokens = -1,
                    .cached_tokens = -1,
                    .detail = "HTTP 429"};
    assert_false(sb_rec_is_good(&bad, &slo));
    sb_stage_add(&s, &bad);
    bad.outcome = SB_ERR_CONNECT;
    bad.detail = "Connection refused";
    sb_stage_add(&s, &bad);
    sb_stage_add(&s, &bad);
    bad.outcome = SB_ERR_STALL;
    bad.detail = "no byte";
    sb_stage_add(&s, &bad);

    assert_int_equal(s.n_done, 8);
    assert_int_equal(s.n_ok, 4);
    assert_int_equal(s.n_good, 2);
    assert_int_equal(s.by_outcome[SB_REJECTED], 1);
    assert_int_equal(s.by_outcome[SB_ERR_CONNECT], 2);
    assert_int_equal(sb_stage_errors(&s), 3);
    assert_int_equal(s.prompt_tokens, 400);
    assert_int_equal(s.cached_tokens, 160);
    assert_int_equal(s.completion_tokens, 36);
    assert_int_equal(s.n_len_mismatch, 1);
    assert_int_equal(s.ttft.n, 4);
    assert_int_equal(s.itl.n, 10);
    assert_int_equal(s.tpot.n, 4);
    assert_int_equal(s.n_ep, 3); /* e0, e1, "" */
    assert_int_equal(s.n_detail, 3);
    for (size_t i = 0; i < s.n_ep; i++)
        if (strcmp(s.ep_name[i], "e0") == 0)
            assert_int_equal(s.ep_count[i], 2);

    /* no SLO: every success is good */
    sb_slo_t none = {0, 0};
    r = ok_rec(1e9, 2e9, 11);
    assert_true(sb_rec_is_good(&r, &none));
    /* one output token: no TPOT, the ITL SLO holds trivially */
    r = ok_rec(10, 10, 1);
    assert_true(sb_rec_is_good(&r, &slo));
    s.t_start_ns = 1000000000ull;
    s.t_end_ns = 3000000000ull;
    assert_float_equal(sb_stage_duration_s(&s), 2.0, 1e-9);
    sb_stage_deinit(&s);
    sb_stage_deinit(NULL);
}

static void test_outcome_names(void **state)
{
    (void)state;
    for (int i = 0; i < SB_OUTCOME__COUNT; i++)
        assert_non_null(sb_outcome_name(i));
    assert_string_equal(sb_outcome_name(SB_REJECTED), "rejected_429");
    assert_string_equal(sb_outcome_name(99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_goodput),
        cmocka_unit_test(test_outcome_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
