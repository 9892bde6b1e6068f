/*
 * metrics.h - Prometheus text exposition (format 0.0.4): counters, gauges and histograms with
 * labels, grouped in a registry.
 *
 * A family is declared once with its label names; a series is fetched once per label-value
 * combination (mx_*_series) and then updated lock-free on the hot path. Counter families get the
 * "_total" suffix in the exposition, as prometheus_client does; values print as floats ("3.0").
 * Gauges may also be computed at scrape time by a callback.
 * Does not: expire series, or support summaries.
 * Thread-safety: updates (inc/set/observe) are lock-free and may come from any thread; family and
 * series creation and mx_registry_render take the registry mutex.
 */
#ifndef SY_METRICS_H
#define SY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct mx_registry mx_registry_t;
typedef struct mx_family mx_family_t;
typedef struct mx_series mx_series_t;

typedef enum mx_type { MX_COUNTER, MX_GAUGE, MX_HISTOGRAM } mx_type_t;

#define MX_MAX_LABELS 16

/* Returns an owned registry (free with mx_registry_destroy) or NULL. */
mx_registry_t *mx_registry_create(void);
/* Frees every family and series. Accepts NULL. */
void mx_registry_destroy(mx_registry_t *r);

/* Declares a family. name is the exposition base name (for counters without "_total").
 * label_names: n_labels borrowed strings (copied). buckets (histograms only): n_buckets strictly
 * increasing upper bounds, copied; +Inf is implicit. Returns a family owned by the registry, or
 * NULL on ST_NOMEM / invalid arguments. Declaring the same name twice returns the first. */
mx_family_t *mx_family_create(mx_registry_t *r, mx_type_t type, const char *name, const char *help,
                              const char *const *label_names, size_t n_labels,
                              const double *buckets, size_t n_buckets);

/* Returns the series for these label values (created on first use; values copied), owned by the
 * registry, or NULL on ST_NOMEM / wrong count. Label values are escaped on output. */
mx_series_t *mx_series_get(mx_family_t *f, const char *const *label_values, size_t n_values);

void mx_counter_add(mx_series_t *s, double v); /* v >= 0 */
void mx_counter_inc(mx_series_t *s);
void mx_gauge_set(mx_series_t *s, double v);
void mx_gauge_add(mx_series_t *s, double v);
void mx_hist_observe(mx_series_t *s, double v);
/* Reads the current value (counter/gauge) or count (histogram). For tests and internal use. */
double mx_series_value(const mx_series_t *s);
/* Histogram sum (0 for other types). */
double mx_series_sum(const mx_series_t *s);

/* Scrape-time callback: called under the registry lock at render time to refresh gauges. */
typedef void (*mx_collect_cb)(void *udata);
void mx_registry_on_collect(mx_registry_t *r, mx_collect_cb cb, void *udata);
/* Removes the callback registered with exactly (cb, udata) (the owner of udata is going away).
 * No-op when not registered or r is NULL. Do not call from inside a collect callback. */
void mx_registry_off_collect(mx_registry_t *r, mx_collect_cb cb, void *udata);

/* Appends the whole exposition to out. ST_OK or ST_NOMEM. */
int mx_registry_render(mx_registry_t *r, sy_buf_t *out);

/* Appends the exposition restricted as prometheus_client's HTTP handlers restrict it (and so vLLM's
 * /metrics, a prometheus_client ASGI app): query[0..len) is a URL query string ("a=b&c=d", no '?');
 * every "name[]=SAMPLE" pair (key and value percent-decoded, '+' read as a space) names one sample
 * name: a gauge's "x", a counter's "x_total", a histogram's "x_bucket", "x_count" or "x_sum". Only
 * the listed samples are rendered, and a family's HELP and TYPE lines only when at least one of its
 * samples is. Without any name[] pair the whole exposition is rendered (mx_registry_render); other
 * keys are ignored. Collect callbacks run in both cases. ST_OK or ST_NOMEM. */
int mx_registry_render_query(mx_registry_t *r, const char *query, size_t len, sy_buf_t *out);

/* Bucket helpers: fills out with 1-2-5 series up to max (inclusive); returns the count. */
size_t mx_buckets_125(double max, double *out, size_t cap);

#endif
