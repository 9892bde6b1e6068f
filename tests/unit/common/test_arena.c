/*
 * test_arena.c - region allocator: alignment, non-overlap, big blocks, strdup/calloc, cleanup order
 * on destroy and reset, failure injection and no leaks (live-byte accounting).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/status.h"

static void test_alloc_aligned_disjoint(void **state)
{
    uint64_t live = sy_alloc_live_bytes();
    sy_arena_t *a = sy_arena_create(512);
    assert_non_null(a);
    unsigned char *ptrs[200];
    size_t sizes[200];
    for (size_t i = 0; i < 200; i++) {
        sizes[i] = (i * 7) % 90; /* includes 0 */
        ptrs[i] = sy_arena_alloc(a, sizes[i]);
        assert_non_null(ptrs[i]);
        assert_int_equal((uintptr_t)ptrs[i] % 16, 0);
        memset(ptrs[i], (int)(i & 0xff), sizes[i]);
    }
    for (size_t i = 0; i < 200; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(ptrs[i][k], i & 0xff);
        if (i > 0)
            assert_ptr_not_equal(ptrs[i], ptrs[i - 1]); /* size 0 still unique */
    }
    assert_true(sy_arena_used(a) >= 200 * 16 / 2);
    assert_true(sy_arena_reserved(a) >= sy_arena_used(a));
    sy_arena_destroy(a);
    sy_arena_destroy(NULL);
    assert_int_equal(sy_alloc_live_bytes(), live);
}

static void test_big_blocks(void **state)
{
    sy_arena_t *a = sy_arena_create(1024);
    char *small1 = sy_arena_alloc(a, 32);
    char *big = sy_arena_alloc(a, 100000); /* dedicated chunk */
    char *small2 = sy_arena_alloc(a, 32);
    assert_non_null(small1);
    assert_non_null(big);
    assert_non_null(small2);
    assert_int_equal((uintptr_t)big % 16, 0);
    memset(big, 'b', 100000);
    /* the current chunk keeps serving small requests right after the first one */
    assert_ptr_equal(small2, small1 + 32);
    assert_null(sy_arena_alloc(a, SIZE_MAX));
    assert_null(sy_arena_alloc(a, SIZE_MAX - 8));
    sy_arena_destroy(a);
}

static void test_strings_and_calloc(void **state)
{
    sy_arena_t *a = sy_arena_create(0);
    char *s = sy_arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    assert_string_equal(sy_arena_strdup(a, "x"), "x");
    assert_string_equal(sy_arena_strndup(a, "", 0), "");
    assert_null(sy_arena_strdup(a, NULL));
    int *z = sy_arena_calloc(a, 100, sizeof *z);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    assert_null(sy_arena_calloc(a, SIZE_MAX / 2, 4));
    sy_arena_destroy(a);
}

static char g_order[16];
static size_t g_n;

static void record(void *arg)
{
    g_order[g_n++] = *(const char *)arg;
}

static void test_cleanup_order(void **state)
{
    static const char ids[] = "abc";
    sy_arena_t *a = sy_arena_create(256);
    g_n = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sy_arena_add_cleanup(a, record, (void *)&ids[i]), ST_OK);
    assert_int_equal(sy_arena_add_cleanup(a, NULL, NULL), ST_INVAL);
    sy_arena_destroy(a);
    assert_int_equal(g_n, 3);
    assert_memory_equal(g_order, "cba", 3);
}

static void test_reset(void **state)
{
    static const char ids[] = "xy";
    uint64_t live = sy_alloc_live_bytes();
    sy_arena_t *a = sy_arena_create(256);
    g_n = 0;
    for (int i = 0; i < 50; i++)
        assert_non_null(sy_arena_alloc(a, 48));
    assert_non_null(sy_arena_alloc(a, 5000));
    sy_arena_add_cleanup(a, record, (void *)&ids[0]);
    sy_arena_add_cleanup(a, record, (void *)&ids[1]);
    size_t before = sy_arena_reserved(a);
    sy_arena_reset(a);
    assert_int_equal(g_n, 2);
    assert_memory_equal(g_order, "yx", 2);
    assert_int_equal(sy_arena_used(a), 0);
    assert_int_equal(sy_arena_reserved(a), 256); /* one chunk kept for reuse */
    assert_true(before > 256);
    char *p = sy_arena_alloc(a, 16);
    assert_non_null(p);
    /* cleanups registered after a reset run once, at destroy */
    sy_arena_add_cleanup(a, record, (void *)&ids[0]);
    sy_arena_destroy(a);
    assert_int_equal(g_n, 3);
    assert_int_equal(sy_alloc_live_bytes(), live);
}

static void test_nomem(void **state)
{
    uint64_t live = sy_alloc_live_bytes();
    sy_alloc_fail_after(1);
    assert_null(sy_arena_create(0));
    sy_arena_t *a = sy_arena_create(256);
    sy_alloc_fail_after(1);
    assert_null(sy_arena_alloc(a, 10));
    sy_alloc_fail_after(1);
    assert_int_equal(sy_arena_add_cleanup(a, record, NULL), ST_NOMEM);
    sy_alloc_fail_after(0);
    assert_non_null(sy_arena_alloc(a, 10));
    sy_alloc_fail_after(1);
    assert_null(sy_arena_alloc(a, 10000)); /* big block path */
    sy_alloc_fail_after(0);
    g_n = 0;
    sy_arena_destroy(a);
    assert_int_equal(g_n, 0); /* the failed registration never runs */
    assert_int_equal(sy_alloc_live_bytes(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_aligned_disjoint),
        cmocka_unit_test(test_big_blocks),
        cmocka_unit_test(test_strings_and_calloc),
        cmocka_unit_test(test_cleanup_order),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
