/*
 * sb_workload.h - request generators for `switchyard bench`: what to send, not when.
 *
 * Workloads:
 *   random        prompts of input_len tokens (from a length distribution) made of random
 *                 non-special tokens of the target tokenizer, max_tokens = output_len.
 *   shared-prefix groups x prompts_per_group prompts: one system prefix of system_len tokens per
 *                 group + a question of question_len tokens; sent in a seeded shuffled order,
 *                 cycling. With multi_turn (inference-perf's enable_multi_turn_chat) every user
 *                 is a session whose context starts with its group's prefix and grows per turn.
 *   multi-turn    chat sessions whose history grows each turn (the next turn of a session is
 *                 handed out only after the previous one completed, and carries its answer);
 *                 turns from an MT-Bench-style JSONL file ({"turns": [str, ...]}) or generated.
 *   trace         JSONL replay: one request per line with "timestamp_ms" (arrival offset) and
 *                 either "prompt" (text) or "input_len" (+ optional "prefix_group", "prefix_len"),
 *                 plus optional "output_len". Finite: the stage ends when the trace does.
 * Exact lengths: a text prompt of input_len tokens is built from token ids, detokenized and
 * re-tokenized; ids are trimmed / topped up until the server's count (the tokenizer's BOS included
 * when it adds one) equals input_len, at most 8 rounds (the built-in byte tokenizer is exact at
 * once); a prefix-group prompt appends question ids to the prefix text the same way, counting
 * the whole prompt (merges across the boundary included). spec->actual_input_len is the
 * re-tokenized count. With token_prompts the prompt is sent
 * as token ids ("prompt": [ids], completions only) and is exact by construction (no BOS added).
 * Does not: render chat templates (chat lengths are the content's, the template adds its own),
 * or schedule anything (sb_run does).
 * Thread-safety: none; one owner thread.
 */
#ifndef SY_SB_WORKLOAD_H
#define SY_SB_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "engine/tokenizer.h"

/* ---- seeded RNG (splitmix64) ---- */
typedef struct sb_rng {
    uint64_t s;
} sb_rng_t;

static inline uint64_t sb_rng_next(sb_rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double sb_rng_unit(sb_rng_t *r)
{
    return (double)(sb_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform integer in [0, n) (n > 0). */
static inline uint64_t sb_rng_below(sb_rng_t *r, uint64_t n)
{
    return sb_rng_next(r) % n;
}
/* Standard normal (Box-Muller). */
double sb_rng_normal(sb_rng_t *r);
/* Exponential with mean 1. */
double sb_rng_exp(sb_rng_t *r);

/* ---- length distributions ---- */
typedef enum sb_len_kind {
    SB_LEN_FIXED = 0,   /* mean */
    SB_LEN_NORMAL,      /* mean, stddev */
    SB_LEN_UNIFORM,     /* min..max inclusive */
    SB_LEN_LOGNORMAL,   /* mean, stddev of the lognormal itself */
    SB_LEN_SKEW_NORMAL, /* mean, stddev, skew (shape alpha) */
} sb_len_kind_t;

typedef struct sb_len_dist {
    sb_len_kind_t kind;
    double mean, stddev, skew;
    double min, max; /* clip (max 0 = no upper clip); min defaults to 1 */
} sb_len_dist_t;

/* A fixed length. */
sb_len_dist_t sb_len_fixed(uint32_t n);
/* Draws one length (>= 1). */
uint32_t sb_len_sample(const sb_len_dist_t *d, sb_rng_t *r);

/* ---- workloads ---- */
typedef enum sb_wl_kind {
    SB_WL_RANDOM = 0,
    SB_WL_SHARED_PREFIX,
    SB_WL_MULTI_TURN,
    SB_WL_TRACE,
} sb_wl_kind_t;

/* Parses "random", "shared-prefix" (or "shared_prefix"), "multi-turn", "trace". ST_OK/ST_INVAL. */
int sb_wl_kind_parse(const char *s, sb_wl_kind_t *out);
const char *sb_wl_kind_name(sb_wl_kind_t k);

typedef struct sb_wl_cfg {
    sb_wl_kind_t kind;
    const tok_t *tok; /* borrowed for the workload's lifetime; required */
    bool token_prompts;
    bool chat; /* bodies for /v1/chat/completions */
    bool ignore_eos;
    uint64_t seed;
    sb_len_dist_t input_len, output_len;
    /* shared-prefix */
    uint32_t groups, prompts_per_group;
    sb_len_dist_t system_len, question_len;
    bool multi_turn; /* shared-prefix sessions (inference-perf enable_multi_turn_chat) */
    /* multi-turn */
    uint32_t sessions;          /* 0 = one per questions line (or 16 generated) */
    uint32_t turns;             /* turns per generated session (and per shared-prefix session) */
    const char *questions_path; /* borrowed; NULL = generated questions */
    /* trace */
    const char *trace_path; /* borrowed */
    /* extra JSON members added to every body, e.g. "\"temperature\":0" (borrowed, may be NULL) */
    const char *extra_body;
} sb_wl_cfg_t;

void sb_wl_cfg_default(sb_wl_cfg_t *c);

/* One request to send (owned by the caller of sb_wl_next; free with sb_spec_free). */
typedef struct sb_spec {
    char *prompt; /* owned; text (completions prompt or the user message); NULL with ids */
    size_t prompt_len;
    int32_t *ids; /* owned; token prompt */
    size_t n_ids;
    uint32_t input_len;        /* intended prompt tokens */
    uint32_t actual_input_len; /* re-tokenized count of the text (ids: n_ids) */
    uint32_t output_len;       /* max_tokens */
    int32_t group;             /* shared prefix group, -1 none */
    int64_t session;           /* multi-turn session, -1 none */
    uint32_t turn;
    double t_ms;     /* trace arrival offset (ms), -1 when not a trace */
    uint64_t seq;    /* order of generation */
    uint32_t _epoch; /* multi-turn cycle the spec belongs to */
} sb_spec_t;

void sb_spec_free(sb_spec_t *s);

typedef struct sb_workload sb_workload_t;

/* Builds a workload. cfg borrowed (strings and tok must outlive the workload). Returns ST_OK
 * with *out (owned: sb_wl_destroy), or ST_INVAL / ST_NOMEM / -errno with err filled. */
int sb_wl_create(const sb_wl_cfg_t *cfg, sb_workload_t **out, char *err, size_t errlen);
void sb_wl_destroy(sb_workload_t *w);

/* The next request, or NULL: the workload is exhausted (trace; see sb_wl_exhausted), or nothing
 * is ready now (multi-turn: every session waits for its previous turn). Owned result. */
sb_spec_t *sb_wl_next(sb_workload_t *w);
/* True when sb_wl_next will never return a request again (trace end). */
bool sb_wl_exhausted(const sb_workload_t *w);
/* The request spec finished (ok or not); answer[0..len) is the streamed content (may be NULL).
 * Multi-turn: appends the turn and the answer to the session and makes its next turn ready.
 * Borrows spec (the caller frees it afterwards). */
void sb_wl_done(sb_workload_t *w, const sb_spec_t *spec, bool ok, const char *answer, size_t len);
/* True when the runner must collect answers (multi-turn workloads). */
bool sb_wl_wants_answer(const sb_workload_t *w);
/* Restarts a finite workload or multi-turn sessions from the beginning (a new stage of a trace
 * replays it; specs still in flight from the old cycle are ignored by sb_wl_done). */
void sb_wl_rewind(sb_workload_t *w);

/* Appends the request body for spec to out: model, prompt or messages, max_tokens, ignore_eos,
 * "stream":true, "stream_options":{"include_usage":true}. ST_OK or ST_NOMEM. */
int sb_wl_body(const sb_workload_t *w, const sb_spec_t *spec, const char *model, sy_buf_t *out);

/* Appends the text of n tokens (with_bos: counting the BOS the server adds when the tokenizer
 * adds one) made of the workload's candidate ids (non-special tokens whose text is printable,
 * valid UTF-8) drawn from its RNG; *actual gets the re-tokenized count. ST_OK or ST_NOMEM.
 * Exposed for tests. */
int sb_wl_make_text(sb_workload_t *w, uint32_t n, bool with_bos, sy_buf_t *out, uint32_t *actual);
/* Number of prompt tokens the server counts for text[0..len) (BOS included when added). */
uint32_t sb_wl_count_tokens(const sb_workload_t *w, const char *text, size_t len);

#endif
