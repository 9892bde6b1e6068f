/*
 * kv_hash.c - vLLM's `sha256_cbor` prefix-caching block hash (spec §4).
 *
 * Each block hash is SHA-256 over the canonical CBOR encoding of the 3-array
 * [bytes(parent, 32), [token, ...], extra]. The CBOR bytes are streamed through a small stack
 * buffer into the digest, so hashing a block never allocates and cannot fail. We use OpenSSL's
 * low-level SHA256_Init/Update/Final for that reason (the EVP API would allocate a context per
 * call); they are deprecated in OpenSSL 3 but still supported, hence OPENSSL_SUPPRESS_DEPRECATED.
 * Tokens are Python ints on the vLLM side: non-negative ones are CBOR major type 0, negative ones
 * major type 1 (as cbor2 encodes them).
 * Does not: keep any state between calls.
 * Thread-safety: pure and reentrant (kvh_none_hash(NULL) reads the kernel RNG).
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "engine/kv_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "common/log.h"

/* CBOR major types used here. */
enum {
    CBOR_UINT = 0,
    CBOR_NEGINT = 1,
    CBOR_BYTES = 2,
    CBOR_TEXT = 3,
    CBOR_ARRAY = 4,
};
#define CBOR_NULL 0xf6

/* Streams CBOR bytes into a SHA-256 context through a small buffer. */
typedef struct cbor_sink {
    SHA256_CTX sha;
    size_t len;
    uint8_t buf[256];
} cbor_sink_t;

static void sink_init(cbor_sink_t *s)
{
    SHA256_Init(&s->sha);
    s->len = 0;
}

static void sink_flush(cbor_sink_t *s)
{
    if (s->len) {
        SHA256_Update(&s->sha, s->buf, s->len);
        s->len = 0;
    }
}

static void sink_put(cbor_sink_t *s, const void *p, size_t n)
{
    if (s->len + n > sizeof(s->buf))
        sink_flush(s);
    if (n > sizeof(s->buf)) {
        SHA256_Update(&s->sha, p, n);
        return;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void sink_final(cbor_sink_t *s, kvh_digest_t *out)
{
    sink_flush(s);
    SHA256_Final(out->b, &s->sha);
}

/* Writes a canonical (minimal-length) CBOR head for major type `major` and argument v. */
static void sink_head(cbor_sink_t *s, unsigned major, uint64_t v)
{
    uint8_t h[9];
    size_t n;
    uint8_t mt = (uint8_t)(major << 5);
    if (v < 24) {
        h[0] = (uint8_t)(mt | v);
        n = 1;
    } else if (v <= 0xff) {
        h[0] = mt | 24;
        h[1] = (uint8_t)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = mt | 25;
        h[1] = (uint8_t)(v >> 8);
        h[2] = (uint8_t)v;
        n = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = mt | 26;
        for (int i = 0; i < 4; i++)
            h[1 + i] = (uint8_t)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = mt | 27;
        for (int i = 0; i < 8; i++)
            h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
        n = 9;
    }
    sink_put(s, h, n);
}

static void sink_int(cbor_sink_t *s, int64_t v)
{
    if (v >= 0)
        sink_head(s, CBOR_UINT, (uint64_t)v);
    else
        sink_head(s, CBOR_NEGINT, (uint64_t)(-(v + 1)));
}

static void sink_text(cbor_sink_t *s, const char *p, size_t n)
{
    sink_head(s, CBOR_TEXT, n);
    if (n)
        sink_put(s, p, n);
}

/* Fills out with 32 unpredictable bytes; falls back to /dev/urandom, then to a clock mix. */
static void random_bytes(uint8_t *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        break;
    }
    if (got == n)
        return;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        while (got < n) {
            ssize_t r = read(fd, out + got, n - got);
            if (r > 0)
                got += (size_t)r;
            else if (!(r < 0 && errno == EINTR))
                break;
        }
        close(fd);
    }
    if (got == n)
        return;
    /* No kernel RNG: still produce a per-process value (it only needs to be unlikely to collide
     * across replicas, not secret). */
    sy_warn("kv_hash.rng_unavailable", "msg=\"NONE_HASH derived from clock and pid\"");
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    clock_gettime(CLOCK_MONOTONIC, &ts[1]);
    pid_t pid = getpid();
    cbor_sink_t s;
    sink_init(&s);
    sink_put(&s, ts, sizeof(ts));
    sink_put(&s, &pid, sizeof(pid));
    sink_put(&s, out, got);
    kvh_digest_t d;
    sink_final(&s, &d);
    memcpy(out, d.b, n < sizeof(d.b) ? n : sizeof(d.b));
}

void kvh_none_hash(const char *seed, kvh_digest_t *out)
{
    if (!seed) {
        /* vLLM: NONE_HASH = os.urandom(32) when PYTHONHASHSEED is unset. */
        random_bytes(out->b, sizeof(out->b));
        return;
    }
    cbor_sink_t s;
    sink_init(&s);
    sink_text(&s, seed, strlen(seed));
    sink_final(&s, out);
}

void kvh_block(const kvh_digest_t *parent, const int32_t *tokens, size_t n_tokens, const char *salt,
               size_t salt_len, kvh_digest_t *out)
{
    cbor_sink_t s;
    sink_init(&s);
    sink_head(&s, CBOR_ARRAY, 3);
    sink_head(&s, CBOR_BYTES, sizeof(parent->b));
    sink_put(&s, parent->b, sizeof(parent->b));
    sink_head(&s, CBOR_ARRAY, n_tokens);
    for (size_t i = 0; i < n_tokens; i++)
        sink_int(&s, tokens[i]);
    if (salt) {
        sink_head(&s, CBOR_ARRAY, 1);
        sink_text(&s, salt, salt_len);
    } else {
        uint8_t null = CBOR_NULL;
        sink_put(&s, &null, 1);
    }
    sink_final(&s, out);
}

uint64_t kvh_low64(const kvh_digest_t *d)
{
    uint64_t v = 0;
    for (int i = 24; i < 32; i++)
        v = (v << 8) | d->b[i];
    return v;
}

size_t kvh_chain_low64(const kvh_digest_t *none_hash, uint32_t block_size, const int32_t *tokens,
                       size_t n, const char *salt, size_t salt_len, uint64_t *out, size_t cap)
{
    if (block_size == 0)
        return 0;
    size_t n_blocks = n / block_size;
    kvh_digest_t h = *none_hash;
    for (size_t k = 0; k < n_blocks; k++) {
        kvh_digest_t next;
        kvh_block(&h, tokens + k * block_size, block_size, k == 0 ? salt : NULL, salt_len, &next);
        h = next;
        if (k < cap)
            out[k] = kvh_low64(&h);
    }
    return n_blocks;
}

void kvh_hex(const kvh_digest_t *d, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d->b[i] >> 4];
        out[2 * i + 1] = hex[d->b[i] & 0xf];
    }
    out[64] = '\0';
}
