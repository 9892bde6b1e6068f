/*
 * test_kv_hash.c - sha256_cbor block hash: the spec §4.4 vectors, canonical CBOR heads checked
 * against hand-built bytes (RFC 8949 Appendix A encodings), salt handling and the chain helper.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "engine/kv_hash.h"

static void tokens_range(int32_t *t, int32_t first, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t[i] = first + (int32_t)i;
}

static void sha256_bytes(const uint8_t *p, size_t n, kvh_digest_t *out)
{
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(p, n, out->b, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
}

static void test_none_hash_seed0(void **state)
{
    kvh_digest_t h;
    char hex[65];
    kvh_none_hash("0", &h);
    kvh_hex(&h, hex);
    assert_string_equal(hex, "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e");
    /* = SHA256(cbor_text("0")) = SHA256(61 30) */
    const uint8_t cbor[] = {0x61, 0x30};
    kvh_digest_t ref;
    sha256_bytes(cbor, sizeof(cbor), &ref);
    assert_memory_equal(h.b, ref.b, 32);
}

static void test_none_hash_random(void **state)
{
    kvh_digest_t a, b, zero;
    memset(&zero, 0, sizeof(zero));
    kvh_none_hash(NULL, &a);
    kvh_none_hash(NULL, &b);
    assert_memory_not_equal(a.b, b.b, 32);
    assert_memory_not_equal(a.b, zero.b, 32);
}

static void test_spec_vectors(void **state)
{
    kvh_digest_t none, b0, b1, lora;
    int32_t t[32];
    char hex[65];
    tokens_range(t, 1, 32);
    kvh_none_hash("0", &none);
    kvh_block(&none, t, 16, NULL, 0, &b0);
    kvh_hex(&b0, hex);
    assert_string_equal(hex, "202da172482d928bbc42ab25b0151e2b895f13f41002e27b2ceabcfae6d332ea");
    assert_true(kvh_low64(&b0) == 3236607068019569386ULL);
    kvh_block(&b0, t + 16, 16, NULL, 0, &b1);
    assert_true(kvh_low64(&b1) == 2758186210834249151ULL);
    /* extra = ("my-lora",) is encoded exactly like our cache_salt extra key */
    kvh_block(&none, t, 16, "my-lora", 7, &lora);
    assert_true(kvh_low64(&lora) == 15444946753610453501ULL);
}

static void test_low64_big_endian(void **state)
{
    kvh_digest_t d;
    memset(&d, 0, sizeof(d));
    for (int i = 0; i < 8; i++)
        d.b[24 + i] = (uint8_t)(0xf1 + i);
    d.b[23] = 0xaa; /* not part of low64 */
    assert_true(kvh_low64(&d) == 0xf1f2f3f4f5f6f7f8ULL);
}

static void test_hex(void **state)
{
    kvh_digest_t d;
    char hex[65];
    for (int i = 0; i < 32; i++)
        d.b[i] = (uint8_t)(i * 8 + 7);
    kvh_hex(&d, hex);
    assert_int_equal(strlen(hex), 64);
    assert_memory_equal(hex, "070f171f", 8);
    assert_string_equal(hex + 56, "e7eff7ff"); /* bytes 28..31 */
}

/* Token heads at every CBOR length boundary, negative ints, and a text extra with a 1-byte
 * length head: compared with SHA-256 over bytes written out by hand. */
static void test_cbor_boundaries(void **state)
{
    const int32_t toks[] = {0, 23, 24, 255, 256, 65535, 65536, 1000000, INT32_MAX, -1, -100, -1000};
    const size_t n = sizeof(toks) / sizeof(toks[0]);
    char salt[30];
    memset(salt, 's', sizeof(salt));
    kvh_digest_t parent;
    for (int i = 0; i < 32; i++)
        parent.b[i] = (uint8_t)(0xa0 + i);

    uint8_t buf[256];
    size_t len = 0;
    buf[len++] = 0x83;
    buf[len++] = 0x58;
    buf[len++] = 0x20;
    memcpy(buf + len, parent.b, 32);
    len += 32;
    buf[len++] = 0x8c; /* array(12) */
    const uint8_t enc[] = {
        0x00,                         /* 0 */
        0x17,                         /* 23 */
        0x18, 0x18,                   /* 24 */
        0x18, 0xff,                   /* 255 */
        0x19, 0x01, 0x00,             /* 256 */
        0x19, 0xff, 0xff,             /* 65535 */
        0x1a, 0x00, 0x01, 0x00, 0x00, /* 65536 */
        0x1a, 0x00, 0x0f, 0x42, 0x40, /* 1000000 */
        0x1a, 0x7f, 0xff, 0xff, 0xff, /* INT32_MAX */
        0x20,                         /* -1 */
        0x38, 0x63,                   /* -100 */
        0x39, 0x03, 0xe7,             /* -1000 */
    };
    memcpy(buf + len, enc, sizeof(enc));
    len += sizeof(enc);
    buf[len++] = 0x81; /* [ */
    buf[len++] = 0x78; /* text, 1-byte length */
    buf[len++] = 30;
    memcpy(buf + len, salt, 30);
    len += 30;

    kvh_digest_t want, got;
    sha256_bytes(buf, len, &want);
    kvh_block(&parent, toks, n, salt, sizeof(salt), &got);
    assert_memory_equal(want.b, got.b, 32);

    /* Same block without salt ends in CBOR null (0xf6). */
    len -= 33;
    buf[len++] = 0xf6;
    sha256_bytes(buf, len, &want);
    kvh_block(&parent, toks, n, NULL, 0, &got);
    assert_memory_equal(want.b, got.b, 32);
}

/* A long block (more CBOR than the internal stream buffer) still hashes the exact bytes. */
static void test_long_block(void **state)
{
    enum { N = 300 };
    int32_t toks[N];
    uint8_t buf[3 + 32 + 3 + N * 5 + 1];
    size_t len = 0;
    kvh_digest_t parent, want, got;
    memset(parent.b, 0x11, 32);
    buf[len++] = 0x83;
    buf[len++] = 0x58;
    buf[len++] = 0x20;
    memcpy(buf + len, parent.b, 32);
    len += 32;
    buf[len++] = 0x99; /* array, 2-byte length */
    buf[len++] = N >> 8;
    buf[len++] = N & 0xff;
    for (int i = 0; i < N; i++) {
        toks[i] = 100000 + i;
        uint32_t v = (uint32_t)toks[i];
        buf[len++] = 0x1a;
        buf[len++] = (uint8_t)(v >> 24);
        buf[len++] = (uint8_t)(v >> 16);
        buf[len++] = (uint8_t)(v >> 8);
        buf[len++] = (uint8_t)v;
    }
    buf[len++] = 0xf6;
    sha256_bytes(buf, len, &want);
    kvh_block(&parent, toks, N, NULL, 0, &got);
    assert_memory_equal(want.b, got.b, 32);
}

static void test_salt_changes_chain(void **state)
{
    kvh_digest_t none;
    int32_t t[40];
    uint64_t plain[4], salted[4], salted2[4];
    tokens_range(t, 1, 40);
    kvh_none_hash("0", &none);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 40, NULL, 0, plain, 4), 2);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 40, "abc", 3, salted, 4), 2);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 40, "abd", 3, salted2, 4), 2);
    assert_true(plain[0] == 3236607068019569386ULL);
    assert_true(plain[1] == 2758186210834249151ULL);
    /* The salt goes in block 0's extra keys only, but the chain carries it to every block. */
    assert_true(salted[0] != plain[0] && salted[1] != plain[1]);
    assert_true(salted[0] != salted2[0] && salted[1] != salted2[1]);

    /* Block 1 of the salted chain = plain hash of block 1 under the salted block 0 parent. */
    kvh_digest_t s0, s1;
    kvh_block(&none, t, 16, "abc", 3, &s0);
    kvh_block(&s0, t + 16, 16, NULL, 0, &s1);
    assert_true(kvh_low64(&s0) == salted[0]);
    assert_true(kvh_low64(&s1) == salted[1]);

    /* An empty salt is an extra key too (text "" in a one-element array), unlike no salt. */
    uint64_t empty[2];
    kvh_chain_low64(&none, 16, t, 40, "", 0, empty, 2);
    assert_true(empty[0] != plain[0]);
}

static void test_chain_cap_and_partial(void **state)
{
    kvh_digest_t none;
    int32_t t[100];
    uint64_t out[8], one[1];
    tokens_range(t, 1, 100);
    kvh_none_hash("0", &none);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 15, NULL, 0, out, 8), 0);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 100, NULL, 0, out, 8), 6);
    /* cap smaller than the block count: still counts every block, writes only cap ids */
    one[0] = 0;
    assert_int_equal(kvh_chain_low64(&none, 16, t, 100, NULL, 0, one, 1), 6);
    assert_true(one[0] == out[0]);
    assert_int_equal(kvh_chain_low64(&none, 16, t, 100, NULL, 0, NULL, 0), 6);
    /* block size 4: chain of 25 blocks, each recomputable with kvh_block */
    uint64_t b4[25];
    assert_int_equal(kvh_chain_low64(&none, 4, t, 100, NULL, 0, b4, 25), 25);
    kvh_digest_t h = none;
    for (int k = 0; k < 25; k++) {
        kvh_digest_t nx;
        kvh_block(&h, t + 4 * k, 4, NULL, 0, &nx);
        assert_true(kvh_low64(&nx) == b4[k]);
        h = nx;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_hash_seed0),
        cmocka_unit_test(test_none_hash_random),
        cmocka_unit_test(test_spec_vectors),
        cmocka_unit_test(test_low64_big_endian),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_cbor_boundaries),
        cmocka_unit_test(test_long_block),
        cmocka_unit_test(test_salt_changes_chain),
        cmocka_unit_test(test_chain_cap_and_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
