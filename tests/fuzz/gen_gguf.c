/*
 * gen_gguf.c - writes the seed corpus of fuzz_gguf into a directory at test time (ctest runs it
 * as the setup fixture of fuzz_replay_gguf), so no GGUF file is committed: a header-only file,
 * every metadata value type (also as GGUF v2), tensors of every accepted type, a vocab-only
 * tokenizer file and a tiny llama model, all built with our own writer (gguf_write.h).
 * Usage: gen_gguf DIR. Exit 0, or 1 with a message.
 */
#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "engine/gguf_write.h"

static int save(const char *dir, const char *name, ggufw_t *w, int version)
{
    sy_buf_t b = SY_BUF_INIT;
    int rc = ggufw_write_mem(w, &b, NULL, NULL);
    ggufw_destroy(w);
    if (rc == ST_OK && version == 2 && b.len > 4)
        b.data[4] = 2; /* the version field: v2 and v3 share the layout */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = rc == ST_OK ? fopen(path, "wb") : NULL;
    if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
        fprintf(stderr, "gen_gguf: cannot write %s (%s)\n", path, st_str(rc));
        sy_buf_deinit(&b);
        return 1;
    }
    sy_buf_deinit(&b);
    return 0;
}

static ggufw_t *values(void)
{
    ggufw_t *w = ggufw_create();
    static const int32_t i32[] = {1, -2, 3};
    static const float f32[] = {0.5f, -1.25f};
    static const bool bools[] = {true, false};
    sy_slice_t strs[] = {{"a", 1}, {"", 0}, {"\xe2\x96\x81x", 4}};
    ggufw_add_u8(w, "v.u8", 7);
    ggufw_add_i8(w, "v.i8", -7);
    ggufw_add_u16(w, "v.u16", 700);
    ggufw_add_i16(w, "v.i16", -700);
    ggufw_add_u32(w, "v.u32", 70000);
    ggufw_add_i32(w, "v.i32", -70000);
    ggufw_add_u64(w, "v.u64", 7000000000ull);
    ggufw_add_i64(w, "v.i64", -7000000000ll);
    ggufw_add_f32(w, "v.f32", 1.5f);
    ggufw_add_f64(w, "v.f64", -2.5);
    ggufw_add_bool(w, "v.bool", true);
    ggufw_add_str(w, "v.str", "hello", 5);
    ggufw_add_arr(w, "a.i32", GGUF_VT_INT32, i32, 3);
    ggufw_add_arr(w, "a.f32", GGUF_VT_FLOAT32, f32, 2);
    ggufw_add_arr(w, "a.bool", GGUF_VT_BOOL, bools, 2);
    ggufw_add_arr_str(w, "a.str", strs, 3);
    return w;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_gguf DIR\n");
        return 1;
    }
    const char *dir = argv[1];
    int bad = 0;
    bad |= save(dir, "empty.gguf", ggufw_create(), 3);
    bad |= save(dir, "values.gguf", values(), 3);
    bad |= save(dir, "values-v2.gguf", values(), 2);

    /* tensors of every accepted type, with known contents */
    ggufw_t *w = ggufw_create();
    static float x[1024];
    for (int i = 0; i < 1024; i++)
        x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    static uint16_t h[256], bf[256];
    static uint8_t q8[8 * 34], q4[8 * 18], k4[144], k6[210];
    ggufw_f32_to_f16(x, h, 256);
    ggufw_f32_to_bf16(x, bf, 256);
    ggufw_quantize_q8_0(x, q8, 256);
    ggufw_quantize_q4_0(x, q4, 256);
    memset(k4, 0x11, sizeof k4);
    memset(k6, 0x22, sizeof k6);
    uint64_t ne1[1] = {256}, ne2[2] = {32, 8}, ne3[3] = {32, 2, 4};
    ggufw_add_str(w, "general.architecture", "llama", 5);
    ggufw_add_tensor(w, "f32", GGUF_TT_F32, 2, ne2, x);
    ggufw_add_tensor(w, "f16", GGUF_TT_F16, 1, ne1, h);
    ggufw_add_tensor(w, "bf16", GGUF_TT_BF16, 3, ne3, bf);
    ggufw_add_tensor(w, "q8_0", GGUF_TT_Q8_0, 2, ne2, q8);
    ggufw_add_tensor(w, "q4_0", GGUF_TT_Q4_0, 1, ne1, q4);
    ggufw_add_tensor(w, "q4_k", GGUF_TT_Q4_K, 1, ne1, k4);
    ggufw_add_tensor(w, "q6_k", GGUF_TT_Q6_K, 1, ne1, k6);
    bad |= save(dir, "tensors.gguf", w, 3);

    /* a vocab-only BPE tokenizer file */
    w = ggufw_create();
    sy_slice_t toks[] = {{"a", 1}, {"b", 1}, {"ab", 2}, {"<s>", 3}};
    sy_slice_t merges[] = {{"a b", 3}};
    static const int32_t types[] = {1, 1, 1, 3};
    ggufw_add_str(w, "tokenizer.ggml.model", "gpt2", 4);
    ggufw_add_str(w, "tokenizer.ggml.pre", "gpt-2", 5);
    ggufw_add_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    ggufw_add_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, 4);
    ggufw_add_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    ggufw_add_u32(w, "tokenizer.ggml.bos_token_id", 3);
    bad |= save(dir, "vocab-only.gguf", w, 3);

    /* a tiny llama model: dim 32, 1 layer, vocab 8 */
    w = ggufw_create();
    ggufw_add_str(w, "general.architecture", "llama", 5);
    ggufw_add_u32(w, "llama.block_count", 1);
    ggufw_add_u32(w, "llama.embedding_length", 32);
    ggufw_add_u32(w, "llama.feed_forward_length", 32);
    ggufw_add_u32(w, "llama.attention.head_count", 4);
    ggufw_add_u32(w, "llama.context_length", 64);
    uint64_t emb[2] = {32, 8}, sq[2] = {32, 32}, v1[1] = {32};
    ggufw_add_tensor(w, "token_embd.weight", GGUF_TT_F32, 2, emb, x);
    ggufw_add_tensor(w, "output_norm.weight", GGUF_TT_F32, 1, v1, x);
    ggufw_add_tensor(w, "blk.0.attn_q.weight", GGUF_TT_F32, 2, sq, x);
    bad |= save(dir, "llama-mini.gguf", w, 3);
    return bad ? 1 : 0;
}
