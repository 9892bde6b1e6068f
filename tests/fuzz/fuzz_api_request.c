/*
 * fuzz_api_request.c - libFuzzer harness for the engine's request validator
 * (api_parse_gen_request): the first byte picks completions or chat, the rest is the body.
 * Any input must produce either a validated request or an error with a status, never a crash,
 * a leak or undefined behaviour.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/status.h"
#include "engine/api.h"
#include "engine/chat_tmpl.h"
#include "engine/tokenizer.h"

static api_t *g_api;
static tok_t *g_tok;

static void setup(void)
{
    static const char *names[] = {"sim-model", "alias"};
    sy_log_set_level(SY_LOG_OFF);
    g_tok = tok_byte_create();
    api_config_t cfg = {
        .model_names = names,
        .n_model_names = 2,
        .max_model_len = 256,
        .kv_capacity_tokens = 4096,
        .enable_prompt_tokens_details = true,
        .tok = g_tok,
        .tmpl = chat_tmpl_find("chatml"),
        .version = "fuzz",
    };
    g_api = api_create(&cfg);
    if (!g_api || !g_tok || !cfg.tmpl)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_api)
        setup();
    if (size < 1)
        return 0;
    api_kind_t kind = (data[0] & 1) ? API_CHAT : API_COMPLETION;
    api_gen_req_t r;
    api_err_t err;
    int rc = api_parse_gen_request(g_api, (const char *)data + 1, size - 1, kind, &r, &err);
    if (rc == ST_OK) {
        if (r.n_prompt == 0 || r.sp.max_tokens == 0 || r.n_prompt + r.sp.max_tokens > 256)
            abort(); /* validated requests always fit the context */
        api_gen_req_deinit(&r);
    } else if (err.status < 400 || err.status > 599 || err.msg[0] == '\0') {
        abort(); /* every error carries a status and a message */
    }
    return 0;
}
