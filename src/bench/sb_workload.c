/*
 * sb_workload.c - request generators for `switchyard bench` (see sb_workload.h).
 *
 * Every random choice comes from one splitmix64 stream seeded by cfg.seed, so a workload with the
 * same seed and the same sequence of sb_wl_next / sb_wl_done calls produces the same requests.
 * Candidate tokens: at create, the ids whose piece is non-empty, valid UTF-8 without control
 * characters, not special, and re-encodes to that id alone (the byte tokenizer: 95 printable
 * ASCII bytes; a GGUF vocabulary: most of it). Pools (shared-prefix, trace items) are generated
 * once at create; random prompts per request; multi-turn user messages per turn (generated) or from
 * the questions file. Multi-turn sessions: a ready queue (ring of session indices); a session is in
 * it when its next turn may be sent; new sessions wait at the back, a session whose turn just
 * completed goes to the front (conversations in progress continue first). When every session has
 * finished all its turns, all restart with empty histories (a new cycle). Thread-safety: none.
 */
#include "bench/sb_workload.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/alloc.h"
#include "common/jsonp.h"
#include "common/status.h"

#define SB_MAKE_ROUNDS 8
#define SB_TRACE_MAX_LINE (16u << 20)

double sb_rng_normal(sb_rng_t *r)
{
    double u1 = sb_rng_unit(r), u2 = sb_rng_unit(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double sb_rng_exp(sb_rng_t *r)
{
    double u = sb_rng_unit(r);
    return -log1p(-u);
}

sb_len_dist_t sb_len_fixed(uint32_t n)
{
    sb_len_dist_t d = {.kind = SB_LEN_FIXED, .mean = n, .min = 1};
    return d;
}

uint32_t sb_len_sample(const sb_len_dist_t *d, sb_rng_t *r)
{
    double x = d->mean;
    switch (d->kind) {
    case SB_LEN_FIXED:
        break;
    case SB_LEN_NORMAL:
        x = d->mean + d->stddev * sb_rng_normal(r);
        break;
    case SB_LEN_UNIFORM: {
        double lo = d->min, hi = d->max > lo ? d->max : lo;
        x = lo + floor(sb_rng_unit(r) * (hi - lo + 1.0));
        break;
    }
    case SB_LEN_LOGNORMAL: {
        double m = d->mean > 0 ? d->mean : 1.0;
        double s2 = log(1.0 + (d->stddev * d->stddev) / (m * m));
        double mu = log(m) - s2 / 2.0;
        x = exp(mu + sqrt(s2) * sb_rng_normal(r));
        break;
    }
    case SB_LEN_SKEW_NORMAL: {
        double a = d->skew, delta = a / sqrt(1.0 + a * a);
        double u0 = sb_rng_normal(r), v = sb_rng_normal(r);
        double u1 = delta * u0 + sqrt(1.0 - delta * delta) * v;
        double z = u0 >= 0 ? u1 : -u1;
        double omega = d->stddev / sqrt(1.0 - 2.0 * delta * delta / M_PI);
        double xi = d->mean - omega * delta * sqrt(2.0 / M_PI);
        x = xi + omega * z;
        break;
    }
    }
    double lo = d->min >= 1 ? d->min : 1.0;
    if (x < lo)
        x = lo;
    if (d->max > 0 && x > d->max)
        x = d->max;
    if (x > 1e7)
        x = 1e7;
    return (uint32_t)llround(x);
}

int sb_wl_kind_parse(const char *s, sb_wl_kind_t *out)
{
    if (!s)
        return ST_INVAL;
    if (strcmp(s, "random") == 0)
        *out = SB_WL_RANDOM;
    else if (strcmp(s, "shared-prefix") == 0 || strcmp(s, "shared_prefix") == 0)
        *out = SB_WL_SHARED_PREFIX;
    else if (strcmp(s, "multi-turn") == 0 || strcmp(s, "multi_turn") == 0)
        *out = SB_WL_MULTI_TURN;
    else if (strcmp(s, "trace") == 0)
        *out = SB_WL_TRACE;
    else
        return ST_INVAL;
    return ST_OK;
}

const char *sb_wl_kind_name(sb_wl_kind_t k)
{
    switch (k) {
    case SB_WL_RANDOM:
        return "random";
    case SB_WL_SHARED_PREFIX:
        return "shared-prefix";
    case SB_WL_MULTI_TURN:
        return "multi-turn";
    case SB_WL_TRACE:
        return "trace";
    }
    return "unknown";
}

void sb_wl_cfg_default(sb_wl_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->kind = SB_WL_RANDOM;
    c->ignore_eos = true;
    c->seed = 0;
    c->input_len = sb_len_fixed(512);
    c->output_len = sb_len_fixed(128);
    c->groups = 10;
    c->prompts_per_group = 10;
    c->system_len = sb_len_fixed(100);
    c->question_len = sb_len_fixed(50);
    c->turns = 4;
}

void sb_spec_free(sb_spec_t *s)
{
    if (!s)
        return;
    sy_free(s->prompt);
    sy_free(s->ids);
    sy_free(s);
}

/* ------------------------------------------------------------------------------------------ */

typedef struct mt_session {
    char *system; /* owned, may be NULL */
    size_t system_len;
    char **turns; /* borrowed from the workload's question table, or NULL (generated) */
    uint32_t n_turns;
    uint32_t next_turn;
    int32_t group;
    sy_buf_t hist; /* chat: message objects joined by ','; completions: the text so far */
    bool busy;
} mt_session_t;

typedef struct trace_item {
    double t_ms;
    char *prompt; /* owned or NULL */
    size_t prompt_len;
    uint32_t input_len, output_len, prefix_len;
    int32_t group;
} trace_item_t;

typedef struct group_prefix {
    int64_t id;
    char *text; /* owned */
    size_t len;
    int32_t *ids; /* owned (token prompts) */
    uint32_t n;
} group_prefix_t;

struct sb_workload {
    sb_wl_cfg_t cfg;
    const tok_t *tok;
    sb_rng_t rng;
    int32_t *cand; /* candidate token ids */
    size_t n_cand;
    uint32_t bos; /* 1 when the server adds a BOS to text prompts */
    uint64_t seq;
    /* pools (shared-prefix, trace) */
    sb_spec_t *pool;
    size_t n_pool, pool_next;
    /* multi-turn */
    mt_session_t *sess;
    size_t n_sess;
    size_t *ready; /* ring of session indices */
    size_t r_head, r_len;
    size_t n_sess_finished;
    uint32_t epoch;
    char **questions; /* owned strings of the questions file (flattened turns) */
    size_t n_questions;
    /* trace */
    trace_item_t *trace;
    size_t n_trace, trace_next;
    group_prefix_t *gp;
    size_t n_gp, cap_gp;
};

/* ---------------------------------------------------------------- token helpers */

static bool piece_ok(const char *s, size_t n)
{
    if (n == 0 || !sy_utf8_valid(s, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Candidates: non-special ids whose text is printable UTF-8 and re-encodes to exactly that id
 * (a byte tokenizer's bytes >= 0x80 decode to U+FFFD and are left out). When fewer than 64 ids
 * round-trip (an unusual vocabulary), the printable ones are taken without that check. */
static int build_candidates(sb_workload_t *w)
{
    int32_t v = tok_vocab_size(w->tok);
    w->cand = sy_malloc((size_t)(v > 0 ? v : 1) * sizeof *w->cand);
    int32_t *loose = sy_malloc((size_t)(v > 0 ? v : 1) * sizeof *loose);
    size_t n_loose = 0;
    int rc = ST_NOMEM;
    if (!w->cand || !loose)
        goto fail;
    sy_buf_t b = SY_BUF_INIT;
    int32_t enc[80];
    for (int32_t id = 0; id < v; id++) {
        if (tok_is_special(w->tok, id))
            continue;
        sy_buf_reset(&b);
        if (tok_decode(w->tok, &id, 1, true, &b) != ST_OK)
            continue;
        if (b.len == 0 || b.len > 64 || !piece_ok(b.data, b.len))
            continue;
        loose[n_loose++] = id;
        size_t n = 0;
        if (tok_encode(w->tok, b.data, b.len, false, false, enc, 80, &n) == ST_OK && n == 1 &&
            enc[0] == id)
            w->cand[w->n_cand++] = id;
    }
    sy_buf_deinit(&b);
    if (w->n_cand < 64) {
        memcpy(w->cand, loose, n_loose * sizeof *loose);
        w->n_cand = n_loose;
    }
    rc = w->n_cand ? ST_OK : ST_INVAL;
fail:
    sy_free(loose);
    return rc;
}

static int32_t rand_cand(sb_workload_t *w)
{
    return w->cand[sb_rng_below(&w->rng, w->n_cand)];
}

uint32_t sb_wl_count_tokens(const sb_workload_t *w, const char *text, size_t len)
{
    size_t cap = TOK_MAX_TOKENS(len);
    int32_t *ids = sy_malloc(cap * sizeof *ids);
    size_t n = 0;
    if (!ids || tok_encode(w->tok, text, len, true, false, ids, cap, &n) != ST_OK)
        n = 0;
    sy_free(ids);
    return (uint32_t)n;
}

int sb_wl_make_text(sb_workload_t *w, uint32_t n, bool with_bos, sy_buf_t *out, uint32_t *actual)
{
    uint32_t bos = with_bos ? w->bos : 0;
    uint32_t m = n > bos ? n - bos : 1;
    int rc = ST_NOMEM;
    size_t cap = (size_t)m + 64;
    int32_t *ids = sy_malloc(cap * sizeof *ids);
    int32_t *enc = NULL;
    size_t enc_cap = 0;
    sy_buf_t text = SY_BUF_INIT;
    if (!ids)
        goto fail;
    size_t n_ids = m;
    for (size_t i = 0; i < n_ids; i++)
        ids[i] = rand_cand(w);
    size_t n_enc = 0;
    for (int round = 0; round < SB_MAKE_ROUNDS; round++) {
        sy_buf_reset(&text);
        if (tok_decode(w->tok, ids, n_ids, true, &text) != ST_OK)
            goto fail;
        size_t need = TOK_MAX_TOKENS(text.len);
        if (need > enc_cap) {
            int32_t *ne = sy_realloc(enc, need * sizeof *ne);
            if (!ne)
                goto fail;
            enc = ne;
            enc_cap = need;
        }
        if (tok_encode(w->tok, text.data ? text.data : "", text.len, false, false, enc, enc_cap,
                       &n_enc) != ST_OK)
            goto fail;
        if (n_enc == m)
            break;
        if (round == SB_MAKE_ROUNDS - 1)
            break;
        /* trim or top up the re-tokenized ids and try again */
        if (n_enc > m) {
            memcpy(ids, enc, m * sizeof *ids);
            n_ids = m;
        } else {
            if (m > cap) {
                int32_t *ni = sy_realloc(ids, (size_t)m * sizeof *ni);
                if (!ni)
                    goto fail;
                ids = ni;
                cap = m;
            }
            memcpy(ids, enc, n_enc * sizeof *ids);
            n_ids = n_enc;
            while (n_ids < m)
                ids[n_ids++] = rand_cand(w);
        }
    }
    if (text.len && sy_buf_append(out, text.data, text.len) != ST_OK)
        goto fail;
    if (actual)
        *actual = (uint32_t)n_enc + bos;
    rc = ST_OK;
fail:
    sy_buf_deinit(&text);
    sy_free(enc);
    sy_free(ids);
    return rc;
}

static int make_ids(sb_workload_t *w, uint32_t n, int32_t **out)
{
    *out = sy_malloc((size_t)(n ? n : 1) * sizeof **out);
    if (!*out)
        return ST_NOMEM;
    for (uint32_t i = 0; i < n; i++)
        (*out)[i] = rand_cand(w);
    return ST_OK;
}

static sb_spec_t *spec_new(sb_workload_t *w)
{
    sb_spec_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->group = -1;
    s->session = -1;
    s->t_ms = -1;
    s->seq = w->seq++;
    s->_epoch = w->epoch;
    return s;
}

static char *buf_take(sy_buf_t *b, size_t *len)
{
    *len = b->len;
    if (!b->data) {
        char *e = sy_malloc(1);
        if (e)
            e[0] = '\0';
        return e;
    }
    char *p = b->data; /* ownership moves to the caller */
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Appends random candidate tokens to the text in b (a group prefix) until the whole text counts
 * target tokens as the server tokenizes it (merges across the boundary included): trim or top
 * up the appended ids, at most SB_MAKE_ROUNDS rounds. *actual gets the final count. */
static int append_exact(sb_workload_t *w, sy_buf_t *b, uint32_t target, uint32_t *actual)
{
    size_t base = b->len;
    uint32_t have = sb_wl_count_tokens(w, b->data ? b->data : "", b->len);
    size_t cap = (target > have ? target - have : 1) + 64, n = cap - 64;
    int32_t *ids = sy_malloc(cap * sizeof *ids);
    if (!ids)
        return ST_NOMEM;
    for (size_t i = 0; i < n; i++)
        ids[i] = rand_cand(w);
    uint32_t k = have;
    int rc = ST_OK;
    for (int round = 0; round < SB_MAKE_ROUNDS; round++) {
        b->len = base;
        if (b->data)
            b->data[base] = '\0';
        if ((rc = tok_decode(w->tok, ids, n, true, b)) != ST_OK)
            break;
        k = sb_wl_count_tokens(w, b->data ? b->data : "", b->len);
        if (k == target)
            break;
        if (k > target) {
            size_t d = k - target;
            n = d < n ? n - d : 1;
        } else {
            size_t d = target - k;
            if (n + d > cap) {
                int32_t *ni = sy_realloc(ids, (n + d) * sizeof *ni);
                if (!ni) {
                    rc = ST_NOMEM;
                    break;
                }
                ids = ni;
                cap = n + d;
            }
            while (d--)
                ids[n++] = rand_cand(w);
        }
    }
    sy_free(ids);
    *actual = k;
    return rc;
}

/* A prompt of prefix (text or ids of a group) + fresh tokens; fills s. */
static int fill_prompt(sb_workload_t *w, sb_spec_t *s, const group_prefix_t *gp, uint32_t rest,
                       uint32_t input_len)
{
    s->input_len = input_len;
    if (w->cfg.token_prompts) {
        uint32_t np = gp ? gp->n : 0;
        s->n_ids = (size_t)np + rest;
        s->ids = sy_malloc((s->n_ids ? s->n_ids : 1) * sizeof *s->ids);
        if (!s->ids)
            return ST_NOMEM;
        if (np)
            memcpy(s->ids, gp->ids, np * sizeof *s->ids);
        for (uint32_t i = 0; i < rest; i++)
            s->ids[np + i] = rand_cand(w);
        s->actual_input_len = (uint32_t)s->n_ids;
        return ST_OK;
    }
    sy_buf_t b = SY_BUF_INIT;
    uint32_t act = 0;
    int rc = ST_NOMEM;
    if (gp && gp->len && sy_buf_append(&b, gp->text, gp->len) != ST_OK)
        goto fail;
    if (!gp) {
        if ((rc = sb_wl_make_text(w, rest, true, &b, &act)) != ST_OK)
            goto fail;
    } else if (rest && (rc = append_exact(w, &b, input_len, &act)) != ST_OK) {
        goto fail;
    }
    s->actual_input_len =
        gp ? (rest ? act : sb_wl_count_tokens(w, b.data ? b.data : "", b.len)) : act;
    s->prompt = buf_take(&b, &s->prompt_len);
    rc = s->prompt ? ST_OK : ST_NOMEM;
fail:
    sy_buf_deinit(&b);
    return rc;
}

static int group_prefix_make(sb_workload_t *w, group_prefix_t *g, uint32_t len)
{
    if (w->cfg.token_prompts) {
        g->n = len;
        return make_ids(w, len, &g->ids);
    }
    sy_buf_t b = SY_BUF_INIT;
    uint32_t act = 0;
    int rc = sb_wl_make_text(w, len, true, &b, &act);
    if (rc == ST_OK) {
        g->text = buf_take(&b, &g->len);
        g->n = act;
        rc = g->text ? ST_OK : ST_NOMEM;
    }
    sy_buf_deinit(&b);
    return rc;
}

static void group_prefix_free(group_prefix_t *g)
{
    sy_free(g->text);
    sy_free(g->ids);
}

/* ---------------------------------------------------------------- shared prefix */

static int build_shared_prefix(sb_workload_t *w, char *err, size_t errlen)
{
    const sb_wl_cfg_t *c = &w->cfg;
    if (c->groups == 0 || c->prompts_per_group == 0 || c->groups > 100000 ||
        (uint64_t)c->groups * c->prompts_per_group > 1000000) {
        sy_errf(err, errlen,
                "shared-prefix: groups and prompts per group must be >= 1 (and at "
                "most 1,000,000 prompts)");
        return ST_INVAL;
    }
    w->n_pool = (size_t)c->groups * c->prompts_per_group;
    w->pool = sy_calloc(w->n_pool, sizeof *w->pool);
    if (!w->pool)
        return ST_NOMEM;
    int rc = ST_OK;
    size_t k = 0;
    for (uint32_t g = 0; g < c->groups; g++) {
        group_prefix_t gp = {0};
        uint32_t sl = sb_len_sample(&c->system_len, &w->rng);
        if ((rc = group_prefix_make(w, &gp, sl)) != ST_OK)
            return rc;
        for (uint32_t p = 0; p < c->prompts_per_group; p++) {
            sb_spec_t *s = &w->pool[k++];
            s->group = (int32_t)g;
            s->session = -1;
            s->t_ms = -1;
            uint32_t ql = sb_len_sample(&c->question_len, &w->rng);
            s->output_len = sb_len_sample(&c->output_len, &w->rng);
            if ((rc = fill_prompt(w, s, &gp, ql, sl + ql)) != ST_OK)
                break;
        }
        group_prefix_free(&gp);
        if (rc != ST_OK)
            return rc;
    }
    /* seeded Fisher-Yates shuffle */
    for (size_t i = w->n_pool; i > 1; i--) {
        size_t j = (size_t)sb_rng_below(&w->rng, i);
        sb_spec_t t = w->pool[i - 1];
        w->pool[i - 1] = w->pool[j];
        w->pool[j] = t;
    }
    return ST_OK;
}

static sb_spec_t *spec_copy(sb_workload_t *w, const sb_spec_t *src)
{
    sb_spec_t *s = spec_new(w);
    if (!s)
        return NULL;
    uint64_t seq = s->seq;
    uint32_t ep = s->_epoch;
    *s = *src;
    s->seq = seq;
    s->_epoch = ep;
    s->prompt = NULL;
    s->ids = NULL;
    if (src->prompt && !(s->prompt = sy_strndup(src->prompt, src->prompt_len)))
        goto fail;
    if (src->ids) {
        s->ids = sy_malloc((src->n_ids ? src->n_ids : 1) * sizeof *s->ids);
        if (!s->ids)
            goto fail;
        memcpy(s->ids, src->ids, src->n_ids * sizeof *s->ids);
    }
    return s;
fail:
    sb_spec_free(s);
    return NULL;
}

/* ---------------------------------------------------------------- multi-turn */

static int load_questions(sb_workload_t *w, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = ST_OK;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    size_t lineno = 0, cap_sess = 0, cap_q = 0;
    while ((n = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        json_t *j = NULL;
        if (!sy_utf8_valid(line, (size_t)n) || jsonp_load(line, (size_t)n, &j, NULL) != ST_OK ||
            !json_is_object(j)) {
            json_decref(j);
            sy_errf(err, errlen, "%s:%zu: not a JSON object", path, lineno);
            rc = ST_INVAL;
            break;
        }
        json_t *turns = json_object_get(j, "turns");
        size_t nt = json_is_array(turns) ? json_array_size(turns) : 0;
        if (nt == 0) {
            json_decref(j);
            sy_errf(err, errlen, "%s:%zu: needs a non-empty \"turns\" list of strings", path,
                    lineno);
            rc = ST_INVAL;
            break;
        }
        if (w->n_sess == cap_sess) {
            size_t nc = cap_sess ? cap_sess * 2 : 64;
            mt_session_t *ns = sy_realloc(w->sess, nc * sizeof *ns);
            if (!ns) {
                json_decref(j);
                rc = ST_NOMEM;
                break;
            }
            w->sess = ns;
            cap_sess = nc;
        }
        mt_session_t *s = &w->sess[w->n_sess];
        memset(s, 0, sizeof *s);
        s->group = -1;
        size_t first = w->n_questions;
        for (size_t i = 0; i < nt && rc == ST_OK; i++) {
            json_t *t = json_array_get(turns, i);
            if (!json_is_string(t)) {
                sy_errf(err, errlen, "%s:%zu: turns[%zu] is not a string", path, lineno, i);
                rc = ST_INVAL;
                break;
            }
            if (w->n_questions == cap_q) {
                size_t nc = cap_q ? cap_q * 2 : 128;
                char **nq = sy_realloc(w->questions, nc * sizeof *nq);
                if (!nq) {
                    rc = ST_NOMEM;
                    break;
                }
                w->questions = nq;
                cap_q = nc;
            }
            char *q = sy_strndup(json_string_value(t), json_string_length(t));
            if (!q) {
                rc = ST_NOMEM;
                break;
            }
            w->questions[w->n_questions++] = q;
        }
        json_decref(j);
        if (rc != ST_OK)
            break;
        s->n_turns = (uint32_t)nt;
        s->turns = (char **)(uintptr_t)first; /* an index for now; fixed up below */
        w->n_sess++;
    }
    free(line);
    fclose(f);
    if (rc == ST_OK && w->n_sess == 0) {
        sy_errf(err, errlen, "%s: no questions", path);
        rc = ST_INVAL;
    }
    for (size_t i = 0; i < w->n_sess; i++) /* the question table no longer moves */
        w->sess[i].turns = w->questions + (uintptr_t)w->sess[i].turns;
    return rc;
}

static void ready_push(sb_workload_t *w, size_t i)
{
    w->ready[(w->r_head + w->r_len) % w->n_sess] = i;
    w->r_len++;
}

/* A continuing session goes first: conversations in progress proceed before new ones start
 * (so about --concurrency conversations are active at once, as real users would be). */
static void ready_push_front(sb_workload_t *w, size_t i)
{
    w->r_head = (w->r_head + w->n_sess - 1) % w->n_sess;
    w->ready[w->r_head] = i;
    w->r_len++;
}

static void sessions_reset(sb_workload_t *w)
{
    w->r_head = w->r_len = 0;
    w->n_sess_finished = 0;
    for (size_t i = 0; i < w->n_sess; i++) {
        sy_buf_reset(&w->sess[i].hist);
        w->sess[i].next_turn = 0;
        w->sess[i].busy = false;
        ready_push(w, i);
    }
}

static int build_multi_turn(sb_workload_t *w, char *err, size_t errlen)
{
    const sb_wl_cfg_t *c = &w->cfg;
    int rc;
    if (w->cfg.kind == SB_WL_MULTI_TURN && c->questions_path) {
        if ((rc = load_questions(w, c->questions_path, err, errlen)) != ST_OK)
            return rc;
        if (c->sessions && c->sessions != w->n_sess) { /* take or cycle the file's sessions */
            mt_session_t *ns = sy_calloc(c->sessions, sizeof *ns);
            if (!ns)
                return ST_NOMEM;
            for (uint32_t i = 0; i < c->sessions; i++)
                ns[i] = w->sess[i % w->n_sess];
            sy_free(w->sess);
            w->sess = ns;
            w->n_sess = c->sessions;
        }
    } else {
        size_t n;
        if (w->cfg.kind == SB_WL_SHARED_PREFIX) {
            if (c->groups == 0 || c->prompts_per_group == 0 ||
                (uint64_t)c->groups * c->prompts_per_group > 100000) {
                sy_errf(err, errlen, "shared-prefix multi-turn: 1..100000 sessions");
                return ST_INVAL;
            }
            n = (size_t)c->groups * c->prompts_per_group;
        } else {
            n = c->sessions ? c->sessions : 16;
        }
        w->sess = sy_calloc(n, sizeof *w->sess);
        if (!w->sess)
            return ST_NOMEM;
        w->n_sess = n;
        for (size_t i = 0; i < n; i++) {
            w->sess[i].group = -1;
            w->sess[i].n_turns = c->turns ? c->turns : 4;
        }
        if (w->cfg.kind == SB_WL_SHARED_PREFIX) {
            for (uint32_t g = 0; g < c->groups; g++) {
                group_prefix_t gp = {0};
                bool tp = w->cfg.token_prompts;
                w->cfg.token_prompts = false; /* sessions are text */
                rc = group_prefix_make(w, &gp, sb_len_sample(&c->system_len, &w->rng));
                w->cfg.token_prompts = tp;
                if (rc != ST_OK)
                    return rc;
                for (uint32_t p = 0; p < c->prompts_per_group; p++) {
                    mt_session_t *s = &w->sess[(size_t)g * c->prompts_per_group + p];
                    s->group = (int32_t)g;
                    s->system = sy_strndup(gp.text, gp.len);
                    s->system_len = gp.len;
                    if (!s->system) {
                        group_prefix_free(&gp);
                        return ST_NOMEM;
                    }
                }
                group_prefix_free(&gp);
            }
        }
    }
    w->ready = sy_calloc(w->n_sess, sizeof *w->ready);
    if (!w->ready)
        return ST_NOMEM;
    sessions_reset(w);
    /* shuffle the initial order (seeded) */
    for (size_t i = w->n_sess; i > 1; i--) {
        size_t j = (size_t)sb_rng_below(&w->rng, i);
        size_t t = w->ready[i - 1];
        w->ready[i - 1] = w->ready[j];
        w->ready[j] = t;
    }
    return ST_OK;
}

static bool is_mt(const sb_workload_t *w)
{
    return w->cfg.kind == SB_WL_MULTI_TURN ||
           (w->cfg.kind == SB_WL_SHARED_PREFIX && w->cfg.multi_turn);
}

static sb_spec_t *next_turn(sb_workload_t *w)
{
    if (w->r_len == 0)
        return NULL;
    size_t si = w->ready[w->r_head];
    w->r_head = (w->r_head + 1) % w->n_sess;
    w->r_len--;
    mt_session_t *ss = &w->sess[si];
    sb_spec_t *s = spec_new(w);
    if (!s) {
        ready_push(w, si);
        return NULL;
    }
    s->session = (int64_t)si;
    s->turn = ss->next_turn;
    s->group = ss->group;
    s->output_len = sb_len_sample(&w->cfg.output_len, &w->rng);
    if (ss->turns) {
        const char *q = ss->turns[ss->next_turn];
        s->prompt = sy_strdup(q);
        s->prompt_len = s->prompt ? strlen(s->prompt) : 0;
        s->actual_input_len = s->input_len =
            s->prompt ? sb_wl_count_tokens(w, q, s->prompt_len) : 0;
    } else {
        sy_buf_t b = SY_BUF_INIT;
        uint32_t ql = sb_len_sample(&w->cfg.question_len, &w->rng), act = 0;
        if (sb_wl_make_text(w, ql, false, &b, &act) == ST_OK)
            s->prompt = buf_take(&b, &s->prompt_len);
        sy_buf_deinit(&b);
        s->input_len = ql;
        s->actual_input_len = act;
    }
    if (!s->prompt) {
        sb_spec_free(s);
        ready_push(w, si);
        return NULL;
    }
    ss->busy = true;
    return s;
}

/* ---------------------------------------------------------------- trace */

static int trace_num(json_t *j, const char *key, double *out, bool required)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v))
        return required ? ST_NOTFOUND : ST_OK;
    if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
        return ST_INVAL;
    *out = json_number_value(v);
    return ST_OK;
}

static int cmp_trace(const void *a, const void *b)
{
    const trace_item_t *x = a, *y = b;
    if (x->t_ms != y->t_ms)
        return x->t_ms < y->t_ms ? -1 : 1;
    return x < y ? -1 : x > y ? 1 : 0;
}

static int load_trace(sb_workload_t *w, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        sy_errf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = ST_OK;
    char *line = NULL;
    size_t lcap = 0, cap = 0, lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        json_t *j = NULL;
        if (!sy_utf8_valid(line, (size_t)n) || jsonp_load(line, (size_t)n, &j, NULL) != ST_OK ||
            !json_is_object(j)) {
            json_decref(j);
            sy_errf(err, errlen, "%s:%zu: not a JSON object", path, lineno);
            rc = ST_INVAL;
            break;
        }
        if (w->n_trace == cap) {
            size_t nc = cap ? cap * 2 : 256;
            trace_item_t *nt = sy_realloc(w->trace, nc * sizeof *nt);
            if (!nt) {
                json_decref(j);
                rc = ST_NOMEM;
                break;
            }
            w->trace = nt;
            cap = nc;
        }
        trace_item_t *it = &w->trace[w->n_trace];
        memset(it, 0, sizeof *it);
        it->group = -1;
        double ts = 0, il = 0, ol = 0, pg = -1, pl = 0;
        json_t *pr = json_object_get(j, "prompt");
        int r1 = trace_num(j, "timestamp_ms", &ts, true);
        int r2 = trace_num(j, "input_len", &il, !json_is_string(pr));
        int r3 = trace_num(j, "output_len", &ol, false);
        int r4 = trace_num(j, "prefix_group", &pg, false);
        int r5 = trace_num(j, "prefix_len", &pl, false);
        if (r1 || r2 || r3 || r4 || r5 || (pr && !json_is_null(pr) && !json_is_string(pr)) ||
            il > 1e7 || ol > 1e7 || pl > 1e7) {
            json_decref(j);
            sy_errf(err, errlen,
                    "%s:%zu: needs \"timestamp_ms\" and \"input_len\" (or \"prompt\"); numbers "
                    ">= 0; optional \"output_len\", \"prefix_group\", \"prefix_len\"",
                    path, lineno);
            rc = ST_INVAL;
            break;
        }
        it->t_ms = ts;
        it->input_len = (uint32_t)il;
        it->output_len = (uint32_t)ol;
        it->group = pg >= 0 ? (int32_t)pg : -1;
        it->prefix_len = (uint32_t)pl;
        if (json_is_string(pr)) {
            it->prompt = sy_strndup(json_string_value(pr), json_string_length(pr));
            it->prompt_len = json_string_length(pr);
            if (!it->prompt) {
                json_decref(j);
                rc = ST_NOMEM;
                break;
            }
        }
        json_decref(j);
        w->n_trace++;
    }
    free(line);
    fclose(f);
    if (rc == ST_OK && w->n_trace == 0) {
        sy_errf(err, errlen, "%s: empty trace", path);
        rc = ST_INVAL;
    }
    if (rc == ST_OK) {
        qsort(w->trace, w->n_trace, sizeof *w->trace, cmp_trace);
        double t0 = w->trace[0].t_ms;
        for (size_t i = 0; i < w->n_trace; i++)
            w->trace[i].t_ms -= t0;
    }
    return rc;
}

static const group_prefix_t *trace_group(sb_workload_t *w, int32_t group, uint32_t len)
{
    for (size_t i = 0; i < w->n_gp; i++)
        if (w->gp[i].id == group)
            return &w->gp[i];
    if (w->n_gp == w->cap_gp) {
        size_t nc = w->cap_gp ? w->cap_gp * 2 : 16;
        group_prefix_t *ng = sy_realloc(w->gp, nc * sizeof *ng);
        if (!ng)
            return NULL;
        w->gp = ng;
        w->cap_gp = nc;
    }
    group_prefix_t *g = &w->gp[w->n_gp];
    memset(g, 0, sizeof *g);
    g->id = group;
    /* the group's prefix depends only on the seed and the group id */
    sb_rng_t saved = w->rng;
    w->rng.s = w->cfg.seed ^ (0x51ed270b27a4cba1ull * (uint64_t)(group + 1));
    int rc = group_prefix_make(w, g, len);
    w->rng = saved;
    if (rc != ST_OK) {
        group_prefix_free(g);
        return NULL;
    }
    w->n_gp++;
    return g;
}

static sb_spec_t *next_trace(sb_workload_t *w)
{
    if (w->trace_next >= w->n_trace)
        return NULL;
    const trace_item_t *it = &w->trace[w->trace_next];
    sb_spec_t *s = spec_new(w);
    if (!s)
        return NULL;
    s->t_ms = it->t_ms;
    s->output_len = it->output_len ? it->output_len : sb_len_sample(&w->cfg.output_len, &w->rng);
    s->group = it->group;
    int rc = ST_OK;
    if (it->prompt) {
        s->prompt = sy_strndup(it->prompt, it->prompt_len);
        s->prompt_len = it->prompt_len;
        if (!s->prompt)
            rc = ST_NOMEM;
        else
            s->input_len = s->actual_input_len = sb_wl_count_tokens(w, it->prompt, it->prompt_len);
    } else {
        uint32_t in = it->input_len ? it->input_len : 1;
        const group_prefix_t *gp = NULL;
        if (it->group >= 0) {
            uint32_t pl =
                it->prefix_len ? it->prefix_len : sb_len_sample(&w->cfg.system_len, &w->rng);
            if (pl > in)
                pl = in;
            gp = trace_group(w, it->group, pl);
            if (!gp)
                rc = ST_NOMEM;
        }
        if (rc == ST_OK) {
            uint32_t have = gp ? gp->n : 0;
            rc = fill_prompt(w, s, gp, in > have ? in - have : 0, in);
        }
    }
    if (rc != ST_OK) {
        sb_spec_free(s);
        return NULL;
    }
    w->trace_next++;
    return s;
}

/* ---------------------------------------------------------------- public */

int sb_wl_create(const sb_wl_cfg_t *cfg, sb_workload_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->tok) {
        sy_errf(err, errlen, "no tokenizer");
        return ST_INVAL;
    }
    if (cfg->token_prompts && cfg->chat) {
        sy_errf(err, errlen, "--token-prompts needs --api completions");
        return ST_INVAL;
    }
    sb_workload_t *w = sy_calloc(1, sizeof *w);
    if (!w)
        return ST_NOMEM;
    w->cfg = *cfg;
    w->tok = cfg->tok;
    w->rng.s = cfg->seed;
    w->bos = (w->tok->add_bos && w->tok->bos_id >= 0) ? 1 : 0;
    int rc = build_candidates(w);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "the tokenizer has no usable (printable, non-special) tokens");
        goto fail;
    }
    switch (cfg->kind) {
    case SB_WL_RANDOM:
        break;
    case SB_WL_SHARED_PREFIX:
        rc = cfg->multi_turn ? build_multi_turn(w, err, errlen)
                             : build_shared_prefix(w, err, errlen);
        break;
    case SB_WL_MULTI_TURN:
        if (cfg->token_prompts) {
            sy_errf(err, errlen, "multi-turn sends text: drop --token-prompts");
            rc = ST_INVAL;
            break;
        }
        rc = build_multi_turn(w, err, errlen);
        break;
    case SB_WL_TRACE:
        if (!cfg->trace_path) {
            sy_errf(err, errlen, "the trace workload needs --trace FILE.jsonl");
            rc = ST_INVAL;
            break;
        }
        rc = load_trace(w, cfg->trace_path, err, errlen);
        break;
    }
    if (rc != ST_OK) {
        if (rc == ST_NOMEM && err && !*err)
            sy_errf(err, errlen, "out of memory");
        goto fail;
    }
    *out = w;
    return ST_OK;
fail:
    sb_wl_destroy(w);
    return rc;
}

void sb_wl_destroy(sb_workload_t *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_pool; i++) {
        sy_free(w->pool[i].prompt);
        sy_free(w->pool[i].ids);
    }
    sy_free(w->pool);
    for (size_t i = 0; i < w->n_sess; i++) {
        /* sessions copied by cycling share nothing owned except system (never set then) */
        sy_free(w->sess[i].system);
        sy_buf_deinit(&w->sess[i].hist);
    }
    sy_free(w->sess);
    sy_free(w->ready);
    for (size_t i = 0; i < w->n_questions; i++)
        sy_free(w->questions[i]);
    sy_free(w->questions);
    for (size_t i = 0; i < w->n_trace; i++)
        sy_free(w->trace[i].prompt);
    sy_free(w->trace);
    for (size_t i = 0; i < w->n_gp; i++)
        group_prefix_free(&w->gp[i]);
    sy_free(w->gp);
    sy_free(w->cand);
    sy_free(w);
}

sb_spec_t *sb_wl_next(sb_workload_t *w)
{
    if (is_mt(w))
        return next_turn(w);
    switch (w->cfg.kind) {
    case SB_WL_RANDOM: {
        sb_spec_t *s = spec_new(w);
        if (!s)
            return NULL;
        uint32_t in = sb_len_sample(&w->cfg.input_len, &w->rng);
        s->output_len = sb_len_sample(&w->cfg.output_len, &w->rng);
        if (fill_prompt(w, s, NULL, in, in) != ST_OK) {
            sb_spec_free(s);
            return NULL;
        }
        return s;
    }
    case SB_WL_SHARED_PREFIX: {
        const sb_spec_t *src = &w->pool[w->pool_next];
        w->pool_next = (w->pool_next + 1) % w->n_pool;
        return spec_copy(w, src);
    }
    case SB_WL_TRACE:
        return next_trace(w);
    case SB_WL_MULTI_TURN:
        break;
    }
    return NULL;
}

bool sb_wl_exhausted(const sb_workload_t *w)
{
    return w->cfg.kind == SB_WL_TRACE && w->trace_next >= w->n_trace;
}

bool sb_wl_wants_answer(const sb_workload_t *w)
{
    return is_mt(w);
}

void sb_wl_rewind(sb_workload_t *w)
{
    w->trace_next = 0;
    w->pool_next = 0;
    if (is_mt(w)) {
        w->epoch++;
        sessions_reset(w);
    }
}

static int hist_append_msg(sy_buf_t *h, const char *role, const char *text, size_t len)
{
    int rc = ST_OK;
    if (h->len)
        rc |= sy_buf_append_char(h, ',');
    rc |= sy_buf_appendf(h, "{\"role\":\"%s\",\"content\":\"", role);
    rc |= sy_buf_append_json_str(h, text, len);
    rc |= sy_buf_append_str(h, "\"}");
    return rc ? ST_NOMEM : ST_OK;
}

void sb_wl_done(sb_workload_t *w, const sb_spec_t *spec, bool ok, const char *answer, size_t len)
{
    (void)ok;
    if (!is_mt(w) || spec->session < 0 || spec->_epoch != w->epoch ||
        (size_t)spec->session >= w->n_sess)
        return;
    mt_session_t *s = &w->sess[spec->session];
    if (!s->busy || spec->turn != s->next_turn)
        return;
    s->busy = false;
    if (w->cfg.chat) {
        hist_append_msg(&s->hist, "user", spec->prompt ? spec->prompt : "", spec->prompt_len);
        hist_append_msg(&s->hist, "assistant", answer ? answer : "", answer ? len : 0);
    } else {
        sy_buf_append(&s->hist, spec->prompt ? spec->prompt : "", spec->prompt_len);
        if (answer && len)
            sy_buf_append(&s->hist, answer, len);
    }
    s->next_turn++;
    if (s->next_turn < s->n_turns) {
        ready_push_front(w, (size_t)spec->session);
        return;
    }
    if (++w->n_sess_finished == w->n_sess)
        sessions_reset(w); /* every session is done: a new cycle */
}

int sb_wl_body(const sb_workload_t *w, const sb_spec_t *spec, const char *model, sy_buf_t *out)
{
    int rc = ST_OK;
    rc |= sy_buf_append_str(out, "{\"model\":\"");
    rc |= sy_buf_append_json_str(out, model, strlen(model));
    rc |= sy_buf_append_str(out, "\",");
    const mt_session_t *s = NULL;
    if (is_mt(w) && spec->session >= 0 && (size_t)spec->session < w->n_sess)
        s = &w->sess[spec->session];
    const char *p = spec->prompt ? spec->prompt : "";
    if (w->cfg.chat) {
        rc |= sy_buf_append_str(out, "\"messages\":[");
        bool first = true;
        if (s && s->system) {
            rc |= sy_buf_append_str(out, "{\"role\":\"system\",\"content\":\"");
            rc |= sy_buf_append_json_str(out, s->system, s->system_len);
            rc |= sy_buf_append_str(out, "\"}");
            first = false;
        }
        if (s && s->hist.len) {
            if (!first)
                rc |= sy_buf_append_char(out, ',');
            rc |= sy_buf_append(out, s->hist.data, s->hist.len);
            first = false;
        }
        if (!first)
            rc |= sy_buf_append_char(out, ',');
        rc |= sy_buf_append_str(out, "{\"role\":\"user\",\"content\":\"");
        rc |= sy_buf_append_json_str(out, p, spec->prompt_len);
        rc |= sy_buf_append_str(out, "\"}]");
    } else if (spec->ids) {
        rc |= sy_buf_append_str(out, "\"prompt\":[");
        for (size_t i = 0; i < spec->n_ids; i++) {
            if (i)
                rc |= sy_buf_append_char(out, ',');
            rc |= sy_buf_append_i64(out, spec->ids[i]);
        }
        rc |= sy_buf_append_char(out, ']');
    } else {
        rc |= sy_buf_append_str(out, "\"prompt\":\"");
        if (s && s->system)
            rc |= sy_buf_append_json_str(out, s->system, s->system_len);
        if (s && s->hist.len)
            rc |= sy_buf_append_json_str(out, s->hist.data, s->hist.len);
        rc |= sy_buf_append_json_str(out, p, spec->prompt_len);
        rc |= sy_buf_append_char(out, '"');
    }
    rc |= sy_buf_appendf(out, ",\"max_tokens\":%u", spec->output_len ? spec->output_len : 1);
    if (w->cfg.ignore_eos)
        rc |= sy_buf_append_str(out, ",\"ignore_eos\":true");
    rc |= sy_buf_append_str(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    if (w->cfg.extra_body && *w->cfg.extra_body) {
        rc |= sy_buf_append_char(out, ',');
        rc |= sy_buf_append_str(out, w->cfg.extra_body);
    }
    rc |= sy_buf_append_char(out, '}');
    return rc ? ST_NOMEM : ST_OK;
}
