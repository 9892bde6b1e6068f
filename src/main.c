/*
 * main.c - the switchyard binary: dispatches subcommands (engine, gateway, bench, up).
 * Thread-safety: n/a (process entry).
 */
#include <stdio.h>
#include <string.h>

#include "engine/engine_main.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: switchyard <command> [options]\n\n"
               "commands:\n"
               "  engine    vLLM-compatible model server (--sim: simulated executor)\n"
               "  version   print the version\n\n"
               "Run 'switchyard <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "engine") == 0)
        return engine_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("switchyard 0.1.0\n");
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "switchyard: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
