/*
 * http_client.h - HTTP/1.1 client on the event loop, for the gateway's upstream side: one
 * http_upstream_t per host:port with a keep-alive connection pool, and calls (http_call_t) that
 * stream the response back through callbacks as it arrives (head, then de-chunked body bytes),
 * with pause/resume for backpressure and cancel for client disconnects.
 *
 * Call lifecycle: http_call_start -> [on_head once] -> [on_data ...] -> on_done exactly once
 * (status ST_OK when the whole response arrived, else an error: -ECONNREFUSED / ST_TIMEOUT /
 * ST_CLOSED (peer closed early) / ST_PROTO (bad response) / ST_LIMIT (a response head beyond
 * max_head_bytes) / ST_BUSY (waited too long at the connection cap, below)). After on_done, or
 * after http_call_cancel, the call is invalid. `first_byte` tells whether any response byte arrived
 * before a failure (the gateway retries elsewhere only when none did).
 * Connections go back to the pool only after a complete response with keep-alive; idle pooled
 * connections are closed after idle_timeout_ms or when the peer closes them (detected while
 * idle). A request sent on a reused connection that fails before any response byte is retried
 * once on a fresh connection (the stale keep-alive race).
 * TLS: a client whose config names a TLS context (cfg.tls) speaks TLS on every connection of
 * every upstream it creates: after the TCP connect comes a non-blocking handshake (within
 * connect_timeout_ms) that verifies the server's certificate against the context's CAs and the
 * upstream's host (an IP address against the certificate's IP SANs, a name against its DNS names
 * and sent as SNI). A refused certificate fails the call with ST_PROTO (first_byte false) and
 * logs the reason (http_client.tls_failed).
 * Connection limit and queue: with cfg.max_conns_per_upstream set, at most that many connections
 * of an upstream carry a call at once (idle pooled ones do not count); a call started beyond it
 * waits in the upstream's FIFO queue (at most max_queued_per_upstream calls, else
 * http_call_start returns ST_BUSY) and is sent on the first connection that frees up: at once
 * when a response completes on a reusable connection, otherwise from the loop. A queued call that
 * waits longer than queue_timeout_ms ends with on_done(ST_BUSY, first_byte false): ST_BUSY
 * always means "the upstream is at its cap", never that it failed; cancel,
 * pause and resume work on it as on any call. This is the concurrency cap of Envoy's circuit
 * breaker with its pending-request queue: it keeps an overloaded server's own queue short and
 * serves the waiting requests in arrival order.
 * Does not: redirects, HTTP/2, DNS at call time (host is resolved at upstream creation), client
 * certificates.
 * Thread-safety: loop thread only.
 */
#ifndef SY_HTTP_CLIENT_H
#define SY_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ev.h"
#include "http/http_parse.h"
#include "http/http_tls.h"

typedef struct http_client http_client_t;
typedef struct http_upstream http_upstream_t;
typedef struct http_call http_call_t;

typedef struct http_client_config {
    uint32_t connect_timeout_ms;    /* default 2000 */
    uint32_t first_byte_timeout_ms; /* request sent -> first response byte; default 600000 */
    uint32_t read_timeout_ms;       /* max silence between response bytes; default 600000 */
    uint32_t idle_timeout_ms;       /* pooled idle connection lifetime; default 60000 */
    size_t max_idle_per_upstream;   /* default 1024 */
    size_t max_head_bytes;          /* default 65536 */
    size_t max_conns_per_upstream;  /* connections carrying a call at once; 0 (default) = no cap */
    size_t max_queued_per_upstream; /* calls waiting at the cap; default 4096 */
    uint32_t queue_timeout_ms;      /* longest wait in that queue; default 30000 */
    htls_client_t *tls;             /* borrowed, outlives the client; NULL (default) = plain */
} http_client_config_t;

void http_client_config_default(http_client_config_t *cfg);

typedef struct http_call_cbs {
    /* Response head (status, headers as slices valid during the call only). */
    void (*on_head)(http_call_t *c, int status, const http_header_t *headers, size_t n,
                    void *udata);
    /* Body bytes (de-chunked), valid during the call only. */
    void (*on_data)(http_call_t *c, const char *data, size_t len, void *udata);
    /* End: status ST_OK or an error; first_byte = some response byte had arrived. */
    void (*on_done)(http_call_t *c, int status, bool first_byte, void *udata);
} http_call_cbs_t;

/* Returns an owned client (free with http_client_destroy) or NULL. loop borrowed. */
http_client_t *http_client_create(ev_loop_t *loop, const http_client_config_t *cfg);
/* Cancels every call (no callbacks), closes every connection, frees upstreams. NULL ok. */
void http_client_destroy(http_client_t *cl);

/* Resolves host (numeric or name, blocking getaddrinfo: call at configuration time) and returns an
 * upstream owned by the client, or NULL with *status (-errno, ST_INVAL, ST_NOMEM). */
http_upstream_t *http_upstream_create(http_client_t *cl, const char *host, int port, int *status);
/* Closes the upstream's idle connections and frees it; calls in flight on it are cancelled
 * (no callbacks). */
void http_upstream_destroy(http_upstream_t *up);
size_t http_upstream_idle_connections(const http_upstream_t *up);

/* Counters of one upstream's connection cap and queue (busy always; the others stay zero
 * without a cap). */
typedef struct http_upstream_stats {
    size_t busy;             /* connections carrying a call now */
    size_t queued;           /* calls waiting for a connection now */
    uint64_t queued_total;   /* calls that had to wait */
    uint64_t queue_timeouts; /* calls that waited longer than queue_timeout_ms */
    uint64_t queue_full;     /* http_call_start refused with ST_BUSY */
} http_upstream_stats_t;
void http_upstream_stats(const http_upstream_t *up, http_upstream_stats_t *out);

/* Starts a request. method/path borrowed for the call; extra_headers NULL or "Name: v\r\n"...;
 * the client adds Host, Content-Length (when body != NULL) and Connection: keep-alive.
 * body copied. cbs/udata borrowed. Returns ST_OK with *out set (the call may be queued, see
 * above), or an error (no callbacks): ST_INVAL, ST_NOMEM, ST_BUSY (queue full), -errno. */
int http_call_start(http_upstream_t *up, const char *method, const char *path,
                    const char *extra_headers, const char *body, size_t body_len,
                    const http_call_cbs_t *cbs, void *udata, http_call_t **out);
/* Stops / restarts reading the response (backpressure from a slow client). */
void http_call_pause(http_call_t *c);
void http_call_resume(http_call_t *c);
/* Aborts the call: the connection is closed (never pooled), no further callbacks. */
void http_call_cancel(http_call_t *c);

#endif
