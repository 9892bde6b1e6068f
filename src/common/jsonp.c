/*
 * jsonp.c - a fast, strict JSON reader that builds a jansson tree (see jsonp.h).
 *
 * Recursive descent over the buffer, depth-limited like jansson. Strings are scanned for the
 * three bytes that end a plain run ('"', '\\', control characters) 16 bytes at a time (SSE2,
 * which every x86-64 has; a byte loop elsewhere); a string without escapes goes to jansson as one
 * slice of the input, a string with escapes is decoded into a reused scratch buffer. Numbers
 * follow the RFC 8259 grammar and jansson's conversions: integers must fit json_int_t ("too big
 * integer"), reals must not overflow a double. Line and column are computed only when an error is
 * reported.
 * Thread-safety: reentrant.
 */
#include "common/jsonp.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/alloc.h"
#include "common/status.h"

typedef struct jp {
    const char *start, *p, *end;
    jsonp_error_t *err;
    int depth;
    bool failed;
    bool nomem;
    char *scratch; /* decoded escaped strings (owned) */
    size_t scratch_cap;
} jp_t;

static void fail_at(jp_t *j, const char *at, const char *fmt, ...)
{
    if (j->failed)
        return;
    j->failed = true;
    if (!j->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err->text, sizeof j->err->text, fmt, ap);
    va_end(ap);
    if (at > j->end)
        at = j->end;
    int line = 1, col = 1;
    for (const char *q = j->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    j->err->line = line;
    j->err->column = col;
    j->err->position = (size_t)(at - j->start);
}

static void fail_nomem(jp_t *j)
{
    j->nomem = true;
    fail_at(j, j->p, "out of memory");
}

/* Describes the token at p for error messages: "near 'x'" or "near end of file". */
static void fail_token(jp_t *j, const char *what)
{
    if (j->p >= j->end)
        fail_at(j, j->p, "%s near end of file", what);
    else if ((unsigned char)*j->p < 0x20 || (unsigned char)*j->p >= 0x7f)
        fail_at(j, j->p, "%s near byte 0x%02x", what, (unsigned char)*j->p);
    else
        fail_at(j, j->p, "%s near '%c'", what, *j->p);
}

static void skip_ws(jp_t *j)
{
    const char *p = j->p, *e = j->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    j->p = p;
}

/* First byte in [p, end) that is '"', '\\' or below 0x20; end if none. */
static const char *scan_plain(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), c1f = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, bs)),
                                 _mm_cmpeq_epi8(_mm_max_epu8(x, c1f), c1f));
        int mask = _mm_movemask_epi8(m);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

static bool scratch_reserve(jp_t *j, size_t need)
{
    if (need <= j->scratch_cap)
        return true;
    size_t cap = j->scratch_cap ? j->scratch_cap : 256;
    while (cap < need)
        cap *= 2;
    char *n = sy_realloc(j->scratch, cap);
    if (!n) {
        fail_nomem(j);
        return false;
    }
    j->scratch = n;
    j->scratch_cap = cap;
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string; j->p is at the opening quote. On success (*s, *n) is the decoded text: a slice of
 * the input when it had no escapes (*in_scratch false), else of j->scratch (valid until the next
 * string is parsed). */
static bool parse_string(jp_t *j, const char **s, size_t *n, bool *in_scratch)
{
    const char *begin = ++j->p, *end = j->end;
    const char *stop = scan_plain(begin, end);
    if (stop < end && *stop == '"') {
        *s = begin;
        *n = (size_t)(stop - begin);
        *in_scratch = false;
        j->p = stop + 1;
        return true;
    }
    /* escapes: decode into scratch (never longer than the input) */
    size_t o = 0;
    const char *p = begin;
    for (;;) {
        stop = scan_plain(p, end);
        size_t run = (size_t)(stop - p);
        if (!scratch_reserve(j, o + run + 8))
            return false;
        memcpy(j->scratch + o, p, run);
        o += run;
        p = stop;
        if (p >= end) {
            j->p = p;
            fail_at(j, p, "premature end of input in string");
            return false;
        }
        if (*p == '"')
            break;
        if ((unsigned char)*p < 0x20) {
            j->p = p;
            fail_at(j, p,
                    *p == '\n' ? "unexpected newline in string"
                               : "control character 0x%x in string",
                    (unsigned char)*p);
            return false;
        }
        /* backslash */
        if (end - p < 2) {
            j->p = p;
            fail_at(j, p, "premature end of input in string");
            return false;
        }
        char c = p[1];
        char simple = c == '"'    ? '"'
                      : c == '\\' ? '\\'
                      : c == '/'  ? '/'
                      : c == 'b'  ? '\b'
                      : c == 'f'  ? '\f'
                      : c == 'n'  ? '\n'
                      : c == 'r'  ? '\r'
                      : c == 't'  ? '\t'
                                  : 0;
        if (simple) {
            j->scratch[o++] = simple;
            p += 2;
            continue;
        }
        if (c != 'u') {
            fail_at(j, p, "invalid escape '\\%c'", (unsigned char)c >= 0x20 ? c : '?');
            return false;
        }
        int v = end - p >= 6 ? hex4(p + 2) : -1;
        if (v < 0) {
            fail_at(j, p, "invalid escape '\\u'");
            return false;
        }
        uint32_t cp = (uint32_t)v;
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail_at(j, p - 6, "invalid Unicode '\\u%04X'", cp);
            return false;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                fail_at(j, p - 6, "invalid Unicode '\\u%04X'", cp);
                return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            p += 6;
        }
        if (cp == 0) {
            fail_at(j, p - 6, "\\u0000 is not allowed");
            return false;
        }
        o += put_utf8(j->scratch + o, cp);
    }
    j->p = p + 1;
    *s = j->scratch;
    *n = o;
    *in_scratch = true;
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static json_t *parse_number(jp_t *j)
{
    const char *s = j->p, *p = s, *e = j->end;
    bool real = false;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0') {
        p++;
    } else if (p < e && is_digit(*p)) {
        while (p < e && is_digit(*p))
            p++;
    } else {
        fail_token(j, "invalid token");
        return NULL;
    }
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !is_digit(*p)) {
            j->p = p;
            fail_token(j, "invalid number");
            return NULL;
        }
        while (p < e && is_digit(*p))
            p++;
        real = true;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || !is_digit(*p)) {
            j->p = p;
            fail_token(j, "invalid number");
            return NULL;
        }
        while (p < e && is_digit(*p))
            p++;
        real = true;
    }
    size_t len = (size_t)(p - s);
    char small[64];
    char *txt = small;
    if (len >= sizeof small) {
        if (!real) {
            fail_at(j, s, s[0] == '-' ? "too big negative integer" : "too big integer");
            return NULL;
        }
        txt = sy_malloc(len + 1);
        if (!txt) {
            fail_nomem(j);
            return NULL;
        }
    }
    memcpy(txt, s, len);
    txt[len] = '\0';
    json_t *v = NULL;
    errno = 0;
    if (!real) {
        long long x = strtoll(txt, NULL, 10);
        if (errno == ERANGE)
            fail_at(j, s, s[0] == '-' ? "too big negative integer" : "too big integer");
        else if (!(v = json_integer((json_int_t)x)))
            fail_nomem(j);
    } else {
        double d = strtod(txt, NULL);
        if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL))
            fail_at(j, s, "real number overflow");
        else if (!(v = json_real(d)))
            fail_nomem(j);
    }
    if (txt != small)
        sy_free(txt);
    j->p = p;
    return v;
}

static json_t *parse_value(jp_t *j);

static json_t *parse_array(jp_t *j)
{
    json_t *a = json_array();
    if (!a) {
        fail_nomem(j);
        return NULL;
    }
    j->p++; /* '[' */
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return a;
    }
    for (;;) {
        json_t *v = parse_value(j);
        if (!v)
            goto fail;
        if (json_array_append_new(a, v) != 0) {
            fail_nomem(j);
            goto fail;
        }
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            skip_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return a;
        }
        fail_token(j, "']' expected");
        goto fail;
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *parse_object(jp_t *j)
{
    json_t *o = json_object();
    if (!o) {
        fail_nomem(j);
        return NULL;
    }
    char *key_copy = NULL;
    j->p++; /* '{' */
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return o;
    }
    for (;;) {
        if (j->p >= j->end || *j->p != '"') {
            fail_token(j, "string or '}' expected");
            goto fail;
        }
        const char *k;
        size_t kn;
        bool in_scratch;
        if (!parse_string(j, &k, &kn, &in_scratch))
            goto fail;
        if (in_scratch) { /* the value's strings reuse scratch */
            key_copy = sy_malloc(kn + 1);
            if (!key_copy) {
                fail_nomem(j);
                goto fail;
            }
            memcpy(key_copy, k, kn);
            key_copy[kn] = '\0';
            k = key_copy;
        }
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':') {
            fail_token(j, "':' expected");
            goto fail;
        }
        j->p++;
        skip_ws(j);
        json_t *v = parse_value(j);
        if (!v)
            goto fail;
        if (json_object_setn_new_nocheck(o, k, kn, v) != 0) {
            fail_nomem(j);
            goto fail;
        }
        sy_free(key_copy);
        key_copy = NULL;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            skip_ws(j);
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return o;
        }
        fail_token(j, "'}' expected");
        goto fail;
    }
fail:
    sy_free(key_copy);
    json_decref(o);
    return NULL;
}

static bool literal(jp_t *j, const char *word, size_t n)
{
    if ((size_t)(j->end - j->p) >= n && memcmp(j->p, word, n) == 0) {
        j->p += n;
        return true;
    }
    return false;
}

/* j->p is at the value's first byte (whitespace skipped). */
static json_t *parse_value(jp_t *j)
{
    if (j->p >= j->end) {
        fail_at(j, j->p, "unexpected end of input");
        return NULL;
    }
    json_t *v = NULL;
    switch (*j->p) {
    case '{':
    case '[':
        if (++j->depth > JSONP_MAX_DEPTH) {
            fail_at(j, j->p, "maximum parsing depth reached");
            return NULL;
        }
        v = *j->p == '{' ? parse_object(j) : parse_array(j);
        j->depth--;
        return v;
    case '"': {
        const char *s;
        size_t n;
        bool in_scratch;
        if (!parse_string(j, &s, &n, &in_scratch))
            return NULL;
        v = json_stringn_nocheck(s, n);
        if (!v)
            fail_nomem(j);
        return v;
    }
    case 't':
        if (literal(j, "true", 4))
            return json_true();
        break;
    case 'f':
        if (literal(j, "false", 5))
            return json_false();
        break;
    case 'n':
        if (literal(j, "null", 4))
            return json_null();
        break;
    default:
        if (*j->p == '-' || is_digit(*j->p))
            return parse_number(j);
        break;
    }
    fail_token(j, "invalid token");
    return NULL;
}

int jsonp_load(const char *buf, size_t len, json_t **out, jsonp_error_t *err)
{
    *out = NULL;
    jp_t j = {.start = buf, .p = buf, .end = buf + len, .err = err};
    if (err)
        memset(err, 0, sizeof *err);
    skip_ws(&j);
    if (j.p >= j.end || (*j.p != '{' && *j.p != '[')) {
        fail_token(&j, "'[' or '{' expected");
        return ST_PROTO;
    }
    json_t *root = parse_value(&j);
    if (root) {
        skip_ws(&j);
        if (j.p < j.end) {
            fail_token(&j, "end of file expected");
            json_decref(root);
            root = NULL;
        }
    }
    sy_free(j.scratch);
    if (!root)
        return j.nomem ? ST_NOMEM : ST_PROTO;
    *out = root;
    return ST_OK;
}
