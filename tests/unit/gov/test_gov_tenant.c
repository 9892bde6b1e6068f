/*
 * test_gov_tenant.c - unit tests of tenants and API keys (gov_tenant.h): the tenant file (every
 * key, defaults, and each class of error with its line), authentication (ok, missing header,
 * wrong scheme, wrong key, another tenant's key, several keys per tenant), the 401/404 bodies,
 * the model allow-list, per-tenant limits through the registry (two tenants independent), reload
 * (carry-over of bucket levels and in-flight counts by name, release after reload and after the
 * tenant was removed or the registry destroyed, a bad file keeping the old config), the shipped
 * example file, the functions behind `switchyard apikey` (a generated key hashes to the printed
 * key_sha256 and authenticates), and a timing print of auth + admission (no assertion).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/status.h"
#include "gov/gov_tenant.h"

#define SEC 1000000000LL
#define T0 (500 * SEC)

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char KEY_A[] = "sy-key-of-team-a-0123456789";
static const char KEY_A2[] = "sy-second-key-of-team-a";
static const char KEY_B[] = "sy-key-of-team-b-abcdefghij";

static char hex_a[65], hex_a2[65], hex_b[65];

static int setup(void **state)
{
    (void)state;
    assert_int_equal(gten_key_sha256_hex(KEY_A, strlen(KEY_A), hex_a), ST_OK);
    assert_int_equal(gten_key_sha256_hex(KEY_A2, strlen(KEY_A2), hex_a2), ST_OK);
    assert_int_equal(gten_key_sha256_hex(KEY_B, strlen(KEY_B), hex_b), ST_OK);
    return 0;
}

/* A two-tenant file: team-a (two keys, models m1 m2, 1 rps burst 2, 600 tpm, 2 concurrent) and
 * team-b (one key, every model, 1 rps burst 1). */
static void two_tenants(sy_buf_t *b, const char *a_limits)
{
    sy_buf_reset(b);
    assert_int_equal(sy_buf_appendf(b,
                                    "tenants:\n"
                                    "  - name: team-a\n"
                                    "    key_sha256: [%s, \"%s\"]\n"
                                    "    models: [m1, m2]\n"
                                    "    priority: 7\n"
                                    "%s"
                                    "  - name: team-b\n"
                                    "    key_sha256: %s\n"
                                    "    requests_per_second: 1\n",
                                    hex_a, hex_a2, a_limits, hex_b),
                     ST_OK);
}

#define A_LIMITS                                                                                   \
    "    requests_per_second: 1\n"                                                                 \
    "    burst: 2\n"                                                                               \
    "    tokens_per_minute: 600\n"                                                                 \
    "    max_concurrent: 2\n"

static gten_t *load(const char *text, char *err, size_t errlen)
{
    gten_t *g = NULL;
    int rc = gten_load_text(text, strlen(text), "t.yaml", T0, &g, err, errlen);
    if (rc != ST_OK) {
        assert_null(g);
        return NULL;
    }
    assert_non_null(g);
    return g;
}

static gten_auth_t auth(gten_t *g, const char *hdr, const gten_tenant_t **t)
{
    return gten_authenticate(g, hdr, hdr ? strlen(hdr) : 0, t);
}

static void test_parse_ok(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, A_LIMITS);
    char err[256] = "";
    gten_t *g = load(b.data, err, sizeof err);
    assert_non_null(g);
    assert_int_equal(gten_count(g), 2);
    const gten_tenant_t *a = gten_at(g, 0), *bt = gten_at(g, 1);
    assert_null(gten_at(g, 2));
    assert_string_equal(gten_tenant_name(a), "team-a");
    assert_int_equal(gten_tenant_line(a), 2);
    assert_int_equal(gten_tenant_priority(a), 7);
    const glim_limits_t *l = gten_tenant_limits(a);
    assert_true(l->requests_per_second == 1.0);
    assert_int_equal(l->burst, 2);
    assert_int_equal(l->tokens_per_minute, 600);
    assert_int_equal(l->max_concurrent, 2);
    assert_int_equal(gten_tenant_model_count(a), 2);
    assert_string_equal(gten_tenant_model(a, 1), "m2");
    assert_null(gten_tenant_model(a, 2));
    assert_string_equal(gten_tenant_name(bt), "team-b");
    assert_int_equal(gten_tenant_line(bt), 10);
    assert_int_equal(gten_tenant_priority(bt), 0);
    assert_int_equal(gten_tenant_limits(bt)->tokens_per_minute, 0);
    assert_int_equal(gten_tenant_model_count(bt), 0);
    assert_ptr_equal(gten_find(g, "team-b", 6), bt);
    assert_null(gten_find(g, "team-c", 6));
    assert_null(gten_find(g, "team", 4));
    assert_string_equal(glim_state_name(gten_tenant_limiter(a)), "team-a");
    gten_destroy(g);
    gten_destroy(NULL);

    /* an empty list is a valid file that lets nobody in */
    g = load("tenants: []\n", err, sizeof err);
    assert_non_null(g);
    assert_int_equal(gten_count(g), 0);
    const gten_tenant_t *t;
    assert_int_equal(auth(g, "Bearer x", &t), GTEN_AUTH_WRONG_KEY);
    gten_destroy(g);
    sy_buf_deinit(&b);
}

static void test_audit_modes(void **state)
{
    (void)state;
    static const char text[] = "tenants:\n"
                               "  - name: a\n"
                               "    key_sha256: " HEX_A "\n"
                               "    audit_prompt: full\n"
                               "    audit_response: \"off\"\n"
                               "  - name: b\n"
                               "    key_sha256: " HEX_B "\n"
                               "    audit_response: redacted\n";
    char err[256] = "";
    gten_t *g = load(text, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    assert_int_equal(gten_tenant_audit_prompt(gten_at(g, 0)), GTEN_AUDIT_FULL);
    assert_int_equal(gten_tenant_audit_response(gten_at(g, 0)), GTEN_AUDIT_OFF);
    assert_int_equal(gten_tenant_audit_prompt(gten_at(g, 1)), -1);
    assert_int_equal(gten_tenant_audit_response(gten_at(g, 1)), GTEN_AUDIT_REDACTED);
    gten_destroy(g);
}

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *err;
    } cases[] = {
        {"", "t.yaml:1: empty file: expected a mapping with a 'tenants' list"},
        {"- a\n", "t.yaml:1: expected a mapping with a 'tenants' list"},
        {"tenant:\n", "t.yaml:1: unknown top-level key 'tenant' (only 'tenants')"},
        {"tenants: 3\n", "t.yaml:1: 'tenants' must be a list"},
        {"tenants:\n", "t.yaml:1: 'tenants' must be a list"},
        {"tenants: []\ntenants: []\n", "t.yaml:2: duplicate key 'tenants'"},
        {"tenants: [\n", "t.yaml:2: YAML: did not find expected node content while parsing a "
                         "flow node"},
        {"tenants: []\n---\ntenants: []\n", "t.yaml:3: a second YAML document (one document only)"},
        {"tenants: []\n---\n[\n", "t.yaml:4: YAML: did not find expected node content while "
                                  "parsing a flow node"},
        {"tenants:\n  - x\n", "t.yaml:2: tenants[0] must be a mapping (name, key_sha256, ...)"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    color: red\n",
         "t.yaml:4: tenants[0]: unknown key 'color' (name, key_sha256, models, priority, "
         "requests_per_second, burst, tokens_per_minute, max_concurrent, audit_prompt, "
         "audit_response)"},
        {"tenants:\n  - key_sha256: " HEX_A "\n", "t.yaml:2: tenants[0]: missing 'name'"},
        {"tenants:\n  - name: a\n", "t.yaml:2: tenant 'a': missing 'key_sha256'"},
        {"tenants:\n  - name: a b\n    key_sha256: " HEX_A "\n",
         "t.yaml:2: 'name' must be 1..64 characters of A-Z a-z 0-9 . _ - (got other characters)"},
        {"tenants:\n  - name: [a]\n    key_sha256: " HEX_A "\n",
         "t.yaml:2: 'name' must be 1..64 characters of A-Z a-z 0-9 . _ - (got no string)"},
        {"tenants:\n  - name: a\n    name: b\n    key_sha256: " HEX_A "\n",
         "t.yaml:3: tenants[0]: duplicate key 'name'"},
        {"tenants:\n  - name: a\n    key_sha256: abc\n",
         "t.yaml:3: 'key_sha256' must be 64 hex digits (the SHA-256 of the key; see `switchyard "
         "apikey hash`)"},
        {"tenants:\n  - name: a\n    key_sha256: "
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaag\n",
         "t.yaml:3: 'key_sha256': bad hex digit at position 64"},
        {"tenants:\n  - name: a\n    key_sha256: []\n", "t.yaml:3: 'key_sha256' is an empty list"},
        {"tenants:\n  - name: a\n    key_sha256: {x: 1}\n",
         "t.yaml:3: 'key_sha256' must be a hex string or a list of them"},
        {"tenants:\n  - name: a\n    key_sha256:\n      - " HEX_A "\n      - [x]\n",
         "t.yaml:5: 'key_sha256' entries must be hex strings"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n  - name: a\n    key_sha256: " HEX_B
         "\n",
         "t.yaml:4: duplicate tenant name 'a' (first at line 2)"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n  - name: b\n    key_sha256:\n"
         "      - " HEX_B "\n      - " HEX_A "\n",
         "t.yaml:7: duplicate key_sha256 (already a key of tenant 'a', line 2)"},
        {"tenants:\n  - name: a\n    key_sha256: [" HEX_A ", " HEX_A "]\n",
         "t.yaml:3: duplicate key_sha256 (already a key of tenant 'a', line 2)"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    models: m1\n",
         "t.yaml:4: 'models' must be a list of model names"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    models: []\n",
         "t.yaml:4: 'models' is an empty list (omit the key to allow every model)"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    models:\n      - m1\n      - m1\n",
         "t.yaml:6: model 'm1' is listed twice"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    models: [m1, [x]]\n",
         "t.yaml:4: 'models' entries must be model names (1..256 bytes, no control characters)"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    priority: high\n",
         "t.yaml:4: 'priority' must be an integer in -1000000..1000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    priority: \"3\"\n",
         "t.yaml:4: 'priority' must be an integer in -1000000..1000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    priority: 1.5\n",
         "t.yaml:4: 'priority' must be an integer in -1000000..1000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    requests_per_second: 0\n",
         "t.yaml:4: 'requests_per_second' must be a number in 0.001..1e+06"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    requests_per_second: .nan\n",
         "t.yaml:4: 'requests_per_second' must be a number in 0.001..1e+06"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    requests_per_second: [1]\n",
         "t.yaml:4: 'requests_per_second' must be a number in 0.001..1e+06"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    burst: 5\n",
         "t.yaml:2: tenant 'a': 'burst' needs 'requests_per_second'"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    requests_per_second: 1\n"
         "    burst: 0\n",
         "t.yaml:5: 'burst' must be an integer in 1..1000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    tokens_per_minute: -1\n",
         "t.yaml:4: 'tokens_per_minute' must be an integer in 1..100000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    tokens_per_minute: 1e5\n",
         "t.yaml:4: 'tokens_per_minute' must be an integer in 1..100000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    max_concurrent: 99999999999\n",
         "t.yaml:4: 'max_concurrent' must be an integer in 1..1000000"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    audit_prompt: some\n",
         "t.yaml:4: 'audit_prompt' must be off, redacted or full"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    audit_response: [full]\n",
         "t.yaml:4: 'audit_response' must be off, redacted or full"},
        {"tenants:\n  - name: a\n    key_sha256: " HEX_A "\n    audit_prompt: off\n"
         "    audit_prompt: full\n",
         "t.yaml:5: tenants[0]: duplicate key 'audit_prompt'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        gten_t *g = NULL;
        int rc =
            gten_load_text(cases[i].yaml, strlen(cases[i].yaml), "t.yaml", T0, &g, err, sizeof err);
        if (rc != ST_INVAL || strcmp(err, cases[i].err) != 0)
            fail_msg("case %zu: rc %d err '%s', want '%s'", i, rc, err, cases[i].err);
        assert_null(g);
    }
}

static void test_auth(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, A_LIMITS);
    char err[256] = "", hdr[128];
    gten_t *g = load(b.data, err, sizeof err);
    assert_non_null(g);
    const gten_tenant_t *t = NULL;

    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_A);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "team-a");
    snprintf(hdr, sizeof hdr, "bearer \t %s  ", KEY_A2); /* second key; lax spacing, case */
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "team-a");
    snprintf(hdr, sizeof hdr, "BEARER %s", KEY_B); /* another tenant's key: that tenant */
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "team-b");

    static const struct {
        const char *hdr;
        gten_auth_t want;
    } bad[] = {
        {NULL, GTEN_AUTH_MISSING},
        {"", GTEN_AUTH_MISSING},
        {"   ", GTEN_AUTH_MISSING},
        {"Bearer", GTEN_AUTH_MISSING},
        {"Bearer    ", GTEN_AUTH_MISSING},
        {"Basic dXNlcjpwYXNz", GTEN_AUTH_SCHEME},
        {"Token sy-key-of-team-a-0123456789", GTEN_AUTH_SCHEME},
        {"Bearersy-key-of-team-a-0123456789", GTEN_AUTH_SCHEME},
        {"sy-key-of-team-a-0123456789", GTEN_AUTH_SCHEME},
        {"Bearer sy-key-of-team-a-012345678", GTEN_AUTH_WRONG_KEY},   /* one char short */
        {"Bearer sy-key-of-team-a-01234567890", GTEN_AUTH_WRONG_KEY}, /* one char more */
        {"Bearer SY-KEY-OF-TEAM-A-0123456789", GTEN_AUTH_WRONG_KEY},  /* keys are exact */
        {"Bearer " HEX_A, GTEN_AUTH_WRONG_KEY},                       /* the hash is not the key */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = (const gten_tenant_t *)&t; /* must be reset */
        gten_auth_t a = auth(g, bad[i].hdr, &t);
        if (a != bad[i].want)
            fail_msg("case %zu ('%s'): %d, want %d", i, bad[i].hdr ? bad[i].hdr : "(null)", a,
                     bad[i].want);
        assert_null(t);
    }
    /* the header is a slice: bytes after len are not part of it */
    snprintf(hdr, sizeof hdr, "Bearer %sXYZ", KEY_B);
    assert_int_equal(gten_authenticate(g, hdr, strlen(hdr) - 3, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "team-b");
    gten_destroy(g);
    sy_buf_deinit(&b);
}

static void test_401_bodies(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(gten_error_401(GTEN_AUTH_MISSING, NULL, 0, &b), ST_OK);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"You didn't provide an API key. You need "
                                "to provide your API key in an Authorization header using Bearer "
                                "auth (i.e. Authorization: Bearer YOUR_KEY).\",\"type\":"
                                "\"invalid_request_error\",\"param\":null,\"code\":null}}");
    sy_buf_reset(&b);
    assert_int_equal(gten_error_401(GTEN_AUTH_SCHEME, "Basic x", 7, &b), ST_OK);
    assert_non_null(strstr(b.data, "\"message\":\"Malformed Authorization header: the scheme must "
                                   "be Bearer. You need to provide"));
    assert_non_null(strstr(b.data, "\"code\":null}}"));
    sy_buf_reset(&b);
    const char *h = "Bearer sy-AbCdEfGhIjKlMnOp";
    assert_int_equal(gten_error_401(GTEN_AUTH_WRONG_KEY, h, strlen(h), &b), ST_OK);
    assert_string_equal(b.data,
                        "{\"error\":{\"message\":\"Incorrect API key provided: sy-AbCdE*******MnOp."
                        "\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":"
                        "\"invalid_api_key\"}}");
    sy_buf_reset(&b);
    h = "Bearer short-key"; /* 9 characters: all masked */
    assert_int_equal(gten_error_401(GTEN_AUTH_WRONG_KEY, h, strlen(h), &b), ST_OK);
    assert_non_null(strstr(b.data, "provided: *********.\""));
    sy_buf_reset(&b);
    /* hostile bytes stay valid JSON */
    const char nasty[] = "Bearer \"\\\x01\xff<script>\n\"\"\"\"\"\"\"\"\"\"\"";
    assert_int_equal(gten_error_401(GTEN_AUTH_WRONG_KEY, nasty, sizeof nasty - 1, &b), ST_OK);
    json_error_t je;
    json_t *j = json_loads(b.data, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "invalid_api_key");
    json_decref(j);
    sy_buf_reset(&b);
    assert_int_equal(gten_error_401(GTEN_AUTH_OK, NULL, 0, &b), ST_INVAL);
    sy_buf_deinit(&b);
}

static void test_models(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, A_LIMITS);
    char err[256] = "";
    gten_t *g = load(b.data, err, sizeof err);
    const gten_tenant_t *a = gten_at(g, 0), *bt = gten_at(g, 1);
    assert_true(gten_tenant_allows_model(a, "m1", 2));
    assert_true(gten_tenant_allows_model(a, "m2", 2));
    assert_false(gten_tenant_allows_model(a, "m3", 2));
    assert_false(gten_tenant_allows_model(a, "m", 1));
    assert_false(gten_tenant_allows_model(a, "m1x", 3));
    assert_false(gten_tenant_allows_model(a, "M1", 2));
    assert_true(gten_tenant_allows_model(bt, "anything", 8));
    sy_buf_reset(&b);
    assert_int_equal(gten_error_model("m3", 2, &b), ST_OK);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"The model `m3` does not exist or you do "
                                "not have access to it.\",\"type\":\"invalid_request_error\","
                                "\"param\":null,\"code\":\"model_not_found\"}}");
    assert_int_equal(GTEN_MODEL_DENIED_STATUS, 404);
    gten_destroy(g);
    sy_buf_deinit(&b);
}

/* Limits through the registry; one tenant over its limit does not affect the other. */
static void test_limits_per_tenant(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, A_LIMITS);
    char err[256] = "";
    gten_t *g = load(b.data, err, sizeof err);
    const gten_tenant_t *a = gten_at(g, 0), *bt = gten_at(g, 1);
    glim_lease_t la[3] = {GLIM_LEASE_INIT, GLIM_LEASE_INIT, GLIM_LEASE_INIT};
    glim_lease_t lb = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(gten_admit(a, T0, 100, 0, &la[0], &r), ST_OK);
    assert_int_equal(gten_admit(a, T0, 100, 0, &la[1], &r), ST_OK);
    assert_int_equal(r.remaining_requests, 0);
    assert_int_equal(r.remaining_tokens, 400);
    assert_int_equal(gten_admit(a, T0, 100, 0, &la[2], &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_CONCURRENCY);
    /* team-b untouched */
    assert_int_equal(gten_admit(bt, T0, 100000, 0, &lb, &r), ST_OK);
    assert_false(r.has_tokens);
    assert_int_equal(r.remaining_requests, 0);
    glim_release(&lb);
    glim_release(&la[0]);
    glim_release(&la[1]);
    gten_destroy(g);
    sy_buf_deinit(&b);
}

/* Reload: levels and in-flight counts carry over by name, a release after reload lands in the
 * right counter, removed tenants and the destroyed registry never leave a dangling lease. */
static void test_reload(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, A_LIMITS);
    char err[256] = "", hdr[128];
    gten_t *g = load(b.data, err, sizeof err);
    const gten_tenant_t *a = gten_at(g, 0), *bt = gten_at(g, 1);
    glim_state_t *sa = gten_tenant_limiter(a);
    glim_lease_t la = GLIM_LEASE_INIT, lb = GLIM_LEASE_INIT, lx = GLIM_LEASE_INIT;
    glim_result_t r;
    assert_int_equal(gten_admit(a, T0, 300, 0, &la, &r), ST_OK);
    assert_int_equal(gten_admit(bt, T0, 0, 0, &lb, &r), ST_OK);

    /* a bad file keeps the old config */
    const char *badf = "tenants:\n  - name: team-a\n    key_sha256: nothex\n";
    assert_int_equal(gten_reload_text(g, badf, strlen(badf), "new.yaml", T0, err, sizeof err),
                     ST_INVAL);
    assert_string_equal(err, "new.yaml:3: 'key_sha256' must be 64 hex digits (the SHA-256 of the "
                             "key; see `switchyard apikey hash`)");
    assert_int_equal(gten_count(g), 2);
    assert_ptr_equal(gten_at(g, 0), a);
    const gten_tenant_t *t;
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_B);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);

    /* new file: team-a with other limits and only its second key, team-b gone, team-c new */
    sy_buf_reset(&b);
    assert_int_equal(sy_buf_appendf(&b,
                                    "tenants:\n"
                                    "  - name: team-c\n"
                                    "    key_sha256: %s\n"
                                    "  - name: team-a\n"
                                    "    key_sha256: %s\n"
                                    "    tokens_per_minute: 1200\n"
                                    "    max_concurrent: 1\n",
                                    hex_b, hex_a2),
                     ST_OK);
    assert_int_equal(gten_reload_text(g, b.data, b.len, "new.yaml", T0 + 6 * SEC, err, sizeof err),
                     ST_OK);
    assert_int_equal(gten_count(g), 2);
    const gten_tenant_t *a2 = gten_find(g, "team-a", 6);
    assert_non_null(a2);
    assert_ptr_equal(gten_tenant_limiter(a2), sa); /* same state object */
    assert_int_equal(gten_tenant_line(a2), 4);
    assert_int_equal(glim_state_in_flight(sa), 1);
    glim_peek(sa, T0 + 6 * SEC, &r);
    assert_int_equal(r.remaining_tokens, 360); /* 300 left + 6 s at 10/s under the old limit */
    assert_int_equal(r.limit_tokens, 1200);
    assert_false(r.has_requests); /* the rps limit was dropped */
    /* max_concurrent is now 1 and the old request still counts */
    assert_int_equal(gten_admit(a2, T0 + 6 * SEC, 1, 0, &lx, &r), ST_LIMIT);
    assert_int_equal(r.reason, GLIM_REFUSED_CONCURRENCY);

    /* keys follow the new file: team-a's first key is gone, team-b's key is now team-c */
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_A);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_WRONG_KEY);
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_A2);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_ptr_equal(t, a2);
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_B);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "team-c");
    assert_int_equal(glim_state_in_flight(gten_tenant_limiter(t)), 0); /* fresh state */

    /* the old request charges and releases into team-a's live counter */
    glim_charge_output(&la, T0 + 6 * SEC, 60);
    glim_release(&la);
    assert_int_equal(glim_state_in_flight(sa), 0);
    glim_peek(sa, T0 + 6 * SEC, &r);
    assert_int_equal(r.remaining_tokens, 300);
    assert_int_equal(gten_admit(a2, T0 + 6 * SEC, 1, 0, &lx, &r), ST_OK);

    /* team-b was removed while its request was in flight: its state lives until release */
    glim_charge_output(&lb, T0 + 7 * SEC, 5);
    assert_string_equal(glim_state_name(glim_lease_state(&lb)), "team-b");
    glim_release(&lb);

    /* destroying the registry with a request in flight */
    gten_destroy(g);
    glim_charge_output(&lx, T0 + 8 * SEC, 5);
    glim_release(&lx);
    sy_buf_deinit(&b);
}

static void test_reload_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_gov_tenant_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    sy_buf_t b = SY_BUF_INIT;
    two_tenants(&b, "");
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    close(fd);
    char err[512] = "";
    gten_t *g = NULL;
    assert_int_equal(gten_load_file(path, T0, &g, err, sizeof err), ST_OK);
    assert_int_equal(gten_count(g), 2);
    /* an unreadable file: -errno, old config kept */
    assert_true(gten_reload_file(g, "/nonexistent/tenants.yaml", T0, err, sizeof err) < 0);
    assert_string_equal(err, "/nonexistent/tenants.yaml: No such file or directory");
    assert_int_equal(gten_count(g), 2);
    /* errors name the path */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("tenants:\n  - name: x\n    key_sha256: " HEX_A "\n    max_concurrent: 0\n", f);
    fclose(f);
    assert_int_equal(gten_reload_file(g, path, T0, err, sizeof err), ST_INVAL);
    char want[512];
    snprintf(want, sizeof want, "%s:4: 'max_concurrent' must be an integer in 1..1000000", path);
    assert_string_equal(err, want);
    assert_int_equal(gten_count(g), 2);
    gten_destroy(g);
    assert_true(gten_load_file("/nonexistent/t.yaml", T0, &g, err, sizeof err) < 0);
    assert_null(g);
    unlink(path);
    sy_buf_deinit(&b);
}

static void test_example_file(void **state)
{
    (void)state;
    const char *src = getenv("SY_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/deploy/tenants/example.yaml", src ? src : ".");
    char err[512] = "";
    gten_t *g = NULL;
    int rc = gten_load_file(path, T0, &g, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("%s", err);
    assert_true(gten_count(g) >= 2);
    gten_destroy(g);
}

/* Runs gten_apikey_main with stdout captured into out. */
static int run_apikey(char **argv, int argc, char *out, size_t cap)
{
    fflush(stdout);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    int rc = gten_apikey_main(argc, argv);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_apikey(void **state)
{
    (void)state;
    /* known vector */
    char hex[65];
    assert_int_equal(gten_key_sha256_hex("abc", 3, hex), ST_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    char k1[GTEN_KEY_LEN + 1], k2[GTEN_KEY_LEN + 1];
    assert_int_equal(gten_key_generate(k1, sizeof k1), ST_OK);
    assert_int_equal(gten_key_generate(k2, sizeof k2), ST_OK);
    assert_int_equal(gten_key_generate(k2, GTEN_KEY_LEN), ST_INVAL);
    assert_int_equal(strlen(k1), GTEN_KEY_LEN);
    assert_memory_equal(k1, "sy-", 3);
    assert_int_equal(
        strspn(k1 + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        GTEN_KEY_LEN - 3);
    assert_string_not_equal(k1, k2);

    /* `apikey new --name ci-bot`: the printed key hashes to the printed key_sha256, and the
     * snippet is a working tenant file */
    char out[2048];
    char *argv_new[] = {"apikey", "new", "--name", "ci-bot", NULL};
    assert_int_equal(run_apikey(argv_new, 4, out, sizeof out), 0);
    char key[128] = "", khex[128] = "";
    const char *p = strstr(out, "\nsy-");
    assert_non_null(p);
    sscanf(p + 1, "%127s", key);
    p = strstr(out, "key_sha256: ");
    assert_non_null(p);
    sscanf(p + 12, "%127s", khex);
    assert_int_equal(strlen(key), GTEN_KEY_LEN);
    assert_int_equal(gten_key_sha256_hex(key, strlen(key), hex), ST_OK);
    assert_string_equal(hex, khex);
    assert_non_null(strstr(out, "  - name: ci-bot\n"));
    const char *snippet = strstr(out, "  - name:");
    sy_buf_t y = SY_BUF_INIT;
    assert_int_equal(sy_buf_appendf(&y, "tenants:\n%s", snippet), ST_OK);
    char err[256] = "";
    gten_t *g = load(y.data, err, sizeof err);
    if (!g)
        fail_msg("%s", err);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "Bearer %s", key);
    const gten_tenant_t *t;
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_OK);
    assert_string_equal(gten_tenant_name(t), "ci-bot");
    gten_destroy(g);
    sy_buf_deinit(&y);

    /* `apikey hash KEY` */
    char *argv_hash[] = {"apikey", "hash", key, NULL};
    assert_int_equal(run_apikey(argv_hash, 3, out, sizeof out), 0);
    char want[160];
    snprintf(want, sizeof want, "%s\n", khex);
    assert_string_equal(out, want);
    /* usage errors */
    char *argv_bad[] = {"apikey", "new", "--name", "bad name", NULL};
    assert_int_equal(run_apikey(argv_bad, 4, out, sizeof out), 2);
    char *argv_none[] = {"apikey", NULL};
    assert_int_equal(run_apikey(argv_none, 1, out, sizeof out), 2);
    char *argv_unk[] = {"apikey", "rotate", NULL};
    assert_int_equal(run_apikey(argv_unk, 2, out, sizeof out), 2);
    assert_true(gten_name_valid("a.b_c-D9", 8));
    assert_false(gten_name_valid("", 0));
    assert_false(gten_name_valid("a/b", 3));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Timing print (no assertion): auth (SHA-256 + lookup) + model check + admit + release. */
static void test_bench(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_str(&b, "tenants:\n"), ST_OK);
    char key[GTEN_KEY_LEN + 1], hex[65], bench_key[GTEN_KEY_LEN + 1];
    for (int i = 0; i < 1000; i++) { /* 1000 tenants, so the table is not trivially small */
        assert_int_equal(gten_key_generate(key, sizeof key), ST_OK);
        assert_int_equal(gten_key_sha256_hex(key, strlen(key), hex), ST_OK);
        assert_int_equal(sy_buf_appendf(&b,
                                        "  - name: t%d\n    key_sha256: %s\n    models: [m1, m2]\n"
                                        "    requests_per_second: 1000000\n    burst: 1000000\n"
                                        "    tokens_per_minute: 100000000\n"
                                        "    max_concurrent: 1000\n",
                                        i, hex),
                         ST_OK);
        if (i == 500)
            memcpy(bench_key, key, sizeof key);
    }
    char err[256] = "";
    gten_t *g = load(b.data, err, sizeof err);
    assert_non_null(g);
    char hdr[80];
    snprintf(hdr, sizeof hdr, "Bearer %s", bench_key);
    size_t hl = strlen(hdr);
    const int n = 200000;
    const gten_tenant_t *t = NULL;
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        assert_true(gten_authenticate(g, hdr, hl, &t) == GTEN_AUTH_OK);
    double t1 = now_s();
    glim_lease_t l = GLIM_LEASE_INIT;
    glim_result_t r;
    int64_t now = T0;
    for (int i = 0; i < n; i++) {
        now += 1000;
        assert_true(gten_admit(t, now, 100, 0, &l, &r) == ST_OK);
        glim_release(&l);
    }
    double t2 = now_s();
    glim_headers_t h;
    for (int i = 0; i < n; i++) {
        now += 1000;
        const gten_tenant_t *u;
        if (gten_authenticate(g, hdr, hl, &u) != GTEN_AUTH_OK ||
            !gten_tenant_allows_model(u, "m2", 2) || gten_admit(u, now, 100, 0, &l, &r) != ST_OK)
            fail();
        glim_headers_fill(&r, &h);
        glim_release(&l);
    }
    double t3 = now_s();
    printf("gov_tenant bench (1000 tenants, %d iterations): auth %.0f ns, admit+release %.0f ns, "
           "auth+model+admit+headers+release %.0f ns\n",
           n, (t1 - t0) / n * 1e9, (t2 - t1) / n * 1e9, (t3 - t2) / n * 1e9);
    gten_destroy(g);
    sy_buf_deinit(&b);
}

/* A stored digest that shares its first 8 bytes (the table index) with the presented key's digest
 * must not match: the lookup compares all 32 bytes. */
static void test_auth_full_digest(void **state)
{
    (void)state;
    char near[65];
    memcpy(near, hex_a, 16);
    memcpy(near + 16, HEX_B, 48);
    near[64] = '\0';
    char yaml[256], err[256] = "", hdr[128];
    snprintf(yaml, sizeof yaml, "tenants:\n  - name: near\n    key_sha256: %s\n", near);
    gten_t *g = load(yaml, err, sizeof err);
    assert_non_null(g);
    const gten_tenant_t *t;
    snprintf(hdr, sizeof hdr, "Bearer %s", KEY_A);
    assert_int_equal(auth(g, hdr, &t), GTEN_AUTH_WRONG_KEY);
    assert_null(t);
    gten_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_audit_modes),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_auth_full_digest),
        cmocka_unit_test(test_401_bodies),
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_limits_per_tenant),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_reload_file),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_apikey),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
