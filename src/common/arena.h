/*
 * arena.h - region allocator: many small allocations freed together in one call, plus cleanup
 * callbacks (close an fd, cancel a timer, unref a shared object) that run when the region ends.
 * Meant for per-connection and per-request lifetimes (STYLE.md §12).
 *
 * Memory comes from sy_malloc in chunks; allocations are 16-byte aligned; a request larger than a
 * quarter of the chunk size gets a chunk of its own so big blocks do not waste the current chunk.
 * Does not: free individual allocations, grow blocks in place, or zero memory (except _calloc).
 * Thread-safety: none; an arena belongs to one thread at a time.
 */
#ifndef SY_ARENA_H
#define SY_ARENA_H

#include <stddef.h>

typedef struct sy_arena sy_arena_t;

typedef void (*sy_arena_cleanup_fn)(void *arg);

/* Creates an arena whose chunks hold chunk_size bytes (0 = default 4096; values below 256 are
 * raised to 256). No chunk is allocated until the first allocation.
 * Returns an owned arena (free with sy_arena_destroy) or NULL on ST_NOMEM. */
sy_arena_t *sy_arena_create(size_t chunk_size);

/* Runs the registered cleanups in reverse order of registration, then frees every chunk and the
 * arena itself. Every pointer obtained from the arena becomes invalid. Accepts NULL. */
void sy_arena_destroy(sy_arena_t *a);

/* Runs the cleanups (reverse order) and releases all allocations, but keeps the arena and one
 * chunk for reuse (e.g. the next request on a keep-alive connection). */
void sy_arena_reset(sy_arena_t *a);

/* Returns size bytes aligned to 16, owned by the arena (valid until destroy/reset), or NULL on
 * ST_NOMEM or overflow. size 0 returns a valid unique pointer. Contents are uninitialised. */
void *sy_arena_alloc(sy_arena_t *a, size_t size);

/* Like sy_arena_alloc for n * size zeroed bytes; NULL on overflow or ST_NOMEM. */
void *sy_arena_calloc(sy_arena_t *a, size_t n, size_t size);

/* Returns an arena-owned NUL-terminated copy of s[0..len), or NULL (s NULL or ST_NOMEM). */
char *sy_arena_strndup(sy_arena_t *a, const char *s, size_t len);
/* Same for a NUL-terminated string. */
char *sy_arena_strdup(sy_arena_t *a, const char *s);

/* Registers fn(arg) to run at destroy/reset (last registered runs first). arg is borrowed.
 * ST_OK, ST_INVAL (fn NULL), or ST_NOMEM - then fn is NOT registered and the caller must release
 * arg itself. */
int sy_arena_add_cleanup(sy_arena_t *a, sy_arena_cleanup_fn fn, void *arg);

/* Bytes handed out by sy_arena_alloc since create/reset (after alignment), and bytes held in
 * chunks (what the arena costs). For metrics and tests. */
size_t sy_arena_used(const sy_arena_t *a);
size_t sy_arena_reserved(const sy_arena_t *a);

#endif
