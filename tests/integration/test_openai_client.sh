#!/usr/bin/env bash
# test_openai_client.sh - the official OpenAI Node client (npm "openai", pinned in
# tests/integration/node/package.json) against `switchyard engine --sim` on 127.0.0.1: runs
# `npm install` once if node_modules is missing, then tests/integration/node/openai_client.mjs.
# Run by ctest (env SY_BIN, SY_SOURCE_DIR) or by hand from the repo root:
#   bash tests/integration/test_openai_client.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_DIR=$SY_SOURCE_DIR/tests/integration/node
MODEL=sim/openai-client-test

sy_node_deps "$NODE_DIR"
sy_check "openai npm package is installed" test -f "$NODE_DIR/node_modules/openai/package.json"

sy_start_engine main --served-model-name "$MODEL" --max-model-len 2048 --sim-speed 0 --log-level warn
ENGINE_PID=$SY_PID

# the client's own output is TAP-like; its final line is "N passed, M failed"
timeout 240 node "$NODE_DIR/openai_client.mjs" "$SY_URL/v1" "$MODEL" >"$SY_TMP/node.out" 2>&1
rc=$?
sed 's/^/    /' "$SY_TMP/node.out"
LAST=$(tail -n 1 "$SY_TMP/node.out")
if [ $rc -eq 0 ] && [[ $LAST =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
    sy_ok "official OpenAI client: $LAST"
else
    sy_not_ok "official OpenAI client (exit $rc): $LAST"
fi

sy_check "engine alive after the client run" sy_alive "$ENGINE_PID"
sy_stop_pid "$ENGINE_PID" 10
sy_assert_eq "engine: SIGTERM exits 0" 0 "$?"
sy_finish
