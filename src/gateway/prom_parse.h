/*
 * prom_parse.h - Prometheus text exposition format (0.0.4) parser: a pure function over a buffer
 * that hands every sample line to a callback as slices (metric name, label names and raw label
 * values) plus the parsed value and optional timestamp.
 *
 * Comments (# HELP, # TYPE, anything starting with '#') and blank lines are skipped. A malformed
 * line (bad name, unterminated label value, bad escape, missing or bad value, trailing junk, too
 * long, too many labels) is counted and skipped; parsing resumes at the next line. Never reads
 * outside text[0..len) and needs no NUL terminator.
 * Does not: validate metric families (TYPE vs suffixes), de-duplicate series, allocate.
 * Thread-safety: pure; reentrant.
 */
#ifndef SY_PROM_PARSE_H
#define SY_PROM_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define PROM_MAX_LINE 65536 /* bytes per line (without the newline); longer lines are malformed */
#define PROM_MAX_LABELS 64  /* labels per sample; more is malformed */

typedef struct prom_label {
    sy_slice_t name;  /* [a-zA-Z_][a-zA-Z0-9_]* */
    sy_slice_t value; /* raw, between the quotes: escapes (\\ \" \n) not processed */
} prom_label_t;

typedef struct prom_sample {
    sy_slice_t name;            /* [a-zA-Z_:][a-zA-Z0-9_:]* */
    const prom_label_t *labels; /* n_labels entries, valid during the callback only */
    size_t n_labels;
    double value; /* +Inf / -Inf / NaN accepted */
    bool has_timestamp;
    int64_t timestamp_ms;
} prom_sample_t;

typedef struct prom_stats {
    size_t lines;     /* non-empty lines seen (samples + comments + malformed) */
    size_t samples;   /* callbacks made */
    size_t comments;  /* '#' lines */
    size_t malformed; /* lines rejected */
} prom_stats_t;

/* Called once per well-formed sample line. s and everything it points to are borrowed for the
 * duration of the call (slices point into the caller's text). */
typedef void (*prom_on_sample_cb)(const prom_sample_t *s, void *udata);

/* Parses text[0..len). on_sample may be NULL (counting only). stats may be NULL; otherwise it is
 * reset and filled. Returns ST_OK (malformed lines are counted, not fatal) or ST_INVAL when text is
 * NULL with len > 0. */
int prom_parse(const char *text, size_t len, prom_on_sample_cb on_sample, void *udata,
               prom_stats_t *stats);

/* Returns the first label named name, or NULL. */
const prom_label_t *prom_sample_label(const prom_sample_t *s, const char *name);

/* Unescapes a raw label value into out[0..cap) (NUL-terminated when cap > 0). Returns the full
 * unescaped length (may be >= cap: the output was truncated), or ST_PROTO on a bad escape
 * (cannot happen for values delivered by prom_parse). */
int prom_label_unescape(sy_slice_t raw, char *out, size_t cap);

/* True if the raw label value unescapes to exactly s (no allocation). */
bool prom_label_value_eq(sy_slice_t raw, const char *s);

/* Parses a label value (raw) as an unsigned decimal integer (digits only, optionally written as a
 * float with a zero fraction like "16.0"). ST_OK, or ST_INVAL ("None", empty, overflow, junk). */
int prom_label_value_u64(sy_slice_t raw, uint64_t *out);

#endif
