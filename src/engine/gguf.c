/*
 * gguf.c - GGUF v2/v3 reader: mmap, validate everything once at open, then serve metadata and
 * tensor descriptors in place.
 *
 * Design notes. One pass over the file with a bounds-checked cursor (every read checks the bytes
 * left first, in overflow-safe arithmetic). Before any allocation sized by a count from the file
 * the count is checked against the bytes that remain, using the smallest possible encoding of one
 * item (a key/value pair takes at least 14 bytes, a tensor descriptor 33, a string 8), so no file
 * makes us allocate more than a small multiple of its own size. Keys and tensor names are found
 * through open-addressing hash tables built at open (this also catches duplicates in linear
 * time). String arrays get one table of offsets so element i is O(1). Numeric values are read
 * with memcpy (the mapping gives no alignment guarantee). The host must be little-endian.
 * Does not: write, dequantize or interpret architectures.
 * Thread-safety: a gguf_t is immutable after open.
 */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files in place and needs a little-endian host"
#endif

#define GGUF_HEADER_BYTES 24u
#define GGUF_MIN_KV_BYTES 14u     /* key len 8 + 1 byte key + type 4 + 1 byte value */
#define GGUF_MIN_TENSOR_BYTES 33u /* name len 8 + 1 + n_dims 4 + ne 8 + type 4 + offset 8 */
#define GGUF_MAX_KEY 65535u
#define GGUF_MAX_NAME 64u
#define GGUF_MAX_DIMS 4u
#define GGUF_DEFAULT_ALIGNMENT 32u

typedef struct gguf_kv {
    sy_slice_t key;
    gguf_vtype_t type;
    gguf_vtype_t elem;  /* arrays: element type */
    uint64_t n;         /* arrays: length */
    const uint8_t *val; /* scalars: the value; strings: the length field; arrays: element 0 */
    const uint8_t *raw; /* the encoded value (after the type field) */
    size_t raw_len;
    uint64_t *str_offs; /* string arrays: offset from val of each element's length field */
} gguf_kv_t;

struct gguf {
    const uint8_t *base;
    size_t size;
    void *map; /* gguf_open only */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    size_t data_off;
    size_t n_kv;
    gguf_kv_t *kv;
    size_t n_tensors;
    gguf_tensor_t *tensors;
    size_t *kv_hash; /* index + 1; 0 = empty; kv_hash_cap is a power of two */
    size_t kv_hash_cap;
    size_t *t_hash;
    size_t t_hash_cap;
};

/* ---- type tables ---- */

static const char *const k_ttype_names[] = {
    [0] = "F32",     [1] = "F16",      [2] = "Q4_0",   [3] = "Q4_1",    [6] = "Q5_0",
    [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",   [10] = "Q2_K",   [11] = "Q3_K",
    [12] = "Q4_K",   [13] = "Q5_K",    [14] = "Q6_K",  [15] = "Q8_K",   [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
    [22] = "IQ2_S",  [23] = "IQ4_XS",  [24] = "I8",    [25] = "I16",    [26] = "I32",
    [27] = "I64",    [28] = "F64",     [29] = "IQ1_M", [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0",  [39] = "MXFP4",
};

const char *gguf_ttype_name(gguf_ttype_t t)
{
    if ((unsigned)t < sizeof k_ttype_names / sizeof k_ttype_names[0] && k_ttype_names[t])
        return k_ttype_names[t];
    return "?";
}

bool gguf_ttype_block(gguf_ttype_t t, uint32_t *block_elems, uint32_t *block_bytes)
{
    uint32_t e, b;
    switch (t) {
    case GGUF_TT_F32:
        e = 1, b = 4;
        break;
    case GGUF_TT_F16:
    case GGUF_TT_BF16:
        e = 1, b = 2;
        break;
    case GGUF_TT_Q8_0:
        e = 32, b = 34;
        break;
    case GGUF_TT_Q4_0:
        e = 32, b = 18;
        break;
    case GGUF_TT_Q4_K:
        e = 256, b = 144;
        break;
    case GGUF_TT_Q6_K:
        e = 256, b = 210;
        break;
    default:
        return false;
    }
    if (block_elems)
        *block_elems = e;
    if (block_bytes)
        *block_bytes = b;
    return true;
}

const char *gguf_vtype_name(gguf_vtype_t t)
{
    static const char *const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)t < sizeof names / sizeof names[0])
        return names[t];
    return "?";
}

size_t gguf_vtype_size(gguf_vtype_t t)
{
    switch (t) {
    case GGUF_VT_UINT8:
    case GGUF_VT_INT8:
    case GGUF_VT_BOOL:
        return 1;
    case GGUF_VT_UINT16:
    case GGUF_VT_INT16:
        return 2;
    case GGUF_VT_UINT32:
    case GGUF_VT_INT32:
    case GGUF_VT_FLOAT32:
        return 4;
    case GGUF_VT_UINT64:
    case GGUF_VT_INT64:
    case GGUF_VT_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bool vt_is_int(gguf_vtype_t t)
{
    switch (t) {
    case GGUF_VT_UINT8:
    case GGUF_VT_INT8:
    case GGUF_VT_UINT16:
    case GGUF_VT_INT16:
    case GGUF_VT_UINT32:
    case GGUF_VT_INT32:
    case GGUF_VT_UINT64:
    case GGUF_VT_INT64:
        return true;
    default:
        return false;
    }
}

/* ---- hashing ---- */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static size_t hash_cap_for(size_t n)
{
    size_t cap = 8;
    while (cap < n * 2)
        cap <<= 1;
    return cap;
}

/* ---- the cursor ---- */

typedef struct rd {
    const uint8_t *base;
    size_t size;
    size_t pos;
    char *err;
    size_t errlen;
} rd_t;

static size_t rd_left(const rd_t *r)
{
    return r->size - r->pos;
}

static int rd_need(rd_t *r, size_t n, const char *what, const char *ctx)
{
    if (n <= rd_left(r))
        return ST_OK;
    sy_errf(r->err, r->errlen,
            "%s%s%s: %zu bytes needed at offset %zu, past the end of the file (%zu bytes)", ctx,
            ctx[0] ? ": " : "", what, n, r->pos, r->size);
    return ST_PROTO;
}

static int rd_u32(rd_t *r, uint32_t *v, const char *what, const char *ctx)
{
    int rc = rd_need(r, 4, what, ctx);
    if (rc != ST_OK)
        return rc;
    memcpy(v, r->base + r->pos, 4);
    r->pos += 4;
    return ST_OK;
}

static int rd_u64(rd_t *r, uint64_t *v, const char *what, const char *ctx)
{
    int rc = rd_need(r, 8, what, ctx);
    if (rc != ST_OK)
        return rc;
    memcpy(v, r->base + r->pos, 8);
    r->pos += 8;
    return ST_OK;
}

/* A GGUF string (u64 length + bytes) as a slice into the mapping. */
static int rd_str(rd_t *r, sy_slice_t *s, const char *what, const char *ctx)
{
    uint64_t n;
    size_t at = r->pos;
    int rc = rd_u64(r, &n, what, ctx);
    if (rc != ST_OK)
        return rc;
    if (n > rd_left(r)) {
        sy_errf(r->err, r->errlen,
                "%s%s%s: length %" PRIu64
                " at offset %zu runs past the end of the file (%zu bytes)",
                ctx, ctx[0] ? ": " : "", what, n, at, r->size);
        return ST_PROTO;
    }
    s->ptr = (const char *)r->base + r->pos;
    s->len = (size_t)n;
    r->pos += (size_t)n;
    return ST_OK;
}

/* Quoted, shortened, printable form of a name for messages. */
static const char *show(sy_slice_t s, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (i >= 48) {
            buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
            break;
        }
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    buf[o] = '\0';
    return buf;
}

/* ---- metadata ---- */

static gguf_kv_t *kv_at(const gguf_t *g, size_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}

static int64_t kv_lookup(const gguf_t *g, const char *key, size_t len)
{
    if (!g->kv_hash)
        return -1;
    size_t mask = g->kv_hash_cap - 1;
    for (size_t h = (size_t)hash_bytes(key, len) & mask;; h = (h + 1) & mask) {
        size_t e = g->kv_hash[h];
        if (e == 0)
            return -1;
        const gguf_kv_t *kv = &g->kv[e - 1];
        if (kv->key.len == len && memcmp(kv->key.ptr, key, len) == 0)
            return (int64_t)(e - 1);
    }
}

/* Reads the value of kv (type already read) and checks it. */
static int read_value(rd_t *r, gguf_kv_t *kv, const char *ctx)
{
    kv->raw = r->base + r->pos;
    kv->val = kv->raw;
    kv->n = 1;
    if (kv->type == GGUF_VT_STRING) {
        sy_slice_t s;
        int rc = rd_str(r, &s, "string value", ctx);
        if (rc != ST_OK)
            return rc;
    } else if (kv->type == GGUF_VT_ARRAY) {
        uint32_t et;
        uint64_t n;
        int rc = rd_u32(r, &et, "array element type", ctx);
        if (rc == ST_OK)
            rc = rd_u64(r, &n, "array length", ctx);
        if (rc != ST_OK)
            return rc;
        if (et == GGUF_VT_ARRAY) {
            sy_errf(r->err, r->errlen, "%s: arrays of arrays are not supported", ctx);
            return ST_PROTO;
        }
        size_t es = gguf_vtype_size(et);
        if (et != GGUF_VT_STRING && es == 0) {
            sy_errf(r->err, r->errlen, "%s: unknown array element type %" PRIu32, ctx, et);
            return ST_PROTO;
        }
        size_t min_es = es ? es : 8;
        if (n > rd_left(r) / min_es) {
            sy_errf(r->err, r->errlen,
                    "%s: array length %" PRIu64 " of %s does not fit in the %zu bytes left in the "
                    "file",
                    ctx, n, gguf_vtype_name((gguf_vtype_t)et), rd_left(r));
            return ST_PROTO;
        }
        kv->elem = (gguf_vtype_t)et;
        kv->n = n;
        kv->val = r->base + r->pos;
        if (et == GGUF_VT_STRING) {
            if (n > 0) {
                kv->str_offs = sy_malloc((size_t)n * sizeof *kv->str_offs);
                if (!kv->str_offs) {
                    sy_errf(r->err, r->errlen, "%s: out of memory for %" PRIu64 " strings", ctx, n);
                    return ST_NOMEM;
                }
            }
            for (uint64_t j = 0; j < n; j++) {
                kv->str_offs[j] = (uint64_t)(r->base + r->pos - kv->val);
                uint64_t len = UINT64_MAX;
                if (rd_left(r) >= 8)
                    memcpy(&len, r->base + r->pos, 8);
                if (rd_left(r) < 8 || len > rd_left(r) - 8) {
                    sy_errf(r->err, r->errlen,
                            "%s: string %" PRIu64 " of %" PRIu64 " at offset %zu runs past the "
                            "end of the file (%zu bytes)",
                            ctx, j, n, r->pos, r->size);
                    return ST_PROTO;
                }
                r->pos += 8 + (size_t)len;
            }
        } else {
            size_t bytes = (size_t)n * es;
            if (et == GGUF_VT_BOOL) {
                for (size_t j = 0; j < bytes; j++) {
                    if (r->base[r->pos + j] > 1) {
                        sy_errf(r->err, r->errlen, "%s: bool element %zu is %u (must be 0 or 1)",
                                ctx, j, r->base[r->pos + j]);
                        return ST_PROTO;
                    }
                }
            }
            r->pos += bytes;
        }
    } else {
        size_t es = gguf_vtype_size(kv->type);
        if (es == 0) {
            sy_errf(r->err, r->errlen, "%s: unknown value type %u", ctx, (unsigned)kv->type);
            return ST_PROTO;
        }
        int rc = rd_need(r, es, "value", ctx);
        if (rc != ST_OK)
            return rc;
        if (kv->type == GGUF_VT_BOOL && r->base[r->pos] > 1) {
            sy_errf(r->err, r->errlen, "%s: bool value is %u (must be 0 or 1)", ctx,
                    r->base[r->pos]);
            return ST_PROTO;
        }
        r->pos += es;
    }
    kv->raw_len = (size_t)(r->base + r->pos - kv->raw);
    return ST_OK;
}

static int read_kvs(rd_t *r, gguf_t *g)
{
    g->kv_hash_cap = hash_cap_for(g->n_kv);
    g->kv_hash = sy_calloc(g->kv_hash_cap, sizeof *g->kv_hash);
    if (g->n_kv)
        g->kv = sy_calloc(g->n_kv, sizeof *g->kv);
    if (!g->kv_hash || (g->n_kv && !g->kv)) {
        sy_errf(r->err, r->errlen, "out of memory for %zu metadata entries", g->n_kv);
        return ST_NOMEM;
    }
    size_t mask = g->kv_hash_cap - 1;
    for (size_t i = 0; i < g->n_kv; i++) {
        gguf_kv_t *kv = &g->kv[i];
        char ctx[128], nm[64];
        snprintf(ctx, sizeof ctx, "metadata entry %zu", i);
        int rc = rd_str(r, &kv->key, "key", ctx);
        if (rc != ST_OK)
            return rc;
        snprintf(ctx, sizeof ctx, "metadata key '%s'", show(kv->key, nm, sizeof nm));
        if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY) {
            sy_errf(r->err, r->errlen, "metadata entry %zu: key length %zu (must be 1..%u)", i,
                    kv->key.len, GGUF_MAX_KEY);
            return ST_PROTO;
        }
        if (!sy_utf8_valid(kv->key.ptr, kv->key.len) || memchr(kv->key.ptr, 0, kv->key.len)) {
            sy_errf(r->err, r->errlen, "%s (entry %zu): key is not valid UTF-8 text", ctx, i);
            return ST_PROTO;
        }
        size_t h = (size_t)hash_bytes(kv->key.ptr, kv->key.len) & mask;
        for (;; h = (h + 1) & mask) {
            size_t e = g->kv_hash[h];
            if (e == 0)
                break;
            const gguf_kv_t *o = &g->kv[e - 1];
            if (o->key.len == kv->key.len && memcmp(o->key.ptr, kv->key.ptr, o->key.len) == 0) {
                sy_errf(r->err, r->errlen, "%s: duplicate key (entries %zu and %zu)", ctx, e - 1,
                        i);
                return ST_PROTO;
            }
        }
        g->kv_hash[h] = i + 1;
        uint32_t t;
        rc = rd_u32(r, &t, "value type", ctx);
        if (rc != ST_OK)
            return rc;
        if (t > GGUF_VT_FLOAT64) {
            sy_errf(r->err, r->errlen, "%s: unknown value type %" PRIu32, ctx, t);
            return ST_PROTO;
        }
        kv->type = (gguf_vtype_t)t;
        rc = read_value(r, kv, ctx);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* ---- tensors ---- */

static int read_tensors(rd_t *r, gguf_t *g)
{
    g->t_hash_cap = hash_cap_for(g->n_tensors);
    g->t_hash = sy_calloc(g->t_hash_cap, sizeof *g->t_hash);
    if (g->n_tensors)
        g->tensors = sy_calloc(g->n_tensors, sizeof *g->tensors);
    if (!g->t_hash || (g->n_tensors && !g->tensors)) {
        sy_errf(r->err, r->errlen, "out of memory for %zu tensors", g->n_tensors);
        return ST_NOMEM;
    }
    size_t mask = g->t_hash_cap - 1;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        char ctx[128], nm[64];
        snprintf(ctx, sizeof ctx, "tensor %zu", i);
        int rc = rd_str(r, &t->name, "name", ctx);
        if (rc != ST_OK)
            return rc;
        if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME) {
            sy_errf(r->err, r->errlen, "tensor %zu: name length %zu (must be 1..%u)", i,
                    t->name.len, GGUF_MAX_NAME);
            return ST_PROTO;
        }
        snprintf(ctx, sizeof ctx, "tensor '%s'", show(t->name, nm, sizeof nm));
        if (!sy_utf8_valid(t->name.ptr, t->name.len) || memchr(t->name.ptr, 0, t->name.len)) {
            sy_errf(r->err, r->errlen, "%s (tensor %zu): name is not valid UTF-8 text", ctx, i);
            return ST_PROTO;
        }
        size_t h = (size_t)hash_bytes(t->name.ptr, t->name.len) & mask;
        for (;; h = (h + 1) & mask) {
            size_t e = g->t_hash[h];
            if (e == 0)
                break;
            const gguf_tensor_t *o = &g->tensors[e - 1];
            if (o->name.len == t->name.len && memcmp(o->name.ptr, t->name.ptr, o->name.len) == 0) {
                sy_errf(r->err, r->errlen, "%s: duplicate tensor name (tensors %zu and %zu)", ctx,
                        e - 1, i);
                return ST_PROTO;
            }
        }
        g->t_hash[h] = i + 1;
        rc = rd_u32(r, &t->n_dims, "n_dims", ctx);
        if (rc != ST_OK)
            return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            sy_errf(r->err, r->errlen, "%s: %" PRIu32 " dimensions (must be 1..%u)", ctx, t->n_dims,
                    GGUF_MAX_DIMS);
            return ST_PROTO;
        }
        uint64_t n_elems = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims)
                continue;
            rc = rd_u64(r, &t->ne[d], "dimension", ctx);
            if (rc != ST_OK)
                return rc;
            if (t->ne[d] < 1 || t->ne[d] > (uint64_t)INT64_MAX) {
                sy_errf(r->err, r->errlen,
                        "%s: dimension %" PRIu32 " is %" PRIu64 " (must be 1..2^63-1)", ctx, d,
                        t->ne[d]);
                return ST_PROTO;
            }
            if (__builtin_mul_overflow(n_elems, t->ne[d], &n_elems) ||
                n_elems > (uint64_t)INT64_MAX) {
                sy_errf(r->err, r->errlen, "%s: element count overflows (shape too large)", ctx);
                return ST_PROTO;
            }
        }
        t->n_elems = n_elems;
        uint32_t type;
        rc = rd_u32(r, &type, "type", ctx);
        if (rc != ST_OK)
            return rc;
        uint32_t be, bb;
        if (!gguf_ttype_block((gguf_ttype_t)type, &be, &bb)) {
            sy_errf(r->err, r->errlen,
                    "%s: tensor type %" PRIu32 " (%s) is not supported (supported: F32, F16, "
                    "BF16, Q8_0, Q4_0, Q4_K, Q6_K)",
                    ctx, type, gguf_ttype_name((gguf_ttype_t)type));
            return ST_PROTO;
        }
        t->type = (gguf_ttype_t)type;
        if (t->ne[0] % be != 0) {
            sy_errf(r->err, r->errlen,
                    "%s: ne[0] = %" PRIu64 " is not a multiple of the %s block size %" PRIu32, ctx,
                    t->ne[0], gguf_ttype_name(t->type), be);
            return ST_PROTO;
        }
        uint64_t n_bytes;
        if (__builtin_mul_overflow(n_elems / be, (uint64_t)bb, &n_bytes) || n_bytes > SIZE_MAX) {
            sy_errf(r->err, r->errlen, "%s: byte size overflows (shape too large)", ctx);
            return ST_PROTO;
        }
        t->n_bytes = (size_t)n_bytes;
        rc = rd_u64(r, &t->offset, "data offset", ctx);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static int place_tensors(rd_t *r, gguf_t *g)
{
    uint64_t a = g->alignment;
    uint64_t start = ((uint64_t)r->pos + a - 1) / a * a; /* pos <= size, a <= 2^31: no overflow */
    g->data_off = start > SIZE_MAX ? SIZE_MAX : (size_t)start;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        char nm[64];
        if (t->offset % a != 0) {
            sy_errf(r->err, r->errlen,
                    "tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %u",
                    show(t->name, nm, sizeof nm), t->offset, g->alignment);
            return ST_PROTO;
        }
        uint64_t begin, end;
        if (__builtin_add_overflow(start, t->offset, &begin) ||
            __builtin_add_overflow(begin, (uint64_t)t->n_bytes, &end) || end > r->size) {
            sy_errf(r->err, r->errlen,
                    "tensor '%s': data [%" PRIu64 ", %" PRIu64
                    ") past the end of the file (%zu bytes)",
                    show(t->name, nm, sizeof nm), start + t->offset,
                    start + t->offset + (uint64_t)t->n_bytes, r->size);
            return ST_PROTO;
        }
        t->data = r->base + begin;
    }
    return ST_OK;
}

static int parse(gguf_t *g, char *err, size_t errlen)
{
    rd_t r = {.base = g->base, .size = g->size, .pos = 0, .err = err, .errlen = errlen};
    if (g->size < GGUF_HEADER_BYTES) {
        if (g->size >= 4 && memcmp(g->base, "GGUF", 4) != 0) {
            sy_errf(err, errlen, "not a GGUF file (bad magic)");
            return ST_PROTO;
        }
        sy_errf(err, errlen, "truncated header: %zu bytes, a GGUF header has %u", g->size,
                GGUF_HEADER_BYTES);
        return ST_PROTO;
    }
    if (memcmp(g->base, "GGUF", 4) != 0) {
        sy_errf(err, errlen, "not a GGUF file (bad magic %02x %02x %02x %02x)", g->base[0],
                g->base[1], g->base[2], g->base[3]);
        return ST_PROTO;
    }
    r.pos = 4;
    uint64_t n_tensors, n_kv;
    rd_u32(&r, &g->version, "version", "");
    rd_u64(&r, &n_tensors, "tensor count", "");
    rd_u64(&r, &n_kv, "metadata count", "");
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
        sy_errf(err, errlen, "GGUF version %" PRIu32 " is not supported (need 2 or 3)%s", v,
                (swapped == 2 || swapped == 3) ? "; the file looks big-endian" : "");
        return ST_PROTO;
    }
    size_t left = rd_left(&r);
    if (n_kv > left / GGUF_MIN_KV_BYTES) {
        sy_errf(err, errlen,
                "metadata count %" PRIu64 " is impossible: %zu bytes left hold at most %zu entries",
                n_kv, left, left / GGUF_MIN_KV_BYTES);
        return ST_PROTO;
    }
    left -= (size_t)n_kv * GGUF_MIN_KV_BYTES;
    if (n_tensors > left / GGUF_MIN_TENSOR_BYTES) {
        sy_errf(err, errlen,
                "tensor count %" PRIu64
                " is impossible: the file is too small to describe that many tensors (%zu bytes)",
                n_tensors, g->size);
        return ST_PROTO;
    }
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    int rc = read_kvs(&r, g);
    if (rc != ST_OK)
        return rc;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = kv_lookup(g, "general.alignment", strlen("general.alignment"));
    if (ai >= 0) {
        const gguf_kv_t *kv = &g->kv[ai];
        uint32_t a = 0;
        if (kv->type != GGUF_VT_UINT32) {
            sy_errf(err, errlen, "general.alignment has type %s (must be u32)",
                    gguf_vtype_name(kv->type));
            return ST_PROTO;
        }
        memcpy(&a, kv->val, 4);
        if (a == 0 || (a & (a - 1)) != 0) {
            sy_errf(err, errlen, "general.alignment %" PRIu32 " is not a power of two", a);
            return ST_PROTO;
        }
        g->alignment = a;
    }
    rc = read_tensors(&r, g);
    if (rc != ST_OK)
        return rc;
    return place_tensors(&r, g);
}

static void free_parts(gguf_t *g)
{
    if (g->kv) {
        for (size_t i = 0; i < g->n_kv; i++)
            sy_free(g->kv[i].str_offs);
    }
    sy_free(g->kv);
    sy_free(g->kv_hash);
    sy_free(g->tensors);
    sy_free(g->t_hash);
}

int gguf_open_mem(const void *data, size_t len, gguf_t **out, char *err, size_t errlen)
{
    *out = NULL;
    gguf_t *g = sy_calloc(1, sizeof *g);
    if (!g) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    g->base = data;
    g->size = len;
    if (!data)
        g->size = 0;
    static const uint8_t empty[1];
    if (!g->base)
        g->base = empty;
    int rc = parse(g, err, errlen);
    if (rc != ST_OK) {
        free_parts(g);
        sy_free(g);
        return rc;
    }
    *out = g;
    return ST_OK;
}

int gguf_open(const char *path, gguf_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        sy_errf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        sy_errf(err, errlen, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        sy_errf(err, errlen, "%s is not a regular file", path);
        return ST_PROTO;
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            sy_errf(err, errlen, "cannot mmap %s: %s", path, strerror(e));
            return -e;
        }
    }
    close(fd);
    gguf_t *g = NULL;
    int rc = gguf_open_mem(map, size, &g, err, errlen);
    if (rc != ST_OK) {
        if (map)
            munmap(map, size);
        return rc;
    }
    g->map = map;
    g->map_len = size;
    *out = g;
    return ST_OK;
}

void gguf_close(gguf_t *g)
{
    if (!g)
        return;
    free_parts(g);
    if (g->map)
        munmap(g->map, g->map_len);
    sy_free(g);
}

uint32_t gguf_version(const gguf_t *g)
{
    return g->version;
}

uint32_t gguf_alignment(const gguf_t *g)
{
    return g->alignment;
}

size_t gguf_size(const gguf_t *g)
{
    return g->size;
}

size_t gguf_data_offset(const gguf_t *g)
{
    return g->data_off;
}

size_t gguf_n_kv(const gguf_t *g)
{
    return g->n_kv;
}

int64_t gguf_find(const gguf_t *g, const char *key)
{
    return key ? kv_lookup(g, key, strlen(key)) : -1;
}

sy_slice_t gguf_key(const gguf_t *g, size_t i)
{
    const gguf_kv_t *kv = kv_at(g, i);
    sy_slice_t none = {"", 0};
    return kv ? kv->key : none;
}

gguf_vtype_t gguf_type(const gguf_t *g, size_t i)
{
    const gguf_kv_t *kv = kv_at(g, i);
    return kv ? kv->type : (gguf_vtype_t)-1;
}

/* Integer element at p of type t, as a sign flag + magnitude pair. */
static bool int_load(gguf_vtype_t t, const uint8_t *p, bool *neg, uint64_t *mag)
{
    uint64_t u = 0;
    int64_t s = 0;
    bool is_signed = false;
    switch (t) {
    case GGUF_VT_UINT8: {
        uint8_t v;
        memcpy(&v, p, 1);
        u = v;
        break;
    }
    case GGUF_VT_INT8: {
        int8_t v;
        memcpy(&v, p, 1);
        s = v, is_signed = true;
        break;
    }
    case GGUF_VT_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        u = v;
        break;
    }
    case GGUF_VT_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        s = v, is_signed = true;
        break;
    }
    case GGUF_VT_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        u = v;
        break;
    }
    case GGUF_VT_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        s = v, is_signed = true;
        break;
    }
    case GGUF_VT_UINT64:
        memcpy(&u, p, 8);
        break;
    case GGUF_VT_INT64:
        memcpy(&s, p, 8);
        is_signed = true;
        break;
    default:
        return false;
    }
    if (is_signed && s < 0) {
        *neg = true;
        *mag = (uint64_t)(-(s + 1)) + 1;
    } else {
        *neg = false;
        *mag = is_signed ? (uint64_t)s : u;
    }
    return true;
}

static bool to_i64(gguf_vtype_t t, const uint8_t *p, int64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!int_load(t, p, &neg, &mag))
        return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)mag;
    }
    return true;
}

static bool to_u64(gguf_vtype_t t, const uint8_t *p, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    if (!int_load(t, p, &neg, &mag) || neg)
        return false;
    *out = mag;
    return true;
}

static bool to_f64(gguf_vtype_t t, const uint8_t *p, double *out)
{
    if (t == GGUF_VT_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return true;
    }
    if (t == GGUF_VT_FLOAT64) {
        memcpy(out, p, 8);
        return true;
    }
    return false;
}

static const gguf_kv_t *kv_scalar(const gguf_t *g, size_t i)
{
    const gguf_kv_t *kv = kv_at(g, i);
    return kv && kv->type != GGUF_VT_ARRAY ? kv : NULL;
}

bool gguf_kv_u64(const gguf_t *g, size_t i, uint64_t *out)
{
    const gguf_kv_t *kv = kv_scalar(g, i);
    return kv && to_u64(kv->type, kv->val, out);
}

bool gguf_kv_i64(const gguf_t *g, size_t i, int64_t *out)
{
    const gguf_kv_t *kv = kv_scalar(g, i);
    return kv && to_i64(kv->type, kv->val, out);
}

bool gguf_kv_f64(const gguf_t *g, size_t i, double *out)
{
    const gguf_kv_t *kv = kv_scalar(g, i);
    return kv && to_f64(kv->type, kv->val, out);
}

bool gguf_kv_bool(const gguf_t *g, size_t i, bool *out)
{
    const gguf_kv_t *kv = kv_scalar(g, i);
    if (!kv || kv->type != GGUF_VT_BOOL)
        return false;
    *out = kv->val[0] != 0;
    return true;
}

static sy_slice_t str_at(const uint8_t *p)
{
    uint64_t n;
    memcpy(&n, p, 8);
    sy_slice_t s = {(const char *)p + 8, (size_t)n}; /* validated at open */
    return s;
}

bool gguf_kv_str(const gguf_t *g, size_t i, sy_slice_t *out)
{
    const gguf_kv_t *kv = kv_scalar(g, i);
    if (!kv || kv->type != GGUF_VT_STRING)
        return false;
    *out = str_at(kv->val);
    return true;
}

bool gguf_kv_arr(const gguf_t *g, size_t i, gguf_vtype_t *elem, uint64_t *n)
{
    const gguf_kv_t *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_VT_ARRAY)
        return false;
    if (elem)
        *elem = kv->elem;
    if (n)
        *n = kv->n;
    return true;
}

bool gguf_arr_str_at(const gguf_t *g, size_t i, uint64_t j, sy_slice_t *out)
{
    const gguf_kv_t *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_VT_ARRAY || kv->elem != GGUF_VT_STRING || j >= kv->n)
        return false;
    *out = str_at(kv->val + kv->str_offs[j]);
    return true;
}

bool gguf_arr_f32_at(const gguf_t *g, size_t i, uint64_t j, float *out)
{
    const gguf_kv_t *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_VT_ARRAY || j >= kv->n)
        return false;
    double d;
    if (!to_f64(kv->elem, kv->val + j * gguf_vtype_size(kv->elem), &d))
        return false;
    *out = (float)d;
    return true;
}

bool gguf_arr_i64_at(const gguf_t *g, size_t i, uint64_t j, int64_t *out)
{
    const gguf_kv_t *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_VT_ARRAY || j >= kv->n || !vt_is_int(kv->elem))
        return false;
    return to_i64(kv->elem, kv->val + j * gguf_vtype_size(kv->elem), out);
}

const void *gguf_arr_data(const gguf_t *g, size_t i, gguf_vtype_t *elem, uint64_t *n)
{
    const gguf_kv_t *kv = kv_at(g, i);
    if (!kv || kv->type != GGUF_VT_ARRAY || kv->elem == GGUF_VT_STRING)
        return NULL;
    if (elem)
        *elem = kv->elem;
    if (n)
        *n = kv->n;
    return kv->val;
}

void gguf_kv_raw(const gguf_t *g, size_t i, const void **data, size_t *len)
{
    const gguf_kv_t *kv = kv_at(g, i);
    *data = kv ? kv->raw : NULL;
    *len = kv ? kv->raw_len : 0;
}

/* ---- getters by key ---- */

static bool find_idx(const gguf_t *g, const char *key, size_t *i)
{
    int64_t k = gguf_find(g, key);
    if (k < 0)
        return false;
    *i = (size_t)k;
    return true;
}

bool gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out)
{
    size_t i;
    uint64_t v;
    if (!find_idx(g, key, &i) || !gguf_kv_u64(g, i, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out)
{
    size_t i;
    return find_idx(g, key, &i) && gguf_kv_u64(g, i, out);
}

bool gguf_get_i64(const gguf_t *g, const char *key, int64_t *out)
{
    size_t i;
    return find_idx(g, key, &i) && gguf_kv_i64(g, i, out);
}

bool gguf_get_f32(const gguf_t *g, const char *key, float *out)
{
    size_t i;
    double d;
    if (!find_idx(g, key, &i) || !gguf_kv_f64(g, i, &d))
        return false;
    *out = (float)d;
    return true;
}

bool gguf_get_bool(const gguf_t *g, const char *key, bool *out)
{
    size_t i;
    return find_idx(g, key, &i) && gguf_kv_bool(g, i, out);
}

bool gguf_get_str(const gguf_t *g, const char *key, sy_slice_t *out)
{
    size_t i;
    return find_idx(g, key, &i) && gguf_kv_str(g, i, out);
}

bool gguf_get_arr(const gguf_t *g, const char *key, gguf_vtype_t *elem, uint64_t *n)
{
    size_t i;
    return find_idx(g, key, &i) && gguf_kv_arr(g, i, elem, n);
}

bool gguf_arr_str(const gguf_t *g, const char *key, uint64_t i, sy_slice_t *out)
{
    size_t k;
    return find_idx(g, key, &k) && gguf_arr_str_at(g, k, i, out);
}

bool gguf_arr_f32(const gguf_t *g, const char *key, uint64_t i, float *out)
{
    size_t k;
    return find_idx(g, key, &k) && gguf_arr_f32_at(g, k, i, out);
}

bool gguf_arr_i64(const gguf_t *g, const char *key, uint64_t i, int64_t *out)
{
    size_t k;
    return find_idx(g, key, &k) && gguf_arr_i64_at(g, k, i, out);
}

/* ---- tensors ---- */

size_t gguf_n_tensors(const gguf_t *g)
{
    return g->n_tensors;
}

const gguf_tensor_t *gguf_tensor(const gguf_t *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name)
{
    if (!name || !g->t_hash)
        return NULL;
    size_t len = strlen(name);
    size_t mask = g->t_hash_cap - 1;
    for (size_t h = (size_t)hash_bytes(name, len) & mask;; h = (h + 1) & mask) {
        size_t e = g->t_hash[h];
        if (e == 0)
            return NULL;
        const gguf_tensor_t *t = &g->tensors[e - 1];
        if (t->name.len == len && memcmp(t->name.ptr, name, len) == 0)
            return t;
    }
}
