/*
 * fuzz_gw_pd.c - libFuzzer harness for the P/D body rewrites (gw_pd.h). The first byte picks the
 * function: 0 the prefill answer's kv_transfer_params (gwpd_response_params), 1 the prefill body
 * (gwpd_prefill_body), 2 the decode body (gwpd_decode_body) of the rest, 3 the threshold header.
 * Invariants: accepted parameters are a JSON object; a prefill body is a JSON object with stream
 * false, max_tokens 1 and the request's kv_transfer_params; the decode body of any JSON object is
 * a JSON object whose kv_transfer_params is the one spliced in. Never a crash, a leak or
 * undefined behaviour.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/jsonp.h"
#include "common/status.h"
#include "gateway/gw_pd.h"

static json_t *load_object(const char *s, size_t n)
{
    json_t *j = NULL;
    if (!sy_utf8_valid(s, n) || jsonp_load(s, n, &j, NULL) != ST_OK)
        return NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    sy_buf_t b = SY_BUF_INIT;
    json_t *in = NULL, *out = NULL;
    switch (data[0] % 4) {
    case 0:
        if (gwpd_response_params(s, n, &b) == ST_OK) {
            out = load_object(b.data, b.len);
            if (!out || json_object_size(out) == 0)
                abort();
        }
        break;
    case 1:
        in = load_object(s, n);
        if (gwpd_prefill_body(s, n, &b) == ST_OK) {
            out = load_object(b.data, b.len);
            if (!in || !out || !json_is_false(json_object_get(out, "stream")) ||
                json_integer_value(json_object_get(out, "max_tokens")) != 1 ||
                !json_is_true(json_object_get(json_object_get(out, "kv_transfer_params"),
                                              "do_remote_decode")))
                abort();
        } else if (in) {
            abort(); /* every JSON object has a prefill body */
        }
        break;
    case 2: {
        static const char params[] = "{\"do_remote_prefill\":true,\"remote_port\":1}";
        in = load_object(s, n);
        int rc = gwpd_decode_body(s, n, params, sizeof params - 1, &b);
        if (in) {
            if (rc != ST_OK)
                abort();
            out = load_object(b.data, b.len);
            json_t *kv = out ? json_object_get(out, "kv_transfer_params") : NULL;
            if (!kv || json_integer_value(json_object_get(kv, "remote_port")) != 1)
                abort();
        }
        break;
    }
    default: {
        uint64_t v;
        (void)gwpd_threshold_parse(s, n, &v);
        break;
    }
    }
    json_decref(in);
    json_decref(out);
    sy_buf_deinit(&b);
    return 0;
}
