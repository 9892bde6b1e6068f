/*
 * sched.h - the continuous-batching scheduler (vLLM v1 style).
 *
 * Each step (sched_plan) fills a token budget (max_num_batched_tokens):
 *   1. decode first: every RUNNING sequence gets its next chunk (1 token when decoding, or the
 *      next prefill chunk when its prompt is partly computed), in running order; when blocks run
 *      out, the most recently admitted running sequence is preempted by recompute (blocks
 *      released, n_computed = 0, put back at the front of WAITING) until the allocation fits;
 *   2. then WAITING sequences are admitted in FIFO order while the running set has room
 *      (max_num_seqs), budget remains and blocks can be reserved: the prefix cache is consulted
 *      (kvb_seq_acquire_prefix) and only uncached tokens are scheduled, chunked to the remaining
 *      budget (chunked prefill), and to long_prefill_token_threshold when set.
 * A plan item samples a token when its chunk reaches the end of the sequence's known tokens.
 * The plan is built into storage allocated at sched_create: sched_plan never allocates (block
 * table growth aside, inside kv_block).
 * Does not: sample, check stop conditions, or time anything (the engine core does).
 * Thread-safety: none; one thread (the engine core) owns the scheduler.
 */
#ifndef SY_SCHED_H
#define SY_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv_block.h"
#include "engine/seq.h"

typedef struct sched sched_t;

typedef struct sched_config {
    uint32_t max_num_seqs;           /* running-set bound, default 256 */
    uint32_t max_num_batched_tokens; /* per-step token budget, default 8192 */
    uint32_t max_model_len;          /* context length */
    bool enable_chunked_prefill;     /* default true; false = a prompt must fit the budget whole */
    uint32_t long_prefill_token_threshold; /* 0 = off: cap per-sequence prefill chunk */
} sched_config_t;

typedef struct sched_plan_item {
    sched_seq_t *seq;
    uint32_t start;    /* first token position computed in this step (== seq->n_computed) */
    uint32_t n_tokens; /* tokens computed in this step */
    bool sample;       /* this chunk ends at the last known token: produce one new token */
} sched_plan_item_t;

typedef struct sched_plan {
    sched_plan_item_t *items; /* n_items entries, in running order */
    uint32_t n_items;
    uint32_t n_prefill_tokens;    /* tokens in items that are not single-token decodes */
    uint32_t n_decode_seqs;       /* items that are decodes (1 token, prompt already computed) */
    uint32_t n_new_cached_tokens; /* prefix-cache hit tokens found for newly admitted seqs */
    uint64_t kv_tokens_read;      /* sum over items of (start + n_tokens): context attended to */
    uint32_t n_preempted;         /* preemptions performed while planning this step */
} sched_plan_t;

/* Returns owned scheduler (free with sched_destroy) or NULL. kv is borrowed. */
sched_t *sched_create(const sched_config_t *cfg, kvb_mgr_t *kv);
/* Releases blocks of every queued sequence (they become FINISHED/ABORT) and frees. NULL ok. */
void sched_destroy(sched_t *s);

/* Appends a new sequence (state WAITING, n_computed 0, kv table initialised by the caller with
 * kvb_seq_init) to the waiting queue. The seq is borrowed until it is FINISHED. */
void sched_add(sched_t *s, sched_seq_t *seq);
/* Removes seq from its queue, releases its blocks at once; state FINISHED, finish ABORT.
 * No-op for a FINISHED seq. */
void sched_abort(sched_t *s, sched_seq_t *seq);
/* Finishes a RUNNING seq with reason f (by the engine core after a stop condition): removes it
 * from the running set and releases its blocks. */
void sched_finish(sched_t *s, sched_seq_t *seq, seq_finish_t f);

/* Plans the next step. Returns ST_OK with *out pointing at scheduler-owned storage valid until
 * the next sched_plan call, or ST_AGAIN when there is nothing to run. A waiting sequence whose
 * prompt can never fit the KV cache is finished with SEQ_FINISH_ERROR and reported through
 * sched_take_failed(). */
int sched_plan(sched_t *s, sched_plan_t **out);
/* After the executor ran the plan: advances n_computed of every item and commits full blocks
 * to the prefix cache (kvb_seq_commit). Must be called before sampled tokens are appended. */
void sched_step_done(sched_t *s, const sched_plan_t *plan);
/* Pops one sequence that sched_plan finished with an error (NULL when none). */
sched_seq_t *sched_take_failed(sched_t *s);

uint32_t sched_num_running(const sched_t *s);
uint32_t sched_num_waiting(const sched_t *s);
uint64_t sched_num_preemptions(const sched_t *s);

#endif
