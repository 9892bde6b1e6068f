/*
 * http_parse.h - incremental, zero-copy HTTP/1.1 parsing: request heads, response heads and
 * chunked transfer decoding.
 *
 * The parsers are pure functions over a caller's buffer. They either consume a whole head and
 * return the number of bytes it took, or return ST_AGAIN (incomplete, call again with more bytes),
 * or an error. Header names and values come out as slices into the buffer (no copies), so the
 * buffer must outlive the parsed head.
 * Does not: allocate, or interpret headers beyond syntax (see http_head_* helpers).
 * Thread-safety: pure; reentrant.
 */
#ifndef SY_HTTP_PARSE_H
#define SY_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HTTP_MAX_HEADERS_HARD 128

typedef struct http_header {
    sy_slice_t name;  /* as received (case preserved) */
    sy_slice_t value; /* leading/trailing whitespace trimmed */
} http_header_t;

typedef struct http_request_head {
    sy_slice_t method;
    sy_slice_t target; /* request-target, e.g. "/v1/completions?x=1" */
    int minor_version; /* HTTP/1.<minor>: 0 or 1 */
    http_header_t headers[HTTP_MAX_HEADERS_HARD];
    size_t num_headers;
} http_request_head_t;

typedef struct http_response_head {
    int minor_version;
    int status;
    sy_slice_t reason;
    http_header_t headers[HTTP_MAX_HEADERS_HARD];
    size_t num_headers;
} http_response_head_t;

typedef struct http_limits {
    size_t max_head_bytes; /* whole head including the blank line; e.g. 16384 */
    size_t max_headers;    /* <= HTTP_MAX_HEADERS_HARD; e.g. 64 */
} http_limits_t;

/* Parses a request head from buf[0..len).
 * Returns bytes consumed (> 0) when the head is complete, ST_AGAIN when more bytes are needed,
 * ST_LIMIT when the head exceeds limits (head bytes or header count), ST_PROTO on bad syntax
 * (including bare CR, NUL, invalid token characters, obs-fold, HTTP versions other than 1.0/1.1).
 * On ST_AGAIN with len already > max_head_bytes, returns ST_LIMIT instead. */
int http_parse_request(const char *buf, size_t len, const http_limits_t *lim,
                       http_request_head_t *out);

/* Same for a response head (for the gateway's upstream side). */
int http_parse_response(const char *buf, size_t len, const http_limits_t *lim,
                        http_response_head_t *out);

/* Case-insensitive header lookup; returns the first match or NULL. */
const http_header_t *http_find_header(const http_header_t *h, size_t n, const char *name);
/* True if a comma-separated header value contains token (case-insensitive), e.g. "close". */
bool http_header_has_token(sy_slice_t value, const char *token);
/* Parses a Content-Length value strictly (digits only, no overflow). ST_OK or ST_PROTO. */
int http_parse_content_length(sy_slice_t value, uint64_t *out);

/* Incremental chunked-body decoder (RFC 9112 §7.1). Chunk extensions are skipped; trailers are
 * parsed and discarded. Limits the chunk-size line and trailer sizes. */
typedef struct http_chunked {
    int _state;
    uint64_t _remaining;
    size_t _line_len;
} http_chunked_t;

void http_chunked_init(http_chunked_t *c);
/* Decodes in place: reads buf[0..*len), writes the decoded payload to the front of buf and sets
 * *len to its length. Returns the number of input bytes consumed (input past that belongs to the
 * next message) when the terminating chunk and trailers are complete; ST_AGAIN when all input was
 * consumed and more is needed (call again with the following bytes); ST_PROTO on bad syntax. */
int http_chunked_decode(http_chunked_t *c, char *buf, size_t *len);

/* Canonical reason phrase for a status code ("OK", "Not Found", ...). Never NULL. */
const char *http_status_reason(int status);

#endif
