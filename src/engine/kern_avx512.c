/*
 * kern_avx512.c - AVX-512 kernels (F, BW, VL, DQ, VNNI; built with per-file ISA flags and only
 * called after kern_init checked the CPU).
 *
 * Matmul is register-tiled in dot-product form, since both W [n_out][n_in] and X [n_tok][n_in]
 * are contiguous along n_in: a tile of R rows x T tokens keeps R*T accumulators, so each weight
 * vector is loaded once per T tokens and each activation vector once per R rows. Rows are taken
 * in chunks of ROW_CHUNK so a chunk of W stays in L2 while all token tiles pass over it.
 * F32/F16/BF16: 4 rows x 6 tokens of 16-lane FMA accumulators (24 zmm), masked tails.
 * Q8_0/Q4_0: int8 x int8 per 32-block with 256-bit VNNI (vpdpbusd): Q8_0 uses |w| (unsigned)
 * times sign(x, w); Q4_0 nibbles are already unsigned and the -8 offset is folded into the
 * accumulator start as -8 * sum(x_q). Per block the int32 lanes are converted and FMA'd with
 * d_w * d_x; tiles of 4 rows x up to 4 tokens. Decode (1 token) prefetches the next tile's
 * rows; Q4_0 decode takes two blocks per 512-bit step.
 * Q4_K/Q6_K: each super-block is dequantized once (vectorized) and dotted with every token.
 * Does not: allocate, or depend on anything outside kern_int.h.
 * Thread-safety: pure functions.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kern_int.h"

#define UNROLL _Pragma("GCC unroll 8")
#define INLINE static inline __attribute__((always_inline))
#define ROW_CHUNK 64
#define FT 6 /* token tile for the float GEMM */
#define QT 4 /* token tile for the int8 GEMM */
/* Matvec prefetch: rows of a 4-row tile are only a few KB long, so the hardware prefetcher keeps
 * re-training on every tile and leaves DRAM idle. Each step therefore also prefetches (into L2)
 * the same position in the row 4 ahead: the next tile is in flight one tile early. Prefetching
 * past the last row is harmless (prefetches never fault). */

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

INLINE __mmask16 tail_mask(size_t n)
{
    return (__mmask16)((1u << n) - 1u);
}

/* ---- float weights ---- */

#define LW_F32(p, i) _mm512_loadu_ps((const float *)(p) + (i))
#define LWM_F32(p, i, m) _mm512_maskz_loadu_ps((m), (const float *)(p) + (i))
#define LW_F16(p, i)                                                                               \
    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(p) + (i))))
#define LWM_F16(p, i, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((m), (const uint16_t *)(p) + (i)))
#define BF16_WIDEN(v) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16))
#define LW_BF16(p, i) BF16_WIDEN(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(p) + (i))))
#define LWM_BF16(p, i, m) BF16_WIDEN(_mm256_maskz_loadu_epi16((m), (const uint16_t *)(p) + (i)))

/* One R x T tile: y[t * ldy + r] = dot(w row r, x row t) over n. R, T are constants after
 * inlining so the accumulators live in registers. */
#define DEF_FTILE(NAME, ELT, LW, LWM)                                                              \
    INLINE void NAME(const ELT *w, size_t n, const float *x, float *y, size_t ldy, int R, int T)   \
    {                                                                                              \
        __m512 acc[4][FT];                                                                         \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =          \
            _mm512_setzero_ps();                                                                   \
        size_t i = 0;                                                                              \
        for (; i + 16 <= n; i += 16) {                                                             \
            __m512 wv[4];                                                                          \
            UNROLL for (int r = 0; r < R; r++) wv[r] = LW(w + (size_t)r * n, i);                   \
            if (T == 1)                                                                            \
                UNROLL for (int r = 0; r < R; r++)                                                 \
                    _mm_prefetch((const char *)(w + (size_t)(r + R) * n + i), _MM_HINT_T1);        \
            UNROLL for (int t = 0; t < T; t++)                                                     \
            {                                                                                      \
                __m512 xv = _mm512_loadu_ps(x + (size_t)t * n + i);                                \
                UNROLL for (int r = 0; r < R; r++) acc[r][t] =                                     \
                    _mm512_fmadd_ps(wv[r], xv, acc[r][t]);                                         \
            }                                                                                      \
        }                                                                                          \
        if (i < n) {                                                                               \
            __mmask16 m = tail_mask(n - i);                                                        \
            __m512 wv[4];                                                                          \
            UNROLL for (int r = 0; r < R; r++) wv[r] = LWM(w + (size_t)r * n, i, m);               \
            UNROLL for (int t = 0; t < T; t++)                                                     \
            {                                                                                      \
                __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)t * n + i);                       \
                UNROLL for (int r = 0; r < R; r++) acc[r][t] =                                     \
                    _mm512_fmadd_ps(wv[r], xv, acc[r][t]);                                         \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++)                      \
            y[(size_t)t * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][t]);                      \
    }

DEF_FTILE(ftile_f32, float, LW_F32, LWM_F32)
DEF_FTILE(ftile_f16, uint16_t, LW_F16, LWM_F16)
DEF_FTILE(ftile_bf16, uint16_t, LW_BF16, LWM_BF16)

/* Row-chunked driver: for each chunk of rows, every token tile, every 4-row tile. */
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
                switch (min_sz(FT, n_tok - t)) {                                                   \
                case 1:                                                                            \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 1);                                  \
                    break;                                                                         \
                case 2:                                                                            \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 2);                                  \
                    break;                                                                         \
                case 3:                                                                            \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 3);                                  \
                    break;                                                                         \
                case 4:                                                                            \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 4);                                  \
                    break;                                                                         \
                case 5:                                                                            \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 5);                                  \
                    break;                                                                         \
                default:                                                                           \
                    NAME##_t(W, n_out, n_in, X, Y, oc, oe, t, 6);                                  \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEF_FMM(mm_f32, float, ftile_f32)
DEF_FMM(mm_f16, uint16_t, ftile_f16)
DEF_FMM(mm_bf16, uint16_t, ftile_bf16)

/* ---- int8 weights ---- */

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
                __m256i xs = _mm256_sign_epi8(xq[t], wq);
                __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wa, xs);
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
            __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
            __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(b->d));
            UNROLL for (int t = 0; t < T; t++)
            {
                __m256i dp = _mm256_dpbusd_epi32(x0[t], wq, xq[t]);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(dp), _mm256_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int t = 0; t < T; t++) UNROLL for (int r = 0; r < R; r++)
        y[(size_t)t * ldy + (size_t)r] = hsum8(acc[r][t]);
}

/* Q8_0 decode: the 256-bit tile (measured faster from DRAM here than a 2-blocks-per-zmm variant:
 * about 31 vs 21 GB/s on one core). */
static void q8_0_r4t1(const kern_q8_0_block_t *w, size_t nb, const kern_q8_act_t *a, float *y)
{
    q8_0_tile(w, nb, a, y, 1, 4, 1);
}

INLINE __m512i load2x256(const void *p0, const void *p1)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* Q4_0 decode fast path, two blocks per step: the nibbles of blocks k, k+1 are laid out as
 * [lo_k, lo_k1, hi_k, hi_k1] (16 bytes each) and x is permuted to match once per step for all
 * four rows; the -8 offsets sit in int32 lanes 0 and 4 of the accumulator start. */
static void q4_0_r4t1(const kern_q4_0_block_t *w, size_t nb, const kern_q8_act_t *a, float *y)
{
    const kern_q4_0_block_t *rows[4] = {w, w + nb, w + 2 * nb, w + 3 * nb};
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m512i idx[4];
    for (int r = 0; r < 4; r++)
        idx[r] = _mm512_setr_epi32(2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1, 2 * r + 1, 2 * r + 1,
                                   2 * r + 1, 2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1, 2 * r + 1,
                                   2 * r + 1, 2 * r + 1);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    size_t k = 0;
    for (; k + 2 <= nb; k += 2) {
        __m512i xq = load2x256(a[k].qs, a[k + 1].qs);
        xq = _mm512_shuffle_i64x2(xq, xq, _MM_SHUFFLE(3, 1, 2, 0));
        __m512i x0 = _mm512_setr_epi32(-8 * a[k].s, 0, 0, 0, -8 * a[k + 1].s, 0, 0, 0, 0, 0, 0, 0,
                                       0, 0, 0, 0);
        __m128i hv =
            _mm_setr_epi16((short)rows[0][k].d, (short)rows[0][k + 1].d, (short)rows[1][k].d,
                           (short)rows[1][k + 1].d, (short)rows[2][k].d, (short)rows[2][k + 1].d,
                           (short)rows[3][k].d, (short)rows[3][k + 1].d);
        __m128 dx2 = _mm_unpacklo_ps(_mm_set_ss(a[k].d), _mm_set_ss(a[k + 1].d));
        __m256 dxv = _mm256_castpd_ps(_mm256_broadcastsd_pd(_mm_castps_pd(dx2)));
        __m512 sv = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtph_ps(hv), dxv));
        UNROLL for (int r = 0; r < 4; r++)
        {
            _mm_prefetch((const char *)(rows[r] + 4 * nb + k), _MM_HINT_T1);
            __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)rows[r][k + 1].qs),
                                         _mm_loadu_si128((const __m128i *)rows[r][k].qs));
            __m256i lo = _mm256_and_si256(q, m4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            __m512i dp = _mm512_dpbusd_epi32(x0, wq, xq);
            acc[r] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), _mm512_permutexvar_ps(idx[r], sv), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        float s = _mm512_reduce_add_ps(acc[r]);
        if (k < nb) {
            const kern_q4_0_block_t *b = rows[r] + k;
            __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
            __m256i wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            __m256i dp = _mm256_dpbusd_epi32(_mm256_setr_epi32(-8 * a[k].s, 0, 0, 0, 0, 0, 0, 0),
                                             wq, _mm256_loadu_si256((const __m256i *)a[k].qs));
            s += hsum8(_mm256_cvtepi32_ps(dp)) * (_cvtsh_ss(b->d) * a[k].d);
        }
        y[r] = s;
    }
}

#define DEF_QMM(NAME, BLK, TILE, FAST1)                                                            \
    INLINE void NAME##_t(const BLK *W, size_t n_out, size_t nb, const kern_q8_act_t *A, float *Y,  \
                         size_t o0, size_t o1, size_t t0, int T)                                   \
    {                                                                                              \
        const kern_q8_act_t *a = A + t0 * nb;                                                      \
        float *y = Y + t0 * n_out;                                                                 \
        size_t o = o0;                                                                             \
        for (; o + 4 <= o1; o += 4)                                                                \
            if (T == 1)                                                                            \
                FAST1(W + o * nb, nb, a, y + o);                                                   \
            else                                                                                   \
                TILE(W + o * nb, nb, a, y + o, n_out, 4, T);                                       \
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
                switch (min_sz(QT, n_tok - t)) {                                                   \
                case 1:                                                                            \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 1);                                  \
                    break;                                                                         \
                case 2:                                                                            \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 2);                                  \
                    break;                                                                         \
                case 3:                                                                            \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 3);                                  \
                    break;                                                                         \
                default:                                                                           \
                    NAME##_t(W, n_out, nb, act, Y, oc, oe, t, 4);                                  \
                    break;                                                                         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

DEF_QMM(mm_q8_0, kern_q8_0_block_t, q8_0_tile, q8_0_r4t1)
DEF_QMM(mm_q4_0, kern_q4_0_block_t, q4_0_tile, q4_0_r4t1)

/* ---- K-quants: dequantize each super-block once, dot with every token ---- */

INLINE float dot256(const float *a, const float *b)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (int i = 0; i < 256; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* SIMD twins of kern_ref_dequant_q4_k / _q6_k (same formulas; Q4_K's d*q - m is one fused
 * rounding here, so it may differ from the reference in the last bit). */
static void dq_q4_k(const kern_q4_k_block_t *b, float *y)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    float d = _cvtsh_ss(b->d), dmin = _cvtsh_ss(b->dmin);
    const uint8_t *s = b->scales;
    for (int g = 0; g < 4; g++) {
        int j0 = 2 * g, j1 = 2 * g + 1, sc0, m0, sc1, m1;
        if (j0 < 4) {
            sc0 = s[j0] & 63;
            m0 = s[j0 + 4] & 63;
            sc1 = s[j1] & 63;
            m1 = s[j1 + 4] & 63;
        } else {
            sc0 = (s[j0 + 4] & 0x0f) | ((s[j0 - 4] >> 6) << 4);
            m0 = (s[j0 + 4] >> 4) | ((s[j0] >> 6) << 4);
            sc1 = (s[j1 + 4] & 0x0f) | ((s[j1 - 4] >> 6) << 4);
            m1 = (s[j1 + 4] >> 4) | ((s[j1] >> 6) << 4);
        }
        __m512 d0 = _mm512_set1_ps(d * (float)sc0), n0 = _mm512_set1_ps(dmin * (float)m0);
        __m512 d1 = _mm512_set1_ps(d * (float)sc1), n1 = _mm512_set1_ps(dmin * (float)m1);
        __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * g));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        for (int h = 0; h < 2; h++) {
            __m128i l8 = h ? _mm256_extracti128_si256(lo, 1) : _mm256_castsi256_si128(lo);
            __m128i h8 = h ? _mm256_extracti128_si256(hi, 1) : _mm256_castsi256_si128(hi);
            __m512 vl = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(l8));
            __m512 vh = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(h8));
            _mm512_storeu_ps(y + 64 * g + 16 * h, _mm512_fmsub_ps(vl, d0, n0));
            _mm512_storeu_ps(y + 64 * g + 32 + 16 * h, _mm512_fmsub_ps(vh, d1, n1));
        }
    }
}

static void dq_q6_k(const kern_q6_k_block_t *b, float *y)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m512i k32 = _mm512_set1_epi32(32);
    float d = _cvtsh_ss(b->d);
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        const int8_t *sc = b->scales + 8 * half;
        __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                               _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(hb, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
        for (int k = 0; k < 4; k++)
            for (int h = 0; h < 2; h++) {
                __m128i b8 = h ? _mm256_extracti128_si256(q[k], 1) : _mm256_castsi256_si128(q[k]);
                __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(b8), k32));
                __m512 scale = _mm512_set1_ps(d * (float)sc[h + 2 * k]);
                _mm512_storeu_ps(y + 128 * half + 32 * k + 16 * h, _mm512_mul_ps(scale, v));
            }
    }
}

static void mm_kq(bool q4k, const void *W, size_t n_out, size_t n_in, const float *X, size_t n_tok,
                  float *Y, size_t o0, size_t o1)
{
    size_t nb = n_in / 256, bb = q4k ? sizeof(kern_q4_k_block_t) : sizeof(kern_q6_k_block_t);
    float buf[256] __attribute__((aligned(64)));
    for (size_t o = o0; o < o1; o++) {
        const uint8_t *row = (const uint8_t *)W + o * nb * bb;
        for (size_t t = 0; t < n_tok; t++)
            Y[t * n_out + o] = 0.0f;
        for (size_t k = 0; k < nb; k++) {
            if (q4k)
                dq_q4_k((const kern_q4_k_block_t *)(row + k * bb), buf);
            else
                dq_q6_k((const kern_q6_k_block_t *)(row + k * bb), buf);
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
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (size_t k = 0; k < n / 32; k++, x += 32) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 mx = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        float amax = _mm512_reduce_max_ps(mx);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)a[k].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(a[k].qs + 16), _mm512_cvtsepi32_epi8(q1));
        a[k].d = d;
        a[k].s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- small ops ---- */

/* exp(x) to about 2 ulp: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial (Cephes expf
 * coefficients), then scalef by 2^n (which also handles underflow to 0). */
INLINE __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static float dot_f32(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static float dot_f16(const uint16_t *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(LW_F16(a, i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(LWM_F16(a, i, m), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(s0);
}

static void axpy_f32(float *y, float a, const float *x, size_t n)
{
    __m512 va = _mm512_set1_ps(a);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        __m512 v =
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static void axpy_f16(float *y, float a, const uint16_t *x, size_t n)
{
    __m512 va = _mm512_set1_ps(a);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        __m512 v = _mm512_fmadd_ps(va, LWM_F16(x, i, m), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static void rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
    __m512 ss = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(min_sz(16, n - i)), x + i);
        ss = _mm512_fmadd_ps(v, v, ss);
    }
    float scale = 1.0f / sqrtf(_mm512_reduce_add_ps(ss) / (float)n + eps);
    __m512 vs = _mm512_set1_ps(scale);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs),
                                 _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(out + i, m, v);
    }
}

static void softmax(float *x, size_t n)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, x + i));
    }
    __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

static void silu_mul(float *out, const float *g, const float *u, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(min_sz(16, n - i));
        __m512 v = _mm512_maskz_loadu_ps(m, g + i);
        __m512 s =
            _mm512_div_ps(v, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

static void rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs,
                 bool neox)
{
    size_t half = n_rot / 2;
    /* lanes 0..15 of (a, b) interleaved as c0 s0 c1 s1 ...: even lanes are cos, odd are sin */
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (size_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        size_t j = 0;
        if (neox) {
            for (; j + 16 <= half; j += 16) {
                __m512 a = _mm512_loadu_ps(cs + 2 * j), b = _mm512_loadu_ps(cs + 2 * j + 16);
                __m512 c = _mm512_permutex2var_ps(a, ev, b), s = _mm512_permutex2var_ps(a, od, b);
                __m512 x0 = _mm512_loadu_ps(v + j), x1 = _mm512_loadu_ps(v + j + half);
                _mm512_storeu_ps(v + j, _mm512_fmsub_ps(x0, c, _mm512_mul_ps(x1, s)));
                _mm512_storeu_ps(v + j + half, _mm512_fmadd_ps(x0, s, _mm512_mul_ps(x1, c)));
            }
        } else {
            for (; j + 8 <= half; j += 8) { /* 8 pairs = 16 floats */
                __m512 t = _mm512_loadu_ps(cs + 2 * j);
                __m512 c = _mm512_moveldup_ps(t), s = _mm512_movehdup_ps(t);
                __m512 xv = _mm512_loadu_ps(v + 2 * j);
                __m512 sw = _mm512_permute_ps(xv, 0xb1); /* swap within pairs */
                _mm512_storeu_ps(v + 2 * j, _mm512_fmaddsub_ps(xv, c, _mm512_mul_ps(sw, s)));
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

void kern_avx512_fill(kern_ops_t *ops)
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
