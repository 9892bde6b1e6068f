/*
 * engine_main.c - `switchyard engine`: parses vLLM-named flags, wires the modules together
 * (tokenizer, chat template, executor, KV-event publisher, engine core, HTTP API), runs the event
 * loop, and drains on SIGTERM/SIGINT: stop accepting, let in-flight requests finish until
 * --drain-timeout, abort the rest, exit 0.
 *
 * Process shape: the main thread runs the event loop (HTTP + API); the engine core runs its own
 * thread; the KV-event publisher runs its own thread.
 * With --tls-cert/--tls-key the HTTP listener speaks TLS (http_tls.h; no reload in the engine).
 * Does not: load GGUF models yet (--model is refused with a clear message; a later issue adds the
 * CPU executor behind the same executor interface).
 * Thread-safety: process entry, main thread.
 */
#include "engine/engine_main.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/cli.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/api.h"
#include "engine/chat_tmpl.h"
#include "engine/engine_core.h"
#include "engine/kv_events.h"
#include "engine/sim_exec.h"
#include "engine/cpu_exec.h"
#include "engine/gguf.h"
#include "engine/kern.h"
#include "engine/tok_gguf.h"
#include "engine/tokenizer.h"
#include "http/http_server.h"
#include "http/http_tls.h"

#define SY_VERSION "0.1.0"
#define MAX_NAMES 16

/* Default KV capacity of the sim engine: an A100-80GB serving Llama-3-8B in bf16 at
 * gpu_memory_utilization 0.9 keeps about 72 GB - 16 GB weights - ~2 GB activations = 54 GB for
 * KV; Llama-3-8B stores 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes = 128 KiB per
 * token, so ~440k tokens = 27,500 blocks of 16. */
#define SIM_DEFAULT_BLOCKS 27500u

typedef struct engine_opts {
    const char *host;
    uint64_t port;
    const char *served_model_name;
    const char *model;
    bool sim;
    const char *sim_profile;
    double sim_speed;
    double sim_mean_output_tokens;
    bool sim_kv_storage;
    uint64_t block_size;
    uint64_t num_gpu_blocks;
    uint64_t max_num_seqs;
    uint64_t max_num_batched_tokens;
    uint64_t max_model_len;
    int64_t max_logprobs;
    uint64_t threads;
    uint64_t long_prefill_token_threshold;
    bool enable_prefix_caching;
    bool enable_chunked_prefill;
    bool enable_prompt_tokens_details;
    const char *kv_events_config;
    const char *kv_transfer_config;
    const char *api_key;
    const char *chat_template;
    uint64_t max_body_bytes;
    uint64_t max_connections;
    double drain_timeout;
    const char *log_level;
    const char *tls_cert, *tls_key; /* both or neither: HTTPS */
} engine_opts_t;

typedef struct engine_ctx {
    ev_loop_t *loop;
    http_server_t *srv;
    htls_server_t *tls; /* --tls-cert/--tls-key; NULL = plain HTTP */
    api_t *api;
    ecore_t *core;
    double drain_timeout;
    uint64_t drain_deadline_ms;
    bool draining;
    bool aborted; /* drain deadline passed: ecore_abort_all done */
    int sigfd;
} engine_ctx_t;

static void drain_tick(ev_loop_t *loop, uint64_t id, void *udata)
{
    (void)id;
    engine_ctx_t *ctx = udata;
    size_t inflight = api_num_inflight(ctx->api);
    if (inflight == 0) {
        sy_info("engine.drained", "msg=\"all requests finished\"");
        ev_stop(loop);
        return;
    }
    if (ev_now_ms(loop) >= ctx->drain_deadline_ms) {
        if (!ctx->aborted) {
            /* end every remaining stream properly (finish_reason "abort", then [DONE]) */
            sy_warn("engine.drain_timeout", "aborting=%zu", inflight);
            ecore_abort_all(ctx->core);
            ctx->aborted = true;
            ctx->drain_deadline_ms = ev_now_ms(loop) + 1000;
        } else {
            ev_stop(loop); /* teardown closes what is left, which aborts those requests */
            return;
        }
    }
    ev_timer_add(loop, 20, drain_tick, ctx);
}

static void on_signal(ev_loop_t *loop, int fd, uint32_t events, void *udata)
{
    (void)events;
    engine_ctx_t *ctx = udata;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (ctx->draining) {
            sy_warn("engine.signal", "signo=%u from_pid=%u msg=\"second signal: stopping now\"",
                    si.ssi_signo, si.ssi_pid);
            ev_stop(loop);
            return;
        }
        ctx->draining = true;
        sy_info("engine.draining", "signo=%u from_pid=%u inflight=%zu timeout_s=%.1f", si.ssi_signo,
                si.ssi_pid, api_num_inflight(ctx->api), ctx->drain_timeout);
        api_set_draining(ctx->api, true);
        http_server_stop_accepting(ctx->srv);
        ctx->drain_deadline_ms = ev_now_ms(loop) + (uint64_t)(ctx->drain_timeout * 1000.0);
        ev_timer_add(loop, 0, drain_tick, ctx);
    }
}

/* Splits "a,b c" into names (pointers into buf). */
static size_t split_names(char *buf, const char **names, size_t cap)
{
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t && n < cap;
         t = strtok_r(NULL, ", ", &save))
        names[n++] = t;
    return n;
}

int engine_main(int argc, char **argv)
{
    engine_opts_t o = {
        .host = "0.0.0.0",
        .port = 8000,
        .sim_profile = "a100-llama3-8b",
        .sim_speed = 1.0,
        .sim_mean_output_tokens = 128,
        .block_size = 16,
        .max_num_seqs = 256,
        .max_logprobs = 20,
        .max_num_batched_tokens = 8192,
        .enable_prefix_caching = true,
        .enable_chunked_prefill = true,
        .enable_prompt_tokens_details = true,
        .chat_template = NULL, /* chatml for the sim; from the model file otherwise */
        .threads = 0,
        .max_body_bytes = 8u << 20,
        .max_connections = 100000,
        .drain_timeout = 30,
        .log_level = NULL,
    };
    const cli_opt_t opts[] = {
        {"host", "HOST", CLI_STRING, &o.host, "address to listen on", "0.0.0.0"},
        {"port", "PORT", CLI_UINT, &o.port, "HTTP port", "8000"},
        {"tls-cert", "FILE", CLI_STRING, &o.tls_cert,
         "serve over TLS with this PEM certificate (leaf first, then its chain); needs --tls-key",
         NULL},
        {"tls-key", "FILE", CLI_STRING, &o.tls_key, "the PEM private key of --tls-cert", NULL},
        {"served-model-name", "NAMES", CLI_STRING, &o.served_model_name,
         "model name(s) served, comma-separated; the first is used in metrics",
         "the --model path, or sim-model"},
        {"model", "FILE.gguf", CLI_STRING, &o.model,
         "GGUF model file (llama architecture) run on the CPU executor", NULL},
        {"threads", "N", CLI_UINT, &o.threads, "CPU executor threads", "all online CPUs"},
        {"sim", NULL, CLI_FLAG, &o.sim, "use the simulated executor (no model file needed)", NULL},
        {"sim-profile", "NAME", CLI_STRING, &o.sim_profile,
         "timing calibration profile of the sim executor", "a100-llama3-8b"},
        {"sim-speed", "X", CLI_DOUBLE, &o.sim_speed,
         "sim time scale: 1 = real time, 10 = ten times faster, 0 = as fast as possible", "1"},
        {"sim-kv-storage", NULL, CLI_FLAG, &o.sim_kv_storage,
         "the sim keeps real KV bytes (its profile's 128 KiB per token slot, a fixed pattern) so "
         "KV transfers move real data (transfer benchmarks; size the pool with "
         "--num-gpu-blocks-override)",
         NULL},
        {"sim-mean-output-tokens", "N", CLI_DOUBLE, &o.sim_mean_output_tokens,
         "mean answer length of the sim when ignore_eos is false", "128"},
        {"block-size", "N", CLI_UINT, &o.block_size, "tokens per KV block", "16"},
        {"num-gpu-blocks-override", "N", CLI_UINT, &o.num_gpu_blocks, "KV cache capacity in blocks",
         "27500 for the sim (A100-80GB, Llama-3-8B)"},
        {"max-num-seqs", "N", CLI_UINT, &o.max_num_seqs, "maximum running sequences", "256"},
        {"max-num-batched-tokens", "N", CLI_UINT, &o.max_num_batched_tokens,
         "token budget per scheduler step", "8192"},
        {"max-model-len", "N", CLI_UINT, &o.max_model_len, "context length",
         "8192, capped to the KV capacity"},
        {"max-logprobs", "N", CLI_INT, &o.max_logprobs,
         "most top logprobs a request may ask for (-1 = the whole vocabulary); sizes the CPU "
         "executor's per-step logprob lists",
         "20"},
        {"long-prefill-token-threshold", "N", CLI_UINT, &o.long_prefill_token_threshold,
         "cap on one sequence's prefill chunk per step (0 = off)", "0"},
        {"enable-prefix-caching", NULL, CLI_BOOL, &o.enable_prefix_caching,
         "reuse KV blocks of shared prompt prefixes", "true"},
        {"enable-chunked-prefill", NULL, CLI_BOOL, &o.enable_chunked_prefill,
         "split long prompts over several steps", "true"},
        {"enable-prompt-tokens-details", NULL, CLI_BOOL, &o.enable_prompt_tokens_details,
         "report usage.prompt_tokens_details.cached_tokens", "true"},
        {"kv-transfer-config", "JSON", CLI_STRING, &o.kv_transfer_config,
         "P/D disaggregation, vLLM's KVTransferConfig: {\"kv_connector\":\"TcpConnector\","
         "\"kv_role\":\"kv_both\",\"kv_port\":14579} (kv_producer | kv_consumer | kv_both; "
         "kv_ip, engine_id, kv_connector_extra_config: lease_seconds, sim_bandwidth_gbps, "
         "sim_latency_ms, advertise_host, ...)",
         NULL},
        {"kv-events-config", "JSON", CLI_STRING, &o.kv_events_config,
         "KV-cache event publisher config, as vLLM's KVEventsConfig", NULL},
        {"api-key", "KEY", CLI_STRING, &o.api_key,
         "require 'Authorization: Bearer KEY' on /v1/* (also $VLLM_API_KEY)", NULL},
        {"chat-template", "NAME", CLI_STRING, &o.chat_template, "built-in chat template name",
         "chatml for --sim; with --model, the family recognised in the file's template"},
        {"max-body-bytes", "N", CLI_UINT, &o.max_body_bytes, "largest request body accepted",
         "8388608"},
        {"max-connections", "N", CLI_UINT, &o.max_connections,
         "client connections held at once (accepting pauses at the limit)", "100000"},
        {"drain-timeout", "SECONDS", CLI_DOUBLE, &o.drain_timeout,
         "on SIGTERM, time given to in-flight requests before they are aborted", "30"},
        {"log-level", "LEVEL", CLI_STRING, &o.log_level, "debug, info, warn or error", "info"},
    };
    const cli_spec_t spec = {
        .prog = "switchyard engine",
        .summary = "A vLLM-compatible model server: OpenAI API, paged KV cache with prefix "
                   "caching, continuous batching, vLLM metrics and KV events. Env PYTHONHASHSEED "
                   "seeds the block-hash chain as in vLLM (random when unset).",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
    };
    int done = cli_parse_main(&spec, argc, argv, NULL, NULL);
    if (done >= 0)
        return done;
    if (o.log_level) {
        int lvl = sy_log_level_parse(o.log_level);
        if (lvl < 0) {
            fprintf(stderr, "switchyard engine: --log-level: unknown level '%s'\n", o.log_level);
            return 2;
        }
        sy_log_set_level((sy_log_level_t)lvl);
    }
    if (o.model && o.sim) {
        fprintf(stderr, "switchyard engine: --model and --sim exclude each other\n");
        return 2;
    }
    if (!o.sim && !o.model) {
        fprintf(stderr, "switchyard engine: no model: pass --model FILE.gguf, or --sim (simulated "
                        "executor, no model file needed)\n");
        return 2;
    }
    if (!o.api_key && getenv("VLLM_API_KEY") && *getenv("VLLM_API_KEY"))
        o.api_key = getenv("VLLM_API_KEY");
    if (o.port > 65535 || o.block_size == 0 || o.block_size > 1024 || o.max_num_seqs == 0 ||
        o.max_num_seqs > 65536 || o.max_num_batched_tokens == 0 ||
        o.max_num_batched_tokens > (1u << 24) || o.num_gpu_blocks > (1u << 26) ||
        o.max_model_len > (1u << 24) || o.max_logprobs < -1 || o.max_logprobs > (1 << 24) ||
        o.sim_speed < 0 || o.drain_timeout < 0 || o.sim_mean_output_tokens < 1) {
        fprintf(stderr, "switchyard engine: an option is out of range (port <= 65535, "
                        "1 <= block-size <= 1024, 1 <= max-num-seqs <= 65536, ...)\n");
        return 2;
    }
    const sim_profile_t *profile = sim_profile_find(o.sim_profile);
    if (!profile) {
        fprintf(stderr, "switchyard engine: --sim-profile: unknown profile '%s' (known: %s)\n",
                o.sim_profile, sim_profile_names());
        return 2;
    }
    const chat_tmpl_t *tmpl = NULL;
    if (o.chat_template && !(tmpl = chat_tmpl_find(o.chat_template))) {
        fprintf(stderr, "switchyard engine: --chat-template: unknown template '%s' (known: %s)\n",
                o.chat_template, chat_tmpl_names());
        return 2;
    }
    if (!tmpl && o.sim)
        tmpl = chat_tmpl_find("chatml");
    gguf_t *model = NULL;
    uint32_t model_ctx = 0;
    uint64_t kv_bytes_per_token = 0;
    if (o.model) {
        char gerr[512];
        int grc = gguf_open(o.model, &model, gerr, sizeof gerr);
        if (grc != ST_OK) {
            fprintf(stderr, "switchyard engine: --model %s: %s\n", o.model, gerr);
            return 1;
        }
        uint32_t nl = 0, nkv = 0, nh = 0, dim = 0;
        sy_slice_t arch = {0};
        if (!gguf_get_str(model, "general.architecture", &arch) || !sy_slice_eq(arch, "llama")) {
            fprintf(stderr,
                    "switchyard engine: --model %s: unsupported architecture '%.*s' (the "
                    "CPU executor runs llama)\n",
                    o.model, (int)arch.len, arch.ptr ? arch.ptr : "");
            gguf_close(model);
            return 1;
        }
        gguf_get_u32(model, "llama.context_length", &model_ctx);
        if (gguf_get_u32(model, "llama.block_count", &nl) &&
            gguf_get_u32(model, "llama.embedding_length", &dim) &&
            gguf_get_u32(model, "llama.attention.head_count", &nh) && nh) {
            if (!gguf_get_u32(model, "llama.attention.head_count_kv", &nkv))
                nkv = nh;
            kv_bytes_per_token = (uint64_t)nl * 2 * nkv * (dim / nh) * sizeof(float);
        }
        sy_slice_t jinja = {0};
        if (!tmpl && gguf_get_str(model, "tokenizer.chat_template", &jinja)) {
            tmpl = chat_tmpl_detect(jinja.ptr, jinja.len);
            if (!tmpl) {
                fprintf(stderr,
                        "switchyard engine: --model %s: its chat template is not one of the "
                        "known families; pass --chat-template NAME (known: %s)\n",
                        o.model, chat_tmpl_names());
                gguf_close(model);
                return 2;
            }
        }
        /* no template in the file and none given: chat requests are refused with a 400 */
    }
    uint32_t num_blocks = o.num_gpu_blocks ? (uint32_t)o.num_gpu_blocks : SIM_DEFAULT_BLOCKS;
    if (model && !o.num_gpu_blocks) {
        /* KV pool: room for 4 full contexts (at least 8192 tokens), at most 1 GiB of F32 K/V */
        uint64_t want = model_ctx ? 4ull * model_ctx : 8192;
        if (want < 8192)
            want = 8192;
        if (kv_bytes_per_token && want * kv_bytes_per_token > (1ull << 30))
            want = (1ull << 30) / kv_bytes_per_token;
        num_blocks = (uint32_t)((want + o.block_size - 1) / o.block_size);
    }
    uint64_t capacity = (uint64_t)num_blocks * o.block_size;
    uint32_t max_model_len = (uint32_t)o.max_model_len;
    if (model && model_ctx && max_model_len > model_ctx) {
        fprintf(stderr,
                "switchyard engine: --max-model-len %u is larger than the model's context length "
                "(%u)\n",
                max_model_len, model_ctx);
        gguf_close(model);
        return 2;
    }
    if (max_model_len == 0) {
        uint64_t cap = model && model_ctx ? model_ctx : 8192;
        max_model_len = (uint32_t)(capacity < cap ? capacity : cap);
    } else if (max_model_len > capacity) {
        fprintf(stderr,
                "switchyard engine: the model's max seq len (%u) is larger than the maximum "
                "number of tokens that can be stored in KV cache (%llu); raise "
                "--num-gpu-blocks-override or lower --max-model-len\n",
                max_model_len, (unsigned long long)capacity);
        return 2;
    }
    if (max_model_len < 2) {
        fprintf(stderr, "switchyard engine: the KV cache is too small (%llu tokens)\n",
                (unsigned long long)capacity);
        return 2;
    }

    char names_buf[1024];
    snprintf(names_buf, sizeof names_buf, "%s",
             o.served_model_name ? o.served_model_name
             : o.model           ? o.model
                                 : "sim-model");
    const char *names[MAX_NAMES];
    size_t n_names = split_names(names_buf, names, MAX_NAMES);
    if (n_names == 0) {
        fprintf(stderr, "switchyard engine: --served-model-name is empty\n");
        return 2;
    }

    int status = ST_OK;
    int exit_code = 1;
    kve_config_t kvec;
    kve_config_default(&kvec);
    tok_t *tok = NULL;
    exec_t *exec = NULL;
    kve_pub_t *events = NULL;
    kvx_t *kvx = NULL;
    kvx_config_t kvxc;
    int kv_port = 0;
    mx_registry_t *reg = NULL;
    api_t *api = NULL;
    engine_ctx_t ctx = {.sigfd = -1, .drain_timeout = o.drain_timeout};

    sigset_t mask;
    sy_proc_tune_malloc();
    sy_proc_block_signals(&mask, false); /* before threads start: they inherit the mask */

    if (o.kv_events_config) {
        sy_buf_t e = SY_BUF_INIT;
        if (kve_config_parse(o.kv_events_config, &kvec, &e) != ST_OK) {
            fprintf(stderr, "switchyard engine: --kv-events-config: %s\n", e.data ? e.data : "");
            sy_buf_deinit(&e);
            goto fail;
        }
        sy_buf_deinit(&e);
        if (kvec.enable && !o.enable_prefix_caching) {
            fprintf(stderr, "switchyard engine: KV cache events require prefix caching\n");
            goto fail;
        }
    }
    if (o.kv_transfer_config) {
        char e[256];
        if (kvx_config_parse(o.kv_transfer_config, &kvxc, e, sizeof e) != ST_OK) {
            fprintf(stderr, "switchyard engine: --kv-transfer-config: %s\n", e);
            exit_code = 2;
            goto fail;
        }
    }
    reg = mx_registry_create();
    ctx.loop = ev_loop_create();
    if (!reg || !ctx.loop)
        goto oom;
    if (model) {
        char xerr[512];
        tok = tok_gguf_create(model, xerr, sizeof xerr);
        if (!tok) {
            fprintf(stderr, "switchyard engine: --model %s: tokenizer: %s\n", o.model, xerr);
            goto fail;
        }
        kern_init(KERN_ISA_AUTO);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        cpux_config_t xc = {
            .gguf = model,
            .num_blocks = num_blocks,
            .block_size = (uint32_t)o.block_size,
            .max_batch_tokens = (uint32_t)o.max_num_batched_tokens,
            .max_seqs = (uint32_t)o.max_num_seqs,
            .max_logprobs =
                o.max_logprobs < 0 ? (uint32_t)tok_vocab_size(tok) : (uint32_t)o.max_logprobs,
            .threads = o.threads ? (int)o.threads : (ncpu > 0 ? (int)ncpu : 1),
        };
        exec = cpux_create(&xc, xerr, sizeof xerr);
        if (!exec) {
            fprintf(stderr, "switchyard engine: --model %s: %s\n", o.model, xerr);
            goto fail;
        }
    } else {
        tok = tok_byte_create();
        if (!tok)
            goto oom;
        sim_config_t scfg = {
            .profile = profile,
            .speed = o.sim_speed,
            .tok = tok,
            .mean_output_tokens = o.sim_mean_output_tokens,
            .num_blocks = num_blocks,
            .block_size = (uint32_t)o.block_size,
            .kv_storage = o.sim_kv_storage,
        };
        exec = sim_exec_create(&scfg);
        if (!exec)
            goto oom;
    }
    if (kvec.enable && kvec.publisher && strcmp(kvec.publisher, "null") != 0) {
        events = kve_create(&kvec, &status);
        if (!events) {
            fprintf(stderr, "switchyard engine: KV events publisher on %s: %s\n",
                    kvec.endpoint ? kvec.endpoint : "?", st_str(status));
            goto fail;
        }
    }
    if (o.kv_transfer_config) {
        char e[256];
        kvx = kvx_create(&kvxc, exec, reg, names[0], e, sizeof e);
        if (!kvx) {
            fprintf(stderr, "switchyard engine: KV transfer: %s\n", e);
            goto fail;
        }
        kv_port = kvx_is_producer(kvx) ? kvx_port(kvx) : 0;
    }
    const char *hash_seed = getenv("PYTHONHASHSEED");
    api_config_t acfg = {
        .model_names = names,
        .n_model_names = n_names,
        .max_model_len = max_model_len,
        .kv_capacity_tokens = capacity,
        .api_key = o.api_key,
        .enable_prompt_tokens_details = o.enable_prompt_tokens_details,
        .tok = tok,
        .tmpl = tmpl,
        .metrics = reg,
        .version = SY_VERSION,
        .max_logprobs = (int32_t)o.max_logprobs,
        .max_logprobs_set = true,
        .no_logprobs = !model, /* the sim has no distribution */
    };
    sy_proc_metrics_register(reg);
    api = api_create(&acfg);
    if (!api)
        goto oom;
    ctx.api = api;
    ecore_config_t ccfg = {
        .sched =
            {
                .max_num_seqs = (uint32_t)o.max_num_seqs,
                .max_num_batched_tokens = (uint32_t)o.max_num_batched_tokens,
                .max_model_len = max_model_len,
                .enable_chunked_prefill = o.enable_chunked_prefill,
                .long_prefill_token_threshold = (uint32_t)o.long_prefill_token_threshold,
            },
        .kv =
            {
                .block_size = (uint32_t)o.block_size,
                .num_blocks = num_blocks,
                .enable_prefix_caching = o.enable_prefix_caching,
                .hash_seed = hash_seed,
            },
        .model_name = names[0],
        .metrics = reg,
        .tok = tok,
        .exec = exec,
        .events = events,
        .kvx = kvx,
        .loop = ctx.loop,
        .on_output = api_on_output,
    };
    ctx.core = ecore_create(&ccfg, &status);
    exec = NULL; /* owned by the core now (or freed by a failed create), as is kvx */
    kvx = NULL;
    if (!ctx.core) {
        fprintf(stderr, "switchyard engine: engine core: %s\n", st_str(status));
        goto fail;
    }
    api_set_core(api, ctx.core);

    http_server_config_t hcfg;
    http_server_config_default(&hcfg);
    hcfg.max_body_bytes = (size_t)o.max_body_bytes;
    hcfg.max_connections = o.max_connections ? (size_t)o.max_connections : 1;
    sy_raise_fd_limit();
    ctx.srv = http_server_create(ctx.loop, &hcfg, api_on_request, api);
    if (!ctx.srv)
        goto oom;
    if (!o.tls_cert != !o.tls_key) {
        fprintf(stderr, "switchyard engine: --tls-cert and --tls-key go together\n");
        exit_code = 2;
        goto fail;
    }
    if (o.tls_cert) {
        char terr[512];
        ctx.tls = htls_server_create(o.tls_cert, o.tls_key, terr, sizeof terr);
        if (!ctx.tls) {
            fprintf(stderr, "switchyard engine: TLS: %s\n", terr);
            goto fail;
        }
        http_server_set_tls(ctx.srv, ctx.tls);
    }
    status = http_server_listen(ctx.srv, o.host, (int)o.port);
    if (status != ST_OK) {
        fprintf(stderr, "switchyard engine: cannot listen on %s:%llu: %s\n", o.host,
                (unsigned long long)o.port, st_str(status));
        goto fail;
    }
    ctx.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (ctx.sigfd < 0 || ev_fd_add(ctx.loop, ctx.sigfd, EV_READ, on_signal, &ctx) != ST_OK) {
        fprintf(stderr, "switchyard engine: signalfd failed\n");
        goto fail;
    }
    sy_info("engine.start",
            "version=%s addr=%s:%d model=%s executor=%s profile=%s speed=%g block_size=%llu "
            "num_gpu_blocks=%u max_model_len=%u max_num_seqs=%llu max_num_batched_tokens=%llu "
            "prefix_caching=%s kv_events=%s kv_transfer=%s kv_port=%d engine_id=%s",
            SY_VERSION, o.host, http_server_port(ctx.srv), names[0], model ? "cpu" : "sim",
            model ? kern_isa_name() : profile->name, o.sim_speed, (unsigned long long)o.block_size,
            num_blocks, max_model_len, (unsigned long long)o.max_num_seqs,
            (unsigned long long)o.max_num_batched_tokens, o.enable_prefix_caching ? "on" : "off",
            events ? kvec.endpoint : "off",
            !o.kv_transfer_config       ? "off"
            : kvxc.role == KVX_PRODUCER ? "kv_producer"
            : kvxc.role == KVX_CONSUMER ? "kv_consumer"
                                        : "kv_both",
            kv_port, o.kv_transfer_config ? kvxc.engine_id : "-");
    ev_run(ctx.loop);
    exit_code = 0;
    sy_info("engine.stop", "msg=\"shutting down\"");
    goto cleanup;
oom:
    fprintf(stderr, "switchyard engine: out of memory during start-up\n");
fail:
    exit_code = exit_code ? exit_code : 1;
cleanup:
    if (ctx.sigfd >= 0) {
        ev_fd_del(ctx.loop, ctx.sigfd);
        close(ctx.sigfd);
    }
    http_server_destroy(ctx.srv); /* closes exchanges: their requests are aborted */
    htls_server_destroy(ctx.tls);
    if (api)
        api_set_core(api, NULL); /* the exchanges are gone; nothing may reach the core now */
    ecore_destroy(ctx.core);
    api_destroy(api);
    kvx_destroy(kvx); /* before the executor whose pool its threads use */
    exec_destroy(exec);
    kve_destroy(events);
    kve_config_deinit(&kvec);
    mx_registry_destroy(reg);
    tok_destroy(tok);
    gguf_close(model); /* after the executor: its weights are in the mapping */
    ev_loop_destroy(ctx.loop);
    return exit_code;
}
