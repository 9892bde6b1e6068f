/*
 * test_metrics.c - exposition text (byte-exact against Python prometheus_client 0.16 output,
 * without its _created series), label escaping, histogram cumulation, value formatting, family
 * rules, collect callbacks, name[] restricted renders (byte-exact against prometheus_client's
 * restricted_registry) and a two-thread update smoke test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/alloc.h"
#include "common/metrics.h"
#include "common/status.h"

#define assert_double_equal(a, b, eps) check_double((a), (b), (eps), __LINE__)

static void check_double(double a, double b, double eps, int line)
{
    if (!(fabs(a - b) <= eps))
        fail_msg("line %d: %.17g != %.17g", line, a, b);
}

static void test_exposition_exact(void **state)
{
    mx_registry_t *r = mx_registry_create();
    assert_non_null(r);
    const char *cl[] = {"model_name", "finished_reason"};
    mx_family_t *c = mx_family_create(r, MX_COUNTER, "vllm:request_success",
                                      "Count of successfully processed requests.", cl, 2, NULL, 0);
    assert_non_null(c);
    const char *stop[] = {"m1", "stop"}, *length[] = {"m1", "length"};
    mx_counter_add(mx_series_get(c, stop, 2), 3);
    mx_counter_add(mx_series_get(c, length, 2), 1.5);

    const char *gl[] = {"model_name", "engine"};
    mx_family_t *g =
        mx_family_create(r, MX_GAUGE, "vllm:num_requests_running",
                         "Number of requests in model execution batches.", gl, 2, NULL, 0);
    const char *gv[] = {"m1", "0"};
    mx_gauge_set(mx_series_get(g, gv, 2), 2);

    const char *hl[] = {"model_name"};
    const double b[] = {0.001, 0.005, 0.01, 0.1, 1.0, 2.5};
    mx_family_t *h = mx_family_create(r, MX_HISTOGRAM, "vllm:time_to_first_token_seconds",
                                      "Histogram of time to first token in seconds.", hl, 1, b, 6);
    const char *hv[] = {"m1"};
    mx_series_t *hs = mx_series_get(h, hv, 1);
    mx_hist_observe(hs, 0.003);
    mx_hist_observe(hs, 0.05);
    mx_hist_observe(hs, 0.05);
    mx_hist_observe(hs, 3.0);

    const char *el[] = {"v"};
    mx_family_t *e =
        mx_family_create(r, MX_GAUGE, "esc", "line1\nline2 back\\slash \"q\"", el, 1, NULL, 0);
    const char *ev[] = {"a\"b\\c\nd"};
    mx_gauge_set(mx_series_get(e, ev, 1), -1);

    /* "_total" given to a counter is stripped, like prometheus_client */
    assert_non_null(mx_family_create(r, MX_COUNTER, "plain_total", "", NULL, 0, NULL, 0));

    const char *fl[] = {"k"};
    mx_family_t *f = mx_family_create(r, MX_GAUGE, "fmt", "formatting", fl, 1, NULL, 0);
    struct {
        const char *k;
        double v;
    } vals[] = {{"a", 1e6},
                {"b", 0.123},
                {"c", 1e-07},
                {"d", 123456789012345678.0},
                {"e", 1e15},
                {"f", -1e6},
                {"g", INFINITY},
                {"h", NAN},
                {"i", 1234567.5},
                {"j", 123456.0},
                {"k", 1e16},
                {"l", 0.0001},
                {"m", -0.0},
                {"n", -INFINITY},
                {"o", 5e-324},
                {"p", 1.7976931348623157e308},
                {"q", 0.1 + 0.2},
                {"r", 100.0},
                /* integral values below 1e15 take fmt_value's direct path; from 1e15 the search */
                {"s", 1234567.0},
                {"t", 999999.0},
                {"u", 123456789012345.0},
                {"v", 999999999999999.0},
                {"w", -42.0},
                {"x", 7e14},
                {"y", -123456789.0},
                {"z", 4503599627370497.0}};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        const char *k[] = {vals[i].k};
        mx_gauge_set(mx_series_get(f, k, 1), vals[i].v);
    }
    /* labels sorting before and after "le", one value looking like a label */
    const char *sl[] = {"z", "a"};
    const double sb[] = {0.5};
    mx_family_t *hsf =
        mx_family_create(r, MX_HISTOGRAM, "hsplit", "labels on both sides of le", sl, 2, sb, 1);
    const char *sv[] = {"y", "x\"le=\""};
    mx_series_t *hss = mx_series_get(hsf, sv, 2);
    mx_hist_observe(hss, 0.25);
    mx_hist_observe(hss, 7.0);

    const char *expect =
        "# HELP vllm:request_success_total Count of successfully processed requests.\n"
        "# TYPE vllm:request_success_total counter\n"
        "vllm:request_success_total{finished_reason=\"stop\",model_name=\"m1\"} 3.0\n"
        "vllm:request_success_total{finished_reason=\"length\",model_name=\"m1\"} 1.5\n"
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        "vllm:num_requests_running{engine=\"0\",model_name=\"m1\"} 2.0\n"
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.\n"
        "# TYPE vllm:time_to_first_token_seconds histogram\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"0.001\",model_name=\"m1\"} 0.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"0.005\",model_name=\"m1\"} 1.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"0.01\",model_name=\"m1\"} 1.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"m1\"} 3.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"1.0\",model_name=\"m1\"} 3.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"2.5\",model_name=\"m1\"} 3.0\n"
        "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m1\"} 4.0\n"
        "vllm:time_to_first_token_seconds_count{model_name=\"m1\"} 4.0\n"
        "vllm:time_to_first_token_seconds_sum{model_name=\"m1\"} 3.103\n"
        "# HELP esc line1\\nline2 back\\\\slash \"q\"\n"
        "# TYPE esc gauge\n"
        "esc{v=\"a\\\"b\\\\c\\nd\"} -1.0\n"
        "# HELP plain_total \n"
        "# TYPE plain_total counter\n"
        "plain_total 0.0\n"
        "# HELP fmt formatting\n"
        "# TYPE fmt gauge\n"
        "fmt{k=\"a\"} 1e+06\n"
        "fmt{k=\"b\"} 0.123\n"
        "fmt{k=\"c\"} 1e-07\n"
        "fmt{k=\"d\"} 1.2345678901234568e+17\n"
        "fmt{k=\"e\"} 1e+015\n"
        "fmt{k=\"f\"} -1000000.0\n"
        "fmt{k=\"g\"} +Inf\n"
        "fmt{k=\"h\"} NaN\n"
        "fmt{k=\"i\"} 1.2345675e+06\n"
        "fmt{k=\"j\"} 123456.0\n"
        "fmt{k=\"k\"} 1e+16\n"
        "fmt{k=\"l\"} 0.0001\n"
        "fmt{k=\"m\"} -0.0\n"
        "fmt{k=\"n\"} -Inf\n"
        "fmt{k=\"o\"} 5e-324\n"
        "fmt{k=\"p\"} 1.7976931348623157e+308\n"
        "fmt{k=\"q\"} 0.30000000000000004\n"
        "fmt{k=\"r\"} 100.0\n"
        "fmt{k=\"s\"} 1.234567e+06\n"
        "fmt{k=\"t\"} 999999.0\n"
        "fmt{k=\"u\"} 1.23456789012345e+014\n"
        "fmt{k=\"v\"} 9.99999999999999e+014\n"
        "fmt{k=\"w\"} -42.0\n"
        "fmt{k=\"x\"} 7e+014\n"
        "fmt{k=\"y\"} -123456789.0\n"
        "fmt{k=\"z\"} 4.503599627370497e+015\n"
        "# HELP hsplit labels on both sides of le\n"
        "# TYPE hsplit histogram\n"
        "hsplit_bucket{a=\"x\\\"le=\\\"\",le=\"0.5\",z=\"y\"} 1.0\n"
        "hsplit_bucket{a=\"x\\\"le=\\\"\",le=\"+Inf\",z=\"y\"} 2.0\n"
        "hsplit_count{a=\"x\\\"le=\\\"\",z=\"y\"} 2.0\n"
        "hsplit_sum{a=\"x\\\"le=\\\"\",z=\"y\"} 7.25\n";
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(r, &out), ST_OK);
    assert_string_equal(out.data, expect);
    assert_double_equal(mx_series_value(hs), 4.0, 0);
    assert_double_equal(mx_series_sum(hs), 3.103, 1e-12);
    sy_buf_deinit(&out);
    mx_registry_destroy(r);
}

static void test_family_rules(void **state)
{
    mx_registry_t *r = mx_registry_create();
    const char *l[] = {"a"};
    mx_family_t *f = mx_family_create(r, MX_GAUGE, "g", "h", l, 1, NULL, 0);
    assert_non_null(f);
    /* same name again returns the first; a different type is refused */
    assert_ptr_equal(mx_family_create(r, MX_GAUGE, "g", "other", l, 1, NULL, 0), f);
    assert_null(mx_family_create(r, MX_COUNTER, "g", "h", l, 1, NULL, 0));
    assert_null(mx_family_create(r, MX_GAUGE, "bad name", "h", NULL, 0, NULL, 0));
    assert_null(mx_family_create(r, MX_GAUGE, "9lead", "h", NULL, 0, NULL, 0));
    const char *bad_label[] = {"a:b"};
    assert_null(mx_family_create(r, MX_GAUGE, "g2", "h", bad_label, 1, NULL, 0));
    const char *dup[] = {"a", "a"};
    assert_null(mx_family_create(r, MX_GAUGE, "g3", "h", dup, 2, NULL, 0));
    const char *le[] = {"le"};
    const double b[] = {1, 2};
    assert_null(mx_family_create(r, MX_HISTOGRAM, "h1", "h", le, 1, b, 2));
    const double unsorted[] = {2, 1};
    assert_null(mx_family_create(r, MX_HISTOGRAM, "h2", "h", NULL, 0, unsorted, 2));
    /* an explicit trailing +Inf is accepted and not duplicated */
    const double with_inf[] = {1, INFINITY};
    mx_family_t *h = mx_family_create(r, MX_HISTOGRAM, "h3", "h", NULL, 0, with_inf, 2);
    assert_non_null(h);
    mx_hist_observe(mx_series_get(h, NULL, 0), 5);

    /* series lookup: same values -> same series; wrong count -> NULL */
    const char *v1[] = {"x"}, *v2[] = {"x"};
    assert_ptr_equal(mx_series_get(f, v1, 1), mx_series_get(f, v2, 1));
    assert_null(mx_series_get(f, v1, 0));
    /* updates on NULL series are ignored */
    mx_gauge_set(NULL, 1);
    mx_counter_inc(NULL);
    mx_hist_observe(NULL, 1);

    /* a labelled family without series prints only HELP and TYPE */
    mx_family_t *empty = mx_family_create(r, MX_COUNTER, "empty", "nothing yet", l, 1, NULL, 0);
    assert_non_null(empty);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(r, &out), ST_OK);
    assert_non_null(strstr(out.data, "h3_bucket{le=\"1.0\"} 0.0\nh3_bucket{le=\"+Inf\"} 1.0\n"
                                     "h3_count 1.0\nh3_sum 5.0\n"));
    assert_non_null(
        strstr(out.data, "# HELP empty_total nothing yet\n# TYPE empty_total counter\n"));
    assert_null(strstr(out.data, "empty_total{"));
    sy_buf_deinit(&out);
    mx_registry_destroy(r);
    mx_registry_destroy(NULL);
}

static void test_counter_gauge_ops(void **state)
{
    mx_registry_t *r = mx_registry_create();
    mx_family_t *c = mx_family_create(r, MX_COUNTER, "c", "", NULL, 0, NULL, 0);
    mx_family_t *g = mx_family_create(r, MX_GAUGE, "g", "", NULL, 0, NULL, 0);
    mx_series_t *cs = mx_series_get(c, NULL, 0), *gs = mx_series_get(g, NULL, 0);
    mx_counter_inc(cs);
    mx_counter_add(cs, 2.5);
    mx_counter_add(cs, -7); /* ignored: counters only go up */
    assert_double_equal(mx_series_value(cs), 3.5, 0);
    mx_gauge_set(gs, 10);
    mx_gauge_add(gs, -4);
    assert_double_equal(mx_series_value(gs), 6, 0);
    assert_double_equal(mx_series_sum(gs), 0, 0);
    mx_registry_destroy(r);
}

static int g_collect_calls;

static void collect(void *udata)
{
    g_collect_calls++;
    mx_family_t *f = udata;
    /* creating series from a collect callback is allowed (recursive lock) */
    const char *v[] = {"late"};
    mx_gauge_set(mx_series_get(f, v, 1), 42);
}

static void test_collect_callback(void **state)
{
    mx_registry_t *r = mx_registry_create();
    const char *l[] = {"src"};
    mx_family_t *f = mx_family_create(r, MX_GAUGE, "scraped", "at scrape", l, 1, NULL, 0);
    mx_registry_on_collect(r, collect, f);
    sy_buf_t out = SY_BUF_INIT;
    g_collect_calls = 0;
    assert_int_equal(mx_registry_render(r, &out), ST_OK);
    assert_int_equal(g_collect_calls, 1);
    assert_non_null(strstr(out.data, "scraped{src=\"late\"} 42.0\n"));
    sy_buf_deinit(&out);
    mx_registry_destroy(r);
}

static void test_buckets_125(void **state)
{
    double b[32];
    size_t n = mx_buckets_125(100, b, 32);
    assert_int_equal(n, 7);
    const double want[] = {1, 2, 5, 10, 20, 50, 100};
    for (size_t i = 0; i < n; i++)
        assert_double_equal(b[i], want[i], 0);
    assert_int_equal(mx_buckets_125(100, b, 4), 4);
    assert_int_equal(mx_buckets_125(0.5, b, 32), 0);
    assert_int_equal(mx_buckets_125(4096, b, 32), 11); /* ... 1000 2000 */
    assert_double_equal(b[10], 2000, 0);
}

typedef struct smoke {
    mx_series_t *c, *g, *h;
} smoke_t;

#define SMOKE_N 100000

static void *smoke_thread(void *arg)
{
    smoke_t *s = arg;
    for (int i = 0; i < SMOKE_N; i++) {
        mx_counter_inc(s->c);
        mx_gauge_add(s->g, 1);
        mx_hist_observe(s->h, (i % 3) + 0.5);
    }
    return NULL;
}

static void test_concurrency_smoke(void **state)
{
    mx_registry_t *r = mx_registry_create();
    const double b[] = {1, 2};
    smoke_t s = {
        mx_series_get(mx_family_create(r, MX_COUNTER, "c", "", NULL, 0, NULL, 0), NULL, 0),
        mx_series_get(mx_family_create(r, MX_GAUGE, "g", "", NULL, 0, NULL, 0), NULL, 0),
        mx_series_get(mx_family_create(r, MX_HISTOGRAM, "h", "", NULL, 0, b, 2), NULL, 0),
    };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, smoke_thread, &s), 0);
    /* render concurrently with the updates */
    for (int i = 0; i < 20; i++) {
        sy_buf_t out = SY_BUF_INIT;
        assert_int_equal(mx_registry_render(r, &out), ST_OK);
        sy_buf_deinit(&out);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_double_equal(mx_series_value(s.c), 2.0 * SMOKE_N, 0);
    assert_double_equal(mx_series_value(s.g), 2.0 * SMOKE_N, 0);
    assert_double_equal(mx_series_value(s.h), 2.0 * SMOKE_N, 0);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(r, &out), ST_OK);
    /* i%3 = 0,1,2 -> 0.5 (<=1), 1.5 (<=2), 2.5 (+Inf); SMOKE_N = 3k+1 -> one extra 0.5 */
    assert_non_null(strstr(out.data, "h_bucket{le=\"1.0\"} 66668.0\n"
                                     "h_bucket{le=\"2.0\"} 133334.0\n"
                                     "h_bucket{le=\"+Inf\"} 200000.0\nh_count 200000.0\n"));
    sy_buf_deinit(&out);
    mx_registry_destroy(r);
}

/* The registry of prometheus_client's restricted_registry check:
 *   h = Histogram('h', 'Histogram help', ['a'], buckets=[1.0]); h.labels('x').observe(0.5)
 *   c = Counter('c', 'C help'); c.inc(3)
 *   g = Gauge('g', 'G help', ['k'])   (no series)
 *   g2 = Gauge('g2', 'G2 help'); g2.set(2) */
static mx_registry_t *restricted_fixture(void)
{
    mx_registry_t *r = mx_registry_create();
    assert_non_null(r);
    const char *al[] = {"a"}, *kl[] = {"k"}, *xv[] = {"x"};
    const double b[] = {1.0};
    mx_family_t *h = mx_family_create(r, MX_HISTOGRAM, "h", "Histogram help", al, 1, b, 1);
    mx_hist_observe(mx_series_get(h, xv, 1), 0.5);
    mx_family_t *c = mx_family_create(r, MX_COUNTER, "c", "C help", NULL, 0, NULL, 0);
    mx_counter_add(mx_series_get(c, NULL, 0), 3);
    assert_non_null(mx_family_create(r, MX_GAUGE, "g", "G help", kl, 1, NULL, 0));
    mx_family_t *g2 = mx_family_create(r, MX_GAUGE, "g2", "G2 help", NULL, 0, NULL, 0);
    mx_gauge_set(mx_series_get(g2, NULL, 0), 2);
    return r;
}

static void expect_query(mx_registry_t *r, const char *query, const char *want)
{
    sy_buf_t out;
    sy_buf_init(&out);
    assert_int_equal(mx_registry_render_query(r, query, query ? strlen(query) : 0, &out), ST_OK);
    assert_string_equal(out.len ? out.data : "", want);
    sy_buf_deinit(&out);
}

static void test_render_query(void **state)
{
    mx_registry_t *r = restricted_fixture();
    /* generate_latest(r.restricted_registry(['h_count', 'h_sum', 'c_total', 'g', 'g2', 'c',
     * 'h_bucket'])): the family name alone ('c') matches no sample; 'g' has none */
    const char *all = "# HELP h Histogram help\n# TYPE h histogram\n"
                      "h_bucket{a=\"x\",le=\"1.0\"} 1.0\nh_bucket{a=\"x\",le=\"+Inf\"} 1.0\n"
                      "h_count{a=\"x\"} 1.0\nh_sum{a=\"x\"} 0.5\n"
                      "# HELP c_total C help\n# TYPE c_total counter\nc_total 3.0\n"
                      "# HELP g2 G2 help\n# TYPE g2 gauge\ng2 2.0\n";
    expect_query(r,
                 "name[]=h_count&name[]=h_sum&name[]=c_total&name[]=g&name[]=g2&name[]=c"
                 "&name[]=h_bucket",
                 all);
    /* percent-encoded key, in any order, other keys ignored */
    expect_query(r, "x=1&name%5B%5D=g2&name%5b%5d=h_count&debug",
                 "# HELP h Histogram help\n# TYPE h histogram\nh_count{a=\"x\"} 1.0\n"
                 "# HELP g2 G2 help\n# TYPE g2 gauge\ng2 2.0\n");
    /* ['c', 'h']: nothing */
    expect_query(r, "name[]=c&name[]=h", "");
    /* an escaped value, '+' as a space (no such sample), a malformed escape kept as is */
    expect_query(r, "name[]=c%5Ftotal&name[]=g+2&name[]=%zz&name[]=%",
                 "# HELP c_total C help\n# TYPE c_total counter\nc_total 3.0\n");
    /* no name[] pair (an empty value does not count, as parse_qs drops it): everything, like
     * mx_registry_render, including the labelled gauge without series */
    sy_buf_t full;
    sy_buf_init(&full);
    assert_int_equal(mx_registry_render(r, &full), ST_OK);
    assert_non_null(strstr(full.data, "# HELP g G help\n# TYPE g gauge\n# HELP g2"));
    expect_query(r, NULL, full.data);
    expect_query(r, "", full.data);
    expect_query(r, "name[]=&other=g2", full.data);
    expect_query(r, "&&=&name[]", full.data);
    sy_buf_deinit(&full);
    mx_registry_destroy(r);
}

static void test_nomem(void **state)
{
    mx_registry_t *r = mx_registry_create();
    const char *l[] = {"a"};
    mx_family_t *f = mx_family_create(r, MX_GAUGE, "g", "", l, 1, NULL, 0);
    for (uint64_t k = 1; k <= 3; k++) {
        sy_alloc_fail_after(k);
        const char *v[] = {"x"};
        mx_series_t *s = mx_series_get(f, v, 1);
        sy_alloc_fail_after(0);
        if (s)
            break; /* once enough allocations succeed the series exists */
    }
    sy_alloc_fail_after(1);
    assert_null(mx_family_create(r, MX_GAUGE, "g2", "", l, 1, NULL, 0));
    sy_alloc_fail_after(0);
    mx_registry_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_exact),  cmocka_unit_test(test_family_rules),
        cmocka_unit_test(test_counter_gauge_ops), cmocka_unit_test(test_collect_callback),
        cmocka_unit_test(test_buckets_125),       cmocka_unit_test(test_concurrency_smoke),
        cmocka_unit_test(test_render_query),      cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
