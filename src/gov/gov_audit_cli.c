/*
 * gov_audit_cli.c - `switchyard audit verify|bench` (see gov_audit_cli.h).
 *
 * verify prints one line on success ("ok: N records, seq A..B, last hash H") and, for the first
 * bad record, "FILE:LINE: record seq S: <reason>: <detail>" plus a line with what was verified
 * before it, all on stdout. bench starts --threads threads that append --records records of about
 * --bytes bytes through gaud_append (retrying after ST_AGAIN when the queue is full), closes the
 * log (drain + fsync), then verifies every chain file and prints throughput and append latency.
 * Thread-safety: main thread only; the bench threads share only the gaud_t.
 */
#include "gov/gov_audit_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/cli.h"
#include "common/status.h"
#include "common/thread.h"
#include "gov/gov_audit.h"

#define MAX_FILES 4096

/* ------------------------------------------------------------------------------------------- */
/* verify */

static int lower_hash(const char *in, char out[GAUD_HASH_HEX + 1])
{
    if (!gaud_hash_valid(in))
        return ST_INVAL;
    for (int i = 0; i < GAUD_HASH_HEX; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'F' ? in[i] - 'A' + 'a' : in[i]);
    out[GAUD_HASH_HEX] = '\0';
    return ST_OK;
}

static int verify_main(int argc, char **argv)
{
    bool allow_tail = false, trust_first = false, chain = false;
    const char *from_hash = NULL, *last_hash = NULL;
    uint64_t from_seq = UINT64_MAX;
    const cli_opt_t opts[] = {
        {"allow-truncated-tail", NULL, CLI_FLAG, &allow_tail,
         "exit 0 when the only problem is an incomplete last record of the last file (a writer "
         "killed mid-write)",
         NULL},
        {"from-hash", "H", CLI_STRING, &from_hash,
         "the first FILE continues a chain whose last record (rotated away) has hash H", NULL},
        {"from-seq", "S", CLI_UINT, &from_seq,
         "... and seq S (with --from-hash: the first record must be seq S+1)", NULL},
        {"trust-first", NULL, CLI_FLAG, &trust_first,
         "take the first record's seq and prev as the starting point", NULL},
        {"expect-last-hash", "H", CLI_STRING, &last_hash,
         "the chain must end at hash H (an anchor kept elsewhere; catches edits of the last "
         "record and deletions at the end)",
         NULL},
        {"chain", NULL, CLI_FLAG, &chain,
         "each FILE names a live log: verify its rotated files FILE.<seq> first, oldest first",
         NULL},
    };
    const cli_spec_t spec = {
        .prog = "switchyard audit verify",
        .summary =
            "Recomputes the hash chain of audit log files given in chain order (rotated files "
            "first, e.g. `audit.log.* audit.log`). Exits 0 and prints 'ok: N records, seq A..B, "
            "last hash H' when intact; prints 'FILE:LINE: record seq S: <reason>' for the first "
            "bad record and exits 1 (also for an unreadable file, and for an incomplete last "
            "record unless --allow-truncated-tail); usage errors exit 2.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
        .max_positional = MAX_FILES,
        .positional = "FILE...",
    };
    static const char *pos[MAX_FILES];
    size_t npos = 0;
    int prc = cli_parse_main(&spec, argc, argv, pos, &npos);
    if (prc >= 0)
        return prc;
    const char *bad = NULL;
    gaud_verify_opts_t o;
    memset(&o, 0, sizeof o);
    o.allow_truncated_tail = allow_tail;
    o.trust_first = trust_first;
    if (npos == 0)
        bad = "expected at least one FILE";
    else if ((from_hash != NULL) != (from_seq != UINT64_MAX))
        bad = "--from-hash and --from-seq go together";
    else if (from_hash && trust_first)
        bad = "--trust-first cannot be combined with --from-hash";
    else if (from_hash && lower_hash(from_hash, o.from_hash) != ST_OK)
        bad = "--from-hash wants 64 hex digits";
    else if (last_hash && lower_hash(last_hash, o.last_hash) != ST_OK)
        bad = "--expect-last-hash wants 64 hex digits";
    if (bad) {
        fprintf(stderr, "switchyard audit verify: %s (see --help)\n", bad);
        return 2;
    }
    o.have_from = from_hash != NULL;
    o.from_seq = o.have_from ? from_seq : 0;
    o.have_last = last_hash != NULL;

    char **list = NULL;
    size_t nlist = 0, cap = 0;
    int rc = ST_OK;
    for (size_t i = 0; i < npos && rc == ST_OK; i++) {
        char **add = NULL;
        size_t nadd = 0;
        if (chain) {
            rc = gaud_chain_files(pos[i], &add, &nadd);
            if (rc != ST_OK) {
                fprintf(stdout, "%s: cannot list the chain: %s\n", pos[i], st_str(rc));
                gaud_files_free(list, nlist);
                return 1;
            }
            if (nadd == 0) {
                fprintf(stdout, "%s: no such log\n", pos[i]);
                gaud_files_free(list, nlist);
                return 1;
            }
        } else {
            add = sy_calloc(1, sizeof *add);
            if (add)
                add[0] = sy_strdup(pos[i]);
            if (!add || !add[0]) {
                sy_free(add);
                rc = ST_NOMEM;
                break;
            }
            nadd = 1;
        }
        if (nlist + nadd > cap) {
            size_t nc = (nlist + nadd) * 2;
            char **nl = sy_realloc(list, nc * sizeof *nl);
            if (!nl) {
                gaud_files_free(add, nadd);
                rc = ST_NOMEM;
                break;
            }
            list = nl;
            cap = nc;
        }
        memcpy(list + nlist, add, nadd * sizeof *add);
        nlist += nadd;
        sy_free(add);
    }
    if (rc != ST_OK) {
        gaud_files_free(list, nlist);
        fprintf(stderr, "switchyard audit verify: %s\n", st_str(rc));
        return 1;
    }
    gaud_verify_report_t rep;
    rc = gaud_verify_files((const char *const *)list, nlist, &o, &rep);
    if (rc == ST_NOMEM) {
        gaud_files_free(list, nlist);
        fprintf(stderr, "switchyard audit verify: out of memory\n");
        return 1;
    }
    char msg[1024];
    gaud_verify_report_format(&rep, msg, sizeof msg);
    printf("%s\n", msg);
    gaud_files_free(list, nlist);
    return rep.status == ST_OK ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------- */
/* bench */

/* Latency histogram: 50 ns buckets below 1 ms, 10 us buckets below 1 s, then one overflow. */
#define H_FINE 20000
#define H_COARSE 100000
#define H_N (H_FINE + H_COARSE + 1)

typedef struct bench_thread {
    gaud_t *log;
    int id;
    uint64_t first, count; /* record numbers [first, first+count) */
    size_t bytes;
    uint64_t *hist; /* H_N */
    uint64_t max_ns;
    uint64_t retries;
    int err;
    pthread_t thr;
} bench_thread_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t hist_bucket(uint64_t ns)
{
    if (ns < 1000000u)
        return (size_t)(ns / 50u);
    if (ns < 1000000000u)
        return H_FINE + (size_t)((ns - 1000000u) / 10000u);
    return H_N - 1;
}

static double hist_upper_us(size_t b)
{
    if (b < H_FINE)
        return (double)(b + 1) * 0.05;
    if (b < H_FINE + H_COARSE)
        return 1000.0 + (double)(b - H_FINE + 1) * 10.0;
    return 1e6;
}

static double hist_pct(const uint64_t *h, uint64_t total, double p)
{
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t acc = 0;
    for (size_t b = 0; b < H_N; b++) {
        acc += h[b];
        if (acc > want)
            return hist_upper_us(b);
    }
    return hist_upper_us(H_N - 1);
}

static void *bench_run(void *arg)
{
    bench_thread_t *t = arg;
    sy_buf_t b = SY_BUF_INIT;
    if (sy_buf_reserve(&b, t->bytes + 512) != ST_OK) {
        t->err = ST_NOMEM;
        return NULL;
    }
    struct timespec pause = {0, 50000};
    for (uint64_t i = t->first; i < t->first + t->count; i++) {
        sy_buf_reset(&b);
        sy_buf_appendf(&b,
                       "{\"time\":\"2026-12-02T04:00:00.000Z\",\"request_id\":\"bench-%d-%" PRIu64
                       "\",\"tenant\":\"bench\",\"model\":\"tiny\",\"prompt_tokens\":%" PRIu64
                       ",\"prompt\":\"",
                       t->id, i, i % 4096);
        size_t tail = 2;
        size_t fill = b.len + tail < t->bytes ? t->bytes - b.len - tail : 0;
        for (size_t k = 0; k < fill; k++)
            b.data[b.len + k] = (char)('a' + (i + k) % 26);
        b.len += fill;
        sy_buf_append(&b, "\"}", 2);
        for (;;) {
            uint64_t t0 = now_ns();
            int rc = gaud_append(t->log, b.data, b.len);
            uint64_t d = now_ns() - t0;
            t->hist[hist_bucket(d)]++;
            if (d > t->max_ns)
                t->max_ns = d;
            if (rc == ST_OK)
                break;
            if (rc != ST_AGAIN) {
                t->err = rc;
                sy_buf_deinit(&b);
                return NULL;
            }
            t->retries++;
            nanosleep(&pause, NULL);
        }
    }
    sy_buf_deinit(&b);
    return NULL;
}

static int bench_main(int argc, char **argv)
{
    uint64_t records = 20000, bytes = 1024, threads = 2, group_ms = 10, rotate = 0, keep = 0;
    uint64_t queue = 64u << 20;
    const char *fsync_s = "group", *dir = NULL;
    const cli_opt_t opts[] = {
        {"records", "N", CLI_UINT, &records, "records to append (all threads together)", "20000"},
        {"bytes", "B", CLI_UINT, &bytes, "approximate size of each caller record", "1024"},
        {"fsync", "each|group|none", CLI_STRING, &fsync_s, "fsync policy", "group"},
        {"group-ms", "MS", CLI_UINT, &group_ms, "interval of --fsync group", "10"},
        {"threads", "T", CLI_UINT, &threads, "appending threads", "2"},
        {"dir", "D", CLI_STRING, &dir,
         "write D/audit.log and keep it (an existing log is continued); default: a temporary "
         "directory that is removed",
         NULL},
        {"rotate-bytes", "R", CLI_UINT, &rotate, "rotate the log at R bytes (0: never)", "0"},
        {"keep", "K", CLI_UINT, &keep, "rotated files kept (0: all)", "0"},
        {"queue-bytes", "Q", CLI_UINT, &queue, "max queued bytes", "67108864"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard audit bench",
        .summary = "Appends --records records from --threads threads through gaud_append, closes "
                   "the log (drain + fsync), verifies the whole chain, and prints records/s and "
                   "the p50/p99 latency of gaud_append in microseconds. Exits 1 if anything "
                   "fails, including the verification.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    int prc = cli_parse_main(&spec, argc, argv, NULL, NULL);
    if (prc >= 0)
        return prc;
    gaud_fsync_t fs;
    const char *bad = NULL;
    if (gaud_fsync_parse(fsync_s, &fs) != ST_OK)
        bad = "--fsync wants each, group or none";
    else if (threads < 1 || threads > 64)
        bad = "--threads wants 1..64";
    else if (bytes < 2 || bytes > GAUD_MAX_RECORD)
        bad = "--bytes out of range";
    else if (group_ms < 1 || group_ms > 60000)
        bad = "--group-ms wants 1..60000";
    else if (keep > 100000)
        bad = "--keep too large";
    if (bad) {
        fprintf(stderr, "switchyard audit bench: %s (see --help)\n", bad);
        return 2;
    }

    int ret = 1;
    char tmpl[4096] = "", path[4200] = "";
    bool tmpdir = dir == NULL;
    bench_thread_t *ts = NULL;
    gaud_t *log = NULL;
    char **files = NULL;
    size_t nfiles = 0;
    if (tmpdir) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/sy-audit-bench.XXXXXX", base && base[0] ? base : "/tmp");
        if (!mkdtemp(tmpl)) {
            fprintf(stderr, "switchyard audit bench: mkdtemp %s: %s\n", tmpl, strerror(errno));
            return 1;
        }
        dir = tmpl;
    } else if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "switchyard audit bench: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (strlen(dir) > 4000) {
        fprintf(stderr, "switchyard audit bench: --dir path too long\n");
        goto out;
    }
    snprintf(path, sizeof path, "%s/audit.log", dir);

    gaud_config_t cfg;
    gaud_config_init(&cfg);
    cfg.path = path;
    cfg.fsync = fs;
    cfg.group_ms = (unsigned)group_ms;
    cfg.rotate_bytes = rotate;
    cfg.keep = (unsigned)keep;
    cfg.max_queue_bytes = (size_t)queue;
    char err[512];
    log = gaud_open(&cfg, err, sizeof err);
    if (!log) {
        fprintf(stderr, "switchyard audit bench: %s\n", err);
        goto out;
    }
    ts = sy_calloc(threads, sizeof *ts);
    if (!ts)
        goto out;
    for (uint64_t i = 0; i < threads; i++) {
        ts[i].hist = sy_calloc(H_N, sizeof *ts[i].hist);
        if (!ts[i].hist)
            goto out;
        ts[i].log = log;
        ts[i].id = (int)i;
        ts[i].bytes = (size_t)bytes;
        ts[i].first = records * i / threads;
        ts[i].count = records * (i + 1) / threads - ts[i].first;
    }
    char grp[48] = "";
    if (fs == GAUD_FSYNC_GROUP)
        snprintf(grp, sizeof grp, " every %" PRIu64 " ms", group_ms);
    printf("audit bench: %" PRIu64 " records x ~%" PRIu64 " bytes, %" PRIu64
           " threads, fsync %s%s, log %s\n",
           records, bytes, threads, fsync_s, grp, path);
    fflush(stdout);
    uint64_t t0 = now_ns();
    uint64_t started = 0;
    for (uint64_t i = 0; i < threads; i++) {
        if (sy_thread_start(&ts[i].thr, bench_run, &ts[i]) != ST_OK)
            break;
        started++;
    }
    for (uint64_t i = 0; i < started; i++)
        pthread_join(ts[i].thr, NULL);
    uint64_t t_app = now_ns();
    gaud_stats_t st;
    gaud_stats(log, &st);
    int crc = gaud_close(log);
    log = NULL;
    uint64_t t_end = now_ns();
    bool ok = started == threads && crc == ST_OK;
    uint64_t *h = ts[0].hist, retries = 0, max_ns = 0, calls = 0;
    for (uint64_t i = 0; i < threads; i++) {
        if (ts[i].err != ST_OK) {
            fprintf(stderr, "switchyard audit bench: thread %" PRIu64 ": gaud_append: %s\n", i,
                    st_str(ts[i].err));
            ok = false;
        }
        if (i > 0)
            for (size_t b = 0; b < H_N; b++)
                h[b] += ts[i].hist[b];
        retries += ts[i].retries;
        if (ts[i].max_ns > max_ns)
            max_ns = ts[i].max_ns;
    }
    for (size_t b = 0; b < H_N; b++)
        calls += h[b];
    double secs = (double)(t_end - t0) / 1e9;
    printf("appended in %.3f s, closed (drained + fsynced) after %.3f s: %.0f records/s, %.1f "
           "MB/s\n",
           (double)(t_app - t0) / 1e9, secs, secs > 0 ? (double)records / secs : 0.0,
           secs > 0 ? (double)records * (double)bytes / secs / 1e6 : 0.0);
    printf("gaud_append latency: p50 %.2f us, p99 %.2f us, p99.9 %.2f us, max %.1f us (%" PRIu64
           " calls, %" PRIu64 " queue-full retries)\n",
           hist_pct(h, calls, 0.50), hist_pct(h, calls, 0.99), hist_pct(h, calls, 0.999),
           (double)max_ns / 1000.0, calls, retries);
    printf("writer at the end of appending: %" PRIu64 " written, %" PRIu64 " fsyncs, %" PRIu64
           " rotations, %" PRIu64 " write errors, %" PRIu64 " dropped%s%s\n",
           st.written, st.fsyncs, st.rotations, st.write_errors, st.dropped,
           crc != ST_OK ? ", close: " : "", crc != ST_OK ? st_str(crc) : "");

    int lrc = gaud_chain_files(path, &files, &nfiles);
    if (lrc != ST_OK) {
        fprintf(stderr, "switchyard audit bench: listing %s: %s\n", path, st_str(lrc));
        goto out;
    }
    gaud_verify_report_t rep;
    uint64_t v0 = now_ns();
    gaud_verify_files((const char *const *)files, nfiles, NULL, &rep);
    double vs = (double)(now_ns() - v0) / 1e9;
    char msg[1024];
    gaud_verify_report_format(&rep, msg, sizeof msg);
    printf("verify (%zu file%s, %.3f s): %s\n", nfiles, nfiles == 1 ? "" : "s", vs, msg);
    ret = ok && rep.status == ST_OK ? 0 : 1;
out:
    gaud_close(log);
    if (ts)
        for (uint64_t i = 0; i < threads; i++)
            sy_free(ts[i].hist);
    sy_free(ts);
    if (tmpdir) {
        if (!files)
            gaud_chain_files(path, &files, &nfiles);
        for (size_t i = 0; i < nfiles; i++)
            unlink(files[i]);
        rmdir(tmpl);
    }
    gaud_files_free(files, nfiles);
    return ret;
}

/* ------------------------------------------------------------------------------------------- */

static void audit_usage(FILE *f)
{
    fputs("usage: switchyard audit <verify|bench> [options]\n"
          "  verify FILE...   recompute the hash chain of audit log files (chain order)\n"
          "  bench            measure the audit log writer, then verify what it wrote\n"
          "Run 'switchyard audit <action> --help' for the options.\n",
          f);
}

int audit_main(int argc, char **argv)
{
    if (argc < 2) {
        audit_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        audit_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "verify") == 0)
        return verify_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0)
        return bench_main(argc - 1, argv + 1);
    fprintf(stderr, "switchyard audit: unknown action '%s'\n", argv[1]);
    audit_usage(stderr);
    return 2;
}
