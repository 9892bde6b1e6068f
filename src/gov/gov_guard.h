/*
 * gov_guard.h - guardrails before (and during) inference: per tenant/model limits on prompt tokens
 * and max_tokens, deny patterns (PCRE2) and PII detectors (gov_pii.h) on prompts with an action
 * each (block, mask, redact), optional checks on streamed output, and the settings of an external
 * guard hook. Loaded from the YAML file of `--guardrails FILE`; the format, with every key, is in
 * deploy/guardrails/example.yaml and docs/governance-guardrails.md.
 *
 * Precedence (merge, most specific last): defaults, then a (model: M, tenant: *) rule, then a
 * (tenant: T, model: *) rule, then the exact (T, M) rule. Each layer overrides the scalars it
 * sets, overrides or adds PII detectors one by one and deny patterns by name (`action: off`
 * removes an inherited one); `inherit: false` on a rule starts from an empty rule set instead.
 * All combinations are merged once at load, so ggd_policy() is a lookup without allocation.
 *
 * Matching: patterns are compiled with PCRE2_UTF | PCRE2_MATCH_INVALID_UTF (invalid UTF-8 in the
 * text never matches a character and never fails the call), JIT-compiled when the library
 * supports it, and run under the file's match/depth/heap limits; hitting a limit is the configured
 * `on_limit` outcome (default block: fail closed).
 *
 * Does not: count tokens (the caller passes counts), make the external HTTP call, build HTTP
 * responses, or log (the caller writes the audit record from the verdict).
 * Thread-safety: a loaded ggd_t and its policies are immutable and may be used from any number of
 * threads at once until ggd_free. Each thread keeps one small PCRE2 match block (created on its
 * first match, freed at thread exit; with the interpreter, i.e. no JIT, it also keeps the
 * backtracking frames of its largest match so far, at most heap_limit_kb). ggd_verdict_t and
 * ggd_out_scan_t belong to one thread at a time.
 */
#ifndef SY_GOV_GUARD_H
#define SY_GOV_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGD_NAME_MAX 48        /* rule / detector names, including the NUL */
#define GGD_MASK_MAX 64        /* mask texts, including the NUL */
#define GGD_MSG_MAX 160        /* verdict messages, including the NUL */
#define GGD_MAX_HITS 16        /* decisions recorded in one verdict */
#define GGD_MAX_RULES 256      /* deny patterns in one rule set */
#define GGD_MAX_POLICIES 65536 /* merged (tenant, model) policies in one file */
#define GGD_MAX_PATTERNS 16384 /* deny entries in one file, all rule sets together */
#define GGD_MAX_RULESETS 16384 /* entries of `rules:` */
#define GGD_FILE_MAX (1u << 20)

#define GGD_DEFAULT_MATCH_LIMIT 1000000u
#define GGD_DEFAULT_DEPTH_LIMIT 10000u
#define GGD_DEFAULT_HEAP_LIMIT_KB 8192u
#define GGD_DEFAULT_WINDOW 256u /* output scanner tail, bytes */
#define GGD_MIN_WINDOW 16u
#define GGD_MAX_WINDOW 8192u

typedef struct ggd ggd_t;               /* a loaded guardrails file (opaque) */
typedef struct ggd_policy ggd_policy_t; /* the merged rules of one (tenant, model) (opaque) */
typedef struct ggd_out_scan ggd_out_scan_t;

typedef enum ggd_action {
    GGD_ACT_OFF = 0,    /* detector / pattern disabled */
    GGD_ACT_REDACT = 1, /* forward unchanged; the audit copy has the match replaced */
    GGD_ACT_MASK = 2,   /* replace the match in the forwarded prompt (and the audit copy) */
    GGD_ACT_BLOCK = 3,  /* refuse the request (400 policy error) */
} ggd_action_t;

/* "off", "redact", "mask", "block". */
const char *ggd_action_name(ggd_action_t a);

typedef enum ggd_decision {
    GGD_ALLOW = 0,
    GGD_BLOCK = 1,
} ggd_decision_t;

/* One line of the audit record: a rule or detector that fired. */
typedef struct ggd_hit {
    char name[GGD_NAME_MAX]; /* deny pattern name, or "email" / "phone" / "card" / "iban" */
    ggd_action_t action;
    uint32_t count; /* matches (0 when only the limit was hit) */
    bool limit;     /* the pattern hit a PCRE2 limit (outcome per on_limit) */
    bool pii;       /* a PII detector (else a deny pattern) */
} ggd_hit_t;

/* The result of one check; caller-owned storage, filled by the ggd_check_* calls, released with
 * ggd_verdict_deinit. */
typedef struct ggd_verdict {
    ggd_decision_t decision;
    char rule[GGD_NAME_MAX];   /* what blocked ("max_prompt_tokens", a pattern name, "card", ...);
                                  "" when allowed */
    char message[GGD_MSG_MAX]; /* text for the 400 body; "" when allowed */
    char *masked;              /* owned: the prompt to forward when anything was masked (NUL-
                                  terminated), else NULL (forward the original). NULL on block. */
    size_t masked_len;
    char *audit; /* owned: the copy for the audit log with every mask/redact span
                    (and blocked PII) replaced, else NULL (log the original) */
    size_t audit_len;
    ggd_hit_t hits[GGD_MAX_HITS];
    size_t n_hits;
    bool hits_truncated; /* more than GGD_MAX_HITS rules fired */
} ggd_verdict_t;

/* The external guard hook (`external:` in the file); url[0] == '\0' when the section is absent. */
typedef struct ggd_external {
    char url[512];       /* http:// or https:// URL */
    uint32_t timeout_ms; /* 1..60000, default 200 */
    bool deny_on_error;  /* on_error: deny (true) or allow (false, the default) */
} ggd_external_t;

/* File-wide settings (`settings:`). */
typedef struct ggd_settings {
    uint32_t match_limit;   /* pcre2_set_match_limit, default GGD_DEFAULT_MATCH_LIMIT */
    uint32_t depth_limit;   /* pcre2_set_depth_limit (interpreter only), default 10000 */
    uint32_t heap_limit_kb; /* pcre2_set_heap_limit (interpreter only), default 8192 */
    bool block_on_limit;    /* on_limit: block (true, default) or allow */
    bool jit;               /* try JIT (default true); false: interpreter only */
} ggd_settings_t;

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                     */

/* Loads and compiles the guardrails file at path. Returns owned (free with ggd_free), or NULL with
 * err filled: "PATH: reason" (unreadable, too large) or "PATH:LINE: reason" (YAML syntax, unknown
 * key, wrong type, unknown action, bad regex with its PCRE2 message and offset, duplicate rule,
 * bad URL, ...). On reload failure the caller keeps its old ggd_t. */
ggd_t *ggd_load(const char *path, char *err, size_t errlen);
/* Same from text[0..len) (borrowed); name labels errors. */
ggd_t *ggd_load_mem(const char *text, size_t len, const char *name, char *err, size_t errlen);
/* Frees g and every policy of it. NULL ok. No verdict or scanner may be in use. */
void ggd_free(ggd_t *g);

/* The merged policy for (tenant, model) (borrowed, valid until ggd_free; never NULL for a loaded
 * g: without any matching rule it is the defaults). NULL tenant or model means "*". */
const ggd_policy_t *ggd_policy(const ggd_t *g, const char *tenant, const char *model);

/* Borrowed views, valid until ggd_free. */
const ggd_settings_t *ggd_settings(const ggd_t *g);
const ggd_external_t *ggd_external(const ggd_t *g);
/* Number of merged policies (diagnostics). */
size_t ggd_policy_count(const ggd_t *g);
/* True when the JIT compiler was used for every pattern. */
bool ggd_jit_active(const ggd_t *g);

/* The limits of p: 0 = unlimited. Either out pointer may be NULL. */
void ggd_policy_limits(const ggd_policy_t *p, uint64_t *max_prompt_tokens, uint64_t *max_tokens);
/* The action of PII detector kind (gpii_kind_t) on prompts under p. */
ggd_action_t ggd_policy_pii_action(const ggd_policy_t *p, int kind);
/* True when p has any output check (ggd_out_scan_create is worth calling). */
bool ggd_policy_has_output(const ggd_policy_t *p);

/* ------------------------------------------------------------------------------------------ */
/* checks                                                                                      */

/* Checks the request limits: prompt_tokens against max_prompt_tokens and max_tokens (the request's
 * value; -1 = the request gave none) against max_tokens. ST_OK with *out filled (decision, rule
 * "max_prompt_tokens" or "max_tokens", message); no allocation. ST_INVAL on NULL p/out. */
int ggd_check_limits(const ggd_policy_t *p, int64_t prompt_tokens, int64_t max_tokens,
                     ggd_verdict_t *out);

/* Checks one prompt text[0..len) (borrowed; UTF-8 expected, any bytes accepted; need not be
 * NUL-terminated). Order: deny patterns with action block (first match blocks), then PII
 * detectors and mask/redact patterns (a block-action detector match blocks), then the masked and
 * audit copies are built. Overlapping spans are merged into one replacement whose mask text is
 * that of the strongest action (then the earliest span). Allocates only out->masked / out->audit,
 * and only when something was replaced. *out is overwritten (call ggd_verdict_deinit first when
 * reusing it). ST_OK with *out filled, ST_NOMEM (out->decision is BLOCK, rule "internal"; answer
 * 503), or ST_INVAL on NULL arguments. Any thread. */
int ggd_check_prompt(const ggd_policy_t *p, const char *text, size_t len, ggd_verdict_t *out);

/* Frees out->masked and out->audit and zeroes *out. NULL ok. */
void ggd_verdict_deinit(ggd_verdict_t *out);

/* ------------------------------------------------------------------------------------------ */
/* streamed output                                                                             */

/* Creates an incremental scanner of the model's output under p's `output:` checks (borrowed p,
 * which must outlive the scanner). Returns owned (ggd_out_scan_destroy) or NULL on ENOMEM. A
 * policy without output checks gives a scanner that always allows. All memory is allocated here:
 * a buffer of window + GGD_OUT_SLICE bytes. */
ggd_out_scan_t *ggd_out_scan_create(const ggd_policy_t *p);
#define GGD_OUT_SLICE 4096u /* new bytes examined per step (longer chunks are walked in steps) */

/* Feeds the next chunk[0..len) of output text (borrowed; chunks may split UTF-8 sequences and
 * matches anywhere). The scanner keeps the last `window` bytes (output.window_bytes, default 256)
 * and examines them again together with the new bytes, so any match of at most `window` bytes is
 * caught however the text is split; longer matches are caught only within one step. A match that
 * reaches the end of the data seen so far is held back until more text (or ggd_out_scan_finish)
 * shows where it ends, so partial numbers do not block early. Returns GGD_ALLOW or GGD_BLOCK
 * (sticky: once blocked, every later call returns GGD_BLOCK); no allocation. */
ggd_decision_t ggd_out_scan_feed(ggd_out_scan_t *s, const char *chunk, size_t len);
/* End of stream: examines what was held back. GGD_ALLOW or GGD_BLOCK (sticky). */
ggd_decision_t ggd_out_scan_finish(ggd_out_scan_t *s);
/* Why the scanner blocked: the rule or detector name and a message (borrowed from s; "" while
 * allowed). Either pointer may be NULL. */
void ggd_out_scan_reason(const ggd_out_scan_t *s, const char **rule, const char **message);
/* NULL ok. */
void ggd_out_scan_destroy(ggd_out_scan_t *s);

/* ------------------------------------------------------------------------------------------ */
/* benchmark                                                                                   */

/* Micro-benchmark of ggd_check_prompt on a realistic 4 KB prompt under 5 deny patterns and all
 * four PII detectors (mask), printing p50/p99/mean microseconds to stdout. argv: [--iters N]
 * [--file GUARDRAILS.yaml --tenant T --model M (bench that policy instead)]. Returns 0, or 2 on bad
 * arguments / load failure. Meant to be wired as a subcommand. */
int ggd_bench_main(int argc, char **argv);

#endif
