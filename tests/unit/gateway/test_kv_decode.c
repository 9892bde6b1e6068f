/*
 * test_kv_decode.c - KV-event payload decoder: the spec §3.6 examples in the legacy tagged-array
 * and current map encodings (built here with msgpack-c), the engine encoder's own output,
 * bin (32-byte) and negative int64 hashes, 2-element and map batches, unknown tags and keys,
 * limits, framing, and hostile payloads (truncations of every prefix, huge container headers,
 * deep nesting, wrong types) that must come back as ST_PROTO without crashing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "common/buf.h"
#include "common/status.h"
#include "engine/kv_events_int.h"
#include "gateway/kv_decode.h"

#define H0 3236607068019569386ULL
#define H1 2758186210834249151ULL
#define H2 15444946753610453501ULL

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pk_tokens(msgpack_packer *pk, int n)
{
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 1; i <= n; i++)
        msgpack_pack_int(pk, i);
}

/* The §3.6 legacy example: [ts, [Stored(H0,H1), Removed(H2)], 0]. */
static void build_legacy(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, 1733000000.125);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_array(&pk, 11);
    pk_str(&pk, "BlockStored");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, H0);
    msgpack_pack_uint64(&pk, H1);
    msgpack_pack_nil(&pk);
    pk_tokens(&pk, 32);
    msgpack_pack_int(&pk, 16);
    msgpack_pack_nil(&pk);
    pk_str(&pk, "GPU");
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 0);
    pk_str(&pk, "full_attention");
    msgpack_pack_array(&pk, 4);
    pk_str(&pk, "BlockRemoved");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint64(&pk, H2);
    pk_str(&pk, "GPU");
    msgpack_pack_int(&pk, 0);
    msgpack_pack_int(&pk, 0);
}

/* The §3.6 map example, plus an unknown key, with the batch as an array or a map. */
static void build_map(msgpack_sbuffer *sb, bool map_batch, int batch_elems)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (map_batch) {
        msgpack_pack_map(&pk, 4);
        pk_str(&pk, "future");
        msgpack_pack_true(&pk);
        pk_str(&pk, "data_parallel_rank");
        msgpack_pack_int(&pk, 3);
        pk_str(&pk, "ts");
        msgpack_pack_double(&pk, 1733000000.125);
        pk_str(&pk, "events");
    } else {
        msgpack_pack_array(&pk, (size_t)batch_elems);
        msgpack_pack_double(&pk, 1733000000.125);
    }
    msgpack_pack_array(&pk, 4);
    /* keys in a different order than declared, plus an unknown key */
    msgpack_pack_map(&pk, 13);
    pk_str(&pk, "token_ids");
    pk_tokens(&pk, 32);
    pk_str(&pk, "type");
    pk_str(&pk, "BlockStored");
    pk_str(&pk, "session_id");
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "x");
    msgpack_pack_array(&pk, 0);
    pk_str(&pk, "block_hashes");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, H0);
    msgpack_pack_uint64(&pk, H1);
    pk_str(&pk, "parent_block_hash");
    msgpack_pack_nil(&pk);
    pk_str(&pk, "block_size");
    msgpack_pack_int(&pk, 16);
    pk_str(&pk, "lora_id");
    msgpack_pack_nil(&pk);
    pk_str(&pk, "medium");
    pk_str(&pk, "GPU");
    pk_str(&pk, "lora_name");
    msgpack_pack_nil(&pk);
    pk_str(&pk, "extra_keys");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    pk_str(&pk, "group_idx");
    msgpack_pack_int(&pk, 0);
    pk_str(&pk, "kv_cache_spec_kind");
    pk_str(&pk, "full_attention");
    msgpack_pack_int(&pk, 42); /* a non-string key: ignored */
    msgpack_pack_int(&pk, 42);
    msgpack_pack_map(&pk, 4);
    pk_str(&pk, "type");
    pk_str(&pk, "BlockRemoved");
    pk_str(&pk, "block_hashes");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_uint64(&pk, H2);
    pk_str(&pk, "medium");
    pk_str(&pk, "GPU");
    pk_str(&pk, "group_idx");
    msgpack_pack_int(&pk, 0);
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "type");
    pk_str(&pk, "SomeFutureEvent");
    pk_str(&pk, "block_hashes");
    pk_str(&pk, "whatever");
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "type");
    pk_str(&pk, "AllBlocksCleared");
    if (!map_batch && batch_elems >= 3)
        msgpack_pack_int(&pk, 0);
    for (int i = 3; i < batch_elems; i++)
        msgpack_pack_nil(&pk);
}

static void check_stored(const kvd_event_t *e)
{
    assert_int_equal(e->type, KVD_BLOCK_STORED);
    assert_int_equal(e->n_hashes, 2);
    assert_true(e->hashes[0] == H0);
    assert_true(e->hashes[1] == H1);
    assert_false(e->has_parent);
    assert_true(e->has_tokens);
    assert_int_equal(e->n_tokens, 32);
    assert_int_equal(e->token_ids[0], 1);
    assert_int_equal(e->token_ids[31], 32);
    assert_int_equal(e->block_size, 16);
    assert_int_equal(e->medium.len, 3);
    assert_memory_equal(e->medium.ptr, "GPU", 3);
    assert_null(e->lora_name.ptr);
    assert_false(e->has_lora_id);
    assert_false(e->has_extra0);
    assert_int_equal(e->group_idx, 0);
}

static void check_removed(const kvd_event_t *e)
{
    assert_int_equal(e->type, KVD_BLOCK_REMOVED);
    assert_int_equal(e->n_hashes, 1);
    assert_true(e->hashes[0] == H2);
}

static void test_legacy_example(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build_legacy(&sb);
    kvd_batch_t b;
    kvd_batch_init(&b);
    assert_int_equal(kvd_decode(&b, sb.data, sb.size, NULL), ST_OK);
    assert_true(b.ts == 1733000000.125);
    assert_int_equal(b.n_events, 2);
    assert_int_equal(b.n_unknown, 0);
    check_stored(&b.events[0]);
    check_removed(&b.events[1]);
    /* decode again into the same batch: results replaced, not appended */
    assert_int_equal(kvd_decode(&b, sb.data, sb.size, NULL), ST_OK);
    assert_int_equal(b.n_events, 2);
    check_stored(&b.events[0]);
    kvd_batch_deinit(&b);
    msgpack_sbuffer_destroy(&sb);
}

static void test_map_example(void **state)
{
    struct {
        bool map_batch;
        int elems;
    } cases[] = {{false, 3}, {false, 2}, {false, 5}, {true, 0}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        build_map(&sb, cases[c].map_batch, cases[c].elems);
        kvd_batch_t b;
        kvd_batch_init(&b);
        assert_int_equal(kvd_decode(&b, sb.data, sb.size, NULL), ST_OK);
        assert_true(b.ts == 1733000000.125);
        assert_int_equal(b.n_events, 3);
        assert_int_equal(b.n_unknown, 1);
        check_stored(&b.events[0]);
        check_removed(&b.events[1]);
        assert_int_equal(b.events[2].type, KVD_ALL_CLEARED);
        assert_int_equal(b.dp_rank, cases[c].map_batch ? 3 : 0);
        kvd_batch_deinit(&b);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* The engine's encoder (both encodings, int and bin hashes) decodes to what it was given. */
static void test_engine_encoder(void **state)
{
    kvh_digest_t none, d[3];
    kvh_none_hash("0", &none);
    int32_t toks[48];
    for (int i = 0; i < 48; i++)
        toks[i] = i + 1;
    kvh_block(&none, toks, 16, NULL, 0, &d[0]);
    kvh_block(&d[0], toks + 16, 16, NULL, 0, &d[1]);
    kvh_block(&d[1], toks + 32, 16, NULL, 0, &d[2]);
    assert_true(kvh_low64(&d[0]) == H0); /* spec §4.4 test vector */
    assert_true(kvh_low64(&d[1]) == H1);
    for (int legacy = 0; legacy < 2; legacy++) {
        for (int ints = 0; ints < 2; ints++) {
            kve_event_t *e1 = kve_event_new(KVE_EV_STORED, d, 2, NULL, toks, 16);
            kve_event_t *e2 = kve_event_new(KVE_EV_STORED, &d[2], 1, &d[1], toks + 32, 16);
            kve_event_t *e3 = kve_event_new(KVE_EV_REMOVED, d, 3, NULL, NULL, 0);
            kve_event_t *e4 = kve_event_new(KVE_EV_CLEARED, NULL, 0, NULL, NULL, 0);
            e1->next = e2;
            e2->next = e3;
            e3->next = e4;
            sy_buf_t out = SY_BUF_INIT;
            assert_int_equal(kve_encode_batch(e1, 4, 12.5, legacy, ints, &out), ST_OK);
            kvd_batch_t b;
            kvd_batch_init(&b);
            assert_int_equal(kvd_decode(&b, out.data, out.len, NULL), ST_OK);
            assert_int_equal(b.n_events, 4);
            assert_true(b.ts == 12.5);
            assert_int_equal(b.events[0].type, KVD_BLOCK_STORED);
            assert_int_equal(b.events[0].n_hashes, 2);
            assert_true(b.events[0].hashes[0] == H0);
            assert_true(b.events[0].hashes[1] == H1);
            assert_false(b.events[0].has_parent);
            assert_int_equal(b.events[0].n_tokens, 32);
            assert_int_equal(b.events[0].block_size, 16);
            assert_true(b.events[1].has_parent);
            assert_true(b.events[1].parent == H1);
            assert_true(b.events[1].hashes[0] == kvh_low64(&d[2]));
            assert_int_equal(b.events[1].token_ids[0], 33);
            assert_int_equal(b.events[2].type, KVD_BLOCK_REMOVED);
            assert_int_equal(b.events[2].n_hashes, 3);
            assert_true(b.events[2].hashes[2] == kvh_low64(&d[2]));
            assert_int_equal(b.events[3].type, KVD_ALL_CLEARED);
            kvd_batch_deinit(&b);
            sy_buf_deinit(&out);
            kve_event_free_list(e1);
        }
    }
}

/* Hash encodings: bin32 folded to the last 8 bytes, negative int64 reinterpreted, small fixint. */
static void test_hash_encodings(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint8_t bin[32];
    for (int i = 0; i < 32; i++)
        bin[i] = (uint8_t)i;
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    pk_str(&pk, "BlockStored");
    msgpack_pack_array(&pk, 4);
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, bin, 32);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_int(&pk, 5);
    msgpack_pack_uint64(&pk, UINT64_MAX - 1);
    msgpack_pack_bin(&pk, 32); /* parent as bin */
    msgpack_pack_bin_body(&pk, bin, 32);
    kvd_batch_t b;
    kvd_batch_init(&b);
    assert_int_equal(kvd_decode(&b, sb.data, sb.size, NULL), ST_OK);
    assert_true(b.ts == 7.0);
    assert_int_equal(b.n_events, 1);
    const kvd_event_t *e = &b.events[0];
    assert_int_equal(e->n_hashes, 4);
    assert_true(e->hashes[0] == 0x18191a1b1c1d1e1fULL);
    assert_true(e->hashes[1] == UINT64_MAX);
    assert_true(e->hashes[2] == 5);
    assert_true(e->hashes[3] == UINT64_MAX - 1);
    assert_true(e->has_parent);
    assert_true(e->parent == 0x18191a1b1c1d1e1fULL);
    assert_false(e->has_tokens); /* short legacy array: trailing fields absent */
    assert_int_equal(e->block_size, 0);
    kvd_batch_deinit(&b);
    msgpack_sbuffer_destroy(&sb);
}

/* Packs [0, [ev]] where ev is built by fn, and returns kvd_decode's status. */
static int decode_with(void (*fn)(msgpack_packer *), const kvd_limits_t *lim, kvd_batch_t *b)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, 1.0);
    fn(&pk);
    msgpack_pack_int(&pk, 0);
    int st = kvd_decode(b, sb.data, sb.size, lim);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

static void ev_bad_hash_type(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 2);
    pk_str(pk, "BlockRemoved");
    msgpack_pack_array(pk, 1);
    pk_str(pk, "not-a-hash");
}
static void ev_short_bin(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 2);
    pk_str(pk, "BlockRemoved");
    msgpack_pack_array(pk, 1);
    msgpack_pack_bin(pk, 4);
    msgpack_pack_bin_body(pk, "abcd", 4);
}
static void ev_no_hashes(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    pk_str(pk, "type");
    pk_str(pk, "BlockStored");
}
static void ev_no_type(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    pk_str(pk, "block_hashes");
    msgpack_pack_array(pk, 0);
}
static void ev_int_tag(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
}
static void ev_scalar(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_int(pk, 1);
}
static void ev_big_token(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 4);
    pk_str(pk, "BlockStored");
    msgpack_pack_array(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint64(pk, (uint64_t)1 << 40);
}
static void ev_neg_block_size(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 5);
    pk_str(pk, "BlockStored");
    msgpack_pack_array(pk, 0);
    msgpack_pack_nil(pk);
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, -16);
}
static void ev_events_not_array(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}
static void ev_many(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 5);
    for (int i = 0; i < 5; i++) {
        msgpack_pack_array(pk, 4);
        pk_str(pk, "BlockStored");
        msgpack_pack_array(pk, 2);
        msgpack_pack_int(pk, 1);
        msgpack_pack_int(pk, 2);
        msgpack_pack_nil(pk);
        pk_tokens(pk, 10);
    }
}

static void test_bad_events(void **state)
{
    void (*bad[])(msgpack_packer *) = {ev_bad_hash_type, ev_short_bin,      ev_no_hashes,
                                       ev_no_type,       ev_int_tag,        ev_scalar,
                                       ev_big_token,     ev_neg_block_size, ev_events_not_array};
    kvd_batch_t b;
    kvd_batch_init(&b);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode_with(bad[i], NULL, &b), ST_PROTO);
        assert_int_equal(b.n_events, 0);
        assert_true(b.err[0] != '\0');
    }
    /* limits: 5 events x 2 hashes x 10 tokens */
    assert_int_equal(decode_with(ev_many, NULL, &b), ST_OK);
    assert_int_equal(b.n_events, 5);
    assert_true(b.events[4].hashes[1] == 2);
    kvd_limits_t lim;
    kvd_limits_default(&lim);
    lim.max_events = 4;
    assert_int_equal(decode_with(ev_many, &lim, &b), ST_PROTO);
    kvd_limits_default(&lim);
    lim.max_hashes = 9;
    assert_int_equal(decode_with(ev_many, &lim, &b), ST_PROTO);
    kvd_limits_default(&lim);
    lim.max_tokens = 49;
    assert_int_equal(decode_with(ev_many, &lim, &b), ST_PROTO);
    lim.max_tokens = 50;
    assert_int_equal(decode_with(ev_many, &lim, &b), ST_OK);
    kvd_limits_default(&lim);
    lim.max_payload = 10;
    assert_int_equal(decode_with(ev_many, &lim, &b), ST_PROTO);
    kvd_batch_deinit(&b);
}

static void test_hostile_bytes(void **state)
{
    kvd_batch_t b;
    kvd_batch_init(&b);
    /* every strict prefix of a valid payload is rejected */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    build_map(&sb, false, 3);
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(kvd_decode(&b, sb.data, n, NULL), ST_PROTO);
    /* trailing garbage */
    char *longer = malloc(sb.size + 1);
    memcpy(longer, sb.data, sb.size);
    longer[sb.size] = 0x00;
    assert_int_equal(kvd_decode(&b, longer, sb.size + 1, NULL), ST_PROTO);
    free(longer);
    msgpack_sbuffer_destroy(&sb);

    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xdd\xff\xff\xff\xff", 5},         /* array32 of 4G elements */
        {"\xdf\xff\xff\xff\xff\x00\x00", 7}, /* map32 of 4G pairs */
        {"\x92\xcb\x00\x00\x00\x00\x00\x00\x00\x00\xdd\x7f\xff\xff\xff", 15},
        {"\xc6\xff\xff\xff\xff\x00", 6},     /* bin32 longer than the input */
        {"\xc1", 1},                         /* reserved byte */
        {"\x2a", 1},                         /* a bare integer */
        {"\x91\x00", 2},                     /* 1-element batch */
        {"\x90", 1},                         /* empty batch */
        {"\x92\xa1x\x90", 4},                /* ts is a string */
        {"\x92\x00\x91\x90", 4},             /* empty event array */
        {"\x81\xa2ts\x00", 5},               /* map batch without events */
        {"\x92\x00\x91\xc7\x01\x05\x00", 7}, /* ext as an event */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(kvd_decode(&b, cases[i].bytes, cases[i].len, NULL), ST_PROTO);
    /* an empty events array is fine */
    assert_int_equal(kvd_decode(&b, "\x92\x00\x90", 3, NULL), ST_OK);
    assert_int_equal(b.n_events, 0);

    /* nesting deeper than msgpack-c's stack: [[[[...]]]] */
    char deep[200];
    deep[0] = (char)0x92;
    deep[1] = 0x00;
    for (int i = 2; i < 199; i++)
        deep[i] = (char)0x91;
    deep[199] = (char)0x90;
    assert_int_equal(kvd_decode(&b, deep, sizeof(deep), NULL), ST_PROTO);
    /* random bytes never crash */
    srand(7);
    char rnd[256];
    for (int r = 0; r < 20000; r++) {
        size_t n = (size_t)(rand() % 256);
        for (size_t i = 0; i < n; i++)
            rnd[i] = (char)(rand() & 0xff);
        int st = kvd_decode(&b, rnd, n, NULL);
        assert_true(st == ST_OK || st == ST_PROTO);
    }
    kvd_batch_deinit(&b);
    kvd_batch_deinit(NULL);
}

static void test_framing(void **state)
{
    uint8_t seq[8] = {0, 0, 0, 0, 0, 0, 1, 7};
    uint64_t v = 0;
    assert_int_equal(kvd_check_framing(3, seq, 8, &v), ST_OK);
    assert_true(v == 263);
    assert_int_equal(kvd_check_framing(2, seq, 8, &v), ST_PROTO);
    assert_int_equal(kvd_check_framing(4, seq, 8, &v), ST_PROTO);
    assert_int_equal(kvd_check_framing(3, seq, 7, &v), ST_PROTO);
    uint8_t out[8];
    kvd_be64_put(out, 0x0102030405060708ULL);
    assert_true(kvd_be64_get(out) == 0x0102030405060708ULL);
    assert_int_equal(out[0], 1);
    assert_string_equal(kvd_type_name(KVD_ALL_CLEARED), "AllBlocksCleared");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_example), cmocka_unit_test(test_map_example),
        cmocka_unit_test(test_engine_encoder), cmocka_unit_test(test_hash_encodings),
        cmocka_unit_test(test_bad_events),     cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
