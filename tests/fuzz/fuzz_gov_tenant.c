/*
 * fuzz_gov_tenant.c - libFuzzer harness for the tenant file and authentication (gov_tenant.h).
 * The input is used three ways: as a tenant file (gten_load_text: either refused with
 * "fuzz.yaml:LINE: reason" or loaded into tenants that can admit, charge and release, and that
 * survive a reload onto a fixed file); as a reload of a fixed registry (a refusal must leave the
 * fixed tenants in place); and as an Authorization header value against the fixed registry (the
 * fixed key only authenticates as its tenant, and every 401 body is valid JSON). Any input must
 * never crash, leak or hit undefined behaviour.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "gov/gov_tenant.h"

static const char FIXED_KEY[] = "sy-fuzz-key";

static gten_t *fixed_registry(char *yaml, size_t cap)
{
    char hex[65], err[256];
    if (gten_key_sha256_hex(FIXED_KEY, strlen(FIXED_KEY), hex) != ST_OK)
        abort();
    snprintf(yaml, cap,
             "tenants:\n  - name: fixed\n    key_sha256: %s\n    models: [m]\n"
             "    requests_per_second: 10\n    tokens_per_minute: 1000\n    max_concurrent: 2\n",
             hex);
    gten_t *g = NULL;
    if (gten_load_text(yaml, strlen(yaml), "fixed.yaml", 0, &g, err, sizeof err) != ST_OK)
        abort();
    return g;
}

static void check_json(const sy_buf_t *b)
{
    json_error_t je;
    json_t *j = json_loadb(b->data, b->len, JSON_ALLOW_NUL, &je);
    if (!j || !json_is_object(json_object_get(j, "error")))
        abort();
    json_decref(j);
}

static void exercise(gten_t *g, int64_t now)
{
    for (size_t i = 0; i < gten_count(g); i++) {
        const gten_tenant_t *t = gten_at(g, i);
        const char *name = gten_tenant_name(t);
        if (!gten_name_valid(name, strlen(name)) || gten_find(g, name, strlen(name)) != t)
            abort();
        glim_lease_t l = GLIM_LEASE_INIT;
        glim_result_t r;
        glim_headers_t h;
        if (gten_admit(t, now, 10, 10, &l, &r) == ST_OK) {
            glim_charge_output(&l, now + 1, 1000000);
            glim_release(&l);
        } else {
            sy_buf_t b = SY_BUF_INIT;
            if (glim_error_body(&r, name, "m", &b) != ST_OK)
                abort();
            check_json(&b);
            sy_buf_deinit(&b);
        }
        glim_headers_fill(&r, &h);
        for (size_t m = 0; m < gten_tenant_model_count(t); m++) {
            const char *mn = gten_tenant_model(t, m);
            if (!gten_tenant_allows_model(t, mn, strlen(mn)))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gten_t *fixed;
    static char fixed_yaml[512];
    static int64_t clock_ns; /* one second per input, so the fixed buckets refill */
    clock_ns += 1000000000;
    if (!fixed)
        fixed = fixed_registry(fixed_yaml, sizeof fixed_yaml);
    const char *s = (const char *)data;
    char err[512] = "";

    /* 1. the input as a tenant file */
    gten_t *g = NULL;
    int rc = gten_load_text(s, size, "fuzz.yaml", 0, &g, err, sizeof err);
    if (rc == ST_NOMEM)
        abort();
    if (rc != ST_OK) {
        if (g || strncmp(err, "fuzz.yaml:", 10) != 0)
            abort(); /* refusals always name the file */
    } else {
        exercise(g, 1000);
        const gten_tenant_t *t;
        (void)gten_authenticate(g, s, size, &t);
        if (gten_reload_text(g, fixed_yaml, strlen(fixed_yaml), "fixed.yaml", 2000, err,
                             sizeof err) != ST_OK ||
            gten_count(g) != 1)
            abort();
        exercise(g, 3000);
        gten_destroy(g);
    }

    /* 2. the input as a reload of the fixed registry, with a request in flight */
    const gten_tenant_t *ft = gten_find(fixed, "fixed", 5);
    glim_lease_t lease = GLIM_LEASE_INIT;
    (void)gten_admit(ft, clock_ns, 1, 0, &lease, NULL);
    rc = gten_reload_text(fixed, s, size, "fuzz.yaml", clock_ns, err, sizeof err);
    if (rc == ST_OK) {
        exercise(fixed, clock_ns);
        if (gten_reload_text(fixed, fixed_yaml, strlen(fixed_yaml), "fixed.yaml", clock_ns, err,
                             sizeof err) != ST_OK)
            abort();
    } else if (gten_count(fixed) != 1 || !gten_find(fixed, "fixed", 5)) {
        abort(); /* a refused reload keeps the old tenants */
    }
    glim_release(&lease); /* after one or two reloads: must land in live memory */

    /* 3. the input as an Authorization header value */
    const gten_tenant_t *t = NULL;
    gten_auth_t a = gten_authenticate(fixed, s, size, &t);
    if (a == GTEN_AUTH_OK) {
        if (t != gten_find(fixed, "fixed", 5))
            abort();
    } else {
        if (t)
            abort();
        sy_buf_t b = SY_BUF_INIT;
        if (gten_error_401(a, s, size, &b) != ST_OK)
            abort();
        check_json(&b);
        sy_buf_deinit(&b);
    }
    sy_buf_t b = SY_BUF_INIT;
    if (gten_error_model(s, size, &b) != ST_OK)
        abort();
    check_json(&b);
    sy_buf_deinit(&b);
    return 0;
}
