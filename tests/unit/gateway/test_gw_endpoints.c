/*
 * test_gw_endpoints.c - unit tests of the gateway's endpoint specifications (gw_endpoints.h):
 * the endpoints YAML file (every key, defaults, an empty list, each class of error with its line)
 * and the --endpoint argument form, plus spec equality used by the SIGHUP reload; the
 * `discovery:` entries and the --discover argument form, and the endpoint spec a discovered
 * address gets.
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
        {"endpoints:\n  - url: ftp://a:1\n", "url: bad value"},
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
    /* https:// is TLS to the endpoint (default port 443), a different spec from http:// */
    gw_ep_spec_t u;
    assert_int_equal(gw_ep_spec_parse_arg("https://h:1", &u, err, sizeof err), ST_OK);
    assert_true(u.tls && !t.tls && u.port == 1);
    assert_false(gw_ep_spec_equal(&t, &u));
    assert_int_equal(gw_ep_spec_parse_arg("https://h", &u, err, sizeof err), ST_OK);
    assert_int_equal(u.port, 443);
    assert_int_equal(gw_ep_spec_parse_arg("h:1", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,role=x", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,nope", &t, err, sizeof err), ST_INVAL);
    assert_int_equal(gw_ep_spec_parse_arg("http://h:1,k=v", &t, err, sizeof err), ST_INVAL);
    assert_non_null(strstr(err, "unknown key 'k'"));
}

static void test_discovery_file(void **state)
{
    (void)state;
    const char *y = "discovery:\n"
                    "  - target: srv://_http._tcp.vllm.ns.svc.cluster.local\n"
                    "    kv_events_port: 5557\n"
                    "    role: decode\n"
                    "    models: [sim/a, sim/b]\n"
                    "    interval_ms: 250\n"
                    "  - target: dns://vllm.ns:8000\n"
                    "endpoints:\n"
                    "  - url: http://127.0.0.1:8001\n";
    gw_ep_list_t l;
    char err[256];
    assert_int_equal(parse(y, &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.n_disc, 2);
    assert_string_equal(l.disc[0].target, "srv://_http._tcp.vllm.ns.svc.cluster.local");
    assert_int_equal(l.disc[0].kv_events_port, 5557);
    assert_int_equal(l.disc[0].role, GW_ROLE_DECODE);
    assert_int_equal(l.disc[0].n_models, 2);
    assert_string_equal(l.disc[0].models[1], "sim/b");
    assert_int_equal(l.disc[0].interval_ms, 250);
    /* defaults */
    assert_string_equal(l.disc[1].target, "dns://vllm.ns:8000");
    assert_int_equal(l.disc[1].kv_events_port, 0);
    assert_int_equal(l.disc[1].role, GW_ROLE_BOTH);
    assert_int_equal(l.disc[1].n_models, 0);
    assert_int_equal(l.disc[1].interval_ms, 0);
    assert_false(gw_disc_spec_equal(&l.disc[0], &l.disc[1]));
    assert_true(gw_disc_spec_equal(&l.disc[0], &l.disc[0]));
    /* the spec of a discovered address */
    gw_ep_spec_t e;
    gw_disc_spec_endpoint(&l.disc[0], "10.0.0.7", 8000, &e);
    assert_string_equal(e.host, "10.0.0.7");
    assert_int_equal(e.port, 8000);
    assert_int_equal(e.role, GW_ROLE_DECODE);
    assert_string_equal(e.kv_events, "tcp://10.0.0.7:5557");
    assert_int_equal(e.n_models, 2);
    assert_string_equal(e.models[0], "sim/a");
    gw_disc_spec_endpoint(&l.disc[0], "fd00::7", 8000, &e);
    assert_string_equal(e.kv_events, "tcp://[fd00::7]:5557");
    gw_disc_spec_endpoint(&l.disc[1], "10.0.0.7", 8000, &e);
    assert_string_equal(e.kv_events, "");
    assert_int_equal(e.n_models, 0);
    gw_ep_list_deinit(&l);
    assert_null(l.disc);

    /* discovery only: no endpoints needed */
    assert_int_equal(
        parse("discovery:\n  - target: srv://_http._tcp.sim.test\n", &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(l.n_disc, 1);
    gw_ep_list_deinit(&l);
    assert_int_equal(parse("discovery: []\nendpoints: []\n", &l, err, sizeof err), ST_OK);
    assert_int_equal(l.n_disc, 0);
    gw_ep_list_deinit(&l);

    struct {
        const char *yaml;
        const char *needle;
    } bad[] = {
        {"discovery: {target: srv://a}\n", "'discovery' must be a list"},
        {"discovery:\n  - srv://a\n", "line 2: discovery[0] must be a mapping"},
        {"discovery:\n  - role: both\n", "'target' is required"},
        {"discovery:\n  - target: http://a:1\n", "target: bad value"},
        {"discovery:\n  - target: dns://a\n", "target: bad value"},
        {"discovery:\n  - target: srv://a\n    kv_events_port: 0\n", "line 3: discovery[0]."
                                                                     "kv_events_port"},
        {"discovery:\n  - target: srv://a\n    kv_events_port: x\n", "kv_events_port: bad"},
        {"discovery:\n  - target: srv://a\n    interval_ms: -5\n", "interval_ms: bad"},
        {"discovery:\n  - target: srv://a\n    role: leader\n", "discovery[0].role"},
        {"discovery:\n  - target: srv://a\n    models: m\n", "models must be a list"},
        {"discovery:\n  - target: srv://a\n    port: 1\n", "unknown key 'port'"},
        {"discovery:\n  - target: srv://a\n  - target: srv://a\n", "srv://a is listed twice"},
        {"discovery:\n  - target: srv://a\nendpoints:\n  - url: ftp://x\n", "url: bad value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = parse(bad[i].yaml, &l, err, sizeof err);
        if (rc == ST_OK)
            fail_msg("accepted: %s", bad[i].yaml);
        assert_int_equal(rc, ST_INVAL);
        assert_null(l.v);
        assert_null(l.disc);
        assert_int_equal(l.n_disc, 0);
        if (!strstr(err, bad[i].needle))
            fail_msg("error '%s' lacks '%s' (yaml %s)", err, bad[i].needle, bad[i].yaml);
    }
}

static void test_discover_arg(void **state)
{
    (void)state;
    gw_disc_spec_t d, f;
    char err[256];
    assert_int_equal(gw_disc_spec_parse_arg("srv://_http._tcp.sim.test,kv-events-port=5557,"
                                            "role=prefill,model=m1,model=m2,interval=200",
                                            &d, err, sizeof err),
                     ST_OK);
    assert_string_equal(d.target, "srv://_http._tcp.sim.test");
    assert_int_equal(d.kv_events_port, 5557);
    assert_int_equal(d.role, GW_ROLE_PREFILL);
    assert_int_equal(d.n_models, 2);
    assert_string_equal(d.models[1], "m2");
    assert_int_equal(d.interval_ms, 200);
    /* the same entry from YAML is equal */
    gw_ep_list_t l;
    assert_int_equal(parse("discovery:\n  - target: srv://_http._tcp.sim.test\n"
                           "    kv_events_port: 5557\n    role: prefill\n    models: [m1, m2]\n"
                           "    interval_ms: 200\n",
                           &l, err, sizeof err),
                     ST_OK);
    assert_true(gw_disc_spec_equal(&d, &l.disc[0]));
    gw_ep_list_deinit(&l);
    assert_int_equal(gw_disc_spec_parse_arg("dns://sim.test:8000", &f, err, sizeof err), ST_OK);
    assert_int_equal(f.interval_ms, 0);
    assert_false(gw_disc_spec_equal(&d, &f));
    const char *bad[] = {
        "sim.test",       "dns://sim.test", "srv://a,interval=0", "srv://a,kv-events-port=70000",
        "srv://a,role=x", "srv://a,model=", "srv://a,nope",       "srv://a,port=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_disc_spec_parse_arg(bad[i], &f, err, sizeof err) != ST_INVAL)
            fail_msg("accepted %s", bad[i]);
    assert_non_null(strstr(err, "unknown key 'port'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file),      cmocka_unit_test(test_arg),
        cmocka_unit_test(test_discovery_file), cmocka_unit_test(test_discover_arg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
