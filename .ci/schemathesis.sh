#!/usr/bin/env bash
# Contract test: Schemathesis generates requests from the OpenAPI document
# that the server serves and checks every response against it (no 5xx, a
# documented status, a documented content type, a body that matches the
# schema). It runs against a fresh `subledger serve` on 127.0.0.1 with its
# own temporary data directory and keys, signed in once as a new developer
# and once as the platform.
# Any finding fails the script.
#
# Environment:
#   SCHEMATHESIS_SEED          seed of the generated data (default: fixed, so
#                              runs repeat; set another to explore)
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis/venv"
SEED=${SCHEMATHESIS_SEED:-20260131}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-50}
# Wall-clock limit of both Schemathesis runs together; a run that needs
# longer fails instead of stalling CI.
RUN_SECONDS_MAX=300
# How long the server may take to start listening.
START_SECONDS_MAX=60

echo "== Schemathesis $SCHEMATHESIS_VERSION"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== build subledger"
cargo build --locked --bin subledger
BINARY="$ROOT/target/debug/subledger"

WORK=$(mktemp -d)
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap stop_server EXIT

PLATFORM_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
AES_KEY=$(head -c 32 /dev/urandom | base64)
LOG="$WORK/server.log"

echo "== start subledger serve on 127.0.0.1"
SUBLEDGER_PLATFORM_KEY="$PLATFORM_KEY" SUBLEDGER_AES_KEY="$AES_KEY" RUST_LOG=info \
    "$BINARY" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --workers 2 \
    </dev/null >/dev/null 2>"$LOG" &
SERVER_PID=$!

ADDRESS=""
for _ in $(seq 1 $((START_SECONDS_MAX * 10))); do
    ADDRESS=$(grep -o 'addr=127\.0\.0\.1:[0-9]*' "$LOG" | head -n 1 | cut -d= -f2 || true)
    if [ -n "$ADDRESS" ]; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "subledger serve exited before listening:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.1
done
case "$ADDRESS" in
    127.0.0.1:[0-9]*) ;;
    *)
        echo "subledger serve did not report a 127.0.0.1 address within ${START_SECONDS_MAX}s:" >&2
        cat "$LOG" >&2
        exit 1
        ;;
esac
BASE_URL="http://$ADDRESS"
echo "listening on $BASE_URL"

echo "== create a developer"
DEVELOPER=$(curl --silent --show-error --fail --max-time 10 \
    --user "platform:$PLATFORM_KEY" --data-urlencode "name=Contract test" \
    "$BASE_URL/v1/developers")
read -r DEVELOPER_SID DEVELOPER_KEY < <(printf '%s' "$DEVELOPER" | python3 -c \
    'import json, sys; d = json.load(sys.stdin); print(d["sid"], d["api_key"])')

# Schemathesis keeps its example database in the working directory, so it
# runs from the temporary directory. One worker: with two, Hypothesis calls
# `ast.parse` from two threads, which CPython 3.11 does not support (it
# failed with "AST constructor recursion depth mismatch").
RUNS_STARTED=$SECONDS
run_schemathesis() {
    local credentials=$1
    local seconds_left=$((RUN_SECONDS_MAX - (SECONDS - RUNS_STARTED)))
    if [ "$seconds_left" -le 0 ]; then
        echo "no time left of the ${RUN_SECONDS_MAX}s for this run" >&2
        return 124
    fi
    (
        cd "$WORK"
        timeout --signal=TERM "$seconds_left" "$VENV/bin/schemathesis" --no-color run \
            "$BASE_URL/openapi.json" \
            --auth "$credentials" \
            --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
            --max-examples "$MAX_EXAMPLES" \
            --seed "$SEED" \
            --workers 1 \
            --request-timeout 10 \
            --warnings off
    )
}

# As a developer first, which reaches the most resources, then as the
# platform, which reaches the platform-only routes.
STATUS=0
echo "== schemathesis run as a developer"
run_schemathesis "$DEVELOPER_SID:$DEVELOPER_KEY" || STATUS=$?
if [ "$STATUS" -eq 0 ]; then
    echo "== schemathesis run as the platform"
    run_schemathesis "platform:$PLATFORM_KEY" || STATUS=$?
fi

if [ "$STATUS" -eq 124 ]; then
    echo "schemathesis did not finish within ${RUN_SECONDS_MAX}s" >&2
fi
if [ "$STATUS" -ne 0 ]; then
    echo "== server log (errors)" >&2
    grep -E ' (ERROR|WARN) ' "$LOG" | tail -n 50 >&2 || true
fi
exit "$STATUS"
