/*
 * gw_pd.h - the pure half of prefill/decode (P/D) disaggregation in the gateway: llm-d's
 * prefix-based-pd-decider, and the request and response rewrites of vLLM's NixlConnector protocol
 * (research/vllm-interfaces.md §5.2-5.3). gw_proxy.c drives the calls (the PREFILL state of its
 * exchange state machine); the configuration comes from the scheduler (gws_pd_config_t,
 * gw_sched.h).
 *
 * Protocol, as the gateway speaks it:
 *   1. prefill request = the client's body with kv_transfer_params {do_remote_decode: true,
 *      do_remote_prefill: false, remote_engine_id/remote_block_ids/remote_host/remote_port: null},
 *      "stream": false, "max_tokens": 1 ("max_completion_tokens": 1 only when the client sent
 *      it), stream_options, min_tokens and min_completion_tokens removed (gwpd_prefill_body);
 *   2. the prefill answer's top-level kv_transfer_params object is taken byte for byte
 *      (gwpd_response_params): opaque, so the same gateway drives vLLM pods;
 *   3. decode request = the client's body as it came plus "kv_transfer_params": <that object>
 *      (gwpd_decode_body); its answer is relayed to the client.
 * Does not: send anything, pick endpoints, or look at what the parameters mean.
 * Thread-safety: pure functions, reentrant.
 */
#ifndef SY_GW_PD_H
#define SY_GW_PD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The decider's answer, with llm-d's decision_type names (gwpd_decision_name). */
typedef enum gwpd_decision {
    GWPD_DECODE_ONLY = 0,    /* "decode-only": the decode endpoint prefills locally */
    GWPD_PREFILL_DECODE = 1, /* "prefill-decode": a prefill endpoint runs the prompt first */
} gwpd_decision_t;

/* How a P/D request was served in the end (switchyard_gateway_pd_requests_total{path}). */
typedef enum gwpd_path {
    GWPD_PATH_NONE = 0,       /* not decided yet */
    GWPD_PATH_DECODE_ONLY,    /* "decode_only": the decider kept the prompt on the decode side */
    GWPD_PATH_PREFILL_DECODE, /* "prefill_decode": KV from the first prefill endpoint tried */
    GWPD_PATH_PREFILL_RETRY,  /* "prefill_retry": KV from a prefill endpoint after a failed one */
    GWPD_PATH_FALLBACK_LOCAL, /* "fallback_local": P/D was chosen but the decode endpoint
                               * prefilled itself (no prefill endpoint, every prefill failed, or
                               * the decode call was retried elsewhere without the parameters) */
    GWPD_PATH_FAILED,         /* "failed": the client got an error */
    GWPD_PATH_COUNT
} gwpd_path_t;

#define GWPD_NEVER UINT64_MAX /* threshold: never disaggregate */

/* The decider (llm-d's prefix-based-pd-decider): uncached = prompt_tokens - cached_tokens (0 when
 * more is cached than the prompt has); PREFILL_DECODE iff uncached >= threshold. threshold 0 =
 * always, GWPD_NEVER (or anything above UINT32_MAX) = never. *uncached (may be NULL) gets the
 * uncached count. */
gwpd_decision_t gwpd_decide(uint64_t threshold, uint32_t prompt_tokens, uint64_t cached_tokens,
                            uint32_t *uncached);

/* llm-d's decision_type label: "decode-only" / "prefill-decode" (static). */
const char *gwpd_decision_name(gwpd_decision_t d);
/* The path label: "decode_only", "prefill_decode", "prefill_retry", "fallback_local", "failed"
 * (static; "none" for GWPD_PATH_NONE). */
const char *gwpd_path_name(gwpd_path_t p);

/* Parses the per-request override header's value (x-switchyard-pd-threshold: N): decimal digits
 * with optional surrounding blanks; values beyond UINT64_MAX saturate (= never). true with *out
 * set, false (out untouched) for anything else. */
bool gwpd_threshold_parse(const char *v, size_t len, uint64_t *out);

/* Appends the prefill request's body (protocol step 1) built from the client's body[0..len)
 * (borrowed; a JSON object). ST_OK, ST_INVAL (not a JSON object) or ST_NOMEM; out is left as it
 * was on failure. */
int gwpd_prefill_body(const char *body, size_t len, sy_buf_t *out);

/* Finds the top-level "kv_transfer_params" of a prefill answer resp[0..len) (borrowed) and
 * appends its text, byte for byte as the engine wrote it, to out. ST_OK; ST_PROTO when resp is
 * not a JSON object (garbage, truncated); ST_NOTFOUND when the member is absent, null, empty or
 * not an object (the engine kept no blocks); ST_NOMEM. out is left as it was on failure. */
int gwpd_response_params(const char *resp, size_t len, sy_buf_t *out);

/* Appends the decode request's body (protocol step 3): the client's body[0..len) (borrowed; a
 * JSON object without kv_transfer_params, as gw_proxy_prepare guarantees) with
 * "kv_transfer_params": params[0..plen) (borrowed, a JSON value, inserted verbatim) added as its
 * last member. ST_OK, ST_INVAL (body does not end in '}') or ST_NOMEM; out is left as it was on
 * failure. */
int gwpd_decode_body(const char *body, size_t len, const char *params, size_t plen, sy_buf_t *out);

/* What the x-switchyard-decision debug header says about P/D. */
typedef struct gwpd_note {
    gwpd_decision_t decision;
    gwpd_path_t path;
    uint64_t threshold; /* GWPD_NEVER renders as null */
    uint32_t prompt_tokens, cached_tokens, uncached_tokens;
    const char *prefill; /* endpoint name whose KV was used, or NULL */
    uint32_t prefill_attempts;
    double prefill_ms; /* of the successful prefill call, < 0 when none */
} gwpd_note_t;

/* Appends json[0..len) (a JSON object, e.g. from gws_decision_json) with a "pd" member added:
 * {"decision":"prefill-decode","path":"prefill_decode","threshold":16,"promptTokens":..,
 * "cachedTokens":..,"uncachedTokens":..,"prefill":"host:port"|null,"prefillAttempts":..,
 * "prefillMs":..|null}. A json that does not end in '}' is appended unchanged. ST_OK or
 * ST_NOMEM. */
int gwpd_note_json(const char *json, size_t len, const gwpd_note_t *n, sy_buf_t *out);

#endif
