/*
 * bench_model.c - model-level CPU inference benchmark (sy-bench-model): for each GGUF given,
 * runs the engine's own path below HTTP (block manager, scheduler, CPU executor, sampler) and
 * reports, per thread count:
 * - prefill: tokens/s of one --prompt-token prompt (default 512, random ids, one step, prefix
 *   caching off), with GFLOP/s (matmuls of every prompt token, the output head for the last one,
 *   causal attention) as a fraction of the FMA peak;
 * - decode: tokens/s at each --batch size (default 1 and 16): that many sequences generate
 *   --gen tokens (default 128) greedily from a one-token prompt, as llama-bench's tg test does;
 *   the rate is batch / the median step time, so a noisy step does not move it. The bound is
 *   the lower of batch x read bandwidth / bytes of matmul weights read per step (K/V reads are
 *   left out, so the fraction is a lower estimate) and FMA peak / 2 FLOPs per matmul weight
 *   (FP32; int8 dot products can pass it, so quantized rows may show more than 100 %); for
 *   models whose weights fit in the cache the fraction means little and the per-token cost
 *   (ms per step at batch 1) is the number to read.
 * The bounds (bench_bounds.h) are measured at the start with 1 and 2 threads and again at the
 * end, to show drift on a shared host; thread counts above 2 are compared with the 2-thread
 * bounds.
 * Usage: sy-bench-model [--threads 1,2] [--batch 1,16] [--prompt N] [--gen N] [--reps N]
 *                       [--kv-f16] MODEL.gguf...
 * Does not: assert anything (the machine is shared and noisy: compare ratios measured side by
 * side), pin threads, or measure HTTP (see scripts/bench_engine.sh).
 * Thread-safety: n/a (program).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_bounds.h"
#include "common/status.h"
#include "common/tpool.h"
#include "engine/cpu_exec.h"
#include "engine/gguf.h"
#include "engine/kern.h"
#include "engine/kv_block.h"
#include "engine/sched.h"

#define MAX_LIST 8
#define MAX_BATCH 64 /* --batch limit: sequences per step */

typedef struct opts {
    int threads[MAX_LIST];
    int n_threads;
    uint32_t batch[MAX_LIST];
    int n_batch;
    uint32_t prompt, gen;
    int reps;
    bool kv_f16;
} opts_t;

/* Weights one forward step reads: every 2-D matrix except the embedding table (one row per
 * token), which counts as the output head when the model has no output.weight (tied). */
typedef struct model_cost {
    double mm_params;  /* matmul weights per token (including the output head) */
    double mm_bytes;   /* their bytes */
    double out_params; /* the output head's share of mm_params */
} model_cost_t;

static bool name_is(sy_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void model_cost(const gguf_t *g, model_cost_t *c)
{
    memset(c, 0, sizeof *c);
    bool has_output = gguf_find_tensor(g, "output.weight") != NULL;
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor(g, i);
        if (t->n_dims != 2)
            continue;
        bool embd = name_is(t->name, "token_embd.weight");
        if (embd && has_output)
            continue;
        c->mm_params += (double)t->n_elems;
        c->mm_bytes += (double)t->n_bytes;
        if (embd || name_is(t->name, "output.weight"))
            c->out_params = (double)t->n_elems;
    }
}

/* The engine's objects for one configuration. */
typedef struct rig {
    kvb_mgr_t *kv;
    sched_t *s;
    exec_t *e;
    sched_seq_t *seqs;
    uint32_t n_seqs;
    int32_t vocab;
    uint64_t rng;
} rig_t;

static void rig_destroy(rig_t *r)
{
    if (r->s)
        sched_destroy(r->s);
    for (uint32_t i = 0; i < r->n_seqs; i++) {
        kvb_seq_deinit(&r->seqs[i].kv);
        free(r->seqs[i].tokens);
    }
    free(r->seqs);
    exec_destroy(r->e);
    kvb_destroy(r->kv);
    memset(r, 0, sizeof *r);
}

static int rig_create(rig_t *r, const gguf_t *g, const opts_t *o, int threads)
{
    memset(r, 0, sizeof *r);
    uint32_t max_b = 1;
    for (int i = 0; i < o->n_batch; i++)
        max_b = o->batch[i] > max_b ? o->batch[i] : max_b;
    uint32_t bs = 16;
    uint32_t nb_dec = max_b * ((o->gen + 1 + bs - 1) / bs + 1);
    uint32_t nb_pre = (o->prompt + 1 + bs - 1) / bs + 1;
    uint32_t num_blocks = (nb_dec > nb_pre ? nb_dec : nb_pre) + 4;
    uint32_t budget = o->prompt > max_b ? o->prompt : max_b;
    kvb_config_t kc = {.block_size = bs,
                       .num_blocks = num_blocks,
                       .enable_prefix_caching = false,
                       .hash_seed = "0"};
    char err[256] = "";
    r->kv = kvb_create(&kc, NULL);
    sched_config_t sc = {.max_num_seqs = max_b,
                         .max_num_batched_tokens = budget,
                         .max_model_len = (o->prompt > o->gen + 1 ? o->prompt : o->gen + 1) + bs,
                         .enable_chunked_prefill = true};
    r->s = r->kv ? sched_create(&sc, r->kv) : NULL;
    cpux_config_t xc = {.gguf = g,
                        .num_blocks = num_blocks,
                        .block_size = bs,
                        .max_batch_tokens = budget,
                        .max_seqs = max_b,
                        .threads = threads,
                        .kv_f16 = o->kv_f16};
    r->e = r->s ? cpux_create(&xc, err, sizeof err) : NULL;
    r->seqs = calloc(max_b, sizeof *r->seqs);
    if (!r->e || !r->seqs) {
        fprintf(stderr, "sy-bench-model: cannot set up the executor: %s\n",
                err[0] ? err : "out of memory");
        rig_destroy(r);
        return ST_NOMEM;
    }
    r->vocab = cpux_info(r->e)->vocab;
    r->rng = 88172645463325252ull;
    return ST_OK;
}

static uint32_t rnd(rig_t *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return (uint32_t)(r->rng >> 16);
}

/* Adds n sequences with prompts of n_prompt tokens (BOS-like id 1, then random ids >= 3) that
 * generate up to n_gen tokens greedily. */
static int rig_add(rig_t *r, uint32_t n, uint32_t n_prompt, uint32_t n_gen)
{
    for (uint32_t i = 0; i < n; i++) {
        sched_seq_t *q = &r->seqs[r->n_seqs];
        memset(q, 0, sizeof *q);
        q->cap_tokens = n_prompt + n_gen;
        q->tokens = malloc(q->cap_tokens * sizeof(int32_t));
        if (!q->tokens)
            return ST_NOMEM;
        r->n_seqs++;
        q->tokens[0] = r->vocab > 1 ? 1 : 0;
        for (uint32_t j = 1; j < n_prompt; j++)
            q->tokens[j] = r->vocab > 3 ? 3 + (int32_t)(rnd(r) % (uint32_t)(r->vocab - 3)) : 0;
        q->n_prompt = q->n_tokens = n_prompt;
        q->sp.max_tokens = n_gen;
        q->sp.temperature = 0;
        q->id_hash = r->n_seqs;
        kvb_seq_init(&q->kv, NULL, 0);
        sched_add(r->s, q);
    }
    return ST_OK;
}

/* Runs steps until every sequence has its tokens; step_s[k] gets the execute time of step k
 * (up to cap). Returns the number of steps, or -1 on error. */
static int rig_run(rig_t *r, double *step_s, int cap)
{
    int32_t sampled[MAX_BATCH];
    int steps = 0;
    for (;;) {
        sched_plan_t *p = NULL;
        int rc = sched_plan(r->s, &p);
        if (rc == ST_AGAIN)
            break;
        if (rc != ST_OK || p->n_items > sizeof sampled / sizeof sampled[0])
            return -1;
        uint32_t ns = 0;
        double t0 = bbnd_now_s();
        rc = exec_execute(r->e, p, sampled, NULL, &ns);
        double dt = bbnd_now_s() - t0;
        if (rc != ST_OK) {
            fprintf(stderr, "sy-bench-model: execute failed (%d)\n", rc);
            return -1;
        }
        if (steps < cap)
            step_s[steps] = dt;
        sched_step_done(r->s, p);
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_items; i++) {
            sched_seq_t *q = p->items[i].seq;
            if (!p->items[i].sample)
                continue;
            q->tokens[q->n_tokens++] = sampled[k++];
            if (q->n_tokens - q->n_prompt >= q->sp.max_tokens) {
                sched_finish(r->s, q, SEQ_FINISH_LENGTH);
                exec_seq_done(r->e, q);
            }
        }
        steps++;
    }
    for (uint32_t i = 0; i < r->n_seqs; i++) {
        kvb_seq_deinit(&r->seqs[i].kv);
        free(r->seqs[i].tokens);
    }
    r->n_seqs = 0;
    return steps;
}

/* Median seconds of a prefill of o->prompt tokens (one step, sampling the next token). */
static double time_prefill(rig_t *r, const opts_t *o)
{
    double v[64];
    int n = 0;
    for (int k = -1; k < o->reps && n < 64; k++) {
        double s[4];
        if (rig_add(r, 1, o->prompt, 1) != ST_OK || rig_run(r, s, 4) != 1)
            return -1;
        if (k >= 0)
            v[n++] = s[0];
    }
    return bbnd_median(v, (size_t)n);
}

/* Median seconds of a decode step with b sequences (steps after the first). */
static double time_decode(rig_t *r, const opts_t *o, uint32_t b)
{
    int cap = (int)o->gen + 8;
    double *s = malloc(sizeof(double) * (size_t)cap);
    if (!s)
        return -1;
    double m = -1;
    if (rig_add(r, b, 1, o->gen) == ST_OK) {
        int n = rig_run(r, s, cap);
        if (n > 2)
            m = bbnd_median(s + 1, (size_t)(n < cap ? n : cap) - 1);
    }
    free(s);
    return m;
}

/* FLOPs of a prefill of n tokens: matmuls of every token (the output head once) and causal
 * attention (QK^T and PV over positions 0..p for each token p). */
static double prefill_flops(const cpux_model_info_t *mi, const model_cost_t *c, uint32_t n)
{
    double mm = 2.0 * (c->mm_params - c->out_params) * n + 2.0 * c->out_params;
    double ctx = (double)n * (n + 1) / 2.0;
    double att = 4.0 * mi->n_layers * (double)mi->n_heads * mi->head_dim * ctx;
    return mm + att;
}

static int parse_list(const char *s, int *ints, uint32_t *u32s, int *n)
{
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || *n == MAX_LIST)
            return -1;
        if (ints)
            ints[*n] = (int)v;
        else
            u32s[*n] = (uint32_t)v;
        (*n)++;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return *n ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: sy-bench-model [--threads 1,2] [--batch 1,16] [--prompt 512] "
                    "[--gen 128] [--reps 5] [--kv-f16] MODEL.gguf...\n");
    return 2;
}

static void bench_model(const char *path, const opts_t *o, const double *bw, const double *peak)
{
    char err[512];
    gguf_t *g = NULL;
    if (gguf_open(path, &g, err, sizeof err) != ST_OK) {
        printf("\n%s: cannot open: %s\n", path, err);
        return;
    }
    model_cost_t c;
    model_cost(g, &c);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    bool printed_head = false;
    for (int ti = 0; ti < o->n_threads; ti++) {
        rig_t r;
        if (rig_create(&r, g, o, o->threads[ti]) != ST_OK)
            break;
        const cpux_model_info_t *mi = cpux_info(r.e);
        if (!printed_head) {
            printf("\n%s: dim %" PRIu32 ", %" PRIu32 " layers, %" PRIu32 "/%" PRIu32
                   " heads, FFN %" PRIu32 ", vocab %" PRId32 "; %.1f M matmul weights, %.1f MB "
                   "read per decode step\n",
                   base, mi->dim, mi->n_layers, mi->n_heads, mi->n_kv_heads, mi->n_ff, mi->vocab,
                   c.mm_params / 1e6, c.mm_bytes / 1e6);
            printf("%-8s %-22s %12s %14s %10s\n", "threads", "test", "tokens/s", "ms/step",
                   "of bound");
            printed_head = true;
        }
        int th = o->threads[ti];
        double b_bw = th == 1 ? bw[0] : bw[1], b_peak = th == 1 ? peak[0] : peak[1];
        double s = time_prefill(&r, o);
        if (s > 0) {
            double gf = prefill_flops(mi, &c, o->prompt) / s / 1e9;
            char test[64];
            snprintf(test, sizeof test, "prefill %" PRIu32, o->prompt);
            printf("%-8d %-22s %12.1f %14.3f %9.0f%%  (%.1f GFLOP/s of %.1f)\n", th, test,
                   o->prompt / s, s * 1e3, 100.0 * gf / b_peak, gf, b_peak);
        }
        for (int bi = 0; bi < o->n_batch; bi++) {
            uint32_t b = o->batch[bi];
            double d = time_decode(&r, o, b);
            if (d <= 0)
                continue;
            double tps = b / d, bw_bound = b * b_bw * 1e9 / c.mm_bytes;
            double fma_bound = b_peak * 1e9 / (2.0 * c.mm_params);
            bool by_bw = bw_bound <= fma_bound;
            double bound = by_bw ? bw_bound : fma_bound;
            char test[64], why[96];
            snprintf(test, sizeof test, "decode batch %" PRIu32, b);
            if (by_bw)
                snprintf(why, sizeof why, "bandwidth bound %.0f tok/s at %.1f GB/s", bound, b_bw);
            else
                snprintf(why, sizeof why, "FMA bound %.0f tok/s at %.1f GFLOP/s", bound, b_peak);
            printf("%-8d %-22s %12.1f %14.3f %9.0f%%  (%s)\n", th, test, tps, d * 1e3,
                   100.0 * tps / bound, why);
        }
        fflush(stdout);
        rig_destroy(&r);
    }
    gguf_close(g);
}

int main(int argc, char **argv)
{
    opts_t o = {.threads = {1, 2},
                .n_threads = 2,
                .batch = {1, 16},
                .n_batch = 2,
                .prompt = 512,
                .gen = 128,
                .reps = 5};
    int first_model = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_v = i + 1 < argc;
        if (!strcmp(a, "--threads") && has_v) {
            if (parse_list(argv[++i], o.threads, NULL, &o.n_threads) != 0)
                return usage();
        } else if (!strcmp(a, "--batch") && has_v) {
            if (parse_list(argv[++i], NULL, o.batch, &o.n_batch) != 0)
                return usage();
        } else if ((!strcmp(a, "--prompt") || !strcmp(a, "--gen") || !strcmp(a, "--reps")) &&
                   has_v) {
            long v = strtol(argv[++i], NULL, 10);
            if (v < 1 || v > 8192)
                return usage();
            if (!strcmp(a, "--prompt"))
                o.prompt = (uint32_t)v;
            else if (!strcmp(a, "--gen"))
                o.gen = (uint32_t)v;
            else
                o.reps = (int)(v > 63 ? 63 : v);
        } else if (!strcmp(a, "--kv-f16")) {
            o.kv_f16 = true;
        } else if (a[0] == '-') {
            return usage();
        } else {
            first_model = i;
            break;
        }
    }
    for (int bi = 0; bi < o.n_batch; bi++)
        if (o.batch[bi] > MAX_BATCH)
            return usage();
    if (o.gen < 3 || first_model >= argc)
        return usage();
    if (kern_init(KERN_ISA_AUTO) != ST_OK) {
        fprintf(stderr, "sy-bench-model: kernel init failed\n");
        return 1;
    }
    tpool_t *pools[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (tpool_create(i + 1, &pools[i]) != ST_OK) {
            fprintf(stderr, "sy-bench-model: tpool_create failed\n");
            return 1;
        }
    double bw[2], peak[2];
    for (int i = 0; i < 2; i++) {
        bw[i] = bbnd_read_gbs(pools[i], 5);
        peak[i] = bbnd_fma_gflops(pools[i], 3);
    }
    printf("sy-bench-model: kernels %s, %d online CPUs, K/V %s, prompt %" PRIu32 ", gen %" PRIu32
           ", medians (prefill of %d runs, decode of the steps)\n",
           kern_isa_name(), tpool_default_threads(), o.kv_f16 ? "F16" : "F32", o.prompt, o.gen,
           o.reps);
    printf("bounds: read bandwidth %.1f / %.1f GB/s, FMA peak (%s FP32) %.1f / %.1f GFLOP/s "
           "(1 / 2 threads)\n",
           bw[0], bw[1], bbnd_fma_isa(), peak[0], peak[1]);
    for (int i = first_model; i < argc; i++)
        bench_model(argv[i], &o, bw, peak);
    double bw2[2], peak2[2];
    for (int i = 0; i < 2; i++) {
        bw2[i] = bbnd_read_gbs(pools[i], 5);
        peak2[i] = bbnd_fma_gflops(pools[i], 3);
        tpool_destroy(pools[i]);
    }
    printf("\nbounds again at the end: read %.1f / %.1f GB/s, FMA %.1f / %.1f GFLOP/s "
           "(1 / 2 threads)\n",
           bw2[0], bw2[1], peak2[0], peak2[1]);
    return 0;
}
