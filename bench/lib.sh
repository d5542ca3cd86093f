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
