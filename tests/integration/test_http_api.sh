#!/usr/bin/env bash
# test_http_api.sh - the engine's OpenAI-compatible HTTP API as vLLM serves it (spec
# research/vllm-interfaces.md §1): every endpoint's response shape, SSE framing, sampling
# controls (max_tokens, stop, seed), /tokenize + /detokenize, every error case with vLLM's
# nested error body, 413/401/404/405, and connection robustness (slow client, vanishing client
# mid-stream, pipelining). Starts `switchyard engine --sim` on 127.0.0.1 only; bounded waits.
# Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand from the repo root:
#   bash tests/integration/test_http_api.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/llama-test
MAXLEN=512

sy_start_engine main --served-model-name "$MODEL" --max-model-len $MAXLEN --sim-speed 0 \
    --max-body-bytes 65536 --log-level warn
A_PID=$SY_PID
A_URL=$SY_URL
A_PORT=$SY_PORT

# sse_check FILE KIND N_TOKENS USAGE : validates a raw SSE body (KIND completion|chat, USAGE 1 if
# include_usage was requested, N_TOKENS = expected completion tokens or -1 to skip). Prints
# "OK <concatenated text as JSON>" or the problems.
sse_check() {
    "$SY_PY" - "$@" <<'PYEOF'
import json, sys
path, kind, ntok, usage = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
raw = open(path, "rb").read()
bad = []
if not raw.endswith(b"data: [DONE]\n\n"):
    bad.append("stream does not end with 'data: [DONE]\\n\\n': %r" % raw[-60:])
events = raw.split(b"\n\n")
if events and events[-1] == b"":
    events = events[:-1]
chunks = []
for i, e in enumerate(events):
    if not e.startswith(b"data: ") or b"\n" in e:
        bad.append("event %d is not a single 'data: ' line: %r" % (i, e[:120]))
        continue
    d = e[6:]
    if d == b"[DONE]":
        if i != len(events) - 1:
            bad.append("[DONE] is not the last event")
        continue
    try:
        chunks.append(json.loads(d))
    except Exception as ex:
        bad.append("event %d is not JSON (%s): %r" % (i, ex, d[:120]))
if not chunks:
    bad.append("no JSON chunks")
    print("\n".join(bad)); sys.exit(0)
prefix = "cmpl-" if kind == "completion" else "chatcmpl-"
obj = "text_completion" if kind == "completion" else "chat.completion.chunk"
ids = {c.get("id") for c in chunks}
if len(ids) != 1 or not str(next(iter(ids))).startswith(prefix):
    bad.append("ids not one %s* id: %r" % (prefix, ids))
for c in chunks:
    if c.get("object") != obj: bad.append("object %r != %r" % (c.get("object"), obj)); break
for c in chunks:
    if not isinstance(c.get("created"), int): bad.append("created not int"); break
usage_chunks = [c for c in chunks if c.get("choices") == []]
tok_chunks = [c for c in chunks if c.get("choices")]
if usage:
    if len(usage_chunks) != 1 or chunks[-1] is not usage_chunks[0]:
        bad.append("expected exactly one usage chunk with choices [] right before [DONE]")
    else:
        u = usage_chunks[0].get("usage") or {}
        if not all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")):
            bad.append("usage chunk lacks integer fields: %r" % u)
        elif u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"]:
            bad.append("usage total != prompt + completion: %r" % u)
        elif ntok >= 0 and u["completion_tokens"] != ntok:
            bad.append("usage completion_tokens %r != %d" % (u["completion_tokens"], ntok))
else:
    if usage_chunks or any(c.get("usage") for c in chunks):
        bad.append("usage sent without stream_options.include_usage")
text = ""
fins = []
for k, c in enumerate(tok_chunks):
    ch = c["choices"]
    if len(ch) != 1 or ch[0].get("index") != 0:
        bad.append("chunk %d: expected one choice with index 0" % k); continue
    ch = ch[0]
    if kind == "completion":
        if not isinstance(ch.get("text"), str): bad.append("chunk %d: text not a string" % k)
        text += ch.get("text") or ""
    else:
        delta = ch.get("delta")
        if not isinstance(delta, dict): bad.append("chunk %d: no delta" % k); continue
        if k == 0:
            if delta.get("role") != "assistant": bad.append("first chat chunk lacks role assistant: %r" % delta)
        elif "role" in delta:
            bad.append("role repeated in chunk %d" % k)
        text += delta.get("content") or ""
    fins.append(ch.get("finish_reason"))
if not fins or fins[-1] is None:
    bad.append("last choice chunk has no finish_reason: %r" % fins[-3:])
elif any(f is not None for f in fins[:-1]):
    bad.append("finish_reason before the last chunk: %r" % fins)
if kind == "completion" and ntok >= 0 and len(text.encode()) != ntok:
    bad.append("streamed text is %d bytes, expected %d tokens (byte tokenizer): %r" % (len(text.encode()), ntok, text))
if kind == "chat" and ntok >= 0 and len(text.encode()) != ntok:
    bad.append("streamed content is %d bytes, expected %d: %r" % (len(text.encode()), ntok, text))
# the chunk carrying the last text must carry finish_reason (no trailing empty finish chunk
# after a token chunk is also what vLLM does)
if tok_chunks:
    last = tok_chunks[-1]["choices"][0]
    last_text = last.get("text") if kind == "completion" else (last.get("delta") or {}).get("content")
    if ntok > 0 and not last_text:
        bad.append("finish_reason chunk carries no token text (vLLM puts it on the last token chunk)")
if bad:
    print("\n".join(bad))
else:
    print("OK " + json.dumps({"text": text, "finish": fins[-1], "n_chunks": len(tok_chunks)}))
PYEOF
}

# stream_req PATH JSON OUTFILE : streaming POST, raw body into OUTFILE, headers into OUTFILE.h
stream_req() {
    curl -sS -N --max-time 30 -H 'Content-Type: application/json' -H 'Expect:' \
        -D "$3.h" -o "$3" -w '%{http_code}' --data-binary "$2" "$A_URL$1" 2>/dev/null
}

expect_sse() { # NAME FILE KIND NTOK USAGE
    local name=$1 out
    out=$(sse_check "$2" "$3" "$4" "$5")
    if [[ $out == OK* ]]; then
        sy_ok "$name"
    else
        sy_not_ok "$name" "$out
raw (head): $(head -c 700 "$2")"
    fi
}

# ---------------------------------------------------------------------------------------------
# basic endpoints

sy_get /health
sy_assert_status "GET /health is 200" 200

sy_get /version
sy_assert_status "GET /version is 200" 200
sy_json_check "/version has a version string" "$SY_BODY" 'is_str(j["version"]) and j["version"] != ""'

sy_get /v1/models
sy_assert_status "GET /v1/models is 200" 200
sy_json_check "/v1/models shape (object list, data[0] id/object/owned_by/created/max_model_len)" "$SY_BODY" \
    "j['object'] == 'list' and len(j['data']) >= 1 and j['data'][0]['id'] == '$MODEL' and
     j['data'][0]['object'] == 'model' and j['data'][0]['owned_by'] == 'vllm' and
     is_int(j['data'][0]['created']) and j['data'][0].get('max_model_len') == $MAXLEN and
     j['data'][0].get('root') == '$MODEL'"

sy_get /metrics
sy_assert_status "GET /metrics is 200" 200
sy_check "/metrics is Prometheus text with vllm: series" grep -q '^vllm:num_requests_running{' "$SY_BODY"
sy_check "/metrics content type is text/plain" grep -qi '^content-type: text/plain' "$SY_HDRS"

# ---------------------------------------------------------------------------------------------
# non-streaming completions

NOW=$(date +%s)
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Hello world\",\"max_tokens\":8,\"ignore_eos\":true}"
sy_assert_status "POST /v1/completions is 200" 200
sy_check "completion content type is application/json" grep -qi '^content-type: application/json' "$SY_HDRS"
sy_json_check "completion shape (id cmpl-, object, created, model, choices[0])" "$SY_BODY" \
    "j['id'].startswith('cmpl-') and j['object'] == 'text_completion' and is_int(j['created']) and
     abs(j['created'] - $NOW) < 60 and j['model'] == '$MODEL' and len(j['choices']) == 1 and
     j['choices'][0]['index'] == 0 and is_str(j['choices'][0]['text'])"
sy_json_check "completion: max_tokens 8 with ignore_eos gives 8 tokens, finish_reason length" "$SY_BODY" \
    "j['choices'][0]['finish_reason'] == 'length' and j['usage']['completion_tokens'] == 8 and
     len(j['choices'][0]['text'].encode()) == 8"
sy_json_check "completion usage: prompt 'Hello world' = 11 bytes + BOS = 12 tokens, total = sum" "$SY_BODY" \
    "j['usage']['prompt_tokens'] == 12 and j['usage']['total_tokens'] == 20"
sy_json_check "completion usage.prompt_tokens_details.cached_tokens is an int" "$SY_BODY" \
    "is_int(j['usage']['prompt_tokens_details']['cached_tokens'])"
sy_json_check "completion choice has stop_reason key (vLLM extension)" "$SY_BODY" \
    "'stop_reason' in j['choices'][0]"

sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Hello world\",\"ignore_eos\":true}"
sy_json_check "completion: absent max_tokens defaults to 16" "$SY_BODY" \
    "j['usage']['completion_tokens'] == 16 and j['choices'][0]['finish_reason'] == 'length'"

sy_post /v1/completions "{\"prompt\":\"Hello world\",\"max_tokens\":1,\"ignore_eos\":true}"
sy_json_check "completion: model is optional (defaults to the served name)" "$SY_BODY" \
    "j['model'] == '$MODEL' and j['usage']['completion_tokens'] == 1"

sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":[256,72,105],\"max_tokens\":2,\"ignore_eos\":true}"
sy_json_check "completion: token-id prompt accepted (3 prompt tokens)" "$SY_BODY" \
    "j['usage']['prompt_tokens'] == 3 and j['usage']['completion_tokens'] == 2"

# repeated long prompt -> prefix cache: 100 chars + BOS = 101 tokens -> floor(100/16)*16 = 96
LONG=$(printf 'abcdefghi %.0s' {1..10})
[ ${#LONG} -eq 100 ] || sy_fail "test bug: LONG prompt is ${#LONG} chars"
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"$LONG\",\"max_tokens\":1,\"ignore_eos\":true}"
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"$LONG\",\"max_tokens\":1,\"ignore_eos\":true}"
sy_json_check "repeated 101-token prompt reports cached_tokens 96" "$SY_BODY" \
    "j['usage']['prompt_tokens'] == 101 and j['usage']['prompt_tokens_details']['cached_tokens'] == 96"

# ---------------------------------------------------------------------------------------------
# chat

CHAT_MSGS='[{"role":"user","content":"Hi"}]'
sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS,\"max_tokens\":5,\"ignore_eos\":true}"
sy_assert_status "POST /v1/chat/completions is 200" 200
sy_json_check "chat shape (id chatcmpl-, object chat.completion, message role/content)" "$SY_BODY" \
    "j['id'].startswith('chatcmpl-') and j['object'] == 'chat.completion' and is_int(j['created']) and
     j['model'] == '$MODEL' and j['choices'][0]['index'] == 0 and
     j['choices'][0]['message']['role'] == 'assistant' and is_str(j['choices'][0]['message']['content'])"
sy_json_check "chat: max_tokens 5 honoured, finish_reason length" "$SY_BODY" \
    "j['choices'][0]['finish_reason'] == 'length' and j['usage']['completion_tokens'] == 5 and
     len(j['choices'][0]['message']['content'].encode()) == 5"
# ChatML: <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n = 1+5+2+1+1+1+10 = 21 tokens
sy_json_check "chat usage: ChatML prompt is 21 tokens, cached_tokens present" "$SY_BODY" \
    "j['usage']['prompt_tokens'] == 21 and j['usage']['total_tokens'] == 26 and
     is_int(j['usage']['prompt_tokens_details']['cached_tokens'])"
cp "$SY_BODY" "$SY_TMP/chat1.json"
sy_post /tokenize "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS}"
sy_assert_status "POST /tokenize (chat form) is 200" 200
sy_json_check "/tokenize chat form count equals the chat usage.prompt_tokens and starts with <|im_start|>" "$SY_BODY" \
    "j['count'] == json.load(open('$SY_TMP/chat1.json'))['usage']['prompt_tokens'] and
     j['tokens'][0] == 258 and 259 in j['tokens'] and j['count'] == len(j['tokens'])"

sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS,\"max_completion_tokens\":3,\"ignore_eos\":true}"
sy_json_check "chat: max_completion_tokens honoured" "$SY_BODY" "j['usage']['completion_tokens'] == 3"

sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"},{\"role\":\"user\",\"content\":\"Bye\"}],\"max_tokens\":2,\"ignore_eos\":true}"
sy_json_check "chat: multi-turn with system message accepted" "$SY_BODY" \
    "j['usage']['completion_tokens'] == 2 and j['usage']['prompt_tokens'] > 21"

# ---------------------------------------------------------------------------------------------
# streaming

F=$SY_TMP/s1
code=$(stream_req /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Hello\",\"max_tokens\":6,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "$F")
sy_assert_eq "streaming completion is 200" 200 "$code"
sy_check "streaming content type is text/event-stream" grep -qi '^content-type: text/event-stream' "$F.h"
expect_sse "streaming completion framing, 6 tokens, finish on last token chunk, usage chunk, [DONE]" "$F" completion 6 1
F=$SY_TMP/s2
code=$(stream_req /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Hello\",\"max_tokens\":4,\"ignore_eos\":true,\"stream\":true}" "$F")
expect_sse "streaming completion without include_usage has no usage chunk" "$F" completion 4 0
F=$SY_TMP/s2b
code=$(stream_req /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Hello\",\"max_tokens\":4,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{}}" "$F")
expect_sse "stream_options present without include_usage -> usage defaults to on (vLLM)" "$F" completion 4 1
F=$SY_TMP/s3
code=$(stream_req /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS,\"max_tokens\":7,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "$F")
sy_assert_eq "streaming chat is 200" 200 "$code"
expect_sse "streaming chat framing: first chunk role assistant, finish on last token chunk, usage, [DONE]" "$F" chat 7 1
"$SY_PY" - "$F" >"$SY_TMP/s3.u" <<'PYEOF'
import json, sys
ev = [json.loads(e[6:]) for e in open(sys.argv[1], "rb").read().split(b"\n\n") if e.startswith(b"data: {")]
print(json.dumps(ev[-1]))
PYEOF
sy_json_check "streaming chat usage chunk: 21 prompt tokens, 7 completion" "$SY_TMP/s3.u" \
    "j['choices'] == [] and j['usage']['prompt_tokens'] == 21 and j['usage']['completion_tokens'] == 7"

# streamed text equals non-streamed text for the same seed
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Seeded\",\"max_tokens\":20,\"ignore_eos\":true,\"seed\":7,\"temperature\":1.0}"
NS_TEXT=$(sy_json_get "$SY_BODY" "j['choices'][0]['text']")
F=$SY_TMP/s4
stream_req /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Seeded\",\"max_tokens\":20,\"ignore_eos\":true,\"seed\":7,\"temperature\":1.0,\"stream\":true}" "$F" >/dev/null
S_TEXT=$(sse_check "$F" completion 20 0 | sed -n 's/^OK //p' | "$SY_PY" -c 'import json,sys; print(json.load(sys.stdin)["text"])' 2>/dev/null)
sy_assert_eq "streamed text equals non-streamed text for the same seed" "$NS_TEXT" "$S_TEXT"

# ---------------------------------------------------------------------------------------------
# sampling controls: seed determinism, greedy repeatability, stop strings

seeded() { # SEED TEMP -> text
    sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Tell me a story\",\"max_tokens\":32,\"ignore_eos\":true,\"seed\":$1,\"temperature\":$2}"
    sy_json_get "$SY_BODY" "j['choices'][0]['text']"
}
T1=$(seeded 1234 1.0)
T2=$(seeded 1234 1.0)
T3=$(seeded 4321 1.0)
sy_assert_eq "same seed -> same text" "$T1" "$T2"
if [ -n "$T1" ] && [ "$T1" != "$T3" ]; then sy_ok "different seeds -> different text"; else sy_not_ok "different seeds -> different text" "1234: $T1 / 4321: $T3"; fi
greedy() {
    sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Greedy prompt\",\"max_tokens\":24,\"ignore_eos\":true,\"temperature\":0}"
    sy_json_get "$SY_BODY" "j['choices'][0]['text']"
}
G1=$(greedy)
G2=$(greedy)
if [ -n "$G1" ] && [ "$G1" == "$G2" ]; then sy_ok "temperature 0 repeated -> same text"; else sy_not_ok "temperature 0 repeated -> same text" "$G1 / $G2"; fi

# stop string: pick a substring of the seeded text; output must be cut before its first occurrence
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Stop test\",\"max_tokens\":40,\"ignore_eos\":true,\"seed\":99,\"temperature\":1.0}"
FULL_FILE=$SY_TMP/full.json
cp "$SY_BODY" "$FULL_FILE"
STOP=$("$SY_PY" - "$FULL_FILE" <<'PYEOF'
import json, sys
t = json.load(open(sys.argv[1]))["choices"][0]["text"]
# a 3-character stop string taken from the middle of the text
print(json.dumps(t[len(t) // 2: len(t) // 2 + 3]))
PYEOF
)
EXPECT_STOP=$("$SY_PY" -c 'import json,sys; t=json.load(open(sys.argv[1]))["choices"][0]["text"]; s=json.loads(sys.argv[2]); print(json.dumps(t[:t.find(s)]))' "$FULL_FILE" "$STOP")
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Stop test\",\"max_tokens\":40,\"ignore_eos\":true,\"seed\":99,\"temperature\":1.0,\"stop\":[$STOP]}"
sy_json_check "stop string truncates the text before the stop string, finish_reason stop, stop_reason = string" "$SY_BODY" \
    "j['choices'][0]['text'] == $EXPECT_STOP and j['choices'][0]['finish_reason'] == 'stop' and
     j['choices'][0]['stop_reason'] == $STOP"
F=$SY_TMP/s5
stream_req /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"Stop test\",\"max_tokens\":40,\"ignore_eos\":true,\"seed\":99,\"temperature\":1.0,\"stop\":$STOP,\"stream\":true}" "$F" >/dev/null
OUT=$(sse_check "$F" completion -1 0)
if [[ $OUT == OK* ]] && [ "$("$SY_PY" -c 'import json,sys; print(json.loads(sys.argv[1][3:])["text"] == json.loads(sys.argv[2]) and json.loads(sys.argv[1][3:])["finish"] == "stop")' "$OUT" "$EXPECT_STOP")" == True ]; then
    sy_ok "streaming with a stop string (string form) emits exactly the truncated text, finish stop"
else
    sy_not_ok "streaming with a stop string (string form) emits exactly the truncated text, finish stop" "expected $EXPECT_STOP; got $OUT"
fi

# without ignore_eos the sim ends with EOS at a seeded length: finish_reason stop, EOS not in text
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"EOS test\",\"max_tokens\":400,\"seed\":5}"
sy_json_check "without ignore_eos: finish_reason stop (EOS) or length, EOS not rendered" "$SY_BODY" \
    "j['choices'][0]['finish_reason'] in ('stop', 'length') and '</s>' not in j['choices'][0]['text'] and
     (j['choices'][0]['finish_reason'] == 'length') == (j['usage']['completion_tokens'] == 400)"

# ---------------------------------------------------------------------------------------------
# tokenizer endpoints

sy_post /tokenize "{\"model\":\"$MODEL\",\"prompt\":\"Hello\"}"
sy_assert_status "POST /tokenize is 200" 200
sy_json_check "/tokenize 'Hello' = BOS + bytes, count, max_model_len" "$SY_BODY" \
    "j['tokens'] == [256, 72, 101, 108, 108, 111] and j['count'] == 6 and j['max_model_len'] == $MAXLEN"
sy_post /tokenize "{\"model\":\"$MODEL\",\"prompt\":\"Hello\",\"add_special_tokens\":false}"
sy_json_check "/tokenize add_special_tokens false drops BOS" "$SY_BODY" "j['tokens'] == [72, 101, 108, 108, 111]"
sy_post /detokenize "{\"model\":\"$MODEL\",\"tokens\":[72,101,108,108,111]}"
sy_assert_status "POST /detokenize is 200" 200
sy_json_check "/detokenize gives the text back" "$SY_BODY" "j['prompt'] == 'Hello'"
UTXT='h\u00e9llo w\u00f6rld \u2713 \ud83d\ude00'
sy_post /tokenize "{\"model\":\"$MODEL\",\"prompt\":\"$UTXT\",\"add_special_tokens\":false}"
TOKS=$(sy_json_get "$SY_BODY" "j['tokens']")
sy_json_check "/tokenize of UTF-8 text gives one token per byte" "$SY_BODY" \
    "j['tokens'] == list('h\u00e9llo w\u00f6rld \u2713 \U0001F600'.encode())"
sy_post /detokenize "{\"model\":\"$MODEL\",\"tokens\":$TOKS}"
sy_json_check "/tokenize + /detokenize round trip of UTF-8 text" "$SY_BODY" \
    "j['prompt'] == 'h\u00e9llo w\u00f6rld \u2713 \U0001F600'"

# ---------------------------------------------------------------------------------------------
# errors: status, nested body {"error":{message,type,param,code}}

# expect_error NAME STATUS TYPE MSG_EXPR METHOD PATH BODY : MSG_EXPR is a Python expression over m
# (the lowercased message), e.g. "'max_tokens' in m".
expect_error() {
    local name=$1 st=$2 type=$3 mexpr=$4 method=$5 path=$6 body=${7--}
    sy_http "$method" "$A_URL$path" "$body"
    if [ "$SY_STATUS" != "$st" ]; then
        sy_not_ok "$name -> $st" "got HTTP $SY_STATUS; body: $(head -c 500 "$SY_BODY")"
        return
    fi
    sy_json_check "$name -> $st $type, nested error body" "$SY_BODY" \
        "set(j) == {'error'} and set(j['error']) >= {'message', 'type', 'param', 'code'} and
         j['error']['type'] == '$type' and j['error']['code'] == $st and is_str(j['error']['message'])
         and (lambda m: $mexpr)(j['error']['message'].lower())"
}

expect_error "malformed JSON" 400 BadRequestError "'json' in m" POST /v1/completions '{"model":"x","prompt":'
expect_error "body is a JSON array" 400 BadRequestError "len(m) > 0" POST /v1/completions '[1,2]'
expect_error "empty body (Content-Length: 0)" 400 BadRequestError "len(m) > 0" POST /v1/completions ''
expect_error "missing prompt" 400 BadRequestError "'prompt' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"max_tokens\":2}"
expect_error "empty prompt" 400 BadRequestError "'prompt' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"\",\"max_tokens\":2}"
expect_error "max_tokens wrong type" 400 BadRequestError "'max_tokens' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":\"ten\"}"
expect_error "temperature wrong type" 400 BadRequestError "'temperature' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"temperature\":\"hot\"}"
expect_error "prompt wrong type" 400 BadRequestError "'prompt' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":{\"a\":1}}"
expect_error "negative max_tokens" 400 BadRequestError "'max_tokens' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":-1}"
expect_error "max_tokens beyond the context" 400 BadRequestError "'max_tokens' in m or 'context' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":100000}"
PROMPT_LONG=$(head -c 600 /dev/zero | tr '\0' 'a')
expect_error "prompt longer than the context" 400 BadRequestError "'context' in m or 'length' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"$PROMPT_LONG\",\"max_tokens\":1}"
expect_error "stream_options without stream" 400 BadRequestError "'stream' in m" POST /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":true}}"
expect_error "chat: missing messages" 400 BadRequestError "'messages' in m" POST /v1/chat/completions "{\"model\":\"$MODEL\",\"max_tokens\":2}"
expect_error "chat: messages wrong type" 400 BadRequestError "'messages' in m" POST /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":\"hi\"}"
expect_error "chat: stream_options without stream" 400 BadRequestError "'stream' in m" POST /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS,\"stream\":false,\"stream_options\":{\"include_usage\":true}}"
printf '{"model":"%s","prompt":"bad \xff\xfe utf8","max_tokens":1}' "$MODEL" >"$SY_TMP/badutf8.json"
expect_error "invalid UTF-8 body" 400 BadRequestError "len(m) > 0" POST /v1/completions "@$SY_TMP/badutf8.json"
expect_error "unknown model (completions)" 404 NotFoundError "m == 'the model \`nope\` does not exist.'" POST /v1/completions '{"model":"nope","prompt":"hi","max_tokens":1}'
expect_error "unknown model (chat)" 404 NotFoundError "m == 'the model \`nope\` does not exist.'" POST /v1/chat/completions "{\"model\":\"nope\",\"messages\":$CHAT_MSGS}"
sy_json_check "unknown model message keeps the model name's case" "$SY_BODY" "j['error']['message'] == 'The model \`nope\` does not exist.'"
F=$SY_TMP/s6
code=$(stream_req /v1/completions '{"model":"nope","prompt":"hi","max_tokens":1,"stream":true}' "$F")
sy_assert_eq "unknown model with stream:true is a plain 404 before streaming" 404 "$code"

sy_http GET "$A_URL/v1/nope"
sy_assert_status "unknown path GET /v1/nope -> 404" 404
sy_http POST "$A_URL/nope" '{}'
sy_assert_status "unknown path POST /nope -> 404" 404
sy_http GET "$A_URL/v1/completions"
sy_assert_status "wrong method GET /v1/completions -> 405" 405
sy_http DELETE "$A_URL/v1/chat/completions"
sy_assert_status "wrong method DELETE /v1/chat/completions -> 405" 405
sy_http POST "$A_URL/v1/models" '{}'
sy_assert_status "wrong method POST /v1/models -> 405" 405
sy_check "engine alive after the error cases" sy_alive "$A_PID"

# ---------------------------------------------------------------------------------------------
# raw-socket client behaviours (python sockets; all with timeouts)

# slow client: send half a request, keep the socket open, another client is served meanwhile
"$SY_PY" - "$A_PORT" "$MODEL" >"$SY_TMP/slow.out" 2>&1 <<'PYEOF' &
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"model":"')
print("half-sent", flush=True)
time.sleep(6)
s.close()
print("closed", flush=True)
PYEOF
SLOW_PID=$!
SY_PIDS+=("$SLOW_PID")
sy_wait_until 5 grep -q half-sent "$SY_TMP/slow.out"
T0=$(date +%s%N)
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"meanwhile\",\"max_tokens\":3,\"ignore_eos\":true}"
T1=$(date +%s%N)
sy_assert_status "other clients are served while a slow client holds half a request" 200
if [ $(((T1 - T0) / 1000000)) -lt 3000 ]; then sy_ok "... and promptly (<3 s)"; else sy_not_ok "... and promptly (<3 s)" "took $(((T1 - T0) / 1000000)) ms"; fi
# also a slow header (byte by byte, bash /dev/tcp) does not block others
if exec 7<>"/dev/tcp/127.0.0.1/$A_PORT"; then
    printf 'GET /hea' >&7
    sy_get /health
    sy_assert_status "server answers others while a client sends a partial request line" 200
    printf 'lth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&7
    RESP=$(timeout 5 head -c 12 <&7 || true)
    exec 7>&- 7<&-
    sy_assert_eq "the partial request completes later and is answered" "HTTP/1.1 200" "$RESP"
else
    sy_not_ok "open /dev/tcp connection"
fi
wait "$SLOW_PID" 2>/dev/null

# pipelining: two requests in one write, answered in order on the same connection
"$SY_PY" - "$A_PORT" "$MODEL" >"$SY_TMP/pipe.out" 2>&1 <<'PYEOF'
import json, socket, sys
port, model = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"model": model, "prompt": "pipelined", "max_tokens": 3, "ignore_eos": True}).encode()
req1 = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
req2 = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
req3 = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(req1 + req2 + req3)
buf = b""
def fill():
    global buf
    d = s.recv(65536)
    if not d:
        raise EOFError("connection closed early; got %r" % buf[:300])
    buf += d
def read_response():
    global buf
    while b"\r\n\r\n" not in buf:
        fill()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    body = b""
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buf:
                fill()
            line, buf = buf.split(b"\r\n", 1)
            n = int(line.split(b";")[0], 16)
            while len(buf) < n + 2:
                fill()
            body += buf[:n]
            buf = buf[n + 2:]
            if n == 0:
                break
    else:
        n = int(hdrs.get("content-length", "0"))
        while len(buf) < n:
            fill()
        body, buf = buf[:n], buf[n:]
    return status, body
r1 = read_response(); r2 = read_response(); r3 = read_response()
ok = (r1[0] == 200 and json.loads(r1[1])["object"] == "text_completion"
      and r2[0] == 200 and json.loads(r2[1])["object"] == "list" and r3[0] == 200)
print("PIPELINE_OK" if ok else "PIPELINE_BAD %r %r %r" % (r1, r2[:1], r3[:1]))
PYEOF
if grep -q PIPELINE_OK "$SY_TMP/pipe.out"; then
    sy_ok "pipelined requests on one connection are answered in order"
else
    sy_not_ok "pipelined requests on one connection are answered in order" "$(tail -n 8 "$SY_TMP/pipe.out")"
fi

# a chunked request body is accepted like a Content-Length one
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"chunked body\",\"max_tokens\":2,\"ignore_eos\":true}" \
    -H 'Transfer-Encoding: chunked'
sy_assert_status "chunked (Transfer-Encoding) request body -> 200" 200
sy_json_check "chunked request body parsed (13 prompt tokens)" "$SY_BODY" "j['usage']['prompt_tokens'] == 13"

# keep-alive: sequential requests on one connection (curl reuses it: "Re-using existing connection")
curl -sS -v --max-time 10 -o /dev/null "$A_URL/health" -o /dev/null "$A_URL/v1/models" 2>"$SY_TMP/ka.err"
sy_check "HTTP/1.1 keep-alive: a second request reuses the connection" grep -qiE 're-?using existing connection' "$SY_TMP/ka.err"

sy_check "engine alive after the socket tests" sy_alive "$A_PID"

# logprobs against the sim executor: it has no token distribution, so a clear 501 naming
# --model instead of invented numbers; validation errors still come first as vLLM's 400s
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":2,\"logprobs\":2}"
sy_assert_status "sim: completions logprobs -> 501" 501
sy_json_check "sim: the logprobs refusal names --model" "$SY_BODY" \
    "j['error']['type'] == 'NotImplementedError' and j['error']['code'] == 501 and j['error']['param'] == 'logprobs' and '--model' in j['error']['message']"
sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\"logprobs\":true,\"stream\":true}"
sy_assert_status "sim: streamed chat logprobs -> 501 before the stream starts" 501
sy_json_check "sim: chat logprobs refusal names --model" "$SY_BODY" "'--model' in j['error']['message']"
sy_post /v1/chat/completions "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2,\"top_logprobs\":2}"
sy_assert_status "sim: top_logprobs without logprobs -> 400" 400
sy_json_check "sim: vLLM's top_logprobs message" "$SY_BODY" \
    "j['error']['type'] == 'BadRequestError' and j['error']['message'] == 'when using \`top_logprobs\`, \`logprobs\` must be set to true.'"
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"hi\",\"max_tokens\":2,\"frequency_penalty\":0.5,\"presence_penalty\":0.5,\"repetition_penalty\":1.2}"
sy_assert_status "sim: penalties are accepted (and ignored by the sim)" 200

# ---------------------------------------------------------------------------------------------
# vanishing client mid-stream (real-time engine so the stream is still running when the client
# goes away): the server must abort the request and go back to 0 running

sy_start_engine rt --served-model-name "$MODEL" --max-model-len 8192 --sim-speed 1 --log-level warn
C_PID=$SY_PID
C_URL=$SY_URL
C_PORT=$SY_PORT
"$SY_PY" - "$C_PORT" "$MODEL" >"$SY_TMP/vanish.out" 2>&1 <<'PYEOF' &
import json, socket, sys, time
port, model = int(sys.argv[1]), sys.argv[2]
body = json.dumps({"model": model, "prompt": "a very long story", "max_tokens": 8000,
                   "ignore_eos": True, "stream": True}).encode()
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
buf = b""
while buf.count(b"data: ") < 3:
    d = s.recv(4096)
    if not d:
        break
    buf += d
print("EVENTS %d" % buf.count(b"data: "), flush=True)
time.sleep(1.0)  # stay connected a moment so the test can see the request running
s.close()
print("CLOSED", flush=True)
PYEOF
VAN_PID=$!
SY_PIDS+=("$VAN_PID")
sy_wait_until 15 grep -q EVENTS "$SY_TMP/vanish.out"
sy_check "vanishing client received its first events" grep -q 'EVENTS [3-9]' "$SY_TMP/vanish.out"
R=$(sy_metric "$C_URL" vllm:num_requests_running)
sy_assert_eq "the long stream is running (vllm:num_requests_running 1)" 1 "$("$SY_PY" -c "print(int(float('$R')))" 2>/dev/null)"
sy_wait_until 10 grep -q CLOSED "$SY_TMP/vanish.out"
running_zero() { [ "$(sy_metric "$C_URL" vllm:num_requests_running)" == "0.0" ]; }
if sy_wait_until 5 running_zero; then
    sy_ok "after the client vanished, num_requests_running is back to 0 within 5 s"
else
    sy_not_ok "after the client vanished, num_requests_running is back to 0 within 5 s" \
        "running=$(sy_metric "$C_URL" vllm:num_requests_running)"
fi
SY_URL=$C_URL
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"still there?\",\"max_tokens\":2,\"ignore_eos\":true}"
sy_assert_status "the engine still serves after a vanished client" 200
wait "$VAN_PID" 2>/dev/null
sy_stop_pid "$C_PID" 15
sy_assert_eq "real-time engine: SIGTERM exits 0" 0 "$?"

# ---------------------------------------------------------------------------------------------
# body limit and API key (second engine)

sy_start_engine auth --served-model-name "$MODEL" --max-model-len $MAXLEN --sim-speed 0 \
    --max-body-bytes 1024 --api-key s3cret --log-level warn
B_PID=$SY_PID
B_URL=$SY_URL
BIG=$(head -c 4000 /dev/zero | tr '\0' 'b')
sy_http POST "$B_URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"$BIG\",\"max_tokens\":1}" -H 'Authorization: Bearer s3cret'
sy_assert_status "body larger than --max-body-bytes -> 413" 413
sy_json_check "413 has a nested error body" "$SY_BODY" "j['error']['code'] == 413 and is_str(j['error']['message'])"
sy_http POST "$B_URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"small\",\"max_tokens\":1,\"ignore_eos\":true}" -H 'Authorization: Bearer s3cret'
sy_assert_status "a small body with the right key -> 200" 200
sy_http GET "$B_URL/v1/models"
sy_assert_status "api key: missing Authorization on /v1/models -> 401" 401
sy_json_check "api key: 401 body names the problem" "$SY_BODY" "'unauthorized' in json.dumps(j).lower()"
sy_http POST "$B_URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"x\",\"max_tokens\":1}" -H 'Authorization: Bearer wrong'
sy_assert_status "api key: wrong bearer token on /v1/completions -> 401" 401
sy_http POST "$B_URL/v1/chat/completions" "{\"model\":\"$MODEL\",\"messages\":$CHAT_MSGS,\"max_tokens\":1}" -H 'Authorization: s3cret'
sy_assert_status "api key: token without the Bearer scheme -> 401" 401
sy_http GET "$B_URL/v1/models" - -H 'Authorization: Bearer s3cret'
sy_assert_status "api key: right bearer token -> 200" 200
sy_http GET "$B_URL/health"
sy_assert_status "api key: /health needs no key" 200
sy_http GET "$B_URL/metrics"
sy_assert_status "api key: /metrics needs no key" 200
sy_check "auth engine alive" sy_alive "$B_PID"
sy_stop_pid "$B_PID" 10
sy_assert_eq "auth engine: SIGTERM exits 0" 0 "$?"

# ---------------------------------------------------------------------------------------------
# the main engine is still alive, then drains on SIGTERM and exits 0

sy_check "main engine still alive at the end" sy_alive "$A_PID"
sy_stop_pid "$A_PID" 10
sy_assert_eq "main engine: SIGTERM exits 0" 0 "$?"

sy_finish
