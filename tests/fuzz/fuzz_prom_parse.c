/*
 * fuzz_prom_parse.c - libFuzzer harness for prom_parse and gw_scrape_extract: every sample's
 * slices must lie inside the input, names must be well-formed, label values must unescape (and
 * compare equal to their own unescaping), the line counts must add up, and extracted metrics must
 * be finite with kv_usage in 0..1. abort()s on a violation. Also built with replay_main.c for
 * ctest (tests/fuzz/corpus/prom_parse).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "gateway/gw_scrape.h"
#include "gateway/prom_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool name_start(char c, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
}

static bool name_char(char c, bool colon)
{
    return name_start(c, colon) || (c >= '0' && c <= '9');
}

typedef struct fz {
    const char *buf;
    size_t len;
    size_t samples;
} fz_t;

static void check_slice(const fz_t *f, sy_slice_t s)
{
    CHECK(s.ptr >= f->buf && s.ptr + s.len <= f->buf + f->len);
    CHECK(memchr(s.ptr, '\n', s.len) == NULL);
}

static void fz_on_sample(const prom_sample_t *s, void *udata)
{
    fz_t *f = udata;
    f->samples++;
    check_slice(f, s->name);
    CHECK(s->name.len > 0 && name_start(s->name.ptr[0], true));
    for (size_t i = 0; i < s->name.len; i++)
        CHECK(name_char(s->name.ptr[i], true));
    CHECK(s->n_labels <= PROM_MAX_LABELS);
    for (size_t i = 0; i < s->n_labels; i++) {
        const prom_label_t *l = &s->labels[i];
        check_slice(f, l->name);
        check_slice(f, l->value);
        CHECK(l->name.len > 0 && name_start(l->name.ptr[0], false));
        static char tmp[PROM_MAX_LINE + 1];
        int n = prom_label_unescape(l->value, tmp, sizeof tmp);
        CHECK(n >= 0 && (size_t)n <= l->value.len);
        if (memchr(tmp, '\0', (size_t)n) == NULL)
            CHECK(prom_label_value_eq(l->value, tmp));
        uint64_t v;
        (void)prom_label_value_u64(l->value, &v);
        CHECK(prom_sample_label(s, "") == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {(const char *)data, size, 0};
    prom_stats_t st;
    CHECK(prom_parse(f.buf, size, fz_on_sample, &f, &st) == ST_OK);
    CHECK(st.samples == f.samples);
    CHECK(st.samples + st.comments + st.malformed == st.lines);

    gw_engine_metrics_t m;
    memset(&m, 0, sizeof m);
    size_t bad = 0;
    int rc = gw_scrape_extract_ex(f.buf, size, &m, &bad);
    CHECK(rc == ST_OK || rc == ST_NOTFOUND);
    CHECK(bad == st.malformed);
    if (rc == ST_OK) {
        CHECK(isfinite(m.waiting) || isinf(m.waiting)); /* huge sums may overflow to +Inf */
        CHECK(!isnan(m.waiting) && !isnan(m.running) && m.waiting >= 0 && m.running >= 0);
        CHECK(m.kv_usage >= 0.0 && m.kv_usage <= 1.0);
    }
    return 0;
}
