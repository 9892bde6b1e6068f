/*
 * sb_stats.c - sample distributions, per-request records and per-stage accumulators for
 * `switchyard bench` (see sb_stats.h for the definitions of TTFT, ITL, TPOT, E2E and goodput).
 * Percentiles sort the samples once per summary (O(n log n)); a stage of a million chunks costs
 * 8 MB of samples, which is fine for a load generator.
 * Thread-safety: none.
 */
#include "bench/sb_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"

static const char *const k_outcome_names[SB_OUTCOME__COUNT] = {
    [SB_OK] = "ok",
    [SB_ERR_CONNECT] = "connect",
    [SB_REJECTED] = "rejected_429",
    [SB_ERR_HTTP] = "http_status",
    [SB_ERR_MALFORMED] = "malformed",
    [SB_ERR_NO_DONE] = "no_done",
    [SB_ERR_STALL] = "stall_timeout",
    [SB_ERR_INBAND] = "inband_error",
    [SB_ERR_IO] = "io",
    [SB_ERR_ABORTED] = "aborted",
};

const char *sb_outcome_name(int outcome)
{
    if (outcome < 0 || outcome >= SB_OUTCOME__COUNT)
        return "unknown";
    return k_outcome_names[outcome];
}

void sb_dist_init(sb_dist_t *d)
{
    memset(d, 0, sizeof *d);
}

void sb_dist_deinit(sb_dist_t *d)
{
    sy_free(d->v);
    memset(d, 0, sizeof *d);
}

int sb_dist_add(sb_dist_t *d, double x)
{
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 256;
        double *nv = sy_realloc(d->v, nc * sizeof *nv);
        if (!nv)
            return ST_NOMEM;
        d->v = nv;
        d->cap = nc;
    }
    d->v[d->n++] = x;
    d->_sorted = false;
    return ST_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double sb_quantile_sorted(const double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    if (q <= 0)
        return v[0];
    if (q >= 1)
        return v[n - 1];
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double frac = pos - (double)lo;
    return v[lo] + (v[hi] - v[lo]) * frac;
}

void sb_dist_summarize(sb_dist_t *d, sb_summary_t *out)
{
    memset(out, 0, sizeof *out);
    if (d->n == 0)
        return;
    if (!d->_sorted) {
        qsort(d->v, d->n, sizeof d->v[0], cmp_double);
        d->_sorted = true;
    }
    double sum = 0;
    for (size_t i = 0; i < d->n; i++)
        sum += d->v[i];
    out->n = d->n;
    out->mean = sum / (double)d->n;
    out->min = d->v[0];
    out->max = d->v[d->n - 1];
    out->p50 = sb_quantile_sorted(d->v, d->n, 0.50);
    out->p90 = sb_quantile_sorted(d->v, d->n, 0.90);
    out->p95 = sb_quantile_sorted(d->v, d->n, 0.95);
    out->p99 = sb_quantile_sorted(d->v, d->n, 0.99);
}

void sb_stage_init(sb_stage_stats_t *s, const sb_slo_t *slo)
{
    memset(s, 0, sizeof *s);
    sb_dist_init(&s->ttft);
    sb_dist_init(&s->itl);
    sb_dist_init(&s->tpot);
    sb_dist_init(&s->e2e);
    if (slo)
        s->slo = *slo;
}

void sb_stage_deinit(sb_stage_stats_t *s)
{
    if (!s)
        return;
    sb_dist_deinit(&s->ttft);
    sb_dist_deinit(&s->itl);
    sb_dist_deinit(&s->tpot);
    sb_dist_deinit(&s->e2e);
    for (size_t i = 0; i < s->n_ep; i++)
        sy_free(s->ep_name[i]);
    for (size_t i = 0; i < s->n_detail; i++)
        sy_free(s->detail[i]);
    memset(s, 0, sizeof *s);
}

/* TPOT of r, or < 0 when it has none (fewer than 2 tokens or no first token). */
static double rec_tpot(const sb_rec_t *r)
{
    int64_t out = r->completion_tokens >= 0 ? r->completion_tokens : (int64_t)r->n_chunks;
    if (r->ttft_ms < 0 || out < 2)
        return -1.0;
    return (r->e2e_ms - r->ttft_ms) / (double)(out - 1);
}

bool sb_rec_is_good(const sb_rec_t *r, const sb_slo_t *slo)
{
    if (r->outcome != SB_OK)
        return false;
    if (slo->ttft_ms > 0 && (r->ttft_ms < 0 || r->ttft_ms > slo->ttft_ms))
        return false;
    if (slo->itl_ms > 0) {
        double t = rec_tpot(r);
        if (t > slo->itl_ms)
            return false;
    }
    return true;
}

static void count_endpoint(sb_stage_stats_t *s, const char *name)
{
    if (!name)
        name = "";
    for (size_t i = 0; i < s->n_ep; i++) {
        if (strcmp(s->ep_name[i], name) == 0) {
            s->ep_count[i]++;
            return;
        }
    }
    if (s->n_ep < SB_MAX_ENDPOINTS) {
        char *dup = sy_strdup(name);
        if (dup) {
            s->ep_name[s->n_ep] = dup;
            s->ep_count[s->n_ep++] = 1;
            return;
        }
    }
    s->ep_other++;
}

static void count_detail(sb_stage_stats_t *s, const char *detail)
{
    if (!detail || !*detail)
        return;
    for (size_t i = 0; i < s->n_detail; i++) {
        if (strcmp(s->detail[i], detail) == 0) {
            s->detail_count[i]++;
            return;
        }
    }
    if (s->n_detail < SB_MAX_DETAILS) {
        char *dup = sy_strdup(detail);
        if (dup) {
            s->detail[s->n_detail] = dup;
            s->detail_count[s->n_detail++] = 1;
        }
    }
}

int sb_stage_add(sb_stage_stats_t *s, const sb_rec_t *r)
{
    int rc = ST_OK;
    s->n_done++;
    if (r->outcome >= 0 && r->outcome < SB_OUTCOME__COUNT)
        s->by_outcome[r->outcome]++;
    if (r->outcome != SB_OK) {
        count_detail(s, r->detail);
        return ST_OK;
    }
    s->n_ok++;
    count_endpoint(s, r->endpoint);
    if (sb_rec_is_good(r, &s->slo))
        s->n_good++;
    if (r->prompt_tokens >= 0)
        s->prompt_tokens += (uint64_t)r->prompt_tokens;
    int64_t out = r->completion_tokens;
    if (out < 0) {
        s->n_usage_missing++;
        out = (int64_t)r->n_chunks;
    }
    s->completion_tokens += (uint64_t)out;
    if (r->max_tokens && out != (int64_t)r->max_tokens)
        s->n_len_mismatch++;
    if (r->cached_tokens >= 0) {
        s->cached_tokens += (uint64_t)r->cached_tokens;
        s->n_cached_reported++;
    }
    if (r->ttft_ms >= 0 && sb_dist_add(&s->ttft, r->ttft_ms) != ST_OK)
        rc = ST_NOMEM;
    if (sb_dist_add(&s->e2e, r->e2e_ms) != ST_OK)
        rc = ST_NOMEM;
    double tp = rec_tpot(r);
    if (tp >= 0 && sb_dist_add(&s->tpot, tp) != ST_OK)
        rc = ST_NOMEM;
    for (size_t i = 0; i < r->n_itl; i++) {
        if (sb_dist_add(&s->itl, r->itl_ms[i]) != ST_OK) {
            rc = ST_NOMEM;
            break;
        }
    }
    return rc;
}

double sb_stage_duration_s(const sb_stage_stats_t *s)
{
    if (!s->t_start_ns || s->t_end_ns <= s->t_start_ns)
        return 0.0;
    return (double)(s->t_end_ns - s->t_start_ns) / 1e9;
}

uint64_t sb_stage_errors(const sb_stage_stats_t *s)
{
    uint64_t n = 0;
    for (int i = 0; i < SB_OUTCOME__COUNT; i++)
        if (i != SB_OK && i != SB_REJECTED)
            n += s->by_outcome[i];
    return n;
}
