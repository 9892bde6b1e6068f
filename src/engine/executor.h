/*
 * executor.h - the executor interface: runs one planned scheduler step and returns one sampled
 * token per plan item that asks for one, plus, for sequences whose sampling params ask for
 * logprobs (seq_sampling_t.logprobs), the sampled token's logprob and the top-N list.
 * Implementations: the sim executor (sim_exec.h; no distribution, so no logprobs) and the CPU
 * transformer (cpu_exec.h). Nothing above this interface knows which one runs.
 * Thread-safety: called only from the engine core thread.
 */
#ifndef SY_EXECUTOR_H
#define SY_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "engine/sched.h"

typedef struct exec exec_t;

/* One (token, logprob) pair: log_softmax of the raw logits (vLLM's raw_logprobs mode). */
typedef struct exec_logprob {
    int32_t token;
    float logprob;
} exec_logprob_t;

/* Logprobs of one sampled item. */
typedef struct exec_sample_lp {
    bool valid;                /* the sequence asked for logprobs (seq->sp.logprobs) */
    float logprob;             /* of the sampled token (may be -inf) */
    uint32_t rank;             /* 1-based rank of the sampled token (vLLM's rank) */
    const exec_logprob_t *top; /* borrowed from the executor, valid until the next execute:
                                  n_top entries by logprob descending, ties by lower id */
    uint32_t n_top;            /* min(seq->sp.n_logprobs, vocab) */
} exec_sample_lp_t;

/* What a KV transfer moves for one block (kv_xfer.h). A block's KV lives, per layer, in two
 * segments (K and V) of seg_bytes each. An executor without KV storage (the sim) has
 * seg_bytes == 0 and only models the transfer: model_bytes_per_block is what a real engine of
 * its profile would move per block, used for the modelled transfer time. */
typedef enum exec_kv_dtype { EXEC_KV_NONE = 0, EXEC_KV_F32 = 1, EXEC_KV_F16 = 2 } exec_kv_dtype_t;
typedef struct exec_kv_layout {
    uint32_t n_layers;
    uint32_t block_size; /* token slots per block */
    uint32_t num_blocks; /* valid block ids are [0, num_blocks) */
    exec_kv_dtype_t dtype;
    uint64_t seg_bytes;             /* bytes of K (and of V) of one block in one layer; 0 = none */
    uint64_t model_bytes_per_block; /* real: 2 * n_layers * seg_bytes; sim: from its profile */
    double time_scale;              /* sim speed (modelled times are divided by it); 0 = real */
} exec_kv_layout_t;

typedef struct exec_vtable {
    const char *name;
    /* Runs plan (reads seq->tokens, the block tables, sampling params). Writes, in plan order, one
     * token id into sampled[] for each item with sample == true; *n_sampled is set to that count.
     * lps (may be NULL: no logprobs wanted by the caller) gets one entry per sampled item in the
     * same order; entries of sequences that did not ask for logprobs have valid = false. The
     * top lists live in buffers the executor allocated at create (borrowed until the next
     * execute). An executor that cannot compute logprobs leaves valid = false (never invented
     * numbers); the core then fails the requests that asked for them.
     * Must not allocate. Returns ST_OK or an error (the core then fails the step's sequences). */
    int (*execute)(exec_t *e, const sched_plan_t *plan, int32_t *sampled, exec_sample_lp_t *lps,
                   uint32_t *n_sampled);
    /* Called when a sequence leaves the engine (finished or aborted) so per-seq state can go. */
    void (*seq_done)(exec_t *e, sched_seq_t *seq);
    void (*destroy)(exec_t *e);
    /* KV storage for transfers (may be NULL: the executor cannot take part in P/D). kv_layout
     * fills *out. kv_segment returns the address of the K (which 0) or V (which 1) segment of
     * (layer, block), or NULL when out of range or without storage; it only computes an address,
     * so it may be called from any thread, and the caller may read or write the segment from
     * any thread as long as no step uses that block meanwhile (a leased block is never written;
     * a block being pulled into belongs to no scheduled sequence). */
    void (*kv_layout)(const exec_t *e, exec_kv_layout_t *out);
    void *(*kv_segment)(exec_t *e, uint32_t layer, uint32_t block, uint32_t which);
} exec_vtable_t;

/* Base struct; implementations embed it first. */
struct exec {
    const exec_vtable_t *vt;
};

static inline int exec_execute(exec_t *e, const sched_plan_t *p, int32_t *sampled,
                               exec_sample_lp_t *lps, uint32_t *n)
{
    return e->vt->execute(e, p, sampled, lps, n);
}
static inline void exec_seq_done(exec_t *e, sched_seq_t *seq)
{
    if (e->vt->seq_done)
        e->vt->seq_done(e, seq);
}
/* ST_OK with *out filled, or ST_STATE (the executor has no KV transfer support). */
static inline int exec_kv_layout(const exec_t *e, exec_kv_layout_t *out)
{
    if (!e->vt->kv_layout)
        return ST_STATE;
    e->vt->kv_layout(e, out);
    return ST_OK;
}
static inline void *exec_kv_segment(exec_t *e, uint32_t layer, uint32_t block, uint32_t which)
{
    return e->vt->kv_segment ? e->vt->kv_segment(e, layer, block, which) : NULL;
}
static inline void exec_destroy(exec_t *e)
{
    if (e)
        e->vt->destroy(e);
}

#endif
