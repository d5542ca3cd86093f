#!/usr/bin/env bash
# RDB persistence of the engine against a private redis-server, same data, same run:
# SAVE and BGSAVE time, the file's size, load time at start, and SET throughput
# (redis-benchmark) with and without BGSAVEs running, and the memory those saves cost,
# side by side.
#
#   bench/persistence.sh                 # 1,000,000 keys
#   KEYS=200000 bench/persistence.sh
#   QUICK=1 bench/persistence.sh         # 100,000 keys
#   COHERENT_BIN=target/release/coherent bench/persistence.sh   # skip the build
#
# The keys are `SET key:N value:N` loaded with `redis-cli --pipe`. BGSAVE is timed
# from the command to INFO's rdb_bgsave_in_progress:0 (polled every 10 ms). For the
# throughput under BGSAVE a loop starts a new BGSAVE as soon as the last one ended for
# as long as redis-benchmark runs (SET on random keys of the same key space, 50
# clients, pipeline 1 and 16), so every request competes with a save: Redis's fork
# and copy-on-write against the engine's snapshot walk. Ratios are Redis/engine for
# times and sizes (above 1: the engine is faster or smaller) and engine/Redis for
# throughput (above 1: the engine is faster). Both servers are stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

KEYS=${KEYS:-1000000}
[ "${QUICK:-0}" = 1 ] && KEYS=${KEYS_QUICK:-100000}
N=${N:-500000}
[ "${QUICK:-0}" = 1 ] && N=${N_QUICK:-100000}

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

BIN=${COHERENT_BIN:-$(build_coherent "$ROOT")}
EPORT=$(free_port)
RPORT=$(free_port)
start_engine "$BIN" "$EPORT"
start_redis "$RPORT"
EDIR="$BENCH_TMP/engine"
RDIR="$BENCH_TMP/redis"

LOAD="$BENCH_TMP/load.resp"
python3 - "$KEYS" >"$LOAD" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
buf = []
for i in range(1, n + 1):
    k = b"key:%d" % i
    v = b"value:%d" % i
    buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    if len(buf) >= 10000:
        out.write(b"".join(buf))
        buf.clear()
out.write(b"".join(buf))
PY

now_ms() { date +%s%3N; }

load() {
  local port=$1 out
  redis-cli -p "$port" FLUSHALL >/dev/null
  out=$(redis-cli -p "$port" --pipe <"$LOAD" 2>&1)
  grep -q "errors: 0, replies: $KEYS" <<<"$out" || { echo "load failed on $port: $out" >&2; exit 1; }
}

bgsave_running() {
  redis-cli -p "$1" INFO persistence | tr -d '\r' | grep -q '^rdb_bgsave_in_progress:1'
}

wait_bgsave() {
  while bgsave_running "$1"; do sleep 0.01; done
}

# save_ms PORT: SAVE's wall time.
save_ms() {
  local t0 t1
  t0=$(now_ms)
  [ "$(redis-cli -p "$1" SAVE)" = OK ] || { echo "SAVE failed on $1" >&2; exit 1; }
  t1=$(now_ms)
  echo $((t1 - t0))
}

# bgsave_ms PORT: BGSAVE's wall time, command to completion.
bgsave_ms() {
  local t0 t1
  wait_bgsave "$1"
  t0=$(now_ms)
  redis-cli -p "$1" BGSAVE >/dev/null
  while bgsave_running "$1"; do sleep 0.01; done
  t1=$(now_ms)
  redis-cli -p "$1" INFO persistence | tr -d '\r' | grep -q '^rdb_last_bgsave_status:ok' ||
    { echo "BGSAVE failed on $1" >&2; exit 1; }
  echo $((t1 - t0))
}

# set_rps PORT PIPELINE: redis-benchmark SET "requests-per-second p99-ms".
set_rps() {
  redis-benchmark -p "$1" -t set -n "$N" -r "$KEYS" -c 50 -P "$2" --csv 2>/dev/null |
    awk -F'"' '$2 == "SET" {print $4, $14}' | tail -1
}

# set_rps_under_bgsave PORT PIPELINE PID: the same while BGSAVEs run back to back.
# Also records the memory the saves cost in $BENCH_TMP/mem.PORT (KiB): for the
# engine the peak growth of its resident set over the run (the old entries the
# snapshot serializes before their writes), for Redis the largest copy-on-write size
# its child reported (INFO rdb_last_cow_size), which its fork costs on top of the
# parent.
set_rps_under_bgsave() {
  local port=$1 pid=$3 flag="$BENCH_TMP/saving.$1" loop rps base peak=0 r
  base=$(rss_kib "$pid")
  touch "$flag"
  (
    while [ -e "$flag" ]; do
      redis-cli -p "$port" BGSAVE >/dev/null 2>&1 || true
      while bgsave_running "$port"; do
        r=$(rss_kib "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 0.005
      done
      cow=$(redis-cli -p "$port" INFO persistence | tr -d '\r' | awk -F: '/^rdb_last_cow_size:/ {print int($2 / 1024)}')
      [ "${cow:-0}" -gt "${peakcow:-0}" ] && peakcow=$cow
      echo "$(( peak > base ? peak - base : 0 )) ${peakcow:-0}" >"$BENCH_TMP/mem.$port"
    done
  ) &
  loop=$!
  sleep 0.05
  rps=$(set_rps "$port" "$2")
  rm -f "$flag"
  wait "$loop"
  echo "$rps"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "engine: $BIN on port $EPORT; redis: $(redis-server --version | awk '{print $3}') on port $RPORT"
echo "keys: $KEYS of the form SET key:N value:N; SET benchmark: $N requests, 50 clients, random keys of the same space"
echo

load "$EPORT"
load "$RPORT"
E_SAVE=$(save_ms "$EPORT"); R_SAVE=$(save_ms "$RPORT")
E_SIZE=$(stat -c %s "$EDIR/dump.rdb"); R_SIZE=$(stat -c %s "$RDIR/dump.rdb")
E_BG=$(bgsave_ms "$EPORT"); R_BG=$(bgsave_ms "$RPORT")

# Load time at start: the same files, loaded by a fresh server each.
E_LOAD_PORT=$(free_port)
t0=$(now_ms)
COHERENT_LOG=warn COHERENT_ENGINE_SAVE="" COHERENT_ENGINE_DIR="$EDIR" \
  "$BIN" serve --listen "127.0.0.1:$E_LOAD_PORT" --admin-listen "" >"$BENCH_TMP/engine-load.log" 2>&1 &
STARTED_PIDS+=("$!")
wait_ping "$E_LOAD_PORT"
t1=$(now_ms)
E_LOAD=$((t1 - t0))
[ "$(redis-cli -p "$E_LOAD_PORT" DBSIZE)" = "$KEYS" ] || { echo "engine loaded a different key count" >&2; exit 1; }
R_LOAD_PORT=$(free_port)
t0=$(now_ms)
redis-server --port "$R_LOAD_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$RDIR" --logfile "$BENCH_TMP/redis-load.log" &
STARTED_PIDS+=("$!")
# Redis answers -LOADING while loading: wait for DBSIZE.
while [ "$(redis-cli -p "$R_LOAD_PORT" DBSIZE 2>/dev/null)" != "$KEYS" ]; do sleep 0.01; done
t1=$(now_ms)
R_LOAD=$((t1 - t0))

echo "| measure | engine | redis | ratio |"
echo "|---|---:|---:|---:|"
echo "| SAVE ms | $E_SAVE | $R_SAVE | $(ratio "$R_SAVE" "$E_SAVE") |"
echo "| BGSAVE ms (to completion) | $E_BG | $R_BG | $(ratio "$R_BG" "$E_BG") |"
echo "| RDB size bytes | $E_SIZE | $R_SIZE | $(ratio "$R_SIZE" "$E_SIZE") |"
echo "| load at start ms (process start to all keys) | $E_LOAD | $R_LOAD | $(ratio "$R_LOAD" "$E_LOAD") |"
for P in 1 16; do
  read -r E_IDLE E_IDLE99 <<<"$(set_rps "$EPORT" "$P")"
  read -r R_IDLE R_IDLE99 <<<"$(set_rps "$RPORT" "$P")"
  read -r E_BUSY E_BUSY99 <<<"$(set_rps_under_bgsave "$EPORT" "$P" "$ENGINE_PID")"
  read -r R_BUSY R_BUSY99 <<<"$(set_rps_under_bgsave "$RPORT" "$P" "$REDIS_PID")"
  read -r E_MEM _ <"$BENCH_TMP/mem.$EPORT"
  read -r _ R_MEM <"$BENCH_TMP/mem.$RPORT"
  echo "| SET rps, pipeline $P, no save | $E_IDLE | $R_IDLE | $(ratio "$E_IDLE" "$R_IDLE") |"
  echo "| SET rps, pipeline $P, during BGSAVEs | $E_BUSY | $R_BUSY | $(ratio "$E_BUSY" "$R_BUSY") |"
  echo "| SET p99 ms, pipeline $P, no save | $E_IDLE99 | $R_IDLE99 | $(ratio "$R_IDLE99" "$E_IDLE99") |"
  echo "| SET p99 ms, pipeline $P, during BGSAVEs | $E_BUSY99 | $R_BUSY99 | $(ratio "$R_BUSY99" "$E_BUSY99") |"
  echo "| extra memory of the saves KiB, pipeline $P (engine: peak RSS growth; Redis: largest child COW) | $E_MEM | $R_MEM | $(ratio "$R_MEM" "$E_MEM") |"
done
echo
echo "ratios: Redis/engine for times, sizes and p99, engine/Redis for throughput (above 1: the engine is ahead)"
