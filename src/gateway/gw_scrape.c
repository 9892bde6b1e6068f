/*
 * gw_scrape.c - metrics extraction, scraper and health prober (see gw_scrape.h).
 *
 * One loop timer per scraper ticks every min(interval_ms, health_interval_ms). On each tick, for
 * every target: a call in flight past its timeout is cancelled and counted as a failure; a target
 * without a scrape in flight starts one when its next scrape time has come (a probe likewise); and
 * ep->metrics_stale is re-evaluated. Each target owns its upstream (its own keep-alive pool, so
 * scrapes never wait behind proxied streams) and a body buffer that is reset, not freed, between
 * scrapes. A body over max_body_bytes cancels the call from inside on_data (allowed by
 * http_client). Health probes ignore the body.
 * A scrape asks only for the samples extraction reads, with prometheus_client's name[] query
 * parameters (GW_SCRAPE_QUERY): vLLM's and the engine's /metrics then render five gauges instead
 * of the whole exposition (about 18 KB for the engine), which the endpoint and the gateway's loop
 * would otherwise render and parse every 50 ms. A server that ignores the query answers in full,
 * which is parsed the same way; one that refuses it (a non-200 status) or answers without any of
 * the metrics is scraped with the plain path from then on.
 * Thread-safety: loop thread only.
 */
#include "gateway/gw_scrape.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/prom_parse.h"

/* The samples extract_on_sample reads, as a URL query ("name[]" percent-encoded). */
#define GW_SCRAPE_QUERY                                                                            \
    "name%5B%5D=vllm:num_requests_waiting&name%5B%5D=vllm:num_requests_running"                    \
    "&name%5B%5D=vllm:kv_cache_usage_perc&name%5B%5D=vllm:gpu_cache_usage_perc"                    \
    "&name%5B%5D=vllm:cache_config_info"

/* ---- extraction ---- */

typedef struct extract {
    double wait_sum, run_sum, kv_sum, gpu_sum;
    size_t wait_n, run_n, kv_n, gpu_n;
    uint64_t block_size;
    uint64_t blocks_sum;
} extract_t;

static void extract_on_sample(const prom_sample_t *s, void *udata)
{
    extract_t *x = udata;
    sy_slice_t n = s->name;
    /* cheap prefix filter: every metric we want starts with "vllm:" */
    if (n.len < 5 || memcmp(n.ptr, "vllm:", 5) != 0)
        return;
    if (sy_slice_eq(n, "vllm:cache_config_info")) {
        const prom_label_t *bs = prom_sample_label(s, "block_size");
        const prom_label_t *nb = prom_sample_label(s, "num_gpu_blocks");
        uint64_t v;
        if (bs && x->block_size == 0 && prom_label_value_u64(bs->value, &v) == ST_OK &&
            v <= UINT32_MAX)
            x->block_size = v;
        if (nb && prom_label_value_u64(nb->value, &v) == ST_OK && v <= UINT32_MAX)
            x->blocks_sum += v;
        return;
    }
    double v = s->value;
    if (!isfinite(v))
        return;
    if (sy_slice_eq(n, "vllm:num_requests_waiting")) {
        x->wait_sum += v > 0 ? v : 0;
        x->wait_n++;
    } else if (sy_slice_eq(n, "vllm:num_requests_running")) {
        x->run_sum += v > 0 ? v : 0;
        x->run_n++;
    } else if (sy_slice_eq(n, "vllm:kv_cache_usage_perc")) {
        x->kv_sum += v;
        x->kv_n++;
    } else if (sy_slice_eq(n, "vllm:gpu_cache_usage_perc")) {
        x->gpu_sum += v;
        x->gpu_n++;
    }
}

int gw_scrape_extract_ex(const char *text, size_t len, gw_engine_metrics_t *out, size_t *malformed)
{
    extract_t x;
    memset(&x, 0, sizeof x);
    prom_stats_t st;
    if (malformed)
        *malformed = 0;
    if (!out || prom_parse(text, len, extract_on_sample, &x, &st) != ST_OK)
        return ST_INVAL;
    if (malformed)
        *malformed = st.malformed;
    if (x.wait_n == 0 && x.run_n == 0 && x.kv_n == 0 && x.gpu_n == 0)
        return ST_NOTFOUND;
    out->waiting = x.wait_sum;
    out->running = x.run_sum;
    double kv = x.kv_n ? x.kv_sum / (double)x.kv_n : x.gpu_n ? x.gpu_sum / (double)x.gpu_n : 0.0;
    out->kv_usage = kv < 0 ? 0 : kv > 1 ? 1 : kv;
    out->block_size = (uint32_t)x.block_size;
    out->num_blocks = x.blocks_sum > UINT32_MAX ? UINT32_MAX : (uint32_t)x.blocks_sum;
    return ST_OK;
}

int gw_scrape_extract(const char *text, size_t len, gw_engine_metrics_t *out)
{
    return gw_scrape_extract_ex(text, len, out, NULL);
}

/* ---- scraper ---- */

typedef struct target {
    gw_scraper_t *s;
    gw_endpoint_t *ep;   /* borrowed */
    http_upstream_t *up; /* owned */
    http_call_t *scrape; /* in flight, or NULL */
    http_call_t *health; /* in flight, or NULL */
    uint64_t scrape_started_ms, health_started_ms;
    uint64_t next_scrape_ms, next_health_ms;
    int scrape_http, health_http; /* response status of the call in flight, 0 = none yet */
    bool scrape_filtered;         /* the scrape in flight asked for GW_SCRAPE_QUERY */
    bool unfiltered;              /* the filtered scrape failed once: plain path from now on */
    bool too_large;
    sy_buf_t body;
    gw_scrape_stats_t st;
} target_t;

struct gw_scraper {
    ev_loop_t *loop;
    http_client_t *cl;
    gw_scraper_config_t cfg;
    char *metrics_path, *health_path; /* owned copies */
    char *filtered_path;              /* metrics_path + '?' or '&' + GW_SCRAPE_QUERY, owned */
    target_t **t;
    size_t n, cap;
    uint64_t timer;
    uint32_t tick_ms;
};

void gw_scraper_config_default(gw_scraper_config_t *cfg)
{
    cfg->interval_ms = 50;
    cfg->staleness_ms = 1000;
    cfg->scrape_timeout_ms = 1000;
    cfg->max_body_bytes = 4u * 1024 * 1024;
    cfg->metrics_path = "/metrics";
    cfg->health_interval_ms = 1000;
    cfg->health_timeout_ms = 1000;
    cfg->health_path = "/health";
}

static void update_stale(target_t *t, uint64_t now)
{
    const gw_engine_metrics_t *m = &t->ep->m;
    t->ep->metrics_stale = !m->valid || now - m->scraped_ms > t->s->cfg.staleness_ms;
}

static void scrape_failed(target_t *t, const char *why, int status)
{
    t->st.scrapes_failed++;
    sy_debug("gw.scrape_fail", "endpoint=%s why=%s status=\"%s\"", t->ep->name, why,
             st_str(status));
    update_stale(t, ev_now_ms(t->s->loop));
}

/* The endpoint refused the filtered scrape or answered it without the metrics: poll the plain
 * metrics path from now on. */
static void no_filter(target_t *t, const char *why)
{
    t->unfiltered = true;
    sy_info("gw.scrape_unfiltered", "endpoint=%s why=%s path=%s", t->ep->name, why,
            t->s->metrics_path);
}

static void scrape_on_head(http_call_t *c, int status, const http_header_t *h, size_t n,
                           void *udata)
{
    target_t *t = udata;
    t->scrape_http = status;
}

static void scrape_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    target_t *t = udata;
    if (t->body.len + len > t->s->cfg.max_body_bytes ||
        sy_buf_append(&t->body, data, len) != ST_OK) {
        http_call_cancel(c); /* no on_done follows */
        t->scrape = NULL;
        t->st.scrapes_too_large++;
        sy_buf_reset(&t->body);
        scrape_failed(t, "too_large", ST_LIMIT);
    }
}

static void scrape_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    target_t *t = udata;
    t->scrape = NULL;
    uint64_t now = ev_now_ms(t->s->loop);
    if (status != ST_OK || t->scrape_http != 200) {
        sy_buf_reset(&t->body);
        if (status == ST_OK && t->scrape_filtered)
            no_filter(t, "http_status");
        scrape_failed(t, status != ST_OK ? "transport" : "http_status", status);
        return;
    }
    gw_engine_metrics_t m = t->ep->m;
    size_t bad = 0;
    int rc = gw_scrape_extract_ex(t->body.data, t->body.len, &m, &bad);
    sy_buf_reset(&t->body);
    t->st.malformed_lines += bad;
    if (rc != ST_OK) {
        if (t->scrape_filtered)
            no_filter(t, "no_metrics");
        scrape_failed(t, "no_metrics", rc);
        return;
    }
    m.valid = true;
    m.scraped_ms = now;
    t->ep->m = m;
    t->ep->metrics_stale = false;
    t->st.scrapes_ok++;
}

static void health_on_head(http_call_t *c, int status, const http_header_t *h, size_t n,
                           void *udata)
{
    target_t *t = udata;
    t->health_http = status;
}

static void health_result(target_t *t, bool ok)
{
    gw_endpoint_t *ep = t->ep;
    if (ok) {
        t->st.health_ok++;
        ep->healthy = true;
        if (ep->ejected) {
            ep->ejected = false;
            ep->consecutive_failures = 0;
            sy_info("gw.endpoint_recovered", "endpoint=%s", ep->name);
        }
    } else {
        t->st.health_failed++;
        if (ep->healthy)
            sy_warn("gw.endpoint_unhealthy", "endpoint=%s", ep->name);
        ep->healthy = false;
    }
}

static void health_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    target_t *t = udata;
    t->health = NULL;
    health_result(t, status == ST_OK && t->health_http == 200);
}

static const http_call_cbs_t scrape_cbs = {scrape_on_head, scrape_on_data, scrape_on_done};
static const http_call_cbs_t health_cbs = {health_on_head, NULL, health_on_done};

static void target_tick(target_t *t, uint64_t now)
{
    gw_scraper_t *s = t->s;
    if (t->scrape && now - t->scrape_started_ms >= s->cfg.scrape_timeout_ms) {
        http_call_cancel(t->scrape);
        t->scrape = NULL;
        sy_buf_reset(&t->body);
        t->st.scrapes_timeout++;
        scrape_failed(t, "timeout", ST_TIMEOUT);
    }
    if (!t->scrape && now >= t->next_scrape_ms) {
        t->scrape_http = 0;
        sy_buf_reset(&t->body);
        t->scrape_filtered = !t->unfiltered;
        int rc = http_call_start(t->up, "GET", t->unfiltered ? s->metrics_path : s->filtered_path,
                                 "Accept: text/plain\r\n", NULL, 0, &scrape_cbs, t, &t->scrape);
        t->scrape_started_ms = now;
        t->next_scrape_ms = now + s->cfg.interval_ms;
        if (rc != ST_OK) {
            t->scrape = NULL;
            scrape_failed(t, "start", rc);
        }
    }
    if (s->cfg.health_interval_ms) {
        if (t->health && now - t->health_started_ms >= s->cfg.health_timeout_ms) {
            http_call_cancel(t->health);
            t->health = NULL;
            health_result(t, false);
        }
        if (!t->health && now >= t->next_health_ms) {
            t->health_http = 0;
            int rc = http_call_start(t->up, "GET", s->health_path, NULL, NULL, 0, &health_cbs, t,
                                     &t->health);
            t->health_started_ms = now;
            t->next_health_ms = now + s->cfg.health_interval_ms;
            if (rc != ST_OK) {
                t->health = NULL;
                health_result(t, false);
            }
        }
    }
    update_stale(t, now);
}

static void on_tick(ev_loop_t *loop, uint64_t id, void *udata)
{
    gw_scraper_t *s = udata;
    s->timer = ev_timer_add(loop, s->tick_ms, on_tick, s);
    uint64_t now = ev_now_ms(loop);
    for (size_t i = 0; i < s->n; i++)
        target_tick(s->t[i], now);
}

gw_scraper_t *gw_scraper_create(ev_loop_t *loop, http_client_t *cl, const gw_scraper_config_t *cfg)
{
    if (!loop || !cl)
        return NULL;
    gw_scraper_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->loop = loop;
    s->cl = cl;
    gw_scraper_config_t d;
    gw_scraper_config_default(&d);
    s->cfg = cfg ? *cfg : d;
    if (!s->cfg.interval_ms)
        s->cfg.interval_ms = d.interval_ms;
    if (!s->cfg.staleness_ms)
        s->cfg.staleness_ms = d.staleness_ms;
    if (!s->cfg.scrape_timeout_ms)
        s->cfg.scrape_timeout_ms = d.scrape_timeout_ms;
    if (!s->cfg.max_body_bytes)
        s->cfg.max_body_bytes = d.max_body_bytes;
    if (!s->cfg.metrics_path || !*s->cfg.metrics_path)
        s->cfg.metrics_path = d.metrics_path;
    if (!s->cfg.health_timeout_ms)
        s->cfg.health_timeout_ms = d.health_timeout_ms;
    if (!s->cfg.health_path || !*s->cfg.health_path)
        s->cfg.health_path = d.health_path;
    s->metrics_path = sy_strdup(s->cfg.metrics_path);
    s->health_path = sy_strdup(s->cfg.health_path);
    s->cfg.metrics_path = s->metrics_path;
    s->cfg.health_path = s->health_path;
    s->tick_ms = s->cfg.interval_ms;
    if (s->cfg.health_interval_ms && s->cfg.health_interval_ms < s->tick_ms)
        s->tick_ms = s->cfg.health_interval_ms;
    if (!s->metrics_path || !s->health_path)
        goto fail;
    size_t pl = strlen(s->metrics_path), ql = strlen(GW_SCRAPE_QUERY);
    s->filtered_path = sy_malloc(pl + 1 + ql + 1);
    if (!s->filtered_path)
        goto fail;
    memcpy(s->filtered_path, s->metrics_path, pl);
    s->filtered_path[pl] = memchr(s->metrics_path, '?', pl) ? '&' : '?';
    memcpy(s->filtered_path + pl + 1, GW_SCRAPE_QUERY, ql + 1);
    s->timer = ev_timer_add(loop, s->tick_ms, on_tick, s);
    if (!s->timer)
        goto fail;
    return s;
fail:
    gw_scraper_destroy(s);
    return NULL;
}

static void target_free(target_t *t)
{
    http_upstream_destroy(t->up); /* cancels calls in flight, no callbacks */
    sy_buf_deinit(&t->body);
    sy_free(t);
}

void gw_scraper_destroy(gw_scraper_t *s)
{
    if (!s)
        return;
    if (s->timer)
        ev_timer_cancel(s->loop, s->timer);
    for (size_t i = 0; i < s->n; i++)
        target_free(s->t[i]);
    sy_free(s->t);
    sy_free(s->metrics_path);
    sy_free(s->filtered_path);
    sy_free(s->health_path);
    sy_free(s);
}

static target_t *find(const gw_scraper_t *s, const gw_endpoint_t *ep, size_t *idx)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->t[i]->ep == ep) {
            if (idx)
                *idx = i;
            return s->t[i];
        }
    }
    return NULL;
}

int gw_scraper_add(gw_scraper_t *s, gw_endpoint_t *ep)
{
    if (!s || !ep)
        return ST_INVAL;
    if (find(s, ep, NULL))
        return ST_EXISTS;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        target_t **p = sy_realloc(s->t, cap * sizeof *p);
        if (!p)
            return ST_NOMEM;
        s->t = p;
        s->cap = cap;
    }
    target_t *t = sy_calloc(1, sizeof *t);
    if (!t)
        return ST_NOMEM;
    int rc = ST_OK;
    t->up = http_upstream_create(s->cl, ep->host, ep->port, &rc);
    if (!t->up) {
        sy_free(t);
        return rc;
    }
    t->s = s;
    t->ep = ep;
    sy_buf_init(&t->body);
    ep->metrics_stale = true;
    s->t[s->n++] = t;
    return ST_OK;
}

int gw_scraper_remove(gw_scraper_t *s, const gw_endpoint_t *ep)
{
    size_t i;
    target_t *t = s ? find(s, ep, &i) : NULL;
    if (!t)
        return ST_NOTFOUND;
    s->t[i] = s->t[--s->n];
    target_free(t);
    return ST_OK;
}

static void stats_add(gw_scrape_stats_t *a, const gw_scrape_stats_t *b)
{
    a->scrapes_ok += b->scrapes_ok;
    a->scrapes_failed += b->scrapes_failed;
    a->scrapes_too_large += b->scrapes_too_large;
    a->scrapes_timeout += b->scrapes_timeout;
    a->malformed_lines += b->malformed_lines;
    a->health_ok += b->health_ok;
    a->health_failed += b->health_failed;
}

int gw_scraper_stats(const gw_scraper_t *s, const gw_endpoint_t *ep, gw_scrape_stats_t *out)
{
    if (!s || !out)
        return ST_INVAL;
    memset(out, 0, sizeof *out);
    if (ep) {
        const target_t *t = find(s, ep, NULL);
        if (!t)
            return ST_NOTFOUND;
        *out = t->st;
        return ST_OK;
    }
    for (size_t i = 0; i < s->n; i++)
        stats_add(out, &s->t[i]->st);
    return ST_OK;
}
