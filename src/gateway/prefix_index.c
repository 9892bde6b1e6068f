/*
 * prefix_index.c - the precise prefix index (contract in prefix_index.h).
 *
 * Layout (all arrays allocated once in pidx_create; nothing is allocated afterwards):
 *
 *   table  open addressing, linear probing, backward-shift deletion (no tombstones), capacity a
 *          power of two >= 4/3 * max_blocks. A slot holds the block hash and kidx+1 (0 = empty).
 *          The probe start is a seeded splitmix64 of the hash, so crafted hashes cannot easily
 *          pile up in one run.
 *   keys   one record per distinct hash (at most max_blocks): the endpoint bitmap (W = ceil(
 *          max_endpoints / 64) words) and the head of the key's node chain. Free keys are linked
 *          through `head`.
 *   nodes  one per (hash, endpoint) entry (max_blocks of them), linked three ways: the key's chain
 *          (singly, knext), the global LRU (doubly; head = least recently stored) and the
 *          endpoint's list (doubly, so clearing an endpoint costs its own entries only).
 *
 * pidx_add of a held (hash, ep) moves it to the LRU tail; a new entry when all nodes are in use
 * evicts the LRU head first. pidx_match walks the request's hashes in chunks: it computes the
 * probe start of every hash in the chunk and prefetches it, then resolves each slot and
 * prefetches the key's bitmap, then ANDs the bitmaps into the set of endpoints still matching, so
 * the cache misses of one chunk overlap.
 *
 * Memory ~= 16 B x table slots + (8W + 4) B x max_blocks + 32 B x max_blocks; for 1M blocks and
 * 64 endpoints: 32 + 12 + 32 = 76 MB.
 * Thread-safety: a pthread rwlock; add/remove/clear take it exclusive, match and stats shared.
 */
#include "gateway/prefix_index.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"

#define PIDX_NIL UINT32_MAX
#define PIDX_MAX_WORDS 64 /* at most 4096 endpoints */
#define PIDX_MAX_BLOCKS ((size_t)1 << 30)
#define PIDX_CHUNK 32 /* hashes per prefetch batch in pidx_match */

typedef struct pidx_slot {
    uint64_t hash;
    uint32_t kidx1; /* key index + 1; 0 = empty slot */
    uint32_t _pad;
} pidx_slot_t;

typedef struct pidx_node {
    uint64_t hash;
    uint32_t ep;
    uint32_t knext;        /* next node of the same key */
    uint32_t lprev, lnext; /* global LRU */
    uint32_t eprev, enext; /* endpoint list */
} pidx_node_t;

struct pidx {
    pthread_rwlock_t lock;
    uint32_t max_eps;
    uint32_t words; /* W: bitmap words per key */
    size_t max_blocks;

    pidx_slot_t *slots;
    uint64_t mask; /* table capacity - 1 */
    uint64_t seed;

    uint64_t *kbits; /* max_blocks x W */
    uint32_t *khead; /* first node of the key, or next free key when the key is free */
    uint32_t kfree;  /* freed keys, linked through khead; PIDX_NIL = none */
    uint32_t kfresh; /* keys [kfresh, max_blocks) were never used (no free-list set-up at create,
                      * so the arrays' pages are touched only as the index fills) */

    pidx_node_t *nodes;
    uint32_t nfree;              /* freed nodes, linked through lnext; PIDX_NIL = none */
    uint32_t nfresh;             /* nodes [nfresh, max_blocks) were never used */
    uint32_t lru_head, lru_tail; /* head = least recently stored */
    uint32_t *ep_head;           /* max_eps: first node of each endpoint */

    size_t n_entries;
    size_t n_keys;
    uint64_t evictions;
    size_t mem;
};

/* ------------------------------------------------------------------ helpers */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t home_of(const pidx_t *x, uint64_t hash)
{
    return mix64(hash ^ x->seed) & x->mask;
}

/* Returns the slot index holding hash, or -1. */
static int64_t slot_find(const pidx_t *x, uint64_t hash)
{
    uint64_t i = home_of(x, hash);
    for (;;) {
        const pidx_slot_t *s = &x->slots[i];
        if (s->kidx1 == 0)
            return -1;
        if (s->hash == hash)
            return (int64_t)i;
        i = (i + 1) & x->mask;
    }
}

/* Backward-shift deletion of slot i (linear probing). */
static void slot_delete(pidx_t *x, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & x->mask;
        pidx_slot_t *s = &x->slots[j];
        if (s->kidx1 == 0)
            break;
        uint64_t k = home_of(x, s->hash);
        /* slot j may move to i unless its home k lies cyclically in (i, j] */
        bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            x->slots[i] = *s;
            i = j;
        }
    }
    x->slots[i].kidx1 = 0;
    x->slots[i].hash = 0;
}

static uint64_t *key_bits(const pidx_t *x, uint32_t kidx)
{
    return &x->kbits[(size_t)kidx * x->words];
}

static bool bits_empty(const uint64_t *b, uint32_t w)
{
    for (uint32_t i = 0; i < w; i++)
        if (b[i])
            return false;
    return true;
}

static void lru_unlink(pidx_t *x, uint32_t n)
{
    pidx_node_t *nd = &x->nodes[n];
    if (nd->lprev != PIDX_NIL)
        x->nodes[nd->lprev].lnext = nd->lnext;
    else
        x->lru_head = nd->lnext;
    if (nd->lnext != PIDX_NIL)
        x->nodes[nd->lnext].lprev = nd->lprev;
    else
        x->lru_tail = nd->lprev;
    nd->lprev = nd->lnext = PIDX_NIL;
}

static void lru_push_tail(pidx_t *x, uint32_t n)
{
    pidx_node_t *nd = &x->nodes[n];
    nd->lnext = PIDX_NIL;
    nd->lprev = x->lru_tail;
    if (x->lru_tail != PIDX_NIL)
        x->nodes[x->lru_tail].lnext = n;
    else
        x->lru_head = n;
    x->lru_tail = n;
}

static void ep_unlink(pidx_t *x, uint32_t n)
{
    pidx_node_t *nd = &x->nodes[n];
    if (nd->eprev != PIDX_NIL)
        x->nodes[nd->eprev].enext = nd->enext;
    else
        x->ep_head[nd->ep] = nd->enext;
    if (nd->enext != PIDX_NIL)
        x->nodes[nd->enext].eprev = nd->eprev;
}

static void ep_push(pidx_t *x, uint32_t n)
{
    pidx_node_t *nd = &x->nodes[n];
    nd->eprev = PIDX_NIL;
    nd->enext = x->ep_head[nd->ep];
    if (nd->enext != PIDX_NIL)
        x->nodes[nd->enext].eprev = n;
    x->ep_head[nd->ep] = n;
}

/* Removes node n (an entry in use) from every structure and frees it. slot is the table slot of
 * its hash if the caller knows it, else -1. */
static void entry_drop(pidx_t *x, uint32_t n, int64_t slot)
{
    pidx_node_t *nd = &x->nodes[n];
    if (slot < 0)
        slot = slot_find(x, nd->hash);
    SY_ASSERT(slot >= 0);
    uint32_t kidx = x->slots[slot].kidx1 - 1;

    /* unlink from the key chain */
    uint32_t *pp = &x->khead[kidx];
    while (*pp != n) {
        SY_ASSERT(*pp != PIDX_NIL);
        pp = &x->nodes[*pp].knext;
    }
    *pp = nd->knext;
    uint64_t *bits = key_bits(x, kidx);
    bits[nd->ep >> 6] &= ~((uint64_t)1 << (nd->ep & 63));

    if (x->khead[kidx] == PIDX_NIL) {
        SY_ASSERT(bits_empty(bits, x->words));
        slot_delete(x, (uint64_t)slot);
        x->khead[kidx] = x->kfree;
        x->kfree = kidx;
        x->n_keys--;
    }
    lru_unlink(x, n);
    ep_unlink(x, n);
    nd->lnext = x->nfree;
    x->nfree = n;
    x->n_entries--;
}

/* Finds the node of (key kidx, ep), or PIDX_NIL. */
static uint32_t chain_find(const pidx_t *x, uint32_t kidx, uint32_t ep)
{
    for (uint32_t n = x->khead[kidx]; n != PIDX_NIL; n = x->nodes[n].knext)
        if (x->nodes[n].ep == ep)
            return n;
    return PIDX_NIL;
}

static void add_one(pidx_t *x, uint32_t ep, uint64_t hash)
{
    int64_t slot = slot_find(x, hash);
    if (slot >= 0) {
        uint32_t kidx = x->slots[slot].kidx1 - 1;
        const uint64_t *bits = key_bits(x, kidx);
        if (bits[ep >> 6] & ((uint64_t)1 << (ep & 63))) {
            uint32_t n = chain_find(x, kidx, ep);
            SY_ASSERT(n != PIDX_NIL);
            lru_unlink(x, n);
            lru_push_tail(x, n);
            return;
        }
    }
    if (x->nfree == PIDX_NIL && x->nfresh >= x->max_blocks) {
        /* evict the least recently stored entry; it may be this hash's key (then re-find) */
        uint32_t victim = x->lru_head;
        SY_ASSERT(victim != PIDX_NIL);
        bool same_key = x->nodes[victim].hash == hash;
        entry_drop(x, victim, same_key ? slot : -1);
        x->evictions++;
        if (slot >= 0)
            slot = slot_find(x, hash); /* backward shift may have moved it */
    }
    uint32_t kidx;
    if (slot < 0) {
        /* new key: a free key record exists because keys <= entries < max_blocks here */
        if (x->kfree != PIDX_NIL) {
            kidx = x->kfree;
            x->kfree = x->khead[kidx];
        } else {
            SY_ASSERT(x->kfresh < x->max_blocks);
            kidx = x->kfresh++;
        }
        x->khead[kidx] = PIDX_NIL;
        memset(key_bits(x, kidx), 0, x->words * sizeof(uint64_t));
        uint64_t i = home_of(x, hash);
        while (x->slots[i].kidx1 != 0)
            i = (i + 1) & x->mask;
        x->slots[i].hash = hash;
        x->slots[i].kidx1 = kidx + 1;
        x->n_keys++;
    } else {
        kidx = x->slots[slot].kidx1 - 1;
    }
    uint32_t n;
    if (x->nfree != PIDX_NIL) {
        n = x->nfree;
        x->nfree = x->nodes[n].lnext;
    } else {
        n = x->nfresh++;
    }
    pidx_node_t *nd = &x->nodes[n];
    nd->hash = hash;
    nd->ep = ep;
    nd->knext = x->khead[kidx];
    x->khead[kidx] = n;
    key_bits(x, kidx)[ep >> 6] |= (uint64_t)1 << (ep & 63);
    lru_push_tail(x, n);
    ep_push(x, n);
    x->n_entries++;
}

/* ---------------------------------------------------------------- lifecycle */

static void *alloc_counted(pidx_t *x, size_t n, size_t size)
{
    void *p = sy_calloc(n, size);
    if (p)
        x->mem += n * size;
    return p;
}

pidx_t *pidx_create(size_t max_blocks, uint32_t max_endpoints)
{
    if (max_blocks == 0 || max_blocks > PIDX_MAX_BLOCKS || max_endpoints == 0 ||
        max_endpoints > PIDX_MAX_WORDS * 64)
        return NULL;
    pidx_t *x = sy_calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->mem = sizeof(*x);
    x->max_eps = max_endpoints;
    x->words = (max_endpoints + 63) / 64;
    x->max_blocks = max_blocks;
    uint64_t cap = 16;
    while (cap < max_blocks + max_blocks / 3 + 1)
        cap <<= 1;
    x->mask = cap - 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x->seed = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)x);

    if (!(x->slots = alloc_counted(x, cap, sizeof(pidx_slot_t))) ||
        !(x->kbits = alloc_counted(x, max_blocks * x->words, sizeof(uint64_t))) ||
        !(x->khead = alloc_counted(x, max_blocks, sizeof(uint32_t))) ||
        !(x->nodes = alloc_counted(x, max_blocks, sizeof(pidx_node_t))) ||
        !(x->ep_head = alloc_counted(x, max_endpoints, sizeof(uint32_t))))
        goto fail;
    if (pthread_rwlock_init(&x->lock, NULL) != 0)
        goto fail;
    x->kfree = x->nfree = PIDX_NIL; /* keys and nodes come from kfresh / nfresh first */
    x->lru_head = x->lru_tail = PIDX_NIL;
    for (uint32_t e = 0; e < max_endpoints; e++)
        x->ep_head[e] = PIDX_NIL;
    return x;

fail:
    sy_free(x->ep_head);
    sy_free(x->nodes);
    sy_free(x->khead);
    sy_free(x->kbits);
    sy_free(x->slots);
    sy_free(x);
    return NULL;
}

void pidx_destroy(pidx_t *x)
{
    if (!x)
        return;
    pthread_rwlock_destroy(&x->lock);
    sy_free(x->ep_head);
    sy_free(x->nodes);
    sy_free(x->khead);
    sy_free(x->kbits);
    sy_free(x->slots);
    sy_free(x);
}

/* ------------------------------------------------------------------ writers */

void pidx_add(pidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n)
{
    if (!x || ep >= x->max_eps || n == 0)
        return;
    pthread_rwlock_wrlock(&x->lock);
    for (size_t i = 0; i < n; i++)
        add_one(x, ep, hashes[i]);
    pthread_rwlock_unlock(&x->lock);
}

void pidx_remove(pidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n)
{
    if (!x || ep >= x->max_eps || n == 0)
        return;
    pthread_rwlock_wrlock(&x->lock);
    for (size_t i = 0; i < n; i++) {
        int64_t slot = slot_find(x, hashes[i]);
        if (slot < 0)
            continue;
        uint32_t kidx = x->slots[slot].kidx1 - 1;
        if (!(key_bits(x, kidx)[ep >> 6] & ((uint64_t)1 << (ep & 63))))
            continue;
        uint32_t node = chain_find(x, kidx, ep);
        SY_ASSERT(node != PIDX_NIL);
        entry_drop(x, node, slot);
    }
    pthread_rwlock_unlock(&x->lock);
}

void pidx_clear_endpoint(pidx_t *x, uint32_t ep)
{
    if (!x || ep >= x->max_eps)
        return;
    pthread_rwlock_wrlock(&x->lock);
    while (x->ep_head[ep] != PIDX_NIL)
        entry_drop(x, x->ep_head[ep], -1);
    pthread_rwlock_unlock(&x->lock);
}

/* ------------------------------------------------------------------ readers */

/* Records out[e] = k for every endpoint set in `gone`. */
static void mark_gone(const uint64_t *gone, uint32_t words, uint32_t k, uint32_t *out)
{
    for (uint32_t w = 0; w < words; w++) {
        uint64_t b = gone[w];
        while (b) {
            uint32_t e = w * 64 + (uint32_t)__builtin_ctzll(b);
            out[e] = k;
            b &= b - 1;
        }
    }
}

void pidx_match(pidx_t *x, const uint64_t *hashes, size_t n, uint32_t *out, uint32_t n_endpoints)
{
    if (n_endpoints == 0)
        return;
    memset(out, 0, n_endpoints * sizeof(uint32_t));
    if (!x || n == 0)
        return;
    uint32_t lim = n_endpoints < x->max_eps ? n_endpoints : x->max_eps;
    uint32_t words = (lim + 63) / 64;
    uint64_t alive[PIDX_MAX_WORDS], gone[PIDX_MAX_WORDS];
    for (uint32_t w = 0; w < words; w++)
        alive[w] = ~(uint64_t)0;
    if (lim & 63)
        alive[words - 1] = ((uint64_t)1 << (lim & 63)) - 1;
    if (n > UINT32_MAX)
        n = UINT32_MAX;

    pthread_rwlock_rdlock(&x->lock);
    bool any = true;
    size_t i = 0;
    while (i < n && any) {
        size_t m = n - i < PIDX_CHUNK ? n - i : PIDX_CHUNK;
        uint64_t home[PIDX_CHUNK];
        uint32_t kidx1[PIDX_CHUNK];
        for (size_t c = 0; c < m; c++) {
            home[c] = home_of(x, hashes[i + c]);
            __builtin_prefetch(&x->slots[home[c]]);
        }
        for (size_t c = 0; c < m; c++) {
            uint64_t h = hashes[i + c], s = home[c];
            kidx1[c] = 0;
            while (x->slots[s].kidx1 != 0) {
                if (x->slots[s].hash == h) {
                    kidx1[c] = x->slots[s].kidx1;
                    __builtin_prefetch(key_bits(x, kidx1[c] - 1));
                    break;
                }
                s = (s + 1) & x->mask;
            }
        }
        for (size_t c = 0; c < m && any; c++) {
            const uint64_t *bits = kidx1[c] ? key_bits(x, kidx1[c] - 1) : NULL;
            any = false;
            bool dropped = false;
            for (uint32_t w = 0; w < words; w++) {
                uint64_t keep = bits ? alive[w] & bits[w] : 0;
                gone[w] = alive[w] & ~keep;
                dropped |= gone[w] != 0;
                alive[w] = keep;
                any |= keep != 0;
            }
            if (dropped)
                mark_gone(gone, words, (uint32_t)(i + c), out);
        }
        i += m;
    }
    pthread_rwlock_unlock(&x->lock);
    if (any)
        mark_gone(alive, words, (uint32_t)n, out);
}

size_t pidx_num_entries(pidx_t *x)
{
    if (!x)
        return 0;
    pthread_rwlock_rdlock(&x->lock);
    size_t v = x->n_entries;
    pthread_rwlock_unlock(&x->lock);
    return v;
}

size_t pidx_memory_bytes(pidx_t *x)
{
    return x ? x->mem : 0;
}

uint64_t pidx_evictions(pidx_t *x)
{
    if (!x)
        return 0;
    pthread_rwlock_rdlock(&x->lock);
    uint64_t v = x->evictions;
    pthread_rwlock_unlock(&x->lock);
    return v;
}
