#!/usr/bin/env bash
# test_up.sh - `switchyard up`, the local cluster supervisor, on 127.0.0.1:
#  1. a small cluster file (2 sim engines, gateway on a free port, a log dir): the ready block
#     lists every child (their pids are up's children), each child logs to its own file, a real
#     completion goes through the gateway, a shared-prefix pair reports cached tokens on the
#     second request (same engine), and SIGTERM stops it: exit 0, no process survives;
#  2. the default cluster (no file, no option; --port 0 only when 8080 is taken): 3 sim engines,
#     model sim-llama, the default scheduler, a log dir made under /tmp; SIGINT stops it cleanly;
#  3. `up` itself SIGKILLed: its children die anyway (PR_SET_PDEATHSIG);
#  4. an engine that cannot start (bad model path): non-zero exit, its log tail printed, no
#     survivor; a gateway that cannot start (bad flag) after the engines are up, and one that is
#     not ready within --ready-timeout: the same;
#  5. an engine killed while the cluster runs: reported with its log, the cluster stops, exit 1;
#  6. bad cluster files: exit 2 with FILE:LINE; --dry-run prints the command lines.
# "No process survives" is checked twice: every pid up printed is gone (or a zombie), and no
# process holds a file of the run's log dir open (every child's stdout and stderr is there).
# Bounded waits; lib.sh stops anything left.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

READY_S=${SY_UP_READY_S:-90}

# alive PID : the process exists and is not a zombie (orphans may wait for a slow reaper)
alive() {
    local st
    st=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# wait_exit PID TIMEOUT_S : waits (bounded) for PID to exit; returns its exit status, 137 if it
# had to be killed
wait_exit() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1"
        wait "$1" 2>/dev/null
        return 137
    fi
    wait "$1" 2>/dev/null
}

# holders DIR : pids of the processes holding a file under DIR open
holders() {
    find /proc/[0-9]*/fd -maxdepth 1 -lname "$1/*" 2>/dev/null | cut -d/ -f3 | sort -u
}

# start_up NAME ARGS... : `switchyard up ARGS` in the background (tracked by lib.sh); its stdout
# and stderr go to $SY_TMP/up-NAME.out. Sets UP_PID, UP_OUT.
start_up() {
    UP_OUT=$SY_TMP/up-$1.out
    shift
    sy_bg "$UP_OUT" "$SY_BIN" up "$@"
    UP_PID=$SY_BG_PID
}

# wait_ready : the ready line within READY_S (fails the test with up's output otherwise);
# sets GURL and CHILD_PIDS (and tracks them in lib.sh's cleanup too)
wait_ready() {
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$READY_S" ]; do
        grep -q '^ready: ' "$UP_OUT" && break
        alive "$UP_PID" || break
        sleep 0.1
    done
    grep -q '^ready: ' "$UP_OUT" || sy_fail "up did not print its ready line" "$(tail -n 40 "$UP_OUT")"
    GURL=$(sed -n 's|^ready: \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$UP_OUT")
    CHILD_PIDS=$(sed -n 's/^  [a-z0-9]* *pid=\([0-9]*\) .*/\1/p' "$UP_OUT" | sort -n | tr '\n' ' ')
    for p in $CHILD_PIDS; do SY_PIDS+=("$p"); done
}

# no_survivors NAME LOGDIR PIDS... : nothing of the cluster is left, within 15 s
no_survivors() {
    local name=$1 dir=$2 left i
    shift 2
    for ((i = 0; i < 150; i++)); do
        left=""
        for p in "$@"; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && [ -z "$(holders "$dir")" ] && break
        sleep 0.1
    done
    if [ -z "$left" ] && [ -z "$(holders "$dir")" ]; then
        sy_ok "$name: no process survives (${#} children gone, nothing holds $dir open)"
    else
        sy_not_ok "$name: processes survive" "alive:$left holders: $(holders "$dir" | tr '\n' ' ')
$(ps -o pid,ppid,stat,args -p "$(echo $left $(holders "$dir") | tr ' ' ',')" 2>/dev/null)"
    fi
}

# ---- 1. a small cluster file, SIGTERM ------------------------------------------------------
LOGS1=$SY_TMP/logs1
cat >"$SY_TMP/small.yaml" <<'EOF'
model: sim/up
gateway: {port: 0, scheduler: default}
engines:
  - {count: 2, sim_speed: 10, args: ["--log-level", "info"]}
EOF
start_up small "$SY_TMP/small.yaml" --log-dir "$LOGS1"
wait_ready
sy_ok "up printed its ready line ($GURL)"
PPIDS=$(pgrep -P "$UP_PID" | sort -n | tr '\n' ' ')
sy_assert_eq "the printed pids are up's children (2 engines + gateway)" "$PPIDS" "$CHILD_PIDS"
sy_assert_eq "three children" 3 "$(echo $CHILD_PIDS | wc -w)"
for f in engine1 engine2 gateway; do
    if head -n 1 "$LOGS1/$f.log" | grep -q '^# switchyard up: .* \(engine\|gateway\) '; then
        sy_ok "$f logs to $LOGS1/$f.log (command line first)"
    else
        sy_not_ok "$f log" "$(head -n 3 "$LOGS1/$f.log" 2>&1)"
    fi
done
sy_check "the engines' KV-event endpoints reach the gateway" \
    grep -q 'kv-events=tcp://127.0.0.1:[0-9]*' "$LOGS1/gateway.log"
grep -q 'kv_events=tcp://127.0.0.1:' "$UP_OUT" && sy_ok "the ready block shows each engine's KV-event endpoint" ||
    sy_not_ok "KV-event endpoints in the ready block" "$(cat "$UP_OUT")"

sy_http GET "$GURL/v1/models"
sy_json_check "the gateway lists the model" "$SY_BODY" "'sim/up' in [m['id'] for m in j['data']]"
sy_http POST "$GURL/v1/completions" '{"model":"sim/up","prompt":"Hello from up","max_tokens":5,"ignore_eos":true}'
sy_assert_status "a completion through the gateway" 200
sy_json_check "it has text and usage" "$SY_BODY" "is_str(j['choices'][0]['text']) and j['usage']['completion_tokens'] == 5"

PREFIX=$("$SY_PY" -c 'print(" ".join("switchyard up shares this long prefix %d." % i for i in range(40)))')
sy_http POST "$GURL/v1/completions" "{\"model\":\"sim/up\",\"prompt\":\"$PREFIX First question?\",\"max_tokens\":2}"
sy_assert_status "shared prefix, first request" 200
EP1=$(tr -d '\r' <"$SY_HDRS" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
sleep 0.5 # the engine's KV events reach the gateway
sy_http POST "$GURL/v1/completions" "{\"model\":\"sim/up\",\"prompt\":\"$PREFIX Second question?\",\"max_tokens\":2}"
sy_assert_status "shared prefix, second request" 200
EP2=$(tr -d '\r' <"$SY_HDRS" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
sy_json_check "the second one reports cached prompt tokens" "$SY_BODY" \
    "j['usage']['prompt_tokens_details']['cached_tokens'] > 0"
sy_assert_eq "both were served by the same engine" "$EP1" "$EP2"

kill -TERM "$UP_PID"
wait_exit "$UP_PID" 40
sy_assert_eq "SIGTERM: up exits 0" 0 $?
grep -q 'stopping (SIGTERM): the gateway first, then the engines' "$UP_OUT" &&
    grep -q 'every child exited cleanly' "$UP_OUT" && sy_ok "up reports the ordered stop" ||
    sy_not_ok "stop report" "$(tail -n 15 "$UP_OUT")"
# gateway first: its "stopped" line comes before the engines'
order=$(sed -n 's/^switchyard up: \([a-z0-9]*\) stopped$/\1/p' "$UP_OUT" | tr '\n' ' ')
[[ "$order" == "gateway engine"* ]] && sy_ok "the gateway stopped before the engines ($order)" ||
    sy_not_ok "stop order" "$order"
no_survivors "SIGTERM" "$LOGS1" $CHILD_PIDS

# ---- 2. the default cluster, SIGINT ---------------------------------------------------------
# exactly `switchyard up` when 127.0.0.1:8080 is free; else the same with --port 0
DEF_ARGS=()
if ! "$SY_PY" -c 'import socket; socket.socket().bind(("127.0.0.1", 8080))' 2>/dev/null; then
    DEF_ARGS=(--port 0)
    sy_diag "127.0.0.1:8080 is taken: the default cluster runs with --port 0"
fi
start_up default "${DEF_ARGS[@]}"
wait_ready
[ ${#DEF_ARGS[@]} -gt 0 ] || sy_assert_eq "the default gateway port is 8080" http://127.0.0.1:8080 "$GURL"
DEFDIR=$(sed -n 's|^switchyard up: starting .* logs in \(/tmp/switchyard-up\.[A-Za-z0-9]*\)$|\1|p' "$UP_OUT")
[ -n "$DEFDIR" ] && [ -d "$DEFDIR" ] && sy_ok "without --log-dir the logs go to a new $DEFDIR" ||
    sy_not_ok "default log dir" "$(head -n 3 "$UP_OUT")"
sy_assert_eq "the default cluster: 3 engines + gateway" 4 "$(echo $CHILD_PIDS | wc -w)"
sy_check "model sim-llama" grep -q 'cluster ready: 3 engines, model sim-llama' "$UP_OUT"
sy_check "the gateway runs the default scheduler" grep -q -- '--scheduler default' "$DEFDIR/gateway.log"
sy_check "the engines are sim a100-llama3-8b at speed 1 with KV events" \
    grep -q -- '--sim --sim-profile a100-llama3-8b --sim-speed 1 .*--kv-events-config' "$DEFDIR/engine3.log"
sy_http POST "$GURL/v1/completions" '{"model":"sim-llama","prompt":"Hi","max_tokens":2}'
sy_assert_status "the default cluster serves sim-llama" 200
kill -INT "$UP_PID"
wait_exit "$UP_PID" 40
sy_assert_eq "SIGINT: up exits 0" 0 $?
no_survivors "SIGINT" "$DEFDIR" $CHILD_PIDS
[ -n "$DEFDIR" ] && rm -rf "$DEFDIR"

# ---- 3. up SIGKILLed: the children follow (parent-death signal) ------------------------------
LOGS3=$SY_TMP/logs3
start_up sigkill "$SY_TMP/small.yaml" --log-dir "$LOGS3"
wait_ready
kill -KILL "$UP_PID"
wait_exit "$UP_PID" 10
no_survivors "up SIGKILLed" "$LOGS3" $CHILD_PIDS

# ---- 4. children that cannot start ------------------------------------------------------------
LOGS4=$SY_TMP/logs4
cat >"$SY_TMP/badmodel.yaml" <<'EOF'
model: sim/up
gateway: {port: 0}
engines:
  - {count: 1, sim_speed: 10}
  - {model: /nonexistent/up-test-model.gguf}
EOF
start_up badmodel "$SY_TMP/badmodel.yaml" --log-dir "$LOGS4"
wait_exit "$UP_PID" "$READY_S"
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 137 ] && sy_ok "an engine with a bad model path: up exits $rc" ||
    sy_not_ok "bad model path exit code ($rc)" "$(tail -n 30 "$UP_OUT")"
grep -q 'engine2 (pid [0-9]*) exited with status [0-9]* during start-up' "$UP_OUT" &&
    grep -q "last lines of $LOGS4/engine2.log" "$UP_OUT" &&
    grep -q '^    .*/nonexistent/up-test-model.gguf' "$UP_OUT" &&
    sy_ok "it names engine2 and prints its log tail" ||
    sy_not_ok "bad model report" "$(tail -n 30 "$UP_OUT")"
! grep -q '^ready: ' "$UP_OUT" && sy_ok "no ready line" || sy_not_ok "printed ready"
no_survivors "bad model" "$LOGS4"

LOGS5=$SY_TMP/logs5
cat >"$SY_TMP/badgw.yaml" <<'EOF'
model: sim/up
gateway: {port: 0, args: ["--no-such-gateway-flag"]}
engines:
  - {count: 2, sim_speed: 10}
EOF
start_up badgw "$SY_TMP/badgw.yaml" --log-dir "$LOGS5"
wait_exit "$UP_PID" "$READY_S"
rc=$?
[ "$rc" -eq 1 ] && sy_ok "a gateway with a bad flag: up exits 1" ||
    sy_not_ok "bad gateway flag exit code ($rc)" "$(tail -n 30 "$UP_OUT")"
grep -q 'gateway (pid [0-9]*) exited with status 2 during start-up' "$UP_OUT" &&
    grep -q '^    .*no-such-gateway-flag' "$UP_OUT" &&
    grep -q 'engine1 stopped' "$UP_OUT" && grep -q 'engine2 stopped' "$UP_OUT" &&
    sy_ok "it names the gateway, prints its log tail and stops the ready engines" ||
    sy_not_ok "bad gateway report" "$(tail -n 30 "$UP_OUT")"
no_survivors "bad gateway flag" "$LOGS5"

# a gateway that never lists the model (the engine serves another name): the ready deadline
LOGS7=$SY_TMP/logs7
cat >"$SY_TMP/notready.yaml" <<'EOF'
model: sim/wanted
gateway: {port: 0}
engines:
  - {count: 1, sim_speed: 10, args: ["--served-model-name", "sim/other"]}
EOF
start_up notready "$SY_TMP/notready.yaml" --log-dir "$LOGS7" --ready-timeout 6
wait_exit "$UP_PID" 60
rc=$?
[ "$rc" -eq 1 ] && grep -q "gateway (pid [0-9]*) was not ready within 6 s (GET /v1/models does not list 'sim/wanted' yet)" "$UP_OUT" &&
    grep -q "last lines of $LOGS7/gateway.log" "$UP_OUT" &&
    sy_ok "a child not ready within --ready-timeout: named with its log tail, exit 1" ||
    sy_not_ok "ready timeout (exit $rc)" "$(tail -n 30 "$UP_OUT")"
no_survivors "ready timeout" "$LOGS7"

# ---- 5. an engine dies while the cluster runs ------------------------------------------------
LOGS6=$SY_TMP/logs6
start_up enginedies "$SY_TMP/small.yaml" --log-dir "$LOGS6"
wait_ready
E2=$(sed -n 's/^  engine2 *pid=\([0-9]*\) .*/\1/p' "$UP_OUT")
kill -KILL "$E2"
wait_exit "$UP_PID" 40
rc=$?
sy_assert_eq "an engine killed while running: up exits 1" 1 "$rc"
grep -q "engine2 (pid $E2) was killed by signal 9 (Killed) while the cluster was running" "$UP_OUT" &&
    grep -q "last lines of $LOGS6/engine2.log" "$UP_OUT" && sy_ok "it reports engine2 with its log tail" ||
    sy_not_ok "dead engine report" "$(tail -n 30 "$UP_OUT")"
no_survivors "engine died" "$LOGS6" $CHILD_PIDS

# ---- 6. bad files, --dry-run ------------------------------------------------------------------
printf 'model: sim/up\nengines:\n  - {count: 1, role: leader}\n' >"$SY_TMP/bad.yaml"
out=$("$SY_BIN" up "$SY_TMP/bad.yaml" 2>&1)
rc=$?
sy_assert_eq "a bad cluster file: exit 2" 2 "$rc"
[[ "$out" == *"$SY_TMP/bad.yaml:3: 'role' must be both, prefill or decode"* ]] &&
    sy_ok "the error names the file and line" || sy_not_ok "bad file message" "$out"
out=$("$SY_BIN" up /nonexistent/cluster.yaml 2>&1)
sy_assert_eq "a missing cluster file: exit 2" 2 $?
out=$("$SY_BIN" up --scheduler nope 2>&1)
[ $? -eq 2 ] && [[ "$out" == *"unknown scheduler 'nope'"* ]] && sy_ok "an unknown scheduler: exit 2" ||
    sy_not_ok "unknown scheduler" "$out"
out=$("$SY_BIN" up --dry-run "$SY_SOURCE_DIR/deploy/cluster/pd.yaml" 2>&1)
[ $? -eq 0 ] && [ "$(grep -c ' engine --sim ' <<<"$out")" -eq 3 ] &&
    grep -q ' gateway .*--scheduler pd .*role=prefill .*role=decode .*role=decode --debug-scores' <<<"$out" &&
    [ "$(grep -c 'kv-transfer-config .*TcpConnector' <<<"$out")" -eq 3 ] &&
    sy_ok "--dry-run prints the P/D example's command lines: roles, the pd scheduler, TcpConnectors" ||
    sy_not_ok "dry run" "$out"

# the P/D example runs: a long prompt goes prefill -> decode through the gateway
PDLOG=$SY_TMP/pd-up
mkdir -p "$PDLOG"
sy_bg "$SY_TMP/pd-up.out" "$SY_BIN" up "$SY_SOURCE_DIR/deploy/cluster/pd.yaml" --log-dir "$PDLOG"
PDUP=$SY_BG_PID
pd_ready() { grep -q '^ready: http' "$SY_TMP/pd-up.out"; }
if sy_wait_until 30 pd_ready; then
    PDURL=$(sed -n 's/^ready: \(http:[^ ]*\).*/\1/p' "$SY_TMP/pd-up.out" | head -n 1)
    LONG=$(printf 'pd %0400d' 0)
    sy_http POST "$PDURL/v1/completions" "{\"model\":\"sim-llama\",\"prompt\":\"$LONG\",\"max_tokens\":4}" \
        -H 'Content-Type: application/json'
    sy_assert_status "pd.yaml: a long prompt through the P/D gateway: 200" 200
    sy_check "pd.yaml: the gateway took the prefill-decode path" grep -qi '^x-switchyard-prefill-endpoint:' "$SY_HDRS"
else
    sy_not_ok "pd.yaml cluster did not become ready" "$(tail -n 20 "$SY_TMP/pd-up.out")"
fi
sy_stop_pid "$PDUP" >/dev/null

sy_finish
