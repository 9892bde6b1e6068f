/*
 * test_http_parse.c - request/response head parsing (complete, every split point -> ST_AGAIN,
 * limits, strictness), header helpers, Content-Length, the chunked decoder (split at every byte,
 * extensions, trailers, errors) and reason phrases. Prefixes are copied into exact-size heap
 * blocks so ASan catches any read past the given length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "http/http_parse.h"

static const http_limits_t LIM = {16384, 64};

static http_request_head_t g_req;
static http_response_head_t g_resp;

/* The last exact-size copy stays alive (the parsed slices point into it) until the next call. */
static char *g_copy;

static char *fresh_copy(const char *s, size_t len)
{
    free(g_copy);
    g_copy = malloc(len ? len : 1);
    memcpy(g_copy, s, len);
    return g_copy;
}

/* Parses the first len bytes of s from an exact-size copy. */
static int preq(const char *s, size_t len, const http_limits_t *lim)
{
    return http_parse_request(fresh_copy(s, len), len, lim, &g_req);
}

static int presp(const char *s, size_t len)
{
    return http_parse_response(fresh_copy(s, len), len, &LIM, &g_resp);
}

static int teardown(void **state)
{
    free(g_copy);
    g_copy = NULL;
    return 0;
}

static bool slice_is(sy_slice_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void test_request_complete(void **state)
{
    const char *r = "POST /v1/completions?x=1 HTTP/1.1\r\n"
                    "Host: localhost:8000\r\n"
                    "Content-Type:application/json\r\n"
                    "X-Spaces:   a b \t \r\n"
                    "X-Empty:\r\n"
                    "Content-Length: 2\r\n"
                    "\r\n"
                    "{}";
    size_t head_len = strlen(r) - 2;
    int rc = http_parse_request(r, strlen(r), &LIM, &g_req);
    assert_int_equal(rc, (int)head_len);
    assert_true(slice_is(g_req.method, "POST"));
    assert_true(slice_is(g_req.target, "/v1/completions?x=1"));
    assert_int_equal(g_req.minor_version, 1);
    assert_int_equal(g_req.num_headers, 5);
    assert_true(slice_is(g_req.headers[0].name, "Host"));
    assert_true(slice_is(g_req.headers[0].value, "localhost:8000"));
    assert_true(slice_is(g_req.headers[1].value, "application/json"));
    assert_true(slice_is(g_req.headers[2].value, "a b"));
    assert_true(slice_is(g_req.headers[3].value, ""));
    const http_header_t *h = http_find_header(g_req.headers, g_req.num_headers, "content-LENGTH");
    assert_non_null(h);
    assert_true(slice_is(h->value, "2"));
    assert_null(http_find_header(g_req.headers, g_req.num_headers, "Content"));
    /* zero-copy: slices point into the caller's buffer */
    assert_ptr_equal(g_req.method.ptr, r);

    /* HTTP/1.0, no headers, bare LF line ends, leading empty lines */
    const char *r10 = "\r\n\nGET / HTTP/1.0\n\n";
    assert_int_equal(http_parse_request(r10, strlen(r10), &LIM, &g_req), (int)strlen(r10));
    assert_int_equal(g_req.minor_version, 0);
    assert_int_equal(g_req.num_headers, 0);
    assert_true(slice_is(g_req.target, "/"));
    /* methods are tokens: custom ones are fine */
    const char *odd = "M-SEARCH * HTTP/1.1\r\nX!#$%&'*+.^_`|~: v\r\n\r\n";
    assert_int_equal(http_parse_request(odd, strlen(odd), &LIM, &g_req), (int)strlen(odd));
    assert_true(slice_is(g_req.headers[0].name, "X!#$%&'*+.^_`|~"));
    /* obs-text in values is accepted */
    const char *utf = "GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n";
    assert_int_equal(http_parse_request(utf, strlen(utf), &LIM, &g_req), (int)strlen(utf));
}

static void test_request_every_split(void **state)
{
    const char *reqs[] = {
        "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n",
        "GET / HTTP/1.0\n\n",
        "\r\nGET /x?y HTTP/1.1\r\nA:\r\nB: c\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        size_t len = strlen(reqs[i]);
        for (size_t k = 0; k < len; k++) {
            int rc = preq(reqs[i], k, &LIM);
            if (rc != ST_AGAIN)
                fail_msg("request %zu prefix %zu: rc %d", i, k, rc);
        }
        assert_int_equal(preq(reqs[i], len, &LIM), (int)len);
    }
}

static void test_request_limits(void **state)
{
    char big[600];
    const char *pre = "GET / HTTP/1.1\r\nX: ";
    size_t n = strlen(pre);
    memcpy(big, pre, n);
    /* head of exactly 256 bytes */
    size_t fill = 256 - n - 4;
    memset(big + n, 'a', fill);
    memcpy(big + n + fill, "\r\n\r\n", 4);
    http_limits_t lim = {256, 8};
    assert_int_equal(preq(big, 256, &lim), 256);
    lim.max_head_bytes = 255;
    assert_int_equal(preq(big, 256, &lim), ST_LIMIT);
    /* incomplete but already longer than the limit */
    assert_int_equal(preq(big, 200, &lim), ST_AGAIN);
    lim.max_head_bytes = 100;
    assert_int_equal(preq(big, 200, &lim), ST_LIMIT);
    assert_int_equal(preq(big, 100, &lim), ST_AGAIN);
    assert_int_equal(preq(big, 101, &lim), ST_LIMIT);
    /* a syntax error inside the limit wins over the limit */
    assert_int_equal(preq("G T / HTTP/1.1\r\n\r\n", 18, &lim), ST_PROTO);

    /* header count */
    char hdrs[1024];
    size_t len = (size_t)snprintf(hdrs, sizeof hdrs, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 9; i++)
        len += (size_t)snprintf(hdrs + len, sizeof hdrs - len, "H%d: v\r\n", i);
    len += (size_t)snprintf(hdrs + len, sizeof hdrs - len, "\r\n");
    lim = (http_limits_t){4096, 9};
    assert_int_equal(preq(hdrs, len, &lim), (int)len);
    assert_int_equal(g_req.num_headers, 9);
    lim.max_headers = 8;
    assert_int_equal(preq(hdrs, len, &lim), ST_LIMIT);
    /* max_headers above the hard cap is clamped; NULL limits use the defaults */
    lim.max_headers = 100000;
    assert_int_equal(preq(hdrs, len, &lim), (int)len);
    assert_int_equal(http_parse_request(hdrs, len, NULL, &g_req), (int)len);
}

static void test_request_bad_syntax(void **state)
{
    const char *bad[] = {
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",       /* bare CR in value */
        "GET / HTTP/1.1\rHost: a\r\n\r\n",            /* bare CR after version */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",         /* space before colon */
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",        /* tab before colon */
        "GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\n X: b\r\n\r\n",            /* whitespace before first header */
        "GE(T / HTTP/1.1\r\n\r\n",                    /* bad token char */
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.2\r\n\r\n",
        "GET / HTTP/1.1x\r\n\r\n",
        "GET / http/1.1\r\n\r\n",
        "GET /  HTTP/1.1\r\n\r\n", /* two spaces */
        " GET / HTTP/1.1\r\n\r\n",
        "GET\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", /* raw non-ASCII in the target */
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
        "GET / HTTP/1.1\r\nX-\x7f: v\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", /* DEL */
        "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
        "\r\r\nGET / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = preq(bad[i], strlen(bad[i]), &LIM);
        if (rc != ST_PROTO)
            fail_msg("bad[%zu] rc=%d", i, rc);
    }
    /* NUL bytes (strlen cannot carry them) */
    const char nul_val[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    assert_int_equal(preq(nul_val, sizeof nul_val - 1, &LIM), ST_PROTO);
    const char nul_target[] = "GET /\0 HTTP/1.1\r\n\r\n";
    assert_int_equal(preq(nul_target, sizeof nul_target - 1, &LIM), ST_PROTO);
    /* errors are reported as soon as they are visible, before the head is complete */
    assert_int_equal(preq("GET / HTTP/3", 12, &LIM), ST_PROTO);
    assert_int_equal(preq("\x16\x03\x01", 3, &LIM), ST_PROTO); /* TLS hello */
}

static void test_pipelined(void **state)
{
    const char *two = "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: b\r\n\r\n";
    int n1 = http_parse_request(two, strlen(two), &LIM, &g_req);
    assert_true(n1 > 0);
    assert_true(slice_is(g_req.target, "/one"));
    int n2 = http_parse_request(two + n1, strlen(two) - (size_t)n1, &LIM, &g_req);
    assert_int_equal((size_t)(n1 + n2), strlen(two));
    assert_true(slice_is(g_req.target, "/two"));
    assert_true(slice_is(g_req.headers[0].value, "b"));
}

static void test_response(void **state)
{
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n5\r\n";
    size_t head = strlen(r) - 3;
    assert_int_equal(presp(r, strlen(r)), (int)head);
    assert_int_equal(g_resp.status, 200);
    assert_int_equal(g_resp.minor_version, 1);
    assert_true(slice_is(g_resp.reason, "OK"));
    assert_int_equal(g_resp.num_headers, 2);
    for (size_t k = 0; k < head; k++)
        if (presp(r, k) != ST_AGAIN)
            fail_msg("response prefix %zu", k);

    assert_int_equal(presp("HTTP/1.0 204\r\n\r\n", 16), 16);
    assert_int_equal(g_resp.status, 204);
    assert_int_equal(g_resp.reason.len, 0);
    assert_int_equal(presp("HTTP/1.1 404 \r\n\r\n", 17), 17);
    assert_int_equal(g_resp.reason.len, 0);
    const char *multi = "HTTP/1.1 503 Service  Unavailable\n\n";
    assert_int_equal(presp(multi, strlen(multi)), (int)strlen(multi));
    assert_true(slice_is(g_resp.reason, "Service  Unavailable"));

    const char *bad[] = {"HTTP/1.1 20 OK\r\n\r\n",
                         "HTTP/1.1 099 X\r\n\r\n",
                         "HTTP/1.1 2000 X\r\n\r\n",
                         "HTTP/2 200 OK\r\n\r\n",
                         "HTTP/1.1  200 OK\r\n\r\n",
                         "HTTP/1.1 200 O\rK\r\n\r\n",
                         "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
                         "ICY 200 OK\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (presp(bad[i], strlen(bad[i])) != ST_PROTO)
            fail_msg("bad response %zu", i);
}

static void test_header_helpers(void **state)
{
    sy_slice_t v = {"keep-alive, Upgrade ,  close", 28};
    assert_true(http_header_has_token(v, "close"));
    assert_true(http_header_has_token(v, "UPGRADE"));
    assert_true(http_header_has_token(v, "keep-alive"));
    assert_false(http_header_has_token(v, "keep"));
    assert_false(http_header_has_token(v, ""));
    sy_slice_t e = {"", 0};
    assert_false(http_header_has_token(e, "close"));
    sy_slice_t one = {"Close", 5};
    assert_true(http_header_has_token(one, "close"));

    uint64_t n;
    sy_slice_t ok = {"12345", 5};
    assert_int_equal(http_parse_content_length(ok, &n), ST_OK);
    assert_int_equal(n, 12345);
    sy_slice_t max = {"18446744073709551615", 20};
    assert_int_equal(http_parse_content_length(max, &n), ST_OK);
    assert_true(n == UINT64_MAX);
    const char *bad[] = {"", "18446744073709551616", "1a", " 1", "+1", "-1", "1,1", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sy_slice_t s = {bad[i], strlen(bad[i])};
        if (http_parse_content_length(s, &n) != ST_PROTO)
            fail_msg("content-length '%s' accepted", bad[i]);
    }
}

/* ---- chunked ---- */

/* Feeds input in pieces cut at the given points; returns the final status and the output. */
static int dechunk_split(const char *in, size_t len, size_t cut, char *out, size_t *out_len,
                         size_t *consumed)
{
    http_chunked_t c;
    http_chunked_init(&c);
    *out_len = 0;
    *consumed = 0;
    size_t starts[2] = {0, cut}, ends[2] = {cut, len};
    int rc = ST_AGAIN;
    for (int p = 0; p < 2; p++) {
        size_t n = ends[p] - starts[p];
        char *piece = malloc(n ? n : 1);
        memcpy(piece, in + starts[p], n);
        size_t dlen = n;
        rc = http_chunked_decode(&c, piece, &dlen);
        memcpy(out + *out_len, piece, dlen);
        *out_len += dlen;
        free(piece);
        if (rc >= 0) {
            *consumed = starts[p] + (size_t)rc;
            return rc;
        }
        if (rc != ST_AGAIN)
            return rc;
    }
    return rc;
}

static void test_chunked_basic(void **state)
{
    const char *in = "5\r\nhello\r\n6;name=val\r\n world\r\nA\r\n0123456789\r\n"
                     "0\r\nX-Trailer: 1\r\n\r\nGET /next";
    size_t total = strlen(in), body_end = total - 9;
    char buf[256];
    memcpy(buf, in, total);
    http_chunked_t c;
    http_chunked_init(&c);
    size_t len = total;
    int rc = http_chunked_decode(&c, buf, &len);
    assert_int_equal(rc, (int)body_end);
    assert_int_equal(len, 21);
    assert_memory_equal(buf, "hello world0123456789", 21);
    /* the bytes after the message are untouched */
    assert_memory_equal(buf + rc, "GET /next", 9);
    /* after completion further calls consume nothing */
    len = 3;
    assert_int_equal(http_chunked_decode(&c, buf, &len), 0);
    assert_int_equal(len, 0);

    /* every split point gives the same result */
    for (size_t cut = 0; cut <= total; cut++) {
        char out[256];
        size_t out_len, consumed;
        rc = dechunk_split(in, total, cut, out, &out_len, &consumed);
        if (rc < 0 || consumed != body_end || out_len != 21 ||
            memcmp(out, "hello world0123456789", 21) != 0)
            fail_msg("cut %zu: rc %d consumed %zu out %zu", cut, rc, consumed, out_len);
    }

    /* byte at a time, bare LF line ends, upper-case hex, BWS before an extension */
    const char *lf = "3 ;ext\nabc\nB\n0123456789A\n0\n\n";
    http_chunked_init(&c);
    char out[64];
    size_t olen = 0;
    size_t i;
    for (i = 0; i < strlen(lf); i++) {
        char b = lf[i];
        size_t one = 1;
        rc = http_chunked_decode(&c, &b, &one);
        if (one)
            out[olen++] = b;
        if (rc != ST_AGAIN)
            break;
    }
    assert_int_equal(rc, 1);
    assert_int_equal(i, strlen(lf) - 1);
    assert_int_equal(olen, 14);
    assert_memory_equal(out, "abc0123456789A", 14);

    /* empty input asks for more */
    http_chunked_init(&c);
    len = 0;
    assert_int_equal(http_chunked_decode(&c, buf, &len), ST_AGAIN);
    /* an immediately terminated body */
    memcpy(buf, "0\r\n\r\n", 5);
    len = 5;
    assert_int_equal(http_chunked_decode(&c, buf, &len), 5);
    assert_int_equal(len, 0);
}

static int dechunk_all(const char *in, size_t n)
{
    char *buf = malloc(n ? n : 1);
    memcpy(buf, in, n);
    http_chunked_t c;
    http_chunked_init(&c);
    size_t len = n;
    int rc = http_chunked_decode(&c, buf, &len);
    free(buf);
    return rc;
}

static void test_chunked_errors(void **state)
{
    const char *bad[] = {
        "g\r\n",                 /* not hex */
        "\r\n",                  /* no digits */
        ";ext\r\n",              /* no digits before the extension */
        "5\r\nhelloX\r\n",       /* data not followed by CRLF */
        "5\r\nhello\rX",         /* CR not followed by LF */
        "5\rX",                  /* bare CR after the size */
        "5 \r\n",                /* whitespace without an extension */
        "5 x\r\n",               /* junk after the size */
        "fffffffffffffffff\r\n", /* 17 hex digits: overflow */
        "-1\r\n",
        "0x5\r\n",
        "0\r\n X: folded\r\n\r\n", /* trailer line starting with whitespace */
        "0\r\nX: a\x01\r\n\r\n",   /* CTL in a trailer */
        "0\r\n\rX",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dechunk_all(bad[i], strlen(bad[i])) != ST_PROTO)
            fail_msg("bad chunked %zu accepted", i);
    const char nul_ext[] = "5;a\0b\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(dechunk_all(nul_ext, sizeof nul_ext - 1), ST_PROTO);

    /* 16 hex digits are fine (the size itself is a caller's limit, not the decoder's) */
    assert_int_equal(dechunk_all("000000000000000F\r\n", 18), ST_AGAIN);

    /* size line limit (1024 incl. extensions) and trailer limit (8192) */
    char line[2100];
    memset(line, 'x', sizeof line);
    memcpy(line, "5;", 2);
    assert_int_equal(dechunk_all(line, 1000), ST_AGAIN);
    assert_int_equal(dechunk_all(line, 1025), ST_PROTO);
    char *trailer = malloc(9000);
    memcpy(trailer, "0\r\nX: ", 6);
    memset(trailer + 6, 'y', 9000 - 6);
    assert_int_equal(dechunk_all(trailer, 8000), ST_AGAIN);
    assert_int_equal(dechunk_all(trailer, 9000), ST_PROTO);
    free(trailer);

    /* errors are sticky */
    http_chunked_t c;
    http_chunked_init(&c);
    char b[8] = "zz";
    size_t len = 2;
    assert_int_equal(http_chunked_decode(&c, b, &len), ST_PROTO);
    memcpy(b, "0\r\n\r\n", 5);
    len = 5;
    assert_int_equal(http_chunked_decode(&c, b, &len), ST_PROTO);
}

static void test_reason(void **state)
{
    assert_string_equal(http_status_reason(200), "OK");
    assert_string_equal(http_status_reason(404), "Not Found");
    assert_string_equal(http_status_reason(413), "Request Entity Too Large");
    assert_string_equal(http_status_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_reason(503), "Service Unavailable");
    assert_non_null(http_status_reason(799));
    assert_non_null(http_status_reason(-1));
    assert_string_equal(http_status_reason(299), "Success");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_complete), cmocka_unit_test(test_request_every_split),
        cmocka_unit_test(test_request_limits),   cmocka_unit_test(test_request_bad_syntax),
        cmocka_unit_test(test_pipelined),        cmocka_unit_test(test_response),
        cmocka_unit_test(test_header_helpers),   cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_errors),   cmocka_unit_test(test_reason),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
