#!/usr/bin/env bash
# test_gateway_parity.sh - the gateway's active hash-parity check against real `switchyard engine
# --sim` processes on 127.0.0.1, without any client traffic: an engine with the gateway's
# PYTHONHASHSEED shows result="match" in switchyard_gateway_hash_parity, one with another seed
# shows "mismatch" (and the gateway logs an error naming PYTHONHASHSEED), one without KV events
# (but with a kv-events address configured) shows "no_events" (and a warning); an endpoint added
# by a SIGHUP reload is probed too. /metrics is parsed with python3-prometheus-client. Bounded
# waits; every process is cleaned up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/parity
export PYTHONHASHSEED=0
kv_conf() { # PORT TOPIC
    printf '{"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:%s","topic":"%s"}' "$1" "$2"
}

KP_OK=$(sy_free_port)
sy_start_engine ok --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
    --kv-events-config "$(kv_conf "$KP_OK" kv@ok)"
P_OK=$SY_PORT
KP_BAD=$(sy_free_port)
PYTHONHASHSEED=4242 sy_start_engine badseed --served-model-name "$MODEL" --sim-speed 10 \
    --log-level warn --kv-events-config "$(kv_conf "$KP_BAD" kv@bad)"
P_BAD=$SY_PORT
KP_NONE=$(sy_free_port) # nobody publishes there
sy_start_engine noevents --served-model-name "$MODEL" --sim-speed 10 --log-level warn
P_NONE=$SY_PORT
KP_NEW=$(sy_free_port)
sy_start_engine added --served-model-name "$MODEL" --sim-speed 10 --log-level warn \
    --kv-events-config "$(kv_conf "$KP_NEW" kv@new)"
P_NEW=$SY_PORT

FILE=$SY_TMP/endpoints.yaml
printf 'endpoints:\n  - url: http://127.0.0.1:%s\n    kv_events: tcp://127.0.0.1:%s\n' "$P_NONE" "$KP_NONE" >"$FILE"

GPORT=$(sy_free_port)
GURL=http://127.0.0.1:$GPORT
GLOG=$SY_TMP/gateway.log
sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$GPORT" --scheduler default \
    --endpoint "http://127.0.0.1:$P_OK,kv-events=tcp://127.0.0.1:$KP_OK" \
    --endpoint "http://127.0.0.1:$P_BAD,kv-events=tcp://127.0.0.1:$KP_BAD" \
    --endpoints-file "$FILE" --log-level info
GPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$GURL" || sy_fail "gateway did not become healthy" "$(tail -n 30 "$GLOG")"
sy_ok "gateway healthy in front of 3 engines"

# parity RESULT PORT : the gateway's /metrics has switchyard_gateway_hash_parity 1 for
# {endpoint="127.0.0.1:PORT", result=RESULT} and 0 for the endpoint's other results
parity() {
    curl -sS --max-time 10 -o "$SY_TMP/pm.txt" "$GURL/metrics" || return 1
    "$SY_PY" - "$SY_TMP/pm.txt" "127.0.0.1:$2" "$1" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
path, ep, want = sys.argv[1:4]
vals = {}
for f in text_string_to_metric_families(open(path).read()):
    for s in f.samples:
        if s.name == "switchyard_gateway_hash_parity" and s.labels.get("endpoint") == ep:
            vals[s.labels["result"]] = s.value
ok = vals.get(want) == 1.0 and sum(vals.values()) == 1.0 and \
    set(vals) == {"pending", "match", "mismatch", "no_events", "probe_failed"}
sys.exit(0 if ok else 1)
PYEOF
}
check_parity() { # NAME RESULT PORT LIMIT_S
    if sy_wait_until "$4" parity "$2" "$3"; then
        sy_ok "$1"
    else
        sy_not_ok "$1" "$(grep hash_parity "$SY_TMP/pm.txt"; grep hash_parity "$GLOG" | tail -n 5)"
    fi
}

check_parity "same PYTHONHASHSEED: result=match, without client traffic" match "$P_OK" 20
check_parity "engine with another PYTHONHASHSEED: result=mismatch" mismatch "$P_BAD" 20
sy_check "the mismatch is logged as an error naming PYTHONHASHSEED and both hashes" \
    grep -E "level=error event=gateway.hash_parity_mismatch endpoint=127.0.0.1:$P_BAD .*gateway_hash=[0-9]+ engine_hash=[0-9]+ gateway_pythonhashseed=\"0\" gateway_block_size=16 .*PYTHONHASHSEED" "$GLOG"
sy_check "the matching engine is logged as verified" \
    grep -q "event=gateway.hash_parity endpoint=127.0.0.1:$P_OK result=match" "$GLOG"
# no_events: 5 s wait, one repeat 1 s later, 5 s again
check_parity "engine without KV events: result=no_events" no_events "$P_NONE" 30
sy_check "no_events is logged as a warning" \
    grep -q "level=warn event=gateway.hash_parity_no_events endpoint=127.0.0.1:$P_NONE" "$GLOG"
NREQ=$(sy_metric "$GURL" switchyard_gateway_requests_total)
case $NREQ in nan | 0.0) sy_ok "no client request went through the gateway" ;;
*) sy_not_ok "no client request went through the gateway" "requests_total=$NREQ" ;; esac
sy_assert_eq "the verified engine saw one probe prompt of 128 tokens" "128.0" \
    "$(sy_metric "http://127.0.0.1:$P_OK" vllm:prompt_tokens_total)"

# an endpoint added by SIGHUP is probed as well
printf '  - url: http://127.0.0.1:%s\n    kv_events: tcp://127.0.0.1:%s\n' "$P_NEW" "$KP_NEW" >>"$FILE"
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'event=gateway.reload .*added=1' "$GLOG" ||
    sy_not_ok "reload log line" "$(tail -n 10 "$GLOG")"
check_parity "an endpoint added by SIGHUP: result=match" match "$P_NEW" 20
check_parity "and the others keep their results" mismatch "$P_BAD" 5

sy_stop_pid "$GPID" 15
sy_assert_eq "gateway exits 0 on SIGTERM" 0 "$?"
sy_finish
