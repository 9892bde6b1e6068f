#!/usr/bin/env bash
# bench_gateway.sh - the gateway benchmarks (issue 4), all measured in one run:
#   A. proxy overhead side by side: wrk -> {direct backend | nginx reverse proxy |
#      switchyard gateway --scheduler round-robin | --scheduler default} -> backend, for each
#      backend (a static nginx `return 200` JSON body, and `switchyard engine --sim --sim-speed 0`
#      answering a non-streaming max_tokens 1 completion), at 32 and 256 connections; each
#      configuration run --reps times (default 3) interleaved, each gateway
#      next to nginx, medians reported. With --upstream-cap N a fifth front joins A: the default
#      gateway with --max-upstream-conns N (requests beyond N per endpoint wait in the gateway).
#   B. a 200 KB prompt, one connection, through each front vs direct (static backend).
#   C. 10,000 idle keep-alive client connections held by the gateway (and by nginx, for
#      comparison): RSS per connection, and whether the proxy still answers while holding them.
#   D. the component micro-benchmarks sy-bench-sched, sy-bench-index and sy-bench-tok.
# Pinning: backends and proxies run on core 0 (taskset -c 0; nginx with 1 worker, the gateway has
# one event-loop thread), the load generators (wrk -t1, the Python connection holder) on core 1.
# Prints Markdown tables and writes build/bench-gateway.json.
# Usage: scripts/bench_gateway.sh [--duration S] [--reps N] [--conns "32 256"]
#                                 [--backends "static engine"] [--idle-conns N] [--build-dir DIR]
#                                 [--tests "A B C D"] [--upstream-cap N]
# Besides each front's medians, A reports paired statistics, which the host's drift affects much
# less: per repetition, the front's requests/s divided by nginx's in the same repetition, and its
# p99 minus nginx's, then the median over repetitions; and the CPU time per request of the proxy
# process and of the backend (utime + stime from /proc over the wrk run), and one-sided sign-test
# p-values: the chance, were the front no different from nginx, of at least as many repetitions
# with lower requests/s (or higher p99) as seen; below 0.05 the front is worse beyond the noise.
# Needs: nginx and wrk (installed with apt-get when missing, as root; the system nginx service is
# never touched: nginx runs from a temp prefix with its own config), taskset, curl, /usr/bin/python3.
# Talks only to 127.0.0.1. Thread-safety: n/a.
set -euo pipefail
# The servers are paused with SIGSTOP while another front is measured (solo below). If this
# script's shell goes away meanwhile (started in the background of a shell that exits), the
# process group is orphaned with a stopped member and the kernel sends every member SIGHUP, which
# kills the engine (SIGHUP is not one of its signals); ignoring it here is inherited by them all.
trap '' HUP

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
DUR=10
REPS=3
CONNS="32 256"
BACKENDS="static engine"
IDLE_CONNS=10000
BIG_KB=200
TESTS="A B C D"
UPCAP=
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DUR=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --upstream-cap) UPCAP=$2; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench_gateway: unknown option $1" >&2; exit 2 ;;
    esac
done
SY_BIN=${SY_BIN:-$BUILD/switchyard}
PY=/usr/bin/python3
OUT_JSON=$BUILD/bench-gateway.json
MODEL=m

# ---- tools ----
[ -x "$SY_BIN" ] || { echo "bench_gateway: $SY_BIN missing (run make)" >&2; exit 2; }
for t in sy-bench-sched sy-bench-index sy-bench-tok; do
    [ -x "$BUILD/$t" ] || { echo "bench_gateway: $BUILD/$t missing (run make)" >&2; exit 2; }
done
need_pkgs=
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs="$need_pkgs nginx"
command -v wrk >/dev/null 2>&1 || need_pkgs="$need_pkgs wrk"
if [ -n "$need_pkgs" ]; then
    [ "$(id -u)" -eq 0 ] || { echo "bench_gateway: need$need_pkgs (run as root to install)" >&2; exit 2; }
    echo "bench_gateway: installing$need_pkgs" >&2
    # policy-rc.d-style guard: the package must not start the system nginx service
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_pkgs \
        >/dev/null 2>&1; then
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_pkgs >/dev/null
    fi
fi
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
command -v taskset >/dev/null && command -v curl >/dev/null ||
    { echo "bench_gateway: needs taskset and curl" >&2; exit 2; }

NCPU=$(nproc)
SRV_CPU=0
CLI_CPU=$((NCPU > 1 ? 1 : 0))
[ "$NCPU" -gt 1 ] || echo "bench_gateway: only one CPU; servers and load generator share it" >&2

NEED=$((IDLE_CONNS + 1024))
if [ "$(ulimit -n)" -lt "$NEED" ]; then
    ulimit -n "$NEED" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" -ge "$NEED" ] || { echo "bench_gateway: ulimit -n $(ulimit -n) < $NEED" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sy-benchgw.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    $PY -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_http() { # url pid name
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" == 200 ] && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench_gateway: $3 did not start" >&2
    tail -n 20 "$TMP/$3.log" >&2 || true
    exit 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- nginx configs (own prefix, daemon off, 1 worker; the process is pinned by taskset) ----
nginx_start() { # name conf-body
    local d=$TMP/$1
    mkdir -p "$d/logs" "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $((IDLE_CONNS * 2 + 1024));
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections $((IDLE_CONNS * 2 + 512)); }
http {
    access_log off;
    client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fcgi; uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 64m;
$2
}
EOF
    taskset -c $SRV_CPU "$NGINX" -p "$d" -c "$d/nginx.conf" >"$TMP/$1.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
}

P_STATIC=$(free_port)
P_ENGINE=$(free_port)
P_NG_STATIC=$(free_port)
P_NG_ENGINE=$(free_port)

# static backend: a fixed completion body (the engine's shape), plus what the gateway polls
BODY_JSON='{"id":"cmpl-static","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"c","logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":12,"total_tokens":13,"completion_tokens":1}}'
nginx_start static "    server {
        listen 127.0.0.1:$P_STATIC backlog=4096;
        client_body_buffer_size 1m;
        default_type application/json;
        location = /v1/models { return 200 '{\"object\":\"list\",\"data\":[{\"id\":\"$MODEL\",\"object\":\"model\",\"owned_by\":\"vllm\",\"root\":\"$MODEL\",\"max_model_len\":1048576}]}'; }
        location = /health { return 200 ''; }
        location = /metrics { default_type text/plain; return 200 'vllm:num_requests_running{engine=\"0\",model_name=\"$MODEL\"} 0.0
vllm:num_requests_waiting{engine=\"0\",model_name=\"$MODEL\"} 0.0
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"$MODEL\"} 0.0
'; }
        location / { return 200 '$BODY_JSON'; }
    }"
STATIC_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_STATIC/health" "$STATIC_PID" static
declare -A BE_PID
BE_PID[static]=$(pgrep -P "$STATIC_PID" | head -n 1)

# engine backend (started only if measured)
if [[ " $BACKENDS " == *" engine "* ]]; then
    taskset -c $SRV_CPU "$SY_BIN" engine --sim --sim-speed 0 --host 127.0.0.1 --port "$P_ENGINE" \
        --served-model-name "$MODEL" --max-num-seqs 512 --log-level warn >"$TMP/engine.log" 2>&1 &
    PIDS+=($!)
    BE_PID[engine]=$!
    wait_http "http://127.0.0.1:$P_ENGINE/health" "$!" engine
fi

# nginx reverse proxy: one server per backend, upstream keepalive, HTTP/1.1, no buffering
nginx_start nginxproxy "    upstream be_static { server 127.0.0.1:$P_STATIC; keepalive 1024; keepalive_requests 100000000; }
    upstream be_engine { server 127.0.0.1:$P_ENGINE; keepalive 1024; keepalive_requests 100000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_buffering off;
    proxy_request_buffering off;
    client_body_buffer_size 1m;
    server { listen 127.0.0.1:$P_NG_STATIC backlog=4096; location / { proxy_pass http://be_static; } }
    server { listen 127.0.0.1:$P_NG_ENGINE backlog=4096; location / { proxy_pass http://be_engine; } }"
NGINX_PROXY_PID=$LAST_PID
wait_http "http://127.0.0.1:$P_NG_STATIC/health" "$NGINX_PROXY_PID" nginxproxy
NGINX_WORKER_PID=$(pgrep -P "$NGINX_PROXY_PID" | head -n 1)

# gateways: one per (backend, scheduler), all running for the whole run (each scrapes its backend)
declare -A PORT GW_PID
PORT[static/direct]=$P_STATIC
PORT[engine/direct]=$P_ENGINE
PORT[static/nginx]=$P_NG_STATIC
PORT[engine/nginx]=$P_NG_ENGINE
for be in $BACKENDS static; do
    for sch in round-robin default ${UPCAP:+cap}; do
        [ -n "${PORT[$be/gw-$sch]:-}" ] && continue
        p=$(free_port)
        extra=(--scheduler "$sch")
        [ "$sch" == cap ] && extra=(--scheduler default --max-upstream-conns "$UPCAP")
        taskset -c $SRV_CPU "$SY_BIN" gateway --host 127.0.0.1 --port "$p" "${extra[@]}" \
            --endpoint "http://127.0.0.1:${PORT[$be/direct]}" --log-level warn \
            >"$TMP/gw-$be-$sch.log" 2>&1 &
        PIDS+=($!)
        GW_PID[$be/gw-$sch]=$!
        PORT[$be/gw-$sch]=$p
        # ready when the endpoint's models are known: a real request succeeds
        ok=0
        for _ in $(seq 100); do
            c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Content-Type: application/json' \
                -d "{\"model\":\"$MODEL\",\"prompt\":\"hello\",\"max_tokens\":1}" \
                "http://127.0.0.1:$p/v1/completions" || true)
            [ "$c" == 200 ] && { ok=1; break; }
            kill -0 "${GW_PID[$be/gw-$sch]}" 2>/dev/null || break
            sleep 0.1
        done
        [ $ok -eq 1 ] || { echo "bench_gateway: gateway $be/$sch not ready" >&2; tail "$TMP/gw-$be-$sch.log" >&2; exit 1; }
    done
done

# ---- wrk script: body from a file, results as one JSON line ----
cat >"$TMP/post.lua" <<'EOF'
local f = assert(io.open(os.getenv("SY_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
    io.write(string.format(
        'JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
        '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, summary.errors.status, summary.errors.connect, summary.errors.read,
        summary.errors.write, summary.errors.timeout))
end
EOF
printf '{"model":"%s","prompt":"Say hello to the gateway benchmark.","max_tokens":1}' "$MODEL" \
    >"$TMP/small.json"
$PY - "$TMP/big.json" "$MODEL" "$BIG_KB" <<'PYEOF'
import sys, json
path, model, kb = sys.argv[1], sys.argv[2], int(sys.argv[3])
words = "the quick brown fox jumps over a lazy dog while the gateway routes every request "
head, tail = '{"model": "%s", "max_tokens": 1, "prompt": "' % model, '"}'
text = (words * (kb * 1024 // len(words) + 1))[: kb * 1024 - len(head) - len(tail)]
open(path, "w").write(head + text + tail)
json.load(open(path))
PYEOF

RESULTS=$TMP/results.jsonl
: >"$RESULTS"
# Each front is measured alone: every gateway but the one under test is paused (SIGSTOP), so
# the idle gateways' 50 ms scrapes of their backends do not take the shared core from the
# front being measured (an idle nginx costs nothing either). A resumed gateway gets 0.5 s to
# scrape its backend again before the load starts.
solo() { # backend/front
    local k
    for k in "${!GW_PID[@]}"; do
        [ "$k" = "$1" ] || kill -STOP "${GW_PID[$k]}" 2>/dev/null || true
    done
    if [ -n "${GW_PID[$1]:-}" ]; then
        kill -CONT "${GW_PID[$1]}" 2>/dev/null || true
        sleep 0.5
    fi
}
resume_all() {
    local k
    for k in "${!GW_PID[@]}"; do kill -CONT "${GW_PID[$k]}" 2>/dev/null || true; done
}
cpu_ticks() { # pid: utime + stime in clock ticks (0 if unknown)
    [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
front_pid() { # backend front: the proxy process of the front (none for direct)
    case "$2" in
    direct) echo "" ;;
    nginx) echo "$NGINX_WORKER_PID" ;;
    *) echo "${GW_PID[$1/$2]:-}" ;;
    esac
}
run_wrk() { # test backend front conns rep body duration
    local url="http://127.0.0.1:${PORT[$2/$3]}/v1/completions" line fpid f0 f1 b0 b1
    solo "$2/$3"
    fpid=$(front_pid "$2" "$3")
    f0=$(cpu_ticks "$fpid")
    b0=$(cpu_ticks "${BE_PID[$2]:-}")
    line=$(SY_BODY_FILE=$6 taskset -c $CLI_CPU timeout $(($7 + 30)) wrk -t1 -c"$4" -d"${7}s" \
        --timeout 10s -s "$TMP/post.lua" "$url" 2>&1 | sed -n 's/^JSON //p' || true)
    f1=$(cpu_ticks "$fpid")
    b1=$(cpu_ticks "${BE_PID[$2]:-}")
    [ -n "$line" ] || line='{"requests":0,"duration_us":1,"p50_us":0,"p99_us":0,"max_us":0,"status_errors":-1,"connect_errors":0,"read_errors":0,"write_errors":0,"timeouts":0}'
    echo "{\"test\":\"$1\",\"backend\":\"$2\",\"front\":\"$3\",\"conns\":$4,\"rep\":$5,\"front_ticks\":$((f1 - f0)),\"backend_ticks\":$((b1 - b0)),\"wrk\":$line}" >>"$RESULTS"
}
has_test() { [[ " $TESTS " == *" $1 "* ]]; }
FRONTS="direct nginx gw-round-robin gw-default${UPCAP:+ gw-cap}"

# warm-up: every path once for 1 s
for be in $BACKENDS; do
    for fr in $FRONTS; do run_wrk warmup "$be" "$fr" 32 0 "$TMP/small.json" 1; done
done

# ---- A: proxy overhead, interleaved repetitions ----
echo "bench_gateway: A (proxy overhead): $BACKENDS x {$CONNS} conns x $REPS reps x ${DUR}s" >&2
# The order of the fronts changes with each repetition so that each gateway runs right next to
# nginx, the front it is compared with (the host's speed drifts over seconds; a pair measured
# back to back sees the least of it), on alternating sides: odd repetitions run
# direct, round-robin, nginx, default (then the capped gateway, with --upstream-cap); even ones
# the reverse. Over the repetitions a drift that is steady across a pair then favours neither side.
rotated() { # rep: FRONTS in that repetition's order
    if (($1 % 2)); then
        printf '%s ' direct gw-round-robin nginx gw-default ${UPCAP:+gw-cap}
    else
        printf '%s ' ${UPCAP:+gw-cap} gw-default nginx gw-round-robin direct
    fi
}
has_test A && for rep in $(seq "$REPS"); do
    for be in $BACKENDS; do
        for c in $CONNS; do
            for fr in $(rotated "$rep"); do
                run_wrk overhead "$be" "$fr" "$c" "$rep" "$TMP/small.json" "$DUR"
            done
        done
    done
done

# ---- B: 200 KB prompt, 1 connection, static backend ----
BIG_DUR=$(((DUR + 1) / 2))
echo "bench_gateway: B (${BIG_KB} KB prompt): $REPS reps x ${BIG_DUR}s" >&2
has_test B && for rep in $(seq "$REPS"); do
    for fr in $(rotated "$rep"); do run_wrk bigprompt static "$fr" 1 "$rep" "$TMP/big.json" "$BIG_DUR"; done
done

resume_all

# ---- C: idle keep-alive connections (gateway, then nginx) ----
cat >"$TMP/hold.py" <<'PYEOF'
# Opens N keep-alive connections in waves of 500, sends one small completion on each and reads
# the full response, then keeps them all idle; signals "held" (stdout) and waits for "close" on
# stdin (bounded by 120 s), then checks how many the server closed meanwhile and closes them.
import socket, selectors, sys, time, json
port, n, body = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3], "rb").read()
req = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
       b"Content-Length: %d\r\n\r\n" % len(body)) + body
socks, ok, bad, t0 = [], 0, 0, time.time()
def complete(buf):
    h, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    clen = 0
    for line in h.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            clen = int(v)
    return h.split(b" ")[1] if len(rest) >= clen else None
for w in range(0, n, 500):
    sel = selectors.DefaultSelector()
    wave = []
    for _ in range(min(500, n - w)):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, [b""])
        wave.append(s)
    pending, deadline = len(wave), time.time() + 30
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            d = key.fileobj.recv(65536)
            if not d:
                bad += 1; pending -= 1; sel.unregister(key.fileobj); continue
            key.data[0] += d
            st = complete(key.data[0])
            if st is not None:
                ok += st == b"200"; bad += st != b"200"; pending -= 1
                sel.unregister(key.fileobj)
    bad += pending
    sel.close()
    socks += wave
print(json.dumps({"opened": len(socks), "ok": ok, "bad": bad, "open_s": round(time.time() - t0, 2)}),
      flush=True)
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
sys.stdin.readline()  # the script measures RSS and sends a probe request meanwhile
closed = sum(1 for _ in sel.select(timeout=0))  # readable while idle = closed by the server
print(json.dumps({"closed_by_server_while_idle": closed}), flush=True)
for s in socks:
    s.close()
PYEOF
hold_test() { # name port server-pid
    local out=$TMP/hold-$1.out before after probe_code probe_t after_close
    sleep 1
    before=$(rss_kb "$3")
    mkfifo "$TMP/hold-$1.in"
    taskset -c $CLI_CPU timeout 180 $PY "$TMP/hold.py" "$2" "$IDLE_CONNS" "$TMP/small.json" \
        <"$TMP/hold-$1.in" >"$out" 2>"$TMP/hold-$1.err" &
    local hpid=$!
    exec 7>"$TMP/hold-$1.in"
    for _ in $(seq 1200); do [ -s "$out" ] && break; kill -0 $hpid 2>/dev/null || break; sleep 0.1; done
    sleep 2
    after=$(rss_kb "$3")
    read -r probe_code probe_t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 \
        -H 'Content-Type: application/json' --data-binary @"$TMP/small.json" \
        "http://127.0.0.1:$2/v1/completions" || echo "000 5")
    sleep 1
    echo close >&7
    exec 7>&-
    wait $hpid || true
    sleep 1
    after_close=$(rss_kb "$3")
    $PY - "$out" "$1" "$before" "$after" "$after_close" "$probe_code" "$probe_t" "$IDLE_CONNS" \
        >>"$RESULTS" <<'PYEOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
r = {"test": "idle", "front": sys.argv[2], "rss_before_kib": int(sys.argv[3]),
     "rss_held_kib": int(sys.argv[4]), "rss_after_close_kib": int(sys.argv[5]),
     "probe_status": int(sys.argv[6]), "probe_s": float(sys.argv[7]), "target_conns": int(sys.argv[8])}
for l in lines:
    r.update(l)
print(json.dumps(r))
PYEOF
}
echo "bench_gateway: C ($IDLE_CONNS idle connections)" >&2
if has_test C; then
    hold_test gateway "${PORT[static/gw-round-robin]}" "${GW_PID[static/gw-round-robin]}"
    # a second round on the same gateway: RSS that keeps growing round after round would be a leak
    hold_test gateway-again "${PORT[static/gw-round-robin]}" "${GW_PID[static/gw-round-robin]}"
    hold_test nginx "${PORT[static/nginx]}" "$NGINX_WORKER_PID"
fi

# were all servers alive through the run?
ALIVE=1
for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || ALIVE=0; done

# ---- D: micro-benchmarks (pinned to the server core, nothing else under load) ----
echo "bench_gateway: D (micro-benchmarks)" >&2
: >"$TMP/sched.txt"
: >"$TMP/index.txt"
: >"$TMP/tok.txt"
if has_test D; then
    taskset -c $SRV_CPU "$BUILD/sy-bench-sched" >"$TMP/sched.txt"
    taskset -c $SRV_CPU "$BUILD/sy-bench-index" >"$TMP/index.txt"
    taskset -c $SRV_CPU "$BUILD/sy-bench-tok" >"$TMP/tok.txt"
fi

# ---- report ----
$PY - "$RESULTS" "$TMP/sched.txt" "$TMP/index.txt" "$TMP/tok.txt" "$OUT_JSON" "$DUR" "$REPS" \
    "$NCPU" "$ALIVE" "$BIG_KB" "$IDLE_CONNS" "$("$NGINX" -v 2>&1 | sed 's/.*: //')" \
    "$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')" "$(getconf CLK_TCK)" "${UPCAP:-0}" <<'PYEOF'
import json, os, sys, statistics, platform, re
from math import comb
res_f, sched_f, index_f, tok_f, out = sys.argv[1:6]
dur, reps, ncpu, alive, big_kb, idle_n = (int(x) for x in sys.argv[6:12])
hz = int(sys.argv[14])
nginx_v, wrk_v = sys.argv[12], sys.argv[13]
rows = [json.loads(l) for l in open(res_f) if l.strip()]
med = statistics.median
def agg(test, be, fr, c):
    rs = [r for r in rows if r["test"] == test and r["backend"] == be and r["front"] == fr and r["conns"] == c]
    if not rs:
        return None
    w = [r["wrk"] for r in rs]
    errs = sum(x["status_errors"] + x["connect_errors"] + x["read_errors"] + x["write_errors"] + x["timeouts"] for x in w)
    return {"runs": len(w), "rps": med([x["requests"] / (x["duration_us"] / 1e6) for x in w]),
            "p50_us": med([x["p50_us"] for x in w]), "p99_us": med([x["p99_us"] for x in w]),
            "max_us": max(x["max_us"] for x in w), "requests": sum(x["requests"] for x in w),
            "errors": errs, "rps_runs": [round(x["requests"] / (x["duration_us"] / 1e6)) for x in w],
            "p99_runs": [x["p99_us"] for x in w]}
upcap = int(sys.argv[15])
fronts = ["direct", "nginx", "gw-round-robin", "gw-default"] + (["gw-cap"] if upcap else [])
names = {"direct": "direct (no proxy)", "nginx": "nginx %s" % nginx_v,
         "gw-round-robin": "gateway --scheduler round-robin", "gw-default": "gateway --scheduler default",
         "gw-cap": "gateway --scheduler default --max-upstream-conns %d" % upcap}
def ms(us): return "%.3f" % (us / 1000.0)
def sign_p(worse, better):
    # one-sided sign test: the chance of at least `worse` of the untied repetitions going against
    # the front if it were no different from nginx (ties dropped); small = really worse
    n = worse + better
    if n == 0:
        return 1.0
    return sum(comb(n, k) for k in range(worse, n + 1)) / 2.0 ** n
def add(us): return ("+%.3f" % (us / 1000.0)) if us >= 0 else ("%.3f" % (us / 1000.0))
report = {"bench": "gateway", "duration_s": dur, "reps": reps, "machine_cpus": ncpu, "upstream_cap": upcap,
          "kernel": platform.release(), "nginx": nginx_v, "wrk": wrk_v, "servers_alive_after": bool(alive),
          "overhead": [], "big_prompt": [], "idle": [], "micro": {}}
backends = sorted({r["backend"] for r in rows if r["test"] == "overhead"}, key=lambda b: b != "static")
conns = sorted({r["conns"] for r in rows if r["test"] == "overhead"})
bdesc = {"static": "static backend (nginx `return 200`, fixed 230-byte JSON)",
         "engine": "engine backend (`switchyard engine --sim --sim-speed 0`, max_tokens 1)"}
print("### A. Proxy overhead (wrk -t1, POST /v1/completions, %d s x %d interleaved runs, medians)\n" % (dur, reps))
for be in backends:
    print("**%s**\n" % bdesc[be])
    print("| conns | front | requests/s | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s vs nginx | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in conns:
        d = agg("overhead", be, "direct", c)
        n = agg("overhead", be, "nginx", c)
        for fr in fronts:
            a = agg("overhead", be, fr, c)
            if not a:
                continue
            a.update(backend=be, front=fr, conns=c,
                     added_p50_us=a["p50_us"] - d["p50_us"], added_p99_us=a["p99_us"] - d["p99_us"])
            report["overhead"].append(a)
            prox = fr != "direct"
            print("| %d | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                c, names[fr], "{:,.0f}".format(a["rps"]), ms(a["p50_us"]), ms(a["p99_us"]),
                add(a["added_p50_us"]) if prox else "-", add(a["added_p99_us"]) if prox else "-",
                ("%.2fx" % (a["rps"] / n["rps"])) if prox and n and n["rps"] else "-", a["errors"]))
    print("")
    print("Paired by repetition (median over the %d repetitions of: the front's requests/s divided by nginx's in the same repetition; its p50 and p99 minus nginx's; CPU per request of the proxy process and of the backend):\n" % reps)
    print("| conns | front | req/s vs nginx (paired) | p50 minus nginx ms | p99 minus nginx ms | reps at >= 1.00x | reps with p99 <= nginx | sign test p: req/s lower, p99 higher | proxy CPU us/req | backend CPU us/req |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in conns:
        byrep = {}
        for r in rows:
            if r["test"] == "overhead" and r["backend"] == be and r["conns"] == c:
                byrep.setdefault(r["rep"], {})[r["front"]] = r
        for fr in fronts:
            ratios, d50, d99, fcpu, bcpu = [], [], [], [], []
            for rp, m in byrep.items():
                a, n = m.get(fr), m.get("nginx")
                if not a or not a["wrk"]["requests"]:
                    continue
                nreq = a["wrk"]["requests"]
                fcpu.append(a.get("front_ticks", 0) * 1e6 / hz / nreq)
                bcpu.append(a.get("backend_ticks", 0) * 1e6 / hz / nreq)
                if n and n["wrk"]["requests"]:
                    ra = nreq / a["wrk"]["duration_us"]
                    rn = n["wrk"]["requests"] / n["wrk"]["duration_us"]
                    ratios.append(ra / rn)
                    d50.append(a["wrk"]["p50_us"] - n["wrk"]["p50_us"])
                    d99.append(a["wrk"]["p99_us"] - n["wrk"]["p99_us"])
            if not fcpu:
                continue
            paired = {"backend": be, "front": fr, "conns": c, "proxy_cpu_us_per_req": med(fcpu),
                      "backend_cpu_us_per_req": med(bcpu)}
            if ratios:
                paired.update(rps_vs_nginx=med(ratios), p50_minus_nginx_us=med(d50),
                              p99_minus_nginx_us=med(d99),
                              reps_at_least_nginx=sum(1 for x in ratios if x >= 1.0),
                              reps_p99_at_most_nginx=sum(1 for x in d99 if x <= 0), reps=len(ratios),
                              sign_p_p99_higher=sign_p(sum(1 for x in d99 if x > 0), sum(1 for x in d99 if x < 0)),
                              sign_p_rps_lower=sign_p(sum(1 for x in ratios if x < 1), sum(1 for x in ratios if x > 1)))
            report.setdefault("paired", []).append(paired)
            cmp = fr not in ("direct", "nginx") and ratios
            print("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
                c, names[fr], ("%.2fx" % med(ratios)) if cmp else "-", add(med(d50)) if cmp else "-",
                add(med(d99)) if cmp else "-", ("%d of %d" % (paired["reps_at_least_nginx"], len(ratios))) if cmp else "-",
                ("%d of %d" % (paired["reps_p99_at_most_nginx"], len(d99))) if cmp else "-",
                ("%.2f, %.2f" % (paired["sign_p_rps_lower"], paired["sign_p_p99_higher"])) if cmp else "-",
                ("%.1f" % med(fcpu)) if fr != "direct" else "-", med(bcpu)))
    print("")
if any(r["test"] == "bigprompt" for r in rows):
    print("### B. %d KB prompt (1 connection, static backend, %d interleaved runs, medians)\n" % (big_kb, reps))
    print("| front | requests/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    d = agg("bigprompt", "static", "direct", 1)
    for fr in fronts:
        a = agg("bigprompt", "static", fr, 1)
        if not a:
            continue
        a.update(front=fr, added_p50_us=a["p50_us"] - d["p50_us"], added_p99_us=a["p99_us"] - d["p99_us"])
        report["big_prompt"].append(a)
        prox = fr != "direct"
        print("| %s | %s | %s | %s | %s | %s | %d |" % (names[fr], "{:,.0f}".format(a["rps"]), ms(a["p50_us"]),
              ms(a["p99_us"]), add(a["added_p50_us"]) if prox else "-", add(a["added_p99_us"]) if prox else "-",
              a["errors"]))
    print("")
if any(r["test"] == "idle" for r in rows):
    print("### C. %s idle keep-alive client connections (static backend)\n" % "{:,}".format(idle_n))
    print("| server | connections held (200 OK) | RSS before | RSS holding | memory per connection | RSS after close | probe while holding | closed by server while idle |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if r["test"] != "idle":
            continue
        held = r.get("opened", 0)
        per = (r["rss_held_kib"] - r["rss_before_kib"]) * 1024 / held if held else 0
        r["memory_per_connection_bytes"] = round(per)
        report["idle"].append(r)
        print("| %s | %s of %s (%s ok, %s failed) | %.1f MiB | %.1f MiB | %.2f KiB | %.1f MiB | HTTP %d in %.1f ms | %s |" % (
            {"gateway": "gateway (round-robin)", "gateway-again": "same gateway, second round",
             "nginx": "nginx proxy worker"}[r["front"]],
            "{:,}".format(held), "{:,}".format(r["target_conns"]), "{:,}".format(r.get("ok", 0)), r.get("bad", "?"),
            r["rss_before_kib"] / 1024, r["rss_held_kib"] / 1024, per / 1024, r["rss_after_close_kib"] / 1024,
            r["probe_status"], r["probe_s"] * 1000, r.get("closed_by_server_while_idle", "?")))
    print("")
if os.path.getsize(sched_f):
    print("### D. Component micro-benchmarks (pinned to core 0)\n")
    sched = open(sched_f).read().strip().splitlines()
    index = open(index_f).read().strip().splitlines()
    tok = open(tok_f).read().strip().splitlines()
    print("```")
    print("$ sy-bench-sched"); print("\n".join(sched))
    print("$ sy-bench-index"); print("\n".join(l for l in index if not l.startswith("{")))
    print("$ sy-bench-tok"); print("\n".join(l for l in tok if not l.startswith("{")))
    print("```")
    report["micro"]["sched"] = {}
    for l in sched[1:]:
        m = re.match(r"(\S+)\s+p50\s+([\d.]+) us\s+p99\s+([\d.]+) us\s+max\s+([\d.]+) us", l)
        if m:
            report["micro"]["sched"][m.group(1)] = {"p50_us": float(m.group(2)), "p99_us": float(m.group(3)), "max_us": float(m.group(4))}
    for l in index + tok:
        if l.startswith("{"):
            report["micro"].update(json.loads(l))
open(out, "w").write(json.dumps(report, indent=2) + "\n")
print("\nJSON: " + out)
PYEOF
[ "$ALIVE" -eq 1 ] || { echo "bench_gateway: a server died during the run" >&2; exit 1; }
exit 0
