/*
 * test_gw_dns.c - unit tests of DNS discovery (gw_dns.h) against a tiny in-process UDP DNS
 * responder on 127.0.0.1 (a thread answering hand-built responses): target and server syntax,
 * A/AAAA, SRV with and without the additional section (one A query per target), NXDOMAIN, an
 * empty answer, SERVFAIL, truncated and garbage responses (an error, never a crash), a silent
 * server (timeout), the response parser on raw bytes, and the periodic gwdns_t: first set, a
 * changed set, a silent server keeping the previous set, metrics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/metrics.h"
#include "common/status.h"
#include "gateway/gw_dns.h"

/* ------------------------------------------------------------------------------------------ */
/* the responder                                                                               */

typedef enum mode {
    M_NORMAL,    /* records from the zone below */
    M_SILENT,    /* never answers */
    M_SERVFAIL,  /* rcode 2 */
    M_NXDOMAIN,  /* rcode 3 */
    M_EMPTY,     /* NOERROR, no records */
    M_CUT,       /* a valid answer cut in the middle of its record */
    M_BAD_RDLEN, /* an A record with rdlength 5 */
    M_GARBAGE,   /* the query id, then random bytes */
    M_TC,        /* TC bit (glibc retries over TCP, where nobody listens) */
    M_PTR_LOOP,  /* an SRV target that is a compression pointer to itself */
} resp_mode_t;

static struct {
    pthread_mutex_t mu;
    int fd;
    int port;
    pthread_t th;
    atomic_bool stop;
    resp_mode_t mode;
    /* zone */
    int srv_ports[8];
    size_t n_srv;
    bool additional; /* SRV answers carry A records of sim.test */
    const char *a[4];
    size_t n_a;
    const char *aaaa[2];
    size_t n_aaaa;
    /* counts */
    int q_a, q_aaaa, q_srv;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static size_t put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static size_t put_name(uint8_t *p, const char *name)
{
    size_t o = 0;
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t n = dot ? (size_t)(dot - name) : strlen(name);
        p[o++] = (uint8_t)n;
        memcpy(p + o, name, n);
        o += n;
        name += n + (dot ? 1 : 0);
    }
    p[o++] = 0;
    return o;
}

/* one resource record: owner as a pointer to the question name (offset 12) or spelled out */
static size_t put_rr(uint8_t *p, const char *owner, uint16_t type, const uint8_t *rd, size_t rdlen)
{
    size_t o = owner ? put_name(p, owner) : put16(p, 0xc00c);
    o += put16(p + o, type);
    o += put16(p + o, 1); /* IN */
    o += put16(p + o, 0);
    o += put16(p + o, 30); /* TTL */
    o += put16(p + o, (uint16_t)rdlen);
    memcpy(p + o, rd, rdlen);
    return o + rdlen;
}

static size_t put_a(uint8_t *p, const char *owner, const char *ip)
{
    uint8_t rd[4];
    inet_pton(AF_INET, ip, rd);
    return put_rr(p, owner, 1, rd, 4);
}

static size_t put_aaaa(uint8_t *p, const char *owner, const char *ip)
{
    uint8_t rd[16];
    inet_pton(AF_INET6, ip, rd);
    return put_rr(p, owner, 28, rd, 16);
}

static size_t put_srv(uint8_t *p, int port, const char *target)
{
    uint8_t rd[300];
    size_t o = put16(rd, 10);
    o += put16(rd + o, 10);
    o += put16(rd + o, (uint16_t)port);
    o += put_name(rd + o, target);
    return put_rr(p, NULL, 33, rd, o);
}

/* Builds the answer to q[0..qlen) into out; 0 = stay silent. Under R.mu. */
static size_t answer(const uint8_t *q, size_t qlen, uint8_t *out)
{
    if (qlen < 17)
        return 0;
    size_t qe = 12;
    while (qe < qlen && q[qe])
        qe += q[qe] + 1u;
    qe += 5; /* root label, qtype, qclass */
    if (qe > qlen)
        return 0;
    uint16_t qtype = (uint16_t)(q[qe - 4] << 8 | q[qe - 3]);
    R.q_a += qtype == 1;
    R.q_aaaa += qtype == 28;
    R.q_srv += qtype == 33;
    if (R.mode == M_SILENT)
        return 0;
    memcpy(out, q, qe); /* id, then the question */
    out[2] = 0x81;      /* QR RD */
    out[3] = 0x80;      /* RA, rcode 0 */
    memset(out + 4, 0, 8);
    out[5] = 1; /* qdcount */
    size_t o = qe;
    uint16_t an = 0, ar = 0;
    switch (R.mode) {
    case M_SERVFAIL:
        out[3] |= 2;
        return o;
    case M_NXDOMAIN:
        out[3] |= 3;
        return o;
    case M_EMPTY:
        return o;
    case M_GARBAGE:
        for (size_t i = 2; i < 60; i++)
            out[i] = (uint8_t)(i * 37 + 11);
        return 60;
    case M_TC:
        out[2] |= 0x02;
        return o;
    case M_BAD_RDLEN: {
        uint8_t rd[5] = {127, 0, 0, 1, 0};
        o += put_rr(out + o, NULL, 1, rd, 5);
        put16(out + 6, 1);
        return o;
    }
    case M_PTR_LOOP: {
        /* SRV rdata whose target is a pointer to itself */
        size_t rr = o;
        o += put16(out + o, 0xc00c);
        o += put16(out + o, 33);
        o += put16(out + o, 1);
        o += put16(out + o, 0);
        o += put16(out + o, 30);
        o += put16(out + o, 8);
        o += put16(out + o, 10);
        o += put16(out + o, 10);
        o += put16(out + o, 8000);
        size_t self = o;
        o += put16(out + o, (uint16_t)(0xc000 | self));
        (void)rr;
        put16(out + 6, 1);
        return o;
    }
    default:
        break;
    }
    if (qtype == 1)
        for (size_t i = 0; i < R.n_a; i++, an++)
            o += put_a(out + o, NULL, R.a[i]);
    if (qtype == 28)
        for (size_t i = 0; i < R.n_aaaa; i++, an++)
            o += put_aaaa(out + o, NULL, R.aaaa[i]);
    if (qtype == 33) {
        for (size_t i = 0; i < R.n_srv; i++, an++)
            o += put_srv(out + o, R.srv_ports[i], "sim.test");
        for (size_t i = 0; R.additional && i < R.n_a; i++, ar++)
            o += put_a(out + o, "sim.test", R.a[i]);
    }
    put16(out + 6, an);
    put16(out + 10, ar);
    if (R.mode == M_CUT && o > qe + 6)
        return o - 3; /* the last record runs past the end */
    return o;
}

static void *responder(void *arg)
{
    (void)arg;
    uint8_t q[512], out[4096];
    while (!atomic_load(&R.stop)) {
        struct pollfd pfd = {R.fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(R.fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            continue;
        pthread_mutex_lock(&R.mu);
        size_t len = answer(q, (size_t)n, out);
        pthread_mutex_unlock(&R.mu);
        if (len)
            sendto(R.fd, out, len, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static char g_server[64];

static void zone_reset(resp_mode_t mode)
{
    pthread_mutex_lock(&R.mu);
    R.mode = mode;
    R.n_srv = 0;
    R.additional = false;
    R.n_a = R.n_aaaa = 0;
    R.q_a = R.q_aaaa = R.q_srv = 0;
    pthread_mutex_unlock(&R.mu);
}

static int setup(void **state)
{
    (void)state;
    R.fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (R.fd < 0 || bind(R.fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    socklen_t l = sizeof a;
    getsockname(R.fd, (struct sockaddr *)&a, &l);
    R.port = ntohs(a.sin_port);
    snprintf(g_server, sizeof g_server, "127.0.0.1:%d", R.port);
    atomic_store(&R.stop, false);
    return pthread_create(&R.th, NULL, responder, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&R.stop, true);
    pthread_join(R.th, NULL);
    close(R.fd);
    return 0;
}

static gwdns_set_t g_set;

static int resolve(const char *target, char *err, size_t errlen)
{
    gwdns_target_t t;
    assert_int_equal(gwdns_target_parse(target, &t, err, errlen), ST_OK);
    return gwdns_resolve(&t, g_server, 1000, &g_set, err, errlen);
}

static void assert_addr(size_t i, const char *host, int port)
{
    assert_true(i < g_set.n);
    assert_string_equal(g_set.v[i].host, host);
    assert_int_equal(g_set.v[i].port, port);
}

/* ------------------------------------------------------------------------------------------ */

static void test_parse_target(void **state)
{
    (void)state;
    gwdns_target_t t;
    char err[256];
    assert_int_equal(gwdns_target_parse("dns://vllm.ns.svc.cluster.local:8000", &t, err, 256), 0);
    assert_int_equal(t.kind, GWDNS_A);
    assert_string_equal(t.name, "vllm.ns.svc.cluster.local");
    assert_int_equal(t.port, 8000);
    assert_int_equal(gwdns_target_parse("srv://_http._tcp.sim.test.", &t, err, 256), 0);
    assert_int_equal(t.kind, GWDNS_SRV);
    assert_string_equal(t.name, "_http._tcp.sim.test");
    const char *bad[] = {"sim.test:80",   "dns://sim.test", "dns://:80",  "dns://a:0",
                         "dns://a:70000", "dns://a b:80",   "srv://",     "srv://a/b",
                         "http://a:80",   "dns://.a:1",     "dns://a:80x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (gwdns_target_parse(bad[i], &t, err, sizeof err) != ST_INVAL)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "expected"));
    }
    assert_int_equal(gwdns_server_check("127.0.0.1:5353", err, sizeof err), ST_OK);
    assert_int_equal(gwdns_server_check("127.0.0.1", err, sizeof err), ST_INVAL);
    assert_int_equal(gwdns_server_check("localhost:53", err, sizeof err), ST_INVAL);
    assert_int_equal(gwdns_server_check("127.0.0.1:0", err, sizeof err), ST_INVAL);
}

static void test_a_aaaa(void **state)
{
    (void)state;
    char err[256];
    zone_reset(M_NORMAL);
    R.a[0] = "127.0.0.2";
    R.a[1] = "127.0.0.1";
    R.n_a = 2;
    R.aaaa[0] = "fd00::5";
    R.n_aaaa = 1;
    assert_int_equal(resolve("dns://sim.test:8000", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 3);
    assert_addr(0, "127.0.0.1", 8000); /* sorted */
    assert_addr(1, "127.0.0.2", 8000);
    assert_addr(2, "fd00::5", 8000);
    assert_false(g_set.nxdomain);
    assert_int_equal(R.q_a, 1);
    assert_int_equal(R.q_aaaa, 1);
}

static void test_srv_additional(void **state)
{
    (void)state;
    char err[256];
    zone_reset(M_NORMAL);
    R.srv_ports[0] = 8002;
    R.srv_ports[1] = 8001;
    R.srv_ports[2] = 8001; /* a duplicate record */
    R.n_srv = 3;
    R.additional = true;
    R.a[0] = "127.0.0.1";
    R.n_a = 1;
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 2);
    assert_addr(0, "127.0.0.1", 8001);
    assert_addr(1, "127.0.0.1", 8002);
    assert_int_equal(R.q_srv, 1);
    assert_int_equal(R.q_a, 0); /* the additional section had the address */
}

static void test_srv_no_additional(void **state)
{
    (void)state;
    char err[256];
    zone_reset(M_NORMAL);
    R.srv_ports[0] = 9001;
    R.srv_ports[1] = 9002;
    R.srv_ports[2] = 9003;
    R.n_srv = 3;
    R.a[0] = "127.0.0.3";
    R.n_a = 1;
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 3);
    assert_addr(0, "127.0.0.3", 9001);
    assert_addr(2, "127.0.0.3", 9003);
    assert_int_equal(R.q_a, 1); /* one A query for the shared target */
    /* a target without addresses gives nothing, and is not an error */
    zone_reset(M_NORMAL);
    R.srv_ports[0] = 9001;
    R.n_srv = 1;
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 0);
}

static void test_nxdomain_empty_servfail(void **state)
{
    (void)state;
    char err[256];
    zone_reset(M_NXDOMAIN);
    assert_int_equal(resolve("srv://_http._tcp.nope.test", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 0);
    assert_true(g_set.nxdomain);
    assert_int_equal(resolve("dns://nope.test:80", err, sizeof err), ST_OK);
    assert_true(g_set.nxdomain);
    assert_int_equal(R.q_aaaa, 0); /* no AAAA after NXDOMAIN */
    zone_reset(M_EMPTY);
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_OK);
    assert_int_equal(g_set.n, 0);
    assert_false(g_set.nxdomain);
    zone_reset(M_SERVFAIL);
    uint64_t t0 = sy_mono_ms();
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_UPSTREAM);
    assert_true(sy_mono_ms() - t0 < 900);
    assert_non_null(strstr(err, "SERVFAIL"));
    assert_int_equal(resolve("dns://sim.test:80", err, sizeof err), ST_UPSTREAM);
    assert_int_equal(g_set.n, 0);
}

static void test_bad_responses(void **state)
{
    (void)state;
    char err[256];
    const struct {
        resp_mode_t mode;
        int want; /* 0 = any error */
    } cases[] = {{M_CUT, ST_PROTO},
                 {M_BAD_RDLEN, ST_PROTO},
                 {M_PTR_LOOP, ST_PROTO},
                 {M_GARBAGE, 0},
                 {M_TC, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zone_reset(cases[i].mode);
        R.srv_ports[0] = 8001;
        R.n_srv = 1;
        R.additional = true;
        R.a[0] = "127.0.0.1";
        R.n_a = 1;
        int rc = resolve("srv://_http._tcp.sim.test", err, sizeof err);
        if (rc == ST_OK || (cases[i].want && rc != cases[i].want))
            fail_msg("mode %d: got %s (%s)", (int)cases[i].mode, st_str(rc), err);
        assert_int_equal(g_set.n, 0);
        if (cases[i].mode == M_CUT || cases[i].mode == M_BAD_RDLEN) {
            rc = resolve("dns://sim.test:80", err, sizeof err);
            assert_int_equal(rc, ST_PROTO);
        }
    }
}

static void test_timeout(void **state)
{
    (void)state;
    char err[256];
    zone_reset(M_SILENT);
    uint64_t t0 = sy_mono_ms();
    assert_int_equal(resolve("srv://_http._tcp.sim.test", err, sizeof err), ST_TIMEOUT);
    uint64_t dt = sy_mono_ms() - t0;
    assert_true(dt >= 900 && dt < 5000);
    assert_non_null(strstr(err, "timed out"));
    assert_true(R.q_srv >= 1);
}

/* raw bytes straight into the parser */
static void test_msg_parse(void **state)
{
    (void)state;
    static gwdns_msg_t m;
    uint8_t b[512];
    memset(b, 0, 12);
    b[2] = 0x81;
    b[3] = 0x80;
    b[5] = 1; /* qdcount */
    size_t o = 12 + put_name(b + 12, "_http._tcp.Sim.Test");
    o += put16(b + o, 33);
    o += put16(b + o, 1);
    o += put_srv(b + o, 8080, "Sim.Test.");
    o += put_a(b + o, "SIM.test", "10.1.2.3");
    b[7] = 1;
    b[11] = 1;
    assert_int_equal(gwdns_msg_parse(b, o, &m), ST_OK);
    assert_int_equal(m.rcode, 0);
    assert_int_equal(m.n_srv, 1);
    assert_string_equal(m.srv[0].target, "sim.test");
    assert_int_equal(m.srv[0].port, 8080);
    assert_int_equal(m.n_addr, 1);
    assert_string_equal(m.addr[0].owner, "sim.test");
    assert_string_equal(m.addr[0].host, "10.1.2.3");
    assert_true(m.addr[0].additional);
    for (size_t cut = 0; cut < o; cut++) /* every prefix is malformed, never read past */
        assert_int_equal(gwdns_msg_parse(b, cut, &m), ST_PROTO);
    /* an SRV rdata too short for its fixed fields */
    uint8_t s[64];
    memcpy(s, b, 12);
    s[5] = 0;
    s[7] = 1;
    s[11] = 0;
    size_t so = 12 + put_rr(s + 12, "a", 33, (const uint8_t *)"\0\0\0\0\0", 5);
    assert_int_equal(gwdns_msg_parse(s, so, &m), ST_PROTO);
}

/* ------------------------------------------------------------------------------------------ */
/* periodic                                                                                    */

typedef struct watch {
    gwdns_t *d;
    ev_loop_t *loop;
    size_t want_n; /* stop when the set has this many entries */
    int updates;
} watch_t;

static void on_update(void *udata)
{
    watch_t *w = udata;
    gwdns_addr_t a[8];
    w->updates++;
    if (gwdns_get(w->d, 0, a, 8) == w->want_n)
        ev_stop(w->loop);
}

static void on_deadline(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    (void)udata;
    ev_stop(loop);
}

/* runs the loop until the set has want_n entries or ms pass */
static void run_until(watch_t *w, size_t want_n, uint64_t ms)
{
    w->want_n = want_n;
    uint64_t t = ev_timer_add(w->loop, ms, on_deadline, NULL);
    ev_run(w->loop);
    ev_timer_cancel(w->loop, t);
}

static void test_periodic(void **state)
{
    (void)state;
    zone_reset(M_NORMAL);
    pthread_mutex_lock(&R.mu);
    R.srv_ports[0] = 7001;
    R.srv_ports[1] = 7002;
    R.n_srv = 2;
    R.additional = true;
    R.a[0] = "127.0.0.1";
    R.n_a = 1;
    pthread_mutex_unlock(&R.mu);
    ev_loop_t *loop = ev_loop_create();
    mx_registry_t *reg = mx_registry_create();
    watch_t w = {.loop = loop};
    gwdns_config_t cfg = {.server = g_server, .timeout_ms = 1000, .metrics = reg};
    int st = ST_OK;
    w.d = gwdns_create(loop, &cfg, on_update, &w, &st);
    assert_non_null(w.d);
    char err[256];
    assert_int_equal(gwdns_add(w.d, "srv://_http._tcp.sim.test", 100, err, sizeof err), 0);
    assert_int_equal(gwdns_add(w.d, "bogus", 100, err, sizeof err), ST_INVAL);
    assert_int_equal(gwdns_count(w.d), 1);
    assert_string_equal(gwdns_target_text(w.d, 0), "srv://_http._tcp.sim.test");
    assert_int_equal(gwdns_start(w.d), ST_OK);
    assert_int_equal(gwdns_add(w.d, "srv://x", 100, err, sizeof err), ST_STATE);

    gwdns_addr_t a[8];
    run_until(&w, 2, 5000);
    assert_int_equal(gwdns_get(w.d, 0, a, 8), 2);
    assert_int_equal(a[0].port, 7001);
    assert_int_equal(a[1].port, 7002);
    /* a third record appears */
    pthread_mutex_lock(&R.mu);
    R.srv_ports[2] = 7003;
    R.n_srv = 3;
    pthread_mutex_unlock(&R.mu);
    run_until(&w, 3, 5000);
    assert_int_equal(gwdns_get(w.d, 0, a, 8), 3);
    /* the server goes silent: the set is kept */
    pthread_mutex_lock(&R.mu);
    R.mode = M_SILENT;
    R.q_srv = 0;
    pthread_mutex_unlock(&R.mu);
    int before = w.updates;
    run_until(&w, 99, 2500);
    assert_int_equal(w.updates, before);
    assert_int_equal(gwdns_get(w.d, 0, a, 8), 3);
    assert_true(R.q_srv >= 2);
    /* it comes back with fewer records */
    pthread_mutex_lock(&R.mu);
    R.mode = M_NORMAL;
    R.n_srv = 1;
    pthread_mutex_unlock(&R.mu);
    run_until(&w, 1, 5000);
    assert_int_equal(gwdns_get(w.d, 0, a, 8), 1);
    /* NXDOMAIN: none */
    pthread_mutex_lock(&R.mu);
    R.mode = M_NXDOMAIN;
    pthread_mutex_unlock(&R.mu);
    run_until(&w, 0, 5000);
    assert_int_equal(gwdns_get(w.d, 0, a, 8), 0);
    gwdns_destroy(w.d);

    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(reg, &b), ST_OK);
    assert_non_null(strstr(b.data, "switchyard_gateway_discovery_endpoints{target=\"srv://"
                                   "_http._tcp.sim.test\"} 0"));
    assert_non_null(strstr(b.data, "switchyard_gateway_discovery_resolutions_total{result=\"ok\","
                                   "target=\"srv://_http._tcp.sim.test\"}"));
    assert_null(strstr(b.data, "result=\"error\",target=\"srv://_http._tcp.sim.test\"} 0"));
    assert_null(strstr(b.data, "result=\"empty\",target=\"srv://_http._tcp.sim.test\"} 0"));
    sy_buf_deinit(&b);
    mx_registry_destroy(reg);
    ev_loop_destroy(loop);
    gwdns_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_target),
        cmocka_unit_test(test_a_aaaa),
        cmocka_unit_test(test_srv_additional),
        cmocka_unit_test(test_srv_no_additional),
        cmocka_unit_test(test_nxdomain_empty_servfail),
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_msg_parse),
        cmocka_unit_test(test_periodic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
