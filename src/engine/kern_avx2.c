/*
 * kern_avx2.c - AVX2 + FMA + F16C kernels (per-file ISA flags; only called after kern_init
 * checked the CPU). The same shapes as kern_avx512.c with 8-lane vectors and 16 registers:
 * float matmul tiles of 4 rows x 2 tokens; int8 tiles of 4 rows x 2 tokens where the per-block
 * dot product is vpmaddubsw (|w| or the Q4_0 nibbles, unsigned) x signed x, then vpmaddwd by 1
 * to int32 (no overflow: |products| <= 128 * 127, pairs <= 32512). Tails (n % 8) are finished in
 * scalar code. K-quants dequantize each super-block once (scalar) and dot it with every token.
 * Matvec (1 token) prefetches the same position in the rows of the next 4-row tile (see
 * kern_avx512.c).
 * Does not: allocate.
 * Thread-safety: pure functions.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kern_int.h"

#define UNROLL _Pragma("GCC unroll 8")
#define INLINE static inline __attribute__((always_inline))
#define ROW_CHUNK 64
#define FT 2 /* token tile, float */
#define QT 2 /* token tile, int8 */

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE int32_t hsum8i(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

INLINE float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- float weights ---- */

#define LW_F32(p, i) _mm256_loadu_ps((const float *)(p) + (i))
#define LW_F16(p, i)                                                                               \
    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(p) + (i))))
#define LW_BF16(p, i)                                                                              \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                         \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)(p) + (i)))),    \
        16))
#define CV_F32(v) (v)
#define CV_F16(v) kern_f16_to_f32(v)
#define CV_BF16(v) kern_bf16_to_f32(v)

#define DEF_FTILE(NAME, ELT, LW, CV)                                                               \
    INLINE void NAME(const ELT *w, size_t n, const float *x, float *y, size_t ldy, int R, int T)   \
    {                                                                                              \
        __m256 acc[4][FT];                                                                         \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =          \
            _mm256_setzero_ps();                                                                   \
        size_t i = 0;                                                                              \
        for (; i + 8 <= n; i += 8) {                                                               \
            __m256 wv[4];                                                                          \
            UNROLL for (int r = 0; r < R; r++) wv[r] = LW(w + (size_t)r * n, i);                   \
            if (T == 1)                                                                            \
                UNROLL for (int r = 0; r < R; r++)                                                 \
                    _mm_prefetch((const char *)(w + (size_t)(r + R) * n + i), _MM_HINT_T1);        \
            UNROLL for (int t = 0; t < T; t++)                                                     \
            {                                                                                      \
                __m256 xv = _mm256_loadu_ps(x + (size_t)t * n + i);                                \
                UNROLL for (int r = 0; r < R; r++) acc[r][t] =                                     \
                    _mm256_fmadd_ps(wv[r], xv, acc[r][t]);                                         \
            }                                                                                      \
        }                                                                                          \
        for (int t = 0; t < T; t++)                                                                \
            for (int r = 0; r < R; r++) {                                                          \
                float s = hsum8(acc[r][t]);                                                        \
                for (size_t k = i; k < n; k++)                                                     \
                    s += CV(w[(size_t)r * n + k]) * x[(size_t)t * n + k];                          \
                y[(size_t)t * ldy + (size_t)r] = s;                                                \
            }                                                                                      \
    }

DEF_FTILE(ftile_f32, float, LW_F32, CV_F32)
DEF_FTILE(ftile_f16, uint16_t, LW_F16, CV_F16)
DEF_FTILE(ftile_bf16, uint16_t, LW_BF16, CV_BF16)

#define DEF_FMM(NAME, ELT, TILE)                                                                   \
    INLINE void NAME##_t(const ELT *W, size_t n_out, size_t n_in, const float *X, float *Y,        \
                         size_t o0, size_t o1, size_t t0, int T)                                   \
    {                                                                                              \
        const float *x = X + t0 * n_in;                                                            \
        float *y = Y + t0 * n_out;                                                                 \
        size_t o = o0;                                                                             \
        for (; o + 4 <= o1; o += 4)                                                                \
            TILE(W + o * n_in, n_in, x, y + o, n_out, 4, T);                                       \
        for (; o < o1; o++)                                                                        \
            TILE(W + o * n_in, n_in, x, y + o, n_out, 1, T);                                       \
    }                                                                                              \
    static void NAME(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,    \
                     size_t n_tok, float *Y, size_t o0, size_t o1)                                 \
    {                                                                                              \
        for (size_t oc = o0; oc < o1; oc += ROW_CHUNK) {                                           \
            size_t oe = min_sz(oc + ROW_CHUNK, o1);                                                \
            for (size_t t = 0; t < n_tok; t += FT) {                                               \
                if (n_tok - t >= 2)                                                                \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 2);                                  \
                else                                                                               \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 1);                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEF_FMM(mm_f32, float, ftile_f32)
DEF_FMM(mm_f16, uint16_t, ftile_f16)
DEF_FMM(mm_bf16, uint16_t, ftile_bf16)

/* ---- int8 weights ---- */

INLINE __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

INLINE void q8_0_tile(const kern_q8_0_block_t *w, size_t nb, const kern_q8_act_t *a, float *y,
                      size_t ldy, int R, int T)
{
    __m256 acc[4][QT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =
        _mm256_setzero_ps();
    for (size_t k = 0; k < nb; k++) {
        __m256i xq[QT];
        __m256 dx[QT];
        UNROLL for (int t = 0; t < T; t++)
        {
            const kern_q8_act_t *ab = a + (size_t)t * nb + k;
            xq[t] = _mm256_loadu_si256((const __m256i *)ab->qs);
            dx[t] = _mm256_set1_ps(ab->d);
        }
        UNROLL for (int r = 0; r < R; r++)
        {
            const kern_q8_0_block_t *b = w + (size_t)r * nb + k;
            if (T == 1)
                _mm_prefetch((const char *)(b + (size_t)R * nb), _MM_HINT_T1);
            __m256i wq = _mm256_loadu_si256((const __m256i *)b->qs);
            __m256i wa = _mm256_abs_epi8(wq);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(b->d));
            UNROLL for (int t = 0; t < T; t++)
            {
                __m256i dp = dot_u8s8(wa, _mm256_sign_epi8(xq[t], wq));
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++)
        y[(size_t)t * ldy + (size_t)r] = hsum8(acc[r][t]);
}

INLINE void q4_0_tile(const kern_q4_0_block_t *w, size_t nb, const kern_q8_act_t *a, float *y,
                      size_t ldy, int R, int T)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4][QT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =
        _mm256_setzero_ps();
    for (size_t k = 0; k < nb; k++) {
        __m256i xq[QT], x0[QT];
        __m256 dx[QT];
        UNROLL for (int t = 0; t < T; t++)
        {
            const kern_q8_act_t *ab = a + (size_t)t * nb + k;
            xq[t] = _mm256_loadu_si256((const __m256i *)ab->qs);
            dx[t] = _mm256_set1_ps(ab->d);
            x0[t] = _mm256_setr_epi32(-8 * ab->s, 0, 0, 0, 0, 0, 0, 0);
        }
        UNROLL for (int r = 0; r < R; r++)
        {
            const kern_q4_0_block_t *b = w + (size_t)r * nb + k;
            if (T == 1)
                _mm_prefetch((const char *)(b + (size_t)R * nb), _MM_HINT_T1);
            __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
            __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(b->d));
            UNROLL for (int t = 0; t < T; t++)
            {
                __m256i dp = _mm256_add_epi32(dot_u8s8(wq, xq[t]), x0[t]);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++)
        y[(size_t)t * ldy + (size_t)r] = hsum8(acc[r][t]);
}

#define DEF_QMM(NAME, BLK, TILE)                                                                   \
    INLINE void NAME##_t(const BLK *W, size_t n_out, size_t nb, const kern_q8_act_t *A, float *Y,  \
                         size_t o0, size_t o1, size_t t0, int T)                                   \
    {                                                                                              \
        const kern_q8_act_t *a = A + t0 * nb;                                                      \
        float *y = Y + t0 * n_out;                                                                 \
        size_t o = o0;                                                                             \
        for (; o + 4 <= o1; o += 4)                                                                \
            TILE(W + o * nb, nb, a, y + o, n_out, 4, T);                                           \
        for (; o < o1; o++)                                                                        \
            TILE(W + o * nb, nb, a, y + o, n_out, 1, T);                                           \
    }                                                                                              \
    static void NAME(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,    \
                     size_t n_tok, float *Y, size_t o0, size_t o1)                                 \
    {                                                                                              \
        size_t nb = n_in / 32;                                                                     \
        for (size_t oc = o0; oc < o1; oc += ROW_CHUNK) {                                           \
            size_t oe = min_sz(oc + ROW_CHUNK, o1);                                                \
            for (size_t t = 0; t < n_tok; t += QT) {                                               \
                if (n_tok - t >= 2)                                                                \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 2);                                  \
                else                                                                               \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 1);                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEF_QMM(mm_q8_0, kern_q8_0_block_t, q8_0_tile)
DEF_QMM(mm_q4_0, kern_q4_0_block_t, q4_0_tile)

/* ---- K-quants ---- */

INLINE float dot256(const float *a, const float *b)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (int i = 0; i < 256; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    return hsum8(_mm256_add_ps(s0, s1));
}

static void mm_kq(bool q4k, const void *W, size_t n_out, size_t n_in, const float *X, size_t n_tok,
                  float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 256, bb = q4k ? sizeof(kern_q4_k_block_t) : sizeof(kern_q6_k_block_t);
    float buf[256] __attribute__((aligned(32)));
    for (size_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)W + o * nb * bb;
        for (size_t t = 0; t < n_tok; t++)
            Y[t * n_out + o] = 0.0f;
        for (size_t k = 0; k < nb; k++) {
            if (q4k)
                kern_ref_dequant_q4_k((const kern_q4_k_block_t *)(row + k * bb), buf);
            else
                kern_ref_dequant_q6_k((const kern_q6_k_block_t *)(row + k * bb), buf);
            for (size_t t = 0; t < n_tok; t++)
                Y[t * n_out + o] += dot256(buf, X + t * n_in + k * 256);
        }
    }
}

static void mm_q4_k(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                    size_t n_tok, float *Y, size_t o0, size_t o1)
{
    mm_kq(true, W, n_out, n_in, X, n_tok, Y, o0, o1);
}

static void mm_q6_k(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                    size_t n_tok, float *Y, size_t o0, size_t o1)
{
    mm_kq(false, W, n_out, n_in, X, n_tok, Y, o0, o1);
}

/* ---- activation quantization (bit-identical to the scalar one) ---- */

static void quant_q8(const float *x, size_t n, void *dst)
{
    kern_q8_act_t *a = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t k = 0; k < n / 32; k++, x += 32) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[j]));
        }
        float amax = hmax8(mx);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++)
            q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], vid));
        __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)a[k].qs, _mm256_permutevar8x32_epi32(p, perm));
        a[k].d = d;
        a[k].s =
            hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    }
}

/* ---- small ops ---- */

/* exp(x): n = round(x log2 e), r = x - n ln2, degree-6 polynomial (Cephes expf coefficients),
 * times 2^n built in the exponent field (x clamped so that n stays in [-126, 127]). */
INLINE __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float dot_f32(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static float dot_f16(const uint16_t *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(LW_F16(a, i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(s0);
    for (; i < n; i++)
        s += kern_f16_to_f32(a[i]) * b[i];
    return s;
}

static void axpy_f32(float *y, float a, const float *x, size_t n)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void axpy_f16(float *y, float a, const uint16_t *x, size_t n)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, LW_F16(x, i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * kern_f16_to_f32(x[i]);
}

static void rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    __m256 ss = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        ss = _mm256_fmadd_ps(v, v, ss);
    }
    float s = hsum8(ss);
    for (; i < n; i++)
        s += x[i] * x[i];
    float scale = 1.0f / sqrtf(s / (float)n + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

static void softmax(float *x, size_t n)
{
    float mx = x[0];
    size_t i = 0;
    if (n >= 8) {
        __m256 m = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8)
            m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        mx = hmax8(m);
    }
    for (; i < n; i++)
        mx = fmaxf(mx, x[i]);
    __m256 vmax = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(x + i, e);
    }
    float s = hsum8(sum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    float inv = 1.0f / s;
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (; i < n; i++)
        x[i] *= inv;
}

static void silu_mul(float *out, const float *g, const float *u, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        __m256 s =
            _mm256_div_ps(v, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), v))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs,
                 bool neox)
{
    size_t half = n_rot / 2;
    const __m256i ev = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (size_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        size_t j = 0;
        if (neox) {
            for (; j + 8 <= half; j += 8) {
                /* de-interleave 8 (cos, sin) pairs: each 128-bit half holds c c c c | s s s s
                 * after the in-lane permute, then the halves are joined */
                __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(cs + 2 * j), ev);
                __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(cs + 2 * j + 8), ev);
                __m256 c = _mm256_permute2f128_ps(a, b, 0x20),
                       s = _mm256_permute2f128_ps(a, b, 0x31);
                __m256 x0 = _mm256_loadu_ps(v + j), x1 = _mm256_loadu_ps(v + j + half);
                _mm256_storeu_ps(v + j, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
                _mm256_storeu_ps(v + j + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
            }
        } else {
            for (; j + 4 <= half; j += 4) {
                __m256 t = _mm256_loadu_ps(cs + 2 * j);
                __m256 c = _mm256_moveldup_ps(t), s = _mm256_movehdup_ps(t);
                __m256 xv = _mm256_loadu_ps(v + 2 * j);
                __m256 sw = _mm256_permute_ps(xv, 0xb1);
                _mm256_storeu_ps(v + 2 * j, _mm256_fmaddsub_ps(xv, c, _mm256_mul_ps(sw, s)));
            }
        }
        for (; j < half; j++) {
            size_t i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
            float c = cs[2 * j], s = cs[2 * j + 1], x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * c - x1 * s;
            v[i1] = x0 * s + x1 * c;
        }
    }
}

void kern_avx2_fill(kern_ops_t *ops)
{
    ops->mm_f32 = mm_f32;
    ops->mm_f16 = mm_f16;
    ops->mm_bf16 = mm_bf16;
    ops->mm_q8_0 = mm_q8_0;
    ops->mm_q4_0 = mm_q4_0;
    ops->mm_q4_k = mm_q4_k;
    ops->mm_q6_k = mm_q6_k;
    ops->quant_q8 = quant_q8;
    ops->dot_f32 = dot_f32;
    ops->dot_f16 = dot_f16;
    ops->axpy_f32 = axpy_f32;
    ops->axpy_f16 = axpy_f16;
    ops->rmsnorm = rmsnorm;
    ops->softmax = softmax;
    ops->silu_mul = silu_mul;
    ops->rope = rope;
}
