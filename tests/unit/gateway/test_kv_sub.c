/*
 * test_kv_sub.c - KV-event subscriber end to end on tcp://127.0.0.1 with kernel-chosen ports:
 * the real engine publisher (kv_events.c) feeding the index (BlockStored / BlockRemoved /
 * AllBlocksCleared, both encodings), hash parity match and mismatch counting, and with a raw ZMQ
 * PUB (and a hand-driven ROUTER for replay): sequence gaps without replay, gaps repaired by
 * replay (request from last+1, duplicates skipped, stale flag), replay timeout, publisher
 * restart, garbage frames counted as decode errors, and endpoint removal; the active parity
 * probe hook (arm / get / disarm: a root BlockStored with the armed token ids and its chained
 * continuation are recorded, unrelated events are not). All waits are bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/status.h"
#include "engine/kv_events.h"
#include "engine/kv_events_int.h"
#include "engine/kv_hash.h"
#include "gateway/kv_decode.h"
#include "gateway/kv_sub.h"
#include "gateway/prefix_index.h"

#define BS 16
#define WAIT_MS 5000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static kvsub_stats_t stats(kvsub_t *s, uint32_t ep)
{
    kvsub_stats_t st;
    memset(&st, 0, sizeof(st));
    assert_int_equal(kvsub_get_stats(s, ep, &st), ST_OK);
    return st;
}

/* Waits (bounded) until field `expr` over a fresh stats snapshot `st` holds. */
#define WAIT_FOR(s, ep, expr)                                                                      \
    do {                                                                                           \
        bool ok_ = false;                                                                          \
        for (int i_ = 0; i_ < WAIT_MS / 5 && !ok_; i_++) {                                         \
            kvsub_stats_t st = stats(s, ep);                                                       \
            ok_ = (expr);                                                                          \
            if (!ok_)                                                                              \
                sleep_ms(5);                                                                       \
        }                                                                                          \
        assert_true(ok_);                                                                          \
    } while (0)

static kvsub_t *make_sub(pidx_t *x, const char *seed, uint32_t block_size, int replay_timeout)
{
    kvsub_config_t cfg;
    kvsub_config_default(&cfg);
    cfg.hash_seed = seed;
    cfg.block_size = block_size;
    cfg.poll_ms = 5;
    if (replay_timeout)
        cfg.replay_timeout_ms = replay_timeout;
    int st;
    kvsub_t *s = kvsub_create(x, &cfg, &st);
    assert_int_equal(st, ST_OK);
    assert_non_null(s);
    return s;
}

/* Prefix-match length of ep over hashes. */
static uint32_t held_prefix(pidx_t *x, uint32_t ep, const uint64_t *h, size_t n)
{
    uint32_t out[8];
    pidx_match(x, h, n, out, 8);
    return out[ep];
}

/* Chain of n blocks of BS tokens starting at token value t0, from NONE_HASH(seed). */
static void chain(const char *seed, int32_t t0, int n, kvh_digest_t *d, int32_t *toks,
                  uint64_t *low)
{
    kvh_digest_t none;
    kvh_none_hash(seed, &none);
    for (int i = 0; i < n * BS; i++)
        toks[i] = t0 + i;
    for (int b = 0; b < n; b++) {
        kvh_block(b ? &d[b - 1] : &none, toks + b * BS, BS, NULL, 0, &d[b]);
        low[b] = kvh_low64(&d[b]);
    }
}

/* ------------------------------------------------------- engine publisher */

static kve_pub_t *make_pub(bool legacy)
{
    kve_config_t c;
    kve_config_default(&c);
    c.enable = true;
    sy_free(c.endpoint);
    c.endpoint = sy_strdup("tcp://127.0.0.1:*");
    c.flush_interval_ms = 5;
    c.legacy_array = legacy;
    int st;
    kve_pub_t *p = kve_create(&c, &st);
    kve_config_deinit(&c);
    assert_int_equal(st, ST_OK);
    assert_non_null(p);
    return p;
}

/* Slow joiner: publish AllBlocksCleared probes until the subscriber has seen one. */
static void join_engine(kve_pub_t *p, kvsub_t *s, uint32_t ep)
{
    bool ok = false;
    for (int i = 0; i < 200 && !ok; i++) {
        kve_all_cleared(p);
        sleep_ms(20);
        ok = stats(s, ep).messages > 0;
    }
    assert_true(ok);
    sleep_ms(50); /* let in-flight probes land */
}

static void engine_roundtrip(bool legacy)
{
    pidx_t *x = pidx_create(10000, 8);
    kvsub_t *s = make_sub(x, "0", BS, 0);
    kve_pub_t *p = make_pub(legacy);
    assert_int_equal(kvsub_add_endpoint(s, 3, kve_endpoint(p), NULL, NULL), ST_OK);
    assert_int_equal(kvsub_add_endpoint(s, 3, kve_endpoint(p), NULL, NULL), ST_EXISTS);
    join_engine(p, s, 3);

    kvh_digest_t d[4];
    int32_t toks[4 * BS];
    uint64_t h[4];
    chain("0", 1, 4, d, toks, h);
    kve_block_stored(p, d, 2, NULL, toks, BS);               /* root: parity-checked */
    kve_block_stored(p, d + 2, 2, &d[1], toks + 2 * BS, BS); /* continuation: not checked */
    WAIT_FOR(s, 3, st.blocks_stored == 4);
    assert_int_equal(held_prefix(x, 3, h, 4), 4);
    kvsub_stats_t cur = stats(s, 3);
    assert_int_equal(cur.parity_matches, 1);
    assert_int_equal(cur.parity_mismatches, 0);
    assert_int_equal(cur.decode_errors, 0);
    assert_int_equal(cur.gaps, 0);
    assert_true(cur.have_seq);
    assert_true(cur.last_recv_unix > 0 && cur.last_batch_ts > 0);
    assert_false(kvsub_is_stale(s, 3));

    kve_block_removed(p, d + 2, 1);
    WAIT_FOR(s, 3, st.blocks_removed == 1);
    assert_int_equal(held_prefix(x, 3, h, 4), 2);
    kve_all_cleared(p);
    WAIT_FOR(s, 3, st.clears >= 1 && st.events >= 4);
    sleep_ms(30);
    assert_int_equal(held_prefix(x, 3, h, 4), 0);
    assert_int_equal(pidx_num_entries(x), 0);

    /* a root block hashed with another seed: parity mismatch, still indexed */
    kvh_digest_t e[1];
    int32_t etoks[BS];
    uint64_t eh[1];
    chain("12345", 1, 1, e, etoks, eh);
    kve_block_stored(p, e, 1, NULL, etoks, BS);
    kve_block_stored(p, e, 1, NULL, etoks, BS);
    WAIT_FOR(s, 3, st.parity_mismatches == 2);
    assert_int_equal(held_prefix(x, 3, eh, 1), 1);

    assert_int_equal(kvsub_remove_endpoint(s, 3), ST_OK);
    assert_int_equal(kvsub_remove_endpoint(s, 3), ST_NOTFOUND);
    assert_int_equal(pidx_num_entries(x), 0); /* removal dropped its entries */
    kvsub_stats_t none;
    assert_int_equal(kvsub_get_stats(s, 3, &none), ST_NOTFOUND);
    kvsub_destroy(s);
    kve_destroy(p);
    pidx_destroy(x);
}

static void test_engine_map(void **state)
{
    engine_roundtrip(false);
}

static void test_engine_legacy(void **state)
{
    engine_roundtrip(true);
}

/* Block size differing from the gateway's counts as a mismatch. */
static void test_block_size_mismatch(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    kvsub_t *s = make_sub(x, "0", 32, 0);
    kve_pub_t *p = make_pub(false);
    assert_int_equal(kvsub_add_endpoint(s, 0, kve_endpoint(p), NULL, ""), ST_OK);
    join_engine(p, s, 0);
    kvh_digest_t d[1];
    int32_t toks[BS];
    uint64_t h[1];
    chain("0", 1, 1, d, toks, h);
    kve_block_stored(p, d, 1, NULL, toks, BS);
    WAIT_FOR(s, 0, st.parity_mismatches == 1 && st.blocks_stored == 1);
    kvsub_destroy(s);
    kve_destroy(p);
    pidx_destroy(x);
}

/* ------------------------------------------------------------ raw sockets */

typedef struct raw {
    void *ctx;
    void *pub;
    void *router; /* NULL unless replay */
    char pub_ep[256];
    char router_ep[256];
    uint64_t probe_seq;
} raw_t;

static void raw_open(raw_t *r, bool replay)
{
    memset(r, 0, sizeof(*r));
    r->ctx = zmq_ctx_new();
    r->pub = zmq_socket(r->ctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(r->pub, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(r->pub, "tcp://127.0.0.1:*"), 0);
    size_t sz = sizeof(r->pub_ep);
    assert_int_equal(zmq_getsockopt(r->pub, ZMQ_LAST_ENDPOINT, r->pub_ep, &sz), 0);
    if (replay) {
        r->router = zmq_socket(r->ctx, ZMQ_ROUTER);
        zmq_setsockopt(r->router, ZMQ_LINGER, &zero, sizeof(zero));
        assert_int_equal(zmq_bind(r->router, "tcp://127.0.0.1:*"), 0);
        sz = sizeof(r->router_ep);
        assert_int_equal(zmq_getsockopt(r->router, ZMQ_LAST_ENDPOINT, r->router_ep, &sz), 0);
    }
}

static void raw_close(raw_t *r)
{
    zmq_close(r->pub);
    if (r->router)
        zmq_close(r->router);
    zmq_ctx_term(r->ctx);
}

static void raw_send(void *sock, const void *f0, size_t l0, uint64_t seq, const void *payload,
                     size_t len)
{
    uint8_t sb[8];
    kvd_be64_put(sb, seq);
    assert_true(zmq_send(sock, f0, l0, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(sock, sb, 8, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(sock, payload, len, 0) >= 0);
}

/* Payload with one event: STORED (hashes d[0..n), parent d[-1] unless d is the chain root)
 * or REMOVED. */
static void payload(sy_buf_t *out, kve_ev_type_t type, const kvh_digest_t *d, uint32_t n,
                    const kvh_digest_t *root, const int32_t *toks)
{
    sy_buf_reset(out);
    const kvh_digest_t *parent = type == KVE_EV_STORED && d != root ? d - 1 : NULL;
    kve_event_t *e = kve_event_new(type, d, n, parent, toks, BS);
    assert_int_equal(kve_encode_batch(e, 1, 1.5, false, true, out), ST_OK);
    kve_event_free(e);
}

static void payload_empty(sy_buf_t *out)
{
    sy_buf_reset(out);
    assert_int_equal(kve_encode_batch(NULL, 0, 1.5, false, true, out), ST_OK);
}

/* Slow joiner with a raw PUB: empty batches with increasing seq until one arrives; returns the
 * next seq to use. */
static uint64_t raw_join(raw_t *r, kvsub_t *s, uint32_t ep)
{
    sy_buf_t b = SY_BUF_INIT;
    payload_empty(&b);
    bool ok = false;
    uint64_t seq = 0;
    for (int i = 0; i < 200 && !ok; i++) {
        raw_send(r->pub, "kv@t", 4, seq++, b.data, b.len);
        sleep_ms(20);
        ok = stats(s, ep).messages > 0;
    }
    assert_true(ok);
    sy_buf_deinit(&b);
    WAIT_FOR(s, ep, st.have_seq && st.last_seq == seq - 1);
    return seq;
}

static void test_gap_without_replay(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    kvsub_t *s = make_sub(x, NULL, 0, 0);
    raw_t r;
    raw_open(&r, false);
    assert_int_equal(kvsub_add_endpoint(s, 1, r.pub_ep, NULL, "kv@"), ST_OK);
    uint64_t seq = raw_join(&r, s, 1);

    kvh_digest_t d[3];
    int32_t toks[3 * BS];
    uint64_t h[3];
    chain("0", 1, 3, d, toks, h);
    sy_buf_t b = SY_BUF_INIT;
    payload(&b, KVE_EV_STORED, d, 2, d, toks);
    raw_send(r.pub, "kv@t", 4, seq++, b.data, b.len);
    WAIT_FOR(s, 1, st.blocks_stored == 2);
    assert_int_equal(held_prefix(x, 1, h, 3), 2);
    /* seq + 1 is lost: the index is dropped, the new batch applied */
    payload(&b, KVE_EV_STORED, d + 2, 1, d, toks + 2 * BS);
    seq++;
    raw_send(r.pub, "kv@t", 4, seq, b.data, b.len);
    WAIT_FOR(s, 1, st.gaps == 1 && st.blocks_stored == 3);
    kvsub_stats_t cur = stats(s, 1);
    assert_true(cur.last_seq == seq);
    assert_false(cur.stale);
    assert_int_equal(held_prefix(x, 1, h, 3), 0);
    assert_int_equal(pidx_num_entries(x), 1);
    /* a topic outside the filter is not delivered */
    raw_send(r.pub, "other", 5, seq + 1, b.data, b.len);
    /* publisher restart: seq back to 0 drops the entries */
    payload(&b, KVE_EV_STORED, d, 1, d, toks);
    raw_send(r.pub, "kv@t", 4, 0, b.data, b.len);
    WAIT_FOR(s, 1, st.restarts == 1 && st.last_seq == 0);
    cur = stats(s, 1);
    assert_int_equal(cur.gaps, 1);
    assert_int_equal(held_prefix(x, 1, h, 3), 1);
    assert_int_equal(pidx_num_entries(x), 1);

    sy_buf_deinit(&b);
    kvsub_destroy(s);
    raw_close(&r);
    pidx_destroy(x);
}

/* Receives one replay request on the ROUTER (bounded): returns start seq, fills identity. */
static uint64_t router_request(raw_t *r, uint8_t *id, size_t *id_len)
{
    zmq_pollitem_t it = {r->router, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, WAIT_MS), 1);
    int n = zmq_recv(r->router, id, 255, 0);
    assert_true(n > 0);
    *id_len = (size_t)n;
    char tmp[16];
    assert_int_equal(zmq_recv(r->router, tmp, sizeof(tmp), 0), 0);
    assert_int_equal(zmq_recv(r->router, tmp, sizeof(tmp), 0), 8);
    int more = 0;
    size_t sz = sizeof(more);
    zmq_getsockopt(r->router, ZMQ_RCVMORE, &more, &sz);
    assert_int_equal(more, 0);
    return kvd_be64_get(tmp);
}

static void router_reply(raw_t *r, const uint8_t *id, size_t id_len, uint64_t seq, const void *data,
                         size_t len)
{
    assert_true(zmq_send(r->router, id, id_len, ZMQ_SNDMORE) >= 0);
    raw_send(r->router, "", 0, seq, data, len);
}

static void test_gap_with_replay(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    kvsub_t *s = make_sub(x, "0", BS, 0);
    raw_t r;
    raw_open(&r, true);
    assert_int_equal(kvsub_add_endpoint(s, 2, r.pub_ep, r.router_ep, NULL), ST_OK);
    uint64_t seq = raw_join(&r, s, 2);

    kvh_digest_t d[4];
    int32_t toks[4 * BS];
    uint64_t h[4];
    chain("0", 1, 4, d, toks, h);
    sy_buf_t b0 = SY_BUF_INIT, b1 = SY_BUF_INIT, b2 = SY_BUF_INIT, b3 = SY_BUF_INIT;
    payload(&b0, KVE_EV_STORED, d, 1, d, toks);
    payload(&b1, KVE_EV_STORED, d + 1, 1, d, toks + BS);
    payload(&b2, KVE_EV_STORED, d + 2, 1, d, toks + 2 * BS);
    payload(&b3, KVE_EV_STORED, d + 3, 1, d, toks + 3 * BS);
    uint64_t s0 = seq, s1 = seq + 1, s2 = seq + 2, s3 = seq + 3;
    raw_send(r.pub, "kv@t", 4, s0, b0.data, b0.len);
    WAIT_FOR(s, 2, st.blocks_stored == 1);
    /* s1 is lost; s2 arrives: replay requested from s1, s2 held */
    raw_send(r.pub, "kv@t", 4, s2, b2.data, b2.len);
    uint8_t id[256];
    size_t id_len;
    assert_true(router_request(&r, id, &id_len) == s1);
    WAIT_FOR(s, 2, st.gaps == 1 && st.replays == 1 && st.stale);
    assert_true(kvsub_is_stale(s, 2));
    /* a live message during the replay is held too */
    raw_send(r.pub, "kv@t", 4, s3, b3.data, b3.len);
    sleep_ms(30);
    assert_int_equal(stats(s, 2).blocks_stored, 1);
    assert_int_equal(held_prefix(x, 2, h, 4), 1); /* index kept during the replay */
    /* the publisher replays s1 and s2 (a duplicate of the held one), then the end marker */
    router_reply(&r, id, id_len, s1, b1.data, b1.len);
    router_reply(&r, id, id_len, s2, b2.data, b2.len);
    router_reply(&r, id, id_len, UINT64_MAX, "", 0);
    WAIT_FOR(s, 2, !st.stale && st.blocks_stored == 4);
    kvsub_stats_t cur = stats(s, 2);
    assert_true(cur.last_seq == s3);
    assert_int_equal(cur.replay_failures, 0);
    assert_int_equal(cur.decode_errors, 0);
    assert_int_equal(cur.parity_matches, 1); /* only block 0 has no parent */
    assert_int_equal(cur.parity_mismatches, 0);
    assert_int_equal(held_prefix(x, 2, h, 4), 4);
    assert_false(kvsub_is_stale(s, 2));

    sy_buf_deinit(&b0);
    sy_buf_deinit(&b1);
    sy_buf_deinit(&b2);
    sy_buf_deinit(&b3);
    kvsub_destroy(s);
    raw_close(&r);
    pidx_destroy(x);
}

static void test_replay_timeout(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    kvsub_t *s = make_sub(x, NULL, 0, 200);
    raw_t r;
    raw_open(&r, true);
    assert_int_equal(kvsub_add_endpoint(s, 4, r.pub_ep, r.router_ep, NULL), ST_OK);
    uint64_t seq = raw_join(&r, s, 4);
    kvh_digest_t d[3];
    int32_t toks[3 * BS];
    uint64_t h[3];
    chain("0", 1, 3, d, toks, h);
    sy_buf_t b = SY_BUF_INIT;
    payload(&b, KVE_EV_STORED, d, 1, d, toks);
    raw_send(r.pub, "kv@t", 4, seq, b.data, b.len);
    WAIT_FOR(s, 4, st.blocks_stored == 1);
    payload(&b, KVE_EV_STORED, d + 2, 1, d, toks + 2 * BS);
    raw_send(r.pub, "kv@t", 4, seq + 2, b.data, b.len);
    uint8_t id[256];
    size_t id_len;
    assert_true(router_request(&r, id, &id_len) == seq + 1);
    /* nobody answers: after the timeout the entries are dropped and the held batch applied */
    WAIT_FOR(s, 4, st.replay_failures == 1 && !st.stale && st.blocks_stored == 2);
    kvsub_stats_t cur = stats(s, 4);
    assert_true(cur.last_seq == seq + 2);
    assert_int_equal(held_prefix(x, 4, h, 1), 0);
    assert_int_equal(held_prefix(x, 4, h + 2, 1), 1);
    /* a late end marker is ignored */
    router_reply(&r, id, id_len, UINT64_MAX, "", 0);
    payload(&b, KVE_EV_REMOVED, d + 2, 1, d, NULL);
    raw_send(r.pub, "kv@t", 4, seq + 3, b.data, b.len);
    WAIT_FOR(s, 4, st.blocks_removed == 1);
    assert_int_equal(pidx_num_entries(x), 0);
    assert_int_equal(stats(s, 4).gaps, 1);
    sy_buf_deinit(&b);
    kvsub_destroy(s);
    raw_close(&r);
    pidx_destroy(x);
}

static void test_garbage(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    kvsub_t *s = make_sub(x, "0", BS, 0);
    raw_t r;
    raw_open(&r, false);
    assert_int_equal(kvsub_add_endpoint(s, 5, r.pub_ep, NULL, NULL), ST_OK);
    assert_int_equal(kvsub_add_endpoint(s, 6, "not an endpoint", NULL, NULL) < 0, 1);
    uint64_t seq = raw_join(&r, s, 5);
    uint64_t base = stats(s, 5).decode_errors;

    /* one frame; two frames; a 3-byte seq; four frames; garbage payloads with valid seqs */
    assert_true(zmq_send(r.pub, "kv@t", 4, 0) >= 0);
    assert_true(zmq_send(r.pub, "kv@t", 4, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "12345678", 8, 0) >= 0);
    assert_true(zmq_send(r.pub, "kv@t", 4, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "123", 3, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "\x90", 1, 0) >= 0);
    assert_true(zmq_send(r.pub, "kv@t", 4, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "12345678", 8, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "\x90", 1, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(r.pub, "x", 1, 0) >= 0);
    raw_send(r.pub, "kv@t", 4, seq++, "\xdd\xff\xff\xff\xff", 5);
    raw_send(r.pub, "kv@t", 4, seq++, "", 0);
    raw_send(r.pub, "kv@t", 4, seq++, "\x92\x00\x91\x2a", 4);
    WAIT_FOR(s, 5, st.decode_errors == base + 7);
    /* still healthy afterwards */
    kvh_digest_t d[1];
    int32_t toks[BS];
    uint64_t h[1];
    chain("0", 1, 1, d, toks, h);
    sy_buf_t b = SY_BUF_INIT;
    payload(&b, KVE_EV_STORED, d, 1, d, toks);
    raw_send(r.pub, "kv@t", 4, seq++, b.data, b.len);
    WAIT_FOR(s, 5, st.blocks_stored == 1);
    kvsub_stats_t cur = stats(s, 5);
    assert_int_equal(cur.gaps, 0);
    assert_int_equal(cur.parity_matches, 1);
    assert_int_equal(held_prefix(x, 5, h, 1), 1);
    sy_buf_deinit(&b);
    kvsub_destroy(s);
    raw_close(&r);
    pidx_destroy(x);
}

/* Waits (bounded) until the probe of ep has seen at least n_hashes hashes; returns the record. */
static kvsub_probe_result_t probe_wait(kvsub_t *s, uint32_t ep, size_t n_hashes)
{
    kvsub_probe_result_t r;
    memset(&r, 0, sizeof(r));
    for (int i = 0; i < WAIT_MS / 5; i++) {
        assert_int_equal(kvsub_probe_get(s, ep, &r), ST_OK);
        if (r.seen && r.n_hashes >= n_hashes)
            break;
        sleep_ms(5);
    }
    return r;
}

static void test_probe_hook(void **state)
{
    pidx_t *x = pidx_create(10000, 8);
    kvsub_t *s = make_sub(x, "0", BS, 0);
    kve_pub_t *p = make_pub(false);
    assert_int_equal(kvsub_add_endpoint(s, 2, kve_endpoint(p), NULL, NULL), ST_OK);
    join_engine(p, s, 2);

    kvh_digest_t d[4], u[2];
    int32_t toks[4 * BS], utoks[2 * BS];
    uint64_t h[4], uh[2];
    chain("0", 7, 4, d, toks, h);
    chain("0", 100, 2, u, utoks, uh);
    kvsub_probe_result_t r;
    assert_int_equal(kvsub_probe_get(s, 2, &r), ST_STATE); /* nothing armed */
    assert_int_equal(kvsub_probe_get(s, 9, &r), ST_NOTFOUND);
    assert_int_equal(kvsub_probe_arm(s, 9, toks, 4 * BS), ST_NOTFOUND);
    assert_int_equal(kvsub_probe_arm(s, 2, toks, 0), ST_INVAL);
    assert_int_equal(kvsub_probe_arm(s, 2, toks, KVSUB_PROBE_MAX_TOKENS + 1), ST_INVAL);
    assert_int_equal(kvsub_probe_arm(s, 2, toks, 4 * BS), ST_OK);
    assert_int_equal(kvsub_probe_get(s, 2, &r), ST_OK);
    assert_false(r.seen);

    /* unrelated traffic first: another root, and a continuation of it; then the probe's root
     * (2 blocks) and its continuation (2 blocks) in separate events */
    kve_block_stored(p, u, 2, NULL, utoks, BS);
    kve_block_stored(p, d, 2, NULL, toks, BS);
    kve_block_stored(p, u + 1, 1, &u[0], utoks + BS, BS); /* chained to the wrong parent */
    kve_block_stored(p, d + 2, 2, &d[1], toks + 2 * BS, BS);
    r = probe_wait(s, 2, 4);
    assert_true(r.seen);
    assert_int_equal(r.n_hashes, 4);
    assert_int_equal(r.n_events, 2);
    assert_int_equal(r.n_tokens, 4 * BS);
    assert_int_equal(r.block_size, BS);
    assert_false(r.has_extra);
    for (int i = 0; i < 4; i++)
        assert_true(r.hashes[i] == h[i]);
    WAIT_FOR(s, 2, st.blocks_stored == 2 + 2 + 1 + 2); /* the index still got everything */

    /* re-arming resets the record; a root with the same first block but other later tokens does
     * not match the armed ids */
    assert_int_equal(kvsub_probe_arm(s, 2, toks, 4 * BS), ST_OK);
    assert_int_equal(kvsub_probe_get(s, 2, &r), ST_OK);
    assert_false(r.seen);
    int32_t other[2 * BS];
    memcpy(other, toks, sizeof(other));
    other[BS + 3] = 99;
    kvh_digest_t od[2], none;
    kvh_none_hash("0", &none);
    kvh_block(&none, other, BS, NULL, 0, &od[0]);
    kvh_block(&od[0], other + BS, BS, NULL, 0, &od[1]);
    kve_block_stored(p, od, 2, NULL, other, BS);
    /* a root with only the first block of the probe matches (a prefix of the armed ids) */
    kve_block_stored(p, d, 1, NULL, toks, BS);
    r = probe_wait(s, 2, 1);
    assert_true(r.seen);
    assert_int_equal(r.n_hashes, 1);
    assert_true(r.hashes[0] == h[0]);
    assert_int_equal(r.n_tokens, BS);

    kvsub_probe_disarm(s, 2);
    kvsub_probe_disarm(s, 2);
    kvsub_probe_disarm(s, 77);
    assert_int_equal(kvsub_probe_get(s, 2, &r), ST_STATE);
    /* armed at removal: freed with the endpoint (ASan checks) */
    assert_int_equal(kvsub_probe_arm(s, 2, toks, 4 * BS), ST_OK);
    assert_int_equal(kvsub_remove_endpoint(s, 2), ST_OK);
    assert_int_equal(kvsub_probe_get(s, 2, &r), ST_NOTFOUND);
    kvsub_destroy(s);
    kve_destroy(p);
    pidx_destroy(x);
}

static void test_api_misuse(void **state)
{
    pidx_t *x = pidx_create(10, 2);
    kvsub_config_t cfg;
    kvsub_config_default(&cfg);
    int st = 0;
    assert_null(kvsub_create(NULL, &cfg, &st));
    assert_int_equal(st, ST_INVAL);
    kvsub_t *s = kvsub_create(x, &cfg, &st);
    assert_non_null(s);
    assert_int_equal(kvsub_add_endpoint(s, 0, NULL, NULL, NULL), ST_INVAL);
    assert_int_equal(kvsub_remove_endpoint(s, 9), ST_NOTFOUND);
    assert_false(kvsub_is_stale(s, 9));
    /* an endpoint nobody serves: connect succeeds (ZMQ retries), destroy still returns */
    assert_int_equal(kvsub_add_endpoint(s, 1, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", NULL),
                     ST_OK);
    kvsub_destroy(s);
    kvsub_destroy(NULL);
    pidx_destroy(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_map),
        cmocka_unit_test(test_engine_legacy),
        cmocka_unit_test(test_block_size_mismatch),
        cmocka_unit_test(test_gap_without_replay),
        cmocka_unit_test(test_gap_with_replay),
        cmocka_unit_test(test_replay_timeout),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_probe_hook),
        cmocka_unit_test(test_api_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
