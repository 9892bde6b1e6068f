/*
 * gw_main.c - `switchyard gateway`: the LLM-aware inference gateway. Parses the command line
 * (endpoints as `--endpoint URL[,kv-events=ZMQ][,replay=ZMQ][,role=ROLE][,model=NAME]`, the
 * scheduler as a built-in name or an EndpointPickerConfig YAML file), builds the endpoint table,
 * the data layer (metrics scraper + health prober, KV-event subscriber feeding the precise index,
 * the approximate index, the models each endpoint serves from its /v1/models), the scheduler and
 * the proxy, and runs the event loop until SIGTERM/SIGINT, then drains like the engine does.
 *
 * Threads: the main thread runs the event loop (proxy, scraper, prober, models refresh); the
 * KV-event subscriber runs its own thread and writes only into the (locked) precise index.
 * Endpoints come from --endpoint arguments, an optional --endpoints-file (gw_endpoints.h),
 * re-read on SIGHUP, and DNS discovery targets (--discover or the file's `discovery:`, gw_dns.h,
 * re-resolved on the gwdns thread): each change applies the wanted set (apply_wanted): unchanged
 * endpoints keep their state, removed ones drain (never picked, torn down by the tick once their
 * in-flight requests finish), new ones take free slots.
 * Hash parity: with KV events, the tick drives gw_parity.h, which probes every subscribed
 * endpoint once its models are known (at start-up and whenever one is added) and exports
 * switchyard_gateway_hash_parity; ep_remove tells it before the slot's upstream goes.
 * Listeners: the client listener speaks TLS with --tls-cert/--tls-key (certificate and key
 * re-read on SIGHUP; a bad pair keeps the running one and logs gateway.tls_reload_failed). With
 * --admin-port, /metrics moves to a separate plain-HTTP admin listener (default 127.0.0.1) that
 * serves /metrics and /health only; the client listener answers /metrics with 404 and keeps
 * /health. Endpoints with an https:// URL are reached through a second HTTP client whose TLS
 * context verifies them against --upstream-tls-ca (or the system store); their scrapers use it
 * too (a scraper serves one metrics path over one client).
 * Does not: re-read the file's `discovery:` entries on SIGHUP (they are read at start); TLS for
 * discovered endpoints or for the KV-event (ZMQ) connections.
 * Thread-safety: process entry, main thread.
 */
#include "gateway/gw_main.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/cli.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/chat_tmpl.h"
#include "engine/gguf.h"
#include "engine/kv_hash.h"
#include "engine/tok_gguf.h"
#include "engine/tokenizer.h"
#include "gateway/approx_index.h"
#include "gateway/gw_dns.h"
#include "gateway/gw_endpoints.h"
#include "gateway/gw_gov.h"
#include "gateway/gw_parity.h"
#include "gateway/gw_proxy.h"
#include "gateway/gw_sched.h"
#include "gateway/gw_scrape.h"
#include "gateway/kv_sub.h"
#include "gateway/prefix_index.h"
#include "http/http_client.h"
#include "http/http_server.h"
#include "http/http_tls.h"

#define GW_MAX_SPECS 256
#define GW_TICK_MS 50
#define GW_MODELS_REFRESH_MS 2000
#define GW_MAX_SCRAPERS 8 /* distinct metrics paths */
#define GW_MAX_DISC 64    /* --discover arguments plus the file's discovery entries */

typedef struct gw_ctx {
    ev_loop_t *loop;
    http_server_t *srv;
    http_server_t *admin;      /* --admin-port: /metrics and /health; NULL = none */
    htls_server_t *tls;        /* --tls-cert/--tls-key for srv; NULL = plain HTTP */
    http_client_t *client;     /* upstreams of http:// endpoints */
    http_client_t *tls_client; /* upstreams of https:// endpoints; created on first use */
    htls_client_t *utls;       /* tls_client's context (--upstream-tls-ca) */
    const char *upstream_ca;   /* --upstream-tls-ca; NULL = the system store */
    gw_table_t table;
    gw_proxy_t *proxy;
    gwg_t *gov; /* --api-keys, --guardrails, --audit-log; NULL when none is given */
    gw_scraper_config_t scfg;
    http_client_config_t ccfg; /* both proxy clients' config (--max-upstream-conns ...) */
    struct {
        char path[128]; /* "" = the default */
        bool tls;       /* over tls_client */
        gw_scraper_t *s;
    } scrapers[GW_MAX_SCRAPERS];
    size_t n_scrapers;
    gw_scraper_t *scraper_of[GW_MAX_ENDPOINTS]; /* borrowed from scrapers[] */
    gw_ep_spec_t *spec[GW_MAX_ENDPOINTS];       /* the spec each slot was built from (owned) */
    const gw_ep_spec_t *flag_specs;             /* --endpoint arguments (fixed across reloads) */
    size_t n_flag_specs;
    const char *endpoints_file; /* --endpoints-file, re-read on SIGHUP; NULL = none */
    gw_ep_list_t file;          /* the file as last loaded (its discovery entries: as at start) */
    gw_disc_spec_t *disc;       /* discovery entries (owned): --discover, then the file's */
    size_t n_disc;
    gwdns_t *dns; /* resolves disc[i] as its target i; NULL = no discovery */
    kvsub_t *kvsub;
    gwpar_t *par; /* active hash-parity probes; NULL without KV events */
    pidx_t *pidx;
    aidx_t *aidx;
    gws_sched_t *sched;
    mx_registry_t *reg;
    mx_family_t *f_ep_healthy, *f_ep_inflight, *f_ep_prefill, *f_ep_lag, *f_index, *f_kv;
    mx_family_t *f_ep_queue;
    bool models_pending[GW_MAX_ENDPOINTS];
    http_call_t *models_call[GW_MAX_ENDPOINTS];
    sy_buf_t models_body[GW_MAX_ENDPOINTS];
    uint64_t next_models_ms;
    size_t approx_chunk_chars;
    uint32_t block_size;
    double drain_timeout;
    uint64_t drain_deadline_ms;
    bool draining;
    int sigfd;
} gw_ctx_t;

/* ------------------------------------------------------------------------------------------ */
/* models each endpoint serves, from its /v1/models                                           */

static void models_on_head(http_call_t *c, int status, const http_header_t *h, size_t n,
                           void *udata)
{
    (void)c;
    (void)h;
    (void)n;
    (void)status;
    (void)udata;
}

static void models_on_data(http_call_t *c, const char *data, size_t len, void *udata);
static void models_on_done(http_call_t *c, int status, bool first_byte, void *udata);
static const http_call_cbs_t k_models_cbs = {models_on_head, models_on_data, models_on_done};

typedef struct models_arg {
    gw_ctx_t *ctx;
    uint32_t id;
} models_arg_t;
static models_arg_t g_models_args[GW_MAX_ENDPOINTS];

static void models_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    (void)c;
    models_arg_t *a = udata;
    sy_buf_t *b = &a->ctx->models_body[a->id];
    if (b->len + len < (1u << 20))
        sy_buf_append(b, data, len);
}

static void models_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    (void)first_byte;
    models_arg_t *a = udata;
    gw_ctx_t *ctx = a->ctx;
    gw_endpoint_t *ep = ctx->table.eps[a->id];
    sy_buf_t *b = &ctx->models_body[a->id];
    ctx->models_call[a->id] = NULL;
    if (!ep) {
        sy_buf_reset(b);
        return;
    }
    json_t *root = status == ST_OK ? json_loadb(b->data ? b->data : "", b->len, 0, NULL) : NULL;
    json_t *data = json_object_get(root, "data");
    size_t added = 0;
    for (size_t i = 0; i < json_array_size(data) && ep->n_models < GW_MAX_MODELS; i++) {
        json_t *m = json_array_get(data, i);
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id || gw_endpoint_serves(ep, id))
            continue;
        json_int_t mml = json_integer_value(json_object_get(m, "max_model_len"));
        if (gw_proxy_add_model(ctx->proxy, id, mml > 0 && mml <= UINT32_MAX ? (uint32_t)mml : 0) !=
            ST_OK)
            continue;
        ep->models[ep->n_models] = sy_strdup(id);
        if (ep->models[ep->n_models]) {
            ep->n_models++;
            added++;
        }
    }
    if (added) {
        ctx->models_pending[a->id] = false;
        sy_info("gateway.endpoint_models", "endpoint=%s models=%zu first=\"%s\"", ep->name,
                ep->n_models, ep->models[0]);
    }
    json_decref(root);
    sy_buf_reset(b);
}

static void models_refresh(gw_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->table.n; i++) {
        if (!ctx->table.eps[i] || !ctx->models_pending[i] || ctx->models_call[i])
            continue;
        g_models_args[i] = (models_arg_t){ctx, (uint32_t)i};
        sy_buf_reset(&ctx->models_body[i]);
        if (http_call_start(ctx->table.ups[i], "GET", "/v1/models", NULL, NULL, 0, &k_models_cbs,
                            &g_models_args[i], &ctx->models_call[i]) != ST_OK)
            ctx->models_call[i] = NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* endpoint lifecycle: add, drain, remove (SIGHUP reload of --endpoints-file)                  */

/* The HTTP client for plain (tls false) or https:// endpoints; the TLS one is created on first
 * use. NULL with err set on failure. */
static http_client_t *client_for(gw_ctx_t *ctx, bool tls, char *err, size_t errlen)
{
    if (!tls)
        return ctx->client;
    if (ctx->tls_client)
        return ctx->tls_client;
    char terr[256];
    if (!ctx->utls && !(ctx->utls = htls_client_create(ctx->upstream_ca, terr, sizeof terr))) {
        snprintf(err, errlen, "upstream TLS: %.200s", terr);
        return NULL;
    }
    http_client_config_t ccfg = ctx->ccfg;
    ccfg.tls = ctx->utls;
    ctx->tls_client = http_client_create(ctx->loop, &ccfg);
    if (!ctx->tls_client)
        snprintf(err, errlen, "out of memory");
    return ctx->tls_client;
}

/* The scraper polling `path` ("" = /metrics) over the plain or the TLS client, created on first
 * use. NULL on failure. */
static gw_scraper_t *scraper_for(gw_ctx_t *ctx, const char *path, bool tls)
{
    for (size_t i = 0; i < ctx->n_scrapers; i++)
        if (strcmp(ctx->scrapers[i].path, path) == 0 && ctx->scrapers[i].tls == tls)
            return ctx->scrapers[i].s;
    if (ctx->n_scrapers == GW_MAX_SCRAPERS)
        return NULL;
    gw_scraper_config_t c = ctx->scfg;
    if (path[0])
        c.metrics_path = path;
    gw_scraper_t *s = gw_scraper_create(ctx->loop, tls ? ctx->tls_client : ctx->client, &c);
    if (!s)
        return NULL;
    snprintf(ctx->scrapers[ctx->n_scrapers].path, sizeof ctx->scrapers[0].path, "%s", path);
    ctx->scrapers[ctx->n_scrapers].tls = tls;
    ctx->scrapers[ctx->n_scrapers++].s = s;
    return s;
}

/* Tears slot id down at once: scraper, KV events and index entries, models call, upstream. */
static void ep_remove(gw_ctx_t *ctx, uint32_t id)
{
    gw_endpoint_t *ep = ctx->table.eps[id];
    if (!ep)
        return;
    if (ctx->models_call[id])
        http_call_cancel(ctx->models_call[id]);
    ctx->models_call[id] = NULL;
    ctx->models_pending[id] = false;
    sy_buf_reset(&ctx->models_body[id]);
    if (ctx->scraper_of[id])
        gw_scraper_remove(ctx->scraper_of[id], ep);
    ctx->scraper_of[id] = NULL;
    gwpar_remove_endpoint(ctx->par, id); /* before the upstream goes: cancels its probe */
    if (ctx->kvsub)
        kvsub_remove_endpoint(ctx->kvsub, id); /* drops its precise entries */
    if (ctx->pidx)
        pidx_clear_endpoint(ctx->pidx, id);
    if (ctx->aidx)
        aidx_clear_endpoint(ctx->aidx, id);
    const char *lv[] = {ep->name};
    mx_series_t *s = ctx->f_ep_healthy ? mx_series_get(ctx->f_ep_healthy, lv, 1) : NULL;
    if (s)
        mx_gauge_set(s, 0);
    s = ctx->f_ep_inflight ? mx_series_get(ctx->f_ep_inflight, lv, 1) : NULL;
    if (s)
        mx_gauge_set(s, 0);
    http_upstream_destroy(ctx->table.ups[id]);
    ctx->table.ups[id] = NULL;
    for (size_t m = 0; m < ep->n_models; m++)
        sy_free(ep->models[m]);
    sy_free(ep);
    sy_free(ctx->spec[id]);
    ctx->spec[id] = NULL;
    ctx->table.eps[id] = NULL;
    ctx->table.draining[id] = false;
    while (ctx->table.n && !ctx->table.eps[ctx->table.n - 1])
        ctx->table.n--;
}

/* Builds an endpoint from spec in the lowest free slot. ST_OK, or an error with err set (nothing
 * is left behind). Models named in the spec are registered with the proxy when it exists.
 * Resolves the host name (blocking). */
static int ep_add(gw_ctx_t *ctx, const gw_ep_spec_t *spec, char *err, size_t errlen)
{
    uint32_t id = 0;
    while (id < GW_MAX_ENDPOINTS && ctx->table.eps[id])
        id++;
    if (id == GW_MAX_ENDPOINTS) {
        snprintf(err, errlen, "endpoint %s:%d: table full (%d)", spec->host, spec->port,
                 GW_MAX_ENDPOINTS);
        return ST_LIMIT;
    }
    gw_endpoint_t *ep = sy_calloc(1, sizeof *ep);
    gw_ep_spec_t *copy = sy_malloc(sizeof *copy);
    if (!ep || !copy) {
        sy_free(ep);
        sy_free(copy);
        snprintf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    *copy = *spec;
    ep->id = id;
    snprintf(ep->host, sizeof ep->host, "%s", spec->host);
    ep->port = spec->port;
    snprintf(ep->name, sizeof ep->name, "%s:%d", spec->host, spec->port);
    ep->role = spec->role;
    ep->healthy = true; /* until a probe or a request says otherwise */
    ctx->table.eps[id] = ep;
    ctx->table.draining[id] = false;
    ctx->spec[id] = copy;
    if (id >= ctx->table.n)
        ctx->table.n = id + 1;
    int st = ST_OK;
    for (size_t m = 0; m < spec->n_models && st == ST_OK; m++) {
        ep->models[m] = sy_strdup(spec->models[m]);
        st = ep->models[m] ? ST_OK : ST_NOMEM;
        ep->n_models += ep->models[m] != NULL;
        if (st == ST_OK && ctx->proxy)
            st = gw_proxy_add_model(ctx->proxy, spec->models[m], 0);
    }
    ctx->models_pending[id] = spec->n_models == 0;
    if (st != ST_OK) {
        snprintf(err, errlen, "endpoint %s: models: %s", ep->name, st_str(st));
        goto fail;
    }
    char cerr[320];
    http_client_t *cl = client_for(ctx, spec->tls, cerr, sizeof cerr);
    if (!cl) {
        snprintf(err, errlen, "endpoint %s: %.300s", ep->name, cerr);
        st = ST_INVAL;
        goto fail;
    }
    ctx->table.ups[id] = http_upstream_create(cl, ep->host, ep->port, &st);
    if (!ctx->table.ups[id]) {
        snprintf(err, errlen, "endpoint %s: %s", ep->name, st_str(st));
        goto fail;
    }
    gw_scraper_t *sc = scraper_for(ctx, spec->metrics_path, spec->tls);
    if (!sc || (st = gw_scraper_add(sc, ep)) != ST_OK) {
        snprintf(err, errlen, "endpoint %s: scraper: %s", ep->name,
                 sc ? st_str(st) : "too many metrics paths");
        goto fail;
    }
    ctx->scraper_of[id] = sc;
    if (spec->kv_events[0]) {
        st = ctx->kvsub ? kvsub_add_endpoint(ctx->kvsub, id, spec->kv_events,
                                             spec->replay[0] ? spec->replay : NULL, NULL)
                        : ST_INVAL;
        if (st != ST_OK) {
            snprintf(err, errlen, "endpoint %s: kv_events %s: %s", ep->name, spec->kv_events,
                     st_str(st));
            goto fail;
        }
    }
    return ST_OK;
fail:
    ep_remove(ctx, id);
    return st != ST_OK ? st : ST_INVAL;
}

/* Startup, reload and discovery: the wanted set is the --endpoint arguments, the file's entries,
 * then the endpoints the discovery targets currently resolve to (a discovered host:port that is
 * already listed is skipped). ST_OK with *out owned (the discovery entries are not copied), or an
 * error (duplicate listed host:port, ST_NOMEM) with err set. */
static int wanted_specs(gw_ctx_t *ctx, const gw_ep_list_t *file, gw_ep_list_t *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t n_listed = ctx->n_flag_specs + file->n, n_found = 0;
    gwdns_addr_t *found = NULL;
    size_t per[GW_MAX_DISC];
    if (ctx->dns && ctx->n_disc) {
        found = sy_malloc(ctx->n_disc * GWDNS_MAX_ADDRS * sizeof *found);
        if (!found)
            goto oom;
        for (size_t d = 0; d < ctx->n_disc; d++) {
            per[d] = gwdns_get(ctx->dns, d, found + n_found, GWDNS_MAX_ADDRS);
            n_found += per[d];
        }
    }
    size_t n = n_listed + n_found;
    out->v = n ? sy_calloc(n, sizeof *out->v) : NULL;
    if (n && !out->v)
        goto oom;
    for (size_t i = 0; i < n_listed; i++) {
        const gw_ep_spec_t *sp =
            i < ctx->n_flag_specs ? &ctx->flag_specs[i] : &file->v[i - ctx->n_flag_specs];
        for (size_t j = 0; j < out->n; j++) {
            if (strcmp(out->v[j].host, sp->host) == 0 && out->v[j].port == sp->port) {
                snprintf(err, errlen, "endpoint %s:%d is given twice", sp->host, sp->port);
                sy_free(found);
                gw_ep_list_deinit(out);
                return ST_INVAL;
            }
        }
        out->v[out->n++] = *sp;
    }
    const gwdns_addr_t *a = found;
    for (size_t d = 0; d < ctx->n_disc && found; d++) {
        for (size_t k = 0; k < per[d]; k++, a++) {
            bool dup = false;
            for (size_t j = 0; j < out->n && !dup; j++)
                dup = out->v[j].port == a->port && strcmp(out->v[j].host, a->host) == 0;
            if (!dup)
                gw_disc_spec_endpoint(&ctx->disc[d], a->host, a->port, &out->v[out->n++]);
        }
    }
    sy_free(found);
    return ST_OK;
oom:
    sy_free(found);
    gw_ep_list_deinit(out);
    snprintf(err, errlen, "out of memory");
    return ST_NOMEM;
}

typedef struct apply_counts {
    size_t kept, added, removed, failed;
} apply_counts_t;

/* Makes the table match want (borrowed): keeps endpoints whose spec is unchanged (and their
 * state), drains the ones no longer wanted (tick removes them once their in-flight requests
 * finish), adds new ones. Used by SIGHUP and by discovery updates. */
static int apply_wanted(gw_ctx_t *ctx, const gw_ep_list_t *want, apply_counts_t *c)
{
    char err[512];
    memset(c, 0, sizeof *c);
    bool *matched = sy_calloc(want->n ? want->n : 1, sizeof *matched);
    if (!matched)
        return ST_NOMEM;
    for (size_t i = 0; i < ctx->table.n; i++) {
        if (!ctx->table.eps[i])
            continue;
        bool found = false;
        for (size_t j = 0; j < want->n && !found; j++)
            if (!matched[j] && gw_ep_spec_equal(ctx->spec[i], &want->v[j]))
                found = matched[j] = true;
        if (found) {
            ctx->table.draining[i] = false; /* also takes back one that was draining */
            c->kept++;
        } else if (!ctx->table.draining[i]) {
            ctx->table.draining[i] = true;
            c->removed++;
            sy_info("gateway.endpoint_draining", "endpoint=%s inflight=%u", ctx->table.eps[i]->name,
                    ctx->table.eps[i]->inflight_requests);
        }
    }
    for (size_t j = 0; j < want->n; j++) {
        if (matched[j])
            continue;
        if (ep_add(ctx, &want->v[j], err, sizeof err) == ST_OK) {
            c->added++;
            sy_info("gateway.endpoint_added", "endpoint=%s:%d", want->v[j].host, want->v[j].port);
        } else {
            c->failed++;
            sy_error("gateway.endpoint_add_failed", "error=\"%s\"", err);
        }
    }
    sy_free(matched);
    models_refresh(ctx);
    return ST_OK;
}

/* SIGHUP: re-reads --endpoints-file and applies the wanted set. A config error keeps the current
 * set. The file's `discovery:` entries are read at start only. */
static void reload(gw_ctx_t *ctx)
{
    if (!ctx->endpoints_file) {
        if (!ctx->tls && !ctx->gov) /* SIGHUP also re-reads the certificate, keys, guardrails */
            sy_warn("gateway.reload_skipped", "msg=\"SIGHUP without --endpoints-file\"");
        return;
    }
    char err[512];
    gw_ep_list_t file, want = {0};
    int rc = gw_ep_list_load_file(ctx->endpoints_file, &file, err, sizeof err);
    if (rc == ST_OK)
        rc = wanted_specs(ctx, &file, &want, err, sizeof err);
    if (rc == ST_OK && want.n == 0 && ctx->n_disc == 0) {
        snprintf(err, sizeof err, "no endpoints left");
        rc = ST_INVAL;
    }
    if (rc != ST_OK) {
        sy_error("gateway.reload_failed", "file=\"%s\" error=\"%s\" kept=%zu", ctx->endpoints_file,
                 err, ctx->table.n);
        gw_ep_list_deinit(&file);
        gw_ep_list_deinit(&want);
        return;
    }
    bool disc_same = file.n_disc == ctx->file.n_disc;
    for (size_t i = 0; disc_same && i < file.n_disc; i++)
        disc_same = gw_disc_spec_equal(&file.disc[i], &ctx->file.disc[i]);
    if (!disc_same)
        sy_warn("gateway.reload_discovery_ignored",
                "file=\"%s\" msg=\"discovery entries changed; they take effect on restart\"",
                ctx->endpoints_file);
    gw_ep_list_t old = ctx->file;
    ctx->file = file;
    ctx->file.disc = old.disc; /* the running discovery entries stay */
    ctx->file.n_disc = old.n_disc;
    old.disc = file.disc;
    gw_ep_list_deinit(&old);
    apply_counts_t c;
    if (apply_wanted(ctx, &want, &c) != ST_OK)
        sy_error("gateway.reload_failed", "file=\"%s\" error=\"out of memory\"",
                 ctx->endpoints_file);
    else
        sy_info("gateway.reload", "file=\"%s\" kept=%zu added=%zu removed=%zu failed=%zu",
                ctx->endpoints_file, c.kept, c.added, c.removed, c.failed);
    gw_ep_list_deinit(&want);
}

/* SIGHUP with --tls-cert: re-reads the certificate and key; new client connections get the new
 * pair, open ones keep theirs. A bad pair keeps the running one. */
static void tls_reload(gw_ctx_t *ctx)
{
    char err[512], desc[512];
    int rc = htls_server_reload(ctx->tls, NULL, NULL, err, sizeof err);
    htls_server_describe(ctx->tls, desc, sizeof desc);
    if (rc != ST_OK)
        sy_error("gateway.tls_reload_failed", "error=\"%s\" kept_%s", err, desc);
    else
        sy_info("gateway.tls_reload", "%s", desc);
}

/* --admin-port given: the client listener does not serve /metrics. */
static void on_client_request(http_req_t *req, void *udata)
{
    gw_ctx_t *ctx = udata;
    if (sy_slice_eq(http_req_path(req), "/metrics")) {
        http_req_respond_error(req, 404, "NotFoundError", "Not Found", NULL);
        return;
    }
    gw_proxy_on_request(req, ctx->proxy);
}

/* The admin listener: /metrics and /health (answered by the proxy), nothing else. */
static void on_admin_request(http_req_t *req, void *udata)
{
    gw_ctx_t *ctx = udata;
    sy_slice_t path = http_req_path(req);
    if (sy_slice_eq(path, "/metrics") || sy_slice_eq(path, "/health")) {
        gw_proxy_on_request(req, ctx->proxy);
        return;
    }
    http_req_respond_error(req, 404, "NotFoundError", "Not Found", NULL);
}

/* Discovery (loop thread, from gwdns' ev_async): a target's set changed; apply the wanted set. */
static void on_discovery(void *udata)
{
    gw_ctx_t *ctx = udata;
    if (ctx->draining)
        return;
    char err[512];
    gw_ep_list_t want;
    apply_counts_t c = {0};
    int rc = wanted_specs(ctx, &ctx->file, &want, err, sizeof err);
    if (rc == ST_OK)
        rc = apply_wanted(ctx, &want, &c);
    gw_ep_list_deinit(&want);
    if (rc != ST_OK)
        sy_error("gateway.discovery_apply_failed", "error=\"%s\"", st_str(rc));
    else if (c.added || c.removed || c.failed)
        sy_info("gateway.discovery_applied", "kept=%zu added=%zu removed=%zu failed=%zu", c.kept,
                c.added, c.removed, c.failed);
}

/* ------------------------------------------------------------------------------------------ */
/* periodic work and metrics                                                                   */

static void tick(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    gw_ctx_t *ctx = udata;
    uint64_t now = ev_now_ms(loop);
    for (size_t i = 0; i < ctx->table.n; i++) {
        gw_endpoint_t *ep = ctx->table.eps[i];
        if (!ep)
            continue;
        if (ctx->table.draining[i] && ep->inflight_requests == 0) {
            sy_info("gateway.endpoint_removed", "endpoint=%s id=%zu", ep->name, i);
            ep_remove(ctx, (uint32_t)i);
            continue;
        }
        if (ctx->kvsub)
            ep->kv_index_stale = kvsub_is_stale(ctx->kvsub, ep->id);
        if (ctx->aidx && ep->m.num_blocks && ctx->approx_chunk_chars)
            aidx_set_capacity(ctx->aidx, ep->id,
                              (size_t)ep->m.num_blocks *
                                  (ep->m.block_size ? ep->m.block_size : 16) * 4 /
                                  ctx->approx_chunk_chars);
    }
    if (now >= ctx->next_models_ms) {
        models_refresh(ctx);
        ctx->next_models_ms = now + GW_MODELS_REFRESH_MS;
    }
    if (!ctx->draining)
        gwpar_tick(ctx->par, &ctx->table, now); /* probes subscribed endpoints once models known */
    if (ctx->draining) {
        size_t inflight = gw_proxy_inflight(ctx->proxy);
        if (inflight == 0 || now >= ctx->drain_deadline_ms) {
            if (inflight)
                sy_warn("gateway.drain_timeout", "closing=%zu", inflight);
            else
                sy_info("gateway.drained", "msg=\"all requests finished\"");
            ev_stop(loop);
            return;
        }
    }
    ev_timer_add(loop, GW_TICK_MS, tick, ctx);
}

static void collect(void *udata)
{
    gw_ctx_t *ctx = udata;
    for (size_t i = 0; i < ctx->table.n; i++) {
        gw_endpoint_t *ep = ctx->table.eps[i];
        if (!ep)
            continue;
        const char *lv[] = {ep->name};
        mx_series_t *s = mx_series_get(ctx->f_ep_healthy, lv, 1);
        if (s)
            mx_gauge_set(s, ep->healthy && !ep->ejected ? 1 : 0);
        s = mx_series_get(ctx->f_ep_inflight, lv, 1);
        if (s)
            mx_gauge_set(s, ep->inflight_requests);
        s = mx_series_get(ctx->f_ep_prefill, lv, 1);
        if (s)
            mx_gauge_set(s, (double)ep->inflight_prefill_tokens);
        kvsub_stats_t st;
        if (ctx->kvsub && kvsub_get_stats(ctx->kvsub, ep->id, &st) == ST_OK) {
            if (st.have_seq && (s = mx_series_get(ctx->f_ep_lag, lv, 1)))
                mx_gauge_set(s, st.last_recv_unix - st.last_batch_ts);
            /* cumulative counts from the subscriber's snapshot, as gauges */
            const struct {
                const char *kind;
                uint64_t v;
            } kv[] = {{"messages", st.messages},
                      {"blocks_stored", st.blocks_stored},
                      {"blocks_removed", st.blocks_removed},
                      {"decode_errors", st.decode_errors},
                      {"sequence_gaps", st.gaps},
                      {"hash_parity_match", st.parity_matches},
                      {"hash_parity_mismatch", st.parity_mismatches}};
            for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++) {
                const char *lk[] = {ep->name, kv[k].kind};
                if ((s = mx_series_get(ctx->f_kv, lk, 2)))
                    mx_gauge_set(s, (double)kv[k].v);
            }
        }
        if (ctx->ccfg.max_conns_per_upstream) {
            http_upstream_stats_t us;
            http_upstream_stats(ctx->table.ups[ep->id], &us);
            const struct {
                const char *kind;
                double v;
            } q[] = {{"busy_connections", (double)us.busy},
                     {"waiting", (double)us.queued},
                     {"waited_total", (double)us.queued_total},
                     {"timeouts", (double)us.queue_timeouts},
                     {"full", (double)us.queue_full}};
            for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
                const char *lk[] = {ep->name, q[k].kind};
                if ((s = mx_series_get(ctx->f_ep_queue, lk, 2)))
                    mx_gauge_set(s, q[k].v);
            }
        }
    }
    const char *kind = "precise";
    mx_series_t *s = mx_series_get(ctx->f_index, &kind, 1);
    if (s && ctx->pidx)
        mx_gauge_set(s, (double)pidx_num_entries(ctx->pidx));
    kind = "approximate";
    s = mx_series_get(ctx->f_index, &kind, 1);
    if (s && ctx->aidx)
        mx_gauge_set(s, (double)aidx_num_entries(ctx->aidx));
}

static void metrics_init(gw_ctx_t *ctx)
{
    static const char *l_ep[] = {"endpoint"};
    static const char *l_kind[] = {"index"};
    ctx->f_ep_healthy =
        mx_family_create(ctx->reg, MX_GAUGE, "switchyard_gateway_endpoint_up",
                         "1 when the endpoint is healthy and not ejected.", l_ep, 1, NULL, 0);
    ctx->f_ep_inflight =
        mx_family_create(ctx->reg, MX_GAUGE, "switchyard_gateway_endpoint_inflight_requests",
                         "Requests the gateway has in flight on the endpoint.", l_ep, 1, NULL, 0);
    ctx->f_ep_prefill = mx_family_create(
        ctx->reg, MX_GAUGE, "switchyard_gateway_endpoint_inflight_prefill_tokens",
        "Prompt tokens not expected in the endpoint's cache, of its in-flight requests still "
        "waiting for their first token (prefill-load-scorer).",
        l_ep, 1, NULL, 0);
    ctx->f_ep_lag = mx_family_create(ctx->reg, MX_GAUGE, "switchyard_gateway_kv_event_lag_seconds",
                                     "Arrival time minus the engine timestamp of the last KV "
                                     "event batch.",
                                     l_ep, 1, NULL, 0);
    static const char *l_kv[] = {"endpoint", "kind"};
    ctx->f_kv = mx_family_create(
        ctx->reg, MX_GAUGE, "switchyard_gateway_kv_events",
        "KV-event subscriber counts per endpoint since start: messages, blocks stored/removed, "
        "decode errors, sequence gaps, and first-block hash-parity checks (a mismatch means the "
        "gateway and the engine disagree on PYTHONHASHSEED or --block-size).",
        l_kv, 2, NULL, 0);
    ctx->f_ep_queue = mx_family_create(
        ctx->reg, MX_GAUGE, "switchyard_gateway_endpoint_queue",
        "With --max-upstream-conns: connections carrying a request now (busy_connections), "
        "requests waiting for one now (waiting), and since start: requests that had to wait "
        "(waited_total), waited past --upstream-queue-timeout-ms (timeouts), found the queue "
        "full (full).",
        l_kv, 2, NULL, 0);
    ctx->f_index = mx_family_create(ctx->reg, MX_GAUGE, "switchyard_gateway_index_entries",
                                    "Entries held by the prefix indexes.", l_kind, 1, NULL, 0);
    mx_registry_on_collect(ctx->reg, collect, ctx);
    sy_proc_metrics_register(ctx->reg);
}

/* SIGHUP with --api-keys / --guardrails: re-reads them; a bad file keeps its old version. */
static void gov_reload(gw_ctx_t *ctx)
{
    char err[512];
    if (gwg_reload(ctx->gov, (int64_t)sy_mono_ns(), err, sizeof err) != ST_OK)
        sy_error("gateway.governance_reload_failed", "error=\"%s\" kept_old=true", err);
    else
        sy_info("gateway.governance_reload", "ok=true");
}

/* The --audit-* / --api-keys / --guardrails options, as given on the command line. */
typedef struct gov_opts {
    const char *api_keys, *guardrails, *audit_log, *fsync, *on_error, *prompt, *response;
    uint64_t group_ms, rotate_bytes, keep;
} gov_opts_t;

static int content_mode(const char *s, gwg_content_t *out)
{
    if (strcmp(s, "off") == 0)
        *out = GWG_CONTENT_OFF;
    else if (strcmp(s, "redacted") == 0)
        *out = GWG_CONTENT_REDACTED;
    else if (strcmp(s, "full") == 0)
        *out = GWG_CONTENT_FULL;
    else
        return ST_INVAL;
    return ST_OK;
}

/* Fills cfg from o. ST_OK, or ST_INVAL with err naming the bad option. */
static int gov_config(const gov_opts_t *o, gwg_config_t *cfg, char *err, size_t errlen)
{
    gwg_config_default(cfg);
    cfg->api_keys = o->api_keys;
    cfg->guardrails = o->guardrails;
    cfg->audit_log = o->audit_log;
    if (strcmp(o->fsync, "each") == 0)
        cfg->audit_fsync = GAUD_FSYNC_EACH;
    else if (strcmp(o->fsync, "group") == 0)
        cfg->audit_fsync = GAUD_FSYNC_GROUP;
    else if (strcmp(o->fsync, "none") == 0)
        cfg->audit_fsync = GAUD_FSYNC_NONE;
    else
        return snprintf(err, errlen, "--audit-fsync: want each, group or none"), ST_INVAL;
    if (strcmp(o->on_error, "closed") == 0)
        cfg->audit_fail = GAUD_FAIL_CLOSED;
    else if (strcmp(o->on_error, "open") == 0)
        cfg->audit_fail = GAUD_FAIL_OPEN;
    else
        return snprintf(err, errlen, "--audit-on-error: want closed or open"), ST_INVAL;
    if (content_mode(o->prompt, &cfg->audit_prompt) != ST_OK ||
        content_mode(o->response, &cfg->audit_response) != ST_OK)
        return snprintf(err, errlen, "--audit-prompt/--audit-response: want off, redacted or full"),
               ST_INVAL;
    if (o->group_ms == 0 || o->group_ms > 60000 || o->keep > 100000)
        return snprintf(err, errlen, "--audit-group-ms 1..60000, --audit-keep <= 100000"), ST_INVAL;
    cfg->audit_group_ms = (unsigned)o->group_ms;
    cfg->audit_rotate_bytes = o->rotate_bytes;
    cfg->audit_keep = (unsigned)o->keep;
    return ST_OK;
}

static void on_signal(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    (void)events;
    gw_ctx_t *ctx = udata;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            if (!ctx->draining && ctx->tls)
                tls_reload(ctx);
            if (!ctx->draining)
                reload(ctx);
            if (!ctx->draining && ctx->gov)
                gov_reload(ctx);
            continue;
        }
        if (ctx->draining) {
            ev_stop(loop);
            return;
        }
        ctx->draining = true;
        sy_info("gateway.draining", "signo=%u from_pid=%u inflight=%zu", si.ssi_signo, si.ssi_pid,
                gw_proxy_inflight(ctx->proxy));
        gw_proxy_set_draining(ctx->proxy, true);
        http_server_stop_accepting(ctx->srv);
        ctx->drain_deadline_ms = ev_now_ms(loop) + (uint64_t)(ctx->drain_timeout * 1000.0);
    }
}

/* ------------------------------------------------------------------------------------------ */

int gateway_main(int argc, char **argv)
{
    const char *host = "0.0.0.0", *scheduler = "default", *config = NULL, *log_level = NULL;
    const char *tokenizer = "builtin", *chat_template = "chatml", *endpoints_file = NULL;
    const char *tls_cert = NULL, *tls_key = NULL, *upstream_ca = NULL, *admin_host = "127.0.0.1";
    uint64_t admin_port = 0;
    gov_opts_t go = {.fsync = "group",
                     .on_error = "closed",
                     .prompt = "redacted",
                     .response = "redacted",
                     .group_ms = 10};
    uint64_t port = 8080, block_size = 16, max_retries = 2, eject_after = 3;
    uint64_t scrape_ms = 50, staleness_ms = 1000, health_ms = 1000, index_blocks = 4000000;
    uint64_t max_body = 32u << 20, max_conns = 100000;
    uint64_t up_conns = 0, up_queue = 4096, up_queue_ms = 30000;
    double drain_timeout = 30;
    bool debug_scores = false;
    /* --endpoint is repeatable: collected here, the rest goes to cli_parse */
    const char *endpoint_args[GW_MAX_SPECS], *discover_args[GW_MAX_DISC], *dns_server = NULL;
    size_t n_endpoint_args = 0, n_discover_args = 0;
    char **rest = sy_calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    if (!rest)
        return 1;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) {
            if (n_endpoint_args < GW_MAX_SPECS)
                endpoint_args[n_endpoint_args++] = argv[++i];
            continue;
        }
        if (i > 0 && strncmp(argv[i], "--endpoint=", 11) == 0) {
            if (n_endpoint_args < GW_MAX_SPECS)
                endpoint_args[n_endpoint_args++] = argv[i] + 11;
            continue;
        }
        if (i > 0 && strcmp(argv[i], "--discover") == 0 && i + 1 < argc) {
            if (n_discover_args < GW_MAX_DISC)
                discover_args[n_discover_args++] = argv[++i];
            continue;
        }
        if (i > 0 && strncmp(argv[i], "--discover=", 11) == 0) {
            if (n_discover_args < GW_MAX_DISC)
                discover_args[n_discover_args++] = argv[i] + 11;
            continue;
        }
        rest[n_rest++] = argv[i];
    }
    const cli_opt_t opts[] = {
        {"host", "HOST", CLI_STRING, &host, "address to listen on", "0.0.0.0"},
        {"port", "PORT", CLI_UINT, &port, "HTTP port", "8080"},
        {"tls-cert", "FILE", CLI_STRING, &tls_cert,
         "serve clients over TLS (HTTP/1.1) with this PEM certificate (leaf first, then its "
         "chain); needs --tls-key; both are re-read on SIGHUP",
         NULL},
        {"tls-key", "FILE", CLI_STRING, &tls_key, "the PEM private key of --tls-cert", NULL},
        {"upstream-tls-ca", "FILE", CLI_STRING, &upstream_ca,
         "CA certificates (PEM) that https:// endpoints are verified against (default: the "
         "system store)",
         NULL},
        {"admin-port", "PORT", CLI_UINT, &admin_port,
         "serve /metrics (and /health) on this separate plain-HTTP port; the client port then "
         "answers /metrics with 404",
         NULL},
        {"admin-address", "ADDR", CLI_STRING, &admin_host, "address of the admin listener",
         "127.0.0.1"},
        {"endpoint", "URL[,kv-events=ZMQ][,replay=ZMQ][,role=R][,model=M]", CLI_STRING, NULL,
         "a model server (repeat for each): http://, or https:// for TLS (see --upstream-tls-ca); "
         "models are read from its /v1/models",
         NULL},
        {"endpoints-file", "FILE", CLI_STRING, &endpoints_file,
         "YAML list of endpoints (url, models, role, kv_events, replay, metrics_path), re-read "
         "on SIGHUP, and of discovery targets (target, kv_events_port, role, models, "
         "interval_ms)",
         NULL},
        {"discover", "TARGET[,kv-events-port=N][,role=R][,model=M][,interval=MS]", CLI_STRING, NULL,
         "find endpoints in DNS (repeatable): dns://NAME:PORT (every A/AAAA address) or "
         "srv://_http._tcp.NAME (every SRV record), re-resolved every interval (default 5000 ms)",
         NULL},
        {"dns-server", "IPV4:PORT", CLI_STRING, &dns_server,
         "send discovery queries to this DNS server instead of the system resolver", NULL},
        {"scheduler", "NAME", CLI_STRING, &scheduler,
         "built-in scheduler: round-robin, random, load, prefix-approx, prefix-precise, default, "
         "pd (prefill/decode disaggregation, deploy/scheduler/pd.yaml)",
         "default"},
        {"config", "FILE", CLI_STRING, &config,
         "EndpointPickerConfig YAML file (overrides --scheduler)", NULL},
        {"block-size", "N", CLI_UINT, &block_size, "the engines' --block-size (precise hashes)",
         "16"},
        {"tokenizer", "NAME|FILE", CLI_STRING, &tokenizer,
         "tokenizer for validation and precise hashes: builtin (the sim engine's), none, or a "
         "GGUF file whose tokenizer.ggml.* metadata the engines' model uses",
         "builtin"},
        {"chat-template", "NAME", CLI_STRING, &chat_template, "chat template of the engines",
         "chatml"},
        {"index-blocks", "N", CLI_UINT, &index_blocks, "precise index capacity in blocks",
         "4000000"},
        {"scrape-interval-ms", "MS", CLI_UINT, &scrape_ms, "metrics scraping period", "50"},
        {"staleness-ms", "MS", CLI_UINT, &staleness_ms, "scraped metrics older than this are stale",
         "1000"},
        {"health-interval-ms", "MS", CLI_UINT, &health_ms, "health probe period", "1000"},
        {"max-retries", "N", CLI_UINT, &max_retries,
         "other endpoints tried before the first response byte", "2"},
        {"eject-after", "N", CLI_UINT, &eject_after,
         "consecutive failures before an endpoint is ejected", "3"},
        {"max-upstream-conns", "N", CLI_UINT, &up_conns,
         "requests each endpoint is sent at once (one connection each); more wait in the "
         "gateway in arrival order, so an overloaded server's own queue stays short (0 = no "
         "limit)",
         "0"},
        {"max-queued-per-endpoint", "N", CLI_UINT, &up_queue,
         "requests that may wait for one endpoint at --max-upstream-conns; beyond it they go to "
         "another endpoint or get 503",
         "4096"},
        {"upstream-queue-timeout-ms", "MS", CLI_UINT, &up_queue_ms,
         "longest wait at --max-upstream-conns before another endpoint is tried (or 503)", "30000"},
        {"max-body-bytes", "N", CLI_UINT, &max_body, "largest request body accepted", "33554432"},
        {"max-connections", "N", CLI_UINT, &max_conns,
         "client connections held at once (accepting pauses at the limit)", "100000"},
        {"debug-scores", NULL, CLI_FLAG, &debug_scores,
         "add the scheduler's decision as an x-switchyard-decision response header", NULL},
        {"drain-timeout", "SECONDS", CLI_DOUBLE, &drain_timeout,
         "on SIGTERM, time given to in-flight requests", "30"},
        {"api-keys", "FILE", CLI_STRING, &go.api_keys,
         "tenants and the SHA-256 of their API keys (YAML, see deploy/tenants/example.yaml): "
         "every /v1/ route then needs Authorization: Bearer KEY; per-tenant models, rate limits; "
         "re-read on SIGHUP",
         NULL},
        {"guardrails", "FILE", CLI_STRING, &go.guardrails,
         "guardrails before inference (YAML, see deploy/guardrails/example.yaml): prompt and "
         "max_tokens limits, deny patterns, PII block/mask/redact, output checks, guard hook; "
         "re-read on SIGHUP",
         NULL},
        {"audit-log", "FILE", CLI_STRING, &go.audit_log,
         "append one hash-chained JSON record per request (verify with switchyard audit verify)",
         NULL},
        {"audit-fsync", "each|group|none", CLI_STRING, &go.fsync,
         "audit durability: fdatasync every write batch, at most every --audit-group-ms, or never",
         "group"},
        {"audit-group-ms", "MS", CLI_UINT, &go.group_ms, "grouped fdatasync interval", "10"},
        {"audit-rotate-bytes", "N", CLI_UINT, &go.rotate_bytes,
         "rotate the audit log to FILE.<first seq> at this size (0 = never)", "0"},
        {"audit-keep", "N", CLI_UINT, &go.keep, "rotated audit files kept (0 = all)", "0"},
        {"audit-on-error", "closed|open", CLI_STRING, &go.on_error,
         "when the audit log cannot be written: refuse requests (503) or go on with an alarm "
         "metric",
         "closed"},
        {"audit-prompt", "off|redacted|full", CLI_STRING, &go.prompt,
         "prompt text in audit records, for tenants without their own audit_prompt", "redacted"},
        {"audit-response", "off|redacted|full", CLI_STRING, &go.response,
         "response text in audit records, for tenants without their own audit_response",
         "redacted"},
        {"log-level", "LEVEL", CLI_STRING, &log_level, "debug, info, warn or error", "info"},
    };
    /* the --endpoint and --discover rows document the options; they were consumed above */
    cli_opt_t parse_opts[sizeof opts / sizeof opts[0]];
    size_t n_parse = 0;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].dest)
            parse_opts[n_parse++] = opts[i];
    cli_spec_t spec = {
        .prog = "switchyard gateway",
        .summary = "The LLM-aware inference gateway: an OpenAI-compatible proxy that picks, for "
                   "every request, the model server that already holds its prompt prefix in KV "
                   "cache and is not overloaded. Env PYTHONHASHSEED must match the engines' for "
                   "precise prefix hashes.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    char err[512];
    int exit_code = 2;
    spec.opts = parse_opts;
    spec.n_opts = n_parse;
    int rc = cli_parse(&spec, n_rest, rest, NULL, NULL, err, sizeof err);
    sy_free(rest);
    if (rc == CLI_HELP) {
        spec.opts = opts;
        spec.n_opts = sizeof opts / sizeof opts[0];
        sy_buf_t b = SY_BUF_INIT;
        cli_usage(&spec, &b);
        fputs(b.data ? b.data : "", stdout);
        sy_buf_deinit(&b);
        return 0;
    }
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gateway: %s (see --help)\n", err);
        return 2;
    }
    if (log_level) {
        int lvl = sy_log_level_parse(log_level);
        if (lvl < 0) {
            fprintf(stderr, "switchyard gateway: --log-level: unknown level '%s'\n", log_level);
            return 2;
        }
        sy_log_set_level((sy_log_level_t)lvl);
    }
    if (n_endpoint_args == 0 && !endpoints_file && n_discover_args == 0) {
        fprintf(stderr,
                "switchyard gateway: no --endpoint, --discover or --endpoints-file given\n");
        return 2;
    }
    if (dns_server && gwdns_server_check(dns_server, err, sizeof err) != ST_OK) {
        fprintf(stderr, "switchyard gateway: %s\n", err);
        return 2;
    }
    gwg_config_t gcfg;
    if (gov_config(&go, &gcfg, err, sizeof err) != ST_OK) {
        fprintf(stderr, "switchyard gateway: %s\n", err);
        return 2;
    }
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "switchyard gateway: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (port > 65535 || admin_port > 65535 || block_size == 0 || block_size > 1024 ||
        n_endpoint_args > GW_MAX_SPECS || up_conns > 1000000 || up_queue == 0 ||
        up_queue > 10000000 || up_queue_ms == 0 || up_queue_ms > UINT32_MAX) {
        fprintf(stderr, "switchyard gateway: an option is out of range\n");
        return 2;
    }
    gw_ep_spec_t *specs = sy_calloc(n_endpoint_args ? n_endpoint_args : 1, sizeof *specs);
    if (!specs)
        return 1;
    for (size_t i = 0; i < n_endpoint_args; i++) {
        if (gw_ep_spec_parse_arg(endpoint_args[i], &specs[i], err, sizeof err) != ST_OK) {
            fprintf(stderr, "switchyard gateway: %s\n", err);
            sy_free(specs);
            return 2;
        }
    }

    gw_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.sigfd = -1;
    ctx.flag_specs = specs;
    ctx.n_flag_specs = n_endpoint_args;
    ctx.endpoints_file = endpoints_file;
    gw_ep_list_t want = {0};
    ctx.disc = sy_calloc(GW_MAX_DISC, sizeof *ctx.disc);
    if (!ctx.disc) {
        sy_free(specs);
        return 1;
    }
    ctx.drain_timeout = drain_timeout;
    ctx.block_size = (uint32_t)block_size;
    ctx.upstream_ca = upstream_ca;
    tok_t *tok = NULL;
    sigset_t mask;
    sy_proc_tune_malloc();
    sy_proc_block_signals(&mask, true); /* SIGHUP reloads --endpoints-file */

    rc = config ? gws_config_load_file(config, &ctx.sched, err, sizeof err)
                : gws_config_builtin(scheduler, &ctx.sched, err, sizeof err);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gateway: scheduler %s: %s\n", config ? config : scheduler, err);
        goto fail;
    }
    gws_approx_params_t ap;
    gws_sched_approx_params(ctx.sched, &ap);
    ctx.approx_chunk_chars = ap.chunk_chars;
    unsigned needs = gws_sched_needs(ctx.sched);
    rc = endpoints_file ? gw_ep_list_load_file(endpoints_file, &ctx.file, err, sizeof err) : ST_OK;
    for (size_t i = 0; rc == ST_OK && i < n_discover_args + ctx.file.n_disc; i++) {
        if (ctx.n_disc == GW_MAX_DISC) {
            snprintf(err, sizeof err, "more than %d discovery targets", GW_MAX_DISC);
            rc = ST_INVAL;
        } else if (i < n_discover_args) {
            rc = gw_disc_spec_parse_arg(discover_args[i], &ctx.disc[ctx.n_disc], err, sizeof err);
        } else {
            ctx.disc[ctx.n_disc] = ctx.file.disc[i - n_discover_args];
        }
        for (size_t j = 0; rc == ST_OK && j < ctx.n_disc; j++) {
            if (strcmp(ctx.disc[j].target, ctx.disc[ctx.n_disc].target) == 0) {
                snprintf(err, sizeof err, "discovery target %s is given twice", ctx.disc[j].target);
                rc = ST_INVAL;
            }
        }
        ctx.n_disc += rc == ST_OK;
    }
    if (rc == ST_OK)
        rc = wanted_specs(&ctx, &ctx.file, &want, err, sizeof err);
    if (rc == ST_OK && want.n == 0 && ctx.n_disc == 0) {
        snprintf(err, sizeof err, "no endpoints");
        rc = ST_INVAL;
    }
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gateway: %s\n", err);
        goto fail;
    }
    /* a reloadable file may add KV-event endpoints later: subscribe-ready from the start */
    bool any_events = endpoints_file != NULL;
    for (size_t i = 0; i < ctx.n_disc; i++)
        any_events |= ctx.disc[i].kv_events_port != 0;
    for (size_t i = 0; i < want.n; i++)
        any_events |= want.v[i].kv_events[0] != '\0';

    ctx.loop = ev_loop_create();
    ctx.reg = mx_registry_create();
    http_client_config_default(&ctx.ccfg);
    ctx.ccfg.max_conns_per_upstream = (size_t)up_conns;
    ctx.ccfg.max_queued_per_upstream = (size_t)up_queue;
    ctx.ccfg.queue_timeout_ms = (uint32_t)up_queue_ms;
    ctx.client = ctx.loop ? http_client_create(ctx.loop, &ctx.ccfg) : NULL;
    ctx.aidx = aidx_create(GW_MAX_ENDPOINTS, ap.lru_capacity);
    if (!ctx.loop || !ctx.reg || !ctx.client || !ctx.aidx)
        goto oom;
    if (any_events) {
        ctx.pidx = pidx_create((size_t)index_blocks, GW_MAX_ENDPOINTS);
        if (!ctx.pidx)
            goto oom;
        kvsub_config_t kc;
        kvsub_config_default(&kc);
        kc.hash_seed = getenv("PYTHONHASHSEED");
        kc.block_size = (uint32_t)block_size;
        int st = ST_OK;
        ctx.kvsub = kvsub_create(ctx.pidx, &kc, &st);
        if (!ctx.kvsub) {
            fprintf(stderr, "switchyard gateway: KV-event subscriber: %s\n", st_str(st));
            goto fail;
        }
    }
    if (strcmp(tokenizer, "builtin") == 0) {
        tok = tok_byte_create();
        if (!tok)
            goto oom;
    } else if (strcmp(tokenizer, "none") != 0) {
        /* a GGUF file (a model or a vocab-only file): the model's own tokenizer, so precise
         * hashes match engines serving that model; the file is closed once it is copied */
        gguf_t *g = NULL;
        char gerr[256];
        int grc = gguf_open(tokenizer, &g, gerr, sizeof gerr);
        if (grc == ST_OK) {
            tok = tok_gguf_create(g, gerr, sizeof gerr);
            gguf_close(g);
        }
        if (!tok) {
            fprintf(stderr, "switchyard gateway: --tokenizer %s: %s\n", tokenizer, gerr);
            goto fail;
        }
        sy_info("gateway.tokenizer", "file=\"%s\" vocab=%d bos=%d", tokenizer, tok_vocab_size(tok),
                tok_bos(tok));
    }
    const chat_tmpl_t *tmpl = chat_tmpl_find(chat_template);
    if (!tmpl) {
        fprintf(stderr, "switchyard gateway: --chat-template: unknown '%s' (known: %s)\n",
                chat_template, chat_tmpl_names());
        goto fail;
    }
    gw_scraper_config_default(&ctx.scfg);
    ctx.scfg.interval_ms = (uint32_t)scrape_ms;
    ctx.scfg.staleness_ms = (uint32_t)staleness_ms;
    ctx.scfg.health_interval_ms = (uint32_t)health_ms;
    for (size_t i = 0; i < want.n; i++) {
        if ((rc = ep_add(&ctx, &want.v[i], err, sizeof err)) != ST_OK) {
            fprintf(stderr, "switchyard gateway: %s\n", err);
            goto fail;
        }
    }

    gw_proxy_config_t pcfg = {
        .table = &ctx.table,
        .sched = ctx.sched,
        .pidx = ctx.pidx,
        .aidx = ctx.aidx,
        .tok = tok,
        .tmpl = tmpl,
        .block_size = (uint32_t)block_size,
        .metrics = ctx.reg,
        .max_retries = (uint32_t)max_retries,
        .eject_after = (uint32_t)eject_after,
        .debug_scores = debug_scores,
        .approx_chunk_chars = ap.chunk_chars,
        .loop = ctx.loop,
    };
    if (go.api_keys || go.guardrails || go.audit_log) {
        gcfg.loop = ctx.loop;
        gcfg.metrics = ctx.reg;
        ctx.gov = gwg_create(&gcfg, (int64_t)sy_mono_ns(), err, sizeof err);
        if (!ctx.gov) {
            fprintf(stderr, "switchyard gateway: %s\n", err);
            exit_code = 2;
            goto cleanup;
        }
        pcfg.gov = ctx.gov;
    }
    kvh_none_hash(getenv("PYTHONHASHSEED"), &pcfg.none_hash);
    ctx.proxy = gw_proxy_create(&pcfg);
    if (!ctx.proxy)
        goto oom;
    for (size_t i = 0; i < ctx.table.n; i++) /* models given in the specs */
        for (size_t m = 0; m < ctx.table.eps[i]->n_models; m++)
            if (gw_proxy_add_model(ctx.proxy, ctx.table.eps[i]->models[m], 0) != ST_OK)
                goto oom;
    metrics_init(&ctx);
    if (ctx.kvsub) {
        gwpar_config_t parc;
        gwpar_config_default(&parc);
        parc.none_hash = pcfg.none_hash;
        parc.hash_seed = getenv("PYTHONHASHSEED");
        parc.block_size = (uint32_t)block_size;
        parc.metrics = ctx.reg;
        int st = ST_OK;
        if (!(ctx.par = gwpar_create(ctx.kvsub, &parc, &st)))
            goto oom;
    }
    http_server_config_t hcfg;
    http_server_config_default(&hcfg);
    hcfg.max_body_bytes = (size_t)max_body;
    hcfg.max_connections = max_conns ? (size_t)max_conns : 1;
    sy_raise_fd_limit();
    if (tls_cert && !(ctx.tls = htls_server_create(tls_cert, tls_key, err, sizeof err))) {
        fprintf(stderr, "switchyard gateway: TLS: %s\n", err);
        goto fail;
    }
    /* without an admin listener the proxy answers every route directly, as before */
    ctx.srv = admin_port ? http_server_create(ctx.loop, &hcfg, on_client_request, &ctx)
                         : http_server_create(ctx.loop, &hcfg, gw_proxy_on_request, ctx.proxy);
    if (!ctx.srv)
        goto oom;
    http_server_set_tls(ctx.srv, ctx.tls);
    rc = http_server_listen(ctx.srv, host, (int)port);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard gateway: cannot listen on %s:%llu: %s\n", host,
                (unsigned long long)port, st_str(rc));
        goto fail;
    }
    if (admin_port) {
        http_server_config_t acfg;
        http_server_config_default(&acfg);
        acfg.max_connections = 1024;
        ctx.admin = http_server_create(ctx.loop, &acfg, on_admin_request, &ctx);
        if (!ctx.admin)
            goto oom;
        rc = http_server_listen(ctx.admin, admin_host, (int)admin_port);
        if (rc != ST_OK) {
            fprintf(stderr, "switchyard gateway: cannot listen on %s:%llu (admin): %s\n",
                    admin_host, (unsigned long long)admin_port, st_str(rc));
            goto fail;
        }
    }
    if (ctx.tls) {
        char desc[512];
        htls_server_describe(ctx.tls, desc, sizeof desc);
        sy_info("gateway.tls", "cert=\"%s\" %s", tls_cert, desc);
    }
    ctx.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ctx.sigfd < 0 || ev_fd_add(ctx.loop, ctx.sigfd, EV_READ, on_signal, &ctx) != ST_OK)
        goto fail;
    if (ctx.n_disc) { /* resolved on the gwdns thread; changes arrive through on_discovery */
        gwdns_config_t dcfg = {.server = dns_server, .metrics = ctx.reg};
        int st = ST_OK;
        ctx.dns = gwdns_create(ctx.loop, &dcfg, on_discovery, &ctx, &st);
        for (size_t i = 0; ctx.dns && st == ST_OK && i < ctx.n_disc; i++) {
            int ix =
                gwdns_add(ctx.dns, ctx.disc[i].target, ctx.disc[i].interval_ms, err, sizeof err);
            st = ix < 0 ? ix : ST_OK;
        }
        if (!ctx.dns || st != ST_OK || (st = gwdns_start(ctx.dns)) != ST_OK) {
            fprintf(stderr, "switchyard gateway: discovery: %s\n", st_str(st));
            goto fail;
        }
    }
    models_refresh(&ctx);
    gws_pd_config_t pdc;
    ctx.next_models_ms = ev_now_ms(ctx.loop) + GW_MODELS_REFRESH_MS;
    ev_timer_add(ctx.loop, GW_TICK_MS, tick, &ctx);
    sy_info("gateway.start",
            "addr=%s:%d endpoints=%zu discovery=%zu file=%s scheduler=%s precise=%s approx=%s "
            "kv_events=%s block_size=%llu tls=%s admin=%s:%d pd=%s",
            host, http_server_port(ctx.srv), ctx.table.n, ctx.n_disc,
            endpoints_file ? endpoints_file : "none", config ? config : scheduler,
            (needs & GWS_NEEDS_PRECISE) ? "on" : "off", (needs & GWS_NEEDS_APPROX) ? "on" : "off",
            any_events ? "on" : "off", (unsigned long long)block_size, ctx.tls ? "on" : "off",
            ctx.admin ? admin_host : "none", ctx.admin ? http_server_port(ctx.admin) : 0,
            gws_sched_pd(ctx.sched, &pdc) ? "on" : "off");
    ev_run(ctx.loop);
    exit_code = 0;
    goto cleanup;
oom:
    fprintf(stderr, "switchyard gateway: out of memory during start-up\n");
fail:
    exit_code = 1;
cleanup:
    if (ctx.sigfd >= 0) {
        ev_fd_del(ctx.loop, ctx.sigfd);
        close(ctx.sigfd);
    }
    gwdns_destroy(ctx.dns);       /* joins its thread */
    http_server_destroy(ctx.srv); /* client exchanges end: their upstream calls are cancelled */
    http_server_destroy(ctx.admin);
    htls_server_destroy(ctx.tls); /* after the server: its connections were made from it */
    gw_proxy_destroy(ctx.proxy);  /* every exchange ends: its audit record is written */
    gwg_destroy(ctx.gov);         /* flushes and closes the audit log */
    while (ctx.table.n)           /* endpoints first: they unregister from the scrapers and kvsub */
        ep_remove(&ctx, (uint32_t)(ctx.table.n - 1));
    gwpar_destroy(ctx.par);
    for (size_t i = 0; i < ctx.n_scrapers; i++)
        gw_scraper_destroy(ctx.scrapers[i].s);
    kvsub_destroy(ctx.kvsub);
    for (size_t i = 0; i < GW_MAX_ENDPOINTS; i++)
        sy_buf_deinit(&ctx.models_body[i]);
    http_client_destroy(ctx.client);
    http_client_destroy(ctx.tls_client);
    htls_client_destroy(ctx.utls);
    pidx_destroy(ctx.pidx);
    aidx_destroy(ctx.aidx);
    gws_sched_destroy(ctx.sched);
    tok_destroy(tok);
    mx_registry_destroy(ctx.reg);
    ev_loop_destroy(ctx.loop);
    gw_ep_list_deinit(&want);
    gw_ep_list_deinit(&ctx.file);
    sy_free(ctx.disc);
    sy_free(specs);
    return exit_code;
}
