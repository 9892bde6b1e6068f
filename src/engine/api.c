/*
 * api.c - the engine's OpenAI-compatible HTTP API (see api.h for the endpoint list and the
 * exchange state machine).
 *
 * Validation follows vLLM: schema/type problems and semantic problems are 400 BadRequestError
 * with a message naming the field, an unknown model is 404 NotFoundError, unsupported features
 * 501 NotImplementedError, a missing/wrong API key 401. Responses are written directly as JSON
 * text into buffers (no DOM on the output path); requests are parsed with jansson.
 *
 * Streaming: every core delta becomes one SSE chunk (the text produced since the previous
 * wakeup); the chunk carrying the last token also carries finish_reason; then an optional usage
 * chunk with "choices": [], then "data: [DONE]". The engine never waits for a slow reader: a
 * request's output is bounded by its max_tokens, so the connection's queue is bounded too.
 * Thread-safety: event-loop thread only.
 */
#include "engine/api.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/jsonp.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/status.h"

#define API_MAX_STOP 64         /* stop strings per request */
#define API_MAX_STOP_LEN 1024   /* bytes per stop string */
#define API_MAX_STOP_IDS 1024   /* stop token ids per request */
#define API_MAX_SALT_LEN 1024   /* cache_salt characters, as vLLM */
#define API_MAX_MESSAGES 100000 /* chat messages per request */
#define API_MAX_REQUEST_ID 200  /* bytes of a caller-supplied request id */

typedef enum xchg_state {
    XCHG_SUBMITTED = 0,
    XCHG_STREAMING,
    XCHG_COLLECTING,
} xchg_state_t;

typedef struct api_xchg {
    api_t *api;
    http_req_t *http;
    ecore_req_t *er;
    xchg_state_t state;
    api_kind_t kind;
    bool stream, include_usage, continuous_usage;
    char id[API_MAX_REQUEST_ID + 16];
    char *model;     /* owned */
    char *echo_text; /* owned, NULL unless echo */
    int64_t created;
    sy_buf_t text; /* non-streaming: accumulated output */
    /* logprobs (when lp): the request's top_logprobs / logprobs value, the last sampled ids
     * (context for byte-fallback pieces), the running text_offset, code points streamed so far,
     * and (non-streaming) the four accumulated JSON arrays' items; chat uses lpj[0] only */
    bool lp;
    int32_t lp_n;
    int32_t lp_ctx[4];
    uint32_t lp_nctx;
    uint64_t lp_off, lp_cp;
    sy_buf_t lpj[4];
    struct api_xchg *prev, *next;
} api_xchg_t;

struct api {
    api_config_t cfg;
    ecore_t *core;
    bool draining;
    size_t inflight;
    api_xchg_t *xchgs; /* in-flight exchanges (doubly linked) */
    sy_buf_t out;      /* scratch for response bodies / SSE frames */
    sy_buf_t lpj[4];   /* scratch: one chunk's logprobs arrays */
    sy_buf_t tb, tb2;  /* scratch: token strings */
    uint64_t id_counter;
    uint64_t id_salt;
};

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                      */

static int set_err(api_err_t *err, int status, const char *type, const char *param, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

static int set_err(api_err_t *err, int status, const char *type, const char *param, const char *fmt,
                   ...)
{
    err->status = status;
    err->type = type;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (status == 404)
        return ST_NOTFOUND;
    return ST_INVAL;
}

#define BAD(param, ...) set_err(err, 400, "BadRequestError", param, __VA_ARGS__)

static void respond_err(http_req_t *req, const api_err_t *err)
{
    http_req_respond_error(req, err->status, err->type, err->msg, err->param);
}

/* ------------------------------------------------------------------------------------------ */
/* field readers: each returns ST_OK (value set or field absent/null -> default kept) or fills */
/* err naming the field                                                                        */

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "value";
}

static int get_bool(json_t *o, const char *key, bool *out, api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_boolean(v))
        return BAD(key, "'%s' must be a boolean, got %s.", key, json_type_name(v));
    *out = json_is_true(v);
    return ST_OK;
}

/* Integers: JSON integers, or numbers with no fractional part (pydantic's lax mode). */
static int get_int(json_t *o, const char *key, bool *present, int64_t *out, api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v))
        return ST_OK;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
            return BAD(key, "'%s' must be an integer, got %g.", key, d);
        *out = (int64_t)d;
    } else {
        return BAD(key, "'%s' must be an integer, got %s.", key, json_type_name(v));
    }
    if (present)
        *present = true;
    return ST_OK;
}

static int get_num(json_t *o, const char *key, double *out, api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_number(v))
        return BAD(key, "'%s' must be a number, got %s.", key, json_type_name(v));
    *out = json_number_value(v);
    if (!isfinite(*out))
        return BAD(key, "'%s' must be a finite number.", key);
    return ST_OK;
}

static int get_str(json_t *o, const char *key, const char **out, size_t *len, api_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return ST_OK;
    if (!json_is_string(v))
        return BAD(key, "'%s' must be a string, got %s.", key, json_type_name(v));
    *out = json_string_value(v);
    if (len)
        *len = json_string_length(v);
    return ST_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* validation                                                                                  */

void api_gen_req_deinit(api_gen_req_t *r)
{
    if (!r)
        return;
    sy_free(r->model);
    sy_free(r->prompt);
    sy_free(r->echo_text);
    for (size_t i = 0; i < r->n_stop; i++)
        sy_free(r->stop[i]);
    sy_free(r->stop);
    sy_free(r->stop_ids);
    sy_free(r->cache_salt);
    sy_free(r->request_id);
    sy_free(r->kv_host);
    sy_free(r->kv_lease);
    sy_free(r->kv_blocks);
    memset(r, 0, sizeof *r);
}

static bool model_served(const api_t *a, const char *name)
{
    for (size_t i = 0; i < a->cfg.n_model_names; i++)
        if (strcmp(a->cfg.model_names[i], name) == 0)
            return true;
    return false;
}

int api_load_body(const char *body, size_t len, json_t **root, api_err_t *err)
{
    *root = NULL;
    if (!sy_utf8_valid(body, len))
        return BAD(NULL, "The request body is not valid UTF-8.");
    jsonp_error_t jerr;
    json_t *r = NULL;
    int prc = jsonp_load(body, len, &r, &jerr);
    if (prc == ST_NOMEM)
        return set_err(err, 500, "InternalServerError", NULL, "out of memory");
    if (prc != ST_OK)
        return BAD(NULL, "Invalid JSON in request body: %s (line %d, column %d).", jerr.text,
                   jerr.line, jerr.column);
    if (!json_is_object(r)) {
        int rc = BAD(NULL, "The request body must be a JSON object, got %s.", json_type_name(r));
        json_decref(r);
        return rc;
    }
    *root = r;
    return ST_OK;
}

/* Checks root's optional "model" against the served names. On ST_OK *model is the requested
 * name or NULL (borrowed from root); otherwise err is filled. */
static int check_model(const api_t *a, json_t *root, const char **model, api_err_t *err)
{
    *model = NULL;
    int rc = get_str(root, "model", model, NULL, err);
    if (rc != ST_OK)
        return rc;
    if (*model && !model_served(a, *model)) {
        rc = set_err(err, 404, "NotFoundError", "model", "The model `%s` does not exist.", *model);
        *model = NULL;
        return rc;
    }
    return ST_OK;
}

/* api_load_body + check_model, for the routes that take a model but are not generation requests.
 * On ST_OK *root is owned by the caller. */
static int load_request(const api_t *a, const char *body, size_t len, json_t **root,
                        const char **model, api_err_t *err)
{
    *model = NULL;
    int rc = api_load_body(body, len, root, err);
    if (rc == ST_OK && (rc = check_model(a, *root, model, err)) != ST_OK) {
        json_decref(*root);
        *root = NULL;
    }
    return rc;
}

/* Tokenizes text into out->prompt. */
static int tokenize_into(const api_t *a, const char *text, size_t len, bool add_special,
                         bool parse_special, api_gen_req_t *out, api_err_t *err)
{
    if (a->cfg.skip_token_checks)
        return ST_OK; /* no tokenizer: prompt stays NULL, n_prompt 0 */
    size_t cap = TOK_MAX_TOKENS(len);
    out->prompt = sy_malloc(cap * sizeof(int32_t));
    if (!out->prompt)
        return set_err(err, 500, "InternalServerError", NULL, "out of memory");
    size_t n = 0;
    int rc = tok_encode(a->cfg.tok, text, len, add_special, parse_special, out->prompt, cap, &n);
    if (rc != ST_OK)
        return BAD("prompt", "The prompt could not be tokenized (%s).", st_str(rc));
    if (n > UINT32_MAX)
        return BAD("prompt", "The prompt is too long.");
    out->n_prompt = (uint32_t)n;
    return ST_OK;
}

static int parse_token_list(const api_t *a, json_t *arr, const char *param, api_gen_req_t *out,
                            api_err_t *err)
{
    size_t n = json_array_size(arr);
    if (n > UINT32_MAX / 2)
        return BAD(param, "The prompt is too long.");
    out->prompt = sy_malloc((n ? n : 1) * sizeof(int32_t));
    if (!out->prompt)
        return set_err(err, 500, "InternalServerError", NULL, "out of memory");
    int32_t vocab = a->cfg.skip_token_checks ? INT32_MAX : tok_vocab_size(a->cfg.tok);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        if (!json_is_integer(t))
            return BAD(param, "'%s' token ids must be integers (element %zu is %s).", param, i,
                       json_type_name(t));
        json_int_t id = json_integer_value(t);
        if (id < 0 || id >= vocab)
            return BAD(param, "Token id %lld is out of vocabulary (vocab size %d).", (long long)id,
                       (int)vocab);
        out->prompt[i] = (int32_t)id;
    }
    out->n_prompt = (uint32_t)n;
    return ST_OK;
}

static int parse_prompt(const api_t *a, json_t *root, api_gen_req_t *out, bool add_special,
                        api_err_t *err)
{
    json_t *p = json_object_get(root, "prompt");
    if (!p || json_is_null(p))
        return BAD("prompt", "Either 'prompt' or 'prompt_embeds' must be provided.");
    if (json_is_string(p)) {
        if (json_string_length(p) == 0)
            return BAD("prompt", "'prompt' must not be empty.");
        if (out->echo)
            out->echo_text = sy_strndup(json_string_value(p), json_string_length(p));
        return tokenize_into(a, json_string_value(p), json_string_length(p), add_special, false,
                             out, err);
    }
    if (!json_is_array(p))
        return BAD("prompt",
                   "'prompt' must be a string, a list of strings or a list of token ids, "
                   "got %s.",
                   json_type_name(p));
    size_t n = json_array_size(p);
    if (n == 0)
        return BAD("prompt", "'prompt' must not be an empty list.");
    json_t *first = json_array_get(p, 0);
    if (json_is_string(first) || json_is_array(first)) {
        if (n > 1)
            return set_err(err, 501, "NotImplementedError", "prompt",
                           "Batched prompts (%zu prompts in one request) are not supported; send "
                           "one prompt per request.",
                           n);
        if (json_is_string(first)) {
            if (json_string_length(first) == 0)
                return BAD("prompt", "'prompt' must not be empty.");
            if (out->echo)
                out->echo_text = sy_strndup(json_string_value(first), json_string_length(first));
            return tokenize_into(a, json_string_value(first), json_string_length(first),
                                 add_special, false, out, err);
        }
        if (json_array_size(first) == 0)
            return BAD("prompt", "'prompt' token list must not be empty.");
        return parse_token_list(a, first, "prompt", out, err);
    }
    return parse_token_list(a, p, "prompt", out, err);
}

/* Appends the text of a message's content (string, null, or list of text parts). */
static int message_text(json_t *content, size_t idx, sy_buf_t *out, api_err_t *err)
{
    if (!content || json_is_null(content))
        return ST_OK;
    if (json_is_string(content))
        return sy_buf_append(out, json_string_value(content), json_string_length(content)) == ST_OK
                   ? ST_OK
                   : set_err(err, 500, "InternalServerError", NULL, "out of memory");
    if (!json_is_array(content))
        return BAD("messages", "messages[%zu].content must be a string or a list of parts, got %s.",
                   idx, json_type_name(content));
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *part = json_array_get(content, i);
        const char *type =
            json_is_object(part) ? json_string_value(json_object_get(part, "type")) : NULL;
        if (!type)
            return BAD("messages", "messages[%zu].content[%zu] must be an object with a 'type'.",
                       idx, i);
        if (strcmp(type, "text") != 0)
            return BAD("messages",
                       "messages[%zu].content[%zu]: content part type '%s' is not supported by "
                       "this model (text only).",
                       idx, i, type);
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t))
            return BAD("messages", "messages[%zu].content[%zu].text must be a string.", idx, i);
        if (sy_buf_append(out, json_string_value(t), json_string_length(t)) != ST_OK)
            return set_err(err, 500, "InternalServerError", NULL, "out of memory");
    }
    return ST_OK;
}

static int parse_messages(const api_t *a, json_t *root, api_gen_req_t *out, api_err_t *err)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs || json_is_null(msgs))
        return BAD("messages", "'messages' is required.");
    if (!json_is_array(msgs))
        return BAD("messages", "'messages' must be a list, got %s.", json_type_name(msgs));
    size_t n = json_array_size(msgs);
    if (n == 0)
        return BAD("messages", "'messages' must contain at least one message.");
    if (n > API_MAX_MESSAGES)
        return BAD("messages", "Too many messages (%zu).", n);
    bool add_gen = true, cont_final = false;
    int rc = get_bool(root, "add_generation_prompt", &add_gen, err);
    if (rc == ST_OK)
        rc = get_bool(root, "continue_final_message", &cont_final, err);
    if (rc != ST_OK)
        return rc;
    if (add_gen && cont_final && json_object_get(root, "add_generation_prompt"))
        return BAD("continue_final_message",
                   "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
    if (cont_final)
        add_gen = false;

    chat_msg_t *cm = sy_calloc(n, sizeof *cm);
    sy_buf_t *texts = sy_calloc(n, sizeof *texts);
    sy_buf_t rendered = SY_BUF_INIT;
    rc = ST_OK;
    if (!cm || !texts) {
        rc = set_err(err, 500, "InternalServerError", NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            rc = BAD("messages", "messages[%zu] must be an object, got %s.", i, json_type_name(m));
            goto done;
        }
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            rc = BAD("messages", "messages[%zu].role must be a string.", i);
            goto done;
        }
        rc = message_text(json_object_get(m, "content"), i, &texts[i], err);
        if (rc != ST_OK)
            goto done;
        cm[i].role = json_string_value(role);
        cm[i].content = texts[i].data ? texts[i].data : "";
        cm[i].content_len = texts[i].len;
    }
    if (a->cfg.skip_token_checks) { /* no template or tokenizer of that model: structure only */
        bool unused = false;
        rc = get_bool(root, "add_special_tokens", &unused, err);
        goto done;
    }
    if (!a->cfg.tmpl) { /* a model file without a chat template, and none given */
        rc = BAD(NULL,
                 "The model has no chat template and none was given: start the engine with "
                 "--chat-template NAME (one of %s), or use /v1/completions.",
                 chat_tmpl_names());
        goto done;
    }
    const char *terr = NULL;
    rc = chat_tmpl_render(a->cfg.tmpl, cm, n, add_gen, &rendered, &terr);
    if (rc != ST_OK) {
        rc = BAD("messages", "Chat template error: %s", terr ? terr : st_str(rc));
        goto done;
    }
    if (cont_final) {
        /* continue the final message: drop the template's end-of-turn after it */
        const char *end = "<|im_end|>\n";
        size_t el = strlen(end);
        if (rendered.len >= el && memcmp(rendered.data + rendered.len - el, end, el) == 0)
            rendered.len -= el;
    }
    bool add_special = false;
    rc = get_bool(root, "add_special_tokens", &add_special, err);
    if (rc == ST_OK)
        rc = tokenize_into(a, rendered.data ? rendered.data : "", rendered.len, add_special, true,
                           out, err);
done:
    if (texts)
        for (size_t i = 0; i < n; i++)
            sy_buf_deinit(&texts[i]);
    sy_free(texts);
    sy_free(cm);
    sy_buf_deinit(&rendered);
    return rc;
}

static int parse_stop(json_t *root, api_gen_req_t *out, api_err_t *err)
{
    json_t *s = json_object_get(root, "stop");
    if (s && !json_is_null(s)) {
        size_t n = json_is_string(s) ? 1 : json_is_array(s) ? json_array_size(s) : SIZE_MAX;
        if (n == SIZE_MAX)
            return BAD("stop", "'stop' must be a string or a list of strings, got %s.",
                       json_type_name(s));
        if (n > API_MAX_STOP)
            return BAD("stop", "Too many stop strings (%zu, at most %d).", n, API_MAX_STOP);
        out->stop = sy_calloc(n ? n : 1, sizeof(char *));
        if (!out->stop)
            return set_err(err, 500, "InternalServerError", NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_is_string(s) ? s : json_array_get(s, i);
            if (!json_is_string(e))
                return BAD("stop", "'stop' list elements must be strings (element %zu is %s).", i,
                           json_type_name(e));
            size_t l = json_string_length(e);
            if (l == 0)
                continue; /* an empty stop string never matches meaningfully: ignore it */
            if (l > API_MAX_STOP_LEN)
                return BAD("stop", "Stop string %zu is too long (%zu bytes).", i, l);
            out->stop[out->n_stop] = sy_strndup(json_string_value(e), l);
            if (!out->stop[out->n_stop])
                return set_err(err, 500, "InternalServerError", NULL, "out of memory");
            out->n_stop++;
        }
    }
    json_t *ids = json_object_get(root, "stop_token_ids");
    if (ids && !json_is_null(ids)) {
        if (!json_is_array(ids))
            return BAD("stop_token_ids", "'stop_token_ids' must be a list of integers.");
        size_t n = json_array_size(ids);
        if (n > API_MAX_STOP_IDS)
            return BAD("stop_token_ids", "Too many stop token ids (%zu).", n);
        out->stop_ids = sy_malloc((n ? n : 1) * sizeof(int32_t));
        if (!out->stop_ids)
            return set_err(err, 500, "InternalServerError", NULL, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(ids, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > INT32_MAX)
                return BAD("stop_token_ids",
                           "'stop_token_ids' elements must be non-negative "
                           "integers (element %zu).",
                           i);
            out->stop_ids[i] = (int32_t)json_integer_value(e);
        }
        out->n_stop_ids = n;
    }
    return ST_OK;
}

/* The largest top-logprobs count a request may ask for (vLLM's max_logprobs, -1 = vocab), or
 * -1 when the vocabulary is unknown (no tokenizer: the gateway) and the limit is the vocab. */
static int64_t max_logprobs(const api_t *a)
{
    int64_t vocab = a->cfg.tok ? tok_vocab_size(a->cfg.tok) : -1;
    if (!a->cfg.max_logprobs_set)
        return 20;
    return a->cfg.max_logprobs < 0 ? vocab : a->cfg.max_logprobs;
}

/* logprobs / top_logprobs / prompt_logprobs, with vLLM's checks (protocol.py check_logprobs,
 * then the engine's _validate_logprobs). Sets sp->logprobs, sp->n_logprobs, out->top_logprobs. */
static int parse_logprobs(const api_t *a, json_t *root, api_gen_req_t *out, api_err_t *err)
{
    seq_sampling_t *sp = &out->sp;
    int rc;
    json_t *plp = json_object_get(root, "prompt_logprobs");
    if (plp && !json_is_null(plp)) {
        int64_t n = 0;
        if ((rc = get_int(root, "prompt_logprobs", NULL, &n, err)) != ST_OK)
            return rc;
        if (out->stream && (n > 0 || n == -1))
            return BAD("prompt_logprobs",
                       "`prompt_logprobs` are not available when `stream=True`.");
        if (n < 0 && n != -1)
            return BAD("prompt_logprobs", "`prompt_logprobs` must be a positive value or -1.");
        return set_err(err, 501, "NotImplementedError", "prompt_logprobs",
                       "prompt_logprobs are not supported by this server.");
    }
    bool want = false, present = false;
    int64_t n = 0;
    if (out->kind == API_COMPLETION) {
        if ((rc = get_int(root, "logprobs", &present, &n, err)) != ST_OK)
            return rc;
        if (present && n < 0 && n != -1)
            return BAD("logprobs", "`logprobs` must be a positive value or -1.");
        want = present;
    } else {
        bool lp = false;
        json_t *tl = json_object_get(root, "top_logprobs");
        if ((rc = get_bool(root, "logprobs", &lp, err)) != ST_OK ||
            (rc = get_int(root, "top_logprobs", &present, &n, err)) != ST_OK)
            return rc;
        if (present && n < 0 && n != -1)
            return BAD("top_logprobs", "`top_logprobs` must be a positive value or -1.");
        if (present && (n == -1 || n > 0) && !lp)
            return BAD("top_logprobs",
                       "when using `top_logprobs`, `logprobs` must be set to true.");
        /* logprobs: true with an explicit "top_logprobs": null asks for nothing (vLLM passes
         * logprobs=None to the engine and answers "logprobs": null) */
        want = lp && !(tl && json_is_null(tl));
    }
    if (!want)
        return ST_OK;
    if (a->cfg.no_logprobs)
        return set_err(err, 501, "NotImplementedError", "logprobs",
                       "logprobs need a model: start the engine with --model FILE.gguf (the "
                       "simulated executor has no token distribution).");
    if (out->echo)
        return set_err(err, 501, "NotImplementedError", "echo",
                       "echo with logprobs needs prompt_logprobs, which this server does not "
                       "support.");
    int64_t vocab = a->cfg.tok ? tok_vocab_size(a->cfg.tok) : -1;
    int64_t lim = max_logprobs(a);
    int64_t num = n == -1 ? vocab : n;
    if (lim >= 0 && (num > lim || num < 0))
        return BAD("logprobs",
                   "Requested sample logprobs of %lld, which is greater than max "
                   "allowed: %lld",
                   (long long)(num < 0 ? n : num), (long long)lim);
    if (num < 0 || (vocab >= 0 && num > vocab))
        num = vocab >= 0 ? vocab : 0; /* unknown vocab (gateway): nothing is sampled here */
    sp->logprobs = true;
    sp->n_logprobs = num > UINT32_MAX ? UINT32_MAX : (uint32_t)num;
    out->top_logprobs = (int32_t)(n < INT32_MIN ? INT32_MIN : n > INT32_MAX ? INT32_MAX : n);
    return ST_OK;
}

static int parse_sampling(const api_t *a, json_t *root, api_gen_req_t *out, api_err_t *err)
{
    seq_sampling_t *sp = &out->sp;
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, pres = 0.0, freq = 0.0, rep = 1.0;
    int64_t top_k = 0, seed = 0, min_tokens = 0, n = 1;
    bool has_seed = false;
    int rc;
    if ((rc = get_num(root, "temperature", &temperature, err)) != ST_OK ||
        (rc = get_num(root, "top_p", &top_p, err)) != ST_OK ||
        (rc = get_num(root, "min_p", &min_p, err)) != ST_OK ||
        (rc = get_num(root, "presence_penalty", &pres, err)) != ST_OK ||
        (rc = get_num(root, "frequency_penalty", &freq, err)) != ST_OK ||
        (rc = get_num(root, "repetition_penalty", &rep, err)) != ST_OK ||
        (rc = get_int(root, "top_k", NULL, &top_k, err)) != ST_OK ||
        (rc = get_int(root, "seed", &has_seed, &seed, err)) != ST_OK ||
        (rc = get_int(root, "min_tokens", NULL, &min_tokens, err)) != ST_OK ||
        (rc = get_int(root, "n", NULL, &n, err)) != ST_OK ||
        (rc = get_bool(root, "ignore_eos", &sp->ignore_eos, err)) != ST_OK)
        return rc;
    if (temperature < 0)
        return BAD("temperature", "temperature must be non-negative, got %g.", temperature);
    if (top_p <= 0 || top_p > 1)
        return BAD("top_p", "top_p must be in (0, 1], got %g.", top_p);
    if (min_p < 0 || min_p > 1)
        return BAD("min_p", "min_p must be in [0, 1], got %g.", min_p);
    if (pres < -2 || pres > 2)
        return BAD("presence_penalty", "presence_penalty must be in [-2, 2], got %g.", pres);
    if (freq < -2 || freq > 2)
        return BAD("frequency_penalty", "frequency_penalty must be in [-2, 2], got %g.", freq);
    if (rep <= 0)
        return BAD("repetition_penalty", "repetition_penalty must be greater than zero, got %g.",
                   rep);
    if (top_k < -1 || top_k > INT32_MAX)
        return BAD("top_k", "top_k must be 0 (disable), -1 (disable), or at least 1, got %lld.",
                   (long long)top_k);
    if (n != 1)
        return n < 1 ? BAD("n", "n must be at least 1, got %lld.", (long long)n)
                     : set_err(err, 501, "NotImplementedError", "n",
                               "n > 1 is not supported by this server (got n=%lld).", (long long)n);
    if (min_tokens < 0)
        return BAD("min_tokens", "min_tokens must be greater than or equal to 0, got %lld.",
                   (long long)min_tokens);
    if ((rc = parse_logprobs(a, root, out, err)) != ST_OK)
        return rc;
    sp->presence_penalty = (float)pres;
    sp->frequency_penalty = (float)freq;
    sp->repetition_penalty = (float)rep;
    sp->temperature = (float)temperature;
    sp->top_p = (float)top_p;
    sp->min_p = (float)min_p;
    sp->top_k = (int32_t)top_k;
    sp->has_seed = has_seed;
    sp->seed = (uint64_t)seed;
    sp->min_tokens = min_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)min_tokens;

    /* max_tokens: completions default 16; chat prefers max_completion_tokens and defaults to the
     * rest of the context. Clamped to the context as vLLM does; non-positive or larger than the
     * whole context is an error. */
    int64_t max_tokens = 0;
    bool has_max = false;
    const char *max_param = "max_tokens";
    if (out->kind == API_CHAT) {
        if ((rc = get_int(root, "max_completion_tokens", &has_max, &max_tokens, err)) != ST_OK)
            return rc;
        if (has_max)
            max_param = "max_completion_tokens";
    }
    if (!has_max && (rc = get_int(root, "max_tokens", &has_max, &max_tokens, err)) != ST_OK)
        return rc;
    uint32_t ctx = a->cfg.max_model_len;
    bool counted = !a->cfg.skip_token_checks || out->prompt; /* prompt length known */
    if (counted && out->n_prompt == 0)
        return BAD("prompt", "The prompt cannot be empty.");
    if (counted && out->n_prompt >= ctx)
        return BAD("prompt",
                   "This model's maximum context length is %u tokens. However, your request has "
                   "%u input tokens. Please reduce the length of the input messages.",
                   ctx, out->n_prompt);
    uint32_t room = ctx - out->n_prompt;
    if (has_max) {
        if (max_tokens < 1)
            return BAD(max_param, "%s must be at least 1, got %lld.", max_param,
                       (long long)max_tokens);
        if (max_tokens > ctx)
            return BAD(max_param,
                       "This model's maximum context length is %u tokens. However, you requested "
                       "%lld output tokens (%s).",
                       ctx, (long long)max_tokens, max_param);
    } else {
        max_tokens = out->kind == API_CHAT ? room : 16;
    }
    if ((uint64_t)max_tokens > room)
        max_tokens = room;
    sp->max_tokens = (uint32_t)max_tokens;
    if (sp->min_tokens > sp->max_tokens)
        return BAD("min_tokens", "min_tokens must be less than or equal to max_tokens=%u, got %u.",
                   sp->max_tokens, sp->min_tokens);
    return ST_OK;
}

int api_parse_gen_request(const api_t *a, const char *body, size_t len, api_kind_t kind,
                          api_gen_req_t *out, api_err_t *err)
{
    json_t *root = NULL;
    int rc = api_load_body(body, len, &root, err);
    if (rc != ST_OK) {
        memset(out, 0, sizeof *out);
        out->kind = kind;
        return rc;
    }
    rc = api_parse_gen_json(a, root, kind, out, err);
    json_decref(root);
    return rc;
}

/* kv_transfer_params: not an object -> 400. do_remote_decode: a boolean. do_remote_prefill
 * with remote_host, remote_port, remote_request_id and remote_block_ids (flat or one list per
 * KV-cache group: the first is used) -> pull; with any of those missing or malformed the
 * params are ignored with a warning and the prompt is computed here (vLLM: "Got invalid
 * KVTransferParams", then a local prefill). */
#define API_MAX_KV_BLOCKS (1u << 20)
static int parse_kv_transfer(json_t *root, api_gen_req_t *out, api_err_t *err)
{
    json_t *kp = json_object_get(root, "kv_transfer_params");
    if (!kp || json_is_null(kp))
        return ST_OK;
    if (!json_is_object(kp))
        return BAD("kv_transfer_params", "'kv_transfer_params' must be an object, got %s.",
                   json_type_name(kp));
    int rc;
    bool remote_prefill = false;
    if ((rc = get_bool(kp, "do_remote_decode", &out->kv_remote_decode, err)) != ST_OK ||
        (rc = get_bool(kp, "do_remote_prefill", &remote_prefill, err)) != ST_OK)
        return rc;
    if (!remote_prefill)
        return ST_OK;
    json_t *host = json_object_get(kp, "remote_host"), *port = json_object_get(kp, "remote_port");
    json_t *lease = json_object_get(kp, "remote_request_id");
    json_t *ids = json_object_get(kp, "remote_block_ids");
    if (json_is_array(ids) && json_array_size(ids) > 0 && json_is_array(json_array_get(ids, 0)))
        ids = json_array_get(ids, 0);
    const char *why = NULL;
    if (!json_is_string(host) || json_string_length(host) == 0 || json_string_length(host) > 255)
        why = "remote_host";
    else if (!json_is_integer(port) || json_integer_value(port) < 1 ||
             json_integer_value(port) > 65535)
        why = "remote_port";
    else if (!json_is_string(lease) || json_string_length(lease) == 0 ||
             json_string_length(lease) >= KVX_ID_MAX)
        why = "remote_request_id";
    else if (!json_is_array(ids) || json_array_size(ids) == 0 ||
             json_array_size(ids) > API_MAX_KV_BLOCKS)
        why = "remote_block_ids";
    for (size_t i = 0; !why && i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > (json_int_t)UINT32_MAX)
            why = "remote_block_ids";
    }
    if (why) {
        sy_warn("api.kv_params_invalid", "field=%s msg=\"computing the prompt locally\"", why);
        return ST_OK;
    }
    size_t n = json_array_size(ids);
    out->kv_host = sy_strndup(json_string_value(host), json_string_length(host));
    out->kv_lease = sy_strndup(json_string_value(lease), json_string_length(lease));
    out->kv_blocks = sy_malloc(n * sizeof(uint32_t));
    if (!out->kv_host || !out->kv_lease || !out->kv_blocks)
        return set_err(err, 500, "InternalServerError", NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        out->kv_blocks[i] = (uint32_t)json_integer_value(json_array_get(ids, i));
    out->kv_n_blocks = (uint32_t)n;
    out->kv_port = (int)json_integer_value(port);
    return ST_OK;
}

int api_parse_gen_json(const api_t *a, json_t *root, api_kind_t kind, api_gen_req_t *out,
                       api_err_t *err)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->skip_special_tokens = true;
    const char *model = NULL;
    int rc = check_model(a, root, &model, err);
    if (rc != ST_OK)
        return rc;
    out->model = sy_strdup(model ? model : a->cfg.model_names[0]);
    if ((rc = get_bool(root, "stream", &out->stream, err)) != ST_OK)
        goto fail;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            rc = BAD("stream_options", "'stream_options' must be an object, got %s.",
                     json_type_name(so));
            goto fail;
        }
        if (!out->stream) {
            rc = BAD("stream_options", "Stream options can only be defined when `stream=True`.");
            goto fail;
        }
        out->include_usage = true; /* vLLM: include_usage defaults to true when present */
        if ((rc = get_bool(so, "include_usage", &out->include_usage, err)) != ST_OK ||
            (rc = get_bool(so, "continuous_usage_stats", &out->continuous_usage, err)) != ST_OK)
            goto fail;
    }
    if ((rc = get_bool(root, "echo", &out->echo, err)) != ST_OK ||
        (rc = get_bool(root, "include_stop_str_in_output", &out->include_stop_str_in_output,
                       err)) != ST_OK ||
        (rc = get_bool(root, "skip_special_tokens", &out->skip_special_tokens, err)) != ST_OK)
        goto fail;
    if (kind == API_CHAT)
        out->echo = false; /* chat echo (repeat last message) is not supported; ignored */

    const char *salt = NULL;
    size_t salt_len = 0;
    if ((rc = get_str(root, "cache_salt", &salt, &salt_len, err)) != ST_OK)
        goto fail;
    if (salt) {
        if (salt_len == 0 || salt_len > API_MAX_SALT_LEN) {
            rc = BAD("cache_salt", "cache_salt must be 1 to %d characters.", API_MAX_SALT_LEN);
            goto fail;
        }
        out->cache_salt = sy_strndup(salt, salt_len);
    }
    const char *rid = NULL;
    size_t rid_len = 0;
    if ((rc = get_str(root, "request_id", &rid, &rid_len, err)) != ST_OK)
        goto fail;
    if (rid && rid_len > 0 && rid_len <= API_MAX_REQUEST_ID)
        out->request_id = sy_strndup(rid, rid_len);

    if ((rc = parse_kv_transfer(root, out, err)) != ST_OK)
        goto fail;

    if (kind == API_COMPLETION) {
        bool add_special = true;
        if ((rc = get_bool(root, "add_special_tokens", &add_special, err)) != ST_OK ||
            (rc = parse_prompt(a, root, out, add_special, err)) != ST_OK)
            goto fail;
    } else {
        json_t *tools = json_object_get(root, "tools");
        if (tools && !json_is_null(tools) && json_array_size(tools) > 0) {
            rc = set_err(err, 501, "NotImplementedError", "tools",
                         "Tool calling is not supported by this server.");
            goto fail;
        }
        if ((rc = parse_messages(a, root, out, err)) != ST_OK)
            goto fail;
    }
    if ((rc = parse_sampling(a, root, out, err)) != ST_OK || (rc = parse_stop(root, out, err)))
        goto fail;
    if (!out->model || (out->cache_salt == NULL && salt) ||
        (out->echo && !out->echo_text && kind == API_COMPLETION &&
         json_is_string(json_object_get(root, "prompt")))) {
        rc = set_err(err, 500, "InternalServerError", NULL, "out of memory");
        goto fail;
    }
    return ST_OK;
fail:
    api_gen_req_deinit(out);
    out->kind = kind;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle                                                                                   */

api_t *api_create(const api_config_t *cfg)
{
    api_t *a = sy_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->cfg = *cfg;
    uint64_t salt = 0;
    if (getrandom(&salt, sizeof salt, GRND_NONBLOCK) != (ssize_t)sizeof salt)
        salt = sy_mono_ns() ^ (uint64_t)time(NULL);
    a->id_salt = salt;
    return a;
}

void api_set_core(api_t *a, ecore_t *core)
{
    a->core = core;
}

static void xchg_unlink_free(api_xchg_t *x)
{
    api_t *a = x->api;
    if (x->prev)
        x->prev->next = x->next;
    else
        a->xchgs = x->next;
    if (x->next)
        x->next->prev = x->prev;
    a->inflight--;
    ecore_req_release(x->er);
    sy_buf_deinit(&x->text);
    for (int i = 0; i < 4; i++)
        sy_buf_deinit(&x->lpj[i]);
    sy_free(x->model);
    sy_free(x->echo_text);
    sy_free(x);
}

void api_destroy(api_t *a)
{
    if (!a)
        return;
    while (a->xchgs) {
        api_xchg_t *x = a->xchgs;
        if (x->er && a->core)
            ecore_abort(a->core, x->er);
        xchg_unlink_free(x);
    }
    sy_buf_deinit(&a->out);
    for (int i = 0; i < 4; i++)
        sy_buf_deinit(&a->lpj[i]);
    sy_buf_deinit(&a->tb);
    sy_buf_deinit(&a->tb2);
    sy_free(a);
}

void api_set_draining(api_t *a, bool draining)
{
    a->draining = draining;
}

size_t api_num_inflight(const api_t *a)
{
    return a->inflight;
}

/* ------------------------------------------------------------------------------------------ */
/* response writers                                                                            */

static void put_str(sy_buf_t *b, const char *s, size_t len)
{
    sy_buf_append_char(b, '"');
    sy_buf_append_json_str(b, s, len);
    sy_buf_append_char(b, '"');
}

static void put_usage(sy_buf_t *b, const api_t *a, const ecore_delta_t *d)
{
    sy_buf_append_str(b, "{\"prompt_tokens\":");
    sy_buf_append_i64(b, d->prompt_tokens);
    sy_buf_append_str(b, ",\"total_tokens\":");
    sy_buf_append_i64(b, (int64_t)d->prompt_tokens + d->completion_tokens);
    sy_buf_append_str(b, ",\"completion_tokens\":");
    sy_buf_append_i64(b, d->completion_tokens);
    if (a->cfg.enable_prompt_tokens_details) {
        sy_buf_append_str(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
        sy_buf_append_i64(b, d->cached_tokens);
        sy_buf_append_str(b, "}}");
    } else {
        sy_buf_append_str(b, ",\"prompt_tokens_details\":null}");
    }
}

static void put_finish(sy_buf_t *b, const ecore_delta_t *d, bool with_stop_reason)
{
    sy_buf_append_str(b, ",\"finish_reason\":");
    const char *fr = d->finished ? seq_finish_str(d->finish) : NULL;
    if (fr)
        put_str(b, fr, strlen(fr));
    else
        sy_buf_append_str(b, "null");
    if (!with_stop_reason)
        return;
    sy_buf_append_str(b, ",\"stop_reason\":");
    if (d->finished && d->stop_str)
        put_str(b, d->stop_str, strlen(d->stop_str));
    else if (d->finished && d->stop_token >= 0)
        sy_buf_append_i64(b, d->stop_token);
    else
        sy_buf_append_str(b, "null");
}

static void put_head(sy_buf_t *b, const api_xchg_t *x, const char *object)
{
    sy_buf_append_str(b, "{\"id\":");
    put_str(b, x->id, strlen(x->id));
    sy_buf_append_str(b, ",\"object\":\"");
    sy_buf_append_str(b, object);
    sy_buf_append_str(b, "\",\"created\":");
    sy_buf_append_i64(b, x->created);
    sy_buf_append_str(b, ",\"model\":");
    put_str(b, x->model, strlen(x->model));
}

/* ---- logprobs ----
 * Token strings follow vLLM's LogprobsProcessor: each token decoded on its own
 * (convert_ids_list_to_tokens: decode([id]) with SentencePiece's stripped leading space put back,
 * special tokens rendered), and a string ending in U+FFFD (a byte-fallback piece that leaves
 * UTF-8 incomplete) corrected with up to 4 previous sampled tokens (_correct_decoded_token): the
 * text the joined bytes complete, minus the text of the clean tokens before them, or "" when
 * they complete nothing yet. Logprobs are clamped to -9999.0 (vLLM's max(lp, -9999.0)) and
 * printed as the shortest decimal that reads back as the same double (Python's repr). */

static bool ends_fffd(const sy_buf_t *b, size_t from)
{
    return b->len >= from + 3 && memcmp(b->data + b->len - 3, "\xEF\xBF\xBD", 3) == 0;
}

/* Appends the repaired text of ids[0..n) (raw pieces joined) to out. */
static int pieces_text(const tok_t *t, const int32_t *ids, size_t n, sy_buf_t *raw, sy_buf_t *out)
{
    sy_buf_reset(raw);
    for (size_t i = 0; i < n; i++) {
        int rc = tok_piece(t, ids[i], raw);
        if (rc != ST_OK)
            return rc;
    }
    return tok_utf8_repair(raw->data ? raw->data : "", raw->len, out);
}

/* Appends vLLM's decoded string of id, given the previous sampled ids ctx[0..n_ctx). */
static int token_text(api_t *a, const int32_t *ctx, uint32_t n_ctx, int32_t id, sy_buf_t *out)
{
    const tok_t *t = a->cfg.tok;
    size_t start = out->len;
    int rc = pieces_text(t, &id, 1, &a->tb, out);
    if (rc != ST_OK || !ends_fffd(out, start))
        return rc;
    out->len = start;
    int32_t ids[5];
    for (uint32_t k = 1; k <= n_ctx && k <= 4; k++) {
        const int32_t *c = ctx + n_ctx - k;
        memcpy(ids, c, k * sizeof *ids);
        ids[k] = id;
        sy_buf_reset(&a->tb2);
        if ((rc = pieces_text(t, ids, k + 1, &a->tb, &a->tb2)) != ST_OK)
            return rc;
        if (ends_fffd(&a->tb2, 0))
            continue;
        /* context tokens that alone end in U+FFFD belong to the same character */
        uint32_t clean_end = k;
        for (uint32_t j = k; j-- > 0;) {
            sy_buf_t one = SY_BUF_INIT;
            rc = pieces_text(t, &c[j], 1, &a->tb, &one);
            bool bad = ends_fffd(&one, 0);
            sy_buf_deinit(&one);
            if (rc != ST_OK)
                return rc;
            if (!bad)
                break;
            clean_end = j;
        }
        sy_buf_t prefix = SY_BUF_INIT;
        if (clean_end > 0 && (rc = pieces_text(t, c, clean_end, &a->tb, &prefix)) != ST_OK) {
            sy_buf_deinit(&prefix);
            return rc;
        }
        size_t common = 0;
        while (common < prefix.len && common < a->tb2.len &&
               prefix.data[common] == a->tb2.data[common])
            common++;
        while (common > 0 && common < a->tb2.len &&
               ((unsigned char)a->tb2.data[common] & 0xC0) == 0x80)
            common--; /* a common prefix ends on a character boundary */
        sy_buf_deinit(&prefix);
        return sy_buf_append(out, a->tb2.data + common, a->tb2.len - common);
    }
    return ST_OK; /* nothing complete yet: "" */
}

static void put_logprob(sy_buf_t *b, float lp)
{
    double v = lp;
    if (!(v > -9999.0)) { /* -inf, NaN, or below the clamp */
        sy_buf_append_str(b, "-9999.0");
        return;
    }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    sy_buf_append_str(b, tmp);
    if (!strpbrk(tmp, ".e"))
        sy_buf_append_str(b, ".0");
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static void put_bytes(sy_buf_t *b, const char *s, size_t len)
{
    sy_buf_append_char(b, '[');
    for (size_t i = 0; i < len; i++) {
        if (i)
            sy_buf_append_char(b, ',');
        sy_buf_append_i64(b, (unsigned char)s[i]);
    }
    sy_buf_append_char(b, ']');
}

static void sep(sy_buf_t *b)
{
    if (b->len)
        sy_buf_append_char(b, ',');
}

/* Appends the items of d's tokens to the logprobs arrays j[0..4): completions text_offset,
 * token_logprobs, tokens, top_logprobs (dicts keyed by token string: sampled first, then the
 * top N, a repeated string keeping its first place and its last value, as a Python dict
 * built the same way); chat j[0] gets the content entries (top_logprobs: the first N of
 * sampled-then-top by id, sampled first, as vLLM's _get_top_logprobs). */
static int put_logprobs_items(api_t *a, api_xchg_t *x, const ecore_delta_t *d, sy_buf_t *j)
{
    sy_buf_t str = SY_BUF_INIT, keys = SY_BUF_INIT;
    int rc = ST_OK;
    for (uint32_t i = 0; i < d->n_tokens && rc == ST_OK; i++) {
        int32_t id = d->token_ids[i];
        float lp = d->logprobs ? d->logprobs[i] : -INFINITY;
        const exec_logprob_t *top =
            d->top_logprobs ? d->top_logprobs + (size_t)i * d->top_stride : NULL;
        uint32_t n_top = d->n_top ? d->n_top[i] : 0;
        sy_buf_reset(&str);
        if ((rc = token_text(a, x->lp_ctx, x->lp_nctx, id, &str)) != ST_OK)
            break;
        const char *sd = str.data ? str.data : "";
        if (x->kind == API_COMPLETION) {
            sep(&j[0]);
            sy_buf_append_i64(&j[0], (int64_t)x->lp_off);
            x->lp_off += utf8_chars(sd, str.len);
            sep(&j[1]);
            put_logprob(&j[1], lp);
            sep(&j[2]);
            put_str(&j[2], sd, str.len);
            /* the dict: entry 0 is the sampled token, then the top list */
            uint32_t n_ent = 1 + n_top;
            sy_buf_reset(&keys);
            /* keys: NUL-separated strings; vals: per unique key the last value */
            uint32_t n_keys = 0;
            float vals_small[64];
            size_t koff_small[64];
            float *vals = vals_small;
            size_t *koff = koff_small;
            float *vals_big = NULL;
            size_t *koff_big = NULL;
            if (n_ent > 64) {
                vals_big = sy_malloc(n_ent * sizeof *vals_big);
                koff_big = sy_malloc(n_ent * sizeof *koff_big);
                if (!vals_big || !koff_big) {
                    sy_free(vals_big);
                    sy_free(koff_big);
                    rc = ST_NOMEM;
                    break;
                }
                vals = vals_big;
                koff = koff_big;
            }
            for (uint32_t e = 0; e < n_ent && rc == ST_OK; e++) {
                int32_t eid = e == 0 ? id : top[e - 1].token;
                float elp = e == 0 ? lp : top[e - 1].logprob;
                size_t k0 = keys.len;
                if (e == 0)
                    rc = sy_buf_append(&keys, sd, str.len);
                else
                    rc = token_text(a, x->lp_ctx, x->lp_nctx, eid, &keys);
                if (rc != ST_OK)
                    break;
                size_t klen = keys.len - k0;
                uint32_t found = n_keys;
                for (uint32_t q = 0; q < n_keys; q++) {
                    size_t ql = (q + 1 < n_keys ? koff[q + 1] : k0) - koff[q] - 1;
                    if (ql == klen && memcmp(keys.data + koff[q], keys.data + k0, klen) == 0) {
                        found = q;
                        break;
                    }
                }
                if (found < n_keys) {
                    vals[found] = elp;
                    keys.len = k0; /* drop the duplicate string */
                } else {
                    koff[n_keys] = k0;
                    vals[n_keys++] = elp;
                    rc = sy_buf_append_char(&keys, '\0');
                }
            }
            if (rc == ST_OK) {
                sep(&j[3]);
                sy_buf_append_char(&j[3], '{');
                for (uint32_t q = 0; q < n_keys; q++) {
                    size_t ql = (q + 1 < n_keys ? koff[q + 1] : keys.len) - koff[q] - 1;
                    if (q)
                        sy_buf_append_char(&j[3], ',');
                    put_str(&j[3], keys.data + koff[q], ql);
                    sy_buf_append_char(&j[3], ':');
                    put_logprob(&j[3], vals[q]);
                }
                sy_buf_append_char(&j[3], '}');
            }
            sy_free(vals_big);
            sy_free(koff_big);
        } else {
            sep(&j[0]);
            sy_buf_append_str(&j[0], "{\"token\":");
            put_str(&j[0], sd, str.len);
            sy_buf_append_str(&j[0], ",\"logprob\":");
            put_logprob(&j[0], lp);
            sy_buf_append_str(&j[0], ",\"bytes\":");
            put_bytes(&j[0], sd, str.len);
            sy_buf_append_str(&j[0], ",\"top_logprobs\":[");
            uint32_t limit = x->lp_n < 0 ? UINT32_MAX : (uint32_t)x->lp_n, shown = 0;
            for (uint32_t e = 0; e <= n_top && shown < limit && rc == ST_OK; e++) {
                int32_t eid = e == 0 ? id : top[e - 1].token;
                float elp = e == 0 ? lp : top[e - 1].logprob;
                if (e > 0 && eid == id)
                    continue; /* the sampled token is already first */
                sy_buf_reset(&keys);
                if ((rc = token_text(a, x->lp_ctx, x->lp_nctx, eid, &keys)) != ST_OK)
                    break;
                const char *kd = keys.data ? keys.data : "";
                if (shown++)
                    sy_buf_append_char(&j[0], ',');
                sy_buf_append_str(&j[0], "{\"token\":");
                put_str(&j[0], kd, keys.len);
                sy_buf_append_str(&j[0], ",\"logprob\":");
                put_logprob(&j[0], elp);
                sy_buf_append_str(&j[0], ",\"bytes\":");
                put_bytes(&j[0], kd, keys.len);
                sy_buf_append_char(&j[0], '}');
            }
            sy_buf_append_str(&j[0], "]}");
        }
        /* the sampled token joins the context of the next ones */
        if (x->lp_nctx == 4) {
            memmove(x->lp_ctx, x->lp_ctx + 1, 3 * sizeof *x->lp_ctx);
            x->lp_nctx = 3;
        }
        x->lp_ctx[x->lp_nctx++] = id;
    }
    sy_buf_deinit(&str);
    sy_buf_deinit(&keys);
    return rc;
}

/* Writes the logprobs object of arrays j (see put_logprobs_items). */
static void put_logprobs_obj(sy_buf_t *b, const api_xchg_t *x, const sy_buf_t *j)
{
    if (x->kind == API_COMPLETION) {
        static const char *const names[4] = {"{\"text_offset\":[", "],\"token_logprobs\":[",
                                             "],\"tokens\":[", "],\"top_logprobs\":["};
        for (int i = 0; i < 4; i++) {
            sy_buf_append_str(b, names[i]);
            if (j[i].len)
                sy_buf_append(b, j[i].data, j[i].len);
        }
        sy_buf_append_str(b, "]}");
    } else {
        sy_buf_append_str(b, "{\"content\":[");
        if (j[0].len)
            sy_buf_append(b, j[0].data, j[0].len);
        sy_buf_append_str(b, "]}");
    }
}

/* One SSE chunk carrying text (may be empty when only finish_reason is news). */
static void put_chunk(sy_buf_t *b, const api_t *a, const api_xchg_t *x, const char *text,
                      size_t len, const ecore_delta_t *d, bool role, const sy_buf_t *lpj)
{
    sy_buf_append_str(b, "data: ");
    if (x->kind == API_COMPLETION) {
        put_head(b, x, "text_completion");
        sy_buf_append_str(b, ",\"choices\":[{\"index\":0,\"text\":");
        put_str(b, text, len);
        sy_buf_append_str(b, ",\"logprobs\":");
        if (lpj)
            put_logprobs_obj(b, x, lpj);
        else
            sy_buf_append_str(b, "null");
        put_finish(b, d, true);
    } else {
        put_head(b, x, "chat.completion.chunk");
        sy_buf_append_str(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (role)
            sy_buf_append_str(b, "\"role\":\"assistant\",");
        sy_buf_append_str(b, "\"content\":");
        put_str(b, text, len);
        sy_buf_append_str(b, "},\"logprobs\":");
        if (lpj)
            put_logprobs_obj(b, x, lpj);
        else
            sy_buf_append_str(b, "null");
        put_finish(b, d, d->finished);
    }
    sy_buf_append_str(b, "}]");
    if (x->continuous_usage && d) {
        sy_buf_append_str(b, ",\"usage\":");
        put_usage(b, a, d);
    }
    sy_buf_append_str(b, "}\n\n");
}

static void send_stream_delta(api_t *a, api_xchg_t *x, const ecore_delta_t *d)
{
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    if (x->state == XCHG_SUBMITTED) {
        x->state = XCHG_STREAMING;
        ecore_delta_t none = *d;
        none.finished = false;
        if (x->kind == API_CHAT) /* the first chat chunk carries the role */
            put_chunk(b, a, x, "", 0, &none, true, NULL);
        if (x->echo_text)
            put_chunk(b, a, x, x->echo_text, strlen(x->echo_text), &none, false, NULL);
    }
    /* with logprobs, a step whose text is held back (stop strings, half a character) still
     * sends its tokens' logprobs, as vLLM streams every step's token ids */
    if (d->text_len > 0 || d->finished || (x->lp && d->n_tokens > 0)) {
        const sy_buf_t *lpj = NULL;
        if (x->lp && d->finish != SEQ_FINISH_ERROR) {
            for (int i = 0; i < 4; i++)
                sy_buf_reset(&a->lpj[i]);
            x->lp_off = x->lp_cp; /* vLLM: initial_text_offset = previous text length */
            if (put_logprobs_items(a, x, d, a->lpj) == ST_OK)
                lpj = a->lpj;
            x->lp_cp += utf8_chars(d->text ? d->text : "", d->text_len);
        }
        if (d->finish == SEQ_FINISH_ERROR) {
            sy_buf_append_str(b, "data: {\"error\":{\"message\":\"The engine failed to run this "
                                 "request.\",\"type\":\"InternalServerError\",\"param\":null,"
                                 "\"code\":500}}\n\n");
        } else {
            put_chunk(b, a, x, d->text ? d->text : "", d->text_len, d, false, lpj);
        }
    }
    if (d->finished) {
        if (x->include_usage && d->finish != SEQ_FINISH_ERROR) {
            sy_buf_append_str(b, "data: ");
            put_head(b, x, x->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
            sy_buf_append_str(b, ",\"choices\":[],\"usage\":");
            put_usage(b, a, d);
            sy_buf_append_str(b, "}\n\n");
        }
        sy_buf_append_str(b, "data: [DONE]\n\n");
    }
    if (b->len)
        http_req_sse_send(x->http, b->data, b->len);
}

/* A producer's lease as vLLM's NixlConnector reports it (kv_transfer_params), or null. */
static void put_kv_lease(sy_buf_t *b, const ecore_kv_lease_t *l)
{
    if (!l) {
        sy_buf_append_str(b, "null");
        return;
    }
    sy_buf_append_str(b, "{\"do_remote_prefill\":true,\"do_remote_decode\":false,"
                         "\"remote_block_ids\":[[");
    for (uint32_t i = 0; i < l->n_blocks; i++) {
        if (i)
            sy_buf_append_char(b, ',');
        sy_buf_append_i64(b, l->block_ids[i]);
    }
    sy_buf_append_str(b, "]],\"remote_engine_id\":");
    put_str(b, l->engine_id, strlen(l->engine_id));
    sy_buf_append_str(b, ",\"remote_request_id\":");
    put_str(b, l->lease_id, strlen(l->lease_id));
    sy_buf_append_str(b, ",\"remote_host\":");
    put_str(b, l->host, strlen(l->host));
    sy_buf_append_str(b, ",\"remote_port\":");
    sy_buf_append_i64(b, l->port);
    sy_buf_append_str(b, ",\"tp_size\":1}");
}

static void send_full_response(api_t *a, api_xchg_t *x, const ecore_delta_t *d)
{
    if (d->finish == SEQ_FINISH_ERROR) {
        http_req_respond_error(x->http, 500, "InternalServerError",
                               "The engine failed to run this request.", NULL);
        return;
    }
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    if (x->kind == API_COMPLETION) {
        put_head(b, x, "text_completion");
        sy_buf_append_str(b, ",\"choices\":[{\"index\":0,\"text\":\"");
        if (x->echo_text)
            sy_buf_append_json_str(b, x->echo_text, strlen(x->echo_text));
        sy_buf_append_json_str(b, x->text.data ? x->text.data : "", x->text.len);
        sy_buf_append_str(b, "\",\"logprobs\":");
        if (x->lp)
            put_logprobs_obj(b, x, x->lpj);
        else
            sy_buf_append_str(b, "null");
        put_finish(b, d, true);
        sy_buf_append_str(b, ",\"token_ids\":null,\"prompt_logprobs\":null,"
                             "\"prompt_token_ids\":null}],\"service_tier\":null,"
                             "\"system_fingerprint\":null,\"usage\":");
    } else {
        put_head(b, x, "chat.completion");
        sy_buf_append_str(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                             "\"content\":");
        put_str(b, x->text.data ? x->text.data : "", x->text.len);
        sy_buf_append_str(b, ",\"refusal\":null,\"annotations\":null,\"audio\":null,"
                             "\"function_call\":null,\"tool_calls\":[],\"reasoning_content\":null},"
                             "\"logprobs\":");
        if (x->lp)
            put_logprobs_obj(b, x, x->lpj);
        else
            sy_buf_append_str(b, "null");
        put_finish(b, d, true);
        sy_buf_append_str(b, ",\"token_ids\":null}],\"service_tier\":null,"
                             "\"system_fingerprint\":null,\"usage\":");
    }
    put_usage(b, a, d);
    sy_buf_append_str(b, ",\"prompt_logprobs\":null,\"kv_transfer_params\":");
    put_kv_lease(b, d->kv_lease);
    sy_buf_append_char(b, '}');
    http_req_respond(x->http, 200, "application/json", b->data, b->len, NULL);
}

void api_on_output(ecore_req_t *r, const ecore_delta_t *d, void *udata)
{
    (void)r;
    api_xchg_t *x = udata;
    api_t *a = x->api;
    if (x->stream) {
        send_stream_delta(a, x, d);
        if (d->finished)
            http_req_sse_end(x->http);
    } else {
        x->state = XCHG_COLLECTING;
        if (d->text_len)
            sy_buf_append(&x->text, d->text, d->text_len);
        if (x->lp && d->n_tokens && put_logprobs_items(a, x, d, x->lpj) != ST_OK)
            sy_warn("api.logprobs_failed", "id=%s", x->id);
        if (d->finished)
            send_full_response(a, x, d);
    }
    if (d->finished)
        xchg_unlink_free(x); /* the HTTP exchange ended with the response above */
}

static void on_client_close(http_req_t *req, void *udata)
{
    (void)req;
    api_xchg_t *x = udata;
    sy_debug("api.client_gone", "id=%s", x->id);
    ecore_abort(x->api->core, x->er);
    xchg_unlink_free(x);
}

/* ------------------------------------------------------------------------------------------ */
/* handlers                                                                                    */

static void make_id(api_t *a, http_req_t *req, const api_gen_req_t *g, char *out, size_t cap)
{
    const char *prefix = g->kind == API_CHAT ? "chatcmpl-" : "cmpl-";
    sy_slice_t h;
    if (g->request_id) {
        snprintf(out, cap, "%s%s", prefix, g->request_id);
    } else if (http_req_header(req, "X-Request-Id", &h) && h.len > 0 &&
               h.len <= API_MAX_REQUEST_ID) {
        snprintf(out, cap, "%s%.*s", prefix, (int)h.len, h.ptr);
    } else {
        uint64_t v = ++a->id_counter * 0x9E3779B97F4A7C15ull ^ a->id_salt;
        v ^= v >> 31;
        snprintf(out, cap, "%s%016llx%08llx", prefix, (unsigned long long)v,
                 (unsigned long long)(a->id_counter & 0xffffffffu));
    }
}

static void handle_generate(api_t *a, http_req_t *req, api_kind_t kind)
{
    if (a->draining) {
        http_req_respond_error(req, 503, "ServiceUnavailable",
                               "The server is shutting down and accepts no new requests.", NULL);
        return;
    }
    sy_slice_t body = http_req_body(req);
    api_gen_req_t g;
    api_err_t err;
    if (api_parse_gen_request(a, body.ptr, body.len, kind, &g, &err) != ST_OK) {
        respond_err(req, &err);
        return;
    }
    api_xchg_t *x = sy_calloc(1, sizeof *x);
    if (!x) {
        api_gen_req_deinit(&g);
        http_req_respond_error(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return;
    }
    x->api = a;
    x->http = req;
    x->kind = kind;
    x->stream = g.stream;
    x->include_usage = g.include_usage;
    x->continuous_usage = g.continuous_usage;
    x->lp = g.sp.logprobs;
    x->lp_n = g.top_logprobs;
    x->created = (int64_t)time(NULL);
    x->model = g.model;
    g.model = NULL;
    x->echo_text = g.echo_text;
    g.echo_text = NULL;
    make_id(a, req, &g, x->id, sizeof x->id);

    ecore_req_params_t p = {
        .prompt = g.prompt,
        .n_prompt = g.n_prompt,
        .sp = g.sp,
        .stop = (const char *const *)g.stop,
        .n_stop = g.n_stop,
        .stop_token_ids = g.stop_ids,
        .n_stop_token_ids = g.n_stop_ids,
        .include_stop_str_in_output = g.include_stop_str_in_output,
        .skip_special_tokens = g.skip_special_tokens,
        .cache_salt = g.cache_salt,
        .request_id = x->id,
        .arrival_ns = http_req_start_ns(req),
        .kv_remote_decode = g.kv_remote_decode && !g.stream, /* only a whole answer reports it */
    };
    ecore_kv_remote_t kr = {
        .host = g.kv_host,
        .port = g.kv_port,
        .lease_id = g.kv_lease,
        .block_ids = g.kv_blocks,
        .n_blocks = g.kv_n_blocks,
    };
    if (g.kv_host)
        p.kv_remote = &kr;
    x->er = ecore_req_create(a->core, &p, x);
    api_gen_req_deinit(&g);
    if (!x->er) {
        sy_free(x->model);
        sy_free(x->echo_text);
        sy_free(x);
        http_req_respond_error(req, 503, "ServiceUnavailable", "out of memory", NULL);
        return;
    }
    /* link before submit so that destroy finds it */
    x->next = a->xchgs;
    if (a->xchgs)
        a->xchgs->prev = x;
    a->xchgs = x;
    a->inflight++;
    if (ecore_submit(a->core, x->er) != ST_OK) {
        xchg_unlink_free(x);
        http_req_respond_error(req, 503, "ServiceUnavailable", "The engine is shutting down.",
                               NULL);
        return;
    }
    http_req_set_udata(req, x);
    http_req_set_on_close(req, on_client_close, x);
    if (x->stream)
        http_req_sse_start(req, NULL);
}

static void handle_models(api_t *a, http_req_t *req)
{
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    int64_t now = (int64_t)time(NULL);
    sy_buf_append_str(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < a->cfg.n_model_names; i++) {
        const char *m = a->cfg.model_names[i];
        if (i)
            sy_buf_append_char(b, ',');
        sy_buf_append_str(b, "{\"id\":");
        put_str(b, m, strlen(m));
        sy_buf_append_str(b, ",\"object\":\"model\",\"created\":");
        sy_buf_append_i64(b, now);
        sy_buf_append_str(b, ",\"owned_by\":\"vllm\",\"root\":");
        put_str(b, a->cfg.model_names[0], strlen(a->cfg.model_names[0]));
        sy_buf_append_str(b, ",\"parent\":null,\"max_model_len\":");
        sy_buf_append_i64(b, a->cfg.max_model_len);
        sy_buf_append_str(b, ",\"permission\":[{\"id\":\"modelperm-");
        sy_buf_append_i64(b, (int64_t)i);
        sy_buf_append_str(b, "\",\"object\":\"model_permission\",\"created\":");
        sy_buf_append_i64(b, now);
        sy_buf_append_str(b, ",\"allow_create_engine\":false,\"allow_sampling\":true,"
                             "\"allow_logprobs\":true,\"allow_search_indices\":false,"
                             "\"allow_view\":true,\"allow_fine_tuning\":false,"
                             "\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}");
    }
    sy_buf_append_str(b, "]}");
    http_req_respond(req, 200, "application/json", b->data, b->len, NULL);
}

static void handle_tokenize(api_t *a, http_req_t *req)
{
    sy_slice_t body = http_req_body(req);
    api_err_t errs;
    api_err_t *err = &errs;
    api_gen_req_t g;
    memset(&g, 0, sizeof g);
    json_t *root = NULL;
    int rc = ST_OK;
    const char *model = NULL;
    if ((rc = load_request(a, body.ptr, body.len, &root, &model, err)) != ST_OK)
        goto done;
    bool want_strs = false;
    if ((rc = get_bool(root, "return_token_strs", &want_strs, err)) != ST_OK)
        goto done;
    if (json_object_get(root, "messages")) {
        g.kind = API_CHAT;
        rc = parse_messages(a, root, &g, err);
    } else {
        bool add_special = true;
        json_t *p = json_object_get(root, "prompt");
        if ((rc = get_bool(root, "add_special_tokens", &add_special, err)) != ST_OK)
            goto done;
        if (!json_is_string(p)) {
            rc = BAD("prompt", "'prompt' must be a string (or pass 'messages').");
            goto done;
        }
        rc = tokenize_into(a, json_string_value(p), json_string_length(p), add_special, false, &g,
                           err);
    }
    if (rc != ST_OK)
        goto done;
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    sy_buf_append_str(b, "{\"count\":");
    sy_buf_append_i64(b, g.n_prompt);
    sy_buf_append_str(b, ",\"max_model_len\":");
    sy_buf_append_i64(b, a->cfg.max_model_len);
    sy_buf_append_str(b, ",\"tokens\":[");
    for (uint32_t i = 0; i < g.n_prompt; i++) {
        if (i)
            sy_buf_append_char(b, ',');
        sy_buf_append_i64(b, g.prompt[i]);
    }
    sy_buf_append_str(b, "],\"token_strs\":");
    if (want_strs) {
        sy_buf_t s = SY_BUF_INIT;
        sy_buf_append_char(b, '[');
        for (uint32_t i = 0; i < g.n_prompt; i++) {
            sy_buf_reset(&s);
            tok_token_str(a->cfg.tok, g.prompt[i], &s);
            if (i)
                sy_buf_append_char(b, ',');
            put_str(b, s.data ? s.data : "", s.len);
        }
        sy_buf_append_char(b, ']');
        sy_buf_deinit(&s);
    } else {
        sy_buf_append_str(b, "null");
    }
    sy_buf_append_char(b, '}');
    http_req_respond(req, 200, "application/json", b->data, b->len, NULL);
done:
    if (rc != ST_OK)
        respond_err(req, err);
    json_decref(root);
    api_gen_req_deinit(&g);
}

static void handle_detokenize(api_t *a, http_req_t *req)
{
    sy_slice_t body = http_req_body(req);
    api_err_t errs;
    api_err_t *err = &errs;
    json_t *root = NULL;
    int32_t *ids = NULL;
    sy_buf_t text = SY_BUF_INIT;
    int rc = ST_OK;
    const char *model = NULL;
    if ((rc = load_request(a, body.ptr, body.len, &root, &model, err)) != ST_OK)
        goto done;
    json_t *toks = json_object_get(root, "tokens");
    if (!json_is_array(toks)) {
        rc = BAD("tokens", "'tokens' must be a list of token ids.");
        goto done;
    }
    size_t n = json_array_size(toks);
    ids = sy_malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        rc = set_err(err, 500, "InternalServerError", NULL, "out of memory");
        goto done;
    }
    int32_t vocab = tok_vocab_size(a->cfg.tok);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(toks, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= vocab) {
            rc = BAD("tokens", "tokens[%zu] is not a valid token id (vocab size %d).", i,
                     (int)vocab);
            goto done;
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    if (tok_decode(a->cfg.tok, ids, n, false, &text) != ST_OK) {
        rc = BAD("tokens", "The tokens could not be decoded.");
        goto done;
    }
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    sy_buf_append_str(b, "{\"prompt\":");
    put_str(b, text.data ? text.data : "", text.len);
    sy_buf_append_char(b, '}');
    http_req_respond(req, 200, "application/json", b->data, b->len, NULL);
done:
    if (rc != ST_OK)
        respond_err(req, err);
    json_decref(root);
    sy_free(ids);
    sy_buf_deinit(&text);
}

static void handle_metrics(api_t *a, http_req_t *req)
{
    sy_buf_t *b = &a->out;
    sy_buf_reset(b);
    sy_slice_t q = http_req_query(req);
    if (mx_registry_render_query(a->cfg.metrics, q.ptr, q.len, b) != ST_OK) {
        http_req_respond_error(req, 500, NULL, "out of memory", NULL);
        return;
    }
    http_req_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b->data, b->len, NULL);
}

/* Constant-time comparison of the bearer token with the configured key. */
static bool auth_ok(const api_t *a, http_req_t *req)
{
    sy_slice_t h;
    if (!http_req_header(req, "Authorization", &h))
        return false;
    const char *prefix = "Bearer ";
    size_t pl = strlen(prefix);
    if (h.len < pl || strncasecmp(h.ptr, prefix, pl) != 0)
        return false;
    const char *tok = h.ptr + pl;
    size_t tl = h.len - pl;
    size_t kl = strlen(a->cfg.api_key);
    unsigned char diff = (unsigned char)(tl != kl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(a->cfg.api_key[i] ^ (i < tl ? tok[i] : 0));
    return diff == 0;
}

typedef struct api_route {
    const char *path;
    const char *method;
    void (*fn)(api_t *a, http_req_t *req);
} api_route_t;

static void h_completions(api_t *a, http_req_t *r)
{
    handle_generate(a, r, API_COMPLETION);
}

static void h_chat(api_t *a, http_req_t *r)
{
    handle_generate(a, r, API_CHAT);
}

static void h_health(api_t *a, http_req_t *r)
{
    if (a->draining)
        http_req_respond(r, 503, "text/plain", "", 0, NULL);
    else
        http_req_respond(r, 200, "text/plain", "", 0, NULL);
}

static void h_version(api_t *a, http_req_t *r)
{
    char body[128];
    int n = snprintf(body, sizeof body, "{\"version\":\"%s\"}", a->cfg.version);
    http_req_respond(r, 200, "application/json", body, (size_t)n, NULL);
}

static const api_route_t routes[] = {
    {"/v1/completions", "POST", h_completions}, {"/v1/chat/completions", "POST", h_chat},
    {"/v1/models", "GET", handle_models},       {"/health", "GET", h_health},
    {"/metrics", "GET", handle_metrics},        {"/tokenize", "POST", handle_tokenize},
    {"/detokenize", "POST", handle_detokenize}, {"/version", "GET", h_version},
};

void api_on_request(http_req_t *req, void *udata)
{
    api_t *a = udata;
    sy_slice_t path = http_req_path(req);
    sy_slice_t method = http_req_method(req);
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!sy_slice_eq(path, routes[i].path))
            continue;
        if (!sy_slice_eq(method, routes[i].method)) {
            char msg[128];
            snprintf(msg, sizeof msg, "Method %.*s is not allowed for %s; use %s.",
                     (int)(method.len > 16 ? 16 : method.len), method.ptr, routes[i].path,
                     routes[i].method);
            char allow[64];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", routes[i].method);
            http_req_respond_error_hdr(req, 405, "MethodNotAllowed", msg, NULL, allow);
            return;
        }
        if (a->cfg.api_key && path.len > 4 && memcmp(path.ptr, "/v1/", 4) == 0 &&
            !auth_ok(a, req)) {
            static const char unauth[] = "{\"error\":\"Unauthorized\"}";
            http_req_respond(req, 401, "application/json", unauth, sizeof unauth - 1,
                             "WWW-Authenticate: Bearer\r\n");
            return;
        }
        routes[i].fn(a, req);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "Not Found: %.*s", (int)(path.len > 100 ? 100 : path.len), path.ptr);
    http_req_respond_error(req, 404, "NotFoundError", msg, NULL);
}
