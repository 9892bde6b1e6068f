#!/usr/bin/env bash
# test_gateway_discovery.sh - `switchyard gateway --discover srv://... --dns-server`: a small DNS
# server (tests/integration/dns_server.py, Python standard library, on 127.0.0.1) answers SRV
# queries for _http._tcp.sim.test with records pointing at sim.test. (A 127.0.0.1) on the ports of
# simulated engines; it rereads its zone file on every query. The gateway starts with discovery
# only (no --endpoint) and finds 2 engines; a 3rd record makes it add the 3rd engine (requests
# reach it, named by x-switchyard-endpoint); a removed record drains that engine; a server gone
# silent keeps the previous set; a server answering without the additional section (the gateway
# asks for sim.test's A record) changes nothing. Discovery metrics are checked. Bounded waits;
# every process is cleaned up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/discovery
TARGET=srv://_http._tcp.sim.test
declare -a EPORT
for i in 0 1 2; do
    sy_start_engine "e$i" --served-model-name "$MODEL" --sim-speed 10 --log-level warn
    EPORT[$i]=$SY_PORT
done

ZONE=$SY_TMP/zone.txt
write_zone() { # [silent] [noadditional] INDEX... : the records served for those engines
    : >"$ZONE.new"
    while [ $# -gt 0 ]; do
        case $1 in
        silent | noadditional) echo "$1" >>"$ZONE.new" ;;
        *) echo "srv _http._tcp.sim.test ${EPORT[$1]} sim.test." >>"$ZONE.new" ;;
        esac
        shift
    done
    echo "a sim.test 127.0.0.1" >>"$ZONE.new"
    mv "$ZONE.new" "$ZONE" # atomic: the server never reads half a file
}
write_zone 0 1

DLOG=$SY_TMP/dns.log
for attempt in 1 2 3; do
    DPORT=$(sy_free_port)
    sy_bg "$DLOG" "$SY_PY" "$SY_SOURCE_DIR/tests/integration/dns_server.py" "$DPORT" "$ZONE"
    DPID=$SY_BG_PID
    sy_wait_until 10 grep -q '^ready' "$DLOG" && break
    sy_stop_pid "$DPID" 2
done
grep -q '^ready' "$DLOG" || sy_fail "the DNS server did not start" "$(tail -n 10 "$DLOG")"
sy_ok "DNS server on 127.0.0.1:$DPORT (udp)"

GPORT=$(sy_free_port)
GURL=http://127.0.0.1:$GPORT
GLOG=$SY_TMP/gateway.log
sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$GPORT" --scheduler round-robin \
    --discover "$TARGET,interval=200" --dns-server "127.0.0.1:$DPORT" --log-level info
GPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$GURL" ||
    sy_fail "gateway did not become healthy through discovery" "$(tail -n 30 "$GLOG")"
sy_ok "gateway started with --discover only and became healthy"

# send N : N sequential requests; prints the endpoints that served them, one per line
send() {
    local i
    for i in $(seq 1 "$1"); do
        curl -sS --max-time 30 -D - -o /dev/null "$GURL/v1/completions" -H 'Content-Type: application/json' \
            -d "{\"model\":\"$MODEL\",\"prompt\":\"discovery test $i $RANDOM\",\"max_tokens\":2}" |
            tr -d '\r' | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}'
    done
}
count() { grep -c "^127.0.0.1:$1\$" "$2"; } # PORT FILE
served_by() { # INDEX : one of a few requests reaches engine INDEX
    send 6 >"$SY_TMP/probe"
    [ "$(count "${EPORT[$1]}" "$SY_TMP/probe")" -ge 1 ]
}
metric() { sy_metric "$GURL" "$@"; }
metric_is() { [ "$(metric "$1" "${@:3}")" == "$2" ]; } # NAME VALUE [LABEL=V...]

sy_wait_until 20 served_by 0 && sy_wait_until 20 served_by 1 &&
    sy_ok "both discovered engines serve requests" ||
    sy_not_ok "both discovered engines serve requests" "$(sort "$SY_TMP/probe" | uniq -c; tail -n 20 "$GLOG")"
send 12 >"$SY_TMP/r0"
sy_assert_eq "12 requests answered with 2 discovered engines" 12 "$(wc -l <"$SY_TMP/r0")"
sy_assert_eq "the unlisted 3rd engine receives none" 0 "$(count "${EPORT[2]}" "$SY_TMP/r0")"
sy_check "discovery_endpoints gauge is 2" sy_wait_until 5 metric_is \
    switchyard_gateway_discovery_endpoints 2.0 target="$TARGET"
ok=$(metric switchyard_gateway_discovery_resolutions_total target="$TARGET" result=ok)
"$SY_PY" -c "import sys; sys.exit(0 if float('$ok') >= 2 else 1)" &&
    sy_ok "resolutions_total{result=ok} counts re-resolutions ($ok)" ||
    sy_not_ok "resolutions_total{result=ok} counts re-resolutions" "got $ok"

# a 3rd record: the gateway adds the engine
write_zone 0 1 2
sy_wait_until 10 grep -q "event=gateway.endpoint_added endpoint=127.0.0.1:${EPORT[2]}" "$GLOG" &&
    sy_ok "the 3rd engine is added after its record appears" ||
    sy_not_ok "the 3rd engine is added after its record appears" "$(tail -n 10 "$GLOG")"
sy_wait_until 20 served_by 2 && sy_ok "requests reach the 3rd engine" ||
    sy_not_ok "requests reach the 3rd engine" "$(sort "$SY_TMP/probe" | uniq -c)"
sy_check "discovery_endpoints gauge is 3" sy_wait_until 5 metric_is \
    switchyard_gateway_discovery_endpoints 3.0 target="$TARGET"

# engine 0's record goes: it drains, then is torn down
write_zone 1 2
sy_wait_until 10 grep -q "event=gateway.endpoint_draining endpoint=127.0.0.1:${EPORT[0]}" "$GLOG" &&
    sy_ok "the engine whose record went is drained" ||
    sy_not_ok "the engine whose record went is drained" "$(tail -n 10 "$GLOG")"
sy_wait_until 10 grep -q "event=gateway.endpoint_removed endpoint=127.0.0.1:${EPORT[0]}" "$GLOG" &&
    sy_ok "the drained endpoint is torn down once idle" ||
    sy_not_ok "the drained endpoint is torn down once idle" "$(tail -n 10 "$GLOG")"
send 12 >"$SY_TMP/r1"
sy_assert_eq "12 requests answered after the removal" 12 "$(wc -l <"$SY_TMP/r1")"
sy_assert_eq "the removed engine receives none" 0 "$(count "${EPORT[0]}" "$SY_TMP/r1")"

# the DNS server goes silent: the previous set is kept
write_zone silent
sy_wait_until 10 grep -q 'event=gateway.discovery_failed' "$GLOG" &&
    sy_ok "a silent DNS server is logged: $(grep -o 'event=gateway.discovery_failed.*' "$GLOG" | head -n 1)" ||
    sy_not_ok "a silent DNS server is logged" "$(tail -n 10 "$GLOG")"
sleep 1.5 # several failed rounds (1 s timeout each)
send 12 >"$SY_TMP/r2"
sy_assert_eq "12 requests answered while DNS is silent" 12 "$(wc -l <"$SY_TMP/r2")"
sy_assert_eq "engines 1 and 2 (the previous set) serve them all" 12 \
    "$(( $(count "${EPORT[1]}" "$SY_TMP/r2") + $(count "${EPORT[2]}" "$SY_TMP/r2") ))"
sy_assert_eq "the failure is logged once, not per round" 1 "$(grep -c 'event=gateway.discovery_failed' "$GLOG")"
sy_check "discovery_endpoints gauge stays 2" metric_is switchyard_gateway_discovery_endpoints 2.0 \
    target="$TARGET"
err=$(metric switchyard_gateway_discovery_resolutions_total target="$TARGET" result=error)
"$SY_PY" -c "import sys; sys.exit(0 if float('$err') >= 1 else 1)" &&
    sy_ok "resolutions_total{result=error} counts the failures ($err)" ||
    sy_not_ok "resolutions_total{result=error} counts the failures" "got $err"

# back, without the additional section: the gateway asks for sim.test's A record; same set
n_drain=$(grep -c 'event=gateway.endpoint_draining' "$GLOG")
write_zone noadditional 1 2
sy_wait_until 10 grep -q 'event=gateway.discovery_recovered' "$GLOG" &&
    sy_ok "discovery recovers when the server answers again" ||
    sy_not_ok "discovery recovers when the server answers again" "$(tail -n 10 "$GLOG")"
sleep 0.5
sy_assert_eq "an answer without the additional section gives the same set (nothing drained)" \
    "$n_drain" "$(grep -c 'event=gateway.endpoint_draining' "$GLOG")"
send 6 >"$SY_TMP/r3"
sy_assert_eq "requests are still answered" 6 "$(wc -l <"$SY_TMP/r3")"
sy_check "the gateway is still running" sy_alive "$GPID"

sy_stop_pid "$GPID" 15
sy_assert_eq "gateway exits 0 on SIGTERM" 0 "$?"
sy_finish
