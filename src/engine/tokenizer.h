/*
 * tokenizer.h - the tokenizer interface every caller uses (engine API, scheduler output
 * processing, /tokenize, /detokenize, later the gateway). Implementations plug in through a
 * vtable: the built-in byte-level tokenizer today (tok_byte_create), GGUF tokenizers later,
 * without touching callers.
 *
 * The built-in byte-level tokenizer: ids 0..255 are the raw bytes, then the specials
 *   256 "<s>" (BOS), 257 "</s>" (EOS), 258 "<|im_start|>", 259 "<|im_end|>"; vocab size 260.
 * It adds BOS when asked to add special tokens; special-token strings in text are recognised
 * only when parse_special is true (chat templates render them as text).
 * Does not: normalise text.
 * Thread-safety: a tok_t is immutable after creation; all functions may run concurrently.
 * tok_stream_t is per-sequence state owned by one thread.
 */
#ifndef SY_TOKENIZER_H
#define SY_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef struct tok tok_t;

typedef struct tok_vtable {
    const char *name;
    /* Encodes text[0..len) into out (capacity cap). See tok_encode. */
    int (*encode)(const tok_t *t, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t *out, size_t cap, size_t *n_out);
    /* Appends the bytes of token id to out. prev_id is the previous token of the stream (-1 at
     * the start), for tokenizers whose pieces depend on it (SentencePiece's leading space). */
    int (*append_piece)(const tok_t *t, int32_t prev_id, int32_t id, bool skip_special,
                        sy_buf_t *out);
    /* Text of a token as a display string for /tokenize return_token_strs (appended to out). */
    int (*token_str)(const tok_t *t, int32_t id, sy_buf_t *out);
    bool (*is_special)(const tok_t *t, int32_t id);
    void (*destroy)(tok_t *t);
} tok_vtable_t;

/* Base struct: implementations embed it as their first member. */
struct tok {
    const tok_vtable_t *vt;
    int32_t vocab_size;
    int32_t bos_id; /* -1 if none */
    int32_t eos_id; /* -1 if none */
    bool add_bos;   /* add BOS when add_special is requested */
};

/* Upper bound on tokens produced for len input bytes by any tokenizer (cap for tok_encode). */
#define TOK_MAX_TOKENS(len) ((len) + 8)

/* Returns the built-in byte-level tokenizer (owned; free with tok_destroy), or NULL. */
tok_t *tok_byte_create(void);
/* Accepts NULL. */
void tok_destroy(tok_t *t);

/* Encodes text. add_special: prepend BOS if the tokenizer's add_bos says so. parse_special:
 * recognise special-token strings in text. Writes at most cap ids to out and sets *n_out.
 * ST_OK, ST_LIMIT (cap too small; use TOK_MAX_TOKENS(len)), ST_INVAL. */
int tok_encode(const tok_t *t, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t *out, size_t cap, size_t *n_out);
/* Decodes ids into out (appended). Invalid UTF-8 produced by byte tokens is replaced with U+FFFD.
 * ST_OK, ST_INVAL (an id out of range), ST_NOMEM. */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, bool skip_special, sy_buf_t *out);
int tok_token_str(const tok_t *t, int32_t id, sy_buf_t *out);
/* Appends the raw bytes of token id as a mid-stream piece: SentencePiece's leading space kept
 * (as vLLM restores it for logprob token strings), special tokens rendered, byte tokens as
 * their byte (possibly an incomplete UTF-8 sequence). ST_OK, ST_INVAL (bad id), ST_NOMEM. */
int tok_piece(const tok_t *t, int32_t id, sy_buf_t *out);
/* Appends s[0..len) with invalid UTF-8 replaced as Python's bytes.decode("utf-8",
 * errors="replace") does (one U+FFFD per maximal ill-formed subpart). ST_OK or ST_NOMEM. */
int tok_utf8_repair(const char *s, size_t len, sy_buf_t *out);
bool tok_is_special(const tok_t *t, int32_t id);
static inline int32_t tok_vocab_size(const tok_t *t)
{
    return t->vocab_size;
}
static inline int32_t tok_eos(const tok_t *t)
{
    return t->eos_id;
}
static inline int32_t tok_bos(const tok_t *t)
{
    return t->bos_id;
}

/* Incremental detokenizer: feeds ids one by one and emits only whole UTF-8 characters, so a
 * stream never carries half a character. Caller-owned storage. */
typedef struct tok_stream {
    sy_buf_t _pending; /* bytes of an unfinished UTF-8 sequence */
    int32_t _prev;
} tok_stream_t;

void tok_stream_init(tok_stream_t *s);
void tok_stream_deinit(tok_stream_t *s);
/* Appends the text completed by id to out. ST_OK, ST_INVAL (bad id), ST_NOMEM. */
int tok_stream_push(const tok_t *t, tok_stream_t *s, int32_t id, bool skip_special, sy_buf_t *out);
/* End of stream: flushes any unfinished bytes as U+FFFD. */
int tok_stream_finish(const tok_t *t, tok_stream_t *s, sy_buf_t *out);

#endif
