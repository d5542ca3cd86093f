# Shared helpers of the bench scripts (sourced, not run). Everything started here is
# recorded in STARTED_PIDS and stopped by PID on exit; port 6379 is never used.

STARTED_PIDS=()
BENCH_TMP=$(mktemp -d -t coherent-bench.XXXXXX)

bench_cleanup() {
  local pid
  for pid in "${STARTED_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nothing listens on (asked from the kernel), never 6379.
free_port() {
  local p
  while :; do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    [ "$p" != 6379 ] && { echo "$p"; return; }
  done
}

# Waits until something on 127.0.0.1:$1 answers PING.
wait_ping() {
  local i
  for i in $(seq 1 200); do
    [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "nothing answers PING on port $1" >&2
  return 1
}

# Builds the release binary once; prints its path.
build_coherent() {
  local root=$1
  (cd "$root" && cargo build --release -q -p coherent) >&2
  echo "${CARGO_TARGET_DIR:-$root/target}/release/coherent"
}

# start_engine BIN PORT: starts `coherent serve` without save points and with its
# files in a directory of its own (as start_redis's --save "" --dir), PID in
# ENGINE_PID.
start_engine() {
  mkdir -p "$BENCH_TMP/engine"
  COHERENT_LOG=warn COHERENT_ENGINE_SAVE="" COHERENT_ENGINE_DIR="$BENCH_TMP/engine" \
    "$1" serve --listen "127.0.0.1:$2" --admin-listen "" >"$BENCH_TMP/engine.log" 2>&1 &
  ENGINE_PID=$!
  STARTED_PIDS+=("$ENGINE_PID")
  wait_ping "$2"
}

# start_redis PORT: a private redis-server without persistence, PID in REDIS_PID.
start_redis() {
  mkdir -p "$BENCH_TMP/redis"
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$BENCH_TMP/redis" --logfile "$BENCH_TMP/redis.log" &
  REDIS_PID=$!
  STARTED_PIDS+=("$REDIS_PID")
  wait_ping "$1"
}

# Resident set size of a process in KiB.
rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# "rps p99" of redis-benchmark's --csv result row
# ("NAME","rps","avg","min","p50","p95","p99","max").
csv_rps_p99() {
  printf '%s\n' "$1" | awk -F'","' '{gsub(/"/,"",$0); split($0,f,","); print f[2], f[7]}'
}

# One row of a side-by-side table: the caller's `run PORT LABEL PIPELINE` (which
# prints "rps p99", or "n/a n/a") on the engine ($EPORT), then on Redis ($RPORT).
compare_row() {
  local label=$1 p=$2 e_rps e_p99 r_rps r_p99 ratio=n/a
  read -r e_rps e_p99 <<<"$(run "$EPORT" "$label" "$p")"
  read -r r_rps r_p99 <<<"$(run "$RPORT" "$label" "$p")"
  if [ "$e_rps" != n/a ] && [ "$r_rps" != n/a ]; then
    ratio=$(awk -v a="$e_rps" -v b="$r_rps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  fi
  echo "| $label | $p | $e_rps | $r_rps | $ratio | $e_p99 | $r_p99 |"
}

# Fails the benchmark, with the engine's log, if the engine exited during it.
require_engine_alive() {
  if ! kill -0 "$ENGINE_PID" 2>/dev/null; then
    echo "the engine exited during the benchmark; log:" >&2
    cat "$BENCH_TMP/engine.log" >&2
    exit 1
  fi
}
