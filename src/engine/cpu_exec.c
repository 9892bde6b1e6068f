/*
 * cpu_exec.c - the llama forward pass on the CPU, one scheduler step at a time.
 *
 * One step (cpux_execute), for the T tokens of all plan items together:
 *   embed      x[T][dim] = rows of token_embd (dequantized)
 *   per layer  xb = rmsnorm(x) ; q,k,v = xb Wq, Wk, Wv (one GEMM each over all T tokens)
 *              RoPE on q and k ("normal" layout, adjacent pairs: GGUF llama files from HF have
 *              q/k rows permuted for it) ; k,v -> pool slot (block_table[pos / bs], pos % bs)
 *              attention, flash style: per item, query tiles of att_tq tokens x the
 *              n_heads / n_kv_heads query heads of one KV head (GQA head h -> kv head
 *              h / group); each KV block of the sequence (read through the block table,
 *              prefix-cached blocks as they are) is loaded once per tile and folded into every
 *              row's running max / sum / acc (kern_attn_block), causal per row ; x += att Wo
 *              xb = rmsnorm(x) ; x += (silu(xb Wgate) * (xb Wup)) Wdown
 *   logits     only for items that sample: rmsnorm(x[last]) Wout, then the vLLM sampler
 *              (sampler.h; greedy = argmax, ties to the lowest id)
 *
 * KV pool layout: k_pool[layer][block][slot][kv_head][head_dim] (F32 or F16), v_pool the same.
 * Everything is allocated in cpux_create; execute only reads the plan, the sequences' tokens and
 * block tables and writes into the pool and scratch. A token's arithmetic does not depend on the
 * other tokens of the step (each matmul row, each attention row and each per-token step is
 * computed on its own: tile and task boundaries change which rows share a loop, never the order
 * of a row's sums), so a sequence's result does not depend on batching, chunking or the number
 * of threads, up to the kernels' own guarantees.
 * Threading: matmuls split output rows over the pool; attention runs tile x KV head tasks (per-
 * thread scratch from create) when the step has enough work; the per-token steps (embedding,
 * rmsnorm + residual, RoPE + K/V store, SwiGLU) split tokens when T >= GLUE_MIN_TOKENS. Small
 * steps (decode of one sequence) stay on the calling thread apart from the bigger matmuls.
 * Sampling: each sampling item goes through the vLLM sampler with its sequence's params
 * (penalties over seq->tokens, logprobs of the raw logits); sampler states come from a pool of
 * max_seqs states created at create with room for the penalties' distinct tokens, and the top
 * logprobs of item i land in lp_top[i * max_top ..] (also allocated at create).
 * Not yet: rope scaling other than linear; a decode-shaped attention kernel (one query token
 * per tile leaves most of kern_attn_block's row lanes empty).
 * Thread-safety: the engine core thread calls execute; the pool's workers run the tasks of one
 * matmul, attention or per-token step at a time (disjoint outputs, per-thread scratch).
 */
#include "engine/cpu_exec.h"

#include "engine/sampler.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/tpool.h"
#include "engine/kern.h"

/* A weight matrix W[n_out][n_in] in the mapping. */
typedef struct cpux_mat {
    kern_type_t type;
    const void *data;
    size_t n_out, n_in;
} cpux_mat_t;

typedef struct cpux_layer {
    const float *attn_norm; /* (dim) */
    cpux_mat_t wq;          /* (n_heads * head_dim, dim) */
    cpux_mat_t wk;          /* (n_kv_heads * head_dim, dim) */
    cpux_mat_t wv;          /* (n_kv_heads * head_dim, dim) */
    cpux_mat_t wo;          /* (dim, n_heads * head_dim) */
    const float *ffn_norm;  /* (dim) */
    cpux_mat_t w_gate;      /* (n_ff, dim) */
    cpux_mat_t w_up;        /* (n_ff, dim) */
    cpux_mat_t w_down;      /* (dim, n_ff) */
} cpux_layer_t;

typedef struct cpux_weights {
    cpux_mat_t tok_embd;   /* (vocab, dim) */
    const float *out_norm; /* (dim) */
    cpux_mat_t output;     /* (vocab, dim); token_embd when tied */
    cpux_layer_t *layers;  /* (n_layers) */
} cpux_weights_t;

typedef struct cpux_run {
    float *x;   /* (T, dim) residual stream */
    float *xb;  /* (T, dim) normed input of a sublayer */
    float *q;   /* (T, n_heads * head_dim) */
    float *k;   /* (T, kv_dim) */
    float *v;   /* (T, kv_dim) */
    float *att; /* (T, n_heads * head_dim) attention output */
    float *tmp; /* (T, dim) sublayer output before the residual add */
    float *hb;  /* (T, n_ff) gate, then silu(gate) * up */
    float *hb2; /* (T, n_ff) up */
    float *cs;  /* (T, n_rot) RoPE (cos, sin) pairs per token */
    /* attention work list and per-thread scratch (see att_task) */
    struct att_tile *tiles; /* (T) query tiles of the step */
    float *att_ws;          /* (threads, att_ws_floats) */
    uint32_t *att_nv;       /* (threads, att_ldq) visible keys per row of the current block */
    size_t att_ws_floats;
    uint32_t att_tq, att_ldq; /* query tokens per tile, padded rows per tile */
    float *xs;                /* (S, dim) final-normed hidden of sampling items */
    float *logits;            /* (S, vocab) */
    void *act;                /* activation quantization scratch (act_bytes) */
    size_t act_bytes;
    uint32_t *pos;           /* (T) position of each batch token */
    int32_t *tok;            /* (T) token id of each batch token */
    const uint32_t **tok_bt; /* (T) block table of each batch token's sequence */
    uint32_t n_logits;       /* sampled items of the last step */
} cpux_run_t;

typedef struct cpux {
    exec_t super;
    cpux_model_info_t cfg;
    cpux_weights_t w;
    cpux_run_t r;
    uint32_t num_blocks, block_size, max_tok, max_seqs;
    size_t kv_dim;
    bool kv_f16;
    void *k_pool; /* (n_layers, num_blocks, block_size, n_kv_heads, head_dim) */
    void *v_pool; /* same */
    tpool_t *pool;
    size_t n_threads; /* threads that may run tasks (1 without a pool) */
    /* sampling: one workspace, and a pool of max_seqs sampler states handed to sequences the
     * first time they sample and taken back in seq_done (no allocation in execute) */
    smp_ws_t *ws;
    struct {
        const sched_seq_t *seq; /* NULL = free */
        smp_state_t *st;
    } * smp;
    uint32_t n_smp;
    /* logprobs: top entries one item may ask for, the sampler's output for one item, and the
     * per-item lists handed out by execute (borrowed by the caller until the next execute) */
    uint32_t max_top;
    smp_logprob_t *lp_one;  /* (max_top) */
    exec_logprob_t *lp_top; /* (max_seqs, max_top) */
} cpux_t;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ loading */

/* Looks up a matrix stored as GGUF ne = [n_in, n_out]. */
static int load_mat(const gguf_t *g, const char *name, size_t n_out, size_t n_in, cpux_mat_t *m,
                    char *err, size_t errlen)
{
    const gguf_tensor_t *t = gguf_find_tensor(g, name);
    if (!t) {
        set_err(err, errlen, "tensor '%s' is missing", name);
        return ST_PROTO;
    }
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out) {
        set_err(err, errlen,
                "tensor '%s' has shape [%llu, %llu, %llu, %llu] (%u dims), expected [%zu, %zu]",
                name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], t->n_dims, n_in, n_out);
        return ST_PROTO;
    }
    kern_type_t kt = (kern_type_t)t->type;
    if (kern_block_elems(kt) == 0 || n_in % kern_block_elems(kt) != 0) {
        set_err(err, errlen, "tensor '%s' has type %s, which the CPU kernels do not support", name,
                gguf_ttype_name(t->type));
        return ST_PROTO;
    }
    m->type = kt;
    m->data = t->data;
    m->n_out = n_out;
    m->n_in = n_in;
    return ST_OK;
}

static int load_norm(const gguf_t *g, const char *name, size_t n, const float **out, char *err,
                     size_t errlen)
{
    const gguf_tensor_t *t = gguf_find_tensor(g, name);
    if (!t) {
        set_err(err, errlen, "tensor '%s' is missing", name);
        return ST_PROTO;
    }
    if (t->n_elems != n || t->ne[0] != n) {
        set_err(err, errlen, "tensor '%s' has %llu elements (ne0 %llu), expected %zu", name,
                (unsigned long long)t->n_elems, (unsigned long long)t->ne[0], n);
        return ST_PROTO;
    }
    if (t->type != GGUF_TT_F32) {
        set_err(err, errlen, "tensor '%s' has type %s; norm weights must be F32", name,
                gguf_ttype_name(t->type));
        return ST_PROTO;
    }
    if (((uintptr_t)t->data & 3u) != 0) {
        set_err(err, errlen, "tensor '%s' is not 4-byte aligned", name);
        return ST_PROTO;
    }
    *out = t->data;
    return ST_OK;
}

static int need_u32(const gguf_t *g, const char *key, uint32_t *out, char *err, size_t errlen)
{
    if (!gguf_get_u32(g, key, out) || *out == 0) {
        set_err(err, errlen, "metadata '%s' is missing or not a positive integer", key);
        return ST_PROTO;
    }
    return ST_OK;
}

static int read_config(const gguf_t *g, cpux_model_info_t *c, char *err, size_t errlen)
{
    sy_slice_t arch;
    if (!gguf_get_str(g, "general.architecture", &arch)) {
        set_err(err, errlen, "metadata 'general.architecture' is missing");
        return ST_PROTO;
    }
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5) != 0) {
        set_err(err, errlen, "unsupported architecture '%.*s' (the CPU executor runs 'llama')",
                (int)(arch.len > 64 ? 64 : arch.len), (const char *)arch.ptr);
        return ST_PROTO;
    }
    int rc;
    if ((rc = need_u32(g, "llama.block_count", &c->n_layers, err, errlen)) ||
        (rc = need_u32(g, "llama.embedding_length", &c->dim, err, errlen)) ||
        (rc = need_u32(g, "llama.feed_forward_length", &c->n_ff, err, errlen)) ||
        (rc = need_u32(g, "llama.attention.head_count", &c->n_heads, err, errlen)))
        return rc;
    if (!gguf_get_u32(g, "llama.attention.head_count_kv", &c->n_kv_heads))
        c->n_kv_heads = c->n_heads;
    if (c->n_kv_heads == 0 || c->n_heads % c->n_kv_heads != 0) {
        set_err(err, errlen, "head_count %u is not a multiple of head_count_kv %u", c->n_heads,
                c->n_kv_heads);
        return ST_PROTO;
    }
    if (c->dim % c->n_heads != 0) {
        set_err(err, errlen, "embedding_length %u is not a multiple of head_count %u", c->dim,
                c->n_heads);
        return ST_PROTO;
    }
    c->head_dim = c->dim / c->n_heads;
    uint32_t kl;
    if (gguf_get_u32(g, "llama.attention.key_length", &kl) && kl != c->head_dim) {
        set_err(err, errlen, "attention.key_length %u != embedding_length / head_count %u", kl,
                c->head_dim);
        return ST_PROTO;
    }
    if (!gguf_get_u32(g, "llama.rope.dimension_count", &c->n_rot))
        c->n_rot = c->head_dim;
    if (c->n_rot == 0 || c->n_rot % 2 != 0 || c->n_rot > c->head_dim) {
        set_err(err, errlen, "rope.dimension_count %u must be even and <= head_dim %u", c->n_rot,
                c->head_dim);
        return ST_PROTO;
    }
    if (!gguf_get_f32(g, "llama.rope.freq_base", &c->rope_base))
        c->rope_base = 10000.0f;
    if (!(c->rope_base > 0.0f) || !isfinite(c->rope_base)) {
        set_err(err, errlen, "rope.freq_base %g is not positive", (double)c->rope_base);
        return ST_PROTO;
    }
    c->rope_scale = 1.0f;
    sy_slice_t st;
    if (gguf_get_str(g, "llama.rope.scaling.type", &st) &&
        !(st.len == 4 && memcmp(st.ptr, "none", 4) == 0)) {
        float f;
        if (!(st.len == 6 && memcmp(st.ptr, "linear", 6) == 0)) {
            set_err(err, errlen, "rope scaling type '%.*s' is not supported (none, linear)",
                    (int)(st.len > 32 ? 32 : st.len), (const char *)st.ptr);
            return ST_PROTO;
        }
        if (gguf_get_f32(g, "llama.rope.scaling.factor", &f)) {
            if (!(f > 0.0f) || !isfinite(f)) {
                set_err(err, errlen, "rope.scaling.factor %g is not positive", (double)f);
                return ST_PROTO;
            }
            c->rope_scale = f;
        }
    }
    if (gguf_find_tensor(g, "rope_freqs.weight")) {
        set_err(err, errlen,
                "tensor 'rope_freqs.weight' (per-frequency RoPE factors, Llama 3.1 "
                "style) is not supported");
        return ST_PROTO;
    }
    if (!gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->rms_eps))
        c->rms_eps = 1e-5f;
    if (!(c->rms_eps > 0.0f) || !isfinite(c->rms_eps)) {
        set_err(err, errlen, "attention.layer_norm_rms_epsilon %g is not positive",
                (double)c->rms_eps);
        return ST_PROTO;
    }
    gguf_vtype_t et;
    uint64_t nv = 0;
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &nv)) {
        const gguf_tensor_t *t = gguf_find_tensor(g, "output.weight");
        if (!t)
            t = gguf_find_tensor(g, "token_embd.weight");
        if (!t) {
            set_err(err, errlen, "tensor 'token_embd.weight' is missing");
            return ST_PROTO;
        }
        nv = t->ne[1];
    }
    if (nv == 0 || nv > INT32_MAX) {
        set_err(err, errlen, "vocabulary size %llu is out of range", (unsigned long long)nv);
        return ST_PROTO;
    }
    c->vocab = (int32_t)nv;
    return ST_OK;
}

static int load_weights(cpux_t *x, const gguf_t *g, char *err, size_t errlen)
{
    const cpux_model_info_t *c = &x->cfg;
    size_t dim = c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = x->kv_dim;
    size_t V = (size_t)c->vocab;
    int rc;
    if ((rc = load_mat(g, "token_embd.weight", V, dim, &x->w.tok_embd, err, errlen)) ||
        (rc = load_norm(g, "output_norm.weight", dim, &x->w.out_norm, err, errlen)))
        return rc;
    if (gguf_find_tensor(g, "output.weight")) {
        if ((rc = load_mat(g, "output.weight", V, dim, &x->w.output, err, errlen)))
            return rc;
    } else {
        x->w.output = x->w.tok_embd; /* tied embeddings */
    }
    x->w.layers = sy_calloc(c->n_layers, sizeof *x->w.layers);
    if (!x->w.layers) {
        set_err(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    char name[96];
#define LNAME(s) (snprintf(name, sizeof name, "blk.%u." s ".weight", l), name)
    for (uint32_t l = 0; l < c->n_layers; l++) {
        cpux_layer_t *L = &x->w.layers[l];
        if ((rc = load_norm(g, LNAME("attn_norm"), dim, &L->attn_norm, err, errlen)) ||
            (rc = load_mat(g, LNAME("attn_q"), qd, dim, &L->wq, err, errlen)) ||
            (rc = load_mat(g, LNAME("attn_k"), kvd, dim, &L->wk, err, errlen)) ||
            (rc = load_mat(g, LNAME("attn_v"), kvd, dim, &L->wv, err, errlen)) ||
            (rc = load_mat(g, LNAME("attn_output"), dim, qd, &L->wo, err, errlen)) ||
            (rc = load_norm(g, LNAME("ffn_norm"), dim, &L->ffn_norm, err, errlen)) ||
            (rc = load_mat(g, LNAME("ffn_gate"), c->n_ff, dim, &L->w_gate, err, errlen)) ||
            (rc = load_mat(g, LNAME("ffn_up"), c->n_ff, dim, &L->w_up, err, errlen)) ||
            (rc = load_mat(g, LNAME("ffn_down"), dim, c->n_ff, &L->w_down, err, errlen)))
            return rc;
    }
#undef LNAME
    return ST_OK;
}

/* a * b into *out; false on overflow. */
static bool mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

static size_t act_need(const cpux_mat_t *m, size_t n_tok)
{
    return kern_act_bytes(m->type, m->n_in, n_tok);
}

/* One query tile: tokens [t0, t0 + nq) of the step, positions pos0.., of the sequence whose
 * block table is bt. */
typedef struct att_tile {
    const uint32_t *bt;
    uint32_t t0, nq, pos0;
} att_tile_t;

#define ATT_ROWS 64 /* query rows (tokens x heads of a KV group) per tile */

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Attention scratch for every thread: the tile geometry, then per thread qt (hd, ldq), m, l
 * (ldq), acc (ldq, hd), s (block_size, ldq), and kf, vf (block_size, hd) for F16 K/V. */
static int alloc_att(cpux_t *x, char *err, size_t errlen)
{
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    size_t G = c->n_heads / c->n_kv_heads, hd = c->head_dim, bs = x->block_size;
    r->att_tq = G >= ATT_ROWS ? 1 : (uint32_t)(ATT_ROWS / G);
    r->att_ldq = (uint32_t)round16(r->att_tq * G);
    size_t ldq = r->att_ldq, nth = x->n_threads;
    size_t f = round16(hd * ldq) + 2 * ldq + round16(ldq * hd) + round16(bs * ldq);
    if (x->kv_f16)
        f += 2 * round16(bs * hd);
    r->att_ws_floats = f;
    size_t n, bytes;
    if (!mul_ok(f, nth, &n) || !mul_ok(n, sizeof(float), &bytes)) {
        set_err(err, errlen, "attention scratch size overflows");
        return ST_LIMIT;
    }
    r->att_ws = sy_malloc(bytes + 64);
    r->att_nv = sy_calloc(nth * ldq, sizeof *r->att_nv);
    r->tiles = sy_malloc((size_t)x->max_tok * sizeof *r->tiles);
    if (!r->att_ws || !r->att_nv || !r->tiles) {
        set_err(err, errlen, "out of memory for attention scratch");
        return ST_NOMEM;
    }
    return ST_OK;
}

static int alloc_run(cpux_t *x, char *err, size_t errlen)
{
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    size_t T = x->max_tok, S = x->max_seqs;
    size_t qd = (size_t)c->n_heads * c->head_dim;
    struct {
        float **p;
        size_t a, b;
    } bufs[] = {
        {&r->x, T, c->dim},    {&r->xb, T, c->dim},   {&r->q, T, qd},
        {&r->k, T, x->kv_dim}, {&r->v, T, x->kv_dim}, {&r->att, T, qd},
        {&r->tmp, T, c->dim},  {&r->hb, T, c->n_ff},  {&r->hb2, T, c->n_ff},
        {&r->cs, T, c->n_rot}, {&r->xs, S, c->dim},   {&r->logits, S, (size_t)c->vocab},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        size_t n, bytes;
        if (!mul_ok(bufs[i].a, bufs[i].b, &n) || !mul_ok(n, sizeof(float), &bytes)) {
            set_err(err, errlen, "scratch size overflows (max_batch_tokens %u)", x->max_tok);
            return ST_LIMIT;
        }
        *bufs[i].p = sy_malloc(bytes ? bytes : sizeof(float));
        if (!*bufs[i].p) {
            set_err(err, errlen, "out of memory for scratch (%zu bytes)", bytes);
            return ST_NOMEM;
        }
    }
    r->pos = sy_malloc(T * sizeof *r->pos);
    r->tok = sy_malloc(T * sizeof *r->tok);
    r->tok_bt = sy_malloc(T * sizeof *r->tok_bt);
    if (!r->pos || !r->tok || !r->tok_bt) {
        set_err(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    if (alloc_att(x, err, errlen) != ST_OK)
        return ST_NOMEM;
    size_t ab = act_need(&x->w.output, S);
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const cpux_layer_t *L = &x->w.layers[l];
        const cpux_mat_t *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
            size_t n = act_need(ms[i], T);
            if (n > ab)
                ab = n;
        }
    }
    r->act_bytes = ab;
    if (ab) {
        r->act = sy_malloc(ab + 64);
        if (!r->act) {
            set_err(err, errlen, "out of memory for activation scratch (%zu bytes)", ab);
            return ST_NOMEM;
        }
    }
    return ST_OK;
}

/* ------------------------------------------------------------ step */

typedef struct mm_job {
    const cpux_mat_t *m;
    const float *X;
    const void *act;
    size_t n_tok;
    float *Y;
    size_t chunk; /* rows per task */
} mm_job_t;

static void mm_task(void *ctx, size_t task, int thread)
{
    (void)thread;
    const mm_job_t *j = ctx;
    size_t b = task * j->chunk, e = b + j->chunk;
    if (e > j->m->n_out)
        e = j->m->n_out;
    if (b < e)
        kern_matmul_rows(j->m->type, j->m->data, j->m->n_out, j->m->n_in, j->X, j->act, j->n_tok,
                         j->Y, b, e);
}

static void *act_buf(cpux_t *x)
{
    uintptr_t p = (uintptr_t)x->r.act;
    return (void *)((p + 63u) & ~(uintptr_t)63u);
}

/* Y[n_tok][m->n_out] = X[n_tok][m->n_in] W^T, rows split over the pool. */
static void matmul(cpux_t *x, const cpux_mat_t *m, const float *X, size_t n_tok, float *Y)
{
    void *act = x->r.act ? act_buf(x) : NULL;
    SY_ASSERT(act_need(m, n_tok) <= x->r.act_bytes);
    kern_act_prepare(m->type, X, m->n_in, n_tok, act);
    int nth = x->pool ? tpool_threads(x->pool) : 1;
    if (nth <= 1 || m->n_out < 2 * KERN_ROW_ALIGN) {
        kern_matmul_rows(m->type, m->data, m->n_out, m->n_in, X, act, n_tok, Y, 0, m->n_out);
        return;
    }
    size_t chunk = (m->n_out + (size_t)nth - 1) / (size_t)nth;
    chunk = (chunk + KERN_ROW_ALIGN - 1) / KERN_ROW_ALIGN * KERN_ROW_ALIGN;
    mm_job_t j = {m, X, act, n_tok, Y, chunk};
    size_t n_tasks = (m->n_out + chunk - 1) / chunk;
    if (tpool_run(x->pool, n_tasks, mm_task, &j) != ST_OK)
        kern_matmul_rows(m->type, m->data, m->n_out, m->n_in, X, act, n_tok, Y, 0, m->n_out);
}

/* Address of (layer, block, slot) in a pool: kv_dim elements. */
static size_t kv_index(const cpux_t *x, uint32_t layer, uint32_t block, uint32_t slot)
{
    return (((size_t)layer * x->num_blocks + block) * x->block_size + slot) * x->kv_dim;
}

static void kv_store(cpux_t *x, void *pool, size_t at, const float *src)
{
    if (x->kv_f16) {
        uint16_t *d = (uint16_t *)pool + at;
        for (size_t i = 0; i < x->kv_dim; i++)
            d[i] = kern_f32_to_f16(src[i]);
    } else {
        memcpy((float *)pool + at, src, x->kv_dim * sizeof(float));
    }
}

/* The per-token steps between the matmuls ("glue"), each token on its own (so a token's result
 * does not depend on how the step's tokens are split), run over token ranges on the pool when
 * the step is big enough to pay for it. */
typedef enum glue_op {
    GLUE_EMBED,    /* x = token_embd[tok]; cs = RoPE table of pos */
    GLUE_NORM,     /* xb = rmsnorm(x) * w */
    GLUE_ADD_NORM, /* x += tmp; xb = rmsnorm(x) * w */
    GLUE_ADD,      /* x += tmp */
    GLUE_ROPE_KV,  /* RoPE on q and k; k, v into the pool slot of the token */
    GLUE_SILU,     /* hb = silu(hb) * hb2 */
} glue_op_t;

typedef struct glue_job {
    cpux_t *x;
    glue_op_t op;
    uint32_t layer;
    const float *w;
    size_t chunk, T;
} glue_job_t;

static void glue_rows(const glue_job_t *j, size_t t0, size_t t1)
{
    cpux_t *x = j->x;
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    size_t dim = c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = x->kv_dim;
    size_t erow = kern_row_bytes(x->w.tok_embd.type, dim);
    for (size_t t = t0; t < t1; t++) {
        float *xt = r->x + t * dim;
        switch (j->op) {
        case GLUE_EMBED:
            kern_dequant_row(x->w.tok_embd.type,
                             (const uint8_t *)x->w.tok_embd.data + (size_t)r->tok[t] * erow, xt,
                             dim);
            kern_rope_table(r->cs + t * c->n_rot, c->n_rot, c->rope_base,
                            (float)r->pos[t] / c->rope_scale);
            break;
        case GLUE_ADD:
        case GLUE_ADD_NORM:
            for (size_t i = 0; i < dim; i++)
                xt[i] += r->tmp[t * dim + i];
            if (j->op == GLUE_ADD)
                break;
            /* fall through */
        case GLUE_NORM:
            kern_rmsnorm(r->xb + t * dim, xt, j->w, dim, c->rms_eps);
            break;
        case GLUE_ROPE_KV: {
            const float *cs = r->cs + t * c->n_rot;
            kern_rope(r->q + t * qd, c->n_heads, c->head_dim, c->n_rot, cs, false);
            kern_rope(r->k + t * kvd, c->n_kv_heads, c->head_dim, c->n_rot, cs, false);
            uint32_t p = r->pos[t];
            size_t at = kv_index(x, j->layer, r->tok_bt[t][p / x->block_size], p % x->block_size);
            kv_store(x, x->k_pool, at, r->k + t * kvd);
            kv_store(x, x->v_pool, at, r->v + t * kvd);
            break;
        }
        case GLUE_SILU:
            kern_silu_mul(r->hb + t * c->n_ff, r->hb + t * c->n_ff, r->hb2 + t * c->n_ff, c->n_ff);
            break;
        }
    }
}

static void glue_task(void *ctx, size_t task, int thread)
{
    (void)thread;
    const glue_job_t *j = ctx;
    size_t t0 = task * j->chunk, t1 = t0 + j->chunk < j->T ? t0 + j->chunk : j->T;
    glue_rows(j, t0, t1);
}

#define GLUE_MIN_TOKENS 16 /* below this a step's glue runs on the calling thread */

static void glue(cpux_t *x, glue_op_t op, uint32_t layer, const float *w, size_t T)
{
    glue_job_t j = {x, op, layer, w, T, T};
    if (x->pool && T >= GLUE_MIN_TOKENS) {
        j.chunk = (T + 4 * x->n_threads - 1) / (4 * x->n_threads);
        if (tpool_run(x->pool, (T + j.chunk - 1) / j.chunk, glue_task, &j) == ST_OK)
            return;
    }
    glue_rows(&j, 0, T);
}

/* The attention of one layer over the step's query tiles (r->tiles), tile x KV head per task. */
typedef struct att_job {
    cpux_t *x;
    uint32_t layer, n_tiles;
} att_job_t;

/* Causal attention of one query tile and one KV head group, flash style: Q of the group's heads
 * for the tile's tokens is transposed into qt (rows r = token * G + head, pre-scaled), then each
 * KV block of the sequence up to the tile's last position is read once (converted from F16 once
 * when the pool is F16) and folded into every row's running max / sum / acc by kern_attn_block;
 * row r sees the block's keys up to its own position. A row's arithmetic depends only on its
 * token, never on the tile's other rows, so results do not depend on tiling, batching or
 * threads. */
static void att_task(void *ctx, size_t task, int thread)
{
    const att_job_t *j = ctx;
    cpux_t *x = j->x;
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    const att_tile_t *tl = &r->tiles[task / c->n_kv_heads];
    size_t h = task % c->n_kv_heads;
    size_t G = c->n_heads / c->n_kv_heads, hd = c->head_dim, bs = x->block_size;
    size_t qd = (size_t)c->n_heads * hd, kvd = x->kv_dim, ldq = r->att_ldq;
    size_t rows = (size_t)tl->nq * G;
    float *ws = (float *)(((uintptr_t)r->att_ws + 63u) & ~(uintptr_t)63u) +
                (size_t)thread * r->att_ws_floats;
    float *qt = ws, *m = qt + round16(hd * ldq), *l = m + ldq, *acc = l + ldq;
    float *sc = acc + round16(ldq * hd), *kf = sc + round16(bs * ldq), *vf = kf + round16(bs * hd);
    uint32_t *nv = r->att_nv + (size_t)thread * ldq;
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t i = 0; i < rows; i++) {
        const float *qr = r->q + (size_t)(tl->t0 + i / G) * qd + (h * G + i % G) * hd;
        for (size_t d = 0; d < hd; d++)
            qt[d * ldq + i] = qr[d] * scale;
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    for (size_t i = rows; i < ldq; i++) {
        nv[i] = 0;
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(acc, 0, rows * hd * sizeof(float));
    size_t n_ctx = (size_t)tl->pos0 + tl->nq;
    for (size_t p0 = 0, b = 0; p0 < n_ctx; p0 += bs, b++) {
        size_t n = n_ctx - p0 < bs ? n_ctx - p0 : bs;
        for (size_t i = 0; i < rows; i++) {
            size_t pos = tl->pos0 + i / G; /* keys p0 .. pos are visible */
            nv[i] = pos < p0 ? 0 : (uint32_t)(pos - p0 + 1 < n ? pos - p0 + 1 : n);
        }
        size_t at = kv_index(x, j->layer, tl->bt[b], 0) + h * hd;
        const float *kb, *vb;
        size_t ld;
        if (x->kv_f16) {
            const uint16_t *k16 = (const uint16_t *)x->k_pool + at;
            const uint16_t *v16 = (const uint16_t *)x->v_pool + at;
            for (size_t i = 0; i < n; i++) {
                kern_dequant_row(KERN_F16, k16 + i * kvd, kf + i * hd, hd);
                kern_dequant_row(KERN_F16, v16 + i * kvd, vf + i * hd, hd);
            }
            kb = kf;
            vb = vf;
            ld = hd;
        } else {
            kb = (const float *)x->k_pool + at;
            vb = (const float *)x->v_pool + at;
            ld = kvd;
        }
        kern_attn_block(qt, ldq, rows, hd, kb, ld, vb, ld, n, nv, m, l, acc, sc);
    }
    for (size_t i = 0; i < rows; i++) {
        float *o = r->att + (size_t)(tl->t0 + i / G) * qd + (h * G + i % G) * hd;
        float inv = 1.0f / l[i];
        for (size_t d = 0; d < hd; d++)
            o[d] = acc[i * hd + d] * inv;
    }
}

/* Causal attention of every token of the step: cuts each item into query tiles of att_tq tokens
 * (boundaries relative to the item), then runs tile x KV head tasks on the pool when the step
 * has enough work to pay for the wake-up. */
static void attention(cpux_t *x, const sched_plan_t *plan, uint32_t layer)
{
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    uint32_t n_tiles = 0, t = 0;
    uint64_t work = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        uint32_t nb;
        const uint32_t *bt = kvb_seq_blocks(&it->seq->kv, &nb);
        for (uint32_t j = 0; j < it->n_tokens; j += r->att_tq) {
            uint32_t nq = it->n_tokens - j < r->att_tq ? it->n_tokens - j : r->att_tq;
            r->tiles[n_tiles++] = (att_tile_t){bt, t + j, nq, it->start + j};
            work += (uint64_t)nq * (it->start + j + nq);
        }
        t += it->n_tokens;
    }
    att_job_t job = {x, layer, n_tiles};
    size_t n_tasks = (size_t)n_tiles * c->n_kv_heads;
    work *= (uint64_t)c->n_heads * c->head_dim; /* multiply-adds of Q K^T */
    if (x->pool && n_tasks > 1 && work >= 32768 &&
        tpool_run(x->pool, n_tasks, att_task, &job) == ST_OK)
        return;
    for (size_t k = 0; k < n_tasks; k++)
        att_task(&job, k, 0);
}

/* Picks seq's next token from its logits (vocab entries; used as scratch) with the vLLM sampler:
 * penalties (repetition over prompt and output, frequency and presence over the output, all
 * read from seq->tokens), greedy below temperature 1e-5 (argmax, ties to the lowest id), else
 * temperature, min-p, top-k, top-p and a draw from the sequence's own RNG, seeded from its seed
 * or, without one, from the hash of its request id. The state comes from the pool on the
 * sequence's first sample. When the sequence asks for logprobs and lp is not NULL, *lp gets the
 * sampled token's raw logprob and rank and its top list in item slot's rows of lp_top. */
static int sample_one(cpux_t *x, const sched_seq_t *seq, float *logits, uint32_t slot, int32_t *out,
                      exec_sample_lp_t *lp)
{
    smp_params_t p;
    smp_params_from_seq(&seq->sp, &p);
    if (p.n_logprobs > (int32_t)x->max_top) {
        if (x->max_top < (uint32_t)x->cfg.vocab)
            return ST_LIMIT; /* the API keeps requests within --max-logprobs, which sized lp_top */
        p.n_logprobs = (int32_t)x->max_top; /* more than the vocab: the whole vocab */
    }
    if (!lp)
        p.n_logprobs = SMP_LOGPROBS_NONE;
    p.min_tokens = 0; /* the engine core enforces min_tokens and EOS */
    smp_state_t *st = NULL;
    uint32_t free_i = x->n_smp;
    for (uint32_t i = 0; i < x->n_smp && !st; i++) {
        if (x->smp[i].seq == seq)
            st = x->smp[i].st;
        else if (!x->smp[i].seq && free_i == x->n_smp)
            free_i = i;
    }
    if (!st) {
        if (free_i == x->n_smp)
            return ST_LIMIT; /* more sampling sequences than max_seqs */
        if (smp_state_reset(x->smp[free_i].st, &p, seq->id_hash) != ST_OK)
            return ST_INVAL;
        x->smp[free_i].seq = seq;
        st = x->smp[free_i].st;
    }
    smp_result_t res = {.top = x->lp_one, .top_cap = x->max_top};
    const int32_t *prompt = seq->tokens, *outs = seq->tokens + seq->n_prompt;
    size_t n_out = seq->n_tokens > seq->n_prompt ? seq->n_tokens - seq->n_prompt : 0;
    int rc =
        smp_sample(x->ws, &p, st, logits, x->cfg.vocab, prompt, seq->n_prompt, outs, n_out, &res);
    if (rc != ST_OK)
        return rc;
    *out = res.token;
    if (lp) {
        *lp = (exec_sample_lp_t){.valid = false};
        if (p.n_logprobs >= 0) {
            exec_logprob_t *top = x->lp_top + (size_t)slot * x->max_top;
            for (uint32_t i = 0; i < res.n_top; i++)
                top[i] = (exec_logprob_t){.token = res.top[i].token, .logprob = res.top[i].logprob};
            *lp = (exec_sample_lp_t){.valid = true,
                                     .logprob = res.logprob,
                                     .rank = res.rank,
                                     .top = top,
                                     .n_top = res.n_top};
        }
    }
    return ST_OK;
}

/* Checks the plan against the executor's limits and the sequences' tokens and block tables. */
static int check_plan(const cpux_t *x, const sched_plan_t *plan, uint32_t *n_tok_out)
{
    uint64_t n_tok = 0;
    uint32_t n_s = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        const sched_seq_t *s = it->seq;
        uint64_t end = (uint64_t)it->start + it->n_tokens;
        if (it->n_tokens == 0 || end > s->n_tokens)
            return ST_INVAL;
        uint32_t nb;
        const uint32_t *bt = kvb_seq_blocks(&s->kv, &nb);
        if ((uint64_t)nb * x->block_size < end)
            return ST_STATE;
        if (end > (uint64_t)x->num_blocks * x->block_size)
            return ST_LIMIT; /* longer than the pool */
        for (uint32_t b = 0; b < nb; b++)
            if (bt[b] >= x->num_blocks)
                return ST_STATE;
        for (uint32_t j = it->start; j < end; j++)
            if (s->tokens[j] < 0 || s->tokens[j] >= x->cfg.vocab)
                return ST_INVAL;
        n_tok += it->n_tokens;
        n_s += it->sample ? 1 : 0;
    }
    if (n_tok > x->max_tok || n_s > x->max_seqs)
        return ST_LIMIT;
    *n_tok_out = (uint32_t)n_tok;
    return ST_OK;
}

static int cpux_execute(exec_t *e, const sched_plan_t *plan, int32_t *sampled,
                        exec_sample_lp_t *lps, uint32_t *n_sampled)
{
    cpux_t *x = (cpux_t *)e;
    const cpux_model_info_t *c = &x->cfg;
    cpux_run_t *r = &x->r;
    size_t dim = c->dim;
    uint32_t T = 0;
    *n_sampled = 0;
    r->n_logits = 0;
    int rc = check_plan(x, plan, &T);
    if (rc != ST_OK)
        return rc;
    if (T == 0)
        return ST_OK;

    /* embed: x[t] = token_embd[token]; positions and RoPE tables */
    uint32_t t = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        uint32_t nb;
        const uint32_t *bt = kvb_seq_blocks(&it->seq->kv, &nb);
        for (uint32_t j = 0; j < it->n_tokens; j++, t++) {
            r->pos[t] = it->start + j;
            r->tok[t] = it->seq->tokens[it->start + j];
            r->tok_bt[t] = bt;
        }
    }
    glue(x, GLUE_EMBED, 0, NULL, T);
    glue(x, GLUE_NORM, 0, x->w.layers[0].attn_norm, T);

    for (uint32_t l = 0; l < c->n_layers; l++) {
        const cpux_layer_t *L = &x->w.layers[l];
        /* attention: xb = rmsnorm(x) (done above); q, k, v projections over all tokens */
        matmul(x, &L->wq, r->xb, T, r->q);
        matmul(x, &L->wk, r->xb, T, r->k);
        matmul(x, &L->wv, r->xb, T, r->v);
        /* RoPE on q and k; k, v into the pool slot of each token */
        glue(x, GLUE_ROPE_KV, l, NULL, T);
        /* causal attention over each sequence's block table, tiled, on the pool */
        attention(x, plan, l);
        /* x += att Wo; xb = rmsnorm(x) */
        matmul(x, &L->wo, r->att, T, r->tmp);
        glue(x, GLUE_ADD_NORM, l, L->ffn_norm, T);
        /* feed-forward: x += (silu(xb Wgate) * (xb Wup)) Wdown, then the next layer's norm */
        matmul(x, &L->w_gate, r->xb, T, r->hb);
        matmul(x, &L->w_up, r->xb, T, r->hb2);
        glue(x, GLUE_SILU, l, NULL, T);
        matmul(x, &L->w_down, r->hb, T, r->tmp);
        if (l + 1 < c->n_layers)
            glue(x, GLUE_ADD_NORM, l, x->w.layers[l + 1].attn_norm, T);
        else
            glue(x, GLUE_ADD, l, NULL, T);
    }

    /* logits for sampling items only: final norm of their last token, then the output head */
    uint32_t n_s = 0;
    t = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        t += it->n_tokens;
        if (it->sample) {
            kern_rmsnorm(r->xs + (size_t)n_s * dim, r->x + (size_t)(t - 1) * dim, x->w.out_norm,
                         dim, c->rms_eps);
            n_s++;
        }
    }
    if (n_s > 0)
        matmul(x, &x->w.output, r->xs, n_s, r->logits);
    n_s = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        if (!it->sample)
            continue;
        float *lg = r->logits + (size_t)n_s * (size_t)c->vocab;
        int src = sample_one(x, it->seq, lg, n_s, &sampled[n_s], lps ? &lps[n_s] : NULL);
        if (src != ST_OK)
            return src;
        n_s++;
    }
    r->n_logits = n_s;
    *n_sampled = n_s;
    return ST_OK;
}

static void cpux_seq_done(exec_t *e, sched_seq_t *seq)
{
    cpux_t *x = (cpux_t *)e; /* K/V lives in blocks the block manager owns; only the sampler */
    for (uint32_t i = 0; i < x->n_smp; i++)
        if (x->smp[i].seq == seq)
            x->smp[i].seq = NULL;
}

static void cpux_destroy(exec_t *e)
{
    cpux_t *x = (cpux_t *)e;
    if (!x)
        return;
    tpool_destroy(x->pool);
    for (uint32_t i = 0; x->smp && i < x->n_smp; i++)
        smp_state_destroy(x->smp[i].st);
    sy_free(x->smp);
    smp_ws_destroy(x->ws);
    sy_free(x->lp_one);
    sy_free(x->lp_top);
    cpux_run_t *r = &x->r;
    float *bufs[] = {r->x,  r->xb,  r->q,  r->k,  r->v,      r->att,   r->tmp,
                     r->hb, r->hb2, r->cs, r->xs, r->logits, r->att_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sy_free(bufs[i]);
    sy_free(r->act);
    sy_free(r->pos);
    sy_free(r->tok);
    sy_free((void *)r->tok_bt);
    sy_free(r->tiles);
    sy_free(r->att_nv);
    sy_free(x->k_pool);
    sy_free(x->v_pool);
    sy_free(x->w.layers);
    sy_free(x);
}

static void cpux_kv_layout(const exec_t *e, exec_kv_layout_t *out)
{
    const cpux_t *x = (const cpux_t *)e;
    size_t esz = x->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    *out = (exec_kv_layout_t){
        .n_layers = x->cfg.n_layers,
        .block_size = x->block_size,
        .num_blocks = x->num_blocks,
        .dtype = x->kv_f16 ? EXEC_KV_F16 : EXEC_KV_F32,
        .seg_bytes = (uint64_t)x->block_size * x->kv_dim * esz,
    };
    out->model_bytes_per_block = 2 * (uint64_t)out->n_layers * out->seg_bytes;
}

/* (layer, block) of the pool is contiguous: block_size x kv_dim elements (kv_index). */
static void *cpux_kv_segment(exec_t *e, uint32_t layer, uint32_t block, uint32_t which)
{
    cpux_t *x = (cpux_t *)e;
    if (layer >= x->cfg.n_layers || block >= x->num_blocks || which > 1)
        return NULL;
    size_t esz = x->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    char *pool = which ? x->v_pool : x->k_pool;
    return pool + kv_index(x, layer, block, 0) * esz;
}

static const exec_vtable_t k_cpux_vt = {
    .name = "cpu",
    .execute = cpux_execute,
    .seq_done = cpux_seq_done,
    .destroy = cpux_destroy,
    .kv_layout = cpux_kv_layout,
    .kv_segment = cpux_kv_segment,
};

exec_t *cpux_create(const cpux_config_t *cfg, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (!cfg || !cfg->gguf || cfg->num_blocks == 0 || cfg->block_size == 0 ||
        cfg->max_batch_tokens == 0) {
        set_err(err, errlen,
                "cpux_create: gguf, num_blocks, block_size and max_batch_tokens "
                "are required");
        return NULL;
    }
    cpux_t *x = sy_calloc(1, sizeof *x);
    if (!x) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    x->super.vt = &k_cpux_vt;
    x->num_blocks = cfg->num_blocks;
    x->block_size = cfg->block_size;
    x->max_tok = cfg->max_batch_tokens;
    x->max_seqs = cfg->max_seqs ? cfg->max_seqs : cfg->max_batch_tokens;
    if (x->max_seqs > x->max_tok)
        x->max_seqs = x->max_tok;
    x->kv_f16 = cfg->kv_f16;
    x->n_threads = cfg->threads > 1 ? (size_t)cfg->threads : 1;

    if (read_config(cfg->gguf, &x->cfg, err, errlen) != ST_OK)
        goto fail;
    x->kv_dim = (size_t)x->cfg.n_kv_heads * x->cfg.head_dim;
    if (load_weights(x, cfg->gguf, err, errlen) != ST_OK)
        goto fail;

    /* KV pool: n_layers x num_blocks x block_size x kv_dim, for K and for V */
    size_t n, bytes;
    size_t esz = x->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    if (!mul_ok(x->cfg.n_layers, x->num_blocks, &n) || !mul_ok(n, x->block_size, &n) ||
        !mul_ok(n, x->kv_dim, &n) || !mul_ok(n, esz, &bytes)) {
        set_err(err, errlen, "KV pool size overflows (num_blocks %u, block_size %u)", x->num_blocks,
                x->block_size);
        goto fail;
    }
    x->k_pool = sy_calloc(1, bytes);
    x->v_pool = sy_calloc(1, bytes);
    if (!x->k_pool || !x->v_pool) {
        set_err(err, errlen, "out of memory for the KV pool (2 x %zu bytes)", bytes);
        goto fail;
    }
    if (alloc_run(x, err, errlen) != ST_OK)
        goto fail;
    if (cfg->threads > 1) {
        int rc = tpool_create(cfg->threads, &x->pool);
        if (rc != ST_OK) {
            set_err(err, errlen, "thread pool: %s", st_str(rc));
            goto fail;
        }
    }
    /* sampler: a workspace for the vocab, one state per sampling slot with room for the
     * penalties' distinct tokens (at most min(vocab, pool tokens): no sequence outgrows the
     * pool), and the logprobs buffers: max_seqs lists of max_top entries */
    x->ws = smp_ws_create(x->cfg.vocab);
    x->n_smp = x->max_seqs;
    x->smp = sy_calloc(x->n_smp, sizeof *x->smp);
    x->max_top =
        cfg->max_logprobs < (uint32_t)x->cfg.vocab ? cfg->max_logprobs : (uint32_t)x->cfg.vocab;
    x->lp_one = sy_calloc(x->max_top ? x->max_top : 1, sizeof *x->lp_one);
    x->lp_top = sy_calloc((size_t)x->max_seqs * (x->max_top ? x->max_top : 1), sizeof *x->lp_top);
    if (!x->ws || !x->smp || !x->lp_one || !x->lp_top) {
        set_err(err, errlen, "out of memory for the sampler");
        goto fail;
    }
    smp_params_t sp;
    smp_params_init(&sp);
    sp.repetition_penalty = 2.0f; /* any penalty: the states get their token-count tables */
    uint64_t pool_tokens = (uint64_t)x->num_blocks * x->block_size;
    uint32_t max_distinct =
        pool_tokens < (uint64_t)x->cfg.vocab ? (uint32_t)pool_tokens : (uint32_t)x->cfg.vocab;
    for (uint32_t i = 0; i < x->n_smp; i++) {
        if (!(x->smp[i].st = smp_state_create(&sp, max_distinct, 0))) {
            set_err(err, errlen, "out of memory for the sampler");
            goto fail;
        }
    }
    return &x->super;
fail:
    cpux_destroy(&x->super);
    return NULL;
}

const cpux_model_info_t *cpux_info(const exec_t *e)
{
    return &((const cpux_t *)e)->cfg;
}

const float *cpux_logits(const exec_t *e, uint32_t i, int32_t *n)
{
    const cpux_t *x = (const cpux_t *)e;
    if (n)
        *n = x->cfg.vocab;
    if (i >= x->r.n_logits)
        return NULL;
    return x->r.logits + (size_t)i * (size_t)x->cfg.vocab;
}
