/*
 * gw_proxy_int.h - private to gw_proxy.c and its tests / fuzz harness: the request-reading half
 * of the proxy, callable without an HTTP exchange. gw_proxy_prepare validates a generation body
 * exactly as the engine does (api_parse_gen_json with the model's own api_t) and computes what the
 * scheduler needs: the model, the estimated tokens, the precise block hashes (from the validator's
 * prompt token ids) and the approximate chunk hashes (from the prompt text).
 * Does not: pick, forward or answer; touch any endpoint.
 * Thread-safety: event-loop thread only (uses the proxy's validators).
 */
#ifndef SY_GW_PROXY_INT_H
#define SY_GW_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/api.h"
#include "gateway/gw_proxy.h"

#define GW_MAX_HASHES 4096 /* precise blocks considered per request (64k tokens of 16) */
#define GW_MAX_CHUNKS 256  /* approximate chunks (llm-d's maxPrefixBlocks) */

/* One prepared generation request. Free with gw_prep_deinit. */
typedef struct gw_prep {
    char *model;         /* served name the request targets (owned) */
    bool stream;         /* "stream": true */
    uint32_t est_tokens; /* prompt tokens (exact with a tokenizer, chars/4 without) + output */
    uint32_t prompt_tokens; /* prompt tokens alone (exact with a tokenizer, chars/4 without) */
    int64_t max_tokens;     /* the request's max_tokens, -1 when not given */
    char *body;             /* owned: the body to forward when governance rewrote it (masked
                             * prompt), else NULL (forward the client's body) */
    size_t body_len;
    char *text;             /* owned: the prompt text as forwarded, when asked for (guard hook) */
    size_t text_len;
    uint64_t *hashes;    /* precise block hashes (owned), NULL when not computed */
    size_t n_hashes;
    uint64_t chunks[GW_MAX_CHUNKS]; /* approximate chunk hashes */
    size_t n_chunks;
} gw_prep_t;

/* Validates body[0..len) as a /v1/chat/completions (chat) or /v1/completions body and fills *out.
 * ST_OK, or the validator's status (ST_INVAL / ST_NOTFOUND / ST_NOMEM) with *err filled exactly as
 * the engine would answer (status, type, message, param); out is then empty. Never crashes on any
 * input. Borrows body. */
int gw_proxy_prepare(gw_proxy_t *p, const char *body, size_t len, bool chat, gw_prep_t *out,
                     api_err_t *err);
/* Frees out's storage and zeroes it. NULL ok. */
void gw_prep_deinit(gw_prep_t *out);

#endif
