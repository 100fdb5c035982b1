#!/usr/bin/env bash
# Run the whole test suite against a throwaway PostgreSQL cluster.
#
# Finds the PostgreSQL server binaries (PG_BIN, else the newest /usr/lib/postgresql/<ver>/bin, else
# initdb on PATH), installing the `postgresql` package with apt-get when there are none. Creates a
# cluster in a temporary directory, listening on 127.0.0.1 only on a free port with trust auth,
# runs pytest with DATABASE_URL pointing at it, and stops and deletes the cluster on exit.
#
#   scripts/pg_test.sh [pytest args...]
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PYTEST=${PYTEST:-.venv/bin/pytest}

log() { printf '[pg_test] %s\n' "$*" >&2; }

find_pg_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    [[ -x $PG_BIN/initdb ]] && { printf '%s\n' "$PG_BIN"; return 0; }
    log "PG_BIN=$PG_BIN has no initdb"; return 1
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
    printf '%s\n' "$dir"; return 0
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"; return 0
  fi
  return 1
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root to run: $*"; return 1
  fi
}

if ! pg_bin=$(find_pg_bin); then
  log "PostgreSQL server not found; installing it with apt-get"
  command -v apt-get >/dev/null 2>&1 || { log "no apt-get here: install PostgreSQL or set PG_BIN"; exit 1; }
  # Debian's package would also create and start a "main" cluster on port 5432; we need none.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/pms-no-main.conf >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
  pg_bin=$(find_pg_bin) || { log "PostgreSQL installed but its binaries were not found"; exit 1; }
fi
log "using $("$pg_bin/postgres" --version) from $pg_bin"

# initdb and postgres refuse to run as root: run the cluster as the `postgres` user then.
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || { log "running as root but there is no 'postgres' user"; exit 1; }
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/pms-pg.XXXXXX")
datadir=$workdir/data
started=0
cleanup() {
  local status=$?
  if [[ $started -eq 1 ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$datadir" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ $(id -u) -eq 0 ]]; then
  chown postgres: "$workdir"
fi
chmod 700 "$workdir"

port=${PG_PORT:-$("$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}

as_pg "$pg_bin/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 --no-locale --no-sync >/dev/null
# A throwaway cluster: durability off for speed; nothing but 127.0.0.1, socket in the temp dir.
as_pg "$pg_bin/pg_ctl" -D "$datadir" -l "$workdir/postgres.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -p $port -k $workdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  >/dev/null || { cat "$workdir/postgres.log" >&2; exit 1; }
started=1
log "cluster up on 127.0.0.1:$port ($workdir)"

"$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres pms_test

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/pms_test"
log "DATABASE_URL=$DATABASE_URL"
"$PYTEST" "$@"
