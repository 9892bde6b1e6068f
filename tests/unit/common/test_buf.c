/*
 * test_buf.c - sy_buf (append/appendf/i64/consume), JSON string escaping (including invalid UTF-8
 * replaced by U+FFFD), the UTF-8 helpers, and the allocator wrapper (live-byte accounting and
 * failure injection).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/status.h"

static void test_append_and_appendf(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_str(&b, "abc"), ST_OK);
    assert_int_equal(sy_buf_append_char(&b, '-'), ST_OK);
    assert_int_equal(sy_buf_appendf(&b, "%d/%s", 42, "x"), ST_OK);
    assert_string_equal(b.data, "abc-42/x");
    assert_int_equal(b.len, 8);
    /* longer than the 256-byte stack fast path */
    char big[1000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sy_buf_appendf(&b, "[%s]", big), ST_OK);
    assert_int_equal(b.len, 8 + 2 + 999);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(b.data[9], 'z');
    assert_int_equal(b.data[b.len - 1], ']');
    sy_buf_consume(&b, 4);
    assert_memory_equal(b.data, "42/x[", 5);
    sy_buf_consume(&b, b.len + 10);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    sy_buf_reset(&b);
    assert_int_equal(sy_buf_append(&b, NULL, 0), ST_OK);
    sy_buf_deinit(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void test_append_i64(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    sy_buf_append_i64(&b, 0);
    sy_buf_append_char(&b, ' ');
    sy_buf_append_i64(&b, -17);
    sy_buf_append_char(&b, ' ');
    sy_buf_append_i64(&b, INT64_MAX);
    sy_buf_append_char(&b, ' ');
    sy_buf_append_i64(&b, INT64_MIN);
    assert_string_equal(b.data, "0 -17 9223372036854775807 -9223372036854775808");
    sy_buf_deinit(&b);
}

static void json(const char *in, size_t len, const char *want)
{
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_json_str(&b, in, len), ST_OK);
    assert_non_null(b.data);
    assert_int_equal(b.len, strlen(want));
    assert_int_equal(b.data[b.len], '\0'); /* buf.h: NUL-terminated whenever cap > 0 */
    assert_memory_equal(b.data, want, b.len);
    sy_buf_deinit(&b);
}

static void test_json_escaping(void **state)
{
    json("plain", 5, "plain");
    json("q\"b\\s/", 6, "q\\\"b\\\\s/");
    json("\n\r\t\b\f", 5, "\\n\\r\\t\\u0008\\u000c");
    json("\x01\x1f", 2, "\\u0001\\u001f");
    json("a\0b", 3, "a\\u0000b"); /* embedded NUL */
    json("\x7f", 1, "\x7f");      /* DEL is legal in JSON strings */
    /* valid UTF-8 passes through: e-acute, euro sign, emoji */
    json("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    /* invalid: stray continuation, 0xff, overlong, surrogate, truncated, > U+10FFFF */
    json("a\x80z", 3, "a\xef\xbf\xbdz");
    json("\xff", 1, "\xef\xbf\xbd");
    json("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
    json("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json("x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd");
    json("\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

/* buf.h promises NUL termination whenever cap > 0, also after a reserve on an empty buffer. */
static void test_nul_after_reserve(void **state)
{
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_json_str(&b, "", 0), ST_OK);
    assert_int_equal(b.len, 0);
    assert_true(b.cap > 0);
    assert_int_equal(b.data[0], '\0');
    sy_buf_deinit(&b);
    assert_int_equal(sy_buf_reserve(&b, 100), ST_OK);
    assert_int_equal(b.data[0], '\0');
    sy_buf_deinit(&b);
}

static void test_utf8_helpers(void **state)
{
    assert_true(sy_utf8_valid("", 0));
    assert_true(sy_utf8_valid("ascii", 5));
    assert_true(sy_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    assert_true(sy_utf8_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
    assert_false(sy_utf8_valid("\xf4\x90\x80\x80", 4));
    assert_false(sy_utf8_valid("\xc0\x80", 2));     /* overlong NUL */
    assert_false(sy_utf8_valid("\xe0\x80\xaf", 3)); /* overlong */
    assert_false(sy_utf8_valid("\xed\xbf\xbf", 3)); /* surrogate */
    assert_false(sy_utf8_valid("\x80", 1));
    assert_false(sy_utf8_valid("\xe2\x82", 2)); /* truncated */

    assert_int_equal(sy_utf8_complete_prefix("abc", 3), 3);
    assert_int_equal(sy_utf8_complete_prefix("", 0), 0);
    assert_int_equal(sy_utf8_complete_prefix("a\xc3", 2), 1);
    assert_int_equal(sy_utf8_complete_prefix("a\xc3\xa9", 3), 3);
    assert_int_equal(sy_utf8_complete_prefix("ab\xe2\x82", 4), 2);
    assert_int_equal(sy_utf8_complete_prefix("ab\xe2\x82\xac", 5), 5);
    assert_int_equal(sy_utf8_complete_prefix("\xf0\x9f\x98", 3), 0);
    assert_int_equal(sy_utf8_complete_prefix("\xf0\x9f\x98\x80", 4), 4);
}

static void test_alloc_accounting(void **state)
{
    uint64_t live = sy_alloc_live_bytes(), count = sy_alloc_total_count();
    char *p = sy_malloc(1000);
    assert_non_null(p);
    assert_int_equal(sy_alloc_live_bytes(), live + 1000);
    assert_int_equal(sy_alloc_total_count(), count + 1);
    p = sy_realloc(p, 10);
    assert_non_null(p);
    assert_int_equal(sy_alloc_live_bytes(), live + 10);
    sy_free(p);
    assert_int_equal(sy_alloc_live_bytes(), live);
    sy_free(NULL);
    char *z = sy_calloc(4, 8);
    for (int i = 0; i < 32; i++)
        assert_int_equal(z[i], 0);
    sy_free(z);
    assert_null(sy_calloc(SIZE_MAX / 2, 4));
    assert_null(sy_strdup(NULL));
    char *d = sy_strndup("hello", 3);
    assert_string_equal(d, "hel");
    sy_free(d);
    assert_int_equal(sy_alloc_live_bytes(), live);
}

static void test_alloc_fail_injection(void **state)
{
    /* the 2nd allocation from now fails, the 1st and 3rd succeed */
    sy_alloc_fail_after(2);
    void *a = sy_malloc(8);
    void *b = sy_malloc(8);
    void *c = sy_malloc(8);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    sy_free(a);
    sy_free(c);

    /* a failing grow leaves the buffer intact */
    sy_buf_t buf = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_str(&buf, "keep"), ST_OK);
    sy_alloc_fail_after(1);
    char big[200];
    memset(big, 'x', sizeof big);
    assert_int_equal(sy_buf_append(&buf, big, sizeof big), ST_NOMEM);
    assert_string_equal(buf.data, "keep");
    assert_int_equal(buf.len, 4);
    sy_alloc_fail_after(1);
    assert_int_equal(sy_buf_appendf(&buf, "%300s", "y"), ST_NOMEM);
    assert_string_equal(buf.data, "keep");
    sy_alloc_fail_after(1);
    sy_buf_t empty = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_json_str(&empty, "x", 1), ST_NOMEM);
    assert_int_equal(empty.len, 0);
    sy_alloc_fail_after(0); /* disabled */
    assert_int_equal(sy_buf_append(&buf, big, sizeof big), ST_OK);
    sy_buf_deinit(&buf);
    sy_buf_deinit(&empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_appendf),   cmocka_unit_test(test_append_i64),
        cmocka_unit_test(test_json_escaping),        cmocka_unit_test(test_nul_after_reserve),
        cmocka_unit_test(test_utf8_helpers),         cmocka_unit_test(test_alloc_accounting),
        cmocka_unit_test(test_alloc_fail_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
