/*
 * test_gw_pd.c - the pure half of P/D disaggregation: the prefix-based decider and its threshold
 * header, the prefill-body rewrite (stream false, max_tokens 1, max_completion_tokens only when
 * sent, stream_options / min_tokens removed, kv_transfer_params injected), the prefill answer's
 * kv_transfer_params taken byte for byte (null, absent, empty and garbage refused), the
 * decode-body splice, the debug note, and the scheduler's P/D configuration (disagg- and
 * pd-profile-handler, deciders, the decode/prefill profile convention, errors, built-in "pd").
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/gw_pd.h"
#include "gateway/gw_sched.h"

static json_t *parse(const sy_buf_t *b)
{
    json_error_t e;
    json_t *j = json_loadb(b->data, b->len, 0, &e);
    if (!j)
        fprintf(stderr, "not JSON (%s): %.*s\n", e.text, (int)b->len, b->data);
    assert_non_null(j);
    return j;
}

/* ---- decider -------------------------------------------------------------------------- */

static void test_decide(void **state)
{
    (void)state;
    uint32_t u = 99;
    assert_int_equal(gwpd_decide(16, 100, 0, &u), GWPD_PREFILL_DECODE);
    assert_int_equal(u, 100);
    assert_int_equal(gwpd_decide(16, 100, 84, &u), GWPD_PREFILL_DECODE); /* 16 >= 16 */
    assert_int_equal(u, 16);
    assert_int_equal(gwpd_decide(16, 100, 85, &u), GWPD_DECODE_ONLY); /* 15 < 16 */
    assert_int_equal(u, 15);
    assert_int_equal(gwpd_decide(16, 15, 0, &u), GWPD_DECODE_ONLY); /* short prompt */
    /* more cached than the prompt has (a block count rounded up): nothing uncached */
    assert_int_equal(gwpd_decide(1, 20, 32, &u), GWPD_DECODE_ONLY);
    assert_int_equal(u, 0);
    /* 0 = always, even fully cached */
    assert_int_equal(gwpd_decide(0, 20, 32, &u), GWPD_PREFILL_DECODE);
    assert_int_equal(gwpd_decide(0, 0, 0, NULL), GWPD_PREFILL_DECODE);
    /* never */
    assert_int_equal(gwpd_decide(GWPD_NEVER, UINT32_MAX, 0, &u), GWPD_DECODE_ONLY);
    assert_int_equal(gwpd_decide((uint64_t)UINT32_MAX + 1, UINT32_MAX, 0, NULL), GWPD_DECODE_ONLY);
    assert_int_equal(gwpd_decide(UINT32_MAX, UINT32_MAX, 0, NULL), GWPD_PREFILL_DECODE);
    assert_string_equal(gwpd_decision_name(GWPD_DECODE_ONLY), "decode-only");
    assert_string_equal(gwpd_decision_name(GWPD_PREFILL_DECODE), "prefill-decode");
    assert_string_equal(gwpd_path_name(GWPD_PATH_DECODE_ONLY), "decode_only");
    assert_string_equal(gwpd_path_name(GWPD_PATH_PREFILL_DECODE), "prefill_decode");
    assert_string_equal(gwpd_path_name(GWPD_PATH_PREFILL_RETRY), "prefill_retry");
    assert_string_equal(gwpd_path_name(GWPD_PATH_FALLBACK_LOCAL), "fallback_local");
    assert_string_equal(gwpd_path_name(GWPD_PATH_FAILED), "failed");
    assert_string_equal(gwpd_path_name(GWPD_PATH_COUNT), "none");
}

static void test_threshold_header(void **state)
{
    (void)state;
    uint64_t v = 7;
    assert_true(gwpd_threshold_parse("0", 1, &v));
    assert_int_equal(v, 0);
    assert_true(gwpd_threshold_parse(" 128 ", 5, &v));
    assert_int_equal(v, 128);
    assert_true(gwpd_threshold_parse("99999999999999999999999", 23, &v)); /* saturates */
    assert_true(v == UINT64_MAX);
    assert_true(gwpd_threshold_parse("18446744073709551615", 20, &v));
    assert_true(v == UINT64_MAX);
    assert_true(gwpd_threshold_parse("18446744073709551614", 20, &v));
    assert_true(v == UINT64_MAX - 1);
    v = 7;
    assert_false(gwpd_threshold_parse("", 0, &v));
    assert_false(gwpd_threshold_parse("  ", 2, &v));
    assert_false(gwpd_threshold_parse("-1", 2, &v));
    assert_false(gwpd_threshold_parse("12a", 3, &v));
    assert_false(gwpd_threshold_parse("1 2", 3, &v));
    assert_false(gwpd_threshold_parse("0x10", 4, &v));
    assert_int_equal(v, 7);
    /* the length bounds the parse (a header slice is not NUL-terminated) */
    assert_true(gwpd_threshold_parse("42xyz", 2, &v));
    assert_int_equal(v, 42);
}

/* ---- prefill body ------------------------------------------------------------------------ */

static void check_kv_request(json_t *j)
{
    json_t *kv = json_object_get(j, "kv_transfer_params");
    assert_true(json_is_object(kv));
    assert_int_equal(json_object_size(kv), 6);
    assert_true(json_is_true(json_object_get(kv, "do_remote_decode")));
    assert_true(json_is_false(json_object_get(kv, "do_remote_prefill")));
    const char *nulls[] = {"remote_engine_id", "remote_block_ids", "remote_host", "remote_port"};
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_object_get(kv, nulls[i]);
        assert_non_null(v);
        assert_true(json_is_null(v));
    }
}

static void test_prefill_body(void **state)
{
    (void)state;
    static const char body[] =
        "{\"model\":\"m\",\"prompt\":\"Hello \\\"world\\\" \\u00e9\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"max_tokens\":64,\"min_tokens\":8,"
        "\"temperature\":0.5,\"seed\":7,\"stop\":[\"\\n\"],\"user\":\"u\"}";
    sy_buf_t b = SY_BUF_INIT;
    sy_buf_append_str(&b, "prefix:"); /* appended after what is there */
    assert_int_equal(gwpd_prefill_body(body, sizeof body - 1, &b), ST_OK);
    assert_memory_equal(b.data, "prefix:", 7);
    sy_buf_consume(&b, 7);
    json_t *j = parse(&b);
    check_kv_request(j);
    assert_true(json_is_false(json_object_get(j, "stream")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 1);
    assert_null(json_object_get(j, "max_completion_tokens")); /* not sent: not added */
    assert_null(json_object_get(j, "stream_options"));
    assert_null(json_object_get(j, "min_tokens"));
    /* everything else as the client sent it */
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m");
    assert_string_equal(json_string_value(json_object_get(j, "prompt")),
                        "Hello \"world\" \xc3\xa9");
    assert_true(json_real_value(json_object_get(j, "temperature")) == 0.5);
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 7);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stop"), 0)), "\n");
    assert_string_equal(json_string_value(json_object_get(j, "user")), "u");
    assert_int_equal(json_object_size(j), 9);
    json_decref(j);

    /* chat: max_completion_tokens set to 1 because the client sent it; a body without stream or
     * max_tokens gets both */
    static const char chat[] =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":300,"
        "\"min_completion_tokens\":2}";
    sy_buf_reset(&b);
    assert_int_equal(gwpd_prefill_body(chat, sizeof chat - 1, &b), ST_OK);
    j = parse(&b);
    check_kv_request(j);
    assert_int_equal(json_integer_value(json_object_get(j, "max_completion_tokens")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 1);
    assert_true(json_is_false(json_object_get(j, "stream")));
    assert_null(json_object_get(j, "min_completion_tokens"));
    assert_non_null(json_object_get(j, "messages"));
    json_decref(j);

    /* refusals leave out as it was */
    sy_buf_reset(&b);
    sy_buf_append_str(&b, "keep");
    const char *bad[] = {"[1,2]", "\"s\"", "{\"a\":", "nope", "", "{\"a\":1}x", "{\"a\":\"\xff\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gwpd_prefill_body(bad[i], strlen(bad[i]), &b), ST_INVAL);
        assert_int_equal(b.len, 4);
    }
    sy_buf_deinit(&b);
}

/* ---- prefill answer ---------------------------------------------------------------------- */

static void test_response_params(void **state)
{
    (void)state;
    /* the object comes out byte for byte: spacing, number spelling, key order, escapes */
    static const char params[] =
        "{ \"do_remote_prefill\" : true,\"do_remote_decode\":false, \"remote_block_ids\": "
        "[[17, 18], [19,20]], \"remote_engine_id\":\"e-}{\\\"]\", \"remote_request_id\": "
        "\"cmpl-1\", \"remote_host\":\"127.0.0.1\",\"remote_port\":14579,\"tp_size\":1,"
        "\"x\":1.50e0,\"nested\":{\"a\":[{}],\"b\":\"\\\\\"}}";
    char resp[2048];
    snprintf(resp, sizeof resp,
             "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"}\","
             "\"finish_reason\":\"length\"}],\n  \"kv_transfer_params\" :  %s ,\n"
             "\"usage\":{\"prompt_tokens\":5}}\n",
             params);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gwpd_response_params(resp, strlen(resp), &b), ST_OK);
    assert_int_equal(b.len, strlen(params));
    assert_memory_equal(b.data, params, b.len);

    /* last member of the object, and first */
    snprintf(resp, sizeof resp, "{\"kv_transfer_params\":{\"k\":[1,{\"z\":null}]}}");
    sy_buf_reset(&b);
    assert_int_equal(gwpd_response_params(resp, strlen(resp), &b), ST_OK);
    assert_int_equal(b.len, strlen("{\"k\":[1,{\"z\":null}]}"));
    assert_memory_equal(b.data, "{\"k\":[1,{\"z\":null}]}", b.len);

    /* a duplicate key: the last one wins, as in jansson */
    snprintf(resp, sizeof resp,
             "{\"kv_transfer_params\":{\"a\":1},\"x\":2,\"kv_transfer_params\":{\"a\":2}}");
    sy_buf_reset(&b);
    assert_int_equal(gwpd_response_params(resp, strlen(resp), &b), ST_OK);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "{\"a\":2}", 7);

    /* an escaped spelling of the key: found through jansson, re-serialized */
    snprintf(resp, sizeof resp, "{\"kv\\u005ftransfer_params\":{\"a\":1,\"b\":[true]}}");
    sy_buf_reset(&b);
    assert_int_equal(gwpd_response_params(resp, strlen(resp), &b), ST_OK);
    json_t *j = parse(&b);
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    json_decref(j);

    /* the engine kept no blocks, or says nothing */
    sy_buf_reset(&b);
    sy_buf_append_str(&b, "keep");
    const char *none[] = {
        "{\"id\":\"x\",\"kv_transfer_params\":null}",
        "{\"id\":\"x\"}",
        "{}",
        "{\"kv_transfer_params\":{}}",
        "{\"kv_transfer_params\":[1]}",
        "{\"kv_transfer_params\":\"str\"}",
        "{\"kv_transfer_params\":{\"a\":1},\"kv_transfer_params\":null}",
        "{\"nested\":{\"kv_transfer_params\":{\"a\":1}}}",
    };
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        assert_int_equal(gwpd_response_params(none[i], strlen(none[i]), &b), ST_NOTFOUND);
        assert_int_equal(b.len, 4);
    }
    /* garbage: not JSON, not an object, truncated, not UTF-8, empty */
    const char *garbage[] = {
        "<html>502 Bad Gateway</html>",
        "[{\"kv_transfer_params\":{\"a\":1}}]",
        "{\"kv_transfer_params\":{\"a\":1}",
        "{\"kv_transfer_params\":{\"a\":\"\xc3\"}}",
        "",
        "data: {\"kv_transfer_params\":{\"a\":1}}\n\n",
        "null",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        assert_int_equal(gwpd_response_params(garbage[i], strlen(garbage[i]), &b), ST_PROTO);
        assert_int_equal(b.len, 4);
    }
    assert_int_equal(gwpd_response_params(NULL, 0, &b), ST_PROTO);

    /* every prefix and every one-byte corruption of a good answer: no crash, and whatever is
     * accepted is a JSON object */
    static const char good[] =
        "{\"a\":[1,\"]\\\"\"],\"kv_transfer_params\":{\"h\":\"1.2.3.4\",\"p\":[[1]]},\"z\":{}}";
    for (size_t n = 0; n <= sizeof good - 1; n++) {
        char buf[sizeof good];
        memcpy(buf, good, n);
        for (int c = -1; c < 256; c += 37) {
            if (c >= 0 && n > 0)
                buf[n - 1] = (char)c;
            sy_buf_reset(&b);
            if (gwpd_response_params(buf, n, &b) == ST_OK) {
                j = parse(&b);
                assert_true(json_is_object(j));
                json_decref(j);
            }
        }
    }
    sy_buf_deinit(&b);
}

/* ---- decode body ------------------------------------------------------------------------- */

static void test_decode_body(void **state)
{
    (void)state;
    static const char params[] = "{\"do_remote_prefill\":true,\"remote_block_ids\":[[1, 2]],"
                                 "\"remote_port\":14579}";
    static const char body[] = "{\"model\":\"m\",\"prompt\":\"}\",\"stream\":true,"
                               "\"stream_options\":{\"include_usage\":true},\"max_tokens\":64,"
                               "\"min_tokens\":8}\r\n ";
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gwpd_decode_body(body, sizeof body - 1, params, sizeof params - 1, &b), ST_OK);
    /* the client's text up to its closing brace, then the parameters verbatim */
    const char *close = strrchr(body, '}');
    size_t head = (size_t)(close - body);
    assert_memory_equal(b.data, body, head);
    static const char tail[] = ",\"kv_transfer_params\":";
    assert_memory_equal(b.data + head, tail, sizeof tail - 1);
    assert_memory_equal(b.data + head + sizeof tail - 1, params, sizeof params - 1);
    assert_int_equal(b.len, head + sizeof tail - 1 + sizeof params - 1 + 1);
    assert_int_equal(b.data[b.len - 1], '}');
    json_t *j = parse(&b);
    assert_true(json_is_true(json_object_get(j, "stream"))); /* the client's own */
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 64);
    assert_int_equal(json_integer_value(json_object_get(j, "min_tokens")), 8);
    assert_non_null(json_object_get(j, "stream_options"));
    json_t *kv = json_object_get(j, "kv_transfer_params");
    assert_int_equal(json_integer_value(json_object_get(kv, "remote_port")), 14579);
    json_decref(j);

    /* an empty object gets no comma */
    const char *empties[] = {"{}", " { \n } ", "{\t}"};
    for (size_t i = 0; i < 3; i++) {
        sy_buf_reset(&b);
        assert_int_equal(gwpd_decode_body(empties[i], strlen(empties[i]), "{\"a\":1}", 7, &b),
                         ST_OK);
        j = parse(&b);
        assert_int_equal(json_object_size(j), 1);
        json_decref(j);
    }
    /* nested braces before the end are not mistaken for an empty object */
    sy_buf_reset(&b);
    assert_int_equal(gwpd_decode_body("{\"a\":{}}", 8, "{\"a\":1}", 7, &b), ST_OK);
    j = parse(&b);
    assert_int_equal(json_object_size(j), 2);
    json_decref(j);
    /* not an object's text: refused, out unchanged */
    sy_buf_reset(&b);
    sy_buf_append_str(&b, "keep");
    assert_int_equal(gwpd_decode_body("[1]", 3, "{}", 2, &b), ST_INVAL);
    assert_int_equal(gwpd_decode_body("", 0, "{}", 2, &b), ST_INVAL);
    assert_int_equal(gwpd_decode_body("   ", 3, "{}", 2, &b), ST_INVAL);
    assert_int_equal(b.len, 4);
    sy_buf_deinit(&b);
}

/* The whole round: client body -> prefill body; engine answer -> decode body. */
static void test_round_trip(void **state)
{
    (void)state;
    static const char client[] = "{\"model\":\"m\",\"prompt\":\"abc\",\"stream\":true,"
                                 "\"max_tokens\":5}";
    sy_buf_t pre = SY_BUF_INIT, params = SY_BUF_INIT, dec = SY_BUF_INIT;
    assert_int_equal(gwpd_prefill_body(client, sizeof client - 1, &pre), ST_OK);
    static const char answer[] =
        "{\"id\":\"cmpl-9\",\"choices\":[{\"text\":\"x\"}],\"kv_transfer_params\":"
        "{\"do_remote_prefill\":true,\"do_remote_decode\":false,\"remote_engine_id\":\"p0\","
        "\"remote_request_id\":\"r9\",\"remote_block_ids\":[[3,4]],\"remote_host\":\"127.0.0.1\","
        "\"remote_port\":14579,\"tp_size\":1}}";
    assert_int_equal(gwpd_response_params(answer, sizeof answer - 1, &params), ST_OK);
    assert_int_equal(gwpd_decode_body(client, sizeof client - 1, params.data, params.len, &dec),
                     ST_OK);
    json_t *j = parse(&dec);
    json_t *kv = json_object_get(j, "kv_transfer_params");
    assert_string_equal(json_string_value(json_object_get(kv, "remote_request_id")), "r9");
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 5);
    json_decref(j);
    sy_buf_deinit(&pre);
    sy_buf_deinit(&params);
    sy_buf_deinit(&dec);
}

/* ---- debug note -------------------------------------------------------------------------- */

static void test_note_json(void **state)
{
    (void)state;
    static const char d[] = "{\"profile\":\"decode\",\"endpoint\":\"127.0.0.1:1\"}";
    gwpd_note_t n = {.decision = GWPD_PREFILL_DECODE,
                     .path = GWPD_PATH_PREFILL_RETRY,
                     .threshold = 16,
                     .prompt_tokens = 100,
                     .cached_tokens = 32,
                     .uncached_tokens = 68,
                     .prefill = "127.0.0.1:2",
                     .prefill_attempts = 2,
                     .prefill_ms = 12.5};
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gwpd_note_json(d, sizeof d - 1, &n, &b), ST_OK);
    json_t *j = parse(&b);
    assert_string_equal(json_string_value(json_object_get(j, "profile")), "decode");
    json_t *pd = json_object_get(j, "pd");
    assert_string_equal(json_string_value(json_object_get(pd, "decision")), "prefill-decode");
    assert_string_equal(json_string_value(json_object_get(pd, "path")), "prefill_retry");
    assert_int_equal(json_integer_value(json_object_get(pd, "threshold")), 16);
    assert_int_equal(json_integer_value(json_object_get(pd, "promptTokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(pd, "cachedTokens")), 32);
    assert_int_equal(json_integer_value(json_object_get(pd, "uncachedTokens")), 68);
    assert_string_equal(json_string_value(json_object_get(pd, "prefill")), "127.0.0.1:2");
    assert_int_equal(json_integer_value(json_object_get(pd, "prefillAttempts")), 2);
    assert_true(json_real_value(json_object_get(pd, "prefillMs")) == 12.5);
    json_decref(j);

    n = (gwpd_note_t){.decision = GWPD_DECODE_ONLY,
                      .path = GWPD_PATH_DECODE_ONLY,
                      .threshold = GWPD_NEVER,
                      .prefill_ms = -1};
    sy_buf_reset(&b);
    assert_int_equal(gwpd_note_json("{}", 2, &n, &b), ST_OK);
    j = parse(&b);
    pd = json_object_get(j, "pd");
    assert_true(json_is_null(json_object_get(pd, "threshold")));
    assert_true(json_is_null(json_object_get(pd, "prefill")));
    assert_true(json_is_null(json_object_get(pd, "prefillMs")));
    assert_string_equal(json_string_value(json_object_get(pd, "decision")), "decode-only");
    json_decref(j);
    /* not an object: unchanged */
    sy_buf_reset(&b);
    assert_int_equal(gwpd_note_json("xy", 2, &n, &b), ST_OK);
    assert_int_equal(b.len, 2);
    sy_buf_deinit(&b);
}

/* ---- configuration ----------------------------------------------------------------------- */

#define HEAD "apiVersion: llm-d.ai/v1alpha1\nkind: EndpointPickerConfig\n"
#define PD_PROFILES                                                                                \
    "schedulingProfiles:\n"                                                                        \
    "- name: decode\n  plugins:\n  - pluginRef: decode-filter\n"                                   \
    "- name: prefill\n  plugins:\n  - pluginRef: prefill-filter\n"
#define PD_PLUGINS "plugins:\n- type: decode-filter\n- type: prefill-filter\n"

static gws_sched_t *load_ok(const char *y)
{
    gws_sched_t *s = NULL;
    char err[GWS_ERR_MAX];
    int rc = gws_config_load_text(y, strlen(y), &s, err, sizeof err);
    if (rc != ST_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, ST_OK);
    return s;
}

static void load_err(const char *y, const char *want)
{
    gws_sched_t *s = NULL;
    char err[GWS_ERR_MAX];
    assert_int_not_equal(gws_config_load_text(y, strlen(y), &s, err, sizeof err), ST_OK);
    assert_null(s);
    if (!strstr(err, want))
        fprintf(stderr, "error '%s' lacks '%s'\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_config(void **state)
{
    (void)state;
    gws_pd_config_t pd;
    /* built-in pd */
    gws_sched_t *s = NULL;
    assert_int_equal(gws_config_builtin("pd", &s, NULL, 0), ST_OK);
    assert_true(gws_sched_pd(s, &pd));
    assert_string_equal(pd.decode_profile, "decode");
    assert_string_equal(pd.prefill_profile, "prefill");
    assert_true(pd.threshold == 16);
    assert_int_equal(pd.prefill_timeout_ms, 30000);
    assert_int_equal(pd.policy, GWS_PD_FALLBACK);
    assert_int_equal(pd.prefill_max_retries, 1);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gws_sched_describe(s, &b), ST_OK);
    assert_non_null(strstr(b.data, "pd decode=decode prefill=prefill threshold=16 "
                                   "timeoutMs=30000 policy=fallback maxRetries=1\n"));
    sy_buf_deinit(&b);
    gws_sched_destroy(s);
    /* the aggregated built-ins have P/D off */
    assert_int_equal(gws_config_builtin("default", &s, NULL, 0), ST_OK);
    assert_false(gws_sched_pd(s, &pd));
    gws_sched_destroy(s);

    /* handler parameters */
    s = load_ok(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                                "    decodeProfile: d\n    prefillProfile: p\n"
                                "    nonCachedTokens: 256\n    prefillTimeoutMs: 500\n"
                                "    prefillFailurePolicy: retry\n    prefillMaxRetries: 3\n"
                                "schedulingProfiles:\n"
                                "- name: p\n  plugins:\n  - pluginRef: prefill-filter\n"
                                "- name: d\n  plugins:\n  - pluginRef: decode-filter\n");
    assert_true(gws_sched_pd(s, &pd));
    assert_string_equal(pd.decode_profile, "d");
    assert_string_equal(pd.prefill_profile, "p");
    assert_true(pd.threshold == 256);
    assert_int_equal(pd.prefill_timeout_ms, 500);
    assert_int_equal(pd.policy, GWS_PD_RETRY);
    assert_int_equal(pd.prefill_max_retries, 3);
    gws_sched_destroy(s);

    /* llm-d's older pd-profile-handler: threshold, hashBlockSize accepted */
    s = load_ok(HEAD PD_PLUGINS "- type: pd-profile-handler\n  parameters:\n    threshold: 10\n"
                                "    hashBlockSize: 5\n" PD_PROFILES);
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == 10);
    gws_sched_destroy(s);
    /* nonCachedTokens 0 = never (llm-d) */
    s = load_ok(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                                "    nonCachedTokens: 0\n" PD_PROFILES);
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == UINT64_MAX);
    gws_sched_destroy(s);
    /* a decider overrides the handler's threshold */
    s = load_ok(HEAD PD_PLUGINS "- type: disagg-profile-handler\n"
                                "- type: prefix-based-pd-decider\n  parameters:\n"
                                "    nonCachedTokens: 64\n" PD_PROFILES);
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == 64);
    gws_sched_destroy(s);
    s = load_ok(HEAD PD_PLUGINS "- type: disagg-profile-handler\n"
                                "- type: always-disagg-pd-decider\n" PD_PROFILES);
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == 0);
    gws_sched_destroy(s);
    /* profiles named decode and prefill, no handler: P/D with the defaults */
    s = load_ok(HEAD PD_PLUGINS PD_PROFILES);
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == 16);
    assert_int_equal(pd.policy, GWS_PD_FALLBACK);
    gws_sched_destroy(s);
    /* ... unless a single-profile-handler says otherwise */
    s = load_ok(HEAD PD_PLUGINS "- type: single-profile-handler\n" PD_PROFILES);
    assert_false(gws_sched_pd(s, &pd));
    gws_sched_destroy(s);
    /* llm-d's P/D example shape loads (prefill-header-handler is a no-op) */
    s = load_ok("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
                "plugins:\n- type: prefill-header-handler\n- type: prefix-cache-scorer\n"
                "- type: prefill-filter\n- type: decode-filter\n- type: max-score-picker\n"
                "- type: pd-profile-handler\n  parameters:\n    threshold: 10\n"
                "    hashBlockSize: 5\n"
                "schedulingProfiles:\n"
                "- name: prefill\n  plugins:\n  - pluginRef: prefill-filter\n"
                "  - pluginRef: max-score-picker\n  - pluginRef: prefix-cache-scorer\n"
                "    weight: 50\n"
                "- name: decode\n  plugins:\n  - pluginRef: decode-filter\n"
                "  - pluginRef: max-score-picker\n  - pluginRef: prefix-cache-scorer\n"
                "    weight: 50\n");
    assert_true(gws_sched_pd(s, &pd));
    assert_true(pd.threshold == 10);
    gws_sched_destroy(s);

    /* errors */
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    decodeProfile: nope\n" PD_PROFILES,
             "decodeProfile 'nope' names no profile");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    prefillFailurePolicy: panic\n" PD_PROFILES,
             "prefillFailurePolicy");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    prefillTimeoutMs: 0\n" PD_PROFILES,
             "prefillTimeoutMs");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    prefillMaxRetries: 99\n" PD_PROFILES,
             "prefillMaxRetries");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    nonCachedTokens: -1\n" PD_PROFILES,
             "nonCachedTokens");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    prefillProfile: decode\n" PD_PROFILES,
             "two different profile names");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n  parameters:\n"
                             "    threshold: 3\n" PD_PROFILES,
             "unknown parameter 'threshold'");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n"
                             "- type: pd-profile-handler\n  name: second\n" PD_PROFILES,
             "more than one profile handler");
    load_err(HEAD PD_PLUGINS "- type: prefix-based-pd-decider\n"
                             "- type: always-disagg-pd-decider\n" PD_PROFILES,
             "more than one P/D decider");
    load_err(HEAD PD_PLUGINS "- type: disagg-profile-handler\n" PD_PROFILES
                             "  - pluginRef: disagg-profile-handler\n",
             "is not a filter, scorer or picker");
}

int main(void)
{
    sy_log_set_level(SY_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),       cmocka_unit_test(test_threshold_header),
        cmocka_unit_test(test_prefill_body), cmocka_unit_test(test_response_params),
        cmocka_unit_test(test_decode_body),  cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_note_json),    cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
