/*
 * jsonp.h - a fast, strict JSON reader (RFC 8259) that builds a jansson tree.
 *
 * jansson's own json_loadb reads through a per-character stream and runs at about 100 MB/s, which
 * made a 200 KB prompt cost the gateway 1.5 ms before any routing. jsonp scans strings 16 bytes at
 * a time and hands each string to jansson in one copy, so a body costs about a memcpy of its
 * strings plus the tree's nodes. It accepts exactly what json_loadb(buf, len, 0, ...) accepts
 * (a top-level object or array, jansson's number ranges, no "\u0000", paired surrogates, depth at
 * most JSONP_MAX_DEPTH) and builds an equal tree; tests/fuzz/fuzz_jsonp.c checks that against
 * jansson itself. Duplicate keys: the last one wins, as in jansson. One deliberate difference: a
 * raw NUL byte is always refused (jansson 2.14 skips a NUL that follows a number).
 * Does not: validate UTF-8 (callers check the whole body first: sy_utf8_valid), keep key order
 * beyond what jansson objects keep, or stream.
 * Thread-safety: reentrant; no shared state.
 */
#ifndef SY_JSONP_H
#define SY_JSONP_H

#include <jansson.h>
#include <stddef.h>

#define JSONP_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct jsonp_error {
    char text[128];  /* what is wrong, e.g. "invalid token near 'x'" */
    int line;        /* 1-based line of the offending byte */
    int column;      /* 1-based column (bytes) of the offending byte */
    size_t position; /* byte offset of the offending byte */
} jsonp_error_t;

/* Parses buf[0..len) (borrowed; valid UTF-8 expected). ST_OK with *out set (owned: json_decref),
 * or ST_PROTO with *out NULL and err (may be NULL) filled, or ST_NOMEM. */
int jsonp_load(const char *buf, size_t len, json_t **out, jsonp_error_t *err);

#endif
