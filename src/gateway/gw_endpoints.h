/*
 * gw_endpoints.h - the gateway's endpoint specifications: what an operator writes for one model
 * server, either as a `--endpoint URL[,key=value...]` argument or as an entry of an endpoints
 * file (YAML, reloaded on SIGHUP by gw_main):
 *
 *   endpoints:
 *     - url: http://10.0.0.5:8000          # required, http[s]://HOST[:PORT][/...]; https =
 *                                          # TLS to the engine (gateway --upstream-tls-ca)
 *       models: [meta-llama/Llama-3.1-8B]  # optional; default: read from its /v1/models
 *       role: both                         # optional: both (default), prefill, decode
 *       kv_events: tcp://10.0.0.5:5557     # optional: the engine's KV-event publisher
 *       replay: tcp://10.0.0.5:5558        # optional: its replay ROUTER
 *       metrics_path: /metrics             # optional, default /metrics
 *   discovery:                             # optional: endpoints found through DNS (gw_dns.h)
 *     - target: srv://_http._tcp.vllm.ns.svc.cluster.local   # or dns://NAME:PORT; required
 *       kv_events_port: 5557               # optional: kv_events = tcp://ADDRESS:5557
 *       role: both                         # optional
 *       models: [meta-llama/Llama-3.1-8B]  # optional
 *       interval_ms: 5000                  # optional, default 5000
 *
 * At least one of `endpoints` and `discovery` is given. The same discovery entry is also written
 * `--discover TARGET[,kv-events-port=N][,role=R][,model=NAME][,interval=MS]`.
 * Does not: resolve names, connect, or compare specs with running endpoints (gw_main does).
 * Thread-safety: pure functions over caller-owned storage; any thread.
 */
#ifndef SY_GW_ENDPOINTS_H
#define SY_GW_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/gw_endpoint.h"

#define GW_SPEC_MAX 1024 /* endpoints per file */

typedef struct gw_ep_spec {
    char host[96];
    int port;
    bool tls; /* https:// (default port 443) */
    gw_role_t role;
    char kv_events[256];    /* "" = none */
    char replay[256];       /* "" = none */
    char metrics_path[128]; /* "" = the scraper's default (/metrics) */
    char models[GW_MAX_MODELS][128];
    size_t n_models; /* 0 = read from /v1/models */
} gw_ep_spec_t;

#define GW_DISC_MAX 64 /* discovery entries per file */

/* A DNS discovery target and the settings every endpoint it gives gets. */
typedef struct gw_disc_spec {
    char target[256];   /* "dns://NAME:PORT" or "srv://NAME" (checked by gwdns_target_parse) */
    int kv_events_port; /* 0 = none; else each endpoint's kv_events is tcp://ADDRESS:PORT */
    gw_role_t role;
    char models[GW_MAX_MODELS][128];
    size_t n_models;      /* 0 = read from /v1/models */
    uint32_t interval_ms; /* re-resolution period; 0 = the default (5000) */
} gw_disc_spec_t;

/* A parsed endpoints file. Free with gw_ep_list_deinit. */
typedef struct gw_ep_list {
    gw_ep_spec_t *v; /* owned */
    size_t n;
    gw_disc_spec_t *disc; /* owned: the `discovery:` entries */
    size_t n_disc;
} gw_ep_list_t;

/* Parses "http[s]://host:port[/...][,kv-events=ZMQ][,replay=ZMQ][,role=R][,model=NAME]" into *out.
 * ST_OK, or ST_INVAL with a message in err. */
int gw_ep_spec_parse_arg(const char *text, gw_ep_spec_t *out, char *err, size_t errlen);

/* Parses "TARGET[,kv-events-port=N][,role=R][,model=NAME][,interval=MS]" (--discover) into *out.
 * ST_OK, or ST_INVAL with a message in err. */
int gw_disc_spec_parse_arg(const char *text, gw_disc_spec_t *out, char *err, size_t errlen);

/* Fills *out with the endpoint spec of address host (numeric, borrowed) at port found by d:
 * d's role and models, and kv_events tcp://HOST:kv_events_port when d has one. */
void gw_disc_spec_endpoint(const gw_disc_spec_t *d, const char *host, int port, gw_ep_spec_t *out);

/* True if a and b are the same discovery entry with the same settings. */
bool gw_disc_spec_equal(const gw_disc_spec_t *a, const gw_disc_spec_t *b);

/* Parses an endpoints file from text[0..len) (borrowed). ST_OK with *out filled (owned; an empty
 * `endpoints: []` gives n == 0), or ST_INVAL (err names the line and the problem: bad YAML,
 * unknown key, bad url/role/target, duplicate host:port or target, over GW_SPEC_MAX endpoints or
 * GW_DISC_MAX discovery entries) or ST_NOMEM, with *out empty. */
int gw_ep_list_parse(const char *text, size_t len, gw_ep_list_t *out, char *err, size_t errlen);
/* Same, reading path (unreadable file: -errno with err set). */
int gw_ep_list_load_file(const char *path, gw_ep_list_t *out, char *err, size_t errlen);
/* Frees l's storage and zeroes it. NULL ok. */
void gw_ep_list_deinit(gw_ep_list_t *l);

/* True if a and b describe the same endpoint with the same settings. */
bool gw_ep_spec_equal(const gw_ep_spec_t *a, const gw_ep_spec_t *b);

#endif
