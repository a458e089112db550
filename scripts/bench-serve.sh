#!/usr/bin/env bash
# Benchmarks of `sec-audit serve` with wrk on loopback (docs/PERFORMANCE.md,
# "sec-audit serve"): decide on memory and Redis stores, nginx with and
# without auth_request (alternated, same run), ingest events/s.
#
#   cargo build --release -p sec-audit-cli && ./scripts/bench-serve.sh
#
# Needs wrk, nginx, and Redis at SEC_AUDIT_TEST_REDIS_URL (default
# redis://127.0.0.1:6379). DURATION (default 10s) per wrk run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/sec-audit
DURATION=${DURATION:-10s}
REDIS=${SEC_AUDIT_TEST_REDIS_URL:-redis://127.0.0.1:6379}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is missing (apt-get install nginx)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN is missing: cargo build --release -p sec-audit-cli" >&2; exit 1; }
RUN=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
load() { echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"; }

# start_serve NAME EXTRA_TOML: sets PORT
start_serve() {
  local name=$1 extra=$2 port; port=$(free_port)
  cat > "$RUN/$name.toml" <<TOML
enabled = true
trusted_proxy_cidrs = ["127.0.0.1/32"]
trusted_proxy_count = 1
$extra
[[rules]]
builtin = "brute_force_login"
[[rules]]
builtin = "repeated_client_error"
threshold = 20
[serve]
listen = "127.0.0.1:$port"
output = "$RUN/$name.jsonl"
queue_capacity = 100000
TOML
  "$BIN" serve --config "$RUN/$name.toml" >/dev/null 2>"$RUN/$name.err" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
  PORT=$port
}

echo "== decide, memory stores"
start_serve mem ""; P_MEM=$PORT
load; wrk -t2 -c64 -d"$DURATION" --latency -s scripts/wrk/decide.lua "http://127.0.0.1:$P_MEM/v1/decide" | grep -E "Requests/sec|99%|Non-2xx|Socket errors" || true

echo "== decide, Redis stores"
start_serve redis "redis_url = \"$REDIS\"
key_prefix = \"sec_audit_bench_$$\""; P_RED=$PORT
load; wrk -t2 -c64 -d"$DURATION" --latency -s scripts/wrk/decide.lua "http://127.0.0.1:$P_RED/v1/decide" | grep -E "Requests/sec|99%|Non-2xx|Socket errors" || true

echo "== nginx + auth_request vs the same nginx without it (alternated)"
APP=$(free_port); WITH=$(free_port); WITHOUT=$(free_port)
mkdir -p "$RUN/app" "$RUN/with" "$RUN/without"
cat > "$RUN/app/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $RUN/app/nginx.pid; error_log $RUN/app/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $RUN/app/cb; proxy_temp_path $RUN/app/p;
  fastcgi_temp_path $RUN/app/f; uwsgi_temp_path $RUN/app/u; scgi_temp_path $RUN/app/s;
  server { listen 127.0.0.1:$APP; keepalive_requests 100000; location / { return 200 "ok\n"; } } }
CONF
render() { sed -e "s|\${RUN_DIR}|$RUN/$1|g" -e "s|\${LISTEN}|127.0.0.1:$2|g" -e "s|\${APP}|127.0.0.1:$APP|g" \
             -e "s|\${SEC_AUDIT}|127.0.0.1:$P_MEM|g" -e "s|access_log .*;|access_log off;|" \
             examples/proxies/nginx/nginx.conf.template; }
render with "$WITH" > "$RUN/with/nginx.conf"
render without "$WITHOUT" | grep -v -E '^\s*(auth_request|auth_request_set|error_page) ' \
  | sed -e 's/\$sec_audit_[a-z_]*/""/g' > "$RUN/without/nginx.conf"
for d in app with without; do "$NGINX" -p "$RUN/$d" -e "$RUN/$d/error.log" -c "$RUN/$d/nginx.conf" >/dev/null 2>&1 & PIDS+=($!); done
wait_http "http://127.0.0.1:$WITH/"; wait_http "http://127.0.0.1:$WITHOUT/"
for round in 1 2; do
  for side in without with; do
    port=$([ $side = with ] && echo "$WITH" || echo "$WITHOUT")
    echo "-- round $round, nginx $side auth_request"; load
    wrk -t2 -c64 -d"$DURATION" --latency "http://127.0.0.1:$port/page" | grep -E "Requests/sec|99%|Non-2xx|Socket errors" || true
  done
done

echo "== ingest, POST /v1/events (100 lines per request), memory stores"
before=$(curl -fsS "http://127.0.0.1:$P_MEM/metrics" | awk '/^sec_audit_egress_processed_total/ {print $2}')
load; start=$(date +%s.%N)
wrk -t2 -c16 -d"$DURATION" -s scripts/wrk/events.lua "http://127.0.0.1:$P_MEM/v1/events" | grep -E "Requests/sec|Non-2xx|Socket errors|requests in" || true
end=$(date +%s.%N)
sleep 1
after=$(curl -fsS "http://127.0.0.1:$P_MEM/metrics" | awk '/^sec_audit_egress_processed_total/ {print $2}')
curl -fsS "http://127.0.0.1:$P_MEM/metrics" | grep -E '^sec_audit_ingest_events_total|^sec_audit_queue_depth' || true
python3 -c "print(f'egress processed: {($after-${before:-0})} events, {($after-${before:-0})/($end-$start):.0f} events/s over the run')"
