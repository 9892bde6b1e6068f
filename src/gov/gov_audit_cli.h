/*
 * gov_audit_cli.h - the `switchyard audit` subcommand: `audit verify FILE...` recomputes the hash
 * chain of audit logs written by gov_audit, and `audit bench` measures the writer (records/s and
 * gaud_append latency) through the real API, then verifies what it wrote.
 * Does not: run the gateway or write audit records for real requests.
 * Thread-safety: process entry point; main thread only (the bench starts its own threads).
 */
#ifndef SY_GOV_AUDIT_CLI_H
#define SY_GOV_AUDIT_CLI_H

/* argv[0] is "audit", argv[1] the action ("verify" or "bench"). Returns the exit code:
 * verify: 0 intact, 1 a bad record / unreadable file / truncated tail (0 for the tail with
 * --allow-truncated-tail), 2 usage. bench: 0 ok, 1 failure (including a failed verification),
 * 2 usage. */
int audit_main(int argc, char **argv);

#endif
