#!/usr/bin/env bash
# test_pd_gateway.sh - the gateway's prefill/decode disaggregation against real engines: two
# `switchyard engine --sim` prefill engines and one decode engine with --kv-transfer-config
# (TcpConnector, kv_both), plus misbehaving prefill endpoints (pd_fake_prefill.py). Checks that a
# long prompt goes prefill then decode (response headers, the decision header's "pd" member, the
# engines' KV-transfer counters, the decode answer's id carrying the one X-Request-Id), that
# streaming through P/D is a well-formed SSE stream with the same text as without P/D, that short
# prompts and the per-request threshold header decide as documented, the gateway's P/D metrics,
# and the failure paths: prefill answers garbage / null parameters / too slowly -> local prefill on
# the decode engine (200), the client going away mid-prefill, policy retry with a dead prefill
# endpoint -> served with the other one's KV, the decider reading the decode engine's prefix cache
# (KV events: a repeated prompt stays decode-only), the prefill engine killed -> 200 by local
# prefill, every decode engine dead -> 502/503 quickly, never a hang. 127.0.0.1 only, bounded
# waits.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/pd
export PYTHONHASHSEED=0
FAKE=$SY_SOURCE_DIR/tests/integration/pd_fake_prefill.py
LONG="The quick brown fox jumps over the lazy dog while the patient cat watches from the warm windowsill, counting every leap."

start_pd_engine() { # NAME : a sim engine with KV transfer; sets SY_PORT, SY_PID
    local kp
    kp=$(sy_free_port)
    sy_start_engine "$1" --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
        --kv-transfer-config "{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\",\"kv_port\":$kp}"
}

start_fake() { # NAME MODE : sets FPORT, FPID, FLOG (the request log)
    FPORT=$(sy_free_port)
    FLOG=$SY_TMP/fake-$1.requests
    : >"$FLOG"
    sy_bg "$SY_TMP/fake-$1.log" "$SY_PY" "$FAKE" "$FPORT" "$MODEL" "$2" "$FLOG"
    FPID=$SY_BG_PID
    sy_wait_until 10 sy_health_ok "http://127.0.0.1:$FPORT" ||
        sy_fail "fake prefill '$1' did not start" "$(tail -n 20 "$SY_TMP/fake-$1.log")"
}

models_known() { curl -s --max-time 2 "$1/v1/models" | grep -q "\"$MODEL\""; }

GW_NAMES=()
GW_PIDS=()
start_gateway() { # NAME ARGS... : sets GURL, GPID, GLOG
    local name=$1 port
    shift
    port=$(sy_free_port)
    GURL=http://127.0.0.1:$port
    GLOG=$SY_TMP/gateway-$name.log
    sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$port" --debug-scores \
        --health-interval-ms 200 --log-level info "$@"
    GPID=$SY_BG_PID
    GW_NAMES+=("$name")
    GW_PIDS+=("$GPID")
    sy_wait_until 20 sy_health_ok "$GURL" || sy_fail "gateway '$name' did not become healthy" \
        "$(tail -n 30 "$GLOG")"
    sy_wait_until 10 models_known "$GURL" || sy_fail "gateway '$name' does not list $MODEL"
}

body_long() { # [extra JSON members]
    printf '{"model":"%s","prompt":"%s","max_tokens":6,"temperature":0%s}' "$MODEL" "$LONG" "${1:-}"
}

hdr() { # NAME : the value of response header NAME of the last sy_http ("" if absent)
    tr -d '\r' <"$SY_HDRS" | awk -v n="$(printf '%s' "$1" | tr 'A-Z' 'a-z')" \
        'BEGIN{FS=": "} {k=tolower($1)} k==n {sub(/^[^:]*: /, ""); print; exit}'
}

decision_pd() { # EXPR over d (the "pd" member of the last x-switchyard-decision header)
    hdr x-switchyard-decision >"$SY_TMP/decision.json"
    sy_py_json "$SY_TMP/decision.json" "(lambda d: $1)(j['pd'])"
}

check_pd() { # NAME EXPR : pass iff EXPR over the decision's pd member holds
    local out
    out=$(decision_pd "$2" 2>&1)
    if [ "$out" == "True" ]; then sy_ok "$1"; else
        sy_not_ok "$1" "check: $2
decision: $(hdr x-switchyard-decision)"
    fi
}

metric_is() { # NAME URL METRIC LABELS... -- OP VALUE : numeric comparison of sy_metric
    local name=$1 url=$2 metric=$3
    shift 3
    local labels=()
    while [ "$1" != "--" ]; do labels+=("$1"); shift; done
    local op=$2 want=$3 v
    v=$(sy_metric "$url" "$metric" "${labels[@]}")
    if "$SY_PY" -c "import sys; v=float(sys.argv[1]); sys.exit(0 if v $op float(sys.argv[2]) else 1)" \
        "$v" "$want" 2>/dev/null; then
        sy_ok "$name"
    else
        sy_not_ok "$name" "$metric{${labels[*]}} = $v, want $op $want"
    fi
}

# ---------------------------------------------------------------------------------------------
# engines: P1, P2 prefill, D decode

start_pd_engine p1
P1_PORT=$SY_PORT P1_PID=$SY_PID P1_URL=$SY_URL
start_pd_engine p2
P2_PORT=$SY_PORT P2_URL=$SY_URL
start_pd_engine d
D_PORT=$SY_PORT D_PID=$SY_PID D_URL=$SY_URL

# ---------------------------------------------------------------------------------------------
# gateway A: the built-in pd scheduler, P1 + D

# (with an audit log: governance and P/D together, and the record names the prefill endpoint)
start_gateway a --scheduler pd --endpoint "$P1_URL,role=prefill" --endpoint "$D_URL,role=decode" \
    --audit-log "$SY_TMP/audit-a.log"
GA=$GURL GA_PID=$GPID GA_LOG=$GLOG
grep -q 'pd=on' "$GA_LOG" && sy_ok "gateway A logs pd=on" || sy_not_ok "gateway A logs pd=on" \
    "$(grep gateway.start "$GA_LOG")"

# 1. a long prompt: prefill on P1, decode on D carrying P1's KV, one request id
LEASED0=$(sy_metric "$P1_URL" switchyard:kv_transfer_requests_total path=leased)
PULLED0=$(sy_metric "$D_URL" switchyard:kv_transfer_requests_total path=pulled)
sy_http POST "$GA/v1/completions" "$(body_long)" -H 'X-Request-Id: pd-itest-1'
sy_assert_status "long prompt through P/D" 200
sy_assert_eq "decoded on D" "127.0.0.1:$D_PORT" "$(hdr x-switchyard-endpoint)"
sy_assert_eq "prefilled on P1 (x-switchyard-prefill-endpoint)" "127.0.0.1:$P1_PORT" \
    "$(hdr x-switchyard-prefill-endpoint)"
check_pd "decision: prefill-decode, path prefill_decode, threshold 16" \
    "d['decision'] == 'prefill-decode' and d['path'] == 'prefill_decode' and d['threshold'] == 16 and d['prefill'] == '127.0.0.1:$P1_PORT' and d['prefillAttempts'] == 1 and d['prefillMs'] >= 0"
sy_json_check "the decode answer carries the client's request id" "$SY_BODY" \
    "j['id'] == 'cmpl-pd-itest-1' and j['choices'][0]['finish_reason'] == 'length'"
sy_json_check "the decode engine reports the pulled prompt blocks as cached" "$SY_BODY" \
    "j['usage']['prompt_tokens_details']['cached_tokens'] >= 16 * ((j['usage']['prompt_tokens'] - 1) // 16)"
cp "$SY_BODY" "$SY_TMP/pd_answer.json"
if sy_wait_until 5 grep -q '"request_id":"pd-itest-1"' "$SY_TMP/audit-a.log" &&
    "$SY_PY" - "$SY_TMP/audit-a.log" "127.0.0.1:$P1_PORT" "127.0.0.1:$D_PORT" <<'PYEOF'; then
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"pd-itest-1"' in l]
r = recs[-1]
sys.exit(0 if r["prefill_endpoint"] == sys.argv[2] and r["endpoint"] == sys.argv[3] and r["status"] == 200 else 1)
PYEOF
    sy_ok "the audit record names the prefill and the decode endpoint"
else
    sy_not_ok "the audit record names the prefill endpoint" "$(grep pd-itest-1 "$SY_TMP/audit-a.log" | head -c 800)"
fi
sy_assert_eq "P1 leased the prompt's KV" "$("$SY_PY" -c "print(float('$LEASED0') + 1)")" \
    "$(sy_metric "$P1_URL" switchyard:kv_transfer_requests_total path=leased)"
sy_assert_eq "D pulled it" "$("$SY_PY" -c "print(float('$PULLED0') + 1)")" \
    "$(sy_metric "$D_URL" switchyard:kv_transfer_requests_total path=pulled)"

# 2. streaming through P/D: a well-formed stream with the same text as without P/D
SSE_BODY=$(printf '{"model":"%s","messages":[{"role":"user","content":"%s"}],"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' "$MODEL" "$LONG")
sy_http POST "$GA/v1/chat/completions" "$SSE_BODY"
sy_assert_status "streamed chat through P/D" 200
cp "$SY_BODY" "$SY_TMP/pd_stream.txt"
check_pd "the stream went prefill then decode" "d['path'] == 'prefill_decode'"
sse_text() { # FILE : checks the SSE framing, prints the concatenated content
    "$SY_PY" - "$1" <<'PYEOF'
import json, sys
events = [e for e in open(sys.argv[1]).read().split("\n\n") if e.strip()]
assert events[-1].strip() == "data: [DONE]", events[-1]
text, usage = "", None
for e in events[:-1]:
    assert e.startswith("data: "), e
    j = json.loads(e[6:])
    assert "error" not in j, j
    for c in j["choices"]:
        text += c["delta"].get("content") or ""
    usage = j.get("usage") or usage
assert usage and usage["completion_tokens"] == 6, usage
print(text)
PYEOF
}
PD_TEXT=$(sse_text "$SY_TMP/pd_stream.txt")
if [ -n "$PD_TEXT" ]; then sy_ok "P/D stream well formed ([DONE], usage, text '$PD_TEXT')"; else
    sy_not_ok "P/D stream well formed" "$(head -c 1500 "$SY_TMP/pd_stream.txt")"; fi
sy_http POST "$GA/v1/chat/completions" "$SSE_BODY" -H 'x-switchyard-pd-threshold: 99999999999'
sy_assert_status "the same stream without P/D (threshold header: never)" 200
check_pd "threshold header 'never': decode-only" \
    "d['decision'] == 'decode-only' and d['path'] == 'decode_only' and d['prefill'] is None"
sy_assert_eq "no prefill endpoint header without P/D" "" "$(hdr x-switchyard-prefill-endpoint)"
sy_assert_eq "same text with and without P/D" "$PD_TEXT" "$(sse_text "$SY_BODY")"

# 3. a short prompt stays on the decode engine; the header forces P/D
sy_http POST "$GA/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":2}"
sy_assert_status "short prompt" 200
check_pd "short prompt (< 16 uncached tokens): decode-only" \
    "d['decision'] == 'decode-only' and d['uncachedTokens'] < 16"
sy_http POST "$GA/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":2}" \
    -H 'x-switchyard-pd-threshold: 0'
sy_assert_status "short prompt with x-switchyard-pd-threshold: 0" 200
check_pd "threshold 0: always prefill-decode" "d['decision'] == 'prefill-decode' and d['threshold'] == 0"
sy_assert_eq "... prefilled on P1" "127.0.0.1:$P1_PORT" "$(hdr x-switchyard-prefill-endpoint)"

# 4. the client may not set kv_transfer_params
sy_http POST "$GA/v1/completions" \
    "{\"model\":\"$MODEL\",\"prompt\":\"x\",\"kv_transfer_params\":{\"do_remote_prefill\":true,\"remote_host\":\"10.0.0.1\"}}"
sy_assert_status "a client's kv_transfer_params is refused" 400

# 5. metrics
metric_is "disagg decisions: prefill-decode" "$GA" llm_d_inference_scheduler_disagg_decision_total \
    "model_name=$MODEL" decision_type=prefill-decode -- '>=' 3
metric_is "disagg decisions: decode-only" "$GA" llm_d_inference_scheduler_disagg_decision_total \
    "model_name=$MODEL" decision_type=decode-only -- '>=' 2
metric_is "P/D paths: prefill_decode" "$GA" switchyard_gateway_pd_requests_total \
    path=prefill_decode -- '==' 3
metric_is "P/D paths: decode_only" "$GA" switchyard_gateway_pd_requests_total path=decode_only -- '==' 2
metric_is "prefill durations observed" "$GA" switchyard_gateway_prefill_duration_seconds_count \
    outcome=ok -- '==' 3
if curl -s --max-time 5 "$GA/metrics" | "$SY_PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
list(text_string_to_metric_families(sys.stdin.read()))' 2>"$SY_TMP/prom.err"; then
    sy_ok "gateway /metrics parses with prometheus_client"
else
    sy_not_ok "gateway /metrics parses with prometheus_client" "$(tail -n 5 "$SY_TMP/prom.err")"
fi

# ---------------------------------------------------------------------------------------------
# gateway B: the prefill endpoint answers garbage -> local prefill on D

start_fake garbage garbage
start_gateway b --scheduler pd --endpoint "http://127.0.0.1:$FPORT,role=prefill" \
    --endpoint "$D_URL,role=decode"
GB=$GURL
RECOMP0=$(sy_metric "$D_URL" switchyard:kv_transfer_requests_total path=pulled)
sy_http POST "$GB/v1/completions" \
    "$(body_long ',"stream":true,"stream_options":{"include_usage":true},"min_tokens":2')" \
    -H 'X-Request-Id: pd-itest-garbage'
sy_assert_status "garbage prefill answer: the client still gets 200" 200
check_pd "garbage: fallback_local" "d['decision'] == 'prefill-decode' and d['path'] == 'fallback_local' and d['prefill'] is None"
sy_assert_eq "garbage: decoded on D" "127.0.0.1:$D_PORT" "$(hdr x-switchyard-endpoint)"
grep -q '"id":"cmpl-pd-itest-garbage"' "$SY_BODY" && grep -q 'data: \[DONE\]' "$SY_BODY" &&
    sy_ok "garbage: the stream is served by D with the same request id" ||
    sy_not_ok "garbage: the stream is served by D" "$(head -c 600 "$SY_BODY")"
metric_is "garbage: prefill failure reason bad_body" "$GB" switchyard_gateway_prefill_failures_total \
    reason=bad_body -- '==' 1
metric_is "garbage: path fallback_local" "$GB" switchyard_gateway_pd_requests_total \
    path=fallback_local -- '==' 1
sy_assert_eq "garbage: D did not pull anything" "$RECOMP0" \
    "$(sy_metric "$D_URL" switchyard:kv_transfer_requests_total path=pulled)"
# what the prefill endpoint was sent (protocol step 1)
if "$SY_PY" - "$FLOG" <<'PYEOF'; then
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 1, lines
r = lines[0]
b = r["body"]
assert r["path"] == "/v1/completions", r
assert r["request_id"] == "pd-itest-garbage", r
assert b["stream"] is False and b["max_tokens"] == 1, b
assert "stream_options" not in b and "min_tokens" not in b and "max_completion_tokens" not in b, b
assert b["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False,
    "remote_engine_id": None, "remote_block_ids": None, "remote_host": None, "remote_port": None}, b
assert b["temperature"] == 0 and b["model"] == "sim/pd" and b["prompt"].startswith("The quick"), b
PYEOF
    sy_ok "prefill request: stream false, max_tokens 1, stream_options/min_tokens removed, kv_transfer_params, same X-Request-Id"
else
    sy_not_ok "prefill request rewrite" "$(cat "$FLOG")"
fi

# ---------------------------------------------------------------------------------------------
# gateway C: the prefill engine keeps no blocks (kv_transfer_params null) -> local prefill

start_fake null null
start_gateway c --scheduler pd --endpoint "http://127.0.0.1:$FPORT,role=prefill" \
    --endpoint "$D_URL,role=decode"
sy_http POST "$GURL/v1/chat/completions" \
    "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"$LONG\"}],\"max_completion_tokens\":4}"
sy_assert_status "null kv_transfer_params: 200" 200
check_pd "null params: fallback_local" "d['path'] == 'fallback_local'"
metric_is "null params: reason no_params" "$GURL" switchyard_gateway_prefill_failures_total \
    reason=no_params -- '==' 1
if "$SY_PY" -c '
import json, sys
b = json.loads(open(sys.argv[1]).readline())["body"]
sys.exit(0 if b["max_completion_tokens"] == 1 and b["max_tokens"] == 1 and "messages" in b else 1)' "$FLOG"; then
    sy_ok "chat prefill request: max_completion_tokens 1 (the client sent it)"
else
    sy_not_ok "chat prefill request: max_completion_tokens 1" "$(cat "$FLOG")"
fi

# ---------------------------------------------------------------------------------------------
# gateway T: a prefill slower than prefillTimeoutMs -> local prefill; a client leaving mid-prefill

start_fake slow slow
sed -e 's/prefillTimeoutMs: 30000/prefillTimeoutMs: 1000/' "$SY_SOURCE_DIR/deploy/scheduler/pd.yaml" \
    >"$SY_TMP/pd-timeout.yaml"
start_gateway t --config "$SY_TMP/pd-timeout.yaml" --endpoint "http://127.0.0.1:$FPORT,role=prefill" \
    --endpoint "$D_URL,role=decode"
GT=$GURL GT_PID=$GPID
t0=$(date +%s%N)
sy_http POST "$GT/v1/completions" "$(body_long)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sy_assert_status "slow prefill: 200" 200
check_pd "slow prefill: fallback_local" "d['path'] == 'fallback_local'"
if [ "$ms" -ge 900 ] && [ "$ms" -lt 10000 ]; then sy_ok "slow prefill: answered after the 1 s prefill timeout (${ms} ms)"; else
    sy_not_ok "slow prefill: answered after the 1 s prefill timeout" "took ${ms} ms"; fi
metric_is "slow prefill: reason timeout" "$GT" switchyard_gateway_prefill_failures_total \
    reason=timeout -- '==' 1
# the client gives up while the prefill call is in flight: the call is cancelled, the timer with it
GONE0=$(sy_metric "$GT" switchyard_gateway_requests_total status=499)
SY_HTTP_TIMEOUT=0.4 sy_http POST "$GT/v1/completions" "$(body_long)"
sleep 1.5 # past the prefill timeout of the abandoned exchange
if sy_alive "$GT_PID" && sy_health_ok "$GT"; then sy_ok "client gone mid-prefill: gateway alive"; else
    sy_not_ok "client gone mid-prefill: gateway alive" "$(tail -n 20 "$SY_TMP/gateway-t.log")"; fi
sy_assert_eq "client gone mid-prefill: counted as 499" "$("$SY_PY" -c "
v = '$GONE0'; print((0.0 if v == 'nan' else float(v)) + 1)")" \
    "$(sy_metric "$GT" switchyard_gateway_requests_total status=499)"
metric_is "client gone mid-prefill: no second timeout fired" "$GT" \
    switchyard_gateway_prefill_failures_total reason=timeout -- '==' 1

# ---------------------------------------------------------------------------------------------
# gateway R: policy retry, prefill endpoints [dead, P2] in round-robin order -> P2's KV

DEAD=$(sy_free_port)
cat >"$SY_TMP/pd-retry.yaml" <<'EOF'
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: decode-filter
- type: prefill-filter
- type: max-score-picker
- type: round-robin-picker
- type: disagg-profile-handler
  parameters:
    nonCachedTokens: 16
    prefillFailurePolicy: retry
    prefillMaxRetries: 2
schedulingProfiles:
- name: decode
  plugins:
  - pluginRef: decode-filter
  - pluginRef: max-score-picker
- name: prefill
  plugins:
  - pluginRef: prefill-filter
  - pluginRef: round-robin-picker
EOF
start_gateway r --config "$SY_TMP/pd-retry.yaml" --endpoint "http://127.0.0.1:$DEAD,role=prefill" \
    --endpoint "$P2_URL,role=prefill" --endpoint "$D_URL,role=decode"
GR=$GURL
for k in 1 2; do
    sy_http POST "$GR/v1/completions" "$(body_long)"
    sy_assert_status "retry policy, request $k: 200" 200
    sy_assert_eq "retry policy, request $k: KV from P2" "127.0.0.1:$P2_PORT" \
        "$(hdr x-switchyard-prefill-endpoint)"
    check_pd "retry policy, request $k: prefill_retry after the dead endpoint" \
        "d['path'] == 'prefill_retry' and d['prefillAttempts'] == 2"
done
metric_is "retry policy: connect failures counted" "$GR" switchyard_gateway_prefill_failures_total \
    reason=connect -- '==' 2
metric_is "retry policy: path prefill_retry" "$GR" switchyard_gateway_pd_requests_total \
    path=prefill_retry -- '==' 2

# ---------------------------------------------------------------------------------------------
# gateway K: the decider reads the decode engine's prefix cache (precise index from KV events):
# once D2 holds the prompt's blocks, the same prompt is uncached < 16 there -> decode-only

KEV=$(sy_free_port)
kp=$(sy_free_port)
sy_start_engine d2 --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
    --kv-transfer-config "{\"kv_connector\":\"TcpConnector\",\"kv_role\":\"kv_both\",\"kv_port\":$kp}" \
    --kv-events-config "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://*:$KEV\",\"topic\":\"kv@d2@$MODEL\"}"
D2_URL=$SY_URL
start_gateway k --scheduler pd --endpoint "$P2_URL,role=prefill" \
    --endpoint "$D2_URL,role=decode,kv-events=tcp://127.0.0.1:$KEV"
GK=$GURL
KBODY=$(body_long ',"cache_salt":"k"')
sy_http POST "$GK/v1/completions" "$KBODY"
sy_assert_status "prefix-aware decider: first request" 200
check_pd "first request: nothing cached on D2 -> prefill-decode" \
    "d['path'] == 'prefill_decode' and d['cachedTokens'] == 0"
pd_cached_on_d2() {
    sy_http POST "$GK/v1/completions" "$KBODY"
    [ "$SY_STATUS" == 200 ] && [ "$(decision_pd "d['decision'] == 'decode-only'")" == "True" ]
}
if sy_wait_until 10 pd_cached_on_d2; then
    check_pd "the same prompt once D2 holds its blocks: decode-only, cachedTokens from the index" \
        "d['path'] == 'decode_only' and d['cachedTokens'] >= 16 * ((d['promptTokens'] - 1) // 16) and d['uncachedTokens'] < 16"
else
    sy_not_ok "the same prompt once D2 holds its blocks: decode-only" "$(hdr x-switchyard-decision)"
fi

# ---------------------------------------------------------------------------------------------
# gateway A again: the prefill engine dies -> local prefill; the decode engine dies -> 502/503

sy_stop_pid "$P1_PID" 5
sy_http POST "$GA/v1/completions" "$(body_long)"
sy_assert_status "prefill engine killed: the client still gets 200" 200
check_pd "prefill engine killed: fallback_local" "d['path'] == 'fallback_local'"
sy_assert_eq "prefill engine killed: decoded on D" "127.0.0.1:$D_PORT" "$(hdr x-switchyard-endpoint)"
sy_stop_pid "$D_PID" 5
t0=$(date +%s%N)
sy_http POST "$GA/v1/completions" "$(body_long)"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
case "$SY_STATUS" in
502 | 503) sy_ok "every decode engine dead: $SY_STATUS in ${ms} ms" ;;
*) sy_not_ok "every decode engine dead: 502/503" "got $SY_STATUS after ${ms} ms: $(head -c 300 "$SY_BODY")" ;;
esac
[ "$ms" -lt 10000 ] && sy_ok "every decode engine dead: no hang" || sy_not_ok "no hang" "${ms} ms"
sy_json_check "every decode engine dead: an OpenAI error body" "$SY_BODY" \
    "j['error']['code'] in (502, 503)"
metric_is "failed path counted" "$GA" switchyard_gateway_pd_requests_total path=failed -- '>=' 1
sy_alive "$GA_PID" && sy_ok "gateway A still running" || sy_not_ok "gateway A still running"

# every gateway drains and exits 0 (under ASan: no leak, no error at exit)
for k in "${!GW_PIDS[@]}"; do
    sy_stop_pid "${GW_PIDS[$k]}" 20
    rc=$?
    sy_assert_eq "gateway ${GW_NAMES[$k]} exits 0 on SIGTERM" 0 "$rc" ||
        sy_diag "$(tail -n 20 "$SY_TMP/gateway-${GW_NAMES[$k]}.log")"
done

sy_finish
