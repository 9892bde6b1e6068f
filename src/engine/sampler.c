/*
 * sampler.c - vLLM v1's sampler for one sequence at a time, on the CPU.
 *
 * Order of operations (vllm/v1/sample/sampler.py, Sampler.forward and .sample):
 *   1. raw logprobs: when logprobs are wanted, the raw logits are copied first; logprobs are the
 *      log_softmax of these (vLLM's default logprobs_mode "raw_logprobs"), whatever the penalties,
 *      temperature or filters do to the sampling distribution.
 *   2. min tokens: while n_out < min_tokens, the ban ids (EOS, stop_token_ids) get -inf.
 *   3. penalties (vllm/model_executor/layers/utils.py apply_penalties): repetition first, on
 *      tokens seen in prompt or output (positive logits times 1/r, others times r); then
 *      logit -= frequency * count and logit -= presence * (count > 0), counts over the OUTPUT only.
 *   4. greedy when temperature < 1e-5: argmax of the penalised logits, ties to the lowest id (as
 *      torch.argmax, which returns the first maximum). No random draw is consumed.
 *   5. temperature: logits / T (we first subtract the max, which changes nothing below and keeps
 *      a tiny T from overflowing to +inf).
 *   6. min-p (an argmax-invariant logits processor, run before top-k/top-p): drop tokens whose
 *      probability is below min_p * p_max, i.e. exp(v - v_max) < min_p.
 *   7. top-k (topk_topp_sampler.py): keep logits >= the k-th largest (ties at the boundary stay).
 *   8. top-p on the softmax of the survivors: keep the smallest prefix, by descending
 *      probability, whose mass reaches p (a token stays iff the mass ranked above it is < p).
 *   9. draw from the renormalised survivors. vLLM uses an exponential race with torch's
 *      generator; we use one uniform from xoshiro256** and an inverse-CDF walk. The distributions
 *      are the same; bit-identical draws with vLLM are not a goal (torch's RNG is not ours).
 *  10. logprobs: the sampled token's raw logprob and rank (the number of tokens whose logprob is
 *      >= its own, as vLLM's batched_count_greater_than: 1 for a unique maximum, tied tokens
 *      share the larger rank), then the top N raw logprobs. vLLM's serving layer clamps -inf to
 *      -9999.0 when writing JSON; that is api.c's job.
 *
 * Selection instead of sorting: candidates (value, weight, id) are ordered by value descending,
 * then id ascending, a total order (ids are unique), so results never depend on the order of
 * equal logits. Per call, with V the vocab:
 *   - top-k with k <= V/4: one pass with a k-entry min-heap finds the k-th largest logit; only
 *     tokens at or above it get an exp and become candidates. O(V) typical, O(V log k) worst.
 *     Larger k: introselect (median-of-three Lomuto partition, heapsort once the depth passes
 *     2 log2 n) over the candidates, O(V) expected, O(V log V) worst.
 *   - top-p: an exact prune first (see sample_random), then the same partition loop steered by
 *     mass: each round sums the weight ranked ahead of the pivot and keeps one side. O(V)
 *     expected, and usually far less after the prune, since real distributions are peaked.
 *   - top-N logprobs: the heap threshold (or a select for large N), then a sort of N entries:
 *     O(V + N log N).
 *   - the rest is a few linear passes: validation, max, one exp per candidate, the draw.
 * Sampling walks the survivors in their (deterministic) partition order.
 *
 * RNG: xoshiro256** (Blackman and Vigna, 2018), state seeded by four splitmix64 outputs of the
 * seed; one 53-bit uniform per non-greedy call, so a seeded sequence's draws depend only on its
 * seed and its step count, never on other sequences.
 *
 * Penalty counts: each state keeps the distinct tokens of prompt and output in insertion order
 * (token, output count, in-prompt flag) with an open-addressing index (linear probing, load
 * <= 1/2) sized at create; a call counts only the output tokens added since the previous call
 * and then touches only the distinct seen tokens: O(new tokens + distinct tokens).
 * Thread-safety: see sampler.h.
 */
#include "engine/sampler.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

/* Ranges at or below this many entries are finished by insertion sort. */
#define SMP_SMALL 16

/* ---------------------------------------------------------------- types */

typedef struct smp_cand {
    float v;    /* ordering value: the processed logit (sampling) or the raw logit (logprobs) */
    float w;    /* unnormalised probability exp(v - v_max); unused for logprobs */
    int32_t id; /* token id */
} smp_cand_t;

struct smp_ws {
    int32_t max_vocab;
    float *raw;       /* (max_vocab) copy of the raw logits, for logprobs */
    float *heap;      /* (max_vocab / 4 + 1) min-heap for k-th largest values */
    smp_cand_t *cand; /* (max_vocab) candidates being filtered / ranked */
};

typedef struct smp_seen {
    int32_t tok;
    uint32_t count; /* occurrences in the output */
    bool in_prompt;
} smp_seen_t;

struct smp_state {
    uint64_t rng[4];  /* xoshiro256** state */
    bool penalties;   /* the count table exists */
    smp_seen_t *seen; /* (cap) distinct tokens seen, insertion order */
    uint32_t n_seen, cap;
    int32_t *slots; /* (1 << slot_bits) index into seen, -1 = empty */
    uint32_t slot_bits;
    bool prompt_done;     /* the prompt has been counted */
    size_t n_prompt_done; /* its length then */
    size_t n_out_done;    /* output tokens counted so far */
};

/* ---------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void rng_seed(uint64_t s[4], uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        s[i] = splitmix64(&seed);
}

static uint64_t rng_next(uint64_t s[4])
{
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

uint64_t smp_entropy_u64(void)
{
    static _Atomic uint64_t counter;
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
        return v;
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = (uint64_t)a.tv_sec * 1000000000ull + (uint64_t)a.tv_nsec;
    x ^= ((uint64_t)b.tv_nsec << 32) ^ atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull;
    return splitmix64(&x);
}

/* ---------------------------------------------------------------- params */

void smp_params_init(smp_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->n_logprobs = SMP_LOGPROBS_NONE;
}

void smp_params_from_seq(const seq_sampling_t *sp, smp_params_t *p)
{
    smp_params_init(p);
    p->temperature = sp->temperature;
    p->top_k = sp->top_k;
    p->top_p = sp->top_p > 0.0f && sp->top_p <= 1.0f ? sp->top_p : 1.0f; /* 0 = unset: off */
    p->min_p = sp->min_p > 0.0f && sp->min_p <= 1.0f ? sp->min_p : 0.0f;
    p->has_seed = sp->has_seed;
    p->seed = sp->seed;
    p->min_tokens = sp->min_tokens;
    p->presence_penalty = sp->presence_penalty;
    p->frequency_penalty = sp->frequency_penalty;
    p->repetition_penalty = sp->repetition_penalty > 0.0f ? sp->repetition_penalty : 1.0f;
    p->n_logprobs = sp->logprobs
                        ? (sp->n_logprobs > INT32_MAX ? INT32_MAX : (int32_t)sp->n_logprobs)
                        : SMP_LOGPROBS_NONE;
}

int smp_params_check(const smp_params_t *p)
{
    if (!p)
        return ST_INVAL;
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return ST_INVAL;
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ST_INVAL;
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ST_INVAL;
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return ST_INVAL;
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return ST_INVAL;
    if (p->n_logprobs < SMP_LOGPROBS_NONE)
        return ST_INVAL;
    if (p->n_ban_ids && !p->ban_ids)
        return ST_INVAL;
    return ST_OK;
}

bool smp_params_has_penalties(const smp_params_t *p)
{
    return p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f ||
           p->presence_penalty != 0.0f;
}

/* ---------------------------------------------------------------- state */

smp_state_t *smp_state_create(const smp_params_t *p, uint32_t max_distinct, uint64_t fallback_seed)
{
    if (smp_params_check(p) != ST_OK)
        return NULL;
    smp_state_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        goto fail;
    rng_seed(s->rng, p->has_seed ? p->seed : fallback_seed);
    if (smp_params_has_penalties(p)) {
        uint32_t cap = max_distinct ? max_distinct : 1;
        if (cap > (1u << 29))
            goto fail;
        uint32_t bits = 4;
        while ((1u << bits) < 2 * cap)
            bits++;
        s->seen = sy_malloc((size_t)cap * sizeof *s->seen);
        s->slots = sy_malloc(((size_t)1 << bits) * sizeof *s->slots);
        if (!s->seen || !s->slots)
            goto fail;
        memset(s->slots, 0xff, ((size_t)1 << bits) * sizeof *s->slots); /* all -1 */
        s->cap = cap;
        s->slot_bits = bits;
        s->penalties = true;
    }
    return s;
fail:
    smp_state_destroy(s);
    return NULL;
}

void smp_state_destroy(smp_state_t *s)
{
    if (!s)
        return;
    sy_free(s->slots);
    sy_free(s->seen);
    sy_free(s);
}

/* Forgets every counted token (the next call recounts prompt and output). */
static void counts_reset(smp_state_t *s)
{
    memset(s->slots, 0xff, ((size_t)1 << s->slot_bits) * sizeof *s->slots);
    s->n_seen = 0;
    s->prompt_done = false;
    s->n_prompt_done = 0;
    s->n_out_done = 0;
}

int smp_state_reset(smp_state_t *s, const smp_params_t *p, uint64_t fallback_seed)
{
    if (!s || smp_params_check(p) != ST_OK)
        return ST_INVAL;
    if (smp_params_has_penalties(p) && !s->penalties)
        return ST_STATE;
    rng_seed(s->rng, p->has_seed ? p->seed : fallback_seed);
    if (s->penalties)
        counts_reset(s);
    return ST_OK;
}

/* Records one occurrence of tok (in the prompt, or in the output). ST_LIMIT when full. */
static int counts_add(smp_state_t *s, int32_t tok, bool in_prompt)
{
    uint32_t mask = (1u << s->slot_bits) - 1;
    uint32_t h = ((uint32_t)tok * 0x9E3779B1u) >> (32 - s->slot_bits);
    for (;; h = (h + 1) & mask) {
        int32_t e = s->slots[h];
        if (e < 0)
            break;
        if (s->seen[e].tok == tok) {
            if (in_prompt)
                s->seen[e].in_prompt = true;
            else
                s->seen[e].count++;
            return ST_OK;
        }
    }
    if (s->n_seen == s->cap)
        return ST_LIMIT;
    s->slots[h] = (int32_t)s->n_seen;
    s->seen[s->n_seen++] =
        (smp_seen_t){.tok = tok, .count = in_prompt ? 0 : 1, .in_prompt = in_prompt};
    return ST_OK;
}

/* Brings the counts up to date with prompt and out (only new output tokens are counted). */
static int counts_update(smp_state_t *s, int32_t vocab, const int32_t *prompt, size_t n_prompt,
                         const int32_t *out, size_t n_out)
{
    int rc = ST_OK;
    if (s->prompt_done && (n_prompt != s->n_prompt_done || n_out < s->n_out_done))
        counts_reset(s);
    if ((n_prompt && !prompt) || (n_out && !out))
        return ST_INVAL;
    if (!s->prompt_done) {
        for (size_t i = 0; i < n_prompt; i++) {
            if (prompt[i] < 0 || prompt[i] >= vocab) {
                rc = ST_INVAL;
                goto fail;
            }
            if ((rc = counts_add(s, prompt[i], true)) != ST_OK)
                goto fail;
        }
        s->prompt_done = true;
        s->n_prompt_done = n_prompt;
    }
    for (size_t i = s->n_out_done; i < n_out; i++) {
        if (out[i] < 0 || out[i] >= vocab) {
            rc = ST_INVAL;
            goto fail;
        }
        if ((rc = counts_add(s, out[i], false)) != ST_OK)
            goto fail;
    }
    s->n_out_done = n_out;
    return ST_OK;
fail:
    counts_reset(s); /* partial counts are never used */
    return rc;
}

/* Step 3: repetition, then frequency, then presence, on the seen tokens only. */
static void penalties_apply(const smp_params_t *p, const smp_state_t *s, float *logits)
{
    float rep = p->repetition_penalty, inv_rep = 1.0f / rep;
    for (uint32_t i = 0; i < s->n_seen; i++) {
        const smp_seen_t *e = &s->seen[i];
        float x = logits[e->tok];
        if (rep != 1.0f)
            x *= x > 0.0f ? inv_rep : rep;
        if (e->count) {
            x -= p->frequency_penalty * (float)e->count;
            x -= p->presence_penalty;
        }
        logits[e->tok] = x;
    }
}

/* ---------------------------------------------------------------- workspace */

smp_ws_t *smp_ws_create(int32_t max_vocab)
{
    if (max_vocab < 1)
        return NULL;
    smp_ws_t *ws = sy_calloc(1, sizeof *ws);
    if (!ws)
        goto fail;
    ws->raw = sy_malloc((size_t)max_vocab * sizeof *ws->raw);
    ws->cand = sy_malloc((size_t)max_vocab * sizeof *ws->cand);
    ws->heap = sy_malloc(((size_t)max_vocab / 4 + 1) * sizeof *ws->heap);
    if (!ws->raw || !ws->cand || !ws->heap)
        goto fail;
    ws->max_vocab = max_vocab;
    return ws;
fail:
    smp_ws_destroy(ws);
    return NULL;
}

void smp_ws_destroy(smp_ws_t *ws)
{
    if (!ws)
        return;
    sy_free(ws->heap);
    sy_free(ws->cand);
    sy_free(ws->raw);
    sy_free(ws);
}

/* ---------------------------------------------------------------- selection */

/* The total order: a ranks ahead of b (larger value, then smaller id). */
static inline bool before(const smp_cand_t *a, const smp_cand_t *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static inline void cswap(smp_cand_t *a, smp_cand_t *b)
{
    smp_cand_t t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(smp_cand_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        smp_cand_t x = a[i];
        size_t j = i;
        for (; j > 0 && before(&x, &a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

/* Heap whose root ranks last; sorting pops it to the end, leaving a[0..n) best first. */
static void heap_sift(smp_cand_t *a, size_t root, size_t n)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n)
            return;
        if (c + 1 < n && before(&a[c], &a[c + 1]))
            c++;
        if (!before(&a[root], &a[c]))
            return;
        cswap(&a[root], &a[c]);
        root = c;
    }
}

static void heap_sort(smp_cand_t *a, size_t n)
{
    if (n < 2)
        return;
    for (size_t i = n / 2; i-- > 0;)
        heap_sift(a, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        cswap(&a[0], &a[end]);
        heap_sift(a, 0, end);
    }
}

/* Sorts a[0..n) best first. */
static void sort_range(smp_cand_t *a, size_t n)
{
    if (n <= SMP_SMALL)
        insertion_sort(a, n);
    else
        heap_sort(a, n);
}

static unsigned depth_limit(size_t n)
{
    unsigned d = 0;
    while (n > 1) {
        n >>= 1;
        d++;
    }
    return 2 * d + 4;
}

/* Partitions a[0..n) (n >= 3) around the median of a[0], a[n/2], a[n-1]. Returns q with every
 * a[0..q) ahead of the pivot a[q] and every a(q..n) behind it; *mass_ahead (if not NULL) is the
 * sum of w over a[0..q). */
static size_t partition(smp_cand_t *a, size_t n, double *mass_ahead)
{
    size_t mid = n / 2, last = n - 1;
    if (before(&a[mid], &a[0]))
        cswap(&a[mid], &a[0]);
    if (before(&a[last], &a[0]))
        cswap(&a[last], &a[0]);
    if (before(&a[last], &a[mid]))
        cswap(&a[last], &a[mid]);
    cswap(&a[mid], &a[last]); /* the median becomes the pivot, at the end */
    smp_cand_t piv = a[last];
    size_t q = 0;
    double m = 0.0;
    for (size_t i = 0; i < last; i++) {
        if (before(&a[i], &piv)) {
            m += a[i].w;
            cswap(&a[i], &a[q]);
            q++;
        }
    }
    cswap(&a[q], &a[last]);
    if (mass_ahead)
        *mass_ahead = m;
    return q;
}

/* Rearranges a[0..n) so that a[0..k) are its k first entries in the total order, with a[k-1]
 * the k-th (0 < k < n). O(n) expected, O(n log n) worst. */
static void select_k(smp_cand_t *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n, t = k - 1;
    unsigned depth = depth_limit(n);
    while (hi - lo > SMP_SMALL) {
        if (depth-- == 0) {
            heap_sort(a + lo, hi - lo);
            return;
        }
        size_t q = lo + partition(a + lo, hi - lo, NULL);
        if (q == t)
            return;
        if (t < q)
            hi = q;
        else
            lo = q + 1;
    }
    insertion_sort(a + lo, hi - lo);
}

/* Returns K, the length of the shortest prefix of a[0..n) in the total order whose weight
 * reaches need (> 0), rearranging a so that a[0..K) is that prefix (in some order); n if the
 * whole array falls short (rounding). O(n) expected. */
static size_t select_mass(smp_cand_t *a, size_t n, double need)
{
    size_t lo = 0, hi = n;
    unsigned depth = depth_limit(n);
    while (hi - lo > SMP_SMALL && depth > 0) {
        depth--;
        double ahead;
        size_t q = lo + partition(a + lo, hi - lo, &ahead);
        if (ahead >= need) { /* the prefix ends before the pivot */
            hi = q;
            continue;
        }
        need -= ahead;
        if ((double)a[q].w >= need)
            return q + 1;
        need -= a[q].w;
        lo = q + 1;
    }
    sort_range(a + lo, hi - lo);
    for (size_t i = lo; i < hi; i++) {
        if ((double)a[i].w >= need)
            return i + 1;
        need -= a[i].w;
    }
    return hi;
}

/* Min-heap sift over h[0..n). */
static void min_sift(float *h, size_t root, size_t n)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n)
            return;
        if (c + 1 < n && h[c + 1] < h[c])
            c++;
        if (!(h[c] < h[root]))
            return;
        float t = h[root];
        h[root] = h[c];
        h[c] = t;
        root = c;
    }
}

/* The k-th largest of x[0..n), counting repeats (1 <= k <= n; no NaN), with heap[0..k) as
 * scratch. One pass; most entries cost a compare with the heap minimum. O(n log k) worst. */
static float kth_largest(const float *x, size_t n, size_t k, float *heap)
{
    memcpy(heap, x, k * sizeof *heap);
    for (size_t i = k / 2; i-- > 0;)
        min_sift(heap, i, k);
    for (size_t i = k; i < n; i++) {
        if (x[i] > heap[0]) {
            heap[0] = x[i];
            min_sift(heap, 0, k);
        }
    }
    return heap[0];
}

/* Whether a k-th largest over n entries goes through the heap (small k) or a selection. */
static inline bool use_heap(size_t k, size_t n)
{
    return k <= n / 4;
}

/* ---------------------------------------------------------------- sampling */

/* Steps 5-9 on logits whose maximum is m (finite). Returns the sampled token. */
static int32_t sample_random(smp_ws_t *ws, const smp_params_t *p, smp_state_t *st,
                             const float *logits, int32_t vocab, float m)
{
    smp_cand_t *c = ws->cand;
    float temp = p->temperature, min_w = p->min_p;
    size_t k = p->top_k > 0 && p->top_k < vocab ? (size_t)p->top_k : 0;
    /* 7 (small k): the k-th largest logit, mapped like every value below. (l - m) / T is
     * monotone in l, so this is exactly the k-th largest processed value; tokens below it never
     * become candidates and need no exp. */
    float t_v = -INFINITY;
    if (k && use_heap(k, (size_t)vocab)) {
        t_v = (kth_largest(logits, (size_t)vocab, k, ws->heap) - m) / temp;
        k = 0;
    }
    /* 5, 6: temperature, min-p; tokens of zero probability never become candidates */
    size_t n = 0;
    double z = 0.0;
    for (int32_t i = 0; i < vocab; i++) {
        if (logits[i] == -INFINITY)
            continue;
        float v = (logits[i] - m) / temp;
        if (v < t_v)
            continue;
        float w = expf(v);
        if (w > 0.0f && w >= min_w) {
            c[n++] = (smp_cand_t){.v = v, .w = w, .id = i};
            z += w;
        }
    }
    SY_ASSERT(n >= 1); /* the maximum has v = 0, w = 1 >= min_p */
    /* 7 (large k): select, keeping ties with the k-th value */
    if (k && k < n) {
        select_k(c, n, k);
        float t = c[k - 1].v;
        for (size_t i = k; i < n; i++) {
            if (c[i].v == t)
                cswap(&c[i], &c[k++]);
        }
        n = k;
        z = 0.0;
        for (size_t i = 0; i < n; i++)
            z += c[i].w;
    }
    /* 8: top-p over the renormalised survivors. First an exact prune: the candidates lighter
     * than t = (1 - p) z / n weigh less than (1 - p) z together, so everything heavier (all
     * ranked ahead of them) already exceeds p z and they are all cut; t is halved for rounding. */
    if (p->top_p < 1.0f && n > 1) {
        double need = (double)p->top_p * z;
        double t = 0.5 * (1.0 - (double)p->top_p) * z / (double)n;
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if ((double)c[i].w >= t)
                c[j++] = c[i];
        }
        n = select_mass(c, j, need);
        z = 0.0;
        for (size_t i = 0; i < n; i++)
            z += c[i].w;
    }
    /* 9: one uniform, inverse CDF over the survivors */
    double target = rng_uniform(st->rng) * z, acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].w;
        if (target < acc)
            return c[i].id;
    }
    return c[n - 1].id; /* rounding: target landed on the total */
}

/* Step 10: raw logprob and rank of tok, and the top N raw logprobs. raw_max is finite. */
static void fill_logprobs(smp_ws_t *ws, const smp_params_t *p, int32_t vocab, float raw_max,
                          int32_t tok, smp_result_t *res)
{
    const float *raw = ws->raw;
    double s = 0.0;
    for (int32_t i = 0; i < vocab; i++)
        s += expf(raw[i] - raw_max);
    float log_z = (float)log(s);
    float x = raw[tok];
    uint32_t ahead = 0;
    for (int32_t i = 0; i < vocab; i++)
        ahead += raw[i] >= x;
    res->logprob = (x - raw_max) - log_z;
    res->rank = ahead;
    size_t n_top = (size_t)p->n_logprobs < (size_t)vocab ? (size_t)p->n_logprobs : (size_t)vocab;
    res->n_top = (uint32_t)n_top;
    if (n_top == 0)
        return;
    smp_cand_t *c = ws->cand;
    size_t n = 0;
    if (use_heap(n_top, (size_t)vocab)) { /* only the entries >= the N-th largest */
        float t = kth_largest(raw, (size_t)vocab, n_top, ws->heap);
        for (int32_t i = 0; i < vocab; i++) {
            if (raw[i] >= t)
                c[n++] = (smp_cand_t){.v = raw[i], .w = 0.0f, .id = i};
        }
    } else {
        for (int32_t i = 0; i < vocab; i++)
            c[n++] = (smp_cand_t){.v = raw[i], .w = 0.0f, .id = i};
    }
    if (n_top < n)
        select_k(c, n, n_top);
    sort_range(c, n_top);
    for (size_t i = 0; i < n_top; i++)
        res->top[i] = (smp_logprob_t){.token = c[i].id, .logprob = (c[i].v - raw_max) - log_z};
}

int smp_sample(smp_ws_t *ws, const smp_params_t *p, smp_state_t *st, float *logits, int32_t vocab,
               const int32_t *prompt, size_t n_prompt, const int32_t *out_tokens, size_t n_out,
               smp_result_t *res)
{
    if (!res)
        return ST_INVAL;
    res->token = -1;
    if (!ws || !st || !logits || smp_params_check(p) != ST_OK)
        return ST_INVAL;
    if (vocab < 1 || vocab > ws->max_vocab)
        return ST_INVAL;
    bool pen = smp_params_has_penalties(p);
    if (pen && !st->penalties)
        return ST_STATE;
    bool want_lp = p->n_logprobs >= 0;
    size_t n_top = 0;
    if (want_lp)
        n_top = (size_t)p->n_logprobs < (size_t)vocab ? (size_t)p->n_logprobs : (size_t)vocab;
    if (n_top && (!res->top || res->top_cap < n_top))
        return ST_LIMIT;

    /* 1: validate, keep the raw logits for logprobs */
    float raw_max = -INFINITY;
    int32_t raw_arg = -1;
    for (int32_t i = 0; i < vocab; i++) {
        float x = logits[i];
        if (isnan(x) || x == INFINITY)
            return ST_INVAL;
        if (x > raw_max) {
            raw_max = x;
            raw_arg = i;
        }
    }
    if (raw_arg < 0)
        return ST_INVAL;
    if (want_lp)
        memcpy(ws->raw, logits, (size_t)vocab * sizeof *logits);

    /* 2: min tokens */
    bool changed = pen;
    if (n_out < p->min_tokens && p->n_ban_ids) {
        changed = true;
        for (size_t i = 0; i < p->n_ban_ids; i++) {
            if (p->ban_ids[i] < 0 || p->ban_ids[i] >= vocab)
                return ST_INVAL;
            logits[p->ban_ids[i]] = -INFINITY;
        }
    }

    /* 3: penalties */
    if (pen) {
        int rc = counts_update(st, vocab, prompt, n_prompt, out_tokens, n_out);
        if (rc != ST_OK)
            return rc;
        penalties_apply(p, st, logits);
    }

    /* 4: the maximum, first index on ties (the raw one if nothing changed); greedy stops here */
    float m = raw_max;
    int32_t arg = raw_arg;
    if (changed) {
        m = -INFINITY;
        arg = -1;
        for (int32_t i = 0; i < vocab; i++) {
            if (logits[i] > m) {
                m = logits[i];
                arg = i;
            }
        }
    }
    if (arg < 0 || m == INFINITY)
        return ST_INVAL; /* nothing finite left, or a penalty overflowed */
    int32_t tok = p->temperature < SMP_TEMP_EPS ? arg : sample_random(ws, p, st, logits, vocab, m);

    res->token = tok;
    res->logprob = 0.0f;
    res->rank = 0;
    res->n_top = 0;
    if (want_lp)
        fill_logprobs(ws, p, vocab, raw_max, tok, res);
    return ST_OK;
}
