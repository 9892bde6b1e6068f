/*
 * metrics.c - Prometheus text exposition 0.0.4 with the exact spelling of Python's
 * prometheus_client (0.16, as vLLM uses it), so scrapers and golden tests see identical text:
 *
 *   # HELP vllm:prompt_tokens_total Number of prefill tokens processed.
 *   # TYPE vllm:prompt_tokens_total counter
 *   vllm:prompt_tokens_total{engine="0",model_name="m"} 3.0
 *   # HELP h Histogram help
 *   # TYPE h histogram
 *   h_bucket{a="x",le="0.005"} 0.0      <- cumulative
 *   h_bucket{a="x",le="+Inf"} 2.0
 *   h_count{a="x"} 2.0
 *   h_sum{a="x"} 3.5
 *
 * Like prometheus_client: HELP/TYPE of a counter use the "_total" name, labels are printed sorted
 * by name ("le" included), values use Python repr() munged to Go style (floatToGoString: 1e+06,
 * 0.123, 3.0, +Inf, NaN). Unlike it: no "_created" series. A scrape may be restricted to some
 * sample names with prometheus_client's name[] query parameters (mx_registry_render_query), which
 * is how the gateway polls only the few gauges it schedules on.
 *
 * Values are stored as the bit pattern of a double in an atomic uint64 and updated with CAS, so
 * inc/set/observe never lock. Histogram buckets are stored non-cumulative (one atomic add per
 * observation) and cumulated at render; the count is the sum of the buckets, so count and +Inf
 * always agree in one scrape.
 * Thread-safety: see metrics.h. The registry mutex is recursive so collect callbacks may create
 * series.
 */
#include "common/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"

#define MX_NUM_MAX 32 /* a rendered value with its NUL */

struct mx_series {
    mx_family_t *fam;
    struct mx_series *next;
    char **values;            /* n_labels owned copies (raw) */
    char *lbl;                /* rendered "{k=\"v\",...}" (escaped, sorted), "" without labels */
    char *lbl_pre, *lbl_post; /* histograms: the same split where le="..." goes, braces and
                               * commas included: pre + le="X" + post */
    _Atomic uint64_t bits;    /* counter/gauge value as double bits */
    _Atomic uint64_t *counts; /* histograms: n_buckets + 1 non-cumulative counts */
    _Atomic uint64_t sum_bits;
};

struct mx_family {
    mx_registry_t *reg;
    struct mx_family *next;
    mx_type_t type;
    char *name;
    size_t name_len; /* strlen(name): every rendered line starts with it */
    char *help;
    char **label_names;
    size_t n_labels;
    size_t *order; /* label indices sorted by name */
    double *buckets;
    size_t n_buckets;
    char (*le)[MX_NUM_MAX]; /* histograms: n_buckets + 1 rendered bounds ("+Inf" last) */
    mx_series_t *series_head, *series_tail;
};

typedef struct mx_collector {
    mx_collect_cb cb;
    void *udata;
} mx_collector_t;

struct mx_registry {
    pthread_mutex_t mu;
    mx_family_t *head, *tail;
    mx_collector_t *collectors;
    size_t n_collectors;
};

/* ---- atomic doubles ---- */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d2u(u2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* ---- registry ---- */

mx_registry_t *mx_registry_create(void)
{
    mx_registry_t *r = sy_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(&r->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        sy_free(r);
        return NULL;
    }
    return r;
}

static void series_free(mx_series_t *s, size_t n_labels)
{
    if (!s)
        return;
    if (s->values)
        for (size_t i = 0; i < n_labels; i++)
            sy_free(s->values[i]);
    sy_free(s->values);
    sy_free(s->lbl);
    sy_free(s->lbl_pre);
    sy_free(s->lbl_post);
    sy_free(s->counts);
    sy_free(s);
}

static void family_free(mx_family_t *f)
{
    if (!f)
        return;
    mx_series_t *s = f->series_head;
    while (s) {
        mx_series_t *next = s->next;
        series_free(s, f->n_labels);
        s = next;
    }
    if (f->label_names)
        for (size_t i = 0; i < f->n_labels; i++)
            sy_free(f->label_names[i]);
    sy_free(f->label_names);
    sy_free(f->order);
    sy_free(f->buckets);
    sy_free(f->le);
    sy_free(f->name);
    sy_free(f->help);
    sy_free(f);
}

void mx_registry_destroy(mx_registry_t *r)
{
    if (!r)
        return;
    mx_family_t *f = r->head;
    while (f) {
        mx_family_t *next = f->next;
        family_free(f);
        f = next;
    }
    sy_free(r->collectors);
    pthread_mutex_destroy(&r->mu);
    sy_free(r);
}

void mx_registry_on_collect(mx_registry_t *r, mx_collect_cb cb, void *udata)
{
    if (!cb)
        return;
    pthread_mutex_lock(&r->mu);
    mx_collector_t *p = sy_realloc(r->collectors, (r->n_collectors + 1) * sizeof *p);
    if (p) {
        p[r->n_collectors].cb = cb;
        p[r->n_collectors].udata = udata;
        r->collectors = p;
        r->n_collectors++;
    } else {
        sy_error("metrics.collect_register", "err=nomem");
    }
    pthread_mutex_unlock(&r->mu);
}

void mx_registry_off_collect(mx_registry_t *r, mx_collect_cb cb, void *udata)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_collectors; i++) {
        if (r->collectors[i].cb == cb && r->collectors[i].udata == udata) {
            memmove(&r->collectors[i], &r->collectors[i + 1],
                    (r->n_collectors - i - 1) * sizeof r->collectors[0]);
            r->n_collectors--;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*; label names: the same without ':'. */
static bool valid_name(const char *s, bool colon_ok)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon_ok && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static mx_series_t *series_new(mx_family_t *f, const char *const *values);
static int series_render_labels(mx_series_t *s);
static void fmt_value(double d, char out[MX_NUM_MAX]);

mx_family_t *mx_family_create(mx_registry_t *r, mx_type_t type, const char *name, const char *help,
                              const char *const *label_names, size_t n_labels,
                              const double *buckets, size_t n_buckets)
{
    if (!r || !valid_name(name, true) || n_labels > MX_MAX_LABELS ||
        (n_labels > 0 && !label_names) ||
        (type != MX_COUNTER && type != MX_GAUGE && type != MX_HISTOGRAM))
        return NULL;
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(label_names[i], false) || strncmp(label_names[i], "__", 2) == 0)
            return NULL;
        if (type == MX_HISTOGRAM && strcmp(label_names[i], "le") == 0)
            return NULL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[i], label_names[j]) == 0)
                return NULL;
    }
    if (type == MX_HISTOGRAM) {
        /* an explicit trailing +Inf is tolerated (it is implicit) */
        if (n_buckets > 0 && buckets[n_buckets - 1] == INFINITY)
            n_buckets--;
        if (n_buckets > 0 && !buckets)
            return NULL;
        for (size_t i = 0; i < n_buckets; i++)
            if (isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
                return NULL;
    } else {
        n_buckets = 0;
    }

    size_t name_len = strlen(name);
    if (type == MX_COUNTER && name_len > 6 && strcmp(name + name_len - 6, "_total") == 0)
        name_len -= 6; /* prometheus_client strips a "_total" given to a Counter */

    pthread_mutex_lock(&r->mu);
    for (mx_family_t *f = r->head; f; f = f->next) {
        if (strlen(f->name) == name_len && memcmp(f->name, name, name_len) == 0) {
            pthread_mutex_unlock(&r->mu);
            return f->type == type ? f : NULL;
        }
    }
    mx_family_t *f = sy_calloc(1, sizeof *f);
    if (!f)
        goto fail;
    f->reg = r;
    f->type = type;
    f->name = sy_strndup(name, name_len);
    f->name_len = name_len;
    f->help = sy_strdup(help ? help : "");
    if (!f->name || !f->help)
        goto fail;
    if (n_labels > 0) {
        f->label_names = sy_calloc(n_labels, sizeof *f->label_names);
        f->order = sy_calloc(n_labels, sizeof *f->order);
        if (!f->label_names || !f->order)
            goto fail;
        f->n_labels = n_labels;
        for (size_t i = 0; i < n_labels; i++) {
            f->label_names[i] = sy_strdup(label_names[i]);
            if (!f->label_names[i])
                goto fail;
        }
        /* insertion sort of label indices by name (n <= 16) */
        for (size_t i = 0; i < n_labels; i++) {
            size_t j = i;
            while (j > 0 && strcmp(label_names[f->order[j - 1]], label_names[i]) > 0) {
                f->order[j] = f->order[j - 1];
                j--;
            }
            f->order[j] = i;
        }
    }
    if (n_buckets > 0) {
        f->buckets = sy_calloc(n_buckets, sizeof *f->buckets);
        if (!f->buckets)
            goto fail;
        memcpy(f->buckets, buckets, n_buckets * sizeof *buckets);
        f->n_buckets = n_buckets;
    }
    if (type == MX_HISTOGRAM) {
        f->le = sy_calloc(n_buckets + 1, sizeof *f->le);
        if (!f->le)
            goto fail;
        for (size_t i = 0; i <= n_buckets; i++)
            fmt_value(i < n_buckets ? buckets[i] : INFINITY, f->le[i]);
    }
    if (n_labels == 0) {
        /* like prometheus_client, an unlabelled metric exists (at 0) from declaration on */
        mx_series_t *s = series_new(f, NULL);
        if (!s)
            goto fail;
        f->series_head = f->series_tail = s;
    }
    if (r->tail)
        r->tail->next = f;
    else
        r->head = f;
    r->tail = f;
    pthread_mutex_unlock(&r->mu);
    return f;
fail:
    pthread_mutex_unlock(&r->mu);
    family_free(f);
    return NULL;
}

static mx_series_t *series_new(mx_family_t *f, const char *const *values)
{
    mx_series_t *s = sy_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->fam = f;
    atomic_init(&s->bits, d2u(0.0));
    atomic_init(&s->sum_bits, d2u(0.0));
    if (f->n_labels > 0) {
        s->values = sy_calloc(f->n_labels, sizeof *s->values);
        if (!s->values)
            goto fail;
        for (size_t i = 0; i < f->n_labels; i++) {
            s->values[i] = sy_strdup(values[i]);
            if (!s->values[i])
                goto fail;
        }
    }
    if (f->type == MX_HISTOGRAM) {
        s->counts = sy_calloc(f->n_buckets + 1, sizeof *s->counts);
        if (!s->counts)
            goto fail;
        for (size_t i = 0; i <= f->n_buckets; i++)
            atomic_init(&s->counts[i], 0);
    }
    if (series_render_labels(s) != ST_OK)
        goto fail;
    return s;
fail:
    series_free(s, f->n_labels);
    return NULL;
}

mx_series_t *mx_series_get(mx_family_t *f, const char *const *label_values, size_t n_values)
{
    if (!f || n_values != f->n_labels || (n_values > 0 && !label_values))
        return NULL;
    for (size_t i = 0; i < n_values; i++)
        if (!label_values[i])
            return NULL;
    mx_registry_t *r = f->reg;
    pthread_mutex_lock(&r->mu);
    mx_series_t *s;
    for (s = f->series_head; s; s = s->next) {
        size_t i = 0;
        while (i < n_values && strcmp(s->values[i], label_values[i]) == 0)
            i++;
        if (i == n_values)
            goto out;
    }
    s = series_new(f, label_values);
    if (s) {
        if (f->series_tail)
            f->series_tail->next = s;
        else
            f->series_head = s;
        f->series_tail = s;
    }
out:
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* ---- updates (lock-free; NULL series are ignored so an OOM at creation is not fatal) ---- */

void mx_counter_add(mx_series_t *s, double v)
{
    if (!s || !(v >= 0))
        return;
    SY_ASSERT(s->fam->type == MX_COUNTER);
    atomic_add_double(&s->bits, v);
}

void mx_counter_inc(mx_series_t *s)
{
    mx_counter_add(s, 1.0);
}

void mx_gauge_set(mx_series_t *s, double v)
{
    if (!s)
        return;
    SY_ASSERT(s->fam->type == MX_GAUGE);
    atomic_store_explicit(&s->bits, d2u(v), memory_order_relaxed);
}

void mx_gauge_add(mx_series_t *s, double v)
{
    if (!s)
        return;
    SY_ASSERT(s->fam->type == MX_GAUGE);
    atomic_add_double(&s->bits, v);
}

void mx_hist_observe(mx_series_t *s, double v)
{
    if (!s)
        return;
    const mx_family_t *f = s->fam;
    SY_ASSERT(f->type == MX_HISTOGRAM);
    /* first bucket with v <= bound (binary search); NaN lands in +Inf */
    size_t lo = 0, hi = f->n_buckets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->buckets[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&s->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&s->sum_bits, v);
}

static uint64_t load_u64(const _Atomic uint64_t *p)
{
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}

double mx_series_value(const mx_series_t *s)
{
    if (!s)
        return 0.0;
    if (s->fam->type != MX_HISTOGRAM)
        return u2d(load_u64(&s->bits));
    uint64_t n = 0;
    for (size_t i = 0; i <= s->fam->n_buckets; i++)
        n += load_u64(&s->counts[i]);
    return (double)n;
}

double mx_series_sum(const mx_series_t *s)
{
    if (!s || s->fam->type != MX_HISTOGRAM)
        return 0.0;
    return u2d(load_u64(&s->sum_bits));
}

/* ---- rendering ---- */

/* Python's repr(float) ("shortest round-trip", exponent form below 1e-4 and from 1e16), then
 * prometheus_client's floatToGoString munging. Writes a NUL-terminated string of at most 31
 * characters to out[32]. Integral values below 1e15 (counts, token totals, byte gauges: most
 * samples) take a direct path; its output is the same, since such an integer is exact in a
 * double and its significant digits are the shortest round-trip form. The others search the
 * shortest %.*e that reads back equal. */
static void fmt_value(double d, char out[MX_NUM_MAX])
{
    if (isnan(d) || isinf(d) || d == 0) {
        const char *s = isnan(d)   ? "NaN"
                        : isinf(d) ? (d > 0 ? "+Inf" : "-Inf")
                                   : (signbit(d) ? "-0.0" : "0.0");
        memcpy(out, s, strlen(s) + 1);
        return;
    }
    bool neg = d < 0;
    char digits[20];
    size_t nd = 0;
    int e;
    double a = neg ? -d : d;
    if (a < 1e15 && a == floor(a)) {
        char rev[20];
        size_t nr = 0;
        for (uint64_t u = (uint64_t)a; u; u /= 10)
            rev[nr++] = (char)('0' + u % 10);
        e = (int)nr - 1;
        while (nr > 0)
            digits[nd++] = rev[--nr];
        while (nd > 1 && digits[nd - 1] == '0')
            nd--;
    } else {
        char sci[40];
        for (int p = 1; p <= 17; p++) {
            snprintf(sci, sizeof sci, "%.*e", p - 1, d);
            if (strtod(sci, NULL) == d)
                break;
        }
        /* sci = [-]D[.DDD]e[+-]XX: split into digit string (<= 17 digits) and exponent */
        const char *s = sci + neg;
        while (*s && *s != 'e') {
            if (*s != '.' && nd < sizeof digits - 1)
                digits[nd++] = *s;
            s++;
        }
        if (nd == 0)
            digits[nd++] = '0'; /* cannot happen with %e output; keeps the reads below defined */
        while (nd > 1 && digits[nd - 1] == '0')
            nd--;
        e = (int)strtol(s + (*s == 'e'), NULL, 10); /* -324 .. 308 */
    }

    /* longest output: "-" + 17 digits + "." + "e-324" or fixed with 16 integer digits: < 32 */
    size_t n = 0;
    if (neg)
        out[n++] = '-';
    if (e >= -4 && e < 16) {
        if (!neg && e >= 6) {
            /* floatToGoString: positive values with more than 6 integer digits go exponential,
             * mantissa with trailing zeros (and a bare dot) stripped, exponent as "e+0<e>" */
            out[n++] = digits[0];
            if (nd > 1) {
                out[n++] = '.';
                for (size_t i = 1; i < nd; i++)
                    out[n++] = digits[i];
            }
            out[n++] = 'e';
            out[n++] = '+';
            out[n++] = '0';
            if (e >= 10)
                out[n++] = (char)('0' + e / 10);
            out[n++] = (char)('0' + e % 10);
        } else if (e >= 0) {
            for (int i = 0; i <= e; i++)
                out[n++] = (size_t)i < nd ? digits[i] : '0';
            out[n++] = '.';
            if ((size_t)e + 1 < nd)
                for (size_t i = (size_t)e + 1; i < nd; i++)
                    out[n++] = digits[i];
            else
                out[n++] = '0';
        } else {
            out[n++] = '0';
            out[n++] = '.';
            for (int i = 0; i < -e - 1; i++)
                out[n++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[n++] = digits[i];
        }
    } else {
        out[n++] = digits[0];
        if (nd > 1) {
            out[n++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[n++] = digits[i];
        }
        out[n++] = 'e';
        out[n++] = e < 0 ? '-' : '+';
        int ae = e < 0 ? -e : e;
        if (ae >= 100)
            out[n++] = (char)('0' + ae / 100);
        out[n++] = (char)('0' + ae / 10 % 10);
        out[n++] = (char)('0' + ae % 10);
    }
    out[n] = '\0';
}

static int append_escaped(sy_buf_t *out, const char *s, bool quote)
{
    for (; *s; s++) {
        int rc;
        if (*s == '\\')
            rc = sy_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            rc = sy_buf_append(out, "\\n", 2);
        else if (quote && *s == '"')
            rc = sy_buf_append(out, "\\\"", 2);
        else
            rc = sy_buf_append_char(out, *s);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* Appends "{k="v",...}" with labels sorted by name; le (may be NULL) is merged in sorted place. */
static int append_labels(sy_buf_t *out, const mx_family_t *f, const char *const *values,
                         const char *le)
{
    if (f->n_labels == 0 && !le)
        return ST_OK;
    int rc = sy_buf_append_char(out, '{');
    bool first = true, le_done = le == NULL;
    for (size_t k = 0; rc == ST_OK && k <= f->n_labels; k++) {
        const char *lname = k < f->n_labels ? f->label_names[f->order[k]] : NULL;
        if (!le_done && (!lname || strcmp("le", lname) < 0)) {
            rc = sy_buf_appendf(out, "%sle=\"%s\"", first ? "" : ",", le);
            first = false;
            le_done = true;
        }
        if (!lname || rc != ST_OK)
            break;
        rc = sy_buf_appendf(out, "%s%s=\"", first ? "" : ",", lname);
        first = false;
        if (rc == ST_OK)
            rc = append_escaped(out, values[f->order[k]], true);
        if (rc == ST_OK)
            rc = sy_buf_append_char(out, '"');
    }
    if (rc == ST_OK)
        rc = sy_buf_append_char(out, '}');
    return rc;
}

/* Renders a new series' label strings once (labels never change), so a scrape only copies them:
 * s->lbl always; for histograms also lbl_pre / lbl_post around the merged le="...". */
static int series_render_labels(mx_series_t *s)
{
    const mx_family_t *f = s->fam;
    sy_buf_t b = SY_BUF_INIT;
    int rc = append_labels(&b, f, (const char *const *)s->values, NULL);
    if (rc == ST_OK)
        s->lbl = sy_strndup(b.data ? b.data : "", b.len);
    if (rc == ST_OK && f->type == MX_HISTOGRAM) {
        /* render with a placeholder bound and split around it: escaping turns every '"' of a
         * value into \", so the unescaped le="\x01" occurs only where le goes */
        sy_buf_reset(&b);
        rc = append_labels(&b, f, (const char *const *)s->values, "\x01");
        const char *mark = rc == ST_OK ? strstr(b.data, "le=\"\x01\"") : NULL;
        if (mark) {
            s->lbl_pre = sy_strndup(b.data, (size_t)(mark - b.data));
            s->lbl_post = sy_strdup(mark + 6);
        } else if (rc == ST_OK) {
            rc = ST_STATE;
        }
    }
    sy_buf_deinit(&b);
    if (rc == ST_OK && (!s->lbl || (f->type == MX_HISTOGRAM && (!s->lbl_pre || !s->lbl_post))))
        rc = ST_NOMEM;
    return rc;
}

/* name + suffix + labels (pre, then optionally le="X" and post) + " " + value + "\n", without
 * printf: a scrape renders a few hundred of these */
static int append_line(sy_buf_t *out, const mx_family_t *f, const char *suffix, const char *pre,
                       const char *le, const char *post, double v)
{
    char num[MX_NUM_MAX];
    fmt_value(v, num);
    size_t ln = f->name_len, ls = strlen(suffix), lp = strlen(pre), ll = le ? strlen(le) : 0,
           lq = le ? strlen(post) : 0, lv = strlen(num);
    int rc = sy_buf_reserve(out, ln + ls + lp + ll + lq + lv + 10);
    if (rc != ST_OK)
        return rc;
    char *w = out->data + out->len;
    memcpy(w, f->name, ln);
    w += ln;
    memcpy(w, suffix, ls);
    w += ls;
    memcpy(w, pre, lp);
    w += lp;
    if (le) {
        memcpy(w, "le=\"", 4);
        w += 4;
        memcpy(w, le, ll);
        w += ll;
        *w++ = '"';
        memcpy(w, post, lq);
        w += lq;
    }
    *w++ = ' ';
    memcpy(w, num, lv);
    w += lv;
    *w++ = '\n';
    *w = '\0';
    out->len = (size_t)(w - out->data);
    return ST_OK;
}

/* The samples of a family to render (mx_registry_render_query). */
enum { MX_S_VALUE = 1u, MX_S_BUCKET = 2u, MX_S_COUNT = 4u, MX_S_SUM = 8u, MX_S_ALL = 15u };

/* Renders the samples in mask; with filtered set, the HELP and TYPE lines only when a sample line
 * follows (prometheus_client drops a restricted family without samples). */
static int render_family(const mx_family_t *f, unsigned mask, bool filtered, sy_buf_t *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    if (filtered && (mask == 0 || !f->series_head))
        return ST_OK;
    const char *suffix = f->type == MX_COUNTER ? "_total" : "";
    int rc = sy_buf_appendf(out, "# HELP %s%s ", f->name, suffix);
    if (rc == ST_OK)
        rc = append_escaped(out, f->help, false);
    if (rc == ST_OK)
        rc = sy_buf_appendf(out, "\n# TYPE %s%s %s\n", f->name, suffix, type_names[f->type]);
    for (const mx_series_t *s = f->series_head; rc == ST_OK && s; s = s->next) {
        if (f->type != MX_HISTOGRAM) {
            rc = append_line(out, f, suffix, s->lbl, NULL, NULL, u2d(load_u64(&s->bits)));
            continue;
        }
        uint64_t cum = 0;
        for (size_t i = 0; rc == ST_OK && i <= f->n_buckets; i++) {
            cum += load_u64(&s->counts[i]);
            if (mask & MX_S_BUCKET)
                rc = append_line(out, f, "_bucket", s->lbl_pre, f->le[i], s->lbl_post, (double)cum);
        }
        if (rc == ST_OK && (mask & MX_S_COUNT))
            rc = append_line(out, f, "_count", s->lbl, NULL, NULL, (double)cum);
        if (rc == ST_OK && (mask & MX_S_SUM))
            rc = append_line(out, f, "_sum", s->lbl, NULL, NULL, u2d(load_u64(&s->sum_bits)));
    }
    return rc;
}

int mx_registry_render(mx_registry_t *r, sy_buf_t *out)
{
    return mx_registry_render_query(r, NULL, 0, out);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes s[0..n) into out (room for n bytes), '+' as a space; a malformed escape is kept
 * as it is, as Python's urllib.parse.unquote keeps it. Returns the decoded length. */
static size_t url_unescape(const char *s, size_t n, char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '+') {
            out[w++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && (hi = hex_value(s[i + 1])) >= 0 &&
                   (lo = hex_value(s[i + 2])) >= 0) {
            out[w++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[w++] = s[i];
        }
    }
    return w;
}

/* True when sample name n is family f's name followed by suffix. */
static bool sample_is(sy_slice_t n, const mx_family_t *f, const char *suffix)
{
    size_t ls = strlen(suffix);
    return n.len == f->name_len + ls && memcmp(n.ptr, f->name, f->name_len) == 0 &&
           memcmp(n.ptr + f->name_len, suffix, ls) == 0;
}

static unsigned family_mask(const mx_family_t *f, const sy_slice_t *names, size_t n)
{
    unsigned m = 0;
    for (size_t i = 0; i < n; i++) {
        if (f->type == MX_GAUGE)
            m |= sample_is(names[i], f, "") ? MX_S_VALUE : 0u;
        else if (f->type == MX_COUNTER)
            m |= sample_is(names[i], f, "_total") ? MX_S_VALUE : 0u;
        else
            m |= (sample_is(names[i], f, "_bucket") ? MX_S_BUCKET : 0u) |
                 (sample_is(names[i], f, "_count") ? MX_S_COUNT : 0u) |
                 (sample_is(names[i], f, "_sum") ? MX_S_SUM : 0u);
    }
    return m;
}

/* Collects the non-empty name[] values of query into names (decoded into text, which has room for
 * len bytes); returns their count. */
static size_t query_names(const char *q, size_t len, char *text, sy_slice_t *names)
{
    size_t n = 0, w = 0, i = 0;
    while (i < len) {
        const char *amp = memchr(q + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *eq = memchr(q + i, '=', end - i);
        if (eq) {
            size_t klen = url_unescape(q + i, (size_t)(eq - q) - i, text + w);
            bool is_name = klen == 6 && memcmp(text + w, "name[]", 6) == 0;
            if (is_name) {
                size_t voff = (size_t)(eq - q) + 1;
                size_t vlen = url_unescape(q + voff, end - voff, text + w);
                if (vlen > 0) {
                    names[n++] = (sy_slice_t){text + w, vlen};
                    w += vlen;
                }
            }
        }
        i = end + 1;
    }
    return n;
}

int mx_registry_render_query(mx_registry_t *r, const char *query, size_t len, sy_buf_t *out)
{
    char *text = NULL;
    sy_slice_t *names = NULL;
    size_t n = 0;
    if (query && len > 0) {
        text = sy_malloc(len);
        names = sy_malloc((len / 2 + 1) * sizeof *names);
        if (!text || !names) {
            sy_free(text);
            sy_free(names);
            return ST_NOMEM;
        }
        n = query_names(query, len, text, names);
    }
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_collectors; i++)
        r->collectors[i].cb(r->collectors[i].udata);
    int rc = ST_OK;
    for (const mx_family_t *f = r->head; rc == ST_OK && f; f = f->next)
        rc = render_family(f, n ? family_mask(f, names, n) : MX_S_ALL, n > 0, out);
    pthread_mutex_unlock(&r->mu);
    sy_free(text);
    sy_free(names);
    return rc;
}

size_t mx_buckets_125(double max, double *out, size_t cap)
{
    static const double mant[] = {1, 2, 5};
    size_t n = 0;
    for (double scale = 1; n < cap; scale *= 10) {
        for (size_t i = 0; i < 3; i++) {
            double v = mant[i] * scale;
            if (v > max || n >= cap)
                return n;
            out[n++] = v;
        }
    }
    return n;
}
