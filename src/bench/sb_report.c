/*
 * sb_report.c - results JSON, Markdown summary and SVG charts for `switchyard bench`
 * (see sb_report.h). JSON is built with jansson (the numbers are few); the SVG is plain text:
 * two panels, "nice" axis ticks (1, 2, 5 x 10^k), a polyline with markers per series and a legend,
 * no scripts, no external resources.
 * Thread-safety: reentrant.
 */
#include "bench/sb_report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/status.h"

static json_t *summary_json(sb_dist_t *d)
{
    sb_summary_t s;
    sb_dist_summarize(d, &s);
    return json_pack("{sI sf sf sf sf sf sf sf}", "n", (json_int_t)s.n, "mean", s.mean, "min",
                     s.min, "p50", s.p50, "p90", s.p90, "p95", s.p95, "p99", s.p99, "max", s.max);
}

json_t *sb_report_stage_json(sb_stage_stats_t *s, size_t index)
{
    double dur = sb_stage_duration_s(s);
    double inv = dur > 0 ? 1.0 / dur : 0.0;
    uint64_t errors = sb_stage_errors(s);
    uint64_t rejected = s->by_outcome[SB_REJECTED];
    json_t *o = json_object();
    json_t *byr = json_object();
    json_t *det = json_object();
    json_t *eps = json_object();
    if (!o || !byr || !det || !eps)
        goto fail;
    for (int i = 1; i < SB_OUTCOME__COUNT; i++)
        if (s->by_outcome[i])
            json_object_set_new(byr, sb_outcome_name(i),
                                json_integer((json_int_t)s->by_outcome[i]));
    for (size_t i = 0; i < s->n_detail; i++)
        json_object_set_new(det, s->detail[i], json_integer((json_int_t)s->detail_count[i]));
    for (size_t i = 0; i < s->n_ep; i++)
        json_object_set_new(eps, s->ep_name[i][0] ? s->ep_name[i] : "(none)",
                            json_integer((json_int_t)s->ep_count[i]));
    if (s->ep_other)
        json_object_set_new(eps, "(other)", json_integer((json_int_t)s->ep_other));
    double share = s->prompt_tokens ? (double)s->cached_tokens / (double)s->prompt_tokens : 0.0;
    double good_share = s->n_done ? (double)s->n_good / (double)s->n_done : 0.0;
    json_object_set_new(o, "index", json_integer((json_int_t)index));
    json_object_set_new(o, "rate", s->concurrency ? json_null() : json_real(s->rate));
    json_object_set_new(o, "concurrency",
                        s->concurrency ? json_integer(s->concurrency) : json_null());
    json_object_set_new(o, "duration_s", json_real(dur));
    json_object_set_new(o, "requests",
                        json_pack("{sI sI sI sI sI sI}", "sent", (json_int_t)s->n_sent, "completed",
                                  (json_int_t)s->n_done, "ok", (json_int_t)s->n_ok, "errors",
                                  (json_int_t)errors, "rejected", (json_int_t)rejected, "skipped",
                                  (json_int_t)s->n_skipped));
    json_object_set_new(o, "error_rate",
                        json_real(s->n_done ? (double)errors / (double)s->n_done : 0.0));
    json_object_set_new(o, "rejection_rate",
                        json_real(s->n_done ? (double)rejected / (double)s->n_done : 0.0));
    json_object_set_new(o, "errors_by_reason", byr);
    json_object_set_new(o, "error_details", det);
    json_object_set_new(o, "request_throughput", json_real((double)s->n_ok * inv));
    json_object_set_new(o, "output_token_throughput",
                        json_real((double)s->completion_tokens * inv));
    json_object_set_new(o, "input_token_throughput", json_real((double)s->prompt_tokens * inv));
    json_object_set_new(o, "ttft_ms", summary_json(&s->ttft));
    json_object_set_new(o, "itl_ms", summary_json(&s->itl));
    json_object_set_new(o, "tpot_ms", summary_json(&s->tpot));
    json_object_set_new(o, "e2e_ms", summary_json(&s->e2e));
    json_object_set_new(o, "tokens",
                        json_pack("{sI sI sI sf sI sI sI}", "prompt", (json_int_t)s->prompt_tokens,
                                  "completion", (json_int_t)s->completion_tokens, "cached",
                                  (json_int_t)s->cached_tokens, "cached_share", share,
                                  "cached_reported", (json_int_t)s->n_cached_reported,
                                  "usage_missing", (json_int_t)s->n_usage_missing,
                                  "output_len_mismatch", (json_int_t)s->n_len_mismatch));
    json_object_set_new(o, "goodput",
                        json_pack("{sf sf sI sf sf}", "slo_ttft_ms", s->slo.ttft_ms, "slo_itl_ms",
                                  s->slo.itl_ms, "good", (json_int_t)s->n_good, "share", good_share,
                                  "rate", (double)s->n_good * inv));
    json_object_set_new(o, "endpoints", eps);
    json_object_set_new(o, "max_arrival_lag_ms", json_real(s->max_arrival_lag_ms));
    json_object_set_new(
        o, "mean_arrival_lag_ms",
        json_real(s->n_arrivals ? s->sum_arrival_lag_ms / (double)s->n_arrivals : 0.0));
    return o;
fail:
    json_decref(o);
    json_decref(byr);
    json_decref(det);
    json_decref(eps);
    return NULL;
}

/* ---------------------------------------------------------------- Markdown */

static double jnum(const json_t *o, const char *path1, const char *path2)
{
    const json_t *v = json_object_get(o, path1);
    if (path2)
        v = json_object_get(v, path2);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static int md_dist_row(sy_buf_t *b, const json_t *st, const char *key, const char *name)
{
    const json_t *d = json_object_get(st, key);
    return sy_buf_appendf(b, "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", name,
                          jnum(d, "n", NULL), jnum(d, "mean", NULL), jnum(d, "p50", NULL),
                          jnum(d, "p90", NULL), jnum(d, "p99", NULL), jnum(d, "max", NULL));
}

int sb_report_markdown(const json_t *results, sy_buf_t *out)
{
    int rc = ST_OK;
    const json_t *cfg = json_object_get(results, "config");
    const char *label = json_string_value(json_object_get(results, "label"));
    rc |= sy_buf_appendf(out, "# switchyard bench%s%s\n\n", label ? ": " : "", label ? label : "");
    if (cfg) {
        rc |= sy_buf_appendf(
            out, "url `%s`, model `%s`, api `%s`, workload `%s`, arrival `%s`, seed %.0f\n\n",
            json_string_value(json_object_get(cfg, "url")) ?: "?",
            json_string_value(json_object_get(cfg, "model")) ?: "?",
            json_string_value(json_object_get(cfg, "api")) ?: "?",
            json_string_value(json_object_get(cfg, "workload")) ?: "?",
            json_string_value(json_object_get(cfg, "arrival")) ?: "?", jnum(cfg, "seed", NULL));
    }
    const json_t *stages = json_object_get(results, "stages");
    size_t i;
    const json_t *st;
    json_array_foreach(stages, i, st)
    {
        const json_t *c = json_object_get(st, "concurrency");
        if (json_is_integer(c))
            rc |= sy_buf_appendf(out, "## Stage %zu: concurrency %lld\n\n", i,
                                 (long long)json_integer_value(c));
        else
            rc |=
                sy_buf_appendf(out, "## Stage %zu: rate %.3g req/s\n\n", i, jnum(st, "rate", NULL));
        const json_t *rq = json_object_get(st, "requests");
        rc |= sy_buf_appendf(
            out,
            "%.0f sent, %.0f ok, %.0f errors (%.1f%%), %.0f rejected (429), %.0f skipped in "
            "%.2f s; %.3f req/s, %.1f output tok/s, %.1f input tok/s; goodput %.3f req/s "
            "(%.1f%% of requests; SLO TTFT %.0f ms, ITL/TPOT %.0f ms; 0 = none); cached "
            "tokens %.1f%% of prompt tokens\n\n",
            jnum(rq, "sent", NULL), jnum(rq, "ok", NULL), jnum(rq, "errors", NULL),
            100.0 * jnum(st, "error_rate", NULL), jnum(rq, "rejected", NULL),
            jnum(rq, "skipped", NULL), jnum(st, "duration_s", NULL),
            jnum(st, "request_throughput", NULL), jnum(st, "output_token_throughput", NULL),
            jnum(st, "input_token_throughput", NULL), jnum(st, "goodput", "rate"),
            100.0 * jnum(st, "goodput", "share"), jnum(st, "goodput", "slo_ttft_ms"),
            jnum(st, "goodput", "slo_itl_ms"), 100.0 * jnum(st, "tokens", "cached_share"));
        rc |= sy_buf_append_str(out, "| metric (ms) | n | mean | p50 | p90 | p99 | max |\n"
                                     "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        rc |= md_dist_row(out, st, "ttft_ms", "TTFT");
        rc |= md_dist_row(out, st, "itl_ms", "ITL (per chunk)");
        rc |= md_dist_row(out, st, "tpot_ms", "TPOT (per request)");
        rc |= md_dist_row(out, st, "e2e_ms", "E2E");
        const json_t *byr = json_object_get(st, "errors_by_reason");
        if (json_object_size(byr)) {
            rc |= sy_buf_append_str(out, "\nErrors by reason:");
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)byr, k, v)
            {
                rc |= sy_buf_appendf(out, " %s %lld;", k, (long long)json_integer_value(v));
            }
            rc |= sy_buf_append_str(out, "\n");
            const json_t *det = json_object_get(st, "error_details");
            json_object_foreach((json_t *)det, k, v)
            {
                rc |= sy_buf_appendf(out, "- `%s`: %lld\n", k, (long long)json_integer_value(v));
            }
        }
        const json_t *eps = json_object_get(st, "endpoints");
        if (json_object_size(eps) > 1 ||
            (json_object_size(eps) == 1 && !json_object_get(eps, "(none)"))) {
            rc |= sy_buf_append_str(out, "\nRequests per endpoint:");
            const char *k;
            const json_t *v;
            json_object_foreach((json_t *)eps, k, v)
            {
                rc |= sy_buf_appendf(out, " `%s` %lld;", k, (long long)json_integer_value(v));
            }
            rc |= sy_buf_append_str(out, "\n");
        }
        rc |= sy_buf_append_str(out, "\n");
    }
    return rc ? ST_NOMEM : ST_OK;
}

/* ---------------------------------------------------------------- SVG */

#define SVG_W 960
#define SVG_H 420
#define PANEL_W 400
#define PANEL_H 280
#define PAD_L 70
#define PAD_T 50

static const char *const k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static double nice_step(double range)
{
    if (range <= 0)
        return 1.0;
    double raw = range / 5.0;
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* x of a stage: its rate, or its concurrency for closed loop; < 0 when neither */
static double stage_x(const json_t *st)
{
    const json_t *c = json_object_get(st, "concurrency");
    if (json_is_integer(c))
        return (double)json_integer_value(c);
    const json_t *r = json_object_get(st, "rate");
    return json_is_number(r) ? json_number_value(r) : -1.0;
}

static double stage_y(const json_t *st, int panel)
{
    return panel == 0 ? jnum(json_object_get(st, "ttft_ms"), "p90", NULL)
                      : jnum(json_object_get(st, "goodput"), "rate", NULL);
}

static void svg_esc(sy_buf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            sy_buf_append_str(b, "&lt;");
            break;
        case '>':
            sy_buf_append_str(b, "&gt;");
            break;
        case '&':
            sy_buf_append_str(b, "&amp;");
            break;
        case '"':
            sy_buf_append_str(b, "&quot;");
            break;
        default:
            sy_buf_append_char(b, *s);
        }
    }
}

int sb_report_svg(const json_t *const *results, const char *const *names, size_t n, sy_buf_t *out)
{
    double xmax = 0, ymax[2] = {0, 0};
    size_t points = 0;
    bool any_rate = false;
    for (size_t k = 0; k < n; k++) {
        const json_t *stages = json_object_get(results[k], "stages");
        size_t i;
        const json_t *st;
        json_array_foreach(stages, i, st)
        {
            double x = stage_x(st);
            if (x < 0)
                continue;
            if (!json_is_integer(json_object_get(st, "concurrency")))
                any_rate = true;
            points++;
            if (x > xmax)
                xmax = x;
            for (int p = 0; p < 2; p++)
                if (stage_y(st, p) > ymax[p])
                    ymax[p] = stage_y(st, p);
        }
    }
    if (points == 0)
        return ST_INVAL;
    int rc = ST_OK;
    rc |= sy_buf_appendf(out,
                         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                         "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                         "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                         SVG_W, SVG_H, SVG_W, SVG_H);
    const char *xlabel = any_rate ? "offered rate (req/s)" : "concurrency";
    const char *titles[2] = {"TTFT p90 (ms)", "goodput (req/s)"};
    for (int p = 0; p < 2; p++) {
        int ox = PAD_L + p * (PANEL_W + 80), oy = PAD_T;
        double xs = nice_step(xmax), ys = nice_step(ymax[p]);
        double xtop = xs * ceil(xmax / xs), ytop = ys * ceil(ymax[p] / ys);
        if (xtop <= 0)
            xtop = 1;
        if (ytop <= 0)
            ytop = 1;
        rc |= sy_buf_appendf(out,
                             "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s vs "
                             "%s</text>\n",
                             ox, oy - 15, titles[p], xlabel);
        rc |= sy_buf_appendf(out,
                             "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                             "stroke=\"#444\"/>\n",
                             ox, oy, PANEL_W, PANEL_H);
        for (double t = 0; t <= xtop + xs / 2; t += xs) {
            double px = ox + t / xtop * PANEL_W;
            rc |=
                sy_buf_appendf(out,
                               "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                               "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                               px, oy, px, oy + PANEL_H, px, oy + PANEL_H + 15, t);
        }
        for (double t = 0; t <= ytop + ys / 2; t += ys) {
            double py = oy + PANEL_H - t / ytop * PANEL_H;
            rc |=
                sy_buf_appendf(out,
                               "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                               "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                               ox, py, ox + PANEL_W, py, ox - 5, py + 4, t);
        }
        rc |= sy_buf_appendf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                             ox + PANEL_W / 2, oy + PANEL_H + 32, xlabel);
        for (size_t k = 0; k < n; k++) {
            const char *col = k_colors[k % (sizeof k_colors / sizeof k_colors[0])];
            const json_t *stages = json_object_get(results[k], "stages");
            rc |= sy_buf_appendf(out,
                                 "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                                 "points=\"",
                                 col);
            size_t i;
            const json_t *st;
            json_array_foreach(stages, i, st)
            {
                double x = stage_x(st);
                if (x < 0)
                    continue;
                rc |= sy_buf_appendf(out, "%.1f,%.1f ", ox + x / xtop * PANEL_W,
                                     oy + PANEL_H - stage_y(st, p) / ytop * PANEL_H);
            }
            rc |= sy_buf_append_str(out, "\"/>\n");
            json_array_foreach(stages, i, st)
            {
                double x = stage_x(st);
                if (x < 0)
                    continue;
                rc |= sy_buf_appendf(out,
                                     "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\">"
                                     "<title>%g: %.2f</title></circle>\n",
                                     ox + x / xtop * PANEL_W,
                                     oy + PANEL_H - stage_y(st, p) / ytop * PANEL_H, col, x,
                                     stage_y(st, p));
            }
        }
    }
    /* legend */
    for (size_t k = 0; k < n; k++) {
        const char *col = k_colors[k % (sizeof k_colors / sizeof k_colors[0])];
        int ly = PAD_T + PANEL_H + 55 + (int)(k / 3) * 18, lx = PAD_L + (int)(k % 3) * 300;
        rc |= sy_buf_appendf(out,
                             "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"4\" fill=\"%s\"/>"
                             "<text x=\"%d\" y=\"%d\">",
                             lx, ly - 4, col, lx + 20, ly);
        svg_esc(out, names[k]);
        rc |= sy_buf_append_str(out, "</text>\n");
    }
    rc |= sy_buf_append_str(out, "</svg>\n");
    return rc ? ST_NOMEM : ST_OK;
}

int sb_report_write_file(const char *path, const char *data, size_t len)
{
    if (strcmp(path, "-") == 0) {
        if (len && fwrite(data, 1, len, stdout) != len)
            return -EIO;
        fflush(stdout);
        return ST_OK;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return -e;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0)
        return -errno;
    return ST_OK;
}
