/*
 * gw_pd.c - P/D decider and NixlConnector body rewrites (contract in gw_pd.h).
 *
 * The prefill body is rebuilt through a jansson tree (it is sent once, to a prefill endpoint, and
 * several members change). The other two directions are textual so that the transfer
 * parameters stay byte-identical: the prefill answer is validated with jsonp (jansson's
 * grammar), then a small scanner finds the byte span of its top-level "kv_transfer_params"
 * value; the decode body is the client's text with that span spliced in before the closing brace.
 * Thread-safety: reentrant, no shared state.
 */
#include "gateway/gw_pd.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonp.h"
#include "common/status.h"

gwpd_decision_t gwpd_decide(uint64_t threshold, uint32_t prompt_tokens, uint64_t cached_tokens,
                            uint32_t *uncached)
{
    uint32_t u = cached_tokens >= prompt_tokens ? 0 : prompt_tokens - (uint32_t)cached_tokens;
    if (uncached)
        *uncached = u;
    return (uint64_t)u >= threshold ? GWPD_PREFILL_DECODE : GWPD_DECODE_ONLY;
}

const char *gwpd_decision_name(gwpd_decision_t d)
{
    return d == GWPD_PREFILL_DECODE ? "prefill-decode" : "decode-only";
}

const char *gwpd_path_name(gwpd_path_t p)
{
    static const char *const names[GWPD_PATH_COUNT] = {
        "none", "decode_only", "prefill_decode", "prefill_retry", "fallback_local", "failed"};
    return (unsigned)p < GWPD_PATH_COUNT ? names[p] : "none";
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

bool gwpd_threshold_parse(const char *v, size_t len, uint64_t *out)
{
    size_t i = 0, end = len;
    while (i < end && is_blank(v[i]))
        i++;
    while (end > i && is_blank(v[end - 1]))
        end--;
    if (i == end)
        return false;
    uint64_t x = 0;
    for (; i < end; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned d = (unsigned)(v[i] - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    }
    *out = x;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* prefill request                                                                             */

int gwpd_prefill_body(const char *body, size_t len, sy_buf_t *out)
{
    json_t *root = NULL, *kv = NULL;
    char *text = NULL;
    int rc = ST_INVAL;
    if (!sy_utf8_valid(body, len))
        goto fail;
    rc = jsonp_load(body, len, &root, NULL);
    if (rc != ST_OK) {
        rc = rc == ST_NOMEM ? ST_NOMEM : ST_INVAL;
        goto fail;
    }
    rc = ST_INVAL;
    if (!json_is_object(root))
        goto fail;
    rc = ST_NOMEM;
    kv = json_pack("{s:b,s:b,s:n,s:n,s:n,s:n}", "do_remote_decode", 1, "do_remote_prefill", 0,
                   "remote_engine_id", "remote_block_ids", "remote_host", "remote_port");
    if (!kv || json_object_set_new(root, "kv_transfer_params", kv) != 0)
        goto fail_kv;
    kv = NULL;
    if (json_object_set_new(root, "stream", json_false()) != 0 ||
        json_object_set_new(root, "max_tokens", json_integer(1)) != 0)
        goto fail;
    if (json_object_get(root, "max_completion_tokens") &&
        json_object_set_new(root, "max_completion_tokens", json_integer(1)) != 0)
        goto fail;
    json_object_del(root, "stream_options");
    json_object_del(root, "min_tokens");
    json_object_del(root, "min_completion_tokens");
    text = json_dumps(root, JSON_COMPACT);
    if (!text || sy_buf_append(out, text, strlen(text)) != ST_OK)
        goto fail;
    free(text);
    json_decref(root);
    return ST_OK;
fail_kv:
    json_decref(kv);
fail:
    free(text);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* a byte-span scanner over text jsonp already accepted                                        */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[*i] == '"': moves *i past the closing quote. false when unterminated. */
static bool skip_string(const char *s, size_t *i, size_t n)
{
    for (size_t k = *i + 1; k < n; k++) {
        if (s[k] == '\\') {
            k++;
        } else if (s[k] == '"') {
            *i = k + 1;
            return true;
        }
    }
    return false;
}

/* Moves *i past one JSON value starting at s[*i]. false on malformed text. */
static bool skip_value(const char *s, size_t *i, size_t n)
{
    size_t k = *i;
    if (k >= n)
        return false;
    if (s[k] == '"')
        return skip_string(s, i, n);
    if (s[k] == '{' || s[k] == '[') {
        size_t depth = 0;
        while (k < n) {
            char c = s[k];
            if (c == '"') {
                if (!skip_string(s, &k, n))
                    return false;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) {
                    *i = k + 1;
                    return true;
                }
            }
            k++;
        }
        return false;
    }
    while (k < n && !strchr(",}] \t\r\n", s[k]))
        k++;
    if (k == *i)
        return false;
    *i = k;
    return true;
}

/* The span of the last top-level member named key (raw, unescaped comparison) of the object
 * s[0..n). false when there is none or the text is not an object. */
static bool member_span(const char *s, size_t n, const char *key, size_t *off, size_t *vlen)
{
    size_t kl = strlen(key), i = skip_ws(s, 0, n);
    bool found = false;
    if (i >= n || s[i] != '{')
        return false;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}')
        return false;
    while (i < n) {
        if (s[i] != '"')
            return false;
        size_t ks = i + 1;
        if (!skip_string(s, &i, n))
            return false;
        bool match = i - 1 - ks == kl && memcmp(s + ks, key, kl) == 0;
        i = skip_ws(s, i, n);
        if (i >= n || s[i] != ':')
            return false;
        i = skip_ws(s, i + 1, n);
        size_t vs = i;
        if (!skip_value(s, &i, n))
            return false;
        if (match) {
            *off = vs;
            *vlen = i - vs;
            found = true;
        }
        i = skip_ws(s, i, n);
        if (i < n && s[i] == ',') {
            i = skip_ws(s, i + 1, n);
            continue;
        }
        return i < n && s[i] == '}' && found;
    }
    return false;
}

int gwpd_response_params(const char *resp, size_t len, sy_buf_t *out)
{
    json_t *root = NULL;
    if (!resp || !sy_utf8_valid(resp, len))
        return ST_PROTO;
    int rc = jsonp_load(resp, len, &root, NULL);
    if (rc != ST_OK)
        return rc == ST_NOMEM ? ST_NOMEM : ST_PROTO;
    if (!json_is_object(root)) {
        json_decref(root);
        return ST_PROTO;
    }
    json_t *kv = json_object_get(root, "kv_transfer_params");
    if (!json_is_object(kv) || json_object_size(kv) == 0) {
        json_decref(root);
        return ST_NOTFOUND;
    }
    size_t off = 0, vlen = 0;
    if (member_span(resp, len, "kv_transfer_params", &off, &vlen)) {
        rc = sy_buf_append(out, resp + off, vlen);
    } else {
        /* an escaped spelling of the key: jansson found it, the raw scan did not */
        char *text = json_dumps(kv, JSON_COMPACT | JSON_PRESERVE_ORDER);
        rc = text ? sy_buf_append(out, text, strlen(text)) : ST_NOMEM;
        free(text);
    }
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* decode request                                                                              */

int gwpd_decode_body(const char *body, size_t len, const char *params, size_t plen, sy_buf_t *out)
{
    static const char member[] = "\"kv_transfer_params\":";
    size_t end = len;
    while (end > 0 && strchr(" \t\r\n", body[end - 1]))
        end--;
    if (end == 0 || body[end - 1] != '}')
        return ST_INVAL;
    size_t last = end - 1, k = last; /* the closing brace */
    while (k > 0 && strchr(" \t\r\n", body[k - 1]))
        k--;
    /* inside a valid object, only the opening brace can precede the closing one */
    bool empty = k > 0 && body[k - 1] == '{';
    size_t before = out->len;
    int rc = sy_buf_reserve(out, last + (sizeof member - 1) + plen + 2);
    if (rc == ST_OK)
        rc = sy_buf_append(out, body, last);
    if (rc == ST_OK && !empty)
        rc = sy_buf_append_char(out, ',');
    if (rc == ST_OK)
        rc = sy_buf_append(out, member, sizeof member - 1);
    if (rc == ST_OK)
        rc = sy_buf_append(out, params, plen);
    if (rc == ST_OK)
        rc = sy_buf_append_char(out, '}');
    if (rc != ST_OK)
        out->len = before;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* debug rendering                                                                             */

int gwpd_note_json(const char *json, size_t len, const gwpd_note_t *n, sy_buf_t *out)
{
    if (len == 0 || json[len - 1] != '}')
        return sy_buf_append(out, json, len);
    bool empty = len >= 2 && json[len - 2] == '{';
    int rc = sy_buf_append(out, json, len - 1);
    if (rc == ST_OK)
        rc = sy_buf_appendf(
            out, "%s\"pd\":{\"decision\":\"%s\",\"path\":\"%s\",\"threshold\":", empty ? "" : ",",
            gwpd_decision_name(n->decision), gwpd_path_name(n->path));
    if (rc == ST_OK)
        rc = n->threshold == GWPD_NEVER ? sy_buf_append_str(out, "null")
                                        : sy_buf_appendf(out, "%" PRIu64, n->threshold);
    if (rc == ST_OK)
        rc = sy_buf_appendf(out,
                            ",\"promptTokens\":%" PRIu32 ",\"cachedTokens\":%" PRIu32
                            ",\"uncachedTokens\":%" PRIu32 ",\"prefill\":",
                            n->prompt_tokens, n->cached_tokens, n->uncached_tokens);
    if (rc == ST_OK && n->prefill) {
        rc = sy_buf_append_char(out, '"');
        if (rc == ST_OK)
            rc = sy_buf_append_json_str(out, n->prefill, strlen(n->prefill));
        if (rc == ST_OK)
            rc = sy_buf_append_char(out, '"');
    } else if (rc == ST_OK) {
        rc = sy_buf_append_str(out, "null");
    }
    if (rc == ST_OK)
        rc = sy_buf_appendf(out,
                            ",\"prefillAttempts\":%" PRIu32 ",\"prefillMs\":", n->prefill_attempts);
    if (rc == ST_OK)
        rc = n->prefill_ms >= 0 ? sy_buf_appendf(out, "%.3f", n->prefill_ms)
                                : sy_buf_append_str(out, "null");
    return rc == ST_OK ? sy_buf_append_str(out, "}}") : rc;
}
