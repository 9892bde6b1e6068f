/*
 * buf.h - growable byte buffer (value type, caller-owned storage) and (ptr,len) slices.
 *
 * A sy_buf_t always keeps data NUL-terminated when cap > 0 so it can be used as a C string.
 * Does not: shrink automatically.
 * Thread-safety: none; a buffer belongs to one thread at a time.
 */
#ifndef SY_BUF_H
#define SY_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sy_slice {
    const char *ptr;
    size_t len;
} sy_slice_t;

/* True if s holds exactly the NUL-terminated string lit. */
bool sy_slice_eq(sy_slice_t s, const char *lit);

typedef struct sy_buf {
    char *data; /* owned; NULL when cap == 0 */
    size_t len;
    size_t cap;
} sy_buf_t;

#define SY_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void sy_buf_init(sy_buf_t *b);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void sy_buf_deinit(sy_buf_t *b);
/* Ensures room for `extra` more bytes (+ NUL). ST_OK or ST_NOMEM. */
int sy_buf_reserve(sy_buf_t *b, size_t extra);
int sy_buf_append(sy_buf_t *b, const void *data, size_t len);
int sy_buf_append_str(sy_buf_t *b, const char *s);
int sy_buf_append_char(sy_buf_t *b, char c);
/* Formats an error message into err[0..errlen) (err NULL or errlen 0: nothing). */
void sy_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int sy_buf_appendf(sy_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sy_buf_vappendf(sy_buf_t *b, const char *fmt, va_list ap);
/* Appends s as the body of a JSON string (no quotes added): escapes ", \, control characters.
 * Invalid UTF-8 bytes are replaced with U+FFFD. */
/* Decodes the UTF-8 sequence at s[0..len): its length (1..4) with *cp set (cp may be NULL), or
 * 0 when it is invalid (overlong, surrogate, past U+10FFFF, truncated, stray continuation). */
size_t sy_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

int sy_buf_append_json_str(sy_buf_t *b, const char *s, size_t len);
/* Appends a decimal integer (faster than appendf). */
int sy_buf_append_i64(sy_buf_t *b, int64_t v);
/* Removes the first n bytes (n <= len). */
void sy_buf_consume(sy_buf_t *b, size_t n);
void sy_buf_reset(sy_buf_t *b);

/* Returns true if s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool sy_utf8_valid(const char *s, size_t len);
/* Length of the longest prefix of s[0..len) that does not end inside a UTF-8 sequence. */
size_t sy_utf8_complete_prefix(const char *s, size_t len);

#endif
