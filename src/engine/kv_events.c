/*
 * kv_events.c - the KV-cache event publisher (vLLM wire format, spec §3).
 *
 * Design: producers (the engine core) append events to a mutex-protected FIFO; when it holds
 * max_queue_size events the oldest one is dropped and counted. The publisher thread owns the ZMQ
 * context's sockets: it sleeps in zmq_poll on [wake eventfd, replay ROUTER] for at most
 * flush_interval_ms, then takes every queued event and sends them as ONE KVEventBatch
 * [ts, [events...], 0] in the 3-frame message [topic, seq (8 B big-endian), payload]. seq starts
 * at 0 and grows by 1 per batch; the last buffer_steps payloads stay in a ring for replay.
 * Producers wake the thread early when KVE_MAX_BATCH_EVENTS events are queued, and kve_destroy
 * wakes it to flush what is queued before it exits.
 *
 * The sockets are created and bound in kve_create (so bind errors reach the caller) and handed
 * to the thread by pthread_create, which is the full barrier ZMQ requires to migrate a socket.
 * From then on only the thread touches them, and it closes them before it exits.
 *
 * A disabled config (enable_kv_cache_events false or publisher "null") yields a null publisher:
 * a valid handle whose kve_* calls do nothing.
 * Does not: subscribe, or batch per scheduler step as vLLM does (we batch per flush interval).
 * Thread-safety: see kv_events.h; encode helpers are reentrant.
 */
#include "engine/kv_events.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <msgpack.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"
#include "engine/kv_events_int.h"

#define KVE_DEFAULT_ENDPOINT "tcp://*:5557"
#define KVE_MAX_BATCH_EVENTS 4096 /* queue length that wakes the thread before the interval */
#define KVE_LINGER_MS 1000        /* how long destroy waits for unsent messages */
#define KVE_MAX_REPLAY_REQS 64    /* replay requests served per wake-up */

typedef struct kve_replay_slot {
    uint64_t seq;
    char *data; /* owned payload */
    size_t len;
} kve_replay_slot_t;

struct kve_pub {
    kve_config_t cfg; /* deep copy; publisher resolved to "zmq" or "null" */
    bool active;      /* false: null publisher */

    /* Producer side, guarded by mu. */
    pthread_mutex_t mu;
    bool mu_init;
    kve_event_t *q_head, *q_tail;
    uint32_t q_len;
    bool stopping;
    int wake_fd; /* eventfd; producers write, the thread reads */

    atomic_uint_fast64_t batches;
    atomic_uint_fast64_t dropped;

    /* Set in create, read-only afterwards. */
    void *zctx;
    char pub_endpoint[256];    /* resolved (ZMQ_LAST_ENDPOINT when bound) */
    char replay_endpoint[256]; /* resolved, "" without replay */
    pthread_t thread;
    bool thread_started;

    /* Owned by the publisher thread once it runs. */
    void *pub;
    void *replay;
    uint64_t next_seq;
    kve_replay_slot_t *ring; /* buffer_steps slots */
    uint32_t ring_start, ring_len;
    sy_buf_t enc;
};

/* ---------------------------------------------------------------- config */

static int dup_into(char **dst, const char *s)
{
    char *d = NULL;
    if (s && !(d = sy_strdup(s)))
        return ST_NOMEM;
    sy_free(*dst);
    *dst = d;
    return ST_OK;
}

void kve_config_default(kve_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->enable = false;
    c->publisher = NULL; /* auto: "zmq" when enabled, else "null" (resolved by parse/create) */
    c->endpoint = sy_strdup(KVE_DEFAULT_ENDPOINT); /* NULL on OOM is read as the default */
    c->replay_endpoint = NULL;
    c->topic = sy_strdup("");
    c->buffer_steps = 10000;
    c->hwm = 100000;
    c->max_queue_size = 100000;
    c->legacy_array = false;
    c->int_hashes = true;
    c->flush_interval_ms = 10;
    const char *env = getenv("VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0')
            c->int_hashes = v != 0;
        else
            sy_warn("kv_events.bad_env", "var=VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES value=\"%s\"",
                    env);
    }
}

void kve_config_deinit(kve_config_t *c)
{
    if (!c)
        return;
    sy_free(c->publisher);
    sy_free(c->endpoint);
    sy_free(c->replay_endpoint);
    sy_free(c->topic);
    c->publisher = c->endpoint = c->replay_endpoint = c->topic = NULL;
}

static int cfg_err(sy_buf_t *err, const char *key, const char *what)
{
    if (err)
        sy_buf_appendf(err, "kv-events-config: '%s' %s", key, what);
    return ST_INVAL;
}

static int cfg_bool(json_t *o, const char *key, bool *out, sy_buf_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return ST_OK;
    if (!json_is_boolean(v))
        return cfg_err(err, key, "must be a boolean");
    *out = json_is_true(v);
    return ST_OK;
}

/* nullable: JSON null sets *out to NULL. */
static int cfg_str(json_t *o, const char *key, bool nullable, char **out, sy_buf_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return ST_OK;
    if (json_is_null(v) && nullable)
        return dup_into(out, NULL);
    if (!json_is_string(v))
        return cfg_err(err, key, nullable ? "must be a string or null" : "must be a string");
    return dup_into(out, json_string_value(v));
}

static int cfg_int(json_t *o, const char *key, json_int_t lo, json_int_t hi, json_int_t *out,
                   bool *present, sy_buf_t *err)
{
    json_t *v = json_object_get(o, key);
    *present = false;
    if (!v)
        return ST_OK;
    if (!json_is_integer(v))
        return cfg_err(err, key, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        if (err)
            sy_buf_appendf(err,
                           "kv-events-config: '%s' must be in [%" JSON_INTEGER_FORMAT
                           ", %" JSON_INTEGER_FORMAT "]",
                           key, lo, hi);
        return ST_INVAL;
    }
    *out = x;
    *present = true;
    return ST_OK;
}

int kve_config_parse(const char *json, kve_config_t *c, sy_buf_t *err)
{
    json_error_t jerr;
    json_t *o = json_loads(json ? json : "", 0, &jerr);
    int st = ST_INVAL;
    if (!o) {
        if (err)
            sy_buf_appendf(err, "kv-events-config: invalid JSON: %s", jerr.text);
        return ST_INVAL;
    }
    if (!json_is_object(o)) {
        if (err)
            sy_buf_appendf(err, "kv-events-config: must be a JSON object");
        goto out;
    }
    if ((st = cfg_bool(o, "enable_kv_cache_events", &c->enable, err)) != ST_OK ||
        (st = cfg_str(o, "publisher", true, &c->publisher, err)) != ST_OK ||
        (st = cfg_str(o, "endpoint", false, &c->endpoint, err)) != ST_OK ||
        (st = cfg_str(o, "replay_endpoint", true, &c->replay_endpoint, err)) != ST_OK ||
        (st = cfg_str(o, "topic", false, &c->topic, err)) != ST_OK)
        goto out;
    if (c->publisher && strcmp(c->publisher, "zmq") != 0 && strcmp(c->publisher, "null") != 0) {
        st = cfg_err(err, "publisher", "must be \"zmq\" or \"null\"");
        goto out;
    }
    if (!c->publisher && (st = dup_into(&c->publisher, c->enable ? "zmq" : "null")) != ST_OK)
        goto out;

    json_int_t v;
    bool have;
    if ((st = cfg_int(o, "buffer_steps", 0, UINT32_MAX, &v, &have, err)) != ST_OK)
        goto out;
    if (have)
        c->buffer_steps = (uint32_t)v;
    if ((st = cfg_int(o, "hwm", 0, INT32_MAX, &v, &have, err)) != ST_OK)
        goto out;
    if (have)
        c->hwm = (int)v;
    if ((st = cfg_int(o, "max_queue_size", 1, UINT32_MAX, &v, &have, err)) != ST_OK)
        goto out;
    if (have)
        c->max_queue_size = (uint32_t)v;
    if ((st = cfg_int(o, "flush_interval_ms", 1, 60000, &v, &have, err)) != ST_OK)
        goto out;
    if (have)
        c->flush_interval_ms = (uint32_t)v;

    json_t *enc = json_object_get(o, "event_encoding");
    if (enc) {
        const char *s = json_is_string(enc) ? json_string_value(enc) : NULL;
        if (s && strcmp(s, "map") == 0) {
            c->legacy_array = false;
        } else if (s && strcmp(s, "array") == 0) {
            c->legacy_array = true;
        } else {
            st = cfg_err(err, "event_encoding", "must be \"map\" or \"array\"");
            goto out;
        }
    }
    st = ST_OK;
out:
    json_decref(o);
    return st;
}

/* --------------------------------------------------------------- events */

kve_event_t *kve_event_new(kve_ev_type_t type, const kvh_digest_t *hashes, uint32_t n,
                           const kvh_digest_t *parent, const int32_t *token_ids,
                           uint32_t block_size)
{
    uint32_t n_hashes = type == KVE_EV_CLEARED ? 0 : n;
    uint64_t n_tokens = type == KVE_EV_STORED ? (uint64_t)n * block_size : 0;
    if (n_tokens > UINT32_MAX)
        return NULL;
    size_t size = sizeof(kve_event_t) + (size_t)n_hashes * sizeof(kvh_digest_t) +
                  (size_t)n_tokens * sizeof(int32_t);
    kve_event_t *e = sy_malloc(size);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->n_hashes = n_hashes;
    e->hashes = (kvh_digest_t *)(e + 1);
    if (n_hashes)
        memcpy(e->hashes, hashes, (size_t)n_hashes * sizeof(kvh_digest_t));
    if (type == KVE_EV_STORED) {
        e->block_size = block_size;
        e->n_tokens = (uint32_t)n_tokens;
        e->token_ids = (int32_t *)(e->hashes + n_hashes);
        if (n_tokens)
            memcpy(e->token_ids, token_ids, (size_t)n_tokens * sizeof(int32_t));
        if (parent) {
            e->has_parent = true;
            e->parent = *parent;
        }
    }
    return e;
}

void kve_event_free(kve_event_t *e)
{
    sy_free(e);
}

void kve_event_free_list(kve_event_t *head)
{
    while (head) {
        kve_event_t *next = head->next;
        kve_event_free(head);
        head = next;
    }
}

/* ------------------------------------------------------------- encoding */

static int buf_write(void *data, const char *p, size_t len)
{
    return sy_buf_append(data, p, len) == ST_OK ? 0 : -1;
}

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int pack_hash(msgpack_packer *pk, const kvh_digest_t *h, bool int_hashes)
{
    if (int_hashes)
        return msgpack_pack_uint64(pk, kvh_low64(h));
    return msgpack_pack_bin(pk, sizeof(h->b)) | msgpack_pack_bin_body(pk, h->b, sizeof(h->b));
}

static int pack_hashes(msgpack_packer *pk, const kve_event_t *e, bool int_hashes)
{
    int rc = msgpack_pack_array(pk, e->n_hashes);
    for (uint32_t i = 0; i < e->n_hashes; i++)
        rc |= pack_hash(pk, &e->hashes[i], int_hashes);
    return rc;
}

static int pack_stored(msgpack_packer *pk, const kve_event_t *e, bool legacy, bool int_hashes)
{
    int rc = 0;
    /* Field order = BlockStored's declaration order (array positions 1..7 in legacy form). */
    if (legacy) {
        rc |= msgpack_pack_array(pk, 8);
        rc |= pack_cstr(pk, "BlockStored");
    } else {
        rc |= msgpack_pack_map(pk, 8);
        rc |= pack_cstr(pk, "type") | pack_cstr(pk, "BlockStored");
        rc |= pack_cstr(pk, "block_hashes");
    }
    rc |= pack_hashes(pk, e, int_hashes);
    if (!legacy)
        rc |= pack_cstr(pk, "parent_block_hash");
    rc |= e->has_parent ? pack_hash(pk, &e->parent, int_hashes) : msgpack_pack_nil(pk);
    if (!legacy)
        rc |= pack_cstr(pk, "token_ids");
    rc |= msgpack_pack_array(pk, e->n_tokens);
    for (uint32_t i = 0; i < e->n_tokens; i++)
        rc |= msgpack_pack_int32(pk, e->token_ids[i]);
    if (!legacy)
        rc |= pack_cstr(pk, "block_size");
    rc |= msgpack_pack_uint32(pk, e->block_size);
    if (!legacy)
        rc |= pack_cstr(pk, "lora_id");
    rc |= msgpack_pack_nil(pk);
    if (!legacy)
        rc |= pack_cstr(pk, "medium");
    rc |= pack_cstr(pk, "GPU");
    if (!legacy)
        rc |= pack_cstr(pk, "lora_name");
    rc |= msgpack_pack_nil(pk);
    return rc;
}

static int pack_removed(msgpack_packer *pk, const kve_event_t *e, bool legacy, bool int_hashes)
{
    int rc = 0;
    if (legacy) {
        rc |= msgpack_pack_array(pk, 3);
        rc |= pack_cstr(pk, "BlockRemoved");
        rc |= pack_hashes(pk, e, int_hashes);
        rc |= pack_cstr(pk, "GPU");
    } else {
        rc |= msgpack_pack_map(pk, 3);
        rc |= pack_cstr(pk, "type") | pack_cstr(pk, "BlockRemoved");
        rc |= pack_cstr(pk, "block_hashes") | pack_hashes(pk, e, int_hashes);
        rc |= pack_cstr(pk, "medium") | pack_cstr(pk, "GPU");
    }
    return rc;
}

static int pack_cleared(msgpack_packer *pk, bool legacy)
{
    if (legacy)
        return msgpack_pack_array(pk, 1) | pack_cstr(pk, "AllBlocksCleared");
    return msgpack_pack_map(pk, 1) | pack_cstr(pk, "type") | pack_cstr(pk, "AllBlocksCleared");
}

int kve_encode_batch(const kve_event_t *head, uint32_t n, double ts, bool legacy_array,
                     bool int_hashes, sy_buf_t *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    int rc = msgpack_pack_array(&pk, 3);
    rc |= msgpack_pack_double(&pk, ts);
    rc |= msgpack_pack_array(&pk, n);
    const kve_event_t *e = head;
    for (uint32_t i = 0; i < n; i++, e = e->next) {
        SY_ASSERT(e != NULL);
        switch (e->type) {
        case KVE_EV_STORED:
            rc |= pack_stored(&pk, e, legacy_array, int_hashes);
            break;
        case KVE_EV_REMOVED:
            rc |= pack_removed(&pk, e, legacy_array, int_hashes);
            break;
        case KVE_EV_CLEARED:
            rc |= pack_cleared(&pk, legacy_array);
            break;
        }
    }
    rc |= msgpack_pack_int(&pk, 0); /* data_parallel_rank */
    return rc ? ST_NOMEM : ST_OK;
}

bool kve_endpoint_binds(const char *endpoint)
{
    return strchr(endpoint, '*') != NULL || strstr(endpoint, "::") != NULL ||
           strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0;
}

/* ------------------------------------------------------ publisher thread */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

static void count_dropped(kve_pub_t *p, uint64_t n)
{
    uint64_t old = atomic_fetch_add(&p->dropped, n);
    if (old == 0 || old / 10000 != (old + n) / 10000)
        sy_warn("kv_events.dropped", "total=%" PRIu64, old + n);
}

/* Keeps a copy of the payload just sent for replay (oldest slot recycled when full). */
static void ring_push(kve_pub_t *p, uint64_t seq, const char *data, size_t len)
{
    uint32_t steps = p->cfg.buffer_steps;
    if (steps == 0)
        return;
    char *copy = sy_malloc(len ? len : 1);
    if (!copy) {
        sy_warn("kv_events.replay_nomem", "seq=%" PRIu64, seq);
        return;
    }
    memcpy(copy, data, len);
    kve_replay_slot_t *slot;
    if (p->ring_len < steps) {
        slot = &p->ring[(p->ring_start + p->ring_len) % steps];
        p->ring_len++;
    } else {
        slot = &p->ring[p->ring_start];
        sy_free(slot->data);
        p->ring_start = (p->ring_start + 1) % steps;
    }
    slot->seq = seq;
    slot->data = copy;
    slot->len = len;
}

/* Sends one batch with the n events of list head (publisher thread). */
static void publish(kve_pub_t *p, const kve_event_t *head, uint32_t n)
{
    sy_buf_reset(&p->enc);
    if (kve_encode_batch(head, n, now_unix(), p->cfg.legacy_array, p->cfg.int_hashes, &p->enc) !=
        ST_OK) {
        sy_error("kv_events.encode_failed", "events=%u", n);
        count_dropped(p, n);
        return;
    }
    uint64_t seq = p->next_seq++;
    uint8_t seqb[8];
    put_be64(seqb, seq);
    const char *topic = p->cfg.topic ? p->cfg.topic : "";
    /* PUB never blocks: at the high-water mark ZMQ drops the message for that subscriber. */
    if (zmq_send(p->pub, topic, strlen(topic), ZMQ_SNDMORE) < 0 ||
        zmq_send(p->pub, seqb, sizeof(seqb), ZMQ_SNDMORE) < 0 ||
        zmq_send(p->pub, p->enc.data, p->enc.len, 0) < 0)
        sy_warn("kv_events.send_failed", "seq=%" PRIu64 " err=\"%s\"", seq,
                zmq_strerror(zmq_errno()));
    atomic_fetch_add(&p->batches, 1);
    ring_push(p, seq, p->enc.data, p->enc.len);
}

/* Answers queued replay requests [id, "", start_seq] (publisher thread). */
static void service_replay(kve_pub_t *p)
{
    static const uint8_t end_seq[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    for (int req = 0; req < KVE_MAX_REPLAY_REQS; req++) {
        uint8_t id[256], seqb[8], tmp[256];
        size_t id_len = 0;
        int nf = 0;
        bool ok = true;
        int more = 1;
        while (more) {
            int r = zmq_recv(p->replay, tmp, sizeof(tmp), nf == 0 ? ZMQ_DONTWAIT : 0);
            if (r < 0) {
                if (nf == 0)
                    return; /* EAGAIN: nothing more queued */
                ok = false;
                break;
            }
            if (nf == 0) {
                id_len = (size_t)r < sizeof(id) ? (size_t)r : sizeof(id);
                memcpy(id, tmp, id_len);
                ok = (size_t)r <= sizeof(id);
            } else if (nf == 1) {
                ok = ok && r == 0;
            } else if (nf == 2) {
                ok = ok && r == 8;
                if (r == 8)
                    memcpy(seqb, tmp, 8);
            }
            nf++;
            size_t sz = sizeof(more);
            if (zmq_getsockopt(p->replay, ZMQ_RCVMORE, &more, &sz) < 0)
                more = 0;
        }
        if (!ok || nf != 3) {
            sy_warn("kv_events.bad_replay_request", "frames=%d", nf);
            continue;
        }
        uint64_t start = get_be64(seqb);
        uint32_t sent = 0;
        for (uint32_t i = 0; i < p->ring_len; i++) {
            const kve_replay_slot_t *s = &p->ring[(p->ring_start + i) % p->cfg.buffer_steps];
            if (s->seq < start)
                continue;
            uint8_t sb[8];
            put_be64(sb, s->seq);
            zmq_send(p->replay, id, id_len, ZMQ_SNDMORE);
            zmq_send(p->replay, "", 0, ZMQ_SNDMORE);
            zmq_send(p->replay, sb, sizeof(sb), ZMQ_SNDMORE);
            zmq_send(p->replay, s->data, s->len, 0);
            sent++;
        }
        zmq_send(p->replay, id, id_len, ZMQ_SNDMORE);
        zmq_send(p->replay, "", 0, ZMQ_SNDMORE);
        zmq_send(p->replay, end_seq, sizeof(end_seq), ZMQ_SNDMORE);
        zmq_send(p->replay, "", 0, 0);
        sy_debug("kv_events.replay", "start_seq=%" PRIu64 " batches=%u", start, sent);
    }
}

static void *pub_thread(void *arg)
{
    kve_pub_t *p = arg;
    uint64_t next_flush = now_ms() + p->cfg.flush_interval_ms;
    for (;;) {
        zmq_pollitem_t items[2] = {
            {NULL, p->wake_fd, ZMQ_POLLIN, 0},
            {p->replay, 0, ZMQ_POLLIN, 0},
        };
        int n_items = p->replay ? 2 : 1;
        uint64_t now = now_ms();
        long timeout = next_flush > now ? (long)(next_flush - now) : 0;
        if (zmq_poll(items, n_items, timeout) < 0 && zmq_errno() != EINTR) {
            sy_error("kv_events.poll_failed", "err=\"%s\"", zmq_strerror(zmq_errno()));
            struct timespec ts = {0, 1000000L * (long)p->cfg.flush_interval_ms};
            nanosleep(&ts, NULL);
        }
        if (items[0].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(p->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                sy_warn("kv_events.wake_read", "errno=%d", errno);
        }
        if (n_items > 1 && (items[1].revents & ZMQ_POLLIN))
            service_replay(p);

        now = now_ms();
        kve_event_t *taken = NULL;
        uint32_t n = 0;
        pthread_mutex_lock(&p->mu);
        bool stop = p->stopping;
        if (now >= next_flush || stop || p->q_len >= KVE_MAX_BATCH_EVENTS) {
            taken = p->q_head;
            n = p->q_len;
            p->q_head = p->q_tail = NULL;
            p->q_len = 0;
        }
        pthread_mutex_unlock(&p->mu);
        if (n)
            publish(p, taken, n);
        kve_event_free_list(taken);
        if (now >= next_flush)
            next_flush = now + p->cfg.flush_interval_ms;
        if (stop)
            break;
    }
    zmq_close(p->pub);
    p->pub = NULL;
    if (p->replay) {
        zmq_close(p->replay);
        p->replay = NULL;
    }
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static int zmq_status(void)
{
    int e = zmq_errno();
    return (e > 0 && e < 4096) ? -e : ST_INVAL;
}

static int config_copy(kve_config_t *dst, const kve_config_t *src)
{
    *dst = *src;
    dst->publisher = dst->endpoint = dst->replay_endpoint = dst->topic = NULL;
    const char *pubname = src->publisher ? src->publisher : (src->enable ? "zmq" : "null");
    if (dup_into(&dst->publisher, pubname) != ST_OK ||
        dup_into(&dst->endpoint, src->endpoint ? src->endpoint : KVE_DEFAULT_ENDPOINT) != ST_OK ||
        dup_into(&dst->replay_endpoint, src->replay_endpoint) != ST_OK ||
        dup_into(&dst->topic, src->topic ? src->topic : "") != ST_OK)
        return ST_NOMEM;
    return ST_OK;
}

static int socket_setup(kve_pub_t *p)
{
    int linger = KVE_LINGER_MS, hwm = p->cfg.hwm, zero = 0;
    const char *ep = p->cfg.endpoint;
    p->pub = zmq_socket(p->zctx, ZMQ_PUB);
    if (!p->pub)
        return zmq_status();
    if (zmq_setsockopt(p->pub, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(p->pub, ZMQ_LINGER, &linger, sizeof(linger)) < 0)
        return zmq_status();
    bool bind = kve_endpoint_binds(ep);
    if ((bind ? zmq_bind(p->pub, ep) : zmq_connect(p->pub, ep)) < 0) {
        int st = zmq_status();
        sy_error("kv_events.socket_failed", "op=%s endpoint=\"%s\" err=\"%s\"",
                 bind ? "bind" : "connect", ep, zmq_strerror(zmq_errno()));
        return st;
    }
    size_t sz = sizeof(p->pub_endpoint);
    if (!bind || zmq_getsockopt(p->pub, ZMQ_LAST_ENDPOINT, p->pub_endpoint, &sz) < 0)
        snprintf(p->pub_endpoint, sizeof(p->pub_endpoint), "%s", ep);
    sy_info("kv_events.publish", "op=%s endpoint=\"%s\" topic=\"%s\"", bind ? "bind" : "connect",
            p->pub_endpoint, p->cfg.topic);

    if (!p->cfg.replay_endpoint)
        return ST_OK;
    p->replay = zmq_socket(p->zctx, ZMQ_ROUTER);
    if (!p->replay)
        return zmq_status();
    if (zmq_setsockopt(p->replay, ZMQ_SNDHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(p->replay, ZMQ_LINGER, &zero, sizeof(zero)) < 0)
        return zmq_status();
    if (zmq_bind(p->replay, p->cfg.replay_endpoint) < 0) {
        int st = zmq_status();
        sy_error("kv_events.socket_failed", "op=bind endpoint=\"%s\" err=\"%s\"",
                 p->cfg.replay_endpoint, zmq_strerror(zmq_errno()));
        return st;
    }
    sz = sizeof(p->replay_endpoint);
    if (zmq_getsockopt(p->replay, ZMQ_LAST_ENDPOINT, p->replay_endpoint, &sz) < 0)
        snprintf(p->replay_endpoint, sizeof(p->replay_endpoint), "%s", p->cfg.replay_endpoint);
    sy_info("kv_events.replay_bind", "endpoint=\"%s\"", p->replay_endpoint);
    return ST_OK;
}

static void pub_free(kve_pub_t *p)
{
    if (p->pub)
        zmq_close(p->pub);
    if (p->replay)
        zmq_close(p->replay);
    if (p->zctx) {
        while (zmq_ctx_term(p->zctx) < 0 && zmq_errno() == EINTR)
            ;
    }
    kve_event_free_list(p->q_head);
    if (p->ring) {
        for (uint32_t i = 0; i < p->ring_len; i++)
            sy_free(p->ring[(p->ring_start + i) % p->cfg.buffer_steps].data);
        sy_free(p->ring);
    }
    sy_buf_deinit(&p->enc);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    if (p->mu_init)
        pthread_mutex_destroy(&p->mu);
    kve_config_deinit(&p->cfg);
    sy_free(p);
}

kve_pub_t *kve_create(const kve_config_t *cfg, int *status)
{
    int st = ST_NOMEM;
    kve_pub_t *p = sy_calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->wake_fd = -1;
    sy_buf_init(&p->enc);
    atomic_init(&p->batches, 0);
    atomic_init(&p->dropped, 0);
    if (config_copy(&p->cfg, cfg) != ST_OK)
        goto fail;
    if (strcmp(p->cfg.publisher, "zmq") != 0 && strcmp(p->cfg.publisher, "null") != 0) {
        sy_error("kv_events.bad_publisher", "publisher=\"%s\"", p->cfg.publisher);
        st = ST_INVAL;
        goto fail;
    }
    if (!p->cfg.enable || strcmp(p->cfg.publisher, "null") == 0) {
        p->active = false;
        *status = ST_OK;
        return p;
    }
    if (p->cfg.max_queue_size == 0 || p->cfg.flush_interval_ms == 0) {
        st = ST_INVAL;
        goto fail;
    }
    p->active = true;
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail;
    p->mu_init = true;
    if (p->cfg.buffer_steps &&
        !(p->ring = sy_calloc(p->cfg.buffer_steps, sizeof(kve_replay_slot_t))))
        goto fail;
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->wake_fd < 0) {
        st = -errno;
        goto fail;
    }
    p->zctx = zmq_ctx_new();
    if (!p->zctx) {
        st = zmq_status();
        goto fail;
    }
    if ((st = socket_setup(p)) != ST_OK)
        goto fail;

    /* the thread takes no signals: they stay with the threads that handle them */
    int rc = sy_thread_start(&p->thread, pub_thread, p);
    if (rc != ST_OK) {
        st = rc;
        goto fail;
    }
    p->thread_started = true;
    *status = ST_OK;
    return p;

fail:
    if (p)
        pub_free(p);
    *status = st;
    return NULL;
}

static void wake(kve_pub_t *p)
{
    uint64_t one = 1;
    if (write(p->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        sy_warn("kv_events.wake_write", "errno=%d", errno);
}

void kve_destroy(kve_pub_t *p)
{
    if (!p)
        return;
    if (p->thread_started) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_mutex_unlock(&p->mu);
        wake(p);
        pthread_join(p->thread, NULL); /* the thread flushes, then closes its sockets */
    }
    pub_free(p);
}

const char *kve_endpoint(const kve_pub_t *p)
{
    return p && p->active ? p->pub_endpoint : NULL;
}

const char *kve_replay_endpoint(const kve_pub_t *p)
{
    return p && p->active && p->replay_endpoint[0] ? p->replay_endpoint : NULL;
}

/* ------------------------------------------------------------ producers */

static void enqueue(kve_pub_t *p, kve_event_t *e)
{
    if (!e) {
        count_dropped(p, 1);
        return;
    }
    kve_event_t *drop = NULL;
    bool wake_now = false;
    pthread_mutex_lock(&p->mu);
    if (p->q_len >= p->cfg.max_queue_size) {
        drop = p->q_head;
        p->q_head = drop->next;
        if (!p->q_head)
            p->q_tail = NULL;
        p->q_len--;
        drop->next = NULL;
    }
    e->next = NULL;
    if (p->q_tail)
        p->q_tail->next = e;
    else
        p->q_head = e;
    p->q_tail = e;
    p->q_len++;
    wake_now = p->q_len == KVE_MAX_BATCH_EVENTS;
    pthread_mutex_unlock(&p->mu);
    if (drop) {
        kve_event_free(drop);
        count_dropped(p, 1);
    }
    if (wake_now)
        wake(p);
}

void kve_block_stored(kve_pub_t *p, const kvh_digest_t *hashes, uint32_t n,
                      const kvh_digest_t *parent, const int32_t *token_ids, uint32_t block_size)
{
    if (!p || !p->active || n == 0)
        return;
    enqueue(p, kve_event_new(KVE_EV_STORED, hashes, n, parent, token_ids, block_size));
}

void kve_block_removed(kve_pub_t *p, const kvh_digest_t *hashes, uint32_t n)
{
    if (!p || !p->active || n == 0)
        return;
    enqueue(p, kve_event_new(KVE_EV_REMOVED, hashes, n, NULL, NULL, 0));
}

void kve_all_cleared(kve_pub_t *p)
{
    if (!p || !p->active)
        return;
    enqueue(p, kve_event_new(KVE_EV_CLEARED, NULL, 0, NULL, NULL, 0));
}

uint64_t kve_batches_published(const kve_pub_t *p)
{
    return p ? atomic_load(&((kve_pub_t *)p)->batches) : 0;
}

uint64_t kve_events_dropped(const kve_pub_t *p)
{
    return p ? atomic_load(&((kve_pub_t *)p)->dropped) : 0;
}
