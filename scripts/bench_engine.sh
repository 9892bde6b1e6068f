#!/usr/bin/env bash
# bench_engine.sh - the engine streaming benchmark: `switchyard engine --sim --sim-speed 0`
# pinned to core 0, sy-stream-bench pinned to core 1 with 1,000 concurrent streaming requests.
# Reports tokens/s (per core: the server ran on one core; tokens counted from each stream's
# usage chunk), requests/s, errors, SSE events per request (a fast engine merges tokens into
# fewer events, as vLLM does), and server memory per open connection = (peak RSS during the run
# - idle RSS) / concurrency, as a Markdown table and as JSON in build/bench-engine.json.
# Exit status is non-zero if any request failed.
# Usage: scripts/bench_engine.sh [--concurrency N] [--requests N] [--max-tokens N]
#                                [--prompt-len N] [--build-dir DIR] [--sim-speed X]
# --sim-speed 0 (default) runs the sim as fast as possible; a positive speed (for example 20)
# paces decode steps so that nearly every token travels in its own SSE event.
# Needs: build/switchyard and build/sy-stream-bench (make), taskset, /usr/bin/python3.
# Talks only to 127.0.0.1. Thread-safety: n/a.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
CONC=1000
REQS=3000
MAXTOK=256
PLEN=64
SPEED=0
while [ $# -gt 0 ]; do
    case "$1" in
    --concurrency) CONC=$2; shift 2 ;;
    --requests) REQS=$2; shift 2 ;;
    --max-tokens) MAXTOK=$2; shift 2 ;;
    --prompt-len) PLEN=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --sim-speed) SPEED=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench_engine: unknown option $1" >&2; exit 2 ;;
    esac
done
SY_BIN=${SY_BIN:-$BUILD/switchyard}
BENCH=${SY_STREAM_BENCH:-$BUILD/sy-stream-bench}
PY=/usr/bin/python3
MODEL=sim/bench
OUT_JSON=$BUILD/bench-engine.json

[ -x "$SY_BIN" ] || { echo "bench_engine: $SY_BIN missing (run make)" >&2; exit 2; }
if [ ! -x "$BENCH" ]; then
    # not built by CMake yet: build the standalone tool directly
    BENCH=$BUILD/sy-stream-bench
    mkdir -p "$BUILD"
    cc -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror "$ROOT/bench/stream_bench.c" -o "$BENCH"
fi

NCPU=$(nproc)
SERVER_CPU=0
CLIENT_CPU=$((NCPU > 1 ? 1 : 0))
[ "$NCPU" -gt 1 ] || echo "bench_engine: only one CPU; server and client share it" >&2

# file descriptors: one per connection on each side, plus slack
NEED=$((CONC + 256))
if [ "$(ulimit -n)" -lt "$NEED" ]; then
    ulimit -n "$NEED" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" -ge "$NEED" ] || { echo "bench_engine: ulimit -n $(ulimit -n) < $NEED" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sy-bench.XXXXXX")
ENGINE_PID=
SAMPLER_PID=
cleanup() {
    local pid
    for pid in $SAMPLER_PID $ENGINE_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        kill -0 "$ENGINE_PID" 2>/dev/null || break
        sleep 0.1
    done
    for pid in $SAMPLER_PID $ENGINE_PID; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$($PY -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
# KV capacity for CONC sequences of (prompt + max_tokens) tokens: 16-token blocks, with margin
CTX=$((PLEN + 32 + MAXTOK))
BLOCKS=$(((CTX / 16 + 2) * CONC))
[ "$BLOCKS" -lt 40000 ] && BLOCKS=40000
taskset -c $SERVER_CPU "$SY_BIN" engine --sim --sim-speed "$SPEED" --host 127.0.0.1 --port "$PORT" \
    --served-model-name "$MODEL" --max-num-seqs $((CONC + 24)) --num-gpu-blocks-override "$BLOCKS" \
    --max-num-batched-tokens 16384 --max-model-len $((CTX + 64)) --log-level warn \
    >"$TMP/engine.log" 2>&1 &
ENGINE_PID=$!
ok=0
for _ in $(seq 200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/health")" == 200 ]; then
        ok=1
        break
    fi
    kill -0 "$ENGINE_PID" 2>/dev/null || break
    sleep 0.1
done
if [ $ok -ne 1 ]; then
    echo "bench_engine: engine did not start:" >&2
    tail -n 20 "$TMP/engine.log" >&2
    exit 1
fi

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# warm up (first allocations, page faults of the code paths), then measure idle RSS
taskset -c $CLIENT_CPU "$BENCH" --port "$PORT" --model "$MODEL" --concurrency 4 --requests 8 \
    --max-tokens 16 --prompt-len "$PLEN" --timeout 60 >"$TMP/warm.json" ||
    { echo "bench_engine: warm-up failed: $(cat "$TMP/warm.json")" >&2; exit 1; }
sleep 0.5
IDLE_KB=$(rss_kb "$ENGINE_PID")

# sample RSS every 20 ms while the benchmark runs; keep the peak
(
    peak=0
    while kill -0 "$ENGINE_PID" 2>/dev/null; do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$ENGINE_PID/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$TMP/peak"
        sleep 0.02
    done
) &
SAMPLER_PID=$!

set +e
taskset -c $CLIENT_CPU "$BENCH" --port "$PORT" --model "$MODEL" --concurrency "$CONC" \
    --requests "$REQS" --max-tokens "$MAXTOK" --prompt-len "$PLEN" --timeout 900 \
    >"$TMP/bench.json" 2>"$TMP/bench.err"
BENCH_RC=$?
set -e
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
PEAK_KB=$(cat "$TMP/peak" 2>/dev/null || echo "$IDLE_KB")
ALIVE=1
kill -0 "$ENGINE_PID" 2>/dev/null || ALIVE=0
[ -s "$TMP/bench.err" ] && sed 's/^/bench: /' "$TMP/bench.err" | head -n 20 >&2

SY_BENCH_SPEED=$SPEED $PY - "$TMP/bench.json" "$OUT_JSON" "$IDLE_KB" "$PEAK_KB" "$CONC" "$BENCH_RC" "$ALIVE" \
    "$MAXTOK" "$PLEN" "$NCPU" <<'PYEOF'
import json, sys, platform
src, dst = sys.argv[1], sys.argv[2]
idle, peak, conc, rc, alive, maxtok, plen, ncpu = (int(x) for x in sys.argv[3:11])
try:
    b = json.loads(open(src).read().strip().splitlines()[-1])
except Exception:
    b = {"connections": conc, "requests": 0, "errors": -1, "tokens": 0, "seconds": 0,
         "tokens_per_s": 0, "requests_per_s": 0}
per_conn = (peak - idle) * 1024 / conc if conc else 0
res = {
    "bench": "engine-sim-stream", "sim_speed": float(__import__("os").environ.get("SY_BENCH_SPEED", "0")), "server_cores": 1, "client_cores": 1, "machine_cpus": ncpu,
    "concurrency": conc, "requests": b.get("requests"), "completed": b.get("completed"),
    "errors": b.get("errors"), "tokens": b.get("tokens"), "seconds": b.get("seconds"),
    "tokens_per_s": b.get("tokens_per_s"), "tokens_per_s_per_core": b.get("tokens_per_s"),
    "requests_per_s": b.get("requests_per_s"), "max_tokens": maxtok, "prompt_len": plen,
    "peak_open_connections": b.get("peak_open_connections"),
    "sse_text_events": b.get("text_events"),
    "sse_text_events_per_request": round((b.get("text_events") or 0) / max(1, b.get("completed") or 1), 2),
    "rss_idle_kib": idle, "rss_peak_kib": peak, "memory_per_connection_bytes": round(per_conn),
    "bench_exit": rc, "engine_alive_after": bool(alive), "kernel": platform.release(),
}
open(dst, "w").write(json.dumps(res, indent=2) + "\n")
print("| metric | value |")
print("| --- | --- |")
print("| sim speed | %s (0 = as fast as possible) |" % res["sim_speed"])
print("| concurrent streams | %d (peak open connections %s) |" % (conc, b.get("peak_open_connections")))
print("| requests completed | %s of %s, max_tokens %d, prompt %d chars |" % (b.get("completed"), b.get("requests"), maxtok, plen))
print("| tokens/s (server on 1 core) | %.0f |" % (b.get("tokens_per_s") or 0))
print("| requests/s | %.1f |" % (b.get("requests_per_s") or 0))
print("| errors | %s |" % b.get("errors"))
print("| SSE text events per request | %.1f (tokens per event %.1f) |" % (
    (b.get("text_events") or 0) / max(1, b.get("completed") or 1),
    (b.get("tokens") or 0) / max(1, b.get("text_events") or 1)))
print("| server RSS idle / peak | %.1f MiB / %.1f MiB |" % (idle / 1024, peak / 1024))
print("| memory per connection | %.1f KiB |" % (per_conn / 1024))
print("| wall time | %.2f s |" % (b.get("seconds") or 0))
print("")
print("JSON: " + dst)
PYEOF
ERRS=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$OUT_JSON")
if [ "$BENCH_RC" -ne 0 ] || [ "$ERRS" != 0 ] || [ "$ALIVE" -ne 1 ]; then
    echo "bench_engine: FAILED (bench exit $BENCH_RC, errors $ERRS, engine alive $ALIVE)" >&2
    tail -n 20 "$TMP/engine.log" >&2
    exit 1
fi
exit 0
