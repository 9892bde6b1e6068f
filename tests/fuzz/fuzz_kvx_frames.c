/*
 * fuzz_kvx_frames.c - libFuzzer harness for the KV-transfer producer (kv_xfer.c): the input is
 * what one consumer connection sends to a kvx producer listening on an ephemeral loopback port
 * (fake executor with real storage, two leases "fz-a" and "fz-b" of two blocks each, made fresh
 * for every input). Checks: the producer answers only with well-formed frames (magic, version,
 * known types, sane lengths), ending on a frame boundary; it closes the connection in bounded
 * time after our half-close and its connection thread ends; afterwards both leases can be
 * collected and every block is free. abort()s on a violation. Includes kv_xfer.c to give the
 * leases fixed ids (so seeds can name them) and to see the connection slots. Also built with
 * replay_main.c for ctest.
 */
#include "engine/kv_xfer.c"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define FZ_LAYERS 2
#define FZ_BSZ 4
#define FZ_BLOCKS 8
#define FZ_SEG 16

typedef struct fz_exec {
    exec_t base;
    exec_kv_layout_t lay;
    uint8_t pool[FZ_LAYERS * FZ_BLOCKS * 2 * FZ_SEG];
} fz_exec_t;

static int fz_execute(exec_t *e, const sched_plan_t *plan, int32_t *sampled, exec_sample_lp_t *lps,
                      uint32_t *n_sampled)
{
    (void)e;
    (void)plan;
    (void)sampled;
    (void)lps;
    *n_sampled = 0;
    return ST_OK;
}

static void fz_destroy(exec_t *e)
{
    (void)e;
}

static void fz_layout(const exec_t *e, exec_kv_layout_t *out)
{
    *out = ((const fz_exec_t *)e)->lay;
}

static void *fz_segment(exec_t *e, uint32_t layer, uint32_t block, uint32_t which)
{
    fz_exec_t *f = (fz_exec_t *)e;
    if (layer >= FZ_LAYERS || block >= FZ_BLOCKS || which > 1)
        return NULL;
    return f->pool + (((size_t)layer * FZ_BLOCKS + block) * 2 + which) * FZ_SEG;
}

static const exec_vtable_t fz_vt = {.name = "fuzz",
                                    .execute = fz_execute,
                                    .destroy = fz_destroy,
                                    .kv_layout = fz_layout,
                                    .kv_segment = fz_segment};

static fz_exec_t fz_ex;
static kvx_t *fz_x; /* one producer for every input (reachable: not a leak) */

static void fz_setup(void)
{
    if (fz_x)
        return;
    sy_log_set_level(SY_LOG_OFF);
    fz_ex.base.vt = &fz_vt;
    fz_ex.lay = (exec_kv_layout_t){.n_layers = FZ_LAYERS,
                                   .block_size = FZ_BSZ,
                                   .num_blocks = FZ_BLOCKS,
                                   .dtype = EXEC_KV_F32,
                                   .seg_bytes = FZ_SEG,
                                   .model_bytes_per_block = 2 * FZ_LAYERS * FZ_SEG};
    for (size_t i = 0; i < sizeof fz_ex.pool; i++)
        fz_ex.pool[i] = (uint8_t)(i * 7 + 1);
    kvx_config_t c;
    char err[256];
    CHECK(kvx_config_parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_producer\","
                           "\"kv_port\":0,\"kv_connector_extra_config\":{\"io_timeout_seconds\":1,"
                           "\"max_leases\":4}}",
                           &c, err, sizeof err) == ST_OK);
    mx_registry_t *reg = mx_registry_create();
    CHECK(reg);
    fz_x = kvx_create(&c, &fz_ex.base, reg, "fuzz", err, sizeof err);
    CHECK(fz_x);
}

static void fz_free(void *ud, kvb_seq_t *t)
{
    kvb_seq_release(ud, t);
}

/* A lease of two fresh blocks, renamed to a fixed id. */
static void fz_lease(kvb_mgr_t *kvb, const char *name)
{
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    CHECK(kvb_seq_reserve(kvb, &s, 2 * FZ_BSZ) == ST_OK);
    char id[KVX_ID_MAX];
    CHECK(kvx_lease_add(fz_x, "fz", &s, id) == ST_OK);
    kvb_seq_deinit(&s);
    pthread_mutex_lock(&fz_x->mu);
    lease_t *l = lease_find(fz_x, id, strlen(id));
    CHECK(l && l->state == L_ACTIVE);
    snprintf(l->id, sizeof l->id, "%s", name);
    pthread_mutex_unlock(&fz_x->mu);
}

/* Incremental check of the producer's output stream. */
typedef struct fz_parse {
    uint8_t h[HDR_LEN];
    size_t h_n;    /* header bytes collected */
    uint64_t skip; /* payload bytes still to come */
} fz_parse_t;

static void fz_feed(fz_parse_t *p, const uint8_t *b, size_t n)
{
    while (n) {
        if (p->skip) {
            size_t k = n < p->skip ? n : (size_t)p->skip;
            p->skip -= k;
            b += k;
            n -= k;
            continue;
        }
        p->h[p->h_n++] = *b++;
        n--;
        if (p->h_n < HDR_LEN)
            continue;
        p->h_n = 0;
        CHECK(memcmp(p->h, "SYKV", 4) == 0 && p->h[4] == KVX_VERSION);
        uint8_t type = p->h[5];
        uint32_t len = get_u32(p->h + 8);
        switch (type) {
        case T_PULL_OK:
            CHECK(len == 16);
            break;
        case T_LAYER:
            CHECK(len >= 16 && (len - 16) % (2 * FZ_SEG) == 0);
            break;
        case T_END:
            CHECK(len == 8);
            break;
        case T_ERR:
            CHECK(len >= 4 && len <= 1004);
            break;
        case T_ACK:
            CHECK(len == 0);
            break;
        default:
            abort(); /* the producer never sends PULL, RELEASE or unknown types */
        }
        p->skip = len;
    }
}

static void fz_exchange(int port, const uint8_t *data, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fz_parse_t p = {0};
    size_t off = 0;
    bool wr_done = false, eof = false;
    uint64_t deadline = mono_ns() + 5000000000ull;
    static uint8_t buf[1 << 16];
    for (;;) {
        if (!wr_done && off == size) {
            shutdown(fd, SHUT_WR);
            wr_done = true;
        }
        uint64_t now = mono_ns();
        CHECK(now < deadline); /* the producer must answer and close in bounded time */
        struct pollfd pf = {.fd = fd, .events = (short)(POLLIN | (wr_done ? 0 : POLLOUT))};
        if (poll(&pf, 1, (int)((deadline - now) / 1000000 + 1)) <= 0)
            continue;
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0) {
                eof = true;
                break;
            }
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                break; /* reset: it closed with our input unread; the output may be cut */
            if (r > 0)
                fz_feed(&p, buf, (size_t)r);
        }
        if (!wr_done && (pf.revents & POLLOUT)) {
            ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                wr_done = true; /* it stopped reading and closed */
        }
    }
    if (eof)
        CHECK(p.h_n == 0 && p.skip == 0); /* whole frames only */
    close(fd);
}

/* Waits (bounded) until every connection thread has ended. */
static void fz_wait_conns(void)
{
    uint64_t deadline = mono_ns() + 5000000000ull;
    for (;;) {
        bool busy = false;
        pthread_mutex_lock(&fz_x->mu);
        for (int i = 0; i < KVX_MAX_CONNS; i++)
            busy |= fz_x->conns[i].used && !fz_x->conns[i].done;
        pthread_mutex_unlock(&fz_x->mu);
        if (!busy)
            return;
        CHECK(mono_ns() < deadline);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_setup();
    kvb_config_t kc = {.block_size = FZ_BSZ, .num_blocks = FZ_BLOCKS, .hash_seed = "0"};
    kvb_mgr_t *kvb = kvb_create(&kc, NULL);
    CHECK(kvb);
    fz_lease(kvb, "fz-a");
    fz_lease(kvb, "fz-b");
    fz_exchange(kvx_port(fz_x), data, size);
    fz_wait_conns();
    /* both leases end (pulled, released, or now), and every block comes back */
    CHECK(kvx_lease_collect(fz_x, 0, true, fz_free, kvb) == 2);
    CHECK(kvx_lease_next_expiry(fz_x) == 0);
    pthread_mutex_lock(&fz_x->mu);
    CHECK(fz_x->n_leases == 0 && fz_x->leased_blocks == 0);
    pthread_mutex_unlock(&fz_x->mu);
    kvb_stats_t st;
    kvb_get_stats(kvb, &st);
    CHECK(st.used_blocks == 0);
    kvb_destroy(kvb);
    return 0;
}
