#!/usr/bin/env bash
# bench_routing.sh - the routing experiment (issue 5): the same workloads and rate ladders over
# the same simulated cluster (N engines calibrated to an A100 serving Llama-3-8B, real time),
# under several gateway schedulers, measured with `switchyard bench`; writes the results JSON,
# SVG charts and a Markdown report, and (with --update-docs) the "Routing experiment" section of
# docs/benchmarks.md.
#
# Every (workload, scheduler) pair gets a fresh cluster from `switchyard up` (cold KV caches, no
# state carried from the previous scheduler), started from a generated cluster file.
#
# Workloads:
#   shared-prefix  G groups x P questions, each prompt = a G-specific system prefix + a question;
#                  the distinct prefixes exceed one engine's KV capacity but fit in the fleet's,
#                  so where a request lands decides whether its prefix is still cached.
#   no-prefix      random prompts, nothing shared: cache-aware routing cannot help, only load
#                  balancing matters (the claim: throughput within 5 % of round-robin).
#   hot-prefix     one prefix shared by every request: without a guard, prefix affinity piles
#                  everything onto one engine.
#
# Usage: scripts/bench_routing.sh [--quick] [--engines N] [--duration S] [--warmup S]
#            [--workloads "shared-prefix no-prefix hot-prefix"] [--schedulers "..."]
#            [--rates R1,R2,...] [--out-dir DIR] [--update-docs] [--build-dir DIR]
#   --rates: one ladder for every workload instead of the built-in ones
#   --report-only: no runs; the report (and --update-docs) from the results already in --out-dir
#   --quick: 2 engines, tiny sizes and 2 s stages (a smoke run for the tests; numbers mean nothing)
#   --model FILE.gguf: real CPU engines (1 thread each) serving that model instead of sim engines,
#            with their own sizes (4 engines, 256 KV blocks each, 8 prefixes of 1024 tokens;
#            the bench builds prompts from the model's tokenizer), written to the doc's
#            "routing-real" section and docs/routing/real-*.svg
# Talks only to 127.0.0.1. Needs /usr/bin/python3 for the report. Thread-safety: n/a.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
ENGINES=8
DUR=20
WARMUP=5
WORKLOADS="shared-prefix no-prefix hot-prefix"
SCHEDULERS=""
RATES=""
OUT=""
UPDATE_DOCS=0
REPORT_ONLY=0
QUICK=0
GGUF=""
ENGINES_SET=""
for a in "$@"; do [ "$a" = --engines ] && ENGINES_SET=1; done
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1; shift ;;
    --engines) ENGINES=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --schedulers) SCHEDULERS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --out-dir) OUT=$2; shift 2 ;;
    --update-docs) UPDATE_DOCS=1; shift ;;
    --report-only) REPORT_ONLY=1; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --model) GGUF=$2; shift 2 ;;
    -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "bench_routing: unknown option $1" >&2; exit 2 ;;
    esac
done
SY_BIN=${SY_BIN:-$BUILD/switchyard}
PY=/usr/bin/python3
[ -x "$SY_BIN" ] || { echo "bench_routing: $SY_BIN missing (run make)" >&2; exit 2; }
MODEL=sim-llama
TOKENIZER=builtin
SECTION=routing
if [ -n "$GGUF" ]; then
    [ -f "$GGUF" ] || { echo "bench_routing: no such model file: $GGUF" >&2; exit 2; }
    GGUF=$(cd "$(dirname "$GGUF")" && pwd)/$(basename "$GGUF")
    MODEL=real-model TOKENIZER=$GGUF SECTION=routing-real
    [ -z "$ENGINES_SET" ] && ENGINES=4
fi
OUT=${OUT:-$BUILD/bench-$SECTION}
mkdir -p "$OUT"

# ---- sizes ----
# KV capacity per engine (blocks of 16 tokens) and the shared-prefix workload. The defaults:
# 2,048 blocks = 32,768 tokens per engine (262,144 in a fleet of 8); 48 prefixes of 2,048 tokens
# = 98,304 prefix tokens: three engines' worth, 38 % of the fleet's.
BLOCKS=2048
N_GROUPS=48
PER_GROUP=16
SYS_LEN=2048
Q_LEN=128
OUT_LEN=64
NP_IN=2176 # no-prefix prompt length: the same total as a shared-prefix prompt
RATES_SP="8,16,32,48,64"
RATES_NP="8,16,24,32,40"
RATES_HOT="8,16,32,48,64"
SLO_TTFT=500
SLO_ITL=50
if [ -n "$GGUF" ]; then
    # CPU engines: prefill of a 1088-token prompt on stories260K takes about 120 ms on one core,
    # 7 ms with its 1024-token prefix cached. 256 blocks = 4,096 tokens per engine: the 8
    # prefixes (8,192 tokens) are twice one engine's capacity and half the fleet's.
    BLOCKS=256 N_GROUPS=8 PER_GROUP=32 SYS_LEN=1024 Q_LEN=64 OUT_LEN=32 NP_IN=1088
    RATES_SP="4,8,12,16,24" RATES_NP="2,4,6,8,10" RATES_HOT="4,8,12,16,24" SLO_TTFT=250
fi
if [ "$QUICK" -eq 1 ]; then
    ENGINES=2 DUR=2 WARMUP=0.5 BLOCKS=256 N_GROUPS=6 PER_GROUP=4 SYS_LEN=256 Q_LEN=32 OUT_LEN=8
    NP_IN=288 RATES_SP="4,8" RATES_NP="4,8" RATES_HOT="4,8"
fi
if [ -n "$RATES" ]; then
    RATES_SP=$RATES RATES_NP=$RATES RATES_HOT=$RATES
fi
if [ -z "$SCHEDULERS" ]; then
    SCHEDULERS="round-robin random load prefix-approx prefix-precise default"
fi
# Scheduler names are the gateway's built-ins, plus default-noguard: the default config with the
# hot-spot guard of both prefix scorers turned off (written from deploy/scheduler/default.yaml),
# plus NAME=FILE.yaml: an EndpointPickerConfig file run under the label NAME.
schedulers_for() { # workload: the full set for shared-prefix; the baseline and the best otherwise
    local want
    case "$1" in
    shared-prefix) echo "$SCHEDULERS"; return ;;
    no-prefix) want="round-robin prefix-approx default" ;;
    hot-prefix) want="round-robin default-noguard default" ;;
    esac
    for s in $want; do
        [[ " $SCHEDULERS " == *" ${s%-noguard} "* ]] && printf '%s ' "$s"
    done
    for s in $SCHEDULERS; do # configs from files run on every workload
        [ -n "${CONFIG_OF[$s]:-}" ] && printf '%s ' "$s"
    done
    return 0
}
declare -A CONFIG_OF
names=""
for s in $SCHEDULERS; do
    if [[ "$s" == *=* ]]; then
        f=${s#*=}
        [ -f "$f" ] || { echo "bench_routing: no such config file: $f" >&2; exit 2; }
        CONFIG_OF[${s%%=*}]=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
        s=${s%%=*}
    fi
    names="$names $s"
done
SCHEDULERS=${names# }
NOGUARD=$OUT/default-noguard.yaml
sed -e 's/^    lruCapacityPerServer: 31250$/&\n    hotspotGuard: false/' \
    -e 's/^- type: precise-prefix-cache-scorer$/&\n  parameters:\n    hotspotGuard: false/' \
    "$ROOT/deploy/scheduler/default.yaml" >"$NOGUARD"
[ "$(grep -c 'hotspotGuard: false' "$NOGUARD")" -eq 2 ] ||
    { echo "bench_routing: could not write $NOGUARD" >&2; exit 1; }

UP_PID=""
cleanup() {
    if [ -n "$UP_PID" ]; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

start_cluster() { # name scheduler -> sets URL, UP_PID
    local d=$OUT/$1 i sched="scheduler: $2"
    [ "$2" = default-noguard ] && sched="config: $NOGUARD"
    [ -n "${CONFIG_OF[$2]:-}" ] && sched="config: ${CONFIG_OF[$2]}"
    rm -rf "$d"
    mkdir -p "$d/logs"
    local engine_kind="    sim: true
    sim_profile: a100-llama3-8b
    sim_speed: 1" threads=""
    if [ -n "$GGUF" ]; then
        engine_kind="    model: $GGUF"
        threads='"--threads", "1", '
    fi
    cat >"$d/cluster.yaml" <<EOF
# generated by scripts/bench_routing.sh
model: $MODEL
hash_seed: "0"
ready_timeout: 120
gateway:
  port: 0
  $sched
engines:
  - count: $ENGINES
$engine_kind
    kv_events: true
    args: [$threads"--num-gpu-blocks-override", "$BLOCKS", "--log-level", "warn"]
EOF
    "$SY_BIN" up "$d/cluster.yaml" --log-dir "$d/logs" >"$d/up.out" 2>"$d/up.err" &
    UP_PID=$!
    URL=""
    for i in $(seq 600); do
        URL=$(sed -n 's/^ready: \(http:[^ ]*\).*/\1/p' "$d/up.out" | head -n 1)
        [ -n "$URL" ] && return 0
        kill -0 "$UP_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench_routing: cluster for $1 did not start" >&2
    tail -n 30 "$d/up.err" >&2 || true
    exit 1
}
stop_cluster() {
    kill -TERM "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" || { echo "bench_routing: switchyard up exited non-zero" >&2; exit 1; }
    UP_PID=""
}

run_one() { # workload scheduler
    local name=$1-$2 args
    case "$1" in
    shared-prefix)
        args=(--workload shared-prefix --groups "$N_GROUPS" --prompts-per-group "$PER_GROUP"
            --system-prompt-len "$SYS_LEN" --question-len "$Q_LEN" --output-len "$OUT_LEN"
            --rates "$RATES_SP") ;;
    no-prefix)
        args=(--workload random --input-len "$NP_IN" --output-len "$OUT_LEN" --rates "$RATES_NP") ;;
    hot-prefix)
        args=(--workload shared-prefix --groups 1 --prompts-per-group $((N_GROUPS * PER_GROUP))
            --system-prompt-len "$SYS_LEN" --question-len "$Q_LEN" --output-len "$OUT_LEN"
            --rates "$RATES_HOT") ;;
    esac
    echo "bench_routing: $name" >&2
    start_cluster "$name" "$2"
    "$SY_BIN" bench --url "$URL" --model "$MODEL" --api completions --tokenizer "$TOKENIZER" "${args[@]}" \
        --duration "$DUR" --warmup-s "$WARMUP" --seed 1 --timeout 30 --drain-timeout 60 \
        --slo-ttft-ms "$SLO_TTFT" --slo-itl-ms "$SLO_ITL" --label "$2" --no-progress \
        --out "$OUT/$name.json" --md "$OUT/$name.md" 2>"$OUT/$name.bench.err" ||
        { echo "bench_routing: bench failed for $name" >&2; tail "$OUT/$name.bench.err" >&2; exit 1; }
    curl -s "$URL/metrics" >"$OUT/$name.gateway-metrics.txt" || true
    stop_cluster
}

if [ "$REPORT_ONLY" -eq 0 ]; then
    T0=$(date +%s)
    for w in $WORKLOADS; do
        files=()
        for s in $(schedulers_for "$w"); do
            run_one "$w" "$s"
            files+=("$OUT/$w-$s.json")
        done
        "$SY_BIN" bench plot "${files[@]}" --out "$OUT/$w.svg"
    done
    echo $(($(date +%s) - T0)) >"$OUT/elapsed_s"
fi
ELAPSED=$(cat "$OUT/elapsed_s" 2>/dev/null || echo 0)

# ---- report ----
$PY - "$OUT" "$ENGINES" "$BLOCKS" "$N_GROUPS" "$PER_GROUP" "$SYS_LEN" "$Q_LEN" "$OUT_LEN" "$NP_IN" \
    "$DUR" "$WARMUP" "$SLO_TTFT" "$SLO_ITL" "$ELAPSED" "$QUICK" "$WORKLOADS" "$GGUF" \
    "$(nproc)" <<'PYEOF' >"$OUT/report.md"
import json, os, sys, glob
out = sys.argv[1]
engines, blocks, groups, per_group, sys_len, q_len, out_len, np_in = (int(x) for x in sys.argv[2:10])
dur, warmup, slo_ttft, slo_itl = (float(x) for x in sys.argv[10:14])
elapsed, quick, workloads = int(sys.argv[14]), int(sys.argv[15]), sys.argv[16].split()
gguf, ncpu = sys.argv[17], int(sys.argv[18])
def load(w, s):
    p = os.path.join(out, "%s-%s.json" % (w, s))
    return json.load(open(p)) if os.path.exists(p) else None
def completion(st):
    r = st["requests"]
    offered = r["sent"] + r.get("skipped", 0)
    return r["ok"] / offered if offered else 0.0
if gguf:
    kind = ("real CPU engines serving `%s` (`--threads 1` each; the engines, the gateway and "
            "the bench share this machine's %d cores)" % (os.path.basename(gguf), ncpu))
    tok = "the model's tokenizer"
else:
    kind = "simulated engines (`--sim-profile a100-llama3-8b --sim-speed 1`)"
    tok = "the sim tokenizer's tokens"
print("Cluster: %d %s, each with "
      "%d KV blocks of 16 tokens (%d tokens; the fleet %d), behind one gateway, all started by "
      "`switchyard up`, a fresh cluster per (workload, scheduler)." % (engines, kind, blocks, blocks * 16, engines * blocks * 16))
print("")
print("Workloads (prompts built from %s, exact lengths; `ignore_eos`, "
      "%d output tokens):" % (tok, out_len))
print("- **shared-prefix**: %d prefixes of %d tokens x %d questions of %d tokens. The distinct "
      "prefixes hold %d tokens: %.1fx one engine's KV capacity, %.0f %% of the fleet's." % (
          groups, sys_len, per_group, q_len, groups * sys_len, groups * sys_len / (blocks * 16.0),
          100.0 * groups * sys_len / (engines * blocks * 16.0)))
print("- **no-prefix**: random prompts of %d tokens, nothing shared." % np_in)
print("- **hot-prefix**: one %d-token prefix shared by every request, %d questions." % (sys_len, groups * per_group))
print("")
print("\"busiest engine\" is the share of a stage's requests served by the engine that served "
      "the most (1/%d is an even spread)." % engines)
print("")
print("Load: Poisson arrivals, a ladder of rates, %g s per rate after a %g s warm-up. SLO for "
      "goodput: TTFT <= %g ms and mean ITL <= %g ms; errors and rejections count against it. "
      "Total run time %d min." % (dur, warmup, slo_ttft, slo_itl, elapsed // 60))
print("")
summary = {}
for w in workloads:
    files = sorted(glob.glob(os.path.join(out, w + "-*.json")))
    scheds = [os.path.basename(f)[len(w) + 1:-5] for f in files]
    order = ["round-robin", "random", "load", "prefix-approx", "prefix-precise", "default-noguard", "default"]
    scheds.sort(key=lambda s: order.index(s) if s in order else 99)
    if not scheds:
        continue
    print("#### %s\n" % w)
    print("![%s: TTFT p90 and goodput against offered rate](routing/%s.svg)\n" % (w, w))
    print("| scheduler | offered req/s | completed | throughput req/s | TTFT p50 ms | TTFT p90 ms | ITL p50 ms | E2E p90 ms | goodput req/s | goodput share | cached share | busiest engine |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    res = {s: load(w, s) for s in scheds}
    for s in scheds:
        for st in res[s]["stages"]:
            eps = st.get("endpoints") or {}
            busiest = max(eps.values()) / sum(eps.values()) if eps and sum(eps.values()) else 0.0
            print("| %s | %g | %.1f %% | %.2f | %.0f | %.0f | %.1f | %.0f | %.2f | %.1f %% | %.1f %% | %.0f %% |" % (
                s, st["rate"] or 0, 100 * completion(st), st["request_throughput"], st["ttft_ms"]["p50"],
                st["ttft_ms"]["p90"], st["itl_ms"]["p50"], st["e2e_ms"]["p90"], st["goodput"]["rate"],
                100 * st["goodput"]["share"], 100 * st["tokens"]["cached_share"], 100 * busiest))
    print("")
    rr = res.get("round-robin")
    if rr:
        # the highest offered rate at which round-robin still completes >= 95 % of requests
        ok = [i for i, st in enumerate(rr["stages"]) if completion(st) >= 0.95]
        if ok:
            i = ok[-1]
            base = rr["stages"][i]
            print("At %g req/s, the highest offered rate where round-robin completes >= 95 %% of requests (%.1f %%):\n" % (
                base["rate"], 100 * completion(base)))
            print("| scheduler | TTFT p90 vs round-robin | goodput vs round-robin | throughput vs round-robin |")
            print("| --- | --- | --- | --- |")
            summary[w] = {"rate": base["rate"], "vs_rr": {}}
            for s in scheds:
                st = res[s]["stages"][i]
                t = st["ttft_ms"]["p90"] / base["ttft_ms"]["p90"] if base["ttft_ms"]["p90"] else float("nan")
                g = st["goodput"]["rate"] / base["goodput"]["rate"] if base["goodput"]["rate"] else float("inf")
                th = st["request_throughput"] / base["request_throughput"] if base["request_throughput"] else float("nan")
                summary[w]["vs_rr"][s] = {"ttft_p90_ratio": t, "goodput_ratio": g, "throughput_ratio": th}
                print("| %s | %.2fx | %s | %.3fx |" % (s, t, ("%.2fx" % g) if g != float("inf") else "inf (round-robin 0)", th))
            print("")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
PYEOF

if [ "$UPDATE_DOCS" -eq 1 ]; then
    DOC=$ROOT/docs/benchmarks.md
    mkdir -p "$ROOT/docs/routing"
    prefix=""
    [ -n "$GGUF" ] && prefix=real-
    for w in $WORKLOADS; do cp "$OUT/$w.svg" "$ROOT/docs/routing/$prefix$w.svg"; done
    $PY - "$DOC" "$OUT/report.md" "$SECTION" "$prefix" <<'PYEOF'
import sys
doc, rep, section, prefix = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
rep = rep.replace("](routing/", "](routing/" + prefix)
begin = "<!-- %s:begin (written by scripts/bench_routing.sh --update-docs) -->" % section
end = "<!-- %s:end -->" % section
title = "Routing experiment, real CPU engines (issue 5)" if prefix else "Routing experiment (issue 5)"
s = open(doc).read()
if begin in s and end in s:
    s = s[: s.index(begin) + len(begin)] + "\n" + rep + s[s.index(end):]
else:
    s = s.rstrip("\n") + "\n\n## " + title + "\n\n" + begin + "\n" + rep + end + "\n"
open(doc, "w").write(s)
PYEOF
fi
cat "$OUT/report.md"
echo "bench_routing: results in $OUT" >&2
