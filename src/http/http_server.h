/*
 * http_server.h - HTTP/1.1 server on the event loop: accepts connections, parses requests
 * incrementally (keep-alive, pipelining processed in order, Content-Length and chunked bodies),
 * enforces limits (head size, header count, body size -> 413, read/idle timeouts), and lets the
 * handler answer either with a whole response or with a Server-Sent-Events stream under
 * backpressure.
 *
 * Lifecycle of one exchange (http_req_t):
 *   the server calls on_request(req) once the whole body is in; the handler must eventually call
 *   exactly one of http_req_respond() or http_req_sse_start() ... http_req_sse_end().
 *   The handler may answer later (from another callback on the loop thread). If the client goes
 *   away first, the on_close callback set with http_req_set_on_close() runs, and after it returns
 *   req is invalid: the handler must drop every pointer to it. After the final respond/sse_end
 *   req is also invalid (on_close is not called in that case).
 * Errors the server detects itself (bad syntax 400, head too large 431, body too large 413,
 * unsupported transfer-encoding 501, timeouts) are answered by the server with a vLLM-style JSON
 * error body: {"error":{"message":...,"type":...,"param":null,"code":N}}.
 * TLS (http_server_set_tls): connections accepted afterwards start with a non-blocking TLS
 * handshake (bounded by read_timeout_ms), then speak HTTP/1.1 over it exactly as above.
 * Does not: HTTP/2, Expect: 100-continue beyond answering it.
 * Thread-safety: all calls on the loop thread only.
 */
#ifndef SY_HTTP_SERVER_H
#define SY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/ev.h"
#include "http/http_parse.h"
#include "http/http_tls.h"

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

typedef struct http_server_config {
    size_t max_head_bytes;    /* default 16384 */
    size_t max_headers;       /* default 64 */
    size_t max_body_bytes;    /* default 8 MiB; larger -> 413 */
    uint32_t read_timeout_ms; /* a started request must be fully received within; default 30000 */
    uint32_t idle_timeout_ms; /* keep-alive idle connection closed after; default 60000 */
    size_t write_high_water;  /* bytes queued per connection above which it is "not writable";
                                 default 256 KiB */
    size_t max_connections;   /* accept pauses at this many; default 100000 */
} http_server_config_t;

/* Fills cfg with the defaults above. */
void http_server_config_default(http_server_config_t *cfg);

typedef void (*http_on_request_cb)(http_req_t *req, void *udata);
typedef void (*http_req_cb)(http_req_t *req, void *udata);

/* Creates a server on loop (borrowed). cfg is copied. on_request/udata borrowed.
 * Returns owned server (free with http_server_destroy) or NULL. */
http_server_t *http_server_create(ev_loop_t *loop, const http_server_config_t *cfg,
                                  http_on_request_cb on_request, void *udata);
/* Binds and listens (SO_REUSEADDR, backlog 4096). host NULL = "0.0.0.0". port 0 picks a free one.
 * ST_OK or -errno / ST_INVAL (bad address). */
int http_server_listen(http_server_t *srv, const char *host, int port);
/* Makes connections accepted from now on speak TLS with tls (borrowed; it must outlive srv; NULL
 * = plain HTTP again). Reloading tls (htls_server_reload) changes the certificate of later
 * connections only. */
void http_server_set_tls(http_server_t *srv, htls_server_t *tls);
/* The bound port (after listen). */
int http_server_port(const http_server_t *srv);
/* Stops accepting new connections (closes the listener); in-flight exchanges continue and idle
 * keep-alive connections are closed. Used for draining on SIGTERM. */
void http_server_stop_accepting(http_server_t *srv);
/* Number of open client connections / exchanges awaiting an answer. */
size_t http_server_num_connections(const http_server_t *srv);
size_t http_server_num_active(const http_server_t *srv);
/* Closes every connection (on_close callbacks run for pending exchanges) and frees. NULL ok. */
void http_server_destroy(http_server_t *srv);

/* ---- request accessors (slices valid until the exchange ends) ---- */
sy_slice_t http_req_method(const http_req_t *req);
sy_slice_t http_req_path(const http_req_t *req);  /* target without the query string */
sy_slice_t http_req_query(const http_req_t *req); /* after '?', empty if none */
/* Case-insensitive lookup; returns false if absent. */
bool http_req_header(const http_req_t *req, const char *name, sy_slice_t *value);
/* The decoded body (Content-Length or de-chunked). NUL-terminated for convenience. */
sy_slice_t http_req_body(const http_req_t *req);
/* Peer address text "ip:port" (borrowed, valid for the exchange). */
const char *http_req_peer(const http_req_t *req);
/* Monotonic ns when the request head started arriving. */
uint64_t http_req_start_ns(const http_req_t *req);

/* ---- answers ---- */
/* Sends a whole response. extra_headers: NULL or "Name: value\r\n..." lines (borrowed).
 * Ends the exchange (req invalid afterwards). ST_OK, or ST_CLOSED if the client is gone. */
int http_req_respond(http_req_t *req, int status, const char *content_type, const char *body,
                     size_t body_len, const char *extra_headers);
/* Convenience: a vLLM-style JSON error {"error":{"message","type","param","code"}}; type NULL
 * picks the canonical one for status (400 BadRequestError, 404 NotFoundError, ...). param may be
 * NULL. Ends the exchange. */
int http_req_respond_error(http_req_t *req, int status, const char *type, const char *message,
                           const char *param);
/* Same, with extra response headers (NULL or "Name: value\r\n"...), e.g. Allow or Retry-After. */
int http_req_respond_error_hdr(http_req_t *req, int status, const char *type, const char *message,
                               const char *param, const char *extra_headers);

/* Starts an SSE response: 200, Content-Type: text/event-stream, Cache-Control: no-cache, chunked
 * transfer encoding (keep-alive is kept). extra_headers as above. */
int http_req_sse_start(http_req_t *req, const char *extra_headers);
/* Queues raw event bytes (already framed, e.g. "data: {...}\n\n"; several events may be passed at
 * once). Never blocks; data is copied into the connection's output queue. Returns ST_OK, or
 * ST_CLOSED if the client is gone. Callers should stop producing while !http_req_writable(). */
int http_req_sse_send(http_req_t *req, const char *data, size_t len);
/* Ends the stream (terminating chunk). Ends the exchange (req invalid afterwards). */
int http_req_sse_end(http_req_t *req);
/* True while the connection's queued output is below write_high_water. */
bool http_req_writable(const http_req_t *req);
/* cb runs once when queued output drops below the high-water mark again (re-arm each time). */
void http_req_set_on_writable(http_req_t *req, http_req_cb cb, void *udata);
/* cb runs if the client disconnects (or the server is destroyed) before the exchange ended. */
void http_req_set_on_close(http_req_t *req, http_req_cb cb, void *udata);

/* Handler-owned per-exchange pointer (not touched by the server). */
void http_req_set_udata(http_req_t *req, void *udata);
void *http_req_get_udata(const http_req_t *req);

#endif
