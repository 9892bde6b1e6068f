/*
 * fuzz_gov_audit_verify.c - libFuzzer harness for the audit log verifier (gov_audit.h). The first
 * input byte picks options (bit 0 allow_truncated_tail, bit 1 trust_first, bit 2 split the rest
 * into two "files" at a position taken from the second byte); the rest is log text. Checked: no
 * crash, leak or undefined behaviour; feeding the same bytes in one chunk and one byte at a time
 * gives the same report; a report is self-consistent (an OK report counts exactly its seq range,
 * a bad one names a file and a line and one of the published reasons).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "gov/gov_audit.h"

static void run(const uint8_t *d, size_t n, size_t split, bool bytewise,
                const gaud_verify_opts_t *o, gaud_verify_report_t *rep)
{
    gaud_verifier_t *v = gaud_verifier_create(o);
    if (!v)
        abort();
    const char *names[2] = {"a.log", "b.log"};
    size_t parts[2][2] = {{0, split}, {split, n}};
    for (int f = 0; f < 2; f++) {
        size_t from = parts[f][0], to = parts[f][1];
        if (bytewise) {
            for (size_t i = from; i < to; i++)
                if (gaud_verifier_feed(v, names[f], (const char *)d + i, 1) == ST_NOMEM)
                    abort();
        } else if (gaud_verifier_feed(v, names[f], (const char *)d + from, to - from) == ST_NOMEM) {
            abort();
        }
        gaud_verifier_end_file(v);
    }
    gaud_verifier_finish(v, rep);
    gaud_verifier_destroy(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    gaud_verify_opts_t o;
    memset(&o, 0, sizeof o);
    o.allow_truncated_tail = data[0] & 1;
    o.trust_first = (data[0] & 2) != 0;
    const uint8_t *d = data + 2;
    size_t n = size - 2;
    size_t split = (data[0] & 4) && n ? (size_t)data[1] % (n + 1) : n;
    gaud_verify_report_t a, b;
    run(d, n, split, false, &o, &a);
    run(d, n, split, true, &o, &b);
    if (a.status != b.status || a.reason != b.reason || a.line != b.line ||
        a.records != b.records || a.seq != b.seq || strcmp(a.last_hash, b.last_hash) != 0)
        abort(); /* chunking changed the verdict */
    if (a.status == ST_OK) {
        if (a.records && a.last_seq - a.first_seq + 1 != a.records)
            abort();
        if (a.truncated_tail && !o.allow_truncated_tail)
            abort();
    } else {
        if (a.status != ST_PROTO || !a.file || a.line == 0)
            abort();
        if (a.reason != GAUD_R_NOT_JSON && a.reason != GAUD_R_NOT_RECORD &&
            a.reason != GAUD_R_HASH && a.reason != GAUD_R_GAP && a.reason != GAUD_R_ORDER &&
            a.reason != GAUD_R_TRUNCATED)
            abort();
    }
    if (!gaud_hash_valid(a.last_hash))
        abort();
    char msg[1024];
    gaud_verify_report_format(&a, msg, sizeof msg);
    return 0;
}
