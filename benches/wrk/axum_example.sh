#!/usr/bin/env bash
# Throughput and outage runs of the axum example (docs/PERFORMANCE.md,
# "Async ingress"). Loopback only; every process it starts is stopped on exit.
#
#   cargo build --release -p sec-audit-enforce --example axum_login
#   benches/wrk/axum_example.sh memory            # memory stores
#   benches/wrk/axum_example.sh redis             # Redis stores, healthy
#   benches/wrk/axum_example.sh frozen [CMD_MS]   # Redis SIGSTOPped at 2 s, SIGCONTed at 7 s
#   benches/wrk/axum_example.sh killed [CMD_MS]   # Redis SIGKILLed at 2 s, restarted at 7 s
#
# CMD_MS: command_timeout_ms of the run (default 500, the configuration's
# default). Each run is `wrk -t2 -c64 -d10s --latency`; outage runs add
# benches/wrk/intervals.lua (completions per 250 ms, statuses).
set -euo pipefail
cd "$(dirname "$0")/../.."
case="${1:?memory|redis|frozen|killed}"
cto="${2:-500}"
bin=target/release/examples/axum_login
[ -x "$bin" ] || { echo "build it first: cargo build --release -p sec-audit-enforce --example axum_login" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is missing" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
rpid=""; apid=""
cleanup() {
  [ -n "$rpid" ] && { kill -CONT "$rpid" 2>/dev/null || true; kill "$rpid" 2>/dev/null || true; }
  [ -n "$apid" ] && { kill -INT "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT

start_redis() {
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  rpid=$!
  for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "private redis-server did not come up" >&2; exit 1
}

{ echo "command_timeout_ms = $cto"; echo "connect_timeout_ms = $cto"; cat sec-audit-enforce/examples/axum_login/sec-audit.toml; } > "$tmp/config.toml"
aport=$(free_port)
env_redis=""
if [ "$case" != memory ]; then
  rport=$(free_port)
  start_redis
  env_redis="redis://127.0.0.1:$rport"
fi
SEC_AUDIT_REDIS_URL="$env_redis" SEC_AUDIT_EXAMPLE_LISTEN="127.0.0.1:$aport" \
  "$bin" "$tmp/config.toml" "$tmp/trail.jsonl" 2>"$tmp/app.err" &
apid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$aport/" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$aport/" >/dev/null || { echo "app did not come up" >&2; cat "$tmp/app.err" >&2; exit 1; }

url="http://127.0.0.1:$aport/"
# CPU time (ms) a process has used so far: less sensitive to the machine's
# load than throughput.
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
app_cpu0=$(cpu_ms "$apid"); redis_cpu0=0; [ -n "$rpid" ] && redis_cpu0=$(cpu_ms "$rpid")
echo "== $case (command_timeout_ms = $cto), load: $(cut -d' ' -f1-3 /proc/loadavg)"
case "$case" in
  memory|redis)
    wrk -t2 -c64 -d10s --latency "$url" | tee "$tmp/wrk.out"
    n=$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")
    app_cpu=$(( $(cpu_ms "$apid") - app_cpu0 ))
    redis_cpu=0; [ -n "$rpid" ] && redis_cpu=$(( $(cpu_ms "$rpid") - redis_cpu0 ))
    awk -v a="$app_cpu" -v r="$redis_cpu" -v n="$n" 'BEGIN { printf "cpu per request: app %.1f us, redis-server %.1f us (%d requests)\n", a * 1000 / n, r * 1000 / n, n }'
    ;;
  frozen)
    ( sleep 2; kill -STOP "$rpid"; sleep 5; kill -CONT "$rpid" ) &
    outage=$!
    wrk -t2 -c64 -d10s --latency -s benches/wrk/intervals.lua "$url"
    wait "$outage"
    ;;
  killed)
    ( sleep 2; kill -KILL "$rpid"; sleep 5; start_redis >/dev/null; echo "$rpid" > "$tmp/rpid" ) &
    outage=$!
    wrk -t2 -c64 -d10s --latency -s benches/wrk/intervals.lua "$url"
    wait "$outage"
    [ -f "$tmp/rpid" ] && rpid=$(cat "$tmp/rpid")
    ;;
  *) echo "unknown case $case" >&2; exit 2 ;;
esac
kill -INT "$apid"; wait "$apid" 2>/dev/null || true; apid=""
grep -h "egress:" "$tmp/app.err" || true
if [ -s "$tmp/trail.jsonl" ]; then
  echo "trail records by type:"
  grep -o '"body":"[^"]*"' "$tmp/trail.jsonl" | sort | uniq -c
  grep -o '"enforcement.fail_mode":"[^"]*"' "$tmp/trail.jsonl" | sort | uniq -c || true
fi
