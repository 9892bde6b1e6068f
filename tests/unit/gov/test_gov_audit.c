/*
 * test_gov_audit.c - the hash-chained audit log: line format and chain (prev = SHA-256 of the
 * previous line, checked here with an independent EVP computation), empty and invalid objects,
 * reopen continues the chain, a torn tail is cut at reopen, a garbage last line refuses reopen, a
 * second writer is refused, rotation (FILE.<seq> names, chain across files, keep pruning, a crash
 * between rename and create), every tamper kind named at the right record, FAIL_OPEN drop counting
 * and FAIL_CLOSED refusal on /dev/full, append never blocking while the writer is stuck on a full
 * FIFO (plus the drop marker), concurrent appends with nothing lost, flush, verifier chunking
 * invariance, NULL safety, an idle writer sleeps (one coarse CPU-time check: < 0.15 s of CPU
 * in 0.3 s idle). Bounded waits only; no latency or throughput asserts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/status.h"
#include "gov/gov_audit.h"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sy-test-audit.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void pathf(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static gaud_t *open_log(const char *path, gaud_fsync_t fs, gaud_fail_t fail, uint64_t rotate)
{
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.fsync = fs;
    c.fail = fail;
    c.rotate_bytes = rotate;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    if (!a)
        fail_msg("gaud_open %s: %s", path, err);
    return a;
}

static void append_n(gaud_t *a, int from, int n, size_t pad)
{
    char *buf = malloc(pad + 128);
    assert_non_null(buf);
    for (int i = from; i < from + n; i++) {
        int k = snprintf(buf, 128, "{\"request_id\":\"r%d\",\"text\":\"", i);
        memset(buf + k, 'x', pad);
        memcpy(buf + k + pad, "\"}", 3);
        assert_int_equal(gaud_append(a, buf, (size_t)k + pad + 2), ST_OK);
    }
    free(buf);
}

static int verify_buf(const char *name, const char *data, size_t len, const gaud_verify_opts_t *o,
                      gaud_verify_report_t *rep)
{
    gaud_verifier_t *v = gaud_verifier_create(o);
    assert_non_null(v);
    gaud_verifier_feed(v, name, data, len);
    int rc = gaud_verifier_finish(v, rep);
    gaud_verifier_destroy(v);
    return rc;
}

static int verify_path(const char *path, const gaud_verify_opts_t *o, gaud_verify_report_t *rep)
{
    const char *f[1] = {path};
    return gaud_verify_files(f, 1, o, rep);
}

static void sha_hex(const char *s, size_t len, char out[65])
{
    unsigned char h[32];
    unsigned int n = 0;
    EVP_Digest(s, len, h, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

/* Checks every line's seq and prev independently of the module. Returns the line count. */
static int check_chain_text(const char *b, size_t len, int first_seq, const char *first_prev)
{
    char prev[65];
    snprintf(prev, sizeof prev, "%s", first_prev);
    int n = 0;
    const char *p = b;
    while (p < b + len) {
        const char *nl = memchr(p, '\n', (size_t)(b + len - p));
        assert_non_null(nl);
        char want[128];
        snprintf(want, sizeof want, "{\"seq\":%d,\"prev\":\"%s\"", first_seq + n, prev);
        if (strncmp(p, want, strlen(want)) != 0)
            fail_msg("line %d: want prefix %s, got %.100s", n + 1, want, p);
        sha_hex(p, (size_t)(nl - p), prev);
        n++;
        p = nl + 1;
    }
    return n;
}

static const char ZEROS[] = "0000000000000000000000000000000000000000000000000000000000000000";

static void test_chain_basic(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "basic.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_EACH, GAUD_FAIL_CLOSED, 0);
    assert_true(gaud_accepting(a));
    append_n(a, 1, 100, 50);
    assert_int_equal(gaud_flush(a, 10000), ST_OK);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.appended, 100);
    assert_int_equal(st.written, 100);
    assert_int_equal(st.last_seq, 100);
    assert_true(st.fsyncs >= 1);
    assert_int_equal(st.queue_bytes, 0);
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len;
    char *b = slurp(path, &len);
    assert_int_equal(check_chain_text(b, len, 1, ZEROS), 100);
    assert_non_null(strstr(b, ",\"request_id\":\"r1\",\"text\":\"xxx"));
    gaud_verify_report_t rep;
    assert_int_equal(verify_path(path, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 100);
    assert_int_equal(rep.first_seq, 1);
    assert_int_equal(rep.last_seq, 100);
    assert_string_equal(rep.last_hash, st.last_hash);
    /* the anchor option */
    gaud_verify_opts_t o;
    memset(&o, 0, sizeof o);
    o.have_last = true;
    snprintf(o.last_hash, sizeof o.last_hash, "%s", st.last_hash);
    assert_int_equal(verify_path(path, &o, &rep), ST_OK);
    o.last_hash[0] = o.last_hash[0] == 'a' ? 'b' : 'a';
    assert_int_equal(verify_path(path, &o, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_LAST_HASH);
    free(b);
}

static void test_objects(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "objects.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    assert_int_equal(gaud_append(a, "{}", 2), ST_OK);
    assert_int_equal(gaud_append(a, "{  }", 4), ST_OK);
    assert_int_equal(gaud_append(a, "{ \"a\" : 1 }", 11), ST_OK);
    assert_int_equal(gaud_append(a, "[1]", 3), ST_INVAL);
    assert_int_equal(gaud_append(a, "{\"a\":\n1}", 8), ST_INVAL);
    assert_int_equal(gaud_append(a, "{\"a\":1", 6), ST_INVAL);
    assert_int_equal(gaud_append(a, "{", 1), ST_INVAL);
    assert_int_equal(gaud_append(a, "{\0}", 3), ST_INVAL);
    assert_int_equal(gaud_append(a, NULL, 0), ST_INVAL);
    assert_int_equal(gaud_append(NULL, "{}", 2), ST_INVAL);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.rejected, 5);
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len;
    char *b = slurp(path, &len);
    assert_int_equal(check_chain_text(b, len, 1, ZEROS), 3);
    char *l2 = strchr(b, '\n') + 1;
    assert_memory_equal(l2 + 81, "\"}\n", 3); /* {"seq":2,"prev":"<64>"} */
    assert_non_null(strstr(b, "\", \"a\" : 1 }\n"));
    gaud_verify_report_t rep;
    assert_int_equal(verify_path(path, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 3);
    free(b);

    /* validate_json refuses what only looks like an object */
    pathf(path, sizeof path, "objects2.log");
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.validate_json = true;
    char err[256];
    a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(gaud_append(a, "{\"a\":}", 6), ST_INVAL);
    assert_int_equal(gaud_append(a, "{\"a\":\"\xff\"}", 9), ST_INVAL);
    assert_int_equal(gaud_append(a, "{\"a\":[1,{}]}", 12), ST_OK);
    assert_int_equal(gaud_close(a), ST_OK);
}

static void test_reopen_continues(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "reopen.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 0);
    append_n(a, 1, 10, 10);
    assert_int_equal(gaud_close(a), ST_OK);
    a = open_log(path, GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 0);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.last_seq, 10);
    append_n(a, 11, 10, 10);
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len;
    char *b = slurp(path, &len);
    assert_int_equal(check_chain_text(b, len, 1, ZEROS), 20);
    free(b);
    gaud_verify_report_t rep;
    assert_int_equal(verify_path(path, NULL, &rep), ST_OK);
    assert_int_equal(rep.last_seq, 20);
}

static void test_reopen_cuts_torn_tail(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "torn.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    append_n(a, 1, 10, 10);
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len0;
    free(slurp(path, &len0));
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs("{\"seq\":11,\"prev\":\"abc", f); /* a writer killed mid-line */
    fclose(f);
    gaud_verify_report_t rep;
    assert_int_equal(verify_path(path, NULL, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_TRUNCATED);
    assert_int_equal(rep.records, 10);
    assert_int_equal(rep.line, 11);
    a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.tail_bytes_cut, 21);
    assert_int_equal(st.last_seq, 10);
    append_n(a, 11, 5, 10);
    assert_int_equal(gaud_close(a), ST_OK);
    assert_int_equal(verify_path(path, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 15);
}

static void test_reopen_refuses_garbage(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "garbage.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    append_n(a, 1, 3, 10);
    assert_int_equal(gaud_close(a), ST_OK);
    FILE *f = fopen(path, "ab");
    fputs("hello world\n", f);
    fclose(f);
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    char err[256] = "";
    assert_null(gaud_open(&c, err, sizeof err));
    assert_non_null(strstr(err, "not an audit record"));
    /* a missing directory */
    pathf(path, sizeof path, "no/such/dir.log");
    c.path = path;
    assert_null(gaud_open(&c, err, sizeof err));
    assert_non_null(strstr(err, "no/such/dir.log"));
    c.path = NULL;
    assert_null(gaud_open(&c, err, sizeof err));
    assert_null(gaud_open(NULL, err, sizeof err));
}

static void test_second_writer_refused(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "locked.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    char err[256] = "";
    assert_null(gaud_open(&c, err, sizeof err));
    assert_non_null(strstr(err, "locked"));
    assert_int_equal(gaud_close(a), ST_OK);
    a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(gaud_close(a), ST_OK);
}

static void test_rotation(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "rot.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 4096);
    append_n(a, 1, 50, 900); /* ~1 KB lines: 3 per file */
    assert_int_equal(gaud_close(a), ST_OK);
    char **files = NULL;
    size_t n = 0;
    assert_int_equal(gaud_chain_files(path, &files, &n), ST_OK);
    assert_true(n >= 10);
    assert_string_equal(files[n - 1], path);
    char want[400];
    snprintf(want, sizeof want, "%s.00000000000000000001", path);
    assert_string_equal(files[0], want);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        assert_int_equal(stat(files[i], &st), 0);
        assert_true(st.st_size <= 4096);
    }
    gaud_verify_report_t rep;
    assert_int_equal(gaud_verify_files((const char *const *)files, n, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 50);
    assert_int_equal(rep.last_seq, 50);
    /* the files out of order are caught */
    char *t = files[0];
    files[0] = files[1];
    files[1] = t;
    assert_int_equal(gaud_verify_files((const char *const *)files, n, NULL, &rep), ST_PROTO);
    t = files[0];
    files[0] = files[1];
    files[1] = t;
    /* the last file alone: its first prev is not genesis; with --from-* of the one before ok */
    assert_int_equal(verify_path(files[n - 1], NULL, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_GAP);
    assert_int_equal(rep.line, 1);
    assert_non_null(strstr(rep.detail, "--from-hash"));
    gaud_verify_report_t prev;
    assert_int_equal(verify_path(files[n - 2], &(gaud_verify_opts_t){.trust_first = true}, &prev),
                     ST_OK);
    gaud_verify_opts_t o;
    memset(&o, 0, sizeof o);
    o.have_from = true;
    o.from_seq = prev.last_seq;
    memcpy(o.from_hash, prev.last_hash, sizeof o.from_hash);
    assert_int_equal(verify_path(files[n - 1], &o, &rep), ST_OK);
    assert_int_equal(rep.last_seq, 50);
    o.from_seq--; /* a record between the files went missing */
    assert_int_equal(verify_path(files[n - 1], &o, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_GAP);
    o.from_seq += 2; /* the file repeats the predecessor's last record */
    assert_int_equal(verify_path(files[n - 1], &o, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_ORDER);
    gaud_files_free(files, n);

    /* a crash between the rename and the new file: reopen continues from the rotated file */
    int live_first = 0;
    {
        size_t ll;
        char *lb = slurp(path, &ll);
        assert_int_equal(sscanf(lb, "{\"seq\":%d", &live_first), 1);
        free(lb);
    }
    snprintf(want, sizeof want, "%s.%020d", path, live_first);
    assert_int_equal(rename(path, want), 0);
    a = open_log(path, GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 4096);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.last_seq, 50);
    append_n(a, 51, 10, 900);
    /* keep: only the newest 2 rotated files survive the next rotations */
    assert_int_equal(gaud_close(a), ST_OK);
    assert_int_equal(gaud_chain_files(path, &files, &n), ST_OK);
    assert_int_equal(gaud_verify_files((const char *const *)files, n, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 60);
    gaud_files_free(files, n);

    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.rotate_bytes = 4096;
    c.keep = 2;
    char err[256];
    a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    append_n(a, 61, 12, 900);
    assert_int_equal(gaud_close(a), ST_OK);
    assert_int_equal(gaud_chain_files(path, &files, &n), ST_OK);
    assert_int_equal(n, 3);
    assert_int_equal(gaud_verify_files((const char *const *)files, n, NULL, &rep), ST_PROTO);
    gaud_verify_opts_t tf = {.trust_first = true};
    assert_int_equal(gaud_verify_files((const char *const *)files, n, &tf, &rep), ST_OK);
    assert_int_equal(rep.last_seq, 72);
    gaud_files_free(files, n);
}

/* ---- tampering ---- */

typedef struct lines {
    char *buf;
    size_t len;
    char *line[64];
    size_t n;
} lines_t;

static void make_clean(lines_t *L, int n)
{
    char path[300];
    pathf(path, sizeof path, "tamper.log");
    unlink(path);
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_CLOSED, 0);
    append_n(a, 1, n, 30);
    assert_int_equal(gaud_close(a), ST_OK);
    L->buf = slurp(path, &L->len);
    L->n = 0;
    for (char *p = L->buf; p < L->buf + L->len;) {
        char *nl = memchr(p, '\n', (size_t)(L->buf + L->len - p));
        L->line[L->n++] = p;
        *nl = '\0';
        p = nl + 1;
    }
}

/* Joins the lines in the given order (-1 ends), each with '\n' unless it is the last and
 * cut_last > 0 (then only its first cut_last bytes). */
static char *join(const lines_t *L, const int *order, size_t cut_last, size_t *len)
{
    char *out = malloc(L->len + 256);
    size_t o = 0;
    for (int i = 0; order[i] >= 0; i++) {
        const char *s = order[i] >= 1000 ? "this is not json" : L->line[order[i]];
        size_t l = strlen(s);
        bool last = order[i + 1] < 0;
        if (last && cut_last) {
            memcpy(out + o, s, cut_last);
            o += cut_last;
        } else {
            memcpy(out + o, s, l);
            o += l;
            out[o++] = '\n';
        }
    }
    *len = o;
    return out;
}

static void expect_bad(const char *data, size_t len, const char *reason, uint64_t line,
                       uint64_t seq, uint64_t verified)
{
    gaud_verify_report_t rep;
    assert_int_equal(verify_buf("t.log", data, len, NULL, &rep), ST_PROTO);
    char msg[1024];
    gaud_verify_report_format(&rep, msg, sizeof msg);
    if (rep.reason != reason || rep.line != line || rep.seq != seq || rep.records != verified)
        fail_msg("want %s at line %" PRIu64 " seq %" PRIu64 " (%" PRIu64 " verified), got: %s",
                 reason, line, seq, verified, msg);
    char want[64];
    snprintf(want, sizeof want, "t.log:%" PRIu64 ": record", line);
    assert_non_null(strstr(msg, want));
}

static void test_tamper_kinds(void **state)
{
    (void)state;
    lines_t L;
    make_clean(&L, 10);
    assert_int_equal(L.n, 10);
    size_t len;
    char *d;
    gaud_verify_report_t rep;
    int clean[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1};
    d = join(&L, clean, 0, &len);
    assert_int_equal(verify_buf("t.log", d, len, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 10);
    free(d);

    /* one byte of record 4's text changed: named as record 4 (its hash breaks the link to 5) */
    char *x = strstr(L.line[3], "xxxx");
    *x = 'y';
    d = join(&L, clean, 0, &len);
    expect_bad(d, len, GAUD_R_HASH, 4, 4, 3);
    free(d);
    *x = 'x';
    /* one byte of record 5's prev changed (still hex): record 5 is named */
    char *pv = L.line[4] + strlen("{\"seq\":5,\"prev\":\"");
    char keep = *pv;
    *pv = keep == '0' ? '1' : '0';
    d = join(&L, clean, 0, &len);
    expect_bad(d, len, GAUD_R_HASH, 5, 5, 4);
    free(d);
    *pv = keep;
    /* record 4 deleted: line 4 now holds seq 5 */
    int del[] = {0, 1, 2, 4, 5, 6, 7, 8, 9, -1};
    d = join(&L, del, 0, &len);
    expect_bad(d, len, GAUD_R_GAP, 4, 5, 3);
    free(d);
    /* the first record deleted */
    int del0[] = {1, 2, 3, -1};
    d = join(&L, del0, 0, &len);
    expect_bad(d, len, GAUD_R_GAP, 1, 2, 0);
    free(d);
    /* records 4 and 5 swapped */
    int swp[] = {0, 1, 2, 4, 3, 5, 6, 7, 8, 9, -1};
    d = join(&L, swp, 0, &len);
    expect_bad(d, len, GAUD_R_ORDER, 4, 5, 3);
    free(d);
    /* the last two swapped */
    int swp2[] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 8, -1};
    d = join(&L, swp2, 0, &len);
    expect_bad(d, len, GAUD_R_ORDER, 9, 10, 8);
    free(d);
    /* a duplicated record */
    int dup[] = {0, 1, 2, 2, 3, -1};
    d = join(&L, dup, 0, &len);
    expect_bad(d, len, GAUD_R_ORDER, 4, 3, 3);
    free(d);
    /* a garbage line inserted after record 3 */
    int garb[] = {0, 1, 2, 1000, 3, 4, -1};
    d = join(&L, garb, 0, &len);
    expect_bad(d, len, GAUD_R_NOT_JSON, 4, 4, 3);
    free(d);
    /* valid JSON without the chain prefix */
    char *old = L.line[5];
    L.line[5] = "{\"a\":1}";
    d = join(&L, clean, 0, &len);
    expect_bad(d, len, GAUD_R_NOT_RECORD, 6, 6, 5);
    free(d);
    L.line[5] = old;
    /* truncated tail: records up to 9 verified; allowed with the option */
    d = join(&L, clean, 40, &len);
    expect_bad(d, len, GAUD_R_TRUNCATED, 10, 10, 9);
    gaud_verify_opts_t o = {.allow_truncated_tail = true};
    assert_int_equal(verify_buf("t.log", d, len, &o, &rep), ST_OK);
    assert_int_equal(rep.records, 9);
    assert_true(rep.truncated_tail);
    assert_int_equal(rep.tail_line, 10);
    char msg[1024];
    gaud_verify_report_format(&rep, msg, sizeof msg);
    assert_non_null(strstr(msg, "ok: 9 records, seq 1..9"));
    free(d);
    /* a truncated record in the middle of a chain is never allowed */
    gaud_verifier_t *v = gaud_verifier_create(&o);
    gaud_verifier_feed(v, "a.log", L.line[0], 20);
    gaud_verifier_end_file(v);
    gaud_verifier_feed(v, "b.log", L.line[1], strlen(L.line[1]));
    gaud_verifier_feed(v, "b.log", "\n", 1);
    assert_int_equal(gaud_verifier_finish(v, &rep), ST_PROTO);
    assert_ptr_equal(rep.reason, GAUD_R_TRUNCATED);
    assert_string_equal(rep.file, "a.log");
    gaud_verifier_destroy(v);
    /* an empty input verifies as 0 records */
    assert_int_equal(verify_buf("e.log", "", 0, NULL, &rep), ST_OK);
    assert_int_equal(rep.records, 0);
    assert_string_equal(rep.last_hash, ZEROS);
    free(L.buf);
}

static void test_verifier_chunking(void **state)
{
    (void)state;
    lines_t L;
    make_clean(&L, 6);
    int swp[] = {0, 1, 3, 2, 4, 5, -1};
    int clean[] = {0, 1, 2, 3, 4, 5, -1};
    for (int k = 0; k < 2; k++) {
        size_t len;
        char *d = join(&L, k ? swp : clean, k ? 0 : 17, &len);
        gaud_verify_report_t whole, bytes;
        verify_buf("c.log", d, len, NULL, &whole);
        gaud_verifier_t *v = gaud_verifier_create(NULL);
        for (size_t i = 0; i < len; i++)
            gaud_verifier_feed(v, "c.log", d + i, 1);
        gaud_verifier_finish(v, &bytes);
        gaud_verifier_destroy(v);
        assert_int_equal(whole.status, bytes.status);
        assert_ptr_equal(whole.reason, bytes.reason);
        assert_int_equal(whole.line, bytes.line);
        assert_int_equal(whole.records, bytes.records);
        assert_string_equal(whole.last_hash, bytes.last_hash);
        free(d);
    }
    free(L.buf);
}

/* ---- failures ---- */

static bool wait_for(bool (*pred)(gaud_t *), gaud_t *a)
{
    for (int i = 0; i < 1000; i++) { /* 10 s */
        if (pred(a))
            return true;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static bool is_broken(gaud_t *a)
{
    gaud_stats_t st;
    gaud_stats(a, &st);
    return st.broken;
}

static bool not_accepting(gaud_t *a)
{
    return !gaud_accepting(a);
}

static void test_fail_open_drops(void **state)
{
    (void)state;
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = "/dev/full";
    c.fail = GAUD_FAIL_OPEN;
    c.max_queue_bytes = 16384;
    c.retry_ms = 20;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    append_n(a, 1, 1, 100);
    assert_true(wait_for(is_broken, a));
    assert_true(gaud_accepting(a)); /* fail-open keeps admitting requests */
    for (int i = 0; i < 100; i++)
        append_n(a, 2 + i, 1, 1000);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.written, 0);
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.last_error, -ENOSPC);
    assert_true(st.dropped >= 80);
    assert_int_equal(st.appended + st.dropped, 101);
    assert_true(st.queue_bytes <= 16384);
    assert_int_equal(gaud_flush(a, 1000), ST_STATE);
    assert_int_equal(gaud_close(a), -ENOSPC);
}

static void test_fail_closed_refuses(void **state)
{
    (void)state;
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = "/dev/full";
    c.fail = GAUD_FAIL_CLOSED;
    c.retry_ms = 20;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    assert_true(gaud_accepting(a));
    assert_int_equal(gaud_append(a, "{\"a\":1}", 7), ST_OK);
    assert_true(wait_for(not_accepting, a));
    assert_int_equal(gaud_append(a, "{\"a\":2}", 7), ST_STATE);
    assert_int_equal(gaud_append(a, "{\"a\":3}", 7), ST_STATE);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.appended, 1);
    assert_int_equal(st.written, 0);
    assert_true(st.broken);
    assert_int_equal(gaud_close(a), -ENOSPC);
}

static void test_fail_closed_queue_full(void **state)
{
    (void)state;
    /* a FIFO nobody reads: the writer blocks in write(2) once the pipe is full, appends must
     * not; the queue fills and FAIL_CLOSED refuses with ST_AGAIN */
    char path[300];
    pathf(path, sizeof path, "fifo-closed");
    assert_int_equal(mkfifo(path, 0600), 0);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.max_queue_bytes = 65536;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    char rec[1100];
    memset(rec, 'z', sizeof rec);
    memcpy(rec, "{\"t\":\"", 6);
    memcpy(rec + sizeof rec - 2, "\"}", 2);
    int again = 0, ok = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 2000 && again == 0; i++) {
        int rc = gaud_append(a, rec, sizeof rec);
        if (rc == ST_AGAIN)
            again++;
        else if (rc == ST_OK)
            ok++;
        else
            fail_msg("gaud_append: %s", st_str(rc));
        if (i % 50 == 49) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL); /* let the writer fill the pipe */
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(again, 1);
    assert_false(gaud_accepting(a));
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.refused, 1);
    assert_false(st.broken);
    /* drain the FIFO until everything is written */
    char buf[65536];
    size_t got = 0;
    for (int i = 0; i < 5000; i++) {
        ssize_t r = read(rfd, buf, sizeof buf);
        if (r > 0)
            got += (size_t)r;
        gaud_stats(a, &st);
        if (st.written == (uint64_t)ok && r <= 0)
            break;
        if (r <= 0) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(st.written, ok);
    assert_true(gaud_accepting(a));
    assert_int_equal(gaud_close(a), ST_OK);
    close(rfd);
    assert_true(got > (size_t)ok * sizeof rec);
}

typedef struct fifo_reader {
    int fd;
    char *buf;
    size_t len, cap;
} fifo_reader_t;

static void *on_fifo_read(void *arg)
{
    fifo_reader_t *r = arg;
    for (;;) {
        if (r->len == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 65536;
            r->buf = realloc(r->buf, r->cap);
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    return NULL;
}

static void test_fail_open_marker(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "fifo-open");
    assert_int_equal(mkfifo(path, 0600), 0);
    int rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.fail = GAUD_FAIL_OPEN;
    c.max_queue_bytes = 32768;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    for (int i = 0; i < 400; i++) {
        append_n(a, i + 1, 1, 1000);
        if (i % 50 == 49) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_true(st.dropped > 0);
    assert_int_equal(st.appended + st.dropped, 400);
    /* now read everything: the writer drains and notes the drops in the chain */
    int fl = fcntl(rfd, F_GETFL);
    fcntl(rfd, F_SETFL, fl & ~O_NONBLOCK);
    fifo_reader_t r = {.fd = rfd};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, on_fifo_read, &r), 0);
    append_n(a, 401, 1, 10);                /* after the drops: a marker precedes this one */
    assert_int_equal(gaud_close(a), ST_OK); /* the writer's fd closes: EOF for the reader */
    pthread_join(th, NULL);
    close(rfd);
    gaud_verify_report_t rep;
    assert_int_equal(verify_buf("fifo", r.buf, r.len, NULL, &rep), ST_OK);
    uint64_t markers = 0, noted = 0;
    for (const char *m = r.buf; (m = strstr(m, "\"audit\":\"dropped\",\"records\":"));) {
        m += strlen("\"audit\":\"dropped\",\"records\":");
        noted += strtoull(m, NULL, 10);
        markers++;
    }
    assert_true(markers >= 1);
    assert_int_equal(noted, st.dropped);
    assert_int_equal(rep.records, st.appended + 1 + markers);
    gaud_stats(NULL, &st);
    free(r.buf);
}

/* ---- concurrency ---- */

typedef struct app_arg {
    gaud_t *a;
    int id, n;
} app_arg_t;

static void *on_append(void *arg)
{
    app_arg_t *p = arg;
    char b[128];
    for (int i = 0; i < p->n; i++) {
        int k = snprintf(b, sizeof b, "{\"thread\":%d,\"i\":%d}", p->id, i);
        if (gaud_append(p->a, b, (size_t)k) != ST_OK)
            return (void *)1;
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "conc.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 0);
    enum { T = 4, N = 5000 };
    pthread_t th[T];
    app_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (app_arg_t){a, i, N};
        assert_int_equal(pthread_create(&th[i], NULL, on_append, &args[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len;
    char *b = slurp(path, &len);
    assert_int_equal(check_chain_text(b, len, 1, ZEROS), T * N);
    /* each thread's records are in its own order */
    int next[T] = {0};
    for (char *p = b; p < b + len;) {
        char *nl = strchr(p, '\n');
        char *q = strstr(p, "\"thread\":");
        assert_true(q && q < nl);
        int t, i;
        assert_int_equal(sscanf(q, "\"thread\":%d,\"i\":%d", &t, &i), 2);
        assert_int_equal(i, next[t]);
        next[t]++;
        p = nl + 1;
    }
    for (int i = 0; i < T; i++)
        assert_int_equal(next[i], N);
    free(b);
}

/* GROUP batching holds records for up to group_ms: a flush (and a close) must not wait for it. With
 * group_ms = 60 s a flush that waited for the batch would time out after 5 s. */
static void test_group_batch_flush(void **state)
{
    (void)state;
    char path[300];
    pathf(path, sizeof path, "batch.log");
    gaud_config_t c;
    gaud_config_init(&c);
    c.path = path;
    c.fsync = GAUD_FSYNC_GROUP;
    c.group_ms = 60000;
    char err[256];
    gaud_t *a = gaud_open(&c, err, sizeof err);
    assert_non_null(a);
    append_n(a, 0, 3, 0);
    assert_int_equal(gaud_flush(a, 5000), ST_OK);
    gaud_stats_t st;
    gaud_stats(a, &st);
    assert_int_equal(st.written, 3);
    append_n(a, 3, 2, 0);
    assert_int_equal(gaud_close(a), ST_OK);
    size_t len;
    char *b = slurp(path, &len);
    assert_int_equal(check_chain_text(b, len, 1, ZEROS), 5);
    free(b);
}

static void test_null_safe(void **state)
{
    (void)state;
    assert_int_equal(gaud_close(NULL), ST_OK);
    assert_false(gaud_accepting(NULL));
    assert_int_equal(gaud_flush(NULL, 0), ST_INVAL);
    gaud_stats_t st;
    gaud_stats(NULL, &st);
    assert_string_equal(st.last_hash, ZEROS);
    gaud_verifier_destroy(NULL);
    gaud_fsync_t f;
    assert_int_equal(gaud_fsync_parse("each", &f), ST_OK);
    assert_int_equal(f, GAUD_FSYNC_EACH);
    assert_int_equal(gaud_fsync_parse("sometimes", &f), ST_INVAL);
    assert_true(gaud_hash_valid(ZEROS));
    assert_false(gaud_hash_valid("00"));
    /* a closed log refuses */
    char path[300];
    pathf(path, sizeof path, "null.log");
    gaud_t *a = open_log(path, GAUD_FSYNC_NONE, GAUD_FAIL_OPEN, 0);
    assert_int_equal(gaud_flush(a, 1000), ST_OK);
    assert_int_equal(gaud_close(a), ST_OK);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void test_idle_writer_sleeps(void **state)
{
    (void)state;
    /* after writing, an idle writer must sleep, on a regular file and on a device alike */
    const char *paths[2] = {"/dev/null", NULL};
    char path[300];
    pathf(path, sizeof path, "idle.log");
    paths[1] = path;
    for (int i = 0; i < 2; i++) {
        gaud_t *a = open_log(paths[i], GAUD_FSYNC_GROUP, GAUD_FAIL_CLOSED, 0);
        append_n(a, 1, 10, 10);
        assert_int_equal(gaud_flush(a, 5000), ST_OK);
        double c0 = cpu_seconds();
        struct timespec ts = {0, 300000000};
        nanosleep(&ts, NULL);
        double used = cpu_seconds() - c0;
        if (used > 0.15)
            fail_msg("%s: the idle writer used %.3f s of CPU in 0.3 s", paths[i], used);
        assert_int_equal(gaud_close(a), ST_OK);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_continues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_cuts_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_refuses_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_writer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verifier_chunking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_open_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_closed_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_closed_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_open_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_batch_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_writer_sleeps, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
