#!/usr/bin/env bash
# The main job: installs missing Debian packages, builds Switchyard, starts a small local cluster
# on 127.0.0.1 that needs no model file (three simulated vLLM-compatible engines publishing KV
# events, and the gateway in front of them with KV-cache-aware routing), sends real OpenAI-style
# requests (conversations sharing a long system prompt among them), shows which engine served
# each request and what came from its prefix cache, then stops every process cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
make release >/dev/null
BIN=build/switchyard
PY=/usr/bin/python3
MODEL=sim-llama
N=3
export PYTHONHASHSEED=0 # engines and gateway hash prompt blocks identically

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LOGDIR=$(mktemp -d -t switchyard-demo.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$LOGDIR"
}
trap cleanup EXIT INT TERM

wait_health() { # URL LOG
    for _ in $(seq 100); do
        curl -sf "$1/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "did not start:"
    cat "$2"
    exit 1
}

EP_ARGS=()
for i in $(seq 1 $N); do
    port=$(free_port)
    kv=$(free_port)
    $BIN engine --sim --host 127.0.0.1 --port "$port" --served-model-name "$MODEL" --sim-speed 1 \
        --kv-events-config "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://*:$kv\",\"topic\":\"kv@engine$i@$MODEL\"}" \
        >"$LOGDIR/engine$i.log" 2>&1 &
    PIDS+=($!)
    wait_health "http://127.0.0.1:$port" "$LOGDIR/engine$i.log"
    EP_ARGS+=(--endpoint "http://127.0.0.1:$port,kv-events=tcp://127.0.0.1:$kv")
    echo "engine $i (simulated A100 + Llama-3-8B) on http://127.0.0.1:$port, KV events on tcp://127.0.0.1:$kv"
done
GPORT=$(free_port)
$BIN gateway --host 127.0.0.1 --port "$GPORT" --scheduler default "${EP_ARGS[@]}" \
    >"$LOGDIR/gateway.log" 2>&1 &
PIDS+=($!)
URL="http://127.0.0.1:$GPORT"
wait_health "$URL" "$LOGDIR/gateway.log"
for _ in $(seq 50); do # the gateway reads each engine's models
    curl -sf "$URL/v1/models" | grep -q "$MODEL" && break
    sleep 0.1
done
echo "gateway (KV-cache- and load-aware routing) on $URL"
echo

ask() { # TITLE PATH BODY: prints which engine served the request and what was cached
    local hdr body
    hdr=$(mktemp -p "$LOGDIR")
    body=$(curl -sf -D "$hdr" "$URL$2" -H 'Content-Type: application/json' -d "$3")
    $PY - "$1" "$body" "$(tr -d '\r' <"$hdr" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')" <<'PYEOF'
import json, sys
title, body, endpoint = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
c = body["choices"][0]
text = c["text"] if "text" in c else c["message"]["content"]
u = body["usage"]
cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
print(title)
print("  served by: %s   prompt tokens: %d   cached (prefix cache hit): %d   finish: %s"
      % (endpoint, u["prompt_tokens"], cached, c["finish_reason"]))
print("  text: %r" % text)
PYEOF
}

SYSTEM="You are a helpful assistant for the Switchyard railway company. Answer briefly and politely, cite the timetable when you can, and never invent a departure that is not in it."
chat() { printf '{"model":"%s","max_tokens":12,"messages":[{"role":"system","content":"%s"},{"role":"user","content":"%s"}]}' "$MODEL" "$SYSTEM" "$1"; }
ask "1) a conversation with the railway assistant (cold cache):" /v1/chat/completions "$(chat 'When does the first train leave?')"
sleep 0.2 # the engine's KV events reach the gateway
ask "2) same system prompt, another question: routed to the engine that holds the prefix:" /v1/chat/completions "$(chat 'Is there a bar car on the night train?')"
ask "3) and another:" /v1/chat/completions "$(chat 'Can I bring a bicycle?')"
i=4
for prompt in "Apples and pears grow in the valley" "Bridges span the wide river" "Coal trains run at night"; do
    ask "$i) an unrelated completion (no shared prefix: load and cache usage decide):" /v1/completions \
        "{\"model\":\"$MODEL\",\"prompt\":\"$prompt\",\"max_tokens\":8,\"seed\":$i}"
    i=$((i + 1))
done
echo
echo "7) streaming through the gateway (server-sent events):"
curl -sN "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":5,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" |
    grep -v '^$' | cut -c1-150 | sed 's/^/  /'
echo
echo "8) gateway metrics: picks per engine and routing regret (cached tokens available / predicted / delivered):"
curl -sf "$URL/metrics" | grep -E '^switchyard_gateway_(picks_total|cached_tokens_total)' | sed 's/^/  /'
