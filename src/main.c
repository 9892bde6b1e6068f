/*
 * main.c - the switchyard binary: dispatches subcommands from a table (one binary serves every
 * role; see docs/architecture.md).
 * Thread-safety: n/a (process entry).
 */
#include <stdio.h>
#include <string.h>

#include "bench/sb_main.h"
#include "common/buf.h"
#include "common/cli.h"
#include "engine/engine_main.h"
#include "engine/gguf_tools.h"
#include "gateway/gw_main.h"
#include "gov/gov_audit_cli.h"
#include "gov/gov_tenant.h"
#include "up/up_main.h"

#define SY_VERSION "0.1.0"

static int version_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("switchyard %s\n", SY_VERSION);
    return 0;
}

static const cli_cmd_t commands[] = {
    {"engine", "vLLM-compatible model server (--sim: simulated executor, no model file)",
     engine_main},
    {"gateway", "LLM-aware inference gateway: KV-cache- and load-aware endpoint picking",
     gateway_main},
    {"bench", "streaming load generator for OpenAI-compatible servers: TTFT, ITL, goodput",
     bench_main},
    {"gguf-info", "print a GGUF file's metadata and tensor table", gguf_info_main},
    {"gguf-synth", "write a synthetic llama GGUF with random weights (benchmarks, tests)",
     gguf_synth_main},
    {"up", "start a local cluster (gateway + sim or real engines) on 127.0.0.1, stop it on Ctrl-C",
     up_main},
    {"audit", "verify the hash chain of prompt audit logs; benchmark the audit writer",
     audit_main},
    {"apikey", "generate a gateway API key (new) or print a key's SHA-256 (hash)",
     gten_apikey_main},
    {"version", "print the version", version_main},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    sy_buf_t b = SY_BUF_INIT;
    cli_cmds_usage("switchyard", commands, N_COMMANDS, &b);
    fputs(b.data ? b.data : "", f);
    fputs("\nRun 'switchyard <command> --help' for the options of a command.\n", f);
    sy_buf_deinit(&b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return version_main(argc - 1, argv + 1);
    const cli_cmd_t *cmd = cli_cmd_find(commands, N_COMMANDS, argv[1]);
    if (!cmd) {
        fprintf(stderr, "switchyard: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return cmd->run(argc - 1, argv + 1);
}
