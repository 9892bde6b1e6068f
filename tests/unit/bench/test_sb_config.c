/*
 * test_sb_config.c - unit tests of the bench's inference-perf YAML reader (sb_config.h): the three
 * shared-prefix definitions shipped in shared/workloads/inference-perf (inlined here, so the test
 * needs nothing outside the repository), distributions, random data, and errors with their line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bench/sb_config.h"
#include "common/status.h"

static const char k_shared_prefix[] =
    "load:\n"
    "  type: constant\n"
    "  interval: 15\n"
    "  stages:\n"
    "  - rate: 1\n"
    "    duration: 30\n"
    "  - rate: 2\n"
    "    duration: 30\n"
    "api:\n"
    "  type: completion\n"
    "server:\n"
    "  type: vllm\n"
    "  model_name: HuggingFaceTB/SmolLM2-135M-Instruct\n"
    "  base_url: http://0.0.0.0:8000\n"
    "  ignore_eos: true\n"
    "tokenizer:\n"
    "  pretrained_model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct\n"
    "data:\n"
    "  type: shared_prefix\n"
    "  shared_prefix:\n"
    "    num_unique_system_prompts: 10     # Number of distinct shared prefixes\n"
    "    num_users_per_system_prompt: 10   # Number of unique questions per shared prefix\n"
    "    system_prompt_len: 100            # Length of the shared prefix (in tokens)\n"
    "    question_len: 50                  # Length of the unique question part (in tokens)\n"
    "    output_len: 50                    # Target length for the model's generated output\n"
    "metrics:\n"
    "  type: prometheus\n"
    "  prometheus:\n"
    "    url: http://localhost:9090\n"
    "    scrape_interval: 15\n"
    "report:\n"
    "  request_lifecycle:\n"
    "    summary: true\n"
    "    per_stage: true\n"
    "    per_request: true\n";

static const char k_distributions[] =
    "load:\n  type: constant\n  stages:\n  - rate: 1\n    duration: 30\n"
    "api:\n  type: completion\n"
    "data:\n"
    "  type: shared_prefix\n"
    "  shared_prefix:\n"
    "    seed: 42\n"
    "    num_unique_system_prompts: 10\n"
    "    num_users_per_system_prompt: 10\n"
    "    system_prompt_len: 100\n"
    "    question_len:\n"
    "      type: skew_normal\n"
    "      mean: 200\n"
    "      std_dev: 80\n"
    "      skew: 2.5\n"
    "      min: 10\n"
    "      max: 2000\n"
    "    output_len:\n"
    "      type: lognormal\n"
    "      mean: 150\n"
    "      std_dev: 60\n"
    "      min: 1\n"
    "      max: 4096\n";

static const char k_multi_turn[] =
    "load:\n  type: constant\n  num_workers: 2\n  worker_max_concurrency: 10\n  stages:\n"
    "  - rate: 20\n    duration: 5\n"
    "api:\n  type: completion\n"
    "data:\n  type: shared_prefix\n  shared_prefix:\n"
    "    num_unique_system_prompts: 2\n    num_users_per_system_prompt: 10\n"
    "    system_prompt_len: 100\n    question_len: 50\n    output_len: 50\n"
    "    enable_multi_turn_chat: true\n";

static int parse(const char *y, sb_file_cfg_t *c, char *err, size_t errlen)
{
    return sb_cfg_parse(y, strlen(y), c, err, errlen);
}

static void test_shared_prefix(void **state)
{
    (void)state;
    sb_file_cfg_t c;
    char err[256];
    assert_int_equal(parse(k_shared_prefix, &c, err, sizeof err), ST_OK);
    assert_true(c.have_load);
    assert_false(c.poisson);
    assert_int_equal(c.n_stages, 2);
    assert_float_equal(c.rate[0], 1, 1e-9);
    assert_float_equal(c.rate[1], 2, 1e-9);
    assert_float_equal(c.duration[1], 30, 1e-9);
    assert_true(c.have_api);
    assert_false(c.chat);
    assert_true(c.have_ignore_eos && c.ignore_eos);
    assert_true(c.have_data);
    assert_int_equal(c.kind, SB_WL_SHARED_PREFIX);
    assert_int_equal(c.groups, 10);
    assert_int_equal(c.prompts_per_group, 10);
    assert_int_equal(c.system_len.kind, SB_LEN_FIXED);
    assert_float_equal(c.system_len.mean, 100, 1e-9);
    assert_float_equal(c.question_len.mean, 50, 1e-9);
    assert_float_equal(c.output_len.mean, 50, 1e-9);
    assert_false(c.multi_turn);
    assert_false(c.have_seed);
}

static void test_distributions(void **state)
{
    (void)state;
    sb_file_cfg_t c;
    char err[256];
    assert_int_equal(parse(k_distributions, &c, err, sizeof err), ST_OK);
    assert_true(c.have_seed);
    assert_int_equal(c.seed, 42);
    assert_int_equal(c.question_len.kind, SB_LEN_SKEW_NORMAL);
    assert_float_equal(c.question_len.mean, 200, 1e-9);
    assert_float_equal(c.question_len.stddev, 80, 1e-9);
    assert_float_equal(c.question_len.skew, 2.5, 1e-9);
    assert_float_equal(c.question_len.min, 10, 1e-9);
    assert_float_equal(c.question_len.max, 2000, 1e-9);
    assert_int_equal(c.output_len.kind, SB_LEN_LOGNORMAL);
    assert_float_equal(c.output_len.max, 4096, 1e-9);
}

static void test_multi_turn_and_random(void **state)
{
    (void)state;
    sb_file_cfg_t c;
    char err[256];
    assert_int_equal(parse(k_multi_turn, &c, err, sizeof err), ST_OK);
    assert_true(c.multi_turn);
    assert_int_equal(c.groups, 2);
    assert_float_equal(c.rate[0], 20, 1e-9);
    const char *r = "load:\n  type: poisson\n  stages: [{rate: 3, duration: 10}]\n"
                    "api: {type: chat}\n"
                    "data:\n  type: random\n"
                    "  input_distribution: {min: 10, max: 100, mean: 50, std: 20}\n"
                    "  output_distribution: {min: 5, max: 5, mean: 5, std: 0}\n";
    assert_int_equal(parse(r, &c, err, sizeof err), ST_OK);
    assert_true(c.poisson);
    assert_true(c.chat);
    assert_int_equal(c.kind, SB_WL_RANDOM);
    assert_true(c.have_input_len);
    assert_int_equal(c.input_len.kind, SB_LEN_NORMAL);
    assert_float_equal(c.input_len.stddev, 20, 1e-9);
    assert_int_equal(c.output_len.kind, SB_LEN_FIXED);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *needle;
    } cases[] = {
        {"load:\n  type: ramp\n", "line 2: load.type 'ramp'"},
        {"load:\n  stages:\n  - rate: 0\n    duration: 3\n", "positive rate"},
        {"load:\n  stages:\n  - rate: 1\n    durration: 3\n", "unknown key 'durration'"},
        {"data:\n  shared_prefix:\n    num_groups_typo: 3\n", "line 3: unknown key"},
        {"data:\n  shared_prefix:\n    question_len: abc\n", "non-negative number"},
        {"data:\n  shared_prefix:\n    question_len: {type: zipf, mean: 3}\n", "zipf"},
        {"data:\n  shared_prefix:\n    num_unique_system_prompts: 0\n", "at least one group"},
        {"api:\n  type: embeddings\n", "completion or chat"},
        {"load: [1, 2\n", "YAML"},
        {"- a\n- b\n", "mapping"},
        {"", "empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_file_cfg_t c;
        char err[256] = "";
        assert_int_equal(parse(cases[i].yaml, &c, err, sizeof err), ST_INVAL);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, cases[i].needle);
    }
    sb_file_cfg_t c;
    char err[256];
    assert_true(sb_cfg_load_file("/nonexistent/x.yml", &c, err, sizeof err) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_prefix),
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_multi_turn_and_random),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
