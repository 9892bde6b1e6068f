/*
 * kv_sub.h - the gateway's KV-event subscriber: one ZMQ SUB socket per endpoint (connected to the
 * engine's PUB, spec research/vllm-interfaces.md §3), decoded with kv_decode.h and applied to the
 * precise prefix index under that endpoint's id:
 *   BlockStored -> pidx_add(block_hashes), BlockRemoved -> pidx_remove, AllBlocksCleared ->
 *   pidx_clear_endpoint. Events whose medium is neither nil nor "GPU" (offloaded tiers) are
 *   counted but not indexed unless cfg.index_all_media.
 *
 * Sequence numbers (frame 2) are tracked per endpoint:
 *   - first message: accepted as the baseline (state from before the subscription is unknown);
 *   - seq == last + 1: applied;
 *   - seq <= last on the live stream: the publisher restarted (seq restarts at 0): the endpoint's
 *     entries are dropped (a new engine process has an empty cache) and seq restarts there;
 *   - seq > last + 1 (gap; counted in `gaps`):
 *       with a replay endpoint: the endpoint is marked stale, replay is requested from last + 1
 *       through a DEALER socket (spec §3.4), live messages are held (up to cfg.max_pending) and
 *       replayed batches are applied in order; at the end marker the held messages are applied
 *       and the stale flag clears. The index is NOT cleared, because replay restores exactly the
 *       missed batches. If the replay cannot fill the hole (timeout, too many held messages, or
 *       the publisher's buffer no longer reaches last + 1) it falls back to the no-replay rule.
 *       (Deviation from the brief, which cleared then replayed from last + 1: that would lose
 *       every entry stored before the gap for no gain.)
 *       without replay: the endpoint's entries are dropped (they may include blocks whose
 *       BlockRemoved was lost), and the stream continues from the new seq; the stale flag is set
 *       and cleared within the same step.
 * A message that is not 3 frames [topic, seq (8 B), payload] or whose payload does not decode
 * only increments that endpoint's decode_errors (a bad payload still consumes its seq).
 *
 * Hash parity: for each BlockStored with a nil parent, token_ids present, no lora_name and no
 * extra keys for block 0, the subscriber recomputes block 0's hash with kvh_block(NONE_HASH(seed),
 * token_ids[0..block_size)) and compares low64 with block_hashes[0]; mismatches (also an event
 * block_size different from cfg.block_size when that is set) are counted and warned about once
 * per endpoint, since the gateway's request hashes will then never hit that endpoint.
 *
 * Active parity probe (gw_parity.h drives it): kvsub_probe_arm registers, for one endpoint, the
 * token ids of a probe request the gateway is about to send. The thread then records the block
 * hashes of a BlockStored (GPU / nil medium) whose parent is nil and whose token_ids are a prefix
 * of the armed ids, and of BlockStored events chained to it (parent = the last recorded hash,
 * token_ids = the next armed ids). Matching on token_ids keeps unrelated traffic out. The loop
 * thread polls the record with kvsub_probe_get. The check is cheap when nothing is armed (one
 * atomic load per BlockStored).
 *
 * Does not: discover endpoints, bind (the SUB always connects: the engine's PUB binds, the
 * default), key entries by group_idx or data-parallel rank, or request an initial replay.
 * Thread-safety: every kvsub_* function is thread-safe. One background thread owns the sockets
 * after kvsub_add_endpoint hands them over, and is the only writer of the index for these ids.
 */
#ifndef SY_KV_SUB_H
#define SY_KV_SUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/kv_decode.h"
#include "gateway/prefix_index.h"

#define KVSUB_MAX_ENDPOINTS 1024

typedef struct kvsub kvsub_t;

typedef struct kvsub_config {
    const char *hash_seed; /* the gateway's PYTHONHASHSEED; NULL = no parity check (copied) */
    uint32_t block_size;   /* the gateway's block size; 0 = not compared with events */
    int poll_ms;           /* thread poll timeout, default 20 */
    int replay_timeout_ms; /* give up on a replay after this long, default 2000 */
    size_t max_pending;    /* live messages held during a replay, default 10000 */
    bool index_all_media;  /* also index media other than nil/"GPU" (default false) */
    kvd_limits_t limits;   /* decoder caps; all-zero = kvd_limits_default */
} kvsub_config_t;

/* Per-endpoint counters (a snapshot; see kvsub_get_stats). */
typedef struct kvsub_stats {
    uint64_t messages;          /* messages received (live and replayed) */
    uint64_t events;            /* events applied */
    uint64_t events_ignored;    /* events not indexed (other medium) */
    uint64_t blocks_stored;     /* hashes passed to pidx_add */
    uint64_t blocks_removed;    /* hashes passed to pidx_remove */
    uint64_t clears;            /* AllBlocksCleared applied */
    uint64_t decode_errors;     /* bad framing or payload */
    uint64_t gaps;              /* sequence gaps seen */
    uint64_t restarts;          /* seq went backwards on the live stream */
    uint64_t replays;           /* replay requests sent */
    uint64_t replay_failures;   /* replays that could not fill the gap */
    uint64_t parity_matches;    /* first-block hashes recomputed equal */
    uint64_t parity_mismatches; /* ... different (or block_size different) */
    bool have_seq;
    uint64_t last_seq;     /* last applied seq (valid when have_seq) */
    double last_batch_ts;  /* ts field of the last applied batch (engine's Unix seconds) */
    double last_recv_unix; /* gateway's Unix time when it arrived; lag = this - ts */
    bool stale;            /* a gap is being repaired: precise entries unsure */
} kvsub_stats_t;

/* Caps of an armed probe. */
#define KVSUB_PROBE_MAX_TOKENS 4096
#define KVSUB_PROBE_MAX_HASHES 256

/* What the subscriber saw of an armed probe (see kvsub_probe_get). */
typedef struct kvsub_probe_result {
    bool seen;           /* a root BlockStored carrying the probe's first token ids arrived */
    uint32_t block_size; /* the event's block_size, else n_tokens / n_hashes of the root event */
    bool has_extra;      /* the root event had extra keys or a lora_name (hashes include them) */
    size_t n_events;     /* matching events recorded (root + chained) */
    size_t n_hashes;     /* recorded block hashes, in chain order (<= KVSUB_PROBE_MAX_HASHES) */
    size_t n_tokens;     /* probe token ids covered by the recorded events */
    uint64_t hashes[KVSUB_PROBE_MAX_HASHES];
} kvsub_probe_result_t;

/* Fills defaults (no parity check). */
void kvsub_config_default(kvsub_config_t *c);

/* Creates the subscriber and starts its thread. index is borrowed and must outlive the
 * subscriber; cfg is copied. Returns owned subscriber (free with kvsub_destroy) or NULL with
 * *status set (ST_NOMEM, ST_INVAL, -errno). */
kvsub_t *kvsub_create(pidx_t *index, const kvsub_config_t *cfg, int *status);
/* Stops and joins the thread, closes every socket, terminates the ZMQ context. The index keeps
 * its entries. Accepts NULL. */
void kvsub_destroy(kvsub_t *s);

/* Subscribes endpoint ep_id: a SUB socket connected to zmq_endpoint (e.g.
 * "tcp://10.0.0.5:5557") subscribed to the topic prefix topic_filter (NULL = "" = everything),
 * plus a DEALER to replay_endpoint when it is not NULL. Strings are copied.
 * Returns ST_OK, ST_EXISTS (ep_id already added), ST_LIMIT (KVSUB_MAX_ENDPOINTS), ST_INVAL or
 * -errno (ZMQ rejected the endpoint string), ST_NOMEM. */
int kvsub_add_endpoint(kvsub_t *s, uint32_t ep_id, const char *zmq_endpoint,
                       const char *replay_endpoint, const char *topic_filter);
/* Unsubscribes ep_id: its sockets are closed and its index entries dropped before this returns
 * (waits for the thread, at most about one poll round). ST_OK or ST_NOTFOUND. */
int kvsub_remove_endpoint(kvsub_t *s, uint32_t ep_id);

/* Copies ep_id's counters (updated once per poll round) into out. ST_OK or ST_NOTFOUND. */
int kvsub_get_stats(kvsub_t *s, uint32_t ep_id, kvsub_stats_t *out);
/* True while ep_id's index entries are being repaired after a gap (gw_endpoint.kv_index_stale).
 * Live value, not a snapshot. False for unknown ids. */
bool kvsub_is_stale(kvsub_t *s, uint32_t ep_id);

/* Arms the parity probe of ep_id with tokens[0..n) (copied; 1 <= n <= KVSUB_PROBE_MAX_TOKENS),
 * replacing (and resetting) a probe already armed there. Call before sending the probe request.
 * Returns ST_OK, ST_NOTFOUND (no such endpoint), ST_INVAL or ST_NOMEM. */
int kvsub_probe_arm(kvsub_t *s, uint32_t ep_id, const int32_t *tokens, size_t n);
/* Copies what was recorded for ep_id's armed probe into out (out->seen false while nothing
 * matched yet). Returns ST_OK, ST_NOTFOUND (no such endpoint) or ST_STATE (no probe armed). */
int kvsub_probe_get(kvsub_t *s, uint32_t ep_id, kvsub_probe_result_t *out);
/* Disarms ep_id's probe (no-op when none is armed or the endpoint is unknown). */
void kvsub_probe_disarm(kvsub_t *s, uint32_t ep_id);

#endif
