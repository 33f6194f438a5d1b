#!/usr/bin/env bash
# Instructions per request of the no-op path (a guest that calls next) and
# of its native baseline, counted by valgrind's callgrind: exact and
# repeatable where timings on a shared machine are not.
#
#   bash benches/instructions.sh [ROW...]
#   (rows: native wasmtime wasmer local-wasmtime local-wasmer; the default:
#   all five. `local-`: through the local service, LocalHttpWasm)
#
# Each row runs twice, with 2,000 and 12,000 requests; the difference over
# 10,000 is one request's count, without the process start, the module's
# compilation or the first requests. Needs valgrind (apt install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt install valgrind)" >&2; exit 1; }
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(native wasmtime wasmer local-wasmtime local-wasmer)

cargo build --release -p http-wasm-benches --example instructions
bin=target/release/examples/instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # ROW N -> total instructions
    # wasmtime and wasmer write machine code into fresh mappings:
    # --smc-check makes valgrind notice code written anywhere.
    valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$out/$1.$2" \
        "$bin" "$1" "$2" >/dev/null 2>"$out/$1.$2.log" || { cat "$out/$1.$2.log" >&2; exit 1; }
    sed -n 's/^summary: //p' "$out/$1.$2"
}

printf '%-15s %s\n' row 'instructions per request'
for row in "${rows[@]}"; do
    low=$(count "$row" 2000)
    high=$(count "$row" 12000)
    printf '%-15s %d\n' "$row" $(((high - low) / 10000))
done
