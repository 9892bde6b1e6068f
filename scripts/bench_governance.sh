#!/usr/bin/env bash
# bench_governance.sh - what governance costs per request (issue 7), measured side by side in one
# run: the same gateway binary in front of the same sim engine (`--sim-speed 0`: no modelled
# time), once plain (A) and once (B) with API-key auth (--api-keys), a per-tenant rate limit that
# never refuses (requests_per_second 1e6, tokens_per_minute 1e8, max_concurrent 1000), the audit
# log with grouped fsync (--audit-log, --audit-fsync group, prompt and response text redacted),
# five deny patterns and all four PII detectors (mask) on a 4 KB prompt (--guardrails).
# For each repetition, A and B are measured one after the other with `switchyard bench`
# (one connection, closed loop, streaming completions of 1 output token) and
# the gateway's CPU time per request is read from /proc; the report gives, per repetition,
# B minus A of the E2E p50 and p99, and of the CPU time per request, then their medians.
# Also `switchyard audit bench` (audit throughput, grouped fsync).
# Usage: scripts/bench_governance.sh [--reps N] [--requests N] [--build-dir DIR] [--out FILE.json]
# Pinning (when taskset exists and there are >= 2 CPUs): engine and gateways on CPU 0, the bench
# on CPU 1. Talks only to 127.0.0.1. Needs /usr/bin/python3. Thread-safety: n/a.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
REPS=5
REQS=2000
OUTJ=""
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --requests) REQS=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --out) OUTJ=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench_governance: unknown option $1" >&2; exit 2 ;;
    esac
done
SY=${SY_BIN:-$BUILD/switchyard}
PY=/usr/bin/python3
[ -x "$SY" ] || { echo "bench_governance: $SY missing (run make)" >&2; exit 2; }
OUTJ=${OUTJ:-$BUILD/bench-governance.json}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
PIN0=() PIN1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() { # URL
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1/health")" = 200 ] && return 0
        sleep 0.1
    done
    echo "bench_governance: $1 did not become healthy" >&2
    exit 1
}

MODEL=sim/gov-bench
EPORT=$(free_port)
"${PIN0[@]}" "$SY" engine --sim --sim-speed 0 --host 127.0.0.1 --port "$EPORT" \
    --served-model-name "$MODEL" --log-level warn >"$TMP/engine.log" 2>&1 &
PIDS+=($!)
wait_health "http://127.0.0.1:$EPORT"

KEY=$("$SY" apikey new --name bench | sed -n 2p)
cat >"$TMP/tenants.yaml" <<EOF
tenants:
  - name: bench
    key_sha256: $("$SY" apikey hash "$KEY")
    requests_per_second: 1000000
    burst: 1000000
    tokens_per_minute: 100000000
    max_concurrent: 1000
EOF
cat >"$TMP/guard.yaml" <<'EOF'
defaults:
  max_prompt_tokens: 100000
  deny:
    - name: jailbreak
      pattern: 'ignore\s+(all\s+)?(previous|prior)\s+instructions'
      caseless: true
    - name: system-prompt
      pattern: '(?i)reveal\s+(your|the)\s+system\s+prompt'
    - name: aws-key
      pattern: '\bAKIA[0-9A-Z]{16}\b'
      action: mask
    - name: private-key
      pattern: '-----BEGIN [A-Z ]*PRIVATE KEY-----'
    - name: competitor
      pattern: '\b(globex|initech|umbrella)\s+corp(oration)?\b'
      caseless: true
      action: redact
  pii:
    email: mask
    phone: mask
    card: mask
    iban: mask
EOF
# a 4 KB prompt of ordinary support-ticket prose (no PII, so both gateways forward the same text)
$PY - "$TMP/trace.jsonl" "$REQS" <<'PYEOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
base = ("Customer reports that the nightly export job fails after the upgrade to version 4.2. "
        "The job reads about two million rows, writes compressed files to the archive bucket and "
        "sends a summary to the operations channel. Since Tuesday it stops at the third stage "
        "with a timeout, retries twice and gives up. Logs show the database connection pool "
        "is exhausted while the compression step runs. Please explain the likely cause and list "
        "the settings we should check first, in order of importance. ")
text = (base * 12)[:4096]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"timestamp_ms": 0, "prompt": "%05d %s" % (i, text[6:]), "output_len": 1}) + "\n")
PYEOF

start_gw() { # NAME ARGS... -> prints PORT; PID in $TMP/NAME.pid
    local name=$1 port
    shift
    port=$(free_port)
    "${PIN0[@]}" "$SY" gateway --host 127.0.0.1 --port "$port" --endpoint "http://127.0.0.1:$EPORT" \
        --scheduler round-robin --log-level warn "$@" >"$TMP/$name.log" 2>&1 &
    echo $! >"$TMP/$name.pid"
    echo "$port"
}
APORT=$(start_gw plain)
BPORT=$(start_gw gov --api-keys "$TMP/tenants.yaml" --guardrails "$TMP/guard.yaml" \
    --audit-log "$TMP/audit.log" --audit-fsync group --audit-group-ms 10)
PIDS+=("$(cat "$TMP/plain.pid")" "$(cat "$TMP/gov.pid")")
wait_health "http://127.0.0.1:$APORT"
wait_health "http://127.0.0.1:$BPORT"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
run() { # NAME PORT REP [bench args]
    local name=$1 port=$2 rep=$3 pid t0 t1
    shift 3
    pid=$(cat "$TMP/$name.pid")
    t0=$(cpu_ticks "$pid")
    "${PIN1[@]}" "$SY" bench --url "http://127.0.0.1:$port" --model "$MODEL" --api completions \
        --workload trace --trace "$TMP/trace.jsonl" --concurrency 1 --num-requests "$REQS" \
        --warmup-requests 100 --no-progress --out "$TMP/$name-$rep.json" "$@" >/dev/null 2>"$TMP/$name-$rep.err" ||
        { echo "bench_governance: bench failed ($name)" >&2; tail "$TMP/$name-$rep.err" >&2; exit 1; }
    t1=$(cpu_ticks "$pid")
    echo $((t1 - t0)) >"$TMP/$name-$rep.cpu"
}
for rep in $(seq "$REPS"); do
    run plain "$APORT" "$rep"
    run gov "$BPORT" "$rep" --api-key "$KEY"
done
"$SY" audit verify "$TMP/audit.log" >"$TMP/verify.out" || { cat "$TMP/verify.out" >&2; exit 1; }
AUDIT_LINES=$(wc -l <"$TMP/audit.log")
mkdir -p "$TMP/ab"
"$SY" audit bench --records 100000 --fsync group --dir "$TMP/ab" >"$TMP/audit-bench.out" 2>&1 || true

$PY - "$TMP" "$REPS" "$REQS" "$(getconf CLK_TCK)" "$OUTJ" "$AUDIT_LINES" <<'PYEOF'
import json, statistics, sys, os
tmp, reps, reqs, hz, outj, audit_lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
def stage(name, r):
    j = json.load(open(os.path.join(tmp, "%s-%d.json" % (name, r))))
    st = j["stages"][0]
    cpu = int(open(os.path.join(tmp, "%s-%d.cpu" % (name, r))).read()) / hz
    n = st["requests"]["sent"] + 100
    return {"e2e_p50_ms": st["e2e_ms"]["p50"], "e2e_p99_ms": st["e2e_ms"]["p99"],
            "ok": st["requests"]["ok"], "cpu_us_per_req": cpu * 1e6 / n}
rows = []
for r in range(1, reps + 1):
    a, b = stage("plain", r), stage("gov", r)
    rows.append({"rep": r, "plain": a, "gov": b,
                 "d_p50_us": (b["e2e_p50_ms"] - a["e2e_p50_ms"]) * 1000,
                 "d_p99_us": (b["e2e_p99_ms"] - a["e2e_p99_ms"]) * 1000,
                 "d_cpu_us": b["cpu_us_per_req"] - a["cpu_us_per_req"]})
med = lambda k: statistics.median(x[k] for x in rows)
audit = open(os.path.join(tmp, "audit-bench.out")).read()
res = {"reps": rows, "median_added_p50_us": med("d_p50_us"), "median_added_p99_us": med("d_p99_us"),
       "median_added_cpu_us": med("d_cpu_us"), "audit_records": audit_lines, "audit_bench": audit}
json.dump(res, open(outj, "w"), indent=2)
print("| rep | plain E2E p50 ms | governed E2E p50 ms | added p50 us | added p99 us | gateway CPU/request plain us | governed us | added CPU us |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for x in rows:
    print("| %d | %.3f | %.3f | %+.1f | %+.1f | %.1f | %.1f | %+.1f |" % (
        x["rep"], x["plain"]["e2e_p50_ms"], x["gov"]["e2e_p50_ms"], x["d_p50_us"], x["d_p99_us"],
        x["plain"]["cpu_us_per_req"], x["gov"]["cpu_us_per_req"], x["d_cpu_us"]))
print("\nMedian over %d repetitions of %d requests: added E2E p50 %+.1f us, p99 %+.1f us; added gateway CPU per request %+.1f us." % (
    reps, reqs, res["median_added_p50_us"], res["median_added_p99_us"], res["median_added_cpu_us"]))
print("Audit log of the governed gateway: %d records, `switchyard audit verify` ok." % audit_lines)
print("\n`switchyard audit bench --records 100000 --fsync group`:\n\n```\n" + audit.strip() + "\n```")
PYEOF
