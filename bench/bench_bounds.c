/*
 * bench_bounds.c - read bandwidth and FMA peak loops (see bench_bounds.h).
 */
#include "bench_bounds.h"

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ev.h"

double bbnd_now_s(void)
{
    return (double)sy_mono_ns() * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bbnd_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}
static bool has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

typedef struct bw_ctx {
    const uint8_t *buf;
    size_t per_thread; /* bytes */
    bool avx512;
    uint64_t sink[64];
} bw_ctx_t;

__attribute__((target("avx2"))) static uint64_t read4_avx2(const uint8_t *p, size_t bytes)
{
    size_t q = bytes / 4;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < q; i += 64) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + q + i)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + 2 * q + i)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + 3 * q + i)));
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + q + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + 2 * q + i + 32)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + 3 * q + i + 32)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    return (uint64_t)_mm256_extract_epi64(s, 0);
}

__attribute__((target("avx512f"))) static uint64_t read4_avx512(const uint8_t *p, size_t bytes)
{
    size_t q = bytes / 4;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < q; i += 64) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(p + q + i)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(p + 2 * q + i)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(p + 3 * q + i)));
    }
    uint64_t lanes[8], sum = 0; /* unsigned: the sums wrap (gcc's reduce adds signed) */
    _mm512_storeu_si512((void *)lanes,
                        _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    for (int i = 0; i < 8; i++)
        sum += lanes[i];
    return sum;
}

static void on_bw(void *arg, size_t task, int thread)
{
    (void)thread;
    bw_ctx_t *c = arg;
    const uint8_t *p = c->buf + task * c->per_thread;
    c->sink[task & 63] += c->avx512 ? read4_avx512(p, c->per_thread) : read4_avx2(p, c->per_thread);
}

double bbnd_read_gbs(tpool_t *pool, int reps)
{
    int nt = tpool_threads(pool);
    size_t per_thread = (size_t)256 << 20;
    uint8_t *buf = aligned_alloc(64, per_thread * (size_t)nt);
    if (!buf) {
        fprintf(stderr, "bench: out of memory for the bandwidth buffers\n");
        exit(1);
    }
    memset(buf, 1, per_thread * (size_t)nt);
    bw_ctx_t c = {.buf = buf, .per_thread = per_thread, .avx512 = has_avx512()};
    double best = 0;
    for (int r = 0; r < (reps < 1 ? 1 : reps); r++) {
        double t0 = bbnd_now_s();
        tpool_run(pool, (size_t)nt, on_bw, &c);
        double v = (double)per_thread * nt / (bbnd_now_s() - t0) / 1e9;
        best = v > best ? v : best;
    }
    free(buf);
    return best;
}

#define FMA_ITERS 20000000

__attribute__((target("avx512f"))) static float fma_avx512(void)
{
    __m512 a[16], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_fmadd_ps(a[i], b, c);
    }
    __m512 s = a[0];
    for (int i = 1; i < 16; i++)
        s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(void)
{
    __m256 a[12], b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < FMA_ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    __m256 s = a[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

static volatile float g_fsink;

static void on_fma(void *arg, size_t task, int thread)
{
    (void)task;
    (void)thread;
    g_fsink += *(const bool *)arg ? fma_avx512() : fma_avx2();
}

double bbnd_fma_gflops(tpool_t *pool, int reps)
{
    int nt = tpool_threads(pool);
    bool avx512 = has_avx512();
    double flops = avx512 ? (double)FMA_ITERS * 16 * 16 * 2 : (double)FMA_ITERS * 12 * 8 * 2;
    double best = 0;
    for (int r = 0; r < (reps < 1 ? 1 : reps); r++) {
        double t0 = bbnd_now_s();
        tpool_run(pool, (size_t)nt, on_fma, &avx512);
        double v = flops * nt / (bbnd_now_s() - t0) / 1e9;
        best = v > best ? v : best;
    }
    return best;
}

const char *bbnd_fma_isa(void)
{
    return has_avx512() ? "AVX-512" : "AVX2";
}
