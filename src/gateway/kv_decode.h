/*
 * kv_decode.h - decoder of one vLLM KV-event message (spec research/vllm-interfaces.md §3): the
 * 3-frame framing check and the msgpack KVEventBatch payload into an array of events.
 *
 * Accepted payloads: the batch as an array [ts, events] / [ts, events, dp_rank, ...] or a map
 * {"ts", "events", "data_parallel_rank"}; events as legacy tagged arrays ["BlockStored", ...] or
 * "type"-tagged maps; hashes as uint64, int64 (reinterpreted as uint64) or bin of 8..64 bytes
 * (folded to the last 8 bytes read big-endian). Unknown event tags, unknown map keys and extra
 * trailing array fields are ignored. Anything else malformed rejects the whole message (ST_PROTO,
 * nothing partially decoded is returned), so a consumer never applies half a batch.
 * Hostile input is safe: the bytes are structure-checked before msgpack-c materialises them (so
 * its allocation is bounded by ~24 x payload bytes), and events, hashes and tokens are capped.
 * Does not: apply events to an index (kv_sub.c does), or talk to sockets.
 * Thread-safety: reentrant; a kvd_batch_t belongs to one thread at a time.
 */
#ifndef SY_KV_DECODE_H
#define SY_KV_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "common/buf.h"

/* Default caps per message. */
#define KVD_DEFAULT_MAX_PAYLOAD ((size_t)64 << 20)
#define KVD_DEFAULT_MAX_EVENTS 100000
#define KVD_DEFAULT_MAX_HASHES 1000000
#define KVD_DEFAULT_MAX_TOKENS 1000000

typedef enum kvd_type {
    KVD_BLOCK_STORED = 1,
    KVD_BLOCK_REMOVED = 2,
    KVD_ALL_CLEARED = 3,
} kvd_type_t;

/* One decoded event. Pointers and slices borrow from the kvd_batch_t (hashes, token_ids) or from
 * the payload bytes (medium, lora_name): valid until the next kvd_decode / kvd_batch_deinit and
 * while the payload is alive. */
typedef struct kvd_event {
    kvd_type_t type;
    const uint64_t *hashes; /* STORED / REMOVED: block_hashes, n_hashes of them */
    size_t n_hashes;
    bool has_parent; /* STORED: parent_block_hash was not nil */
    uint64_t parent;
    bool has_tokens;          /* STORED: token_ids present (possibly empty) */
    const int32_t *token_ids; /* n_tokens ids (values must fit int32) */
    size_t n_tokens;
    uint32_t block_size;   /* STORED: 0 when absent/nil */
    sy_slice_t medium;     /* ptr NULL when absent/nil */
    sy_slice_t lora_name;  /* ptr NULL when absent/nil */
    bool has_lora_id;      /* lora_id not nil (deprecated field) */
    bool has_extra0;       /* STORED: extra_keys present and its entry for block 0 not nil */
    int64_t group_idx;     /* 0 when absent/nil */
    size_t _h_off, _t_off; /* private: offsets into the batch's arrays while decoding */
} kvd_event_t;

typedef struct kvd_limits {
    size_t max_payload; /* bytes */
    size_t max_events;  /* events per message (unknown-tag events count too) */
    size_t max_hashes;  /* block hashes per message, all events together */
    size_t max_tokens;  /* token ids per message, all events together */
} kvd_limits_t;

/* A decoded batch. Caller-owned storage: kvd_batch_init, then any number of kvd_decode, then
 * kvd_batch_deinit. Fields starting with _ are private. */
typedef struct kvd_batch {
    double ts;       /* batch timestamp (engine's Unix seconds); 0 if not a number */
    int64_t dp_rank; /* data_parallel_rank; 0 when absent */
    kvd_event_t *events;
    size_t n_events;
    size_t n_unknown; /* events skipped for an unknown tag */
    char err[160];    /* why the last kvd_decode returned ST_PROTO */

    msgpack_unpacked _u;
    bool _u_live;
    kvd_event_t *_ev;
    size_t _ev_cap;
    uint64_t *_hashes;
    size_t _h_len, _h_cap;
    int32_t *_tokens;
    size_t _t_len, _t_cap;
} kvd_batch_t;

/* Fills lim with the KVD_DEFAULT_* caps. */
void kvd_limits_default(kvd_limits_t *lim);

void kvd_batch_init(kvd_batch_t *b);
/* Frees the batch's storage. Accepts NULL. */
void kvd_batch_deinit(kvd_batch_t *b);

/* Decodes one payload (frame 3 of a message) into b, replacing its previous content.
 * payload is borrowed and must outlive the use of b's slices. lim NULL = defaults.
 * Returns ST_OK (b->events[0..n_events) valid), ST_PROTO (malformed, a cap exceeded, or trailing
 * bytes; b->err says why, b->n_events = 0) or ST_NOMEM. */
int kvd_decode(kvd_batch_t *b, const void *payload, size_t len, const kvd_limits_t *lim);

/* Checks the PUB framing [topic, seq, payload]: n_frames must be 3 and the seq frame 8 bytes.
 * Returns ST_OK with *seq = the big-endian sequence number, or ST_PROTO. */
int kvd_check_framing(size_t n_frames, const void *seq_frame, size_t seq_len, uint64_t *seq);

/* Big-endian 8-byte helpers (seq frames, replay requests). */
uint64_t kvd_be64_get(const void *p);
void kvd_be64_put(void *p, uint64_t v);

/* Returns the static name of an event type ("BlockStored", ...). */
const char *kvd_type_name(kvd_type_t t);

#endif
