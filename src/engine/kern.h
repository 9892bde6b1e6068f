/*
 * kern.h - compute kernels for the CPU executor: weight dequantization, activation quantization,
 * matmul over row-major GGUF weights (quantized matvec for decode, GEMM-shaped for prefill) and
 * the small per-token ops (rmsnorm, softmax, SwiGLU, RoPE, attention dot/axpy over F32/F16 K/V) and
 * a flash-attention block update (many query rows against one KV block, online softmax).
 *
 * Every kernel has a scalar reference (kern.c, the ground truth) and AVX2 / AVX-512 versions
 * (kern_avx2.c, kern_avx512.c) chosen once at kern_init from the CPU's features; a level can be
 * forced so that tests compare every level against the scalar one.
 * Does not: allocate (callers pass scratch), thread (split rows with kern_matmul_rows and tpool),
 * or validate model bytes (weights come from a validated gguf_t; shapes are checked with
 * SY_ASSERT because they are the caller's invariants).
 * Thread-safety: kern_init is not thread-safe and must run before any kernel call that may race
 * with it; every other function is pure and may run concurrently on disjoint outputs.
 */
#ifndef SY_KERN_H
#define SY_KERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Weight element types, numbered as ggml / GGUF (same values as gguf_ttype_t). */
typedef enum kern_type {
    KERN_F32 = 0,
    KERN_F16 = 1,
    KERN_Q4_0 = 2,  /* 32 per block: fp16 d, 16 bytes of nibbles; value (q - 8) * d */
    KERN_Q8_0 = 8,  /* 32 per block: fp16 d, 32 int8; value q * d */
    KERN_Q4_K = 12, /* 256 per block (144 bytes): fp16 d, dmin, 12 bytes 6-bit scales/mins, 128 */
    KERN_Q6_K = 14, /* 256 per block (210 bytes): ql[128], qh[64], int8 scales[16], fp16 d */
    KERN_BF16 = 30,
} kern_type_t;

typedef enum kern_isa {
    KERN_ISA_AUTO = 0, /* best the CPU supports */
    KERN_ISA_SCALAR = 1,
    KERN_ISA_AVX2 = 2,   /* AVX2 + FMA + F16C */
    KERN_ISA_AVX512 = 3, /* F, BW, VL, DQ, VNNI (+ FMA, F16C) */
} kern_isa_t;

/* Selects the kernel table. AUTO picks the best supported level. Returns 0 (ST_OK), or ST_INVAL
 * when a forced level is not supported by this CPU (the table is then left unchanged). Before
 * the first call the scalar table is in use. Not thread-safe (see file comment). */
int kern_init(kern_isa_t force);
/* True when this CPU can run the level (SCALAR always). */
bool kern_isa_supported(kern_isa_t isa);
kern_isa_t kern_isa(void);
/* "scalar", "avx2" or "avx512" for the current table. */
const char *kern_isa_name(void);

/* ---- types ---- */
/* Elements per block (1 for F32/F16/BF16); 0 for an unknown type. */
size_t kern_block_elems(kern_type_t t);
/* Bytes of one block; 0 for an unknown type. */
size_t kern_block_bytes(kern_type_t t);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t kern_row_bytes(kern_type_t t, size_t n);
const char *kern_type_name(kern_type_t t);

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f);

/* Dequantizes n elements (n a multiple of the block size) of type t at src into dst. Scalar at
 * every level: it is the ground truth, and the fast paths never dequantize whole rows. */
void kern_dequant_row(kern_type_t t, const void *src, float *dst, size_t n);

/* ---- activation quantization (int8 paths) ----
 * Q8 activation blocks: 32 values as {float d; int32 s (sum of q); int8 q[32]} (40 bytes),
 * d = max|x| / 127, q = nearbyint(x / d) in [-127, 127]. Bit-identical at every ISA level. */
#define KERN_Q8_BLOCK 32
#define KERN_Q8_BLOCK_BYTES 40
/* Bytes for n values (n a multiple of 32). */
size_t kern_q8_bytes(size_t n);
/* Quantizes x[0..n) (n a multiple of 32) into dst (kern_q8_bytes(n) bytes, 4-byte aligned). */
void kern_quant_q8(const float *x, size_t n, void *dst);

/* ---- matmul ----
 * W is row-major as stored in GGUF: W[n_out][n_in], n_in contiguous (ne0). X is [n_tok][n_in]
 * F32, Y is [n_tok][n_out] F32: Y[t][o] = sum_i W[o][i] * X[t][i]. Q8_0 and Q4_0 run int8 x int8
 * dot products on activations quantized with kern_quant_q8 (the "act" buffer); the other types
 * read X directly.
 *
 * kern_act_bytes: scratch bytes kern_act_prepare needs for (t, n_in, n_tok); 0 when the type
 * uses F32 activations. For Q8_0/Q4_0 the act buffer holds the kern_quant_q8 blocks of each
 * token regrouped 16 blocks at a time (zero-padded to whole groups; layout private to the
 * kernels), bit-identical at every ISA level.
 * kern_act_prepare: fills act (borrowed, kern_act_bytes bytes, 64-byte alignment recommended)
 * from X; a no-op when kern_act_bytes is 0. Run it once, then any number of threads may call
 * kern_matmul_rows on disjoint row ranges with the same act.
 * kern_matmul_rows: computes Y[t][o] for o in [o_begin, o_end) only; act may be NULL when
 * kern_act_bytes is 0. Row ranges that start at a multiple of KERN_ROW_ALIGN are fastest.
 * kern_matmul: prepare + all rows, on the calling thread; scratch as for act. */
#define KERN_ROW_ALIGN 16
size_t kern_act_bytes(kern_type_t t, size_t n_in, size_t n_tok);
void kern_act_prepare(kern_type_t t, const float *X, size_t n_in, size_t n_tok, void *act);
void kern_matmul_rows(kern_type_t t, const void *W, size_t n_out, size_t n_in, const float *X,
                      const void *act, size_t n_tok, float *Y, size_t o_begin, size_t o_end);
void kern_matmul(kern_type_t t, const void *W, size_t n_out, size_t n_in, const float *X,
                 size_t n_tok, float *Y, void *scratch);

/* ---- small ops (n any size; out may alias an input where stated) ---- */
/* out[i] = x[i] * w[i] / sqrt(mean(x^2) + eps). out may equal x. */
void kern_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);
/* In place, max-subtracted. n >= 1. */
void kern_softmax(float *x, size_t n);
/* out[i] = silu(g[i]) * u[i], silu(v) = v / (1 + exp(-v)). out may equal g or u. */
void kern_silu_mul(float *out, const float *g, const float *u, size_t n);
/* Fills cs[0..n_rot) with (cos, sin) pairs for position pos: pair j (j < n_rot/2) is the angle
 * pos * base^(-2j / n_rot). Apply linear RoPE scaling by passing pos / factor. Scalar (libm). */
void kern_rope_table(float *cs, size_t n_rot, float base, float pos);
/* Rotates the first n_rot (even, <= head_dim) dims of each of n_heads heads of x
 * [n_heads][head_dim] by the table cs: normal layout rotates pairs (2j, 2j+1), NeoX rotates
 * (j, j + n_rot/2). */
void kern_rope(float *x, size_t n_heads, size_t head_dim, size_t n_rot, const float *cs, bool neox);
/* Attention over the KV cache: dot products and y += a * v over F32 or F16 vectors. */
float kern_dot_f32(const float *a, const float *b, size_t n);
float kern_dot_f16(const uint16_t *a, const float *b, size_t n);
void kern_axpy_f32(float *y, float a, const float *x, size_t n);
void kern_axpy_f16(float *y, float a, const uint16_t *x, size_t n);

/* ---- attention (flash style: one KV block at a time, online softmax) ----
 * kern_attn_block updates the running state of n_rows query rows with one block of n keys:
 *   qt   Q transposed and pre-scaled by 1/sqrt(hd): element d of row r at qt[d * ldq + r];
 *        ldq is a multiple of KERN_ATTN_LANES and >= n_rows
 *   k, v key / value j (F32, hd contiguous) at k + j * ldk, v + j * ldv
 *   nv   (ldq) row r sees keys [0, nv[r]) of the block (nv[r] <= n; 0 = row left unchanged);
 *        entries for rows n_rows..ldq-1 must be 0
 *   m, l (ldq) running max and sum of exp, start at -INFINITY and 0
 *   acc  (n_rows, hd) running sum of p * v, starts at 0; the result of row r is acc[r] / l[r]
 *   s    scratch of n * ldq floats
 * A row's arithmetic depends only on its own q column, nv[r], its state and the block, never on
 * the other rows or on n beyond nv[r] (the batch invariance the executor relies on). */
#define KERN_ATTN_LANES 16
void kern_attn_block(const float *qt, size_t ldq, size_t n_rows, size_t hd, const float *k,
                     size_t ldk, const float *v, size_t ldv, size_t n, const uint32_t *nv, float *m,
                     float *l, float *acc, float *s);

#endif
