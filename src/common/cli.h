/*
 * cli.h - declarative command-line parsing for subcommands ("switchyard engine --port 8000 ...").
 *
 * A subcommand describes its options in a static table (long name, metavar, type, destination,
 * help, default text); cli_parse fills the destinations and cli_usage prints a generated help text.
 * Accepted forms: "--name value", "--name=value"; bool options also "--name", "--no-name",
 * "--name=true|false|1|0|yes|no|on|off"; "--" ends the options. "-h"/"--help" asks for usage.
 * Also a tiny subcommand table (cli_cmd_t) for the top-level dispatcher.
 * Does not: short options (other than -h), option bundling, repeatable options, or set defaults
 * (the caller initialises each destination with its default before calling cli_parse).
 * Thread-safety: pure functions over caller data; reentrant.
 */
#ifndef SY_CLI_H
#define SY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Returned by cli_parse when -h/--help was given (> 0, distinct from every status code). */
#define CLI_HELP 1

typedef enum cli_type {
    CLI_FLAG,   /* bool *: set to true by "--name"; takes no value */
    CLI_BOOL,   /* bool *: "--name", "--no-name", "--name=<bool>" */
    CLI_STRING, /* const char **: borrowed pointer into argv */
    CLI_INT,    /* int64_t * */
    CLI_UINT,   /* uint64_t * (a leading '-' is rejected) */
    CLI_DOUBLE, /* double * (finite values only) */
} cli_type_t;

typedef struct cli_opt {
    const char *name;    /* long name without the leading "--", e.g. "port" */
    const char *metavar; /* value placeholder in usage, e.g. "PORT"; NULL picks one from type */
    cli_type_t type;
    void *dest;       /* borrowed; type per cli_type_t */
    const char *help; /* one line */
    const char *def;  /* default shown in usage as "(default: ...)"; NULL = none. Text only. */
} cli_opt_t;

typedef struct cli_spec {
    const char *prog;    /* usage prefix, e.g. "switchyard engine" */
    const char *summary; /* one paragraph printed under the usage line; may be NULL */
    const cli_opt_t *opts;
    size_t n_opts;
    size_t max_positional;  /* 0 = positional arguments are an error */
    const char *positional; /* metavar for usage, e.g. "MODEL..."; NULL = none */
} cli_spec_t;

/* Parses argv[1..argc) (argv[0] is the program or subcommand name and is skipped).
 * positional: array of spec->max_positional borrowed argv pointers filled in order (may be NULL
 * when max_positional is 0); *n_positional receives the count (may be NULL).
 * Returns ST_OK, CLI_HELP when -h/--help was seen (nothing else is guaranteed parsed), or ST_INVAL
 * with a one-line message naming the offending option written to err[0..err_cap) (unknown option,
 * missing value, malformed number or bool, value out of range, unexpected positional argument).
 * Destinations of options parsed before an error keep their new values. */
int cli_parse(const cli_spec_t *spec, int argc, char **argv, const char **positional,
              size_t *n_positional, char *err, size_t err_cap);

/* cli_parse for a subcommand's entry point: on -h/--help prints the usage text to stdout and
 * returns 0; on a parse error prints "<prog>: <message> (see --help)" to stderr and returns 2;
 * returns -1 when the caller should go on (everything parsed). */
int cli_parse_main(const cli_spec_t *spec, int argc, char **argv, const char **positional,
                   size_t *n_positional);

/* Appends the generated usage text (usage line, summary, one line per option, -h/--help) to out.
 * ST_OK or ST_NOMEM. */
int cli_usage(const cli_spec_t *spec, sy_buf_t *out);

/* Parses a bool word (true/false, 1/0, yes/no, on/off; case-insensitive). ST_OK or ST_INVAL. */
int cli_parse_bool(const char *s, bool *out);

/* ---- subcommand table ---- */
typedef int (*cli_cmd_fn)(int argc, char **argv); /* argv[0] is the command name */

typedef struct cli_cmd {
    const char *name;
    const char *summary;
    cli_cmd_fn run;
} cli_cmd_t;

/* Returns the command named name, or NULL. */
const cli_cmd_t *cli_cmd_find(const cli_cmd_t *cmds, size_t n, const char *name);
/* Appends "usage: <prog> <command> [options]" and one line per command to out. ST_OK/ST_NOMEM. */
int cli_cmds_usage(const char *prog, const cli_cmd_t *cmds, size_t n, sy_buf_t *out);

#endif
