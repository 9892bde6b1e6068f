/*
 * kv_events_int.h - private to kv_events.c and its unit tests: the queued event representation
 * and the batch encoder, so payload bytes can be checked without sockets.
 *
 * Thread-safety: the functions here are reentrant; an event belongs to one thread at a time.
 */
#ifndef SY_KV_EVENTS_INT_H
#define SY_KV_EVENTS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "engine/kv_hash.h"

typedef enum kve_ev_type {
    KVE_EV_STORED = 0,
    KVE_EV_REMOVED = 1,
    KVE_EV_CLEARED = 2,
} kve_ev_type_t;

/* One queued event. Allocated as a single block: hashes and token_ids point into its tail. */
typedef struct kve_event {
    struct kve_event *next; /* queue link */
    kve_ev_type_t type;
    uint32_t n_hashes;
    uint32_t block_size; /* STORED only */
    uint32_t n_tokens;   /* STORED only: n_hashes * block_size */
    bool has_parent;     /* STORED only */
    kvh_digest_t parent;
    kvh_digest_t *hashes; /* n_hashes */
    int32_t *token_ids;   /* n_tokens, or NULL */
} kve_event_t;

/* Returns an owned event (free with kve_event_free), or NULL on allocation failure. Inputs are
 * copied; parent may be NULL; token_ids holds n * block_size ids (STORED only). */
kve_event_t *kve_event_new(kve_ev_type_t type, const kvh_digest_t *hashes, uint32_t n,
                           const kvh_digest_t *parent, const int32_t *token_ids,
                           uint32_t block_size);
/* Frees one event. Accepts NULL. */
void kve_event_free(kve_event_t *e);
/* Frees a `next`-linked list of events. Accepts NULL. */
void kve_event_free_list(kve_event_t *head);

/* Appends the msgpack KVEventBatch [ts, [events...], 0] for the n events linked from head to out
 * (not reset first). legacy_array selects the tagged-array event encoding, int_hashes publishes
 * low64 hashes as uint64 (else 32-byte bin). Returns ST_OK or ST_NOMEM. */
int kve_encode_batch(const kve_event_t *head, uint32_t n, double ts, bool legacy_array,
                     bool int_hashes, sy_buf_t *out);

/* The bind-vs-connect heuristic of vLLM (spec §3.2): true when the endpoint contains '*' or "::",
 * or starts with ipc:// or inproc://. */
bool kve_endpoint_binds(const char *endpoint);

#endif
