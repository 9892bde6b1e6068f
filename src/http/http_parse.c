/*
 * http_parse.c - strict incremental HTTP/1.x head parser and chunked decoder (see http_parse.h).
 *
 * The head parsers re-scan from the start of the buffer on every call (heads are small and the
 * caller only calls again after new bytes arrive); they never read past buf[len) nor past
 * max_head_bytes. Running out of input inside the limit is ST_AGAIN; running into the limit is
 * ST_LIMIT; a syntax error seen before either is ST_PROTO.
 * Accepted: CRLF or bare LF line ends, leading empty lines before a request line (RFC 9112 §2.2).
 * Rejected (ST_PROTO): bare CR, NUL and other CTLs, non-token bytes in methods and header names,
 * whitespace before the colon, obs-fold, HTTP versions other than 1.0/1.1, targets with bytes
 * outside 0x21-0x7E.
 * The chunked decoder is a byte-at-a-time state machine except for chunk data, which is moved with
 * one memmove per chunk piece; it limits the chunk-size line (incl. extensions) to
 * HTTP_CHUNK_LINE_MAX bytes and the trailer section to HTTP_CHUNK_TRAILER_MAX bytes.
 * Thread-safety: pure; reentrant.
 */
#include "http/http_parse.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include "common/status.h"

#define HTTP_CHUNK_LINE_MAX 1024
#define HTTP_CHUNK_TRAILER_MAX 8192
#define HTTP_DEFAULT_MAX_HEAD 16384
#define HTTP_DEFAULT_MAX_HEADERS 64

/* ---- character classes ---- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/* field-vchar / SP / HTAB / obs-text */
static bool is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_target_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* ---- head parsing ---- */

typedef struct pstate {
    const char *buf;
    size_t len; /* bytes available */
    size_t end; /* min(len, max_head_bytes): we never look beyond */
    size_t pos;
    bool over; /* len > max_head_bytes */
} pstate_t;

/* The status to return when the scan reached ps->end without completing. */
static int out_of_data(const pstate_t *ps)
{
    return ps->over ? ST_LIMIT : ST_AGAIN;
}

/* Consumes CRLF or LF at pos. ST_OK, ST_AGAIN/ST_LIMIT (need more) or ST_PROTO. */
static int eat_eol(pstate_t *ps)
{
    if (ps->pos >= ps->end)
        return out_of_data(ps);
    char c = ps->buf[ps->pos];
    if (c == '\n') {
        ps->pos++;
        return ST_OK;
    }
    if (c != '\r')
        return ST_PROTO;
    if (ps->pos + 1 >= ps->end)
        return out_of_data(ps);
    if (ps->buf[ps->pos + 1] != '\n')
        return ST_PROTO; /* bare CR */
    ps->pos += 2;
    return ST_OK;
}

/* Matches the literal "HTTP/1.x" and returns the minor version in *minor. */
static int eat_version(pstate_t *ps, int *minor)
{
    static const char lit[] = "HTTP/1.";
    for (size_t i = 0; i < sizeof lit - 1; i++, ps->pos++) {
        if (ps->pos >= ps->end)
            return out_of_data(ps);
        if (ps->buf[ps->pos] != lit[i])
            return ST_PROTO;
    }
    if (ps->pos >= ps->end)
        return out_of_data(ps);
    char d = ps->buf[ps->pos];
    if (d != '0' && d != '1')
        return ST_PROTO;
    *minor = d - '0';
    ps->pos++;
    return ST_OK;
}

static int parse_headers(pstate_t *ps, size_t max_headers, http_header_t *hdrs, size_t *num)
{
    size_t n = 0;
    for (;;) {
        if (ps->pos >= ps->end)
            return out_of_data(ps);
        unsigned char c = (unsigned char)ps->buf[ps->pos];
        if (c == '\r' || c == '\n') {
            int rc = eat_eol(ps);
            if (rc != ST_OK)
                return rc;
            *num = n;
            return ST_OK;
        }
        if (c == ' ' || c == '\t')
            return ST_PROTO; /* obs-fold, or whitespace before the first header */
        if (n >= max_headers)
            return ST_LIMIT;
        size_t name_start = ps->pos;
        while (ps->pos < ps->end && is_tchar((unsigned char)ps->buf[ps->pos]))
            ps->pos++;
        if (ps->pos >= ps->end)
            return out_of_data(ps);
        if (ps->pos == name_start || ps->buf[ps->pos] != ':')
            return ST_PROTO; /* empty name, bad byte, or whitespace before the colon */
        size_t name_end = ps->pos++;
        while (ps->pos < ps->end && (ps->buf[ps->pos] == ' ' || ps->buf[ps->pos] == '\t'))
            ps->pos++;
        size_t value_start = ps->pos;
        while (ps->pos < ps->end && is_field_char((unsigned char)ps->buf[ps->pos]))
            ps->pos++;
        if (ps->pos >= ps->end)
            return out_of_data(ps);
        size_t value_end = ps->pos;
        while (value_end > value_start &&
               (ps->buf[value_end - 1] == ' ' || ps->buf[value_end - 1] == '\t'))
            value_end--;
        int rc = eat_eol(ps); /* rejects NUL, CTLs and bare CR in the value */
        if (rc != ST_OK)
            return rc;
        hdrs[n].name.ptr = ps->buf + name_start;
        hdrs[n].name.len = name_end - name_start;
        hdrs[n].value.ptr = ps->buf + value_start;
        hdrs[n].value.len = value_end - value_start;
        n++;
    }
}

static void pstate_init(pstate_t *ps, const char *buf, size_t len, const http_limits_t *lim,
                        size_t *max_headers)
{
    size_t max_head = lim && lim->max_head_bytes ? lim->max_head_bytes : HTTP_DEFAULT_MAX_HEAD;
    size_t mh = lim && lim->max_headers ? lim->max_headers : HTTP_DEFAULT_MAX_HEADERS;
    if (mh > HTTP_MAX_HEADERS_HARD)
        mh = HTTP_MAX_HEADERS_HARD;
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    *max_headers = mh;
    ps->buf = buf;
    ps->len = len;
    ps->over = len > max_head;
    ps->end = ps->over ? max_head : len;
    ps->pos = 0;
}

int http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                       http_request_head_t *out)
{
    pstate_t ps;
    size_t max_headers;
    pstate_init(&ps, buf, len, lim, &max_headers);
    out->num_headers = 0;

    /* ignore empty lines before the request line (e.g. a stray CRLF after a previous body) */
    while (ps.pos < ps.end && (buf[ps.pos] == '\r' || buf[ps.pos] == '\n')) {
        int rc = eat_eol(&ps);
        if (rc != ST_OK)
            return rc;
    }
    size_t start = ps.pos;
    while (ps.pos < ps.end && is_tchar((unsigned char)buf[ps.pos]))
        ps.pos++;
    if (ps.pos >= ps.end)
        return out_of_data(&ps);
    if (ps.pos == start || buf[ps.pos] != ' ')
        return ST_PROTO;
    out->method.ptr = buf + start;
    out->method.len = ps.pos - start;
    ps.pos++;

    start = ps.pos;
    while (ps.pos < ps.end && is_target_char((unsigned char)buf[ps.pos]))
        ps.pos++;
    if (ps.pos >= ps.end)
        return out_of_data(&ps);
    if (ps.pos == start || buf[ps.pos] != ' ')
        return ST_PROTO;
    out->target.ptr = buf + start;
    out->target.len = ps.pos - start;
    ps.pos++;

    int rc = eat_version(&ps, &out->minor_version);
    if (rc == ST_OK)
        rc = eat_eol(&ps);
    if (rc == ST_OK)
        rc = parse_headers(&ps, max_headers, out->headers, &out->num_headers);
    if (rc != ST_OK)
        return rc;
    return (int)ps.pos;
}

int http_parse_response(const char *buf, size_t len, const http_limits_t *lim,
                        http_response_head_t *out)
{
    pstate_t ps;
    size_t max_headers;
    pstate_init(&ps, buf, len, lim, &max_headers);
    out->num_headers = 0;

    int rc = eat_version(&ps, &out->minor_version);
    if (rc != ST_OK)
        return rc;
    if (ps.pos >= ps.end)
        return out_of_data(&ps);
    if (buf[ps.pos] != ' ')
        return ST_PROTO;
    ps.pos++;
    int status = 0;
    for (int i = 0; i < 3; i++, ps.pos++) {
        if (ps.pos >= ps.end)
            return out_of_data(&ps);
        char d = buf[ps.pos];
        if (d < '0' || d > '9' || (i == 0 && d == '0'))
            return ST_PROTO;
        status = status * 10 + (d - '0');
    }
    out->status = status;
    out->reason.ptr = buf + ps.pos;
    out->reason.len = 0;
    if (ps.pos >= ps.end)
        return out_of_data(&ps);
    if (buf[ps.pos] == ' ') {
        /* reason-phrase = *( HTAB / SP / VCHAR / obs-text ); may be empty */
        ps.pos++;
        size_t start = ps.pos;
        while (ps.pos < ps.end && is_field_char((unsigned char)buf[ps.pos]))
            ps.pos++;
        if (ps.pos >= ps.end)
            return out_of_data(&ps);
        out->reason.ptr = buf + start;
        out->reason.len = ps.pos - start;
    }
    rc = eat_eol(&ps); /* "HTTP/1.1 200\r\n" without reason is accepted */
    if (rc == ST_OK)
        rc = parse_headers(&ps, max_headers, out->headers, &out->num_headers);
    if (rc != ST_OK)
        return rc;
    return (int)ps.pos;
}

/* ---- header helpers ---- */

const http_header_t *http_find_header(const http_header_t *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len == len && strncasecmp(h[i].name.ptr, name, len) == 0)
            return &h[i];
    return NULL;
}

bool http_header_has_token(sy_slice_t value, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < value.len) {
        while (i < value.len &&
               (value.ptr[i] == ' ' || value.ptr[i] == '\t' || value.ptr[i] == ','))
            i++;
        size_t start = i;
        while (i < value.len && value.ptr[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value.ptr[end - 1] == ' ' || value.ptr[end - 1] == '\t'))
            end--;
        if (end - start == tlen && tlen > 0 && strncasecmp(value.ptr + start, token, tlen) == 0)
            return true;
    }
    return false;
}

int http_parse_content_length(sy_slice_t value, uint64_t *out)
{
    if (value.len == 0)
        return ST_PROTO;
    uint64_t v = 0;
    for (size_t i = 0; i < value.len; i++) {
        char c = value.ptr[i];
        if (c < '0' || c > '9')
            return ST_PROTO;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ST_PROTO;
        v = v * 10 + d;
    }
    *out = v;
    return ST_OK;
}

/* ---- chunked decoding ---- */

enum {
    CH_SIZE = 0, /* hex digits of the chunk size (_line_len = bytes of the size line) */
    CH_SIZE_WS,  /* BWS after the size: only ';' may follow */
    CH_EXT,      /* chunk extension, skipped */
    CH_SIZE_LF,  /* CR seen at the end of the size line */
    CH_DATA,     /* _remaining payload bytes to copy */
    CH_DATA_CR,  /* CRLF after the payload */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final empty line */
    CH_TRAILER,       /* inside a trailer line (_line_len = trailer bytes so far) */
    CH_TRAILER_LF,
    CH_END_LF, /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR,
};

void http_chunked_init(http_chunked_t *c)
{
    c->_state = CH_SIZE;
    c->_remaining = 0;
    c->_line_len = 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int chunk_fail(http_chunked_t *c, size_t *len, size_t w)
{
    c->_state = CH_ERROR;
    *len = w;
    return ST_PROTO;
}

/* End of the size line: zero means the last chunk (trailers follow). */
static void chunk_size_done(http_chunked_t *c)
{
    c->_line_len = 0;
    c->_state = c->_remaining == 0 ? CH_TRAILER_START : CH_DATA;
}

int http_chunked_decode(http_chunked_t *c, char *buf, size_t *len)
{
    size_t n = *len, r = 0, w = 0;
    if (c->_state == CH_ERROR)
        return chunk_fail(c, len, 0);
    if (c->_state == CH_DONE) {
        *len = 0;
        return 0;
    }
    if (n > INT_MAX) {
        *len = 0;
        return ST_LIMIT; /* caller bug: feed at most INT_MAX bytes per call */
    }
    while (r < n) {
        if (c->_state == CH_DATA) {
            size_t take = n - r;
            if (take > c->_remaining)
                take = (size_t)c->_remaining;
            if (w != r)
                memmove(buf + w, buf + r, take);
            w += take;
            r += take;
            c->_remaining -= take;
            if (c->_remaining == 0)
                c->_state = CH_DATA_CR;
            continue;
        }
        unsigned char ch = (unsigned char)buf[r++];
        /* line-length accounting, before the byte changes the state */
        if (c->_state <= CH_SIZE_LF) {
            if (++c->_line_len > HTTP_CHUNK_LINE_MAX)
                return chunk_fail(c, len, w);
        } else if (c->_state >= CH_TRAILER_START && c->_state <= CH_END_LF) {
            if (++c->_line_len > HTTP_CHUNK_TRAILER_MAX)
                return chunk_fail(c, len, w);
        }
        switch (c->_state) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->_remaining > (UINT64_MAX >> 4))
                    return chunk_fail(c, len, w);
                c->_remaining = (c->_remaining << 4) | (uint64_t)v;
                break;
            }
            if (c->_line_len == 1)
                return chunk_fail(c, len, w); /* no digits before this byte */
            if (ch == ';')
                c->_state = CH_EXT;
            else if (ch == ' ' || ch == '\t')
                c->_state = CH_SIZE_WS;
            else if (ch == '\r')
                c->_state = CH_SIZE_LF;
            else if (ch == '\n')
                chunk_size_done(c);
            else
                return chunk_fail(c, len, w);
            break;
        }
        case CH_SIZE_WS:
            if (ch == ';')
                c->_state = CH_EXT;
            else if (ch != ' ' && ch != '\t')
                return chunk_fail(c, len, w);
            break;
        case CH_EXT:
            if (ch == '\r')
                c->_state = CH_SIZE_LF;
            else if (ch == '\n')
                chunk_size_done(c);
            else if (!is_field_char(ch))
                return chunk_fail(c, len, w);
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                return chunk_fail(c, len, w);
            chunk_size_done(c);
            break;
        case CH_DATA_CR:
            if (ch == '\r') {
                c->_state = CH_DATA_LF;
            } else if (ch == '\n') {
                c->_state = CH_SIZE;
                c->_line_len = 0;
            } else {
                return chunk_fail(c, len, w);
            }
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                return chunk_fail(c, len, w);
            c->_state = CH_SIZE;
            c->_line_len = 0;
            break;
        case CH_TRAILER_START:
            if (ch == '\r') {
                c->_state = CH_END_LF;
            } else if (ch == '\n') {
                c->_state = CH_DONE;
            } else if (is_tchar(ch)) {
                c->_state = CH_TRAILER;
            } else {
                return chunk_fail(c, len, w);
            }
            break;
        case CH_TRAILER:
            if (ch == '\r')
                c->_state = CH_TRAILER_LF;
            else if (ch == '\n')
                c->_state = CH_TRAILER_START;
            else if (!is_field_char(ch))
                return chunk_fail(c, len, w);
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                return chunk_fail(c, len, w);
            c->_state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (ch != '\n')
                return chunk_fail(c, len, w);
            c->_state = CH_DONE;
            break;
        default:
            return chunk_fail(c, len, w);
        }
        if (c->_state == CH_DONE) {
            *len = w;
            return (int)r;
        }
    }
    *len = w;
    return ST_AGAIN;
}

/* ---- reason phrases ---- */

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 425:
        return "Too Early";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        break;
    }
    if (status >= 100 && status < 200)
        return "Informational";
    if (status >= 200 && status < 300)
        return "Success";
    if (status >= 300 && status < 400)
        return "Redirection";
    if (status >= 400 && status < 500)
        return "Client Error";
    return "Server Error";
}
