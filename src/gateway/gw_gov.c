/*
 * gw_gov.c - the gateway's governance layer (see gw_gov.h): authentication, guardrails on the
 * parsed body, admission (model allow-list, limits, audit health, rate limits), the external guard
 * hook, output parsing of the upstream's SSE / JSON answer, and one audit record per request.
 *
 * Design notes:
 * - Guardrails are held through a refcounted wrapper (guard_t). gwg_t holds one reference on the
 *   current file, every request that looked up a policy holds another, so a reload never frees a
 *   policy an in-flight output scanner still reads.
 * - Tenants are looked up by name at each step (gten_find), never kept as pointers across turns:
 *   gten_reload_file invalidates them. The lease keeps the limiter state alive.
 * - The output parser is lazy: r->_parse is decided at admission (output checks, audit response
 *   text, or a tokens_per_minute limit); without it a chunk costs one branch.
 * - Audit records are built by hand with sy_buf_append_json_str (no jansson objects), in one
 *   reusable buffer of the gwg_t.
 * - Guard hook calls: one heap hook_t per call; the http call and an ev timer race, whichever
 *   ends first finishes the call, cancels the other and calls back once. gwg_req_deinit cancels
 *   both without calling back.
 * Thread-safety: event-loop thread only (gov_audit has its own writer thread; the metrics collect
 * callback only reads gaud_stats, which is thread-safe).
 */
#include "gateway/gw_gov.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "gov/gov_pii.h"
#include "http/http_client.h"
#include "http/http_tls.h"

#define DEFAULT_TEXT_MAX ((size_t)64 << 10)
#define MAX_HOOK_UPSTREAMS 32
#define HOOK_RESP_MAX 4096

/* Refcounted guardrails file. */
typedef struct guard {
    int refs;
    ggd_t *ggd; /* owned */
} guard_t;

typedef struct hook_up {
    char host[256];
    int port;
    bool tls;
    http_upstream_t *up; /* owned by the client */
} hook_up_t;

struct gwg {
    gwg_config_t cfg;
    char *api_keys, *guardrails, *audit_log; /* owned copies */
    gten_t *ten;                             /* owned, NULL = auth off */
    guard_t *guard;                          /* one reference, NULL = no guardrails */
    gaud_t *aud;                             /* owned, NULL = no audit log */
    EVP_MD_CTX *md;                          /* reused for prompt hashes */
    sy_buf_t rec;                            /* reusable audit record buffer */
    sy_buf_t tmp;                            /* scratch (redaction) */
    /* guard hook */
    http_client_t *hc, *hc_tls; /* owned, created on first use */
    htls_client_t *tls;         /* owned */
    hook_up_t ups[MAX_HOOK_UPSTREAMS];
    size_t n_ups;
    /* metrics (all NULL without a registry) */
    mx_family_t *f_rl, *f_gr;
    mx_series_t *s_auth[4]; /* indexed by gten_auth_t */
    mx_series_t *s_hook[4]; /* allow, deny, error_allow, error_deny */
    mx_series_t *s_rec, *s_drop, *s_err, *s_qbytes, *s_broken;
    uint64_t seen_dropped; /* collect callback: gaud_stats.dropped already added */
    int64_t last_err_log_ns;
    uint64_t n_audit_errors;
};

enum { HOOK_ALLOW = 0, HOOK_DENY, HOOK_ERROR_ALLOW, HOOK_ERROR_DENY };

typedef struct hook {
    gwg_t *g;
    gwg_req_t *r;
    http_call_t *call;
    uint64_t timer;
    int http_status; /* 0 until the head arrived */
    bool deny_on_error;
    bool error_now; /* the start failed: the timer reports an error outcome */
    sy_buf_t resp;
    gwg_hook_cb done;
    void *udata;
} hook_t;

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                               */

static guard_t *guard_ref(guard_t *gd)
{
    if (gd)
        gd->refs++;
    return gd;
}

static void guard_unref(guard_t *gd)
{
    if (gd && --gd->refs == 0) {
        ggd_free(gd->ggd);
        sy_free(gd);
    }
}

static gwg_content_t mode_from_tenant(int m, gwg_content_t dflt)
{
    switch (m) {
    case GTEN_AUDIT_OFF:
        return GWG_CONTENT_OFF;
    case GTEN_AUDIT_REDACTED:
        return GWG_CONTENT_REDACTED;
    case GTEN_AUDIT_FULL:
        return GWG_CONTENT_FULL;
    default:
        return dflt;
    }
}

/* Appends {"error":{"message":msg,"type":type,"param":null,"code":code}} (code NULL = null). */
static int error_json(sy_buf_t *out, const char *msg, const char *type, const char *code)
{
    int rc = sy_buf_append_str(out, "{\"error\":{\"message\":\"");
    rc |= sy_buf_append_json_str(out, msg, strlen(msg));
    rc |= sy_buf_append_str(out, "\",\"type\":\"");
    rc |= sy_buf_append_str(out, type);
    rc |= sy_buf_append_str(out, "\",\"param\":null,\"code\":");
    if (code) {
        rc |= sy_buf_append_char(out, '"');
        rc |= sy_buf_append_str(out, code);
        rc |= sy_buf_append_char(out, '"');
    } else {
        rc |= sy_buf_append_str(out, "null");
    }
    rc |= sy_buf_append_str(out, "}}");
    return rc ? ST_NOMEM : ST_OK;
}

static int policy_body(sy_buf_t *out, const char *msg)
{
    return error_json(out, msg[0] ? msg : "The request was refused by a content policy.",
                      "BadRequestError", "content_policy_violation");
}

static int nomem_body(sy_buf_t *out)
{
    return error_json(out, "The gateway is out of memory.", "ServiceUnavailableError", NULL);
}

static void set_block(gwg_req_t *r, const char *rule, const char *msg)
{
    snprintf(r->block_rule, sizeof r->block_rule, "%s", rule ? rule : "");
    snprintf(r->block_msg, sizeof r->block_msg, "%s", msg ? msg : "");
}

/* Records a guardrail decision on the request (merged by name and action) and counts it. */
static void add_hit(gwg_t *g, gwg_req_t *r, const ggd_hit_t *h)
{
    for (size_t i = 0; i < r->n_hits; i++) {
        ggd_hit_t *o = &r->hits[i];
        if (o->action == h->action && strcmp(o->name, h->name) == 0) {
            o->count += h->count;
            o->limit = o->limit || h->limit;
            return;
        }
    }
    if (r->n_hits < GGD_MAX_HITS)
        r->hits[r->n_hits++] = *h;
    if (g->f_gr) {
        const char *lv[2] = {h->name, ggd_action_name(h->action)};
        mx_series_t *s = mx_series_get(g->f_gr, lv, 2);
        if (s)
            mx_counter_inc(s);
    }
}

static void add_block_hit(gwg_t *g, gwg_req_t *r, const char *rule)
{
    ggd_hit_t h;
    memset(&h, 0, sizeof h);
    snprintf(h.name, sizeof h.name, "%s", rule);
    h.action = GGD_ACT_BLOCK;
    h.count = 1;
    add_hit(g, r, &h);
}

/* Appends s[0..n) to out, but never past max bytes in all (cut on a UTF-8 boundary); sets
 * *trunc when something was left out. */
static int append_capped(sy_buf_t *out, const char *s, size_t n, size_t max, bool *trunc)
{
    if (out->len >= max) {
        if (n)
            *trunc = true;
        return ST_OK;
    }
    size_t room = max - out->len;
    if (n > room) {
        n = sy_utf8_complete_prefix(s, room);
        *trunc = true;
    }
    return sy_buf_append(out, s, n);
}

/* Appends s[0..n) with the PII kinds whose skip[k] is false replaced by [EMAIL], [PHONE],
 * [CARD], [IBAN]. */
static int append_redacted(sy_buf_t *out, const char *s, size_t n, const bool skip[GPII_N])
{
    static const char *const labels[GPII_N] = {"[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]"};
    size_t st[GPII_N], en[GPII_N];
    bool have[GPII_N];
    size_t pos = 0;
    for (int k = 0; k < GPII_N; k++)
        have[k] = !skip[k] && gpii_next((gpii_kind_t)k, s, n, 0, &st[k], &en[k]);
    for (;;) {
        int best = -1;
        for (int k = 0; k < GPII_N; k++) {
            if (have[k] && st[k] < pos)
                have[k] = gpii_next((gpii_kind_t)k, s, n, pos, &st[k], &en[k]);
            if (have[k] &&
                (best < 0 || st[k] < st[best] || (st[k] == st[best] && en[k] > en[best])))
                best = k;
        }
        if (best < 0)
            break;
        if (sy_buf_append(out, s + pos, st[best] - pos) != ST_OK ||
            sy_buf_append_str(out, labels[best]) != ST_OK)
            return ST_NOMEM;
        pos = en[best];
    }
    return sy_buf_append(out, s + pos, n - pos);
}

static bool any_pii_skip_none(const bool skip[GPII_N])
{
    for (int k = 0; k < GPII_N; k++)
        if (!skip[k])
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* metrics                                                                                     */

static void on_collect(void *udata)
{
    gwg_t *g = udata;
    if (!g->aud)
        return;
    gaud_stats_t st;
    gaud_stats(g->aud, &st);
    mx_gauge_set(g->s_qbytes, (double)st.queue_bytes);
    mx_gauge_set(g->s_broken, st.broken ? 1.0 : 0.0);
    if (st.dropped > g->seen_dropped) {
        mx_counter_add(g->s_drop, (double)(st.dropped - g->seen_dropped));
        g->seen_dropped = st.dropped;
    }
}

static void metrics_init(gwg_t *g)
{
    mx_registry_t *m = g->cfg.metrics;
    if (!m)
        return;
    static const char *l_reason[] = {"reason"};
    static const char *l_rl[] = {"tenant", "limit"};
    static const char *l_gr[] = {"rule", "action"};
    static const char *l_out[] = {"outcome"};
    mx_family_t *f_auth =
        mx_family_create(m, MX_COUNTER, "switchyard_gateway_auth_failures",
                         "Requests refused with 401, by reason.", l_reason, 1, NULL, 0);
    g->f_rl = mx_family_create(m, MX_COUNTER, "switchyard_gateway_rate_limited",
                               "Requests refused with 429, by tenant and limit.", l_rl, 2, NULL, 0);
    g->f_gr = mx_family_create(m, MX_COUNTER, "switchyard_gateway_guardrail_actions",
                               "Guardrail rules and detectors that fired, per request.", l_gr, 2,
                               NULL, 0);
    mx_family_t *f_hook =
        mx_family_create(m, MX_COUNTER, "switchyard_gateway_guard_hook",
                         "External guard hook calls, by outcome.", l_out, 1, NULL, 0);
    mx_family_t *f_rec = mx_family_create(m, MX_COUNTER, "switchyard_gateway_audit_records",
                                          "Audit records queued.", NULL, 0, NULL, 0);
    mx_family_t *f_drop = mx_family_create(
        m, MX_COUNTER, "switchyard_gateway_audit_dropped",
        "Audit records dropped (fail-open queue full, or lost at close).", NULL, 0, NULL, 0);
    mx_family_t *f_err = mx_family_create(m, MX_COUNTER, "switchyard_gateway_audit_errors",
                                          "Audit records the log refused.", NULL, 0, NULL, 0);
    mx_family_t *f_q =
        mx_family_create(m, MX_GAUGE, "switchyard_gateway_audit_queue_bytes",
                         "Audit bytes accepted and not yet written.", NULL, 0, NULL, 0);
    mx_family_t *f_b =
        mx_family_create(m, MX_GAUGE, "switchyard_gateway_audit_broken",
                         "1 while the audit log has an I/O error pending.", NULL, 0, NULL, 0);
    static const char *reasons[4] = {"ok", "missing", "scheme", "wrong_key"};
    for (int i = 1; i < 4 && f_auth; i++)
        g->s_auth[i] = mx_series_get(f_auth, &reasons[i], 1);
    static const char *outcomes[4] = {"allow", "deny", "error_allow", "error_deny"};
    for (int i = 0; i < 4 && f_hook; i++)
        g->s_hook[i] = mx_series_get(f_hook, &outcomes[i], 1);
    g->s_rec = f_rec ? mx_series_get(f_rec, NULL, 0) : NULL;
    g->s_drop = f_drop ? mx_series_get(f_drop, NULL, 0) : NULL;
    g->s_err = f_err ? mx_series_get(f_err, NULL, 0) : NULL;
    g->s_qbytes = f_q ? mx_series_get(f_q, NULL, 0) : NULL;
    g->s_broken = f_b ? mx_series_get(f_b, NULL, 0) : NULL;
    if (g->s_qbytes && g->s_broken && g->s_drop)
        mx_registry_on_collect(m, on_collect, g);
}

static void inc(mx_series_t *s)
{
    if (s)
        mx_counter_inc(s);
}

/* ------------------------------------------------------------------------------------------ */
/* guard hook URL                                                                              */

typedef struct hook_url {
    bool tls;
    char host[256];
    int port;
    const char *path; /* into the URL */
} hook_url_t;

static int url_parse(const char *url, hook_url_t *u)
{
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        u->tls = false;
        p = url + 7;
        u->port = 80;
    } else if (strncmp(url, "https://", 8) == 0) {
        u->tls = true;
        p = url + 8;
        u->port = 443;
    } else {
        return ST_INVAL;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return ST_INVAL;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof u->host)
        return ST_INVAL;
    memcpy(u->host, hs, hl);
    u->host[hl] = '\0';
    if (*p == ':') {
        char *end = NULL;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535)
            return ST_INVAL;
        u->port = (int)v;
        p = end;
    }
    if (*p && *p != '/')
        return ST_INVAL;
    u->path = *p ? p : "/";
    return ST_OK;
}

/* The upstream for a hook URL, created on first use (cached for the gwg_t's lifetime so calls in
 * flight survive reloads that change the URL). */
static http_upstream_t *hook_upstream(gwg_t *g, const hook_url_t *u, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->n_ups; i++)
        if (g->ups[i].port == u->port && g->ups[i].tls == u->tls &&
            strcmp(g->ups[i].host, u->host) == 0)
            return g->ups[i].up;
    if (!g->cfg.loop) {
        sy_errf(err, errlen, "external guard hook needs the event loop");
        return NULL;
    }
    if (g->n_ups >= MAX_HOOK_UPSTREAMS) {
        sy_errf(err, errlen, "too many distinct guard hook hosts over reloads (max %d)",
                MAX_HOOK_UPSTREAMS);
        return NULL;
    }
    http_client_t **cl = u->tls ? &g->hc_tls : &g->hc;
    if (!*cl) {
        http_client_config_t cc;
        http_client_config_default(&cc);
        if (u->tls) {
            if (!g->tls) {
                char terr[256] = "";
                g->tls = htls_client_create(NULL, terr, sizeof terr);
                if (!g->tls) {
                    sy_errf(err, errlen, "guard hook TLS: %s", terr);
                    return NULL;
                }
            }
            cc.tls = g->tls;
        }
        cc.max_idle_per_upstream = 64;
        *cl = http_client_create(g->cfg.loop, &cc);
        if (!*cl) {
            sy_errf(err, errlen, "guard hook: cannot create the HTTP client");
            return NULL;
        }
    }
    int st = ST_OK;
    http_upstream_t *up = http_upstream_create(*cl, u->host, u->port, &st);
    if (!up) {
        sy_errf(err, errlen, "guard hook %s:%d: %s", u->host, u->port, st_str(st));
        return NULL;
    }
    hook_up_t *h = &g->ups[g->n_ups++];
    snprintf(h->host, sizeof h->host, "%s", u->host);
    h->port = u->port;
    h->tls = u->tls;
    h->up = up;
    return up;
}

/* ------------------------------------------------------------------------------------------ */
/* create / reload / destroy                                                                   */

void gwg_config_default(gwg_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->audit_fsync = GAUD_FSYNC_GROUP;
    cfg->audit_group_ms = 10;
    cfg->audit_fail = GAUD_FAIL_CLOSED;
    cfg->audit_prompt = GWG_CONTENT_REDACTED;
    cfg->audit_response = GWG_CONTENT_REDACTED;
    cfg->audit_text_max = DEFAULT_TEXT_MAX;
}

static int load_guard(gwg_t *g, guard_t **out, char *err, size_t errlen)
{
    *out = NULL;
    ggd_t *gg = ggd_load(g->guardrails, err, errlen);
    if (!gg)
        return ST_INVAL;
    const ggd_external_t *ext = ggd_external(gg);
    if (ext->url[0]) {
        hook_url_t u;
        if (url_parse(ext->url, &u) != ST_OK) {
            sy_errf(err, errlen,
                    "%s: external.url '%s': expected http://host[:port]/path or "
                    "https://...",
                    g->guardrails, ext->url);
            ggd_free(gg);
            return ST_INVAL;
        }
        char herr[320] = "";
        if (!hook_upstream(g, &u, herr, sizeof herr)) {
            sy_errf(err, errlen, "%s: %s", g->guardrails, herr);
            ggd_free(gg);
            return ST_INVAL;
        }
    }
    guard_t *gd = sy_calloc(1, sizeof *gd);
    if (!gd) {
        ggd_free(gg);
        sy_errf(err, errlen, "%s: out of memory", g->guardrails);
        return ST_NOMEM;
    }
    gd->refs = 1;
    gd->ggd = gg;
    *out = gd;
    return ST_OK;
}

gwg_t *gwg_create(const gwg_config_t *cfg, int64_t now_ns, char *err, size_t errlen)
{
    gwg_t *g = sy_calloc(1, sizeof *g);
    if (!g) {
        sy_errf(err, errlen, "out of memory");
        return NULL;
    }
    g->cfg = *cfg;
    if (!g->cfg.audit_text_max)
        g->cfg.audit_text_max = DEFAULT_TEXT_MAX;
    g->cfg.api_keys = g->cfg.guardrails = g->cfg.audit_log = NULL;
    if ((cfg->api_keys && !(g->api_keys = sy_strdup(cfg->api_keys))) ||
        (cfg->guardrails && !(g->guardrails = sy_strdup(cfg->guardrails))) ||
        (cfg->audit_log && !(g->audit_log = sy_strdup(cfg->audit_log)))) {
        sy_errf(err, errlen, "out of memory");
        goto fail;
    }
    g->md = EVP_MD_CTX_new();
    if (!g->md) {
        sy_errf(err, errlen, "out of memory (EVP_MD_CTX)");
        goto fail;
    }
    if (g->api_keys && gten_load_file(g->api_keys, now_ns, &g->ten, err, errlen) != ST_OK)
        goto fail;
    if (g->guardrails && load_guard(g, &g->guard, err, errlen) != ST_OK)
        goto fail;
    if (g->audit_log) {
        gaud_config_t ac;
        gaud_config_init(&ac);
        ac.path = g->audit_log;
        ac.fsync = cfg->audit_fsync;
        ac.group_ms = cfg->audit_group_ms ? cfg->audit_group_ms : 10;
        ac.rotate_bytes = cfg->audit_rotate_bytes;
        ac.keep = cfg->audit_keep;
        ac.fail = cfg->audit_fail;
        char aerr[256] = "";
        g->aud = gaud_open(&ac, aerr, sizeof aerr);
        if (!g->aud) {
            sy_errf(err, errlen, "%s: %s", g->audit_log, aerr);
            goto fail;
        }
    }
    metrics_init(g);
    return g;
fail:
    gwg_destroy(g);
    return NULL;
}

void gwg_destroy(gwg_t *g)
{
    if (!g)
        return;
    if (g->cfg.metrics)
        mx_registry_off_collect(g->cfg.metrics, on_collect, g);
    if (g->aud) {
        int rc = gaud_close(g->aud);
        if (rc != ST_OK)
            sy_error("gateway.audit_close", "err=\"%s\"", st_str(rc));
    }
    for (size_t i = 0; i < g->n_ups; i++)
        http_upstream_destroy(g->ups[i].up);
    http_client_destroy(g->hc);
    http_client_destroy(g->hc_tls);
    htls_client_destroy(g->tls);
    guard_unref(g->guard);
    gten_destroy(g->ten);
    EVP_MD_CTX_free(g->md);
    sy_buf_deinit(&g->rec);
    sy_buf_deinit(&g->tmp);
    sy_free(g->api_keys);
    sy_free(g->guardrails);
    sy_free(g->audit_log);
    sy_free(g);
}

int gwg_reload(gwg_t *g, int64_t now_ns, char *err, size_t errlen)
{
    int first = ST_OK;
    if (g->ten) {
        int rc = gten_reload_file(g->ten, g->api_keys, now_ns, err, errlen);
        if (rc != ST_OK)
            first = rc;
    }
    if (g->guardrails) {
        guard_t *gd = NULL;
        char gerr[512] = "";
        int rc = load_guard(g, &gd, gerr, sizeof gerr);
        if (rc == ST_OK) {
            guard_unref(g->guard);
            g->guard = gd;
        } else if (first == ST_OK) {
            first = rc;
            sy_errf(err, errlen, "%s", gerr);
        }
    }
    return first;
}

bool gwg_active(const gwg_t *g)
{
    return g && (g->ten || g->guard || g->aud);
}

bool gwg_auth_enabled(const gwg_t *g)
{
    return g && g->ten;
}

gaud_t *gwg_audit(const gwg_t *g)
{
    return g ? g->aud : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* requests                                                                                    */

static void hook_free(hook_t *h);

void gwg_req_init(gwg_req_t *r)
{
    memset(r, 0, sizeof *r);
    r->usage_completion = -1;
}

void gwg_req_deinit(gwg_req_t *r)
{
    if (r->_hook) {
        hook_free(r->_hook);
        r->_hook = NULL;
    }
    glim_release(&r->lease);
    ggd_out_scan_destroy(r->_scan);
    r->_scan = NULL;
    r->_policy = NULL;
    guard_unref(r->_guard);
    r->_guard = NULL;
    sy_buf_deinit(&r->prompt_text);
    sy_buf_deinit(&r->response_text);
    sy_buf_deinit(&r->_sse);
}

int gwg_authenticate(gwg_t *g, gwg_req_t *r, const char *hdr, size_t len, sy_buf_t *body,
                     sy_buf_t *extra_headers)
{
    r->prompt_mode = g->cfg.audit_prompt;
    r->response_mode = g->cfg.audit_response;
    if (!g->ten) {
        r->tenant[0] = '\0';
        return 0;
    }
    const gten_tenant_t *t = NULL;
    gten_auth_t a = gten_authenticate(g->ten, hdr, len, &t);
    if (a == GTEN_AUTH_OK) {
        snprintf(r->tenant, sizeof r->tenant, "%s", gten_tenant_name(t));
        r->prompt_mode = mode_from_tenant(gten_tenant_audit_prompt(t), g->cfg.audit_prompt);
        r->response_mode = mode_from_tenant(gten_tenant_audit_response(t), g->cfg.audit_response);
        return 0;
    }
    inc(g->s_auth[a & 3]);
    set_block(r, "auth", NULL);
    if (gten_error_401(a, hdr, len, body) != ST_OK ||
        sy_buf_append_str(extra_headers, GTEN_401_HEADERS) != ST_OK)
        return 503;
    return 401;
}

/* Takes the request's guardrails reference and its (tenant, model) policy, once. */
static void take_policy(gwg_t *g, gwg_req_t *r, const char *model)
{
    if (r->_guard || !g->guard)
        return;
    r->_guard = guard_ref(g->guard);
    r->_policy = ggd_policy(g->guard->ggd, r->tenant[0] ? r->tenant : NULL, model);
}

/* ---- guard_body ---- */

typedef struct gb {
    gwg_t *g;
    gwg_req_t *r;
    bool hash, keep, rules;
    bool skip[GPII_N]; /* PII kinds already replaced in the guard's audit copy */
    size_t n_texts;
    bool *modified;
    sy_buf_t *body;
} gb_t;

/* Checks one text; *repl receives an owned masked copy when the forwarded text changes.
 * Returns 0, 400 or 503. */
static int gb_text(gb_t *c, const char *s, size_t n, json_t **repl)
{
    gwg_req_t *r = c->r;
    *repl = NULL;
    if (c->hash) {
        if ((c->n_texts && EVP_DigestUpdate(c->g->md, "\n", 1) != 1) ||
            EVP_DigestUpdate(c->g->md, s, n) != 1)
            c->hash = false;
    }
    const char *audit = s;
    size_t audit_len = n;
    ggd_verdict_t v;
    bool have_v = false;
    if (r->_policy && c->rules) {
        int rc = ggd_check_prompt(r->_policy, s, n, &v);
        have_v = true;
        for (size_t i = 0; i < v.n_hits; i++)
            add_hit(c->g, r, &v.hits[i]);
        if (rc == ST_NOMEM) {
            set_block(r, "internal", "out of memory");
            ggd_verdict_deinit(&v);
            nomem_body(c->body);
            return 503;
        }
        if (rc != ST_OK || v.decision == GGD_BLOCK) {
            set_block(r, v.rule[0] ? v.rule : "internal", v.message);
            ggd_verdict_deinit(&v);
            policy_body(c->body, r->block_msg);
            return 400;
        }
        if (v.masked) {
            *repl = json_stringn(v.masked, v.masked_len);
            if (!*repl) {
                ggd_verdict_deinit(&v);
                nomem_body(c->body);
                return 503;
            }
            *c->modified = true;
        }
        if (v.audit) {
            audit = v.audit;
            audit_len = v.audit_len;
        }
    }
    int st = 0;
    if (c->keep) {
        sy_buf_t *pt = &r->prompt_text;
        size_t max = c->g->cfg.audit_text_max;
        int rc = ST_OK;
        if (c->n_texts)
            rc = append_capped(pt, "\n", 1, max, &r->prompt_truncated);
        if (r->prompt_mode == GWG_CONTENT_REDACTED && any_pii_skip_none(c->skip)) {
            sy_buf_t *t = &c->g->tmp;
            sy_buf_reset(t);
            if (rc == ST_OK)
                rc = append_redacted(t, audit, audit_len, c->skip);
            if (rc == ST_OK)
                rc = append_capped(pt, t->data ? t->data : "", t->len, max, &r->prompt_truncated);
        } else if (rc == ST_OK) {
            if (r->prompt_mode == GWG_CONTENT_FULL) {
                audit = s;
                audit_len = n;
            }
            rc = append_capped(pt, audit, audit_len, max, &r->prompt_truncated);
        }
        if (rc != ST_OK) {
            json_decref(*repl);
            *repl = NULL;
            nomem_body(c->body);
            st = 503;
        }
    }
    if (have_v)
        ggd_verdict_deinit(&v);
    c->n_texts++;
    return st;
}

static int gb_token_prompt(gb_t *c, json_t *prompt)
{
    if (c->r->_policy && c->rules) {
        set_block(c->r, "token_prompt",
                  "Token-id prompts cannot be checked by the content policy of this key.");
        add_block_hit(c->g, c->r, "token_prompt");
        policy_body(c->body, c->r->block_msg);
        return 400;
    }
    if (c->hash) {
        char *s = json_dumps(prompt, JSON_COMPACT);
        if (!s || EVP_DigestUpdate(c->g->md, s, strlen(s)) != 1)
            c->hash = false;
        free(s);
        c->n_texts++;
    }
    return 0;
}

static bool is_token_array(const json_t *a)
{
    size_t i;
    const json_t *x;
    json_array_foreach(a, i, x)
    {
        if (json_is_integer(x) || json_is_array(x))
            return true;
    }
    return false;
}

static int gb_completions(gb_t *c, json_t *root)
{
    json_t *p = json_object_get(root, "prompt");
    if (json_is_string(p)) {
        json_t *repl;
        int st = gb_text(c, json_string_value(p), json_string_length(p), &repl);
        if (repl)
            json_object_set_new(root, "prompt", repl);
        return st;
    }
    if (!json_is_array(p))
        return 0;
    if (is_token_array(p))
        return gb_token_prompt(c, p);
    size_t i;
    json_t *x;
    json_array_foreach(p, i, x)
    {
        if (!json_is_string(x))
            continue;
        json_t *repl;
        int st = gb_text(c, json_string_value(x), json_string_length(x), &repl);
        if (repl)
            json_array_set_new(p, i, repl);
        if (st)
            return st;
    }
    return 0;
}

static int gb_chat(gb_t *c, json_t *root)
{
    json_t *msgs = json_object_get(root, "messages");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *ct = json_object_get(m, "content");
        if (json_is_string(ct)) {
            json_t *repl;
            int st = gb_text(c, json_string_value(ct), json_string_length(ct), &repl);
            if (repl)
                json_object_set_new(m, "content", repl);
            if (st)
                return st;
        } else if (json_is_array(ct)) {
            size_t j;
            json_t *part;
            json_array_foreach(ct, j, part)
            {
                json_t *tx = json_object_get(part, "text");
                if (!json_is_string(tx))
                    continue;
                json_t *repl;
                int st = gb_text(c, json_string_value(tx), json_string_length(tx), &repl);
                if (repl)
                    json_object_set_new(part, "text", repl);
                if (st)
                    return st;
            }
        }
    }
    return 0;
}

/* True when p has any prompt check. gov_guard.h exposes the PII actions but not the deny
 * patterns, so a loaded policy is taken to have prompt rules (fail closed for token prompts). */
static bool policy_has_prompt_rules(const ggd_policy_t *p)
{
    return p != NULL;
}

int gwg_guard_body(gwg_t *g, gwg_req_t *r, json_t *root, bool chat, const char *model,
                   bool *modified, sy_buf_t *body)
{
    *modified = false;
    take_policy(g, r, model);
    gb_t c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.r = r;
    c.hash = g->aud != NULL;
    c.keep = g->aud != NULL && r->prompt_mode != GWG_CONTENT_OFF;
    c.rules = policy_has_prompt_rules(r->_policy);
    c.modified = modified;
    c.body = body;
    for (int k = 0; k < GPII_N; k++)
        c.skip[k] = r->_policy && ggd_policy_pii_action(r->_policy, k) != GGD_ACT_OFF;
    if (!c.hash && !r->_policy)
        return 0;
    sy_buf_reset(&r->prompt_text);
    r->prompt_truncated = false;
    if (c.hash && EVP_DigestInit_ex(g->md, EVP_sha256(), NULL) != 1)
        c.hash = false;
    int st = chat ? gb_chat(&c, root) : gb_completions(&c, root);
    if (c.hash) {
        unsigned int n = 0;
        r->has_prompt_sha = EVP_DigestFinal_ex(g->md, r->prompt_sha256, &n) == 1 && n == 32;
    }
    return st;
}

/* ---- admit ---- */

static bool limits_any(const glim_limits_t *l)
{
    return l->requests_per_second > 0 || l->tokens_per_minute > 0 || l->max_concurrent > 0;
}

static const char *limit_label(glim_reason_t why)
{
    switch (why) {
    case GLIM_REFUSED_REQUESTS:
        return "requests";
    case GLIM_REFUSED_TOKENS:
        return "tokens";
    case GLIM_REFUSED_CONCURRENCY:
        return "concurrency";
    default:
        return "too_large";
    }
}

int gwg_admit(gwg_t *g, gwg_req_t *r, const char *model, int64_t prompt_tokens, int64_t max_tokens,
              int64_t now_ns, sy_buf_t *body, sy_buf_t *extra_headers)
{
    const gten_tenant_t *t = NULL;
    if (g->ten) {
        t = r->tenant[0] ? gten_find(g->ten, r->tenant, strlen(r->tenant)) : NULL;
        if (!t) { /* removed by a reload since authentication */
            set_block(r, "auth", NULL);
            inc(g->s_auth[GTEN_AUTH_WRONG_KEY]);
            if (gten_error_401(GTEN_AUTH_WRONG_KEY, NULL, 0, body) != ST_OK ||
                sy_buf_append_str(extra_headers, GTEN_401_HEADERS) != ST_OK)
                return 503;
            return 401;
        }
        if (model && !gten_tenant_allows_model(t, model, strlen(model))) {
            set_block(r, "model_not_allowed", NULL);
            return gten_error_model(model, strlen(model), body) == ST_OK ? GTEN_MODEL_DENIED_STATUS
                                                                         : 503;
        }
    }
    take_policy(g, r, model);
    if (r->_policy) {
        ggd_verdict_t v;
        if (ggd_check_limits(r->_policy, prompt_tokens, max_tokens, &v) == ST_OK &&
            v.decision == GGD_BLOCK) {
            set_block(r, v.rule, v.message);
            add_block_hit(g, r, v.rule);
            policy_body(body, r->block_msg);
            return 400;
        }
    }
    if (g->aud && g->cfg.audit_fail == GAUD_FAIL_CLOSED && !gaud_accepting(g->aud)) {
        set_block(r, "audit_unavailable", NULL);
        error_json(body, "The audit log is not accepting records; try again later.",
                   "ServiceUnavailableError", "audit_unavailable");
        return 503;
    }
    if (t && limits_any(gten_tenant_limits(t))) {
        glim_release(&r->lease);
        int rc = gten_admit(t, now_ns, prompt_tokens, max_tokens, &r->lease, &r->rl);
        r->has_rl = true;
        glim_headers_t hh;
        glim_headers_fill(&r->rl, &hh);
        if (glim_headers_append(&hh, extra_headers) != ST_OK)
            return 503;
        if (rc != ST_OK) {
            set_block(r, "rate_limit", NULL);
            if (g->f_rl) {
                const char *lv[2] = {r->tenant, limit_label(r->rl.reason)};
                mx_series_t *s = mx_series_get(g->f_rl, lv, 2);
                if (s)
                    mx_counter_inc(s);
            }
            if (glim_error_body(&r->rl, r->tenant, model, body) != ST_OK)
                return 503;
            return 429;
        }
    }
    r->_parse = (r->_policy && ggd_policy_has_output(r->_policy)) ||
                (g->aud && r->response_mode != GWG_CONTENT_OFF) ||
                (t && gten_tenant_limits(t)->tokens_per_minute > 0);
    if (r->_policy && ggd_policy_has_output(r->_policy) && !r->_scan) {
        r->_scan = ggd_out_scan_create(r->_policy);
        if (!r->_scan) {
            glim_release(&r->lease);
            set_block(r, "internal", "out of memory");
            nomem_body(body);
            return 503;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* guard hook                                                                                  */

static void hook_free(hook_t *h)
{
    if (h->timer)
        ev_timer_cancel(h->g->cfg.loop, h->timer);
    if (h->call)
        http_call_cancel(h->call);
    sy_buf_deinit(&h->resp);
    sy_free(h);
}

/* Ends the call with an outcome and calls back (once). */
static void hook_end(hook_t *h, int outcome)
{
    gwg_t *g = h->g;
    gwg_req_t *r = h->r;
    gwg_hook_cb done = h->done;
    void *udata = h->udata;
    if (h->timer) {
        ev_timer_cancel(g->cfg.loop, h->timer);
        h->timer = 0;
    }
    if (h->call) {
        http_call_cancel(h->call);
        h->call = NULL;
    }
    inc(g->s_hook[outcome]);
    sy_buf_t body = SY_BUF_INIT;
    int status = 0;
    if (outcome == HOOK_DENY) {
        char msg[GGD_MSG_MAX] = "";
        json_t *j = h->resp.len ? json_loadb(h->resp.data, h->resp.len, 0, NULL) : NULL;
        const char *m = json_string_value(json_object_get(j, "message"));
        snprintf(msg, sizeof msg, "%s",
                 m && m[0] ? m : "The request was refused by the external guard.");
        json_decref(j);
        set_block(r, "guard_hook", msg);
        add_block_hit(g, r, "guard_hook");
        policy_body(&body, r->block_msg);
        status = 400;
    } else if (outcome == HOOK_ERROR_DENY) {
        set_block(r, "guard_hook", "The external guard is unavailable.");
        add_block_hit(g, r, "guard_hook");
        error_json(&body, "The external guard is unavailable; try again later.",
                   "ServiceUnavailableError", "guard_unavailable");
        status = 503;
    }
    sy_buf_deinit(&h->resp);
    sy_free(h);
    r->_hook = NULL;
    done(udata, status, &body);
    sy_buf_deinit(&body);
}

static void hook_on_head(http_call_t *c, int status, const http_header_t *headers, size_t n,
                         void *udata)
{
    (void)c;
    (void)headers;
    (void)n;
    hook_t *h = udata;
    h->http_status = status;
}

static void hook_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    (void)c;
    hook_t *h = udata;
    if (h->resp.len + len <= HOOK_RESP_MAX)
        (void)sy_buf_append(&h->resp, data, len);
}

static void hook_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    (void)first_byte;
    hook_t *h = udata;
    h->call = NULL; /* invalid after on_done */
    int err_outcome = h->deny_on_error ? HOOK_ERROR_DENY : HOOK_ERROR_ALLOW;
    int outcome;
    if (status != ST_OK || h->http_status == 0 || h->http_status >= 500)
        outcome = err_outcome;
    else if (h->http_status >= 200 && h->http_status < 300)
        outcome = HOOK_ALLOW;
    else if (h->http_status >= 400)
        outcome = HOOK_DENY;
    else
        outcome = err_outcome;
    if (outcome != HOOK_ALLOW && outcome != HOOK_DENY)
        sy_warn("gateway.guard_hook", "status=%d http=%d outcome=%s", status, h->http_status,
                h->deny_on_error ? "deny" : "allow");
    hook_end(h, outcome);
}

static void hook_on_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    hook_t *h = udata;
    h->timer = 0;
    if (!h->error_now)
        sy_warn("gateway.guard_hook", "err=timeout outcome=%s",
                h->deny_on_error ? "deny" : "allow");
    hook_end(h, h->deny_on_error ? HOOK_ERROR_DENY : HOOK_ERROR_ALLOW);
}

int gwg_hook_start(gwg_t *g, gwg_req_t *r, const char *model, const char *prompt, size_t len,
                   gwg_hook_cb done, void *udata)
{
    guard_t *gd = r->_guard ? r->_guard : g->guard;
    if (!gd || !g->cfg.loop)
        return ST_DECLINED;
    const ggd_external_t *ext = ggd_external(gd->ggd);
    if (!ext->url[0])
        return ST_DECLINED;
    if (r->_hook)
        return ST_STATE;
    hook_url_t u;
    char err[320] = "";
    if (url_parse(ext->url, &u) != ST_OK)
        return ST_INVAL; /* checked at load */
    http_upstream_t *up = hook_upstream(g, &u, err, sizeof err);
    hook_t *h = sy_calloc(1, sizeof *h);
    if (!h)
        return ST_NOMEM;
    h->g = g;
    h->r = r;
    h->done = done;
    h->udata = udata;
    h->deny_on_error = ext->deny_on_error;
    sy_buf_t req = SY_BUF_INIT;
    int rc = sy_buf_append_str(&req, "{\"tenant\":\"");
    rc |= sy_buf_append_json_str(&req, r->tenant, strlen(r->tenant));
    rc |= sy_buf_append_str(&req, "\",\"model\":");
    if (model) {
        rc |= sy_buf_append_char(&req, '"');
        rc |= sy_buf_append_json_str(&req, model, strlen(model));
        rc |= sy_buf_append_char(&req, '"');
    } else {
        rc |= sy_buf_append_str(&req, "null");
    }
    rc |= sy_buf_append_str(&req, ",\"prompt\":\"");
    rc |= sy_buf_append_json_str(&req, prompt ? prompt : "", prompt ? len : 0);
    rc |= sy_buf_append_str(&req, "\"}");
    if (rc) {
        sy_buf_deinit(&req);
        sy_free(h);
        return ST_NOMEM;
    }
    static const http_call_cbs_t cbs = {hook_on_head, hook_on_data, hook_on_done};
    rc = up ? http_call_start(up, "POST", u.path, "Content-Type: application/json\r\n", req.data,
                              req.len, &cbs, h, &h->call)
            : ST_UPSTREAM;
    sy_buf_deinit(&req);
    if (rc != ST_OK) {
        h->call = NULL;
        h->error_now = true;
        sy_warn("gateway.guard_hook", "err=\"%s\" outcome=%s", up ? st_str(rc) : err,
                h->deny_on_error ? "deny" : "allow");
    }
    h->timer = ev_timer_add(g->cfg.loop, h->error_now ? 0 : ext->timeout_ms, hook_on_timer, h);
    if (!h->timer) {
        if (h->call)
            http_call_cancel(h->call);
        sy_free(h);
        return ST_NOMEM;
    }
    r->_hook = h;
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* output                                                                                      */

static void keep_response(gwg_t *g, gwg_req_t *r, const char *s, size_t n)
{
    if (!g->aud || r->response_mode == GWG_CONTENT_OFF)
        return;
    (void)append_capped(&r->response_text, s, n, g->cfg.audit_text_max, &r->response_truncated);
}

static ggd_decision_t scan_block(gwg_t *g, gwg_req_t *r)
{
    const char *rule = NULL, *msg = NULL;
    ggd_out_scan_reason(r->_scan, &rule, &msg);
    if (!r->block_rule[0]) {
        set_block(r, rule && rule[0] ? rule : "output", msg);
        add_block_hit(g, r, r->block_rule);
    }
    return GGD_BLOCK;
}

/* One text piece of the output. */
static ggd_decision_t out_text(gwg_t *g, gwg_req_t *r, const char *s, size_t n)
{
    keep_response(g, r, s, n);
    if (r->_scan && ggd_out_scan_feed(r->_scan, s, n) == GGD_BLOCK)
        return scan_block(g, r);
    return GGD_ALLOW;
}

/* Texts and usage of one parsed answer object (an SSE event or a whole body). *texts counts the
 * choices that carried text. */
static ggd_decision_t out_object(gwg_t *g, gwg_req_t *r, const json_t *j, int *texts)
{
    const json_t *ch = json_object_get(j, "choices");
    size_t i;
    const json_t *c;
    json_array_foreach(ch, i, c)
    {
        const json_t *t = json_object_get(c, "text");
        if (!json_is_string(t)) {
            const json_t *d = json_object_get(c, "delta");
            if (!d)
                d = json_object_get(c, "message");
            t = json_object_get(d, "content");
        }
        if (json_is_string(t) && json_string_length(t) > 0) {
            (*texts)++;
            if (out_text(g, r, json_string_value(t), json_string_length(t)) == GGD_BLOCK)
                return GGD_BLOCK;
        }
    }
    const json_t *ct = json_object_get(json_object_get(j, "usage"), "completion_tokens");
    if (json_is_integer(ct) && json_integer_value(ct) >= 0)
        r->usage_completion = json_integer_value(ct);
    return GGD_ALLOW;
}

/* One complete SSE line (without '\n'). */
static ggd_decision_t out_line(gwg_t *g, gwg_req_t *r, const char *s, size_t n, int64_t now_ns)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n < 5 || memcmp(s, "data:", 5) != 0)
        return GGD_ALLOW;
    s += 5;
    n -= 5;
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    if (n == 6 && memcmp(s, "[DONE]", 6) == 0) {
        if (r->_scan && ggd_out_scan_finish(r->_scan) == GGD_BLOCK)
            return scan_block(g, r);
        return GGD_ALLOW;
    }
    if (!n || *s != '{')
        return GGD_ALLOW;
    json_t *j = json_loadb(s, n, 0, NULL);
    if (!j)
        return GGD_ALLOW;
    int texts = 0;
    ggd_decision_t d = out_object(g, r, j, &texts);
    json_decref(j);
    if (texts > 0) {
        r->output_tokens++;
        glim_charge_output(&r->lease, now_ns, 1);
    }
    return d;
}

ggd_decision_t gwg_output_stream(gwg_t *g, gwg_req_t *r, const char *data, size_t len,
                                 int64_t now_ns)
{
    if (!r->_parse || r->_sse_dead || !len)
        return GGD_ALLOW;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        if (!nl) {
            size_t rest = len - pos;
            if (r->_sse.len + rest > GWG_SSE_LINE_MAX) {
                r->_sse_dead = true;
                sy_buf_deinit(&r->_sse);
                return GGD_ALLOW;
            }
            if (sy_buf_append(&r->_sse, data + pos, rest) != ST_OK) {
                r->_sse_dead = true;
                sy_buf_deinit(&r->_sse);
            }
            return GGD_ALLOW;
        }
        size_t n = (size_t)(nl - (data + pos));
        ggd_decision_t d;
        if (r->_sse.len) {
            if (r->_sse.len + n > GWG_SSE_LINE_MAX || sy_buf_append(&r->_sse, data + pos, n)) {
                r->_sse_dead = true;
                sy_buf_deinit(&r->_sse);
                return GGD_ALLOW;
            }
            d = out_line(g, r, r->_sse.data, r->_sse.len, now_ns);
            sy_buf_reset(&r->_sse);
        } else {
            d = out_line(g, r, data + pos, n, now_ns);
        }
        if (d == GGD_BLOCK)
            return GGD_BLOCK;
        pos += n + 1;
    }
    return GGD_ALLOW;
}

ggd_decision_t gwg_output_body(gwg_t *g, gwg_req_t *r, const char *data, size_t len, int64_t now_ns)
{
    if (!r->_parse || !len)
        return GGD_ALLOW;
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!j)
        return GGD_ALLOW;
    int texts = 0;
    ggd_decision_t d = out_object(g, r, j, &texts);
    json_decref(j);
    if (d == GGD_ALLOW && r->_scan && ggd_out_scan_finish(r->_scan) == GGD_BLOCK)
        d = scan_block(g, r);
    if (r->usage_completion > r->output_tokens) {
        glim_charge_output(&r->lease, now_ns, r->usage_completion - r->output_tokens);
        r->output_tokens = r->usage_completion;
    }
    return d;
}

void gwg_policy_event(const gwg_req_t *r, sy_buf_t *out)
{
    (void)sy_buf_append_str(out, "data: ");
    (void)policy_body(out, r->block_msg);
    (void)sy_buf_append_str(out, "\n\ndata: [DONE]\n\n");
}

void gwg_policy_error_body(const gwg_req_t *r, sy_buf_t *out)
{
    (void)policy_body(out, r->block_msg);
}

/* ------------------------------------------------------------------------------------------ */
/* finish: the audit record                                                                    */

static int j_key(sy_buf_t *b, const char *k)
{
    int rc = sy_buf_append_str(b, ",\"");
    rc |= sy_buf_append_str(b, k);
    rc |= sy_buf_append_str(b, "\":");
    return rc;
}

static int j_str(sy_buf_t *b, const char *k, const char *v)
{
    int rc = j_key(b, k);
    if (!v)
        return rc | sy_buf_append_str(b, "null");
    rc |= sy_buf_append_char(b, '"');
    rc |= sy_buf_append_json_str(b, v, strlen(v));
    return rc | sy_buf_append_char(b, '"');
}

static int j_int(sy_buf_t *b, const char *k, int64_t v)
{
    int rc = j_key(b, k);
    if (v < 0)
        return rc | sy_buf_append_str(b, "null");
    return rc | sy_buf_append_i64(b, v);
}

static int j_num(sy_buf_t *b, const char *k, double v, bool neg_null)
{
    int rc = j_key(b, k);
    if (!isfinite(v) || (neg_null && v < 0))
        return rc | sy_buf_append_str(b, "null");
    return rc | sy_buf_appendf(b, "%.3f", v);
}

static int j_text(sy_buf_t *b, const char *k, gwg_content_t mode, const sy_buf_t *t, bool trunc,
                  const bool skip[GPII_N], sy_buf_t *tmp, size_t max)
{
    int rc = j_key(b, k);
    if (mode == GWG_CONTENT_OFF)
        return rc | sy_buf_append_str(b, "null");
    const char *s = t->data ? t->data : "";
    size_t n = t->len;
    if (skip && any_pii_skip_none(skip)) {
        sy_buf_reset(tmp);
        rc |= append_redacted(tmp, s, n, skip);
        n = tmp->len;
        s = tmp->data ? tmp->data : "";
        if (n > max) {
            n = sy_utf8_complete_prefix(s, max);
            trunc = true;
        }
    }
    rc |= sy_buf_append_char(b, '"');
    rc |= sy_buf_append_json_str(b, s, n);
    rc |= sy_buf_append_char(b, '"');
    if (trunc) {
        rc |= sy_buf_append_str(b, ",\"");
        rc |= sy_buf_append_str(b, k);
        rc |= sy_buf_append_str(b, "_truncated\":true");
    }
    return rc;
}

static int build_record(gwg_t *g, gwg_req_t *r, const gwg_summary_t *s, sy_buf_t *b)
{
    char ts[96];
    int64_t ns = s->start_unix_ns;
    if (ns <= 0)
        ns = (int64_t)(sy_wall_s() * 1e9);
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((ns / 1000000) % 1000));
    int rc = sy_buf_append_str(b, "{\"time\":\"");
    rc |= sy_buf_append_str(b, ts);
    rc |= sy_buf_append_char(b, '"');
    rc |= j_str(b, "request_id", s->request_id);
    rc |= j_str(b, "tenant", r->tenant[0] ? r->tenant : NULL);
    rc |= j_str(b, "path", s->path);
    rc |= j_str(b, "model", s->model);
    rc |= j_int(b, "status", s->status);
    rc |= j_str(b, "error", s->error);
    rc |= j_str(b, "endpoint", s->endpoint);
    rc |= j_str(b, "prefill_endpoint", s->prefill_endpoint);
    rc |= j_key(b, "scores");
    rc |= sy_buf_append_str(b, "{\"total\":");
    if (isfinite(s->score_total))
        rc |= sy_buf_appendf(b, "%.6g", s->score_total);
    else
        rc |= sy_buf_append_str(b, "null");
    rc |= j_int(b, "candidates", s->candidates);
    rc |= j_int(b, "cached_blocks_chosen", s->cached_blocks_chosen);
    rc |= j_int(b, "cached_blocks_best", s->cached_blocks_best);
    rc |= sy_buf_append_char(b, '}');
    rc |= j_key(b, "prompt_sha256");
    if (r->has_prompt_sha) {
        static const char hex[] = "0123456789abcdef";
        char h[67];
        h[0] = '"';
        for (int i = 0; i < 32; i++) {
            h[1 + 2 * i] = hex[r->prompt_sha256[i] >> 4];
            h[2 + 2 * i] = hex[r->prompt_sha256[i] & 15];
        }
        h[65] = '"';
        h[66] = '\0';
        rc |= sy_buf_append(b, h, 66);
    } else {
        rc |= sy_buf_append_str(b, "null");
    }
    /* prompt_text is already redacted at guard time; the response is redacted here */
    /* null when off, or when the text was never seen (refused before gwg_guard_body / never
     * admitted) */
    rc |= j_text(b, "prompt", r->has_prompt_sha ? r->prompt_mode : GWG_CONTENT_OFF, &r->prompt_text,
                 r->prompt_truncated, NULL, &g->tmp, g->cfg.audit_text_max);
    static const bool none_skipped[GPII_N] = {false, false, false, false};
    rc |= j_text(b, "response", r->_parse ? r->response_mode : GWG_CONTENT_OFF, &r->response_text,
                 r->response_truncated,
                 r->response_mode == GWG_CONTENT_REDACTED ? none_skipped : NULL, &g->tmp,
                 g->cfg.audit_text_max);
    rc |= j_int(b, "prompt_tokens", s->prompt_tokens);
    int64_t ct = s->completion_tokens;
    if (ct < 0)
        ct = r->usage_completion >= 0 ? r->usage_completion
                                      : (r->output_tokens > 0 ? r->output_tokens : -1);
    rc |= j_int(b, "completion_tokens", ct);
    rc |= j_int(b, "cached_tokens", s->cached_tokens);
    rc |= j_num(b, "ttft_ms", s->ttft_ms, true);
    rc |= j_num(b, "e2e_ms", s->e2e_ms, true);
    rc |= sy_buf_append_str(b, ",\"guardrails\":[");
    for (size_t i = 0; i < r->n_hits; i++) {
        const ggd_hit_t *h = &r->hits[i];
        rc |= sy_buf_append_str(b, i ? ",{\"name\":\"" : "{\"name\":\"");
        rc |= sy_buf_append_json_str(b, h->name, strlen(h->name));
        rc |= sy_buf_append_str(b, "\",\"action\":\"");
        rc |= sy_buf_append_str(b, ggd_action_name(h->action));
        rc |= sy_buf_append_str(b, "\",\"count\":");
        rc |= sy_buf_append_i64(b, h->count);
        rc |= sy_buf_append_str(b, h->limit ? ",\"limit\":true}" : ",\"limit\":false}");
    }
    rc |= sy_buf_append_char(b, ']');
    rc |= j_str(b, "blocked_by", r->block_rule[0] ? r->block_rule : NULL);
    rc |= sy_buf_append_char(b, '}');
    return rc ? ST_NOMEM : ST_OK;
}

void gwg_finish(gwg_t *g, gwg_req_t *r, const gwg_summary_t *s)
{
    if (r->_finished)
        return;
    r->_finished = true;
    if (r->usage_completion > r->output_tokens) {
        glim_charge_output(&r->lease, (int64_t)sy_mono_ns(),
                           r->usage_completion - r->output_tokens);
        r->output_tokens = r->usage_completion;
    }
    glim_release(&r->lease);
    if (!g->aud)
        return;
    sy_buf_reset(&g->rec);
    int rc = build_record(g, r, s, &g->rec);
    if (rc == ST_OK)
        rc = gaud_append(g->aud, g->rec.data, g->rec.len);
    if (g->rec.cap > ((size_t)1 << 20)) /* do not keep a huge buffer around */
        sy_buf_deinit(&g->rec);
    if (rc == ST_OK) {
        inc(g->s_rec);
        return;
    }
    inc(g->s_err);
    g->n_audit_errors++;
    int64_t now = (int64_t)sy_mono_ns();
    if (g->last_err_log_ns == 0 || now - g->last_err_log_ns >= 1000000000LL) {
        g->last_err_log_ns = now;
        sy_error("gateway.audit_append", "err=\"%s\" errors=%llu", st_str(rc),
                 (unsigned long long)g->n_audit_errors);
    }
}
