/*
 * test_sb_workload.c - unit tests of the bench's workloads (sb_workload.h) with the built-in
 * (sim engine) tokenizer: random prompts re-tokenize to exactly input_len tokens (BOS included),
 * token-id prompts, shared-prefix groups share an identical prefix and the order is a seeded
 * shuffle, the same seed gives the same requests and another seed others, length distributions
 * stay in their bounds, multi-turn sessions carry their history and hand out a session's next turn
 * only after the previous one finished, trace files (timestamps, prefix groups, prompts, errors),
 * and request bodies; with real GGUF vocabularies (SentencePiece and GPT-2 BPE, from
 * shared/models/vocab) random and shared-prefix text prompts re-tokenize to exactly their length.
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench/sb_workload.h"
#include "common/buf.h"
#include "common/status.h"
#include "engine/gguf.h"
#include "engine/tok_gguf.h"
#include "engine/tokenizer.h"
#include "../models_testutil.h"

static tok_t *g_tok;

static int setup(void **state)
{
    (void)state;
    g_tok = tok_byte_create();
    return g_tok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tok_destroy(g_tok);
    return 0;
}

static sb_workload_t *make(sb_wl_cfg_t *c)
{
    c->tok = g_tok;
    sb_workload_t *w = NULL;
    char err[256] = "";
    int rc = sb_wl_create(c, &w, err, sizeof err);
    if (rc != ST_OK)
        fprintf(stderr, "sb_wl_create: %s\n", err);
    assert_int_equal(rc, ST_OK);
    return w;
}

static size_t count(const char *text, size_t len)
{
    int32_t ids[70000];
    size_t n = 0;
    assert_int_equal(tok_encode(g_tok, text, len, true, false, ids, 70000, &n), ST_OK);
    return n;
}

static void test_random_exact(void **state)
{
    (void)state;
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.seed = 7;
    c.input_len = (sb_len_dist_t){.kind = SB_LEN_UNIFORM, .min = 1, .max = 3000};
    c.output_len = sb_len_fixed(33);
    sb_workload_t *w = make(&c);
    for (int i = 0; i < 200; i++) {
        sb_spec_t *s = sb_wl_next(w);
        assert_non_null(s);
        assert_true(s->input_len >= 1 && s->input_len <= 3000);
        assert_int_equal(s->output_len, 33);
        /* the server's count (BOS + one token per byte) equals the intended length; a 1-token
         * request cannot be built (BOS + at least one text token) */
        size_t want = s->input_len < 2 ? 2 : s->input_len;
        assert_int_equal(count(s->prompt, s->prompt_len), want);
        assert_int_equal(s->actual_input_len, want);
        assert_int_equal(strlen(s->prompt), s->prompt_len);
        sb_wl_done(w, s, true, NULL, 0);
        sb_spec_free(s);
    }
    sb_wl_destroy(w);
}

static void test_token_prompts_and_body(void **state)
{
    (void)state;
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.token_prompts = true;
    c.input_len = sb_len_fixed(64);
    c.output_len = sb_len_fixed(8);
    c.extra_body = "\"temperature\":0";
    sb_workload_t *w = make(&c);
    sb_spec_t *s = sb_wl_next(w);
    assert_non_null(s);
    assert_null(s->prompt);
    assert_int_equal(s->n_ids, 64);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sb_wl_body(w, s, "m\"x", &b), ST_OK);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m\"x");
    assert_int_equal(json_array_size(json_object_get(j, "prompt")), 64);
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 8);
    assert_true(json_is_true(json_object_get(j, "ignore_eos")));
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    assert_int_equal(json_integer_value(json_object_get(j, "temperature")), 0);
    json_decref(j);
    sy_buf_deinit(&b);
    sb_spec_free(s);
    sb_wl_destroy(w);
    /* token prompts need the completions API */
    c.chat = true;
    c.tok = g_tok;
    sb_workload_t *w2 = NULL;
    char err[128];
    assert_int_equal(sb_wl_create(&c, &w2, err, sizeof err), ST_INVAL);
    assert_null(w2);
}

static void test_shared_prefix(void **state)
{
    (void)state;
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.kind = SB_WL_SHARED_PREFIX;
    c.seed = 42;
    c.groups = 4;
    c.prompts_per_group = 5;
    c.system_len = sb_len_fixed(100);
    c.question_len = sb_len_fixed(50);
    c.output_len = sb_len_fixed(20);
    sb_workload_t *w = make(&c);
    char *prefix[4] = {0};
    int per_group[4] = {0};
    int32_t order[20];
    for (int i = 0; i < 20; i++) {
        sb_spec_t *s = sb_wl_next(w);
        assert_non_null(s);
        assert_true(s->group >= 0 && s->group < 4);
        order[i] = s->group;
        per_group[s->group]++;
        assert_int_equal(s->input_len, 150);
        /* 100 prefix tokens = BOS + 99 bytes, then 50 question bytes */
        assert_int_equal(s->prompt_len, 149);
        assert_int_equal(count(s->prompt, s->prompt_len), 150);
        if (!prefix[s->group])
            prefix[s->group] = strndup(s->prompt, 99);
        else
            assert_memory_equal(prefix[s->group], s->prompt, 99);
        sb_spec_free(s);
    }
    for (int g = 0; g < 4; g++) {
        assert_int_equal(per_group[g], 5);
        for (int h = g + 1; h < 4; h++)
            assert_true(memcmp(prefix[g], prefix[h], 99) != 0);
        free(prefix[g]);
    }
    /* shuffled: not all of one group first */
    bool sorted = true;
    for (int i = 1; i < 20; i++)
        if (order[i] < order[i - 1])
            sorted = false;
    assert_false(sorted);
    /* the pool cycles */
    sb_spec_t *s = sb_wl_next(w);
    assert_int_equal(s->group, order[0]);
    sb_spec_free(s);
    sb_wl_destroy(w);
}

static void test_seeded(void **state)
{
    (void)state;
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.kind = SB_WL_SHARED_PREFIX;
    c.seed = 5;
    c.groups = 3;
    c.prompts_per_group = 3;
    c.question_len = (sb_len_dist_t){.kind = SB_LEN_NORMAL, .mean = 40, .stddev = 10, .min = 1};
    sb_workload_t *a = make(&c), *b = make(&c);
    c.seed = 6;
    sb_workload_t *d = make(&c);
    bool differ = false;
    for (int i = 0; i < 9; i++) {
        sb_spec_t *x = sb_wl_next(a), *y = sb_wl_next(b), *z = sb_wl_next(d);
        assert_int_equal(x->prompt_len, y->prompt_len);
        assert_memory_equal(x->prompt, y->prompt, x->prompt_len);
        assert_int_equal(x->group, y->group);
        if (x->prompt_len != z->prompt_len || memcmp(x->prompt, z->prompt, x->prompt_len))
            differ = true;
        sb_spec_free(x);
        sb_spec_free(y);
        sb_spec_free(z);
    }
    assert_true(differ);
    sb_wl_destroy(a);
    sb_wl_destroy(b);
    sb_wl_destroy(d);
}

static void test_len_dists(void **state)
{
    (void)state;
    sb_rng_t r = {1};
    sb_len_dist_t d[] = {
        {.kind = SB_LEN_NORMAL, .mean = 100, .stddev = 30, .min = 10, .max = 150},
        {.kind = SB_LEN_UNIFORM, .min = 5, .max = 9},
        {.kind = SB_LEN_LOGNORMAL, .mean = 150, .stddev = 60, .min = 1, .max = 4096},
        {.kind = SB_LEN_SKEW_NORMAL,
         .mean = 200,
         .stddev = 80,
         .skew = 2.5,
         .min = 10,
         .max = 2000},
    };
    for (size_t k = 0; k < sizeof d / sizeof d[0]; k++) {
        double sum = 0;
        for (int i = 0; i < 20000; i++) {
            uint32_t v = sb_len_sample(&d[k], &r);
            assert_true(v >= d[k].min && v <= d[k].max);
            sum += v;
        }
        double mean = sum / 20000;
        if (d[k].kind == SB_LEN_UNIFORM)
            assert_float_equal(mean, 7.0, 0.1);
        else if (d[k].kind != SB_LEN_NORMAL) /* clipping moves the clipped normal's mean */
            assert_float_equal(mean, d[k].mean, d[k].mean * 0.05);
    }
    sb_len_dist_t f = sb_len_fixed(17);
    assert_int_equal(sb_len_sample(&f, &r), 17);
}

static void test_multi_turn(void **state)
{
    (void)state;
    char path[] = "/tmp/sb_questions_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *q =
        "{\"question_id\": 1, \"turns\": [\"first question\", \"second \\\"one\\\"\"]}\n"
        "{\"question_id\": 2, \"turns\": [\"other\"]}\n";
    assert_int_equal(write(fd, q, strlen(q)), (ssize_t)strlen(q));
    close(fd);
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.kind = SB_WL_MULTI_TURN;
    c.chat = true;
    c.questions_path = path;
    c.output_len = sb_len_fixed(4);
    sb_workload_t *w = make(&c);
    assert_true(sb_wl_wants_answer(w));
    sb_spec_t *a = sb_wl_next(w), *b = sb_wl_next(w);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(sb_wl_next(w)); /* both sessions busy */
    sb_spec_t *s1 = a->session == 0 ? a : b, *s2 = a->session == 0 ? b : a;
    assert_string_equal(s1->prompt, "first question");
    assert_int_equal(s1->turn, 0);
    sb_wl_done(w, s1, true, "ANSWER1", 7);
    sb_spec_t *t2 = sb_wl_next(w);
    assert_non_null(t2);
    assert_int_equal(t2->session, 0);
    assert_int_equal(t2->turn, 1);
    sy_buf_t body = SY_BUF_INIT;
    assert_int_equal(sb_wl_body(w, t2, "m", &body), ST_OK);
    json_error_t je;
    json_t *j = json_loadb(body.data, body.len, 0, &je);
    assert_non_null(j);
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "first question");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
                        "assistant");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "ANSWER1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 2), "content")),
                        "second \"one\"");
    json_decref(j);
    sy_buf_deinit(&body);
    /* finishing every session restarts the cycle */
    sb_wl_done(w, t2, true, "A2", 2);
    sb_wl_done(w, s2, true, "B1", 2);
    sb_spec_t *n1 = sb_wl_next(w);
    assert_non_null(n1);
    assert_int_equal(n1->turn, 0);
    sb_spec_free(n1);
    sb_spec_free(t2);
    sb_spec_free(a);
    sb_spec_free(b);
    sb_wl_destroy(w);
    unlink(path);
}

static void test_generated_sessions_shared_prefix(void **state)
{
    (void)state;
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.kind = SB_WL_SHARED_PREFIX;
    c.multi_turn = true;
    c.groups = 2;
    c.prompts_per_group = 2;
    c.turns = 3;
    c.system_len = sb_len_fixed(30);
    c.question_len = sb_len_fixed(10);
    sb_workload_t *w = make(&c);
    sb_spec_t *s = sb_wl_next(w);
    assert_non_null(s);
    assert_int_equal(s->prompt_len, 10);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sb_wl_body(w, s, "m", &b), ST_OK);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(j);
    /* completions: the group's prefix (29 bytes + BOS) then the question */
    assert_int_equal(json_string_length(json_object_get(j, "prompt")), 39);
    json_decref(j);
    sy_buf_deinit(&b);
    sb_spec_free(s);
    sb_wl_destroy(w);
}

static char *write_tmp(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/sb_trace_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_trace(void **state)
{
    (void)state;
    const char *t = "{\"timestamp_ms\": 1500, \"input_len\": 20, \"output_len\": 5, "
                    "\"prefix_group\": 1, \"prefix_len\": 12}\n"
                    "\n# comment\n"
                    "{\"timestamp_ms\": 1000, \"prompt\": \"hello\", \"output_len\": 3}\n"
                    "{\"timestamp_ms\": 2500, \"input_len\": 30, \"prefix_group\": 1, "
                    "\"prefix_len\": 12}\n";
    char *path = write_tmp(t);
    sb_wl_cfg_t c;
    sb_wl_cfg_default(&c);
    c.kind = SB_WL_TRACE;
    c.trace_path = path;
    c.output_len = sb_len_fixed(9);
    sb_workload_t *w = make(&c);
    sb_spec_t *a = sb_wl_next(w), *b = sb_wl_next(w), *d = sb_wl_next(w);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(d);
    assert_null(sb_wl_next(w));
    assert_true(sb_wl_exhausted(w));
    /* sorted by time, relative to the first */
    assert_float_equal(a->t_ms, 0, 1e-9);
    assert_string_equal(a->prompt, "hello");
    assert_int_equal(a->output_len, 3);
    assert_int_equal(a->input_len, 6); /* BOS + 5 bytes */
    assert_float_equal(b->t_ms, 500, 1e-9);
    assert_int_equal(b->output_len, 5);
    assert_int_equal(count(b->prompt, b->prompt_len), 20);
    assert_float_equal(d->t_ms, 1500, 1e-9);
    assert_int_equal(d->output_len, 9);
    assert_int_equal(count(d->prompt, d->prompt_len), 30);
    /* same prefix group: the same first 12 tokens (BOS + 11 bytes) */
    assert_memory_equal(b->prompt, d->prompt, 11);
    sb_spec_free(a);
    sb_spec_free(b);
    sb_spec_free(d);
    sb_wl_rewind(w);
    assert_false(sb_wl_exhausted(w));
    sb_wl_destroy(w);
    unlink(path);

    const char *bad[] = {"{\"input_len\": 5}\n", "{\"timestamp_ms\": 1}\n",
                         "{\"timestamp_ms\": -1, \"input_len\": 5}\n", "not json\n", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_tmp(bad[i]);
        c.trace_path = path;
        c.tok = g_tok;
        sb_workload_t *x = NULL;
        char err[256] = "";
        assert_int_equal(sb_wl_create(&c, &x, err, sizeof err), ST_INVAL);
        assert_null(x);
        assert_true(strlen(err) > 0);
        unlink(path);
    }
}

static void test_gguf_exact(void **state)
{
    (void)state;
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t v = 0; v < 2; v++) {
        char path[1024], err[256];
        models_testutil_path(path, sizeof path, vocabs[v]);
        gguf_t *g = NULL;
        if (gguf_open(path, &g, err, sizeof err) != ST_OK)
            MODELS_TESTUTIL_MISSING(path);
        tok_t *t = tok_gguf_create(g, err, sizeof err);
        gguf_close(g);
        assert_non_null(t);
        sb_wl_cfg_t c;
        sb_wl_cfg_default(&c);
        c.tok = t;
        c.seed = 9;
        c.input_len = (sb_len_dist_t){.kind = SB_LEN_UNIFORM, .min = 2, .max = 600};
        for (int kind = 0; kind < 2; kind++) {
            c.kind = kind ? SB_WL_SHARED_PREFIX : SB_WL_RANDOM;
            c.groups = 3;
            c.prompts_per_group = 4;
            sb_workload_t *w = NULL;
            assert_int_equal(sb_wl_create(&c, &w, err, sizeof err), ST_OK);
            for (int i = 0; i < 12; i++) {
                sb_spec_t *s = sb_wl_next(w);
                assert_non_null(s);
                assert_true(sy_utf8_valid(s->prompt, s->prompt_len));
                assert_int_equal(sb_wl_count_tokens(w, s->prompt, s->prompt_len), s->input_len);
                assert_int_equal(s->actual_input_len, s->input_len);
                sb_spec_free(s);
            }
            sb_wl_destroy(w);
        }
        tok_destroy(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_exact),
        cmocka_unit_test(test_token_prompts_and_body),
        cmocka_unit_test(test_shared_prefix),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_len_dists),
        cmocka_unit_test(test_multi_turn),
        cmocka_unit_test(test_generated_sessions_shared_prefix),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_gguf_exact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
