/*
 * gov_audit.c - see gov_audit.h: the hash-chained audit log writer and its verifier.
 *
 * Writer design. gaud_append checks the object, then under a mutex appends [u32 len][bytes] to
 * the queue buffer `q` and signals the writer if it sleeps; that is the only work on the caller's
 * thread. The writer swaps `q` with its private `batch` buffer (O(1), both keep their capacity),
 * then outside the lock turns records into lines in `out` (seq, prev, SHA-256 of the line), and
 * writes `out` with write(2) every GAUD_WRITE_CHUNK bytes. Seq and prev are assigned by the writer,
 * so a record dropped or refused at append time never leaves a gap. After a write error the
 * formed lines stay in `out` and are retried every retry_ms (a partial write is cut off with
 * ftruncate first), so the chain on disk never has a hole or a torn line in the middle; while
 * that lasts the log is "broken" (FAIL_CLOSED refuses, FAIL_OPEN queues until full, then drops).
 * Rotation renames FILE to FILE.<first seq> with renameat2(RENAME_NOREPLACE) and creates a new
 * FILE (two steps, each retried). queue_bytes counts accepted records until they are written, so
 * max_queue_bytes bounds all record memory (q + batch + out are at most about 2x that).
 *
 * Verifier design. A streaming line splitter feeds a one-line-delayed evaluator: each record is
 * judged when the next one is known, which is what tells "two records swapped" (the next line has
 * the expected seq) from "a record deleted" (it does not), and which of two lines around a chain
 * break was edited (an edit of line k breaks the link k -> k+1 only; an edit of the prev field of
 * line k+1 breaks k -> k+1 and k+1 -> k+2).
 * Thread-safety: see gov_audit.h.
 */
#include "gov/gov_audit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/jsonp.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"

#define GAUD_WRITE_CHUNK ((size_t)256 << 10) /* bytes of lines per write(2) */
#define GAUD_DEF_QUEUE ((size_t)64 << 20)
#define GAUD_DEF_GROUP_MS 10
#define GAUD_DEF_RETRY_MS 200
#define GAUD_SCAN_BLOCK 65536

const char *const GAUD_R_NOT_JSON = "not JSON";
const char *const GAUD_R_NOT_RECORD = "not an audit record";
const char *const GAUD_R_HASH = "bad chain hash";
const char *const GAUD_R_GAP = "seq gap";
const char *const GAUD_R_ORDER = "seq out of order";
const char *const GAUD_R_TRUNCATED = "incomplete last record (truncated)";
const char *const GAUD_R_LAST_HASH = "last hash mismatch";
const char *const GAUD_R_IO = "cannot read";

/* ------------------------------------------------------------------------------------------- */
/* hashing, hex, the line prefix */

static void hex_encode(const unsigned char h[32], char out[GAUD_HASH_HEX + 1])
{
    static const char dig[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = dig[h[i] >> 4];
        out[2 * i + 1] = dig[h[i] & 15];
    }
    out[GAUD_HASH_HEX] = '\0';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes 64 hex digits (lowercase only when strict). */
static bool hex_decode(const char *s, size_t len, bool strict, unsigned char out[32])
{
    if (len != GAUD_HASH_HEX)
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        if (strict &&
            ((s[2 * i] >= 'A' && s[2 * i] <= 'F') || (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F')))
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

bool gaud_hash_valid(const char *s)
{
    unsigned char h[32];
    return s && hex_decode(s, strlen(s), false, h);
}

static int sha256(EVP_MD_CTX *md, const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(md, data, len) != 1 ||
        EVP_DigestFinal_ex(md, out, &n) != 1 || n != 32)
        return ST_NOMEM; /* OpenSSL only fails here on allocation */
    return ST_OK;
}

static const char PFX_SEQ[] = "{\"seq\":";
static const char PFX_PREV[] = ",\"prev\":\"";

/* Parses the writer's exact prefix {"seq":N,"prev":"<64 lowercase hex>" followed by ',' or '}'.
 * Only the prefix bytes are looked at. */
static bool parse_prefix(const char *s, size_t len, uint64_t *seq, unsigned char prev[32])
{
    size_t i = sizeof PFX_SEQ - 1;
    if (len < i || memcmp(s, PFX_SEQ, i) != 0)
        return false;
    size_t d0 = i;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        unsigned dg = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - dg) / 10)
            return false;
        v = v * 10 + dg;
        i++;
    }
    if (i == d0 || i - d0 > 20 || (s[d0] == '0' && i - d0 > 1) || v == 0)
        return false;
    size_t pl = sizeof PFX_PREV - 1;
    if (len - i < pl + GAUD_HASH_HEX + 2 || memcmp(s + i, PFX_PREV, pl) != 0)
        return false;
    i += pl;
    if (!hex_decode(s + i, GAUD_HASH_HEX, true, prev))
        return false;
    i += GAUD_HASH_HEX;
    if (s[i] != '"' || (s[i + 1] != ',' && s[i + 1] != '}'))
        return false;
    *seq = v;
    return true;
}

/* Queued bytes that wake the writer at once even while it batches (GROUP / NONE). */
#define GAUD_BATCH_BYTES (256u << 10)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void deadline_ts(uint64_t at_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(at_ms / 1000u);
    ts->tv_nsec = (long)(at_ms % 1000u) * 1000000L;
}

/* ------------------------------------------------------------------------------------------- */
/* the writer */

struct gaud {
    gaud_config_t cfg; /* cfg.path points at path */
    char *path;
    char *dir; /* directory of path (for fsync after rotation, listing rotated files) */

    pthread_mutex_t mu;
    pthread_cond_t wake;  /* writer sleeps here */
    pthread_cond_t done;  /* flush waiters sleep here */
    sy_buf_t q;           /* [u32 len][bytes]... under mu */
    bool stop;            /* under mu */
    bool writer_waiting;  /* under mu */
    uint64_t q_first_ms;  /* under mu: when the oldest record in q was appended, 0 = q empty */
    bool wake_sent;       /* under mu: the writer was signalled for the records now in q */
    uint64_t synced_recs; /* caller records written and durable, under mu */
    uint64_t last_seq;    /* published chain head, under mu */
    char last_hash[GAUD_HASH_HEX + 1];

    _Atomic bool closing;
    _Atomic bool broken;
    _Atomic int last_error;
    _Atomic uint64_t q_bytes;
    _Atomic uint64_t flush_req;
    _Atomic uint64_t dropped_unlogged;
    _Atomic uint64_t n_appended, n_written, n_markers, n_dropped, n_refused, n_rejected;
    _Atomic uint64_t n_write_errors, n_fsyncs, n_rotations, tail_cut;

    /* writer thread only (and gaud_open before the thread starts) */
    pthread_t thr;
    bool thr_started;
    int fd;
    bool regular;
    EVP_MD_CTX *md;
    uint64_t file_size;  /* bytes of complete lines in the current file */
    uint64_t file_first; /* seq of the current file's first line (its rotated name) */
    uint64_t seq;        /* seq of the last line formed */
    unsigned char hash[32];
    sy_buf_t batch;
    size_t batch_off;
    sy_buf_t out;   /* formed lines not yet written */
    size_t out_off; /* non-regular files: bytes of out already written */
    uint64_t out_recs, out_markers, out_qbytes;
    bool partial;      /* the file may hold bytes past file_size (a failed partial write) */
    int rot_phase;     /* 0 none, 1 rename pending, 2 new file pending */
    uint64_t unsynced; /* bytes written since the last fdatasync */
    uint64_t written_recs;
    uint64_t last_sync_ms;
    uint64_t retry_at_ms;
};

void gaud_config_init(gaud_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->fsync = GAUD_FSYNC_GROUP;
    cfg->group_ms = GAUD_DEF_GROUP_MS;
    cfg->fail = GAUD_FAIL_CLOSED;
    cfg->max_queue_bytes = GAUD_DEF_QUEUE;
    cfg->retry_ms = GAUD_DEF_RETRY_MS;
}

int gaud_fsync_parse(const char *s, gaud_fsync_t *out)
{
    if (!s)
        return ST_INVAL;
    if (strcmp(s, "each") == 0)
        *out = GAUD_FSYNC_EACH;
    else if (strcmp(s, "group") == 0)
        *out = GAUD_FSYNC_GROUP;
    else if (strcmp(s, "none") == 0)
        *out = GAUD_FSYNC_NONE;
    else
        return ST_INVAL;
    return ST_OK;
}

/* Finds the last '\n' in fd at an offset < end (scanning at most limit bytes back). *pos = its
 * offset, or -1 when none was found within the limit / down to offset 0. */
static int find_nl_back(int fd, uint64_t end, uint64_t limit, int64_t *pos)
{
    char buf[GAUD_SCAN_BLOCK];
    uint64_t scanned = 0;
    *pos = -1;
    while (end > 0 && scanned < limit) {
        size_t n = end < sizeof buf ? (size_t)end : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)(end - n));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if ((size_t)r != n)
            return ST_PROTO; /* the file shrank under us */
        for (size_t i = n; i-- > 0;) {
            if (buf[i] == '\n') {
                *pos = (int64_t)(end - n + i);
                return ST_OK;
            }
        }
        end -= n;
        scanned += n;
    }
    return ST_OK;
}

static int pread_all(int fd, char *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return ST_PROTO;
        got += (size_t)r;
    }
    return ST_OK;
}

/* Reads the chain head of a file of size sz whose last byte is '\n': the last line's seq and
 * hash, and the first line's seq. */
static int read_head(gaud_t *a, int fd, const char *name, uint64_t sz, uint64_t *last_seq,
                     unsigned char hash[32], uint64_t *first_seq, char *err, size_t errlen)
{
    int64_t start = -1;
    char *line = NULL;
    int rc = find_nl_back(fd, sz - 1, GAUD_MAX_LINE + 1, &start);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: cannot read: %s", name, st_str(rc));
        goto fail;
    }
    if (start < 0 && sz - 1 > GAUD_MAX_LINE) {
        sy_errf(err, errlen, "%s: last line longer than %zu bytes", name, GAUD_MAX_LINE);
        rc = ST_PROTO;
        goto fail;
    }
    uint64_t ls = (uint64_t)(start + 1), ll = sz - 1 - ls;
    line = sy_malloc(ll + 1);
    if (!line) {
        rc = ST_NOMEM;
        sy_errf(err, errlen, "out of memory");
        goto fail;
    }
    rc = pread_all(fd, line, ll, ls);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: cannot read: %s", name, st_str(rc));
        goto fail;
    }
    unsigned char prev[32];
    if (!parse_prefix(line, ll, last_seq, prev)) {
        sy_errf(err, errlen,
                "%s: the last line (offset %" PRIu64 ") is not an audit record; cannot continue "
                "the chain (check it with `switchyard audit verify`)",
                name, ls);
        rc = ST_PROTO;
        goto fail;
    }
    rc = sha256(a->md, line, ll, hash);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "sha256 failed");
        goto fail;
    }
    /* the first line's seq: its prefix is all we need */
    char first[160];
    size_t fl = sz < sizeof first ? (size_t)sz : sizeof first;
    rc = pread_all(fd, first, fl, 0);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: cannot read: %s", name, st_str(rc));
        goto fail;
    }
    if (!parse_prefix(first, fl, first_seq, prev)) {
        sy_errf(err, errlen, "%s: the first line is not an audit record", name);
        rc = ST_PROTO;
        goto fail;
    }
    sy_free(line);
    return ST_OK;
fail:
    sy_free(line);
    return rc;
}

/* Sets a's chain head from the log on disk (a->fd open, regular). */
static int load_chain(gaud_t *a, char *err, size_t errlen)
{
    struct stat st;
    char **files = NULL;
    size_t nfiles = 0;
    int rfd = -1, rc;
    if (fstat(a->fd, &st) != 0) {
        rc = -errno;
        sy_errf(err, errlen, "%s: fstat: %s", a->path, strerror(errno));
        goto fail;
    }
    uint64_t sz = (uint64_t)st.st_size;
    if (sz > 0) {
        int64_t nl = -1;
        rc = find_nl_back(a->fd, sz, GAUD_MAX_LINE + 1, &nl);
        if (rc != ST_OK) {
            sy_errf(err, errlen, "%s: cannot read: %s", a->path, st_str(rc));
            goto fail;
        }
        if (nl < 0 && sz > GAUD_MAX_LINE) {
            sy_errf(err, errlen, "%s: no newline in the last %zu bytes: not an audit log", a->path,
                    GAUD_MAX_LINE);
            rc = ST_PROTO;
            goto fail;
        }
        uint64_t keep = (uint64_t)(nl + 1);
        if (keep < sz) {
            if (ftruncate(a->fd, (off_t)keep) != 0) {
                rc = -errno;
                sy_errf(err, errlen, "%s: cannot cut the incomplete last line: %s", a->path,
                        strerror(errno));
                goto fail;
            }
            atomic_store(&a->tail_cut, sz - keep);
            sy_warn("audit.tail_cut",
                    "path=%s bytes=%" PRIu64 " offset=%" PRIu64
                    " msg=\"cut an incomplete last record left by a crash\"",
                    a->path, sz - keep, keep);
            sz = keep;
        }
    }
    a->file_size = sz;
    if (sz > 0) {
        rc = read_head(a, a->fd, a->path, sz, &a->seq, a->hash, &a->file_first, err, errlen);
        if (rc != ST_OK)
            goto fail;
        return ST_OK;
    }
    /* empty: continue from the newest rotated file, if any */
    rc = gaud_chain_files(a->path, &files, &nfiles);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: cannot list rotated files: %s", a->path, st_str(rc));
        goto fail;
    }
    size_t n_rot = nfiles;
    if (n_rot > 0 && strcmp(files[n_rot - 1], a->path) == 0)
        n_rot--;
    if (n_rot > 0) {
        const char *rp = files[n_rot - 1];
        rfd = open(rp, O_RDONLY | O_CLOEXEC);
        if (rfd < 0 || fstat(rfd, &st) != 0) {
            rc = -errno;
            sy_errf(err, errlen, "%s: %s", rp, strerror(errno));
            goto fail;
        }
        sz = (uint64_t)st.st_size;
        char last = 0;
        if (sz == 0 || pread_all(rfd, &last, 1, sz - 1) != ST_OK || last != '\n') {
            sy_errf(err, errlen, "%s: rotated file is empty or ends with an incomplete line", rp);
            rc = ST_PROTO;
            goto fail;
        }
        uint64_t first = 0;
        rc = read_head(a, rfd, rp, sz, &a->seq, a->hash, &first, err, errlen);
        if (rc != ST_OK)
            goto fail;
        sy_info("audit.continue", "path=%s from=%s seq=%" PRIu64, a->path, rp, a->seq);
        close(rfd);
        rfd = -1;
    }
    a->file_first = a->seq + 1;
    gaud_files_free(files, nfiles);
    return ST_OK;
fail:
    if (rfd >= 0)
        close(rfd);
    gaud_files_free(files, nfiles);
    return rc;
}

static void publish_error(gaud_t *a, int rc, const char *what)
{
    atomic_fetch_add(&a->n_write_errors, 1);
    atomic_store(&a->last_error, rc);
    if (!atomic_exchange(&a->broken, true))
        sy_error("audit.io_error", "path=%s op=%s err=\"%s\" retry_ms=%u", a->path, what,
                 st_str(rc), a->cfg.retry_ms);
    a->retry_at_ms = now_ms() + a->cfg.retry_ms;
}

static int open_live(gaud_t *a, int flags, int *out)
{
    int fd = open(a->path, O_RDWR | O_APPEND | O_CLOEXEC | flags, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? ST_EXISTS : -e;
    }
    *out = fd;
    return ST_OK;
}

static void fsync_dir(gaud_t *a)
{
    int dfd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            atomic_fetch_add(&a->n_write_errors, 1);
        close(dfd);
    }
}

static void prune_rotated(gaud_t *a)
{
    char **files = NULL;
    size_t n = 0;
    if (a->cfg.keep == 0 || gaud_chain_files(a->path, &files, &n) != ST_OK)
        return;
    size_t n_rot = n;
    if (n_rot > 0 && strcmp(files[n_rot - 1], a->path) == 0)
        n_rot--;
    for (size_t i = 0; i + a->cfg.keep < n_rot; i++) {
        if (unlink(files[i]) == 0)
            sy_info("audit.prune", "path=%s keep=%u", files[i], a->cfg.keep);
    }
    gaud_files_free(files, n);
}

/* Rotation: rename FILE to FILE.<first seq>, then start a new FILE. Each step is retried. */
static int rotate(gaud_t *a)
{
    char rp[4096];
    int n = snprintf(rp, sizeof rp, "%s.%0*" PRIu64, a->path, GAUD_ROTATED_DIGITS, a->file_first);
    if (n < 0 || (size_t)n >= sizeof rp)
        return ST_LIMIT;
    if (a->rot_phase == 0) {
        if (a->cfg.fsync != GAUD_FSYNC_NONE && a->unsynced > 0) {
            if (fdatasync(a->fd) != 0)
                return -errno;
            atomic_fetch_add(&a->n_fsyncs, 1);
            a->unsynced = 0;
        }
        a->rot_phase = 1;
    }
    if (a->rot_phase == 1) {
        if (renameat2(AT_FDCWD, a->path, AT_FDCWD, rp, RENAME_NOREPLACE) != 0)
            return -errno;
        a->rot_phase = 2;
    }
    int fd = -1;
    int rc = open_live(a, O_CREAT | O_EXCL, &fd);
    if (rc != ST_OK)
        return rc;
    close(a->fd);
    a->fd = fd;
    a->rot_phase = 0;
    fsync_dir(a);
    a->file_size = 0;
    a->file_first = a->seq + 1;
    a->unsynced = 0;
    atomic_fetch_add(&a->n_rotations, 1);
    char hx[GAUD_HASH_HEX + 1];
    hex_encode(a->hash, hx);
    sy_info("audit.rotate", "path=%s rotated=%s last_seq=%" PRIu64 " last_hash=%s", a->path, rp,
            a->seq, hx);
    prune_rotated(a);
    return ST_OK;
}

/* Appends the line for body[0..len) (a JSON object) to out and advances the chain head. */
static int form_line(gaud_t *a, const char *body, size_t len)
{
    sy_buf_t *o = &a->out;
    size_t start = o->len;
    char hx[GAUD_HASH_HEX + 1];
    int rc = sy_buf_reserve(o, len + 128);
    if (rc != ST_OK)
        return rc;
    hex_encode(a->hash, hx);
    sy_buf_append(o, PFX_SEQ, sizeof PFX_SEQ - 1);
    sy_buf_append_i64(o, (int64_t)(a->seq + 1));
    sy_buf_append(o, PFX_PREV, sizeof PFX_PREV - 1);
    sy_buf_append(o, hx, GAUD_HASH_HEX);
    sy_buf_append_char(o, '"');
    size_t i = 1;
    while (i < len - 1 && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r'))
        i++;
    if (i == len - 1) { /* an empty object */
        sy_buf_append_char(o, '}');
    } else {
        sy_buf_append_char(o, ',');
        sy_buf_append(o, body + 1, len - 1);
    }
    rc = sha256(a->md, o->data + start, o->len - start, a->hash);
    if (rc != ST_OK) {
        o->len = start;
        return rc;
    }
    sy_buf_append_char(o, '\n');
    a->seq++;
    return ST_OK;
}

/* Forms a line and checks whether it must go to a new file; if so it is taken back. */
static int form_checked(gaud_t *a, const char *body, size_t len, bool *rotate_now)
{
    size_t old_len = a->out.len;
    uint64_t old_seq = a->seq;
    unsigned char old_hash[32];
    memcpy(old_hash, a->hash, 32);
    int rc = form_line(a, body, len);
    if (rc != ST_OK)
        return rc;
    uint64_t before = a->file_size + old_len;
    if (a->regular && a->cfg.rotate_bytes > 0 && before > 0 &&
        before + (a->out.len - old_len) > a->cfg.rotate_bytes) {
        a->out.len = old_len;
        a->seq = old_seq;
        memcpy(a->hash, old_hash, 32);
        *rotate_now = true;
    }
    return ST_OK;
}

static int write_out(gaud_t *a)
{
    while (a->out_off < a->out.len) {
        ssize_t n = write(a->fd, a->out.data + a->out_off, a->out.len - a->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int rc = -errno;
            if (a->regular) {
                a->partial = a->out_off > 0;
                a->out_off = 0;
            }
            return rc;
        }
        a->out_off += (size_t)n;
    }
    a->file_size += a->out.len;
    a->unsynced += a->out.len;
    a->written_recs += a->out_recs;
    char hx[GAUD_HASH_HEX + 1];
    hex_encode(a->hash, hx);
    pthread_mutex_lock(&a->mu);
    a->last_seq = a->seq;
    memcpy(a->last_hash, hx, sizeof hx);
    if (!a->regular)
        a->synced_recs = a->written_recs;
    pthread_mutex_unlock(&a->mu);
    atomic_fetch_add(&a->n_written, a->out_recs + a->out_markers);
    atomic_fetch_add(&a->n_markers, a->out_markers);
    atomic_fetch_sub(&a->q_bytes, a->out_qbytes);
    a->out.len = 0;
    a->out_off = 0;
    a->out_recs = a->out_markers = a->out_qbytes = 0;
    if (!a->regular)
        pthread_cond_broadcast(&a->done);
    return ST_OK;
}

static int sync_now(gaud_t *a)
{
    if (a->regular && a->unsynced > 0) {
        if (fdatasync(a->fd) != 0)
            return -errno;
        atomic_fetch_add(&a->n_fsyncs, 1);
    }
    a->unsynced = 0;
    a->last_sync_ms = now_ms();
    pthread_mutex_lock(&a->mu);
    a->synced_recs = a->written_recs;
    pthread_cond_broadcast(&a->done);
    pthread_mutex_unlock(&a->mu);
    return ST_OK;
}

static bool sync_due(gaud_t *a, bool stop)
{
    if (a->written_recs == a->synced_recs && a->unsynced == 0)
        return false;
    if (stop || atomic_load(&a->flush_req) > 0 || !a->regular)
        return true;
    switch (a->cfg.fsync) {
    case GAUD_FSYNC_EACH:
        return true;
    case GAUD_FSYNC_GROUP:
        return now_ms() >= a->last_sync_ms + a->cfg.group_ms;
    default:
        return false;
    }
}

/* Writes everything taken from the queue. Returns ST_OK or the I/O error (state kept for retry). */
static int pump(gaud_t *a, const char **what)
{
    int rc;
    if (a->partial) {
        *what = "ftruncate";
        if (ftruncate(a->fd, (off_t)a->file_size) != 0)
            return -errno;
        a->partial = false;
    }
    if (a->rot_phase != 0) {
        *what = "rotate";
        rc = rotate(a);
        if (rc != ST_OK)
            return rc;
    }
    for (;;) {
        bool rot = false;
        while (a->out.len < GAUD_WRITE_CHUNK && !rot) {
            uint64_t drops = atomic_exchange(&a->dropped_unlogged, 0);
            if (drops > 0) {
                char m[96];
                int ml =
                    snprintf(m, sizeof m, "{\"audit\":\"dropped\",\"records\":%" PRIu64 "}", drops);
                rc = form_checked(a, m, (size_t)ml, &rot);
                if (rc != ST_OK || rot) {
                    atomic_fetch_add(&a->dropped_unlogged, drops);
                    if (rc != ST_OK)
                        return rc;
                    break;
                }
                a->out_markers++;
                continue;
            }
            if (a->batch_off >= a->batch.len)
                break;
            uint32_t len;
            memcpy(&len, a->batch.data + a->batch_off, sizeof len);
            rc = form_checked(a, a->batch.data + a->batch_off + 4, len, &rot);
            if (rc != ST_OK)
                return rc;
            if (rot)
                break;
            a->batch_off += 4 + (size_t)len;
            a->out_recs++;
            a->out_qbytes += 4 + (uint64_t)len;
        }
        if (a->out.len > 0) {
            *what = "write";
            rc = write_out(a);
            if (rc != ST_OK)
                return rc;
            if (sync_due(a, false)) { /* EACH: every write; GROUP: when the interval is up */
                *what = "fdatasync";
                rc = sync_now(a);
                if (rc != ST_OK)
                    return rc;
            }
        }
        if (rot) {
            *what = "rotate";
            rc = rotate(a);
            if (rc != ST_OK)
                return rc;
            continue;
        }
        if (a->batch_off >= a->batch.len && atomic_load(&a->dropped_unlogged) == 0)
            break;
    }
    sy_buf_reset(&a->batch);
    a->batch_off = 0;
    return ST_OK;
}

/* True while the queued records should wait for more (GROUP / NONE batching): no stop, flush or
 * size limit, and less than group_ms since the oldest one. Under mu. */
static bool batch_hold(const gaud_t *a, bool stop)
{
    if (a->cfg.fsync == GAUD_FSYNC_EACH || stop || atomic_load(&a->flush_req) > 0 ||
        a->q.len >= GAUD_BATCH_BYTES || a->q_first_ms == 0)
        return false;
    return now_ms() < a->q_first_ms + a->cfg.group_ms;
}

static bool pending_work(const gaud_t *a)
{
    return a->batch_off < a->batch.len || a->out.len > 0 || a->partial || a->rot_phase != 0 ||
           atomic_load(&a->dropped_unlogged) > 0;
}

static void give_up(gaud_t *a, int rc)
{
    /* close after an unrecoverable error: whatever is still in memory is lost */
    uint64_t lost = 0;
    size_t off = a->batch_off;
    while (off < a->batch.len) {
        uint32_t len;
        memcpy(&len, a->batch.data + off, sizeof len);
        off += 4 + (size_t)len;
        lost++;
    }
    lost += a->out_recs;
    pthread_mutex_lock(&a->mu);
    off = 0;
    while (off < a->q.len) {
        uint32_t len;
        memcpy(&len, a->q.data + off, sizeof len);
        off += 4 + (size_t)len;
        lost++;
    }
    sy_buf_reset(&a->q);
    pthread_mutex_unlock(&a->mu);
    atomic_fetch_add(&a->n_dropped, lost);
    atomic_store(&a->q_bytes, 0);
    if (lost > 0)
        sy_error("audit.lost", "path=%s records=%" PRIu64 " err=\"%s\"", a->path, lost, st_str(rc));
}

static void *writer_main(void *arg)
{
    gaud_t *a = arg;
    a->last_sync_ms = now_ms();
    for (;;) {
        pthread_mutex_lock(&a->mu);
        bool stop;
        for (;;) {
            stop = a->stop;
            bool broken = atomic_load(&a->broken);
            if (broken) {
                uint64_t t = now_ms();
                if (stop || t >= a->retry_at_ms)
                    break;
                struct timespec ts;
                deadline_ts(a->retry_at_ms, &ts);
                pthread_cond_timedwait(&a->wake, &a->mu, &ts);
                continue;
            }
            if (!pending_work(a) && a->q.len > 0 && batch_hold(a, stop)) {
                /* GROUP / NONE: let the batch fill until group_ms after its first record */
                a->writer_waiting = true;
                struct timespec ts;
                deadline_ts(a->q_first_ms + a->cfg.group_ms, &ts);
                pthread_cond_timedwait(&a->wake, &a->mu, &ts);
                a->writer_waiting = false;
                continue;
            }
            if (!pending_work(a) && a->q.len > 0) {
                a->q_first_ms = 0;
                a->wake_sent = false;
                sy_buf_t t = a->batch;
                a->batch = a->q;
                a->q = t;
                sy_buf_reset(&a->q);
                a->batch_off = 0;
            }
            if (pending_work(a) || sync_due(a, stop) || stop)
                break;
            a->writer_waiting = true;
            if (a->cfg.fsync == GAUD_FSYNC_GROUP && a->unsynced > 0) {
                struct timespec ts;
                deadline_ts(a->last_sync_ms + a->cfg.group_ms, &ts);
                pthread_cond_timedwait(&a->wake, &a->mu, &ts);
            } else {
                pthread_cond_wait(&a->wake, &a->mu);
            }
            a->writer_waiting = false;
        }
        bool more = a->q.len > 0;
        pthread_mutex_unlock(&a->mu);

        const char *what = "write";
        int rc = pump(a, &what);

        if (rc == ST_OK && sync_due(a, stop && !more)) {
            what = "fdatasync";
            rc = sync_now(a);
        }
        if (rc != ST_OK) {
            publish_error(a, rc, what);
            pthread_mutex_lock(&a->mu);
            pthread_cond_broadcast(&a->done); /* flush waiters see broken */
            pthread_mutex_unlock(&a->mu);
            if (stop) {
                give_up(a, rc);
                break;
            }
            continue;
        }
        if (atomic_load(&a->broken)) {
            atomic_store(&a->broken, false);
            sy_info("audit.recovered", "path=%s seq=%" PRIu64, a->path, a->seq);
        }
        if (stop && !more && !pending_work(a))
            break;
    }
    return NULL;
}

static char *dir_of(const char *path)
{
    const char *sl = strrchr(path, '/');
    if (!sl)
        return sy_strdup(".");
    if (sl == path)
        return sy_strdup("/");
    return sy_strndup(path, (size_t)(sl - path));
}

gaud_t *gaud_open(const gaud_config_t *cfg, char *err, size_t errlen)
{
    gaud_t *a = NULL;
    pthread_condattr_t ca;
    bool ca_init = false;
    int rc;
    if (!cfg || !cfg->path || !cfg->path[0]) {
        sy_errf(err, errlen, "audit log path is required");
        return NULL;
    }
    if ((unsigned)cfg->fsync > GAUD_FSYNC_NONE || (unsigned)cfg->fail > GAUD_FAIL_OPEN) {
        sy_errf(err, errlen, "invalid fsync or failure policy");
        return NULL;
    }
    a = sy_calloc(1, sizeof *a);
    if (!a)
        goto nomem;
    a->fd = -1;
    a->cfg = *cfg;
    if (a->cfg.group_ms == 0)
        a->cfg.group_ms = GAUD_DEF_GROUP_MS;
    if (a->cfg.retry_ms == 0)
        a->cfg.retry_ms = GAUD_DEF_RETRY_MS;
    if (a->cfg.max_queue_bytes == 0)
        a->cfg.max_queue_bytes = GAUD_DEF_QUEUE;
    a->path = sy_strdup(cfg->path);
    a->dir = a->path ? dir_of(a->path) : NULL;
    a->md = EVP_MD_CTX_new();
    if (!a->path || !a->dir || !a->md)
        goto nomem;
    a->cfg.path = a->path;
    memset(a->last_hash, '0', GAUD_HASH_HEX);
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_init(&ca);
    ca_init = true;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->wake, &ca);
    pthread_cond_init(&a->done, &ca);

    rc = open_live(a, O_CREAT, &a->fd);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "%s: %s", a->path,
                rc == ST_EXISTS ? "in use by another audit writer (locked)" : st_str(rc));
        goto fail;
    }
    struct stat st;
    if (fstat(a->fd, &st) != 0) {
        sy_errf(err, errlen, "%s: fstat: %s", a->path, strerror(errno));
        goto fail;
    }
    a->regular = S_ISREG(st.st_mode);
    if (a->regular && load_chain(a, err, errlen) != ST_OK)
        goto fail;
    if (!a->regular)
        a->file_first = 1;
    a->last_seq = a->seq;
    hex_encode(a->hash, a->last_hash);
    size_t pre =
        a->cfg.max_queue_bytes < ((size_t)1 << 20) ? a->cfg.max_queue_bytes : ((size_t)1 << 20);
    if (sy_buf_reserve(&a->q, pre) != ST_OK || sy_buf_reserve(&a->batch, pre) != ST_OK ||
        sy_buf_reserve(&a->out, GAUD_WRITE_CHUNK * 2) != ST_OK)
        goto nomem;
    rc = sy_thread_start(&a->thr, writer_main, a);
    if (rc != ST_OK) {
        sy_errf(err, errlen, "cannot start the audit writer thread: %s", st_str(rc));
        goto fail;
    }
    a->thr_started = true;
    pthread_condattr_destroy(&ca);
    sy_info("audit.open",
            "path=%s seq=%" PRIu64 " last_hash=%s fsync=%s fail=%s rotate_bytes=%" PRIu64, a->path,
            a->seq, a->last_hash,
            a->cfg.fsync == GAUD_FSYNC_EACH    ? "each"
            : a->cfg.fsync == GAUD_FSYNC_GROUP ? "group"
                                               : "none",
            a->cfg.fail == GAUD_FAIL_OPEN ? "open" : "closed", a->cfg.rotate_bytes);
    return a;
nomem:
    sy_errf(err, errlen, "out of memory");
fail:
    if (ca_init)
        pthread_condattr_destroy(&ca);
    if (a) {
        if (a->fd >= 0)
            close(a->fd);
        if (ca_init) {
            pthread_cond_destroy(&a->wake);
            pthread_cond_destroy(&a->done);
            pthread_mutex_destroy(&a->mu);
        }
        EVP_MD_CTX_free(a->md);
        sy_buf_deinit(&a->q);
        sy_buf_deinit(&a->batch);
        sy_buf_deinit(&a->out);
        sy_free(a->dir);
        sy_free(a->path);
        sy_free(a);
    }
    return NULL;
}

int gaud_append(gaud_t *a, const char *json, size_t len)
{
    if (!a || !json)
        return ST_INVAL;
    if (len < 2 || json[0] != '{' || json[len - 1] != '}' || memchr(json, '\n', len) ||
        memchr(json, '\0', len)) {
        atomic_fetch_add(&a->n_rejected, 1);
        return ST_INVAL;
    }
    if (len > GAUD_MAX_RECORD || len + 4 > a->cfg.max_queue_bytes) {
        atomic_fetch_add(&a->n_rejected, 1);
        return ST_LIMIT;
    }
    if (a->cfg.validate_json) {
        json_t *j = NULL;
        int vr = sy_utf8_valid(json, len) ? jsonp_load(json, len, &j, NULL) : ST_PROTO;
        bool obj = j && json_is_object(j);
        json_decref(j);
        if (vr == ST_NOMEM)
            return ST_NOMEM;
        if (!obj) {
            atomic_fetch_add(&a->n_rejected, 1);
            return ST_INVAL;
        }
    }
    bool open_policy = a->cfg.fail == GAUD_FAIL_OPEN;
    uint64_t need = (uint64_t)len + 4;
    pthread_mutex_lock(&a->mu);
    int rc = ST_OK;
    if (atomic_load(&a->closing)) {
        rc = ST_CLOSED;
        goto out;
    }
    if (!open_policy && atomic_load(&a->broken)) {
        atomic_fetch_add(&a->n_refused, 1);
        rc = ST_STATE;
        goto out;
    }
    bool full = atomic_load(&a->q_bytes) + need > a->cfg.max_queue_bytes;
    if (full || sy_buf_reserve(&a->q, (size_t)need) != ST_OK) {
        if (open_policy) {
            atomic_fetch_add(&a->n_dropped, 1);
            atomic_fetch_add(&a->dropped_unlogged, 1);
        } else {
            atomic_fetch_add(&a->n_refused, 1);
            rc = full ? ST_AGAIN : ST_NOMEM;
        }
        goto out;
    }
    uint32_t l32 = (uint32_t)len;
    sy_buf_append(&a->q, &l32, sizeof l32);
    sy_buf_append(&a->q, json, len);
    atomic_fetch_add(&a->q_bytes, need);
    atomic_fetch_add(&a->n_appended, 1);
    if (a->q_first_ms == 0)
        a->q_first_ms = now_ms();
    /* group commit: with GROUP / NONE the writer is woken once per batch (it then collects the
     * records of up to group_ms, or GAUD_BATCH_BYTES), not once per record */
    if (a->writer_waiting &&
        (a->cfg.fsync == GAUD_FSYNC_EACH || !a->wake_sent || a->q.len >= GAUD_BATCH_BYTES)) {
        pthread_cond_signal(&a->wake);
        a->wake_sent = true;
    }
out:
    pthread_mutex_unlock(&a->mu);
    return rc;
}

bool gaud_accepting(const gaud_t *a)
{
    if (!a || atomic_load(&a->closing))
        return false;
    if (a->cfg.fail == GAUD_FAIL_OPEN)
        return true;
    size_t max = a->cfg.max_queue_bytes;
    return !atomic_load(&a->broken) && atomic_load(&a->q_bytes) < max - max / 16;
}

void gaud_stats(gaud_t *a, gaud_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!a) {
        memset(out->last_hash, '0', GAUD_HASH_HEX);
        return;
    }
    out->appended = atomic_load(&a->n_appended);
    out->written = atomic_load(&a->n_written);
    out->markers = atomic_load(&a->n_markers);
    out->dropped = atomic_load(&a->n_dropped);
    out->refused = atomic_load(&a->n_refused);
    out->rejected = atomic_load(&a->n_rejected);
    out->write_errors = atomic_load(&a->n_write_errors);
    out->fsyncs = atomic_load(&a->n_fsyncs);
    out->rotations = atomic_load(&a->n_rotations);
    out->queue_bytes = atomic_load(&a->q_bytes);
    out->tail_bytes_cut = atomic_load(&a->tail_cut);
    out->broken = atomic_load(&a->broken);
    out->last_error = atomic_load(&a->last_error);
    pthread_mutex_lock(&a->mu);
    out->last_seq = a->last_seq;
    memcpy(out->last_hash, a->last_hash, sizeof out->last_hash);
    pthread_mutex_unlock(&a->mu);
}

int gaud_flush(gaud_t *a, int timeout_ms)
{
    if (!a)
        return ST_INVAL;
    uint64_t deadline = timeout_ms >= 0 ? now_ms() + (uint64_t)timeout_ms : 0;
    int rc = ST_OK;
    atomic_fetch_add(&a->flush_req, 1);
    pthread_mutex_lock(&a->mu);
    uint64_t target = atomic_load(&a->n_appended);
    if (a->writer_waiting)
        pthread_cond_signal(&a->wake);
    while (a->synced_recs < target) {
        if (atomic_load(&a->broken)) {
            rc = ST_STATE;
            break;
        }
        if (timeout_ms >= 0) {
            if (now_ms() >= deadline) {
                rc = ST_TIMEOUT;
                break;
            }
            struct timespec ts;
            deadline_ts(deadline, &ts);
            pthread_cond_timedwait(&a->done, &a->mu, &ts);
        } else {
            pthread_cond_wait(&a->done, &a->mu);
        }
    }
    pthread_mutex_unlock(&a->mu);
    atomic_fetch_sub(&a->flush_req, 1);
    return rc;
}

int gaud_close(gaud_t *a)
{
    if (!a)
        return ST_OK;
    pthread_mutex_lock(&a->mu);
    atomic_store(&a->closing, true);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->mu);
    if (a->thr_started)
        pthread_join(a->thr, NULL);
    int rc = ST_OK;
    if (atomic_load(&a->broken))
        rc = atomic_load(&a->last_error);
    if (rc == ST_OK && a->regular && a->unsynced > 0 && fdatasync(a->fd) != 0)
        rc = -errno;
    sy_info("audit.close",
            "path=%s last_seq=%" PRIu64 " last_hash=%s written=%" PRIu64 " dropped=%" PRIu64,
            a->path, a->last_seq, a->last_hash, atomic_load(&a->n_written),
            atomic_load(&a->n_dropped));
    if (a->fd >= 0)
        close(a->fd);
    pthread_cond_destroy(&a->wake);
    pthread_cond_destroy(&a->done);
    pthread_mutex_destroy(&a->mu);
    EVP_MD_CTX_free(a->md);
    sy_buf_deinit(&a->q);
    sy_buf_deinit(&a->batch);
    sy_buf_deinit(&a->out);
    sy_free(a->dir);
    sy_free(a->path);
    sy_free(a);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* chain files */

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void gaud_files_free(char **files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++)
        sy_free(files[i]);
    sy_free(files);
}

int gaud_chain_files(const char *path, char ***files, size_t *n)
{
    *files = NULL;
    *n = 0;
    if (!path || !path[0])
        return ST_INVAL;
    char *dir = dir_of(path);
    if (!dir)
        return ST_NOMEM;
    const char *sl = strrchr(path, '/');
    const char *base = sl ? sl + 1 : path;
    size_t bl = strlen(base);
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = ST_OK;
    DIR *d = opendir(dir);
    if (!d) {
        rc = -errno;
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, base, bl) != 0 || nm[bl] != '.' ||
            strlen(nm + bl + 1) != GAUD_ROTATED_DIGITS)
            continue;
        bool digits = true;
        for (const char *p = nm + bl + 1; *p; p++)
            digits = digits && *p >= '0' && *p <= '9';
        if (!digits)
            continue;
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **nv = sy_realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = ST_NOMEM;
                goto fail;
            }
            v = nv;
            cap = nc;
        }
        /* keep the caller's spelling of the directory: path prefix + the entry's suffix */
        size_t pl = strlen(path);
        char *full = sy_malloc(pl + 1 + GAUD_ROTATED_DIGITS + 1);
        if (!full) {
            rc = ST_NOMEM;
            goto fail;
        }
        memcpy(full, path, pl);
        memcpy(full + pl, nm + bl, 1 + GAUD_ROTATED_DIGITS + 1);
        v[cnt++] = full;
    }
    closedir(d);
    d = NULL;
    if (cnt > 1)
        qsort(v, cnt, sizeof *v, cmp_str);
    if (access(path, F_OK) == 0) {
        char **nv = sy_realloc(v, (cnt + 1) * sizeof *nv);
        if (!nv) {
            rc = ST_NOMEM;
            goto fail;
        }
        v = nv;
        v[cnt] = sy_strdup(path);
        if (!v[cnt]) {
            rc = ST_NOMEM;
            goto fail;
        }
        cnt++;
    }
    sy_free(dir);
    *files = v;
    *n = cnt;
    return ST_OK;
fail:
    if (d)
        closedir(d);
    gaud_files_free(v, cnt);
    sy_free(dir);
    return rc;
}

/* ------------------------------------------------------------------------------------------- */
/* the verifier */

typedef enum vkind { VL_REC, VL_NOTJSON, VL_NOTREC, VL_TAIL, VL_TOOLONG } vkind_t;

typedef struct vline {
    vkind_t kind;
    const char *file;
    uint64_t line;
    uint64_t seq;
    unsigned char prev[32];
    unsigned char hash[32];
    size_t len;
    char err[128];
} vline_t;

struct gaud_verifier {
    gaud_verify_opts_t o;
    unsigned char from[32], last_exp[32];
    EVP_MD_CTX *md;
    sy_buf_t part;
    const char *file;
    uint64_t lineno;
    bool in_file;
    vline_t pend;
    bool have_pend;
    bool started;
    uint64_t exp;
    unsigned char head[32];
    vline_t pred;
    bool have_pred;
    bool failed;
    bool tail_ignored;
    gaud_verify_report_t rep;
};

gaud_verifier_t *gaud_verifier_create(const gaud_verify_opts_t *opts)
{
    gaud_verifier_t *v = sy_calloc(1, sizeof *v);
    if (!v)
        return NULL;
    if (opts)
        v->o = *opts;
    v->md = EVP_MD_CTX_new();
    if (!v->md) {
        sy_free(v);
        return NULL;
    }
    if (v->o.have_from && !hex_decode(v->o.from_hash, strlen(v->o.from_hash), false, v->from))
        memset(v->from, 0xff, 32); /* an invalid hash matches nothing */
    if (v->o.have_last && !hex_decode(v->o.last_hash, strlen(v->o.last_hash), false, v->last_exp))
        memset(v->last_exp, 0xff, 32);
    v->rep.status = ST_OK;
    return v;
}

void gaud_verifier_destroy(gaud_verifier_t *v)
{
    if (!v)
        return;
    EVP_MD_CTX_free(v->md);
    sy_buf_deinit(&v->part);
    sy_free(v);
}

static void vfail(gaud_verifier_t *v, const vline_t *at, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void vfail(gaud_verifier_t *v, const vline_t *at, const char *reason, const char *fmt, ...)
{
    v->failed = true;
    v->rep.status = ST_PROTO;
    v->rep.reason = reason;
    v->rep.file = at->file;
    v->rep.line = at->line;
    v->rep.has_seq = at->kind == VL_REC;
    if (at->kind == VL_REC)
        v->rep.seq = at->seq;
    else if (v->started)
        v->rep.seq = v->exp;
    else
        v->rep.seq = v->o.have_from ? v->o.from_seq + 1 : 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rep.detail, sizeof v->rep.detail, fmt, ap);
    va_end(ap);
}

static void accept_rec(gaud_verifier_t *v, const vline_t *cur)
{
    if (v->rep.records == 0)
        v->rep.first_seq = cur->seq;
    v->rep.records++;
    v->rep.last_seq = cur->seq;
    memcpy(v->head, cur->hash, 32);
    v->exp = cur->seq + 1;
    v->pred = *cur;
    v->have_pred = true;
}

/* Judges cur knowing the line after it (next NULL: cur is the last input). */
static void eval(gaud_verifier_t *v, const vline_t *cur, const vline_t *next)
{
    if (v->failed)
        return;
    switch (cur->kind) {
    case VL_NOTJSON:
        vfail(v, cur, GAUD_R_NOT_JSON, "%s", cur->err);
        return;
    case VL_TOOLONG:
        vfail(v, cur, GAUD_R_NOT_JSON, "line longer than %zu bytes", GAUD_MAX_LINE);
        return;
    case VL_NOTREC:
        vfail(v, cur, GAUD_R_NOT_RECORD, "no {\"seq\":N,\"prev\":\"<64 hex>\" prefix");
        return;
    case VL_TAIL:
        v->rep.truncated_tail = true;
        v->rep.tail_file = cur->file;
        v->rep.tail_line = cur->line;
        if (!next && v->o.allow_truncated_tail) {
            v->tail_ignored = true;
            return;
        }
        vfail(v, cur, GAUD_R_TRUNCATED, "%zu bytes without a newline%s", cur->len,
              next ? " in the middle of the chain (more files follow)" : "");
        return;
    case VL_REC:
        break;
    }
    if (!v->started) {
        v->started = true;
        if (v->o.have_from) {
            v->exp = v->o.from_seq + 1;
            memcpy(v->head, v->from, 32);
        } else if (v->o.trust_first) {
            v->exp = cur->seq;
            memcpy(v->head, cur->prev, 32);
        } else {
            v->exp = 1;
            memset(v->head, 0, 32);
        }
    }
    bool next_rec = next && next->kind == VL_REC;
    if (cur->seq > v->exp) {
        if (!v->have_pred && !v->o.have_from)
            vfail(v, cur, GAUD_R_GAP,
                  "the chain starts at seq %" PRIu64 ", not 1: if earlier files were rotated "
                  "away, use --from-hash/--from-seq or --trust-first",
                  cur->seq);
        else if (next_rec && next->seq == v->exp)
            vfail(v, cur, GAUD_R_ORDER,
                  "expected seq %" PRIu64 ", and the next line has it: records reordered", v->exp);
        else
            vfail(v, cur, GAUD_R_GAP,
                  "expected seq %" PRIu64 ": %" PRIu64 " record(s) missing (deleted)", v->exp,
                  cur->seq - v->exp);
        return;
    }
    if (cur->seq < v->exp) {
        vfail(v, cur, GAUD_R_ORDER, "expected seq %" PRIu64 ": a duplicated or reordered record",
              v->exp);
        return;
    }
    if (memcmp(cur->prev, v->head, 32) != 0) {
        if (!v->have_pred) {
            if (v->o.have_from)
                vfail(v, cur, GAUD_R_HASH, "prev does not match --from-hash");
            else
                vfail(v, cur, GAUD_R_HASH,
                      "prev is not the genesis value (64 zeros): if earlier files were rotated "
                      "away, use --from-hash/--from-seq or --trust-first");
            return;
        }
        if (!next_rec || memcmp(next->prev, cur->hash, 32) == 0) {
            /* the link pred -> cur is broken, and cur itself is intact: pred was edited */
            vline_t p = v->pred;
            v->rep.records--;
            v->rep.last_seq = v->rep.records ? p.seq - 1 : 0;
            if (v->rep.records == 0)
                v->rep.first_seq = 0;
            memcpy(v->head, p.prev, 32);
            vfail(v, &p, GAUD_R_HASH,
                  "record edited: its hash does not match the prev of the next record (seq %" PRIu64
                  " at %s:%" PRIu64 ")",
                  cur->seq, cur->file, cur->line);
        } else {
            vfail(v, cur, GAUD_R_HASH,
                  "record edited: prev does not match the line before (%s:%" PRIu64
                  ") and its own hash does not match the next record's prev",
                  v->pred.file, v->pred.line);
        }
        return;
    }
    accept_rec(v, cur);
}

static void classify(gaud_verifier_t *v, const char *s, size_t len, vline_t *out)
{
    memset(out, 0, sizeof *out);
    out->file = v->file;
    out->line = ++v->lineno;
    out->len = len;
    if (!sy_utf8_valid(s, len)) {
        out->kind = VL_NOTJSON;
        snprintf(out->err, sizeof out->err, "invalid UTF-8");
        return;
    }
    json_t *j = NULL;
    jsonp_error_t je;
    int rc = jsonp_load(s, len, &j, &je);
    bool obj = j && json_is_object(j);
    json_decref(j);
    if (rc != ST_OK || !obj) {
        out->kind = VL_NOTJSON;
        if (rc == ST_NOMEM)
            snprintf(out->err, sizeof out->err, "out of memory while parsing");
        else if (rc != ST_OK)
            snprintf(out->err, sizeof out->err, "%.100s at column %d", je.text, je.column);
        else
            snprintf(out->err, sizeof out->err, "not a JSON object");
        return;
    }
    if (!parse_prefix(s, len, &out->seq, out->prev)) {
        out->kind = VL_NOTREC;
        return;
    }
    if (sha256(v->md, s, len, out->hash) != ST_OK) {
        out->kind = VL_NOTJSON;
        snprintf(out->err, sizeof out->err, "sha256 failed");
        return;
    }
    out->kind = VL_REC;
}

/* A new item arrived: judge the pending one with it, then hold it. */
static void push(gaud_verifier_t *v, const vline_t *nx)
{
    if (v->have_pend)
        eval(v, &v->pend, nx);
    v->pend = *nx;
    v->have_pend = true;
    if (nx->kind == VL_NOTJSON || nx->kind == VL_NOTREC || nx->kind == VL_TOOLONG) {
        eval(v, &v->pend, NULL); /* bad whatever follows */
        v->have_pend = false;
    }
}

static void push_line(gaud_verifier_t *v, const char *s, size_t len)
{
    vline_t nx;
    classify(v, s, len, &nx);
    push(v, &nx);
}

static void too_long(gaud_verifier_t *v)
{
    vline_t nx;
    memset(&nx, 0, sizeof nx);
    nx.kind = VL_TOOLONG;
    nx.file = v->file;
    nx.line = ++v->lineno;
    push(v, &nx);
    sy_buf_deinit(&v->part);
}

int gaud_verifier_feed(gaud_verifier_t *v, const char *name, const char *data, size_t len)
{
    if (!v || (!data && len))
        return ST_INVAL;
    if (v->in_file && name && v->file && strcmp(name, v->file) != 0)
        gaud_verifier_end_file(v);
    if (!v->in_file) {
        v->in_file = true;
        v->file = name ? name : "-";
        v->lineno = 0;
    }
    size_t i = 0;
    while (i < len && !v->failed) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t seg = nl ? (size_t)(nl - (data + i)) : len - i;
        if (v->part.len + seg > GAUD_MAX_LINE) {
            too_long(v);
            break;
        }
        if (!nl) {
            if (sy_buf_append(&v->part, data + i, seg) != ST_OK)
                return ST_NOMEM;
            break;
        }
        if (v->part.len > 0) {
            if (sy_buf_append(&v->part, data + i, seg) != ST_OK)
                return ST_NOMEM;
            push_line(v, v->part.data, v->part.len);
            sy_buf_reset(&v->part);
        } else {
            push_line(v, data + i, seg);
        }
        i += seg + 1;
    }
    return v->failed ? ST_PROTO : ST_OK;
}

int gaud_verifier_end_file(gaud_verifier_t *v)
{
    if (!v)
        return ST_INVAL;
    if (v->in_file && v->part.len > 0 && !v->failed) {
        vline_t nx;
        memset(&nx, 0, sizeof nx);
        nx.kind = VL_TAIL;
        nx.file = v->file;
        nx.line = ++v->lineno;
        nx.len = v->part.len;
        push(v, &nx);
    }
    sy_buf_reset(&v->part);
    v->in_file = false;
    return v->failed ? ST_PROTO : ST_OK;
}

static void vfail_io(gaud_verifier_t *v, const char *file, int err)
{
    vline_t at;
    memset(&at, 0, sizeof at);
    at.kind = VL_NOTJSON;
    at.file = file;
    vfail(v, &at, GAUD_R_IO, "%s", st_str(err));
}

int gaud_verifier_finish(gaud_verifier_t *v, gaud_verify_report_t *rep)
{
    if (!v || !rep)
        return ST_INVAL;
    gaud_verifier_end_file(v);
    if (v->have_pend) {
        eval(v, &v->pend, NULL);
        v->have_pend = false;
    }
    if (!v->started) { /* no record at all: the start value is the head */
        if (v->o.have_from)
            memcpy(v->head, v->from, 32);
        else
            memset(v->head, 0, 32);
    }
    if (!v->failed && v->o.have_last && memcmp(v->head, v->last_exp, 32) != 0) {
        vline_t at;
        memset(&at, 0, sizeof at);
        at.kind = v->have_pred ? VL_REC : VL_NOTJSON;
        at.file = v->have_pred ? v->pred.file : (v->file ? v->file : "-");
        at.line = v->have_pred ? v->pred.line : 0;
        at.seq = v->have_pred ? v->pred.seq : 0;
        vfail(v, &at, GAUD_R_LAST_HASH,
              "the chain ends at a different hash than --expect-last-hash: records deleted from "
              "the end, or the last record edited");
    }
    hex_encode(v->head, v->rep.last_hash);
    *rep = v->rep;
    return rep->status;
}

int gaud_verify_files(const char *const *files, size_t n, const gaud_verify_opts_t *opts,
                      gaud_verify_report_t *rep)
{
    gaud_verifier_t *v = gaud_verifier_create(opts);
    char *buf = sy_malloc((size_t)1 << 20);
    int rc = ST_OK;
    if (!v || !buf) {
        rc = ST_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && !v->failed; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            vfail_io(v, files[i], -errno);
            break;
        }
        for (;;) {
            ssize_t r = read(fd, buf, (size_t)1 << 20);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                vfail_io(v, files[i], -errno);
                break;
            }
            if (r == 0)
                break;
            rc = gaud_verifier_feed(v, files[i], buf, (size_t)r);
            if (rc == ST_NOMEM)
                break;
            if (rc != ST_OK)
                break;
        }
        close(fd);
        if (rc == ST_NOMEM)
            goto out;
        gaud_verifier_end_file(v);
    }
    rc = gaud_verifier_finish(v, rep);
out:
    sy_free(buf);
    gaud_verifier_destroy(v);
    return rc;
}

void gaud_verify_report_format(const gaud_verify_report_t *r, char *out, size_t cap)
{
    if (!cap)
        return;
    if (r->status == ST_OK) {
        int n;
        if (r->records > 0)
            n = snprintf(out, cap,
                         "ok: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 ", last hash %s",
                         r->records, r->first_seq, r->last_seq, r->last_hash);
        else
            n = snprintf(out, cap, "ok: 0 records, last hash %s", r->last_hash);
        if (r->truncated_tail && n > 0 && (size_t)n < cap)
            snprintf(out + n, cap - (size_t)n,
                     " (ignored an incomplete last record at %s:%" PRIu64 ")", r->tail_file,
                     r->tail_line);
        return;
    }
    if (r->reason == GAUD_R_IO) {
        snprintf(out, cap, "%s: %s: %s", r->file, r->reason, r->detail);
        return;
    }
    char where[64];
    if (r->has_seq)
        snprintf(where, sizeof where, "record seq %" PRIu64, r->seq);
    else
        snprintf(where, sizeof where, "record (expected seq %" PRIu64 ")", r->seq);
    char range[64] = "";
    if (r->records > 0)
        snprintf(range, sizeof range, ", seq %" PRIu64 "..%" PRIu64, r->first_seq, r->last_seq);
    if (r->reason == GAUD_R_TRUNCATED)
        snprintf(out, cap,
                 "%s:%" PRIu64 ": %s: %s: %s\n%" PRIu64 " records verified%s, last hash %s; "
                 "truncated record at %s:%" PRIu64,
                 r->file, r->line, where, r->reason, r->detail, r->records, range, r->last_hash,
                 r->file, r->line);
    else
        snprintf(out, cap,
                 "%s:%" PRIu64 ": %s: %s: %s\n%" PRIu64 " records verified%s, last good hash %s",
                 r->file, r->line, where, r->reason, r->detail, r->records, range, r->last_hash);
}
