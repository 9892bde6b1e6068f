/*
 * gw_sched.c - the endpoint picker (contract in gw_sched.h).
 *
 * Layout of this file:
 *   1. plugin implementations: filters, scorers (llm-d formulas, research/llm-d.md §2.2),
 *      pickers, each with its directive table and a static const vtable;
 *   2. the registry (config type name -> vtable) and the generic factory;
 *   3. the EndpointPickerConfig loader (libyaml document API; marks give line numbers);
 *   4. the built-in configs: the text of deploy/scheduler/<name>.yaml, embedded verbatim;
 *   5. gws_pick and the decision rendering.
 * Memory: everything is allocated at load (plugin instances, per-endpoint scratch sized to
 * GW_MAX_ENDPOINTS); gws_pick only writes into that scratch. libyaml allocates with libc malloc
 * during load only.
 * Scores are indexed two ways: plugins see candidate positions (ctx.cand[i] is a position in
 * endpoints[]); the decision arrays are indexed by position in endpoints[]; the prefix match
 * counts are indexed by gw_endpoint_t.id (what the indexes key on).
 * Thread-safety: see gw_sched.h (one thread per scheduler).
 */
#include "gateway/gw_sched.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yaml.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define GWS_TIE_EPS 1e-12
#define GWS_SOFTMAX_MAX_K 64

typedef struct gws_profile {
    char name[GWS_NAME_MAX];
    gws_plugin_t *filters[GWS_MAX_FILTERS];
    uint32_t n_filters;
    gws_plugin_t *scorers[GWS_MAX_SCORERS];
    double weights[GWS_MAX_SCORERS];
    uint32_t n_scorers;
    gws_plugin_t *picker; /* never NULL after load (max-score-picker injected) */
} gws_profile_t;

struct gws_sched {
    gws_plugin_t *plugins[GWS_MAX_PLUGINS + 1]; /* owned; +1 for an injected default picker */
    uint32_t n_plugins;
    gws_profile_t profiles[GWS_MAX_PROFILES];
    uint32_t n_profiles;
    unsigned needs;
    gws_pd_config_t pd; /* P/D settings (load_pd) */
    uint64_t rng;
    gws_stats_t stats;
    /* scratch for gws_pick, GW_MAX_ENDPOINTS entries each (scores: GWS_MAX_SCORERS rows) */
    uint32_t *precise_hits; /* by endpoint id */
    uint32_t *approx_hits;  /* by endpoint id */
    uint32_t *cand;         /* candidate positions */
    double *cand_score;     /* by candidate */
    double *cand_total;     /* by candidate */
    uint8_t *is_cand;       /* by position */
    double *total;          /* by position */
    double *score;          /* [GWS_MAX_SCORERS][GW_MAX_ENDPOINTS] by position */
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- RNG (splitmix64) ------------------------------------------------------------------- */

static uint64_t rng_step(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t gws_rng_next(gws_ctx_t *c)
{
    return rng_step(c->rng);
}

double gws_rng_uniform(gws_ctx_t *c)
{
    return ((double)(rng_step(c->rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* ---- filters ---------------------------------------------------------------------------- */

typedef bool (*ep_pred_fn)(const gw_endpoint_t *ep, const void *arg);

/* Keeps the candidates satisfying pred; returns how many were kept. */
static size_t keep_if(gws_ctx_t *c, ep_pred_fn pred, const void *arg)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_cand; i++) {
        if (pred(c->eps[c->cand[i]], arg))
            c->cand[k++] = c->cand[i];
    }
    c->n_cand = k;
    return k;
}

static size_t count_if(const gws_ctx_t *c, ep_pred_fn pred, const void *arg)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_cand; i++)
        k += pred(c->eps[c->cand[i]], arg);
    return k;
}

static bool pred_serves(const gw_endpoint_t *ep, const void *arg)
{
    return gw_endpoint_serves(ep, arg);
}

/* model-filter: endpoints serving the requested model; no model in the request: no opinion. */
static int model_filter(gws_plugin_t *p, gws_ctx_t *c)
{
    const char *m = c->req->model;
    if (m == NULL || m[0] == '\0')
        return ST_DECLINED;
    keep_if(c, pred_serves, m);
    return ST_OK;
}

static bool pred_role(const gw_endpoint_t *ep, const void *arg)
{
    gw_role_t want = *(const gw_role_t *)arg;
    return ep->role == want || ep->role == GW_ROLE_BOTH;
}

/* decode-filter / prefill-filter: by role; `both` passes both. */
static int decode_filter(gws_plugin_t *p, gws_ctx_t *c)
{
    gw_role_t r = GW_ROLE_DECODE;
    keep_if(c, pred_role, &r);
    return ST_OK;
}

static int prefill_filter(gws_plugin_t *p, gws_ctx_t *c)
{
    gw_role_t r = GW_ROLE_PREFILL;
    keep_if(c, pred_role, &r);
    return ST_OK;
}

static bool pred_usable(const gw_endpoint_t *ep, const void *arg)
{
    return ep->healthy && !ep->ejected;
}

static bool pred_fresh(const gw_endpoint_t *ep, const void *arg)
{
    return ep->healthy && !ep->ejected && !ep->metrics_stale;
}

/* health-filter: healthy, not ejected, metrics fresh; if none is fresh, the healthy ones. */
static int health_filter(gws_plugin_t *p, gws_ctx_t *c)
{
    if (count_if(c, pred_fresh, NULL) > 0)
        keep_if(c, pred_fresh, NULL);
    else
        keep_if(c, pred_usable, NULL);
    return ST_OK;
}

typedef struct saturation_filter {
    gws_plugin_t base;
    int64_t queue_depth; /* queueDepthThreshold */
    double kv_util;      /* kvCacheUtilThreshold */
} saturation_filter_t;

static bool pred_unsaturated(const gw_endpoint_t *ep, const void *arg)
{
    const saturation_filter_t *f = arg;
    bool sat =
        ep->m.valid && ep->m.waiting >= (double)f->queue_depth && ep->m.kv_usage >= f->kv_util;
    return !sat;
}

/* saturation-filter (GIE's saturation detector): drops endpoints whose queue and KV usage are
 * both at threshold; when every candidate is saturated, no opinion (keep all). */
static int saturation_filter(gws_plugin_t *p, gws_ctx_t *c)
{
    const saturation_filter_t *f = (const saturation_filter_t *)p;
    if (count_if(c, pred_unsaturated, f) == 0)
        return ST_DECLINED;
    keep_if(c, pred_unsaturated, f);
    return ST_OK;
}

static const gws_param_t saturation_params[] = {
    {"queueDepthThreshold", GWS_P_INT, offsetof(saturation_filter_t, queue_depth), "5"},
    {"kvCacheUtilThreshold", GWS_P_DOUBLE, offsetof(saturation_filter_t, kv_util), "0.8"},
};

/* ---- scorers ---------------------------------------------------------------------------- */

static const gw_endpoint_t *cand_ep(const gws_ctx_t *c, size_t i)
{
    return c->eps[c->cand[i]];
}

/* queue-scorer: min-max normalised waiting queue over the candidates; all equal -> 1. */
static void queue_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < c->n_cand; i++) {
        double q = cand_ep(c, i)->m.waiting;
        lo = q < lo ? q : lo;
        hi = q > hi ? q : hi;
    }
    for (size_t i = 0; i < c->n_cand; i++)
        out[i] = hi > lo ? (hi - cand_ep(c, i)->m.waiting) / (hi - lo) : 1.0;
}

/* kv-cache-utilization-scorer: 1 - usage. */
static void kv_util_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    for (size_t i = 0; i < c->n_cand; i++)
        out[i] = 1.0 - cand_ep(c, i)->m.kv_usage;
}

typedef struct prefix_scorer {
    gws_plugin_t base;
    bool guard;         /* hotspotGuard */
    double factor;      /* hotspotFactor */
    double slack;       /* hotspotSlack */
    double penalty;     /* hotspotPenalty */
    int64_t block_size; /* blockSize (tokens), approximate only */
    int64_t max_blocks; /* maxPrefixBlocksToMatch, approximate only */
    int64_t lru_cap;    /* lruCapacityPerServer, approximate only */
    uint64_t fired;     /* decisions where the guard scaled a score */
} prefix_scorer_t;

/* The hot-spot guard (gw_sched.h): among the candidates holding the best prefix score, scales
 * down those whose in-flight requests exceed factor x mean(in-flight of the other healthy
 * candidates) + slack. */
static void hotspot_guard(prefix_scorer_t *ps, gws_ctx_t *c, double *out)
{
    if (!ps->guard || c->n_cand < 2)
        return;
    double best = 0;
    for (size_t i = 0; i < c->n_cand; i++)
        best = out[i] > best ? out[i] : best;
    if (best <= 0)
        return;
    double sum = 0;
    size_t n_healthy = 0;
    for (size_t i = 0; i < c->n_cand; i++) {
        const gw_endpoint_t *ep = cand_ep(c, i);
        if (ep->healthy && !ep->ejected) {
            sum += ep->inflight_requests;
            n_healthy++;
        }
    }
    bool fired = false;
    for (size_t i = 0; i < c->n_cand; i++) {
        if (out[i] < best - GWS_TIE_EPS)
            continue;
        const gw_endpoint_t *ep = cand_ep(c, i);
        double others_sum = sum, others_n = (double)n_healthy;
        if (ep->healthy && !ep->ejected) {
            others_sum -= ep->inflight_requests;
            others_n -= 1;
        }
        if (others_n < 1)
            continue;
        double limit = ps->factor * (others_sum / others_n) + ps->slack;
        if ((double)ep->inflight_requests > limit) {
            out[i] *= ps->penalty;
            fired = true;
        }
    }
    if (fired) {
        ps->fired++;
        c->hotspot = true;
    }
}

static void hits_score(gws_ctx_t *c, const uint32_t *hits, size_t total, double *out)
{
    if (hits == NULL || total == 0)
        return; /* no data: 0 for all (out is pre-zeroed) */
    for (size_t i = 0; i < c->n_cand; i++)
        out[i] = (double)hits[cand_ep(c, i)->id] / (double)total;
}

/* prefix-cache-scorer (approximate): leading chunks matched / chunks in the request. */
static void approx_prefix_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    hits_score(c, c->req->approx_hits, c->req->n_chunk_hashes, out);
    hotspot_guard((prefix_scorer_t *)p, c, out);
}

/* precise-prefix-cache-scorer: consecutive leading blocks held / blocks in the request. */
static void precise_prefix_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    hits_score(c, c->req->precise_hits, c->req->n_block_hashes, out);
    hotspot_guard((prefix_scorer_t *)p, c, out);
}

#define HOTSPOT_PARAMS                                                                             \
    {"hotspotGuard", GWS_P_BOOL, offsetof(prefix_scorer_t, guard), "true"},                        \
        {"hotspotFactor", GWS_P_DOUBLE, offsetof(prefix_scorer_t, factor), "2.0"},                 \
        {"hotspotSlack", GWS_P_DOUBLE, offsetof(prefix_scorer_t, slack), "4"},                     \
    {                                                                                              \
        "hotspotPenalty", GWS_P_DOUBLE, offsetof(prefix_scorer_t, penalty), "0.5"                  \
    }

static const gws_param_t approx_prefix_params[] = {
    HOTSPOT_PARAMS,
    {"blockSize", GWS_P_INT, offsetof(prefix_scorer_t, block_size), "16"},
    {"maxPrefixBlocksToMatch", GWS_P_INT, offsetof(prefix_scorer_t, max_blocks), "256"},
    {"lruCapacityPerServer", GWS_P_INT, offsetof(prefix_scorer_t, lru_cap), "31250"},
};

static const gws_param_t precise_prefix_params[] = {HOTSPOT_PARAMS};

static int prefix_init(gws_plugin_t *p, char *err, size_t errlen)
{
    const prefix_scorer_t *ps = (const prefix_scorer_t *)p;
    if (ps->factor < 0 || ps->slack < 0 || ps->penalty < 0 || ps->penalty > 1) {
        seterr(err, errlen,
               "%s: need hotspotFactor >= 0, hotspotSlack >= 0, 0 <= hotspotPenalty <= 1",
               p->type->name);
        return ST_INVAL;
    }
    if (ps->block_size < 0 || ps->max_blocks < 0 || ps->lru_cap < 0) {
        seterr(err, errlen,
               "%s: blockSize, maxPrefixBlocksToMatch, lruCapacityPerServer must be >= 0",
               p->type->name);
        return ST_INVAL;
    }
    return ST_OK;
}

typedef struct active_request_scorer {
    gws_plugin_t base;
    int64_t idle;    /* idleThreshold */
    double max_busy; /* maxBusyScore */
} active_request_scorer_t;

/* active-request-scorer: in-flight <= idleThreshold -> 1; else (max - n)/max * maxBusyScore,
 * max over the candidates (gateway-tracked in-flight requests, no metric lag). */
static void active_request_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    const active_request_scorer_t *s = (const active_request_scorer_t *)p;
    double max = 0;
    for (size_t i = 0; i < c->n_cand; i++) {
        double n = cand_ep(c, i)->inflight_requests;
        max = n > max ? n : max;
    }
    for (size_t i = 0; i < c->n_cand; i++) {
        double n = cand_ep(c, i)->inflight_requests;
        out[i] = n <= (double)s->idle ? 1.0 : (max - n) / max * s->max_busy;
    }
}

static const gws_param_t active_request_params[] = {
    {"idleThreshold", GWS_P_INT, offsetof(active_request_scorer_t, idle), "0"},
    {"maxBusyScore", GWS_P_DOUBLE, offsetof(active_request_scorer_t, max_busy), "1.0"},
};

typedef struct token_load_scorer {
    gws_plugin_t base;
    int64_t threshold; /* queueThresholdTokens */
} token_load_scorer_t;

/* token-load-scorer: 1 - min(1, in-flight tokens / queueThresholdTokens). */
static void token_load_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    const token_load_scorer_t *s = (const token_load_scorer_t *)p;
    for (size_t i = 0; i < c->n_cand; i++) {
        double r = (double)cand_ep(c, i)->inflight_tokens / (double)s->threshold;
        out[i] = 1.0 - (r < 1.0 ? r : 1.0);
    }
}

static const gws_param_t token_load_params[] = {
    {"queueThresholdTokens", GWS_P_INT, offsetof(token_load_scorer_t, threshold), "4194304"},
};

typedef struct prefill_load_scorer {
    gws_plugin_t base;
    int64_t floor; /* normalizationFloorTokens */
} prefill_load_scorer_t;

/* prefill-load-scorer: 1 - p / max(max p over the candidates, normalizationFloorTokens), p = the
 * endpoint's in-flight prompt tokens not expected in its cache whose first token has not arrived
 * (tracked by the gateway itself, no metric lag). The floor keeps a few hundred pending tokens from
 * counting as "the most loaded" when every other candidate has none. */
static void prefill_load_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    const prefill_load_scorer_t *s = (const prefill_load_scorer_t *)p;
    double max = (double)s->floor;
    for (size_t i = 0; i < c->n_cand; i++) {
        double n = (double)cand_ep(c, i)->inflight_prefill_tokens;
        max = n > max ? n : max;
    }
    for (size_t i = 0; i < c->n_cand; i++)
        out[i] = 1.0 - (double)cand_ep(c, i)->inflight_prefill_tokens / max;
}

static const gws_param_t prefill_load_params[] = {
    {"normalizationFloorTokens", GWS_P_INT, offsetof(prefill_load_scorer_t, floor), "2048"},
};

typedef struct load_aware_scorer {
    gws_plugin_t base;
    int64_t threshold; /* threshold */
} load_aware_scorer_t;

/* load-aware-scorer: empty queue -> 0.5; else 0.5 * (1 - min(q, T)/T). */
static void load_aware_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    const load_aware_scorer_t *s = (const load_aware_scorer_t *)p;
    double t = (double)s->threshold;
    for (size_t i = 0; i < c->n_cand; i++) {
        double q = cand_ep(c, i)->m.waiting;
        out[i] = q <= 0 ? 0.5 : 0.5 * (1.0 - (q < t ? q : t) / t);
    }
}

static const gws_param_t load_aware_params[] = {
    {"threshold", GWS_P_INT, offsetof(load_aware_scorer_t, threshold), "128"},
};

static int positive_int_init(gws_plugin_t *p, char *err, size_t errlen)
{
    /* token-load-, prefill-load- and load-aware-scorer: the one int parameter follows the base */
    int64_t v = *(const int64_t *)((const char *)p + p->type->params[0].offset);
    if (v <= 0) {
        seterr(err, errlen, "%s: %s must be > 0", p->type->name, p->type->params[0].key);
        return ST_INVAL;
    }
    return ST_OK;
}

/* session-affinity-scorer: 1 for the endpoint named by the request's session, else 0. */
static void session_affinity_score(gws_plugin_t *p, gws_ctx_t *c, double *out)
{
    const char *sess = c->req->session;
    if (sess == NULL || sess[0] == '\0')
        return;
    for (size_t i = 0; i < c->n_cand; i++)
        out[i] = strcmp(cand_ep(c, i)->name, sess) == 0 ? 1.0 : 0.0;
}

/* ---- pickers ---------------------------------------------------------------------------- */

/* max-score-picker: highest total, ties broken uniformly at random (reservoir of one). */
static size_t max_score_pick(gws_plugin_t *p, gws_ctx_t *c, const double *t)
{
    size_t sel = 0, ties = 1;
    double best = t[0];
    for (size_t i = 1; i < c->n_cand; i++) {
        if (t[i] > best + GWS_TIE_EPS) {
            best = t[i];
            sel = i;
            ties = 1;
        } else if (t[i] >= best - GWS_TIE_EPS) {
            ties++;
            if (gws_rng_next(c) % ties == 0)
                sel = i;
        }
    }
    return sel;
}

/* random-picker: uniform over the candidates. */
static size_t random_pick(gws_plugin_t *p, gws_ctx_t *c, const double *t)
{
    return (size_t)(gws_rng_next(c) % c->n_cand);
}

/* weighted-random-picker: A-Res, key = U^(1/w) (compared as log(U)/w); w <= 0 never wins
 * unless every weight is <= 0, then uniform. */
static size_t weighted_random_pick(gws_plugin_t *p, gws_ctx_t *c, const double *t)
{
    size_t sel = SIZE_MAX;
    double best = -INFINITY;
    for (size_t i = 0; i < c->n_cand; i++) {
        if (!(t[i] > 0))
            continue;
        double key = log(gws_rng_uniform(c)) / t[i];
        if (key > best || sel == SIZE_MAX) {
            best = key;
            sel = i;
        }
    }
    return sel != SIZE_MAX ? sel : random_pick(p, c, t);
}

typedef struct topk_softmax_picker {
    gws_plugin_t base;
    int64_t k;          /* k */
    double temperature; /* temperature */
} topk_softmax_picker_t;

/* topk-softmax-picker (ours): softmax(total / temperature) over the k best candidates. */
static size_t topk_softmax_pick(gws_plugin_t *p, gws_ctx_t *c, const double *t)
{
    const topk_softmax_picker_t *s = (const topk_softmax_picker_t *)p;
    size_t k = (size_t)s->k < c->n_cand ? (size_t)s->k : c->n_cand;
    size_t top[GWS_SOFTMAX_MAX_K];
    size_t n = 0;
    /* insertion into a sorted (descending) top-k list */
    for (size_t i = 0; i < c->n_cand; i++) {
        size_t pos = n;
        while (pos > 0 && t[top[pos - 1]] < t[i])
            pos--;
        if (pos >= k)
            continue;
        size_t end = n < k ? n : k - 1;
        memmove(&top[pos + 1], &top[pos], (end - pos) * sizeof top[0]);
        top[pos] = i;
        if (n < k)
            n++;
    }
    double w[GWS_SOFTMAX_MAX_K], sum = 0;
    for (size_t j = 0; j < n; j++) {
        w[j] = exp((t[top[j]] - t[top[0]]) / s->temperature);
        sum += w[j];
    }
    double u = gws_rng_uniform(c) * sum;
    for (size_t j = 0; j < n; j++) {
        if (u < w[j])
            return top[j];
        u -= w[j];
    }
    return top[n - 1];
}

static const gws_param_t topk_softmax_params[] = {
    {"k", GWS_P_INT, offsetof(topk_softmax_picker_t, k), "3"},
    {"temperature", GWS_P_DOUBLE, offsetof(topk_softmax_picker_t, temperature), "0.1"},
};

static int topk_softmax_init(gws_plugin_t *p, char *err, size_t errlen)
{
    const topk_softmax_picker_t *s = (const topk_softmax_picker_t *)p;
    if (s->k < 1 || s->k > GWS_SOFTMAX_MAX_K || !(s->temperature > 0)) {
        seterr(err, errlen, "%s: need 1 <= k <= %d and temperature > 0", p->type->name,
               GWS_SOFTMAX_MAX_K);
        return ST_INVAL;
    }
    return ST_OK;
}

typedef struct round_robin_picker {
    gws_plugin_t base;
    uint32_t last_id; /* id chosen last; the next pick takes the next larger id, wrapping */
    bool started;
} round_robin_picker_t;

/* round-robin-picker: endpoints in id order, ignoring scores; robust to set changes. */
static size_t round_robin_pick(gws_plugin_t *p, gws_ctx_t *c, const double *t)
{
    round_robin_picker_t *rr = (round_robin_picker_t *)p;
    size_t next = SIZE_MAX, first = 0;
    for (size_t i = 0; i < c->n_cand; i++) {
        uint32_t id = cand_ep(c, i)->id;
        if (id < cand_ep(c, first)->id)
            first = i;
        if ((!rr->started || id > rr->last_id) && (next == SIZE_MAX || id < cand_ep(c, next)->id))
            next = i;
    }
    size_t sel = next != SIZE_MAX ? next : first;
    rr->last_id = cand_ep(c, sel)->id;
    rr->started = true;
    return sel;
}

/* ---- profile handlers and P/D deciders -------------------------------------------------- */

/* disagg-profile-handler / pd-profile-handler: parameters only; the proxy runs the two profiles
 * (gws_sched_pd). */
typedef struct disagg_handler {
    gws_plugin_t base;
    char *decode_profile;
    char *prefill_profile;
    char *policy;
    int64_t non_cached;
    int64_t timeout_ms;
    int64_t max_retries;
    int64_t hash_block_size; /* pd-profile-handler only: accepted, not used */
} disagg_handler_t;

#define DISAGG_COMMON_PARAMS                                                                       \
    {"decodeProfile", GWS_P_STRING, offsetof(disagg_handler_t, decode_profile), "decode"},         \
        {"prefillProfile", GWS_P_STRING, offsetof(disagg_handler_t, prefill_profile), "prefill"},  \
        {"prefillTimeoutMs", GWS_P_INT, offsetof(disagg_handler_t, timeout_ms), "30000"},          \
        {"prefillFailurePolicy", GWS_P_STRING, offsetof(disagg_handler_t, policy), "fallback"},    \
    {                                                                                              \
        "prefillMaxRetries", GWS_P_INT, offsetof(disagg_handler_t, max_retries), "1"               \
    }

static const gws_param_t disagg_handler_params[] = {
    {"nonCachedTokens", GWS_P_INT, offsetof(disagg_handler_t, non_cached), "16"},
    DISAGG_COMMON_PARAMS,
};
static const gws_param_t pd_handler_params[] = {
    {"threshold", GWS_P_INT, offsetof(disagg_handler_t, non_cached), "16"},
    {"hashBlockSize", GWS_P_INT, offsetof(disagg_handler_t, hash_block_size), "16"},
    DISAGG_COMMON_PARAMS,
};

static int disagg_handler_init(gws_plugin_t *p, char *err, size_t errlen)
{
    const disagg_handler_t *h = (const disagg_handler_t *)p;
    const char *what = NULL;
    if (h->non_cached < 0)
        what = p->type->params[0].key;
    else if (h->timeout_ms < 1 || h->timeout_ms > 3600000)
        what = "prefillTimeoutMs (1..3600000)";
    else if (h->max_retries < 0 || h->max_retries > 16)
        what = "prefillMaxRetries (0..16)";
    else if (strcmp(h->policy, "fallback") != 0 && strcmp(h->policy, "retry") != 0)
        what = "prefillFailurePolicy (fallback or retry)";
    else if (!h->decode_profile[0] || !h->prefill_profile[0] ||
             strcmp(h->decode_profile, h->prefill_profile) == 0)
        what = "decodeProfile / prefillProfile (two different profile names)";
    if (what) {
        seterr(err, errlen, "%s: bad %s", p->type->name, what);
        return ST_INVAL;
    }
    return ST_OK;
}

/* prefix-based-pd-decider: the threshold the handler uses (0 = never, as in llm-d). */
typedef struct pd_decider {
    gws_plugin_t base;
    int64_t non_cached;
} pd_decider_t;

static const gws_param_t pd_decider_params[] = {
    {"nonCachedTokens", GWS_P_INT, offsetof(pd_decider_t, non_cached), "16"},
};

static int pd_decider_init(gws_plugin_t *p, char *err, size_t errlen)
{
    if (((const pd_decider_t *)p)->non_cached < 0) {
        seterr(err, errlen, "%s: nonCachedTokens must be >= 0", p->type->name);
        return ST_INVAL;
    }
    return ST_OK;
}

/* ---- registry --------------------------------------------------------------------------- */

#define NPARAMS(a) (sizeof(a) / sizeof((a)[0]))
#define GWS_COMMON(nm, kd, sz)                                                                     \
    .name = nm, .version = 1, .kind = kd, .size = sz, .create = gws_plugin_create_default,         \
    .destroy = gws_plugin_destroy_default

static const gws_plugin_type_t model_filter_type = {
    GWS_COMMON("model-filter", GWS_KIND_FILTER, sizeof(gws_plugin_t)), .filter = model_filter};
static const gws_plugin_type_t decode_filter_type = {
    GWS_COMMON("decode-filter", GWS_KIND_FILTER, sizeof(gws_plugin_t)), .filter = decode_filter};
static const gws_plugin_type_t prefill_filter_type = {
    GWS_COMMON("prefill-filter", GWS_KIND_FILTER, sizeof(gws_plugin_t)), .filter = prefill_filter};
static const gws_plugin_type_t health_filter_type = {
    GWS_COMMON("health-filter", GWS_KIND_FILTER, sizeof(gws_plugin_t)), .filter = health_filter};
static const gws_plugin_type_t saturation_filter_type = {
    GWS_COMMON("saturation-filter", GWS_KIND_FILTER, sizeof(saturation_filter_t)),
    .params = saturation_params, .n_params = NPARAMS(saturation_params),
    .filter = saturation_filter};

static const gws_plugin_type_t queue_scorer_type = {
    GWS_COMMON("queue-scorer", GWS_KIND_SCORER, sizeof(gws_plugin_t)), .score = queue_score};
static const gws_plugin_type_t kv_util_scorer_type = {
    GWS_COMMON("kv-cache-utilization-scorer", GWS_KIND_SCORER, sizeof(gws_plugin_t)),
    .score = kv_util_score};
static const gws_plugin_type_t approx_prefix_scorer_type = {
    GWS_COMMON("prefix-cache-scorer", GWS_KIND_SCORER, sizeof(prefix_scorer_t)),
    .params = approx_prefix_params, .n_params = NPARAMS(approx_prefix_params), .init = prefix_init,
    .score = approx_prefix_score};
static const gws_plugin_type_t precise_prefix_scorer_type = {
    GWS_COMMON("precise-prefix-cache-scorer", GWS_KIND_SCORER, sizeof(prefix_scorer_t)),
    .params = precise_prefix_params, .n_params = NPARAMS(precise_prefix_params),
    .init = prefix_init, .score = precise_prefix_score};
static const gws_plugin_type_t active_request_scorer_type = {
    GWS_COMMON("active-request-scorer", GWS_KIND_SCORER, sizeof(active_request_scorer_t)),
    .params = active_request_params, .n_params = NPARAMS(active_request_params),
    .score = active_request_score};
static const gws_plugin_type_t token_load_scorer_type = {
    GWS_COMMON("token-load-scorer", GWS_KIND_SCORER, sizeof(token_load_scorer_t)),
    .params = token_load_params, .n_params = NPARAMS(token_load_params), .init = positive_int_init,
    .score = token_load_score};
static const gws_plugin_type_t prefill_load_scorer_type = {
    GWS_COMMON("prefill-load-scorer", GWS_KIND_SCORER, sizeof(prefill_load_scorer_t)),
    .params = prefill_load_params, .n_params = NPARAMS(prefill_load_params),
    .init = positive_int_init, .score = prefill_load_score};
static const gws_plugin_type_t load_aware_scorer_type = {
    GWS_COMMON("load-aware-scorer", GWS_KIND_SCORER, sizeof(load_aware_scorer_t)),
    .params = load_aware_params, .n_params = NPARAMS(load_aware_params), .init = positive_int_init,
    .score = load_aware_score};
static const gws_plugin_type_t session_affinity_scorer_type = {
    GWS_COMMON("session-affinity-scorer", GWS_KIND_SCORER, sizeof(gws_plugin_t)),
    .score = session_affinity_score};

static const gws_plugin_type_t max_score_picker_type = {
    GWS_COMMON("max-score-picker", GWS_KIND_PICKER, sizeof(gws_plugin_t)), .pick = max_score_pick};
static const gws_plugin_type_t random_picker_type = {
    GWS_COMMON("random-picker", GWS_KIND_PICKER, sizeof(gws_plugin_t)), .pick = random_pick};
static const gws_plugin_type_t weighted_random_picker_type = {
    GWS_COMMON("weighted-random-picker", GWS_KIND_PICKER, sizeof(gws_plugin_t)),
    .pick = weighted_random_pick};
static const gws_plugin_type_t topk_softmax_picker_type = {
    GWS_COMMON("topk-softmax-picker", GWS_KIND_PICKER, sizeof(topk_softmax_picker_t)),
    .params = topk_softmax_params, .n_params = NPARAMS(topk_softmax_params),
    .init = topk_softmax_init, .pick = topk_softmax_pick};
static const gws_plugin_type_t round_robin_picker_type = {
    GWS_COMMON("round-robin-picker", GWS_KIND_PICKER, sizeof(round_robin_picker_t)),
    .pick = round_robin_pick};

static const gws_plugin_type_t single_handler_type = {
    GWS_COMMON("single-profile-handler", GWS_KIND_HANDLER, sizeof(gws_plugin_t))};
static const gws_plugin_type_t disagg_handler_type = {
    GWS_COMMON("disagg-profile-handler", GWS_KIND_HANDLER, sizeof(disagg_handler_t)),
    .params = disagg_handler_params, .n_params = NPARAMS(disagg_handler_params),
    .init = disagg_handler_init};
static const gws_plugin_type_t pd_handler_type = {
    GWS_COMMON("pd-profile-handler", GWS_KIND_HANDLER, sizeof(disagg_handler_t)),
    .params = pd_handler_params, .n_params = NPARAMS(pd_handler_params),
    .init = disagg_handler_init};
static const gws_plugin_type_t prefix_pd_decider_type = {
    GWS_COMMON("prefix-based-pd-decider", GWS_KIND_HANDLER, sizeof(pd_decider_t)),
    .params = pd_decider_params, .n_params = NPARAMS(pd_decider_params), .init = pd_decider_init};
static const gws_plugin_type_t always_pd_decider_type = {
    GWS_COMMON("always-disagg-pd-decider", GWS_KIND_HANDLER, sizeof(gws_plugin_t))};
static const gws_plugin_type_t prefill_header_handler_type = {
    GWS_COMMON("prefill-header-handler", GWS_KIND_HANDLER, sizeof(gws_plugin_t))};

static const gws_plugin_type_t *const registry[] = {
    &model_filter_type,           &decode_filter_type,
    &prefill_filter_type,         &health_filter_type,
    &saturation_filter_type,      &queue_scorer_type,
    &kv_util_scorer_type,         &approx_prefix_scorer_type,
    &precise_prefix_scorer_type,  &active_request_scorer_type,
    &token_load_scorer_type,      &prefill_load_scorer_type,
    &load_aware_scorer_type,      &session_affinity_scorer_type,
    &max_score_picker_type,       &random_picker_type,
    &weighted_random_picker_type, &topk_softmax_picker_type,
    &round_robin_picker_type,     &single_handler_type,
    &disagg_handler_type,         &pd_handler_type,
    &prefix_pd_decider_type,      &always_pd_decider_type,
    &prefill_header_handler_type,
};

const gws_plugin_type_t *gws_plugin_type_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < NPARAMS(registry); i++) {
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    }
    return NULL;
}

/* ---- generic factory and directive tables ----------------------------------------------- */

/* Parses scalar text v into the field described by d. ST_OK or ST_INVAL (err: what was
 * expected). quoted: the YAML scalar was quoted (only strings may be). */
static int param_set(gws_plugin_t *p, const gws_param_t *d, const char *v, bool quoted, char *err,
                     size_t errlen)
{
    char *field = (char *)p + d->offset;
    char *end = NULL;
    switch (d->type) {
    case GWS_P_INT: {
        errno = 0;
        long long x = quoted || v[0] == '\0' ? 0 : strtoll(v, &end, 10);
        if (quoted || v[0] == '\0' || *end != '\0' || errno != 0) {
            seterr(err, errlen, "expected an integer, got '%s'", v);
            return ST_INVAL;
        }
        *(int64_t *)(void *)field = (int64_t)x;
        return ST_OK;
    }
    case GWS_P_DOUBLE: {
        double x = quoted || v[0] == '\0' ? 0 : strtod(v, &end);
        if (quoted || v[0] == '\0' || *end != '\0' || !isfinite(x)) {
            seterr(err, errlen, "expected a number, got '%s'", v);
            return ST_INVAL;
        }
        *(double *)(void *)field = x;
        return ST_OK;
    }
    case GWS_P_BOOL:
        if (!quoted && (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))) {
            *(bool *)field = true;
            return ST_OK;
        }
        if (!quoted && (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))) {
            *(bool *)field = false;
            return ST_OK;
        }
        seterr(err, errlen, "expected true or false, got '%s'", v);
        return ST_INVAL;
    case GWS_P_STRING: {
        char *s = sy_strdup(v);
        if (s == NULL) {
            seterr(err, errlen, "out of memory");
            return ST_NOMEM;
        }
        sy_free(*(char **)(void *)field);
        *(char **)(void *)field = s;
        return ST_OK;
    }
    }
    seterr(err, errlen, "bad parameter type");
    return ST_INVAL;
}

void gws_plugin_destroy_default(gws_plugin_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->type->n_params; i++) {
        const gws_param_t *d = &p->type->params[i];
        if (d->type == GWS_P_STRING)
            sy_free(*(char **)(void *)((char *)p + d->offset));
    }
    sy_free(p);
}

int gws_plugin_create_default(const gws_plugin_type_t *t, const gws_kv_t *params, size_t n,
                              gws_plugin_t **out, char *err, size_t errlen)
{
    char why[160];
    int rc;
    *out = NULL;
    SY_ASSERT(t->size >= sizeof(gws_plugin_t));
    gws_plugin_t *p = sy_calloc(1, t->size);
    if (p == NULL) {
        seterr(err, errlen, "%s: out of memory", t->name);
        return ST_NOMEM;
    }
    p->type = t;
    snprintf(p->name, sizeof p->name, "%s", t->name);
    for (size_t i = 0; i < t->n_params; i++) {
        if (t->params[i].def == NULL)
            continue;
        rc = param_set(p, &t->params[i], t->params[i].def, false, why, sizeof why);
        SY_ASSERT(rc == ST_OK); /* defaults are ours */
    }
    for (size_t k = 0; k < n; k++) {
        const gws_param_t *d = NULL;
        for (size_t i = 0; i < t->n_params && d == NULL; i++) {
            if (strcmp(t->params[i].key, params[k].key) == 0)
                d = &t->params[i];
        }
        if (d == NULL) {
            char known[160] = "none";
            size_t off = 0;
            for (size_t i = 0; i < t->n_params; i++) {
                const char *sep = i ? ", " : "";
                size_t ls = strlen(sep), lk = strlen(t->params[i].key);
                if (off + ls + lk >= sizeof known)
                    break;
                memcpy(known + off, sep, ls);
                memcpy(known + off + ls, t->params[i].key, lk + 1);
                off += ls + lk;
            }
            seterr(err, errlen, "line %d: %s: unknown parameter '%s' (known: %s)", params[k].line,
                   t->name, params[k].key, known);
            rc = ST_INVAL;
            goto fail;
        }
        rc = param_set(p, d, params[k].value, params[k].quoted, why, sizeof why);
        if (rc != ST_OK) {
            seterr(err, errlen, "line %d: %s: parameter '%s': %s", params[k].line, t->name,
                   params[k].key, why);
            goto fail;
        }
    }
    if (t->init != NULL && (rc = t->init(p, why, sizeof why)) != ST_OK) {
        seterr(err, errlen, "%s", why);
        goto fail;
    }
    *out = p;
    return ST_OK;
fail:
    gws_plugin_destroy_default(p);
    return rc;
}

/* ---- EndpointPickerConfig loader -------------------------------------------------------- */

typedef struct loader {
    yaml_document_t *doc;
    gws_sched_t *s;
    char *err;
    size_t errlen;
} loader_t;

static int node_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static yaml_node_t *node_get(loader_t *L, int id)
{
    return yaml_document_get_node(L->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_quoted(const yaml_node_t *n)
{
    return n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
}

/* Requires a scalar of at most GWS_NAME_MAX-1 bytes; returns it or NULL (error set). */
static const char *want_name(loader_t *L, const yaml_node_t *n, const char *what)
{
    const char *v = scalar(n);
    if (v == NULL || v[0] == '\0' || strlen(v) >= GWS_NAME_MAX) {
        seterr(L->err, L->errlen, "line %d: %s must be a non-empty string of at most %d bytes",
               n ? node_line(n) : 0, what, GWS_NAME_MAX - 1);
        return NULL;
    }
    return v;
}

static gws_plugin_t *find_plugin(gws_sched_t *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_plugins; i++) {
        if (strcmp(s->plugins[i]->name, name) == 0)
            return s->plugins[i];
    }
    return NULL;
}

/* plugins[] entry: {type, name?, parameters?} */
static int load_plugin(loader_t *L, yaml_node_t *n)
{
    if (n->type != YAML_MAPPING_NODE) {
        seterr(L->err, L->errlen, "line %d: plugins: each entry must be a mapping", node_line(n));
        return ST_INVAL;
    }
    const char *type = NULL, *name = NULL;
    yaml_node_t *type_node = n, *params = NULL;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_get(L, pr->key), *v = node_get(L, pr->value);
        const char *key = scalar(k);
        if (key != NULL && strcmp(key, "type") == 0) {
            if ((type = want_name(L, v, "plugins[].type")) == NULL)
                return ST_INVAL;
            type_node = v;
        } else if (key != NULL && strcmp(key, "name") == 0) {
            if ((name = want_name(L, v, "plugins[].name")) == NULL)
                return ST_INVAL;
        } else if (key != NULL && strcmp(key, "parameters") == 0) {
            params = v;
        } else {
            seterr(L->err, L->errlen,
                   "line %d: plugins[]: unknown key '%s' (known: type, name, "
                   "parameters)",
                   node_line(k), key ? key : "?");
            return ST_INVAL;
        }
    }
    if (type == NULL) {
        seterr(L->err, L->errlen, "line %d: plugins[]: missing 'type'", node_line(n));
        return ST_INVAL;
    }
    const gws_plugin_type_t *t = gws_plugin_type_find(type);
    if (t == NULL) {
        seterr(L->err, L->errlen, "line %d: unknown plugin type '%s'", node_line(type_node), type);
        return ST_INVAL;
    }
    if (name == NULL)
        name = type;
    if (find_plugin(L->s, name) != NULL) {
        seterr(L->err, L->errlen, "line %d: duplicate plugin name '%s'", node_line(n), name);
        return ST_INVAL;
    }
    if (L->s->n_plugins >= GWS_MAX_PLUGINS) {
        seterr(L->err, L->errlen, "line %d: more than %d plugins", node_line(n), GWS_MAX_PLUGINS);
        return ST_LIMIT;
    }
    gws_kv_t kv[32];
    size_t nkv = 0;
    if (params != NULL && !(params->type == YAML_SCALAR_NODE && params->data.scalar.length == 0)) {
        if (params->type != YAML_MAPPING_NODE) {
            seterr(L->err, L->errlen, "line %d: plugin '%s': parameters must be a mapping",
                   node_line(params), name);
            return ST_INVAL;
        }
        for (yaml_node_pair_t *pr = params->data.mapping.pairs.start;
             pr < params->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = node_get(L, pr->key), *v = node_get(L, pr->value);
            if (scalar(k) == NULL || scalar(v) == NULL) {
                seterr(L->err, L->errlen, "line %d: plugin '%s': parameter '%s' must be a scalar",
                       node_line(k), name, scalar(k) ? scalar(k) : "?");
                return ST_INVAL;
            }
            if (nkv == sizeof kv / sizeof kv[0]) {
                seterr(L->err, L->errlen, "line %d: plugin '%s': too many parameters", node_line(k),
                       name);
                return ST_LIMIT;
            }
            kv[nkv++] = (gws_kv_t){scalar(k), scalar(v), node_line(k), is_quoted(v)};
        }
    }
    gws_plugin_t *p = NULL;
    char why[GWS_ERR_MAX];
    int rc = t->create(t, kv, nkv, &p, why, sizeof why);
    if (rc != ST_OK) {
        seterr(L->err, L->errlen, "plugin '%s': %s", name, why);
        return rc;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    L->s->plugins[L->s->n_plugins++] = p;
    return ST_OK;
}

/* schedulingProfiles[] entry: {name, plugins[] {pluginRef, weight?}} */
static int load_profile(loader_t *L, yaml_node_t *n)
{
    gws_sched_t *s = L->s;
    if (n->type != YAML_MAPPING_NODE) {
        seterr(L->err, L->errlen, "line %d: schedulingProfiles: each entry must be a mapping",
               node_line(n));
        return ST_INVAL;
    }
    if (s->n_profiles >= GWS_MAX_PROFILES) {
        seterr(L->err, L->errlen, "line %d: more than %d profiles", node_line(n), GWS_MAX_PROFILES);
        return ST_LIMIT;
    }
    gws_profile_t *pf = &s->profiles[s->n_profiles];
    memset(pf, 0, sizeof *pf);
    const char *name = NULL;
    yaml_node_t *refs = NULL;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_get(L, pr->key), *v = node_get(L, pr->value);
        const char *key = scalar(k);
        if (key != NULL && strcmp(key, "name") == 0) {
            if ((name = want_name(L, v, "schedulingProfiles[].name")) == NULL)
                return ST_INVAL;
        } else if (key != NULL && strcmp(key, "plugins") == 0) {
            refs = v;
        } else {
            seterr(L->err, L->errlen,
                   "line %d: schedulingProfiles[]: unknown key '%s' (known: "
                   "name, plugins)",
                   node_line(k), key ? key : "?");
            return ST_INVAL;
        }
    }
    if (name == NULL) {
        seterr(L->err, L->errlen, "line %d: schedulingProfiles[]: missing 'name'", node_line(n));
        return ST_INVAL;
    }
    for (uint32_t i = 0; i < s->n_profiles; i++) {
        if (strcmp(s->profiles[i].name, name) == 0) {
            seterr(L->err, L->errlen, "line %d: duplicate profile name '%s'", node_line(n), name);
            return ST_INVAL;
        }
    }
    snprintf(pf->name, sizeof pf->name, "%s", name);
    if (refs == NULL || refs->type != YAML_SEQUENCE_NODE) {
        seterr(L->err, L->errlen, "line %d: profile '%s': 'plugins' must be a list",
               node_line(refs ? refs : n), name);
        return ST_INVAL;
    }
    for (yaml_node_item_t *it = refs->data.sequence.items.start; it < refs->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node_get(L, *it);
        if (e->type != YAML_MAPPING_NODE) {
            seterr(L->err, L->errlen, "line %d: profile '%s': each plugin must be a mapping",
                   node_line(e), name);
            return ST_INVAL;
        }
        const char *ref = NULL;
        double weight = 1.0;
        for (yaml_node_pair_t *pr = e->data.mapping.pairs.start; pr < e->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *k = node_get(L, pr->key), *v = node_get(L, pr->value);
            const char *key = scalar(k);
            if (key != NULL && strcmp(key, "pluginRef") == 0) {
                if ((ref = want_name(L, v, "pluginRef")) == NULL)
                    return ST_INVAL;
            } else if (key != NULL && strcmp(key, "weight") == 0) {
                const char *w = scalar(v);
                char *end = NULL;
                weight = w && !is_quoted(v) && w[0] ? strtod(w, &end) : -1;
                if (w == NULL || end == NULL || *end != '\0' || !isfinite(weight) || weight < 0) {
                    seterr(L->err, L->errlen,
                           "line %d: profile '%s': weight must be a number "
                           ">= 0",
                           node_line(v), name);
                    return ST_INVAL;
                }
            } else {
                seterr(L->err, L->errlen,
                       "line %d: profile '%s': unknown key '%s' (known: "
                       "pluginRef, weight)",
                       node_line(k), name, key ? key : "?");
                return ST_INVAL;
            }
        }
        if (ref == NULL) {
            seterr(L->err, L->errlen, "line %d: profile '%s': missing 'pluginRef'", node_line(e),
                   name);
            return ST_INVAL;
        }
        gws_plugin_t *p = find_plugin(s, ref);
        if (p == NULL) {
            seterr(L->err, L->errlen, "line %d: profile '%s': pluginRef '%s' names no plugin",
                   node_line(e), name, ref);
            return ST_INVAL;
        }
        bool dup = p == pf->picker;
        for (uint32_t i = 0; i < pf->n_filters; i++)
            dup |= pf->filters[i] == p;
        for (uint32_t i = 0; i < pf->n_scorers; i++)
            dup |= pf->scorers[i] == p;
        if (dup) {
            seterr(L->err, L->errlen, "line %d: profile '%s': plugin '%s' referenced twice",
                   node_line(e), name, ref);
            return ST_INVAL;
        }
        switch (p->type->kind) {
        case GWS_KIND_FILTER:
            if (pf->n_filters >= GWS_MAX_FILTERS) {
                seterr(L->err, L->errlen, "line %d: profile '%s': more than %d filters",
                       node_line(e), name, GWS_MAX_FILTERS);
                return ST_LIMIT;
            }
            pf->filters[pf->n_filters++] = p;
            break;
        case GWS_KIND_SCORER:
            if (pf->n_scorers >= GWS_MAX_SCORERS) {
                seterr(L->err, L->errlen, "line %d: profile '%s': more than %d scorers",
                       node_line(e), name, GWS_MAX_SCORERS);
                return ST_LIMIT;
            }
            pf->weights[pf->n_scorers] = weight;
            pf->scorers[pf->n_scorers++] = p;
            break;
        case GWS_KIND_HANDLER:
            seterr(L->err, L->errlen,
                   "line %d: profile '%s': plugin '%s' (%s) is not a filter, scorer or picker",
                   node_line(e), name, ref, p->type->name);
            return ST_INVAL;
        case GWS_KIND_PICKER:
            if (pf->picker != NULL) {
                seterr(L->err, L->errlen, "line %d: profile '%s': second picker '%s'", node_line(e),
                       name, ref);
                return ST_INVAL;
            }
            pf->picker = p;
            break;
        }
    }
    s->n_profiles++;
    return ST_OK;
}

static const gws_profile_t *find_profile(const gws_sched_t *s, const char *name)
{
    for (uint32_t i = 0; i < s->n_profiles; i++) {
        if (strcmp(s->profiles[i].name, name) == 0)
            return &s->profiles[i];
    }
    return NULL;
}

/* P/D from the profile handler and decider plugins, or from profiles named decode and prefill
 * (gw_sched.h). ST_OK or ST_INVAL. */
static int load_pd(loader_t *L)
{
    gws_sched_t *s = L->s;
    const disagg_handler_t *h = NULL;
    const gws_plugin_t *decider = NULL;
    bool any_handler = false;
    for (uint32_t i = 0; i < s->n_plugins; i++) {
        const gws_plugin_t *p = s->plugins[i];
        if (p->type == &disagg_handler_type || p->type == &pd_handler_type ||
            p->type == &single_handler_type) {
            if (any_handler) {
                seterr(L->err, L->errlen, "plugins: more than one profile handler ('%s')", p->name);
                return ST_INVAL;
            }
            any_handler = true;
            if (p->type != &single_handler_type)
                h = (const disagg_handler_t *)p;
        } else if (p->type == &prefix_pd_decider_type || p->type == &always_pd_decider_type) {
            if (decider) {
                seterr(L->err, L->errlen, "plugins: more than one P/D decider ('%s')", p->name);
                return ST_INVAL;
            }
            decider = p;
        }
    }
    gws_pd_config_t *pd = &s->pd;
    memset(pd, 0, sizeof *pd);
    pd->decode_profile = "decode";
    pd->prefill_profile = "prefill";
    pd->threshold = 16;
    pd->prefill_timeout_ms = 30000;
    pd->policy = GWS_PD_FALLBACK;
    pd->prefill_max_retries = 1;
    if (h) {
        pd->decode_profile = h->decode_profile;
        pd->prefill_profile = h->prefill_profile;
        pd->threshold = h->non_cached > 0 ? (uint64_t)h->non_cached : UINT64_MAX;
        pd->prefill_timeout_ms = (uint32_t)h->timeout_ms;
        pd->policy = strcmp(h->policy, "retry") == 0 ? GWS_PD_RETRY : GWS_PD_FALLBACK;
        pd->prefill_max_retries = (uint32_t)h->max_retries;
    }
    const gws_profile_t *dp = find_profile(s, pd->decode_profile);
    const gws_profile_t *pp = find_profile(s, pd->prefill_profile);
    if (h && (!dp || !pp)) {
        seterr(L->err, L->errlen, "%s: %s '%s' names no profile", h->base.name,
               !dp ? "decodeProfile" : "prefillProfile",
               !dp ? pd->decode_profile : pd->prefill_profile);
        return ST_INVAL;
    }
    pd->enabled = h != NULL || (!any_handler && dp && pp);
    if (pd->enabled && decider) {
        const pd_decider_t *d = (const pd_decider_t *)decider;
        pd->threshold = decider->type == &always_pd_decider_type ? 0
                        : d->non_cached > 0                      ? (uint64_t)d->non_cached
                                                                 : UINT64_MAX;
    }
    return ST_OK;
}

static const char *const ignored_top_keys[] = {"featureGates", "saturationDetector", "dataLayer",
                                               "flowControl", "parser"};

static int load_root(loader_t *L, yaml_node_t *root)
{
    gws_sched_t *s = L->s;
    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        seterr(L->err, L->errlen, "line %d: the config must be a mapping (EndpointPickerConfig)",
               root ? node_line(root) : 1);
        return ST_INVAL;
    }
    const char *api = NULL, *kind = NULL;
    yaml_node_t *plugins = NULL, *profiles = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = node_get(L, pr->key), *v = node_get(L, pr->value);
        const char *key = scalar(k);
        bool ignored = false;
        for (size_t i = 0; key != NULL && i < NPARAMS(ignored_top_keys); i++)
            ignored |= strcmp(key, ignored_top_keys[i]) == 0;
        if (key != NULL && strcmp(key, "apiVersion") == 0) {
            api = scalar(v);
            if (api == NULL || (strcmp(api, "llm-d.ai/v1alpha1") != 0 &&
                                strcmp(api, "inference.networking.x-k8s.io/v1alpha1") != 0)) {
                seterr(L->err, L->errlen,
                       "line %d: apiVersion must be llm-d.ai/v1alpha1 (or "
                       "inference.networking.x-k8s.io/v1alpha1)",
                       node_line(v));
                return ST_INVAL;
            }
        } else if (key != NULL && strcmp(key, "kind") == 0) {
            kind = scalar(v);
            if (kind == NULL || strcmp(kind, "EndpointPickerConfig") != 0) {
                seterr(L->err, L->errlen, "line %d: kind must be EndpointPickerConfig",
                       node_line(v));
                return ST_INVAL;
            }
        } else if (key != NULL && strcmp(key, "plugins") == 0) {
            plugins = v;
        } else if (key != NULL && strcmp(key, "schedulingProfiles") == 0) {
            profiles = v;
        } else if (ignored) {
            sy_warn("gws.config", "line=%d key=%s msg=\"not supported, ignored\"", node_line(k),
                    key);
        } else {
            seterr(L->err, L->errlen,
                   "line %d: unknown key '%s' (known: apiVersion, kind, "
                   "plugins, schedulingProfiles)",
                   node_line(k), key ? key : "?");
            return ST_INVAL;
        }
    }
    if (api == NULL || kind == NULL) {
        seterr(L->err, L->errlen, "line %d: missing '%s'", node_line(root),
               api == NULL ? "apiVersion" : "kind");
        return ST_INVAL;
    }
    if (plugins == NULL || plugins->type != YAML_SEQUENCE_NODE) {
        seterr(L->err, L->errlen, "line %d: 'plugins' must be a list",
               node_line(plugins ? plugins : root));
        return ST_INVAL;
    }
    if (profiles == NULL || profiles->type != YAML_SEQUENCE_NODE ||
        profiles->data.sequence.items.top == profiles->data.sequence.items.start) {
        seterr(L->err, L->errlen, "line %d: 'schedulingProfiles' must be a non-empty list",
               node_line(profiles ? profiles : root));
        return ST_INVAL;
    }
    int rc;
    for (yaml_node_item_t *it = plugins->data.sequence.items.start;
         it < plugins->data.sequence.items.top; it++) {
        if ((rc = load_plugin(L, node_get(L, *it))) != ST_OK)
            return rc;
    }
    for (yaml_node_item_t *it = profiles->data.sequence.items.start;
         it < profiles->data.sequence.items.top; it++) {
        if ((rc = load_profile(L, node_get(L, *it))) != ST_OK)
            return rc;
    }
    /* llm-d injects max-score-picker into a profile without a picker */
    gws_plugin_t *def_picker = NULL;
    for (uint32_t i = 0; i < s->n_profiles; i++) {
        if (s->profiles[i].picker != NULL)
            continue;
        if (def_picker == NULL) {
            char why[GWS_ERR_MAX];
            rc = max_score_picker_type.create(&max_score_picker_type, NULL, 0, &def_picker, why,
                                              sizeof why);
            if (rc != ST_OK) {
                seterr(L->err, L->errlen, "%s", why);
                return rc;
            }
            s->plugins[s->n_plugins++] = def_picker; /* the +1 slot */
        }
        s->profiles[i].picker = def_picker;
    }
    for (uint32_t i = 0; i < s->n_profiles; i++) {
        for (uint32_t j = 0; j < s->profiles[i].n_scorers; j++) {
            const gws_plugin_type_t *t = s->profiles[i].scorers[j]->type;
            s->needs |= t == &precise_prefix_scorer_type ? GWS_NEEDS_PRECISE : 0;
            s->needs |= t == &approx_prefix_scorer_type ? GWS_NEEDS_APPROX : 0;
            s->needs |= t == &session_affinity_scorer_type ? GWS_NEEDS_SESSION : 0;
        }
    }
    return load_pd(L);
}

void gws_sched_destroy(gws_sched_t *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->n_plugins; i++)
        s->plugins[i]->type->destroy(s->plugins[i]);
    sy_free(s->precise_hits);
    sy_free(s->approx_hits);
    sy_free(s->cand);
    sy_free(s->cand_score);
    sy_free(s->cand_total);
    sy_free(s->is_cand);
    sy_free(s->total);
    sy_free(s->score);
    sy_free(s);
}

static gws_sched_t *sched_alloc(void)
{
    gws_sched_t *s = sy_calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->precise_hits = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->precise_hits);
    s->approx_hits = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->approx_hits);
    s->cand = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->cand);
    s->cand_score = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->cand_score);
    s->cand_total = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->cand_total);
    s->is_cand = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->is_cand);
    s->total = sy_calloc(GW_MAX_ENDPOINTS, sizeof *s->total);
    s->score = sy_calloc((size_t)GWS_MAX_SCORERS * GW_MAX_ENDPOINTS, sizeof *s->score);
    if (s->precise_hits == NULL || s->approx_hits == NULL || s->cand == NULL ||
        s->cand_score == NULL || s->cand_total == NULL || s->is_cand == NULL || s->total == NULL ||
        s->score == NULL) {
        gws_sched_destroy(s);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)s;
    return s;
}

int gws_config_load_text(const char *text, size_t len, gws_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    seterr(err, errlen, "ok");
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        seterr(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = parser.error == YAML_MEMORY_ERROR ? ST_NOMEM : ST_INVAL;
        seterr(err, errlen, "line %zu: YAML: %s%s%s", parser.problem_mark.line + 1,
               parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
               parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = ST_OK;
    gws_sched_t *s = sched_alloc();
    if (s == NULL) {
        seterr(err, errlen, "out of memory");
        rc = ST_NOMEM;
        goto done;
    }
    loader_t L = {&doc, s, err, errlen};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        seterr(err, errlen, "line 1: empty config");
        rc = ST_INVAL;
        goto done;
    }
    rc = load_root(&L, root);
done:
    if (rc != ST_OK) {
        gws_sched_destroy(s);
        s = NULL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    *out = s;
    return rc;
}

int gws_config_load_file(const char *path, gws_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int rc = -errno;
        seterr(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    sy_buf_t b = SY_BUF_INIT;
    char chunk[4096];
    size_t r;
    int rc = ST_OK;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + r > (1u << 20)) {
            seterr(err, errlen, "%s: larger than 1 MiB", path);
            rc = ST_LIMIT;
            break;
        }
        if ((rc = sy_buf_append(&b, chunk, r)) != ST_OK) {
            seterr(err, errlen, "out of memory");
            break;
        }
    }
    if (rc == ST_OK && ferror(f)) {
        rc = -EIO;
        seterr(err, errlen, "%s: read error", path);
    }
    fclose(f);
    if (rc == ST_OK) {
        char why[GWS_ERR_MAX];
        rc = gws_config_load_text(b.data ? b.data : "", b.len, out, why, sizeof why);
        if (rc != ST_OK)
            seterr(err, errlen, "%s: %s", path, why);
    }
    sy_buf_deinit(&b);
    return rc;
}

/* ---- built-in configs: deploy/scheduler/<name>.yaml verbatim ---------------------------- */

static const struct {
    const char *name;
    const char *yaml;
} builtins[] = {
    {"round-robin",
     "# round-robin: endpoints in turn, ignoring load and cache (baseline).\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"round-robin\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: round-robin-picker\n"
     "schedulingProfiles:\n"
     "- name: default\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: round-robin-picker\n"},
    {"random",
     "# random: a uniformly random endpoint (baseline).\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"random\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: random-picker\n"
     "schedulingProfiles:\n"
     "- name: default\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: random-picker\n"},
    {"load", "# load: least loaded (queue depth and KV-cache utilization, equal weights).\n"
             "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
             "# \"load\" (gw_sched.c embeds this text;\n"
             "# a unit test checks they match).\n"
             "apiVersion: llm-d.ai/v1alpha1\n"
             "kind: EndpointPickerConfig\n"
             "plugins:\n"
             "- type: model-filter\n"
             "- type: health-filter\n"
             "- type: saturation-filter\n"
             "- type: queue-scorer\n"
             "- type: kv-cache-utilization-scorer\n"
             "- type: max-score-picker\n"
             "schedulingProfiles:\n"
             "- name: default\n"
             "  plugins:\n"
             "  - pluginRef: model-filter\n"
             "  - pluginRef: health-filter\n"
             "  - pluginRef: saturation-filter\n"
             "  - pluginRef: queue-scorer\n"
             "    weight: 1\n"
             "  - pluginRef: kv-cache-utilization-scorer\n"
             "    weight: 1\n"
             "  - pluginRef: max-score-picker\n"},
    {"prefix-approx",
     "# prefix-approx: approximate prefix-cache affinity with llm-d's default weights (prefix 3,\n"
     "# queue 2, kv-utilization 2); the gateway remembers what it routed where.\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"prefix-approx\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: prefix-cache-scorer\n"
     "  parameters:\n"
     "    blockSize: 16\n"
     "    maxPrefixBlocksToMatch: 256\n"
     "    lruCapacityPerServer: 31250\n"
     "- type: queue-scorer\n"
     "- type: kv-cache-utilization-scorer\n"
     "- type: max-score-picker\n"
     "schedulingProfiles:\n"
     "- name: default\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: queue-scorer\n"
     "    weight: 2\n"
     "  - pluginRef: kv-cache-utilization-scorer\n"
     "    weight: 2\n"
     "  - pluginRef: max-score-picker\n"},
    {"prefix-precise",
     "# prefix-precise: precise prefix-cache affinity from the engines' KV events (prefix 3,\n"
     "# queue 2, kv-utilization 2).\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"prefix-precise\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: precise-prefix-cache-scorer\n"
     "- type: queue-scorer\n"
     "- type: kv-cache-utilization-scorer\n"
     "- type: max-score-picker\n"
     "schedulingProfiles:\n"
     "- name: default\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: precise-prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: queue-scorer\n"
     "    weight: 2\n"
     "  - pluginRef: kv-cache-utilization-scorer\n"
     "    weight: 2\n"
     "  - pluginRef: max-score-picker\n"},
    {"default",
     "# default: precise prefix scoring from KV events plus the approximate index (which still\n"
     "# scores when the precise index has no data), queue depth, KV utilization and in-flight "
     "requests.\n"
     "# Load weights: in-flight requests (tracked by the gateway, no lag) 4, queue 1, KV\n"
     "# utilization 1, instead of llm-d's queue 2 / KV 2: with those, the hot-spot guard could "
     "not\n"
     "# move a hot prefix off its engine. Pending prefill (prompt tokens not cached on the "
     "endpoint,\n"
     "# of requests still waiting for their first token; tracked by the gateway) 4: without it,\n"
     "# equal-sized prompts collided on one engine's prefill and round-robin had the better TTFT\n"
     "# (docs/benchmarks.md, \"Routing experiment\").\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"default\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: prefix-cache-scorer\n"
     "  parameters:\n"
     "    blockSize: 16\n"
     "    maxPrefixBlocksToMatch: 256\n"
     "    lruCapacityPerServer: 31250\n"
     "- type: precise-prefix-cache-scorer\n"
     "- type: queue-scorer\n"
     "- type: kv-cache-utilization-scorer\n"
     "- type: active-request-scorer\n"
     "- type: prefill-load-scorer\n"
     "- type: max-score-picker\n"
     "schedulingProfiles:\n"
     "- name: default\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: precise-prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: queue-scorer\n"
     "    weight: 1\n"
     "  - pluginRef: kv-cache-utilization-scorer\n"
     "    weight: 1\n"
     "  - pluginRef: active-request-scorer\n"
     "    weight: 4\n"
     "  - pluginRef: prefill-load-scorer\n"
     "    weight: 4\n"
     "  - pluginRef: max-score-picker\n"},
    {"pd",
     "# pd: prefill/decode disaggregation (llm-d's disagg-profile-handler and "
     "prefix-based-pd-decider).\n"
     "# The decode profile picks the decode endpoint (role decode or both). When the prompt tokens "
     "not\n"
     "# cached there (prefix index: matched blocks x block size) reach nonCachedTokens, the "
     "prefill\n"
     "# profile picks a prefill endpoint (role prefill or both, never the decode endpoint itself); "
     "it\n"
     "# runs the prompt with max_tokens 1 and answers kv_transfer_params, which the decode "
     "request\n"
     "# carries (vLLM NixlConnector protocol). Header x-switchyard-pd-threshold: N overrides\n"
     "# nonCachedTokens per request (0 = always disaggregate, 4294967296 or more = never).\n"
     "# A failed or slow prefill (prefillTimeoutMs) falls back to local prefill on the decode\n"
     "# endpoint, or with prefillFailurePolicy: retry first tries up to prefillMaxRetries other\n"
     "# prefill endpoints.\n"
     "# Switchyard endpoint-picker config (llm-d EndpointPickerConfig shape), built in as\n"
     "# \"pd\" (gw_sched.c embeds this text;\n"
     "# a unit test checks they match).\n"
     "apiVersion: llm-d.ai/v1alpha1\n"
     "kind: EndpointPickerConfig\n"
     "plugins:\n"
     "- type: model-filter\n"
     "- type: health-filter\n"
     "- type: saturation-filter\n"
     "- type: decode-filter\n"
     "- type: prefill-filter\n"
     "- type: prefix-cache-scorer\n"
     "- type: precise-prefix-cache-scorer\n"
     "- type: queue-scorer\n"
     "- type: kv-cache-utilization-scorer\n"
     "- type: active-request-scorer\n"
     "- type: prefill-load-scorer\n"
     "- type: max-score-picker\n"
     "- type: prefix-based-pd-decider\n"
     "  parameters:\n"
     "    nonCachedTokens: 16\n"
     "- type: disagg-profile-handler\n"
     "  parameters:\n"
     "    decodeProfile: decode\n"
     "    prefillProfile: prefill\n"
     "    prefillTimeoutMs: 30000\n"
     "    prefillFailurePolicy: fallback\n"
     "    prefillMaxRetries: 1\n"
     "schedulingProfiles:\n"
     "- name: decode\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: decode-filter\n"
     "  - pluginRef: prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: precise-prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: queue-scorer\n"
     "    weight: 1\n"
     "  - pluginRef: kv-cache-utilization-scorer\n"
     "    weight: 1\n"
     "  - pluginRef: active-request-scorer\n"
     "    weight: 4\n"
     "  - pluginRef: max-score-picker\n"
     "- name: prefill\n"
     "  plugins:\n"
     "  - pluginRef: model-filter\n"
     "  - pluginRef: health-filter\n"
     "  - pluginRef: saturation-filter\n"
     "  - pluginRef: prefill-filter\n"
     "  - pluginRef: prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: precise-prefix-cache-scorer\n"
     "    weight: 3\n"
     "  - pluginRef: queue-scorer\n"
     "    weight: 1\n"
     "  - pluginRef: prefill-load-scorer\n"
     "    weight: 4\n"
     "  - pluginRef: max-score-picker\n"},
};

static const char *const builtin_names[] = {"round-robin",    "random",  "load", "prefix-approx",
                                            "prefix-precise", "default", "pd",   NULL};

const char *const *gws_builtin_names(void)
{
    return builtin_names;
}

const char *gws_builtin_yaml(const char *name)
{
    for (size_t i = 0; name != NULL && i < NPARAMS(builtins); i++) {
        if (strcmp(builtins[i].name, name) == 0)
            return builtins[i].yaml;
    }
    return NULL;
}

int gws_config_builtin(const char *name, gws_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *y = gws_builtin_yaml(name);
    if (y == NULL) {
        seterr(err, errlen,
               "unknown built-in scheduler '%s' (known: round-robin, random, load, "
               "prefix-approx, prefix-precise, default, pd)",
               name ? name : "(null)");
        return ST_NOTFOUND;
    }
    return gws_config_load_text(y, strlen(y), out, err, errlen);
}

/* ---- accessors -------------------------------------------------------------------------- */

void gws_sched_seed(gws_sched_t *s, uint64_t seed)
{
    s->rng = seed;
}

unsigned gws_sched_needs(const gws_sched_t *s)
{
    return s->needs;
}

void gws_sched_approx_params(const gws_sched_t *s, gws_approx_params_t *out)
{
    out->chunk_chars = 16 * 4;
    out->max_chunks = 256;
    out->lru_capacity = 31250;
    for (uint32_t i = 0; i < s->n_plugins; i++) {
        if (s->plugins[i]->type == &approx_prefix_scorer_type) {
            const prefix_scorer_t *ps = (const prefix_scorer_t *)s->plugins[i];
            out->chunk_chars = (size_t)ps->block_size * 4;
            out->max_chunks = (size_t)ps->max_blocks;
            out->lru_capacity = (size_t)ps->lru_cap;
            return;
        }
    }
}

void gws_sched_stats(const gws_sched_t *s, gws_stats_t *out)
{
    *out = s->stats;
}

bool gws_sched_pd(const gws_sched_t *s, gws_pd_config_t *out)
{
    *out = s->pd;
    return out->enabled;
}

static int describe_plugin(sy_buf_t *b, const char *role, const gws_plugin_t *p, double w,
                           bool with_weight)
{
    int rc = sy_buf_appendf(b, "  %s %s type=%s/%" PRIu32, role, p->name, p->type->name,
                            p->type->version);
    if (rc == ST_OK && with_weight)
        rc = sy_buf_appendf(b, " weight=%.17g", w);
    for (size_t i = 0; rc == ST_OK && i < p->type->n_params; i++) {
        const gws_param_t *d = &p->type->params[i];
        const char *f = (const char *)p + d->offset;
        switch (d->type) {
        case GWS_P_INT:
            rc = sy_buf_appendf(b, " %s=%" PRId64, d->key, *(const int64_t *)(const void *)f);
            break;
        case GWS_P_DOUBLE:
            rc = sy_buf_appendf(b, " %s=%.17g", d->key, *(const double *)(const void *)f);
            break;
        case GWS_P_BOOL:
            rc = sy_buf_appendf(b, " %s=%s", d->key, *(const bool *)f ? "true" : "false");
            break;
        case GWS_P_STRING: {
            const char *v = *(const char *const *)(const void *)f;
            rc = sy_buf_appendf(b, " %s=\"%s\"", d->key, v ? v : "");
            break;
        }
        }
    }
    return rc == ST_OK ? sy_buf_append_char(b, '\n') : rc;
}

int gws_sched_describe(const gws_sched_t *s, sy_buf_t *out)
{
    int rc = ST_OK;
    for (uint32_t i = 0; rc == ST_OK && i < s->n_profiles; i++) {
        const gws_profile_t *pf = &s->profiles[i];
        rc = sy_buf_appendf(out, "profile %s\n", pf->name);
        for (uint32_t j = 0; rc == ST_OK && j < pf->n_filters; j++)
            rc = describe_plugin(out, "filter", pf->filters[j], 0, false);
        for (uint32_t j = 0; rc == ST_OK && j < pf->n_scorers; j++)
            rc = describe_plugin(out, "scorer", pf->scorers[j], pf->weights[j], true);
        if (rc == ST_OK)
            rc = describe_plugin(out, "picker", pf->picker, 0, false);
    }
    const gws_pd_config_t *pd = &s->pd;
    if (rc == ST_OK && pd->enabled)
        rc = sy_buf_appendf(
            out,
            "pd decode=%s prefill=%s threshold=%" PRIu64 " timeoutMs=%" PRIu32
            " policy=%s maxRetries=%" PRIu32 "\n",
            pd->decode_profile, pd->prefill_profile, pd->threshold, pd->prefill_timeout_ms,
            pd->policy == GWS_PD_RETRY ? "retry" : "fallback", pd->prefill_max_retries);
    return rc;
}

/* ---- picking ---------------------------------------------------------------------------- */

static void cached_counts(const uint32_t *hits, gw_endpoint_t *const *eps, size_t n, int32_t chosen,
                          uint32_t *at_chosen, uint32_t *best)
{
    *at_chosen = 0;
    *best = 0;
    if (hits == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        uint32_t h = hits[eps[i]->id];
        *best = h > *best ? h : *best;
    }
    if (chosen >= 0)
        *at_chosen = hits[eps[chosen]->id];
}

/* Zeroes v[i] for every i < n that is not a candidate. */
static void zero_filtered(double *v, const uint8_t *is_cand, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_cand[i])
            v[i] = 0;
}

int gws_pick(gws_sched_t *s, const char *profile, gws_request_t *req,
             gw_endpoint_t *const *endpoints, size_t n, pidx_t *precise, aidx_t *approx,
             gws_decision_t *out)
{
    memset(out, 0, sizeof *out);
    out->chosen = -1;
    out->endpoints = endpoints;
    if (s == NULL || req == NULL || n > GW_MAX_ENDPOINTS || (endpoints == NULL && n > 0))
        return ST_INVAL;
    out->n_endpoints = (uint32_t)n;
    const gws_profile_t *pf = NULL;
    for (uint32_t i = 0; i < s->n_profiles && pf == NULL; i++) {
        if (profile == NULL || strcmp(s->profiles[i].name, profile) == 0)
            pf = &s->profiles[i];
    }
    if (pf == NULL)
        return ST_NOTFOUND;
    out->profile = pf->name;

    /* prefix matches, once per request, keyed by endpoint id */
    uint32_t n_ids = 0;
    for (size_t i = 0; i < n; i++) {
        SY_ASSERT(endpoints[i]->id < GW_MAX_ENDPOINTS);
        n_ids = endpoints[i]->id + 1 > n_ids ? endpoints[i]->id + 1 : n_ids;
    }
    req->precise_hits = NULL;
    req->approx_hits = NULL;
    if (precise != NULL && req->block_hashes != NULL && req->n_block_hashes > 0 && n_ids > 0) {
        pidx_match(precise, req->block_hashes, req->n_block_hashes, s->precise_hits, n_ids);
        req->precise_hits = s->precise_hits;
    }
    if (approx != NULL && req->chunk_hashes != NULL && req->n_chunk_hashes > 0 && n_ids > 0) {
        aidx_match(approx, req->chunk_hashes, req->n_chunk_hashes, s->approx_hits, n_ids);
        req->approx_hits = s->approx_hits;
    }

    /* filters */
    gws_ctx_t c = {req, endpoints, n, s->cand, n, &s->rng, false};
    for (size_t i = 0; i < n; i++)
        s->cand[i] = (uint32_t)i;
    for (uint32_t f = 0; f < pf->n_filters && c.n_cand > 0; f++) {
        size_t before = c.n_cand;
        int rc = pf->filters[f]->type->filter(pf->filters[f], &c);
        if (rc != ST_OK)
            c.n_cand = before; /* ST_DECLINED: no opinion */
        SY_ASSERT(c.n_cand <= before);
    }
    memset(s->is_cand, 0, n);
    for (size_t i = 0; i < c.n_cand; i++)
        s->is_cand[c.cand[i]] = 1;
    out->n_candidates = (uint32_t)c.n_cand;
    out->n_scorers = pf->n_scorers;
    out->candidate = s->is_cand;
    out->total = s->total;

    /* weighted scorers. No memset of the per-endpoint rows (a `rep stos` for a few bytes was the
     * largest cost of a pick): candidates' entries are written below, the filtered endpoints'
     * ones zeroed (zero_filtered). cand_score is all zeros on entry to every scorer: zeroed at
     * load and again as each value is taken. */
    bool filtered = c.n_cand < n;
    if (pf->n_scorers == 0) /* no scorer: every candidate totals 0 (the first one below assigns) */
        memset(s->cand_total, 0, c.n_cand * sizeof *s->cand_total);
    for (uint32_t j = 0; j < pf->n_scorers; j++) {
        double *row = s->score + (size_t)j * GW_MAX_ENDPOINTS;
        if (filtered)
            zero_filtered(row, s->is_cand, n);
        out->scorer_names[j] = pf->scorers[j]->name;
        out->weights[j] = pf->weights[j];
        out->score[j] = row;
        if (c.n_cand == 0)
            continue;
        pf->scorers[j]->type->score(pf->scorers[j], &c, s->cand_score);
        double w = pf->weights[j];
        for (size_t i = 0; i < c.n_cand; i++) {
            double v = s->cand_score[i];
            s->cand_score[i] = 0;
            v = v >= 0 ? (v <= 1 ? v : 1) : 0; /* clamp; NaN -> 0 */
            row[c.cand[i]] = v;
            s->cand_total[i] = (j ? s->cand_total[i] : 0) + w * v;
        }
    }
    if (filtered)
        zero_filtered(s->total, s->is_cand, n);
    for (size_t i = 0; i < c.n_cand; i++)
        s->total[c.cand[i]] = s->cand_total[i];

    /* picker */
    int rc = ST_NOTFOUND;
    if (c.n_cand > 0) {
        size_t k = pf->picker->type->pick(pf->picker, &c, s->cand_total);
        SY_ASSERT(k < c.n_cand);
        out->chosen = (int32_t)c.cand[k];
        out->endpoint = endpoints[out->chosen];
        s->stats.picks++;
        rc = ST_OK;
    } else {
        s->stats.no_candidate++;
    }
    out->hotspot = c.hotspot;
    s->stats.hotspot_fired += c.hotspot;
    cached_counts(req->precise_hits, endpoints, n, out->chosen, &out->cached_blocks_chosen,
                  &out->cached_blocks_best);
    cached_counts(req->approx_hits, endpoints, n, out->chosen, &out->cached_chunks_chosen,
                  &out->cached_chunks_best);
    return rc;
}

/* ---- decision rendering ----------------------------------------------------------------- */

static int json_name(sy_buf_t *b, const char *key, const char *v)
{
    int rc = sy_buf_appendf(b, "\"%s\":\"", key);
    if (rc == ST_OK)
        rc = sy_buf_append_json_str(b, v, strlen(v));
    return rc == ST_OK ? sy_buf_append_char(b, '"') : rc;
}

int gws_decision_json(const gws_decision_t *d, size_t max_others, sy_buf_t *out)
{
    int rc = sy_buf_append_char(out, '{');
    if (rc == ST_OK)
        rc = json_name(out, "profile", d->profile ? d->profile : "");
    if (rc == ST_OK && d->endpoint != NULL) {
        rc = sy_buf_append_char(out, ',');
        if (rc == ST_OK)
            rc = json_name(out, "endpoint", d->endpoint->name);
        if (rc == ST_OK)
            rc = sy_buf_appendf(out, ",\"total\":%.4g,\"scores\":{", d->total[d->chosen]);
        for (uint32_t j = 0; rc == ST_OK && j < d->n_scorers; j++) {
            rc = sy_buf_appendf(out, "%s\"", j ? "," : "");
            if (rc == ST_OK)
                rc = sy_buf_append_json_str(out, d->scorer_names[j], strlen(d->scorer_names[j]));
            if (rc == ST_OK)
                rc = sy_buf_appendf(out, "\":%.4g", d->score[j][d->chosen]);
        }
        if (rc == ST_OK)
            rc = sy_buf_append_char(out, '}');
    } else if (rc == ST_OK) {
        rc = sy_buf_append_str(out, ",\"endpoint\":null");
    }
    if (rc == ST_OK)
        rc = sy_buf_appendf(
            out,
            ",\"candidates\":%" PRIu32 ",\"endpoints\":%" PRIu32 ",\"cachedBlocks\":[%" PRIu32
            ",%" PRIu32 "],\"cachedChunks\":[%" PRIu32 ",%" PRIu32 "],\"hotspot\":%s",
            d->n_candidates, d->n_endpoints, d->cached_blocks_chosen, d->cached_blocks_best,
            d->cached_chunks_chosen, d->cached_chunks_best, d->hotspot ? "true" : "false");
    if (rc == ST_OK && max_others > 0 && d->candidate != NULL) {
        rc = sy_buf_append_str(out, ",\"others\":[");
        /* next best candidates by (total desc, index asc), excluding the chosen one */
        double prev_t = INFINITY;
        int64_t prev_i = -1;
        for (size_t k = 0; rc == ST_OK && k < max_others; k++) {
            int64_t sel = -1;
            for (uint32_t i = 0; i < d->n_endpoints; i++) {
                if (!d->candidate[i] || (int32_t)i == d->chosen)
                    continue;
                double t = d->total[i];
                bool after_prev = t < prev_t || (t == prev_t && (int64_t)i > prev_i);
                if (!after_prev)
                    continue;
                if (sel < 0 || t > d->total[sel] || (t == d->total[sel] && i < sel))
                    sel = i;
            }
            if (sel < 0)
                break;
            rc = sy_buf_appendf(out, "%s{", k ? "," : "");
            if (rc == ST_OK)
                rc = json_name(out, "endpoint", d->endpoints[sel]->name);
            if (rc == ST_OK)
                rc = sy_buf_appendf(out, ",\"total\":%.4g}", d->total[sel]);
            prev_t = d->total[sel];
            prev_i = sel;
        }
        if (rc == ST_OK)
            rc = sy_buf_append_char(out, ']');
    }
    return rc == ST_OK ? sy_buf_append_char(out, '}') : rc;
}
