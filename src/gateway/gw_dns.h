/*
 * gw_dns.h - DNS discovery of endpoints, the way a Kubernetes headless Service is found:
 *
 *   dns://NAME:PORT            every A/AAAA address of NAME, each at PORT
 *   srv://_http._tcp.NAME      every SRV record of the name: (target, port); the target's
 *                              addresses come from the response's additional section, or from
 *                              an A query to the same server when the section lacks them
 *
 * Without a custom server, dns:// uses getaddrinfo and srv:// the system resolver (libresolv with
 * /etc/resolv.conf); with one (`--dns-server HOST:PORT`) every query goes to that server through
 * libresolv. A gwdns_t re-resolves each of its targets on a background thread every interval and
 * hands changed sets to the event loop through an ev_async; a failed resolution (timeout,
 * SERVFAIL, malformed answer) keeps the previous set, NXDOMAIN or an empty answer gives none.
 * Does not: build endpoints (gw_main does), follow CNAMEs itself, or weigh SRV priorities.
 * Thread-safety: gwdns_target_parse, gwdns_msg_parse and gwdns_resolve are reentrant (any
 * thread). A gwdns_t is created, driven and destroyed on its loop's thread; its resolver thread
 * only touches state behind its mutex.
 */
#ifndef SY_GW_DNS_H
#define SY_GW_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"
#include "common/metrics.h"

#define GWDNS_MAX_ADDRS 256    /* endpoints one target may give */
#define GWDNS_MAX_NAME 256     /* DNS names in text form, NUL included */
#define GWDNS_MSG_MAX_SRV 128  /* SRV records kept from one response */
#define GWDNS_MSG_MAX_ADDR 256 /* A/AAAA records kept from one response */
#define GWDNS_DEFAULT_INTERVAL_MS 5000
#define GWDNS_DEFAULT_TIMEOUT_MS 1000

typedef enum gwdns_kind {
    GWDNS_A = 0,   /* dns://NAME:PORT */
    GWDNS_SRV = 1, /* srv://NAME */
} gwdns_kind_t;

typedef struct gwdns_target {
    gwdns_kind_t kind;
    char name[GWDNS_MAX_NAME];
    int port; /* GWDNS_A only */
} gwdns_target_t;

/* One discovered endpoint: a numeric address ("10.0.0.5", "fd00::5") and a port. */
typedef struct gwdns_addr {
    char host[48];
    int port;
} gwdns_addr_t;

/* The result of one resolution: sorted by (host, port), no duplicates. */
typedef struct gwdns_set {
    gwdns_addr_t v[GWDNS_MAX_ADDRS];
    size_t n;
    bool nxdomain; /* n == 0 because the name does not exist (else: no records) */
} gwdns_set_t;

/* The records of one DNS response that discovery uses. */
typedef struct gwdns_msg {
    int rcode;      /* the header's RCODE (0 = NOERROR, 3 = NXDOMAIN, ...) */
    bool truncated; /* TC bit */
    struct {
        char target[GWDNS_MAX_NAME]; /* lower case, no trailing dot */
        int port;
    } srv[GWDNS_MSG_MAX_SRV]; /* answer section */
    size_t n_srv;
    struct {
        char owner[GWDNS_MAX_NAME]; /* lower case, no trailing dot */
        char host[48];              /* numeric */
        bool additional;            /* from the additional section (else the answer section) */
    } addr[GWDNS_MSG_MAX_ADDR];
    size_t n_addr;
} gwdns_msg_t;

/* Parses "dns://NAME:PORT" or "srv://NAME" into *out. ST_OK, or ST_INVAL with err set. */
int gwdns_target_parse(const char *text, gwdns_target_t *out, char *err, size_t errlen);

/* Checks "HOST:PORT" (HOST a numeric IPv4 address) for --dns-server. ST_OK or ST_INVAL. */
int gwdns_server_check(const char *text, char *err, size_t errlen);

/* Parses a DNS response msg[0..len) (borrowed, hostile bytes): the header's rcode and TC bit,
 * SRV records of the answer section, and A/AAAA records of the answer and additional sections
 * (records beyond the GWDNS_MSG_MAX_* caps are dropped). ST_OK, or ST_PROTO when the message is
 * malformed (short, a record running past the end, a bad name or rdata length). */
int gwdns_msg_parse(const uint8_t *msg, size_t len, gwdns_msg_t *out);

/* Resolves t once, blocking for up to about timeout_ms per query. server is "HOST:PORT" or NULL
 * for the system resolver. ST_OK with *out filled (n == 0 for NXDOMAIN or no records; at most
 * GWDNS_MAX_ADDRS kept), or ST_TIMEOUT (no answer), ST_UPSTREAM (SERVFAIL, REFUSED, ...),
 * ST_PROTO (malformed answer), ST_INVAL (bad server), with err set. Any thread. */
int gwdns_resolve(const gwdns_target_t *t, const char *server, uint32_t timeout_ms,
                  gwdns_set_t *out, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------ */
/* periodic discovery                                                                          */

typedef struct gwdns gwdns_t;

/* Called on the loop thread after one or more targets' sets changed. */
typedef void (*gwdns_on_update_cb)(void *udata);

typedef struct gwdns_config {
    const char *server;     /* "HOST:PORT" or NULL (system resolver); copied */
    uint32_t timeout_ms;    /* per query; 0 = GWDNS_DEFAULT_TIMEOUT_MS */
    mx_registry_t *metrics; /* borrowed, may be NULL: switchyard_gateway_discovery_* families */
} gwdns_config_t;

/* Returns an owned discovery handle on loop (free with gwdns_destroy), or NULL with *st set
 * (ST_NOMEM, ST_INVAL for a bad server). on_update/udata are borrowed for its lifetime. Loop
 * thread. */
gwdns_t *gwdns_create(ev_loop_t *loop, const gwdns_config_t *cfg, gwdns_on_update_cb on_update,
                      void *udata, int *st);

/* Adds a target ("dns://..." or "srv://..."), re-resolved every interval_ms (0 = the default).
 * Only before gwdns_start. Returns its index (0, 1, ...), or ST_INVAL (err set) / ST_NOMEM /
 * ST_STATE. */
int gwdns_add(gwdns_t *d, const char *target, uint32_t interval_ms, char *err, size_t errlen);

/* Starts the resolver thread; every target is resolved at once, then every interval. ST_OK or
 * -errno. */
int gwdns_start(gwdns_t *d);

/* Number of targets added. */
size_t gwdns_count(const gwdns_t *d);

/* The target text of index i (borrowed, lives as long as d). */
const char *gwdns_target_text(const gwdns_t *d, size_t i);

/* Copies target i's current set into out (at most cap entries) and returns the number copied.
 * Before the first successful resolution the set is empty. Loop thread. */
size_t gwdns_get(gwdns_t *d, size_t i, gwdns_addr_t *out, size_t cap);

/* Stops and joins the thread (waits for a query in progress, at most about timeout_ms) and frees
 * d. NULL ok. Loop thread. */
void gwdns_destroy(gwdns_t *d);

#endif
