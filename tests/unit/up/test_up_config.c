/*
 * test_up_config.c - unit tests of the `switchyard up` cluster description (up_config.h): the
 * built-in default, every key of the cluster file, defaults of omitted keys, relative paths, each
 * class of error with the file name and line, the shipped examples (every file in deploy/cluster/;
 * the default one gives exactly the built-in cluster's command lines), and the argv of engines and
 * gateway (sim and model engines, KV events, roles, block size, extra arguments).
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

#include "common/alloc.h"
#include "common/status.h"
#include "up/up_config.h"

static int parse(const char *yaml, up_config_t *c, char *err, size_t errlen)
{
    return up_config_parse(yaml, strlen(yaml), "c.yaml", NULL, c, err, errlen);
}

/* The argv joined with single spaces, into out[cap]. */
static void join(const up_strv_t *v, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < v->n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? " " : "", v->v[i]);
    assert_true(o < cap);
}

static void test_default(void **state)
{
    (void)state;
    up_config_t c;
    assert_int_equal(up_config_default(&c), ST_OK);
    assert_string_equal(c.model, "sim-llama");
    assert_int_equal(c.gateway_port, 8080);
    assert_string_equal(c.scheduler, "default");
    assert_string_equal(c.gateway_config, "");
    assert_string_equal(c.tokenizer, "");
    assert_string_equal(c.hash_seed, "");
    assert_int_equal(c.block_size, 0);
    assert_true(c.ready_timeout == 60.0);
    assert_int_equal(c.n_engines, 1);
    assert_int_equal(up_config_engine_count(&c), 3);
    const up_engine_spec_t *e = up_config_engine_spec(&c, 2);
    assert_non_null(e);
    assert_true(e->sim);
    assert_string_equal(e->sim_profile, "a100-llama3-8b");
    assert_true(e->sim_speed == 1.0);
    assert_int_equal(e->role, UP_ROLE_BOTH);
    assert_true(e->kv_events);
    assert_int_equal(e->args.n, 0);
    assert_null(up_config_engine_spec(&c, 3));
    up_config_deinit(&c);
    up_config_deinit(&c); /* idempotent */
    up_config_deinit(NULL);

    /* an empty file, or one with only comments, is the built-in cluster */
    char err[256];
    assert_int_equal(parse("", &c, err, sizeof err), ST_OK);
    assert_int_equal(up_config_engine_count(&c), 3);
    up_config_deinit(&c);
    assert_int_equal(parse("# nothing\n", &c, err, sizeof err), ST_OK);
    assert_int_equal(up_config_engine_count(&c), 3);
    up_config_deinit(&c);
}

static void test_full_file(void **state)
{
    (void)state;
    const char *y = "model: my-model\n"
                    "hash_seed: 42\n"
                    "block_size: 32\n"
                    "ready_timeout: 7.5\n"
                    "gateway:\n"
                    "  port: 0\n"
                    "  scheduler: round-robin\n"
                    "  config: sched/pd.yaml\n"
                    "  tokenizer: tok.gguf\n"
                    "  args: [\"--debug-scores\", \"\"]\n"
                    "engines:\n"
                    "  - count: 2\n"
                    "    sim: true\n"
                    "    sim_profile: h100-llama3-8b\n"
                    "    sim_speed: 10\n"
                    "    role: prefill\n"
                    "    kv_events: false\n"
                    "    args: [--max-num-seqs, 8]\n"
                    "  - {model: /m/tiny.gguf, role: decode}\n"
                    "  - model: rel/tiny.gguf\n"
                    "    sim: false\n"
                    "    args:\n";
    up_config_t c;
    char err[256] = "";
    int rc = up_config_parse(y, strlen(y), "dir/c.yaml", "dir", &c, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("%s", err);
    assert_string_equal(c.model, "my-model");
    assert_string_equal(c.hash_seed, "42");
    assert_int_equal(c.block_size, 32);
    assert_true(c.ready_timeout == 7.5);
    assert_int_equal(c.gateway_port, 0);
    assert_string_equal(c.scheduler, "round-robin");
    assert_string_equal(c.gateway_config, "dir/sched/pd.yaml");
    assert_string_equal(c.tokenizer, "dir/tok.gguf");
    assert_int_equal(c.gateway_args.n, 2);
    assert_string_equal(c.gateway_args.v[0], "--debug-scores");
    assert_string_equal(c.gateway_args.v[1], "");
    assert_null(c.gateway_args.v[2]);
    assert_int_equal(c.n_engines, 3);
    assert_int_equal(up_config_engine_count(&c), 4);
    const up_engine_spec_t *e = &c.engines[0];
    assert_int_equal(e->count, 2);
    assert_true(e->sim);
    assert_string_equal(e->sim_profile, "h100-llama3-8b");
    assert_true(e->sim_speed == 10.0);
    assert_int_equal(e->role, UP_ROLE_PREFILL);
    assert_false(e->kv_events);
    assert_int_equal(e->args.n, 2);
    assert_string_equal(e->args.v[1], "8");
    assert_int_equal(e->line, 12);
    e = &c.engines[1];
    assert_false(e->sim);
    assert_string_equal(e->model_path, "/m/tiny.gguf"); /* absolute: as written */
    assert_int_equal(e->role, UP_ROLE_DECODE);
    assert_true(e->kv_events);
    e = &c.engines[2];
    assert_false(e->sim);
    assert_string_equal(e->model_path, "dir/rel/tiny.gguf");
    assert_int_equal(e->role, UP_ROLE_BOTH);
    assert_int_equal(e->args.n, 0);
    assert_ptr_equal(up_config_engine_spec(&c, 1), &c.engines[0]);
    assert_ptr_equal(up_config_engine_spec(&c, 2), &c.engines[1]);
    assert_ptr_equal(up_config_engine_spec(&c, 3), &c.engines[2]);
    up_config_deinit(&c);

    /* partial files keep the other defaults; builtin/none tokenizers are not paths */
    const char *t = "gateway: {tokenizer: none}\n";
    assert_int_equal(up_config_parse(t, strlen(t), "c", "dir", &c, err, sizeof err), ST_OK);
    assert_string_equal(c.tokenizer, "none");
    assert_int_equal(c.gateway_port, 8080);
    assert_int_equal(up_config_engine_count(&c), 3);
    up_config_deinit(&c);
    assert_int_equal(parse("engines:\n  - {}\n", &c, err, sizeof err), ST_OK);
    assert_int_equal(up_config_engine_count(&c), 1);
    assert_true(c.engines[0].sim);
    assert_string_equal(c.model, "sim-llama");
    up_config_deinit(&c);
    assert_int_equal(parse("gateway:\nmodel: x\n", &c, err, sizeof err), ST_OK);
    assert_string_equal(c.model, "x");
    up_config_deinit(&c);
}

static void test_errors(void **state)
{
    (void)state;
    struct {
        const char *yaml;
        const char *needle;
    } bad[] = {
        {"engines: [\n", "YAML"},
        {"- a\n", "c.yaml:1: expected a mapping"},
        {"model: m\ncolour: red\n", "c.yaml:2: unknown top-level key 'colour'"},
        {"model: [a]\n", "c.yaml:1: 'model' must be a non-empty string"},
        {"model: \"\"\n", "c.yaml:1: 'model' must be a non-empty string"},
        {"model: a,b\n", "c.yaml:1: 'model' is one name"},
        {"block_size: 0\n", "c.yaml:1: 'block_size' must be an integer in 1..1024"},
        {"block_size: 16x\n", "'block_size' must be an integer"},
        {"ready_timeout: -1\n", "'ready_timeout' must be a number >= 0"},
        {"ready_timeout: 0\n", "'ready_timeout' must be > 0"},
        {"gateway: 8080\n", "c.yaml:1: 'gateway' must be a mapping"},
        {"gateway:\n  port: 70000\n", "c.yaml:2: 'port' must be an integer in 0..65535"},
        {"gateway:\n  port: -1\n", "c.yaml:2: 'port'"},
        {"gateway:\n  host: 0.0.0.0\n", "c.yaml:2: gateway: unknown key 'host'"},
        {"gateway:\n  args: --x\n", "c.yaml:2: 'args' must be a list of strings"},
        {"gateway:\n  args: [[x]]\n", "'args' must be a list of strings"},
        {"engines: 3\n", "c.yaml:1: 'engines' must be a list"},
        {"engines: []\n", "c.yaml:1: 'engines' is empty"},
        {"engines:\n", "c.yaml:1: 'engines' must be a list"},
        {"engines:\n  - sim\n", "c.yaml:2: engines[0] must be a mapping"},
        {"engines:\n  - count: 0\n", "c.yaml:2: 'count' must be an integer in 1..64"},
        {"engines:\n  - count: 65\n", "'count' must be an integer in 1..64"},
        {"engines:\n  - count: 40\n  - count: 30\n", "c.yaml:3: more than 64 engines"},
        {"engines:\n  - {count: 1}\n  - {colour: red}\n",
         "c.yaml:3: engines[1]: unknown key 'colour'"},
        {"engines:\n  - role: leader\n", "c.yaml:2: 'role' must be both, prefill or decode"},
        {"engines:\n  - sim: maybe\n", "'sim' must be true or false"},
        {"engines:\n  - kv_events: 2\n", "'kv_events' must be true or false"},
        {"engines:\n  - sim_speed: fast\n", "'sim_speed' must be a number >= 0"},
        {"engines:\n  - sim_speed: -1\n", "'sim_speed' must be a number >= 0"},
        {"engines:\n  - sim_profile: tpu\n", "c.yaml:2: unknown sim_profile 'tpu' (known: "},
        {"engines:\n  - {sim: true, model: a.gguf}\n",
         "c.yaml:2: engines[0]: 'sim: true' and 'model' exclude each other"},
        {"engines:\n  - {sim: false}\n", "engines[0]: 'sim: false' needs a 'model' file"},
        {"engines:\n  - {model: a.gguf, sim_speed: 2}\n",
         "engines[0]: sim_profile and sim_speed apply to sim engines only"},
        {"engines:\n  - model: \"\"\n", "'model' must be a non-empty string"},
        {"model: x\n\n\nengines:\n  - count: 1\n    args: {a: 1}\n",
         "c.yaml:6: 'args' must be a list of strings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        up_config_t c;
        char err[512] = "";
        int rc = parse(bad[i].yaml, &c, err, sizeof err);
        if (rc == ST_OK)
            fail_msg("accepted: %s", bad[i].yaml);
        assert_int_equal(rc, ST_INVAL);
        assert_null(c.engines);
        assert_int_equal(c.n_engines, 0);
        assert_null(c.gateway_args.v);
        if (!strstr(err, bad[i].needle))
            fail_msg("error '%s' lacks '%s' (yaml %s)", err, bad[i].needle, bad[i].yaml);
    }
}

/* Allocation failures anywhere in a parse leave the config empty and report ST_NOMEM. */
static void test_nomem(void **state)
{
    (void)state;
    const char *y = "gateway: {args: [a, b]}\nengines:\n  - {count: 2, args: [x, y, z]}\n"
                    "  - {model: m.gguf}\n";
    for (uint64_t n = 1; n < 200; n++) {
        up_config_t c;
        char err[256];
        sy_alloc_fail_after(n);
        int rc = up_config_parse(y, strlen(y), "c", "d", &c, err, sizeof err);
        sy_alloc_fail_after(0);
        if (rc == ST_OK) {
            assert_int_equal(up_config_engine_count(&c), 3);
            up_config_deinit(&c);
            return;
        }
        assert_int_equal(rc, ST_NOMEM);
        assert_null(c.engines);
    }
    fail_msg("the parse never succeeded");
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_up_config_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("engines:\n  - model: m.gguf\n  - {count: 1, role: nope}\n", f);
    fclose(f);
    up_config_t c;
    char err[512];
    assert_int_equal(up_config_load_file(path, &c, err, sizeof err), ST_INVAL);
    char want[256];
    snprintf(want, sizeof want, "%s:3: 'role' must be", path);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
    f = fopen(path, "w");
    fputs("engines:\n  - model: m.gguf\n", f);
    fclose(f);
    assert_int_equal(up_config_load_file(path, &c, err, sizeof err), ST_OK);
    snprintf(want, sizeof want, "%s/m.gguf", dir); /* relative to the file's directory */
    assert_string_equal(c.engines[0].model_path, want);
    up_config_deinit(&c);
    unlink(path);
    rmdir(dir);
    assert_true(up_config_load_file(path, &c, err, sizeof err) < 0);
    assert_non_null(strstr(err, "No such file"));
    assert_null(c.engines);
}

static void test_engine_argv(void **state)
{
    (void)state;
    up_config_t c;
    char err[256], s[2048];
    const char *y = "model: m\"q\nblock_size: 32\nengines:\n"
                    "  - {count: 2, sim_speed: 0.5, args: [--max-num-seqs, 4]}\n"
                    "  - {model: /x/t.gguf, kv_events: false}\n";
    assert_int_equal(parse(y, &c, err, sizeof err), ST_OK);
    up_addr_t a = {.port = 4001, .kv_port = 5001};
    up_strv_t v = {0};
    assert_int_equal(up_engine_argv(&c, 1, "/bin/sy", &a, &v), ST_OK);
    join(&v, s, sizeof s);
    assert_string_equal(
        s, "/bin/sy engine --sim --sim-profile a100-llama3-8b --sim-speed 0.5 --host 127.0.0.1 "
           "--port 4001 --served-model-name m\"q --block-size 32 --kv-events-config "
           "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://*:5001\","
           "\"topic\":\"kv@engine2@m\\\"q\"} --max-num-seqs 4");
    assert_null(v.v[v.n]);
    up_strv_deinit(&v);
    /* a model engine, no KV events even with a port */
    assert_int_equal(up_engine_argv(&c, 2, "/bin/sy", &a, &v), ST_OK);
    join(&v, s, sizeof s);
    assert_string_equal(s, "/bin/sy engine --model /x/t.gguf --host 127.0.0.1 --port 4001 "
                           "--served-model-name m\"q --block-size 32");
    up_strv_deinit(&v);
    assert_int_equal(up_engine_argv(&c, 3, "/bin/sy", &a, &v), ST_INVAL);
    up_strv_deinit(&v);
    up_config_deinit(&c);

    /* prefill and decode engines get the TcpConnector on a free port, unless args set one */
    y = "engines:\n  - {role: prefill, kv_events: false}\n"
        "  - {role: decode, kv_events: false, args: [--kv-transfer-config, X]}\n"
        "  - {kv_events: false}\n";
    assert_int_equal(parse(y, &c, err, sizeof err), ST_OK);
    const char *kvt = "--kv-transfer-config {\"kv_connector\":\"TcpConnector\",\"kv_role\":"
                      "\"kv_both\",\"kv_port\":0,\"kv_ip\":\"127.0.0.1\"}";
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(up_engine_argv(&c, i, "/bin/sy", &a, &v), ST_OK);
        join(&v, s, sizeof s);
        if (i == 0)
            assert_non_null(strstr(s, kvt));
        else
            assert_null(strstr(s, kvt));
        up_strv_deinit(&v);
    }
    assert_non_null(strstr(s, "--served-model-name"));
    assert_string_equal(c.scheduler, "pd");
    char name[16];
    up_engine_name(0, name, sizeof name);
    assert_string_equal(name, "engine1");
    up_config_deinit(&c);
}

static void test_gateway_argv(void **state)
{
    (void)state;
    up_config_t c;
    char err[256], s[2048];
    const char *y = "gateway: {port: 9000, args: [--debug-scores]}\nengines:\n"
                    "  - {count: 2, role: prefill}\n"
                    "  - {model: /x/t.gguf, role: decode, kv_events: false}\n";
    assert_int_equal(parse(y, &c, err, sizeof err), ST_OK);
    up_addr_t eps[3] = {{4001, 5001}, {4002, 5002}, {4003, 0}};
    up_strv_t v = {0};
    assert_int_equal(up_gateway_argv(&c, "/bin/sy", 9000, eps, &v), ST_OK);
    join(&v, s, sizeof s);
    /* a model engine's file is the gateway's tokenizer unless the file names one */
    assert_string_equal(s, "/bin/sy gateway --host 127.0.0.1 --port 9000 --scheduler pd "
                           "--tokenizer /x/t.gguf "
                           "--endpoint http://127.0.0.1:4001,kv-events=tcp://127.0.0.1:5001,"
                           "role=prefill "
                           "--endpoint http://127.0.0.1:4002,kv-events=tcp://127.0.0.1:5002,"
                           "role=prefill "
                           "--endpoint http://127.0.0.1:4003,role=decode --debug-scores");
    up_strv_deinit(&v);
    up_config_deinit(&c);

    y = "block_size: 8\ngateway: {config: /s.yaml, tokenizer: builtin}\n"
        "engines:\n  - {model: /x/t.gguf}\n";
    assert_int_equal(parse(y, &c, err, sizeof err), ST_OK);
    assert_int_equal(up_gateway_argv(&c, "sy", 1, eps, &v), ST_OK);
    join(&v, s, sizeof s);
    assert_string_equal(s, "sy gateway --host 127.0.0.1 --port 1 --config /s.yaml --tokenizer "
                           "builtin --block-size 8 --endpoint "
                           "http://127.0.0.1:4001,kv-events=tcp://127.0.0.1:5001");
    up_strv_deinit(&v);
    up_config_deinit(&c);
}

/* The shipped examples parse; default.yaml is the built-in cluster exactly. */
static void test_examples(void **state)
{
    (void)state;
    const char *root = getenv("SY_SOURCE_DIR");
    if (!root)
        root = ".";
    const char *names[] = {"default", "pd", "model"};
    up_config_t c, d;
    char path[1024], err[512], a[4096], b[4096];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/deploy/cluster/%s.yaml", root, names[i]);
        int rc = up_config_load_file(path, &c, err, sizeof err);
        if (rc != ST_OK)
            fail_msg("%s: %s", path, err);
        assert_true(up_config_engine_count(&c) >= 1);
        up_config_deinit(&c);
    }
    snprintf(path, sizeof path, "%s/deploy/cluster/default.yaml", root);
    assert_int_equal(up_config_load_file(path, &c, err, sizeof err), ST_OK);
    assert_int_equal(up_config_default(&d), ST_OK);
    assert_int_equal(up_config_engine_count(&c), up_config_engine_count(&d));
    up_addr_t eps[UP_DEFAULT_ENGINES];
    for (size_t i = 0; i < UP_DEFAULT_ENGINES; i++) {
        eps[i] = (up_addr_t){.port = 4000 + (int)i, .kv_port = 5000 + (int)i};
        up_strv_t va = {0}, vb = {0};
        assert_int_equal(up_engine_argv(&c, i, "sy", &eps[i], &va), ST_OK);
        assert_int_equal(up_engine_argv(&d, i, "sy", &eps[i], &vb), ST_OK);
        join(&va, a, sizeof a);
        join(&vb, b, sizeof b);
        assert_string_equal(a, b);
        up_strv_deinit(&va);
        up_strv_deinit(&vb);
    }
    up_strv_t va = {0}, vb = {0};
    assert_int_equal(up_gateway_argv(&c, "sy", c.gateway_port, eps, &va), ST_OK);
    assert_int_equal(up_gateway_argv(&d, "sy", d.gateway_port, eps, &vb), ST_OK);
    join(&va, a, sizeof a);
    join(&vb, b, sizeof b);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "--port 8080 --scheduler default"));
    up_strv_deinit(&va);
    up_strv_deinit(&vb);
    assert_true(c.ready_timeout == d.ready_timeout);
    assert_string_equal(c.model, d.model);
    up_config_deinit(&c);
    up_config_deinit(&d);

    /* pd.yaml carries the roles */
    snprintf(path, sizeof path, "%s/deploy/cluster/pd.yaml", root);
    assert_int_equal(up_config_load_file(path, &c, err, sizeof err), ST_OK);
    assert_int_equal(up_config_engine_spec(&c, 0)->role, UP_ROLE_PREFILL);
    assert_int_equal(up_config_engine_spec(&c, 2)->role, UP_ROLE_DECODE);
    assert_int_equal(c.gateway_port, 0);
    assert_string_equal(c.scheduler, "pd"); /* roles: the P/D handler unless a file names one */
    up_config_deinit(&c);
}

static void test_strv(void **state)
{
    (void)state;
    up_strv_t a = {0}, b = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(up_strv_push(&a, i % 2 ? "x" : ""), ST_OK);
    assert_int_equal(a.n, 100);
    assert_null(a.v[100]);
    assert_int_equal(up_strv_extend(&b, &a), ST_OK);
    assert_int_equal(b.n, 100);
    assert_string_equal(b.v[99], "x");
    up_strv_deinit(&a);
    up_strv_deinit(&b);
    up_strv_deinit(NULL);
    assert_string_equal(up_role_name(UP_ROLE_DECODE), "decode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),      cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_nomem),
        cmocka_unit_test(test_load_file),    cmocka_unit_test(test_engine_argv),
        cmocka_unit_test(test_gateway_argv), cmocka_unit_test(test_examples),
        cmocka_unit_test(test_strv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
