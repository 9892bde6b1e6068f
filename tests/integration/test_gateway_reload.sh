#!/usr/bin/env bash
# test_gateway_reload.sh - `switchyard gateway --endpoints-file`: starts with 2 engines listed in
# the YAML file; a 3rd is added and SIGHUP makes it receive traffic; one is removed and after
# SIGHUP it receives none (while the others still serve); a broken file keeps the current set and
# logs the error. Bounded waits; every process is cleaned up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/reload
declare -a EPORT
for i in 0 1 2; do
    sy_start_engine "e$i" --served-model-name "$MODEL" --sim-speed 10 --log-level warn
    EPORT[$i]=$SY_PORT
done
FILE=$SY_TMP/endpoints.yaml
write_file() { # INDEX... : the endpoints file listing those engines
    echo "endpoints:" >"$FILE"
    for i in "$@"; do
        printf '  - url: http://127.0.0.1:%s\n    models: [%s]\n' "${EPORT[$i]}" "$MODEL" >>"$FILE"
    done
}
write_file 0 1

GPORT=$(sy_free_port)
GURL=http://127.0.0.1:$GPORT
GLOG=$SY_TMP/gateway.log
sy_bg "$GLOG" "$SY_BIN" gateway --host 127.0.0.1 --port "$GPORT" --scheduler round-robin \
    --endpoints-file "$FILE" --log-level info
GPID=$SY_BG_PID
sy_wait_until 20 sy_health_ok "$GURL" || sy_fail "gateway did not become healthy" "$(tail -n 30 "$GLOG")"
sy_ok "gateway healthy with 2 endpoints from $FILE"

# send N : N sequential requests; prints the endpoints that served them, one per line
send() {
    local i
    for i in $(seq 1 "$1"); do
        curl -sS --max-time 30 -D - -o /dev/null "$GURL/v1/completions" -H 'Content-Type: application/json' \
            -d "{\"model\":\"$MODEL\",\"prompt\":\"reload test $i $RANDOM\",\"max_tokens\":2}" |
            tr -d '\r' | awk -F': ' 'tolower($1)=="x-switchyard-endpoint" {print $2}'
    done
}
count() { grep -c "^127.0.0.1:$1\$" "$2"; } # PORT FILE

send 12 >"$SY_TMP/r0"
sy_assert_eq "12 requests answered before the reload" 12 "$(wc -l <"$SY_TMP/r0")"
sy_assert_eq "the unlisted 3rd engine receives none" 0 "$(count "${EPORT[2]}" "$SY_TMP/r0")"

# add the 3rd engine
write_file 0 1 2
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'event=gateway.reload .*added=1' "$GLOG" ||
    sy_not_ok "reload log line" "$(tail -n 10 "$GLOG")"
sy_check "the reload summary is logged" grep -q 'kept=2 added=1 removed=0' "$GLOG"
# a new endpoint is eligible once its models are known and its first metrics scrape (every 50 ms)
# succeeded: until then the health filter rightly skips it
sleep 1
send 12 >"$SY_TMP/r1"
n2=$(count "${EPORT[2]}" "$SY_TMP/r1")
[ "$n2" -ge 3 ] && sy_ok "after SIGHUP the added engine serves $n2 of 12 requests" ||
    sy_not_ok "the added engine receives traffic" "$(sort "$SY_TMP/r1" | uniq -c)"

# remove engine 0
write_file 1 2
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'removed=1' "$GLOG" || sy_not_ok "second reload logged" "$(tail -n 10 "$GLOG")"
sy_wait_until 10 grep -q "event=gateway.endpoint_removed endpoint=127.0.0.1:${EPORT[0]}" "$GLOG" &&
    sy_ok "the removed endpoint is torn down once idle" ||
    sy_not_ok "the removed endpoint is torn down once idle" "$(tail -n 10 "$GLOG")"
send 12 >"$SY_TMP/r2"
sy_assert_eq "12 requests answered after the removal" 12 "$(wc -l <"$SY_TMP/r2")"
sy_assert_eq "the removed engine receives none" 0 "$(count "${EPORT[0]}" "$SY_TMP/r2")"

# a broken file keeps the current set
printf 'endpoints:\n  - url: http://127.0.0.1:%s\n    colour: red\n' "${EPORT[0]}" >"$FILE"
kill -HUP "$GPID"
sy_wait_until 10 grep -q 'event=gateway.reload_failed' "$GLOG" &&
    sy_ok "a broken file is refused with an error: $(grep -o "error=\"[^\"]*\"" "$GLOG" | tail -n 1)" ||
    sy_not_ok "a broken file is refused with an error" "$(tail -n 10 "$GLOG")"
send 12 >"$SY_TMP/r3"
sy_assert_eq "the old set still serves every request" 12 "$(wc -l <"$SY_TMP/r3")"
sy_assert_eq "engines 1 and 2 serve them all" 12 \
    "$(( $(count "${EPORT[1]}" "$SY_TMP/r3") + $(count "${EPORT[2]}" "$SY_TMP/r3") ))"
sy_check "the gateway is still running" sy_alive "$GPID"

sy_stop_pid "$GPID" 15
sy_assert_eq "gateway exits 0 on SIGTERM" 0 "$?"
sy_finish
