/*
 * gov_pii.c - the personal-data detectors of gov_pii.h: byte scanners, no regexes.
 *
 * Every detector looks for a cheap trigger (the '@' of an e-mail, a digit, '+' or '(' for phones,
 * a digit for cards, letter-letter-digit-digit for IBANs), checks the left context, then reads a
 * bounded candidate forward and validates it (structure, Luhn, mod-97). A rejected candidate costs
 * at most its bounded read; later trigger positions inside the same digit run fail the left-context
 * check in O(1), so a scan is linear in the text length.
 * Thread-safety: pure; any thread.
 */
#include "gov/gov_pii.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define EMAIL_LOCAL_MAX 64
#define EMAIL_DOMAIN_MAX 253
#define PHONE_MAX_GROUPS 8
#define PHONE_MAX_DIGITS 17 /* reading stops past this: longer runs are not phone numbers */
#define CARD_MIN 13
#define CARD_MAX 19
#define IBAN_MIN 15
#define IBAN_MAX 34

static const char *const kind_names[GPII_N] = {"email", "phone", "card", "iban"};

const char *gpii_name(gpii_kind_t k)
{
    return (unsigned)k < GPII_N ? kind_names[k] : "?";
}

int gpii_kind_parse(const char *s)
{
    for (int k = 0; k < GPII_N; k++)
        if (strcmp(s, kind_names[k]) == 0)
            return k;
    return -1;
}

/* locale-free ASCII classes */
static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}
static inline bool is_alpha(unsigned char c)
{
    return (unsigned char)((c | 0x20) - 'a') < 26;
}
static inline bool is_alnum(unsigned char c)
{
    return is_digit(c) || is_alpha(c);
}
static inline bool is_word(unsigned char c)
{
    return is_alnum(c) || c == '_';
}

/* The offset of the first ASCII digit in t[i..len), or len. 16 bytes at a time with SSE2
 * (unsigned c - '0' <= 9), else 8 at a time: x ^ 0x30 maps exactly the digits to 0..9, and "some
 * byte < 10" is the classic has-less-than word test. */
static size_t next_digit(const unsigned char *t, size_t len, size_t i)
{
#ifdef __SSE2__
    const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9);
    while (i + 16 <= len) {
        __m128i v = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)(t + i)), zero);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, nine), v));
        if (m)
            return i + (size_t)__builtin_ctz(m);
        i += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (i + 8 <= len) {
        uint64_t x;
        memcpy(&x, t + i, 8);
        x ^= 0x3030303030303030ull;
        if ((x - ones * 10) & ~x & highs)
            break;
        i += 8;
    }
#endif
    while (i < len && !is_digit(t[i]))
        i++;
    return i;
}

/* True when a number starting at t[i] continues something on its left: a word character, or a
 * separator right after a digit group that is a number of its own (not the tail of a word such as
 * "v2"). Separators: ' ' - . , and for phones also / : */
static bool glued_left(const unsigned char *t, size_t i, bool phone)
{
    if (i == 0)
        return false;
    unsigned char p = t[i - 1];
    if (is_word(p) || p == '@')
        return true;
    bool sep = p == ' ' || p == '-' || p == '.' || p == ',' || (phone && (p == '/' || p == ':'));
    if (i < 2 || !sep || !is_digit(t[i - 2]))
        return false;
    /* walk back over the digit group before the separator (bounded) */
    size_t j = i - 2, steps = 0;
    while (j > 0 && is_digit(t[j - 1]) && steps < 32) {
        j--;
        steps++;
    }
    return !(j > 0 && (is_alpha(t[j - 1]) || t[j - 1] == '_'));
}

/* ------------------------------------------------------------------------------------------ */
/* checksums                                                                                   */

bool gpii_luhn_ok(const char *digits, size_t n)
{
    if (n == 0)
        return false;
    unsigned sum = 0;
    bool dbl = false;
    for (size_t i = n; i-- > 0;) {
        unsigned char c = (unsigned char)digits[i];
        if (!is_digit(c))
            return false;
        unsigned d = c - '0';
        if (dbl) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

static inline unsigned mod97_add(unsigned rem, unsigned char c)
{
    if (is_digit(c))
        return (rem * 10 + (c - '0')) % 97;
    return (rem * 100 + (unsigned)((c | 0x20) - 'a' + 10)) % 97;
}

bool gpii_iban_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n < IBAN_MIN || n > IBAN_MAX || !is_alpha(u[0]) || !is_alpha(u[1]) || !is_digit(u[2]) ||
        !is_digit(u[3]))
        return false;
    unsigned rem = 0;
    for (size_t i = 4; i < n + 4; i++) {
        unsigned char c = u[i < n ? i : i - n]; /* the first four characters go to the end */
        if (!is_alnum(c))
            return false;
        rem = mod97_add(rem, c);
    }
    return rem == 1;
}

/* ------------------------------------------------------------------------------------------ */
/* e-mail                                                                                      */

static inline bool is_local(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* The end of a valid domain starting at t[p], or 0. */
static size_t email_domain_end(const unsigned char *t, size_t len, size_t p)
{
    size_t limit = len - p > EMAIL_DOMAIN_MAX ? p + EMAIL_DOMAIN_MAX : len;
    size_t good = 0, labels = 0;
    while (p < limit && is_alnum(t[p])) {
        size_t q = p;
        bool alpha = true;
        while (q < limit && (is_alnum(t[q]) || t[q] == '-')) {
            alpha = alpha && is_alpha(t[q]);
            q++;
        }
        if (t[q - 1] == '-')
            break; /* a label never ends with '-' */
        labels++;
        if (labels >= 2 && alpha && q - p >= 2)
            good = q;
        if (q + 1 < limit && t[q] == '.' && is_alnum(t[q + 1]))
            p = q + 1;
        else
            break;
    }
    /* the address ends at a word boundary (a longer label is a different, invalid domain) */
    if (good && good < len && (is_word(t[good]) || t[good] == '-' || t[good] == '@'))
        return 0;
    return good;
}

static bool email_next(const unsigned char *t, size_t len, size_t from, size_t *s, size_t *e)
{
    size_t i = from;
    while (i < len) {
        const unsigned char *at = memchr(t + i, '@', len - i);
        if (!at)
            return false;
        size_t a = (size_t)(at - t);
        size_t q = a;
        while (q > from && a - q <= EMAIL_LOCAL_MAX && is_local(t[q - 1]))
            q--;
        bool ok = a - q <= EMAIL_LOCAL_MAX;
        while (q < a && t[q] == '.')
            q++;
        if (ok && q < a && a + 1 < len) {
            size_t d = email_domain_end(t, len, a + 1);
            if (d) {
                *s = q;
                *e = d;
                return true;
            }
        }
        i = a + 1;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* phone numbers                                                                               */

typedef struct ph_group {
    size_t at;        /* offset of the first digit */
    uint8_t n;        /* digits */
    bool paren;       /* written "(123)" */
    char sep;         /* separator before it: 0 (first, or right after a parenthesised group) */
    bool after_paren; /* the separator (if any) follows a ')' */
} ph_group_t;

static inline bool ph_sep(unsigned char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/';
}

/* Reads groups from t[p]; returns the end offset and fills g/ng/digits, or 0 when the run is too
 * long or malformed at its start. */
static size_t ph_read(const unsigned char *t, size_t len, size_t p, ph_group_t *g, size_t *ng,
                      unsigned *digits)
{
    size_t n = 0;
    unsigned d = 0;
    char sep = 0;
    bool after_paren = false;
    for (;;) {
        if (n == PHONE_MAX_GROUPS)
            return 0;
        ph_group_t *cur = &g[n];
        memset(cur, 0, sizeof *cur);
        cur->sep = sep;
        cur->after_paren = after_paren;
        if (p < len && t[p] == '(') {
            size_t q = p + 1;
            while (q < len && is_digit(t[q]) && q - p <= 5)
                q++;
            if (q == p + 1 || q - p > 5 || q >= len || t[q] != ')')
                return 0;
            cur->at = p + 1;
            cur->n = (uint8_t)(q - p - 1);
            cur->paren = true;
            p = q + 1;
        } else {
            size_t q = p;
            while (q < len && is_digit(t[q]) && q - p <= PHONE_MAX_DIGITS)
                q++;
            if (q == p)
                return 0;
            cur->at = p;
            cur->n = (uint8_t)(q - p > 255 ? 255 : q - p);
            p = q;
        }
        d += cur->n;
        n++;
        if (d > PHONE_MAX_DIGITS)
            return 0;
        /* what follows: a separator and another group, a '(' group, or the end */
        after_paren = cur->paren;
        if (p + 1 < len && ph_sep(t[p]) && (is_digit(t[p + 1]) || t[p + 1] == '(')) {
            sep = (char)t[p];
            p++;
        } else if (p < len && t[p] == '(' && !cur->paren) {
            sep = 0;
        } else if (cur->paren && p < len && is_digit(t[p])) {
            sep = 0; /* "(0)20" */
        } else {
            break;
        }
    }
    /* a separator followed by more digits means a longer run that we did not read: not a
     * phone; neither is a number continued by a word character or a decimal part */
    if (p < len && (is_word(t[p]) || t[p] == '@'))
        return 0;
    if (p + 1 < len && (t[p] == ',' || t[p] == '.') && is_digit(t[p + 1]))
        return 0;
    *ng = n;
    *digits = d;
    return p;
}

/* All separators between plain groups (not the one right after a ")") are the same. */
static bool ph_consistent(const ph_group_t *g, size_t n)
{
    char s = 0;
    for (size_t i = 1; i < n; i++) {
        if (g[i].after_paren || g[i].paren)
            continue;
        if (!g[i].sep)
            return false;
        if (s && g[i].sep != s)
            return false;
        s = g[i].sep;
    }
    return true;
}

static bool ph_nanp(const unsigned char *t, const ph_group_t *g, size_t n)
{
    size_t k = 0;
    if (n == 4 && g[0].n == 1 && t[g[0].at] == '1' && !g[0].paren)
        k = 1;
    if (n - k != 3 || g[k].n != 3 || g[k + 1].n != 3 || g[k + 2].n != 4 || g[k + 1].paren ||
        g[k + 2].paren)
        return false;
    if (t[g[k].at] < '2')
        return false;
    if (g[k + 2].sep == 0 || g[k + 2].sep == '/')
        return false;
    if (!g[k].paren && (g[k + 1].sep == 0 || g[k + 1].sep != g[k + 2].sep))
        return false;
    if (k == 1 && !g[1].paren && g[1].sep != g[2].sep)
        return false;
    return true;
}

static bool ph_trunk(const unsigned char *t, const ph_group_t *g, size_t n, unsigned digits)
{
    if (n < 2 || digits < 9 || digits > 11 || g[0].n < 2)
        return false;
    if (t[g[0].at] != '0' || t[g[0].at + 1] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (g[i].n > 8)
            return false;
    return ph_consistent(g, n);
}

/* The end of a phone number starting at t[i], or 0. */
static size_t phone_at(const unsigned char *t, size_t len, size_t i)
{
    ph_group_t g[PHONE_MAX_GROUPS];
    size_t ng = 0;
    unsigned digits = 0;
    if (t[i] == '+') {
        if (i > 0 && (is_word(t[i - 1]) || t[i - 1] == '+'))
            return 0;
        if (i + 1 >= len || t[i + 1] < '1' || t[i + 1] > '9')
            return 0;
        size_t end = ph_read(t, len, i + 1, g, &ng, &digits);
        if (!end || digits < 8 || digits > 15)
            return 0;
        return end;
    }
    if (glued_left(t, i, true))
        return 0;
    size_t end = ph_read(t, len, i, g, &ng, &digits);
    if (!end)
        return 0;
    if (!g[0].paren && g[0].n >= 3 && t[i] == '0' && t[i + 1] == '0' && t[i + 2] != '0' &&
        ng >= 2) {
        /* "00" international prefix */
        unsigned d = digits - 2;
        return d >= 8 && d <= 15 ? end : 0;
    }
    if (ph_nanp(t, g, ng) || ph_trunk(t, g, ng, digits))
        return end;
    return 0;
}

static bool phone_next(const unsigned char *t, size_t len, size_t from, size_t *s, size_t *e)
{
    /* every number starts at a digit, or at a '+' or '(' right before one */
    for (size_t d = next_digit(t, len, from); d < len; d = next_digit(t, len, d + 1)) {
        size_t end;
        if (d > from && (t[d - 1] == '+' || t[d - 1] == '(') && (end = phone_at(t, len, d - 1))) {
            *s = d - 1;
            *e = end;
            return true;
        }
        if ((end = phone_at(t, len, d))) {
            *s = d;
            *e = end;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* payment cards                                                                               */

static bool card_next(const unsigned char *t, size_t len, size_t from, size_t *s, size_t *e)
{
    size_t i = next_digit(t, len, from);
    while (i < len) {
        unsigned char c = t[i];
        if (!is_digit(c)) {
            i = next_digit(t, len, i);
            continue;
        }
        if (c < '2' || c > '6' || glued_left(t, i, false)) {
            i++;
            continue;
        }
        char dig[CARD_MAX + 1];
        size_t n = 0, p = i;
        while (p < len) {
            if (is_digit(t[p])) {
                if (n == CARD_MAX + 1)
                    break;
                dig[n++] = (char)t[p++];
            } else if ((t[p] == ' ' || t[p] == '-') && p + 1 < len && is_digit(t[p + 1])) {
                p++;
            } else {
                break;
            }
        }
        bool ok = n >= CARD_MIN && n <= CARD_MAX;
        if (ok && p < len && (is_word(t[p]) || t[p] == '@'))
            ok = false;
        if (ok && p + 1 < len && (t[p] == '.' || t[p] == ',') && is_digit(t[p + 1]))
            ok = false;
        if (ok && gpii_luhn_ok(dig, n)) {
            *s = i;
            *e = p;
            return true;
        }
        i = p > i ? p : i + 1; /* the rest of this run is glued to its start */
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* IBAN                                                                                        */

/* The end of an IBAN starting at t[i] (two letters and two digits there, left boundary ok), or
 * 0. */
static size_t iban_at(const unsigned char *t, size_t len, size_t i)
{
    char c[IBAN_MAX];
    size_t n = 0, p = i;
    /* compact: the whole word */
    while (p < len && is_alnum(t[p]) && n < IBAN_MAX + 1) {
        if (n < IBAN_MAX)
            c[n] = (char)t[p];
        n++;
        p++;
    }
    if (n > 4) {
        if (n <= IBAN_MAX && (p >= len || !(is_word(t[p]) || t[p] == '@')) && gpii_iban_ok(c, n))
            return p;
        return 0;
    }
    /* grouped: "CCdd" then groups of four separated by single spaces, the last one 1..4 */
    size_t ends[IBAN_MAX / 4 + 2], lens[IBAN_MAX / 4 + 2], ne = 0;
    n = 4;
    memcpy(c, t + i, 4);
    p = i + 4;
    while (p + 1 < len && t[p] == ' ' && is_alnum(t[p + 1])) {
        size_t q = p + 1, gl = 0;
        while (q < len && is_alnum(t[q]) && gl < 5) {
            q++;
            gl++;
        }
        if (gl > 4 || n + gl > IBAN_MAX)
            break; /* not a group: the IBAN (if any) ended before */
        memcpy(c + n, t + p + 1, gl);
        n += gl;
        p = q;
        ends[ne] = p;
        lens[ne++] = n;
        if (gl < 4)
            break;
    }
    /* longest candidate first; shorter ones end at a group boundary (followed by a space) */
    while (ne > 0) {
        ne--;
        if (lens[ne] >= IBAN_MIN && gpii_iban_ok(c, lens[ne])) {
            size_t end = ends[ne];
            if (end < len && (is_word(t[end]) || t[end] == '@'))
                return 0;
            return end;
        }
    }
    return 0;
}

static bool iban_next(const unsigned char *t, size_t len, size_t from, size_t *s, size_t *e)
{
    if (len < IBAN_MIN)
        return false;
    /* the first check digit comes two bytes after the start */
    for (size_t d = next_digit(t, len, from + 2); d + 1 < len; d = next_digit(t, len, d + 1)) {
        size_t i = d - 2;
        if (!is_digit(t[i + 3]) || !is_alpha(t[i]) || !is_alpha(t[i + 1]))
            continue;
        if (i > 0 && (is_word(t[i - 1]) || t[i - 1] == '@'))
            continue;
        size_t end = iban_at(t, len, i);
        if (end) {
            *s = i;
            *e = end;
            return true;
        }
    }
    return false;
}

bool gpii_next(gpii_kind_t k, const char *text, size_t len, size_t from, size_t *start, size_t *end)
{
    const unsigned char *t = (const unsigned char *)text;
    if (!text || from >= len)
        return false;
    switch (k) {
    case GPII_EMAIL:
        return email_next(t, len, from, start, end);
    case GPII_PHONE:
        return phone_next(t, len, from, start, end);
    case GPII_CARD:
        return card_next(t, len, from, start, end);
    case GPII_IBAN:
        return iban_next(t, len, from, start, end);
    }
    return false;
}
