#!/usr/bin/env bash
# test_drain.sh - SIGTERM drains the engine: the listener closes, /health stops answering 200,
# in-flight streams run to completion within --drain-timeout, and the process exits 0. When the
# deadline passes first, the remaining streams end properly in-band (finish_reason "abort", then
# "data: [DONE]") and the exit code is still 0. Starts `switchyard engine --sim` on 127.0.0.1 only; bounded waits.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/drain

# wait_exit PID TIMEOUT_S : waits (bounded) for PID to exit on its own after the one SIGTERM the
# test sent (a second signal would mean "stop now"); returns its exit status, 137 if killed.
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

# stream PATH_OUT MAX_TOKENS : a background streaming completion (curl -N), tracked by lib.sh
stream() {
    sy_bg "$1.err" curl -sN --max-time 60 -o "$1" "$SY_URL/v1/completions" \
        -H 'Content-Type: application/json' \
        -d "{\"model\":\"$MODEL\",\"prompt\":\"drain me\",\"max_tokens\":$2,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
}

# --- 1. in-flight streams finish within the deadline ---------------------------------------------
sy_start_engine graceful --served-model-name "$MODEL" --sim-speed 1 --drain-timeout 20 --log-level info
PID=$SY_PID
OUT1=$SY_TMP/s1.txt
stream "$OUT1" 150   # ~150 decode steps of ~10.5 ms on the a100 profile: about 1.6 s
CURL1=$SY_BG_PID
sy_wait_until 5 grep -q '"text"' "$OUT1" || sy_fail "the stream did not start" "$(cat "$OUT1")"
kill -TERM "$PID"
sy_wait_until 5 grep -q 'event=engine.draining' "$SY_LOG"
sy_check "draining is logged" grep -q 'event=engine.draining' "$SY_LOG"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$SY_URL/health")
[ "$code" != 200 ] && sy_ok "new connections are not served while draining (got '$code')" ||
    sy_not_ok "new connections are not served while draining" "status $code"
wait "$CURL1" 2>/dev/null
sy_check "the in-flight stream ended with [DONE]" grep -q 'data: \[DONE\]' "$OUT1"
"$SY_PY" - "$OUT1" <<'PYEOF' && sy_ok "stream complete: 150 tokens, finish_reason length" || sy_not_ok "stream complete: 150 tokens, finish_reason length" "$(tail -c 600 "$OUT1")"
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
objs = [json.loads(e) for e in ev if e != "[DONE]"]
fin = [c["finish_reason"] for o in objs for c in o["choices"] if c.get("finish_reason")]
usage = [o["usage"] for o in objs if o.get("usage")]
sys.exit(0 if fin == ["length"] and usage and usage[-1]["completion_tokens"] == 150 else 1)
PYEOF
wait_exit "$PID" 15
sy_assert_eq "graceful drain exits 0" 0 "$?"
sy_check "drained is logged" grep -q 'event=engine.drained' "$SY_LOG"

# --- 2. the deadline passes first: streams end in-band with "abort" -----------------------------
sy_start_engine deadline --served-model-name "$MODEL" --sim-speed 1 --drain-timeout 0.5 --log-level info
PID=$SY_PID
OUT2=$SY_TMP/s2.txt
stream "$OUT2" 3000  # ~30 s of decoding: cannot finish within the 0.5 s deadline
CURL2=$SY_BG_PID
sy_wait_until 5 grep -q '"text"' "$OUT2" || sy_fail "the long stream did not start" "$(cat "$OUT2")"
t0=$SECONDS
kill -TERM "$PID"
wait_exit "$PID" 15
rc=$?
sy_assert_eq "drain past the deadline still exits 0" 0 "$rc"
[ $((SECONDS - t0)) -le 5 ] && sy_ok "exit within the deadline plus grace ($((SECONDS - t0)) s)" ||
    sy_not_ok "exit within the deadline plus grace" "$((SECONDS - t0)) s"
wait "$CURL2" 2>/dev/null
sy_check "the aborted stream ended with [DONE]" grep -q 'data: \[DONE\]' "$OUT2"
sy_check "the aborted stream carries finish_reason abort" grep -q '"finish_reason":"abort"' "$OUT2"
sy_check "the drain timeout is logged" grep -q 'event=engine.drain_timeout' "$SY_LOG"

sy_finish
