/*
 * fuzz_gw_request.c - libFuzzer harness for the gateway's request path without sockets
 * (gw_proxy_prepare, gw_proxy_int.h): the engine's validator on the model's api_t, then the
 * approximate chunk hashes and the precise block hashes of the validated prompt. The first byte
 * picks completions or chat (bit 0) and the builtin tokenizer or none (bit 1); the rest is the
 * body. Any input must give a prepared request or an engine-style error, never a crash, a leak or
 * undefined behaviour.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/chat_tmpl.h"
#include "engine/kv_hash.h"
#include "engine/tokenizer.h"
#include "gateway/approx_index.h"
#include "gateway/gw_proxy.h"
#include "gateway/gw_proxy_int.h"
#include "gateway/prefix_index.h"

static gw_proxy_t *g_proxy[2]; /* [0] builtin tokenizer, [1] none */
static gw_table_t g_table;
static mx_registry_t *g_reg[2];
static pidx_t *g_pidx;
static aidx_t *g_aidx;
static tok_t *g_tok;

static void setup(void)
{
    sy_log_set_level(SY_LOG_OFF);
    g_tok = tok_byte_create();
    g_pidx = pidx_create(1024, 8);
    g_aidx = aidx_create(8, 1024);
    for (int i = 0; i < 2; i++) {
        g_reg[i] = mx_registry_create();
        gw_proxy_config_t cfg = {
            .table = &g_table,
            .pidx = g_pidx,
            .aidx = g_aidx,
            .tok = i == 0 ? g_tok : NULL,
            .tmpl = i == 0 ? chat_tmpl_find("chatml") : NULL,
            .block_size = 4,
            .metrics = g_reg[i],
            .approx_chunk_chars = 16,
        };
        kvh_none_hash("0", &cfg.none_hash);
        g_proxy[i] = g_reg[i] ? gw_proxy_create(&cfg) : NULL;
        if (!g_proxy[i] || gw_proxy_add_model(g_proxy[i], "sim-model", 256) != ST_OK ||
            gw_proxy_add_model(g_proxy[i], "open", 0) != ST_OK ||
            gw_proxy_add_model(g_proxy[i], "sim-model", 300) != ST_OK)
            abort();
    }
    if (!g_tok || !g_pidx || !g_aidx)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_proxy[0])
        setup();
    if (size < 1)
        return 0;
    bool chat = data[0] & 1;
    gw_proxy_t *p = g_proxy[(data[0] >> 1) & 1];
    gw_prep_t q;
    api_err_t err;
    int rc = gw_proxy_prepare(p, (const char *)data + 1, size - 1, chat, &q, &err);
    if (rc == ST_OK) {
        if (!q.model || q.est_tokens == 0 || q.n_hashes > GW_MAX_HASHES ||
            q.n_chunks > GW_MAX_CHUNKS || (q.n_hashes && !q.hashes))
            abort();
        if (strcmp(q.model, "sim-model") == 0 && q.n_hashes * 4 > 256)
            abort(); /* validated prompts fit the context (the smaller length is kept) */
        gw_prep_deinit(&q);
    } else if (err.status < 400 || err.status > 599 || err.msg[0] == '\0' || !err.type) {
        abort(); /* every refusal carries a status, a type and a message */
    }
    return 0;
}
