/*
 * api.h - the engine's OpenAI-compatible HTTP API, as vLLM serves it (spec §1):
 *   POST /v1/completions, POST /v1/chat/completions (JSON or SSE streaming),
 *   GET /v1/models, GET /health, GET /metrics, POST /tokenize, POST /detokenize, GET /version.
 * It validates requests (vLLM's nested error body and status codes on every failure), tokenizes
 * prompts, renders chat templates, submits requests to the engine core and turns the core's
 * deltas into JSON responses or SSE chunks. A client that disconnects aborts its request.
 *
 * Exchange state machine (one per accepted generation request, api.c):
 *   SUBMITTED --first delta--> STREAMING (stream) / COLLECTING (non-stream)
 *   any --finished delta--> DONE (response written, exchange freed)
 *   any --client closed--> DONE (core request aborted, blocks freed at once)
 * Logprobs: completions `logprobs: int` and chat `logprobs: bool` + `top_logprobs: int` are
 * validated as vLLM does and formatted in vLLM's shapes (completions {text_offset,
 * token_logprobs, tokens, top_logprobs}; chat {content: [{token, logprob, bytes, top_logprobs}]}),
 * in full responses and per SSE chunk.
 * Does not: own the HTTP server or the core (both borrowed); prompt_logprobs (501, and so is
 * echo with logprobs, which needs them); logprobs with the sim executor (501 naming --model).
 * Thread-safety: event-loop thread only.
 */
#ifndef SY_API_H
#define SY_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/metrics.h"
#include "engine/chat_tmpl.h"
#include "engine/engine_core.h"
#include "engine/tokenizer.h"
#include "http/http_server.h"

typedef struct api api_t;

typedef struct api_config {
    const char *const *model_names; /* served names, first is the canonical one (borrowed) */
    size_t n_model_names;
    uint32_t max_model_len;
    uint64_t kv_capacity_tokens;       /* num_blocks * block_size: prompts above can never run */
    const char *api_key;               /* NULL = no auth (borrowed) */
    bool enable_prompt_tokens_details; /* usage.prompt_tokens_details.cached_tokens */
    const tok_t *tok;                  /* borrowed */
    const chat_tmpl_t *tmpl;           /* borrowed, static */
    mx_registry_t *metrics;            /* borrowed; rendered at /metrics */
    const char *version;               /* for /version */
    /* No tokenizer for this model (the gateway in front of engines with another vocabulary):
     * text prompts and chat messages are checked but neither rendered nor tokenized (the request
     * comes back with prompt NULL and n_prompt 0, and no prompt-length limit is applied to it);
     * token-id prompts skip the vocabulary check but keep the length limits. tok and tmpl may
     * then be NULL. */
    bool skip_token_checks;
    /* Logprobs (vLLM's --max-logprobs): the largest top-logprobs count a request may ask for,
     * -1 = the whole vocabulary; used when max_logprobs_set, else vLLM's default 20. A
     * request's -1 ("whole vocab", newer vLLM) counts as the vocabulary size and is refused
     * unless that fits. */
    int32_t max_logprobs;
    bool max_logprobs_set;
    /* The executor has no token distribution (the sim): logprobs requests get a 501 naming
     * --model instead of invented numbers. */
    bool no_logprobs;
} api_config_t;

/* Returns owned API state (free with api_destroy) or NULL. cfg is copied (pointers borrowed). */
api_t *api_create(const api_config_t *cfg);
/* Sets the core (borrowed); must be called before serving. The core's on_output must be
 * api_on_output with udata = this api. */
void api_set_core(api_t *a, ecore_t *core);
/* Aborts and frees every in-flight exchange (their HTTP exchanges are closed by the caller
 * destroying the server). NULL ok. */
void api_destroy(api_t *a);

/* http_on_request_cb: udata is the api_t. */
void api_on_request(http_req_t *req, void *udata);
/* ecore_on_output_cb: udata is the request's exchange (api.c sets it in ecore_req_create). */
void api_on_output(ecore_req_t *r, const ecore_delta_t *d, void *udata);

/* ---- request validation (exposed for unit tests and the fuzz harness) ---- */

typedef enum api_kind { API_COMPLETION = 0, API_CHAT = 1 } api_kind_t;

/* A validated generation request. All pointers owned; free with api_gen_req_deinit. */
typedef struct api_gen_req {
    api_kind_t kind;
    char *model; /* the served name to echo in responses */
    bool stream, include_usage, continuous_usage, echo;
    int32_t *prompt;
    uint32_t n_prompt;
    char *echo_text; /* prompt text for echo (completions) */
    seq_sampling_t sp;
    int32_t top_logprobs; /* chat: requested top_logprobs (-1 = all); completions: logprobs */
    char **stop;
    size_t n_stop;
    int32_t *stop_ids;
    size_t n_stop_ids;
    bool include_stop_str_in_output, skip_special_tokens;
    char *cache_salt;
    char *request_id; /* body "request_id", or NULL */
    /* kv_transfer_params (vLLM's NixlConnector shape, research/vllm-interfaces.md §5.2) */
    bool kv_remote_decode; /* do_remote_decode: prefill here, keep the KV for a decode engine */
    char *kv_host;         /* do_remote_prefill with valid remote_* fields: where to pull */
    int kv_port;
    char *kv_lease;      /* remote_request_id */
    uint32_t *kv_blocks; /* remote_block_ids (the first group when nested) */
    uint32_t kv_n_blocks;
} api_gen_req_t;

/* An error to answer with: status, vLLM error type, message, offending parameter (or NULL). */
typedef struct api_err {
    int status;
    const char *type;
    const char *param;
    char msg[512];
} api_err_t;

/* Parses and validates a /v1/completions or /v1/chat/completions body against a's config
 * (model names, context length, tokenizer, chat template). ST_OK with *out filled, or ST_INVAL /
 * ST_NOTFOUND / ST_NOMEM with *err filled (out is then empty). Never crashes on any input.
 * Same as api_load_body followed by api_parse_gen_json. */
int api_parse_gen_request(const api_t *a, const char *body, size_t len, api_kind_t kind,
                          api_gen_req_t *out, api_err_t *err);

struct json_t; /* jansson */
/* The first half of api_parse_gen_request, for callers that look at the body themselves (the
 * gateway picks a model's api_t from the parsed body): UTF-8, JSON syntax, top-level object.
 * ST_OK with *root owned by the caller (json_decref), or ST_INVAL with *err filled and *root
 * NULL. Pure; any thread. */
int api_load_body(const char *body, size_t len, struct json_t **root, api_err_t *err);
/* The second half: validates an object returned by api_load_body (borrowed, not modified)
 * against a's config, from the "model" check on. Results as api_parse_gen_request. */
int api_parse_gen_json(const api_t *a, struct json_t *root, api_kind_t kind, api_gen_req_t *out,
                       api_err_t *err);
void api_gen_req_deinit(api_gen_req_t *r);

/* While draining, /health answers 503 and new generation requests get 503. */
void api_set_draining(api_t *a, bool draining);
/* Generation requests in flight. */
size_t api_num_inflight(const api_t *a);

#endif
