/*
 * executor.h - the executor interface: runs one planned scheduler step and returns one sampled
 * token per plan item that asks for one. Implementations: the sim executor (sim_exec.h) and,
 * later, the CPU transformer. Nothing above this interface knows which one runs.
 * Thread-safety: called only from the engine core thread.
 */
#ifndef SY_EXECUTOR_H
#define SY_EXECUTOR_H

#include <stdint.h>

#include "engine/sched.h"

typedef struct exec exec_t;

typedef struct exec_vtable {
    const char *name;
    /* Runs plan (reads seq->tokens, the block tables, sampling params). Writes, in plan order, one
     * token id into sampled[] for each item with sample == true; *n_sampled is set to that count.
     * Must not allocate. Returns ST_OK or an error (the core then fails the step's sequences). */
    int (*execute)(exec_t *e, const sched_plan_t *plan, int32_t *sampled, uint32_t *n_sampled);
    /* Called when a sequence leaves the engine (finished or aborted) so per-seq state can go. */
    void (*seq_done)(exec_t *e, sched_seq_t *seq);
    void (*destroy)(exec_t *e);
} exec_vtable_t;

/* Base struct; implementations embed it first. */
struct exec {
    const exec_vtable_t *vt;
};

static inline int exec_execute(exec_t *e, const sched_plan_t *p, int32_t *sampled, uint32_t *n)
{
    return e->vt->execute(e, p, sampled, n);
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
