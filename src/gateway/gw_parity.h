/*
 * gw_parity.h - active hash-parity verification between the gateway and each engine endpoint
 * that publishes KV events. The passive check in kv_sub.h only sees what clients happen to send;
 * this module asks: once an endpoint's models are known (start-up, SIGHUP reload, discovery, and
 * again after its KV-event publisher restarts), it sends one probe request through the endpoint's
 * upstream,
 *     POST /v1/completions {"model": <its first model>, "prompt": [N token ids], "max_tokens": 1}
 * with N = max(128, 2 x block_size) pseudo-random ids in [3, 250], drawn fresh per probe (so the
 * blocks are new to the engine, which then publishes BlockStored for them; token-id prompts need
 * no tokenizer, so this works against vLLM too, and the range is inside every vocabulary,
 * including the sim engine's 260-id byte tokenizer). The ids are armed in the KV-event subscriber
 * (kvsub_probe_arm), which records the hashes of the BlockStored events carrying them; those are
 * compared block by block with the gateway's own kvh chain over the same ids (its PYTHONHASHSEED
 * and --block-size, the very hashes the proxy computes for requests).
 *
 * Per-endpoint state machine (gwpar_tick performs every transition except the call's end):
 *
 *   PENDING --up (models known, scraped once, healthy), now >= next_ms-> PROBING   probe_start
 *   PROBING --HTTP 200 (call ended)------------------------------------> WAITING   tick
 *   PROBING --error / non-200 / request timeout, attempts left---------> PENDING   probe_failed
 *             (next_ms = now + backoff_ms x 2^(attempt-1), at most 30 s)
 *   PROBING --... no attempts left (max_attempts)----------------------> DONE(probe_failed)
 *   WAITING --matching events complete, or settle_ms after the first---> DONE(match|mismatch)
 *   WAITING --wait_ms without a matching event, no_events_retries left-> PENDING (1 s later)
 *   WAITING --... none left--------------------------------------------> DONE(no_events)
 *   DONE    --publisher restart seen (kvsub restarts), reprobe_min_ms--> PENDING
 *   any     --gwpar_remove_endpoint------------------------------------> (slot free)
 *
 * An endpoint is picked up by the tick as soon as its slot is in the table and subscribed in the
 * KV-event subscriber; draining endpoints are not probed. Outcomes are logged (match: info;
 * mismatch: error with both hashes, the gateway's PYTHONHASHSEED and block sizes, and what to
 * fix; no_events: warning that prefix-precise routing will not work there; probe_failed: error)
 * and exported as the gauge family switchyard_gateway_hash_parity{endpoint,result}: 1 on the
 * current result, 0 on the others; result is pending until an outcome (also between retries).
 * Does not: route, change the index, or re-probe on a schedule (only after a publisher restart).
 * Thread-safety: event-loop thread only (kvsub_* calls are thread-safe).
 */
#ifndef SY_GW_PARITY_H
#define SY_GW_PARITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/metrics.h"
#include "engine/kv_hash.h"
#include "gateway/gw_proxy.h"
#include "gateway/kv_sub.h"

#define GWPAR_TOKEN_MIN 3 /* probe token ids are drawn from [GWPAR_TOKEN_MIN, GWPAR_TOKEN_MAX] */
#define GWPAR_TOKEN_MAX 250
#define GWPAR_MIN_TOKENS 128

typedef struct gwpar gwpar_t;

typedef enum gwpar_result {
    GWPAR_PENDING = 0, /* not verified yet (waiting for models, probing, between retries) */
    GWPAR_MATCH,
    GWPAR_MISMATCH,
    GWPAR_NO_EVENTS,    /* the probe was answered, no BlockStored for it arrived */
    GWPAR_PROBE_FAILED, /* every probe request failed (connection, timeout, non-200) */
    GWPAR_N_RESULTS,
} gwpar_result_t;

typedef struct gwpar_config {
    kvh_digest_t none_hash;      /* the gateway's NONE_HASH, as the proxy uses it */
    const char *hash_seed;       /* the gateway's PYTHONHASHSEED for the logs; NULL = unset */
    uint32_t block_size;         /* the gateway's --block-size (required, > 0) */
    uint32_t wait_ms;            /* after the 200, wait this long for BlockStored; default 5000 */
    uint32_t settle_ms;          /* after the first matching event, for chained ones; 250 */
    uint32_t request_timeout_ms; /* a probe request taking longer failed; default 30000 */
    uint32_t max_attempts;       /* failed requests before probe_failed; default 5 */
    uint32_t backoff_ms;         /* first retry delay, doubled per attempt; default 1000 */
    uint32_t no_events_retries;  /* probes repeated before no_events (slow joiner); default 1 */
    uint32_t reprobe_min_ms;     /* least time between probes of a restarted publisher; 30000 */
    mx_registry_t *metrics;      /* where the gauge family goes; NULL = none */
} gwpar_config_t;

/* What one probe saw, for gwpar_compare. */
typedef struct gwpar_verdict {
    gwpar_result_t result; /* MATCH, MISMATCH or NO_EVENTS (nothing comparable) */
    const char *why;       /* static text; NULL on MATCH */
    size_t block;          /* MISMATCH: index of the first differing block */
    uint64_t gateway_hash; /* MISMATCH: the gateway's hash of that block (0 for block sizes) */
    uint64_t engine_hash;  /* MISMATCH: the engine's */
    size_t compared;       /* blocks compared */
} gwpar_verdict_t;

/* Fills defaults (block_size 16, no metrics, none_hash of no seed is NOT computed: set it). */
void gwpar_config_default(gwpar_config_t *c);

/* Creates the verifier. sub is borrowed and must outlive it; cfg is copied (hash_seed too).
 * Returns owned (free with gwpar_destroy) or NULL with *status (ST_INVAL, ST_NOMEM). */
gwpar_t *gwpar_create(kvsub_t *sub, const gwpar_config_t *cfg, int *status);
/* Cancels probe calls in flight (no callbacks) and disarms their probes. Accepts NULL. Call
 * before the upstreams and the HTTP client are destroyed. */
void gwpar_destroy(gwpar_t *p);

/* Drives every endpoint's state machine; call periodically (the gateway tick, 50 ms) with the
 * endpoint table (borrowed for the call; models and upstreams are read from it) and the loop's
 * monotonic now. NULL p is a no-op. */
void gwpar_tick(gwpar_t *p, const gw_table_t *t, uint64_t now_ms);
/* Forgets slot ep_id: cancels its probe call, disarms its probe, zeroes its gauges. Must be
 * called before the slot's upstream is destroyed. NULL p or an unknown slot is a no-op. */
void gwpar_remove_endpoint(gwpar_t *p, uint32_t ep_id);

/* Current result of slot ep_id (GWPAR_PENDING when unknown or not verified yet). */
gwpar_result_t gwpar_result(const gwpar_t *p, uint32_t ep_id);
/* "pending", "match", "mismatch", "no_events", "probe_failed" (static). */
const char *gwpar_result_name(gwpar_result_t r);

/* Pure helpers (exported for the tests). */

/* Probe length for a block size: max(GWPAR_MIN_TOKENS, 2 x block_size), at most
 * KVSUB_PROBE_MAX_TOKENS. */
size_t gwpar_probe_len(uint32_t block_size);
/* Fills out[0..n) with ids in [GWPAR_TOKEN_MIN, GWPAR_TOKEN_MAX] from a PRNG seeded by seed. */
void gwpar_probe_tokens(uint64_t seed, int32_t *out, size_t n);
/* Appends the probe body {"model":"<model, JSON-escaped>","prompt":[ids],"max_tokens":1} to b.
 * ST_OK or ST_NOMEM. */
int gwpar_probe_body(sy_buf_t *b, const char *model, const int32_t *tokens, size_t n);
/* Compares the gateway's chain exp[0..n_exp) (block_size gw_block_size) with what the subscriber
 * recorded: a block-size difference or any differing block among the first min(n_exp,
 * obs->n_hashes) is MISMATCH; all equal is MATCH; nothing seen or nothing to compare is
 * NO_EVENTS. */
void gwpar_compare(const uint64_t *exp, size_t n_exp, uint32_t gw_block_size,
                   const kvsub_probe_result_t *obs, gwpar_verdict_t *out);

#endif
