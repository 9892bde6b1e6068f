/*
 * test_cli.c - option parsing forms (space/equals, bools, negation, numbers), error messages naming
 * the option, --help, positional handling and generated usage text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/cli.h"
#include "common/status.h"

typedef struct opts {
    const char *host;
    int64_t port;
    uint64_t max_seqs;
    double ratio;
    bool sim;
    bool prefix_cache;
    bool verbose;
} opts_t;

static opts_t g_o;

static const cli_opt_t g_table[] = {
    {"host", "HOST", CLI_STRING, &g_o.host, "address to bind", "0.0.0.0"},
    {"port", "PORT", CLI_INT, &g_o.port, "TCP port", "8000"},
    {"max-num-seqs", NULL, CLI_UINT, &g_o.max_seqs, "max sequences per step", "256"},
    {"gpu-memory-utilization", "FRAC", CLI_DOUBLE, &g_o.ratio, "fraction of memory", "0.9"},
    {"sim", NULL, CLI_FLAG, &g_o.sim, "use the simulated executor", NULL},
    {"enable-prefix-caching", NULL, CLI_BOOL, &g_o.prefix_cache, "reuse KV blocks", "true"},
    {"verbose", NULL, CLI_FLAG, &g_o.verbose, NULL, NULL},
};

static const cli_spec_t g_spec = {
    "switchyard engine", "Runs the engine.", g_table, sizeof g_table / sizeof g_table[0], 0, NULL};

static void defaults(void)
{
    g_o = (opts_t){"0.0.0.0", 8000, 256, 0.9, false, true, false};
}

/* Parses a NULL-terminated argument list (argv[0] = "engine" is added). */
static int parse(const cli_spec_t *spec, char *err, size_t cap, const char **pos, size_t *npos, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "engine";
    va_list ap;
    va_start(ap, npos);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    defaults();
    return cli_parse(spec, argc, argv, pos, npos, err, cap);
}

static void test_forms(void **state)
{
    char err[256];
    int rc = parse(&g_spec, err, sizeof err, NULL, NULL, "--host", "127.0.0.1", "--port=9001",
                   "--max-num-seqs", "16", "--gpu-memory-utilization=0.5", "--sim",
                   "--no-enable-prefix-caching", "--verbose", NULL);
    assert_int_equal(rc, ST_OK);
    assert_string_equal(err, "");
    assert_string_equal(g_o.host, "127.0.0.1");
    assert_int_equal(g_o.port, 9001);
    assert_int_equal(g_o.max_seqs, 16);
    assert_true(g_o.ratio == 0.5);
    assert_true(g_o.sim);
    assert_false(g_o.prefix_cache);
    assert_true(g_o.verbose);

    /* defaults are untouched when absent; last occurrence wins; negative ints with a space */
    rc = parse(&g_spec, err, sizeof err, NULL, NULL, "--port", "1", "--port", "-2", NULL);
    assert_int_equal(rc, ST_OK);
    assert_int_equal(g_o.port, -2);
    assert_string_equal(g_o.host, "0.0.0.0");
    assert_true(g_o.prefix_cache);

    const char *bools[][2] = {
        {"--enable-prefix-caching=false", "0"}, {"--enable-prefix-caching=TRUE", "1"},
        {"--enable-prefix-caching=no", "0"},    {"--enable-prefix-caching=on", "1"},
        {"--enable-prefix-caching=0", "0"},     {"--enable-prefix-caching", "1"}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, bools[i][0], NULL), ST_OK);
        assert_int_equal(g_o.prefix_cache, bools[i][1][0] == '1');
    }
    /* "--host=" gives an empty string, "--host=a=b" keeps everything after the first '=' */
    assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, "--host=a=b", NULL), ST_OK);
    assert_string_equal(g_o.host, "a=b");
    assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, "--host=", NULL), ST_OK);
    assert_string_equal(g_o.host, "");
}

static void expect_error(const char *needle1, const char *needle2, ...)
{
    char *argv[8];
    int argc = 0;
    argv[argc++] = "engine";
    va_list ap;
    va_start(ap, needle2);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 7)
        argv[argc++] = (char *)a;
    va_end(ap);
    char err[256] = "";
    defaults();
    assert_int_equal(cli_parse(&g_spec, argc, argv, NULL, NULL, err, sizeof err), ST_INVAL);
    if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
        fail_msg("error '%s' lacks '%s' / '%s'", err, needle1, needle2 ? needle2 : "");
}

static void test_errors(void **state)
{
    expect_error("--bogus", "unknown", "--bogus", NULL);
    expect_error("--bogus", "unknown", "--bogus=3", NULL);
    expect_error("-x", "unknown", "-x", NULL);
    expect_error("--port", "requires a value", "--port", NULL);
    expect_error("--port", "requires a value", "--port", "--host", "h", NULL);
    expect_error("--port", "invalid integer", "--port", "abc", NULL);
    expect_error("--port", "invalid integer", "--port=12x", NULL);
    expect_error("--port", "invalid integer", "--port=", NULL);
    expect_error("--port", "out of range", "--port", "99999999999999999999", NULL);
    expect_error("--max-num-seqs", "non-negative", "--max-num-seqs", "-1", NULL);
    expect_error("--gpu-memory-utilization", "invalid number", "--gpu-memory-utilization", "nan",
                 NULL);
    expect_error("--gpu-memory-utilization", "invalid number", "--gpu-memory-utilization=1.5x",
                 NULL);
    expect_error("--enable-prefix-caching", "invalid boolean", "--enable-prefix-caching=maybe",
                 NULL);
    expect_error("--sim", "takes no value", "--sim=1", NULL);
    expect_error("--no-enable-prefix-caching", "takes no value", "--no-enable-prefix-caching=true",
                 NULL);
    expect_error("--no-sim", "unknown", "--no-sim", NULL); /* only bools negate */
    expect_error("stray", "unexpected argument", "stray", NULL);
    /* a NULL/0-sized error buffer is allowed */
    char *argv[] = {"engine", "--bogus", NULL};
    assert_int_equal(cli_parse(&g_spec, 2, argv, NULL, NULL, NULL, 0), ST_INVAL);
}

static void test_help(void **state)
{
    char err[64];
    assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, "--help", NULL), CLI_HELP);
    assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, "--port", "1", "-h", NULL),
                     CLI_HELP);
    /* after "--", -h is a positional (rejected here) */
    assert_int_equal(parse(&g_spec, err, sizeof err, NULL, NULL, "--", "-h", NULL), ST_INVAL);
    assert_true(CLI_HELP > 0);
}

static void test_positional(void **state)
{
    cli_spec_t spec = g_spec;
    spec.max_positional = 2;
    spec.positional = "MODEL [TOKENIZER]";
    const char *pos[2];
    size_t n = 99;
    char err[128];
    assert_int_equal(parse(&spec, err, sizeof err, pos, &n, "m.gguf", "--port", "7", "-", NULL),
                     ST_OK);
    assert_int_equal(n, 2);
    assert_string_equal(pos[0], "m.gguf");
    assert_string_equal(pos[1], "-"); /* a lone dash is an argument */
    assert_int_equal(g_o.port, 7);
    assert_int_equal(parse(&spec, err, sizeof err, pos, &n, "--", "--port", NULL), ST_OK);
    assert_int_equal(n, 1);
    assert_string_equal(pos[0], "--port");
    assert_int_equal(parse(&spec, err, sizeof err, pos, &n, "a", "b", "c", NULL), ST_INVAL);
    assert_non_null(strstr(err, "'c'"));
}

static void test_usage(void **state)
{
    cli_spec_t spec = g_spec;
    spec.positional = "MODEL";
    spec.max_positional = 1;
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(cli_usage(&spec, &out), ST_OK);
    const char *want[] = {
        "usage: switchyard engine [options] MODEL\n",
        "\nRuns the engine.\n",
        "  --host HOST                 address to bind (default: 0.0.0.0)\n",
        "  --port PORT                 TCP port (default: 8000)\n",
        "  --max-num-seqs N            max sequences per step (default: 256)\n",
        "  --gpu-memory-utilization FRAC\n                              fraction of memory "
        "(default: 0.9)\n",
        "  --sim                       use the simulated executor\n",
        "  --[no-]enable-prefix-caching\n                              reuse KV blocks (default: "
        "true)\n",
        "  --verbose\n",
        "  -h, --help                  show this help and exit\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out.data, want[i]))
            fail_msg("usage lacks [%s]:\n%s", want[i], out.data);
    sy_buf_deinit(&out);
}

static int run_a(int argc, char **argv)
{
    return 11;
}

static void test_commands(void **state)
{
    const cli_cmd_t cmds[] = {{"engine", "model server", run_a}, {"gateway", "router", run_a}};
    const cli_cmd_t *c = cli_cmd_find(cmds, 2, "gateway");
    assert_non_null(c);
    assert_int_equal(c->run(0, NULL), 11);
    assert_null(cli_cmd_find(cmds, 2, "nope"));
    assert_null(cli_cmd_find(cmds, 2, NULL));
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(cli_cmds_usage("switchyard", cmds, 2, &out), ST_OK);
    assert_non_null(strstr(out.data, "usage: switchyard <command> [options]\n"));
    assert_non_null(strstr(out.data, "  engine                      model server\n"));
    sy_buf_deinit(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_help),  cmocka_unit_test(test_positional),
        cmocka_unit_test(test_usage), cmocka_unit_test(test_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
