/*
 * status.h - the project-wide status codes.
 *
 * 0 is success, negative is an error. OS failures are carried as -errno (always > -4096);
 * our own codes live below SY_ST_BASE so they never collide with errno values.
 * Thread-safety: everything here is pure.
 */
#ifndef SY_STATUS_H
#define SY_STATUS_H

#define SY_ST_BASE (-10000)

typedef enum sy_status {
    ST_OK = 0,
    ST_AGAIN = SY_ST_BASE - 1,    /* would block / input incomplete: call again */
    ST_DECLINED = SY_ST_BASE - 2, /* a plugin or filter passes (no opinion) */
    ST_NOMEM = SY_ST_BASE - 3,    /* allocation failed (or KV blocks exhausted) */
    ST_PROTO = SY_ST_BASE - 4,    /* protocol violation in bytes we received */
    ST_TIMEOUT = SY_ST_BASE - 5,  /* a deadline passed */
    ST_UPSTREAM = SY_ST_BASE - 6, /* an upstream peer failed */
    ST_INVAL = SY_ST_BASE - 7,    /* invalid argument or input value */
    ST_LIMIT = SY_ST_BASE - 8,    /* a configured limit was exceeded (size, count) */
    ST_NOTFOUND = SY_ST_BASE - 9, /* no such item */
    ST_STATE = SY_ST_BASE - 10,   /* call not allowed in the object's current state */
    ST_CLOSED = SY_ST_BASE - 11,  /* peer closed / object shut down */
    ST_EXISTS = SY_ST_BASE - 12,  /* item already present */
    ST_BUSY = SY_ST_BASE - 13, /* at a concurrency cap: busy, not failing (try elsewhere/later) */
} sy_status_t;

/* Returns a static string naming the status (or strerror text for -errno). Never NULL. */
const char *st_str(int status);

#endif
