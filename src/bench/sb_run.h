/*
 * sb_run.h - the bench's runner: an OpenAI streaming client on the event loop (http_client
 * keep-alive pool, SSE via sb_sse) and the load driver (open-loop Poisson or constant arrivals
 * from a timer, closed loop with N workers, trace timestamps), stage by stage, with a warm-up
 * before the first stage, a drain after each, and per-stage results (sb_stage_stats_t).
 *
 * Request lifecycle (sb_req_t.state; transitions in sb_run.c):
 *   CONNECTING -> WAITING_FIRST_TOKEN -> STREAMING -> DONE
 *        \________________\__________________\______-> FAILED
 * Open-loop arrivals are scheduled against the clock, never against responses: a slow server
 * makes requests pile up in flight (bounded by max_inflight; arrivals beyond it are counted as
 * skipped), never delays the next arrival. The worst lag of an arrival behind its schedule is
 * reported (it shows an overloaded bench).
 * Does not: TLS, HTTP/2, retries (every failure is counted with its reason).
 * Thread-safety: one thread (the caller of sb_run_exec); SIGINT/SIGTERM end the run early
 * (in-flight requests counted as aborted), handled through an ev_async.
 */
#ifndef SY_SB_RUN_H
#define SY_SB_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/sb_stats.h"
#include "bench/sb_workload.h"

typedef struct sb_stage_plan {
    double rate;           /* open loop requests/s; ignored when concurrency > 0 */
    uint32_t concurrency;  /* closed loop workers; 0 = open loop */
    double duration_s;     /* issue for this long (0 = unbounded by time) */
    uint64_t num_requests; /* issue this many (0 = unbounded by count); the first bound wins */
} sb_stage_plan_t;

typedef struct sb_run_cfg {
    const char *host; /* numeric or name (resolved at create); borrowed */
    int port;
    const char *path;       /* "/v1/completions" or "/v1/chat/completions"; borrowed */
    const char *model;      /* borrowed */
    const char *api_key;    /* Authorization: Bearer; NULL = none; borrowed */
    bool poisson;           /* open-loop gaps exponential (else constant) */
    bool trace_timing;      /* open loop from spec->t_ms (trace workload) instead of a rate */
    double trace_speed;     /* trace time scale (2 = twice as fast); 0 = 1 */
    uint64_t seed;          /* arrival RNG */
    double timeout_s;       /* stall: no byte for this long (also the connect timeout) */
    double drain_timeout_s; /* after a stage stops issuing, wait this long for in-flight */
    double warmup_s;        /* warm-up before the first stage (not counted) */
    uint64_t warmup_requests;
    const sb_stage_plan_t *stages; /* borrowed during create (copied) */
    size_t n_stages;
    uint32_t max_inflight; /* open loop cap; 0 = 100000 */
    bool progress;         /* live line on stderr every second */
    sb_slo_t slo;
} sb_run_cfg_t;

typedef struct sb_run sb_run_t;

/* Creates the runner (event loop, client, upstream: resolves host). wl is borrowed and must
 * outlive the runner. ST_OK with *out (owned: sb_run_destroy), or an error with err filled. */
int sb_run_create(const sb_run_cfg_t *cfg, sb_workload_t *wl, sb_run_t **out, char *err,
                  size_t errlen);
void sb_run_destroy(sb_run_t *r);

/* Runs every stage to the end. ST_OK, ST_CLOSED when interrupted by a signal (results of the
 * stages so far are kept), or an error from the event loop. */
int sb_run_exec(sb_run_t *r);

size_t sb_run_n_stages(const sb_run_t *r);
/* Stage i's results (borrowed; valid until sb_run_destroy). Stages not reached have n_sent 0. */
sb_stage_stats_t *sb_run_stage(sb_run_t *r, size_t i);
/* Stages that ran (all, unless interrupted). */
size_t sb_run_stages_done(const sb_run_t *r);

#endif
