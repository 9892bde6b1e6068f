/*
 * test_sim_exec.c - the simulated executor: the step-time formula and profiles, deterministic
 * output for equal seeds / greedy prompts, EOS with and without ignore_eos, real-time sleeping
 * and no sleeping at speed <= 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/sim_exec.h"
#include "engine/tokenizer.h"

#define CAP 4096

typedef struct tseq {
    sched_seq_t s;
    int32_t toks[CAP];
} tseq_t;

static void tseq_init(tseq_t *q, const char *prompt, float temp, bool ignore_eos)
{
    memset(q, 0, sizeof *q);
    size_t n = strlen(prompt);
    for (size_t i = 0; i < n; i++)
        q->toks[i] = (unsigned char)prompt[i];
    q->s.tokens = q->toks;
    q->s.n_prompt = q->s.n_tokens = (uint32_t)n;
    q->s.cap_tokens = CAP;
    q->s.sp.temperature = temp;
    q->s.sp.ignore_eos = ignore_eos;
    q->s.sp.max_tokens = CAP - (uint32_t)n;
    q->s.state = SEQ_RUNNING;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Runs decode steps over seqs until each produced n tokens or EOS; returns steps run. */
static int run(exec_t *e, tseq_t **seqs, uint32_t n_seqs, uint32_t n, int32_t eos)
{
    sched_plan_item_t items[8];
    int32_t sampled[8];
    int steps = 0;
    for (;;) {
        sched_plan_t p = {.items = items};
        for (uint32_t i = 0; i < n_seqs; i++) {
            sched_seq_t *s = &seqs[i]->s;
            uint32_t out = s->n_tokens - s->n_prompt;
            if (out >= n || (out > 0 && s->tokens[s->n_tokens - 1] == eos))
                continue;
            items[p.n_items++] = (sched_plan_item_t){s, s->n_tokens - 1, 1, true};
            p.n_decode_seqs++;
            p.kv_tokens_read += s->n_tokens;
        }
        if (!p.n_items)
            return steps;
        uint32_t ns = 0;
        assert_int_equal(exec_execute(e, &p, sampled, NULL, &ns), ST_OK);
        assert_int_equal(ns, p.n_items);
        for (uint32_t i = 0; i < p.n_items; i++) {
            sched_seq_t *s = p.items[i].seq;
            s->tokens[s->n_tokens++] = sampled[i];
        }
        steps++;
    }
}

static void test_profiles_and_step_time(void **state)
{
    const sim_profile_t *a = sim_profile_find("a100-llama3-8b");
    const sim_profile_t *h = sim_profile_find("h100-llama3-8b");
    assert_non_null(a);
    assert_non_null(h);
    assert_non_null(sim_profile_find("l4-llama3-8b"));
    assert_null(sim_profile_find("tpu"));
    assert_ptr_equal(sim_profile_find(NULL), a);
    assert_non_null(strstr(sim_profile_names(), "a100-llama3-8b"));
    assert_non_null(a->description);

    sched_plan_t p = {.n_prefill_tokens = 1000, .n_decode_seqs = 32, .kv_tokens_read = 40000};
    double want =
        a->t_step + 1000 * a->t_prefill_token + 32 * a->t_decode_seq + 40000 * a->t_kv_token;
    double got = sim_exec_step_time(a, &p);
    assert_true(got > want - 1e-12 && got < want + 1e-12);
    /* sanity of the calibration: batch-1 decode 8..15 ms on A100, faster on H100 */
    sched_plan_t d = {.n_decode_seqs = 1, .kv_tokens_read = 1000};
    assert_true(sim_exec_step_time(a, &d) > 0.008 && sim_exec_step_time(a, &d) < 0.015);
    assert_true(sim_exec_step_time(h, &d) < sim_exec_step_time(a, &d));
    /* prefill 10-15k tokens/s on A100 */
    double tps = 1.0 / a->t_prefill_token;
    assert_true(tps >= 10000 && tps <= 15000);
}

static void test_deterministic_greedy(void **state)
{
    tok_t *tok = tok_byte_create();
    sim_config_t sc = {.profile = NULL, .speed = 0, .tok = tok, .mean_output_tokens = 64};
    exec_t *e1 = sim_exec_create(&sc);
    exec_t *e2 = sim_exec_create(&sc);
    assert_non_null(e1);
    static tseq_t a, b, c, d;
    tseq_init(&a, "Tell me a story.", 0.0f, true);
    tseq_init(&b, "Tell me a story.", 0.0f, true);
    tseq_init(&c, "Something else entirely", 0.0f, true);
    tseq_init(&d, "Tell me a story.", 0.8f, true);
    a.s.id_hash = 1;
    b.s.id_hash = 2; /* greedy: the request id does not matter */
    d.s.id_hash = 3;
    tseq_t *s1[] = {&a, &c};
    tseq_t *s2[] = {&b};
    tseq_t *s3[] = {&d};
    run(e1, s1, 2, 200, -1);
    run(e2, s2, 1, 200, -1);
    run(e2, s3, 1, 200, -1);
    assert_int_equal(a.s.n_tokens, b.s.n_tokens);
    assert_memory_equal(a.toks, b.toks, a.s.n_tokens * sizeof(int32_t));
    assert_memory_not_equal(a.toks + a.s.n_prompt, c.toks + c.s.n_prompt, 64 * sizeof(int32_t));
    assert_memory_not_equal(a.toks + a.s.n_prompt, d.toks + d.s.n_prompt, 64 * sizeof(int32_t));

    /* the text is words separated by single spaces, the first without a leading space */
    sy_buf_t text = SY_BUF_INIT;
    assert_int_equal(tok_decode(tok, a.toks + a.s.n_prompt, 200, true, &text), ST_OK);
    assert_true(text.len == 200);
    assert_true(text.data[0] >= 'a' && text.data[0] <= 'z');
    assert_null(strstr(text.data, "  "));
    sy_buf_deinit(&text);

    /* an explicit seed wins over the prompt hash, also at temperature > 0 */
    static tseq_t x, y;
    tseq_init(&x, "prompt one", 0.7f, true);
    tseq_init(&y, "another prompt", 0.0f, true);
    x.s.sp.has_seed = y.s.sp.has_seed = true;
    x.s.sp.seed = y.s.sp.seed = 42;
    tseq_t *s4[] = {&x, &y};
    run(e1, s4, 2, 100, -1);
    assert_memory_equal(x.toks + x.s.n_prompt, y.toks + y.s.n_prompt, 100 * sizeof(int32_t));

    exec_seq_done(e1, &a.s);
    assert_int_equal(a.s.exec_state[3], 0);
    exec_destroy(e1);
    exec_destroy(e2);
    tok_destroy(tok);
}

static void test_eos(void **state)
{
    tok_t *tok = tok_byte_create();
    sim_config_t sc = {.speed = 0, .tok = tok, .mean_output_tokens = 16};
    exec_t *e = sim_exec_create(&sc);
    static tseq_t q[6];
    tseq_t *all[6];
    uint32_t n_eos = 0;
    for (int i = 0; i < 6; i++) {
        tseq_init(&q[i], "hello", 1.0f, false);
        q[i].s.id_hash = 1000 + (uint64_t)i;
        q[i].s.sp.min_tokens = i == 5 ? 50 : 0;
        all[i] = &q[i];
    }
    run(e, all, 6, 2000, tok_eos(tok));
    for (int i = 0; i < 6; i++) {
        sched_seq_t *s = &q[i].s;
        uint32_t out = s->n_tokens - s->n_prompt;
        assert_true(out < 2000);
        assert_int_equal(s->tokens[s->n_tokens - 1], tok_eos(tok));
        for (uint32_t k = s->n_prompt; k + 1 < s->n_tokens; k++)
            assert_int_not_equal(s->tokens[k], tok_eos(tok));
        n_eos++;
    }
    assert_int_equal(n_eos, 6);
    assert_true(q[5].s.n_tokens - q[5].s.n_prompt >= 51); /* min_tokens 50, then EOS */

    /* ignore_eos: never EOS */
    static tseq_t g;
    tseq_init(&g, "hello", 1.0f, true);
    tseq_t *one[] = {&g};
    run(e, one, 1, 3000, tok_eos(tok));
    assert_int_equal(g.s.n_tokens - g.s.n_prompt, 3000);
    for (uint32_t k = g.s.n_prompt; k < g.s.n_tokens; k++)
        assert_int_not_equal(g.toks[k], tok_eos(tok));
    exec_destroy(e);
    tok_destroy(tok);
}

static void test_sleep(void **state)
{
    tok_t *tok = tok_byte_create();
    static tseq_t q;
    tseq_init(&q, "x", 0.0f, true);
    sched_plan_item_t it = {&q.s, 0, 1, true};
    /* a plan the profile prices at ~80 s: speed 0 must not sleep */
    sched_plan_t big = {.items = &it, .n_items = 1, .n_prefill_tokens = 1000000};
    sim_config_t sc = {.speed = 0, .tok = tok};
    exec_t *e = sim_exec_create(&sc);
    int32_t out[1];
    uint32_t n;
    double t0 = now_s();
    assert_int_equal(exec_execute(e, &big, out, NULL, &n), ST_OK);
    assert_true(now_s() - t0 < 0.5);
    /* no distribution: a sequence asking for logprobs gets an invalid entry, never numbers */
    q.s.sp.logprobs = true;
    exec_sample_lp_t lp = {.valid = true, .logprob = 1.0f};
    assert_int_equal(exec_execute(e, &big, out, &lp, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_false(lp.valid);
    q.s.sp.logprobs = false;
    exec_destroy(e);
    sc.speed = -1;
    e = sim_exec_create(&sc);
    t0 = now_s();
    assert_int_equal(exec_execute(e, &big, out, NULL, &n), ST_OK);
    assert_true(now_s() - t0 < 0.5);
    exec_destroy(e);

    /* speed 10: ten decode steps of ~10.3 ms each take ~10.3 ms in total */
    sc.speed = 10;
    e = sim_exec_create(&sc);
    sched_plan_t d = {.items = &it, .n_items = 1, .n_decode_seqs = 1, .kv_tokens_read = 1};
    double want = 10 * sim_exec_step_time(sim_profile_find(NULL), &d) / 10;
    t0 = now_s();
    for (int i = 0; i < 10; i++)
        assert_int_equal(exec_execute(e, &d, out, NULL, &n), ST_OK);
    double took = now_s() - t0;
    assert_true(took >= want * 0.95);
    assert_true(took < want + 0.5);
    /* after an idle gap the next step still takes its full time (no catching up) */
    struct timespec gap = {0, 20000000};
    nanosleep(&gap, NULL);
    t0 = now_s();
    assert_int_equal(exec_execute(e, &d, out, NULL, &n), ST_OK);
    took = now_s() - t0;
    assert_true(took >= want / 10 * 0.95);
    exec_destroy(e);
    tok_destroy(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiles_and_step_time),
        cmocka_unit_test(test_deterministic_greedy),
        cmocka_unit_test(test_eos),
        cmocka_unit_test(test_sleep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
