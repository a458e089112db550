#!/usr/bin/env bash
# The one test command: checks what the tests need, starts Redis and
# PostgreSQL when they are installed but down, builds the plugins the tests
# load, then runs every test of the workspace against the real servers.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -p sec-audit-store   # extra arguments go to cargo test
#
# Environment: SEC_AUDIT_TEST_REDIS_URL (default redis://127.0.0.1:6379),
# SEC_AUDIT_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."

export SEC_AUDIT_TEST_REDIS_URL="${SEC_AUDIT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export SEC_AUDIT_TEST_DATABASE_URL="${SEC_AUDIT_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"

die() { echo "test.sh: $*" >&2; exit 1; }
say() { echo "test.sh: $*" >&2; }

command -v cargo >/dev/null || die "cargo is not installed (install Rust with rustup)"

# host and port of a URL like scheme://[user@]host:port/...
host_of() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; echo "${u%%:*}"; }
port_of() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; [[ "$u" == *:* ]] && echo "${u##*:}" || echo "$2"; }
reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
wait_for() { for _ in $(seq 1 30); do reachable "$1" "$2" && return 0; sleep 0.5; done; return 1; }

# libpq: diesel's Postgres backend links against it.
if ! { pkg-config --exists libpq 2>/dev/null || ls /usr/lib/*/libpq.so >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing libpq-dev (needed to link the Postgres store)"
    apt-get update -qq && apt-get install -y -qq libpq-dev >/dev/null || die "could not install libpq-dev"
  else
    die "libpq (libpq-dev) is missing: install it to build the Postgres store"
  fi
fi

# nginx: the sec-audit-serve tests run a real nginx (auth_request) in front
# of sec-audit serve. Debian installs it as /usr/sbin/nginx.
if ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing nginx (the serve tests run it in front of sec-audit serve)"
    apt-get update -qq && apt-get install -y -qq nginx >/dev/null || die "could not install nginx"
  else
    die "nginx is missing: install it (apt-get install nginx) to run the sec-audit-serve tests"
  fi
fi

# Caddy: the sec-audit-serve tests run a real Caddy (forward_auth) in front
# of sec-audit serve. Debian installs it as /usr/bin/caddy.
if ! { command -v caddy >/dev/null || [ -x /usr/bin/caddy ]; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing caddy (the serve tests run it in front of sec-audit serve)"
    apt-get update -qq && apt-get install -y -qq caddy >/dev/null || die "could not install caddy"
  else
    die "caddy is missing: install it (apt-get install caddy) to run the sec-audit-serve tests"
  fi
fi

# Chromium and chromedriver: the console tests of sec-audit-serve drive a
# real headless Chromium through chromedriver (WebDriver). Debian installs
# them as /usr/bin/chromium and /usr/bin/chromedriver.
if ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing chromium and chromium-driver (the console tests run them)"
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null \
      || die "could not install chromium and chromium-driver"
  else
    die "chromium or chromedriver is missing: install them (apt-get install chromium chromium-driver) to run the console tests"
  fi
fi

# Redis
rh=$(host_of "$SEC_AUDIT_TEST_REDIS_URL"); rp=$(port_of "$SEC_AUDIT_TEST_REDIS_URL" 6379)
if ! reachable "$rh" "$rp"; then
  if command -v redis-server >/dev/null && [[ "$rh" == 127.0.0.1 || "$rh" == localhost ]]; then
    say "Redis is down on $rh:$rp: starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$rp" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log \
      || die "redis-server is installed but did not start"
    wait_for "$rh" "$rp" || die "Redis did not come up on $rh:$rp"
  else
    die "Redis is not reachable at $SEC_AUDIT_TEST_REDIS_URL and redis-server is not installed (apt-get install redis-server)"
  fi
fi

# PostgreSQL
ph=$(host_of "$SEC_AUDIT_TEST_DATABASE_URL"); pp=$(port_of "$SEC_AUDIT_TEST_DATABASE_URL" 5432)
if ! reachable "$ph" "$pp"; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1 && [[ "$ph" == 127.0.0.1 || "$ph" == localhost ]]; then
    say "PostgreSQL is down on $ph:$pp: starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start \
      || die "PostgreSQL is installed but did not start"
    wait_for "$ph" "$pp" || die "PostgreSQL did not come up on $ph:$pp"
  else
    die "PostgreSQL is not reachable at $SEC_AUDIT_TEST_DATABASE_URL and no local cluster is installed (apt-get install postgresql)"
  fi
fi

# The plugin tests load real .so files: build them first.
say "building plugins"
cargo xtask plugins

say "running the tests"
cargo test --workspace --all-targets --no-fail-fast "$@"
# `--all-targets` leaves out documentation tests: the examples in the docs
# (the plugin SDK's above all) are compiled and run here.
if [ "$#" -eq 0 ]; then
  say "running the documentation tests"
  cargo test --workspace --doc --no-fail-fast
fi
