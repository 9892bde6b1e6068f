/*
 * tok_byte.c - the built-in byte-level tokenizer (see tokenizer.h): ids 0..255 are raw bytes,
 * 256 "<s>" (BOS), 257 "</s>" (EOS), 258 "<|im_start|>", 259 "<|im_end|>". Encoding is one id per
 * byte, except that special-token strings become their id when parse_special is set.
 * Does not: merge bytes (no BPE), or normalise text.
 * Thread-safety: immutable after creation; every function is reentrant.
 */
#include "engine/tokenizer.h"

#include <string.h>

#include "common/alloc.h"
#include "common/status.h"

#define TOK_BYTE_FIRST_SPECIAL 256
#define TOK_BYTE_VOCAB 260

typedef struct tok_byte {
    tok_t super;
} tok_byte_t;

typedef struct special {
    const char *str;
    size_t len;
} special_t;

/* Indexed by id - TOK_BYTE_FIRST_SPECIAL. */
static const special_t k_specials[] = {
    {"<s>", 3},
    {"</s>", 4},
    {"<|im_start|>", 12},
    {"<|im_end|>", 10},
};
#define N_SPECIALS (sizeof k_specials / sizeof k_specials[0])

static bool byte_is_special(const tok_t *t, int32_t id)
{
    (void)t;
    return id >= TOK_BYTE_FIRST_SPECIAL && id < TOK_BYTE_VOCAB;
}

/* Returns the special whose string starts text[0..len) (its id is TOK_BYTE_FIRST_SPECIAL plus
 * its index in k_specials), or NULL. */
static const special_t *match_special(const char *text, size_t len)
{
    for (size_t k = 0; k < N_SPECIALS; k++) {
        if (len >= k_specials[k].len && memcmp(text, k_specials[k].str, k_specials[k].len) == 0)
            return &k_specials[k];
    }
    return NULL;
}

static int byte_encode(const tok_t *t, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t *out, size_t cap, size_t *n_out)
{
    size_t n = 0;
    if (add_special && t->add_bos) {
        if (n >= cap)
            return ST_LIMIT;
        out[n++] = t->bos_id;
    }
    size_t i = 0;
    while (i < len) {
        /* the run up to the next '<' (the only byte a special starts with) is one token a byte */
        const char *lt = parse_special ? memchr(text + i, '<', len - i) : NULL;
        size_t run = (lt ? (size_t)(lt - text) : len) - i;
        if (run > cap - n)
            return ST_LIMIT;
        const unsigned char *u = (const unsigned char *)text + i;
        int32_t *o = out + n;
        for (size_t k = 0; k < run; k++)
            o[k] = (int32_t)u[k];
        n += run;
        i += run;
        if (i >= len)
            break;
        if (n >= cap)
            return ST_LIMIT;
        if (parse_special && text[i] == '<') {
            const special_t *sp = match_special(text + i, len - i);
            if (sp) {
                out[n++] = (int32_t)(TOK_BYTE_FIRST_SPECIAL + (sp - k_specials));
                i += sp->len;
                continue;
            }
        }
        out[n++] = (int32_t)(unsigned char)text[i++];
    }
    *n_out = n;
    return ST_OK;
}

static int byte_append_piece(const tok_t *t, int32_t prev_id, int32_t id, bool skip_special,
                             sy_buf_t *out)
{
    (void)t;
    (void)prev_id;
    if (id < 0 || id >= TOK_BYTE_VOCAB)
        return ST_INVAL;
    if (id < TOK_BYTE_FIRST_SPECIAL)
        return sy_buf_append_char(out, (char)(unsigned char)id);
    if (skip_special)
        return ST_OK;
    const special_t *sp = &k_specials[id - TOK_BYTE_FIRST_SPECIAL];
    return sy_buf_append(out, sp->str, sp->len);
}

static int byte_token_str(const tok_t *t, int32_t id, sy_buf_t *out)
{
    (void)t;
    if (id < 0 || id >= TOK_BYTE_VOCAB)
        return ST_INVAL;
    if (id >= TOK_BYTE_FIRST_SPECIAL) {
        const special_t *sp = &k_specials[id - TOK_BYTE_FIRST_SPECIAL];
        return sy_buf_append(out, sp->str, sp->len);
    }
    if (id >= 0x20 && id < 0x7F)
        return sy_buf_append_char(out, (char)id);
    return sy_buf_appendf(out, "<0x%02X>", (unsigned)id);
}

static void byte_destroy(tok_t *t)
{
    sy_free(t);
}

static const tok_vtable_t k_byte_vt = {
    .name = "byte",
    .encode = byte_encode,
    .append_piece = byte_append_piece,
    .token_str = byte_token_str,
    .is_special = byte_is_special,
    .destroy = byte_destroy,
};

tok_t *tok_byte_create(void)
{
    tok_byte_t *b = sy_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->super.vt = &k_byte_vt;
    b->super.vocab_size = TOK_BYTE_VOCAB;
    b->super.bos_id = 256;
    b->super.eos_id = 257;
    b->super.add_bos = true;
    return &b->super;
}
