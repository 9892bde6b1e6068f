/*
 * kv_xfer.c - the TcpConnector: lease table, producer listener and connection threads,
 * consumer pull workers, and the framed protocol of kv_xfer.h.
 *
 * Locking: x->mu guards the lease table, the expired-id ring, the job queues and the
 * active-socket lists; it is never held across network I/O. A connection thread holds a lease
 * in PULLING while it reads the pool without the lock: a PULLING lease is not collected, so its
 * blocks keep their references and nothing writes them.
 * Does not: touch the block manager (the core does, in the collect callback and after a job).
 */
#include "engine/kv_xfer.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <arpa/inet.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"

#define HDR_LEN 12
#define T_PULL 1
#define T_PULL_OK 2
#define T_LAYER 3
#define T_END 4
#define T_ERR 5
#define T_RELEASE 6
#define T_ACK 7
#define EXPIRED_RING 64
#define IOV_BATCH 512

typedef enum lease_state {
    L_FREE = 0,
    L_ACTIVE,
    L_PULLING,
    L_RELEASED,
} lease_state_t;

typedef struct lease {
    lease_state_t state;
    char id[KVX_ID_MAX];
    kvb_seq_t table;
    const uint32_t *blocks; /* into table */
    uint32_t n_blocks;
    uint64_t expiry_ns;
} lease_t;

struct kvx_job {
    kvx_job_t *next;
    char host[256];
    int port;
    char lease_id[KVX_ID_MAX];
    uint32_t *remote_ids, *local_ids;
    uint32_t n_blocks;
    void *udata;
    kvx_job_result_t res;
    char err[192];
};

typedef struct conn_slot {
    bool used, done;
    pthread_t th;
    int fd;
    kvx_t *x;
} conn_slot_t;

typedef struct kvx_mx {
    mx_series_t *served, *serve_failed, *released, *expired, *leased_blocks, *leases;
    mx_series_t *pulled, *pull_failed, *bytes_in, *bytes_out, *pull_seconds;
} kvx_mx_t;

struct kvx {
    kvx_config_t cfg;
    exec_t *exec;
    exec_kv_layout_t lay;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* job queue */
    atomic_bool stop;
    bool stopped; /* kvx_stop ran */
    void (*wake)(void *);
    void *wake_ud;

    lease_t *leases; /* (max_leases) */
    uint32_t n_leases, leased_blocks;
    uint64_t lease_seq;
    char expired[EXPIRED_RING][KVX_ID_MAX]; /* recently ended lease ids */
    bool expired_why[EXPIRED_RING];         /* true = expired, false = pulled or released */
    uint32_t expired_at;

    int listen_fd;
    int port;
    pthread_t listen_th;
    bool listen_started;
    conn_slot_t conns[KVX_MAX_CONNS];

    pthread_t *workers;
    uint32_t n_workers;
    int *worker_fd; /* (n_workers) socket in use, -1 */
    kvx_job_t *q_head, *q_tail, *done_head, *done_tail;

    kvx_mx_t mx;
};

/* ------------------------------------------------------------ small helpers */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

static void put_hdr(uint8_t *h, uint8_t type, uint32_t len)
{
    memcpy(h, "SYKV", 4);
    h[4] = KVX_VERSION;
    h[5] = type;
    put_u16(h + 6, 0);
    put_u32(h + 8, len);
}

/* Writes (out) or reads every byte of iov[0..n), consumed in place: writev, or recvmsg with
 * MSG_WAITALL. ST_OK, ST_TIMEOUT (the socket's timeout) or ST_CLOSED (EOF or error). */
static int io_iov(int fd, struct iovec *iov, int n, bool out)
{
    for (;;) {
        while (n > 0 && iov->iov_len == 0) {
            iov++;
            n--;
        }
        if (n == 0)
            return ST_OK;
        int cnt = n > IOV_BATCH ? IOV_BATCH : n;
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t r = out ? writev(fd, iov, cnt) : recvmsg(fd, &m, MSG_WAITALL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? ST_TIMEOUT : ST_CLOSED;
        if (r == 0 && !out)
            return ST_CLOSED;
        size_t left = (size_t)r;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0 && left) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
}

static int send_iov(int fd, struct iovec *iov, int n)
{
    return io_iov(fd, iov, n, true);
}

static int recv_iov(int fd, struct iovec *iov, int n)
{
    return io_iov(fd, iov, n, false);
}

static int send_buf(int fd, const void *p, size_t len)
{
    struct iovec v = {.iov_base = (void *)p, .iov_len = len};
    return send_iov(fd, &v, 1);
}

/* Reads exactly len bytes. ST_OK, ST_TIMEOUT, or ST_CLOSED (EOF or error). */
static int recv_all(int fd, void *p, size_t len)
{
    struct iovec v = {.iov_base = p, .iov_len = len};
    return recv_iov(fd, &v, 1);
}

/* recv_all with an overall deadline (monotonic ns): a peer that trickles bytes cannot hold the
 * connection longer than that. ST_OK, ST_TIMEOUT or ST_CLOSED. */
static int recv_by(int fd, void *p, size_t len, uint64_t deadline_ns)
{
    char *b = p;
    while (len) {
        uint64_t now = mono_ns();
        if (now >= deadline_ns)
            return ST_TIMEOUT;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, (int)((deadline_ns - now) / 1000000u) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return pr == 0 ? ST_TIMEOUT : ST_CLOSED;
        ssize_t r = recv(fd, b, len, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return ST_CLOSED;
        }
        if (r == 0)
            return ST_CLOSED;
        b += r;
        len -= (size_t)r;
    }
    return ST_OK;
}

/* Reads a frame header (by deadline_ns when nonzero): ST_OK with type and payload length,
 * ST_PROTO (bad magic/version, *code set), or an I/O status. */
static int recv_hdr_by(int fd, uint8_t *type, uint32_t *len, int *code, uint64_t deadline_ns)
{
    uint8_t h[HDR_LEN];
    int rc = deadline_ns ? recv_by(fd, h, sizeof h, deadline_ns) : recv_all(fd, h, sizeof h);
    if (rc != ST_OK)
        return rc;
    if (memcmp(h, "SYKV", 4) != 0) {
        *code = KVX_E_FRAME;
        return ST_PROTO;
    }
    if (h[4] != KVX_VERSION) {
        *code = KVX_E_VERSION;
        return ST_PROTO;
    }
    *type = h[5];
    *len = get_u32(h + 8);
    return ST_OK;
}

static int recv_hdr(int fd, uint8_t *type, uint32_t *len, int *code)
{
    return recv_hdr_by(fd, type, len, code, 0);
}

static int send_err(int fd, int code, const char *msg)
{
    size_t ml = strlen(msg);
    if (ml > 1000)
        ml = 1000;
    uint8_t b[HDR_LEN + 4 + 1000];
    put_hdr(b, T_ERR, (uint32_t)(4 + ml));
    put_u16(b + HDR_LEN, (uint16_t)code);
    put_u16(b + HDR_LEN + 2, (uint16_t)ml);
    memcpy(b + HDR_LEN + 4, msg, ml);
    return send_buf(fd, b, HDR_LEN + 4 + ml);
}

static void sock_tune(int fd, const kvx_config_t *cfg)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg->sock_buf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sock_buf, sizeof cfg->sock_buf);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->sock_buf, sizeof cfg->sock_buf);
    }
    struct timeval tv = {
        .tv_sec = (time_t)cfg->io_timeout_s,
        .tv_usec = (suseconds_t)((cfg->io_timeout_s - (double)(time_t)cfg->io_timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void do_wake(kvx_t *x)
{
    pthread_mutex_lock(&x->mu);
    void (*wake)(void *) = x->wake;
    void *ud = x->wake_ud;
    pthread_mutex_unlock(&x->mu);
    if (wake)
        wake(ud);
}

/* ------------------------------------------------------------ config */

static void random_uuid(char *out, size_t cap)
{
    uint8_t r[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, r, sizeof r);
        (void)n;
        close(fd);
    }
    uint64_t t = mono_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < 8; i++)
        r[i] ^= (uint8_t)(t >> (8 * i));
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, cap, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

static int get_num(json_t *o, const char *key, double lo, double hi, double *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        errf(err, errlen, "'%s' must be a number in [%g, %g]", key, lo, hi);
        return ST_INVAL;
    }
    *out = json_number_value(v);
    return ST_OK;
}

static int get_strn(json_t *o, const char *key, char *out, size_t cap, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap) {
        errf(err, errlen, "'%s' must be a string of 1 to %zu characters", key, cap - 1);
        return ST_INVAL;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return ST_OK;
}

int kvx_config_parse(const char *text, kvx_config_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    snprintf(out->ip, sizeof out->ip, "127.0.0.1");
    out->port = 14579;
    out->lease_s = 30;
    out->io_timeout_s = 10;
    out->sim_bandwidth_gbps = 200;
    out->sim_latency_ms = 0.5;
    out->max_leases = 4096;
    out->pull_threads = 2;
    out->sock_buf = 8 << 20;
    json_error_t je;
    json_t *root = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, &je);
    int rc = ST_INVAL;
    if (!root || !json_is_object(root)) {
        errf(err, errlen, "not a JSON object%s%s", root ? "" : ": ", root ? "" : je.text);
        goto done;
    }
    json_t *c = json_object_get(root, "kv_connector");
    if (!json_is_string(c) || strcmp(json_string_value(c), "TcpConnector") != 0) {
        errf(err, errlen, "kv_connector must be \"TcpConnector\" (the only connector built in)");
        goto done;
    }
    json_t *r = json_object_get(root, "kv_role");
    const char *role = json_is_string(r) ? json_string_value(r) : "";
    if (strcmp(role, "kv_producer") == 0)
        out->role = KVX_PRODUCER;
    else if (strcmp(role, "kv_consumer") == 0)
        out->role = KVX_CONSUMER;
    else if (strcmp(role, "kv_both") == 0)
        out->role = KVX_BOTH;
    else {
        errf(err, errlen, "kv_role must be kv_producer, kv_consumer or kv_both");
        goto done;
    }
    double port = out->port;
    if ((rc = get_num(root, "kv_port", 0, 65535, &port, err, errlen)) != ST_OK ||
        (rc = get_strn(root, "kv_ip", out->ip, sizeof out->ip, err, errlen)) != ST_OK ||
        (rc = get_strn(root, "engine_id", out->engine_id, sizeof out->engine_id, err, errlen)) !=
            ST_OK)
        goto done;
    rc = ST_INVAL;
    if (port != (double)(int)port) {
        errf(err, errlen, "'kv_port' must be an integer");
        goto done;
    }
    out->port = (int)port;
    json_t *ex = json_object_get(root, "kv_connector_extra_config");
    if (ex && !json_is_null(ex)) {
        if (!json_is_object(ex)) {
            errf(err, errlen, "kv_connector_extra_config must be an object");
            goto done;
        }
        double ml = out->max_leases, pt = out->pull_threads, sb = out->sock_buf;
        if ((rc = get_num(ex, "lease_seconds", 0.05, 86400, &out->lease_s, err, errlen)) ||
            (rc = get_num(ex, "io_timeout_seconds", 0.05, 3600, &out->io_timeout_s, err, errlen)) ||
            (rc = get_num(ex, "sim_bandwidth_gbps", 0.001, 1e6, &out->sim_bandwidth_gbps, err,
                          errlen)) ||
            (rc = get_num(ex, "sim_latency_ms", 0, 60000, &out->sim_latency_ms, err, errlen)) ||
            (rc = get_num(ex, "max_leases", 1, 1 << 20, &ml, err, errlen)) ||
            (rc = get_num(ex, "pull_threads", 1, 64, &pt, err, errlen)) ||
            (rc = get_num(ex, "socket_buffer_bytes", 0, 1 << 30, &sb, err, errlen)) ||
            (rc = get_strn(ex, "advertise_host", out->host, sizeof out->host, err, errlen)))
            goto done;
        rc = ST_INVAL;
        if (ml != (double)(uint32_t)ml || pt != (double)(uint32_t)pt || sb != (double)(int)sb) {
            errf(err, errlen, "max_leases, pull_threads and socket_buffer_bytes must be integers");
            goto done;
        }
        out->max_leases = (uint32_t)ml;
        out->pull_threads = (uint32_t)pt;
        out->sock_buf = (int)sb;
    }
    if (!out->engine_id[0])
        random_uuid(out->engine_id, sizeof out->engine_id);
    if (!out->host[0])
        snprintf(out->host, sizeof out->host, "%s",
                 strcmp(out->ip, "0.0.0.0") == 0 || strcmp(out->ip, "::") == 0 ? "127.0.0.1"
                                                                               : out->ip);
    rc = ST_OK;
done:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ metrics */

static mx_series_t *mk(mx_registry_t *reg, mx_type_t t, const char *name, const char *help,
                       const char *model, const char *extra_label, const char *extra_value)
{
    const char *labels[] = {"model_name", extra_label};
    const char *values[] = {model, extra_value};
    size_t n = extra_label ? 2 : 1;
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
    mx_family_t *f =
        mx_family_create(reg, t, name, help, labels, n, t == MX_HISTOGRAM ? secs : NULL,
                         t == MX_HISTOGRAM ? sizeof secs / sizeof secs[0] : 0);
    return f ? mx_series_get(f, values, n) : NULL;
}

static int metrics_init(kvx_t *x, mx_registry_t *reg, const char *model)
{
    kvx_mx_t *m = &x->mx;
    const char *lr = "switchyard:kv_transfer_leases";
    const char *lh = "KV-transfer leases ended on this producer, by how they ended.";
    m->served = mk(reg, MX_COUNTER, lr, lh, model, "result", "pulled");
    m->serve_failed = mk(reg, MX_COUNTER, lr, lh, model, "result", "pull_failed");
    m->released = mk(reg, MX_COUNTER, lr, lh, model, "result", "released");
    m->expired = mk(reg, MX_COUNTER, lr, lh, model, "result", "expired");
    m->leased_blocks = mk(reg, MX_GAUGE, "switchyard:kv_leased_blocks",
                          "KV blocks held under KV-transfer leases.", model, NULL, NULL);
    m->leases =
        mk(reg, MX_GAUGE, "switchyard:kv_leases", "Active KV-transfer leases.", model, NULL, NULL);
    const char *pr = "switchyard:kv_transfer_pulls";
    const char *ph = "KV pulls run by this consumer, by result.";
    m->pulled = mk(reg, MX_COUNTER, pr, ph, model, "result", "ok");
    m->pull_failed = mk(reg, MX_COUNTER, pr, ph, model, "result", "failed");
    const char *br = "switchyard:kv_transfer_bytes";
    const char *bh = "KV bytes moved by transfers (modelled bytes for the sim), by direction.";
    m->bytes_in = mk(reg, MX_COUNTER, br, bh, model, "direction", "in");
    m->bytes_out = mk(reg, MX_COUNTER, br, bh, model, "direction", "out");
    m->pull_seconds = mk(reg, MX_HISTOGRAM, "switchyard:kv_transfer_pull_seconds",
                         "Wall time of KV pulls on the consumer.", model, NULL, NULL);
    if (!m->served || !m->serve_failed || !m->released || !m->expired || !m->leased_blocks ||
        !m->leases || !m->pulled || !m->pull_failed || !m->bytes_in || !m->bytes_out ||
        !m->pull_seconds)
        return ST_NOMEM;
    return ST_OK;
}

/* x->mu held */
static void gauges_locked(kvx_t *x)
{
    mx_gauge_set(x->mx.leased_blocks, x->leased_blocks);
    mx_gauge_set(x->mx.leases, x->n_leases);
}

/* ------------------------------------------------------------ leases */

static lease_t *lease_find(kvx_t *x, const char *id, size_t id_len)
{
    for (uint32_t i = 0; i < x->cfg.max_leases; i++) {
        lease_t *l = &x->leases[i];
        if (l->state != L_FREE && strlen(l->id) == id_len && memcmp(l->id, id, id_len) == 0)
            return l;
    }
    return NULL;
}

/* KVX_E_EXPIRED or KVX_E_DONE for a recently ended lease, KVX_E_UNKNOWN otherwise. */
static int ended_code(kvx_t *x, const char *id, size_t id_len)
{
    for (uint32_t i = 0; i < EXPIRED_RING; i++)
        if (strlen(x->expired[i]) == id_len && id_len && memcmp(x->expired[i], id, id_len) == 0)
            return x->expired_why[i] ? KVX_E_EXPIRED : KVX_E_DONE;
    return KVX_E_UNKNOWN;
}

static const char *code_text(int code)
{
    return code == KVX_E_EXPIRED ? "expired"
           : code == KVX_E_DONE  ? "was already pulled or released"
           : code == KVX_E_BUSY  ? "is being pulled by another connection"
                                 : "is unknown";
}

int kvx_lease_add(kvx_t *x, const char *req_id, kvb_seq_t *t, char *id)
{
    pthread_mutex_lock(&x->mu);
    lease_t *l = NULL;
    if (x->n_leases < x->cfg.max_leases) {
        for (uint32_t i = 0; i < x->cfg.max_leases && !l; i++)
            if (x->leases[i].state == L_FREE)
                l = &x->leases[i];
    }
    if (!l) {
        pthread_mutex_unlock(&x->mu);
        return ST_LIMIT;
    }
    x->lease_seq++;
    snprintf(l->id, sizeof l->id, "%.100s-kv%llx", req_id ? req_id : "req",
             (unsigned long long)x->lease_seq);
    kvb_seq_move(&l->table, t);
    l->blocks = kvb_seq_blocks(&l->table, &l->n_blocks);
    l->expiry_ns = mono_ns() + (uint64_t)(x->cfg.lease_s * 1e9);
    l->state = L_ACTIVE;
    x->n_leases++;
    x->leased_blocks += l->n_blocks;
    gauges_locked(x);
    memcpy(id, l->id, KVX_ID_MAX);
    pthread_mutex_unlock(&x->mu);
    return ST_OK;
}

uint32_t kvx_lease_collect(kvx_t *x, uint64_t now_ns, bool all, kvx_free_cb cb, void *ud)
{
    uint32_t n = 0;
    pthread_mutex_lock(&x->mu);
    for (uint32_t i = 0; i < x->cfg.max_leases && x->n_leases; i++) {
        lease_t *l = &x->leases[i];
        bool expired = l->state == L_ACTIVE && now_ns >= l->expiry_ns;
        if (l->state == L_FREE || (l->state == L_PULLING && !all) ||
            (l->state == L_ACTIVE && !expired && !all))
            continue;
        if (l->state == L_ACTIVE && expired) {
            mx_counter_inc(x->mx.expired);
            sy_warn("kv.lease_expired", "lease=%s blocks=%u after_s=%g", l->id, l->n_blocks,
                    x->cfg.lease_s);
        }
        snprintf(x->expired[x->expired_at], KVX_ID_MAX, "%s", l->id);
        x->expired_why[x->expired_at] = l->state == L_ACTIVE;
        x->expired_at = (x->expired_at + 1) % EXPIRED_RING;
        x->leased_blocks -= l->n_blocks;
        x->n_leases--;
        cb(ud, &l->table);
        kvb_seq_deinit(&l->table);
        memset(l, 0, sizeof *l);
        n++;
    }
    gauges_locked(x);
    pthread_mutex_unlock(&x->mu);
    return n;
}

uint64_t kvx_lease_next_expiry(kvx_t *x)
{
    uint64_t best = 0;
    pthread_mutex_lock(&x->mu);
    for (uint32_t i = 0; i < x->cfg.max_leases && x->n_leases; i++) {
        const lease_t *l = &x->leases[i];
        if (l->state == L_RELEASED)
            best = 1; /* collect now */
        else if (l->state == L_ACTIVE && (best == 0 || l->expiry_ns < best))
            best = l->expiry_ns;
    }
    pthread_mutex_unlock(&x->mu);
    return best;
}

/* ------------------------------------------------------------ producer: serving */

static bool layout_matches(const exec_kv_layout_t *a, uint32_t n_layers, uint32_t block_size,
                           uint32_t dtype, uint64_t seg_bytes)
{
    return a->n_layers == n_layers && a->block_size == block_size && (uint32_t)a->dtype == dtype &&
           a->seg_bytes == seg_bytes;
}

/* Streams the layers of ids[0..n) of a PULLING lease. ST_OK or an I/O status.
 * Each segment is hashed and then handed to writev within SEND_BATCH bytes, so the kernel's
 * copy reads it from cache; the layer's digest follows its data (a trailer). */
#define SEND_BATCH (2u << 20)
#define RECV_BATCH (2u << 20)
static int serve_layers(kvx_t *x, int fd, const uint32_t *ids, uint32_t n, uint64_t *bytes,
                        uint64_t *digest)
{
    const exec_kv_layout_t *L = &x->lay;
    uint8_t h[HDR_LEN + 16], tr[8];
    put_hdr(h, T_PULL_OK, 16);
    put_u32(h + HDR_LEN, L->n_layers);
    put_u32(h + HDR_LEN + 4, n);
    put_u64(h + HDR_LEN + 8, L->seg_bytes);
    int rc = send_buf(fd, h, HDR_LEN + 16);
    if (rc != ST_OK)
        return rc;
    struct iovec *iov = sy_malloc((IOV_BATCH + 2) * sizeof *iov);
    XXH3_state_t *all = XXH3_createState();
    XXH3_state_t *one = XXH3_createState();
    if (!iov || !all || !one) {
        rc = ST_NOMEM;
        goto done;
    }
    XXH3_64bits_reset(all);
    uint64_t data = 2 * (uint64_t)n * L->seg_bytes;
    for (uint32_t layer = 0; layer < L->n_layers && rc == ST_OK; layer++) {
        XXH3_64bits_reset(one);
        put_hdr(h, T_LAYER, (uint32_t)(8 + data + 8));
        put_u32(h + HDR_LEN, layer);
        put_u32(h + HDR_LEN + 4, n);
        int k = 0;
        size_t batch = 0;
        iov[k].iov_base = h;
        iov[k++].iov_len = HDR_LEN + 8;
        for (uint32_t b = 0; b < n && L->seg_bytes && rc == ST_OK; b++) {
            for (uint32_t w = 0; w < 2 && rc == ST_OK; w++) {
                void *seg = exec_kv_segment(x->exec, layer, ids[b], w);
                if (!seg) {
                    rc = ST_STATE;
                    goto done;
                }
                XXH3_64bits_update(one, seg, L->seg_bytes);
                iov[k].iov_base = seg;
                iov[k++].iov_len = L->seg_bytes;
                batch += L->seg_bytes;
                if (batch >= SEND_BATCH || k >= IOV_BATCH) {
                    rc = send_iov(fd, iov, k);
                    k = 0;
                    batch = 0;
                }
            }
        }
        if (rc != ST_OK)
            break;
        put_u64(tr, XXH3_64bits_digest(one));
        XXH3_64bits_update(all, tr, sizeof tr);
        iov[k].iov_base = tr;
        iov[k++].iov_len = sizeof tr;
        rc = send_iov(fd, iov, k);
        *bytes += data;
    }
    if (rc == ST_OK) {
        *digest = XXH3_64bits_digest(all);
        uint8_t e[HDR_LEN + 8];
        put_hdr(e, T_END, 8);
        put_u64(e + HDR_LEN, *digest);
        rc = send_buf(fd, e, sizeof e);
    }
done:
    XXH3_freeState(all);
    XXH3_freeState(one);
    sy_free(iov);
    return rc;
}

/* One PULL frame (payload p[0..len)). Returns ST_OK to keep the connection, else close. */
static int handle_pull(kvx_t *x, int fd, const uint8_t *p, uint32_t len)
{
    char msg[256];
    if (len < 2 || len < 2u + p[1] + 24u) {
        send_err(fd, KVX_E_FRAME, "PULL frame too short");
        return ST_PROTO;
    }
    bool release_after = p[0] != 0;
    size_t id_len = p[1];
    const char *id = (const char *)p + 2;
    const uint8_t *q = p + 2 + id_len;
    uint32_t n_layers = get_u32(q), block_size = get_u32(q + 4), dtype = get_u32(q + 8);
    uint64_t seg = get_u64(q + 12);
    uint32_t n = get_u32(q + 20);
    if ((uint64_t)len != 2u + id_len + 24u + 4ull * n || n == 0) {
        send_err(fd, KVX_E_FRAME, "PULL frame length does not match its block count");
        return ST_PROTO;
    }
    if (!layout_matches(&x->lay, n_layers, block_size, dtype, seg)) {
        snprintf(msg, sizeof msg,
                 "KV layout mismatch: producer has %u layers, block_size %u, dtype %u, %llu "
                 "bytes per segment; consumer %u, %u, %u, %llu",
                 x->lay.n_layers, x->lay.block_size, (unsigned)x->lay.dtype,
                 (unsigned long long)x->lay.seg_bytes, n_layers, block_size, dtype,
                 (unsigned long long)seg);
        send_err(fd, KVX_E_LAYOUT, msg);
        return ST_PROTO;
    }
    uint32_t *ids = sy_malloc((size_t)n * sizeof *ids);
    if (!ids) {
        send_err(fd, KVX_E_LIMIT, "out of memory");
        return ST_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++)
        ids[i] = get_u32(q + 24 + 4 * (size_t)i);

    int code = 0;
    pthread_mutex_lock(&x->mu);
    lease_t *l = lease_find(x, id, id_len);
    if (!l || l->state != L_ACTIVE) {
        code = !l ? ended_code(x, id, id_len) : l->state == L_PULLING ? KVX_E_BUSY : KVX_E_DONE;
        snprintf(msg, sizeof msg, "lease '%.*s' %s", (int)(id_len > 100 ? 100 : id_len), id,
                 code_text(code));
    } else {
        for (uint32_t i = 0; i < n && !code; i++) {
            bool in = false;
            for (uint32_t j = 0; j < l->n_blocks && !in; j++)
                in = l->blocks[j] == ids[i];
            if (!in || ids[i] >= x->lay.num_blocks) {
                code = KVX_E_RANGE;
                snprintf(msg, sizeof msg, "block id %u is not part of lease '%s' (%u blocks)",
                         ids[i], l->id, l->n_blocks);
            }
        }
        if (!code)
            l->state = L_PULLING;
    }
    pthread_mutex_unlock(&x->mu);
    if (code) {
        sy_warn("kv.pull_refused", "code=%d msg=\"%s\"", code, msg);
        send_err(fd, code, msg);
        sy_free(ids);
        return ST_OK; /* a refused request keeps the connection usable */
    }

    uint64_t t0 = mono_ns(), bytes = 0, digest = 0;
    int rc = serve_layers(x, fd, ids, n, &bytes, &digest);
    pthread_mutex_lock(&x->mu);
    /* one pull per lease: after a failed one the consumer recomputes, so the lease ends too */
    l->state = L_RELEASED;
    if (!release_after && rc == ST_OK) {
        l->state = L_ACTIVE;
        l->expiry_ns = mono_ns() + (uint64_t)(x->cfg.lease_s * 1e9);
    }
    pthread_mutex_unlock(&x->mu);
    if (rc == ST_OK) {
        mx_counter_inc(x->mx.served);
        mx_counter_add(x->mx.bytes_out, (double)bytes);
        sy_info("kv.lease_served", "lease=%.*s blocks=%u bytes=%llu digest=%016llx ms=%.3f",
                (int)id_len, id, n, (unsigned long long)bytes, (unsigned long long)digest,
                (double)(mono_ns() - t0) / 1e6);
    } else {
        mx_counter_inc(x->mx.serve_failed);
        sy_warn("kv.serve_failed", "lease=%.*s status=%s", (int)id_len, id, st_str(rc));
    }
    do_wake(x);
    sy_free(ids);
    return rc;
}

static int handle_release(kvx_t *x, int fd, const uint8_t *p, uint32_t len)
{
    if (len < 1 || len != 1u + p[0]) {
        send_err(fd, KVX_E_FRAME, "RELEASE frame length does not match its id");
        return ST_PROTO;
    }
    size_t id_len = p[0];
    const char *id = (const char *)p + 1;
    char msg[200];
    int code = 0;
    pthread_mutex_lock(&x->mu);
    lease_t *l = lease_find(x, id, id_len);
    if (!l) {
        code = ended_code(x, id, id_len);
    } else if (l->state == L_PULLING) {
        code = KVX_E_BUSY;
    } else if (l->state == L_RELEASED) {
        code = KVX_E_DONE;
    } else {
        l->state = L_RELEASED;
        mx_counter_inc(x->mx.released);
    }
    pthread_mutex_unlock(&x->mu);
    if (code) {
        snprintf(msg, sizeof msg, "cannot release lease '%.*s': it %s",
                 (int)(id_len > 100 ? 100 : id_len), id, code_text(code));
        send_err(fd, code, msg);
        return ST_OK;
    }
    do_wake(x);
    uint8_t h[HDR_LEN];
    put_hdr(h, T_ACK, 0);
    return send_buf(fd, h, sizeof h);
}

static void *conn_main(void *arg)
{
    conn_slot_t *s = arg;
    kvx_t *x = s->x;
    uint8_t *buf = NULL;
    while (!atomic_load(&x->stop)) {
        uint8_t type = 0;
        uint32_t len = 0;
        int code = 0;
        /* a whole control frame (and the wait for it) within io_timeout: slow or silent
         * peers cannot hold one of the KVX_MAX_CONNS slots */
        uint64_t deadline = mono_ns() + (uint64_t)(x->cfg.io_timeout_s * 1e9);
        int rc = recv_hdr_by(s->fd, &type, &len, &code, deadline);
        if (rc == ST_PROTO) {
            send_err(s->fd, code,
                     code == KVX_E_VERSION ? "unsupported protocol version (this is version 1)"
                                           : "bad frame magic (not a Switchyard KV transfer peer)");
            break;
        }
        if (rc != ST_OK)
            break;
        if (len > KVX_MAX_CTRL) {
            send_err(s->fd, KVX_E_LIMIT, "control frame too large");
            break;
        }
        if (type != T_PULL && type != T_RELEASE) {
            send_err(s->fd, KVX_E_FRAME, "unexpected frame type");
            break;
        }
        sy_free(buf);
        buf = sy_malloc(len ? len : 1);
        if (!buf || recv_by(s->fd, buf, len, deadline) != ST_OK)
            break;
        rc = type == T_PULL ? handle_pull(x, s->fd, buf, len) : handle_release(x, s->fd, buf, len);
        if (rc != ST_OK)
            break;
    }
    sy_free(buf);
    /* let an ERR frame reach a peer that is still sending: stop writing, drain what it sent
     * (bounded: 1 MiB or the io timeout), then close - a close with unread input would reset
     * the connection and could destroy the ERR before the peer reads it */
    shutdown(s->fd, SHUT_WR);
    char sink[4096];
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (size_t drained = 0; drained < (1u << 20) && !atomic_load(&x->stop);) {
        ssize_t r = recv(s->fd, sink, sizeof sink, 0);
        if (r <= 0)
            break;
        drained += (size_t)r;
    }
    pthread_mutex_lock(&x->mu);
    close(s->fd);
    s->fd = -1;
    s->done = true;
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Joins finished connection threads; returns a free slot or NULL. x->mu not held. */
static conn_slot_t *conn_slot(kvx_t *x)
{
    conn_slot_t *free_slot = NULL;
    for (int i = 0; i < KVX_MAX_CONNS; i++) {
        conn_slot_t *s = &x->conns[i];
        pthread_mutex_lock(&x->mu);
        bool joinable = s->used && s->done;
        pthread_mutex_unlock(&x->mu);
        if (joinable) {
            pthread_join(s->th, NULL);
            pthread_mutex_lock(&x->mu); /* kvx_stop reads used and fd under the lock */
            s->used = false;
            pthread_mutex_unlock(&x->mu);
        }
        if (!s->used && !free_slot)
            free_slot = s;
    }
    return free_slot;
}

static void *listen_main(void *arg)
{
    kvx_t *x = arg;
    while (!atomic_load(&x->stop)) {
        struct pollfd pf = {.fd = x->listen_fd, .events = POLLIN};
        int pr = poll(&pf, 1, 100);
        if (pr <= 0)
            continue;
        int fd = accept4(x->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        sock_tune(fd, &x->cfg);
        conn_slot_t *s = conn_slot(x);
        if (!s) {
            send_err(fd, KVX_E_LIMIT, "too many KV transfer connections");
            close(fd);
            continue;
        }
        pthread_mutex_lock(&x->mu);
        s->x = x;
        s->fd = fd;
        s->done = false;
        s->used = true;
        pthread_mutex_unlock(&x->mu);
        if (sy_thread_start(&s->th, conn_main, s) != ST_OK) {
            pthread_mutex_lock(&x->mu);
            s->used = false;
            s->fd = -1;
            pthread_mutex_unlock(&x->mu);
            close(fd);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ consumer: pulls */

static int dial(kvx_t *x, const char *host, int port, int *fd_out, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g != 0) {
        errf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(g));
        return ST_UPSTREAM;
    }
    int rc = ST_UPSTREAM;
    for (struct addrinfo *a = ai; a && rc != ST_OK; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int c = connect(fd, a->ai_addr, a->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            int pr = poll(&pf, 1, (int)(x->cfg.io_timeout_s * 1000));
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                c = 0;
            else
                errno = pr == 0 ? ETIMEDOUT : soerr;
        }
        if (c != 0) {
            errf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        sock_tune(fd, &x->cfg);
        *fd_out = fd;
        rc = ST_OK;
    }
    freeaddrinfo(ai);
    return rc;
}

/* Reads an ERR payload into a message. */
static void read_err(int fd, uint32_t len, char *err, size_t errlen)
{
    uint8_t b[1004];
    if (len < 4 || len > sizeof b || recv_all(fd, b, len) != ST_OK) {
        errf(err, errlen, "producer sent a malformed error frame");
        return;
    }
    uint16_t ml = get_u16(b + 2);
    if (ml > len - 4)
        ml = (uint16_t)(len - 4);
    errf(err, errlen, "producer refused (code %u): %.*s", get_u16(b), (int)ml, (const char *)b + 4);
}

static void register_fd(kvx_t *x, uint32_t w, int fd)
{
    pthread_mutex_lock(&x->mu);
    x->worker_fd[w] = fd;
    pthread_mutex_unlock(&x->mu);
}

static int run_release(kvx_t *x, uint32_t w, kvx_job_t *j)
{
    int fd = -1;
    int rc = dial(x, j->host, j->port, &fd, j->err, sizeof j->err);
    if (rc != ST_OK)
        return rc;
    register_fd(x, w, fd);
    size_t il = strlen(j->lease_id);
    uint8_t b[HDR_LEN + 1 + KVX_ID_MAX];
    put_hdr(b, T_RELEASE, (uint32_t)(1 + il));
    b[HDR_LEN] = (uint8_t)il;
    memcpy(b + HDR_LEN + 1, j->lease_id, il);
    rc = send_buf(fd, b, HDR_LEN + 1 + il);
    uint8_t type = 0;
    uint32_t len = 0;
    int code = 0;
    if (rc == ST_OK && (rc = recv_hdr(fd, &type, &len, &code)) == ST_OK && type == T_ERR) {
        read_err(fd, len, j->err, sizeof j->err);
        rc = ST_DECLINED;
    }
    register_fd(x, w, -1);
    close(fd);
    return rc;
}

static int run_pull(kvx_t *x, uint32_t w, kvx_job_t *j)
{
    const exec_kv_layout_t *L = &x->lay;
    int fd = -1;
    int rc = dial(x, j->host, j->port, &fd, j->err, sizeof j->err);
    if (rc != ST_OK)
        return rc;
    register_fd(x, w, fd);
    size_t il = strlen(j->lease_id);
    size_t plen = 2 + il + 24 + 4 * (size_t)j->n_blocks;
    uint8_t *b = sy_malloc(HDR_LEN + plen);
    struct iovec *iov = sy_malloc(IOV_BATCH * sizeof *iov);
    void **seg_at = sy_malloc(IOV_BATCH * sizeof *seg_at);
    XXH3_state_t *all = XXH3_createState();
    XXH3_state_t *one = XXH3_createState();
    if (!b || !iov || !seg_at || !all || !one) {
        rc = ST_NOMEM;
        errf(j->err, sizeof j->err, "out of memory");
        goto done;
    }
    put_hdr(b, T_PULL, (uint32_t)plen);
    uint8_t *q = b + HDR_LEN;
    q[0] = 1; /* release after */
    q[1] = (uint8_t)il;
    memcpy(q + 2, j->lease_id, il);
    q += 2 + il;
    put_u32(q, L->n_layers);
    put_u32(q + 4, L->block_size);
    put_u32(q + 8, (uint32_t)L->dtype);
    put_u64(q + 12, L->seg_bytes);
    put_u32(q + 20, j->n_blocks);
    for (uint32_t i = 0; i < j->n_blocks; i++)
        put_u32(q + 24 + 4 * (size_t)i, j->remote_ids[i]);
    if ((rc = send_buf(fd, b, HDR_LEN + plen)) != ST_OK) {
        errf(j->err, sizeof j->err, "sending the pull request failed: %s", st_str(rc));
        goto done;
    }
    uint8_t type = 0;
    uint32_t len = 0;
    int code = 0;
    uint8_t h[16];
    if ((rc = recv_hdr(fd, &type, &len, &code)) != ST_OK) {
        errf(j->err, sizeof j->err, "no answer to the pull: %s", st_str(rc));
        goto done;
    }
    if (type == T_ERR) {
        read_err(fd, len, j->err, sizeof j->err);
        rc = ST_DECLINED;
        goto done;
    }
    if (type != T_PULL_OK || len != 16 || (rc = recv_all(fd, h, 16)) != ST_OK ||
        get_u32(h) != L->n_layers || get_u32(h + 4) != j->n_blocks ||
        get_u64(h + 8) != L->seg_bytes) {
        rc = ST_PROTO;
        errf(j->err, sizeof j->err, "unexpected answer to the pull (type %u)", type);
        goto done;
    }
    XXH3_64bits_reset(all);
    uint64_t data = 2 * (uint64_t)j->n_blocks * L->seg_bytes;
    for (uint32_t layer = 0; layer < L->n_layers; layer++) {
        if ((rc = recv_hdr(fd, &type, &len, &code)) != ST_OK || type != T_LAYER ||
            len != 8 + data + 8 || (rc = recv_all(fd, h, 8)) != ST_OK || get_u32(h) != layer ||
            get_u32(h + 4) != j->n_blocks) {
            rc = rc == ST_OK ? ST_PROTO : rc;
            errf(j->err, sizeof j->err, "layer %u frame missing or malformed (%s)", layer,
                 st_str(rc));
            goto done;
        }
        /* straight into our pool; each segment hashed while it is in cache, so the digest is
         * of the bytes as they landed in the consumer's own storage */
        XXH3_64bits_reset(one);
        uint32_t n_segs = L->seg_bytes ? 2 * j->n_blocks : 0;
        for (uint32_t at = 0; at < n_segs;) {
            /* a batch of up to RECV_BATCH bytes with one recvmsg, then hashed from cache */
            int k = 0;
            size_t batch = 0;
            for (; at + (uint32_t)k < n_segs && k < IOV_BATCH && batch < RECV_BATCH; k++) {
                uint32_t sq = at + (uint32_t)k;
                void *seg = exec_kv_segment(x->exec, layer, j->local_ids[sq / 2], sq % 2);
                if (!seg) {
                    rc = ST_STATE;
                    errf(j->err, sizeof j->err, "local block %u out of range",
                         j->local_ids[sq / 2]);
                    goto done;
                }
                iov[k].iov_base = seg;
                iov[k].iov_len = L->seg_bytes;
                seg_at[k] = seg;
                batch += L->seg_bytes;
            }
            if ((rc = recv_iov(fd, iov, k)) != ST_OK) {
                errf(j->err, sizeof j->err, "transfer cut in layer %u: %s", layer, st_str(rc));
                goto done;
            }
            for (int hq = 0; hq < k; hq++)
                XXH3_64bits_update(one, seg_at[hq], L->seg_bytes);
            at += (uint32_t)k;
        }
        uint8_t tr[8];
        if ((rc = recv_all(fd, tr, 8)) != ST_OK) {
            errf(j->err, sizeof j->err, "transfer cut in layer %u: %s", layer, st_str(rc));
            goto done;
        }
        if (XXH3_64bits_digest(one) != get_u64(tr)) {
            rc = ST_PROTO;
            errf(j->err, sizeof j->err, "integrity check failed in layer %u", layer);
            goto done;
        }
        XXH3_64bits_update(all, tr, sizeof tr);
        j->res.bytes += data;
    }
    uint8_t e[8];
    if ((rc = recv_hdr(fd, &type, &len, &code)) != ST_OK || type != T_END || len != 8 ||
        (rc = recv_all(fd, e, 8)) != ST_OK) {
        rc = rc == ST_OK ? ST_PROTO : rc;
        errf(j->err, sizeof j->err, "end frame missing");
        goto done;
    }
    j->res.digest = XXH3_64bits_digest(all);
    if (j->res.digest != get_u64(e)) {
        rc = ST_PROTO;
        errf(j->err, sizeof j->err, "KV digest mismatch after the transfer");
        goto done;
    }
    if (L->seg_bytes == 0) {
        /* the sim: model the transfer of what a real engine would move */
        double bytes = (double)j->n_blocks * (double)L->model_bytes_per_block;
        j->res.bytes = (uint64_t)bytes;
        double s = x->cfg.sim_latency_ms * 1e-3 + bytes * 8.0 / (x->cfg.sim_bandwidth_gbps * 1e9);
        if (L->time_scale > 0) {
            s /= L->time_scale;
            struct timespec ts = {.tv_sec = (time_t)s,
                                  .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !atomic_load(&x->stop))
                ;
        }
    }
    rc = ST_OK;
done:
    XXH3_freeState(all);
    XXH3_freeState(one);
    sy_free(b);
    sy_free(iov);
    sy_free(seg_at);
    register_fd(x, w, -1);
    close(fd);
    return rc;
}

/* Appends j to the FIFO (*head, *tail). x->mu held. */
static void job_push(kvx_job_t **head, kvx_job_t **tail, kvx_job_t *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

typedef struct worker_arg {
    kvx_t *x;
    uint32_t w;
} worker_arg_t;

static void *worker_main(void *arg)
{
    kvx_t *x = ((worker_arg_t *)arg)->x;
    uint32_t w = ((worker_arg_t *)arg)->w;
    sy_free(arg);
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->q_head && !atomic_load(&x->stop))
            pthread_cond_wait(&x->cv, &x->mu);
        if (atomic_load(&x->stop))
            break;
        kvx_job_t *j = x->q_head;
        x->q_head = j->next;
        if (!x->q_head)
            x->q_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&x->mu);

        uint64_t t0 = mono_ns();
        if (j->n_blocks == 0) {
            int rc = run_release(x, w, j);
            if (rc != ST_OK)
                sy_warn("kv.release_failed", "lease=%s host=%s:%d status=%s msg=\"%s\"",
                        j->lease_id, j->host, j->port, st_str(rc), j->err);
            kvx_job_free(j);
            pthread_mutex_lock(&x->mu);
            continue;
        }
        j->res.status = run_pull(x, w, j);
        j->res.seconds = (double)(mono_ns() - t0) / 1e9;
        if (j->res.status == ST_OK) {
            mx_counter_inc(x->mx.pulled);
            mx_counter_add(x->mx.bytes_in, (double)j->res.bytes);
            mx_hist_observe(x->mx.pull_seconds, j->res.seconds);
            sy_info("kv.pull_done",
                    "lease=%s host=%s:%d blocks=%u bytes=%llu digest=%016llx ms=%.3f", j->lease_id,
                    j->host, j->port, j->n_blocks, (unsigned long long)j->res.bytes,
                    (unsigned long long)j->res.digest, j->res.seconds * 1e3);
        } else {
            mx_counter_inc(x->mx.pull_failed);
            sy_warn("kv.pull_failed", "lease=%s host=%s:%d status=%s msg=\"%s\"", j->lease_id,
                    j->host, j->port, st_str(j->res.status), j->err);
        }
        pthread_mutex_lock(&x->mu);
        job_push(&x->done_head, &x->done_tail, j);
        pthread_mutex_unlock(&x->mu);
        do_wake(x);
        pthread_mutex_lock(&x->mu);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

kvx_job_t *kvx_job_submit(kvx_t *x, const kvx_pull_spec_t *spec)
{
    if (!spec->host || !spec->lease_id || strlen(spec->lease_id) >= KVX_ID_MAX ||
        strlen(spec->host) >= 256 || spec->port <= 0 || spec->port > 65535)
        return NULL;
    kvx_job_t *j = sy_calloc(1, sizeof *j);
    if (!j)
        return NULL;
    snprintf(j->host, sizeof j->host, "%s", spec->host);
    snprintf(j->lease_id, sizeof j->lease_id, "%s", spec->lease_id);
    j->port = spec->port;
    j->udata = spec->udata;
    j->n_blocks = spec->n_blocks;
    if (spec->n_blocks) {
        j->remote_ids = sy_malloc((size_t)spec->n_blocks * sizeof(uint32_t));
        j->local_ids = sy_malloc((size_t)spec->n_blocks * sizeof(uint32_t));
        if (!j->remote_ids || !j->local_ids) {
            kvx_job_free(j);
            return NULL;
        }
        memcpy(j->remote_ids, spec->remote_ids, (size_t)spec->n_blocks * sizeof(uint32_t));
        memcpy(j->local_ids, spec->local_ids, (size_t)spec->n_blocks * sizeof(uint32_t));
    }
    pthread_mutex_lock(&x->mu);
    job_push(&x->q_head, &x->q_tail, j);
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return j;
}

kvx_job_t *kvx_job_take_done(kvx_t *x)
{
    pthread_mutex_lock(&x->mu);
    kvx_job_t *j = x->done_head;
    if (j) {
        x->done_head = j->next;
        if (!x->done_head)
            x->done_tail = NULL;
        j->next = NULL;
    }
    pthread_mutex_unlock(&x->mu);
    return j;
}

void kvx_job_result(const kvx_job_t *j, kvx_job_result_t *out)
{
    *out = j->res;
    out->error = j->err;
}

void *kvx_job_udata(const kvx_job_t *j)
{
    return j->udata;
}

void kvx_job_free(kvx_job_t *j)
{
    if (!j)
        return;
    sy_free(j->remote_ids);
    sy_free(j->local_ids);
    sy_free(j);
}

/* ------------------------------------------------------------ lifecycle */

static int listen_on(kvx_t *x, char *err, size_t errlen)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", x->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(x->cfg.ip, ps, &hints, &ai);
    if (g != 0) {
        errf(err, errlen, "kv_ip '%s': %s", x->cfg.ip, gai_strerror(g));
        return ST_INVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        errf(err, errlen, "cannot listen on %s:%d: %s", x->cfg.ip, x->cfg.port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return ST_STATE;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    x->port = x->cfg.port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        x->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    x->listen_fd = fd;
    return ST_OK;
}

kvx_t *kvx_create(const kvx_config_t *cfg, exec_t *exec, mx_registry_t *metrics,
                  const char *model_name, char *err, size_t errlen)
{
    kvx_t *x = sy_calloc(1, sizeof *x);
    if (!x) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    x->cfg = *cfg;
    x->exec = exec;
    x->listen_fd = -1;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    atomic_init(&x->stop, false);
    if (exec_kv_layout(exec, &x->lay) != ST_OK) {
        errf(err, errlen, "the executor cannot transfer KV blocks");
        goto fail;
    }
    x->leases = sy_calloc(cfg->max_leases, sizeof *x->leases);
    x->worker_fd = sy_calloc(cfg->pull_threads ? cfg->pull_threads : 1, sizeof *x->worker_fd);
    x->workers = sy_calloc(cfg->pull_threads ? cfg->pull_threads : 1, sizeof *x->workers);
    if (!x->leases || !x->worker_fd || !x->workers ||
        metrics_init(x, metrics, model_name ? model_name : "switchyard") != ST_OK) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < KVX_MAX_CONNS; i++)
        x->conns[i].fd = -1;
    if (kvx_is_producer(x)) {
        if (listen_on(x, err, errlen) != ST_OK)
            goto fail;
        if (sy_thread_start(&x->listen_th, listen_main, x) != ST_OK) {
            errf(err, errlen, "cannot start the KV listener thread");
            goto fail;
        }
        x->listen_started = true;
    }
    if (kvx_is_consumer(x)) {
        for (uint32_t i = 0; i < cfg->pull_threads; i++) {
            x->worker_fd[i] = -1;
            worker_arg_t *a = sy_malloc(sizeof *a);
            if (!a) {
                errf(err, errlen, "out of memory");
                goto fail;
            }
            a->x = x;
            a->w = i;
            if (sy_thread_start(&x->workers[i], worker_main, a) != ST_OK) {
                sy_free(a);
                errf(err, errlen, "cannot start KV pull threads");
                goto fail;
            }
            x->n_workers++;
        }
    }
    return x;
fail:
    kvx_destroy(x);
    return NULL;
}

void kvx_stop(kvx_t *x)
{
    if (!x || x->stopped)
        return;
    x->stopped = true;
    atomic_store(&x->stop, true);
    pthread_mutex_lock(&x->mu);
    pthread_cond_broadcast(&x->cv);
    for (int i = 0; i < KVX_MAX_CONNS; i++)
        if (x->conns[i].used && x->conns[i].fd >= 0)
            shutdown(x->conns[i].fd, SHUT_RDWR);
    for (uint32_t i = 0; i < x->n_workers; i++)
        if (x->worker_fd[i] >= 0)
            shutdown(x->worker_fd[i], SHUT_RDWR);
    pthread_mutex_unlock(&x->mu);
    if (x->listen_started)
        pthread_join(x->listen_th, NULL);
    for (int i = 0; i < KVX_MAX_CONNS; i++)
        if (x->conns[i].used)
            pthread_join(x->conns[i].th, NULL);
    for (uint32_t i = 0; i < x->n_workers; i++)
        pthread_join(x->workers[i], NULL);
    /* pulls never started come back as failed (their owner holds references for them);
     * releases are dropped (the producer's lease expires) */
    for (kvx_job_t *j = x->q_head, *n; j; j = n) {
        n = j->next;
        j->next = NULL;
        if (j->n_blocks == 0) {
            kvx_job_free(j);
            continue;
        }
        j->res.status = ST_CLOSED;
        snprintf(j->err, sizeof j->err, "the connector is shutting down");
        job_push(&x->done_head, &x->done_tail, j);
    }
    x->q_head = x->q_tail = NULL;
}

void kvx_destroy(kvx_t *x)
{
    if (!x)
        return;
    kvx_stop(x);
    if (x->listen_fd >= 0)
        close(x->listen_fd);
    for (kvx_job_t *j = x->done_head, *n; j; j = n) {
        n = j->next;
        kvx_job_free(j);
    }
    if (x->leases) {
        for (uint32_t i = 0; i < x->cfg.max_leases; i++)
            if (x->leases[i].state != L_FREE)
                kvb_seq_deinit(&x->leases[i].table); /* blocks: see kvx_destroy's contract */
    }
    sy_free(x->leases);
    sy_free(x->worker_fd);
    sy_free(x->workers);
    pthread_cond_destroy(&x->cv);
    pthread_mutex_destroy(&x->mu);
    sy_free(x);
}

void kvx_set_wake(kvx_t *x, void (*wake)(void *ud), void *ud)
{
    pthread_mutex_lock(&x->mu);
    x->wake = wake;
    x->wake_ud = ud;
    pthread_mutex_unlock(&x->mu);
}

const kvx_config_t *kvx_get_config(const kvx_t *x)
{
    return &x->cfg;
}

int kvx_port(const kvx_t *x)
{
    return x->port;
}

bool kvx_is_producer(const kvx_t *x)
{
    return (x->cfg.role & KVX_PRODUCER) != 0;
}

bool kvx_is_consumer(const kvx_t *x)
{
    return (x->cfg.role & KVX_CONSUMER) != 0;
}
