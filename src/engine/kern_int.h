/*
 * kern_int.h - private to kern.c, kern_avx2.c and kern_avx512.c: ggml block layouts, the
 * dispatch table and the scalar pieces the SIMD files reuse.
 * Thread-safety: declarations only.
 */
#ifndef SY_KERN_INT_H
#define SY_KERN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kern.h"

/* ggml block layouts (little-endian, packed by construction: no padding). */
typedef struct kern_q8_0_block {
    uint16_t d; /* fp16 */
    int8_t qs[32];
} kern_q8_0_block_t; /* 34 bytes */

typedef struct kern_q4_0_block {
    uint16_t d;      /* fp16 */
    uint8_t qs[16];  /* element j in the low nibble of qs[j], element j+16 in the high one */
} kern_q4_0_block_t; /* 18 bytes */

typedef struct kern_q4_k_block {
    uint16_t d;         /* fp16 scale of the 6-bit sub-block scales */
    uint16_t dmin;      /* fp16 scale of the 6-bit sub-block mins */
    uint8_t scales[12]; /* 8 (scale, min) pairs of 6 bits */
    uint8_t qs[128];    /* 4 groups of 64: low nibbles = first 32, high nibbles = next 32 */
} kern_q4_k_block_t;    /* 144 bytes */

typedef struct kern_q6_k_block {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* one per 16 elements */
    uint16_t d;        /* fp16 */
} kern_q6_k_block_t;   /* 210 bytes */

/* Activation block made by kern_quant_q8 (see kern.h). */
typedef struct kern_q8_act {
    float d;
    int32_t s;
    int8_t qs[32];
} kern_q8_act_t;

/* The "act" buffer of the Q8_0/Q4_0 matmuls (kern_act_prepare): per token, ceil(nb / 16) groups
 * of 16 blocks (the same 40 bytes per block as kern_q8_act_t), the last group zero-padded
 * (d = 0, s = 0, q = 0). qs is in block order; d and s are in "lane order": lane l holds block
 * kern_q8_lane_block[l] of the group, the order in which kern_avx512.c's reduction tree leaves
 * the 16 per-block int32 sums, so that d and s load straight into the matching lanes. Every
 * reader goes through kern_q8_grp_block. */
#define KERN_Q8_GROUP 16
typedef struct kern_q8_grp {
    float d[KERN_Q8_GROUP];
    int32_t s[KERN_Q8_GROUP];
    int8_t qs[KERN_Q8_GROUP][32];
} kern_q8_grp_t; /* 640 bytes */

extern const uint8_t kern_q8_lane_block[KERN_Q8_GROUP]; /* lane -> block within the group */
extern const uint8_t kern_q8_block_lane[KERN_Q8_GROUP]; /* block -> lane (the inverse) */

/* Groups per token for nb blocks. */
static inline size_t kern_q8_groups(size_t nb)
{
    return (nb + KERN_Q8_GROUP - 1) / KERN_Q8_GROUP;
}

/* Block k (0 <= k < nb) of token t in an act buffer of nb blocks per token. */
static inline void kern_q8_grp_block(const void *act, size_t nb, size_t t, size_t k, float *d,
                                     int32_t *s, const int8_t **qs)
{
    const kern_q8_grp_t *g =
        (const kern_q8_grp_t *)act + t * kern_q8_groups(nb) + k / KERN_Q8_GROUP;
    size_t j = k % KERN_Q8_GROUP, l = kern_q8_block_lane[j];
    *d = g->d[l];
    *s = g->s[l];
    *qs = g->qs[j];
}

_Static_assert(sizeof(kern_q8_0_block_t) == 34, "q8_0 layout");
_Static_assert(sizeof(kern_q4_0_block_t) == 18, "q4_0 layout");
_Static_assert(sizeof(kern_q4_k_block_t) == 144, "q4_k layout");
_Static_assert(sizeof(kern_q6_k_block_t) == 210, "q6_k layout");
_Static_assert(sizeof(kern_q8_act_t) == KERN_Q8_BLOCK_BYTES, "q8 act layout");
_Static_assert(sizeof(kern_q8_grp_t) == KERN_Q8_GROUP * KERN_Q8_BLOCK_BYTES, "q8 group layout");

/* Row-range matmul for one weight type; act as prepared by kern_act_prepare. */
typedef void (*kern_mm_fn)(const void *W, size_t n_out, size_t n_in, const float *X,
                           const void *act, size_t n_tok, float *Y, size_t o_begin, size_t o_end);

typedef struct kern_ops {
    kern_mm_fn mm_f32, mm_f16, mm_bf16, mm_q8_0, mm_q4_0, mm_q4_k, mm_q6_k;
    void (*quant_q8)(const float *x, size_t n, void *dst);
    /* x[0..n) into ceil(n / 512) kern_q8_grp_t (bytes identical at every level) */
    void (*quant_q8g)(const float *x, size_t n, void *dst);
    float (*dot_f32)(const float *a, const float *b, size_t n);
    float (*dot_f16)(const uint16_t *a, const float *b, size_t n);
    void (*axpy_f32)(float *y, float a, const float *x, size_t n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, size_t n);
    void (*rmsnorm)(float *out, const float *x, const float *w, size_t n, float eps);
    void (*softmax)(float *x, size_t n);
    void (*silu_mul)(float *out, const float *g, const float *u, size_t n);
    void (*rope)(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs,
                 bool neox);
    void (*attn_block)(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                       size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv,
                       float *m, float *l, float *acc, float *s);
} kern_ops_t;

/* Each SIMD file overrides the entries it implements (the table starts as the scalar one). */
void kern_avx2_fill(kern_ops_t *ops);
void kern_avx512_fill(kern_ops_t *ops);
/* The attention entries, kept apart from the fill functions above (defined at the ends of the
 * SIMD files). */
void kern_avx2_fill_attn(kern_ops_t *ops);
void kern_avx512_fill_attn(kern_ops_t *ops);

/* Scalar super-block dequantization (256 values), shared with the SIMD K-quant paths. */
void kern_ref_dequant_q4_k(const kern_q4_k_block_t *b, float *y);
void kern_ref_dequant_q6_k(const kern_q6_k_block_t *b, float *y);

#endif
