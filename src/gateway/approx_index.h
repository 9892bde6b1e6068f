/*
 * approx_index.h - the approximate prefix index (llm-d's approx-prefix-cache-producer, spec
 * research/llm-d.md §3.1): with no KV events or tokenizer, the gateway remembers what it routed
 * where. The prompt text is cut into fixed chunks of chunk_chars bytes (default 64 = 16 tokens x 4
 * chars); chunk i's hash = xxh64(chunk bytes || previous hash as 8 bytes little-endian), seeded by
 * xxh64(model name [+ cache_salt]); a trailing partial chunk is hashed too; at most max_chunks.
 * Each endpoint keeps an LRU of chunk hashes sized to its KV capacity (in chunks).
 * Thread-safety: loop thread only.
 */
#ifndef SY_APPROX_INDEX_H
#define SY_APPROX_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct aidx aidx_t;

/* Returns an owned index or NULL. default_capacity: LRU entries per endpoint until
 * aidx_set_capacity says otherwise (llm-d: 31,250). */
aidx_t *aidx_create(uint32_t max_endpoints, size_t default_capacity);
void aidx_destroy(aidx_t *x);
/* Sets endpoint ep's LRU capacity (entries); shrinking evicts the oldest. */
void aidx_set_capacity(aidx_t *x, uint32_t ep, size_t capacity);

/* Hashes text into chained chunk hashes (see above); writes up to cap hashes, returns the count
 * written (<= max_chunks). salt may be NULL. */
size_t aidx_hash_prompt(const char *model, const char *salt, const char *text, size_t len,
                        size_t chunk_chars, size_t max_chunks, uint64_t *out, size_t cap);
/* Remembers that hashes[0..n) were routed to ep (most recently used). */
void aidx_record(aidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n);
/* For each endpoint e < n_endpoints: out[e] = consecutive leading hashes e holds. */
void aidx_match(aidx_t *x, const uint64_t *hashes, size_t n, uint32_t *out, uint32_t n_endpoints);
void aidx_clear_endpoint(aidx_t *x, uint32_t ep);
size_t aidx_num_entries(aidx_t *x);

#endif
