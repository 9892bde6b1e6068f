/*
 * bench_sched.c - decision latency of the endpoint picker (gws_pick): 64 endpoints with random
 * load signals, an 8,000-token prompt (500 precise blocks of 16 tokens, 500 approximate chunks),
 * the prompt's blocks held by a few endpoints in the precise and approximate indexes. The
 * approximate side uses llm-d's default truncation (maxPrefixBlocksToMatch 256 chunks). Each
 * config gets only the indexes it needs (gws_sched_needs), as the gateway would pass them.
 * Prints p50/p99/max per built-in config. Target: p99 <= 20 us in precise mode.
 * Usage: sy-bench-sched [iterations (default 20000)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/status.h"
#include "gateway/gw_sched.h"

#define N_EP 64
#define N_BLOCKS 500

static gw_endpoint_t eps[N_EP];
static gw_endpoint_t *epp[N_EP];
static char model[] = "bench-model";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void randomize(uint64_t *seed)
{
    for (int i = 0; i < N_EP; i++) {
        eps[i].m.waiting = (double)(rnd(seed) % 12);
        eps[i].m.running = (double)(rnd(seed) % 64);
        eps[i].m.kv_usage = (double)(rnd(seed) % 1000) / 1000.0;
        eps[i].inflight_requests = (uint32_t)(rnd(seed) % 32);
        eps[i].inflight_tokens = rnd(seed) % 200000;
    }
}

static int run(const char *cfg, pidx_t *p, aidx_t *a, const uint64_t *blocks, size_t n_chunks,
               int iters)
{
    gws_sched_t *s = NULL;
    char err[GWS_ERR_MAX];
    if (gws_config_builtin(cfg, &s, err, sizeof err) != ST_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    gws_sched_seed(s, 1);
    unsigned needs = gws_sched_needs(s);
    if (!(needs & GWS_NEEDS_PRECISE))
        p = NULL;
    if (!(needs & GWS_NEEDS_APPROX))
        a = NULL;
    uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)iters);
    if (lat == NULL)
        return 1;
    uint64_t seed = 88172645463325252ull;
    gws_request_t r = {.model = model,
                       .block_hashes = blocks,
                       .n_block_hashes = N_BLOCKS,
                       .chunk_hashes = blocks,
                       .n_chunk_hashes = n_chunks,
                       .prompt_tokens = 8000};
    gws_decision_t d;
    unsigned chosen_cached = 0;
    for (int k = 0; k < iters; k++) {
        randomize(&seed);
        uint64_t t0 = now_ns();
        int rc = gws_pick(s, NULL, &r, epp, N_EP, p, a, &d);
        lat[k] = now_ns() - t0;
        if (rc != ST_OK)
            return 1;
        chosen_cached += d.endpoint->id < 4;
    }
    qsort(lat, (size_t)iters, sizeof *lat, cmp_u64);
    printf("%-15s p50 %6.2f us  p99 %6.2f us  max %7.2f us  chose-full-prefix %5.1f%%\n", cfg,
           lat[iters / 2] / 1e3, lat[(size_t)iters * 99 / 100] / 1e3, lat[iters - 1] / 1e3,
           100.0 * chosen_cached / iters);
    free(lat);
    gws_sched_destroy(s);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    if (iters < 100)
        iters = 100;
    for (int i = 0; i < N_EP; i++) {
        eps[i].id = (uint32_t)i;
        snprintf(eps[i].name, sizeof eps[i].name, "10.1.0.%d:8000", i);
        eps[i].models[0] = model;
        eps[i].n_models = 1;
        eps[i].healthy = true;
        eps[i].m.valid = true;
        epp[i] = &eps[i];
    }
    static uint64_t blocks[N_BLOCKS], other[N_BLOCKS];
    uint64_t seed = 12345;
    for (int i = 0; i < N_BLOCKS; i++) {
        blocks[i] = rnd(&seed);
        other[i] = rnd(&seed);
    }
    pidx_t *p = pidx_create(1u << 20, N_EP);
    aidx_t *a = aidx_create(N_EP, 31250);
    if (p == NULL || a == NULL)
        return 1;
    /* the prompt: whole on 4 endpoints, half on 4 more; unrelated blocks everywhere */
    for (int i = 0; i < N_EP; i++) {
        size_t n = i < 4 ? N_BLOCKS : i < 8 ? N_BLOCKS / 2 : 0;
        pidx_add(p, (uint32_t)i, blocks, n);
        aidx_record(a, (uint32_t)i, blocks, n == N_BLOCKS ? 256 : n / 2);
        pidx_add(p, (uint32_t)i, other, N_BLOCKS);
        aidx_record(a, (uint32_t)i, other, N_BLOCKS);
    }
    printf("gws_pick: %d endpoints, %d precise blocks / 256 approximate chunks, %d iterations\n",
           N_EP, N_BLOCKS, iters);
    const char *cfgs[] = {"prefix-precise", "prefix-approx", "default", "load", "round-robin"};
    int rc = 0;
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0] && rc == 0; i++)
        rc = run(cfgs[i], p, a, blocks, 256, iters);
    pidx_destroy(p);
    aidx_destroy(a);
    return rc;
}
