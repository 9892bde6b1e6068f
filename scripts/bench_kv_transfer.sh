#!/usr/bin/env bash
# bench_kv_transfer.sh - KV-transfer throughput between two real engines on loopback against raw
# loopback TCP, measured side by side in one run.
# Two `switchyard engine --sim --sim-kv-storage` processes (real KV pools of 128 KiB per token
# slot, the Llama-3-8B bf16 size, so every pull moves real bytes through the TcpConnector: framed
# protocol, per-layer xxh64, writev from the producer's pool, recv into the consumer's) act as
# producer and consumer. Each repetition prefills a distinct prompt of --prompt-len tokens on the
# producer (do_remote_decode) and decodes it on the consumer with the returned
# kv_transfer_params; the consumer's kv.pull_done log line gives bytes and wall time of the pull
# (connect, request, all layers, digest check, re-read digest). Right after each pull,
# sy-bench-loopback moves the same number of bytes over a raw 127.0.0.1 TCP connection with the
# same socket options. Prints a Markdown table (medians) and the ratio; JSON in
# build/bench-kv-transfer.json.
# The first --warmup pulls are not counted, and sy-bench-loopback runs one untimed repetition
# first: on this project's VMs the kernel's first touch of a page through a fresh mapping costs
# tens of microseconds (both the pools and the loopback buffers are walked once before timing).
# Usage: scripts/bench_kv_transfer.sh [--prompt-len N] [--reps N] [--warmup N] [--build-dir DIR]
# Needs: build/switchyard and build/sy-bench-loopback (make), curl, /usr/bin/python3.
# Talks only to 127.0.0.1. Thread-safety: n/a.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
PLEN=4000
REPS=7
WARM=3
while [ $# -gt 0 ]; do
    case "$1" in
    --prompt-len) PLEN=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --warmup) WARM=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench_kv_transfer: unknown option $1" >&2; exit 2 ;;
    esac
done
SY=$BUILD/switchyard
LB=$BUILD/sy-bench-loopback
PY=/usr/bin/python3
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${SY_KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BLOCKS=$(( (PLEN + 15) / 16 * 2 + 64 ))
KVC='{"kv_connector":"TcpConnector","kv_role":"kv_both","kv_port":0,"kv_ip":"127.0.0.1"}'
start() { # NAME VAR : starts an engine (tracked in PIDS: not in a subshell), its URL in VAR
    local port
    port=$(free_port)
    "$SY" engine --sim --sim-speed 0 --sim-kv-storage --num-gpu-blocks-override "$BLOCKS" \
        --host 127.0.0.1 --port "$port" --kv-transfer-config "$KVC" >"$TMP/$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/health"; then
            printf -v "$2" '%s' "http://127.0.0.1:$port"
            return
        fi
        sleep 0.1
    done
    echo "engine $1 did not start: $(tail -5 "$TMP/$1.log")" >&2
    exit 1
}
start producer P
start consumer D
echo "# producer $P, consumer $D: $BLOCKS blocks of 16 x 128 KiB each" >&2
: >"$TMP/loopback.jsonl"
for r in $(seq 1 $((WARM + REPS))); do
    prompt=$($PY -c "import sys; print(('rep %d ' % int(sys.argv[1])).ljust(int(sys.argv[2]), 'x'))" "$r" "$PLEN")
    curl -sf --max-time 60 "$P/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"sim-model\",\"prompt\":\"$prompt\",\"max_tokens\":1,\"kv_transfer_params\":{\"do_remote_decode\":true}}" \
        >"$TMP/prefill.json"
    kv=$($PY -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["kv_transfer_params"]))' "$TMP/prefill.json")
    curl -sf --max-time 60 "$D/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"sim-model\",\"prompt\":\"$prompt\",\"max_tokens\":1,\"kv_transfer_params\":$kv}" >/dev/null
    sleep 0.2
    bytes=$(grep 'event=kv.pull_done' "$TMP/consumer.log" | tail -1 | grep -o 'bytes=[0-9]*' | cut -d= -f2)
    [ "$r" -le "$WARM" ] && continue
    "$LB" --bytes "$bytes" --reps 1 --warmup 1 | head -1 >>"$TMP/loopback.jsonl"
done
grep 'event=kv.pull_done' "$TMP/consumer.log" | tail -n "$REPS" >"$TMP/pulls.log" || true
$PY - "$TMP/pulls.log" "$TMP/loopback.jsonl" "$BUILD/bench-kv-transfer.json" "$PLEN" <<'PYEOF'
import json, re, statistics, sys
pulls = []
for line in open(sys.argv[1]):
    b = int(re.search(r"bytes=(\d+)", line).group(1))
    ms = float(re.search(r"ms=([\d.]+)", line).group(1))
    pulls.append((b, ms))
lb = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if not pulls or len(pulls) != len(lb):
    sys.exit("bench_kv_transfer: %d pulls, %d loopback runs" % (len(pulls), len(lb)))
kv = [b / (ms / 1e3) / 1e9 for b, ms in pulls]
raw = [x["gbytes_per_s"] for x in lb]
ratio = [a / b for a, b in zip(kv, raw)]
res = {"prompt_tokens": int(sys.argv[4]), "bytes_per_pull": pulls[0][0], "reps": len(pulls),
       "kv_gbytes_per_s_median": statistics.median(kv), "raw_gbytes_per_s_median": statistics.median(raw),
       "ratio_median": statistics.median(ratio), "kv_gbytes_per_s": kv, "raw_gbytes_per_s": raw}
json.dump(res, open(sys.argv[3], "w"), indent=1)
print("| path | bytes per transfer | GB/s (median of %d) |" % len(pulls))
print("|---|---:|---:|")
print("| engine -> engine KV pull (TcpConnector) | %d | %.2f |" % (pulls[0][0], res["kv_gbytes_per_s_median"]))
print("| raw loopback TCP (sy-bench-loopback) | %d | %.2f |" % (lb[0]["bytes"], res["raw_gbytes_per_s_median"]))
print()
print("KV pull / raw TCP, median of the per-repetition ratios: %.2f" % res["ratio_median"])
PYEOF
