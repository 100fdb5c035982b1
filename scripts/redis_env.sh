#!/usr/bin/env bash
# Run a command with a throwaway Redis: REDIS_URL points at it while the command runs.
#
# Installs the `redis-server` package with apt-get (after `apt-get update`) when no redis-server is
# on PATH, without letting the package start a system service. Starts redis-server on 127.0.0.1 on
# a free port, with no persistence (no RDB snapshots, no AOF) and its files in a temporary
# directory; stops it and deletes the directory when the command ends (or on Ctrl-C / SIGTERM).
#
#   scripts/redis_env.sh COMMAND [ARGS...]    # exits with COMMAND's status
#   scripts/redis_env.sh --install-only       # just make sure redis-server is installed
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

log() { printf '[redis_env] %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root to run: $*"; return 1
  fi
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || { log "redis-server not found and no apt-get here: install Redis"; return 1; }
  log "redis-server not found; installing it with apt-get"
  # The package would start a system Redis on port 6379; a temporary policy-rc.d forbids that.
  local policy=/usr/sbin/policy-rc.d added=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || status=$?
  if [[ $status -eq 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >&2 || status=$?
  fi
  [[ $added -eq 1 ]] && as_root rm -f "$policy"
  [[ $status -eq 0 ]] || { log "apt-get failed ($status)"; return "$status"; }
  command -v redis-server >/dev/null 2>&1 || { log "redis-server installed but not on PATH"; return 1; }
}

install_redis
if [[ ${1:-} == --install-only ]]; then
  exit 0
fi
[[ $# -gt 0 ]] || { log "usage: scripts/redis_env.sh COMMAND [ARGS...] | --install-only"; exit 2; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/pms-redis.XXXXXX")
redis_pid=
cleanup() {
  local status=$?
  if [[ -n $redis_pid ]] && kill -0 "$redis_pid" 2>/dev/null; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=${REDIS_PORT:-$("$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')}

# Loopback only, no persistence, no background saves; files (if any) stay in the temp directory.
redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --save '' --appendonly no \
  --dir "$workdir" --logfile "$workdir/redis.log" --daemonize no &
redis_pid=$!

ready=0
for _ in $(seq 100); do
  kill -0 "$redis_pid" 2>/dev/null || break
  if "$PYTHON" - "$port" <<'EOF' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
EOF
  then ready=1; break; fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  log "redis-server did not answer on 127.0.0.1:$port"
  cat "$workdir/redis.log" >&2 2>/dev/null || true
  exit 1
fi
log "$(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$port (no persistence, $workdir)"

export REDIS_URL="redis://127.0.0.1:$port/0"
status=0
"$@" || status=$?
exit "$status"
