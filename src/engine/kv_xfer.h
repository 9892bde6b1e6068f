/*
 * kv_xfer.h - the KV-transfer connector of prefill/decode disaggregation ("TcpConnector"):
 * leases on the producer, pulls on the consumer, and our own framed TCP protocol between them.
 *
 * Roles (vLLM's --kv-transfer-config kv_role): a producer (kv_producer, kv_both) listens on
 * kv_ip:kv_port and serves the KV blocks of finished prefills it holds under a lease; a consumer
 * (kv_consumer, kv_both) pulls them into its own blocks before decoding.
 *
 * Lease state machine (producer; the table lives here, the blocks stay the core's):
 *
 *   (add) --> ACTIVE --PULL--> PULLING --done or failed--> RELEASED --collect--> (free)
 *               |  \--RELEASE------------------------------^    ^
 *               \--expiry (lease_s after add or after the last pull activity)--> EXPIRED --/
 *
 *   from      to        by                         note
 *   -         ACTIVE    kvx_lease_add (core)       the sequence's table is moved in
 *   ACTIVE    PULLING   a PULL frame (server)      expiry pushed back while the pull runs
 *   PULLING   RELEASED  the pull ends (server)     one pull per lease: a failed pull releases
 *                                                  too (the consumer recomputes)
 *   ACTIVE    RELEASED  a RELEASE frame (server)   the consumer needed no pull
 *   ACTIVE    EXPIRED   kvx_lease_collect (core)   the consumer never came (it died)
 *   RELEASED  -         kvx_lease_collect (core)   cb releases the blocks; id kept in a short
 *   EXPIRED   -                                    ring so a late pull gets "expired"
 * A PULLING lease never expires (the pull itself is bounded by io_timeout_s).
 *
 * Wire protocol, version 1 (all integers little-endian). Every frame starts with a 12-byte
 * header: magic "SYKV", u8 version (1), u8 type, u16 0, u32 payload length. Frames:
 *   PULL     (1, consumer->producer) u8 release_after, u8 id_len, id, u32 n_layers,
 *            u32 block_size, u32 dtype, u64 seg_bytes, u32 n_blocks, n_blocks x u32 block id
 *   PULL_OK  (2) u32 n_layers, u32 n_blocks, u64 seg_bytes
 *   LAYER    (3) u32 layer, u32 n_blocks, the data (per block K then V, seg_bytes each), then a
 *            u64 XXH3-64 of the data (a trailer: the producer hashes each segment right before
 *            the kernel copies it, the consumer right after it landed in its pool, both while
 *            it is in cache). Sent with writev straight from the KV pool and received straight
 *            into it (no staging copy); one frame per layer, in layer order.
 *   END      (4) u64 KV digest: XXH3-64 over the layer digests (8 bytes each, little-endian)
 *   ERR      (5) u16 code (kvx_err_t), u16 len, message
 *   RELEASE  (6, consumer->producer) u8 id_len, id   -> ACK (7) or ERR
 * Control frames are at most KVX_MAX_CTRL bytes and must arrive whole within io_timeout_s (a
 * trickling or silent peer is cut). A malformed frame (bad magic or version, unknown type,
 * oversize, lengths that do not match) or a layout mismatch is answered with ERR and the
 * connection is closed; a refused request (unknown, expired or busy lease, block ids outside
 * the lease) is answered with ERR and the connection stays usable. Neither engine crashes.
 * The sim executor has no KV storage (seg_bytes 0): frames carry no data and the consumer then
 * sleeps the modelled time, latency + bytes / bandwidth (kv_connector_extra_config
 * sim_latency_ms, sim_bandwidth_gbps), divided by the sim speed.
 *
 * Threads: a listener and up to KVX_MAX_CONNS connection threads (producer), pull_threads
 * workers (consumer). The core thread adds and collects leases and submits and takes jobs;
 * the wake callback tells it that something is to collect or take.
 * Ownership: kvx_create borrows the executor (whose pool the threads read and write) and the
 * metrics registry; both must outlive kvx_destroy, which stops and joins every thread first.
 * Thread-safety: the functions below may be called from one thread (the engine core) while the
 * connector's own threads run.
 */
#ifndef SY_KV_XFER_H
#define SY_KV_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "engine/executor.h"
#include "engine/kv_block.h"

#define KVX_VERSION 1
#define KVX_MAX_CTRL (1u << 22) /* control frame payload limit: 4 MiB (a million block ids) */
#define KVX_MAX_CONNS 32        /* concurrent connections served by a producer */
#define KVX_ID_MAX 128          /* lease ids (remote_request_id), NUL included */

typedef struct kvx kvx_t;
typedef struct kvx_job kvx_job_t;

typedef enum kvx_role { KVX_PRODUCER = 1, KVX_CONSUMER = 2, KVX_BOTH = 3 } kvx_role_t;

typedef enum kvx_err {
    KVX_E_FRAME = 1,   /* malformed frame */
    KVX_E_VERSION = 2, /* unsupported protocol version */
    KVX_E_UNKNOWN = 3, /* no such lease */
    KVX_E_EXPIRED = 4, /* the lease expired */
    KVX_E_RANGE = 5,   /* a block id that is not part of the lease */
    KVX_E_BUSY = 6,    /* a pull of this lease is in progress */
    KVX_E_DONE = 7,    /* the lease was already pulled or released */
    KVX_E_LAYOUT = 8,  /* the two engines' KV layouts differ */
    KVX_E_LIMIT = 9,   /* too large or too many connections */
} kvx_err_t;

typedef struct kvx_config {
    kvx_role_t role;
    char engine_id[64];        /* engine_id; default: a random UUID */
    char ip[64];               /* kv_ip, the listen address; default 127.0.0.1 */
    char host[256];            /* remote_host told to consumers (kv_connector_extra_config
                                  "advertise_host"); default kv_ip, 127.0.0.1 for 0.0.0.0 */
    int port;                  /* kv_port, default 14579; 0 = a free port (kvx_port) */
    double lease_s;            /* extra "lease_seconds", default 30 */
    double io_timeout_s;       /* extra "io_timeout_seconds", default 10 */
    double sim_bandwidth_gbps; /* extra, default 200 (Gbit/s) */
    double sim_latency_ms;     /* extra, default 0.5 */
    uint32_t max_leases;       /* extra "max_leases", default 4096 */
    uint32_t pull_threads;     /* extra "pull_threads", default 2 */
    int sock_buf;              /* extra "socket_buffer_bytes", default 8 MiB */
} kvx_config_t;

/* Parses vLLM's KVTransferConfig JSON (kv_connector must be "TcpConnector"; kv_role required;
 * kv_port, kv_ip, engine_id, kv_connector_extra_config optional; unknown vLLM keys such as
 * kv_buffer_device are accepted and ignored). ST_OK, or ST_INVAL with a message in err. */
int kvx_config_parse(const char *json, kvx_config_t *out, char *err, size_t errlen);

/* Starts the connector (listens when a producer). exec and metrics borrowed. Returns owned or
 * NULL with a message in err (address in use, executor without KV support, out of memory). */
kvx_t *kvx_create(const kvx_config_t *cfg, exec_t *exec, mx_registry_t *metrics,
                  const char *model_name, char *err, size_t errlen);
/* Stops and joins every thread (connections and pulls in flight are cut); pull jobs not yet
 * run become finished with ST_CLOSED (take them with kvx_job_take_done). Idempotent. */
void kvx_stop(kvx_t *x);
/* kvx_stop, then frees jobs not taken and the lease entries. Leases still holding tables must
 * have been collected (kvx_lease_collect with all = true) by the owner of the block manager
 * first. NULL ok. */
void kvx_destroy(kvx_t *x);
/* wake(ud) is called from connector threads when a lease became collectable or a job finished. */
void kvx_set_wake(kvx_t *x, void (*wake)(void *ud), void *ud);
const kvx_config_t *kvx_get_config(const kvx_t *x);
int kvx_port(const kvx_t *x);
bool kvx_is_producer(const kvx_t *x);
bool kvx_is_consumer(const kvx_t *x);

/* ---- producer: leases (core thread) ---- */

/* Moves the table *t (all its blocks) under a new lease for req_id; writes the lease id
 * (remote_request_id) into id (KVX_ID_MAX bytes). ST_OK, ST_LIMIT (max_leases held; *t
 * untouched) or ST_NOMEM. */
int kvx_lease_add(kvx_t *x, const char *req_id, kvb_seq_t *t, char *id);
typedef void (*kvx_free_cb)(void *ud, kvb_seq_t *t);
/* Ends released leases and (all, or expired at now_ns) active ones: cb(ud, table) releases
 * the blocks, then the entry is freed. Returns the number of leases ended. */
uint32_t kvx_lease_collect(kvx_t *x, uint64_t now_ns, bool all, kvx_free_cb cb, void *ud);
/* Earliest expiry among active leases (monotonic ns), 0 = none. */
uint64_t kvx_lease_next_expiry(kvx_t *x);

/* ---- consumer: pull jobs (core thread) ---- */

typedef struct kvx_pull_spec {
    const char *host;           /* remote_host */
    int port;                   /* remote_port */
    const char *lease_id;       /* remote_request_id */
    const uint32_t *remote_ids; /* n_blocks producer block ids (copied) */
    const uint32_t *local_ids;  /* n_blocks consumer block ids to write (copied) */
    uint32_t n_blocks;          /* 0 = only release the lease */
    void *udata;
} kvx_pull_spec_t;

typedef struct kvx_job_result {
    int status;        /* ST_OK, or why the pull failed */
    const char *error; /* message (borrowed from the job) */
    uint64_t bytes;    /* KV bytes received (modelled bytes for the sim) */
    double seconds;    /* wall time of the pull, modelled delay included */
    uint64_t digest;   /* the KV digest (END), as computed over the consumer's own pool */
} kvx_job_result_t;

/* Queues a pull (or, with n_blocks 0, a release). A release job is fire-and-forget (it never
 * comes back from kvx_job_take_done). Returns the job (owned by kvx until taken) or NULL
 * (ST_NOMEM; nothing queued). */
kvx_job_t *kvx_job_submit(kvx_t *x, const kvx_pull_spec_t *spec);
/* Pops a finished pull job (NULL when none); the caller frees it with kvx_job_free. */
kvx_job_t *kvx_job_take_done(kvx_t *x);
void kvx_job_result(const kvx_job_t *j, kvx_job_result_t *out);
void *kvx_job_udata(const kvx_job_t *j);
void kvx_job_free(kvx_job_t *j);

#endif
