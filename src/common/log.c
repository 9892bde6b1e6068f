/*
 * log.c - key=value line logger. The level is a process-wide atomic; lines are assembled in a
 * stack buffer and written with one write(2) so concurrent threads never interleave within a line.
 * Thread-safety: thread-safe.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = -1;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

int sy_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i <= SY_LOG_OFF; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return SY_LOG_WARN;
    return -1;
}

sy_log_level_t sy_log_get_level(void)
{
    int l = atomic_load_explicit(&g_level, memory_order_relaxed);
    if (l < 0) {
        l = sy_log_level_parse(getenv("SY_LOG_LEVEL"));
        if (l < 0)
            l = SY_LOG_INFO;
        atomic_store(&g_level, l);
    }
    return (sy_log_level_t)l;
}

void sy_log_set_level(sy_log_level_t level)
{
    atomic_store(&g_level, (int)level);
}

void sy_log(sy_log_level_t level, const char *event, const char *fmt, ...)
{
    if (level < sy_log_get_level() || level >= SY_LOG_OFF)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (n < 0)
        return;
    if (fmt && *fmt && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    /* one event per line: neutralise embedded newlines */
    for (int i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void sy_assert_fail(const char *cond, const char *file, int line)
{
    sy_log(SY_LOG_ERROR, "assert.fail", "cond=\"%s\" file=%s line=%d", cond, file, line);
    abort();
}
