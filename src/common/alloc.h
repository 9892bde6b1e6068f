/*
 * alloc.h - the one allocator wrapper. Every heap allocation in the project goes through here so
 * that live bytes are counted (exported on /metrics) and failures can be injected in tests.
 *
 * Does not: pool or cache memory; it forwards to libc.
 * Thread-safety: all functions are thread-safe (counters are atomics).
 */
#ifndef SY_ALLOC_H
#define SY_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Returns owned memory (free with sy_free) or NULL on failure / injected failure. */
void *sy_malloc(size_t size);
/* Zeroed; NULL on failure or multiplication overflow. */
void *sy_calloc(size_t n, size_t size);
/* Like realloc; on failure the old block is untouched and NULL is returned. */
void *sy_realloc(void *ptr, size_t size);
/* Accepts NULL. */
void sy_free(void *ptr);
/* Returns an owned copy of s (NULL if s is NULL or on failure). */
char *sy_strdup(const char *s);
/* Returns an owned NUL-terminated copy of s[0..len). */
char *sy_strndup(const char *s, size_t len);

/* Bytes currently allocated through this wrapper. */
uint64_t sy_alloc_live_bytes(void);
/* Total allocations made through this wrapper since start. */
uint64_t sy_alloc_total_count(void);
/* Test hook: make the n-th allocation from now (1 = next) fail; 0 disables. */
void sy_alloc_fail_after(uint64_t n);

#endif
