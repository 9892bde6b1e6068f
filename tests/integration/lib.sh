# lib.sh - helpers sourced by tests/integration/test_*.sh: free ports, starting the engine and
# helper processes with guaranteed cleanup, HTTP and JSON helpers, TAP-ish assertions.
#
# Everything talks only to 127.0.0.1 and every wait is bounded. Every process started through
# sy_start_engine / sy_bg is stopped (SIGTERM, then SIGKILL after a bounded wait) and the temp
# dir removed on EXIT/INT/TERM. Set SY_KEEP_TMP=1 to keep the temp dir (logs) for debugging.
# Environment: SY_BIN (default <repo>/build/switchyard), SY_SOURCE_DIR (default: the repo this
# file lives in), SY_TEST_TIMEOUT (whole-script watchdog, default 540 s).
# Does not: use jq (JSON checks run in /usr/bin/python3, which has the Debian modules).

set -u
set -o pipefail

SY_SOURCE_DIR=${SY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SY_BIN=${SY_BIN:-$SY_SOURCE_DIR/build/switchyard}
case "$SY_BIN" in /*) ;; *) SY_BIN=$SY_SOURCE_DIR/$SY_BIN ;; esac
SY_PY=/usr/bin/python3
export SY_SOURCE_DIR SY_BIN SY_PY

SY_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sy-itest.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
SY_PIDS=()
SY_N=0
SY_PASSED=0
SY_FAILED=0
SY_FINISHED=0
SY_WATCHDOG_PID=

# Results of the last sy_start_engine.
SY_PID=
SY_PORT=
SY_URL=
SY_LOG=
# Results of the last sy_http.
SY_STATUS=
SY_BODY=$SY_TMP/body
SY_HDRS=$SY_TMP/headers

# ---------------------------------------------------------------------------------------------
# output and assertions

sy_diag() { # MSG... : a TAP comment line
    local l
    while IFS= read -r l; do printf '# %s\n' "$l"; done <<<"$*"
}

sy_ok() { # NAME : record a pass
    SY_N=$((SY_N + 1))
    SY_PASSED=$((SY_PASSED + 1))
    printf 'ok %d - %s\n' "$SY_N" "$1"
}

sy_not_ok() { # NAME [DETAIL] : record a failure (the test goes on)
    SY_N=$((SY_N + 1))
    SY_FAILED=$((SY_FAILED + 1))
    printf 'not ok %d - %s\n' "$SY_N" "$1"
    [ $# -gt 1 ] && [ -n "$2" ] && sy_diag "$2"
    return 0
}

sy_summary() {
    printf '%d passed, %d failed\n' "$SY_PASSED" "$SY_FAILED"
}

sy_finish() { # print the summary and exit 0 iff nothing failed
    SY_FINISHED=1
    echo "1..$SY_N"
    sy_summary
    [ "$SY_FAILED" -eq 0 ] && [ "$SY_N" -gt 0 ] && exit 0
    exit 1
}

sy_fail() { # MSG : fatal: record a failure, print the summary, exit 1 (cleanup runs on EXIT)
    sy_not_ok "$1" "${2:-}"
    echo "Bail out! $1"
    SY_FINISHED=1
    echo "1..$SY_N"
    sy_summary
    exit 1
}

sy_check() { # NAME CMD... : pass iff CMD succeeds; CMD's output is shown on failure
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then sy_ok "$name"; else sy_not_ok "$name" "$(printf '%s\n(exit %d)' "$out" "$rc" | tail -n 20)"; fi
    return $rc
}

sy_assert_eq() { # NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then sy_ok "$1"; else sy_not_ok "$1" "expected: $2
actual:   $3"; return 1; fi
}

sy_assert_status() { # NAME EXPECTED : compares with SY_STATUS of the last sy_http
    if [ "$SY_STATUS" == "$2" ]; then
        sy_ok "$1"
    else
        sy_not_ok "$1" "expected HTTP $2, got $SY_STATUS; body: $(head -c 600 "$SY_BODY" 2>/dev/null)"
        return 1
    fi
}

# sy_json_check NAME FILE EXPR : EXPR is a Python expression over j (the parsed JSON of FILE) and
# b (the raw text); pass iff it is truthy. Helper names available: is_int(x), is_str(x).
sy_json_check() {
    local name=$1 file=$2 expr=$3 out
    if out=$(sy_py_json "$file" "$expr" 2>&1) && [ "$out" == "True" ]; then
        sy_ok "$name"
    else
        sy_not_ok "$name" "check: $expr
result: $(printf '%s' "$out" | tail -n 5)
body: $(head -c 800 "$file" 2>/dev/null)"
        return 1
    fi
}

# sy_py_json FILE EXPR : prints bool(EXPR) (or the value with repr=1 in SY_JSON_RAW) of j = JSON.
sy_py_json() {
    "$SY_PY" - "$1" "$2" "${SY_JSON_RAW:-0}" <<'PYEOF'
import json, sys
path, expr, raw = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
b = open(path, "rb").read().decode("utf-8", "replace")
def is_int(x): return isinstance(x, int) and not isinstance(x, bool)
def is_str(x): return isinstance(x, str)
try:
    j = json.loads(b)
except Exception as e:
    j = None
v = eval("(" + expr + "\n)")
print(v if raw else bool(v))
PYEOF
}

# sy_json_get FILE EXPR : prints the value of EXPR (strings bare, other values as JSON).
sy_json_get() {
    "$SY_PY" - "$1" "$2" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1], "rb"))
v = eval("(" + sys.argv[2] + "\n)")
print(v if isinstance(v, str) else json.dumps(v))
PYEOF
}

# ---------------------------------------------------------------------------------------------
# HTTP

# sy_http METHOD URL [BODY] [extra curl args...] : sets SY_STATUS, body in $SY_BODY, headers in
# $SY_HDRS. BODY "-" (or absent) means no body, "" an empty body (Content-Length: 0); "@file"
# reads a file. Bounded by --max-time 30.
sy_http() {
    local method=$1 url=$2 body=${3--}
    shift 2
    [ $# -gt 0 ] && shift
    local args=(-sS -o "$SY_BODY" -D "$SY_HDRS" -w '%{http_code}' --max-time "${SY_HTTP_TIMEOUT:-30}"
                -X "$method" -H 'Expect:')
    if [ "$body" != "-" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    SY_STATUS=$(curl "${args[@]}" "$@" "$url" 2>"$SY_TMP/curl.err")
    [ -n "$SY_STATUS" ] || SY_STATUS=000
    return 0
}

# sy_post PATH JSON [curl args] : POST to the last started engine.
sy_post() {
    local path=$1 body=$2
    shift 2
    sy_http POST "$SY_URL$path" "$body" "$@"
}

sy_get() { # PATH [curl args]
    local path=$1
    shift
    sy_http GET "$SY_URL$path" - "$@"
}

# sy_metric URL NAME [LABEL=VALUE...] : prints the sum of the samples of NAME (exact sample
# name, e.g. vllm:prefix_cache_hits_total) whose labels include all given pairs; "nan" if none.
sy_metric() {
    local url=$1
    shift
    curl -sS --max-time 10 "$url/metrics" 2>/dev/null | "$SY_PY" -c '
import sys, re
name, want = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
tot, found = 0.0, False
for line in sys.stdin:
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    m = re.match(r"^([^\s{]+)(\{(.*)\})?\s+(\S+)", line)
    if not m or m.group(1) != name:
        continue
    labels = dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"", m.group(3) or ""))
    if all(labels.get(k) == v for k, v in want.items()):
        tot += float(m.group(4)); found = True
print(repr(tot) if found else "nan")
' "$@"
}

# sy_wait_until TIMEOUT_S CMD... : polls CMD every 0.1 s until it succeeds; 1 on timeout.
sy_wait_until() {
    local limit=$1 t0
    shift
    t0=$(date +%s%N)
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        if [ $(( ($(date +%s%N) - t0) / 1000000 )) -ge $((limit * 1000)) ]; then return 1; fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------------------------------------
# processes

sy_free_port() { # prints a free TCP port on 127.0.0.1
    "$SY_PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

sy_bg() { # LOGFILE CMD... : starts CMD in the background (tracked); sets SY_BG_PID
    local log=$1
    shift
    "$@" >"$log" 2>&1 &
    SY_BG_PID=$!
    SY_PIDS+=("$SY_BG_PID")
}

sy_health_ok() { # URL
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/health" 2>/dev/null)" == "200" ]
}

# sy_start_engine NAME ARGS... : starts "$SY_BIN engine --sim --host 127.0.0.1 --port P ARGS"
# (without --sim when ARGS hold --model)
# (P picked here; NAME labels the log file) and waits up to SY_START_TIMEOUT (20 s) for
# GET /health == 200. Env for the engine: prefix the call, e.g. PYTHONHASHSEED=0 sy_start_engine.
# Sets SY_PID, SY_PORT, SY_URL, SY_LOG; fails the whole test (sy_fail) with the log tail if the
# engine does not come up. Retries twice on a port race.
sy_start_engine() {
    local name=$1 attempt t0 limit=${SY_START_TIMEOUT:-20}
    shift
    [ -x "$SY_BIN" ] || sy_fail "engine binary $SY_BIN is missing (build it with make)"
    for attempt in 1 2 3; do
        SY_PORT=$(sy_free_port) || sy_fail "no free port"
        SY_URL=http://127.0.0.1:$SY_PORT
        SY_LOG=$SY_TMP/engine-$name.log
        local exec_flag=--sim a # the sim executor unless a model file is given
        for a in "$@"; do [ "$a" == "--model" ] && exec_flag=; done
        "$SY_BIN" engine $exec_flag --host 127.0.0.1 --port "$SY_PORT" "$@" >"$SY_LOG" 2>&1 &
        SY_PID=$!
        SY_PIDS+=("$SY_PID")
        t0=$SECONDS
        while [ $((SECONDS - t0)) -lt "$limit" ]; do
            if sy_health_ok "$SY_URL"; then
                sy_diag "engine '$name' pid $SY_PID on $SY_URL"
                return 0
            fi
            kill -0 "$SY_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SY_PID" 2>/dev/null; then
            sy_stop_pid "$SY_PID"
            sy_fail "engine '$name' did not report healthy within ${limit}s" "$(tail -n 30 "$SY_LOG")"
        fi
        # exited: retry only if it looks like a port race
        if ! grep -qiE 'address already in use|EADDRINUSE|bind' "$SY_LOG"; then
            sy_fail "engine '$name' exited during startup: $SY_BIN engine --sim --port $SY_PORT $*" \
                "$(tail -n 30 "$SY_LOG")"
        fi
    done
    sy_fail "engine '$name' could not bind a port" "$(tail -n 30 "$SY_LOG")"
}

# sy_stop_pid PID [TIMEOUT_S] : SIGTERM, wait up to TIMEOUT_S (default 10), then SIGKILL.
# Returns the exit status of the process (137 if it had to be killed).
sy_stop_pid() {
    local pid=$1 limit=${2:-10} i rc
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 137
    fi
    wait "$pid" 2>/dev/null
    rc=$?
    return $rc
}

sy_alive() { kill -0 "$1" 2>/dev/null; } # PID

# sy_node_deps DIR : node and npm present, and DIR's npm packages (the official openai client)
# installed once (npm install when node_modules is missing); fails the test otherwise.
sy_node_deps() {
    local dir=$1
    command -v node >/dev/null 2>&1 || sy_fail "node is not installed (scripts/install-deps.sh)"
    command -v npm >/dev/null 2>&1 || sy_fail "npm is not installed (scripts/install-deps.sh)"
    if [ ! -d "$dir/node_modules/openai" ]; then
        sy_diag "installing the openai npm package in $dir"
        if ! (cd "$dir" && timeout 300 npm install --no-audit --no-fund >"$SY_TMP/npm.log" 2>&1); then
            sy_fail "npm install failed" "$(tail -n 20 "$SY_TMP/npm.log")"
        fi
    fi
}

sy_cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    if [ -n "$SY_WATCHDOG_PID" ]; then
        kill -TERM "$SY_WATCHDOG_PID" 2>/dev/null
        wait "$SY_WATCHDOG_PID" 2>/dev/null
    fi
    # stop every tracked process: TERM all, wait up to 5 s, KILL stragglers
    for pid in "${SY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for pid in "${SY_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${SY_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ "$SY_FINISHED" -eq 0 ]; then
        echo "Bail out! interrupted or unexpected exit (status $rc)"
        SY_FAILED=$((SY_FAILED + 1))
        sy_summary
        [ $rc -eq 0 ] && rc=1
    fi
    if [ "${SY_KEEP_TMP:-0}" == "1" ]; then
        echo "# logs kept in $SY_TMP"
    else
        rm -rf "$SY_TMP"
    fi
    exit $rc
}
trap sy_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whole-script watchdog: a hung step cannot outlive ctest's timeout. It is a subshell that
# sleeps in the background; SIGTERM (from sy_cleanup) makes it stop its sleep and exit.
(
    trap 'kill -TERM $sp 2>/dev/null; exit 0' TERM
    sleep "${SY_TEST_TIMEOUT:-540}" &
    sp=$!
    wait $sp
    echo "Bail out! watchdog: test exceeded ${SY_TEST_TIMEOUT:-540}s" >&2
    kill -TERM $$ 2>/dev/null
) </dev/null >/dev/null &
SY_WATCHDOG_PID=$!
