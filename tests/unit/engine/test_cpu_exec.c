/*
 * test_cpu_exec.c - the CPU llama executor driven through real plans: the real block manager and
 * scheduler build every step (chunked prefill, decode, batching, prefix-cache hits), the test
 * plays the engine core (append sampled tokens, finish at a length). Checks against the shared
 * golden files: stories260K greedy tokens and logits (1e-4 max abs), llama-2-tiny-random (F16)
 * top-10 logits; batch invariance (alone, batched with 7 others, chunked at 3, from the prefix
 * cache, 2 threads, AVX vs scalar kernels, F16 KV); 2 threads vs 1 on long prefills
 * (bit-identical); F16/BF16/Q8_0/Q4_0 weights on synthetic models (gguf-synth) against their F32
 * twin; tied embeddings; no allocation in execute; refusal of other architectures, missing tensors,
 * bad shapes and out-of-range tokens.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/cpu_exec.h"
#include "engine/gguf.h"
#include "engine/gguf_tools.h"
#include "engine/kern.h"
#include "engine/kv_block.h"
#include "engine/sched.h"

#include "../models_testutil.h"

#define MAX_SEQS 16
#define LP_MAX_OUT 256

/* ------------------------------------------------------------ fixture: a tiny engine core */

typedef struct run_cfg {
    uint32_t block_size;
    uint32_t num_blocks;
    uint32_t budget;           /* max_num_batched_tokens */
    uint32_t long_prefill_cap; /* long_prefill_token_threshold, 0 = off */
    int threads;
    bool kv_f16;
} run_cfg_t;

typedef struct core {
    gguf_t *g;
    exec_t *e;
    kvb_mgr_t *kv;
    sched_t *s;
    sched_seq_t seqs[MAX_SEQS];
    uint32_t n_gen[MAX_SEQS];      /* tokens to generate */
    float *first_logits[MAX_SEQS]; /* logits of the first sampled token (vocab) */
    int n_seqs;
    int32_t vocab;
    /* what the plans looked like (to show the batching really happened) */
    uint32_t max_items;       /* most items in one step */
    uint32_t mixed_steps;     /* steps with both a prefill chunk and a decode */
    uint32_t max_prefill_run; /* longest prefill chunk (n_tokens of a non-decode item) */
    /* logprobs of each sequence's outputs (when it asked for them), checked at every step */
    float lp[MAX_SEQS][LP_MAX_OUT];
    uint32_t lp_checked; /* sampled items whose logprobs were checked against the logits */
} core_t;

static bool open_model(const char *rel, gguf_t **g)
{
    char path[1024];
    models_testutil_path(path, sizeof path, rel);
    char err[256];
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    fclose(f);
    int rc = gguf_open(path, g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("gguf_open %s: %s", path, err);
    return true;
}

static void core_init(core_t *c, gguf_t *g, const run_cfg_t *rc)
{
    memset(c, 0, sizeof *c);
    c->g = g;
    kvb_config_t kc = {.block_size = rc->block_size,
                       .num_blocks = rc->num_blocks,
                       .enable_prefix_caching = true,
                       .hash_seed = "0"};
    c->kv = kvb_create(&kc, NULL);
    assert_non_null(c->kv);
    sched_config_t sc = {.max_num_seqs = MAX_SEQS,
                         .max_num_batched_tokens = rc->budget,
                         .max_model_len = 2048,
                         .enable_chunked_prefill = true,
                         .long_prefill_token_threshold = rc->long_prefill_cap};
    c->s = sched_create(&sc, c->kv);
    assert_non_null(c->s);
    cpux_config_t xc = {.gguf = g,
                        .num_blocks = rc->num_blocks,
                        .block_size = rc->block_size,
                        .max_batch_tokens = rc->budget,
                        .max_seqs = MAX_SEQS,
                        .threads = rc->threads,
                        .kv_f16 = rc->kv_f16,
                        .max_logprobs = 1u << 20}; /* clamped to the vocab */
    char err[256];
    c->e = cpux_create(&xc, err, sizeof err);
    if (!c->e)
        fail_msg("cpux_create: %s", err);
    c->vocab = cpux_info(c->e)->vocab;
}

/* Clears the sequences (the block manager keeps its prefix cache). */
static void core_clear_seqs(core_t *c)
{
    for (int i = 0; i < c->n_seqs; i++) {
        kvb_seq_deinit(&c->seqs[i].kv);
        sy_free(c->seqs[i].tokens);
        sy_free(c->first_logits[i]);
        c->first_logits[i] = NULL;
    }
    c->n_seqs = 0;
}

static void core_deinit(core_t *c)
{
    sched_destroy(c->s);
    core_clear_seqs(c);
    exec_destroy(c->e);
    kvb_destroy(c->kv);
}

static sched_seq_t *core_add(core_t *c, const int32_t *prompt, uint32_t n, uint32_t n_gen)
{
    assert_true(c->n_seqs < MAX_SEQS);
    int i = c->n_seqs++;
    sched_seq_t *q = &c->seqs[i];
    memset(q, 0, sizeof *q);
    q->cap_tokens = n + n_gen;
    q->tokens = sy_calloc(q->cap_tokens, sizeof(int32_t));
    assert_non_null(q->tokens);
    memcpy(q->tokens, prompt, n * sizeof(int32_t));
    q->n_prompt = q->n_tokens = n;
    q->sp.max_tokens = n_gen;
    q->id_hash = (uint64_t)i;
    kvb_seq_init(&q->kv, NULL, 0);
    c->n_gen[i] = n_gen;
    sched_add(c->s, q);
    return q;
}

static int seq_index(core_t *c, const sched_seq_t *q)
{
    return (int)(q - c->seqs);
}

/* Checks the logprobs of sampled item k (token tok of q) against the raw logits of the step:
 * logprob = log_softmax(logits)[tok] (while the logits are untouched: greedy, no penalties),
 * the top list has min(n, vocab) entries sorted by logprob descending, its first
 * entry is the maximum, a greedy token is that maximum, and a whole-vocab list sums to 1. */
static void check_lp(core_t *c, uint32_t k, const sched_seq_t *q, int32_t tok,
                     const exec_sample_lp_t *lp)
{
    assert_true(lp->valid);
    uint32_t want_top =
        q->sp.n_logprobs < (uint32_t)c->vocab ? q->sp.n_logprobs : (uint32_t)c->vocab;
    assert_int_equal(lp->n_top, want_top);
    for (uint32_t i = 1; i < lp->n_top; i++)
        assert_true(lp->top[i - 1].logprob >= lp->top[i].logprob);
    bool raw = q->sp.temperature == 0.0f && q->sp.presence_penalty == 0.0f &&
               q->sp.frequency_penalty == 0.0f &&
               (q->sp.repetition_penalty == 0.0f || q->sp.repetition_penalty == 1.0f);
    if (raw) {
        int32_t v;
        const float *lg = cpux_logits(c->e, k, &v);
        assert_non_null(lg);
        double m = -INFINITY, z = 0;
        int32_t arg = 0;
        for (int32_t i = 0; i < v; i++)
            if (lg[i] > m) {
                m = lg[i];
                arg = i;
            }
        for (int32_t i = 0; i < v; i++)
            z += exp((double)lg[i] - m);
        double want = (double)lg[tok] - m - log(z);
        if (fabs(want - lp->logprob) > 1e-4)
            fail_msg("logprob %g, log_softmax(logits) %g", lp->logprob, want);
        assert_int_equal(tok, arg); /* greedy = argmax */
        for (uint32_t i = 0; i < lp->n_top; i++) {
            double w = (double)lg[lp->top[i].token] - m - log(z);
            assert_true(fabs(w - lp->top[i].logprob) <= 1e-4);
        }
        c->lp_checked++;
    }
    if (lp->n_top) {
        assert_true(lp->top[0].logprob >= lp->logprob);
        if (q->sp.temperature == 0.0f && raw) {
            assert_int_equal(lp->top[0].token, tok);
            assert_true(lp->top[0].logprob == lp->logprob);
        }
    }
    if (lp->n_top == (uint32_t)c->vocab) {
        double sum = 0;
        for (uint32_t i = 0; i < lp->n_top; i++)
            sum += exp((double)lp->top[i].logprob);
        if (fabs(sum - 1.0) > 1e-4)
            fail_msg("exp(top_logprobs) over the whole vocab sums to %.8f", sum);
    }
}

/* Runs steps until no sequence is left. Returns the number of steps. */
static int core_run(core_t *c)
{
    int32_t sampled[MAX_SEQS];
    exec_sample_lp_t lps[MAX_SEQS];
    int steps = 0;
    for (;;) {
        sched_plan_t *p = NULL;
        int rc = sched_plan(c->s, &p);
        if (rc == ST_AGAIN)
            break;
        assert_int_equal(rc, ST_OK);
        bool has_prefill = false, has_decode = false;
        for (uint32_t i = 0; i < p->n_items; i++) {
            const sched_plan_item_t *it = &p->items[i];
            bool decode = it->n_tokens == 1 && it->start >= it->seq->n_prompt;
            has_decode |= decode;
            has_prefill |= !decode;
            if (!decode && it->n_tokens > c->max_prefill_run)
                c->max_prefill_run = it->n_tokens;
        }
        if (p->n_items > c->max_items)
            c->max_items = p->n_items;
        c->mixed_steps += has_prefill && has_decode;
        uint32_t ns = 0;
        uint64_t allocs = sy_alloc_total_count();
        rc = exec_execute(c->e, p, sampled, lps, &ns);
        assert_int_equal(sy_alloc_total_count(), allocs); /* execute never allocates */
        assert_int_equal(rc, ST_OK);
        sched_step_done(c->s, p);
        uint32_t k = 0;
        for (uint32_t i = 0; i < p->n_items; i++) {
            sched_seq_t *q = p->items[i].seq;
            if (!p->items[i].sample)
                continue;
            int si = seq_index(c, q);
            if (q->n_tokens == q->n_prompt) {
                int32_t v;
                const float *lg = cpux_logits(c->e, k, &v);
                assert_non_null(lg);
                c->first_logits[si] = sy_malloc((size_t)v * sizeof(float));
                assert_non_null(c->first_logits[si]);
                memcpy(c->first_logits[si], lg, (size_t)v * sizeof(float));
            }
            assert_true(q->n_tokens < q->cap_tokens);
            if (q->sp.logprobs) {
                check_lp(c, k, q, sampled[k], &lps[k]);
                uint32_t o = q->n_tokens - q->n_prompt;
                if (o < LP_MAX_OUT)
                    c->lp[si][o] = lps[k].logprob;
            } else {
                assert_false(lps[k].valid);
            }
            q->tokens[q->n_tokens++] = sampled[k++];
            if (q->n_tokens - q->n_prompt >= c->n_gen[si]) {
                sched_finish(c->s, q, SEQ_FINISH_LENGTH);
                exec_seq_done(c->e, q); /* as the engine core does: its sampler state goes */
            }
        }
        assert_int_equal(k, ns);
        assert_null(cpux_logits(c->e, ns, NULL));
        steps++;
        assert_true(steps < 100000);
    }
    return steps;
}

/* ------------------------------------------------------------ golden files */

static json_t *load_json(const char *rel)
{
    char path[1024];
    models_testutil_path(path, sizeof path, rel);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s (line %d)", path, je.text, je.line);
    return j;
}

static json_t *find_case(json_t *root, const char *name)
{
    json_t *cases = json_object_get(root, "cases");
    size_t i;
    json_t *cs;
    json_array_foreach(cases, i, cs)
    {
        if (strcmp(json_string_value(json_object_get(cs, "name")), name) == 0)
            return cs;
    }
    fail_msg("case %s not in the golden file", name);
    return NULL;
}

/* Copies an array of ints; returns the count. */
static size_t json_ints(json_t *a, int32_t *out, size_t cap)
{
    assert_true(json_is_array(a));
    size_t n = json_array_size(a);
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++)
        out[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return n;
}

static double max_abs_diff(json_t *expect, const float *got, int32_t n)
{
    assert_true(json_is_array(expect));
    assert_int_equal(json_array_size(expect), (size_t)n);
    double m = 0;
    for (int32_t i = 0; i < n; i++) {
        double d = fabs(json_number_value(json_array_get(expect, (size_t)i)) - (double)got[i]);
        if (d > m)
            m = d;
    }
    return m;
}

static const run_cfg_t k_default = {
    .block_size = 16, .num_blocks = 64, .budget = 256, .long_prefill_cap = 0, .threads = 1};

/* ------------------------------------------------------------ stories260K */

static void test_stories_bos_200(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    json_t *root = load_json("stories260K.expected.json");
    json_t *cs = find_case(root, "bos_only_200_steps");
    int32_t prompt[4], expect[256];
    size_t np = json_ints(json_object_get(cs, "prompt_ids"), prompt, 4);
    size_t ne = json_ints(json_object_get(cs, "generated_ids"), expect, 256);
    assert_int_equal(ne, 200);

    core_t c;
    core_init(&c, g, &k_default);
    assert_int_equal(c.vocab, 512);
    sched_seq_t *q = core_add(&c, prompt, (uint32_t)np, (uint32_t)ne);
    core_run(&c);
    size_t match = 0;
    while (match < ne && q->tokens[np + match] == expect[match])
        match++;
    double d = max_abs_diff(json_object_get(cs, "logits_pos0"), c.first_logits[0], c.vocab);
    print_message("stories260K bos: %zu/%zu tokens match, logits_pos0 max abs diff %.3g\n", match,
                  ne, d);
    assert_int_equal(match, ne);
    assert_true(d < 1e-4);
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

static void test_stories_once_upon(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    json_t *root = load_json("stories260K.expected.json");
    json_t *cs = find_case(root, "once_upon_a_time_64");
    int32_t prompt[8], expect[64];
    size_t np = json_ints(json_object_get(cs, "prompt_ids"), prompt, 8);
    size_t ne = json_ints(json_object_get(cs, "generated_ids"), expect, 64);
    json_t *lpp = json_object_get(cs, "logits_per_prompt_pos");
    assert_int_equal(json_array_size(lpp), np);

    core_t c;
    core_init(&c, g, &k_default);
    /* the full prompt with 64 tokens to generate, plus every prompt prefix (1 token generated)
     * to read the logits after each prompt position; all in the same steps */
    sched_seq_t *q = core_add(&c, prompt, (uint32_t)np, (uint32_t)ne);
    for (size_t i = 1; i <= np; i++)
        core_add(&c, prompt, (uint32_t)i, 1);
    core_run(&c);
    size_t match = 0;
    while (match < ne && q->tokens[np + match] == expect[match])
        match++;
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        double d = max_abs_diff(json_array_get(lpp, i), c.first_logits[1 + i], c.vocab);
        if (d > worst)
            worst = d;
    }
    double dfull = max_abs_diff(json_array_get(lpp, np - 1), c.first_logits[0], c.vocab);
    print_message("stories260K once upon a time: %zu/%zu tokens match, logits max abs diff %.3g "
                  "(prefixes), %.3g (full prompt)\n",
                  match, ne, worst, dfull);
    assert_int_equal(match, ne);
    assert_true(worst < 1e-4);
    assert_true(dfull < 1e-4);
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

/* ------------------------------------------------------------ batch invariance */

#define INV_GEN 48
#define INV_NPROMPT 13

/* The target prompt: BOS "Once upon a time" then a few more story tokens (13 tokens, so it spans
 * blocks of 4 and a chunk size of 3 does not divide it). */
static const int32_t k_target[INV_NPROMPT] = {1,   403, 407, 261, 378, 432, 383,
                                              286, 261, 376, 298, 315, 421};

/* Generates INV_GEN tokens of the target, optionally with 7 other sequences of different
 * lengths; writes the generated tokens to out. */
static void run_target(gguf_t *g, const run_cfg_t *rc, bool with_others, bool twice, int32_t *out,
                       uint32_t *n_cached_second)
{
    uint32_t max_items = 0, mixed = 0, max_chunk = 0;
    core_t c;
    core_init(&c, g, rc);
    for (int round = 0; round < (twice ? 2 : 1); round++) {
        if (with_others) {
            /* others first and last so the target sits mid-batch */
            for (int o = 0; o < 3; o++) {
                int32_t p[40];
                uint32_t n = 2 + (uint32_t)o * 7;
                p[0] = 1;
                for (uint32_t i = 1; i < n; i++)
                    p[i] = 259 + (int32_t)((i * 37 + (uint32_t)o * 11) % 253);
                core_add(&c, p, n, 10 + (uint32_t)o * 9);
            }
        }
        sched_seq_t *q = core_add(&c, k_target, INV_NPROMPT, INV_GEN);
        if (with_others) {
            for (int o = 3; o < 7; o++) {
                int32_t p[40];
                uint32_t n = 1 + (uint32_t)o * 5;
                p[0] = 1;
                for (uint32_t i = 1; i < n; i++)
                    p[i] = 259 + (int32_t)((i * 53 + (uint32_t)o * 17) % 253);
                core_add(&c, p, n, 5 + (uint32_t)o * 11);
            }
        }
        core_run(&c);
        memcpy(out, q->tokens + INV_NPROMPT, INV_GEN * sizeof(int32_t));
        if (round == 1 && n_cached_second)
            *n_cached_second = q->n_cached;
        if (twice && round == 0)
            core_clear_seqs(&c);
    }
    max_items = c.max_items;
    mixed = c.mixed_steps;
    max_chunk = c.max_prefill_run;
    core_deinit(&c);
    print_message("  run: budget %u, chunk cap %u, %s%s: max %u items/step, %u mixed "
                  "prefill+decode steps, longest prefill chunk %u\n",
                  rc->budget, rc->long_prefill_cap, with_others ? "batched with 7" : "alone",
                  twice ? ", twice" : "", max_items, mixed, max_chunk);
    if (with_others && rc->budget >= 8) {
        assert_true(max_items >= 8);
        assert_true(mixed > 0);
    }
    if (rc->long_prefill_cap)
        assert_true(max_chunk <= rc->long_prefill_cap);
    if (rc->long_prefill_cap || rc->budget < INV_NPROMPT)
        assert_true(max_chunk > 1);
}

static void test_batch_invariance(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    int32_t alone[INV_GEN], got[INV_GEN];
    run_cfg_t rc = {.block_size = 4, .num_blocks = 256, .budget = 64, .threads = 1};
    run_target(g, &rc, false, false, alone, NULL);

    /* batched with 7 others of different lengths (budget 64: prefill chunks mix with decodes) */
    run_target(g, &rc, true, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);

    /* prefill chunked at 3 tokens per sequence per step, alone and batched */
    run_cfg_t rc3 = rc;
    rc3.long_prefill_cap = 3;
    run_target(g, &rc3, false, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);
    run_target(g, &rc3, true, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);

    /* whole-budget chunking at an odd size: 5 tokens per step for the whole batch */
    run_cfg_t rc5 = rc;
    rc5.budget = 5;
    run_target(g, &rc5, true, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);

    /* second run of the same prompt: its leading full blocks come from the prefix cache */
    uint32_t n_cached = 0;
    run_target(g, &rc, true, true, got, &n_cached);
    print_message("prefix cache: %u of %u prompt tokens served from cache\n", n_cached,
                  INV_NPROMPT);
    assert_int_equal(n_cached, 12);
    assert_memory_equal(alone, got, sizeof alone);

    /* two matmul threads */
    run_cfg_t rt = rc;
    rt.threads = 2;
    run_target(g, &rt, true, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);
    gguf_close(g);
}

/* Long prefills (several attention tiles per sequence, glue split over token ranges) and decode
 * of three sequences: 2 threads give the same tokens and bit-identical first logits as 1. */
static void test_threads_long_prefill(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    enum { NP = 300, NG = 12, NS = 3 };
    int32_t prompt[NP];
    uint32_t h = 12345;
    prompt[0] = 1;
    for (int i = 1; i < NP; i++) {
        h = h * 1103515245u + 12345u;
        prompt[i] = 3 + (int32_t)((h >> 8) % 509u);
    }
    run_cfg_t rc = {.block_size = 16, .num_blocks = 128, .budget = 512, .threads = 1};
    int32_t toks[2][NS][NG];
    float *lg[2][NS];
    for (int ti = 0; ti < 2; ti++) {
        rc.threads = ti + 1;
        core_t c;
        core_init(&c, g, &rc);
        sched_seq_t *q[NS];
        for (int i = 0; i < NS; i++)
            q[i] = core_add(&c, prompt + i * 7, (uint32_t)(NP - i * 40), NG);
        core_run(&c);
        for (int i = 0; i < NS; i++) {
            memcpy(toks[ti][i], q[i]->tokens + q[i]->n_prompt, sizeof toks[ti][i]);
            lg[ti][i] = malloc((size_t)c.vocab * sizeof(float));
            assert_non_null(lg[ti][i]);
            memcpy(lg[ti][i], c.first_logits[i], (size_t)c.vocab * sizeof(float));
        }
        core_deinit(&c);
    }
    for (int i = 0; i < NS; i++) {
        assert_memory_equal(toks[0][i], toks[1][i], sizeof toks[0][i]);
        assert_memory_equal(lg[0][i], lg[1][i], 512 * sizeof(float));
        free(lg[0][i]);
        free(lg[1][i]);
    }
    gguf_close(g);
}

/* The reference kernels and the F16 KV cache give the same greedy text on stories260K (the
 * smallest top-1/top-2 margin over the golden run is 0.0042). */
static void test_scalar_and_kv_f16(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    int32_t fast[INV_GEN], got[INV_GEN];
    run_cfg_t rc = {.block_size = 16, .num_blocks = 64, .budget = 64, .threads = 1};
    run_target(g, &rc, false, false, fast, NULL);
    kern_isa_t isa = kern_isa();
    assert_int_equal(kern_init(KERN_ISA_SCALAR), ST_OK);
    run_target(g, &rc, true, false, got, NULL);
    assert_int_equal(kern_init(isa), ST_OK);
    assert_memory_equal(fast, got, sizeof fast);
    run_cfg_t rh = rc;
    rh.kv_f16 = true;
    run_target(g, &rh, true, false, got, NULL);
    size_t m = 0;
    while (m < INV_GEN && got[m] == fast[m])
        m++;
    print_message("kv_f16: %zu/%d greedy tokens equal to the F32 KV run\n", m, INV_GEN);
    assert_int_equal(m, INV_GEN);
    gguf_close(g);
}

/* ------------------------------------------------------------ llama-2-tiny-random (F16) */

static void test_tiny_random_f16(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("llama-2-tiny-random.gguf", &g))
        MODELS_TESTUTIL_MISSING("llama-2-tiny-random.gguf");
    json_t *root = load_json("llama-2-tiny-random.expected.json");
    int32_t prompt[8], expect[16];
    size_t np = json_ints(json_object_get(root, "prompt_ids"), prompt, 8);
    size_t ne = json_ints(json_object_get(root, "generated_ids"), expect, 16);
    core_t c;
    core_init(&c, g, &k_default);
    assert_int_equal(c.vocab, 32000);
    sched_seq_t *q = core_add(&c, prompt, (uint32_t)np, (uint32_t)ne);
    core_run(&c);
    json_t *top = json_object_get(root, "top10_after_prompt");
    assert_int_equal(json_array_size(top), 10);
    double worst = 0;
    for (size_t i = 0; i < 10; i++) {
        json_t *pair = json_array_get(top, i);
        int32_t id = (int32_t)json_integer_value(json_array_get(pair, 0));
        double v = json_number_value(json_array_get(pair, 1));
        assert_true(id >= 0 && id < c.vocab);
        double d = fabs((double)c.first_logits[0][id] - v);
        if (d > worst)
            worst = d;
    }
    size_t match = 0;
    while (match < ne && q->tokens[np + match] == expect[match])
        match++;
    print_message("tiny-random F16: top-10 logits max abs diff %.3g, first token %d (expect %d), "
                  "%zu/%zu greedy tokens match (informative only: margin 0.0011)\n",
                  worst, q->tokens[np], expect[0], match, ne);
    /* F16 weights are upcast exactly and every sum (8 and 32 terms) is F32, so only F32
     * rounding separates us from the float64 reference: ~1e-7 relative per op on logits of
     * about 0.25. 1e-5 absolute is ~40x that, and 1000x below the 0.0125 top-1/top-2 gap. */
    assert_true(worst < 1e-5);
    assert_int_equal(q->tokens[np], expect[0]);
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

/* ------------------------------------------------------------ weight types (synthetic) */

/* Logits after a fixed prompt for a synthetic stories-shaped model of the given type (same seed,
 * so the same underlying random weights), from a fresh executor. */
static void synth_logits(const char *dir, const char *type, float *out, int32_t vocab)
{
    char path[512], *argv[16];
    snprintf(path, sizeof path, "%s/synth-%s.gguf", dir, type);
    int argc = 0;
    argv[argc++] = "gguf-synth";
    argv[argc++] = "--out";
    argv[argc++] = path;
    argv[argc++] = "--shape";
    argv[argc++] = "stories";
    argv[argc++] = "--ff";
    argv[argc++] = "192"; /* a multiple of 32 for the quantized types */
    argv[argc++] = "--type";
    argv[argc++] = (char *)type;
    argv[argc++] = "--seed";
    argv[argc++] = "7";
    argv[argc] = NULL;
    assert_int_equal(gguf_synth_main(argc, argv), 0);
    gguf_t *g = NULL;
    char err[256];
    if (gguf_open(path, &g, err, sizeof err) != ST_OK)
        fail_msg("%s: %s", path, err);
    core_t c;
    core_init(&c, g, &k_default);
    assert_int_equal(c.vocab, vocab);
    int32_t p[9] = {1, 300, 301, 77, 420, 259, 511, 3, 300};
    core_add(&c, p, 9, 1);
    core_run(&c);
    memcpy(out, c.first_logits[0], (size_t)vocab * sizeof(float));
    /* the same model batched and chunked at 3 gives the same greedy tokens (int8 paths
     * quantize activations per token, so they stay batch invariant) */
    core_deinit(&c);
    int32_t alone[INV_GEN], got[INV_GEN];
    run_cfg_t rc = {.block_size = 4, .num_blocks = 256, .budget = 64, .threads = 1};
    run_target(g, &rc, false, false, alone, NULL);
    rc.long_prefill_cap = 3;
    run_target(g, &rc, true, false, got, NULL);
    assert_memory_equal(alone, got, sizeof alone);
    gguf_close(g);
    unlink(path);
}

static void test_weight_types(void **state)
{
    (void)state;
    char dir[] = "/tmp/sy_cpux_XXXXXX";
    assert_non_null(mkdtemp(dir));
    enum { V = 512 };
    static float ref[V], got[V];
    synth_logits(dir, "F32", ref, V);
    double ref_max = 0;
    for (int i = 0; i < V; i++)
        ref_max = fmax(ref_max, fabs(ref[i]));
    /* Tolerances, relative to max |logit|, from each type's per-weight rms rounding error on
     * these uniform weights: F16 ~3e-4, BF16 ~2e-3, Q8_0 ~4e-3 (weights, and activations
     * quantized the same way), Q4_0 ~6e-2. This random 5-layer net amplifies weight noise about
     * 3x into the logits (measured with Q8_0: ~1.8% rms), so Q4_0 lands near 20% rms (cosine
     * ~0.98). Bounds are ~2x the expected error; a wrong kernel or layout gives cosine ~0. */
    const struct {
        const char *type;
        double tol_rel, min_cos;
    } types[] = {
        {"F16", 2e-3, 0.99999},
        {"BF16", 2e-2, 0.9999},
        {"Q8_0", 4e-2, 0.999},
        {"Q4_0", 4e-1, 0.95},
    };
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        synth_logits(dir, types[k].type, got, V);
        double m = 0, dot = 0, na = 0, nb = 0;
        for (int i = 0; i < V; i++) {
            m = fmax(m, fabs((double)got[i] - ref[i]));
            dot += (double)got[i] * ref[i];
            na += (double)ref[i] * ref[i];
            nb += (double)got[i] * got[i];
        }
        double cosv = dot / sqrt(na * nb);
        print_message("%s vs F32 synthetic: max abs diff %.3g (%.3g of max |logit| %.3g), "
                      "cosine %.6f\n",
                      types[k].type, m, m / ref_max, ref_max, cosv);
        assert_true(m / ref_max < types[k].tol_rel);
        assert_true(cosv > types[k].min_cos);
    }
    rmdir(dir);
}

/* ------------------------------------------------------------ refusals */
/* Reads a model file into memory (for patched copies); NULL when missing. */
static uint8_t *read_model(const char *rel, size_t *len)
{
    char path[1024];
    models_testutil_path(path, sizeof path, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = sy_malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* stories260K with output.weight renamed away: the output head is then tied to token_embd, whose
 * bytes equal output.weight's in this file, so the golden results must still hold. */
static void test_tied_embeddings(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *buf = read_model("stories260K.gguf", &len);
    if (!buf)
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    uint8_t *at = memmem(buf, len, "output.weight", 13);
    assert_non_null(at);
    memcpy(at, "outpuX.weight", 13);
    gguf_t *g = NULL;
    char err[256];
    assert_int_equal(gguf_open_mem(buf, len, &g, err, sizeof err), ST_OK);
    assert_null(gguf_find_tensor(g, "output.weight"));
    json_t *root = load_json("stories260K.expected.json");
    json_t *cs = find_case(root, "bos_only_200_steps");
    int32_t expect[256];
    json_ints(json_object_get(cs, "generated_ids"), expect, 256);
    core_t c;
    core_init(&c, g, &k_default);
    int32_t bos = 1;
    sched_seq_t *q = core_add(&c, &bos, 1, 40);
    core_run(&c);
    assert_memory_equal(q->tokens + 1, expect, 40 * sizeof(int32_t));
    double d = max_abs_diff(json_object_get(cs, "logits_pos0"), c.first_logits[0], c.vocab);
    print_message("tied embeddings: 40/40 tokens, logits_pos0 max abs diff %.3g\n", d);
    assert_true(d < 1e-4);
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
    sy_free(buf);
}

static void expect_refusal(gguf_t *g, const char *needle)
{
    cpux_config_t xc = {.gguf = g, .num_blocks = 8, .block_size = 16, .max_batch_tokens = 32};
    char err[256];
    exec_t *e = cpux_create(&xc, err, sizeof err);
    assert_null(e);
    print_message("refused: %s\n", err);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_refusals(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    /* another architecture is named */
    if (!open_model("vocab/ggml-vocab-gpt-2.gguf", &g))
        MODELS_TESTUTIL_MISSING("vocab/ggml-vocab-gpt-2.gguf");
    expect_refusal(g, "unsupported architecture 'gpt2'");
    gguf_close(g);
    /* llama metadata without tensors (a vocab-only file) */
    if (!open_model("vocab/ggml-vocab-llama-spm.gguf", &g))
        MODELS_TESTUTIL_MISSING("vocab/ggml-vocab-llama-spm.gguf");
    expect_refusal(g, "tensor 'token_embd.weight' is missing");
    gguf_close(g);

    /* stories260K with blk.0.attn_k.weight's ne[1] patched from 32 to 16: a shape mismatch */
    size_t len = 0;
    uint8_t *buf = read_model("stories260K.gguf", &len);
    if (!buf)
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    const char *name = "blk.0.attn_k.weight";
    uint8_t *at = memmem(buf, len, name, strlen(name));
    assert_non_null(at);
    uint8_t *ne1 = at + strlen(name) + 4 + 8; /* n_dims u32, ne[0] u64, ne[1] u64 */
    uint64_t v;
    memcpy(&v, ne1, 8);
    assert_int_equal(v, 32);
    v = 16;
    memcpy(ne1, &v, 8);
    char err[256];
    assert_int_equal(gguf_open_mem(buf, len, &g, err, sizeof err), ST_OK);
    expect_refusal(g, "blk.0.attn_k.weight");
    gguf_close(g);
    sy_free(buf);
}

/* Bad plans are refused with a status, not a crash. */
static void test_bad_token(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    core_t c;
    core_init(&c, g, &k_default);
    int32_t p[3] = {1, 600, 2};
    core_add(&c, p, 3, 1);
    sched_plan_t *plan = NULL;
    assert_int_equal(sched_plan(c.s, &plan), ST_OK);
    int32_t sampled[MAX_SEQS];
    uint32_t ns = 7;
    assert_int_equal(exec_execute(c.e, plan, sampled, NULL, &ns), ST_INVAL);
    assert_int_equal(ns, 0);
    core_deinit(&c);
    gguf_close(g);
}

static int setup(void **state)
{
    (void)state;
    kern_init(KERN_ISA_AUTO);
    print_message("kernels: %s\n", kern_isa_name());
    return 0;
}

/* The sampler is wired in: at temperature 0.8 a seeded request draws the same tokens on every
 * run and however it is batched, another seed draws others, and temperature 0 stays greedy. */
static void test_seeded_sampling(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    static const int32_t prompt[] = {1, 403, 407, 261, 378};
    int32_t out[3][48];
    const uint64_t seeds[3] = {7, 7, 8};
    for (int run = 0; run < 3; run++) {
        core_t c;
        core_init(&c, g, &k_default);
        if (run == 1) /* a neighbour in the batch changes nothing */
            core_add(&c, prompt, 5, 20);
        sched_seq_t *q = core_add(&c, prompt, 5, 48);
        q->sp.temperature = 0.8f;
        q->sp.top_p = 0.95f;
        q->sp.has_seed = true;
        q->sp.seed = seeds[run];
        core_run(&c);
        memcpy(out[run], q->tokens + 5, sizeof out[run]);
        core_deinit(&c);
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    assert_memory_not_equal(out[0], out[2], sizeof out[0]);
    /* temperature 0 with a seed: the greedy reference */
    json_t *root = load_json("stories260K.expected.json");
    int32_t expect[64];
    size_t ne = json_ints(json_object_get(find_case(root, "once_upon_a_time_64"), "generated_ids"),
                          expect, 64);
    core_t c;
    core_init(&c, g, &k_default);
    sched_seq_t *q = core_add(&c, prompt, 5, (uint32_t)ne);
    q->sp.has_seed = true;
    q->sp.seed = 7;
    core_run(&c);
    assert_memory_equal(q->tokens + 5, expect, ne * sizeof(int32_t));
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

/* Logprobs: every greedy step's sampled logprob is log_softmax of the step's logits, the top list
 * is sorted and starts with the sampled token, a whole-vocab list sums to 1, asking for logprobs
 * changes no token, and the values do not depend on the batch neighbours. */
static void test_logprobs(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    static const int32_t prompt[] = {1, 403, 407, 261, 378};
    json_t *root = load_json("stories260K.expected.json");
    int32_t expect[64];
    size_t ne = json_ints(json_object_get(find_case(root, "once_upon_a_time_64"), "generated_ids"),
                          expect, 64);
    assert_true(ne >= 24);
    core_t c;
    core_init(&c, g, &k_default);
    sched_seq_t *a = core_add(&c, prompt, 5, 24);
    a->sp.logprobs = true;
    a->sp.n_logprobs = 5;
    sched_seq_t *b = core_add(&c, prompt, 5, 24);
    b->sp.logprobs = true;
    b->sp.n_logprobs = (uint32_t)c.vocab; /* the whole vocab (512) */
    sched_seq_t *n = core_add(&c, prompt, 5, 24);
    sched_seq_t *z = core_add(&c, prompt, 5, 3);
    z->sp.logprobs = true; /* 0: the sampled token's logprob only */
    core_run(&c);
    assert_int_equal(c.lp_checked, 24 + 24 + 3);
    assert_memory_equal(a->tokens + 5, expect, 24 * sizeof(int32_t));
    assert_memory_equal(b->tokens + 5, expect, 24 * sizeof(int32_t));
    assert_memory_equal(n->tokens + 5, expect, 24 * sizeof(int32_t));
    int ia = seq_index(&c, a), ib = seq_index(&c, b), iz = seq_index(&c, z);
    for (int i = 0; i < 24; i++) {
        assert_true(c.lp[ia][i] <= 0.0f);
        assert_true(fabsf(c.lp[ia][i] - c.lp[ib][i]) <= 1e-6f);
        if (i < 3)
            assert_true(fabsf(c.lp[ia][i] - c.lp[iz][i]) <= 1e-6f);
    }
    core_deinit(&c);

    /* alone (no neighbours) the values are the same */
    float alone[24];
    core_init(&c, g, &k_default);
    a = core_add(&c, prompt, 5, 24);
    a->sp.logprobs = true;
    a->sp.n_logprobs = 2;
    core_run(&c);
    memcpy(alone, c.lp[0], sizeof alone);
    core_deinit(&c);
    core_init(&c, g, &k_default);
    a = core_add(&c, prompt, 5, 24);
    a->sp.logprobs = true;
    a->sp.n_logprobs = 2;
    for (int i = 0; i < 6; i++)
        core_add(&c, expect, 10, 12);
    core_run(&c);
    for (int i = 0; i < 24; i++)
        assert_true(fabsf(alone[i] - c.lp[0][i]) <= 1e-5f);
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

/* Repeated tokens among n outputs: n minus the distinct ones. */
static int repeats(const int32_t *t, int n)
{
    int distinct = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++)
            seen = t[j] == t[i];
        distinct += !seen;
    }
    return n - distinct;
}

/* Penalties reach the sampler: greedy with a frequency or presence penalty repeats fewer tokens
 * than plain greedy over 64 tokens, repetition_penalty 1.5 changes the output while 1.0 keeps
 * the reference, and logprobs stay the raw ones (sorted, sampled token included). */
static void test_penalties(void **state)
{
    (void)state;
    gguf_t *g = NULL;
    if (!open_model("stories260K.gguf", &g))
        MODELS_TESTUTIL_MISSING("stories260K.gguf");
    static const int32_t prompt[] = {1, 403, 407, 261, 378};
    json_t *root = load_json("stories260K.expected.json");
    int32_t expect[64];
    size_t ne = json_ints(json_object_get(find_case(root, "once_upon_a_time_64"), "generated_ids"),
                          expect, 64);
    assert_int_equal(ne, 64);
    core_t c;
    core_init(&c, g, &k_default);
    sched_seq_t *plain = core_add(&c, prompt, 5, 64);
    sched_seq_t *freq = core_add(&c, prompt, 5, 64);
    freq->sp.frequency_penalty = 2.0f;
    sched_seq_t *pres = core_add(&c, prompt, 5, 64);
    pres->sp.presence_penalty = 2.0f;
    sched_seq_t *rep = core_add(&c, prompt, 5, 64);
    rep->sp.repetition_penalty = 1.5f;
    rep->sp.logprobs = true;
    rep->sp.n_logprobs = 3;
    sched_seq_t *rep1 = core_add(&c, prompt, 5, 64);
    rep1->sp.repetition_penalty = 1.0f;
    core_run(&c);
    assert_memory_equal(plain->tokens + 5, expect, 64 * sizeof(int32_t));
    assert_memory_equal(rep1->tokens + 5, expect, 64 * sizeof(int32_t));
    int r_plain = repeats(plain->tokens + 5, 64), r_freq = repeats(freq->tokens + 5, 64),
        r_pres = repeats(pres->tokens + 5, 64);
    print_message("repeated tokens in 64: greedy %d, frequency 2: %d, presence 2: %d\n", r_plain,
                  r_freq, r_pres);
    assert_true(r_plain > 0);
    assert_true(r_freq < r_plain);
    assert_true(r_pres < r_plain);
    assert_memory_not_equal(rep->tokens + 5, expect, 64 * sizeof(int32_t));
    core_deinit(&c);
    json_decref(root);
    gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_bos_200),   cmocka_unit_test(test_stories_once_upon),
        cmocka_unit_test(test_batch_invariance),  cmocka_unit_test(test_threads_long_prefill),
        cmocka_unit_test(test_scalar_and_kv_f16), cmocka_unit_test(test_tiny_random_f16),
        cmocka_unit_test(test_weight_types),      cmocka_unit_test(test_tied_embeddings),
        cmocka_unit_test(test_refusals),          cmocka_unit_test(test_bad_token),
        cmocka_unit_test(test_seeded_sampling),   cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_penalties),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
