/*
 * alloc.c - counting allocator wrapper. Each block carries a 16-byte header holding its size so
 * that sy_free can subtract it from the live count. Failure injection is a countdown.
 * Thread-safety: atomics only.
 */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static atomic_uint_fast64_t g_live;
static atomic_uint_fast64_t g_count;
static atomic_uint_fast64_t g_fail_countdown;

static int should_fail(void)
{
    uint_fast64_t c = atomic_load_explicit(&g_fail_countdown, memory_order_relaxed);
    while (c != 0) {
        if (atomic_compare_exchange_weak(&g_fail_countdown, &c, c - 1))
            return c == 1;
    }
    return 0;
}

void *sy_malloc(size_t size)
{
    if (size > SIZE_MAX - HDR || should_fail())
        return NULL;
    unsigned char *p = malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    atomic_fetch_add_explicit(&g_live, size, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
    return p + HDR;
}

/* calloc itself, not malloc + memset: for large blocks it maps fresh zero pages, so a big table
 * (the gateway's 4M-block prefix index) costs no page faults until it is used. */
void *sy_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t total = n * size;
    if (total > SIZE_MAX - HDR || should_fail())
        return NULL;
    unsigned char *p = calloc(1, total + HDR);
    if (!p)
        return NULL;
    memcpy(p, &total, sizeof total);
    atomic_fetch_add_explicit(&g_live, total, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_count, 1, memory_order_relaxed);
    return p + HDR;
}

void *sy_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return sy_malloc(size);
    if (size > SIZE_MAX - HDR || should_fail())
        return NULL;
    unsigned char *base = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    unsigned char *p = realloc(base, size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    if (size >= old)
        atomic_fetch_add_explicit(&g_live, size - old, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&g_live, old - size, memory_order_relaxed);
    return p + HDR;
}

void sy_free(void *ptr)
{
    if (!ptr)
        return;
    unsigned char *base = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    atomic_fetch_sub_explicit(&g_live, old, memory_order_relaxed);
    free(base);
}

char *sy_strndup(const char *s, size_t len)
{
    if (!s)
        return NULL;
    char *p = sy_malloc(len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *sy_strdup(const char *s)
{
    return s ? sy_strndup(s, strlen(s)) : NULL;
}

uint64_t sy_alloc_live_bytes(void)
{
    return atomic_load_explicit(&g_live, memory_order_relaxed);
}

uint64_t sy_alloc_total_count(void)
{
    return atomic_load_explicit(&g_count, memory_order_relaxed);
}

void sy_alloc_fail_after(uint64_t n)
{
    atomic_store(&g_fail_countdown, n);
}
