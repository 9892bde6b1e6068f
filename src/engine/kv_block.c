/*
 * kv_block.c - the paged-KV block manager with vLLM-style prefix caching.
 *
 * Data (all allocated once in kvb_create):
 *   blocks[num_blocks]  refcount, chain hash, cached flag and free-list links per block;
 *   free list           one doubly linked list of every block with refcount 0. Uncached blocks
 *                       are pushed at the head, cached (evictable) ones appended at the tail,
 *                       so popping the head takes uncached blocks first and then the least
 *                       recently freed cached block (which is evicted: BlockRemoved);
 *   table               open addressing (linear probing, backward-shift deletion) from a
 *                       digest to the block id holding it; key hash = low64, full 32-byte
 *                       compare; capacity a power of two >= 2 * num_blocks;
 *   scratch             num_blocks digests to batch the hashes of one event.
 * The only allocation after create is per-sequence block-table growth (geometric).
 *
 * A sequence's table holds its blocks in order. The first _n_hashed of them have known chain
 * hashes; _last_hash is the hash of block _n_hashed - 1. A committed block whose hash another
 * block already holds stays uncached (no duplicate entries); the chain still advances.
 * Does not: store K/V data, or lock.
 * Thread-safety: none (see kv_block.h).
 */
#include "engine/kv_block.h"

#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define KVB_NIL UINT32_MAX
#define KVB_DEFAULT_BLOCK_SIZE 16

typedef struct kvb_block {
    kvh_digest_t hash; /* valid when cached */
    uint32_t ref;      /* sequences holding the block */
    uint32_t prev;     /* free-list links (KVB_NIL at the ends / when not free) */
    uint32_t next;
    bool cached; /* registered in the table */
} kvb_block_t;

struct kvb_mgr {
    uint32_t block_size;
    uint32_t num_blocks;
    bool caching;
    kve_pub_t *events; /* borrowed, may be NULL */
    kvh_digest_t none_hash;

    kvb_block_t *blocks; /* (num_blocks) */
    uint32_t free_head, free_tail, n_free;
    uint32_t *table; /* (table_mask + 1) block ids or KVB_NIL */
    uint32_t table_mask;
    kvh_digest_t *scratch; /* (num_blocks) */

    uint32_t n_cached;
    uint64_t queries, hits, evictions, stored;
};

/* ------------------------------------------------------------ hash table */

static uint32_t ht_home(const kvb_mgr_t *m, const kvh_digest_t *d)
{
    return (uint32_t)kvh_low64(d) & m->table_mask;
}

static uint32_t ht_find(const kvb_mgr_t *m, const kvh_digest_t *d)
{
    for (uint32_t i = ht_home(m, d);; i = (i + 1) & m->table_mask) {
        uint32_t id = m->table[i];
        if (id == KVB_NIL || memcmp(m->blocks[id].hash.b, d->b, sizeof(d->b)) == 0)
            return id;
    }
}

static void ht_insert(kvb_mgr_t *m, uint32_t id)
{
    uint32_t i = ht_home(m, &m->blocks[id].hash);
    while (m->table[i] != KVB_NIL)
        i = (i + 1) & m->table_mask;
    m->table[i] = id;
}

static void ht_remove(kvb_mgr_t *m, uint32_t id)
{
    uint32_t mask = m->table_mask;
    uint32_t i = ht_home(m, &m->blocks[id].hash);
    while (m->table[i] != id) {
        SY_ASSERT(m->table[i] != KVB_NIL);
        i = (i + 1) & mask;
    }
    /* Backward-shift: pull later entries of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, j]. */
    for (uint32_t j = (i + 1) & mask; m->table[j] != KVB_NIL; j = (j + 1) & mask) {
        uint32_t k = ht_home(m, &m->blocks[m->table[j]].hash);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            m->table[i] = m->table[j];
            i = j;
        }
    }
    m->table[i] = KVB_NIL;
}

/* ------------------------------------------------------------- free list */

static void fl_unlink(kvb_mgr_t *m, uint32_t id)
{
    kvb_block_t *b = &m->blocks[id];
    if (b->prev != KVB_NIL)
        m->blocks[b->prev].next = b->next;
    else
        m->free_head = b->next;
    if (b->next != KVB_NIL)
        m->blocks[b->next].prev = b->prev;
    else
        m->free_tail = b->prev;
    b->prev = b->next = KVB_NIL;
    m->n_free--;
}

static void fl_push_head(kvb_mgr_t *m, uint32_t id)
{
    kvb_block_t *b = &m->blocks[id];
    b->prev = KVB_NIL;
    b->next = m->free_head;
    if (m->free_head != KVB_NIL)
        m->blocks[m->free_head].prev = id;
    else
        m->free_tail = id;
    m->free_head = id;
    m->n_free++;
}

static void fl_push_tail(kvb_mgr_t *m, uint32_t id)
{
    kvb_block_t *b = &m->blocks[id];
    b->next = KVB_NIL;
    b->prev = m->free_tail;
    if (m->free_tail != KVB_NIL)
        m->blocks[m->free_tail].next = id;
    else
        m->free_head = id;
    m->free_tail = id;
    m->n_free++;
}

/* ------------------------------------------------------------- lifecycle */

kvb_mgr_t *kvb_create(const kvb_config_t *cfg, kve_pub_t *events)
{
    if (cfg->num_blocks == 0 || cfg->num_blocks >= KVB_NIL / 4) {
        sy_error("kv_block.bad_config", "num_blocks=%u", cfg->num_blocks);
        return NULL;
    }
    kvb_mgr_t *m = sy_calloc(1, sizeof(*m));
    if (!m)
        goto fail;
    m->block_size = cfg->block_size ? cfg->block_size : KVB_DEFAULT_BLOCK_SIZE;
    m->num_blocks = cfg->num_blocks;
    m->caching = cfg->enable_prefix_caching;
    m->events = events;
    kvh_none_hash(cfg->hash_seed, &m->none_hash);

    uint32_t cap = 16;
    while (cap < 2 * m->num_blocks)
        cap *= 2;
    m->table_mask = cap - 1;
    m->blocks = sy_calloc(m->num_blocks, sizeof(kvb_block_t));
    m->table = sy_malloc((size_t)cap * sizeof(uint32_t));
    m->scratch = sy_malloc((size_t)m->num_blocks * sizeof(kvh_digest_t));
    if (!m->blocks || !m->table || !m->scratch)
        goto fail;
    memset(m->table, 0xff, (size_t)cap * sizeof(uint32_t)); /* all KVB_NIL */

    /* Every block starts free and uncached, in id order (block 0 is taken first). */
    m->free_head = m->free_tail = KVB_NIL;
    for (uint32_t i = 0; i < m->num_blocks; i++)
        fl_push_tail(m, i);
    return m;

fail:
    kvb_destroy(m);
    return NULL;
}

void kvb_destroy(kvb_mgr_t *m)
{
    if (!m)
        return;
    sy_free(m->scratch);
    sy_free(m->table);
    sy_free(m->blocks);
    sy_free(m);
}

uint32_t kvb_block_size(const kvb_mgr_t *m)
{
    return m->block_size;
}

const kvh_digest_t *kvb_none_hash(const kvb_mgr_t *m)
{
    return &m->none_hash;
}

/* -------------------------------------------------------------- sequences */

void kvb_seq_init(kvb_seq_t *s, const char *salt, size_t salt_len)
{
    memset(s, 0, sizeof(*s));
    s->_salt = salt;
    s->_salt_len = salt ? salt_len : 0;
}

void kvb_seq_deinit(kvb_seq_t *s)
{
    SY_ASSERT(s->_n_blocks == 0);
    sy_free(s->_blocks);
    s->_blocks = NULL;
    s->_cap = 0;
}

/* Grows the table to hold at least n ids. ST_OK or ST_NOMEM (table unchanged). */
static int seq_ensure_cap(kvb_seq_t *s, uint32_t n)
{
    if (n <= s->_cap)
        return ST_OK;
    uint32_t cap = s->_cap ? s->_cap : 8;
    while (cap < n)
        cap = cap > UINT32_MAX / 2 ? n : cap * 2;
    uint32_t *p = sy_realloc(s->_blocks, (size_t)cap * sizeof(uint32_t));
    if (!p)
        return ST_NOMEM;
    s->_blocks = p;
    s->_cap = cap;
    return ST_OK;
}

const uint32_t *kvb_seq_blocks(const kvb_seq_t *s, uint32_t *n)
{
    *n = s->_n_blocks;
    return s->_blocks;
}

uint32_t kvb_blocks_for(const kvb_mgr_t *m, uint32_t n_tokens)
{
    return (uint32_t)(((uint64_t)n_tokens + m->block_size - 1) / m->block_size);
}

uint32_t kvb_num_allocatable(const kvb_mgr_t *m)
{
    return m->n_free;
}

/* Hash of block k of a sequence whose chain so far ends in parent. */
static void seq_block_hash(const kvb_mgr_t *m, const kvb_seq_t *s, uint32_t k,
                           const kvh_digest_t *parent, const int32_t *tokens, kvh_digest_t *out)
{
    kvh_block(parent, tokens + (size_t)k * m->block_size, m->block_size, k == 0 ? s->_salt : NULL,
              s->_salt_len, out);
}

static uint32_t acquire_prefix(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n,
                               bool count)
{
    SY_ASSERT(s->_n_blocks == 0);
    s->_n_hashed = 0;
    if (!m->caching || n == 0)
        return 0;
    if (count)
        m->queries += n;
    /* The last token is always computed (to sample the next one): vLLM's
     * max_cache_hit_length = n - 1, floored to whole blocks. */
    uint32_t max_blocks = (n - 1) / m->block_size;
    if (max_blocks == 0 || seq_ensure_cap(s, kvb_blocks_for(m, n)) != ST_OK)
        return 0;
    kvh_digest_t parent = m->none_hash;
    uint32_t k = 0;
    for (; k < max_blocks; k++) {
        kvh_digest_t h;
        seq_block_hash(m, s, k, &parent, tokens, &h);
        uint32_t id = ht_find(m, &h);
        if (id == KVB_NIL)
            break;
        kvb_block_t *b = &m->blocks[id];
        if (b->ref++ == 0)
            fl_unlink(m, id); /* an evictable cached block becomes used again */
        s->_blocks[k] = id;
        parent = h;
    }
    s->_n_blocks = k;
    s->_n_hashed = k;
    s->_last_hash = parent;
    if (count)
        m->hits += (uint64_t)k * m->block_size;
    return k * m->block_size;
}

uint32_t kvb_seq_acquire_prefix(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n)
{
    return acquire_prefix(m, s, tokens, n, true);
}

uint32_t kvb_seq_match_prefix(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n)
{
    return acquire_prefix(m, s, tokens, n, false);
}

void kvb_seq_move(kvb_seq_t *dst, kvb_seq_t *src)
{
    *dst = *src;
    dst->_salt = NULL; /* the owner of the salt may go; a moved table is only released */
    dst->_salt_len = 0;
    src->_blocks = NULL;
    src->_n_blocks = src->_cap = src->_n_hashed = 0;
}

int kvb_seq_reserve(kvb_mgr_t *m, kvb_seq_t *s, uint32_t n_tokens)
{
    uint32_t need = kvb_blocks_for(m, n_tokens);
    if (need <= s->_n_blocks)
        return ST_OK;
    uint32_t extra = need - s->_n_blocks;
    if (extra > m->n_free || seq_ensure_cap(s, need) != ST_OK)
        return ST_NOMEM;
    uint32_t n_removed = 0;
    for (uint32_t i = 0; i < extra; i++) {
        uint32_t id = m->free_head;
        fl_unlink(m, id);
        kvb_block_t *b = &m->blocks[id];
        SY_ASSERT(b->ref == 0);
        if (b->cached) {
            ht_remove(m, id);
            b->cached = false;
            m->n_cached--;
            m->evictions++;
            m->scratch[n_removed++] = b->hash;
        }
        b->ref = 1;
        s->_blocks[s->_n_blocks++] = id;
    }
    if (n_removed)
        kve_block_removed(m->events, m->scratch, n_removed);
    return ST_OK;
}

void kvb_seq_commit(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *tokens, uint32_t n_computed)
{
    if (!m->caching)
        return;
    uint32_t full = n_computed / m->block_size;
    SY_ASSERT(full <= s->_n_blocks);
    if (full <= s->_n_hashed)
        return;
    /* Newly stored blocks form runs of consecutive blocks; each run is one BlockStored whose
     * parent is the chain hash before its first block (a duplicate in the middle splits the
     * run, so every event's hashes, parent and token_ids chain correctly). */
    uint32_t run_start = 0, run_len = 0;
    bool run_has_parent = false;
    kvh_digest_t run_parent = {{0}};
    for (uint32_t k = s->_n_hashed; k < full; k++) {
        const kvh_digest_t *parent = k == 0 ? &m->none_hash : &s->_last_hash;
        kvh_digest_t h;
        seq_block_hash(m, s, k, parent, tokens, &h);
        uint32_t id = s->_blocks[k];
        kvb_block_t *b = &m->blocks[id];
        SY_ASSERT(!b->cached);
        if (ht_find(m, &h) == KVB_NIL) {
            b->hash = h;
            b->cached = true;
            ht_insert(m, id);
            m->n_cached++;
            m->stored++;
            if (run_len == 0) {
                run_start = k;
                run_has_parent = k > 0;
                if (run_has_parent)
                    run_parent = s->_last_hash;
            }
            m->scratch[run_len++] = h;
        } else if (run_len) {
            kve_block_stored(m->events, m->scratch, run_len, run_has_parent ? &run_parent : NULL,
                             tokens + (size_t)run_start * m->block_size, m->block_size);
            run_len = 0;
        }
        s->_last_hash = h;
    }
    if (run_len)
        kve_block_stored(m->events, m->scratch, run_len, run_has_parent ? &run_parent : NULL,
                         tokens + (size_t)run_start * m->block_size, m->block_size);
    s->_n_hashed = full;
}

void kvb_seq_release(kvb_mgr_t *m, kvb_seq_t *s)
{
    /* Tail first: a sequence's last blocks become the least recently freed, so they are
     * evicted before its first blocks (which other prompts are likelier to share). */
    for (uint32_t i = s->_n_blocks; i-- > 0;) {
        uint32_t id = s->_blocks[i];
        kvb_block_t *b = &m->blocks[id];
        SY_ASSERT(b->ref > 0);
        if (--b->ref == 0) {
            if (b->cached)
                fl_push_tail(m, id);
            else
                fl_push_head(m, id);
        }
    }
    s->_n_blocks = 0;
    s->_n_hashed = 0;
}

/* ------------------------------------------------------------ cache-wide */

int kvb_reset_prefix_cache(kvb_mgr_t *m)
{
    if (m->n_free != m->num_blocks) {
        sy_warn("kv_block.reset_refused", "used_blocks=%u", m->num_blocks - m->n_free);
        return ST_STATE;
    }
    memset(m->table, 0xff, ((size_t)m->table_mask + 1) * sizeof(uint32_t));
    for (uint32_t i = 0; i < m->num_blocks; i++)
        m->blocks[i].cached = false;
    m->n_cached = 0;
    kve_all_cleared(m->events);
    return ST_OK;
}

void kvb_get_stats(const kvb_mgr_t *m, kvb_stats_t *out)
{
    out->num_blocks = m->num_blocks;
    out->used_blocks = m->num_blocks - m->n_free;
    out->cached_blocks = m->n_cached;
    out->free_blocks = m->n_free;
    out->queries = m->queries;
    out->hits = m->hits;
    out->evictions = m->evictions;
    out->stored = m->stored;
}

double kvb_usage(const kvb_mgr_t *m)
{
    return (double)(m->num_blocks - m->n_free) / (double)m->num_blocks;
}
