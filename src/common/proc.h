/*
 * proc.h - process-level set-up shared by the subcommands.
 * Thread-safety: call once from the main thread at start-up.
 */
#ifndef SY_PROC_H
#define SY_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/metrics.h"

/* Raises the soft RLIMIT_NOFILE to the hard limit (servers hold one fd per connection).
 * Returns the resulting soft limit (0 if it could not be read). */
uint64_t sy_raise_fd_limit(void);

/* Ignores SIGPIPE and blocks SIGTERM, SIGINT (and SIGHUP when with_hup) in the calling thread,
 * before any thread starts so that every thread inherits the mask; fills *mask with the blocked
 * set for signalfd(). */
void sy_proc_block_signals(sigset_t *mask, bool with_hup);

/* Tunes glibc malloc for a server whose requests may carry bodies of hundreds of KB: buffers up
 * to SY_PROC_MMAP_THRESHOLD come from the heap (not a fresh mmap per request, whose pages would
 * fault in again every time) and up to SY_PROC_TRIM_THRESHOLD of free memory at the heap's top is
 * kept for the next request instead of being returned and faulted back. Bigger buffers still
 * use mmap and are returned at once. No-op without glibc. */
#define SY_PROC_MMAP_THRESHOLD (16u << 20)
#define SY_PROC_TRIM_THRESHOLD (64u << 20)
void sy_proc_tune_malloc(void);

/* Registers process gauges refreshed at every scrape: process_resident_memory_bytes,
 * process_open_fds (prometheus_client's names; recounted at most once a second, since listing
 * /proc/self/fd costs about a microsecond per descriptor) and switchyard_alloc_live_bytes (bytes
 * held through sy_malloc: a leak shows here, allocator fragmentation only in the RSS).
 * ST_OK or ST_NOMEM. */
int sy_proc_metrics_register(mx_registry_t *r);

#endif
