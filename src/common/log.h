/*
 * log.h - structured logging: one line per event, key=value pairs, to stderr.
 *
 *   ts=2026-11-25T19:30:00.123Z level=info event=http.listen addr=127.0.0.1:8000
 *
 * The caller passes the event name and a printf format for the remaining key=value pairs.
 * Values containing spaces should be quoted by the caller ("msg=\"%s\"").
 * Does not: rotate files or buffer across lines.
 * Thread-safety: thread-safe; each line is written with one write(2).
 */
#ifndef SY_LOG_H
#define SY_LOG_H

typedef enum sy_log_level {
    SY_LOG_DEBUG = 0,
    SY_LOG_INFO = 1,
    SY_LOG_WARN = 2,
    SY_LOG_ERROR = 3,
    SY_LOG_OFF = 4,
} sy_log_level_t;

/* Sets the minimum level printed (default INFO; env SY_LOG_LEVEL=debug|info|warn|error|off). */
void sy_log_set_level(sy_log_level_t level);
sy_log_level_t sy_log_get_level(void);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int sy_log_level_parse(const char *s);

/* Emits one line: ts, level, event, then the formatted key=value text (may be NULL). */
void sy_log(sy_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SY_LOG_DEBUG_ENABLED() (sy_log_get_level() <= SY_LOG_DEBUG)
#define sy_debug(ev, ...) sy_log(SY_LOG_DEBUG, ev, __VA_ARGS__)
#define sy_info(ev, ...) sy_log(SY_LOG_INFO, ev, __VA_ARGS__)
#define sy_warn(ev, ...) sy_log(SY_LOG_WARN, ev, __VA_ARGS__)
#define sy_error(ev, ...) sy_log(SY_LOG_ERROR, ev, __VA_ARGS__)

/* Cheap invariant check that stays on in release builds. Never use on input. */
#define SY_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            sy_assert_fail(#cond, __FILE__, __LINE__);                                             \
    } while (0)

void sy_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

#endif
