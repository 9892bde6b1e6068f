#!/usr/bin/env bash
# test_gateway_tls.sh - TLS on the gateway's client listener, the admin/metrics listener and TLS
# from the gateway to engines, with a throwaway CA made by the openssl CLI (leaf certificates for
# IP 127.0.0.1) in the test's temp dir:
#   - completions and streaming completions over https with curl --cacert (body, data: lines,
#     [DONE]); curl without the CA fails verification; plain HTTP and garbage bytes to the TLS
#     port fail cleanly, a silent TCP client does not block others, the gateway stays up;
#   - the official openai npm client over https (NODE_EXTRA_CA_CERTS);
#   - SIGHUP with a new certificate: new connections see the new serial while a connection made
#     before keeps the old one; SIGHUP with a broken certificate keeps the running one;
#   - --admin-port: /metrics there, 404 on the client port, /health on both;
#   - an engine serving TLS itself (engine --tls-cert/--tls-key) behind an https:// endpoint with
#     --upstream-tls-ca: completions and streams pass; with the wrong CA the gateway refuses the
#     engine (certificate verify failed) and answers 5xx.
# Bounded waits; every process is cleaned up (lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v openssl >/dev/null 2>&1 || sy_fail "the openssl CLI is missing"
MODEL=sim/tls
PKI=$SY_TMP/pki
mkdir -p "$PKI"

# ---- PKI: one CA, leaf certificates for IP 127.0.0.1, a second (unrelated) CA ----
mk_ca() { # NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=switchyard test $1" -keyout "$PKI/$1.key" -out "$PKI/$1.crt" \
        >>"$PKI/openssl.log" 2>&1
}
mk_leaf() { # NAME SERIAL [CA]
    local ca=${3:-ca}
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
        >"$PKI/$1.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" >>"$PKI/openssl.log" 2>&1 &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
            -set_serial "$2" -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" \
            >>"$PKI/openssl.log" 2>&1
}
mk_ca ca && mk_ca otherca && mk_leaf srv1 0x5101 && mk_leaf srv2 0x5202 && mk_leaf eng 0xE001 ||
    sy_fail "openssl could not make the test certificates" "$(tail -n 20 "$PKI/openssl.log")"
# the gateway serves srv1 with its chain (leaf, then the CA) from files it re-reads on SIGHUP
cat "$PKI/srv1.crt" "$PKI/ca.crt" >"$PKI/live.crt"
cp "$PKI/srv1.key" "$PKI/live.key"
sy_ok "test CA and certificates for 127.0.0.1 made with the openssl CLI"

# the serial the server on PORT presents to a new connection ("5101"), or "none"
serial_of() { # PORT
    local s
    s=$(timeout 10 openssl s_client -connect "127.0.0.1:$1" -CAfile "$PKI/ca.crt" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null)
    echo "${s#serial=}" | grep . || echo none
}

# ---- engine and gateway ----
sy_start_engine e0 --served-model-name "$MODEL" --sim-speed 10 --log-level warn
EPORT=$SY_PORT
GPORT=$(sy_free_port)
APORT=$(sy_free_port)
GURL=https://127.0.0.1:$GPORT
AURL=http://127.0.0.1:$APORT
GLOG=$SY_TMP/gateway.log
CURL_TLS=(--cacert "$PKI/ca.crt")
sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$GPORT" --scheduler round-robin \
    --endpoint "http://127.0.0.1:$EPORT" --tls-cert "$PKI/live.crt" --tls-key "$PKI/live.key" \
    --admin-port "$APORT" --log-level info
GPID=$SY_BG_PID
tls_health_ok() { [ "$(curl -s "${CURL_TLS[@]}" -o /dev/null -w '%{http_code}' --max-time 2 "$GURL/health")" == 200 ]; }
sy_wait_until 20 tls_health_ok || sy_fail "gateway did not become healthy over TLS" "$(tail -n 30 "$GLOG")"
sy_ok "gateway healthy over https"
models_known() { curl -s "${CURL_TLS[@]}" --max-time 2 "$GURL/v1/models" | grep -q "$MODEL"; }
sy_wait_until 20 models_known || sy_fail "the gateway did not learn the engine's model"

# ---- requests over TLS ----
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"hello tls\",\"max_tokens\":5}" \
    "${CURL_TLS[@]}"
sy_assert_status "completion over https" 200
sy_json_check "completion body" "$SY_BODY" \
    "j['object'] == 'text_completion' and len(j['choices'][0]['text']) > 0"
SY_HTTP_TIMEOUT=30 sy_http POST "$GURL/v1/chat/completions" \
    "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}],\"max_tokens\":40,\"stream\":true}" \
    "${CURL_TLS[@]}" -N
sy_assert_status "streaming chat completion over https" 200
n_data=$(grep -c '^data: {' "$SY_BODY")
if [ "$n_data" -ge 5 ] && [ "$(grep '^data: ' "$SY_BODY" | tail -n 1)" == "data: [DONE]" ]; then
    sy_ok "stream over https: $n_data data: chunks, then data: [DONE]"
else
    sy_not_ok "stream over https" "$(head -c 600 "$SY_BODY")"
fi
grep -qi '^content-type: text/event-stream' "$SY_HDRS" && sy_ok "stream is text/event-stream" ||
    sy_not_ok "stream content type" "$(cat "$SY_HDRS")"
# a long stream read slowly (backpressure over TLS): every chunk arrives, in order, ending [DONE]
curl -sS -N "${CURL_TLS[@]}" --max-time 60 --limit-rate 20k -o "$SY_TMP/slow.txt" \
    -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"$MODEL\",\"prompt\":\"slow reader\",\"max_tokens\":2000,\"stream\":true,\"ignore_eos\":true}" \
    "$GURL/v1/completions"
n_slow=$(grep -c '^data: {' "$SY_TMP/slow.txt")
if [ "$n_slow" -ge 1000 ] && [ "$(tail -n 2 "$SY_TMP/slow.txt" | head -n 1)" == "data: [DONE]" ]; then
    sy_ok "slow reader over https gets the whole stream ($n_slow chunks, [DONE])"
else
    sy_not_ok "slow reader over https" "chunks=$n_slow tail: $(tail -c 300 "$SY_TMP/slow.txt")"
fi
# ALPN http/1.1 offered and chosen
alpn=$(curl -sv "${CURL_TLS[@]}" --max-time 5 -o /dev/null "$GURL/health" 2>&1 | grep -i 'ALPN' | tr '\n' ' ')
[[ $alpn == *"http/1.1"* ]] && sy_ok "ALPN http/1.1" || sy_not_ok "ALPN http/1.1" "$alpn"

# ---- failures that must stay clean ----
curl -sS --max-time 10 -o /dev/null "$GURL/health" 2>"$SY_TMP/noca.err"
rc=$?
[ $rc -eq 60 ] && sy_ok "curl without the CA fails verification (exit 60)" ||
    sy_not_ok "curl without the CA: exit $rc, want 60" "$(cat "$SY_TMP/noca.err")"
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GPORT/health")
rc=$?
if [ "$code" != 200 ] && [ $rc -ne 28 ]; then
    sy_ok "plain HTTP to the TLS port fails at once (curl exit $rc)"
else
    sy_not_ok "plain HTTP to the TLS port" "code=$code exit=$rc"
fi
"$SY_PY" - "$GPORT" >"$SY_TMP/garbage.txt" 2>&1 <<'PYEOF'
import os, socket, sys, time
port = int(sys.argv[1])
# random bytes instead of a ClientHello: the gateway closes the connection
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(os.urandom(4096))
t0 = time.time()
try:
    while s.recv(4096):
        pass
    print("garbage: closed after %.2fs" % (time.time() - t0))
except socket.timeout:
    print("garbage: still open after 5 s"); sys.exit(1)
except ConnectionResetError:
    print("garbage: reset after %.2fs" % (time.time() - t0))
PYEOF
rc=$?
[ $rc -eq 0 ] && sy_ok "random bytes to the TLS port: $(head -n 1 "$SY_TMP/garbage.txt")" ||
    sy_not_ok "random bytes to the TLS port" "$(cat "$SY_TMP/garbage.txt")"
# 20 connections that send nothing and one that stops inside a TLS record: others are served
export SY_HELD_FLAG=$SY_TMP/held.flag
"$SY_PY" - "$GPORT" >"$SY_TMP/held.txt" 2>&1 <<'PYEOF' &
import os, socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
h = socket.create_connection(("127.0.0.1", port), timeout=5)
h.sendall(b"\x16\x03\x01\x40\x00\x01")  # a record header, then nothing
held.append(h)
open(os.environ["SY_HELD_FLAG"], "w").write("held\n")
time.sleep(4)
for c in held:
    c.close()
PYEOF
HELD_PID=$!
SY_PIDS+=("$HELD_PID")
sy_wait_until 10 test -f "$SY_HELD_FLAG" || sy_not_ok "silent clients connected"
t0=$(date +%s%N)
tls_health_ok && sy_ok "served while 21 silent/stalled TLS clients are connected ($(( ($(date +%s%N) - t0) / 1000000 )) ms)" ||
    sy_not_ok "a request while silent TLS clients are connected"
wait "$HELD_PID" 2>/dev/null
sy_check "gateway alive after bad clients" sy_alive "$GPID"

# ---- the official openai client over https ----
NODE_DIR=$SY_SOURCE_DIR/tests/integration/node
sy_node_deps "$NODE_DIR"
if NODE_EXTRA_CA_CERTS=$PKI/ca.crt timeout 240 node "$NODE_DIR/openai_client.mjs" "$GURL/v1" "$MODEL" \
    >"$SY_TMP/node.txt" 2>&1; then
    sy_ok "openai npm client over https (NODE_EXTRA_CA_CERTS): $(tail -n 1 "$SY_TMP/node.txt")"
else
    sy_not_ok "openai npm client over https" "$(grep -E 'not ok|#|Error' "$SY_TMP/node.txt" | head -n 20)"
fi

# ---- admin listener ----
sy_http GET "$AURL/metrics"
sy_assert_status "/metrics on the admin port" 200
grep -q '^switchyard_gateway_' "$SY_BODY" && sy_ok "admin /metrics has the gateway's series" ||
    sy_not_ok "admin /metrics content" "$(head -c 300 "$SY_BODY")"
sy_http GET "$GURL/metrics" - "${CURL_TLS[@]}"
sy_assert_status "/metrics on the client port is 404" 404
sy_json_check "404 body is the vLLM error shape" "$SY_BODY" "j['error']['code'] == 404"
sy_http GET "$AURL/health"
sy_assert_status "/health on the admin port" 200
sy_http GET "$GURL/health" - "${CURL_TLS[@]}"
sy_assert_status "/health on the client port" 200
sy_http GET "$AURL/v1/models"
sy_assert_status "the API is not served on the admin port" 404

# ---- certificate reload on SIGHUP ----
s0=$(serial_of "$GPORT")
sy_assert_eq "the gateway presents srv1" 5101 "$s0"
# a connection made before the reload, used again after it
"$SY_PY" - "$GPORT" "$PKI/ca.crt" "$SY_TMP/keep.go" >"$SY_TMP/keep.txt" 2>&1 <<'PYEOF' &
import os, socket, ssl, sys, time
port, ca, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1")
def get():
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    return s.recv(4096).split(b"\r\n", 1)[0].decode()
print("before", s.getpeercert()["serialNumber"], get(), flush=True)
for _ in range(200):
    if os.path.exists(go):
        break
    time.sleep(0.05)
print("after", s.getpeercert()["serialNumber"], get(), flush=True)
PYEOF
KEEP_PID=$!
SY_PIDS+=("$KEEP_PID")
sy_wait_until 10 grep -q before "$SY_TMP/keep.txt"
cat "$PKI/srv2.crt" "$PKI/ca.crt" >"$PKI/live.crt.new" && mv "$PKI/live.crt.new" "$PKI/live.crt"
cp "$PKI/srv2.key" "$PKI/live.key"
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'event=gateway.tls_reload ' "$GLOG" || sy_not_ok "gateway.tls_reload logged" "$(tail -n 5 "$GLOG")"
s1=$(serial_of "$GPORT")
sy_assert_eq "after SIGHUP new connections see srv2" 5202 "$s1"
touch "$SY_TMP/keep.go"
wait "$KEEP_PID" 2>/dev/null
if grep -q '^before 5101 HTTP/1.1 200' "$SY_TMP/keep.txt" && grep -q '^after 5101 HTTP/1.1 200' "$SY_TMP/keep.txt"; then
    sy_ok "a connection made before the reload keeps srv1 and keeps working"
else
    sy_not_ok "connection across the reload" "$(cat "$SY_TMP/keep.txt")"
fi
# a broken pair: the running certificate stays
echo "not a certificate" >"$PKI/live.crt"
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'event=gateway.tls_reload_failed' "$GLOG" &&
    sy_ok "broken certificate: $(grep -o 'event=gateway.tls_reload_failed.*' "$GLOG" | head -c 200)" ||
    sy_not_ok "gateway.tls_reload_failed logged" "$(tail -n 5 "$GLOG")"
sy_assert_eq "after a bad SIGHUP the gateway still presents srv2" 5202 "$(serial_of "$GPORT")"
cat "$PKI/srv1.crt" >"$PKI/live.crt" # srv1's certificate with srv2's key
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'does not match' "$GLOG" && sy_ok "mismatched key refused with a reason" ||
    sy_not_ok "mismatched key on reload" "$(tail -n 5 "$GLOG")"
sy_http POST "$GURL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"still here\",\"max_tokens\":3}" \
    "${CURL_TLS[@]}"
sy_assert_status "completion after the failed reloads" 200
sy_check "gateway alive after the reloads" sy_alive "$GPID"

# ---- TLS from the gateway to an engine ----
TPORT=$(sy_free_port)
sy_bg "$SY_TMP/engine-tls.log" "$SY_BIN" engine --sim --host 127.0.0.1 --port "$TPORT" \
    --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
    --tls-cert "$PKI/eng.crt" --tls-key "$PKI/eng.key"
TPID=$SY_BG_PID
eng_ok() { [ "$(curl -s "${CURL_TLS[@]}" -o /dev/null -w '%{http_code}' --max-time 2 "https://127.0.0.1:$TPORT/health")" == 200 ]; }
sy_wait_until 20 eng_ok || sy_fail "TLS engine did not come up" "$(tail -n 20 "$SY_TMP/engine-tls.log")"
sy_ok "engine serves https with --tls-cert/--tls-key"
G2PORT=$(sy_free_port)
G2URL=http://127.0.0.1:$G2PORT
sy_bg "$SY_TMP/gateway2.log" "$SY_BIN" gateway --host 127.0.0.1 --port "$G2PORT" \
    --scheduler round-robin --endpoint "https://127.0.0.1:$TPORT" --upstream-tls-ca "$PKI/ca.crt" \
    --log-level info
G2PID=$SY_BG_PID
g2_models() { curl -s --max-time 2 "$G2URL/v1/models" | grep -q "$MODEL"; }
sy_wait_until 20 g2_models || sy_fail "gateway 2 did not learn the TLS engine's model" "$(tail -n 20 "$SY_TMP/gateway2.log")"
sy_ok "gateway reads /v1/models from the engine over TLS"
sy_wait_until 10 sy_health_ok "$G2URL" && sy_ok "gateway's health probe of the TLS engine passes" ||
    sy_not_ok "gateway 2 health" "$(tail -n 10 "$SY_TMP/gateway2.log")"
sy_http POST "$G2URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"upstream tls\",\"max_tokens\":5}"
sy_assert_status "completion through gateway -> engine over TLS" 200
grep -qi "^x-switchyard-endpoint: 127.0.0.1:$TPORT" "$SY_HDRS" && sy_ok "served by the TLS engine" ||
    sy_not_ok "x-switchyard-endpoint" "$(cat "$SY_HDRS")"
sy_http POST "$G2URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"upstream tls stream\",\"max_tokens\":30,\"stream\":true}" -N
if [ "$SY_STATUS" == 200 ] && [ "$(grep -c '^data: {' "$SY_BODY")" -ge 5 ] &&
    [ "$(grep '^data: ' "$SY_BODY" | tail -n 1)" == "data: [DONE]" ]; then
    sy_ok "stream through gateway -> engine over TLS"
else
    sy_not_ok "stream over upstream TLS" "status $SY_STATUS $(head -c 400 "$SY_BODY")"
fi
up_gen=$(sy_metric "$G2URL" switchyard_gateway_endpoint_up)
sy_assert_eq "the TLS endpoint is up in the gateway's metrics" 1.0 "$up_gen"
# the wrong CA: the engine is refused
G3PORT=$(sy_free_port)
G3URL=http://127.0.0.1:$G3PORT
sy_bg "$SY_TMP/gateway3.log" "$SY_BIN" gateway --host 127.0.0.1 --port "$G3PORT" \
    --scheduler round-robin --endpoint "https://127.0.0.1:$TPORT,model=$MODEL" \
    --upstream-tls-ca "$PKI/otherca.crt" --log-level info
G3PID=$SY_BG_PID
g3_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$G3URL/v1/models")" == 200 ]; }
sy_wait_until 20 g3_up || sy_fail "gateway 3 did not start" "$(tail -n 20 "$SY_TMP/gateway3.log")"
sy_http POST "$G3URL/v1/completions" "{\"model\":\"$MODEL\",\"prompt\":\"wrong ca\",\"max_tokens\":3}"
case "$SY_STATUS" in 5??) sy_ok "wrong upstream CA: the gateway answers $SY_STATUS" ;;
*) sy_not_ok "wrong upstream CA answered $SY_STATUS" "$(head -c 300 "$SY_BODY")" ;; esac
sy_wait_until 10 grep -q 'event=http_client.tls_failed.*certificate verify failed' "$SY_TMP/gateway3.log" &&
    sy_ok "the refusal is logged: certificate verify failed" ||
    sy_not_ok "tls_failed log" "$(grep -i tls "$SY_TMP/gateway3.log" | tail -n 5)"

# ---- clean exits ----
for p in "$G3PID" "$G2PID" "$GPID" "$TPID"; do
    sy_stop_pid "$p" 15
    sy_assert_eq "pid $p exits 0 on SIGTERM" 0 "$?"
done
sy_finish
