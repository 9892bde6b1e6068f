/*
 * test_up_proc.c - unit tests of `switchyard up`'s child processes (up_proc.h) with /bin/sh as
 * the child: output lands in the log after the command line, exit statuses and signals are
 * described, SIGTERM counts as a clean stop only when we sent it, the child leads its own process
 * group (a SIGKILL reaches its grandchildren), an exec failure is exit 127 with a log line,
 * up_proc_destroy kills and reaps a running child, the state machine's transitions, and the log
 * tail.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/status.h"
#include "up/up_proc.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/test_up_proc_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Polls p until it exits (at most 10 s). */
static void wait_exit(up_proc_t *p)
{
    uint64_t t0 = ms();
    while (!up_proc_poll(p, ms())) {
        if (ms() - t0 > 10000)
            fail_msg("%s did not exit", up_proc_name(p));
        usleep(5000);
    }
    assert_int_equal(up_proc_state(p), UPP_EXITED);
}

/* True while pid exists and is not a zombie (an orphan's reaper may be slow or absent). */
static bool alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static up_proc_t *spawn_sh(const char *name, const char *script, char *log, size_t cap)
{
    snprintf(log, cap, "%s/%s.log", g_dir, name);
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    up_proc_t *p = NULL;
    char err[256];
    int rc = up_proc_spawn(name, argv, log, NULL, &p, err, sizeof err);
    if (rc != ST_OK)
        fail_msg("spawn: %s", err);
    assert_int_equal(up_proc_state(p), UPP_STARTING);
    assert_string_equal(up_proc_name(p), name);
    assert_string_equal(up_proc_log(p), log);
    assert_true(up_proc_pid(p) > 0);
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_exit_status_and_log(void **state)
{
    (void)state;
    char log[128], how[128];
    up_proc_t *p = spawn_sh("ex", "echo out; echo err >&2; exit 3", log, sizeof log);
    up_proc_describe(p, how, sizeof how);
    assert_non_null(strstr(how, "still running"));
    wait_exit(p);
    assert_false(up_proc_poll(p, ms())); /* once */
    up_proc_describe(p, how, sizeof how);
    assert_string_equal(how, "exited with status 3");
    assert_false(up_proc_stopped_ok(p));
    const char *text = slurp(log);
    assert_non_null(strstr(text, "# switchyard up: /bin/sh -c 'echo out; echo err >&2; exit 3'\n"));
    assert_non_null(strstr(text, "out\n"));
    assert_non_null(strstr(text, "err\n"));
    up_proc_terminate(p, ms()); /* no-op once exited */
    up_proc_kill(p);
    assert_int_equal(up_proc_state(p), UPP_EXITED);
    up_proc_destroy(p);

    p = spawn_sh("ok", "exit 0", log, sizeof log);
    wait_exit(p);
    assert_true(up_proc_stopped_ok(p));
    up_proc_destroy(p);
}

static void test_terminate_and_kill(void **state)
{
    (void)state;
    char log[128], how[128];
    /* a child that dies of our SIGTERM stopped cleanly */
    up_proc_t *p = spawn_sh("term", "exec sleep 30", log, sizeof log);
    up_proc_set_ready(p);
    assert_int_equal(up_proc_state(p), UPP_READY);
    uint64_t t = ms();
    up_proc_terminate(p, t);
    assert_int_equal(up_proc_state(p), UPP_STOPPING);
    assert_true(up_proc_term_ms(p) == t);
    up_proc_terminate(p, t + 5); /* once */
    assert_true(up_proc_term_ms(p) == t);
    wait_exit(p);
    up_proc_describe(p, how, sizeof how);
    assert_non_null(strstr(how, "killed by signal 15"));
    assert_true(up_proc_stopped_ok(p));
    up_proc_destroy(p);

    /* one that ignores it is SIGKILLed: not clean */
    p = spawn_sh("stubborn", "trap '' TERM; echo armed; while :; do sleep 0.05; done", log,
                 sizeof log);
    for (int i = 0; i < 200 && !strstr(slurp(log), "\narmed\n"); i++) /* not the command line */
        usleep(10000);
    up_proc_terminate(p, ms());
    usleep(100000);
    assert_false(up_proc_poll(p, ms()));
    up_proc_kill(p);
    assert_true(up_proc_killed(p));
    wait_exit(p);
    up_proc_describe(p, how, sizeof how);
    assert_non_null(strstr(how, "killed by signal 9"));
    assert_false(up_proc_stopped_ok(p));
    up_proc_destroy(p);

    /* a signal we did not send is not a clean stop */
    p = spawn_sh("self", "kill -TERM $$; sleep 5", log, sizeof log);
    wait_exit(p);
    assert_false(up_proc_stopped_ok(p));
    up_proc_destroy(p);
}

/* The child leads its own group: up_proc_kill reaches a grandchild. */
static void test_process_group(void **state)
{
    (void)state;
    char log[128], pidfile[160];
    snprintf(pidfile, sizeof pidfile, "%s/grandchild.pid", g_dir);
    char script[512];
    snprintf(script, sizeof script, "sleep 30 & echo $! > %s; wait", pidfile);
    up_proc_t *p = spawn_sh("group", script, log, sizeof log);
    assert_int_equal(getpgid(up_proc_pid(p)), up_proc_pid(p));
    FILE *f = NULL;
    long gc = 0;
    for (int i = 0; i < 500 && gc <= 0; i++) {
        usleep(10000);
        if ((f = fopen(pidfile, "r"))) {
            if (fscanf(f, "%ld", &gc) != 1)
                gc = 0;
            fclose(f);
        }
    }
    assert_true(gc > 0);
    assert_int_equal(getpgid((pid_t)gc), up_proc_pid(p));
    up_proc_kill(p);
    wait_exit(p);
    /* the grandchild was killed with its group: gone (or a zombie of its new parent) */
    int i = 0;
    for (; i < 500 && alive((pid_t)gc); i++)
        usleep(10000);
    assert_true(i < 500);
    up_proc_destroy(p);
}

static void test_exec_failure_and_destroy(void **state)
{
    (void)state;
    char log[128], how[128], err[256];
    snprintf(log, sizeof log, "%s/nox.log", g_dir);
    char *argv[] = {"/nonexistent/switchyard", "engine", NULL};
    up_proc_t *p = NULL;
    assert_int_equal(up_proc_spawn("nox", argv, log, NULL, &p, err, sizeof err), ST_OK);
    wait_exit(p);
    up_proc_describe(p, how, sizeof how);
    assert_string_equal(how, "exited with status 127");
    assert_non_null(strstr(slurp(log), "exec failed (errno 2): /nonexistent/switchyard"));
    up_proc_destroy(p);

    /* an unwritable log is an error before anything starts */
    snprintf(log, sizeof log, "%s/no/such/dir.log", g_dir);
    assert_true(up_proc_spawn("x", argv, log, NULL, &p, err, sizeof err) < 0);
    assert_null(p);
    assert_non_null(strstr(err, "No such file"));

    /* destroy kills and reaps a running child */
    p = spawn_sh("destroy", "exec sleep 30", log, sizeof log);
    pid_t pid = up_proc_pid(p);
    up_proc_destroy(p);
    assert_false(alive(pid));
    up_proc_destroy(NULL);
}

static void test_log_tail(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/tail.log", g_dir);
    char out[4096];
    FILE *mem;
    /* fewer lines than asked, no final newline */
    FILE *f = fopen(path, "w");
    fputs("a\nb\nc", f);
    fclose(f);
    mem = fmemopen(out, sizeof out, "w");
    assert_int_equal(up_log_tail(path, 20, "> ", mem), 3);
    fclose(mem);
    assert_string_equal(out, "> a\n> b\n> c\n");
    /* the last N of many, over the 16 KiB window */
    f = fopen(path, "w");
    for (int i = 0; i < 5000; i++)
        fprintf(f, "line %d\n", i);
    fclose(f);
    mem = fmemopen(out, sizeof out, "w");
    assert_int_equal(up_log_tail(path, 3, "", mem), 3);
    fclose(mem);
    assert_string_equal(out, "line 4997\nline 4998\nline 4999\n");
    mem = fmemopen(out, sizeof out, "w");
    assert_int_equal(up_log_tail(path, 0, "", mem), 0);
    fclose(mem);
    /* empty and missing files */
    f = fopen(path, "w");
    fclose(f);
    mem = fmemopen(out, sizeof out, "w");
    assert_int_equal(up_log_tail(path, 5, "", mem), 0);
    fclose(mem);
    unlink(path);
    assert_true(up_log_tail(path, 5, "", stderr) < 0);
}

static void test_shell_word(void **state)
{
    (void)state;
    sy_buf_t b = SY_BUF_INIT;
    up_shell_word(&b, "--port");
    sy_buf_append_char(&b, ' ');
    up_shell_word(&b, "{\"a\":1}");
    sy_buf_append_char(&b, ' ');
    up_shell_word(&b, "it's");
    sy_buf_append_char(&b, ' ');
    up_shell_word(&b, "");
    assert_string_equal(b.data, "--port '{\"a\":1}' 'it'\\''s' ''");
    sy_buf_deinit(&b);
    assert_string_equal(up_proc_state_name(UPP_STOPPING), "stopping");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status_and_log),
        cmocka_unit_test(test_terminate_and_kill),
        cmocka_unit_test(test_process_group),
        cmocka_unit_test(test_exec_failure_and_destroy),
        cmocka_unit_test(test_log_tail),
        cmocka_unit_test(test_shell_word),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
