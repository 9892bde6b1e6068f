/*
 * sb_run.c - `switchyard bench` runner: streaming OpenAI client and load driver (see sb_run.h).
 *
 * Request state machine (sb_req_t.state):
 *
 *   CONNECTING ──on_head 200──▶ WAITING_FIRST_TOKEN ──content chunk──▶ STREAMING ──on_done──▶ DONE
 *       │                              │                                  │   (with [DONE])
 *       └──────── error / non-200 / stall / malformed / no [DONE] / drain / interrupt ──▶ FAILED
 *
 * Transitions (from -> to: trigger [function]):
 *   (new)      -> CONNECTING          : http_call_start                  [req_start]
 *   CONNECTING -> WAITING_FIRST_TOKEN : response head with status 200    [req_on_head]
 *   WAITING_FIRST_TOKEN -> STREAMING  : first chunk with non-empty content [req_on_event]
 *   any live   -> DONE                : on_done ST_OK after data: [DONE] [req_on_done]
 *   any live   -> FAILED              : an error (outcome + detail)      [req_fail]
 * Invariants (req_assert_state): CONNECTING/WAITING/STREAMING have a live call and are on the
 * in-flight list; STREAMING has t_first_ns; DONE/FAILED have no call and are freed at once by
 * req_finish (which records the result, tells the workload, and kicks the driver).
 *
 * Stage phases (sb_run_t.phase): WARMUP -> WARMUP_DRAIN -> MEASURE -> DRAIN -> next stage's
 * MEASURE ... -> FINISHED. Only requests sent in MEASURE are counted (their completions in DRAIN
 * too). The driver never starts requests from inside an http callback: completions arm a 0 ms
 * "kick" timer that refills closed-loop workers and advances phases, so a server that refuses
 * every connection cannot recurse.
 * ITL: one sample per non-empty content chunk after the first (the gap since the previous one).
 * Thread-safety: see sb_run.h.
 */
#include "bench/sb_run.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bench/sb_sse.h"
#include "common/alloc.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"
#include "http/http_client.h"

#define SB_ERRBODY_MAX 300
#define SB_DEFAULT_MAX_INFLIGHT 100000

typedef enum sb_req_state {
    SBR_CONNECTING = 0,
    SBR_WAITING_FIRST_TOKEN,
    SBR_STREAMING,
    SBR_DONE,
    SBR_FAILED,
} sb_req_state_t;

typedef enum sb_phase {
    PH_IDLE = 0,
    PH_WARMUP,
    PH_WARMUP_DRAIN,
    PH_MEASURE,
    PH_DRAIN,
    PH_FINISHED,
} sb_phase_t;

typedef struct sb_req sb_req_t;

struct sb_req {
    sb_run_t *run;
    sb_req_state_t state;
    http_call_t *call;
    sb_spec_t *spec; /* owned */
    bool warmup;     /* sent during warm-up: not counted */
    size_t stage;
    uint64_t t_send_ns, t_first_ns, t_last_ns, t_done_ns;
    int http_status;
    sb_sse_t sse;
    bool got_done;
    sb_outcome_t fail_outcome; /* set by req_on_event when it stops the stream */
    char detail[160];
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    size_t n_chunks;
    double *itl;
    size_t n_itl, cap_itl;
    sy_buf_t answer;  /* content (multi-turn only) */
    sy_buf_t errbody; /* start of a non-200 body */
    char endpoint[96];
    bool have_endpoint;
    uint64_t start_timer;  /* pending on_start_failed */
    sb_req_t *prev, *next; /* in-flight list */
};

struct sb_run {
    sb_run_cfg_t cfg;
    sb_stage_plan_t *plans;
    ev_loop_t *loop;
    http_client_t *cl;
    http_upstream_t *up;
    sb_workload_t *wl;
    sb_stage_stats_t *st;
    size_t n_st, stage, stages_done;
    sb_phase_t phase;
    uint64_t phase_t0_ns, phase_sent;
    double next_arrival_ns;
    uint64_t arrival_timer, phase_timer, drain_timer, progress_timer, kick_timer;
    sb_rng_t rng;
    sb_req_t *inflight;
    size_t n_inflight;
    sb_spec_t *pending; /* trace: the next spec, sent at its time */
    bool interrupted;
    ev_async_t *sig;
    sy_buf_t body;
    char headers[512];
    int rc;
};

static void req_assert_state(const sb_req_t *q)
{
    switch (q->state) {
    case SBR_CONNECTING:
    case SBR_WAITING_FIRST_TOKEN:
        SY_ASSERT(q->call != NULL);
        break;
    case SBR_STREAMING:
        SY_ASSERT(q->call != NULL && q->t_first_ns != 0);
        break;
    case SBR_DONE:
    case SBR_FAILED:
        SY_ASSERT(q->call == NULL);
        break;
    }
}

static void run_kick(sb_run_t *r);

/* ---------------------------------------------------------------- phases */

static const sb_stage_plan_t *cur_plan(const sb_run_t *r)
{
    return &r->plans[r->stage < r->n_st ? r->stage : r->n_st - 1];
}

static bool closed_loop(const sb_run_t *r)
{
    return cur_plan(r)->concurrency > 0;
}

static bool issuing(const sb_run_t *r)
{
    return r->phase == PH_WARMUP || r->phase == PH_MEASURE;
}

static void cancel_timer(sb_run_t *r, uint64_t *id)
{
    if (*id) {
        ev_timer_cancel(r->loop, *id);
        *id = 0;
    }
}

static void req_fail_all(sb_run_t *r, const char *why);
static void on_drain_timer(ev_loop_t *loop, uint64_t id, void *udata);

/* Stops issuing in the current phase; the drain begins. */
static void end_issue(sb_run_t *r)
{
    if (!issuing(r))
        return;
    cancel_timer(r, &r->arrival_timer);
    cancel_timer(r, &r->phase_timer);
    if (r->pending) {
        sb_spec_free(r->pending);
        r->pending = NULL;
    }
    if (r->phase == PH_WARMUP) {
        r->phase = PH_WARMUP_DRAIN;
    } else {
        r->phase = PH_DRAIN;
        r->st[r->stage].t_issue_end_ns = sy_mono_ns();
    }
    double dt = r->cfg.drain_timeout_s > 0 ? r->cfg.drain_timeout_s : 120.0;
    r->drain_timer = ev_timer_add(r->loop, (uint64_t)(dt * 1000.0), on_drain_timer, r);
    run_kick(r);
}

static void on_phase_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    sb_run_t *r = udata;
    r->phase_timer = 0;
    end_issue(r);
}

static void on_drain_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    sb_run_t *r = udata;
    r->drain_timer = 0;
    req_fail_all(r, "drain timeout");
    run_kick(r);
}

static int req_start(sb_run_t *r, sb_spec_t *spec);
static void on_arrival(ev_loop_t *loop, uint64_t id, void *udata);

/* Count bound of the current phase (0 = none). */
static uint64_t phase_limit(const sb_run_t *r)
{
    return r->phase == PH_WARMUP ? r->cfg.warmup_requests : cur_plan(r)->num_requests;
}

/* Sends spec (takes ownership) in the current phase; ends the phase at its count bound. */
static void issue_spec(sb_run_t *r, sb_spec_t *spec)
{
    r->phase_sent++;
    if (r->phase == PH_MEASURE)
        r->st[r->stage].n_sent++;
    req_start(r, spec);
    uint64_t lim = phase_limit(r);
    if (lim && r->phase_sent >= lim)
        end_issue(r);
}

/* Takes the next spec and sends it. false when nothing is ready (or issuing ended). */
static bool issue_one(sb_run_t *r)
{
    if (!issuing(r))
        return false;
    sb_spec_t *spec = sb_wl_next(r->wl);
    if (!spec) {
        if (sb_wl_exhausted(r->wl))
            end_issue(r);
        return false;
    }
    issue_spec(r, spec);
    return true;
}

static double arrival_gap_ns(sb_run_t *r)
{
    double rate = cur_plan(r)->rate;
    if (rate <= 0)
        rate = 1.0;
    double g = 1e9 / rate;
    return r->cfg.poisson ? g * sb_rng_exp(&r->rng) : g;
}

static void arm_arrival(sb_run_t *r, uint64_t now)
{
    double d = r->next_arrival_ns - (double)now;
    uint64_t ms = d <= 0 ? 0 : (uint64_t)ceil(d / 1e6);
    r->arrival_timer = ev_timer_add(r->loop, ms, on_arrival, r);
}

static size_t max_inflight(const sb_run_t *r)
{
    return r->cfg.max_inflight ? r->cfg.max_inflight : SB_DEFAULT_MAX_INFLIGHT;
}

static void on_arrival(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    sb_run_t *r = udata;
    r->arrival_timer = 0;
    uint64_t now = sy_mono_ns();
    double speed = r->cfg.trace_speed > 0 ? r->cfg.trace_speed : 1.0;
    while (issuing(r)) {
        if (r->cfg.trace_timing) {
            if (!r->pending) {
                r->pending = sb_wl_next(r->wl);
                if (!r->pending) {
                    end_issue(r);
                    return;
                }
                r->next_arrival_ns = (double)r->phase_t0_ns + r->pending->t_ms * 1e6 / speed;
            }
        }
        if (r->next_arrival_ns > (double)now)
            break;
        double lag_ms = ((double)now - r->next_arrival_ns) / 1e6;
        if (r->phase == PH_MEASURE) {
            sb_stage_stats_t *st = &r->st[r->stage];
            if (lag_ms > st->max_arrival_lag_ms)
                st->max_arrival_lag_ms = lag_ms;
            st->sum_arrival_lag_ms += lag_ms;
            st->n_arrivals++;
        }
        if (r->cfg.trace_timing) {
            sb_spec_t *s = r->pending;
            r->pending = NULL;
            if (r->n_inflight >= max_inflight(r)) {
                sb_spec_free(s);
                if (r->phase == PH_MEASURE)
                    r->st[r->stage].n_skipped++;
            } else {
                issue_spec(r, s);
            }
        } else {
            if (r->n_inflight >= max_inflight(r) || !issue_one(r)) {
                if (r->phase == PH_MEASURE && issuing(r))
                    r->st[r->stage].n_skipped++;
            }
            r->next_arrival_ns += arrival_gap_ns(r);
        }
        now = sy_mono_ns();
    }
    if (issuing(r))
        arm_arrival(r, now);
}

/* Starts issuing for the current phase. */
static void begin_issue(sb_run_t *r)
{
    r->phase_t0_ns = sy_mono_ns();
    r->phase_sent = 0;
    double dur = r->phase == PH_WARMUP ? r->cfg.warmup_s : cur_plan(r)->duration_s;
    if (dur > 0)
        r->phase_timer = ev_timer_add(r->loop, (uint64_t)llround(dur * 1000.0), on_phase_timer, r);
    if (r->phase == PH_MEASURE)
        r->st[r->stage].t_start_ns = r->phase_t0_ns;
    if (closed_loop(r)) {
        run_kick(r);
    } else {
        r->next_arrival_ns = (double)r->phase_t0_ns;
        arm_arrival(r, r->phase_t0_ns);
    }
}

static void start_stage(sb_run_t *r)
{
    if (r->stage == 0 && (r->cfg.warmup_s > 0 || r->cfg.warmup_requests > 0) &&
        !r->cfg.trace_timing) {
        r->phase = PH_WARMUP;
    } else {
        r->phase = PH_MEASURE;
        if (r->stage > 0 || r->cfg.trace_timing)
            sb_wl_rewind(r->wl);
    }
    sy_info("bench.stage", "stage=%zu rate=%.3f concurrency=%u duration_s=%.1f requests=%llu%s",
            r->stage, r->plans[r->stage].rate, r->plans[r->stage].concurrency,
            r->plans[r->stage].duration_s, (unsigned long long)r->plans[r->stage].num_requests,
            r->phase == PH_WARMUP ? " warmup=1" : "");
    begin_issue(r);
}

/* Moves on when the current drain is over. */
static void advance(sb_run_t *r)
{
    cancel_timer(r, &r->drain_timer);
    if (r->phase == PH_WARMUP_DRAIN) {
        r->phase = PH_MEASURE; /* the workload goes on: warm-up prompts are not repeated */
        begin_issue(r);
        return;
    }
    if (r->phase != PH_DRAIN)
        return;
    sb_stage_stats_t *s = &r->st[r->stage];
    if (!s->t_end_ns)
        s->t_end_ns = sy_mono_ns();
    r->stages_done = r->stage + 1;
    if (r->stage + 1 < r->n_st) {
        r->stage++;
        start_stage(r);
        return;
    }
    r->phase = PH_FINISHED;
    ev_stop(r->loop);
}

static void on_kick(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    sb_run_t *r = udata;
    r->kick_timer = 0;
    if (r->phase == PH_FINISHED || r->interrupted)
        return;
    if (issuing(r) && closed_loop(r)) {
        uint32_t conc = cur_plan(r)->concurrency;
        while (issuing(r) && r->n_inflight < conc)
            if (!issue_one(r))
                break;
    }
    if ((r->phase == PH_DRAIN || r->phase == PH_WARMUP_DRAIN) && r->n_inflight == 0)
        advance(r);
}

static void run_kick(sb_run_t *r)
{
    if (!r->kick_timer)
        r->kick_timer = ev_timer_add(r->loop, 0, on_kick, r);
}

/* ---------------------------------------------------------------- requests */

static void req_free(sb_req_t *q)
{
    sb_sse_deinit(&q->sse);
    sy_free(q->itl);
    sy_buf_deinit(&q->answer);
    sy_buf_deinit(&q->errbody);
    sb_spec_free(q->spec);
    sy_free(q);
}

static void list_unlink(sb_run_t *r, sb_req_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        r->inflight = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    r->n_inflight--;
}

/* DONE/FAILED: records the request, tells the workload, frees it, kicks the driver. */
static void req_finish(sb_req_t *q, sb_outcome_t outcome)
{
    sb_run_t *r = q->run;
    if (q->start_timer) {
        ev_timer_cancel(r->loop, q->start_timer);
        q->start_timer = 0;
    }
    q->state = outcome == SB_OK ? SBR_DONE : SBR_FAILED;
    req_assert_state(q);
    uint64_t t_end = q->t_done_ns ? q->t_done_ns : sy_mono_ns();
    if (!q->warmup && q->stage < r->n_st) {
        sb_rec_t rec = {
            .outcome = outcome,
            .http_status = q->http_status,
            .ttft_ms = q->t_first_ns ? (double)(q->t_first_ns - q->t_send_ns) / 1e6 : -1.0,
            .e2e_ms = (double)(t_end - q->t_send_ns) / 1e6,
            .itl_ms = q->itl,
            .n_itl = q->n_itl,
            .prompt_tokens = q->prompt_tokens,
            .completion_tokens = q->completion_tokens,
            .cached_tokens = q->cached_tokens,
            .n_chunks = q->n_chunks,
            .max_tokens = q->spec ? q->spec->output_len : 0,
            .endpoint = q->have_endpoint ? q->endpoint : NULL,
            .detail = q->detail[0] ? q->detail : NULL,
        };
        sb_stage_stats_t *s = &r->st[q->stage];
        sb_stage_add(s, &rec);
        if (t_end > s->t_end_ns)
            s->t_end_ns = t_end;
        if (outcome != SB_OK)
            sy_debug("bench.request_failed", "reason=%s detail=\"%s\"", sb_outcome_name(outcome),
                     q->detail);
    }
    if (q->spec)
        sb_wl_done(r->wl, q->spec, outcome == SB_OK, q->answer.data, q->answer.len);
    list_unlink(r, q);
    req_free(q);
    run_kick(r);
}

static void req_fail(sb_req_t *q, sb_outcome_t outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Any live state -> FAILED, keeping q->detail: cancels the call (no more callbacks), finishes. */
static void req_stop(sb_req_t *q, sb_outcome_t outcome)
{
    if (q->call) {
        http_call_cancel(q->call);
        q->call = NULL;
    }
    req_finish(q, outcome);
}

/* req_stop with a detail. */
static void req_fail(sb_req_t *q, sb_outcome_t outcome, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->detail, sizeof q->detail, fmt, ap);
    va_end(ap);
    req_stop(q, outcome);
}

static void req_fail_all(sb_run_t *r, const char *why)
{
    sb_req_t *q = r->inflight;
    while (q) {
        sb_req_t *next = q->next;
        req_fail(q, SB_ERR_ABORTED, "%s", why);
        q = next;
    }
}

static void req_on_head(http_call_t *c, int status, const http_header_t *h, size_t n, void *udata)
{
    (void)c;
    sb_req_t *q = udata;
    q->http_status = status;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.len == 21 && strncasecmp(h[i].name.ptr, "x-switchyard-endpoint", 21) == 0) {
            size_t l =
                h[i].value.len < sizeof q->endpoint - 1 ? h[i].value.len : sizeof q->endpoint - 1;
            memcpy(q->endpoint, h[i].value.ptr, l);
            q->endpoint[l] = '\0';
            q->have_endpoint = true;
        }
    }
    if (status == 200)
        q->state = SBR_WAITING_FIRST_TOKEN;
    req_assert_state(q);
}

#define SB_EV_STOP 1 /* req_on_event: stop the stream (q->fail_outcome is set) */

static int req_on_event(const char *data, size_t len, void *udata)
{
    sb_req_t *q = udata;
    if (q->got_done)
        return ST_OK; /* anything after [DONE] is ignored */
    sb_chunk_t ch;
    sy_buf_t *content = sb_wl_wants_answer(q->run->wl) ? &q->answer : NULL;
    int rc = sb_chunk_decode(data, len, &ch, content);
    if (rc != ST_OK) {
        q->fail_outcome = SB_ERR_MALFORMED;
        size_t k = (size_t)snprintf(q->detail, sizeof q->detail, "malformed chunk: ");
        for (size_t i = 0; i < len && i < 60 && k + 1 < sizeof q->detail; i++) {
            unsigned char b = (unsigned char)data[i];
            q->detail[k++] = b >= 0x20 && b < 0x7f ? (char)b : '?';
        }
        q->detail[k] = '\0';
        return SB_EV_STOP;
    }
    uint64_t now = sy_mono_ns();
    if (ch.done) {
        q->got_done = true;
        q->t_done_ns = now;
        return ST_OK;
    }
    if (ch.is_error) {
        q->fail_outcome = SB_ERR_INBAND;
        snprintf(q->detail, sizeof q->detail, "error event: %s", ch.error_msg);
        return SB_EV_STOP;
    }
    if (ch.content_len > 0) {
        if (!q->t_first_ns) {
            q->t_first_ns = now;
            q->state = SBR_STREAMING;
        } else {
            if (q->n_itl == q->cap_itl) {
                size_t nc = q->cap_itl ? q->cap_itl * 2 : 64;
                double *ni = sy_realloc(q->itl, nc * sizeof *ni);
                if (ni) {
                    q->itl = ni;
                    q->cap_itl = nc;
                }
            }
            if (q->n_itl < q->cap_itl)
                q->itl[q->n_itl++] = (double)(now - q->t_last_ns) / 1e6;
        }
        q->t_last_ns = now;
        q->n_chunks++;
    }
    if (ch.has_usage) {
        if (ch.prompt_tokens >= 0)
            q->prompt_tokens = ch.prompt_tokens;
        if (ch.completion_tokens >= 0)
            q->completion_tokens = ch.completion_tokens;
        if (ch.cached_tokens >= 0)
            q->cached_tokens = ch.cached_tokens;
    }
    req_assert_state(q);
    return ST_OK;
}

static void req_on_data(http_call_t *c, const char *data, size_t len, void *udata)
{
    (void)c;
    sb_req_t *q = udata;
    if (q->http_status != 200) {
        size_t room = q->errbody.len < SB_ERRBODY_MAX ? SB_ERRBODY_MAX - q->errbody.len : 0;
        if (room)
            sy_buf_append(&q->errbody, data, len < room ? len : room);
        return;
    }
    int rc = sb_sse_feed(&q->sse, data, len, req_on_event, q);
    if (rc == ST_OK)
        return;
    if (rc == SB_EV_STOP)
        req_stop(q, q->fail_outcome);
    else if (rc == ST_LIMIT)
        req_fail(q, SB_ERR_MALFORMED, "SSE event over %u bytes", SB_SSE_DEFAULT_MAX_EVENT);
    else
        req_fail(q, SB_ERR_IO, "%s", st_str(rc));
}

/* Short printable excerpt of a non-200 body for the error detail. */
static void body_excerpt(const sy_buf_t *b, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < b->len && k + 1 < cap && k < 80; i++) {
        unsigned char ch = (unsigned char)b->data[i];
        out[k++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char)ch : ' ';
    }
    out[k] = '\0';
}

static void req_on_done(http_call_t *c, int status, bool first_byte, void *udata)
{
    (void)c;
    sb_req_t *q = udata;
    q->call = NULL;
    if (status == ST_OK) {
        if (q->http_status == 429) {
            req_fail(q, SB_REJECTED, "HTTP 429");
        } else if (q->http_status != 200) {
            char ex[96];
            body_excerpt(&q->errbody, ex, sizeof ex);
            req_fail(q, SB_ERR_HTTP, "HTTP %d: %s", q->http_status, ex);
        } else if (!q->got_done) {
            req_fail(q, SB_ERR_NO_DONE, "stream ended without [DONE]%s",
                     sb_sse_pending(&q->sse) ? " (mid-event)" : "");
        } else {
            req_finish(q, SB_OK);
        }
        return;
    }
    if (status == ST_TIMEOUT) {
        req_fail(q, SB_ERR_STALL, "no byte for %.1f s (%s)", q->run->cfg.timeout_s,
                 q->http_status ? "mid-response"
                 : first_byte   ? "mid-head"
                                : "no response");
    } else if (!first_byte &&
               (status == -ECONNREFUSED || status == -EHOSTUNREACH || status == -ENETUNREACH ||
                status == -ETIMEDOUT || status == -EADDRNOTAVAIL)) {
        req_fail(q, SB_ERR_CONNECT, "%s", st_str(status));
    } else if (status == ST_PROTO || status == ST_LIMIT) {
        req_fail(q, SB_ERR_MALFORMED, "bad HTTP response: %s", st_str(status));
    } else if (status == ST_CLOSED && q->http_status == 200) {
        req_fail(q, SB_ERR_NO_DONE, "connection closed before [DONE]");
    } else {
        req_fail(q, SB_ERR_IO, "%s%s", st_str(status),
                 first_byte ? " after the response began" : " before any response byte");
    }
}

static const http_call_cbs_t k_cbs = {
    .on_head = req_on_head,
    .on_data = req_on_data,
    .on_done = req_on_done,
};

/* Failure of http_call_start itself: finished from a 0 ms timer, never synchronously. */
static void on_start_failed(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)loop;
    (void)id;
    sb_req_t *q = udata;
    q->start_timer = 0;
    req_finish(q, q->fail_outcome);
}

static int req_start(sb_run_t *r, sb_spec_t *spec)
{
    sb_req_t *q = sy_calloc(1, sizeof *q);
    if (!q) {
        sb_wl_done(r->wl, spec, false, NULL, 0);
        sb_spec_free(spec);
        if (r->phase == PH_MEASURE)
            r->st[r->stage].n_done++, r->st[r->stage].by_outcome[SB_ERR_IO]++;
        return ST_NOMEM;
    }
    q->run = r;
    q->spec = spec;
    q->warmup = r->phase == PH_WARMUP;
    q->stage = r->stage;
    q->prompt_tokens = q->completion_tokens = q->cached_tokens = -1;
    sb_sse_init(&q->sse, 0);
    sy_buf_init(&q->answer);
    sy_buf_init(&q->errbody);
    q->next = r->inflight;
    if (r->inflight)
        r->inflight->prev = q;
    r->inflight = q;
    r->n_inflight++;
    sy_buf_reset(&r->body);
    int rc = sb_wl_body(r->wl, spec, r->cfg.model, &r->body);
    q->t_send_ns = sy_mono_ns();
    if (rc == ST_OK)
        rc = http_call_start(r->up, "POST", r->cfg.path, r->headers, r->body.data, r->body.len,
                             &k_cbs, q, &q->call);
    if (rc != ST_OK) {
        q->call = NULL;
        q->fail_outcome = rc == -ECONNREFUSED ? SB_ERR_CONNECT : SB_ERR_IO;
        snprintf(q->detail, sizeof q->detail, "request not started: %s", st_str(rc));
        q->state = SBR_FAILED;
        q->start_timer = ev_timer_add(r->loop, 0, on_start_failed, q);
        if (!q->start_timer)
            req_finish(q, q->fail_outcome);
        return rc;
    }
    q->state = SBR_CONNECTING;
    req_assert_state(q);
    return ST_OK;
}

/* ---------------------------------------------------------------- progress, signals */

static void on_progress(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    sb_run_t *r = udata;
    r->progress_timer = ev_timer_add(loop, 1000, on_progress, r);
    if (r->phase == PH_FINISHED || r->stage >= r->n_st)
        return;
    const sb_stage_stats_t *s = &r->st[r->stage];
    double sum = 0;
    for (size_t i = 0; i < s->ttft.n; i++)
        sum += s->ttft.v[i];
    double el = s->t_start_ns ? (double)(sy_mono_ns() - s->t_start_ns) / 1e9 : 0;
    const char *ph = r->phase == PH_WARMUP || r->phase == PH_WARMUP_DRAIN ? "warmup"
                     : r->phase == PH_DRAIN                               ? "drain"
                                                                          : "run";
    fprintf(stderr,
            "\r\033[K[stage %zu/%zu %s %.0fs] sent %llu ok %llu err %llu 429 %llu inflight %zu "
            "ttft_mean %.1f ms",
            r->stage + 1, r->n_st, ph, el, (unsigned long long)s->n_sent,
            (unsigned long long)s->n_ok, (unsigned long long)sb_stage_errors(s),
            (unsigned long long)s->by_outcome[SB_REJECTED], r->n_inflight,
            s->ttft.n ? sum / (double)s->ttft.n : 0.0);
    fflush(stderr);
}

static ev_async_t *volatile g_sig_async;

static void on_signal(int sig)
{
    (void)sig;
    ev_async_t *a = g_sig_async;
    if (a)
        ev_async_send(a);
}

static void on_sig_async(ev_loop_t *loop, void *udata)
{
    sb_run_t *r = udata;
    if (r->interrupted)
        return;
    r->interrupted = true;
    sy_warn("bench.interrupted", "inflight=%zu", r->n_inflight);
    cancel_timer(r, &r->arrival_timer);
    cancel_timer(r, &r->phase_timer);
    cancel_timer(r, &r->drain_timer);
    if (r->phase == PH_MEASURE || r->phase == PH_DRAIN)
        r->stages_done = r->stage + 1;
    req_fail_all(r, "interrupted");
    if (r->stage < r->n_st && r->st[r->stage].t_start_ns && !r->st[r->stage].t_end_ns)
        r->st[r->stage].t_end_ns = sy_mono_ns();
    r->phase = PH_FINISHED;
    ev_stop(loop);
}

/* ---------------------------------------------------------------- public */

int sb_run_create(const sb_run_cfg_t *cfg, sb_workload_t *wl, sb_run_t **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    if (!cfg->n_stages || !cfg->stages || !cfg->host || !cfg->path || !cfg->model) {
        sy_errf(err, errlen, "runner: missing configuration");
        return ST_INVAL;
    }
    sb_run_t *r = sy_calloc(1, sizeof *r);
    int rc = ST_NOMEM;
    if (!r)
        return ST_NOMEM;
    r->cfg = *cfg;
    r->wl = wl;
    r->rng.s = cfg->seed ^ 0xa0761d6478bd642full;
    sy_buf_init(&r->body);
    r->n_st = cfg->n_stages;
    r->plans = sy_calloc(r->n_st, sizeof *r->plans);
    r->st = sy_calloc(r->n_st, sizeof *r->st);
    if (!r->plans || !r->st)
        goto fail;
    memcpy(r->plans, cfg->stages, r->n_st * sizeof *r->plans);
    r->cfg.stages = r->plans;
    for (size_t i = 0; i < r->n_st; i++) {
        sb_stage_init(&r->st[i], &cfg->slo);
        r->st[i].rate = r->plans[i].concurrency ? 0 : r->plans[i].rate;
        r->st[i].concurrency = r->plans[i].concurrency;
    }
    if (cfg->api_key && *cfg->api_key)
        snprintf(r->headers, sizeof r->headers,
                 "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                 "Authorization: Bearer %s\r\n",
                 cfg->api_key);
    else
        snprintf(r->headers, sizeof r->headers,
                 "Content-Type: application/json\r\nAccept: text/event-stream\r\n");
    r->loop = ev_loop_create();
    if (!r->loop)
        goto fail;
    http_client_config_t hc;
    http_client_config_default(&hc);
    double to = cfg->timeout_s > 0 ? cfg->timeout_s : 60.0;
    hc.connect_timeout_ms = (uint32_t)(to * 1000.0);
    hc.first_byte_timeout_ms = (uint32_t)(to * 1000.0);
    hc.read_timeout_ms = (uint32_t)(to * 1000.0);
    hc.max_idle_per_upstream = 100000;
    r->cl = http_client_create(r->loop, &hc);
    if (!r->cl)
        goto fail;
    r->up = http_upstream_create(r->cl, cfg->host, cfg->port, &rc);
    if (!r->up) {
        sy_errf(err, errlen, "cannot resolve %s:%d: %s", cfg->host, cfg->port, st_str(rc));
        goto fail;
    }
    r->sig = ev_async_create(r->loop, on_sig_async, r);
    if (!r->sig) {
        rc = ST_NOMEM;
        goto fail;
    }
    *out = r;
    return ST_OK;
fail:
    if (rc == ST_NOMEM)
        sy_errf(err, errlen, "out of memory");
    sb_run_destroy(r);
    return rc;
}

void sb_run_destroy(sb_run_t *r)
{
    if (!r)
        return;
    /* requests still in flight (an interrupted loop) are dropped without callbacks */
    sb_req_t *q = r->inflight;
    while (q) {
        sb_req_t *next = q->next;
        if (q->call)
            http_call_cancel(q->call);
        req_free(q);
        q = next;
    }
    sb_spec_free(r->pending);
    if (r->sig)
        ev_async_destroy(r->sig);
    http_client_destroy(r->cl);
    ev_loop_destroy(r->loop);
    if (r->st)
        for (size_t i = 0; i < r->n_st; i++)
            sb_stage_deinit(&r->st[i]);
    sy_free(r->st);
    sy_free(r->plans);
    sy_buf_deinit(&r->body);
    sy_free(r);
}

int sb_run_exec(sb_run_t *r)
{
    struct sigaction sa, old_int, old_term, old_pipe;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_sig_async = r->sig;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    if (r->cfg.progress)
        r->progress_timer = ev_timer_add(r->loop, 1000, on_progress, r);
    r->stage = 0;
    start_stage(r);
    int rc = ev_run(r->loop);
    if (r->cfg.progress)
        fputs("\n", stderr);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    g_sig_async = NULL;
    if (rc != ST_OK)
        return rc;
    return r->interrupted ? ST_CLOSED : ST_OK;
}

size_t sb_run_n_stages(const sb_run_t *r)
{
    return r->n_st;
}

sb_stage_stats_t *sb_run_stage(sb_run_t *r, size_t i)
{
    return i < r->n_st ? &r->st[i] : NULL;
}

size_t sb_run_stages_done(const sb_run_t *r)
{
    return r->stages_done;
}
