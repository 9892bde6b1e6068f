/*
 * bench_index.c - micro-benchmark of the precise prefix index and the KV-event decoder:
 *   - pidx ingest rate: 1,000,000 blocks spread over 64 endpoints (BlockStored-sized batches of
 *     32 hashes), then 1,000,000 more into the full index (every add evicts);
 *   - index memory at 1M blocks (pidx_memory_bytes; fixed at create);
 *   - pidx_match latency (p50/p99) for an 8,000-token prompt = 500 blocks of 16 over 64
 *     endpoints: every endpoint holding the whole prompt (no early exit, hot), 400 rotating
 *     prompts held by 4 endpoints each at different depths (cache-cold-ish), and a miss;
 *   - kv_decode throughput (blocks/s) on batches of 16 BlockStored events x 32 blocks x 16 tokens,
 *     map and legacy encodings, as the engine encodes them.
 * Prints a table and one JSON line ("bench_index": {...}). Single thread.
 * Usage: sy-bench-index [--quick]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/status.h"
#include "engine/kv_events_int.h"
#include "gateway/kv_decode.h"
#include "gateway/prefix_index.h"

#define N_EPS 64
#define PROMPT_BLOCKS 500
#define ROT_PROMPTS 400

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x243f6a8885a308d3ULL;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct lat {
    double p50_us, p99_us;
} lat_t;

static lat_t percentiles(double *v, size_t n)
{
    qsort(v, n, sizeof(double), cmp_d);
    lat_t l = {v[n / 2] * 1e6, v[(size_t)((double)n * 0.99)] * 1e6};
    return l;
}

/* Times n_iter matches of prompts[i % n_prompts]. */
static lat_t time_match(pidx_t *x, uint64_t **prompts, size_t n_prompts, size_t n_iter,
                        uint32_t *check_ep0)
{
    double *v = malloc(n_iter * sizeof(double));
    uint32_t out[N_EPS];
    for (size_t i = 0; i < n_iter; i++) {
        double t0 = now_s();
        pidx_match(x, prompts[i % n_prompts], PROMPT_BLOCKS, out, N_EPS);
        v[i] = now_s() - t0;
        if (check_ep0 && i == 0)
            *check_ep0 = out[0];
    }
    lat_t l = percentiles(v, n_iter);
    free(v);
    return l;
}

/* One batch of n_ev BlockStored events x blocks x 16 tokens, engine-encoded. */
static void make_batch(sy_buf_t *out, int n_ev, int blocks, bool legacy)
{
    kvh_digest_t *d = malloc((size_t)blocks * sizeof(kvh_digest_t));
    int32_t *toks = malloc((size_t)blocks * 16 * sizeof(int32_t));
    kve_event_t *head = NULL, **tail = &head;
    for (int e = 0; e < n_ev; e++) {
        for (int b = 0; b < blocks; b++)
            for (int k = 0; k < 32; k++)
                d[b].b[k] = (uint8_t)rnd();
        for (int t = 0; t < blocks * 16; t++)
            toks[t] = (int32_t)(rnd() % 128000);
        *tail = kve_event_new(KVE_EV_STORED, d, (uint32_t)blocks, e ? &d[0] : NULL, toks, 16);
        tail = &(*tail)->next;
    }
    sy_buf_reset(out);
    kve_encode_batch(head, (uint32_t)n_ev, 1733000000.125, legacy, true, out);
    kve_event_free_list(head);
    free(toks);
    free(d);
}

static double decode_rate(bool legacy, int iters)
{
    sy_buf_t buf = SY_BUF_INIT;
    make_batch(&buf, 16, 32, legacy);
    kvd_batch_t b;
    kvd_batch_init(&b);
    size_t blocks = 0;
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        if (kvd_decode(&b, buf.data, buf.len, NULL) != ST_OK) {
            fprintf(stderr, "decode failed: %s\n", b.err);
            exit(1);
        }
        for (size_t e = 0; e < b.n_events; e++)
            blocks += b.events[e].n_hashes;
    }
    double dt = now_s() - t0;
    kvd_batch_deinit(&b);
    sy_buf_deinit(&buf);
    return (double)blocks / dt;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const size_t n_blocks = 1000000;
    pidx_t *x = pidx_create(n_blocks, N_EPS);
    if (!x) {
        fprintf(stderr, "pidx_create failed\n");
        return 1;
    }
    size_t mem = pidx_memory_bytes(x);

    /* ---- ingest: 1M fresh blocks, round-robin over endpoints in batches of 32 */
    uint64_t *h = malloc(2 * n_blocks * sizeof(uint64_t));
    for (size_t i = 0; i < 2 * n_blocks; i++)
        h[i] = rnd();
    double t0 = now_s();
    for (size_t i = 0; i < n_blocks; i += 32)
        pidx_add(x, (uint32_t)((i / 32) % N_EPS), h + i, 32);
    double ingest_s = now_s() - t0;
    size_t entries = pidx_num_entries(x);
    t0 = now_s();
    for (size_t i = n_blocks; i < 2 * n_blocks; i += 32)
        pidx_add(x, (uint32_t)((i / 32) % N_EPS), h + i, 32);
    double evict_s = now_s() - t0;
    uint64_t evictions = pidx_evictions(x);

    /* ---- match: prompt held in full by all 64 endpoints */
    uint64_t *full = malloc(PROMPT_BLOCKS * sizeof(uint64_t));
    for (int i = 0; i < PROMPT_BLOCKS; i++)
        full[i] = rnd();
    for (uint32_t e = 0; e < N_EPS; e++)
        pidx_add(x, e, full, PROMPT_BLOCKS);
    uint64_t *rot_store = malloc((size_t)ROT_PROMPTS * PROMPT_BLOCKS * sizeof(uint64_t));
    uint64_t *rot[ROT_PROMPTS];
    for (int p = 0; p < ROT_PROMPTS; p++) {
        rot[p] = rot_store + (size_t)p * PROMPT_BLOCKS;
        for (int i = 0; i < PROMPT_BLOCKS; i++)
            rot[p][i] = rnd();
        for (int k = 0; k < 4; k++) /* 4 holders at depths 500, 375, 250, 125 */
            pidx_add(x, (uint32_t)((p * 4 + k) % N_EPS), rot[p],
                     (size_t)(PROMPT_BLOCKS * (4 - k) / 4));
    }
    uint64_t *miss = malloc(PROMPT_BLOCKS * sizeof(uint64_t));
    for (int i = 0; i < PROMPT_BLOCKS; i++)
        miss[i] = rnd();
    /* re-touch the full prompt so it is not evicted by the rotating prompts */
    for (uint32_t e = 0; e < N_EPS; e++)
        pidx_add(x, e, full, PROMPT_BLOCKS);
    size_t iters = quick ? 2000 : 20000;
    uint32_t ep0 = 0;
    lat_t l_full = time_match(x, &full, 1, iters, &ep0);
    lat_t l_rot = time_match(x, rot, ROT_PROMPTS, iters, NULL);
    lat_t l_miss = time_match(x, &miss, 1, iters, NULL);

    /* ---- decoder */
    int dec_iters = quick ? 300 : 3000;
    double dec_map = decode_rate(false, dec_iters);
    double dec_arr = decode_rate(true, dec_iters);

    double ingest_rate = (double)n_blocks / ingest_s;
    double evict_rate = (double)n_blocks / evict_s;
    printf("%-44s %14s\n", "metric", "value");
    printf("%-44s %14.0f\n", "pidx ingest, 1M blocks / 64 eps (blocks/s)", ingest_rate);
    printf("%-44s %14.0f\n", "pidx ingest with eviction (blocks/s)", evict_rate);
    printf("%-44s %14zu\n", "entries after 1M", entries);
    printf("%-44s %14.1f\n", "pidx memory at 1M blocks (MiB)", (double)mem / (1 << 20));
    printf("%-44s %7.2f /%6.2f\n", "match 500 blk, 64 eps all hold (p50/p99 us)", l_full.p50_us,
           l_full.p99_us);
    printf("%-44s %7.2f /%6.2f\n", "match 500 blk, 400 rotating prompts (us)", l_rot.p50_us,
           l_rot.p99_us);
    printf("%-44s %7.2f /%6.2f\n", "match 500 blk, miss (us)", l_miss.p50_us, l_miss.p99_us);
    printf("%-44s %14.0f\n", "kv_decode map encoding (blocks/s)", dec_map);
    printf("%-44s %14.0f\n", "kv_decode legacy array (blocks/s)", dec_arr);
    printf("{\"bench_index\":{\"ingest_blocks_per_s\":%.0f,\"ingest_evicting_blocks_per_s\":%.0f,"
           "\"entries\":%zu,\"evictions\":%llu,\"memory_bytes\":%zu,\"match_all64_p50_us\":%.3f,"
           "\"match_all64_p99_us\":%.3f,\"match_rotating_p50_us\":%.3f,"
           "\"match_rotating_p99_us\":%.3f,\"match_miss_p50_us\":%.3f,"
           "\"match_miss_p99_us\":%.3f,\"match_all64_depth\":%u,"
           "\"decode_map_blocks_per_s\":%.0f,\"decode_array_blocks_per_s\":%.0f}}\n",
           ingest_rate, evict_rate, entries, (unsigned long long)evictions, mem, l_full.p50_us,
           l_full.p99_us, l_rot.p50_us, l_rot.p99_us, l_miss.p50_us, l_miss.p99_us, ep0, dec_map,
           dec_arr);
    free(miss);
    free(rot_store);
    free(full);
    free(h);
    pidx_destroy(x);
    return ep0 == PROMPT_BLOCKS ? 0 : 1;
}
