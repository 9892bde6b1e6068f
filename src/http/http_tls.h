/*
 * http_tls.h - TLS for the HTTP server and client over OpenSSL: a reloadable server context made
 * from PEM certificate (chain) and key files, a client context that verifies the peer against a
 * CA file (or the system store) and the host name or IP address it dialled, and non-blocking
 * handshake / read / write / shutdown wrappers that report "would block" as ST_AGAIN plus the
 * event the caller must wait for (EV_READ or EV_WRITE).
 *
 * Settings: TLS 1.2 minimum; TLS 1.2 only with ECDHE key exchange and AEAD ciphers (AES-GCM,
 * ChaCha20-Poly1305); TLS 1.3 with OpenSSL's default suites; no renegotiation, no compression.
 * The server offers ALPN "http/1.1" (a client that asks only for other protocols gets no ALPN
 * answer and keeps speaking whatever it sends); the client offers "http/1.1".
 * Reload: htls_server_reload() builds a whole new context and swaps it in only when it is
 * complete, so new connections get the new certificate while connections made before keep the
 * old one (each connection holds a reference to the context it was made with); a bad file
 * leaves the current context in place and says why.
 * Does not: client certificates (mTLS), OCSP stapling, session caching across reloads, HTTP/2.
 * Thread-safety: a context handle is used from one thread (the event loop's); connections made
 * from it belong to that thread too.
 */
#ifndef SY_HTTP_TLS_H
#define SY_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One TLS connection: an OpenSSL SSL object (struct ssl_st), opaque to users of this header. */
typedef struct ssl_st htls_conn_t;
typedef struct htls_server htls_server_t;
typedef struct htls_client htls_client_t;

/* ---- server side ---- */

/* Loads cert_file (PEM: the leaf first, then intermediates) and key_file (PEM private key),
 * checks that they belong together. Paths are copied (reload uses them). Returns an owned handle
 * (free with htls_server_destroy) or NULL with the reason in err (file, OpenSSL's reason). */
htls_server_t *htls_server_create(const char *cert_file, const char *key_file, char *err,
                                  size_t errlen);
/* Builds a new context from cert_file/key_file (NULL = the paths given last) and, when it is
 * valid, makes it the one new connections use; the paths become the current ones. ST_OK, or
 * ST_INVAL with the reason in err and the current context kept. */
int htls_server_reload(htls_server_t *s, const char *cert_file, const char *key_file, char *err,
                       size_t errlen);
/* Text about the current certificate: "serial=HEX subject=\"...\" not_after=\"...\"" (for
 * logs). */
void htls_server_describe(const htls_server_t *s, char *out, size_t cap);
/* Server-side connection on fd (borrowed: closed by the caller after htls_conn_free). Returns an
 * owned connection (htls_conn_free) or NULL (ST_NOMEM). */
htls_conn_t *htls_server_conn_new(htls_server_t *s, int fd);
/* NULL ok. Connections made from s stay valid (they keep their context). */
void htls_server_destroy(htls_server_t *s);

/* ---- client side ---- */

/* A client context that verifies servers against ca_file (PEM, one or more CA certificates) or,
 * with ca_file NULL, the system's default trust store. Returns owned (htls_client_destroy) or
 * NULL with the reason in err. */
htls_client_t *htls_client_create(const char *ca_file, char *err, size_t errlen);
/* Client-side connection on fd (borrowed) to host (copied): a numeric IPv4/IPv6 address is
 * checked against the certificate's IP SANs, a name against its DNS names (and sent as SNI).
 * Returns owned (htls_conn_free) or NULL. */
htls_conn_t *htls_client_conn_new(htls_client_t *c, int fd, const char *host);
/* NULL ok. */
void htls_client_destroy(htls_client_t *c);

/* ---- connections (non-blocking fds) ---- */

/* Advances the handshake. ST_OK when complete; ST_AGAIN with *want = EV_READ or EV_WRITE; else
 * ST_PROTO (bad bytes, certificate refused; the reason in err), ST_CLOSED (peer closed) or
 * -errno. After an error the connection may only be freed (htls_conn_free(t, false)). */
int htls_handshake(htls_conn_t *t, uint32_t *want, char *err, size_t errlen);
/* Reads decrypted bytes: > 0 bytes, 0 at the peer's close_notify (on the server side also at a
 * plain TCP EOF), ST_CLOSED at a TCP EOF without close_notify (client side: the response may be
 * truncated), ST_AGAIN with *want set, or an error (ST_PROTO, -errno). */
ssize_t htls_read(htls_conn_t *t, void *buf, size_t n, uint32_t *want);
/* Writes up to n bytes (at least one TLS record when it returns > 0): bytes written, ST_AGAIN
 * with *want set (call again later with the same bytes at the front of buf, possibly more
 * after them; buf may have moved), or an error (ST_PROTO, -errno). n > 0. */
ssize_t htls_write(htls_conn_t *t, const void *buf, size_t n, uint32_t *want);
/* Per-connection TLS state bits a caller keeps (http_server and http_client share them). */
enum {
    HTLS_UP = 1u,             /* handshake complete */
    HTLS_FATAL = 2u,          /* an error: no close_notify, only free */
    HTLS_RD_WANTS_WRITE = 4u, /* the last read needs EV_WRITE */
    HTLS_WR_WANTS_READ = 8u,  /* the last write needs EV_READ */
};
/* htls_read with recv()'s conventions, keeping *flags: bytes, 0 at close_notify (and at an EOF
 * without it unless eof_is_reset), or -1 with errno (EAGAIN when OpenSSL would block, with
 * HTLS_RD_WANTS_WRITE set when it waits for the socket to be writable; ECONNRESET for an EOF
 * without close_notify when eof_is_reset; an error sets HTLS_FATAL). */
ssize_t htls_recv(htls_conn_t *t, void *buf, size_t n, unsigned *flags, bool eof_is_reset);
/* htls_write with send()'s conventions, keeping *flags the same way (HTLS_WR_WANTS_READ). */
ssize_t htls_send(htls_conn_t *t, const void *buf, size_t n, unsigned *flags);
/* Decrypted bytes buffered inside t that a read returns without touching the socket. */
bool htls_pending(const htls_conn_t *t);
/* The negotiated ALPN protocol ("" when none) and version name ("TLSv1.3"), borrowed. */
const char *htls_alpn(const htls_conn_t *t, char *buf, size_t cap);
const char *htls_version(const htls_conn_t *t);
/* Sends close_notify once, best effort (never blocks, never fails). Only after a completed
 * handshake and no error. */
void htls_shutdown(htls_conn_t *t);
/* Frees t; with shutdown, sends close_notify first (as htls_shutdown). NULL ok. */
void htls_conn_free(htls_conn_t *t, bool shutdown);

#endif
