#!/usr/bin/env bash
# test_audit_cli.sh - `switchyard audit bench` and `switchyard audit verify`: a small bench writes
# a log that verifies; copies tampered with in each way (one byte changed, a record deleted, two
# records swapped, a truncated tail, a garbage line) exit 1 naming the right FILE:LINE and seq; an
# edited last record is only caught with --expect-last-hash; a second bench run continues the
# chain; a rotated log verifies across its files (glob order, --chain, --from-hash/--from-seq);
# a bench killed with SIGKILL mid-run leaves a log that verifies up to its last complete record and
# that the next writer continues. Usage errors exit 2. No network, no servers.
# Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand: bash tests/integration/test_audit_cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sy_check "audit --help" "$SY_BIN" audit --help
sy_check "audit verify --help" "$SY_BIN" audit verify --help
sy_check "audit bench --help" "$SY_BIN" audit bench --help
"$SY_BIN" audit verify >/dev/null 2>&1
sy_assert_eq "verify without files exits 2" 2 $?
"$SY_BIN" audit frobnicate >/dev/null 2>&1
sy_assert_eq "unknown action exits 2" 2 $?
"$SY_BIN" audit verify --from-hash zz --from-seq 3 x >/dev/null 2>&1
sy_assert_eq "bad --from-hash exits 2" 2 $?
"$SY_BIN" audit verify --from-seq 3 x >/dev/null 2>&1
sy_assert_eq "--from-seq without --from-hash exits 2" 2 $?
"$SY_BIN" audit bench --fsync sometimes >/dev/null 2>&1
sy_assert_eq "bench --fsync sometimes exits 2" 2 $?
"$SY_BIN" audit verify "$SY_TMP/missing.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "missing.log: cannot read" "$SY_TMP/out"; then
    sy_ok "an unreadable file exits 1"
else
    sy_not_ok "an unreadable file exits 1" "rc $rc: $(cat "$SY_TMP/out")"
fi

# ---- a small bench, then verify ----
A=$SY_TMP/a
if "$SY_BIN" audit bench --records 2000 --bytes 512 --fsync group --dir "$A" >"$SY_TMP/bench.out" 2>"$SY_TMP/bench.err" &&
    grep -q "records/s" "$SY_TMP/bench.out" && grep -q "p99" "$SY_TMP/bench.out" &&
    grep -q "ok: 2000 records, seq 1..2000" "$SY_TMP/bench.out"; then
    sy_ok "audit bench --records 2000"
else
    sy_fail "audit bench --records 2000" "$(cat "$SY_TMP/bench.out" "$SY_TMP/bench.err" | tail -n 20)"
fi
sy_diag "$(cat "$SY_TMP/bench.out")"
LOG=$A/audit.log
"$SY_BIN" audit verify "$LOG" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -Eq "^ok: 2000 records, seq 1..2000, last hash [0-9a-f]{64}$" "$SY_TMP/out"; then
    sy_ok "the bench log verifies"
else
    sy_not_ok "the bench log verifies" "rc $rc: $(cat "$SY_TMP/out")"
fi
HEAD=$(grep -Eo "[0-9a-f]{64}$" "$SY_TMP/out")
sy_check "--expect-last-hash with the real head" "$SY_BIN" audit verify --expect-last-hash "$HEAD" "$LOG"

# tamper MODE OUT : writes a tampered copy of $LOG to OUT
tamper() {
    "$SY_PY" - "$LOG" "$2" "$1" <<'PYEOF'
import sys
src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(src, "rb").read().split(b"\n")[:-1]
if mode == "edit":          # one byte of record 100's prompt text
    l = bytearray(lines[99]); i = l.index(b'"prompt":"') + 20
    l[i] = ord("A") if l[i] != ord("A") else ord("B"); lines[99] = bytes(l)
elif mode == "editlast":
    l = bytearray(lines[-1]); i = l.index(b'"prompt":"') + 20
    l[i] = ord("A") if l[i] != ord("A") else ord("B"); lines[-1] = bytes(l)
elif mode == "delete":
    del lines[199]
elif mode == "swap":
    lines[299], lines[300] = lines[300], lines[299]
elif mode == "garbage":
    lines.insert(499, b"garbage, not a record")
data = b"\n".join(lines) + b"\n"
if mode == "truncate":
    data = data[:-100]
open(dst, "wb").write(data)
PYEOF
}

# expect_bad NAME MODE PATTERN... : the tampered copy exits 1 and the output has every PATTERN
expect_bad() {
    local name=$1 mode=$2 p rc
    shift 2
    tamper "$mode" "$SY_TMP/t.log" || { sy_not_ok "$name" "tamper $mode failed"; return; }
    "$SY_BIN" audit verify "$SY_TMP/t.log" >"$SY_TMP/out" 2>&1
    rc=$?
    if [ $rc -ne 1 ]; then
        sy_not_ok "$name" "exit $rc (want 1): $(cat "$SY_TMP/out")"
        return
    fi
    for p in "$@"; do
        if ! grep -qF -- "$p" "$SY_TMP/out"; then
            sy_not_ok "$name" "missing '$p' in: $(cat "$SY_TMP/out")"
            return
        fi
    done
    sy_ok "$name"
}

expect_bad "one byte changed in record 100" edit "t.log:100: record seq 100: bad chain hash" \
    "99 records verified"
expect_bad "record 200 deleted" delete "t.log:200: record seq 201: seq gap" "expected seq 200"
expect_bad "records 300 and 301 swapped" swap "t.log:300: record seq 301: seq out of order"
expect_bad "a garbage line before record 500" garbage \
    "t.log:500: record (expected seq 500): not JSON" "499 records verified"
expect_bad "truncated tail" truncate \
    "t.log:2000: record (expected seq 2000): incomplete last record (truncated)" \
    "1999 records verified" "truncated record at"
"$SY_BIN" audit verify --allow-truncated-tail "$SY_TMP/t.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "ok: 1999 records, seq 1..1999" "$SY_TMP/out" &&
    grep -q "ignored an incomplete last record at" "$SY_TMP/out"; then
    sy_ok "--allow-truncated-tail accepts the truncated tail"
else
    sy_not_ok "--allow-truncated-tail accepts the truncated tail" "rc $rc: $(cat "$SY_TMP/out")"
fi
tamper editlast "$SY_TMP/t.log"
"$SY_BIN" audit verify "$SY_TMP/t.log" >/dev/null 2>&1
sy_assert_eq "an edited last record is not visible to the chain alone" 0 $?
"$SY_BIN" audit verify --expect-last-hash "$HEAD" "$SY_TMP/t.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "record seq 2000: last hash mismatch" "$SY_TMP/out"; then
    sy_ok "--expect-last-hash catches an edited last record"
else
    sy_not_ok "--expect-last-hash catches an edited last record" "rc $rc: $(cat "$SY_TMP/out")"
fi

# ---- a second writer continues the chain ----
if "$SY_BIN" audit bench --records 500 --bytes 256 --dir "$A" >"$SY_TMP/bench.out" 2>&1 &&
    grep -q "ok: 2500 records, seq 1..2500" "$SY_TMP/bench.out"; then
    sy_ok "a second bench run continues the chain"
else
    sy_not_ok "a second bench run continues the chain" "$(tail -n 20 "$SY_TMP/bench.out")"
fi

# ---- rotation ----
R=$SY_TMP/r
if "$SY_BIN" audit bench --records 3000 --bytes 512 --rotate-bytes 200000 --fsync each --dir "$R" \
    >"$SY_TMP/bench.out" 2>&1 && grep -q "ok: 3000 records" "$SY_TMP/bench.out"; then
    sy_ok "bench with rotation"
else
    sy_not_ok "bench with rotation" "$(tail -n 20 "$SY_TMP/bench.out")"
fi
ROT=("$R"/audit.log.*)
if [ ${#ROT[@]} -ge 5 ] && [ "${ROT[0]}" == "$R/audit.log.00000000000000000001" ]; then
    sy_ok "rotated files are named FILE.<first seq>"
else
    sy_not_ok "rotated files are named FILE.<first seq>" "$(ls "$R")"
fi
"$SY_BIN" audit verify "${ROT[@]}" "$R/audit.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "ok: 3000 records, seq 1..3000" "$SY_TMP/out"; then
    sy_ok "verify FILE.* FILE across rotation"
else
    sy_not_ok "verify FILE.* FILE across rotation" "rc $rc: $(cat "$SY_TMP/out")"
fi
sy_check "verify --chain FILE" "$SY_BIN" audit verify --chain "$R/audit.log"
"$SY_BIN" audit verify "$R/audit.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "use --from-hash/--from-seq" "$SY_TMP/out"; then
    sy_ok "the live file alone is refused with a hint"
else
    sy_not_ok "the live file alone is refused with a hint" "rc $rc: $(cat "$SY_TMP/out")"
fi
"$SY_BIN" audit verify "${ROT[@]}" >"$SY_TMP/out" 2>&1
PH=$(grep -Eo "[0-9a-f]{64}$" "$SY_TMP/out")
PS=$(sed -nE 's/.*seq 1\.\.([0-9]+),.*/\1/p' "$SY_TMP/out")
"$SY_BIN" audit verify --from-hash "$PH" --from-seq "$PS" "$R/audit.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "seq $((PS + 1))..3000" "$SY_TMP/out"; then
    sy_ok "--from-hash/--from-seq verify the live file alone"
else
    sy_not_ok "--from-hash/--from-seq verify the live file alone" "rc $rc PH=$PH PS=$PS: $(cat "$SY_TMP/out")"
fi

# ---- a writer killed with SIGKILL mid-run ----
K=$SY_TMP/k
mkdir -p "$K"
sy_bg "$SY_TMP/kill.out" "$SY_BIN" audit bench --records 10000000 --bytes 1024 --fsync none --dir "$K"
KPID=$SY_BG_PID
sy_wait_until 20 test -s "$K/audit.log" || sy_not_ok "the killed bench started writing"
sleep 1
kill -KILL "$KPID" 2>/dev/null
wait "$KPID" 2>/dev/null
"$SY_BIN" audit verify --allow-truncated-tail "$K/audit.log" >"$SY_TMP/out" 2>&1
rc=$?
N=$(sed -nE 's/^ok: ([0-9]+) records.*/\1/p' "$SY_TMP/out")
if [ $rc -eq 0 ] && [ -n "$N" ] && [ "$N" -gt 0 ]; then
    sy_ok "the killed writer's log verifies up to its last complete record ($N records)"
else
    sy_not_ok "the killed writer's log verifies up to its last complete record" "rc $rc: $(cat "$SY_TMP/out")"
fi
"$SY_BIN" audit verify "$K/audit.log" >"$SY_TMP/out" 2>&1
rc=$?
if [ $rc -eq 0 ] || { [ $rc -eq 1 ] && grep -q "incomplete last record" "$SY_TMP/out" &&
    grep -q "^$N records verified" "$SY_TMP/out"; }; then
    sy_ok "plain verify: intact, or exit 1 naming only the truncated tail (exit $rc)"
else
    sy_not_ok "plain verify: intact, or exit 1 naming only the truncated tail" "rc $rc: $(cat "$SY_TMP/out")"
fi
if "$SY_BIN" audit bench --records 100 --bytes 256 --dir "$K" >"$SY_TMP/bench.out" 2>&1 &&
    grep -q "ok: $((N + 100)) records, seq 1..$((N + 100))" "$SY_TMP/bench.out"; then
    sy_ok "the next writer cuts the torn tail and continues the chain"
else
    sy_not_ok "the next writer cuts the torn tail and continues the chain" "N=$N: $(tail -n 20 "$SY_TMP/bench.out")"
fi

sy_finish
