#!/usr/bin/env bash
# Services the test suite needs besides Node, all from Debian's packages: PostgreSQL 15+ (store
# tests), redis-server and haproxy (cluster tests), chromium (operator console tests).
#
#   bash scripts/test-services.sh install   # installs whatever of those is missing; idempotent,
#                                           # apt-get update only if needed; never starts a system service
#   bash scripts/test-services.sh start DIR # a PRIVATE server in DIR (initdb, free port, socket in DIR,
#                                           # fsync off); prints its URL. For trying things by hand.
#   bash scripts/test-services.sh stop DIR  # stops it (immediate) and removes DIR
#
# The tests themselves start their own private server (test/helpers/postgres.ts); this script
# only makes sure the binaries are there. Never the system service, never a fixed port.
set -euo pipefail

bin_dir() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
    return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get install with policy-rc.d 101 in place, so the packages never start their system
# services: the tests start private instances only, nothing of ours listens on 5432 or 6379.
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show "$1" >/dev/null 2>&1; then as_root apt-get update -qq; fi
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && created_policy=1
  fi
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ "$created_policy" = 1 ]; then as_root rm -f "$policy"; fi
}

install_others() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  [ -x /usr/bin/chromium ] || missing+=(chromium fonts-noto-cjk)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
  echo "redis-server: $(/usr/bin/redis-server --version | cut -d' ' -f3)"
  echo "haproxy: $(/usr/sbin/haproxy -v | head -1 | cut -d' ' -f3)"
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -1)"
}

install() {
  install_others
  if dir=$(bin_dir); then
    echo "PostgreSQL binaries: $dir ($("$dir/postgres" --version))"
  else
    echo "no initdb found: installing the Debian package postgresql" >&2
    apt_install postgresql
    dir=$(bin_dir) || { echo "postgresql installed but no initdb found" >&2; exit 1; }
    echo "PostgreSQL binaries: $dir ($("$dir/postgres" --version))"
  fi
  # initdb refuses root: as root the private servers run as the postgres system user.
  if [ "$(id -u)" = 0 ] && ! getent passwd postgres >/dev/null; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
}

run_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=${1:?usage: start DIR}
  local bin; bin=$(bin_dir) || { echo "no initdb: run $0 install" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(readlink -f "$dir")
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  run_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >/dev/null
  local port
  port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
  run_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
  local dir=${1:?usage: stop DIR}
  local bin; bin=$(bin_dir)
  run_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  bin-dir) bin_dir ;;
  *) echo "usage: $0 install | start DIR | stop DIR | bin-dir" >&2; exit 2 ;;
esac
