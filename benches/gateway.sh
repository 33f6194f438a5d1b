#!/usr/bin/env bash
# End-to-end load on the gateway, over loopback HTTP/1.1: `http-wasm serve`
# with no filter, then with one no-op filter (the guest calls next) on each
# engine, reusing instances and with a fresh instance per request, in front
# of a trivial upstream (`http-wasm conformance backend`, an echo server),
# all on 127.0.0.1; the upstream alone, for reference; and nginx as a plain
# reverse proxy in front of the same upstream (2 workers, upstream
# keep-alive), which is what the gateway without a filter competes with.
# Each row is one wrk run; the gateway logs at `warn` (its access log, at
# `info`, would be measured too). Release build.
#
# Columns: requests per second, latency percentiles, and the proxy's CPU
# time (user + system, from /proc, all its processes) per request served.
#
#   benches/gateway.sh                                   # 10 s a row, 1 wrk thread, 16 connections
#   DURATION=30s THREADS=2 CONNECTIONS=64 benches/gateway.sh
#   BIN=/tmp/http-wasm-before benches/gateway.sh         # another build of the gateway, not built here
#   WORKERS=1 benches/gateway.sh                         # serve --workers 1 (default: serve's own default)
#
# Needs wrk, and nginx for its row (Debian: `apt-get install -y wrk
# nginx-light`; without nginx its row is skipped). Everything (wrk, proxy,
# upstream) shares the machine's cores: compare rows of one run, on a quiet
# machine (`uptime`), not runs on different machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-16}
UPSTREAM_PORT=${UPSTREAM_PORT:-19381}
GATEWAY_PORT=${GATEWAY_PORT:-19382}
TICKS=$(getconf CLK_TCK)

command -v wrk >/dev/null || { echo "gateway.sh: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    cargo build --release --quiet -p http-wasm-cli
    bin=$PWD/target/release/http-wasm
fi
workers=()
[ -n "${WORKERS:-}" ] && workers=(--workers "$WORKERS")

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

# cpu_ticks PID: user + system clock ticks of PID and its children so far.
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command's
        # closing parenthesis (the command may hold spaces).
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

# load NAME URL [PID]: one wrk run, one row; with PID, the CPU it spent.
load() {
    curl -sf -o /dev/null "$2" || { echo "gateway.sh: $1: $2 does not answer 2xx" >&2; exit 1; }
    local out before=0 after=0
    [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$2")
    [ -n "${3:-}" ] && after=$(cpu_ticks "$3")
    echo "$out" >"$work/$1.txt"
    local rps p50 p99 errors requests cpu=-
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    if [ -n "${3:-}" ] && [ "$requests" -gt 0 ]; then
        cpu=$(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
    fi
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' | paste -sd ';' - || true)
    printf '%-36s %10s %10s %10s %12s%s\n' "$1" "$rps" "$p50" "$p99" "$cpu" "${errors:+  $errors}"
}

# serve NAME [ARGS...]: the gateway with ARGS, loaded, then stopped.
serve() {
    local name=$1
    shift
    "$bin" --log warn serve --listen "127.0.0.1:$GATEWAY_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
        ${workers[@]+"${workers[@]}"} "$@" \
        >"$work/$name.log" &
    local pid=$!
    pids+=("$pid")
    wait_port "$GATEWAY_PORT"
    load "$name" "http://127.0.0.1:$GATEWAY_PORT/" "$pid"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

# nginx: a plain reverse proxy to the same upstream, 2 workers, keep-alive
# to the upstream, no access log.
nginx_row() {
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$GATEWAY_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
    local pid=$!
    pids+=("$pid")
    wait_port "$GATEWAY_PORT"
    load "nginx-proxy" "http://127.0.0.1:$GATEWAY_PORT/" "$pid"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

"$bin" --log warn conformance backend --listen "127.0.0.1:$UPSTREAM_PORT" >/dev/null &
pids+=("$!")
wait_port "$UPSTREAM_PORT"

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET /; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-36s %10s %10s %10s %12s\n' "row" "req/s" "p50" "p99" "cpu/req(us)"
load "upstream-alone" "http://127.0.0.1:$UPSTREAM_PORT/"
if command -v nginx >/dev/null; then nginx_row; else echo "nginx-proxy: skipped, nginx is missing"; fi
serve "gateway-no-filter"
for engine in wasmtime wasmer; do
    serve "gateway-noop-$engine" --filter "$work/noop.wasm" --engine "$engine"
    serve "gateway-noop-$engine-per-request" --filter "$work/noop.wasm" --engine "$engine" --isolation per-request
done
