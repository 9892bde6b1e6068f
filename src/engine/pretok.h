/*
 * pretok.h - BPE pre-tokenizers named by GGUF's `tokenizer.ggml.pre`, and the Unicode
 * character classes they use.
 *
 * A pre-tokenizer cuts text into spans ("words") before byte-level BPE merges run inside each
 * span. Each kind reproduces llama.cpp's pre-tokenization for that pre-type: the same regex
 * sequence, where each regex splits every span left by the previous one (matches and the text
 * between matches both become spans), with the same Unicode classification (\p{L}, \p{N},
 * \p{P}, \s ...). Spans are byte offsets into the caller's text.
 * Does not: validate UTF-8 (invalid bytes are tolerated, see pretok_split), normalise text,
 * handle special or user-defined tokens (the tokenizer cuts those out first), or allocate.
 * Thread-safety: any thread may call anything concurrently. The patterns are compiled once, on
 * the first pretok_split, into static storage (pthread_once); everything else is pure.
 */
#ifndef SY_PRETOK_H
#define SY_PRETOK_H

#include <stddef.h>
#include <stdint.h>

/* One pre-tokenizer per distinct llama.cpp regex set. */
typedef enum pretok_kind {
    PRETOK_DEFAULT,        /* "default" (and an empty name): llama.cpp's fallback set */
    PRETOK_GPT2,           /* "gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", ... */
    PRETOK_LLAMA3,         /* "llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", ... */
    PRETOK_QWEN2,          /* "qwen2", "stablelm2", "deepseek-r1-qwen", "hunyuan", ... */
    PRETOK_DEEPSEEK_LLM,   /* "deepseek-llm" */
    PRETOK_DEEPSEEK_CODER, /* "deepseek-coder" */
    PRETOK_FALCON,         /* "falcon" */
    PRETOK_STARCODER,      /* "starcoder", "refact", "command-r", "smollm", "codeshell", ... */
    PRETOK_DEEPSEEK3,      /* "deepseek-v3", "hunyuan-dense" */
    PRETOK_PORO,           /* "poro-chat", "bloom", "gpt3-finnish" */
    PRETOK_CHATGLM4,       /* "chatglm-bpe", "glm4" */
    PRETOK_VIKING,         /* "viking" */
    PRETOK_TEKKEN,         /* "tekken" */
    PRETOK_CHAMELEON,      /* "chameleon" */
    PRETOK_GPT4O,          /* "gpt-4o", "llama4", "minimax-m2" */
    PRETOK_BAILINGMOE,     /* "bailingmoe", "bailingmoe2", "llada-moe" */
    PRETOK_SEED_CODER,     /* "seed-coder" */
    PRETOK_KIND_COUNT
} pretok_kind_t;

/* Unicode class flags of a code point (pretok_cp_flags). Categories follow UnicodeData's
 * General_Category the way llama.cpp groups them; WHITESPACE is the White_Space property. */
enum {
    PRETOK_CP_LETTER = 1u << 0,      /* L*  (Lu Ll Lt Lm Lo) */
    PRETOK_CP_NUMBER = 1u << 1,      /* N*  (Nd Nl No) */
    PRETOK_CP_PUNCT = 1u << 2,       /* P*  (Pc Pd Ps Pe Pi Pf Po) */
    PRETOK_CP_SYMBOL = 1u << 3,      /* S*  (Sm Sc Sk So) */
    PRETOK_CP_MARK = 1u << 4,        /* M*  (Mn Mc Me) */
    PRETOK_CP_SEPARATOR = 1u << 5,   /* Z*  (Zs Zl Zp) */
    PRETOK_CP_CONTROL = 1u << 6,     /* C*  assigned (Cc Cf Co Cs) */
    PRETOK_CP_WHITESPACE = 1u << 7,  /* White_Space: \t..\r, space, U+0085, U+00A0, U+1680, ... */
    PRETOK_CP_LOWERCASE = 1u << 8,   /* Ll */
    PRETOK_CP_UPPERCASE = 1u << 9,   /* Lu */
    PRETOK_CP_UNASSIGNED = 1u << 10, /* Cn, or beyond U+10FFFF */
};

/* Returns the PRETOK_CP_* flags of code point cp (any uint32_t; > 0x10FFFF is UNASSIGNED). */
unsigned pretok_cp_flags(uint32_t cp);

/* Returns the simple lowercase mapping of cp (UnicodeData field 13), or cp if it has none. */
uint32_t pretok_cp_lower(uint32_t cp);

/* Maps a tokenizer.ggml.pre value name[0..len) (not NUL-terminated) to a kind: "default" (and
 * ""), "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
 * and llama.cpp's aliases that share a regex set (see the enum). Returns ST_OK with *out set,
 * or ST_NOTFOUND for a name we do not implement (*out untouched); llama.cpp itself warns and
 * falls back to "default" for unknown names, which the caller may choose to do. name may be
 * NULL when len is 0. */
int pretok_kind_from_name(const char *name, size_t len, pretok_kind_t *out);

/* Returns the canonical name of kind k ("gpt-2", "llama-bpe", ...), "?" for an invalid kind. */
const char *pretok_kind_name(pretok_kind_t k);

/* One piece of the input: bytes text[off .. off+len). */
typedef struct pretok_span {
    uint32_t off, len;
} pretok_span_t;

/* Splits text[0..len) (valid UTF-8; borrowed) into consecutive non-empty spans that cover all
 * of it in order, exactly as llama.cpp pre-tokenizes for kind k, writing them to
 * spans[0..cap) and their count to *n. Empty text gives *n = 0. A cap of len spans always
 * suffices. Returns ST_OK; ST_LIMIT when cap is too small (*n then holds the spans written);
 * ST_INVAL for an invalid kind or len >= 2^32. Invalid UTF-8 never crashes: a bad byte is
 * treated as one code point U+FFFD. No allocation; stack use is bounded. */
int pretok_split(pretok_kind_t k, const char *text, size_t len, pretok_span_t *spans, size_t cap,
                 size_t *n);

/* Same contract as pretok_split, but always runs the general regex engine, even for the
 * patterns that have a hand-written scanner (GPT-2's and Llama 3's). The reference path that
 * tests compare the fast path against; slower, otherwise interchangeable. */
int pretok_split_ref(pretok_kind_t k, const char *text, size_t len, pretok_span_t *spans,
                     size_t cap, size_t *n);

#endif
