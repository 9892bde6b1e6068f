/*
 * kern.c - the scalar reference kernels (the ground truth for every SIMD version), type
 * helpers, dequantization, and the dispatch table chosen by kern_init.
 *
 * Design: the table (g_ops) starts as the scalar one; kern_init copies the scalar table and lets
 * kern_avx2_fill / kern_avx512_fill override what they implement, so a missing SIMD entry falls
 * back to the reference. The scalar matmuls compute the same quantities as the SIMD ones (for
 * Q8_0/Q4_0: exact int32 block dot products times the float block scales d_w * d_x, activations
 * read from the grouped act buffer through kern_q8_grp_block) but accumulate in double, so
 * SIMD-vs-scalar differences are float summation order only.
 * Block layouts follow ggml (ggml-common.h); dequantization follows ggml-quants.c's formulas.
 * Thread-safety: see kern.h (kern_init is the only function with side effects).
 */
#include "engine/kern.h"

#include <math.h>
#include <string.h>
#include <cpuid.h>

#include "common/log.h"
#include "common/status.h"
#include "engine/kern_int.h"

/* ---- conversions ---- */

float kern_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;
    if (exp == 0) {
        f = (float)man * 0x1p-24f; /* zero or subnormal: exact */
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kern_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to infinity */
    if (ax < 0x38800000u) {                /* below 2^-14: subnormal or zero */
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 0x1p24f));
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u); /* round to nearest even */
    r -= 112u << 23;
    return (uint16_t)(sign | (r >> 13));
}

float kern_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kern_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* keep NaN a NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- types ---- */

size_t kern_block_elems(kern_type_t t)
{
    switch (t) {
    case KERN_F32:
    case KERN_F16:
    case KERN_BF16:
        return 1;
    case KERN_Q8_0:
    case KERN_Q4_0:
        return 32;
    case KERN_Q4_K:
    case KERN_Q6_K:
        return 256;
    }
    return 0;
}

size_t kern_block_bytes(kern_type_t t)
{
    switch (t) {
    case KERN_F32:
        return 4;
    case KERN_F16:
    case KERN_BF16:
        return 2;
    case KERN_Q8_0:
        return sizeof(kern_q8_0_block_t);
    case KERN_Q4_0:
        return sizeof(kern_q4_0_block_t);
    case KERN_Q4_K:
        return sizeof(kern_q4_k_block_t);
    case KERN_Q6_K:
        return sizeof(kern_q6_k_block_t);
    }
    return 0;
}

size_t kern_row_bytes(kern_type_t t, size_t n)
{
    size_t be = kern_block_elems(t);
    SY_ASSERT(be != 0 && n % be == 0);
    return n / be * kern_block_bytes(t);
}

const char *kern_type_name(kern_type_t t)
{
    switch (t) {
    case KERN_F32:
        return "F32";
    case KERN_F16:
        return "F16";
    case KERN_BF16:
        return "BF16";
    case KERN_Q8_0:
        return "Q8_0";
    case KERN_Q4_0:
        return "Q4_0";
    case KERN_Q4_K:
        return "Q4_K";
    case KERN_Q6_K:
        return "Q6_K";
    }
    return "?";
}

/* ---- dequantization (scalar ground truth) ---- */

/* The 6-bit (scale, min) pair j (0..7) of a Q4_K super-block: pairs 0-3 are the low 6 bits of
 * bytes j and j+4; pairs 4-7 take their low 4 bits from byte j+4 and the top 2 from the spare
 * high bits of bytes j-4 (scale) and j (min). */
static void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

void kern_ref_dequant_q4_k(const kern_q4_k_block_t *b, float *y)
{
    float d = kern_f16_to_f32(b->d), dmin = kern_f16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int g = 0; g < 4; g++) { /* 64 values: two sub-blocks of 32 share 32 bytes */
        int sc0, m0, sc1, m1;
        q4k_scale_min(b->scales, 2 * g, &sc0, &m0);
        q4k_scale_min(b->scales, 2 * g + 1, &sc1, &m1);
        float d0 = d * (float)sc0, mm0 = dmin * (float)m0;
        float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++)
            y[l] = d0 * (float)(q[l] & 0x0f) - mm0;
        for (int l = 0; l < 32; l++)
            y[32 + l] = d1 * (float)(q[l] >> 4) - mm1;
        y += 64;
        q += 32;
    }
}

void kern_ref_dequant_q6_k(const kern_q6_k_block_t *b, float *y)
{
    float d = kern_f16_to_f32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int half = 0; half < 2; half++) { /* 128 values from 64 ql bytes and 32 qh bytes */
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

void kern_dequant_row(kern_type_t t, const void *src, float *dst, size_t n)
{
    size_t be = kern_block_elems(t);
    SY_ASSERT(be != 0 && n % be == 0);
    size_t nb = n / be;
    switch (t) {
    case KERN_F32:
        memcpy(dst, src, n * sizeof(float));
        return;
    case KERN_F16: {
        const uint16_t *h = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = kern_f16_to_f32(h[i]);
        return;
    }
    case KERN_BF16: {
        const uint16_t *h = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = kern_bf16_to_f32(h[i]);
        return;
    }
    case KERN_Q8_0: {
        const kern_q8_0_block_t *b = src;
        for (size_t k = 0; k < nb; k++) {
            float d = kern_f16_to_f32(b[k].d);
            for (int j = 0; j < 32; j++)
                dst[k * 32 + (size_t)j] = (float)b[k].qs[j] * d;
        }
        return;
    }
    case KERN_Q4_0: {
        const kern_q4_0_block_t *b = src;
        for (size_t k = 0; k < nb; k++) {
            float d = kern_f16_to_f32(b[k].d);
            for (int j = 0; j < 16; j++) {
                dst[k * 32 + (size_t)j] = (float)((b[k].qs[j] & 0x0f) - 8) * d;
                dst[k * 32 + 16 + (size_t)j] = (float)((b[k].qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
    case KERN_Q4_K: {
        const kern_q4_k_block_t *b = src;
        for (size_t k = 0; k < nb; k++)
            kern_ref_dequant_q4_k(&b[k], dst + k * 256);
        return;
    }
    case KERN_Q6_K: {
        const kern_q6_k_block_t *b = src;
        for (size_t k = 0; k < nb; k++)
            kern_ref_dequant_q6_k(&b[k], dst + k * 256);
        return;
    }
    }
}

/* ---- activation quantization ---- */

size_t kern_q8_bytes(size_t n)
{
    SY_ASSERT(n % KERN_Q8_BLOCK == 0);
    return n / KERN_Q8_BLOCK * KERN_Q8_BLOCK_BYTES;
}

/* The SIMD versions must produce the same bytes: d = amax / 127 and q = nearbyint(x * (1 / d)),
 * all in float, round-to-nearest-even (the default rounding mode, as cvtps2dq). */
static void ref_quant_block(const float *x, float *d_out, int32_t *s_out, int8_t *qs)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int j = 0; j < 32; j++) {
        int q = (int)nearbyintf(x[j] * id);
        qs[j] = (int8_t)q;
        s += q;
    }
    *d_out = d;
    *s_out = s;
}

static void ref_quant_q8(const float *x, size_t n, void *dst)
{
    kern_q8_act_t *a = dst;
    for (size_t k = 0; k < n / 32; k++, x += 32)
        ref_quant_block(x, &a[k].d, &a[k].s, a[k].qs);
}

/* Lane l of kern_avx512.c's reduced group vector holds block lane_block[l] (see there). */
const uint8_t kern_q8_lane_block[KERN_Q8_GROUP] = {0, 2,  4,  6,  1, 3,  5,  7,
                                                   8, 10, 12, 14, 9, 11, 13, 15};
const uint8_t kern_q8_block_lane[KERN_Q8_GROUP] = {0, 4,  1, 5,  2,  6,  3,  7,
                                                   8, 12, 9, 13, 10, 14, 11, 15};

static void ref_quant_q8g(const float *x, size_t n, void *dst)
{
    size_t nb = n / 32;
    kern_q8_grp_t *g = dst;
    memset(g, 0, kern_q8_groups(nb) * sizeof *g);
    for (size_t k = 0; k < nb; k++) {
        kern_q8_grp_t *gk = g + k / KERN_Q8_GROUP;
        size_t j = k % KERN_Q8_GROUP, l = kern_q8_block_lane[j];
        ref_quant_block(x + 32 * k, &gk->d[l], &gk->s[l], gk->qs[j]);
    }
}

/* ---- scalar matmuls ---- */

static void ref_mm_f32(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                       size_t n_tok, float *Y, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o++) {
        const float *w = (const float *)W + o * n_in;
        for (size_t t = 0; t < n_tok; t++) {
            const float *x = X + t * n_in;
            double acc = 0;
            for (size_t i = 0; i < n_in; i++)
                acc += (double)w[i] * (double)x[i];
            Y[t * n_out + o] = (float)acc;
        }
    }
}

static void ref_mm_f16(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                       size_t n_tok, float *Y, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o++) {
        const uint16_t *w = (const uint16_t *)W + o * n_in;
        for (size_t t = 0; t < n_tok; t++) {
            const float *x = X + t * n_in;
            double acc = 0;
            for (size_t i = 0; i < n_in; i++)
                acc += (double)kern_f16_to_f32(w[i]) * (double)x[i];
            Y[t * n_out + o] = (float)acc;
        }
    }
}

static void ref_mm_bf16(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                        size_t n_tok, float *Y, size_t o0, size_t o1)
{
    for (size_t o = o0; o < o1; o++) {
        const uint16_t *w = (const uint16_t *)W + o * n_in;
        for (size_t t = 0; t < n_tok; t++) {
            const float *x = X + t * n_in;
            double acc = 0;
            for (size_t i = 0; i < n_in; i++)
                acc += (double)kern_bf16_to_f32(w[i]) * (double)x[i];
            Y[t * n_out + o] = (float)acc;
        }
    }
}

static void ref_mm_q8_0(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                        size_t n_tok, float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 32;
    for (size_t o = o0; o < o1; o++) {
        const kern_q8_0_block_t *w = (const kern_q8_0_block_t *)W + o * nb;
        for (size_t t = 0; t < n_tok; t++) {
            double acc = 0;
            for (size_t k = 0; k < nb; k++) {
                float dx;
                int32_t sx, s = 0;
                const int8_t *xq;
                kern_q8_grp_block(act, nb, t, k, &dx, &sx, &xq);
                for (int j = 0; j < 32; j++)
                    s += (int32_t)w[k].qs[j] * (int32_t)xq[j];
                acc += (double)s * (double)(kern_f16_to_f32(w[k].d) * dx);
            }
            Y[t * n_out + o] = (float)acc;
        }
    }
}

static void ref_mm_q4_0(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                        size_t n_tok, float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 32;
    for (size_t o = o0; o < o1; o++) {
        const kern_q4_0_block_t *w = (const kern_q4_0_block_t *)W + o * nb;
        for (size_t t = 0; t < n_tok; t++) {
            double acc = 0;
            for (size_t k = 0; k < nb; k++) {
                float dx;
                int32_t sx, s = 0; /* sum q * x over nibbles q in 0..15, then the -8 offset */
                const int8_t *xq;
                kern_q8_grp_block(act, nb, t, k, &dx, &sx, &xq);
                for (int j = 0; j < 16; j++) {
                    s += (int32_t)(w[k].qs[j] & 0x0f) * xq[j];
                    s += (int32_t)(w[k].qs[j] >> 4) * xq[j + 16];
                }
                s -= 8 * sx;
                acc += (double)s * (double)(kern_f16_to_f32(w[k].d) * dx);
            }
            Y[t * n_out + o] = (float)acc;
        }
    }
}

/* K-quants: each 256-value super-block is dequantized (scalar) and dotted with X in F32. */
static void ref_mm_kq(kern_type_t type, const void *W, size_t n_out, size_t n_in, const float *X,
                      size_t n_tok, float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 256, bb = kern_block_bytes(type);
    float buf[256];
    for (size_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)W + o * nb * bb;
        for (size_t t = 0; t < n_tok; t++) {
            const float *x = X + t * n_in;
            double acc = 0;
            for (size_t k = 0; k < nb; k++) {
                if (type == KERN_Q4_K)
                    kern_ref_dequant_q4_k((const kern_q4_k_block_t *)(row + k * bb), buf);
                else
                    kern_ref_dequant_q6_k((const kern_q6_k_block_t *)(row + k * bb), buf);
                for (int j = 0; j < 256; j++)
                    acc += (double)buf[j] * (double)x[k * 256 + (size_t)j];
            }
            Y[t * n_out + o] = (float)acc;
        }
    }
}

static void ref_mm_q4_k(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                        size_t n_tok, float *Y, size_t o0, size_t o1)
{
    ref_mm_kq(KERN_Q4_K, W, n_out, n_in, X, n_tok, Y, o0, o1);
}

static void ref_mm_q6_k(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                        size_t n_tok, float *Y, size_t o0, size_t o1)
{
    ref_mm_kq(KERN_Q6_K, W, n_out, n_in, X, n_tok, Y, o0, o1);
}

/* ---- scalar small ops ---- */

static float ref_dot_f32(const float *a, const float *b, size_t n)
{
    double acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += (double)a[i] * (double)b[i];
    return (float)acc;
}

static float ref_dot_f16(const uint16_t *a, const float *b, size_t n)
{
    double acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += (double)kern_f16_to_f32(a[i]) * (double)b[i];
    return (float)acc;
}

static void ref_axpy_f32(float *y, float a, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void ref_axpy_f16(float *y, float a, const uint16_t *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * kern_f16_to_f32(x[i]);
}

static void ref_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (size_t i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static void ref_softmax(float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++)
        mx = fmaxf(mx, x[i]);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

static void ref_silu_mul(float *out, const float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        out[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

static void ref_rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs,
                     bool neox)
{
    size_t half = n_rot / 2;
    for (size_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (size_t j = 0; j < half; j++) {
            size_t i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
            float c = cs[2 * j], s = cs[2 * j + 1];
            float x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * c - x1 * s;
            v[i1] = x0 * s + x1 * c;
        }
    }
}

/* Row by row: scores, block max, rescale of the running state, then p and p * v in key order. */
static void ref_attn_block(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                           size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv,
                           float *m, float *l, float *acc, float *s)
{
    (void)n;
    for (size_t r = 0; r < n_rows; r++) {
        size_t nr = nv[r];
        if (nr == 0)
            continue;
        float *sr = s; /* one row of scratch at a time */
        float mb = -INFINITY;
        for (size_t j = 0; j < nr; j++) {
            float d = 0.0f;
            for (size_t i = 0; i < hd; i++)
                d += qt[i * ldq + r] * k[j * ldk + i];
            sr[j] = d;
            mb = fmaxf(mb, d);
        }
        float mn = fmaxf(m[r], mb);
        float alpha = expf(m[r] - mn), sum = 0.0f;
        float *ar = acc + r * hd;
        for (size_t i = 0; i < hd; i++)
            ar[i] *= alpha;
        for (size_t j = 0; j < nr; j++) {
            float p = expf(sr[j] - mn);
            sum += p;
            for (size_t i = 0; i < hd; i++)
                ar[i] += p * v[j * ldv + i];
        }
        m[r] = mn;
        l[r] = l[r] * alpha + sum;
    }
}

void kern_rope_table(float *cs, size_t n_rot, float base, float pos)
{
    for (size_t j = 0; j < n_rot / 2; j++) {
        double theta = (double)pos * pow((double)base, -(double)(2 * j) / (double)n_rot);
        cs[2 * j] = (float)cos(theta);
        cs[2 * j + 1] = (float)sin(theta);
    }
}

/* ---- dispatch ---- */

/* The scalar table, as an initializer (a const object is not a constant expression in C). */
#define K_SCALAR_OPS                                                                               \
    {                                                                                              \
        .mm_f32 = ref_mm_f32, .mm_f16 = ref_mm_f16, .mm_bf16 = ref_mm_bf16,                        \
        .mm_q8_0 = ref_mm_q8_0, .mm_q4_0 = ref_mm_q4_0, .mm_q4_k = ref_mm_q4_k,                    \
        .mm_q6_k = ref_mm_q6_k, .quant_q8 = ref_quant_q8, .quant_q8g = ref_quant_q8g,              \
        .dot_f32 = ref_dot_f32, .dot_f16 = ref_dot_f16, .axpy_f32 = ref_axpy_f32,                  \
        .axpy_f16 = ref_axpy_f16, .rmsnorm = ref_rmsnorm, .softmax = ref_softmax,                  \
        .silu_mul = ref_silu_mul, .rope = ref_rope, .attn_block = ref_attn_block,                  \
    }

static const kern_ops_t k_scalar_ops = K_SCALAR_OPS;

static kern_ops_t g_ops = K_SCALAR_OPS;
static kern_isa_t g_isa = KERN_ISA_SCALAR;

static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c & bit_F16C) != 0;
}

bool kern_isa_supported(kern_isa_t isa)
{
    __builtin_cpu_init();
    switch (isa) {
    case KERN_ISA_AUTO:
    case KERN_ISA_SCALAR:
        return true;
    case KERN_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case KERN_ISA_AVX512:
        return kern_isa_supported(KERN_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    }
    return false;
}

int kern_init(kern_isa_t force)
{
    kern_isa_t isa = force;
    if (isa == KERN_ISA_AUTO) {
        isa = kern_isa_supported(KERN_ISA_AVX512) ? KERN_ISA_AVX512
              : kern_isa_supported(KERN_ISA_AVX2) ? KERN_ISA_AVX2
                                                  : KERN_ISA_SCALAR;
    }
    if (!kern_isa_supported(isa))
        return ST_INVAL;
    kern_ops_t ops = k_scalar_ops;
    if (isa >= KERN_ISA_AVX2) {
        kern_avx2_fill(&ops);
        kern_avx2_fill_attn(&ops);
    }
    if (isa >= KERN_ISA_AVX512) {
        kern_avx512_fill(&ops);
        kern_avx512_fill_attn(&ops);
    }
    g_ops = ops;
    g_isa = isa;
    return ST_OK;
}

kern_isa_t kern_isa(void)
{
    return g_isa;
}

const char *kern_isa_name(void)
{
    switch (g_isa) {
    case KERN_ISA_AVX2:
        return "avx2";
    case KERN_ISA_AVX512:
        return "avx512";
    default:
        return "scalar";
    }
}

/* ---- public entry points ---- */

void kern_quant_q8(const float *x, size_t n, void *dst)
{
    SY_ASSERT(n % KERN_Q8_BLOCK == 0);
    g_ops.quant_q8(x, n, dst);
}

size_t kern_act_bytes(kern_type_t t, size_t n_in, size_t n_tok)
{
    if (t != KERN_Q8_0 && t != KERN_Q4_0)
        return 0;
    SY_ASSERT(n_in % KERN_Q8_BLOCK == 0);
    return kern_q8_groups(n_in / KERN_Q8_BLOCK) * sizeof(kern_q8_grp_t) * n_tok;
}

void kern_act_prepare(kern_type_t t, const float *X, size_t n_in, size_t n_tok, void *act)
{
    if (kern_act_bytes(t, n_in, n_tok) == 0)
        return;
    size_t rb = kern_act_bytes(t, n_in, 1);
    for (size_t i = 0; i < n_tok; i++)
        g_ops.quant_q8g(X + i * n_in, n_in, (uint8_t *)act + i * rb);
}

void kern_matmul_rows(kern_type_t t, const void *W, size_t n_out, size_t n_in, const float *X,
                      const void *act, size_t n_tok, float *Y, size_t o_begin, size_t o_end)
{
    size_t be = kern_block_elems(t);
    SY_ASSERT(be != 0 && n_in % be == 0 && o_begin <= o_end && o_end <= n_out);
    SY_ASSERT(kern_act_bytes(t, n_in, n_tok) == 0 || act != NULL);
    if (o_begin == o_end || n_tok == 0 || n_in == 0) {
        if (n_in == 0)
            for (size_t i = 0; i < n_tok; i++)
                for (size_t o = o_begin; o < o_end; o++)
                    Y[i * n_out + o] = 0.0f;
        return;
    }
    kern_mm_fn fn = NULL;
    switch (t) {
    case KERN_F32:
        fn = g_ops.mm_f32;
        break;
    case KERN_F16:
        fn = g_ops.mm_f16;
        break;
    case KERN_BF16:
        fn = g_ops.mm_bf16;
        break;
    case KERN_Q8_0:
        fn = g_ops.mm_q8_0;
        break;
    case KERN_Q4_0:
        fn = g_ops.mm_q4_0;
        break;
    case KERN_Q4_K:
        fn = g_ops.mm_q4_k;
        break;
    case KERN_Q6_K:
        fn = g_ops.mm_q6_k;
        break;
    }
    fn(W, n_out, n_in, X, act, n_tok, Y, o_begin, o_end);
}

void kern_matmul(kern_type_t t, const void *W, size_t n_out, size_t n_in, const float *X,
                 size_t n_tok, float *Y, void *scratch)
{
    kern_act_prepare(t, X, n_in, n_tok, scratch);
    kern_matmul_rows(t, W, n_out, n_in, X, scratch, n_tok, Y, 0, n_out);
}

void kern_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    g_ops.rmsnorm(out, x, w, n, eps);
}

void kern_softmax(float *x, size_t n)
{
    SY_ASSERT(n >= 1);
    g_ops.softmax(x, n);
}

void kern_silu_mul(float *out, const float *g, const float *u, size_t n)
{
    g_ops.silu_mul(out, g, u, n);
}

void kern_rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs, bool neox)
{
    SY_ASSERT(n_rot % 2 == 0 && n_rot <= head_dim);
    g_ops.rope(x, n_heads, head_dim, n_rot, cs, neox);
}

float kern_dot_f32(const float *a, const float *b, size_t n)
{
    return g_ops.dot_f32(a, b, n);
}

float kern_dot_f16(const uint16_t *a, const float *b, size_t n)
{
    return g_ops.dot_f16(a, b, n);
}

void kern_axpy_f32(float *y, float a, const float *x, size_t n)
{
    g_ops.axpy_f32(y, a, x, n);
}

void kern_axpy_f16(float *y, float a, const uint16_t *x, size_t n)
{
    g_ops.axpy_f16(y, a, x, n);
}

void kern_attn_block(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                     size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv, float *m,
                     float *l, float *acc, float *s)
{
    SY_ASSERT(ldq % KERN_ATTN_LANES == 0 && n_rows <= ldq && hd > 0);
    g_ops.attn_block(qt, ldq, n_rows, hd, k, ldk, v, ldv, n, nv, m, l, acc, s);
}
