/*
 * bench_tok.c - throughput of the gateway's per-request prompt work, in two separate parts:
 * tok_encode with the built-in byte-level tokenizer (tok_byte_create) and kvh_chain_low64 (the
 * precise block-hash chain, 16-token blocks) over an 8,000-token prompt of printable ASCII text.
 * Reports MB/s of prompt text and microseconds per prompt for each part (p50 and p99 over the
 * iterations; MB/s from the total time), as a table and one JSON line.
 * Does not: time JSON parsing, chat templates or index lookups (see sy-bench-sched).
 * Usage: sy-bench-tok [iterations (default 2000)]
 * Thread-safety: n/a (single-threaded program).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/status.h"
#include "engine/kv_hash.h"
#include "engine/tokenizer.h"

#define PROMPT_BYTES 8000 /* one token per byte with the byte-level tokenizer */
#define BLOCK_SIZE 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v in place; writes p50 and p99. */
static void pcts(double *v, int n, double *p50, double *p99)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *p50 = v[n / 2];
    *p99 = v[(int)((double)n * 0.99)];
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 2000;
    if (iters < 10)
        iters = 10;
    int rc = 1;
    tok_t *tok = tok_byte_create();
    char *text = malloc(PROMPT_BYTES);
    size_t cap = TOK_MAX_TOKENS(PROMPT_BYTES);
    int32_t *ids = malloc(cap * sizeof *ids);
    uint64_t *hashes = malloc((cap / BLOCK_SIZE + 1) * sizeof *hashes);
    double *t_tok = malloc((size_t)iters * sizeof(double));
    double *t_hash = malloc((size_t)iters * sizeof(double));
    if (!tok || !text || !ids || !hashes || !t_tok || !t_hash) {
        fprintf(stderr, "sy-bench-tok: out of memory\n");
        goto fail;
    }

    /* printable ASCII words, deterministic */
    uint32_t s = 12345;
    for (size_t i = 0; i < PROMPT_BYTES; i++) {
        s = s * 1103515245u + 12345u;
        text[i] = (i % 7 == 6) ? ' ' : (char)('a' + (s >> 16) % 26);
    }
    kvh_digest_t none;
    kvh_none_hash("0", &none);

    size_t n_tok = 0, n_blocks = 0;
    uint64_t sink = 0;
    double sum_tok = 0, sum_hash = 0;
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        if (tok_encode(tok, text, PROMPT_BYTES, true, false, ids, cap, &n_tok) != ST_OK) {
            fprintf(stderr, "sy-bench-tok: tok_encode failed\n");
            goto fail;
        }
        double t1 = now_s();
        n_blocks =
            kvh_chain_low64(&none, BLOCK_SIZE, ids, n_tok, NULL, 0, hashes, cap / BLOCK_SIZE);
        double t2 = now_s();
        sink += hashes[n_blocks - 1] ^ (uint64_t)ids[n_tok - 1];
        t_tok[i] = t1 - t0;
        t_hash[i] = t2 - t1;
        sum_tok += t_tok[i];
        sum_hash += t_hash[i];
    }
    double tok50, tok99, hash50, hash99;
    pcts(t_tok, iters, &tok50, &tok99);
    pcts(t_hash, iters, &hash50, &hash99);
    double mb = (double)PROMPT_BYTES * iters / 1e6;
    double tok_mbs = mb / sum_tok, hash_mbs = mb / sum_hash, both_mbs = mb / (sum_tok + sum_hash);

    printf("prompt: %d bytes -> %zu tokens, %zu blocks of %d; %d iterations (checksum %016llx)\n",
           PROMPT_BYTES, n_tok, n_blocks, BLOCK_SIZE, iters, (unsigned long long)sink);
    printf("%-34s %10s %12s %12s\n", "step", "MB/s", "p50 us", "p99 us");
    printf("%-34s %10.1f %12.2f %12.2f\n", "tok_encode (byte-level)", tok_mbs, tok50 * 1e6,
           tok99 * 1e6);
    printf("%-34s %10.1f %12.2f %12.2f\n", "kvh_chain_low64 (sha256_cbor)", hash_mbs, hash50 * 1e6,
           hash99 * 1e6);
    printf("%-34s %10.1f %12.2f %12s\n", "both (mean)", both_mbs,
           (sum_tok + sum_hash) / iters * 1e6, "-");
    printf("{\"bench_tok\":{\"prompt_bytes\":%d,\"tokens\":%zu,\"blocks\":%zu,\"iterations\":%d,"
           "\"tok_mb_per_s\":%.1f,\"tok_p50_us\":%.3f,\"tok_p99_us\":%.3f,"
           "\"hash_mb_per_s\":%.1f,\"hash_p50_us\":%.3f,\"hash_p99_us\":%.3f,"
           "\"both_mb_per_s\":%.1f,\"both_mean_us\":%.3f}}\n",
           PROMPT_BYTES, n_tok, n_blocks, iters, tok_mbs, tok50 * 1e6, tok99 * 1e6, hash_mbs,
           hash50 * 1e6, hash99 * 1e6, both_mbs, (sum_tok + sum_hash) / iters * 1e6);
    rc = 0;
fail:
    free(t_hash);
    free(t_tok);
    free(hashes);
    free(ids);
    free(text);
    tok_destroy(tok);
    return rc;
}
