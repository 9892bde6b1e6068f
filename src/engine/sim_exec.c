/*
 * sim_exec.c - the simulated executor: a step-time model from a calibration profile and
 * deterministic English output, no model weights.
 *
 * Profiles (Llama-3-8B, bf16 weights and KV cache; one GPU, TP=1). Every constant is derived from
 * public figures; the efficiencies are our assumptions and are stated:
 *   weights         8.03e9 params * 2 B = 16.06 GB read once per step (decode is bandwidth bound)
 *   KV per token    2 (K,V) * 32 layers * 8 KV heads * 128 head_dim * 2 B = 131,072 B
 *                   (Llama-3-8B config.json: num_hidden_layers 32, num_key_value_heads 8,
 *                   hidden_size 4096 / 32 heads)
 *   FLOPs per token ~ 2 * params = 16.1 GFLOP (prefill and decode alike)
 *   t_step          = 16.06 GB / (bandwidth * 0.8) + 0.5 ms scheduler/launch overhead
 *   t_prefill_token = 16.1 GFLOP / (bf16 dense peak * MFU); MFU ~50 % as in llm-d's calibration
 *                     of 15,928 prefill tok/s for Qwen3-32B on 2 x H100 (~510 TFLOPS per GPU;
 *                     llm-d guides/optimized-baseline), ~64 % on A100 to land in the 10-15k tok/s
 *                     range vLLM users report for Llama-3-8B on one A100-80GB
 *   t_decode_seq    = the same per-token compute as prefill (it adds on top of the weight read)
 *   t_kv_token      = 131,072 B / (bandwidth * 0.8)
 * Datasheets: NVIDIA A100 80GB SXM 2,039 GB/s, 312 TFLOPS bf16 dense; H100 SXM 3.35 TB/s,
 * 989 TFLOPS bf16 dense; L4 300 GB/s, 121 TFLOPS bf16 dense.
 * Result, A100: decode ITL ~10.5 ms at batch 1 (floor 7.9 ms at 100 % bandwidth), ~22 ms at
 * batch 64 with 1k-token contexts; H100: ~6.6 ms at batch 1.
 *
 * Output: each request emits words drawn from a fixed list of common English words; every word is
 * encoded once at create, bare (first word of an answer) and with a leading space (the rest).
 * The per-sequence state lives in seq->exec_state: [0] splitmix64 RNG state, [1] output length
 * at which EOS is emitted (at the next word boundary), [2] current word (low 32 bits) and position
 * in it (high 32 bits), [3] flags (bit 0: initialised, bit 1: a word is in progress).
 * Does not: allocate in execute; look at block tables; apply penalties (presence, frequency,
 * repetition are ignored); compute logprobs (it has no distribution: every lps entry has
 * valid = false, and the engine core fails a request that asked for them).
 * Thread-safety: engine core thread only.
 */
#include "engine/sim_exec.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

static const sim_profile_t k_profiles[] = {
    {
        .name = "a100-llama3-8b",
        .description =
            "NVIDIA A100-80GB SXM, Llama-3-8B bf16, TP=1. Datasheet 2,039 GB/s and 312 TFLOPS bf16 "
            "dense; 16.06 GB of weights per step at 80% of bandwidth + 0.5 ms overhead = 10.3 ms; "
            "prefill 16.1 GFLOP/token at ~64% MFU = 80 us/token (12.5k tok/s, within the 10-15k "
            "tok/s reported for vLLM on one A100); KV 128 KiB/token at 80% of bandwidth = 80 ns",
        .t_step = 0.0103,
        .t_prefill_token = 8.0e-5,
        .t_decode_seq = 8.0e-5,
        .t_kv_token = 8.0e-8,
        .kv_layers = 32,
        .kv_bytes_per_token = 131072,
    },
    {
        .name = "h100-llama3-8b",
        .description =
            "NVIDIA H100-80GB SXM, Llama-3-8B bf16, TP=1. Datasheet 3.35 TB/s and 989 TFLOPS bf16 "
            "dense; 16.06 GB of weights per step at 80% of bandwidth + 0.5 ms = 6.5 ms; prefill "
            "16.1 GFLOP/token at ~50% MFU (llm-d's H100 calibration: 15,928 tok/s Qwen3-32B TP=2) "
            "= 32 us/token (31k tok/s); KV 128 KiB/token at 80% of bandwidth = 49 ns",
        .t_step = 0.0065,
        .t_prefill_token = 3.2e-5,
        .t_decode_seq = 3.2e-5,
        .t_kv_token = 4.9e-8,
        .kv_layers = 32,
        .kv_bytes_per_token = 131072,
    },
    {
        .name = "l4-llama3-8b",
        .description =
            "NVIDIA L4 24GB, Llama-3-8B bf16, TP=1. Datasheet 300 GB/s and 121 TFLOPS bf16 dense; "
            "16.06 GB of weights per step at 80% of bandwidth + 0.5 ms = 67.4 ms; prefill 16.1 "
            "GFLOP/token at ~50% MFU = 265 us/token (3.8k tok/s); KV 128 KiB/token at 80% of "
            "bandwidth = 546 ns",
        .t_step = 0.0674,
        .t_prefill_token = 2.65e-4,
        .t_decode_seq = 2.65e-4,
        .t_kv_token = 5.46e-7,
        .kv_layers = 32,
        .kv_bytes_per_token = 131072,
    },
};

#define N_PROFILES (sizeof k_profiles / sizeof k_profiles[0])

const sim_profile_t *sim_profile_find(const char *name)
{
    if (!name)
        return &k_profiles[0];
    for (size_t i = 0; i < N_PROFILES; i++) {
        if (strcmp(k_profiles[i].name, name) == 0)
            return &k_profiles[i];
    }
    return NULL;
}

const char *sim_profile_names(void)
{
    return "a100-llama3-8b,h100-llama3-8b,l4-llama3-8b";
}

double sim_exec_step_time(const sim_profile_t *p, const sched_plan_t *plan)
{
    return p->t_step + (double)plan->n_prefill_tokens * p->t_prefill_token +
           (double)plan->n_decode_seqs * p->t_decode_seq +
           (double)plan->kv_tokens_read * p->t_kv_token;
}

/* ------------------------------------------------------------ words */

static const char *const k_words[] = {
    "the",      "of",         "and",       "to",       "in",        "a",       "is",      "that",
    "for",      "it",         "as",        "was",      "with",      "be",      "by",      "on",
    "not",      "he",         "this",      "are",      "or",        "his",     "from",    "at",
    "which",    "but",        "have",      "an",       "had",       "they",    "you",     "were",
    "their",    "one",        "all",       "we",       "can",       "her",     "has",     "there",
    "been",     "if",         "more",      "when",     "will",      "would",   "who",     "so",
    "no",       "time",       "people",    "year",     "way",       "day",     "man",     "thing",
    "woman",    "life",       "child",     "world",    "school",    "state",   "family",  "student",
    "group",    "country",    "problem",   "hand",     "part",      "place",   "case",    "week",
    "company",  "system",     "program",   "question", "work",      "number",  "night",   "point",
    "home",     "water",      "room",      "mother",   "area",      "money",   "story",   "fact",
    "month",    "lot",        "right",     "study",    "book",      "eye",     "job",     "word",
    "business", "issue",      "side",      "kind",     "head",      "house",   "service", "friend",
    "father",   "power",      "hour",      "game",     "line",      "end",     "member",  "law",
    "car",      "city",       "name",      "team",     "minute",    "idea",    "kid",     "body",
    "good",     "new",        "first",     "last",     "long",      "great",   "little",  "own",
    "other",    "old",        "big",       "high",     "different", "small",   "large",   "next",
    "early",    "young",      "important", "few",      "public",    "bad",     "same",    "able",
    "make",     "know",       "take",      "see",      "come",      "think",   "look",    "want",
    "give",     "use",        "find",      "tell",     "ask",       "seem",    "feel",    "try",
    "leave",    "call",       "keep",      "let",      "begin",     "help",    "talk",    "turn",
    "start",    "show",       "hear",      "play",     "run",       "move",    "like",    "live",
    "believe",  "hold",       "bring",     "happen",   "write",     "provide", "sit",     "stand",
    "lose",     "pay",        "meet",      "include",  "continue",  "set",     "learn",   "change",
    "lead",     "understand", "watch",     "follow",   "stop",      "create",  "speak",   "read",
};

#define N_WORDS (sizeof k_words / sizeof k_words[0])

typedef struct sim_exec {
    exec_t super;
    const sim_profile_t *profile;
    double speed;
    double mean_out;
    int32_t eos;
    uint32_t num_blocks, block_size;
    char *pool;   /* kv_storage: (kv_layers, num_blocks, 2, seg) */
    uint64_t seg; /* bytes of one K or V segment */
    /* word w, variant v (0 bare, 1 with a leading space): tokens[off[2w+v] .. off[2w+v+1]) */
    int32_t *tokens;
    uint32_t off[2 * N_WORDS + 1];
    struct timespec deadline; /* end of the previous step (absolute, CLOCK_MONOTONIC) */
    bool have_deadline;
} sim_exec_t;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1). */
static double rng_unit(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

#define ST_INIT 1u
#define ST_IN_WORD 2u

static void seq_state_init(const sim_exec_t *x, sched_seq_t *seq)
{
    uint64_t seed;
    if (seq->sp.has_seed) {
        seed = seq->sp.seed;
    } else if (seq->sp.temperature == 0.0f) {
        /* FNV-1a over the prompt: a repeated greedy prompt repeats its answer */
        seed = 0xcbf29ce484222325ull;
        for (uint32_t i = 0; i < seq->n_prompt; i++) {
            seed ^= (uint32_t)seq->tokens[i];
            seed *= 0x100000001b3ull;
        }
    } else {
        seed = seq->id_hash;
    }
    uint64_t rng = seed;
    splitmix64(&rng); /* decorrelate nearby seeds */
    /* output length (tokens, EOS included) ~ 1 + exponential(mean - 1), at least min_tokens + 1 */
    double mean = x->mean_out > 1.0 ? x->mean_out : 1.0;
    double u = rng_unit(&rng);
    double len = 1.0 + ceil(-(mean - 1.0) * log1p(-u));
    if (len > 1e9)
        len = 1e9;
    uint64_t target = (uint64_t)len;
    if (target < (uint64_t)seq->sp.min_tokens + 1)
        target = (uint64_t)seq->sp.min_tokens + 1;
    seq->exec_state[0] = rng;
    seq->exec_state[1] = target;
    seq->exec_state[2] = 0;
    seq->exec_state[3] = ST_INIT;
}

/* Next output token of seq; advances its state. */
static int32_t seq_next_token(const sim_exec_t *x, sched_seq_t *seq)
{
    uint64_t *st = seq->exec_state;
    if (!(st[3] & ST_INIT))
        seq_state_init(x, seq);
    uint32_t n_out = seq->n_tokens - seq->n_prompt; /* tokens already produced */
    if (!(st[3] & ST_IN_WORD)) {
        /* at a word boundary: end here, or start a new word */
        if (!seq->sp.ignore_eos && x->eos >= 0 && (uint64_t)n_out + 1 >= st[1])
            return x->eos;
        uint32_t w = (uint32_t)(splitmix64(&st[0]) % N_WORDS);
        st[2] = w;
        st[3] |= ST_IN_WORD;
    }
    uint32_t w = (uint32_t)st[2];
    uint32_t pos = (uint32_t)(st[2] >> 32);
    uint32_t v = n_out == pos ? 0 : 1; /* the answer's first word has no leading space */
    uint32_t a = x->off[2 * w + v], b = x->off[2 * w + v + 1];
    int32_t tok = x->tokens[a + pos];
    pos++;
    if (a + pos >= b) {
        st[3] &= ~(uint64_t)ST_IN_WORD;
        pos = 0;
    }
    st[2] = ((uint64_t)pos << 32) | w;
    return tok;
}

/* ------------------------------------------------------------ executor */

static void ts_add(struct timespec *t, double sec)
{
    long long ns = (long long)(sec * 1e9);
    t->tv_sec += (time_t)(ns / 1000000000LL);
    t->tv_nsec += (long)(ns % 1000000000LL);
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Sleeps until the end of this step. Deadlines chain from the previous step's deadline (not from
 * the wake-up time), so oversleeping and the core's own processing time between steps do not
 * accumulate. When the previous deadline is more than 1 ms in the past (the core was idle, or
 * its processing outran the model) the chain restarts at now: no catching up. */
static void sim_sleep(sim_exec_t *x, double step_s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct timespec next = now;
    if (x->have_deadline) {
        struct timespec lim = x->deadline;
        ts_add(&lim, 0.001);
        if (!ts_before(&lim, &now))
            next = x->deadline;
    }
    ts_add(&next, step_s / x->speed);
    x->deadline = next;
    x->have_deadline = true;
    if (!ts_before(&now, &next))
        return;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
        ;
}

static int sim_execute(exec_t *e, const sched_plan_t *plan, int32_t *sampled, exec_sample_lp_t *lps,
                       uint32_t *n_sampled)
{
    sim_exec_t *x = (sim_exec_t *)e;
    uint32_t n = 0;
    /* the word list is no distribution: lps entries stay invalid, never invented numbers, and
     * the core fails a request that asked for logprobs (the API refuses those earlier, naming
     * --model) without touching its batch neighbours */
    for (uint32_t i = 0; i < plan->n_items; i++) {
        const sched_plan_item_t *it = &plan->items[i];
        if (!it->sample)
            continue;
        if (lps)
            lps[n] = (exec_sample_lp_t){.valid = false};
        sampled[n++] = seq_next_token(x, it->seq);
    }
    *n_sampled = n;
    if (x->speed > 0)
        sim_sleep(x, sim_exec_step_time(x->profile, plan));
    return ST_OK;
}

static void sim_seq_done(exec_t *e, sched_seq_t *seq)
{
    (void)e;
    memset(seq->exec_state, 0, sizeof seq->exec_state);
}

static void sim_destroy(exec_t *e)
{
    sim_exec_t *x = (sim_exec_t *)e;
    sy_free(x->tokens);
    sy_free(x->pool);
    sy_free(x);
}

static void *sim_kv_segment(exec_t *e, uint32_t layer, uint32_t block, uint32_t which)
{
    sim_exec_t *x = (sim_exec_t *)e;
    if (!x->pool || layer >= x->profile->kv_layers || block >= x->num_blocks || which > 1)
        return NULL;
    return x->pool + (((uint64_t)layer * x->num_blocks + block) * 2 + which) * x->seg;
}

static void sim_kv_layout(const exec_t *e, exec_kv_layout_t *out)
{
    const sim_exec_t *x = (const sim_exec_t *)e;
    *out = (exec_kv_layout_t){
        .n_layers = x->profile->kv_layers,
        .block_size = x->block_size,
        .num_blocks = x->num_blocks,
        .dtype = x->pool ? EXEC_KV_F16 : EXEC_KV_NONE,
        .seg_bytes = x->pool ? x->seg : 0,
        .model_bytes_per_block = x->profile->kv_bytes_per_token * x->block_size,
        .time_scale = x->speed,
    };
}

static const exec_vtable_t k_sim_vt = {
    .name = "sim",
    .execute = sim_execute,
    .seq_done = sim_seq_done,
    .destroy = sim_destroy,
    .kv_layout = sim_kv_layout,
    .kv_segment = sim_kv_segment,
};

exec_t *sim_exec_create(const sim_config_t *cfg)
{
    if (!cfg || !cfg->tok)
        return NULL;
    sim_exec_t *x = sy_calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->super.vt = &k_sim_vt;
    x->profile = cfg->profile ? cfg->profile : &k_profiles[0];
    x->speed = cfg->speed;
    x->mean_out = cfg->mean_output_tokens > 0 ? cfg->mean_output_tokens : 128.0;
    x->eos = tok_eos(cfg->tok);
    x->num_blocks = cfg->num_blocks;
    x->block_size = cfg->block_size ? cfg->block_size : 16;
    if (cfg->kv_storage && x->num_blocks) {
        x->seg = x->profile->kv_bytes_per_token * x->block_size / (2u * x->profile->kv_layers);
        uint64_t bytes = (uint64_t)x->profile->kv_layers * x->num_blocks * 2 * x->seg;
        if (bytes > SIZE_MAX / 2 || !(x->pool = sy_malloc((size_t)bytes))) {
            sy_error("sim_exec.kv_storage", "bytes=%llu status=%s", (unsigned long long)bytes,
                     st_str(ST_NOMEM));
            goto fail;
        }
        memset(x->pool, 0x5a, (size_t)bytes); /* touch every page: transfers read real memory */
    }

    size_t total = 0;
    for (size_t w = 0; w < N_WORDS; w++)
        total += 2 * TOK_MAX_TOKENS(strlen(k_words[w]) + 1);
    x->tokens = sy_malloc(total * sizeof(int32_t));
    if (!x->tokens)
        goto fail;
    char buf[64];
    uint32_t at = 0;
    for (size_t w = 0; w < N_WORDS; w++) {
        for (int v = 0; v < 2; v++) {
            size_t len = (size_t)snprintf(buf, sizeof buf, "%s%s", v ? " " : "", k_words[w]);
            size_t n = 0;
            int rc = tok_encode(cfg->tok, buf, len, false, false, x->tokens + at, total - at, &n);
            if (rc != ST_OK || n == 0) {
                sy_error("sim_exec.encode_failed", "word=%s status=%s", k_words[w], st_str(rc));
                goto fail;
            }
            x->off[2 * w + (size_t)v] = at;
            at += (uint32_t)n;
        }
    }
    x->off[2 * N_WORDS] = at;
    return &x->super;
fail:
    sim_destroy(&x->super);
    return NULL;
}
