/*
 * arena.c - chunked bump allocator with cleanup callbacks.
 *
 * Chunks form a singly linked list; the head is the chunk being bumped. An oversized request
 * (> chunk_size / 4) gets a dedicated chunk linked behind the head, so the head keeps its free
 * space. Cleanup records are themselves allocated from the arena and kept as a LIFO list, which
 * gives reverse-order execution for free.
 * Thread-safety: none (see arena.h).
 */
#include "common/arena.h"

#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/status.h"

#define ARENA_ALIGN 16u
#define ARENA_DEFAULT_CHUNK 4096u
#define ARENA_MIN_CHUNK 256u

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    size_t used;
    size_t _pad; /* keeps the header a multiple of 16 so data stays aligned */
} arena_chunk_t;

_Static_assert(sizeof(arena_chunk_t) % ARENA_ALIGN == 0, "chunk header must keep alignment");

typedef struct arena_cleanup {
    struct arena_cleanup *next;
    sy_arena_cleanup_fn fn;
    void *arg;
} arena_cleanup_t;

struct sy_arena {
    arena_chunk_t *head;
    arena_cleanup_t *cleanups;
    size_t chunk_size;
    size_t used;
    size_t reserved;
};

static unsigned char *chunk_data(arena_chunk_t *c)
{
    return (unsigned char *)(c + 1);
}

sy_arena_t *sy_arena_create(size_t chunk_size)
{
    sy_arena_t *a = sy_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    if (chunk_size == 0)
        chunk_size = ARENA_DEFAULT_CHUNK;
    if (chunk_size < ARENA_MIN_CHUNK)
        chunk_size = ARENA_MIN_CHUNK;
    a->chunk_size = (chunk_size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    return a;
}

static arena_chunk_t *chunk_new(sy_arena_t *a, size_t cap)
{
    if (cap > SIZE_MAX - sizeof(arena_chunk_t))
        return NULL;
    arena_chunk_t *c = sy_malloc(sizeof *c + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    a->reserved += cap;
    return c;
}

static void run_cleanups(sy_arena_t *a)
{
    /* a cleanup may not allocate from the arena being torn down; pop before calling anyway */
    while (a->cleanups) {
        arena_cleanup_t *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->arg);
    }
}

void sy_arena_destroy(sy_arena_t *a)
{
    if (!a)
        return;
    run_cleanups(a);
    arena_chunk_t *c = a->head;
    while (c) {
        arena_chunk_t *next = c->next;
        sy_free(c);
        c = next;
    }
    sy_free(a);
}

void sy_arena_reset(sy_arena_t *a)
{
    run_cleanups(a);
    arena_chunk_t *keep = NULL;
    arena_chunk_t *c = a->head;
    while (c) {
        arena_chunk_t *next = c->next;
        if (!keep && c->cap == a->chunk_size) {
            keep = c;
        } else {
            a->reserved -= c->cap;
            sy_free(c);
        }
        c = next;
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->used = 0;
}

void *sy_arena_alloc(sy_arena_t *a, size_t size)
{
    if (size > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN; /* size 0 still gets a unique pointer */
    arena_chunk_t *h = a->head;
    if (h && h->cap - h->used >= need) {
        void *p = chunk_data(h) + h->used;
        h->used += need;
        a->used += need;
        return p;
    }
    if (need > a->chunk_size / 4) {
        arena_chunk_t *big = chunk_new(a, need);
        if (!big)
            return NULL;
        big->used = need;
        if (h) {
            big->next = h->next;
            h->next = big;
        } else {
            a->head = big;
        }
        a->used += need;
        return chunk_data(big);
    }
    arena_chunk_t *c = chunk_new(a, a->chunk_size);
    if (!c)
        return NULL;
    c->next = a->head;
    a->head = c;
    c->used = need;
    a->used += need;
    return chunk_data(c);
}

void *sy_arena_calloc(sy_arena_t *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = sy_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *sy_arena_strndup(sy_arena_t *a, const char *s, size_t len)
{
    if (!s || len == SIZE_MAX)
        return NULL;
    char *p = sy_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *sy_arena_strdup(sy_arena_t *a, const char *s)
{
    return s ? sy_arena_strndup(a, s, strlen(s)) : NULL;
}

int sy_arena_add_cleanup(sy_arena_t *a, sy_arena_cleanup_fn fn, void *arg)
{
    if (!fn)
        return ST_INVAL;
    arena_cleanup_t *c = sy_arena_alloc(a, sizeof *c);
    if (!c)
        return ST_NOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return ST_OK;
}

size_t sy_arena_used(const sy_arena_t *a)
{
    return a->used;
}

size_t sy_arena_reserved(const sy_arena_t *a)
{
    return a->reserved;
}
