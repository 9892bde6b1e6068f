/*
 * approx_index.c - the approximate prefix index (contract in approx_index.h).
 *
 * Design:
 *   - One node per (chunk hash, endpoint) pair, in a pool addressed by uint32 index (so the pool
 *     can grow with realloc). A node is on two lists at once:
 *       * its endpoint's LRU (doubly linked: head = most recent, tail = next to evict);
 *       * its hash bucket's chain (singly linked). The chain of a bucket holds every endpoint
 *         that has that hash, so it is the reverse map hash -> endpoint set.
 *   - Buckets are an open array of chain heads, power of two, doubled when the live node count
 *     exceeds it (load factor <= 1).
 *   - Memory is bounded by the sum of the endpoints' capacities: inserting into a full endpoint
 *     first evicts its least recently used node, and freed nodes are reused (free list).
 *   - aidx_record inserts the hashes last-to-first, so a prompt's leading chunks are the most
 *     recently used: under pressure the tail of a long prompt is forgotten before its head,
 *     like an engine's block cache (a prefix with a missing head scores nothing).
 *   - Allocation failure while recording is not an error: the index is a hint, the hash is
 *     simply not remembered.
 * Thread-safety: none (loop thread only).
 */
#include "gateway/approx_index.h"

#include <string.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "common/alloc.h"

#define AIDX_NIL UINT32_MAX
#define AIDX_MIN_BUCKETS 1024u

typedef struct aidx_node {
    uint64_t h;
    uint32_t ep;    /* AIDX_NIL when the node is free */
    uint32_t prev;  /* LRU neighbour towards the head (more recent) */
    uint32_t next;  /* LRU neighbour towards the tail (older) */
    uint32_t chain; /* next node in the bucket chain, or next free node */
} aidx_node_t;

typedef struct aidx_ep {
    uint32_t head; /* most recently used */
    uint32_t tail; /* least recently used */
    size_t count;
    size_t cap;
} aidx_ep_t;

struct aidx {
    aidx_ep_t *eps; /* [n_eps] */
    uint32_t n_eps;
    aidx_node_t *nodes; /* pool [cap_nodes], first used_nodes ever touched */
    uint32_t used_nodes;
    uint32_t cap_nodes;
    uint32_t free_head;
    uint32_t *buckets; /* [bmask + 1] chain heads */
    uint32_t bmask;
    size_t live;
};

static inline uint32_t bucket_of(const aidx_t *x, uint64_t h)
{
    return (uint32_t)(h ^ (h >> 29) ^ (h >> 47)) & x->bmask;
}

aidx_t *aidx_create(uint32_t max_endpoints, size_t default_capacity)
{
    aidx_t *x = sy_calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->eps = sy_calloc(max_endpoints ? max_endpoints : 1, sizeof *x->eps);
    x->buckets = sy_malloc(AIDX_MIN_BUCKETS * sizeof *x->buckets);
    if (x->eps == NULL || x->buckets == NULL)
        goto fail;
    x->n_eps = max_endpoints;
    for (uint32_t e = 0; e < max_endpoints; e++) {
        x->eps[e].head = x->eps[e].tail = AIDX_NIL;
        x->eps[e].cap = default_capacity;
    }
    x->bmask = AIDX_MIN_BUCKETS - 1;
    memset(x->buckets, 0xff, AIDX_MIN_BUCKETS * sizeof *x->buckets);
    x->free_head = AIDX_NIL;
    return x;
fail:
    aidx_destroy(x);
    return NULL;
}

void aidx_destroy(aidx_t *x)
{
    if (x == NULL)
        return;
    sy_free(x->buckets);
    sy_free(x->nodes);
    sy_free(x->eps);
    sy_free(x);
}

static uint32_t find_node(const aidx_t *x, uint64_t h, uint32_t ep)
{
    for (uint32_t i = x->buckets[bucket_of(x, h)]; i != AIDX_NIL; i = x->nodes[i].chain) {
        if (x->nodes[i].h == h && x->nodes[i].ep == ep)
            return i;
    }
    return AIDX_NIL;
}

static void lru_unlink(aidx_t *x, uint32_t i)
{
    aidx_node_t *n = &x->nodes[i];
    aidx_ep_t *e = &x->eps[n->ep];
    if (n->prev != AIDX_NIL)
        x->nodes[n->prev].next = n->next;
    else
        e->head = n->next;
    if (n->next != AIDX_NIL)
        x->nodes[n->next].prev = n->prev;
    else
        e->tail = n->prev;
    n->prev = n->next = AIDX_NIL;
}

static void lru_push_head(aidx_t *x, uint32_t i)
{
    aidx_node_t *n = &x->nodes[i];
    aidx_ep_t *e = &x->eps[n->ep];
    n->prev = AIDX_NIL;
    n->next = e->head;
    if (e->head != AIDX_NIL)
        x->nodes[e->head].prev = i;
    e->head = i;
    if (e->tail == AIDX_NIL)
        e->tail = i;
}

static void chain_unlink(aidx_t *x, uint32_t i)
{
    uint32_t *link = &x->buckets[bucket_of(x, x->nodes[i].h)];
    while (*link != i)
        link = &x->nodes[*link].chain;
    *link = x->nodes[i].chain;
}

static void remove_node(aidx_t *x, uint32_t i)
{
    aidx_node_t *n = &x->nodes[i];
    lru_unlink(x, i);
    chain_unlink(x, i);
    x->eps[n->ep].count--;
    x->live--;
    n->ep = AIDX_NIL;
    n->chain = x->free_head;
    x->free_head = i;
}

/* Doubles the bucket array and rehashes; on failure keeps the old one (longer chains). */
static void grow_buckets(aidx_t *x)
{
    uint32_t nb = (x->bmask + 1) * 2;
    if (nb == 0)
        return;
    uint32_t *b = sy_malloc((size_t)nb * sizeof *b);
    if (b == NULL)
        return;
    memset(b, 0xff, (size_t)nb * sizeof *b);
    sy_free(x->buckets);
    x->buckets = b;
    x->bmask = nb - 1;
    for (uint32_t i = 0; i < x->used_nodes; i++) {
        aidx_node_t *n = &x->nodes[i];
        if (n->ep == AIDX_NIL)
            continue;
        uint32_t k = bucket_of(x, n->h);
        n->chain = b[k];
        b[k] = i;
    }
}

/* Returns a free node index, or AIDX_NIL when the pool cannot grow. */
static uint32_t alloc_node(aidx_t *x)
{
    if (x->free_head != AIDX_NIL) {
        uint32_t i = x->free_head;
        x->free_head = x->nodes[i].chain;
        return i;
    }
    if (x->used_nodes == x->cap_nodes) {
        if (x->cap_nodes >= AIDX_NIL / 2)
            return AIDX_NIL;
        uint32_t nc = x->cap_nodes ? x->cap_nodes * 2 : 1024;
        aidx_node_t *nn = sy_realloc(x->nodes, (size_t)nc * sizeof *nn);
        if (nn == NULL)
            return AIDX_NIL;
        x->nodes = nn;
        x->cap_nodes = nc;
    }
    return x->used_nodes++;
}

static void evict_to(aidx_t *x, uint32_t ep, size_t keep)
{
    aidx_ep_t *e = &x->eps[ep];
    while (e->count > keep)
        remove_node(x, e->tail);
}

void aidx_set_capacity(aidx_t *x, uint32_t ep, size_t capacity)
{
    if (x == NULL || ep >= x->n_eps)
        return;
    x->eps[ep].cap = capacity;
    evict_to(x, ep, capacity);
}

size_t aidx_hash_prompt(const char *model, const char *salt, const char *text, size_t len,
                        size_t chunk_chars, size_t max_chunks, uint64_t *out, size_t cap)
{
    if (chunk_chars == 0 || out == NULL || (text == NULL && len > 0))
        return 0;
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    if (model != NULL)
        XXH64_update(&st, model, strlen(model));
    if (salt != NULL)
        XXH64_update(&st, salt, strlen(salt));
    uint64_t prev = XXH64_digest(&st);

    size_t n_chunks = len / chunk_chars + (len % chunk_chars != 0);
    if (n_chunks > max_chunks)
        n_chunks = max_chunks;
    if (n_chunks > cap)
        n_chunks = cap;
    for (size_t i = 0; i < n_chunks; i++) {
        size_t off = i * chunk_chars;
        size_t clen = len - off < chunk_chars ? len - off : chunk_chars;
        unsigned char le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)(prev >> (8 * b));
        XXH64_reset(&st, 0);
        XXH64_update(&st, text + off, clen);
        XXH64_update(&st, le, sizeof le);
        prev = XXH64_digest(&st);
        out[i] = prev;
    }
    return n_chunks;
}

void aidx_record(aidx_t *x, uint32_t ep, const uint64_t *hashes, size_t n)
{
    if (x == NULL || ep >= x->n_eps || x->eps[ep].cap == 0)
        return;
    aidx_ep_t *e = &x->eps[ep];
    for (size_t k = n; k-- > 0;) {
        uint64_t h = hashes[k];
        uint32_t i = find_node(x, h, ep);
        if (i != AIDX_NIL) {
            lru_unlink(x, i);
            lru_push_head(x, i);
            continue;
        }
        if (e->count >= e->cap)
            evict_to(x, ep, e->cap - 1);
        if (x->live + 1 > (size_t)x->bmask + 1)
            grow_buckets(x);
        i = alloc_node(x);
        if (i == AIDX_NIL)
            return;
        aidx_node_t *nd = &x->nodes[i];
        nd->h = h;
        nd->ep = ep;
        uint32_t b = bucket_of(x, h);
        nd->chain = x->buckets[b];
        x->buckets[b] = i;
        lru_push_head(x, i);
        e->count++;
        x->live++;
    }
}

void aidx_match(aidx_t *x, const uint64_t *hashes, size_t n, uint32_t *out, uint32_t n_endpoints)
{
    memset(out, 0, (size_t)n_endpoints * sizeof *out);
    if (x == NULL)
        return;
    for (size_t k = 0; k < n; k++) {
        uint64_t h = hashes[k];
        int advanced = 0;
        for (uint32_t i = x->buckets[bucket_of(x, h)]; i != AIDX_NIL; i = x->nodes[i].chain) {
            const aidx_node_t *nd = &x->nodes[i];
            if (nd->h == h && nd->ep < n_endpoints && out[nd->ep] == k) {
                out[nd->ep] = (uint32_t)(k + 1);
                advanced = 1;
            }
        }
        if (!advanced)
            return;
    }
}

void aidx_clear_endpoint(aidx_t *x, uint32_t ep)
{
    if (x == NULL || ep >= x->n_eps)
        return;
    evict_to(x, ep, 0);
}

size_t aidx_num_entries(aidx_t *x)
{
    return x != NULL ? x->live : 0;
}
