/*
 * test_sb_sse.c - unit tests of the bench's SSE parser and OpenAI chunk decoder (sb_sse.h):
 * a real engine stream split at every byte boundary and fed byte by byte gives the same events,
 * CRLF / CR terminators (also split between reads), comments and other fields, multi-line data,
 * the event-size limit, and chunk decoding of completions, chat, usage, [DONE], error events and
 * malformed JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/sb_sse.h"
#include "common/buf.h"
#include "common/status.h"

typedef struct events {
    sy_buf_t all; /* events joined by '|' */
    size_t n;
    size_t stop_at; /* return nonzero at this event (0 = never) */
} events_t;

static int on_ev(const char *data, size_t len, void *udata)
{
    events_t *e = udata;
    e->n++;
    if (e->all.len)
        sy_buf_append_char(&e->all, '|');
    sy_buf_append(&e->all, data, len);
    return e->stop_at && e->n == e->stop_at ? 42 : 0;
}

static const char k_stream[] =
    "data: "
    "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"Hello\",\"finish_reason\":null}]}"
    "\n\n"
    ": keep-alive comment\n\n"
    "event: message\nid: 7\nretry: 100\n"
    "data: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\" world\",\"finish_reason\":"
    "\"length\"}]}\n\n"
    "data: {\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,"
    "\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n"
    "data: [DONE]\n\n";

static void whole(const char *s, size_t len, events_t *e)
{
    sb_sse_t p;
    sb_sse_init(&p, 0);
    assert_int_equal(sb_sse_feed(&p, s, len, on_ev, e), ST_OK);
    assert_false(sb_sse_pending(&p));
    sb_sse_deinit(&p);
}

static void test_split_everywhere(void **state)
{
    (void)state;
    size_t len = strlen(k_stream);
    events_t ref = {SY_BUF_INIT, 0, 0};
    whole(k_stream, len, &ref);
    assert_int_equal(ref.n, 4);
    assert_non_null(strstr(ref.all.data, "[DONE]"));
    for (size_t cut = 0; cut <= len; cut++) {
        events_t e = {SY_BUF_INIT, 0, 0};
        sb_sse_t p;
        sb_sse_init(&p, 0);
        assert_int_equal(sb_sse_feed(&p, k_stream, cut, on_ev, &e), ST_OK);
        assert_int_equal(sb_sse_feed(&p, k_stream + cut, len - cut, on_ev, &e), ST_OK);
        assert_int_equal(e.n, ref.n);
        assert_string_equal(e.all.data, ref.all.data);
        sb_sse_deinit(&p);
        sy_buf_deinit(&e.all);
    }
    /* one byte at a time */
    events_t e = {SY_BUF_INIT, 0, 0};
    sb_sse_t p;
    sb_sse_init(&p, 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(sb_sse_feed(&p, k_stream + i, 1, on_ev, &e), ST_OK);
    assert_string_equal(e.all.data, ref.all.data);
    sb_sse_deinit(&p);
    sy_buf_deinit(&e.all);
    sy_buf_deinit(&ref.all);
}

static void test_terminators(void **state)
{
    (void)state;
    const char *s = "data: a\r\n\r\ndata:b\r\rdata:  c\ndata\n\n";
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++) {
        events_t e = {SY_BUF_INIT, 0, 0};
        sb_sse_t p;
        sb_sse_init(&p, 0);
        assert_int_equal(sb_sse_feed(&p, s, cut, on_ev, &e), ST_OK);
        assert_int_equal(sb_sse_feed(&p, s + cut, len - cut, on_ev, &e), ST_OK);
        /* "data:  c" keeps the second space; a bare "data" line adds an empty line */
        assert_int_equal(e.n, 3);
        assert_string_equal(e.all.data, "a|b| c\n");
        sb_sse_deinit(&p);
        sy_buf_deinit(&e.all);
    }
}

static void test_multiline_and_pending(void **state)
{
    (void)state;
    events_t e = {SY_BUF_INIT, 0, 0};
    sb_sse_t p;
    sb_sse_init(&p, 0);
    assert_int_equal(sb_sse_feed(&p, "data: x\ndata: y\n", 16, on_ev, &e), ST_OK);
    assert_int_equal(e.n, 0);
    assert_true(sb_sse_pending(&p)); /* ended mid-event */
    assert_int_equal(sb_sse_feed(&p, "\n", 1, on_ev, &e), ST_OK);
    assert_string_equal(e.all.data, "x\ny");
    /* lines without a data field do not make an event; garbage lines are ignored */
    assert_int_equal(sb_sse_feed(&p, "garbage without colon\n\nfoo: bar\n\n", 33, on_ev, &e),
                     ST_OK);
    assert_int_equal(e.n, 1);
    /* the callback's nonzero return stops parsing and is returned */
    e.stop_at = 2;
    assert_int_equal(sb_sse_feed(&p, "data: 1\n\ndata: 2\n\n", 18, on_ev, &e), 42);
    sb_sse_deinit(&p);
    sy_buf_deinit(&e.all);
}

static void test_limit(void **state)
{
    (void)state;
    sb_sse_t p;
    sb_sse_init(&p, 16);
    events_t e = {SY_BUF_INIT, 0, 0};
    assert_int_equal(sb_sse_feed(&p, "data: 0123456789abcdefXYZ", 25, on_ev, &e), ST_LIMIT);
    assert_int_equal(sb_sse_feed(&p, "\n\n", 2, on_ev, &e), ST_LIMIT); /* sticky */
    sb_sse_deinit(&p);
    sb_sse_init(&p, 16);
    /* many short data lines exceed the event bound too */
    assert_int_equal(sb_sse_feed(&p, "data: 0123456\ndata: 0123456\ndata: 0\n", 36, on_ev, &e),
                     ST_LIMIT);
    sb_sse_deinit(&p);
    sy_buf_deinit(&e.all);
}

static void test_chunk_completion(void **state)
{
    (void)state;
    sb_chunk_t c;
    sy_buf_t text = SY_BUF_INIT;
    const char *d = "{\"choices\":[{\"index\":0,\"text\":\"Hello\",\"finish_reason\":null}]}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, &text), ST_OK);
    assert_int_equal(c.content_len, 5);
    assert_false(c.finished);
    assert_false(c.has_usage);
    assert_int_equal(c.cached_tokens, -1);
    assert_string_equal(text.data, "Hello");
    d = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
        "\"prompt_tokens_details\":{\"cached_tokens\":3}}}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_true(c.has_usage);
    assert_int_equal(c.n_choices, 0);
    assert_int_equal(c.prompt_tokens, 5);
    assert_int_equal(c.completion_tokens, 2);
    assert_int_equal(c.cached_tokens, 3);
    d = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
        "\"prompt_tokens_details\":null}}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_int_equal(c.cached_tokens, -1);
    assert_int_equal(sb_chunk_decode(" [DONE] ", 8, &c, NULL), ST_OK);
    assert_true(c.done);
    sy_buf_deinit(&text);
}

static void test_chunk_chat_and_errors(void **state)
{
    (void)state;
    sb_chunk_t c;
    const char *d =
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_int_equal(c.content_len, 0); /* the role chunk is no token */
    d = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\"},\"finish_reason\":\"stop\"}]}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_int_equal(c.content_len, 2);
    assert_true(c.finished);
    d = "{\"choices\":[{\"delta\":{\"reasoning_content\":\"hmm\"}}]}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_int_equal(c.content_len, 3);
    d = "{\"error\":{\"message\":\"The engine failed\",\"type\":\"InternalServerError\"}}";
    assert_int_equal(sb_chunk_decode(d, strlen(d), &c, NULL), ST_OK);
    assert_true(c.is_error);
    assert_string_equal(c.error_msg, "The engine failed");
    /* malformed */
    const char *bad[] = {"{\"choices\":",
                         "not json",
                         "[1,2]",
                         "\"str\"",
                         "{\"choices\":{}}",
                         "{\"choices\":[{\"text\":5}]}",
                         "{\"choices\":[{\"delta\":[]}]}",
                         "{\"usage\":{\"prompt_tokens\":-1}}",
                         "{\"usage\":{\"prompt_tokens\":\"5\"}}",
                         "{\"usage\":[]}",
                         "{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":1.5}}}",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_chunk_decode(bad[i], strlen(bad[i]), &c, NULL), ST_PROTO);
    assert_int_equal(sb_chunk_decode("{\"a\":\"\xff\"}", 8, &c, NULL), ST_PROTO); /* not UTF-8 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_everywhere),      cmocka_unit_test(test_terminators),
        cmocka_unit_test(test_multiline_and_pending), cmocka_unit_test(test_limit),
        cmocka_unit_test(test_chunk_completion),      cmocka_unit_test(test_chunk_chat_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
