/*
 * kv_events.h - KV-cache event publisher in vLLM's wire format (spec §3): a ZMQ PUB socket
 * sending 3-frame messages [topic, seq (8 bytes big-endian, from 0, +1 per batch), msgpack
 * KVEventBatch]. The batch is the 3-element array [ts (float64), events, data_parallel_rank (0)].
 * Events are BlockStored (always with token_ids), BlockRemoved and AllBlocksCleared, in the
 * current map encoding ("type"-tagged msgpack maps) or, by option, the legacy tagged arrays.
 * Hashes are published as uint64 (low 64 bits) by default, or as 32-byte bin.
 * An optional ROUTER replay socket answers [id, "", start_seq] with every buffered batch
 * >= start_seq ([id, "", seq, payload]) and the end marker [id, "", 0xFF..FF, ""].
 *
 * Events are queued by the caller (the engine core thread) and published by the publisher's own
 * thread, which flushes the queued events as one batch every flush_interval_ms (or sooner when
 * max_batch_events are queued). The order of events is kept.
 * Does not: subscribe (the gateway's side lives elsewhere).
 * Thread-safety: kve_block_* / kve_all_cleared may be called from any one thread at a time
 * (internally locked); the ZMQ sockets are touched only by the publisher thread.
 */
#ifndef SY_KV_EVENTS_H
#define SY_KV_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "engine/kv_hash.h"

typedef struct kve_pub kve_pub_t;

typedef struct kve_config {
    bool enable;                /* enable_kv_cache_events */
    char *publisher;            /* "zmq" or "null" (owned); NULL = auto: "zmq" iff enable */
    char *endpoint;             /* default: tcp, all interfaces, port 5557 (owned) */
    char *replay_endpoint;      /* NULL = no replay socket (owned) */
    char *topic;                /* default "" (owned) */
    uint32_t buffer_steps;      /* batches kept for replay, default 10000 */
    int hwm;                    /* ZMQ SNDHWM, default 100000 */
    uint32_t max_queue_size;    /* queued events before the oldest are dropped, default 100000 */
    bool legacy_array;          /* "event_encoding": "array" (ours) -> legacy tagged arrays */
    bool int_hashes;            /* default true; env VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=0 -> bin */
    uint32_t flush_interval_ms; /* "flush_interval_ms" (ours), default 10 */
} kve_config_t;

/* Fills defaults (enable=false). */
void kve_config_default(kve_config_t *c);
/* Parses vLLM's --kv-events-config JSON (unknown keys ignored). On error returns ST_INVAL and
 * appends a message naming the bad key to err. c must have been kve_config_default()ed. */
int kve_config_parse(const char *json, kve_config_t *c, sy_buf_t *err);
void kve_config_deinit(kve_config_t *c);

/* Creates the publisher and binds/connects its sockets (bind if the endpoint has '*' or '::' or
 * is ipc:// or inproc://, else connect, as vLLM does). Returns owned publisher or NULL with
 * *status set (-errno from ZMQ, ST_INVAL). cfg is copied. A disabled config (enable false or
 * publisher "null") returns a null publisher: a valid handle whose calls do nothing. */
kve_pub_t *kve_create(const kve_config_t *cfg, int *status);
/* Flushes queued events, stops the thread, closes the sockets. Accepts NULL. */
void kve_destroy(kve_pub_t *p);

/* Queues a BlockStored event: n hashes in sequence order, the parent of hashes[0] (NULL for the
 * first block of a sequence), token_ids of all n blocks (n * block_size ids). Copies inputs. */
void kve_block_stored(kve_pub_t *p, const kvh_digest_t *hashes, uint32_t n,
                      const kvh_digest_t *parent, const int32_t *token_ids, uint32_t block_size);
/* Queues a BlockRemoved event for n hashes. */
void kve_block_removed(kve_pub_t *p, const kvh_digest_t *hashes, uint32_t n);
/* Queues an AllBlocksCleared event. */
void kve_all_cleared(kve_pub_t *p);

/* Statistics: batches published so far, events dropped because the queue was full. */
uint64_t kve_batches_published(const kve_pub_t *p);
uint64_t kve_events_dropped(const kve_pub_t *p);

/* Resolved PUB endpoint (ZMQ_LAST_ENDPOINT when bound, so "tcp://127.0.0.1:*" shows the port the
 * kernel chose; the configured string when connected). NULL for a null publisher. The string
 * lives as long as the publisher. */
const char *kve_endpoint(const kve_pub_t *p);
/* Resolved replay (ROUTER) endpoint, or NULL when there is no replay socket. */
const char *kve_replay_endpoint(const kve_pub_t *p);

/* Encodes one batch payload (for tests and the fuzz/decoder side): exposed so unit tests can
 * check the msgpack bytes without sockets. Internal event representation is private; see
 * kv_events_int.h (kve_event_new, kve_encode_batch). */

#endif
