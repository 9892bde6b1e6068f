/*
 * seq.c - helpers for the engine sequence (seq.h): finish-reason strings.
 * Thread-safety: pure functions.
 */
#include "engine/seq.h"

#include <stddef.h>

const char *seq_finish_str(seq_finish_t f)
{
    switch (f) {
    case SEQ_FINISH_STOP:
        return "stop";
    case SEQ_FINISH_LENGTH:
        return "length";
    case SEQ_FINISH_ABORT:
        return "abort";
    case SEQ_FINISH_ERROR:
        return "error";
    case SEQ_FINISH_NONE:
        break;
    }
    return NULL;
}
