/*
 * gw_dns.c - DNS discovery of endpoints (see gw_dns.h).
 *
 * Queries go through glibc's libresolv: res_ninit on a private res_state per resolution (reads
 * /etc/resolv.conf), then, for --dns-server, nsaddr_list[0] (with its port) and nscount = 1. The
 * timeout is statp->retrans (whole seconds, at least 1) with one try against a custom server.
 * res_nquery folds NXDOMAIN into h_errno HOST_NOT_FOUND and a NOERROR answer without records into
 * NO_DATA; every other failure is TRY_AGAIN/NO_RECOVERY, and whether it was a silent server or a
 * SERVFAIL is told apart by the time it took. Answers are walked with ns_initparse/ns_parserr in
 * gwdns_msg_parse, which checks every rdata length itself (fuzzed: tests/fuzz/fuzz_gw_dns.c).
 *
 * The periodic part: one resolver thread per gwdns_t walks its targets in due order, resolves one
 * at a time outside the mutex, and publishes a changed set under the mutex with one ev_async
 * wakeup; the loop thread's callback copies the sets out with gwdns_get. Log lines are rate
 * limited by a per-target state (ok / empty / error): one line per state change.
 * Thread-safety: see gw_dns.h.
 */
#include "gateway/gw_dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"

#define ANSWER_MAX 65536

/* ------------------------------------------------------------------------------------------ */
/* targets and the server option                                                               */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= GWDNS_MAX_NAME - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_')
            return false;
    }
    return s[0] != '.';
}

static int parse_port(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > 65535)
        return ST_INVAL;
    *out = (int)v;
    return ST_OK;
}

int gwdns_target_parse(const char *text, gwdns_target_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "srv://", 6) == 0) {
        const char *name = text + 6;
        size_t n = strlen(name);
        if (n && name[n - 1] == '.')
            n--;
        if (!name_ok(name, n)) {
            sy_errf(err, errlen, "discovery target '%s': expected srv://_SERVICE._PROTO.NAME",
                    text);
            return ST_INVAL;
        }
        out->kind = GWDNS_SRV;
        memcpy(out->name, name, n);
        out->name[n] = '\0';
        return ST_OK;
    }
    if (strncmp(text, "dns://", 6) == 0) {
        const char *name = text + 6;
        const char *colon = strrchr(name, ':');
        size_t n = colon ? (size_t)(colon - name) : 0;
        if (n && name[n - 1] == '.')
            n--;
        if (!colon || !name_ok(name, n) || parse_port(colon + 1, &out->port) != ST_OK) {
            sy_errf(err, errlen, "discovery target '%s': expected dns://NAME:PORT", text);
            return ST_INVAL;
        }
        out->kind = GWDNS_A;
        memcpy(out->name, name, n);
        out->name[n] = '\0';
        return ST_OK;
    }
    sy_errf(err, errlen, "discovery target '%s': expected dns://NAME:PORT or srv://NAME", text);
    return ST_INVAL;
}

static int server_parse(const char *text, struct sockaddr_in *sin)
{
    char buf[64];
    const char *colon = strrchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : 0;
    int port = 0;
    if (!colon || n == 0 || n >= sizeof buf || parse_port(colon + 1, &port) != ST_OK)
        return ST_INVAL;
    memcpy(buf, text, n);
    buf[n] = '\0';
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, buf, &sin->sin_addr) == 1 ? ST_OK : ST_INVAL;
}

int gwdns_server_check(const char *text, char *err, size_t errlen)
{
    struct sockaddr_in sin;
    if (server_parse(text, &sin) != ST_OK) {
        sy_errf(err, errlen, "--dns-server '%s': expected IPV4:PORT", text);
        return ST_INVAL;
    }
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* response parsing (hostile bytes)                                                            */

/* Copies a name as dn_expand/ns_parserr give it into dst, lower case, without a trailing dot.
 * ST_PROTO when it does not fit. */
static int name_norm(const char *src, char *dst)
{
    size_t n = strlen(src);
    if (n && src[n - 1] == '.')
        n--;
    if (n >= GWDNS_MAX_NAME)
        return ST_PROTO;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = '\0';
    return ST_OK;
}

static int parse_rr(ns_msg *h, ns_sect sect, const ns_rr *rr, gwdns_msg_t *out)
{
    uint16_t type = ns_rr_type(*rr);
    const unsigned char *rd = ns_rr_rdata(*rr);
    size_t rdlen = ns_rr_rdlen(*rr);
    if (ns_rr_class(*rr) != ns_c_in)
        return ST_OK;
    if (type == ns_t_srv && sect == ns_s_an) {
        if (rdlen < 7) /* priority, weight, port, a name of at least the root label */
            return ST_PROTO;
        char name[NS_MAXDNAME];
        int used = dn_expand(ns_msg_base(*h), ns_msg_end(*h), rd + 6, name, sizeof name);
        if (used < 0 || (size_t)used > rdlen - 6)
            return ST_PROTO;
        if (out->n_srv == GWDNS_MSG_MAX_SRV)
            return ST_OK;
        if (name_norm(name, out->srv[out->n_srv].target) != ST_OK)
            return ST_PROTO;
        out->srv[out->n_srv++].port = ns_get16(rd + 4);
        return ST_OK;
    }
    if (type != ns_t_a && type != ns_t_aaaa)
        return ST_OK;
    if (rdlen != (type == ns_t_a ? 4u : 16u))
        return ST_PROTO;
    if (out->n_addr == GWDNS_MSG_MAX_ADDR)
        return ST_OK;
    if (name_norm(ns_rr_name(*rr), out->addr[out->n_addr].owner) != ST_OK)
        return ST_PROTO;
    if (!inet_ntop(type == ns_t_a ? AF_INET : AF_INET6, rd, out->addr[out->n_addr].host,
                   sizeof out->addr[0].host))
        return ST_PROTO;
    out->addr[out->n_addr++].additional = sect == ns_s_ar;
    return ST_OK;
}

int gwdns_msg_parse(const uint8_t *msg, size_t len, gwdns_msg_t *out)
{
    out->rcode = 0;
    out->truncated = false;
    out->n_srv = out->n_addr = 0;
    ns_msg h;
    if (len > ANSWER_MAX || ns_initparse(msg, (int)len, &h) < 0)
        return ST_PROTO;
    out->rcode = ns_msg_getflag(h, ns_f_rcode);
    out->truncated = ns_msg_getflag(h, ns_f_tc) != 0;
    const ns_sect sects[] = {ns_s_an, ns_s_ar};
    for (size_t s = 0; s < 2; s++) {
        int count = ns_msg_count(h, sects[s]);
        for (int i = 0; i < count; i++) {
            ns_rr rr;
            if (ns_parserr(&h, sects[s], i, &rr) < 0)
                return ST_PROTO;
            int rc = parse_rr(&h, sects[s], &rr, out);
            if (rc != ST_OK)
                return rc;
        }
    }
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* one resolution                                                                              */

typedef struct resolver {
    struct __res_state rs;
    bool inited;
    const char *server; /* NULL = system */
    uint32_t timeout_ms;
    unsigned char ans[ANSWER_MAX];
    gwdns_msg_t msg;  /* the SRV answer */
    gwdns_msg_t msg2; /* a follow-up A answer */
    struct {
        char owner[GWDNS_MAX_NAME];
        char host[48];
    } ext[GWDNS_MSG_MAX_ADDR]; /* addresses of SRV targets looked up separately */
    size_t n_ext;
    char asked[GWDNS_MSG_MAX_SRV][GWDNS_MAX_NAME]; /* SRV targets looked up separately */
    size_t n_asked;
} resolver_t;

static int resolver_init(resolver_t *r, const char *server, uint32_t timeout_ms, char *err,
                         size_t errlen)
{
    struct sockaddr_in sin;
    r->server = server;
    r->timeout_ms = timeout_ms ? timeout_ms : GWDNS_DEFAULT_TIMEOUT_MS;
    if (server && server_parse(server, &sin) != ST_OK) {
        sy_errf(err, errlen, "bad DNS server '%s'", server);
        return ST_INVAL;
    }
    memset(&r->rs, 0, sizeof r->rs);
    if (res_ninit(&r->rs) != 0) {
        sy_errf(err, errlen, "res_ninit failed");
        return ST_UPSTREAM;
    }
    r->inited = true;
    r->rs.retrans = (int)((r->timeout_ms + 999) / 1000);
    if (server) {
        r->rs.nsaddr_list[0] = sin;
        r->rs.nscount = 1;
        r->rs.retry = 1;
    }
    r->rs.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
    return ST_OK;
}

static void resolver_deinit(resolver_t *r)
{
    if (r->inited)
        res_nclose(&r->rs);
    r->inited = false;
}

/* One query of (name, type) into out. ST_OK (out parsed; an empty answer too), ST_NOTFOUND
 * (NXDOMAIN), or ST_TIMEOUT / ST_UPSTREAM / ST_PROTO with err set. */
static int query(resolver_t *r, const char *name, int type, gwdns_msg_t *out, char *err,
                 size_t errlen)
{
    const char *tn = type == ns_t_srv ? "SRV" : type == ns_t_a ? "A" : "AAAA";
    uint64_t t0 = sy_mono_ms();
    int n = res_nquery(&r->rs, name, ns_c_in, type, r->ans, sizeof r->ans);
    if (n < 0) {
        int he = r->rs.res_h_errno;
        if (he == HOST_NOT_FOUND)
            return ST_NOTFOUND;
        if (he == NO_DATA) {
            out->n_srv = out->n_addr = 0;
            return ST_OK;
        }
        /* a silent server and a SERVFAIL look alike here: tell them apart by the time taken */
        if (he == TRY_AGAIN && sy_mono_ms() - t0 + 50 >= (uint64_t)r->rs.retrans * 1000) {
            sy_errf(err, errlen, "%s %s: timed out after %d s", tn, name, r->rs.retrans);
            return ST_TIMEOUT;
        }
        sy_errf(err, errlen, "%s %s: %s", tn, name,
                he == TRY_AGAIN ? "server failure (SERVFAIL or unreachable)"
                                : "refused or unusable answer");
        return ST_UPSTREAM;
    }
    if (n > (int)sizeof r->ans || gwdns_msg_parse(r->ans, (size_t)n, out) != ST_OK) {
        sy_errf(err, errlen, "%s %s: malformed answer (%d bytes)", tn, name, n);
        return ST_PROTO;
    }
    if (out->rcode == ns_r_nxdomain)
        return ST_NOTFOUND;
    if (out->rcode != ns_r_noerror) {
        sy_errf(err, errlen, "%s %s: rcode %d", tn, name, out->rcode);
        return ST_UPSTREAM;
    }
    return ST_OK;
}

static void set_add(gwdns_set_t *s, const char *host, int port)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].port == port && strcmp(s->v[i].host, host) == 0)
            return;
    if (s->n == GWDNS_MAX_ADDRS)
        return;
    snprintf(s->v[s->n].host, sizeof s->v[0].host, "%s", host);
    s->v[s->n++].port = port;
}

static int addr_cmp(const void *a, const void *b)
{
    const gwdns_addr_t *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    return c ? c : (x->port > y->port) - (x->port < y->port);
}

/* Every address of name at port into out via getaddrinfo. ST_OK, ST_NOTFOUND, or an error. */
static int gai_lookup(const char *name, int port, gwdns_set_t *out, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc == EAI_NONAME || rc == EAI_NODATA)
        return rc == EAI_NONAME ? ST_NOTFOUND : ST_OK;
    if (rc != 0) {
        sy_errf(err, errlen, "getaddrinfo %s: %s", name, gai_strerror(rc));
        return rc == EAI_AGAIN ? ST_TIMEOUT : rc == EAI_MEMORY ? ST_NOMEM : ST_UPSTREAM;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char host[48];
        const void *a = NULL;
        if (ai->ai_family == AF_INET)
            a = &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
        if (a && inet_ntop(ai->ai_family, a, host, sizeof host))
            set_add(out, host, port);
    }
    freeaddrinfo(res);
    return ST_OK;
}

static int resolve_a(resolver_t *r, const gwdns_target_t *t, gwdns_set_t *out, char *err,
                     size_t errlen)
{
    if (!r->server) {
        int rc = gai_lookup(t->name, t->port, out, err, errlen);
        out->nxdomain = rc == ST_NOTFOUND;
        return rc == ST_NOTFOUND ? ST_OK : rc;
    }
    int rc = query(r, t->name, ns_t_a, &r->msg, err, errlen);
    if (rc == ST_NOTFOUND) {
        out->nxdomain = true;
        return ST_OK;
    }
    if (rc != ST_OK)
        return rc;
    for (size_t i = 0; i < r->msg.n_addr; i++)
        if (!r->msg.addr[i].additional)
            set_add(out, r->msg.addr[i].host, t->port);
    /* AAAA: a server that fails it still gave its A records */
    char err6[256];
    if (query(r, t->name, ns_t_aaaa, &r->msg, err6, sizeof err6) == ST_OK) {
        for (size_t i = 0; i < r->msg.n_addr; i++)
            if (!r->msg.addr[i].additional)
                set_add(out, r->msg.addr[i].host, t->port);
    }
    return ST_OK;
}

/* Adds every address known for target (additional section, then earlier lookups) at port to out;
 * false when none is known. */
static bool known_addrs(const resolver_t *r, const char *target, int port, gwdns_set_t *out)
{
    bool found = false;
    for (size_t k = 0; k < r->msg.n_addr; k++) {
        if (strcmp(r->msg.addr[k].owner, target) == 0) {
            set_add(out, r->msg.addr[k].host, port);
            found = true;
        }
    }
    for (size_t k = 0; k < r->n_ext; k++) {
        if (strcmp(r->ext[k].owner, target) == 0) {
            set_add(out, r->ext[k].host, port);
            found = true;
        }
    }
    return found;
}

/* Looks target up (an A query to the custom server, or getaddrinfo) and remembers the addresses
 * in r->ext. ST_OK (maybe none), ST_NOTFOUND, or an error with err set. */
static int lookup_target(resolver_t *r, const char *target, char *err, size_t errlen)
{
    gwdns_set_t *tmp = NULL;
    int rc;
    if (r->server) {
        rc = query(r, target, ns_t_a, &r->msg2, err, errlen);
        for (size_t k = 0; rc == ST_OK && k < r->msg2.n_addr && r->n_ext < GWDNS_MSG_MAX_ADDR;
             k++) {
            if (r->msg2.addr[k].additional)
                continue;
            snprintf(r->ext[r->n_ext].owner, sizeof r->ext[0].owner, "%s", target);
            snprintf(r->ext[r->n_ext++].host, sizeof r->ext[0].host, "%s", r->msg2.addr[k].host);
        }
        return rc;
    }
    if (!(tmp = sy_malloc(sizeof *tmp))) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    tmp->n = 0;
    rc = gai_lookup(target, 0, tmp, err, errlen);
    for (size_t k = 0; rc == ST_OK && k < tmp->n && r->n_ext < GWDNS_MSG_MAX_ADDR; k++) {
        snprintf(r->ext[r->n_ext].owner, sizeof r->ext[0].owner, "%s", target);
        snprintf(r->ext[r->n_ext++].host, sizeof r->ext[0].host, "%s", tmp->v[k].host);
    }
    sy_free(tmp);
    return rc;
}

static int resolve_srv(resolver_t *r, const gwdns_target_t *t, gwdns_set_t *out, char *err,
                       size_t errlen)
{
    int rc = query(r, t->name, ns_t_srv, &r->msg, err, errlen);
    if (rc == ST_NOTFOUND) {
        out->nxdomain = true;
        return ST_OK;
    }
    if (rc != ST_OK)
        return rc;
    r->n_ext = r->n_asked = 0;
    for (size_t i = 0; i < r->msg.n_srv; i++) {
        const char *target = r->msg.srv[i].target;
        int port = r->msg.srv[i].port;
        if (!target[0] || port == 0) /* "." : the service is decidedly not available here */
            continue;
        if (known_addrs(r, target, port, out))
            continue;
        bool asked = false;
        for (size_t j = 0; j < r->n_asked && !asked; j++)
            asked = strcmp(r->asked[j], target) == 0;
        if (asked) /* looked up already and it has no address */
            continue;
        snprintf(r->asked[r->n_asked++], sizeof r->asked[0], "%s", target);
        rc = lookup_target(r, target, err, errlen);
        if (rc != ST_OK && rc != ST_NOTFOUND) /* a target that does not exist gives nothing */
            return rc;
        (void)known_addrs(r, target, port, out);
    }
    return ST_OK;
}

int gwdns_resolve(const gwdns_target_t *t, const char *server, uint32_t timeout_ms,
                  gwdns_set_t *out, char *err, size_t errlen)
{
    out->n = 0;
    out->nxdomain = false;
    resolver_t *r = sy_malloc(sizeof *r);
    if (!r) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    r->inited = false;
    int rc = ST_OK;
    if (t->kind == GWDNS_A && !server) { /* getaddrinfo only: no resolver state */
        r->server = NULL;
    } else if ((rc = resolver_init(r, server, timeout_ms, err, errlen)) != ST_OK) {
        goto done;
    }
    rc = t->kind == GWDNS_A ? resolve_a(r, t, out, err, errlen)
                            : resolve_srv(r, t, out, err, errlen);
    if (rc != ST_OK)
        out->n = 0;
    qsort(out->v, out->n, sizeof out->v[0], addr_cmp);
done:
    resolver_deinit(r);
    sy_free(r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* periodic discovery                                                                          */

typedef enum tgt_state { TS_NONE, TS_OK, TS_EMPTY, TS_ERROR } tgt_state_t;

typedef struct tgt {
    char text[GWDNS_MAX_NAME + 16];
    gwdns_target_t t;
    uint32_t interval_ms;
    uint64_t due_ms;   /* resolver thread only */
    tgt_state_t state; /* resolver thread only */
    gwdns_addr_t *cur; /* published set (owned), under mu */
    size_t n_cur;
    mx_series_t *g_eps, *c_ok, *c_err, *c_empty;
} tgt_t;

struct gwdns {
    ev_loop_t *loop;
    ev_async_t *async;
    gwdns_on_update_cb on_update;
    void *udata;
    char server[64]; /* "" = system */
    uint32_t timeout_ms;
    mx_family_t *f_eps, *f_res;
    tgt_t *t;
    size_t n;
    pthread_t thread;
    bool started;
    bool stop; /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gwdns_set_t *scratch; /* resolver thread only */
};

static void on_async(ev_loop_t *loop, void *udata)
{
    (void)loop;
    gwdns_t *d = udata;
    if (d->on_update)
        d->on_update(d->udata);
}

gwdns_t *gwdns_create(ev_loop_t *loop, const gwdns_config_t *cfg, gwdns_on_update_cb on_update,
                      void *udata, int *st)
{
    int rc = ST_NOMEM;
    gwdns_t *d = sy_calloc(1, sizeof *d);
    if (!d)
        goto fail;
    d->loop = loop;
    d->on_update = on_update;
    d->udata = udata;
    d->timeout_ms = cfg && cfg->timeout_ms ? cfg->timeout_ms : GWDNS_DEFAULT_TIMEOUT_MS;
    if (cfg && cfg->server) {
        if (gwdns_server_check(cfg->server, NULL, 0) != ST_OK ||
            strlen(cfg->server) >= sizeof d->server) {
            rc = ST_INVAL;
            goto fail_free;
        }
        snprintf(d->server, sizeof d->server, "%s", cfg->server);
    }
    if (pthread_mutex_init(&d->mu, NULL) != 0)
        goto fail_free;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int crc = pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (crc != 0)
        goto fail_mutex;
    d->scratch = sy_malloc(sizeof *d->scratch);
    d->async = d->scratch ? ev_async_create(loop, on_async, d) : NULL;
    if (!d->async)
        goto fail_cond;
    if (cfg && cfg->metrics) {
        static const char *l_t[] = {"target"};
        static const char *l_tr[] = {"target", "result"};
        d->f_eps = mx_family_create(
            cfg->metrics, MX_GAUGE, "switchyard_gateway_discovery_endpoints",
            "Endpoints the discovery target currently resolves to.", l_t, 1, NULL, 0);
        d->f_res =
            mx_family_create(cfg->metrics, MX_COUNTER, "switchyard_gateway_discovery_resolutions",
                             "Resolutions of the discovery target by result (ok, error: "
                             "the previous set is kept, empty: NXDOMAIN or no records).",
                             l_tr, 2, NULL, 0);
    }
    return d;
fail_cond:
    sy_free(d->scratch);
    pthread_cond_destroy(&d->cv);
fail_mutex:
    pthread_mutex_destroy(&d->mu);
fail_free:
    sy_free(d);
fail:
    if (st)
        *st = rc;
    return NULL;
}

int gwdns_add(gwdns_t *d, const char *target, uint32_t interval_ms, char *err, size_t errlen)
{
    if (d->started)
        return ST_STATE;
    gwdns_target_t t;
    int rc = gwdns_target_parse(target, &t, err, errlen);
    if (rc != ST_OK)
        return rc;
    if (strlen(target) >= sizeof d->t[0].text) {
        sy_errf(err, errlen, "discovery target too long");
        return ST_INVAL;
    }
    tgt_t *nt = sy_realloc(d->t, (d->n + 1) * sizeof *nt);
    if (!nt) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    d->t = nt;
    tgt_t *x = &d->t[d->n];
    memset(x, 0, sizeof *x);
    snprintf(x->text, sizeof x->text, "%s", target);
    x->t = t;
    x->interval_ms = interval_ms ? interval_ms : GWDNS_DEFAULT_INTERVAL_MS;
    if (d->f_eps) {
        const char *lv[] = {x->text};
        x->g_eps = mx_series_get(d->f_eps, lv, 1);
        if (x->g_eps)
            mx_gauge_set(x->g_eps, 0);
    }
    if (d->f_res) {
        const char *ok[] = {x->text, "ok"}, *er[] = {x->text, "error"}, *em[] = {x->text, "empty"};
        x->c_ok = mx_series_get(d->f_res, ok, 2);
        x->c_err = mx_series_get(d->f_res, er, 2);
        x->c_empty = mx_series_get(d->f_res, em, 2);
    }
    return (int)d->n++;
}

static bool same_set(const tgt_t *t, const gwdns_set_t *s)
{
    if (t->n_cur != s->n)
        return false;
    for (size_t i = 0; i < s->n; i++)
        if (addr_cmp(&t->cur[i], &s->v[i]) != 0)
            return false;
    return true;
}

static void counter_inc(mx_series_t *s)
{
    if (s)
        mx_counter_inc(s);
}

/* Under mu, resolver thread: records one resolution's outcome for t. */
static void publish(gwdns_t *d, tgt_t *t, int rc, const gwdns_set_t *s, const char *err)
{
    if (rc != ST_OK) {
        counter_inc(t->c_err);
        if (t->state != TS_ERROR)
            sy_warn("gateway.discovery_failed", "target=\"%s\" status=%s error=\"%s\" kept=%zu",
                    t->text, st_str(rc), err, t->n_cur);
        t->state = TS_ERROR;
        return;
    }
    tgt_state_t ns = s->n ? TS_OK : TS_EMPTY;
    counter_inc(ns == TS_OK ? t->c_ok : t->c_empty);
    if (ns == TS_EMPTY && t->state != TS_EMPTY)
        sy_warn("gateway.discovery_empty", "target=\"%s\" reason=%s", t->text,
                s->nxdomain ? "nxdomain" : "no_records");
    else if (ns == TS_OK && t->state == TS_ERROR)
        sy_info("gateway.discovery_recovered", "target=\"%s\" endpoints=%zu", t->text, s->n);
    t->state = ns;
    if (same_set(t, s))
        return;
    gwdns_addr_t *v = NULL;
    if (s->n && !(v = sy_malloc(s->n * sizeof *v))) {
        sy_warn("gateway.discovery_failed", "target=\"%s\" error=\"out of memory\"", t->text);
        return;
    }
    if (s->n)
        memcpy(v, s->v, s->n * sizeof *v);
    sy_free(t->cur);
    t->cur = v;
    t->n_cur = s->n;
    if (t->g_eps)
        mx_gauge_set(t->g_eps, (double)s->n);
    char first[64] = "none";
    if (s->n)
        snprintf(first, sizeof first, "%s:%d", s->v[0].host, s->v[0].port);
    sy_info("gateway.discovery_changed", "target=\"%s\" endpoints=%zu first=%s", t->text, s->n,
            first);
    ev_async_send(d->async);
}

static void *dns_thread(void *arg)
{
    gwdns_t *d = arg;
    char err[512];
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        uint64_t now = sy_mono_ms(), next = UINT64_MAX;
        tgt_t *due = NULL;
        for (size_t i = 0; i < d->n && !due; i++) {
            if (d->t[i].due_ms <= now)
                due = &d->t[i];
            else if (d->t[i].due_ms < next)
                next = d->t[i].due_ms;
        }
        if (due) {
            pthread_mutex_unlock(&d->mu);
            err[0] = '\0';
            int rc = gwdns_resolve(&due->t, d->server[0] ? d->server : NULL, d->timeout_ms,
                                   d->scratch, err, sizeof err);
            pthread_mutex_lock(&d->mu);
            publish(d, due, rc, d->scratch, err);
            due->due_ms = sy_mono_ms() + due->interval_ms;
            continue;
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait = next - now;
        ts.tv_sec += (time_t)(wait / 1000);
        ts.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int gwdns_start(gwdns_t *d)
{
    if (d->started)
        return ST_STATE;
    int rc = sy_thread_start(&d->thread, dns_thread, d);
    if (rc == ST_OK)
        d->started = true;
    return rc;
}

size_t gwdns_count(const gwdns_t *d)
{
    return d ? d->n : 0;
}

const char *gwdns_target_text(const gwdns_t *d, size_t i)
{
    return i < d->n ? d->t[i].text : "";
}

size_t gwdns_get(gwdns_t *d, size_t i, gwdns_addr_t *out, size_t cap)
{
    if (!d || i >= d->n)
        return 0;
    pthread_mutex_lock(&d->mu);
    size_t n = d->t[i].n_cur < cap ? d->t[i].n_cur : cap;
    if (n)
        memcpy(out, d->t[i].cur, n * sizeof *out);
    pthread_mutex_unlock(&d->mu);
    return n;
}

void gwdns_destroy(gwdns_t *d)
{
    if (!d)
        return;
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
    }
    ev_async_destroy(d->async);
    for (size_t i = 0; i < d->n; i++)
        sy_free(d->t[i].cur);
    sy_free(d->t);
    sy_free(d->scratch);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    sy_free(d);
}
