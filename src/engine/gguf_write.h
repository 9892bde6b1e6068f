/*
 * gguf_write.h - a small GGUF v3 writer and the F32 -> F16/BF16/Q8_0/Q4_0 converters it needs to
 * make synthetic models.
 *
 * Build a ggufw_t (metadata of every value type, including string arrays and values copied raw
 * from another file; tensor descriptors), then write it in one call: header, metadata, tensor
 * descriptors, padding, tensor data. Tensor data is either borrowed from the caller at add time
 * or produced at write time by a fill callback into a scratch buffer, so a multi-GB model is
 * streamed to disk without being held in memory. Tensor offsets are packed in add order, each
 * aligned to the alignment (32 unless ggufw_set_alignment).
 * Quantizers follow ggml's reference block layouts and rounding (Q8_0: fp16 d = amax/127 and
 * 32 x int8 round(x/d); Q4_0: fp16 d = max/-8 where max is the element of largest magnitude,
 * 16 bytes of nibbles q = min(15, trunc(x/d + 8.5)), element j in the low nibble of byte j and
 * element j+16 in the high one; x = (q - 8) * d).
 * Does not: read files (gguf.h), validate keys for UTF-8 (the caller writes sane keys), or write
 * big-endian files.
 * Thread-safety: a ggufw_t belongs to one thread; the converters are pure.
 */
#ifndef SY_GGUF_WRITE_H
#define SY_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "engine/gguf.h"

typedef struct ggufw ggufw_t;

/* Returns an empty writer (owned; free with ggufw_destroy), NULL on out of memory. */
ggufw_t *ggufw_create(void);
/* NULL ok. */
void ggufw_destroy(ggufw_t *w);

/* Sets the data alignment (a power of two) and records it as general.alignment (u32).
 * Call before adding tensors. ST_OK, ST_INVAL (not a power of two, or tensors already added),
 * ST_EXISTS (already set), ST_NOMEM. */
int ggufw_set_alignment(ggufw_t *w, uint32_t alignment);

/* Metadata. key is a NUL-terminated string, copied. Every adder returns ST_OK, ST_EXISTS when
 * the key is already present, ST_INVAL for an empty key, or ST_NOMEM. Values are copied. */
int ggufw_add_u8(ggufw_t *w, const char *key, uint8_t v);
int ggufw_add_i8(ggufw_t *w, const char *key, int8_t v);
int ggufw_add_u16(ggufw_t *w, const char *key, uint16_t v);
int ggufw_add_i16(ggufw_t *w, const char *key, int16_t v);
int ggufw_add_u32(ggufw_t *w, const char *key, uint32_t v);
int ggufw_add_i32(ggufw_t *w, const char *key, int32_t v);
int ggufw_add_u64(ggufw_t *w, const char *key, uint64_t v);
int ggufw_add_i64(ggufw_t *w, const char *key, int64_t v);
int ggufw_add_f32(ggufw_t *w, const char *key, float v);
int ggufw_add_f64(ggufw_t *w, const char *key, double v);
int ggufw_add_bool(ggufw_t *w, const char *key, bool v);
int ggufw_add_str(ggufw_t *w, const char *key, const char *s, size_t len);
/* Array of n numeric or bool elements of type elem, packed little-endian at elems (for bool: one
 * byte 0/1 each). ST_INVAL for elem STRING/ARRAY/unknown. */
int ggufw_add_arr(ggufw_t *w, const char *key, gguf_vtype_t elem, const void *elems, uint64_t n);
int ggufw_add_arr_str(ggufw_t *w, const char *key, const sy_slice_t *strs, uint64_t n);
/* A value already encoded as GGUF (e.g. from gguf_kv_raw): type and its len bytes, copied
 * verbatim. The caller vouches for the encoding. */
int ggufw_add_raw(ggufw_t *w, const char *key, gguf_vtype_t type, const void *val, size_t len);

/* Tensors, in file order. name is copied (1..64 bytes); ne[0..n_dims) in GGUF order (ne[0]
 * contiguous, each >= 1, n_dims 1..4, ne[0] a multiple of the type's block). data (n_bytes of
 * ggufw_tensor_bytes) is borrowed until ggufw_write*, or NULL to have the fill callback produce
 * it. ST_OK, ST_INVAL (bad shape/type/name), ST_EXISTS (duplicate name), ST_NOMEM. */
int ggufw_add_tensor(ggufw_t *w, const char *name, gguf_ttype_t type, uint32_t n_dims,
                     const uint64_t *ne, const void *data);
size_t ggufw_n_tensors(const ggufw_t *w);

/* Bytes of a tensor of type t with n_elems elements (a whole number of blocks); 0 if unknown
 * type or not whole blocks. */
size_t ggufw_tensor_bytes(gguf_ttype_t t, uint64_t n_elems);

/* Called at write time for each tensor added with data NULL: write exactly n_bytes into dst.
 * Returns ST_OK or an error (which aborts the write and is returned). */
typedef int (*ggufw_fill_fn)(void *udata, size_t tensor_index, void *dst, size_t n_bytes);

/* Writes the whole file to path (via path.tmp.PID, renamed into place on success, removed on
 * failure). fill may be NULL if every tensor has data. ST_OK, -errno, ST_NOMEM or the fill
 * callback's error, with a message in err. */
int ggufw_write_file(ggufw_t *w, const char *path, ggufw_fill_fn fill, void *udata, char *err,
                     size_t errlen);
/* Same, appended to out (for tests and fuzz seeds). */
int ggufw_write_mem(ggufw_t *w, sy_buf_t *out, ggufw_fill_fn fill, void *udata);

/* ---- converters (n elements; Q8_0/Q4_0: n a multiple of 32) ---- */
void ggufw_f32_to_f16(const float *x, uint16_t *y, size_t n);
void ggufw_f32_to_bf16(const float *x, uint16_t *y, size_t n);
/* dst receives n/32 blocks of 34 (Q8_0) or 18 (Q4_0) bytes. */
void ggufw_quantize_q8_0(const float *x, void *dst, size_t n);
void ggufw_quantize_q4_0(const float *x, void *dst, size_t n);
/* Reference dequantizers (for tests and tools; the kernels have their own). */
void ggufw_dequantize_q8_0(const void *src, float *y, size_t n);
void ggufw_dequantize_q4_0(const void *src, float *y, size_t n);

#endif
