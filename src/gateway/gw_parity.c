/*
 * gw_parity.c - active hash-parity verification (contract and state machine in gw_parity.h).
 *
 * One record per table slot, allocated when the slot is first seen subscribed and kept (reset,
 * never freed) until gwpar_destroy, so a call's udata always points at live memory. The probe
 * call's on_done only records how the call ended; the tick turns that into a transition, so every
 * transition runs in one place with one clock.
 *
 * Invariants per state (rec_assert_state):
 *   IDLE    - no call, no tokens armed;
 *   PENDING - no call; next_ms says when the next probe may start;
 *   PROBING - call != NULL or call_done; tokens and exp hold this probe's ids and chain;
 *             the probe is armed in kv_sub;
 *   WAITING - call == NULL; deadline_ms set; the probe is armed;
 *   DONE    - no call, the probe is disarmed, result != GWPAR_PENDING.
 * Thread-safety: see gw_parity.h.
 */
#include "gateway/gw_parity.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "http/http_client.h"

#define GWPAR_BACKOFF_CAP_MS 30000u
#define GWPAR_NO_EVENTS_DELAY_MS 1000u
#define GWPAR_ERR_BODY_MAX 200

typedef enum gwpar_state {
    GWPAR_ST_IDLE = 0,
    GWPAR_ST_PENDING,
    GWPAR_ST_PROBING,
    GWPAR_ST_WAITING,
    GWPAR_ST_DONE,
} gwpar_state_t;

typedef struct gwpar_ep {
    gwpar_t *p;
    uint32_t id;
    const gw_endpoint_t *ep; /* identity of the slot's endpoint (compared, never dereferenced) */
    char name[128];
    gwpar_state_t state;
    gwpar_result_t result;
    uint32_t attempts;        /* failed requests in this round */
    uint32_t no_event_probes; /* probes answered without events in this round */
    uint64_t next_ms;         /* PENDING: earliest start */
    uint64_t deadline_ms;     /* PROBING: request timeout; WAITING: event deadline */
    uint64_t seen_ms;         /* WAITING: first matching event, 0 = none yet */
    uint64_t started_ms;      /* last probe start */
    uint64_t restarts;        /* the subscriber's restart count when this round began */
    char model[256];
    /* the call */
    http_call_t *call;
    bool call_done;
    int call_status; /* on_done status */
    int http_status; /* response status, 0 = no head */
    sy_buf_t err_body;
    /* the probe */
    int32_t *tokens; /* n_tokens, owned */
    size_t n_tokens;
    uint64_t exp[KVSUB_PROBE_MAX_HASHES];
    size_t n_exp;
} gwpar_ep_t;

struct gwpar {
    kvsub_t *sub;
    gwpar_config_t cfg;
    char *seed;       /* owned copy of cfg.hash_seed */
    size_t probe_len; /* tokens per probe */
    uint64_t counter; /* mixes into the PRNG seed */
    mx_family_t *fam; /* NULL without metrics */
    gwpar_ep_t *recs[GW_MAX_ENDPOINTS];
    uint32_t n_recs; /* recs[i] == NULL for i >= n_recs */
};

static const char *const k_result_names[GWPAR_N_RESULTS] = {"pending", "match", "mismatch",
                                                            "no_events", "probe_failed"};

/* ------------------------------------------------------------------ pure helpers */

void gwpar_config_default(gwpar_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->block_size = 16;
    c->wait_ms = 5000;
    c->settle_ms = 250;
    c->request_timeout_ms = 30000;
    c->max_attempts = 5;
    c->backoff_ms = 1000;
    c->no_events_retries = 1;
    c->reprobe_min_ms = 30000;
}

const char *gwpar_result_name(gwpar_result_t r)
{
    return (unsigned)r < GWPAR_N_RESULTS ? k_result_names[r] : "unknown";
}

size_t gwpar_probe_len(uint32_t block_size)
{
    size_t n = (size_t)block_size * 2;
    if (n < GWPAR_MIN_TOKENS)
        n = GWPAR_MIN_TOKENS;
    return n > KVSUB_PROBE_MAX_TOKENS ? KVSUB_PROBE_MAX_TOKENS : n;
}

void gwpar_probe_tokens(uint64_t seed, int32_t *out, size_t n)
{
    /* splitmix64: every seed (0 too) gives a well-mixed stream */
    uint64_t x = seed;
    const uint32_t span = GWPAR_TOKEN_MAX - GWPAR_TOKEN_MIN + 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        out[i] = (int32_t)(GWPAR_TOKEN_MIN + (uint32_t)(z % span));
    }
}

int gwpar_probe_body(sy_buf_t *b, const char *model, const int32_t *tokens, size_t n)
{
    int st = sy_buf_append_str(b, "{\"model\":\"");
    if (st == ST_OK)
        st = sy_buf_append_json_str(b, model, strlen(model));
    if (st == ST_OK)
        st = sy_buf_append_str(b, "\",\"prompt\":[");
    for (size_t i = 0; i < n && st == ST_OK; i++) {
        if (i)
            st = sy_buf_append_char(b, ',');
        if (st == ST_OK)
            st = sy_buf_append_i64(b, tokens[i]);
    }
    if (st == ST_OK)
        st = sy_buf_append_str(b, "],\"max_tokens\":1}");
    return st;
}

void gwpar_compare(const uint64_t *exp, size_t n_exp, uint32_t gw_block_size,
                   const kvsub_probe_result_t *obs, gwpar_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    out->result = GWPAR_NO_EVENTS;
    if (!obs || !obs->seen || obs->n_hashes == 0)
        return;
    if (obs->block_size != gw_block_size) {
        out->result = GWPAR_MISMATCH;
        out->why = "block size differs";
        return;
    }
    size_t n = n_exp < obs->n_hashes ? n_exp : obs->n_hashes;
    for (size_t k = 0; k < n; k++) {
        out->compared = k + 1;
        if (exp[k] != obs->hashes[k]) {
            out->result = GWPAR_MISMATCH;
            out->why = k == 0 ? (obs->has_extra ? "first block hash differs (the engine's event "
                                                  "carries extra keys or a LoRA)"
                                                : "first block hash differs")
                              : "a later block hash differs (chaining or extra keys)";
            out->block = k;
            out->gateway_hash = exp[k];
            out->engine_hash = obs->hashes[k];
            return;
        }
    }
    if (n > 0)
        out->result = GWPAR_MATCH;
}

/* ------------------------------------------------------------------ records */

static void rec_assert_state(const gwpar_ep_t *r)
{
    switch (r->state) {
    case GWPAR_ST_IDLE:
    case GWPAR_ST_PENDING:
        SY_ASSERT(r->call == NULL);
        break;
    case GWPAR_ST_PROBING:
        SY_ASSERT(r->call != NULL || r->call_done);
        SY_ASSERT(r->tokens != NULL && r->n_exp > 0);
        break;
    case GWPAR_ST_WAITING:
        SY_ASSERT(r->call == NULL && r->tokens != NULL);
        break;
    case GWPAR_ST_DONE:
        SY_ASSERT(r->call == NULL && r->result != GWPAR_PENDING);
        break;
    }
}

/* Writes the gauges of r's slot: 1 on result, 0 on the others (all 0 when clear). */
static void rec_publish(gwpar_t *p, const gwpar_ep_t *r, gwpar_result_t result, bool clear)
{
    if (!p->fam)
        return;
    for (int k = 0; k < GWPAR_N_RESULTS; k++) {
        const char *lv[] = {r->name, k_result_names[k]};
        mx_series_t *s = mx_series_get(p->fam, lv, 2);
        if (s)
            mx_gauge_set(s, !clear && (gwpar_result_t)k == result ? 1 : 0);
    }
}

static void rec_set_result(gwpar_ep_t *r, gwpar_result_t result)
{
    r->result = result;
    rec_publish(r->p, r, result, false);
}

/* Ends the call without callbacks (cancel) and disarms the probe. */
static void rec_stop_probe(gwpar_ep_t *r, bool cancel_call)
{
    if (r->call && cancel_call)
        http_call_cancel(r->call);
    r->call = NULL;
    r->call_done = false;
    sy_buf_reset(&r->err_body);
    kvsub_probe_disarm(r->p->sub, r->id);
    sy_free(r->tokens);
    r->tokens = NULL;
    r->n_tokens = 0;
    r->n_exp = 0;
}

/* Starts a new round for r (attempt counters cleared) in PENDING. */
static void rec_begin_round(gwpar_ep_t *r, uint64_t now, uint64_t restarts)
{
    r->state = GWPAR_ST_PENDING;
    r->attempts = 0;
    r->no_event_probes = 0;
    r->next_ms = now;
    r->restarts = restarts;
    rec_set_result(r, GWPAR_PENDING);
}

static void rec_done(gwpar_ep_t *r, gwpar_result_t result)
{
    rec_stop_probe(r, true);
    r->state = GWPAR_ST_DONE;
    rec_set_result(r, result);
}

/* ------------------------------------------------------------------ the probe call */

static void probe_on_head(http_call_t *c, int status, const http_header_t *h, size_t n, void *udata)
{
    (void)c;
    (void)h;
    (void)n;
    gwpar_ep_t *r = udata;
    r->http_status = status;
}

static void probe_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    (void)c;
    gwpar_ep_t *r = udata;
    if (r->http_status != 200 && r->err_body.len < GWPAR_ERR_BODY_MAX) {
        size_t room = GWPAR_ERR_BODY_MAX - r->err_body.len;
        sy_buf_append(&r->err_body, data, len < room ? len : room);
    }
}

static void probe_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    (void)first_byte;
    gwpar_ep_t *r = udata;
    r->call = NULL;
    r->call_done = true;
    r->call_status = status;
}

static const http_call_cbs_t k_probe_cbs = {probe_on_head, probe_on_data, probe_on_done};

static const char *seed_text(const gwpar_t *p)
{
    return p->seed ? p->seed : "<unset: random per process>";
}

/* A probe request failed (why: text for the log): retry later or give up. */
static void probe_failed(gwpar_ep_t *r, uint64_t now, const char *why)
{
    gwpar_t *p = r->p;
    rec_stop_probe(r, true);
    r->attempts++;
    if (r->attempts >= p->cfg.max_attempts) {
        sy_error("gateway.hash_parity_probe_failed",
                 "endpoint=%s result=probe_failed attempts=%u why=\"%s\" msg=\"could not verify "
                 "KV-event hash parity with this endpoint; prefix-precise routing to it is "
                 "unverified\"",
                 r->name, r->attempts, why);
        r->state = GWPAR_ST_DONE;
        rec_set_result(r, GWPAR_PROBE_FAILED);
        return;
    }
    uint64_t delay = (uint64_t)p->cfg.backoff_ms << (r->attempts - 1 < 20 ? r->attempts - 1 : 20);
    if (delay > GWPAR_BACKOFF_CAP_MS)
        delay = GWPAR_BACKOFF_CAP_MS;
    sy_info("gateway.hash_parity_retry", "endpoint=%s attempt=%u why=\"%s\" retry_in_ms=%" PRIu64,
            r->name, r->attempts, why, delay);
    r->state = GWPAR_ST_PENDING;
    r->next_ms = now + delay;
}

/* PENDING -> PROBING: fresh ids, the gateway's chain over them, arm, send. */
static void probe_start(gwpar_ep_t *r, const gw_endpoint_t *ep, http_upstream_t *up, uint64_t now)
{
    gwpar_t *p = r->p;
    sy_buf_t body = SY_BUF_INIT;
    snprintf(r->model, sizeof r->model, "%s", ep->models[0]);
    r->n_tokens = p->probe_len;
    r->tokens = sy_malloc(r->n_tokens * sizeof(int32_t));
    if (!r->tokens) {
        probe_failed(r, now, "out of memory");
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    seed ^= (uint64_t)r->id << 48 ^ ++p->counter * 0x9e3779b97f4a7c15ull;
    gwpar_probe_tokens(seed, r->tokens, r->n_tokens);
    size_t nb = kvh_chain_low64(&p->cfg.none_hash, p->cfg.block_size, r->tokens, r->n_tokens, NULL,
                                0, r->exp, KVSUB_PROBE_MAX_HASHES);
    r->n_exp = nb < KVSUB_PROBE_MAX_HASHES ? nb : KVSUB_PROBE_MAX_HASHES;
    int st = kvsub_probe_arm(p->sub, r->id, r->tokens, r->n_tokens);
    if (st == ST_NOTFOUND) { /* unsubscribed meanwhile: forget the slot until it is back */
        rec_stop_probe(r, true);
        r->state = GWPAR_ST_IDLE;
        rec_publish(p, r, GWPAR_PENDING, true);
        return;
    }
    if (st == ST_OK)
        st = gwpar_probe_body(&body, r->model, r->tokens, r->n_tokens);
    r->http_status = 0;
    r->call_done = false;
    sy_buf_reset(&r->err_body);
    if (st == ST_OK)
        st = http_call_start(up, "POST", "/v1/completions", "Content-Type: application/json\r\n",
                             body.data, body.len, &k_probe_cbs, r, &r->call);
    sy_buf_deinit(&body);
    if (st != ST_OK) {
        r->call = NULL;
        probe_failed(r, now, st_str(st));
        return;
    }
    r->state = GWPAR_ST_PROBING;
    r->started_ms = now;
    r->deadline_ms = now + p->cfg.request_timeout_ms;
    r->seen_ms = 0;
    sy_debug("gateway.hash_parity_probe", "endpoint=%s model=\"%s\" tokens=%zu blocks=%zu", r->name,
             r->model, r->n_tokens, r->n_exp);
}

/* PROBING: the call ended or timed out. */
static void step_probing(gwpar_ep_t *r, uint64_t now)
{
    if (!r->call_done) {
        if (now >= r->deadline_ms)
            probe_failed(r, now, "request timeout");
        return;
    }
    r->call_done = false;
    if (r->call_status != ST_OK) {
        probe_failed(r, now, st_str(r->call_status));
        return;
    }
    if (r->http_status != 200) {
        char why[GWPAR_ERR_BODY_MAX + 64];
        snprintf(why, sizeof why, "HTTP %d: %.*s", r->http_status, (int)r->err_body.len,
                 r->err_body.data ? r->err_body.data : "");
        for (char *c = why; *c; c++) /* keep the log line one line and quote-safe */
            if (*c == '"' || *c == '\n' || *c == '\r')
                *c = '\'';
        probe_failed(r, now, why);
        return;
    }
    r->state = GWPAR_ST_WAITING;
    r->deadline_ms = now + r->p->cfg.wait_ms;
}

static void report_verdict(gwpar_ep_t *r, const gwpar_verdict_t *v, const kvsub_probe_result_t *o)
{
    gwpar_t *p = r->p;
    if (v->result == GWPAR_MATCH) {
        sy_info("gateway.hash_parity", "endpoint=%s result=match blocks=%zu block_size=%u", r->name,
                v->compared, p->cfg.block_size);
        return;
    }
    sy_error("gateway.hash_parity_mismatch",
             "endpoint=%s result=mismatch why=\"%s\" block=%zu gateway_hash=%" PRIu64
             " engine_hash=%" PRIu64 " gateway_pythonhashseed=\"%s\" gateway_block_size=%u "
             "engine_block_size=%u msg=\"the gateway's block hashes differ from this engine's, so "
             "prefix-precise routing will never find a hit on it: set PYTHONHASHSEED identically "
             "on the engines and the gateway, and the gateway's --block-size to the engines' "
             "block size\"",
             r->name, v->why, v->block, v->gateway_hash, v->engine_hash, seed_text(p),
             p->cfg.block_size, o->block_size);
}

/* WAITING: compare once the events are in, or give up at the deadline. */
static void step_waiting(gwpar_ep_t *r, uint64_t now)
{
    gwpar_t *p = r->p;
    kvsub_probe_result_t obs, *o = &obs;
    if (kvsub_probe_get(p->sub, r->id, o) != ST_OK)
        o->seen = false;
    if (o->seen && o->n_hashes > 0) {
        if (!r->seen_ms)
            r->seen_ms = now;
        gwpar_verdict_t v;
        gwpar_compare(r->exp, r->n_exp, p->cfg.block_size, o, &v);
        bool complete = o->block_size == 0 || o->n_tokens + o->block_size > r->n_tokens ||
                        o->n_hashes >= KVSUB_PROBE_MAX_HASHES;
        if (v.result == GWPAR_MISMATCH || complete || now >= r->seen_ms + p->cfg.settle_ms ||
            now >= r->deadline_ms) {
            report_verdict(r, &v, o);
            rec_done(r, v.result);
        }
        return;
    }
    if (now < r->deadline_ms)
        return;
    r->no_event_probes++;
    if (r->no_event_probes <= p->cfg.no_events_retries) {
        sy_info("gateway.hash_parity_retry",
                "endpoint=%s why=\"no BlockStored within %u ms\" retry_in_ms=%u", r->name,
                p->cfg.wait_ms, GWPAR_NO_EVENTS_DELAY_MS);
        rec_stop_probe(r, true);
        r->state = GWPAR_ST_PENDING;
        r->next_ms = now + GWPAR_NO_EVENTS_DELAY_MS;
        return;
    }
    sy_warn(
        "gateway.hash_parity_no_events",
        "endpoint=%s result=no_events probes=%u wait_ms=%u msg=\"the probe request was "
        "answered but no BlockStored event for it arrived: prefix-precise routing will not "
        "work for this endpoint; check the engine's --kv-events-config (enable_kv_cache_events, "
        "endpoint, topic), prefix caching, and the gateway's kv-events address\"",
        r->name, r->no_event_probes, p->cfg.wait_ms);
    rec_done(r, GWPAR_NO_EVENTS);
}

/* ------------------------------------------------------------------ public */

gwpar_t *gwpar_create(kvsub_t *sub, const gwpar_config_t *cfg, int *status)
{
    int st = ST_INVAL;
    gwpar_t *p = NULL;
    if (!sub || !cfg || cfg->block_size == 0 || cfg->block_size > 1024)
        goto fail;
    st = ST_NOMEM;
    if (!(p = sy_calloc(1, sizeof(*p))))
        goto fail;
    p->sub = sub;
    p->cfg = *cfg;
    p->cfg.hash_seed = NULL;
    if (cfg->hash_seed && !(p->seed = sy_strdup(cfg->hash_seed)))
        goto fail;
    p->cfg.hash_seed = p->seed;
    if (!p->cfg.wait_ms)
        p->cfg.wait_ms = 5000;
    if (!p->cfg.request_timeout_ms)
        p->cfg.request_timeout_ms = 30000;
    if (!p->cfg.max_attempts)
        p->cfg.max_attempts = 1;
    p->probe_len = gwpar_probe_len(p->cfg.block_size);
    if (cfg->metrics) {
        static const char *l[] = {"endpoint", "result"};
        p->fam = mx_family_create(
            cfg->metrics, MX_GAUGE, "switchyard_gateway_hash_parity",
            "Active hash-parity check per KV-event endpoint: a probe request's BlockStored hashes "
            "against the gateway's own (PYTHONHASHSEED, --block-size). 1 on the current result: "
            "pending (not verified yet), match, mismatch (precise prefix routing finds no hits), "
            "no_events (no BlockStored for the probe), probe_failed (the probe request failed).",
            l, 2, NULL, 0);
        if (!p->fam)
            goto fail;
    }
    *status = ST_OK;
    return p;
fail:
    if (p) {
        sy_free(p->seed);
        sy_free(p);
    }
    *status = st;
    return NULL;
}

void gwpar_destroy(gwpar_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < GW_MAX_ENDPOINTS; i++) {
        gwpar_ep_t *r = p->recs[i];
        if (!r)
            continue;
        rec_stop_probe(r, true);
        sy_buf_deinit(&r->err_body);
        sy_free(r);
    }
    sy_free(p->seed);
    sy_free(p);
}

void gwpar_remove_endpoint(gwpar_t *p, uint32_t ep_id)
{
    if (!p || ep_id >= GW_MAX_ENDPOINTS || !p->recs[ep_id])
        return;
    gwpar_ep_t *r = p->recs[ep_id];
    if (r->state == GWPAR_ST_IDLE)
        return;
    rec_stop_probe(r, true);
    rec_publish(p, r, GWPAR_PENDING, true);
    r->state = GWPAR_ST_IDLE;
    r->result = GWPAR_PENDING;
    r->ep = NULL;
}

gwpar_result_t gwpar_result(const gwpar_t *p, uint32_t ep_id)
{
    if (!p || ep_id >= GW_MAX_ENDPOINTS || !p->recs[ep_id] ||
        p->recs[ep_id]->state != GWPAR_ST_DONE)
        return GWPAR_PENDING;
    return p->recs[ep_id]->result;
}

/* The record for slot id, created (IDLE) on first use; NULL on OOM. */
static gwpar_ep_t *rec_get(gwpar_t *p, uint32_t id)
{
    if (!p->recs[id]) {
        gwpar_ep_t *r = sy_calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        r->p = p;
        r->id = id;
        p->recs[id] = r;
        if (id >= p->n_recs)
            p->n_recs = id + 1;
    }
    return p->recs[id];
}

void gwpar_tick(gwpar_t *p, const gw_table_t *t, uint64_t now)
{
    if (!p || !t)
        return;
    uint32_t n = t->n > p->n_recs ? (uint32_t)t->n : p->n_recs;
    for (uint32_t id = 0; id < n && id < GW_MAX_ENDPOINTS; id++) {
        const gw_endpoint_t *ep = id < t->n ? t->eps[id] : NULL;
        gwpar_ep_t *r = p->recs[id];
        if (r && r->state != GWPAR_ST_IDLE && r->ep != ep) {
            /* the slot changed without gwpar_remove_endpoint: its upstream (and with it the
             * call) is gone already, so the call is forgotten, not cancelled */
            sy_warn("gateway.hash_parity_slot_reused", "id=%u old=%s", id, r->name);
            rec_stop_probe(r, false);
            rec_publish(p, r, GWPAR_PENDING, true);
            r->state = GWPAR_ST_IDLE;
            r->ep = NULL;
        }
        if (!ep || t->draining[id])
            continue;
        kvsub_stats_t ks;
        if (kvsub_get_stats(p->sub, id, &ks) != ST_OK)
            continue; /* not subscribed: nothing to verify */
        if (!r || r->state == GWPAR_ST_IDLE) {
            if (!(r = rec_get(p, id)))
                continue;
            r->ep = ep;
            snprintf(r->name, sizeof r->name, "%s", ep->name);
            rec_begin_round(r, now, ks.restarts);
        }
        switch (r->state) {
        case GWPAR_ST_IDLE:
            break;
        case GWPAR_ST_PENDING:
            /* up: models known and metrics scraped once (a spec may name the models before
             * the engine has started) */
            if (ep->n_models && ep->m.valid && ep->healthy && now >= r->next_ms && t->ups[id])
                probe_start(r, ep, t->ups[id], now);
            break;
        case GWPAR_ST_PROBING:
            step_probing(r, now);
            break;
        case GWPAR_ST_WAITING:
            step_waiting(r, now);
            break;
        case GWPAR_ST_DONE:
            if (ks.restarts != r->restarts && now >= r->started_ms + p->cfg.reprobe_min_ms) {
                sy_info("gateway.hash_parity_reprobe",
                        "endpoint=%s why=\"KV-event publisher restarted\" previous=%s", r->name,
                        gwpar_result_name(r->result));
                rec_begin_round(r, now, ks.restarts);
            }
            break;
        }
        rec_assert_state(r);
    }
}
