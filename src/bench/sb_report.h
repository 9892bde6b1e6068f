/*
 * sb_report.h - the bench's outputs: the results JSON (one object per run, one entry per stage),
 * a Markdown summary, and hand-written SVG charts (TTFT p90 and goodput against offered load,
 * one line per results file) for `switchyard bench plot`.
 *
 * Results JSON (schema "switchyard-bench/1"): {"schema", "label", "config": {...},
 * "stages": [{"index", "rate", "concurrency", "duration_s", "requests": {sent, completed, ok,
 * errors, rejected, skipped}, "errors_by_reason": {...}, "error_details": {...},
 * "request_throughput", "output_token_throughput", "input_token_throughput",
 * "ttft_ms"|"itl_ms"|"tpot_ms"|"e2e_ms": {n, mean, min, p50, p90, p95, p99, max},
 * "tokens": {prompt, completion, cached, cached_share, cached_reported, usage_missing,
 * output_len_mismatch},
 * "goodput": {slo_ttft_ms, slo_itl_ms, good, share, rate}, "endpoints": {name: count},
 * "max_arrival_lag_ms", "mean_arrival_lag_ms"}]} (open-loop arrivals: the event loop's timers have
 * 1 ms resolution, so a mean lag of about 1 ms is the floor; more means an overloaded bench).
 * Does not: read results of other tools.
 * Thread-safety: reentrant (no shared state).
 */
#ifndef SY_SB_REPORT_H
#define SY_SB_REPORT_H

#include <jansson.h>
#include <stddef.h>

#include "bench/sb_stats.h"
#include "common/buf.h"

/* Builds the JSON object of one stage (owned result, json_decref; NULL on ST_NOMEM). Sorts the
 * stage's distributions. */
json_t *sb_report_stage_json(sb_stage_stats_t *s, size_t index);

/* Appends a Markdown summary of results (the run object built by the caller: "label",
 * "config", "stages") to out. ST_OK or ST_NOMEM. */
int sb_report_markdown(const json_t *results, sy_buf_t *out);

/* Appends an SVG document charting n result objects (borrowed; names[i] labels series i) to
 * out: two panels, TTFT p90 (ms) and goodput (requests/s) against offered rate (or concurrency
 * for closed-loop stages). ST_OK, ST_INVAL (no plottable stage) or ST_NOMEM. */
int sb_report_svg(const json_t *const *results, const char *const *names, size_t n, sy_buf_t *out);

/* Writes buf to path ("-" = stdout). ST_OK or -errno. */
int sb_report_write_file(const char *path, const char *data, size_t len);

#endif
