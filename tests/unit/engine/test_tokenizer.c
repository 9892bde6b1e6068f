/*
 * test_tokenizer.c - the byte-level tokenizer and the incremental detokenizer: round trips
 * (ASCII, multibyte UTF-8, specials), token strings, and a stream that never splits a character.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "engine/tokenizer.h"

static int setup(void **state)
{
    tok_t *t = tok_byte_create();
    if (!t)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tok_destroy(*state);
    return 0;
}

static size_t enc(const tok_t *t, const char *s, bool add, bool special, int32_t *ids, size_t cap)
{
    size_t n = 0;
    assert_int_equal(tok_encode(t, s, strlen(s), add, special, ids, cap, &n), ST_OK);
    return n;
}

static void test_roundtrip_ascii_and_utf8(void **state)
{
    const tok_t *t = *state;
    const char *texts[] = {"", "hello world", "caf\xC3\xA9 \xE2\x82\xAC 10",
                           "\xF0\x9F\x98\x80 emoji \xE4\xB8\xAD\xE6\x96\x87"};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        int32_t ids[64];
        size_t n = enc(t, texts[k], false, false, ids, 64);
        assert_int_equal(n, strlen(texts[k]));
        sy_buf_t out = SY_BUF_INIT;
        assert_int_equal(tok_decode(t, ids, n, true, &out), ST_OK);
        assert_int_equal(out.len, strlen(texts[k]));
        if (out.len)
            assert_memory_equal(out.data, texts[k], out.len);
        sy_buf_deinit(&out);
    }
    assert_int_equal(tok_vocab_size(t), 260);
    assert_int_equal(tok_bos(t), 256);
    assert_int_equal(tok_eos(t), 257);
}

static void test_specials(void **state)
{
    const tok_t *t = *state;
    int32_t ids[64];
    const char *s = "<|im_start|>user\nhi<|im_end|></s>";
    size_t n = enc(t, s, true, true, ids, 64);
    /* BOS, im_start, "user\nhi" (7 bytes), im_end, eos */
    assert_int_equal(n, 11);
    assert_int_equal(ids[0], 256);
    assert_int_equal(ids[1], 258);
    assert_int_equal(ids[2], 'u');
    assert_int_equal(ids[9], 259);
    assert_int_equal(ids[10], 257);
    assert_true(tok_is_special(t, 258));
    assert_false(tok_is_special(t, 'a'));

    /* without parse_special the strings are plain bytes */
    size_t m = enc(t, s, false, false, ids, 64);
    assert_int_equal(m, strlen(s));
    assert_int_equal(ids[0], '<');

    /* decode: skip_special drops specials, otherwise they render as text */
    n = enc(t, s, true, true, ids, 64);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, n, true, &out), ST_OK);
    assert_string_equal(out.data, "user\nhi");
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, ids, n, false, &out), ST_OK);
    assert_string_equal(out.data, "<s><|im_start|>user\nhi<|im_end|></s>");
    sy_buf_deinit(&out);

    /* a partial special string is bytes */
    n = enc(t, "<|im_sta", false, true, ids, 64);
    assert_int_equal(n, 8);
}

static void test_encode_limits(void **state)
{
    const tok_t *t = *state;
    int32_t ids[4];
    size_t n = 0;
    assert_int_equal(tok_encode(t, "hello", 5, false, false, ids, 4, &n), ST_LIMIT);
    assert_int_equal(tok_encode(t, NULL, 3, false, false, ids, 4, &n), ST_INVAL);
    int32_t bad[] = {1, 260};
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, bad, 2, false, &out), ST_INVAL);
    assert_int_equal(out.len, 0);
    int32_t neg[] = {-1};
    assert_int_equal(tok_decode(t, neg, 1, false, &out), ST_INVAL);
    sy_buf_deinit(&out);
}

static void test_token_str(void **state)
{
    const tok_t *t = *state;
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_token_str(t, 'A', &out), ST_OK);
    assert_int_equal(tok_token_str(t, '\n', &out), ST_OK);
    assert_int_equal(tok_token_str(t, 0xE2, &out), ST_OK);
    assert_int_equal(tok_token_str(t, 259, &out), ST_OK);
    assert_int_equal(tok_token_str(t, ' ', &out), ST_OK);
    assert_string_equal(out.data, "A<0x0A><0xE2><|im_end|> ");
    assert_int_equal(tok_token_str(t, 999, &out), ST_INVAL);
    sy_buf_deinit(&out);
}

static void test_decode_invalid_utf8(void **state)
{
    const tok_t *t = *state;
    /* "a" + truncated 4-byte (one U+FFFD) + 0xFF (one U+FFFD) + "b" */
    int32_t ids[] = {'a', 0xF0, 0x9F, 0xFF, 'b'};
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, 5, false, &out), ST_OK);
    assert_string_equal(out.data, "a\xEF\xBF\xBD\xEF\xBF\xBD"
                                  "b");
    sy_buf_deinit(&out);
}

/* Feeds ids one by one; after every push the output must be valid UTF-8. */
static void stream_all(const tok_t *t, const int32_t *ids, size_t n, sy_buf_t *out)
{
    tok_stream_t s;
    tok_stream_init(&s);
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        assert_int_equal(tok_stream_push(t, &s, ids[i], true, out), ST_OK);
        assert_true(sy_utf8_valid(out->data ? out->data : "", out->len));
        assert_true(out->len >= before);
    }
    assert_int_equal(tok_stream_finish(t, &s, out), ST_OK);
    tok_stream_deinit(&s);
}

static void test_stream_never_splits(void **state)
{
    const tok_t *t = *state;
    const char *s = "x\xF0\x9F\x98\x80y\xE2\x82\xAC\xC3\xA9z";
    int32_t ids[64];
    size_t n = enc(t, s, false, false, ids, 64);

    /* emoji fed byte by byte: nothing appears until the 4th byte */
    tok_stream_t st;
    tok_stream_init(&st);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_stream_push(t, &st, ids[0], true, &out), ST_OK);
    assert_int_equal(out.len, 1);
    for (int k = 1; k <= 3; k++) {
        assert_int_equal(tok_stream_push(t, &st, ids[k], true, &out), ST_OK);
        assert_int_equal(out.len, 1);
    }
    assert_int_equal(tok_stream_push(t, &st, ids[4], true, &out), ST_OK);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "x\xF0\x9F\x98\x80", 5);
    tok_stream_deinit(&st);
    sy_buf_deinit(&out);

    /* whole text through the stream equals the batch decode */
    sy_buf_t a = SY_BUF_INIT, b = SY_BUF_INIT;
    stream_all(t, ids, n, &a);
    assert_int_equal(tok_decode(t, ids, n, true, &b), ST_OK);
    assert_string_equal(a.data, b.data);
    assert_string_equal(a.data, s);
    sy_buf_deinit(&a);
    sy_buf_deinit(&b);

    /* specials in between are skipped and do not disturb a pending character */
    int32_t mixed[] = {0xE2, 258, 0x82, 0xAC, 257};
    sy_buf_t c = SY_BUF_INIT;
    stream_all(t, mixed, 5, &c);
    assert_string_equal(c.data, "\xE2\x82\xAC");
    sy_buf_deinit(&c);
}

static void test_stream_finish_flushes_replacement(void **state)
{
    const tok_t *t = *state;
    /* two bytes of a 4-byte emoji, then end of stream: one U+FFFD */
    int32_t ids[] = {'o', 'k', 0xF0, 0x9F};
    sy_buf_t out = SY_BUF_INIT;
    stream_all(t, ids, 4, &out);
    assert_string_equal(out.data, "ok\xEF\xBF\xBD");
    sy_buf_deinit(&out);

    /* an invalid byte in the middle is replaced at once, not held */
    int32_t bad[] = {'a', 0xC0, 'b'};
    tok_stream_t s;
    tok_stream_init(&s);
    assert_int_equal(tok_stream_push(t, &s, bad[0], true, &out), ST_OK);
    assert_int_equal(tok_stream_push(t, &s, bad[1], true, &out), ST_OK);
    assert_string_equal(out.data, "a\xEF\xBF\xBD");
    assert_int_equal(tok_stream_push(t, &s, bad[2], true, &out), ST_OK);
    assert_string_equal(out.data, "a\xEF\xBF\xBD"
                                  "b");
    /* a lead byte followed by a non-continuation: U+FFFD then the byte itself */
    assert_int_equal(tok_stream_push(t, &s, 0xE2, true, &out), ST_OK);
    assert_int_equal(tok_stream_push(t, &s, 'c', true, &out), ST_OK);
    assert_string_equal(out.data, "a\xEF\xBF\xBD"
                                  "b\xEF\xBF\xBD"
                                  "c");
    assert_int_equal(tok_stream_push(t, &s, 300, true, &out), ST_INVAL);
    assert_int_equal(tok_stream_finish(t, &s, &out), ST_OK);
    tok_stream_deinit(&s);
    sy_buf_deinit(&out);

    /* pending bytes survive a failed push */
    tok_stream_init(&s);
    assert_int_equal(tok_stream_push(t, &s, 0xC3, true, &out), ST_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_stream_push(t, &s, -5, true, &out), ST_INVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_stream_push(t, &s, 0xA9, true, &out), ST_OK);
    assert_string_equal(out.data, "\xC3\xA9");
    tok_stream_deinit(&s);
    sy_buf_deinit(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_ascii_and_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_specials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_str, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_never_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_finish_flushes_replacement, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
