/*
 * gw_scrape.h - the gateway's engine-metrics data layer: extraction of the scheduling signals from
 * a vLLM-compatible /metrics text (both metric-name generations), a scraper that polls every
 * registered endpoint's metrics path on the event loop, and a health prober (GET /health).
 *
 * Extraction rules (gw_scrape_extract), spec vllm-interfaces.md §2:
 *   waiting  = sum of vllm:num_requests_waiting over all series (data-parallel ranks `engine`,
 *              several `model_name` labels: every series is a separate queue);
 *   running  = sum of vllm:num_requests_running over all series;
 *   kv_usage = mean of vllm:kv_cache_usage_perc over its series (each rank reports the fraction of
 *              its own cache; ranks are assumed equal in size), clamped to 0..1; only when that
 *              metric is absent, the mean of the deprecated vllm:gpu_cache_usage_perc;
 *   block_size = the label of the first vllm:cache_config_info series that has a numeric one;
 *   num_blocks = sum of the numeric num_gpu_blocks labels over the cache_config_info series (one
 *              per rank); "None" (not yet profiled) counts as unknown (0).
 *   Non-finite samples (NaN, +-Inf) are ignored; negative queue lengths count as 0.
 * Scraper policy: at most one scrape and one probe in flight per endpoint. Scrapes ask for only the
 * five families above with prometheus_client's `name[]` query (vLLM and the engine honour it; a
 * server that ignores it just sends the full text); an endpoint that answers a filtered scrape with
 * a non-200 status or a body without the core metrics is scraped without the query from then on
 * (logged once, gw.scrape_unfiltered). A scrape fails on a
 * transport error, a non-200 status, a body over max_body_bytes, a timeout, or a body without any
 * of the three core metrics. A failure keeps the last good values in ep->m; ep->metrics_stale turns
 * true once the last success is older than staleness_ms (or there was none), false on success.
 * Health: 200 -> ep->healthy = true (and an ejected endpoint is un-ejected: ejected = false,
 * consecutive_failures = 0); any other status or failure -> ep->healthy = false.
 * Does not: own endpoints (borrowed; must outlive their registration), decide ejection.
 * Thread-safety: event-loop thread only.
 */
#ifndef SY_GW_SCRAPE_H
#define SY_GW_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"
#include "gateway/gw_endpoint.h"
#include "http/http_client.h"

/* Reads the signals above from text[0..len) into out->waiting, running, kv_usage, block_size and
 * num_blocks (fields whose metric is absent are set to 0); out->valid and out->scraped_ms are not
 * touched. Malformed lines are skipped (counted in *malformed when not NULL).
 * Returns ST_OK if at least one of waiting / running / kv-usage was present, else ST_NOTFOUND
 * (out is then unchanged). Pure; never reads past len. */
int gw_scrape_extract_ex(const char *text, size_t len, gw_engine_metrics_t *out, size_t *malformed);
/* Same, without the malformed-line count. */
int gw_scrape_extract(const char *text, size_t len, gw_engine_metrics_t *out);

typedef struct gw_scraper gw_scraper_t;

typedef struct gw_scraper_config {
    uint32_t interval_ms;        /* metrics scrape period; default 50 */
    uint32_t staleness_ms;       /* metrics_stale when the last success is older; default 1000 */
    uint32_t scrape_timeout_ms;  /* a scrape in flight longer is cancelled (failure); 1000 */
    size_t max_body_bytes;       /* larger /metrics bodies are a failure; default 4 MiB */
    const char *metrics_path;    /* default "/metrics"; copied */
    uint32_t health_interval_ms; /* probe period; default 1000; 0 = no health probes */
    uint32_t health_timeout_ms;  /* a probe in flight longer is cancelled (unhealthy); 1000 */
    const char *health_path;     /* default "/health"; copied */
} gw_scraper_config_t;

typedef struct gw_scrape_stats {
    uint64_t scrapes_ok;
    uint64_t scrapes_failed; /* transport, status, size, timeout, no metrics */
    uint64_t scrapes_too_large;
    uint64_t scrapes_timeout;
    uint64_t malformed_lines; /* summed over successful and failed parses */
    uint64_t health_ok;
    uint64_t health_failed;
} gw_scrape_stats_t;

/* Fills cfg with the defaults above (strings point to static literals). */
void gw_scraper_config_default(gw_scraper_config_t *cfg);

/* Returns an owned scraper (free with gw_scraper_destroy) or NULL. loop and cl are borrowed and
 * must outlive it; cfg copied (NULL or zero fields = defaults). The first scrape / probe of an
 * endpoint happens on the first tick after gw_scraper_add. */
gw_scraper_t *gw_scraper_create(ev_loop_t *loop, http_client_t *cl, const gw_scraper_config_t *cfg);
/* Cancels every scrape/probe in flight (no further endpoint updates) and frees. NULL ok. */
void gw_scraper_destroy(gw_scraper_t *s);

/* Registers ep (borrowed until gw_scraper_remove/destroy) and creates the scraper's own upstream
 * to ep->host:ep->port (blocking name resolution: call at configuration time). Sets
 * ep->metrics_stale = true until the first successful scrape. ST_OK, ST_EXISTS, ST_INVAL,
 * ST_NOMEM or the upstream's error. */
int gw_scraper_add(gw_scraper_t *s, gw_endpoint_t *ep);
/* Unregisters ep, cancelling its calls. ST_OK or ST_NOTFOUND. */
int gw_scraper_remove(gw_scraper_t *s, const gw_endpoint_t *ep);
/* Counters for ep, or the totals over all registered endpoints when ep is NULL. ST_OK or
 * ST_NOTFOUND. */
int gw_scraper_stats(const gw_scraper_t *s, const gw_endpoint_t *ep, gw_scrape_stats_t *out);

#endif
