/*
 * tokenizer.c - vtable dispatch for tok_t and the incremental detokenizer (tok_stream_t).
 *
 * UTF-8 repair follows Python's bytes.decode("utf-8", errors="replace"), which is what vLLM's
 * detokenizers produce: every maximal ill-formed subpart (Unicode 3.9, table 3-7) becomes one
 * U+FFFD, so "\xF0\x9F" is one U+FFFD and "\xFF\xFE" is two.
 * The stream appends whole characters only; bytes of a character that is still incomplete wait in
 * s->_pending until the next push (or tok_stream_finish, which flushes them as U+FFFD).
 * Does not: know any vocabulary (implementations do, behind the vtable).
 * Thread-safety: tok_t functions are reentrant; a tok_stream_t belongs to one thread.
 */
#include "engine/tokenizer.h"

#include <string.h>

#include "common/status.h"

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

typedef enum utf8_kind {
    UTF8_OK,         /* a whole, well-formed character of *n bytes */
    UTF8_INCOMPLETE, /* a well-formed prefix of *n bytes that ran out of input */
    UTF8_BAD,        /* an ill-formed maximal subpart of *n bytes (>= 1): one U+FFFD */
} utf8_kind_t;

/* Classifies the character starting at p[0] (len >= 1). */
static utf8_kind_t utf8_next(const unsigned char *p, size_t len, size_t *n)
{
    unsigned char c = p[0];
    if (c < 0x80) {
        *n = 1;
        return UTF8_OK;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
    } else {
        *n = 1;
        return UTF8_BAD;
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= len) {
            *n = i;
            return UTF8_INCOMPLETE;
        }
        unsigned char b = p[i];
        bool ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) {
            *n = i;
            return UTF8_BAD;
        }
    }
    *n = need;
    return UTF8_OK;
}

/* Appends src[0..len) to out with ill-formed subparts replaced. When final is false, an
 * incomplete character at the very end is not written; *used tells how many bytes were consumed
 * (the rest must be kept for later). */
static int utf8_repair(const char *src, size_t len, bool final, sy_buf_t *out, size_t *used)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        size_t n = 0;
        utf8_kind_t k = UTF8_OK;
        /* copy runs of good characters in one append */
        while (run < len && (k = utf8_next(p + run, len - run, &n)) == UTF8_OK)
            run += n;
        if (run > i && sy_buf_append(out, p + i, run - i) != ST_OK)
            return ST_NOMEM;
        i = run;
        if (i >= len)
            break;
        if (k == UTF8_INCOMPLETE && !final)
            break;
        if (sy_buf_append(out, UTF8_REPLACEMENT, 3) != ST_OK)
            return ST_NOMEM;
        i += n;
    }
    *used = i;
    return ST_OK;
}

void tok_destroy(tok_t *t)
{
    if (t)
        t->vt->destroy(t);
}

int tok_encode(const tok_t *t, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t *out, size_t cap, size_t *n_out)
{
    *n_out = 0;
    if (!text && len)
        return ST_INVAL;
    return t->vt->encode(t, text ? text : "", len, add_special, parse_special, out, cap, n_out);
}

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, bool skip_special, sy_buf_t *out)
{
    size_t start = out->len;
    int32_t prev = -1;
    for (size_t i = 0; i < n; i++) {
        int rc = t->vt->append_piece(t, prev, ids[i], skip_special, out);
        if (rc != ST_OK) {
            out->len = start;
            if (out->data)
                out->data[start] = '\0';
            return rc;
        }
        prev = ids[i];
    }
    size_t n_raw = out->len - start;
    if (n_raw == 0 || sy_utf8_valid(out->data + start, n_raw))
        return ST_OK;
    /* slow path: repair a copy of the decoded bytes back into out */
    sy_buf_t tmp = SY_BUF_INIT;
    if (sy_buf_append(&tmp, out->data + start, n_raw) != ST_OK)
        return ST_NOMEM;
    out->len = start;
    size_t used;
    int rc = utf8_repair(tmp.data, n_raw, true, out, &used);
    sy_buf_deinit(&tmp);
    return rc;
}

int tok_utf8_repair(const char *s, size_t len, sy_buf_t *out)
{
    if (len == 0)
        return ST_OK;
    if (sy_utf8_valid(s, len))
        return sy_buf_append(out, s, len);
    size_t used;
    return utf8_repair(s, len, true, out, &used);
}

int tok_piece(const tok_t *t, int32_t id, sy_buf_t *out)
{
    /* prev_id = id: a normal piece keeps its leading space (SentencePiece strips it only after
     * the start or a special token), a special one is rendered (not skipped) */
    return t->vt->append_piece(t, id, id, false, out);
}

int tok_token_str(const tok_t *t, int32_t id, sy_buf_t *out)
{
    return t->vt->token_str(t, id, out);
}

bool tok_is_special(const tok_t *t, int32_t id)
{
    return t->vt->is_special(t, id);
}

void tok_stream_init(tok_stream_t *s)
{
    sy_buf_init(&s->_pending);
    s->_prev = -1;
}

void tok_stream_deinit(tok_stream_t *s)
{
    sy_buf_deinit(&s->_pending);
    s->_prev = -1;
}

/* Repairs out[start..len) in place using s->_pending as scratch: whole characters stay in out,
 * an incomplete tail moves to s->_pending. Only called when the fast check failed. */
static int stream_fixup(tok_stream_t *s, sy_buf_t *out, size_t start)
{
    size_t n = out->len - start;
    sy_buf_reset(&s->_pending);
    if (sy_buf_append(&s->_pending, out->data + start, n) != ST_OK)
        return ST_NOMEM;
    out->len = start;
    out->data[start] = '\0';
    size_t used;
    int rc = utf8_repair(s->_pending.data, n, false, out, &used);
    if (rc != ST_OK)
        return rc;
    sy_buf_consume(&s->_pending, used);
    return ST_OK;
}

int tok_stream_push(const tok_t *t, tok_stream_t *s, int32_t id, bool skip_special, sy_buf_t *out)
{
    size_t start = out->len;
    if (s->_pending.len) {
        if (sy_buf_append(out, s->_pending.data, s->_pending.len) != ST_OK)
            return ST_NOMEM;
        sy_buf_reset(&s->_pending);
    }
    int rc = t->vt->append_piece(t, s->_prev, id, skip_special, out);
    if (rc != ST_OK) {
        /* put back what was pending so the stream state is unchanged */
        size_t had = out->len > start ? out->len - start : 0;
        if (had && sy_buf_append(&s->_pending, out->data + start, had) != ST_OK)
            return ST_NOMEM;
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc;
    }
    s->_prev = id;
    size_t n = out->len - start;
    if (n == 0)
        return ST_OK;
    /* fast path: the new bytes are all ASCII, or whole well-formed characters */
    const unsigned char *p = (const unsigned char *)out->data + start;
    size_t i = 0;
    while (i < n && p[i] < 0x80)
        i++;
    if (i == n)
        return ST_OK;
    while (i < n) {
        size_t k;
        if (utf8_next(p + i, n - i, &k) != UTF8_OK)
            return stream_fixup(s, out, start);
        i += k;
    }
    return ST_OK;
}

int tok_stream_finish(const tok_t *t, tok_stream_t *s, sy_buf_t *out)
{
    (void)t;
    if (!s->_pending.len)
        return ST_OK;
    size_t used;
    int rc = utf8_repair(s->_pending.data, s->_pending.len, true, out, &used);
    sy_buf_reset(&s->_pending);
    return rc;
}
