/*
 * kv_decode.c - KV-event payload decoder (contract in kv_decode.h).
 *
 * Two passes over the bytes:
 *   1. mp_check walks the raw msgpack once without recursion, keeping only the number of items
 *      still owed by open containers. It rejects truncation, the reserved byte 0xc1, trailing
 *      bytes, and any container header whose element count exceeds the bytes left (each element
 *      needs at least one byte). msgpack-c allocates a container's whole object array when it
 *      reads its header, so without this a 5-byte "array of 2^32" would ask for ~100 GB; after
 *      it, the objects msgpack-c builds number at most one per payload byte.
 *   2. msgpack_unpack_next builds the object tree (strings and bins stay in the payload), and
 *      the batch/event walkers read it with a type check on every field.
 * Hashes and token ids of all events go into two growable arrays of the batch; events keep
 * offsets while decoding and get their pointers at the end (the arrays may move when they grow).
 * Thread-safety: reentrant; the batch belongs to the caller.
 */
#include "gateway/kv_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"

#define KVD_MAX_BLOCK_SIZE (1u << 20)

typedef enum kvd_field {
    F_NONE = 0,
    F_HASHES,
    F_PARENT,
    F_TOKENS,
    F_BLOCK_SIZE,
    F_LORA_ID,
    F_MEDIUM,
    F_LORA_NAME,
    F_EXTRA_KEYS,
    F_GROUP_IDX,
} kvd_field_t;

/* Legacy tagged-array field order (position 0 is the tag). */
static const kvd_field_t stored_pos[] = {F_NONE,       F_HASHES,   F_PARENT, F_TOKENS,
                                         F_BLOCK_SIZE, F_LORA_ID,  F_MEDIUM, F_LORA_NAME,
                                         F_EXTRA_KEYS, F_GROUP_IDX};
static const kvd_field_t removed_pos[] = {F_NONE, F_HASHES, F_MEDIUM, F_GROUP_IDX};

static const struct {
    const char *name;
    kvd_field_t f;
} field_names[] = {
    {"block_hashes", F_HASHES},   {"parent_block_hash", F_PARENT}, {"token_ids", F_TOKENS},
    {"block_size", F_BLOCK_SIZE}, {"lora_id", F_LORA_ID},          {"medium", F_MEDIUM},
    {"lora_name", F_LORA_NAME},   {"extra_keys", F_EXTRA_KEYS},    {"group_idx", F_GROUP_IDX},
};

typedef struct kvd_ctx {
    kvd_batch_t *b;
    const kvd_limits_t *lim;
} kvd_ctx_t;

/* ------------------------------------------------------------------ helpers */

uint64_t kvd_be64_get(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

void kvd_be64_put(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
}

const char *kvd_type_name(kvd_type_t t)
{
    switch (t) {
    case KVD_BLOCK_STORED:
        return "BlockStored";
    case KVD_BLOCK_REMOVED:
        return "BlockRemoved";
    case KVD_ALL_CLEARED:
        return "AllBlocksCleared";
    }
    return "?";
}

static int fail(kvd_ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(kvd_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->b->err, sizeof(c->b->err), fmt, ap);
    va_end(ap);
    return ST_PROTO;
}

static bool str_is(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

static bool is_int(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return ST_OK;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    void *p = sy_realloc(*arr, ncap * elem);
    if (!p)
        return ST_NOMEM;
    *arr = p;
    *cap = ncap;
    return ST_OK;
}

/* ------------------------------------------------------------ structure check */

/* Reads an n-byte big-endian length at p[*off] (bounds-checked). */
static bool rd_len(const uint8_t *p, size_t len, size_t *off, int n, uint64_t *out)
{
    if ((size_t)n > len - *off)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[*off + (size_t)i];
    *off += (size_t)n;
    *out = v;
    return true;
}

/* True if p[0..len) is exactly one complete msgpack object whose container counts are backed by
 * bytes (see the file comment). */
static bool mp_check(const uint8_t *p, size_t len)
{
    size_t off = 0;
    uint64_t pending = 1;
    while (pending) {
        if (off >= len)
            return false;
        uint8_t c = p[off++];
        pending--;
        uint64_t skip = 0, add = 0, n = 0;
        if (c <= 0x7f || c >= 0xe0) {
            /* fixint */
        } else if (c <= 0x8f) {
            add = 2u * (c & 0x0fu);
        } else if (c <= 0x9f) {
            add = c & 0x0fu;
        } else if (c <= 0xbf) {
            skip = c & 0x1fu;
        } else {
            switch (c) {
            case 0xc0: /* nil, false, true */
            case 0xc2:
            case 0xc3:
                break;
            case 0xc4: /* bin8, str8 */
            case 0xd9:
                if (!rd_len(p, len, &off, 1, &skip))
                    return false;
                break;
            case 0xc5: /* bin16, str16 */
            case 0xda:
                if (!rd_len(p, len, &off, 2, &skip))
                    return false;
                break;
            case 0xc6: /* bin32, str32 */
            case 0xdb:
                if (!rd_len(p, len, &off, 4, &skip))
                    return false;
                break;
            case 0xc7: /* ext8/16/32: length, then the type byte */
            case 0xc8:
            case 0xc9:
                if (!rd_len(p, len, &off, c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4, &skip))
                    return false;
                skip += 1;
                break;
            case 0xca: /* float32/64 */
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc: /* uint8..64, int8..64 */
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4: /* fixext 1/2/4/8/16 (+ type byte) */
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc: /* array16/32, map16/32 */
            case 0xdd:
                if (!rd_len(p, len, &off, c == 0xdc ? 2 : 4, &n))
                    return false;
                add = n;
                break;
            case 0xde:
            case 0xdf:
                if (!rd_len(p, len, &off, c == 0xde ? 2 : 4, &n))
                    return false;
                add = 2 * n;
                break;
            default: /* 0xc1: never used */
                return false;
            }
        }
        if (skip > len - off)
            return false;
        off += (size_t)skip;
        pending += add;
        if (pending > len - off)
            return false;
    }
    return off == len;
}

/* ------------------------------------------------------------------ fields */

static int get_hash(kvd_ctx_t *c, const msgpack_object *o, uint64_t *out, const char *what)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = o->via.u64;
        return ST_OK;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (uint64_t)o->via.i64;
        return ST_OK;
    case MSGPACK_OBJECT_BIN:
        if (o->via.bin.size < 8 || o->via.bin.size > 64)
            return fail(c, "%s: bin hash of %u bytes", what, o->via.bin.size);
        *out = kvd_be64_get(o->via.bin.ptr + o->via.bin.size - 8);
        return ST_OK;
    default:
        return fail(c, "%s: hash has msgpack type %d", what, (int)o->type);
    }
}

static int set_hashes(kvd_ctx_t *c, kvd_event_t *ev, const msgpack_object *o)
{
    kvd_batch_t *b = c->b;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return fail(c, "block_hashes is not an array");
    size_t n = o->via.array.size;
    if (n > c->lim->max_hashes - b->_h_len)
        return fail(c, "more than %zu block hashes in one message", c->lim->max_hashes);
    if (grow((void **)&b->_hashes, &b->_h_cap, b->_h_len + n, sizeof(uint64_t)) != ST_OK)
        return ST_NOMEM;
    ev->_h_off = b->_h_len;
    ev->n_hashes = n;
    for (size_t i = 0; i < n; i++) {
        int st = get_hash(c, &o->via.array.ptr[i], &b->_hashes[b->_h_len + i], "block_hashes");
        if (st != ST_OK)
            return st;
    }
    b->_h_len += n;
    return ST_OK;
}

static int set_tokens(kvd_ctx_t *c, kvd_event_t *ev, const msgpack_object *o)
{
    kvd_batch_t *b = c->b;
    if (o->type == MSGPACK_OBJECT_NIL)
        return ST_OK;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return fail(c, "token_ids is not an array");
    size_t n = o->via.array.size;
    if (n > c->lim->max_tokens - b->_t_len)
        return fail(c, "more than %zu token ids in one message", c->lim->max_tokens);
    if (grow((void **)&b->_tokens, &b->_t_cap, b->_t_len + n, sizeof(int32_t)) != ST_OK)
        return ST_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *t = &o->via.array.ptr[i];
        if (t->type == MSGPACK_OBJECT_POSITIVE_INTEGER && t->via.u64 <= INT32_MAX)
            b->_tokens[b->_t_len + i] = (int32_t)t->via.u64;
        else if (t->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && t->via.i64 >= INT32_MIN)
            b->_tokens[b->_t_len + i] = (int32_t)t->via.i64;
        else
            return fail(c, "token_ids[%zu] is not an int32", i);
    }
    ev->has_tokens = true;
    ev->_t_off = b->_t_len;
    ev->n_tokens = n;
    b->_t_len += n;
    return ST_OK;
}

static int set_str(kvd_ctx_t *c, sy_slice_t *out, const msgpack_object *o, const char *what)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return ST_OK;
    if (o->type != MSGPACK_OBJECT_STR)
        return fail(c, "%s is not a string", what);
    out->ptr = o->via.str.ptr;
    out->len = o->via.str.size;
    return ST_OK;
}

static int set_field(kvd_ctx_t *c, kvd_event_t *ev, kvd_field_t f, const msgpack_object *o)
{
    switch (f) {
    case F_NONE:
        return ST_OK;
    case F_HASHES:
        return set_hashes(c, ev, o);
    case F_PARENT:
        if (o->type == MSGPACK_OBJECT_NIL)
            return ST_OK;
        ev->has_parent = true;
        return get_hash(c, o, &ev->parent, "parent_block_hash");
    case F_TOKENS:
        return set_tokens(c, ev, o);
    case F_BLOCK_SIZE:
        if (o->type == MSGPACK_OBJECT_NIL)
            return ST_OK;
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > KVD_MAX_BLOCK_SIZE)
            return fail(c, "block_size is not an integer in [0, %u]", KVD_MAX_BLOCK_SIZE);
        ev->block_size = (uint32_t)o->via.u64;
        return ST_OK;
    case F_LORA_ID:
        ev->has_lora_id = o->type != MSGPACK_OBJECT_NIL;
        return ST_OK;
    case F_MEDIUM:
        return set_str(c, &ev->medium, o, "medium");
    case F_LORA_NAME:
        return set_str(c, &ev->lora_name, o, "lora_name");
    case F_EXTRA_KEYS:
        ev->has_extra0 = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > 0 &&
                         o->via.array.ptr[0].type != MSGPACK_OBJECT_NIL;
        return ST_OK;
    case F_GROUP_IDX:
        if (o->type == MSGPACK_OBJECT_NIL)
            return ST_OK;
        if (!is_int(o))
            return fail(c, "group_idx is not an integer");
        ev->group_idx =
            o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? o->via.i64 : (int64_t)o->via.u64;
        return ST_OK;
    }
    return ST_OK;
}

static kvd_field_t field_by_name(const msgpack_object *key)
{
    if (key->type != MSGPACK_OBJECT_STR)
        return F_NONE;
    for (size_t i = 0; i < sizeof(field_names) / sizeof(field_names[0]); i++)
        if (str_is(key, field_names[i].name))
            return field_names[i].f;
    return F_NONE;
}

/* ------------------------------------------------------------------ events */

/* Maps a tag to a type; 0 for an unknown tag. */
static kvd_type_t type_of_tag(const msgpack_object *tag)
{
    if (str_is(tag, "BlockStored"))
        return KVD_BLOCK_STORED;
    if (str_is(tag, "BlockRemoved"))
        return KVD_BLOCK_REMOVED;
    if (str_is(tag, "AllBlocksCleared"))
        return KVD_ALL_CLEARED;
    return (kvd_type_t)0;
}

/* Decodes one event into ev. *known = false for an unknown tag (ev untouched otherwise). */
static int decode_event(kvd_ctx_t *c, const msgpack_object *o, kvd_event_t *ev, bool *known)
{
    memset(ev, 0, sizeof(*ev));
    *known = false;
    const msgpack_object *tag = NULL;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        if (o->via.array.size == 0)
            return fail(c, "empty event array");
        tag = &o->via.array.ptr[0];
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (str_is(&o->via.map.ptr[i].key, "type"))
                tag = &o->via.map.ptr[i].val;
        if (!tag)
            return fail(c, "event map without \"type\"");
    } else {
        return fail(c, "event has msgpack type %d", (int)o->type);
    }
    if (tag->type != MSGPACK_OBJECT_STR)
        return fail(c, "event tag is not a string");
    ev->type = type_of_tag(tag);
    if (ev->type == 0)
        return ST_OK; /* unknown tag: skipped */
    *known = true;

    bool have_hashes = false;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        const kvd_field_t *pos = ev->type == KVD_BLOCK_STORED ? stored_pos : removed_pos;
        size_t npos = ev->type == KVD_BLOCK_STORED    ? sizeof(stored_pos) / sizeof(stored_pos[0])
                      : ev->type == KVD_BLOCK_REMOVED ? sizeof(removed_pos) / sizeof(removed_pos[0])
                                                      : 1;
        for (size_t i = 1; i < o->via.array.size && i < npos; i++) {
            int st = set_field(c, ev, pos[i], &o->via.array.ptr[i]);
            if (st != ST_OK)
                return st;
            have_hashes |= pos[i] == F_HASHES;
        }
    } else if (ev->type != KVD_ALL_CLEARED) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            kvd_field_t f = field_by_name(&o->via.map.ptr[i].key);
            if (ev->type == KVD_BLOCK_REMOVED && f != F_HASHES && f != F_MEDIUM && f != F_GROUP_IDX)
                f = F_NONE;
            if (f == F_HASHES && have_hashes)
                return fail(c, "duplicate block_hashes");
            int st = set_field(c, ev, f, &o->via.map.ptr[i].val);
            if (st != ST_OK)
                return st;
            have_hashes |= f == F_HASHES;
        }
    }
    if (ev->type != KVD_ALL_CLEARED && !have_hashes)
        return fail(c, "%s without block_hashes", kvd_type_name(ev->type));
    return ST_OK;
}

static int decode_events(kvd_ctx_t *c, const msgpack_object *o)
{
    kvd_batch_t *b = c->b;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return fail(c, "events is not an array");
    size_t n = o->via.array.size;
    if (n > c->lim->max_events)
        return fail(c, "%zu events exceed the cap of %zu", n, c->lim->max_events);
    if (grow((void **)&b->_ev, &b->_ev_cap, n, sizeof(kvd_event_t)) != ST_OK)
        return ST_NOMEM;
    for (size_t i = 0; i < n; i++) {
        bool known;
        int st = decode_event(c, &o->via.array.ptr[i], &b->_ev[b->n_events], &known);
        if (st != ST_OK)
            return st;
        if (known)
            b->n_events++;
        else
            b->n_unknown++;
    }
    return ST_OK;
}

static double num_of(const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return o->via.f64;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return (double)o->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return (double)o->via.i64;
    default:
        return 0;
    }
}

static int decode_root(kvd_ctx_t *c, const msgpack_object *root)
{
    kvd_batch_t *b = c->b;
    const msgpack_object *ts = NULL, *events = NULL, *rank = NULL;
    if (root->type == MSGPACK_OBJECT_ARRAY) {
        if (root->via.array.size < 2)
            return fail(c, "batch array has %u elements", root->via.array.size);
        ts = &root->via.array.ptr[0];
        events = &root->via.array.ptr[1];
        if (root->via.array.size > 2)
            rank = &root->via.array.ptr[2];
    } else if (root->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < root->via.map.size; i++) {
            const msgpack_object *k = &root->via.map.ptr[i].key;
            const msgpack_object *v = &root->via.map.ptr[i].val;
            if (str_is(k, "ts"))
                ts = v;
            else if (str_is(k, "events"))
                events = v;
            else if (str_is(k, "data_parallel_rank"))
                rank = v;
        }
        if (!events)
            return fail(c, "batch map without \"events\"");
    } else {
        return fail(c, "batch has msgpack type %d", (int)root->type);
    }
    if (ts && ts->type != MSGPACK_OBJECT_NIL && ts->type != MSGPACK_OBJECT_FLOAT32 &&
        ts->type != MSGPACK_OBJECT_FLOAT64 && !is_int(ts))
        return fail(c, "batch ts is not a number");
    b->ts = ts ? num_of(ts) : 0;
    if (rank && is_int(rank))
        b->dp_rank = rank->via.i64;
    return decode_events(c, events);
}

/* ------------------------------------------------------------------ public */

void kvd_limits_default(kvd_limits_t *lim)
{
    lim->max_payload = KVD_DEFAULT_MAX_PAYLOAD;
    lim->max_events = KVD_DEFAULT_MAX_EVENTS;
    lim->max_hashes = KVD_DEFAULT_MAX_HASHES;
    lim->max_tokens = KVD_DEFAULT_MAX_TOKENS;
}

void kvd_batch_init(kvd_batch_t *b)
{
    memset(b, 0, sizeof(*b));
}

void kvd_batch_deinit(kvd_batch_t *b)
{
    if (!b)
        return;
    if (b->_u_live)
        msgpack_unpacked_destroy(&b->_u);
    sy_free(b->_ev);
    sy_free(b->_hashes);
    sy_free(b->_tokens);
    memset(b, 0, sizeof(*b));
}

int kvd_decode(kvd_batch_t *b, const void *payload, size_t len, const kvd_limits_t *lim)
{
    kvd_limits_t def;
    if (!lim) {
        kvd_limits_default(&def);
        lim = &def;
    }
    kvd_ctx_t c = {b, lim};
    if (b->_u_live) {
        msgpack_unpacked_destroy(&b->_u);
        b->_u_live = false;
    }
    b->ts = 0;
    b->dp_rank = 0;
    b->events = NULL;
    b->n_events = b->n_unknown = 0;
    b->_h_len = b->_t_len = 0;
    b->err[0] = '\0';

    if (len == 0 || !payload)
        return fail(&c, "empty payload");
    if (len > lim->max_payload)
        return fail(&c, "payload of %zu bytes exceeds the cap of %zu", len, lim->max_payload);
    if (!mp_check(payload, len))
        return fail(&c, "malformed msgpack (truncated, oversized container or trailing bytes)");

    size_t off = 0;
    msgpack_unpacked_init(&b->_u);
    b->_u_live = true;
    msgpack_unpack_return r = msgpack_unpack_next(&b->_u, payload, len, &off);
    /* msgpack-c reports nesting deeper than MSGPACK_EMBED_STACK_SIZE (32) as NOMEM too */
    if (r == MSGPACK_UNPACK_NOMEM_ERROR)
        return fail(&c, "msgpack nesting too deep (or out of memory)");
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        return fail(&c, "msgpack unpack failed (%d)", (int)r);

    int st = decode_root(&c, &b->_u.data);
    if (st != ST_OK) {
        b->n_events = 0;
        b->n_unknown = 0;
        return st;
    }
    for (size_t i = 0; i < b->n_events; i++) {
        kvd_event_t *ev = &b->_ev[i];
        ev->hashes = ev->n_hashes ? b->_hashes + ev->_h_off : NULL;
        ev->token_ids = ev->n_tokens ? b->_tokens + ev->_t_off : NULL;
    }
    b->events = b->_ev;
    return ST_OK;
}

int kvd_check_framing(size_t n_frames, const void *seq_frame, size_t seq_len, uint64_t *seq)
{
    if (n_frames != 3 || seq_len != 8 || !seq_frame)
        return ST_PROTO;
    *seq = kvd_be64_get(seq_frame);
    return ST_OK;
}
