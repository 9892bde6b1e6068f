/*
 * test_jsonp.c - the fast JSON reader: trees equal to jansson's for valid documents (objects,
 * arrays, every escape, surrogate pairs, number forms and limits, duplicate keys), refusals with a
 * message, line and column for invalid ones (the same set jansson refuses), the depth limit, and a
 * 200 KB string with and without escapes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/jsonp.h"
#include "common/status.h"

/* Parses s with both readers and checks they agree; returns jsonp's status. */
static int both(const char *s, size_t n, jsonp_error_t *err)
{
    json_t *mine = NULL;
    int rc = jsonp_load(s, n, &mine, err);
    json_t *ref = json_loadb(s, n, 0, NULL);
    if (ref) {
        assert_int_equal(rc, ST_OK);
        assert_true(json_equal(mine, ref));
    } else {
        assert_int_equal(rc, ST_PROTO);
        assert_null(mine);
        assert_true(err->text[0] != '\0');
    }
    json_decref(mine);
    json_decref(ref);
    return rc;
}

static int both_str(const char *s)
{
    jsonp_error_t err;
    return both(s, strlen(s), &err);
}

static void test_valid_documents(void **state)
{
    (void)state;
    const char *ok[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{\"model\":\"m\",\"prompt\":\"Hello\",\"max_tokens\":8,\"stream\":true}",
        "[1,-0,0,0.5,-0.25,1e5,1E+5,2e-3,-2E-3,123456789012]",
        "[true,false,null,\"\",[],{}]",
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]",
        "[\"\\u0041\\u00e9\\u20ac\\ud83d\\ude00\"]",
        "[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"]",
        "{\"a\":1,\"a\":2}",
        "{\"k\\u0041\":{\"n\\ne\":[{\"x\":\"y\\tz\"}]}}",
        "[9223372036854775807,-9223372036854775808]",
        "[1e-400,1.7976931348623157e308]",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        print_message("%s\n", ok[i]);
        assert_int_equal(both_str(ok[i]), ST_OK);
    }
    json_t *r = NULL;
    assert_int_equal(jsonp_load("{\"a\":1,\"a\":\"two\"}", 17, &r, NULL), ST_OK);
    assert_string_equal(json_string_value(json_object_get(r, "a")), "two"); /* last key wins */
    json_decref(r);
}

static void test_invalid_documents(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        " ",
        "\"top\"",
        "1",
        "true",
        "{",
        "[",
        "[1,]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{a:1}",
        "[01]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[1e+]",
        "[-]",
        "[+1]",
        "[NaN]",
        "[Infinity]",
        "[tru]",
        "[nul]",
        "[truex]",
        "[\"a]",
        "[\"\\x\"]",
        "[\"\\u12\"]",
        "[\"\\u00zz\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"\\u0000\"]",
        "[\"a\nb\"]",
        "[\"a\tb\"]",
        "[1] x",
        "{}{}",
        "[9223372036854775808]",
        "[-9223372036854775809]",
        "[1e400]",
        "[-1e400]",
        "['a']",
        "[1 2]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        print_message("%s\n", bad[i]);
        assert_int_equal(both_str(bad[i]), ST_PROTO);
    }
    /* NUL bytes inside and outside strings */
    jsonp_error_t err;
    assert_int_equal(both("[\"a\0b\"]", 7, &err), ST_PROTO);
    assert_int_equal(both("[1,\0]", 5, &err), ST_PROTO);
}

static void test_error_position(void **state)
{
    (void)state;
    jsonp_error_t err;
    json_t *r = NULL;
    const char *s = "{\n  \"a\": 1,\n  \"b\": ?\n}";
    assert_int_equal(jsonp_load(s, strlen(s), &r, &err), ST_PROTO);
    assert_null(r);
    assert_int_equal(err.line, 3);
    assert_int_equal(err.column, 8);
    assert_int_equal(err.position, (size_t)(strchr(s, '?') - s));
    assert_non_null(strstr(err.text, "invalid token"));
    assert_int_equal(jsonp_load("[1,2", 4, &r, &err), ST_PROTO);
    assert_non_null(strstr(err.text, "end of file"));
}

static void test_depth_limit(void **state)
{
    (void)state;
    size_t n = JSONP_MAX_DEPTH + 1;
    char *s = malloc(2 * n + 1);
    assert_non_null(s);
    /* exactly the limit: accepted */
    memset(s, '[', n - 1);
    memset(s + n - 1, ']', n - 1);
    jsonp_error_t err;
    assert_int_equal(both(s, 2 * (n - 1), &err), ST_OK);
    /* one more: refused, like jansson */
    memset(s, '[', n);
    memset(s + n, ']', n);
    assert_int_equal(both(s, 2 * n, &err), ST_PROTO);
    assert_non_null(strstr(err.text, "depth"));
    free(s);
}

static void test_big_strings(void **state)
{
    (void)state;
    size_t n = 200 * 1024;
    char *s = malloc(n + 64);
    assert_non_null(s);
    /* plain 200 KB prompt */
    size_t o = (size_t)sprintf(s, "{\"prompt\":\"");
    for (size_t i = 0; i < n; i++)
        s[o++] = (char)('a' + i % 26);
    o += (size_t)sprintf(s + o, "\",\"max_tokens\":1}");
    jsonp_error_t err;
    assert_int_equal(both(s, o, &err), ST_OK);
    /* escapes spread through it, every 1000 bytes, ending right at the closing quote */
    for (size_t i = 11; i + 2 < 11 + n; i += 1000) {
        s[i] = '\\';
        s[i + 1] = i % 2000 ? 'n' : '"';
    }
    s[11 + n - 2] = '\\';
    s[11 + n - 1] = 't';
    assert_int_equal(both(s, o, &err), ST_OK);
    json_t *r = NULL;
    assert_int_equal(jsonp_load(s, o, &r, NULL), ST_OK);
    const char *p = json_string_value(json_object_get(r, "prompt"));
    assert_non_null(p);
    assert_int_equal(p[json_string_length(json_object_get(r, "prompt")) - 1], '\t');
    json_decref(r);
    /* unterminated */
    assert_int_equal(both(s, 11 + n / 2, &err), ST_PROTO);
    free(s);
}

static void test_no_leak_on_error(void **state)
{
    (void)state;
    /* escaped keys are copied; an error after one must free the copy (checked by ASan/LSan) */
    assert_int_equal(both_str("{\"k\\u0041\":[1,2,}"), ST_PROTO);
    assert_int_equal(both_str("{\"k\\n\":\"v\\n\",\"x\\t\":"), ST_PROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents), cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_error_position),  cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_big_strings),     cmocka_unit_test(test_no_leak_on_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
