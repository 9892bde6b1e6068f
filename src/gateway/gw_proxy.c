/*
 * gw_proxy.c - the gateway's data plane (see gw_proxy.h for the exchange state machine).
 *
 * Per generation request (gw_proxy_prepare, gw_proxy_int.h): the body is parsed once
 * (api_load_body) and validated by the engine's validator (api_parse_gen_json) on the api_t of the
 * requested model, so every refusal is the engine's own answer and no endpoint is touched; the
 * validated prompt's token ids give the precise block hashes (kvh_chain_low64), the prompt text
 * the approximate chunk hashes (aidx_hash_prompt); the scheduler picks; the body is forwarded
 * unchanged. Responses are relayed: SSE chunk by chunk as the
 * upstream produces them (pausing the upstream read while the client's queue is over its
 * high-water mark), other responses whole.
 * P/D (gw_proxy.h): pd_route runs the decider after the decode pick, start_prefill / pf_finish
 * drive the prefill call (its own callbacks, the exchange's `call` slot so a client disconnect
 * cancels it, and a timer for the prefill timeout), pd_fallback sends the client's body to the
 * decode endpoint. Load: during the prefill the prefill endpoint carries one request and the
 * prompt's uncached tokens as pending prefill; the decode endpoint carries the request but no
 * pending prefill, unless it falls back to prefilling itself.
 * Thread-safety: event-loop thread only.
 */
#include "gateway/gw_proxy.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/gw_pd.h"
#include "gateway/gw_proxy_int.h"

#define GW_MAX_RESPONSE (64u << 20)        /* largest non-streaming upstream body relayed */
#define GW_MAX_VALIDATORS 256              /* distinct served model names */
#define GW_FREE_EXCHANGES 1024             /* finished exchanges kept for reuse */
#define GW_STATUS_CACHE 16                 /* (model, status) -> request-counter series cached */
#define GW_MAX_PREFILL_RESPONSE (4u << 20) /* largest prefill answer read */
#define GW_PD_HEADER "x-switchyard-pd-threshold"

/* Why a prefill call did not give parameters (switchyard_gateway_prefill_failures_total). */
typedef enum pf_reason {
    PF_CONNECT = 0, /* connect error, reset, protocol error */
    PF_TIMEOUT,     /* prefill timeout, or the client's timeouts */
    PF_HTTP_STATUS, /* an answer other than 200 */
    PF_BAD_BODY,    /* not JSON, not an object, too large */
    PF_NO_PARAMS,   /* kv_transfer_params absent, null or empty */
    PF_NO_ENDPOINT, /* no prefill endpoint to ask */
    PF_INTERNAL,    /* out of memory building a body */
    PF_REASONS
} pf_reason_t;

static const char *const k_pf_reason[PF_REASONS] = {
    "connect", "timeout", "http_status", "bad_body", "no_params", "no_endpoint", "internal"};

typedef enum gwx_state {
    GWX_PICK = 0,
    GWX_GUARD,   /* waiting for the external guard hook */
    GWX_PREFILL, /* P/D: the prefill call in flight (call), decode endpoint chosen (ep) */
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
    sy_slice_t body;
    gw_prep_t q; /* model, estimated tokens, hashes (owned) */
    uint8_t tried[GW_MAX_ENDPOINTS / 8];
    uint32_t attempts;
    int status;        /* upstream status */
    sy_buf_t resp;     /* buffered non-stream body, or the SSE tail kept for usage parsing */
    sy_buf_t decision; /* debug: the scheduler's decision as JSON (x-switchyard-decision) */
    char ctype[96];
    uint64_t start_ns, first_byte_ns;
    uint32_t predicted_cached_blocks, best_cached_blocks;
    uint32_t prefill_charge;  /* tokens added to ep->inflight_prefill_tokens, until the first
                               * streamed bytes (or the end of a buffered answer) */
    int64_t delivered_cached; /* -1 unknown */
    struct gwx *prev, *next;  /* in-flight list, or the free list (next only) */
    /* governance (p->cfg.gov): everything below is zeroed by gwx_new */
    bool gov;          /* g initialised */
    gwg_req_t g;       /* tenant, lease, guardrail decisions, audit texts */
    sy_buf_t gov_hdrs; /* x-ratelimit-* lines for the answer */
    int answered;      /* HTTP status given to the client (audit), 0 = none yet */
    const char *why;   /* static short reason of a failure, or NULL */
    char rid[72];      /* X-Request-Id, or one made up for the audit record */
    int64_t start_unix_ns;
    uint64_t first_data_ns;
    double score_total;
    uint32_t n_candidates;
    /* P/D (p->pd_on), zeroed by gwx_new except pd_body */
    bool pd_active;  /* scheduled with P/D on: counted in pd_requests_total at the end */
    bool pd_decided; /* the decider ran (first decode attempt) */
    gwpd_decision_t pd_decision;
    gwpd_path_t pd_path;
    uint64_t pd_threshold;
    uint32_t pd_cached, pd_uncached; /* prompt tokens cached / not on the decode endpoint */
    uint8_t pf_tried[GW_MAX_ENDPOINTS / 8];
    uint32_t pf_attempts;
    gw_endpoint_t *pf_ep; /* prefill endpoint of the call in flight (charged), else NULL */
    uint32_t pf_charge;   /* pending prefill tokens charged on pf_ep */
    uint64_t pf_start_ns;
    uint64_t pf_timer; /* prefill timeout timer, 0 = none */
    bool pf_overflow;  /* the prefill answer exceeded GW_MAX_PREFILL_RESPONSE */
    double pf_ms;      /* duration of the prefill whose KV is used, -1 = none */
    char pf_name[sizeof(((gw_endpoint_t *)0)->name)]; /* that prefill endpoint, "" = none */
    sy_buf_t pd_body; /* the prefill body, then the decode body (kept across reuse) */
} gwx_t;

/* One served model name and the engine's validator for it (its context length). */
typedef struct gw_model {
    char *name;             /* owned */
    const char *names[1];   /* {name}, for api_config_t */
    uint32_t max_model_len; /* 0 = unknown: no context limit */
    api_t *api;             /* owned */
} gw_model_t;

struct gw_proxy {
    gw_proxy_config_t cfg;
    gw_model_t models[GW_MAX_VALIDATORS];
    size_t n_models;
    bool draining;
    size_t inflight;
    gwx_t *list;
    gwx_t *free_list; /* finished exchanges, their buffers kept (at most GW_FREE_EXCHANGES) */
    size_t n_free;
    sy_buf_t out;
    gws_decision_t decision;
    uint32_t match_precise[GW_MAX_ENDPOINTS];
    gws_pd_config_t pd; /* P/D settings of the scheduler */
    bool pd_on;
    /* metrics */
    mx_family_t *f_requests, *f_picks, *f_ttft, *f_e2e, *f_decision, *f_retries, *f_regret,
        *f_ejections;
    mx_series_t *s_decision, *s_retries, *s_ejections, *s_ttft, *s_e2e;
    /* series looked up once instead of per request: picks per endpoint slot (valid while the
     * slot holds the endpoint of that name) and requests by (model, status) */
    struct {
        const gw_endpoint_t *ep;
        char name[sizeof(((gw_endpoint_t *)0)->name)];
        mx_series_t *s;
    } pick_series[GW_MAX_ENDPOINTS];
    struct {
        char *model; /* owned; NULL = unused */
        int status;
        mx_series_t *s;
    } status_series[GW_STATUS_CACHE];
    unsigned status_next; /* round-robin replacement */
    mx_series_t *s_regret_available, *s_regret_predicted, *s_regret_delivered;
    /* P/D metrics (pd_on only) */
    mx_family_t *f_disagg, *f_pd_paths, *f_pf_dur, *f_pf_fail;
    mx_series_t *s_pd_path[GWPD_PATH_COUNT], *s_pf_ok, *s_pf_err, *s_pf_fail[PF_REASONS];
};

static const double k_lat_buckets[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                                       0.5,   0.75,  1,    2.5,  5,    7.5,  10,   20,  40};
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
    p->f_ejections =
        mx_family_create(r, MX_COUNTER, "switchyard_gateway_ejections",
                         "Endpoints ejected after consecutive failures.", NULL, 0, NULL, 0);
    p->f_regret = mx_family_create(
        r, MX_COUNTER, "switchyard_gateway_cached_tokens",
        "Routing regret: prompt tokens cached on the best endpoint (available), on the chosen "
        "endpoint as predicted by the index (predicted), and reported by the engine (delivered).",
        l_kind, 1, NULL, 0);
    p->s_decision = mx_series_get(p->f_decision, NULL, 0);
    p->s_retries = mx_series_get(p->f_retries, NULL, 0);
    p->s_ejections = mx_series_get(p->f_ejections, NULL, 0);
    p->s_ttft = mx_series_get(p->f_ttft, NULL, 0);
    p->s_e2e = mx_series_get(p->f_e2e, NULL, 0);
    const char *k;
    k = "available";
    p->s_regret_available = mx_series_get(p->f_regret, &k, 1);
    k = "predicted";
    p->s_regret_predicted = mx_series_get(p->f_regret, &k, 1);
    k = "delivered";
    p->s_regret_delivered = mx_series_get(p->f_regret, &k, 1);
    if (!p->pd_on)
        return;
    static const char *l_dec[] = {"model_name", "decision_type"};
    static const char *l_path[] = {"path"};
    static const char *l_out[] = {"outcome"};
    static const char *l_reason[] = {"reason"};
    p->f_disagg = mx_family_create(
        r, MX_COUNTER, "llm_d_inference_scheduler_disagg_decision",
        "P/D decisions of the disagg profile handler, by model and decision type (llm-d's name).",
        l_dec, 2, NULL, 0);
    p->f_pd_paths = mx_family_create(
        r, MX_COUNTER, "switchyard_gateway_pd_requests",
        "Requests under P/D by the path that served them: decode_only, prefill_decode, "
        "prefill_retry (KV from a second prefill endpoint), fallback_local (the decode endpoint "
        "prefilled itself), failed (the client got an error).",
        l_path, 1, NULL, 0);
    p->f_pf_dur =
        mx_family_create(r, MX_HISTOGRAM, "switchyard_gateway_prefill_duration_seconds",
                         "Prefill calls of P/D requests, from sending to the whole "
                         "answer, by outcome (ok = parameters received).",
                         l_out, 1, k_lat_buckets, sizeof k_lat_buckets / sizeof k_lat_buckets[0]);
    p->f_pf_fail = mx_family_create(r, MX_COUNTER, "switchyard_gateway_prefill_failures",
                                    "Prefill calls that gave no transfer parameters, by reason.",
                                    l_reason, 1, NULL, 0);
    for (int i = GWPD_PATH_DECODE_ONLY; i < GWPD_PATH_COUNT; i++) {
        k = gwpd_path_name((gwpd_path_t)i);
        p->s_pd_path[i] = mx_series_get(p->f_pd_paths, &k, 1);
    }
    k = "ok";
    p->s_pf_ok = mx_series_get(p->f_pf_dur, &k, 1);
    k = "error";
    p->s_pf_err = mx_series_get(p->f_pf_dur, &k, 1);
    for (int i = 0; i < PF_REASONS; i++)
        p->s_pf_fail[i] = mx_series_get(p->f_pf_fail, &k_pf_reason[i], 1);
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
    p->pd_on = p->cfg.sched && gws_sched_pd(p->cfg.sched, &p->pd);
    metrics_init(p);
    return p;
}

static void gwx_release(gw_proxy_t *p, gwx_t *x);
static void gov_finish(gwx_t *x);
static void pd_finish(gwx_t *x);
static void finish_metrics(gwx_t *x, int status);

static uint64_t sub_floor(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* The prefill endpoint's share of x's load goes (its call ended or was cancelled). Idempotent. */
static void pf_load_remove(gwx_t *x)
{
    gw_endpoint_t *ep = x->pf_ep;
    if (!ep)
        return;
    if (ep->inflight_requests)
        ep->inflight_requests--;
    ep->inflight_tokens = sub_floor(ep->inflight_tokens, (uint64_t)x->q.prompt_tokens + 1);
    ep->inflight_prefill_tokens = sub_floor(ep->inflight_prefill_tokens, x->pf_charge);
    x->pf_charge = 0;
    x->pf_ep = NULL;
}

static void pf_timer_cancel(gwx_t *x)
{
    if (x->pf_timer && x->p->cfg.loop)
        ev_timer_cancel(x->p->cfg.loop, x->pf_timer);
    x->pf_timer = 0;
}

/* End of a P/D exchange (gwx_free): stops the prefill side and counts the path that served. */
static void pd_finish(gwx_t *x)
{
    pf_timer_cancel(x);
    pf_load_remove(x);
    gwpd_path_t path = x->pd_path;
    if (x->answered == 0 || x->answered >= 500) /* 0: the gateway stopped first */
        path = GWPD_PATH_FAILED;
    if (path != GWPD_PATH_NONE)
        mx_counter_inc(x->p->s_pd_path[path]);
    x->pd_active = false;
}

/* The endpoint's prefill is done for x (its first bytes arrived, or it ended): x's uncached
 * prompt tokens leave ep->inflight_prefill_tokens. Idempotent. */
static void ep_prefill_done(gwx_t *x)
{
    if (x->ep && x->prefill_charge) {
        x->ep->inflight_prefill_tokens =
            sub_floor(x->ep->inflight_prefill_tokens, x->prefill_charge);
        x->prefill_charge = 0;
    }
}

/* Charges x's load to x->ep (just picked): one request, its estimated tokens, and its prompt
 * tokens the scheduler did not find cached there as pending prefill. */
static void ep_load_add(gwx_t *x, uint32_t block_size)
{
    gw_endpoint_t *ep = x->ep;
    uint64_t cached = (uint64_t)x->predicted_cached_blocks * block_size;
    x->prefill_charge = (uint32_t)sub_floor(x->q.prompt_tokens, cached);
    ep->inflight_requests++;
    ep->inflight_tokens += x->q.est_tokens;
    ep->inflight_prefill_tokens += x->prefill_charge;
}

/* Returns x's load to x->ep (finished, or leaving it for a retry). NULL ep ok. */
static void ep_load_remove(gwx_t *x)
{
    if (!x->ep)
        return;
    ep_prefill_done(x);
    if (x->ep->inflight_requests)
        x->ep->inflight_requests--;
    x->ep->inflight_tokens = sub_floor(x->ep->inflight_tokens, x->q.est_tokens);
}

/* Unlinks a finished exchange, returns its load to its endpoint and releases it. */
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
    if (x->pd_active)
        pd_finish(x);
    if (x->gov)
        gov_finish(x);
    ep_load_remove(x);
    gwx_release(p, x);
}

/* Frees x's prepared request and keeps x for reuse (or frees it). x is on no list. */
static void gwx_release(gw_proxy_t *p, gwx_t *x)
{
    gw_prep_deinit(&x->q);
    if (p->n_free < GW_FREE_EXCHANGES && x->resp.cap <= 65536 && x->decision.cap <= 65536 &&
        x->pd_body.cap <= 65536) {
        x->next = p->free_list; /* kept with its buffers for the next request */
        p->free_list = x;
        p->n_free++;
        return;
    }
    sy_buf_deinit(&x->resp);
    sy_buf_deinit(&x->decision);
    sy_buf_deinit(&x->pd_body);
    sy_free(x);
}

/* A zeroed exchange (its buffers empty but with their storage kept when recycled), or NULL. */
static gwx_t *gwx_new(gw_proxy_t *p)
{
    gwx_t *x = p->free_list;
    if (!x)
        return sy_calloc(1, sizeof(gwx_t));
    p->free_list = x->next;
    p->n_free--;
    sy_buf_t resp = x->resp, decision = x->decision, pd_body = x->pd_body;
    sy_buf_reset(&resp);
    sy_buf_reset(&decision);
    sy_buf_reset(&pd_body);
    /* q is zeroed by gw_proxy_prepare; everything before it here */
    memset(x, 0, offsetof(gwx_t, q));
    memset(&x->tried, 0, sizeof *x - offsetof(gwx_t, tried));
    x->resp = resp;
    x->decision = decision;
    x->pd_body = pd_body;
    return x;
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
    while (p->free_list) {
        gwx_t *x = p->free_list;
        p->free_list = x->next;
        sy_buf_deinit(&x->resp);
        sy_buf_deinit(&x->decision);
        sy_buf_deinit(&x->pd_body);
        sy_free(x);
    }
    for (size_t i = 0; i < GW_STATUS_CACHE; i++)
        sy_free(p->status_series[i].model);
    for (size_t i = 0; i < p->n_models; i++) {
        api_destroy(p->models[i].api);
        sy_free(p->models[i].name);
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
    if (!model)
        model = "";
    for (size_t i = 0; i < GW_STATUS_CACHE; i++) {
        if (p->status_series[i].model && p->status_series[i].status == status &&
            strcmp(p->status_series[i].model, model) == 0) {
            mx_counter_inc(p->status_series[i].s);
            return;
        }
    }
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    const char *lv[] = {model, st};
    mx_series_t *s = mx_series_get(p->f_requests, lv, 2);
    if (!s)
        return;
    mx_counter_inc(s);
    char *copy = sy_strdup(model);
    if (!copy)
        return;
    unsigned k = p->status_next++ % GW_STATUS_CACHE;
    sy_free(p->status_series[k].model);
    p->status_series[k].model = copy;
    p->status_series[k].status = status;
    p->status_series[k].s = s;
}

/* The picks counter of ep, looked up once per endpoint slot. */
static mx_series_t *pick_series(gw_proxy_t *p, const gw_endpoint_t *ep)
{
    if (ep->id >= GW_MAX_ENDPOINTS)
        return NULL;
    typeof(p->pick_series[0]) *c = &p->pick_series[ep->id];
    if (c->ep == ep && c->s && strcmp(c->name, ep->name) == 0)
        return c->s;
    const char *lv[] = {ep->name};
    c->s = mx_series_get(p->f_picks, lv, 1);
    c->ep = ep;
    memcpy(c->name, ep->name, sizeof c->name);
    return c->s;
}

static void answer_error(gw_proxy_t *p, http_req_t *req, const char *model, int status,
                         const char *type, const char *msg, const char *extra)
{
    count_request(p, model, status);
    http_req_respond_error_hdr(req, status, type, msg, NULL, extra);
}

/* answer_error for an exchange: remembers the status (and reason) for the audit record. */
static void x_answer_error(gwx_t *x, int status, const char *type, const char *msg,
                           const char *extra)
{
    x->answered = status;
    if (!x->why)
        x->why = type;
    answer_error(x->p, x->req, x->q.model, status, type, msg, extra);
}

/* Answers a governance refusal: body is the JSON error, extra more header lines (may be NULL). */
static void x_answer_gov(gwx_t *x, int status, const sy_buf_t *body, const sy_buf_t *extra,
                         const char *why)
{
    x->answered = status;
    x->why = why;
    count_request(x->p, x->q.model, status);
    http_req_respond(x->req, status, "application/json", body->data ? body->data : "", body->len,
                     extra && extra->len ? extra->data : NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* endpoint outcome bookkeeping                                                                */

static void ep_success(gw_endpoint_t *ep)
{
    ep->consecutive_failures = 0;
}

/* Counts a failure of ep toward its ejection. ST_BUSY (at its --max-upstream-conns cap: queue
 * full or waited too long) is not one: the endpoint is busy, not failing, on every path (proxy,
 * prefill). */
static void ep_failure(gw_proxy_t *p, gw_endpoint_t *ep, int status)
{
    if (status == ST_BUSY)
        return;
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
/* Session tokens are the endpoint name in standard base64, as llm-d's session-affinity scorer
 * writes them; a client that echoes x-session-token sticks to that endpoint. */
static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *in, size_t len, sy_buf_t *out)
{
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        char q[4] = {k_b64[v >> 18 & 63], k_b64[v >> 12 & 63],
                     i + 1 < len ? k_b64[v >> 6 & 63] : '=', i + 2 < len ? k_b64[v & 63] : '='};
        sy_buf_append(out, q, 4);
    }
}

/* Decodes standard base64 (padding optional) into out as a NUL-terminated string. Returns the
 * decoded length, or -1 on a bad character, a NUL byte or an output that does not fit. */
static int b64_decode(sy_slice_t in, char *out, size_t cap)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '=')
            break;
        const char *pos = c ? strchr(k_b64, c) : NULL;
        if (!pos)
            return -1;
        acc = acc << 6 | (uint32_t)(pos - k_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)(acc >> bits & 0xff);
            if (ch == '\0' || n + 1 >= cap)
                return -1;
            out[n++] = ch;
        }
    }
    out[n] = '\0';
    return (int)n;
}

static const char *response_headers(gwx_t *x)
{
    sy_buf_t *b = &x->p->out;
    sy_buf_reset(b);
    size_t nl = strlen(x->ep->name);
    sy_buf_append_str(b, "x-switchyard-endpoint: ");
    sy_buf_append(b, x->ep->name, nl);
    sy_buf_append_str(b, "\r\nx-session-token: ");
    b64_encode(x->ep->name, nl, b);
    sy_buf_append_str(b, "\r\n");
    if (x->pf_name[0]) {
        sy_buf_append_str(b, "x-switchyard-prefill-endpoint: ");
        sy_buf_append_str(b, x->pf_name);
        sy_buf_append_str(b, "\r\n");
    }
    if (x->decision.len) {
        sy_buf_append_str(b, "x-switchyard-decision: ");
        if (x->pd_decided) {
            gwpd_note_t n = {
                .decision = x->pd_decision,
                .path = x->pd_path,
                .threshold = x->pd_threshold,
                .prompt_tokens = x->q.prompt_tokens,
                .cached_tokens = x->pd_cached,
                .uncached_tokens = x->pd_uncached,
                .prefill = x->pf_name[0] ? x->pf_name : NULL,
                .prefill_attempts = x->pf_attempts,
                .prefill_ms = x->pf_name[0] ? x->pf_ms : -1,
            };
            gwpd_note_json(x->decision.data, x->decision.len, &n, b);
        } else {
            sy_buf_append(b, x->decision.data, x->decision.len);
        }
        sy_buf_append_str(b, "\r\n");
    }
    if (x->gov_hdrs.len)
        sy_buf_append(b, x->gov_hdrs.data, x->gov_hdrs.len);
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
    for (size_t i = 0; i < n; i++) {
        if (header_is(&hs[i], "Content-Type")) {
            size_t l = hs[i].value.len < sizeof x->ctype - 1 ? hs[i].value.len : 0;
            memcpy(x->ctype, hs[i].value.ptr, l); /* an absurdly long type is dropped */
            x->ctype[l] = '\0';
        }
    }
    mx_hist_observe(p->s_ttft, (double)(x->first_byte_ns - x->start_ns) / 1e9);
    if (status == 200 && strncasecmp(x->ctype, "text/event-stream", 17) == 0) {
        x->state = GWX_STREAMING;
        http_req_sse_start(x->req, response_headers(x));
        http_req_set_on_writable(x->req, on_client_writable, x);
    } else {
        x->state = GWX_BUFFERING;
    }
}

/* Finds the usage's cached_tokens in response text (the last one wins: the search runs backwards
 * from the end, where the usage is, by the ':' of each key with memrchr; every response body and
 * every streamed chunk's tail goes through here). */
static void scan_cached(gwx_t *x, const char *s, size_t len)
{
    static const char key[] = "\"cached_tokens\"";
    const size_t kl = sizeof key - 1;
    for (const char *c = s + len; (c = memrchr(s, ':', (size_t)(c - s))) != NULL;) {
        if ((size_t)(c - s) < kl || memcmp(c - kl, key, kl) != 0)
            continue;
        const char *j = c + 1, *end = s + len;
        int64_t v = 0;
        bool any = false;
        while (j < end && *j >= '0' && *j <= '9' && v < INT64_MAX / 10 - 9) {
            v = v * 10 + (*j - '0');
            j++;
            any = true;
        }
        if (any) {
            x->delivered_cached = v;
            return;
        }
    }
}

static void up_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    gwx_t *x = udata;
    if (x->state == GWX_STREAMING) {
        ep_prefill_done(x); /* the first streamed bytes: the prompt is prefilled */
        if (!x->first_data_ns)
            x->first_data_ns = sy_mono_ns();
        if (x->gov && gwg_output_stream(x->p->cfg.gov, &x->g, data, len, (int64_t)sy_mono_ns()) ==
                          GGD_BLOCK) {
            /* an output check fired: end the stream with a policy error, stop the engine */
            sy_buf_t ev = SY_BUF_INIT;
            gwg_policy_event(&x->g, &ev);
            http_req_sse_send(x->req, ev.data ? ev.data : "", ev.len);
            sy_buf_deinit(&ev);
            http_req_sse_end(x->req);
            http_call_cancel(c);
            x->call = NULL;
            x->why = "output_policy";
            finish_metrics(x, 200);
            gwx_free(x);
            return;
        }
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
    x->answered = status;
    count_request(p, x->q.model, status);
    mx_hist_observe(p->s_e2e, (double)(sy_mono_ns() - x->start_ns) / 1e9);
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
            ep_load_remove(x);
            x->ep = NULL;
            x->state = GWX_PICK;
            sy_buf_reset(&x->resp);
            start_attempt(x);
            return;
        }
        if (upstream_5xx)
            goto relay;          /* out of endpoints: relay the last upstream error as it is */
        if (status == ST_BUSY) { /* the last one tried was at its connection cap */
            x_answer_error(x, 503, "ServiceUnavailable",
                           "Every endpoint tried is at its concurrency limit.",
                           "Retry-After: 1\r\n");
            gwx_free(x);
            return;
        }
        x_answer_error(x, 502, "BadGateway",
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
            x->why = "upstream_cut";
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
        x_answer_error(x, 502, "BadGateway", "The model server failed while sending the response.",
                       NULL);
        gwx_free(x);
        return;
    }
relay:
    if (x->status < 500)
        ep_success(x->ep);
    if (x->status == 200 && x->resp.len)
        scan_cached(x, x->resp.data, x->resp.len);
    if (x->gov && x->status == 200 &&
        gwg_output_body(p->cfg.gov, &x->g, x->resp.data ? x->resp.data : "", x->resp.len,
                        (int64_t)sy_mono_ns()) == GGD_BLOCK) {
        sy_buf_t eb = SY_BUF_INIT;
        gwg_policy_error_body(&x->g, &eb);
        x_answer_gov(x, 400, &eb, NULL, "output_policy");
        sy_buf_deinit(&eb);
        gwx_free(x);
        return;
    }
    finish_metrics(x, x->status);
    http_req_respond(x->req, x->status, x->ctype[0] ? x->ctype : "application/json",
                     x->resp.data ? x->resp.data : "", x->resp.len, response_headers(x));
    gwx_free(x);
}

static const http_call_cbs_t k_cbs = {up_on_head, up_on_data, up_on_done};

/* ------------------------------------------------------------------------------------------ */
/* scheduling                                                                                  */

/* The scheduler's view of x (pointers into x; session decoded into sess[cap]). */
static void fill_request(gwx_t *x, gws_request_t *r, char *sess, size_t cap)
{
    memset(r, 0, sizeof *r);
    r->model = x->q.model;
    r->block_hashes = x->q.hashes;
    r->n_block_hashes = x->q.n_hashes;
    r->chunk_hashes = x->q.chunks;
    r->n_chunk_hashes = x->q.n_chunks;
    r->prompt_tokens = x->q.est_tokens;
    sy_slice_t v;
    if (http_req_header(x->req, "x-session-token", &v) && b64_decode(v, sess, cap) > 0)
        r->session = sess; /* the endpoint name this session is pinned to */
}

/* Prompt tokens the decision found cached on its chosen endpoint: precise blocks x block size,
 * or approximate chunks x the tokens a chunk stands for (4 characters each). */
static uint64_t decision_cached_tokens(const gw_proxy_t *p, const gwx_t *x)
{
    if (x->q.n_hashes && p->cfg.pidx)
        return (uint64_t)p->decision.cached_blocks_chosen * p->cfg.block_size;
    return (uint64_t)p->decision.cached_chunks_chosen * (p->cfg.approx_chunk_chars / 4);
}

/* Writes the upstream request's header lines into hdrs (at least 320 bytes): Content-Type and
 * X-Request-Id (the P/D request id when x went through P/D with one, else the client's). No
 * printf: this runs for every request. */
static void upstream_headers(gwx_t *x, char *hdrs)
{
    static const char ct[] = "Content-Type: application/json\r\n", ri[] = "X-Request-Id: ";
    sy_slice_t rid = {NULL, 0};
    if (x->pd_decided && x->rid[0]) {
        rid.ptr = x->rid;
        rid.len = strlen(x->rid);
    } else if (!http_req_header(x->req, "X-Request-Id", &rid) || rid.len >= 200) {
        rid.len = 0;
    }
    size_t hl = sizeof ct - 1;
    memcpy(hdrs, ct, hl);
    if (rid.len) {
        memcpy(hdrs + hl, ri, sizeof ri - 1);
        hl += sizeof ri - 1;
        memcpy(hdrs + hl, rid.ptr, rid.len);
        hl += rid.len;
        memcpy(hdrs + hl, "\r\n", 2);
        hl += 2;
    }
    hdrs[hl] = '\0';
}

/* Sends body to x->ep (UPSTREAM); its answer goes to the client (k_cbs). */
static void start_upstream(gwx_t *x, const char *body, size_t len)
{
    char hdrs[320];
    upstream_headers(x, hdrs);
    x->state = GWX_UPSTREAM;
    int rc = http_call_start(x->p->cfg.table->ups[x->ep->id], "POST", x->path, hdrs, body, len,
                             &k_cbs, x, &x->call);
    if (rc != ST_OK) {
        x->call = NULL;
        up_on_done(NULL, rc, false, x);
    }
}

static void pd_route(gwx_t *x);
static void request_id(gwx_t *x);

static void start_attempt(gwx_t *x)
{
    gw_proxy_t *p = x->p;
    gw_table_t *t = p->cfg.table;
    gw_endpoint_t *cand[GW_MAX_ENDPOINTS];
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        gw_endpoint_t *ep = t->eps[i];
        if (!ep || t->draining[i] || (x->tried[i / 8] & (1u << (i % 8))))
            continue;
        cand[n++] = ep;
    }
    uint64_t t0 = sy_mono_ns();
    gws_request_t r;
    char session[128];
    fill_request(x, &r, session, sizeof session);
    x->pd_active = p->pd_on;
    gw_endpoint_t *ep = NULL;
    const char *profile = p->pd_on ? p->pd.decode_profile : NULL;
    if (n > 0 && gws_pick(p->cfg.sched, profile, &r, cand, n, p->cfg.pidx, p->cfg.aidx,
                          &p->decision) == ST_OK)
        ep = p->decision.endpoint;
    mx_hist_observe(p->s_decision, (double)(sy_mono_ns() - t0) / 1e9);
    if (!ep) {
        x_answer_error(x, 503, "ServiceUnavailable",
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
    x->score_total = p->decision.chosen >= 0 ? p->decision.total[p->decision.chosen] : 0;
    x->n_candidates = p->decision.n_candidates;
    x->tried[ep->id / 8] |= (uint8_t)(1u << (ep->id % 8));
    x->attempts++;
    /* routing regret in blocks (precise) or chunks of about one block (approximate) */
    bool precise = x->q.n_hashes && p->cfg.pidx;
    x->predicted_cached_blocks =
        precise ? p->decision.cached_blocks_chosen : p->decision.cached_chunks_chosen;
    x->best_cached_blocks =
        precise ? p->decision.cached_blocks_best : p->decision.cached_chunks_best;
    ep_load_add(x, p->cfg.block_size);
    mx_counter_inc(pick_series(p, ep));
    if (p->cfg.aidx && x->q.n_chunks)
        aidx_record(p->cfg.aidx, ep->id, x->q.chunks, x->q.n_chunks);
    if (p->pd_on && !x->pd_decided) {
        pd_route(x);
        return;
    }
    if (x->pd_decided && x->pd_decision == GWPD_PREFILL_DECODE) {
        /* a retry after a failed decode call: this endpoint prefills itself */
        x->pd_path = GWPD_PATH_FALLBACK_LOCAL;
        x->pf_name[0] = '\0';
    }
    start_upstream(x, x->body.ptr, x->body.len);
}

/* ------------------------------------------------------------------------------------------ */
/* P/D: the prefill call                                                                       */

static void pf_finish(gwx_t *x, int status);

static void pf_on_head(http_call_t *c, int status, const http_header_t *hs, size_t n, void *udata)
{
    (void)c;
    (void)hs;
    (void)n;
    gwx_t *x = udata;
    x->status = status;
}

static void pf_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    (void)c;
    gwx_t *x = udata;
    if (x->pf_overflow || x->resp.len + len > GW_MAX_PREFILL_RESPONSE ||
        sy_buf_append(&x->resp, data, len) != ST_OK)
        x->pf_overflow = true;
}

static void pf_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    (void)first_byte;
    pf_finish(udata, status);
}

static const http_call_cbs_t k_pf_cbs = {pf_on_head, pf_on_data, pf_on_done};

static void on_pf_timeout(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    gwx_t *x = udata;
    x->pf_timer = 0;
    if (x->state != GWX_PREFILL || !x->call)
        return;
    http_call_cancel(x->call);
    x->call = NULL;
    pf_finish(x, ST_TIMEOUT);
}

/* The decode endpoint prefills the prompt itself: the client's body, no parameters. */
static void pd_fallback(gwx_t *x)
{
    x->pd_path = GWPD_PATH_FALLBACK_LOCAL;
    x->pf_name[0] = '\0';
    x->prefill_charge = x->pd_uncached;
    x->ep->inflight_prefill_tokens += x->prefill_charge;
    sy_buf_reset(&x->resp);
    x->status = 0;
    start_upstream(x, x->body.ptr, x->body.len);
}

/* Picks a prefill endpoint (prefill profile; not the decode endpoint, none tried before) and
 * sends it x->pd_body. ST_OK when x went on (the call started, or its failure was handled);
 * ST_NOTFOUND when there is no prefill endpoint (x untouched: the caller falls back). */
static int start_prefill(gwx_t *x)
{
    gw_proxy_t *p = x->p;
    gw_table_t *t = p->cfg.table;
    gw_endpoint_t *cand[GW_MAX_ENDPOINTS];
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        gw_endpoint_t *ep = t->eps[i];
        if (!ep || ep == x->ep || t->draining[i] || (x->pf_tried[i / 8] & (1u << (i % 8))))
            continue;
        cand[n++] = ep;
    }
    gws_request_t r;
    char session[128];
    fill_request(x, &r, session, sizeof session);
    if (n == 0 || gws_pick(p->cfg.sched, p->pd.prefill_profile, &r, cand, n, p->cfg.pidx,
                           p->cfg.aidx, &p->decision) != ST_OK)
        return ST_NOTFOUND;
    gw_endpoint_t *ep = p->decision.endpoint;
    uint64_t cached = decision_cached_tokens(p, x);
    x->pf_ep = ep;
    x->pf_tried[ep->id / 8] |= (uint8_t)(1u << (ep->id % 8));
    x->pf_attempts++;
    x->pf_charge = (uint32_t)sub_floor(x->q.prompt_tokens, cached);
    ep->inflight_requests++;
    ep->inflight_tokens += (uint64_t)x->q.prompt_tokens + 1;
    ep->inflight_prefill_tokens += x->pf_charge;
    mx_counter_inc(pick_series(p, ep));
    if (p->cfg.aidx && x->q.n_chunks)
        aidx_record(p->cfg.aidx, ep->id, x->q.chunks, x->q.n_chunks);

    char hdrs[320];
    upstream_headers(x, hdrs);
    x->state = GWX_PREFILL;
    x->pf_start_ns = sy_mono_ns();
    x->pf_overflow = false;
    x->status = 0;
    sy_buf_reset(&x->resp);
    int rc = http_call_start(t->ups[ep->id], "POST", x->path, hdrs, x->pd_body.data, x->pd_body.len,
                             &k_pf_cbs, x, &x->call);
    if (rc != ST_OK) {
        x->call = NULL;
        pf_finish(x, rc);
        return ST_OK;
    }
    if (p->cfg.loop)
        x->pf_timer = ev_timer_add(p->cfg.loop, p->pd.prefill_timeout_ms, on_pf_timeout, x);
    return ST_OK;
}

/* A prefill attempt gave no parameters: another prefill endpoint (policy retry) or the decode
 * endpoint's local prefill. */
static void pd_prefill_failed(gwx_t *x, pf_reason_t why)
{
    gw_proxy_t *p = x->p;
    mx_counter_inc(p->s_pf_fail[why]);
    sy_info("gateway.prefill_failed", "decode=%s reason=%s http=%d attempt=%u", x->ep->name,
            k_pf_reason[why], x->status, x->pf_attempts);
    if (why != PF_NO_ENDPOINT && why != PF_INTERNAL && p->pd.policy == GWS_PD_RETRY &&
        x->pf_attempts <= p->pd.prefill_max_retries && start_prefill(x) == ST_OK)
        return;
    pd_fallback(x);
}

/* The prefill call ended (status from the HTTP client, or ST_TIMEOUT from the timer). */
static void pf_finish(gwx_t *x, int status)
{
    gw_proxy_t *p = x->p;
    x->call = NULL;
    pf_timer_cancel(x);
    gw_endpoint_t *pf = x->pf_ep;
    pf_load_remove(x);
    double secs = (double)(sy_mono_ns() - x->pf_start_ns) / 1e9;
    pf_reason_t why = PF_REASONS;
    int prc = ST_OK;
    sy_buf_t params = SY_BUF_INIT;
    if (status != ST_OK)
        why = status == ST_TIMEOUT ? PF_TIMEOUT : PF_CONNECT;
    else if (x->status != 200)
        why = PF_HTTP_STATUS;
    else if (x->pf_overflow)
        why = PF_BAD_BODY;
    else if ((prc = gwpd_response_params(x->resp.data, x->resp.len, &params)) != ST_OK)
        why = prc == ST_NOTFOUND ? PF_NO_PARAMS : prc == ST_NOMEM ? PF_INTERNAL : PF_BAD_BODY;
    if (why == PF_REASONS) {
        sy_buf_reset(&x->pd_body);
        if (gwpd_decode_body(x->body.ptr, x->body.len, params.data, params.len, &x->pd_body) !=
            ST_OK)
            why = PF_INTERNAL;
    }
    sy_buf_deinit(&params);
    if (why != PF_REASONS) {
        mx_hist_observe(p->s_pf_err, secs);
        /* the endpoint misbehaved (not: it kept no blocks, or we ran out of memory) */
        if (why == PF_CONNECT || why == PF_TIMEOUT || why == PF_BAD_BODY ||
            (why == PF_HTTP_STATUS && x->status >= 500))
            ep_failure(p, pf, status != ST_OK ? status : ST_UPSTREAM);
        pd_prefill_failed(x, why);
        return;
    }
    mx_hist_observe(p->s_pf_ok, secs);
    ep_success(pf);
    x->pf_ms = secs * 1e3;
    snprintf(x->pf_name, sizeof x->pf_name, "%s", pf->name);
    x->pd_path = x->pf_attempts > 1 ? GWPD_PATH_PREFILL_RETRY : GWPD_PATH_PREFILL_DECODE;
    sy_buf_reset(&x->resp);
    x->status = 0;
    start_upstream(x, x->pd_body.data, x->pd_body.len);
}

/* The decider, after the first decode pick (x->ep chosen and charged): decode-only sends the
 * client's body to x->ep; prefill-decode builds the prefill body and starts the prefill. */
static void pd_route(gwx_t *x)
{
    gw_proxy_t *p = x->p;
    x->pd_decided = true;
    x->pf_ms = -1;
    uint64_t thr = p->pd.threshold;
    sy_slice_t hv;
    if (http_req_header(x->req, GW_PD_HEADER, &hv) && !gwpd_threshold_parse(hv.ptr, hv.len, &thr))
        thr = p->pd.threshold; /* not a number: the config's */
    x->pd_threshold = thr;
    uint64_t cached = decision_cached_tokens(p, x);
    x->pd_cached = cached < x->q.prompt_tokens ? (uint32_t)cached : x->q.prompt_tokens;
    x->pd_decision = gwpd_decide(thr, x->q.prompt_tokens, cached, &x->pd_uncached);
    const char *lv[] = {x->q.model ? x->q.model : "", gwpd_decision_name(x->pd_decision)};
    mx_counter_inc(mx_series_get(p->f_disagg, lv, 2));
    if (x->pd_decision == GWPD_DECODE_ONLY) {
        x->pd_path = GWPD_PATH_DECODE_ONLY;
        start_upstream(x, x->body.ptr, x->body.len);
        return;
    }
    ep_prefill_done(x); /* the decode endpoint pulls the KV instead of computing it */
    if (!x->rid[0])
        request_id(x); /* one id for the prefill and the decode request */
    sy_buf_reset(&x->pd_body);
    if (gwpd_prefill_body(x->body.ptr, x->body.len, &x->pd_body) != ST_OK) {
        pd_prefill_failed(x, PF_INTERNAL);
        return;
    }
    if (start_prefill(x) != ST_OK)
        pd_prefill_failed(x, PF_NO_ENDPOINT);
}

/* Appends the text the approximate index hashes: completions' prompt, or the chat messages'
 * contents in order (role and content), so equal conversations hash equally. */
static void prompt_text(json_t *root, bool chat, sy_buf_t *out)
{
    if (!chat) {
        json_t *pr = json_object_get(root, "prompt");
        if (json_is_array(pr) && json_array_size(pr) == 1 && json_is_string(json_array_get(pr, 0)))
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

/* ------------------------------------------------------------------------------------------ */
/* validators per served model                                                                 */

static api_t *model_api_create(gw_proxy_t *p, gw_model_t *m)
{
    api_config_t ac = {
        .model_names = m->names,
        .n_model_names = 1,
        .max_model_len = m->max_model_len ? m->max_model_len : UINT32_MAX,
        .tok = p->cfg.tok,
        .tmpl = p->cfg.tmpl,
        .version = "gateway",
        .skip_token_checks = p->cfg.tok == NULL || p->cfg.tmpl == NULL,
    };
    return api_create(&ac);
}

int gw_proxy_add_model(gw_proxy_t *p, const char *name, uint32_t max_model_len)
{
    gw_model_t *m = NULL;
    for (size_t i = 0; i < p->n_models && !m; i++)
        if (strcmp(p->models[i].name, name) == 0)
            m = &p->models[i];
    if (m) {
        bool smaller = max_model_len && (!m->max_model_len || max_model_len < m->max_model_len);
        if (!smaller)
            return ST_OK;
        /* the validator borrows m->names (api_config_t.model_names): build it from m itself,
         * never from a copy on the stack */
        uint32_t old = m->max_model_len;
        m->max_model_len = max_model_len;
        api_t *api = model_api_create(p, m);
        if (!api) {
            m->max_model_len = old;
            return ST_NOMEM;
        }
        api_destroy(m->api);
        m->api = api;
        return ST_OK;
    }
    if (p->n_models == GW_MAX_VALIDATORS)
        return ST_LIMIT;
    m = &p->models[p->n_models];
    m->name = sy_strdup(name);
    m->names[0] = m->name;
    m->max_model_len = max_model_len;
    m->api = m->name ? model_api_create(p, m) : NULL;
    if (!m->api) {
        sy_free(m->name);
        memset(m, 0, sizeof *m);
        return ST_NOMEM;
    }
    p->n_models++;
    return ST_OK;
}

/* The validator for the body's "model": its own when served, else the first one (which then
 * answers as the engine does: 404 for an unknown name, 400 for a non-string). NULL when no model
 * is known yet. */
static const gw_model_t *model_for(const gw_proxy_t *p, json_t *root)
{
    const char *name = json_string_value(json_object_get(root, "model"));
    for (size_t i = 0; name && i < p->n_models; i++)
        if (strcmp(p->models[i].name, name) == 0)
            return &p->models[i];
    return p->n_models ? &p->models[0] : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* request preparation (gw_proxy_int.h)                                                        */

/* The precise block hashes of tokens' first nb full blocks, computed lazily: in batches that
 * double (16, 32, 64, ...), stopping after the first batch whose last block no endpoint holds as
 * part of a prefix. Later blocks cannot extend any endpoint's match (a prefix match stops at the
 * first miss), so the scores and the routing regret equal those of the whole chain, while a long
 * prompt nobody has seen costs 16 hashes instead of thousands. Returns the number computed. */
static size_t hash_held_prefix(gw_proxy_t *p, const int32_t *tokens, size_t nb, const char *salt,
                               uint64_t *out)
{
    const uint32_t bs = p->cfg.block_size;
    const size_t salt_len = salt ? strlen(salt) : 0;
    const uint32_t n_eps = p->cfg.table ? (uint32_t)p->cfg.table->n : 0;
    kvh_digest_t parent = p->cfg.none_hash, h;
    size_t done = 0, batch = 16;
    while (done < nb) {
        size_t end = nb - done < batch ? nb : done + batch;
        for (size_t k = done; k < end; k++) {
            kvh_block(&parent, tokens + k * bs, bs, k == 0 ? salt : NULL, k == 0 ? salt_len : 0,
                      &h);
            out[k] = kvh_low64(&h);
            parent = h;
        }
        done = end;
        if (done == nb || n_eps == 0)
            break;
        pidx_match(p->cfg.pidx, out, done, p->match_precise, n_eps);
        uint32_t best = 0;
        for (uint32_t e = 0; e < n_eps; e++)
            best = p->match_precise[e] > best ? p->match_precise[e] : best;
        if (best < done)
            break;
        batch *= 2;
    }
    return done;
}

void gw_prep_deinit(gw_prep_t *out)
{
    if (!out)
        return;
    sy_free(out->model);
    sy_free(out->hashes);
    free(out->body); /* json_dumps' */
    sy_free(out->text);
    memset(out, 0, sizeof *out);
}

static int prepare(gw_proxy_t *p, const char *body, size_t len, bool chat, gwg_req_t *gq,
                   gw_prep_t *out, api_err_t *err, int *gov_status, sy_buf_t *gov_body);

int gw_proxy_prepare(gw_proxy_t *p, const char *body, size_t len, bool chat, gw_prep_t *out,
                     api_err_t *err)
{
    return prepare(p, body, len, chat, NULL, out, err, NULL, NULL);
}

/* gw_proxy_prepare, with the governance checks of the prompt when g is not NULL: the guardrails
 * run on the parsed body before validation (so a masked prompt is what gets validated, tokenized,
 * hashed and forwarded: out->body; out->text keeps the prompt text for the guard hook). A
 * guardrail refusal returns ST_DECLINED with *gov_status and
 * gov_body filled. */
static int prepare(gw_proxy_t *p, const char *body, size_t len, bool chat, gwg_req_t *gq,
                   gw_prep_t *out, api_err_t *err, int *gov_status, sy_buf_t *gov_body)
{
    memset(out, 0, sizeof *out);
    json_t *root = NULL;
    int rc = api_load_body(body, len, &root, err);
    if (rc != ST_OK)
        return rc;
    if (json_object_get(root, "kv_transfer_params")) {
        /* P/D transfer parameters name hosts an engine will connect to: only the gateway may
         * set them (no server-side request forgery through a client's body) */
        err->status = 400;
        err->type = "BadRequestError";
        err->param = "kv_transfer_params";
        snprintf(err->msg, sizeof err->msg,
                 "kv_transfer_params is set by the gateway only; remove it from the request.");
        json_decref(root);
        return ST_INVAL;
    }
    const gw_model_t *m = model_for(p, root);
    if (!m) {
        const char *name = json_string_value(json_object_get(root, "model"));
        err->status = name ? 404 : 503;
        err->type = name ? "NotFoundError" : "ServiceUnavailable";
        err->param = name ? "model" : NULL;
        if (name)
            snprintf(err->msg, sizeof err->msg, "The model `%s` does not exist.", name);
        else
            snprintf(err->msg, sizeof err->msg, "No endpoint is available for this model.");
        json_decref(root);
        return name ? ST_NOTFOUND : ST_AGAIN;
    }
    if (gq) {
        bool modified = false;
        *gov_status = gwg_guard_body(p->cfg.gov, gq, root, chat, m->name, &modified, gov_body);
        if (*gov_status != 0) {
            json_decref(root);
            return ST_DECLINED;
        }
        if (modified) {
            out->body = json_dumps(root, JSON_COMPACT);
            if (!out->body) {
                json_decref(root);
                *gov_status = 503;
                sy_buf_append_str(gov_body, "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                            "\"ServiceUnavailable\",\"param\":null,\"code\":503}}");
                return ST_DECLINED;
            }
            out->body_len = strlen(out->body);
        }
    }
    api_gen_req_t g;
    rc = api_parse_gen_json(m->api, root, chat ? API_CHAT : API_COMPLETION, &g, err);
    if (rc != ST_OK) {
        json_decref(root);
        return rc;
    }
    out->model = g.model;
    g.model = NULL;
    out->stream = g.stream;

    /* approximate: chunk hashes of the prompt text */
    sy_buf_t text = SY_BUF_INIT;
    prompt_text(root, chat, &text);
    out->n_chunks =
        aidx_hash_prompt(out->model, g.cache_salt, text.data ? text.data : "", text.len,
                         p->cfg.approx_chunk_chars, GW_MAX_CHUNKS, out->chunks, GW_MAX_CHUNKS);
    /* estimated load: exact prompt tokens when known, and the requested output (16 when the
     * request leaves it to the engine's default) */
    uint64_t est = g.prompt ? g.n_prompt : text.len / 4 + 1;
    out->prompt_tokens = est > UINT32_MAX ? UINT32_MAX : (uint32_t)est;
    bool has_max = json_is_number(json_object_get(root, "max_tokens")) ||
                   (chat && json_is_number(json_object_get(root, "max_completion_tokens")));
    est += has_max ? g.sp.max_tokens : 16;
    out->est_tokens = est > UINT32_MAX ? UINT32_MAX : (uint32_t)est;
    out->max_tokens = has_max ? (int64_t)g.sp.max_tokens : -1;
    if (gq && text.len) {
        out->text = sy_malloc(text.len);
        if (out->text) {
            memcpy(out->text, text.data, text.len);
            out->text_len = text.len;
        }
    }
    sy_buf_deinit(&text);

    /* precise: the engine's block hashes of the validated prompt's token ids */
    size_t nb = g.prompt && p->cfg.pidx ? g.n_prompt / p->cfg.block_size : 0;
    if (nb > GW_MAX_HASHES)
        nb = GW_MAX_HASHES;
    out->hashes = nb ? sy_malloc(nb * sizeof *out->hashes) : NULL;
    if (out->hashes)
        out->n_hashes = hash_held_prefix(p, g.prompt, nb, g.cache_salt, out->hashes);
    api_gen_req_deinit(&g);
    json_decref(root);
    return ST_OK;
}

static void on_client_gone(http_req_t *req, void *udata)
{
    (void)req;
    gwx_t *x = udata;
    if (x->call)
        http_call_cancel(x->call); /* the engine sees the disconnect and aborts */
    x->call = NULL;
    x->answered = 499;
    x->why = "client_closed";
    count_request(x->p, x->q.model, 499);
    gwx_free(x);
}

/* The audit record and the end of the governance state (gwx_free). */
static void gov_finish(gwx_t *x)
{
    bool decided = x->n_candidates > 0;
    gwg_summary_t s = {
        .request_id = x->rid,
        .path = x->path,
        .model = x->q.model,
        .status = x->answered ? x->answered : 503,
        .error = x->answered && x->answered < 400 && !x->why ? NULL
                 : x->why                                    ? x->why
                 : x->answered                               ? NULL
                                                             : "gateway_stopped",
        .endpoint = x->ep ? x->ep->name : NULL,
        .prefill_endpoint = x->pf_name[0] ? x->pf_name : NULL,
        .score_total = decided ? x->score_total : NAN,
        .candidates = x->n_candidates,
        .cached_blocks_chosen = x->predicted_cached_blocks,
        .cached_blocks_best = x->best_cached_blocks,
        .prompt_tokens = x->q.model ? (int64_t)x->q.prompt_tokens : -1,
        .completion_tokens = -1,
        .cached_tokens = x->delivered_cached,
        .ttft_ms = x->first_data_ns ? (double)(x->first_data_ns - x->start_ns) / 1e6
                   : x->first_byte_ns && x->state == GWX_BUFFERING
                       ? (double)(x->first_byte_ns - x->start_ns) / 1e6
                       : -1,
        .e2e_ms = (double)(sy_mono_ns() - x->start_ns) / 1e6,
        .start_unix_ns = x->start_unix_ns,
    };
    gwg_finish(x->p->cfg.gov, &x->g, &s);
    gwg_req_deinit(&x->g);
    sy_buf_deinit(&x->gov_hdrs);
    x->gov = false;
}

static void on_hook_done(void *udata, int status, const sy_buf_t *body)
{
    gwx_t *x = udata;
    if (status != 0) {
        x_answer_gov(x, status, body, NULL, "guard_hook");
        gwx_free(x);
        return;
    }
    x->state = GWX_PICK;
    start_attempt(x);
}

/* X-Request-Id of the request, or a made-up one ("gw-" + 16 hex digits) for the audit record. */
static void request_id(gwx_t *x)
{
    sy_slice_t rid;
    if (http_req_header(x->req, "X-Request-Id", &rid) && rid.len < sizeof x->rid) {
        memcpy(x->rid, rid.ptr, rid.len);
        x->rid[rid.len] = '\0';
        return;
    }
    static uint64_t counter;
    uint64_t t = x->start_unix_ns ? (uint64_t)x->start_unix_ns : sy_mono_ns();
    uint64_t v = ++counter ^ (t << 20);
    snprintf(x->rid, sizeof x->rid, "gw-%016llx", (unsigned long long)v);
}

static void handle_generate(gw_proxy_t *p, http_req_t *req, const char *path, bool chat)
{
    if (p->draining) {
        answer_error(p, req, NULL, 503, "ServiceUnavailable", "The gateway is shutting down.",
                     "Retry-After: 1\r\n");
        return;
    }
    sy_slice_t body = http_req_body(req);
    gwx_t *x = gwx_new(p);
    if (!x) {
        answer_error(p, req, NULL, 503, "ServiceUnavailable", "out of memory", NULL);
        return;
    }
    x->p = p;
    x->req = req;
    x->body = body;
    x->start_ns = http_req_start_ns(req);
    x->delivered_cached = -1;
    size_t pl = strlen(path) < sizeof x->path - 1 ? strlen(path) : sizeof x->path - 1;
    memcpy(x->path, path, pl);
    x->path[pl] = '\0';
    gwg_t *gov = p->cfg.gov;
    sy_buf_t eb = SY_BUF_INIT; /* a governance refusal's body */
    if (!gov) {
        api_err_t err;
        if (gw_proxy_prepare(p, body.ptr, body.len, chat, &x->q, &err) != ST_OK) {
            /* refused before any endpoint is touched, with the engine's own answer */
            count_request(p, NULL, err.status);
            http_req_respond_error(req, err.status, err.type, err.msg, err.param);
            gwx_release(p, x);
            return;
        }
    }
    x->next = p->list;
    if (p->list)
        p->list->prev = x;
    p->list = x;
    p->inflight++;
    http_req_set_on_close(req, on_client_gone, x);
    if (!gov) {
        start_attempt(x);
        return;
    }

    /* governance: auth, guardrails on the prompt, validation, admission, the guard hook */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    x->start_unix_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
    request_id(x);
    gwg_req_init(&x->g);
    x->gov = true;
    sy_slice_t az;
    bool has_az = http_req_header(req, "Authorization", &az);
    int st = gwg_authenticate(gov, &x->g, has_az ? az.ptr : NULL, has_az ? az.len : 0, &eb,
                              &x->gov_hdrs);
    if (st != 0) {
        x_answer_gov(x, st, &eb, &x->gov_hdrs, "unauthorized");
        goto done;
    }
    api_err_t err;
    int rc = prepare(p, body.ptr, body.len, chat, &x->g, &x->q, &err, &st, &eb);
    if (rc == ST_DECLINED) {
        x_answer_gov(x, st, &eb, NULL, st == 400 ? "guardrail" : "internal");
        goto done;
    }
    if (rc != ST_OK) {
        x->answered = err.status;
        x->why = "invalid_request";
        count_request(p, NULL, err.status);
        http_req_respond_error(req, err.status, err.type, err.msg, err.param);
        goto done;
    }
    if (x->q.body) {
        x->body.ptr = x->q.body; /* the prompt as masked by the guardrails */
        x->body.len = x->q.body_len;
    }
    st = gwg_admit(gov, &x->g, x->q.model, x->q.prompt_tokens, x->q.max_tokens,
                   (int64_t)sy_mono_ns(), &eb, &x->gov_hdrs);
    if (st != 0) {
        x_answer_gov(x, st, &eb, &x->gov_hdrs,
                     st == 429   ? "rate_limited"
                     : st == 404 ? "model_not_allowed"
                     : st == 400 ? "guardrail"
                                 : "audit_unavailable");
        goto done;
    }
    rc = gwg_hook_start(gov, &x->g, x->q.model, x->q.text ? x->q.text : "", x->q.text_len,
                        on_hook_done, x);
    sy_buf_deinit(&eb);
    if (rc == ST_OK) {
        x->state = GWX_GUARD;
        return;
    }
    if (rc != ST_DECLINED) {
        x_answer_error(x, 503, "ServiceUnavailable", "The guard hook could not be called.", NULL);
        gwx_free(x);
        return;
    }
    start_attempt(x);
    return;
done:
    sy_buf_deinit(&eb);
    gwx_free(x);
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
    sy_slice_t q = http_req_query(req);
    if (mx_registry_render_query(p->cfg.metrics, q.ptr, q.len, b) != ST_OK) {
        http_req_respond_error(req, 500, NULL, "out of memory", NULL);
        return;
    }
    http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b->data, b->len, NULL);
}

/* GET /v1/models with --api-keys: the key must be right (else 401, answered here). */
static bool models_authorized(gw_proxy_t *p, http_req_t *req)
{
    gwg_req_t g;
    gwg_req_init(&g);
    sy_buf_t body = SY_BUF_INIT, hdrs = SY_BUF_INIT;
    sy_slice_t az;
    bool has = http_req_header(req, "Authorization", &az);
    int st = gwg_authenticate(p->cfg.gov, &g, has ? az.ptr : NULL, has ? az.len : 0, &body, &hdrs);
    if (st != 0) {
        count_request(p, NULL, st);
        http_req_respond(req, st, "application/json", body.data ? body.data : "", body.len,
                         hdrs.len ? hdrs.data : NULL);
    }
    sy_buf_deinit(&body);
    sy_buf_deinit(&hdrs);
    gwg_req_deinit(&g);
    return st == 0;
}

void gw_proxy_on_request(http_req_t *req, void *udata)
{
    gw_proxy_t *p = udata;
    sy_slice_t path = http_req_path(req), method = http_req_method(req);
    bool post = sy_slice_eq(method, "POST"), get = sy_slice_eq(method, "GET");
    if (sy_slice_eq(path, "/v1/completions") || sy_slice_eq(path, "/v1/chat/completions")) {
        if (!post) {
            answer_error(p, req, NULL, 405, "MethodNotAllowed", "Use POST for this route.",
                         "Allow: POST\r\n");
            return;
        }
        bool chat = sy_slice_eq(path, "/v1/chat/completions");
        handle_generate(p, req, chat ? "/v1/chat/completions" : "/v1/completions", chat);
        return;
    }
    struct {
        const char *path;
        void (*fn)(gw_proxy_t *, http_req_t *);
    } gets[] = {
        {"/v1/models", handle_models}, {"/health", handle_health}, {"/metrics", handle_metrics}};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        if (!sy_slice_eq(path, gets[i].path))
            continue;
        if (!get) {
            answer_error(p, req, NULL, 405, "MethodNotAllowed", "Use GET for this route.",
                         "Allow: GET\r\n");
            return;
        }
        if (i == 0 && p->cfg.gov && gwg_auth_enabled(p->cfg.gov) && !models_authorized(p, req))
            return;
        gets[i].fn(p, req);
        return;
    }
    answer_error(p, req, NULL, 404, "NotFoundError", "Not Found", NULL);
}
