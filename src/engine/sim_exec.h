/*
 * sim_exec.h - the simulated executor: no model, a timing model and deterministic text.
 *
 * Step time (seconds) = t_step + prefill_tokens * t_prefill_token
 *                       + decode_seqs * t_decode_seq + kv_tokens_read * t_kv_token
 * with the constants taken from a named calibration profile (sim_profile_find). Cached prompt
 * tokens are not in the plan, so they cost nothing. The executor sleeps step_time / speed
 * (speed <= 0 means "as fast as possible": no sleep at all).
 *
 * Output text: English words from a fixed word list, encoded with the engine's tokenizer at
 * creation. The word sequence of a request is a pure function of its seed: sp.seed when given,
 * else a hash of the prompt tokens when temperature == 0 (so a repeated greedy prompt repeats its
 * answer), else the request id hash. When ignore_eos is false the sim ends a request with EOS
 * after a seeded length (at least min_tokens); otherwise it runs to max_tokens.
 * KV transfers (executor.h kv_layout): no storage (seg_bytes 0); model_bytes_per_block =
 * kv_bytes_per_token x block_size of the profile, so the connector can model the transfer time.
 * With kv_storage the sim holds a real pool of that size (per layer and block, K then V of
 * kv_bytes_per_token x block_size / (2 x kv_layers) bytes each) that transfers read and write.
 * Does not: apply presence/frequency/repetition penalties (ignored), or compute logprobs (no
 * distribution exists: every logprobs entry of execute has valid = false, so the engine core
 * fails a request that asked for them; the API refuses such requests before, naming --model).
 * Thread-safety: engine core thread only.
 */
#ifndef SY_SIM_EXEC_H
#define SY_SIM_EXEC_H

#include "engine/executor.h"
#include "engine/tokenizer.h"

typedef struct sim_profile {
    const char *name;
    const char *description;     /* GPU / model pair and the sources of the numbers */
    double t_step;               /* fixed per-step overhead, s */
    double t_prefill_token;      /* s per prefill token */
    double t_decode_seq;         /* s per decoding sequence */
    double t_kv_token;           /* s per context token attended */
    uint32_t kv_layers;          /* layers of the modelled model (KV transfer frames) */
    uint64_t kv_bytes_per_token; /* K+V bytes of one token over all layers (transfer time) */
} sim_profile_t;

/* Built-in profile by name (NULL if unknown). The default is "a100-llama3-8b". */
const sim_profile_t *sim_profile_find(const char *name);
/* Comma-separated names (static). */
const char *sim_profile_names(void);

typedef struct sim_config {
    const sim_profile_t *profile;    /* borrowed, static */
    double speed;                    /* time scale: 1 = real time, 10 = ten times faster, <= 0 = no
                                        sleeping at all */
    const tok_t *tok;                /* borrowed; must outlive the executor */
    double mean_output_tokens;       /* mean of the seeded EOS length when ignore_eos is false,
                                        default 128 */
    uint32_t num_blocks, block_size; /* the block manager's (for the KV layout) */
    bool kv_storage; /* keep real KV bytes (the profile's kv_bytes_per_token per token slot,
                        filled with a fixed pattern, never computed) so that KV transfers move
                        real data: for transfer benchmarks; default off */
} sim_config_t;

/* Returns an owned executor (free with exec_destroy) or NULL. */
exec_t *sim_exec_create(const sim_config_t *cfg);
/* Step time in seconds the model predicts for plan (before the speed scale). */
double sim_exec_step_time(const sim_profile_t *p, const sched_plan_t *plan);

#endif
