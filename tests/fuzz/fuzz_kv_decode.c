/*
 * fuzz_kv_decode.c - libFuzzer harness for kv_decode: decodes the input as one KV-event payload
 * (default and tight limits, reusing one batch) and checks the decoder's contract: ST_OK or
 * ST_PROTO only, every event's hashes/tokens inside the batch, counts within the caps, and slices
 * inside the input. abort()s on a violation so libFuzzer reports it like a crash. The first byte
 * also drives kvd_check_framing. Also built with replay_main.c for ctest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "gateway/kv_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_slice(sy_slice_t s, const uint8_t *data, size_t size)
{
    if (!s.ptr)
        return;
    CHECK((const uint8_t *)s.ptr >= data && (const uint8_t *)s.ptr + s.len <= data + size);
}

static void check_batch(const kvd_batch_t *b, const kvd_limits_t *lim, const uint8_t *data,
                        size_t size)
{
    size_t hashes = 0, tokens = 0;
    CHECK(b->n_events + b->n_unknown <= lim->max_events);
    for (size_t i = 0; i < b->n_events; i++) {
        const kvd_event_t *e = &b->events[i];
        CHECK(e->type == KVD_BLOCK_STORED || e->type == KVD_BLOCK_REMOVED ||
              e->type == KVD_ALL_CLEARED);
        CHECK(e->n_hashes == 0 || e->hashes != NULL);
        CHECK(e->n_tokens == 0 || e->token_ids != NULL);
        volatile uint64_t sink = 0;
        for (size_t k = 0; k < e->n_hashes; k++)
            sink += e->hashes[k];
        for (size_t k = 0; k < e->n_tokens; k++)
            sink += (uint64_t)e->token_ids[k];
        (void)sink;
        hashes += e->n_hashes;
        tokens += e->n_tokens;
        check_slice(e->medium, data, size);
        check_slice(e->lora_name, data, size);
    }
    CHECK(hashes <= lim->max_hashes && tokens <= lim->max_tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvd_batch_t b;
    kvd_batch_init(&b);
    kvd_limits_t lim;
    kvd_limits_default(&lim);
    int st = kvd_decode(&b, data, size, &lim);
    CHECK(st == ST_OK || st == ST_PROTO);
    if (st == ST_OK)
        check_batch(&b, &lim, data, size);
    else
        CHECK(b.n_events == 0 && b.err[0] != '\0');

    kvd_limits_t tight = {size, 3, 5, 17};
    st = kvd_decode(&b, data, size, &tight);
    CHECK(st == ST_OK || st == ST_PROTO);
    if (st == ST_OK)
        check_batch(&b, &tight, data, size);
    kvd_batch_deinit(&b);

    uint64_t seq;
    if (size >= 8)
        CHECK(kvd_check_framing(3, data, 8, &seq) == ST_OK && seq == kvd_be64_get(data));
    return 0;
}
