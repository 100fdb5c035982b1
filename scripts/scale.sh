#!/usr/bin/env bash
# The scale benchmarks (DESIGN §7, §8): `manage.py bench_fanout` on the Kite path against the Kite
# simulator over HTTP: first with the memory simulator (`kite_sim --memory-orders`: children's
# orders answered from memory, so the figures measure the engine) with 1,000 and 5,000 children,
# detection by polling and by the order stream; then with the paper-persisting simulator (in the
# bench process, then as a process of its own), then in queue mode across a django-q2 cluster
# with a Redis broker, with 2 and 4 workers. Prints each run's figures and a summary of last lines.
#
# Every run keeps 64 order requests in flight at most (FANOUT_WORKERS; in queue mode 64 / K per
# qcluster worker): one simulator process is the broker for every child, and more concurrency only
# queues requests in it until the client's timeout turns them into unknown outcomes.
#
# Everything is throwaway and on 127.0.0.1 only: Redis (scripts/redis_env.sh, installed with
# apt-get if missing), a PostgreSQL cluster (installed with apt-get if missing; SCALE_DB=sqlite uses
# a SQLite file in WAL mode instead), the benchmark's own database, generated credentials.
#
#   scripts/scale.sh
#   SCALE_MEMORY_CHILDREN="1000 5000" SCALE_HTTP_CHILDREN="1000 5000" SCALE_SIM_PROCESS_CHILDREN=1000 SCALE_QUEUE_CHILDREN=1000 \
#     SCALE_QUEUE_WORKERS="2 4" SCALE_QUEUE_SHARDS= SCALE_IN_FLIGHT=64 SCALE_LATENCY_MS=50 \
#     SCALE_DB=postgres scripts/scale.sh
#   (an empty list skips those runs: SCALE_HTTP_CHILDREN= SCALE_SIM_PROCESS_CHILDREN= runs queue mode only)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

# Always a Redis of our own: a bench must never enqueue into a real cluster's queue.
if [[ -z ${PMS_SCALE_IN_REDIS_ENV:-} ]]; then
  PMS_SCALE_IN_REDIS_ENV=1 exec scripts/redis_env.sh "$0" "$@"
fi

MEMORY_CHILDREN=${SCALE_MEMORY_CHILDREN-1000 5000}
HTTP_CHILDREN=${SCALE_HTTP_CHILDREN-1000 5000}
SIM_PROCESS_CHILDREN=${SCALE_SIM_PROCESS_CHILDREN-1000}
IN_FLIGHT=${SCALE_IN_FLIGHT:-64}
QUEUE_CHILDREN=${SCALE_QUEUE_CHILDREN:-1000}
QUEUE_WORKERS=${SCALE_QUEUE_WORKERS-2 4}
QUEUE_SHARDS=${SCALE_QUEUE_SHARDS:-}  # FANOUT_SHARDS; empty: one shard per worker
LATENCY_MS=${SCALE_LATENCY_MS:-50}
DB=${SCALE_DB:-postgres}

log() { printf '[scale] %s\n' "$*" >&2; }

workdir=$(mktemp -d "${TMPDIR:-/tmp}/pms-scale.XXXXXX")
pg_bin=
pg_started=0
cleanup() {
  local status=$?
  if [[ $pg_started -eq 1 ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$workdir/pg" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root to run: $*"; return 1
  fi
}
if [[ $(id -u) -eq 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi

find_pg_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    [[ -x $PG_BIN/initdb ]] && { printf '%s\n' "$PG_BIN"; return 0; }
    return 1
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then printf '%s\n' "$dir"; return 0; fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"; return 0
  fi
  return 1
}

free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

start_postgres() {
  if ! pg_bin=$(find_pg_bin); then
    log "PostgreSQL server not found; installing it with apt-get"
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get: install PostgreSQL, set PG_BIN, or use SCALE_DB=sqlite"; exit 1; }
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/pms-no-main.conf >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
    pg_bin=$(find_pg_bin) || { log "PostgreSQL installed but its binaries were not found"; exit 1; }
  fi
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || { log "running as root but there is no 'postgres' user"; exit 1; }
    chown postgres: "$workdir"
  fi
  chmod 700 "$workdir"
  local port
  port=$(free_port)
  as_pg "$pg_bin/initdb" -D "$workdir/pg" -U postgres --auth=trust -E UTF8 --no-locale --no-sync >/dev/null
  # Throwaway: durability off; 127.0.0.1 only; room for the simulator's connection per request
  # plus every worker's.
  as_pg "$pg_bin/pg_ctl" -D "$workdir/pg" -l "$workdir/postgres.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $workdir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || { cat "$workdir/postgres.log" >&2; exit 1; }
  pg_started=1
  "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres pms_scale
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/pms_scale"
  # bench_fanout reports the server's CPU (its postmaster and backends) during the event.
  BENCH_POSTGRES_PID=$(head -n 1 "$workdir/pg/postmaster.pid")
  export BENCH_POSTGRES_PID
  log "$("$pg_bin/postgres" --version) on 127.0.0.1:$port"
}

case $DB in
  postgres) start_postgres ;;
  sqlite) export DATABASE_URL="sqlite:///$workdir/scale.sqlite3"; log "SQLite (WAL) in $workdir" ;;
  *) log "SCALE_DB must be postgres or sqlite, not $DB"; exit 2 ;;
esac

# A throwaway identity for the run: the benchmark's database is created and dropped by bench_fanout.
export DJANGO_SETTINGS_MODULE=pms.settings
export LAB_ENABLED=true  # bench_fanout and kite_sim are commands of the lab app
FIELD_ENCRYPTION_KEY=$("$PYTHON" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
export FIELD_ENCRYPTION_KEY SECRET_KEY
export LOG_LEVEL=${LOG_LEVEL:-WARNING}
unset PMS_FAILPOINTS Q_SYNC

log "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

summary=()
failed=0
run() {
  local label=$1; shift
  local out=$workdir/run.log
  printf '\n== %s ==\n' "$label"
  printf 'load average before the run: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
  local started=$SECONDS status=0
  "$PYTHON" manage.py bench_fanout --latency-ms "$LATENCY_MS" "$@" >"$out" 2>&1 || status=$?
  grep -E '^(run:|event tick phases:|fan-out:|queue:|first pass:|recovery:|simulator:|cpu during|outcomes:|orders:|bench:|cpu per child order:|engine cpu by phase:|detection|sequential loop:|speed-up:|limit for this run:)' "$out" || true
  if [[ $status -ne 0 ]]; then
    failed=1
    log "$label failed ($status) after $((SECONDS - started)) s:"
    tail -n 20 "$out" >&2
    summary+=("$label :: FAILED")
    return 0
  fi
  printf '(%s s in all)\n' "$((SECONDS - started))"
  summary+=("$label :: $(tail -n 1 "$out")")
}

for n in $MEMORY_CHILDREN; do
  for detect in poll stream; do
    run "kite-sim over HTTP, threads mode ($IN_FLIGHT threads), memory simulator, detection by $detect: $n children" \
      --children "$n" --exchange kite-sim --mode threads --sim memory --detect "$detect" --workers "$IN_FLIGHT"
  done
done
for n in $HTTP_CHILDREN; do
  run "kite-sim over HTTP, threads mode ($IN_FLIGHT threads), simulator in the bench process: $n children" \
    --children "$n" --exchange kite-sim --mode threads --sim thread --workers "$IN_FLIGHT"
done
for n in $SIM_PROCESS_CHILDREN; do
  run "kite-sim over HTTP, threads mode ($IN_FLIGHT threads), simulator in its own process: $n children" \
    --children "$n" --exchange kite-sim --mode threads --sim process --workers "$IN_FLIGHT"
done
for k in $QUEUE_WORKERS; do
  pool=$(( IN_FLIGHT / k > 0 ? IN_FLIGHT / k : 1 ))
  shards=${QUEUE_SHARDS:-$k}
  run "kite-sim over HTTP, queue mode, redis broker, $k qcluster workers x $pool threads, $shards shards: $QUEUE_CHILDREN children" \
    --children "$QUEUE_CHILDREN" --exchange kite-sim --mode queue --queue-workers "$k" --workers "$pool" \
    --queue-shards "$shards" --sim "${SCALE_QUEUE_SIM:-memory}"
done

printf '\n== summary (database: %s, latency %s ms, %s cores) ==\n' "$DB" "$LATENCY_MS" "$(nproc)"
printf '%s\n' "${summary[@]}"
exit "$failed"
