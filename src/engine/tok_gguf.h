/*
 * tok_gguf.h - tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata, behind the
 * tokenizer.h vtable: SentencePiece-style BPE with scores and byte fallback
 * (`tokenizer.ggml.model = "llama"`, "SPM") and GPT-2 byte-level BPE with merges and the
 * pre-tokenizer named by `tokenizer.ggml.pre` (`"gpt2"`, "BPE"). Both reproduce llama.cpp's
 * tokenization (its test-tokenizer-0 vectors pass), including special, control and
 * user-defined tokens and its BOS/EOS defaults.
 *
 * The tok_t copies everything it needs at creation (one arena for token texts and decoded
 * pieces, scores, types, hash tables for text lookup and merge ranks); it does not reference the
 * gguf_t afterwards, so the file may be closed.
 * Does not: implement WPM/UGM/RWKV vocabularies, HF's clean_up_tokenization_spaces, or
 * per-model lstrip/rstrip attributes (llama.cpp's phi-3 name hack).
 * Thread-safety: a created tok_t is immutable; every function may run concurrently.
 */
#ifndef SY_TOK_GGUF_H
#define SY_TOK_GGUF_H

#include <stddef.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

/* Builds a tokenizer from g's metadata (g is borrowed, only during the call).
 *
 * Keys read: tokenizer.ggml.model ("llama" or "gpt2"; required), .tokens (required), .scores,
 * .token_type, .merges (required for gpt2), .pre (gpt2 only; absent = "default"),
 * .bos_token_id, .eos_token_id, .unknown_token_id, .padding_token_id, .add_bos_token,
 * .add_eos_token, .add_space_prefix.
 * Defaults when keys are absent are llama.cpp's: SPM bos 1, eos 2, unk 0, add BOS, no EOS, add a
 * space prefix; BPE bos = eos = 11, no unk, no BOS unless the pre-type is llama-bpe/llama3
 * (or tekken, chameleon), no EOS, no space prefix. Default ids outside the vocabulary become -1.
 * tok_encode's add_special prepends BOS when add_bos and appends EOS when add_eos.
 * Encoding allocates one scratch block per call for inputs over a few hundred bytes (about 70
 * bytes per input byte); creation does all other allocation.
 *
 * Decoding SPM drops one leading space from the first normal piece of a decode or stream and
 * from the piece after a control, user-defined or unknown token (SentencePiece's inverse of the
 * space prefix), so tok_decode(tok_encode(text)) == text. A stream that continues a prompt
 * should start from the prompt's last id (tok_stream_t._prev) to keep the first piece's space.
 *
 * Returns the tokenizer (owned; free with tok_destroy), or NULL with a message in err (err may
 * be NULL): an unsupported model or pre-tokenizer name (named in the message), a missing or
 * mistyped key, arrays shorter than the vocabulary, add_bos/add_eos set without the id, or out
 * of memory. */
tok_t *tok_gguf_create(const gguf_t *g, char *err, size_t errlen);

#endif
