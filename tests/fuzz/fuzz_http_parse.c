/*
 * fuzz_http_parse.c - libFuzzer harness for http_parse: request heads (default and tight limits,
 * pipelined sequences), response heads, header helpers and the chunked decoder (whole input vs
 * the same input split in two must agree). Checks the parsers' contracts and abort()s on a
 * violation, so libFuzzer reports it like a crash. Also built with replay_main.c for ctest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "http/http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_slice(sy_slice_t s, const char *buf, size_t len)
{
    CHECK(s.ptr >= buf && s.ptr + s.len <= buf + len);
}

static void check_headers(const http_header_t *h, size_t n, size_t max, const char *buf, size_t len)
{
    CHECK(n <= max && n <= HTTP_MAX_HEADERS_HARD);
    for (size_t i = 0; i < n; i++) {
        check_slice(h[i].name, buf, len);
        check_slice(h[i].value, buf, len);
        CHECK(h[i].name.len > 0);
        CHECK(memchr(h[i].value.ptr, '\n', h[i].value.len) == NULL);
        CHECK(memchr(h[i].value.ptr, '\0', h[i].value.len) == NULL);
        if (h[i].value.len > 0) {
            CHECK(h[i].value.ptr[0] != ' ' && h[i].value.ptr[0] != '\t');
            char last = h[i].value.ptr[h[i].value.len - 1];
            CHECK(last != ' ' && last != '\t');
        }
        uint64_t cl;
        (void)http_parse_content_length(h[i].value, &cl);
        (void)http_header_has_token(h[i].value, "close");
    }
    (void)http_find_header(h, n, "content-length");
}

static void fuzz_request(const char *buf, size_t len, const http_limits_t *lim)
{
    static http_request_head_t req;
    /* 0 selects the parser's defaults (16384 bytes, 64 headers) */
    size_t max_head = lim->max_head_bytes ? lim->max_head_bytes : 16384;
    size_t max_hdrs = lim->max_headers ? lim->max_headers : 64;
    if (max_hdrs > HTTP_MAX_HEADERS_HARD)
        max_hdrs = HTTP_MAX_HEADERS_HARD;
    size_t off = 0;
    for (int round = 0; round < 8 && off < len; round++) {
        int rc = http_parse_request(buf + off, len - off, lim, &req);
        if (rc == ST_AGAIN) {
            CHECK(len - off <= max_head);
            return;
        }
        if (rc == ST_LIMIT || rc == ST_PROTO)
            return;
        CHECK(rc > 0 && (size_t)rc <= len - off && (size_t)rc <= max_head);
        CHECK(req.minor_version == 0 || req.minor_version == 1);
        CHECK(req.method.len > 0 && req.target.len > 0);
        check_slice(req.method, buf + off, (size_t)rc);
        check_slice(req.target, buf + off, (size_t)rc);
        check_headers(req.headers, req.num_headers, max_hdrs, buf + off, (size_t)rc);
        /* incremental: the same head one byte short is incomplete */
        CHECK(http_parse_request(buf + off, (size_t)rc - 1, lim, &req) == ST_AGAIN);
        off += (size_t)rc;
    }
}

static void fuzz_response(const char *buf, size_t len, const http_limits_t *lim)
{
    static http_response_head_t resp;
    int rc = http_parse_response(buf, len, lim, &resp);
    if (rc <= 0) {
        CHECK(rc == ST_AGAIN || rc == ST_LIMIT || rc == ST_PROTO);
        return;
    }
    CHECK((size_t)rc <= len);
    CHECK(resp.status >= 100 && resp.status <= 999);
    check_slice(resp.reason, buf, (size_t)rc);
    check_headers(resp.headers, resp.num_headers, HTTP_MAX_HEADERS_HARD, buf, (size_t)rc);
    CHECK(http_parse_response(buf, (size_t)rc - 1, lim, &resp) == ST_AGAIN);
    (void)http_status_reason(resp.status);
}

static void fuzz_chunked(const uint8_t *data, size_t size)
{
    char *whole = malloc(size ? size : 1);
    char *split = malloc(size ? size : 1);
    if (!whole || !split)
        goto out;
    memcpy(whole, data, size);
    memcpy(split, data, size);

    http_chunked_t c;
    http_chunked_init(&c);
    size_t wlen = size;
    int wrc = http_chunked_decode(&c, whole, &wlen);
    CHECK(wrc == ST_AGAIN || wrc == ST_PROTO || (wrc >= 0 && (size_t)wrc <= size));
    CHECK(wlen <= size);

    /* same bytes in two pieces (cut chosen by the data); results must agree */
    size_t cut = size ? (size_t)data[size - 1] % (size + 1) : 0;
    http_chunked_init(&c);
    size_t l1 = cut;
    int r1 = http_chunked_decode(&c, split, &l1);
    size_t out_len = l1, consumed = 0;
    int src;
    if (r1 == ST_AGAIN) {
        size_t l2 = size - cut;
        char *p2 = split + cut;
        int r2 = http_chunked_decode(&c, p2, &l2);
        memmove(split + out_len, p2, l2);
        out_len += l2;
        src = r2;
        consumed = r2 >= 0 ? cut + (size_t)r2 : 0;
    } else {
        src = r1;
        consumed = r1 >= 0 ? (size_t)r1 : 0;
    }
    if (src >= 0 || src == ST_AGAIN) {
        CHECK(src == ST_AGAIN ? wrc == ST_AGAIN : (wrc >= 0 && (size_t)wrc == consumed));
        CHECK(out_len == wlen && memcmp(split, whole, wlen) == 0);
    } else {
        CHECK(wrc == ST_PROTO);
    }
out:
    free(whole);
    free(split);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    static const http_limits_t def = {16384, 64};
    fuzz_request(buf, size, &def);
    /* tight limits derived from the input exercise the ST_LIMIT paths */
    http_limits_t tight = {size / 2 + 1, size % 9};
    fuzz_request(buf, size, &tight);
    fuzz_response(buf, size, &def);
    fuzz_chunked(data, size);
    return 0;
}
