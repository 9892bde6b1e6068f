/*
 * tok_gguf.c - GGUF tokenizers (see tok_gguf.h): SentencePiece-style BPE ("SPM", model "llama")
 * and GPT-2 byte-level BPE ("BPE", model "gpt2"), reproducing llama.cpp's llama-vocab.cpp.
 *
 * Data built at create (all owned by the tok_t, nothing points into the gguf_t):
 *   toks[id]   text (as stored in the file), piece (the bytes decoding appends), key (the bytes
 *              text lookup matches: SPM the text, BPE the text mapped back through GPT-2's
 *              byte-to-unicode table), score, type; the bytes of all three live in one arena.
 *   vocab hash key bytes -> id (open addressing, XXH3); on duplicate keys the first id wins.
 *   merge hash (left bytes, right bytes) -> rank, BPE only, keyed by the raw bytes of both sides
 *              (merges in the file are in the byte-to-unicode alphabet; they are mapped back once
 *              here so encoding works on raw input bytes and never re-encodes text).
 *   specials   control/unknown tokens (matched only with parse_special) and user-defined tokens
 *              (always matched, as llama.cpp does), grouped by first byte, longest first.
 *
 * Encoding: the text is cut at special-token matches (leftmost, then longest; llama.cpp instead
 *   splits by each special in order of decreasing length, which differs only for overlapping
 *   specials); each text run is
 *   SPM: prefixed with a space when add_space_prefix and it starts the text or follows a special
 *        token, spaces escaped to U+2581, split into UTF-8 characters, then adjacent pairs whose
 *        concatenation is a vocabulary token are merged, highest score first (leftmost on ties),
 *        with a 4-ary heap and lazy invalidation; a final piece that is not a token becomes
 *        <0xNN> byte tokens (or <unk> when there is none). The run is first cut between
 *        characters that no token joins, and the segments merge separately (same result,
 *        cache-sized heaps; see "SPM segmentation" below).
 *   BPE: cut into pre-tokens by pretok_split (tokenizer.ggml.pre), then inside each pre-token
 *        bytes are merged by lowest merge rank (leftmost on ties); a final piece that is not a
 *        token falls back to its printable-ASCII single-byte tokens, as llama.cpp does.
 * Decoding: SPM U+2581 -> space, one leading space dropped from a normal piece at the start of a
 *   stream or after a control/user-defined/unknown token (the inverse of the space prefix),
 *   <0xNN> -> the byte; BPE maps the byte-to-unicode alphabet back to bytes. Control and unknown
 *   tokens are omitted when skip_special; unused/undefined tokens decode to nothing.
 *   Tokens whose text llama.cpp treats as end-of-generation (<|endoftext|>, <|im_end|>, ...)
 *   are forced to control type, as llama.cpp does.
 *
 * Allocation: everything at create. Each encode call needs scratch proportional to its input
 * (about 70 bytes per input byte: escaped text, symbols, heap, pre-token spans); inputs up to a
 * few hundred bytes use a stack buffer, longer ones one sy_malloc per call (the tok_t is shared
 * across threads, so it cannot own the scratch). Decoding never allocates beyond the output.
 * Thread-safety: immutable after creation; every function is reentrant.
 */
#include "engine/tok_gguf.h"

#include <math.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "engine/pretok.h"

/* tokenizer.ggml.token_type values (llama.cpp's LLAMA_TOKEN_TYPE_*). */
enum {
    GG_TT_UNDEFINED = 0,
    GG_TT_NORMAL = 1,
    GG_TT_UNKNOWN = 2,
    GG_TT_CONTROL = 3,
    GG_TT_USER = 4,
    GG_TT_UNUSED = 5,
    GG_TT_BYTE = 6,
};

typedef enum gg_model {
    GG_SPM,
    GG_BPE,
} gg_model_t;

/* Merge ranks are compared as floats in the shared heap: exact below 2^24. */
#define GG_MAX_MERGES (1u << 24)
/* Number of GPT-2 byte-to-unicode code points (256 bytes map into [0, 324)). */
#define GG_BYTE_CP_LIMIT 324
/* Inputs whose scratch fits here are encoded without touching the heap. */
#define GG_STACK_SCRATCH 16384

typedef struct gg_token {
    uint32_t text_off, text_len;   /* as stored in the file */
    uint32_t piece_off, piece_len; /* what decoding appends */
    uint32_t key_off, key_len;     /* what text lookup matches; key_len 0 = not looked up */
    float score;
    uint8_t type; /* GG_TT_* */
} gg_token_t;

typedef struct gg_slot {
    uint32_t tag; /* high bits of the hash */
    int32_t idx;  /* token id or merge index; -1 = empty */
} gg_slot_t;

typedef struct gg_merge {
    uint32_t off;      /* into merge_arena: left bytes then right bytes */
    uint32_t len;      /* both sides */
    uint32_t left_len; /* split point */
    int32_t rank;
} gg_merge_t;

/* Special tokens grouped by first byte: ids[first[b] .. first[b+1]) start with byte b, longest
 * first. */
typedef struct gg_splist {
    int32_t *ids;
    uint32_t n;
    uint32_t first[257];
} gg_splist_t;

typedef struct tok_gguf {
    tok_t super;
    gg_model_t model;
    pretok_kind_t pre;
    bool add_eos;
    bool add_space_prefix;
    bool ignore_merges;
    int32_t unk_id;
    int32_t pad_id;
    int32_t n_tokens;
    gg_token_t *toks; /* (n_tokens) */
    char *arena;      /* token texts, pieces and keys */
    gg_slot_t *vslots;
    uint32_t vmask;
    gg_merge_t *merges; /* (n_merges) */
    uint32_t n_merges;
    char *merge_arena;
    gg_slot_t *mslots;
    uint32_t mmask;
    gg_splist_t sp_all;  /* control, unknown and user-defined: with parse_special */
    gg_splist_t sp_user; /* user-defined only: without parse_special */
    uint64_t *pair_keys; /* SPM: character pairs found inside tokens (see spm_run) */
    uint8_t *pair_used;
    uint32_t pmask;
    int32_t byte_tok[256]; /* SPM byte fallback: id of <0xNN> (or of the 1-byte token), or -1 */
} tok_gguf_t;

/* ---- small helpers ---- */

static inline const char *tok_text(const tok_gguf_t *g, int32_t id)
{
    return g->arena + g->toks[id].text_off;
}

static inline uint32_t hash_tag(uint64_t h)
{
    return (uint32_t)(h >> 32);
}

/* Capacity (power of two) of an open-addressing table for n entries at load <= 1/2. */
static uint32_t table_cap(uint32_t n)
{
    uint32_t cap = 16;
    while (cap < 2u * n && cap < (1u << 31))
        cap <<= 1;
    return cap;
}

/* Length of the UTF-8 sequence led by byte c, as llama.cpp counts it (continuation bytes and
 * invalid leads count 1; the caller clamps to the input left). */
static inline size_t utf8_lead_len(unsigned char c)
{
    static const uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[c >> 4];
}

/* GPT-2's bytes_to_unicode inverse: dec[cp] = byte for the 256 code points bytes map to, -1 for
 * every other cp below GG_BYTE_CP_LIMIT. Printable Latin-1 bytes map to themselves, the other
 * 68 bytes to 256.. in increasing order. */
static void bpe_byte_decoder(int16_t dec[GG_BYTE_CP_LIMIT])
{
    for (int i = 0; i < GG_BYTE_CP_LIMIT; i++)
        dec[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = self ? b : 256 + extra++;
        dec[cp] = (int16_t)b;
    }
}

/* Maps s[0..len) (byte-to-unicode text) back to raw bytes appended to out. Returns true when
 * every character was in the alphabet; otherwise characters outside it are copied as they are
 * and false is returned. ST_NOMEM is reported through *rc. */
static bool bpe_unmap(const int16_t dec[GG_BYTE_CP_LIMIT], const char *s, size_t len, sy_buf_t *out,
                      int *rc)
{
    const unsigned char *u = (const unsigned char *)s;
    bool clean = true;
    size_t i = 0;
    while (i < len) {
        uint32_t cp = 0;
        size_t n = sy_utf8_decode(u + i, len - i, &cp);
        if (n && cp < GG_BYTE_CP_LIMIT && dec[cp] >= 0) {
            if (sy_buf_append_char(out, (char)(unsigned char)dec[cp]) != ST_OK)
                *rc = ST_NOMEM;
            i += n;
            continue;
        }
        clean = false;
        if (!n)
            n = 1;
        if (sy_buf_append(out, u + i, n) != ST_OK)
            *rc = ST_NOMEM;
        i += n;
    }
    return clean;
}

/* Parses "<0xNN>" (hex, either case) into *b. */
static bool parse_byte_token(const char *s, size_t len, unsigned char *b)
{
    if (len != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return false;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v * 16 + d;
    }
    *b = (unsigned char)v;
    return true;
}

/* ---- vocabulary and merge lookup ---- */

static int32_t vocab_find(const tok_gguf_t *g, const char *s, size_t len)
{
    if (!len)
        return -1;
    uint64_t h = XXH3_64bits(s, len);
    uint32_t tag = hash_tag(h);
    for (uint32_t i = (uint32_t)h & g->vmask;; i = (i + 1) & g->vmask) {
        const gg_slot_t *sl = &g->vslots[i];
        if (sl->idx < 0)
            return -1;
        const gg_token_t *t = &g->toks[sl->idx];
        if (sl->tag == tag && t->key_len == len && memcmp(g->arena + t->key_off, s, len) == 0)
            return sl->idx;
    }
}

/* Inserts id under its key unless the key is present (the first id wins). */
static void vocab_insert(tok_gguf_t *g, int32_t id)
{
    const gg_token_t *t = &g->toks[id];
    if (!t->key_len)
        return;
    const char *s = g->arena + t->key_off;
    uint64_t h = XXH3_64bits(s, t->key_len);
    uint32_t tag = hash_tag(h);
    for (uint32_t i = (uint32_t)h & g->vmask;; i = (i + 1) & g->vmask) {
        gg_slot_t *sl = &g->vslots[i];
        if (sl->idx < 0) {
            sl->idx = id;
            sl->tag = tag;
            return;
        }
        const gg_token_t *o = &g->toks[sl->idx];
        if (sl->tag == tag && o->key_len == t->key_len &&
            memcmp(g->arena + o->key_off, s, t->key_len) == 0)
            return;
    }
}

/* Rank of merging s[0..left_len) with s[left_len..len), or -1. */
static int32_t merge_rank(const tok_gguf_t *g, const char *s, size_t len, size_t left_len)
{
    if (!g->n_merges)
        return -1;
    uint64_t h = XXH3_64bits_withSeed(s, len, left_len);
    uint32_t tag = hash_tag(h);
    for (uint32_t i = (uint32_t)h & g->mmask;; i = (i + 1) & g->mmask) {
        const gg_slot_t *sl = &g->mslots[i];
        if (sl->idx < 0)
            return -1;
        const gg_merge_t *m = &g->merges[sl->idx];
        if (sl->tag == tag && m->len == len && m->left_len == left_len &&
            memcmp(g->merge_arena + m->off, s, len) == 0)
            return m->rank;
    }
}

/* Inserts merge idx unless the same pair is present (the lowest rank wins, like llama.cpp's
 * emplace). */
static void merge_insert(tok_gguf_t *g, uint32_t idx)
{
    const gg_merge_t *m = &g->merges[idx];
    const char *s = g->merge_arena + m->off;
    uint64_t h = XXH3_64bits_withSeed(s, m->len, m->left_len);
    uint32_t tag = hash_tag(h);
    for (uint32_t i = (uint32_t)h & g->mmask;; i = (i + 1) & g->mmask) {
        gg_slot_t *sl = &g->mslots[i];
        if (sl->idx < 0) {
            sl->idx = (int32_t)idx;
            sl->tag = tag;
            return;
        }
        const gg_merge_t *o = &g->merges[sl->idx];
        if (sl->tag == tag && o->len == m->len && o->left_len == m->left_len &&
            memcmp(g->merge_arena + o->off, s, m->len) == 0)
            return;
    }
}

/* ---- SPM segmentation ----
 * SPM runs have no pre-tokenizer, so one long run would be one long merge with a heap that
 * outgrows the caches. But a merge only ever forms a vocabulary token, so two neighbouring
 * characters that appear next to each other in no token can never end up in one symbol: the
 * run is cut there into segments that merge independently, with exactly the same result
 * (every pair's order in the heap depends only on its score and position). pairs holds every
 * adjacent character pair of every token text, packed as two 32-bit little-endian byte groups
 * (a packing collision only means a missed cut, never a wrong one). */

static inline uint64_t pair_key(const char *a, uint32_t na, const char *b, uint32_t nb)
{
    uint32_t x = 0, y = 0;
    memcpy(&x, a, na);
    memcpy(&y, b, nb);
    return (uint64_t)x << 32 | y;
}

static inline uint32_t pair_slot(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static bool pair_present(const tok_gguf_t *g, const char *a, uint32_t na, const char *b,
                         uint32_t nb)
{
    if (!g->pair_used)
        return true; /* no table: never cut */
    uint64_t key = pair_key(a, na, b, nb);
    for (uint32_t i = pair_slot(key, g->pmask);; i = (i + 1) & g->pmask) {
        if (!g->pair_used[i])
            return false;
        if (g->pair_keys[i] == key)
            return true;
    }
}

static void pair_insert(tok_gguf_t *g, uint64_t key)
{
    for (uint32_t i = pair_slot(key, g->pmask);; i = (i + 1) & g->pmask) {
        if (!g->pair_used[i]) {
            g->pair_used[i] = 1;
            g->pair_keys[i] = key;
            return;
        }
        if (g->pair_keys[i] == key)
            return;
    }
}

/* Calls pair_insert (when insert) or counts every adjacent character pair of every keyed token,
 * splitting texts into characters exactly as spm_run splits input. */
static size_t pairs_walk(tok_gguf_t *g, bool insert)
{
    size_t count = 0;
    for (int32_t id = 0; id < g->n_tokens; id++) {
        const gg_token_t *t = &g->toks[id];
        const char *s = g->arena + t->key_off;
        uint32_t len = t->key_len, off = 0, prev_off = 0, prev_n = 0;
        while (off < len) {
            uint32_t cl = (uint32_t)utf8_lead_len((unsigned char)s[off]);
            if (cl > len - off)
                cl = len - off;
            if (prev_n) {
                if (insert)
                    pair_insert(g, pair_key(s + prev_off, prev_n, s + off, cl));
                count++;
            }
            prev_off = off;
            prev_n = cl;
            off += cl;
        }
    }
    return count;
}

static int build_pairs(tok_gguf_t *g)
{
    size_t n = pairs_walk(g, false);
    if (n >= (1u << 30))
        return ST_OK; /* absurd: go without cuts */
    uint32_t cap = table_cap((uint32_t)n);
    g->pair_keys = sy_malloc((size_t)cap * sizeof *g->pair_keys);
    g->pair_used = sy_calloc(cap, 1);
    if (!g->pair_keys || !g->pair_used)
        return ST_NOMEM;
    g->pmask = cap - 1;
    pairs_walk(g, true);
    return ST_OK;
}

/* ---- special-token matching ---- */

/* Finds the first special token match in text[from..len): sets *at, *id and returns true. At a
 * position the longest candidate wins. */
static bool special_find(const gg_splist_t *sp, const tok_gguf_t *g, const char *text, size_t len,
                         size_t from, size_t *at, int32_t *id)
{
    if (!sp->n)
        return false;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = from; i < len; i++) {
        uint32_t a = sp->first[u[i]], b = sp->first[u[i] + 1];
        for (uint32_t k = a; k < b; k++) {
            const gg_token_t *t = &g->toks[sp->ids[k]];
            if (t->text_len <= len - i &&
                memcmp(g->arena + t->text_off, text + i, t->text_len) == 0) {
                *at = i;
                *id = sp->ids[k];
                return true;
            }
        }
    }
    return false;
}

/* ---- encoding ---- */

typedef struct gg_out {
    int32_t *ids;
    size_t cap;
    size_t n;
} gg_out_t;

static inline int out_push(gg_out_t *o, int32_t id)
{
    if (o->n >= o->cap)
        return ST_LIMIT;
    o->ids[o->n++] = id;
    return ST_OK;
}

typedef struct gg_sym {
    int32_t prev, next;
    uint32_t off; /* into the run being merged */
    uint32_t n;   /* bytes; 0 once merged into its left neighbour */
} gg_sym_t;

typedef struct gg_bigram {
    int32_t left, right;
    float prio;    /* SPM: token score; BPE: -rank. Higher first. */
    uint32_t size; /* bytes of left + right when queued */
} gg_bigram_t;

/* Per-call scratch, carved from one block (see the file comment). */
typedef struct gg_scratch {
    char *esc;            /* SPM: the escaped run (3 * len + 3) */
    gg_sym_t *sym;        /* (len + 1) */
    gg_bigram_t *heap;    /* (3 * (len + 1)) */
    pretok_span_t *spans; /* BPE: (len) */
    size_t heap_cap;
    size_t n_heap;
} gg_scratch_t;

static inline bool bg_before(const gg_bigram_t *a, const gg_bigram_t *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

/* The queue is a 4-ary heap: half the depth of a binary one, and the four children of a node
 * share one cache line, which matters once a long run's heap outgrows the caches. The merge
 * result does not depend on the heap's shape: bg_before is a total order on live pairs. */
#define GG_HEAP_D 4

static void heap_push(gg_scratch_t *sc, gg_bigram_t bg)
{
    SY_ASSERT(sc->n_heap < sc->heap_cap);
    size_t i = sc->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / GG_HEAP_D;
        if (!bg_before(&bg, &sc->heap[p]))
            break;
        sc->heap[i] = sc->heap[p];
        i = p;
    }
    sc->heap[i] = bg;
}

static gg_bigram_t heap_pop(gg_scratch_t *sc)
{
    gg_bigram_t top = sc->heap[0];
    gg_bigram_t last = sc->heap[--sc->n_heap];
    size_t n = sc->n_heap, i = 0;
    for (;;) {
        size_t c = GG_HEAP_D * i + 1;
        if (c >= n)
            break;
        size_t end = c + GG_HEAP_D < n ? c + GG_HEAP_D : n;
        size_t best = c;
        for (size_t k = c + 1; k < end; k++) {
            if (bg_before(&sc->heap[k], &sc->heap[best]))
                best = k;
        }
        if (!bg_before(&sc->heap[best], &last))
            break;
        sc->heap[i] = sc->heap[best];
        i = best;
    }
    if (n)
        sc->heap[i] = last;
    return top;
}

/* Queues the pair (l, r) of symbols over run s when it may merge. */
static void try_bigram(const tok_gguf_t *g, gg_scratch_t *sc, const char *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const gg_sym_t *a = &sc->sym[l], *b = &sc->sym[r];
    size_t size = (size_t)a->n + b->n;
    float prio;
    if (g->model == GG_SPM) {
        int32_t id = vocab_find(g, s + a->off, size);
        if (id < 0)
            return;
        prio = g->toks[id].score;
    } else {
        int32_t rank = merge_rank(g, s + a->off, size, a->n);
        if (rank < 0)
            return;
        prio = -(float)rank;
    }
    gg_bigram_t bg = {.left = l, .right = r, .prio = prio, .size = (uint32_t)size};
    heap_push(sc, bg);
}

/* Merges the linked symbols sc->sym[first..end) over run s until no queued pair applies. */
static void merge_run(const tok_gguf_t *g, gg_scratch_t *sc, const char *s, int32_t first,
                      int32_t end)
{
    sc->n_heap = 0;
    for (int32_t i = first + 1; i < end; i++)
        try_bigram(g, sc, s, i - 1, i);
    while (sc->n_heap) {
        gg_bigram_t bg = heap_pop(sc);
        gg_sym_t *l = &sc->sym[bg.left], *r = &sc->sym[bg.right];
        /* stale: one side was merged away or grew since the pair was queued */
        if (!l->n || !r->n || (size_t)l->n + r->n != bg.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sc->sym[r->next].prev = bg.left;
        try_bigram(g, sc, s, l->prev, bg.left);
        try_bigram(g, sc, s, bg.left, l->next);
    }
}

/* Emits the byte-fallback tokens for bytes s[0..n) of an SPM piece that is not a token. */
static int spm_bytes(const tok_gguf_t *g, const char *s, size_t n, gg_out_t *o)
{
    for (size_t k = 0; k < n; k++) {
        int32_t id = g->byte_tok[(unsigned char)s[k]];
        if (id < 0)
            id = g->unk_id;
        if (id < 0)
            continue;
        int rc = out_push(o, id);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* SPM: encodes one text run (no specials inside). */
static int spm_run(const tok_gguf_t *g, gg_scratch_t *sc, const char *s, size_t len, bool prefix,
                   gg_out_t *o)
{
    char *e = sc->esc;
    size_t m = 0;
    if (prefix) {
        memcpy(e, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(e + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            e[m++] = s[i];
        }
    }
    /* one symbol per UTF-8 character, cut into independent segments wherever no token spans
     * the boundary between two neighbours (their linked lists end there) */
    int32_t n = 0;
    for (size_t off = 0; off < m;) {
        size_t cl = utf8_lead_len((unsigned char)e[off]);
        if (cl > m - off)
            cl = m - off;
        gg_sym_t *y = &sc->sym[n];
        y->off = (uint32_t)off;
        y->n = (uint32_t)cl;
        y->next = -1;
        y->prev = -1;
        if (n > 0) {
            gg_sym_t *p = &sc->sym[n - 1];
            if (pair_present(g, e + p->off, p->n, e + off, (uint32_t)cl)) {
                y->prev = n - 1;
                p->next = n;
            }
        }
        off += cl;
        n++;
    }
    for (int32_t first = 0; first < n;) {
        int32_t end = first + 1;
        while (end < n && sc->sym[end].prev >= 0)
            end++;
        merge_run(g, sc, e, first, end);
        for (int32_t i = first; i != -1; i = sc->sym[i].next) {
            const gg_sym_t *y = &sc->sym[i];
            int32_t id = vocab_find(g, e + y->off, y->n);
            int rc = id >= 0 ? out_push(o, id) : spm_bytes(g, e + y->off, y->n, o);
            if (rc != ST_OK)
                return rc;
        }
        first = end;
    }
    return ST_OK;
}

/* BPE: merges and emits one pre-token w[0..len). */
static int bpe_word(const tok_gguf_t *g, gg_scratch_t *sc, const char *w, size_t len, gg_out_t *o)
{
    if (g->ignore_merges) {
        int32_t id = vocab_find(g, w, len);
        if (id >= 0)
            return out_push(o, id);
    }
    /* one symbol per byte: each byte is one character of the byte-to-unicode alphabet */
    int32_t n = (int32_t)len;
    for (int32_t i = 0; i < n; i++) {
        gg_sym_t *y = &sc->sym[i];
        y->prev = i - 1;
        y->next = i + 1 == n ? -1 : i + 1;
        y->off = (uint32_t)i;
        y->n = 1;
    }
    merge_run(g, sc, w, 0, n);
    for (int32_t i = 0; i != -1; i = sc->sym[i].next) {
        const gg_sym_t *y = &sc->sym[i];
        int32_t id = vocab_find(g, w + y->off, y->n);
        if (id >= 0) {
            int rc = out_push(o, id);
            if (rc != ST_OK)
                return rc;
            continue;
        }
        /* llama.cpp looks up each byte of the mapped text alone: only printable ASCII maps to a
         * one-byte character, the rest find nothing and are dropped */
        for (uint32_t k = 0; k < y->n; k++) {
            unsigned char c = (unsigned char)w[y->off + k];
            if (c < 0x21 || c > 0x7E)
                continue;
            int32_t bid = vocab_find(g, (const char *)&c, 1);
            if (bid < 0)
                continue;
            int rc = out_push(o, bid);
            if (rc != ST_OK)
                return rc;
        }
    }
    return ST_OK;
}

static int bpe_run(const tok_gguf_t *g, gg_scratch_t *sc, const char *s, size_t len, gg_out_t *o)
{
    size_t n_spans = 0;
    int rc = pretok_split(g->pre, s, len, sc->spans, len, &n_spans);
    if (rc != ST_OK)
        return rc;
    for (size_t k = 0; k < n_spans; k++) {
        const pretok_span_t *sp = &sc->spans[k];
        if (!sp->len)
            continue;
        rc = bpe_word(g, sc, s + sp->off, sp->len, o);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

/* Bytes of scratch for an input of len bytes, or 0 when it would overflow. */
static size_t scratch_size(const tok_gguf_t *g, size_t len)
{
    if (len >= (size_t)INT32_MAX / 4)
        return 0;
    size_t n = len + 1;
    size_t esc = g->model == GG_SPM ? ((3 * len + 3 + 15) & ~(size_t)15) : 0;
    size_t spans = g->model == GG_BPE ? len * sizeof(pretok_span_t) : 0;
    return esc + n * sizeof(gg_sym_t) + 3 * n * sizeof(gg_bigram_t) + spans;
}

static void scratch_carve(const tok_gguf_t *g, gg_scratch_t *sc, char *mem, size_t len)
{
    size_t n = len + 1;
    size_t esc = g->model == GG_SPM ? ((3 * len + 3 + 15) & ~(size_t)15) : 0;
    sc->esc = mem;
    sc->sym = (gg_sym_t *)(void *)(mem + esc);
    sc->heap = (gg_bigram_t *)(void *)(mem + esc + n * sizeof(gg_sym_t));
    sc->heap_cap = 3 * n;
    sc->spans =
        (pretok_span_t *)(void *)(mem + esc + n * sizeof(gg_sym_t) + 3 * n * sizeof(gg_bigram_t));
    sc->n_heap = 0;
}

static int gg_encode(const tok_t *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t *out, size_t cap, size_t *n_out)
{
    const tok_gguf_t *g = (const tok_gguf_t *)t;
    gg_out_t o = {.ids = out, .cap = cap, .n = 0};
    int rc = ST_OK;
    char *heap_mem = NULL;
    alignas(16) char stack_mem[GG_STACK_SCRATCH];

    if (add_special && t->add_bos && (rc = out_push(&o, t->bos_id)) != ST_OK)
        goto done;

    size_t need = scratch_size(g, len);
    if (!need) {
        rc = ST_LIMIT;
        goto done;
    }
    char *mem = stack_mem;
    if (need > sizeof stack_mem) {
        heap_mem = sy_malloc(need);
        if (!heap_mem) {
            rc = ST_NOMEM;
            goto done;
        }
        mem = heap_mem;
    }
    gg_scratch_t sc;
    scratch_carve(g, &sc, mem, len);

    const gg_splist_t *sp = parse_special ? &g->sp_all : &g->sp_user;
    bool prev_special = true; /* the SPM space prefix goes at the start and after specials */
    size_t pos = 0;
    while (pos < len) {
        size_t at = len;
        int32_t sid = -1;
        if (!special_find(sp, g, text, len, pos, &at, &sid))
            at = len;
        if (at > pos) {
            if (g->model == GG_SPM)
                rc = spm_run(g, &sc, text + pos, at - pos, g->add_space_prefix && prev_special, &o);
            else
                rc = bpe_run(g, &sc, text + pos, at - pos, &o);
            if (rc != ST_OK)
                goto done;
            prev_special = false;
        }
        if (sid < 0)
            break;
        if ((rc = out_push(&o, sid)) != ST_OK)
            goto done;
        prev_special = true;
        pos = at + g->toks[sid].text_len;
    }

    if (add_special && g->add_eos)
        rc = out_push(&o, t->eos_id);
done:
    sy_free(heap_mem);
    if (rc == ST_OK)
        *n_out = o.n;
    return rc;
}

/* ---- decoding ---- */

static inline bool type_is_special(uint8_t type)
{
    return type == GG_TT_CONTROL || type == GG_TT_UNKNOWN;
}

static int gg_append_piece(const tok_t *t, int32_t prev_id, int32_t id, bool skip_special,
                           sy_buf_t *out)
{
    const tok_gguf_t *g = (const tok_gguf_t *)t;
    if (id < 0 || id >= g->n_tokens)
        return ST_INVAL;
    const gg_token_t *tk = &g->toks[id];
    const char *p = g->arena + tk->piece_off;
    size_t n = tk->piece_len;
    switch (tk->type) {
    case GG_TT_CONTROL:
    case GG_TT_UNKNOWN:
        if (skip_special)
            return ST_OK;
        break;
    case GG_TT_USER:
    case GG_TT_BYTE:
        break;
    case GG_TT_NORMAL:
        if (g->model == GG_SPM && g->add_space_prefix && n && p[0] == ' ') {
            /* the inverse of the space prefix: the first piece of a stream, or the first after
             * a special token, loses one leading space */
            bool after_special = prev_id < 0 || prev_id >= g->n_tokens;
            if (!after_special) {
                uint8_t pt = g->toks[prev_id].type;
                after_special = pt == GG_TT_CONTROL || pt == GG_TT_UNKNOWN || pt == GG_TT_USER;
            }
            if (after_special) {
                p++;
                n--;
            }
        }
        break;
    default:
        return ST_OK; /* unused and undefined tokens decode to nothing */
    }
    if (!n)
        return ST_OK;
    return sy_buf_append(out, p, n);
}

static int gg_token_str(const tok_t *t, int32_t id, sy_buf_t *out)
{
    const tok_gguf_t *g = (const tok_gguf_t *)t;
    if (id < 0 || id >= g->n_tokens)
        return ST_INVAL;
    const gg_token_t *tk = &g->toks[id];
    if (!tk->text_len)
        return ST_OK;
    return sy_buf_append(out, tok_text(g, id), tk->text_len);
}

static bool gg_is_special(const tok_t *t, int32_t id)
{
    const tok_gguf_t *g = (const tok_gguf_t *)t;
    if (id < 0 || id >= g->n_tokens)
        return false;
    return type_is_special(g->toks[id].type);
}

static void gg_destroy(tok_t *t)
{
    tok_gguf_t *g = (tok_gguf_t *)t;
    if (!g)
        return;
    sy_free(g->pair_used);
    sy_free(g->pair_keys);
    sy_free(g->sp_user.ids);
    sy_free(g->sp_all.ids);
    sy_free(g->mslots);
    sy_free(g->merge_arena);
    sy_free(g->merges);
    sy_free(g->vslots);
    sy_free(g->arena);
    sy_free(g->toks);
    sy_free(g);
}

static const tok_vtable_t k_gguf_vt = {
    .name = "gguf",
    .encode = gg_encode,
    .append_piece = gg_append_piece,
    .token_str = gg_token_str,
    .is_special = gg_is_special,
    .destroy = gg_destroy,
};

/* ---- creation ---- */

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"

/* Token texts llama.cpp treats as end-of-generation and forces to control type. */
static const char *const k_eog_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<end_of_utterance>",
    ("<\xEF\xBD\x9C" /* split so that \x9C does not swallow "end" */
     "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"),
};

static bool is_numeric_vtype(gguf_vtype_t t)
{
    return t == GGUF_VT_UINT8 || t == GGUF_VT_INT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_INT16 ||
           t == GGUF_VT_UINT32 || t == GGUF_VT_INT32 || t == GGUF_VT_UINT64 || t == GGUF_VT_INT64;
}

/* Reads an optional token id key into *id when present and inside the vocabulary. */
static void read_id(const gguf_t *f, const char *key, int32_t n_tokens, int32_t *id)
{
    if (*id >= n_tokens)
        *id = -1; /* a default outside the vocabulary is disabled */
    uint32_t v;
    if (gguf_get_u32(f, key, &v) && v < (uint32_t)n_tokens)
        *id = (int32_t)v;
}

/* Appends s to the arena, returning its offset in *off. */
static int arena_put(sy_buf_t *a, const void *s, size_t len, uint32_t *off)
{
    if (a->len + len > UINT32_MAX)
        return ST_LIMIT;
    *off = (uint32_t)a->len;
    return sy_buf_append(a, s, len);
}

/* Fills toks[] (texts, pieces, keys, scores, types) and the arena. */
static int load_tokens(tok_gguf_t *g, const gguf_t *f, sy_buf_t *arena, char *err, size_t errlen)
{
    int16_t dec[GG_BYTE_CP_LIMIT];
    bpe_byte_decoder(dec);
    gguf_vtype_t st = GGUF_VT_FLOAT32, tt = GGUF_VT_INT32;
    uint64_t n_scores = 0, n_types = 0;
    bool have_scores = gguf_get_arr(f, KEY_SCORES, &st, &n_scores);
    bool have_types = gguf_get_arr(f, KEY_TYPES, &tt, &n_types);
    if (have_scores &&
        (n_scores < (uint64_t)g->n_tokens || (st != GGUF_VT_FLOAT32 && st != GGUF_VT_INT32))) {
        sy_errf(err, errlen, "%s: %llu entries of type %d for %d tokens", KEY_SCORES,
                (unsigned long long)n_scores, (int)st, g->n_tokens);
        return ST_PROTO;
    }
    if (have_types && (n_types < (uint64_t)g->n_tokens || !is_numeric_vtype(tt))) {
        sy_errf(err, errlen, "%s: %llu entries of type %d for %d tokens", KEY_TYPES,
                (unsigned long long)n_types, (int)tt, g->n_tokens);
        return ST_PROTO;
    }
    sy_buf_t tmp = SY_BUF_INIT;
    int rc = ST_OK;
    for (int32_t i = 0; i < g->n_tokens; i++) {
        gg_token_t *tk = &g->toks[i];
        sy_slice_t s;
        if (!gguf_arr_str(f, KEY_TOKENS, (uint64_t)i, &s)) {
            sy_errf(err, errlen, "%s: cannot read token %d", KEY_TOKENS, i);
            rc = ST_PROTO;
            goto out;
        }
        if ((rc = arena_put(arena, s.ptr, s.len, &tk->text_off)) != ST_OK)
            goto out;
        tk->text_len = (uint32_t)s.len;
        tk->score = 0.0f;
        if (have_scores) {
            float v = 0.0f;
            int64_t iv = 0;
            if (st == GGUF_VT_FLOAT32 ? gguf_arr_f32(f, KEY_SCORES, (uint64_t)i, &v)
                                      : gguf_arr_i64(f, KEY_SCORES, (uint64_t)i, &iv)) {
                tk->score = st == GGUF_VT_FLOAT32 ? v : (float)iv;
            }
            if (isnan(tk->score))
                tk->score = -INFINITY;
        }
        tk->type = GG_TT_NORMAL;
        if (have_types) {
            int64_t v = GG_TT_NORMAL;
            if (!gguf_arr_i64(f, KEY_TYPES, (uint64_t)i, &v) || v < 0 || v > GG_TT_BYTE)
                v = GG_TT_UNDEFINED;
            tk->type = (uint8_t)v;
        }
        if (tk->type != GG_TT_CONTROL) {
            for (size_t k = 0; k < sizeof k_eog_texts / sizeof k_eog_texts[0]; k++) {
                if (s.len == strlen(k_eog_texts[k]) && memcmp(s.ptr, k_eog_texts[k], s.len) == 0)
                    tk->type = GG_TT_CONTROL;
            }
        }
    }
    /* pieces and keys (a second pass: the arena may have moved while it grew) */
    for (int32_t i = 0; i < g->n_tokens; i++) {
        gg_token_t *tk = &g->toks[i];
        sy_buf_reset(&tmp);
        const char *text = arena->data + tk->text_off;
        unsigned char byte;
        tk->piece_off = tk->key_off = tk->text_off;
        tk->piece_len = tk->key_len = tk->text_len;
        if (tk->type == GG_TT_BYTE && parse_byte_token(text, tk->text_len, &byte)) {
            if ((rc = arena_put(arena, &byte, 1, &tk->piece_off)) != ST_OK)
                goto out;
            tk->piece_len = 1;
        } else if (g->model == GG_SPM && tk->type == GG_TT_NORMAL) {
            /* U+2581 -> space */
            for (uint32_t k = 0; k < tk->text_len;) {
                if (k + 3 <= tk->text_len && memcmp(text + k, "\xE2\x96\x81", 3) == 0) {
                    rc = sy_buf_append_char(&tmp, ' ');
                    k += 3;
                } else {
                    rc = sy_buf_append_char(&tmp, text[k]);
                    k++;
                }
                if (rc != ST_OK)
                    goto out;
            }
            if ((rc = arena_put(arena, tmp.data, tmp.len, &tk->piece_off)) != ST_OK)
                goto out;
            tk->piece_len = (uint32_t)tmp.len;
        }
        if (g->model == GG_BPE) {
            /* key: the text mapped back to bytes, when it is all in the alphabet */
            sy_buf_reset(&tmp);
            text = arena->data + tk->text_off;
            bool clean = bpe_unmap(dec, text, tk->text_len, &tmp, &rc);
            if (rc != ST_OK)
                goto out;
            if (clean && tmp.len) {
                if ((rc = arena_put(arena, tmp.data, tmp.len, &tk->key_off)) != ST_OK)
                    goto out;
                tk->key_len = (uint32_t)tmp.len;
            } else {
                tk->key_len = 0;
            }
            if (tk->type == GG_TT_NORMAL) {
                /* piece: the same mapping, keeping characters outside the alphabet as they are */
                if (clean) {
                    tk->piece_off = tk->key_off;
                    tk->piece_len = tk->key_len;
                } else {
                    sy_buf_reset(&tmp);
                    bpe_unmap(dec, arena->data + tk->text_off, tk->text_len, &tmp, &rc);
                    if (rc != ST_OK ||
                        (rc = arena_put(arena, tmp.data, tmp.len, &tk->piece_off)) != ST_OK)
                        goto out;
                    tk->piece_len = (uint32_t)tmp.len;
                }
            }
        }
    }
out:
    sy_buf_deinit(&tmp);
    if (rc == ST_NOMEM || rc == ST_LIMIT)
        sy_errf(err, errlen, "tokenizer: %s while copying %d tokens",
                rc == ST_NOMEM ? "out of memory" : "vocabulary text over 4 GiB", g->n_tokens);
    return rc;
}

static int build_vocab_hash(tok_gguf_t *g)
{
    uint32_t cap = table_cap((uint32_t)g->n_tokens);
    g->vslots = sy_malloc((size_t)cap * sizeof *g->vslots);
    if (!g->vslots)
        return ST_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        g->vslots[i].idx = -1;
    g->vmask = cap - 1;
    for (int32_t i = 0; i < g->n_tokens; i++)
        vocab_insert(g, i);
    return ST_OK;
}

static int load_merges(tok_gguf_t *g, const gguf_t *f, char *err, size_t errlen)
{
    gguf_vtype_t et;
    uint64_t n;
    if (!gguf_get_arr(f, KEY_MERGES, &et, &n) || et != GGUF_VT_STRING) {
        sy_errf(err, errlen, "%s: missing or not an array of strings (required for gpt2)",
                KEY_MERGES);
        return ST_PROTO;
    }
    if (n > GG_MAX_MERGES) {
        sy_errf(err, errlen, "%s: %llu merges (at most %u supported)", KEY_MERGES,
                (unsigned long long)n, GG_MAX_MERGES);
        return ST_PROTO;
    }
    int16_t dec[GG_BYTE_CP_LIMIT];
    bpe_byte_decoder(dec);
    g->merges = sy_calloc(n ? n : 1, sizeof *g->merges);
    if (!g->merges)
        return ST_NOMEM;
    sy_buf_t arena = SY_BUF_INIT;
    int rc = ST_OK;
    uint32_t kept = 0;
    for (uint64_t i = 0; i < n; i++) {
        sy_slice_t s;
        if (!gguf_arr_str(f, KEY_MERGES, i, &s)) {
            sy_errf(err, errlen, "%s: cannot read merge %llu", KEY_MERGES, (unsigned long long)i);
            rc = ST_PROTO;
            goto out;
        }
        /* "left right", split at the first space after the first byte */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp)
            continue;
        size_t ll = (size_t)(sp - s.ptr);
        if (arena.len > UINT32_MAX - s.len) {
            rc = ST_LIMIT;
            goto out;
        }
        size_t start = arena.len;
        bool clean = bpe_unmap(dec, s.ptr, ll, &arena, &rc);
        size_t left_len = arena.len - start;
        clean = bpe_unmap(dec, sp + 1, s.len - ll - 1, &arena, &rc) && clean;
        if (rc != ST_OK)
            goto out;
        if (!clean || left_len == 0 || arena.len - start == left_len) {
            /* a side outside the byte alphabet can never match encoded text */
            arena.len = start;
            continue;
        }
        gg_merge_t *m = &g->merges[kept++];
        m->off = (uint32_t)start;
        m->len = (uint32_t)(arena.len - start);
        m->left_len = (uint32_t)left_len;
        m->rank = (int32_t)i;
    }
    g->n_merges = kept;
    g->merge_arena = arena.data;
    arena.data = NULL;
    uint32_t cap = table_cap(kept);
    g->mslots = sy_malloc((size_t)cap * sizeof *g->mslots);
    if (!g->mslots) {
        rc = ST_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < cap; i++)
        g->mslots[i].idx = -1;
    g->mmask = cap - 1;
    for (uint32_t i = 0; i < kept; i++)
        merge_insert(g, i);
out:
    sy_buf_deinit(&arena);
    if (rc == ST_NOMEM || rc == ST_LIMIT)
        sy_errf(err, errlen, "%s: %s", KEY_MERGES,
                rc == ST_NOMEM ? "out of memory" : "merge text over 4 GiB");
    return rc;
}

/* Orders packed special-list sort keys (see build_list). */
static int u64_cmp(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : (a > b);
}

static int build_list(tok_gguf_t *g, gg_splist_t *sp, bool user_only)
{
    uint32_t n = 0;
    for (int32_t i = 0; i < g->n_tokens; i++) {
        uint8_t t = g->toks[i].type;
        bool want = t == GG_TT_USER || (!user_only && (t == GG_TT_CONTROL || t == GG_TT_UNKNOWN));
        if (want && g->toks[i].text_len)
            n++;
    }
    sp->n = n;
    memset(sp->first, 0, sizeof sp->first);
    if (!n)
        return ST_OK;
    sp->ids = sy_malloc((size_t)n * sizeof *sp->ids);
    uint64_t *keys = sy_malloc((size_t)n * sizeof *keys);
    if (!sp->ids || !keys) {
        sy_free(keys);
        return ST_NOMEM;
    }
    /* sort by first byte ascending, then length descending (clamped to 24 bits, which only
     * matters for absurdly long specials), then id: packed into one integer key */
    uint32_t k = 0;
    for (int32_t i = 0; i < g->n_tokens; i++) {
        uint8_t t = g->toks[i].type;
        bool want = t == GG_TT_USER || (!user_only && (t == GG_TT_CONTROL || t == GG_TT_UNKNOWN));
        if (!want || !g->toks[i].text_len)
            continue;
        uint64_t first = (unsigned char)tok_text(g, i)[0];
        uint64_t len = g->toks[i].text_len < 0xFFFFFFu ? g->toks[i].text_len : 0xFFFFFFu;
        keys[k++] = first << 55 | (0xFFFFFFu - len) << 31 | (uint64_t)i;
    }
    qsort(keys, n, sizeof *keys, u64_cmp);
    for (uint32_t j = 0; j < n; j++)
        sp->ids[j] = (int32_t)(keys[j] & 0x7FFFFFFFu);
    sy_free(keys);
    /* first[b] = index of the first id whose text starts with a byte >= b */
    uint32_t j = 0;
    for (unsigned b = 0; b < 256; b++) {
        while (j < n && (unsigned char)tok_text(g, sp->ids[j])[0] < b)
            j++;
        sp->first[b] = j;
    }
    sp->first[256] = n;
    return ST_OK;
}

tok_t *tok_gguf_create(const gguf_t *f, char *err, size_t errlen)
{
    tok_gguf_t *g = NULL;
    sy_buf_t arena = SY_BUF_INIT;
    int rc;
    if (err && errlen)
        err[0] = '\0';

    sy_slice_t model;
    if (!gguf_get_str(f, KEY_MODEL, &model)) {
        sy_errf(err, errlen, "%s: missing or not a string", KEY_MODEL);
        goto fail;
    }
    gg_model_t kind;
    if (sy_slice_eq(model, "llama")) {
        kind = GG_SPM;
    } else if (sy_slice_eq(model, "gpt2")) {
        kind = GG_BPE;
    } else {
        sy_errf(err, errlen, "%s: unsupported tokenizer model '%.*s' (supported: llama, gpt2)",
                KEY_MODEL, (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }
    gguf_vtype_t et;
    uint64_t n_tokens;
    if (!gguf_get_arr(f, KEY_TOKENS, &et, &n_tokens) || et != GGUF_VT_STRING) {
        sy_errf(err, errlen, "%s: missing or not an array of strings", KEY_TOKENS);
        goto fail;
    }
    if (n_tokens == 0 || n_tokens >= (uint64_t)INT32_MAX / 2) {
        sy_errf(err, errlen, "%s: %llu tokens (need 1 .. %d)", KEY_TOKENS,
                (unsigned long long)n_tokens, INT32_MAX / 2 - 1);
        goto fail;
    }

    g = sy_calloc(1, sizeof *g);
    if (!g)
        goto nomem;
    g->super.vt = &k_gguf_vt;
    g->model = kind;
    g->n_tokens = (int32_t)n_tokens;
    g->super.vocab_size = g->n_tokens;
    for (int b = 0; b < 256; b++)
        g->byte_tok[b] = -1;

    /* defaults per llama.cpp when keys are absent */
    bool add_bos;
    int32_t bos, eos, unk, pad = -1;
    if (kind == GG_SPM) {
        bos = 1;
        eos = 2;
        unk = 0;
        add_bos = true;
        g->add_space_prefix = true;
        g->pre = PRETOK_DEFAULT;
    } else {
        bos = 11;
        eos = 11;
        unk = -1;
        add_bos = false;
        g->add_space_prefix = false;
        sy_slice_t pre;
        g->pre = PRETOK_DEFAULT;
        if (gguf_get_str(f, KEY_PRE, &pre) &&
            pretok_kind_from_name(pre.ptr, pre.len, &g->pre) != ST_OK) {
            sy_errf(err, errlen, "%s: unsupported pre-tokenizer '%.*s'", KEY_PRE,
                    (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
            goto fail;
        }
        g->ignore_merges = g->pre == PRETOK_LLAMA3 || g->pre == PRETOK_TEKKEN;
        add_bos = g->pre == PRETOK_LLAMA3 || g->pre == PRETOK_TEKKEN || g->pre == PRETOK_CHAMELEON;
    }
    read_id(f, "tokenizer.ggml.bos_token_id", g->n_tokens, &bos);
    read_id(f, "tokenizer.ggml.eos_token_id", g->n_tokens, &eos);
    read_id(f, "tokenizer.ggml.unknown_token_id", g->n_tokens, &unk);
    read_id(f, "tokenizer.ggml.padding_token_id", g->n_tokens, &pad);
    bool b;
    if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b))
        add_bos = b;
    if (gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b))
        g->add_eos = b;
    if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b))
        g->add_space_prefix = b;
    if (add_bos && bos < 0) {
        sy_errf(err, errlen, "tokenizer.ggml.add_bos_token is true, but there is no BOS id");
        goto fail;
    }
    if (g->add_eos && eos < 0) {
        sy_errf(err, errlen, "tokenizer.ggml.add_eos_token is true, but there is no EOS id");
        goto fail;
    }
    g->super.bos_id = bos;
    g->super.eos_id = eos;
    g->super.add_bos = add_bos;
    g->unk_id = unk;
    g->pad_id = pad;

    g->toks = sy_calloc((size_t)n_tokens, sizeof *g->toks);
    if (!g->toks)
        goto nomem;
    rc = load_tokens(g, f, &arena, err, errlen);
    if (rc != ST_OK)
        goto fail;
    g->arena = arena.data;
    arena.data = NULL;
    if (build_vocab_hash(g) != ST_OK)
        goto nomem;
    if (kind == GG_SPM) {
        for (int c = 0; c < 256; c++) {
            char hex[7];
            static const char k_hex[] = "0123456789ABCDEF";
            hex[0] = '<';
            hex[1] = '0';
            hex[2] = 'x';
            hex[3] = k_hex[c >> 4];
            hex[4] = k_hex[c & 15];
            hex[5] = '>';
            hex[6] = '\0';
            int32_t id = vocab_find(g, hex, 6);
            if (id < 0) {
                char one = (char)c;
                id = vocab_find(g, &one, 1);
            }
            g->byte_tok[c] = id;
        }
        if (build_pairs(g) != ST_OK)
            goto nomem;
    } else if ((rc = load_merges(g, f, err, errlen)) != ST_OK) {
        goto fail;
    }
    if (build_list(g, &g->sp_all, false) != ST_OK || build_list(g, &g->sp_user, true) != ST_OK)
        goto nomem;
    return &g->super;

nomem:
    sy_errf(err, errlen, "tokenizer: out of memory");
fail:
    sy_buf_deinit(&arena);
    gg_destroy(g ? &g->super : NULL);
    return NULL;
}
