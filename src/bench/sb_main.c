/*
 * sb_main.c - `switchyard bench` (flags, wiring, outputs) and `switchyard bench plot`.
 *
 * Order of precedence for workload and load settings: command-line flags, then the
 * --workload-config file (inference-perf YAML), then built-in defaults. Stages: --rates (one
 * open-loop stage per rate) or --concurrency N[,M...] (one closed-loop stage per value) or --rate
 * or the file's load.stages; nothing given = closed loop, concurrency 1. Each stage issues for
 * --duration seconds and/or --num-requests requests (the file's stage duration when neither is
 * given; 100 requests when nothing bounds it).
 * Thread-safety: process entry.
 */
#include "bench/sb_main.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/sb_config.h"
#include "bench/sb_report.h"
#include "bench/sb_run.h"
#include "bench/sb_workload.h"
#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/jsonp.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/gguf.h"
#include "engine/tok_gguf.h"
#include "engine/tokenizer.h"

#define UNSET_D (-1.0)
#define UNSET_U UINT64_MAX
#define SB_MAX_LADDER 64

typedef struct bench_opts {
    const char *url, *model, *api, *api_key;
    const char *workload, *workload_config, *tokenizer;
    bool token_prompts, ignore_eos;
    uint64_t input_len, output_len;
    double input_len_stddev, output_len_stddev;
    const char *input_len_range, *output_len_range;
    uint64_t groups, prompts_per_group, system_prompt_len, question_len;
    uint64_t sessions, turns;
    const char *questions, *trace;
    double trace_speed;
    const char *extra_body;
    double rate;
    const char *rates, *concurrency, *arrival;
    double duration;
    uint64_t num_requests;
    double warmup_s;
    uint64_t warmup_requests;
    uint64_t seed;
    double timeout, drain_timeout;
    uint64_t max_inflight;
    double slo_ttft_ms, slo_itl_ms;
    const char *out, *md, *svg, *label, *log_level;
    bool progress, no_progress;
} bench_opts_t;

/* "http://host[:port][/prefix]" -> host, port, path prefix (without a trailing "/v1"). */
static int parse_url(const char *url, char *host, size_t hcap, int *port, char *prefix, size_t pcap)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        return ST_INVAL; /* https and others: not supported */
    const char *slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb)
            return ST_INVAL;
        if ((size_t)(rb - p - 1) >= hcap)
            return ST_INVAL;
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = '\0';
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        const char *he = colon ? colon : hend;
        if (he == p || (size_t)(he - p) >= hcap)
            return ST_INVAL;
        memcpy(host, p, (size_t)(he - p));
        host[he - p] = '\0';
    }
    *port = 80;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end != hend || v <= 0 || v > 65535)
            return ST_INVAL;
        *port = (int)v;
    }
    size_t pl = slash ? strlen(slash) : 0;
    while (pl > 0 && slash[pl - 1] == '/')
        pl--;
    if (pl >= 3 && memcmp(slash + pl - 3, "/v1", 3) == 0)
        pl -= 3;
    if (pl >= pcap)
        return ST_INVAL;
    if (pl)
        memcpy(prefix, slash, pl);
    prefix[pl] = '\0';
    return ST_OK;
}

/* "a,b,c" of positive numbers. Returns the count (0 on a syntax error). */
static size_t parse_list(const char *s, double *out, size_t cap)
{
    size_t n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v <= 0 || n == cap)
            return 0;
        out[n++] = v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        else if (*p)
            return 0;
    }
    return n;
}

/* Builds a length distribution from --X-len, --X-len-stddev, --X-len-range LO:HI. */
static int make_len(uint64_t n, double stddev, const char *range, sb_len_dist_t *out,
                    const char *what)
{
    if (range) {
        char *end;
        double lo = strtod(range, &end);
        if (*end != ':') {
            fprintf(stderr, "switchyard bench: --%s-range wants LO:HI\n", what);
            return ST_INVAL;
        }
        double hi = strtod(end + 1, &end);
        if (*end || lo < 1 || hi < lo || hi > 1e7) {
            fprintf(stderr, "switchyard bench: --%s-range wants 1 <= LO <= HI\n", what);
            return ST_INVAL;
        }
        *out = (sb_len_dist_t){.kind = SB_LEN_UNIFORM, .min = lo, .max = hi, .mean = (lo + hi) / 2};
        return ST_OK;
    }
    if (n == 0 || n > 10000000) {
        fprintf(stderr, "switchyard bench: --%s must be 1..10000000\n", what);
        return ST_INVAL;
    }
    *out = sb_len_fixed((uint32_t)n);
    if (stddev > 0) {
        out->kind = SB_LEN_NORMAL;
        out->stddev = stddev;
    }
    return ST_OK;
}

static tok_t *open_tokenizer(const char *spec)
{
    if (!spec || strcmp(spec, "builtin") == 0)
        return tok_byte_create();
    gguf_t *g = NULL;
    char err[256];
    if (gguf_open(spec, &g, err, sizeof err) != ST_OK) {
        fprintf(stderr, "switchyard bench: --tokenizer %s: %s\n", spec, err);
        return NULL;
    }
    tok_t *t = tok_gguf_create(g, err, sizeof err);
    if (!t)
        fprintf(stderr, "switchyard bench: --tokenizer %s: %s\n", spec, err);
    gguf_close(g);
    return t;
}

static json_t *len_json(const sb_len_dist_t *d)
{
    static const char *const kinds[] = {"fixed", "normal", "uniform", "lognormal", "skew_normal"};
    return json_pack("{ss sf sf sf sf}", "type", kinds[d->kind], "mean", d->mean, "stddev",
                     d->stddev, "min", d->min, "max", d->max);
}

/* ---------------------------------------------------------------- plot */

static int load_json_file(const char *path, json_t **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        fprintf(stderr, "switchyard bench plot: %s: %s\n", path, strerror(e));
        return -e;
    }
    sy_buf_t b = SY_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (sy_buf_append(&b, chunk, n) != ST_OK)
            break;
    fclose(f);
    jsonp_error_t je;
    int rc = ST_PROTO;
    if (b.len && sy_utf8_valid(b.data, b.len))
        rc = jsonp_load(b.data, b.len, out, &je);
    sy_buf_deinit(&b);
    if (rc != ST_OK || !json_is_array(json_object_get(*out, "stages"))) {
        fprintf(stderr, "switchyard bench plot: %s: not a switchyard bench results file\n", path);
        if (rc == ST_OK)
            json_decref(*out);
        *out = NULL;
        return ST_INVAL;
    }
    return ST_OK;
}

static int plot_main(int argc, char **argv)
{
    const char *out = NULL;
    const cli_opt_t opts[] = {
        {"out", "FILE.svg", CLI_STRING, &out, "SVG file to write (- = stdout)", "-"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard bench plot",
        .summary = "Charts TTFT p90 and goodput against offered rate (or concurrency), one line "
                   "per results file (series named by the file's \"label\", else its path).",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
        .max_positional = 32,
        .positional = "RESULTS.json...",
    };
    const char *files[32];
    size_t nf = 0;
    char err[256];
    int rc = cli_parse(&spec, argc, argv, files, &nf, err, sizeof err);
    if (rc == CLI_HELP) {
        sy_buf_t b = SY_BUF_INIT;
        cli_usage(&spec, &b);
        fputs(b.data ? b.data : "", stdout);
        sy_buf_deinit(&b);
        return 0;
    }
    if (rc != ST_OK || nf == 0) {
        fprintf(stderr, "switchyard bench plot: %s (see --help)\n",
                rc != ST_OK ? err : "no results files");
        return 2;
    }
    json_t *res[32] = {0};
    const char *names[32];
    int ret = 0;
    for (size_t i = 0; i < nf; i++) {
        if (load_json_file(files[i], &res[i]) != ST_OK) {
            ret = 1;
            goto done;
        }
        const char *l = json_string_value(json_object_get(res[i], "label"));
        names[i] = l && *l ? l : files[i];
    }
    sy_buf_t svg = SY_BUF_INIT;
    rc = sb_report_svg((const json_t *const *)res, names, nf, &svg);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard bench plot: nothing to plot (%s)\n", st_str(rc));
        ret = 1;
    } else if ((rc = sb_report_write_file(out ? out : "-", svg.data, svg.len)) != ST_OK) {
        fprintf(stderr, "switchyard bench plot: %s: %s\n", out, st_str(rc));
        ret = 1;
    }
    sy_buf_deinit(&svg);
done:
    for (size_t i = 0; i < nf; i++)
        json_decref(res[i]);
    return ret;
}

/* ---------------------------------------------------------------- bench */

int bench_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "plot") == 0)
        return plot_main(argc - 1, argv + 1);
    bench_opts_t o = {
        .url = "http://127.0.0.1:8000",
        .model = "sim-model",
        .api = "completions",
        .workload = NULL,
        .tokenizer = "builtin",
        .ignore_eos = true,
        .input_len = UNSET_U,
        .output_len = UNSET_U,
        .input_len_stddev = 0,
        .output_len_stddev = 0,
        .groups = UNSET_U,
        .prompts_per_group = UNSET_U,
        .system_prompt_len = UNSET_U,
        .question_len = UNSET_U,
        .sessions = 0,
        .turns = 0,
        .trace_speed = 1.0,
        .rate = UNSET_D,
        .arrival = NULL,
        .duration = UNSET_D,
        .num_requests = UNSET_U,
        .seed = UNSET_U,
        .timeout = 60,
        .drain_timeout = 120,
        .max_inflight = 10000,
        .log_level = "warn",
    };
    const cli_opt_t opts[] = {
        {"url", "URL", CLI_STRING, &o.url, "base URL of an OpenAI-compatible server (http only)",
         "http://127.0.0.1:8000"},
        {"model", "NAME", CLI_STRING, &o.model, "model name sent in every request", "sim-model"},
        {"api", "KIND", CLI_STRING, &o.api,
         "completions (/v1/completions) or chat "
         "(/v1/chat/completions)",
         "completions"},
        {"api-key", "KEY", CLI_STRING, &o.api_key, "sent as 'Authorization: Bearer KEY'", NULL},
        {"workload", "NAME", CLI_STRING, &o.workload, "random, shared-prefix, multi-turn or trace",
         "random"},
        {"workload-config", "FILE.yml", CLI_STRING, &o.workload_config,
         "inference-perf workload definition (data.shared_prefix, load.stages, api.type)", NULL},
        {"tokenizer", "builtin|FILE.gguf", CLI_STRING, &o.tokenizer,
         "tokenizer that builds exact-length prompts (builtin = the sim engine's)", "builtin"},
        {"token-prompts", NULL, CLI_FLAG, &o.token_prompts,
         "send prompts as token ids (\"prompt\": [ids]; completions only)", NULL},
        {"ignore-eos", NULL, CLI_BOOL, &o.ignore_eos,
         "send ignore_eos so output lengths equal max_tokens", "true"},
        {"input-len", "N", CLI_UINT, &o.input_len, "prompt tokens (random, trace without lengths)",
         "512"},
        {"input-len-stddev", "X", CLI_DOUBLE, &o.input_len_stddev,
         "normal distribution of prompt lengths around --input-len", "0"},
        {"input-len-range", "LO:HI", CLI_STRING, &o.input_len_range,
         "uniform prompt lengths in [LO, HI] instead", NULL},
        {"output-len", "N", CLI_UINT, &o.output_len, "max_tokens per request", "128"},
        {"output-len-stddev", "X", CLI_DOUBLE, &o.output_len_stddev,
         "normal distribution of output lengths", "0"},
        {"output-len-range", "LO:HI", CLI_STRING, &o.output_len_range, "uniform output lengths",
         NULL},
        {"groups", "N", CLI_UINT, &o.groups, "shared-prefix: distinct system prefixes", "10"},
        {"prompts-per-group", "N", CLI_UINT, &o.prompts_per_group,
         "shared-prefix: questions per prefix", "10"},
        {"system-prompt-len", "N", CLI_UINT, &o.system_prompt_len,
         "shared-prefix: prefix tokens (also trace prefix groups)", "100"},
        {"question-len", "N", CLI_UINT, &o.question_len,
         "shared-prefix / multi-turn: question tokens", "50"},
        {"sessions", "N", CLI_UINT, &o.sessions, "multi-turn: sessions",
         "one per --questions line, "
         "or 16"},
        {"turns", "N", CLI_UINT, &o.turns, "multi-turn: turns per generated session", "4"},
        {"questions", "FILE.jsonl", CLI_STRING, &o.questions,
         "multi-turn: MT-Bench-style questions ({\"turns\": [...]} per line)", NULL},
        {"trace", "FILE.jsonl", CLI_STRING, &o.trace,
         "trace: one {\"timestamp_ms\", \"input_len\"|\"prompt\", ...} per line", NULL},
        {"trace-speed", "X", CLI_DOUBLE, &o.trace_speed, "trace: replay X times faster", "1"},
        {"extra-body", "JSON", CLI_STRING, &o.extra_body,
         "members added to every body, e.g. '\"temperature\":0'", NULL},
        {"rate", "R", CLI_DOUBLE, &o.rate, "open loop: requests/s", NULL},
        {"rates", "R1,R2,...", CLI_STRING, &o.rates, "a ladder of rates, one stage each", NULL},
        {"arrival", "KIND", CLI_STRING, &o.arrival, "poisson or constant (open loop)", "poisson"},
        {"concurrency", "N[,M...]", CLI_STRING, &o.concurrency,
         "closed loop: N requests in flight (a list = one stage each)", "1 when no rate"},
        {"duration", "S", CLI_DOUBLE, &o.duration, "seconds of issuing per stage", NULL},
        {"num-requests", "N", CLI_UINT, &o.num_requests, "requests per stage",
         "100 when no duration"},
        {"warmup-s", "S", CLI_DOUBLE, &o.warmup_s, "warm-up before the first stage (not counted)",
         "0"},
        {"warmup-requests", "N", CLI_UINT, &o.warmup_requests, "warm-up requests (not counted)",
         "0"},
        {"seed", "N", CLI_UINT, &o.seed, "seed of prompts, lengths, order and arrivals", "0"},
        {"timeout", "S", CLI_DOUBLE, &o.timeout,
         "a request fails as stalled after S seconds without a byte (also the connect timeout)",
         "60"},
        {"drain-timeout", "S", CLI_DOUBLE, &o.drain_timeout,
         "after a stage, wait at most S seconds for in-flight requests (then aborted)", "120"},
        {"max-inflight", "N", CLI_UINT, &o.max_inflight,
         "open loop: at most N in flight (later arrivals are counted as skipped)", "10000"},
        {"slo-ttft-ms", "MS", CLI_DOUBLE, &o.slo_ttft_ms, "goodput SLO on TTFT (0 = none)", "0"},
        {"slo-itl-ms", "MS", CLI_DOUBLE, &o.slo_itl_ms,
         "goodput SLO on the request's mean ITL (TPOT; 0 = none)", "0"},
        {"out", "FILE.json", CLI_STRING, &o.out, "results JSON", NULL},
        {"md", "FILE.md", CLI_STRING, &o.md, "Markdown summary (instead of stdout)", "stdout"},
        {"svg", "FILE.svg", CLI_STRING, &o.svg, "chart of this run (TTFT p90, goodput vs load)",
         NULL},
        {"label", "NAME", CLI_STRING, &o.label, "name of this run in results and charts", NULL},
        {"progress", NULL, CLI_BOOL, &o.progress, "live progress line on stderr",
         "on when stderr is a TTY"},
        {"log-level", "LEVEL", CLI_STRING, &o.log_level, "debug, info, warn or error", "warn"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard bench",
        .summary = "Streaming load generator for OpenAI-compatible servers: measures TTFT, ITL "
                   "(per chunk), TPOT and E2E per request, per stage of a rate or concurrency "
                   "ladder; goodput under an SLO; errors by reason; cached-token share. "
                   "'switchyard bench plot A.json B.json --out chart.svg' charts results.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    char err[512];
    err[0] = '\0';
    o.progress = isatty(STDERR_FILENO);
    int done = cli_parse_main(&spec, argc, argv, NULL, NULL);
    if (done >= 0)
        return done;
    int rc;
    int lvl = sy_log_level_parse(o.log_level);
    if (lvl < 0) {
        fprintf(stderr, "switchyard bench: --log-level: unknown level '%s'\n", o.log_level);
        return 2;
    }
    sy_log_set_level((sy_log_level_t)lvl);

    int ret = 2;
    tok_t *tok = NULL;
    sb_workload_t *wl = NULL;
    sb_run_t *run = NULL;
    json_t *results = NULL;
    sy_buf_t md = SY_BUF_INIT, svg = SY_BUF_INIT;
    char *json_text = NULL;

    char host[256], prefix[256], path[300];
    int port = 0;
    if (parse_url(o.url, host, sizeof host, &port, prefix, sizeof prefix) != ST_OK) {
        fprintf(stderr, "switchyard bench: --url '%s': want http://HOST[:PORT][/PREFIX]\n", o.url);
        goto out;
    }
    bool chat;
    if (strcmp(o.api, "completions") == 0 || strcmp(o.api, "completion") == 0)
        chat = false;
    else if (strcmp(o.api, "chat") == 0)
        chat = true;
    else {
        fprintf(stderr, "switchyard bench: --api '%s': completions or chat\n", o.api);
        goto out;
    }

    /* workload config file, then flags */
    sb_file_cfg_t fc;
    memset(&fc, 0, sizeof fc);
    if (o.workload_config && sb_cfg_load_file(o.workload_config, &fc, err, sizeof err) != ST_OK) {
        fprintf(stderr, "switchyard bench: --workload-config %s\n", err);
        goto out;
    }
    bool api_given = false;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--api") == 0 || strncmp(argv[i], "--api=", 6) == 0)
            api_given = true;
    sb_wl_cfg_t wc;
    sb_wl_cfg_default(&wc);
    if (fc.have_data)
        wc.kind = fc.kind;
    if (o.workload && sb_wl_kind_parse(o.workload, &wc.kind) != ST_OK) {
        fprintf(stderr,
                "switchyard bench: --workload '%s': random, shared-prefix, multi-turn or "
                "trace\n",
                o.workload);
        goto out;
    }
    if (!o.workload && !fc.have_data && o.trace)
        wc.kind = SB_WL_TRACE;
    if (!o.workload && !fc.have_data && o.questions)
        wc.kind = SB_WL_MULTI_TURN;
    if (!api_given && fc.have_api)
        chat = fc.chat;
    else if (!api_given && wc.kind == SB_WL_MULTI_TURN)
        chat = true; /* multi-turn is a chat workload unless --api says otherwise */
    wc.chat = chat;
    wc.token_prompts = o.token_prompts;
    wc.ignore_eos = fc.have_ignore_eos && o.ignore_eos ? fc.ignore_eos : o.ignore_eos;
    wc.seed = o.seed != UNSET_U ? o.seed : fc.have_seed ? fc.seed : 0;
    wc.multi_turn = fc.multi_turn;
    if (fc.have_groups)
        wc.groups = fc.groups;
    if (fc.have_ppg)
        wc.prompts_per_group = fc.prompts_per_group;
    if (fc.have_system_len)
        wc.system_len = fc.system_len;
    if (fc.have_question_len)
        wc.question_len = fc.question_len;
    if (fc.have_output_len)
        wc.output_len = fc.output_len;
    if (fc.have_input_len)
        wc.input_len = fc.input_len;
    if (o.groups != UNSET_U)
        wc.groups = (uint32_t)o.groups;
    if (o.prompts_per_group != UNSET_U)
        wc.prompts_per_group = (uint32_t)o.prompts_per_group;
    if (o.system_prompt_len != UNSET_U &&
        make_len(o.system_prompt_len, 0, NULL, &wc.system_len, "system-prompt-len") != ST_OK)
        goto out;
    if (o.question_len != UNSET_U &&
        make_len(o.question_len, 0, NULL, &wc.question_len, "question-len") != ST_OK)
        goto out;
    if ((o.input_len != UNSET_U || o.input_len_range) &&
        make_len(o.input_len != UNSET_U ? o.input_len : 1, o.input_len_stddev, o.input_len_range,
                 &wc.input_len, "input-len") != ST_OK)
        goto out;
    if ((o.output_len != UNSET_U || o.output_len_range) &&
        make_len(o.output_len != UNSET_U ? o.output_len : 1, o.output_len_stddev,
                 o.output_len_range, &wc.output_len, "output-len") != ST_OK)
        goto out;
    if (o.sessions > 1000000 || o.turns > 10000) {
        fprintf(stderr, "switchyard bench: --sessions <= 1000000, --turns <= 10000\n");
        goto out;
    }
    wc.sessions = (uint32_t)o.sessions;
    if (o.turns)
        wc.turns = (uint32_t)o.turns;
    wc.questions_path = o.questions;
    wc.trace_path = o.trace;
    wc.extra_body = o.extra_body;

    /* stages */
    sb_stage_plan_t plans[SB_MAX_LADDER];
    size_t n_plans = 0;
    double vals[SB_MAX_LADDER];
    double dur = o.duration >= 0 ? o.duration : 0;
    uint64_t nreq = o.num_requests != UNSET_U ? o.num_requests : 0;
    if (o.duration != UNSET_D && o.duration <= 0) {
        fprintf(stderr, "switchyard bench: --duration must be > 0\n");
        goto out;
    }
    if (o.rates) {
        n_plans = parse_list(o.rates, vals, SB_MAX_LADDER);
        if (!n_plans) {
            fprintf(stderr,
                    "switchyard bench: --rates '%s': positive numbers, comma-separated "
                    "(at most %d)\n",
                    o.rates, SB_MAX_LADDER);
            goto out;
        }
        for (size_t i = 0; i < n_plans; i++)
            plans[i] = (sb_stage_plan_t){.rate = vals[i]};
    } else if (o.concurrency) {
        n_plans = parse_list(o.concurrency, vals, SB_MAX_LADDER);
        for (size_t i = 0; i < n_plans; i++)
            if (vals[i] != floor(vals[i]) || vals[i] > 100000)
                n_plans = 0;
        if (!n_plans) {
            fprintf(stderr,
                    "switchyard bench: --concurrency '%s': integers 1..100000, "
                    "comma-separated\n",
                    o.concurrency);
            goto out;
        }
        for (size_t i = 0; i < n_plans; i++)
            plans[i] = (sb_stage_plan_t){.concurrency = (uint32_t)vals[i]};
    } else if (o.rate != UNSET_D) {
        if (!(o.rate > 0)) {
            fprintf(stderr, "switchyard bench: --rate must be > 0\n");
            goto out;
        }
        plans[n_plans++] = (sb_stage_plan_t){.rate = o.rate};
    } else if (fc.n_stages) {
        for (size_t i = 0; i < fc.n_stages && i < SB_MAX_LADDER; i++)
            plans[n_plans++] =
                (sb_stage_plan_t){.rate = fc.rate[i], .duration_s = dur ? 0 : fc.duration[i]};
    } else if (wc.kind == SB_WL_TRACE) {
        plans[n_plans++] = (sb_stage_plan_t){.rate = 0};
    } else {
        plans[n_plans++] = (sb_stage_plan_t){.concurrency = 1};
    }
    bool trace_timing = wc.kind == SB_WL_TRACE && !o.rates && !o.concurrency && o.rate == UNSET_D;
    for (size_t i = 0; i < n_plans; i++) {
        if (dur)
            plans[i].duration_s = dur;
        plans[i].num_requests = nreq;
        if (!plans[i].duration_s && !plans[i].num_requests && !trace_timing)
            plans[i].num_requests = 100;
    }
    bool poisson = fc.have_load ? fc.poisson : true;
    if (o.arrival) {
        if (strcmp(o.arrival, "poisson") == 0)
            poisson = true;
        else if (strcmp(o.arrival, "constant") == 0)
            poisson = false;
        else {
            fprintf(stderr, "switchyard bench: --arrival '%s': poisson or constant\n", o.arrival);
            goto out;
        }
    }
    if (o.timeout <= 0 || o.drain_timeout <= 0 || o.trace_speed <= 0 || o.slo_ttft_ms < 0 ||
        o.slo_itl_ms < 0 || o.warmup_s < 0 || o.max_inflight == 0 || o.max_inflight > 1000000) {
        fprintf(stderr, "switchyard bench: --timeout, --drain-timeout, --trace-speed must be > 0; "
                        "SLOs and --warmup-s >= 0; --max-inflight 1..1000000\n");
        goto out;
    }

    tok = open_tokenizer(o.tokenizer);
    if (!tok)
        goto out;
    wc.tok = tok;
    rc = sb_wl_create(&wc, &wl, err, sizeof err);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard bench: workload: %s\n", err[0] ? err : st_str(rc));
        goto out;
    }
    snprintf(path, sizeof path, "%s%s", prefix, chat ? "/v1/chat/completions" : "/v1/completions");
    sb_run_cfg_t rcfg = {
        .host = host,
        .port = port,
        .path = path,
        .model = o.model,
        .api_key = o.api_key,
        .poisson = poisson,
        .trace_timing = trace_timing,
        .trace_speed = o.trace_speed,
        .seed = wc.seed,
        .timeout_s = o.timeout,
        .drain_timeout_s = o.drain_timeout,
        .warmup_s = o.warmup_s,
        .warmup_requests = o.warmup_requests,
        .stages = plans,
        .n_stages = n_plans,
        .max_inflight = (uint32_t)o.max_inflight,
        .progress = o.progress,
        .slo = {.ttft_ms = o.slo_ttft_ms, .itl_ms = o.slo_itl_ms},
    };
    rc = sb_run_create(&rcfg, wl, &run, err, sizeof err);
    if (rc != ST_OK) {
        fprintf(stderr, "switchyard bench: %s\n", err[0] ? err : st_str(rc));
        goto out;
    }
    int run_rc = sb_run_exec(run);
    if (run_rc != ST_OK && run_rc != ST_CLOSED) {
        fprintf(stderr, "switchyard bench: event loop: %s\n", st_str(run_rc));
        ret = 1;
        goto out;
    }

    /* results */
    results = json_object();
    json_t *stages = json_array();
    json_t *cfgj = json_pack(
        "{ss ss ss ss ss ss sI sb sb sf sf sf sI sf sf so so so so sI sI sb}", "url", o.url,
        "model", o.model, "api", chat ? "chat" : "completions", "workload",
        sb_wl_kind_name(wc.kind), "arrival",
        trace_timing ? "trace"
                     : (plans[0].concurrency ? "closed"
                        : poisson            ? "poisson"
                                             : "constant"),
        "tokenizer", o.tokenizer, "seed", (json_int_t)wc.seed, "token_prompts", o.token_prompts,
        "ignore_eos", wc.ignore_eos, "timeout_s", o.timeout, "slo_ttft_ms", o.slo_ttft_ms,
        "slo_itl_ms", o.slo_itl_ms, "warmup_requests", (json_int_t)o.warmup_requests, "warmup_s",
        o.warmup_s, "trace_speed", o.trace_speed, "input_len", len_json(&wc.input_len),
        "output_len", len_json(&wc.output_len), "system_prompt_len", len_json(&wc.system_len),
        "question_len", len_json(&wc.question_len), "groups", (json_int_t)wc.groups,
        "prompts_per_group", (json_int_t)wc.prompts_per_group, "interrupted", run_rc == ST_CLOSED);
    if (!results || !stages || !cfgj) {
        json_decref(stages);
        json_decref(cfgj);
        fprintf(stderr, "switchyard bench: out of memory\n");
        ret = 1;
        goto out;
    }
    json_object_set_new(results, "schema", json_string("switchyard-bench/1"));
    json_object_set_new(results, "label", o.label ? json_string(o.label) : json_null());
    if (o.workload_config)
        json_object_set_new(cfgj, "workload_config", json_string(o.workload_config));
    json_object_set_new(results, "config", cfgj);
    uint64_t total_ok = 0;
    size_t n_done = sb_run_stages_done(run);
    for (size_t i = 0; i < n_done; i++) {
        sb_stage_stats_t *s = sb_run_stage(run, i);
        total_ok += s->n_ok;
        json_t *sj = sb_report_stage_json(s, i);
        if (sj)
            json_array_append_new(stages, sj);
    }
    json_object_set_new(results, "stages", stages);
    ret = run_rc == ST_CLOSED ? 130 : total_ok ? 0 : 1;
    if (ret == 1)
        fprintf(stderr, "switchyard bench: no request succeeded (see errors_by_reason)\n");

    if (o.out) {
        json_text = json_dumps(results, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (!json_text ||
            (rc = sb_report_write_file(o.out, json_text, strlen(json_text))) != ST_OK) {
            fprintf(stderr, "switchyard bench: --out %s: %s\n", o.out,
                    json_text ? st_str(rc) : "out of memory");
            ret = ret ? ret : 1;
        }
    }
    if (sb_report_markdown(results, &md) == ST_OK) {
        rc = sb_report_write_file(o.md ? o.md : "-", md.data ? md.data : "", md.len);
        if (rc != ST_OK) {
            fprintf(stderr, "switchyard bench: --md %s: %s\n", o.md, st_str(rc));
            ret = ret ? ret : 1;
        }
    }
    if (o.svg) {
        const json_t *one[1] = {results};
        const char *names[1] = {o.label ? o.label : o.url};
        rc = sb_report_svg(one, names, 1, &svg);
        if (rc == ST_OK)
            rc = sb_report_write_file(o.svg, svg.data, svg.len);
        if (rc != ST_OK) {
            fprintf(stderr, "switchyard bench: --svg %s: %s\n", o.svg, st_str(rc));
            ret = ret ? ret : 1;
        }
    }
out:
    free(json_text);
    sy_buf_deinit(&md);
    sy_buf_deinit(&svg);
    json_decref(results);
    sb_run_destroy(run);
    sb_wl_destroy(wl);
    tok_destroy(tok);
    return ret;
}
