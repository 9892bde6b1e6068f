/*
 * kv_sub.c - KV-event subscriber (contract and sequencing rules in kv_sub.h).
 *
 * Ownership: kvsub_add_endpoint creates and connects the endpoint's sockets in the caller's
 * thread and publishes the record into `eps` under `mu`; the mutex is the full memory barrier ZMQ
 * asks for when a socket changes threads. From then on only the subscriber thread touches the
 * sockets. Removal is a request (`removing` + wake-up); the thread closes the sockets, clears the
 * index entries, frees the record and signals `cv`. Armed parity probes (kv_sub.h) are under a
 * second mutex, `probe_mu`, because apply() also runs under `mu` (replay timeout); the lock order
 * is mu -> probe_mu.
 *
 * Thread loop: under mu, reap removed endpoints and snapshot the poll set (wake eventfd, every
 * SUB, and every DEALER); then zmq_poll for at most poll_ms; drain up to KVSUB_BURST messages per
 * socket; check replay deadlines; publish each endpoint's working counters into its snapshot
 * under mu.
 *
 * Per-endpoint state machine (thread-owned):
 *   LIVE   --gap with replay socket--> REPLAY   (send ["", be64(last+1)], hold live messages)
 *   REPLAY --end marker-------------> LIVE     (apply held messages, stale = false)
 *   REPLAY --timeout / overflow-----> LIVE     (drop entries, apply held messages from the first)
 * Thread-safety: see kv_sub.h.
 */
#include "gateway/kv_sub.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"
#include "engine/kv_hash.h"

#define KVSUB_BURST 256     /* messages drained per socket per poll round */
#define KVSUB_RCVHWM 100000 /* SUB receive high-water mark (messages) */

typedef enum kvsub_state {
    KVSUB_LIVE = 0,
    KVSUB_REPLAY = 1,
} kvsub_state_t;

typedef struct kvsub_held {
    uint64_t seq;
    char *data; /* owned payload copy */
    size_t len;
} kvsub_held_t;

/* An armed parity probe (kvsub_probe_arm); guarded by probe_mu. */
typedef struct kvsub_probe {
    int32_t *tokens; /* owned */
    size_t n;
    kvsub_probe_result_t res;
} kvsub_probe_t;

typedef struct kvsub_ep {
    uint32_t id;
    char *endpoint;
    char *replay_endpoint; /* NULL without replay */
    void *sub;
    void *dealer;
    bool removing; /* guarded by mu */
    atomic_bool stale;
    atomic_bool probe_armed; /* probe != NULL, readable without mu */
    kvsub_probe_t *probe;    /* guarded by probe_mu; NULL = none armed */

    /* thread-owned */
    kvsub_state_t state;
    uint64_t replay_deadline_ms;
    kvsub_held_t *held;
    size_t n_held, held_cap;
    bool parity_warned;
    uint64_t err_logged;
    kvsub_stats_t w; /* working counters */

    kvsub_stats_t snap; /* guarded by mu */
} kvsub_ep_t;

struct kvsub {
    pidx_t *index;
    kvsub_config_t cfg;
    char *seed; /* owned copy of cfg.hash_seed */
    bool parity;
    kvh_digest_t none_hash;

    void *zctx;
    int wake_fd;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Guards every ep->probe. Taken after mu when both are held (apply() may run under mu, in
     * a replay timeout), never before it. */
    pthread_mutex_t probe_mu;
    bool sync_init;
    kvsub_ep_t **eps; /* guarded by mu; records freed only by the thread (or destroy) */
    size_t n_eps;
    bool stopping;

    /* thread-owned */
    kvd_batch_t batch;
    kvsub_ep_t **poll_eps;
    zmq_pollitem_t *items;
    size_t poll_cap;
};

/* ------------------------------------------------------------------ helpers */

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

static int zmq_status(void)
{
    int e = zmq_errno();
    return (e > 0 && e < 4096) ? -e : ST_INVAL;
}

static void wake(kvsub_t *s)
{
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        sy_warn("kv_sub.wake_write", "errno=%d", errno);
}

static kvsub_ep_t *ep_find_locked(kvsub_t *s, uint32_t id)
{
    for (size_t i = 0; i < s->n_eps; i++)
        if (s->eps[i]->id == id && !s->eps[i]->removing)
            return s->eps[i];
    return NULL;
}

static void held_clear(kvsub_ep_t *ep)
{
    for (size_t i = 0; i < ep->n_held; i++)
        sy_free(ep->held[i].data);
    ep->n_held = 0;
}

static void probe_free(kvsub_probe_t *p)
{
    if (!p)
        return;
    sy_free(p->tokens);
    sy_free(p);
}

static void ep_free(kvsub_ep_t *ep)
{
    if (!ep)
        return;
    probe_free(ep->probe);
    if (ep->sub)
        zmq_close(ep->sub);
    if (ep->dealer)
        zmq_close(ep->dealer);
    held_clear(ep);
    sy_free(ep->held);
    sy_free(ep->endpoint);
    sy_free(ep->replay_endpoint);
    sy_free(ep);
}

static void *dealer_open(kvsub_t *s, const char *endpoint, int *st)
{
    int zero = 0;
    int64_t maxmsg = (int64_t)s->cfg.limits.max_payload + 64;
    void *d = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!d) {
        *st = zmq_status();
        return NULL;
    }
    if (zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(d, ZMQ_RCVHWM, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(d, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0 ||
        zmq_connect(d, endpoint) < 0) {
        *st = zmq_status();
        zmq_close(d);
        return NULL;
    }
    *st = ST_OK;
    return d;
}

/* ------------------------------------------------------------- applying */

static bool medium_indexed(const kvsub_t *s, const kvd_event_t *ev)
{
    if (s->cfg.index_all_media || !ev->medium.ptr)
        return true;
    return ev->medium.len == 3 && strncasecmp(ev->medium.ptr, "GPU", 3) == 0;
}

static void parity_warn(kvsub_ep_t *ep, const char *why)
{
    if (ep->parity_warned)
        return;
    ep->parity_warned = true;
    sy_warn("kv_sub.hash_parity_mismatch",
            "ep=%u endpoint=\"%s\" why=\"%s\" msg=\"hash parity mismatch: set the same "
            "PYTHONHASHSEED and --block-size on the gateway and the engine; precise prefix "
            "scoring for this endpoint will find no hits\"",
            ep->id, ep->endpoint, why);
}

static void parity_check(kvsub_t *s, kvsub_ep_t *ep, const kvd_event_t *ev)
{
    if (s->cfg.block_size && ev->block_size && ev->block_size != s->cfg.block_size) {
        ep->w.parity_mismatches++;
        parity_warn(ep, "block_size differs");
        return;
    }
    if (!s->parity || ev->has_parent || !ev->has_tokens || ev->n_hashes == 0 ||
        ev->block_size == 0 || ev->n_tokens < ev->block_size || ev->lora_name.ptr || ev->has_extra0)
        return;
    kvh_digest_t d;
    kvh_block(&s->none_hash, ev->token_ids, ev->block_size, NULL, 0, &d);
    if (kvh_low64(&d) == ev->hashes[0]) {
        ep->w.parity_matches++;
    } else {
        ep->w.parity_mismatches++;
        parity_warn(ep, "first block hash differs");
    }
}

/* Records ev into ep's armed probe when its token ids continue the probe (kv_sub.h). */
static void probe_observe(kvsub_t *s, kvsub_ep_t *ep, const kvd_event_t *ev)
{
    if (!ev->has_tokens || ev->n_tokens == 0 || ev->n_hashes == 0)
        return;
    pthread_mutex_lock(&s->probe_mu);
    kvsub_probe_t *p = ep->probe;
    if (!p)
        goto out;
    kvsub_probe_result_t *r = &p->res;
    size_t off = 0;
    if (ev->has_parent) {
        if (!r->seen || r->n_hashes == 0 || ev->parent != r->hashes[r->n_hashes - 1])
            goto out;
        off = r->n_tokens;
    }
    if (ev->n_tokens > p->n - off ||
        memcmp(p->tokens + off, ev->token_ids, ev->n_tokens * sizeof(int32_t)) != 0)
        goto out;
    if (!ev->has_parent) { /* a root: (re)starts the record */
        memset(r, 0, sizeof(*r));
        r->seen = true;
        r->block_size = ev->block_size ? ev->block_size : (uint32_t)(ev->n_tokens / ev->n_hashes);
        r->has_extra = ev->has_extra0 || ev->lora_name.ptr != NULL;
    }
    for (size_t i = 0; i < ev->n_hashes && r->n_hashes < KVSUB_PROBE_MAX_HASHES; i++)
        r->hashes[r->n_hashes++] = ev->hashes[i];
    r->n_tokens = off + ev->n_tokens;
    r->n_events++;
out:
    pthread_mutex_unlock(&s->probe_mu);
}

/* Decodes one payload and applies it to the index. */
static void apply(kvsub_t *s, kvsub_ep_t *ep, const void *data, size_t len)
{
    kvd_batch_t *b = &s->batch;
    int st = kvd_decode(b, data, len, &s->cfg.limits);
    if (st != ST_OK) {
        ep->w.decode_errors++;
        if (ep->err_logged++ % 1000 == 0)
            sy_warn("kv_sub.decode_error", "ep=%u status=%s err=\"%s\" total=%" PRIu64, ep->id,
                    st_str(st), b->err, ep->w.decode_errors);
        return;
    }
    ep->w.last_batch_ts = b->ts;
    ep->w.last_recv_unix = now_unix();
    for (size_t i = 0; i < b->n_events; i++) {
        const kvd_event_t *ev = &b->events[i];
        if (ev->type != KVD_ALL_CLEARED && !medium_indexed(s, ev)) {
            ep->w.events_ignored++;
            continue;
        }
        ep->w.events++;
        switch (ev->type) {
        case KVD_BLOCK_STORED:
            parity_check(s, ep, ev);
            if (atomic_load_explicit(&ep->probe_armed, memory_order_acquire))
                probe_observe(s, ep, ev);
            pidx_add(s->index, ep->id, ev->hashes, ev->n_hashes);
            ep->w.blocks_stored += ev->n_hashes;
            break;
        case KVD_BLOCK_REMOVED:
            pidx_remove(s->index, ep->id, ev->hashes, ev->n_hashes);
            ep->w.blocks_removed += ev->n_hashes;
            break;
        case KVD_ALL_CLEARED:
            pidx_clear_endpoint(s->index, ep->id);
            ep->w.clears++;
            break;
        }
    }
}

static void accept_seq(kvsub_t *s, kvsub_ep_t *ep, uint64_t seq, const void *data, size_t len)
{
    apply(s, ep, data, len);
    ep->w.have_seq = true;
    ep->w.last_seq = seq;
}

static void drop_entries(kvsub_t *s, kvsub_ep_t *ep)
{
    atomic_store(&ep->stale, true);
    pidx_clear_endpoint(s->index, ep->id);
}

static int held_push(kvsub_t *s, kvsub_ep_t *ep, uint64_t seq, const void *data, size_t len)
{
    if (ep->n_held >= s->cfg.max_pending)
        return ST_LIMIT;
    if (ep->n_held == ep->held_cap) {
        size_t ncap = ep->held_cap ? ep->held_cap * 2 : 16;
        kvsub_held_t *h = sy_realloc(ep->held, ncap * sizeof(*h));
        if (!h)
            return ST_NOMEM;
        ep->held = h;
        ep->held_cap = ncap;
    }
    char *copy = sy_malloc(len ? len : 1);
    if (!copy)
        return ST_NOMEM;
    memcpy(copy, data, len);
    ep->held[ep->n_held++] = (kvsub_held_t){seq, copy, len};
    return ST_OK;
}

/* Sequences a batch that is not from the live stream (replayed, or held during a replay):
 * duplicates are skipped, a hole drops the entries and continues from seq. */
static void sequence_catchup(kvsub_t *s, kvsub_ep_t *ep, uint64_t seq, const void *data, size_t len)
{
    if (ep->w.have_seq && seq <= ep->w.last_seq)
        return;
    if (ep->w.have_seq && seq != ep->w.last_seq + 1) {
        ep->w.replay_failures++;
        sy_warn("kv_sub.replay_hole", "ep=%u last=%" PRIu64 " seq=%" PRIu64 " action=clear", ep->id,
                ep->w.last_seq, seq);
        drop_entries(s, ep);
    }
    accept_seq(s, ep, seq, data, len);
}

/* Leaves REPLAY: applies the held live messages in order. ok=false: the replay failed, so the
 * entries are dropped and the held messages start a new baseline. */
static void replay_finish(kvsub_t *s, kvsub_ep_t *ep, bool ok)
{
    ep->state = KVSUB_LIVE;
    if (!ok) {
        ep->w.replay_failures++;
        drop_entries(s, ep);
        ep->w.have_seq = false;
        /* a fresh DEALER so late replies of the abandoned replay cannot be mistaken for new */
        if (ep->dealer) {
            zmq_close(ep->dealer);
            int st;
            ep->dealer = dealer_open(s, ep->replay_endpoint, &st);
            if (!ep->dealer)
                sy_error("kv_sub.replay_reopen_failed", "ep=%u status=%s", ep->id, st_str(st));
        }
    }
    for (size_t i = 0; i < ep->n_held; i++)
        sequence_catchup(s, ep, ep->held[i].seq, ep->held[i].data, ep->held[i].len);
    held_clear(ep);
    atomic_store(&ep->stale, false);
    sy_info("kv_sub.replay_done", "ep=%u ok=%d last_seq=%" PRIu64, ep->id, ok, ep->w.last_seq);
}

static void replay_start(kvsub_t *s, kvsub_ep_t *ep, uint64_t from)
{
    uint8_t seqb[8];
    kvd_be64_put(seqb, from);
    atomic_store(&ep->stale, true);
    ep->w.replays++;
    if (zmq_send(ep->dealer, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(ep->dealer, seqb, sizeof(seqb), ZMQ_DONTWAIT) < 0) {
        sy_warn("kv_sub.replay_send_failed", "ep=%u err=\"%s\"", ep->id, zmq_strerror(zmq_errno()));
        ep->state = KVSUB_REPLAY;
        replay_finish(s, ep, false);
        return;
    }
    ep->state = KVSUB_REPLAY;
    ep->replay_deadline_ms = now_ms() + (uint64_t)s->cfg.replay_timeout_ms;
}

/* One message from the live SUB stream. */
static void on_live(kvsub_t *s, kvsub_ep_t *ep, uint64_t seq, const void *data, size_t len)
{
    if (ep->state == KVSUB_REPLAY) {
        if (held_push(s, ep, seq, data, len) != ST_OK) {
            sy_warn("kv_sub.replay_overflow", "ep=%u held=%zu", ep->id, ep->n_held);
            replay_finish(s, ep, false);
            sequence_catchup(s, ep, seq, data, len);
        }
        return;
    }
    if (ep->w.have_seq) {
        uint64_t last = ep->w.last_seq;
        if (seq <= last) {
            ep->w.restarts++;
            sy_info("kv_sub.publisher_restart", "ep=%u last=%" PRIu64 " seq=%" PRIu64, ep->id, last,
                    seq);
            drop_entries(s, ep);
        } else if (seq != last + 1) {
            ep->w.gaps++;
            sy_warn("kv_sub.gap", "ep=%u last=%" PRIu64 " seq=%" PRIu64 " action=%s", ep->id, last,
                    seq, ep->dealer ? "replay" : "clear");
            if (ep->dealer) {
                replay_start(s, ep, last + 1);
                if (ep->state == KVSUB_REPLAY) {
                    if (held_push(s, ep, seq, data, len) != ST_OK)
                        replay_finish(s, ep, false);
                    else
                        return;
                }
            } else {
                drop_entries(s, ep);
            }
        }
    }
    accept_seq(s, ep, seq, data, len);
    atomic_store(&ep->stale, false);
}

/* One reply ["", seq, payload] from the replay DEALER. */
static void on_replay(kvsub_t *s, kvsub_ep_t *ep, uint64_t seq, const void *data, size_t len)
{
    if (ep->state != KVSUB_REPLAY)
        return; /* late reply of an abandoned replay */
    if (seq == UINT64_MAX) {
        replay_finish(s, ep, true);
        return;
    }
    ep->w.messages++;
    sequence_catchup(s, ep, seq, data, len);
}

/* ------------------------------------------------------------ receiving */

/* Receives one multipart message from sock without blocking. Returns false when none is queued.
 * Frames beyond 3 are counted and discarded; f[] holds the first min(n, 3). */
static bool recv_msg(void *sock, zmq_msg_t f[3], size_t *n_frames)
{
    size_t n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *m = n < 3 ? &f[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (n >= 3)
            zmq_msg_close(m);
        n++;
    }
    *n_frames = n;
    return n > 0;
}

static void close_frames(zmq_msg_t f[3], size_t n)
{
    for (size_t i = 0; i < n && i < 3; i++)
        zmq_msg_close(&f[i]);
}

static void drain_sub(kvsub_t *s, kvsub_ep_t *ep)
{
    for (int k = 0; k < KVSUB_BURST; k++) {
        zmq_msg_t f[3];
        size_t n;
        if (!recv_msg(ep->sub, f, &n))
            return;
        ep->w.messages++;
        uint64_t seq;
        if (n >= 2 && kvd_check_framing(n, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &seq) == ST_OK)
            on_live(s, ep, seq, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]));
        else
            ep->w.decode_errors++;
        close_frames(f, n);
    }
}

static void drain_dealer(kvsub_t *s, kvsub_ep_t *ep)
{
    for (int k = 0; k < KVSUB_BURST && ep->dealer; k++) {
        zmq_msg_t f[3];
        size_t n;
        if (!recv_msg(ep->dealer, f, &n))
            return;
        /* ["", seq, payload]: same shape as the PUB framing with an empty first frame */
        uint64_t seq;
        if (n >= 2 && zmq_msg_size(&f[0]) == 0 &&
            kvd_check_framing(n, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &seq) == ST_OK)
            on_replay(s, ep, seq, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]));
        else if (ep->state == KVSUB_REPLAY)
            ep->w.decode_errors++;
        close_frames(f, n);
    }
}

/* ---------------------------------------------------------------- thread */

/* Under mu: frees endpoints marked for removal, then snapshots the poll set. Returns items. */
static size_t prepare_round(kvsub_t *s)
{
    bool removed = false;
    for (size_t i = 0; i < s->n_eps;) {
        kvsub_ep_t *ep = s->eps[i];
        if (!ep->removing) {
            i++;
            continue;
        }
        pidx_clear_endpoint(s->index, ep->id);
        ep_free(ep);
        s->eps[i] = s->eps[--s->n_eps];
        removed = true;
    }
    if (removed)
        pthread_cond_broadcast(&s->cv);

    size_t need = 1 + 2 * s->n_eps;
    if (need > s->poll_cap) {
        zmq_pollitem_t *it = sy_realloc(s->items, need * sizeof(*it));
        if (it)
            s->items = it;
        kvsub_ep_t **pe = sy_realloc(s->poll_eps, need * sizeof(*pe));
        if (pe)
            s->poll_eps = pe;
        if (!it || !pe)
            return 0;
        s->poll_cap = need;
    }
    size_t n = 0;
    s->items[n] = (zmq_pollitem_t){NULL, s->wake_fd, ZMQ_POLLIN, 0};
    s->poll_eps[n++] = NULL;
    for (size_t i = 0; i < s->n_eps; i++) {
        kvsub_ep_t *ep = s->eps[i];
        s->items[n] = (zmq_pollitem_t){ep->sub, 0, ZMQ_POLLIN, 0};
        s->poll_eps[n++] = ep;
        if (ep->dealer) {
            s->items[n] = (zmq_pollitem_t){ep->dealer, 0, ZMQ_POLLIN, 0};
            s->poll_eps[n++] = ep;
        }
    }
    return n;
}

static void *sub_thread(void *arg)
{
    kvsub_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        size_t n = prepare_round(s);
        pthread_mutex_unlock(&s->mu);
        if (n == 0) {
            struct timespec ts = {0, 1000000L * s->cfg.poll_ms};
            nanosleep(&ts, NULL);
            continue;
        }
        if (zmq_poll(s->items, (int)n, s->cfg.poll_ms) < 0 && zmq_errno() != EINTR) {
            sy_error("kv_sub.poll_failed", "err=\"%s\"", zmq_strerror(zmq_errno()));
            struct timespec ts = {0, 1000000L * s->cfg.poll_ms};
            nanosleep(&ts, NULL);
        }
        if (s->items[0].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(s->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                sy_warn("kv_sub.wake_read", "errno=%d", errno);
        }
        for (size_t i = 1; i < n; i++) {
            kvsub_ep_t *ep = s->poll_eps[i];
            if (!(s->items[i].revents & ZMQ_POLLIN))
                continue;
            if (s->items[i].socket == ep->sub)
                drain_sub(s, ep);
            else if (s->items[i].socket == ep->dealer)
                drain_dealer(s, ep);
        }
        uint64_t now = now_ms();
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->n_eps; i++) {
            kvsub_ep_t *ep = s->eps[i];
            if (ep->state == KVSUB_REPLAY && now >= ep->replay_deadline_ms) {
                sy_warn("kv_sub.replay_timeout", "ep=%u", ep->id);
                replay_finish(s, ep, false);
            }
            ep->w.stale = atomic_load(&ep->stale);
            ep->snap = ep->w;
        }
        pthread_mutex_unlock(&s->mu);
    }
    /* close the sockets in the thread that owns them */
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_eps; i++) {
        kvsub_ep_t *ep = s->eps[i];
        if (ep->sub)
            zmq_close(ep->sub);
        if (ep->dealer)
            zmq_close(ep->dealer);
        ep->sub = ep->dealer = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------- lifecycle */

void kvsub_config_default(kvsub_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->poll_ms = 20;
    c->replay_timeout_ms = 2000;
    c->max_pending = 10000;
    kvd_limits_default(&c->limits);
}

static void sub_free(kvsub_t *s)
{
    if (s->sync_init) {
        for (size_t i = 0; i < s->n_eps; i++)
            ep_free(s->eps[i]);
        pthread_mutex_destroy(&s->probe_mu);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
    }
    if (s->zctx) {
        while (zmq_ctx_term(s->zctx) < 0 && zmq_errno() == EINTR)
            ;
    }
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    kvd_batch_deinit(&s->batch);
    sy_free(s->eps);
    sy_free(s->items);
    sy_free(s->poll_eps);
    sy_free(s->seed);
    sy_free(s);
}

kvsub_t *kvsub_create(pidx_t *index, const kvsub_config_t *cfg, int *status)
{
    int st = ST_INVAL;
    kvsub_t *s = NULL;
    if (!index || !cfg)
        goto fail;
    st = ST_NOMEM;
    if (!(s = sy_calloc(1, sizeof(*s))))
        goto fail;
    s->wake_fd = -1;
    s->index = index;
    s->cfg = *cfg;
    s->cfg.hash_seed = NULL;
    if (s->cfg.poll_ms <= 0)
        s->cfg.poll_ms = 20;
    if (s->cfg.replay_timeout_ms <= 0)
        s->cfg.replay_timeout_ms = 2000;
    if (s->cfg.max_pending == 0)
        s->cfg.max_pending = 10000;
    if (s->cfg.limits.max_payload == 0 && s->cfg.limits.max_events == 0 &&
        s->cfg.limits.max_hashes == 0 && s->cfg.limits.max_tokens == 0)
        kvd_limits_default(&s->cfg.limits);
    kvd_batch_init(&s->batch);
    if (cfg->hash_seed) {
        if (!(s->seed = sy_strdup(cfg->hash_seed)))
            goto fail;
        s->cfg.hash_seed = s->seed;
        kvh_none_hash(s->seed, &s->none_hash);
        s->parity = true;
    }
    if (!(s->eps = sy_calloc(KVSUB_MAX_ENDPOINTS, sizeof(*s->eps))))
        goto fail;
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    if (pthread_mutex_init(&s->probe_mu, NULL) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    s->sync_init = true;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0) {
        st = -errno;
        goto fail;
    }
    if (!(s->zctx = zmq_ctx_new())) {
        st = zmq_status();
        goto fail;
    }
    int rc = sy_thread_start(&s->thread, sub_thread, s);
    if (rc != ST_OK) {
        st = rc;
        goto fail;
    }
    s->thread_started = true;
    *status = ST_OK;
    return s;

fail:
    if (s)
        sub_free(s);
    *status = st;
    return NULL;
}

void kvsub_destroy(kvsub_t *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_mutex_unlock(&s->mu);
        wake(s);
        pthread_join(s->thread, NULL);
    }
    sub_free(s);
}

/* -------------------------------------------------------------- endpoints */

int kvsub_add_endpoint(kvsub_t *s, uint32_t ep_id, const char *zmq_endpoint,
                       const char *replay_endpoint, const char *topic_filter)
{
    if (!s || !zmq_endpoint)
        return ST_INVAL;
    const char *topic = topic_filter ? topic_filter : "";
    int st = ST_NOMEM;
    kvsub_ep_t *ep = sy_calloc(1, sizeof(*ep));
    if (!ep)
        return ST_NOMEM;
    ep->id = ep_id;
    atomic_init(&ep->stale, false);
    atomic_init(&ep->probe_armed, false);
    if (!(ep->endpoint = sy_strdup(zmq_endpoint)) ||
        (replay_endpoint && !(ep->replay_endpoint = sy_strdup(replay_endpoint))))
        goto fail;

    int zero = 0, hwm = KVSUB_RCVHWM;
    int64_t maxmsg = (int64_t)s->cfg.limits.max_payload + 64;
    if (!(ep->sub = zmq_socket(s->zctx, ZMQ_SUB))) {
        st = zmq_status();
        goto fail;
    }
    if (zmq_setsockopt(ep->sub, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_setsockopt(ep->sub, ZMQ_RCVHWM, &hwm, sizeof(hwm)) < 0 ||
        zmq_setsockopt(ep->sub, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0 ||
        zmq_setsockopt(ep->sub, ZMQ_SUBSCRIBE, topic, strlen(topic)) < 0 ||
        zmq_connect(ep->sub, zmq_endpoint) < 0) {
        st = zmq_status();
        sy_error("kv_sub.connect_failed", "ep=%u endpoint=\"%s\" err=\"%s\"", ep_id, zmq_endpoint,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (replay_endpoint && !(ep->dealer = dealer_open(s, replay_endpoint, &st))) {
        sy_error("kv_sub.connect_failed", "ep=%u replay_endpoint=\"%s\" status=%s", ep_id,
                 replay_endpoint, st_str(st));
        goto fail;
    }

    pthread_mutex_lock(&s->mu);
    if (ep_find_locked(s, ep_id)) {
        st = ST_EXISTS;
    } else if (s->n_eps >= KVSUB_MAX_ENDPOINTS) {
        st = ST_LIMIT;
    } else {
        s->eps[s->n_eps++] = ep;
        st = ST_OK;
    }
    pthread_mutex_unlock(&s->mu);
    if (st != ST_OK)
        goto fail;
    wake(s);
    sy_info("kv_sub.subscribe", "ep=%u endpoint=\"%s\" replay=\"%s\" topic=\"%s\"", ep_id,
            zmq_endpoint, replay_endpoint ? replay_endpoint : "", topic);
    return ST_OK;

fail:
    ep_free(ep);
    return st;
}

int kvsub_remove_endpoint(kvsub_t *s, uint32_t ep_id)
{
    if (!s)
        return ST_NOTFOUND;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    if (!ep) {
        pthread_mutex_unlock(&s->mu);
        return ST_NOTFOUND;
    }
    ep->removing = true;
    wake(s);
    for (;;) {
        bool present = false;
        for (size_t i = 0; i < s->n_eps; i++)
            present |= s->eps[i] == ep;
        if (!present)
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return ST_OK;
}

int kvsub_get_stats(kvsub_t *s, uint32_t ep_id, kvsub_stats_t *out)
{
    if (!s)
        return ST_NOTFOUND;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    if (ep) {
        *out = ep->snap;
        out->stale = atomic_load(&ep->stale);
    }
    pthread_mutex_unlock(&s->mu);
    return ep ? ST_OK : ST_NOTFOUND;
}

bool kvsub_is_stale(kvsub_t *s, uint32_t ep_id)
{
    if (!s)
        return false;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    bool v = ep && atomic_load(&ep->stale);
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ------------------------------------------------------------ parity probe */

int kvsub_probe_arm(kvsub_t *s, uint32_t ep_id, const int32_t *tokens, size_t n)
{
    if (!s || !tokens || n == 0 || n > KVSUB_PROBE_MAX_TOKENS)
        return ST_INVAL;
    kvsub_probe_t *p = sy_calloc(1, sizeof(*p));
    if (!p || !(p->tokens = sy_malloc(n * sizeof(int32_t)))) {
        probe_free(p);
        return ST_NOMEM;
    }
    memcpy(p->tokens, tokens, n * sizeof(int32_t));
    p->n = n;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    kvsub_probe_t *old = NULL;
    if (ep) {
        pthread_mutex_lock(&s->probe_mu);
        old = ep->probe;
        ep->probe = p;
        atomic_store_explicit(&ep->probe_armed, true, memory_order_release);
        pthread_mutex_unlock(&s->probe_mu);
    }
    pthread_mutex_unlock(&s->mu);
    probe_free(old);
    if (!ep) {
        probe_free(p);
        return ST_NOTFOUND;
    }
    return ST_OK;
}

int kvsub_probe_get(kvsub_t *s, uint32_t ep_id, kvsub_probe_result_t *out)
{
    if (!s)
        return ST_NOTFOUND;
    int st = ST_NOTFOUND;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    if (ep) {
        pthread_mutex_lock(&s->probe_mu);
        if (ep->probe) {
            *out = ep->probe->res;
            st = ST_OK;
        } else {
            st = ST_STATE;
        }
        pthread_mutex_unlock(&s->probe_mu);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void kvsub_probe_disarm(kvsub_t *s, uint32_t ep_id)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    kvsub_ep_t *ep = ep_find_locked(s, ep_id);
    kvsub_probe_t *p = NULL;
    if (ep) {
        pthread_mutex_lock(&s->probe_mu);
        atomic_store_explicit(&ep->probe_armed, false, memory_order_release);
        p = ep->probe;
        ep->probe = NULL;
        pthread_mutex_unlock(&s->probe_mu);
    }
    pthread_mutex_unlock(&s->mu);
    probe_free(p);
}
