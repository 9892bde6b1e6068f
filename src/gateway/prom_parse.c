/*
 * prom_parse.c - Prometheus text format 0.0.4 parser (see prom_parse.h).
 *
 * One pass, line by line: memchr finds the line end, then a hand-written scanner walks the line
 * once (name, optional label set, value, optional timestamp). Optional blanks are accepted between
 * tokens the way the reference Go parser accepts them (around '{', ',', '=', '}'). Values go
 * through a strict grammar check first (decimal float or Inf/NaN spellings) and then strtod on a
 * bounded stack copy, so strtod never sees unterminated input or hex/locale surprises.
 * Thread-safety: pure.
 */
#include "gateway/prom_parse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/status.h"

#define PROM_MAX_NUM 64 /* longest value / timestamp token accepted */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_name_start(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool is_name_char(char c, bool colon)
{
    return is_name_start(c, colon) || (c >= '0' && c <= '9');
}

static const char *skip_blanks(const char *p, const char *e)
{
    while (p < e && is_blank(*p))
        p++;
    return p;
}

static bool slice_ieq(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Decimal float: [+-]? (d+ [. d*] | . d+) ([eE] [+-]? d+)?, or [+-]?Inf(inity) / NaN. */
static int parse_value(const char *p, size_t n, double *out)
{
    if (n == 0 || n >= PROM_MAX_NUM)
        return ST_PROTO;
    size_t i = 0;
    bool neg = false;
    if (p[0] == '+' || p[0] == '-') {
        neg = p[0] == '-';
        i = 1;
    }
    if (slice_ieq(p + i, n - i, "inf") || slice_ieq(p + i, n - i, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return ST_OK;
    }
    if (slice_ieq(p, n, "nan")) {
        *out = NAN;
        return ST_OK;
    }
    size_t digits = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        i++;
        digits++;
    }
    if (i < n && p[i] == '.') {
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (digits == 0)
        return ST_PROTO;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            i++;
            ed++;
        }
        if (ed == 0)
            return ST_PROTO;
    }
    if (i != n)
        return ST_PROTO;
    char tmp[PROM_MAX_NUM];
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end = NULL;
    *out = strtod(tmp, &end);
    return end == tmp + n ? ST_OK : ST_PROTO;
}

static int parse_timestamp(const char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && (p[0] == '+' || p[0] == '-')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == n)
        return ST_PROTO;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ST_PROTO;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ST_PROTO;
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX)
        return ST_PROTO;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return ST_OK;
}

/* Parses one sample line p[0..e) (no newline; leading blanks skipped by the caller).
 * ST_OK with *s filled (labels in lab[]), or ST_PROTO. */
static int parse_line(const char *p, const char *e, prom_label_t *lab, prom_sample_t *s)
{
    const char *q = p;
    if (!is_name_start(*q, true))
        return ST_PROTO;
    while (q < e && is_name_char(*q, true))
        q++;
    s->name.ptr = p;
    s->name.len = (size_t)(q - p);
    s->n_labels = 0;
    s->labels = lab;
    s->has_timestamp = false;
    s->timestamp_ms = 0;
    bool need_blank = true; /* between the name and the value; optional after '}' */
    const char *before = q;
    q = skip_blanks(q, e);
    if (q < e && *q == '{') {
        q++;
        for (;;) {
            q = skip_blanks(q, e);
            if (q >= e)
                return ST_PROTO;
            if (*q == '}')
                break;
            if (s->n_labels >= PROM_MAX_LABELS || !is_name_start(*q, false))
                return ST_PROTO;
            prom_label_t *l = &lab[s->n_labels++];
            l->name.ptr = q;
            while (q < e && is_name_char(*q, false))
                q++;
            l->name.len = (size_t)(q - l->name.ptr);
            q = skip_blanks(q, e);
            if (q >= e || *q != '=')
                return ST_PROTO;
            q = skip_blanks(q + 1, e);
            if (q >= e || *q != '"')
                return ST_PROTO;
            q++;
            l->value.ptr = q;
            for (;;) {
                if (q >= e)
                    return ST_PROTO; /* unterminated */
                if (*q == '"')
                    break;
                if (*q == '\\') {
                    if (q + 1 >= e || (q[1] != '\\' && q[1] != '"' && q[1] != 'n'))
                        return ST_PROTO;
                    q += 2;
                    continue;
                }
                q++;
            }
            l->value.len = (size_t)(q - l->value.ptr);
            q = skip_blanks(q + 1, e);
            if (q < e && *q == ',') {
                q++;
                continue;
            }
            if (q < e && *q == '}')
                break;
            return ST_PROTO;
        }
        q = skip_blanks(q + 1, e); /* past '}' */
        need_blank = false;
    }
    if ((need_blank && q == before) || q >= e)
        return ST_PROTO; /* the value must be separated by blanks and present */
    const char *v = q;
    while (q < e && !is_blank(*q))
        q++;
    if (parse_value(v, (size_t)(q - v), &s->value) != ST_OK)
        return ST_PROTO;
    q = skip_blanks(q, e);
    if (q < e) {
        const char *t = q;
        while (q < e && !is_blank(*q))
            q++;
        if (parse_timestamp(t, (size_t)(q - t), &s->timestamp_ms) != ST_OK)
            return ST_PROTO;
        s->has_timestamp = true;
        q = skip_blanks(q, e);
        if (q < e)
            return ST_PROTO;
    }
    return ST_OK;
}

int prom_parse(const char *text, size_t len, prom_on_sample_cb on_sample, void *udata,
               prom_stats_t *stats)
{
    prom_stats_t st = {0};
    if (!text && len > 0)
        return ST_INVAL;
    prom_label_t lab[PROM_MAX_LABELS];
    prom_sample_t s;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (e > p && e[-1] == '\r')
            e--;
        const char *q = skip_blanks(p, e);
        if (q < e) {
            st.lines++;
            if ((size_t)(e - p) > PROM_MAX_LINE) {
                st.malformed++;
            } else if (*q == '#') {
                st.comments++;
            } else if (parse_line(q, e, lab, &s) == ST_OK) {
                st.samples++;
                if (on_sample)
                    on_sample(&s, udata);
            } else {
                st.malformed++;
            }
        }
        p = next;
    }
    if (stats)
        *stats = st;
    return ST_OK;
}

const prom_label_t *prom_sample_label(const prom_sample_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_labels; i++)
        if (sy_slice_eq(s->labels[i].name, name))
            return &s->labels[i];
    return NULL;
}

int prom_label_unescape(sy_slice_t raw, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < raw.len; i++) {
        char c = raw.ptr[i];
        if (c == '\\') {
            if (i + 1 >= raw.len)
                return ST_PROTO;
            char n = raw.ptr[++i];
            if (n == 'n')
                c = '\n';
            else if (n == '\\' || n == '"')
                c = n;
            else
                return ST_PROTO;
        }
        if (w + 1 < cap)
            out[w] = c;
        w++;
    }
    if (cap > 0)
        out[w < cap ? w : cap - 1] = '\0';
    return w > (size_t)INT32_MAX ? ST_PROTO : (int)w;
}

bool prom_label_value_eq(sy_slice_t raw, const char *s)
{
    size_t j = 0;
    for (size_t i = 0; i < raw.len; i++, j++) {
        char c = raw.ptr[i];
        if (c == '\\') {
            if (i + 1 >= raw.len)
                return false;
            char n = raw.ptr[++i];
            c = n == 'n' ? '\n' : n;
        }
        if (s[j] == '\0' || s[j] != c)
            return false;
    }
    return s[j] == '\0';
}

int prom_label_value_u64(sy_slice_t raw, uint64_t *out)
{
    size_t n = raw.len, i = 0;
    uint64_t v = 0;
    if (n == 0)
        return ST_INVAL;
    for (; i < n && raw.ptr[i] >= '0' && raw.ptr[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(raw.ptr[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ST_INVAL;
        v = v * 10 + d;
    }
    if (i == 0)
        return ST_INVAL;
    if (i < n) { /* "16.0": a float with a zero fraction */
        if (raw.ptr[i] != '.' || i + 1 == n)
            return ST_INVAL;
        for (i++; i < n; i++)
            if (raw.ptr[i] != '0')
                return ST_INVAL;
    }
    *out = v;
    return ST_OK;
}
