/*
 * gw_proxy.c - the gateway's data plane (see gw_proxy.h for the exchange state machine).
 *
 * Per generation request: the body is parsed once (jansson); the prompt text is extracted
 * (completions: the prompt string; chat: the rendered chat template, or the concatenated message
 * contents when no template applies); precise block hashes come from the engine's tokenizer and
 * hash chain (kvh_chain_low64), approximate chunk hashes from aidx_hash_prompt; the scheduler
 * picks; the body is forwarded unchanged. Responses are relayed: SSE chunk by chunk as the
 * upstream produces them (pausing the upstream read while the client's queue is over its
 * high-water mark), other responses whole.
 * Thread-safety: event-loop thread only.
 */
#include "gateway/gw_proxy.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"

#define GW_MAX_HASHES 4096        /* precise blocks considered per request (64k tokens of 16) */
#define GW_MAX_CHUNKS 256         /* approximate chunks (llm-d's maxPrefixBlocks) */
#define GW_MAX_RESPONSE (64u << 20) /* largest non-streaming upstream body relayed */

typedef enum gwx_state {
    GWX_PICK = 0,
    GWX_UPSTREAM,
    GWX_STREAMING,
    GWX_BUFFERING,
} gwx_state_t;

typedef struct gwx {
    gw_proxy_t *p;
    http_req_t *req;
    http_call_t *call;
    gwx_state_t state;
    gw_endpoint_t *ep; /* current endpoint */
    char path[64];
    json_t *root; /* parsed body (owned) */
    sy_slice_t body;
    char *model;    /* owned */
    uint32_t est_tokens;
    uint64_t *hashes; /* precise block hashes (owned) */
    size_t n_hashes;
    uint64_t chunks[GW_MAX_CHUNKS];
    size_t n_chunks;
    uint8_t tried[GW_MAX_ENDPOINTS / 8];
    uint32_t attempts;
    int status;           /* upstream status */
    sy_buf_t resp;        /* buffered non-stream body, or the SSE tail kept for usage parsing */
    sy_buf_t decision;    /* debug: the scheduler's decision as JSON (x-switchyard-decision) */
    char ctype[96];
    uint64_t start_ns, first_byte_ns;
    uint32_t predicted_cached_blocks, best_cached_blocks;
    int64_t delivered_cached; /* -1 unknown */
    bool stream;
    struct gwx *prev, *next;
} gwx_t;

struct gw_proxy {
    gw_proxy_config_t cfg;
    bool draining;
    size_t inflight;
    gwx_t *list;
    sy_buf_t out;
    gws_decision_t decision;
    uint32_t match_precise[GW_MAX_ENDPOINTS];
    /* metrics */
    mx_family_t *f_requests, *f_picks, *f_ttft, *f_e2e, *f_decision, *f_retries, *f_regret,
        *f_ejections;
    mx_series_t *s_decision, *s_retries, *s_ejections;
    mx_series_t *s_regret_available, *s_regret_predicted, *s_regret_delivered;
};

static const double k_lat_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                                       0.5,   0.75,  1,    2.5,  5,    7.5,  10,   20,   40};
static const double k_us_buckets[] = {1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3};

/* ------------------------------------------------------------------------------------------ */

static void metrics_init(gw_proxy_t *p)
{
    mx_registry_t *r = p->cfg.metrics;
    static const char *l_req[] = {"model", "status"};
    static const char *l_ep[] = {"endpoint"};
    static const char *l_kind[] = {"kind"};
    p->f_requests = mx_family_create(r, MX_COUNTER, "switchyard_gateway_requests",
                                     "Requests answered by the gateway, by model and HTTP status.",
                                     l_req, 2, NULL, 0);
    p->f_picks = mx_family_create(r, MX_COUNTER, "switchyard_gateway_picks",
                                  "Scheduling decisions per endpoint.", l_ep, 1, NULL, 0);
    p->f_ttft = mx_family_create(r, MX_HISTOGRAM, "switchyard_gateway_time_to_first_token_seconds",
                                 "Time from request receipt to the first response byte.", NULL, 0,
                                 k_lat_buckets, sizeof k_lat_buckets / sizeof k_lat_buckets[0]);
    p->f_e2e = mx_family_create(r, MX_HISTOGRAM, "switchyard_gateway_e2e_request_latency_seconds",
                                "Time from request receipt to the end of the response.", NULL, 0,
                                k_lat_buckets, sizeof k_lat_buckets / sizeof k_lat_buckets[0]);
    p->f_decision = mx_family_create(r, MX_HISTOGRAM, "switchyard_gateway_scheduling_seconds",
                                     "Time to hash the prompt and pick an endpoint.", NULL, 0,
                                     k_us_buckets, sizeof k_us_buckets / sizeof k_us_buckets[0]);
    p->f_retries = mx_family_create(r, MX_COUNTER, "switchyard_gateway_retries",
                                    "Requests retried on another endpoint before the first byte.",
                                    NULL, 0, NULL, 0);
    p->f_ejections = mx_family_create(r, MX_COUNTER, "switchyard_gateway_ejections",
                                      "Endpoints ejected after consecutive failures.", NULL, 0,
                                      NULL, 0);
    p->f_regret = mx_family_create(
        r, MX_COUNTER, "switchyard_gateway_cached_tokens",
        "Routing regret: prompt tokens cached on the best endpoint (available), on the chosen "
        "endpoint as predicted by the index (predicted), and reported by the engine (delivered).",
        l_kind, 1, NULL, 0);
    p->s_decision = mx_series_get(p->f_decision, NULL, 0);
    p->s_retries = mx_series_get(p->f_retries, NULL, 0);
    p->s_ejections = mx_series_get(p->f_ejections, NULL, 0);
    const char *k;
    k = "available";
    p->s_regret_available = mx_series_get(p->f_regret, &k, 1);
    k = "predicted";
    p->s_regret_predicted = mx_series_get(p->f_regret, &k, 1);
    k = "delivered";
    p->s_regret_delivered = mx_series_get(p->f_regret, &k, 1);
}

gw_proxy_t *gw_proxy_create(const gw_proxy_config_t *cfg)
{
    gw_proxy_t *p = sy_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = *cfg;
    if (!p->cfg.max_retries)
        p->cfg.max_retries = 2;
    if (!p->cfg.eject_after)
        p->cfg.eject_after = 3;
    if (!p->cfg.approx_chunk_chars)
        p->cfg.approx_chunk_chars = 64;
    if (!p->cfg.block_size)
        p->cfg.block_size = 16;
    metrics_init(p);
    return p;
}

static void gwx_free(gwx_t *x)
{
    gw_proxy_t *p = x->p;
    if (x->prev)
        x->prev->next = x->next;
    else
        p->list = x->next;
    if (x->next)
        x->next->prev = x->prev;
    p->inflight--;
    if (x->ep) {
        if (x->ep->inflight_requests)
            x->ep->inflight_requests--;
        x->ep->inflight_tokens =
            x->ep->inflight_tokens > x->est_tokens ? x->ep->inflight_tokens - x->est_tokens : 0;
    }
    json_decref(x->root);
    sy_free(x->model);
    sy_free(x->hashes);
    sy_buf_deinit(&x->resp);
    sy_buf_deinit(&x->decision);
    sy_free(x);
}

void gw_proxy_destroy(gw_proxy_t *p)
{
    if (!p)
        return;
    while (p->list) {
        gwx_t *x = p->list;
        if (x->call)
            http_call_cancel(x->call);
        gwx_free(x);
    }
    sy_buf_deinit(&p->out);
    sy_free(p);
}

size_t gw_proxy_inflight(const gw_proxy_t *p)
{
    return p->inflight;
}

void gw_proxy_set_draining(gw_proxy_t *p, bool draining)
{
    p->draining = draining;
}

/* ------------------------------------------------------------------------------------------ */
/* answers                                                                                     */

static void count_request(gw_proxy_t *p, const char *model, int status)
{
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    const char *lv[] = {model ? model : "", st};
    mx_series_t *s = mx_series_get(p->f_requests, lv, 2);
    if (s)
        mx_counter_inc(s);
}

static void answer_error(gw_proxy_t *p, http_req_t *req, const char *model, int status,
                         const char *type, const char *msg, const char *extra)
{
    count_request(p, model, status);
    if (extra) {
        sy_buf_t *b = &p->out;
        sy_buf_reset(b);
        sy_buf_append_str(b, "{\"error\":{\"message\":\"");
        sy_buf_append_json_str(b, msg, strlen(msg));
        sy_buf_appendf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":%d}}", type, status);
        http_req_respond(req, status, "application/json", b->data, b->len, extra);
        return;
    }
    http_req_respond_error(req, status, type, msg, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* endpoint outcome bookkeeping                                                                */

static void ep_success(gw_endpoint_t *ep)
{
    ep->consecutive_failures = 0;
}

static void ep_failure(gw_proxy_t *p, gw_endpoint_t *ep, int status)
{
    ep->consecutive_failures++;
    if (!ep->ejected && ep->consecutive_failures >= p->cfg.eject_after) {
        ep->ejected = true;
        ep->healthy = false;
        mx_counter_inc(p->s_ejections);
        sy_warn("gateway.eject", "endpoint=%s failures=%u last=\"%s\"", ep->name,
                ep->consecutive_failures, st_str(status));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* upstream callbacks                                                                          */

static void start_attempt(gwx_t *x);

static bool header_is(const http_header_t *h, const char *name)
{
    return h->name.len == strlen(name) && strncasecmp(h->name.ptr, name, h->name.len) == 0;
}

/* Extra response headers naming the endpoint (and, in debug mode, the decision); returned text
 * lives in the proxy's scratch buffer until the next call. */
static const char *response_headers(gwx_t *x)
{
    sy_buf_t *b = &x->p->out;
    sy_buf_reset(b);
    sy_buf_appendf(b, "x-switchyard-endpoint: %s\r\n", x->ep->name);
    if (x->decision.len) {
        sy_buf_append_str(b, "x-switchyard-decision: ");
        sy_buf_append(b, x->decision.data, x->decision.len);
        sy_buf_append_str(b, "\r\n");
    }
    return b->data;
}

static void on_client_writable(http_req_t *req, void *udata)
{
    (void)req;
    gwx_t *x = udata;
    if (x->call)
        http_call_resume(x->call);
}

static void up_on_head(http_call_t *c, int status, const http_header_t *hs, size_t n, void *udata)
{
    (void)c;
    gwx_t *x = udata;
    gw_proxy_t *p = x->p;
    x->status = status;
    x->first_byte_ns = sy_mono_ns();
    x->ctype[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (header_is(&hs[i], "Content-Type"))
            snprintf(x->ctype, sizeof x->ctype, "%.*s", (int)hs[i].value.len, hs[i].value.ptr);
    mx_series_t *t = mx_series_get(p->f_ttft, NULL, 0);
    if (t)
        mx_hist_observe(t, (double)(x->first_byte_ns - x->start_ns) / 1e9);
    if (status == 200 && strncasecmp(x->ctype, "text/event-stream", 17) == 0) {
        x->state = GWX_STREAMING;
        http_req_sse_start(x->req, response_headers(x));
        http_req_set_on_writable(x->req, on_client_writable, x);
    } else {
        x->state = GWX_BUFFERING;
    }
}

/* Scans SSE text for the usage chunk's cached_tokens (the last one wins). */
static void scan_cached(gwx_t *x, const char *s, size_t len)
{
    static const char key[] = "\"cached_tokens\":";
    const size_t kl = sizeof key - 1;
    for (size_t i = 0; i + kl < len; i++) {
        if (s[i] == '"' && memcmp(s + i, key, kl) == 0) {
            size_t j = i + kl;
            int64_t v = 0;
            bool any = false;
            while (j < len && s[j] >= '0' && s[j] <= '9') {
                v = v * 10 + (s[j] - '0');
                j++;
                any = true;
            }
            if (any)
                x->delivered_cached = v;
        }
    }
}

static void up_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    gwx_t *x = udata;
    if (x->state == GWX_STREAMING) {
        /* keep a short tail so a usage chunk split across reads is still found */
        sy_buf_append(&x->resp, data, len);
        scan_cached(x, x->resp.data, x->resp.len);
        if (x->resp.len > 512)
            sy_buf_consume(&x->resp, x->resp.len - 512);
        if (http_req_sse_send(x->req, data, len) == ST_OK && !http_req_writable(x->req))
            http_call_pause(c);
        return;
    }
    if (x->resp.len + len > GW_MAX_RESPONSE) {
        x->status = 502; /* reported in on_done */
        return;
    }
    sy_buf_append(&x->resp, data, len);
}

static void finish_metrics(gwx_t *x, int status)
{
    gw_proxy_t *p = x->p;
    count_request(p, x->model, status);
    mx_series_t *e = mx_series_get(p->f_e2e, NULL, 0);
    if (e)
        mx_hist_observe(e, (double)(sy_mono_ns() - x->start_ns) / 1e9);
    uint32_t bs = p->cfg.block_size;
    if (status == 200) {
        mx_counter_add(p->s_regret_available, (double)x->best_cached_blocks * bs);
        mx_counter_add(p->s_regret_predicted, (double)x->predicted_cached_blocks * bs);
        if (x->delivered_cached >= 0)
            mx_counter_add(p->s_regret_delivered, (double)x->delivered_cached);
    }
}

static void up_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    gwx_t *x = udata;
    gw_proxy_t *p = x->p;
    x->call = NULL;
    bool upstream_5xx = x->state == GWX_BUFFERING && x->status >= 500;
    if ((status != ST_OK && !first_byte) || (upstream_5xx && status == ST_OK)) {
        /* nothing reached the client yet: try another endpoint */
        ep_failure(p, x->ep, status != ST_OK ? status : ST_UPSTREAM);
        sy_info("gateway.retry", "endpoint=%s status=%s http=%d attempt=%u", x->ep->name,
                st_str(status), x->status, x->attempts);
        if (x->attempts <= p->cfg.max_retries) {
            mx_counter_inc(p->s_retries);
            if (x->ep->inflight_requests)
                x->ep->inflight_requests--;
            x->ep->inflight_tokens = x->ep->inflight_tokens > x->est_tokens
                                         ? x->ep->inflight_tokens - x->est_tokens
                                         : 0;
            x->ep = NULL;
            x->state = GWX_PICK;
            sy_buf_reset(&x->resp);
            start_attempt(x);
            return;
        }
        if (upstream_5xx)
            goto relay; /* out of endpoints: relay the last upstream error as it is */
        answer_error(p, x->req, x->model, 502, "BadGateway",
                     "No endpoint could serve the request (all attempts failed).", NULL);
        gwx_free(x);
        return;
    }
    if (x->state == GWX_STREAMING) {
        if (status != ST_OK) {
            /* cut mid-stream: end the client's stream in-band, as vLLM reports errors */
            ep_failure(p, x->ep, status);
            static const char err[] =
                "data: {\"error\":{\"message\":\"The model server failed while streaming the "
                "response.\",\"type\":\"BadGateway\",\"param\":null,\"code\":502}}\n\n"
                "data: [DONE]\n\n";
            http_req_sse_send(x->req, err, sizeof err - 1);
            finish_metrics(x, 502);
        } else {
            ep_success(x->ep);
            finish_metrics(x, 200);
        }
        http_req_sse_end(x->req);
        gwx_free(x);
        return;
    }
    if (status != ST_OK) {
        ep_failure(p, x->ep, status);
        answer_error(p, x->req, x->model, 502, "BadGateway",
                     "The model server failed while sending the response.", NULL);
        gwx_free(x);
        return;
    }
relay:
    if (x->status < 500)
        ep_success(x->ep);
    if (x->status == 200 && x->resp.len)
        scan_cached(x, x->resp.data, x->resp.len);
    finish_metrics(x, x->status);
    http_req_respond(x->req, x->status, x->ctype[0] ? x->ctype : "application/json",
                     x->resp.data ? x->resp.data : "", x->resp.len, response_headers(x));
    gwx_free(x);
}

static const http_call_cbs_t k_cbs = {up_on_head, up_on_data, up_on_done};

/* ------------------------------------------------------------------------------------------ */
/* scheduling                                                                                  */

static void start_attempt(gwx_t *x)
{
    gw_proxy_t *p = x->p;
    gw_table_t *t = p->cfg.table;
    gw_endpoint_t *cand[GW_MAX_ENDPOINTS];
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        gw_endpoint_t *ep = t->eps[i];
        if (!ep || (x->tried[i / 8] & (1u << (i % 8))))
            continue;
        cand[n++] = ep;
    }
    uint64_t t0 = sy_mono_ns();
    gws_request_t r;
    memset(&r, 0, sizeof r);
    r.model = x->model;
    r.block_hashes = x->hashes;
    r.n_block_hashes = x->n_hashes;
    r.chunk_hashes = x->chunks;
    r.n_chunk_hashes = x->n_chunks;
    r.prompt_tokens = x->est_tokens;
    char session[128];
    sy_slice_t sess;
    if (http_req_header(x->req, "x-session-token", &sess) && sess.len < sizeof session) {
        memcpy(session, sess.ptr, sess.len);
        session[sess.len] = '\0';
        r.session = session;
    }
    gw_endpoint_t *ep = NULL;
    if (n > 0 && gws_pick(p->cfg.sched, NULL, &r, cand, n, p->cfg.pidx, p->cfg.aidx,
                          &p->decision) == ST_OK)
        ep = p->decision.endpoint;
    mx_hist_observe(p->s_decision, (double)(sy_mono_ns() - t0) / 1e9);
    if (!ep) {
        answer_error(p, x->req, x->model, 503, "ServiceUnavailable",
                     x->attempts ? "No other endpoint is available for this model."
                                 : "No endpoint is available for this model.",
                     "Retry-After: 1\r\n");
        gwx_free(x);
        return;
    }
    if (p->cfg.debug_scores) {
        sy_buf_reset(&x->decision);
        gws_decision_json(&p->decision, 3, &x->decision);
    }
    x->ep = ep;
    x->tried[ep->id / 8] |= (uint8_t)(1u << (ep->id % 8));
    x->attempts++;
    /* routing regret in blocks (precise) or chunks of about one block (approximate) */
    bool precise = x->n_hashes && p->cfg.pidx;
    x->predicted_cached_blocks =
        precise ? p->decision.cached_blocks_chosen : p->decision.cached_chunks_chosen;
    x->best_cached_blocks = precise ? p->decision.cached_blocks_best : p->decision.cached_chunks_best;
    ep->inflight_requests++;
    ep->inflight_tokens += x->est_tokens;
    const char *lv[] = {ep->name};
    mx_series_t *s = mx_series_get(p->f_picks, lv, 1);
    if (s)
        mx_counter_inc(s);
    if (p->cfg.aidx && x->n_chunks)
        aidx_record(p->cfg.aidx, ep->id, x->chunks, x->n_chunks);

    char hdrs[320];
    sy_slice_t rid;
    int hl = snprintf(hdrs, sizeof hdrs, "Content-Type: application/json\r\n");
    if (http_req_header(x->req, "X-Request-Id", &rid) && rid.len < 200)
        snprintf(hdrs + hl, sizeof hdrs - (size_t)hl, "X-Request-Id: %.*s\r\n", (int)rid.len,
                 rid.ptr);
    x->state = GWX_UPSTREAM;
    int rc = http_call_start(t->ups[ep->id], "POST", x->path, hdrs, x->body.ptr, x->body.len,
                             &k_cbs, x, &x->call);
    if (rc != ST_OK) {
        x->call = NULL;
        up_on_done(NULL, rc, false, x);
    }
}

/* Appends the text the approximate index hashes: completions' prompt, or the chat messages'
 * contents in order (role and content), so equal conversations hash equally. */
static void prompt_text(json_t *root, bool chat, sy_buf_t *out)
{
    if (!chat) {
        json_t *pr = json_object_get(root, "prompt");
        if (json_is_array(pr) && json_array_size(pr) == 1 &&
            json_is_string(json_array_get(pr, 0)))
            pr = json_array_get(pr, 0);
        if (json_is_string(pr))
            sy_buf_append(out, json_string_value(pr), json_string_length(pr));
        return;
    }
    json_t *msgs = json_object_get(root, "messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (json_is_string(role))
            sy_buf_append(out, json_string_value(role), json_string_length(role));
        sy_buf_append_char(out, '\n');
        if (json_is_string(content))
            sy_buf_append(out, json_string_value(content), json_string_length(content));
        for (size_t k = 0; json_is_array(content) && k < json_array_size(content); k++) {
            json_t *t = json_object_get(json_array_get(content, k), "text");
            if (json_is_string(t))
                sy_buf_append(out, json_string_value(t), json_string_length(t));
        }
        sy_buf_append_char(out, '\n');
    }
}

/* Tokenizes like the engine (completions: BOS + text; chat: rendered template, specials parsed)
 * and computes the precise block hashes. Leaves n_hashes 0 when it cannot. */
static void precise_hashes(gw_proxy_t *p, gwx_t *x, bool chat, const sy_buf_t *text)
{
    if (!p->cfg.tok || !p->cfg.pidx)
        return;
    sy_buf_t rendered = SY_BUF_INIT;
    const char *src = text->data ? text->data : "";
    size_t len = text->len;
    if (chat) {
        json_t *msgs = json_object_get(x->root, "messages");
        size_t n = json_array_size(msgs);
        chat_msg_t *cm = n ? sy_calloc(n, sizeof *cm) : NULL;
        if (!cm || !p->cfg.tmpl)
            goto out;
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(msgs, i);
            json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
            if (!json_is_string(role) || !json_is_string(content)) {
                sy_free(cm);
                goto out; /* parts or tools: no precise hashes for this request */
            }
            cm[i].role = json_string_value(role);
            cm[i].content = json_string_value(content);
            cm[i].content_len = json_string_length(content);
        }
        const char *err = NULL;
        int rc = chat_tmpl_render(p->cfg.tmpl, cm, n, true, &rendered, &err);
        sy_free(cm);
        if (rc != ST_OK)
            goto out;
        src = rendered.data ? rendered.data : "";
        len = rendered.len;
    }
    size_t cap = TOK_MAX_TOKENS(len);
    int32_t *toks = sy_malloc(cap * sizeof *toks);
    size_t nt = 0;
    if (toks && tok_encode(p->cfg.tok, src, len, !chat, chat, toks, cap, &nt) == ST_OK) {
        x->est_tokens = (uint32_t)nt;
        size_t nb = nt / p->cfg.block_size;
        if (nb > GW_MAX_HASHES)
            nb = GW_MAX_HASHES;
        x->hashes = nb ? sy_malloc(nb * sizeof *x->hashes) : NULL;
        if (x->hashes) {
            json_t *salt = json_object_get(x->root, "cache_salt");
            const char *s = json_is_string(salt) ? json_string_value(salt) : NULL;
            kvh_chain_low64(&p->cfg.none_hash, p->cfg.block_size, toks,
                            nb * p->cfg.block_size, s, s ? strlen(s) : 0, x->hashes, nb);
            x->n_hashes = nb;
        }
    }
    sy_free(toks);
out:
    sy_buf_deinit(&rendered);
}

static void on_client_gone(http_req_t *req, void *udata)
{
    (void)req;
    gwx_t *x = udata;
    if (x->call)
        http_call_cancel(x->call); /* the engine sees the disconnect and aborts */
    x->call = NULL;
    count_request(x->p, x->model, 499);
    gwx_free(x);
}

static void handle_generate(gw_proxy_t *p, http_req_t *req, const char *path, bool chat)
{
    if (p->draining) {
        answer_error(p, req, NULL, 503, "ServiceUnavailable", "The gateway is shutting down.",
                     "Retry-After: 1\r\n");
        return;
    }
    sy_slice_t body = http_req_body(req);
    json_error_t jerr;
    if (!sy_utf8_valid(body.ptr, body.len)) {
        answer_error(p, req, NULL, 400, "BadRequestError", "The request body is not valid UTF-8.",
                     NULL);
        return;
    }
    json_t *root = json_loadb(body.ptr, body.len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        char msg[256];
        snprintf(msg, sizeof msg, "Invalid JSON in request body: %s.",
                 root ? "not an object" : jerr.text);
        json_decref(root);
        answer_error(p, req, NULL, 400, "BadRequestError", msg, NULL);
        return;
    }
    json_t *jm = json_object_get(root, "model");
    if (jm && !json_is_string(jm) && !json_is_null(jm)) {
        json_decref(root);
        answer_error(p, req, NULL, 400, "BadRequestError", "'model' must be a string.", NULL);
        return;
    }
    const char *model = json_is_string(jm) ? json_string_value(jm) : NULL;
    gw_table_t *t = p->cfg.table;
    bool known = false;
    for (size_t i = 0; i < t->n && !known; i++)
        known = t->eps[i] && (model ? gw_endpoint_serves(t->eps[i], model) : true);
    if (!known) {
        char msg[300];
        snprintf(msg, sizeof msg, "The model `%.200s` does not exist.", model ? model : "");
        answer_error(p, req, model, 404, "NotFoundError", msg, NULL);
        json_decref(root); /* model points into root */
        return;
    }
    if (!model && t->n && t->eps[0]->n_models)
        model = t->eps[0]->models[0];
    if (chat ? !json_is_array(json_object_get(root, "messages"))
             : !json_object_get(root, "prompt")) {
        answer_error(p, req, model, 400, "BadRequestError",
                     chat ? "'messages' is required and must be a list."
                          : "Either 'prompt' or 'prompt_embeds' must be provided.",
                     NULL);
        json_decref(root); /* model points into root */
        return;
    }
    gwx_t *x = sy_calloc(1, sizeof *x);
    if (!x) {
        json_decref(root);
        answer_error(p, req, model, 503, "ServiceUnavailable", "out of memory", NULL);
        return;
    }
    x->p = p;
    x->req = req;
    x->root = root;
    x->body = body;
    x->model = sy_strdup(model ? model : "");
    x->start_ns = http_req_start_ns(req);
    x->delivered_cached = -1;
    x->stream = json_is_true(json_object_get(root, "stream"));
    snprintf(x->path, sizeof x->path, "%s", path);
    x->next = p->list;
    if (p->list)
        p->list->prev = x;
    p->list = x;
    p->inflight++;

    sy_buf_t text = SY_BUF_INIT;
    prompt_text(root, chat, &text);
    x->est_tokens = (uint32_t)(text.len / 4 + 1);
    json_t *salt = json_object_get(root, "cache_salt");
    x->n_chunks = aidx_hash_prompt(x->model, json_is_string(salt) ? json_string_value(salt) : NULL,
                                   text.data ? text.data : "", text.len, p->cfg.approx_chunk_chars,
                                   GW_MAX_CHUNKS, x->chunks, GW_MAX_CHUNKS);
    precise_hashes(p, x, chat, &text);
    sy_buf_deinit(&text);
    json_t *mt = json_object_get(root, chat ? "max_completion_tokens" : "max_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(root, "max_tokens");
    x->est_tokens += json_is_integer(mt) && json_integer_value(mt) > 0 &&
                             json_integer_value(mt) < 1000000
                         ? (uint32_t)json_integer_value(mt)
                         : 16;
    http_req_set_on_close(req, on_client_gone, x);
    start_attempt(x);
}


/* ------------------------------------------------------------------------------------------ */
/* other routes                                                                                */

static void handle_models(gw_proxy_t *p, http_req_t *req)
{
    gw_table_t *t = p->cfg.table;
    sy_buf_t *b = &p->out;
    sy_buf_reset(b);
    sy_buf_append_str(b, "{\"object\":\"list\",\"data\":[");
    size_t listed = 0;
    for (size_t i = 0; i < t->n; i++) {
        gw_endpoint_t *ep = t->eps[i];
        for (size_t m = 0; ep && m < ep->n_models; m++) {
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = t->eps[j] && gw_endpoint_serves(t->eps[j], ep->models[m]);
            if (dup)
                continue;
            if (listed++)
                sy_buf_append_char(b, ',');
            sy_buf_append_str(b, "{\"id\":\"");
            sy_buf_append_json_str(b, ep->models[m], strlen(ep->models[m]));
            sy_buf_append_str(b, "\",\"object\":\"model\",\"created\":0,\"owned_by\":"
                                 "\"switchyard\",\"root\":\"");
            sy_buf_append_json_str(b, ep->models[m], strlen(ep->models[m]));
            sy_buf_append_str(b, "\",\"parent\":null}");
        }
    }
    sy_buf_append_str(b, "]}");
    http_req_respond(req, 200, "application/json", b->data, b->len, NULL);
}

static void handle_health(gw_proxy_t *p, http_req_t *req)
{
    gw_table_t *t = p->cfg.table;
    size_t up = 0;
    for (size_t i = 0; i < t->n; i++)
        up += t->eps[i] && t->eps[i]->healthy && !t->eps[i]->ejected;
    if (p->draining || up == 0)
        http_req_respond(req, 503, "text/plain", "", 0, NULL);
    else
        http_req_respond(req, 200, "text/plain", "", 0, NULL);
}

static void handle_metrics(gw_proxy_t *p, http_req_t *req)
{
    sy_buf_t *b = &p->out;
    sy_buf_reset(b);
    mx_registry_render(p->cfg.metrics, b);
    http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b->data, b->len, NULL);
}

static bool slice_is(sy_slice_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

void gw_proxy_on_request(http_req_t *req, void *udata)
{
    gw_proxy_t *p = udata;
    sy_slice_t path = http_req_path(req), method = http_req_method(req);
    bool post = slice_is(method, "POST"), get = slice_is(method, "GET");
    if (slice_is(path, "/v1/completions") || slice_is(path, "/v1/chat/completions")) {
        if (!post) {
            answer_error(p, req, NULL, 405, "MethodNotAllowed", "Use POST for this route.",
                         "Allow: POST\r\n");
            return;
        }
        bool chat = slice_is(path, "/v1/chat/completions");
        handle_generate(p, req, chat ? "/v1/chat/completions" : "/v1/completions", chat);
        return;
    }
    struct {
        const char *path;
        void (*fn)(gw_proxy_t *, http_req_t *);
    } gets[] = {{"/v1/models", handle_models},
                {"/health", handle_health},
                {"/metrics", handle_metrics}};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        if (!slice_is(path, gets[i].path))
            continue;
        if (!get) {
            answer_error(p, req, NULL, 405, "MethodNotAllowed", "Use GET for this route.",
                         "Allow: GET\r\n");
            return;
        }
        gets[i].fn(p, req);
        return;
    }
    answer_error(p, req, NULL, 404, "NotFoundError", "Not Found", NULL);
}
