/*
 * test_gw_proxy.c - the gateway's request preparation without sockets (gw_proxy_prepare): the
 * lazily computed precise block hashes equal the engine's full chain (kvh_chain_low64) as far as
 * they go, stop after the first batch nobody holds, extend in doubling batches while an endpoint
 * holds the whole computed prefix, honour cache_salt, and cap at GW_MAX_HASHES; refusals come
 * with the engine's status; with a GGUF tokenizer (Llama 2's vocabulary) the hashes are those of
 * that tokenizer's ids.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/chat_tmpl.h"
#include "engine/kv_hash.h"
#include "engine/tokenizer.h"
#include "gateway/gw_proxy.h"
#include "gateway/gw_proxy_int.h"
#include "engine/gguf.h"
#include "engine/tok_gguf.h"
#include "gateway/prefix_index.h"
#include "../models_testutil.h"

#define BS 4

typedef struct fx {
    gw_table_t table;
    gw_endpoint_t eps[2];
    mx_registry_t *reg;
    pidx_t *pidx;
    tok_t *tok;
    gw_proxy_t *p;
    kvh_digest_t none;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    sy_log_set_level(SY_LOG_OFF);
    f->tok = tok_byte_create();
    f->pidx = pidx_create(1 << 16, 8);
    f->reg = mx_registry_create();
    for (uint32_t i = 0; i < 2; i++) {
        f->eps[i].id = i;
        f->table.eps[i] = &f->eps[i];
    }
    f->table.n = 2;
    kvh_none_hash("0", &f->none);
    gw_proxy_config_t cfg = {
        .table = &f->table,
        .pidx = f->pidx,
        .tok = f->tok,
        .tmpl = chat_tmpl_find("chatml"),
        .block_size = BS,
        .metrics = f->reg,
        .approx_chunk_chars = 16,
        .none_hash = f->none,
    };
    f->p = gw_proxy_create(&cfg);
    assert_non_null(f->p);
    assert_int_equal(gw_proxy_add_model(f->p, "m", 0), ST_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    gw_proxy_destroy(f->p);
    mx_registry_destroy(f->reg);
    pidx_destroy(f->pidx);
    tok_destroy(f->tok);
    free(f);
    return 0;
}

/* A completions body whose prompt is n_chars letters; *full gets the engine's whole chain. */
static char *body_for(fx_t *f, size_t n_chars, const char *salt, uint64_t **full, size_t *n_full)
{
    char *prompt = malloc(n_chars + 1);
    for (size_t i = 0; i < n_chars; i++)
        prompt[i] = (char)('a' + (i * 7 + i / 26) % 26);
    prompt[n_chars] = '\0';
    char *body = malloc(n_chars + 128);
    if (salt)
        sprintf(body, "{\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":1,\"cache_salt\":\"%s\"}",
                prompt, salt);
    else
        sprintf(body, "{\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":1}", prompt);
    /* the engine's tokens: BOS then one per byte */
    size_t cap = n_chars + 8, nt = 0;
    int32_t *toks = malloc(cap * sizeof *toks);
    assert_int_equal(tok_encode(f->tok, prompt, n_chars, true, false, toks, cap, &nt), ST_OK);
    *n_full = nt / BS;
    *full = malloc((*n_full + 1) * sizeof **full);
    kvh_chain_low64(&f->none, BS, toks, nt, salt, salt ? strlen(salt) : 0, *full, *n_full);
    free(toks);
    free(prompt);
    return body;
}

static void prepare_ok(fx_t *f, const char *body, gw_prep_t *q)
{
    api_err_t err;
    int rc = gw_proxy_prepare(f->p, body, strlen(body), false, q, &err);
    if (rc != ST_OK)
        fail_msg("prepare: %d %s", err.status, err.msg);
}

/* A smaller context length reported later rebuilds the model's validator; it must keep
 * working (it borrows the model's name array: once from a stack copy, read after return). */
static void test_smaller_context_rebuilds_validator(void **state)
{
    fx_t *f = *state;
    assert_int_equal(gw_proxy_add_model(f->p, "m", 4096), ST_OK);
    assert_int_equal(gw_proxy_add_model(f->p, "m", 64), ST_OK);
    assert_int_equal(gw_proxy_add_model(f->p, "m", 128), ST_OK); /* larger: kept at 64 */
    gw_prep_t q;
    prepare_ok(f, "{\"model\":\"m\",\"prompt\":\"short\",\"max_tokens\":1}", &q);
    assert_string_equal(q.model, "m");
    gw_prep_deinit(&q);
    uint64_t *full;
    size_t nf;
    char *body = body_for(f, 100, NULL, &full, &nf);
    api_err_t err;
    assert_int_equal(gw_proxy_prepare(f->p, body, strlen(body), false, &q, &err), ST_INVAL);
    assert_int_equal(err.status, 400); /* longer than the 64-token context */
    free(body);
    free(full);
}

static void test_unseen_prompt_hashes_one_batch(void **state)
{
    fx_t *f = *state;
    uint64_t *full;
    size_t nf;
    char *body = body_for(f, 4000, NULL, &full, &nf);
    gw_prep_t q;
    prepare_ok(f, body, &q);
    assert_int_equal(q.n_hashes, 16); /* nobody holds block 0..15: no more are needed */
    assert_memory_equal(q.hashes, full, 16 * sizeof *full);
    gw_prep_deinit(&q);
    free(body);
    free(full);
}

static void test_held_prefix_extends_in_doubling_batches(void **state)
{
    fx_t *f = *state;
    uint64_t *full;
    size_t nf;
    char *body = body_for(f, 4000, NULL, &full, &nf);
    assert_true(nf > 200);
    /* endpoint 1 holds the first 40 blocks: batches 16 + 32 cover them, the third is not needed */
    pidx_add(f->pidx, 1, full, 40);
    gw_prep_t q;
    prepare_ok(f, body, &q);
    assert_int_equal(q.n_hashes, 48);
    assert_memory_equal(q.hashes, full, 48 * sizeof *full);
    gw_prep_deinit(&q);
    /* holding all 48 computed: the next batch (64) is computed too */
    pidx_add(f->pidx, 0, full, 48);
    prepare_ok(f, body, &q);
    assert_int_equal(q.n_hashes, 112);
    assert_memory_equal(q.hashes, full, 112 * sizeof *full);
    gw_prep_deinit(&q);
    /* everything held: the whole chain */
    pidx_add(f->pidx, 0, full, nf);
    prepare_ok(f, body, &q);
    assert_int_equal(q.n_hashes, nf);
    assert_memory_equal(q.hashes, full, nf * sizeof *full);
    gw_prep_deinit(&q);
    free(body);
    free(full);
}

static void test_salt_changes_every_hash(void **state)
{
    fx_t *f = *state;
    uint64_t *plain, *salted;
    size_t n1, n2;
    char *b1 = body_for(f, 400, NULL, &plain, &n1);
    char *b2 = body_for(f, 400, "tenant-a", &salted, &n2);
    assert_int_equal(n1, n2);
    pidx_add(f->pidx, 0, salted, n2);
    gw_prep_t q;
    prepare_ok(f, b2, &q);
    assert_int_equal(q.n_hashes, n2);
    assert_memory_equal(q.hashes, salted, n2 * sizeof *salted);
    for (size_t i = 0; i < n2; i++)
        assert_true(q.hashes[i] != plain[i]);
    gw_prep_deinit(&q);
    free(b1);
    free(b2);
    free(plain);
    free(salted);
}

static void test_cap_and_refusals(void **state)
{
    fx_t *f = *state;
    uint64_t *full;
    size_t nf;
    char *body = body_for(f, (GW_MAX_HASHES + 100) * BS, NULL, &full, &nf);
    pidx_add(f->pidx, 1, full, GW_MAX_HASHES);
    gw_prep_t q;
    prepare_ok(f, body, &q);
    assert_int_equal(q.n_hashes, GW_MAX_HASHES);
    assert_memory_equal(q.hashes, full, GW_MAX_HASHES * sizeof *full);
    gw_prep_deinit(&q);
    free(body);
    free(full);
    api_err_t err;
    const char *bad = "{\"model\":\"m\",\"prompt\":";
    assert_int_not_equal(gw_proxy_prepare(f->p, bad, strlen(bad), false, &q, &err), ST_OK);
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.msg, "Invalid JSON"));
    const char *unknown = "{\"model\":\"nope\",\"prompt\":\"x\"}";
    assert_int_not_equal(gw_proxy_prepare(f->p, unknown, strlen(unknown), false, &q, &err), ST_OK);
    assert_int_equal(err.status, 404);
    /* client-supplied P/D transfer parameters are refused (they name hosts to connect to) */
    const char *kvt = "{\"model\":\"m\",\"prompt\":\"x\",\"kv_transfer_params\":"
                      "{\"do_remote_prefill\":true,\"remote_host\":\"169.254.169.254\"}}";
    assert_int_equal(gw_proxy_prepare(f->p, kvt, strlen(kvt), false, &q, &err), ST_INVAL);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "kv_transfer_params");
}

static void test_gguf_tokenizer_hashes(void **state)
{
    (void)state;
    char path[1024];
    models_testutil_path(path, sizeof path, "vocab/ggml-vocab-llama-spm.gguf");
    gguf_t *g = NULL;
    char err[256];
    if (gguf_open(path, &g, err, sizeof err) != ST_OK)
        MODELS_TESTUTIL_MISSING(path);
    tok_t *tok = tok_gguf_create(g, err, sizeof err);
    gguf_close(g);
    assert_non_null(tok);
    mx_registry_t *reg = mx_registry_create();
    pidx_t *pidx = pidx_create(1 << 12, 4);
    gw_table_t table = {0};
    gw_endpoint_t ep = {.id = 0};
    table.eps[0] = &ep;
    table.n = 1;
    gw_proxy_config_t cfg = {.table = &table,
                             .pidx = pidx,
                             .tok = tok,
                             .tmpl = chat_tmpl_find("chatml"),
                             .block_size = BS,
                             .metrics = reg};
    kvh_none_hash("0", &cfg.none_hash);
    gw_proxy_t *p = gw_proxy_create(&cfg);
    assert_non_null(p);
    assert_int_equal(gw_proxy_add_model(p, "m", 0), ST_OK);
    const char *prompt = "The quick brown fox jumps over the lazy dog, again and again and again.";
    int32_t ids[256];
    size_t n = 0;
    assert_int_equal(tok_encode(tok, prompt, strlen(prompt), true, false, ids, 256, &n), ST_OK);
    assert_true(n / BS >= 2 && n < 100); /* Llama 2 ids, not one per byte */
    uint64_t want[64];
    size_t nb = kvh_chain_low64(&cfg.none_hash, BS, ids, n, NULL, 0, want, 64);
    pidx_add(pidx, 0, want, nb); /* held: every block is computed */
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":1}", prompt);
    gw_prep_t q;
    api_err_t e;
    assert_int_equal(gw_proxy_prepare(p, body, strlen(body), false, &q, &e), ST_OK);
    assert_int_equal(q.n_hashes, nb);
    assert_memory_equal(q.hashes, want, nb * sizeof *want);
    gw_prep_deinit(&q);
    /* ids beyond the vocabulary are refused by the gateway itself, as the engine would */
    const char *bad = "{\"model\":\"m\",\"prompt\":[1, 32000],\"max_tokens\":1}";
    assert_int_not_equal(gw_proxy_prepare(p, bad, strlen(bad), false, &q, &e), ST_OK);
    assert_int_equal(e.status, 400);
    gw_proxy_destroy(p);
    pidx_destroy(pidx);
    mx_registry_destroy(reg);
    tok_destroy(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unseen_prompt_hashes_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smaller_context_rebuilds_validator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_prefix_extends_in_doubling_batches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_salt_changes_every_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_and_refusals, setup, teardown),
        cmocka_unit_test(test_gguf_tokenizer_hashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
