#!/usr/bin/env bash
# Throughput and latency of the engine against a private redis-server, with
# redis-benchmark, on this machine's loopback only.
#
#   bench/engine-vs-redis.sh            # 200,000 requests per test, 50 clients
#   N=50000 bench/engine-vs-redis.sh    # requests per test
#   QUICK=1 bench/engine-vs-redis.sh    # a short run (20,000 requests)
#   TESTS=set,get bench/engine-vs-redis.sh
#
# Tests are redis-benchmark's own (-t NAME) or one of the custom commands below
# (pfadd, geoadd, xadd, xreadgroup, xack), sent with random members (-r 100000).
# xreadgroup reads one new entry per call through a consumer group from a stream
# filled beforehand with N entries (IDs 1-0 .. N-0); xack acknowledges random IDs of
# a group whose pending list holds all of them (the two halves of a reliable queue's
# consume step).
#
# Each test runs on the engine then on Redis (alternating, so drift on the machine
# hits both alike), with pipeline 1 and 16. A test whose command the engine does not
# know yet (or answers with errors) shows n/a in the engine column. Prints a markdown
# table. Both servers are started on free ports and stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

N=${N:-200000}
[ "${QUICK:-0}" = 1 ] && N=${N_QUICK:-20000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-set,get,incr,lpush,rpop,sadd,hset,zadd,lrange_100,pfadd,geoadd,xadd,xreadgroup,xack}
PIPELINES=${PIPELINES:-1 16}

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

BIN=$(build_coherent "$ROOT")
EPORT=$(free_port)
RPORT=$(free_port)
start_engine "$BIN" "$EPORT"
start_redis "$RPORT"

# A command that exercises what each test sends, to see if the engine knows it.
probe_cmd() {
  case $1 in
    set) echo "SET bench:probe v" ;;
    get) echo "GET bench:probe" ;;
    incr) echo "INCR bench:probe:n" ;;
    lpush | lrange*) echo "LPUSH bench:probe:l a" ;;
    rpop) echo "RPOP bench:probe:l" ;;
    sadd) echo "SADD bench:probe:s a" ;;
    hset) echo "HSET bench:probe:h f v" ;;
    zadd) echo "ZADD bench:probe:z 1 a" ;;
    pfadd) echo "PFADD bench:probe:hll a" ;;
    geoadd) echo "GEOADD bench:probe:geo 13.361389 38.115556 a" ;;
    xadd | xreadgroup | xack) echo "XLEN bench:probe:stream" ;;
    *) echo "PING" ;;
  esac
}

# The command line of a custom test (one redis-benchmark has no -t for), or nothing.
custom_cmd() {
  case $1 in
    pfadd) echo "PFADD bench:hll element:__rand_int__" ;;
    geoadd) echo "GEOADD bench:geo 13.361389 38.115556 member:__rand_int__" ;;
    xadd) echo "XADD bench:stream * field value:__rand_int__" ;;
    xreadgroup) echo "XREADGROUP GROUP bench c COUNT 1 STREAMS bench:stream >" ;;
    xack) echo "XACK bench:stream bench __rand_int__-0" ;;
  esac
}

# The fill of the stream tests: N entries, a group, and for xack all of them pending.
FILL="$BENCH_TMP/stream.resp"
python3 - "$N" >"$FILL" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
buf = []
for i in range(1, n + 1):
    ident = b"%d-0" % i
    v = b"value:%d" % i
    buf.append(b"*5\r\n$4\r\nXADD\r\n$12\r\nbench:stream\r\n$%d\r\n%s\r\n$5\r\nfield\r\n$%d\r\n%s\r\n"
               % (len(ident), ident, len(v), v))
    if len(buf) >= 10000:
        out.write(b"".join(buf))
        buf.clear()
out.write(b"".join(buf))
PY

# setup PORT TEST: what a test needs in place after FLUSHALL.
setup() {
  case $2 in
    xreadgroup | xack)
      redis-cli -p "$1" --pipe <"$FILL" >/dev/null
      redis-cli -p "$1" XGROUP CREATE bench:stream bench 0 >/dev/null
      ;;
  esac
  if [ "$2" = xack ]; then
    redis-cli -p "$1" XREADGROUP GROUP bench c STREAMS bench:stream ">" >/dev/null
  fi
}

# supported PORT TEST: true unless the server answers the probe (or LRANGE) with an error.
supported() {
  # No globbing of the words of a command line (XADD's `*`).
  local - out
  set -f
  # shellcheck disable=SC2046
  out=$(redis-cli -p "$1" $(probe_cmd "$2") 2>&1) || return 1
  case $out in ERR* | WRONGTYPE*) return 1 ;; esac
  if [[ $2 == lrange* ]]; then
    out=$(redis-cli -p "$1" LRANGE bench:probe:l 0 99 2>&1) || return 1
    case $out in ERR*) return 1 ;; esac
  fi
  return 0
}

# run PORT TEST PIPELINE: prints "rps p99" of the test's own CSV row, or "n/a n/a".
run() {
  local - port=$1 t=$2 p=$3 csv row
  set -f
  if ! supported "$port" "$t"; then
    echo "n/a n/a"
    return
  fi
  redis-cli -p "$port" FLUSHALL >/dev/null
  setup "$port" "$t"
  local what custom
  custom=$(custom_cmd "$t")
  if [ -n "$custom" ]; then
    # shellcheck disable=SC2206
    what=(-r 100000 $custom)
  else
    what=(-t "$t")
  fi
  csv=$(timeout 600 redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" -P "$p" --csv "${what[@]}" 2>"$BENCH_TMP/bench.err") || {
    echo "n/a n/a"
    return
  }
  # The last row is the test itself (lrange_100 first prints its LPUSH fill).
  row=$(printf '%s\n' "$csv" | grep -v '^"test"' | tail -n 1)
  if [ -z "$row" ] || grep -qi 'error' "$BENCH_TMP/bench.err"; then
    echo "n/a n/a"
    return
  fi
  csv_rps_p99 "$row"
}

echo "engine: $BIN on port $EPORT (pid $ENGINE_PID); redis: $(redis-server --version | awk '{print $3}') on port $RPORT (pid $REDIS_PID)"
echo "requests per test: $N, clients: $CLIENTS"
echo
echo "| test | pipeline | engine rps | redis rps | engine/redis | engine p99 ms | redis p99 ms |"
echo "|---|---:|---:|---:|---:|---:|---:|"
IFS=, read -r -a tests <<<"$TESTS"
for p in $PIPELINES; do
  for t in "${tests[@]}"; do
    compare_row "$t" "$p"
  done
done
require_engine_alive
