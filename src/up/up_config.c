/*
 * up_config.c - the cluster description of `switchyard up` (format in up_config.h): the built-in
 * default, the YAML file (loaded as a libyaml document and walked node by node, like the gateway's
 * endpoints file in gw_endpoints.c; every error names the file and its 1-based line) and the argv
 * of each child.
 * Thread-safety: pure; any thread.
 */
#include "up/up_config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/status.h"
#include "engine/sim_exec.h"

#define UP_FILE_MAX (1u << 20) /* a cluster file is small */
#define UP_MAX_ARGS 256        /* extra arguments per entry */

const char *up_role_name(up_role_t r)
{
    switch (r) {
    case UP_ROLE_PREFILL:
        return "prefill";
    case UP_ROLE_DECODE:
        return "decode";
    case UP_ROLE_BOTH:
    default:
        return "both";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* string vectors                                                                              */

int up_strv_push(up_strv_t *s, const char *str)
{
    if (s->n + 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        char **nv = sy_realloc(s->v, ncap * sizeof *nv);
        if (!nv)
            return ST_NOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    char *d = sy_strdup(str);
    if (!d)
        return ST_NOMEM;
    s->v[s->n++] = d;
    s->v[s->n] = NULL;
    return ST_OK;
}

int up_strv_extend(up_strv_t *s, const up_strv_t *src)
{
    for (size_t i = 0; i < src->n; i++)
        if (up_strv_push(s, src->v[i]) != ST_OK)
            return ST_NOMEM;
    return ST_OK;
}

void up_strv_deinit(up_strv_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        sy_free(s->v[i]);
    sy_free(s->v);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------------------------ */
/* defaults                                                                                    */

static void engine_spec_default(up_engine_spec_t *e)
{
    memset(e, 0, sizeof *e);
    e->count = 1;
    e->sim = true;
    snprintf(e->sim_profile, sizeof e->sim_profile, "%s", UP_DEFAULT_PROFILE);
    e->sim_speed = 1.0;
    e->role = UP_ROLE_BOTH;
    e->kv_events = true;
}

/* Everything but the engine groups. */
static void config_base_default(up_config_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "%s", UP_DEFAULT_MODEL);
    c->ready_timeout = UP_DEFAULT_READY_TIMEOUT;
    c->gateway_port = UP_DEFAULT_PORT;
    snprintf(c->scheduler, sizeof c->scheduler, "default");
}

int up_config_default(up_config_t *c)
{
    config_base_default(c);
    c->engines = sy_calloc(1, sizeof *c->engines);
    if (!c->engines)
        return ST_NOMEM;
    engine_spec_default(&c->engines[0]);
    c->engines[0].count = UP_DEFAULT_ENGINES;
    c->n_engines = 1;
    return ST_OK;
}

void up_config_deinit(up_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_engines; i++)
        up_strv_deinit(&c->engines[i].args);
    sy_free(c->engines);
    up_strv_deinit(&c->gateway_args);
    memset(c, 0, sizeof *c);
}

size_t up_config_engine_count(const up_config_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_engines; i++)
        n += c->engines[i].count;
    return n;
}

const up_engine_spec_t *up_config_engine_spec(const up_config_t *c, size_t i)
{
    for (size_t g = 0; g < c->n_engines; g++) {
        if (i < c->engines[g].count)
            return &c->engines[g];
        i -= c->engines[g].count;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* YAML                                                                                        */

typedef struct parse_ctx {
    yaml_document_t *doc;
    const char *name;     /* file name for messages */
    const char *base_dir; /* prefix of relative paths, or NULL */
    char *err;
    size_t errlen;
} parse_ctx_t;

static size_t line_of(const yaml_node_t *n)
{
    return n ? n->start_mark.line + 1 : 1;
}

static int fail_at(parse_ctx_t *p, const yaml_node_t *n, const char *fmt, const char *a,
                   const char *b)
{
    char msg[384];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    sy_errf(p->err, p->errlen, "%s:%zu: %s", p->name, line_of(n), msg);
    return ST_INVAL;
}

/* A scalar node holding a value: not a mapping or list, not an empty plain scalar (null). */
static bool is_value(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE &&
           !(n->data.scalar.length == 0 && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) &&
           !memchr(n->data.scalar.value, 0, n->data.scalar.length);
}

/* Copies scalar n into dst[cap]; ST_INVAL when n is not a non-empty scalar that fits. */
static int scalar_copy(const yaml_node_t *n, char *dst, size_t cap)
{
    if (!is_value(n) || n->data.scalar.length == 0 || n->data.scalar.length >= cap)
        return ST_INVAL;
    memcpy(dst, n->data.scalar.value, n->data.scalar.length);
    dst[n->data.scalar.length] = '\0';
    return ST_OK;
}

static int get_str(parse_ctx_t *p, const yaml_node_t *v, const char *key, char *dst, size_t cap)
{
    if (scalar_copy(v, dst, cap) != ST_OK)
        return fail_at(p, v, "'%s' must be a non-empty string", key, NULL);
    return ST_OK;
}

/* A path value: relative paths are taken from base_dir. */
static int get_path(parse_ctx_t *p, const yaml_node_t *v, const char *key, char *dst, size_t cap)
{
    char tmp[UP_PATH_MAX];
    int rc = get_str(p, v, key, tmp, sizeof tmp);
    if (rc != ST_OK)
        return rc;
    int n = tmp[0] != '/' && p->base_dir && p->base_dir[0]
                ? snprintf(dst, cap, "%s/%s", p->base_dir, tmp)
                : snprintf(dst, cap, "%s", tmp);
    if (n < 0 || (size_t)n >= cap)
        return fail_at(p, v, "'%s': path too long", key, NULL);
    return ST_OK;
}

static int get_bool(parse_ctx_t *p, const yaml_node_t *v, const char *key, bool *out)
{
    char s[16];
    if (scalar_copy(v, s, sizeof s) != ST_OK || cli_parse_bool(s, out) != ST_OK)
        return fail_at(p, v, "'%s' must be true or false", key, NULL);
    return ST_OK;
}

/* A decimal integer in [lo, hi]. */
static int get_long(parse_ctx_t *p, const yaml_node_t *v, const char *key, long lo, long hi,
                    long *out)
{
    char s[32], range[64];
    snprintf(range, sizeof range, "%ld..%ld", lo, hi);
    char *end = NULL;
    if (scalar_copy(v, s, sizeof s) != ST_OK)
        return fail_at(p, v, "'%s' must be an integer in %s", key, range);
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return fail_at(p, v, "'%s' must be an integer in %s", key, range);
    *out = x;
    return ST_OK;
}

/* A finite number >= 0. */
static int get_nonneg(parse_ctx_t *p, const yaml_node_t *v, const char *key, double *out)
{
    char s[32];
    char *end = NULL;
    if (scalar_copy(v, s, sizeof s) != ST_OK)
        return fail_at(p, v, "'%s' must be a number >= 0", key, NULL);
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x) || x < 0)
        return fail_at(p, v, "'%s' must be a number >= 0", key, NULL);
    *out = x;
    return ST_OK;
}

/* `args: [...]`: a list of strings (empty strings allowed); `args:` alone is an empty list. */
static int get_args(parse_ctx_t *p, const yaml_node_t *v, up_strv_t *out)
{
    if (v && v->type == YAML_SCALAR_NODE && !is_value(v))
        return ST_OK;
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail_at(p, v, "'args' must be a list of strings", NULL, NULL);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *a = yaml_document_get_node(p->doc, *it);
        if (!a || a->type != YAML_SCALAR_NODE ||
            memchr(a->data.scalar.value, 0, a->data.scalar.length))
            return fail_at(p, a ? a : v, "'args' must be a list of strings", NULL, NULL);
        if (out->n == UP_MAX_ARGS)
            return fail_at(p, a, "too many 'args'", NULL, NULL);
        char *s = sy_strndup((const char *)a->data.scalar.value, a->data.scalar.length);
        int rc = s ? up_strv_push(out, s) : ST_NOMEM;
        sy_free(s);
        if (rc != ST_OK) {
            sy_errf(p->err, p->errlen, "out of memory");
            return ST_NOMEM;
        }
    }
    return ST_OK;
}

static int get_role(parse_ctx_t *p, const yaml_node_t *v, up_role_t *out)
{
    char s[16];
    if (scalar_copy(v, s, sizeof s) == ST_OK) {
        for (int r = UP_ROLE_BOTH; r <= UP_ROLE_DECODE; r++) {
            if (strcmp(s, up_role_name((up_role_t)r)) == 0) {
                *out = (up_role_t)r;
                return ST_OK;
            }
        }
    }
    return fail_at(p, v, "'role' must be both, prefill or decode", NULL, NULL);
}

/* Iterates the pairs of mapping node m (pair_key reads each pair). */
#define FOR_PAIRS(m, pair)                                                                         \
    for (yaml_node_pair_t *pair = (m)->data.mapping.pairs.start;                                   \
         pair < (m)->data.mapping.pairs.top; pair++)

static int pair_key(parse_ctx_t *p, yaml_node_pair_t *pair, char *key, size_t cap, yaml_node_t **k,
                    yaml_node_t **v)
{
    *k = yaml_document_get_node(p->doc, pair->key);
    *v = yaml_document_get_node(p->doc, pair->value);
    if (scalar_copy(*k, key, cap) != ST_OK || !*v)
        return fail_at(p, *k, "bad key", NULL, NULL);
    return ST_OK;
}

static int load_engine(parse_ctx_t *p, yaml_node_t *item, size_t idx, up_engine_spec_t *e)
{
    char what[48];
    snprintf(what, sizeof what, "engines[%zu]", idx);
    engine_spec_default(e);
    e->line = line_of(item);
    if (item->type != YAML_MAPPING_NODE)
        return fail_at(p, item, "%s must be a mapping", what, NULL);
    bool sim_given = false, sim_val = true, sim_opts = false;
    FOR_PAIRS(item, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        int rc = pair_key(p, pair, key, sizeof key, &k, &v);
        long x = 0;
        if (rc != ST_OK)
            return rc;
        if (strcmp(key, "count") == 0) {
            rc = get_long(p, v, key, 1, UP_MAX_ENGINES, &x);
            e->count = (unsigned)x;
        } else if (strcmp(key, "sim") == 0) {
            rc = get_bool(p, v, key, &sim_val);
            sim_given = true;
        } else if (strcmp(key, "model") == 0) {
            rc = get_path(p, v, key, e->model_path, sizeof e->model_path);
        } else if (strcmp(key, "sim_profile") == 0) {
            rc = get_str(p, v, key, e->sim_profile, sizeof e->sim_profile);
            if (rc == ST_OK && !sim_profile_find(e->sim_profile))
                return fail_at(p, v, "unknown sim_profile '%s' (known: %s)", e->sim_profile,
                               sim_profile_names());
            sim_opts = true;
        } else if (strcmp(key, "sim_speed") == 0) {
            rc = get_nonneg(p, v, key, &e->sim_speed);
            sim_opts = true;
        } else if (strcmp(key, "role") == 0) {
            rc = get_role(p, v, &e->role);
        } else if (strcmp(key, "kv_events") == 0) {
            rc = get_bool(p, v, key, &e->kv_events);
        } else if (strcmp(key, "args") == 0) {
            rc = get_args(p, v, &e->args);
        } else {
            return fail_at(p, k,
                           "%s: unknown key '%s' (count, sim, model, sim_profile, sim_speed, role, "
                           "kv_events, args)",
                           what, key);
        }
        if (rc != ST_OK)
            return rc;
    }
    bool has_model = e->model_path[0] != '\0';
    if (sim_given && sim_val && has_model)
        return fail_at(p, item, "%s: 'sim: true' and 'model' exclude each other", what, NULL);
    if (sim_given && !sim_val && !has_model)
        return fail_at(p, item, "%s: 'sim: false' needs a 'model' file", what, NULL);
    e->sim = !has_model;
    if (!e->sim && sim_opts)
        return fail_at(p, item, "%s: sim_profile and sim_speed apply to sim engines only", what,
                       NULL);
    return ST_OK;
}

static int load_engines(parse_ctx_t *p, yaml_node_t *list, up_config_t *c)
{
    if (!list || list->type != YAML_SEQUENCE_NODE)
        return fail_at(p, list, "'engines' must be a list", NULL, NULL);
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0)
        return fail_at(p, list, "'engines' is empty: a cluster needs at least one engine", NULL,
                       NULL);
    if (n > UP_MAX_ENGINES)
        return fail_at(p, list, "too many engine groups", NULL, NULL);
    up_engine_spec_t *v = sy_calloc(n, sizeof *v);
    if (!v) {
        sy_errf(p->err, p->errlen, "out of memory");
        return ST_NOMEM;
    }
    /* replaces the default group */
    for (size_t i = 0; i < c->n_engines; i++)
        up_strv_deinit(&c->engines[i].args);
    sy_free(c->engines);
    c->engines = v;
    c->n_engines = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, list->data.sequence.items.start[i]);
        if (!item)
            return fail_at(p, list, "an engines entry is empty", NULL, NULL);
        c->n_engines = i + 1; /* so deinit frees its args on failure */
        int rc = load_engine(p, item, i, &v[i]);
        if (rc != ST_OK)
            return rc;
        total += v[i].count;
        if (total > UP_MAX_ENGINES) {
            char lim[16];
            snprintf(lim, sizeof lim, "%d", UP_MAX_ENGINES);
            return fail_at(p, item, "more than %s engines in all", lim, NULL);
        }
    }
    return ST_OK;
}

static int load_gateway(parse_ctx_t *p, yaml_node_t *m, up_config_t *c)
{
    if (m->type == YAML_SCALAR_NODE && !is_value(m))
        return ST_OK; /* `gateway:` alone */
    if (m->type != YAML_MAPPING_NODE)
        return fail_at(p, m, "'gateway' must be a mapping", NULL, NULL);
    FOR_PAIRS(m, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        int rc = pair_key(p, pair, key, sizeof key, &k, &v);
        long x = 0;
        if (rc != ST_OK)
            return rc;
        if (strcmp(key, "port") == 0) {
            rc = get_long(p, v, key, 0, 65535, &x);
            c->gateway_port = (int)x;
        } else if (strcmp(key, "scheduler") == 0) {
            rc = get_str(p, v, key, c->scheduler, sizeof c->scheduler);
            c->scheduler_set = true;
        } else if (strcmp(key, "config") == 0) {
            rc = get_path(p, v, key, c->gateway_config, sizeof c->gateway_config);
        } else if (strcmp(key, "tokenizer") == 0) {
            char t[UP_PATH_MAX];
            rc = get_str(p, v, key, t, sizeof t);
            if (rc == ST_OK && (strcmp(t, "builtin") == 0 || strcmp(t, "none") == 0))
                snprintf(c->tokenizer, sizeof c->tokenizer, "%s", t);
            else if (rc == ST_OK)
                rc = get_path(p, v, key, c->tokenizer, sizeof c->tokenizer);
        } else if (strcmp(key, "args") == 0) {
            rc = get_args(p, v, &c->gateway_args);
        } else {
            return fail_at(p, k,
                           "gateway: unknown key '%s' (port, scheduler, config, tokenizer, args)",
                           key, NULL);
        }
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static int load_root(parse_ctx_t *p, up_config_t *c)
{
    yaml_node_t *root = yaml_document_get_root_node(p->doc);
    if (!root) /* an empty file: the built-in cluster */
        return ST_OK;
    if (root->type == YAML_SCALAR_NODE && !is_value(root))
        return ST_OK;
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(p, root, "expected a mapping (model, gateway, engines, ...)", NULL, NULL);
    FOR_PAIRS(root, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        int rc = pair_key(p, pair, key, sizeof key, &k, &v);
        long x = 0;
        if (rc != ST_OK)
            return rc;
        if (strcmp(key, "model") == 0) {
            rc = get_str(p, v, key, c->model, sizeof c->model);
            if (rc == ST_OK && strchr(c->model, ','))
                return fail_at(p, v, "'model' is one name (no commas)", NULL, NULL);
        } else if (strcmp(key, "hash_seed") == 0) {
            rc = get_str(p, v, key, c->hash_seed, sizeof c->hash_seed);
        } else if (strcmp(key, "block_size") == 0) {
            rc = get_long(p, v, key, 1, 1024, &x);
            c->block_size = (unsigned)x;
        } else if (strcmp(key, "ready_timeout") == 0) {
            rc = get_nonneg(p, v, key, &c->ready_timeout);
            if (rc == ST_OK && c->ready_timeout <= 0)
                return fail_at(p, v, "'ready_timeout' must be > 0 seconds", NULL, NULL);
        } else if (strcmp(key, "gateway") == 0) {
            rc = load_gateway(p, v, c);
        } else if (strcmp(key, "engines") == 0) {
            rc = load_engines(p, v, c);
        } else {
            return fail_at(
                p, k,
                "unknown top-level key '%s' (model, hash_seed, block_size, ready_timeout, "
                "gateway, engines)",
                key, NULL);
        }
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

int up_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                    up_config_t *c, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    name = name ? name : "cluster";
    int rc = up_config_default(c);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "out of memory");
        return rc;
    }
    if (!yaml_parser_initialize(&parser)) {
        sy_errf(err, errlen, "out of memory");
        up_config_deinit(c);
        return ST_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = parser.error == YAML_MEMORY_ERROR ? ST_NOMEM : ST_INVAL;
        sy_errf(err, errlen, "%s:%zu: YAML: %s%s%s", name, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        up_config_deinit(c);
        return rc;
    }
    parse_ctx_t p = {.doc = &doc, .name = name, .base_dir = base_dir, .err = err, .errlen = errlen};
    rc = load_root(&p, c);
    if (rc != ST_OK) {
        up_config_deinit(c);
    } else if (!c->scheduler_set) {
        /* engines with P/D roles: the gateway's P/D profile handler by default */
        for (size_t i = 0; i < c->n_engines; i++)
            if (c->engines[i].role != UP_ROLE_BOTH)
                snprintf(c->scheduler, sizeof c->scheduler, "pd");
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int up_config_load_file(const char *path, up_config_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    int rc = ST_OK;
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    buf = sy_malloc(UP_FILE_MAX + 1);
    if (!buf) {
        sy_errf(err, errlen, "out of memory");
        rc = ST_NOMEM;
        goto fail;
    }
    size_t len = fread(buf, 1, UP_FILE_MAX + 1, f);
    if (ferror(f)) {
        sy_errf(err, errlen, "%s: read error", path);
        rc = ST_INVAL;
        goto fail;
    }
    if (len > UP_FILE_MAX) {
        sy_errf(err, errlen, "%s: file too large (over %u bytes)", path, UP_FILE_MAX);
        rc = ST_INVAL;
        goto fail;
    }
    /* relative paths in the file are relative to its directory */
    char dir[UP_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof dir) {
        size_t dl = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, dl);
        dir[dl] = '\0';
    } else {
        dir[0] = '\0';
    }
    rc = up_config_parse(buf, len, path, dir[0] ? dir : NULL, c, err, errlen);
fail:
    sy_free(buf);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* argv                                                                                        */

void up_engine_name(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, "engine%zu", i + 1);
}

/* An argv under construction with a sticky error: after the first failure every push is a
 * no-op and rc keeps the failure. */
typedef struct argb {
    up_strv_t *out;
    int rc;
} argb_t;

static void arg(argb_t *b, const char *s)
{
    if (b->rc == ST_OK)
        b->rc = up_strv_push(b->out, s);
}

static void argf(argb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(argb_t *b, const char *fmt, ...)
{
    sy_buf_t s = SY_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    int rc = sy_buf_vappendf(&s, fmt, ap);
    va_end(ap);
    if (rc != ST_OK && b->rc == ST_OK)
        b->rc = rc;
    arg(b, s.data ? s.data : "");
    sy_buf_deinit(&s);
}

int up_engine_argv(const up_config_t *c, size_t i, const char *exe, const up_addr_t *a,
                   up_strv_t *out)
{
    const up_engine_spec_t *e = up_config_engine_spec(c, i);
    if (!e)
        return ST_INVAL;
    char name[32];
    up_engine_name(i, name, sizeof name);
    argb_t b = {.out = out, .rc = ST_OK};
    arg(&b, exe);
    arg(&b, "engine");
    if (e->sim) {
        arg(&b, "--sim");
        arg(&b, "--sim-profile");
        arg(&b, e->sim_profile);
        arg(&b, "--sim-speed");
        argf(&b, "%g", e->sim_speed);
    } else {
        arg(&b, "--model");
        arg(&b, e->model_path);
    }
    arg(&b, "--host");
    arg(&b, "127.0.0.1");
    arg(&b, "--port");
    argf(&b, "%d", a->port);
    arg(&b, "--served-model-name");
    arg(&b, c->model);
    if (c->block_size) {
        arg(&b, "--block-size");
        argf(&b, "%u", c->block_size);
    }
    if (e->kv_events && a->kv_port) {
        /* vLLM's KVEventsConfig; a "*" host makes the publisher bind (kv_events.h) */
        sy_buf_t j = SY_BUF_INIT;
        int rc = sy_buf_appendf(&j,
                                "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\","
                                "\"endpoint\":\"tcp://*:%d\",\"topic\":\"kv@%s@",
                                a->kv_port, name);
        if (rc == ST_OK)
            rc = sy_buf_append_json_str(&j, c->model, strlen(c->model));
        if (rc == ST_OK)
            rc = sy_buf_append_str(&j, "\"}");
        if (rc != ST_OK && b.rc == ST_OK)
            b.rc = rc;
        arg(&b, "--kv-events-config");
        arg(&b, j.data ? j.data : "");
        sy_buf_deinit(&j);
    }
    /* a prefill or decode engine takes part in P/D: the TcpConnector on a free port (the
     * engine reports it in kv_transfer_params), unless its args configure one */
    bool own_kvt = false;
    for (size_t k = 0; k < e->args.n; k++)
        own_kvt |= strcmp(e->args.v[k], "--kv-transfer-config") == 0;
    if (e->role != UP_ROLE_BOTH && !own_kvt) {
        arg(&b, "--kv-transfer-config");
        arg(&b, "{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\",\"kv_port\":0,"
                "\"kv_ip\":\"127.0.0.1\"}");
    }
    for (size_t k = 0; k < e->args.n; k++)
        arg(&b, e->args.v[k]);
    return b.rc;
}

int up_gateway_argv(const up_config_t *c, const char *exe, int port, const up_addr_t *engines,
                    up_strv_t *out)
{
    argb_t b = {.out = out, .rc = ST_OK};
    arg(&b, exe);
    arg(&b, "gateway");
    arg(&b, "--host");
    arg(&b, "127.0.0.1");
    arg(&b, "--port");
    argf(&b, "%d", port);
    if (c->gateway_config[0]) {
        arg(&b, "--config");
        arg(&b, c->gateway_config);
    } else {
        arg(&b, "--scheduler");
        arg(&b, c->scheduler);
    }
    /* the gateway validates and hashes with the engines' vocabulary: a real model's own */
    const char *tok = c->tokenizer[0] ? c->tokenizer : NULL;
    for (size_t g = 0; !tok && g < c->n_engines; g++)
        if (!c->engines[g].sim)
            tok = c->engines[g].model_path;
    if (tok) {
        arg(&b, "--tokenizer");
        arg(&b, tok);
    }
    if (c->block_size) {
        arg(&b, "--block-size");
        argf(&b, "%u", c->block_size);
    }
    size_t n = up_config_engine_count(c);
    for (size_t i = 0; i < n; i++) {
        const up_engine_spec_t *e = up_config_engine_spec(c, i);
        char kv[64] = "", role[32] = "";
        if (e->kv_events && engines[i].kv_port)
            snprintf(kv, sizeof kv, ",kv-events=tcp://127.0.0.1:%d", engines[i].kv_port);
        if (e->role != UP_ROLE_BOTH)
            snprintf(role, sizeof role, ",role=%s", up_role_name(e->role));
        arg(&b, "--endpoint");
        argf(&b, "http://127.0.0.1:%d%s%s", engines[i].port, kv, role);
    }
    for (size_t k = 0; k < c->gateway_args.n; k++)
        arg(&b, c->gateway_args.v[k]);
    return b.rc;
}
