/*
 * sb_config.c - inference-perf YAML workload definitions for `switchyard bench` (see
 * sb_config.h). libyaml document API, as gateway/gw_endpoints.c; every scalar is checked and
 * every error names its line.
 * Thread-safety: reentrant.
 */
#include "bench/sb_config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/status.h"

typedef struct yctx {
    yaml_document_t *doc;
    char *err;
    size_t errlen;
} yctx_t;

static size_t line_of(const yaml_node_t *n)
{
    return n ? n->start_mark.line + 1 : 0;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

static int scalar_str(yctx_t *y, const yaml_node_t *n, const char *what, char *dst, size_t cap)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.length >= cap ||
        memchr(n->data.scalar.value, 0, n->data.scalar.length)) {
        sy_errf(y->err, y->errlen, "line %zu: %s must be a short string", line_of(n), what);
        return ST_INVAL;
    }
    memcpy(dst, n->data.scalar.value, n->data.scalar.length);
    dst[n->data.scalar.length] = '\0';
    return ST_OK;
}

static int scalar_num(yctx_t *y, const yaml_node_t *n, const char *what, double *out)
{
    char tmp[64], *end = NULL;
    if (scalar_str(y, n, what, tmp, sizeof tmp) != ST_OK)
        return ST_INVAL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (!tmp[0] || *end || errno || !isfinite(v) || v < 0) {
        sy_errf(y->err, y->errlen, "line %zu: %s must be a non-negative number, not '%s'",
                line_of(n), what, tmp);
        return ST_INVAL;
    }
    *out = v;
    return ST_OK;
}

static int scalar_bool(yctx_t *y, const yaml_node_t *n, const char *what, bool *out)
{
    char tmp[16];
    if (scalar_str(y, n, what, tmp, sizeof tmp) != ST_OK)
        return ST_INVAL;
    if (!strcmp(tmp, "true") || !strcmp(tmp, "True") || !strcmp(tmp, "yes") || !strcmp(tmp, "1"))
        *out = true;
    else if (!strcmp(tmp, "false") || !strcmp(tmp, "False") || !strcmp(tmp, "no") ||
             !strcmp(tmp, "0"))
        *out = false;
    else {
        sy_errf(y->err, y->errlen, "line %zu: %s must be true or false", line_of(n), what);
        return ST_INVAL;
    }
    return ST_OK;
}

/* Iterates the pairs of mapping map with key k and value v; it names the iterator (nested loops
 * need distinct names). */
#define FOR_PAIRS(y, map, k, v, it)                                                                \
    for (yaml_node_pair_t *it = (map)->data.mapping.pairs.start;                                   \
         it < (map)->data.mapping.pairs.top &&                                                     \
         ((k) = yaml_document_get_node((y)->doc, it->key),                                         \
         (v) = yaml_document_get_node((y)->doc, it->value), 1);                                    \
         it++)

static int need_map(yctx_t *y, const yaml_node_t *n, const char *what)
{
    if (!n || n->type != YAML_MAPPING_NODE) {
        sy_errf(y->err, y->errlen, "line %zu: %s must be a mapping", line_of(n), what);
        return ST_INVAL;
    }
    return ST_OK;
}

static int unknown_key(yctx_t *y, const yaml_node_t *k, const char *section)
{
    char key[64] = "?";
    if (k && k->type == YAML_SCALAR_NODE) {
        size_t l = k->data.scalar.length < sizeof key - 1 ? k->data.scalar.length : sizeof key - 1;
        memcpy(key, k->data.scalar.value, l);
        key[l] = '\0';
    }
    sy_errf(y->err, y->errlen, "line %zu: unknown key '%s' in %s", line_of(k), key, section);
    return ST_INVAL;
}

/* A length: a number, or a distribution mapping. */
static int parse_len(yctx_t *y, const yaml_node_t *n, const char *what, sb_len_dist_t *out)
{
    memset(out, 0, sizeof *out);
    out->min = 1;
    if (n && n->type == YAML_SCALAR_NODE) {
        double v;
        if (scalar_num(y, n, what, &v) != ST_OK)
            return ST_INVAL;
        out->kind = SB_LEN_FIXED;
        out->mean = v;
        return ST_OK;
    }
    if (need_map(y, n, what) != ST_OK)
        return ST_INVAL;
    yaml_node_t *k, *v;
    bool have_type = false;
    double std = 0;
    FOR_PAIRS(y, n, k, v, pi1)
    {
        if (scalar_is(k, "type")) {
            char t[32];
            if (scalar_str(y, v, "type", t, sizeof t) != ST_OK)
                return ST_INVAL;
            have_type = true;
            if (!strcmp(t, "fixed"))
                out->kind = SB_LEN_FIXED;
            else if (!strcmp(t, "normal"))
                out->kind = SB_LEN_NORMAL;
            else if (!strcmp(t, "uniform"))
                out->kind = SB_LEN_UNIFORM;
            else if (!strcmp(t, "lognormal"))
                out->kind = SB_LEN_LOGNORMAL;
            else if (!strcmp(t, "skew_normal"))
                out->kind = SB_LEN_SKEW_NORMAL;
            else {
                sy_errf(y->err, y->errlen,
                        "line %zu: %s.type '%s': fixed, normal, uniform, lognormal or skew_normal",
                        line_of(v), what, t);
                return ST_INVAL;
            }
        } else if (scalar_is(k, "mean")) {
            if (scalar_num(y, v, "mean", &out->mean) != ST_OK)
                return ST_INVAL;
        } else if (scalar_is(k, "std_dev") || scalar_is(k, "std")) {
            if (scalar_num(y, v, "std_dev", &std) != ST_OK)
                return ST_INVAL;
        } else if (scalar_is(k, "skew")) {
            char tmp[64], *end;
            if (scalar_str(y, v, "skew", tmp, sizeof tmp) != ST_OK)
                return ST_INVAL;
            out->skew = strtod(tmp, &end);
            if (*end || !isfinite(out->skew)) {
                sy_errf(y->err, y->errlen, "line %zu: skew must be a number", line_of(v));
                return ST_INVAL;
            }
        } else if (scalar_is(k, "min")) {
            if (scalar_num(y, v, "min", &out->min) != ST_OK)
                return ST_INVAL;
        } else if (scalar_is(k, "max")) {
            if (scalar_num(y, v, "max", &out->max) != ST_OK)
                return ST_INVAL;
        } else {
            return unknown_key(y, k, what);
        }
    }
    out->stddev = std;
    if (!have_type) /* inference-perf's random distributions: {min, max, mean, std} */
        out->kind = std > 0 ? SB_LEN_NORMAL : SB_LEN_FIXED;
    if (out->kind == SB_LEN_UNIFORM && out->max < out->min) {
        sy_errf(y->err, y->errlen, "line %zu: %s: uniform needs min <= max", line_of(n), what);
        return ST_INVAL;
    }
    if (out->kind != SB_LEN_UNIFORM && out->mean <= 0) {
        sy_errf(y->err, y->errlen, "line %zu: %s needs a positive mean", line_of(n), what);
        return ST_INVAL;
    }
    return ST_OK;
}

static int parse_load(yctx_t *y, const yaml_node_t *n, sb_file_cfg_t *o)
{
    if (need_map(y, n, "load") != ST_OK)
        return ST_INVAL;
    o->have_load = true;
    yaml_node_t *k, *v;
    FOR_PAIRS(y, n, k, v, pi2)
    {
        if (scalar_is(k, "type")) {
            char t[32];
            if (scalar_str(y, v, "load.type", t, sizeof t) != ST_OK)
                return ST_INVAL;
            if (!strcmp(t, "constant"))
                o->poisson = false;
            else if (!strcmp(t, "poisson"))
                o->poisson = true;
            else {
                sy_errf(y->err, y->errlen, "line %zu: load.type '%s': constant or poisson",
                        line_of(v), t);
                return ST_INVAL;
            }
        } else if (scalar_is(k, "stages")) {
            if (!v || v->type != YAML_SEQUENCE_NODE) {
                sy_errf(y->err, y->errlen, "line %zu: load.stages must be a list", line_of(v));
                return ST_INVAL;
            }
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *s = yaml_document_get_node(y->doc, *it);
                if (o->n_stages == SB_CFG_MAX_STAGES) {
                    sy_errf(y->err, y->errlen, "line %zu: more than %d stages", line_of(s),
                            SB_CFG_MAX_STAGES);
                    return ST_INVAL;
                }
                if (need_map(y, s, "a load stage") != ST_OK)
                    return ST_INVAL;
                double rate = -1, dur = -1;
                yaml_node_t *sk, *sv;
                FOR_PAIRS(y, s, sk, sv, pi3)
                {
                    if (scalar_is(sk, "rate")) {
                        if (scalar_num(y, sv, "rate", &rate) != ST_OK)
                            return ST_INVAL;
                    } else if (scalar_is(sk, "duration")) {
                        if (scalar_num(y, sv, "duration", &dur) != ST_OK)
                            return ST_INVAL;
                    } else {
                        return unknown_key(y, sk, "a load stage");
                    }
                }
                if (rate <= 0 || dur <= 0) {
                    sy_errf(y->err, y->errlen,
                            "line %zu: a load stage needs a positive rate and duration",
                            line_of(s));
                    return ST_INVAL;
                }
                o->rate[o->n_stages] = rate;
                o->duration[o->n_stages++] = dur;
            }
        } else if (scalar_is(k, "interval") || scalar_is(k, "num_workers") ||
                   scalar_is(k, "worker_max_concurrency") ||
                   scalar_is(k, "worker_max_tcp_connections")) {
            continue; /* inference-perf's own worker machinery */
        } else {
            return unknown_key(y, k, "load");
        }
    }
    return ST_OK;
}

static int parse_shared_prefix(yctx_t *y, const yaml_node_t *n, sb_file_cfg_t *o)
{
    if (need_map(y, n, "data.shared_prefix") != ST_OK)
        return ST_INVAL;
    yaml_node_t *k, *v;
    FOR_PAIRS(y, n, k, v, pi4)
    {
        double d;
        if (scalar_is(k, "num_unique_system_prompts") || scalar_is(k, "num_groups")) {
            if (scalar_num(y, v, "num_unique_system_prompts", &d) != ST_OK)
                return ST_INVAL;
            o->groups = (uint32_t)d;
            o->have_groups = true;
        } else if (scalar_is(k, "num_users_per_system_prompt") ||
                   scalar_is(k, "num_prompts_per_group")) {
            if (scalar_num(y, v, "num_users_per_system_prompt", &d) != ST_OK)
                return ST_INVAL;
            o->prompts_per_group = (uint32_t)d;
            o->have_ppg = true;
        } else if (scalar_is(k, "system_prompt_len")) {
            if (parse_len(y, v, "system_prompt_len", &o->system_len) != ST_OK)
                return ST_INVAL;
            o->have_system_len = true;
        } else if (scalar_is(k, "question_len")) {
            if (parse_len(y, v, "question_len", &o->question_len) != ST_OK)
                return ST_INVAL;
            o->have_question_len = true;
        } else if (scalar_is(k, "output_len")) {
            if (parse_len(y, v, "output_len", &o->output_len) != ST_OK)
                return ST_INVAL;
            o->have_output_len = true;
        } else if (scalar_is(k, "seed")) {
            if (scalar_num(y, v, "seed", &d) != ST_OK)
                return ST_INVAL;
            o->seed = (uint64_t)d;
            o->have_seed = true;
        } else if (scalar_is(k, "enable_multi_turn_chat")) {
            if (scalar_bool(y, v, "enable_multi_turn_chat", &o->multi_turn) != ST_OK)
                return ST_INVAL;
        } else {
            return unknown_key(y, k, "data.shared_prefix");
        }
    }
    if ((o->have_groups && o->groups == 0) || (o->have_ppg && o->prompts_per_group == 0)) {
        sy_errf(y->err, y->errlen,
                "line %zu: data.shared_prefix needs at least one group and "
                "one user per group",
                line_of(n));
        return ST_INVAL;
    }
    return ST_OK;
}

static int parse_data(yctx_t *y, const yaml_node_t *n, sb_file_cfg_t *o)
{
    if (need_map(y, n, "data") != ST_OK)
        return ST_INVAL;
    o->have_data = true;
    o->kind = SB_WL_SHARED_PREFIX;
    yaml_node_t *k, *v;
    FOR_PAIRS(y, n, k, v, pi5)
    {
        if (scalar_is(k, "type")) {
            char t[32];
            if (scalar_str(y, v, "data.type", t, sizeof t) != ST_OK)
                return ST_INVAL;
            if (!strcmp(t, "shared_prefix"))
                o->kind = SB_WL_SHARED_PREFIX;
            else if (!strcmp(t, "random") || !strcmp(t, "synthetic"))
                o->kind = SB_WL_RANDOM;
            else {
                sy_errf(y->err, y->errlen, "line %zu: data.type '%s': shared_prefix or random",
                        line_of(v), t);
                return ST_INVAL;
            }
        } else if (scalar_is(k, "shared_prefix")) {
            if (parse_shared_prefix(y, v, o) != ST_OK)
                return ST_INVAL;
        } else if (scalar_is(k, "input_distribution")) {
            if (parse_len(y, v, "input_distribution", &o->input_len) != ST_OK)
                return ST_INVAL;
            o->have_input_len = true;
        } else if (scalar_is(k, "output_distribution")) {
            if (parse_len(y, v, "output_distribution", &o->output_len) != ST_OK)
                return ST_INVAL;
            o->have_output_len = true;
        } else {
            return unknown_key(y, k, "data");
        }
    }
    return ST_OK;
}

static int parse_root(yctx_t *y, sb_file_cfg_t *o)
{
    yaml_node_t *root = yaml_document_get_root_node(y->doc);
    if (!root) {
        sy_errf(y->err, y->errlen, "empty document");
        return ST_INVAL;
    }
    if (need_map(y, root, "the document") != ST_OK)
        return ST_INVAL;
    yaml_node_t *k, *v;
    FOR_PAIRS(y, root, k, v, pi6)
    {
        if (scalar_is(k, "load")) {
            if (parse_load(y, v, o) != ST_OK)
                return ST_INVAL;
        } else if (scalar_is(k, "api")) {
            if (need_map(y, v, "api") != ST_OK)
                return ST_INVAL;
            yaml_node_t *ak, *av;
            FOR_PAIRS(y, v, ak, av, pi7)
            {
                if (scalar_is(ak, "type")) {
                    char t[32];
                    if (scalar_str(y, av, "api.type", t, sizeof t) != ST_OK)
                        return ST_INVAL;
                    if (!strcmp(t, "completion"))
                        o->chat = false;
                    else if (!strcmp(t, "chat"))
                        o->chat = true;
                    else {
                        sy_errf(y->err, y->errlen, "line %zu: api.type '%s': completion or chat",
                                line_of(av), t);
                        return ST_INVAL;
                    }
                    o->have_api = true;
                } else if (!scalar_is(ak, "streaming") && !scalar_is(ak, "headers")) {
                    return unknown_key(y, ak, "api");
                }
            }
        } else if (scalar_is(k, "server")) {
            if (need_map(y, v, "server") != ST_OK)
                return ST_INVAL;
            yaml_node_t *sk, *sv;
            FOR_PAIRS(y, v, sk, sv, pi8)
            {
                if (scalar_is(sk, "ignore_eos")) {
                    if (scalar_bool(y, sv, "server.ignore_eos", &o->ignore_eos) != ST_OK)
                        return ST_INVAL;
                    o->have_ignore_eos = true;
                }
            }
        } else if (scalar_is(k, "data")) {
            if (parse_data(y, v, o) != ST_OK)
                return ST_INVAL;
        }
        /* tokenizer, metrics, report, storage, ...: other machinery, ignored */
    }
    return ST_OK;
}

int sb_cfg_parse(const char *text, size_t len, sb_file_cfg_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->ignore_eos = true;
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
    yctx_t y = {&doc, err, errlen};
    int rc = parse_root(&y, out);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int sb_cfg_load_file(const char *path, sb_file_cfg_t *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    sy_buf_t b = SY_BUF_INIT;
    char chunk[8192];
    size_t n;
    int rc = ST_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > (4u << 20)) {
            sy_errf(err, errlen, "%s: larger than 4 MiB", path);
            rc = ST_LIMIT;
            break;
        }
        if (sy_buf_append(&b, chunk, n) != ST_OK) {
            rc = ST_NOMEM;
            break;
        }
    }
    fclose(f);
    if (rc == ST_OK) {
        char e2[256];
        rc = sb_cfg_parse(b.data ? b.data : "", b.len, out, e2, sizeof e2);
        if (rc != ST_OK)
            sy_errf(err, errlen, "%s: %s", path, e2);
    }
    sy_buf_deinit(&b);
    return rc;
}
