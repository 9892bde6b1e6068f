/*
 * gov_limit.c - per-tenant token buckets and concurrency caps (contract in gov_limit.h).
 *
 * Design notes.
 *  - Fixed point. A bucket level is an int64 count of "units", chosen so that refill is an exact
 *    integer product dt_ns * rate:
 *      request bucket: 1 request = 10^12 units, rate = round(requests_per_second * 1000) units/ns
 *        (so requests_per_second has a resolution of 0.001); capacity = burst * 10^12 <= 10^18;
 *      token bucket:   1 token = 6*10^10 units, rate = tokens_per_minute units/ns;
 *        capacity = tokens_per_minute * 6*10^10 <= 6*10^18 (hence GLIM_TPM_MAX = 10^8).
 *    The token level may go negative (output overdraft) down to -capacity, so cap - level fits in
 *    a uint64; every difference is taken unsigned and refills that would pass the capacity are
 *    clamped before multiplying, so nothing overflows.
 *  - Buckets are lazy: a level and the time of its last refill; each call first refills to now_ns
 *    (a now_ns earlier than the last refill adds nothing).
 *  - Admission is all-or-nothing: every limit is checked before any is charged, so a refusal
 *    leaves the state untouched (apart from the refill and the refusal counter).
 *  - max_tokens is not reserved: prompt tokens are charged on admission and output tokens as they
 *    stream (glim_charge_output). Reserving max_tokens would refuse and overcharge requests that
 *    stop early; charging as they stream is exact, at the price of an overdraft that the next
 *    admissions pay for by waiting.
 * Thread-safety: none (one event-loop thread owns every state).
 */
#include "gov/gov_limit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define REQ_SCALE 1000000000000LL /* units per request */
#define TOK_SCALE 60000000000LL   /* units per token */
#define NS_PER_S 1000000000LL
#define TOKENS_CLAMP 1000000000000000LL /* counts above this are clamped (>> GLIM_TPM_MAX) */

typedef struct bucket {
    bool on;
    int64_t level; /* units; requests: [0, cap]; tokens: [-cap, cap] */
    int64_t cap;   /* units */
    int64_t rate;  /* units per ns, > 0 when on */
    int64_t scale; /* units per item */
    int64_t t;     /* now_ns of the last refill */
} bucket_t;

struct glim_state {
    unsigned refs;
    glim_limits_t lim;
    bucket_t req;
    bucket_t tok;
    int64_t in_flight;
    glim_stats_t stats;
    char *name; /* owned */
};

/* ---- buckets ------------------------------------------------------------------------------ */

static void bucket_refill(bucket_t *b, int64_t now)
{
    if (!b->on || now <= b->t)
        return;
    uint64_t dt = (uint64_t)now - (uint64_t)b->t;
    b->t = now;
    if (b->level >= b->cap)
        return;
    uint64_t deficit = (uint64_t)b->cap - (uint64_t)b->level;
    uint64_t rate = (uint64_t)b->rate;
    if (dt >= (deficit + rate - 1) / rate)
        b->level = b->cap;
    else
        b->level = (int64_t)((uint64_t)b->level + dt * rate);
}

/* ns until the level reaches target units (target <= cap); 0 when it already has. */
static int64_t bucket_wait(const bucket_t *b, int64_t target)
{
    if (b->level >= target)
        return 0;
    uint64_t d = (uint64_t)target - (uint64_t)b->level;
    uint64_t rate = (uint64_t)b->rate;
    return (int64_t)((d + rate - 1) / rate);
}

/* floor(level / scale) */
static int64_t bucket_floor(const bucket_t *b)
{
    if (b->level >= 0)
        return b->level / b->scale;
    return -((-b->level + b->scale - 1) / b->scale);
}

static int limits_check(const glim_limits_t *l)
{
    double r = l->requests_per_second;
    if (!(r == 0 || (isfinite(r) && r >= GLIM_RPS_MIN && r <= GLIM_RPS_MAX)))
        return ST_INVAL;
    if (l->burst < 0 || l->burst > GLIM_BURST_MAX)
        return ST_INVAL;
    if (l->tokens_per_minute < 0 || l->tokens_per_minute > GLIM_TPM_MAX)
        return ST_INVAL;
    if (l->max_concurrent < 0 || l->max_concurrent > GLIM_CONCURRENT_MAX)
        return ST_INVAL;
    return ST_OK;
}

/* Applies limits to the buckets (already refilled to now). */
static void apply_limits(glim_state_t *st, const glim_limits_t *l, int64_t now)
{
    bucket_t *b = &st->req;
    if (l->requests_per_second > 0) {
        int64_t burst = l->burst;
        if (burst == 0) {
            burst = (int64_t)ceil(l->requests_per_second);
            if (burst < 1)
                burst = 1;
        }
        int64_t rate = llround(l->requests_per_second * 1000.0);
        bool was_on = b->on;
        b->on = true;
        b->scale = REQ_SCALE;
        b->cap = burst * REQ_SCALE;
        b->rate = rate < 1 ? 1 : rate;
        if (!was_on) {
            b->level = b->cap;
            b->t = now;
        } else if (b->level > b->cap) {
            b->level = b->cap;
        }
    } else {
        memset(b, 0, sizeof *b);
    }
    b = &st->tok;
    if (l->tokens_per_minute > 0) {
        bool was_on = b->on;
        b->on = true;
        b->scale = TOK_SCALE;
        b->cap = l->tokens_per_minute * TOK_SCALE;
        b->rate = l->tokens_per_minute;
        if (!was_on) {
            b->level = b->cap;
            b->t = now;
        } else if (b->level > b->cap) {
            b->level = b->cap;
        } else if (b->level < -b->cap) {
            b->level = -b->cap;
        }
    } else {
        memset(b, 0, sizeof *b);
    }
    st->lim = *l;
}

/* ---- states ------------------------------------------------------------------------------- */

glim_state_t *glim_state_create(const char *name, const glim_limits_t *lim, int64_t now_ns)
{
    if (limits_check(lim) != ST_OK)
        return NULL;
    glim_state_t *st = sy_calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->name = sy_strdup(name ? name : "");
    if (!st->name) {
        sy_free(st);
        return NULL;
    }
    st->refs = 1;
    apply_limits(st, lim, now_ns);
    return st;
}

glim_state_t *glim_state_ref(glim_state_t *st)
{
    SY_ASSERT(st->refs > 0);
    st->refs++;
    return st;
}

void glim_state_unref(glim_state_t *st)
{
    if (!st)
        return;
    SY_ASSERT(st->refs > 0);
    if (--st->refs > 0)
        return;
    sy_free(st->name);
    sy_free(st);
}

int glim_state_set_limits(glim_state_t *st, const glim_limits_t *lim, int64_t now_ns)
{
    if (limits_check(lim) != ST_OK)
        return ST_INVAL;
    bucket_refill(&st->req, now_ns);
    bucket_refill(&st->tok, now_ns);
    apply_limits(st, lim, now_ns);
    return ST_OK;
}

const char *glim_state_name(const glim_state_t *st)
{
    return st->name;
}

int64_t glim_state_in_flight(const glim_state_t *st)
{
    return st->in_flight;
}

void glim_state_stats(const glim_state_t *st, glim_stats_t *out)
{
    *out = st->stats;
}

/* ---- admission ---------------------------------------------------------------------------- */

static void fill_result(const glim_state_t *st, glim_result_t *r)
{
    const bucket_t *q = &st->req, *k = &st->tok;
    r->has_requests = q->on;
    r->requests_per_second = st->lim.requests_per_second;
    if (q->on) {
        r->limit_requests = q->cap / q->scale;
        r->remaining_requests = bucket_floor(q);
        r->reset_requests_ns = bucket_wait(q, q->cap);
    } else {
        r->limit_requests = r->remaining_requests = r->reset_requests_ns = 0;
    }
    r->has_tokens = k->on;
    if (k->on) {
        r->limit_tokens = st->lim.tokens_per_minute;
        r->tokens_level = bucket_floor(k);
        r->remaining_tokens = r->tokens_level > 0 ? r->tokens_level : 0;
        r->reset_tokens_ns = bucket_wait(k, k->cap);
    } else {
        r->limit_tokens = r->remaining_tokens = r->tokens_level = r->reset_tokens_ns = 0;
    }
    r->max_concurrent = st->lim.max_concurrent;
    r->in_flight = st->in_flight;
}

static int64_t clamp_count(int64_t n)
{
    return n < 0 ? 0 : n > TOKENS_CLAMP ? TOKENS_CLAMP : n;
}

int glim_admit(glim_state_t *st, int64_t now_ns, int64_t prompt_tokens, int64_t max_tokens,
               glim_lease_t *lease, glim_result_t *res)
{
    SY_ASSERT(lease->_st == NULL);
    glim_result_t local;
    glim_result_t *r = res ? res : &local;
    prompt_tokens = clamp_count(prompt_tokens);
    max_tokens = clamp_count(max_tokens);
    bucket_refill(&st->req, now_ns);
    bucket_refill(&st->tok, now_ns);

    glim_reason_t reason = GLIM_ADMITTED;
    int64_t wait = 0;
    r->requested_tokens = prompt_tokens;
    if (st->tok.on && prompt_tokens + max_tokens > st->lim.tokens_per_minute) {
        reason = GLIM_REFUSED_TOO_LARGE;
        r->requested_tokens = prompt_tokens + max_tokens;
    } else {
        /* check in reporting order; Retry-After is the longest wait of every failing limit */
        if (st->lim.max_concurrent > 0 && st->in_flight >= st->lim.max_concurrent) {
            reason = GLIM_REFUSED_CONCURRENCY;
            wait = GLIM_CONCURRENCY_RETRY_NS;
        }
        if (st->req.on) {
            int64_t w = bucket_wait(&st->req, REQ_SCALE);
            if (w > 0 && reason == GLIM_ADMITTED)
                reason = GLIM_REFUSED_REQUESTS;
            wait = w > wait ? w : wait;
        }
        if (st->tok.on) {
            /* need >= 0: a negative level (output overdraft) refuses every request */
            int64_t w = bucket_wait(&st->tok, prompt_tokens * TOK_SCALE);
            if (w > 0 && reason == GLIM_ADMITTED)
                reason = GLIM_REFUSED_TOKENS;
            wait = w > wait ? w : wait;
        }
    }
    r->reason = reason;
    if (reason != GLIM_ADMITTED) {
        r->retry_after_ns = reason == GLIM_REFUSED_TOO_LARGE ? 0 : wait;
        if (reason == GLIM_REFUSED_REQUESTS)
            st->stats.refused_requests++;
        else if (reason == GLIM_REFUSED_CONCURRENCY)
            st->stats.refused_concurrency++;
        else
            st->stats.refused_tokens++;
        fill_result(st, r);
        return ST_LIMIT;
    }
    if (st->req.on)
        st->req.level -= REQ_SCALE;
    if (st->tok.on)
        st->tok.level -= prompt_tokens * TOK_SCALE;
    st->in_flight++;
    st->stats.admitted++;
    st->stats.prompt_tokens += (uint64_t)prompt_tokens;
    lease->_st = glim_state_ref(st);
    r->retry_after_ns = 0;
    fill_result(st, r);
    return ST_OK;
}

void glim_charge_output(glim_lease_t *lease, int64_t now_ns, int64_t n)
{
    glim_state_t *st = lease->_st;
    if (!st || n <= 0)
        return;
    n = clamp_count(n);
    st->stats.output_tokens += (uint64_t)n;
    bucket_t *b = &st->tok;
    if (!b->on)
        return;
    bucket_refill(b, now_ns);
    uint64_t room = (uint64_t)b->level + (uint64_t)b->cap; /* level - (-cap), <= 2 cap */
    if ((uint64_t)n >= room / (uint64_t)b->scale)
        b->level = -b->cap;
    else
        b->level -= n * b->scale;
}

void glim_release(glim_lease_t *lease)
{
    glim_state_t *st = lease->_st;
    if (!st)
        return;
    lease->_st = NULL;
    SY_ASSERT(st->in_flight > 0);
    st->in_flight--;
    glim_state_unref(st);
}

glim_state_t *glim_lease_state(const glim_lease_t *lease)
{
    return lease->_st;
}

void glim_peek(glim_state_t *st, int64_t now_ns, glim_result_t *res)
{
    bucket_refill(&st->req, now_ns);
    bucket_refill(&st->tok, now_ns);
    res->reason = GLIM_ADMITTED;
    res->retry_after_ns = 0;
    res->requested_tokens = 0;
    fill_result(st, res);
}

int glim_result_http_status(const glim_result_t *r)
{
    return r->reason == GLIM_ADMITTED ? 200 : 429;
}

/* ---- headers ------------------------------------------------------------------------------ */

/* Writes v in decimal at p (no NUL); returns the length (<= 20). snprintf is ~10x slower and
 * the headers go out on every response. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Formats into o[32]; returns o. */
static char *format_duration32(int64_t ns, char *o)
{
    uint64_t ms = ns <= 0 ? 0 : ((uint64_t)ns + 999999u) / 1000000u;
    size_t n = 0;
    if (ms < 1000) {
        n = put_u64(o, ms);
        if (ms > 0)
            o[n++] = 'm';
        o[n++] = 's';
        o[n] = '\0';
        return o;
    }
    uint64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    if (h > 0) {
        n += put_u64(o + n, h);
        o[n++] = 'h';
    }
    if (h > 0 || m > 0) {
        n += put_u64(o + n, m);
        o[n++] = 'm';
    }
    n += put_u64(o + n, s);
    if (frac > 0) {
        o[n++] = '.';
        o[n++] = (char)('0' + frac / 100);
        o[n++] = (char)('0' + frac / 10 % 10);
        o[n++] = (char)('0' + frac % 10);
        while (o[n - 1] == '0')
            n--;
    }
    o[n++] = 's';
    o[n] = '\0';
    return o;
}

char *glim_format_duration(int64_t ns, char *out, size_t cap)
{
    char tmp[32];
    if (!out || cap == 0)
        return out;
    format_duration32(ns, tmp);
    size_t l = strlen(tmp);
    if (l >= cap)
        l = cap - 1;
    memcpy(out, tmp, l);
    out[l] = '\0';
    return out;
}

int64_t glim_retry_after_s(int64_t ns)
{
    if (ns <= 0)
        return 0;
    return (int64_t)(((uint64_t)ns + (NS_PER_S - 1)) / NS_PER_S);
}

/* v >= 0 (every header value is a count) */
static void hdr_int(glim_headers_t *o, const char *name, int64_t v)
{
    size_t i = o->n++;
    o->_val[i][put_u64(o->_val[i], v < 0 ? 0 : (uint64_t)v)] = '\0';
    o->h[i].name = name;
    o->h[i].value = o->_val[i];
}

static void hdr_dur(glim_headers_t *o, const char *name, int64_t ns)
{
    size_t i = o->n++;
    format_duration32(ns, o->_val[i]);
    o->h[i].name = name;
    o->h[i].value = o->_val[i];
}

void glim_headers_fill(const glim_result_t *r, glim_headers_t *out)
{
    out->n = 0;
    if (r->has_requests) {
        hdr_int(out, "x-ratelimit-limit-requests", r->limit_requests);
        hdr_int(out, "x-ratelimit-remaining-requests", r->remaining_requests);
        hdr_dur(out, "x-ratelimit-reset-requests", r->reset_requests_ns);
    }
    if (r->has_tokens) {
        hdr_int(out, "x-ratelimit-limit-tokens", r->limit_tokens);
        hdr_int(out, "x-ratelimit-remaining-tokens", r->remaining_tokens);
        hdr_dur(out, "x-ratelimit-reset-tokens", r->reset_tokens_ns);
    }
    if (r->reason != GLIM_ADMITTED && r->reason != GLIM_REFUSED_TOO_LARGE)
        hdr_int(out, "retry-after", glim_retry_after_s(r->retry_after_ns));
}

int glim_headers_append(const glim_headers_t *h, sy_buf_t *out)
{
    for (size_t i = 0; i < h->n; i++)
        if (sy_buf_appendf(out, "%s: %s\r\n", h->h[i].name, h->h[i].value) != ST_OK)
            return ST_NOMEM;
    return ST_OK;
}

/* ---- 429 body ----------------------------------------------------------------------------- */

/* " for MODEL in tenant NAME" (the parts that are known), JSON-escaped. */
static int append_where(sy_buf_t *b, const char *tenant, const char *model)
{
    int rc = ST_OK;
    if (model && *model) {
        rc |= sy_buf_append_str(b, " for ");
        rc |= sy_buf_append_json_str(b, model, strlen(model));
    }
    if (tenant && *tenant) {
        rc |= sy_buf_append_str(b, " in tenant ");
        rc |= sy_buf_append_json_str(b, tenant, strlen(tenant));
    }
    return rc ? ST_NOMEM : ST_OK;
}

int glim_error_body(const glim_result_t *r, const char *tenant, const char *model, sy_buf_t *out)
{
    if (r->reason == GLIM_ADMITTED)
        return ST_INVAL;
    char dur[32];
    glim_format_duration(r->retry_after_ns, dur, sizeof dur);
    const char *type = r->reason == GLIM_REFUSED_TOKENS || r->reason == GLIM_REFUSED_TOO_LARGE
                           ? "tokens"
                           : "requests";
    int rc = sy_buf_append_str(out, "{\"error\":{\"message\":\"");
    rc |= sy_buf_append_str(out, r->reason == GLIM_REFUSED_TOO_LARGE ? "Request too large"
                                                                     : "Rate limit reached");
    rc |= append_where(out, tenant, model);
    switch (r->reason) {
    case GLIM_REFUSED_REQUESTS:
        rc |= sy_buf_appendf(out,
                             " on requests per second (RPS): Limit %g (burst %lld), Used %lld, "
                             "Requested 1. Please try again in %s.",
                             r->requests_per_second, (long long)r->limit_requests,
                             (long long)(r->limit_requests - r->remaining_requests), dur);
        break;
    case GLIM_REFUSED_TOKENS:
        rc |= sy_buf_appendf(out,
                             " on tokens per min (TPM): Limit %lld, Used %lld, Requested %lld. "
                             "Please try again in %s.",
                             (long long)r->limit_tokens,
                             (long long)(r->limit_tokens - r->tokens_level),
                             (long long)r->requested_tokens, dur);
        break;
    case GLIM_REFUSED_CONCURRENCY:
        rc |= sy_buf_appendf(out,
                             " on concurrent requests: Limit %lld, Used %lld, Requested 1. "
                             "Please try again in %s.",
                             (long long)r->max_concurrent, (long long)r->in_flight, dur);
        break;
    case GLIM_REFUSED_TOO_LARGE:
    default:
        rc |= sy_buf_appendf(out,
                             " on tokens per min (TPM): Limit %lld, Requested %lld. The input or "
                             "output tokens must be reduced in order to run successfully.",
                             (long long)r->limit_tokens, (long long)r->requested_tokens);
        break;
    }
    rc |= sy_buf_appendf(
        out, "\",\"type\":\"%s\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}", type);
    return rc ? ST_NOMEM : ST_OK;
}
