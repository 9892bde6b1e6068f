/*
 * gw_gov.h - the gateway's governance layer: the glue between the data plane (gw_proxy.c) and the
 * governance modules: tenants and API keys with their rate limits (gov_tenant.h, gov_limit.h),
 * guardrails before and during inference (gov_guard.h, gov_pii.h), the external guard hook, and
 * the tamper-evident audit log (gov_audit.h). One gwg_t per gateway; one gwg_req_t per request,
 * embedded in the proxy's exchange.
 *
 * Per request, in this order (gw_proxy.c):
 *   gwg_req_init
 *   gwg_authenticate   Authorization: Bearer -> tenant, or 401                  (every /v1/ route)
 *   gwg_guard_body     prompt texts of the parsed body: deny patterns, PII; masks in place, or 400
 *   gwg_admit          model allow-list (404), guardrail limits (400), audit log healthy (503 when
 *                      fail-closed), rate limits (429 + Retry-After + x-ratelimit-*)
 *   gwg_hook_start     external guard hook (async HTTP POST, timeout, fail-open/closed)
 *   ... proxied ...    gwg_output_stream for every streamed chunk, gwg_output_body for a buffered
 *                      answer: output tokens charged, response text kept for the audit, output
 *                      checks (block ends the stream with a policy error event)
 *   gwg_finish         one audit record (for every request, refused ones included), lease released
 *   gwg_req_deinit
 * Every refusal is answered by the caller with the status and body these functions fill.
 *
 * Reload (SIGHUP, gwg_reload): the keys and guardrails files are read again; a bad file keeps the
 * old configuration (err says why). Requests in flight keep the guardrails they started with
 * (refcounted), and their rate-limit leases stay valid (gov_limit.h).
 * Does not: parse HTTP, pick endpoints, own the event loop.
 * Thread-safety: event-loop thread only (the audit writer has its own thread inside gov_audit).
 */
#ifndef SY_GW_GOV_H
#define SY_GW_GOV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/ev.h"
#include "common/metrics.h"
#include "gov/gov_audit.h"
#include "gov/gov_guard.h"
#include "gov/gov_limit.h"
#include "gov/gov_tenant.h"

typedef struct gwg gwg_t;

/* What the audit record keeps of prompt and response text. */
typedef enum gwg_content {
    GWG_CONTENT_REDACTED = 0, /* PII (and guardrail mask/redact spans) replaced: the default */
    GWG_CONTENT_OFF,          /* not logged (the prompt's SHA-256 always is) */
    GWG_CONTENT_FULL,         /* verbatim */
} gwg_content_t;

typedef struct gwg_config {
    ev_loop_t *loop;             /* borrowed: the gateway's loop (the guard hook's HTTP client) */
    mx_registry_t *metrics;      /* borrowed, may be NULL; must outlive the gwg_t */
    const char *api_keys;        /* --api-keys FILE (copied); NULL = no authentication */
    const char *guardrails;      /* --guardrails FILE (copied); NULL = none */
    const char *audit_log;       /* --audit-log FILE (copied); NULL = no audit log */
    gaud_fsync_t audit_fsync;    /* --audit-fsync each|group|none, default group */
    unsigned audit_group_ms;     /* --audit-group-ms, default 10 */
    uint64_t audit_rotate_bytes; /* --audit-rotate-bytes, 0 = never */
    unsigned audit_keep;         /* --audit-keep rotated files, 0 = all */
    gaud_fail_t audit_fail;      /* --audit-on-error closed|open, default closed */
    gwg_content_t
        audit_prompt; /* --audit-prompt off|redacted|full: for tenants without their own */
    gwg_content_t audit_response; /* --audit-response off|redacted|full */
    size_t audit_text_max; /* bytes of prompt / response text kept per record, default 64 KiB */
} gwg_config_t;

/* Defaults as documented above (paths NULL). */
void gwg_config_default(gwg_config_t *cfg);

/* Loads what cfg names (files are refused with "FILE:LINE: reason" in err) and opens the audit log.
 * A guard hook URL must be http:// or https:// (TLS with the system trust store) and needs
 * cfg->loop; its host is resolved here (blocking).
 * Returns owned (gwg_destroy) or NULL with err filled. With nothing configured the result is a
 * valid gwg_t for which gwg_active() is false. now_ns: the monotonic clock (buckets start full). */
gwg_t *gwg_create(const gwg_config_t *cfg, int64_t now_ns, char *err, size_t errlen);
/* Flushes and closes the audit log, frees everything, removes the metrics collect callback.
 * Requests must be finished (and deinit'ed: their hook calls use the gwg_t's HTTP client). NULL ok.
 */
void gwg_destroy(gwg_t *g);
/* Re-reads the keys and guardrails files. ST_OK, or the first failure with err filled and the
 * old configuration of that file kept (the other file may still have been reloaded; err says which
 * failed). */
int gwg_reload(gwg_t *g, int64_t now_ns, char *err, size_t errlen);
/* True when authentication, guardrails or the audit log is configured. */
bool gwg_active(const gwg_t *g);
bool gwg_auth_enabled(const gwg_t *g);
/* The audit log (borrowed, NULL when none): for stats. */
gaud_t *gwg_audit(const gwg_t *g);

/* One request's governance state. Caller-owned storage; gwg_req_init before use, gwg_req_deinit
 * after gwg_finish. The fields are read by the caller only where documented. */
typedef struct gwg_req {
    char tenant[GTEN_NAME_MAX + 1]; /* "" until authenticated (or auth off) */
    gwg_content_t prompt_mode, response_mode;
    glim_lease_t lease;
    glim_result_t rl; /* the last admission result (headers for the 200 answer) */
    bool has_rl;
    void *_guard;                 /* refcounted guardrails the request started with */
    const ggd_policy_t *_policy;  /* (tenant, model) policy of _guard */
    ggd_out_scan_t *_scan;        /* output checks, when the policy has any */
    ggd_hit_t hits[GGD_MAX_HITS]; /* guardrail decisions, for the audit record */
    size_t n_hits;
    char block_rule[GGD_NAME_MAX]; /* what refused or ended the request, "" if nothing */
    char block_msg[GGD_MSG_MAX];   /* its message (policy error bodies), "" if nothing */
    unsigned char prompt_sha256[32];
    bool has_prompt_sha;
    sy_buf_t prompt_text;     /* audit copy per prompt_mode (JSON-ready UTF-8 text) */
    sy_buf_t response_text;   /* audit copy of the streamed/buffered output (capped) */
    sy_buf_t _sse;            /* partial SSE line carried between chunks */
    int64_t output_tokens;    /* charged so far */
    int64_t usage_completion; /* from the usage chunk, -1 unknown */
    bool prompt_truncated;    /* prompt_text was cut at audit_text_max */
    bool response_truncated;  /* response_text was cut at audit_text_max */
    bool _parse;              /* output must be parsed (checks, audit text or token limit) */
    bool _sse_dead;           /* a line exceeded GWG_SSE_LINE_MAX: parsing stopped */
    bool _finished;           /* gwg_finish ran */
    void *_hook;              /* in-flight guard hook call */
} gwg_req_t;

/* Longest SSE line carried between chunks; past it the stream is forwarded unparsed. */
#define GWG_SSE_LINE_MAX ((size_t)1 << 20)

void gwg_req_init(gwg_req_t *r);
/* Releases everything r holds (lease, guardrails ref, scanner, buffers, a hook call in flight is
 * cancelled without calling back). Idempotent. */
void gwg_req_deinit(gwg_req_t *r);

/* Authenticates the Authorization header value hdr[0..len) (hdr NULL = absent). 0 when
 * authentication is off or the key is right (r->tenant set); else 401 with body filled with
 * OpenAI's error JSON and extra_headers with "www-authenticate: Bearer\r\n" (503 when out of
 * memory). Call it for every request, also with authentication off: it sets r->prompt_mode and
 * r->response_mode (the tenant's audit_prompt / audit_response, else the config's defaults). */
int gwg_authenticate(gwg_t *g, gwg_req_t *r, const char *hdr, size_t len, sy_buf_t *body,
                     sy_buf_t *extra_headers);

/* Guards the prompt texts of a parsed generation body, root (borrowed, modified in place): for
 * /v1/completions the "prompt" string(s), for chat every message's "content" string and text
 * parts. Takes the (tenant, model) policy, computes the prompt SHA-256 over the original texts
 * (in order, joined by '\n') and the audit copy per r->prompt_mode. Token-id prompts cannot be
 * checked: with any prompt rule in the policy they are refused (fail closed; gov_guard.h does not
 * tell whether a policy has deny patterns, so today any loaded guardrails file refuses them, with
 * block_rule "token_prompt"); without guardrails their compact JSON is hashed. Returns 0 (allowed;
 * *modified says whether any text was masked, then the caller must re-serialize root), 400 with
 * body filled (a policy error: {"error":{"message":...,"type":"BadRequestError","param":null,
 * "code":"content_policy_violation"}}), or 503 (out of memory). */
int gwg_guard_body(gwg_t *g, gwg_req_t *r, json_t *root, bool chat, const char *model,
                   bool *modified, sy_buf_t *body);

/* Admission once the body is validated: the tenant's model allow-list (404), the guardrail limits
 * on prompt tokens and max_tokens (-1 = not given) (400), the audit log accepting records when
 * fail-closed (503), then the rate limits (429 with Retry-After and x-ratelimit-* headers). 0 when
 * admitted: extra_headers gets the x-ratelimit-* lines for the 200 answer (none without limits).
 * Else the status, with body and extra_headers filled. A tenant removed by a reload since
 * gwg_authenticate gets 401. On admission it also decides whether the output must be parsed
 * (output checks, audit response text, or a tokens_per_minute limit) and creates the output
 * scanner: gwg_output_* do nothing for a request gwg_admit did not admit. */
int gwg_admit(gwg_t *g, gwg_req_t *r, const char *model, int64_t prompt_tokens, int64_t max_tokens,
              int64_t now_ns, sy_buf_t *body, sy_buf_t *extra_headers);

/* The external guard hook, when the guardrails file configures one: POSTs {"tenant","model",
 * "prompt"} (the prompt as forwarded, after masking) to its URL with its timeout. 2xx allows; 403
 * (or any other 4xx) denies with the hook's {"message"} if any; a timeout, connection failure or
 * 5xx follows on_error (allow or deny). Returns ST_DECLINED when there is no hook (the caller goes
 * on at once), else ST_OK and done(udata, status, body) is called later from the loop exactly once
 * (status 0 = allowed, else 400/503 with body borrowed for the call), unless gwg_req_deinit cancels
 * first. prompt[0..len) borrowed for the call only. A 4xx denial answers 400 (policy error with the
 * hook's message, block_rule "guard_hook"); an error under on_error: deny answers 503 (code
 * "guard_unavailable"); under on_error: allow it is 0. The callback always comes from the loop,
 * never from inside gwg_hook_start (a failed start is reported through a 0 ms timer). Other
 * returns: ST_NOMEM, ST_STATE (a call is already in flight for r). */
typedef void (*gwg_hook_cb)(void *udata, int status, const sy_buf_t *body);
int gwg_hook_start(gwg_t *g, gwg_req_t *r, const char *model, const char *prompt, size_t len,
                   gwg_hook_cb done, void *udata);

/* A streamed chunk of the upstream SSE answer data[0..len) (any split): charges output tokens to
 * the tenant as they arrive, keeps the response text for the audit, runs the output checks.
 * GGD_ALLOW, or GGD_BLOCK: the caller must not forward this chunk, ends the stream with
 * gwg_policy_event() and cancels the upstream call. */
ggd_decision_t gwg_output_stream(gwg_t *g, gwg_req_t *r, const char *data, size_t len,
                                 int64_t now_ns);
/* A whole buffered (non-streamed) JSON answer: the same for its text and usage. GGD_BLOCK: the
 * caller answers 400 with gwg_policy_error_body instead. */
ggd_decision_t gwg_output_body(gwg_t *g, gwg_req_t *r, const char *data, size_t len,
                               int64_t now_ns);
/* Appends the SSE error event that ends a blocked stream ("data: {\"error\":...}\n\n" then
 * "data: [DONE]\n\n"), and the 400 body of a blocked buffered answer. */
void gwg_policy_event(const gwg_req_t *r, sy_buf_t *out);
void gwg_policy_error_body(const gwg_req_t *r, sy_buf_t *out);

/* What the data plane knows of a finished request, for its audit record (all borrowed). */
typedef struct gwg_summary {
    const char *request_id;       /* x-request-id or generated; NULL ok */
    const char *path;             /* "/v1/completions", ... */
    const char *model;            /* NULL when unknown */
    int status;                   /* HTTP status answered (499 client gone) */
    const char *error;            /* short reason for a failure, NULL ok */
    const char *endpoint;         /* decode / aggregated endpoint name, NULL when none */
    const char *prefill_endpoint; /* P/D: the prefill endpoint whose KV was used, else NULL */
    double score_total;           /* the chosen endpoint's total score, NAN when no decision */
    uint32_t candidates;
    uint32_t cached_blocks_chosen, cached_blocks_best;
    int64_t prompt_tokens, completion_tokens, cached_tokens; /* -1 unknown */
    double ttft_ms, e2e_ms;                                  /* < 0 unknown */
    int64_t start_unix_ns; /* wall clock when the request arrived */
} gwg_summary_t;

/* Ends the request: reconciles output tokens with the usage chunk, releases the rate-limit lease,
 * and appends one audit record (when an audit log is configured) with the time, request id,
 * tenant, model, endpoints, scores summary, prompt SHA-256, prompt/response text per the tenant's
 * modes, token counts, cached tokens, TTFT, E2E, status and guardrail decisions. Never fails the
 * request (an audit failure is counted; fail-closed refuses later requests through gwg_admit). */
/* The record's "completion_tokens" is s->completion_tokens, or when that is -1 the usage chunk's
 * value, or the events counted. "prompt_truncated"/"response_truncated": true are added when the
 * text was cut at audit_text_max. Idempotent (a second call does nothing). */
void gwg_finish(gwg_t *g, gwg_req_t *r, const gwg_summary_t *s);

#endif
