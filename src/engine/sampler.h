/*
 * sampler.h - turns one row of model logits into the next token, as vLLM v1's sampler does:
 * min-tokens masking, repetition / frequency / presence penalties, greedy or temperature,
 * min-p, top-k, top-p, a per-request seeded draw, and logprobs / top logprobs of the raw logits.
 *
 * Three objects: smp_params_t (a request's sampling parameters, plain data), smp_state_t (per
 * sequence: the RNG and the token counts the penalties need) and smp_ws_t (per worker thread:
 * vocab-sized scratch, reused by every call). A sample call never allocates.
 * Does not: match stop strings or stop tokens (engine_core.c does, after detokenizing), format
 * logprobs as JSON (api.c), or run the model.
 * Thread-safety: none inside an object. Different sequences may be sampled concurrently on
 * different threads, each thread with its own smp_ws_t. The result for a sequence depends only on
 * its params, its state, its logits and its tokens, never on other sequences (batch invariance).
 */
#ifndef SY_SAMPLER_H
#define SY_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/seq.h"

/* Temperatures below this are greedy (vLLM's _SAMPLING_EPS). */
#define SMP_TEMP_EPS 1e-5f
/* n_logprobs value meaning "no logprobs requested". */
#define SMP_LOGPROBS_NONE (-1)

typedef struct smp_params {
    float temperature;        /* < SMP_TEMP_EPS = greedy: argmax of the penalised logits, ties to
                                 the lowest id, no draw consumed, min_p / top_k / top_p unused */
    int32_t top_k;            /* <= 0 or >= vocab = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1]; 0 = off */
    bool has_seed;            /* seed given: the draws are a pure function of it */
    uint64_t seed;            /* used when has_seed */
    float presence_penalty;   /* subtracted once from tokens present in the output (the API
                                 allows [-2, 2]; any finite value works here) */
    float frequency_penalty;  /* subtracted per occurrence in the output (same range) */
    float repetition_penalty; /* > 0; 1 = off; tokens of prompt or output: positive logits
                                 divided by it, negative ones multiplied */
    int32_t n_logprobs;       /* SMP_LOGPROBS_NONE, 0 (the sampled token only) or the number of
                                 top logprobs (clamped to the vocab; vLLM's -1 "whole vocab" is
                                 passed as the vocab size) */
    uint32_t min_tokens;      /* while fewer outputs exist, ban_ids are masked to -inf */
    const int32_t *ban_ids;   /* borrowed: EOS (unless ignore_eos) and stop_token_ids */
    size_t n_ban_ids;
} smp_params_t;

/* One (token, logprob) pair. */
typedef struct smp_logprob {
    int32_t token;
    float logprob;
} smp_logprob_t;

/* The outcome of one smp_sample call. top/top_cap are set by the caller, the rest by the call. */
typedef struct smp_result {
    int32_t token;      /* the sampled token */
    float logprob;      /* its log_softmax over the raw logits (n_logprobs >= 0), else 0 */
    uint32_t rank;      /* 1-based: tokens whose raw logprob is >= its own (vLLM's rank), else 0 */
    smp_logprob_t *top; /* caller's buffer (borrowed) for the top logprobs; may be NULL if 0 */
    uint32_t top_cap;   /* entries top can hold */
    uint32_t n_top;     /* filled: min(n_logprobs, vocab), by logprob descending, ties by id */
} smp_result_t;

typedef struct smp_state smp_state_t;
typedef struct smp_ws smp_ws_t;

/* Fills *p with vLLM's defaults: temperature 1, top_k off, top_p 1, min_p 0, no seed, no
 * penalties, no logprobs, no min_tokens. */
void smp_params_init(smp_params_t *p);

/* Maps the engine's sequence sampling params onto *p (defaults first, then temperature, top_k,
 * top_p and min_p (outside their ranges, e.g. 0 in a zeroed struct: off), seed, min_tokens, the
 * three penalties (repetition_penalty <= 0: off) and logprobs (sp->logprobs false:
 * SMP_LOGPROBS_NONE, else sp->n_logprobs top entries)). ban_ids stay empty: the caller sets
 * them afterwards if it wants the sampler to enforce min_tokens. */
void smp_params_from_seq(const seq_sampling_t *sp, smp_params_t *p);

/* ST_OK if *p is within the ranges documented on smp_params_t, else ST_INVAL. Pure. */
int smp_params_check(const smp_params_t *p);

/* True if *p uses any penalty (then smp_sample reads the prompt and output tokens). */
bool smp_params_has_penalties(const smp_params_t *p);

/* 64 bits from the OS entropy source (getrandom), or from the clock if that fails; for the
 * engine's per-request fallback seeds. Thread-safe. */
uint64_t smp_entropy_u64(void);

/* Creates the state of one sequence. The RNG is seeded from p->seed when p->has_seed, else from
 * fallback_seed (draw it from an engine-level random source such as smp_entropy_u64). When p has
 * penalties, room is reserved for max_distinct distinct tokens (n_prompt + max_tokens is always
 * enough); otherwise max_distinct is unused. p is read, not kept. Returns owned state (free with
 * smp_state_destroy) or NULL on allocation failure or invalid params. */
smp_state_t *smp_state_create(const smp_params_t *p, uint32_t max_distinct, uint64_t fallback_seed);
/* Accepts NULL. */
void smp_state_destroy(smp_state_t *s);
/* Makes s the state of a new sequence without allocating: reseeds the RNG as smp_state_create
 * would and forgets every counted token. ST_OK, ST_INVAL (bad params), or ST_STATE (p has
 * penalties but s was created without them). For executors that keep a pool of states. */
int smp_state_reset(smp_state_t *s, const smp_params_t *p, uint64_t fallback_seed);

/* Creates a workspace for vocabularies of up to max_vocab entries (17 bytes per entry).
 * Returns owned (free with smp_ws_destroy) or NULL. */
smp_ws_t *smp_ws_create(int32_t max_vocab);
/* Accepts NULL. */
void smp_ws_destroy(smp_ws_t *ws);

/* Samples the next token of one sequence.
 *   ws        borrowed workspace (max_vocab >= vocab); its contents are scratch.
 *   p         the sequence's params; must be the same (penalties on/off) as at smp_state_create.
 *   st        the sequence's state: the RNG advances by one draw per non-greedy call.
 *   logits    borrowed, vocab entries; used as scratch (contents unspecified afterwards).
 *   prompt, out_tokens  borrowed; read only when p has penalties (else they may be NULL).
 *             out_tokens must only grow between calls on one state (the new tail is counted);
 *             a shorter out_tokens or a different n_prompt makes the state recount from scratch.
 *   res       result; res->top / res->top_cap must be set when p->n_logprobs > 0.
 * Returns ST_OK with *res filled; ST_INVAL for NaN or +inf logits, no finite logit left, a token
 * id outside [0, vocab), bad params, or vocab < 1 / above the workspace; ST_LIMIT if res->top is
 * too small or more than max_distinct distinct tokens were seen; ST_STATE if penalties are on
 * but the state was created without them. On error *res is untouched except res->token = -1.
 * Cost per call: O(V) expected (a few linear passes; heap thresholds and selection, never a
 * sort of the vocab), plus O(N log N) for N top logprobs and O(new + distinct tokens) for the
 * penalties. */
int smp_sample(smp_ws_t *ws, const smp_params_t *p, smp_state_t *st, float *logits, int32_t vocab,
               const int32_t *prompt, size_t n_prompt, const int32_t *out_tokens, size_t n_out,
               smp_result_t *res);

#endif
