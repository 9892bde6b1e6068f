#!/usr/bin/env bash
# test_gateway_cap.sh - `switchyard gateway --max-upstream-conns`: with a cap of 1 in front of one
# `switchyard engine --sim` (real-time speed, so a long answer holds its connection for about a
# second), four concurrent requests reach the engine one at a time (the gateway's queue gauges
# show one busy connection and three waiting, the engine never runs more than one) and all four
# succeed in arrival order; with a queue of one and a short queue timeout, a request that waits too
# long and one that finds the queue full both get 503 with Retry-After, the endpoint is not ejected
# (it is busy, not failing) and serves the next request. Bounded waits; every process is cleaned
# up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/cap
sy_start_engine e0 --served-model-name "$MODEL" --sim-speed 1 --log-level warn
EURL=$SY_URL

start_gateway() { # NAME ARGS... : sets GURL, GPID
    local port
    port=$(sy_free_port)
    GURL=http://127.0.0.1:$port
    sy_bg "$SY_TMP/$1.log" "$SY_BIN" gateway --host 127.0.0.1 --port "$port" \
        --scheduler round-robin --endpoint "$EURL" --log-level info "${@:2}"
    GPID=$SY_BG_PID
    sy_wait_until 20 sy_health_ok "$GURL" || sy_fail "gateway $1 did not become healthy" \
        "$(tail -n 30 "$SY_TMP/$1.log")"
    # ready once the endpoint's models are known
    sy_wait_until 20 grep -q "$MODEL" <(curl -s "$GURL/v1/models") ||
        sy_fail "gateway $1 does not list $MODEL"
}

queue() { # KIND : the gateway's queue gauge of that kind
    sy_metric "$GURL" switchyard_gateway_endpoint_queue kind="$1"
}
queue_is() { # KIND VALUE
    [ "$(queue "$1")" == "$2" ]
}

# long REQUEST_NO OUTFILE [TOKENS] : a completion of TOKENS (60: about 0.6 s at --sim-speed 1)
# tokens; its number, status and the time it finished appended to OUTFILE
long() {
    local code n=${3:-60}
    code=$(curl -sS -o "$SY_TMP/long$1.json" -w '%{http_code}' --max-time 60 \
        -H 'Content-Type: application/json' \
        -d "{\"model\":\"$MODEL\",\"prompt\":\"request $1\",\"max_tokens\":$n,\"ignore_eos\":true}" \
        "$GURL/v1/completions" 2>/dev/null)
    echo "$1 $code $(date +%s%N)" >>"$2"
}

# ---- cap 1: four requests, one at a time, in arrival order ----
start_gateway capped --max-upstream-conns 1
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"warm\",\"max_tokens\":1}"
sy_assert_status "a request through the capped gateway" 200
RUN0=$(sy_metric "$EURL" vllm:request_success_total)
OUT=$SY_TMP/order.txt
: >"$OUT"
JOBS=()
for i in 1 2 3 4; do
    long "$i" "$OUT" &
    JOBS+=($!)
    # each one reaches the gateway before the next is sent: the arrival order is 1, 2, 3, 4
    if [ "$i" == 1 ]; then
        sy_wait_until 10 queue_is busy_connections 1.0 || sy_not_ok "request 1 did not start"
    else
        sy_wait_until 10 queue_is waited_total "$((i - 1)).0" ||
            sy_not_ok "request $i did not reach the gateway's queue" "waited_total=$(queue waited_total)"
    fi
done
if sy_wait_until 5 queue_is waiting 3.0; then
    sy_ok "with the first request running, three wait in the gateway"
else
    sy_not_ok "three requests waiting" "waiting=$(queue waiting)"
fi
sy_assert_eq "one connection carries a request" 1.0 "$(queue busy_connections)"
RUNNING=$(sy_metric "$EURL" vllm:num_requests_running)
WAITING=$(sy_metric "$EURL" vllm:num_requests_waiting)
sy_assert_eq "the engine runs one request, none waiting in it" "1.0 0.0" "$RUNNING $WAITING"
for j in "${JOBS[@]}"; do wait "$j"; done
sy_assert_eq "all four succeed" "200 200 200 200" "$(awk '{print $2}' "$OUT" | paste -sd' ')"
sy_assert_eq "they finish in arrival order" "1 2 3 4" "$(sort -k3,3n "$OUT" | awk '{print $1}' | paste -sd' ')"
for i in 1 2 3 4; do
    sy_json_check "request $i got its 60 tokens" "$SY_TMP/long$i.json" \
        "j['usage']['completion_tokens'] == 60"
done
sy_assert_eq "the engine served them" "$(echo "$RUN0 + 4" | bc)" "$(sy_metric "$EURL" vllm:request_success_total)"
sy_assert_eq "nothing waits afterwards" "0.0 0.0" "$(queue waiting) $(queue busy_connections)"
sy_stop_pid "$GPID"

# ---- cap 1, queue of 1, 1 s queue timeout: timeout and queue full give 503 ----
# (the first request holds the connection for about 2 s: 200 tokens)
start_gateway short --max-upstream-conns 1 --max-queued-per-endpoint 1 \
    --upstream-queue-timeout-ms 1000 --eject-after 1
OUT=$SY_TMP/short.txt
: >"$OUT"
long 1 "$OUT" 200 &
HOLD=$!
sy_wait_until 10 queue_is busy_connections 1.0 || sy_not_ok "the first request holds the connection"
# the second waits (and times out after 1 s), the third finds the queue full
curl -sS -o "$SY_TMP/q2.json" -D "$SY_TMP/q2.hdr" -w '%{http_code}' --max-time 30 \
    -H 'Content-Type: application/json' -d "{\"model\":\"$MODEL\",\"prompt\":\"q2\",\"max_tokens\":1}" \
    "$GURL/v1/completions" >"$SY_TMP/q2.code" 2>/dev/null &
Q2=$!
sy_wait_until 10 queue_is waiting 1.0 || sy_not_ok "the second request waits"
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"q3\",\"max_tokens\":1}"
sy_assert_status "a request that finds the queue full gets 503" 503
sy_check "... with Retry-After" grep -qi '^retry-after: 1' "$SY_HDRS"
sy_json_check "... and an OpenAI error body" "$SY_BODY" \
    "j['error']['code'] == 503 and j['error']['type'] == 'ServiceUnavailable'"
wait "$Q2"
sy_assert_eq "a request that waits past the queue timeout gets 503" 503 "$(cat "$SY_TMP/q2.code")"
sy_check "... with Retry-After" grep -qi '^retry-after: 1' "$SY_TMP/q2.hdr"
wait "$HOLD"
sy_assert_eq "the request holding the connection was not disturbed" "1 200" "$(awk '{print $1, $2}' "$OUT")"
sy_assert_eq "queue counters: one timeout, one full" "1.0 1.0" "$(queue timeouts) $(queue full)"
sy_assert_eq "the busy endpoint was not ejected (--eject-after 1)" "0.0 1.0" \
    "$(sy_metric "$GURL" switchyard_gateway_ejections_total) $(sy_metric "$GURL" switchyard_gateway_endpoint_up)"
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"after\",\"max_tokens\":1}"
sy_assert_status "and it serves the next request" 200

# ---- bad values are refused at start ----
for bad in "--max-queued-per-endpoint 0" "--upstream-queue-timeout-ms 0" "--max-upstream-conns 99999999"; do
    # shellcheck disable=SC2086
    if timeout 10 "$SY_BIN" gateway --host 127.0.0.1 --port 0 --endpoint "$EURL" $bad \
        >"$SY_TMP/bad.log" 2>&1; then
        sy_not_ok "gateway $bad is refused"
    else
        sy_check "gateway $bad is refused with a message" grep -q "out of range" "$SY_TMP/bad.log"
    fi
done
sy_finish
