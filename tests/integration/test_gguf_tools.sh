#!/usr/bin/env bash
# test_gguf_tools.sh - `switchyard gguf-synth` and `switchyard gguf-info`: synthesize a tiny model
# in each weight type and read it back with gguf-info, run gguf-info on the real models of
# ../shared/models (when present; $CI makes their absence a failure), and check that a truncated
# copy and a non-GGUF file are refused with exit 1 and a message naming the problem, and run the
# model benchmark (sy-bench-model) once on a tiny synthetic model.
# No network, no servers. Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand from the repo root:
#   bash tests/integration/test_gguf_tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODELS=${SY_MODELS_DIR:-$SY_SOURCE_DIR/../shared/models}

sy_check "gguf-synth --help" "$SY_BIN" gguf-synth --help
sy_check "gguf-info --help" "$SY_BIN" gguf-info --help

for t in F32 F16 BF16 Q8_0 Q4_0; do
    f=$SY_TMP/tiny-$t.gguf
    if "$SY_BIN" gguf-synth --out "$f" --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 \
        --vocab 320 --type "$t" --seed 3 >"$SY_TMP/synth.out" 2>&1; then
        sy_ok "gguf-synth --type $t"
    else
        sy_not_ok "gguf-synth --type $t" "$(cat "$SY_TMP/synth.out")"
        continue
    fi
    if "$SY_BIN" gguf-info "$f" >"$SY_TMP/info.out" 2>&1 &&
        grep -q "GGUF v3" "$SY_TMP/info.out" &&
        grep -q "llama.block_count .* 2$" "$SY_TMP/info.out" &&
        grep -Eq "blk.1.ffn_down.weight +$t +\[128, 64\]" "$SY_TMP/info.out" &&
        grep -Eq "output_norm.weight +F32" "$SY_TMP/info.out" &&
        grep -q "total: 21 tensors" "$SY_TMP/info.out"; then
        sy_ok "gguf-info reads the $t model"
    else
        sy_not_ok "gguf-info reads the $t model" "$(head -c 3000 "$SY_TMP/info.out")"
    fi
done

# a quantized type with an FFN that is not a multiple of 32 is a usage error
"$SY_BIN" gguf-synth --out "$SY_TMP/bad.gguf" --type Q8_0 --ff 100 >/dev/null 2>"$SY_TMP/err"
sy_assert_eq "gguf-synth refuses --ff 100 with Q8_0 (exit 2)" 2 $?
[ ! -e "$SY_TMP/bad.gguf" ] && sy_ok "no output file left behind" ||
    sy_not_ok "no output file left behind"

check_real() { # FILE PATTERN...
    local f=$1
    shift
    if [ ! -r "$f" ]; then
        if [ -n "${CI:-}" ]; then sy_not_ok "model file $f present" "missing and CI is set"; else
            sy_diag "skipping $f: missing"; fi
        return
    fi
    if ! "$SY_BIN" gguf-info --items 3 "$f" >"$SY_TMP/real.out" 2>&1; then
        sy_not_ok "gguf-info $(basename "$f")" "$(head -c 2000 "$SY_TMP/real.out")"
        return
    fi
    local p
    for p in "$@"; do
        if ! grep -Eq -- "$p" "$SY_TMP/real.out"; then
            sy_not_ok "gguf-info $(basename "$f")" "pattern '$p' not found in: $(head -c 2000 "$SY_TMP/real.out")"
            return
        fi
    done
    sy_ok "gguf-info $(basename "$f")"
}

check_real "$MODELS/stories260K.gguf" "GGUF v3, 1185376 bytes, 19 metadata keys, 48 tensors, alignment 32, tensor data at offset 14176" \
    'tokenizer.ggml.tokens +array\[string\] \[512\] "<unk>", "<s>", "</s>", \.\.\.' \
    'token_embd.weight +F32 +\[64, 512\]' "total: 48 tensors"
check_real "$MODELS/llama-2-tiny-random.gguf" "12 tensors" "tensor data at offset 724416" \
    'token_embd.weight +F16 +\[8, 32000\]'
check_real "$MODELS/vocab/ggml-vocab-gpt-2.gguf" " 0 tensors" 'tokenizer.ggml.pre +string +"gpt-2"' \
    'tokenizer.ggml.merges +array\[string\] \[50000\]'

# refusals: truncated copy, not a GGUF file, missing file
if [ -r "$MODELS/stories260K.gguf" ]; then
    head -c 100000 "$MODELS/stories260K.gguf" >"$SY_TMP/trunc.gguf"
    "$SY_BIN" gguf-info "$SY_TMP/trunc.gguf" >/dev/null 2>"$SY_TMP/err"
    rc=$?
    sy_assert_eq "truncated stories260K refused (exit 1)" 1 $rc
    grep -q "past the end of the file" "$SY_TMP/err" && sy_ok "message names the problem" ||
        sy_not_ok "message names the problem" "$(cat "$SY_TMP/err")"
else
    f=$SY_TMP/tiny-F32.gguf
    head -c 3000 "$f" >"$SY_TMP/trunc.gguf"
    "$SY_BIN" gguf-info "$SY_TMP/trunc.gguf" >/dev/null 2>"$SY_TMP/err"
    sy_assert_eq "truncated synthetic model refused (exit 1)" 1 $?
fi
printf 'hello, this is no model\n%.0s' {1..4} >"$SY_TMP/text.gguf"
"$SY_BIN" gguf-info "$SY_TMP/text.gguf" >/dev/null 2>"$SY_TMP/err"
sy_assert_eq "text file refused (exit 1)" 1 $?
grep -q "not a GGUF file" "$SY_TMP/err" && sy_ok "message says not a GGUF file" ||
    sy_not_ok "message says not a GGUF file" "$(cat "$SY_TMP/err")"
"$SY_BIN" gguf-info "$SY_TMP/nope.gguf" >/dev/null 2>"$SY_TMP/err"
sy_assert_eq "missing file refused (exit 1)" 1 $?

# sy-bench-model (the issue-3 benchmark command) runs the engine's path on a synthetic model and
# prints every row with a fraction of a bound; no numbers are asserted (timing is noise here)
BENCH=$(dirname "$SY_BIN")/sy-bench-model
f=$SY_TMP/tiny-Q8_0.gguf
if [ -x "$BENCH" ] && [ -f "$f" ]; then
    if "$BENCH" --threads 1,2 --batch 1,3 --prompt 40 --gen 5 --reps 1 "$f" \
        >"$SY_TMP/bench.out" 2>&1 &&
        grep -Eq "^bounds: read bandwidth [0-9.]+ / [0-9.]+ GB/s" "$SY_TMP/bench.out" &&
        [ "$(grep -Ec "^[12] +(prefill 40|decode batch [13]) +[0-9.]+ +[0-9.]+ +[0-9]+%" \
            "$SY_TMP/bench.out")" = 6 ]; then
        sy_ok "sy-bench-model prints prefill and decode rows for 1 and 2 threads"
    else
        sy_not_ok "sy-bench-model prints prefill and decode rows" "$(cat "$SY_TMP/bench.out")"
    fi
    "$BENCH" --reps 1 "$SY_TMP/text.gguf" >"$SY_TMP/bench.out" 2>&1
    grep -q "cannot open: .*not a GGUF file" "$SY_TMP/bench.out" &&
        sy_ok "sy-bench-model names a bad model file" ||
        sy_not_ok "sy-bench-model names a bad model file" "$(cat "$SY_TMP/bench.out")"
    "$BENCH" --batch 0 "$f" >/dev/null 2>&1
    sy_assert_eq "sy-bench-model refuses --batch 0 (exit 2)" 2 $?
else
    sy_not_ok "sy-bench-model next to $SY_BIN"
fi

sy_finish
