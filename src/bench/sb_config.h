/*
 * sb_config.h - reads an inference-perf workload definition (YAML, as in
 * kubernetes-sigs/inference-perf's examples) for `switchyard bench --workload-config FILE.yml`.
 *
 * Read: load.type (constant | poisson), load.stages[] {rate, duration}; api.type (completion |
 * chat); server.ignore_eos; data.type (shared_prefix | random); data.shared_prefix
 * {num_unique_system_prompts, num_users_per_system_prompt, system_prompt_len, question_len,
 * output_len, seed, enable_multi_turn_chat}; data.input_distribution / output_distribution
 * {min, max, mean, std} for random. A length is a number or a distribution mapping {type: fixed |
 * normal | uniform | lognormal | skew_normal, mean, std_dev, skew, min, max}.
 * Ignored (they describe other machinery): server.base_url / model_name, tokenizer, metrics,
 * report, load.interval / num_workers / worker_max_concurrency. Unknown keys under the read
 * sections are errors (with their line), so a typo does not silently change the workload.
 * Thread-safety: reentrant.
 */
#ifndef SY_SB_CONFIG_H
#define SY_SB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/sb_workload.h"

#define SB_CFG_MAX_STAGES 64

typedef struct sb_file_cfg {
    bool have_load;
    bool poisson;
    size_t n_stages;
    double rate[SB_CFG_MAX_STAGES];
    double duration[SB_CFG_MAX_STAGES];
    bool have_api, chat;
    bool have_ignore_eos, ignore_eos;
    bool have_data;
    sb_wl_kind_t kind;
    bool have_groups, have_ppg, have_system_len, have_question_len, have_output_len, have_input_len;
    uint32_t groups, prompts_per_group;
    sb_len_dist_t system_len, question_len, output_len, input_len;
    bool have_seed;
    uint64_t seed;
    bool multi_turn;
} sb_file_cfg_t;

/* Parses text[0..len). ST_OK with *out filled, or ST_INVAL / ST_NOMEM with a message naming the
 * line in err. */
int sb_cfg_parse(const char *text, size_t len, sb_file_cfg_t *out, char *err, size_t errlen);
/* Reads and parses path. ST_OK, -errno, or as sb_cfg_parse. */
int sb_cfg_load_file(const char *path, sb_file_cfg_t *out, char *err, size_t errlen);

#endif
