/*
 * sb_stats.h - the bench's statistics: sample distributions (percentiles by linear interpolation,
 * as numpy's default), per-request outcome records, and per-stage accumulators that turn the
 * records into the stage results (latency summaries, throughputs, goodput under an SLO, error
 * reasons, cached-token share, per-endpoint counts).
 *
 * Definitions (docs in README "switchyard bench"):
 *   TTFT  = request sent -> first SSE chunk with non-empty content (ms).
 *   ITL   = gap between consecutive non-empty content chunks, one sample per chunk (as vLLM's
 *           benchmark_serving; a chunk carrying several tokens yields one sample).
 *   TPOT  = (E2E - TTFT) / (completion_tokens - 1), one sample per request with >= 2 tokens.
 *   E2E   = request sent -> end of the response (ms).
 *   goodput: a request is good when it succeeded, TTFT <= slo_ttft_ms and TPOT <= slo_itl_ms
 *            (an SLO of 0 is not checked); errors and rejections are never good.
 * Does not: time anything itself, or keep per-request records beyond the stage.
 * Thread-safety: none; one owner thread.
 */
#ifndef SY_SB_STATS_H
#define SY_SB_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outcome of one request. SB_OK is the only success. */
typedef enum sb_outcome {
    SB_OK = 0,
    SB_ERR_CONNECT,   /* connection refused / unreachable / connect failed */
    SB_REJECTED,      /* HTTP 429 (counted apart from errors) */
    SB_ERR_HTTP,      /* any other non-200 status */
    SB_ERR_MALFORMED, /* malformed SSE, chunk JSON or HTTP framing */
    SB_ERR_NO_DONE,   /* the stream ended without data: [DONE] */
    SB_ERR_STALL,     /* no byte for --timeout seconds */
    SB_ERR_INBAND,    /* an {"error": ...} event inside the stream */
    SB_ERR_IO,        /* reset, closed before the response, other transport errors */
    SB_ERR_ABORTED,   /* cancelled by the bench (drain timeout, interrupt) */
    SB_OUTCOME__COUNT
} sb_outcome_t;

/* Static name of an outcome ("ok", "connect", "rejected_429", ...). Never NULL. */
const char *sb_outcome_name(int outcome);

/* A growable array of samples (ms). Caller-owned storage. */
typedef struct sb_dist {
    double *v; /* owned */
    size_t n;
    size_t cap;
    bool _sorted;
} sb_dist_t;

void sb_dist_init(sb_dist_t *d);
void sb_dist_deinit(sb_dist_t *d);
/* ST_OK or ST_NOMEM. */
int sb_dist_add(sb_dist_t *d, double x);

typedef struct sb_summary {
    size_t n;
    double mean, min, max, p50, p90, p95, p99; /* all 0 when n == 0 */
} sb_summary_t;

/* q-quantile (0..1) of sorted v[0..n) by linear interpolation between closest ranks (numpy
 * "linear"). n == 0 gives 0. */
double sb_quantile_sorted(const double *v, size_t n, double q);
/* Sorts d in place (once) and fills out. */
void sb_dist_summarize(sb_dist_t *d, sb_summary_t *out);

/* One finished request, as the runner hands it over (borrowed for the sb_stage_add call). */
typedef struct sb_rec {
    sb_outcome_t outcome;
    int http_status;      /* 0 when no response head */
    double ttft_ms;       /* < 0: no content token arrived */
    double e2e_ms;        /* send -> end */
    const double *itl_ms; /* per-chunk gaps (borrowed) */
    size_t n_itl;
    int64_t prompt_tokens;     /* from usage; -1 when absent */
    int64_t completion_tokens; /* from usage; -1 when absent */
    int64_t cached_tokens;     /* usage.prompt_tokens_details.cached_tokens; -1 when absent */
    size_t n_chunks;           /* non-empty content chunks */
    uint32_t max_tokens;       /* what was asked */
    const char *endpoint;      /* x-switchyard-endpoint or NULL (borrowed) */
    const char *detail;        /* error detail or NULL (borrowed) */
} sb_rec_t;

#define SB_MAX_ENDPOINTS 64
#define SB_MAX_DETAILS 16

typedef struct sb_slo {
    double ttft_ms; /* 0 = not checked */
    double itl_ms;  /* checked against the request's TPOT; 0 = not checked */
} sb_slo_t;

/* Per-stage accumulator. Caller-owned storage (sb_stage_init / sb_stage_deinit). */
typedef struct sb_stage_stats {
    /* what the stage was asked to do */
    double rate;          /* offered requests/s; 0 = closed loop */
    uint32_t concurrency; /* closed loop workers; 0 = open loop */
    /* counters */
    uint64_t n_sent, n_done, n_ok, n_good, n_skipped;
    uint64_t by_outcome[SB_OUTCOME__COUNT];
    uint64_t prompt_tokens, completion_tokens, cached_tokens;
    uint64_t n_usage_missing;   /* successful requests without a usage chunk */
    uint64_t n_len_mismatch;    /* successful requests with completion_tokens != max_tokens */
    uint64_t n_cached_reported; /* requests whose usage carried cached_tokens */
    sb_dist_t ttft, itl, tpot, e2e;
    /* timing of the stage (ns, monotonic), set by the runner */
    uint64_t t_start_ns, t_issue_end_ns, t_end_ns;
    double max_arrival_lag_ms; /* worst delay of an open-loop arrival behind its schedule */
    double sum_arrival_lag_ms; /* over n_arrivals open-loop arrivals (mean lag) */
    uint64_t n_arrivals;
    /* per endpoint (x-switchyard-endpoint); "" = header absent */
    char *ep_name[SB_MAX_ENDPOINTS]; /* owned */
    uint64_t ep_count[SB_MAX_ENDPOINTS];
    size_t n_ep;
    uint64_t ep_other; /* beyond SB_MAX_ENDPOINTS names */
    /* the first distinct error details (owned), for the report */
    char *detail[SB_MAX_DETAILS];
    uint64_t detail_count[SB_MAX_DETAILS];
    size_t n_detail;
    sb_slo_t slo;
} sb_stage_stats_t;

void sb_stage_init(sb_stage_stats_t *s, const sb_slo_t *slo);
void sb_stage_deinit(sb_stage_stats_t *s);
/* Adds one finished request. ST_OK or ST_NOMEM (the counters are updated in any case). */
int sb_stage_add(sb_stage_stats_t *s, const sb_rec_t *r);
/* True when r meets s->slo (see the file comment). */
bool sb_rec_is_good(const sb_rec_t *r, const sb_slo_t *slo);
/* Measured stage duration in seconds (start -> last completion); 0 when unknown. */
double sb_stage_duration_s(const sb_stage_stats_t *s);
/* Errors (every non-OK outcome except rejections). */
uint64_t sb_stage_errors(const sb_stage_stats_t *s);

#endif
