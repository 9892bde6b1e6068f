/*
 * kern_avx2.c - AVX2 + FMA + F16C kernels (per-file ISA flags; only called after kern_init
 * checked the CPU). The same shapes as kern_avx512.c with 8-lane vectors and 16 registers:
 * float matmul tiles of 4 rows x 2 tokens; int8 tiles of 4 rows x 2 tokens where the per-block
 * dot product is vpmaddubsw (|w| or the Q4_0 nibbles, unsigned) x signed x, then vpmaddwd by 1
 * to int32 (no overflow: |products| <= 128 * 127, pairs <= 32512); the int8 tiles read the
 * grouped act buffer (kern_int.h) and take their 4 rows from 4 equal runs of the row range (4
 * sequential streams, software prefetch ahead in each, as kern_avx512.c). Tails (n % 8) are
 * finished in scalar code. K-quants dequantize each super-block once (scalar) and dot it with
 * every token. Float matvec (1 token) prefetches the same position in the rows of the next 4-row
 * tile.
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

#define QR 4         /* rows per tile */
#define QCHUNK 16    /* tile rows per chunk (QR * QCHUNK rows stay in L2 for every token tile) */
#define QPF_GROUPS 4 /* software prefetch distance in each row stream, in groups (kern_avx512.c)   \
                      */

INLINE __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* One tile: R rows (pointers wr, outputs yr with token stride ldy) x T tokens of act A (ng groups
 * per token). Per block and (row, token): the exact int32 dot product in 8 lanes, converted and
 * FMA'd with d_w * d_x into 8 float lanes; the lanes are reduced at the end. The order per
 * (row, token) does not depend on R, T or the row split. Q8_0: |w| (unsigned) times sign(x, w);
 * Q4_0: the nibbles (unsigned) times x, with -8 * sum(x) added to lane 0. */
INLINE void q_tile(int q4, const uint8_t *const *wr, int R, size_t nb, const kern_q8_grp_t *A,
                   size_t ng, int T, float *const *yr, size_t ldy, int pf)
{
    const size_t bb = q4 ? sizeof(kern_q4_0_block_t) : sizeof(kern_q8_0_block_t);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[QR][QT];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =
        _mm256_setzero_ps();
    for (size_t g = 0; g < ng; g++) {
        size_t m = min_sz(KERN_Q8_GROUP, nb - g * KERN_Q8_GROUP);
        for (size_t j = 0; j < m; j++) {
            size_t k = g * KERN_Q8_GROUP + j, l = kern_q8_block_lane[j];
            __m256i xq[QT], x0[QT];
            __m256 dx[QT];
            UNROLL for (int t = 0; t < T; t++)
            {
                const kern_q8_grp_t *x = A + (size_t)t * ng + g;
                xq[t] = _mm256_loadu_si256((const __m256i *)x->qs[j]);
                dx[t] = _mm256_set1_ps(x->d[l]);
                x0[t] = _mm256_setr_epi32(-8 * x->s[l], 0, 0, 0, 0, 0, 0, 0);
            }
            UNROLL for (int r = 0; r < R; r++)
            {
                const uint8_t *b = wr[r] + k * bb;
                if (pf && (k & 1) == 0)
                    _mm_prefetch((const char *)(b + QPF_GROUPS * KERN_Q8_GROUP * bb), _MM_HINT_T0);
                uint16_t h;
                memcpy(&h, b, 2);
                __m256 dw = _mm256_set1_ps(_cvtsh_ss(h));
                if (!q4) {
                    __m256i wq = _mm256_loadu_si256((const __m256i *)(b + 2));
                    __m256i wa = _mm256_abs_epi8(wq);
                    UNROLL for (int t = 0; t < T; t++)
                    {
                        __m256i dp = dot_u8s8(wa, _mm256_sign_epi8(xq[t], wq));
                        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp),
                                                    _mm256_mul_ps(dw, dx[t]), acc[r][t]);
                    }
                } else {
                    __m128i q = _mm_loadu_si128((const __m128i *)(b + 2));
                    __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
                    UNROLL for (int t = 0; t < T; t++)
                    {
                        __m256i dp = _mm256_add_epi32(dot_u8s8(wq, xq[t]), x0[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp),
                                                    _mm256_mul_ps(dw, dx[t]), acc[r][t]);
                    }
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) yr[r][(size_t)t * ldy] =
        hsum8(acc[r][t]);
}

/* Rows [o0, o1) are split into QR equal runs and a tile takes row i of each run: QR long
 * sequential streams (see kern_avx512.c). The 0-3 leftover rows go one at a time. */
INLINE void q_mm(int q4, const void *W, size_t n_out, size_t n_in, const void *act, size_t n_tok,
                 float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 32, ng = kern_q8_groups(nb);
    size_t rb = nb * (q4 ? sizeof(kern_q4_0_block_t) : sizeof(kern_q8_0_block_t));
    const uint8_t *w = W;
    const kern_q8_grp_t *A = act;
    size_t q = (o1 - o0) / QR;
    for (size_t ic = 0; ic < q; ic += QCHUNK) {
        size_t ie = min_sz(ic + QCHUNK, q);
        for (size_t t = 0; t < n_tok; t += QT) {
            for (size_t i = ic; i < ie; i++) {
                const uint8_t *wr[QR];
                float *yr[QR];
                for (int r = 0; r < QR; r++) {
                    size_t o = o0 + (size_t)r * q + i;
                    wr[r] = w + o * rb;
                    yr[r] = Y + t * n_out + o;
                }
                if (n_tok - t >= 2)
                    q_tile(q4, wr, QR, nb, A + t * ng, ng, 2, yr, n_out, 0);
                else
                    q_tile(q4, wr, QR, nb, A + t * ng, ng, 1, yr, n_out, t == 0);
            }
        }
    }
    for (size_t o = o0 + QR * q; o < o1; o++)
        for (size_t t = 0; t < n_tok; t += QT) {
            const uint8_t *wr[1] = {w + o * rb};
            float *yr[1] = {Y + t * n_out + o};
            if (n_tok - t >= 2)
                q_tile(q4, wr, 1, nb, A + t * ng, ng, 2, yr, n_out, 0);
            else
                q_tile(q4, wr, 1, nb, A + t * ng, ng, 1, yr, n_out, 0);
        }
}

static void mm_q8_0(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                    size_t n_tok, float *Y, size_t o0, size_t o1)
{
    q_mm(0, W, n_out, n_in, act, n_tok, Y, o0, o1);
}

static void mm_q4_0(const void *W, size_t n_out, size_t n_in, const float *X, const void *act,
                    size_t n_tok, float *Y, size_t o0, size_t o1)
{
    q_mm(1, W, n_out, n_in, act, n_tok, Y, o0, o1);
}

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

INLINE void quant_block(const float *x, float *d_out, int32_t *s_out, int8_t *qs)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
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
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(p, perm));
    *d_out = d;
    *s_out = hsum8i(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static void quant_q8(const float *x, size_t n, void *dst)
{
    kern_q8_act_t *a = dst;
    for (size_t k = 0; k < n / 32; k++, x += 32)
        quant_block(x, &a[k].d, &a[k].s, a[k].qs);
}

static void quant_q8g(const float *x, size_t n, void *dst)
{
    size_t nb = n / 32;
    kern_q8_grp_t *g = dst;
    if (nb % KERN_Q8_GROUP)
        memset(g + nb / KERN_Q8_GROUP, 0, sizeof *g);
    for (size_t k = 0; k < nb; k++) {
        kern_q8_grp_t *gk = g + k / KERN_Q8_GROUP;
        size_t j = k % KERN_Q8_GROUP, l = kern_q8_block_lane[j];
        quant_block(x + 32 * k, &gk->d[l], &gk->s[l], gk->qs[j]);
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
    ops->quant_q8g = quant_q8g;
    ops->dot_f32 = dot_f32;
    ops->dot_f16 = dot_f16;
    ops->axpy_f32 = axpy_f32;
    ops->axpy_f16 = axpy_f16;
    ops->rmsnorm = rmsnorm;
    ops->softmax = softmax;
    ops->silu_mul = silu_mul;
    ops->rope = rope;
}

/* ---- flash-attention block (kern.h kern_attn_block) ----
 * As in kern_avx512.c with 8-lane vectors: query rows in lanes for the scores (8 keys per pass)
 * and the softmax state, head dims in lanes for p * v (up to 4 vectors per pass, masked tail). */
INLINE __m256i lane_mask8(size_t w)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static void attn_block(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                       size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv,
                       float *m, float *l, float *acc, float *s)
{
    (void)n;
    uint32_t nmax = 0;
    for (size_t r = 0; r < n_rows; r++)
        nmax = nv[r] > nmax ? nv[r] : nmax;
    for (size_t r0 = 0; r0 < n_rows; r0 += 8) {
        const float *q0 = qt + r0;
        size_t j = 0;
        for (; j + 8 <= nmax; j += 8) {
            __m256 a[8];
            UNROLL
            for (int u = 0; u < 8; u++)
                a[u] = _mm256_setzero_ps();
            const float *kj = k + j * ldk;
            for (size_t d = 0; d < hd; d++) {
                __m256 qv = _mm256_loadu_ps(q0 + d * ldq);
                UNROLL
                for (int u = 0; u < 8; u++)
                    a[u] = _mm256_fmadd_ps(qv, _mm256_broadcast_ss(kj + u * ldk + d), a[u]);
            }
            UNROLL
            for (int u = 0; u < 8; u++)
                _mm256_storeu_ps(s + (j + u) * ldq + r0, a[u]);
        }
        for (; j < nmax; j++) {
            __m256 a = _mm256_setzero_ps();
            const float *kj = k + j * ldk;
            for (size_t d = 0; d < hd; d++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d * ldq), _mm256_broadcast_ss(kj + d), a);
            _mm256_storeu_ps(s + j * ldq + r0, a);
        }
        /* nv <= 2^31 in practice: signed compares are exact */
        __m256i nvv = _mm256_loadu_si256((const __m256i *)(nv + r0));
        __m256 mo = _mm256_loadu_ps(m + r0), mb = _mm256_set1_ps(-INFINITY);
        __m256 mb2 = mb; /* two chains (max is exact in any order) */
        for (j = 0; j < nmax; j++) {
            __m256 kj = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nvv, _mm256_set1_epi32((int)j)));
            if (j & 1)
                mb2 = _mm256_blendv_ps(mb2, _mm256_max_ps(mb2, _mm256_loadu_ps(s + j * ldq + r0)),
                                       kj);
            else
                mb = _mm256_blendv_ps(mb, _mm256_max_ps(mb, _mm256_loadu_ps(s + j * ldq + r0)), kj);
        }
        mb = _mm256_max_ps(mb, mb2);
        __m256 any = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nvv, _mm256_setzero_si256()));
        __m256 mn = _mm256_blendv_ps(mo, _mm256_max_ps(mo, mb), any);
        __m256 alpha = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(mo, mn)), any);
        /* exp256 clamps at -87.3: the first block's alpha (mo = -inf) is tiny, not 0, and only
         * ever scales l = 0 and acc = 0 */
        __m256 sum = _mm256_setzero_ps(), sum2 = sum; /* even / odd keys: a fixed order */
        for (j = 0; j < nmax; j++) {
            __m256 kj = _mm256_castsi256_ps(_mm256_cmpgt_epi32(nvv, _mm256_set1_epi32((int)j)));
            __m256 p =
                _mm256_and_ps(kj, exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j * ldq + r0), mn)));
            if (j & 1)
                sum2 = _mm256_add_ps(sum2, p);
            else
                sum = _mm256_add_ps(sum, p);
            _mm256_storeu_ps(s + j * ldq + r0, p);
        }
        sum = _mm256_add_ps(sum, sum2);
        _mm256_storeu_ps(m + r0, mn);
        _mm256_storeu_ps(l + r0, _mm256_fmadd_ps(_mm256_loadu_ps(l + r0), alpha, sum));
        float al[8];
        _mm256_storeu_ps(al, alpha);
        size_t r1 = n_rows - r0 < 8 ? n_rows : r0 + 8;
        for (size_t r = r0; r < r1; r++) {
            size_t nr = nv[r];
            if (nr == 0)
                continue;
            float *ar = acc + r * hd;
            __m256 va = _mm256_set1_ps(al[r - r0]);
            for (size_t c = 0; c < hd; c += 32) {
                __m256i mk[4];
                __m256 x[4];
                UNROLL
                for (int u = 0; u < 4; u++) {
                    size_t b = c + 8 * (size_t)u;
                    mk[u] = lane_mask8(b >= hd ? 0 : hd - b);
                    x[u] = _mm256_mul_ps(_mm256_maskload_ps(ar + b, mk[u]), va);
                }
                if (hd - c <= 8) {
                    /* four chains over keys j % 4, summed in a fixed order */
                    __m256 y[4] = {x[0], _mm256_setzero_ps(), _mm256_setzero_ps(),
                                   _mm256_setzero_ps()};
                    size_t jj = 0;
                    for (; jj + 4 <= nr; jj += 4) {
                        UNROLL
                        for (int u = 0; u < 4; u++)
                            y[u] = _mm256_fmadd_ps(
                                _mm256_broadcast_ss(s + (jj + (size_t)u) * ldq + r),
                                _mm256_maskload_ps(v + (jj + (size_t)u) * ldv + c, mk[0]), y[u]);
                    }
                    for (int u = 0; jj < nr; jj++, u++)
                        y[u] = _mm256_fmadd_ps(_mm256_broadcast_ss(s + jj * ldq + r),
                                               _mm256_maskload_ps(v + jj * ldv + c, mk[0]), y[u]);
                    x[0] = _mm256_add_ps(_mm256_add_ps(y[0], y[1]), _mm256_add_ps(y[2], y[3]));
                } else {
                    for (size_t jj = 0; jj < nr; jj++) {
                        __m256 p = _mm256_broadcast_ss(s + jj * ldq + r);
                        const float *vj = v + jj * ldv + c;
                        UNROLL
                        for (int u = 0; u < 4; u++)
                            x[u] = _mm256_fmadd_ps(p, _mm256_maskload_ps(vj + 8 * (size_t)u, mk[u]),
                                                   x[u]);
                    }
                }
                UNROLL
                for (int u = 0; u < 4; u++)
                    _mm256_maskstore_ps(ar + c + 8 * (size_t)u, mk[u], x[u]);
            }
        }
    }
}

void kern_avx2_fill_attn(kern_ops_t *ops)
{
    ops->attn_block = attn_block;
}
