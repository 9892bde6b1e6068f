/*
 * http_tls.c - OpenSSL contexts and non-blocking connection wrappers (see http_tls.h).
 *
 * Server handle: { current SSL_CTX, the cert/key paths }. A reload builds a complete SSL_CTX
 * (certificate chain, key, key/cert match check) before swapping; the old SSL_CTX is released by
 * the handle, and OpenSSL frees it once the last SSL made from it is freed (SSL_new takes a
 * reference on its context), so connections accepted before a reload keep their certificate.
 * Errors: OpenSSL's per-thread error queue is cleared before each call whose outcome is read with
 * SSL_get_error (a stale entry would turn "would block" into a failure) and drained into the
 * caller's err text on failure, so nothing is left behind for unrelated code on the thread.
 * Thread-safety: see the header (one loop thread per handle).
 */
#include "http/http_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/ev.h"
#include "common/status.h"

/* TLS 1.2: ECDHE key exchange with AEAD ciphers only (TLS 1.3 suites are OpenSSL's defaults) */
#define HTLS_TLS12_CIPHERS                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char k_alpn_http11[] = "\x08http/1.1";

struct htls_server {
    SSL_CTX *ctx; /* current: new connections are made from it */
    char *cert_file, *key_file;
};

struct htls_client {
    SSL_CTX *ctx;
};

/* Appends the queued OpenSSL reasons ("reason: reason") to err after prefix; clears the
 * queue. */
static void err_from_queue(char *err, size_t errlen, const char *prefix)
{
    char reasons[256];
    size_t n = 0;
    reasons[0] = '\0';
    unsigned long e;
    const char *last = NULL;
    while ((e = ERR_get_error()) != 0) {
        const char *r =
            ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
        char tmp[32];
        if (!r) {
            snprintf(tmp, sizeof tmp, "error %lx", e);
            r = tmp;
        }
        if (last && strcmp(last, r) == 0)
            continue;
        last = r == tmp ? NULL : r;
        if (n < sizeof reasons - 1) {
            int k = snprintf(reasons + n, sizeof reasons - n, "%s%s", n ? ": " : "", r);
            if (k > 0)
                n += (size_t)k < sizeof reasons - n ? (size_t)k : sizeof reasons - n - 1;
        }
    }
    if (err && errlen)
        snprintf(err, errlen, "%s%s%s", prefix, reasons[0] ? ": " : "", reasons[0] ? reasons : "");
}

/* Settings shared by both sides. ST_OK or ST_INVAL. */
static int ctx_common(SSL_CTX *ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, HTLS_TLS12_CIPHERS) != 1)
        return ST_INVAL;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* partial writes (one record at a time) and retries from a buffer that may have moved or
     * grown (the output queue); buffers freed while a connection is idle */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    return ST_OK;
}

static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, k_alpn_http11, sizeof k_alpn_http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN answer: the client goes on with HTTP/1.1 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* A complete server context from the files, or NULL with err set. */
static SSL_CTX *server_ctx_build(const char *cert_file, const char *key_file, char *err,
                                 size_t errlen)
{
    char prefix[512];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || ctx_common(ctx) != ST_OK) {
        err_from_queue(err, errlen, "cannot create a TLS context");
        goto fail;
    }
    /* a client that closes without close_notify is an ordinary end of stream for HTTP/1.1
     * requests (each is framed by its own length) */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(prefix, sizeof prefix, "certificate %s", cert_file);
        err_from_queue(err, errlen, prefix);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(prefix, sizeof prefix, "key %s does not match certificate %s", key_file,
                     cert_file);
        else
            snprintf(prefix, sizeof prefix, "key %s", key_file);
        err_from_queue(err, errlen, prefix);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(prefix, sizeof prefix, "key %s does not match certificate %s", key_file,
                 cert_file);
        err_from_queue(err, errlen, prefix);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

htls_server_t *htls_server_create(const char *cert_file, const char *key_file, char *err,
                                  size_t errlen)
{
    htls_server_t *s = NULL;
    if (!cert_file || !key_file) {
        sy_errf(err, errlen, "both a certificate and a key file are needed");
        return NULL;
    }
    s = sy_calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->cert_file = sy_strdup(cert_file);
    s->key_file = sy_strdup(key_file);
    if (!s->cert_file || !s->key_file)
        goto oom;
    s->ctx = server_ctx_build(cert_file, key_file, err, errlen);
    if (!s->ctx)
        goto fail;
    return s;
oom:
    sy_errf(err, errlen, "out of memory");
fail:
    htls_server_destroy(s);
    return NULL;
}

int htls_server_reload(htls_server_t *s, const char *cert_file, const char *key_file, char *err,
                       size_t errlen)
{
    const char *cf = cert_file ? cert_file : s->cert_file;
    const char *kf = key_file ? key_file : s->key_file;
    char *cf_copy = NULL, *kf_copy = NULL;
    if (cert_file || key_file) {
        cf_copy = sy_strdup(cf);
        kf_copy = sy_strdup(kf);
        if (!cf_copy || !kf_copy) {
            sy_free(cf_copy);
            sy_free(kf_copy);
            sy_errf(err, errlen, "out of memory");
            return ST_NOMEM;
        }
    }
    SSL_CTX *ctx = server_ctx_build(cf, kf, err, errlen);
    if (!ctx) {
        sy_free(cf_copy);
        sy_free(kf_copy);
        return ST_INVAL;
    }
    SSL_CTX_free(s->ctx); /* connections made from it keep it alive */
    s->ctx = ctx;
    if (cf_copy) {
        sy_free(s->cert_file);
        sy_free(s->key_file);
        s->cert_file = cf_copy;
        s->key_file = kf_copy;
    }
    return ST_OK;
}

void htls_server_describe(const htls_server_t *s, char *out, size_t cap)
{
    if (!cap)
        return;
    out[0] = '\0';
    X509 *x = s && s->ctx ? SSL_CTX_get0_certificate(s->ctx) : NULL;
    if (!x)
        return;
    char serial[128] = "?", subject[256] = "?", not_after[64] = "?";
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(serial, sizeof serial, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
        int n = BIO_read(b, not_after, sizeof not_after - 1);
        not_after[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    ERR_clear_error();
    snprintf(out, cap, "serial=%s subject=\"%s\" not_after=\"%s\"", serial, subject, not_after);
}

htls_conn_t *htls_server_conn_new(htls_server_t *s, int fd)
{
    SSL *ssl = SSL_new(s->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void htls_server_destroy(htls_server_t *s)
{
    if (!s)
        return;
    SSL_CTX_free(s->ctx);
    sy_free(s->cert_file);
    sy_free(s->key_file);
    sy_free(s);
}

/* ---- client ---- */

htls_client_t *htls_client_create(const char *ca_file, char *err, size_t errlen)
{
    htls_client_t *c = sy_calloc(1, sizeof *c);
    if (!c) {
        sy_errf(err, errlen, "out of memory");
        return NULL;
    }
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || ctx_common(c->ctx) != ST_OK) {
        err_from_queue(err, errlen, "cannot create a TLS context");
        goto fail;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        char prefix[512];
        snprintf(prefix, sizeof prefix, "CA file %s", ca_file ? ca_file : "(system default)");
        err_from_queue(err, errlen, prefix);
        goto fail;
    }
    if (SSL_CTX_set_alpn_protos(c->ctx, k_alpn_http11, sizeof k_alpn_http11 - 1) != 0) {
        err_from_queue(err, errlen, "ALPN");
        goto fail;
    }
    return c;
fail:
    ERR_clear_error();
    htls_client_destroy(c);
    return NULL;
}

htls_conn_t *htls_client_conn_new(htls_client_t *c, int fd, const char *host)
{
    SSL *ssl = SSL_new(c->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    if (is_ip) {
        /* RFC 6066: no SNI for literal addresses; the certificate must carry the IP SAN */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1)
            goto fail;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
            goto fail;
    }
    SSL_set_connect_state(ssl);
    return ssl;
fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

void htls_client_destroy(htls_client_t *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    sy_free(c);
}

/* ---- connections ---- */

/* Maps an SSL_get_error outcome to ST_AGAIN (with *want) or an error status; clears the
 * queue (its reasons go to err when given). */
static int io_status(SSL *ssl, int ret, uint32_t *want, char *err, size_t errlen)
{
    int e = SSL_get_error(ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = EV_READ;
        return ST_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        return ST_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        sy_errf(err, errlen, "peer closed the connection");
        return ST_CLOSED;
    case SSL_ERROR_SYSCALL: {
        int en = errno;
        if (ERR_peek_error() != 0) {
            err_from_queue(err, errlen, "TLS");
            return ST_PROTO;
        }
        if (en == EAGAIN || en == EWOULDBLOCK || en == EINTR) {
            *want = SSL_want_write(ssl) ? EV_WRITE : EV_READ;
            return ST_AGAIN;
        }
        sy_errf(err, errlen, "%s", en ? strerror(en) : "unexpected end of stream");
        return en ? -en : ST_CLOSED;
    }
    default: {
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            sy_errf(err, errlen, "unexpected end of stream (no close_notify)");
            return ST_CLOSED;
        }
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK) {
            char prefix[160];
            snprintf(prefix, sizeof prefix, "certificate verify failed (%s)",
                     X509_verify_cert_error_string(vr));
            err_from_queue(err, errlen, prefix);
        } else {
            err_from_queue(err, errlen, "TLS");
        }
        return ST_PROTO;
    }
    }
}

int htls_handshake(htls_conn_t *t, uint32_t *want, char *err, size_t errlen)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t);
    if (r == 1)
        return ST_OK;
    return io_status(t, r, want, err, errlen);
}

ssize_t htls_read(htls_conn_t *t, void *buf, size_t n, uint32_t *want)
{
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(t, buf, n, &got) == 1)
        return (ssize_t)got;
    if (SSL_get_error(t, 0) == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0; /* close_notify */
    }
    return io_status(t, 0, want, NULL, 0);
}

ssize_t htls_write(htls_conn_t *t, const void *buf, size_t n, uint32_t *want)
{
    size_t put = 0;
    ERR_clear_error();
    if (SSL_write_ex(t, buf, n, &put) == 1)
        return (ssize_t)put;
    int rc = io_status(t, 0, want, NULL, 0);
    return rc == ST_CLOSED ? -EPIPE : rc;
}

bool htls_pending(const htls_conn_t *t)
{
    return SSL_pending(t) > 0;
}

const char *htls_alpn(const htls_conn_t *t, char *buf, size_t cap)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(t, &p, &len);
    snprintf(buf, cap, "%.*s", (int)len, p ? (const char *)p : "");
    return buf;
}

const char *htls_version(const htls_conn_t *t)
{
    return SSL_get_version(t);
}

void htls_shutdown(htls_conn_t *t)
{
    if (!t || (SSL_get_shutdown(t) & SSL_SENT_SHUTDOWN) || !SSL_is_init_finished(t))
        return;
    ERR_clear_error();
    (void)SSL_shutdown(t); /* queues and tries to send close_notify; the answer is not awaited */
    ERR_clear_error();
}

void htls_conn_free(htls_conn_t *t, bool shutdown)
{
    if (!t)
        return;
    if (shutdown)
        htls_shutdown(t);
    SSL_free(t);
    ERR_clear_error();
}

static int errno_of(ssize_t r)
{
    return r < 0 && r > -4096 ? (int)-r : EPROTO;
}

ssize_t htls_recv(htls_conn_t *t, void *buf, size_t n, unsigned *flags, bool eof_is_reset)
{
    uint32_t want = 0;
    ssize_t r = htls_read(t, buf, n, &want);
    *flags &= ~(unsigned)HTLS_RD_WANTS_WRITE;
    if (r >= 0)
        return r;
    if (r == ST_AGAIN) {
        if (want == EV_WRITE)
            *flags |= HTLS_RD_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    }
    *flags |= HTLS_FATAL;
    if (r == ST_CLOSED && !eof_is_reset)
        return 0;
    errno = r == ST_CLOSED ? ECONNRESET : errno_of(r);
    return -1;
}

ssize_t htls_send(htls_conn_t *t, const void *buf, size_t n, unsigned *flags)
{
    uint32_t want = 0;
    ssize_t r = htls_write(t, buf, n, &want);
    *flags &= ~(unsigned)HTLS_WR_WANTS_READ;
    if (r >= 0)
        return r;
    if (r == ST_AGAIN) {
        if (want == EV_READ)
            *flags |= HTLS_WR_WANTS_READ;
        errno = EAGAIN;
        return -1;
    }
    *flags |= HTLS_FATAL;
    errno = errno_of(r);
    return -1;
}
