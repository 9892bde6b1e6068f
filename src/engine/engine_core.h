/*
 * engine_core.h - the engine loop thread: owns the scheduler, block manager, executor and the
 * output processor (incremental detokenization, stop conditions, metrics), and exchanges
 * requests and outputs with the HTTP front (which runs the event loop on another thread).
 *
 *   HTTP thread                               core thread
 *   ecore_req_create + ecore_submit  ──queue──▶ sched_add
 *   ecore_abort                      ──queue──▶ sched_abort (blocks freed at once)
 *                                               loop: sched_plan → exec_execute → sched_step_done
 *                                                     → append sampled tokens, detokenize, check
 *                                                       EOS / stop ids / stop strings / max_tokens
 *                                                     → queue a delta per request
 *   on_output(req, delta)  ◀──ev_async── deltas
 *
 * Request ownership: an ecore_req_t is refcounted. ecore_req_create returns it with one reference
 * for the caller (the HTTP side); ecore_submit takes a second one for the core. The core drops its
 * reference after it delivered the final delta (finished) or after it processed an abort.
 * The HTTP side drops its own with ecore_req_release when it no longer needs the request.
 * After ecore_abort, on_output is not called again for that request.
 * Does not: parse HTTP or JSON (api.c does).
 * Thread-safety: functions marked [loop] run on the event-loop thread that created the core;
 * the core thread is internal.
 */
#ifndef SY_ENGINE_CORE_H
#define SY_ENGINE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"
#include "common/metrics.h"
#include "engine/executor.h"
#include "engine/kv_block.h"
#include "engine/kv_events.h"
#include "engine/kv_xfer.h"
#include "engine/sched.h"
#include "engine/seq.h"
#include "engine/tokenizer.h"

typedef struct ecore ecore_t;
typedef struct ecore_req ecore_req_t;

/* A producer's KV lease, reported as vLLM's kv_transfer_params (borrowed, valid during the
 * on_output call that delivers the final delta). */
typedef struct ecore_kv_lease {
    const char *engine_id;     /* remote_engine_id */
    const char *lease_id;      /* remote_request_id */
    const char *host;          /* remote_host */
    int port;                  /* remote_port */
    const uint32_t *block_ids; /* remote_block_ids */
    uint32_t n_blocks;
} ecore_kv_lease_t;

/* Where a consumer pulls a request's prompt KV from (vLLM's do_remote_prefill params). */
typedef struct ecore_kv_remote {
    const char *host;     /* remote_host */
    int port;             /* remote_port */
    const char *lease_id; /* remote_request_id */
    const uint32_t *block_ids;
    uint32_t n_blocks;
} ecore_kv_remote_t;

/* What one wakeup delivers for one request: everything produced since the previous delta. */
typedef struct ecore_delta {
    const char *text; /* new output text (whole UTF-8 characters only), text_len bytes */
    size_t text_len;
    const int32_t *token_ids; /* new output token ids */
    uint32_t n_tokens;
    uint32_t token_index; /* index of token_ids[0] among the request's output tokens */
    /* Logprobs of token_ids[i], or all NULL when the request did not ask for them (sp.logprobs):
     * logprobs[i] of the sampled token, n_top[i] entries of top_logprobs[i * top_stride ..]
     * (by logprob descending). One entry per output token, EOS / stop tokens included. */
    const float *logprobs;
    const exec_logprob_t *top_logprobs;
    const uint32_t *n_top;
    uint32_t top_stride;
    bool first; /* this delta carries the first output token */
    bool finished;
    seq_finish_t finish;              /* when finished */
    const char *stop_str;             /* matched stop string (borrowed), or NULL */
    int32_t stop_token;               /* matched stop token id (not EOS), or -1 */
    uint32_t prompt_tokens;           /* always set */
    uint32_t completion_tokens;       /* output tokens so far */
    uint32_t cached_tokens;           /* prefix-cache hit tokens (first admission) */
    const ecore_kv_lease_t *kv_lease; /* final delta of a kv_remote_decode request whose blocks
                                         are leased, else NULL */
} ecore_delta_t;

/* [loop] Called for each request with new output. delta and its pointers are valid only during
 * the call. udata is the request's udata (ecore_req_create). */
typedef void (*ecore_on_output_cb)(ecore_req_t *req, const ecore_delta_t *delta, void *udata);

typedef struct ecore_config {
    sched_config_t sched;
    kvb_config_t kv;
    const char *model_name; /* label for metrics (borrowed for the core's lifetime) */
    mx_registry_t *metrics; /* borrowed; the core registers vLLM's metric families in it */
    const tok_t *tok;       /* borrowed */
    exec_t *exec;           /* takes ownership */
    kve_pub_t *events;      /* borrowed, may be NULL */
    kvx_t *kvx;             /* KV-transfer connector, may be NULL; takes ownership (also when
                               create fails) */
    ev_loop_t *loop;        /* borrowed; outputs are delivered on this loop's thread */
    ecore_on_output_cb on_output;
    /* Extra labels for vllm:cache_config_info (all CacheConfig-like fields are added by the core:
     * block_size, num_gpu_blocks, enable_prefix_caching, prefix_caching_hash_algo, ...). */
} ecore_config_t;

/* [loop] Creates the core and starts its thread. Returns owned core or NULL with *status. */
ecore_t *ecore_create(const ecore_config_t *cfg, int *status);
/* [loop] Aborts everything still queued or running, joins the thread, frees. NULL ok.
 * on_output is not called during destroy. */
void ecore_destroy(ecore_t *c);

typedef struct ecore_req_params {
    const int32_t *prompt; /* copied */
    uint32_t n_prompt;
    seq_sampling_t sp;
    const char *const *stop; /* stop strings, copied; excluded from the output text */
    size_t n_stop;
    const int32_t *stop_token_ids; /* copied */
    size_t n_stop_token_ids;
    bool include_stop_str_in_output;
    bool skip_special_tokens; /* default true */
    const char *cache_salt;   /* copied; NULL = none */
    const char *request_id;   /* copied; used for id_hash */
    uint64_t arrival_ns;      /* monotonic receive time (for TTFT/E2E metrics) */
    /* P/D (kv_xfer.h), ignored without a connector of the matching role: */
    bool kv_remote_decode; /* producer: keep the prompt's KV under a lease when the request
                              finishes (stop or length) and report it in the final delta */
    const ecore_kv_remote_t *kv_remote; /* consumer: pull the prompt's KV first (copied); on
                                           any failure the prompt is recomputed here */
} ecore_req_params_t;

/* [loop] Builds a request (all storage allocated here, including room for max_tokens outputs).
 * Returns it with one reference owned by the caller, or NULL (ST_NOMEM). udata borrowed. */
ecore_req_t *ecore_req_create(ecore_t *c, const ecore_req_params_t *p, void *udata);
/* [loop] Hands the request to the core (takes the core's reference). ST_OK, or ST_CLOSED when
 * the core is shutting down (no reference taken). */
int ecore_submit(ecore_t *c, ecore_req_t *r);
/* [loop] The client went away: the core aborts the sequence (blocks freed at once). */
void ecore_abort(ecore_t *c, ecore_req_t *r);
/* [any thread] Drops one reference; the last one frees the request. NULL ok. */
void ecore_req_release(ecore_req_t *r);
void *ecore_req_udata(const ecore_req_t *r);

/* [loop] Snapshot for /health, draining and logs. */
typedef struct ecore_status {
    uint32_t running, waiting;
    double kv_usage;
    uint64_t steps;
    kvb_stats_t kv;
} ecore_status_t;
void ecore_get_status(ecore_t *c, ecore_status_t *out);
/* [loop] Aborts every request (used when the drain deadline passes). */
void ecore_abort_all(ecore_t *c);

#endif
