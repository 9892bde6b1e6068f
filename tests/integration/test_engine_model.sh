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

# 8. logprobs and penalties (vLLM's shapes; greedy, so every check is deterministic)
LPQ="\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"temperature\":0"
sy_post /v1/completions "{$LPQ,\"logprobs\":5}"
sy_assert_status "completions logprobs 5: 200" 200
cp "$SY_BODY" "$SY_TMP/lp.json"
sy_json_check "completions logprobs: the text is unchanged by asking for logprobs" "$SY_TMP/lp.json" \
    "j['choices'][0]['text'] == open('$SY_TMP/ouat_completion', encoding='utf-8').read()[:len(j['choices'][0]['text'])] and j['usage']['completion_tokens'] == 24"
sy_json_check "completions logprobs: 24 entries in each of the four lists" "$SY_TMP/lp.json" \
    "all(len(j['choices'][0]['logprobs'][k]) == 24 for k in ('text_offset', 'token_logprobs', 'tokens', 'top_logprobs'))"
sy_json_check "completions logprobs: tokens join to the text, text_offset = their running length" "$SY_TMP/lp.json" \
    "(lambda L, t: ''.join(L['tokens']) == t and L['text_offset'] == [sum(len(x) for x in L['tokens'][:i]) for i in range(24)])(j['choices'][0]['logprobs'], j['choices'][0]['text'])"
sy_json_check "completions logprobs: greedy token logprob = the largest of 5 sorted top logprobs" "$SY_TMP/lp.json" \
    "all(len(d) == 5 and list(d.values()) == sorted(d.values(), reverse=True) and lp == max(d.values()) and d[t] == lp and lp <= 0 for t, lp, d in zip(*(j['choices'][0]['logprobs'][k] for k in ('tokens', 'token_logprobs', 'top_logprobs'))))"
curl -sN --max-time 60 "$SY_URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{$LPQ,\"logprobs\":5,\"stream\":true}" >"$SY_TMP/lp_stream.txt"
sy_check "completions logprobs: the stream's chunks join to the same logprobs and text" "$SY_PY" -c '
import json, sys
full = json.load(open(sys.argv[2]))["choices"][0]
acc = {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
text = ""
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("data: {"):
        c = json.loads(line[6:])["choices"][0]
        text += c["text"]
        for k in acc:
            acc[k] += c["logprobs"][k]
sys.exit(0 if acc == full["logprobs"] and text == full["text"] else 1)
' "$SY_TMP/lp_stream.txt" "$SY_TMP/lp.json"
sy_post /v1/completions "{$LPQ,\"logprobs\":0}"
sy_json_check "completions logprobs 0: each dict holds the sampled token only" "$SY_BODY" \
    "all(list(d) == [t] for t, d in zip(j['choices'][0]['logprobs']['tokens'], j['choices'][0]['logprobs']['top_logprobs']))"
sy_post /v1/completions "{$LPQ,\"logprobs\":21}"
sy_assert_status "logprobs 21 (above --max-logprobs 20): 400" 400
sy_json_check "logprobs 21: vLLM's message and error shape" "$SY_BODY" \
    "j['error'] == {'message': 'Requested sample logprobs of 21, which is greater than max allowed: 20', 'type': 'BadRequestError', 'param': 'logprobs', 'code': 400}"
sy_post /v1/completions "{$LPQ,\"logprobs\":\"5\"}"
sy_assert_status "logprobs as a string: 400" 400
sy_post /v1/completions "{$LPQ,\"logprobs\":-2}"
sy_json_check "logprobs -2: vLLM's message" "$SY_BODY" \
    "j['error']['code'] == 400 and j['error']['message'] == '\`logprobs\` must be a positive value or -1.'"
sy_post /v1/completions "{$LPQ,\"prompt_logprobs\":1}"
sy_assert_status "prompt_logprobs: 501 (not supported)" 501
# penalties: greedy over 64 tokens, with the token strings from logprobs 0
PQ="\"model\":\"$MODEL\",\"prompt\":\"Once upon a time\",\"max_tokens\":64,\"temperature\":0,\"logprobs\":0"
for k in plain freq pres rep rep1; do
    case $k in
    plain) extra= ;;
    freq) extra=',"frequency_penalty":2.0' ;;
    pres) extra=',"presence_penalty":2.0' ;;
    rep) extra=',"repetition_penalty":1.5' ;;
    rep1) extra=',"repetition_penalty":1.0' ;;
    esac
    sy_post /v1/completions "{$PQ$extra}"
    cp "$SY_BODY" "$SY_TMP/pen_$k.json"
done
sy_check "frequency_penalty 2 / presence_penalty 2: fewer repeated tokens than plain greedy" "$SY_PY" -c '
import json, sys
rep = lambda f: (lambda t: len(t) - len(set(t)))(json.load(open(f))["choices"][0]["logprobs"]["tokens"])
p, f, q = (rep(x) for x in sys.argv[1:4])
print("repeats: plain", p, "frequency", f, "presence", q)
sys.exit(0 if p > 0 and f < p and q < p else 1)
' "$SY_TMP/pen_plain.json" "$SY_TMP/pen_freq.json" "$SY_TMP/pen_pres.json"
sy_check "repetition_penalty 1.5 changes the greedy text, 1.0 keeps it" "$SY_PY" -c '
import json, sys
t = [json.load(open(f))["choices"][0]["text"] for f in sys.argv[1:]]
sys.exit(0 if t[0] != t[1] and t[0] == t[2] else 1)
' "$SY_TMP/pen_plain.json" "$SY_TMP/pen_rep.json" "$SY_TMP/pen_rep1.json"

# 8b. chat logprobs, whole-vocab logprobs: a second engine with a chat template and
# --max-logprobs -1
sy_start_engine model-lp --model "$GGUF" --served-model-name "$MODEL" --threads 1 --log-level warn \
    --chat-template chatml --max-logprobs -1
LP_PID=$SY_PID
CQ="\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":16,\"temperature\":0"
sy_post /v1/chat/completions "{$CQ,\"logprobs\":true,\"top_logprobs\":3}"
sy_assert_status "chat logprobs: 200" 200
cp "$SY_BODY" "$SY_TMP/clp.json"
sy_json_check "chat logprobs: one entry per token, tokens join to the content, bytes = UTF-8 of the token" "$SY_TMP/clp.json" \
    "(lambda c, m: len(c) == j['usage']['completion_tokens'] and ''.join(e['token'] for e in c) == m and all(e['bytes'] == list(e['token'].encode()) for e in c))(j['choices'][0]['logprobs']['content'], j['choices'][0]['message']['content'])"
sy_json_check "chat logprobs: 3 sorted top entries, the greedy token first with the same logprob" "$SY_TMP/clp.json" \
    "all(len(e['top_logprobs']) == 3 and e['top_logprobs'][0]['token'] == e['token'] and e['top_logprobs'][0]['logprob'] == e['logprob'] and [t['logprob'] for t in e['top_logprobs']] == sorted((t['logprob'] for t in e['top_logprobs']), reverse=True) and all(t['bytes'] == list(t['token'].encode()) for t in e['top_logprobs']) for e in j['choices'][0]['logprobs']['content'])"
curl -sN --max-time 60 "$SY_URL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{$CQ,\"logprobs\":true,\"top_logprobs\":3,\"stream\":true}" >"$SY_TMP/clp_stream.txt"
sy_check "chat logprobs: the stream's chunks join to the same logprobs" "$SY_PY" -c '
import json, sys
full = json.load(open(sys.argv[2]))["choices"][0]["logprobs"]["content"]
acc, role = [], 0
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("data: {"):
        c = json.loads(line[6:])["choices"]
        if not c:
            continue
        if "role" in c[0]["delta"]:
            role += c[0]["logprobs"] is None
            continue
        acc += c[0]["logprobs"]["content"]
sys.exit(0 if acc == full and role == 1 else 1)
' "$SY_TMP/clp_stream.txt" "$SY_TMP/clp.json"
sy_post /v1/chat/completions "{$CQ,\"max_tokens\":2,\"logprobs\":true,\"top_logprobs\":-1}"
sy_json_check "chat top_logprobs -1: the whole vocabulary (512), exp sums to 1" "$SY_BODY" \
    "all(len(e['top_logprobs']) == 512 and len(set(t['logprob'] for t in e['top_logprobs'])) > 1 and abs(sum(math.exp(t['logprob']) for t in e['top_logprobs']) - 1) < 1e-3 for e in j['choices'][0]['logprobs']['content']) if (math := __import__('math')) else False"
sy_post /v1/chat/completions "{$CQ,\"logprobs\":true}"
sy_json_check "chat logprobs without top_logprobs: empty top lists" "$SY_BODY" \
    "all(e['top_logprobs'] == [] for e in j['choices'][0]['logprobs']['content'])"
sy_post /v1/chat/completions "{$CQ}"
sy_json_check "chat without logprobs: logprobs null" "$SY_BODY" "j['choices'][0]['logprobs'] is None"
sy_post /v1/chat/completions "{$CQ,\"top_logprobs\":2}"
sy_assert_status "chat top_logprobs without logprobs: 400" 400
sy_json_check "chat top_logprobs without logprobs: vLLM's message" "$SY_BODY" \
    "j['error']['type'] == 'BadRequestError' and j['error']['message'] == 'when using \`top_logprobs\`, \`logprobs\` must be set to true.'"
sy_post /v1/chat/completions "{$CQ,\"logprobs\":\"yes\"}"
sy_assert_status "chat logprobs as a string: 400" 400
sy_post /v1/completions "{$LPQ,\"logprobs\":-1,\"max_tokens\":1}"
sy_json_check "completions logprobs -1 with --max-logprobs -1: accepted, every distinct token string" "$SY_BODY" \
    "len(j['choices'][0]['logprobs']['top_logprobs'][0]) > 100"
sy_check "logprobs engine alive" sy_alive "$LP_PID"
sy_stop_pid "$LP_PID" 10
sy_assert_eq "logprobs engine: SIGTERM exits 0" 0 "$?"

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
