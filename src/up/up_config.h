/*
 * up_config.h - the cluster description of `switchyard up`: what to start (one gateway and N
 * engines on 127.0.0.1), read from a YAML file or built in, and the command line of every child.
 *
 *   model: sim-llama             # served model name (every engine's --served-model-name)
 *   hash_seed: "0"               # PYTHONHASHSEED of every child (default: $PYTHONHASHSEED or 0)
 *   block_size: 16               # optional: --block-size of the engines and the gateway
 *   ready_timeout: 60            # optional: seconds each child gets to become ready
 *   gateway:                     # optional mapping
 *     port: 8080                 # 0 = a free port; default 8080
 *     scheduler: default         # built-in scheduler name (default: "default", or "pd" when
 *                                # an engine has role prefill or decode), or
 *     config: sched.yaml         # an EndpointPickerConfig file (overrides scheduler)
 *     tokenizer: builtin         # default: builtin, or the first engine's model file
 *     args: ["--debug-scores"]   # extra arguments, appended last
 *   engines:                     # list of engine groups (default: one group of 3 sim engines)
 *     - count: 2                 # engines in this group (default 1)
 *       sim: true                # simulated executor (default: true unless `model` is given)
 *       sim_profile: a100-llama3-8b
 *       sim_speed: 1
 *       role: both               # both (default), prefill or decode: passed to the gateway;
 *                                # prefill and decode engines also get --kv-transfer-config
 *                                # (TcpConnector, kv_both, a free kv_port) unless args set one
 *       kv_events: true          # publish KV events over ZMQ (default true)
 *       args: []                 # extra engine arguments, appended last
 *     - model: /models/tiny.gguf # a real model on the CPU executor
 *       role: decode
 *
 * Relative paths (model, gateway config and tokenizer) are taken relative to the directory of the
 * cluster file. Every error names the file, its 1-based line and the problem.
 * Does not: check that model files exist (the engine does, and `up` shows its log), pick ports,
 * or start anything (up_main.c does).
 * Thread-safety: pure functions over caller-owned storage; any thread.
 */
#ifndef SY_UP_CONFIG_H
#define SY_UP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define UP_MAX_ENGINES 64    /* engines in one cluster, all groups together */
#define UP_NAME_MAX 128      /* model names */
#define UP_PATH_MAX 1024     /* file paths */
#define UP_DEFAULT_ENGINES 3 /* engines of the built-in cluster */
#define UP_DEFAULT_MODEL "sim-llama"
#define UP_DEFAULT_PROFILE "a100-llama3-8b"
#define UP_DEFAULT_PORT 8080
#define UP_DEFAULT_READY_TIMEOUT 60.0

typedef enum up_role {
    UP_ROLE_BOTH = 0,
    UP_ROLE_PREFILL = 1,
    UP_ROLE_DECODE = 2,
} up_role_t;

/* "both", "prefill" or "decode". */
const char *up_role_name(up_role_t r);

/* A list of owned argument strings. */
typedef struct up_strv {
    char **v; /* owned, each owned; NULL-terminated when n > 0 */
    size_t n;
    size_t cap;
} up_strv_t;

/* Appends an owned copy of s. ST_OK or ST_NOMEM. */
int up_strv_push(up_strv_t *s, const char *str);
/* Appends an owned copy of every string of src. ST_OK or ST_NOMEM. */
int up_strv_extend(up_strv_t *s, const up_strv_t *src);
/* Frees every string and the array, zeroes s. NULL ok. */
void up_strv_deinit(up_strv_t *s);

/* One group of identical engines. */
typedef struct up_engine_spec {
    unsigned count;               /* >= 1 */
    bool sim;                     /* simulated executor; false: model_path on the CPU */
    char model_path[UP_PATH_MAX]; /* "" for sim engines */
    char sim_profile[64];         /* sim only */
    double sim_speed;             /* sim only; >= 0 */
    up_role_t role;
    bool kv_events;
    up_strv_t args; /* extra arguments, appended last */
    size_t line;    /* line of the entry in the file (0 = built in) */
} up_engine_spec_t;

/* A whole cluster. Value type; free with up_config_deinit. */
typedef struct up_config {
    char model[UP_NAME_MAX];
    char hash_seed[32];  /* PYTHONHASHSEED of the children; "" = not set by the file */
    unsigned block_size; /* 0 = the children's default */
    double ready_timeout;
    int gateway_port;   /* 0 = a free port */
    char scheduler[64]; /* default "default", or "pd" when an engine has role prefill/decode */
    bool scheduler_set; /* the file named one */
    char gateway_config[UP_PATH_MAX]; /* "" = use scheduler */
    char tokenizer[UP_PATH_MAX];      /* "" = builtin, or the first model engine's file */
    up_strv_t gateway_args;
    up_engine_spec_t *engines; /* owned */
    size_t n_engines;          /* groups */
} up_config_t;

/* Fills *c with the built-in cluster: UP_DEFAULT_ENGINES sim engines (UP_DEFAULT_PROFILE, speed
 * 1, KV events on), model UP_DEFAULT_MODEL, gateway on UP_DEFAULT_PORT with scheduler "default".
 * ST_OK or ST_NOMEM (*c empty). */
int up_config_default(up_config_t *c);

/* Parses a cluster file from text[0..len) (borrowed). name labels errors ("cluster.yaml");
 * base_dir (may be NULL) is prefixed to relative paths. ST_OK with *c filled (owned; keys the file
 * omits keep the built-in defaults, and `engines` replaces the default group), or ST_INVAL (err:
 * "NAME:LINE: reason": bad YAML, unknown key, wrong type, bad value, sim with a model, over
 * UP_MAX_ENGINES engines, empty engines list) or ST_NOMEM, with *c empty. */
int up_config_parse(const char *text, size_t len, const char *name, const char *base_dir,
                    up_config_t *c, char *err, size_t errlen);
/* Same, reading path (unreadable file: -errno with err "PATH: reason"). */
int up_config_load_file(const char *path, up_config_t *c, char *err, size_t errlen);
/* Frees c's storage and zeroes it. NULL ok. */
void up_config_deinit(up_config_t *c);

/* Engines over all groups (sum of counts). */
size_t up_config_engine_count(const up_config_t *c);
/* The group of the i-th engine (0-based over all groups); NULL when i is out of range. */
const up_engine_spec_t *up_config_engine_spec(const up_config_t *c, size_t i);

/* Where one child listens, chosen by up_main before anything starts. */
typedef struct up_addr {
    int port;    /* HTTP port on 127.0.0.1 */
    int kv_port; /* ZMQ KV-event port; 0 = none */
} up_addr_t;

/* The name of the i-th engine: "engine1", "engine2", ... (1-based, as in the logs). */
void up_engine_name(size_t i, char *out, size_t cap);

/* Appends the argv of the i-th engine (0-based over all groups) to out, exe first:
 *   EXE engine (--sim --sim-profile P --sim-speed X | --model FILE) --host 127.0.0.1
 *       --port PORT --served-model-name MODEL [--block-size N]
 *       [--kv-events-config {"enable_kv_cache_events":true,...,"endpoint":"tcp://ANY:KV",...}]
 *       [--kv-transfer-config {"kv_connector":"TcpConnector",...}]   (role prefill or decode)
 *       ARGS...
 * where ANY is the literal "*" (the publisher binds every interface, as vLLM does).
 * exe and a are borrowed. ST_OK, ST_INVAL (i out of range) or ST_NOMEM. */
int up_engine_argv(const up_config_t *c, size_t i, const char *exe, const up_addr_t *a,
                   up_strv_t *out);

/* Appends the gateway's argv to out, exe first:
 *   EXE gateway --host 127.0.0.1 --port PORT (--scheduler S | --config FILE) [--tokenizer T]
 *       [--block-size N] --endpoint http://127.0.0.1:P[,kv-events=tcp://127.0.0.1:K][,role=R]...
 *       ARGS...
 * engines[0..up_config_engine_count(c)) are the engines' addresses (borrowed). ST_OK or
 * ST_NOMEM. */
int up_gateway_argv(const up_config_t *c, const char *exe, int port, const up_addr_t *engines,
                    up_strv_t *out);

#endif
