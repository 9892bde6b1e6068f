/*
 * bench_kern.c - compute-kernel micro-benchmark (sy-bench-kern). First measures this machine's
 * bounds: read bandwidth (4 streams per thread, 1 and 2 threads) and FMA peak (a register-only
 * FMA loop, AVX-512 when present, else AVX2), then
 * - matvec for 110M-like (768x768, 2048x768, 768x2048, 32000x768 head) and 1B-like (2048x2048,
 *   512x2048, 5632x2048, 2048x5632) shapes (n_out x n_in) per weight type, at n_tok 1 (and any
 *   --ntok list), as GB/s of weights streamed and as a fraction of the bandwidth bound; enough
 *   copies of each matrix are cycled through that the weights come from DRAM, as in a forward
 *   pass (activation quantization is included); --hot also times one copy kept in cache (the
 *   kernel's compute rate, to tell compute-bound from memory-bound);
 * - decode for the "110M" and "1B" models (--model): the time of one token's matmuls (n_tok 1,
 *   every layer's shapes plus the output head, from DRAM) as tokens/s and as a fraction of the
 *   bandwidth-bound tokens/s (weight bytes / read bandwidth);
 * - F32 GEMM at n_tok 512 for the 110M shapes in GFLOP/s and as a fraction of the FMA peak, and
 *   quantized GEMM at n_tok 512 (--no-gemm skips both);
 * each with 1 and 2 threads (tpool), medians over repetitions (bounds: the best repetition,
 * measured again at the end to show drift on the shared host). Prints a table.
 * Usage: sy-bench-kern [--quick] [--isa scalar|avx2|avx512] [--types q8_0,q4_0,...]
 *                      [--ntok 1,4,16] [--hot] [--model] [--no-gemm] [--reps N]
 * Does not: assert anything (the machine is shared and noisy; compare ratios side by side).
 * Thread-safety: n/a (program).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench_bounds.h"
#include "common/status.h"
#include "common/tpool.h"
#include "engine/kern.h"

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "sy-bench-kern: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    kern_type_t type;
    const void *W;
    size_t n_out, n_in, n_tok;
    const float *X;
    const void *act;
    float *Y;
    size_t rows_per_task;
} mm_ctx_t;

static void on_mm(void *arg, size_t task, int thread)
{
    mm_ctx_t *c = arg;
    size_t o0 = task * c->rows_per_task;
    size_t o1 = o0 + c->rows_per_task < c->n_out ? o0 + c->rows_per_task : c->n_out;
    if (o0 < o1)
        kern_matmul_rows(c->type, c->W, c->n_out, c->n_in, c->X, c->act, c->n_tok, c->Y, o0, o1);
}

/* Random weights with sane (finite, small) block scales. */
static void fill_weights(kern_type_t t, uint8_t *w, size_t bytes)
{
    for (size_t i = 0; i < bytes; i += 4) {
        uint32_t r = rnd();
        memcpy(w + i, &r, bytes - i < 4 ? bytes - i : 4);
    }
    size_t bb = kern_block_bytes(t), nb = bytes / bb;
    uint16_t h = kern_f32_to_f16(0.01f);
    for (size_t k = 0; k < nb; k++) {
        uint8_t *b = w + k * bb;
        if (t == KERN_F32) {
            float f = (float)(int32_t)rnd() * 1e-10f;
            memcpy(b, &f, 4);
        } else if (t == KERN_F16) {
            uint16_t v = kern_f32_to_f16((float)(int32_t)rnd() * 1e-10f);
            memcpy(b, &v, 2);
        } else if (t == KERN_BF16) {
            uint16_t v = kern_f32_to_bf16((float)(int32_t)rnd() * 1e-10f);
            memcpy(b, &v, 2);
        } else if (t == KERN_Q6_K) {
            memcpy(b + 208, &h, 2);
        } else {
            memcpy(b, &h, 2);
            if (t == KERN_Q4_K)
                memcpy(b + 2, &h, 2);
        }
    }
}

/* Seconds per matmul (median), cycling over copies of W. */
static double time_matmul(tpool_t *pool, kern_type_t t, size_t n_out, size_t n_in, size_t n_tok,
                          size_t target_bytes, int reps)
{
    size_t wbytes = kern_row_bytes(t, n_in) * n_out;
    size_t n_copies = target_bytes / wbytes + 1;
    if (n_copies > 1024) /* small matrices: still more than the L3 in total */
        n_copies = 1024;
    uint8_t *W = xalloc(wbytes * n_copies);
    fill_weights(t, W, wbytes * n_copies);
    float *X = xalloc(n_in * n_tok * sizeof(float));
    for (size_t i = 0; i < n_in * n_tok; i++)
        X[i] = (float)(int32_t)rnd() * 1e-9f;
    float *Y = xalloc(n_out * n_tok * sizeof(float));
    size_t ab = kern_act_bytes(t, n_in, n_tok);
    void *act = ab ? xalloc(ab) : NULL;
    int nt = tpool_threads(pool);
    mm_ctx_t c = {
        .type = t, .n_out = n_out, .n_in = n_in, .n_tok = n_tok, .X = X, .act = act, .Y = Y};
    /* matvec and small batches: one contiguous share per thread (rows aligned to 16); GEMM:
     * 64-row tasks */
    size_t per = n_tok <= 16 ? (n_out + (size_t)nt - 1) / (size_t)nt : 64;
    per = (per + 15) / 16 * 16;
    c.rows_per_task = per;
    size_t n_tasks = (n_out + per - 1) / per;
    double *v = malloc(sizeof(double) * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        double t0 = bbnd_now_s();
        for (size_t k = 0; k < n_copies; k++) {
            c.W = W + k * wbytes;
            kern_act_prepare(t, X, n_in, n_tok, act);
            tpool_run(pool, n_tasks, on_mm, &c);
        }
        if (r >= 0)
            v[r] = (bbnd_now_s() - t0) / (double)n_copies;
    }
    double m = bbnd_median(v, (size_t)reps);
    free(v);
    free(W);
    free(X);
    free(Y);
    free(act);
    return m;
}

static void measure_bounds(tpool_t **pools, int reps, double *bw, double *peak)
{
    for (int i = 0; i < 2; i++) {
        bw[i] = bbnd_read_gbs(pools[i], reps);
        peak[i] = bbnd_fma_gflops(pools[i], 3);
    }
}

static const kern_type_t k_all_types[] = {KERN_F32,  KERN_F16,  KERN_BF16, KERN_Q8_0,
                                          KERN_Q4_0, KERN_Q4_K, KERN_Q6_K};

static bool parse_types(const char *s, bool *on)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        bool found = false;
        for (size_t i = 0; i < sizeof k_all_types / sizeof k_all_types[0]; i++)
            if (!strcasecmp(tok, kern_type_name(k_all_types[i]))) {
                on[i] = true;
                found = true;
            }
        if (!found)
            return false;
    }
    return true;
}

/* One model's decode: the matmul shapes of a layer (count per layer), layers, the head. */
typedef struct model_shape {
    const char *name;
    size_t n_layers;
    size_t shapes[5][3]; /* n_out, n_in, count per layer */
    size_t head[2];
} model_shape_t;

static const model_shape_t k_models[] = {
    {"110M", 12, {{768, 768, 4}, {2048, 768, 2}, {768, 2048, 1}}, {32000, 768}},
    {"1B", 16, {{2048, 2048, 2}, {512, 2048, 2}, {5632, 2048, 2}, {2048, 5632, 1}}, {32000, 2048}},
};

static void bench_model(tpool_t **pools, const double *bw, kern_type_t t, const model_shape_t *m,
                        int reps)
{
    printf("%-6s %-5s decode", kern_type_name(t), m->name);
    double bytes = 0;
    for (int i = 0; i < 5 && m->shapes[i][0]; i++)
        bytes += (double)(kern_row_bytes(t, m->shapes[i][1]) * m->shapes[i][0]) *
                 (double)(m->shapes[i][2] * m->n_layers);
    bytes += (double)(kern_row_bytes(t, m->head[1]) * m->head[0]);
    printf(" %8.1f MB", bytes / 1e6);
    for (int p = 0; p < 2; p++) {
        double sec = 0;
        for (int i = 0; i < 5 && m->shapes[i][0]; i++)
            sec += time_matmul(pools[p], t, m->shapes[i][0], m->shapes[i][1], 1, (size_t)256 << 20,
                               reps) *
                   (double)(m->shapes[i][2] * m->n_layers);
        sec += time_matmul(pools[p], t, m->head[0], m->head[1], 1, (size_t)256 << 20, reps);
        double bound = bw[p] * 1e9 / bytes;
        printf("   %6.1f tok/s of %6.1f (%3.0f%%)", 1.0 / sec, bound, 100.0 / sec / bound);
    }
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    bool quick = false, hot = false, model = false, gemm = true;
    bool type_on[sizeof k_all_types / sizeof k_all_types[0]] = {false};
    bool any_type = false;
    size_t ntoks[16] = {1};
    int n_ntok = 1, reps = 0;
    kern_isa_t isa = KERN_ISA_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--hot"))
            hot = true;
        else if (!strcmp(argv[i], "--model"))
            model = true;
        else if (!strcmp(argv[i], "--no-gemm"))
            gemm = false;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) {
            if (!parse_types(argv[++i], type_on)) {
                fprintf(stderr, "sy-bench-kern: unknown type in %s\n", argv[i]);
                return 2;
            }
            any_type = true;
        } else if (!strcmp(argv[i], "--ntok") && i + 1 < argc) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_ntok = 0;
            for (char *tok = strtok(buf, ","); tok && n_ntok < 16; tok = strtok(NULL, ","))
                if (atoi(tok) > 0)
                    ntoks[n_ntok++] = (size_t)atoi(tok);
            if (n_ntok == 0) {
                ntoks[0] = 1;
                n_ntok = 1;
            }
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *s = argv[++i];
            isa = !strcmp(s, "scalar") ? KERN_ISA_SCALAR
                  : !strcmp(s, "avx2") ? KERN_ISA_AVX2
                                       : KERN_ISA_AVX512;
        } else {
            fprintf(stderr, "usage: sy-bench-kern [--quick] [--isa scalar|avx2|avx512] "
                            "[--types q8_0,q4_0,...] [--ntok 1,4,16] [--hot] [--model] "
                            "[--no-gemm] [--reps N]\n");
            return 2;
        }
    }
    if (!any_type)
        for (size_t i = 0; i < sizeof k_all_types / sizeof k_all_types[0]; i++)
            type_on[i] = true;
    if (kern_init(isa) != ST_OK) {
        fprintf(stderr, "sy-bench-kern: ISA not supported on this CPU\n");
        return 2;
    }
    if (reps <= 0)
        reps = quick ? 3 : 7;
    int threads[2] = {1, 2};
    tpool_t *pools[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (tpool_create(threads[i], &pools[i]) != ST_OK) {
            fprintf(stderr, "sy-bench-kern: tpool_create failed\n");
            return 1;
        }
    printf("sy-bench-kern: kernels %s, %d online CPUs, medians of %d\n", kern_isa_name(),
           tpool_default_threads(), reps);

    /* bounds (the best of the repetitions: a bound is what the machine can do) */
    double bw[2], peak[2];
    measure_bounds(pools, reps, bw, peak);
    printf("\n%-34s %12s %12s\n", "bound", "1 thread", "2 threads");
    printf("%-34s %12.1f %12.1f\n", "read bandwidth, 4 streams (GB/s)", bw[0], bw[1]);
    char fma_label[48];
    snprintf(fma_label, sizeof fma_label, "FMA peak, %s FP32 (GFLOP/s)", bbnd_fma_isa());
    printf("%-34s %12.1f %12.1f\n", fma_label, peak[0], peak[1]);

    /* matvec */
    static const size_t shapes[][2] = {{768, 768},   {2048, 768}, {768, 2048},  {32000, 768},
                                       {2048, 2048}, {512, 2048}, {5632, 2048}, {2048, 5632}};
    for (int ni = 0; ni < n_ntok; ni++) {
        size_t nt = ntoks[ni];
        printf(
            "\nmatvec (n_tok %zu): GB/s of weights streamed (fraction of the bandwidth bound)%s\n",
            nt, hot ? "; hot: weights in cache" : "");
        printf("%-6s %-11s %8s %18s %18s%s\n", "type", "n_out x n_in", "MB", "1 thread",
               "2 threads", hot ? "     hot 1 / 2 threads" : "");
        for (size_t ti = 0; ti < sizeof k_all_types / sizeof k_all_types[0]; ti++) {
            if (!type_on[ti])
                continue;
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
                if (quick && si != 0 && si != 6)
                    continue;
                kern_type_t t = k_all_types[ti];
                size_t n_out = shapes[si][0], n_in = shapes[si][1];
                double mb = (double)(kern_row_bytes(t, n_in) * n_out) / 1e6;
                char shape[32];
                snprintf(shape, sizeof shape, "%zux%zu", n_out, n_in);
                printf("%-6s %-11s %8.2f", kern_type_name(t), shape, mb);
                for (int i = 0; i < 2; i++) {
                    double sec = time_matmul(pools[i], t, n_out, n_in, nt, (size_t)256 << 20, reps);
                    double gbs = mb / 1e3 / sec;
                    printf("   %7.1f (%4.0f%%)", gbs, 100.0 * gbs / bw[i]);
                }
                if (hot)
                    for (int i = 0; i < 2; i++)
                        printf("   %7.1f",
                               mb / 1e3 / time_matmul(pools[i], t, n_out, n_in, nt, 0, reps * 3));
                printf("\n");
                fflush(stdout);
            }
        }
    }

    if (model) {
        printf("\ndecode, matmuls only (n_tok 1, weights from DRAM): tokens/s of the "
               "bandwidth-bound tokens/s, 1 / 2 threads\n");
        for (size_t ti = 0; ti < sizeof k_all_types / sizeof k_all_types[0]; ti++)
            if (type_on[ti])
                for (size_t mi = 0; mi < sizeof k_models / sizeof k_models[0]; mi++)
                    bench_model(pools, bw, k_all_types[ti], &k_models[mi], reps);
    }

    if (!gemm)
        goto done;
    /* F32 GEMM */
    printf("\nF32 GEMM, n_tok 512: GFLOP/s (fraction of the FMA peak)\n");
    printf("%-6s %-11s %18s %18s\n", "type", "n_out x n_in", "1 thread", "2 threads");
    for (size_t si = 0; si < 3; si++) {
        size_t n_out = shapes[si][0], n_in = shapes[si][1];
        char shape[32];
        snprintf(shape, sizeof shape, "%zux%zu", n_out, n_in);
        printf("%-6s %-11s", "F32", shape);
        for (int i = 0; i < 2; i++) {
            double s = time_matmul(pools[i], KERN_F32, n_out, n_in, 512, 0, quick ? 3 : 5);
            double gf = 2.0 * (double)n_out * (double)n_in * 512 / s / 1e9;
            printf("   %7.1f (%4.0f%%)", gf, 100.0 * gf / peak[i]);
        }
        printf("\n");
        fflush(stdout);
    }
    /* quantized GEMM for reference */
    printf("\nquantized GEMM, n_tok 512, 2048x768: GOP/s (2 per weight x token)\n");
    static const kern_type_t qtypes[] = {KERN_F16, KERN_Q8_0, KERN_Q4_0};
    for (size_t ti = 0; ti < 3; ti++) {
        printf("%-6s %-11s", kern_type_name(qtypes[ti]), "2048x768");
        for (int i = 0; i < 2; i++) {
            double s = time_matmul(pools[i], qtypes[ti], 2048, 768, 512, 0, 3);
            printf("   %7.1f        ", 2.0 * 2048 * 768 * 512 / s / 1e9);
        }
        printf("\n");
    }
done:;
    /* the host is shared: show the bounds again so drift during the run is visible */
    double bw2[2], peak2[2];
    measure_bounds(pools, reps, bw2, peak2);
    printf("\nbounds again at the end: read %.1f / %.1f GB/s, FMA %.1f / %.1f GFLOP/s "
           "(1 / 2 threads)\n",
           bw2[0], bw2[1], peak2[0], peak2[1]);
    for (int i = 0; i < 2; i++)
        tpool_destroy(pools[i]);
    return 0;
}
