#!/usr/bin/env bash
# test_pd_engine.sh - prefill/decode disaggregation between engines (--kv-transfer-config,
# TcpConnector) on 127.0.0.1, driven by hand the way a P/D proxy drives vLLM's NixlConnector:
#   1. CPU executor on stories260K: the greedy answer through P/D (prefill on P with
#      do_remote_decode, decode on D with P's kv_transfer_params) is token-identical to the
#      aggregated answer; D pulled (did not recompute) and the KV digest D re-read from its own
#      pool equals the one P computed over the blocks it sent; streaming decode too.
#   2. failure paths (sim engines), each answered 200 with the aggregated text, none hanging:
#      the decode never comes (lease expires, blocks freed), a second pull of a pulled lease,
#      block ids outside the lease, a producer that cuts the transfer mid-way, a producer that
#      is not there, the decode engine killed during a pull of real bytes; and hostile frames on
#      the KV port, after which P still serves.
#   3. bad input: kv_transfer_params of the wrong type (400), incomplete params (computed locally).
# After every case the leased-blocks gauge of every producer is back to 0.
# The model comes from $SY_MODELS_DIR (default <repo>/../shared/models): missing, part 1 fails
# when $CI is set and is skipped otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODELS=${SY_MODELS_DIR:-$SY_SOURCE_DIR/../shared/models}
GGUF=$MODELS/stories260K.gguf
KVC='{"kv_connector":"TcpConnector","kv_role":"kv_both","kv_port":0,"kv_ip":"127.0.0.1"}'
KVC_SHORT='{"kv_connector":"TcpConnector","kv_role":"kv_both","kv_port":0,"kv_ip":"127.0.0.1","kv_connector_extra_config":{"lease_seconds":3,"io_timeout_seconds":2}}'

# kv_params FILE : prints the kv_transfer_params object of a completion answer (JSON)
kv_params() { sy_json_get "$1" "j['kv_transfer_params']"; }
# text_of FILE
text_of() { sy_json_get "$1" "j['choices'][0]['text']"; }
leased() { sy_metric "$1" switchyard:kv_leased_blocks; }
gauge_zero() { [ "$(leased "$1")" == "0.0" ]; }
path_count() { sy_metric "$1" switchyard:kv_transfer_requests_total path="$2"; }

# ---------------------------------------------------------------------------------------------
# 1. the CPU executor: P/D is token-identical to aggregated, and the KV bytes equal

if [ ! -f "$GGUF" ]; then
    [ -n "${CI:-}" ] && sy_fail "model file $GGUF is missing (set SY_MODELS_DIR)"
    sy_diag "SKIP part 1: model file $GGUF is missing (set SY_MODELS_DIR)"
else
    M=stories260K
    sy_start_engine agg --model "$GGUF" --served-model-name $M --threads 1
    AGG=$SY_URL
    sy_start_engine prefill --model "$GGUF" --served-model-name $M --threads 1 \
        --kv-transfer-config "$KVC"
    P=$SY_URL
    PLOG=$SY_LOG
    sy_start_engine decode --model "$GGUF" --served-model-name $M --threads 1 \
        --kv-transfer-config "$KVC"
    D=$SY_URL
    DLOG=$SY_LOG
    PROMPT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One day, she saw a big red ball in the grass and"
    Q="\"model\":\"$M\",\"prompt\":\"$PROMPT\",\"temperature\":0"

    sy_http POST "$AGG/v1/completions" "{$Q,\"max_tokens\":48,\"logprobs\":0}" -H 'Content-Type: application/json'
    sy_assert_status "aggregated greedy answer: 200" 200
    cp "$SY_BODY" "$SY_TMP/agg.json"
    N_PROMPT=$(sy_json_get "$SY_TMP/agg.json" "j['usage']['prompt_tokens']")
    sy_diag "prompt: $N_PROMPT tokens"

    sy_http POST "$P/v1/completions" \
        "{$Q,\"max_tokens\":1,\"kv_transfer_params\":{\"do_remote_decode\":true,\"do_remote_prefill\":false,\"remote_engine_id\":null,\"remote_block_ids\":null,\"remote_host\":null,\"remote_port\":null}}" \
        -H 'Content-Type: application/json' -H 'X-Request-Id: pd-cpu-1'
    sy_assert_status "prefill (do_remote_decode) on P: 200" 200
    cp "$SY_BODY" "$SY_TMP/prefill.json"
    sy_json_check "P answers vLLM NixlConnector's kv_transfer_params" "$SY_TMP/prefill.json" \
        "(lambda k: k['do_remote_prefill'] is True and k['do_remote_decode'] is False and is_str(k['remote_engine_id']) and is_str(k['remote_request_id']) and k['remote_host'] == '127.0.0.1' and is_int(k['remote_port']) and len(k['remote_block_ids']) == 1 and len(k['remote_block_ids'][0]) == ($N_PROMPT + 15) // 16 and k['tp_size'] == 1)(j['kv_transfer_params'])"
    sy_check "P holds the prompt's blocks under a lease" test "$(leased "$P")" == "$(( (N_PROMPT + 15) / 16 )).0"
    KV=$(kv_params "$SY_TMP/prefill.json")
    LEASE=$(sy_json_get "$SY_TMP/prefill.json" "j['kv_transfer_params']['remote_request_id']")

    sy_http POST "$D/v1/completions" "{$Q,\"max_tokens\":48,\"logprobs\":0,\"kv_transfer_params\":$KV}" \
        -H 'Content-Type: application/json' -H 'X-Request-Id: pd-cpu-1'
    sy_assert_status "decode with P's params on D: 200" 200
    cp "$SY_BODY" "$SY_TMP/decode.json"
    sy_check "P/D greedy output is token-identical to aggregated" "$SY_PY" -c '
import json, sys
a, d = (json.load(open(f))["choices"][0] for f in sys.argv[1:])
sys.exit(0 if a["text"] == d["text"] and a["logprobs"]["tokens"] == d["logprobs"]["tokens"] and len(a["logprobs"]["tokens"]) == 48 else 1)' \
        "$SY_TMP/agg.json" "$SY_TMP/decode.json"
    sy_check "D pulled the prompt's KV (not recomputed)" test "$(path_count "$D" pulled)" == "1.0"
    sy_check "D reports the pulled tokens as cached" "$SY_PY" -c "
import json; j = json.load(open('$SY_TMP/decode.json'))
import sys; sys.exit(0 if j['usage']['prompt_tokens_details'] is None or j['usage']['prompt_tokens_details']['cached_tokens'] == ($N_PROMPT - 1) // 16 * 16 else 1)"
    sy_wait_until 5 gauge_zero "$P"
    sy_check "P's leased blocks are back to 0 after the pull" gauge_zero "$P"
    PD=$(grep -o "event=kv.lease_served lease=$LEASE .*digest=[0-9a-f]*" "$PLOG" | grep -o 'digest=[0-9a-f]*')
    DD=$(grep -o "event=kv.pull_done lease=$LEASE .*digest=[0-9a-f]*" "$DLOG" | grep -o 'digest=[0-9a-f]*')
    sy_diag "producer $PD, consumer $DD"
    sy_check "the consumer's KV bytes of the pulled blocks equal the producer's (xxh64 digest)" \
        test -n "$PD" -a "$PD" == "$DD"
    B=$(grep -o "event=kv.pull_done lease=$LEASE .*bytes=[0-9]*" "$DLOG" | grep -o 'bytes=[0-9]*')
    sy_diag "pulled $B"

    # streaming decode after a fresh prefill: same text
    sy_http POST "$P/v1/completions" "{$Q,\"max_tokens\":1,\"kv_transfer_params\":{\"do_remote_decode\":true}}" \
        -H 'Content-Type: application/json'
    KV=$(kv_params "$SY_BODY")
    curl -sN --max-time 60 "$D/v1/completions" -H 'Content-Type: application/json' \
        -d "{$Q,\"max_tokens\":48,\"stream\":true,\"kv_transfer_params\":$KV}" >"$SY_TMP/stream.txt"
    sy_check "streaming decode after P/D: the same text" "$SY_PY" -c '
import json, sys
text = ""
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if line.startswith("data: {"):
        text += json.loads(line[6:])["choices"][0]["text"]
sys.exit(0 if text == json.load(open(sys.argv[2]))["choices"][0]["text"] else 1)' \
        "$SY_TMP/stream.txt" "$SY_TMP/agg.json"
    sy_check "the second decode found the blocks cached on D and released P's lease" \
        test "$(path_count "$D" cached)" == "1.0"
    sy_wait_until 5 gauge_zero "$P"
    sy_check "P's leased blocks back to 0" gauge_zero "$P"
fi

# ---------------------------------------------------------------------------------------------
# 2. failure paths on sim engines

SIMQ='"model":"sim-model","temperature":0'
sy_start_engine sim-agg --sim-speed 0
SAGG=$SY_URL
sy_start_engine sim-prefill --sim-speed 0 --kv-transfer-config "$KVC_SHORT"
SP=$SY_URL
SPLOG=$SY_LOG
sy_start_engine sim-decode --sim-speed 0 --kv-transfer-config "$KVC_SHORT"
SD=$SY_URL
KVPORT=$(grep -o 'kv_port=[0-9]*' "$SPLOG" | head -1 | cut -d= -f2)

# prompt N: a distinct 300-token prompt (the sim tokenizer is one token per byte)
prompt() { printf 'case %-3s %0291d' "$1" 0; }
agg_text() { # N : the aggregated greedy text of prompt N
    sy_http POST "$SAGG/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt "$1")\",\"max_tokens\":12}" \
        -H 'Content-Type: application/json'
    text_of "$SY_BODY"
}
prefill() { # N : prefill prompt N on SP, params into $SY_TMP/kv_N.json
    sy_http POST "$SP/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt "$1")\",\"max_tokens\":1,\"kv_transfer_params\":{\"do_remote_decode\":true}}" \
        -H 'Content-Type: application/json'
    kv_params "$SY_BODY" >"$SY_TMP/kv_$1.json"
}
decode() { # N PARAMS_JSON : decode prompt N on SD with the params; answer in $SY_BODY
    sy_http POST "$SD/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt "$1")\",\"max_tokens\":12,\"kv_transfer_params\":$2}" \
        -H 'Content-Type: application/json'
}
check_decode() { # NAME N PARAMS_JSON : the decode answers 200 with the aggregated text
    local want
    want=$(agg_text "$2")
    decode "$2" "$3"
    sy_assert_status "$1: 200" 200
    sy_assert_eq "$1: the aggregated text" "$want" "$(text_of "$SY_BODY")"
}

# a. sim P/D works and is modelled: 18 blocks of 16 tokens x 128 KiB per token
prefill 1
check_decode "sim P/D" 1 "$(cat "$SY_TMP/kv_1.json")"
sy_check "sim D pulled" test "$(path_count "$SD" pulled)" == "1.0"
sy_check "sim D counts the modelled bytes (18 blocks x 2 MiB)" \
    test "$(sy_metric "$SD" switchyard:kv_transfer_bytes_total direction=in)" == "37748736.0"

# b. the decode never comes: the lease expires (3 s) and its blocks are freed
prefill 2
sy_check "a lease holds 19 blocks" test "$(leased "$SP")" == "19.0"
sy_wait_until 10 gauge_zero "$SP"
sy_check "the unclaimed lease expired and its blocks were freed" gauge_zero "$SP"
sy_check "counted as expired" test "$(sy_metric "$SP" switchyard:kv_transfer_leases_total result=expired)" == "1.0"
RC0=$(path_count "$SD" recomputed)
check_decode "decode after the lease expired (recomputed)" 2 "$(cat "$SY_TMP/kv_2.json")"
sy_check "the late decode recomputed the prompt" test "$(path_count "$SD" recomputed)" != "$RC0"

# c. a second pull of a lease that was pulled: refused, recomputed (a fresh consumer: SD caches)
sy_start_engine sim-decode2 --sim-speed 0 --kv-transfer-config "$KVC_SHORT"
SD2=$SY_URL
SD2LOG=$SY_LOG
sy_http POST "$SD2/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt 1)\",\"max_tokens\":12,\"kv_transfer_params\":$(cat "$SY_TMP/kv_1.json")}" \
    -H 'Content-Type: application/json'
sy_assert_status "duplicate pull from another consumer: 200" 200
sy_assert_eq "duplicate pull: the aggregated text" "$(agg_text 1)" "$(text_of "$SY_BODY")"
sy_check "the duplicate pull was refused with a clear error" \
    grep -qE 'kv.pull_failed .*(already pulled or released|expired)' "$SD2LOG"

# d. block ids that are not part of the lease
prefill 3
BAD=$("$SY_PY" -c 'import json,sys; k=json.load(open(sys.argv[1])); k["remote_block_ids"]=[[26999+i for i in range(19)]]; print(json.dumps(k))' "$SY_TMP/kv_3.json")
check_decode "block ids outside the lease (recomputed)" 3 "$BAD"
sy_check "the producer named the bad block" grep -q 'not part of lease' "$SPLOG"
sy_wait_until 10 gauge_zero "$SP"
sy_check "the refused lease still expires: leased blocks 0" gauge_zero "$SP"

# e. a producer that cuts the transfer mid-way: the consumer recomputes
FAKE=$(sy_free_port)
sy_bg "$SY_TMP/fake.log" "$SY_PY" -c '
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept()
    h = c.recv(12)
    if len(h) == 12:
        p = c.recv(struct.unpack("<I", h[8:12])[0], socket.MSG_WAITALL)
        n = struct.unpack("<I", p[2 + p[1] + 20:2 + p[1] + 24])[0]
        c.sendall(b"SYKV\x01\x02\x00\x00" + struct.pack("<IIIQ", 16, 32, n, 0))
        c.sendall(b"SYKV\x01\x03\x00\x00" + struct.pack("<I", 16) + b"\x00" * 6)
    c.close()
' "$FAKE"
sy_wait_until 5 "$SY_PY" -c "import socket; socket.create_connection(('127.0.0.1', $FAKE), 1)"
CUT=$("$SY_PY" -c 'import json,sys; k=json.load(open(sys.argv[1])); k["remote_port"]=int(sys.argv[2]); print(json.dumps(k))' "$SY_TMP/kv_1.json" "$FAKE")
sy_http POST "$SD2/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt 4)\",\"max_tokens\":12,\"kv_transfer_params\":$CUT}" \
    -H 'Content-Type: application/json'
sy_assert_status "transfer cut mid-way: 200" 200
sy_assert_eq "transfer cut mid-way: the aggregated text" "$(agg_text 4)" "$(text_of "$SY_BODY")"
sy_check "the cut was seen as a failed pull" grep -qE "kv.pull_failed .*host=127.0.0.1:$FAKE .*layer 0" "$SD2LOG"

# f. a producer that is not there: bounded, recomputed
DEAD=$(sy_free_port)
GONE=$("$SY_PY" -c 'import json,sys; k=json.load(open(sys.argv[1])); k["remote_port"]=int(sys.argv[2]); print(json.dumps(k))' "$SY_TMP/kv_1.json" "$DEAD")
t0=$SECONDS
sy_http POST "$SD2/v1/completions" "{$SIMQ,\"prompt\":\"$(prompt 5)\",\"max_tokens\":12,\"kv_transfer_params\":$GONE}" \
    -H 'Content-Type: application/json'
sy_assert_status "producer not listening: 200 (recomputed)" 200
sy_check "producer not listening: answered within 10 s" test $((SECONDS - t0)) -lt 10

# g. hostile frames on P's KV port: an ERR frame (type 5) or a close, and P keeps serving
sy_check "hostile frames are refused with ERR frames" "$SY_PY" -c '
import socket, struct, sys
port = int(sys.argv[1])
def ask(data):
    c = socket.create_connection(("127.0.0.1", port), 2); c.settimeout(3)
    try:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        r = b""
        while True:
            b = c.recv(4096)
            if not b: break
            r += b
        return r
    finally: c.close()
cases = [b"GET / HTTP/1.1\r\n\r\n", b"SYKV\x09\x01\x00\x00\x00\x00\x00\x00",
         b"SYKV\x01\x63\x00\x00\x00\x00\x00\x00", b"SYKV\x01\x01\x00\x00" + struct.pack("<I", 1 << 30),
         b"SYKV\x01\x01\x00\x00" + struct.pack("<I", 3) + b"\x01\x05a",
         b"SYKV\x01\x01\x00\x00" + struct.pack("<I", 29) + b"\x01\x01x" + struct.pack("<IIIQI", 32, 16, 0, 0, 5) + b"\x00" * 2,
         b"SYKV\x01\x06\x00\x00" + struct.pack("<I", 4) + b"\x03abc",
         bytes(range(256)) * 4, b"SYK"]
for data in cases:
    r = ask(data)
    if data == b"SYK":
        continue
    if len(r) < 16 or r[:4] != b"SYKV" or r[5] != 5:
        print("no ERR frame for", data[:24], r[:40]); sys.exit(1)
' "$KVPORT"
sy_check "P is healthy after the hostile frames" sy_health_ok "$SP"
prefill 6
check_decode "P/D after the hostile frames" 6 "$(cat "$SY_TMP/kv_6.json")"

# h. the decode engine dies in the middle of a pull of real bytes (--sim-kv-storage: 2 MiB per
#    block): the producer's connection breaks, the lease ends, its blocks are freed
KVS='{"kv_connector":"TcpConnector","kv_role":"kv_both","kv_port":0,"kv_ip":"127.0.0.1","kv_connector_extra_config":{"lease_seconds":5}}'
sy_start_engine big-prefill --sim-speed 0 --sim-kv-storage --num-gpu-blocks-override 160 --kv-transfer-config "$KVS"
BP=$SY_URL
sy_start_engine big-decode --sim-speed 0 --sim-kv-storage --num-gpu-blocks-override 160 --kv-transfer-config "$KVS"
BD=$SY_URL
BD_PID=$SY_PID
BIG=$(printf 'big %02000d' 0)
sy_http POST "$BP/v1/completions" "{$SIMQ,\"prompt\":\"$BIG\",\"max_tokens\":1,\"kv_transfer_params\":{\"do_remote_decode\":true}}" \
    -H 'Content-Type: application/json'
BIGKV=$(kv_params "$SY_BODY")
sy_check "the big lease holds 126 blocks" test "$(leased "$BP")" == "126.0"
curl -s --max-time 30 "$BD/v1/completions" -H 'Content-Type: application/json' \
    -d "{$SIMQ,\"prompt\":\"$BIG\",\"max_tokens\":4,\"kv_transfer_params\":$BIGKV}" >/dev/null 2>&1 &
CURL_PID=$!
sleep 0.05
kill -KILL "$BD_PID" 2>/dev/null
wait "$CURL_PID" 2>/dev/null
sy_wait_until 8 gauge_zero "$BP"
sy_check "decode died mid-pull: the producer's leased blocks are back to 0" gauge_zero "$BP"
sy_diag "producer: pulled $(sy_metric "$BP" switchyard:kv_transfer_leases_total result=pulled)," \
    "pull_failed $(sy_metric "$BP" switchyard:kv_transfer_leases_total result=pull_failed)," \
    "expired $(sy_metric "$BP" switchyard:kv_transfer_leases_total result=expired)"
sy_check "the producer is healthy after its consumer died" sy_health_ok "$BP"

# ---------------------------------------------------------------------------------------------
# 3. bad input at the API

sy_http POST "$SD/v1/completions" "{$SIMQ,\"prompt\":\"hi\",\"max_tokens\":2,\"kv_transfer_params\":\"x\"}" \
    -H 'Content-Type: application/json'
sy_assert_status "kv_transfer_params of the wrong type: 400" 400
sy_json_check "the 400 names the field" "$SY_BODY" "'kv_transfer_params' in j['error']['message']"
check_decode "incomplete kv_transfer_params: computed locally" 7 '{"do_remote_prefill":true,"remote_host":"127.0.0.1"}'

for u in "$SP" "$BP"; do
    sy_wait_until 10 gauge_zero "$u"
    sy_check "no lease left on $u" gauge_zero "$u"
done
sy_finish
