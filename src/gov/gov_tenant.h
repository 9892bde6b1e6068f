/*
 * gov_tenant.h - tenants and API keys of the gateway (--api-keys FILE): loads the tenant file,
 * authenticates "Authorization: Bearer <key>" to a tenant by the SHA-256 of the key, checks a
 * tenant's model allow-list, swaps in a new file on reload (SIGHUP) while carrying rate-limit state
 * over by tenant name, writes the OpenAI-style 401/404 bodies, and backs `switchyard apikey`.
 *
 *   tenants:
 *     - name: team-a                  # [A-Za-z0-9._-]{1,64}, unique
 *       key_sha256: 9f86d0...         # 64 hex digits, or a list of them; unique over the file
 *       models: [llama-3-8b]          # optional; absent = every model
 *       priority: 10                  # optional integer, default 0 (read by the scheduler)
 *       requests_per_second: 5        # optional number (0.001 .. 1e6)
 *       burst: 10                     # optional, with requests_per_second; default
 *                                     #   max(1, ceil(requests_per_second))
 *       tokens_per_minute: 100000     # optional integer (1 .. 1e8)
 *       max_concurrent: 4             # optional integer (1 .. 1e6)
 *       audit_prompt: redacted        # optional off|redacted|full: the audit log's copy of the
 *       audit_response: off           #   prompt / response (absent = the gateway's default)
 *
 * Rate limiting itself is gov_limit.h; each tenant owns a refcounted glim_state_t.
 * Does not: read HTTP requests, parse JSON bodies, install signal handlers, log (the gateway does).
 * Thread-safety: none. The gateway's data plane is one event-loop thread; authentication,
 * admission and reload all run on it, so no locks are needed. A gten_t must not be shared by
 * threads (it also owns a reusable SHA-256 context).
 */
#ifndef SY_GOV_TENANT_H
#define SY_GOV_TENANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "gov/gov_limit.h"

#define GTEN_NAME_MAX 64          /* tenant name bytes */
#define GTEN_MODEL_MAX 256        /* model name bytes */
#define GTEN_MAX_TENANTS 65536    /* tenants per file */
#define GTEN_MAX_KEYS 262144      /* key hashes per file, all tenants together */
#define GTEN_MAX_MODELS 1024      /* models per tenant */
#define GTEN_FILE_MAX (16u << 20) /* tenant file bytes */
#define GTEN_PRIORITY_MAX 1000000 /* |priority| */

#define GTEN_KEY_PREFIX "sy-"
#define GTEN_KEY_LEN 46 /* "sy-" + base64url(32 random bytes) without padding */

/* Extra header for 401 responses (RFC 9110 asks for it; OpenAI does not send it). */
#define GTEN_401_HEADERS "www-authenticate: Bearer\r\n"

/* The tenant registry: the current tenant file plus every tenant's limiter state (opaque). */
typedef struct gten gten_t;
/* One tenant of the current file (opaque; owned by the gten_t). */
typedef struct gten_tenant gten_tenant_t;

/* Loads a tenant file from text[0..len) (borrowed); name labels errors ("tenants.yaml"); buckets
 * start full at now_ns. ST_OK with *out owned (free with gten_destroy), ST_INVAL with err set to
 * "NAME:LINE: reason" (bad YAML, unknown key, wrong type, bad value, bad hex, duplicate name or key
 * hash, over a GTEN_MAX_* limit), or ST_NOMEM. *out is NULL on failure. */
int gten_load_text(const char *text, size_t len, const char *name, int64_t now_ns, gten_t **out,
                   char *err, size_t errlen);
/* Same, reading path (errors "PATH:LINE: reason"; unreadable file: -errno with "PATH: reason"). */
int gten_load_file(const char *path, int64_t now_ns, gten_t **out, char *err, size_t errlen);

/* Replaces g's tenants with those of a new file (the SIGHUP path), atomically: on any error g is
 * unchanged and err says why (same codes as gten_load_*). On success a tenant whose name is in both
 * files keeps its limiter state (bucket levels, in-flight count, counters) under the new limits
 * (glim_state_set_limits); other tenants start fresh; removed tenants' states live on until their
 * last lease is released. Every gten_tenant_t pointer obtained before is invalid afterwards;
 * leases stay valid. */
int gten_reload_text(gten_t *g, const char *text, size_t len, const char *name, int64_t now_ns,
                     char *err, size_t errlen);
int gten_reload_file(gten_t *g, const char *path, int64_t now_ns, char *err, size_t errlen);

/* Frees g and drops its references on the limiter states (states held by leases stay alive until
 * released). NULL ok. */
void gten_destroy(gten_t *g);

/* Tenants in the current file. */
size_t gten_count(const gten_t *g);
/* The i-th tenant in file order (borrowed, valid until the next reload/destroy), NULL if out of
 * range. */
const gten_tenant_t *gten_at(const gten_t *g, size_t i);
/* The tenant named name[0..len), or NULL (borrowed, valid until the next reload/destroy). */
const gten_tenant_t *gten_find(const gten_t *g, const char *name, size_t len);

/* ---- authentication ---- */

typedef enum gten_auth {
    GTEN_AUTH_OK = 0,
    GTEN_AUTH_MISSING = 1,   /* no Authorization header, or "Bearer" with an empty key */
    GTEN_AUTH_SCHEME = 2,    /* a scheme other than Bearer (e.g. Basic), or no scheme */
    GTEN_AUTH_WRONG_KEY = 3, /* a Bearer key whose SHA-256 is not in the file */
} gten_auth_t;

/* Authenticates the value of the Authorization header, hdr[0..len) (borrowed; hdr NULL = the
 * header is absent). The scheme is case-insensitive, followed by one or more spaces/tabs; the key
 * is the rest without trailing whitespace. The key is hashed with SHA-256 and the digest looked up
 * in a hash table; the final comparison uses CRYPTO_memcmp. This is not a timing oracle: which
 * slots are probed depends only on SHA-256(presented key), which tells an attacker nothing about
 * a stored key (finding a key with a given digest is a preimage attack), and the compare itself is
 * constant time. On GTEN_AUTH_OK *out is the tenant (borrowed, valid until the next
 * reload/destroy: keep a lease, not the pointer, across event-loop turns); else *out is NULL.
 * A failure inside OpenSSL fails closed (GTEN_AUTH_WRONG_KEY). Costs one SHA-256 of the key
 * (~90 ns for a 46-byte key on an idle core) plus ~80 ns. */
gten_auth_t gten_authenticate(gten_t *g, const char *hdr, size_t len, const gten_tenant_t **out);

/* Appends OpenAI's 401 body for reason (not GTEN_AUTH_OK):
 *   missing: {"error":{"message":"You didn't provide an API key. ...","type":
 *             "invalid_request_error","param":null,"code":null}}
 *   scheme:  same shape, a message saying the header must be "Bearer YOUR_KEY", code null
 *   wrong:   {"error":{"message":"Incorrect API key provided: sy-AbCdE***...wxyz. ...","type":
 *             "invalid_request_error","param":null,"code":"invalid_api_key"}}
 * hdr[0..len) is the header as given to gten_authenticate (borrowed; may be NULL); the wrong-key
 * message shows the key masked as OpenAI does (first 8 and last 4 characters; a key of 12
 * characters or fewer is masked entirely). ST_OK, ST_NOMEM, or ST_INVAL for GTEN_AUTH_OK. */
int gten_error_401(gten_auth_t reason, const char *hdr, size_t len, sy_buf_t *out);

/* ---- tenants ---- */

/* Borrowed; lives as long as the tenant. */
const char *gten_tenant_name(const gten_tenant_t *t);
int64_t gten_tenant_priority(const gten_tenant_t *t);
/* The tenant's audit modes (`audit_prompt`, `audit_response`): GTEN_AUDIT_OFF, _REDACTED or _FULL,
 * or -1 when the file does not set it (the gateway's default applies). */
#define GTEN_AUDIT_OFF 0
#define GTEN_AUDIT_REDACTED 1
#define GTEN_AUDIT_FULL 2
int gten_tenant_audit_prompt(const gten_tenant_t *t);
int gten_tenant_audit_response(const gten_tenant_t *t);
/* The limits the file gives (0 fields = off). */
const glim_limits_t *gten_tenant_limits(const gten_tenant_t *t);
/* The tenant's limiter state (borrowed; take a lease with glim_admit to keep it). */
glim_state_t *gten_tenant_limiter(const gten_tenant_t *t);
/* 1-based line of the tenant's entry in its file. */
size_t gten_tenant_line(const gten_tenant_t *t);

/* True when the tenant may use model[0..len): no `models` list, or an exact (byte) match. */
bool gten_tenant_allows_model(const gten_tenant_t *t, const char *model, size_t len);
/* The allow-list (for filtering GET /v1/models): count 0 = every model; names borrowed. */
size_t gten_tenant_model_count(const gten_tenant_t *t);
const char *gten_tenant_model(const gten_tenant_t *t, size_t i);

/* Appends OpenAI's body for a model the key may not use. OpenAI answers 404 with the same body as
 * for a model that does not exist (so a key cannot probe which models exist), and so do we:
 *   {"error":{"message":"The model `M` does not exist or you do not have access to it.",
 *   "type":"invalid_request_error","param":null,"code":"model_not_found"}}
 * ST_OK or ST_NOMEM. */
#define GTEN_MODEL_DENIED_STATUS 404
int gten_error_model(const char *model, size_t len, sy_buf_t *out);

/* Admission shortcut: glim_admit on the tenant's limiter (see gov_limit.h). */
int gten_admit(const gten_tenant_t *t, int64_t now_ns, int64_t prompt_tokens, int64_t max_tokens,
               glim_lease_t *lease, glim_result_t *res);

/* ---- keys (`switchyard apikey`) ---- */

/* Writes a new key, "sy-" + base64url(32 bytes from RAND_bytes), NUL-terminated, into
 * out[cap >= GTEN_KEY_LEN + 1]. ST_OK, ST_INVAL (cap too small) or ST_STATE (the CSPRNG failed). */
int gten_key_generate(char *out, size_t cap);
/* Writes the lowercase hex SHA-256 of key[0..len) (64 digits + NUL) into hex[65]. ST_OK or
 * ST_NOMEM. */
int gten_key_sha256_hex(const char *key, size_t len, char hex[65]);
/* True when s is a valid tenant name ([A-Za-z0-9._-], 1..GTEN_NAME_MAX bytes). */
bool gten_name_valid(const char *s, size_t len);

/* `switchyard apikey new [--name N]` prints a new key (once) and the YAML snippet with its
 * key_sha256; `switchyard apikey hash [KEY]` prints the hex SHA-256 of KEY (or of the first line
 * of stdin when KEY is absent or "-"). Returns the process exit code (0 ok, 1 failure, 2 usage). */
int gten_apikey_main(int argc, char **argv);

#endif
