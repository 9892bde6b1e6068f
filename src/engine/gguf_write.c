/*
 * gguf_write.c - GGUF v3 writer and F32 converters (see gguf_write.h).
 *
 * Metadata is encoded into one growing buffer as it is added (key, type, value: exactly the file
 * bytes), with a list of key offsets for the duplicate check. Tensor descriptors are kept as
 * structs; their offsets are assigned at write time. Output goes through a tiny sink (FILE or
 * sy_buf) so the file and memory paths share one encoder.
 * Does not: read or validate GGUF input (ggufw_add_raw trusts its bytes).
 * Thread-safety: a writer belongs to one thread; converters are pure.
 */
#include "engine/gguf_write.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/half.h"
#include "common/status.h"

#define GGUFW_MAX_NAME 64u

typedef struct ggufw_tensor {
    char *name;
    gguf_ttype_t type;
    uint32_t n_dims;
    uint64_t ne[4];
    size_t n_bytes;
    const void *data; /* borrowed, or NULL: filled at write time */
} ggufw_tensor_t;

struct ggufw {
    sy_buf_t kv; /* encoded metadata pairs */
    uint64_t n_kv;
    size_t *key_offs; /* offset in kv of each pair (its key length field) */
    size_t key_cap;
    ggufw_tensor_t *t;
    size_t n_t, t_cap;
    uint32_t alignment;
    bool alignment_set;
};

ggufw_t *ggufw_create(void)
{
    ggufw_t *w = sy_calloc(1, sizeof *w);
    if (w)
        w->alignment = 32;
    return w;
}

void ggufw_destroy(ggufw_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_t; i++)
        sy_free(w->t[i].name);
    sy_free(w->t);
    sy_free(w->key_offs);
    sy_buf_deinit(&w->kv);
    sy_free(w);
}

/* ---- metadata ---- */

static bool key_exists(const ggufw_t *w, const char *key, size_t len)
{
    for (uint64_t i = 0; i < w->n_kv; i++) {
        uint64_t n;
        memcpy(&n, w->kv.data + w->key_offs[i], 8);
        if (n == len && memcmp(w->kv.data + w->key_offs[i] + 8, key, len) == 0)
            return true;
    }
    return false;
}

/* Appends key and type; the caller appends the value. On error nothing is left behind. */
static int kv_begin(ggufw_t *w, const char *key, gguf_vtype_t type)
{
    size_t len = key ? strlen(key) : 0;
    if (len == 0)
        return ST_INVAL;
    if (key_exists(w, key, len))
        return ST_EXISTS;
    if (w->n_kv == w->key_cap) {
        size_t cap = w->key_cap ? w->key_cap * 2 : 16;
        size_t *p = sy_realloc(w->key_offs, cap * sizeof *p);
        if (!p)
            return ST_NOMEM;
        w->key_offs = p;
        w->key_cap = cap;
    }
    size_t at = w->kv.len;
    uint64_t n = len;
    uint32_t t = (uint32_t)type;
    if (sy_buf_append(&w->kv, &n, 8) != ST_OK || sy_buf_append(&w->kv, key, len) != ST_OK ||
        sy_buf_append(&w->kv, &t, 4) != ST_OK) {
        w->kv.len = at;
        return ST_NOMEM;
    }
    w->key_offs[w->n_kv] = at;
    return ST_OK;
}

/* Commits the pair begun at the last kv_begin, or rolls it back when rc is an error. */
static int kv_end(ggufw_t *w, int rc)
{
    if (rc != ST_OK) {
        w->kv.len = w->key_offs[w->n_kv];
        return rc;
    }
    w->n_kv++;
    return ST_OK;
}

static int add_scalar(ggufw_t *w, const char *key, gguf_vtype_t t, const void *v, size_t n)
{
    int rc = kv_begin(w, key, t);
    if (rc != ST_OK)
        return rc;
    return kv_end(w, sy_buf_append(&w->kv, v, n));
}

int ggufw_add_u8(ggufw_t *w, const char *key, uint8_t v)
{
    return add_scalar(w, key, GGUF_VT_UINT8, &v, 1);
}

int ggufw_add_i8(ggufw_t *w, const char *key, int8_t v)
{
    return add_scalar(w, key, GGUF_VT_INT8, &v, 1);
}

int ggufw_add_u16(ggufw_t *w, const char *key, uint16_t v)
{
    return add_scalar(w, key, GGUF_VT_UINT16, &v, 2);
}

int ggufw_add_i16(ggufw_t *w, const char *key, int16_t v)
{
    return add_scalar(w, key, GGUF_VT_INT16, &v, 2);
}

int ggufw_add_u32(ggufw_t *w, const char *key, uint32_t v)
{
    return add_scalar(w, key, GGUF_VT_UINT32, &v, 4);
}

int ggufw_add_i32(ggufw_t *w, const char *key, int32_t v)
{
    return add_scalar(w, key, GGUF_VT_INT32, &v, 4);
}

int ggufw_add_u64(ggufw_t *w, const char *key, uint64_t v)
{
    return add_scalar(w, key, GGUF_VT_UINT64, &v, 8);
}

int ggufw_add_i64(ggufw_t *w, const char *key, int64_t v)
{
    return add_scalar(w, key, GGUF_VT_INT64, &v, 8);
}

int ggufw_add_f32(ggufw_t *w, const char *key, float v)
{
    return add_scalar(w, key, GGUF_VT_FLOAT32, &v, 4);
}

int ggufw_add_f64(ggufw_t *w, const char *key, double v)
{
    return add_scalar(w, key, GGUF_VT_FLOAT64, &v, 8);
}

int ggufw_add_bool(ggufw_t *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return add_scalar(w, key, GGUF_VT_BOOL, &b, 1);
}

static int put_str(sy_buf_t *b, const char *s, size_t len)
{
    uint64_t n = len;
    int rc = sy_buf_append(b, &n, 8);
    if (rc == ST_OK && len)
        rc = sy_buf_append(b, s, len);
    return rc;
}

int ggufw_add_str(ggufw_t *w, const char *key, const char *s, size_t len)
{
    int rc = kv_begin(w, key, GGUF_VT_STRING);
    if (rc != ST_OK)
        return rc;
    return kv_end(w, put_str(&w->kv, s, len));
}

int ggufw_add_arr(ggufw_t *w, const char *key, gguf_vtype_t elem, const void *elems, uint64_t n)
{
    size_t es = gguf_vtype_size(elem);
    if (es == 0 || n > SIZE_MAX / es || (n && !elems))
        return ST_INVAL;
    int rc = kv_begin(w, key, GGUF_VT_ARRAY);
    if (rc != ST_OK)
        return rc;
    uint32_t et = (uint32_t)elem;
    rc = sy_buf_append(&w->kv, &et, 4);
    if (rc == ST_OK)
        rc = sy_buf_append(&w->kv, &n, 8);
    if (rc == ST_OK && n)
        rc = sy_buf_append(&w->kv, elems, (size_t)n * es);
    return kv_end(w, rc);
}

int ggufw_add_arr_str(ggufw_t *w, const char *key, const sy_slice_t *strs, uint64_t n)
{
    if (n && !strs)
        return ST_INVAL;
    int rc = kv_begin(w, key, GGUF_VT_ARRAY);
    if (rc != ST_OK)
        return rc;
    uint32_t et = GGUF_VT_STRING;
    rc = sy_buf_append(&w->kv, &et, 4);
    if (rc == ST_OK)
        rc = sy_buf_append(&w->kv, &n, 8);
    for (uint64_t i = 0; rc == ST_OK && i < n; i++)
        rc = put_str(&w->kv, strs[i].ptr, strs[i].len);
    return kv_end(w, rc);
}

int ggufw_add_raw(ggufw_t *w, const char *key, gguf_vtype_t type, const void *val, size_t len)
{
    if (len && !val)
        return ST_INVAL;
    int rc = kv_begin(w, key, type);
    if (rc != ST_OK)
        return rc;
    return kv_end(w, len ? sy_buf_append(&w->kv, val, len) : ST_OK);
}

int ggufw_set_alignment(ggufw_t *w, uint32_t alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || w->n_t > 0)
        return ST_INVAL;
    if (w->alignment_set)
        return ST_EXISTS;
    int rc = ggufw_add_u32(w, "general.alignment", alignment);
    if (rc != ST_OK)
        return rc;
    w->alignment = alignment;
    w->alignment_set = true;
    return ST_OK;
}

/* ---- tensors ---- */

size_t ggufw_tensor_bytes(gguf_ttype_t t, uint64_t n_elems)
{
    uint32_t be, bb;
    if (!gguf_ttype_block(t, &be, &bb) || n_elems % be != 0)
        return 0;
    uint64_t bytes;
    if (__builtin_mul_overflow(n_elems / be, (uint64_t)bb, &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

int ggufw_add_tensor(ggufw_t *w, const char *name, gguf_ttype_t type, uint32_t n_dims,
                     const uint64_t *ne, const void *data)
{
    size_t len = name ? strlen(name) : 0;
    uint32_t be, bb;
    if (len == 0 || len > GGUFW_MAX_NAME || n_dims < 1 || n_dims > 4 || !ne ||
        !gguf_ttype_block(type, &be, &bb))
        return ST_INVAL;
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || __builtin_mul_overflow(n_elems, ne[d], &n_elems))
            return ST_INVAL;
    }
    if (ne[0] % be != 0)
        return ST_INVAL;
    size_t n_bytes = ggufw_tensor_bytes(type, n_elems);
    if (n_bytes == 0)
        return ST_INVAL;
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return ST_EXISTS;
    }
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? w->t_cap * 2 : 16;
        ggufw_tensor_t *p = sy_realloc(w->t, cap * sizeof *p);
        if (!p)
            return ST_NOMEM;
        w->t = p;
        w->t_cap = cap;
    }
    ggufw_tensor_t *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = sy_strdup(name);
    if (!t->name)
        return ST_NOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->n_bytes = n_bytes;
    t->data = data;
    w->n_t++;
    return ST_OK;
}

size_t ggufw_n_tensors(const ggufw_t *w)
{
    return w->n_t;
}

/* ---- output ---- */

typedef struct sink {
    FILE *f;
    sy_buf_t *b;
    uint64_t pos;
    int err; /* first error: -errno or ST_NOMEM */
} sink_t;

static void sink_put(sink_t *s, const void *p, size_t n)
{
    if (s->err || n == 0)
        return;
    if (s->f) {
        if (fwrite(p, 1, n, s->f) != n)
            s->err = errno ? -errno : -EIO;
    } else if (sy_buf_append(s->b, p, n) != ST_OK) {
        s->err = ST_NOMEM;
    }
    s->pos += n;
}

static void sink_pad(sink_t *s, uint64_t alignment)
{
    static const uint8_t zeros[64];
    uint64_t pad = (alignment - s->pos % alignment) % alignment;
    while (pad > 0 && !s->err) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        sink_put(s, zeros, n);
        pad -= n;
    }
}

static int write_all(ggufw_t *w, sink_t *s, ggufw_fill_fn fill, void *udata, char *err,
                     size_t errlen)
{
    uint32_t version = 3;
    uint64_t n_t = w->n_t;
    sink_put(s, "GGUF", 4);
    sink_put(s, &version, 4);
    sink_put(s, &n_t, 8);
    sink_put(s, &w->n_kv, 8);
    sink_put(s, w->kv.data, w->kv.len);
    uint64_t off = 0, a = w->alignment;
    size_t scratch_bytes = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const ggufw_tensor_t *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t type = (uint32_t)t->type;
        sink_put(s, &len, 8);
        sink_put(s, t->name, (size_t)len);
        sink_put(s, &t->n_dims, 4);
        sink_put(s, t->ne, 8 * (size_t)t->n_dims);
        sink_put(s, &type, 4);
        sink_put(s, &off, 8);
        off = (off + t->n_bytes + a - 1) / a * a;
        if (!t->data && t->n_bytes > scratch_bytes)
            scratch_bytes = t->n_bytes;
    }
    if (scratch_bytes && !fill) {
        sy_errf(err, errlen, "a tensor has no data and no fill callback was given");
        return ST_INVAL;
    }
    void *scratch = NULL;
    if (scratch_bytes) {
        scratch = sy_malloc(scratch_bytes);
        if (!scratch) {
            sy_errf(err, errlen, "out of memory for a %zu-byte tensor buffer", scratch_bytes);
            return ST_NOMEM;
        }
    }
    int rc = ST_OK;
    if (w->n_t)
        sink_pad(s, a);
    for (size_t i = 0; i < w->n_t && !s->err; i++) {
        const ggufw_tensor_t *t = &w->t[i];
        const void *data = t->data;
        if (!data) {
            rc = fill(udata, i, scratch, t->n_bytes);
            if (rc != ST_OK) {
                sy_errf(err, errlen, "producing tensor '%s' failed: %s", t->name, st_str(rc));
                break;
            }
            data = scratch;
        }
        sink_put(s, data, t->n_bytes);
        if (i + 1 < w->n_t)
            sink_pad(s, a);
    }
    sy_free(scratch);
    if (rc == ST_OK && s->err) {
        rc = s->err;
        sy_errf(err, errlen, "write failed: %s", st_str(rc));
    }
    return rc;
}

int ggufw_write_mem(ggufw_t *w, sy_buf_t *out, ggufw_fill_fn fill, void *udata)
{
    sink_t s = {.b = out};
    return write_all(w, &s, fill, udata, NULL, 0);
}

int ggufw_write_file(ggufw_t *w, const char *path, ggufw_fill_fn fill, void *udata, char *err,
                     size_t errlen)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        sy_errf(err, errlen, "path too long: %s", path);
        return ST_INVAL;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "cannot create %s: %s", tmp, strerror(e));
        return -e;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    sink_t s = {.f = f};
    int rc = write_all(w, &s, fill, udata, err, errlen);
    if (fflush(f) != 0 && rc == ST_OK) {
        rc = -errno;
        sy_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (fclose(f) != 0 && rc == ST_OK) {
        rc = -errno;
        sy_errf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
    }
    if (rc == ST_OK && rename(tmp, path) != 0) {
        rc = -errno;
        sy_errf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    }
    if (rc != ST_OK)
        unlink(tmp);
    return rc;
}

/* ---- converters ---- */

void ggufw_f32_to_f16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = sy_half_f32_to_f16(x[i]);
}

void ggufw_f32_to_bf16(const float *x, uint16_t *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = sy_half_f32_to_bf16(x[i]);
}

void ggufw_quantize_q8_0(const float *x, void *dst, size_t n)
{
    uint8_t *out = dst;
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[j]);
            if (a > amax)
                amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = sy_half_f32_to_f16(d);
        memcpy(out, &dh, 2);
        for (int j = 0; j < 32; j++) {
            float q = roundf(x[j] * id);
            out[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

void ggufw_quantize_q4_0(const float *x, void *dst, size_t n)
{
    uint8_t *out = dst;
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = sy_half_f32_to_f16(d);
        memcpy(out, &dh, 2);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f);
            int q1 = (int)(int8_t)(x[16 + j] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            out[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void ggufw_dequantize_q8_0(const void *src, float *y, size_t n)
{
    const uint8_t *in = src;
    for (size_t b = 0; b < n / 32; b++, in += 34, y += 32) {
        uint16_t dh;
        memcpy(&dh, in, 2);
        float d = sy_half_f16_to_f32(dh);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)in[2 + j] * d;
    }
}

void ggufw_dequantize_q4_0(const void *src, float *y, size_t n)
{
    const uint8_t *in = src;
    for (size_t b = 0; b < n / 32; b++, in += 18, y += 32) {
        uint16_t dh;
        memcpy(&dh, in, 2);
        float d = sy_half_f16_to_f32(dh);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((in[2 + j] & 0x0f) - 8) * d;
            y[16 + j] = (float)((in[2 + j] >> 4) - 8) * d;
        }
    }
}
