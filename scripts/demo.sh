#!/usr/bin/env bash
# The main job: installs missing Debian packages, builds Switchyard, starts a small local cluster
# on 127.0.0.1 with `switchyard up` that needs no model file (three simulated vLLM-compatible
# engines publishing KV events, and the gateway in front of them with KV-cache-aware routing),
# waits for its ready line, sends real OpenAI-style
# requests (conversations sharing a long system prompt among them), shows which engine served
# each request and what came from its prefix cache, then stops the cluster with SIGTERM to `up`
# (gateway first, then the engines) and checks that it exited 0.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
make release >/dev/null
BIN=build/switchyard
PY=/usr/bin/python3
MODEL=sim-llama

LOGDIR=$(mktemp -d -t switchyard-demo.XXXXXX)
UP_OUT=$LOGDIR/up.out
UP_PID=
cleanup() {
    if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
        kill -TERM "$UP_PID" 2>/dev/null || true # up stops the gateway, then the engines
        wait "$UP_PID" 2>/dev/null || true
    fi
    rm -rf "$LOGDIR"
}
trap cleanup EXIT INT TERM

# The default cluster of `switchyard up`: three simulated engines (A100 + Llama-3-8B timing)
# publishing KV events over ZMQ, PYTHONHASHSEED=0 for all so that engines and gateway hash prompt
# blocks identically, and the gateway in front with KV-cache- and load-aware routing. --port 0
# gives the gateway a free port (the default is 8080); every child logs into $LOGDIR.
echo "\$ switchyard up --port 0 --log-dir $LOGDIR"
$BIN up --port 0 --log-dir "$LOGDIR" >"$UP_OUT" 2>&1 &
UP_PID=$!
for _ in $(seq 900); do # up gives each child 60 s to become ready, and reports failures itself
    grep -q '^ready: ' "$UP_OUT" && break
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q '^ready: ' "$UP_OUT"; then
    echo "switchyard up did not start the cluster:"
    cat "$UP_OUT"
    exit 1
fi
URL=$(sed -n 's|^ready: \(http://127\.0\.0\.1:[0-9]*\).*|\1|p' "$UP_OUT")
grep -E '^(  (engine|gateway)|switchyard up: cluster ready|ready:)' "$UP_OUT"
echo

ask() { # TITLE PATH BODY: prints which engine served the request and what was cached
    local hdr body
    hdr=$(mktemp -p "$LOGDIR")
    body=$(curl -sf -D "$hdr" "$URL$2" -H 'Content-Type: application/json' -d "$3")
    $PY - "$1" "$body" "$(tr -d '\r' <"$hdr" | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}')" "$UP_OUT" <<'PYEOF'
import json, re, sys
title, body, endpoint = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
# the engine's name from up's ready block ("  engine2  pid=... url=http://127.0.0.1:PORT ...")
names = dict((m.group(2), m.group(1)) for m in re.finditer(
    r"^  (engine\d+)\s+pid=\d+ url=http://127\.0\.0\.1:(\d+)", open(sys.argv[4]).read(), re.M))
port = re.search(r":(\d+)/*$", endpoint)
if port and port.group(1) in names:
    endpoint = "%s (%s)" % (names[port.group(1)], endpoint)
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
echo
echo "9) stopping the cluster: SIGTERM to switchyard up, which stops the gateway, then the engines:"
kill -TERM "$UP_PID"
for _ in $(seq 600); do # up bounds each stop phase itself (10 s, then SIGKILL)
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
done
rc=0
wait "$UP_PID" || rc=$?
UP_PID=
grep -E '^switchyard up: (stopping|[a-z0-9]+ stopped|stopped)' "$UP_OUT" | sed 's/^/  /'
if [ "$rc" -ne 0 ]; then
    echo "switchyard up exited with status $rc:"
    tail -n 30 "$UP_OUT"
    exit 1
fi
