/*
 * test_kv_block.c - block manager: refcounts with shared prefixes, the "leave one token
 * uncached" cap, LRU eviction order (uncached free blocks first), all-or-nothing reserve, usage
 * and stats, reset_prefix_cache, duplicate-hash commits, salts, hash-table churn, and the
 * BlockStored / BlockRemoved / AllBlocksCleared events seen by a real ZMQ subscriber and checked
 * against kvh_chain_low64.
 */
#include "kv_events_testutil.h"

#include <stdio.h>

#include "common/alloc.h"
#include "common/status.h"
#include "engine/kv_block.h"

#define B 16
#define FLUSH_MS 20

static kvb_mgr_t *mk_mgr(uint32_t num_blocks, uint32_t block_size, bool caching, kve_pub_t *ev)
{
    kvb_config_t c = {
        .block_size = block_size,
        .num_blocks = num_blocks,
        .enable_prefix_caching = caching,
        .hash_seed = "0",
    };
    kvb_mgr_t *m = kvb_create(&c, ev);
    assert_non_null(m);
    return m;
}

static void fill(int32_t *t, uint32_t n, int32_t first)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = first + (int32_t)i;
}

/* Runs a whole prefill for s: acquire, reserve, commit. Returns the cached token count. */
static uint32_t prefill(kvb_mgr_t *m, kvb_seq_t *s, const int32_t *t, uint32_t n)
{
    uint32_t cached = kvb_seq_acquire_prefix(m, s, t, n);
    assert_int_equal(kvb_seq_reserve(m, s, n), ST_OK);
    kvb_seq_commit(m, s, t, n);
    return cached;
}

static kvb_stats_t stats(const kvb_mgr_t *m)
{
    kvb_stats_t st;
    kvb_get_stats(m, &st);
    assert_int_equal(st.used_blocks + st.free_blocks, st.num_blocks);
    assert_true(st.cached_blocks <= st.num_blocks);
    return st;
}

/* Cached-token count a fresh probe sequence would get for t[0..n) (leaves the state as is). */
static uint32_t probe(kvb_mgr_t *m, const int32_t *t, uint32_t n, const char *salt)
{
    kvb_seq_t s;
    kvb_seq_init(&s, salt, salt ? strlen(salt) : 0);
    uint32_t hit = kvb_seq_acquire_prefix(m, &s, t, n);
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);
    return hit;
}

/* ------------------------------------------------------------------ basics */

static void test_create_and_math(void **state)
{
    kvb_config_t bad = {.block_size = 16, .num_blocks = 0, .enable_prefix_caching = true};
    assert_null(kvb_create(&bad, NULL));
    kvb_destroy(NULL);

    kvb_mgr_t *m = mk_mgr(10, B, true, NULL);
    assert_int_equal(kvb_block_size(m), B);
    kvh_digest_t none;
    kvh_none_hash("0", &none);
    assert_memory_equal(kvb_none_hash(m)->b, none.b, 32);
    assert_int_equal(kvb_blocks_for(m, 0), 0);
    assert_int_equal(kvb_blocks_for(m, 1), 1);
    assert_int_equal(kvb_blocks_for(m, 16), 1);
    assert_int_equal(kvb_blocks_for(m, 17), 2);
    assert_int_equal(kvb_blocks_for(m, UINT32_MAX), 268435456);
    assert_int_equal(kvb_num_allocatable(m), 10);
    assert_true(kvb_usage(m) == 0.0);

    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    assert_int_equal(kvb_seq_reserve(m, &s, 33), ST_OK); /* 3 blocks */
    uint32_t n;
    const uint32_t *ids = kvb_seq_blocks(&s, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 0); /* fresh blocks are handed out in id order */
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 2);
    assert_true(kvb_usage(m) == 0.3);
    assert_int_equal(kvb_seq_reserve(m, &s, 40), ST_OK); /* still 3 blocks: no-op */
    assert_int_equal(kvb_seq_reserve(m, &s, 10), ST_OK); /* shrinking never frees */
    kvb_seq_blocks(&s, &n);
    assert_int_equal(n, 3);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.used_blocks, 3);
    assert_int_equal(st.free_blocks, 7);
    assert_int_equal(kvb_num_allocatable(m), 7);
    kvb_seq_release(m, &s);
    kvb_seq_blocks(&s, &n);
    assert_int_equal(n, 0);
    assert_true(kvb_usage(m) == 0.0);
    kvb_seq_deinit(&s);
    kvb_destroy(m);

    /* block_size 0 means the default 16 */
    kvb_config_t dflt = {.block_size = 0, .num_blocks = 4, .enable_prefix_caching = true};
    m = kvb_create(&dflt, NULL);
    assert_non_null(m);
    assert_int_equal(kvb_block_size(m), 16);
    kvb_destroy(m);
}

static void test_reserve_all_or_nothing(void **state)
{
    kvb_mgr_t *m = mk_mgr(4, B, true, NULL);
    kvb_seq_t a, b;
    kvb_seq_init(&a, NULL, 0);
    kvb_seq_init(&b, NULL, 0);
    assert_int_equal(kvb_seq_reserve(m, &a, 48), ST_OK);
    assert_int_equal(kvb_seq_reserve(m, &b, 32), ST_NOMEM); /* 2 needed, 1 free */
    uint32_t n;
    kvb_seq_blocks(&b, &n);
    assert_int_equal(n, 0);
    assert_int_equal(kvb_num_allocatable(m), 1);
    assert_int_equal(kvb_seq_reserve(m, &b, 16), ST_OK);
    assert_int_equal(kvb_seq_reserve(m, &a, 49), ST_NOMEM); /* growth fails too */
    kvb_seq_blocks(&a, &n);
    assert_int_equal(n, 3);
    assert_true(kvb_usage(m) == 1.0);
    kvb_seq_release(m, &b);
    assert_int_equal(kvb_seq_reserve(m, &a, 49), ST_OK);
    kvb_seq_release(m, &a);
    kvb_seq_deinit(&a);
    kvb_seq_deinit(&b);
    kvb_destroy(m);
}

/* -------------------------------------------------------------- prefixing */

static void test_shared_prefix_refcounts(void **state)
{
    kvb_mgr_t *m = mk_mgr(10, B, true, NULL);
    int32_t ta[50], tb[60];
    fill(ta, 50, 1);
    memcpy(tb, ta, 48 * sizeof(int32_t));
    fill(tb + 48, 12, 5000);

    kvb_seq_t a, b;
    kvb_seq_init(&a, NULL, 0);
    kvb_seq_init(&b, NULL, 0);
    assert_int_equal(prefill(m, &a, ta, 50), 0);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.used_blocks, 4);
    assert_int_equal(st.cached_blocks, 3);
    assert_int_equal(st.stored, 3);

    assert_int_equal(kvb_seq_acquire_prefix(m, &b, tb, 60), 48);
    assert_int_equal(kvb_seq_reserve(m, &b, 60), ST_OK);
    uint32_t na, nb;
    const uint32_t *ia = kvb_seq_blocks(&a, &na);
    const uint32_t *ib = kvb_seq_blocks(&b, &nb);
    assert_int_equal(na, 4);
    assert_int_equal(nb, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ia[i], ib[i]);
    assert_int_not_equal(ia[3], ib[3]);
    st = stats(m);
    assert_int_equal(st.used_blocks, 5);
    kvb_seq_commit(m, &b, tb, 60);
    assert_int_equal(stats(m).stored, 3); /* b's 4th block is not full */

    kvb_seq_release(m, &a); /* shared blocks stay used by b */
    st = stats(m);
    assert_int_equal(st.used_blocks, 4);
    assert_int_equal(st.cached_blocks, 3);
    kvb_seq_release(m, &b);
    st = stats(m);
    assert_int_equal(st.used_blocks, 0);
    assert_int_equal(st.cached_blocks, 3); /* evictable, still cached */
    assert_int_equal(st.free_blocks, 10);
    assert_int_equal(st.queries, 110);
    assert_int_equal(st.hits, 48);
    assert_int_equal(probe(m, ta, 50, NULL), 48);
    kvb_seq_deinit(&a);
    kvb_seq_deinit(&b);
    kvb_destroy(m);
}

static void test_acquire_leaves_one_token(void **state)
{
    kvb_mgr_t *m = mk_mgr(8, B, true, NULL);
    int32_t t[64];
    fill(t, 64, 1);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    prefill(m, &s, t, 48); /* 3 cached blocks */
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);

    assert_int_equal(probe(m, t, 48, NULL), 32); /* fully cached prompt: last block recomputed */
    assert_int_equal(probe(m, t, 49, NULL), 48);
    assert_int_equal(probe(m, t, 33, NULL), 32);
    assert_int_equal(probe(m, t, 32, NULL), 16);
    assert_int_equal(probe(m, t, 17, NULL), 16);
    assert_int_equal(probe(m, t, 16, NULL), 0);
    assert_int_equal(probe(m, t, 1, NULL), 0);
    assert_int_equal(probe(m, t, 0, NULL), 0);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.queries, 48 + 48 + 49 + 33 + 32 + 17 + 16 + 1);
    assert_int_equal(st.hits, 32 + 48 + 32 + 16 + 16);

    /* a different middle block stops the walk at the first miss */
    t[20] = -7;
    assert_int_equal(probe(m, t, 64, NULL), 16);
    kvb_destroy(m);
}

static void test_lru_eviction_order(void **state)
{
    kvb_mgr_t *m = mk_mgr(6, B, true, NULL);
    int32_t x[3][17];
    kvb_seq_t s[3];
    for (int i = 0; i < 3; i++) {
        fill(x[i], 17, 100 * (i + 1));
        kvb_seq_init(&s[i], NULL, 0);
        prefill(m, &s[i], x[i], 17); /* 1 cached + 1 uncached block each */
    }
    /* free in order 0, 1, 2: the cached blocks become evictable in that LRU order */
    for (int i = 0; i < 3; i++)
        kvb_seq_release(m, &s[i]);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.cached_blocks, 3);
    assert_int_equal(st.free_blocks, 6);

    /* 3 uncached free blocks are used before any cached one is evicted */
    kvb_seq_t y, z;
    kvb_seq_init(&y, NULL, 0);
    kvb_seq_init(&z, NULL, 0);
    assert_int_equal(kvb_seq_reserve(m, &y, 48), ST_OK);
    st = stats(m);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.cached_blocks, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(probe(m, x[i], 17, NULL), 16);
    /* the probes above re-touched x0, x1, x2 in that order: the LRU order is unchanged */
    assert_int_equal(kvb_seq_reserve(m, &z, 16), ST_OK); /* evicts x0 */
    st = stats(m);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.cached_blocks, 2);
    assert_int_equal(probe(m, x[0], 17, NULL), 0);
    assert_int_equal(probe(m, x[1], 17, NULL), 16);      /* x1 becomes most recently freed */
    assert_int_equal(kvb_seq_reserve(m, &z, 32), ST_OK); /* evicts x2, the oldest now */
    assert_int_equal(probe(m, x[2], 17, NULL), 0);
    assert_int_equal(probe(m, x[1], 17, NULL), 16);
    assert_int_equal(stats(m).evictions, 2);

    kvb_seq_release(m, &y);
    kvb_seq_release(m, &z);
    for (int i = 0; i < 3; i++)
        kvb_seq_deinit(&s[i]);
    kvb_seq_deinit(&y);
    kvb_seq_deinit(&z);
    kvb_destroy(m);
}

/* A sequence's tail blocks are evicted before its head blocks. */
static void test_release_tail_first(void **state)
{
    kvb_mgr_t *m = mk_mgr(3, B, true, NULL);
    int32_t t[49];
    fill(t, 49, 1);
    kvb_seq_t a, b;
    kvb_seq_init(&a, NULL, 0);
    kvb_seq_init(&b, NULL, 0);
    prefill(m, &a, t, 48);
    kvb_seq_release(m, &a);
    assert_int_equal(kvb_seq_reserve(m, &b, 16), ST_OK); /* evicts block 2 of the chain */
    assert_int_equal(probe(m, t, 49, NULL), 32);
    kvb_seq_release(m, &b);
    kvb_seq_deinit(&a);
    kvb_seq_deinit(&b);
    kvb_destroy(m);
}

static void test_duplicate_commit(void **state)
{
    kvb_mgr_t *m = mk_mgr(10, B, true, NULL);
    int32_t t[49];
    fill(t, 49, 1);
    kvb_seq_t a, b;
    kvb_seq_init(&a, NULL, 0);
    kvb_seq_init(&b, NULL, 0);
    /* both admitted before either computed anything: no hits */
    assert_int_equal(kvb_seq_acquire_prefix(m, &a, t, 32), 0);
    assert_int_equal(kvb_seq_acquire_prefix(m, &b, t, 48), 0);
    assert_int_equal(kvb_seq_reserve(m, &a, 32), ST_OK);
    assert_int_equal(kvb_seq_reserve(m, &b, 48), ST_OK);
    kvb_seq_commit(m, &a, t, 32);
    assert_int_equal(stats(m).stored, 2);
    kvb_seq_commit(m, &b, t, 48); /* blocks 0, 1 duplicate a's; block 2 is new */
    kvb_stats_t st = stats(m);
    assert_int_equal(st.stored, 3);
    assert_int_equal(st.cached_blocks, 3);
    /* the chain advanced through the duplicates: block 2 is found after a's blocks 0, 1 */
    assert_int_equal(probe(m, t, 49, NULL), 48);
    kvb_seq_release(m, &a);
    kvb_seq_release(m, &b);
    st = stats(m);
    assert_int_equal(st.cached_blocks, 3);
    assert_int_equal(st.free_blocks, 10);
    /* b's two uncached duplicates went to the front: the next allocations evict nothing */
    kvb_seq_t c;
    kvb_seq_init(&c, NULL, 0);
    assert_int_equal(kvb_seq_reserve(m, &c, 7 * B), ST_OK);
    assert_int_equal(stats(m).evictions, 0);
    assert_int_equal(probe(m, t, 49, NULL), 48);
    kvb_seq_release(m, &c);
    kvb_seq_deinit(&a);
    kvb_seq_deinit(&b);
    kvb_seq_deinit(&c);
    kvb_destroy(m);
}

static void test_incremental_commit_and_salt(void **state)
{
    kvb_mgr_t *m = mk_mgr(16, B, true, NULL);
    int32_t t[80];
    fill(t, 80, 1);
    kvb_seq_t s;
    kvb_seq_init(&s, "tenant-a", 8);
    assert_int_equal(kvb_seq_acquire_prefix(m, &s, t, 20), 0);
    assert_int_equal(kvb_seq_reserve(m, &s, 20), ST_OK);
    kvb_seq_commit(m, &s, t, 10); /* partial: nothing */
    assert_int_equal(stats(m).stored, 0);
    kvb_seq_commit(m, &s, t, 20);
    assert_int_equal(stats(m).stored, 1);
    /* decode one token at a time up to 80 */
    for (uint32_t n = 21; n <= 80; n++) {
        assert_int_equal(kvb_seq_reserve(m, &s, n), ST_OK);
        kvb_seq_commit(m, &s, t, n);
    }
    assert_int_equal(stats(m).stored, 5);
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);

    assert_int_equal(probe(m, t, 80, "tenant-a"), 64);
    assert_int_equal(probe(m, t, 80, "tenant-b"), 0);
    assert_int_equal(probe(m, t, 80, NULL), 0);
    kvb_destroy(m);
}

static void test_caching_disabled(void **state)
{
    kvb_mgr_t *m = mk_mgr(8, B, false, NULL);
    int32_t t[40];
    fill(t, 40, 1);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    assert_int_equal(prefill(m, &s, t, 40), 0);
    kvb_seq_release(m, &s);
    assert_int_equal(prefill(m, &s, t, 40), 0);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.cached_blocks, 0);
    assert_int_equal(st.stored, 0);
    assert_int_equal(st.queries, 0);
    assert_int_equal(st.hits, 0);
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);
    kvb_destroy(m);
}

static void test_reset_prefix_cache(void **state)
{
    kvb_mgr_t *m = mk_mgr(8, B, true, NULL);
    int32_t t[40];
    fill(t, 40, 1);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    prefill(m, &s, t, 40);
    assert_int_equal(kvb_reset_prefix_cache(m), ST_STATE);
    assert_int_equal(stats(m).cached_blocks, 2);
    kvb_seq_release(m, &s);
    assert_int_equal(probe(m, t, 40, NULL), 32);
    assert_int_equal(kvb_reset_prefix_cache(m), ST_OK);
    kvb_stats_t st = stats(m);
    assert_int_equal(st.cached_blocks, 0);
    assert_int_equal(st.free_blocks, 8);
    assert_int_equal(probe(m, t, 40, NULL), 0);
    /* the cache works again afterwards */
    assert_int_equal(prefill(m, &s, t, 40), 0);
    kvb_seq_release(m, &s);
    assert_int_equal(probe(m, t, 40, NULL), 32);
    kvb_seq_deinit(&s);
    kvb_destroy(m);
}

/* Many inserts and evictions through a small table (16 slots for 4 blocks, so probe runs
 * collide and wrap): steady state keeps exactly the last 3 one-block prompts cached. */
static void test_table_churn(void **state)
{
    enum { N = 400 };
    kvb_mgr_t *m = mk_mgr(4, 1, true, NULL);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    for (int32_t i = 0; i < N; i++) {
        int32_t t[2] = {i, 0};
        assert_int_equal(kvb_seq_acquire_prefix(m, &s, t, 2), 0);
        assert_int_equal(kvb_seq_reserve(m, &s, 2), ST_OK);
        kvb_seq_commit(m, &s, t, 1);
        kvb_seq_release(m, &s);
        /* probing the newest block re-frees it at the tail, where it already is: the LRU
         * order is unchanged; a miss changes nothing */
        int32_t newest[2] = {i, 0};
        assert_int_equal(probe(m, newest, 2, NULL), 1);
        if (i >= 3) {
            int32_t old[2] = {i - 3, 0};
            assert_int_equal(probe(m, old, 2, NULL), 0);
        }
    }
    for (int32_t j = 0; j < N; j++) {
        int32_t t[2] = {j, 0};
        assert_int_equal(probe(m, t, 2, NULL), j >= N - 3 ? 1 : 0);
    }
    kvb_stats_t st = stats(m);
    assert_int_equal(st.stored, N);
    assert_int_equal(st.evictions, N - 3);
    assert_int_equal(st.cached_blocks, 3);
    kvb_seq_deinit(&s);
    kvb_destroy(m);
}

/* Long sequences grow their table geometrically; ids stay distinct. */
static void test_table_growth(void **state)
{
    kvb_mgr_t *m = mk_mgr(1000, 1, true, NULL);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    for (uint32_t n = 1; n <= 1000; n += 37)
        assert_int_equal(kvb_seq_reserve(m, &s, n), ST_OK);
    assert_int_equal(kvb_seq_reserve(m, &s, 1000), ST_OK);
    uint32_t n;
    const uint32_t *ids = kvb_seq_blocks(&s, &n);
    assert_int_equal(n, 1000);
    static bool seen[1000];
    for (uint32_t i = 0; i < n; i++) {
        assert_true(ids[i] < 1000);
        assert_false(seen[ids[i]]);
        seen[ids[i]] = true;
    }
    assert_int_equal(kvb_num_allocatable(m), 0);
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);
    kvb_destroy(m);
}

/* Every allocation failure in create is clean (ASan checks for leaks); table growth failing in
 * reserve is ST_NOMEM with nothing taken, and in acquire reports 0 cached. */
static void test_nomem(void **state)
{
    kvb_config_t c = {.block_size = B, .num_blocks = 8, .enable_prefix_caching = true};
    for (uint64_t i = 1; i <= 4; i++) {
        sy_alloc_fail_after(i);
        kvb_mgr_t *m = kvb_create(&c, NULL);
        sy_alloc_fail_after(0);
        kvb_destroy(m);
    }
    kvb_mgr_t *m = mk_mgr(8, B, true, NULL);
    int32_t t[40];
    fill(t, 40, 1);
    kvb_seq_t s;
    kvb_seq_init(&s, NULL, 0);
    prefill(m, &s, t, 40);
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);

    kvb_seq_init(&s, NULL, 0);
    sy_alloc_fail_after(1);
    assert_int_equal(kvb_seq_reserve(m, &s, 40), ST_NOMEM);
    sy_alloc_fail_after(0);
    assert_int_equal(kvb_num_allocatable(m), 8);
    sy_alloc_fail_after(1);
    assert_int_equal(kvb_seq_acquire_prefix(m, &s, t, 40), 0);
    sy_alloc_fail_after(0);
    uint32_t n;
    kvb_seq_blocks(&s, &n);
    assert_int_equal(n, 0);
    assert_int_equal(stats(m).used_blocks, 0);
    assert_int_equal(kvb_seq_acquire_prefix(m, &s, t, 40), 32); /* works again */
    kvb_seq_release(m, &s);
    kvb_seq_deinit(&s);
    kvb_destroy(m);
}

/* ----------------------------------------------------------------- events */

typedef struct ev_rec {
    char type[32];
    uint64_t hashes[16];
    uint32_t n_hashes;
    bool has_parent;
    uint64_t parent;
    int32_t tokens[256];
    uint32_t n_tokens;
    uint64_t block_size;
} ev_rec_t;

/* Receives whole batches until at least min events were collected (at most cap), checking seq
 * continuity from *seq. Returns the number of events collected. */
static uint32_t collect(void *sub, uint64_t *seq, ev_rec_t *out, uint32_t cap, uint32_t min)
{
    uint32_t got = 0;
    while (got < min) {
        kvt_msg_t m;
        assert_true(kvt_recv(sub, 3000, &m));
        assert_int_equal(m.n_frames, 3);
        assert_true(m.seq == *seq + 1);
        *seq = m.seq;
        msgpack_unpacked u;
        const msgpack_object *evs = &kvt_decode(&u, m.payload, m.len)->via.array.ptr[1];
        for (uint32_t i = 0; i < evs->via.array.size; i++) {
            const msgpack_object *e = &evs->via.array.ptr[i];
            assert_true(got < cap);
            ev_rec_t *r = &out[got++];
            memset(r, 0, sizeof(*r));
            snprintf(r->type, sizeof(r->type), "%s", kvt_event_type(e));
            const msgpack_object *hs = kvt_map_get(e, "block_hashes");
            if (hs) {
                assert_true(hs->via.array.size <= 16);
                r->n_hashes = hs->via.array.size;
                for (uint32_t k = 0; k < r->n_hashes; k++)
                    r->hashes[k] = kvt_hash(&hs->via.array.ptr[k]);
            }
            const msgpack_object *par = kvt_map_get(e, "parent_block_hash");
            if (par && par->type != MSGPACK_OBJECT_NIL) {
                r->has_parent = true;
                r->parent = kvt_hash(par);
            }
            const msgpack_object *tok = kvt_map_get(e, "token_ids");
            if (tok) {
                assert_true(tok->via.array.size <= 256);
                r->n_tokens = tok->via.array.size;
                for (uint32_t k = 0; k < r->n_tokens; k++)
                    r->tokens[k] = (int32_t)tok->via.array.ptr[k].via.i64;
            }
            const msgpack_object *bs = kvt_map_get(e, "block_size");
            if (bs)
                r->block_size = bs->via.u64;
        }
        msgpack_unpacked_destroy(&u);
        kvt_msg_free(&m);
    }
    return got;
}

static void test_events_end_to_end(void **state)
{
    void *ctx = zmq_ctx_new();
    kve_config_t c;
    kve_config_default(&c);
    assert_int_equal(kve_config_parse("{\"enable_kv_cache_events\":true,"
                                      "\"endpoint\":\"tcp://127.0.0.1:*\","
                                      "\"flush_interval_ms\":20}",
                                      &c, NULL),
                     ST_OK);
    int st;
    kve_pub_t *pub = kve_create(&c, &st);
    assert_non_null(pub);
    kve_config_deinit(&c);
    void *sub = kvt_sub(ctx, kve_endpoint(pub), false, "", NULL, 0);
    uint64_t seq = kvt_wait_ready(pub, sub, FLUSH_MS);

    kvb_mgr_t *m = mk_mgr(6, B, true, pub);
    const kvh_digest_t *none = kvb_none_hash(m);
    int32_t t[80];
    fill(t, 80, 1);
    uint64_t chain[5];
    assert_int_equal(kvh_chain_low64(none, B, t, 80, NULL, 0, chain, 5), 5);
    assert_true(chain[0] == 3236607068019569386ULL); /* seed "0": spec vectors */
    assert_true(chain[1] == 2758186210834249151ULL);

    /* prefill 40 tokens: one BlockStored with blocks 0, 1, parent nil, tokens 1..32 */
    kvb_seq_t a;
    kvb_seq_init(&a, NULL, 0);
    prefill(m, &a, t, 40);
    ev_rec_t ev[4];
    assert_int_equal(collect(sub, &seq, ev, 4, 1), 1);
    assert_string_equal(ev[0].type, "BlockStored");
    assert_int_equal(ev[0].n_hashes, 2);
    assert_true(ev[0].hashes[0] == chain[0] && ev[0].hashes[1] == chain[1]);
    assert_false(ev[0].has_parent);
    assert_int_equal(ev[0].n_tokens, 32);
    for (int i = 0; i < 32; i++)
        assert_int_equal(ev[0].tokens[i], t[i]);
    assert_int_equal(ev[0].block_size, B);

    /* decode up to 80 tokens: blocks 2, 3, 4 each stored with parent = the previous block */
    for (uint32_t n = 41; n <= 80; n++) {
        assert_int_equal(kvb_seq_reserve(m, &a, n), ST_OK);
        kvb_seq_commit(m, &a, t, n);
        if (n % B == 0) {
            assert_int_equal(collect(sub, &seq, ev, 4, 1), 1);
            uint32_t k = n / B - 1;
            assert_string_equal(ev[0].type, "BlockStored");
            assert_int_equal(ev[0].n_hashes, 1);
            assert_true(ev[0].hashes[0] == chain[k]);
            assert_true(ev[0].has_parent && ev[0].parent == chain[k - 1]);
            assert_int_equal(ev[0].n_tokens, B);
            assert_int_equal(ev[0].tokens[0], t[k * B]);
        }
    }

    /* release (tail first), then a new 5-block sequence: 1 uncached block, then evictions of
     * blocks 4, 3, 2, 1 in that order, published together as one BlockRemoved */
    kvb_seq_release(m, &a);
    kvb_seq_t b;
    kvb_seq_init(&b, NULL, 0);
    assert_int_equal(kvb_seq_reserve(m, &b, 5 * B), ST_OK);
    assert_int_equal(collect(sub, &seq, ev, 4, 1), 1);
    assert_string_equal(ev[0].type, "BlockRemoved");
    assert_int_equal(ev[0].n_hashes, 4);
    for (int i = 0; i < 4; i++)
        assert_true(ev[0].hashes[i] == chain[4 - i]);
    kvb_seq_release(m, &b);

    /* a salted sequence hashes like kvh_chain_low64 with the salt */
    kvb_seq_t s;
    kvb_seq_init(&s, "salt", 4);
    prefill(m, &s, t, 33);
    uint64_t salted[2];
    kvh_chain_low64(none, B, t, 33, "salt", 4, salted, 2);
    assert_int_equal(collect(sub, &seq, ev, 4, 1), 1);
    assert_string_equal(ev[0].type, "BlockStored");
    assert_int_equal(ev[0].n_hashes, 2);
    assert_true(ev[0].hashes[0] == salted[0] && ev[0].hashes[1] == salted[1]);
    kvb_seq_release(m, &s);

    /* duplicate blocks are not stored again; the new block's parent is the chain hash */
    kvb_seq_t d1, d2;
    int32_t u[49];
    fill(u, 49, 900);
    uint64_t uc[3];
    kvh_chain_low64(none, B, u, 48, NULL, 0, uc, 3);
    kvb_seq_init(&d1, NULL, 0);
    kvb_seq_init(&d2, NULL, 0);
    kvb_seq_acquire_prefix(m, &d1, u, 17);
    kvb_seq_acquire_prefix(m, &d2, u, 49);
    assert_int_equal(kvb_seq_reserve(m, &d1, 17), ST_OK);
    assert_int_equal(kvb_seq_reserve(m, &d2, 48), ST_OK);
    kvb_seq_commit(m, &d1, u, 17);
    kvb_seq_commit(m, &d2, u, 48);
    /* d2's reserve evicted chain block 0 and salted block 1 (LRU), then d1 stored u's block 0,
     * then d2 stored blocks 1, 2 (its block 0 was a duplicate) with parent = u's block 0 */
    uint32_t got = collect(sub, &seq, ev, 4, 3);
    assert_int_equal(got, 3);
    assert_string_equal(ev[0].type, "BlockRemoved");
    assert_int_equal(ev[0].n_hashes, 2);
    assert_true(ev[0].hashes[0] == chain[0] && ev[0].hashes[1] == salted[1]);
    assert_string_equal(ev[1].type, "BlockStored");
    assert_int_equal(ev[1].n_hashes, 1);
    assert_true(ev[1].hashes[0] == uc[0]);
    assert_false(ev[1].has_parent);
    assert_string_equal(ev[2].type, "BlockStored");
    assert_int_equal(ev[2].n_hashes, 2);
    assert_true(ev[2].hashes[0] == uc[1] && ev[2].hashes[1] == uc[2]);
    assert_true(ev[2].has_parent && ev[2].parent == uc[0]);
    assert_int_equal(ev[2].n_tokens, 32);
    assert_int_equal(ev[2].tokens[0], u[16]);
    kvb_seq_release(m, &d1);
    kvb_seq_release(m, &d2);

    /* reset: AllBlocksCleared */
    assert_int_equal(kvb_reset_prefix_cache(m), ST_OK);
    assert_int_equal(collect(sub, &seq, ev, 4, 1), 1);
    assert_string_equal(ev[0].type, "AllBlocksCleared");
    assert_int_equal(kve_events_dropped(pub), 0);

    kvb_seq_deinit(&a);
    kvb_seq_deinit(&b);
    kvb_seq_deinit(&s);
    kvb_seq_deinit(&d1);
    kvb_seq_deinit(&d2);
    kvb_destroy(m);
    kve_destroy(pub);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_math),
        cmocka_unit_test(test_reserve_all_or_nothing),
        cmocka_unit_test(test_shared_prefix_refcounts),
        cmocka_unit_test(test_acquire_leaves_one_token),
        cmocka_unit_test(test_lru_eviction_order),
        cmocka_unit_test(test_release_tail_first),
        cmocka_unit_test(test_duplicate_commit),
        cmocka_unit_test(test_incremental_commit_and_salt),
        cmocka_unit_test(test_caching_disabled),
        cmocka_unit_test(test_reset_prefix_cache),
        cmocka_unit_test(test_table_churn),
        cmocka_unit_test(test_table_growth),
        cmocka_unit_test(test_nomem),
        cmocka_unit_test(test_events_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
