/*
 * sb_sse.h - the bench's stream decoder: an incremental Server-Sent-Events parser and a decoder
 * for one OpenAI streaming chunk.
 *
 * The parser follows the WHATWG event-stream rules the bench needs: lines end in "\n", "\r\n" or
 * "\r"; "data:" lines (one optional space after the colon) are joined with "\n"; a blank line
 * dispatches the event; ":" comments and other fields (event, id, retry) are ignored; a line
 * without a colon is a field with an empty value (ignored unless it is "data"). Bytes may be
 * split anywhere, also between '\r' and '\n'. One event's data is bounded (ST_LIMIT).
 * The chunk decoder reads completions chunks (choices[0].text) and chat chunks
 * (choices[0].delta.content, plus delta.reasoning_content), finish_reason, the usage object
 * (prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens) and in-band
 * {"error": {...}} events.
 * Does not: reconnect, keep event ids, or decode logprobs / tool calls.
 * Thread-safety: a parser belongs to one stream on one thread; sb_chunk_decode is reentrant.
 */
#ifndef SY_SB_SSE_H
#define SY_SB_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define SB_SSE_DEFAULT_MAX_EVENT (4u << 20)

typedef struct sb_sse {
    sy_buf_t _line;  /* current line without its terminator */
    sy_buf_t _data;  /* data of the event being assembled */
    bool _have_data; /* the current event has at least one data line */
    bool _cr;        /* the previous byte ended a line with '\r' (skip a following '\n') */
    size_t _max;     /* bound on _line and _data */
    int _err;        /* sticky error (ST_LIMIT / ST_NOMEM) */
    uint64_t n_events;
} sb_sse_t;

/* Caller-owned storage; max_event_bytes 0 = SB_SSE_DEFAULT_MAX_EVENT. */
void sb_sse_init(sb_sse_t *p, size_t max_event_bytes);
void sb_sse_deinit(sb_sse_t *p);

/* on_event gets the data of one dispatched event (borrowed for the call; NUL-terminated).
 * A nonzero return stops sb_sse_feed, which returns that value. */
typedef int (*sb_sse_on_event_fn)(const char *data, size_t len, void *udata);

/* Feeds buf[0..len) (borrowed). Calls on_event for each complete event that carries data.
 * Returns ST_OK, ST_LIMIT (a line or event exceeds the bound; sticky), ST_NOMEM (sticky), or the
 * callback's nonzero return. */
int sb_sse_feed(sb_sse_t *p, const char *buf, size_t len, sb_sse_on_event_fn on_event, void *udata);
/* True when part of an event (a line or data lines without the blank line) is buffered. */
bool sb_sse_pending(const sb_sse_t *p);

/* One decoded chunk. */
typedef struct sb_chunk {
    bool done;           /* the data was "[DONE]" */
    bool is_error;       /* {"error": ...} event */
    char error_msg[128]; /* its message (truncated) */
    size_t n_choices;
    size_t content_len;        /* bytes of text / delta.content (+ reasoning_content) */
    bool finished;             /* a non-null finish_reason */
    bool has_usage;            /* a non-null usage object */
    int64_t prompt_tokens;     /* -1 when absent */
    int64_t completion_tokens; /* -1 when absent */
    int64_t cached_tokens;     /* -1 when absent */
} sb_chunk_t;

/* Decodes data[0..len) (borrowed). When content is not NULL the content text is appended to
 * it. ST_OK, ST_PROTO (not UTF-8, not JSON, not an object, or a field of the wrong type), or
 * ST_NOMEM. */
int sb_chunk_decode(const char *data, size_t len, sb_chunk_t *out, sy_buf_t *content);

#endif
