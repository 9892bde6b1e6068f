/*
 * test_sched.c - the continuous-batching scheduler against the real block manager: token budget,
 * chunked prefill, decode-first order, max_num_seqs, prefix-cache hits, preemption by recompute,
 * abort, and prompts that can never fit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/kv_block.h"
#include "engine/sched.h"

#define BS 4

typedef struct fixture {
    kvb_mgr_t *kv;
    sched_t *s;
    sched_seq_t seqs[8];
    int n_seqs;
} fixture_t;

static fixture_t *fx_new(uint32_t num_blocks, uint32_t max_seqs, uint32_t budget, bool chunked)
{
    fixture_t *f = sy_calloc(1, sizeof *f);
    assert_non_null(f);
    kvb_config_t kc = {.block_size = BS,
                       .num_blocks = num_blocks,
                       .enable_prefix_caching = true,
                       .hash_seed = "0"};
    f->kv = kvb_create(&kc, NULL);
    assert_non_null(f->kv);
    sched_config_t sc = {.max_num_seqs = max_seqs,
                         .max_num_batched_tokens = budget,
                         .max_model_len = 1024,
                         .enable_chunked_prefill = chunked};
    f->s = sched_create(&sc, f->kv);
    assert_non_null(f->s);
    return f;
}

static void fx_free(fixture_t *f)
{
    sched_destroy(f->s);
    for (int i = 0; i < f->n_seqs; i++) {
        kvb_seq_deinit(&f->seqs[i].kv);
        sy_free(f->seqs[i].tokens);
    }
    kvb_destroy(f->kv);
    sy_free(f);
}

/* Adds a sequence whose prompt is n tokens starting at value base (room for 64 outputs). */
static sched_seq_t *fx_add(fixture_t *f, uint32_t n, int32_t base)
{
    sched_seq_t *q = &f->seqs[f->n_seqs++];
    memset(q, 0, sizeof *q);
    q->cap_tokens = n + 64;
    q->tokens = sy_calloc(q->cap_tokens, sizeof(int32_t));
    assert_non_null(q->tokens);
    for (uint32_t i = 0; i < n; i++)
        q->tokens[i] = base + (int32_t)i;
    q->n_prompt = q->n_tokens = n;
    q->sp.max_tokens = 64;
    kvb_seq_init(&q->kv, NULL, 0);
    sched_add(f->s, q);
    return q;
}

/* One engine step: plan, "execute", step_done, append a token to every sampling item. */
static sched_plan_t *fx_step(fixture_t *f)
{
    sched_plan_t *p = NULL;
    int rc = sched_plan(f->s, &p);
    if (rc == ST_AGAIN)
        return NULL;
    assert_int_equal(rc, ST_OK);
    sched_step_done(f->s, p);
    for (uint32_t i = 0; i < p->n_items; i++) {
        sched_seq_t *q = p->items[i].seq;
        if (p->items[i].sample) {
            q->tokens[q->n_tokens] = 9000 + (int32_t)q->n_tokens;
            q->n_tokens++;
        }
    }
    return p;
}

static uint32_t plan_tokens(const sched_plan_t *p)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < p->n_items; i++)
        t += p->items[i].n_tokens;
    return t;
}

static void test_budget_and_chunked_prefill(void **state)
{
    fixture_t *f = fx_new(64, 8, 8, true);
    sched_seq_t *a = fx_add(f, 20, 100);
    sched_seq_t *b = fx_add(f, 5, 200);

    sched_plan_t *p = fx_step(f);
    assert_non_null(p);
    assert_int_equal(p->n_items, 1); /* a takes the whole budget */
    assert_ptr_equal(p->items[0].seq, a);
    assert_int_equal(p->items[0].start, 0);
    assert_int_equal(p->items[0].n_tokens, 8);
    assert_false(p->items[0].sample);
    assert_int_equal(a->n_computed, 8);

    p = fx_step(f);
    assert_int_equal(p->n_items, 1);
    assert_int_equal(p->items[0].start, 8);
    assert_int_equal(p->items[0].n_tokens, 8);
    assert_false(p->items[0].sample);

    p = fx_step(f); /* a: last 4 prompt tokens and samples; b: first 4 of 5 */
    assert_int_equal(p->n_items, 2);
    assert_ptr_equal(p->items[0].seq, a);
    assert_int_equal(p->items[0].n_tokens, 4);
    assert_true(p->items[0].sample);
    assert_ptr_equal(p->items[1].seq, b);
    assert_int_equal(p->items[1].n_tokens, 4);
    assert_false(p->items[1].sample);
    assert_int_equal(plan_tokens(p), 8);
    assert_int_equal(p->n_prefill_tokens, 8);
    assert_int_equal(a->n_tokens, 21);

    p = fx_step(f); /* a decodes first, then b finishes its prompt */
    assert_int_equal(p->n_items, 2);
    assert_ptr_equal(p->items[0].seq, a);
    assert_int_equal(p->items[0].n_tokens, 1);
    assert_true(p->items[0].sample);
    assert_int_equal(p->n_decode_seqs, 1);
    assert_int_equal(p->items[1].n_tokens, 1);
    assert_true(p->items[1].sample);
    assert_int_equal(p->kv_tokens_read, 21 + 5);
    fx_free(f);
}

static void test_decode_first_and_max_num_seqs(void **state)
{
    fixture_t *f = fx_new(64, 2, 64, true);
    sched_seq_t *a = fx_add(f, 3, 100);
    sched_seq_t *b = fx_add(f, 3, 200);
    sched_seq_t *c = fx_add(f, 3, 300);
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->n_items, 2); /* bounded by max_num_seqs */
    assert_int_equal(sched_num_running(f->s), 2);
    assert_int_equal(sched_num_waiting(f->s), 1);
    p = fx_step(f);
    assert_int_equal(p->n_items, 2);
    assert_ptr_equal(p->items[0].seq, a);
    assert_ptr_equal(p->items[1].seq, b);
    assert_int_equal(p->n_decode_seqs, 2);
    assert_int_equal(c->state, SEQ_WAITING);

    sched_finish(f->s, a, SEQ_FINISH_STOP);
    assert_int_equal(a->state, SEQ_FINISHED);
    p = fx_step(f); /* running b first, then c is admitted */
    assert_int_equal(p->n_items, 2);
    assert_ptr_equal(p->items[0].seq, b);
    assert_int_equal(p->items[0].n_tokens, 1);
    assert_ptr_equal(p->items[1].seq, c);
    assert_int_equal(p->items[1].n_tokens, 3);
    fx_free(f);
}

static void test_prefix_cache_hits(void **state)
{
    fixture_t *f = fx_new(64, 4, 64, true);
    sched_seq_t *a = fx_add(f, 13, 100);
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->items[0].n_tokens, 13);
    assert_int_equal(a->n_cached, 0);
    assert_true(a->admitted_once);
    sched_finish(f->s, a, SEQ_FINISH_STOP);

    sched_seq_t *b = fx_add(f, 13, 100); /* same prompt: 3 full blocks cached */
    p = fx_step(f);
    assert_int_equal(p->n_items, 1);
    assert_int_equal(p->items[0].start, 12);
    assert_int_equal(p->items[0].n_tokens, 1);
    assert_int_equal(p->n_new_cached_tokens, 12);
    assert_int_equal(b->n_cached, 12);

    sched_seq_t *c = fx_add(f, 12, 100); /* exactly 3 blocks: the last token is recomputed */
    p = fx_step(f);
    assert_int_equal(p->items[1].seq == c ? p->items[1].start : 99, 8);
    assert_int_equal(c->n_cached, 8);

    kvb_stats_t st;
    kvb_get_stats(f->kv, &st);
    assert_int_equal(st.hits, 12 + 8);
    assert_int_equal(st.queries, 13 + 13 + 12);
    fx_free(f);
}

static void test_preemption_and_recompute(void **state)
{
    /* 6 blocks of 4 tokens: two 11-token prompts fill 3 blocks each */
    fixture_t *f = fx_new(6, 4, 64, true);
    sched_seq_t *a = fx_add(f, 11, 100);
    sched_seq_t *b = fx_add(f, 11, 200);
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->n_items, 2);
    assert_int_equal(kvb_usage(f->kv), 1.0);
    p = fx_step(f); /* both decode token 12: still 3 blocks each */
    assert_int_equal(p->n_items, 2);
    assert_int_equal(p->n_preempted, 0);

    p = fx_step(f); /* a needs a 4th block: b (the tail) is preempted */
    assert_non_null(p);
    assert_int_equal(p->n_preempted, 1);
    assert_int_equal(p->n_items, 1);
    assert_ptr_equal(p->items[0].seq, a);
    assert_int_equal(b->state, SEQ_WAITING);
    assert_int_equal(b->n_computed, 0);
    assert_int_equal(b->num_preemptions, 1);
    assert_int_equal(sched_num_preemptions(f->s), 1);
    assert_int_equal(sched_num_waiting(f->s), 1);
    assert_int_equal(b->n_tokens, 13);

    sched_finish(f->s, a, SEQ_FINISH_LENGTH);
    p = fx_step(f); /* b recomputes prompt + generated tokens, minus cached full blocks */
    assert_int_equal(p->n_items, 1);
    assert_ptr_equal(p->items[0].seq, b);
    assert_int_equal(p->items[0].start % BS, 0);
    assert_int_equal(p->items[0].start + p->items[0].n_tokens, 13);
    assert_true(p->items[0].sample);
    assert_int_equal(b->n_cached, 0); /* recorded at first admission only */
    assert_int_equal(b->state, SEQ_RUNNING);
    assert_int_equal(b->n_tokens, 14);
    fx_free(f);
}

static void test_self_preemption(void **state)
{
    /* one sequence alone outgrows a 3-block cache: preempts itself, then fails for good */
    fixture_t *f = fx_new(3, 4, 64, true);
    sched_seq_t *a = fx_add(f, 12, 100);
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->n_items, 1);
    assert_int_equal(a->n_tokens, 13);
    sched_plan_t *q = NULL;
    assert_int_equal(sched_plan(f->s, &q), ST_AGAIN); /* preempted itself */
    assert_int_equal(q->n_preempted, 1);
    assert_int_equal(a->state, SEQ_WAITING);
    assert_int_equal(sched_plan(f->s, &q), ST_AGAIN); /* 13 tokens never fit 12 slots */
    assert_ptr_equal(sched_take_failed(f->s), a);
    assert_int_equal(a->finish, SEQ_FINISH_ERROR);
    assert_int_equal(kvb_usage(f->kv), 0.0);
    fx_free(f);
}

static void test_abort_frees_blocks(void **state)
{
    fixture_t *f = fx_new(16, 4, 64, true);
    sched_seq_t *a = fx_add(f, 20, 100);
    sched_seq_t *b = fx_add(f, 4, 200);
    fx_step(f);
    assert_true(kvb_usage(f->kv) > 0.0);
    sched_abort(f->s, a);
    assert_int_equal(a->state, SEQ_FINISHED);
    assert_int_equal(a->finish, SEQ_FINISH_ABORT);
    kvb_stats_t st;
    kvb_get_stats(f->kv, &st);
    assert_int_equal(st.used_blocks, 1); /* only b's block */
    sched_abort(f->s, b);
    sched_abort(f->s, b); /* no-op */
    assert_int_equal(kvb_usage(f->kv), 0.0);
    assert_int_equal(sched_num_running(f->s), 0);

    sched_seq_t *c = fx_add(f, 4, 300); /* abort while waiting */
    sched_abort(f->s, c);
    assert_int_equal(sched_num_waiting(f->s), 0);
    sched_plan_t *p = NULL;
    assert_int_equal(sched_plan(f->s, &p), ST_AGAIN);
    fx_free(f);
}

static void test_too_large_prompt_fails(void **state)
{
    fixture_t *f = fx_new(4, 4, 64, true); /* 16 token slots */
    sched_seq_t *big = fx_add(f, 17, 100);
    sched_seq_t *ok = fx_add(f, 5, 200);
    sched_plan_t *p = fx_step(f);
    assert_non_null(p);
    assert_int_equal(p->n_items, 1);
    assert_ptr_equal(p->items[0].seq, ok);
    assert_ptr_equal(sched_take_failed(f->s), big);
    assert_null(sched_take_failed(f->s));
    assert_int_equal(big->state, SEQ_FINISHED);
    assert_int_equal(big->finish, SEQ_FINISH_ERROR);
    fx_free(f);
}

static void test_no_chunked_prefill(void **state)
{
    fixture_t *f = fx_new(64, 4, 8, false);
    sched_seq_t *a = fx_add(f, 6, 100);
    sched_seq_t *b = fx_add(f, 6, 200); /* does not fit the remaining 2 tokens: waits */
    sched_seq_t *c = fx_add(f, 9, 300); /* never fits the budget: fails once at the head */
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->n_items, 1);
    assert_ptr_equal(p->items[0].seq, a);
    p = fx_step(f);
    assert_int_equal(p->n_items, 2);
    assert_ptr_equal(p->items[1].seq, b);
    assert_int_equal(p->items[1].n_tokens, 6);
    p = fx_step(f);
    assert_ptr_equal(sched_take_failed(f->s), c);
    fx_free(f);
}

static void test_long_prefill_threshold(void **state)
{
    fixture_t *f = fx_new(64, 4, 64, true);
    sched_destroy(f->s);
    sched_config_t sc = {.max_num_seqs = 4,
                         .max_num_batched_tokens = 64,
                         .max_model_len = 1024,
                         .enable_chunked_prefill = true,
                         .long_prefill_token_threshold = 5};
    f->s = sched_create(&sc, f->kv);
    fx_add(f, 12, 100);
    fx_add(f, 3, 200);
    sched_plan_t *p = fx_step(f);
    assert_int_equal(p->n_items, 2);
    assert_int_equal(p->items[0].n_tokens, 5);
    assert_int_equal(p->items[1].n_tokens, 3);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_and_chunked_prefill),
        cmocka_unit_test(test_decode_first_and_max_num_seqs),
        cmocka_unit_test(test_prefix_cache_hits),
        cmocka_unit_test(test_preemption_and_recompute),
        cmocka_unit_test(test_self_preemption),
        cmocka_unit_test(test_abort_frees_blocks),
        cmocka_unit_test(test_too_large_prompt_fails),
        cmocka_unit_test(test_no_chunked_prefill),
        cmocka_unit_test(test_long_prefill_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
