/*
 * test_gov_limit.c - unit tests of the per-tenant limiter (gov_limit.h) on a deterministic clock:
 * the request bucket with burst and its default, the tokens-per-minute bucket with prompt charging
 * and output overdraft, the too-large refusal, the concurrency cap and release, all-or-nothing
 * admission, the exact header values (remaining, reset durations, Retry-After rounding), the
 * duration format, the 429 bodies, limit changes that keep levels, and leases outliving the owner.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/status.h"
#include "gov/gov_limit.h"

#define MS 1000000LL
#define SEC 1000000000LL
#define T0 (1000 * SEC) /* an arbitrary monotonic start */

static glim_state_t *mk(double rps, int64_t burst, int64_t tpm, int64_t conc)
{
    glim_limits_t l = {.requests_per_second = rps,
                       .burst = burst,
                       .tokens_per_minute = tpm,
                       .max_concurrent = conc};
    glim_state_t *st = glim_state_create("t", &l, T0);
    assert_non_null(st);
    return st;
}

/* The value of header name in h, or NULL. */
static const char *hval(const glim_headers_t *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->h[i].name, name) == 0)
            return h->h[i].value;
    return NULL;
}

static void test_duration_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ns;
        const char *want;
    } cases[] = {
        {-5, "0s"},
        {0, "0s"},
        {1, "1ms"},
        {MS, "1ms"},
        {MS + 1, "2ms"},
        {120 * MS, "120ms"},
        {999 * MS, "999ms"},
        {999 * MS + 1, "1s"},
        {SEC, "1s"},
        {1500 * MS, "1.5s"},
        {8640 * MS, "8.64s"},
        {59999 * MS, "59.999s"},
        {60 * SEC, "1m0s"},
        {360 * SEC, "6m0s"},
        {179560 * MS, "2m59.56s"},
        {3600 * SEC, "1h0m0s"},
        {3723040 * MS, "1h2m3.04s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        glim_format_duration(cases[i].ns, out, sizeof out);
        assert_string_equal(out, cases[i].want);
    }
    assert_int_equal(glim_retry_after_s(0), 0);
    assert_int_equal(glim_retry_after_s(-1), 0);
    assert_int_equal(glim_retry_after_s(1), 1);
    assert_int_equal(glim_retry_after_s(SEC), 1);
    assert_int_equal(glim_retry_after_s(SEC + 1), 2);
    assert_int_equal(glim_retry_after_s(30 * SEC), 30);
}

static void test_rps_burst(void **state)
{
    (void)state;
    glim_state_t *st = mk(2, 3, 0, 0); /* 2 requests/s, bucket of 3 */
    glim_lease_t l[4] = {GLIM_LEASE_INIT, GLIM_LEASE_INIT, GLIM_LEASE_INIT, GLIM_LEASE_INIT};
    glim_result_t r;
    glim_headers_t h;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(glim_admit(st, T0, 0, 0, &l[i], &r), ST_OK);
        assert_int_equal(r.reason, GLIM_ADMITTED);
        assert_int_equal(r.limit_requests, 3);
        assert_int_equal(r.remaining_requests, 2 - i);
        assert_int_equal(glim_result_http_status(&r), 200);
    }
    glim_headers_fill(&r, &h);
    assert_int_equal(h.n, 3); /* no token limit, admitted: no retry-after */
    assert_string_equal(h.h[0].name, "x-ratelimit-limit-requests");
    assert_string_equal(h.h[0].value, "3");
    assert_string_equal(h.h[1].name, "x-ratelimit-remaining-requests");
    assert_string_equal(h.h[1].value, "0");
    assert_string_equal(h.h[2].name, "x-ratelimit-reset-requests");
    assert_string_equal(h.h[2].value, "1.5s"); /* 3 requests at 2/s */
    assert_null(hval(&h, "retry-after"));

    assert_int_equal(glim_admit(st, T0, 0, 0, &l[3], &r), ST_LIMIT);
    assert_null(glim_lease_state(&l[3]));
    assert_int_equal(r.reason, GLIM_REFUSED_REQUESTS);
    assert_int_equal(r.retry_after_ns, 500 * MS);
    assert_int_equal(glim_result_http_status(&r), 429);
    glim_headers_fill(&r, &h);
    assert_string_equal(hval(&h, "retry-after"), "1");
    assert_string_equal(hval(&h, "x-ratelimit-remaining-requests"), "0");

    /* 1 ns short of one request, then exactly one */
    assert_int_equal(glim_admit(st, T0 + 500 * MS - 1, 0, 0, &l[3], &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, 1);
    glim_headers_fill(&r, &h);
    assert_string_equal(hval(&h, "retry-after"), "1");
    /* 2 requests minus 1 ns of refill short: 1 s + 1 ns, rounded up to the millisecond */
    assert_string_equal(hval(&h, "x-ratelimit-reset-requests"), "1.001s");
    assert_int_equal(glim_admit(st, T0 + 500 * MS, 0, 0, &l[3], &r), ST_OK);
    assert_int_equal(r.remaining_requests, 0);
    assert_int_equal(r.reset_requests_ns, 1500 * MS);

    /* a long idle period refills to the burst, not beyond */
    glim_peek(st, T0 + 3600 * SEC, &r);
    assert_int_equal(r.remaining_requests, 3);
    assert_int_equal(r.reset_requests_ns, 0);
    glim_headers_fill(&r, &h);
    assert_string_equal(hval(&h, "x-ratelimit-reset-requests"), "0s");
    for (int i = 0; i < 4; i++)
        glim_release(&l[i]);
    assert_int_equal(glim_state_in_flight(st), 0);
    glim_state_unref(st);
}

static void test_rps_default_burst(void **state)
{
    (void)state;
    static const struct {
        double rps;
        int64_t burst;
    } cases[] = {{0.5, 1}, {1, 1}, {2.5, 3}, {10, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        glim_state_t *st = mk(cases[i].rps, 0, 0, 0);
        glim_result_t r;
        glim_peek(st, T0, &r);
        assert_true(r.has_requests);
        assert_int_equal(r.limit_requests, cases[i].burst);
        assert_int_equal(r.remaining_requests, cases[i].burst);
        glim_state_unref(st);
    }
    /* 0.5/s: one request, the next after 2 s */
    glim_state_t *st = mk(0.5, 0, 0, 0);
    glim_lease_t a = GLIM_LEASE_INIT, b = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 0, 0, &a, &r), ST_OK);
    assert_int_equal(glim_admit(st, T0 + SEC, 0, 0, &b, &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, SEC);
    glim_headers_t h;
    glim_headers_fill(&r, &h);
    assert_string_equal(hval(&h, "retry-after"), "1");
    assert_int_equal(glim_admit(st, T0 + 2 * SEC, 0, 0, &b, &r), ST_OK);
    glim_release(&a);
    glim_release(&b);
    glim_state_unref(st);
}

static void test_tokens_prompt_and_output(void **state)
{
    (void)state;
    glim_state_t *st = mk(0, 0, 600, 0); /* 600 tokens/min = 10/s */
    glim_lease_t a = GLIM_LEASE_INIT, b = GLIM_LEASE_INIT;
    glim_result_t r;
    glim_headers_t h;
    assert_int_equal(glim_admit(st, T0, 500, 0, &a, &r), ST_OK);
    assert_int_equal(r.remaining_tokens, 100);
    glim_headers_fill(&r, &h);
    assert_int_equal(h.n, 3);
    assert_string_equal(hval(&h, "x-ratelimit-limit-tokens"), "600");
    assert_string_equal(hval(&h, "x-ratelimit-remaining-tokens"), "100");
    assert_string_equal(hval(&h, "x-ratelimit-reset-tokens"), "50s");
    assert_null(hval(&h, "x-ratelimit-limit-requests"));

    /* 200 needed, 100 there: 10 s at 10 tokens/s; nothing charged */
    assert_int_equal(glim_admit(st, T0, 200, 0, &b, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_TOKENS);
    assert_int_equal(r.retry_after_ns, 10 * SEC);
    assert_int_equal(r.remaining_tokens, 100);
    assert_int_equal(r.requested_tokens, 200);
    glim_headers_fill(&r, &h);
    assert_string_equal(hval(&h, "retry-after"), "10");

    /* output streams: 400 tokens drive the level to -300 */
    glim_charge_output(&a, T0, 150);
    glim_charge_output(&a, T0, 250);
    glim_peek(st, T0, &r);
    assert_int_equal(r.tokens_level, -300);
    assert_int_equal(r.remaining_tokens, 0);
    assert_int_equal(r.reset_tokens_ns, 90 * SEC);
    /* even a request without prompt tokens waits until the debt is paid */
    assert_int_equal(glim_admit(st, T0, 0, 0, &b, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_TOKENS);
    assert_int_equal(r.retry_after_ns, 30 * SEC);
    assert_int_equal(glim_admit(st, T0 + 30 * SEC - 1, 0, 0, &b, &r), ST_LIMIT);
    assert_int_equal(glim_admit(st, T0 + 30 * SEC, 0, 0, &b, &r), ST_OK);
    glim_release(&b);
    /* a 100-token prompt 10 s later */
    assert_int_equal(glim_admit(st, T0 + 40 * SEC, 100, 0, &b, &r), ST_OK);
    assert_int_equal(r.remaining_tokens, 0);
    glim_release(&b);

    /* the overdraft is capped at one minute's budget; huge counts do not overflow */
    glim_charge_output(&a, T0 + 40 * SEC, INT64_MAX);
    glim_peek(st, T0 + 40 * SEC, &r);
    assert_int_equal(r.tokens_level, -600);
    assert_int_equal(r.reset_tokens_ns, 120 * SEC);
    glim_charge_output(&a, T0 + 40 * SEC, 0);
    glim_charge_output(&a, T0 + 40 * SEC, -5);
    glim_peek(st, T0 + 40 * SEC, &r);
    assert_int_equal(r.tokens_level, -600);

    glim_stats_t s;
    glim_state_stats(st, &s);
    assert_int_equal(s.admitted, 3);
    assert_int_equal(s.refused_tokens, 3);
    assert_int_equal(s.prompt_tokens, 600);
    assert_true(s.output_tokens > 400);

    glim_release(&a);
    glim_charge_output(&a, T0, 10); /* released lease: no-op */
    glim_release(&a);               /* idempotent */
    assert_int_equal(glim_state_in_flight(st), 0);
    glim_state_unref(st);
}

static void test_too_large(void **state)
{
    (void)state;
    glim_state_t *st = mk(0, 0, 1000, 0);
    glim_lease_t a = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 800, 201, &a, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_TOO_LARGE);
    assert_int_equal(r.requested_tokens, 1001);
    assert_int_equal(r.retry_after_ns, 0);
    glim_headers_t h;
    glim_headers_fill(&r, &h);
    assert_null(hval(&h, "retry-after")); /* retrying cannot help */
    assert_string_equal(hval(&h, "x-ratelimit-remaining-tokens"), "1000");
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(glim_error_body(&r, "team-a", "m1", &b), ST_OK);
    assert_string_equal(b.data,
                        "{\"error\":{\"message\":\"Request too large for m1 in tenant team-a on "
                        "tokens per min (TPM): Limit 1000, Requested 1001. The input or output "
                        "tokens must be reduced in order to run successfully.\",\"type\":"
                        "\"tokens\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
    sy_buf_deinit(&b);
    /* exactly the budget fits */
    assert_int_equal(glim_admit(st, T0, 800, 200, &a, &r), ST_OK);
    assert_int_equal(r.remaining_tokens, 200); /* max_tokens is not reserved */
    glim_release(&a);
    glim_state_unref(st);
}

static void test_concurrency(void **state)
{
    (void)state;
    glim_state_t *st = mk(0, 0, 0, 2);
    glim_lease_t l[3] = {GLIM_LEASE_INIT, GLIM_LEASE_INIT, GLIM_LEASE_INIT};
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 10, 0, &l[0], &r), ST_OK);
    assert_int_equal(glim_admit(st, T0, 10, 0, &l[1], &r), ST_OK);
    assert_int_equal(r.in_flight, 2);
    assert_int_equal(glim_admit(st, T0, 10, 0, &l[2], &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_CONCURRENCY);
    assert_int_equal(r.retry_after_ns, GLIM_CONCURRENCY_RETRY_NS);
    glim_headers_t h;
    glim_headers_fill(&r, &h);
    assert_int_equal(h.n, 1);
    assert_string_equal(hval(&h, "retry-after"), "1");
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(glim_error_body(&r, "t", NULL, &b), ST_OK);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"Rate limit reached in tenant t on "
                                "concurrent requests: Limit 2, Used 2, Requested 1. Please try "
                                "again in 1s.\",\"type\":\"requests\",\"param\":null,\"code\":"
                                "\"rate_limit_exceeded\"}}");
    sy_buf_deinit(&b);
    glim_release(&l[0]);
    assert_int_equal(glim_state_in_flight(st), 1);
    assert_int_equal(glim_admit(st, T0, 10, 0, &l[2], &r), ST_OK);
    glim_release(&l[1]);
    glim_release(&l[2]);
    glim_release(&l[2]);
    assert_int_equal(glim_state_in_flight(st), 0);
    glim_stats_t s;
    glim_state_stats(st, &s);
    assert_int_equal(s.admitted, 3);
    assert_int_equal(s.refused_concurrency, 1);
    glim_state_unref(st);
}

/* A refusal by one limit charges none of the others; Retry-After is the longest wait. */
static void test_all_or_nothing(void **state)
{
    (void)state;
    glim_state_t *st = mk(1, 1, 600, 0);
    glim_lease_t a = GLIM_LEASE_INIT, b = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 100, 0, &a, &r), ST_OK);
    assert_int_equal(r.remaining_tokens, 500);
    /* requests empty (1 s to refill), tokens short too (needs 600, has 500: 10 s) */
    assert_int_equal(glim_admit(st, T0, 600, 0, &b, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_REQUESTS);
    assert_int_equal(r.retry_after_ns, 10 * SEC);
    assert_int_equal(r.remaining_tokens, 500);
    glim_headers_t h;
    glim_headers_fill(&r, &h);
    assert_int_equal(h.n, 7);
    assert_string_equal(h.h[6].name, "retry-after");
    assert_string_equal(h.h[6].value, "10");
    sy_buf_t lines = SY_BUF_INIT;
    assert_int_equal(glim_headers_append(&h, &lines), ST_OK);
    assert_string_equal(lines.data, "x-ratelimit-limit-requests: 1\r\n"
                                    "x-ratelimit-remaining-requests: 0\r\n"
                                    "x-ratelimit-reset-requests: 1s\r\n"
                                    "x-ratelimit-limit-tokens: 600\r\n"
                                    "x-ratelimit-remaining-tokens: 500\r\n"
                                    "x-ratelimit-reset-tokens: 10s\r\n"
                                    "retry-after: 10\r\n");
    sy_buf_deinit(&lines);
    /* a small prompt a second later passes both */
    assert_int_equal(glim_admit(st, T0 + SEC, 10, 0, &b, &r), ST_OK);
    assert_int_equal(r.remaining_tokens, 500);
    glim_release(&a);
    glim_release(&b);
    glim_state_unref(st);
}

static void test_error_bodies(void **state)
{
    (void)state;
    glim_state_t *st = mk(5, 10, 1000, 0);
    glim_lease_t l = GLIM_LEASE_INIT;
    glim_result_t r;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(glim_admit(st, T0, 1, 0, &l, &r), ST_OK);
        glim_release(&l);
    }
    assert_int_equal(glim_admit(st, T0, 1, 0, &l, &r), ST_LIMIT);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(glim_error_body(&r, "a\"b", "llama", &b), ST_OK);
    assert_string_equal(b.data,
                        "{\"error\":{\"message\":\"Rate limit reached for llama in tenant a\\\"b "
                        "on requests per second (RPS): Limit 5 (burst 10), Used 10, Requested 1. "
                        "Please try again in 200ms.\",\"type\":\"requests\",\"param\":null,"
                        "\"code\":\"rate_limit_exceeded\"}}");
    json_error_t je;
    json_t *j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "rate_limit_exceeded");
    json_decref(j);
    sy_buf_reset(&b);

    glim_state_unref(st);

    st = mk(0, 0, 1000, 0);
    assert_int_equal(glim_admit(st, T0, 974, 0, &l, &r), ST_OK);
    glim_release(&l);
    assert_int_equal(glim_admit(st, T0, 995, 0, &l, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_TOKENS);
    assert_int_equal(glim_error_body(&r, NULL, NULL, &b), ST_OK);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"Rate limit reached on tokens per min "
                                "(TPM): Limit 1000, Used 974, Requested 995. Please try again in "
                                "58.14s.\",\"type\":\"tokens\",\"param\":null,\"code\":"
                                "\"rate_limit_exceeded\"}}");
    sy_buf_reset(&b);
    glim_peek(st, T0, &r);
    assert_int_equal(glim_error_body(&r, NULL, NULL, &b), ST_INVAL);
    sy_buf_deinit(&b);
    glim_state_unref(st);
}

/* New limits keep levels (clamped) and the in-flight count. */
static void test_set_limits(void **state)
{
    (void)state;
    glim_state_t *st = mk(1, 10, 6000, 3);
    glim_lease_t l[3] = {GLIM_LEASE_INIT, GLIM_LEASE_INIT, GLIM_LEASE_INIT};
    glim_result_t r;
    for (int i = 0; i < 3; i++)
        assert_int_equal(glim_admit(st, T0, 1000, 0, &l[i], &r), ST_OK);
    assert_int_equal(r.remaining_requests, 7);
    assert_int_equal(r.remaining_tokens, 3000);
    /* 2 s later: lower limits; refilled under the old ones first */
    glim_limits_t nl = {
        .requests_per_second = 1, .burst = 5, .tokens_per_minute = 2000, .max_concurrent = 2};
    assert_int_equal(glim_state_set_limits(st, &nl, T0 + 2 * SEC), ST_OK);
    glim_peek(st, T0 + 2 * SEC, &r);
    assert_int_equal(r.remaining_requests, 5); /* 9 clamped to the new burst */
    assert_int_equal(r.remaining_tokens, 2000);
    assert_int_equal(r.in_flight, 3);
    glim_lease_t x = GLIM_LEASE_INIT;
    assert_int_equal(glim_admit(st, T0 + 2 * SEC, 1, 0, &x, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_CONCURRENCY);
    glim_release(&l[0]);
    glim_release(&l[1]);
    assert_int_equal(glim_admit(st, T0 + 2 * SEC, 1, 0, &x, &r), ST_OK);
    /* removing the token limit, then adding it back: starts full */
    glim_limits_t off = {.requests_per_second = 1, .burst = 5};
    assert_int_equal(glim_state_set_limits(st, &off, T0 + 2 * SEC), ST_OK);
    glim_peek(st, T0 + 2 * SEC, &r);
    assert_false(r.has_tokens);
    assert_int_equal(glim_state_set_limits(st, &nl, T0 + 2 * SEC), ST_OK);
    glim_peek(st, T0 + 2 * SEC, &r);
    assert_int_equal(r.remaining_tokens, 2000);
    /* out-of-bounds limits are refused, state unchanged */
    glim_limits_t bad = {.tokens_per_minute = GLIM_TPM_MAX + 1};
    assert_int_equal(glim_state_set_limits(st, &bad, T0), ST_INVAL);
    glim_limits_t bad2 = {.requests_per_second = 0.0001};
    assert_int_equal(glim_state_set_limits(st, &bad2, T0), ST_INVAL);
    assert_null(glim_state_create("x", &bad, T0));
    glim_peek(st, T0 + 2 * SEC, &r);
    assert_int_equal(r.limit_tokens, 2000);
    glim_release(&l[2]);
    glim_release(&x);
    glim_state_unref(st);
}

/* The lease keeps the state alive after its owner dropped it (run under ASan). */
static void test_lease_outlives_owner(void **state)
{
    (void)state;
    glim_state_t *st = mk(0, 0, GLIM_TPM_MAX, 0);
    assert_string_equal(glim_state_name(st), "t");
    glim_lease_t l = GLIM_LEASE_INIT;
    assert_int_equal(glim_admit(st, T0, 5, 0, &l, NULL), ST_OK);
    glim_state_unref(st); /* the owner (a tenant table) goes away */
    glim_charge_output(&l, T0 + SEC, 7);
    assert_int_equal(glim_state_in_flight(glim_lease_state(&l)), 1);
    glim_release(&l); /* frees the state */
    assert_null(glim_lease_state(&l));
}

static void test_two_states_independent(void **state)
{
    (void)state;
    glim_state_t *a = mk(1, 1, 0, 0), *b = mk(1, 1, 0, 0);
    glim_lease_t la = GLIM_LEASE_INIT, lb = GLIM_LEASE_INIT, lx = GLIM_LEASE_INIT;
    assert_int_equal(glim_admit(a, T0, 0, 0, &la, NULL), ST_OK);
    assert_int_equal(glim_admit(a, T0, 0, 0, &lx, NULL), ST_LIMIT);
    assert_int_equal(glim_admit(b, T0, 0, 0, &lb, NULL), ST_OK);
    glim_release(&la);
    glim_release(&lb);
    glim_state_unref(a);
    glim_state_unref(b);
}

/* Time going backwards (a caller bug or a clock change) neither refills nor breaks anything. */
static void test_clock_backwards(void **state)
{
    (void)state;
    glim_state_t *st = mk(1, 1, 60, 0);
    glim_lease_t l = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 1, 0, &l, &r), ST_OK);
    glim_release(&l);
    assert_int_equal(glim_admit(st, T0 - 100 * SEC, 1, 0, &l, &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, SEC);
    assert_int_equal(glim_admit(st, T0 + SEC, 1, 0, &l, &r), ST_OK);
    glim_release(&l);
    glim_state_unref(st);
}

/* Rates that do not divide the bucket evenly: waits round up, refills never pass the capacity. */
static void test_uneven_rate(void **state)
{
    (void)state;
    glim_state_t *st = mk(0.003, 1, 0, 0); /* 3 units/ns; one request = 10^12 units */
    glim_lease_t l = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(glim_admit(st, T0, 0, 0, &l, &r), ST_OK);
    glim_release(&l);
    const int64_t need = 333333333334LL; /* ceil(10^12 / 3) */
    assert_int_equal(glim_admit(st, T0, 0, 0, &l, &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, need);
    assert_int_equal(r.reset_requests_ns, need);
    assert_int_equal(glim_admit(st, T0 + need - 1, 0, 0, &l, &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, 1);
    assert_int_equal(glim_admit(st, T0 + need, 0, 0, &l, &r), ST_OK);
    glim_release(&l);
    /* the refill at exactly `need` stopped at the capacity: the next request waits a full
     * period again, not 2 units less */
    assert_int_equal(glim_admit(st, T0 + need, 0, 0, &l, &r), ST_LIMIT);
    assert_int_equal(r.retry_after_ns, need);
    glim_state_unref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_rps_burst),
        cmocka_unit_test(test_rps_default_burst),
        cmocka_unit_test(test_tokens_prompt_and_output),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_lease_outlives_owner),
        cmocka_unit_test(test_two_states_independent),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_uneven_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
