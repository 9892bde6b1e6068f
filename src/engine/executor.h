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
static inline void exec_destroy(exec_t *e)
{
    if (e)
        e->vt->destroy(e);
}

#endif
