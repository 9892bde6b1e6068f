/*
 * pretok.c - BPE pre-tokenizers (tokenizer.ggml.pre) as llama.cpp runs them.
 *
 * llama.cpp describes each pre-type as a sequence of regexes. The first regex cuts the whole
 * text into pieces: every match is a piece, and so is each run of text between matches. Each
 * later regex cuts every piece of the previous one the same way, never across its edges. We do
 * the same depth-first (a piece goes through all later stages before the next piece is made),
 * so no intermediate list is stored and stack use is bounded by the number of stages.
 *
 * Regex semantics are those of llama.cpp's std::regex (ECMAScript: leftmost match, ordered
 * alternation, greedy backtracking), including how it treats non-ASCII text:
 *   - a regex that uses \p{..} runs over a "collapsed" text where every code point >= 0x80
 *     becomes one byte: 0x0B if it is White_Space, else 0xD1 number, 0xD2 letter,
 *     0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 anything else; \p{X} then means that byte
 *     plus X's ASCII members (so \p{Lu} is any letter, and \p{S} lacks '~', as in llama.cpp);
 *   - any other regex runs over code points, with non-ASCII White_Space mapped to 0x0B;
 *   - \s is [\t\n\v\f\r ] in both (which, with the mapping above, is White_Space).
 * The engine here is our own small backtracking matcher for the subset those patterns use:
 * literals, classes, \p{..} \s \S \d \D \w \W, groups (capturing ones do not capture),
 * lookahead (?= ) (?! ), $ and ^, and greedy ? * + {n} {n,} {n,m}. Repetition other than ?
 * applies only to single-character items (which may be a group such as ((?=[\p{L}])[^a-z])),
 * so a greedy loop backtracks by stepping back over UTF-8 rather than by recursing, and the
 * recursion depth is bounded by the pattern size, not the input. A search that fails after a
 * leading unbounded loop skips the rest of that loop's run (a later start inside the run cannot
 * match either), which keeps patterns like \s+$ linear.
 *
 * llama.cpp matches the GPT-2 and Llama 3 patterns with hand-written scanners instead; so do we
 * (gpt2_stage, llama3_stage), and tests check them against the regex engine (pretok_split_ref).
 * Invalid UTF-8 decodes as llama.cpp decodes it: a byte that does not start a complete sequence
 * is one code point U+FFFD. Spans are byte offsets into the caller's text.
 *
 * Thread-safety: the compiled patterns are built once (pthread_once) into static storage and
 * are read-only afterwards; every function may run concurrently.
 */
#include "engine/pretok.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "common/status.h"
#include "pretok_tables.h" /* generated from UnicodeData.txt by scripts/gen_unicode_tables.c */

/* ------------------------------------------------------------------------------------------ */
/* Unicode                                                                                     */

unsigned pretok_cp_flags(uint32_t cp)
{
    if (cp < 128) {
        return pretok_ascii_flags[cp];
    }
    if (cp >= 0x110000) {
        return PRETOK_CP_UNASSIGNED;
    }
    size_t lo = 0, hi = PRETOK_N_RANGES; /* invariant: start[lo] <= cp < start[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (pretok_range_start[mid] <= cp) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return pretok_range_flags[lo];
}

uint32_t pretok_cp_lower(uint32_t cp)
{
    if (cp < 128) {
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    }
    size_t lo = 0, hi = PRETOK_N_LOWER;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pretok_lower_map[mid][0] < cp) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return (lo < PRETOK_N_LOWER && pretok_lower_map[lo][0] == cp) ? pretok_lower_map[lo][1] : cp;
}

static bool is_cont(uint8_t b)
{
    return (b & 0xC0) == 0x80;
}

/* Decodes the code point at s[pos] (pos < n) the way llama.cpp's unicode_cpt_from_utf8 does:
 * only the lead byte's length and the continuation bytes' top bits are checked; anything else
 * is U+FFFD of length 1. */
static uint32_t utf8_dec(const uint8_t *s, size_t pos, size_t n, size_t *len)
{
    uint8_t b = s[pos];
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if ((b & 0xE0) == 0xC0) {
        if (pos + 1 < n && is_cont(s[pos + 1])) {
            *len = 2;
            return ((uint32_t)(b & 0x1F) << 6) | (s[pos + 1] & 0x3F);
        }
    } else if ((b & 0xF0) == 0xE0) {
        if (pos + 2 < n && is_cont(s[pos + 1]) && is_cont(s[pos + 2])) {
            *len = 3;
            return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[pos + 1] & 0x3F) << 6) |
                   (s[pos + 2] & 0x3F);
        }
    } else if ((b & 0xF8) == 0xF0) {
        if (pos + 3 < n && is_cont(s[pos + 1]) && is_cont(s[pos + 2]) && is_cont(s[pos + 3])) {
            *len = 4;
            return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[pos + 1] & 0x3F) << 12) |
                   ((uint32_t)(s[pos + 2] & 0x3F) << 6) | (s[pos + 3] & 0x3F);
        }
    }
    *len = 1;
    return 0xFFFD;
}

/* Start of the code point that ends at p (lo < p, both code point boundaries of utf8_dec's
 * decoding). A complete sequence lead + k-1 continuation bytes ending at p is always one code
 * point (its lead byte cannot sit inside an earlier sequence); anything else is a 1-byte one. */
static size_t utf8_prev(const uint8_t *s, size_t lo, size_t p)
{
    if (!is_cont(s[p - 1])) {
        return p - 1;
    }
    for (size_t k = 2; k <= 4 && p - lo >= k; k++) {
        uint8_t b = s[p - k];
        if (is_cont(b)) {
            continue;
        }
        bool lead_k = (k == 2 && (b & 0xE0) == 0xC0) || (k == 3 && (b & 0xF0) == 0xE0) ||
                      (k == 4 && (b & 0xF8) == 0xF0);
        return lead_k ? p - k : p - 1;
    }
    return p - 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Regex engine: compiled form                                                                 */

enum { RN_CLASS, RN_GROUP, RN_LOOK, RN_NLOOK, RN_EOL, RN_BOL };

typedef struct re_node {
    uint8_t type;
    uint8_t neg;    /* RN_CLASS: complement */
    uint8_t width1; /* always matches exactly one character (a class, or a group of them) */
    uint16_t a, n;  /* CLASS: ranges[a..a+n); GROUP: seqs[a..a+n); LOOK/NLOOK: group node a */
} re_node_t;

typedef struct re_term {
    uint16_t node, min, max; /* max RE_INF = unbounded */
} re_term_t;

typedef struct re_seq {
    uint16_t t0, nt; /* terms[t0..t0+nt) */
} re_seq_t;

typedef struct re_range {
    uint32_t lo, hi;
} re_range_t;

#define RE_INF 0xFFFFu
#define RE_MAX_NODES 1024
#define RE_MAX_TERMS 1024
#define RE_MAX_SEQS 512
#define RE_MAX_RANGES 2048
#define RE_MAX_SEQ_TERMS 64 /* terms in one alternative */
#define RE_MAX_ALTS 32      /* alternatives in one group */
#define RE_MAX_DEPTH 8      /* group nesting */

typedef struct re {
    bool collapsed; /* uses \p{..}: match over the collapsed text */
    bool skip_run;  /* root is one alternative starting with an unbounded 1-char loop */
    uint16_t root;  /* RN_GROUP node */
    uint16_t first; /* skip_run: that loop's node */
    int8_t scanner; /* SCAN_* when a hand-written scanner implements this exact pattern */
    bool ok;        /* compiled */
} re_t;

/* Shared pools for every compiled pattern (written once under pthread_once). */
static re_node_t g_nodes[RE_MAX_NODES];
static re_term_t g_terms[RE_MAX_TERMS];
static re_seq_t g_seqs[RE_MAX_SEQS];
static re_range_t g_ranges[RE_MAX_RANGES];
static unsigned g_n_nodes, g_n_terms, g_n_seqs, g_n_ranges;

/* ------------------------------------------------------------------------------------------ */
/* Regex engine: compiler                                                                      */

typedef struct rp {
    const uint8_t *p;
    size_t i, n;
    bool collapsed;
    unsigned depth;
    bool err;
} rp_t;

static int rp_new_node(rp_t *r, uint8_t type)
{
    if (g_n_nodes >= RE_MAX_NODES) {
        r->err = true;
        return 0;
    }
    re_node_t *nd = &g_nodes[g_n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    return (int)g_n_nodes++;
}

static void rp_add_range(rp_t *r, uint32_t lo, uint32_t hi)
{
    if (g_n_ranges >= RE_MAX_RANGES || lo > hi) {
        r->err = true;
        return;
    }
    g_ranges[g_n_ranges].lo = lo;
    g_ranges[g_n_ranges].hi = hi;
    g_n_ranges++;
}

/* Adds the ranges lo/hi pairs (sorted, disjoint), or their complement when neg. */
static void rp_add_set(rp_t *r, const uint32_t (*set)[2], size_t n, bool neg)
{
    if (!neg) {
        for (size_t i = 0; i < n; i++) {
            rp_add_range(r, set[i][0], set[i][1]);
        }
        return;
    }
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (set[i][0] > next) {
            rp_add_range(r, next, set[i][0] - 1);
        }
        next = set[i][1] + 1;
    }
    rp_add_range(r, next, 0x7FFFFFFF);
}

static const uint32_t k_set_space[][2] = {{0x09, 0x0D}, {0x20, 0x20}};
static const uint32_t k_set_digit[][2] = {{0x30, 0x39}};
static const uint32_t k_set_word[][2] = {{0x30, 0x39}, {0x41, 0x5A}, {0x5F, 0x5F}, {0x61, 0x7A}};

/* Collapsed bytes (see the file-top comment) and the ASCII members llama.cpp gives each \p{}. */
enum { COL_OTHER = 0xD0, COL_NUMBER, COL_LETTER, COL_PUNCT, COL_MARK, COL_SYMBOL };
static const uint32_t k_p_number[][2] = {{0x30, 0x39}, {COL_NUMBER, COL_NUMBER}};
static const uint32_t k_p_letter[][2] = {{0x41, 0x5A}, {0x61, 0x7A}, {COL_LETTER, COL_LETTER}};
static const uint32_t k_p_punct[][2] = {
    {0x21, 0x23}, {0x25, 0x2A}, {0x2C, 0x2F}, {0x3A, 0x3B}, {0x3F, 0x40},
    {0x5B, 0x5D}, {0x5F, 0x5F}, {0x7B, 0x7B}, {0x7D, 0x7D}, {COL_PUNCT, COL_PUNCT}};
static const uint32_t k_p_mark[][2] = {{COL_MARK, COL_MARK}};
static const uint32_t k_p_symbol[][2] = {{0x24, 0x24},
                                         {0x2B, 0x2B},
                                         {0x3C, 0x3E},
                                         {0x5E, 0x5E},
                                         {0x60, 0x60},
                                         {0x7C, 0x7C},
                                         {COL_SYMBOL, COL_SYMBOL}};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int rp_peek(const rp_t *r)
{
    return r->i < r->n ? r->p[r->i] : -1;
}

static uint32_t rp_hex(rp_t *r, unsigned digits)
{
    uint32_t v = 0;
    for (unsigned k = 0; k < digits; k++) {
        int c = rp_peek(r);
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            d = (unsigned)(c - 'A' + 10);
        } else {
            r->err = true;
            return 0;
        }
        v = v * 16 + d;
        r->i++;
    }
    return v;
}

/* Parses \p{Name} (r->i just past "\p"): adds its ranges. Only valid in collapsed patterns. */
static void rp_property(rp_t *r)
{
    static const struct {
        const char *name;
        const uint32_t (*set)[2];
        size_t n;
    } props[] = {
        {"N", k_p_number, NELEM(k_p_number)},  {"L", k_p_letter, NELEM(k_p_letter)},
        {"Lu", k_p_letter, NELEM(k_p_letter)}, {"Ll", k_p_letter, NELEM(k_p_letter)},
        {"Lt", k_p_letter, NELEM(k_p_letter)}, {"Lm", k_p_letter, NELEM(k_p_letter)},
        {"Lo", k_p_letter, NELEM(k_p_letter)}, {"P", k_p_punct, NELEM(k_p_punct)},
        {"M", k_p_mark, NELEM(k_p_mark)},      {"S", k_p_symbol, NELEM(k_p_symbol)},
    };
    if (rp_peek(r) != '{' || !r->collapsed) {
        r->err = true;
        return;
    }
    size_t start = r->i + 1, end = start;
    while (end < r->n && r->p[end] != '}') {
        end++;
    }
    if (end >= r->n) {
        r->err = true;
        return;
    }
    for (size_t k = 0; k < NELEM(props); k++) {
        if (strlen(props[k].name) == end - start &&
            memcmp(props[k].name, r->p + start, end - start) == 0) {
            rp_add_set(r, props[k].set, props[k].n, false);
            r->i = end + 1;
            return;
        }
    }
    r->err = true;
}

/* Parses one escape (r->i just past '\'). Adds a class's ranges and returns -1, or returns the
 * literal character. */
static int64_t rp_escape(rp_t *r)
{
    int c = rp_peek(r);
    if (c < 0) {
        r->err = true;
        return 0;
    }
    r->i++;
    switch (c) {
    case 's':
    case 'S':
        rp_add_set(r, k_set_space, NELEM(k_set_space), c == 'S');
        return -1;
    case 'd':
    case 'D':
        rp_add_set(r, k_set_digit, NELEM(k_set_digit), c == 'D');
        return -1;
    case 'w':
    case 'W':
        rp_add_set(r, k_set_word, NELEM(k_set_word), c == 'W');
        return -1;
    case 'p':
        rp_property(r);
        return -1;
    case 'r':
        return '\r';
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case '0':
        return 0;
    case 'x':
        return rp_hex(r, 2);
    case 'u': /* \uHHHH */
        return rp_hex(r, 4);
    case 'U': /* \UHHHHHHHH (our extension, for code points past U+FFFF) */
        return rp_hex(r, 8);
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
            r->err = true; /* an escape we do not implement: refuse rather than guess */
            return 0;
        }
        return c; /* identity escape: \\ \[ \$ \- ... */
    }
}

/* Reads one literal character of the pattern: a byte in collapsed patterns (which are ASCII),
 * a UTF-8 code point otherwise. */
static uint32_t rp_literal(rp_t *r)
{
    size_t len;
    uint32_t cp = utf8_dec(r->p, r->i, r->n, &len);
    if (cp == 0xFFFD || (r->collapsed && cp >= 0x80)) {
        r->err = true;
    }
    r->i += len;
    return cp;
}

/* Parses a bracket class (r->i just past '['). Returns a RN_CLASS node. */
static int rp_class(rp_t *r)
{
    int node = rp_new_node(r, RN_CLASS);
    if (r->err) {
        return 0;
    }
    g_nodes[node].width1 = 1;
    g_nodes[node].a = (uint16_t)g_n_ranges;
    if (rp_peek(r) == '^') {
        g_nodes[node].neg = 1;
        r->i++;
    }
    bool first = true;
    while (!r->err) {
        int c = rp_peek(r);
        if (c < 0) {
            r->err = true;
            break;
        }
        if (c == ']' && !first) {
            r->i++;
            break;
        }
        first = false;
        int64_t lo;
        if (c == '\\') {
            r->i++;
            lo = rp_escape(r);
            if (lo < 0) {
                continue; /* a class escape such as \s or \p{L} */
            }
        } else {
            lo = rp_literal(r);
        }
        /* a range lo-hi, unless '-' is the last character before ']' */
        if (rp_peek(r) == '-' && r->i + 1 < r->n && r->p[r->i + 1] != ']') {
            r->i++;
            int64_t hi;
            if (rp_peek(r) == '\\') {
                r->i++;
                hi = rp_escape(r);
                if (hi < 0) {
                    r->err = true; /* [a-\s] */
                    break;
                }
            } else {
                hi = rp_literal(r);
            }
            rp_add_range(r, (uint32_t)lo, (uint32_t)hi);
        } else {
            rp_add_range(r, (uint32_t)lo, (uint32_t)lo);
        }
    }
    g_nodes[node].n = (uint16_t)(g_n_ranges - g_nodes[node].a);
    return node;
}

static int rp_alt(rp_t *r);

/* A group is one character wide when each alternative is zero or more lookaheads followed by
 * exactly one single-character term. */
static bool group_width1(int node)
{
    const re_node_t *g = &g_nodes[node];
    for (unsigned a = 0; a < g->n; a++) {
        const re_seq_t *sq = &g_seqs[g->a + a];
        if (sq->nt == 0) {
            return false;
        }
        for (unsigned t = 0; t + 1 < sq->nt; t++) {
            uint8_t ty = g_nodes[g_terms[sq->t0 + t].node].type;
            if (ty != RN_LOOK && ty != RN_NLOOK) {
                return false;
            }
        }
        const re_term_t *last = &g_terms[sq->t0 + sq->nt - 1];
        if (last->min != 1 || last->max != 1 || !g_nodes[last->node].width1) {
            return false;
        }
    }
    return true;
}

/* Parses an atom; returns its node. */
static int rp_atom(rp_t *r)
{
    int c = rp_peek(r);
    if (c == '(') {
        r->i++;
        uint8_t type = RN_GROUP;
        if (rp_peek(r) == '?') {
            r->i++;
            int k = rp_peek(r);
            if (k == ':') {
                type = RN_GROUP;
            } else if (k == '=') {
                type = RN_LOOK;
            } else if (k == '!') {
                type = RN_NLOOK;
            } else {
                r->err = true; /* (?i: and friends are not ECMAScript; llama.cpp avoids them */
                return 0;
            }
            r->i++;
        }
        if (++r->depth > RE_MAX_DEPTH) {
            r->err = true;
            return 0;
        }
        int g = rp_alt(r);
        r->depth--;
        if (r->err || rp_peek(r) != ')') {
            r->err = true;
            return 0;
        }
        r->i++;
        if (type == RN_GROUP) {
            g_nodes[g].width1 = group_width1(g);
            return g;
        }
        int look = rp_new_node(r, type);
        if (!r->err) {
            g_nodes[look].a = (uint16_t)g;
        }
        return look;
    }
    if (c == '[') {
        r->i++;
        return rp_class(r);
    }
    if (c == '$' || c == '^') {
        r->i++;
        return rp_new_node(r, c == '$' ? RN_EOL : RN_BOL);
    }
    int node = rp_new_node(r, RN_CLASS);
    if (r->err) {
        return 0;
    }
    g_nodes[node].width1 = 1;
    g_nodes[node].a = (uint16_t)g_n_ranges;
    if (c == '.') { /* ECMAScript: anything but line terminators */
        r->i++;
        static const uint32_t k_eol[][2] = {{0x0A, 0x0A}, {0x0D, 0x0D}, {0x2028, 0x2029}};
        rp_add_set(r, k_eol, NELEM(k_eol), true);
    } else if (c == '\\') {
        r->i++;
        int64_t lit = rp_escape(r);
        if (lit >= 0) {
            rp_add_range(r, (uint32_t)lit, (uint32_t)lit);
        }
    } else if (c == '*' || c == '+' || c == '?' || c == '{' || c == ')' || c == '|') {
        r->err = true;
    } else {
        uint32_t lit = rp_literal(r);
        rp_add_range(r, lit, lit);
    }
    g_nodes[node].n = (uint16_t)(g_n_ranges - g_nodes[node].a);
    return node;
}

static unsigned rp_number(rp_t *r)
{
    unsigned v = 0;
    bool any = false;
    while (rp_peek(r) >= '0' && rp_peek(r) <= '9') {
        v = v * 10 + (unsigned)(rp_peek(r) - '0');
        any = true;
        r->i++;
        if (v >= RE_INF) {
            r->err = true;
            return 0;
        }
    }
    if (!any) {
        r->err = true;
    }
    return v;
}

/* Parses an optional quantifier into the bounds mn, mx (1, 1 when there is none). */
static void rp_quant(rp_t *r, unsigned *mn, unsigned *mx)
{
    *mn = *mx = 1;
    int c = rp_peek(r);
    if (c == '*' || c == '+' || c == '?') {
        r->i++;
        *mn = c == '+' ? 1 : 0;
        *mx = c == '?' ? 1 : RE_INF;
    } else if (c == '{') {
        r->i++;
        *mn = *mx = rp_number(r);
        if (rp_peek(r) == ',') {
            r->i++;
            *mx = rp_peek(r) == '}' ? RE_INF : rp_number(r);
        }
        if (rp_peek(r) != '}' || *mn > *mx) {
            r->err = true;
            return;
        }
        r->i++;
    } else {
        return;
    }
    if (rp_peek(r) == '?' || rp_peek(r) == '+') {
        r->err = true; /* lazy and possessive quantifiers are not needed by any pattern */
    }
}

/* Parses alternatives up to ')' or the end; returns a RN_GROUP node. */
static int rp_alt(rp_t *r)
{
    re_seq_t alts[RE_MAX_ALTS];
    unsigned n_alts = 0;
    for (;;) {
        re_term_t terms[RE_MAX_SEQ_TERMS];
        unsigned nt = 0;
        while (!r->err && rp_peek(r) >= 0 && rp_peek(r) != '|' && rp_peek(r) != ')') {
            int node = rp_atom(r);
            unsigned mn, mx;
            rp_quant(r, &mn, &mx);
            if (r->err) {
                return 0;
            }
            const re_node_t *nd = &g_nodes[node];
            bool anchor = nd->type == RN_LOOK || nd->type == RN_NLOOK || nd->type == RN_EOL ||
                          nd->type == RN_BOL;
            if ((anchor && (mn != 1 || mx != 1)) || (!nd->width1 && mx > 1) ||
                nt >= RE_MAX_SEQ_TERMS) {
                r->err = true; /* repetition of a multi-character group is not supported */
                return 0;
            }
            terms[nt].node = (uint16_t)node;
            terms[nt].min = (uint16_t)mn;
            terms[nt].max = (uint16_t)mx;
            nt++;
        }
        if (r->err || n_alts >= RE_MAX_ALTS || g_n_terms + nt > RE_MAX_TERMS) {
            r->err = true;
            return 0;
        }
        alts[n_alts].t0 = (uint16_t)g_n_terms;
        alts[n_alts].nt = (uint16_t)nt;
        memcpy(&g_terms[g_n_terms], terms, nt * sizeof terms[0]);
        g_n_terms += nt;
        n_alts++;
        if (rp_peek(r) != '|') {
            break;
        }
        r->i++;
    }
    int g = rp_new_node(r, RN_GROUP);
    if (r->err || g_n_seqs + n_alts > RE_MAX_SEQS) {
        r->err = true;
        return 0;
    }
    g_nodes[g].a = (uint16_t)g_n_seqs;
    g_nodes[g].n = (uint16_t)n_alts;
    memcpy(&g_seqs[g_n_seqs], alts, n_alts * sizeof alts[0]);
    g_n_seqs += n_alts;
    return g;
}

/* Compiles pattern into *re (re->ok tells whether it worked). */
static void re_compile(re_t *re, const char *pattern)
{
    rp_t r = {.p = (const uint8_t *)pattern, .i = 0, .n = strlen(pattern)};
    /* llama.cpp collapses when the pattern names any Unicode category it knows */
    r.collapsed = strstr(pattern, "\\p{") != NULL;
    re->collapsed = r.collapsed;
    re->root = (uint16_t)rp_alt(&r);
    re->ok = !r.err && r.i == r.n;
    re->skip_run = false;
    if (re->ok && g_nodes[re->root].n == 1) {
        const re_seq_t *sq = &g_seqs[g_nodes[re->root].a];
        if (sq->nt > 0) {
            const re_term_t *t = &g_terms[sq->t0];
            if (t->max == RE_INF && g_nodes[t->node].width1) {
                re->skip_run = true;
                re->first = t->node;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Regex engine: matcher                                                                       */

typedef struct rm {
    const re_t *re;
    const uint8_t *s;
    size_t n;       /* text length (decoding never looks past it) */
    size_t lo, end; /* the piece being split: matches stay inside [lo, end) */
    size_t start;   /* where the current match attempt began */
} rm_t;

enum { K_SEQ, K_TOP, K_LOOK };

/* A continuation: what must match after the current term. */
typedef struct rk {
    uint8_t kind;
    const re_seq_t *seq; /* K_SEQ: terms ti.. of seq, then next */
    unsigned ti;
    const struct rk *next;
} rk_t;

/* The character the pattern sees for code point cp (see the file-top comment). */
static uint32_t rm_char(const rm_t *m, uint32_t cp)
{
    if (cp < 0x80) {
        return cp;
    }
    unsigned f = pretok_cp_flags(cp);
    if (f & PRETOK_CP_WHITESPACE) {
        return 0x0B;
    }
    if (!m->re->collapsed) {
        return cp;
    }
    if (f & PRETOK_CP_NUMBER) {
        return COL_NUMBER;
    }
    if (f & PRETOK_CP_LETTER) {
        return COL_LETTER;
    }
    if (f & PRETOK_CP_PUNCT) {
        return COL_PUNCT;
    }
    if (f & PRETOK_CP_MARK) {
        return COL_MARK;
    }
    if (f & PRETOK_CP_SYMBOL) {
        return COL_SYMBOL;
    }
    return COL_OTHER;
}

static bool rm_seq(const rm_t *m, const re_seq_t *sq, unsigned ti, size_t pos, const rk_t *k,
                   size_t *out);

static bool rm_group(const rm_t *m, const re_node_t *g, size_t pos, const rk_t *k, size_t *out)
{
    for (unsigned a = 0; a < g->n; a++) {
        if (rm_seq(m, &g_seqs[g->a + a], 0, pos, k, out)) {
            return true;
        }
    }
    return false;
}

static bool rm_look(const rm_t *m, const re_node_t *nd, size_t pos)
{
    static const rk_t k_look = {.kind = K_LOOK};
    size_t dummy;
    bool hit = rm_group(m, &g_nodes[nd->a], pos, &k_look, &dummy);
    return nd->type == RN_LOOK ? hit : !hit;
}

/* Matches single-character node nd at pos; sets *next past the character. */
static bool rm_single(const rm_t *m, const re_node_t *nd, size_t pos, size_t *next)
{
    if (pos >= m->end) {
        return false;
    }
    if (nd->type == RN_CLASS) {
        size_t len;
        uint32_t c = rm_char(m, utf8_dec(m->s, pos, m->n, &len));
        bool in = false;
        for (unsigned i = 0; i < nd->n; i++) {
            const re_range_t *rg = &g_ranges[nd->a + i];
            if (c >= rg->lo && c <= rg->hi) {
                in = true;
                break;
            }
        }
        if (in == (bool)nd->neg) {
            return false;
        }
        *next = pos + len;
        return true;
    }
    /* a width-1 group: lookaheads, then one single-character term */
    for (unsigned a = 0; a < nd->n; a++) {
        const re_seq_t *sq = &g_seqs[nd->a + a];
        bool ok = true;
        for (unsigned t = 0; ok && t + 1 < sq->nt; t++) {
            ok = rm_look(m, &g_nodes[g_terms[sq->t0 + t].node], pos);
        }
        if (ok && rm_single(m, &g_nodes[g_terms[sq->t0 + sq->nt - 1].node], pos, next)) {
            return true;
        }
    }
    return false;
}

static bool rm_cont(const rm_t *m, const rk_t *k, size_t pos, size_t *out)
{
    switch (k->kind) {
    case K_TOP:
        if (pos == m->start) {
            return false; /* std::regex_iterator skips empty matches; so do we */
        }
        *out = pos;
        return true;
    case K_LOOK:
        *out = pos;
        return true;
    default:
        return rm_seq(m, k->seq, k->ti, pos, k->next, out);
    }
}

static bool rm_seq(const rm_t *m, const re_seq_t *sq, unsigned ti, size_t pos, const rk_t *k,
                   size_t *out)
{
    if (ti == sq->nt) {
        return rm_cont(m, k, pos, out);
    }
    const re_term_t *t = &g_terms[sq->t0 + ti];
    const re_node_t *nd = &g_nodes[t->node];
    switch (nd->type) {
    case RN_EOL:
        return pos == m->end && rm_seq(m, sq, ti + 1, pos, k, out);
    case RN_BOL:
        return pos == m->lo && rm_seq(m, sq, ti + 1, pos, k, out);
    case RN_LOOK:
    case RN_NLOOK:
        return rm_look(m, nd, pos) && rm_seq(m, sq, ti + 1, pos, k, out);
    default:
        break;
    }
    if (nd->width1) {
        /* greedy: take as many as allowed, then give back one at a time */
        size_t p = pos, next;
        unsigned cnt = 0;
        while (cnt < t->max && rm_single(m, nd, p, &next)) {
            p = next;
            cnt++;
        }
        if (cnt < t->min) {
            return false;
        }
        for (;;) {
            if (rm_seq(m, sq, ti + 1, p, k, out)) {
                return true;
            }
            if (cnt == t->min) {
                return false;
            }
            p = utf8_prev(m->s, pos, p);
            cnt--;
        }
    }
    /* a multi-character group, once or optionally once (greedy: try it first) */
    rk_t rest = {.kind = K_SEQ, .seq = sq, .ti = ti + 1, .next = k};
    if (t->max >= 1 && rm_group(m, nd, pos, &rest, out)) {
        return true;
    }
    return t->min == 0 && rm_seq(m, sq, ti + 1, pos, k, out);
}

/* Tries a match starting exactly at pos. On failure *skip is where the next attempt may start
 * (past pos; further than the next character when skip_run proves the ones between fail). */
static bool rm_try(rm_t *m, size_t pos, size_t *out, size_t *skip)
{
    static const rk_t k_top = {.kind = K_TOP};
    m->start = pos;
    if (rm_group(m, &g_nodes[m->re->root], pos, &k_top, out)) {
        return true;
    }
    size_t len;
    utf8_dec(m->s, pos, m->n, &len);
    *skip = pos + len;
    if (m->re->skip_run) {
        /* every start inside the leading loop's run retries a subset of the ends tried here */
        const re_node_t *nd = &g_nodes[m->re->first];
        size_t p = pos, next;
        while (rm_single(m, nd, p, &next)) {
            p = next;
        }
        if (p > *skip) {
            *skip = p;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Pre-tokenizer definitions                                                                   */

enum { SCAN_NONE = -1, SCAN_GPT2, SCAN_LLAMA3 };

/* The GPT-2 pattern, also a stage of several other pre-types. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Contractions, case-insensitive, the way llama.cpp spells (?i:'s|'t|'re|'ve|'m|'ll|'d). */
#define RE_CONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                  \
    RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"           \
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"                \
             "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek's CJK stage: U+4E00-9FA5, U+0800-4E00, U+AC00-D7FF. */
#define RE_DS_CJK "[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+"
/* DeepSeek LLM's letters: the cased letters (Lu, Ll, Lt) of its tokenizer.json. */
#define RE_DS_LLM_LETTERS                                                                          \
    "\\s?[A-Za-z\\u00B5\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u01BA\\u01BC-\\u01BF"               \
    "\\u01C4-\\u0293\\u0295-\\u02AF\\u0370-\\u0373\\u0376\\u0377\\u037B-\\u037D\\u037F"            \
    "\\u0386\\u0388-\\u038A\\u038C\\u038E-\\u03A1\\u03A3-\\u03F5\\u03F7-\\u0481"                   \
    "\\u048A-\\u052F\\u0531-\\u0556\\u10A0-\\u10C5\\u13A0-\\u13F5\\u13F8-\\u13FD"                  \
    "\\u1C90-\\u1CBA\\u1CBD-\\u1CBF\\u1D00-\\u1D2B\\u1D6B-\\u1D77\\u1D79-\\u1D9A"                  \
    "\\u1E00-\\u1F15\\u1F18-\\u1F1D\\u1F20-\\u1F45\\u1F48-\\u1F4D\\u1F50-\\u1F57\\u1F59"           \
    "\\u1F5B\\u1F5D\\u1F5F-\\u1F7D\\u1F80-\\u1FB4\\u1FB6-\\u1FBC\\u1FBE\\u1FC2-\\u1FC4"            \
    "\\u1FC6-\\u1FCC\\u1FD0-\\u1FD3\\u1FD6-\\u1FDB\\u1FE0-\\u1FEC\\u1FF2-\\u1FF4"                  \
    "\\u1FF6-\\u1FFC\\u2102\\u2107\\u210A-\\u2113\\u2115\\u2119-\\u211D\\u2124\\u2126"             \
    "\\u2128\\u212A-\\u212D\\u212F-\\u2134\\u2139\\u213C-\\u213F\\u2145-\\u2149\\u214E"            \
    "\\u2183\\u2184\\u2C00-\\u2C7B\\u2C7E-\\u2CE4\\u2CEB-\\u2CEE\\u2CF2\\u2CF3"                    \
    "\\uA640-\\uA66D\\uA680-\\uA69B\\uA722-\\uA76F\\uA771-\\uA787\\uA78B-\\uA78E"                  \
    "\\uAB70-\\uABBF\\uFB00-\\uFB06\\uFB13-\\uFB17\\uFF21-\\uFF3A\\uFF41-\\uFF5A"                  \
    "\\U00010400-\\U0001044F\\U000104B0-\\U000104D3\\U000104D8-\\U000104FB"                        \
    "\\U00010C80-\\U00010CB2\\U00010CC0-\\U00010CF2\\U000118A0-\\U000118DF"                        \
    "\\U0001E900-\\U0001E943]+"
#define RE_DS_LLM_PUNCT "\\s?[!-/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3000-\\u3002]+"
/* Poro/BLOOM: [^(\s|.,!?…。，、।۔،)] (the parentheses and bar are literal class members). */
#define RE_PORO " ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+"
#define RE_TEKKEN_WORDS                                                                            \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"                         \
    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
#define RE_GPT4O_WORDS                                                                             \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" RE_CONTR "?"            \
    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" RE_CONTR "?"
#define RE_TAIL_SLASH "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define PRETOK_MAX_STAGES 6

typedef struct kind_def {
    const char *name; /* canonical tokenizer.ggml.pre value */
    const char *aliases[20];
    const char *stages[PRETOK_MAX_STAGES];
} kind_def_t;

/* Indexed by pretok_kind_t; regex sets as in llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp).
 */
static const kind_def_t k_kinds[PRETOK_KIND_COUNT] = {
    [PRETOK_DEFAULT] = {"default",
                        {"default", ""},
                        {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
    [PRETOK_GPT2] = {"gpt-2",
                     {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                      "jina-v2-de", "a.x-4.0", "mellum", "jina-v1-en", "jina-v2-code",
                      "roberta-bpe", "mpt", "olmo", "jais", "trillion", "granite-docling",
                      "exaone4"},
                     {RE_GPT2}},
    [PRETOK_LLAMA3] = {"llama-bpe",
                       {"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral",
                        "midm-2.0", "lfm2", "dbrx", "smaug-bpe"},
                       {RE_LLAMA3}},
    [PRETOK_QWEN2] = {"qwen2",
                      {"qwen2", "deepseek-r1-qwen", "kormo", "stablelm2", "megrez", "hunyuan",
                       "grok-2"},
                      {RE_QWEN2}},
    [PRETOK_DEEPSEEK_LLM] = {"deepseek-llm",
                             {"deepseek-llm"},
                             {"[\r\n]", RE_DS_LLM_LETTERS, RE_DS_LLM_PUNCT, "\\s+$", RE_DS_CJK,
                              "\\p{N}+"}},
    [PRETOK_DEEPSEEK_CODER] = {"deepseek-coder",
                               {"deepseek-coder"},
                               {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DS_CJK, "\\p{N}"}},
    [PRETOK_FALCON] = {"falcon",
                       {"falcon"},
                       {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    [PRETOK_STARCODER] = {"starcoder",
                          {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone",
                           "minerva-7b"},
                          {"\\p{N}", RE_GPT2}},
    [PRETOK_DEEPSEEK3] = {"deepseek-v3",
                          {"deepseek-v3", "hunyuan-dense"},
                          {"\\p{N}{1,3}", "[\\u4E00-\\u9FA5\\u3040-\\u309F\\u30A0-\\u30FF]+",
                           "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
                           "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*"
                           "|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
    [PRETOK_PORO] = {"poro-chat", {"poro-chat", "bloom", "gpt3-finnish"}, {RE_PORO}},
    [PRETOK_CHATGLM4] = {"chatglm-bpe", {"chatglm-bpe", "glm4"}, {RE_LLAMA3}},
    [PRETOK_VIKING] = {"viking", {"viking"}, {RE_PORO, "\\p{N}"}},
    [PRETOK_TEKKEN] = {"tekken", {"tekken"}, {RE_TEKKEN_WORDS "|\\p{N}" RE_TAIL_SLASH}},
    [PRETOK_CHAMELEON] = {"chameleon",
                          {"chameleon"},
                          {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                           "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2}},
    [PRETOK_GPT4O] = {"gpt-4o",
                      {"gpt-4o", "llama4", "minimax-m2"},
                      {RE_GPT4O_WORDS "|\\p{N}{1,3}" RE_TAIL_SLASH}},
    [PRETOK_BAILINGMOE] = {"bailingmoe",
                           {"bailingmoe", "bailingmoe2", "llada-moe"},
                           {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?"
                            "\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]"
                            "|\\s+(?!\\S)|\\s+"}},
    [PRETOK_SEED_CODER] = {"seed-coder",
                           {"seed-coder"},
                           {RE_CONTR
                            "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}"
                            "| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
};

typedef struct kind_rt {
    re_t stages[PRETOK_MAX_STAGES];
    unsigned n_stages;
    bool ok;
} kind_rt_t;

static kind_rt_t g_kinds[PRETOK_KIND_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void compile_all(void)
{
    for (unsigned k = 0; k < PRETOK_KIND_COUNT; k++) {
        kind_rt_t *rt = &g_kinds[k];
        rt->ok = true;
        for (unsigned s = 0; s < PRETOK_MAX_STAGES && k_kinds[k].stages[s]; s++) {
            const char *pat = k_kinds[k].stages[s];
            re_compile(&rt->stages[s], pat);
            rt->stages[s].scanner = strcmp(pat, RE_GPT2) == 0     ? SCAN_GPT2
                                    : strcmp(pat, RE_LLAMA3) == 0 ? SCAN_LLAMA3
                                                                  : SCAN_NONE;
            rt->ok = rt->ok && rt->stages[s].ok;
            rt->n_stages = s + 1;
        }
    }
}

int pretok_kind_from_name(const char *name, size_t len, pretok_kind_t *out)
{
    if (!name && len) {
        return ST_NOTFOUND;
    }
    for (unsigned k = 0; k < PRETOK_KIND_COUNT; k++) {
        for (unsigned a = 0; a < NELEM(k_kinds[k].aliases) && k_kinds[k].aliases[a]; a++) {
            const char *al = k_kinds[k].aliases[a];
            if (strlen(al) == len && (len == 0 || memcmp(al, name, len) == 0)) {
                *out = (pretok_kind_t)k;
                return ST_OK;
            }
        }
    }
    return ST_NOTFOUND;
}

const char *pretok_kind_name(pretok_kind_t k)
{
    return ((unsigned)k < PRETOK_KIND_COUNT) ? k_kinds[k].name : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* Splitting                                                                                   */

typedef struct split {
    const uint8_t *s;
    size_t n;
    const kind_rt_t *kind;
    bool use_ref;
    pretok_span_t *spans;
    size_t cap, count;
    int rc;
} split_t;

static void run_stage(split_t *sp, unsigned st, size_t b, size_t e);

/* Hands piece [b, e) to stage st (or records it after the last stage). Empty pieces vanish. */
static void piece(split_t *sp, unsigned st, size_t b, size_t e)
{
    if (b >= e || sp->rc != ST_OK) {
        return;
    }
    if (st < sp->kind->n_stages) {
        run_stage(sp, st, b, e);
        return;
    }
    if (sp->count >= sp->cap) {
        sp->rc = ST_LIMIT;
        return;
    }
    sp->spans[sp->count].off = (uint32_t)b;
    sp->spans[sp->count].len = (uint32_t)(e - b);
    sp->count++;
}

/* Character classes the two scanners care about. */
enum { CC_OTHER, CC_LETTER, CC_NUMBER, CC_SPACE };

static int cls_of(uint32_t cp)
{
    unsigned f = pretok_cp_flags(cp);
    if (f & PRETOK_CP_WHITESPACE) {
        return CC_SPACE;
    }
    if (f & PRETOK_CP_LETTER) {
        return CC_LETTER;
    }
    return (f & PRETOK_CP_NUMBER) ? CC_NUMBER : CC_OTHER;
}

/* Class of the code point at p, CC_* or -1 past the end of the piece. */
static int cls_at(const split_t *sp, size_t p, size_t e, size_t *len)
{
    if (p >= e) {
        *len = 0;
        return -1;
    }
    return cls_of(utf8_dec(sp->s, p, sp->n, len));
}

/* Skips the run of class c starting at p (at most max code points); returns its end. */
static size_t skip_cls(const split_t *sp, size_t p, size_t e, int c, unsigned max)
{
    size_t len;
    for (unsigned i = 0; i < max && cls_at(sp, p, e, &len) == c; i++) {
        p += len;
    }
    return p;
}

/* Length in bytes of the contraction 's 't 're 've 'm 'll 'd at p (p holds '\''), 0 if none.
 * With fold, letters match case-insensitively (Llama 3's (?i:...)). */
static size_t contraction(const split_t *sp, size_t p, size_t e, bool fold)
{
    uint32_t c[2] = {0, 0};
    size_t end[2] = {0, 0}, q = p + 1, len;
    for (unsigned i = 0; i < 2 && q < e; i++) {
        c[i] = utf8_dec(sp->s, q, sp->n, &len);
        c[i] = fold ? pretok_cp_lower(c[i]) : c[i];
        q += len;
        end[i] = q;
    }
    if (c[0] == 's' || c[0] == 't' || c[0] == 'm' || c[0] == 'd') {
        return end[0] - p;
    }
    if ((c[0] == 'r' && c[1] == 'e') || (c[0] == 'v' && c[1] == 'e') ||
        (c[0] == 'l' && c[1] == 'l')) {
        return end[1] - p;
    }
    return 0;
}

/* End of the whitespace alternatives at p (which holds whitespace): \s+(?!\S) takes the whole
 * run when it reaches the piece's end and all but its last character otherwise (that one then
 * belongs to what follows); a single one is taken alone. With nl (Llama 3), \s*[\r\n]+ comes
 * first: up to and including the run's last \r or \n. */
static size_t space_end(const split_t *sp, size_t p, size_t e, bool nl)
{
    size_t q = p, last = p, after_nl = 0, len;
    unsigned cnt = 0;
    while (cls_at(sp, q, e, &len) == CC_SPACE) {
        if (sp->s[q] == '\r' || sp->s[q] == '\n') {
            after_nl = q + len;
        }
        last = q;
        q += len;
        cnt++;
    }
    if (nl && after_nl) {
        return after_nl;
    }
    return (cnt > 1 && q < e) ? last : q;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void gpt2_stage(split_t *sp, unsigned st, size_t b, size_t e)
{
    size_t p = b;
    while (p < e && sp->rc == ST_OK) {
        size_t len, q;
        if (sp->s[p] == '\'' && (q = contraction(sp, p, e, false)) > 0) {
            piece(sp, st + 1, p, p + q);
            p += q;
            continue;
        }
        int c = cls_at(sp, p, e, &len);
        size_t w = p; /* where the run after an optional leading space starts */
        if (sp->s[p] == ' ') {
            size_t l2;
            int c2 = cls_at(sp, p + 1, e, &l2);
            if (c2 >= 0 && c2 != CC_SPACE) {
                c = c2;
                w = p + 1;
            }
        }
        if (c == CC_SPACE) {
            q = space_end(sp, p, e, false);
        } else {
            q = skip_cls(sp, w, e, c, UINT32_MAX);
        }
        piece(sp, st + 1, p, q);
        p = q;
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static void llama3_stage(split_t *sp, unsigned st, size_t b, size_t e)
{
    size_t p = b;
    while (p < e && sp->rc == ST_OK) {
        size_t len, l2, q;
        if (sp->s[p] == '\'' && (q = contraction(sp, p, e, true)) > 0) {
            piece(sp, st + 1, p, p + q);
            p += q;
            continue;
        }
        int c = cls_at(sp, p, e, &len);
        bool crlf = sp->s[p] == '\r' || sp->s[p] == '\n';
        int c2 = cls_at(sp, p + len, e, &l2);
        if (c == CC_LETTER || (!crlf && c != CC_NUMBER && c2 == CC_LETTER)) {
            /* a letter run, with one optional leading non-letter/number/newline character */
            q = skip_cls(sp, p + len, e, CC_LETTER, UINT32_MAX);
        } else if (c == CC_NUMBER) {
            q = skip_cls(sp, p, e, CC_NUMBER, 3);
        } else if (c == CC_OTHER || (sp->s[p] == ' ' && c2 == CC_OTHER)) {
            q = skip_cls(sp, c == CC_OTHER ? p : p + 1, e, CC_OTHER, UINT32_MAX);
            while (q < e && (sp->s[q] == '\r' || sp->s[q] == '\n')) {
                q++;
            }
        } else {
            q = space_end(sp, p, e, true);
        }
        piece(sp, st + 1, p, q);
        p = q;
    }
}

static void regex_stage(split_t *sp, unsigned st, size_t b, size_t e)
{
    rm_t m = {.re = &sp->kind->stages[st], .s = sp->s, .n = sp->n, .lo = b, .end = e};
    size_t p = b, gap = b;
    while (p < e && sp->rc == ST_OK) {
        size_t mend, skip;
        if (rm_try(&m, p, &mend, &skip)) {
            piece(sp, st + 1, gap, p); /* the unmatched text before the match */
            piece(sp, st + 1, p, mend);
            p = gap = mend;
        } else {
            p = skip;
        }
    }
    piece(sp, st + 1, gap, e);
}

static void run_stage(split_t *sp, unsigned st, size_t b, size_t e)
{
    const re_t *re = &sp->kind->stages[st];
    if (!sp->use_ref && re->scanner == SCAN_GPT2) {
        gpt2_stage(sp, st, b, e);
    } else if (!sp->use_ref && re->scanner == SCAN_LLAMA3) {
        llama3_stage(sp, st, b, e);
    } else {
        regex_stage(sp, st, b, e);
    }
}

static int split_impl(pretok_kind_t k, const char *text, size_t len, pretok_span_t *spans,
                      size_t cap, size_t *n, bool use_ref)
{
    *n = 0;
    if ((unsigned)k >= PRETOK_KIND_COUNT || len >= UINT32_MAX || (!text && len)) {
        return ST_INVAL;
    }
    pthread_once(&g_once, compile_all);
    if (!g_kinds[k].ok) {
        return ST_INVAL; /* a pattern failed to compile: a bug, caught by the unit tests */
    }
    split_t sp = {.s = (const uint8_t *)text,
                  .n = len,
                  .kind = &g_kinds[k],
                  .use_ref = use_ref,
                  .spans = spans,
                  .cap = cap,
                  .rc = ST_OK};
    piece(&sp, 0, 0, len);
    *n = sp.count;
    return sp.rc;
}

int pretok_split(pretok_kind_t k, const char *text, size_t len, pretok_span_t *spans, size_t cap,
                 size_t *n)
{
    return split_impl(k, text, len, spans, cap, n, false);
}

int pretok_split_ref(pretok_kind_t k, const char *text, size_t len, pretok_span_t *spans,
                     size_t cap, size_t *n)
{
    return split_impl(k, text, len, spans, cap, n, true);
}
