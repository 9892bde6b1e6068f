/*
 * gw_endpoints.h - the gateway's endpoint specifications: what an operator writes for one model
 * server, either as a `--endpoint URL[,key=value...]` argument or as an entry of an endpoints
 * file (YAML, reloaded on SIGHUP by gw_main):
 *
 *   endpoints:
 *     - url: http://10.0.0.5:8000          # required, http://HOST[:PORT][/...]
 *       models: [meta-llama/Llama-3.1-8B]  # optional; default: read from its /v1/models
 *       role: both                         # optional: both (default), prefill, decode
 *       kv_events: tcp://10.0.0.5:5557     # optional: the engine's KV-event publisher
 *       replay: tcp://10.0.0.5:5558        # optional: its replay ROUTER
 *       metrics_path: /metrics             # optional, default /metrics
 *
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
    gw_role_t role;
    char kv_events[256];    /* "" = none */
    char replay[256];       /* "" = none */
    char metrics_path[128]; /* "" = the scraper's default (/metrics) */
    char models[GW_MAX_MODELS][128];
    size_t n_models; /* 0 = read from /v1/models */
} gw_ep_spec_t;

/* A parsed endpoints file. Free with gw_ep_list_deinit. */
typedef struct gw_ep_list {
    gw_ep_spec_t *v; /* owned */
    size_t n;
} gw_ep_list_t;

/* Parses "http://host:port[/...][,kv-events=ZMQ][,replay=ZMQ][,role=R][,model=NAME]" into *out.
 * ST_OK, or ST_INVAL with a message in err. */
int gw_ep_spec_parse_arg(const char *text, gw_ep_spec_t *out, char *err, size_t errlen);

/* Parses an endpoints file from text[0..len) (borrowed). ST_OK with *out filled (owned; an empty
 * `endpoints: []` gives n == 0), or ST_INVAL (err names the line and the problem: bad YAML,
 * unknown key, bad url/role, duplicate host:port, over GW_SPEC_MAX entries) or ST_NOMEM, with
 * *out empty. */
int gw_ep_list_parse(const char *text, size_t len, gw_ep_list_t *out, char *err, size_t errlen);
/* Same, reading path (unreadable file: -errno with err set). */
int gw_ep_list_load_file(const char *path, gw_ep_list_t *out, char *err, size_t errlen);
/* Frees l's storage and zeroes it. NULL ok. */
void gw_ep_list_deinit(gw_ep_list_t *l);

/* True if a and b describe the same endpoint with the same settings. */
bool gw_ep_spec_equal(const gw_ep_spec_t *a, const gw_ep_spec_t *b);

#endif
