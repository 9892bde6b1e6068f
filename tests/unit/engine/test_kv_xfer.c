/*
 * test_kv_xfer.c - the KV-transfer connector (TcpConnector): kvx_config_parse and its refusals;
 * full and partial pulls between a producer and a consumer in one process (fake executors with
 * real storage, a real block manager on the producer) checked byte for byte and against the KV
 * digest; release-only jobs; lease expiry and the leased-blocks gauge; refused pulls (unknown,
 * out of lease, duplicate, layout, nothing listening); hostile frames on a raw socket (ERR codes,
 * the producer's threads survive, connection and lease limits); a fake producer that cuts,
 * stalls or corrupts a transfer; and kvx_stop/kvx_destroy while a pull waits on a silent peer.
 * Every wait is bounded (the wake callback signals a condition variable).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/executor.h"
#include "engine/kv_block.h"
#include "engine/kv_xfer.h"

#define NL 3   /* layers */
#define BSZ 4  /* block_size */
#define NB 16  /* blocks per pool */
#define SEG 64 /* seg_bytes */
#define CONS_FILL 0xEE
#define WAIT_S 5.0

/* ------------------------------------------------------------ clock, wire helpers */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double secs_since(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_hdr(uint8_t *h, uint8_t version, uint8_t type, uint32_t len)
{
    memcpy(h, "SYKV", 4);
    h[4] = version;
    h[5] = type;
    put_u16(h + 6, 0);
    put_u32(h + 8, len);
}

/* A PULL frame into b: claims n_claim block ids but carries n_ids of them. Returns its size. */
static size_t mk_pull(uint8_t *b, const char *id, uint64_t seg, uint32_t n_claim,
                      const uint32_t *ids, uint32_t n_ids)
{
    size_t il = strlen(id);
    size_t plen = 2 + il + 24 + 4 * (size_t)n_ids;
    put_hdr(b, 1, 1, (uint32_t)plen);
    uint8_t *q = b + 12;
    q[0] = 1;
    q[1] = (uint8_t)il;
    memcpy(q + 2, id, il);
    q += 2 + il;
    put_u32(q, NL);
    put_u32(q + 4, BSZ);
    put_u32(q + 8, EXEC_KV_F32);
    put_u64(q + 12, seg);
    put_u32(q + 20, n_claim);
    for (uint32_t i = 0; i < n_ids; i++)
        put_u32(q + 24 + 4 * (size_t)i, ids[i]);
    return 12 + plen;
}

static size_t mk_release(uint8_t *b, const char *id)
{
    size_t il = strlen(id);
    put_hdr(b, 1, 6, (uint32_t)(1 + il));
    b[12] = (uint8_t)il;
    memcpy(b + 13, id, il);
    return 13 + il;
}

/* ------------------------------------------------------------ fake executor with storage */

typedef struct fake_exec {
    exec_t base;
    exec_kv_layout_t lay;
    uint8_t *pool; /* (n_layers, num_blocks, 2, seg_bytes) */
} fake_exec_t;

static int fx_execute(exec_t *e, const sched_plan_t *plan, int32_t *sampled, exec_sample_lp_t *lps,
                      uint32_t *n_sampled)
{
    (void)e;
    (void)plan;
    (void)sampled;
    (void)lps;
    *n_sampled = 0;
    return ST_OK;
}

static void fx_destroy(exec_t *e)
{
    (void)e;
}

static void fx_layout(const exec_t *e, exec_kv_layout_t *out)
{
    *out = ((const fake_exec_t *)e)->lay;
}

static void *fx_segment(exec_t *e, uint32_t layer, uint32_t block, uint32_t which)
{
    fake_exec_t *f = (fake_exec_t *)e;
    if (layer >= f->lay.n_layers || block >= f->lay.num_blocks || which > 1 || !f->lay.seg_bytes)
        return NULL;
    return f->pool + (((size_t)layer * f->lay.num_blocks + block) * 2 + which) * f->lay.seg_bytes;
}

static const exec_vtable_t fx_vt = {.name = "fake",
                                    .execute = fx_execute,
                                    .destroy = fx_destroy,
                                    .kv_layout = fx_layout,
                                    .kv_segment = fx_segment};
static const exec_vtable_t fx_vt_nokv = {
    .name = "fake-nokv", .execute = fx_execute, .destroy = fx_destroy};

static void fake_init(fake_exec_t *f, uint64_t seg_bytes, uint8_t fill)
{
    memset(f, 0, sizeof *f);
    f->base.vt = &fx_vt;
    f->lay = (exec_kv_layout_t){.n_layers = NL,
                                .block_size = BSZ,
                                .num_blocks = NB,
                                .dtype = EXEC_KV_F32,
                                .seg_bytes = seg_bytes,
                                .model_bytes_per_block = 2 * NL * seg_bytes};
    size_t sz = (size_t)NL * NB * 2 * seg_bytes;
    f->pool = malloc(sz ? sz : 1);
    assert_non_null(f->pool);
    memset(f->pool, fill, sz);
}

static uint8_t *seg_at(fake_exec_t *f, uint32_t layer, uint32_t block, uint32_t which)
{
    uint8_t *p = fx_segment(&f->base, layer, block, which);
    assert_non_null(p);
    return p;
}

static uint8_t pattern(uint32_t layer, uint32_t block, uint32_t which, uint32_t i, uint32_t salt)
{
    return (uint8_t)(layer * 59u + block * 17u + which * 113u + i * 7u + salt * 31u + 1u);
}

static void pattern_fill(fake_exec_t *f, uint32_t block, uint32_t salt)
{
    for (uint32_t l = 0; l < NL; l++)
        for (uint32_t w = 0; w < 2; w++) {
            uint8_t *p = seg_at(f, l, block, w);
            for (uint32_t i = 0; i < SEG; i++)
                p[i] = pattern(l, block, w, i, salt);
        }
}

/* The KV digest of the protocol: xxh64 over each layer's data (per block K then V), and
 * xxh64 over those layer digests as 8-byte little-endian values. */
static uint64_t expect_digest(fake_exec_t *f, const uint32_t *ids, uint32_t n)
{
    XXH3_state_t *all = XXH3_createState(), *one = XXH3_createState();
    assert_non_null(all);
    assert_non_null(one);
    XXH3_64bits_reset(all);
    for (uint32_t l = 0; l < NL; l++) {
        XXH3_64bits_reset(one);
        for (uint32_t b = 0; b < n; b++)
            for (uint32_t w = 0; w < 2; w++)
                XXH3_64bits_update(one, seg_at(f, l, ids[b], w), f->lay.seg_bytes);
        uint8_t tr[8];
        put_u64(tr, XXH3_64bits_digest(one));
        XXH3_64bits_update(all, tr, sizeof tr);
    }
    uint64_t d = XXH3_64bits_digest(all);
    XXH3_freeState(all);
    XXH3_freeState(one);
    return d;
}

/* ------------------------------------------------------------ wake + waits */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned wakes;
} waiter_t;

static void waiter_init(waiter_t *w)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &a);
    pthread_condattr_destroy(&a);
    w->wakes = 0;
}

static void waiter_deinit(waiter_t *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void on_wake(void *ud)
{
    waiter_t *w = ud;
    pthread_mutex_lock(&w->mu);
    w->wakes++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* w->mu held; waits for a wake or until deadline (or 100 ms, whichever is first). */
static void waiter_nap(waiter_t *w, uint64_t deadline)
{
    uint64_t t = now_ns() + 100000000ull;
    if (t > deadline)
        t = deadline;
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                          .tv_nsec = (long)(t % 1000000000ull)};
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

static kvx_job_t *wait_job(waiter_t *w, kvx_t *x, double timeout_s)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    pthread_mutex_lock(&w->mu);
    kvx_job_t *j;
    while (!(j = kvx_job_take_done(x)) && now_ns() < deadline)
        waiter_nap(w, deadline);
    pthread_mutex_unlock(&w->mu);
    return j;
}

static void on_lease_free(void *ud, kvb_seq_t *t)
{
    kvb_seq_release(ud, t);
}

/* Collects leases that ended (not expired ones: now = 0) until one does or the timeout. */
static uint32_t wait_collect(waiter_t *w, kvx_t *x, kvb_mgr_t *kvb, double timeout_s)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    uint32_t n = 0;
    pthread_mutex_lock(&w->mu);
    while (!(n = kvx_lease_collect(x, 0, false, on_lease_free, kvb)) && now_ns() < deadline)
        waiter_nap(w, deadline);
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Waits until some lease is RELEASED (next expiry 1 = collect now), without collecting it. */
static bool wait_released(waiter_t *w, kvx_t *x, double timeout_s)
{
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    pthread_mutex_lock(&w->mu);
    bool ok;
    while (!(ok = kvx_lease_next_expiry(x) == 1) && now_ns() < deadline)
        waiter_nap(w, deadline);
    pthread_mutex_unlock(&w->mu);
    return ok;
}

/* ------------------------------------------------------------ rig: producer + consumer */

typedef struct rig_opts {
    const char *prod_extra; /* kv_connector_extra_config of the producer, NULL = default */
    const char *cons_extra; /* of the consumer */
    uint64_t cons_seg;      /* consumer seg_bytes, 0 = SEG */
} rig_opts_t;

typedef struct rig {
    fake_exec_t pe, ce;
    mx_registry_t *preg, *creg;
    kvx_t *prod, *cons;
    kvb_mgr_t *kvb;
    waiter_t w;
    int port;
    uint32_t salt;
} rig_t;

static kvx_t *mk_kvx(const char *role, const char *extra, fake_exec_t *e, mx_registry_t *reg,
                     waiter_t *w)
{
    char js[1024], err[256] = "";
    snprintf(js, sizeof js,
             "{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"%s\",\"kv_port\":0,"
             "\"kv_ip\":\"127.0.0.1\",\"kv_connector_extra_config\":%s}",
             role, extra);
    kvx_config_t c;
    if (kvx_config_parse(js, &c, err, sizeof err) != ST_OK)
        fail_msg("config %s: %s", js, err);
    kvx_t *x = kvx_create(&c, &e->base, reg, "m", err, sizeof err);
    if (!x)
        fail_msg("kvx_create: %s", err);
    kvx_set_wake(x, on_wake, w);
    return x;
}

static int rig_setup(void **state)
{
    const rig_opts_t *o = *state;
    static const rig_opts_t defaults = {0};
    if (!o)
        o = &defaults;
    rig_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    waiter_init(&r->w);
    fake_init(&r->pe, SEG, 0);
    fake_init(&r->ce, o->cons_seg ? o->cons_seg : SEG, CONS_FILL);
    r->preg = mx_registry_create();
    r->creg = mx_registry_create();
    assert_non_null(r->preg);
    assert_non_null(r->creg);
    kvb_config_t kc = {.block_size = BSZ, .num_blocks = NB, .hash_seed = "0"};
    r->kvb = kvb_create(&kc, NULL);
    assert_non_null(r->kvb);
    r->prod = mk_kvx("kv_producer",
                     o->prod_extra ? o->prod_extra : "{\"io_timeout_seconds\":1,\"max_leases\":8}",
                     &r->pe, r->preg, &r->w);
    r->cons = mk_kvx("kv_consumer", o->cons_extra ? o->cons_extra : "{\"io_timeout_seconds\":1}",
                     &r->ce, r->creg, &r->w);
    assert_true(kvx_is_producer(r->prod) && !kvx_is_consumer(r->prod));
    assert_true(kvx_is_consumer(r->cons) && !kvx_is_producer(r->cons));
    r->port = kvx_port(r->prod);
    assert_true(r->port > 0 && r->port != 14579);
    *state = r;
    return 0;
}

static int rig_teardown(void **state)
{
    rig_t *r = *state;
    int rc = 0;
    kvx_stop(r->cons);
    kvx_stop(r->prod);
    if (r->prod)
        kvx_lease_collect(r->prod, now_ns(), true, on_lease_free, r->kvb);
    for (kvx_job_t *j; r->cons && (j = kvx_job_take_done(r->cons));)
        kvx_job_free(j);
    kvx_destroy(r->cons);
    kvx_destroy(r->prod);
    if (r->kvb) {
        kvb_stats_t st;
        kvb_get_stats(r->kvb, &st);
        if (st.used_blocks != 0) {
            fprintf(stderr, "teardown: %u producer blocks still held\n", st.used_blocks);
            rc = -1;
        }
        kvb_destroy(r->kvb);
    }
    mx_registry_destroy(r->preg);
    mx_registry_destroy(r->creg);
    free(r->pe.pool);
    free(r->ce.pool);
    waiter_deinit(&r->w);
    free(r);
    return rc;
}

static uint32_t used_blocks(rig_t *r)
{
    kvb_stats_t st;
    kvb_get_stats(r->kvb, &st);
    assert_int_equal(st.used_blocks + st.free_blocks, NB);
    return st.used_blocks;
}

/* Reserves n blocks on the producer, fills them with a fresh pattern and leases them. */
static void lease_make(rig_t *r, uint32_t n, char *id, uint32_t *blocks)
{
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    assert_int_equal(kvb_seq_reserve(r->kvb, &s, n * BSZ), ST_OK);
    uint32_t nb = 0;
    const uint32_t *b = kvb_seq_blocks(&s, &nb);
    assert_int_equal(nb, n);
    memcpy(blocks, b, n * sizeof *blocks);
    r->salt++;
    for (uint32_t i = 0; i < n; i++)
        pattern_fill(&r->pe, blocks[i], r->salt);
    assert_int_equal(kvx_lease_add(r->prod, "req", &s, id), ST_OK);
    assert_true(strlen(id) > 0 && strlen(id) < KVX_ID_MAX);
    kvb_seq_blocks(&s, &nb);
    assert_int_equal(nb, 0); /* moved into the lease */
    kvb_seq_deinit(&s);
}

typedef struct pull_out {
    int status;
    uint64_t bytes, digest;
    double seconds, wall;
    char err[256];
} pull_out_t;

static pull_out_t pull_to(rig_t *r, kvx_t *cons, int port, const char *lease, const uint32_t *rid,
                          const uint32_t *lid, uint32_t n)
{
    kvx_pull_spec_t sp = {.host = "127.0.0.1",
                          .port = port,
                          .lease_id = lease,
                          .remote_ids = rid,
                          .local_ids = lid,
                          .n_blocks = n,
                          .udata = r};
    uint64_t t0 = now_ns();
    kvx_job_t *j = kvx_job_submit(cons, &sp);
    assert_non_null(j);
    kvx_job_t *got = wait_job(&r->w, cons, WAIT_S);
    if (!got)
        fail_msg("pull of %s did not finish within %g s", lease, WAIT_S);
    assert_ptr_equal(got, j);
    assert_ptr_equal(kvx_job_udata(got), r);
    pull_out_t o = {.wall = secs_since(t0)};
    kvx_job_result_t res;
    kvx_job_result(got, &res);
    o.status = res.status;
    o.bytes = res.bytes;
    o.digest = res.digest;
    o.seconds = res.seconds;
    snprintf(o.err, sizeof o.err, "%s", res.error ? res.error : "");
    kvx_job_free(got);
    return o;
}

static pull_out_t pull(rig_t *r, const char *lease, const uint32_t *rid, const uint32_t *lid,
                       uint32_t n)
{
    return pull_to(r, r->cons, r->port, lease, rid, lid, n);
}

static void expect_fail(const pull_out_t *o, const char *needle)
{
    if (o->status == ST_OK)
        fail_msg("pull succeeded, expected an error with \"%s\"", needle);
    if (!strstr(o->err, needle))
        fail_msg("error \"%s\" (status %s) does not mention \"%s\"", o->err, st_str(o->status),
                 needle);
}

/* Consumer blocks lid[i] hold the producer's rid[i] (every layer, K and V); every other
 * consumer block is untouched. */
static void check_copied(rig_t *r, const uint32_t *rid, const uint32_t *lid, uint32_t n)
{
    for (uint32_t b = 0; b < NB; b++) {
        int k = -1;
        for (uint32_t i = 0; i < n; i++)
            if (lid[i] == b)
                k = (int)i;
        for (uint32_t l = 0; l < NL; l++)
            for (uint32_t w = 0; w < 2; w++) {
                const uint8_t *c = seg_at(&r->ce, l, b, w);
                if (k >= 0) {
                    if (memcmp(c, seg_at(&r->pe, l, rid[k], w), SEG) != 0)
                        fail_msg("consumer block %u (layer %u, %s) differs from producer block %u",
                                 b, l, w ? "V" : "K", rid[k]);
                } else {
                    for (uint32_t i = 0; i < SEG; i++)
                        if (c[i] != CONS_FILL)
                            fail_msg("consumer block %u (layer %u) written but not pulled", b, l);
                }
            }
    }
}

static void reset_consumer(rig_t *r)
{
    memset(r->ce.pool, CONS_FILL, (size_t)NL * NB * 2 * SEG);
}

/* A one-block lease pulled and checked end to end; the lease is then collected. */
static void served_ok(rig_t *r)
{
    char id[KVX_ID_MAX];
    uint32_t rid[1], lid[1] = {NB - 1};
    lease_make(r, 1, id, rid);
    reset_consumer(r);
    pull_out_t o = pull(r, id, rid, lid, 1);
    if (o.status != ST_OK)
        fail_msg("the producer no longer serves: %s (%s)", o.err, st_str(o.status));
    check_copied(r, rid, lid, 1);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
}

/* The value of an unlabelled-but-model_name series of family in a registry's exposition. */
static double metric(mx_registry_t *reg, const char *family, const char *label)
{
    sy_buf_t b;
    sy_buf_init(&b);
    assert_int_equal(mx_registry_render(reg, &b), ST_OK);
    char key[256];
    /* the exposition sorts labels by name */
    if (label && strcmp(label, "model_name") < 0)
        snprintf(key, sizeof key, "\n%s{%s,model_name=\"m\"}", family, label);
    else
        snprintf(key, sizeof key, "\n%s{model_name=\"m\"%s%s}", family, label ? "," : "",
                 label ? label : "");
    const char *p = b.data ? strstr(b.data, key) : NULL;
    if (!p) {
        fprintf(stderr, "%s", b.data ? b.data : "");
        sy_buf_deinit(&b);
        fail_msg("no series %s in the exposition", key + 1);
    }
    double v = strtod(p + strlen(key), NULL);
    sy_buf_deinit(&b);
    return v;
}

/* Producer counters are bumped just after the lease ends: poll them (bounded). */
static void wait_metric(mx_registry_t *reg, const char *family, const char *label, double want)
{
    uint64_t t0 = now_ns();
    double v;
    while ((v = metric(reg, family, label)) != want && secs_since(t0) < WAIT_S)
        sleep_ms(2);
    if (v != want)
        fail_msg("%s{%s} is %g, expected %g", family, label ? label : "", v, want);
}

/* ------------------------------------------------------------ 1. config */

static int parse(const char *js, kvx_config_t *c, char *err)
{
    err[0] = 0;
    return kvx_config_parse(js, c, err, 256);
}

static void expect_refused(const char *js, const char *needle)
{
    kvx_config_t c;
    char err[256];
    int rc = parse(js, &c, err);
    if (rc != ST_INVAL)
        fail_msg("%s: rc %s, expected ST_INVAL", js, st_str(rc));
    if (!strstr(err, needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", js, err, needle);
}

static void test_config_parse(void **state)
{
    (void)state;
    kvx_config_t c, d;
    char err[256];
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\"}", &c, err),
                     ST_OK);
    assert_int_equal(c.role, KVX_BOTH);
    assert_int_equal(c.port, 14579);
    assert_string_equal(c.ip, "127.0.0.1");
    assert_string_equal(c.host, "127.0.0.1");
    assert_true(c.lease_s == 30 && c.io_timeout_s == 10);
    assert_true(c.sim_bandwidth_gbps == 200 && c.sim_latency_ms == 0.5);
    assert_int_equal(c.max_leases, 4096);
    assert_int_equal(c.pull_threads, 2);
    assert_int_equal(c.sock_buf, 8 << 20);
    assert_int_equal(strlen(c.engine_id), 36); /* a UUID v4 */
    assert_int_equal(c.engine_id[14], '4');
    assert_true(strchr("89ab", c.engine_id[19]) != NULL);
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\"}", &d, err),
                     ST_OK);
    assert_string_not_equal(c.engine_id, d.engine_id);

    assert_int_equal(
        parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_producer\"}", &c, err), ST_OK);
    assert_int_equal(c.role, KVX_PRODUCER);
    assert_int_equal(
        parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_consumer\"}", &c, err), ST_OK);
    assert_int_equal(c.role, KVX_CONSUMER);

    /* every key, unknown vLLM keys ignored */
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_consumer\","
                           "\"kv_port\":0,\"kv_ip\":\"10.1.2.3\",\"engine_id\":\"eng-7\","
                           "\"kv_buffer_device\":\"cuda\",\"kv_rank\":null,"
                           "\"kv_connector_extra_config\":{\"lease_seconds\":2.5,"
                           "\"io_timeout_seconds\":0.5,\"sim_bandwidth_gbps\":100,"
                           "\"sim_latency_ms\":0,\"max_leases\":7,\"pull_threads\":3,"
                           "\"socket_buffer_bytes\":0,\"future_key\":1}}",
                           &c, err),
                     ST_OK);
    assert_int_equal(c.port, 0);
    assert_string_equal(c.ip, "10.1.2.3");
    assert_string_equal(c.host, "10.1.2.3"); /* advertise_host defaults to kv_ip */
    assert_string_equal(c.engine_id, "eng-7");
    assert_true(c.lease_s == 2.5 && c.io_timeout_s == 0.5);
    assert_true(c.sim_bandwidth_gbps == 100 && c.sim_latency_ms == 0);
    assert_int_equal(c.max_leases, 7);
    assert_int_equal(c.pull_threads, 3);
    assert_int_equal(c.sock_buf, 0);
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\","
                           "\"kv_port\":65535,\"kv_ip\":\"0.0.0.0\"}",
                           &c, err),
                     ST_OK);
    assert_int_equal(c.port, 65535);
    assert_string_equal(c.host, "127.0.0.1"); /* not 0.0.0.0 */
    assert_int_equal(
        parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\",\"kv_ip\":\"0.0.0.0\","
              "\"kv_connector_extra_config\":{\"advertise_host\":\"prefill-0.svc\"}}",
              &c, err),
        ST_OK);
    assert_string_equal(c.host, "prefill-0.svc");
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\","
                           "\"kv_connector_extra_config\":null}",
                           &c, err),
                     ST_OK);

    /* refusals, each with its message */
    expect_refused("{", "not a JSON object");
    expect_refused("", "not a JSON object");
    expect_refused(NULL, "not a JSON object");
    expect_refused("[1,2]", "not a JSON object");
    expect_refused("\"TcpConnector\"", "not a JSON object");
    expect_refused("{\"kv_role\":\"kv_both\"}", "TcpConnector");
    expect_refused("{\"kv_connector\":\"NixlConnector\",\"kv_role\":\"kv_both\"}", "TcpConnector");
    expect_refused("{\"kv_connector\":7,\"kv_role\":\"kv_both\"}", "TcpConnector");
    expect_refused("{\"kv_connector\":\"TcpConnector\"}", "kv_role");
    expect_refused("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_decoder\"}", "kv_role");
    expect_refused("{\"kv_connector\":\"TcpConnector\",\"kv_role\":1}", "kv_role");
    expect_refused("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\","
                   "\"kv_role\":\"kv_producer\"}",
                   "not a JSON object"); /* duplicate keys */
    const char *pre = "{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\",";
    struct {
        const char *rest, *needle;
    } bad[] = {
        {"\"kv_port\":65536}", "kv_port"},
        {"\"kv_port\":-1}", "kv_port"},
        {"\"kv_port\":80.5}", "'kv_port' must be an integer"},
        {"\"kv_port\":\"14579\"}", "kv_port"},
        {"\"kv_ip\":\"\"}", "kv_ip"},
        {"\"kv_ip\":5}", "kv_ip"},
        {"\"engine_id\":\"\"}", "engine_id"},
        {"\"kv_connector_extra_config\":[]}", "kv_connector_extra_config must be an object"},
        {"\"kv_connector_extra_config\":\"lease_seconds=3\"}", "must be an object"},
        {"\"kv_connector_extra_config\":{\"lease_seconds\":0.01}}", "'lease_seconds'"},
        {"\"kv_connector_extra_config\":{\"lease_seconds\":1e9}}", "'lease_seconds'"},
        {"\"kv_connector_extra_config\":{\"io_timeout_seconds\":0}}", "'io_timeout_seconds'"},
        {"\"kv_connector_extra_config\":{\"io_timeout_seconds\":\"1\"}}", "'io_timeout_seconds'"},
        {"\"kv_connector_extra_config\":{\"sim_bandwidth_gbps\":0}}", "'sim_bandwidth_gbps'"},
        {"\"kv_connector_extra_config\":{\"sim_latency_ms\":-1}}", "'sim_latency_ms'"},
        {"\"kv_connector_extra_config\":{\"max_leases\":0}}", "'max_leases'"},
        {"\"kv_connector_extra_config\":{\"max_leases\":2000000}}", "'max_leases'"},
        {"\"kv_connector_extra_config\":{\"pull_threads\":0}}", "'pull_threads'"},
        {"\"kv_connector_extra_config\":{\"pull_threads\":65}}", "'pull_threads'"},
        {"\"kv_connector_extra_config\":{\"socket_buffer_bytes\":-1}}", "'socket_buffer_bytes'"},
        {"\"kv_connector_extra_config\":{\"advertise_host\":\"\"}}", "'advertise_host'"},
        {"\"kv_connector_extra_config\":{\"advertise_host\":true}}", "'advertise_host'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char js[512];
        snprintf(js, sizeof js, "%s%s", pre, bad[i].rest);
        expect_refused(js, bad[i].needle);
    }
    /* a message is written even into a 1-byte buffer without overflow, and NULL err is fine */
    char tiny[1] = {'x'};
    assert_int_equal(kvx_config_parse("{", &c, tiny, sizeof tiny), ST_INVAL);
    assert_int_equal(tiny[0], 0);
    assert_int_equal(kvx_config_parse("{", &c, NULL, 0), ST_INVAL);
}

/* kvx_create refusals: an executor without KV support, a bad kv_ip, a port in use. */
static void test_create_refusals(void **state)
{
    rig_t *r = *state;
    kvx_config_t c;
    char err[256];
    assert_int_equal(parse("{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\","
                           "\"kv_port\":0}",
                           &c, err),
                     ST_OK);
    mx_registry_t *reg = mx_registry_create();
    assert_non_null(reg);
    fake_exec_t nokv;
    fake_init(&nokv, SEG, 0);
    nokv.base.vt = &fx_vt_nokv;
    err[0] = 0;
    assert_null(kvx_create(&c, &nokv.base, reg, "m", err, sizeof err));
    assert_non_null(strstr(err, "cannot transfer KV"));
    free(nokv.pool);

    snprintf(c.ip, sizeof c.ip, "not-an-ip");
    err[0] = 0;
    assert_null(kvx_create(&c, &r->pe.base, reg, "m", err, sizeof err));
    assert_non_null(strstr(err, "kv_ip"));

    snprintf(c.ip, sizeof c.ip, "127.0.0.1");
    c.port = r->port; /* the rig's producer listens there */
    c.role = KVX_PRODUCER;
    err[0] = 0;
    assert_null(kvx_create(&c, &r->pe.base, reg, "m", err, sizeof err));
    assert_non_null(strstr(err, "cannot listen"));
    /* a consumer-only connector does not listen */
    c.role = KVX_CONSUMER;
    kvx_t *x = kvx_create(&c, &r->pe.base, reg, "m", err, sizeof err);
    assert_non_null(x);
    kvx_destroy(x);
    mx_registry_destroy(reg);
    served_ok(r); /* the rig's producer is unaffected */
}

/* ------------------------------------------------------------ 2. pulls */

static void test_full_and_partial_pull(void **state)
{
    rig_t *r = *state;
    char id[KVX_ID_MAX];
    uint32_t rid[5], lid[5] = {15, 9, 12, 3, 7};
    lease_make(r, 5, id, rid);
    assert_int_equal(used_blocks(r), 5);
    assert_true(metric(r->preg, "switchyard:kv_leased_blocks", NULL) == 5);
    assert_true(metric(r->preg, "switchyard:kv_leases", NULL) == 1);

    pull_out_t o = pull(r, id, rid, lid, 5);
    if (o.status != ST_OK)
        fail_msg("pull failed: %s (%s)", o.err, st_str(o.status));
    assert_int_equal(o.bytes, 2ull * NL * SEG * 5);
    assert_true(o.digest != 0);
    assert_true(o.digest == expect_digest(&r->pe, rid, 5));
    assert_true(o.seconds > 0 && o.seconds < WAIT_S);
    check_copied(r, rid, lid, 5);
    /* the pull released the lease: the core collects it and the blocks are free */
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0);
    assert_int_equal(kvx_lease_next_expiry(r->prod), 0);
    assert_true(metric(r->preg, "switchyard:kv_leased_blocks", NULL) == 0);
    assert_true(metric(r->preg, "switchyard:kv_leases", NULL) == 0);
    wait_metric(r->preg, "switchyard:kv_transfer_leases_total", "result=\"pulled\"", 1);
    wait_metric(r->preg, "switchyard:kv_transfer_bytes_total", "direction=\"out\"",
                2.0 * NL * SEG * 5);
    assert_true(metric(r->creg, "switchyard:kv_transfer_pulls_total", "result=\"ok\"") == 1);
    assert_true(metric(r->creg, "switchyard:kv_transfer_bytes_total", "direction=\"in\"") ==
                2.0 * NL * SEG * 5);

    /* partial: two of a lease's four blocks, in reverse order, into other local blocks */
    reset_consumer(r);
    uint32_t rid4[4];
    lease_make(r, 4, id, rid4);
    uint32_t sub[2] = {rid4[3], rid4[1]}, lsub[2] = {0, 5};
    o = pull(r, id, sub, lsub, 2);
    if (o.status != ST_OK)
        fail_msg("partial pull failed: %s", o.err);
    assert_int_equal(o.bytes, 2ull * NL * SEG * 2);
    assert_true(o.digest == expect_digest(&r->pe, sub, 2));
    check_copied(r, sub, lsub, 2);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0); /* the whole lease ended, not only the pulled blocks */

    /* two leases pulled concurrently by the two pull threads */
    reset_consumer(r);
    char id_a[KVX_ID_MAX], id_b[KVX_ID_MAX];
    uint32_t ra[3], rb[3], la[3] = {1, 2, 3}, lb[3] = {10, 11, 12};
    lease_make(r, 3, id_a, ra);
    lease_make(r, 3, id_b, rb);
    assert_string_not_equal(id_a, id_b);
    kvx_pull_spec_t sa = {"127.0.0.1", r->port, id_a, ra, la, 3, NULL};
    kvx_pull_spec_t sb = {"127.0.0.1", r->port, id_b, rb, lb, 3, NULL};
    assert_non_null(kvx_job_submit(r->cons, &sa));
    assert_non_null(kvx_job_submit(r->cons, &sb));
    for (int k = 0; k < 2; k++) {
        kvx_job_t *j = wait_job(&r->w, r->cons, WAIT_S);
        assert_non_null(j);
        kvx_job_result_t res;
        kvx_job_result(j, &res);
        if (res.status != ST_OK)
            fail_msg("concurrent pull failed: %s", res.error);
        kvx_job_free(j);
    }
    check_copied(r, (uint32_t[]){ra[0], ra[1], ra[2], rb[0], rb[1], rb[2]},
                 (uint32_t[]){1, 2, 3, 10, 11, 12}, 6);
    uint32_t got = 0;
    for (int k = 0; k < 2 && got < 2; k++)
        got += wait_collect(&r->w, r->prod, r->kvb, WAIT_S);
    assert_int_equal(got, 2);
    assert_int_equal(used_blocks(r), 0);
}

/* ------------------------------------------------------------ 3. release-only */

static void test_release_only(void **state)
{
    rig_t *r = *state;
    char id[KVX_ID_MAX];
    uint32_t rid[2];
    lease_make(r, 2, id, rid);
    assert_int_equal(kvx_lease_collect(r->prod, 0, false, on_lease_free, r->kvb), 0);
    kvx_pull_spec_t sp = {.host = "127.0.0.1", .port = r->port, .lease_id = id};
    assert_non_null(kvx_job_submit(r->cons, &sp));
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0);
    assert_true(metric(r->preg, "switchyard:kv_transfer_leases_total", "result=\"released\"") == 1);
    /* fire-and-forget: nothing comes back, and a pull of the released lease is refused */
    assert_null(kvx_job_take_done(r->cons));
    uint32_t lid[2] = {0, 1};
    pull_out_t o = pull(r, id, rid, lid, 2);
    expect_fail(&o, "already pulled or released");
    check_copied(r, rid, lid, 0);
    /* a release of an unknown lease is dropped quietly (logged), the producer keeps serving */
    kvx_pull_spec_t bad = {.host = "127.0.0.1", .port = r->port, .lease_id = "no-such-lease"};
    assert_non_null(kvx_job_submit(r->cons, &bad));
    served_ok(r);
    assert_null(kvx_job_take_done(r->cons));
}

/* ------------------------------------------------------------ 4. expiry */

static const rig_opts_t expiry_opts = {.prod_extra =
                                           "{\"io_timeout_seconds\":1,\"lease_seconds\":0.2}"};

static void test_expiry(void **state)
{
    rig_t *r = *state;
    char id[KVX_ID_MAX];
    uint32_t rid[3];
    assert_int_equal(kvx_lease_next_expiry(r->prod), 0);
    uint64_t t0 = now_ns();
    lease_make(r, 3, id, rid);
    uint64_t t1 = now_ns();
    uint64_t exp = kvx_lease_next_expiry(r->prod);
    assert_true(exp >= t0 + 200000000ull && exp <= t1 + 200000000ull);
    assert_true(metric(r->preg, "switchyard:kv_leased_blocks", NULL) == 3);
    /* not before its time */
    assert_int_equal(kvx_lease_collect(r->prod, exp - 1, false, on_lease_free, r->kvb), 0);
    assert_int_equal(used_blocks(r), 3);
    /* wait for the real expiry, then the core's collect ends it */
    while (now_ns() < exp)
        sleep_ms(10);
    assert_int_equal(kvx_lease_collect(r->prod, now_ns(), false, on_lease_free, r->kvb), 1);
    assert_int_equal(used_blocks(r), 0);
    assert_int_equal(kvx_lease_next_expiry(r->prod), 0);
    assert_true(metric(r->preg, "switchyard:kv_leased_blocks", NULL) == 0);
    assert_true(metric(r->preg, "switchyard:kv_leases", NULL) == 0);
    assert_true(metric(r->preg, "switchyard:kv_transfer_leases_total", "result=\"expired\"") == 1);
    /* a late pull is told it expired */
    uint32_t lid[3] = {4, 5, 6};
    pull_out_t o = pull(r, id, rid, lid, 3);
    expect_fail(&o, "expired");
    check_copied(r, rid, lid, 0);
    assert_true(metric(r->creg, "switchyard:kv_transfer_pulls_total", "result=\"failed\"") == 1);
    /* a late release too (quietly); the producer still serves */
    kvx_pull_spec_t sp = {.host = "127.0.0.1", .port = r->port, .lease_id = id};
    assert_non_null(kvx_job_submit(r->cons, &sp));
    served_ok(r);
    /* the earliest of several */
    char a[KVX_ID_MAX], b[KVX_ID_MAX];
    uint32_t ra[1], rb[1];
    lease_make(r, 1, a, ra);
    uint64_t ea = kvx_lease_next_expiry(r->prod);
    sleep_ms(5);
    lease_make(r, 1, b, rb);
    assert_true(kvx_lease_next_expiry(r->prod) == ea);
    assert_int_equal(kvx_lease_collect(r->prod, ea, false, on_lease_free, r->kvb), 1);
    assert_true(kvx_lease_next_expiry(r->prod) > ea);
    /* all = true ends active leases regardless of time */
    assert_int_equal(kvx_lease_collect(r->prod, 0, true, on_lease_free, r->kvb), 1);
    assert_int_equal(used_blocks(r), 0);
}

/* ------------------------------------------------------------ 5. refused pulls */

static const rig_opts_t layout_opts = {.cons_seg = SEG / 2};

static void test_refused_pulls(void **state)
{
    rig_t *r = *state;
    char id[KVX_ID_MAX];
    uint32_t rid[3], lid[3] = {0, 1, 2};
    lease_make(r, 3, id, rid);

    pull_out_t o = pull(r, "req-kv999", rid, lid, 3);
    expect_fail(&o, "unknown");

    /* a block id not in the lease (in range, and out of range): refused, the lease stays */
    uint32_t other = 0;
    while (other == rid[0] || other == rid[1] || other == rid[2])
        other++;
    uint32_t bad1[2] = {rid[0], other}, bad2[1] = {NB + 100};
    o = pull(r, id, bad1, lid, 2);
    expect_fail(&o, "not part of lease");
    o = pull(r, id, bad2, lid, 1);
    expect_fail(&o, "not part of lease");
    check_copied(r, rid, lid, 0);
    assert_int_equal(kvx_lease_collect(r->prod, 0, false, on_lease_free, r->kvb), 0);
    assert_int_equal(used_blocks(r), 3);

    /* so a valid pull still works; a duplicate one is refused before and after collect */
    o = pull(r, id, rid, lid, 3);
    if (o.status != ST_OK)
        fail_msg("pull after refusals failed: %s", o.err);
    check_copied(r, rid, lid, 3);
    assert_true(wait_released(&r->w, r->prod, WAIT_S));
    o = pull(r, id, rid, lid, 3);
    expect_fail(&o, "already pulled or released");
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0);
    o = pull(r, id, rid, lid, 3);
    expect_fail(&o, "already pulled or released");

    /* nothing listening: a connect error, quickly */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    int dead_port = ntohs(sa.sin_port);
    close(fd);
    o = pull_to(r, r->cons, dead_port, id, rid, lid, 3);
    expect_fail(&o, "cannot connect");
    assert_true(o.wall < 2.0);
    /* submit refuses bad specs */
    kvx_pull_spec_t bad = {"127.0.0.1", 0, id, rid, lid, 3, NULL};
    assert_null(kvx_job_submit(r->cons, &bad));
    bad.port = 70000;
    assert_null(kvx_job_submit(r->cons, &bad));
    bad.port = r->port;
    bad.lease_id = NULL;
    assert_null(kvx_job_submit(r->cons, &bad));
    char longid[KVX_ID_MAX + 1];
    memset(longid, 'a', KVX_ID_MAX);
    longid[KVX_ID_MAX] = 0;
    bad.lease_id = longid;
    assert_null(kvx_job_submit(r->cons, &bad));
    served_ok(r);
}

static void test_layout_mismatch(void **state)
{
    rig_t *r = *state; /* the consumer's seg_bytes is SEG / 2 */
    char id[KVX_ID_MAX];
    uint32_t rid[2], lid[2] = {0, 1};
    lease_make(r, 2, id, rid);
    pull_out_t o = pull(r, id, rid, lid, 2);
    expect_fail(&o, "layout mismatch");
    /* the lease is not consumed by a refused pull */
    assert_int_equal(kvx_lease_collect(r->prod, 0, false, on_lease_free, r->kvb), 0);
    assert_int_equal(used_blocks(r), 2);
    for (size_t i = 0; i < (size_t)NL * NB * 2 * (SEG / 2); i++)
        assert_int_equal(r->ce.pool[i], CONS_FILL);
}

/* ------------------------------------------------------------ 6. hostile frames */

static int raw_connect(int port, double timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = (time_t)timeout_s,
                         .tv_usec = (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            fail_msg("raw send failed");
        b += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes: 1, 0 on EOF before any byte, -1 on timeout or a short read. */
static int raw_recv(int fd, void *p, size_t n)
{
    char *b = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r == 0)
            return got ? -1 : 0;
        if (r < 0)
            return -1;
        got += (size_t)r;
    }
    return 1;
}

/* Reads one frame; returns its type (payload into p, length into *len), or -1 at EOF. */
static int raw_frame(int fd, uint8_t *p, size_t cap, uint32_t *len)
{
    uint8_t h[12];
    int rc = raw_recv(fd, h, sizeof h);
    if (rc == 0)
        return -1;
    if (rc < 0)
        fail_msg("no complete frame header from the producer");
    assert_memory_equal(h, "SYKV", 4);
    assert_int_equal(h[4], 1);
    *len = get_u32(h + 8);
    assert_true(*len <= cap);
    if (*len && raw_recv(fd, p, *len) != 1)
        fail_msg("truncated frame payload from the producer");
    return h[5];
}

/* Expects an ERR frame; returns its code and checks the message is well formed. */
static int raw_err(int fd, char *msg, size_t msgcap)
{
    uint8_t p[1100];
    uint32_t len = 0;
    int type = raw_frame(fd, p, sizeof p, &len);
    if (type != 5)
        fail_msg("expected an ERR frame, got type %d", type);
    assert_true(len >= 4);
    uint16_t ml = (uint16_t)(p[2] | (p[3] << 8));
    assert_int_equal(ml, len - 4);
    if (msg)
        snprintf(msg, msgcap, "%.*s", (int)ml, (const char *)p + 4);
    return p[0] | (p[1] << 8);
}

/* The producer closes the connection (EOF, no further frame) within the socket timeout. */
static void raw_expect_eof(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    if (r != 0)
        fail_msg("expected the producer to close (recv %zd)", r);
}

/* Sends bytes on a fresh connection, expects ERR code (0: no ERR, just a close). */
static void hostile(rig_t *r, const void *bytes, size_t n, int want_code, const char *needle)
{
    int fd = raw_connect(r->port, 3.0);
    raw_send(fd, bytes, n);
    if (want_code) {
        char msg[1024];
        int code = raw_err(fd, msg, sizeof msg);
        if (code != want_code)
            fail_msg("ERR code %d (\"%s\"), expected %d", code, msg, want_code);
        if (needle && !strstr(msg, needle))
            fail_msg("ERR \"%s\" does not mention \"%s\"", msg, needle);
    } else {
        shutdown(fd, SHUT_WR);
    }
    raw_expect_eof(fd);
    close(fd);
    served_ok(r);
}

static void test_hostile_frames(void **state)
{
    rig_t *r = *state;
    uint8_t b[4096];
    char id[KVX_ID_MAX];
    uint32_t rid[2];
    lease_make(r, 2, id, rid);

    memcpy(b, "HTTP/1.1 GET /\r\n\r\n", 18);
    hostile(r, b, 18, 1, "magic"); /* KVX_E_FRAME */
    put_hdr(b, 2, 1, 0);
    hostile(r, b, 12, 2, "version"); /* KVX_E_VERSION */
    put_hdr(b, 0, 1, 0);
    hostile(r, b, 12, 2, "version");
    put_hdr(b, 1, 9, 0);
    hostile(r, b, 12, 1, "unexpected frame type");
    put_hdr(b, 1, 2, 16); /* PULL_OK is not for producers */
    hostile(r, b, 12, 1, "unexpected frame type");
    put_hdr(b, 1, 1, KVX_MAX_CTRL + 1);
    hostile(r, b, 12, 9, "too large"); /* KVX_E_LIMIT */
    put_hdr(b, 1, 1, 0xffffffffu);
    hostile(r, b, 12, 9, "too large");
    put_hdr(b, 1, 1, 0);
    hostile(r, b, 12, 1, "too short");
    put_hdr(b, 1, 1, 5);
    memcpy(b + 12,
           "\x01\x03"
           "abc",
           5);
    hostile(r, b, 17, 1, "too short");
    put_hdr(b, 1, 1, 2);
    memcpy(b + 12, "\x01\xff", 2); /* id_len past the frame */
    hostile(r, b, 14, 1, "too short");

    /* truncated PULL: the header promises more than arrives */
    size_t n = mk_pull(b, id, SEG, 2, rid, 2);
    hostile(r, b, n - 5, 0, NULL);
    hostile(r, b, 7, 0, NULL); /* half a header */
    /* length does not match the block count (both ways), or no blocks */
    n = mk_pull(b, id, SEG, 5, rid, 2);
    hostile(r, b, n, 1, "does not match its block count");
    n = mk_pull(b, id, SEG, 1, rid, 2);
    hostile(r, b, n, 1, "does not match its block count");
    n = mk_pull(b, id, SEG, 0, rid, 0);
    hostile(r, b, n, 1, "does not match its block count");
    n = mk_pull(b, id, SEG, 0xffffffffu, rid, 2);
    hostile(r, b, n, 1, "does not match its block count");
    /* layout mismatch on the wire */
    n = mk_pull(b, id, SEG * 2, 2, rid, 2);
    hostile(r, b, n, 8, "layout mismatch"); /* KVX_E_LAYOUT */
    /* RELEASE whose length does not match its id */
    put_hdr(b, 1, 6, 3);
    memcpy(b + 12,
           "\x05"
           "ab",
           3);
    hostile(r, b, 15, 1, "RELEASE frame");
    put_hdr(b, 1, 6, 0);
    hostile(r, b, 12, 1, "RELEASE frame");

    /* deterministic garbage (not starting with the magic), then garbage after a valid header */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof b; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        b[i] = (uint8_t)s;
    }
    b[0] = 'x';
    hostile(r, b, sizeof b, 1, "magic");
    put_hdr(b, 1, 1, 100);
    hostile(r, b, sizeof b, 1, NULL); /* a PULL of garbage: short, mismatched or refused */

    /* a client that connects and closes; one that sends nothing is cut after io_timeout */
    int fd = raw_connect(r->port, 3.0);
    close(fd);
    served_ok(r);
    uint64_t t0 = now_ns();
    fd = raw_connect(r->port, 4.0);
    raw_expect_eof(fd);
    double idle = secs_since(t0);
    close(fd);
    if (idle < 0.5 || idle > 3.5)
        fail_msg("idle client cut after %.2f s, io_timeout is 1 s", idle);

    /* refusals that keep the connection: unknown lease, out-of-lease block, then a RELEASE
     * that works on the same connection */
    fd = raw_connect(r->port, 3.0);
    n = mk_release(b, "nope");
    raw_send(fd, b, n);
    char msg[1024];
    assert_int_equal(raw_err(fd, msg, sizeof msg), 3); /* KVX_E_UNKNOWN */
    assert_non_null(strstr(msg, "unknown"));
    uint32_t outside[1] = {NB + 1};
    n = mk_pull(b, id, SEG, 1, outside, 1);
    raw_send(fd, b, n);
    assert_int_equal(raw_err(fd, msg, sizeof msg), 5); /* KVX_E_RANGE */
    n = mk_release(b, id);
    raw_send(fd, b, n);
    uint32_t len = 1;
    assert_int_equal(raw_frame(fd, (uint8_t *)msg, sizeof msg, &len), 7); /* ACK */
    assert_int_equal(len, 0);
    raw_send(fd, b, n);                                /* again: already released */
    assert_int_equal(raw_err(fd, msg, sizeof msg), 7); /* KVX_E_DONE */
    close(fd);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0);

    /* a raw PULL, read by hand: PULL_OK, one LAYER per layer, END */
    lease_make(r, 2, id, rid);
    fd = raw_connect(r->port, 3.0);
    n = mk_pull(b, id, SEG, 2, rid, 2);
    raw_send(fd, b, n);
    static uint8_t p[8 + 2 * 2 * SEG + 8];
    assert_int_equal(raw_frame(fd, p, sizeof p, &len), 2);
    assert_int_equal(len, 16);
    assert_int_equal(get_u32(p), NL);
    assert_int_equal(get_u32(p + 4), 2);
    for (uint32_t l = 0; l < NL; l++) {
        assert_int_equal(raw_frame(fd, p, sizeof p, &len), 3);
        assert_int_equal(len, sizeof p);
        assert_int_equal(get_u32(p), l);
        assert_memory_equal(p + 8, seg_at(&r->pe, l, rid[0], 0), SEG);
        assert_memory_equal(p + 8 + SEG, seg_at(&r->pe, l, rid[0], 1), SEG);
        assert_memory_equal(p + 8 + 3 * SEG, seg_at(&r->pe, l, rid[1], 1), SEG);
    }
    assert_int_equal(raw_frame(fd, p, sizeof p, &len), 4);
    assert_int_equal(len, 8);
    close(fd);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);

    /* a client that sends a PULL and goes away without reading the data: the lease ends too */
    lease_make(r, 2, id, rid);
    fd = raw_connect(r->port, 3.0);
    n = mk_pull(b, id, SEG, 2, rid, 2);
    raw_send(fd, b, n);
    close(fd);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(used_blocks(r), 0);
    served_ok(r);
}

static const rig_opts_t limit_opts = {.prod_extra = "{\"io_timeout_seconds\":5,\"max_leases\":4}"};

static void test_limits(void **state)
{
    rig_t *r = *state;
    /* max_leases: the fifth is refused and its table left untouched */
    char id[KVX_ID_MAX];
    uint32_t rid[1];
    for (int i = 0; i < 4; i++)
        lease_make(r, 1, id, rid);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    assert_int_equal(kvb_seq_reserve(r->kvb, &s, BSZ), ST_OK);
    char id5[KVX_ID_MAX] = "";
    assert_int_equal(kvx_lease_add(r->prod, "req", &s, id5), ST_LIMIT);
    uint32_t nb = 0;
    kvb_seq_blocks(&s, &nb);
    assert_int_equal(nb, 1);
    assert_true(metric(r->preg, "switchyard:kv_leases", NULL) == 4);
    /* a slot frees up once one lease ends */
    uint32_t lid[1] = {0};
    pull_out_t o = pull(r, id, rid, lid, 1);
    assert_int_equal(o.status, ST_OK);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
    assert_int_equal(kvx_lease_add(r->prod, "req", &s, id5), ST_OK);
    kvb_seq_deinit(&s);
    assert_int_equal(kvx_lease_collect(r->prod, 0, true, on_lease_free, r->kvb), 4);
    assert_int_equal(used_blocks(r), 0);

    /* KVX_MAX_CONNS idle connections: the next one is told "too many"; once they close the
     * producer serves again. First let the thread of the pull above finish (it ends right
     * after the consumer's close). */
    sleep_ms(200);
    int fds[KVX_MAX_CONNS];
    for (int i = 0; i < KVX_MAX_CONNS; i++)
        fds[i] = raw_connect(r->port, 3.0);
    /* a RELEASE on the last one proves every earlier connection has its thread */
    uint8_t b[256];
    size_t n = mk_release(b, "nope");
    raw_send(fds[KVX_MAX_CONNS - 1], b, n);
    assert_int_equal(raw_err(fds[KVX_MAX_CONNS - 1], NULL, 0), 3);
    int extra = raw_connect(r->port, 3.0);
    char msg[1024];
    assert_int_equal(raw_err(extra, msg, sizeof msg), 9); /* KVX_E_LIMIT */
    assert_non_null(strstr(msg, "too many"));
    raw_expect_eof(extra);
    close(extra);
    for (int i = 0; i < KVX_MAX_CONNS; i++) {
        shutdown(fds[i], SHUT_WR);
        raw_expect_eof(fds[i]);
        close(fds[i]);
    }
    /* the threads end right after their EOF; a pull may race the last of them */
    lease_make(r, 1, id, rid);
    for (int tries = 0;; tries++) {
        o = pull(r, id, rid, lid, 1);
        if (o.status == ST_OK || tries == 20)
            break;
        sleep_ms(50);
    }
    if (o.status != ST_OK)
        fail_msg("pull after the connection flood failed: %s", o.err);
    assert_int_equal(wait_collect(&r->w, r->prod, r->kvb, WAIT_S), 1);
}

/* ------------------------------------------------------------ 7, 8. a fake producer */

typedef enum fp_mode {
    FP_CUT,     /* PULL_OK, half a LAYER, close */
    FP_STALL,   /* PULL_OK, half a LAYER, then silence */
    FP_CORRUPT, /* a full LAYER with a wrong digest trailer */
    FP_BAD_END, /* every LAYER right, a wrong END digest */
    FP_BAD_OK,  /* PULL_OK with the wrong block count */
    FP_SILENT,  /* reads the PULL, never answers */
} fp_mode_t;

typedef struct fake_prod {
    int lfd, port;
    fp_mode_t mode;
    pthread_t th;
    atomic_int pulls; /* PULL frames read */
    atomic_bool quit;
} fake_prod_t;

static void fp_send(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

/* Waits (bounded) until the peer closes or quit is set. */
static void fp_linger(fake_prod_t *f, int fd)
{
    char sink[256];
    for (int i = 0; i < 200 && !atomic_load(&f->quit); i++) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1 && recv(fd, sink, sizeof sink, 0) <= 0)
            return;
    }
}

static void fp_serve(fake_prod_t *f, int fd)
{
    uint8_t h[12];
    if (raw_recv(fd, h, 12) != 1)
        return;
    uint32_t len = get_u32(h + 8);
    uint8_t *p = malloc(len ? len : 1);
    if (!p || raw_recv(fd, p, len) != 1) {
        free(p);
        return;
    }
    uint32_t nb = get_u32(p + 2 + p[1] + 20);
    free(p);
    atomic_fetch_add(&f->pulls, 1);
    if (f->mode == FP_SILENT) {
        fp_linger(f, fd);
        return;
    }
    uint8_t b[64];
    put_hdr(b, 1, 2, 16);
    put_u32(b + 12, NL);
    put_u32(b + 16, f->mode == FP_BAD_OK ? nb + 1 : nb);
    put_u64(b + 20, SEG);
    fp_send(fd, b, 28);
    if (f->mode == FP_BAD_OK) {
        fp_linger(f, fd);
        return;
    }
    size_t data = 2 * (size_t)nb * SEG;
    uint8_t *d = malloc(data);
    XXH3_state_t *all = XXH3_createState();
    if (!d || !all)
        abort(); /* not a cmocka assert: this is not the test's thread */
    XXH3_64bits_reset(all);
    for (uint32_t l = 0; l < NL; l++) {
        for (size_t i = 0; i < data; i++)
            d[i] = (uint8_t)(i * 3 + l);
        put_hdr(b, 1, 3, (uint32_t)(8 + data + 8));
        put_u32(b + 12, l);
        put_u32(b + 16, nb);
        fp_send(fd, b, 20);
        if (f->mode == FP_CUT || f->mode == FP_STALL) {
            fp_send(fd, d, data / 2);
            break;
        }
        fp_send(fd, d, data);
        uint8_t tr[8];
        uint64_t dg = XXH3_64bits(d, data);
        put_u64(tr, f->mode == FP_CORRUPT ? dg ^ 1 : dg);
        XXH3_64bits_update(all, tr, 8);
        fp_send(fd, tr, 8);
        if (f->mode == FP_CORRUPT)
            break;
    }
    if (f->mode == FP_BAD_END) {
        put_hdr(b, 1, 4, 8);
        put_u64(b + 12, XXH3_64bits_digest(all) + 1);
        fp_send(fd, b, 20);
    }
    XXH3_freeState(all);
    free(d);
    if (f->mode != FP_CUT)
        fp_linger(f, fd);
}

static void *fp_main(void *arg)
{
    fake_prod_t *f = arg;
    while (!atomic_load(&f->quit)) {
        struct pollfd pf = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) != 1)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        fp_serve(f, fd);
        close(fd);
    }
    return NULL;
}

static void fp_start(fake_prod_t *f, fp_mode_t mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    atomic_init(&f->pulls, 0);
    atomic_init(&f->quit, false);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fp_main, f), 0);
}

static void fp_stop(fake_prod_t *f)
{
    atomic_store(&f->quit, true);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static void fp_wait_pulls(fake_prod_t *f, int n)
{
    uint64_t t0 = now_ns();
    while (atomic_load(&f->pulls) < n && secs_since(t0) < WAIT_S)
        sleep_ms(2);
    assert_true(atomic_load(&f->pulls) >= n);
}

static void test_bad_producer(void **state)
{
    rig_t *r = *state; /* consumer io_timeout 1 s */
    static const struct {
        fp_mode_t mode;
        const char *needle;
    } cases[] = {
        {FP_CUT, "transfer cut in layer 0"},   {FP_CORRUPT, "integrity check failed in layer 0"},
        {FP_BAD_END, "KV digest mismatch"},    {FP_BAD_OK, "unexpected answer to the pull"},
        {FP_STALL, "transfer cut in layer 0"},
    };
    uint32_t rid[3] = {1, 2, 3}, lid[3] = {4, 5, 6};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_prod_t f;
        fp_start(&f, cases[i].mode);
        pull_out_t o = pull_to(r, r->cons, f.port, "fake-lease", rid, lid, 3);
        fp_stop(&f);
        expect_fail(&o, cases[i].needle);
        if (o.wall > 3.0)
            fail_msg("mode %d: the failed pull took %.2f s (io_timeout 1 s)", cases[i].mode,
                     o.wall);
        if (cases[i].mode == FP_STALL && o.wall < 0.5)
            fail_msg("a stalled transfer failed after %.2f s, before io_timeout", o.wall);
        if (cases[i].mode == FP_STALL)
            assert_non_null(strstr(o.err, st_str(ST_TIMEOUT)));
    }
    assert_true(metric(r->creg, "switchyard:kv_transfer_pulls_total", "result=\"failed\"") == 5);
    assert_true(metric(r->creg, "switchyard:kv_transfer_pulls_total", "result=\"ok\"") == 0);
    served_ok(r); /* the consumer's workers survived */
}

static const rig_opts_t slow_opts = {.prod_extra = "{\"io_timeout_seconds\":30}",
                                     .cons_extra =
                                         "{\"io_timeout_seconds\":30,\"pull_threads\":1}"};

static void test_stop_during_pull(void **state)
{
    rig_t *r = *state; /* io timeouts 30 s: only kvx_stop can end the waits below promptly */
    fake_prod_t f;
    fp_start(&f, FP_SILENT);
    uint32_t rid[2] = {1, 2}, lid[2] = {3, 4};
    int ua = 1, ub = 2;
    kvx_pull_spec_t a = {"127.0.0.1", f.port, "lease-a", rid, lid, 2, &ua};
    kvx_pull_spec_t b = {"127.0.0.1", f.port, "lease-b", rid, lid, 2, &ub};
    assert_non_null(kvx_job_submit(r->cons, &a));
    fp_wait_pulls(&f, 1);
    assert_non_null(kvx_job_submit(r->cons, &b)); /* queued behind a (one pull thread) */
    sleep_ms(20);
    assert_null(kvx_job_take_done(r->cons));

    uint64_t t0 = now_ns();
    kvx_stop(r->cons);
    double took = secs_since(t0);
    if (took > 1.5)
        fail_msg("kvx_stop took %.2f s with a pull blocked on a silent peer", took);
    kvx_stop(r->cons); /* idempotent */
    int seen = 0;
    for (kvx_job_t *j; (j = kvx_job_take_done(r->cons));) {
        kvx_job_result_t res;
        kvx_job_result(j, &res);
        assert_int_not_equal(res.status, ST_OK);
        assert_true(res.error && res.error[0]);
        int *u = kvx_job_udata(j);
        assert_true(u == &ua || u == &ub);
        if (u == &ub) {
            assert_int_equal(res.status, ST_CLOSED);
            assert_non_null(strstr(res.error, "shutting down"));
        }
        seen |= *u;
        kvx_job_free(j);
    }
    assert_int_equal(seen, 3);
    t0 = now_ns();
    kvx_destroy(r->cons);
    r->cons = NULL;
    assert_true(secs_since(t0) < 1.0);
    assert_int_equal(atomic_load(&f.pulls), 1);

    /* kvx_destroy straight away, with a pull blocked and one queued (ASan: nothing leaks) */
    kvx_t *c = mk_kvx("kv_consumer", "{\"io_timeout_seconds\":30,\"pull_threads\":1}", &r->ce,
                      r->creg, &r->w);
    assert_non_null(kvx_job_submit(c, &a));
    fp_wait_pulls(&f, 2);
    assert_non_null(kvx_job_submit(c, &b));
    t0 = now_ns();
    kvx_destroy(c);
    took = secs_since(t0);
    if (took > 1.5)
        fail_msg("kvx_destroy took %.2f s with a pull blocked on a silent peer", took);
    fp_stop(&f);

    /* the producer: destroy with an idle client and a half-sent frame on its connections */
    int idle = raw_connect(r->port, 3.0);
    int half = raw_connect(r->port, 3.0);
    uint8_t h[64];
    size_t n = mk_release(h, "nope"); /* answered: both connections have their threads */
    raw_send(half, h, n);
    assert_int_equal(raw_err(half, NULL, 0), 3);
    put_hdr(h, 1, 1, 64);
    raw_send(half, h, 12);
    raw_send(half, "\x01\x04", 2);
    /* and one connected last that never talks: the listener fills its slot with no handshake
     * that would order it before kvx_stop (TSan: the slot's fields are written under the lock);
     * accepted by then or not, the stop is prompt */
    int late = raw_connect(r->port, 3.0);
    sleep_ms(50);
    t0 = now_ns();
    kvx_stop(r->prod);
    took = secs_since(t0);
    if (took > 1.5)
        fail_msg("producer kvx_stop took %.2f s with idle connections", took);
    raw_expect_eof(idle);
    raw_expect_eof(half);
    close(idle);
    close(half);
    close(late);
}

int main(void)
{
    sy_log_set_level(SY_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test_prestate_setup_teardown(test_create_refusals, rig_setup, rig_teardown,
                                                 NULL),
        cmocka_unit_test_prestate_setup_teardown(test_full_and_partial_pull, rig_setup,
                                                 rig_teardown, NULL),
        cmocka_unit_test_prestate_setup_teardown(test_release_only, rig_setup, rig_teardown, NULL),
        cmocka_unit_test_prestate_setup_teardown(test_expiry, rig_setup, rig_teardown,
                                                 (void *)&expiry_opts),
        cmocka_unit_test_prestate_setup_teardown(test_refused_pulls, rig_setup, rig_teardown, NULL),
        cmocka_unit_test_prestate_setup_teardown(test_layout_mismatch, rig_setup, rig_teardown,
                                                 (void *)&layout_opts),
        cmocka_unit_test_prestate_setup_teardown(test_hostile_frames, rig_setup, rig_teardown,
                                                 NULL),
        cmocka_unit_test_prestate_setup_teardown(test_limits, rig_setup, rig_teardown,
                                                 (void *)&limit_opts),
        cmocka_unit_test_prestate_setup_teardown(test_bad_producer, rig_setup, rig_teardown, NULL),
        cmocka_unit_test_prestate_setup_teardown(test_stop_during_pull, rig_setup, rig_teardown,
                                                 (void *)&slow_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
