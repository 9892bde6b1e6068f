/*
 * kern_avx512.c - AVX-512 kernels (F, BW, VL, DQ, VNNI; built with per-file ISA flags and only
 * called after kern_init checked the CPU).
 *
 * Matmul is register-tiled in dot-product form, since both W [n_out][n_in] and X [n_tok][n_in]
 * are contiguous along n_in: a tile of R rows x T tokens keeps R*T accumulators, so each weight
 * vector is loaded once per T tokens and each activation vector once per R rows. Rows are taken
 * in chunks of ROW_CHUNK so a chunk of W stays in L2 while all token tiles pass over it.
 * F32/F16/BF16: 4 rows x 6 tokens of 16-lane FMA accumulators (24 zmm), masked tails.
 * Q8_0/Q4_0 (every n_tok; the GGUF blocks are read in place): int8 x int8 with 512-bit VNNI
 * (vpdpbusd, unsigned x signed) on groups of 16 blocks. Per row and group the weights become 8
 * vectors of 2 blocks each: Q8_0 as w ^ 0x80 = w + 128 (unsigned), whose excess 128 * sum(x_q) is
 * subtracted afterwards (sum(x_q) is in the act buffer); Q4_0 as its nibbles, low ones against
 * x[0..16) and high ones against x[16..32) of the block, with -8 * sum(x_q) likewise. Each token's
 * 8 dot-product vectors are reduced by a 3-level shuffle tree to one vector of 16 per-block int32
 * sums, converted once and FMA'd with d_w * d_x (16 fp16 weight scales packed with scalar loads
 * and converted by one vcvtph2ps; d_x and sum(x_q) are stored in the tree's lane order by
 * kern_act_prepare, kern_int.h). Tiles are 4 rows x up to 8 tokens, so each weight load serves
 * every token of a small batch. The 4 rows of a tile come from 4 equal runs of the row range
 * (4 long sequential streams, which the hardware prefetchers follow), with software prefetch
 * QPF_GROUPS groups ahead in each. The sum order per (row, token) is fixed, so results do not
 * depend on n_tok or on how rows are split over threads. Q4_K/Q6_K: each super-block is dequantized
 * once (vectorized) and dotted with every token. Does not: allocate, or depend on anything outside
 * kern_int.h. Thread-safety: pure functions.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/kern_int.h"

#define UNROLL _Pragma("GCC unroll 8")
#define INLINE static inline __attribute__((always_inline))
#define ROW_CHUNK 64
#define FT 6 /* token tile for the float GEMM */
/* Float matvec prefetch: rows of a 4-row tile are only a few KB long, so the hardware prefetcher
 * keeps re-training on every tile and leaves DRAM idle. Each step therefore also prefetches (into
 * L2) the same position in the row 4 ahead: the next tile is in flight one tile early. Prefetching
 * past the last row is harmless (prefetches never fault). */

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
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

/* ---- int8 weights (see the file comment) ---- */

#define QR 4      /* rows per tile */
#define QTT 8     /* tokens per tile */
#define QCHUNK 16 /* tile rows per chunk: QR * QCHUNK rows stay in L2 for every token tile */
/* Software prefetch distance in each of the QR row streams, in groups of the stream: 4 groups is
 * 2176 bytes of Q8_0 or 1152 of Q4_0, the same lead in time (measured best of 0, 1, 2 and 4 KB
 * for Q8_0 from DRAM; 1 KB for Q4_0). */
#define QPF_GROUPS 4

/* Reduction tree: v[i] (i = 0..7) holds the 8 int32 partial sums of block 2i in lanes 0-7 and of
 * block 2i+1 in lanes 8-15. Three levels of (shuffle, shuffle, add) leave one sum per block;
 * lane l then holds block kern_q8_lane_block[l] = 0 2 4 6 1 3 5 7 8 10 12 14 9 11 13 15. */
INLINE __m512i red8(const __m512i v[8])
{
    __m512i s[4], u[2];
    UNROLL for (int i = 0; i < 4; i++) s[i] =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    UNROLL for (int i = 0; i < 2; i++) u[i] =
        _mm512_add_epi32(_mm512_unpacklo_epi64(s[2 * i], s[2 * i + 1]),
                         _mm512_unpackhi_epi64(s[2 * i], s[2 * i + 1]));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The fp16 scales of the m blocks at b (stride bb bytes) in lane order, as floats; 0 past m.
 * Scalar loads packed in general registers (the integer ports are idle here): cheaper than a
 * 16-lane gather. */
INLINE __m512 grp_scales(const uint8_t *b, size_t bb, int m)
{
    static const uint8_t lb[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
    uint64_t q[4];
    UNROLL for (int j = 0; j < 4; j++)
    {
        uint64_t v = 0;
        UNROLL for (int i = 0; i < 4; i++)
        {
            int k = lb[4 * j + i];
            uint16_t h = 0;
            if (k < m)
                memcpy(&h, b + (size_t)k * bb, 2);
            v |= (uint64_t)h << (16 * i);
        }
        q[j] = v;
    }
    return _mm512_cvtph_ps(
        _mm256_setr_epi64x((long long)q[0], (long long)q[1], (long long)q[2], (long long)q[3]));
}

/* Loads the m (<= 16) blocks of one row's group as 8 vectors of unsigned bytes laid out like the
 * activation group's qs (2 blocks per vector), plus the scales. Q8_0: w + 128 (w ^ 0x80), whose
 * excess 128 * sum(x) is taken off after the reduction. Q4_0: the nibbles, low ones against
 * x[0..16) and high ones against x[16..32) of each block; the -8 offset likewise. Blocks past m
 * read as 0 (masked loads never fault). */
INLINE void grp_load(int q4, const uint8_t *b, int m, __m512i w[8], __m512 *dw)
{
    if (!q4) {
        const __m512i k80 = _mm512_set1_epi8((char)0x80);
        UNROLL for (int i = 0; i < 8; i++)
        {
            const uint8_t *p = b + 68 * i + 2;
            __m256i lo, hi;
            if (2 * i >= m) {
                w[i] = _mm512_setzero_si512();
                continue;
            }
            if (m == KERN_Q8_GROUP) {
                lo = _mm256_loadu_si256((const __m256i *)p);
                hi = _mm256_loadu_si256((const __m256i *)(p + 34));
            } else {
                lo = _mm256_maskz_loadu_epi8(2 * i < m ? ~0u : 0u, p);
                hi = _mm256_maskz_loadu_epi8(2 * i + 1 < m ? ~0u : 0u, p + 34);
            }
            w[i] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), k80);
        }
        *dw = grp_scales(b, 34, m);
    } else {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        /* 16-bit shift counts: 0 for 128-bit lanes 0 and 2 (low nibbles), 4 for lanes 1 and 3 */
        const __m512i sh = _mm512_maskz_set1_epi16(0xff00ff00u, 4);
        UNROLL for (int i = 0; i < 8; i++)
        {
            const uint8_t *p = b + 36 * i + 2;
            __m128i qa, qb;
            if (2 * i >= m) {
                w[i] = _mm512_setzero_si512();
                continue;
            }
            if (m == KERN_Q8_GROUP) {
                qa = _mm_loadu_si128((const __m128i *)p);
                qb = _mm_loadu_si128((const __m128i *)(p + 18));
            } else {
                qa = _mm_maskz_loadu_epi8(2 * i < m ? 0xffff : 0, p);
                qb = _mm_maskz_loadu_epi8(2 * i + 1 < m ? 0xffff : 0, p + 18);
            }
            __m512i z = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(qa), 0xff00, qb);
            w[i] = _mm512_and_si512(_mm512_srlv_epi16(z, sh), m4);
        }
        *dw = grp_scales(b, 18, m);
    }
}

/* One row's group g against T tokens: acc[t] += float(isum) * (d_w * d_x) per lane. m (blocks in
 * the group) is a constant after inlining, so a half group (768 = 1.5 groups) skips the empty
 * pairs. */
INLINE void q_row_grp(int q4, const uint8_t *b, int m, const kern_q8_grp_t *A, size_t ng, size_t g,
                      int T, __m512 *acc)
{
    const int shift = q4 ? 3 : 7;
    __m512i w[8];
    __m512 dw;
    grp_load(q4, b, m, w, &dw);
    UNROLL for (int t = 0; t < T; t++)
    {
        const kern_q8_grp_t *x = A + (size_t)t * ng + g;
        __m512i v[8];
        UNROLL for (int i = 0; i < 8; i++) v[i] =
            2 * i < m ? _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[i],
                                            _mm512_loadu_si512(x->qs[2 * i]))
                      : _mm512_setzero_si512();
        __m512i isum =
            _mm512_sub_epi32(red8(v), _mm512_slli_epi32(_mm512_loadu_si512(x->s), (unsigned)shift));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dw, _mm512_loadu_ps(x->d)),
                                 acc[t]);
    }
}

/* One tile: R rows (pointers wr, outputs yr with token stride ldy) x T tokens of act A (ng groups
 * per token), over all nb blocks. Per (row, token) the float sum order is fixed: lane l of the
 * accumulator adds float(isum) * (d_w * d_x) of block kern_q8_lane_block[l] of each group in
 * group order, then the 16 lanes are reduced by a fixed tree; so a row's result does not depend
 * on R, T, the token tile or the row split. TMAX sizes the accumulator array (kept small enough
 * to stay in registers for T <= 4). */
#define DEF_QTILE(NAME, TMAX)                                                                      \
    INLINE void NAME(int q4, const uint8_t *const *wr, int R, size_t nb, const kern_q8_grp_t *A,   \
                     size_t ng, int T, float *const *yr, size_t ldy, int pf)                       \
    {                                                                                              \
        const size_t bb = q4 ? sizeof(kern_q4_0_block_t) : sizeof(kern_q8_0_block_t);              \
        const int mt = (int)(nb % KERN_Q8_GROUP);                                                  \
        __m512 acc[QR][TMAX];                                                                      \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] =          \
            _mm512_setzero_ps();                                                                   \
        for (size_t g = 0; g < ng; g++) {                                                          \
            int full = g + 1 < ng || mt == 0;                                                      \
            UNROLL for (int r = 0; r < R; r++)                                                     \
            {                                                                                      \
                const uint8_t *b = wr[r] + g * KERN_Q8_GROUP * bb;                                 \
                if (pf)                                                                            \
                    _Pragma("GCC unroll 16") for (size_t o = 0; o < KERN_Q8_GROUP * bb; o += 64)   \
                        _mm_prefetch((const char *)(b + QPF_GROUPS * KERN_Q8_GROUP * bb + o),      \
                                     _MM_HINT_T0);                                                 \
                if (full)                                                                          \
                    q_row_grp(q4, b, KERN_Q8_GROUP, A, ng, g, T, acc[r]);                          \
                else if (mt == 8)                                                                  \
                    q_row_grp(q4, b, 8, A, ng, g, T, acc[r]);                                      \
                else                                                                               \
                    q_row_grp(q4, b, mt, A, ng, g, T, acc[r]);                                     \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)                      \
            yr[r][(size_t)t * ldy] = _mm512_reduce_add_ps(acc[r][t]);                              \
    }

DEF_QTILE(q_tile4, 4)
DEF_QTILE(q_tile8, QTT)

/* Token-tile dispatch (T a constant in each call so the accumulators stay in registers). */
INLINE void q_tile_t(int q4, const uint8_t *const *wr, int R, size_t nb, const kern_q8_grp_t *A,
                     size_t ng, int T, float *const *yr, size_t ldy, int pf)
{
    switch (T) {
    case 1:
        q_tile4(q4, wr, R, nb, A, ng, 1, yr, ldy, pf);
        break;
    case 2:
        q_tile4(q4, wr, R, nb, A, ng, 2, yr, ldy, pf);
        break;
    case 3:
        q_tile4(q4, wr, R, nb, A, ng, 3, yr, ldy, pf);
        break;
    case 4:
        q_tile4(q4, wr, R, nb, A, ng, 4, yr, ldy, pf);
        break;
    case 5:
        q_tile8(q4, wr, R, nb, A, ng, 5, yr, ldy, pf);
        break;
    case 6:
        q_tile8(q4, wr, R, nb, A, ng, 6, yr, ldy, pf);
        break;
    case 7:
        q_tile8(q4, wr, R, nb, A, ng, 7, yr, ldy, pf);
        break;
    default:
        q_tile8(q4, wr, R, nb, A, ng, 8, yr, ldy, pf);
        break;
    }
}

/* Rows [o0, o1) are split into QR equal runs, and a tile takes row i of each run: QR long
 * sequential streams (rows are contiguous in memory), which the hardware prefetchers follow,
 * plus software prefetch QPF_GROUPS groups ahead in each. The 0-3 leftover rows go one at a
 * time. */
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
        for (size_t t = 0; t < n_tok; t += QTT) {
            int T = (int)min_sz(QTT, n_tok - t);
            for (size_t i = ic; i < ie; i++) {
                const uint8_t *wr[QR];
                float *yr[QR];
                for (int r = 0; r < QR; r++) {
                    size_t o = o0 + (size_t)r * q + i;
                    wr[r] = w + o * rb;
                    yr[r] = Y + t * n_out + o;
                }
                q_tile_t(q4, wr, QR, nb, A + t * ng, ng, T, yr, n_out, t == 0);
            }
        }
    }
    for (size_t o = o0 + QR * q; o < o1; o++)
        for (size_t t = 0; t < n_tok; t += QTT) {
            const uint8_t *wr[1] = {w + o * rb};
            float *yr[1] = {Y + t * n_out + o};
            q_tile_t(q4, wr, 1, nb, A + t * ng, ng, (int)min_sz(QTT, n_tok - t), yr, n_out, 0);
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

INLINE void quant_block(const float *x, float *d_out, int32_t *s_out, int8_t *qs)
{
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 mx = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
    float amax = _mm512_reduce_max_ps(mx);
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
    __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
    *d_out = d;
    *s_out = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
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
 * Scores and the softmax state keep query rows in lanes (16 rows per vector, 8 keys per pass,
 * each score one FMA chain over d), so the running max / sum need no horizontal reductions;
 * p * v keeps head dims in lanes (up to 4 vectors of 16 dims per pass). */
/* acc rows ra and rb += their p * v (every pass of 64 dims wider than 16), sharing the v loads over
 * the keys both see; each row still sums its keys in order into its own accumulators, as in the
 * one-row path. */
static void attn_pv_pair(float *acc, size_t hd, const float *v, size_t ldv, const float *s,
                         size_t ldq, size_t ra, size_t na, float aa, size_t rb, size_t nb, float ab)
{
    float *pa = acc + ra * hd, *pb = acc + rb * hd;
    __m512 va = _mm512_set1_ps(aa), vb = _mm512_set1_ps(ab);
    size_t nc = na < nb ? na : nb;
    for (size_t c = 0; c < hd; c += 64) {
        __mmask16 mk[4];
        __m512 x[4], y[4];
        UNROLL
        for (int u = 0; u < 4; u++) {
            size_t b = c + 16 * (size_t)u;
            size_t w = b >= hd ? 0 : (hd - b >= 16 ? 16 : hd - b);
            mk[u] = (__mmask16)((1u << w) - 1u);
            x[u] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[u], pa + b), va);
            y[u] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[u], pb + b), vb);
        }
        size_t jj = 0;
        for (; jj < nc; jj++) {
            __m512 sa = _mm512_set1_ps(s[jj * ldq + ra]), sb = _mm512_set1_ps(s[jj * ldq + rb]);
            const float *vj = v + jj * ldv + c;
            UNROLL
            for (int u = 0; u < 4; u++) {
                __m512 vv = _mm512_maskz_loadu_ps(mk[u], vj + 16 * (size_t)u);
                x[u] = _mm512_fmadd_ps(sa, vv, x[u]);
                y[u] = _mm512_fmadd_ps(sb, vv, y[u]);
            }
        }
        for (size_t j2 = jj; j2 < na; j2++) {
            __m512 sa = _mm512_set1_ps(s[j2 * ldq + ra]);
            UNROLL
            for (int u = 0; u < 4; u++)
                x[u] = _mm512_fmadd_ps(
                    sa, _mm512_maskz_loadu_ps(mk[u], v + j2 * ldv + c + 16 * (size_t)u), x[u]);
        }
        for (size_t j2 = jj; j2 < nb; j2++) {
            __m512 sb = _mm512_set1_ps(s[j2 * ldq + rb]);
            UNROLL
            for (int u = 0; u < 4; u++)
                y[u] = _mm512_fmadd_ps(
                    sb, _mm512_maskz_loadu_ps(mk[u], v + j2 * ldv + c + 16 * (size_t)u), y[u]);
        }
        UNROLL
        for (int u = 0; u < 4; u++) {
            _mm512_mask_storeu_ps(pa + c + 16 * (size_t)u, mk[u], x[u]);
            _mm512_mask_storeu_ps(pb + c + 16 * (size_t)u, mk[u], y[u]);
        }
    }
}

static void attn_block(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                       size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv,
                       float *m, float *l, float *acc, float *s)
{
    (void)n;
    uint32_t nmax = 0;
    for (size_t r = 0; r < n_rows; r++)
        nmax = nv[r] > nmax ? nv[r] : nmax;
    for (size_t r0 = 0; r0 < n_rows; r0 += 16) {
        const float *q0 = qt + r0;
        /* scores s[j][r] for j < nmax (the same FMA chain over d for every (r, j) whichever
         * loop computes it); two row vectors at once when there are 17+ rows left, the second
         * one's then done when its turn comes */
        size_t j = 0;
        if (r0 % 32 == 16) {
            j = nmax;
        } else if (r0 + 16 < n_rows) {
            for (; j + 4 <= nmax; j += 4) {
                __m512 a[4], b[4];
                UNROLL
                for (int u = 0; u < 4; u++)
                    a[u] = b[u] = _mm512_setzero_ps();
                const float *kj = k + j * ldk;
                for (size_t d = 0; d < hd; d++) {
                    __m512 qa = _mm512_loadu_ps(q0 + d * ldq),
                           qb = _mm512_loadu_ps(q0 + 16 + d * ldq);
                    UNROLL
                    for (int u = 0; u < 4; u++) {
                        __m512 kv = _mm512_set1_ps(kj[u * ldk + d]);
                        a[u] = _mm512_fmadd_ps(qa, kv, a[u]);
                        b[u] = _mm512_fmadd_ps(qb, kv, b[u]);
                    }
                }
                UNROLL
                for (int u = 0; u < 4; u++) {
                    _mm512_storeu_ps(s + (j + u) * ldq + r0, a[u]);
                    _mm512_storeu_ps(s + (j + u) * ldq + r0 + 16, b[u]);
                }
            }
            for (; j < nmax; j++) {
                __m512 a = _mm512_setzero_ps(), b = a;
                const float *kj = k + j * ldk;
                for (size_t d = 0; d < hd; d++) {
                    __m512 kv = _mm512_set1_ps(kj[d]);
                    a = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + d * ldq), kv, a);
                    b = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + 16 + d * ldq), kv, b);
                }
                _mm512_storeu_ps(s + j * ldq + r0, a);
                _mm512_storeu_ps(s + j * ldq + r0 + 16, b);
            }
        }
        for (; j + 8 <= nmax; j += 8) {
            __m512 a[8];
            UNROLL
            for (int u = 0; u < 8; u++)
                a[u] = _mm512_setzero_ps();
            const float *kj = k + j * ldk;
            for (size_t d = 0; d < hd; d++) {
                __m512 qv = _mm512_loadu_ps(q0 + d * ldq);
                UNROLL
                for (int u = 0; u < 8; u++)
                    a[u] = _mm512_fmadd_ps(qv, _mm512_set1_ps(kj[u * ldk + d]), a[u]);
            }
            UNROLL
            for (int u = 0; u < 8; u++)
                _mm512_storeu_ps(s + (j + u) * ldq + r0, a[u]);
        }
        for (; j < nmax; j++) {
            __m512 a = _mm512_setzero_ps();
            const float *kj = k + j * ldk;
            for (size_t d = 0; d < hd; d++)
                a = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + d * ldq), _mm512_set1_ps(kj[d]), a);
            _mm512_storeu_ps(s + j * ldq + r0, a);
        }
        /* running max, rescale factor, p = exp(s - max) (0 where masked), running sum */
        __m512i nvv = _mm512_loadu_si512((const void *)(nv + r0));
        __m512 mo = _mm512_loadu_ps(m + r0), mb = _mm512_set1_ps(-INFINITY);
        __m512 mb2 = mb; /* two chains (max is exact in any order) */
        for (j = 0; j < nmax; j++) {
            __mmask16 kj = _mm512_cmpgt_epu32_mask(nvv, _mm512_set1_epi32((int)j));
            if (j & 1)
                mb2 = _mm512_mask_max_ps(mb2, kj, mb2, _mm512_loadu_ps(s + j * ldq + r0));
            else
                mb = _mm512_mask_max_ps(mb, kj, mb, _mm512_loadu_ps(s + j * ldq + r0));
        }
        mb = _mm512_max_ps(mb, mb2);
        __mmask16 any = _mm512_cmpgt_epu32_mask(nvv, _mm512_setzero_si512());
        __m512 mn = _mm512_mask_max_ps(mo, any, mo, mb);
        __m512 alpha = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), any, exp512(_mm512_sub_ps(mo, mn)));
        __m512 sum = _mm512_setzero_ps(), sum2 = sum; /* even / odd keys: a fixed order */
        for (j = 0; j < nmax; j++) {
            __mmask16 kj = _mm512_cmpgt_epu32_mask(nvv, _mm512_set1_epi32((int)j));
            __m512 p = _mm512_maskz_mov_ps(
                kj, exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j * ldq + r0), mn)));
            if (j & 1)
                sum2 = _mm512_add_ps(sum2, p);
            else
                sum = _mm512_add_ps(sum, p);
            _mm512_storeu_ps(s + j * ldq + r0, p);
        }
        sum = _mm512_add_ps(sum, sum2);
        _mm512_storeu_ps(m + r0, mn);
        _mm512_storeu_ps(l + r0, _mm512_fmadd_ps(_mm512_loadu_ps(l + r0), alpha, sum));
        float al[16];
        _mm512_storeu_ps(al, alpha);
        /* acc[r] = acc[r] * alpha + sum_j p[j][r] v[j] */
        size_t r1 = n_rows - r0 < 16 ? n_rows : r0 + 16;
        for (size_t r = r0; r < r1; r++) {
            size_t nr = nv[r];
            if (nr == 0)
                continue;
            /* pairs only when every 64-dim pass takes the one-chain path (last one > 16) */
            if (hd - (hd - 1) / 64 * 64 > 16 && r + 1 < r1 && nv[r + 1] > 0) {
                attn_pv_pair(acc, hd, v, ldv, s, ldq, r, nr, al[r - r0], r + 1, nv[r + 1],
                             al[r + 1 - r0]);
                r++;
                continue;
            }
            float *ar = acc + r * hd;
            __m512 va = _mm512_set1_ps(al[r - r0]);
            for (size_t c = 0; c < hd; c += 64) {
                __mmask16 mk[4];
                __m512 x[4];
                UNROLL
                for (int u = 0; u < 4; u++) {
                    size_t b = c + 16 * (size_t)u;
                    size_t w = b >= hd ? 0 : (hd - b >= 16 ? 16 : hd - b);
                    mk[u] = (__mmask16)((1u << w) - 1u);
                    x[u] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[u], ar + b), va);
                }
                if (hd - c <= 16) {
                    /* four chains over keys j % 4, summed in a fixed order: a row's result
                     * still depends on nothing but its own keys */
                    __m512 y[4] = {x[0], _mm512_setzero_ps(), _mm512_setzero_ps(),
                                   _mm512_setzero_ps()};
                    size_t jj = 0;
                    for (; jj + 4 <= nr; jj += 4) {
                        UNROLL
                        for (int u = 0; u < 4; u++)
                            y[u] = _mm512_fmadd_ps(
                                _mm512_set1_ps(s[(jj + (size_t)u) * ldq + r]),
                                _mm512_maskz_loadu_ps(mk[0], v + (jj + (size_t)u) * ldv + c), y[u]);
                    }
                    for (int u = 0; jj < nr; jj++, u++)
                        y[u] =
                            _mm512_fmadd_ps(_mm512_set1_ps(s[jj * ldq + r]),
                                            _mm512_maskz_loadu_ps(mk[0], v + jj * ldv + c), y[u]);
                    x[0] = _mm512_add_ps(_mm512_add_ps(y[0], y[1]), _mm512_add_ps(y[2], y[3]));
                } else {
                    for (size_t jj = 0; jj < nr; jj++) {
                        __m512 p = _mm512_set1_ps(s[jj * ldq + r]);
                        const float *vj = v + jj * ldv + c;
                        UNROLL
                        for (int u = 0; u < 4; u++)
                            x[u] = _mm512_fmadd_ps(
                                p, _mm512_maskz_loadu_ps(mk[u], vj + 16 * (size_t)u), x[u]);
                    }
                }
                UNROLL
                for (int u = 0; u < 4; u++)
                    _mm512_mask_storeu_ps(ar + c + 16 * (size_t)u, mk[u], x[u]);
            }
        }
    }
}

void kern_avx512_fill_attn(kern_ops_t *ops)
{
    ops->attn_block = attn_block;
}
