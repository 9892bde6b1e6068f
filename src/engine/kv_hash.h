/*
 * kv_hash.h - the prefix-caching block hash, exactly vLLM's `sha256_cbor` algorithm
 * (spec research/vllm-interfaces.md §4), so that any consumer can reproduce it:
 *
 *   NONE_HASH = SHA256(cbor_text(seed))   seed = $PYTHONHASHSEED, or 32 random bytes if unset
 *   h_k       = SHA256(cbor([ bytes(parent_k, 32), [tok, ...], extra_k ]))
 *   parent_0  = NONE_HASH, parent_{k+1} = h_k (full 32-byte digest)
 *   extra_k   = CBOR null, or an array of extra keys; cache_salt goes in block 0 only,
 *               as a one-element array [text(salt)].
 *   event id  = low64(h_k) = last 8 bytes of the digest read big-endian
 *
 * CBOR is canonical: minimal-length heads, definite lengths.
 * Does not: keep state; the block manager chains hashes.
 * Thread-safety: pure, reentrant.
 */
#ifndef SY_KV_HASH_H
#define SY_KV_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct kvh_digest {
    uint8_t b[32];
} kvh_digest_t;

/* NONE_HASH from a seed string (PYTHONHASHSEED semantics); seed NULL = 32 random bytes. */
void kvh_none_hash(const char *seed, kvh_digest_t *out);
/* Hash of one full block. salt may be NULL (no extra keys); salt_len bytes of UTF-8. */
void kvh_block(const kvh_digest_t *parent, const int32_t *tokens, size_t n_tokens, const char *salt,
               size_t salt_len, kvh_digest_t *out);
/* Event-visible 64-bit id. */
uint64_t kvh_low64(const kvh_digest_t *d);
/* Hashes every full block of tokens[0..n) in a chain from none_hash and writes up to cap low64
 * ids to out; returns the number of full blocks (may exceed cap). salt applies to block 0. */
size_t kvh_chain_low64(const kvh_digest_t *none_hash, uint32_t block_size, const int32_t *tokens,
                       size_t n, const char *salt, size_t salt_len, uint64_t *out, size_t cap);
/* Lowercase hex of a digest into out (65 bytes incl. NUL). */
void kvh_hex(const kvh_digest_t *d, char out[65]);

#endif
