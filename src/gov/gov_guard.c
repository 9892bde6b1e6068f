/*
 * gov_guard.c - guardrails (gov_guard.h): the YAML loader, the merge of rule sets into one policy
 * per (tenant, model), the prompt check, the incremental output scanner and a micro-benchmark.
 *
 * Load: the file is read as a libyaml document and walked node by node (as up_config.c does);
 * `settings:` is read first because the match limits and JIT choice apply to every pattern. Each
 * rule set (defaults and every `rules:` entry) is parsed into a ruleset_t that owns its compiled
 * patterns. Then the policy keys are enumerated - (*,*), every rule's own key, and every
 * (T,*) x (*,M) combination - and each key gets the merged policy of its layers (gov_guard.h gives
 * the order). Policies only point at ruleset entries, so a pattern is compiled once however many
 * policies use it. The policies are sorted by (tenant, model) and looked up with bsearch.
 *
 * Prompt check: block-action patterns run first (pcre2_match per pattern, stop at the first hit).
 * Then a k-way sweep over "span sources" - the enabled PII detectors and the mask/redact patterns,
 * each an iterator that yields its next match - visits matches in text order, merges overlaps and
 * writes the masked and audit copies lazily, so a clean prompt allocates nothing and every source
 * scans the text once. The PCRE2 match block is per thread (pthread key), one ovector pair, shared
 * by all patterns of all loaded files.
 *
 * Output scanner: a fixed buffer holds the last window+1 bytes of output and up to GGD_OUT_SLICE
 * new bytes; each step rescans the buffer (the first byte is left context only), holds back
 * matches that touch the end of the data, then keeps the new tail.
 * Thread-safety: see gov_guard.h (immutable after load; match blocks per thread).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "gov/gov_guard.h"

#include <errno.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/status.h"
#include "gov/gov_pii.h"

#define KEY_MAX 128 /* tenant and model names */
#define WILD "*"

static const char *const pii_default_mask[GPII_N] = {"[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]"};
#define PATTERN_DEFAULT_MASK "[REDACTED]"

/* ------------------------------------------------------------------------------------------ */
/* types                                                                                       */

/* One deny pattern of a rule set; owns its compiled code. */
typedef struct deny_ent {
    char name[GGD_NAME_MAX];
    char mask[GGD_MASK_MAX];
    ggd_action_t action; /* GGD_ACT_OFF: removes an inherited pattern of this name */
    pcre2_code *code;    /* NULL when action is off */
    size_t line;
} deny_ent_t;

typedef struct pii_cfg {
    bool set; /* the layer says something about this detector */
    ggd_action_t action;
    char mask[GGD_MASK_MAX];
} pii_cfg_t;

/* One rule set as written in the file (defaults, or one `rules:` entry). */
typedef struct ruleset {
    char tenant[KEY_MAX];
    char model[KEY_MAX];
    bool inherit;
    size_t line;
    bool has_max_prompt, has_max_tokens, has_window;
    uint64_t max_prompt, max_tokens;
    uint32_t window;
    deny_ent_t *deny; /* owned */
    size_t n_deny;
    pii_cfg_t pii[GPII_N];
    deny_ent_t *odeny; /* owned: output patterns */
    size_t n_odeny;
    pii_cfg_t opii[GPII_N];
} ruleset_t;

struct ggd_policy {
    const ggd_t *g;
    const char *tenant; /* borrowed from a ruleset or WILD */
    const char *model;
    uint64_t max_prompt, max_tokens;
    const deny_ent_t **block; /* owned array: block-action prompt patterns, in order */
    size_t n_block;
    const deny_ent_t **span; /* owned array: mask/redact prompt patterns */
    size_t n_span;
    pii_cfg_t pii[GPII_N];
    const deny_ent_t **odeny; /* owned array: output patterns (all block) */
    size_t n_odeny;
    bool opii[GPII_N];
    uint32_t window;
};

struct ggd {
    ggd_settings_t settings;
    ggd_external_t external;
    pcre2_general_context *gctx;
    pcre2_compile_context *cctx;
    pcre2_match_context *mctx;
    ruleset_t *sets; /* owned: sets[0] is the defaults */
    size_t n_sets;
    ggd_policy_t *policies; /* owned, sorted by (tenant, model) */
    size_t n_policies;
    size_t n_patterns, n_jit;
    size_t n_entries; /* deny entries of all rule sets (bounded by GGD_MAX_PATTERNS) */
};

const char *ggd_action_name(ggd_action_t a)
{
    switch (a) {
    case GGD_ACT_REDACT:
        return "redact";
    case GGD_ACT_MASK:
        return "mask";
    case GGD_ACT_BLOCK:
        return "block";
    case GGD_ACT_OFF:
    default:
        return "off";
    }
}

static int action_parse(const char *s)
{
    for (int a = GGD_ACT_OFF; a <= GGD_ACT_BLOCK; a++)
        if (strcmp(s, ggd_action_name((ggd_action_t)a)) == 0)
            return a;
    return -1;
}

/* PCRE2 allocations go through the project allocator (counted, failure-injectable). */
static void *pc_malloc(PCRE2_SIZE n, void *ud)
{
    (void)ud;
    return sy_malloc(n);
}
static void pc_free(void *p, void *ud)
{
    (void)ud;
    sy_free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* per-thread match block                                                                      */

static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static bool md_key_ok;

static void md_destroy(void *p)
{
    pcre2_match_data_free(p);
}

static void md_key_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
}

/* The calling thread's match block (one ovector pair: only the whole match is needed), or NULL on
 * ENOMEM. Created with libc malloc: it outlives any one ggd_t. */
static pcre2_match_data *md_get(void)
{
    pthread_once(&md_once, md_key_init);
    if (!md_key_ok)
        return NULL;
    pcre2_match_data *md = pthread_getspecific(md_key);
    if (md)
        return md;
    md = pcre2_match_data_create(1, NULL);
    if (md && pthread_setspecific(md_key, md) != 0) {
        pcre2_match_data_free(md);
        md = NULL;
    }
    return md;
}

enum { M_NONE = 0, M_HIT = 1, M_LIMIT = 2, M_NOMEM = 3 };

/* Runs code over t[0..len) from off. M_HIT with [*s,*e), M_NONE, M_LIMIT (a resource limit or
 * another matching error: treated per on_limit) or M_NOMEM. */
static int re_match(const ggd_t *g, const pcre2_code *code, const char *t, size_t len, size_t off,
                    uint32_t opts, pcre2_match_data *md, size_t *s, size_t *e)
{
    int rc = pcre2_match(code, (PCRE2_SPTR)t, len, off, opts, md, g->mctx);
    if (rc >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        *s = ov[0];
        *e = ov[1];
        return M_HIT;
    }
    if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL)
        return M_NONE;
    if (rc == PCRE2_ERROR_NOMEMORY)
        return M_NOMEM;
    return M_LIMIT; /* MATCHLIMIT, DEPTHLIMIT, HEAPLIMIT, JIT_STACKLIMIT, ... */
}

/* The first offset after p that starts a UTF-8 character (or is len). */
static size_t next_char(const char *t, size_t len, size_t p)
{
    p++;
    while (p < len && ((unsigned char)t[p] & 0xC0) == 0x80)
        p++;
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* YAML helpers                                                                                */

typedef struct pctx {
    yaml_document_t *doc;
    const char *name;
    ggd_t *g;
    char *err;
    size_t errlen;
} pctx_t;

static size_t line_of(const yaml_node_t *n)
{
    return n ? n->start_mark.line + 1 : 1;
}

static int fail_at(pctx_t *p, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(pctx_t *p, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sy_errf(p->err, p->errlen, "%s:%zu: %s", p->name, line_of(n), msg);
    return ST_INVAL;
}

static int fail_nomem(pctx_t *p)
{
    sy_errf(p->err, p->errlen, "%s: out of memory", p->name);
    return ST_NOMEM;
}

/* A scalar holding a value (not a mapping/list, not a plain empty scalar, no NUL). */
static bool is_value(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE &&
           !(n->data.scalar.length == 0 && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) &&
           !memchr(n->data.scalar.value, 0, n->data.scalar.length);
}

static bool is_null(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE && !is_value(n) && n->data.scalar.length == 0;
}

static int scalar_copy(const yaml_node_t *n, char *dst, size_t cap)
{
    if (!is_value(n) || n->data.scalar.length == 0 || n->data.scalar.length >= cap)
        return ST_INVAL;
    memcpy(dst, n->data.scalar.value, n->data.scalar.length);
    dst[n->data.scalar.length] = '\0';
    return ST_OK;
}

static int get_str(pctx_t *p, const yaml_node_t *v, const char *key, char *dst, size_t cap)
{
    if (scalar_copy(v, dst, cap) != ST_OK)
        return fail_at(p, v, "'%s' must be a non-empty string of at most %zu bytes", key, cap - 1);
    return ST_OK;
}

static int get_bool(pctx_t *p, const yaml_node_t *v, const char *key, bool *out)
{
    char s[16];
    if (scalar_copy(v, s, sizeof s) != ST_OK || cli_parse_bool(s, out) != ST_OK)
        return fail_at(p, v, "'%s' must be true or false", key);
    return ST_OK;
}

static int get_u64(pctx_t *p, const yaml_node_t *v, const char *key, uint64_t lo, uint64_t hi,
                   uint64_t *out)
{
    char s[32];
    char *end = NULL;
    if (scalar_copy(v, s, sizeof s) == ST_OK && s[0] >= '0' && s[0] <= '9') {
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (!errno && end != s && !*end && x >= lo && x <= hi) {
            *out = x;
            return ST_OK;
        }
    }
    return fail_at(p, v, "'%s' must be an integer in %llu..%llu", key, (unsigned long long)lo,
                   (unsigned long long)hi);
}

static int get_u32(pctx_t *p, const yaml_node_t *v, const char *key, uint32_t lo, uint32_t hi,
                   uint32_t *out)
{
    uint64_t x = 0;
    int rc = get_u64(p, v, key, lo, hi, &x);
    if (rc == ST_OK)
        *out = (uint32_t)x;
    return rc;
}

#define FOR_PAIRS(m, pair)                                                                         \
    for (yaml_node_pair_t *pair = (m)->data.mapping.pairs.start;                                   \
         pair < (m)->data.mapping.pairs.top; pair++)

static int pair_key(pctx_t *p, yaml_node_pair_t *pair, char *key, size_t cap, yaml_node_t **k,
                    yaml_node_t **v)
{
    *k = yaml_document_get_node(p->doc, pair->key);
    *v = yaml_document_get_node(p->doc, pair->value);
    if (scalar_copy(*k, key, cap) != ST_OK || !*v)
        return fail_at(p, *k, "bad key (keys are short strings)");
    return ST_OK;
}

/* Rejects a key that appears twice in mapping m (libyaml keeps both). */
static int check_dup_keys(pctx_t *p, yaml_node_t *m)
{
    /* no section has more than 10 keys: a longer mapping has unknown or repeated ones (and the
     * pairwise check below must stay cheap) */
    size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    if (n > 16)
        return fail_at(p, m, "mapping with %zu keys: unknown or repeated keys", n);
    FOR_PAIRS(m, a)
    {
        yaml_node_t *ka = yaml_document_get_node(p->doc, a->key);
        for (yaml_node_pair_t *b = a + 1; b < m->data.mapping.pairs.top; b++) {
            yaml_node_t *kb = yaml_document_get_node(p->doc, b->key);
            if (is_value(ka) && is_value(kb) && ka->data.scalar.length == kb->data.scalar.length &&
                memcmp(ka->data.scalar.value, kb->data.scalar.value, ka->data.scalar.length) == 0)
                return fail_at(p, kb, "duplicate key '%.*s'", (int)kb->data.scalar.length,
                               (const char *)kb->data.scalar.value);
        }
    }
    return ST_OK;
}

static bool name_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

/* A mask text: printable, no control characters. */
static int get_mask(pctx_t *p, const yaml_node_t *v, char *dst)
{
    if (scalar_copy(v, dst, GGD_MASK_MAX) != ST_OK)
        return fail_at(p, v, "'mask' must be a non-empty string of at most %d bytes",
                       GGD_MASK_MAX - 1);
    for (const char *c = dst; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return fail_at(p, v, "'mask' must not contain control characters");
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* rule sets                                                                                   */

static void ruleset_deinit(ruleset_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_deny; i++)
        pcre2_code_free(r->deny[i].code);
    for (size_t i = 0; i < r->n_odeny; i++)
        pcre2_code_free(r->odeny[i].code);
    sy_free(r->deny);
    sy_free(r->odeny);
    memset(r, 0, sizeof *r);
}

static int compile_pattern(pctx_t *p, const yaml_node_t *v, const char *name, bool caseless,
                           pcre2_code **out)
{
    const ggd_t *g = p->g;
    if (g->n_patterns >= GGD_MAX_PATTERNS)
        return fail_at(p, v, "too many patterns in the file (at most %d)", GGD_MAX_PATTERNS);
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_NEVER_BACKSLASH_C;
    if (caseless)
        opts |= PCRE2_CASELESS;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)v->data.scalar.value, v->data.scalar.length, opts,
                                     &ecode, &eoff, g->cctx);
    if (!code) {
        if (ecode == PCRE2_ERROR_NOMEMORY)
            return fail_nomem(p);
        PCRE2_UCHAR msg[160];
        if (pcre2_get_error_message(ecode, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", ecode);
        return fail_at(p, v, "pattern '%s': bad regex at offset %zu: %s", name, (size_t)eoff,
                       (const char *)msg);
    }
    uint32_t minlen = 0;
    if (pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &minlen) != 0 || minlen == 0) {
        pcre2_code_free(code);
        return fail_at(p, v, "pattern '%s' can match an empty string", name);
    }
    p->g->n_patterns++;
    if (g->settings.jit && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0)
        p->g->n_jit++;
    *out = code;
    return ST_OK;
}

/* One entry of a `deny:` list. output: only block/off allowed. */
static int load_deny_ent(pctx_t *p, yaml_node_t *item, bool output, deny_ent_t *d)
{
    memset(d, 0, sizeof *d);
    d->line = line_of(item);
    d->action = GGD_ACT_BLOCK;
    snprintf(d->mask, sizeof d->mask, "%s", PATTERN_DEFAULT_MASK);
    if (item->type != YAML_MAPPING_NODE)
        return fail_at(p, item, "a deny entry must be a mapping (name, pattern, action, mask)");
    int rc = check_dup_keys(p, item);
    if (rc != ST_OK)
        return rc;
    yaml_node_t *pat = NULL, *name_node = NULL;
    bool caseless = false;
    FOR_PAIRS(item, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &v)) != ST_OK)
            return rc;
        if (strcmp(key, "name") == 0) {
            rc = get_str(p, v, key, d->name, sizeof d->name);
            if (rc == ST_OK && !name_ok(d->name))
                return fail_at(p, v, "'name' may hold only letters, digits and _ - . :");
            name_node = v;
        } else if (strcmp(key, "pattern") == 0) {
            if (!is_value(v))
                return fail_at(p, v, "'pattern' must be a non-empty string");
            pat = v;
        } else if (strcmp(key, "action") == 0) {
            char s[16];
            int a = scalar_copy(v, s, sizeof s) == ST_OK ? action_parse(s) : -1;
            if (a < 0)
                return fail_at(p, v, "unknown action (block, mask, redact or off)");
            if (output && a != GGD_ACT_BLOCK && a != GGD_ACT_OFF)
                return fail_at(p, v, "output patterns take action block or off");
            d->action = (ggd_action_t)a;
        } else if (strcmp(key, "mask") == 0) {
            rc = get_mask(p, v, d->mask);
        } else if (strcmp(key, "caseless") == 0) {
            rc = get_bool(p, v, key, &caseless);
        } else {
            return fail_at(p, k, "deny: unknown key '%s' (name, pattern, action, mask, caseless)",
                           key);
        }
        if (rc != ST_OK)
            return rc;
    }
    if (!name_node)
        return fail_at(p, item, "a deny entry needs a 'name'");
    if (d->action == GGD_ACT_OFF)
        return ST_OK; /* removes an inherited pattern; a pattern, if given, is ignored */
    if (!pat)
        return fail_at(p, item, "deny '%s' needs a 'pattern'", d->name);
    return compile_pattern(p, pat, d->name, caseless, &d->code);
}

static int load_deny_list(pctx_t *p, yaml_node_t *v, bool output, deny_ent_t **out, size_t *n_out)
{
    if (is_null(v))
        return ST_OK;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail_at(p, v, "'deny' must be a list of {name, pattern, ...}");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > GGD_MAX_RULES)
        return fail_at(p, v, "too many deny patterns (at most %d)", GGD_MAX_RULES);
    if (n == 0)
        return ST_OK;
    if (p->g->n_entries + n > GGD_MAX_PATTERNS)
        return fail_at(p, v, "too many deny entries in the file (at most %d)", GGD_MAX_PATTERNS);
    p->g->n_entries += n;
    deny_ent_t *d = sy_calloc(n, sizeof *d);
    if (!d)
        return fail_nomem(p);
    *out = d;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        if (!item)
            return fail_at(p, v, "empty deny entry");
        *n_out = i + 1; /* so deinit frees what was compiled */
        int rc = load_deny_ent(p, item, output, &d[i]);
        if (rc != ST_OK)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d[j].name, d[i].name) == 0)
                return fail_at(p, item, "duplicate deny name '%s' (first on line %zu)", d[i].name,
                               d[j].line);
    }
    return ST_OK;
}

/* `pii:` mapping: detector -> action, or detector -> {action, mask}. */
static int load_pii(pctx_t *p, yaml_node_t *v, bool output, pii_cfg_t *pii)
{
    if (is_null(v))
        return ST_OK;
    if (v->type != YAML_MAPPING_NODE)
        return fail_at(p, v, "'pii' must be a mapping (email, phone, card, iban)");
    int rc = check_dup_keys(p, v);
    if (rc != ST_OK)
        return rc;
    FOR_PAIRS(v, pair)
    {
        char key[32], s[16];
        yaml_node_t *k, *val;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &val)) != ST_OK)
            return rc;
        int kind = gpii_kind_parse(key);
        if (kind < 0)
            return fail_at(p, k, "pii: unknown detector '%s' (email, phone, card, iban)", key);
        pii_cfg_t *c = &pii[kind];
        c->set = true;
        snprintf(c->mask, sizeof c->mask, "%s", pii_default_mask[kind]);
        yaml_node_t *act = val;
        if (val->type == YAML_MAPPING_NODE) {
            if ((rc = check_dup_keys(p, val)) != ST_OK)
                return rc;
            act = NULL;
            FOR_PAIRS(val, q)
            {
                char k2[32];
                yaml_node_t *kk, *vv;
                if ((rc = pair_key(p, q, k2, sizeof k2, &kk, &vv)) != ST_OK)
                    return rc;
                if (strcmp(k2, "action") == 0)
                    act = vv;
                else if (strcmp(k2, "mask") == 0 && !output)
                    rc = get_mask(p, vv, c->mask);
                else
                    return fail_at(p, kk, "pii %s: unknown key '%s' (%s)", key, k2,
                                   output ? "action" : "action, mask");
                if (rc != ST_OK)
                    return rc;
            }
            if (!act)
                return fail_at(p, val, "pii %s: needs an 'action'", key);
        }
        int a = scalar_copy(act, s, sizeof s) == ST_OK ? action_parse(s) : -1;
        if (a < 0)
            return fail_at(p, act, "pii %s: unknown action (block, mask, redact or off)", key);
        if (output && a != GGD_ACT_BLOCK && a != GGD_ACT_OFF)
            return fail_at(p, act, "output pii %s: action must be block or off", key);
        c->action = (ggd_action_t)a;
    }
    return ST_OK;
}

static int load_output(pctx_t *p, yaml_node_t *v, ruleset_t *r)
{
    if (is_null(v))
        return ST_OK;
    if (v->type != YAML_MAPPING_NODE)
        return fail_at(p, v, "'output' must be a mapping (deny, pii, window_bytes)");
    int rc = check_dup_keys(p, v);
    if (rc != ST_OK)
        return rc;
    FOR_PAIRS(v, pair)
    {
        char key[32];
        yaml_node_t *k, *val;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &val)) != ST_OK)
            return rc;
        if (strcmp(key, "deny") == 0)
            rc = load_deny_list(p, val, true, &r->odeny, &r->n_odeny);
        else if (strcmp(key, "pii") == 0)
            rc = load_pii(p, val, true, r->opii);
        else if (strcmp(key, "window_bytes") == 0) {
            rc = get_u32(p, val, key, GGD_MIN_WINDOW, GGD_MAX_WINDOW, &r->window);
            r->has_window = true;
        } else
            return fail_at(p, k, "output: unknown key '%s' (deny, pii, window_bytes)", key);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* A rule set mapping; is_rule: a `rules:` entry (tenant, model, inherit allowed). */
static int load_ruleset(pctx_t *p, yaml_node_t *m, bool is_rule, ruleset_t *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->tenant, sizeof r->tenant, WILD);
    snprintf(r->model, sizeof r->model, WILD);
    r->inherit = true;
    r->line = line_of(m);
    if (!is_rule && (!m || is_null(m)))
        return ST_OK;
    if (m->type != YAML_MAPPING_NODE)
        return fail_at(p, m, "%s must be a mapping", is_rule ? "a rules entry" : "'defaults'");
    int rc = check_dup_keys(p, m);
    if (rc != ST_OK)
        return rc;
    FOR_PAIRS(m, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &v)) != ST_OK)
            return rc;
        if (is_rule && strcmp(key, "tenant") == 0) {
            rc = get_str(p, v, key, r->tenant, sizeof r->tenant);
        } else if (is_rule && strcmp(key, "model") == 0) {
            rc = get_str(p, v, key, r->model, sizeof r->model);
        } else if (is_rule && strcmp(key, "inherit") == 0) {
            rc = get_bool(p, v, key, &r->inherit);
        } else if (strcmp(key, "max_prompt_tokens") == 0) {
            rc = get_u64(p, v, key, 0, UINT32_MAX, &r->max_prompt);
            r->has_max_prompt = true;
        } else if (strcmp(key, "max_tokens") == 0) {
            rc = get_u64(p, v, key, 0, UINT32_MAX, &r->max_tokens);
            r->has_max_tokens = true;
        } else if (strcmp(key, "deny") == 0) {
            rc = load_deny_list(p, v, false, &r->deny, &r->n_deny);
        } else if (strcmp(key, "pii") == 0) {
            rc = load_pii(p, v, false, r->pii);
        } else if (strcmp(key, "output") == 0) {
            rc = load_output(p, v, r);
        } else {
            return fail_at(
                p, k, "%sunknown key '%s' (%smax_prompt_tokens, max_tokens, deny, pii, output)",
                is_rule ? "rules: " : "defaults: ", key, is_rule ? "tenant, model, inherit, " : "");
        }
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static int load_settings(pctx_t *p, yaml_node_t *m)
{
    ggd_settings_t *s = &p->g->settings;
    if (is_null(m))
        return ST_OK;
    if (m->type != YAML_MAPPING_NODE)
        return fail_at(p, m, "'settings' must be a mapping");
    int rc = check_dup_keys(p, m);
    if (rc != ST_OK)
        return rc;
    FOR_PAIRS(m, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &v)) != ST_OK)
            return rc;
        if (strcmp(key, "match_limit") == 0) {
            rc = get_u32(p, v, key, 1, UINT32_MAX, &s->match_limit);
        } else if (strcmp(key, "depth_limit") == 0) {
            rc = get_u32(p, v, key, 1, UINT32_MAX, &s->depth_limit);
        } else if (strcmp(key, "heap_limit_kb") == 0) {
            rc = get_u32(p, v, key, 1, UINT32_MAX, &s->heap_limit_kb);
        } else if (strcmp(key, "on_limit") == 0) {
            char a[16];
            if (scalar_copy(v, a, sizeof a) != ST_OK ||
                (strcmp(a, "block") != 0 && strcmp(a, "allow") != 0))
                return fail_at(p, v, "'on_limit' must be block or allow");
            s->block_on_limit = strcmp(a, "block") == 0;
        } else if (strcmp(key, "jit") == 0) {
            rc = get_bool(p, v, key, &s->jit);
        } else {
            return fail_at(p, k,
                           "settings: unknown key '%s' (match_limit, depth_limit, heap_limit_kb, "
                           "on_limit, jit)",
                           key);
        }
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static bool url_ok(const char *u)
{
    const char *h = strncmp(u, "http://", 7) == 0    ? u + 7
                    : strncmp(u, "https://", 8) == 0 ? u + 8
                                                     : NULL;
    if (!h || !*h || *h == '/' || *h == ':')
        return false;
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return false;
    return true;
}

static int load_external(pctx_t *p, yaml_node_t *m)
{
    ggd_external_t *x = &p->g->external;
    if (is_null(m))
        return ST_OK;
    if (m->type != YAML_MAPPING_NODE)
        return fail_at(p, m, "'external' must be a mapping (url, timeout_ms, on_error)");
    int rc = check_dup_keys(p, m);
    if (rc != ST_OK)
        return rc;
    FOR_PAIRS(m, pair)
    {
        char key[32];
        yaml_node_t *k, *v;
        if ((rc = pair_key(p, pair, key, sizeof key, &k, &v)) != ST_OK)
            return rc;
        if (strcmp(key, "url") == 0) {
            rc = get_str(p, v, key, x->url, sizeof x->url);
            if (rc == ST_OK && !url_ok(x->url))
                return fail_at(p, v, "'url' must be an http:// or https:// URL with a host");
        } else if (strcmp(key, "timeout_ms") == 0) {
            rc = get_u32(p, v, key, 1, 60000, &x->timeout_ms);
        } else if (strcmp(key, "on_error") == 0) {
            char a[16];
            if (scalar_copy(v, a, sizeof a) != ST_OK ||
                (strcmp(a, "allow") != 0 && strcmp(a, "deny") != 0))
                return fail_at(p, v, "'on_error' must be allow or deny");
            x->deny_on_error = strcmp(a, "deny") == 0;
        } else {
            return fail_at(p, k, "external: unknown key '%s' (url, timeout_ms, on_error)", key);
        }
        if (rc != ST_OK)
            return rc;
    }
    if (!x->url[0])
        return fail_at(p, m, "'external' needs a 'url'");
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* merging                                                                                     */

/* The working state of one merge (heap: up to GGD_MAX_RULES entries per list). */
typedef struct merge {
    const deny_ent_t *deny[GGD_MAX_RULES];
    size_t n_deny;
    const deny_ent_t *odeny[GGD_MAX_RULES];
    size_t n_odeny;
    pii_cfg_t pii[GPII_N];
    bool opii[GPII_N];
    uint64_t max_prompt, max_tokens;
    uint32_t window;
} merge_t;

static void merge_reset(merge_t *m)
{
    memset(m, 0, sizeof *m);
    m->window = GGD_DEFAULT_WINDOW;
}

/* Overlays entries by name; off removes. ST_LIMIT when the list would exceed GGD_MAX_RULES. */
static int merge_list(const deny_ent_t **list, size_t *n, const deny_ent_t *ents, size_t n_ents)
{
    for (size_t i = 0; i < n_ents; i++) {
        const deny_ent_t *e = &ents[i];
        size_t j = 0;
        while (j < *n && strcmp(list[j]->name, e->name) != 0)
            j++;
        if (j < *n) {
            if (e->action == GGD_ACT_OFF) {
                memmove(&list[j], &list[j + 1], (*n - j - 1) * sizeof *list);
                (*n)--;
            } else {
                list[j] = e;
            }
        } else if (e->action != GGD_ACT_OFF) {
            if (*n == GGD_MAX_RULES)
                return ST_LIMIT;
            list[(*n)++] = e;
        }
    }
    return ST_OK;
}

static int merge_apply(merge_t *m, const ruleset_t *r)
{
    if (!r->inherit)
        merge_reset(m);
    if (r->has_max_prompt)
        m->max_prompt = r->max_prompt;
    if (r->has_max_tokens)
        m->max_tokens = r->max_tokens;
    if (r->has_window)
        m->window = r->window;
    for (int k = 0; k < GPII_N; k++) {
        if (r->pii[k].set)
            m->pii[k] = r->pii[k];
        if (r->opii[k].set)
            m->opii[k] = r->opii[k].action == GGD_ACT_BLOCK;
    }
    if (merge_list(m->deny, &m->n_deny, r->deny, r->n_deny) != ST_OK ||
        merge_list(m->odeny, &m->n_odeny, r->odeny, r->n_odeny) != ST_OK)
        return ST_LIMIT;
    return ST_OK;
}

static const deny_ent_t **dup_refs(const deny_ent_t *const *src, size_t n, ggd_action_t lo,
                                   ggd_action_t hi, size_t *n_out, bool *nomem)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += src[i]->action >= lo && src[i]->action <= hi;
    *n_out = 0;
    if (c == 0)
        return NULL;
    const deny_ent_t **v = sy_malloc(c * sizeof *v);
    if (!v) {
        *nomem = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (src[i]->action >= lo && src[i]->action <= hi)
            v[(*n_out)++] = src[i];
    return v;
}

static int policy_fill(ggd_policy_t *pol, const merge_t *m)
{
    bool nomem = false;
    pol->max_prompt = m->max_prompt;
    pol->max_tokens = m->max_tokens;
    pol->window = m->window;
    memcpy(pol->pii, m->pii, sizeof pol->pii);
    memcpy(pol->opii, m->opii, sizeof pol->opii);
    pol->block = dup_refs(m->deny, m->n_deny, GGD_ACT_BLOCK, GGD_ACT_BLOCK, &pol->n_block, &nomem);
    pol->span = dup_refs(m->deny, m->n_deny, GGD_ACT_REDACT, GGD_ACT_MASK, &pol->n_span, &nomem);
    pol->odeny =
        dup_refs(m->odeny, m->n_odeny, GGD_ACT_BLOCK, GGD_ACT_BLOCK, &pol->n_odeny, &nomem);
    return nomem ? ST_NOMEM : ST_OK;
}

static int key_cmp(const char *t1, const char *m1, const char *t2, const char *m2)
{
    int c = strcmp(t1, t2);
    return c ? c : strcmp(m1, m2);
}

static int policy_sort_cmp(const void *a, const void *b)
{
    const ggd_policy_t *x = a, *y = b;
    return key_cmp(x->tenant, x->model, y->tenant, y->model);
}

/* The rule set with exactly this key among sets[1..n), or NULL (linear: load time only, but the
 * caller builds a sorted index for large files). */
typedef struct set_index {
    const ruleset_t **v; /* sorted by key */
    size_t n;
} set_index_t;

static int set_sort_cmp(const void *a, const void *b)
{
    const ruleset_t *x = *(const ruleset_t *const *)a, *y = *(const ruleset_t *const *)b;
    return key_cmp(x->tenant, x->model, y->tenant, y->model);
}

static const ruleset_t *set_find(const set_index_t *ix, const char *t, const char *m)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(t, m, ix->v[mid]->tenant, ix->v[mid]->model);
        if (c == 0)
            return ix->v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int build_policies(pctx_t *p, yaml_node_t *rules_node)
{
    ggd_t *g = p->g;
    int rc = ST_OK;
    set_index_t ix = {0};
    const char **tw = NULL, **mw = NULL;
    size_t ntw = 0, nmw = 0;
    merge_t *m = NULL;
    size_t nr = g->n_sets - 1;
    if (nr) {
        ix.v = sy_malloc(nr * sizeof *ix.v);
        tw = sy_malloc(nr * sizeof *tw);
        mw = sy_malloc(nr * sizeof *mw);
        if (!ix.v || !tw || !mw) {
            rc = fail_nomem(p);
            goto fail;
        }
    }
    for (size_t i = 1; i < g->n_sets; i++) {
        const ruleset_t *r = &g->sets[i];
        ix.v[ix.n++] = r;
        bool wt = strcmp(r->tenant, WILD) == 0, wm = strcmp(r->model, WILD) == 0;
        if (wt && wm) {
            /* (*,*) as a rule: allowed, it is simply the last layer of every policy */
        } else if (wm) {
            tw[ntw++] = r->tenant;
        } else if (wt) {
            mw[nmw++] = r->model;
        }
    }
    if (ix.n)
        qsort(ix.v, ix.n, sizeof *ix.v, set_sort_cmp);
    for (size_t i = 1; i < ix.n; i++)
        if (key_cmp(ix.v[i]->tenant, ix.v[i]->model, ix.v[i - 1]->tenant, ix.v[i - 1]->model) ==
            0) {
            const ruleset_t *a = ix.v[i - 1], *b = ix.v[i];
            const ruleset_t *later = a->line > b->line ? a : b, *first = later == a ? b : a;
            sy_errf(p->err, p->errlen,
                    "%s:%zu: duplicate rule for tenant '%s' model '%s' (first "
                    "on line %zu)",
                    p->name, later->line, later->tenant, later->model, first->line);
            rc = ST_INVAL;
            goto fail;
        }
    /* keys: (*,*), each rule's key, and every (T,*) x (*,M) */
    size_t cap = 1 + nr + ntw * nmw;
    if (ntw && nmw && ntw * nmw / ntw != nmw)
        cap = SIZE_MAX;
    if (cap > GGD_MAX_POLICIES) {
        rc = fail_at(p, rules_node,
                     "too many tenant x model combinations (%zu tenant rules x %zu "
                     "model rules; at most %d policies)",
                     ntw, nmw, GGD_MAX_POLICIES);
        goto fail;
    }
    g->policies = sy_calloc(cap, sizeof *g->policies);
    m = sy_malloc(sizeof *m);
    if (!g->policies || !m) {
        rc = fail_nomem(p);
        goto fail;
    }
    size_t np = 0;
    g->policies[np].tenant = WILD;
    g->policies[np++].model = WILD;
    for (size_t i = 0; i < ix.n; i++) {
        if (strcmp(ix.v[i]->tenant, WILD) == 0 && strcmp(ix.v[i]->model, WILD) == 0)
            continue;
        g->policies[np].tenant = ix.v[i]->tenant;
        g->policies[np++].model = ix.v[i]->model;
    }
    for (size_t a = 0; a < ntw; a++)
        for (size_t b = 0; b < nmw; b++) {
            if (set_find(&ix, tw[a], mw[b]))
                continue; /* an explicit rule, already listed */
            g->policies[np].tenant = tw[a];
            g->policies[np++].model = mw[b];
        }
    g->n_policies = np;
    for (size_t i = 0; i < np; i++) {
        ggd_policy_t *pol = &g->policies[i];
        pol->g = g;
        bool wt = strcmp(pol->tenant, WILD) == 0, wm = strcmp(pol->model, WILD) == 0;
        const ruleset_t *layers[5];
        size_t nl = 0;
        layers[nl++] = &g->sets[0];
        const ruleset_t *r;
        if ((r = set_find(&ix, WILD, WILD)))
            layers[nl++] = r;
        if (!wm && (r = set_find(&ix, WILD, pol->model)))
            layers[nl++] = r;
        if (!wt && (r = set_find(&ix, pol->tenant, WILD)))
            layers[nl++] = r;
        if (!wt && !wm && (r = set_find(&ix, pol->tenant, pol->model)))
            layers[nl++] = r;
        merge_reset(m);
        for (size_t l = 0; l < nl; l++) {
            if (merge_apply(m, layers[l]) != ST_OK) {
                sy_errf(p->err, p->errlen,
                        "%s:%zu: more than %d deny patterns for tenant '%s' model '%s' after "
                        "merging",
                        p->name, layers[l]->line, GGD_MAX_RULES, pol->tenant, pol->model);
                rc = ST_INVAL;
                goto fail;
            }
        }
        if ((rc = policy_fill(pol, m)) != ST_OK) {
            fail_nomem(p);
            goto fail;
        }
    }
    qsort(g->policies, g->n_policies, sizeof *g->policies, policy_sort_cmp);
fail:
    sy_free(m);
    sy_free(ix.v);
    sy_free(tw);
    sy_free(mw);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* load / free                                                                                 */

void ggd_free(ggd_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_policies; i++) {
        sy_free(g->policies[i].block);
        sy_free(g->policies[i].span);
        sy_free(g->policies[i].odeny);
    }
    sy_free(g->policies);
    for (size_t i = 0; i < g->n_sets; i++)
        ruleset_deinit(&g->sets[i]);
    sy_free(g->sets);
    pcre2_match_context_free(g->mctx);
    pcre2_compile_context_free(g->cctx);
    pcre2_general_context_free(g->gctx);
    sy_free(g);
}

static int load_root(pctx_t *p)
{
    ggd_t *g = p->g;
    yaml_node_t *root = yaml_document_get_root_node(p->doc);
    yaml_node_t *defaults = NULL, *rules = NULL;
    int rc;
    if (root && !(root->type == YAML_SCALAR_NODE && !is_value(root))) {
        if (root->type != YAML_MAPPING_NODE)
            return fail_at(p, root, "expected a mapping (settings, external, defaults, rules)");
        if ((rc = check_dup_keys(p, root)) != ST_OK)
            return rc;
        /* settings first: limits and JIT apply to every pattern */
        FOR_PAIRS(root, pair)
        {
            char key[32];
            yaml_node_t *k, *v;
            if ((rc = pair_key(p, pair, key, sizeof key, &k, &v)) != ST_OK)
                return rc;
            if (strcmp(key, "settings") == 0)
                rc = load_settings(p, v);
            else if (strcmp(key, "external") == 0)
                rc = load_external(p, v);
            else if (strcmp(key, "defaults") == 0)
                defaults = v;
            else if (strcmp(key, "rules") == 0)
                rules = v;
            else if (strcmp(key, "version") == 0) {
                uint64_t ver = 0;
                rc = get_u64(p, v, key, 1, 1, &ver);
            } else
                return fail_at(p, k,
                               "unknown top-level key '%s' (version, settings, external, "
                               "defaults, rules)",
                               key);
            if (rc != ST_OK)
                return rc;
        }
    }
    pcre2_set_match_limit(g->mctx, g->settings.match_limit);
    pcre2_set_depth_limit(g->mctx, g->settings.depth_limit);
    pcre2_set_heap_limit(g->mctx, g->settings.heap_limit_kb);
    size_t nr = 0;
    if (rules && !is_null(rules)) {
        if (rules->type != YAML_SEQUENCE_NODE)
            return fail_at(p, rules, "'rules' must be a list of rule sets");
        nr = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
        if (nr > GGD_MAX_RULESETS)
            return fail_at(p, rules, "too many rules (at most %d)", GGD_MAX_RULESETS);
    }
    g->sets = sy_calloc(nr + 1, sizeof *g->sets);
    if (!g->sets)
        return fail_nomem(p);
    g->n_sets = 1;
    if (defaults) {
        if ((rc = load_ruleset(p, defaults, false, &g->sets[0])) != ST_OK)
            return rc;
    } else {
        load_ruleset(p, NULL, false, &g->sets[0]);
    }
    for (size_t i = 0; i < nr; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, rules->data.sequence.items.start[i]);
        if (!item)
            return fail_at(p, rules, "empty rules entry");
        g->n_sets = i + 2;
        if ((rc = load_ruleset(p, item, true, &g->sets[i + 1])) != ST_OK)
            return rc;
    }
    return build_policies(p, rules);
}

ggd_t *ggd_load_mem(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_ok = false, doc_ok = false;
    name = name ? name : "guardrails";
    ggd_t *g = sy_calloc(1, sizeof *g);
    if (!g)
        goto nomem;
    g->settings = (ggd_settings_t){.match_limit = GGD_DEFAULT_MATCH_LIMIT,
                                   .depth_limit = GGD_DEFAULT_DEPTH_LIMIT,
                                   .heap_limit_kb = GGD_DEFAULT_HEAP_LIMIT_KB,
                                   .block_on_limit = true,
                                   .jit = true};
    g->external.timeout_ms = 200;
    g->gctx = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    g->cctx = g->gctx ? pcre2_compile_context_create(g->gctx) : NULL;
    g->mctx = g->gctx ? pcre2_match_context_create(g->gctx) : NULL;
    if (!g->mctx || !g->cctx)
        goto nomem;
    if (!text && len)
        goto nomem;
    if (!yaml_parser_initialize(&parser))
        goto nomem;
    parser_ok = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    if (!yaml_parser_load(&parser, &doc)) {
        sy_errf(err, errlen, "%s:%zu: YAML: %s%s%s", name, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                parser.context ? parser.context : "");
        goto fail;
    }
    doc_ok = true;
    pctx_t p = {.doc = &doc, .name = name, .g = g, .err = err, .errlen = errlen};
    if (load_root(&p) != ST_OK)
        goto fail;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return g;
nomem:
    sy_errf(err, errlen, "%s: out of memory", name);
fail:
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    ggd_free(g);
    return NULL;
}

ggd_t *ggd_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    ggd_t *g = NULL;
    if (!f) {
        sy_errf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf = sy_malloc(GGD_FILE_MAX + 1);
    if (!buf) {
        sy_errf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    size_t len = fread(buf, 1, GGD_FILE_MAX + 1, f);
    if (ferror(f)) {
        sy_errf(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (len > GGD_FILE_MAX) {
        sy_errf(err, errlen, "%s: file too large (over %u bytes)", path, GGD_FILE_MAX);
        goto fail;
    }
    g = ggd_load_mem(buf, len, path, err, errlen);
fail:
    sy_free(buf);
    fclose(f);
    return g;
}

/* ------------------------------------------------------------------------------------------ */
/* accessors                                                                                   */

static const ggd_policy_t *policy_find(const ggd_t *g, const char *t, const char *m)
{
    size_t lo = 0, hi = g->n_policies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ggd_policy_t *x = &g->policies[mid];
        int c = key_cmp(t, m, x->tenant, x->model);
        if (c == 0)
            return x;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const ggd_policy_t *ggd_policy(const ggd_t *g, const char *tenant, const char *model)
{
    if (!g)
        return NULL;
    const char *t = tenant && *tenant ? tenant : WILD;
    const char *m = model && *model ? model : WILD;
    const ggd_policy_t *p;
    /* (T,M) exists whenever both (T,*) and (*,M) do, so the first hit is the right one */
    if ((p = policy_find(g, t, m)) || (p = policy_find(g, t, WILD)) ||
        (p = policy_find(g, WILD, m)))
        return p;
    return policy_find(g, WILD, WILD);
}

const ggd_settings_t *ggd_settings(const ggd_t *g)
{
    return &g->settings;
}

const ggd_external_t *ggd_external(const ggd_t *g)
{
    return &g->external;
}

size_t ggd_policy_count(const ggd_t *g)
{
    return g ? g->n_policies : 0;
}

bool ggd_jit_active(const ggd_t *g)
{
    return g && g->n_patterns > 0 && g->n_jit == g->n_patterns;
}

void ggd_policy_limits(const ggd_policy_t *p, uint64_t *max_prompt_tokens, uint64_t *max_tokens)
{
    if (max_prompt_tokens)
        *max_prompt_tokens = p ? p->max_prompt : 0;
    if (max_tokens)
        *max_tokens = p ? p->max_tokens : 0;
}

ggd_action_t ggd_policy_pii_action(const ggd_policy_t *p, int kind)
{
    if (!p || kind < 0 || kind >= GPII_N)
        return GGD_ACT_OFF;
    return p->pii[kind].action;
}

bool ggd_policy_has_output(const ggd_policy_t *p)
{
    if (!p)
        return false;
    for (int k = 0; k < GPII_N; k++)
        if (p->opii[k])
            return true;
    return p->n_odeny > 0;
}

/* ------------------------------------------------------------------------------------------ */
/* verdicts                                                                                    */

void ggd_verdict_deinit(ggd_verdict_t *out)
{
    if (!out)
        return;
    sy_free(out->masked);
    sy_free(out->audit);
    memset(out, 0, sizeof *out);
}

/* The hit slot for name (existing or new), or NULL when the table is full. */
static ggd_hit_t *hit_get(ggd_verdict_t *v, const char *name, ggd_action_t a, bool pii)
{
    for (size_t i = 0; i < v->n_hits; i++)
        if (v->hits[i].pii == pii && strcmp(v->hits[i].name, name) == 0)
            return &v->hits[i];
    if (v->n_hits == GGD_MAX_HITS) {
        v->hits_truncated = true;
        return NULL;
    }
    ggd_hit_t *h = &v->hits[v->n_hits++];
    snprintf(h->name, sizeof h->name, "%s", name);
    h->action = a;
    h->pii = pii;
    return h;
}

static void verdict_block(ggd_verdict_t *v, const char *rule, const char *fmt, const char *arg)
{
    if (v->decision == GGD_BLOCK)
        return; /* the first reason stays */
    v->decision = GGD_BLOCK;
    snprintf(v->rule, sizeof v->rule, "%s", rule);
    snprintf(v->message, sizeof v->message, fmt, arg);
}

int ggd_check_limits(const ggd_policy_t *p, int64_t prompt_tokens, int64_t max_tokens,
                     ggd_verdict_t *out)
{
    if (!p || !out)
        return ST_INVAL;
    memset(out, 0, sizeof *out);
    if (p->max_prompt && prompt_tokens > 0 && (uint64_t)prompt_tokens > p->max_prompt) {
        out->decision = GGD_BLOCK;
        snprintf(out->rule, sizeof out->rule, "max_prompt_tokens");
        snprintf(out->message, sizeof out->message,
                 "prompt has %lld tokens, over this deployment's limit of %llu",
                 (long long)prompt_tokens, (unsigned long long)p->max_prompt);
    } else if (p->max_tokens && max_tokens > 0 && (uint64_t)max_tokens > p->max_tokens) {
        out->decision = GGD_BLOCK;
        snprintf(out->rule, sizeof out->rule, "max_tokens");
        snprintf(out->message, sizeof out->message,
                 "max_tokens %lld is over this deployment's limit of %llu", (long long)max_tokens,
                 (unsigned long long)p->max_tokens);
    }
    return ST_OK;
}

/* A source of spans in the sweep: a PII detector or a mask/redact pattern. */
typedef struct src {
    int kind;              /* gpii kind, or -1 for a pattern */
    const deny_ent_t *pat; /* pattern sources */
    ggd_action_t action;
    const char *mask;
    const char *name;
    size_t s, e; /* the current match */
    bool live;   /* has a current match */
    size_t from; /* where the next search starts */
} src_t;

#define MAX_SRC (GPII_N + GGD_MAX_RULES)

/* Advances src to its next match. ST_OK, or ST_NOMEM; a pattern hitting its limit is recorded and
 * the source ends (blocking per on_limit). */
static int src_next(const ggd_policy_t *p, src_t *x, const char *t, size_t len,
                    pcre2_match_data *md, ggd_verdict_t *v)
{
    x->live = false;
    if (x->from >= len)
        return ST_OK;
    if (x->kind >= 0) {
        x->live = gpii_next((gpii_kind_t)x->kind, t, len, x->from, &x->s, &x->e);
    } else {
        int r = re_match(p->g, x->pat->code, t, len, x->from, 0, md, &x->s, &x->e);
        if (r == M_NOMEM)
            return ST_NOMEM;
        if (r == M_LIMIT) {
            ggd_hit_t *h = hit_get(v, x->name, x->action, false);
            if (h)
                h->limit = true;
            if (p->g->settings.block_on_limit)
                verdict_block(v, x->name,
                              "prompt blocked: guardrail pattern '%s' exceeded its matching "
                              "limit",
                              x->name);
            return ST_OK;
        }
        x->live = r == M_HIT;
        if (x->live && x->e == x->s) /* cannot happen (min length > 0), but never loop */
            x->e = next_char(t, len, x->s);
    }
    if (x->live)
        x->from = x->e;
    return ST_OK;
}

/* Lazily built output copy: text[0..pos) has been copied (or needs no copy while b.data is
 * NULL). */
typedef struct outcopy {
    sy_buf_t b;
    size_t pos;
    bool active;
} outcopy_t;

static int oc_replace(outcopy_t *o, const char *t, size_t len, size_t s, size_t e, const char *mask)
{
    if (!o->active) {
        o->active = true;
        if (sy_buf_reserve(&o->b, len + 64) != ST_OK)
            return ST_NOMEM;
    }
    if (sy_buf_append(&o->b, t + o->pos, s - o->pos) != ST_OK ||
        sy_buf_append_str(&o->b, mask) != ST_OK)
        return ST_NOMEM;
    o->pos = e;
    return ST_OK;
}

static int oc_finish(outcopy_t *o, const char *t, size_t len, char **out, size_t *out_len)
{
    if (!o->active)
        return ST_OK;
    if (sy_buf_append(&o->b, t + o->pos, len - o->pos) != ST_OK)
        return ST_NOMEM;
    *out = o->b.data;
    *out_len = o->b.len;
    o->b = (sy_buf_t)SY_BUF_INIT;
    return ST_OK;
}

/* Emits one merged span [s,e) with its strongest action. */
static int emit_span(outcopy_t *masked, outcopy_t *audit, const char *t, size_t len, size_t s,
                     size_t e, ggd_action_t a, const char *mask)
{
    if (a == GGD_ACT_MASK && oc_replace(masked, t, len, s, e, mask) != ST_OK)
        return ST_NOMEM;
    return oc_replace(audit, t, len, s, e, mask);
}

int ggd_check_prompt(const ggd_policy_t *p, const char *text, size_t len, ggd_verdict_t *out)
{
    if (!out)
        return ST_INVAL;
    memset(out, 0, sizeof *out);
    if (!p || (!text && len))
        return ST_INVAL;
    if (!text)
        text = "";
    int rc = ST_OK;
    pcre2_match_data *md = NULL;
    if (p->n_block || p->n_span) {
        md = md_get();
        if (!md)
            goto nomem;
    }
    /* 1. block patterns */
    for (size_t i = 0; i < p->n_block && out->decision == GGD_ALLOW; i++) {
        const deny_ent_t *d = p->block[i];
        size_t s, e;
        int r = re_match(p->g, d->code, text, len, 0, 0, md, &s, &e);
        if (r == M_NOMEM)
            goto nomem;
        if (r == M_NONE)
            continue;
        ggd_hit_t *h = hit_get(out, d->name, GGD_ACT_BLOCK, false);
        if (r == M_HIT) {
            if (h)
                h->count++;
            verdict_block(out, d->name, "prompt blocked by guardrail rule '%s'", d->name);
        } else {
            if (h)
                h->limit = true;
            if (p->g->settings.block_on_limit)
                verdict_block(out, d->name,
                              "prompt blocked: guardrail pattern '%s' exceeded its matching "
                              "limit",
                              d->name);
        }
    }
    /* 2. the span sweep */
    src_t srcs[MAX_SRC];
    size_t ns = 0;
    for (int k = 0; k < GPII_N; k++) {
        if (p->pii[k].action == GGD_ACT_OFF)
            continue;
        srcs[ns++] = (src_t){.kind = k,
                             .action = p->pii[k].action,
                             .mask = p->pii[k].mask,
                             .name = gpii_name((gpii_kind_t)k)};
    }
    for (size_t i = 0; i < p->n_span; i++)
        srcs[ns++] = (src_t){.kind = -1,
                             .pat = p->span[i],
                             .action = p->span[i]->action,
                             .mask = p->span[i]->mask,
                             .name = p->span[i]->name};
    if (ns == 0)
        return ST_OK;
    for (size_t i = 0; i < ns; i++)
        if (src_next(p, &srcs[i], text, len, md, out) != ST_OK)
            goto nomem;
    outcopy_t masked = {SY_BUF_INIT, 0, false}, audit = {SY_BUF_INIT, 0, false};
    bool pending = false;
    size_t ps = 0, pe = 0;
    ggd_action_t pa = GGD_ACT_OFF;
    const char *pmask = NULL;
    for (;;) {
        src_t *best = NULL;
        for (size_t i = 0; i < ns; i++)
            if (srcs[i].live &&
                (!best || srcs[i].s < best->s || (srcs[i].s == best->s && srcs[i].e > best->e)))
                best = &srcs[i];
        if (!best)
            break;
        size_t s = best->s, e = best->e;
        ggd_hit_t *h = hit_get(out, best->name, best->action, best->kind >= 0);
        if (h)
            h->count++;
        if (best->action == GGD_ACT_BLOCK)
            verdict_block(out, best->name, "prompt blocked: it contains personal data (%s)",
                          best->name);
        if (pending && s < pe) {
            if (e > pe)
                pe = e;
            if (best->action > pa) {
                pa = best->action;
                pmask = best->mask;
            }
        } else {
            if (pending && emit_span(&masked, &audit, text, len, ps, pe, pa, pmask) != ST_OK)
                goto nomem_copies;
            pending = true;
            ps = s;
            pe = e;
            pa = best->action;
            pmask = best->mask;
        }
        if (src_next(p, best, text, len, md, out) != ST_OK)
            goto nomem_copies;
    }
    if (pending && emit_span(&masked, &audit, text, len, ps, pe, pa, pmask) != ST_OK)
        goto nomem_copies;
    if (out->decision == GGD_ALLOW &&
        oc_finish(&masked, text, len, &out->masked, &out->masked_len) != ST_OK)
        goto nomem_copies;
    if (oc_finish(&audit, text, len, &out->audit, &out->audit_len) != ST_OK)
        goto nomem_copies;
    sy_buf_deinit(&masked.b);
    return rc;
nomem_copies:
    sy_buf_deinit(&masked.b);
    sy_buf_deinit(&audit.b);
nomem:
    sy_free(out->masked);
    sy_free(out->audit);
    out->masked = out->audit = NULL;
    out->masked_len = out->audit_len = 0;
    out->decision = GGD_ALLOW; /* so verdict_block records "internal" */
    verdict_block(out, "internal", "%s", "guardrail check failed: out of memory");
    return ST_NOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* output scanner                                                                              */

struct ggd_out_scan {
    const ggd_policy_t *p;
    char *buf;   /* owned: window + 1 + GGD_OUT_SLICE bytes */
    size_t keep; /* window + 1: bytes of tail kept between steps */
    size_t len;  /* bytes in buf */
    bool cut;    /* buf[0] is left context only (earlier output was dropped) */
    bool blocked;
    char rule[GGD_NAME_MAX];
    char message[GGD_MSG_MAX];
};

ggd_out_scan_t *ggd_out_scan_create(const ggd_policy_t *p)
{
    if (!p)
        return NULL;
    ggd_out_scan_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->p = p;
    s->keep = (size_t)p->window + 1;
    s->buf = sy_malloc(s->keep + GGD_OUT_SLICE);
    if (!s->buf) {
        sy_free(s);
        return NULL;
    }
    return s;
}

void ggd_out_scan_destroy(ggd_out_scan_t *s)
{
    if (!s)
        return;
    sy_free(s->buf);
    sy_free(s);
}

static void out_block(ggd_out_scan_t *s, const char *rule, const char *fmt)
{
    s->blocked = true;
    snprintf(s->rule, sizeof s->rule, "%s", rule);
    snprintf(s->message, sizeof s->message, fmt, rule);
}

/* Examines buf[0..len). final: the end of the buffer is the end of the stream. */
static void out_examine(ggd_out_scan_t *s, bool final)
{
    const ggd_policy_t *p = s->p;
    const char *t = s->buf;
    size_t len = s->len, from = s->cut ? 1 : 0;
    if (len <= from)
        return;
    uint32_t opts = (s->cut ? PCRE2_NOTBOL : 0) | (final ? 0 : PCRE2_NOTEOL);
    for (int k = 0; k < GPII_N && !s->blocked; k++) {
        size_t a, b;
        if (p->opii[k] && gpii_next((gpii_kind_t)k, t, len, from, &a, &b) && (final || b < len))
            out_block(s, gpii_name((gpii_kind_t)k),
                      "output stopped: it contains personal data (%s)");
    }
    if (s->blocked || p->n_odeny == 0)
        return;
    pcre2_match_data *md = md_get();
    if (!md) {
        out_block(s, "internal", "output stopped: guardrail check failed (%s)");
        return;
    }
    for (size_t i = 0; i < p->n_odeny && !s->blocked; i++) {
        const deny_ent_t *d = p->odeny[i];
        size_t off = from, a, b;
        while (off < len) {
            int r = re_match(p->g, d->code, t, len, off, opts, md, &a, &b);
            if (r == M_NONE)
                break;
            if (r == M_LIMIT || r == M_NOMEM) {
                if (p->g->settings.block_on_limit || r == M_NOMEM)
                    out_block(s, d->name,
                              "output stopped: guardrail pattern '%s' exceeded its matching "
                              "limit");
                break;
            }
            if (final || b < len) {
                out_block(s, d->name, "output stopped by guardrail rule '%s'");
                break;
            }
            off = next_char(t, len, a); /* held back: look for a later match that ends sooner */
        }
    }
}

ggd_decision_t ggd_out_scan_feed(ggd_out_scan_t *s, const char *chunk, size_t len)
{
    if (!s)
        return GGD_BLOCK;
    while (!s->blocked && len > 0 && chunk) {
        size_t n = len < GGD_OUT_SLICE ? len : GGD_OUT_SLICE;
        memcpy(s->buf + s->len, chunk, n);
        s->len += n;
        chunk += n;
        len -= n;
        out_examine(s, false);
        if (s->len > s->keep) {
            memmove(s->buf, s->buf + s->len - s->keep, s->keep);
            s->len = s->keep;
            s->cut = true;
        }
    }
    return s->blocked ? GGD_BLOCK : GGD_ALLOW;
}

ggd_decision_t ggd_out_scan_finish(ggd_out_scan_t *s)
{
    if (!s)
        return GGD_BLOCK;
    if (!s->blocked)
        out_examine(s, true);
    return s->blocked ? GGD_BLOCK : GGD_ALLOW;
}

void ggd_out_scan_reason(const ggd_out_scan_t *s, const char **rule, const char **message)
{
    if (rule)
        *rule = s && s->blocked ? s->rule : "";
    if (message)
        *message = s && s->blocked ? s->message : "";
}

/* ------------------------------------------------------------------------------------------ */
/* micro-benchmark                                                                             */

static const char bench_yaml[] =
    "defaults:\n"
    "  max_prompt_tokens: 8192\n"
    "  deny:\n"
    "    - name: jailbreak\n"
    "      pattern: '(?i)ignore\\s+(all\\s+)?(previous|prior)\\s+instructions'\n"
    "    - name: dan\n"
    "      pattern: '(?i)\\bdo anything now\\b'\n"
    "    - name: secret-key\n"
    "      pattern: '\\b(sk|pk)-[A-Za-z0-9]{24,}'\n"
    "    - name: aws-key\n"
    "      pattern: '\\bAKIA[0-9A-Z]{16}\\b'\n"
    "    - name: system-prompt\n"
    "      pattern: '(?i)reveal\\s+(your|the)\\s+system\\s+prompt'\n"
    "  pii:\n"
    "    email: mask\n"
    "    phone: mask\n"
    "    card: mask\n"
    "    iban: mask\n";

static const char bench_para[] =
    "The quarterly report shows revenue growth of 12.5% across the northern region, driven "
    "mostly by new enterprise contracts signed in March and April 2024. Please summarise the "
    "main risks, compare them with last year's figures (3.2 million versus 2.9 million), and "
    "suggest three concrete actions for the sales team. Use short bullet points and keep the "
    "tone neutral; the audience is the executive board, who read it on 15/05/2024. ";

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Times ggd_check_prompt on text; prints one line. */
static int bench_one(const ggd_policy_t *p, const char *label, const char *text, size_t len,
                     size_t iters)
{
    int64_t *ns = sy_malloc(iters * sizeof *ns);
    if (!ns)
        return 2;
    ggd_verdict_t v;
    for (size_t i = 0; i < 200; i++) { /* warm-up */
        ggd_check_prompt(p, text, len, &v);
        ggd_verdict_deinit(&v);
    }
    double sum = 0;
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (size_t i = 0; i < iters; i++) {
        int64_t t0 = now_ns();
        ggd_check_prompt(p, text, len, &v);
        ggd_verdict_deinit(&v);
        ns[i] = now_ns() - t0;
        sum += (double)ns[i];
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec);
    qsort(ns, iters, sizeof *ns, cmp_i64);
    /* wall-clock percentiles per call, and CPU time per call over the whole loop (the latter is
     * what to compare on a loaded machine) */
    printf("ggd_bench %-14s bytes=%zu iters=%zu p50_us=%.2f p99_us=%.2f mean_us=%.2f "
           "cpu_mean_us=%.2f\n",
           label, len, iters, (double)ns[iters / 2] / 1e3, (double)ns[iters * 99 / 100] / 1e3,
           sum / (double)iters / 1e3, cpu / (double)iters / 1e3);
    sy_free(ns);
    return 0;
}

int ggd_bench_main(int argc, char **argv)
{
    size_t iters = 20000;
    const char *file = NULL, *tenant = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
            tenant = argv[++i];
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--iters N] [--file GUARDRAILS.yaml [--tenant T] "
                    "[--model M]]\n",
                    argv[0]);
            return 2;
        }
    }
    if (iters < 10)
        iters = 10;
    char err[512];
    ggd_t *g = file ? ggd_load(file, err, sizeof err)
                    : ggd_load_mem(bench_yaml, sizeof bench_yaml - 1, "bench", err, sizeof err);
    if (!g) {
        fprintf(stderr, "ggd_bench: %s\n", err);
        return 2;
    }
    const ggd_policy_t *p = ggd_policy(g, tenant, model);
    /* a 4 KB prompt of ordinary prose; the second one has an e-mail address, a phone number and
     * a card number in it */
    char clean[4097], pii[4097];
    size_t n = 0, pl = sizeof bench_para - 1;
    while (n + pl < 4096) {
        memcpy(clean + n, bench_para, pl);
        n += pl;
    }
    memset(clean + n, ' ', 4096 - n);
    clean[4096] = '\0';
    memcpy(pii, clean, sizeof pii);
    static const char ins[] = " Contact jane.doe@example.com or +44 20 7946 0958, card "
                              "4111 1111 1111 1111. ";
    memcpy(pii + 2000, ins, sizeof ins - 1);
    int npii = 0;
    for (int k = 0; k < GPII_N; k++)
        npii += p->pii[k].action != GGD_ACT_OFF;
    printf("ggd_bench deny_patterns=%zu pii_detectors=%d jit=%s\n", p->n_block + p->n_span, npii,
           ggd_jit_active(g) ? "yes" : "no");
    int rc = bench_one(p, "clean_4k", clean, 4096, iters);
    if (rc == 0)
        rc = bench_one(p, "pii_4k_masked", pii, 4096, iters);
    ggd_free(g);
    return rc;
}
