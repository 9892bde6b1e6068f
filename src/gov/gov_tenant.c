/*
 * gov_tenant.c - tenants, API keys and the tenant file (contract and file format in gov_tenant.h).
 *
 * Design notes.
 *  - A loaded file is a tset_t: the tenants in file order, an open-addressing table from key
 *    digest to tenant (indexed by the digest's first 8 bytes, which are uniform because the lookup
 *    key is itself a SHA-256; load factor <= 1/2, linear probing) and a table from name to tenant
 *    (FNV-1a) used for duplicate detection, gten_find and reload carry-over. A tset_t is never
 *    modified after it is built; a reload builds a new one and swaps.
 *  - Each tenant holds one reference on its glim_state_t; every admitted request holds another
 *    through its lease. Reload: (1) parse the new file into a tset_t (no states yet); (2) give
 *    each new tenant a state: a new reference on the old tenant's state when the name persists,
 *    else a fresh state (the only step that allocates); (3) apply the new limits to the carried
 *    states (cannot fail: the parser checked the bounds); (4) swap and free the old tset_t, which
 *    drops its references. A failure in (1) or (2) frees only the new tset_t, so the old config is
 *    untouched. States of removed tenants are freed by the last glim_release.
 *  - Auth cost is one SHA-256 (a fetched EVP_MD and one reused EVP_MD_CTX; the one-shot EVP
 *    calls would fetch and allocate on every request, ~4x slower) plus one or two probes.
 * Thread-safety: none; one event-loop thread (see the header).
 */
#include "gov/gov_tenant.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/alloc.h"
#include "common/cli.h"
#include "common/log.h"
#include "common/status.h"

#define DIGEST_LEN 32
#define MASK_STARS_MAX 256 /* stars in a masked key (OpenAI prints one per hidden character) */

typedef struct key_slot {
    uint8_t d[DIGEST_LEN];
    uint32_t t; /* tenant index + 1; 0 = empty slot */
} key_slot_t;

struct gten_tenant {
    char name[GTEN_NAME_MAX + 1];
    size_t name_len;
    char **models;     /* owned, each owned; NULL = every model */
    size_t *model_len; /* owned */
    size_t n_models;
    int64_t priority;
    glim_limits_t lim;
    int8_t audit_prompt, audit_response; /* GTEN_AUDIT_* + 1; 0 = not set */
    glim_state_t *st;                    /* one reference; NULL until attached */
    size_t line;
};

/* A pending key while parsing (the table is built once the count is known). */
typedef struct key_ent {
    uint8_t d[DIGEST_LEN];
    uint32_t t; /* tenant index */
    size_t line;
} key_ent_t;

typedef struct tset {
    gten_tenant_t *t; /* owned; n entries */
    size_t n;
    key_slot_t *keys; /* owned; key_mask + 1 slots */
    size_t key_mask;
    size_t n_keys;
    uint32_t *names; /* owned; name_mask + 1 slots of tenant index + 1 */
    size_t name_mask;
} tset_t;

struct gten {
    tset_t *cur; /* owned */
    EVP_MD *md;  /* owned, fetched once */
    EVP_MD_CTX *ctx;
};

/* ------------------------------------------------------------------------------------------ */
/* tenant sets                                                                                 */

static uint64_t name_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t table_size(size_t n)
{
    size_t sz = 8;
    while (sz < 2 * n)
        sz *= 2;
    return sz;
}

static void tset_free(tset_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        gten_tenant_t *t = &s->t[i];
        for (size_t j = 0; j < t->n_models; j++)
            sy_free(t->models[j]);
        sy_free(t->models);
        sy_free(t->model_len);
        glim_state_unref(t->st);
    }
    sy_free(s->t);
    sy_free(s->keys);
    sy_free(s->names);
    sy_free(s);
}

static const gten_tenant_t *tset_find(const tset_t *s, const char *name, size_t len)
{
    if (!s || !s->names)
        return NULL;
    for (size_t i = name_hash(name, len) & s->name_mask;; i = (i + 1) & s->name_mask) {
        uint32_t x = s->names[i];
        if (x == 0)
            return NULL;
        const gten_tenant_t *t = &s->t[x - 1];
        if (t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    }
}

static const gten_tenant_t *tset_key_lookup(const tset_t *s, const uint8_t d[DIGEST_LEN])
{
    uint64_t h;
    memcpy(&h, d, sizeof h);
    for (size_t i = (size_t)h & s->key_mask;; i = (i + 1) & s->key_mask) {
        const key_slot_t *k = &s->keys[i];
        if (k->t == 0)
            return NULL;
        if (CRYPTO_memcmp(k->d, d, DIGEST_LEN) == 0)
            return &s->t[k->t - 1];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* YAML                                                                                        */

typedef struct loader {
    yaml_document_t *doc;
    const char *name; /* file label for messages */
    char *err;
    size_t errlen;
    tset_t *s;
    key_ent_t *keys; /* owned by the loader */
    size_t n_keys, cap_keys;
} loader_t;

static size_t line_of(const yaml_node_t *n)
{
    return n ? n->start_mark.line + 1 : 1;
}

static int fail_at(loader_t *L, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(loader_t *L, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sy_errf(L->err, L->errlen, "%s:%zu: %s", L->name, line_of(n), msg);
    return ST_INVAL;
}

static int fail_nomem(loader_t *L)
{
    sy_errf(L->err, L->errlen, "%s: out of memory", L->name);
    return ST_NOMEM;
}

static yaml_node_t *node(loader_t *L, int id)
{
    return yaml_document_get_node(L->doc, id);
}

/* A scalar holding a value: not a mapping or list, not null (empty plain), no NUL byte. */
static bool is_value(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE &&
           !(n->data.scalar.length == 0 && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) &&
           !memchr(n->data.scalar.value, 0, n->data.scalar.length);
}

static bool is_null(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0 &&
           n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain (unquoted) scalar: numbers must not be strings. */
static bool is_plain(const yaml_node_t *n)
{
    return is_value(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static size_t slen(const yaml_node_t *n)
{
    return n->data.scalar.length;
}

static int get_int(loader_t *L, const yaml_node_t *v, const char *key, long long lo, long long hi,
                   int64_t *out)
{
    char s[32];
    if (!is_plain(v) || slen(v) >= sizeof s)
        return fail_at(L, v, "'%s' must be an integer in %lld..%lld", key, lo, hi);
    memcpy(s, sval(v), slen(v));
    s[slen(v)] = '\0';
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return fail_at(L, v, "'%s' must be an integer in %lld..%lld", key, lo, hi);
    *out = (int64_t)x;
    return ST_OK;
}

/* audit_prompt / audit_response: off | redacted | full, stored as GTEN_AUDIT_* + 1. */
static int get_audit_mode(loader_t *L, const yaml_node_t *v, const char *key, int8_t *out)
{
    static const char *const names[] = {"off", "redacted", "full"};
    if (is_value(v)) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strlen(names[i]) == slen(v) && memcmp(names[i], sval(v), slen(v)) == 0) {
                *out = (int8_t)(i + 1);
                return ST_OK;
            }
        }
    }
    return fail_at(L, v, "'%s' must be off, redacted or full", key);
}

static int get_rate(loader_t *L, const yaml_node_t *v, const char *key, double *out)
{
    char s[48];
    if (is_plain(v) && slen(v) < sizeof s) {
        memcpy(s, sval(v), slen(v));
        s[slen(v)] = '\0';
        char *end = NULL;
        errno = 0;
        double x = strtod(s, &end);
        if (!errno && end != s && !*end && isfinite(x) && x >= GLIM_RPS_MIN && x <= GLIM_RPS_MAX) {
            *out = x;
            return ST_OK;
        }
    }
    return fail_at(L, v, "'%s' must be a number in %g..%g", key, GLIM_RPS_MIN, GLIM_RPS_MAX);
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int add_key(loader_t *L, const yaml_node_t *v, uint32_t tenant)
{
    if (!is_value(v) || slen(v) != 2 * DIGEST_LEN)
        return fail_at(L, v,
                       "'key_sha256' must be 64 hex digits (the SHA-256 of the key; see "
                       "`switchyard apikey hash`)");
    key_ent_t e;
    const char *s = sval(v);
    for (size_t i = 0; i < DIGEST_LEN; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return fail_at(L, v, "'key_sha256': bad hex digit at position %zu",
                           hi < 0 ? 2 * i + 1 : 2 * i + 2);
        e.d[i] = (uint8_t)(hi << 4 | lo);
    }
    if (L->n_keys == GTEN_MAX_KEYS)
        return fail_at(L, v, "more than %d keys in the file", GTEN_MAX_KEYS);
    if (L->n_keys == L->cap_keys) {
        size_t ncap = L->cap_keys ? 2 * L->cap_keys : 64;
        key_ent_t *nk = sy_realloc(L->keys, ncap * sizeof *nk);
        if (!nk)
            return fail_nomem(L);
        L->keys = nk;
        L->cap_keys = ncap;
    }
    e.t = tenant;
    e.line = line_of(v);
    L->keys[L->n_keys++] = e;
    return ST_OK;
}

static int get_keys(loader_t *L, const yaml_node_t *v, uint32_t tenant)
{
    if (v->type == YAML_SCALAR_NODE && !is_null(v))
        return add_key(L, v, tenant);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(L, v, "'key_sha256' must be a hex string or a list of them");
    if (v->data.sequence.items.top == v->data.sequence.items.start)
        return fail_at(L, v, "'key_sha256' is an empty list");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node(L, *it);
        if (!e || e->type != YAML_SCALAR_NODE)
            return fail_at(L, e ? e : v, "'key_sha256' entries must be hex strings");
        int rc = add_key(L, e, tenant);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static bool model_name_ok(const yaml_node_t *e)
{
    if (!is_value(e) || slen(e) == 0 || slen(e) > GTEN_MODEL_MAX)
        return false;
    for (size_t i = 0; i < slen(e); i++)
        if ((unsigned char)sval(e)[i] < 0x20 || sval(e)[i] == 0x7f)
            return false;
    return true;
}

static int get_models(loader_t *L, const yaml_node_t *v, gten_tenant_t *t)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(L, v, "'models' must be a list of model names");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0)
        return fail_at(L, v, "'models' is an empty list (omit the key to allow every model)");
    if (n > GTEN_MAX_MODELS)
        return fail_at(L, v, "more than %d models", GTEN_MAX_MODELS);
    t->models = sy_calloc(n, sizeof *t->models);
    t->model_len = sy_calloc(n, sizeof *t->model_len);
    if (!t->models || !t->model_len)
        return fail_nomem(L);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = node(L, v->data.sequence.items.start[i]);
        if (!e || !model_name_ok(e))
            return fail_at(L, e ? e : v,
                           "'models' entries must be model names (1..%d bytes, no control "
                           "characters)",
                           GTEN_MODEL_MAX);
        for (size_t j = 0; j < i; j++)
            if (t->model_len[j] == slen(e) && memcmp(t->models[j], sval(e), slen(e)) == 0)
                return fail_at(L, e, "model '%s' is listed twice", t->models[j]);
        t->models[i] = sy_strndup(sval(e), slen(e));
        if (!t->models[i])
            return fail_nomem(L);
        t->model_len[i] = slen(e);
        t->n_models = i + 1;
    }
    return ST_OK;
}

bool gten_name_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > GTEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

enum {
    F_NAME = 1 << 0,
    F_KEY = 1 << 1,
    F_MODELS = 1 << 2,
    F_PRIO = 1 << 3,
    F_RPS = 1 << 4,
    F_BURST = 1 << 5,
    F_TPM = 1 << 6,
    F_CONC = 1 << 7,
    F_AUDIT_PROMPT = 1 << 8,
    F_AUDIT_RESPONSE = 1 << 9,
};

static const struct {
    const char *key;
    unsigned flag;
} tenant_keys[] = {
    {"name", F_NAME},
    {"key_sha256", F_KEY},
    {"models", F_MODELS},
    {"priority", F_PRIO},
    {"requests_per_second", F_RPS},
    {"burst", F_BURST},
    {"tokens_per_minute", F_TPM},
    {"max_concurrent", F_CONC},
    {"audit_prompt", F_AUDIT_PROMPT},
    {"audit_response", F_AUDIT_RESPONSE},
};
#define N_TENANT_KEYS (sizeof tenant_keys / sizeof tenant_keys[0])

static int load_tenant(loader_t *L, const yaml_node_t *item, uint32_t idx)
{
    gten_tenant_t *t = &L->s->t[idx];
    t->line = line_of(item);
    if (item->type != YAML_MAPPING_NODE)
        return fail_at(L, item, "tenants[%u] must be a mapping (name, key_sha256, ...)", idx);
    unsigned seen = 0;
    const yaml_node_t *name_node = NULL;
    for (yaml_node_pair_t *pr = item->data.mapping.pairs.start; pr < item->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = node(L, pr->key), *v = node(L, pr->value);
        if (!is_value(k) || !v)
            return fail_at(L, k, "tenants[%u]: bad key", idx);
        unsigned flag = 0;
        const char *key = NULL;
        for (size_t i = 0; i < N_TENANT_KEYS && !flag; i++) {
            if (strlen(tenant_keys[i].key) == slen(k) &&
                memcmp(tenant_keys[i].key, sval(k), slen(k)) == 0) {
                flag = tenant_keys[i].flag;
                key = tenant_keys[i].key;
            }
        }
        if (!flag)
            return fail_at(L, k,
                           "tenants[%u]: unknown key '%.*s' (name, key_sha256, models, priority, "
                           "requests_per_second, burst, tokens_per_minute, max_concurrent, "
                           "audit_prompt, audit_response)",
                           idx, (int)(slen(k) > 64 ? 64 : slen(k)), sval(k));
        if (seen & flag)
            return fail_at(L, k, "tenants[%u]: duplicate key '%s'", idx, key);
        seen |= flag;
        int rc = ST_OK;
        switch (flag) {
        case F_NAME:
            if (!is_value(v) || !gten_name_valid(sval(v), slen(v)))
                return fail_at(L, v,
                               "'name' must be 1..%d characters of A-Z a-z 0-9 . _ - (got %s)",
                               GTEN_NAME_MAX, is_value(v) ? "other characters" : "no string");
            memcpy(t->name, sval(v), slen(v));
            t->name[slen(v)] = '\0';
            t->name_len = slen(v);
            name_node = v;
            break;
        case F_KEY:
            rc = get_keys(L, v, idx);
            break;
        case F_MODELS:
            rc = get_models(L, v, t);
            break;
        case F_PRIO:
            rc = get_int(L, v, key, -GTEN_PRIORITY_MAX, GTEN_PRIORITY_MAX, &t->priority);
            break;
        case F_RPS:
            rc = get_rate(L, v, key, &t->lim.requests_per_second);
            break;
        case F_BURST:
            rc = get_int(L, v, key, 1, GLIM_BURST_MAX, &t->lim.burst);
            break;
        case F_TPM:
            rc = get_int(L, v, key, 1, GLIM_TPM_MAX, &t->lim.tokens_per_minute);
            break;
        case F_AUDIT_PROMPT:
            rc = get_audit_mode(L, v, key, &t->audit_prompt);
            break;
        case F_AUDIT_RESPONSE:
            rc = get_audit_mode(L, v, key, &t->audit_response);
            break;
        case F_CONC:
        default:
            rc = get_int(L, v, key, 1, GLIM_CONCURRENT_MAX, &t->lim.max_concurrent);
            break;
        }
        if (rc != ST_OK)
            return rc;
    }
    if (!(seen & F_NAME))
        return fail_at(L, item, "tenants[%u]: missing 'name'", idx);
    if (!(seen & F_KEY))
        return fail_at(L, item, "tenant '%s': missing 'key_sha256'", t->name);
    if ((seen & F_BURST) && !(seen & F_RPS))
        return fail_at(L, item, "tenant '%s': 'burst' needs 'requests_per_second'", t->name);
    /* names: unique */
    tset_t *s = L->s;
    for (size_t i = name_hash(t->name, t->name_len) & s->name_mask;; i = (i + 1) & s->name_mask) {
        uint32_t x = s->names[i];
        if (x == 0) {
            s->names[i] = idx + 1;
            break;
        }
        const gten_tenant_t *o = &s->t[x - 1];
        if (o->name_len == t->name_len && memcmp(o->name, t->name, t->name_len) == 0)
            return fail_at(L, name_node, "duplicate tenant name '%s' (first at line %zu)", t->name,
                           o->line);
    }
    return ST_OK;
}

/* Builds the key table from the collected keys; refuses a digest listed twice. */
static int build_keys(loader_t *L)
{
    tset_t *s = L->s;
    size_t sz = table_size(L->n_keys);
    s->keys = sy_calloc(sz, sizeof *s->keys);
    if (!s->keys)
        return fail_nomem(L);
    s->key_mask = sz - 1;
    for (size_t k = 0; k < L->n_keys; k++) {
        const key_ent_t *e = &L->keys[k];
        uint64_t h;
        memcpy(&h, e->d, sizeof h);
        for (size_t i = (size_t)h & s->key_mask;; i = (i + 1) & s->key_mask) {
            key_slot_t *slot = &s->keys[i];
            if (slot->t == 0) {
                memcpy(slot->d, e->d, DIGEST_LEN);
                slot->t = e->t + 1;
                break;
            }
            if (memcmp(slot->d, e->d, DIGEST_LEN) == 0) {
                const gten_tenant_t *o = &s->t[slot->t - 1];
                sy_errf(L->err, L->errlen,
                        "%s:%zu: duplicate key_sha256 (already a key of tenant '%s', line %zu)",
                        L->name, e->line, o->name, o->line);
                return ST_INVAL;
            }
        }
    }
    s->n_keys = L->n_keys;
    return ST_OK;
}

static int load_root(loader_t *L)
{
    yaml_node_t *root = yaml_document_get_root_node(L->doc);
    if (!root || is_null(root))
        return fail_at(L, root, "empty file: expected a mapping with a 'tenants' list");
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(L, root, "expected a mapping with a 'tenants' list");
    yaml_node_t *list = NULL;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = node(L, pr->key), *v = node(L, pr->value);
        if (!is_value(k) || !v)
            return fail_at(L, k, "bad key");
        if (slen(k) != 7 || memcmp(sval(k), "tenants", 7) != 0)
            return fail_at(L, k, "unknown top-level key '%.*s' (only 'tenants')",
                           (int)(slen(k) > 64 ? 64 : slen(k)), sval(k));
        if (list)
            return fail_at(L, k, "duplicate key 'tenants'");
        list = v;
    }
    if (!list)
        return fail_at(L, root, "missing 'tenants'");
    if (list->type != YAML_SEQUENCE_NODE)
        return fail_at(L, list, "'tenants' must be a list");
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n > GTEN_MAX_TENANTS)
        return fail_at(L, list, "more than %d tenants", GTEN_MAX_TENANTS);
    tset_t *s = L->s;
    size_t nsz = table_size(n);
    s->t = sy_calloc(n ? n : 1, sizeof *s->t);
    s->names = sy_calloc(nsz, sizeof *s->names);
    if (!s->t || !s->names)
        return fail_nomem(L);
    s->name_mask = nsz - 1;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = node(L, list->data.sequence.items.start[i]);
        if (!item)
            return fail_at(L, list, "a tenants entry is empty");
        s->n = i + 1; /* so tset_free frees its models on failure */
        int rc = load_tenant(L, item, (uint32_t)i);
        if (rc != ST_OK)
            return rc;
    }
    return build_keys(L);
}

/* Parses text into a new tset_t without limiter states. */
static int tset_parse(const char *text, size_t len, const char *name, tset_t **out, char *err,
                      size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc;
    *out = NULL;
    name = name ? name : "tenants";
    if (len > GTEN_FILE_MAX) {
        sy_errf(err, errlen, "%s: file too large (over %u bytes)", name, GTEN_FILE_MAX);
        return ST_INVAL;
    }
    tset_t *s = sy_calloc(1, sizeof *s);
    if (!s) {
        sy_errf(err, errlen, "%s: out of memory", name);
        return ST_NOMEM;
    }
    if (!yaml_parser_initialize(&parser)) {
        sy_free(s);
        sy_errf(err, errlen, "%s: out of memory", name);
        return ST_NOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = parser.error == YAML_MEMORY_ERROR ? ST_NOMEM : ST_INVAL;
        sy_errf(err, errlen, "%s:%zu: YAML: %s%s%s", name, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        sy_free(s);
        return rc;
    }
    loader_t L = {.doc = &doc, .name = name, .err = err, .errlen = errlen, .s = s};
    rc = load_root(&L);
    sy_free(L.keys);
    yaml_document_delete(&doc);
    if (rc == ST_OK) { /* a second document would be ignored silently: refuse it */
        if (!yaml_parser_load(&parser, &doc)) {
            rc = parser.error == YAML_MEMORY_ERROR ? ST_NOMEM : ST_INVAL;
            sy_errf(err, errlen, "%s:%zu: YAML: %s%s%s", name, parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                    parser.context ? parser.context : "");
        } else {
            const yaml_node_t *extra = yaml_document_get_root_node(&doc);
            if (extra) {
                sy_errf(err, errlen, "%s:%zu: a second YAML document (one document only)", name,
                        line_of(extra));
                rc = ST_INVAL;
            }
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&parser);
    if (rc != ST_OK) {
        tset_free(s);
        return rc;
    }
    *out = s;
    return ST_OK;
}

/* Gives every tenant of s its limiter state: a new reference on the state of the tenant of the
 * same name in old (may be NULL), or a fresh one. Allocates only; limits of carried states are
 * applied by tset_apply_limits once nothing can fail. */
static int tset_attach(tset_t *s, const tset_t *old, int64_t now_ns)
{
    for (size_t i = 0; i < s->n; i++) {
        gten_tenant_t *t = &s->t[i];
        const gten_tenant_t *o = tset_find(old, t->name, t->name_len);
        t->st = o ? glim_state_ref(o->st) : glim_state_create(t->name, &t->lim, now_ns);
        if (!t->st)
            return ST_NOMEM;
    }
    return ST_OK;
}

static void tset_apply_limits(tset_t *s, int64_t now_ns)
{
    for (size_t i = 0; i < s->n; i++) {
        int rc = glim_state_set_limits(s->t[i].st, &s->t[i].lim, now_ns);
        SY_ASSERT(rc == ST_OK); /* the parser enforced the bounds */
    }
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = ST_OK;
    char *buf = sy_malloc(GTEN_FILE_MAX + 1);
    if (!buf) {
        sy_errf(err, errlen, "%s: out of memory", path);
        rc = ST_NOMEM;
        goto fail;
    }
    size_t n = fread(buf, 1, GTEN_FILE_MAX + 1, f);
    if (ferror(f)) {
        sy_errf(err, errlen, "%s: read error", path);
        rc = ST_INVAL;
        goto fail;
    }
    if (n > GTEN_FILE_MAX) {
        sy_errf(err, errlen, "%s: file too large (over %u bytes)", path, GTEN_FILE_MAX);
        rc = ST_INVAL;
        goto fail;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return ST_OK;
fail:
    sy_free(buf);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* registry                                                                                    */

int gten_load_text(const char *text, size_t len, const char *name, int64_t now_ns, gten_t **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    gten_t *g = sy_calloc(1, sizeof *g);
    if (!g) {
        sy_errf(err, errlen, "out of memory");
        return ST_NOMEM;
    }
    g->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    g->ctx = EVP_MD_CTX_new();
    if (!g->md || !g->ctx) {
        sy_errf(err, errlen, "OpenSSL: cannot set up SHA-256");
        gten_destroy(g);
        return ST_NOMEM;
    }
    int rc = gten_reload_text(g, text, len, name, now_ns, err, errlen);
    if (rc != ST_OK) {
        gten_destroy(g);
        return rc;
    }
    *out = g;
    return ST_OK;
}

int gten_load_file(const char *path, int64_t now_ns, gten_t **out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = read_file(path, &text, &len, err, errlen);
    if (rc != ST_OK)
        return rc;
    rc = gten_load_text(text, len, path, now_ns, out, err, errlen);
    sy_free(text);
    return rc;
}

int gten_reload_text(gten_t *g, const char *text, size_t len, const char *name, int64_t now_ns,
                     char *err, size_t errlen)
{
    tset_t *s = NULL;
    int rc = tset_parse(text, len, name, &s, err, errlen);
    if (rc != ST_OK)
        return rc;
    rc = tset_attach(s, g->cur, now_ns);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: out of memory", name ? name : "tenants");
        tset_free(s);
        return rc;
    }
    tset_apply_limits(s, now_ns);
    tset_free(g->cur);
    g->cur = s;
    return ST_OK;
}

int gten_reload_file(gten_t *g, const char *path, int64_t now_ns, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, err, errlen);
    if (rc != ST_OK)
        return rc;
    rc = gten_reload_text(g, text, len, path, now_ns, err, errlen);
    sy_free(text);
    return rc;
}

void gten_destroy(gten_t *g)
{
    if (!g)
        return;
    tset_free(g->cur);
    EVP_MD_CTX_free(g->ctx);
    EVP_MD_free(g->md);
    sy_free(g);
}

size_t gten_count(const gten_t *g)
{
    return g->cur ? g->cur->n : 0;
}

const gten_tenant_t *gten_at(const gten_t *g, size_t i)
{
    return g->cur && i < g->cur->n ? &g->cur->t[i] : NULL;
}

const gten_tenant_t *gten_find(const gten_t *g, const char *name, size_t len)
{
    return tset_find(g->cur, name, len);
}

/* ------------------------------------------------------------------------------------------ */
/* authentication                                                                              */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits an Authorization value into its verdict before the key check and the key slice. */
static gten_auth_t bearer_key(const char *hdr, size_t len, const char **key, size_t *klen)
{
    *key = NULL;
    *klen = 0;
    if (!hdr)
        return GTEN_AUTH_MISSING;
    size_t i = 0;
    while (i < len && is_ows(hdr[i]))
        i++;
    while (len > i && is_ows(hdr[len - 1]))
        len--;
    if (i == len)
        return GTEN_AUTH_MISSING;
    size_t s0 = i;
    while (i < len && !is_ows(hdr[i]))
        i++;
    if (i - s0 != 6 || strncasecmp(hdr + s0, "bearer", 6) != 0)
        return GTEN_AUTH_SCHEME;
    while (i < len && is_ows(hdr[i]))
        i++;
    if (i == len)
        return GTEN_AUTH_MISSING;
    *key = hdr + i;
    *klen = len - i;
    return GTEN_AUTH_OK;
}

gten_auth_t gten_authenticate(gten_t *g, const char *hdr, size_t len, const gten_tenant_t **out)
{
    const char *key;
    size_t klen;
    *out = NULL;
    gten_auth_t a = bearer_key(hdr, len, &key, &klen);
    if (a != GTEN_AUTH_OK)
        return a;
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (!g->cur || !EVP_DigestInit_ex2(g->ctx, g->md, NULL) ||
        !EVP_DigestUpdate(g->ctx, key, klen) || !EVP_DigestFinal_ex(g->ctx, d, &dl) ||
        dl != DIGEST_LEN)
        return GTEN_AUTH_WRONG_KEY; /* fail closed */
    const gten_tenant_t *t = tset_key_lookup(g->cur, d);
    if (!t)
        return GTEN_AUTH_WRONG_KEY;
    *out = t;
    return GTEN_AUTH_OK;
}

#define BEARER_HINT                                                                                \
    "You need to provide your API key in an Authorization header using Bearer auth (i.e. "         \
    "Authorization: Bearer YOUR_KEY)."

int gten_error_401(gten_auth_t reason, const char *hdr, size_t len, sy_buf_t *out)
{
    int rc = ST_OK;
    switch (reason) {
    case GTEN_AUTH_MISSING:
        rc = sy_buf_append_str(
            out, "{\"error\":{\"message\":\"You didn't provide an API key. " BEARER_HINT
                 "\",\"type\":\"invalid_request_error\",\"param\":null,"
                 "\"code\":null}}");
        break;
    case GTEN_AUTH_SCHEME:
        rc = sy_buf_append_str(out, "{\"error\":{\"message\":\"Malformed Authorization header: "
                                    "the scheme must be Bearer. " BEARER_HINT
                                    "\",\"type\":\"invalid_request_error\",\"param\":null,"
                                    "\"code\":null}}");
        break;
    case GTEN_AUTH_WRONG_KEY: {
        const char *key = NULL;
        size_t kl = 0;
        bearer_key(hdr, len, &key, &kl);
        rc |= sy_buf_append_str(out, "{\"error\":{\"message\":\"Incorrect API key provided: ");
        size_t show_head = kl > 12 ? 8 : 0, show_tail = kl > 12 ? 4 : 0;
        size_t stars = kl - show_head - show_tail;
        if (stars > MASK_STARS_MAX)
            stars = MASK_STARS_MAX;
        rc |= sy_buf_append_json_str(out, key ? key : "", show_head);
        for (size_t i = 0; i < stars && rc == ST_OK; i++)
            rc |= sy_buf_append_char(out, '*');
        rc |= sy_buf_append_json_str(out, key ? key + kl - show_tail : "", show_tail);
        rc |= sy_buf_append_str(out, ".\",\"type\":\"invalid_request_error\",\"param\":null,"
                                     "\"code\":\"invalid_api_key\"}}");
        break;
    }
    case GTEN_AUTH_OK:
    default:
        return ST_INVAL;
    }
    return rc ? ST_NOMEM : ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* tenants                                                                                     */

const char *gten_tenant_name(const gten_tenant_t *t)
{
    return t->name;
}

int64_t gten_tenant_priority(const gten_tenant_t *t)
{
    return t->priority;
}

int gten_tenant_audit_prompt(const gten_tenant_t *t)
{
    return t->audit_prompt - 1;
}

int gten_tenant_audit_response(const gten_tenant_t *t)
{
    return t->audit_response - 1;
}

const glim_limits_t *gten_tenant_limits(const gten_tenant_t *t)
{
    return &t->lim;
}

glim_state_t *gten_tenant_limiter(const gten_tenant_t *t)
{
    return t->st;
}

size_t gten_tenant_line(const gten_tenant_t *t)
{
    return t->line;
}

bool gten_tenant_allows_model(const gten_tenant_t *t, const char *model, size_t len)
{
    if (!t->models)
        return true;
    for (size_t i = 0; i < t->n_models; i++)
        if (t->model_len[i] == len && memcmp(t->models[i], model, len) == 0)
            return true;
    return false;
}

size_t gten_tenant_model_count(const gten_tenant_t *t)
{
    return t->n_models;
}

const char *gten_tenant_model(const gten_tenant_t *t, size_t i)
{
    return i < t->n_models ? t->models[i] : NULL;
}

int gten_error_model(const char *model, size_t len, sy_buf_t *out)
{
    int rc = sy_buf_append_str(out, "{\"error\":{\"message\":\"The model `");
    rc |= sy_buf_append_json_str(out, model ? model : "", model ? len : 0);
    rc |= sy_buf_append_str(out, "` does not exist or you do not have access to it.\","
                                 "\"type\":\"invalid_request_error\",\"param\":null,"
                                 "\"code\":\"model_not_found\"}}");
    return rc ? ST_NOMEM : ST_OK;
}

int gten_admit(const gten_tenant_t *t, int64_t now_ns, int64_t prompt_tokens, int64_t max_tokens,
               glim_lease_t *lease, glim_result_t *res)
{
    return glim_admit(t->st, now_ns, prompt_tokens, max_tokens, lease, res);
}

/* ------------------------------------------------------------------------------------------ */
/* keys and `switchyard apikey`                                                                */

static void base64url(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
}

int gten_key_generate(char *out, size_t cap)
{
    uint8_t raw[32];
    if (!out || cap < GTEN_KEY_LEN + 1)
        return ST_INVAL;
    if (RAND_bytes(raw, sizeof raw) != 1)
        return ST_STATE;
    memcpy(out, GTEN_KEY_PREFIX, sizeof GTEN_KEY_PREFIX - 1);
    base64url(raw, sizeof raw, out + sizeof GTEN_KEY_PREFIX - 1);
    OPENSSL_cleanse(raw, sizeof raw);
    return ST_OK;
}

int gten_key_sha256_hex(const char *key, size_t len, char hex[65])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (!EVP_Digest(key, len, d, &dl, EVP_sha256(), NULL) || dl != DIGEST_LEN)
        return ST_NOMEM;
    for (size_t i = 0; i < DIGEST_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[64] = '\0';
    return ST_OK;
}

static int apikey_new(int argc, char **argv)
{
    const char *name = "new-tenant";
    const cli_opt_t opts[] = {
        {"name", "NAME", CLI_STRING, &name, "tenant name for the YAML snippet", "new-tenant"},
    };
    cli_spec_t spec = {
        .prog = "switchyard apikey new",
        .summary = "Generates an API key (sy- + 32 random bytes, base64url) and prints it once, "
                   "with the tenant entry for the --api-keys file: switchyard keeps only the "
                   "key's SHA-256 (key_sha256), so store the key now.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    int done = cli_parse_main(&spec, argc, argv, NULL, NULL);
    if (done >= 0)
        return done;
    if (!gten_name_valid(name, strlen(name))) {
        fprintf(stderr,
                "switchyard apikey new: --name must be 1..%d characters of A-Z a-z 0-9 . "
                "_ -\n",
                GTEN_NAME_MAX);
        return 2;
    }
    char key[GTEN_KEY_LEN + 1], hex[65];
    if (gten_key_generate(key, sizeof key) != ST_OK ||
        gten_key_sha256_hex(key, strlen(key), hex) != ST_OK) {
        fprintf(stderr, "switchyard apikey new: cannot generate a key (OpenSSL RAND_bytes)\n");
        return 1;
    }
    printf("# API key of tenant '%s' (shown once; switchyard stores only its SHA-256):\n%s\n"
           "# Add this entry under 'tenants:' in the --api-keys file, then reload (SIGHUP):\n"
           "  - name: %s\n"
           "    key_sha256: %s\n",
           name, key, name, hex);
    OPENSSL_cleanse(key, sizeof key);
    return 0;
}

static int apikey_hash(int argc, char **argv)
{
    const char *pos[1] = {NULL};
    size_t n_pos = 0;
    cli_spec_t spec = {
        .prog = "switchyard apikey hash",
        .summary = "Prints the hex SHA-256 of KEY, the key_sha256 value of the --api-keys file. "
                   "Without KEY (or with -) the key is the first line of stdin, which keeps it "
                   "out of the shell history and the process list.",
        .max_positional = 1,
        .positional = "[KEY]",
    };
    int done = cli_parse_main(&spec, argc, argv, pos, &n_pos);
    if (done >= 0)
        return done;
    char line[8192];
    const char *key = n_pos ? pos[0] : "-";
    size_t kl;
    if (strcmp(key, "-") == 0) {
        if (!fgets(line, sizeof line, stdin)) {
            fprintf(stderr, "switchyard apikey hash: no key on stdin\n");
            return 1;
        }
        kl = strcspn(line, "\r\n");
        line[kl] = '\0';
        key = line;
    }
    kl = strlen(key);
    if (kl == 0) {
        fprintf(stderr, "switchyard apikey hash: the key is empty\n");
        return 1;
    }
    char hex[65];
    if (gten_key_sha256_hex(key, kl, hex) != ST_OK) {
        fprintf(stderr, "switchyard apikey hash: SHA-256 failed\n");
        return 1;
    }
    printf("%s\n", hex);
    OPENSSL_cleanse(line, sizeof line);
    return 0;
}

int gten_apikey_main(int argc, char **argv)
{
    const char *usage = "usage: switchyard apikey new [--name NAME]   generate a key\n"
                        "       switchyard apikey hash [KEY]          print SHA-256 of KEY (or "
                        "stdin)\n";
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "new") == 0)
        return apikey_new(argc - 1, argv + 1);
    if (strcmp(argv[1], "hash") == 0)
        return apikey_hash(argc - 1, argv + 1);
    fprintf(stderr, "switchyard apikey: unknown subcommand '%s'\n", argv[1]);
    fputs(usage, stderr);
    return 2;
}
