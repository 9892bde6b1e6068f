/*
 * gw_proxy.h - the gateway's data plane: OpenAI API in, the same API out. For each generation
 * request it validates the body exactly as the engine would (refusing with the engine's status
 * and error body before any endpoint is touched), computes the prompt's block hashes (precise, with
 * the engine's own tokenizer and hash chain) and chunk hashes (approximate), asks the scheduler for
 * an endpoint, forwards the request over a pooled keep-alive upstream connection and streams the
 * answer back (SSE passed through under backpressure), naming the endpoint in the
 * `x-switchyard-endpoint` header.
 *
 * Exchange state machine (gw_proxy.c, one per proxied request):
 *   PICK --endpoint chosen--> UPSTREAM (call in flight, nothing sent to the client yet)
 *   PICK --P/D: decode endpoint chosen, the decider says prefill-decode, a prefill endpoint
 *          chosen--> PREFILL (prefill call in flight)
 *   PREFILL --200 with kv_transfer_params--> UPSTREAM (decode call carrying them)
 *   PREFILL --connect error / non-200 / not JSON / no parameters / prefill timeout--> PREFILL
 *          (policy retry: another prefill endpoint, at most prefill_max_retries) or UPSTREAM
 *          (the client's body: the decode endpoint prefills locally)
 *   UPSTREAM --connect failure / reset / 5xx before the first byte--> PICK (another endpoint,
 *            at most max_retries times; after P/D without the parameters) or FAILED (503/502)
 *   UPSTREAM --response head 200 text/event-stream--> STREAMING --upstream end--> DONE
 *   UPSTREAM --other response head--> BUFFERING --upstream end--> DONE (response relayed)
 *   STREAMING --upstream cut--> DONE (in-band error event + [DONE])
 *   any --client closed--> DONE (upstream or prefill call cancelled)
 * Endpoints are ejected after eject_after consecutive failures; the health prober brings them
 * back.
 * P/D disaggregation (when the scheduler config enables it, gws_sched_pd): the decode profile
 * picks the endpoint the client's answer comes from; gwpd_decide compares the prompt tokens not
 * cached there (its prefix matches x block size) with the threshold (the config's
 * nonCachedTokens, or per request the header `x-switchyard-pd-threshold: N`, 0 = always, >=
 * 2^32 = never); for prefill-decode the prefill profile picks another endpoint, which gets the
 * prefill request (gw_pd.h, same X-Request-Id as the decode request: the client's or one made up)
 * and whose kv_transfer_params the decode request carries. Responses then name the prefill
 * endpoint in `x-switchyard-prefill-endpoint`, and with debug_scores x-switchyard-decision has a
 * "pd" member. A client's own kv_transfer_params is refused with 400 (only the gateway sets
 * them: they name hosts an engine connects to). Metrics: llm_d_inference_scheduler_disagg_
 * decision_total{model_name,decision_type}, switchyard_gateway_pd_requests_total{path},
 * switchyard_gateway_prefill_failures_total{reason}, switchyard_gateway_prefill_duration_seconds
 * {outcome} (created only with P/D on). With P/D off nothing of this runs.
 * Does not: own the endpoint table, the upstreams, the scheduler or the indexes (borrowed).
 * Thread-safety: event-loop thread only.
 */
#ifndef SY_GW_PROXY_H
#define SY_GW_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "engine/chat_tmpl.h"
#include "engine/kv_hash.h"
#include "engine/tokenizer.h"
#include "gateway/approx_index.h"
#include "gateway/gw_endpoint.h"
#include "gateway/gw_gov.h"
#include "gateway/gw_sched.h"
#include "gateway/prefix_index.h"
#include "http/http_client.h"
#include "http/http_server.h"

typedef struct gw_proxy gw_proxy_t;

/* The endpoint table shared by the gateway's modules (owned by the gateway main). */
typedef struct gw_table {
    gw_endpoint_t *eps[GW_MAX_ENDPOINTS]; /* eps[i]->id == i */
    http_upstream_t *ups[GW_MAX_ENDPOINTS];
    bool draining[GW_MAX_ENDPOINTS]; /* removed from the config: finishing, never picked */
    size_t n;                        /* slots in use are < n; a removed endpoint leaves NULL */
} gw_table_t;

typedef struct gw_proxy_config {
    gw_table_t *table;         /* borrowed */
    gws_sched_t *sched;        /* borrowed */
    pidx_t *pidx;              /* borrowed, may be NULL (no KV events configured) */
    aidx_t *aidx;              /* borrowed */
    const tok_t *tok;          /* borrowed, may be NULL: no precise hashes */
    const chat_tmpl_t *tmpl;   /* borrowed, with tok */
    kvh_digest_t none_hash;    /* chain seed, from PYTHONHASHSEED like the engines */
    uint32_t block_size;       /* engines' --block-size */
    mx_registry_t *metrics;    /* borrowed */
    uint32_t max_retries;      /* other endpoints tried before the first byte, default 2 */
    uint32_t eject_after;      /* consecutive failures before ejection, default 3 */
    bool debug_scores;         /* add x-switchyard-scores to responses */
    size_t approx_chunk_chars; /* 64 */
    gwg_t *gov;                /* borrowed, may be NULL: auth, rate limits, guardrails, audit */
    ev_loop_t *loop;           /* borrowed, may be NULL: no prefill timeout timer (P/D then
                                * relies on the HTTP client's timeouts alone) */
} gw_proxy_config_t;

/* Returns an owned proxy (free with gw_proxy_destroy) or NULL. */
gw_proxy_t *gw_proxy_create(const gw_proxy_config_t *cfg);
/* Cancels every in-flight upstream call. The HTTP server must be destroyed first (so the client
 * exchanges are gone) or be destroyed right after. NULL ok. */
void gw_proxy_destroy(gw_proxy_t *p);
/* http_on_request_cb; udata is the proxy. */
void gw_proxy_on_request(http_req_t *req, void *udata);
/* Proxied requests in flight. */
size_t gw_proxy_inflight(const gw_proxy_t *p);
/* While draining, new requests get 503. */
void gw_proxy_set_draining(gw_proxy_t *p, bool draining);
/* Registers a served model name (copied) and its context length from an endpoint's /v1/models
 * (0 = unknown: no context limit). Generation requests are validated, before any endpoint is
 * touched, by the engine's own validator (api_parse_gen_json) configured with that name, length,
 * cfg.tok and cfg.tmpl (token checks skipped when either is NULL); a request without "model" uses
 * the first name registered. Registering a known name again keeps the smallest known length.
 * ST_OK, ST_NOMEM or ST_LIMIT (256 names). Loop thread. */
int gw_proxy_add_model(gw_proxy_t *p, const char *name, uint32_t max_model_len);

#endif
