/*
 * cli.c - option-table driven argument parsing and usage generation.
 * Lookup is linear over the table (tens of options, parsed once at startup). Numbers are parsed
 * with strtoll/strtoull/strtod and must consume the whole value.
 * Thread-safety: reentrant (errno is thread-local).
 */
#include "common/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/status.h"

#define CLI_HELP_COL 30

static int fail(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return ST_INVAL;
}

int cli_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return ST_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return ST_OK;
        }
    }
    return ST_INVAL;
}

/* Finds the option for name[0..len); *negated is set for "no-<bool>". */
static const cli_opt_t *find_opt(const cli_spec_t *spec, const char *name, size_t len,
                                 bool *negated)
{
    *negated = false;
    for (size_t i = 0; i < spec->n_opts; i++) {
        const cli_opt_t *o = &spec->opts[i];
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    }
    if (len > 3 && memcmp(name, "no-", 3) == 0) {
        for (size_t i = 0; i < spec->n_opts; i++) {
            const cli_opt_t *o = &spec->opts[i];
            if (o->type == CLI_BOOL && strlen(o->name) == len - 3 &&
                memcmp(o->name, name + 3, len - 3) == 0) {
                *negated = true;
                return o;
            }
        }
    }
    return NULL;
}

static int set_value(const cli_opt_t *o, const char *v, char *err, size_t cap)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_FLAG:
        return fail(err, cap, "option '--%s' takes no value", o->name);
    case CLI_BOOL:
        if (cli_parse_bool(v, (bool *)o->dest) != ST_OK)
            return fail(err, cap, "option '--%s': invalid boolean '%s' (use true or false)",
                        o->name, v);
        return ST_OK;
    case CLI_STRING:
        *(const char **)o->dest = v;
        return ST_OK;
    case CLI_INT: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end != '\0')
            return fail(err, cap, "option '--%s': invalid integer '%s'", o->name, v);
        if (errno == ERANGE)
            return fail(err, cap, "option '--%s': integer out of range '%s'", o->name, v);
        *(int64_t *)o->dest = (int64_t)x;
        return ST_OK;
    }
    case CLI_UINT: {
        const char *p = v;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '-')
            return fail(err, cap, "option '--%s': expected a non-negative integer, got '%s'",
                        o->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end != '\0')
            return fail(err, cap, "option '--%s': invalid integer '%s'", o->name, v);
        if (errno == ERANGE)
            return fail(err, cap, "option '--%s': integer out of range '%s'", o->name, v);
        *(uint64_t *)o->dest = (uint64_t)x;
        return ST_OK;
    }
    case CLI_DOUBLE: {
        double x = strtod(v, &end);
        if (end == v || *end != '\0' || !isfinite(x))
            return fail(err, cap, "option '--%s': invalid number '%s'", o->name, v);
        if (errno == ERANGE && (x > 1.0 || x < -1.0))
            return fail(err, cap, "option '--%s': number out of range '%s'", o->name, v);
        *(double *)o->dest = x;
        return ST_OK;
    }
    }
    return fail(err, cap, "option '--%s': bad option type", o->name);
}

int cli_parse(const cli_spec_t *spec, int argc, char **argv, const char **positional,
              size_t *n_positional, char *err, size_t err_cap)
{
    size_t npos = 0;
    bool options_done = false;
    if (err && err_cap)
        err[0] = '\0';
    if (n_positional)
        *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool is_opt = !options_done && arg[0] == '-' && arg[1] != '\0';
        if (!is_opt) {
            if (npos >= spec->max_positional) {
                if (spec->max_positional == 0)
                    return fail(err, err_cap, "unexpected argument '%s'", arg);
                return fail(err, err_cap, "too many arguments at '%s' (at most %zu)", arg,
                            spec->max_positional);
            }
            positional[npos++] = arg;
            if (n_positional)
                *n_positional = npos;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return CLI_HELP;
        if (arg[1] != '-')
            return fail(err, err_cap, "unknown option '%s'", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        bool negated;
        const cli_opt_t *o = find_opt(spec, name, name_len, &negated);
        if (!o) {
            return fail(err, err_cap, "unknown option '--%.*s'", (int)name_len, name);
        }
        if (negated) {
            if (eq)
                return fail(err, err_cap, "option '--no-%s' takes no value", o->name);
            *(bool *)o->dest = false;
            continue;
        }
        if (o->type == CLI_FLAG || (o->type == CLI_BOOL && !eq)) {
            if (eq)
                return fail(err, err_cap, "option '--%s' takes no value", o->name);
            *(bool *)o->dest = true;
            continue;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else {
            /* like argparse: a following "--x" is another option, not this one's value */
            if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
                return fail(err, err_cap, "option '--%s' requires a value", o->name);
            v = argv[++i];
        }
        int rc = set_value(o, v, err, err_cap);
        if (rc != ST_OK)
            return rc;
    }
    return ST_OK;
}

static const char *default_metavar(cli_type_t t)
{
    switch (t) {
    case CLI_STRING:
        return "STR";
    case CLI_INT:
    case CLI_UINT:
        return "N";
    case CLI_DOUBLE:
        return "X";
    default:
        return "";
    }
}

static int usage_line(sy_buf_t *out, const char *left, const char *help, const char *def)
{
    size_t start = out->len;
    if (sy_buf_appendf(out, "  %s", left) != ST_OK)
        return ST_NOMEM;
    size_t w = out->len - start;
    if (help && *help) {
        if (w + 2 > CLI_HELP_COL) {
            if (sy_buf_appendf(out, "\n%*s", CLI_HELP_COL, "") != ST_OK)
                return ST_NOMEM;
        } else if (sy_buf_appendf(out, "%*s", (int)(CLI_HELP_COL - w), "") != ST_OK) {
            return ST_NOMEM;
        }
        if (sy_buf_append_str(out, help) != ST_OK)
            return ST_NOMEM;
    }
    if (def && sy_buf_appendf(out, " (default: %s)", def) != ST_OK)
        return ST_NOMEM;
    return sy_buf_append_char(out, '\n');
}

int cli_usage(const cli_spec_t *spec, sy_buf_t *out)
{
    int rc = sy_buf_appendf(out, "usage: %s [options]", spec->prog ? spec->prog : "");
    if (rc == ST_OK && spec->positional)
        rc = sy_buf_appendf(out, " %s", spec->positional);
    if (rc == ST_OK)
        rc = sy_buf_append_str(out, "\n");
    if (rc == ST_OK && spec->summary)
        rc = sy_buf_appendf(out, "\n%s\n", spec->summary);
    if (rc == ST_OK)
        rc = sy_buf_append_str(out, "\noptions:\n");
    char left[160];
    for (size_t i = 0; rc == ST_OK && i < spec->n_opts; i++) {
        const cli_opt_t *o = &spec->opts[i];
        if (o->type == CLI_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else if (o->type == CLI_BOOL)
            snprintf(left, sizeof left, "--[no-]%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name,
                     o->metavar ? o->metavar : default_metavar(o->type));
        rc = usage_line(out, left, o->help, o->def);
    }
    if (rc == ST_OK)
        rc = usage_line(out, "-h, --help", "show this help and exit", NULL);
    return rc;
}

const cli_cmd_t *cli_cmd_find(const cli_cmd_t *cmds, size_t n, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

int cli_cmds_usage(const char *prog, const cli_cmd_t *cmds, size_t n, sy_buf_t *out)
{
    int rc = sy_buf_appendf(out, "usage: %s <command> [options]\n\ncommands:\n", prog);
    for (size_t i = 0; rc == ST_OK && i < n; i++)
        rc = usage_line(out, cmds[i].name, cmds[i].summary, NULL);
    if (rc == ST_OK)
        rc = sy_buf_appendf(out, "\nRun '%s <command> --help' for the options of a command.\n",
                            prog);
    return rc;
}

int cli_parse_main(const cli_spec_t *spec, int argc, char **argv, const char **positional,
                   size_t *n_positional)
{
    char err[768];
    err[0] = '\0';
    int rc = cli_parse(spec, argc, argv, positional, n_positional, err, sizeof err);
    if (rc == CLI_HELP) {
        sy_buf_t b = SY_BUF_INIT;
        cli_usage(spec, &b);
        fputs(b.data ? b.data : "", stdout);
        sy_buf_deinit(&b);
        return 0;
    }
    if (rc != ST_OK) {
        fprintf(stderr, "%s: %s (see --help)\n", spec->prog ? spec->prog : "switchyard", err);
        return 2;
    }
    return -1;
}
