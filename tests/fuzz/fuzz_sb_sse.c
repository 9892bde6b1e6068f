/*
 * fuzz_sb_sse.c - libFuzzer harness for the bench's SSE parser and chunk decoder (sb_sse.h): the
 * input fed whole, split at a point taken from its first byte, and byte by byte must give the
 * same events with the same data; every event's data must be decodable or refused with
 * ST_PROTO, never crash. abort()s on a violation. Also built with replay_main.c for ctest
 * (tests/fuzz/corpus/sb_sse).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sb_sse.h"
#include "common/buf.h"
#include "common/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

typedef struct acc {
    sy_buf_t all;
    size_t n;
} acc_t;

static int on_ev(const char *d, size_t len, void *udata)
{
    acc_t *a = udata;
    a->n++;
    CHECK(d[len] == '\0'); /* NUL-terminated for the callback */
    sy_buf_append_i64(&a->all, (int64_t)len);
    sy_buf_append_char(&a->all, ':');
    sy_buf_append(&a->all, d, len);
    sb_chunk_t c;
    sy_buf_t text = SY_BUF_INIT;
    int rc = sb_chunk_decode(d, len, &c, &text);
    CHECK(rc == ST_OK || rc == ST_PROTO || rc == ST_NOMEM);
    if (rc == ST_OK)
        CHECK(c.done || text.len == c.content_len);
    sy_buf_deinit(&text);
    return 0;
}

static int run(const char *p, size_t n, size_t cut, bool bytewise, acc_t *a)
{
    sb_sse_t s;
    sb_sse_init(&s, 4096);
    int rc = ST_OK;
    if (bytewise) {
        for (size_t i = 0; i < n && rc == ST_OK; i++)
            rc = sb_sse_feed(&s, p + i, 1, on_ev, a);
    } else {
        rc = sb_sse_feed(&s, p, cut, on_ev, a);
        if (rc == ST_OK)
            rc = sb_sse_feed(&s, p + cut, n - cut, on_ev, a);
    }
    sb_sse_deinit(&s);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
    acc_t a = {SY_BUF_INIT, 0}, b = {SY_BUF_INIT, 0}, c = {SY_BUF_INIT, 0};
    int ra = run(p, size, size, false, &a);
    int rb = run(p, size, cut, false, &b);
    int rc = run(p, size, 0, true, &c);
    CHECK(ra == ST_OK || ra == ST_LIMIT);
    CHECK(ra == rb && ra == rc);
    if (ra == ST_OK) {
        CHECK(a.n == b.n && a.n == c.n);
        CHECK(a.all.len == b.all.len && a.all.len == c.all.len);
        CHECK(a.all.len == 0 || (memcmp(a.all.data, b.all.data, a.all.len) == 0 &&
                                 memcmp(a.all.data, c.all.data, a.all.len) == 0));
    }
    sy_buf_deinit(&a.all);
    sy_buf_deinit(&b.all);
    sy_buf_deinit(&c.all);
    return 0;
}
