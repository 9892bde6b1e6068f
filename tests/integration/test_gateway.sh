#!/usr/bin/env bash
# test_gateway.sh - `switchyard gateway` in front of four `switchyard engine --sim` processes on
# 127.0.0.1, with KV events: requests sharing a long prefix land on the endpoint that holds it
# (confirmed by the engine's cached_tokens), unrelated load spreads, the official openai npm client
# works through the gateway (streaming too), killing an engine mid-stream ends that stream with an
# error event and [DONE] while later requests are served elsewhere, and the gateway's /metrics
# parses with python3-prometheus-client. Bounded waits; every process is cleaned up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/gw
export PYTHONHASHSEED=0
N=4
declare -a EPORT EPID KPORT
EP_ARGS=()
for i in $(seq 0 $((N - 1))); do
    KPORT[$i]=$(sy_free_port)
    sy_start_engine "e$i" --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
        --kv-events-config "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://*:${KPORT[$i]}\",\"topic\":\"kv@e$i@$MODEL\"}"
    EPORT[$i]=$SY_PORT
    EPID[$i]=$SY_PID
    EP_ARGS+=(--endpoint "http://127.0.0.1:${EPORT[$i]},kv-events=tcp://127.0.0.1:${KPORT[$i]}")
done

GPORT=$(sy_free_port)
GURL=http://127.0.0.1:$GPORT
GLOG=$SY_TMP/gateway.log
sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$GPORT" --scheduler default \
    "${EP_ARGS[@]}" --log-level info
GPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$GURL" || sy_fail "gateway did not become healthy" "$(tail -n 30 "$GLOG")"
sy_ok "gateway healthy in front of $N engines"

# models merged across endpoints
sy_http GET "$GURL/v1/models"
sy_assert_status "GET /v1/models through the gateway" 200
sy_json_check "the engines' model is listed once" "$SY_BODY" \
    "[m['id'] for m in j['data']].count('$MODEL') == 1"

# bad input: the gateway refuses what the engine refuses, with the same status and error body
# (vLLM's {"error": {message, type, param, code}}), and no endpoint is picked or touched
sy_wait_until 10 grep -q "$MODEL" <(curl -s "$GURL/v1/models") || true
ENGINE_URL=http://127.0.0.1:${EPORT[0]}
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"warm-up\",\"max_tokens\":2}"
sy_assert_status "a valid request passes the gateway's validation" 200
# the gateway's hash-parity probes (one request to each engine) are done before the counts below
parity_done() { [ "$(sy_metric "$GURL" switchyard_gateway_hash_parity result=match)" == "$N.0" ]; }
sy_wait_until 20 parity_done || sy_not_ok "hash-parity probes done on all $N endpoints" \
    "$(curl -s "$GURL/metrics" | grep hash_parity)"
PICKS0=$(sy_metric "$GURL" switchyard_gateway_picks_total)
PROMPT0=$(for i in $(seq 0 $((N - 1))); do sy_metric "http://127.0.0.1:${EPORT[$i]}" vllm:prompt_tokens_total; done | paste -sd+ | bc)
"$SY_PY" -c 'import sys; sys.stdout.write("{\"model\":\"%s\",\"prompt\":\"%s\"}" % (sys.argv[1], "x" * 9000))' "$MODEL" >"$SY_TMP/long.json"
printf '{"model":"%s","prompt":"bad \xff\xfe utf-8"}' "$MODEL" >"$SY_TMP/badutf8.json"
n_bad=0
same_as_engine() { # NAME PATH BODY STATUS NEEDLE
    local name=$1 path=$2 body=$3 want=$4 needle=$5 es gs
    sy_http POST "$ENGINE_URL$path" "$body"
    es=$SY_STATUS
    cp "$SY_BODY" "$SY_TMP/bad_engine.json"
    sy_http POST "$GURL$path" "$body"
    gs=$SY_STATUS
    n_bad=$((n_bad + 1))
    if [ "$gs" == "$want" ] && [ "$es" == "$want" ] &&
        "$SY_PY" - "$SY_TMP/bad_engine.json" "$SY_BODY" "$needle" <<'PYEOF'; then
import json, sys
e, g = (json.load(open(p))["error"] for p in sys.argv[1:3])
sys.exit(0 if e == g and sys.argv[3] in g["message"] and g["code"] == int(g["code"]) else 1)
PYEOF
        sy_ok "$name: $gs with the engine's error body"
    else
        sy_not_ok "$name: gateway $gs, engine $es, want $want" \
            "engine: $(head -c 300 "$SY_TMP/bad_engine.json") gateway: $(head -c 300 "$SY_BODY")"
    fi
}
same_as_engine "malformed JSON" /v1/completions "{\"model\":\"$MODEL\",\"prompt\":" 400 "Invalid JSON"
same_as_engine "unknown model" /v1/completions '{"model":"nope/x","prompt":"hi"}' 404 \
    'The model `nope/x` does not exist.'
same_as_engine "negative max_tokens" /v1/completions \
    "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":-1}" 400 "max_tokens"
same_as_engine "stream_options without stream" /v1/completions \
    "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":true}}" 400 \
    "stream=True"
same_as_engine "prompt longer than the context" /v1/completions "@$SY_TMP/long.json" 400 \
    "maximum context length"
same_as_engine "invalid UTF-8" /v1/completions "@$SY_TMP/badutf8.json" 400 "UTF-8"
same_as_engine "chat message without a role" /v1/chat/completions \
    "{\"model\":\"$MODEL\",\"messages\":[{\"content\":\"hi\"}]}" 400 "role"
same_as_engine "chat max_completion_tokens 0" /v1/chat/completions \
    "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_completion_tokens\":0}" \
    400 "max_completion_tokens"
sy_assert_eq "no endpoint was picked for the $n_bad refused requests" "$PICKS0" \
    "$(sy_metric "$GURL" switchyard_gateway_picks_total)"
sy_assert_eq "the engines processed no prompt tokens for them" "$PROMPT0" \
    "$(for i in $(seq 0 $((N - 1))); do sy_metric "http://127.0.0.1:${EPORT[$i]}" vllm:prompt_tokens_total; done | paste -sd+ | bc)"

# ask BODY : POST /v1/completions through the gateway; prints "endpoint cached_tokens"
ask() { # BODY [TAG] : TAG names the scratch files, so concurrent asks do not share them
    local out hdr
    out=$SY_TMP/ask${2:-}.json
    hdr=$SY_TMP/ask${2:-}.hdr
    curl -sS --max-time 30 -D "$hdr" -o "$out" "$GURL/v1/completions" \
        -H 'Content-Type: application/json' -d "$1" || return 1
    local ep
    ep=$(tr -d '\r' <"$hdr" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
    "$SY_PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], j["usage"]["prompt_tokens_details"]["cached_tokens"])' "$out" "$ep"
}

PREFIX=$("$SY_PY" -c 'print(("The switchyard sorts freight cars onto tracks by destination. " * 12).strip())')
first=$(ask "{\"model\":\"$MODEL\",\"prompt\":\"$PREFIX Question one?\",\"max_tokens\":4}")
EP0=${first% *}
[ -n "$EP0" ] && sy_ok "first shared-prefix request served by $EP0" || sy_fail "no x-switchyard-endpoint header"
sleep 0.3 # KV events reach the gateway
same=0
hits=0
for q in two three four five six; do
    r=$(ask "{\"model\":\"$MODEL\",\"prompt\":\"$PREFIX Question $q?\",\"max_tokens\":4}")
    [ "${r% *}" == "$EP0" ] && same=$((same + 1))
    [ "${r#* }" -ge 512 ] && hits=$((hits + 1))
done
sy_assert_eq "requests sharing the prefix land on the endpoint that holds it" 5 "$same"
sy_assert_eq "and the engine reports the prefix as cached (>= 512 tokens)" 5 "$hits"

# unrelated load spreads across endpoints (the prompts differ from their first byte on: a shared
# first block, as "unrelated prompt number N" had, is a real prefix hit that rightly draws them
# to its holder)
declare -A seen
UPIDS=()
for i in $(seq 1 24); do
    (ask "{\"model\":\"$MODEL\",\"prompt\":\"$i-$RANDOM: an unrelated prompt\",\"max_tokens\":40,\"ignore_eos\":true}" "u$i" >"$SY_TMP/u$i") &
    UPIDS+=($!)
done
wait "${UPIDS[@]}"
for i in $(seq 1 24); do
    e=$(cut -d' ' -f1 "$SY_TMP/u$i")
    [ -n "$e" ] && seen[$e]=1
done
[ "${#seen[@]}" -ge 3 ] && sy_ok "24 unrelated requests spread over ${#seen[@]} endpoints" ||
    sy_not_ok "unrelated requests spread over >= 3 endpoints" "endpoints: ${!seen[*]}"

# the official openai client through the gateway
NODE_DIR=$SY_SOURCE_DIR/tests/integration/node
sy_node_deps "$NODE_DIR"
if node "$NODE_DIR/openai_client.mjs" "$GURL/v1" "$MODEL" >"$SY_TMP/node.txt" 2>&1; then
    sy_ok "openai npm client through the gateway: $(tail -n 1 "$SY_TMP/node.txt")"
else
    sy_not_ok "openai npm client through the gateway" "$(grep -E 'not ok|#' "$SY_TMP/node.txt" | head -n 20)"
fi

# session affinity: a gateway whose config has llm-d's session-affinity-scorer keeps a client that
# echoes x-session-token (base64 of the endpoint name) on that endpoint
SCONF=$SY_TMP/session.yaml
cat >"$SCONF" <<'YAML'
apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: model-filter
- type: health-filter
- type: session-affinity-scorer
- type: queue-scorer
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: model-filter
  - pluginRef: health-filter
  - pluginRef: session-affinity-scorer
    weight: 10
  - pluginRef: queue-scorer
    weight: 1
  - pluginRef: max-score-picker
YAML
SPORT=$(sy_free_port)
SURL=http://127.0.0.1:$SPORT
sy_bg "$SY_TMP/gw-session.log" "$SY_BIN" gateway --host 127.0.0.1 --port "$SPORT" --config "$SCONF" \
    "${EP_ARGS[@]}" --log-level warn
SPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$SURL" || sy_fail "session gateway did not become healthy" "$(tail -n 20 "$SY_TMP/gw-session.log")"
sy_wait_until 10 sh -c "curl -sf '$SURL/v1/models' | grep -q '$MODEL'"
curl -sS --max-time 30 -D "$SY_TMP/s0.hdr" -o /dev/null "$SURL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"start a session\",\"max_tokens\":2}"
TOKEN=$(tr -d '\r' <"$SY_TMP/s0.hdr" | awk -F': ' 'tolower($1)=="x-session-token" {print $2}')
SEP=$(tr -d '\r' <"$SY_TMP/s0.hdr" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
sy_assert_eq "x-session-token is the base64 of the serving endpoint" "$SEP" "$(printf '%s' "$TOKEN" | base64 -d 2>/dev/null)"
stick=0
for i in $(seq 1 6); do
    e=$(curl -sS --max-time 30 -D - -o /dev/null "$SURL/v1/completions" -H 'Content-Type: application/json' \
        -H "x-session-token: $TOKEN" -d "{\"model\":\"$MODEL\",\"prompt\":\"turn $i of the session $RANDOM\",\"max_tokens\":2}" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
    [ "$e" == "$SEP" ] && stick=$((stick + 1))
done
sy_assert_eq "6 requests carrying the session token stay on its endpoint" 6 "$stick"
sy_stop_pid "$SPID" 10
sy_assert_eq "session gateway exits 0 on SIGTERM" 0 "$?"

# hash parity mismatch: a gateway with another PYTHONHASHSEED than the engines says so loudly
MPORT=$(sy_free_port)
MURL=http://127.0.0.1:$MPORT
PYTHONHASHSEED=999 sy_bg "$SY_TMP/gw-mismatch.log" "$SY_BIN" gateway --host 127.0.0.1 --port "$MPORT" \
    "${EP_ARGS[@]}" --log-level warn
MPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$MURL" || sy_fail "mismatch gateway did not become healthy"
sy_wait_until 10 sh -c "curl -sf '$MURL/v1/models' | grep -q '$MODEL'"
curl -sS --max-time 30 -o /dev/null "$MURL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"a fresh prompt for the parity check $RANDOM $RANDOM\",\"max_tokens\":2}"
mismatch_seen() {
    curl -sf "$MURL/metrics" | grep -E '^switchyard_gateway_kv_events\{.*kind="hash_parity_mismatch".*\} [1-9]' >/dev/null
}
sy_wait_until 5 mismatch_seen && sy_ok "a PYTHONHASHSEED mismatch shows in switchyard_gateway_kv_events" ||
    sy_not_ok "a PYTHONHASHSEED mismatch shows in the metrics" "$(curl -sf "$MURL/metrics" | grep kv_events)"
sy_check "and is logged as a warning" grep -q 'kv_sub.hash_parity_mismatch' "$SY_TMP/gw-mismatch.log"
sy_stop_pid "$MPID" 10

# an engine dies mid-stream: the stream ends with an error event and [DONE]; later requests work
S=$SY_TMP/stream.txt
curl -sN --max-time 60 -D "$SY_TMP/stream.hdr" -o "$S" "$GURL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"long stream\",\"max_tokens\":3000,\"ignore_eos\":true,\"stream\":true}" &
CURL=$!
sy_wait_until 10 grep -q '"text"' "$S" || sy_fail "the long stream did not start"
VICTIM=$(tr -d '\r' <"$SY_TMP/stream.hdr" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')
for i in $(seq 0 $((N - 1))); do
    [ "127.0.0.1:${EPORT[$i]}" == "$VICTIM" ] && kill -KILL "${EPID[$i]}" && VI=$i
done
wait "$CURL"
sy_check "the cut stream ends with an error event" grep -q '"error"' "$S"
sy_check "the cut stream ends with [DONE]" grep -q 'data: \[DONE\]' "$S"
ok=0
for i in $(seq 1 12); do
    r=$(ask "{\"model\":\"$MODEL\",\"prompt\":\"after the crash $i\",\"max_tokens\":4}") && [ "${r% *}" != "$VICTIM" ] && ok=$((ok + 1))
done
sy_assert_eq "12 requests after the crash are all served by live endpoints" 12 "$ok"

# gateway metrics parse with prometheus_client
curl -sS --max-time 10 -o "$SY_TMP/gm.txt" "$GURL/metrics"
"$SY_PY" - "$SY_TMP/gm.txt" <<'PYEOF' && sy_ok "gateway /metrics parses with prometheus_client" || sy_not_ok "gateway /metrics parses with prometheus_client"
import sys
from prometheus_client.parser import text_string_to_metric_families
names = {f.name for f in text_string_to_metric_families(open(sys.argv[1]).read())}
need = {"switchyard_gateway_requests", "switchyard_gateway_picks", "switchyard_gateway_scheduling_seconds"}
sys.exit(0 if need <= names else 1)
PYEOF
"$SY_PY" - "$SY_TMP/gm.txt" <<'PYEOF' && sy_ok "hash parity verified with the engines, no mismatch (switchyard_gateway_kv_events)" || sy_not_ok "hash parity metric" "$(grep kv_events "$SY_TMP/gm.txt")"
import sys
from prometheus_client.parser import text_string_to_metric_families
match = mismatch = 0
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    for x in f.samples:
        if x.name == "switchyard_gateway_kv_events" and x.labels.get("kind") == "hash_parity_match":
            match += x.value
        if x.name == "switchyard_gateway_kv_events" and x.labels.get("kind") == "hash_parity_mismatch":
            mismatch += x.value
sys.exit(0 if match > 0 and mismatch == 0 else 1)
PYEOF

sy_stop_pid "$GPID" 15
sy_assert_eq "gateway exits 0 on SIGTERM" 0 "$?"
sy_finish
