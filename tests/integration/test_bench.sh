#!/usr/bin/env bash
# test_bench.sh - `switchyard bench` against servers with known behaviour, on 127.0.0.1:
#  * a sim engine with a fixed timing profile (a100-llama3-8b, --sim-speed 1): at concurrency 1
#    the measured median TTFT and ITL agree with the step times computed from the profile
#    (sim_exec.c: step = t_step + prefill_tokens*t_prefill + decode_seqs*t_decode + kv_read*t_kv)
#    within +-15% + 2 ms (the 2 ms covers HTTP, tokenization, the core->loop wakeup and the
#    client's read; 15% covers sleep jitter on a busy 2-core box), prompt tokens equal
#    --input-len and output tokens equal max_tokens;
#  * the shared-prefix workload run twice reports a cached-token share > 0 (and more the second
#    time); multi-turn and trace workloads complete; `bench plot` charts two results files;
#  * bad input: an unreachable URL (connection refused counted, exit 1, no hang), a server that
#    accepts and never answers (stall errors after --timeout, the bench ends), and a server that
#    sends malformed SSE, no [DONE], 429, 500 and an in-band error (each counted with its reason).
# Every wait is bounded; every process is cleaned up (lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/bench
SPEED=1
sy_start_engine bench --served-model-name "$MODEL" --sim-profile a100-llama3-8b \
    --sim-speed "$SPEED" --log-level warn
URL=$SY_URL
EPID=$SY_PID

run_bench() { # NAME TIMEOUT_S ARGS... : runs the bench, sets BENCH_RC and BENCH_S (seconds)
    local name=$1 limit=$2 t0
    shift 2
    t0=$(date +%s%N)
    timeout "$limit" "$SY_BIN" bench --no-progress "$@" >"$SY_TMP/$name.md" 2>"$SY_TMP/$name.err"
    BENCH_RC=$?
    BENCH_S=$(( ($(date +%s%N) - t0) / 1000000 ))
    BENCH_S=$(awk "BEGIN{print $BENCH_S/1000}")
}

# ---------------------------------------------------------------------------------------------
# timing against the profile
IN=512
OUT=32
run_bench timing 60 --url "$URL" --model "$MODEL" --workload random --input-len $IN \
    --output-len $OUT --concurrency 1 --num-requests 12 --warmup-requests 2 --seed 11 \
    --out "$SY_TMP/timing.json" --label "sim a100 c=1"
sy_assert_eq "timing run exits 0" 0 "$BENCH_RC" || sy_diag "$(tail -n 20 "$SY_TMP/timing.err")"
sy_json_check "12 requests, all ok, none failed" "$SY_TMP/timing.json" \
    "j['stages'][0]['requests']['ok'] == 12 and j['stages'][0]['requests']['errors'] == 0"
sy_json_check "prompt tokens equal --input-len ($IN, exact with the builtin tokenizer)" \
    "$SY_TMP/timing.json" "j['stages'][0]['tokens']['prompt'] == 12 * $IN"
sy_json_check "output tokens equal max_tokens ($OUT each)" "$SY_TMP/timing.json" \
    "j['stages'][0]['tokens']['completion'] == 12 * $OUT and j['stages'][0]['tokens']['output_len_mismatch'] == 0"
sy_json_check "one ITL sample per chunk after the first" "$SY_TMP/timing.json" \
    "0.9 * 12 * ($OUT - 1) <= j['stages'][0]['itl_ms']['n'] <= 12 * ($OUT - 1)"
TIMING=$("$SY_PY" - "$SY_TMP/timing.json" $IN $OUT $SPEED <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
P, N, speed = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
# a100-llama3-8b (src/engine/sim_exec.c k_profiles)
t_step, t_pre, t_dec, t_kv = 0.0103, 8.0e-5, 8.0e-5, 8.0e-8
# prefill: every prompt token computed (random prompts share no block), kv read = P
ttft = (t_step + P * t_pre + P * t_kv) / speed * 1000
# decode at batch 1: one sequence, kv read = context (P .. P+N-1), mean P + N/2
itl = (t_step + t_dec + (P + N / 2) * t_kv) / speed * 1000
st = j["stages"][0]
m_ttft, m_itl = st["ttft_ms"]["p50"], st["itl_ms"]["p50"]
ok = abs(m_ttft - ttft) <= 0.15 * ttft + 2 and abs(m_itl - itl) <= 0.15 * itl + 2
print("%s expected_ttft_ms=%.2f measured_ttft_p50=%.2f expected_itl_ms=%.3f measured_itl_p50=%.3f "
      "tpot_mean=%.3f e2e_p50=%.1f" % ("ok" if ok else "FAIL", ttft, m_ttft, itl, m_itl,
                                       st["tpot_ms"]["mean"], st["e2e_ms"]["p50"]))
PYEOF
)
sy_diag "timing: $TIMING"
case "$TIMING" in
ok*) sy_ok "median TTFT and ITL within 15% + 2 ms of the profile" ;;
*) sy_not_ok "median TTFT and ITL within 15% + 2 ms of the profile" "$TIMING" ;;
esac
sy_check "Markdown summary on stdout" grep -q "| TTFT |" "$SY_TMP/timing.md"

# ---------------------------------------------------------------------------------------------
# shared prefix twice: cached tokens
SP=(--url "$URL" --model "$MODEL" --workload shared-prefix --groups 2 --prompts-per-group 4
    --system-prompt-len 256 --question-len 32 --output-len 4 --concurrency 2 --num-requests 8
    --seed 3)
run_bench sp1 60 "${SP[@]}" --out "$SY_TMP/sp1.json" --md "$SY_TMP/sp1.md" --label "run 1"
sy_assert_eq "shared-prefix run 1 exits 0" 0 "$BENCH_RC" || sy_diag "$(tail -n 20 "$SY_TMP/sp1.err")"
run_bench sp2 60 "${SP[@]}" --out "$SY_TMP/sp2.json" --label "run 2"
sy_assert_eq "shared-prefix run 2 exits 0" 0 "$BENCH_RC"
sy_json_check "run 1: cached-token share > 0 (prompts of a group share 256 tokens)" "$SY_TMP/sp1.json" \
    "j['stages'][0]['tokens']['cached_share'] > 0 and j['stages'][0]['requests']['ok'] == 8"
SHARE1=$(sy_json_get "$SY_TMP/sp1.json" "j['stages'][0]['tokens']['cached_share']")
sy_json_check "run 2: cached-token share > run 1's ($SHARE1)" "$SY_TMP/sp2.json" \
    "j['stages'][0]['tokens']['cached_share'] > $SHARE1"
sy_check "--md writes the summary to a file" grep -q "cached" "$SY_TMP/sp1.md"

# rate ladder with the inference-perf file shape, plus plot
cat >"$SY_TMP/ip.yml" <<'EOF'
load:
  type: constant
  stages:
  - rate: 4
    duration: 1
  - rate: 8
    duration: 1
api:
  type: completion
data:
  type: shared_prefix
  shared_prefix:
    num_unique_system_prompts: 2
    num_users_per_system_prompt: 3
    system_prompt_len: 64
    question_len: 16
    output_len: 4
EOF
run_bench ladder 60 --url "$URL" --model "$MODEL" --workload-config "$SY_TMP/ip.yml" \
    --out "$SY_TMP/ladder.json" --svg "$SY_TMP/ladder.svg" --label ladder
sy_assert_eq "inference-perf config ladder exits 0" 0 "$BENCH_RC" || sy_diag "$(tail -n 20 "$SY_TMP/ladder.err")"
sy_json_check "two stages at rates 4 and 8, each with its own results" "$SY_TMP/ladder.json" \
    "[s['rate'] for s in j['stages']] == [4, 8] and all(3 <= s['requests']['sent'] <= 12 for s in j['stages']) and j['config']['arrival'] == 'constant'"
"$SY_BIN" bench plot "$SY_TMP/ladder.json" "$SY_TMP/sp1.json" --out "$SY_TMP/plot.svg" 2>"$SY_TMP/plot.err"
sy_assert_eq "bench plot exits 0" 0 "$?"
sy_check "plot and --svg are well-formed SVG" "$SY_PY" -c '
import sys, xml.etree.ElementTree as ET
for p in sys.argv[1:]:
    r = ET.parse(p).getroot()
    assert r.tag.endswith("svg"), p
    assert len([e for e in r.iter() if e.tag.endswith("polyline")]) >= 2, p
' "$SY_TMP/plot.svg" "$SY_TMP/ladder.svg"

# multi-turn (chat) and trace
cat >"$SY_TMP/q.jsonl" <<'EOF'
{"question_id": 1, "turns": ["Compose an engaging travel blog post about a recent trip to Hawaii.", "Rewrite your previous response. Start every sentence with the letter A."]}
{"question_id": 2, "turns": ["Draft a professional email seeking your supervisor's feedback.", "Take a moment to evaluate and critique your own response."]}
EOF
run_bench mt 60 --url "$URL" --model "$MODEL" --workload multi-turn --questions "$SY_TMP/q.jsonl" \
    --output-len 8 --concurrency 2 --num-requests 4 --out "$SY_TMP/mt.json"
sy_assert_eq "multi-turn exits 0" 0 "$BENCH_RC" || sy_diag "$(tail -n 20 "$SY_TMP/mt.err")"
sy_json_check "multi-turn: 4 chat turns ok, second turns reuse the first turns' KV" "$SY_TMP/mt.json" \
    "j['config']['api'] == 'chat' and j['stages'][0]['requests']['ok'] == 4 and j['stages'][0]['tokens']['cached'] > 0"
printf '%s\n' '{"timestamp_ms": 1000, "input_len": 40, "output_len": 3, "prefix_group": 1, "prefix_len": 32}' \
    '{"timestamp_ms": 1200, "input_len": 48, "output_len": 3, "prefix_group": 1, "prefix_len": 32}' \
    '{"timestamp_ms": 1400, "prompt": "hello there", "output_len": 2}' >"$SY_TMP/trace.jsonl"
run_bench trace 30 --url "$URL" --model "$MODEL" --workload trace --trace "$SY_TMP/trace.jsonl" \
    --out "$SY_TMP/trace.json"
sy_assert_eq "trace exits 0" 0 "$BENCH_RC" || sy_diag "$(tail -n 20 "$SY_TMP/trace.err")"
sy_json_check "trace: 3 requests replayed over ~0.4 s, 8 output tokens" "$SY_TMP/trace.json" \
    "j['stages'][0]['requests']['ok'] == 3 and j['stages'][0]['tokens']['completion'] == 8 and 0.35 < j['stages'][0]['duration_s'] < 5"

# ---------------------------------------------------------------------------------------------
# bad input
DEAD=$(sy_free_port)
run_bench dead 20 --url "http://127.0.0.1:$DEAD" --model x --num-requests 5 --timeout 2 \
    --out "$SY_TMP/dead.json"
sy_assert_eq "unreachable URL: exit 1 (no request succeeded)" 1 "$BENCH_RC"
sy_json_check "unreachable URL: 5 connect errors" "$SY_TMP/dead.json" \
    "j['stages'][0]['errors_by_reason'] == {'connect': 5} and j['stages'][0]['requests']['ok'] == 0"
sy_check "unreachable URL: finished in under 5 s (took ${BENCH_S}s)" awk "BEGIN{exit !($BENCH_S < 5)}"

SPORT=$(sy_free_port)
sy_bg "$SY_TMP/stall.log" "$SY_PY" "$SY_SOURCE_DIR/tests/integration/bench_bad_server.py" "$SPORT" stall
sy_wait_until 10 grep -q ready "$SY_TMP/stall.log" || sy_fail "stall server did not start" "$(cat "$SY_TMP/stall.log")"
run_bench stall 20 --url "http://127.0.0.1:$SPORT" --model x --concurrency 2 --num-requests 2 \
    --timeout 1 --out "$SY_TMP/stall.json"
sy_assert_eq "stalling server: exit 1" 1 "$BENCH_RC"
sy_json_check "stalling server: 2 stall errors with a reason" "$SY_TMP/stall.json" \
    "j['stages'][0]['errors_by_reason'] == {'stall_timeout': 2} and any('no byte' in k for k in j['stages'][0]['error_details'])"
sy_check "stalling server: ended after about --timeout (took ${BENCH_S}s)" awk "BEGIN{exit !($BENCH_S >= 0.9 && $BENCH_S < 6)}"

CPORT=$(sy_free_port)
sy_bg "$SY_TMP/cycle.log" "$SY_PY" "$SY_SOURCE_DIR/tests/integration/bench_bad_server.py" "$CPORT" cycle
sy_wait_until 10 grep -q ready "$SY_TMP/cycle.log" || sy_fail "cycle server did not start" "$(cat "$SY_TMP/cycle.log")"
run_bench cycle 20 --url "http://127.0.0.1:$CPORT" --model x --concurrency 1 --num-requests 6 \
    --timeout 2 --out "$SY_TMP/cycle.json"
sy_assert_eq "misbehaving server: exit 0 (one request succeeded)" 0 "$BENCH_RC"
sy_json_check "malformed SSE, no [DONE], 429, 500, in-band error: each counted" "$SY_TMP/cycle.json" \
    "j['stages'][0]['errors_by_reason'] == {'malformed': 1, 'no_done': 1, 'rejected_429': 1, 'http_status': 1, 'inband_error': 1} and j['stages'][0]['requests']['ok'] == 1 and j['stages'][0]['requests']['rejected'] == 1 and j['stages'][0]['requests']['errors'] == 4"
sy_json_check "errors and rejections count against goodput" "$SY_TMP/cycle.json" \
    "abs(j['stages'][0]['goodput']['share'] - 1/6) < 1e-9"

run_bench usage 10 --url "ftp://x" --model x
sy_assert_eq "bad --url: exit 2" 2 "$BENCH_RC"
run_bench usage2 10 --rates "1,-2"
sy_assert_eq "bad --rates: exit 2" 2 "$BENCH_RC"

sy_alive "$EPID" && sy_ok "engine still alive" || sy_not_ok "engine still alive"
sy_finish
