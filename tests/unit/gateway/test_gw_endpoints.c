/*
 * test_gw_endpoints.c - unit tests of the gateway's endpoint specifications (gw_endpoints.h):
 * the endpoints YAML file (every key, defaults, an empty list, each class of error with its line)
 * and the --endpoint argument form, plus spec equality used by the SIGHUP reload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/status.h"
#include "gateway/gw_endpoints.h"

static int parse(const char *yaml, gw_ep_list_t *l, char *err, size_t errlen)
{
    return gw_ep_list_parse(yaml, strlen(yaml), l, err, errlen);
}

static void test_full_file(void **state)
{
    (void)state;
    const char *y = "endpoints:\n"
                    "  - url: http://127.0.0.1:8001\n"
                    "    models: [sim/a, sim/b]\n"
                    "    role: prefill\n"
                    "    kv_events: tcp://127.0.0.1:5557\n"
                    "    replay: tcp://127.0.0.1:5558\n"
                    "    metrics_path: /custom/metrics\n"
                    "  - url: http://engine-b/v1\n";
    gw_ep_list_t l;
    char err[256];
    assert_int_equal(parse(y, &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[0].host, "127.0.0.1");
    assert_int_equal(l.v[0].port, 8001);
    assert_int_equal(l.v[0].role, GW_ROLE_PREFILL);
    assert_int_equal(l.v[0].n_models, 2);
    assert_string_equal(l.v[0].models[1], "sim/b");
    assert_string_equal(l.v[0].kv_events, "tcp://127.0.0.1:5557");
    assert_string_equal(l.v[0].replay, "tcp://127.0.0.1:5558");
    assert_string_equal(l.v[0].metrics_path, "/custom/metrics");
    /* defaults */
    assert_string_equal(l.v[1].host, "engine-b");
    assert_int_equal(l.v[1].port, 80);
    assert_int_equal(l.v[1].role, GW_ROLE_BOTH);
    assert_int_equal(l.v[1].n_models, 0);
    assert_string_equal(l.v[1].kv_events, "");
    assert_string_equal(l.v[1].metrics_path, "");
    assert_false(gw_ep_spec_equal(&l.v[0], &l.v[1]));
    assert_true(gw_ep_spec_equal(&l.v[0], &l.v[0]));
    gw_ep_list_deinit(&l);
    gw_ep_list_deinit(&l); /* idempotent */

    assert_int_equal(parse("endpoints: []\n", &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 0);
    gw_ep_list_deinit(&l);
    assert_int_equal(parse("endpoints:\n", &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 0);
    gw_ep_list_deinit(&l);
}

static void test_errors(void **state)
{
    (void)state;
    struct {
        const char *yaml;
        const char *needle;
    } bad[] = {
        {"endpoints: [\n", "YAML"},
        {"", "expected a mapping"},
        {"- url: http://a:1\n", "expected a mapping"},
        {"other: 1\n", "only 'endpoints'"},
        {"endpoints: {url: http://a:1}\n", "must be a list"},
        {"endpoints:\n  - http://a:1\n", "line 2: endpoints[0] must be a mapping"},
        {"endpoints:\n  - role: both\n", "'url' is required"},
        {"endpoints:\n  - url: https://a:1\n", "url: bad value"},
        {"endpoints:\n  - url: http://a:0\n", "url: bad value"},
        {"endpoints:\n  - url: http://a:99999\n", "url: bad value"},
        {"endpoints:\n  - url: http://a:x1\n", "url: bad value"},
        {"endpoints:\n  - url: http://a:1\n    role: leader\n", "line 3: endpoints[0].role"},
        {"endpoints:\n  - url: http://a:1\n    colour: red\n", "unknown key 'colour'"},
        {"endpoints:\n  - url: http://a:1\n    models: sim\n", "models must be a list"},
        {"endpoints:\n  - url: http://a:1\n    models: [[x]]\n", "models: names"},
        {"endpoints:\n  - url: http://a:1\n    metrics_path: metrics\n", "metrics_path: bad"},
        {"endpoints:\n  - url: http://a:1\n    url: [x]\n", "url must be a non-empty string"},
        {"endpoints:\n  - url: http://a:1\n  - url: http://a:1/v1\n", "line 3: endpoints[1]: a:1 "
                                                                      "is listed twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_ep_list_t l;
        char err[256] = "";
        int rc = parse(bad[i].yaml, &l, err, sizeof err);
        if (rc == ST_OK)
            fail_msg("accepted: %s", bad[i].yaml);
        assert_int_equal(rc, ST_INVAL);
        assert_null(l.v);
        assert_int_equal(l.n, 0);
        if (!strstr(err, bad[i].needle))
            fail_msg("error '%s' lacks '%s' (yaml %s)", err, bad[i].needle, bad[i].yaml);
    }
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_gw_endpoints_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("endpoints:\n  - url: http://127.0.0.1:9\n    models: [m]\n", f);
    fclose(f);
    gw_ep_list_t l;
    char err[256];
    assert_int_equal(gw_ep_list_load_file(path, &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].port, 9);
    gw_ep_list_deinit(&l);
    unlink(path);
    assert_true(gw_ep_list_load_file(path, &l, err, sizeof err) < 0);
    assert_non_null(strstr(err, "No such file"));
}

static void test_arg(void **state)
{
    (void)state;
    gw_ep_spec_t s, t;
    char err[256];
    assert_int_equal(gw_ep_spec_parse_arg("http://10.0.0.5:8000,kv-events=tcp://10.0.0.5:5557,"
                                          "replay=tcp://10.0.0.5:5558,role=decode,model=m1",
                                          &s, err, sizeof err),
                     ST_OK);
    assert_string_equal(s.host, "10.0.0.5");
    assert_int_equal(s.port, 8000);
    assert_int_equal(s.role, GW_ROLE_DECODE);
    assert_string_equal(s.kv_events, "tcp://10.0.0.5:5557");
    assert_string_equal(s.replay, "tcp://10.0.0.5:5558");
    assert_int_equal(s.n_models, 1);
    assert_string_equal(s.models[0], "m1");
    /* the same endpoint from YAML is equal */
    gw_ep_list_t l;
    assert_int_equal(parse("endpoints:\n  - url: http://10.0.0.5:8000\n    role: decode\n"
                           "    kv_events: tcp://10.0.0.5:5557\n    replay: tcp://10.0.0.5:5558\n"
                           "    models: [m1]\n",
                           &l, err, sizeof err),
                     ST_OK);
    assert_true(gw_ep_spec_equal(&s, &l.v[0]));
    gw_ep_list_deinit(&l);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1", &t, err, sizeof err), ST_OK);
    assert_false(gw_ep_spec_equal(&s, &t));
    assert_int_equal(gw_ep_spec_parse_arg("h:1", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,role=x", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,nope", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,k=v", &t, err, sizeof err), ST_INVAL);
    assert_non_null(strstr(err, "unknown key 'k'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_arg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
