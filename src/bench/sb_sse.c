/*
 * sb_sse.c - incremental SSE parser and OpenAI chunk decoder for `switchyard bench`
 * (see sb_sse.h). The parser scans for line terminators with memchr-style loops and copies each
 * line once into _line; a data line's value is then appended to _data. Line terminators are
 * handled by a one-bit state (_cr) so "\r" at the end of one read and "\n" at the start of the
 * next are one terminator. Fuzzed by tests/fuzz/fuzz_sb_sse.c.
 * Thread-safety: see sb_sse.h.
 */
#include "bench/sb_sse.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/jsonp.h"
#include "common/status.h"

void sb_sse_init(sb_sse_t *p, size_t max_event_bytes)
{
    memset(p, 0, sizeof *p);
    sy_buf_init(&p->_line);
    sy_buf_init(&p->_data);
    p->_max = max_event_bytes ? max_event_bytes : SB_SSE_DEFAULT_MAX_EVENT;
}

void sb_sse_deinit(sb_sse_t *p)
{
    if (!p)
        return;
    sy_buf_deinit(&p->_line);
    sy_buf_deinit(&p->_data);
}

bool sb_sse_pending(const sb_sse_t *p)
{
    return p->_line.len > 0 || p->_have_data;
}

/* Handles one complete line in p->_line. Returns ST_OK, an error, or the callback's code. */
static int sse_line(sb_sse_t *p, sb_sse_on_event_fn on_event, void *udata)
{
    const char *l = p->_line.data ? p->_line.data : "";
    size_t n = p->_line.len;
    int rc = ST_OK;
    if (n == 0) { /* blank line: dispatch */
        if (p->_have_data) {
            p->n_events++;
            const char *d = p->_data.data ? p->_data.data : "";
            size_t dl = p->_data.len;
            p->_have_data = false;
            if (on_event)
                rc = on_event(d, dl, udata);
            sy_buf_reset(&p->_data);
        }
        return rc;
    }
    if (l[0] == ':') /* comment */
        goto out;
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    if (fl != 4 || memcmp(l, "data", 4) != 0)
        goto out; /* event, id, retry, unknown fields: ignored */
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = (size_t)(l + n - v);
    if (vl > 0 && v[0] == ' ') {
        v++;
        vl--;
    }
    if (p->_have_data && (rc = sy_buf_append_char(&p->_data, '\n')) != ST_OK)
        goto nomem;
    if (p->_data.len + vl > p->_max) {
        p->_err = ST_LIMIT;
        return ST_LIMIT;
    }
    if (vl && (rc = sy_buf_append(&p->_data, v, vl)) != ST_OK)
        goto nomem;
    p->_have_data = true;
out:
    sy_buf_reset(&p->_line);
    return ST_OK;
nomem:
    p->_err = ST_NOMEM;
    return ST_NOMEM;
}

int sb_sse_feed(sb_sse_t *p, const char *buf, size_t len, sb_sse_on_event_fn on_event, void *udata)
{
    if (p->_err)
        return p->_err;
    size_t i = 0;
    while (i < len) {
        if (p->_cr) {
            p->_cr = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        /* find the next terminator */
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (j > i) {
            if (p->_line.len + (j - i) > p->_max) {
                p->_err = ST_LIMIT;
                return ST_LIMIT;
            }
            if (sy_buf_append(&p->_line, buf + i, j - i) != ST_OK) {
                p->_err = ST_NOMEM;
                return ST_NOMEM;
            }
        }
        if (j == len)
            break;
        p->_cr = buf[j] == '\r';
        i = j + 1;
        int rc = sse_line(p, on_event, udata);
        sy_buf_reset(&p->_line);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* ---------------------------------------------------------------- chunks */

/* Reads an optional non-negative integer member; absent or null -> -1. ST_PROTO otherwise. */
static int get_count(const json_t *obj, const char *key, int64_t *out)
{
    *out = -1;
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return ST_PROTO;
    *out = (int64_t)json_integer_value(v);
    return ST_OK;
}

/* Appends the string member key of obj (absent/null: nothing). ST_PROTO when not a string. */
static int take_text(const json_t *obj, const char *key, sb_chunk_t *out, sy_buf_t *content)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_string(v))
        return ST_PROTO;
    size_t n = json_string_length(v);
    out->content_len += n;
    if (content && n && sy_buf_append(content, json_string_value(v), n) != ST_OK)
        return ST_NOMEM;
    return ST_OK;
}

int sb_chunk_decode(const char *data, size_t len, sb_chunk_t *out, sy_buf_t *content)
{
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = out->cached_tokens = -1;
    /* "[DONE]", tolerating surrounding blanks */
    size_t a = 0, b = len;
    while (a < b && (data[a] == ' ' || data[a] == '\t'))
        a++;
    while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t'))
        b--;
    if (b - a == 6 && memcmp(data + a, "[DONE]", 6) == 0) {
        out->done = true;
        return ST_OK;
    }
    if (!sy_utf8_valid(data, len))
        return ST_PROTO;
    json_t *root = NULL;
    int rc = jsonp_load(data, len, &root, NULL);
    if (rc != ST_OK)
        return rc == ST_NOMEM ? ST_NOMEM : ST_PROTO;
    rc = ST_PROTO;
    if (!json_is_object(root))
        goto done;
    json_t *err = json_object_get(root, "error");
    if (err && !json_is_null(err)) {
        out->is_error = true;
        json_t *msg = json_is_object(err) ? json_object_get(err, "message") : err;
        const char *m = json_is_string(msg) ? json_string_value(msg) : "error event";
        snprintf(out->error_msg, sizeof out->error_msg, "%s", m);
        rc = ST_OK;
        goto done;
    }
    json_t *choices = json_object_get(root, "choices");
    if (choices && !json_is_null(choices)) {
        if (!json_is_array(choices))
            goto done;
        out->n_choices = json_array_size(choices);
        if (out->n_choices > 0) {
            json_t *c = json_array_get(choices, 0);
            if (!json_is_object(c))
                goto done;
            json_t *delta = json_object_get(c, "delta");
            if (delta && !json_is_null(delta)) {
                if (!json_is_object(delta))
                    goto done;
                if ((rc = take_text(delta, "content", out, content)) != ST_OK ||
                    (rc = take_text(delta, "reasoning_content", out, content)) != ST_OK)
                    goto done;
                rc = ST_PROTO;
            } else if ((rc = take_text(c, "text", out, content)) != ST_OK) {
                goto done;
            }
            rc = ST_PROTO;
            json_t *fr = json_object_get(c, "finish_reason");
            out->finished = fr && !json_is_null(fr);
        }
    }
    json_t *usage = json_object_get(root, "usage");
    if (usage && !json_is_null(usage)) {
        if (!json_is_object(usage))
            goto done;
        out->has_usage = true;
        if (get_count(usage, "prompt_tokens", &out->prompt_tokens) != ST_OK ||
            get_count(usage, "completion_tokens", &out->completion_tokens) != ST_OK)
            goto done;
        json_t *det = json_object_get(usage, "prompt_tokens_details");
        if (det && !json_is_null(det)) {
            if (!json_is_object(det) ||
                get_count(det, "cached_tokens", &out->cached_tokens) != ST_OK)
                goto done;
        }
    }
    rc = ST_OK;
done:
    json_decref(root);
    return rc;
}
