/*
 * seq.h - the engine sequence: one request as the scheduler, the executor and the engine core
 * see it. Plain data shared by those three modules (each field says who writes it).
 *
 * State machine (transitions performed by sched.c unless noted):
 *
 *   WAITING --sched_plan (admitted, blocks reserved)--> RUNNING
 *   RUNNING --sched_plan (preempted: out of blocks)--> WAITING (front of queue, n_computed = 0)
 *   RUNNING --sched_finish (stop / length, by the engine core)--> FINISHED
 *   WAITING|RUNNING --sched_abort--> FINISHED (finish = ABORT)
 *
 * Invariants: WAITING holds no blocks (kv table empty); RUNNING holds blocks for at least
 * n_computed tokens; FINISHED holds no blocks and is in no queue.
 * Thread-safety: owned by the engine core thread once submitted.
 */
#ifndef SY_SEQ_H
#define SY_SEQ_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv_block.h"

typedef enum seq_state {
    SEQ_WAITING = 0,
    SEQ_RUNNING = 1,
    SEQ_FINISHED = 2,
} seq_state_t;

typedef enum seq_finish {
    SEQ_FINISH_NONE = 0,
    SEQ_FINISH_STOP,   /* EOS, stop token or stop string */
    SEQ_FINISH_LENGTH, /* max_tokens or max_model_len */
    SEQ_FINISH_ABORT,  /* client went away / shutdown */
    SEQ_FINISH_ERROR,
} seq_finish_t;

/* "stop", "length", "abort", "error" (vLLM's finish_reason strings); NULL for NONE. */
const char *seq_finish_str(seq_finish_t f);

typedef struct seq_sampling {
    float temperature; /* 0 = greedy */
    float top_p;
    int32_t top_k; /* 0 or -1 = off */
    float min_p;
    bool has_seed;
    uint64_t seed;
    uint32_t max_tokens; /* >= 1, already clamped to max_model_len - prompt */
    uint32_t min_tokens;
    bool ignore_eos;
    /* Penalties as vLLM applies them (sampler.h). A zeroed struct means "off" for all three:
     * repetition_penalty <= 0 is read as 1. The sim executor ignores them. */
    float presence_penalty;   /* [-2, 2]; 0 = off */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    float repetition_penalty; /* > 0; 1 (or 0 in a zeroed struct) = off */
    /* Logprobs of the sampled tokens (raw log_softmax, vLLM's default logprobs_mode). When
     * logprobs is false (zeroed struct) none are computed. n_logprobs = number of top entries
     * per token besides the sampled one (0 = the sampled token only), already clamped by the API
     * to the executor's limit (--max-logprobs) and to the vocab. */
    bool logprobs;
    uint32_t n_logprobs;
} seq_sampling_t;

typedef struct sched_seq {
    /* --- set by the creator before sched_add; immutable afterwards --- */
    uint64_t id_hash;  /* hash of the request id (for deterministic per-request randomness) */
    uint32_t n_prompt; /* prompt length; tokens[0..n_prompt) is the prompt */
    seq_sampling_t sp;
    uint64_t arrival_ns; /* monotonic */

    /* --- token storage: prompt then generated tokens; allocated by the creator with
     *     cap_tokens = n_prompt + sp.max_tokens; appended by the engine core --- */
    int32_t *tokens;
    uint32_t n_tokens;
    uint32_t cap_tokens;

    /* --- scheduler-owned --- */
    seq_state_t state;
    uint32_t n_computed; /* tokens whose KV has been written */
    uint32_t n_cached;   /* prompt tokens served from the prefix cache at first admission */
    bool admitted_once;  /* n_cached recorded */
    uint32_t num_preemptions;
    kvb_seq_t kv;
    struct sched_seq *_prev, *_next; /* queue links */

    /* --- engine-core-owned --- */
    seq_finish_t finish;
    uint64_t first_token_ns, last_token_ns, scheduled_ns;

    /* --- executor-owned scratch (e.g. the sim executor's RNG state); 0 at creation --- */
    uint64_t exec_state[4];

    void *owner; /* back pointer to the engine request (borrowed) */
} sched_seq_t;

#endif
