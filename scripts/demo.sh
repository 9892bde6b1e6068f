#!/usr/bin/env bash
# The main job: installs missing Debian packages, builds Switchyard, starts a simulated
# vLLM-compatible engine on 127.0.0.1 (no model file needed), sends real OpenAI-style requests
# (a shared-prefix pair among them) and shows what was served and what came from the prefix
# cache, then stops the engine cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
make release >/dev/null
BIN=build/switchyard
PY=/usr/bin/python3

PORT=${PORT:-$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
LOG=$(mktemp -t switchyard-demo.XXXXXX.log)
$BIN engine --sim --host 127.0.0.1 --port "$PORT" --served-model-name sim-llama \
    --sim-speed 1 >"$LOG" 2>&1 &
PID=$!
cleanup() { kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT INT TERM

for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "engine did not start:"; cat "$LOG"; exit 1; }
URL="http://127.0.0.1:$PORT"
echo "engine (simulated A100 + Llama-3-8B timing) listening on $URL"
echo

show() { # title, json response
    $PY - "$1" "$2" <<'PYEOF'
import json, sys
title, body = sys.argv[1], json.loads(sys.argv[2])
c = body["choices"][0]
text = c["text"] if "text" in c else c["message"]["content"]
u = body["usage"]
cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
print(title)
print("  text:   %r" % text)
print("  finish: %s   prompt tokens: %d   completion tokens: %d   cached (prefix cache hit): %d"
      % (c["finish_reason"], u["prompt_tokens"], u["completion_tokens"], cached))
PYEOF
}

SYSTEM="You are a helpful assistant for the Switchyard railway company. Answer briefly and politely, and cite the timetable when you can."
req() { curl -sf "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$1"; }
show "1) chat, first question (cold cache):" "$(req "{\"model\":\"sim-llama\",\"max_tokens\":12,\"messages\":[{\"role\":\"system\",\"content\":\"$SYSTEM\"},{\"role\":\"user\",\"content\":\"When does the first train leave?\"}]}")"
show "2) chat, same system prompt, new question (shared prefix reused):" "$(req "{\"model\":\"sim-llama\",\"max_tokens\":12,\"messages\":[{\"role\":\"system\",\"content\":\"$SYSTEM\"},{\"role\":\"user\",\"content\":\"Is there a bar car on the night train?\"}]}")"
show "3) completion with a seed:" "$(curl -sf "$URL/v1/completions" -H 'Content-Type: application/json' -d '{"model":"sim-llama","prompt":"The switchyard at dawn","max_tokens":10,"seed":7}')"
echo
echo "4) streaming completion (server-sent events):"
curl -sN "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"sim-llama","prompt":"Once upon a time","max_tokens":6,"stream":true,"stream_options":{"include_usage":true}}' | sed 's/^/  /' | grep -v '^  $'
echo
echo "5) engine metrics (vLLM names):"
curl -sf "$URL/metrics" | grep -E '^vllm:(prefix_cache_(queries|hits)_total|kv_cache_usage_perc|request_success_total|generation_tokens_total)' | sed 's/^/  /'
