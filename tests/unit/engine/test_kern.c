/*
 * test_kern.c - compute kernels: exact dequantization of hand-built blocks for every type, half /
 * bfloat16 conversions, bit-identical activation quantization across ISA levels, every SIMD
 * matmul and small op against the scalar reference at every level this CPU supports (odd sizes),
 * and every quantized matmul against dequantize-then-F32 (computed here in double).
 *
 * Tolerances (per output y = sum_i w_i x_i, S = sum_i |w_i x_i| over the dequantized weights):
 * - SIMD vs scalar, float weights and K-quants: both compute the same products; they differ
 *   only in float summation order (the reference sums in double), so |d| <= n_eff * 2^-24 * S
 *   with n_eff the longest float summation chain (< 200 here): we allow 1e-5 * S.
 * - SIMD vs scalar, Q8_0/Q4_0: integer block sums are exact; the per-block products
 *   float(isum) * (d_w * d_x) and their sum are rounded in float: also 1e-5 * S_q, where S_q is
 *   the same bound over the quantized activations.
 * - int8 paths vs dequantize-then-F32: the activation x_i is replaced by q_i * d_b with
 *   |q_i d_b - x_i| <= d_b / 2 (round to nearest; d_b = max|x| over block b / 127), so
 *   |d| <= sum_b (d_b / 2) sum_{i in b} |w_i| (plus float error, 1e-5 * S); we allow 1.001 x that.
 * - Small ops: the SIMD exp is a polynomial accurate to a few ulp: softmax / silu within
 *   1e-6 relative (+1e-7 absolute); rmsnorm 1e-5 relative (sum of squares in float vs double);
 *   rope and dot/axpy within float rounding of the same products (1e-6 * magnitude).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "engine/kern.h"
#include "engine/kern_int.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static float rndf(void) /* [-1, 1) */
{
    return (float)(rnd() & 0xffffff) / (float)0x800000 - 1.0f;
}

static const kern_isa_t k_isas[] = {KERN_ISA_SCALAR, KERN_ISA_AVX2, KERN_ISA_AVX512};

/* Random weights of type t for n_out rows of n_in; scales kept small and finite. */
static void *make_weights(kern_type_t t, size_t n_out, size_t n_in)
{
    size_t bytes = kern_row_bytes(t, n_in) * n_out;
    uint8_t *w = malloc(bytes + 64);
    assert_non_null(w);
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rnd();
    size_t nb = bytes / kern_block_bytes(t);
    for (size_t k = 0; k < nb; k++) {
        uint8_t *b = w + k * kern_block_bytes(t);
        float d = 0.002f + 0.02f * fabsf(rndf());
        uint16_t h = kern_f32_to_f16(d);
        switch (t) {
        case KERN_F32: {
            float f = rndf();
            memcpy(b, &f, 4);
            break;
        }
        case KERN_F16: {
            uint16_t v = kern_f32_to_f16(rndf());
            memcpy(b, &v, 2);
            break;
        }
        case KERN_BF16: {
            uint16_t v = kern_f32_to_bf16(rndf());
            memcpy(b, &v, 2);
            break;
        }
        case KERN_Q8_0:
        case KERN_Q4_0:
            memcpy(b, &h, 2);
            break;
        case KERN_Q4_K: {
            uint16_t hm = kern_f32_to_f16(d * 0.5f);
            memcpy(b, &h, 2);
            memcpy(b + 2, &hm, 2);
            break;
        }
        case KERN_Q6_K:
            memcpy(b + 208, &h, 2);
            break;
        }
    }
    return w;
}

static float *make_x(size_t n)
{
    float *x = malloc(n * sizeof(float) + 64);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = rndf() * (i % 5 == 0 ? 4.0f : 1.0f);
    return x;
}

static bool is_int8_path(kern_type_t t)
{
    return t == KERN_Q8_0 || t == KERN_Q4_0;
}

/* Y = W X on the current kernel table; returns malloc'd Y. */
static float *run_matmul(kern_type_t t, const void *W, size_t n_out, size_t n_in, const float *X,
                         size_t n_tok)
{
    float *Y = malloc(n_out * n_tok * sizeof(float));
    assert_non_null(Y);
    size_t ab = kern_act_bytes(t, n_in, n_tok);
    void *act = ab ? malloc(ab) : NULL;
    kern_matmul(t, W, n_out, n_in, X, n_tok, Y, act);
    free(act);
    return Y;
}

static void check_matmul_shape(kern_type_t t, size_t n_out, size_t n_in, size_t n_tok)
{
    void *W = make_weights(t, n_out, n_in);
    float *X = make_x(n_in * n_tok);
    /* dequantized weights and quantized-then-dequantized activations */
    float *Wf = malloc(n_out * n_in * sizeof(float));
    float *Xq = malloc(n_in * n_tok * sizeof(float));
    float *dx = malloc((n_in / 32 + 1) * n_tok * sizeof(float));
    assert_non_null(Wf);
    assert_non_null(Xq);
    assert_non_null(dx);
    for (size_t o = 0; o < n_out; o++)
        kern_dequant_row(t, (const uint8_t *)W + o * kern_row_bytes(t, n_in), Wf + o * n_in, n_in);
    if (is_int8_path(t)) {
        kern_init(KERN_ISA_SCALAR);
        size_t nb = n_in / 32;
        void *a = malloc(kern_act_bytes(t, n_in, n_tok));
        assert_non_null(a);
        kern_act_prepare(t, X, n_in, n_tok, a);
        for (size_t tk = 0; tk < n_tok; tk++)
            for (size_t k = 0; k < nb; k++) {
                float d;
                int32_t s;
                const int8_t *qs;
                kern_q8_grp_block(a, nb, tk, k, &d, &s, &qs);
                for (int j = 0; j < 32; j++)
                    Xq[tk * n_in + k * 32 + (size_t)j] = (float)qs[j] * d;
                dx[tk * nb + k] = d;
            }
        free(a);
    }

    kern_init(KERN_ISA_SCALAR);
    float *Yref = run_matmul(t, W, n_out, n_in, X, n_tok);

    for (size_t li = 0; li < sizeof k_isas / sizeof k_isas[0]; li++) {
        if (!kern_isa_supported(k_isas[li]))
            continue;
        assert_int_equal(kern_init(k_isas[li]), ST_OK);
        float *Y = run_matmul(t, W, n_out, n_in, X, n_tok);
        /* also the row-range variant: an uneven split, and the split the thread pool makes
         * (chunks of KERN_ROW_ALIGN multiples, the last one short) */
        float *Y2 = malloc(n_out * n_tok * sizeof(float));
        float *Y3 = malloc(n_out * n_tok * sizeof(float));
        assert_non_null(Y2);
        assert_non_null(Y3);
        size_t ab = kern_act_bytes(t, n_in, n_tok);
        void *act = ab ? malloc(ab) : NULL;
        kern_act_prepare(t, X, n_in, n_tok, act);
        size_t mid = n_out / 3;
        kern_matmul_rows(t, W, n_out, n_in, X, act, n_tok, Y2, mid, n_out);
        kern_matmul_rows(t, W, n_out, n_in, X, act, n_tok, Y2, 0, mid);
        size_t chunk = (n_out / 3 + KERN_ROW_ALIGN) / KERN_ROW_ALIGN * KERN_ROW_ALIGN;
        for (size_t o = 0; o < n_out; o += chunk)
            kern_matmul_rows(t, W, n_out, n_in, X, act, n_tok, Y3, o,
                             o + chunk < n_out ? o + chunk : n_out);
        free(act);
        /* batch invariance: each token alone gives the same bits as in the batch */
        float *Y1 = malloc(n_out * sizeof(float));
        void *act1 = ab ? malloc(ab / n_tok) : NULL;
        assert_non_null(Y1);
        for (size_t tk = 0; tk < n_tok; tk++) {
            kern_matmul(t, W, n_out, n_in, X + tk * n_in, 1, Y1, act1);
            for (size_t o = 0; o < n_out; o++)
                if (Y1[o] != Y[tk * n_out + o])
                    fail_msg("%s %s n_out %zu n_in %zu n_tok %zu: y[%zu][%zu] %.9g alone vs %.9g "
                             "in the batch",
                             kern_type_name(t), kern_isa_name(), n_out, n_in, n_tok, tk, o, Y1[o],
                             Y[tk * n_out + o]);
        }
        free(Y1);
        free(act1);
        for (size_t i = 0; i < n_out * n_tok; i++)
            if (Y2[i] != Y[i] || Y3[i] != Y[i])
                fail_msg("%s %s n_out %zu n_in %zu n_tok %zu: row split changes y[%zu]",
                         kern_type_name(t), kern_isa_name(), n_out, n_in, n_tok, i);
        for (size_t tk = 0; tk < n_tok; tk++) {
            for (size_t o = 0; o < n_out; o++) {
                const float *w = Wf + o * n_in;
                const float *x = X + tk * n_in;
                const float *xq = Xq + tk * n_in;
                double S = 0, Sq = 0, exact = 0, qerr = 0;
                for (size_t i = 0; i < n_in; i++) {
                    S += fabs((double)w[i] * x[i]);
                    exact += (double)w[i] * x[i];
                    if (is_int8_path(t)) {
                        Sq += fabs((double)w[i] * xq[i]);
                        qerr += fabs((double)w[i]) * dx[tk * (n_in / 32) + i / 32] * 0.5;
                    }
                }
                double y = Y[tk * n_out + o], yr = Yref[tk * n_out + o];
                double tol = 1e-5 * (is_int8_path(t) ? Sq : S) + 1e-30;
                if (fabs(y - yr) > tol)
                    fail_msg("%s %s n_out %zu n_in %zu n_tok %zu: y[%zu][%zu] %.9g vs ref %.9g "
                             "(tol %.3g)",
                             kern_type_name(t), kern_isa_name(), n_out, n_in, n_tok, tk, o, y, yr,
                             tol);
                /* against dequantize-then-F32 */
                double tol2 = is_int8_path(t) ? 1.001 * qerr + 1e-5 * S : 1e-5 * S;
                tol2 += 1e-30;
                if (fabs(y - exact) > tol2)
                    fail_msg("%s %s vs dequant-F32: y[%zu][%zu] %.9g vs %.9g (tol %.3g)",
                             kern_type_name(t), kern_isa_name(), tk, o, y, exact, tol2);
            }
        }
        free(Y);
        free(Y2);
        free(Y3);
    }
    kern_init(KERN_ISA_AUTO);
    free(Yref);
    free(W);
    free(X);
    free(Wf);
    free(Xq);
    free(dx);
}

static void check_type(kern_type_t t, const size_t *n_ins, size_t n_n_in)
{
    static const size_t n_outs[] = {1, 5, 13, 67};
    static const size_t n_toks[] = {1, 3, 7};
    for (size_t a = 0; a < n_n_in; a++)
        for (size_t b = 0; b < sizeof n_outs / sizeof n_outs[0]; b++)
            for (size_t c = 0; c < sizeof n_toks / sizeof n_toks[0]; c++)
                check_matmul_shape(t, n_outs[b], n_ins[a], n_toks[c]);
}

static void test_matmul_float(void **state)
{
    /* not multiples of 16 (or 8), plus one that is */
    static const size_t n_ins[] = {1, 7, 17, 33, 100, 131, 256};
    check_type(KERN_F32, n_ins, 7);
    check_type(KERN_F16, n_ins, 7);
    check_type(KERN_BF16, n_ins, 7);
}

static void test_matmul_q8_q4(void **state)
{
    /* 1, 3, 7, 11 blocks (a partial group of 16), 16 (one full group), 33 (two and a bit) */
    static const size_t n_ins[] = {32, 96, 224, 352, 512, 1056};
    check_type(KERN_Q8_0, n_ins, 6);
    check_type(KERN_Q4_0, n_ins, 6);
}

/* Every token count up to 17 (token tiles of 8 plus a remainder), odd row counts around the
 * 4-row tiles. */
static void test_matmul_q8_q4_tokens(void **state)
{
    for (size_t n_tok = 1; n_tok <= 17; n_tok++) {
        check_matmul_shape(KERN_Q8_0, 37, 544, n_tok);
        check_matmul_shape(KERN_Q4_0, 37, 544, n_tok);
    }
    check_matmul_shape(KERN_Q8_0, 70, 1024, 16);
    check_matmul_shape(KERN_Q4_0, 70, 1024, 16);
}

static void test_matmul_kquants(void **state)
{
    static const size_t n_ins[] = {256, 768}; /* 1 and 3 super-blocks */
    check_type(KERN_Q4_K, n_ins, 2);
    check_type(KERN_Q6_K, n_ins, 2);
}

/* The shapes the engine runs (a little bigger, n_tok crossing every tile size). */
static void test_matmul_model_shapes(void **state)
{
    check_matmul_shape(KERN_F32, 131, 768, 13);
    check_matmul_shape(KERN_Q8_0, 131, 768, 13);
    check_matmul_shape(KERN_Q4_0, 67, 2048, 9);
    check_matmul_shape(KERN_F16, 67, 768, 1);
}

static void test_q8_0_extreme_values(void **state)
{
    /* -128 weights and +-127 activations: the sign trick and maddubs must not overflow */
    size_t n_in = 96, n_out = 5;
    kern_q8_0_block_t *w = calloc(n_out * 3, sizeof *w);
    assert_non_null(w);
    for (size_t k = 0; k < n_out * 3; k++) {
        w[k].d = kern_f32_to_f16(1.0f);
        for (int j = 0; j < 32; j++)
            w[k].qs[j] = (int8_t)((j + (int)k) % 2 ? -128 : 127);
    }
    float x[96];
    for (int i = 0; i < 96; i++)
        x[i] = (i % 3) ? 1.0f : -1.0f;
    for (size_t li = 0; li < 3; li++) {
        if (!kern_isa_supported(k_isas[li]))
            continue;
        kern_init(k_isas[li]);
        float y[5];
        uint8_t act[sizeof(kern_q8_grp_t)] __attribute__((aligned(64)));
        assert_true(kern_act_bytes(KERN_Q8_0, n_in, 1) <= sizeof act);
        kern_matmul(KERN_Q8_0, w, n_out, n_in, x, 1, y, act);
        for (size_t o = 0; o < n_out; o++) {
            double e = 0;
            for (size_t i = 0; i < n_in; i++)
                e += (double)w[o * 3 + i / 32].qs[i % 32] * (x[i] * 127.0 / 127.0);
            assert_float_equal(y[o], e, 1e-3 * fabs(e) + 1e-3);
        }
    }
    kern_init(KERN_ISA_AUTO);
    free(w);
}

/* ---- dequantization of hand-built blocks (exact) ---- */

static void test_dequant_q8_0_q4_0(void **state)
{
    kern_q8_0_block_t b8[3];
    for (int k = 0; k < 3; k++) {
        b8[k].d = kern_f32_to_f16(0.5f * (float)(k + 1));
        for (int j = 0; j < 32; j++)
            b8[k].qs[j] = (int8_t)(j - 16 + k);
    }
    float y[96];
    kern_dequant_row(KERN_Q8_0, b8, y, 96);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 32; j++)
            assert_true(y[k * 32 + j] == (float)(j - 16 + k) * 0.5f * (float)(k + 1));

    kern_q4_0_block_t b4;
    b4.d = kern_f32_to_f16(2.0f);
    for (int j = 0; j < 16; j++)
        b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    kern_dequant_row(KERN_Q4_0, &b4, y, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (float)(j - 8) * 2.0f);
        assert_true(y[j + 16] == (float)(15 - j - 8) * 2.0f);
    }
}

static void test_dequant_q4_k(void **state)
{
    kern_q4_k_block_t b;
    memset(&b, 0, sizeof b);
    b.d = kern_f32_to_f16(1.0f);
    b.dmin = kern_f32_to_f16(0.5f);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = 8 * j + 7; /* up to 63: exercises the high bits of pairs 4..7 */
        mn[j] = 63 - 8 * j;
    }
    /* independent encoder for the 12-byte (scale, min) table */
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++)
            b.qs[g * 32 + l] = (uint8_t)((l % 16) | (((l + 3) % 16) << 4));
    float y[256];
    kern_dequant_row(KERN_Q4_K, &b, y, 256);
    for (int g = 0; g < 4; g++)
        for (int l = 0; l < 32; l++) {
            float lo = 1.0f * (float)sc[2 * g] * (float)(l % 16) - 0.5f * (float)mn[2 * g];
            float hi =
                1.0f * (float)sc[2 * g + 1] * (float)((l + 3) % 16) - 0.5f * (float)mn[2 * g + 1];
            assert_true(y[g * 64 + l] == lo);
            assert_true(y[g * 64 + 32 + l] == hi);
        }
}

static void test_dequant_q6_k(void **state)
{
    kern_q6_k_block_t b;
    memset(&b, 0, sizeof b);
    b.d = kern_f32_to_f16(0.25f);
    for (int s = 0; s < 16; s++)
        b.scales[s] = (int8_t)(s - 8);
    int q6[256];
    for (int e = 0; e < 256; e++)
        q6[e] = (e * 7) % 64;
    /* independent encoder: element 128h + 32k + l lives in ql[64h + l + 32 (k & 1)] (low nibble
     * for k < 2, high for k >= 2) and in bits 2k..2k+1 of qh[32h + l] */
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * k + l, q = q6[e];
                int qi = 64 * h + l + 32 * (k & 1);
                b.ql[qi] |= (uint8_t)((q & 15) << (k >= 2 ? 4 : 0));
                b.qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
            }
    float y[256];
    kern_dequant_row(KERN_Q6_K, &b, y, 256);
    for (int e = 0; e < 256; e++)
        assert_true(y[e] == 0.25f * (float)(e / 16 - 8) * (float)(q6[e] - 32));
}

static void test_dequant_float_types(void **state)
{
    float src[5] = {1.0f, -2.5f, 0.0f, 65504.0f, 1e-7f}, y[5];
    kern_dequant_row(KERN_F32, src, y, 5);
    assert_memory_equal(src, y, sizeof src);
    uint16_t h[5] = {0x3c00, 0xc100, 0x0000, 0x7bff, 0x0001};
    kern_dequant_row(KERN_F16, h, y, 5);
    assert_true(y[0] == 1.0f && y[1] == -2.5f && y[2] == 0.0f && y[3] == 65504.0f);
    assert_true(y[4] == 0x1p-24f);
    uint16_t bf[2] = {0x3f80, 0xc020};
    kern_dequant_row(KERN_BF16, bf, y, 2);
    assert_true(y[0] == 1.0f && y[1] == -2.5f);
}

static void test_half_conversions(void **state)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = kern_f16_to_f32(h);
        if (isnan(f)) {
            assert_true((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
            assert_true(isnan(kern_f16_to_f32(kern_f32_to_f16(f))));
            continue;
        }
        assert_int_equal(kern_f32_to_f16(f), h); /* exact round trip */
        assert_int_equal(kern_f32_to_bf16(kern_bf16_to_f32(h)), h & 0xffff);
    }
    /* rounding: halfway cases go to even */
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(kern_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(kern_f32_to_f16(70000.0f), 0x7c00);
    assert_int_equal(kern_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(kern_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(kern_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

/* ---- activation quantization ---- */

static void test_quant_q8_identical(void **state)
{
    size_t n = 32 * 9;
    float *x = make_x(n);
    x[5] = 0.5f; /* a block with an exact tie: 63.5 after scaling */
    for (int j = 32; j < 64; j++)
        x[j] = 0.0f; /* all-zero block: d = 0 */
    uint8_t *ref = malloc(kern_q8_bytes(n)), *got = malloc(kern_q8_bytes(n));
    assert_non_null(ref);
    assert_non_null(got);
    kern_init(KERN_ISA_SCALAR);
    kern_quant_q8(x, n, ref);
    const kern_q8_act_t *a = (const kern_q8_act_t *)ref;
    for (size_t i = 0; i < n; i++) {
        const kern_q8_act_t *b = &a[i / 32];
        assert_true(fabsf((float)b->qs[i % 32] * b->d - x[i]) <= b->d * 0.5f * 1.0001f);
        assert_true(b->qs[i % 32] >= -127 && b->qs[i % 32] <= 127);
    }
    assert_true(a[1].d == 0.0f && a[1].s == 0);
    for (size_t k = 0; k < n / 32; k++) {
        int32_t s = 0;
        for (int j = 0; j < 32; j++)
            s += a[k].qs[j];
        assert_int_equal(s, a[k].s);
    }
    for (size_t li = 1; li < 3; li++) {
        if (!kern_isa_supported(k_isas[li]))
            continue;
        kern_init(k_isas[li]);
        memset(got, 0xaa, kern_q8_bytes(n));
        kern_quant_q8(x, n, got);
        assert_memory_equal(ref, got, kern_q8_bytes(n));
    }
    /* the matmul act buffer: the same blocks in groups of 16 (lane-ordered d, s; zero padding),
     * byte-identical at every level */
    size_t gb = kern_act_bytes(KERN_Q8_0, n, 1);
    uint8_t *gref = malloc(gb), *ggot = malloc(gb);
    assert_non_null(gref);
    assert_non_null(ggot);
    kern_init(KERN_ISA_SCALAR);
    memset(gref, 0x55, gb);
    kern_act_prepare(KERN_Q8_0, x, n, 1, gref);
    for (size_t k = 0; k < n / 32; k++) {
        float d;
        int32_t s;
        const int8_t *qs;
        kern_q8_grp_block(gref, n / 32, 0, k, &d, &s, &qs);
        assert_true(d == a[k].d && s == a[k].s);
        assert_memory_equal(qs, a[k].qs, 32);
    }
    const kern_q8_grp_t *last = (const kern_q8_grp_t *)gref + (n / 32 - 1) / KERN_Q8_GROUP;
    for (size_t j = n / 32 % KERN_Q8_GROUP; j > 0 && j < KERN_Q8_GROUP; j++) {
        assert_true(last->d[kern_q8_block_lane[j]] == 0.0f);
        assert_int_equal(last->s[kern_q8_block_lane[j]], 0);
        for (int i = 0; i < 32; i++)
            assert_int_equal(last->qs[j][i], 0);
    }
    for (size_t li = 1; li < 3; li++) {
        if (!kern_isa_supported(k_isas[li]))
            continue;
        kern_init(k_isas[li]);
        memset(ggot, 0xaa, gb);
        kern_act_prepare(KERN_Q4_0, x, n, 1, ggot);
        assert_memory_equal(gref, ggot, gb);
    }
    free(gref);
    free(ggot);
    kern_init(KERN_ISA_AUTO);
    free(x);
    free(ref);
    free(got);
}

/* ---- small ops ---- */

static void assert_close(const float *a, const float *b, size_t n, double rel, double abs_tol,
                         const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > rel * fabs((double)b[i]) + abs_tol)
            fail_msg("%s %s n %zu [%zu]: %.9g vs %.9g", what, kern_isa_name(), n, i, a[i], b[i]);
}

static void test_small_ops(void **state)
{
    static const size_t sizes[] = {1, 7, 17, 33, 100, 257};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *x = make_x(n), *w = make_x(n), *u = make_x(n);
        uint16_t *h = malloc(n * 2);
        assert_non_null(h);
        for (size_t i = 0; i < n; i++) {
            x[i] *= 8.0f; /* softmax/silu over a wider range */
            h[i] = kern_f32_to_f16(u[i]);
        }
        float *r_norm = malloc(n * 4), *r_soft = malloc(n * 4), *r_silu = malloc(n * 4);
        float *r_axpy = malloc(n * 4), *r_axpyh = malloc(n * 4), *t = malloc(n * 4);
        assert_non_null(t);
        kern_init(KERN_ISA_SCALAR);
        kern_rmsnorm(r_norm, x, w, n, 1e-5f);
        memcpy(r_soft, x, n * 4);
        kern_softmax(r_soft, n);
        kern_silu_mul(r_silu, x, u, n);
        memcpy(r_axpy, w, n * 4);
        kern_axpy_f32(r_axpy, 0.75f, x, n);
        memcpy(r_axpyh, w, n * 4);
        kern_axpy_f16(r_axpyh, -1.5f, h, n);
        float r_dot = kern_dot_f32(x, w, n), r_doth = kern_dot_f16(h, x, n);
        double sdot = 0, sdoth = 0, sum = 0;
        for (size_t i = 0; i < n; i++) {
            sdot += fabs((double)x[i] * w[i]);
            sdoth += fabs((double)x[i] * kern_f16_to_f32(h[i]));
            sum += r_soft[i];
        }
        assert_float_equal(sum, 1.0, 1e-5);
        for (size_t li = 1; li < 3; li++) {
            if (!kern_isa_supported(k_isas[li]))
                continue;
            kern_init(k_isas[li]);
            kern_rmsnorm(t, x, w, n, 1e-5f);
            assert_close(t, r_norm, n, 1e-5, 1e-7, "rmsnorm");
            memcpy(t, x, n * 4);
            kern_rmsnorm(t, t, w, n, 1e-5f); /* in place */
            assert_close(t, r_norm, n, 1e-5, 1e-7, "rmsnorm in place");
            memcpy(t, x, n * 4);
            kern_softmax(t, n);
            assert_close(t, r_soft, n, 1e-6, 1e-7, "softmax");
            kern_silu_mul(t, x, u, n);
            assert_close(t, r_silu, n, 1e-6, 1e-7, "silu_mul");
            memcpy(t, w, n * 4);
            kern_axpy_f32(t, 0.75f, x, n);
            assert_close(t, r_axpy, n, 1e-6, 1e-6, "axpy_f32");
            memcpy(t, w, n * 4);
            kern_axpy_f16(t, -1.5f, h, n);
            assert_close(t, r_axpyh, n, 1e-6, 1e-6, "axpy_f16");
            assert_float_equal(kern_dot_f32(x, w, n), r_dot, 1e-5 * sdot + 1e-7);
            assert_float_equal(kern_dot_f16(h, x, n), r_doth, 1e-5 * sdoth + 1e-7);
        }
        kern_init(KERN_ISA_AUTO);
        free(x);
        free(w);
        free(u);
        free(h);
        free(r_norm);
        free(r_soft);
        free(r_silu);
        free(r_axpy);
        free(r_axpyh);
        free(t);
    }
}

/* kern_attn_block: several blocks folded into the running state, every level against the scalar
 * one (odd rows, head dims and key counts, rows masked to 0 keys in some blocks); and at each
 * level a row computed alone is bit-identical to the same row computed among the others. */
static void attn_run(const float *qt, size_t ldq, size_t rows, size_t hd, const float *k,
                     const float *v, size_t n_blk, size_t n, const uint32_t *nvs, float *m,
                     float *l, float *acc, float *s)
{
    for (size_t i = 0; i < ldq; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(acc, 0, rows * hd * sizeof(float));
    for (size_t b = 0; b < n_blk; b++)
        kern_attn_block(qt, ldq, rows, hd, k + b * n * (hd + 3), hd + 3, v + b * n * (hd + 1),
                        hd + 1, n, nvs + b * ldq, m, l, acc, s);
}

static void test_attn_block(void **state)
{
    (void)state;
    static const size_t shapes[][3] = {{1, 8, 16},   {3, 8, 4},   {17, 5, 7}, {40, 64, 16},
                                       {33, 67, 19}, {64, 80, 9}, {2, 1, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        size_t rows = shapes[si][0], hd = shapes[si][1], n = shapes[si][2], n_blk = 3;
        size_t ldq = (rows + KERN_ATTN_LANES - 1) / KERN_ATTN_LANES * KERN_ATTN_LANES;
        float *qt = calloc(hd * ldq, 4), *k = malloc(n_blk * n * (hd + 3) * 4);
        float *v = malloc(n_blk * n * (hd + 1) * 4), *s = malloc(n * ldq * 4);
        uint32_t *nvs = calloc(n_blk * ldq, 4), nv1[KERN_ATTN_LANES * 4];
        float *m = malloc(ldq * 4), *l = malloc(ldq * 4), *acc = malloc(rows * hd * 4);
        float *rm = malloc(ldq * 4), *rl = malloc(ldq * 4), *racc = malloc(rows * hd * 4);
        float q1[128 * KERN_ATTN_LANES], m1[KERN_ATTN_LANES], l1[KERN_ATTN_LANES], a1[128];
        assert_non_null(racc);
        for (size_t i = 0; i < hd * ldq; i++)
            qt[i] = (i % ldq) < rows ? rndf() * 2.0f : 0.0f;
        for (size_t i = 0; i < n_blk * n * (hd + 3); i++)
            k[i] = rndf() * 2.0f;
        for (size_t i = 0; i < n_blk * n * (hd + 1); i++)
            v[i] = rndf();
        for (size_t b = 0; b < n_blk; b++)
            for (size_t r = 0; r < rows; r++) /* block 0 always visible, later ones causal-ish */
                nvs[b * ldq + r] = b == 0 ? 1 + rnd() % n : rnd() % (n + 1);
        kern_init(KERN_ISA_SCALAR);
        attn_run(qt, ldq, rows, hd, k, v, n_blk, n, nvs, rm, rl, racc, s);
        for (size_t li = 0; li < 3; li++) {
            if (!kern_isa_supported(k_isas[li]))
                continue;
            kern_init(k_isas[li]);
            attn_run(qt, ldq, rows, hd, k, v, n_blk, n, nvs, m, l, acc, s);
            for (size_t r = 0; r < rows; r++) {
                assert_float_equal(m[r], rm[r], 1e-5 * fabs(rm[r]) + 1e-6);
                assert_float_equal(l[r], rl[r], 1e-5 * rl[r]);
                for (size_t d = 0; d < hd; d++)
                    assert_float_equal(acc[r * hd + d] / l[r], racc[r * hd + d] / rl[r], 1e-5);
            }
            /* a row alone (lane 0 of a one-row tile) matches the row among the others */
            for (size_t r = 0; r < rows; r += 7) {
                memset(q1, 0, sizeof q1);
                memset(nv1, 0, sizeof nv1);
                for (size_t d = 0; d < hd; d++)
                    q1[d * KERN_ATTN_LANES] = qt[d * ldq + r];
                for (size_t b = 0; b < n_blk; b++)
                    nv1[b * KERN_ATTN_LANES] = nvs[b * ldq + r];
                attn_run(q1, KERN_ATTN_LANES, 1, hd, k, v, n_blk, n, nv1, m1, l1, a1, s);
                assert_memory_equal(&m1[0], &m[r], sizeof(float));
                assert_memory_equal(&l1[0], &l[r], sizeof(float));
                assert_memory_equal(a1, acc + r * hd, hd * sizeof(float));
            }
        }
        kern_init(KERN_ISA_AUTO);
        free(qt);
        free(k);
        free(v);
        free(s);
        free(nvs);
        free(m);
        free(l);
        free(acc);
        free(rm);
        free(rl);
        free(racc);
    }
}

static void test_softmax_extremes(void **state)
{
    float x[19];
    for (int i = 0; i < 19; i++)
        x[i] = i == 4 ? 1000.0f : -1000.0f + (float)i;
    for (size_t li = 0; li < 3; li++) {
        if (!kern_isa_supported(k_isas[li]))
            continue;
        kern_init(k_isas[li]);
        float t[19];
        memcpy(t, x, sizeof t);
        kern_softmax(t, 19);
        for (int i = 0; i < 19; i++) {
            assert_false(isnan(t[i]));
            assert_float_equal(t[i], i == 4 ? 1.0f : 0.0f, 1e-30);
        }
    }
    kern_init(KERN_ISA_AUTO);
}

static void test_rope(void **state)
{
    static const size_t dims[][2] = {{64, 64}, {128, 128}, {96, 64}, {34, 34}, {20, 12}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        size_t hd = dims[di][0], n_rot = dims[di][1], n_heads = 3;
        float cs[128];
        kern_rope_table(cs, n_rot, 10000.0f, 37.0f);
        for (size_t j = 0; j < n_rot / 2; j++) {
            double th = 37.0 * pow(10000.0, -(double)(2 * j) / (double)n_rot);
            assert_float_equal(cs[2 * j], cos(th), 1e-6);
            assert_float_equal(cs[2 * j + 1], sin(th), 1e-6);
        }
        float *x = make_x(hd * n_heads);
        for (int neox = 0; neox < 2; neox++) {
            float ref[3 * 128], t[3 * 128];
            memcpy(ref, x, hd * n_heads * 4);
            kern_init(KERN_ISA_SCALAR);
            kern_rope(ref, n_heads, hd, n_rot, cs, neox);
            /* the scalar one against the formula */
            for (size_t h = 0; h < n_heads; h++)
                for (size_t j = 0; j < n_rot / 2; j++) {
                    size_t i0 = neox ? j : 2 * j, i1 = neox ? j + n_rot / 2 : 2 * j + 1;
                    const float *v = x + h * hd;
                    double c = cs[2 * j], s = cs[2 * j + 1];
                    assert_float_equal(ref[h * hd + i0], v[i0] * c - v[i1] * s, 1e-6);
                    assert_float_equal(ref[h * hd + i1], v[i0] * s + v[i1] * c, 1e-6);
                }
            for (size_t i = n_rot; i < hd; i++) /* dims past n_rot untouched */
                assert_true(ref[i] == x[i]);
            for (size_t li = 1; li < 3; li++) {
                if (!kern_isa_supported(k_isas[li]))
                    continue;
                kern_init(k_isas[li]);
                memcpy(t, x, hd * n_heads * 4);
                kern_rope(t, n_heads, hd, n_rot, cs, neox);
                assert_close(t, ref, hd * n_heads, 1e-6, 1e-6, neox ? "rope neox" : "rope");
            }
        }
        kern_init(KERN_ISA_AUTO);
        free(x);
    }
}

static void test_init_and_names(void **state)
{
    assert_int_equal(kern_init(KERN_ISA_SCALAR), ST_OK);
    assert_string_equal(kern_isa_name(), "scalar");
    assert_int_equal(kern_isa(), KERN_ISA_SCALAR);
    if (!kern_isa_supported(KERN_ISA_AVX512)) {
        assert_int_equal(kern_init(KERN_ISA_AVX512), ST_INVAL);
        assert_int_equal(kern_isa(), KERN_ISA_SCALAR); /* unchanged */
    }
    assert_int_equal(kern_init(KERN_ISA_AUTO), ST_OK);
    printf("kernels: %s\n", kern_isa_name());
    assert_int_equal(kern_row_bytes(KERN_Q8_0, 64), 68);
    assert_int_equal(kern_row_bytes(KERN_Q4_0, 64), 36);
    assert_int_equal(kern_row_bytes(KERN_Q4_K, 512), 288);
    assert_int_equal(kern_row_bytes(KERN_Q6_K, 256), 210);
    assert_int_equal(kern_row_bytes(KERN_BF16, 3), 6);
    assert_int_equal(kern_act_bytes(KERN_F32, 64, 3), 0);
    /* one zero-padded group of 16 blocks per token */
    assert_int_equal(kern_act_bytes(KERN_Q4_0, 64, 3), 3 * 16 * KERN_Q8_BLOCK_BYTES);
    assert_int_equal(kern_act_bytes(KERN_Q8_0, 32 * 17, 2), 2 * 32 * KERN_Q8_BLOCK_BYTES);
    assert_string_equal(kern_type_name(KERN_Q4_K), "Q4_K");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_names),
        cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_dequant_float_types),
        cmocka_unit_test(test_dequant_q8_0_q4_0),
        cmocka_unit_test(test_dequant_q4_k),
        cmocka_unit_test(test_dequant_q6_k),
        cmocka_unit_test(test_quant_q8_identical),
        cmocka_unit_test(test_matmul_float),
        cmocka_unit_test(test_matmul_q8_q4),
        cmocka_unit_test(test_matmul_q8_q4_tokens),
        cmocka_unit_test(test_matmul_kquants),
        cmocka_unit_test(test_matmul_model_shapes),
        cmocka_unit_test(test_q8_0_extreme_values),
        cmocka_unit_test(test_small_ops),
        cmocka_unit_test(test_softmax_extremes),
        cmocka_unit_test(test_attn_block),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
