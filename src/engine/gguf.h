/*
 * gguf.h - GGUF model files (versions 2 and 3, little-endian), the format of the llama.cpp
 * ecosystem: a header, typed metadata key/value pairs, tensor descriptors, then aligned tensor
 * data. The file is mmapped read-only; metadata values and tensor data are read in place, never
 * copied (string arrays get one offset table, built at open).
 *
 * Validation at open, before anything is used: magic, version, counts against the file size
 * (no count may promise more bytes than the file has), every key (UTF-8, unique, length),
 * every value type (known), every array (element type known and not itself an array, as in
 * ggml; length fits the file; bools 0 or 1), every tensor (name 1..64 bytes, UTF-8 and unique,
 * 1..4 dims, each dim >= 1, element count without overflow and ne[0] a whole number of blocks
 * for block types, known type, offset aligned to general.alignment (default 32, must be a
 * UINT32 power of two), data inside the file).
 * String values are not checked for UTF-8 (some real vocabularies hold byte pieces); keys and
 * tensor names are.
 * Errors are ST_PROTO (ST_NOMEM, -errno for I/O) with a message naming what is wrong, e.g.
 * "tensor 'blk.0.attn_q.weight': data [1024, 9216) past the end of the file (8192 bytes)".
 *
 * Does not: write files (see gguf_write.h), interpret architectures, or
 * dequantize (see the kernels).
 * Thread-safety: a gguf_t is immutable after open; any thread may read it concurrently.
 */
#ifndef SY_GGUF_H
#define SY_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Metadata value types (GGUF spec numbering). */
typedef enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
} gguf_vtype_t;

/* Tensor element types (ggml numbering). Only those listed are accepted by gguf_open; others are
 * refused with their number in the message. */
typedef enum gguf_ttype {
    GGUF_TT_F32 = 0,
    GGUF_TT_F16 = 1,
    GGUF_TT_Q4_0 = 2,
    GGUF_TT_Q8_0 = 8,
    GGUF_TT_Q4_K = 12,
    GGUF_TT_Q6_K = 14,
    GGUF_TT_BF16 = 30,
} gguf_ttype_t;

/* Elements per block and bytes per block of a tensor type (F32: 1 and 4; Q8_0: 32 and 34;
 * Q4_0: 32 and 18; Q4_K: 256 and 144; Q6_K: 256 and 210; F16/BF16: 1 and 2). False if unknown. */
bool gguf_ttype_block(gguf_ttype_t t, uint32_t *block_elems, uint32_t *block_bytes);
/* "F32", "Q4_K", ...: any ggml type, including those gguf_open refuses (e.g. "Q4_1"); "?" for
 * a number ggml does not define. */
const char *gguf_ttype_name(gguf_ttype_t t);
/* Name of a value type ("u32", "string", "array", ...; "?" if unknown). */
const char *gguf_vtype_name(gguf_vtype_t t);

/* Bytes of one scalar of value type t (1, 2, 4 or 8; 0 for STRING, ARRAY and unknown types). */
size_t gguf_vtype_size(gguf_vtype_t t);

typedef struct gguf gguf_t;

typedef struct gguf_tensor {
    sy_slice_t name; /* points into the mapping */
    uint32_t n_dims; /* 1..4 */
    uint64_t ne[4];  /* GGUF order: ne[0] is contiguous; unused dims are 1 */
    gguf_ttype_t type;
    uint64_t n_elems; /* product of ne */
    const void *data; /* in the mapping, aligned to the file's alignment */
    size_t n_bytes;
    uint64_t offset; /* of data, relative to the start of the tensor data section */
} gguf_tensor_t;

/* Maps and validates path. ST_OK with *out owned (free with gguf_close), or an error with err
 * set (err may be NULL). */
int gguf_open(const char *path, gguf_t **out, char *err, size_t errlen);
/* Same over caller memory data[0..len) (borrowed; must outlive the gguf_t). For tests and
 * fuzzing. */
int gguf_open_mem(const void *data, size_t len, gguf_t **out, char *err, size_t errlen);
/* Unmaps and frees. NULL ok. */
void gguf_close(gguf_t *g);

uint32_t gguf_version(const gguf_t *g);
uint32_t gguf_alignment(const gguf_t *g);
/* Size of the file (or memory) and the offset of the tensor data section in it (the first
 * multiple of the alignment after the tensor descriptors; may equal or exceed the size when the
 * file has no tensors). */
size_t gguf_size(const gguf_t *g);
size_t gguf_data_offset(const gguf_t *g);

/* ---- metadata ---- */
size_t gguf_n_kv(const gguf_t *g);
/* Index of key, or -1 when absent (hash lookup, O(1)). */
int64_t gguf_find(const gguf_t *g, const char *key);
/* Key and value type of kv i (keys are valid UTF-8 without NUL, in the mapping, not
 * NUL-terminated). Out of range: an empty slice and (gguf_vtype_t)-1. */
sy_slice_t gguf_key(const gguf_t *g, size_t i);
gguf_vtype_t gguf_type(const gguf_t *g, size_t i);

/* Typed getters by key. They return false when the key is absent or its value does not convert
 * exactly (an integer of any width that fits the target; FLOAT32/FLOAT64 for floats; BOOL for
 * bool; STRING for strings, as a slice into the mapping, not NUL-terminated). */
bool gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out);
bool gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf_t *g, const char *key, int64_t *out);
bool gguf_get_f32(const gguf_t *g, const char *key, float *out);
bool gguf_get_bool(const gguf_t *g, const char *key, bool *out);
bool gguf_get_str(const gguf_t *g, const char *key, sy_slice_t *out);

/* Arrays: element type and length of the array under key; false if absent or not an array. */
bool gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype_t *elem, uint64_t *n);
/* Element i of an array (bounds-checked; false when out of range or of another type). Numeric
 * elements are read with memcpy (the mapping gives no alignment guarantee for them). */
bool gguf_arr_str(const gguf_t *g, const char *key, uint64_t i, sy_slice_t *out);
bool gguf_arr_f32(const gguf_t *g, const char *key, uint64_t i, float *out);
bool gguf_arr_i64(const gguf_t *g, const char *key, uint64_t i, int64_t *out); /* any int type */

/* ---- by index (i < gguf_n_kv, else false): no key lookup, for hot loops and tools ---- */
/* Scalars, with the same conversion rules as the getters by key. */
bool gguf_kv_u64(const gguf_t *g, size_t i, uint64_t *out);
bool gguf_kv_i64(const gguf_t *g, size_t i, int64_t *out);
bool gguf_kv_f64(const gguf_t *g, size_t i, double *out); /* FLOAT32 or FLOAT64 */
bool gguf_kv_bool(const gguf_t *g, size_t i, bool *out);
bool gguf_kv_str(const gguf_t *g, size_t i, sy_slice_t *out);
/* Array element type and length of kv i; false if it is not an array. */
bool gguf_kv_arr(const gguf_t *g, size_t i, gguf_vtype_t *elem, uint64_t *n);
/* Element j of array kv i (bounds- and type-checked as the by-key versions). */
bool gguf_arr_str_at(const gguf_t *g, size_t i, uint64_t j, sy_slice_t *out);
bool gguf_arr_f32_at(const gguf_t *g, size_t i, uint64_t j, float *out);   /* FLOAT32/FLOAT64 */
bool gguf_arr_i64_at(const gguf_t *g, size_t i, uint64_t j, int64_t *out); /* any int type */
/* The packed little-endian elements of a numeric or bool array kv i (not strings), in the
 * mapping, unaligned; NULL if kv i is not such an array. For bulk copies (memcpy). */
const void *gguf_arr_data(const gguf_t *g, size_t i, gguf_vtype_t *elem, uint64_t *n);
/* The value of kv i exactly as encoded in the file (after its type field: a string's length and
 * bytes; an array's element type, length and elements), borrowed from the mapping. For copying
 * metadata into another file (ggufw_add_raw). */
void gguf_kv_raw(const gguf_t *g, size_t i, const void **data, size_t *len);

/* ---- tensors ---- */
size_t gguf_n_tensors(const gguf_t *g);
/* Tensor i in file order (borrowed, valid until gguf_close); NULL when out of range. */
const gguf_tensor_t *gguf_tensor(const gguf_t *g, size_t i);
/* NULL when absent (hash lookup). Tensor data regions are not checked for overlap. */
const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name);

#endif
