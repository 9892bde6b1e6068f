#!/usr/bin/env bash
# bench_model.sh - the CPU inference benchmark of docs/benchmarks.md: writes the synthetic
# models of ../shared/research/machine-anchors.md with `switchyard gguf-synth` (random weights,
# the real 32,000-token SentencePiece vocabulary of ggml-vocab-llama-spm.gguf, untied output),
# then runs sy-bench-model on them and on stories260K: prefill tokens/s of a 512-token prompt,
# decode tokens/s at batch 1 and 16, with 1 and 2 threads, each as a fraction of this machine's
# read-bandwidth or FMA bound.
#
# Usage: scripts/bench_model.sh [--quick] [--models LIST] [-- extra sy-bench-model flags]
#   --quick        110M Q8_0 and stories260K only, fewer decode steps
#   --models LIST  comma-separated from: stories260K,110M-F32,110M-F16,110M-Q8_0,1B-Q8_0,1B-Q4_0
# Environment: SY_BENCH_MODELS (where the synthetic files are kept, default build/bench-models;
# about 2.3 GB for all of them, written once and reused), SY_MODELS_DIR (default ../shared/models).
# Does not: assert targets (the host is shared and noisy: read the ratios of one run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
models_dir=${SY_MODELS_DIR:-$root/../shared/models}
out_dir=${SY_BENCH_MODELS:-$root/build/bench-models}
list="stories260K,110M-F32,110M-F16,110M-Q8_0,1B-Q8_0,1B-Q4_0"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) list="stories260K,110M-Q8_0"; extra+=(--gen 64 --reps 3) ;;
    --models) list=$2; shift ;;
    --) shift; extra+=("$@"); break ;;
    *) echo "usage: scripts/bench_model.sh [--quick] [--models LIST] [-- sy-bench-model flags]" >&2
       exit 2 ;;
    esac
    shift
done

make -s release >/dev/null
vocab=$models_dir/vocab/ggml-vocab-llama-spm.gguf
mkdir -p "$out_dir"
files=()
IFS=, read -ra names <<<"$list"
for m in "${names[@]}"; do
    case "$m" in
    stories260K)
        f=$models_dir/stories260K.gguf
        if [ ! -f "$f" ]; then
            echo "bench_model.sh: $f is missing (set SY_MODELS_DIR); skipping it" >&2
            continue
        fi
        files+=("$f") ;;
    110M-* | 1B-*)
        shape=${m%%-*} type=${m#*-}
        f=$out_dir/synth-$shape-$type.gguf
        if [ ! -f "$f" ]; then
            vflag=()
            if [ -f "$vocab" ]; then
                vflag=(--vocab-from "$vocab")
            else
                echo "bench_model.sh: $vocab is missing; using the placeholder vocabulary" >&2
            fi
            echo "bench_model.sh: writing $f" >&2
            build/switchyard gguf-synth --shape "$shape" --type "$type" "${vflag[@]}" \
                --out "$f.tmp"
            mv "$f.tmp" "$f"
        fi
        files+=("$f") ;;
    *) echo "bench_model.sh: unknown model '$m'" >&2; exit 2 ;;
    esac
done
[ ${#files[@]} -gt 0 ] || { echo "bench_model.sh: no models to run" >&2; exit 1; }
exec build/sy-bench-model "${extra[@]}" "${files[@]}"
