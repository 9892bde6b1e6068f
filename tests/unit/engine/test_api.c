/*
 * test_api.c - unit tests of the engine API's request validation (api_parse_gen_request):
 * defaults, every accepted prompt shape, and each class of bad input with its status, error type,
 * parameter and a message naming the problem.
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

#include "common/buf.h"
#include "common/status.h"
#include "engine/api.h"
#include "engine/chat_tmpl.h"
#include "engine/tokenizer.h"

typedef struct fx {
    tok_t *tok;
    api_t *api;
} fx_t;

static const char *k_names[] = {"sim-model", "alias-b"};

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->tok = tok_byte_create();
    api_config_t cfg = {
        .model_names = k_names,
        .n_model_names = 2,
        .max_model_len = 100,
        .kv_capacity_tokens = 1600,
        .enable_prompt_tokens_details = true,
        .tok = f->tok,
        .tmpl = chat_tmpl_find("chatml"),
        .version = "test",
    };
    f->api = api_create(&cfg);
    assert_non_null(f->api);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    api_destroy(f->api);
    tok_destroy(f->tok);
    free(f);
    return 0;
}

static int parse(void **state, api_kind_t kind, const char *body, api_gen_req_t *r, api_err_t *e)
{
    fx_t *f = *state;
    return api_parse_gen_request(f->api, body, strlen(body), kind, r, e);
}

/* Expects a failure with status and param, and that the message contains needle. */
static void expect_err(void **state, api_kind_t kind, const char *body, int status,
                       const char *param, const char *needle)
{
    api_gen_req_t r;
    api_err_t e;
    memset(&e, 0, sizeof e);
    int rc = parse(state, kind, body, &r, &e);
    if (rc == ST_OK) {
        api_gen_req_deinit(&r);
        fail_msg("accepted: %s", body);
    }
    assert_int_equal(e.status, status);
    if (param)
        assert_string_equal(e.param, param);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s' (body %s)", e.msg, needle, body);
    assert_null(r.prompt);
}

static void test_completion_defaults(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    assert_int_equal(parse(state, API_COMPLETION, "{\"prompt\":\"Hello\"}", &r, &e), ST_OK);
    assert_string_equal(r.model, "sim-model");
    assert_int_equal(r.n_prompt, 6); /* BOS + 5 bytes */
    assert_int_equal(r.prompt[0], 256);
    assert_int_equal(r.prompt[1], 'H');
    assert_int_equal(r.sp.max_tokens, 16); /* vLLM's completions default */
    assert_false(r.stream);
    assert_false(r.include_usage);
    assert_true(r.skip_special_tokens);
    assert_true(r.sp.temperature == 1.0f);
    api_gen_req_deinit(&r);
}

static void test_completion_shapes(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    assert_int_equal(parse(state, API_COMPLETION,
                           "{\"model\":\"alias-b\",\"prompt\":[\"ab\"],\"max_tokens\":3}", &r, &e),
                     ST_OK);
    assert_string_equal(r.model, "alias-b");
    assert_int_equal(r.n_prompt, 3);
    assert_int_equal(r.sp.max_tokens, 3);
    api_gen_req_deinit(&r);

    assert_int_equal(parse(state, API_COMPLETION, "{\"prompt\":[5,6,7]}", &r, &e), ST_OK);
    assert_int_equal(r.n_prompt, 3);
    assert_int_equal(r.prompt[2], 7);
    api_gen_req_deinit(&r);

    assert_int_equal(
        parse(state, API_COMPLETION, "{\"prompt\":[[9,8]],\"max_tokens\":4.0}", &r, &e), ST_OK);
    assert_int_equal(r.n_prompt, 2);
    assert_int_equal(r.sp.max_tokens, 4);
    api_gen_req_deinit(&r);

    /* no BOS when add_special_tokens is false */
    assert_int_equal(
        parse(state, API_COMPLETION, "{\"prompt\":\"ab\",\"add_special_tokens\":false}", &r, &e),
        ST_OK);
    assert_int_equal(r.n_prompt, 2);
    api_gen_req_deinit(&r);
}

static void test_stream_options(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    assert_int_equal(parse(state, API_COMPLETION,
                           "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":{}}", &r, &e),
                     ST_OK);
    assert_true(r.stream);
    assert_true(r.include_usage); /* defaults to true when the object is present */
    api_gen_req_deinit(&r);
    assert_int_equal(parse(state, API_COMPLETION,
                           "{\"prompt\":\"a\",\"stream\":true,\"stream_options\":"
                           "{\"include_usage\":false,\"continuous_usage_stats\":true}}",
                           &r, &e),
                     ST_OK);
    assert_false(r.include_usage);
    assert_true(r.continuous_usage);
    api_gen_req_deinit(&r);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":{}}", 400,
               "stream_options", "stream=True");
}

static void test_sampling_fields(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    assert_int_equal(parse(state, API_COMPLETION,
                           "{\"prompt\":\"a\",\"temperature\":0,\"seed\":42,\"top_k\":-1,"
                           "\"min_tokens\":2,\"max_tokens\":5,\"ignore_eos\":true,"
                           "\"stop\":[\"x\",\"yz\"],\"stop_token_ids\":[7],\"cache_salt\":\"s\"}",
                           &r, &e),
                     ST_OK);
    assert_true(r.sp.temperature == 0.0f);
    assert_true(r.sp.has_seed);
    assert_int_equal(r.sp.seed, 42);
    assert_int_equal(r.sp.min_tokens, 2);
    assert_true(r.sp.ignore_eos);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "yz");
    assert_int_equal(r.n_stop_ids, 1);
    assert_string_equal(r.cache_salt, "s");
    api_gen_req_deinit(&r);
    assert_int_equal(parse(state, API_COMPLETION, "{\"prompt\":\"a\",\"stop\":\"\\n\"}", &r, &e),
                     ST_OK);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    api_gen_req_deinit(&r);
}

static void test_max_tokens_and_context(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    /* larger than the remaining context (100 - 3) but within the context: clamped */
    assert_int_equal(parse(state, API_COMPLETION, "{\"prompt\":\"ab\",\"max_tokens\":99}", &r, &e),
                     ST_OK);
    assert_int_equal(r.sp.max_tokens, 97);
    api_gen_req_deinit(&r);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "max_tokens",
               "at least 1");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":-5}", 400, "max_tokens",
               "-5");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":1000000}", 400,
               "max_tokens", "maximum context length is 100");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":1e300}", 400, "max_tokens",
               "integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", 400, "max_tokens",
               "integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":2.5}", 400, "max_tokens",
               "integer");
    char big[300];
    memset(big, 'x', sizeof big);
    char body[400];
    snprintf(body, sizeof body, "{\"prompt\":\"%.*s\"}", 150, big);
    expect_err(state, API_COMPLETION, body, 400, "prompt", "151 input tokens");
    /* chat: default max_tokens is the rest of the context */
    assert_int_equal(
        parse(state, API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e),
        ST_OK);
    assert_int_equal(r.sp.max_tokens, 100 - r.n_prompt);
    api_gen_req_deinit(&r);
    assert_int_equal(parse(state, API_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                           "\"max_tokens\":9,\"max_completion_tokens\":4}",
                           &r, &e),
                     ST_OK);
    assert_int_equal(r.sp.max_tokens, 4);
    api_gen_req_deinit(&r);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"min_tokens\":9,\"max_tokens\":3}", 400,
               "min_tokens", "less than or equal");
}

static void test_chat_render(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    fx_t *f = *state;
    assert_int_equal(parse(state, API_CHAT,
                           "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                           "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Q\"}]}],"
                           "\"max_tokens\":2}",
                           &r, &e),
                     ST_OK);
    sy_buf_t text = SY_BUF_INIT;
    assert_int_equal(tok_decode(f->tok, r.prompt, r.n_prompt, false, &text), ST_OK);
    assert_string_equal(text.data, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>"
                                   "\n<|im_start|>assistant\n");
    assert_int_equal(r.prompt[0], 258); /* <|im_start|> parsed as a special token */
    sy_buf_deinit(&text);
    api_gen_req_deinit(&r);
}

static void test_bad_inputs(void **state)
{
    expect_err(state, API_COMPLETION, "{\"prompt\":", 400, NULL, "Invalid JSON");
    expect_err(state, API_COMPLETION, "[1,2]", 400, NULL, "JSON object");
    expect_err(state, API_COMPLETION, "{}", 400, "prompt", "'prompt'");
    expect_err(state, API_COMPLETION, "{\"prompt\":5}", 400, "prompt", "got integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":[]}", 400, "prompt", "empty");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"\"}", 400, "prompt", "empty");
    expect_err(state, API_COMPLETION, "{\"prompt\":[\"\"]}", 400, "prompt", "empty");
    expect_err(state, API_COMPLETION, "{\"prompt\":[1,\"a\"]}", 400, "prompt", "integers");
    expect_err(state, API_COMPLETION, "{\"prompt\":[1,99999]}", 400, "prompt", "vocabulary");
    expect_err(state, API_COMPLETION, "{\"prompt\":[-1]}", 400, "prompt", "vocabulary");
    expect_err(state, API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 501, "prompt", "2 prompts");
    expect_err(state, API_COMPLETION, "{\"model\":\"gpt-4\",\"prompt\":\"a\"}", 404, "model",
               "The model `gpt-4` does not exist.");
    expect_err(state, API_COMPLETION, "{\"model\":7,\"prompt\":\"a\"}", 400, "model", "string");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"stream\":\"yes\"}", 400, "stream",
               "boolean");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"temperature\":-0.5}", 400, "temperature",
               "non-negative");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"top_p\":1.5}", 400, "top_p", "(0, 1]");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"n\":3}", 501, "n", "n > 1");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"n\":0}", 400, "n", "at least 1");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"stop\":[1]}", 400, "stop", "strings");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"prompt_logprobs\":1}", 501,
               "prompt_logprobs", "prompt_logprobs");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"cache_salt\":\"\"}", 400, "cache_salt",
               "1 to");
    expect_err(state, API_CHAT, "{}", 400, "messages", "required");
    expect_err(state, API_CHAT, "{\"messages\":[]}", 400, "messages", "at least one");
    expect_err(state, API_CHAT, "{\"messages\":[1]}", 400, "messages", "object");
    expect_err(state, API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages", "role");
    expect_err(state, API_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
               "messages", "image_url");
    /* invalid UTF-8 in the body */
    expect_err(state, API_COMPLETION, "{\"prompt\":\"\xff\xfe\"}", 400, NULL, "UTF-8");
}

/* skip_token_checks (the gateway with --tokenizer none): no tokenizer or template; text prompts
 * are not tokenized and not length-checked, token-id prompts skip the vocabulary check only, and
 * every other check stays. api_load_body + api_parse_gen_json give the same result as
 * api_parse_gen_request. */
/* An API over the byte tokenizer (vocab 260) with the given logprobs settings. */
static int setup_lp(void **state, bool no_logprobs, bool set, int32_t max_lp)
{
    fx_t *f = calloc(1, sizeof *f);
    f->tok = tok_byte_create();
    api_config_t cfg = {
        .model_names = k_names,
        .n_model_names = 2,
        .max_model_len = 100,
        .kv_capacity_tokens = 1600,
        .tok = f->tok,
        .tmpl = chat_tmpl_find("chatml"),
        .version = "test",
        .max_logprobs = max_lp,
        .max_logprobs_set = set,
        .no_logprobs = no_logprobs,
    };
    f->api = api_create(&cfg);
    assert_non_null(f->api);
    *state = f;
    return 0;
}

static int setup_sim(void **state)
{
    return setup_lp(state, true, false, 0);
}

static int setup_vocab_lp(void **state)
{
    return setup_lp(state, false, true, -1);
}

/* Parses body (expected valid) and checks the logprobs fields. */
static void expect_lp(void **state, api_kind_t kind, const char *body, bool want, uint32_t n,
                      int32_t top)
{
    api_gen_req_t r;
    api_err_t e;
    memset(&e, 0, sizeof e);
    if (parse(state, kind, body, &r, &e) != ST_OK)
        fail_msg("refused (%s): %s", e.msg, body);
    assert_int_equal(r.sp.logprobs, want);
    if (want) {
        assert_int_equal(r.sp.n_logprobs, n);
        assert_int_equal(r.top_logprobs, top);
    }
    api_gen_req_deinit(&r);
}

static void test_logprobs_validation(void **state)
{
    /* completions: logprobs is an int, 0..20 by default (vLLM's --max-logprobs) */
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":2}", true, 2, 2);
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":0}", true, 0, 0);
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":20}", true, 20, 20);
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":null}", false, 0, 0);
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\"}", false, 0, 0);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":21}", 400, "logprobs",
               "Requested sample logprobs of 21, which is greater than max allowed: 20");
    /* -1 = the whole vocabulary (260 byte-tokenizer ids), more than 20 */
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":-1}", 400, "logprobs",
               "Requested sample logprobs of 260, which is greater than max allowed: 20");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":-2}", 400, "logprobs",
               "`logprobs` must be a positive value or -1.");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":\"3\"}", 400, "logprobs",
               "must be an integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":true}", 400, "logprobs",
               "must be an integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":1.5}", 400, "logprobs",
               "must be an integer");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":1,\"echo\":true}", 501,
               "echo", "prompt_logprobs");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"prompt_logprobs\":1,\"stream\":true}",
               400, "prompt_logprobs", "`prompt_logprobs` are not available when `stream=True`.");
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"prompt_logprobs\":-3}", 400,
               "prompt_logprobs", "`prompt_logprobs` must be a positive value or -1.");

    /* chat: logprobs is a bool, top_logprobs an int that needs logprobs: true */
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char body[256];
    snprintf(body, sizeof body, "{%s,\"logprobs\":true,\"top_logprobs\":3}", m);
    expect_lp(state, API_CHAT, body, true, 3, 3);
    snprintf(body, sizeof body, "{%s,\"logprobs\":true}", m);
    expect_lp(state, API_CHAT, body, true, 0, 0);
    snprintf(body, sizeof body, "{%s,\"logprobs\":true,\"top_logprobs\":null}", m);
    expect_lp(state, API_CHAT, body, false, 0, 0); /* vLLM: logprobs=None, "logprobs": null */
    snprintf(body, sizeof body, "{%s,\"logprobs\":false,\"top_logprobs\":0}", m);
    expect_lp(state, API_CHAT, body, false, 0, 0);
    snprintf(body, sizeof body, "{%s,\"top_logprobs\":3}", m);
    expect_err(state, API_CHAT, body, 400, "top_logprobs",
               "when using `top_logprobs`, `logprobs` must be set to true.");
    snprintf(body, sizeof body, "{%s,\"logprobs\":false,\"top_logprobs\":-1}", m);
    expect_err(state, API_CHAT, body, 400, "top_logprobs",
               "when using `top_logprobs`, `logprobs` must be set to true.");
    snprintf(body, sizeof body, "{%s,\"logprobs\":true,\"top_logprobs\":-5}", m);
    expect_err(state, API_CHAT, body, 400, "top_logprobs",
               "`top_logprobs` must be a positive value or -1.");
    snprintf(body, sizeof body, "{%s,\"logprobs\":true,\"top_logprobs\":21}", m);
    expect_err(state, API_CHAT, body, 400, "logprobs",
               "Requested sample logprobs of 21, which is greater than max allowed: 20");
    snprintf(body, sizeof body, "{%s,\"logprobs\":1}", m);
    expect_err(state, API_CHAT, body, 400, "logprobs", "must be a boolean");
    snprintf(body, sizeof body, "{%s,\"logprobs\":true,\"top_logprobs\":\"2\"}", m);
    expect_err(state, API_CHAT, body, 400, "top_logprobs", "must be an integer");
}

static void test_logprobs_whole_vocab(void **state)
{
    /* --max-logprobs -1: a request's -1 is the whole vocabulary */
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":-1}", true, 260, -1);
    expect_lp(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":260}", true, 260, 260);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":261}", 400, "logprobs",
               "Requested sample logprobs of 261, which is greater than max allowed: 260");
    const char *b = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true,"
                    "\"top_logprobs\":-1}";
    expect_lp(state, API_CHAT, b, true, 260, -1);
}

static void test_logprobs_sim(void **state)
{
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":1}", 501, "logprobs",
               "start the engine with --model FILE.gguf");
    expect_err(state, API_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":true}", 501,
               "logprobs", "--model");
    /* no logprobs asked: fine */
    expect_lp(state, API_CHAT,
              "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":false}", false,
              0, 0);
}

static void test_penalties_carried(void **state)
{
    api_gen_req_t r;
    api_err_t e;
    assert_int_equal(parse(state, API_COMPLETION,
                           "{\"prompt\":\"a\",\"presence_penalty\":0.5,"
                           "\"frequency_penalty\":-1.25,\"repetition_penalty\":1.3}",
                           &r, &e),
                     ST_OK);
    assert_true(r.sp.presence_penalty == 0.5f);
    assert_true(r.sp.frequency_penalty == -1.25f);
    assert_true(r.sp.repetition_penalty == 1.3f);
    api_gen_req_deinit(&r);
    assert_int_equal(parse(state, API_COMPLETION, "{\"prompt\":\"a\"}", &r, &e), ST_OK);
    assert_true(r.sp.presence_penalty == 0.0f);
    assert_true(r.sp.frequency_penalty == 0.0f);
    assert_true(r.sp.repetition_penalty == 1.0f);
    api_gen_req_deinit(&r);
    expect_err(state, API_COMPLETION, "{\"prompt\":\"a\",\"frequency_penalty\":2.5}", 400,
               "frequency_penalty", "[-2, 2]");
}

static void test_skip_token_checks(void **state)
{
    (void)state;
    api_config_t cfg = {
        .model_names = k_names,
        .n_model_names = 1,
        .max_model_len = 100,
        .skip_token_checks = true,
    };
    api_t *a = api_create(&cfg);
    assert_non_null(a);
    api_gen_req_t r;
    api_err_t e;
    char longp[400];
    memset(longp, 'x', sizeof longp);
    char body[600];
    snprintf(body, sizeof body, "{\"prompt\":\"%.*s\",\"max_tokens\":100}", 300, longp);
    assert_int_equal(api_parse_gen_request(a, body, strlen(body), API_COMPLETION, &r, &e), ST_OK);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt, 0);
    assert_int_equal(r.sp.max_tokens, 100);
    api_gen_req_deinit(&r);
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(api_parse_gen_request(a, chat, strlen(chat), API_CHAT, &r, &e), ST_OK);
    assert_null(r.prompt);
    assert_int_equal(r.sp.max_tokens, 100); /* chat default: the whole context */
    api_gen_req_deinit(&r);
    /* token ids: any non-negative id, but the context limit holds */
    const char *ids = "{\"prompt\":[5,900000],\"max_tokens\":3}";
    assert_int_equal(api_parse_gen_request(a, ids, strlen(ids), API_COMPLETION, &r, &e), ST_OK);
    assert_int_equal(r.n_prompt, 2);
    assert_int_equal(r.prompt[1], 900000);
    api_gen_req_deinit(&r);
    struct {
        api_kind_t kind;
        const char *body;
        int status;
        const char *needle;
    } bad[] = {
        {API_COMPLETION, "{\"prompt\":[-1]}", 400, "out of vocabulary"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", 400, "at least 1"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":101}", 400, "context length"},
        {API_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":{}}", 400, "stream=True"},
        {API_COMPLETION, "{\"model\":\"nope\",\"prompt\":\"a\"}", 404, "`nope` does not"},
        {API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "role"},
        {API_COMPLETION, "{\"prompt\":\"\"}", 400, "must not be empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = api_parse_gen_request(a, bad[i].body, strlen(bad[i].body), bad[i].kind, &r, &e);
        if (rc == ST_OK)
            fail_msg("accepted: %s", bad[i].body);
        assert_int_equal(e.status, bad[i].status);
        if (!strstr(e.msg, bad[i].needle))
            fail_msg("message '%s' lacks '%s'", e.msg, bad[i].needle);
    }
    /* a token-id prompt as long as the context is refused */
    sy_buf_t b = SY_BUF_INIT;
    sy_buf_append_str(&b, "{\"prompt\":[");
    for (int i = 0; i < 100; i++)
        sy_buf_append_str(&b, i ? ",1" : "1");
    sy_buf_append_str(&b, "]}");
    memset(&e, 0, sizeof e);
    assert_int_not_equal(api_parse_gen_request(a, b.data, b.len, API_COMPLETION, &r, &e), ST_OK);
    assert_non_null(strstr(e.msg, "maximum context length"));
    sy_buf_deinit(&b);

    /* the two halves */
    json_t *root = NULL;
    assert_int_equal(api_load_body("[1]", 3, &root, &e), ST_INVAL);
    assert_null(root);
    assert_non_null(strstr(e.msg, "must be a JSON object"));
    assert_int_equal(api_load_body("{\"prompt\"", 10, &root, &e), ST_INVAL);
    assert_non_null(strstr(e.msg, "Invalid JSON"));
    assert_int_equal(api_load_body(ids, strlen(ids), &root, &e), ST_OK);
    assert_int_equal(api_parse_gen_json(a, root, API_COMPLETION, &r, &e), ST_OK);
    assert_int_equal(r.n_prompt, 2);
    api_gen_req_deinit(&r);
    assert_int_equal(json_object_size(root), 2); /* borrowed, untouched */
    json_decref(root);
    api_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_completion_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sampling_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_tokens_and_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_render, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
        cmocka_unit_test(test_skip_token_checks),
        cmocka_unit_test_setup_teardown(test_logprobs_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logprobs_whole_vocab, setup_vocab_lp, teardown),
        cmocka_unit_test_setup_teardown(test_logprobs_sim, setup_sim, teardown),
        cmocka_unit_test_setup_teardown(test_penalties_carried, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
