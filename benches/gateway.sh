#!/usr/bin/env bash
# End-to-end load on the gateway, over loopback HTTP/1.1: `http-wasm serve`
# with no filter, then with one no-op filter (the guest calls next) on each
# engine, in front of a trivial upstream (`http-wasm conformance backend`, an
# echo server), all on 127.0.0.1; and the upstream alone, for reference.
# Each row is one wrk run; the gateway logs at `warn` (its access log, at
# `info`, would be measured too). Release build.
#
#   benches/gateway.sh                                   # 10 s a row, 1 wrk thread, 16 connections
#   DURATION=30s THREADS=2 CONNECTIONS=64 benches/gateway.sh
#
# Needs wrk (Debian: `apt-get install -y wrk`). Everything (wrk, gateway,
# upstream) shares the machine's cores: compare rows of one run, on a quiet
# machine (`uptime`), not runs on different machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-16}
UPSTREAM_PORT=${UPSTREAM_PORT:-19381}
GATEWAY_PORT=${GATEWAY_PORT:-19382}

command -v wrk >/dev/null || { echo "gateway.sh: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release --quiet -p http-wasm-cli
bin=$PWD/target/release/http-wasm

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The no-op guest, `benches/src/lib.rs`'s `noop_guest(true)`, as binary:
#   (module (memory (export "memory") 1)
#     (func (export "handle_request") (result i64) (i64.const 1))
#     (func (export "handle_response") (param i32 i32)))
printf '\x00asm\x01\x00\x00\x00\x01\x0a\x02\x60\x00\x01\x7e\x60\x02\x7f\x7f\x00\x03\x03\x02\x00\x01\x05\x03\x01\x00\x01\x07\x2d\x03\x06memory\x02\x00\x0ehandle_request\x00\x00\x0fhandle_response\x00\x01\x0a\x09\x02\x04\x00\x42\x01\x0b\x02\x00\x0b' >"$work/noop.wasm"
"$bin" inspect "$work/noop.wasm" >/dev/null

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "gateway.sh: nothing listens on 127.0.0.1:$1" >&2
    exit 1
}

# load NAME URL: one wrk run, one row.
load() {
    curl -sf -o /dev/null "$2" || { echo "gateway.sh: $1: $2 does not answer 2xx" >&2; exit 1; }
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$2")
    echo "$out" >"$work/$1.txt"
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | paste -sd ';' - || true)
    printf '%-24s %12s %10s %10s%s\n' "$1" "$rps" "$p50" "$p99" "${errors:+  $errors}"
}

# serve NAME [ARGS...]: the gateway with ARGS, loaded, then stopped.
serve() {
    local name=$1
    shift
    "$bin" --log warn serve --listen "127.0.0.1:$GATEWAY_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" "$@" \
        >"$work/$name.log" &
    local pid=$!
    pids+=("$pid")
    wait_port "$GATEWAY_PORT"
    load "$name" "http://127.0.0.1:$GATEWAY_PORT/"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

"$bin" --log warn conformance backend --listen "127.0.0.1:$UPSTREAM_PORT" >/dev/null &
pids+=("$!")
wait_port "$UPSTREAM_PORT"

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET /; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-24s %12s %10s %10s\n' "row" "req/s" "p50" "p99"
load "upstream-alone" "http://127.0.0.1:$UPSTREAM_PORT/"
serve "gateway-no-filter"
for engine in wasmtime wasmer; do
    serve "gateway-noop-$engine" --filter "$work/noop.wasm" --engine "$engine"
done
