/*
 * gw_endpoint.h - the gateway's view of one model-server endpoint (a Switchyard engine or a vLLM
 * pod): identity, role, served models, and the live signals the scheduler scores on.
 *
 * The endpoint table (gw_endpoints.c, owned by the gateway main) holds at most GW_MAX_ENDPOINTS
 * endpoints; an endpoint's `id` is its slot index, stable for its lifetime, and is the key every
 * index (prefix_index.h, approx_index.h) uses. Signals are written by the data layer (metrics
 * scraper, KV-event subscriber, health prober) and by the proxy (in-flight load), all on the
 * gateway's event-loop thread.
 * Thread-safety: loop thread only, unless a field says otherwise.
 */
#ifndef SY_GW_ENDPOINT_H
#define SY_GW_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_MAX_ENDPOINTS 1024
#define GW_MAX_MODELS 16

typedef enum gw_role {
    GW_ROLE_BOTH = 0, /* prefill and decode (aggregated serving) */
    GW_ROLE_PREFILL = 1,
    GW_ROLE_DECODE = 2,
} gw_role_t;

/* Last scraped engine metrics (vLLM names of both generations, spec §2). */
typedef struct gw_engine_metrics {
    bool valid;          /* at least one successful scrape */
    uint64_t scraped_ms; /* monotonic ms of the last successful scrape */
    double waiting;      /* vllm:num_requests_waiting */
    double running;      /* vllm:num_requests_running */
    double kv_usage;     /* vllm:kv_cache_usage_perc (or gpu_cache_usage_perc), 0..1 */
    uint32_t block_size; /* from vllm:cache_config_info, 0 if unknown */
    uint32_t num_blocks; /* from vllm:cache_config_info num_gpu_blocks, 0 if unknown */
} gw_engine_metrics_t;

typedef struct gw_endpoint {
    uint32_t id;     /* slot index, 0..GW_MAX_ENDPOINTS-1 */
    char name[128];  /* "host:port", used in logs, metrics labels, x-switchyard-endpoint */
    char host[96];
    int port;
    gw_role_t role;
    char *models[GW_MAX_MODELS]; /* served model names (owned) */
    size_t n_models;
    bool healthy;           /* last health probe / request outcome says it serves */
    bool ejected;           /* taken out after consecutive failures; probed to recover */
    uint32_t consecutive_failures;
    gw_engine_metrics_t m;  /* scraped */
    bool metrics_stale;     /* last scrape older than the staleness limit */
    bool kv_index_stale;    /* KV-event sequence gap not yet recovered: precise entries unsure */
    uint32_t inflight_requests; /* tracked by the gateway itself (no metric lag) */
    uint64_t inflight_tokens;   /* prompt + expected output tokens of in-flight requests */
    uint64_t inflight_prefill_tokens; /* prompt tokens not expected in the endpoint's cache, of
                                       * in-flight requests still waiting for their first token */
} gw_endpoint_t;

/* True if ep serves model (exact name match). */
bool gw_endpoint_serves(const gw_endpoint_t *ep, const char *model);

#endif
