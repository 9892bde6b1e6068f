#!/usr/bin/env bash
# test_bench_routing.sh - smoke test of the routing experiment (scripts/bench_routing.sh --quick):
# the script starts a fresh `switchyard up` cluster per (workload, scheduler), drives it with
# `switchyard bench`, and writes per-run JSON, SVG charts, a Markdown report and a summary. Checks
# the outputs' shape and that every request of every stage succeeded; asserts no timing (the
# quick sizes make the numbers meaningless). Talks only to 127.0.0.1.
source "$(dirname "$0")/lib.sh"

OUT=$SY_TMP/routing
if bash "$SY_SOURCE_DIR/scripts/bench_routing.sh" --quick --workloads "shared-prefix hot-prefix" \
    --schedulers "round-robin default" --out-dir "$OUT" >"$SY_TMP/routing.out" 2>"$SY_TMP/routing.err"; then
    sy_ok "bench_routing.sh --quick exits 0"
else
    sy_fail "bench_routing.sh --quick failed" "$(tail -n 30 "$SY_TMP/routing.err")"
fi

for f in shared-prefix-round-robin shared-prefix-default hot-prefix-round-robin \
    hot-prefix-default-noguard hot-prefix-default; do
    if $SY_PY - "$OUT/$f.json" <<'PYEOF'; then
import json, sys
r = json.load(open(sys.argv[1]))
st = r["stages"]
assert len(st) == 2, "stages: %d" % len(st)
for s in st:
    q = s["requests"]
    assert q["ok"] > 0 and q["errors"] == 0 and q["rejected"] == 0, q
    assert s["tokens"]["completion"] == q["ok"] * 8, s["tokens"]
    assert sum(s["endpoints"].values()) == q["completed"], s["endpoints"]
PYEOF
        sy_ok "$f: two stages, every request ok, 8 output tokens each, endpoints counted"
    else
        sy_not_ok "$f: results" "$(cat "$OUT/$f.json" 2>/dev/null | head -c 2000)"
    fi
done

for w in shared-prefix hot-prefix; do
    if $SY_PY -c 'import sys, xml.etree.ElementTree as E; t = E.parse(sys.argv[1]); assert t.getroot().tag.endswith("svg")' "$OUT/$w.svg"; then
        sy_ok "$w.svg is well-formed SVG"
    else
        sy_not_ok "$w.svg"
    fi
done

grep -q '^#### shared-prefix' "$OUT/report.md" && grep -q '^#### hot-prefix' "$OUT/report.md" &&
    grep -q 'highest offered rate where round-robin completes' "$OUT/report.md" &&
    sy_ok "report.md has both workloads and the comparison at round-robin's highest rate" ||
    sy_not_ok "report.md" "$(head -c 2000 "$OUT/report.md")"

if $SY_PY - "$OUT/summary.json" <<'PYEOF'; then
import json, sys
s = json.load(open(sys.argv[1]))
for w in ("shared-prefix", "hot-prefix"):
    v = s[w]["vs_rr"]
    assert abs(v["round-robin"]["ttft_p90_ratio"] - 1.0) < 1e-9, v
    assert "default" in v and v["default"]["ttft_p90_ratio"] > 0, v
PYEOF
    sy_ok "summary.json compares every scheduler with round-robin"
else
    sy_not_ok "summary.json" "$(cat "$OUT/summary.json" 2>/dev/null)"
fi

# every cluster was stopped: no `switchyard up` (nor a child of it) still runs from this out dir
if pgrep -f -- "$OUT/" >/dev/null; then
    sy_not_ok "no process left running" "$(pgrep -af -- "$OUT/")"
else
    sy_ok "no process left running"
fi
sy_finish
