/*
 * test_gguf.c - the GGUF reader and writer: header facts of the real model and vocab files
 * (from ../shared/models/README.md), writer -> reader round trips for every value type and
 * tensor type, hostile inputs built in memory (every truncation, absurd counts, unknown types,
 * misaligned offsets, bad alignment, duplicates, overflow, bad dims, data past EOF, bad UTF-8
 * keys), the Q8_0/Q4_0 quantizers, fp16/bf16 rounding, and gguf-synth in process.
 * Model files come from $SY_MODELS_DIR (default $SY_SOURCE_DIR/../shared/models); a missing
 * file skips its test, or fails it when $CI is set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <math.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/half.h"
#include "common/status.h"
#include "engine/gguf.h"
#include "engine/gguf_tools.h"
#include "engine/gguf_write.h"
#include "../models_testutil.h"

/* ---- model files ---- */

static bool model_path(const char *name, char *out, size_t cap)
{
    models_testutil_path(out, cap, name);
    if (access(out, R_OK) == 0)
        return true;
    const char *ci = getenv("CI");
    if (ci && ci[0])
        fail_msg("model file %s is missing (CI is set, so this is a failure)", out);
    print_message("skipping: model file %s is missing (set SY_MODELS_DIR)\n", out);
    return false;
}

static gguf_t *open_model(const char *name)
{
    char path[4096], err[256];
    if (!model_path(name, path, sizeof path))
        return NULL;
    gguf_t *g = NULL;
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("%s: %s", path, err);
    return g;
}

static void assert_slice(sy_slice_t s, const char *want)
{
    if (!sy_slice_eq(s, want))
        fail_msg("got '%.*s', want '%s'", (int)s.len, s.ptr, want);
}

static uint32_t get_u32(const gguf_t *g, const char *key)
{
    uint32_t v = 0;
    if (!gguf_get_u32(g, key, &v))
        fail_msg("key %s missing or not a u32", key);
    return v;
}

static sy_slice_t get_str(const gguf_t *g, const char *key)
{
    sy_slice_t s = {"", 0};
    if (!gguf_get_str(g, key, &s))
        fail_msg("key %s missing or not a string", key);
    return s;
}

static void assert_tensor(const gguf_t *g, size_t i, const char *name, gguf_ttype_t type,
                          uint64_t ne0, uint64_t ne1)
{
    const gguf_tensor_t *t = gguf_tensor(g, i);
    assert_non_null(t);
    assert_slice(t->name, name);
    assert_ptr_equal(gguf_find_tensor(g, name), t);
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, ne1 > 1 ? 2 : 1);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->n_elems, ne0 * ne1);
    assert_int_equal(t->offset % gguf_alignment(g), 0);
    uint32_t be, bb;
    assert_true(gguf_ttype_block(type, &be, &bb));
    assert_int_equal(t->n_bytes, ne0 * ne1 / be * bb);
}

static void test_stories260k(void **state)
{
    gguf_t *g = open_model("stories260K.gguf");
    if (!g)
        skip();
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_size(g), 1185376);
    assert_int_equal(gguf_n_kv(g), 19);
    assert_int_equal(gguf_n_tensors(g), 48);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_data_offset(g), 14176);
    assert_slice(get_str(g, "general.architecture"), "llama");
    assert_slice(get_str(g, "general.name"), "llama");
    assert_int_equal(get_u32(g, "llama.block_count"), 5);
    assert_int_equal(get_u32(g, "llama.embedding_length"), 64);
    assert_int_equal(get_u32(g, "llama.feed_forward_length"), 172);
    assert_int_equal(get_u32(g, "llama.attention.head_count"), 8);
    assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 4);
    assert_int_equal(get_u32(g, "llama.rope.dimension_count"), 8);
    assert_int_equal(get_u32(g, "llama.context_length"), 2048);
    float eps = 0;
    assert_true(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps));
    assert_true(eps == 9.99999975e-06f);
    assert_int_equal(gguf_find(g, "llama.rope.freq_base"), -1);
    assert_slice(get_str(g, "tokenizer.ggml.model"), "llama");
    assert_int_equal(gguf_find(g, "tokenizer.ggml.pre"), -1);
    assert_int_equal(get_u32(g, "tokenizer.ggml.unknown_token_id"), 0);
    assert_int_equal(get_u32(g, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(get_u32(g, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(get_u32(g, "tokenizer.ggml.seperator_token_id"), 4294967295u);
    assert_int_equal(get_u32(g, "tokenizer.ggml.padding_token_id"), 4294967295u);
    /* vocabulary */
    gguf_vtype_t et;
    uint64_t n;
    assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n));
    assert_int_equal(et, GGUF_VT_STRING);
    assert_int_equal(n, 512);
    sy_slice_t s;
    assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s));
    assert_slice(s, "<unk>");
    assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 1, &s));
    assert_slice(s, "<s>");
    assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s));
    assert_slice(s, "</s>");
    assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s));
    assert_slice(s, "<0x00>");
    assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 258, &s));
    assert_slice(s, "<0xFF>");
    assert_false(gguf_arr_str(g, "tokenizer.ggml.tokens", 512, &s));
    assert_false(gguf_arr_f32(g, "tokenizer.ggml.tokens", 0, &eps));
    float sc;
    assert_true(gguf_arr_f32(g, "tokenizer.ggml.scores", 259, &sc));
    assert_true(sc == 0.0f);
    assert_true(gguf_arr_f32(g, "tokenizer.ggml.scores", 511, &sc));
    assert_true(sc == -252.0f);
    int counts[8] = {0};
    int64_t idx = gguf_find(g, "tokenizer.ggml.token_type");
    assert_true(idx >= 0);
    for (uint64_t i = 0; i < 512; i++) {
        int64_t tt;
        assert_true(gguf_arr_i64_at(g, (size_t)idx, i, &tt));
        assert_true(tt >= 0 && tt < 8);
        counts[tt]++;
        if (i >= 3 && i <= 258)
            assert_int_equal(tt, 6);
    }
    assert_int_equal(counts[1], 253);
    assert_int_equal(counts[2], 1);
    assert_int_equal(counts[3], 2);
    assert_int_equal(counts[6], 256);
    /* tensors, in file order */
    assert_tensor(g, 0, "token_embd.weight", GGUF_TT_F32, 64, 512);
    assert_tensor(g, 1, "output_norm.weight", GGUF_TT_F32, 64, 1);
    assert_tensor(g, 2, "output.weight", GGUF_TT_F32, 64, 512);
    for (int l = 0; l < 5; l++) {
        static const char *const names[] = {"attn_q",      "attn_k",    "attn_v",
                                            "attn_output", "attn_norm", "ffn_gate",
                                            "ffn_down",    "ffn_up",    "ffn_norm"};
        static const uint64_t shapes[][2] = {{64, 64},  {64, 32},  {64, 32},  {64, 64}, {64, 1},
                                             {64, 172}, {172, 64}, {64, 172}, {64, 1}};
        for (int k = 0; k < 9; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, names[k]);
            assert_tensor(g, 3 + 9 * (size_t)l + (size_t)k, nm, GGUF_TT_F32, shapes[k][0],
                          shapes[k][1]);
        }
    }
    const gguf_tensor_t *emb = gguf_find_tensor(g, "token_embd.weight");
    const gguf_tensor_t *out = gguf_find_tensor(g, "output.weight");
    assert_int_equal(memcmp(emb->data, out->data, emb->n_bytes), 0);
    assert_int_equal((const uint8_t *)emb->data - (const uint8_t *)gguf_tensor(g, 0)->data, 0);
    assert_null(gguf_find_tensor(g, "nope"));
    gguf_close(g);
}

static void test_tiny_random(void **state)
{
    gguf_t *g = open_model("llama-2-tiny-random.gguf");
    if (!g)
        skip();
    assert_int_equal(gguf_size(g), 1750560);
    assert_int_equal(gguf_n_tensors(g), 12);
    assert_int_equal(gguf_data_offset(g), 724416);
    assert_slice(get_str(g, "general.name"), "LLaMA v2");
    assert_int_equal(get_u32(g, "general.file_type"), 1);
    assert_int_equal(get_u32(g, "llama.block_count"), 1);
    assert_int_equal(get_u32(g, "llama.embedding_length"), 8);
    assert_int_equal(get_u32(g, "llama.feed_forward_length"), 32);
    assert_int_equal(get_u32(g, "llama.attention.head_count"), 2);
    assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 2);
    assert_int_equal(get_u32(g, "llama.rope.dimension_count"), 4);
    assert_int_equal(get_u32(g, "llama.context_length"), 4096);
    uint64_t n;
    assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n));
    assert_int_equal(n, 32000);
    const gguf_tensor_t *t = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGUF_TT_F16);
    assert_int_equal(t->ne[0], 8);
    assert_int_equal(t->ne[1], 32000);
    t = gguf_find_tensor(g, "output.weight");
    assert_int_equal(t->type, GGUF_TT_F16);
    assert_int_equal(gguf_find_tensor(g, "blk.0.ffn_down.weight")->ne[0], 32);
    int n_f32 = 0;
    for (size_t i = 0; i < gguf_n_tensors(g); i++)
        n_f32 += gguf_tensor(g, i)->type == GGUF_TT_F32;
    assert_int_equal(n_f32, 3);
    assert_int_equal(gguf_find_tensor(g, "output_norm.weight")->type, GGUF_TT_F32);
    gguf_close(g);
}

static void test_vocab_files(void **state)
{
    static const struct {
        const char *file, *model, *pre;
        uint64_t n_vocab;
        int64_t bos, eos;
    } k[] = {
        {"ggml-vocab-llama-spm.gguf", "llama", "default", 32000, 1, 2},
        {"ggml-vocab-phi-3.gguf", "llama", "default", 32064, 1, 32000},
        {"ggml-vocab-deepseek-llm.gguf", "gpt2", "deepseek-llm", 102400, 100000, 100001},
        {"ggml-vocab-deepseek-coder.gguf", "gpt2", "deepseek-coder", 32256, -1, -1},
        {"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257, 50256, 50256},
        {"ggml-vocab-falcon.gguf", "gpt2", "falcon", 65024, -1, -1},
        {"ggml-vocab-starcoder.gguf", "gpt2", "starcoder", 49152, -1, -1},
        {"ggml-vocab-mpt.gguf", "gpt2", "mpt", 50432, -1, -1},
        {"ggml-vocab-refact.gguf", "gpt2", "refact", 49216, -1, -1},
    };
    int opened = 0;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "vocab/%s", k[i].file);
        gguf_t *g = open_model(name);
        if (!g)
            continue;
        opened++;
        assert_int_equal(gguf_n_tensors(g), 0);
        assert_slice(get_str(g, "tokenizer.ggml.model"), k[i].model);
        assert_slice(get_str(g, "tokenizer.ggml.pre"), k[i].pre);
        gguf_vtype_t et;
        uint64_t n;
        assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n));
        assert_int_equal(et, GGUF_VT_STRING);
        assert_int_equal(n, k[i].n_vocab);
        /* every token readable */
        int64_t ti = gguf_find(g, "tokenizer.ggml.tokens");
        size_t total = 0;
        for (uint64_t j = 0; j < n; j++) {
            sy_slice_t s;
            assert_true(gguf_arr_str_at(g, (size_t)ti, j, &s));
            total += s.len;
        }
        assert_true(total > n);
        if (k[i].bos >= 0) {
            assert_int_equal(get_u32(g, "tokenizer.ggml.bos_token_id"), k[i].bos);
            assert_int_equal(get_u32(g, "tokenizer.ggml.eos_token_id"), k[i].eos);
        }
        if (strcmp(k[i].model, "gpt2") == 0) {
            assert_true(gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n));
            assert_int_equal(et, GGUF_VT_STRING);
            assert_true(n > 1000);
        }
        gguf_close(g);
    }
    if (opened == 0)
        skip();
}

static void test_llama_spm_add_bos(void **state)
{
    gguf_t *g = open_model("vocab/ggml-vocab-llama-spm.gguf");
    if (!g)
        skip();
    bool b = false;
    assert_true(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b));
    assert_true(b);
    uint32_t u;
    assert_false(gguf_get_u32(g, "tokenizer.ggml.add_bos_token", &u)); /* bool is no integer */
    gguf_close(g);
}

/* ---- writer -> reader ---- */

static void open_buf(const sy_buf_t *b, gguf_t **g)
{
    char err[256] = "";
    int rc = gguf_open_mem(b->data, b->len, g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("open: %s (%s)", st_str(rc), err);
}

static void test_roundtrip_values(void **state)
{
    ggufw_t *w = ggufw_create();
    assert_non_null(w);
    assert_int_equal(ggufw_add_u8(w, "v.u8", 200), ST_OK);
    assert_int_equal(ggufw_add_i8(w, "v.i8", -100), ST_OK);
    assert_int_equal(ggufw_add_u16(w, "v.u16", 65535), ST_OK);
    assert_int_equal(ggufw_add_i16(w, "v.i16", -32768), ST_OK);
    assert_int_equal(ggufw_add_u32(w, "v.u32", 4000000000u), ST_OK);
    assert_int_equal(ggufw_add_i32(w, "v.i32", -2000000000), ST_OK);
    assert_int_equal(ggufw_add_u64(w, "v.u64", UINT64_MAX), ST_OK);
    assert_int_equal(ggufw_add_i64(w, "v.i64", INT64_MIN), ST_OK);
    assert_int_equal(ggufw_add_f32(w, "v.f32", 1.5f), ST_OK);
    assert_int_equal(ggufw_add_f64(w, "v.f64", -2.25), ST_OK);
    assert_int_equal(ggufw_add_bool(w, "v.bool", true), ST_OK);
    assert_int_equal(ggufw_add_str(w, "v.str", "h\xc3\xa9llo", 6), ST_OK);
    assert_int_equal(ggufw_add_str(w, "v.empty", "", 0), ST_OK);
    const int32_t ia[] = {-1, 0, 7};
    const float fa[] = {0.5f, -1.0f};
    const uint8_t ba[] = {1, 0, 1};
    const uint64_t ua[] = {UINT64_MAX, 3};
    const double da[] = {0.125};
    assert_int_equal(ggufw_add_arr(w, "a.i32", GGUF_VT_INT32, ia, 3), ST_OK);
    assert_int_equal(ggufw_add_arr(w, "a.f32", GGUF_VT_FLOAT32, fa, 2), ST_OK);
    assert_int_equal(ggufw_add_arr(w, "a.bool", GGUF_VT_BOOL, ba, 3), ST_OK);
    assert_int_equal(ggufw_add_arr(w, "a.u64", GGUF_VT_UINT64, ua, 2), ST_OK);
    assert_int_equal(ggufw_add_arr(w, "a.f64", GGUF_VT_FLOAT64, da, 1), ST_OK);
    assert_int_equal(ggufw_add_arr(w, "a.none", GGUF_VT_UINT8, NULL, 0), ST_OK);
    const sy_slice_t sa[] = {{"a", 1}, {"", 0}, {"ccc", 3}};
    assert_int_equal(ggufw_add_arr_str(w, "a.str", sa, 3), ST_OK);
    /* writer refusals */
    assert_int_equal(ggufw_add_u8(w, "v.u8", 1), ST_EXISTS);
    assert_int_equal(ggufw_add_u8(w, "", 1), ST_INVAL);
    assert_int_equal(ggufw_add_arr(w, "a.bad", GGUF_VT_STRING, ia, 1), ST_INVAL);
    assert_int_equal(ggufw_add_arr(w, "a.bad", GGUF_VT_ARRAY, ia, 1), ST_INVAL);
    assert_int_equal(ggufw_set_alignment(w, 48), ST_INVAL);
    assert_int_equal(ggufw_set_alignment(w, 64), ST_OK);
    assert_int_equal(ggufw_set_alignment(w, 64), ST_EXISTS);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(ggufw_write_mem(w, &b, NULL, NULL), ST_OK);
    ggufw_destroy(w);

    gguf_t *g;
    open_buf(&b, &g);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 64);
    assert_int_equal(gguf_n_kv(g), 21);
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool bl;
    sy_slice_t s;
    assert_true(gguf_get_u32(g, "v.u8", &u32) && u32 == 200);
    assert_true(gguf_get_i64(g, "v.i8", &i64) && i64 == -100);
    assert_false(gguf_get_u64(g, "v.i8", &u64)); /* negative does not fit */
    assert_true(gguf_get_u32(g, "v.u16", &u32) && u32 == 65535);
    assert_true(gguf_get_i64(g, "v.i16", &i64) && i64 == -32768);
    assert_true(gguf_get_u32(g, "v.u32", &u32) && u32 == 4000000000u);
    assert_true(gguf_get_i64(g, "v.i32", &i64) && i64 == -2000000000);
    assert_true(gguf_get_u64(g, "v.u64", &u64) && u64 == UINT64_MAX);
    assert_false(gguf_get_u32(g, "v.u64", &u32));
    assert_false(gguf_get_i64(g, "v.u64", &i64));
    assert_true(gguf_get_i64(g, "v.i64", &i64) && i64 == INT64_MIN);
    assert_true(gguf_get_f32(g, "v.f32", &f) && f == 1.5f);
    assert_true(gguf_get_f32(g, "v.f64", &f) && f == -2.25f);
    assert_false(gguf_get_f32(g, "v.u8", &f));
    assert_false(gguf_get_u32(g, "v.f32", &u32));
    assert_true(gguf_get_bool(g, "v.bool", &bl) && bl);
    assert_false(gguf_get_bool(g, "v.u8", &bl));
    assert_true(gguf_get_str(g, "v.str", &s));
    assert_slice(s, "h\xc3\xa9llo");
    assert_true(gguf_get_str(g, "v.empty", &s) && s.len == 0);
    assert_false(gguf_get_str(g, "v.u8", &s));
    assert_false(gguf_get_u32(g, "missing", &u32));
    assert_int_equal(gguf_type(g, (size_t)gguf_find(g, "v.i16")), GGUF_VT_INT16);
    gguf_vtype_t et;
    uint64_t n;
    assert_true(gguf_get_arr(g, "a.i32", &et, &n) && et == GGUF_VT_INT32 && n == 3);
    assert_true(gguf_arr_i64(g, "a.i32", 0, &i64) && i64 == -1);
    assert_true(gguf_arr_i64(g, "a.i32", 2, &i64) && i64 == 7);
    assert_false(gguf_arr_i64(g, "a.i32", 3, &i64));
    assert_false(gguf_arr_f32(g, "a.i32", 0, &f));
    assert_true(gguf_arr_f32(g, "a.f32", 1, &f) && f == -1.0f);
    assert_true(gguf_arr_f32(g, "a.f64", 0, &f) && f == 0.125f);
    assert_false(gguf_arr_i64(g, "a.u64", 0, &i64)); /* UINT64_MAX does not fit */
    assert_true(gguf_arr_i64(g, "a.u64", 1, &i64) && i64 == 3);
    const uint8_t *bp = gguf_arr_data(g, (size_t)gguf_find(g, "a.bool"), &et, &n);
    assert_non_null(bp);
    assert_true(et == GGUF_VT_BOOL && n == 3 && bp[0] == 1 && bp[1] == 0 && bp[2] == 1);
    assert_true(gguf_get_arr(g, "a.none", &et, &n) && n == 0);
    assert_true(gguf_get_arr(g, "a.str", &et, &n) && et == GGUF_VT_STRING && n == 3);
    assert_null(gguf_arr_data(g, (size_t)gguf_find(g, "a.str"), NULL, NULL));
    assert_true(gguf_arr_str(g, "a.str", 0, &s));
    assert_slice(s, "a");
    assert_true(gguf_arr_str(g, "a.str", 1, &s) && s.len == 0);
    assert_true(gguf_arr_str(g, "a.str", 2, &s));
    assert_slice(s, "ccc");
    assert_false(gguf_arr_str(g, "a.str", 3, &s));
    assert_false(gguf_get_arr(g, "v.u8", &et, &n));
    assert_false(gguf_kv_u64(g, 999, &u64));

    /* raw copy into a second file reproduces every value */
    ggufw_t *w2 = ggufw_create();
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        sy_slice_t k = gguf_key(g, i);
        if (sy_slice_eq(k, "general.alignment"))
            continue;
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
        const void *raw;
        size_t len;
        gguf_kv_raw(g, i, &raw, &len);
        assert_int_equal(ggufw_add_raw(w2, key, gguf_type(g, i), raw, len), ST_OK);
    }
    sy_buf_t b2 = SY_BUF_INIT;
    assert_int_equal(ggufw_write_mem(w2, &b2, NULL, NULL), ST_OK);
    gguf_t *g2;
    open_buf(&b2, &g2);
    assert_int_equal(gguf_n_kv(g2), 20);
    assert_true(gguf_arr_str(g2, "a.str", 2, &s));
    assert_slice(s, "ccc");
    assert_true(gguf_get_i64(g2, "v.i64", &i64) && i64 == INT64_MIN);
    gguf_close(g2);
    ggufw_destroy(w2);
    sy_buf_deinit(&b2);

    /* version 2 files are read too */
    b.data[4] = 2;
    gguf_t *g3;
    open_buf(&b, &g3);
    assert_int_equal(gguf_version(g3), 2);
    gguf_close(g3);
    gguf_close(g);
    sy_buf_deinit(&b);
}

static int fill_pattern(void *udata, size_t ti, void *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)dst)[i] = (uint8_t)(ti * 31 + i * 7);
    return ST_OK;
}

static void test_roundtrip_tensors(void **state)
{
    static const struct {
        const char *name;
        gguf_ttype_t t;
        uint32_t nd;
        uint64_t ne[4];
    } k[] = {
        {"f32", GGUF_TT_F32, 1, {5, 1, 1, 1}},     {"f16", GGUF_TT_F16, 2, {3, 7, 1, 1}},
        {"bf16", GGUF_TT_BF16, 3, {2, 3, 4, 1}},   {"q8_0", GGUF_TT_Q8_0, 2, {64, 3, 1, 1}},
        {"q4_0", GGUF_TT_Q4_0, 4, {32, 1, 2, 2}},  {"q4_k", GGUF_TT_Q4_K, 2, {256, 2, 1, 1}},
        {"q6_k", GGUF_TT_Q6_K, 1, {512, 1, 1, 1}}, {"fill", GGUF_TT_F32, 1, {3, 1, 1, 1}},
    };
    size_t nk = sizeof k / sizeof k[0];
    uint8_t *data[8] = {0};
    ggufw_t *w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "general.architecture", "llama", 5), ST_OK);
    for (size_t i = 0; i < nk; i++) {
        uint64_t n = k[i].ne[0] * k[i].ne[1] * k[i].ne[2] * k[i].ne[3];
        size_t bytes = ggufw_tensor_bytes(k[i].t, n);
        assert_true(bytes > 0);
        if (i + 1 < nk) {
            data[i] = malloc(bytes);
            for (size_t j = 0; j < bytes; j++)
                data[i][j] = (uint8_t)(i + j * 13);
        }
        assert_int_equal(ggufw_add_tensor(w, k[i].name, k[i].t, k[i].nd, k[i].ne, data[i]), ST_OK);
    }
    const uint64_t bad33[] = {33};
    const uint64_t zero[] = {0};
    const uint64_t one[] = {1};
    assert_int_equal(ggufw_add_tensor(w, "x", GGUF_TT_Q8_0, 1, bad33, NULL), ST_INVAL);
    assert_int_equal(ggufw_add_tensor(w, "x", GGUF_TT_F32, 1, zero, NULL), ST_INVAL);
    assert_int_equal(ggufw_add_tensor(w, "x", GGUF_TT_F32, 5, one, NULL), ST_INVAL);
    assert_int_equal(ggufw_add_tensor(w, "x", (gguf_ttype_t)3, 1, one, NULL), ST_INVAL);
    assert_int_equal(ggufw_add_tensor(w, "f32", GGUF_TT_F32, 1, one, NULL), ST_EXISTS);
    assert_int_equal(ggufw_n_tensors(w), nk);
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(ggufw_write_mem(w, &b, NULL, NULL), ST_INVAL); /* "fill" has no data */
    sy_buf_reset(&b);
    assert_int_equal(ggufw_write_mem(w, &b, fill_pattern, NULL), ST_OK);
    gguf_t *g;
    open_buf(&b, &g);
    assert_int_equal(gguf_n_tensors(g), nk);
    assert_int_equal(gguf_data_offset(g) % 32, 0);
    for (size_t i = 0; i < nk; i++) {
        const gguf_tensor_t *t = gguf_tensor(g, i);
        assert_slice(t->name, k[i].name);
        assert_int_equal(t->type, k[i].t);
        assert_int_equal(t->n_dims, k[i].nd);
        for (int d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], k[i].ne[d]);
        assert_int_equal(((uintptr_t)t->data - (uintptr_t)b.data) % 32, 0);
        assert_int_equal(t->offset % 32, 0);
        if (data[i]) {
            assert_int_equal(memcmp(t->data, data[i], t->n_bytes), 0);
        } else {
            for (size_t j = 0; j < t->n_bytes; j++)
                assert_int_equal(((const uint8_t *)t->data)[j], (uint8_t)(i * 31 + j * 7));
        }
        assert_string_equal(gguf_ttype_name(t->type), i == 0   ? "F32"
                                                      : i == 1 ? "F16"
                                                      : i == 2 ? "BF16"
                                                      : i == 3 ? "Q8_0"
                                                      : i == 4 ? "Q4_0"
                                                      : i == 5 ? "Q4_K"
                                                      : i == 6 ? "Q6_K"
                                                               : "F32");
    }
    assert_string_equal(gguf_ttype_name((gguf_ttype_t)3), "Q4_1");
    assert_string_equal(gguf_ttype_name((gguf_ttype_t)4), "?");
    assert_string_equal(gguf_ttype_name((gguf_ttype_t)1000), "?");
    gguf_close(g);

    /* every truncation of this valid file is refused cleanly */
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        if (len)
            memcpy(copy, b.data, len);
        char err[256] = "";
        gguf_t *gt = (gguf_t *)1;
        int rc = gguf_open_mem(copy, len, &gt, err, sizeof err);
        if (rc != ST_PROTO)
            fail_msg("truncated to %zu of %zu bytes: rc %d", len, b.len, rc);
        assert_null(gt);
        assert_true(err[0] != '\0');
        free(copy);
    }
    for (size_t i = 0; i < nk; i++)
        free(data[i]);
    ggufw_destroy(w);
    sy_buf_deinit(&b);
}

/* ---- hostile inputs, byte by byte ---- */

static void put32(sy_buf_t *b, uint32_t v)
{
    assert_int_equal(sy_buf_append(b, &v, 4), ST_OK);
}

static void put64(sy_buf_t *b, uint64_t v)
{
    assert_int_equal(sy_buf_append(b, &v, 8), ST_OK);
}

static void putstr(sy_buf_t *b, const char *s)
{
    put64(b, strlen(s));
    assert_int_equal(sy_buf_append(b, s, strlen(s)), ST_OK);
}

static void header(sy_buf_t *b, uint64_t n_tensors, uint64_t n_kv)
{
    sy_buf_reset(b);
    assert_int_equal(sy_buf_append(b, "GGUF", 4), ST_OK);
    put32(b, 3);
    put64(b, n_tensors);
    put64(b, n_kv);
}

static void pad_to(sy_buf_t *b, size_t a)
{
    while (b->len % a)
        assert_int_equal(sy_buf_append_char(b, 0), ST_OK);
}

static void zeros(sy_buf_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sy_buf_append_char(b, 0), ST_OK);
}

/* One tensor descriptor. */
static void tinfo(sy_buf_t *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset)
{
    putstr(b, name);
    put32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put64(b, ne[d]);
    put32(b, type);
    put64(b, offset);
}

static void expect_refused(const sy_buf_t *b, const char *needle)
{
    uint8_t *copy = malloc(b->len ? b->len : 1); /* exact size: ASan sees any over-read */
    if (b->len)
        memcpy(copy, b->data, b->len);
    char err[512] = "";
    gguf_t *g = NULL;
    uint64_t live = sy_alloc_live_bytes();
    int rc = gguf_open_mem(copy, b->len, &g, err, sizeof err);
    if (rc != ST_PROTO)
        fail_msg("expected ST_PROTO for '%s', got %s (%s)", needle, st_str(rc), err);
    assert_null(g);
    if (!strstr(err, needle))
        fail_msg("message '%s' does not mention '%s'", err, needle);
    assert_int_equal(sy_alloc_live_bytes(), live); /* nothing leaked */
    free(copy);
}

static void expect_ok(const sy_buf_t *b)
{
    char err[512] = "";
    gguf_t *g = NULL;
    int rc = gguf_open_mem(b->data, b->len, &g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("expected ST_OK, got %s (%s)", st_str(rc), err);
    gguf_close(g);
}

static void test_hostile_header(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    expect_refused(&b, "truncated header");
    assert_int_equal(sy_buf_append(&b, "GGML", 4), ST_OK);
    zeros(&b, 20);
    expect_refused(&b, "bad magic");
    header(&b, 0, 0);
    expect_ok(&b);
    b.data[4] = 1;
    expect_refused(&b, "version 1");
    header(&b, 0, 0);
    b.data[4] = 0, b.data[7] = 3; /* big-endian version 3 */
    expect_refused(&b, "big-endian");
    header(&b, 0, (uint64_t)1 << 62);
    expect_refused(&b, "metadata count");
    header(&b, (uint64_t)1 << 62, 0);
    expect_refused(&b, "tensor count");
    header(&b, UINT64_MAX, UINT64_MAX);
    expect_refused(&b, "count");
    header(&b, 0, 1); /* one kv promised, none there */
    zeros(&b, 13);
    expect_refused(&b, "metadata count");
    sy_buf_deinit(&b);
}

static void test_hostile_metadata(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    /* array length 2^60 of u8, u32 and strings */
    static const uint32_t ets[] = {GGUF_VT_UINT8, GGUF_VT_UINT32, GGUF_VT_STRING};
    for (int i = 0; i < 3; i++) {
        header(&b, 0, 1);
        putstr(&b, "arr");
        put32(&b, GGUF_VT_ARRAY);
        put32(&b, ets[i]);
        put64(&b, (uint64_t)1 << 60);
        zeros(&b, 64);
        expect_refused(&b, "array length 1152921504606846976");
    }
    /* string array whose 3rd string runs past the end */
    header(&b, 0, 1);
    putstr(&b, "arr");
    put32(&b, GGUF_VT_ARRAY);
    put32(&b, GGUF_VT_STRING);
    put64(&b, 3);
    putstr(&b, "a");
    putstr(&b, "b");
    put64(&b, 100);
    zeros(&b, 10);
    expect_refused(&b, "string 2 of 3");
    /* string value past EOF; key length past EOF */
    header(&b, 0, 1);
    putstr(&b, "s");
    put32(&b, GGUF_VT_STRING);
    put64(&b, 1000);
    zeros(&b, 10);
    expect_refused(&b, "past the end");
    header(&b, 0, 1);
    put64(&b, UINT64_MAX);
    zeros(&b, 10);
    expect_refused(&b, "key: length 18446744073709551615");
    /* unknown value type; unknown element type; arrays of arrays */
    header(&b, 0, 1);
    putstr(&b, "k");
    put32(&b, 13);
    zeros(&b, 8);
    expect_refused(&b, "unknown value type 13");
    header(&b, 0, 1);
    putstr(&b, "k");
    put32(&b, GGUF_VT_ARRAY);
    put32(&b, 99);
    put64(&b, 1);
    zeros(&b, 8);
    expect_refused(&b, "unknown array element type 99");
    header(&b, 0, 1);
    putstr(&b, "k");
    put32(&b, GGUF_VT_ARRAY);
    put32(&b, GGUF_VT_ARRAY);
    put64(&b, 1);
    zeros(&b, 16);
    expect_refused(&b, "arrays of arrays");
    /* bool not 0/1, scalar and in an array */
    header(&b, 0, 1);
    putstr(&b, "k");
    put32(&b, GGUF_VT_BOOL);
    assert_int_equal(sy_buf_append_char(&b, 2), ST_OK);
    expect_refused(&b, "bool value is 2");
    header(&b, 0, 1);
    putstr(&b, "k");
    put32(&b, GGUF_VT_ARRAY);
    put32(&b, GGUF_VT_BOOL);
    put64(&b, 2);
    assert_int_equal(sy_buf_append(&b, "\x01\x07", 2), ST_OK);
    expect_refused(&b, "bool element 1");
    /* duplicate keys */
    header(&b, 0, 2);
    putstr(&b, "same.key");
    put32(&b, GGUF_VT_UINT8);
    zeros(&b, 1);
    putstr(&b, "same.key");
    put32(&b, GGUF_VT_UINT32);
    zeros(&b, 4);
    expect_refused(&b, "duplicate key");
    /* invalid UTF-8 key, empty key, NUL in key */
    header(&b, 0, 1);
    putstr(&b, "bad\xff\xfe");
    put32(&b, GGUF_VT_UINT8);
    zeros(&b, 1);
    expect_refused(&b, "not valid UTF-8");
    header(&b, 0, 1);
    put64(&b, 0);
    put32(&b, GGUF_VT_UINT8);
    zeros(&b, 2);
    expect_refused(&b, "key length 0");
    header(&b, 0, 1);
    put64(&b, 3);
    assert_int_equal(sy_buf_append(&b, "a\0b", 3), ST_OK);
    put32(&b, GGUF_VT_UINT8);
    zeros(&b, 1);
    expect_refused(&b, "not valid UTF-8");
    /* alignment: not a power of two, zero, wrong type */
    static const uint32_t bad_align[] = {48, 0, 3};
    for (int i = 0; i < 3; i++) {
        header(&b, 0, 1);
        putstr(&b, "general.alignment");
        put32(&b, GGUF_VT_UINT32);
        put32(&b, bad_align[i]);
        expect_refused(&b, "not a power of two");
    }
    header(&b, 0, 1);
    putstr(&b, "general.alignment");
    put32(&b, GGUF_VT_UINT64);
    put64(&b, 32);
    expect_refused(&b, "must be u32");
    sy_buf_deinit(&b);
}

static void test_hostile_tensors(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    const uint64_t ne8[] = {8};
    /* the valid baseline */
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, GGUF_TT_F32, 0);
    pad_to(&b, 32);
    zeros(&b, 32);
    expect_ok(&b);
    /* data one byte short */
    b.len--;
    expect_refused(&b, "past the end of the file");
    /* misaligned offset */
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, GGUF_TT_F32, 4);
    pad_to(&b, 32);
    zeros(&b, 64);
    expect_refused(&b, "not a multiple of the alignment 32");
    /* custom alignment 64 honoured */
    header(&b, 1, 1);
    putstr(&b, "general.alignment");
    put32(&b, GGUF_VT_UINT32);
    put32(&b, 64);
    tinfo(&b, "t", 1, ne8, GGUF_TT_F32, 32);
    pad_to(&b, 64);
    zeros(&b, 128);
    expect_refused(&b, "alignment 64");
    /* offset 2^63: the end overflows */
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, GGUF_TT_F32, (uint64_t)1 << 63);
    pad_to(&b, 32);
    zeros(&b, 32);
    expect_refused(&b, "past the end of the file");
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, GGUF_TT_F32, UINT64_MAX - 31);
    pad_to(&b, 32);
    zeros(&b, 32);
    expect_refused(&b, "past the end of the file");
    /* unknown and unsupported tensor types */
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, 3, 0);
    zeros(&b, 64);
    expect_refused(&b, "type 3 (Q4_1) is not supported");
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne8, 200, 0);
    zeros(&b, 64);
    expect_refused(&b, "type 200 (?)");
    /* n_dims 0 and 5 */
    const uint64_t ne5[] = {1, 1, 1, 1, 1};
    header(&b, 1, 0);
    tinfo(&b, "t", 0, ne5, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "0 dimensions");
    header(&b, 1, 0);
    tinfo(&b, "t", 5, ne5, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "5 dimensions");
    /* dims: zero, negative as int64, product overflow */
    const uint64_t ne0[] = {0};
    header(&b, 1, 0);
    tinfo(&b, "t", 1, ne0, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "dimension 0 is 0");
    const uint64_t neneg[] = {(uint64_t)1 << 63};
    header(&b, 1, 0);
    tinfo(&b, "t", 1, neneg, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "dimension 0 is 9223372036854775808");
    const uint64_t nebig[] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
    header(&b, 1, 0);
    tinfo(&b, "t", 2, nebig, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "element count overflows");
    const uint64_t nebytes[] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
    header(&b, 1, 0);
    tinfo(&b, "t", 2, nebytes, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "tensor 't'"); /* 2^62 elements x 4 bytes: overflow or past EOF */
    /* a block type with a partial block */
    const uint64_t ne33[] = {33, 2};
    header(&b, 1, 0);
    tinfo(&b, "t", 2, ne33, GGUF_TT_Q8_0, 0);
    zeros(&b, 128);
    expect_refused(&b, "not a multiple of the Q8_0 block size 32");
    /* duplicate names, long name, bad UTF-8 name, empty name */
    header(&b, 2, 0);
    tinfo(&b, "same", 1, ne8, GGUF_TT_F32, 0);
    tinfo(&b, "same", 1, ne8, GGUF_TT_F32, 32);
    pad_to(&b, 32);
    zeros(&b, 64);
    expect_refused(&b, "duplicate tensor name");
    char longname[80];
    memset(longname, 'x', 65);
    longname[65] = '\0';
    header(&b, 1, 0);
    tinfo(&b, longname, 1, ne8, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "name length 65");
    header(&b, 1, 0);
    tinfo(&b, "\xc0\xaf", 1, ne8, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "not valid UTF-8");
    header(&b, 1, 0);
    tinfo(&b, "", 1, ne8, GGUF_TT_F32, 0);
    zeros(&b, 64);
    expect_refused(&b, "name length 0");
    /* a descriptor cut in the middle (a long name, so the count check passes) */
    header(&b, 1, 0);
    putstr(&b, "a_rather_long_tensor_name_for_this_test");
    put32(&b, 2);
    put64(&b, 32);
    expect_refused(&b, "dimension: 8 bytes needed");
    sy_buf_deinit(&b);
}

/* Memory taken by an open file stays a small multiple of its size, whatever the counts say. */
static void test_alloc_bounded(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    /* 100000 empty strings: the densest string array (8 bytes each) */
    header(&b, 0, 1);
    putstr(&b, "a");
    put32(&b, GGUF_VT_ARRAY);
    put32(&b, GGUF_VT_STRING);
    put64(&b, 100000);
    zeros(&b, 8 * 100000);
    uint64_t before = sy_alloc_live_bytes();
    gguf_t *g = NULL;
    char err[256];
    assert_int_equal(gguf_open_mem(b.data, b.len, &g, err, sizeof err), ST_OK);
    uint64_t used = sy_alloc_live_bytes() - before;
    assert_true(used <= 2 * (uint64_t)b.len);
    sy_slice_t s;
    assert_true(gguf_arr_str(g, "a", 99999, &s) && s.len == 0);
    gguf_close(g);
    assert_int_equal(sy_alloc_live_bytes(), before);
    /* many minimal key/value pairs (4-byte keys, u8 values: 17 bytes each) */
    enum { NKV = 20000 };
    header(&b, 0, NKV);
    for (unsigned i = 0; i < NKV; i++) {
        char key[8];
        snprintf(key, sizeof key, "%04x", i);
        putstr(&b, key);
        put32(&b, GGUF_VT_UINT8);
        zeros(&b, 1);
    }
    before = sy_alloc_live_bytes();
    assert_int_equal(gguf_open_mem(b.data, b.len, &g, err, sizeof err), ST_OK);
    used = sy_alloc_live_bytes() - before;
    assert_true(used <= 8 * (uint64_t)b.len);
    assert_int_equal(gguf_find(g, "4e1f"), 0x4e1f);
    gguf_close(g);
    /* the same count claimed over too few bytes allocates nothing */
    b.len = 24 + 14 * 100;
    expect_refused(&b, "metadata count 20000 is impossible");
    sy_buf_deinit(&b);
}

/* ---- quantizers and half floats ---- */

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}

static void test_quant_q8_0(void **state)
{
    enum { N = 32 * 97 };
    static float x[N], y[N];
    static uint8_t q[N / 32 * 34];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (float)(1 + i / 32 % 5) * 0.3f;
    for (int j = 0; j < 32; j++)
        x[32 + j] = 0.0f; /* an all-zero block */
    ggufw_quantize_q8_0(x, q, N);
    ggufw_dequantize_q8_0(q, y, N);
    for (int blk = 0; blk < N / 32; blk++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
        float bound = amax / 127.0f * 0.5f + amax * 0.001f + 1e-12f;
        for (int j = 0; j < 32; j++) {
            float e = fabsf(x[blk * 32 + j] - y[blk * 32 + j]);
            if (e > bound)
                fail_msg("Q8_0 block %d elem %d: error %g > %g", blk, j, e, bound);
        }
    }
    for (int j = 0; j < 32; j++)
        assert_true(y[32 + j] == 0.0f);
    /* exact layout: x = j - 16 -> d = 16/127, q = round((j - 16) * 127 / 16) */
    float xe[32];
    uint8_t qe[34];
    for (int j = 0; j < 32; j++)
        xe[j] = (float)(j - 16);
    ggufw_quantize_q8_0(xe, qe, 32);
    uint16_t dh;
    memcpy(&dh, qe, 2);
    assert_int_equal(dh, sy_half_f32_to_f16(16.0f / 127.0f));
    assert_int_equal((int8_t)qe[2], -127);
    assert_int_equal((int8_t)qe[2 + 16], 0);
    assert_int_equal((int8_t)qe[2 + 31], (int)roundf(15.0f * 127.0f / 16.0f));
}

static void test_quant_q4_0(void **state)
{
    enum { N = 32 * 97 };
    static float x[N], y[N];
    static uint8_t q[N / 32 * 18];
    for (int i = 0; i < N; i++)
        x[i] = frand() * (float)(1 + i / 32 % 5) * 0.3f;
    ggufw_quantize_q4_0(x, q, N);
    ggufw_dequantize_q4_0(q, y, N);
    for (int blk = 0; blk < N / 32; blk++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[blk * 32 + j]));
        /* |d| = amax/8; error <= |d|/2 inside the grid, <= |d| at the clamped +8 end */
        float bound = amax / 8.0f * 1.001f + amax * 0.002f + 1e-12f;
        for (int j = 0; j < 32; j++) {
            float e = fabsf(x[blk * 32 + j] - y[blk * 32 + j]);
            if (e > bound)
                fail_msg("Q4_0 block %d elem %d: error %g > %g", blk, j, e, bound);
        }
    }
    /* exact layout: x = j - 16: max = -16, d = 2, q = trunc((j - 16) / 2 + 8.5) */
    float xe[32], ye[32];
    uint8_t qe[18];
    for (int j = 0; j < 32; j++)
        xe[j] = (float)(j - 16);
    ggufw_quantize_q4_0(xe, qe, 32);
    uint16_t dh;
    memcpy(&dh, qe, 2);
    assert_int_equal(dh, 0x4000);           /* 2.0 */
    assert_int_equal(qe[2], 0x80);          /* low: elem 0 -> 0, high: elem 16 -> 8 */
    assert_int_equal(qe[2 + 15] & 0x0f, 8); /* elem 15 = -1: trunc(-0.5 + 8.5) = 8 */
    assert_int_equal(qe[2 + 15] >> 4, 15);  /* elem 31 = 15: trunc(7.5 + 8.5) = 16 -> 15 */
    ggufw_dequantize_q4_0(qe, ye, 32);
    for (int j = 0; j < 32; j += 2)
        assert_true(ye[j] == xe[j]); /* even offsets are on the grid */
}

static void test_half_exact(void **state)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sy_half_f16_to_f32((uint16_t)h);
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
            assert_true(isnan(f));
            assert_true((sy_half_f32_to_f16(f) & 0x7c00) == 0x7c00 &&
                        (sy_half_f32_to_f16(f) & 0x3ff) != 0);
        } else if (sy_half_f32_to_f16(f) != h) {
            fail_msg("fp16 0x%04x -> %g -> 0x%04x", h, f, sy_half_f32_to_f16(f));
        }
    }
    for (uint32_t h = 0; h < 65536; h++) {
        float bf = sy_half_bf16_to_f32((uint16_t)h);
        if (((h >> 7) & 0xff) == 0xff && (h & 0x7f)) {
            assert_true(isnan(bf) && isnan(sy_half_bf16_to_f32(sy_half_f32_to_bf16(bf))));
            continue;
        }
        if (sy_half_f32_to_bf16(bf) != h)
            fail_msg("bf16 0x%04x -> %g -> 0x%04x", h, bf, sy_half_f32_to_bf16(bf));
    }
    assert_true(sy_half_f16_to_f32(0x3c00) == 1.0f);
    assert_true(sy_half_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(sy_half_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(sy_half_bf16_to_f32(0x3f80) == 1.0f);
}

static void test_half_rounding(void **state)
{
    /* every midpoint between adjacent finite fp16 values rounds to the even one; one float ulp
     * either side rounds to the nearer one */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        for (int sign = 0; sign < 2; sign++) {
            uint16_t lo = (uint16_t)(h | (sign ? 0x8000 : 0)), hi = (uint16_t)(lo + 1);
            float a = sy_half_f16_to_f32(lo), c = sy_half_f16_to_f32(hi);
            float m = (a + c) / 2; /* exact: 12 significant bits */
            uint16_t even = (lo & 1) ? hi : lo;
            if (sy_half_f32_to_f16(m) != even)
                fail_msg("fp16 tie %a -> 0x%04x, want 0x%04x", m, sy_half_f32_to_f16(m), even);
            float toward_c = nextafterf(m, c), toward_a = nextafterf(m, a);
            assert_int_equal(sy_half_f32_to_f16(toward_c), hi);
            assert_int_equal(sy_half_f32_to_f16(toward_a), lo);
        }
    }
    assert_int_equal(sy_half_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(sy_half_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(sy_half_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(sy_half_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(sy_half_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even 0 */
    assert_int_equal(sy_half_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(sy_half_f32_to_f16(ldexpf(1.0f, -30)), 0x0000);
    assert_int_equal(sy_half_f32_to_f16(-0.0f), 0x8000);
    for (uint32_t b = 0; b < 0x7f7f; b += 7) {
        uint16_t lo = (uint16_t)b, hi = (uint16_t)(b + 1);
        float a = sy_half_bf16_to_f32(lo), c = sy_half_bf16_to_f32(hi);
        float m = a + (c - a) / 2; /* exact, and no overflow near FLT_MAX */
        uint16_t even = (lo & 1) ? hi : lo;
        assert_int_equal(sy_half_f32_to_bf16(m), even);
        assert_int_equal(sy_half_f32_to_bf16(nextafterf(m, c)), hi);
        assert_int_equal(sy_half_f32_to_bf16(nextafterf(m, a)), lo);
    }
    assert_int_equal(sy_half_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);
    assert_int_equal(sy_half_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
    assert_int_equal(sy_half_f32_to_bf16(3.4028235e38f), 0x7f80); /* FLT_MAX rounds to inf */
    uint16_t v[3];
    const float in[3] = {1.0f, -2.0f, 0.5f};
    ggufw_f32_to_f16(in, v, 3);
    assert_true(v[0] == 0x3c00 && v[1] == 0xc000 && v[2] == 0x3800);
    ggufw_f32_to_bf16(in, v, 3);
    assert_true(v[0] == 0x3f80 && v[1] == 0xc000 && v[2] == 0x3f00);
}

/* ---- gguf-synth in process ---- */

static int run_synth(const char *out, const char *type, const char *seed, const char *vocab_from)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "gguf-synth";
    argv[argc++] = "--out";
    argv[argc++] = (char *)out;
    argv[argc++] = "--dim";
    argv[argc++] = "64";
    argv[argc++] = "--layers";
    argv[argc++] = "2";
    argv[argc++] = "--heads";
    argv[argc++] = "4";
    argv[argc++] = "--kv-heads";
    argv[argc++] = "2";
    argv[argc++] = "--ff";
    argv[argc++] = "96";
    argv[argc++] = "--type";
    argv[argc++] = (char *)type;
    argv[argc++] = "--seed";
    argv[argc++] = (char *)seed;
    if (vocab_from) {
        argv[argc++] = "--vocab-from";
        argv[argc++] = (char *)vocab_from;
    } else {
        argv[argc++] = "--vocab";
        argv[argc++] = "300";
    }
    argv[argc] = NULL;
    return gguf_synth_main(argc, argv);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void test_synth(void **state)
{
    char dir[] = "/tmp/sy-gguf-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[256], b2[256], c[256];
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b2, sizeof b2, "%s/b.gguf", dir);
    snprintf(c, sizeof c, "%s/c.gguf", dir);
    static const char *const types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0"};
    static const gguf_ttype_t tt[] = {GGUF_TT_F32, GGUF_TT_F16, GGUF_TT_BF16, GGUF_TT_Q8_0,
                                      GGUF_TT_Q4_0};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(run_synth(a, types[i], "7", NULL), 0);
        char err[256];
        gguf_t *g = NULL;
        assert_int_equal(gguf_open(a, &g, err, sizeof err), ST_OK);
        assert_slice(get_str(g, "general.architecture"), "llama");
        assert_int_equal(get_u32(g, "llama.block_count"), 2);
        assert_int_equal(get_u32(g, "llama.embedding_length"), 64);
        assert_int_equal(get_u32(g, "llama.feed_forward_length"), 96);
        assert_int_equal(get_u32(g, "llama.attention.head_count"), 4);
        assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 2);
        assert_int_equal(get_u32(g, "llama.rope.dimension_count"), 16);
        assert_int_equal(get_u32(g, "llama.context_length"), 2048);
        assert_int_equal(get_u32(g, "llama.vocab_size"), 300);
        float f;
        assert_true(gguf_get_f32(g, "llama.rope.freq_base", &f) && f == 10000.0f);
        assert_true(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f) && f == 1e-5f);
        uint64_t n;
        assert_true(gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n) && n == 300);
        sy_slice_t s;
        assert_true(gguf_arr_str(g, "tokenizer.ggml.tokens", 3 + 0x41, &s));
        assert_slice(s, "<0x41>");
        assert_int_equal(gguf_n_tensors(g), 3 + 9 * 2);
        assert_tensor(g, 0, "token_embd.weight", tt[i], 64, 300);
        assert_tensor(g, 1, "output_norm.weight", GGUF_TT_F32, 64, 1);
        assert_tensor(g, 2, "output.weight", tt[i], 64, 300);
        assert_tensor(g, 3, "blk.0.attn_norm.weight", GGUF_TT_F32, 64, 1);
        assert_tensor(g, 4, "blk.0.attn_q.weight", tt[i], 64, 64);
        assert_tensor(g, 5, "blk.0.attn_k.weight", tt[i], 64, 32);
        assert_tensor(g, 6, "blk.0.attn_v.weight", tt[i], 64, 32);
        assert_tensor(g, 7, "blk.0.attn_output.weight", tt[i], 64, 64);
        assert_tensor(g, 8, "blk.0.ffn_norm.weight", GGUF_TT_F32, 64, 1);
        assert_tensor(g, 9, "blk.0.ffn_gate.weight", tt[i], 64, 96);
        assert_tensor(g, 10, "blk.0.ffn_up.weight", tt[i], 64, 96);
        assert_tensor(g, 11, "blk.0.ffn_down.weight", tt[i], 96, 64);
        assert_non_null(gguf_find_tensor(g, "blk.1.ffn_down.weight"));
        const float *norm = gguf_find_tensor(g, "output_norm.weight")->data;
        for (int j = 0; j < 64; j++)
            assert_true(norm[j] > 0.98f && norm[j] < 1.02f && norm[j] != 1.0f);
        if (tt[i] == GGUF_TT_F32) {
            const gguf_tensor_t *q = gguf_find_tensor(g, "blk.0.attn_q.weight");
            const float *w = q->data;
            double sum2 = 0;
            for (uint64_t j = 0; j < q->n_elems; j++) {
                assert_true(fabsf(w[j]) < 0.035f);
                sum2 += (double)w[j] * w[j];
            }
            double sd = sqrt(sum2 / (double)q->n_elems);
            assert_true(sd > 0.018 && sd < 0.022);
        }
        gguf_close(g);
    }
    /* deterministic per seed */
    assert_int_equal(run_synth(a, "Q8_0", "7", NULL), 0);
    assert_int_equal(run_synth(b2, "Q8_0", "7", NULL), 0);
    assert_int_equal(run_synth(c, "Q8_0", "8", NULL), 0);
    size_t la, lb, lc;
    char *pa = slurp(a, &la), *pb = slurp(b2, &lb), *pc = slurp(c, &lc);
    assert_int_equal(la, lb);
    assert_int_equal(memcmp(pa, pb, la), 0);
    assert_int_equal(la, lc);
    assert_true(memcmp(pa, pc, la) != 0);
    free(pa), free(pb), free(pc);
    /* usage errors */
    char *bad1[] = {"gguf-synth", "--out", a, "--type", "Q4_1", NULL};
    assert_int_equal(gguf_synth_main(5, bad1), 2);
    char *bad2[] = {"gguf-synth", "--out", a, "--type", "Q8_0", "--ff", "100", NULL};
    assert_int_equal(gguf_synth_main(7, bad2), 2);
    char *bad3[] = {"gguf-synth", NULL};
    assert_int_equal(gguf_synth_main(1, bad3), 2);
    /* vocabulary copied from a real file */
    char src[4096];
    if (model_path("stories260K.gguf", src, sizeof src)) {
        assert_int_equal(run_synth(a, "F16", "1", src), 0);
        char err[256];
        gguf_t *g = NULL, *s = NULL;
        assert_int_equal(gguf_open(a, &g, err, sizeof err), ST_OK);
        assert_int_equal(gguf_open(src, &s, err, sizeof err), ST_OK);
        assert_int_equal(get_u32(g, "llama.vocab_size"), 512);
        assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->ne[1], 512);
        size_t copied = 0;
        for (size_t i = 0; i < gguf_n_kv(s); i++) {
            sy_slice_t k = gguf_key(s, i);
            if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10) != 0)
                continue;
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
            int64_t j = gguf_find(g, key);
            assert_true(j >= 0);
            const void *r1, *r2;
            size_t l1, l2;
            gguf_kv_raw(s, i, &r1, &l1);
            gguf_kv_raw(g, (size_t)j, &r2, &l2);
            assert_int_equal(l1, l2);
            assert_int_equal(memcmp(r1, r2, l1), 0);
            copied++;
        }
        assert_true(copied >= 7);
        gguf_close(s);
        gguf_close(g);
    }
    unlink(a), unlink(b2), unlink(c);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_tiny_random),
        cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_llama_spm_add_bos),
        cmocka_unit_test(test_roundtrip_values),
        cmocka_unit_test(test_roundtrip_tensors),
        cmocka_unit_test(test_hostile_header),
        cmocka_unit_test(test_hostile_metadata),
        cmocka_unit_test(test_hostile_tensors),
        cmocka_unit_test(test_alloc_bounded),
        cmocka_unit_test(test_quant_q8_0),
        cmocka_unit_test(test_quant_q4_0),
        cmocka_unit_test(test_half_exact),
        cmocka_unit_test(test_half_rounding),
        cmocka_unit_test(test_synth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
