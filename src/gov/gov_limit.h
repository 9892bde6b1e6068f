/*
 * gov_limit.h - per-tenant rate limits: a requests-per-second token bucket (with burst), a
 * tokens-per-minute bucket (prompt tokens charged on admission, output tokens charged as they
 * stream, possibly driving the bucket negative so the next admission waits), and a concurrency cap
 * (admit increments, release decrements). Also the OpenAI-style rate-limit response headers and
 * the 429 error body.
 *
 * Time is a parameter (now_ns, CLOCK_MONOTONIC nanoseconds; the gateway passes its event-loop time)
 * so tests are deterministic. Bucket arithmetic is integer (fixed point), so header values are
 * exact. A limiter state is refcounted: the tenant table holds one reference and every admitted
 * request holds one through its lease, so a release after a config reload (or after the tenant was
 * removed) always lands in live memory.
 * Does not: know tenants, keys or HTTP (gov_tenant.h does the first two, the gateway the last).
 * Thread-safety: none. Every function must be called from the one thread that owns the states
 * (the gateway's event-loop thread); refcounts are plain integers.
 */
#ifndef SY_GOV_LIMIT_H
#define SY_GOV_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Config bounds (the tenant file loader enforces them; glim_state_create refuses values outside).
 */
#define GLIM_RPS_MIN 0.001          /* requests_per_second resolution: 1/1000 request per second */
#define GLIM_RPS_MAX 1000000.0      /* requests_per_second */
#define GLIM_BURST_MAX 1000000      /* burst (requests) */
#define GLIM_TPM_MAX 100000000      /* tokens_per_minute (fixed-point range) */
#define GLIM_CONCURRENT_MAX 1000000 /* max_concurrent */

/* Retry-After sent with a concurrency refusal: when a slot frees up is not predictable. */
#define GLIM_CONCURRENCY_RETRY_NS 1000000000LL

/* The limits of one tenant. 0 in a field = that limit is off. */
typedef struct glim_limits {
    double requests_per_second; /* refill rate of the request bucket; 0 = unlimited */
    int64_t burst; /* request bucket capacity; 0 = default max(1, ceil(requests_per_second)) */
    int64_t tokens_per_minute; /* token bucket capacity and refill per minute; 0 = unlimited */
    int64_t max_concurrent;    /* requests in flight at once; 0 = unlimited */
} glim_limits_t;

/* Refcounted limiter state of one tenant (opaque). */
typedef struct glim_state glim_state_t;

/* Creates a state with full buckets at now_ns and nothing in flight. name (borrowed, copied) labels
 * the state (the tenant name; it survives reloads with the state). Returns owned (one reference;
 * drop with glim_state_unref) or NULL on ST_NOMEM or limits outside the GLIM_* bounds. */
glim_state_t *glim_state_create(const char *name, const glim_limits_t *lim, int64_t now_ns);
/* Adds a reference; returns st. */
glim_state_t *glim_state_ref(glim_state_t *st);
/* Drops a reference; frees the state with the last one. NULL ok. */
void glim_state_unref(glim_state_t *st);
/* Replaces the limits (config reload), keeping levels and the in-flight count: buckets are first
 * refilled to now_ns under the old limits, then clamped to the new capacities; a bucket that was
 * unlimited before starts full. In-flight requests above a lowered max_concurrent stay admitted;
 * new ones wait until the count drops below it. ST_OK or ST_INVAL (limits outside the bounds;
 * st unchanged). */
int glim_state_set_limits(glim_state_t *st, const glim_limits_t *lim, int64_t now_ns);
/* The name given at creation (borrowed, lives as long as st). */
const char *glim_state_name(const glim_state_t *st);
/* Requests currently admitted and not yet released. */
int64_t glim_state_in_flight(const glim_state_t *st);

/* Counters since the state was created (they carry over reloads with the state). */
typedef struct glim_stats {
    uint64_t admitted;
    uint64_t refused_requests;    /* request bucket empty */
    uint64_t refused_tokens;      /* token bucket short (including too large) */
    uint64_t refused_concurrency; /* max_concurrent reached */
    uint64_t prompt_tokens;       /* charged on admission */
    uint64_t output_tokens;       /* charged by glim_charge_output */
} glim_stats_t;
void glim_state_stats(const glim_state_t *st, glim_stats_t *out);

/* One admitted request's hold on its tenant's state. Caller-owned storage (put it in the request
 * object); initialise with GLIM_LEASE_INIT. Holds a reference on the state from glim_admit until
 * glim_release, so the state outlives reloads and gten_destroy while the request is in flight. */
typedef struct glim_lease {
    glim_state_t *_st; /* NULL = not holding */
} glim_lease_t;
#define GLIM_LEASE_INIT                                                                            \
    {                                                                                              \
        NULL                                                                                       \
    }

typedef enum glim_reason {
    GLIM_ADMITTED = 0,
    GLIM_REFUSED_REQUESTS = 1,    /* request bucket below one request */
    GLIM_REFUSED_TOKENS = 2,      /* token bucket below prompt_tokens (or negative) */
    GLIM_REFUSED_CONCURRENCY = 3, /* max_concurrent requests in flight */
    GLIM_REFUSED_TOO_LARGE = 4,   /* prompt_tokens + max_tokens > tokens_per_minute: never fits */
} glim_reason_t;

/* What admission decided, with the values of the rate-limit headers. Value type. */
typedef struct glim_result {
    glim_reason_t reason;
    int64_t retry_after_ns; /* refused: time until a retry can pass (0 for TOO_LARGE) */
    bool has_requests;      /* a request limit is configured (the -requests headers apply) */
    int64_t limit_requests; /* bucket capacity (burst) */
    int64_t remaining_requests;
    int64_t reset_requests_ns; /* until the request bucket is full again */
    double requests_per_second;
    bool has_tokens;          /* a token limit is configured (the -tokens headers apply) */
    int64_t limit_tokens;     /* tokens_per_minute */
    int64_t remaining_tokens; /* floor of the level, >= 0 */
    int64_t tokens_level;     /* floor of the level; negative after output overdraft */
    int64_t reset_tokens_ns;  /* until the token bucket is full again */
    int64_t requested_tokens; /* prompt_tokens (+ max_tokens for TOO_LARGE) */
    int64_t max_concurrent;   /* 0 = unlimited */
    int64_t in_flight;        /* after admission */
} glim_result_t;

/* Admission of one request needing prompt_tokens now and up to max_tokens of output (0 = not
 * given; max_tokens is not reserved, it only makes a request that can never fit a minute's budget
 * fail fast with TOO_LARGE). Negative counts are taken as 0. Checks every limit first and charges
 * only when all pass: one request from the request bucket, prompt_tokens from the token bucket,
 * one in-flight slot. On admission the lease takes a reference on st and ST_OK is returned; on
 * refusal ST_LIMIT is returned, nothing is charged, and the lease stays empty. *res (may be NULL)
 * receives the decision and the header values either way. The lease must be empty (GLIM_LEASE_INIT
 * or released) when called. */
int glim_admit(glim_state_t *st, int64_t now_ns, int64_t prompt_tokens, int64_t max_tokens,
               glim_lease_t *lease, glim_result_t *res);
/* Charges n output tokens (as they stream) to the lease's token bucket; the level may go negative,
 * down to minus one minute's budget (the debt is capped there), and later admissions wait until it
 * has refilled to their prompt size. No-op on an empty lease or n <= 0. */
void glim_charge_output(glim_lease_t *lease, int64_t now_ns, int64_t n);
/* Ends the request: decrements the in-flight count, drops the lease's reference and empties the
 * lease. Idempotent (an empty lease is a no-op), safe after any number of reloads. */
void glim_release(glim_lease_t *lease);
/* The state a lease holds (borrowed), or NULL when empty. */
glim_state_t *glim_lease_state(const glim_lease_t *lease);

/* Fills *res with the current header values of st at now_ns without admitting anything (reason
 * GLIM_ADMITTED, requested 0). */
void glim_peek(glim_state_t *st, int64_t now_ns, glim_result_t *res);

/* HTTP status for a result: 200 when admitted, 429 otherwise. */
int glim_result_http_status(const glim_result_t *r);

/* ---- response headers ---- */

#define GLIM_MAX_HEADERS 7
typedef struct glim_header {
    const char *name;  /* static lowercase header name */
    const char *value; /* points into the glim_headers_t it is in */
} glim_header_t;
/* Caller-owned storage for the headers of one response. Values point into the struct itself: do
 * not copy it, pass it by pointer. */
typedef struct glim_headers {
    glim_header_t h[GLIM_MAX_HEADERS];
    size_t n;
    char _val[GLIM_MAX_HEADERS][32];
} glim_headers_t;

/* Fills out with OpenAI's rate-limit headers for r, for 200 and 429 responses alike:
 *   x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests
 *     (when a request limit is configured; the limit is the burst, reset a duration like "120ms",
 *      "1s", "1.5s", "6m0s"), the same three with -tokens (when a token limit is configured),
 *   retry-after (refusals other than TOO_LARGE: whole seconds, rounded up).
 * Never fails. */
void glim_headers_fill(const glim_result_t *r, glim_headers_t *out);
/* Appends the headers as "name: value\r\n" lines (for http_req_respond's extra_headers).
 * ST_OK or ST_NOMEM. */
int glim_headers_append(const glim_headers_t *h, sy_buf_t *out);

/* Writes a duration the way OpenAI's x-ratelimit-reset-* headers do (Go's time.Duration text at
 * millisecond resolution, rounded up): "0s", "1ms", "120ms", "1s", "1.5s", "59.999s", "6m0s",
 * "1h2m3.04s". Negative ns is "0s". Returns out. cap >= 32 always suffices. */
char *glim_format_duration(int64_t ns, char *out, size_t cap);
/* Retry-After seconds for a wait: ceil(ns / 1e9), at least 1 when ns > 0, 0 when ns <= 0. */
int64_t glim_retry_after_s(int64_t ns);

/* Appends OpenAI's 429 body for a refusal:
 *   {"error":{"message":"Rate limit reached for MODEL in tenant NAME on requests per second
 *   (RPS): ...","type":"requests"|"tokens","param":null,"code":"rate_limit_exceeded"}}
 * model and tenant (borrowed, may be NULL) are only quoted in the message. ST_OK, ST_NOMEM, or
 * ST_INVAL when r was admitted. */
int glim_error_body(const glim_result_t *r, const char *tenant, const char *model, sy_buf_t *out);

#endif
