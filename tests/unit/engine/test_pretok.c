/*
 * test_pretok.c - BPE pre-tokenizers: hand-checked splits per kind (contractions, digit groups,
 * whitespace runs, newlines, emoji, CJK, accents, punctuation, mixed scripts), exact coverage of
 * the input, the hand-written GPT-2/Llama 3 scanners against the regex engine on random text,
 * random bytes never crashing, linear time on long runs, name mapping, and Unicode flags
 * checked against UnicodeData facts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "engine/pretok.h"

#define MAX_SPANS 4096

/* Checks that spans[0..n) are non-empty, in order and cover [0, len) exactly. */
static void assert_covers(const pretok_span_t *sp, size_t n, size_t len)
{
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sp[i].off, pos);
        assert_true(sp[i].len > 0);
        pos += sp[i].len;
    }
    assert_int_equal(pos, len);
}

/* Splits text with kind k and joins the pieces with '|' into out. */
static void split_join(pretok_kind_t k, const char *text, char *out, size_t out_cap)
{
    static pretok_span_t sp[MAX_SPANS];
    size_t n = 0, len = strlen(text), o = 0;
    assert_int_equal(pretok_split(k, text, len, sp, MAX_SPANS, &n), ST_OK);
    assert_covers(sp, n, len);
    for (size_t i = 0; i < n; i++) {
        assert_true(o + sp[i].len + 2 < out_cap);
        if (i) {
            out[o++] = '|';
        }
        memcpy(out + o, text + sp[i].off, sp[i].len);
        o += sp[i].len;
    }
    out[o] = '\0';
    /* the reference path agrees everywhere */
    static pretok_span_t sp2[MAX_SPANS];
    size_t n2 = 0;
    assert_int_equal(pretok_split_ref(k, text, len, sp2, MAX_SPANS, &n2), ST_OK);
    assert_int_equal(n2, n);
    assert_memory_equal(sp2, sp, n * sizeof sp[0]);
}

/* Asserts that k splits text into the '|'-separated pieces of want (text has no '|'). */
static void check_split(pretok_kind_t k, const char *text, const char *want)
{
    char got[8192];
    split_join(k, text, got, sizeof got);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "kind %s, text \"%s\":\n  want \"%s\"\n  got  \"%s\"\n",
                pretok_kind_name(k), text, want, got);
    }
    assert_string_equal(got, want);
}

static void test_gpt2(void **state)
{
    const pretok_kind_t k = PRETOK_GPT2;
    check_split(k, "Hello world", "Hello| world");
    check_split(k, "  Hello", " | Hello"); /* \s+(?!\S) leaves the last space to the word */
    check_split(k, "I'm don't we'll I'M", "I|'m| don|'t| we|'ll| I|'|M"); /* case-sensitive */
    check_split(k, "hello\n\nworld", "hello|\n|\n|world");
    check_split(k, "a  \t b", "a|  \t| b");
    check_split(k, " this is \xF0\x9F\xA6\x99.cpp", " this| is| \xF0\x9F\xA6\x99.|cpp");
    check_split(k, "caf\xC3\xA9 na\xC3\xAFve", "caf\xC3\xA9| na\xC3\xAFve");
    check_split(k, "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C", /* 你好世界 */
                "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C");
    check_split(k, "3.14 abc123def 1234567", "3|.|14| abc|123|def| 1234567");
    check_split(k, "hi   ", "hi|   "); /* trailing whitespace stays whole */
    check_split(k, "!!!? ...", "!!!?| ...");
    check_split(k,
                "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE \xD0\x91\xD1\x8A\xD0\xBB\xD0\xB3"
                "abc", /* нещо Бълг */
                "\xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE| \xD0\x91\xD1\x8A\xD0\xBB\xD0\xB3"
                "abc");
    /* a combining mark is not a letter: e + U+0301 splits */
    check_split(k, "e\xCC\x81x", "e|\xCC\x81|x");
    /* U+3000 ideographic space is whitespace */
    check_split(k,
                "a\xE3\x80\x80\xE3\x80\x80"
                "b",
                "a|\xE3\x80\x80|\xE3\x80\x80|b");
}

static void test_llama3(void **state)
{
    const pretok_kind_t k = PRETOK_LLAMA3;
    check_split(k, "Hello world", "Hello| world");
    check_split(k, "1234567", "123|456|7");
    check_split(k, "I'M you'RE it's", "I|'M| you|'RE| it|'s"); /* case-insensitive */
    check_split(k, "  Hello", " | Hello");
    check_split(k, "hello\n\nworld", "hello|\n\n|world");
    check_split(k, "x \n y", "x| \n| y");
    check_split(k, "...\n", "...\n");
    check_split(k, "$hello a ++b a1234b", "$hello| a| ++|b| a|123|4|b");
    check_split(k, "\t\tfoo", "\t|\tfoo");
    check_split(k, " \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99 x", " \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99| x");
    check_split(k, "\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4",
                "\xD9\xA1\xD9\xA2\xD9\xA3|\xD9\xA4"); /* ١٢٣٤ */
    check_split(k, "caf\xC3\xA9!\r\n", "caf\xC3\xA9|!\r\n");
}

static void test_qwen2(void **state)
{
    const pretok_kind_t k = PRETOK_QWEN2;
    check_split(k, "Hello world", "Hello| world");
    check_split(k, "1234", "1|2|3|4"); /* single digits */
    check_split(k, "I'M  x\n\n", "I|'M| | x|\n\n");
    check_split(k, "\xE4\xBD\xA0\xE5\xA5\xBD, world", "\xE4\xBD\xA0\xE5\xA5\xBD|,| world");
}

static void test_starcoder_falcon_default(void **state)
{
    check_split(PRETOK_STARCODER, "abc123", "abc|1|2|3");
    check_split(PRETOK_STARCODER, "x = 42;", "x| =| |4|2|;");
    check_split(PRETOK_FALCON, "Hello, world!", "Hello|,| world|!");
    check_split(PRETOK_FALCON, "12345 `a`", "123|45| |`|a|`");
    check_split(PRETOK_DEFAULT, "1234567", "123|456|7");
    check_split(PRETOK_DEFAULT, "a+b=c", "a|+|b|=|c");
}

static void test_deepseek(void **state)
{
    const pretok_kind_t c = PRETOK_DEEPSEEK_CODER, l = PRETOK_DEEPSEEK_LLM;
    check_split(c, "Hello world", "Hello| world");
    check_split(c, "a\nb", "a|\n|b");
    check_split(c, "x = 123;", "x| = |1|2|3|;"); /* '=' is a symbol, not \p{P} */
    check_split(c, "\xE4\xBD\xA0\xE5\xA5\xBD", "\xE4\xBD\xA0\xE5\xA5\xBD");
    check_split(l, "Hello world", "Hello| world");
    check_split(l, "3.14", "3|.|14");
    check_split(l, "a  b", "a| | b");
    check_split(l, "x  ", "x|  "); /* \s+$ */
    /* stage 2 takes "Führer" whole, but stage 3's [:-~] holds the ASCII letters too, so it cuts
     * "F" and "hrer" out again and leaves "ü" between them */
    check_split(l, "F\xC3\xBChrer", "F|\xC3\xBC|hrer");
    check_split(l, "\xC3\xA9\xC3\xA9 \xCE\xA9", "\xC3\xA9\xC3\xA9| \xCE\xA9"); /* éé Ω */
    check_split(l, "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x81", "\xE4\xBD\xA0\xE5\xA5\xBD|\xEF\xBC\x81");
}

static void test_other_kinds(void **state)
{
    /* later stages split a sentinel again (llama.cpp cuts special tokens out before) */
    check_split(PRETOK_CHAMELEON, "<sentinel:12>ab", "<|sentinel|:|1|2|>|ab");
    check_split(PRETOK_CHAMELEON, "a\tb  c", "a|\t|b|  |c");
    check_split(PRETOK_CHAMELEON, "IMGIMGABZx", "IMGIMGABZ|x");
    check_split(PRETOK_PORO, "Hello world, again.", "Hello| world|,| again|.");
    check_split(PRETOK_GPT4O, "HelloWorld it's", "Hello|World| it's");
    check_split(PRETOK_TEKKEN, "HelloWorld 12", "Hello|World| |1|2");
    check_split(PRETOK_DEEPSEEK3, "abc 12345", "abc| |123|45");
}

/* Every kind on every input, including empty text and ST_LIMIT. */
static void test_edges(void **state)
{
    pretok_span_t sp[8];
    size_t n = 99;
    for (int k = 0; k < PRETOK_KIND_COUNT; k++) {
        assert_int_equal(pretok_split((pretok_kind_t)k, "", 0, sp, 8, &n), ST_OK);
        assert_int_equal(n, 0);
        assert_int_equal(pretok_split((pretok_kind_t)k, NULL, 0, sp, 0, &n), ST_OK);
        assert_int_equal(n, 0);
    }
    const char *t = "a b c d e";
    assert_int_equal(pretok_split(PRETOK_GPT2, t, strlen(t), sp, 3, &n), ST_LIMIT);
    assert_int_equal(n, 3);
    assert_int_equal(pretok_split(PRETOK_GPT2, t, strlen(t), sp, 5, &n), ST_OK);
    assert_int_equal(n, 5);
    assert_int_equal(pretok_split(PRETOK_KIND_COUNT, t, strlen(t), sp, 8, &n), ST_INVAL);
    /* invalid UTF-8: each bad byte is one character of its own */
    check_split(PRETOK_GPT2, "a\xFF\xC3 b\x80", "a|\xFF\xC3| b|\x80");
}

static void test_names(void **state)
{
    static const struct {
        const char *name;
        pretok_kind_t kind;
    } cases[] = {
        {"default", PRETOK_DEFAULT},
        {"", PRETOK_DEFAULT},
        {"gpt-2", PRETOK_GPT2},
        {"mpt", PRETOK_GPT2},
        {"phi-2", PRETOK_GPT2},
        {"llama-bpe", PRETOK_LLAMA3},
        {"llama3", PRETOK_LLAMA3},
        {"smaug-bpe", PRETOK_LLAMA3},
        {"qwen2", PRETOK_QWEN2},
        {"stablelm2", PRETOK_QWEN2},
        {"deepseek-llm", PRETOK_DEEPSEEK_LLM},
        {"deepseek-coder", PRETOK_DEEPSEEK_CODER},
        {"falcon", PRETOK_FALCON},
        {"starcoder", PRETOK_STARCODER},
        {"refact", PRETOK_STARCODER},
        {"command-r", PRETOK_STARCODER},
        {"deepseek-v3", PRETOK_DEEPSEEK3},
        {"bloom", PRETOK_PORO},
        {"tekken", PRETOK_TEKKEN},
        {"gpt-4o", PRETOK_GPT4O},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pretok_kind_t k = PRETOK_KIND_COUNT;
        assert_int_equal(pretok_kind_from_name(cases[i].name, strlen(cases[i].name), &k), ST_OK);
        assert_int_equal(k, cases[i].kind);
    }
    pretok_kind_t k = PRETOK_GPT2;
    assert_int_equal(pretok_kind_from_name("gpt-3", 5, &k), ST_NOTFOUND);
    assert_int_equal(pretok_kind_from_name("gpt-2x", 6, &k), ST_NOTFOUND);
    assert_int_equal(pretok_kind_from_name("gpt-2x", 5, &k), ST_OK); /* not NUL-terminated */
    assert_int_equal(k, PRETOK_GPT2);
    assert_string_equal(pretok_kind_name(PRETOK_LLAMA3), "llama-bpe");
    assert_string_equal(pretok_kind_name(PRETOK_KIND_COUNT), "?");
    for (int i = 0; i < PRETOK_KIND_COUNT; i++) { /* canonical names map back to their kind */
        const char *nm = pretok_kind_name((pretok_kind_t)i);
        assert_int_equal(pretok_kind_from_name(nm, strlen(nm), &k), ST_OK);
        assert_int_equal(k, i);
    }
}

static void test_cp_flags(void **state)
{
    assert_true(pretok_cp_flags(0x00E9) & PRETOK_CP_LETTER); /* é */
    assert_true(pretok_cp_flags(0x00E9) & PRETOK_CP_LOWERCASE);
    assert_true(pretok_cp_flags('A') & PRETOK_CP_UPPERCASE);
    assert_true(pretok_cp_flags(0x0661) & PRETOK_CP_NUMBER); /* ARABIC-INDIC DIGIT ONE */
    assert_true(pretok_cp_flags(0x2167) & PRETOK_CP_NUMBER); /* ROMAN NUMERAL EIGHT, Nl */
    assert_true(pretok_cp_flags(0x3000) & PRETOK_CP_WHITESPACE);
    assert_true(pretok_cp_flags(0x3000) & PRETOK_CP_SEPARATOR);
    assert_true(pretok_cp_flags(0x0085) & PRETOK_CP_WHITESPACE);
    assert_true(pretok_cp_flags(0x00A0) & PRETOK_CP_WHITESPACE);
    assert_false(pretok_cp_flags(0x200B) & PRETOK_CP_WHITESPACE); /* ZWSP is Cf */
    assert_true(pretok_cp_flags(0x200B) & PRETOK_CP_CONTROL);
    assert_false(pretok_cp_flags(0x1F999) & PRETOK_CP_LETTER); /* 🦙 */
    assert_true(pretok_cp_flags(0x1F999) & PRETOK_CP_SYMBOL);
    assert_true(pretok_cp_flags(0x0301) & PRETOK_CP_MARK);
    assert_true(pretok_cp_flags('!') & PRETOK_CP_PUNCT);
    assert_true(pretok_cp_flags('$') & PRETOK_CP_SYMBOL);
    assert_true(pretok_cp_flags('~') & PRETOK_CP_SYMBOL);
    assert_true(pretok_cp_flags('\t') & PRETOK_CP_WHITESPACE);
    assert_true(pretok_cp_flags('\t') & PRETOK_CP_CONTROL);
    assert_false(pretok_cp_flags(0x1F) & PRETOK_CP_WHITESPACE);
    assert_true(pretok_cp_flags(0x4E00) & PRETOK_CP_LETTER); /* CJK range (First/Last) */
    assert_true(pretok_cp_flags(0x9FA5) & PRETOK_CP_LETTER);
    assert_true(pretok_cp_flags(0xAC01) & PRETOK_CP_LETTER);  /* Hangul range */
    assert_true(pretok_cp_flags(0xE000) & PRETOK_CP_CONTROL); /* private use, Co */
    assert_true(pretok_cp_flags(0xD800) & PRETOK_CP_CONTROL); /* surrogate, Cs */
    assert_true(pretok_cp_flags(0x0378) & PRETOK_CP_UNASSIGNED);
    assert_true(pretok_cp_flags(0x10FFFF) & PRETOK_CP_UNASSIGNED);
    assert_int_equal(pretok_cp_flags(0x110000), PRETOK_CP_UNASSIGNED);
    assert_int_equal(pretok_cp_flags(0xFFFFFFFF), PRETOK_CP_UNASSIGNED);
    assert_int_equal(pretok_cp_lower('A'), 'a');
    assert_int_equal(pretok_cp_lower('a'), 'a');
    assert_int_equal(pretok_cp_lower(0x00C9), 0x00E9);
    assert_int_equal(pretok_cp_lower(0x0130), 'i');
    assert_int_equal(pretok_cp_lower(0x212A), 'k'); /* KELVIN SIGN */
    assert_int_equal(pretok_cp_lower(0x0411), 0x0431);
    assert_int_equal(pretok_cp_lower(0x10400), 0x10428);
    assert_int_equal(pretok_cp_lower(0x4E00), 0x4E00);
}

static uint64_t g_rng;

static uint32_t rnd(uint32_t n)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((g_rng >> 33) % n);
}

/* Random text from pieces that exercise every branch of the patterns. */
static size_t random_text(char *buf, size_t cap)
{
    static const char *pieces[] = {
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "'",
        "'s",
        "'LL",
        "'Re",
        "'d",
        "a",
        "Z",
        "hello",
        "World",
        "\xC3\xA9",
        "\xC3\xBC",
        "\xE4\xBD\xA0",
        "\xEA\xB0\x80",
        "123",
        "7",
        "\xD9\xA3",
        "!",
        "...",
        "$",
        "~",
        "`",
        "+",
        "=",
        "/",
        "<sentinel:3>",
        "IMGIMGABZ",
        "\xF0\x9F\xA6\x99",
        "\xE3\x80\x80",
        "\xC2\xA0",
        "\xCC\x81",
        "\xE2\x80\x8D",
        "\xE2\x84\xA6",
        "\xEF\xBC\x81",
        "\xE3\x80\x82",
        "\xE2\x80\xA6",
        "\xC2\x85",
        "\xEF\xBF\xBD",
        "\xFF",
        "\xC3",
        "\x80",
        "\xF0\x9F",
        "\xED\xA0\x80",
        "\xF4\x90\x80\x80",
        "\0",
    };
    size_t n = 0, want = rnd(60);
    for (size_t i = 0; i < want; i++) {
        const char *p = pieces[rnd(sizeof pieces / sizeof pieces[0])];
        size_t l = (p[0] == '\0') ? 1 : strlen(p);
        if (n + l > cap) {
            break;
        }
        memcpy(buf + n, p, l);
        n += l;
    }
    return n;
}

static void test_random_text(void **state)
{
    static pretok_span_t a[MAX_SPANS], b[MAX_SPANS];
    char buf[1024];
    g_rng = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = random_text(buf, sizeof buf);
        for (int k = 0; k < PRETOK_KIND_COUNT; k++) {
            size_t na = 0, nb = 0;
            assert_int_equal(pretok_split((pretok_kind_t)k, buf, len, a, len, &na), ST_OK);
            assert_covers(a, na, len);
            assert_int_equal(pretok_split_ref((pretok_kind_t)k, buf, len, b, len, &nb), ST_OK);
            if (na != nb || memcmp(a, b, na * sizeof a[0]) != 0) {
                fprintf(stderr, "fast/ref differ: kind %s iter %d\n", pretok_kind_name(k), iter);
            }
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na * sizeof a[0]);
        }
    }
}

static void test_random_bytes(void **state)
{
    static pretok_span_t sp[MAX_SPANS];
    uint8_t buf[512];
    g_rng = 777;
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = rnd(sizeof buf);
        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)(rnd(4) == 0 ? rnd(256) : (rnd(2) ? ' ' + rnd(95) : 0x80 + rnd(128)));
        }
        int k = (int)rnd(PRETOK_KIND_COUNT);
        size_t n = 0;
        assert_int_equal(pretok_split((pretok_kind_t)k, (const char *)buf, len, sp, len, &n),
                         ST_OK);
        assert_covers(sp, n, len);
    }
}

/* Long runs stay linear (a quadratic matcher would take minutes here). */
static void test_long_runs(void **state)
{
    enum { N = 200000 };
    char *buf = malloc(N + 8);
    pretok_span_t *sp = malloc((N + 8) * sizeof *sp);
    assert_non_null(buf);
    assert_non_null(sp);
    memset(buf, ' ', N);
    memcpy(buf + N, "\xE4\xBD\xA0", 3); /* spaces, then a CJK letter */
    for (int k = 0; k < PRETOK_KIND_COUNT; k++) {
        size_t n = 0;
        assert_int_equal(pretok_split((pretok_kind_t)k, buf, N + 3, sp, N + 3, &n), ST_OK);
        assert_covers(sp, n, N + 3);
    }
    memset(buf, 'A', N);
    for (int k = 0; k < PRETOK_KIND_COUNT; k++) {
        size_t n = 0;
        assert_int_equal(pretok_split((pretok_kind_t)k, buf, N, sp, N, &n), ST_OK);
        assert_covers(sp, n, N);
    }
    free(sp);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),         cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen2),        cmocka_unit_test(test_starcoder_falcon_default),
        cmocka_unit_test(test_deepseek),     cmocka_unit_test(test_other_kinds),
        cmocka_unit_test(test_edges),        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cp_flags),     cmocka_unit_test(test_random_text),
        cmocka_unit_test(test_random_bytes), cmocka_unit_test(test_long_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
