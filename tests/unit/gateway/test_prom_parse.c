/*
 * test_prom_parse.c - Prometheus text parser and the gateway's metric extraction: the vLLM
 * exposition sample of the spec (§2.3), both metric-name generations, label escapes, +Inf/-Inf/NaN,
 * timestamps, blank/CRLF/unterminated last lines, malformed lines (counted and skipped), limits,
 * and the extraction rules (sum waiting/running over series, mean usage, gpu_cache fallback,
 * cache_config_info labels).
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
#include "gateway/gw_scrape.h"
#include "gateway/prom_parse.h"

static const char vllm_sample[] =
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\"} "
    "3.0\n"
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\"} "
    "0.0\n"
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    "vllm:kv_cache_usage_perc{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\"} "
    "0.123\n"
    "# TYPE vllm:prefix_cache_queries counter\n"
    "vllm:prefix_cache_queries_total{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\"}"
    " 5120.0\n"
    "# TYPE vllm:request_success counter\n"
    "vllm:request_success_total{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\","
    "finished_reason=\"stop\"} 97.0\n"
    "vllm:request_success_total{model_name=\"meta-llama/Llama-3.1-8B-Instruct\",engine=\"0\","
    "finished_reason=\"length\"} 3.0\n"
    "# TYPE vllm:time_to_first_token_seconds histogram\n"
    "vllm:time_to_first_token_seconds_bucket{model_name=\"meta-llama/Llama-3.1-8B-Instruct\","
    "engine=\"0\",le=\"0.001\"} 0.0\n"
    "vllm:time_to_first_token_seconds_bucket{model_name=\"meta-llama/Llama-3.1-8B-Instruct\","
    "engine=\"0\",le=\"+Inf\"} 100.0\n"
    "vllm:time_to_first_token_seconds_count{model_name=\"meta-llama/Llama-3.1-8B-Instruct\","
    "engine=\"0\"} 100.0\n"
    "vllm:time_to_first_token_seconds_sum{model_name=\"meta-llama/Llama-3.1-8B-Instruct\","
    "engine=\"0\"} 4.2\n"
    "# TYPE vllm:lora_requests_info gauge\n"
    "vllm:lora_requests_info{max_lora=\"4\",waiting_lora_adapters=\"\",running_lora_adapters="
    "\"sql-lora\"} 1.733000012e+09\n"
    "vllm:cache_config_info{block_size=\"16\",cache_dtype=\"auto\",enable_prefix_caching=\"True\","
    "num_gpu_blocks=\"27000\",engine=\"0\"} 1.0\n";

#define MAX_REC 32

typedef struct rec {
    size_t n;
    char names[MAX_REC][128];
    double values[MAX_REC];
    size_t n_labels[MAX_REC];
    bool has_ts[MAX_REC];
    int64_t ts[MAX_REC];
    char first_label[MAX_REC][128]; /* "name=unescaped" of the first label */
} rec_t;

static void on_rec(const prom_sample_t *s, void *udata)
{
    rec_t *r = udata;
    if (r->n >= MAX_REC)
        return;
    size_t i = r->n++;
    snprintf(r->names[i], sizeof r->names[i], "%.*s", (int)s->name.len, s->name.ptr);
    r->values[i] = s->value;
    r->n_labels[i] = s->n_labels;
    r->has_ts[i] = s->has_timestamp;
    r->ts[i] = s->timestamp_ms;
    r->first_label[i][0] = '\0';
    if (s->n_labels) {
        char v[96];
        int n = prom_label_unescape(s->labels[0].value, v, sizeof v);
        assert_true(n >= 0);
        snprintf(r->first_label[i], sizeof r->first_label[i], "%.*s=%s", (int)s->labels[0].name.len,
                 s->labels[0].name.ptr, v);
    }
}

static rec_t *parse(const char *text, prom_stats_t *st)
{
    static rec_t r;
    memset(&r, 0, sizeof r);
    assert_int_equal(prom_parse(text, strlen(text), on_rec, &r, st), ST_OK);
    return &r;
}

static void test_vllm_sample(void **state)
{
    prom_stats_t st;
    rec_t *r = parse(vllm_sample, &st);
    assert_int_equal(st.samples, 12);
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.comments, 10);
    assert_int_equal(st.lines, 22);
    assert_string_equal(r->names[0], "vllm:num_requests_running");
    assert_true(r->values[0] == 3.0);
    assert_int_equal(r->n_labels[0], 2);
    assert_string_equal(r->first_label[0], "model_name=meta-llama/Llama-3.1-8B-Instruct");
    assert_string_equal(r->names[6], "vllm:time_to_first_token_seconds_bucket");
    assert_true(r->values[10] == 1.733000012e+09);
    assert_int_equal(r->n_labels[10], 3);
    assert_string_equal(r->first_label[10], "max_lora=4");
    assert_string_equal(r->names[11], "vllm:cache_config_info");
    assert_false(r->has_ts[0]);

    gw_engine_metrics_t m;
    memset(&m, 0, sizeof m);
    m.scraped_ms = 77;
    assert_int_equal(gw_scrape_extract(vllm_sample, strlen(vllm_sample), &m), ST_OK);
    assert_true(m.running == 3.0);
    assert_true(m.waiting == 0.0);
    assert_true(fabs(m.kv_usage - 0.123) < 1e-12);
    assert_int_equal(m.block_size, 16);
    assert_int_equal(m.num_blocks, 27000);
    assert_false(m.valid);
    assert_int_equal(m.scraped_ms, 77); /* not touched */
}

static void test_old_generation_and_dp(void **state)
{
    /* v0.10-era names, two data-parallel ranks and a second model: waiting/running summed, usage
     * averaged, gpu_cache_usage_perc used because kv_cache_usage_perc is absent */
    const char *t = "vllm:num_requests_waiting{model_name=\"m\",engine=\"0\"} 2\n"
                    "vllm:num_requests_waiting{model_name=\"m\",engine=\"1\"} 5\n"
                    "vllm:num_requests_waiting{model_name=\"m2\",engine=\"0\"} 1\n"
                    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 4\n"
                    "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 6\n"
                    "vllm:gpu_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0.5\n"
                    "vllm:gpu_cache_usage_perc{model_name=\"m\",engine=\"1\"} 0.25\n"
                    "vllm:cache_config_info{engine=\"0\",num_gpu_blocks=\"1000\","
                    "block_size=\"32\"} 1\n"
                    "vllm:cache_config_info{engine=\"1\",num_gpu_blocks=\"1000.0\","
                    "block_size=\"32\"} 1\n";
    gw_engine_metrics_t m;
    memset(&m, 0, sizeof m);
    assert_int_equal(gw_scrape_extract(t, strlen(t), &m), ST_OK);
    assert_true(m.waiting == 8.0);
    assert_true(m.running == 10.0);
    assert_true(fabs(m.kv_usage - 0.375) < 1e-12);
    assert_int_equal(m.block_size, 32);
    assert_int_equal(m.num_blocks, 2000);

    /* when both generations are present, the new name wins */
    const char *both = "vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.1\n";
    assert_int_equal(gw_scrape_extract(both, strlen(both), &m), ST_OK);
    assert_true(fabs(m.kv_usage - 0.1) < 1e-12);
    assert_true(m.waiting == 0.0 && m.running == 0.0); /* absent -> 0 */
    assert_int_equal(m.block_size, 0);

    /* non-finite values ignored, negative queue clamped, usage clamped, "None" blocks unknown */
    const char *odd = "vllm:num_requests_waiting NaN\nvllm:num_requests_waiting -3\n"
                      "vllm:num_requests_running +Inf\nvllm:num_requests_running 1\n"
                      "vllm:kv_cache_usage_perc 1.5\n"
                      "vllm:cache_config_info{block_size=\"16\",num_gpu_blocks=\"None\"} 1\n";
    assert_int_equal(gw_scrape_extract(odd, strlen(odd), &m), ST_OK);
    assert_true(m.waiting == 0.0);
    assert_true(m.running == 1.0);
    assert_true(m.kv_usage == 1.0);
    assert_int_equal(m.block_size, 16);
    assert_int_equal(m.num_blocks, 0);

    /* nothing we know: ST_NOTFOUND and out untouched */
    m.waiting = 42;
    const char *none = "# just a comment\nhttp_requests_total 5\nvllm:other 1\n";
    assert_int_equal(gw_scrape_extract(none, strlen(none), &m), ST_NOTFOUND);
    assert_true(m.waiting == 42);
    assert_int_equal(gw_scrape_extract("", 0, &m), ST_NOTFOUND);
    assert_int_equal(gw_scrape_extract(NULL, 0, &m), ST_NOTFOUND);
    assert_int_equal(gw_scrape_extract("x 1\n", 4, NULL), ST_INVAL);
}

static void test_values_and_timestamps(void **state)
{
    const char *t = "a +Inf\nb -Inf\nc NaN\nd 1e3 1700000000000\ne -0.5e-2 -12\n"
                    "f inf\ng .5\nh 7.\ni 1E+2\nj 0x10\nk 1e\nl 1.2.3\nm\nn 1 2 3\no 1 x\n"
                    "p +\nq -nan\n";
    prom_stats_t st;
    rec_t *r = parse(t, &st);
    assert_int_equal(st.samples, 9);
    assert_int_equal(st.malformed, 8); /* j k l m n o p q */
    assert_true(isinf(r->values[0]) && r->values[0] > 0);
    assert_true(isinf(r->values[1]) && r->values[1] < 0);
    assert_true(isnan(r->values[2]));
    assert_true(r->values[3] == 1000.0);
    assert_true(r->has_ts[3]);
    assert_int_equal(r->ts[3], 1700000000000LL);
    assert_true(r->values[4] == -0.005);
    assert_int_equal(r->ts[4], -12);
    assert_true(isinf(r->values[5]));
    assert_true(r->values[6] == 0.5);
    assert_true(r->values[7] == 7.0);
    assert_true(r->values[8] == 100.0);
}

static void test_labels_and_escapes(void **state)
{
    const char *t = "m{a=\"x\\\\y\\\"z\\n\",b=\"\"} 1\n" /* escapes */
                    "m { a = \"sp\" , b=\"2\" , } 2\n"   /* blanks and a trailing comma */
                    "m{} 3\n"                            /* empty label set */
                    "m{a=\"1\"}4\n"                      /* no blank after '}' */
                    "m{a=\"\xc3\xa9\"} 5\n"              /* UTF-8 in a value */
                    "m{a=\"bad\\x\"} 6\n"                /* bad escape */
                    "m{a=\"open} 7\n"                    /* unterminated */
                    "m{1a=\"v\"} 8\n"                    /* bad label name */
                    "m{a:b=\"v\"} 9\n"                   /* ':' not allowed in label names */
                    "m{a=v} 10\n"                        /* unquoted */
                    "m{a=\"v\"b=\"w\"} 11\n"             /* missing comma */
                    "1m 12\n"                            /* bad metric name */
                    "m{a=\"v\"} \n";                     /* no value */
    prom_stats_t st;
    rec_t *r = parse(t, &st);
    assert_int_equal(st.samples, 5);
    assert_int_equal(st.malformed, 8);
    assert_string_equal(r->first_label[0], "a=x\\y\"z\n");
    assert_int_equal(r->n_labels[0], 2);
    assert_string_equal(r->first_label[1], "a=sp");
    assert_int_equal(r->n_labels[1], 2);
    assert_int_equal(r->n_labels[2], 0);
    assert_true(r->values[3] == 4.0);
    assert_string_equal(r->first_label[4], "a=\xc3\xa9");

    sy_slice_t raw = {"x\\\\y\\\"z\\n", 9};
    assert_true(prom_label_value_eq(raw, "x\\y\"z\n"));
    assert_false(prom_label_value_eq(raw, "x\\y\"z"));
    assert_false(prom_label_value_eq(raw, "x\\y\"z\nq"));
    char small[4];
    assert_int_equal(prom_label_unescape(raw, small, sizeof small), 6); /* truncated */
    assert_string_equal(small, "x\\y");
    sy_slice_t bad = {"a\\", 2};
    assert_int_equal(prom_label_unescape(bad, small, sizeof small), ST_PROTO);
    uint64_t v;
    sy_slice_t n16 = {"16", 2}, nf = {"16.0", 4}, nn = {"None", 4}, nx = {"16.5", 4},
               big = {"99999999999999999999999", 23};
    assert_int_equal(prom_label_value_u64(n16, &v), ST_OK);
    assert_int_equal(v, 16);
    assert_int_equal(prom_label_value_u64(nf, &v), ST_OK);
    assert_int_equal(prom_label_value_u64(nn, &v), ST_INVAL);
    assert_int_equal(prom_label_value_u64(nx, &v), ST_INVAL);
    assert_int_equal(prom_label_value_u64(big, &v), ST_INVAL);
}

static void test_lines_and_limits(void **state)
{
    /* CRLF, blank lines, indentation, a comment with leading blanks, no final newline */
    const char *t = "\r\n  \n\ta 1\r\n   # comment\n\nb 2";
    prom_stats_t st;
    rec_t *r = parse(t, &st);
    assert_int_equal(st.samples, 2);
    assert_int_equal(st.comments, 1);
    assert_int_equal(st.malformed, 0);
    assert_string_equal(r->names[1], "b");

    /* too many labels */
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_str(&b, "m{"), ST_OK);
    for (int i = 0; i < PROM_MAX_LABELS + 1; i++)
        assert_int_equal(sy_buf_appendf(&b, "l%d=\"v\",", i), ST_OK);
    assert_int_equal(sy_buf_append_str(&b, "} 1\nok 1\n"), ST_OK);
    assert_int_equal(prom_parse(b.data, b.len, NULL, NULL, &st), ST_OK);
    assert_int_equal(st.samples, 1);
    assert_int_equal(st.malformed, 1);

    /* an over-long line, then a good one */
    sy_buf_reset(&b);
    assert_int_equal(sy_buf_append_str(&b, "m{a=\""), ST_OK);
    for (int i = 0; i < PROM_MAX_LINE; i++)
        assert_int_equal(sy_buf_append_char(&b, 'x'), ST_OK);
    assert_int_equal(sy_buf_append_str(&b, "\"} 1\nvllm:num_requests_running 4\n"), ST_OK);
    assert_int_equal(prom_parse(b.data, b.len, NULL, NULL, &st), ST_OK);
    assert_int_equal(st.samples, 1);
    assert_int_equal(st.malformed, 1);
    gw_engine_metrics_t m;
    memset(&m, 0, sizeof m);
    size_t bad = 0;
    assert_int_equal(gw_scrape_extract_ex(b.data, b.len, &m, &bad), ST_OK);
    assert_int_equal(bad, 1);
    assert_true(m.running == 4.0);
    sy_buf_deinit(&b);

    /* embedded NUL and binary garbage never crash and only count as malformed */
    const char garbage[] = "m\0x 1\n\xff\xfe{}} 2\nvllm:num_requests_waiting 3\n{";
    assert_int_equal(prom_parse(garbage, sizeof garbage - 1, NULL, NULL, &st), ST_OK);
    assert_int_equal(st.samples, 1);
    assert_int_equal(st.malformed, 3);
    assert_int_equal(prom_parse(NULL, 0, NULL, NULL, &st), ST_OK);
    assert_int_equal(st.lines, 0);
    assert_int_equal(prom_parse(NULL, 3, NULL, NULL, &st), ST_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_sample),           cmocka_unit_test(test_old_generation_and_dp),
        cmocka_unit_test(test_values_and_timestamps), cmocka_unit_test(test_labels_and_escapes),
        cmocka_unit_test(test_lines_and_limits),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    return rc;
}
