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

/* Registers process gauges refreshed at every scrape: process_resident_memory_bytes,
 * process_open_fds (prometheus_client's names) and switchyard_alloc_live_bytes (bytes held through
 * sy_malloc: a leak shows here, allocator fragmentation only in the RSS). ST_OK or ST_NOMEM. */
int sy_proc_metrics_register(mx_registry_t *r);

#endif
