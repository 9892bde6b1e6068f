/*
 * test_prefix_index.c - precise prefix index: add/remove/clear, longest consecutive prefix per
 * endpoint, re-add refresh, capacity eviction (least recently stored first), out-of-range
 * endpoints, the memory bound, a randomized check against a brute-force model, and a concurrency
 * smoke test with a writer thread while the test thread matches.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/prefix_index.h"

static uint64_t H(uint64_t i)
{
    return 0x9e3779b97f4a7c15ULL * (i + 1); /* distinct, spread */
}

static void test_empty(void **state)
{
    pidx_t *x = pidx_create(100, 8);
    assert_non_null(x);
    uint64_t h[3] = {H(0), H(1), H(2)};
    uint32_t out[8];
    memset(out, 0xff, sizeof(out));
    pidx_match(x, h, 3, out, 8);
    for (int e = 0; e < 8; e++)
        assert_int_equal(out[e], 0);
    assert_int_equal(pidx_num_entries(x), 0);
    assert_true(pidx_memory_bytes(x) > 0);
    pidx_destroy(x);
    pidx_destroy(NULL);
    assert_null(pidx_create(0, 8));
    assert_null(pidx_create(10, 0));
}

static void test_add_match_prefix(void **state)
{
    pidx_t *x = pidx_create(1000, 8);
    uint64_t h[10];
    for (int i = 0; i < 10; i++)
        h[i] = H(i);
    pidx_add(x, 0, h, 10);    /* ep0: all */
    pidx_add(x, 1, h, 4);     /* ep1: 0..3 */
    pidx_add(x, 2, h + 1, 9); /* ep2: 1..9 (no block 0) */
    pidx_add(x, 3, h, 2);     /* ep3: 0,1 and 5 */
    pidx_add(x, 3, h + 5, 1);
    assert_int_equal(pidx_num_entries(x), 10 + 4 + 9 + 3);

    uint32_t out[8];
    pidx_match(x, h, 10, out, 8);
    assert_int_equal(out[0], 10);
    assert_int_equal(out[1], 4);
    assert_int_equal(out[2], 0);
    assert_int_equal(out[3], 2);
    assert_int_equal(out[4], 0);

    /* fewer endpoints asked than exist: only those are written */
    uint32_t out2[2] = {99, 99};
    pidx_match(x, h, 10, out2, 2);
    assert_int_equal(out2[0], 10);
    assert_int_equal(out2[1], 4);
    /* more endpoints asked than the index has: extra ones are 0 */
    uint32_t out3[12];
    memset(out3, 0xff, sizeof(out3));
    pidx_match(x, h, 10, out3, 12);
    assert_int_equal(out3[0], 10);
    assert_int_equal(out3[11], 0);
    /* a prompt with an unknown block in the middle */
    uint64_t q[4] = {h[0], h[1], 12345, h[3]};
    pidx_match(x, q, 4, out, 8);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 2);
    /* duplicate add does not add an entry */
    pidx_add(x, 0, h, 10);
    assert_int_equal(pidx_num_entries(x), 26);
    pidx_destroy(x);
}

static void test_remove_clear(void **state)
{
    pidx_t *x = pidx_create(1000, 4);
    uint64_t h[6];
    for (int i = 0; i < 6; i++)
        h[i] = H(i);
    pidx_add(x, 0, h, 6);
    pidx_add(x, 1, h, 6);
    uint64_t r[2] = {h[2], 777};
    pidx_remove(x, 0, r, 2); /* 777 unknown: ignored */
    assert_int_equal(pidx_num_entries(x), 11);
    uint32_t out[4];
    pidx_match(x, h, 6, out, 4);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 6);
    pidx_remove(x, 0, r, 1); /* again: no-op */
    pidx_remove(x, 3, h, 6); /* ep3 holds nothing */
    assert_int_equal(pidx_num_entries(x), 11);

    pidx_clear_endpoint(x, 1);
    assert_int_equal(pidx_num_entries(x), 5);
    pidx_match(x, h, 6, out, 4);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 0);
    pidx_clear_endpoint(x, 0);
    assert_int_equal(pidx_num_entries(x), 0);
    /* reuse after clear */
    pidx_add(x, 2, h, 3);
    pidx_match(x, h, 6, out, 4);
    assert_int_equal(out[2], 3);
    /* out-of-range endpoint ids are ignored */
    pidx_add(x, 4, h, 3);
    pidx_add(x, 1000, h, 3);
    pidx_remove(x, 4, h, 3);
    pidx_clear_endpoint(x, 99);
    assert_int_equal(pidx_num_entries(x), 3);
    pidx_destroy(x);
}

static void test_eviction_lru(void **state)
{
    pidx_t *x = pidx_create(10, 2);
    uint64_t h[20];
    for (int i = 0; i < 20; i++)
        h[i] = H(i);
    pidx_add(x, 0, h, 10); /* full */
    assert_int_equal(pidx_num_entries(x), 10);
    assert_int_equal(pidx_evictions(x), 0);
    pidx_add(x, 0, h, 1); /* refresh h0: now h1 is the oldest */
    pidx_add(x, 1, h + 10, 2);
    assert_int_equal(pidx_num_entries(x), 10);
    assert_int_equal(pidx_evictions(x), 2);
    uint32_t out[2];
    pidx_match(x, h, 1, out, 2);
    assert_int_equal(out[0], 1); /* h0 survived */
    pidx_match(x, h + 1, 2, out, 2);
    assert_int_equal(out[0], 0); /* h1, h2 evicted */
    pidx_match(x, h + 3, 7, out, 2);
    assert_int_equal(out[0], 7);
    pidx_match(x, h + 10, 2, out, 2);
    assert_int_equal(out[1], 2);

    /* the same hash on two endpoints is two entries; evicting one keeps the other */
    pidx_t *y = pidx_create(3, 4);
    pidx_add(y, 0, h, 1);
    pidx_add(y, 1, h, 1);
    pidx_add(y, 2, h, 1);
    pidx_add(y, 3, h, 1); /* evicts (h0, ep0) */
    pidx_match(y, h, 1, out, 2);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(pidx_num_entries(y), 3);
    /* a stream much larger than the capacity keeps the bound */
    for (uint64_t i = 0; i < 1000; i++) {
        uint64_t k = H(i + 100);
        pidx_add(y, (uint32_t)(i % 4), &k, 1);
        assert_true(pidx_num_entries(y) <= 3);
    }
    uint64_t last = H(999 + 100);
    uint32_t o4[4];
    pidx_match(y, &last, 1, o4, 4);
    assert_int_equal(o4[999 % 4], 1);
    pidx_destroy(y);
    pidx_destroy(x);
}

/* Randomized operations against a brute-force model (entries as a small matrix). */
#define MODEL_KEYS 64
#define MODEL_EPS 70 /* > 64: two bitmap words */
static void test_model(void **state)
{
    pidx_t *x = pidx_create(100000, MODEL_EPS);
    static uint8_t held[MODEL_KEYS][MODEL_EPS];
    memset(held, 0, sizeof(held));
    srand(42);
    size_t count = 0;
    for (int step = 0; step < 20000; step++) {
        int op = rand() % 10;
        uint32_t ep = (uint32_t)(rand() % MODEL_EPS);
        int k = rand() % MODEL_KEYS;
        uint64_t h = H((uint64_t)k);
        if (op < 6) {
            pidx_add(x, ep, &h, 1);
            count += !held[k][ep];
            held[k][ep] = 1;
        } else if (op < 9) {
            pidx_remove(x, ep, &h, 1);
            count -= held[k][ep];
            held[k][ep] = 0;
        } else if (rand() % 20 == 0) {
            pidx_clear_endpoint(x, ep);
            for (int i = 0; i < MODEL_KEYS; i++) {
                count -= held[i][ep];
                held[i][ep] = 0;
            }
        }
        if (step % 100 == 0) {
            assert_int_equal(pidx_num_entries(x), count);
            uint64_t q[16];
            int start = rand() % (MODEL_KEYS - 16);
            for (int i = 0; i < 16; i++)
                q[i] = H((uint64_t)(start + i));
            uint32_t out[MODEL_EPS];
            pidx_match(x, q, 16, out, MODEL_EPS);
            for (uint32_t e = 0; e < MODEL_EPS; e++) {
                uint32_t want = 0;
                while (want < 16 && held[start + (int)want][e])
                    want++;
                assert_int_equal(out[e], want);
            }
        }
    }
    pidx_destroy(x);
}

static void test_memory_bound(void **state)
{
    /* 1M blocks x 64 endpoints must stay under 256 MB; filling it allocates nothing more */
    pidx_t *x = pidx_create(1000000, 64);
    assert_non_null(x);
    size_t mem = pidx_memory_bytes(x);
    assert_true(mem < (size_t)256 << 20);
    uint64_t *h = malloc(1000 * sizeof(uint64_t));
    for (uint64_t round = 0; round < 1100; round++) {
        for (int i = 0; i < 1000; i++)
            h[i] = H(round * 1000 + (uint64_t)i);
        pidx_add(x, (uint32_t)(round % 64), h, 1000);
    }
    assert_int_equal(pidx_num_entries(x), 1000000);
    assert_int_equal(pidx_evictions(x), 100000);
    assert_int_equal(pidx_memory_bytes(x), mem);
    free(h);
    pidx_destroy(x);
}

typedef struct writer_arg {
    pidx_t *x;
    atomic_int stop;
} writer_arg_t;

static void *writer(void *arg)
{
    writer_arg_t *w = arg;
    uint64_t h[32];
    for (uint64_t r = 0; !atomic_load(&w->stop) && r < 200000; r++) {
        for (int i = 0; i < 32; i++)
            h[i] = H((r * 7 + (uint64_t)i) % 5000);
        uint32_t ep = (uint32_t)(r % 16);
        if (r % 3 == 2)
            pidx_remove(w->x, ep, h, 32);
        else
            pidx_add(w->x, ep, h, 32);
        if (r % 997 == 0)
            pidx_clear_endpoint(w->x, ep);
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    writer_arg_t w = {pidx_create(2000, 16), 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
    uint64_t q[64];
    for (int i = 0; i < 64; i++)
        q[i] = H((uint64_t)i);
    for (int i = 0; i < 20000; i++) {
        uint32_t out[16];
        pidx_match(w.x, q, 64, out, 16);
        for (int e = 0; e < 16; e++)
            assert_true(out[e] <= 64);
        assert_true(pidx_num_entries(w.x) <= 2000);
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    assert_true(pidx_num_entries(w.x) <= 2000);
    pidx_destroy(w.x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),        cmocka_unit_test(test_add_match_prefix),
        cmocka_unit_test(test_remove_clear), cmocka_unit_test(test_eviction_lru),
        cmocka_unit_test(test_model),        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
