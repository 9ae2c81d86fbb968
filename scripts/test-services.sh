#!/usr/bin/env bash
# Services the test suite needs besides Node: PostgreSQL 15+ for the PostgreSQL store tests.
#
#   bash scripts/test-services.sh install   # PostgreSQL binaries (Debian package `postgresql`) when
#                                           # no initdb is found; idempotent, apt-get update only if needed
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

install() {
  if dir=$(bin_dir); then
    echo "PostgreSQL binaries: $dir ($("$dir/postgres" --version))"
  else
    echo "no initdb found: installing the Debian package postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when the package is not known yet.
    if ! apt-cache show postgresql >/dev/null 2>&1; then as_root apt-get update -qq; fi
    # policy-rc.d 101 keeps the package from starting the system cluster: the tests start
    # private servers only, and nothing of ours should listen on 5432.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && created_policy=1
    fi
    as_root apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    if [ "$created_policy" = 1 ]; then as_root rm -f "$policy"; fi
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
