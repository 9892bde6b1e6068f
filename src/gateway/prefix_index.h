/*
 * prefix_index.h - the precise prefix index: which endpoints hold which KV blocks, fed by the
 * engines' KV events (BlockStored / BlockRemoved / AllBlocksCleared).
 *
 * Keys are 64-bit block hashes as the engines publish them (low 64 bits of vLLM's sha256_cbor
 * chain, engine/kv_hash.h), so the gateway computes a request's keys with the same code the engine
 * uses (kvh_chain_low64). Memory is bounded: at most max_blocks (hash, endpoint) entries; past that
 * the least recently stored entries are evicted.
 * A lookup walks the request's hashes in order and, for each endpoint, counts how many leading
 * hashes it holds consecutively (llm-d's longest-prefix scoring).
 * Thread-safety: all functions are thread-safe (writers exclusive, lookups shared), so a KV-event
 * subscriber thread can ingest while the loop thread scores.
 */
#ifndef SY_PREFIX_INDEX_H
#define SY_PREFIX_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct pidx pidx_t;

/* Returns an owned index for endpoints 0..max_endpoints-1 holding at most max_blocks entries
 * (all memory allocated here), or NULL. */
pidx_t *pidx_create(size_t max_blocks, uint32_t max_endpoints);
void pidx_destroy(pidx_t *x);

/* Records that endpoint ep stores blocks hashes[0..n). */
void pidx_add(pidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n);
/* Records that endpoint ep dropped blocks hashes[0..n) (unknown hashes are ignored). */
void pidx_remove(pidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n);
/* Drops every entry of endpoint ep (AllBlocksCleared, sequence gap, endpoint removed). */
void pidx_clear_endpoint(pidx_t *x, uint32_t ep);

/* For each endpoint e < n_endpoints: out[e] = k such that e holds hashes[0..k) (k <= n). */
void pidx_match(pidx_t *x, const uint64_t *hashes, size_t n, uint32_t *out, uint32_t n_endpoints);

size_t pidx_num_entries(pidx_t *x);   /* (hash, endpoint) pairs held */
size_t pidx_memory_bytes(pidx_t *x);  /* bytes allocated by the index */
uint64_t pidx_evictions(pidx_t *x);   /* entries evicted for capacity */

#endif
