/*
 * test_http_tls.c - htls over real OpenSSL: certificates are generated in-process (EC P-256,
 * self-signed, SAN IP:127.0.0.1) into a temp dir; a server context is built from a good pair,
 * refused with a reason for a mismatched pair, a missing file and a garbage file; a reload swaps
 * the certificate for new connections only and a bad reload keeps the current one; a client and
 * a server handshake over a non-blocking socketpair (ALPN http/1.1, data both ways, close_notify
 * seen as end of stream), and the client refuses a wrong IP address and an unknown CA; an
 * http_server with TLS on 127.0.0.1 streams a 4 MB SSE response under backpressure to a client
 * that stops reading for a while (on_writable fires, every byte arrives, keep-alive request after
 * it), and a plain-HTTP client or a silent one gets its connection closed (handshake timeout).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/buf.h"
#include "common/ev.h"
#include "common/status.h"
#include "http/http_server.h"
#include "http/http_tls.h"

typedef struct pair_files {
    char cert[256], key[256];
} pair_files_t;

static char g_dir[128];
static pair_files_t g_a, g_b;
static char g_garbage[256];

/* Writes a self-signed certificate with serial and an IP SAN for 127.0.0.1 plus its key. */
static void make_pair(const char *name, long serial, pair_files_t *out)
{
    snprintf(out->cert, sizeof out->cert, "%s/%s.crt", g_dir, name);
    snprintf(out->key, sizeof out->key, "%s/%s.key", g_dir, name);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *exts[][2] = {{"subjectAltName", "IP:127.0.0.1"},
                             {"basicConstraints", "critical,CA:TRUE"},
                             {"keyUsage", "critical,digitalSignature,keyCertSign"}};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(out->cert, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(out->key, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sy-htls.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    make_pair("alpha", 0xA1, &g_a);
    make_pair("beta", 0xB2, &g_b);
    snprintf(g_garbage, sizeof g_garbage, "%s/garbage.pem", g_dir);
    FILE *f = fopen(g_garbage, "w");
    if (!f)
        return -1;
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {g_a.cert, g_a.key, g_b.cert, g_b.key, g_garbage};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    rmdir(g_dir);
    return 0;
}

/* The serial of the certificate a connection would present, as hex. */
static void conn_serial(htls_conn_t *t, char *out, size_t cap)
{
    X509 *x = SSL_get_certificate(t);
    assert_non_null(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    snprintf(out, cap, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
}

static void test_server_create(void **state)
{
    (void)state;
    char err[512] = "";
    htls_server_t *s = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    assert_non_null(s);
    char desc[512];
    htls_server_describe(s, desc, sizeof desc);
    assert_non_null(strstr(desc, "serial=A1"));
    assert_non_null(strstr(desc, "CN=alpha"));
    htls_server_destroy(s);
    htls_server_destroy(NULL);
    htls_client_destroy(NULL);
    htls_conn_free(NULL, true);
}

static void test_server_refuses_bad_files(void **state)
{
    (void)state;
    char err[512] = "";
    assert_null(htls_server_create(g_a.cert, g_b.key, err, sizeof err));
    assert_non_null(strstr(err, "does not match"));
    err[0] = '\0';
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.crt", g_dir);
    assert_null(htls_server_create(missing, g_a.key, err, sizeof err));
    assert_non_null(strstr(err, missing));
    err[0] = '\0';
    assert_null(htls_server_create(g_garbage, g_a.key, err, sizeof err));
    assert_non_null(strstr(err, "certificate"));
    err[0] = '\0';
    assert_null(htls_server_create(g_a.cert, g_garbage, err, sizeof err));
    assert_non_null(strstr(err, "key"));
    assert_null(htls_server_create(g_a.cert, NULL, err, sizeof err));
}

static void test_reload_swaps(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    char err[512], ser[64];
    htls_server_t *s = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    assert_non_null(s);
    htls_conn_t *c1 = htls_server_conn_new(s, sv[0]);
    assert_non_null(c1);
    conn_serial(c1, ser, sizeof ser);
    assert_string_equal(ser, "A1");

    assert_int_equal(htls_server_reload(s, g_b.cert, g_b.key, err, sizeof err), ST_OK);
    htls_conn_t *c2 = htls_server_conn_new(s, sv[0]);
    conn_serial(c2, ser, sizeof ser);
    assert_string_equal(ser, "B2");
    conn_serial(c1, ser, sizeof ser); /* made before the reload: keeps its certificate */
    assert_string_equal(ser, "A1");

    /* a bad pair (also through the remembered paths) keeps the running one */
    err[0] = '\0';
    assert_int_equal(htls_server_reload(s, g_b.cert, g_a.key, err, sizeof err), ST_INVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(htls_server_reload(s, NULL, NULL, err, sizeof err), ST_OK); /* B again */
    htls_conn_t *c3 = htls_server_conn_new(s, sv[0]);
    conn_serial(c3, ser, sizeof ser);
    assert_string_equal(ser, "B2");
    char desc[512];
    htls_server_describe(s, desc, sizeof desc);
    assert_non_null(strstr(desc, "serial=B2"));

    htls_server_destroy(s); /* connections keep their own context */
    conn_serial(c1, ser, sizeof ser);
    assert_string_equal(ser, "A1");
    htls_conn_free(c1, false);
    htls_conn_free(c2, false);
    htls_conn_free(c3, false);
    close(sv[0]);
    close(sv[1]);
}

/* Runs both handshakes over a non-blocking socketpair. Returns the client's status (the server's
 * in *srv_rc); client error text in err. */
static int handshake_pair(htls_conn_t *cli, htls_conn_t *srv, int *srv_rc, char *err, size_t n)
{
    int crc = ST_AGAIN, src = ST_AGAIN;
    char serr[256];
    for (int i = 0; i < 1000 && (crc == ST_AGAIN || src == ST_AGAIN); i++) {
        uint32_t want = 0;
        if (crc == ST_AGAIN)
            crc = htls_handshake(cli, &want, err, n);
        if (src == ST_AGAIN)
            src = htls_handshake(srv, &want, serr, sizeof serr);
        if (crc != ST_AGAIN && crc != ST_OK)
            break;
    }
    *srv_rc = src;
    return crc;
}

static void socketpair_nb(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (int i = 0; i < 2; i++)
        fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK);
}

static void test_handshake_and_io(void **state)
{
    (void)state;
    char err[512];
    htls_server_t *s = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    htls_client_t *c = htls_client_create(g_a.cert, err, sizeof err);
    assert_non_null(s);
    assert_non_null(c);
    int sv[2];
    socketpair_nb(sv);
    htls_conn_t *tc = htls_client_conn_new(c, sv[0], "127.0.0.1");
    htls_conn_t *ts = htls_server_conn_new(s, sv[1]);
    assert_non_null(tc);
    assert_non_null(ts);
    uint32_t want = 0;
    char buf[64];
    assert_int_equal(htls_read(ts, buf, sizeof buf, &want), ST_AGAIN); /* nothing yet */
    int src;
    err[0] = '\0';
    assert_int_equal(handshake_pair(tc, ts, &src, err, sizeof err), ST_OK);
    assert_int_equal(src, ST_OK);
    char alpn[32];
    assert_string_equal(htls_alpn(ts, alpn, sizeof alpn), "http/1.1");
    assert_string_equal(htls_alpn(tc, alpn, sizeof alpn), "http/1.1");
    assert_string_equal(htls_version(tc), "TLSv1.3");

    assert_int_equal(htls_write(tc, "ping", 4, &want), 4);
    ssize_t n = htls_read(ts, buf, 2, &want); /* a short read leaves the rest inside */
    assert_int_equal(n, 2);
    assert_true(htls_pending(ts));
    n = htls_read(ts, buf + 2, sizeof buf - 2, &want);
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "ping", 4);
    assert_false(htls_pending(ts));
    assert_int_equal(htls_read(ts, buf, sizeof buf, &want), ST_AGAIN);
    assert_int_equal(want, EV_READ);
    assert_int_equal(htls_write(ts, "pong", 4, &want), 4);
    n = 0;
    for (int i = 0; i < 10 && n <= 0; i++) /* TLS 1.3 session tickets come first */
        n = htls_read(tc, buf, sizeof buf, &want);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "pong", 4);

    htls_shutdown(ts); /* close_notify: the client sees the end of stream */
    assert_int_equal(htls_read(tc, buf, sizeof buf, &want), 0);
    htls_conn_free(tc, true);
    htls_conn_free(ts, false);
    close(sv[0]);
    close(sv[1]);
    htls_client_destroy(c);
    htls_server_destroy(s);
}

static void expect_refused(const char *ca, const char *host, const char *needle)
{
    char err[512];
    htls_server_t *s = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    htls_client_t *c = htls_client_create(ca, err, sizeof err);
    assert_non_null(s);
    assert_non_null(c);
    int sv[2];
    socketpair_nb(sv);
    htls_conn_t *tc = htls_client_conn_new(c, sv[0], host);
    htls_conn_t *ts = htls_server_conn_new(s, sv[1]);
    int src;
    err[0] = '\0';
    assert_int_equal(handshake_pair(tc, ts, &src, err, sizeof err), ST_PROTO);
    if (!strstr(err, needle))
        fail_msg("error text '%s' does not contain '%s'", err, needle);
    htls_conn_free(tc, false);
    htls_conn_free(ts, false);
    close(sv[0]);
    close(sv[1]);
    htls_client_destroy(c);
    htls_server_destroy(s);
}

static void test_client_verifies(void **state)
{
    (void)state;
    expect_refused(g_a.cert, "127.0.0.2", "IP address mismatch");
    expect_refused(g_a.cert, "example.com", "hostname mismatch");
    expect_refused(g_b.cert, "127.0.0.1", "certificate verify failed");
    char err[512] = "";
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.pem", g_dir);
    assert_null(htls_client_create(missing, err, sizeof err));
    assert_non_null(strstr(err, missing));
}

static void test_plain_http_refused(void **state)
{
    (void)state;
    char err[512];
    htls_server_t *s = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    int sv[2];
    socketpair_nb(sv);
    htls_conn_t *ts = htls_server_conn_new(s, sv[1]);
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(sv[0], req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    uint32_t want = 0;
    err[0] = '\0';
    assert_int_equal(htls_handshake(ts, &want, err, sizeof err), ST_PROTO);
    assert_non_null(strstr(err, "http request"));
    htls_conn_free(ts, false);
    close(sv[0]);
    close(sv[1]);
    htls_server_destroy(s);
}

/* ---- http_server over TLS ---- */

static void ev_stop_cb_dummy(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    (void)udata;
    ev_stop(loop);
}

#define SSE_TOTAL (16u << 20)
#define SSE_CHUNK 60000

typedef struct tls_app {
    http_req_t *stream;
    size_t sent;
    int blocked, writable_calls, requests;
} tls_app_t;

static void sse_pump(http_req_t *req, void *udata)
{
    tls_app_t *app = udata;
    static char chunk[SSE_CHUNK];
    if (!chunk[0]) {
        memset(chunk, 'x', sizeof chunk);
        memcpy(chunk, "data: ", 6);
        memcpy(chunk + sizeof chunk - 2, "\n\n", 2);
    }
    if (app->sent)
        app->writable_calls++;
    while (http_req_writable(req) && app->sent < SSE_TOTAL) {
        assert_int_equal(http_req_sse_send(req, chunk, sizeof chunk), ST_OK);
        app->sent += sizeof chunk;
    }
    if (app->sent < SSE_TOTAL) {
        app->blocked++;
        http_req_set_on_writable(req, sse_pump, app);
        return;
    }
    app->stream = NULL;
    http_req_sse_end(req);
}

static void tls_on_request(http_req_t *req, void *udata)
{
    tls_app_t *app = udata;
    app->requests++;
    if (sy_slice_eq(http_req_path(req), "/sse")) {
        assert_int_equal(http_req_sse_start(req, NULL), ST_OK);
        app->stream = req;
        sse_pump(req, app);
        return;
    }
    http_req_respond(req, 200, "text/plain", "hi", 2, NULL);
}

typedef struct tls_cli {
    ev_loop_t *loop;
    int fd;
    htls_conn_t *t;
    bool up, sent, eof;
    const char *request;
    uint64_t quiet_until_ms; /* do not read before */
    sy_buf_t rx;
    const char *want_end; /* stop when rx ends with this */
    uint64_t deadline_ms;
    bool done;
} tls_cli_t;

static void cli_tick(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    tls_cli_t *c = udata;
    uint32_t want = 0;
    char err[256];
    if (!c->up) {
        int rc = htls_handshake(c->t, &want, err, sizeof err);
        if (rc == ST_OK)
            c->up = true;
        else if (rc != ST_AGAIN)
            fail_msg("client handshake: %s", err);
    }
    if (c->up && !c->sent) {
        assert_int_equal(htls_write(c->t, c->request, strlen(c->request), &want),
                         (ssize_t)strlen(c->request));
        c->sent = true;
    }
    if (c->up && sy_mono_ms() >= c->quiet_until_ms) {
        for (int i = 0; i < 8; i++) {
            char buf[16384];
            ssize_t n = htls_read(c->t, buf, sizeof buf, &want);
            if (n > 0) {
                assert_int_equal(sy_buf_append(&c->rx, buf, (size_t)n), ST_OK);
                continue;
            }
            if (n == 0 || (n < 0 && n != ST_AGAIN))
                c->eof = true;
            break;
        }
    }
    size_t wl = strlen(c->want_end);
    if ((c->rx.len >= wl && memcmp(c->rx.data + c->rx.len - wl, c->want_end, wl) == 0) || c->eof ||
        sy_mono_ms() > c->deadline_ms) {
        c->done = true;
        ev_stop(loop);
        return;
    }
    ev_timer_add(loop, 1, cli_tick, c);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    /* a small receive window (set before connect), so that the server's output backs up even
     * where the kernel's TCP autotuning would otherwise buffer the whole stream */
    int rcv = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Runs one request over a fresh (or the given) client until its response ends with want_end. */
static void cli_run(tls_cli_t *c, const char *request, const char *want_end, uint64_t quiet_ms)
{
    c->request = request;
    c->sent = false;
    c->done = false;
    c->want_end = want_end;
    c->quiet_until_ms = sy_mono_ms() + quiet_ms;
    c->deadline_ms = sy_mono_ms() + 20000;
    sy_buf_reset(&c->rx);
    ev_timer_add(c->loop, 1, cli_tick, c);
    ev_run(c->loop);
    assert_true(c->done);
}

static void test_server_over_tls(void **state)
{
    (void)state;
    char err[512];
    ev_loop_t *loop = ev_loop_create();
    htls_server_t *ts = htls_server_create(g_a.cert, g_a.key, err, sizeof err);
    htls_client_t *tc = htls_client_create(g_a.cert, err, sizeof err);
    assert_non_null(loop);
    assert_non_null(ts);
    assert_non_null(tc);
    http_server_config_t cfg;
    http_server_config_default(&cfg);
    cfg.write_high_water = 64 * 1024;
    cfg.read_timeout_ms = 300; /* also the handshake timeout */
    tls_app_t app = {0};
    http_server_t *srv = http_server_create(loop, &cfg, tls_on_request, &app);
    assert_non_null(srv);
    http_server_set_tls(srv, ts);
    assert_int_equal(http_server_listen(srv, "127.0.0.1", 0), ST_OK);
    int port = http_server_port(srv);

    tls_cli_t c = {.loop = loop, .fd = tcp_connect(port)};
    c.t = htls_client_conn_new(tc, c.fd, "127.0.0.1");
    /* the client reads nothing for 300 ms: the output queue fills and the handler is held back */
    cli_run(&c, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", "0\r\n\r\n", 300);
    assert_false(c.eof);
    assert_true(app.blocked > 0);
    assert_true(app.writable_calls > 0);
    http_response_head_t h;
    static const http_limits_t lim = {4096, 64};
    int n = http_parse_response(c.rx.data, c.rx.len, &lim, &h);
    assert_true(n > 0);
    assert_int_equal(h.status, 200);
    http_chunked_t ch;
    http_chunked_init(&ch);
    size_t dlen = c.rx.len - (size_t)n;
    int rc = http_chunked_decode(&ch, c.rx.data + n, &dlen);
    assert_int_equal((size_t)rc, c.rx.len - (size_t)n);
    assert_int_equal(dlen, app.sent);
    assert_int_equal(app.sent / SSE_CHUNK, (SSE_TOTAL + SSE_CHUNK - 1) / SSE_CHUNK);
    /* keep-alive: a second request on the same TLS connection */
    cli_run(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", "hi", 0);
    assert_int_equal(app.requests, 2);
    htls_conn_free(c.t, true);
    close(c.fd);

    /* plain HTTP to the TLS port, and a client that never speaks: both are closed */
    int plain = tcp_connect(port), silent = tcp_connect(port);
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(plain, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    uint64_t t0 = sy_mono_ms();
    bool plain_closed = false, silent_closed = false;
    while ((!plain_closed || !silent_closed) && sy_mono_ms() - t0 < 5000) {
        ev_timer_add(loop, 5, ev_stop_cb_dummy, loop);
        ev_run(loop);
        char b[256];
        if (!plain_closed) {
            ssize_t r = read(plain, b, sizeof b);
            plain_closed = r == 0 || (r < 0 && errno != EAGAIN);
        }
        if (!silent_closed) {
            ssize_t r = read(silent, b, sizeof b);
            silent_closed = r == 0 || (r < 0 && errno != EAGAIN);
        }
    }
    assert_true(plain_closed);
    assert_true(silent_closed);
    assert_true(sy_mono_ms() - t0 >= 250); /* the silent one lasted until the timeout */
    assert_int_equal(app.requests, 2);
    close(plain);
    close(silent);
    assert_true(http_server_num_connections(srv) == 0);

    sy_buf_deinit(&c.rx);
    http_server_destroy(srv);
    htls_server_destroy(ts);
    htls_client_destroy(tc);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_create),   cmocka_unit_test(test_server_refuses_bad_files),
        cmocka_unit_test(test_reload_swaps),    cmocka_unit_test(test_handshake_and_io),
        cmocka_unit_test(test_client_verifies), cmocka_unit_test(test_plain_http_refused),
        cmocka_unit_test(test_server_over_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
