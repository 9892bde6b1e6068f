/*
 * test_approx_index.c - the approximate prefix index: chained chunk hashing (xxh64, seed from
 * model + salt, trailing partial chunk, truncation), consecutive-prefix matching, per-endpoint
 * LRU eviction and capacity changes, clearing, and growth past the initial bucket array.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <xxhash.h>

#include "common/alloc.h"
#include "gateway/approx_index.h"

static void test_hash_prompt_chain(void **state)
{
    char text[200];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    uint64_t h[8], h2[8];
    /* 200 bytes / 64 = 3 full chunks + a partial one */
    size_t n = aidx_hash_prompt("m", NULL, text, sizeof text, 64, 256, h, 8);
    assert_int_equal(n, 4);
    /* chunk 0 = xxh64(bytes || seed LE), seed = xxh64("m") */
    uint64_t seed = XXH64("m", 1, 0);
    unsigned char buf[72];
    memcpy(buf, text, 64);
    for (int b = 0; b < 8; b++)
        buf[64 + b] = (unsigned char)(seed >> (8 * b));
    assert_true(h[0] == XXH64(buf, 72, 0));
    /* the partial chunk: 8 bytes || previous hash */
    memcpy(buf, text + 192, 8);
    for (int b = 0; b < 8; b++)
        buf[8 + b] = (unsigned char)(h[2] >> (8 * b));
    assert_true(h[3] == XXH64(buf, 16, 0));
    /* deterministic; chained: changing chunk 0 changes every hash */
    assert_int_equal(aidx_hash_prompt("m", NULL, text, sizeof text, 64, 256, h2, 8), 4);
    assert_memory_equal(h, h2, sizeof(uint64_t) * 4);
    text[0] = 'Z';
    aidx_hash_prompt("m", NULL, text, sizeof text, 64, 256, h2, 8);
    for (int i = 0; i < 4; i++)
        assert_true(h[i] != h2[i]);
    text[0] = 'a';
    /* model and salt seed the chain */
    aidx_hash_prompt("m2", NULL, text, sizeof text, 64, 256, h2, 8);
    assert_true(h[0] != h2[0]);
    aidx_hash_prompt("m", "salt", text, sizeof text, 64, 256, h2, 8);
    assert_true(h[0] != h2[0]);
    /* truncation by max_chunks and by cap; degenerate inputs */
    assert_int_equal(aidx_hash_prompt("m", NULL, text, sizeof text, 64, 2, h2, 8), 2);
    assert_true(h2[1] == h[1]);
    assert_int_equal(aidx_hash_prompt("m", NULL, text, sizeof text, 64, 256, h2, 3), 3);
    assert_int_equal(aidx_hash_prompt("m", NULL, text, 0, 64, 256, h2, 8), 0);
    assert_int_equal(aidx_hash_prompt("m", NULL, text, sizeof text, 0, 256, h2, 8), 0);
    assert_int_equal(aidx_hash_prompt("m", NULL, text, 64, 64, 256, h2, 8), 1);
}

static void test_record_and_match(void **state)
{
    aidx_t *x = aidx_create(4, 100);
    assert_non_null(x);
    uint64_t h[5] = {11, 22, 33, 44, 55};
    uint32_t out[4];
    aidx_record(x, 0, h, 5);
    aidx_record(x, 1, h, 2);
    uint64_t other[2] = {11, 99};
    aidx_record(x, 2, other, 2);
    uint64_t gap[2] = {22, 33}; /* no leading chunk: never matches */
    aidx_record(x, 3, gap, 2);
    assert_int_equal(aidx_num_entries(x), 11);
    aidx_match(x, h, 5, out, 4);
    assert_int_equal(out[0], 5);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 1);
    assert_int_equal(out[3], 0);
    /* only n_endpoints entries are written */
    out[3] = 777;
    aidx_match(x, h, 5, out, 3);
    assert_int_equal(out[3], 777);
    /* recording again is idempotent */
    aidx_record(x, 0, h, 5);
    assert_int_equal(aidx_num_entries(x), 11);
    /* out-of-range endpoint is ignored */
    aidx_record(x, 9, h, 5);
    assert_int_equal(aidx_num_entries(x), 11);
    aidx_clear_endpoint(x, 0);
    assert_int_equal(aidx_num_entries(x), 6);
    aidx_match(x, h, 5, out, 4);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 2);
    aidx_match(NULL, h, 5, out, 4);
    assert_int_equal(out[1], 0);
    aidx_destroy(x);
    aidx_destroy(NULL);
}

static void test_lru_eviction(void **state)
{
    aidx_t *x = aidx_create(2, 4);
    uint32_t out[2];
    uint64_t a[3] = {1, 2, 3}, b[3] = {7, 8, 9};
    aidx_record(x, 0, a, 3);
    aidx_record(x, 0, b, 3); /* 6 > 4: the two least recent of a (its tail: 2 and 3) go */
    assert_int_equal(aidx_num_entries(x), 4);
    aidx_match(x, b, 3, out, 2);
    assert_int_equal(out[0], 3);
    aidx_match(x, a, 3, out, 2);
    assert_int_equal(out[0], 1); /* the head of a survived (recorded most recently of a) */
    /* touching moves to MRU: re-record a[0], then add 2 more: b's tail goes first */
    aidx_record(x, 0, a, 1);
    uint64_t c[2] = {100, 101};
    aidx_record(x, 0, c, 2);
    aidx_match(x, a, 1, out, 2);
    assert_int_equal(out[0], 1);
    aidx_match(x, c, 2, out, 2);
    assert_int_equal(out[0], 2);
    /* endpoint 1 is independent */
    aidx_record(x, 1, a, 3);
    assert_int_equal(aidx_num_entries(x), 7);
    /* shrink capacity evicts oldest; capacity 0 stores nothing */
    aidx_set_capacity(x, 1, 1);
    assert_int_equal(aidx_num_entries(x), 5);
    aidx_match(x, a, 3, out, 2);
    assert_int_equal(out[1], 1);
    aidx_set_capacity(x, 1, 0);
    aidx_record(x, 1, a, 3);
    aidx_match(x, a, 3, out, 2);
    assert_int_equal(out[1], 0);
    aidx_destroy(x);
}

static void test_growth_many_entries(void **state)
{
    enum { N = 6000 };
    static uint64_t h[N];
    for (size_t i = 0; i < N; i++)
        h[i] = 0x9e3779b97f4a7c15ull * (i + 1);
    aidx_t *x = aidx_create(3, 31250);
    aidx_record(x, 0, h, N);
    aidx_record(x, 2, h, N / 2);
    assert_int_equal(aidx_num_entries(x), N + N / 2);
    uint32_t out[3];
    aidx_match(x, h, N, out, 3);
    assert_int_equal(out[0], N);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], N / 2);
    /* freed nodes are reused: memory stays bounded under churn */
    aidx_set_capacity(x, 0, 100);
    uint64_t live = sy_alloc_live_bytes();
    for (size_t r = 0; r < 50; r++)
        aidx_record(x, 0, h + r * 100, 100);
    assert_true(sy_alloc_live_bytes() <= live);
    assert_int_equal(aidx_num_entries(x), 100 + N / 2);
    aidx_destroy(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_prompt_chain),
        cmocka_unit_test(test_record_and_match),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_growth_many_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
