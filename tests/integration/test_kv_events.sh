#!/usr/bin/env bash
# test_kv_events.sh - the engine's KV-cache events (spec research/vllm-interfaces.md §3, §4):
# runs `switchyard engine --sim --kv-events-config ...` with a ZMQ PUB endpoint, subscribes with
# tests/integration/kv_subscriber.py, sends requests, and checks BlockStored events (token_ids =
# /tokenize of the prompt, block aligned; parent chaining; block_size), the block hashes against
# an independent sha256_cbor recomputation in this script (PYTHONHASHSEED semantics), BlockRemoved
# events under a tiny --num-gpu-blocks-override, the legacy array encoding, and another seed.
# The engine binds "tcp://*:PORT" (vLLM binds only endpoints containing '*' or '::'); the
# subscriber connects to tcp://127.0.0.1:PORT.
# Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand from the repo root:
#   bash tests/integration/test_kv_events.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUB=${SY_KV_SUBSCRIBER:-$SY_SOURCE_DIR/tests/integration/kv_subscriber.py}
MODEL=sim/kv-events-test
TOPIC='kv@127.0.0.1@sim/kv-events-test'
BS=16
SUB_SECONDS=${SY_KV_SUB_SECONDS:-8}

[ -f "$SUB" ] || sy_fail "subscriber tool $SUB is missing"
"$SY_PY" -c 'import zmq, msgpack' 2>/dev/null || sy_fail "python3-zmq / python3-msgpack missing (scripts/install-deps.sh)"

# The independent reference: canonical CBOR + SHA-256 chain (vLLM sha256_cbor), written here
# without the subscriber's code, and self-checked against the spec's test vectors (§4.4).
REF=$SY_TMP/kvref.py
cat >"$REF" <<'PYEOF'
import hashlib, struct

def _head(major, n):
    if n < 24:
        return bytes([(major << 5) | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < (1 << (8 * struct.calcsize(fmt))):
            return bytes([(major << 5) | ai]) + struct.pack(fmt, n)
    raise ValueError(n)

def cbor(x):
    if x is None:
        return b"\xf6"
    if isinstance(x, bool):
        return b"\xf5" if x else b"\xf4"
    if isinstance(x, int):
        return _head(0, x) if x >= 0 else _head(1, -1 - x)
    if isinstance(x, bytes):
        return _head(2, len(x)) + x
    if isinstance(x, str):
        b = x.encode()
        return _head(3, len(b)) + b
    if isinstance(x, (list, tuple)):
        return _head(4, len(x)) + b"".join(cbor(e) for e in x)
    raise TypeError(type(x))

def none_hash(seed):
    return hashlib.sha256(cbor(seed)).digest()

def low64(d):
    return int.from_bytes(d[-8:], "big")

def chain(seed, tokens, bs):
    """[(low64 hash, low64 parent or None, block tokens)] for every full block."""
    out, parent, first = [], none_hash(seed), True
    for k in range(len(tokens) // bs):
        blk = list(tokens[k * bs:(k + 1) * bs])
        h = hashlib.sha256(cbor([parent, blk, None])).digest()
        out.append((low64(h), None if first else low64(parent), blk))
        parent, first = h, False
    return out

# self-check against research/vllm-interfaces.md §4.4
assert none_hash("0").hex() == "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e"
_c = chain("0", list(range(1, 33)), 16)
assert _c[0][0] == 3236607068019569386 and _c[1][0] == 2758186210834249151, _c
PYEOF
sy_check "reference sha256_cbor chain reproduces the spec's test vectors" "$SY_PY" -c "exec(open('$REF').read())"

# start_kv_engine NAME SEED ENCODING BLOCKS : engine with KV events on a free port; sets KV_PORT
start_kv_engine() {
    local name=$1 seed=$2 enc=$3 blocks=$4 cfg
    KV_PORT=$(sy_free_port)
    cfg="{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://*:$KV_PORT\",\"topic\":\"$TOPIC\""
    [ "$enc" == array ] && cfg="$cfg,\"event_encoding\":\"array\""
    cfg="$cfg}"
    PYTHONHASHSEED=$seed sy_start_engine "$name" --served-model-name "$MODEL" --block-size $BS \
        --num-gpu-blocks-override "$blocks" --max-model-len 256 --enable-prefix-caching \
        --sim-speed 0 --kv-events-config "$cfg" --log-level info
}

# start_sub OUT : subscriber in the background for SUB_SECONDS; waits until it has connected
start_sub() {
    sy_bg "$1.log" "$SY_PY" "$SUB" --endpoint "tcp://127.0.0.1:$KV_PORT" --topic "$TOPIC" \
        --duration "$SUB_SECONDS" --expect-first-seq 0 --out "$1"
    SUB_PID=$SY_BG_PID
    sleep 1.5 # ZMQ slow joiner: let the SUB connect and send its subscription first
    sy_alive "$SUB_PID" || sy_fail "kv_subscriber.py exited early" "$(tail -n 20 "$1.log")"
}

wait_sub() { # OUT LABEL : waits (bounded) for the subscriber started last; checks its verdict
    local i rc
    for ((i = 0; i < (SUB_SECONDS + 10) * 10; i++)); do
        sy_alive "$SUB_PID" || break
        sleep 0.1
    done
    sy_stop_pid "$SUB_PID" 2
    rc=$?
    if [ $rc -eq 0 ]; then
        sy_ok "$2: subscriber saw well-formed 3-frame messages, seq from 0 without gaps"
    else
        sy_not_ok "$2: subscriber saw well-formed 3-frame messages, seq from 0 without gaps" \
            "kv_subscriber.py exit $rc (2 malformed, 3 seq gap): $(tail -n 10 "$1.log")"
    fi
}

verify_chain() { # OUT SEED LABEL : the subscriber's own --verify-chain over the captured events
    if "$SY_PY" "$SUB" --in "$1" --verify-chain "$2" $BS >"$1.verify" 2>&1; then
        sy_ok "$3: kv_subscriber.py --verify-chain $2 $BS accepts every stored hash"
    else
        sy_not_ok "$3: kv_subscriber.py --verify-chain $2 $BS accepts every stored hash" "$(tail -n 10 "$1.verify")"
    fi
}

complete() { # PROMPT MAX_TOKENS -> response in $SY_BODY
    sy_post /v1/completions "{\"model\":\"$MODEL\",\"prompt\":\"$1\",\"max_tokens\":$2,\"ignore_eos\":true,\"temperature\":0}"
}

tokenize_to() { # PROMPT FILE
    sy_post /tokenize "{\"model\":\"$MODEL\",\"prompt\":\"$1\"}"
    cp "$SY_BODY" "$2"
}

# prompts: 100 ASCII chars each (101 tokens with BOS = 6 full blocks + 1 partial)
mkprompt() { printf "prompt %s: %-90s" "$1" "$2" | tr ' ' '.' | head -c 100; }
P1=$(mkprompt one "the first prompt whose blocks get evicted later")

# ---------------------------------------------------------------------------------------------
# A: map encoding, PYTHONHASHSEED=0, 24 blocks: stored events, chaining, hashes, evictions
start_kv_engine mapseed0 0 map 24
EA=$SY_TMP/events-a.jsonl
start_sub "$EA"
complete "$P1" 1
sy_assert_status "A: completion with KV events enabled is 200" 200
tokenize_to "$P1" "$SY_TMP/p1.tok"
printf '%s' "$P1" >"$SY_TMP/p1.txt"
sy_json_check "A: /tokenize of the 100-char prompt = BOS + its bytes" "$SY_TMP/p1.tok" \
    "j['tokens'] == [256] + list(open('$SY_TMP/p1.txt', 'rb').read())"
# a request whose output fills blocks too: 21 prompt tokens + 40 generated
P_GEN=$(mkprompt gen x | head -c 20)
complete "$P_GEN" 40
cp "$SY_BODY" "$SY_TMP/gen.json"
tokenize_to "$P_GEN" "$SY_TMP/gen.tok"
sleep 0.3
# five more distinct prompts: 7 blocks each in a 24-block cache evict P1's cached blocks
for k in 2 3 4 5 6; do
    complete "$(mkprompt "n$k" "filler prompt number $k to force evictions")" 1
    tokenize_to "$(mkprompt "n$k" "filler prompt number $k to force evictions")" "$SY_TMP/p$k.tok"
done
sy_assert_status "A: the eviction requests are served" 200
wait_sub "$EA" A
sy_check "A: subscriber received events" test -s "$EA"
verify_chain "$EA" 0 A

"$SY_PY" - "$REF" "$EA" "$SY_TMP" "$BS" >"$SY_TMP/a.out" 2>&1 <<'PYEOF'
import json, sys
exec(open(sys.argv[1]).read())
events = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
tmp, bs = sys.argv[3], int(sys.argv[4])
def tok(name): return json.load(open("%s/%s.tok" % (tmp, name)))["tokens"]
res = []
def check(name, cond, detail=""):
    res.append(("PASS " if cond else "FAIL ") + name + ("" if cond else " :: " + str(detail)[:600]))

stored = [e for e in events if e["type"] == "BlockStored"]
removed = [e for e in events if e["type"] == "BlockRemoved"]
check("events arrive with non-decreasing seq, no gaps between batches",
      all(b["seq"] - a["seq"] in (0, 1) for a, b in zip(events, events[1:])), [e["seq"] for e in events][:40])
check("BlockStored events present", len(stored) > 0, [e["type"] for e in events])
check("every BlockStored has block_size 16 and block_size x n_hashes token_ids",
      all(e["block_size"] == bs and len(e["token_ids"]) == bs * len(e["block_hashes"]) and e["block_hashes"]
          for e in stored), stored[:2])
# hash -> (parent, tokens) as published
pub = {}
for e in stored:
    parent = e["parent_block_hash"]
    for i, h in enumerate(e["block_hashes"]):
        pub[h] = (parent if i == 0 else e["block_hashes"][i - 1], e["token_ids"][i * bs:(i + 1) * bs])
p1 = tok("p1")
exp1 = chain("0", p1, bs)
check("P1: 6 full blocks expected (101 tokens)", len(exp1) == 6, len(exp1))
check("P1: every full block was stored with its hash = sha256_cbor chain (seed 0)",
      all(h in pub for h, _, _ in exp1), {"expected": [h for h, _, _ in exp1], "published": list(pub)[:12]})
check("P1: stored token_ids equal /tokenize of the prompt, block aligned",
      all(pub.get(h, (None, None))[1] == blk for h, _, blk in exp1),
      [(pub.get(h, (None, None))[1], blk) for h, _, blk in exp1][:2])
check("P1: parent chaining (first block parent null, then the previous block's hash)",
      all(h in pub and pub[h][0] == par for h, par, _ in exp1),
      [(pub.get(h, (None,))[0], par) for h, par, _ in exp1])
first_p1 = [e for e in stored if exp1 and exp1[0][0] in e["block_hashes"]]
check("P1: its first stored event starts the sequence (parent_block_hash null)",
      bool(first_p1) and first_p1[0]["block_hashes"][0] == exp1[0][0] and first_p1[0]["parent_block_hash"] is None,
      first_p1[:1])
# generated blocks
g = json.load(open(tmp + "/gen.json"))
gen_tokens = tok("gen") + list(g["choices"][0]["text"].encode())
computed = len(gen_tokens) - 1  # the last sampled token has no KV yet
expg = chain("0", gen_tokens[:computed], bs)
check("generated-token blocks are stored too (prompt 21 + 40 generated -> 3 full blocks)",
      len(expg) == 3 and all(h in pub and pub[h][1] == blk for h, _, blk in expg),
      {"expected": [h for h, _, _ in expg], "have": [h in pub for h, _, _ in expg]})
# every stored hash is explained by a known chain
known = {h for h, _, _ in exp1} | {h for h, _, _ in chain("0", gen_tokens, bs)}
for k in range(2, 7):
    known |= {h for h, _, _ in chain("0", tok("p%d" % k), bs)}
check("every published hash matches the recomputed chain of some request",
      set(pub) <= known, sorted(set(pub) - known)[:5])
check("no partial block is published (only full blocks of known chains)", set(pub) <= known)
# evictions
rem = [h for e in removed for h in e["block_hashes"]]
check("the tiny KV cache (24 blocks) forced BlockRemoved events", len(rem) > 0, [e["type"] for e in events])
order = {}
for idx, e in enumerate(events):
    for h in e.get("block_hashes") or []:
        order.setdefault((e["type"], h), idx)
check("every removed hash had been stored before its removal",
      all(("BlockStored", h) in order and order[("BlockStored", h)] < order[("BlockRemoved", h)] for h in rem),
      [h for h in rem if ("BlockStored", h) not in order][:5])
check("P1's blocks (least recently used) were among the evicted",
      any(h in rem for h, _, _ in exp1), {"removed": rem[:12], "p1": [h for h, _, _ in exp1]})
print("\n".join(res))
PYEOF
report_py() { # FILE : turns PASS/FAIL lines into TAP results
    local l
    grep -qE '^(PASS|FAIL) ' "$1" || sy_not_ok "event analysis ran" "$(tail -n 20 "$1")"
    while IFS= read -r l; do
        case "$l" in
        PASS\ *) sy_ok "${l#PASS }" ;;
        FAIL\ *) sy_not_ok "${l%% :: *}" "${l#* :: }" ;;
        esac
    done <"$1"
}
sed -i 's/^FAIL \(.*\)$/FAIL A: \1/; s/^PASS \(.*\)$/PASS A: \1/' "$SY_TMP/a.out"
report_py "$SY_TMP/a.out"
sy_stop_pid "$SY_PID" 10
sy_assert_eq "A: engine with KV events exits 0 on SIGTERM" 0 "$?"

# ---------------------------------------------------------------------------------------------
# B: legacy array encoding, same seed: the same prompt gives the same hashes
start_kv_engine arrayseed0 0 array 64
EB=$SY_TMP/events-b.jsonl
start_sub "$EB"
complete "$P1" 1
sy_assert_status "B: completion (array encoding) is 200" 200
wait_sub "$EB" B
verify_chain "$EB" 0 B
sy_stop_pid "$SY_PID" 10
sy_assert_eq "B: engine exits 0 on SIGTERM" 0 "$?"
# C: another seed changes every hash, reproducibly
start_kv_engine mapseed12345 12345 map 64
EC=$SY_TMP/events-c.jsonl
start_sub "$EC"
complete "$P1" 1
sy_assert_status "C: completion (PYTHONHASHSEED=12345) is 200" 200
wait_sub "$EC" C
verify_chain "$EC" 12345 C

"$SY_PY" - "$REF" "$EB" "$EC" "$SY_TMP/p1.tok" "$BS" >"$SY_TMP/bc.out" 2>&1 <<'PYEOF'
import json, sys
exec(open(sys.argv[1]).read())
def load(p):
    try:
        return [json.loads(l) for l in open(p) if l.strip()]
    except FileNotFoundError:
        return []
eb, ec = load(sys.argv[2]), load(sys.argv[3])
p1 = json.load(open(sys.argv[4]))["tokens"]
bs = int(sys.argv[5])
res = []
def check(name, cond, detail=""):
    res.append(("PASS " if cond else "FAIL ") + name + ("" if cond else " :: " + str(detail)[:600]))
def stored(ev):
    out = []
    for e in ev:
        if e["type"] == "BlockStored":
            out += list(zip(e["block_hashes"], [e["parent_block_hash"]] + e["block_hashes"][:-1],
                            [e["token_ids"][i * bs:(i + 1) * bs] for i in range(len(e["block_hashes"]))]))
    return out
sb, sc = stored(eb), stored(ec)
e0, e1 = chain("0", p1, bs), chain("12345", p1, bs)
check("B: legacy array events decode to BlockStored", len(sb) > 0, eb[:2])
check("B: array-encoded hashes, parents and token_ids equal the seed-0 chain", sb[:len(e0)] == e0,
      {"got": sb[:2], "want": e0[:2]})
check("C: PYTHONHASHSEED=12345 hashes equal the seed-12345 chain", sc[:len(e1)] == e1,
      {"got": [h for h, _, _ in sc], "want": [h for h, _, _ in e1]})
check("C: a different seed gives different hashes", {h for h, _, _ in sc}.isdisjoint({h for h, _, _ in e0}))
print("\n".join(res))
PYEOF
report_py "$SY_TMP/bc.out"
sy_stop_pid "$SY_PID" 10
sy_assert_eq "C: engine exits 0 on SIGTERM" 0 "$?"

sy_finish
