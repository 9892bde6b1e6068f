/*
 * sched.c - the continuous-batching scheduler, following vLLM v1's Scheduler.schedule():
 * decode-first over the running list, one token budget per step shared by decodes and prefill
 * chunks, FIFO admission from the waiting queue, prefix-cache lookup on admission, and
 * preemption by recompute when the KV cache runs out of blocks.
 *
 * Sequence state machine (seq.h); every transition happens in the function named:
 *
 *            sched_add                 admit (sched_plan)
 *   (new) ------------> WAITING ---------------------------> RUNNING
 *                        ^  |  \                               |  |
 *                        |  |   \ fail_seq (sched_plan:        |  | sched_finish
 *                        |  |    \ cannot ever fit)            |  | sched_abort
 *                        |  |     v                            |  v
 *                        |  | sched_abort               FINISHED (ERROR: failed list until
 *                        |  +------------------------>  FINISHED  sched_take_failed)
 *                        |                                     |
 *                        +---- preempt (sched_plan) -----------+ (RUNNING -> WAITING)
 *
 *   from     to        function                  effect
 *   -        WAITING   sched_add                 tail of waiting, n_computed = 0, no blocks
 *   WAITING  RUNNING   admit() in sched_plan     prefix blocks acquired, blocks reserved for
 *                                                the first chunk, tail of running
 *   WAITING  FINISHED  fail_seq() in sched_plan  (ERROR) prompt can never fit the KV cache or
 *                                                the budget; blocks released; failed list
 *   RUNNING  WAITING   preempt() in sched_plan   blocks released, n_computed = 0, front of
 *                                                waiting, num_preemptions++
 *   RUNNING  FINISHED  sched_finish              blocks released, removed from running
 *   WAITING  FINISHED  sched_abort               (ABORT) removed from waiting
 *   RUNNING  FINISHED  sched_abort               (ABORT) blocks released at once
 *
 * Invariants (sched_seq_assert_state): WAITING holds no blocks and n_computed == 0; RUNNING
 * holds blocks for at least n_computed tokens and n_computed <= n_tokens; FINISHED holds no
 * blocks. A sequence is in at most one list (waiting, running or failed), linked by _prev/_next.
 *
 * A re-admitted (preempted) sequence recomputes everything it has - prompt and generated tokens -
 * minus what the prefix cache still holds; n_cached (the prompt's hit count reported to the
 * client) is recorded only at the first admission.
 * As in vLLM, no waiting sequence is admitted in a step that preempted one.
 * Does not: allocate in sched_plan / sched_step_done (the plan has max_num_seqs items,
 * allocated at create; kv_block may grow a block table).
 * Thread-safety: none; the engine core thread owns the scheduler.
 */
#include "engine/sched.h"

#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

typedef struct seq_list {
    sched_seq_t *head, *tail;
    uint32_t n;
} seq_list_t;

struct sched {
    sched_config_t cfg;
    kvb_mgr_t *kv; /* borrowed */
    uint32_t num_blocks;
    seq_list_t waiting, running, failed;
    uint64_t num_preemptions;
    sched_plan_t plan;
    sched_plan_item_t *items; /* (cfg.max_num_seqs) */
};

/* ------------------------------------------------------------ lists */

static void list_unlink(seq_list_t *l, sched_seq_t *s)
{
    if (s->_prev)
        s->_prev->_next = s->_next;
    else
        l->head = s->_next;
    if (s->_next)
        s->_next->_prev = s->_prev;
    else
        l->tail = s->_prev;
    s->_prev = s->_next = NULL;
    l->n--;
}

static void list_push_tail(seq_list_t *l, sched_seq_t *s)
{
    s->_next = NULL;
    s->_prev = l->tail;
    if (l->tail)
        l->tail->_next = s;
    else
        l->head = s;
    l->tail = s;
    l->n++;
}

static void list_push_head(seq_list_t *l, sched_seq_t *s)
{
    s->_prev = NULL;
    s->_next = l->head;
    if (l->head)
        l->head->_prev = s;
    else
        l->tail = s;
    l->head = s;
    l->n++;
}

/* ------------------------------------------------------------ state checks */

/* Checks the per-state invariants of seq (cheap; always on). */
static void sched_seq_assert_state(const sched_t *s, const sched_seq_t *seq)
{
    uint32_t n_blocks;
    kvb_seq_blocks(&seq->kv, &n_blocks);
    switch (seq->state) {
    case SEQ_WAITING:
        SY_ASSERT(n_blocks == 0);
        SY_ASSERT(seq->n_computed == 0);
        break;
    case SEQ_RUNNING:
        SY_ASSERT(seq->n_computed <= seq->n_tokens);
        SY_ASSERT((uint64_t)n_blocks * kvb_block_size(s->kv) >= seq->n_computed);
        break;
    case SEQ_FINISHED:
        SY_ASSERT(n_blocks == 0);
        break;
    default:
        SY_ASSERT(!"bad sequence state");
    }
}

/* ------------------------------------------------------------ lifecycle */

sched_t *sched_create(const sched_config_t *cfg, kvb_mgr_t *kv)
{
    if (!cfg || !kv || cfg->max_num_seqs == 0 || cfg->max_num_batched_tokens == 0)
        return NULL;
    sched_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->kv = kv;
    kvb_stats_t st;
    kvb_get_stats(kv, &st);
    s->num_blocks = st.num_blocks;
    s->items = sy_calloc(cfg->max_num_seqs, sizeof *s->items);
    if (!s->items) {
        sy_free(s);
        return NULL;
    }
    s->plan.items = s->items;
    return s;
}

static void release_all(sched_t *s, seq_list_t *l)
{
    while (l->head) {
        sched_seq_t *seq = l->head;
        list_unlink(l, seq);
        kvb_seq_release(s->kv, &seq->kv);
        seq->state = SEQ_FINISHED;
        seq->finish = SEQ_FINISH_ABORT;
    }
}

void sched_destroy(sched_t *s)
{
    if (!s)
        return;
    release_all(s, &s->running);
    release_all(s, &s->waiting);
    while (s->failed.head) /* already FINISHED (ERROR), nothing held */
        list_unlink(&s->failed, s->failed.head);
    sy_free(s->items);
    sy_free(s);
}

void sched_add(sched_t *s, sched_seq_t *seq)
{
    seq->state = SEQ_WAITING;
    seq->n_computed = 0;
    seq->finish = SEQ_FINISH_NONE;
    sched_seq_assert_state(s, seq);
    list_push_tail(&s->waiting, seq);
}

void sched_abort(sched_t *s, sched_seq_t *seq)
{
    if (seq->state == SEQ_FINISHED)
        return;
    list_unlink(seq->state == SEQ_RUNNING ? &s->running : &s->waiting, seq);
    kvb_seq_release(s->kv, &seq->kv);
    seq->state = SEQ_FINISHED;
    seq->finish = SEQ_FINISH_ABORT;
    sched_seq_assert_state(s, seq);
}

void sched_finish(sched_t *s, sched_seq_t *seq, seq_finish_t f)
{
    SY_ASSERT(seq->state == SEQ_RUNNING);
    list_unlink(&s->running, seq);
    kvb_seq_release(s->kv, &seq->kv);
    seq->state = SEQ_FINISHED;
    seq->finish = f;
    sched_seq_assert_state(s, seq);
}

sched_seq_t *sched_take_failed(sched_t *s)
{
    sched_seq_t *seq = s->failed.head;
    if (seq)
        list_unlink(&s->failed, seq);
    return seq;
}

uint32_t sched_num_running(const sched_t *s)
{
    return s->running.n;
}

uint32_t sched_num_waiting(const sched_t *s)
{
    return s->waiting.n;
}

uint64_t sched_num_preemptions(const sched_t *s)
{
    return s->num_preemptions;
}

/* ------------------------------------------------------------ planning */

/* RUNNING -> WAITING (front): recompute later. */
static void preempt(sched_t *s, sched_seq_t *seq)
{
    list_unlink(&s->running, seq);
    kvb_seq_release(s->kv, &seq->kv);
    seq->n_computed = 0;
    seq->state = SEQ_WAITING;
    seq->num_preemptions++;
    s->num_preemptions++;
    s->plan.n_preempted++;
    sched_seq_assert_state(s, seq);
    list_push_head(&s->waiting, seq);
}

/* WAITING -> FINISHED (ERROR), queued for sched_take_failed. */
static void fail_seq(sched_t *s, sched_seq_t *seq)
{
    list_unlink(&s->waiting, seq);
    kvb_seq_release(s->kv, &seq->kv);
    seq->n_computed = 0;
    seq->state = SEQ_FINISHED;
    seq->finish = SEQ_FINISH_ERROR;
    sched_seq_assert_state(s, seq);
    list_push_tail(&s->failed, seq);
}

static void plan_add(sched_t *s, sched_seq_t *seq, uint32_t n_new)
{
    sched_plan_t *p = &s->plan;
    SY_ASSERT(p->n_items < s->cfg.max_num_seqs);
    sched_plan_item_t *it = &p->items[p->n_items++];
    it->seq = seq;
    it->start = seq->n_computed;
    it->n_tokens = n_new;
    it->sample = seq->n_computed + n_new == seq->n_tokens;
    if (n_new == 1 && it->start >= seq->n_prompt)
        p->n_decode_seqs++;
    else
        p->n_prefill_tokens += n_new;
    p->kv_tokens_read += (uint64_t)it->start + n_new;
}

/* Caps a chunk to long_prefill_token_threshold and the remaining budget. */
static uint32_t chunk_len(const sched_t *s, uint32_t n_new, uint32_t budget)
{
    uint32_t thr = s->cfg.long_prefill_token_threshold;
    if (thr && n_new > thr)
        n_new = thr;
    return n_new < budget ? n_new : budget;
}

/* Decode-first pass over the running list. Returns false when it had to stop (it preempted the
 * sequence it was scheduling). */
static bool schedule_running(sched_t *s, uint32_t *budget)
{
    sched_seq_t *seq = s->running.head;
    while (seq && *budget > 0) {
        sched_seq_assert_state(s, seq);
        uint32_t n_new = chunk_len(s, seq->n_tokens - seq->n_computed, *budget);
        if (n_new == 0) {
            seq = seq->_next;
            continue;
        }
        while (kvb_seq_reserve(s->kv, &seq->kv, seq->n_computed + n_new) != ST_OK) {
            /* Out of blocks: preempt the most recently admitted running sequence. Everything
             * before seq in the list is already scheduled, so the tail is seq or after it. */
            sched_seq_t *victim = s->running.tail;
            preempt(s, victim);
            if (victim == seq)
                return false;
        }
        plan_add(s, seq, n_new);
        *budget -= n_new;
        seq = seq->_next;
    }
    return true;
}

/* FIFO admission of waiting sequences while room, budget and blocks remain. */
static void schedule_waiting(sched_t *s, uint32_t *budget)
{
    sched_plan_t *p = &s->plan;
    while (s->waiting.head && *budget > 0 && s->running.n < s->cfg.max_num_seqs) {
        sched_seq_t *seq = s->waiting.head;
        sched_seq_assert_state(s, seq);
        /* a sequence that can never fit the whole cache, or (without chunked prefill) the
         * step budget, fails instead of blocking the queue forever */
        if (kvb_blocks_for(s->kv, seq->n_tokens) > s->num_blocks ||
            (!s->cfg.enable_chunked_prefill && seq->n_tokens > s->cfg.max_num_batched_tokens)) {
            sy_warn("sched.seq_too_long", "tokens=%u num_blocks=%u budget=%u", seq->n_tokens,
                    s->num_blocks, s->cfg.max_num_batched_tokens);
            fail_seq(s, seq);
            continue;
        }
        uint32_t n_cached = kvb_seq_acquire_prefix(s->kv, &seq->kv, seq->tokens, seq->n_tokens);
        uint32_t want = seq->n_tokens - n_cached;
        if (!s->cfg.enable_chunked_prefill && want > *budget) {
            kvb_seq_release(s->kv, &seq->kv);
            break; /* waits for a step with enough budget */
        }
        uint32_t n_new = chunk_len(s, want, *budget);
        if (kvb_seq_reserve(s->kv, &seq->kv, n_cached + n_new) != ST_OK) {
            kvb_seq_release(s->kv, &seq->kv);
            break; /* FIFO: nobody overtakes the head */
        }
        list_unlink(&s->waiting, seq);
        seq->state = SEQ_RUNNING;
        seq->n_computed = n_cached;
        if (!seq->admitted_once) {
            seq->n_cached = n_cached;
            seq->admitted_once = true;
        }
        list_push_tail(&s->running, seq);
        p->n_new_cached_tokens += n_cached;
        plan_add(s, seq, n_new);
        *budget -= n_new;
    }
}

int sched_plan(sched_t *s, sched_plan_t **out)
{
    sched_plan_t *p = &s->plan;
    p->n_items = 0;
    p->n_prefill_tokens = 0;
    p->n_decode_seqs = 0;
    p->n_new_cached_tokens = 0;
    p->kv_tokens_read = 0;
    p->n_preempted = 0;
    uint32_t budget = s->cfg.max_num_batched_tokens;

    schedule_running(s, &budget);
    if (p->n_preempted == 0)
        schedule_waiting(s, &budget);

    *out = p;
    return p->n_items ? ST_OK : ST_AGAIN;
}

void sched_step_done(sched_t *s, const sched_plan_t *plan)
{
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        sched_seq_t *seq = it->seq;
        SY_ASSERT(seq->state == SEQ_RUNNING && seq->n_computed == it->start);
        seq->n_computed += it->n_tokens;
        kvb_seq_commit(s->kv, &seq->kv, seq->tokens, seq->n_computed);
        sched_seq_assert_state(s, seq);
    }
}
