#!/usr/bin/env bash
# test_engine_model.sh - `switchyard engine --model stories260K.gguf` (the CPU executor on a real
# GGUF model) end to end on 127.0.0.1: greedy completions reproduce stories260K.expected.json
# byte for byte (from BOS as token ids, and from "Once upon a time"), streaming gives the same
# text, seeded sampling is reproducible, /tokenize uses the model's SentencePiece vocabulary, out-of-range token ids and chat
# without a template get 400, the official openai npm client works, SIGTERM exits 0.
# The model comes from $SY_MODELS_DIR (default <repo>/../shared/models): missing, the test fails
# when $CI is set and is skipped otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODELS=${SY_MODELS_DIR:-$SY_SOURCE_DIR/../shared/models}
GGUF=$MODELS/stories260K.gguf
EXPECTED=$MODELS/stories260K.expected.json
if [ ! -f "$GGUF" ] || [ ! -f "$EXPECTED" ]; then
    if [ -n "${CI:-}" ]; then
        sy_fail "model file $GGUF is missing (set SY_MODELS_DIR)"
    fi
    echo "# SKIP: model file $GGUF is missing (set SY_MODELS_DIR)"
    sy_finish
fi
MODEL=stories260K

sy_start_engine model --model "$GGUF" --served-model-name "$MODEL" --threads 1 --log-level warn
ENGINE_PID=$SY_PID

case_get() { # NAME FIELD
    "$SY_PY" - "$EXPECTED" "$1" "$2" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
c = [c for c in d["cases"] if c["name"] == sys.argv[2]][0]
v = c[sys.argv[3]]
print(v if isinstance(v, str) else json.dumps(v))
PYEOF
}

# 1. BOS only, 200 greedy steps: the generated text is the case's text
BOS_TEXT=$(case_get bos_only_200_steps text)
printf '%s' "$BOS_TEXT" >"$SY_TMP/bos_text"
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":[1],\"max_tokens\":200,\"temperature\":0}"
sy_assert_status "BOS-only completion: 200" 200
sy_json_check "BOS-only: 200 greedy tokens reproduce the reference text byte for byte" "$SY_BODY" \
    "j['choices'][0]['text'] == open('$SY_TMP/bos_text', encoding='utf-8').read() and j['usage']['completion_tokens'] == 200"

# 2. "Once upon a time": 64 tokens
OUAT=$(case_get once_upon_a_time_64 text)
printf '%s' "${OUAT#Once upon a time}" >"$SY_TMP/ouat_completion"
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":64,\"temperature\":0}"
sy_assert_status "'Once upon a time' completion: 200" 200
sy_json_check "'Once upon a time': 64 greedy tokens reproduce the reference" "$SY_BODY" \
    "j['choices'][0]['text'] == open('$SY_TMP/ouat_completion', encoding='utf-8').read() and j['usage']['prompt_tokens'] == 5"

# 3. streaming gives the same text
curl -sN --max-time 60 "$SY_URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":64,\"temperature\":0,\"stream\":true}" \
    >"$SY_TMP/stream.txt"
sy_check "streamed deltas join to the same text" "$SY_PY" -c '
import json, sys
text = ""
done = False
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line == "data: [DONE]":
        done = True
    elif line.startswith("data: "):
        text += json.loads(line[6:])["choices"][0]["text"]
sys.exit(0 if done and text == open(sys.argv[2], encoding="utf-8").read() else 1)
' "$SY_TMP/stream.txt" "$SY_TMP/ouat_completion"

# 4. the model's tokenizer behind /tokenize
sy_post /tokenize "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\"}"
sy_json_check "/tokenize uses the model's vocabulary" "$SY_BODY" "j['tokens'] == [1, 403, 407, 261, 378]"

# 4b. sampling: a seeded request is reproducible, another seed differs
for k in a b c; do
    seed=7
    [ $k == c ] && seed=8
    sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":48,\"temperature\":0.8,\"seed\":$seed}"
    cp "$SY_BODY" "$SY_TMP/seed_$k.json"
done
sy_check "temperature 0.8 with the same seed: the same text twice" "$SY_PY" -c '
import json, sys
t = [json.load(open(f))["choices"][0]["text"] for f in sys.argv[1:]]
sys.exit(0 if t[0] == t[1] and len(t[0]) > 0 else 1)' "$SY_TMP/seed_a.json" "$SY_TMP/seed_b.json"
sy_check "another seed draws another text" "$SY_PY" -c '
import json, sys
t = [json.load(open(f))["choices"][0]["text"] for f in sys.argv[1:]]
sys.exit(0 if t[0] != t[1] else 1)' "$SY_TMP/seed_a.json" "$SY_TMP/seed_c.json"

# 5. bad input
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":[1, 512],\"max_tokens\":1}"
sy_assert_status "token id outside the vocabulary: 400" 400
sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
sy_assert_status "chat without a chat template: 400" 400
sy_json_check "the refusal says what to do" "$SY_BODY" "'--chat-template' in j['error']['message']"

# 6. the official openai npm client
NODE_DIR=$SY_SOURCE_DIR/tests/integration/node
sy_node_deps "$NODE_DIR"
timeout 120 node "$NODE_DIR/openai_model.mjs" "$SY_URL/v1" "$MODEL" "Once upon a time" \
    "$(cat "$SY_TMP/ouat_completion")" 64 >"$SY_TMP/node.out" 2>&1
rc=$?
sed 's/^/    /' "$SY_TMP/node.out"
LAST=$(tail -n 1 "$SY_TMP/node.out")
if [ $rc -eq 0 ] && [[ $LAST =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
    sy_ok "official OpenAI client on the real model: $LAST"
else
    sy_not_ok "official OpenAI client on the real model (exit $rc): $LAST"
fi

# 7. a corrupt model file is refused with the reader's message
head -c 5000 "$GGUF" >"$SY_TMP/cut.gguf"
"$SY_BIN" engine --model "$SY_TMP/cut.gguf" --port "$(sy_free_port)" >"$SY_TMP/cut.log" 2>&1
rc=$?
sy_assert_eq "truncated GGUF: exit 1" 1 "$rc"
sy_check "truncated GGUF: the message names the file and the problem" \
    grep -q "cut.gguf: .*past the end\|cut.gguf: .*end of the file\|cut.gguf: .*truncated" "$SY_TMP/cut.log"

sy_check "engine alive" sy_alive "$ENGINE_PID"
sy_stop_pid "$ENGINE_PID" 10
sy_assert_eq "engine: SIGTERM exits 0" 0 "$?"
sy_finish
