#!/usr/bin/env bash
# EVALSHA throughput and latency of the engine against a private redis-server, with
# redis-benchmark, on this machine's loopback only.
#
#   bench/scripting.sh             # 200,000 calls per test, 50 clients
#   N=50000 bench/scripting.sh     # calls per test
#   QUICK=1 bench/scripting.sh     # a short run (20,000 calls)
#   TESTS=rmw,leaseget bench/scripting.sh
#
# The scripts, loaded with SCRIPT LOAD on both servers (same SHA-1) and called with
# EVALSHA:
#   noop          `return 1`: the cost of a script call itself.
#   rmw           a read-modify-write: GET a random key, add 1 in Lua, SET it back.
#                 After the run the values must add up to the calls made (each call
#                 is atomic), checked on both servers.
#   leaseget      the cache-aside library's LEASEGET (cache-aside/src/scripts.rs, read
#                 from there) on random cold keys: GET misses, then the lease is
#                 granted (HEXISTS, TIME, DEL, HSET, PEXPIRE) or the caller told to wait
#                 (HEXISTS, PTTL).
#   leaseget_hit  the same script on one key that holds a value: GET hits, returns.
#
# Each test runs on the engine then on Redis (alternating, so drift on the machine
# hits both alike), with pipeline 1 and 16, the same redis-benchmark flags for both.
# A test whose probe call does not answer as expected shows n/a. Prints `uptime`
# before and after (the machine may be shared) and a markdown table. Both servers are
# started on free ports and stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

N=${N:-200000}
[ "${QUICK:-0}" = 1 ] && N=${N_QUICK:-20000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-noop,rmw,leaseget,leaseget_hit}
PIPELINES=${PIPELINES:-1 16}
KEYSPACE=100000

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

# The library's LEASEGET, as its source holds it (one place for the script's text).
LEASEGET=$(python3 - "$ROOT/cache-aside/src/scripts.rs" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
m = re.search(r'pub const LEASEGET: &str = r#"(.*?)"#;', src, re.S)
if not m:
    sys.exit("LEASEGET not found in " + sys.argv[1])
print(m.group(1).strip())
PY
)
RMW="local v = redis.call('GET', KEYS[1]) local n = (tonumber(v) or 0) + 1 redis.call('SET', KEYS[1], n) return n"
NOOP="return 1"

BIN=$(build_coherent "$ROOT")
EPORT=$(free_port)
RPORT=$(free_port)
start_engine "$BIN" "$EPORT"
start_redis "$RPORT"

body() {
  case $1 in
    noop) printf '%s' "$NOOP" ;;
    rmw) printf '%s' "$RMW" ;;
    leaseget | leaseget_hit) printf '%s' "$LEASEGET" ;;
  esac
}

# The EVALSHA arguments after the SHA-1 (redis-benchmark fills __rand_int__, a new
# number for each occurrence).
call_args() {
  case $1 in
    noop) echo "0" ;;
    rmw) echo "1 bench:rmw:__rand_int__" ;;
    leaseget) echo "2 bench:lg:__rand_int__ {bench:lg:__rand_int__}:lease 10000 __rand_int__" ;;
    leaseget_hit) echo "2 bench:hot {bench:hot}:lease 10000 7" ;;
  esac
}

# The probe: one call with fixed arguments and the first line of its expected answer.
probe_args() {
  case $1 in
    noop) echo "0" ;;
    rmw) echo "1 bench:probe:rmw" ;;
    leaseget) echo "2 bench:probe:lg {bench:probe:lg}:lease 10000 42" ;;
    leaseget_hit) echo "2 bench:hot {bench:hot}:lease 10000 7" ;;
  esac
}
probe_expect() {
  case $1 in
    noop | rmw) echo "1" ;;
    leaseget) echo "lease" ;;
    leaseget_hit) echo "value" ;;
  esac
}

# load PORT TEST: SCRIPT LOAD; prints the SHA-1.
load() {
  redis-cli -p "$1" SCRIPT LOAD "$(body "$2")"
}

# setup PORT TEST: what a test needs in place after FLUSHALL.
setup() {
  if [ "$2" = leaseget_hit ]; then
    redis-cli -p "$1" SET bench:hot cached-value >/dev/null
  fi
}

# run PORT TEST PIPELINE: prints "rps p99" of the test's CSV row, or "n/a n/a".
run() {
  local - port=$1 t=$2 p=$3 sha out csv row
  set -f
  redis-cli -p "$port" FLUSHALL >/dev/null
  setup "$port" "$t"
  sha=$(load "$port" "$t")
  if [ "$sha" != "$(load "$RPORT" "$t")" ]; then
    echo "SHA-1 differs from Redis's for $t: $sha" >&2
    echo "n/a n/a"
    return
  fi
  # shellcheck disable=SC2046
  out=$(redis-cli -p "$port" EVALSHA "$sha" $(probe_args "$t") 2>&1 | head -n 1)
  if [ "$out" != "$(probe_expect "$t")" ]; then
    echo "probe of $t on port $port answered: $out" >&2
    echo "n/a n/a"
    return
  fi
  redis-cli -p "$port" FLUSHALL >/dev/null
  setup "$port" "$t"
  # shellcheck disable=SC2046
  csv=$(timeout 600 redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$p" -r "$KEYSPACE" --csv \
    EVALSHA "$sha" $(call_args "$t") 2>"$BENCH_TMP/bench.err") || {
    echo "n/a n/a"
    return
  }
  row=$(printf '%s\n' "$csv" | grep -v '^"test"' | tail -n 1)
  if [ -z "$row" ] || grep -qi 'error' "$BENCH_TMP/bench.err"; then
    sed -n 1,3p "$BENCH_TMP/bench.err" >&2
    echo "n/a n/a"
    return
  fi
  if [ "$t" = rmw ]; then
    # Every call added 1 to one key: the values add up to the calls made.
    local sum
    sum=$(redis-cli -p "$port" EVAL "local s = 0 for _, k in ipairs(redis.call('KEYS', 'bench:rmw:*')) do s = s + tonumber(redis.call('GET', k)) end return s" 0)
    if [ "$sum" != "$N" ]; then
      echo "rmw on port $port: values add up to $sum, not $N" >&2
      echo "n/a n/a"
      return
    fi
  fi
  csv_rps_p99 "$row"
}

echo "engine: $BIN on port $EPORT (pid $ENGINE_PID); redis: $(redis-server --version | awk '{print $3}') on port $RPORT (pid $REDIS_PID)"
echo "calls per test: $N, clients: $CLIENTS, keyspace: $KEYSPACE"
echo "load before: $(uptime)"
echo
echo "| script | pipeline | engine rps | redis rps | engine/redis | engine p99 ms | redis p99 ms |"
echo "|---|---:|---:|---:|---:|---:|---:|"
IFS=, read -r -a tests <<<"$TESTS"
for p in $PIPELINES; do
  for t in "${tests[@]}"; do
    compare_row "$t" "$p"
  done
done
echo
echo "load after: $(uptime)"
require_engine_alive
