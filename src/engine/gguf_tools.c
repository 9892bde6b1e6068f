/*
 * gguf_tools.c - `switchyard gguf-synth` (synthetic llama GGUF with random weights) and
 * `switchyard gguf-info` (header, metadata and tensor table of a GGUF file).
 *
 * gguf-synth: weights are uniform in [-a, a] with a = 0.02*sqrt(3) (standard deviation 0.02),
 * norms 1.0 + uniform(-0.01, 0.01); each tensor has its own splitmix64 stream seeded from
 * (--seed, tensor index), so the bytes depend only on the seed and the shape. Norms stay F32;
 * every matrix, token_embd.weight and output.weight included (untied), takes --type, as
 * llama.cpp's quantizer does for the legacy types. Data is produced tensor by tensor at write
 * time (nothing model-sized is held in memory). Without --vocab-from a placeholder vocabulary is
 * written (tokenizer.ggml.model "llama": 0 <unk>, 1 <s>, 2 </s>, 3..258 the byte tokens
 * <0x00>..<0xFF> (type 6), the rest "<synth_N>" of type UNUSED (5), all scores 0), so every text
 * tokenizes through byte fallback.
 * Does not: produce meaningful weights.
 * Thread-safety: process entry points.
 */
#include "engine/gguf_tools.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/half.h"
#include "common/status.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"

/* ---- gguf-synth ---- */

typedef struct synth_shape {
    const char *name;
    uint64_t dim, layers, heads, kv_heads, ff, vocab, ctx;
} synth_shape_t;

static const synth_shape_t k_shapes[] = {
    {"stories", 64, 5, 8, 4, 172, 512, 2048},
    {"110M", 768, 12, 12, 12, 2048, 32000, 2048},
    {"1B", 2048, 16, 32, 8, 5632, 32000, 2048},
};

typedef struct synth {
    uint64_t seed;
    gguf_ttype_t wtype;
    const bool *is_norm; /* per tensor */
    float *stage;        /* SYNTH_STAGE floats */
} synth_t;

#define SYNTH_STAGE (64u * 1024u) /* floats per conversion chunk, a multiple of 32 */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float rnd_sym(uint64_t *s)
{
    return (float)(splitmix64(s) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static int synth_fill(void *udata, size_t ti, void *dst, size_t n_bytes)
{
    synth_t *sy = udata;
    uint64_t st = sy->seed * 0x100000001b3ull + (uint64_t)(ti + 1) * 0x9e3779b97f4a7c15ull;
    if (sy->is_norm[ti]) {
        float *y = dst;
        for (size_t i = 0; i < n_bytes / 4; i++)
            y[i] = 1.0f + 0.01f * rnd_sym(&st);
        return ST_OK;
    }
    const float a = 0.034641016f; /* 0.02 * sqrt(3) */
    uint32_t be, bb;
    gguf_ttype_block(sy->wtype, &be, &bb);
    size_t n = n_bytes / bb * be;
    uint8_t *out = dst;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < SYNTH_STAGE ? n - done : SYNTH_STAGE;
        float *x = sy->wtype == GGUF_TT_F32 ? (float *)(void *)out : sy->stage;
        for (size_t i = 0; i < k; i++)
            x[i] = a * rnd_sym(&st);
        switch (sy->wtype) {
        case GGUF_TT_F32:
            break;
        case GGUF_TT_F16:
            ggufw_f32_to_f16(x, (uint16_t *)(void *)out, k);
            break;
        case GGUF_TT_BF16:
            ggufw_f32_to_bf16(x, (uint16_t *)(void *)out, k);
            break;
        case GGUF_TT_Q8_0:
            ggufw_quantize_q8_0(x, out, k);
            break;
        case GGUF_TT_Q4_0:
            ggufw_quantize_q4_0(x, out, k);
            break;
        default:
            return ST_INVAL;
        }
        out += k / be * bb;
        done += k;
    }
    return ST_OK;
}

static int parse_type(const char *s, gguf_ttype_t *t, uint32_t *file_type)
{
    static const struct {
        const char *name;
        gguf_ttype_t t;
        uint32_t ftype; /* llama.cpp general.file_type */
    } k[] = {
        {"F32", GGUF_TT_F32, 0},   {"F16", GGUF_TT_F16, 1},   {"BF16", GGUF_TT_BF16, 32},
        {"Q8_0", GGUF_TT_Q8_0, 7}, {"Q4_0", GGUF_TT_Q4_0, 2},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (strcasecmp(s, k[i].name) == 0) {
            *t = k[i].t;
            *file_type = k[i].ftype;
            return ST_OK;
        }
    }
    return ST_INVAL;
}

/* Copies every tokenizer.* pair of src; *vocab = length of tokenizer.ggml.tokens. */
static int copy_vocab(ggufw_t *w, const gguf_t *src, uint64_t *vocab, char *err, size_t errlen)
{
    gguf_vtype_t et;
    if (!gguf_get_arr(src, "tokenizer.ggml.tokens", &et, vocab) || et != GGUF_VT_STRING ||
        *vocab == 0) {
        sy_errf(err, errlen, "it has no tokenizer.ggml.tokens string array");
        return ST_INVAL;
    }
    for (size_t i = 0; i < gguf_n_kv(src); i++) {
        sy_slice_t k = gguf_key(src, i);
        if (k.len < 10 || memcmp(k.ptr, "tokenizer.", 10) != 0)
            continue;
        char *key = sy_strndup(k.ptr, k.len);
        if (!key)
            return ST_NOMEM;
        const void *raw;
        size_t len;
        gguf_kv_raw(src, i, &raw, &len);
        int rc = ggufw_add_raw(w, key, gguf_type(src, i), raw, len);
        sy_free(key);
        if (rc != ST_OK) {
            sy_errf(err, errlen, "copying %.*s: %s", (int)k.len, k.ptr, st_str(rc));
            return rc;
        }
    }
    return ST_OK;
}

static int placeholder_vocab(ggufw_t *w, uint64_t vocab)
{
    int rc = ST_NOMEM;
    sy_slice_t *toks = sy_calloc((size_t)vocab, sizeof *toks);
    char *text = sy_malloc((size_t)vocab * 24);
    float *scores = sy_calloc((size_t)vocab, sizeof *scores);
    int32_t *types = sy_calloc((size_t)vocab, sizeof *types);
    if (!toks || !text || !scores || !types)
        goto fail;
    for (uint64_t i = 0; i < vocab; i++) {
        char *p = text + i * 24;
        int n;
        if (i == 0) {
            n = snprintf(p, 24, "<unk>");
            types[i] = 2;
        } else if (i == 1 || i == 2) {
            n = snprintf(p, 24, i == 1 ? "<s>" : "</s>");
            types[i] = 3;
        } else if (i < 259) {
            n = snprintf(p, 24, "<0x%02X>", (unsigned)(i - 3));
            types[i] = 6;
        } else {
            n = snprintf(p, 24, "<synth_%" PRIu64 ">", i);
            types[i] = 5;
        }
        toks[i].ptr = p;
        toks[i].len = (size_t)n;
    }
    static const char model[] = "llama";
    if ((rc = ggufw_add_str(w, "tokenizer.ggml.model", model, sizeof model - 1)) ||
        (rc = ggufw_add_arr_str(w, "tokenizer.ggml.tokens", toks, vocab)) ||
        (rc = ggufw_add_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, vocab)) ||
        (rc = ggufw_add_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, vocab)) ||
        (rc = ggufw_add_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (rc = ggufw_add_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (rc = ggufw_add_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (rc = ggufw_add_bool(w, "tokenizer.ggml.add_bos_token", true)) ||
        (rc = ggufw_add_bool(w, "tokenizer.ggml.add_eos_token", false)))
        goto fail;
    rc = ST_OK;
fail:
    sy_free(types);
    sy_free(scores);
    sy_free(text);
    sy_free(toks);
    return rc;
}

static int synth_usage(const cli_spec_t *spec, FILE *f)
{
    sy_buf_t b = SY_BUF_INIT;
    cli_usage(spec, &b);
    fputs(b.data ? b.data : "", f);
    sy_buf_deinit(&b);
    return 0;
}

int gguf_synth_main(int argc, char **argv)
{
    const char *out = NULL, *shape_name = NULL, *type_name = "F32", *vocab_from = NULL;
    uint64_t dim = 0, layers = 0, heads = 0, kv_heads = 0, ff = 0, vocab = 0, ctx = 0, seed = 1;
    const cli_opt_t opts[] = {
        {"out", "FILE", CLI_STRING, &out, "output file (required)", NULL},
        {"shape", "NAME", CLI_STRING, &shape_name,
         "preset: stories (dim 64, 5 layers, 8/4 heads, FFN 172, vocab 512), 110M (768, 12, 12/12, "
         "2048, 32000), 1B (2048, 16, 32/8, 5632, 32000); flags below override it",
         "stories"},
        {"dim", "N", CLI_UINT, &dim, "embedding length", NULL},
        {"layers", "N", CLI_UINT, &layers, "number of blocks", NULL},
        {"heads", "N", CLI_UINT, &heads, "attention heads", NULL},
        {"kv-heads", "N", CLI_UINT, &kv_heads, "key/value heads (GQA)",
         "the shape's; --heads when --heads is given"},
        {"ff", "N", CLI_UINT, &ff, "feed-forward length", NULL},
        {"vocab", "N", CLI_UINT, &vocab, "vocabulary size (>= 259 for the placeholder vocab)",
         NULL},
        {"ctx", "N", CLI_UINT, &ctx, "llama.context_length", "2048"},
        {"type", "TYPE", CLI_STRING, &type_name,
         "type of the matrices and embeddings: F32, F16, BF16, Q8_0 or Q4_0 (norms stay F32)",
         "F32"},
        {"vocab-from", "FILE.gguf", CLI_STRING, &vocab_from,
         "copy every tokenizer.* key from this GGUF (vocab size follows it)", NULL},
        {"seed", "N", CLI_UINT, &seed, "random seed (same seed and shape, same bytes)", "1"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard gguf-synth",
        .summary = "Writes a llama-architecture GGUF v3 with random weights (uniform, std 0.02; "
                   "norms 1 + small noise), for benchmarks and tests. Without --vocab-from the "
                   "vocabulary is a placeholder: <unk> <s> </s>, the 256 byte tokens, then unused "
                   "<synth_N> tokens.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    char err[512];
    int rc = cli_parse(&spec, argc, argv, NULL, NULL, err, sizeof err);
    if (rc == CLI_HELP)
        return synth_usage(&spec, stdout);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gguf-synth: %s (see --help)\n", err);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "switchyard gguf-synth: --out FILE is required (see --help)\n");
        return 2;
    }
    const synth_shape_t *sh = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++) {
        if (strcasecmp(shape_name ? shape_name : "stories", k_shapes[i].name) == 0)
            sh = &k_shapes[i];
    }
    if (!sh) {
        fprintf(stderr, "switchyard gguf-synth: unknown --shape '%s' (stories, 110M or 1B)\n",
                shape_name);
        return 2;
    }
    gguf_ttype_t wtype;
    uint32_t file_type;
    if (parse_type(type_name, &wtype, &file_type) != ST_OK) {
        fprintf(stderr,
                "switchyard gguf-synth: unknown --type '%s' (F32, F16, BF16, Q8_0 or Q4_0)\n",
                type_name);
        return 2;
    }
    bool heads_given = heads != 0;
    dim = dim ? dim : sh->dim;
    layers = layers ? layers : sh->layers;
    heads = heads ? heads : sh->heads;
    kv_heads = kv_heads ? kv_heads : (heads_given ? heads : sh->kv_heads);
    ff = ff ? ff : sh->ff;
    ctx = ctx ? ctx : sh->ctx;
    uint64_t vocab_flag = vocab;
    vocab = vocab ? vocab : sh->vocab;
    const char *bad = NULL;
    uint32_t be = 1;
    gguf_ttype_block(wtype, &be, NULL);
    if (dim > 65536 || layers > 1024 || ff > 1u << 20 || heads > 4096 || ctx > UINT32_MAX)
        bad = "a dimension is too large (dim <= 65536, layers <= 1024, ff <= 2^20, heads <= 4096)";
    else if (dim % heads != 0)
        bad = "--dim must be a multiple of --heads";
    else if (heads % kv_heads != 0)
        bad = "--heads must be a multiple of --kv-heads";
    else if ((dim / heads) % 2 != 0)
        bad = "the head dimension (dim / heads) must be even for RoPE";
    else if (dim % be != 0 || ff % be != 0)
        bad = "--dim and --ff must be multiples of 32 for a quantized --type";
    if (bad) {
        fprintf(stderr, "switchyard gguf-synth: %s\n", bad);
        return 2;
    }

    int code = 1;
    ggufw_t *w = ggufw_create();
    gguf_t *src = NULL;
    bool *is_norm = NULL;
    float *stage = NULL;
    if (!w)
        goto oom;
    if (vocab_from) {
        rc = gguf_open(vocab_from, &src, err, sizeof err);
        if (rc != ST_OK) {
            fprintf(stderr, "switchyard gguf-synth: %s: %s\n", vocab_from, err);
            goto done;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "switchyard-synth-%s-%s", sh->name, gguf_ttype_name(wtype));
    uint64_t kv_dim = dim / heads * kv_heads;
    if ((rc = ggufw_add_str(w, "general.architecture", "llama", 5)) ||
        (rc = ggufw_add_str(w, "general.name", name, strlen(name))) ||
        (rc = ggufw_add_u32(w, "general.file_type", file_type)) ||
        (rc = ggufw_add_u32(w, "general.quantization_version", 2)) ||
        (rc = ggufw_add_u32(w, "llama.context_length", (uint32_t)ctx)) ||
        (rc = ggufw_add_u32(w, "llama.embedding_length", (uint32_t)dim)) ||
        (rc = ggufw_add_u32(w, "llama.block_count", (uint32_t)layers)) ||
        (rc = ggufw_add_u32(w, "llama.feed_forward_length", (uint32_t)ff)) ||
        (rc = ggufw_add_u32(w, "llama.attention.head_count", (uint32_t)heads)) ||
        (rc = ggufw_add_u32(w, "llama.attention.head_count_kv", (uint32_t)kv_heads)) ||
        (rc = ggufw_add_u32(w, "llama.rope.dimension_count", (uint32_t)(dim / heads))) ||
        (rc = ggufw_add_f32(w, "llama.rope.freq_base", 10000.0f)) ||
        (rc = ggufw_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)))
        goto fail_rc;
    if (src) {
        uint64_t v;
        rc = copy_vocab(w, src, &v, err, sizeof err);
        if (rc != ST_OK) {
            fprintf(stderr, "switchyard gguf-synth: --vocab-from %s: %s\n", vocab_from, err);
            goto done;
        }
        if (vocab_flag && vocab_flag != v) {
            fprintf(stderr,
                    "switchyard gguf-synth: --vocab %" PRIu64 " contradicts --vocab-from (%" PRIu64
                    " tokens)\n",
                    vocab_flag, v);
            code = 2;
            goto done;
        }
        vocab = v;
    } else {
        if (vocab < 259 || vocab > (1u << 24)) {
            fprintf(stderr, "switchyard gguf-synth: --vocab must be 259..2^24 for the placeholder "
                            "vocabulary (3 special + 256 byte tokens)\n");
            code = 2;
            goto done;
        }
        if ((rc = placeholder_vocab(w, vocab)) != ST_OK)
            goto fail_rc;
    }
    if ((rc = ggufw_add_u32(w, "llama.vocab_size", (uint32_t)vocab)) != ST_OK)
        goto fail_rc;

    size_t n_t = 3 + 9 * (size_t)layers;
    is_norm = sy_calloc(n_t, sizeof *is_norm);
    stage = sy_malloc(SYNTH_STAGE * sizeof *stage);
    if (!is_norm || !stage)
        goto oom;
#define ADD(nm, norm, nd, a0, a1)                                                                  \
    do {                                                                                           \
        uint64_t ne_[2] = {(a0), (a1)};                                                            \
        is_norm[ggufw_n_tensors(w)] = (norm);                                                      \
        if ((rc = ggufw_add_tensor(w, (nm), (norm) ? GGUF_TT_F32 : wtype, (nd), ne_, NULL)))       \
            goto fail_rc;                                                                          \
    } while (0)
    ADD("token_embd.weight", false, 2, dim, vocab);
    ADD("output_norm.weight", true, 1, dim, 1);
    ADD("output.weight", false, 2, dim, vocab);
    for (uint64_t l = 0; l < layers; l++) {
        char tn[64];
#define LAYER(suffix, norm, nd, a0, a1)                                                            \
    do {                                                                                           \
        snprintf(tn, sizeof tn, "blk.%" PRIu64 ".%s", l, suffix);                                  \
        ADD(tn, norm, nd, a0, a1);                                                                 \
    } while (0)
        LAYER("attn_norm.weight", true, 1, dim, 1);
        LAYER("attn_q.weight", false, 2, dim, dim);
        LAYER("attn_k.weight", false, 2, dim, kv_dim);
        LAYER("attn_v.weight", false, 2, dim, kv_dim);
        LAYER("attn_output.weight", false, 2, dim, dim);
        LAYER("ffn_norm.weight", true, 1, dim, 1);
        LAYER("ffn_gate.weight", false, 2, dim, ff);
        LAYER("ffn_up.weight", false, 2, dim, ff);
        LAYER("ffn_down.weight", false, 2, ff, dim);
#undef LAYER
    }
#undef ADD
    synth_t sy = {.seed = seed, .wtype = wtype, .is_norm = is_norm, .stage = stage};
    rc = ggufw_write_file(w, out, synth_fill, &sy, err, sizeof err);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gguf-synth: %s\n", err);
        goto done;
    }
    printf("wrote %s: llama dim %" PRIu64 ", %" PRIu64 " layers, %" PRIu64 "/%" PRIu64
           " heads, ff %" PRIu64 ", vocab %" PRIu64 ", %s\n",
           out, dim, layers, heads, kv_heads, ff, vocab, gguf_ttype_name(wtype));
    code = 0;
    goto done;
oom:
    rc = ST_NOMEM;
fail_rc:
    fprintf(stderr, "switchyard gguf-synth: %s\n", st_str(rc));
done:
    sy_free(stage);
    sy_free(is_norm);
    gguf_close(src);
    ggufw_destroy(w);
    return code;
}

/* ---- gguf-info ---- */

static void print_str(sy_slice_t s, size_t max)
{
    sy_buf_t b = SY_BUF_INIT;
    size_t n = s.len > max ? sy_utf8_complete_prefix(s.ptr, max) : s.len;
    sy_buf_append_char(&b, '"');
    sy_buf_append_json_str(&b, s.ptr, n);
    sy_buf_append_char(&b, '"');
    if (n < s.len)
        sy_buf_appendf(&b, "... (%zu bytes)", s.len);
    fputs(b.data ? b.data : "", stdout);
    sy_buf_deinit(&b);
}

static void print_scalar(const gguf_t *g, size_t i)
{
    uint64_t u;
    int64_t v;
    double d;
    bool bl;
    sy_slice_t s;
    if (gguf_kv_u64(g, i, &u))
        printf("%" PRIu64, u);
    else if (gguf_kv_i64(g, i, &v))
        printf("%" PRId64, v);
    else if (gguf_kv_f64(g, i, &d))
        printf("%.9g", d);
    else if (gguf_kv_bool(g, i, &bl))
        printf("%s", bl ? "true" : "false");
    else if (gguf_kv_str(g, i, &s))
        print_str(s, 200);
}

static void print_array(const gguf_t *g, size_t i, uint64_t max_items)
{
    gguf_vtype_t et;
    uint64_t n;
    gguf_kv_arr(g, i, &et, &n);
    printf("[%" PRIu64 "]", n);
    for (uint64_t j = 0; j < n && j < max_items; j++) {
        fputs(j ? ", " : " ", stdout);
        sy_slice_t s;
        int64_t v;
        float f;
        if (gguf_arr_str_at(g, i, j, &s)) {
            print_str(s, 40);
        } else if (gguf_arr_i64_at(g, i, j, &v)) {
            printf("%" PRId64, v);
        } else if (gguf_arr_f32_at(g, i, j, &f)) {
            printf("%.9g", f);
        } else {
            const uint8_t *p = gguf_arr_data(g, i, NULL, NULL);
            if (et == GGUF_VT_BOOL && p)
                printf("%s", p[j] ? "true" : "false");
            else if (et == GGUF_VT_UINT64 && p) {
                uint64_t x;
                memcpy(&x, p + 8 * j, 8);
                printf("%" PRIu64, x);
            }
        }
    }
    if (n > max_items)
        fputs(", ...", stdout);
}

int gguf_info_main(int argc, char **argv)
{
    uint64_t items = 8;
    const cli_opt_t opts[] = {
        {"items", "N", CLI_UINT, &items, "array elements shown per key", "8"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard gguf-info",
        .summary = "Prints a GGUF file's version, metadata (arrays summarized) and tensor table. "
                   "Exits 1 with the reader's message when the file is refused.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
        .max_positional = 1,
        .positional = "FILE.gguf",
    };
    const char *pos[1] = {NULL};
    size_t npos = 0;
    char err[512];
    int rc = cli_parse(&spec, argc, argv, pos, &npos, err, sizeof err);
    if (rc == CLI_HELP)
        return synth_usage(&spec, stdout);
    if (rc != ST_OK || npos != 1) {
        fprintf(stderr, "switchyard gguf-info: %s (see --help)\n",
                rc != ST_OK ? err : "expected one FILE.gguf");
        return 2;
    }
    gguf_t *g = NULL;
    rc = gguf_open(pos[0], &g, err, sizeof err);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gguf-info: %s: %s\n", pos[0], err);
        return 1;
    }
    printf("%s: GGUF v%" PRIu32 ", %zu bytes, %zu metadata keys, %zu tensors, alignment %" PRIu32
           ", tensor data at offset %zu\n",
           pos[0], gguf_version(g), gguf_size(g), gguf_n_kv(g), gguf_n_tensors(g),
           gguf_alignment(g), gguf_data_offset(g));
    printf("metadata:\n");
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        sy_slice_t k = gguf_key(g, i);
        gguf_vtype_t t = gguf_type(g, i), et;
        printf("  %-44.*s ", (int)k.len, k.ptr);
        if (gguf_kv_arr(g, i, &et, NULL)) {
            printf("%s[%s] ", gguf_vtype_name(t), gguf_vtype_name(et));
            print_array(g, i, items);
        } else {
            printf("%-6s ", gguf_vtype_name(t));
            print_scalar(g, i);
        }
        putchar('\n');
    }
    printf("tensors:\n");
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor(g, i);
        char shape[128];
        int o = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%" PRIu64, d ? ", " : "",
                          t->ne[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        printf("  %4zu %-40.*s %-5s %-22s offset %-12" PRIu64 " %zu bytes\n", i, (int)t->name.len,
               t->name.ptr, gguf_ttype_name(t->type), shape, t->offset, t->n_bytes);
        params += t->n_elems;
        bytes += t->n_bytes;
    }
    printf("total: %zu tensors, %" PRIu64 " elements, %" PRIu64 " bytes\n", gguf_n_tensors(g),
           params, bytes);
    gguf_close(g);
    return 0;
}
