/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader (gguf_open_mem). Any input must be either
 * refused with ST_PROTO and a non-empty message, or accepted; an accepted file is then walked
 * completely (every key, every scalar and array element through the getters, every tensor's first
 * and last data byte), so a descriptor that points outside the input shows up under ASan. The
 * reader never allocates more than a small multiple of the input, so ST_NOMEM is a bug too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "engine/gguf.h"

static volatile uint64_t sink;

static void walk(const gguf_t *g, size_t size)
{
    uint64_t acc = gguf_version(g) + gguf_alignment(g) + gguf_data_offset(g);
    for (size_t i = 0; i < gguf_n_kv(g); i++) {
        sy_slice_t k = gguf_key(g, i);
        if (k.len == 0 || gguf_find(g, "") >= 0)
            abort();
        acc += (uint8_t)k.ptr[0] + (uint8_t)k.ptr[k.len - 1];
        uint64_t u;
        int64_t v;
        double d;
        bool b;
        sy_slice_t s;
        if (gguf_kv_u64(g, i, &u))
            acc += u;
        if (gguf_kv_i64(g, i, &v))
            acc += (uint64_t)v;
        if (gguf_kv_f64(g, i, &d))
            acc += d > 0;
        if (gguf_kv_bool(g, i, &b))
            acc += b;
        if (gguf_kv_str(g, i, &s) && s.len)
            acc += (uint8_t)s.ptr[s.len - 1];
        const void *raw;
        size_t rl;
        gguf_kv_raw(g, i, &raw, &rl);
        if (rl > size)
            abort();
        gguf_vtype_t et;
        uint64_t n;
        if (gguf_kv_arr(g, i, &et, &n)) {
            if (n > size)
                abort(); /* every element takes at least one byte */
            for (uint64_t j = 0; j < n; j++) {
                float f;
                if (gguf_arr_str_at(g, i, j, &s) && s.len)
                    acc += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
                if (gguf_arr_f32_at(g, i, j, &f))
                    acc += f > 0;
                if (gguf_arr_i64_at(g, i, j, &v))
                    acc += (uint64_t)v;
            }
            if (gguf_arr_str_at(g, i, n, &s))
                abort();
        }
    }
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_t *t = gguf_tensor(g, i);
        if (t->n_dims < 1 || t->n_dims > 4 || t->n_bytes == 0 || t->n_bytes > size)
            abort();
        if ((uintptr_t)t->offset % gguf_alignment(g) != 0)
            abort();
        const uint8_t *p = t->data;
        acc += p[0] + p[t->n_bytes - 1];
        char name[80];
        if (t->name.len >= sizeof name)
            abort();
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (gguf_find_tensor(g, name) != t)
            abort();
    }
    sink = acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_t *g = NULL;
    char err[256];
    err[0] = '\0';
    int rc = gguf_open_mem(data, size, &g, err, sizeof err);
    if (rc == ST_OK) {
        walk(g, size);
        gguf_close(g);
        return 0;
    }
    if (rc != ST_PROTO || g != NULL || err[0] == '\0')
        abort();
    return 0;
}
