/*
 * fuzz_jsonp.c - differential libFuzzer harness for jsonp_load against jansson's json_loadb
 * (flags 0). For valid UTF-8 input without NUL bytes both must agree: both refuse, or both accept
 * and build equal trees (json_equal). NUL bytes are left out of the comparison because jansson
 * 2.14 swallows a NUL that follows a number ("[1\0]" loads as [1]); jsonp refuses every NUL
 * outside a string escape. Any input must never crash, leak or hit undefined behaviour.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/jsonp.h"
#include "common/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    json_t *mine = NULL;
    jsonp_error_t err;
    int rc = jsonp_load(s, size, &mine, &err);
    if (rc == ST_NOMEM)
        abort();
    if (!sy_utf8_valid(s, size) || memchr(s, '\0', size)) {
        /* jsonp does not check UTF-8, and jansson mishandles NUL: only no-crash applies */
        if (memchr(s, '\0', size) && mine)
            abort(); /* a raw NUL is never valid JSON */
        json_decref(mine);
        return 0;
    }
    json_t *ref = json_loadb(s, size, 0, NULL);
    if ((mine == NULL) != (ref == NULL))
        abort(); /* one accepted what the other refused */
    if (mine && !json_equal(mine, ref))
        abort(); /* different trees */
    if (!mine && (err.text[0] == '\0' || err.line < 1 || err.column < 1 || err.position > size))
        abort(); /* refusals always say what and where */
    json_decref(mine);
    json_decref(ref);
    return 0;
}
