/*
 * fuzz_gov_guard.c - libFuzzer harness for the guardrails module (gov_guard.h). Every input is
 * used three ways: as prompt text under a fixed policy with every detector and action (the
 * verdict must be consistent: a block never carries a masked text, copies are NUL-terminated,
 * block has a rule and message), as streamed output fed to the output scanner in chunks whose
 * sizes come from the input, and as a guardrails YAML file for the loader (which must accept or
 * refuse with a "NAME:LINE: reason" message, and whose policies must then check the input
 * again). Any input must never crash, leak or hit undefined behaviour.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "gov/gov_guard.h"

static const char policy_yaml[] =
    "settings: {match_limit: 20000}\n"
    "defaults:\n"
    "  max_prompt_tokens: 100\n"
    "  pii: {email: mask, phone: redact, card: mask, iban: {action: mask, mask: '<iban>'}}\n"
    "  deny:\n"
    "    - {name: jb, pattern: '(?i)ignore\\s+previous\\s+instructions'}\n"
    "    - {name: key, pattern: '\\bAKIA[0-9A-Z]{4,}', action: mask}\n"
    "    - {name: word, pattern: '\\bsecret\\w*', action: redact}\n"
    "    - {name: evil, pattern: '(a+)+$'}\n"
    "  output:\n"
    "    window_bytes: 32\n"
    "    pii: {card: block, email: block}\n"
    "    deny: [{name: o, pattern: 'forbidden'}]\n"
    "rules:\n"
    "  - {tenant: t, pii: {card: block}}\n";

static ggd_t *fixed;

static void check_text(const ggd_policy_t *p, const char *s, size_t n)
{
    ggd_verdict_t v;
    int rc = ggd_check_prompt(p, s, n, &v);
    if (rc == ST_NOMEM)
        abort();
    if (rc != ST_OK)
        abort();
    if (v.decision == GGD_BLOCK && (v.masked || !v.rule[0] || !v.message[0]))
        abort();
    if (v.decision == GGD_ALLOW && v.rule[0])
        abort();
    if (v.masked && (v.masked[v.masked_len] != '\0'))
        abort();
    if (v.audit && (v.audit[v.audit_len] != '\0'))
        abort();
    if (v.n_hits > GGD_MAX_HITS)
        abort();
    ggd_verdict_deinit(&v);
}

static void scan_output(const ggd_policy_t *p, const char *s, size_t n)
{
    ggd_out_scan_t *o = ggd_out_scan_create(p);
    if (!o)
        abort();
    size_t i = 0, step = n ? (unsigned char)s[0] % 13 + 1 : 1;
    ggd_decision_t d = GGD_ALLOW;
    while (i < n) {
        size_t k = n - i < step ? n - i : step;
        d = ggd_out_scan_feed(o, s + i, k);
        i += k;
    }
    ggd_decision_t f = ggd_out_scan_finish(o);
    if (d == GGD_BLOCK && f != GGD_BLOCK)
        abort(); /* sticky */
    ggd_out_scan_destroy(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char err[512];
    if (!fixed) {
        fixed = ggd_load_mem(policy_yaml, sizeof policy_yaml - 1, "fixed", err, sizeof err);
        if (!fixed)
            abort();
    }
    check_text(ggd_policy(fixed, NULL, NULL), s, size);
    check_text(ggd_policy(fixed, "t", "m"), s, size);
    scan_output(ggd_policy(fixed, NULL, NULL), s, size);

    err[0] = '\0';
    ggd_t *g = ggd_load_mem(s, size, "f.yaml", err, sizeof err);
    if (!g) {
        if (strncmp(err, "f.yaml:", 7) != 0)
            abort(); /* refusals name the file (and the line) */
        return 0;
    }
    const ggd_policy_t *p = ggd_policy(g, "t", "m");
    if (!p)
        abort();
    check_text(p, s, size);
    scan_output(p, s, size);
    ggd_free(g);
    return 0;
}
