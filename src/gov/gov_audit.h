/*
 * gov_audit.h - the tamper-evident prompt audit log: one JSON record per request, appended by a
 * background writer thread to a hash-chained JSON-lines file, plus the verifier that recomputes
 * the chain (`switchyard audit verify`).
 *
 * Line format (written exactly like this, one line per record, '\n'-terminated):
 *   {"seq":N,"prev":"<64 lowercase hex>",<the caller's fields>}
 * seq starts at 1 and grows by one per line; prev is the SHA-256 of the previous line's exact bytes
 * without its '\n' (64 zeros for the first record of a new chain, the "genesis" value). The chain
 * continues across reopen and rotation. When FAIL_OPEN drops records, the writer later inserts a
 * marker line {"seq":N,"prev":"...","audit":"dropped","records":K} so the log itself says so.
 *
 * Rotation (rotate_bytes > 0, regular files only): before a line would make FILE larger than
 * rotate_bytes (and FILE is not empty), FILE is renamed to FILE.<S> where S is the seq of its first
 * record, zero-padded to 20 digits (so `FILE.* FILE` in shell glob order is chain order), and a new
 * FILE is started; its first record's prev is the hash of the last line of FILE.<S>. keep > 0
 * deletes the oldest rotated files beyond keep (verify the rest with --from-hash/--trust-first).
 *
 * Durability (what a crash loses): records still queued in memory are always lost on a crash
 * (with GROUP and NONE the writer is woken once per batch and lets records collect for up to
 * group_ms or 256 KiB, so that is up to group_ms of records; with EACH, per record).
 * Records already written are in the page cache, so a process crash (kill -9) loses nothing more
 * (at most a torn last line, cut off at the next open). For an OS crash or power loss:
 *   GAUD_FSYNC_EACH  - every write batch is fdatasync'ed before the next is taken (group commit),
 *                      so only the queue plus the batch being written are lost;
 *   GAUD_FSYNC_GROUP - fdatasync at most every group_ms: up to group_ms of written records too;
 *   GAUD_FSYNC_NONE  - no fsync while running (the kernel's writeback, typically up to ~30 s).
 * gaud_flush and gaud_close always fdatasync. Non-regular files (/dev/null, FIFOs) are never
 * fsynced, scanned or rotated.
 *
 * Does not: escape or build JSON (the caller's object is copied verbatim after light checks), sign
 * or anchor the chain head externally (log it or export gaud_stats.last_hash for that), compress.
 * Thread-safety: gaud_append, gaud_accepting, gaud_stats and gaud_flush may be called from any
 * thread concurrently; gaud_open/gaud_close by the owner only. The verifier (gaud_verifier_t) is
 * single-threaded; gaud_verify_* functions are reentrant.
 */
#ifndef SY_GOV_AUDIT_H
#define SY_GOV_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GAUD_HASH_HEX 64                      /* hex characters of a chain hash */
#define GAUD_MAX_RECORD ((size_t)16 << 20)    /* largest caller object accepted (bytes) */
#define GAUD_MAX_LINE (GAUD_MAX_RECORD + 128) /* longest line the verifier accepts */
#define GAUD_ROTATED_DIGITS 20                /* width of <S> in FILE.<S> */

typedef struct gaud gaud_t;

typedef enum gaud_fsync {
    GAUD_FSYNC_EACH = 0, /* fdatasync after every write batch */
    GAUD_FSYNC_GROUP,    /* fdatasync at most every group_ms ms while there is unsynced data */
    GAUD_FSYNC_NONE,     /* never while running (flush and close still fdatasync) */
} gaud_fsync_t;

typedef enum gaud_fail {
    GAUD_FAIL_CLOSED = 0, /* queue full or log broken: gaud_append fails, gaud_accepting false */
    GAUD_FAIL_OPEN,       /* queue full: the record is dropped (counted), gaud_append says ST_OK */
} gaud_fail_t;

typedef struct gaud_config {
    const char *path;       /* borrowed during gaud_open only; required */
    uint64_t rotate_bytes;  /* 0 = never rotate */
    unsigned keep;          /* rotated files kept (oldest deleted first); 0 = keep all */
    gaud_fsync_t fsync;     /* default GAUD_FSYNC_GROUP */
    unsigned group_ms;      /* GROUP interval; default 10 */
    gaud_fail_t fail;       /* default GAUD_FAIL_CLOSED */
    size_t max_queue_bytes; /* accepted but not yet written bytes; default 64 MiB */
    bool validate_json;     /* also parse each object in gaud_append (strict JSON, UTF-8) */
    unsigned retry_ms;      /* wait between retries after an I/O error; default 200 */
} gaud_config_t;

/* Fills cfg with the defaults above (path NULL). */
void gaud_config_init(gaud_config_t *cfg);

/* Parses "each", "group", "none" into *out. ST_OK or ST_INVAL. */
int gaud_fsync_parse(const char *s, gaud_fsync_t *out);

/* Opens (creating it when missing, mode 0600) the log at cfg->path and starts the writer thread.
 * An existing chain is continued: the last complete line of FILE (or, when FILE is missing or
 * empty, of the newest FILE.<S>) gives the next seq and prev. A trailing incomplete line left by a
 * crash is cut off (ftruncate), counted in gaud_stats.tail_bytes_cut and logged
 * (event=audit.tail_cut). The file is flock'ed: a second writer on the same FILE is refused.
 * Returns an owned handle (release with gaud_close), or NULL with a message in err[0..errlen):
 * bad config, cannot open/lock/read the file, or its last line is not an audit record (the chain
 * cannot be continued; run `switchyard audit verify`). Main/owner thread. */
gaud_t *gaud_open(const gaud_config_t *cfg, char *err, size_t errlen);

/* Queues one record: json[0..len) (borrowed; copied) must be a JSON object: first byte '{', last
 * byte '}', no '\n' and no NUL byte (with validate_json: fully parsed too). Never blocks on I/O
 * (takes a mutex held only for a memcpy). Returns:
 *   ST_OK       queued (or, FAIL_OPEN, dropped because the queue was full: stats.dropped)
 *   ST_INVAL    not an object / raw newline / NUL / invalid JSON (stats.rejected); a NULL argument
 *   ST_LIMIT    len > GAUD_MAX_RECORD or larger than max_queue_bytes (stats.rejected)
 *   ST_AGAIN    FAIL_CLOSED: the queue is full (stats.refused)
 *   ST_STATE    FAIL_CLOSED: the writer hit an I/O error and has not recovered (stats.refused)
 *   ST_NOMEM    FAIL_CLOSED: no memory for the queue (FAIL_OPEN: dropped instead)
 *   ST_CLOSED   gaud_close has begun
 * Thread-safe. */
int gaud_append(gaud_t *a, const char *json, size_t len);

/* Whether a new request should be admitted: false when a is NULL or closing, and with FAIL_CLOSED
 * also while the log is broken (I/O error) or the queue is (nearly) full: less than
 * max_queue_bytes/16 free. Lock-free; a true answer does not
 * reserve room, so gaud_append can still fail. Thread-safe. */
bool gaud_accepting(const gaud_t *a);

typedef struct gaud_stats {
    uint64_t appended;       /* records accepted by gaud_append */
    uint64_t written;        /* lines written (caller records plus drop markers) */
    uint64_t markers;        /* of which drop-marker lines */
    uint64_t dropped;        /* FAIL_OPEN drops, plus records lost at close after an I/O error */
    uint64_t refused;        /* FAIL_CLOSED refusals (ST_AGAIN/ST_STATE/ST_NOMEM) */
    uint64_t rejected;       /* invalid records (ST_INVAL/ST_LIMIT) */
    uint64_t write_errors;   /* failed write/fsync/rotate/truncate attempts */
    uint64_t fsyncs;         /* fdatasync calls that succeeded */
    uint64_t rotations;      /* files rotated */
    uint64_t queue_bytes;    /* accepted, not yet written (record bytes + 4 per record) */
    uint64_t tail_bytes_cut; /* bytes of a torn last line cut off at open */
    uint64_t last_seq;       /* seq of the last line written (0: none yet in this chain) */
    char last_hash[GAUD_HASH_HEX + 1]; /* hash of that line (genesis zeros when none) */
    bool broken;    /* an I/O error is pending (the writer retries every retry_ms) */
    int last_error; /* -errno of the most recent I/O error (0: none) */
} gaud_stats_t;

/* Copies the counters into *out. Thread-safe (brief mutex). a NULL: *out zeroed. */
void gaud_stats(gaud_t *a, gaud_stats_t *out);

/* Waits up to timeout_ms (< 0: forever) until every record accepted before the call is written
 * and fdatasync'ed (regardless of the fsync policy). ST_OK, ST_TIMEOUT, ST_STATE (the log is
 * broken; the records stay queued), ST_INVAL (a NULL). Thread-safe; blocks: not for the event
 * loop. */
int gaud_flush(gaud_t *a, int timeout_ms);

/* Stops accepting, drains the queue, fdatasyncs, joins the writer and frees a. If the writer is
 * broken it makes one last attempt; records it cannot write are counted as dropped and logged.
 * Returns ST_OK, or the I/O error (-errno) when records were lost. NULL-safe (ST_OK). */
int gaud_close(gaud_t *a);

/* Lists the chain files of the live log path in chain order: every path.<20 digits> (ascending),
 * then path itself if it exists. *files receives an owned array of owned strings (free with
 * gaud_files_free). ST_OK (possibly *n == 0), ST_NOMEM, or -errno when the directory cannot be
 * read. */
int gaud_chain_files(const char *path, char ***files, size_t *n);
void gaud_files_free(char **files, size_t n);

/* ---- verification ---- */

/* Reasons (compare by pointer). */
extern const char *const GAUD_R_NOT_JSON;   /* "not JSON" */
extern const char *const GAUD_R_NOT_RECORD; /* "not an audit record" (no seq/prev prefix) */
extern const char *const GAUD_R_HASH;       /* "bad chain hash" */
extern const char *const GAUD_R_GAP;        /* "seq gap" */
extern const char *const GAUD_R_ORDER;      /* "seq out of order" */
extern const char *const GAUD_R_TRUNCATED;  /* "incomplete last record (truncated)" */
extern const char *const GAUD_R_LAST_HASH;  /* "last hash mismatch" (expect_last_hash) */
extern const char *const GAUD_R_IO;         /* "cannot read" */

typedef struct gaud_verify_opts {
    bool have_from;    /* the predecessor was rotated away: start after from_seq/hash */
    uint64_t from_seq; /* seq of the predecessor's last record (first expected: +1) */
    char from_hash[GAUD_HASH_HEX + 1]; /* its hash (the "last hash" of its verification) */
    bool trust_first;          /* accept the first record's seq and prev as the starting point */
    bool allow_truncated_tail; /* an incomplete last line of the last file is not an error */
    bool have_last;            /* the chain must end at this hash (an external anchor) */
    char last_hash[GAUD_HASH_HEX + 1];
} gaud_verify_opts_t;

typedef struct gaud_verify_report {
    int status;         /* ST_OK (intact) or ST_PROTO (a bad record; fields below) */
    uint64_t records;   /* records verified before the first bad one */
    uint64_t first_seq; /* seq range of those records (0..0 when none) */
    uint64_t last_seq;
    char last_hash[GAUD_HASH_HEX + 1]; /* hash of the last verified line (or the start value) */
    /* the first bad record (status != ST_OK) */
    const char *reason; /* one of GAUD_R_* */
    char detail[256];   /* human-readable specifics */
    const char *file;   /* borrowed name passed to the verifier */
    uint64_t line;      /* 1-based line in file */
    uint64_t seq;       /* the record's seq, or the expected seq when has_seq is false */
    bool has_seq;
    /* an incomplete last line (reason GAUD_R_TRUNCATED, or ignored with allow_truncated_tail) */
    bool truncated_tail;
    const char *tail_file;
    uint64_t tail_line;
} gaud_verify_report_t;

typedef struct gaud_verifier gaud_verifier_t;

/* Returns an owned streaming verifier (free with gaud_verifier_destroy) or NULL (no memory).
 * opts borrowed (copied); NULL = defaults (genesis start, nothing allowed). */
gaud_verifier_t *gaud_verifier_create(const gaud_verify_opts_t *opts);
void gaud_verifier_destroy(gaud_verifier_t *v);
/* Feeds the next bytes of file `name` (borrowed: must stay valid until the report is read).
 * Chunks may split lines anywhere. Returns ST_OK, ST_PROTO once a bad record has been found
 * (sticky; further input is ignored) or ST_NOMEM. */
int gaud_verifier_feed(gaud_verifier_t *v, const char *name, const char *data, size_t len);
/* Ends the current file (a pending partial line becomes an incomplete record). */
int gaud_verifier_end_file(gaud_verifier_t *v);
/* Ends the input and fills *rep. Returns rep->status. */
int gaud_verifier_finish(gaud_verifier_t *v, gaud_verify_report_t *rep);

/* Verifies files[0..n) (chain order) with a streaming verifier. An unreadable file gives
 * status ST_PROTO with reason GAUD_R_IO. Returns rep->status (or ST_NOMEM). */
int gaud_verify_files(const char *const *files, size_t n, const gaud_verify_opts_t *opts,
                      gaud_verify_report_t *rep);

/* True if s is exactly 64 hex digits (either case): a chain hash as printed by the verifier. */
bool gaud_hash_valid(const char *s);

/* Formats the report the way `switchyard audit verify` prints it (one or two lines, no trailing
 * newline) into out[0..cap). */
void gaud_verify_report_format(const gaud_verify_report_t *rep, char *out, size_t cap);

#endif
