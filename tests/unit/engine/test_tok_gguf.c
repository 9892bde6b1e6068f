/*
 * test_tok_gguf.c - GGUF tokenizers (tok_gguf.c): llama.cpp's test-tokenizer-0 vectors for every
 * vocabulary in models/vocab/ whose pre-tokenizer is implemented (add_special and parse_special
 * false, as llama.cpp runs them), stories260K's prompt and 200-token reference text, seeded
 * random UTF-8 round trips through tok_decode and tok_stream_*, special/control tokens, BOS/EOS
 * defaults, out-of-range ids, and creation errors on small in-memory GGUF files.
 *
 * The SPM segmentation (independent merges between characters no token joins) is checked
 * against the unsegmented merge on long random texts.
 *
 * Model files come from $SY_MODELS_DIR, default $SY_SOURCE_DIR/../shared/models. A missing file
 * fails the test when $CI is non-empty and skips it otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/status.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/tokenizer.h"

#include "../models_testutil.h"

/* the implementation itself, to reach its statics (the SPM segmentation switch) */
#include "engine/tok_gguf.c"

/* ---- files ---- */

/* Reads a whole file into *buf (NUL-terminated). False when it cannot be read. */
static bool read_file(const char *path, sy_buf_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char tmp[65536];
    size_t n;
    bool ok = true;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (sy_buf_append(buf, tmp, n) != ST_OK) {
            ok = false;
            break;
        }
    }
    if (ferror(f))
        ok = false;
    fclose(f);
    if (ok && !buf->data)
        ok = sy_buf_reserve(buf, 1) == ST_OK;
    return ok;
}

#define MISSING(path) MODELS_TESTUTIL_MISSING(path)

/* Opens rel under the models dir and builds its tokenizer; the gguf is closed before returning,
 * so every test also checks that the tokenizer does not depend on the file. NULL when the file
 * is missing (caller skips); a file that exists but fails is a test failure. */
static tok_t *load(const char *rel, char *path, size_t path_cap)
{
    models_testutil_path(path, path_cap, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fclose(f);
    gguf_t *g = NULL;
    char err[256] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("gguf_open %s: %s (%s)", path, err, st_str(rc));
    tok_t *t = tok_gguf_create(g, err, sizeof err);
    gguf_close(g);
    if (!t)
        fail_msg("tok_gguf_create %s: %s", path, err);
    return t;
}

/* ---- helpers ---- */

static size_t encode(const tok_t *t, const char *s, size_t len, bool add, bool special,
                     int32_t **ids)
{
    size_t cap = TOK_MAX_TOKENS(len) + 8;
    *ids = malloc(cap * sizeof **ids);
    assert_non_null(*ids);
    size_t n = 0;
    int rc = tok_encode(t, s, len, add, special, *ids, cap, &n);
    assert_int_equal(rc, ST_OK);
    return n;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    char line[1024];
    size_t at = 0;
    for (size_t i = 0; i < n && at + 16 < sizeof line; i++)
        at += (size_t)snprintf(line + at, sizeof line - at, " %d", ids[i]);
    line[at] = '\0';
    print_message("    %s:%s\n", label, line);
}

/* Decodes ids through tok_stream_* one id at a time; checks that every emitted chunk is valid
 * UTF-8 and that the whole equals tok_decode's answer, which it returns in *out. */
static void stream_matches_decode(const tok_t *t, const int32_t *ids, size_t n, bool skip_special,
                                  sy_buf_t *out)
{
    sy_buf_t whole = SY_BUF_INIT, chunk = SY_BUF_INIT, streamed = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, n, skip_special, &whole), ST_OK);
    tok_stream_t s;
    tok_stream_init(&s);
    for (size_t i = 0; i < n; i++) {
        sy_buf_reset(&chunk);
        assert_int_equal(tok_stream_push(t, &s, ids[i], skip_special, &chunk), ST_OK);
        assert_true(sy_utf8_valid(chunk.data ? chunk.data : "", chunk.len));
        assert_int_equal(sy_buf_append(&streamed, chunk.data ? chunk.data : "", chunk.len), ST_OK);
    }
    sy_buf_reset(&chunk);
    assert_int_equal(tok_stream_finish(t, &s, &chunk), ST_OK);
    assert_true(sy_utf8_valid(chunk.data ? chunk.data : "", chunk.len));
    assert_int_equal(sy_buf_append(&streamed, chunk.data ? chunk.data : "", chunk.len), ST_OK);
    tok_stream_deinit(&s);
    assert_int_equal(streamed.len, whole.len);
    if (whole.len)
        assert_memory_equal(streamed.data, whole.data, whole.len);
    sy_buf_deinit(&chunk);
    sy_buf_deinit(&streamed);
    sy_buf_reset(out);
    assert_int_equal(sy_buf_append(out, whole.data ? whole.data : "", whole.len), ST_OK);
    sy_buf_deinit(&whole);
}

/* ---- llama.cpp test-tokenizer-0 vectors ---- */

#define VOCAB_SEP "\n__ggml_vocab_test__\n"

/* Runs every vector of vocab/<name>.gguf. required: a vocabulary the issue requires (its
 * pre-tokenizer must be supported); others are skipped when their pre-tokenizer is not. */
static void run_vectors(const char *name, bool required)
{
    char rel[256], path[1024], pinp[1100], pout[1100];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    models_testutil_path(path, sizeof path, rel);
    snprintf(pinp, sizeof pinp, "%s.inp", path);
    snprintf(pout, sizeof pout, "%s.out", path);
    FILE *probe = fopen(path, "rb");
    if (!probe)
        MISSING(path);
    fclose(probe);

    gguf_t *g = NULL;
    char err[256] = "";
    int rc = gguf_open(path, &g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("gguf_open %s: %s", path, err);
    tok_t *t = tok_gguf_create(g, err, sizeof err);
    gguf_close(g);
    if (!t) {
        if (!required && strstr(err, "unsupported pre-tokenizer")) {
            print_message("[ SKIPPED  ] %s: %s\n", name, err);
            skip();
        }
        fail_msg("tok_gguf_create %s: %s", path, err);
    }

    sy_buf_t inp = SY_BUF_INIT, out = SY_BUF_INIT;
    if (!read_file(pinp, &inp))
        MISSING(pinp);
    if (!read_file(pout, &out))
        MISSING(pout);

    size_t n_tests = 0, n_fail = 0, n_rt_fail = 0;
    const char *ip = inp.data, *iend = inp.data + inp.len;
    const char *op = out.data, *oend = out.data + out.len;
    sy_buf_t dec = SY_BUF_INIT;
    while (ip < iend) {
        const char *sep = memmem(ip, (size_t)(iend - ip), VOCAB_SEP, strlen(VOCAB_SEP));
        const char *tend = sep ? sep : iend;
        size_t tlen = (size_t)(tend - ip);
        /* the matching line of .out */
        assert_true(op < oend);
        const char *nl = memchr(op, '\n', (size_t)(oend - op));
        const char *lend = nl ? nl : oend;
        int32_t want[4096];
        size_t n_want = 0;
        for (const char *q = op; q < lend;) {
            while (q < lend && *q == ' ')
                q++;
            if (q >= lend)
                break;
            char *e;
            long v = strtol(q, &e, 10);
            assert_true(e > q && n_want < 4096);
            want[n_want++] = (int32_t)v;
            q = e;
        }
        op = nl ? nl + 1 : oend;

        int32_t *got;
        size_t n_got = encode(t, ip, tlen, false, false, &got);
        bool ok = n_got == n_want && (n_got == 0 || memcmp(got, want, n_got * sizeof *got) == 0);
        if (!ok) {
            n_fail++;
            if (n_fail <= 5) {
                print_message("  %s: vector %zu '%.*s' mismatch\n", name, n_tests,
                              (int)(tlen > 60 ? 60 : tlen), ip);
                print_ids("want", want, n_want);
                print_ids("got ", got, n_got);
            }
        }
        /* decoding the expected ids gives the input back (streamed the same way) */
        stream_matches_decode(t, want, n_want, true, &dec);
        if (dec.len != tlen || (tlen && memcmp(dec.data, ip, tlen) != 0)) {
            n_rt_fail++;
            if (n_rt_fail <= 5)
                print_message("  %s: vector %zu decodes to '%.*s'\n", name, n_tests,
                              (int)(dec.len > 60 ? 60 : dec.len), dec.data ? dec.data : "");
        }
        free(got);
        n_tests++;
        ip = sep ? sep + strlen(VOCAB_SEP) : iend;
    }
    print_message("  %s: %zu vectors, %zu encode mismatches, %zu decode mismatches\n", name,
                  n_tests, n_fail, n_rt_fail);
    assert_true(n_tests >= 40);
    assert_int_equal(n_fail, 0);
    assert_int_equal(n_rt_fail, 0);
    sy_buf_deinit(&dec);
    sy_buf_deinit(&inp);
    sy_buf_deinit(&out);
    tok_destroy(t);
}

static void test_vectors_llama_spm(void **state)
{
    (void)state;
    run_vectors("llama-spm", true);
}

static void test_vectors_phi3(void **state)
{
    (void)state;
    run_vectors("phi-3", true);
}

static void test_vectors_gpt2(void **state)
{
    (void)state;
    run_vectors("gpt-2", true);
}

static void test_vectors_deepseek_llm(void **state)
{
    (void)state;
    run_vectors("deepseek-llm", true);
}

static void test_vectors_deepseek_coder(void **state)
{
    (void)state;
    run_vectors("deepseek-coder", true);
}

static void test_vectors_falcon(void **state)
{
    (void)state;
    run_vectors("falcon", true);
}

static void test_vectors_starcoder(void **state)
{
    (void)state;
    run_vectors("starcoder", true);
}

static void test_vectors_mpt(void **state)
{
    (void)state;
    run_vectors("mpt", false);
}

static void test_vectors_refact(void **state)
{
    (void)state;
    run_vectors("refact", false);
}

/* ---- stories260K ---- */

static void test_stories_prompt_and_text(void **state)
{
    (void)state;
    char path[1024], jpath[1024];
    tok_t *t = load("stories260K.gguf", path, sizeof path);
    if (!t)
        MISSING(path);
    assert_int_equal(tok_vocab_size(t), 512);
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2);

    int32_t *ids;
    size_t n = encode(t, "Once upon a time", 16, true, false, &ids);
    const int32_t want[] = {1, 403, 407, 261, 378};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    /* without add_special there is no BOS, the space prefix stays */
    n = encode(t, "Once upon a time", 16, false, false, &ids);
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want + 1, 4 * sizeof *ids);
    free(ids);

    models_testutil_path(jpath, sizeof jpath, "stories260K.expected.json");
    json_error_t jerr;
    json_t *root = json_load_file(jpath, 0, &jerr);
    if (!root)
        MISSING(jpath);
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_is_array(cases));
    size_t checked = 0;
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        const char *name = json_string_value(json_object_get(cs, "name"));
        json_t *gen = json_object_get(cs, "generated_ids");
        json_t *prompt = json_object_get(cs, "prompt_ids");
        const char *text = json_string_value(json_object_get(cs, "text"));
        if (!name || !json_is_array(gen) || !json_is_array(prompt) || !text)
            continue;
        /* the text of the bos_only case is the decoded generation; other cases include the
         * prompt text: decode prompt (after BOS) + generation */
        size_t np = json_array_size(prompt), ng = json_array_size(gen);
        int32_t *all = malloc((np + ng) * sizeof *all);
        assert_non_null(all);
        for (size_t i = 0; i < np; i++)
            all[i] = (int32_t)json_integer_value(json_array_get(prompt, i));
        for (size_t i = 0; i < ng; i++)
            all[np + i] = (int32_t)json_integer_value(json_array_get(gen, i));
        sy_buf_t dec = SY_BUF_INIT;
        stream_matches_decode(t, all, np + ng, true, &dec);
        size_t tl = strlen(text);
        if (dec.len != tl || memcmp(dec.data, text, tl) != 0)
            fail_msg("%s: decoded '%.80s' != expected '%.80s'", name, dec.data, text);
        /* the bare generation (no BOS before it) decodes the same for the BOS-only case */
        if (np == 1) {
            stream_matches_decode(t, all + 1, ng, true, &dec);
            assert_int_equal(dec.len, tl);
            assert_memory_equal(dec.data, text, tl);
        }
        sy_buf_deinit(&dec);
        free(all);
        checked++;
    }
    assert_true(checked >= 1);
    json_decref(root);
    tok_destroy(t);
}

static void test_stories_specials(void **state)
{
    (void)state;
    char path[1024];
    tok_t *t = load("stories260K.gguf", path, sizeof path);
    if (!t)
        MISSING(path);
    int32_t *ids;
    /* parse_special: "<s>" is BOS, and the text after it gets the space prefix */
    size_t n = encode(t, "<s>Once", 7, false, true, &ids);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 403);
    free(ids);
    /* without parse_special it is plain text */
    n = encode(t, "<s>Once", 7, false, false, &ids);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 1);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, n, true, &out), ST_OK);
    assert_string_equal(out.data, "<s>Once");
    free(ids);
    /* decoding BOS: skipped with skip_special, shown otherwise */
    const int32_t bos_once[] = {1, 403};
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, bos_once, 2, false, &out), ST_OK);
    assert_string_equal(out.data, "<s>Once");
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, bos_once, 2, true, &out), ST_OK);
    assert_string_equal(out.data, "Once");
    assert_true(tok_is_special(t, 1));
    assert_true(tok_is_special(t, 2));
    assert_false(tok_is_special(t, 403));
    /* token strings are the vocabulary text */
    sy_buf_reset(&out);
    assert_int_equal(tok_token_str(t, 403, &out), ST_OK);
    assert_string_equal(out.data, "\xE2\x96\x81Once");
    sy_buf_reset(&out);
    assert_int_equal(tok_token_str(t, 13, &out), ST_OK); /* <0x0A> */
    assert_string_equal(out.data, "<0x0A>");
    /* byte fallback: a character outside the 512-token vocabulary becomes its bytes */
    n = encode(t, "\xE2\x82\xAC", 3, false, false, &ids); /* the euro sign */
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, ids, n, true, &out), ST_OK);
    assert_string_equal(out.data, "\xE2\x82\xAC");
    free(ids);
    /* empty text: nothing, or just BOS */
    n = encode(t, "", 0, false, false, &ids);
    assert_int_equal(n, 0);
    free(ids);
    n = encode(t, "", 0, true, false, &ids);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    sy_buf_deinit(&out);
    tok_destroy(t);
}

static void test_bad_ids(void **state)
{
    (void)state;
    char path[1024];
    tok_t *t = load("stories260K.gguf", path, sizeof path);
    if (!t)
        MISSING(path);
    sy_buf_t out = SY_BUF_INIT;
    const int32_t bad[][2] = {{403, 512}, {403, -1}, {403, INT32_MAX}};
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(tok_decode(t, bad[k], 2, true, &out), ST_INVAL);
        assert_int_equal(out.len, 0);
        tok_stream_t s;
        tok_stream_init(&s);
        assert_int_equal(tok_stream_push(t, &s, bad[k][1], true, &out), ST_INVAL);
        tok_stream_deinit(&s);
        assert_int_equal(tok_token_str(t, bad[k][1], &out), ST_INVAL);
        assert_false(tok_is_special(t, bad[k][1]));
    }
    /* a too small output array is ST_LIMIT, never an overrun */
    int32_t ids[2];
    size_t n = 99;
    assert_int_equal(tok_encode(t, "Once upon a time", 16, true, false, ids, 2, &n), ST_LIMIT);
    sy_buf_deinit(&out);
    tok_destroy(t);
}

static void test_tiny_random_hello(void **state)
{
    (void)state;
    char path[1024];
    tok_t *t = load("llama-2-tiny-random.gguf", path, sizeof path);
    if (!t)
        MISSING(path);
    int32_t *ids;
    size_t n = encode(t, "Hello world", 11, true, false, &ids);
    const int32_t want[] = {1, 15043, 3186};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    tok_destroy(t);
}

/* ---- random round trips ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static size_t put_utf8(char *p, uint32_t cp)
{
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char)(0xC0 | (cp >> 6));
        p[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (char)(0xE0 | (cp >> 12));
        p[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | (cp >> 18));
    p[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    p[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    p[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A random valid UTF-8 string of up to max_cp code points: mostly ASCII words, whitespace and
 * digits, with Latin-1, Cyrillic, CJK, emoji and arbitrary code points mixed in. U+2581 is left
 * out (SentencePiece decodes it as a space by design). Returns its length. */
static size_t random_text(uint64_t *rng, char *buf, size_t max_cp)
{
    static const char k_ascii[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "     \t\n\n.,;:!?'\"()[]{}<>/\\|-_=+*&^%$#@~`";
    size_t ncp = (size_t)(rng_next(rng) % (max_cp + 1)), len = 0;
    for (size_t i = 0; i < ncp; i++) {
        uint64_t r = rng_next(rng) % 100;
        uint32_t cp;
        if (r < 60)
            cp = (uint8_t)k_ascii[rng_next(rng) % (sizeof k_ascii - 1)];
        else if (r < 68)
            cp = 0xA0 + (uint32_t)(rng_next(rng) % 0x60);
        else if (r < 76)
            cp = 0x400 + (uint32_t)(rng_next(rng) % 0x100);
        else if (r < 84)
            cp = 0x4E00 + (uint32_t)(rng_next(rng) % 0x5000);
        else if (r < 90)
            cp = 0x1F300 + (uint32_t)(rng_next(rng) % 0x300);
        else if (r < 93)
            cp = (uint32_t)(rng_next(rng) % 0x20); /* controls, NUL included */
        else
            cp = (uint32_t)(rng_next(rng) % 0x110000);
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581)
            cp = 'x';
        len += put_utf8(buf + len, cp);
    }
    return len;
}

static void round_trips(const char *rel, uint64_t seed, int n_strings)
{
    char path[1024];
    tok_t *t = load(rel, path, sizeof path);
    if (!t)
        MISSING(path);
    uint64_t rng = seed;
    char text[4 * 96 + 1];
    sy_buf_t dec = SY_BUF_INIT;
    for (int k = 0; k < n_strings; k++) {
        size_t len = random_text(&rng, text, 96);
        bool add = k & 1;
        int32_t *ids;
        size_t n = encode(t, text, len, add, false, &ids);
        stream_matches_decode(t, ids, n, true, &dec);
        if (dec.len != len || (len && memcmp(dec.data, text, len) != 0))
            fail_msg("%s: round trip %d (seed %llu) of %zu bytes decodes to %zu bytes", rel, k,
                     (unsigned long long)seed, len, dec.len);
        /* a stream cut anywhere stays valid UTF-8 even for ids that split characters: feed the
         * ids in reverse order too */
        for (size_t i = 0; i < n / 2; i++) {
            int32_t tmp = ids[i];
            ids[i] = ids[n - 1 - i];
            ids[n - 1 - i] = tmp;
        }
        stream_matches_decode(t, ids, n, false, &dec);
        free(ids);
    }
    sy_buf_deinit(&dec);
    tok_destroy(t);
}

static void test_roundtrip_spm(void **state)
{
    (void)state;
    round_trips("vocab/ggml-vocab-llama-spm.gguf", 0x9E3779B97F4A7C15ull, 300);
}

static void test_roundtrip_stories(void **state)
{
    (void)state;
    round_trips("stories260K.gguf", 12345, 300);
}

static void test_roundtrip_bpe(void **state)
{
    (void)state;
    round_trips("vocab/ggml-vocab-gpt-2.gguf", 777, 200);
    round_trips("vocab/ggml-vocab-deepseek-coder.gguf", 778, 200);
}

/* ---- in-memory GGUF files ---- */

/* Builds a GGUF from w and a tokenizer from it; returns NULL with err set on failure. */
static tok_t *from_writer(ggufw_t *w, char *err, size_t errlen)
{
    sy_buf_t mem = SY_BUF_INIT;
    assert_int_equal(ggufw_write_mem(w, &mem, NULL, NULL), ST_OK);
    gguf_t *g = NULL;
    int rc = gguf_open_mem(mem.data, mem.len, &g, err, errlen);
    if (rc != ST_OK)
        fail_msg("gguf_open_mem: %s", err);
    tok_t *t = tok_gguf_create(g, err, errlen);
    gguf_close(g);
    sy_buf_deinit(&mem);
    return t;
}

static void add_tokens(ggufw_t *w, const char *const *toks, const int32_t *types, size_t n)
{
    sy_slice_t sl[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        sl[i].ptr = toks[i];
        sl[i].len = strlen(toks[i]);
    }
    assert_int_equal(ggufw_add_arr_str(w, "tokenizer.ggml.tokens", sl, n), ST_OK);
    if (types)
        assert_int_equal(ggufw_add_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, n),
                         ST_OK);
}

static void test_create_errors(void **state)
{
    (void)state;
    char err[256];
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a"};
    /* unknown model, named in the error */
    ggufw_t *w = ggufw_create();
    assert_non_null(w);
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "wordpiece9", 10), ST_OK);
    add_tokens(w, toks, NULL, 4);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "wordpiece9"));
    ggufw_destroy(w);
    /* no tokens */
    w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "llama", 5), ST_OK);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "tokenizer.ggml.tokens"));
    ggufw_destroy(w);
    /* scores shorter than the vocabulary */
    w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "llama", 5), ST_OK);
    add_tokens(w, toks, NULL, 4);
    float sc[2] = {0, 0};
    assert_int_equal(ggufw_add_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, sc, 2), ST_OK);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "tokenizer.ggml.scores"));
    ggufw_destroy(w);
    /* gpt2 without merges */
    w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "gpt2", 4), ST_OK);
    add_tokens(w, toks, NULL, 4);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "tokenizer.ggml.merges"));
    ggufw_destroy(w);
    /* gpt2 with an unknown pre-tokenizer, named in the error */
    w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "gpt2", 4), ST_OK);
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.pre", "martian-bpe", 11), ST_OK);
    add_tokens(w, toks, NULL, 4);
    sy_slice_t m = {"a a", 3};
    assert_int_equal(ggufw_add_arr_str(w, "tokenizer.ggml.merges", &m, 1), ST_OK);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "martian-bpe"));
    ggufw_destroy(w);
    /* add_eos_token without an EOS id (gpt2's default 11 is outside a 4-token vocabulary) */
    w = ggufw_create();
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "gpt2", 4), ST_OK);
    add_tokens(w, toks, NULL, 4);
    assert_int_equal(ggufw_add_arr_str(w, "tokenizer.ggml.merges", &m, 1), ST_OK);
    assert_int_equal(ggufw_add_bool(w, "tokenizer.ggml.add_eos_token", true), ST_OK);
    assert_null(from_writer(w, err, sizeof err));
    assert_non_null(strstr(err, "add_eos_token"));
    ggufw_destroy(w);
}

/* Odd but well-formed metadata never crashes: empty and duplicate token texts, unknown token
 * types, merges without a separator or outside the byte alphabet, all-control vocabularies. */
static void test_odd_metadata(void **state)
{
    (void)state;
    char err[256];
    static const char *const toks[] = {"", "", "a", "a", "<x>", "\xE2\x96\x81", "b"};
    static const int32_t types[] = {99, -5, 1, 1, 3, 1, 7};
    const char *models[] = {"llama", "gpt2"};
    for (int m = 0; m < 2; m++) {
        ggufw_t *w = ggufw_create();
        assert_non_null(w);
        assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", models[m], strlen(models[m])),
                         ST_OK);
        add_tokens(w, toks, types, 7);
        if (m == 1) {
            static const char *const merges[] = {
                "", " ", "a", "a b c", "\xFF\xFE x", "a a", "\xE2\x96\x81 a", "a a"};
            sy_slice_t ms[8];
            for (int i = 0; i < 8; i++) {
                ms[i].ptr = merges[i];
                ms[i].len = strlen(merges[i]);
            }
            assert_int_equal(ggufw_add_arr_str(w, "tokenizer.ggml.merges", ms, 8), ST_OK);
        }
        tok_t *t = from_writer(w, err, sizeof err);
        ggufw_destroy(w);
        if (!t)
            fail_msg("%s: %s", models[m], err);
        /* SPM: defaults bos 1 / eos 2 are in range; gpt2: 11 is not, so none */
        assert_int_equal(tok_bos(t), m == 0 ? 1 : -1);
        const char *texts[] = {"", "a", "aaa b <x> \xE2\x96\x81 \xFF", "\n\n\t  x"};
        for (size_t k = 0; k < 4; k++) {
            for (int sp = 0; sp < 2; sp++) {
                int32_t *ids;
                size_t n = encode(t, texts[k], strlen(texts[k]), true, sp, &ids);
                sy_buf_t out = SY_BUF_INIT;
                assert_int_equal(tok_decode(t, ids, n, false, &out), ST_OK);
                sy_buf_deinit(&out);
                free(ids);
            }
        }
        sy_buf_t out = SY_BUF_INIT;
        for (int32_t id = 0; id < tok_vocab_size(t); id++) {
            assert_int_equal(tok_decode(t, &id, 1, false, &out), ST_OK);
            assert_int_equal(tok_token_str(t, id, &out), ST_OK);
        }
        sy_buf_deinit(&out);
        tok_destroy(t);
    }
}

/* A small byte-level BPE: merges by rank, a user-defined token matched even without
 * parse_special, a control token matched only with it, add_bos/add_eos from metadata. */
static void test_tiny_bpe(void **state)
{
    (void)state;
    /* byte-to-unicode: ' ' is U+0120 ("\xC4\xA0") */
    static const char *const toks[] = {
        "h",    "e",     "l",         "o",       "\xC4\xA0", "he",  "ll",
        "hell", "hello", "\xC4\xA0h", "<|end|>", "<bos>",    "xyz", "w",
    };
    static const int32_t types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 4, 1};
    ggufw_t *w = ggufw_create();
    assert_non_null(w);
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "gpt2", 4), ST_OK);
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.pre", "gpt-2", 5), ST_OK);
    add_tokens(w, toks, types, 14);
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 h"};
    sy_slice_t ms[5];
    for (int i = 0; i < 5; i++) {
        ms[i].ptr = merges[i];
        ms[i].len = strlen(merges[i]);
    }
    assert_int_equal(ggufw_add_arr_str(w, "tokenizer.ggml.merges", ms, 5), ST_OK);
    assert_int_equal(ggufw_add_u32(w, "tokenizer.ggml.bos_token_id", 11), ST_OK);
    assert_int_equal(ggufw_add_u32(w, "tokenizer.ggml.eos_token_id", 10), ST_OK);
    assert_int_equal(ggufw_add_bool(w, "tokenizer.ggml.add_bos_token", true), ST_OK);
    assert_int_equal(ggufw_add_bool(w, "tokenizer.ggml.add_eos_token", true), ST_OK);
    char err[256];
    tok_t *t = from_writer(w, err, sizeof err);
    ggufw_destroy(w);
    if (!t)
        fail_msg("tiny bpe: %s", err);

    int32_t *ids;
    size_t n = encode(t, "hello hello", 11, false, false, &ids);
    /* pre-tokens "hello" and " hello"; ranks h+e 0, l+l 1, he+ll 2, hell+o 3, Ġ+h 4: in the
     * second one h+e wins over Ġ+h, so it ends as "Ġ" "hello" */
    const int32_t want1[] = {8, 4, 8};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want1, sizeof want1);
    free(ids);
    /* add_special: BOS and EOS from metadata */
    n = encode(t, "hello", 5, true, false, &ids);
    const int32_t want2[] = {11, 8, 10};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want2, sizeof want2);
    free(ids);
    /* user-defined "xyz" always splits; control "<|end|>" only with parse_special */
    n = encode(t, "hexyz<|end|>", 12, false, false, &ids);
    assert_true(n >= 3);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 12);
    for (size_t i = 2; i < n; i++)
        assert_int_not_equal(ids[i], 10);
    free(ids);
    n = encode(t, "hexyz<|end|>", 12, false, true, &ids);
    const int32_t want3[] = {5, 12, 10};
    assert_int_equal(n, 3);
    assert_memory_equal(ids, want3, sizeof want3);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, n, true, &out), ST_OK);
    assert_string_equal(out.data, "hexyz");
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, ids, n, false, &out), ST_OK);
    assert_string_equal(out.data, "hexyz<|end|>");
    free(ids);
    /* "Ġ" decodes to a space; token_str shows the vocabulary text */
    const int32_t sp[] = {4, 8};
    sy_buf_reset(&out);
    assert_int_equal(tok_decode(t, sp, 2, true, &out), ST_OK);
    assert_string_equal(out.data, " hello");
    sy_buf_reset(&out);
    assert_int_equal(tok_token_str(t, 4, &out), ST_OK);
    assert_string_equal(out.data, "\xC4\xA0");
    sy_buf_deinit(&out);
    tok_destroy(t);
}

/* Long random texts encode identically with and without the SPM segment cuts. */
static void test_spm_segmentation_exact(void **state)
{
    (void)state;
    char path[1024];
    tok_t *t = load("vocab/ggml-vocab-llama-spm.gguf", path, sizeof path);
    if (!t)
        MISSING(path);
    tok_gguf_t *g = (tok_gguf_t *)t;
    assert_non_null(g->pair_used);
    uint64_t rng = 4242;
    size_t cap = 4 * 4096 + 1;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int k = 0; k < 12; k++) {
        size_t len = 0;
        /* concatenated random strings, with runs of spaces and literal U+2581 between them */
        while (len + 4 * 97 + 8 < cap) {
            len += random_text(&rng, text + len, 96);
            size_t spaces = (size_t)(rng_next(&rng) % 4);
            for (size_t i = 0; i < spaces; i++)
                text[len++] = ' ';
            if (rng_next(&rng) % 8 == 0) {
                memcpy(text + len, "\xE2\x96\x81", 3);
                len += 3;
            }
        }
        int32_t *cut, *whole;
        size_t n_cut = encode(t, text, len, true, false, &cut);
        uint8_t *used = g->pair_used;
        g->pair_used = NULL; /* pair_present answers true: one segment per run */
        size_t n_whole = encode(t, text, len, true, false, &whole);
        g->pair_used = used;
        assert_int_equal(n_cut, n_whole);
        assert_memory_equal(cut, whole, n_cut * sizeof *cut);
        free(cut);
        free(whole);
    }
    free(text);
    tok_destroy(t);
}

/* A small SPM vocabulary: score-ordered merges, byte fallback and <unk> when a byte has no
 * token, a user-defined token split out without parse_special, the space prefix after it and
 * its inverse on decoding, add_space_prefix = false from metadata. */
static ggufw_t *tiny_spm(bool space_prefix)
{
    static const char *const toks[] = {
        "<unk>",
        "<s>",
        "</s>",
        "\xE2\x96\x81",
        "a",
        "b",
        "\xE2\x96\x81"
        "a",
        "ab",
        "\xE2\x96\x81"
        "ab",
        "<0x63>",
        "[U]",
    };
    static const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 4};
    static const float scores[] = {0, 0, 0, -5, -6, -7, -2, -3, -1, 0, 0};
    ggufw_t *w = ggufw_create();
    assert_non_null(w);
    assert_int_equal(ggufw_add_str(w, "tokenizer.ggml.model", "llama", 5), ST_OK);
    add_tokens(w, toks, types, 11);
    assert_int_equal(ggufw_add_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 11), ST_OK);
    if (!space_prefix)
        assert_int_equal(ggufw_add_bool(w, "tokenizer.ggml.add_space_prefix", false), ST_OK);
    return w;
}

static void expect_ids(const tok_t *t, const char *s, bool add, bool special, const int32_t *want,
                       size_t n_want)
{
    int32_t *ids;
    size_t n = encode(t, s, strlen(s), add, special, &ids);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        print_ids("want", want, n_want);
        print_ids("got ", ids, n);
        fail_msg("encoding '%s'", s);
    }
    free(ids);
}

static void expect_text(const tok_t *t, const int32_t *ids, size_t n, bool skip, const char *want)
{
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(tok_decode(t, ids, n, skip, &out), ST_OK);
    assert_string_equal(out.data ? out.data : "", want);
    sy_buf_deinit(&out);
}

static void test_tiny_spm(void **state)
{
    (void)state;
    char err[256];
    ggufw_t *w = tiny_spm(true);
    tok_t *t = from_writer(w, err, sizeof err);
    ggufw_destroy(w);
    if (!t)
        fail_msg("tiny spm: %s", err);
    /* defaults: BOS 1, EOS 2, add BOS, space prefix */
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2);
    expect_ids(t, "ab", true, false, (const int32_t[]){1, 8}, 2);
    /* "▁a b": ▁a (-2) merges before ab (-3); then ▁a+b = ▁ab (-1) */
    expect_ids(t, "ab", false, false, (const int32_t[]){8}, 1);
    /* 'c' only as a byte token; 'd' has none and becomes <unk> */
    expect_ids(t, "c", false, false, (const int32_t[]){3, 9}, 2);
    expect_ids(t, "d", false, false, (const int32_t[]){3, 0}, 2);
    /* the user-defined token splits the text even without parse_special; the text after it
     * gets the space prefix again; decoding drops it again */
    const int32_t ub[] = {6, 10, 3, 5};
    expect_ids(t, "a[U]b", false, false, ub, 4);
    expect_text(t, ub, 4, true, "a[U]b");
    /* control tokens only with parse_special */
    expect_ids(t, "<s>ab", false, true, (const int32_t[]){1, 8}, 2);
    expect_text(t, (const int32_t[]){1, 8}, 2, true, "ab");
    expect_text(t, (const int32_t[]){1, 8}, 2, false, "<s>ab");
    /* <unk> is shown unless skip_special; like every special token it takes the leading space
     * of the piece after it (the inverse of the prefix the encoder adds after specials) */
    expect_text(t, (const int32_t[]){6, 0, 8}, 3, true, "aab");
    expect_text(t, (const int32_t[]){6, 0, 8}, 3, false, "a<unk>ab");
    /* a normal token mid-text keeps its space */
    expect_text(t, (const int32_t[]){6, 8}, 2, true, "a ab");
    tok_destroy(t);

    w = tiny_spm(false);
    t = from_writer(w, err, sizeof err);
    ggufw_destroy(w);
    if (!t)
        fail_msg("tiny spm: %s", err);
    expect_ids(t, "ab", false, false, (const int32_t[]){7}, 1);
    expect_ids(t, " ab", false, false, (const int32_t[]){8}, 1);
    expect_text(t, (const int32_t[]){8}, 1, true, " ab");
    tok_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_odd_metadata),
        cmocka_unit_test(test_tiny_bpe),
        cmocka_unit_test(test_tiny_spm),
        cmocka_unit_test(test_stories_prompt_and_text),
        cmocka_unit_test(test_stories_specials),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_tiny_random_hello),
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_phi3),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_deepseek_llm),
        cmocka_unit_test(test_vectors_deepseek_coder),
        cmocka_unit_test(test_vectors_falcon),
        cmocka_unit_test(test_vectors_starcoder),
        cmocka_unit_test(test_vectors_mpt),
        cmocka_unit_test(test_vectors_refact),
        cmocka_unit_test(test_roundtrip_spm),
        cmocka_unit_test(test_roundtrip_stories),
        cmocka_unit_test(test_roundtrip_bpe),
        cmocka_unit_test(test_spm_segmentation_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
