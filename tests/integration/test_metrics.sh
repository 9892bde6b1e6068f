#!/usr/bin/env bash
# test_metrics.sh - the engine's GET /metrics as vLLM exposes it (spec research/vllm-interfaces.md
# §2): parsed with Debian's python3-prometheus-client; presence, types, labels and histogram
# buckets of the vLLM series, then that the values move as they should after requests (prefix
# cache hits = cached tokens, token counters, request_success by finished_reason, KV usage while a
# long request runs). Starts `switchyard engine --sim` on 127.0.0.1 only; bounded waits.
# Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand from the repo root:
#   bash tests/integration/test_metrics.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=sim/metrics-test
BLOCKS=1000

"$SY_PY" -c 'from prometheus_client.parser import text_string_to_metric_families' 2>/dev/null ||
    sy_fail "python3-prometheus-client is missing (scripts/install-deps.sh)"

# real time (--sim-speed 1) so a long request is observably running
sy_start_engine main --served-model-name "$MODEL" --max-model-len 4096 --sim-speed 1 \
    --num-gpu-blocks-override $BLOCKS --block-size 16 --log-level warn
PID=$SY_PID

# scrape FILE : saves the exposition
scrape() {
    curl -sS --max-time 10 -o "$1" -w '%{http_code}' "$SY_URL/metrics"
}

# prom FILE EXPR : evaluates a Python expression over the parsed exposition. Available:
#   fams  {family name -> Metric} (prometheus_client's parser; counters lose "_total" in the name)
#   s(name, **labels)  sum of sample values with that exact sample name and matching labels
#                      (nan if none); e.g. s("vllm:prefix_cache_hits_total")
#   samples(name)      list of Sample tuples with that sample name
prom() {
    "$SY_PY" - "$1" "$2" <<'PYEOF'
import math, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
fams, allfams = {}, []
for f in text_string_to_metric_families(text):
    fams.setdefault(f.name, f)
    allfams.append(f)
def samples(name):
    return [x for f in allfams for x in f.samples if x.name == name]
def s(name, **labels):
    vals = [x.value for x in samples(name) if all(x.labels.get(k) == v for k, v in labels.items())]
    return sum(vals) if vals else float("nan")
v = eval("(" + sys.argv[2] + "\n)")
print(v)
PYEOF
}

# expect NAME FILE EXPR : passes iff prom EXPR prints True
expect() {
    local out
    out=$(prom "$2" "$3" 2>&1)
    if [ "$out" == "True" ]; then sy_ok "$1"; else sy_not_ok "$1" "expr: $3
result: $(printf '%s' "$out" | tail -n 4)"; fi
}

M0=$SY_TMP/m0.txt
sy_assert_eq "GET /metrics is 200" 200 "$(scrape "$M0")"
if prom "$M0" 'len(fams) > 0' >/dev/null 2>&1; then
    sy_ok "exposition parses with prometheus_client"
else
    sy_fail "exposition does not parse with prometheus_client" "$(prom "$M0" 'len(fams)' 2>&1 | tail -n 5)"
fi

# --- presence and types -----------------------------------------------------------------------
for g in vllm:num_requests_running vllm:num_requests_waiting vllm:kv_cache_usage_perc; do
    expect "$g is a gauge" "$M0" "fams['$g'].type == 'gauge' and len(samples('$g')) >= 1"
done
# prometheus_client's parser strips _total from counter family names
for c in vllm:prefix_cache_queries vllm:prefix_cache_hits vllm:prompt_tokens vllm:generation_tokens \
    vllm:request_success; do
    expect "$c is a counter (TYPE line and samples named ${c}_total, as prometheus_client writes)" "$M0" \
        "fams['$c'].type == 'counter' and len(fams['$c'].samples) >= 1 and
         all(x.name == '${c}_total' for x in fams['$c'].samples)"
done
expect "counters print as floats (prometheus_client style '0.0')" "$M0" \
    "any(l.startswith('vllm:prompt_tokens_total{') and l.rsplit(' ', 1)[1] in ('0.0', '0') for l in text.splitlines())"
expect "idle: 0 running, 0 waiting, kv_cache_usage_perc 0" "$M0" \
    "s('vllm:num_requests_running') == 0 and s('vllm:num_requests_waiting') == 0 and s('vllm:kv_cache_usage_perc') == 0"

TTFT='[0.001,0.005,0.01,0.02,0.04,0.06,0.08,0.1,0.25,0.5,0.75,1,2.5,5,7.5,10,20,40,80,160,640,2560]'
ITL='[0.01,0.025,0.05,0.075,0.1,0.15,0.2,0.3,0.4,0.5,0.75,1,2.5,5,7.5,10,20,40,80]'
E2E='[0.3,0.5,0.8,1,1.5,2,2.5,5,10,15,20,30,40,50,60,120,240,480,960,1920,7680]'
hist_buckets() { # FAMILY -> Python expr: sorted finite le values of the family's buckets
    echo "sorted({float(x.labels['le']) for x in samples('$1_bucket') if x.labels['le'] != '+Inf'})"
}
for pair in "vllm:time_to_first_token_seconds:$TTFT" "vllm:inter_token_latency_seconds:$ITL" \
    "vllm:e2e_request_latency_seconds:$E2E"; do
    fam=${pair%%:\[*}
    buckets=${pair##*:}
    expect "$fam is a histogram with vLLM's buckets and +Inf, _sum, _count" "$M0" \
        "fams['$fam'].type == 'histogram' and $(hist_buckets "$fam") == [float(b) for b in $buckets]
         and any(x.labels['le'] == '+Inf' for x in samples('${fam}_bucket'))
         and len(samples('${fam}_sum')) >= 1 and len(samples('${fam}_count')) >= 1"
done

expect "vllm:cache_config_info gauge = 1 with block_size 16 and num_gpu_blocks $BLOCKS labels" "$M0" \
    "fams['vllm:cache_config_info'].type == 'gauge' and
     any(x.labels.get('block_size') == '16' and x.labels.get('num_gpu_blocks') == '$BLOCKS' and
         x.value == 1 for x in samples('vllm:cache_config_info'))"
expect "vllm:cache_config_info has the engine label" "$M0" \
    "all('engine' in x.labels for x in samples('vllm:cache_config_info'))"
expect "engine metrics carry model_name='$MODEL' and engine='0'" "$M0" \
    "all(x.labels.get('model_name') == '$MODEL' and x.labels.get('engine') == '0'
         for n in ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc',
                   'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total',
                   'vllm:prompt_tokens_total', 'vllm:generation_tokens_total',
                   'vllm:time_to_first_token_seconds_count', 'vllm:e2e_request_latency_seconds_count']
         for x in samples(n)) and len(samples('vllm:num_requests_running')) == 1"
expect "request_success uses the finished_reason label (not finish_reason)" "$M0" \
    "all('finish_reason' not in x.labels for x in samples('vllm:request_success_total'))"

# --- values move after requests -------------------------------------------------------------
# a 200-char prompt twice: 201 tokens each; the second hits floor(200/16)*16 = 192 cached tokens
PROMPT=$(printf 'metrics prompt %03d. ' $(seq 1 10) | head -c 200)
[ ${#PROMPT} -eq 200 ] || sy_fail "test bug: prompt is ${#PROMPT} chars"
CACHED_SUM=0
for i in 1 2; do
    sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"$PROMPT\",\"max_tokens\":1,\"ignore_eos\":true}"
    sy_assert_status "completion $i is 200" 200
    c=$(sy_json_get "$SY_BODY" "j['usage']['prompt_tokens_details']['cached_tokens']" 2>/dev/null || echo x)
    [[ $c =~ ^[0-9]+$ ]] && CACHED_SUM=$((CACHED_SUM + c))
done
sy_assert_eq "the repeated prompt reports cached_tokens 192" 192 "$c"
M1=$SY_TMP/m1.txt
scrape "$M1" >/dev/null
DELTA() { # sample name [labels as python kwargs] -> python expr for M1 - M0
    echo "(s('$1'${2-}) - base('$1'${2-}))"
}
# base(...) reads the M0 scrape: load both files in one python run
prom2() { # EXPR over s() (M1) and base() (M0)
    "$SY_PY" - "$M0" "$M1" "$1" <<'PYEOF'
import math, sys
from prometheus_client.parser import text_string_to_metric_families
def load(p):
    out = []
    for f in text_string_to_metric_families(open(p, encoding="utf-8").read()):
        out.extend(f.samples)
    return out
S0, S1 = load(sys.argv[1]), load(sys.argv[2])
def _sum(S, name, labels):
    v = [x.value for x in S if x.name == name and all(x.labels.get(k) == w for k, w in labels.items())]
    return sum(v) if v else 0.0
def s(name, **labels): return _sum(S1, name, labels)
def base(name, **labels): return _sum(S0, name, labels)
print(eval("(" + sys.argv[3] + "\n)"))
PYEOF
}
expect2() { # NAME EXPR
    local out
    out=$(prom2 "$2" 2>&1)
    if [ "$out" == "True" ]; then sy_ok "$1"; else sy_not_ok "$1" "expr: $2
result: $(printf '%s' "$out" | tail -n 4)
deltas: hits $(prom2 "$(DELTA vllm:prefix_cache_hits_total)") queries $(prom2 "$(DELTA vllm:prefix_cache_queries_total)") prompt $(prom2 "$(DELTA vllm:prompt_tokens_total)") gen $(prom2 "$(DELTA vllm:generation_tokens_total)")"; fi
}
expect2 "prefix_cache_hits_total grew by the cached tokens reported in usage ($CACHED_SUM)" \
    "$(DELTA vllm:prefix_cache_hits_total) == $CACHED_SUM and $CACHED_SUM == 192"
expect2 "prefix_cache_queries_total grew by the prompt tokens looked up (2 x 201)" \
    "$(DELTA vllm:prefix_cache_queries_total) == 402"
expect2 "prompt_tokens_total grew by 2 x 201" "$(DELTA vllm:prompt_tokens_total) == 402"
expect2 "generation_tokens_total grew by 2" "$(DELTA vllm:generation_tokens_total) == 2"
expect2 "request_success_total{finished_reason=length} grew by 2" \
    "$(DELTA vllm:request_success_total ", finished_reason='length'") == 2"
expect2 "TTFT and E2E histogram counts grew by 2" \
    "$(DELTA vllm:time_to_first_token_seconds_count) == 2 and $(DELTA vllm:e2e_request_latency_seconds_count) == 2"
expect2 "TTFT +Inf bucket equals its count" \
    "s('vllm:time_to_first_token_seconds_bucket', le='+Inf') == s('vllm:time_to_first_token_seconds_count')"

# one request that stops by EOS (no ignore_eos, seeded): finished_reason stop
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"short\",\"max_tokens\":200,\"seed\":3}"
FR=$(sy_json_get "$SY_BODY" "j['choices'][0]['finish_reason']" 2>/dev/null)
M2=$SY_TMP/m2.txt
scrape "$M2" >/dev/null
expect "request_success_total{finished_reason=$FR} counts the EOS/length request" "$M2" \
    "s('vllm:request_success_total', finished_reason='$FR') >= 1 and s('vllm:request_success_total') == 3"
# a request of 10 tokens: the ITL histogram gets inter-token samples
sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"itl\",\"max_tokens\":10,\"ignore_eos\":true}"
M3=$SY_TMP/m3.txt
scrape "$M3" >/dev/null
expect "inter_token_latency_seconds observed the decode steps (count grew by >= 9)" "$M3" \
    "s('vllm:inter_token_latency_seconds_count') - $(prom "$M2" "s('vllm:inter_token_latency_seconds_count')") >= 9"

# --- a long request is running: KV usage > 0, running 1; then abort -> back to 0 -------------------
LONGP=$(printf 'long running request %03d ' $(seq 1 12) | head -c 300)
curl -sS -N --max-time 60 -H 'Content-Type: application/json' \
    --data-binary "{\"model\":\"$MODEL\",\"prompt\":\"$LONGP\",\"max_tokens\":3000,\"ignore_eos\":true,\"stream\":true}" \
    -o "$SY_TMP/long.sse" "$SY_URL/v1/completions" 2>/dev/null &
LONG_PID=$!
SY_PIDS+=("$LONG_PID")
busy() {
    scrape "$SY_TMP/busy.txt" >/dev/null &&
        [ "$(prom "$SY_TMP/busy.txt" "s('vllm:num_requests_running') == 1 and 0 < s('vllm:kv_cache_usage_perc') <= 1")" == True ]
}
if sy_wait_until 15 busy; then
    sy_ok "while a long request streams: num_requests_running 1 and 0 < kv_cache_usage_perc <= 1"
    expect "kv_cache_usage_perc is a fraction consistent with the request's blocks (>= 19/$BLOCKS)" "$SY_TMP/busy.txt" \
        "s('vllm:kv_cache_usage_perc') >= 19 / $BLOCKS - 1e-9 and s('vllm:kv_cache_usage_perc') < 0.5"
else
    sy_not_ok "while a long request streams: num_requests_running 1 and 0 < kv_cache_usage_perc <= 1" \
        "$(grep -E '^vllm:(num_requests_running|kv_cache_usage_perc)' "$SY_TMP/busy.txt" 2>/dev/null)"
fi
sy_check "the long request was still streaming when checked" sy_alive "$LONG_PID"
kill -TERM "$LONG_PID" 2>/dev/null
wait "$LONG_PID" 2>/dev/null
idle() {
    scrape "$SY_TMP/idle.txt" >/dev/null &&
        [ "$(prom "$SY_TMP/idle.txt" "s('vllm:num_requests_running') == 0 and s('vllm:num_requests_waiting') == 0")" == True ]
}
if sy_wait_until 10 idle; then
    sy_ok "after the client disconnected: 0 running, 0 waiting"
else
    sy_not_ok "after the client disconnected: 0 running, 0 waiting" \
        "$(grep -E '^vllm:num_requests_(running|waiting)' "$SY_TMP/idle.txt" 2>/dev/null)"
fi
expect "the aborted request is not counted as length/stop" "$SY_TMP/idle.txt" \
    "s('vllm:request_success_total', finished_reason='length') == 3 - (1 if '$FR' == 'stop' else 0) + 1"

# --- name[] restriction (prometheus_client's, which vLLM's /metrics app applies; the gateway scrapes
# so): exactly the listed samples of the full exposition, other families left out ---------------
NAMES="vllm:num_requests_running vllm:cache_config_info vllm:prompt_tokens_total vllm:e2e_request_latency_seconds_count vllm:e2e_request_latency_seconds_bucket vllm:no_such_metric"
Q=$(printf 'name%%5B%%5D=%s&' $NAMES)
sy_assert_eq "GET /metrics?name[]=... is 200" 200 \
    "$(curl -sS --max-time 10 -o "$SY_TMP/restricted.txt" -w '%{http_code}' "$SY_URL/metrics?${Q%&}")"
scrape "$SY_TMP/full.txt" >/dev/null
if "$SY_PY" - "$SY_TMP/full.txt" "$SY_TMP/restricted.txt" $NAMES <<'PYEOF'; then
import sys
from prometheus_client.parser import text_string_to_metric_families
def load(path):
    return sorted((x.name, tuple(sorted(x.labels.items())), x.value)
                  for f in text_string_to_metric_families(open(path).read()) for x in f.samples)
names = set(sys.argv[3:])
full, restricted = load(sys.argv[1]), load(sys.argv[2])
want = [x for x in full if x[0] in names]
assert restricted == want and len(want) > 20, (restricted[:5], want[:5])
text = open(sys.argv[2]).read()
assert "vllm:generation_tokens" not in text and "# TYPE vllm:num_requests_waiting" not in text
PYEOF
    sy_ok "the restricted scrape holds exactly the listed samples of the full one"
else
    sy_not_ok "the restricted scrape holds exactly the listed samples of the full one" \
        "$(head -c 600 "$SY_TMP/restricted.txt")"
fi

sy_check "engine alive at the end" sy_alive "$PID"
sy_stop_pid "$PID" 10
sy_assert_eq "engine: SIGTERM exits 0" 0 "$?"
sy_finish
