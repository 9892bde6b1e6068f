/*
 * buf.c - growable byte buffer, JSON string escaping and UTF-8 checks.
 * Thread-safety: none (see buf.h).
 */
#include "common/buf.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"

bool sy_slice_eq(sy_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

void sy_buf_init(sy_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sy_buf_deinit(sy_buf_t *b)
{
    sy_free(b->data);
    sy_buf_init(b);
}

int sy_buf_reserve(sy_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return ST_NOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return ST_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = sy_realloc(b->data, cap);
    if (!p)
        return ST_NOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0'; /* NUL-terminated whenever cap > 0 */
    return ST_OK;
}

int sy_buf_append(sy_buf_t *b, const void *data, size_t len)
{
    if (sy_buf_reserve(b, len) != ST_OK)
        return ST_NOMEM;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return ST_OK;
}

int sy_buf_append_str(sy_buf_t *b, const char *s)
{
    return sy_buf_append(b, s, strlen(s));
}

int sy_buf_append_char(sy_buf_t *b, char c)
{
    return sy_buf_append(b, &c, 1);
}

int sy_buf_vappendf(sy_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return ST_INVAL;
    if ((size_t)n < sizeof tmp)
        return sy_buf_append(b, tmp, (size_t)n);
    if (sy_buf_reserve(b, (size_t)n) != ST_OK)
        return ST_NOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return ST_OK;
}

int sy_buf_appendf(sy_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sy_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int sy_buf_append_i64(sy_buf_t *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return sy_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

size_t sy_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_out)
{
    if (len == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        if (cp_out)
            *cp_out = c;
        return 1;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp_out)
        *cp_out = cp;
    return n;
}

static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
    return sy_utf8_decode(s, len, NULL);
}

bool sy_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs 16 bytes at a time (long prompts are mostly ASCII) */
        while (len - i >= 16) {
            uint64_t a, b;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + i + 8, 8);
            if ((a | b) & 0x8080808080808080ull)
                break;
            i += 16;
        }
        if (i >= len)
            break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = utf8_seq_len(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

size_t sy_utf8_complete_prefix(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    /* look back at most 3 bytes for an unfinished lead byte */
    size_t back = len < 3 ? len : 3;
    for (size_t k = 1; k <= back; k++) {
        unsigned char c = p[len - k];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: keep looking for the lead */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k)
            return len - k; /* sequence started here is incomplete */
        return len;
    }
    return len;
}

int sy_buf_append_json_str(sy_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (sy_buf_reserve(b, len + 16) != ST_OK)
        return ST_NOMEM;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            if (sy_buf_append(b, p + i, run - i) != ST_OK)
                return ST_NOMEM;
            i = run;
            if (i >= len)
                break;
        }
        unsigned char c = p[i];
        int rc;
        if (c == '"') {
            rc = sy_buf_append(b, "\\\"", 2);
            i++;
        } else if (c == '\\') {
            rc = sy_buf_append(b, "\\\\", 2);
            i++;
        } else if (c == '\n') {
            rc = sy_buf_append(b, "\\n", 2);
            i++;
        } else if (c == '\r') {
            rc = sy_buf_append(b, "\\r", 2);
            i++;
        } else if (c == '\t') {
            rc = sy_buf_append(b, "\\t", 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = sy_buf_append(b, e, 6);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n) {
                rc = sy_buf_append(b, p + i, n);
                i += n;
            } else {
                rc = sy_buf_append(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
                i++;
            }
        }
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

void sy_buf_consume(sy_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void sy_buf_reset(sy_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void sy_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
