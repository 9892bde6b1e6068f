/*
 * gen_unicode_tables.c - build-time generator of the Unicode tables used by src/engine/pretok.c.
 *
 * Usage: gen_unicode_tables UnicodeData.txt OUT.h
 * Reads UnicodeData.txt (Debian package unicode-data: /usr/share/unicode/UnicodeData.txt) and
 * writes a C header with
 *   - a range table: sorted range starts and the PRETOK_CP_* flags of each range (a range runs
 *     to the next start), covering U+0000..U+10FFFF, ending with a sentinel at 0x110000;
 *   - the simple lowercase mapping (field 13) as sorted (code point, lowercase) pairs.
 * Categories are grouped the way llama.cpp groups them (L*, N*, P*, S*, M*, Z*, C* except Cn);
 * code points absent from the file (Cn) are UNASSIGNED. WHITESPACE is the White_Space
 * property of PropList.txt, listed below (it is not derivable from UnicodeData.txt).
 * Does not: read any other file, or depend on the host locale. Output is deterministic.
 * Thread-safety: a single-threaded command-line program.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keep in sync with the PRETOK_CP_* flags in src/engine/pretok.h. */
enum {
    F_LETTER = 1u << 0,
    F_NUMBER = 1u << 1,
    F_PUNCT = 1u << 2,
    F_SYMBOL = 1u << 3,
    F_MARK = 1u << 4,
    F_SEPARATOR = 1u << 5,
    F_CONTROL = 1u << 6,
    F_WHITESPACE = 1u << 7,
    F_LOWERCASE = 1u << 8,
    F_UPPERCASE = 1u << 9,
    F_UNASSIGNED = 1u << 10,
};

#define MAX_CP 0x110000u
#define MAX_LOWER 4096

static uint16_t g_flags[MAX_CP];
static uint32_t g_lower[MAX_LOWER][2];
static size_t g_n_lower;

/* Flags of a two-letter General_Category value, or 0 when it is not one we know. */
static unsigned category_flags(const char *gc)
{
    switch (gc[0]) {
    case 'L':
        return F_LETTER | (gc[1] == 'l' ? F_LOWERCASE : 0) | (gc[1] == 'u' ? F_UPPERCASE : 0);
    case 'N':
        return F_NUMBER;
    case 'P':
        return F_PUNCT;
    case 'S':
        return F_SYMBOL;
    case 'M':
        return F_MARK;
    case 'Z':
        return F_SEPARATOR;
    case 'C':
        return gc[1] == 'n' ? F_UNASSIGNED : F_CONTROL;
    default:
        return 0;
    }
}

/* Splits line at ';' into at most max fields (NUL-terminating each); returns the count. */
static int split_fields(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        fields[n++] = p;
        char *semi = strchr(p, ';');
        if (!semi) {
            break;
        }
        *semi = '\0';
        p = semi + 1;
    }
    return n;
}

static int parse_hex(const char *s, uint32_t *out)
{
    char *end;
    if (!*s) {
        return -1;
    }
    unsigned long v = strtoul(s, &end, 16);
    if (*end != '\0' || v >= MAX_CP) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int read_unicode_data(FILE *f, const char *path)
{
    char line[1024];
    unsigned lineno = 0;
    uint32_t first = 0;
    int in_range = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) {
            continue;
        }
        char *fld[16];
        int nf = split_fields(line, fld, 16);
        uint32_t cp;
        if (nf < 14 || parse_hex(fld[0], &cp) != 0 || strlen(fld[2]) != 2) {
            fprintf(stderr, "%s:%u: malformed line\n", path, lineno);
            return -1;
        }
        unsigned fl = category_flags(fld[2]);
        if (!fl) {
            fprintf(stderr, "%s:%u: unknown category '%s'\n", path, lineno, fld[2]);
            return -1;
        }
        size_t nlen = strlen(fld[1]);
        if (nlen >= 8 && strcmp(fld[1] + nlen - 8, ", First>") == 0) {
            first = cp;
            in_range = 1;
            continue;
        }
        uint32_t lo = cp;
        if (nlen >= 7 && strcmp(fld[1] + nlen - 7, ", Last>") == 0) {
            if (!in_range || first > cp) {
                fprintf(stderr, "%s:%u: Last without First\n", path, lineno);
                return -1;
            }
            lo = first;
        }
        in_range = 0;
        for (uint32_t c = lo; c <= cp; c++) {
            g_flags[c] = (uint16_t)fl;
        }
        uint32_t lower;
        if (fld[13][0] && parse_hex(fld[13], &lower) == 0 && lower != cp) {
            if (g_n_lower >= MAX_LOWER) {
                fprintf(stderr, "%s: too many lowercase mappings\n", path);
                return -1;
            }
            g_lower[g_n_lower][0] = cp;
            g_lower[g_n_lower][1] = lower;
            g_n_lower++;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s UnicodeData.txt OUT.h\n", argv[0]);
        return 2;
    }
    for (uint32_t c = 0; c < MAX_CP; c++) {
        g_flags[c] = F_UNASSIGNED;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    int rc = read_unicode_data(in, argv[1]);
    fclose(in);
    if (rc != 0) {
        return 1;
    }
    /* White_Space (PropList.txt), the set llama.cpp and Python's \s use. */
    static const uint32_t ws[] = {0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x0020, 0x0085,
                                  0x00A0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                                  0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028,
                                  0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        g_flags[ws[i]] |= F_WHITESPACE;
    }

    /* Write to a temporary name first so a failed run never leaves a half-written header. */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]) >= (int)sizeof tmp) {
        fprintf(stderr, "output path too long\n");
        return 1;
    }
    FILE *out = fopen(tmp, "w");
    if (!out) {
        perror(tmp);
        return 1;
    }
    fprintf(out,
            "/* Generated by scripts/gen_unicode_tables.c from UnicodeData.txt. Do not edit. */\n");
    fprintf(out, "#include <stdint.h>\n\n");
    size_t n_ranges = 0;
    fprintf(out, "static const uint32_t pretok_range_start[] = {\n");
    for (uint32_t c = 0; c < MAX_CP; c++) {
        if (c == 0 || g_flags[c] != g_flags[c - 1]) {
            fprintf(out, "0x%06X,%s", c, (++n_ranges % 8) ? " " : "\n");
        }
    }
    fprintf(out, "0x110000};\n\n");
    fprintf(out, "static const uint16_t pretok_range_flags[] = {\n");
    size_t k = 0;
    for (uint32_t c = 0; c < MAX_CP; c++) {
        if (c == 0 || g_flags[c] != g_flags[c - 1]) {
            fprintf(out, "0x%04X,%s", g_flags[c], (++k % 10) ? " " : "\n");
        }
    }
    fprintf(out, "0x%04X};\n\n", F_UNASSIGNED);
    fprintf(out, "#define PRETOK_N_RANGES %zu /* entries before the sentinel */\n\n", n_ranges);
    /* The same flags for U+0000..U+007F, indexed directly (the common case). */
    fprintf(out, "static const uint16_t pretok_ascii_flags[128] = {\n");
    for (uint32_t c = 0; c < 128; c++) {
        fprintf(out, "0x%04X,%s", g_flags[c], (c % 10 == 9) ? "\n" : " ");
    }
    fprintf(out, "};\n\n");
    /* UnicodeData.txt is sorted by code point, so the lowercase pairs are too. */
    fprintf(out, "static const uint32_t pretok_lower_map[][2] = {\n");
    for (size_t i = 0; i < g_n_lower; i++) {
        fprintf(out, "{0x%06X, 0x%06X},%s", g_lower[i][0], g_lower[i][1],
                (i % 4 == 3) ? "\n" : " ");
    }
    fprintf(out, "};\n\n#define PRETOK_N_LOWER %zu\n", g_n_lower);
    if (fclose(out) != 0 || rename(tmp, argv[2]) != 0) {
        perror(argv[2]);
        return 1;
    }
    return 0;
}
