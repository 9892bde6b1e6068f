/*
 * kv_block.h - the block manager: the one module that owns every KV block.
 *
 * The KV cache is num_blocks fixed-size blocks of block_size token slots. A sequence holds a
 * block table (kvb_seq_t) of block ids. Full blocks whose tokens are computed get a chained hash
 * (kv_hash.h) and enter the prefix cache (hash -> block), published as BlockStored events.
 * Blocks are refcounted: a cached block can be shared by several sequences (prefix reuse).
 * A block whose refcount drops to 0 keeps its hash and goes to the tail of an LRU free list:
 * it is reused (and only then evicted from the prefix cache, with a BlockRemoved event) when a
 * new allocation needs it, least recently freed first; uncached blocks are reused first.
 *
 * Usage (vLLM's kv_cache_usage_perc) = blocks with refcount > 0 / num_blocks.
 * Prefix-cache statistics count tokens: queries += prompt tokens looked up, hits += cached ones.
 * Does not: store K/V data (executors index their own storage by block id).
 * Thread-safety: none; one thread (the engine core) owns the manager.
 */
#ifndef SY_KV_BLOCK_H
#define SY_KV_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kv_events.h"
#include "engine/kv_hash.h"

typedef struct kvb_mgr kvb_mgr_t;

typedef struct kvb_config {
    uint32_t block_size;        /* tokens per block, default 16 */
    uint32_t num_blocks;        /* KV capacity in blocks */
    bool enable_prefix_caching; /* default true */
    const char *hash_seed;      /* PYTHONHASHSEED-like seed for NONE_HASH; NULL = random */
} kvb_config_t;

/* Per-sequence block table. Caller-owned storage; fields are private to kv_block.c. */
typedef struct kvb_seq {
    uint32_t *_blocks;
    uint32_t _n_blocks;
    uint32_t _cap;
    uint32_t _n_hashed; /* leading full blocks already hashed and registered */
    kvh_digest_t _last_hash;
    const char *_salt; /* borrowed cache_salt (block 0 extra key) or NULL */
    size_t _salt_len;
} kvb_seq_t;

typedef struct kvb_stats {
    uint32_t num_blocks;
    uint32_t used_blocks;   /* refcount > 0 */
    uint32_t cached_blocks; /* in the prefix cache (used or evictable) */
    uint32_t free_blocks;   /* refcount == 0 (includes evictable cached blocks) */
    uint64_t queries;       /* prompt tokens looked up */
    uint64_t hits;          /* prompt tokens found cached */
    uint64_t evictions;     /* cached blocks evicted for reuse */
    uint64_t stored;        /* blocks entered into the prefix cache */
} kvb_stats_t;

/* Returns owned manager (free with kvb_destroy) or NULL. events is borrowed and may be NULL;
 * it must outlive the manager. All block storage is allocated here, once. */
kvb_mgr_t *kvb_create(const kvb_config_t *cfg, kve_pub_t *events);
void kvb_destroy(kvb_mgr_t *m);

uint32_t kvb_block_size(const kvb_mgr_t *m);
const kvh_digest_t *kvb_none_hash(const kvb_mgr_t *m);

/* salt (borrowed, may be NULL) must outlive the sequence's use of the manager. */
void kvb_seq_init(kvb_seq_t *s, const char *salt, size_t salt_len);
/* Frees the table storage. The sequence must hold no blocks (kvb_seq_release first). */
void kvb_seq_deinit(kvb_seq_t *s);

/* For an empty sequence: finds the longest cached full-block prefix of tokens[0..n), leaving at
 * least the last token uncached (it must be computed to sample the next one), takes a reference
 * to each matched block and puts it in the table. Counts n query tokens and the matched hit
 * tokens. Returns the number of cached tokens (a multiple of block_size). When prefix caching is
 * disabled returns 0. Does not fail (no allocation beyond the table; ST_NOMEM on the table is
 * reported as 0 cached). */
uint32_t kvb_seq_acquire_prefix(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n);

/* kvb_seq_acquire_prefix without counting prefix-cache queries and hits (a lookup that is not a
 * request's admission, e.g. the KV-transfer consumer checking what it need not pull). */
uint32_t kvb_seq_match_prefix(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n);

/* Moves src's blocks (and table storage) to dst, which must be uninitialised or deinitialised;
 * src is left empty and reusable. dst keeps no salt: it may only be released (kvb_seq_release)
 * and deinitialised (a KV-transfer lease). */
void kvb_seq_move(kvb_seq_t *dst, kvb_seq_t *src);

/* Number of blocks a sequence needs in total to hold n_tokens. */
uint32_t kvb_blocks_for(const kvb_mgr_t *m, uint32_t n_tokens);
/* Blocks that could be allocated now (free + evictable). */
uint32_t kvb_num_allocatable(const kvb_mgr_t *m);

/* Grows the table so the sequence has slots for n_tokens tokens. All-or-nothing: returns ST_OK,
 * or ST_NOMEM with nothing changed when not enough blocks can be freed. */
int kvb_seq_reserve(kvb_mgr_t *m, kvb_seq_t *s, uint32_t n_tokens);

/* Declares tokens[0..n_computed) written. Every newly full block is hashed (chained) and, unless
 * that hash is already cached, entered into the prefix cache; one BlockStored event is queued for
 * the run of newly stored blocks. */
void kvb_seq_commit(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n_computed);

/* Drops every block reference of the sequence (tail first, so a sequence's last blocks are
 * evicted before its first). The table becomes empty (reusable). */
void kvb_seq_release(kvb_mgr_t *m, kvb_seq_t *s);

/* Block table for executors: returns the ids and sets *n. */
const uint32_t *kvb_seq_blocks(const kvb_seq_t *s, uint32_t *n);

/* Evicts every cached block that no sequence holds and queues AllBlocksCleared.
 * Returns ST_OK, or ST_STATE if some block is still in use (nothing changed), like vLLM's
 * reset_prefix_cache. */
int kvb_reset_prefix_cache(kvb_mgr_t *m);

void kvb_get_stats(const kvb_mgr_t *m, kvb_stats_t *out);
/* used_blocks / num_blocks in [0,1]. */
double kvb_usage(const kvb_mgr_t *m);

#endif
