#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages, builds the release and the ASan+UBSan
# variants, then runs (under ASan+UBSan) every unit test, the fuzz-corpus replays and the
# integration tests against the sanitizer binary, and the integration tests once more against
# the release binary. Ends with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh || exit 1
make release || exit 1
make asan || exit 1

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
run_ctest() { # dir, label regex
    local out
    out=$(cd "$1" && ctest --output-on-failure --no-tests=error -L "$2" 2>&1)
    local rc=$?
    printf '%s\n' "$out"
    local total fail
    total=$(printf '%s\n' "$out" | sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' | tail -1)
    fail=$(printf '%s\n' "$out" | sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' | tail -1)
    total=${total:-0}
    fail=${fail:-0}
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
    passed=$((passed + total - fail))
    failed=$((failed + fail))
}

echo "== unit tests and fuzz-corpus replay (ASan+UBSan) =="
run_ctest build/asan 'unit|fuzz'
echo "== integration tests (ASan+UBSan binary) =="
run_ctest build/asan 'integration'
echo "== integration tests (release binary) =="
run_ctest build 'integration'

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
