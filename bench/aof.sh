#!/usr/bin/env bash
# SET throughput with the AOF on, the engine against a private redis-server with the
# same settings, on this machine's loopback only.
#
#   bench/aof.sh                       # 200,000 SETs per run, 50 clients
#   N=50000 bench/aof.sh               # requests per run
#   POLICIES="no everysec always" bench/aof.sh
#
# Both servers start with `appendonly yes` in a directory of their own
# (appendonlydir/ under a temp dir, on the same disk) and the same appendfsync is set
# with CONFIG SET before each run; each run goes to the engine then to Redis
# (alternating, so drift on the machine hits both alike), at pipeline 1 and 16, with
# random keys (-r 100000). Prints a markdown table; both servers are stopped by PID on
# exit. With `always` Redis fsyncs once per event-loop turn; the engine fsyncs once for
# every write that arrived while the previous fsync ran (group commit).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
POLICIES=${POLICIES:-everysec always}
PIPELINES=${PIPELINES:-1 16}

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

# COHERENT_BIN: a coherent binary to use instead of building one.
BIN=${COHERENT_BIN:-$(build_coherent "$ROOT")}
EPORT=$(free_port)
RPORT=$(free_port)
mkdir -p "$BENCH_TMP/engine" "$BENCH_TMP/redis"

COHERENT_LOG=warn COHERENT_ENGINE_DIR="$BENCH_TMP/engine" COHERENT_ENGINE_APPENDONLY=true \
  "$BIN" serve --listen "127.0.0.1:$EPORT" >"$BENCH_TMP/engine.log" 2>&1 &
ENGINE_PID=$!
STARTED_PIDS+=("$ENGINE_PID")
wait_ping "$EPORT"

redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes \
  --dir "$BENCH_TMP/redis" --logfile "$BENCH_TMP/redis.log" &
REDIS_PID=$!
STARTED_PIDS+=("$REDIS_PID")
wait_ping "$RPORT"

# Both must really run an AOF.
for port in "$EPORT" "$RPORT"; do
  redis-cli -p "$port" INFO persistence | grep -q '^aof_enabled:1' || {
    echo "the server on port $port has no AOF on" >&2
    exit 1
  }
done

# run PORT POLICY PIPELINE: prints "rps p99" of the SET row.
run() {
  local port=$1 policy=$2 p=$3 csv row
  redis-cli -p "$port" CONFIG SET appendfsync "$policy" >/dev/null
  redis-cli -p "$port" FLUSHALL >/dev/null
  csv=$(timeout 900 redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$p" -r 100000 --csv -t set 2>/dev/null) || {
    echo "n/a n/a"
    return
  }
  row=$(printf '%s\n' "$csv" | grep -v '^"test"' | tail -n 1)
  csv_rps_p99 "$row"
}

echo "engine: $BIN on port $EPORT (pid $ENGINE_PID); redis: $(redis-server --version | awk '{print $3}') on port $RPORT (pid $REDIS_PID)"
echo "SETs per run: $N, clients: $CLIENTS, random keys: 100000, disk: $(df -h "$BENCH_TMP" | awk 'NR==2 {print $1}')"
echo
echo "| appendfsync | pipeline | engine rps | redis rps | engine/redis | engine p99 ms | redis p99 ms |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for policy in $POLICIES; do
  for p in $PIPELINES; do
    compare_row "$policy" "$p"
  done
done
require_engine_alive
