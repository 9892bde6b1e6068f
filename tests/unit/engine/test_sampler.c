/*
 * test_sampler.c - the sampler: greedy and its tie rule, seeded reproducibility and independence
 * between states, top-k / top-p / min-p / temperature against a sort-based reference written from
 * vLLM's definitions (fixed seeds and many draws, so deterministic), penalties on hand-built
 * logits, raw logprobs / ranks / top logprobs, error statuses, no allocation per call, and the
 * selection routines against brute force. Includes sampler.c to reach its statics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/sampler.c"

/* ---------------------------------------------------------------- helpers */

static uint64_t g_lcg = 12345;

static double rnd01(void)
{
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_lcg >> 11) * 0x1.0p-53;
}

static void rnd_logits(float *l, int32_t v, double scale)
{
    for (int32_t i = 0; i < v; i++)
        l[i] = (float)((rnd01() * 2.0 - 1.0) * scale);
}

typedef struct fix {
    smp_ws_t *ws;
    smp_state_t *st;
} fix_t;

static void fix_init(fix_t *f, const smp_params_t *p, int32_t vocab, uint32_t max_distinct,
                     uint64_t fallback)
{
    f->ws = smp_ws_create(vocab);
    f->st = smp_state_create(p, max_distinct, fallback);
    assert_non_null(f->ws);
    assert_non_null(f->st);
}

static void fix_deinit(fix_t *f)
{
    smp_state_destroy(f->st);
    smp_ws_destroy(f->ws);
}

/* Samples from a copy of base (logits are scratch for the sampler). */
static int32_t draw(fix_t *f, const smp_params_t *p, const float *base, int32_t v)
{
    float l[4096];
    assert_true(v <= 4096);
    memcpy(l, base, (size_t)v * sizeof *l);
    smp_result_t r = {0};
    assert_int_equal(smp_sample(f->ws, p, f->st, l, v, NULL, 0, NULL, 0, &r), ST_OK);
    assert_true(r.token >= 0 && r.token < v);
    return r.token;
}

/* ---- a sort-based reference of vLLM's filtering, for distribution checks ---- */

static const float *g_sort_vals;
/* ascending by value, ties by id descending (so the descending walk prefers low ids) */
static int cmp_asc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float fx = g_sort_vals[x], fy = g_sort_vals[y];
    if (fx < fy)
        return -1;
    if (fx > fy)
        return 1;
    return y - x;
}

/* Fills prob[0..v) with the distribution vLLM samples from (no penalties). */
static void ref_probs(const float *logits, int32_t v, const smp_params_t *p, double *prob)
{
    double x[4096];
    float xf[4096];
    int32_t idx[4096];
    bool keep[4096];
    double mx = -INFINITY;
    for (int32_t i = 0; i < v; i++) {
        x[i] = (double)logits[i] / p->temperature;
        xf[i] = (float)x[i];
        keep[i] = logits[i] != -INFINITY;
        if (x[i] > mx)
            mx = x[i];
    }
    /* min-p: probs < min_p * p_max are dropped */
    for (int32_t i = 0; i < v; i++)
        if (exp(x[i] - mx) < p->min_p)
            keep[i] = false;
    /* top-k: values below the k-th largest are dropped */
    if (p->top_k > 0 && p->top_k < v) {
        for (int32_t i = 0; i < v; i++)
            idx[i] = i;
        g_sort_vals = xf;
        qsort(idx, (size_t)v, sizeof *idx, cmp_asc);
        float kth = xf[idx[v - p->top_k]];
        for (int32_t i = 0; i < v; i++)
            if (xf[i] < kth)
                keep[i] = false;
    }
    /* top-p: ascending cumulative mass <= 1 - p is dropped, the largest always kept */
    if (p->top_p < 1.0f) {
        float masked[4096];
        double z = 0;
        for (int32_t i = 0; i < v; i++) {
            masked[i] = keep[i] ? xf[i] : -INFINITY;
            idx[i] = i;
            if (keep[i])
                z += exp(x[i] - mx);
        }
        g_sort_vals = masked;
        qsort(idx, (size_t)v, sizeof *idx, cmp_asc);
        double cum = 0;
        for (int32_t j = 0; j < v; j++) {
            int32_t i = idx[j];
            if (keep[i])
                cum += exp(x[i] - mx) / z;
            if (cum <= 1.0 - p->top_p && j != v - 1)
                keep[i] = false;
        }
    }
    double z = 0;
    for (int32_t i = 0; i < v; i++)
        z += keep[i] ? exp(x[i] - mx) : 0.0;
    for (int32_t i = 0; i < v; i++)
        prob[i] = keep[i] ? exp(x[i] - mx) / z : 0.0;
}

/* Draws n tokens and checks the support and the frequencies against ref_probs. */
static void check_distribution(const float *logits, int32_t v, const smp_params_t *p, int n,
                               double tol)
{
    double prob[4096];
    int count[4096] = {0};
    ref_probs(logits, v, p, prob);
    fix_t f;
    fix_init(&f, p, v, 0, 99);
    for (int i = 0; i < n; i++)
        count[draw(&f, p, logits, v)]++;
    for (int32_t i = 0; i < v; i++) {
        double freq = (double)count[i] / n;
        if (prob[i] == 0.0 && count[i] != 0)
            fail_msg("token %d drawn %d times but excluded by the reference", i, count[i]);
        if (fabs(freq - prob[i]) > tol)
            fail_msg("token %d: frequency %.4f, expected %.4f", i, freq, prob[i]);
    }
    fix_deinit(&f);
}

/* ---------------------------------------------------------------- tests */

static void test_greedy(void **unused)
{
    (void)unused;
    smp_params_t p;
    smp_params_init(&p);
    p.temperature = 0.0f;
    const float base[6] = {1.0f, 3.0f, -2.0f, 3.0f, 2.5f, 3.0f};
    for (uint64_t seed = 0; seed < 5; seed++) {
        p.has_seed = true;
        p.seed = seed;
        fix_t f;
        fix_init(&f, &p, 6, 0, seed);
        for (int i = 0; i < 10; i++)
            assert_int_equal(draw(&f, &p, base, 6), 1); /* ties go to the lowest id */
        fix_deinit(&f);
    }
    /* below SMP_TEMP_EPS is greedy too, whatever the filters */
    p.temperature = 5e-6f;
    p.top_k = 3;
    p.top_p = 0.1f;
    p.min_p = 0.9f;
    fix_t f;
    fix_init(&f, &p, 6, 0, 7);
    assert_int_equal(draw(&f, &p, base, 6), 1);
    fix_deinit(&f);
}

static void test_greedy_consumes_no_draw(void **unused)
{
    (void)unused;
    smp_params_t g, r;
    smp_params_init(&g);
    g.temperature = 0.0f;
    smp_params_init(&r);
    r.has_seed = true;
    r.seed = 42;
    float base[100];
    rnd_logits(base, 100, 1.0);
    fix_t a, b;
    fix_init(&a, &r, 100, 0, 0);
    fix_init(&b, &r, 100, 0, 0);
    /* b takes greedy steps in between (same state, greedy params): its random stream must not move
     */
    for (int i = 0; i < 50; i++) {
        draw(&b, &g, base, 100);
        assert_int_equal(draw(&a, &r, base, 100), draw(&b, &r, base, 100));
    }
    fix_deinit(&a);
    fix_deinit(&b);
}

static void test_seed_reproducible(void **unused)
{
    (void)unused;
    enum { V = 1000, N = 300 };
    static float base[V];
    rnd_logits(base, V, 0.5);
    smp_params_t p;
    smp_params_init(&p);
    p.has_seed = true;
    p.seed = 1234;
    static int32_t seq1[N], seq2[N], seq3[N];
    fix_t a, b, c;
    fix_init(&a, &p, V, 0, 1); /* the fallback seeds differ: the request seed wins */
    fix_init(&b, &p, V, 0, 2);
    for (int i = 0; i < N; i++)
        seq1[i] = draw(&a, &p, base, V);
    /* b's draws are interleaved with those of another state with other params and logits */
    smp_params_t q;
    smp_params_init(&q);
    q.temperature = 0.7f;
    q.top_k = 50;
    float other[V];
    rnd_logits(other, V, 3.0);
    fix_init(&c, &q, V, 0, 5);
    for (int i = 0; i < N; i++) {
        draw(&c, &q, other, V);
        seq2[i] = draw(&b, &p, base, V);
        draw(&c, &q, other, V);
    }
    assert_memory_equal(seq1, seq2, sizeof seq1);
    fix_deinit(&a);
    fix_deinit(&b);
    fix_deinit(&c);

    /* another seed gives another sequence */
    p.seed = 1235;
    fix_init(&a, &p, V, 0, 1);
    int same = 0;
    for (int i = 0; i < N; i++) {
        seq3[i] = draw(&a, &p, base, V);
        same += seq3[i] == seq1[i];
    }
    assert_true(same < N / 10);
    fix_deinit(&a);

    /* unseeded states follow their fallback seeds */
    p.has_seed = false;
    fix_init(&a, &p, V, 0, 77);
    fix_init(&b, &p, V, 0, 77);
    fix_init(&c, &p, V, 0, 78);
    same = 0;
    for (int i = 0; i < N; i++) {
        int32_t x = draw(&a, &p, base, V);
        assert_int_equal(x, draw(&b, &p, base, V));
        same += x == draw(&c, &p, base, V);
    }
    assert_true(same < N / 10);
    fix_deinit(&a);
    fix_deinit(&b);
    fix_deinit(&c);
    assert_int_not_equal(smp_entropy_u64(), smp_entropy_u64());
}

static void test_top_k(void **unused)
{
    (void)unused;
    enum { V = 50 };
    float base[V];
    rnd_logits(base, V, 2.0);
    int32_t am = 0;
    for (int32_t i = 1; i < V; i++)
        if (base[i] > base[am])
            am = i;
    smp_params_t p;
    smp_params_init(&p);
    p.top_k = 1;
    fix_t f;
    fix_init(&f, &p, V, 0, 3);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(draw(&f, &p, base, V), am);
    fix_deinit(&f);
    p.top_k = 5;
    check_distribution(base, V, &p, 20000, 0.015);
    /* many ties, small k (heap threshold) and large k (selection) */
    enum { W = 400 };
    float ties[W];
    for (int i = 0; i < W; i++)
        ties[i] = (float)(int)(rnd01() * 12) * 0.25f;
    p.top_k = 7;
    check_distribution(ties, W, &p, 20000, 0.015);
    p.top_k = 150;
    check_distribution(ties, W, &p, 20000, 0.015);
    p.top_k = 150;
    p.top_p = 0.3f;
    check_distribution(ties, W, &p, 20000, 0.015);
    p.top_p = 1.0f;
    /* ties with the k-th value are kept, as vLLM's threshold test does */
    const float tie[5] = {3.0f, 2.0f, 2.0f, 2.0f, 1.0f};
    p.top_k = 2;
    int seen[5] = {0};
    fix_init(&f, &p, 5, 0, 4);
    for (int i = 0; i < 4000; i++)
        seen[draw(&f, &p, tie, 5)]++;
    assert_true(seen[1] > 0 && seen[2] > 0 && seen[3] > 0);
    assert_int_equal(seen[4], 0);
    fix_deinit(&f);
}

static void test_top_p(void **unused)
{
    (void)unused;
    /* probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled) */
    const float lg[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    struct {
        float p;
        int kept[4];
    } cases[] = {
        {0.4f, {0, 1, 0, 0}},  /* 0.5 alone reaches 0.4 */
        {0.75f, {0, 1, 0, 1}}, /* 0.5 + 0.3 */
        {0.85f, {1, 1, 0, 1}}, /* 0.5 + 0.3 + 0.15 */
        {0.99f, {1, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        smp_params_t p;
        smp_params_init(&p);
        p.top_p = cases[c].p;
        int seen[4] = {0};
        fix_t f;
        fix_init(&f, &p, 4, 0, 11);
        for (int i = 0; i < 4000; i++)
            seen[draw(&f, &p, lg, 4)]++;
        for (int i = 0; i < 4; i++)
            assert_int_equal(seen[i] > 0, cases[c].kept[i]);
        fix_deinit(&f);
    }
    enum { V = 400 };
    float base[V];
    rnd_logits(base, V, 4.0);
    smp_params_t p;
    smp_params_init(&p);
    p.top_p = 0.6f;
    check_distribution(base, V, &p, 20000, 0.015);
}

static void test_min_p(void **unused)
{
    (void)unused;
    const float lg[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    struct {
        float min_p;
        int kept[4];
    } cases[] = {
        {0.2f, {1, 1, 1, 0}}, /* threshold 0.1 */
        {0.5f, {1, 1, 0, 0}}, /* threshold 0.25 */
        {1.0f, {1, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        smp_params_t p;
        smp_params_init(&p);
        p.min_p = cases[c].min_p;
        int seen[4] = {0};
        fix_t f;
        fix_init(&f, &p, 4, 0, 12);
        for (int i = 0; i < 4000; i++)
            seen[draw(&f, &p, lg, 4)]++;
        for (int i = 0; i < 4; i++)
            assert_int_equal(seen[i] > 0, cases[c].kept[i]);
        fix_deinit(&f);
    }
}

static void test_distributions(void **unused)
{
    (void)unused;
    enum { V = 64 };
    float base[V];
    rnd_logits(base, V, 3.0);
    smp_params_t p;
    smp_params_init(&p);
    check_distribution(base, V, &p, 30000, 0.012); /* plain softmax */
    p.temperature = 0.5f;
    check_distribution(base, V, &p, 30000, 0.012);
    p.temperature = 1.7f;
    check_distribution(base, V, &p, 30000, 0.012);
    p.temperature = 0.8f;
    p.top_k = 20;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    check_distribution(base, V, &p, 30000, 0.012);
    p.top_k = 40;
    p.top_p = 0.5f;
    p.min_p = 0.0f;
    check_distribution(base, V, &p, 30000, 0.012);
}

static void test_penalties(void **unused)
{
    (void)unused;
    smp_params_t p;
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    const int32_t prompt[2] = {0, 1};
    const int32_t out[4] = {2, 2, 4, 5};
    fix_t f;
    fix_init(&f, &p, 6, 6, 0);
    /* white box: the penalised logits stay in the caller's buffer */
    float l[6] = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 3.0f};
    smp_result_t r = {0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l, 6, prompt, 2, out, 3, &r), ST_OK);
    const float want[6] = {1.0f, -4.0f, -0.75f, 0.5f, -2.75f, 3.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want[i], 1e-6);
    assert_int_equal(r.token, 5);
    /* one more output token (5): only the new tail is counted */
    float l2[6] = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 3.0f};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l2, 6, prompt, 2, out, 4, &r), ST_OK);
    const float want2[6] = {1.0f, -4.0f, -0.75f, 0.5f, -2.75f, 0.75f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l2[i], want2[i], 1e-6);
    assert_int_equal(r.token, 0);
    /* a shorter output recounts from scratch */
    float l3[6] = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 3.0f};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l3, 6, prompt, 2, out, 1, &r), ST_OK);
    const float want3[6] = {1.0f, -4.0f, -0.25f, 0.5f, -1.0f, 3.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l3[i], want3[i], 1e-6);
    fix_deinit(&f);

    /* frequency and presence look at the output only; repetition at prompt and output */
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.frequency_penalty = 1.0f;
    p.presence_penalty = 1.0f;
    fix_init(&f, &p, 6, 6, 0);
    float l4[6] = {5.0f, 1.0f, 1.0f, 1.0f, 1.0f, 4.5f};
    const int32_t pr2[3] = {0, 0, 0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l4, 6, pr2, 3, NULL, 0, &r), ST_OK);
    assert_int_equal(r.token, 0);
    assert_float_equal(l4[0], 5.0f, 1e-9);
    fix_deinit(&f);
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 1.25f;
    fix_init(&f, &p, 6, 6, 0);
    float l5[6] = {5.0f, 1.0f, 1.0f, 1.0f, 1.0f, 4.5f};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l5, 6, pr2, 3, NULL, 0, &r), ST_OK);
    assert_float_equal(l5[0], 4.0f, 1e-6);
    assert_int_equal(r.token, 5);
    fix_deinit(&f);
    /* negative penalties favour repeats */
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.frequency_penalty = -2.0f;
    fix_init(&f, &p, 6, 8, 0);
    float l6[6] = {5.0f, 1.0f, 1.0f, 1.0f, 1.0f, 4.5f};
    const int32_t out2[1] = {5};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l6, 6, NULL, 0, out2, 1, &r), ST_OK);
    assert_int_equal(r.token, 5);
    assert_float_equal(l6[5], 6.5f, 1e-6);
    fix_deinit(&f);
}

static void test_min_tokens(void **unused)
{
    (void)unused;
    smp_params_t p;
    smp_params_init(&p);
    p.temperature = 0.0f;
    const int32_t ban[2] = {2, 3};
    p.min_tokens = 2;
    p.ban_ids = ban;
    p.n_ban_ids = 2;
    fix_t f;
    fix_init(&f, &p, 4, 0, 0);
    const int32_t out[2] = {1, 1};
    float l[4] = {0.0f, 1.0f, 9.0f, 8.0f};
    smp_result_t r = {0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l, 4, NULL, 0, out, 1, &r), ST_OK);
    assert_int_equal(r.token, 1);
    float l2[4] = {0.0f, 1.0f, 9.0f, 8.0f};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l2, 4, NULL, 0, out, 2, &r), ST_OK);
    assert_int_equal(r.token, 2);
    /* only banned tokens are finite: nothing left to sample */
    float l3[4] = {-INFINITY, -INFINITY, 9.0f, 8.0f};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l3, 4, NULL, 0, NULL, 0, &r), ST_INVAL);
    assert_int_equal(r.token, -1);
    fix_deinit(&f);
}

static void test_logprobs(void **unused)
{
    (void)unused;
    enum { V = 1000, N = 5 };
    static float base[V], l[V];
    rnd_logits(base, V, 6.0);
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++)
        mx = base[i] > mx ? base[i] : mx;
    for (int i = 0; i < V; i++)
        z += exp(base[i] - mx);
    double lz = mx + log(z);
    /* penalties, temperature and filters change the draw, never the logprobs */
    smp_params_t p;
    smp_params_init(&p);
    p.temperature = 0.7f;
    p.top_k = 30;
    p.top_p = 0.9f;
    p.repetition_penalty = 1.3f;
    p.frequency_penalty = 0.4f;
    p.n_logprobs = N;
    int32_t out[64];
    fix_t f;
    fix_init(&f, &p, V, 64, 21);
    smp_logprob_t top[N];
    for (int step = 0; step < 50; step++) {
        memcpy(l, base, sizeof l);
        smp_result_t r = {.top = top, .top_cap = N};
        assert_int_equal(smp_sample(f.ws, &p, f.st, l, V, NULL, 0, out, (size_t)step, &r), ST_OK);
        out[step] = r.token;
        assert_float_equal(r.logprob, base[r.token] - lz, 1e-4);
        uint32_t rank = 0;
        for (int i = 0; i < V; i++)
            rank += base[i] >= base[r.token];
        assert_int_equal(r.rank, rank);
        assert_int_equal(r.n_top, N);
        for (int k = 0; k < N; k++) {
            /* the k-th entry is the token with exactly k larger logits */
            int larger = 0;
            for (int i = 0; i < V; i++)
                larger += base[i] > base[top[k].token];
            assert_int_equal(larger, k);
            assert_float_equal(top[k].logprob, base[top[k].token] - lz, 1e-4);
            if (k)
                assert_true(top[k].logprob <= top[k - 1].logprob);
        }
    }
    fix_deinit(&f);

    /* top entries among many equal logits tie-break by id (heap path: N <= V / 4) */
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.n_logprobs = N;
    fix_init(&f, &p, 100, 0, 0);
    float eq[100] = {0};
    eq[70] = 1.0f;
    eq[30] = 1.0f;
    smp_result_t re = {.top = top, .top_cap = N};
    assert_int_equal(smp_sample(f.ws, &p, f.st, eq, 100, NULL, 0, NULL, 0, &re), ST_OK);
    assert_int_equal(re.token, 30);
    assert_int_equal(re.rank, 2);
    const int32_t want_top[N] = {30, 70, 0, 1, 2};
    for (int k = 0; k < N; k++)
        assert_int_equal(top[k].token, want_top[k]);
    fix_deinit(&f);

    /* ranks are 1-based and count ties as vLLM does; top entries tie-break by id */
    smp_params_init(&p);
    p.temperature = 0.0f;
    p.n_logprobs = 3;
    fix_init(&f, &p, 4, 0, 0);
    float t[4] = {0.0f, 2.0f, 2.0f, 1.0f};
    smp_result_t r = {.top = top, .top_cap = N};
    assert_int_equal(smp_sample(f.ws, &p, f.st, t, 4, NULL, 0, NULL, 0, &r), ST_OK);
    assert_int_equal(r.token, 1);
    assert_int_equal(r.rank, 2);
    assert_int_equal(top[0].token, 1);
    assert_int_equal(top[1].token, 2);
    assert_int_equal(top[2].token, 3);
    double lz4 = 2.0 + log(exp(-2.0) + 2.0 + exp(-1.0));
    assert_float_equal(top[2].logprob, 1.0 - lz4, 1e-6);
    /* n_logprobs 0: the sampled token only; more than the vocab is clamped */
    p.n_logprobs = 0;
    float t2[4] = {0.0f, 2.0f, 2.0f, 1.0f};
    r = (smp_result_t){0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, t2, 4, NULL, 0, NULL, 0, &r), ST_OK);
    assert_int_equal(r.n_top, 0);
    assert_float_equal(r.logprob, 2.0 - lz4, 1e-6);
    p.n_logprobs = 100;
    float t3[4] = {0.0f, 2.0f, 2.0f, 1.0f};
    r = (smp_result_t){.top = top, .top_cap = 4};
    assert_int_equal(smp_sample(f.ws, &p, f.st, t3, 4, NULL, 0, NULL, 0, &r), ST_OK);
    assert_int_equal(r.n_top, 4);
    assert_int_equal(top[3].token, 0);
    r.top_cap = 3;
    assert_int_equal(smp_sample(f.ws, &p, f.st, t3, 4, NULL, 0, NULL, 0, &r), ST_LIMIT);
    p.n_logprobs = SMP_LOGPROBS_NONE;
    r = (smp_result_t){0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, t3, 4, NULL, 0, NULL, 0, &r), ST_OK);
    assert_int_equal(r.rank, 0);
    assert_int_equal(r.n_top, 0);
    fix_deinit(&f);
}

static void test_edge_cases(void **unused)
{
    (void)unused;
    smp_params_t p;
    smp_params_init(&p);
    p.n_logprobs = 3;
    smp_logprob_t top[3];
    fix_t f;
    fix_init(&f, &p, 8, 0, 0);
    /* all -inf but one: greedy and random both pick it */
    for (int i = 0; i < 20; i++) {
        float l[8];
        for (int j = 0; j < 8; j++)
            l[j] = -INFINITY;
        l[6] = -1e30f;
        smp_result_t r = {.top = top, .top_cap = 3};
        p.temperature = i % 2 ? 0.0f : 1.0f;
        p.top_p = 0.5f;
        p.top_k = 3;
        assert_int_equal(smp_sample(f.ws, &p, f.st, l, 8, NULL, 0, NULL, 0, &r), ST_OK);
        assert_int_equal(r.token, 6);
        assert_float_equal(r.logprob, 0.0f, 1e-9);
        assert_int_equal(r.rank, 1);
        assert_int_equal(top[0].token, 6);
        assert_int_equal(top[1].token, 0);
        assert_true(top[1].logprob == -INFINITY);
    }
    smp_params_init(&p);
    /* NaN or +inf anywhere, or no finite logit: an error, never a crash */
    float bad[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    smp_result_t r = {0};
    bad[3] = NAN;
    assert_int_equal(smp_sample(f.ws, &p, f.st, bad, 8, NULL, 0, NULL, 0, &r), ST_INVAL);
    assert_int_equal(r.token, -1);
    bad[3] = INFINITY;
    assert_int_equal(smp_sample(f.ws, &p, f.st, bad, 8, NULL, 0, NULL, 0, &r), ST_INVAL);
    for (int j = 0; j < 8; j++)
        bad[j] = -INFINITY;
    assert_int_equal(smp_sample(f.ws, &p, f.st, bad, 8, NULL, 0, NULL, 0, &r), ST_INVAL);
    /* vocab 1, and vocab out of range */
    float one[1] = {-3.0f};
    p.n_logprobs = 5;
    r = (smp_result_t){.top = top, .top_cap = 3};
    assert_int_equal(smp_sample(f.ws, &p, f.st, one, 1, NULL, 0, NULL, 0, &r), ST_OK);
    assert_int_equal(r.token, 0);
    assert_float_equal(r.logprob, 0.0f, 1e-9);
    assert_int_equal(r.rank, 1);
    assert_int_equal(r.n_top, 1);
    p.n_logprobs = SMP_LOGPROBS_NONE;
    assert_int_equal(smp_sample(f.ws, &p, f.st, one, 0, NULL, 0, NULL, 0, &r), ST_INVAL);
    float nine[9] = {0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, nine, 9, NULL, 0, NULL, 0, &r), ST_INVAL);
    /* bad params */
    p.top_p = 0.0f;
    assert_int_equal(smp_sample(f.ws, &p, f.st, nine, 8, NULL, 0, NULL, 0, &r), ST_INVAL);
    assert_null(smp_state_create(&p, 0, 0));
    smp_params_init(&p);
    p.temperature = -1.0f;
    assert_int_equal(smp_params_check(&p), ST_INVAL);
    smp_params_init(&p);
    p.repetition_penalty = 0.0f;
    assert_int_equal(smp_params_check(&p), ST_INVAL);
    /* penalties on a state created without them */
    smp_params_init(&p);
    p.presence_penalty = 0.5f;
    assert_int_equal(smp_sample(f.ws, &p, f.st, nine, 8, NULL, 0, NULL, 0, &r), ST_STATE);
    fix_deinit(&f);
    /* token ids out of range, too many distinct tokens */
    fix_init(&f, &p, 8, 2, 0);
    const int32_t badtok[2] = {1, 8};
    float l[8] = {0};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l, 8, badtok, 2, NULL, 0, &r), ST_INVAL);
    const int32_t three[3] = {1, 2, 3};
    assert_int_equal(smp_sample(f.ws, &p, f.st, l, 8, three, 3, NULL, 0, &r), ST_LIMIT);
    assert_int_equal(smp_sample(f.ws, &p, f.st, l, 8, three, 2, NULL, 0, &r), ST_OK);
    /* a positive logit divided by a tiny repetition penalty overflows: refused */
    smp_params_init(&p);
    p.repetition_penalty = 1e-30f;
    smp_state_t *s2 = smp_state_create(&p, 4, 0);
    float big[8] = {1e10f, 0, 0, 0, 0, 0, 0, 0};
    const int32_t z[1] = {0};
    assert_int_equal(smp_sample(f.ws, &p, s2, big, 8, z, 1, NULL, 0, &r), ST_INVAL);
    smp_state_destroy(s2);
    fix_deinit(&f);
    smp_state_destroy(NULL);
    smp_ws_destroy(NULL);
    assert_null(smp_ws_create(0));
}

static void test_no_alloc_per_call(void **unused)
{
    (void)unused;
    enum { V = 3000 };
    static float base[V], l[V];
    rnd_logits(base, V, 2.0);
    smp_params_t p;
    smp_params_init(&p);
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.01f;
    p.frequency_penalty = 0.2f;
    p.repetition_penalty = 1.1f;
    p.n_logprobs = 20;
    smp_logprob_t top[20];
    int32_t out[200];
    fix_t f;
    fix_init(&f, &p, V, 200, 8);
    uint64_t before_n = sy_alloc_total_count();
    for (int i = 0; i < 200; i++) {
        memcpy(l, base, sizeof l);
        smp_result_t r = {.top = top, .top_cap = 20};
        assert_int_equal(smp_sample(f.ws, &p, f.st, l, V, NULL, 0, out, (size_t)i, &r), ST_OK);
        out[i] = r.token;
    }
    assert_int_equal(sy_alloc_total_count(), before_n);
    fix_deinit(&f);
}

/* ---- the selection routines against brute force ---- */

static int cmp_before(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void fill_cands(smp_cand_t *a, size_t n, int pattern)
{
    for (size_t i = 0; i < n; i++) {
        float v;
        switch (pattern) {
        case 0:
            v = (float)(int)(rnd01() * 7);
            break; /* many ties */
        case 1:
            v = (float)i;
            break; /* ascending */
        case 2:
            v = (float)(n - i);
            break; /* descending */
        case 3:
            v = 1.0f;
            break; /* all equal */
        default:
            v = (float)rnd01();
            break;
        }
        a[i] = (smp_cand_t){.v = v, .w = (float)(rnd01() + 0.01), .id = (int32_t)((i * 7919) % n)};
    }
}

static void test_selection(void **unused)
{
    (void)unused;
    static smp_cand_t a[700], s[700];
    for (size_t n = 1; n <= 700; n += (n < 40 ? 1 : 37)) {
        for (int pattern = 0; pattern < 5; pattern++) {
            fill_cands(a, n, pattern);
            memcpy(s, a, n * sizeof *a);
            qsort(s, n, sizeof *s, cmp_before);
            /* select_k: the k first in order, the k-th in place */
            for (size_t k = 1; k < n; k += 1 + n / 5) {
                smp_cand_t b[700];
                memcpy(b, a, n * sizeof *a);
                select_k(b, n, k);
                assert_int_equal(b[k - 1].id, s[k - 1].id);
                for (size_t i = 0; i + 1 < k; i++)
                    assert_true(before(&b[i], &s[k - 1]));
                for (size_t i = k; i < n; i++)
                    assert_true(before(&s[k - 1], &b[i]));
            }
            /* select_mass: the shortest prefix whose weight reaches need */
            double total = 0;
            for (size_t i = 0; i < n; i++)
                total += s[i].w;
            for (int t = 1; t <= 9; t += 2) {
                double need = total * t / 10.0;
                smp_cand_t b[700];
                memcpy(b, a, n * sizeof *a);
                size_t got = select_mass(b, n, need);
                assert_true(got >= 1 && got <= n);
                /* the kept entries are exactly the first `got` in order */
                qsort(b, got, sizeof *b, cmp_before);
                for (size_t i = 0; i < got; i++)
                    assert_int_equal(b[i].id, s[i].id);
                /* and `got` is the shortest such prefix (up to summation rounding) */
                double ahead = 0;
                for (size_t i = 0; i + 1 < got; i++)
                    ahead += s[i].w;
                assert_true(ahead < need + 1e-9 * total);
                assert_true(ahead + s[got - 1].w >= need - 1e-9 * total || got == n);
            }
            /* sorting */
            smp_cand_t b[700];
            memcpy(b, a, n * sizeof *a);
            sort_range(b, n);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(b[i].id, s[i].id);
            memcpy(b, a, n * sizeof *a);
            heap_sort(b, n);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(b[i].id, s[i].id);
        }
    }
}

static void test_params_mapping(void **unused)
{
    (void)unused;
    seq_sampling_t sp = {.temperature = 0.3f,
                         .top_p = 0.8f,
                         .top_k = 12,
                         .min_p = 0.1f,
                         .has_seed = true,
                         .seed = 99,
                         .min_tokens = 4};
    smp_params_t p;
    smp_params_from_seq(&sp, &p);
    assert_float_equal(p.temperature, 0.3f, 1e-9);
    assert_float_equal(p.top_p, 0.8f, 1e-9);
    assert_int_equal(p.top_k, 12);
    assert_float_equal(p.min_p, 0.1f, 1e-9);
    assert_true(p.has_seed);
    assert_int_equal(p.seed, 99);
    assert_int_equal(p.min_tokens, 4);
    assert_float_equal(p.repetition_penalty, 1.0f, 1e-9);
    assert_int_equal(p.n_logprobs, SMP_LOGPROBS_NONE);
    assert_false(smp_params_has_penalties(&p));
    assert_int_equal(smp_params_check(&p), ST_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_greedy_consumes_no_draw),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_min_tokens),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_no_alloc_per_call),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_params_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
