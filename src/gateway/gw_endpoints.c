/*
 * gw_endpoints.c - endpoint specifications from `--endpoint` arguments and from the endpoints
 * YAML file (see gw_endpoints.h for the format). The file is loaded as a libyaml document and
 * walked node by node; every error names its 1-based line.
 * Thread-safety: pure; any thread.
 */
#include "gateway/gw_endpoints.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/status.h"
#include "gateway/gw_dns.h"

static int parse_role(const char *v, gw_role_t *out)
{
    if (strcmp(v, "both") == 0)
        *out = GW_ROLE_BOTH;
    else if (strcmp(v, "prefill") == 0)
        *out = GW_ROLE_PREFILL;
    else if (strcmp(v, "decode") == 0)
        *out = GW_ROLE_DECODE;
    else
        return ST_INVAL;
    return ST_OK;
}

/* "http[s]://host[:port][/...]" into out->host / out->port / out->tls. */
static int parse_url(const char *url, gw_ep_spec_t *out)
{
    bool tls = strncmp(url, "https://", 8) == 0;
    if (!tls && strncmp(url, "http://", 7) != 0)
        return ST_INVAL;
    const char *hp = url + (tls ? 8 : 7);
    size_t hl = strcspn(hp, "/");
    char buf[128];
    if (hl == 0 || hl >= sizeof buf)
        return ST_INVAL;
    memcpy(buf, hp, hl);
    buf[hl] = '\0';
    char *colon = strrchr(buf, ':');
    long port = tls ? 443 : 80;
    if (colon) {
        char *end = NULL;
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end)
            return ST_INVAL;
        *colon = '\0';
    }
    size_t n = strlen(buf);
    if (!n || n >= sizeof out->host || port <= 0 || port > 65535)
        return ST_INVAL;
    memcpy(out->host, buf, n + 1);
    out->port = (int)port;
    out->tls = tls;
    return ST_OK;
}

int gw_ep_spec_parse_arg(const char *text, gw_ep_spec_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        sy_errf(err, errlen, "--endpoint value too long");
        return ST_INVAL;
    }
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    char *url = strtok_r(buf, ",", &save);
    if (!url || parse_url(url, out) != ST_OK) {
        sy_errf(err, errlen, "--endpoint '%s': expected http[s]://HOST:PORT", text);
        return ST_INVAL;
    }
    for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            sy_errf(err, errlen, "--endpoint '%s': '%s' is not key=value", text, kv);
            return ST_INVAL;
        }
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(kv, "kv-events") == 0) {
            snprintf(out->kv_events, sizeof out->kv_events, "%s", v);
        } else if (strcmp(kv, "replay") == 0) {
            snprintf(out->replay, sizeof out->replay, "%s", v);
        } else if (strcmp(kv, "model") == 0) {
            if (!*v || strlen(v) >= sizeof out->models[0] || out->n_models == GW_MAX_MODELS) {
                sy_errf(err, errlen, "--endpoint '%s': bad model", text);
                return ST_INVAL;
            }
            snprintf(out->models[out->n_models++], sizeof out->models[0], "%s", v);
        } else if (strcmp(kv, "role") == 0) {
            if (parse_role(v, &out->role) != ST_OK) {
                sy_errf(err, errlen, "--endpoint '%s': role must be both, prefill or decode", text);
                return ST_INVAL;
            }
        } else {
            sy_errf(err, errlen,
                    "--endpoint '%s': unknown key '%s' (kv-events, replay, role, model)", text, kv);
            return ST_INVAL;
        }
    }
    return ST_OK;
}

/* A decimal in [lo, hi] into *out; ST_INVAL otherwise. */
static int parse_uint(const char *v, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return ST_INVAL;
    *out = x;
    return ST_OK;
}

/* The target of a discovery entry, checked. */
static int disc_target(const char *v, gw_disc_spec_t *out, char *err, size_t errlen)
{
    gwdns_target_t t;
    if (strlen(v) >= sizeof out->target) {
        sy_errf(err, errlen, "discovery target too long");
        return ST_INVAL;
    }
    if (gwdns_target_parse(v, &t, err, errlen) != ST_OK)
        return ST_INVAL;
    snprintf(out->target, sizeof out->target, "%s", v);
    return ST_OK;
}

int gw_disc_spec_parse_arg(const char *text, gw_disc_spec_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        sy_errf(err, errlen, "--discover value too long");
        return ST_INVAL;
    }
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    char *target = strtok_r(buf, ",", &save);
    char terr[256];
    if (!target || disc_target(target, out, terr, sizeof terr) != ST_OK) {
        sy_errf(err, errlen, "--discover '%s': expected dns://NAME:PORT or srv://NAME", text);
        return ST_INVAL;
    }
    for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            sy_errf(err, errlen, "--discover '%s': '%s' is not key=value", text, kv);
            return ST_INVAL;
        }
        *eq = '\0';
        const char *v = eq + 1;
        long x = 0;
        int rc = ST_OK;
        if (strcmp(kv, "kv-events-port") == 0) {
            rc = parse_uint(v, 1, 65535, &x);
            out->kv_events_port = (int)x;
        } else if (strcmp(kv, "interval") == 0) {
            rc = parse_uint(v, 1, 86400000, &x);
            out->interval_ms = (uint32_t)x;
        } else if (strcmp(kv, "model") == 0) {
            rc = *v && strlen(v) < sizeof out->models[0] && out->n_models < GW_MAX_MODELS
                     ? ST_OK
                     : ST_INVAL;
            if (rc == ST_OK)
                snprintf(out->models[out->n_models++], sizeof out->models[0], "%s", v);
        } else if (strcmp(kv, "role") == 0) {
            rc = parse_role(v, &out->role);
        } else {
            sy_errf(err, errlen,
                    "--discover '%s': unknown key '%s' (kv-events-port, role, model, interval)",
                    text, kv);
            return ST_INVAL;
        }
        if (rc != ST_OK) {
            sy_errf(err, errlen, "--discover '%s': bad %s '%s'", text, kv, v);
            return ST_INVAL;
        }
    }
    return ST_OK;
}

void gw_disc_spec_endpoint(const gw_disc_spec_t *d, const char *host, int port, gw_ep_spec_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = port;
    out->role = d->role;
    if (d->kv_events_port) {
        bool v6 = strchr(host, ':') != NULL; /* ZMQ wants [v6]:port */
        snprintf(out->kv_events, sizeof out->kv_events, "tcp://%s%s%s:%d", v6 ? "[" : "", host,
                 v6 ? "]" : "", d->kv_events_port);
    }
    for (size_t i = 0; i < d->n_models; i++)
        memcpy(out->models[i], d->models[i], sizeof out->models[i]);
    out->n_models = d->n_models;
}

bool gw_disc_spec_equal(const gw_disc_spec_t *a, const gw_disc_spec_t *b)
{
    if (strcmp(a->target, b->target) != 0 || a->kv_events_port != b->kv_events_port ||
        a->role != b->role || a->interval_ms != b->interval_ms || a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], b->models[i]) != 0)
            return false;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* YAML                                                                                        */

static size_t line_of(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* Copies scalar node n into dst[cap]; ST_INVAL when n is not a non-empty scalar that fits. */
static int scalar_copy(const yaml_node_t *n, char *dst, size_t cap)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length == 0 ||
        n->data.scalar.length >= cap || memchr(n->data.scalar.value, 0, n->data.scalar.length))
        return ST_INVAL;
    memcpy(dst, n->data.scalar.value, n->data.scalar.length);
    dst[n->data.scalar.length] = '\0';
    return ST_OK;
}

static int load_entry(yaml_document_t *doc, yaml_node_t *item, size_t idx, gw_ep_spec_t *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (item->type != YAML_MAPPING_NODE) {
        sy_errf(err, errlen, "line %zu: endpoints[%zu] must be a mapping", line_of(item), idx);
        return ST_INVAL;
    }
    bool have_url = false;
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        char key[32];
        if (scalar_copy(k, key, sizeof key) != ST_OK) {
            sy_errf(err, errlen, "line %zu: endpoints[%zu]: bad key", k ? line_of(k) : 0, idx);
            return ST_INVAL;
        }
        size_t line = line_of(v);
        char val[256];
        if (strcmp(key, "models") == 0) {
            if (v->type != YAML_SEQUENCE_NODE) {
                sy_errf(err, errlen, "line %zu: endpoints[%zu].models must be a list", line, idx);
                return ST_INVAL;
            }
            for (yaml_node_item_t *m = v->data.sequence.items.start; m < v->data.sequence.items.top;
                 m++) {
                yaml_node_t *mn = yaml_document_get_node(doc, *m);
                if (out->n_models == GW_MAX_MODELS ||
                    scalar_copy(mn, out->models[out->n_models], sizeof out->models[0]) != ST_OK) {
                    sy_errf(err, errlen,
                            "line %zu: endpoints[%zu].models: names are non-empty strings, at "
                            "most %d",
                            mn ? line_of(mn) : line, idx, GW_MAX_MODELS);
                    return ST_INVAL;
                }
                out->n_models++;
            }
            continue;
        }
        if (scalar_copy(v, val, sizeof val) != ST_OK) {
            sy_errf(err, errlen, "line %zu: endpoints[%zu].%s must be a non-empty string", line,
                    idx, key);
            return ST_INVAL;
        }
        int rc = ST_OK;
        if (strcmp(key, "url") == 0) {
            rc = parse_url(val, out);
            have_url = rc == ST_OK;
        } else if (strcmp(key, "role") == 0) {
            rc = parse_role(val, &out->role);
        } else if (strcmp(key, "kv_events") == 0) {
            snprintf(out->kv_events, sizeof out->kv_events, "%s", val);
        } else if (strcmp(key, "replay") == 0) {
            snprintf(out->replay, sizeof out->replay, "%s", val);
        } else if (strcmp(key, "metrics_path") == 0) {
            size_t n = strlen(val);
            rc = val[0] == '/' && n < sizeof out->metrics_path ? ST_OK : ST_INVAL;
            if (rc == ST_OK)
                memcpy(out->metrics_path, val, n + 1);
        } else {
            sy_errf(err, errlen,
                    "line %zu: endpoints[%zu]: unknown key '%s' (url, models, role, kv_events, "
                    "replay, metrics_path)",
                    line_of(k), idx, key);
            return ST_INVAL;
        }
        if (rc != ST_OK) {
            sy_errf(err, errlen, "line %zu: endpoints[%zu].%s: bad value '%s'", line, idx, key,
                    val);
            return ST_INVAL;
        }
    }
    if (!have_url) {
        sy_errf(err, errlen, "line %zu: endpoints[%zu]: 'url' is required", line_of(item), idx);
        return ST_INVAL;
    }
    return ST_OK;
}

/* A `models:` list node into models/n. */
static int load_models(yaml_document_t *doc, yaml_node_t *v, const char *what, size_t idx,
                       char (*models)[128], size_t *n, char *err, size_t errlen)
{
    if (v->type != YAML_SEQUENCE_NODE) {
        sy_errf(err, errlen, "line %zu: %s[%zu].models must be a list", line_of(v), what, idx);
        return ST_INVAL;
    }
    for (yaml_node_item_t *m = v->data.sequence.items.start; m < v->data.sequence.items.top; m++) {
        yaml_node_t *mn = yaml_document_get_node(doc, *m);
        if (*n == GW_MAX_MODELS || scalar_copy(mn, models[*n], 128) != ST_OK) {
            sy_errf(err, errlen,
                    "line %zu: %s[%zu].models: names are non-empty strings, at most %d",
                    mn ? line_of(mn) : line_of(v), what, idx, GW_MAX_MODELS);
            return ST_INVAL;
        }
        (*n)++;
    }
    return ST_OK;
}

static int load_disc_entry(yaml_document_t *doc, yaml_node_t *item, size_t idx, gw_disc_spec_t *out,
                           char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (item->type != YAML_MAPPING_NODE) {
        sy_errf(err, errlen, "line %zu: discovery[%zu] must be a mapping", line_of(item), idx);
        return ST_INVAL;
    }
    bool have_target = false;
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        char key[32];
        if (scalar_copy(k, key, sizeof key) != ST_OK || !v) {
            sy_errf(err, errlen, "line %zu: discovery[%zu]: bad key", k ? line_of(k) : 0, idx);
            return ST_INVAL;
        }
        size_t line = line_of(v);
        if (strcmp(key, "models") == 0) {
            int rc =
                load_models(doc, v, "discovery", idx, out->models, &out->n_models, err, errlen);
            if (rc != ST_OK)
                return rc;
            continue;
        }
        char val[256];
        if (scalar_copy(v, val, sizeof val) != ST_OK) {
            sy_errf(err, errlen, "line %zu: discovery[%zu].%s must be a non-empty string", line,
                    idx, key);
            return ST_INVAL;
        }
        int rc = ST_OK;
        long x = 0;
        if (strcmp(key, "target") == 0) {
            char terr[256];
            rc = disc_target(val, out, terr, sizeof terr);
            have_target = rc == ST_OK;
        } else if (strcmp(key, "role") == 0) {
            rc = parse_role(val, &out->role);
        } else if (strcmp(key, "kv_events_port") == 0) {
            rc = parse_uint(val, 1, 65535, &x);
            out->kv_events_port = (int)x;
        } else if (strcmp(key, "interval_ms") == 0) {
            rc = parse_uint(val, 1, 86400000, &x);
            out->interval_ms = (uint32_t)x;
        } else {
            sy_errf(err, errlen,
                    "line %zu: discovery[%zu]: unknown key '%s' (target, kv_events_port, role, "
                    "models, interval_ms)",
                    line_of(k), idx, key);
            return ST_INVAL;
        }
        if (rc != ST_OK) {
            sy_errf(err, errlen, "line %zu: discovery[%zu].%s: bad value '%s'", line, idx, key,
                    val);
            return ST_INVAL;
        }
    }
    if (!have_target) {
        sy_errf(err, errlen, "line %zu: discovery[%zu]: 'target' is required", line_of(item), idx);
        return ST_INVAL;
    }
    return ST_OK;
}

static int load_disc(yaml_document_t *doc, yaml_node_t *list, gw_ep_list_t *out, char *err,
                     size_t errlen)
{
    if (list->type == YAML_SCALAR_NODE && list->data.scalar.length == 0)
        return ST_OK;
    if (list->type != YAML_SEQUENCE_NODE) {
        sy_errf(err, errlen, "line %zu: 'discovery' must be a list", line_of(list));
        return ST_INVAL;
    }
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n > GW_DISC_MAX) {
        sy_errf(err, errlen, "line %zu: too many discovery entries (%zu, at most %d)",
                line_of(list), n, GW_DISC_MAX);
        return ST_INVAL;
    }
    out->disc = n ? sy_calloc(n, sizeof *out->disc) : NULL;
    if (n && !out->disc) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(doc, list->data.sequence.items.start[i]);
        if (!item) {
            sy_errf(err, errlen, "line %zu: discovery[%zu] is empty", line_of(list), i);
            return ST_INVAL;
        }
        int rc = load_disc_entry(doc, item, i, &out->disc[i], err, errlen);
        if (rc != ST_OK)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out->disc[j].target, out->disc[i].target) == 0) {
                sy_errf(err, errlen, "line %zu: discovery[%zu]: %s is listed twice", line_of(item),
                        i, out->disc[i].target);
                return ST_INVAL;
            }
        }
        out->n_disc = i + 1;
    }
    return ST_OK;
}

static int load_root(yaml_document_t *doc, gw_ep_list_t *out, char *err, size_t errlen)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        sy_errf(err, errlen, "line %zu: expected a mapping with 'endpoints'",
                root ? line_of(root) : 1);
        return ST_INVAL;
    }
    yaml_node_t *list = NULL, *disc = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        char key[32];
        bool is_disc = false;
        if (scalar_copy(k, key, sizeof key) != ST_OK ||
            (strcmp(key, "endpoints") != 0 && !(is_disc = strcmp(key, "discovery") == 0))) {
            sy_errf(err, errlen,
                    "line %zu: unknown top-level key (only 'endpoints' and 'discovery')",
                    k ? line_of(k) : 1);
            return ST_INVAL;
        }
        if (is_disc)
            disc = yaml_document_get_node(doc, p->value);
        else
            list = yaml_document_get_node(doc, p->value);
    }
    if (!list && !disc) {
        sy_errf(err, errlen, "line %zu: 'endpoints' is required", line_of(root));
        return ST_INVAL;
    }
    if (disc) {
        int rc = load_disc(doc, disc, out, err, errlen);
        if (rc != ST_OK || !list)
            return rc;
    }
    /* `endpoints:` with nothing after it is a null scalar: an empty list */
    if (list->type == YAML_SCALAR_NODE && list->data.scalar.length == 0)
        return ST_OK;
    if (list->type != YAML_SEQUENCE_NODE) {
        sy_errf(err, errlen, "line %zu: 'endpoints' must be a list", line_of(list));
        return ST_INVAL;
    }
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n > GW_SPEC_MAX) {
        sy_errf(err, errlen, "line %zu: too many endpoints (%zu, at most %d)", line_of(list), n,
                GW_SPEC_MAX);
        return ST_INVAL;
    }
    out->v = n ? sy_calloc(n, sizeof *out->v) : NULL;
    if (n && !out->v) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(doc, list->data.sequence.items.start[i]);
        if (!item) {
            sy_errf(err, errlen, "line %zu: endpoints[%zu] is empty", line_of(list), i);
            return ST_INVAL;
        }
        int rc = load_entry(doc, item, i, &out->v[i], err, errlen);
        if (rc != ST_OK)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out->v[j].host, out->v[i].host) == 0 && out->v[j].port == out->v[i].port) {
                sy_errf(err, errlen, "line %zu: endpoints[%zu]: %s:%d is listed twice",
                        line_of(item), i, out->v[i].host, out->v[i].port);
                return ST_INVAL;
            }
        }
        out->n = i + 1;
    }
    return ST_OK;
}

int gw_ep_list_parse(const char *text, size_t len, gw_ep_list_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = parser.error == YAML_MEMORY_ERROR ? ST_NOMEM : ST_INVAL;
        sy_errf(err, errlen, "line %zu: YAML: %s%s%s", parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = load_root(&doc, out, err, errlen);
    if (rc != ST_OK)
        gw_ep_list_deinit(out);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int gw_ep_list_load_file(const char *path, gw_ep_list_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = ST_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= (16u << 20)) {
                sy_errf(err, errlen, "%s: file too large", path);
                rc = ST_INVAL;
                break;
            }
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = sy_realloc(buf, ncap);
            if (!nb) {
                sy_errf(err, errlen, "out of memory");
                rc = ST_NOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    if (rc == ST_OK && ferror(f)) {
        sy_errf(err, errlen, "%s: read error", path);
        rc = ST_INVAL;
    }
    fclose(f);
    if (rc == ST_OK)
        rc = gw_ep_list_parse(buf ? buf : "", len, out, err, errlen);
    sy_free(buf);
    return rc;
}

void gw_ep_list_deinit(gw_ep_list_t *l)
{
    if (!l)
        return;
    sy_free(l->v);
    sy_free(l->disc);
    memset(l, 0, sizeof *l);
}

bool gw_ep_spec_equal(const gw_ep_spec_t *a, const gw_ep_spec_t *b)
{
    if (strcmp(a->host, b->host) != 0 || a->port != b->port || a->tls != b->tls ||
        a->role != b->role || strcmp(a->kv_events, b->kv_events) != 0 ||
        strcmp(a->replay, b->replay) != 0 || strcmp(a->metrics_path, b->metrics_path) != 0 ||
        a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], b->models[i]) != 0)
            return false;
    return true;
}
