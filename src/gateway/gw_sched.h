/*
 * gw_sched.h - the endpoint picker: llm-d's scheduling pipeline (research/llm-d.md §2).
 *
 * A scheduler (gws_sched_t) is built from an EndpointPickerConfig YAML (llm-d's shape) or from
 * a named built-in (each is literally deploy/scheduler/<name>.yaml). It holds plugin instances
 * and scheduling profiles; a profile is an ordered chain
 *     filters -> weighted scorers -> one picker
 * run by gws_pick for one request over the current endpoints:
 *   1. filters narrow the candidate set in config order (ST_OK = kept a subset, ST_DECLINED =
 *      no opinion);
 *   2. every scorer writes a score per candidate, clamped to [0,1]; total = sum weight*score;
 *   3. the picker chooses one candidate from the totals (with the scheduler's RNG).
 * The per-endpoint prefix matches (pidx_match / aidx_match) are computed once per request by
 * gws_pick, before the chain, and handed to the scorers through the request.
 *
 * Hot-spot guard (ours, not llm-d's): a prefix scorer (prefix-cache-scorer,
 * precise-prefix-cache-scorer) looks at the endpoints holding its best score; if one's in-flight
 * requests exceed hotspotFactor x (mean in-flight of the other healthy candidates) + hotspotSlack,
 * that endpoint's prefix score is multiplied by hotspotPenalty for this decision. One very popular
 * prefix therefore cannot pile all traffic onto one endpoint. Parameters hotspotGuard (true),
 * hotspotFactor (2.0), hotspotSlack (4), hotspotPenalty (0.5); counted in gws_stats_t.
 *
 * P/D disaggregation (llm-d's disagg-profile-handler, research/llm-d.md §4.1): a config turns it
 * on with a profile handler plugin, and the proxy then runs two profiles per request (gw_proxy.h):
 *   - type: disagg-profile-handler        (also accepted: llm-d's older pd-profile-handler, whose
 *     parameters:                          `threshold` means nonCachedTokens and whose
 *       decodeProfile: decode              `hashBlockSize` is accepted and ignored: the block
 *       prefillProfile: prefill            size is the gateway's --block-size)
 *       nonCachedTokens: 16        prompt tokens not cached on the chosen decode endpoint from
 *                                  which a prefill endpoint runs the prompt first; 0 = never
 *                                  (llm-d's meaning); llm-d's default is 0, ours 16 (its examples)
 *       prefillTimeoutMs: 30000    a prefill call taking longer counts as failed
 *       prefillFailurePolicy: fallback   fallback = the decode endpoint prefills locally;
 *                                  retry = another prefill endpoint, up to prefillMaxRetries,
 *                                  then fallback
 *       prefillMaxRetries: 1
 * A prefix-based-pd-decider plugin (parameter nonCachedTokens, same meaning) or an
 * always-disagg-pd-decider in the same config overrides the handler's threshold. A config with
 * profiles named "decode" and "prefill" and no profile handler gets P/D with these defaults;
 * single-profile-handler (P/D off) and prefill-header-handler (llm-d's header for its sidecar; the
 * gateway talks to the prefill endpoint itself) are accepted as no-ops, so llm-d's configs load.
 * deploy/scheduler/pd.yaml is the built-in "pd". gws_sched_pd reports the result.
 * Does not: tokenize or hash prompts (the caller fills gws_request_t), record routing decisions
 * in the approximate index (the caller calls aidx_record for the chosen endpoint), track
 * in-flight load (the proxy updates gw_endpoint_t), or send prefill requests (the proxy does).
 * Thread-safety: a gws_sched_t is used by one thread at a time (gws_pick writes scratch storage
 * inside it); use one scheduler per loop thread. Loading is pure and thread-safe.
 */
#ifndef SY_GW_SCHED_H
#define SY_GW_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "gateway/approx_index.h"
#include "gateway/gw_endpoint.h"
#include "gateway/prefix_index.h"

#define GWS_NAME_MAX 64    /* plugin and profile names, NUL included */
#define GWS_MAX_PLUGINS 32 /* plugin instances per config */
#define GWS_MAX_PROFILES 8 /* scheduling profiles per config */
#define GWS_MAX_FILTERS 16 /* filters per profile */
#define GWS_MAX_SCORERS 16 /* scorers per profile */
#define GWS_ERR_MAX 256    /* recommended size of a load error buffer */

typedef struct gws_sched gws_sched_t;

/* ---- request ---------------------------------------------------------------------------- */

/* One request, as the caller knows it. All pointers are borrowed for the gws_pick call. */
typedef struct gws_request {
    const char *model;  /* requested model (NUL-terminated); NULL or "" = model-filter passes */
    const char *prompt; /* prompt bytes the approximate hashes were computed from (may be NULL) */
    size_t prompt_len;
    const uint64_t *block_hashes; /* precise KV block keys (prefix_index.h), may be NULL */
    size_t n_block_hashes;
    const uint64_t *chunk_hashes; /* approximate chunk hashes (aidx_hash_prompt), may be NULL */
    size_t n_chunk_hashes;
    uint32_t prompt_tokens; /* estimated prompt tokens (chars/4 without a tokenizer) */
    const char *session;    /* endpoint name from the session header (decoded), NULL/"" none */
    const char *cache_salt; /* request's cache_salt (already folded into hashes), may be NULL */
    /* Scratch filled by gws_pick before the chain runs (plugins read, nobody frees); indexed by
     * gw_endpoint_t.id; NULL when that index or those hashes were not given. */
    const uint32_t *precise_hits; /* leading block_hashes held, per endpoint id */
    const uint32_t *approx_hits;  /* leading chunk_hashes held, per endpoint id */
} gws_request_t;

/* ---- decision --------------------------------------------------------------------------- */

/* The outcome of gws_pick. Arrays point into the scheduler's storage (allocated at load) and
 * are valid until the next gws_pick on the same scheduler; they are indexed like the
 * endpoints[] array passed to gws_pick (n_endpoints entries). */
typedef struct gws_decision {
    gw_endpoint_t *endpoint;         /* chosen (borrowed), or NULL: answer 503 */
    int32_t chosen;                  /* index into endpoints[], -1 when none */
    const char *profile;             /* profile that ran (borrowed from the scheduler) */
    gw_endpoint_t *const *endpoints; /* the array given to gws_pick (borrowed) */
    uint32_t n_endpoints;
    uint32_t n_candidates; /* survivors of the filters */
    uint32_t n_scorers;
    const char *scorer_names[GWS_MAX_SCORERS]; /* plugin names, in profile order */
    double weights[GWS_MAX_SCORERS];
    const uint8_t *candidate;             /* [n_endpoints] 1 = survived the filters */
    const double *total;                  /* [n_endpoints] sum of weight*score (0 if filtered) */
    const double *score[GWS_MAX_SCORERS]; /* [n_endpoints] per scorer, in [0,1] */
    uint32_t cached_blocks_chosen;        /* precise: leading blocks the chosen endpoint holds */
    uint32_t cached_blocks_best;   /* precise: best over all endpoints given (routing regret) */
    uint32_t cached_chunks_chosen; /* approximate: same, in chunks */
    uint32_t cached_chunks_best;
    bool hotspot; /* the hot-spot guard fired in this decision */
} gws_decision_t;

typedef struct gws_stats {
    uint64_t picks;         /* gws_pick calls that chose an endpoint */
    uint64_t no_candidate;  /* gws_pick calls where no endpoint survived the filters */
    uint64_t hotspot_fired; /* decisions where the hot-spot guard scaled a prefix score */
} gws_stats_t;

/* What the configuration consumes, so the caller hashes only what is needed. */
#define GWS_NEEDS_PRECISE 1u /* a precise-prefix-cache-scorer: fill block_hashes, pass pidx */
#define GWS_NEEDS_APPROX 2u  /* a prefix-cache-scorer: fill chunk_hashes, pass aidx, record */
#define GWS_NEEDS_SESSION 4u /* a session-affinity-scorer: fill session */

/* P/D disaggregation as configured (see the file comment). Strings point into the scheduler. */
typedef enum gws_pd_policy {
    GWS_PD_FALLBACK = 0, /* a failed prefill: the decode endpoint prefills locally */
    GWS_PD_RETRY = 1,    /* a failed prefill: another prefill endpoint (max_retries), then local */
} gws_pd_policy_t;

typedef struct gws_pd_config {
    bool enabled;
    const char *decode_profile;  /* profile picking the decode endpoint (borrowed) */
    const char *prefill_profile; /* profile picking the prefill endpoint (borrowed) */
    uint64_t threshold;          /* uncached prompt tokens from which to disaggregate; 0 = always,
                                  * UINT64_MAX = never */
    uint32_t prefill_timeout_ms;
    gws_pd_policy_t policy;
    uint32_t prefill_max_retries; /* other prefill endpoints tried with GWS_PD_RETRY */
} gws_pd_config_t;

/* Approximate-index parameters of the config's first prefix-cache-scorer (llm-d defaults when
 * there is none): how to call aidx_hash_prompt and size aidx LRUs. */
typedef struct gws_approx_params {
    size_t chunk_chars;  /* blockSize (tokens, 16) x 4 chars per token = 64 */
    size_t max_chunks;   /* maxPrefixBlocksToMatch, 256 */
    size_t lru_capacity; /* lruCapacityPerServer, 31,250 */
} gws_approx_params_t;

/* ---- loading ---------------------------------------------------------------------------- */

/* Parses an EndpointPickerConfig from text[0..len). On success returns ST_OK and *out = owned
 * scheduler (free with gws_sched_destroy). On failure returns ST_INVAL (bad config; err names
 * the line and key, e.g. "line 7: plugin 'q' (queue-scorer): unknown parameter 'foo'"),
 * ST_NOMEM, or ST_LIMIT (too many plugins/profiles), and *out = NULL. err may be NULL. */
int gws_config_load_text(const char *text, size_t len, gws_sched_t **out, char *err, size_t errlen);
/* Same, reading the file at path (errors also for unreadable files: -errno). */
int gws_config_load_file(const char *path, gws_sched_t **out, char *err, size_t errlen);
/* Builds the built-in config `name`: "round-robin", "random", "load", "prefix-approx",
 * "prefix-precise", "default", "pd". ST_NOTFOUND for other names. */
int gws_config_builtin(const char *name, gws_sched_t **out, char *err, size_t errlen);
/* Returns the YAML text of built-in `name` (static), or NULL. */
const char *gws_builtin_yaml(const char *name);
/* NULL-terminated list of built-in names (static). */
const char *const *gws_builtin_names(void);

void gws_sched_destroy(gws_sched_t *s); /* NULL ok */

/* Reseeds the picker RNG (default: seeded from the clock at load). */
void gws_sched_seed(gws_sched_t *s, uint64_t seed);
/* GWS_NEEDS_* bits of the whole config. */
unsigned gws_sched_needs(const gws_sched_t *s);
void gws_sched_approx_params(const gws_sched_t *s, gws_approx_params_t *out);
void gws_sched_stats(const gws_sched_t *s, gws_stats_t *out);
/* Fills *out with the config's P/D settings (out->enabled false, the rest defaults, when P/D is
 * off) and returns out->enabled. */
bool gws_sched_pd(const gws_sched_t *s, gws_pd_config_t *out);
/* Appends a canonical description of the pipeline (profiles, plugins, every parameter value,
 * weights), one item per line; two schedulers with equal descriptions behave identically.
 * ST_OK or ST_NOMEM. */
int gws_sched_describe(const gws_sched_t *s, sy_buf_t *out);

/* ---- picking ---------------------------------------------------------------------------- */

/* Runs profile `profile` (NULL = the first) for req over endpoints[0..n) (borrowed; n <=
 * GW_MAX_ENDPOINTS; every endpoint's id < GW_MAX_ENDPOINTS). precise / approx (borrowed, may
 * be NULL) are queried once when req has the matching hashes, also for the decision's cached
 * counts when no scorer uses them. Fills *out (always, also on failure).
 * Returns ST_OK (out->endpoint chosen), ST_NOTFOUND (no endpoint survived the filters, or no
 * such profile: out->endpoint NULL), ST_INVAL (n too large). Never allocates. Loop thread. */
int gws_pick(gws_sched_t *s, const char *profile, gws_request_t *req,
             gw_endpoint_t *const *endpoints, size_t n, pidx_t *precise, aidx_t *approx,
             gws_decision_t *out);

/* Appends a compact one-line JSON rendering of d (profile, chosen endpoint with total and
 * per-scorer scores, candidates, cached counts, hot-spot flag, and the next max_others
 * candidates by total) to out, e.g. for an x-switchyard-decision header or a debug log.
 * ST_OK or ST_NOMEM. */
int gws_decision_json(const gws_decision_t *d, size_t max_others, sy_buf_t *out);

/* ---- plugin interface ------------------------------------------------------------------- */
/*
 * A plugin type is a static const gws_plugin_type_t in gw_sched.c's registry, found by its
 * config name. An instance is a struct whose first member is gws_plugin_t, followed by its
 * parameter fields; the type's directive table maps YAML keys to those fields with offsetof.
 * The type's create/destroy are the factory and destructor; built-ins share
 * gws_plugin_create_default (defaults, then YAML values, then init) and
 * gws_plugin_destroy_default.
 */
typedef enum gws_kind {
    GWS_KIND_FILTER = 0,
    GWS_KIND_SCORER = 1,
    GWS_KIND_PICKER = 2,
    GWS_KIND_HANDLER = 3, /* profile handlers, P/D deciders, pre-request plugins: configured under
                           * plugins, never referenced from a profile */
} gws_kind_t;

typedef enum gws_ptype {
    GWS_P_INT = 0,    /* int64_t, YAML integer */
    GWS_P_DOUBLE = 1, /* double, YAML number */
    GWS_P_BOOL = 2,   /* bool, true/false */
    GWS_P_STRING = 3, /* char * (owned by the instance) */
} gws_ptype_t;

typedef struct gws_param {
    const char *key; /* YAML key, llm-d's camelCase */
    gws_ptype_t type;
    size_t offset;   /* offsetof(instance struct, field) */
    const char *def; /* default as YAML scalar text; NULL = 0 / false / NULL */
} gws_param_t;

typedef struct gws_plugin_type gws_plugin_type_t;

/* One YAML parameter handed to a factory: scalar text, 1-based line, quoted or plain. */
typedef struct gws_kv {
    const char *key;
    const char *value;
    int line;
    bool quoted;
} gws_kv_t;

typedef struct gws_plugin {
    const gws_plugin_type_t *type;
    char name[GWS_NAME_MAX];
} gws_plugin_t;

/* What a plugin sees during one gws_pick. cand[] holds positions into eps[]. */
typedef struct gws_ctx {
    gws_request_t *req;
    gw_endpoint_t *const *eps;
    size_t n_eps;
    uint32_t *cand; /* candidate positions; filters compact it in place and update n_cand */
    size_t n_cand;
    uint64_t *rng; /* use gws_rng_* */
    bool hotspot;  /* set by a prefix scorer whose guard fired */
} gws_ctx_t;

struct gws_plugin_type {
    const char *name; /* config type name */
    uint32_t version;
    gws_kind_t kind;
    size_t size; /* instance size, >= sizeof(gws_plugin_t) */
    const gws_param_t *params;
    size_t n_params;
    /* Factory: returns ST_OK and *out (owned, free with destroy), or ST_INVAL / ST_NOMEM with
     * err set ("line N: <type>: ..."). Built-ins use gws_plugin_create_default. */
    int (*create)(const gws_plugin_type_t *t, const gws_kv_t *params, size_t n, gws_plugin_t **out,
                  char *err, size_t errlen);
    void (*destroy)(gws_plugin_t *p); /* NULL ok; built-ins use gws_plugin_destroy_default */
    /* Optional, called by the default factory after parameters are set: range checks.
     * ST_OK or ST_INVAL with err set. */
    int (*init)(gws_plugin_t *p, char *err, size_t errlen);
    /* Filter: ST_OK after compacting c->cand (may leave 0), or ST_DECLINED. */
    int (*filter)(gws_plugin_t *p, gws_ctx_t *c);
    /* Scorer: out[i] for candidate c->cand[i]; clamped to [0,1] by the caller. */
    void (*score)(gws_plugin_t *p, gws_ctx_t *c, double *out);
    /* Picker: returns a candidate position i < c->n_cand (n_cand >= 1); totals[i] per cand. */
    size_t (*pick)(gws_plugin_t *p, gws_ctx_t *c, const double *totals);
};

/* Generic factory: allocates t->size zeroed bytes, applies the directive table's defaults, then
 * params (unknown keys, wrong types -> ST_INVAL naming line and key), then t->init. */
int gws_plugin_create_default(const gws_plugin_type_t *t, const gws_kv_t *params, size_t n,
                              gws_plugin_t **out, char *err, size_t errlen);
/* Frees the instance's string parameters and the instance. NULL ok. */
void gws_plugin_destroy_default(gws_plugin_t *p);
/* Registry lookup by config type name; NULL if unknown. */
const gws_plugin_type_t *gws_plugin_type_find(const char *name);
/* Uniform double in (0,1) / uint64 from the pick's RNG. */
double gws_rng_uniform(gws_ctx_t *c);
uint64_t gws_rng_next(gws_ctx_t *c);

#endif
