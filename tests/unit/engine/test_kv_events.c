/*
 * test_kv_events.c - KV event publisher: config parsing (incl. errors and the env var), map and
 * legacy-array payloads decoded back with msgpack-c, 3-frame framing with a big-endian seq that
 * grows by one per batch, bind/connect modes, queue-overflow drops, flush on destroy, and replay
 * through a DEALER socket. Sockets use tcp://127.0.0.1 with kernel-chosen ports.
 */
#include "kv_events_testutil.h"

#include <stdio.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/status.h"
#include "engine/kv_events_int.h"

#define FLUSH_MS 20

/* ------------------------------------------------------------------ config */

static void test_config_default(void **state)
{
    unsetenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES");
    kve_config_t c;
    kve_config_default(&c);
    assert_false(c.enable);
    assert_null(c.publisher);
    assert_string_equal(c.endpoint, "tcp://*:5557");
    assert_null(c.replay_endpoint);
    assert_string_equal(c.topic, "");
    assert_int_equal(c.buffer_steps, 10000);
    assert_int_equal(c.hwm, 100000);
    assert_int_equal(c.max_queue_size, 100000);
    assert_false(c.legacy_array);
    assert_true(c.int_hashes);
    assert_int_equal(c.flush_interval_ms, 10);
    kve_config_deinit(&c);
}

static void test_config_parse_full(void **state)
{
    kve_config_t c;
    sy_buf_t err = SY_BUF_INIT;
    kve_config_default(&c);
    const char *json = "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\","
                       "\"endpoint\":\"tcp://*:6000\",\"replay_endpoint\":\"tcp://*:6001\","
                       "\"buffer_steps\":5,\"hwm\":7,\"max_queue_size\":9,"
                       "\"topic\":\"kv@10.0.0.5:8000@m\",\"event_encoding\":\"array\","
                       "\"flush_interval_ms\":3,\"some_future_key\":[1,2,{}]}";
    assert_int_equal(kve_config_parse(json, &c, &err), ST_OK);
    assert_int_equal(err.len, 0);
    assert_true(c.enable);
    assert_string_equal(c.publisher, "zmq");
    assert_string_equal(c.endpoint, "tcp://*:6000");
    assert_string_equal(c.replay_endpoint, "tcp://*:6001");
    assert_int_equal(c.buffer_steps, 5);
    assert_int_equal(c.hwm, 7);
    assert_int_equal(c.max_queue_size, 9);
    assert_string_equal(c.topic, "kv@10.0.0.5:8000@m");
    assert_true(c.legacy_array);
    assert_int_equal(c.flush_interval_ms, 3);

    /* a second parse overrides; null replay_endpoint clears it; "map" resets the encoding */
    assert_int_equal(
        kve_config_parse("{\"replay_endpoint\":null,\"event_encoding\":\"map\"}", &c, &err), ST_OK);
    assert_null(c.replay_endpoint);
    assert_false(c.legacy_array);
    kve_config_deinit(&c);
    sy_buf_deinit(&err);
}

static void test_config_publisher_auto(void **state)
{
    kve_config_t c;
    kve_config_default(&c);
    assert_int_equal(kve_config_parse("{\"enable_kv_cache_events\":true}", &c, NULL), ST_OK);
    assert_string_equal(c.publisher, "zmq");
    kve_config_deinit(&c);

    kve_config_default(&c);
    assert_int_equal(kve_config_parse("{}", &c, NULL), ST_OK);
    assert_string_equal(c.publisher, "null");
    kve_config_deinit(&c);

    kve_config_default(&c);
    assert_int_equal(
        kve_config_parse("{\"enable_kv_cache_events\":true,\"publisher\":\"null\"}", &c, NULL),
        ST_OK);
    assert_string_equal(c.publisher, "null");
    kve_config_deinit(&c);
}

static void expect_parse_error(const char *json, const char *needle)
{
    kve_config_t c;
    sy_buf_t err = SY_BUF_INIT;
    kve_config_default(&c);
    assert_int_equal(kve_config_parse(json, &c, &err), ST_INVAL);
    assert_non_null(err.data);
    if (!strstr(err.data, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err.data, needle);
    kve_config_deinit(&c);
    sy_buf_deinit(&err);
}

static void test_config_errors(void **state)
{
    expect_parse_error("{not json", "invalid JSON");
    expect_parse_error("[1,2]", "object");
    expect_parse_error("{\"enable_kv_cache_events\":1}", "'enable_kv_cache_events'");
    expect_parse_error("{\"publisher\":5}", "'publisher'");
    expect_parse_error("{\"publisher\":\"kafka\"}", "'publisher'");
    expect_parse_error("{\"endpoint\":null}", "'endpoint'");
    expect_parse_error("{\"replay_endpoint\":false}", "'replay_endpoint'");
    expect_parse_error("{\"topic\":[]}", "'topic'");
    expect_parse_error("{\"buffer_steps\":\"10\"}", "'buffer_steps'");
    expect_parse_error("{\"buffer_steps\":-1}", "'buffer_steps'");
    expect_parse_error("{\"hwm\":1.5}", "'hwm'");
    expect_parse_error("{\"max_queue_size\":0}", "'max_queue_size'");
    expect_parse_error("{\"event_encoding\":\"json\"}", "'event_encoding'");
    expect_parse_error("{\"event_encoding\":1}", "'event_encoding'");
    expect_parse_error("{\"flush_interval_ms\":0}", "'flush_interval_ms'");
    expect_parse_error("{\"flush_interval_ms\":true}", "'flush_interval_ms'");
}

static void test_env_bin_hashes(void **state)
{
    kve_config_t c;
    setenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES", "0", 1);
    kve_config_default(&c);
    assert_false(c.int_hashes);
    kve_config_deinit(&c);
    setenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES", "1", 1);
    kve_config_default(&c);
    assert_true(c.int_hashes);
    kve_config_deinit(&c);
    unsetenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES");
}

static void test_endpoint_heuristic(void **state)
{
    assert_true(kve_endpoint_binds("tcp://*:5557"));
    assert_true(kve_endpoint_binds("tcp://[::]:5557"));
    assert_true(kve_endpoint_binds("tcp://127.0.0.1:*"));
    assert_true(kve_endpoint_binds("ipc:///tmp/kv"));
    assert_true(kve_endpoint_binds("inproc://kv"));
    assert_false(kve_endpoint_binds("tcp://gateway:5557"));
    assert_false(kve_endpoint_binds("tcp://127.0.0.1:5557"));
}

/* ---------------------------------------------------------------- encoding */

/* Three events: BlockStored (2 blocks, no parent), BlockStored (1 block, parent), BlockRemoved,
 * AllBlocksCleared. Digest i has low64 = 0x8000000000000000 | i (above int64 range). */
static kvh_digest_t mk_digest(uint64_t v)
{
    kvh_digest_t d;
    memset(d.b, 0x5a, sizeof(d.b));
    for (int i = 0; i < 8; i++)
        d.b[24 + i] = (uint8_t)(v >> (56 - 8 * i));
    return d;
}

static kve_event_t *mk_events(uint32_t *n)
{
    kvh_digest_t h[3] = {mk_digest(0x8000000000000001ULL), mk_digest(0x8000000000000002ULL),
                         mk_digest(3)};
    int32_t toks[8];
    for (int i = 0; i < 8; i++)
        toks[i] = i == 7 ? 70000 : i + 1;
    kve_event_t *a = kve_event_new(KVE_EV_STORED, h, 2, NULL, toks, 4);
    kve_event_t *b = kve_event_new(KVE_EV_STORED, &h[2], 1, &h[1], toks + 4, 4);
    kve_event_t *c = kve_event_new(KVE_EV_REMOVED, h, 3, NULL, NULL, 0);
    kve_event_t *d = kve_event_new(KVE_EV_CLEARED, NULL, 0, NULL, NULL, 0);
    assert_true(a && b && c && d);
    a->next = b;
    b->next = c;
    c->next = d;
    *n = 4;
    return a;
}

static void check_hash_list(const msgpack_object *o, const uint64_t *want, uint32_t n,
                            bool int_hashes)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, n);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *h = &o->via.array.ptr[i];
        assert_int_equal(h->type,
                         int_hashes ? MSGPACK_OBJECT_POSITIVE_INTEGER : MSGPACK_OBJECT_BIN);
        assert_true(kvt_hash(h) == want[i]);
    }
}

static void check_tokens(const msgpack_object *o, const int32_t *want, uint32_t n)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, n);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(o->via.array.ptr[i].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        assert_int_equal(o->via.array.ptr[i].via.u64, want[i]);
    }
}

static const msgpack_object *check_batch(const msgpack_object *root, double ts, uint32_t n_events)
{
    assert_int_equal(root->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(root->via.array.size, 3);
    assert_int_equal(root->via.array.ptr[0].type, MSGPACK_OBJECT_FLOAT64);
    assert_true(root->via.array.ptr[0].via.f64 == ts);
    assert_int_equal(root->via.array.ptr[2].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(root->via.array.ptr[2].via.u64, 0);
    const msgpack_object *evs = &root->via.array.ptr[1];
    assert_int_equal(evs->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(evs->via.array.size, n_events);
    return evs;
}

static void encode_map(bool int_hashes)
{
    uint32_t n;
    kve_event_t *evs = mk_events(&n);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(kve_encode_batch(evs, n, 1733000000.125, false, int_hashes, &out), ST_OK);
    msgpack_unpacked u;
    const msgpack_object *e = check_batch(kvt_decode(&u, out.data, out.len), 1733000000.125, 4);
    const uint64_t hv[3] = {0x8000000000000001ULL, 0x8000000000000002ULL, 3};
    const int32_t toks[8] = {1, 2, 3, 4, 5, 6, 7, 70000};

    const msgpack_object *s0 = &e->via.array.ptr[0];
    assert_int_equal(s0->type, MSGPACK_OBJECT_MAP);
    assert_int_equal(s0->via.map.size, 8);
    assert_true(kvt_str_eq(kvt_map_get(s0, "type"), "BlockStored"));
    check_hash_list(kvt_map_get(s0, "block_hashes"), hv, 2, int_hashes);
    assert_int_equal(kvt_map_get(s0, "parent_block_hash")->type, MSGPACK_OBJECT_NIL);
    check_tokens(kvt_map_get(s0, "token_ids"), toks, 8);
    assert_int_equal(kvt_map_get(s0, "block_size")->via.u64, 4);
    assert_int_equal(kvt_map_get(s0, "lora_id")->type, MSGPACK_OBJECT_NIL);
    assert_true(kvt_str_eq(kvt_map_get(s0, "medium"), "GPU"));
    assert_int_equal(kvt_map_get(s0, "lora_name")->type, MSGPACK_OBJECT_NIL);

    const msgpack_object *s1 = &e->via.array.ptr[1];
    assert_true(kvt_str_eq(kvt_map_get(s1, "type"), "BlockStored"));
    check_hash_list(kvt_map_get(s1, "block_hashes"), hv + 2, 1, int_hashes);
    assert_true(kvt_hash(kvt_map_get(s1, "parent_block_hash")) == hv[1]);
    check_tokens(kvt_map_get(s1, "token_ids"), toks + 4, 4);

    const msgpack_object *r = &e->via.array.ptr[2];
    assert_int_equal(r->via.map.size, 3);
    assert_true(kvt_str_eq(kvt_map_get(r, "type"), "BlockRemoved"));
    check_hash_list(kvt_map_get(r, "block_hashes"), hv, 3, int_hashes);
    assert_true(kvt_str_eq(kvt_map_get(r, "medium"), "GPU"));

    const msgpack_object *c = &e->via.array.ptr[3];
    assert_int_equal(c->via.map.size, 1);
    assert_true(kvt_str_eq(kvt_map_get(c, "type"), "AllBlocksCleared"));

    msgpack_unpacked_destroy(&u);
    sy_buf_deinit(&out);
    kve_event_free_list(evs);
}

static void test_encode_map_int(void **state)
{
    encode_map(true);
}

static void test_encode_map_bin(void **state)
{
    encode_map(false);
}

static void test_encode_legacy_array(void **state)
{
    uint32_t n;
    kve_event_t *evs = mk_events(&n);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(kve_encode_batch(evs, n, 2.5, true, true, &out), ST_OK);
    msgpack_unpacked u;
    const msgpack_object *e = check_batch(kvt_decode(&u, out.data, out.len), 2.5, 4);
    const uint64_t hv[3] = {0x8000000000000001ULL, 0x8000000000000002ULL, 3};
    const int32_t toks[8] = {1, 2, 3, 4, 5, 6, 7, 70000};

    /* ["BlockStored", hashes, parent, token_ids, block_size, lora_id, medium, lora_name] */
    const msgpack_object *s0 = &e->via.array.ptr[0];
    assert_int_equal(s0->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(s0->via.array.size, 8);
    const msgpack_object *f = s0->via.array.ptr;
    assert_true(kvt_str_eq(&f[0], "BlockStored"));
    check_hash_list(&f[1], hv, 2, true);
    assert_int_equal(f[2].type, MSGPACK_OBJECT_NIL);
    check_tokens(&f[3], toks, 8);
    assert_int_equal(f[4].via.u64, 4);
    assert_int_equal(f[5].type, MSGPACK_OBJECT_NIL);
    assert_true(kvt_str_eq(&f[6], "GPU"));
    assert_int_equal(f[7].type, MSGPACK_OBJECT_NIL);

    f = e->via.array.ptr[1].via.array.ptr;
    assert_true(f[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[2].via.u64 == hv[1]);

    /* ["BlockRemoved", hashes, "GPU"] */
    const msgpack_object *r = &e->via.array.ptr[2];
    assert_int_equal(r->via.array.size, 3);
    assert_true(kvt_str_eq(&r->via.array.ptr[0], "BlockRemoved"));
    check_hash_list(&r->via.array.ptr[1], hv, 3, true);
    assert_true(kvt_str_eq(&r->via.array.ptr[2], "GPU"));

    /* ["AllBlocksCleared"] */
    const msgpack_object *c = &e->via.array.ptr[3];
    assert_int_equal(c->via.array.size, 1);
    assert_true(kvt_str_eq(&c->via.array.ptr[0], "AllBlocksCleared"));

    msgpack_unpacked_destroy(&u);
    sy_buf_deinit(&out);
    kve_event_free_list(evs);
}

static void test_encode_empty_and_negative(void **state)
{
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(kve_encode_batch(NULL, 0, 0.0, false, true, &out), ST_OK);
    msgpack_unpacked u;
    check_batch(kvt_decode(&u, out.data, out.len), 0.0, 0);
    msgpack_unpacked_destroy(&u);

    /* a negative token id survives as a negative int */
    kvh_digest_t h = mk_digest(9);
    int32_t t[2] = {-5, 7};
    kve_event_t *e = kve_event_new(KVE_EV_STORED, &h, 1, NULL, t, 2);
    sy_buf_reset(&out);
    assert_int_equal(kve_encode_batch(e, 1, 1.0, false, true, &out), ST_OK);
    const msgpack_object *evs = check_batch(kvt_decode(&u, out.data, out.len), 1.0, 1);
    const msgpack_object *toks = kvt_map_get(&evs->via.array.ptr[0], "token_ids");
    assert_int_equal(toks->via.array.ptr[0].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(toks->via.array.ptr[0].via.i64, -5);
    msgpack_unpacked_destroy(&u);
    kve_event_free(e);
    sy_buf_deinit(&out);
}

/* ----------------------------------------------------------------- sockets */

static kve_pub_t *mk_pub(const char *endpoint, const char *replay, const char *topic,
                         uint32_t flush_ms, void (*tweak)(kve_config_t *))
{
    kve_config_t c;
    kve_config_default(&c);
    c.enable = true;
    sy_buf_t err = SY_BUF_INIT;
    char json[512];
    snprintf(json, sizeof(json),
             "{\"enable_kv_cache_events\":true,\"endpoint\":\"%s\",\"topic\":\"%s\","
             "\"flush_interval_ms\":%u%s%s%s}",
             endpoint, topic, flush_ms, replay ? ",\"replay_endpoint\":\"" : "",
             replay ? replay : "", replay ? "\"" : "");
    assert_int_equal(kve_config_parse(json, &c, &err), ST_OK);
    if (tweak)
        tweak(&c);
    int st = -1;
    kve_pub_t *p = kve_create(&c, &st);
    assert_int_equal(st, ST_OK);
    assert_non_null(p);
    kve_config_deinit(&c);
    sy_buf_deinit(&err);
    return p;
}

static void wait_batches(kve_pub_t *p, uint64_t n)
{
    for (int i = 0; i < 500 && kve_batches_published(p) < n; i++)
        kvt_sleep_ms(5);
    assert_true(kve_batches_published(p) >= n);
}

static void removed_one(kve_pub_t *p, uint64_t v)
{
    kvh_digest_t h = mk_digest(v);
    kve_block_removed(p, &h, 1);
}

/* The first hash of the first event of a payload. */
static uint64_t payload_first_hash(const char *data, size_t len)
{
    msgpack_unpacked u;
    const msgpack_object *root = kvt_decode(&u, data, len);
    const msgpack_object *ev = &root->via.array.ptr[1].via.array.ptr[0];
    uint64_t v = kvt_hash(&kvt_map_get(ev, "block_hashes")->via.array.ptr[0]);
    msgpack_unpacked_destroy(&u);
    return v;
}

static void test_framing_and_seq(void **state)
{
    void *ctx = zmq_ctx_new();
    kve_pub_t *p = mk_pub("tcp://127.0.0.1:*", NULL, "kv@test@m", FLUSH_MS, NULL);
    const char *ep = kve_endpoint(p);
    assert_non_null(ep);
    assert_null(kve_replay_endpoint(p));
    assert_null(strchr(ep, '*')); /* resolved to the chosen port */
    void *sub = kvt_sub(ctx, ep, false, "kv@", NULL, 0);
    uint64_t last = kvt_wait_ready(p, sub, FLUSH_MS);

    for (uint64_t i = 0; i < 3; i++) {
        uint64_t before = kve_batches_published(p);
        removed_one(p, 100 + i);
        wait_batches(p, before + 1);
        kvt_msg_t m;
        assert_true(kvt_recv(sub, 2000, &m));
        assert_int_equal(m.n_frames, 3);
        assert_int_equal(m.topic_len, strlen("kv@test@m"));
        assert_memory_equal(m.topic, "kv@test@m", m.topic_len);
        assert_int_equal(m.seq_len, 8);
        assert_true(m.seq == last + 1 + i);
        assert_true(payload_first_hash(m.payload, m.len) == 100 + i);
        kvt_msg_free(&m);
    }
    /* events queued together within one interval go out as one batch, in order */
    uint64_t before = kve_batches_published(p);
    for (uint64_t i = 0; i < 5; i++)
        removed_one(p, 200 + i);
    wait_batches(p, before + 1);
    uint32_t got = 0;
    kvt_msg_t m;
    while (got < 5 && kvt_recv(sub, 2000, &m)) {
        msgpack_unpacked u;
        const msgpack_object *evs = &kvt_decode(&u, m.payload, m.len)->via.array.ptr[1];
        for (uint32_t k = 0; k < evs->via.array.size; k++, got++)
            assert_true(
                kvt_hash(&kvt_map_get(&evs->via.array.ptr[k], "block_hashes")->via.array.ptr[0]) ==
                200 + got);
        msgpack_unpacked_destroy(&u);
        kvt_msg_free(&m);
    }
    assert_int_equal(got, 5);
    assert_int_equal(kve_events_dropped(p), 0);

    kve_destroy(p);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

/* Centralized mode: the subscriber binds, the publisher connects (endpoint without '*'). */
static void test_connect_mode_and_destroy_flush(void **state)
{
    void *ctx = zmq_ctx_new();
    char bound[256];
    void *sub = kvt_sub(ctx, "tcp://127.0.0.1:*", true, "", bound, sizeof(bound));
    kve_pub_t *p = mk_pub(bound, NULL, "", 200, NULL);
    assert_string_equal(kve_endpoint(p), bound);
    uint64_t last = kvt_wait_ready(p, sub, 200);

    /* queued just before destroy: destroy flushes them (interval 200 ms not reached yet) */
    removed_one(p, 7);
    removed_one(p, 8);
    kve_destroy(p);
    kvt_msg_t m;
    assert_true(kvt_recv(sub, 2000, &m));
    assert_int_equal(m.topic_len, 0);
    assert_true(m.seq == last + 1);
    msgpack_unpacked u;
    const msgpack_object *evs = &kvt_decode(&u, m.payload, m.len)->via.array.ptr[1];
    assert_int_equal(evs->via.array.size, 2);
    msgpack_unpacked_destroy(&u);
    kvt_msg_free(&m);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

static void tweak_small_queue(kve_config_t *c)
{
    c->max_queue_size = 2;
    c->flush_interval_ms = 60000;
}

static void test_queue_overflow_drops_oldest(void **state)
{
    void *ctx = zmq_ctx_new();
    char bound[256];
    void *sub = kvt_sub(ctx, "tcp://127.0.0.1:*", true, "", bound, sizeof(bound));
    kve_pub_t *p = mk_pub(bound, NULL, "", FLUSH_MS, tweak_small_queue);
    /* Connected PUB: give the subscription time to arrive (nothing flushes for 60 s, so probes
     * cannot be used here). Polling the SUB meanwhile lets it attach the new connection and send
     * its subscription (a plain sleep would not). Then the final flush on destroy must arrive. */
    kvt_msg_t m;
    assert_false(kvt_recv(sub, 300, &m));
    for (uint64_t i = 0; i < 5; i++)
        removed_one(p, 10 + i);
    assert_int_equal(kve_events_dropped(p), 3);
    assert_int_equal(kve_batches_published(p), 0);
    kve_destroy(p);
    assert_true(kvt_recv(sub, 2000, &m));
    assert_true(m.seq == 0);
    msgpack_unpacked u;
    const msgpack_object *evs = &kvt_decode(&u, m.payload, m.len)->via.array.ptr[1];
    assert_int_equal(evs->via.array.size, 2);
    assert_true(kvt_hash(&kvt_map_get(&evs->via.array.ptr[0], "block_hashes")->via.array.ptr[0]) ==
                13);
    assert_true(kvt_hash(&kvt_map_get(&evs->via.array.ptr[1], "block_hashes")->via.array.ptr[0]) ==
                14);
    msgpack_unpacked_destroy(&u);
    kvt_msg_free(&m);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

static void tweak_small_ring(kve_config_t *c)
{
    c->buffer_steps = 3;
}

/* Receives one reply [ "", seq, payload ] on a DEALER. */
static void dealer_recv(void *d, uint64_t *seq, char **payload, size_t *len)
{
    kvt_msg_t m;
    assert_true(kvt_recv(d, 2000, &m));
    assert_int_equal(m.n_frames, 3);
    assert_int_equal(m.topic_len, 0); /* empty delimiter */
    assert_int_equal(m.seq_len, 8);
    *seq = m.seq;
    *payload = m.payload;
    *len = m.len;
}

static void replay_request(void *d, uint64_t start)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(start >> (56 - 8 * i));
    assert_int_equal(zmq_send(d, "", 0, ZMQ_SNDMORE), 0);
    assert_int_equal(zmq_send(d, b, 8, 0), 8);
}

static void expect_replay(void *d, uint64_t first, uint64_t last)
{
    for (uint64_t s = first; s <= last; s++) {
        uint64_t seq;
        char *payload;
        size_t len;
        dealer_recv(d, &seq, &payload, &len);
        assert_true(seq == s);
        assert_true(payload_first_hash(payload, len) == 1000 + s);
        free(payload);
    }
    uint64_t seq;
    char *payload;
    size_t len;
    dealer_recv(d, &seq, &payload, &len);
    assert_true(seq == UINT64_MAX); /* end marker */
    assert_int_equal(len, 0);
    free(payload);
}

static void test_replay(void **state)
{
    void *ctx = zmq_ctx_new();
    kve_pub_t *p = mk_pub("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", "", FLUSH_MS, tweak_small_ring);
    assert_non_null(kve_replay_endpoint(p));
    /* five batches, seq 0..4 (no subscriber needed: PUB drops, the ring keeps the last 3) */
    for (uint64_t s = 0; s < 5; s++) {
        removed_one(p, 1000 + s);
        wait_batches(p, s + 1);
    }
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(d, kve_replay_endpoint(p)), 0);

    replay_request(d, 3);
    expect_replay(d, 3, 4);
    replay_request(d, 0); /* older than the ring: everything still buffered */
    expect_replay(d, 2, 4);
    /* a malformed request (no delimiter) is ignored; the socket keeps serving */
    assert_int_equal(zmq_send(d, "x", 1, 0), 1);
    replay_request(d, 4);
    expect_replay(d, 4, 4);
    replay_request(d, 99); /* nothing that new: just the end marker */
    expect_replay(d, 99, 98);

    zmq_close(d);
    kve_destroy(p);
    zmq_ctx_term(ctx);
}

/* VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0 end to end: the hashes arrive as 32-byte bin. */
static void test_bin_hashes_end_to_end(void **state)
{
    setenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES", "0", 1);
    void *ctx = zmq_ctx_new();
    kve_pub_t *p = mk_pub("tcp://127.0.0.1:*", NULL, "", FLUSH_MS, NULL);
    unsetenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES");
    void *sub = kvt_sub(ctx, kve_endpoint(p), false, "", NULL, 0);
    kvt_wait_ready(p, sub, FLUSH_MS);
    kvh_digest_t h = mk_digest(0xfedcba9876543210ULL);
    kve_block_removed(p, &h, 1);
    kvt_msg_t m;
    assert_true(kvt_recv(sub, 2000, &m));
    msgpack_unpacked u;
    const msgpack_object *evs = &kvt_decode(&u, m.payload, m.len)->via.array.ptr[1];
    const msgpack_object *hv =
        &kvt_map_get(&evs->via.array.ptr[0], "block_hashes")->via.array.ptr[0];
    assert_int_equal(hv->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(hv->via.bin.size, 32);
    assert_memory_equal(hv->via.bin.ptr, h.b, 32);
    msgpack_unpacked_destroy(&u);
    kvt_msg_free(&m);
    kve_destroy(p);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

static void test_null_publisher(void **state)
{
    kve_config_t c;
    kve_config_default(&c);
    int st = -1;
    kve_pub_t *p = kve_create(&c, &st); /* enable=false */
    assert_int_equal(st, ST_OK);
    assert_non_null(p);
    assert_null(kve_endpoint(p));
    removed_one(p, 1);
    kve_all_cleared(p);
    assert_int_equal(kve_batches_published(p), 0);
    kve_destroy(p);
    kve_destroy(NULL);
    kve_block_removed(NULL, NULL, 0); /* NULL publisher is a no-op */
    kve_config_deinit(&c);
}

static void test_create_errors(void **state)
{
    kve_config_t c;
    kve_config_default(&c);
    c.enable = true;
    sy_free(c.endpoint);
    c.endpoint = sy_strdup("bogus://x");
    int st = 0;
    assert_null(kve_create(&c, &st));
    assert_true(st < 0);
    sy_free(c.endpoint);
    c.endpoint = sy_strdup("tcp://127.0.0.1:*");
    c.replay_endpoint = sy_strdup("tcp://256.1.1.1:*");
    st = 0;
    assert_null(kve_create(&c, &st));
    assert_true(st < 0);
    sy_free(c.replay_endpoint);
    c.replay_endpoint = NULL;
    c.publisher = sy_strdup("kafka");
    st = 0;
    assert_null(kve_create(&c, &st));
    assert_int_equal(st, ST_INVAL);
    kve_config_deinit(&c);
}

/* Every allocation failure inside kve_create (and in queueing) is clean: NULL + ST_NOMEM or a
 * counted drop, no leak, no stuck thread. */
static void test_nomem(void **state)
{
    kve_config_t c;
    kve_config_default(&c);
    c.enable = true;
    sy_free(c.endpoint);
    c.endpoint = sy_strdup("tcp://127.0.0.1:*");
    c.buffer_steps = 4;
    for (uint64_t i = 1; i <= 8; i++) {
        int st = 0;
        sy_alloc_fail_after(i);
        kve_pub_t *p = kve_create(&c, &st);
        sy_alloc_fail_after(0);
        if (!p)
            assert_int_equal(st, ST_NOMEM);
        kve_destroy(p);
    }
    int st;
    kve_pub_t *p = kve_create(&c, &st);
    assert_non_null(p);
    sy_alloc_fail_after(1);
    removed_one(p, 1); /* the event allocation fails: counted as dropped */
    sy_alloc_fail_after(0);
    assert_int_equal(kve_events_dropped(p), 1);
    kve_destroy(p);
    kve_config_deinit(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_default),
        cmocka_unit_test(test_config_parse_full),
        cmocka_unit_test(test_config_publisher_auto),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_env_bin_hashes),
        cmocka_unit_test(test_endpoint_heuristic),
        cmocka_unit_test(test_encode_map_int),
        cmocka_unit_test(test_encode_map_bin),
        cmocka_unit_test(test_encode_legacy_array),
        cmocka_unit_test(test_encode_empty_and_negative),
        cmocka_unit_test(test_framing_and_seq),
        cmocka_unit_test(test_connect_mode_and_destroy_flush),
        cmocka_unit_test(test_queue_overflow_drops_oldest),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_bin_hashes_end_to_end),
        cmocka_unit_test(test_null_publisher),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
