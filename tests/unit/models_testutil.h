/*
 * models_testutil.h - where unit tests find the shared model files, and what they do when one is
 * missing: $SY_MODELS_DIR, default $SY_SOURCE_DIR/../shared/models (ctest sets SY_SOURCE_DIR).
 * A missing file fails the test when $CI is set and skips it (with a message) otherwise.
 * Include after <cmocka.h>. Thread-safety: test code, single thread.
 */
#ifndef SY_MODELS_TESTUTIL_H
#define SY_MODELS_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>

static inline void models_testutil_path(char *out, size_t cap, const char *rel)
{
    const char *dir = getenv("SY_MODELS_DIR");
    if (dir && *dir) {
        snprintf(out, cap, "%s/%s", dir, rel);
        return;
    }
    const char *src = getenv("SY_SOURCE_DIR");
    snprintf(out, cap, "%s/../shared/models/%s", src && *src ? src : ".", rel);
}

#define MODELS_TESTUTIL_MISSING(path)                                                              \
    do {                                                                                           \
        const char *ci_ = getenv("CI");                                                            \
        if (ci_ && *ci_)                                                                           \
            fail_msg("model file %s is missing (set SY_MODELS_DIR)", (path));                      \
        print_message("[ SKIPPED  ] model file %s is missing (set SY_MODELS_DIR)\n", (path));      \
        skip();                                                                                    \
    } while (0)

#endif
