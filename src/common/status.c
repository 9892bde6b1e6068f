/*
 * status.c - names of the project-wide status codes.
 * Thread-safety: st_str() is reentrant (strerror text comes from a table lookup).
 */
#include "common/status.h"

#include <string.h>

const char *st_str(int status)
{
    switch (status) {
    case ST_OK:
        return "ok";
    case ST_AGAIN:
        return "again";
    case ST_DECLINED:
        return "declined";
    case ST_NOMEM:
        return "out of memory";
    case ST_PROTO:
        return "protocol error";
    case ST_TIMEOUT:
        return "timeout";
    case ST_UPSTREAM:
        return "upstream error";
    case ST_INVAL:
        return "invalid argument";
    case ST_LIMIT:
        return "limit exceeded";
    case ST_NOTFOUND:
        return "not found";
    case ST_STATE:
        return "invalid state";
    case ST_CLOSED:
        return "closed";
    case ST_EXISTS:
        return "already exists";
    case ST_BUSY:
        return "busy";
    default:
        break;
    }
    if (status < 0 && status > -4096)
        return strerrordesc_np(-status) ? strerrordesc_np(-status) : "unknown errno";
    return "unknown status";
}
