/*
 * cpu_exec.h - the CPU executor for the llama architecture behind executor.h: a batched forward
 * pass over one scheduler step (several sequences, chunked prefill and decode mixed), weights
 * used in place from the mmapped GGUF, K/V kept in a paged pool indexed by the block manager's
 * block ids, tokens chosen by the vLLM sampler (sampler.h: presence/frequency/repetition
 * penalties, greedy, temperature, top-k, top-p, min-p, per-request seed) with the sampled
 * token's logprob and the top-N logprobs of the raw logits when the sequence asks for them.
 *
 * Does not: tokenize, open or own the GGUF file, compute prompt logprobs, support architectures
 * other than "llama" (nor Llama 3.1 rope_freqs or YaRN scaling), or allocate after cpux_create.
 * Thread-safety: one thread (the engine core) drives an executor; with threads > 1 the matmuls,
 * the attention and (for big steps) the per-token steps run on an internal thread pool during
 * execute, with results independent of the thread count. Call kern_init() once before creating one
 * (without it the scalar reference kernels run).
 */
#ifndef SY_CPU_EXEC_H
#define SY_CPU_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/executor.h"
#include "engine/gguf.h"

typedef struct cpux_config {
    const gguf_t *gguf;        /* borrowed; must stay open for the executor's lifetime */
    uint32_t num_blocks;       /* the block manager's num_blocks (KV pool capacity) */
    uint32_t block_size;       /* the block manager's block_size (token slots per block) */
    uint32_t max_batch_tokens; /* the scheduler's max_num_batched_tokens: tokens per step */
    uint32_t max_seqs;         /* items that may sample in one step (max_num_seqs);
                                  0 = max_batch_tokens */
    int threads;               /* compute threads including the caller; <= 1 = no pool */
    bool kv_f16;               /* store K/V as F16 instead of F32 */
    uint32_t max_logprobs;     /* top logprobs one item may ask for (vLLM's --max-logprobs,
                                  clamped to the vocab); 0 = the sampled token's only. Sizes
                                  the per-step lists: max_seqs x max_logprobs entries */
} cpux_config_t;

/* Model hyper-parameters as read from the file (for callers and tests). */
typedef struct cpux_model_info {
    uint32_t n_layers, dim, n_ff, n_heads, n_kv_heads, head_dim, n_rot;
    int32_t vocab;
    float rope_base, rope_scale, rms_eps;
} cpux_model_info_t;

/* Reads the llama.* metadata and tensors of cfg->gguf, validates every shape, and allocates the
 * KV pool (n_layers x num_blocks x block_size x n_kv_heads x head_dim, for K and for V) and all
 * scratch for max_batch_tokens tokens. Returns an owned executor (free with exec_destroy) or
 * NULL with a message in err (err may be NULL): unsupported architecture (named), missing
 * tensor or key, shape or type mismatch, sizes that overflow, out of memory. */
exec_t *cpux_create(const cpux_config_t *cfg, char *err, size_t errlen);
/* exec_execute on a CPU executor runs the plan as executor.h says (no allocation; sampled[] and
 * lps[] need room for max_seqs entries; lps may be NULL) and returns ST_OK, or, with nothing
 * sampled: ST_INVAL (an item with
 * no tokens, past the sequence's tokens, or a token id outside [0, vocab)), ST_STATE (a block
 * table too short for the item or holding a block id >= num_blocks), ST_LIMIT (more tokens than
 * max_batch_tokens, more sampling items than max_seqs, or a sequence longer than the pool).
 * Sampling follows each sequence's params (penalties over seq->tokens, temperature, top_k,
 * top_p, min_p, seed; without a seed the RNG is seeded from the request id's hash); ST_LIMIT
 * also when more sequences sample at once than max_seqs sampler states exist or a sequence asks
 * for more top logprobs than max_logprobs (below the vocab; more than the vocab means the
 * whole vocab). Logprobs are the log_softmax of the raw logits
 * (before penalties and temperature, vLLM's default "raw_logprobs"); lps[i].top points into the
 * executor (valid until the next execute or destroy). min_tokens / EOS are left to the core. */

/* The model's hyper-parameters. e must be a CPU executor. */
const cpux_model_info_t *cpux_info(const exec_t *e);

/* Debug hook: the vocab-sized logits of the i-th sampled item of the last execute (in plan
 * order), or NULL when i is out of range. Borrowed; valid until the next execute. *n (may be
 * NULL) gets the vocab size. The sampler uses the row as scratch: it still holds the raw logits
 * only for greedy items without penalties. */
const float *cpux_logits(const exec_t *e, uint32_t i, int32_t *n);

#endif
