/*
 * test_api_logprobs.c - the engine API's logprobs formatting (api.c's statics, reached by
 * including the .c): vLLM's token strings (pieces decoded alone, byte-fallback pieces completed
 * from the previous sampled tokens), the -9999.0 clamp and float rendering, and the completions
 * and chat logprobs objects built from core deltas (dict dedup by string, sampled entry first,
 * text_offset in characters, bytes lists), in full responses and split over stream chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/api.c"

typedef struct fx {
    tok_t *tok;
    api_t *api;
} fx_t;

static const char *k_names[] = {"m"};

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->tok = tok_byte_create();
    api_config_t cfg = {
        .model_names = k_names,
        .n_model_names = 1,
        .max_model_len = 100,
        .kv_capacity_tokens = 1600,
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

/* token_text of id after the sampled ids ctx[0..n), as a C string in a static buffer. */
static const char *tt(void **state, const int32_t *ctx, uint32_t n, int32_t id)
{
    fx_t *f = *state;
    static sy_buf_t b;
    sy_buf_reset(&b);
    assert_int_equal(token_text(f->api, ctx, n, id, &b), ST_OK);
    sy_buf_append_char(&b, '\0');
    return b.data;
}

static void test_token_strings(void **state)
{
    /* plain bytes and specials (rendered, not skipped) */
    assert_string_equal(tt(state, NULL, 0, 'a'), "a");
    assert_string_equal(tt(state, NULL, 0, ' '), " ");
    assert_string_equal(tt(state, NULL, 0, 257), "</s>");
    /* U+4E2D = E4 B8 AD in three byte tokens: "" until the last completes the character */
    const int32_t c1[] = {'X'}, c2[] = {'X', 0xE4}, c3[] = {'X', 0xE4, 0xB8};
    assert_string_equal(tt(state, c1, 1, 0xE4), "");
    assert_string_equal(tt(state, c2, 2, 0xB8), "");
    assert_string_equal(tt(state, c3, 3, 0xAD), "\xE4\xB8\xAD");
    /* without the context the lone byte stays incomplete: "" */
    assert_string_equal(tt(state, NULL, 0, 0xAD), "");
    /* a clean context token is not repeated */
    const int32_t c4[] = {'a', 'b', 0xC3};
    assert_string_equal(tt(state, c4, 3, 0xB6), "\xC3\xB6");
    /* only 4 tokens of context are looked at: a 4-byte character still completes */
    const int32_t c5[] = {'z', 0xF0, 0x9F, 0x98};
    assert_string_equal(tt(state, c5, 4, 0x80), "\xF0\x9F\x98\x80");
    /* an invalid byte that cannot be completed by context: "" (it ends in U+FFFD) */
    assert_string_equal(tt(state, c1, 1, 0xFF), "");
}

static const char *lp_str(float v)
{
    static sy_buf_t b;
    sy_buf_reset(&b);
    put_logprob(&b, v);
    sy_buf_append_char(&b, '\0');
    return b.data;
}

static void test_logprob_numbers(void **state)
{
    (void)state;
    assert_string_equal(lp_str(-INFINITY), "-9999.0");
    assert_string_equal(lp_str(-1e6f), "-9999.0");
    assert_string_equal(lp_str(-3.0f), "-3.0");
    assert_string_equal(lp_str(-0.5f), "-0.5");
    /* float32 values print as the shortest double that reads back (Python's repr) */
    assert_string_equal(lp_str(-0.1f), "-0.10000000149011612");
    assert_string_equal(lp_str(-1.5e-5f), "-1.4999999621068127e-05");
    assert_string_equal(lp_str(0.0f), "0.0");
}

/* A delta of n tokens with one logprob and a top list each (stride 3). */
typedef struct fake {
    int32_t ids[8];
    float lp[8];
    exec_logprob_t top[8 * 3];
    uint32_t n_top[8];
    ecore_delta_t d;
} fake_t;

static void fake_init(fake_t *f, const int32_t *ids, uint32_t n, uint32_t n_top)
{
    memset(f, 0, sizeof *f);
    for (uint32_t i = 0; i < n; i++) {
        f->ids[i] = ids[i];
        f->lp[i] = -(float)(i + 1) * 0.5f;
        f->n_top[i] = n_top;
        for (uint32_t k = 0; k < n_top; k++)
            f->top[i * 3 + k] = (exec_logprob_t){.token = k == 0 ? 'x' : 'y' + (int32_t)k,
                                                 .logprob = -0.25f * (float)(k + 1)};
    }
    f->d.token_ids = f->ids;
    f->d.n_tokens = n;
    f->d.logprobs = f->lp;
    f->d.top_logprobs = f->top;
    f->d.n_top = f->n_top;
    f->d.top_stride = 3;
}

/* Formats the logprobs object of d for an exchange of kind and returns it parsed. */
static json_t *format(void **state, api_xchg_t *x, const ecore_delta_t *d)
{
    fx_t *f = *state;
    sy_buf_t j[4] = {SY_BUF_INIT, SY_BUF_INIT, SY_BUF_INIT, SY_BUF_INIT};
    assert_int_equal(put_logprobs_items(f->api, x, d, j), ST_OK);
    sy_buf_t out = SY_BUF_INIT;
    put_logprobs_obj(&out, x, j);
    json_error_t e;
    json_t *v = json_loadb(out.data, out.len, 0, &e);
    if (!v)
        fail_msg("bad JSON (%s): %.*s", e.text, (int)out.len, out.data);
    for (int i = 0; i < 4; i++)
        sy_buf_deinit(&j[i]);
    sy_buf_deinit(&out);
    return v;
}

static void test_completion_object(void **state)
{
    api_xchg_t x = {.kind = API_COMPLETION, .lp = true, .lp_n = 2};
    /* tokens "a", "\xC3", "\xB6" (one character in two byte tokens), "x" */
    const int32_t ids[] = {'a', 0xC3, 0xB6, 'x'};
    fake_t f;
    fake_init(&f, ids, 4, 2);
    json_t *v = format(state, &x, &f.d);
    /* tokens: the first byte of the character is "", the second carries it */
    json_t *toks = json_object_get(v, "tokens");
    assert_int_equal(json_array_size(toks), 4);
    assert_string_equal(json_string_value(json_array_get(toks, 0)), "a");
    assert_string_equal(json_string_value(json_array_get(toks, 1)), "");
    assert_string_equal(json_string_value(json_array_get(toks, 2)), "\xC3\xB6");
    /* text_offset: cumulative characters of the token strings, from 0 */
    json_t *off = json_object_get(v, "text_offset");
    const int64_t want_off[] = {0, 1, 1, 2};
    for (int i = 0; i < 4; i++)
        assert_int_equal(json_integer_value(json_array_get(off, i)), want_off[i]);
    json_t *tl = json_object_get(v, "token_logprobs");
    assert_true(json_real_value(json_array_get(tl, 1)) == -1.0);
    /* top dicts: sampled first, then the top entries ("x", "z"): 3 keys for "a", 2 for "x"
     * (the sampled "x" and the top "x" share a key, keeping the later value) */
    json_t *top = json_object_get(v, "top_logprobs");
    json_t *t0 = json_array_get(top, 0);
    assert_int_equal(json_object_size(t0), 3);
    assert_true(json_real_value(json_object_get(t0, "a")) == -0.5);
    assert_true(json_real_value(json_object_get(t0, "x")) == -0.25);
    assert_true(json_real_value(json_object_get(t0, "z")) == -0.5);
    json_t *t3 = json_array_get(top, 3);
    assert_int_equal(json_object_size(t3), 2);
    assert_true(json_real_value(json_object_get(t3, "x")) == -0.25);
    json_decref(v);

    /* streaming: a second chunk continues the context and starts at the given offset */
    api_xchg_t y = {.kind = API_COMPLETION, .lp = true, .lp_n = 0};
    fake_t g1, g2;
    const int32_t a1[] = {'q', 0xE4, 0xB8}, a2[] = {0xAD, 'r'};
    fake_init(&g1, a1, 3, 0);
    fake_init(&g2, a2, 2, 0);
    json_t *v1 = format(state, &y, &g1.d);
    y.lp_off = 1; /* the text streamed so far: "q" */
    json_t *v2 = format(state, &y, &g2.d);
    json_t *tk2 = json_object_get(v2, "tokens");
    assert_string_equal(json_string_value(json_array_get(tk2, 0)), "\xE4\xB8\xAD");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(v2, "text_offset"), 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(v2, "text_offset"), 1)), 2);
    /* logprobs=0: each dict holds the sampled token only */
    assert_int_equal(json_object_size(json_array_get(json_object_get(v1, "top_logprobs"), 0)), 1);
    json_decref(v1);
    json_decref(v2);
}

static void test_chat_object(void **state)
{
    api_xchg_t x = {.kind = API_CHAT, .lp = true, .lp_n = 2};
    const int32_t ids[] = {'x', 0xC3, 0xB6, 257};
    fake_t f;
    fake_init(&f, ids, 4, 3);
    json_t *v = format(state, &x, &f.d);
    json_t *c = json_object_get(v, "content");
    assert_int_equal(json_array_size(c), 4);
    json_t *e0 = json_array_get(c, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "token")), "x");
    assert_true(json_real_value(json_object_get(e0, "logprob")) == -0.5);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(e0, "bytes"), 0)), 'x');
    /* top_logprobs: the first 2 of sampled-then-top by id; "x" is both, so: x, z */
    json_t *tl = json_object_get(e0, "top_logprobs");
    assert_int_equal(json_array_size(tl), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tl, 0), "token")), "x");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tl, 1), "token")), "z");
    /* a sampled token outside the top list comes first, then the top ones */
    json_t *e1 = json_array_get(c, 1);
    assert_string_equal(json_string_value(json_object_get(e1, "token")), "");
    assert_int_equal(json_array_size(json_object_get(e1, "bytes")), 0);
    json_t *tl1 = json_object_get(e1, "top_logprobs");
    assert_int_equal(json_array_size(tl1), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tl1, 0), "token")), "");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tl1, 1), "token")), "x");
    json_t *e2 = json_array_get(c, 2);
    assert_string_equal(json_string_value(json_object_get(e2, "token")), "\xC3\xB6");
    json_t *b2 = json_object_get(e2, "bytes");
    assert_int_equal(json_array_size(b2), 2);
    assert_int_equal(json_integer_value(json_array_get(b2, 0)), 0xC3);
    assert_int_equal(json_integer_value(json_array_get(b2, 1)), 0xB6);
    /* the EOS token renders as its text */
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 3), "token")), "</s>");
    json_decref(v);

    /* top_logprobs 0: empty lists; -1: everything, sampled first */
    api_xchg_t y = {.kind = API_CHAT, .lp = true, .lp_n = 0};
    fake_init(&f, ids, 1, 3);
    v = format(state, &y, &f.d);
    e0 = json_array_get(json_object_get(v, "content"), 0);
    assert_int_equal(json_array_size(json_object_get(e0, "top_logprobs")), 0);
    json_decref(v);
    api_xchg_t z = {.kind = API_CHAT, .lp = true, .lp_n = -1};
    const int32_t w[] = {'w'};
    fake_init(&f, w, 1, 3);
    v = format(state, &z, &f.d);
    e0 = json_array_get(json_object_get(v, "content"), 0);
    assert_int_equal(json_array_size(json_object_get(e0, "top_logprobs")), 4);
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_strings, setup, teardown),
        cmocka_unit_test(test_logprob_numbers),
        cmocka_unit_test_setup_teardown(test_completion_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_object, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
