/*
 * kv_events_testutil.h - helpers shared by the KV-event unit tests: a ZMQ SUB that receives the
 * publisher's 3-frame messages with timeouts, a bounded wait for the PUB/SUB subscription to be
 * live (slow joiner), and msgpack-c lookups for decoding payloads.
 * Header-only (static inline) so each test binary stays one .c file.
 * Thread-safety: test code, one thread.
 */
#ifndef SY_KV_EVENTS_TESTUTIL_H
#define SY_KV_EVENTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <msgpack.h>
#include <zmq.h>

#include "engine/kv_events.h"

typedef struct kvt_msg {
    int n_frames;
    char topic[256];
    size_t topic_len;
    uint64_t seq;
    size_t seq_len;
    char *payload; /* malloc'd */
    size_t len;
} kvt_msg_t;

static inline void kvt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline uint64_t kvt_be64(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

static inline void kvt_msg_free(kvt_msg_t *m)
{
    free(m->payload);
    memset(m, 0, sizeof(*m));
}

/* Receives one multipart message within timeout_ms. Returns true if one arrived. */
static inline bool kvt_recv(void *sock, int timeout_ms, kvt_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return false;
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        assert_true(zmq_msg_recv(&f, sock, 0) >= 0);
        size_t n = zmq_msg_size(&f);
        const void *d = zmq_msg_data(&f);
        if (m->n_frames == 0) {
            m->topic_len = n;
            memcpy(m->topic, d, n < sizeof(m->topic) ? n : sizeof(m->topic) - 1);
        } else if (m->n_frames == 1) {
            m->seq_len = n;
            if (n == 8)
                m->seq = kvt_be64(d);
        } else if (m->n_frames == 2) {
            m->payload = malloc(n ? n : 1);
            assert_non_null(m->payload);
            memcpy(m->payload, d, n);
            m->len = n;
        }
        m->n_frames++;
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    return true;
}

/* A SUB socket subscribed to topic_filter; connects to ep, or binds it when bind (then the
 * resolved endpoint is written to bound). */
static inline void *kvt_sub(void *ctx, const char *ep, bool bind, const char *topic_filter,
                            char *bound, size_t bound_cap)
{
    void *s = zmq_socket(ctx, ZMQ_SUB);
    assert_non_null(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic_filter, strlen(topic_filter)), 0);
    if (bind) {
        assert_int_equal(zmq_bind(s, ep), 0);
        size_t sz = bound_cap;
        assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &sz), 0);
    } else {
        assert_int_equal(zmq_connect(s, ep), 0);
    }
    return s;
}

/* Slow joiner: publishes AllBlocksCleared probes until one reaches sub (bounded), then drains
 * until the stream is quiet. Returns the seq of the last message received. */
static inline uint64_t kvt_wait_ready(kve_pub_t *p, void *sub, int flush_ms)
{
    kvt_msg_t m;
    bool got = false;
    uint64_t last = 0;
    for (int i = 0; i < 100 && !got; i++) {
        kve_all_cleared(p);
        got = kvt_recv(sub, 2 * flush_ms + 50, &m);
    }
    assert_true(got);
    last = m.seq;
    kvt_msg_free(&m);
    while (kvt_recv(sub, 3 * flush_ms + 100, &m)) {
        last = m.seq;
        kvt_msg_free(&m);
    }
    return last;
}

/* ---- msgpack-c lookups */

static inline bool kvt_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

static inline const msgpack_object *kvt_map_get(const msgpack_object *o, const char *key)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (kvt_str_eq(&o->via.map.ptr[i].key, key))
            return &o->via.map.ptr[i].val;
    return NULL;
}

/* uint64 or 32-byte bin folded to its last 8 bytes big-endian (llm-d's rule). */
static inline uint64_t kvt_hash(const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return o->via.u64;
    assert_int_equal(o->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(o->via.bin.size, 32);
    return kvt_be64(o->via.bin.ptr + 24);
}

/* Decodes a whole payload into u and returns the root; fails the test on trailing bytes. */
static inline const msgpack_object *kvt_decode(msgpack_unpacked *u, const char *data, size_t len)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    return &u->data;
}

/* Event type tag of a map or legacy-array event ("" if malformed). */
static inline const char *kvt_event_type(const msgpack_object *ev)
{
    static char tag[32];
    const msgpack_object *t = NULL;
    if (ev->type == MSGPACK_OBJECT_MAP)
        t = kvt_map_get(ev, "type");
    else if (ev->type == MSGPACK_OBJECT_ARRAY && ev->via.array.size > 0)
        t = &ev->via.array.ptr[0];
    if (!t || t->type != MSGPACK_OBJECT_STR || t->via.str.size >= sizeof(tag))
        return "";
    memcpy(tag, t->via.str.ptr, t->via.str.size);
    tag[t->via.str.size] = '\0';
    return tag;
}

#endif
