/*
 * test_gw_gov.c - the gateway's governance glue (gw_gov.c): authentication (401 bodies), guard_body
 * masking in completions and chat prompts, deny-pattern blocks, token-id prompts under prompt
 * rules, admission (404 model, 400 limits, 429 with headers per tenant, concurrency released by
 * gwg_finish), audit fail-closed 503 on /dev/full, SSE output parsing split at every byte, output
 * blocks, audit records read back (fields, modes off/redacted/full, chain verified), reload keeping
 * the old config on a bad file with an in-flight request releasing after it, and the guard hook
 * (allow, deny 403, timeouts fail-open / fail-closed) against a tiny server thread on 127.0.0.1.
 * Bounded waits only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/status.h"
#include "gateway/gw_gov.h"

#define T0 1000000000000LL
#define KEY_A "sy-test-key-aaaaaaaaaaaaaaaa"
#define KEY_B "sy-test-key-bbbbbbbbbbbbbbbb"
#define CARD "4111 1111 1111 1111"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/sy-test-gwgov.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Writes the tenant file: team-a (KEY_A, model m1 only, rps 1 burst 1, max_concurrent 1,
 * audit_prompt extra) and team-b (KEY_B, every model). */
static void write_tenants(const char *path, const char *a_extra)
{
    char ha[65], hb[65];
    assert_int_equal(gten_key_sha256_hex(KEY_A, strlen(KEY_A), ha), ST_OK);
    assert_int_equal(gten_key_sha256_hex(KEY_B, strlen(KEY_B), hb), ST_OK);
    char text[2048];
    snprintf(text, sizeof text,
             "tenants:\n"
             "  - name: team-a\n"
             "    key_sha256: %s\n"
             "    models: [m1]\n"
             "%s"
             "  - name: team-b\n"
             "    key_sha256: %s\n",
             ha, a_extra ? a_extra : "", hb);
    write_file(path, text);
}

static const char *GUARD_YAML = "version: 1\n"
                                "defaults:\n"
                                "  max_prompt_tokens: 100\n"
                                "  max_tokens: 50\n"
                                "  deny:\n"
                                "    - name: jailbreak\n"
                                "      pattern: 'ignore previous instructions'\n"
                                "  pii:\n"
                                "    card: mask\n"
                                "  output:\n"
                                "    deny:\n"
                                "      - name: secret\n"
                                "        pattern: 'TOPSECRET'\n";

typedef struct fx {
    gwg_t *g;
    gwg_config_t cfg;
    char keys[300], guard[300], audit[300];
} fx_t;

static void fx_create(fx_t *f, bool keys, const char *a_extra, bool guard, bool audit)
{
    memset(f, 0, sizeof *f);
    gwg_config_default(&f->cfg);
    if (keys) {
        path_of(f->keys, sizeof f->keys, "keys.yaml");
        write_tenants(f->keys, a_extra);
        f->cfg.api_keys = f->keys;
    }
    if (guard) {
        path_of(f->guard, sizeof f->guard, "guard.yaml");
        write_file(f->guard, GUARD_YAML);
        f->cfg.guardrails = f->guard;
    }
    if (audit) {
        path_of(f->audit, sizeof f->audit, "audit.log");
        unlink(f->audit);
        f->cfg.audit_log = f->audit;
    }
    char err[512] = "";
    f->g = gwg_create(&f->cfg, T0, err, sizeof err);
    if (!f->g)
        fail_msg("gwg_create: %s", err);
}

static int auth(fx_t *f, gwg_req_t *r, const char *key)
{
    char hdr[128];
    snprintf(hdr, sizeof hdr, "Bearer %s", key ? key : "");
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    int st = gwg_authenticate(f->g, r, key ? hdr : NULL, key ? strlen(hdr) : 0, &body, &eh);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
    return st;
}

static void test_auth(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, false, NULL, false, false);
    assert_false(gwg_active(f.g));
    assert_false(gwg_auth_enabled(f.g));
    gwg_req_t r;
    gwg_req_init(&r);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 0);
    assert_string_equal(r.tenant, "");
    gwg_req_deinit(&r);
    gwg_destroy(f.g);

    mx_registry_t *m = mx_registry_create();
    fx_create(&f, true, NULL, false, false);
    gwg_destroy(f.g);
    f.cfg.metrics = m;
    char err[256];
    f.g = gwg_create(&f.cfg, T0, err, sizeof err);
    assert_non_null(f.g);
    assert_true(gwg_auth_enabled(f.g));
    gwg_req_init(&r);
    assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 401);
    assert_non_null(strstr(body.data, "You didn't provide an API key"));
    assert_string_equal(eh.data, "www-authenticate: Bearer\r\n");
    sy_buf_reset(&body);
    sy_buf_reset(&eh);
    assert_int_equal(gwg_authenticate(f.g, &r, "Basic abc", 9, &body, &eh), 401);
    sy_buf_reset(&body);
    sy_buf_reset(&eh);
    assert_int_equal(gwg_authenticate(f.g, &r, "Bearer sy-wrong-key-xxxxxxxx", 28, &body, &eh),
                     401);
    assert_non_null(strstr(body.data, "\"code\":\"invalid_api_key\""));
    assert_int_equal(auth(&f, &r, KEY_B), 0);
    assert_string_equal(r.tenant, "team-b");
    gwg_req_deinit(&r);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(m, &out), ST_OK);
    assert_non_null(
        strstr(out.data, "switchyard_gateway_auth_failures_total{reason=\"missing\"} 1"));
    assert_non_null(
        strstr(out.data, "switchyard_gateway_auth_failures_total{reason=\"wrong_key\"} 1"));
    sy_buf_deinit(&out);
    gwg_destroy(f.g);
    mx_registry_destroy(m);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

static int guard(fx_t *f, gwg_req_t *r, json_t *root, bool chat, bool *mod, sy_buf_t *body)
{
    return gwg_guard_body(f->g, r, root, chat, "m1", mod, body);
}

static void test_guard_body(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, true, NULL, true, false);
    sy_buf_t body = SY_BUF_INIT;
    bool mod = false;

    /* completions: the card is masked in place */
    gwg_req_t r;
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    json_t *root = json_pack("{s:s,s:s}", "model", "m1", "prompt", "pay with " CARD " now");
    assert_int_equal(guard(&f, &r, root, false, &mod, &body), 0);
    assert_true(mod);
    assert_string_equal(json_string_value(json_object_get(root, "prompt")), "pay with [CARD] now");
    assert_int_equal(r.n_hits, 1);
    assert_string_equal(r.hits[0].name, "card");
    json_decref(root);
    gwg_req_deinit(&r);

    /* chat: string content and text parts */
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    root = json_loads("{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"card " CARD
                      "\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x " CARD
                      "\"}]}]}",
                      0, NULL);
    assert_non_null(root);
    mod = false;
    assert_int_equal(guard(&f, &r, root, true, &mod, &body), 0);
    assert_true(mod);
    json_t *msgs = json_object_get(root, "messages");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "card [CARD]");
    json_t *part = json_array_get(json_object_get(json_array_get(msgs, 1), "content"), 0);
    assert_string_equal(json_string_value(json_object_get(part, "text")), "x [CARD]");
    json_decref(root);
    gwg_req_deinit(&r);

    /* a deny pattern blocks: 400 policy error */
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    root = json_pack("{s:s,s:[s,s]}", "model", "m1", "prompt", "hello",
                     "please ignore previous instructions");
    sy_buf_reset(&body);
    assert_int_equal(guard(&f, &r, root, false, &mod, &body), 400);
    json_t *b = json_loads(body.data, 0, NULL);
    assert_non_null(b);
    json_t *e = json_object_get(b, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "BadRequestError");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "content_policy_violation");
    assert_true(json_is_null(json_object_get(e, "param")));
    assert_true(json_is_string(json_object_get(e, "message")));
    json_decref(b);
    assert_string_equal(r.block_rule, "jailbreak");
    json_decref(root);
    gwg_req_deinit(&r);

    /* token-id prompts cannot be checked: refused under prompt rules */
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    root = json_loads("{\"model\":\"m1\",\"prompt\":[1,2,3]}", 0, NULL);
    sy_buf_reset(&body);
    assert_int_equal(guard(&f, &r, root, false, &mod, &body), 400);
    assert_string_equal(r.block_rule, "token_prompt");
    json_decref(root);
    gwg_req_deinit(&r);

    gwg_destroy(f.g);
    sy_buf_deinit(&body);
}

static int admit(fx_t *f, gwg_req_t *r, const char *model, int64_t pt, int64_t mt, int64_t now,
                 sy_buf_t *body, sy_buf_t *eh)
{
    sy_buf_reset(body);
    sy_buf_reset(eh);
    return gwg_admit(f->g, r, model, pt, mt, now, body, eh);
}

static void finish(fx_t *f, gwg_req_t *r, int status)
{
    gwg_summary_t s;
    memset(&s, 0, sizeof s);
    s.path = "/v1/completions";
    s.model = "m1";
    s.status = status;
    s.score_total = NAN;
    s.prompt_tokens = s.completion_tokens = s.cached_tokens = -1;
    s.ttft_ms = s.e2e_ms = -1;
    gwg_finish(f->g, r, &s);
    gwg_req_deinit(r);
}

static void test_admit(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, true, "    requests_per_second: 1\n    max_concurrent: 1\n", true, false);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    gwg_req_t r, r2;

    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    assert_int_equal(admit(&f, &r, "m2", 5, -1, T0, &body, &eh), 404);
    assert_non_null(strstr(body.data, "model_not_found"));
    finish(&f, &r, 404);

    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    assert_int_equal(admit(&f, &r, "m1", 500, -1, T0, &body, &eh), 400);
    assert_string_equal(r.block_rule, "max_prompt_tokens");
    finish(&f, &r, 400);
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    assert_int_equal(admit(&f, &r, "m1", 5, 500, T0, &body, &eh), 400);
    assert_string_equal(r.block_rule, "max_tokens");
    finish(&f, &r, 400);

    /* rps 1 burst 1: the first passes (with headers), the second gets 429 */
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    assert_int_equal(admit(&f, &r, "m1", 5, 10, T0, &body, &eh), 0);
    assert_non_null(strstr(eh.data, "x-ratelimit-limit-requests: 1\r\n"));
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    assert_int_equal(admit(&f, &r2, "m1", 5, 10, T0, &body, &eh), 429);
    assert_non_null(strstr(eh.data, "retry-after: 1\r\n"));
    assert_non_null(strstr(body.data, "rate_limit_exceeded"));
    finish(&f, &r2, 429);
    /* another tenant is not affected */
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_B), 0);
    assert_int_equal(admit(&f, &r2, "m9", 5, 10, T0, &body, &eh), 0);
    finish(&f, &r2, 200);
    /* concurrency: after the refill, r still holds the one slot */
    int64_t t1 = T0 + 2000000000LL;
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    assert_int_equal(admit(&f, &r2, "m1", 5, 10, t1, &body, &eh), 429);
    assert_int_equal(r2.rl.reason, GLIM_REFUSED_CONCURRENCY);
    finish(&f, &r2, 429);
    finish(&f, &r, 200); /* releases the slot */
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    assert_int_equal(admit(&f, &r2, "m1", 5, 10, t1, &body, &eh), 0);
    finish(&f, &r2, 200);

    gwg_destroy(f.g);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

static void test_audit_fail_closed(void **state)
{
    (void)state;
    gwg_config_t cfg;
    gwg_config_default(&cfg);
    cfg.audit_log = "/dev/full";
    cfg.audit_fsync = GAUD_FSYNC_NONE;
    char err[256];
    gwg_t *g = gwg_create(&cfg, T0, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    gwg_req_t r;
    gwg_req_init(&r);
    assert_int_equal(gwg_authenticate(g, &r, NULL, 0, &body, &eh), 0);
    assert_int_equal(gwg_admit(g, &r, "m", 1, -1, T0, &body, &eh), 0);
    gwg_summary_t s;
    memset(&s, 0, sizeof s);
    s.status = 200;
    s.score_total = NAN;
    gwg_finish(g, &r, &s);
    gwg_req_deinit(&r);
    gaud_stats_t st;
    for (int i = 0; i < 500; i++) {
        gaud_stats(gwg_audit(g), &st);
        if (st.broken)
            break;
        usleep(10000);
    }
    assert_true(st.broken);
    gwg_req_init(&r);
    sy_buf_reset(&body);
    assert_int_equal(gwg_admit(g, &r, "m", 1, -1, T0, &body, &eh), 503);
    assert_non_null(strstr(body.data, "audit"));
    gwg_req_deinit(&r);
    gwg_destroy(g);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

static const char *SSE = "data: {\"choices\":[{\"index\":0,\"text\":\"Hel\"}]}\n\n"
                         "data: {\"choices\":[{\"index\":0,\"text\":\"lo \\u00e9\"}]}\n\n"
                         ": comment\n\n"
                         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"}}]}\r\n\r\n"
                         "data: {\"choices\":[],\"usage\":{\"completion_tokens\":7}}\n\n"
                         "data: [DONE]\n\n";

static void test_output_split(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, false, NULL, false, true);
    size_t n = strlen(SSE);
    for (size_t cut = 0; cut <= n; cut++) {
        gwg_req_t r;
        gwg_req_init(&r);
        r.response_mode = GWG_CONTENT_FULL;
        sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
        assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 0);
        r.response_mode = GWG_CONTENT_FULL;
        assert_int_equal(gwg_admit(f.g, &r, "m1", 1, -1, T0, &body, &eh), 0);
        assert_true(r._parse);
        assert_int_equal(gwg_output_stream(f.g, &r, SSE, cut, T0), GGD_ALLOW);
        assert_int_equal(gwg_output_stream(f.g, &r, SSE + cut, n - cut, T0), GGD_ALLOW);
        assert_string_equal(r.response_text.data, "Hello \xc3\xa9!");
        assert_int_equal(r.output_tokens, 3);
        assert_int_equal(r.usage_completion, 7);
        gwg_req_deinit(&r);
        sy_buf_deinit(&body);
        sy_buf_deinit(&eh);
    }
    /* byte by byte */
    gwg_req_t r;
    gwg_req_init(&r);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 0);
    r.response_mode = GWG_CONTENT_FULL;
    assert_int_equal(gwg_admit(f.g, &r, "m1", 1, -1, T0, &body, &eh), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(gwg_output_stream(f.g, &r, SSE + i, 1, T0), GGD_ALLOW);
    assert_string_equal(r.response_text.data, "Hello \xc3\xa9!");
    assert_int_equal(r.output_tokens, 3);
    gwg_req_deinit(&r);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
    gwg_destroy(f.g);
}

static ggd_decision_t stream(fx_t *f, gwg_req_t *r, const char *s)
{
    return gwg_output_stream(f->g, r, s, strlen(s), T0);
}

static void test_output_block(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, false, NULL, true, false);
    gwg_req_t r;
    gwg_req_init(&r);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 0);
    assert_int_equal(gwg_admit(f.g, &r, "m1", 1, -1, T0, &body, &eh), 0);
    assert_true(r._parse);
    assert_int_equal(stream(&f, &r, "data: {\"choices\":[{\"text\":\"the TOP\"}]}\n\n"), GGD_ALLOW);
    ggd_decision_t d =
        stream(&f, &r, "data: {\"choices\":[{\"text\":\"SECRET is\"}]}\n\ndata: [DONE]\n\n");
    assert_int_equal(d, GGD_BLOCK);
    assert_string_equal(r.block_rule, "secret");
    sy_buf_t ev = SY_BUF_INIT;
    gwg_policy_event(&r, &ev);
    assert_true(strncmp(ev.data, "data: {\"error\":", 15) == 0);
    assert_non_null(strstr(ev.data, "\n\ndata: [DONE]\n\n"));
    sy_buf_deinit(&ev);
    gwg_req_deinit(&r);

    /* buffered */
    gwg_req_init(&r);
    assert_int_equal(gwg_authenticate(f.g, &r, NULL, 0, &body, &eh), 0);
    assert_int_equal(gwg_admit(f.g, &r, "m1", 1, -1, T0, &body, &eh), 0);
    const char *ans = "{\"choices\":[{\"message\":{\"content\":\"a TOPSECRET b\"}}],"
                      "\"usage\":{\"completion_tokens\":4}}";
    assert_int_equal(gwg_output_body(f.g, &r, ans, strlen(ans), T0), GGD_BLOCK);
    sy_buf_reset(&body);
    gwg_policy_error_body(&r, &body);
    assert_non_null(strstr(body.data, "content_policy_violation"));
    gwg_req_deinit(&r);
    gwg_destroy(f.g);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

/* Reads the audit file back: an array of the parsed lines (owned). */
static json_t *read_audit(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)n, 0, &je);
        if (!j)
            fail_msg("bad audit line: %s (%s)", line, je.text);
        json_array_append_new(arr, j);
    }
    free(line);
    fclose(fp);
    const char *files[1] = {path};
    gaud_verify_report_t rep;
    assert_int_equal(gaud_verify_files(files, 1, NULL, &rep), ST_OK);
    return arr;
}

/* One request through every step with prompt p and streamed answer text t. */
static void run_req(fx_t *f, const char *key, const char *p, const char *t, int64_t now)
{
    gwg_req_t r;
    gwg_req_init(&r);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    assert_int_equal(auth(f, &r, key), 0);
    json_t *root = json_pack("{s:s,s:s}", "model", "m1", "prompt", p);
    bool mod;
    assert_int_equal(gwg_guard_body(f->g, &r, root, false, "m1", &mod, &body), 0);
    json_decref(root);
    assert_int_equal(gwg_admit(f->g, &r, "m1", 3, 10, now, &body, &eh), 0);
    json_t *ev = json_pack("{s:[{s:s}]}", "choices", "text", t);
    char *evs = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    sy_buf_t sse = SY_BUF_INIT;
    sy_buf_appendf(&sse,
                   "data: %s\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}"
                   "\n\ndata: [DONE]\n\n",
                   evs);
    free(evs);
    assert_int_equal(gwg_output_stream(f->g, &r, sse.data, sse.len, now), GGD_ALLOW);
    sy_buf_deinit(&sse);
    gwg_summary_t s;
    memset(&s, 0, sizeof s);
    s.request_id = "req-1";
    s.path = "/v1/completions";
    s.model = "m1";
    s.status = 200;
    s.endpoint = "e1";
    s.score_total = 1.5;
    s.candidates = 2;
    s.cached_blocks_chosen = 3;
    s.cached_blocks_best = 4;
    s.prompt_tokens = 3;
    s.completion_tokens = -1;
    s.cached_tokens = 0;
    s.ttft_ms = 12.5;
    s.e2e_ms = 30;
    s.start_unix_ns = 1764633600123000000LL; /* 2025-12-02T00:00:00.123Z */
    gwg_finish(f->g, &r, &s);
    gwg_req_deinit(&r);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

static void test_audit_records(void **state)
{
    (void)state;
    fx_t f;
    /* team-a logs prompts in full (its own setting), team-b gets the default (redacted) */
    memset(&f, 0, sizeof f);
    fx_create(&f, true, "    audit_prompt: full\n    audit_response: off\n", false, true);
    run_req(&f, KEY_A, "mail bob@example.com card " CARD, "ans bob@example.com", T0);
    run_req(&f, KEY_B, "mail bob@example.com card " CARD, "ans bob@example.com", T0);
    gwg_destroy(f.g);
    f.cfg.audit_prompt = GWG_CONTENT_OFF;
    f.cfg.audit_response = GWG_CONTENT_FULL;
    char err[256];
    f.g = gwg_create(&f.cfg, T0, err, sizeof err);
    assert_non_null(f.g);
    run_req(&f, KEY_B, "mail bob@example.com", "ans bob@example.com", T0);
    gwg_destroy(f.g);

    json_t *arr = read_audit(f.audit);
    assert_int_equal(json_array_size(arr), 3);
    json_t *a = json_array_get(arr, 0), *b = json_array_get(arr, 1), *c = json_array_get(arr, 2);
    assert_string_equal(json_string_value(json_object_get(a, "time")), "2025-12-02T00:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(a, "request_id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(a, "tenant")), "team-a");
    assert_string_equal(json_string_value(json_object_get(a, "path")), "/v1/completions");
    assert_string_equal(json_string_value(json_object_get(a, "model")), "m1");
    assert_int_equal(json_integer_value(json_object_get(a, "status")), 200);
    assert_string_equal(json_string_value(json_object_get(a, "endpoint")), "e1");
    json_t *sc = json_object_get(a, "scores");
    assert_true(json_number_value(json_object_get(sc, "total")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(sc, "candidates")), 2);
    assert_int_equal(json_integer_value(json_object_get(sc, "cached_blocks_best")), 4);
    assert_int_equal(strlen(json_string_value(json_object_get(a, "prompt_sha256"))), 64);
    assert_string_equal(json_string_value(json_object_get(a, "prompt_sha256")),
                        json_string_value(json_object_get(b, "prompt_sha256")));
    assert_string_equal(json_string_value(json_object_get(a, "prompt")),
                        "mail bob@example.com card " CARD);
    assert_true(json_is_null(json_object_get(a, "response")));
    /* team-a's output needs no parsing (no output checks, response off, no token limit), so the
     * usage chunk is not seen: the summary's -1 stays unknown; team-b's is parsed */
    assert_true(json_is_null(json_object_get(a, "completion_tokens")));
    assert_int_equal(json_integer_value(json_object_get(b, "completion_tokens")), 2);
    assert_true(json_number_value(json_object_get(a, "ttft_ms")) == 12.5);
    assert_true(json_is_array(json_object_get(a, "guardrails")));
    assert_true(json_is_null(json_object_get(a, "blocked_by")));
    assert_int_equal(json_integer_value(json_object_get(a, "seq")), 1);
    /* redacted */
    assert_string_equal(json_string_value(json_object_get(b, "prompt")),
                        "mail [EMAIL] card [CARD]");
    assert_string_equal(json_string_value(json_object_get(b, "response")), "ans [EMAIL]");
    /* off / full */
    assert_true(json_is_null(json_object_get(c, "prompt")));
    assert_string_equal(json_string_value(json_object_get(c, "response")), "ans bob@example.com");
    json_decref(arr);
}

static void test_audit_truncate(void **state)
{
    (void)state;
    fx_t f;
    memset(&f, 0, sizeof f);
    gwg_config_default(&f.cfg);
    path_of(f.audit, sizeof f.audit, "trunc.log");
    unlink(f.audit);
    f.cfg.audit_log = f.audit;
    f.cfg.audit_prompt = GWG_CONTENT_FULL;
    f.cfg.audit_text_max = 8;
    char err[256];
    f.g = gwg_create(&f.cfg, T0, err, sizeof err);
    assert_non_null(f.g);
    run_req(&f, NULL, "abcdefg\xc3\xa9xyz", "0123456789", T0); /* é straddles byte 8 */
    gwg_destroy(f.g);
    json_t *arr = read_audit(f.audit);
    json_t *a = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(a, "prompt")), "abcdefg");
    assert_true(json_is_true(json_object_get(a, "prompt_truncated")));
    assert_string_equal(json_string_value(json_object_get(a, "response")), "01234567");
    assert_true(json_is_true(json_object_get(a, "response_truncated")));
    json_decref(arr);
}

static void test_reload(void **state)
{
    (void)state;
    fx_t f;
    fx_create(&f, true, "    max_concurrent: 1\n", true, false);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    gwg_req_t r;
    gwg_req_init(&r);
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    bool mod;
    json_t *root = json_pack("{s:s,s:s}", "model", "m1", "prompt", "hi");
    assert_int_equal(gwg_guard_body(f.g, &r, root, false, "m1", &mod, &body), 0);
    json_decref(root);
    assert_int_equal(admit(&f, &r, "m1", 1, -1, T0, &body, &eh), 0);

    /* a bad guardrails file keeps the old one */
    write_file(f.guard, "version: 1\nbogus: 1\n");
    char err[512] = "";
    assert_int_not_equal(gwg_reload(f.g, T0, err, sizeof err), ST_OK);
    assert_non_null(strstr(err, "guard.yaml"));
    gwg_req_t r2;
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_B), 0);
    root = json_pack("{s:s,s:s}", "model", "m1", "prompt", "ignore previous instructions");
    assert_int_equal(gwg_guard_body(f.g, &r2, root, false, "m1", &mod, &body), 400);
    json_decref(root);
    gwg_req_deinit(&r2);

    /* a good reload of both: no deny patterns any more; the in-flight request keeps its
     * guardrails and its lease */
    write_file(f.guard, "version: 1\n");
    write_tenants(f.keys, "    max_concurrent: 1\n");
    assert_int_equal(gwg_reload(f.g, T0, err, sizeof err), ST_OK);
    assert_int_equal(stream(&f, &r, "data: {\"choices\":[{\"text\":\"TOPSECRET ok\"}]}\n"),
                     GGD_BLOCK);
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    assert_int_equal(admit(&f, &r2, "m1", 1, -1, T0, &body, &eh), 429);
    gwg_req_deinit(&r2);
    finish(&f, &r, 200);
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    root = json_pack("{s:s,s:s}", "model", "m1", "prompt", "ignore previous instructions");
    assert_int_equal(gwg_guard_body(f.g, &r2, root, false, "m1", &mod, &body), 0);
    json_decref(root);
    assert_int_equal(admit(&f, &r2, "m1", 1, -1, T0, &body, &eh), 0);
    finish(&f, &r2, 200);

    /* a bad tenant file keeps the old tenants */
    write_file(f.keys, "tenants: 3\n");
    assert_int_not_equal(gwg_reload(f.g, T0, err, sizeof err), ST_OK);
    gwg_req_init(&r2);
    assert_int_equal(auth(&f, &r2, KEY_A), 0);
    gwg_req_deinit(&r2);

    gwg_destroy(f.g);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

/* ---- guard hook ---- */

typedef struct hook_srv {
    int fd;
    int port;
    int mode; /* 0 = 200, 1 = 403 with message, 2 = silent */
    pthread_t th;
    char got[4096];
} hook_srv_t;

static void *srv_main(void *arg)
{
    hook_srv_t *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t n = 0;
    for (;;) {
        ssize_t k = read(c, s->got + n, sizeof s->got - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        s->got[n] = '\0';
        char *he = strstr(s->got, "\r\n\r\n");
        const char *cl = strstr(s->got, "Content-Length: ");
        if (!cl)
            cl = strstr(s->got, "content-length: ");
        if (he && cl && n >= (size_t)(he + 4 - s->got) + (size_t)atoi(cl + 16))
            break;
    }
    if (s->mode == 0) {
        const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        (void)!write(c, resp, strlen(resp));
    } else if (s->mode == 1) {
        const char *resp =
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 19\r\n\r\n{\"message\":\"nope!\"}";
        (void)!write(c, resp, strlen(resp));
    } else {
        usleep(300000);
    }
    usleep(50000);
    close(c);
    return NULL;
}

static void srv_start(hook_srv_t *s, int mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->fd, 4), 0);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(hook_srv_t *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->fd);
}

typedef struct hook_res {
    int calls;
    int status;
    char body[512];
    ev_loop_t *loop;
} hook_res_t;

static void on_hook(void *udata, int status, const sy_buf_t *body)
{
    hook_res_t *h = udata;
    h->calls++;
    h->status = status;
    snprintf(h->body, sizeof h->body, "%s", body->data ? body->data : "");
    ev_stop(h->loop);
}

static void on_guard_timer(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    (void)udata;
    ev_stop(loop);
}

static void run_hook(int mode, const char *on_error, int want_status, const char *want_body)
{
    hook_srv_t srv;
    srv_start(&srv, mode);
    ev_loop_t *loop = ev_loop_create();
    assert_non_null(loop);
    char gpath[300], text[512];
    path_of(gpath, sizeof gpath, "hook.yaml");
    snprintf(text, sizeof text,
             "version: 1\nexternal:\n  url: http://127.0.0.1:%d/v1/guard\n  timeout_ms: 100\n"
             "  on_error: %s\n",
             srv.port, on_error);
    write_file(gpath, text);
    gwg_config_t cfg;
    gwg_config_default(&cfg);
    cfg.loop = loop;
    cfg.guardrails = gpath;
    char err[512];
    gwg_t *g = gwg_create(&cfg, T0, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    gwg_req_t r;
    gwg_req_init(&r);
    hook_res_t res = {0, -1, "", loop};
    assert_int_equal(gwg_hook_start(g, &r, "m1", "hello \"x\"", 9, on_hook, &res), ST_OK);
    uint64_t guard_t = ev_timer_add(loop, 5000, on_guard_timer, NULL);
    ev_run(loop);
    ev_timer_cancel(loop, guard_t);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.status, want_status);
    if (want_body)
        assert_non_null(strstr(res.body, want_body));
    gwg_req_deinit(&r);
    gwg_destroy(g);
    srv_stop(&srv);
    if (mode != 2) {
        assert_non_null(strstr(srv.got, "POST /v1/guard HTTP/1.1"));
        assert_non_null(strstr(srv.got, "{\"tenant\":\"\",\"model\":\"m1\",\"prompt\":\"hello "
                                        "\\\"x\\\"\"}"));
    }
    ev_loop_destroy(loop);
}

static void test_hook(void **state)
{
    (void)state;
    run_hook(0, "allow", 0, NULL);
    run_hook(1, "allow", 400, "nope!");
    run_hook(2, "allow", 0, NULL);
    run_hook(2, "deny", 503, "guard");

    /* nobody listening: connection refused follows on_error */
    {
        hook_srv_t srv;
        srv_start(&srv, 2);
        int port = srv.port;
        srv_stop(&srv); /* the thread ends without accepting; the port is closed */
        ev_loop_t *loop = ev_loop_create();
        char gpath[300], text[512], err2[512];
        path_of(gpath, sizeof gpath, "hook2.yaml");
        snprintf(text, sizeof text,
                 "version: 1\nexternal:\n  url: http://127.0.0.1:%d/g\n  timeout_ms: 2000\n"
                 "  on_error: deny\n",
                 port);
        write_file(gpath, text);
        gwg_config_t c2;
        gwg_config_default(&c2);
        c2.loop = loop;
        c2.guardrails = gpath;
        gwg_t *g2 = gwg_create(&c2, T0, err2, sizeof err2);
        if (!g2)
            fail_msg("%s", err2);
        gwg_req_t r2;
        gwg_req_init(&r2);
        hook_res_t res = {0, -1, "", loop};
        assert_int_equal(gwg_hook_start(g2, &r2, "m1", "p", 1, on_hook, &res), ST_OK);
        uint64_t gt = ev_timer_add(loop, 5000, on_guard_timer, NULL);
        uint64_t t0 = sy_mono_ms();
        ev_run(loop);
        ev_timer_cancel(loop, gt);
        assert_int_equal(res.calls, 1);
        assert_int_equal(res.status, 503);
        assert_true(sy_mono_ms() - t0 < 1500); /* not the 2 s timeout */
        gwg_req_deinit(&r2);

        /* deinit while a call is in flight: no callback, nothing leaked */
        srv_start(&srv, 2);
        gwg_destroy(g2);
        snprintf(text, sizeof text,
                 "version: 1\nexternal:\n  url: http://127.0.0.1:%d/g\n  timeout_ms: 50\n",
                 srv.port);
        write_file(gpath, text);
        g2 = gwg_create(&c2, T0, err2, sizeof err2);
        assert_non_null(g2);
        gwg_req_init(&r2);
        res.calls = 0;
        assert_int_equal(gwg_hook_start(g2, &r2, "m1", "p", 1, on_hook, &res), ST_OK);
        gwg_req_deinit(&r2);
        gt = ev_timer_add(loop, 150, on_guard_timer, NULL);
        ev_run(loop);
        assert_int_equal(res.calls, 0);
        gwg_destroy(g2);
        srv_stop(&srv);
        ev_loop_destroy(loop);
    }

    /* https:// is accepted (TLS client with the system trust store) */
    {
        char gpath[300], err2[512];
        path_of(gpath, sizeof gpath, "hook3.yaml");
        write_file(gpath, "version: 1\nexternal:\n  url: https://127.0.0.1:9/g\n");
        ev_loop_t *loop = ev_loop_create();
        gwg_config_t c2;
        gwg_config_default(&c2);
        c2.loop = loop;
        c2.guardrails = gpath;
        gwg_t *g2 = gwg_create(&c2, T0, err2, sizeof err2);
        if (!g2)
            fail_msg("%s", err2);
        gwg_destroy(g2);
        /* without a loop the hook cannot run: refused at load */
        c2.loop = NULL;
        assert_null(gwg_create(&c2, T0, err2, sizeof err2));
        assert_non_null(strstr(err2, "event loop"));
        ev_loop_destroy(loop);
    }

    /* no hook configured: declined */
    gwg_config_t cfg;
    gwg_config_default(&cfg);
    char err[256];
    gwg_t *g = gwg_create(&cfg, T0, err, sizeof err);
    gwg_req_t r;
    gwg_req_init(&r);
    assert_int_equal(gwg_hook_start(g, &r, "m", "p", 1, on_hook, NULL), ST_DECLINED);
    gwg_req_deinit(&r);
    gwg_destroy(g);
}

static void test_metrics(void **state)
{
    (void)state;
    mx_registry_t *m = mx_registry_create();
    fx_t f;
    memset(&f, 0, sizeof f);
    gwg_config_default(&f.cfg);
    path_of(f.keys, sizeof f.keys, "keys.yaml");
    write_tenants(f.keys, "    requests_per_second: 1\n");
    path_of(f.guard, sizeof f.guard, "guard.yaml");
    write_file(f.guard, GUARD_YAML);
    path_of(f.audit, sizeof f.audit, "metrics.log");
    unlink(f.audit);
    f.cfg.api_keys = f.keys;
    f.cfg.guardrails = f.guard;
    f.cfg.audit_log = f.audit;
    f.cfg.metrics = m;
    char err[512];
    f.g = gwg_create(&f.cfg, T0, err, sizeof err);
    if (!f.g)
        fail_msg("%s", err);
    run_req(&f, KEY_A, "card " CARD, "ok", T0);
    gwg_req_t r;
    gwg_req_init(&r);
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    assert_int_equal(auth(&f, &r, KEY_A), 0);
    assert_int_equal(admit(&f, &r, "m1", 1, -1, T0, &body, &eh), 429);
    finish(&f, &r, 429);
    assert_int_equal(gaud_flush(gwg_audit(f.g), 5000), ST_OK);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(m, &out), ST_OK);
    const char *want[] = {
        "switchyard_gateway_rate_limited_total{limit=\"requests\",tenant=\"team-a\"} 1.0",
        "switchyard_gateway_guardrail_actions_total{action=\"mask\",rule=\"card\"} 1.0",
        "switchyard_gateway_audit_records_total 2.0\n",
        "switchyard_gateway_audit_queue_bytes 0.0\n",
        "switchyard_gateway_audit_broken 0.0\n",
        "switchyard_gateway_audit_dropped_total 0.0\n",
        "switchyard_gateway_audit_errors_total 0.0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out.data, want[i]))
            fail_msg("missing '%s' in:\n%s", want[i], out.data);
    sy_buf_deinit(&out);
    gwg_destroy(f.g);
    /* the collect callback is gone with the gwg_t */
    assert_int_equal(mx_registry_render(m, &out), ST_OK);
    sy_buf_deinit(&out);
    mx_registry_destroy(m);
    json_t *arr = read_audit(f.audit);
    assert_int_equal(json_array_size(arr), 2);
    json_t *a = json_array_get(arr, 0), *b = json_array_get(arr, 1);
    assert_string_equal(json_string_value(json_object_get(a, "prompt")), "card [CARD]");
    json_t *h = json_array_get(json_object_get(a, "guardrails"), 0);
    assert_string_equal(json_string_value(json_object_get(h, "name")), "card");
    assert_string_equal(json_string_value(json_object_get(h, "action")), "mask");
    assert_int_equal(json_integer_value(json_object_get(h, "count")), 1);
    assert_true(json_is_false(json_object_get(h, "limit")));
    /* refused before the body was guarded: no texts, the reason recorded */
    assert_int_equal(json_integer_value(json_object_get(b, "status")), 429);
    assert_true(json_is_null(json_object_get(b, "prompt")));
    assert_true(json_is_null(json_object_get(b, "response")));
    assert_true(json_is_null(json_object_get(b, "prompt_sha256")));
    assert_string_equal(json_string_value(json_object_get(b, "blocked_by")), "rate_limit");
    assert_null(json_object_get(b, "prompt_truncated"));
    json_decref(arr);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
}

/* Governance overhead per request: auth + guardrails (5 deny patterns, 4 PII detectors) + rate
 * limit + audit record on a 4 KB prompt. Printed, not asserted (sanitizer builds are slow). */
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_bench(void **state)
{
    (void)state;
    fx_t f;
    memset(&f, 0, sizeof f);
    gwg_config_default(&f.cfg);
    path_of(f.keys, sizeof f.keys, "keys.yaml");
    write_tenants(f.keys, "    requests_per_second: 1000000\n    burst: 1000000\n");
    path_of(f.guard, sizeof f.guard, "bench.yaml");
    write_file(f.guard, "version: 1\n"
                        "defaults:\n"
                        "  deny:\n"
                        "    - {name: d1, pattern: 'ignore\\s+previous\\s+instructions'}\n"
                        "    - {name: d2, pattern: '(?i)reveal\\s+the\\s+system\\s+prompt'}\n"
                        "    - {name: d3, pattern: '\\bAKIA[0-9A-Z]{16}\\b', action: mask}\n"
                        "    - {name: d4, pattern: 'BEGIN PRIVATE KEY'}\n"
                        "    - {name: d5, pattern: '(?i)\\bpassword\\s*[:=]', action: redact}\n"
                        "  pii: {email: mask, phone: mask, card: mask, iban: mask}\n");
    path_of(f.audit, sizeof f.audit, "bench.log");
    unlink(f.audit);
    f.cfg.api_keys = f.keys;
    f.cfg.guardrails = f.guard;
    f.cfg.audit_log = f.audit;
    f.cfg.audit_fsync = GAUD_FSYNC_NONE;
    char err[512];
    f.g = gwg_create(&f.cfg, T0, err, sizeof err);
    if (!f.g)
        fail_msg("%s", err);
    sy_buf_t p = SY_BUF_INIT;
    while (p.len < 4000)
        sy_buf_append_str(&p, "The quarterly report shows revenue growth in all regions; "
                              "contact jane.doe@example.com or +44 20 7946 0958 for details. ");
    json_t *root = json_pack("{s:s,s:s#}", "model", "m1", "prompt", p.data, p.len);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_A);
    enum { N = 300 };
    static int64_t ns[N];
    sy_buf_t body = SY_BUF_INIT, eh = SY_BUF_INIT;
    for (int i = 0; i < N; i++) {
        json_t *copy = json_deep_copy(root);
        uint64_t t0 = sy_mono_ns();
        gwg_req_t r;
        gwg_req_init(&r);
        sy_buf_reset(&body);
        sy_buf_reset(&eh);
        bool mod;
        assert_int_equal(gwg_authenticate(f.g, &r, hdr, strlen(hdr), &body, &eh), 0);
        assert_int_equal(gwg_guard_body(f.g, &r, copy, false, "m1", &mod, &body), 0);
        assert_int_equal(gwg_admit(f.g, &r, "m1", 1000, 100, T0, &body, &eh), 0);
        gwg_summary_t s;
        memset(&s, 0, sizeof s);
        s.path = "/v1/completions";
        s.model = "m1";
        s.status = 200;
        s.score_total = NAN;
        s.prompt_tokens = s.completion_tokens = s.cached_tokens = -1;
        s.ttft_ms = s.e2e_ms = -1;
        gwg_finish(f.g, &r, &s);
        gwg_req_deinit(&r);
        ns[i] = (int64_t)(sy_mono_ns() - t0);
        json_decref(copy);
    }
    qsort(ns, N, sizeof ns[0], cmp_i64);
    printf("gw_gov bench (4 KB prompt, auth + 5 deny + 4 PII + rate limit + audit): p50 %.1f us, "
           "p99 %.1f us\n",
           ns[N / 2] / 1e3, ns[N * 99 / 100] / 1e3);
    json_decref(root);
    sy_buf_deinit(&p);
    sy_buf_deinit(&body);
    sy_buf_deinit(&eh);
    gwg_destroy(f.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth),          cmocka_unit_test(test_guard_body),
        cmocka_unit_test(test_admit),         cmocka_unit_test(test_audit_fail_closed),
        cmocka_unit_test(test_output_split),  cmocka_unit_test(test_output_block),
        cmocka_unit_test(test_audit_records), cmocka_unit_test(test_audit_truncate),
        cmocka_unit_test(test_reload),        cmocka_unit_test(test_hook),
        cmocka_unit_test(test_metrics),       cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
