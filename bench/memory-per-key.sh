#!/usr/bin/env bash
# Memory per key: loads the same small string keys (`SET key:N value:N`, N = 1..KEYS)
# into the engine and into a private redis-server with `redis-cli --pipe`, and reports
# the growth of each process's resident set (VmRSS in /proc/PID/status) per key.
# RSS is used rather than INFO used_memory because the two servers account memory
# differently; it includes allocator slack, so it is what the machine really pays.
#
#   bench/memory-per-key.sh             # 1,000,000 keys
#   KEYS=200000 bench/memory-per-key.sh
#   QUICK=1 bench/memory-per-key.sh     # 100,000 keys
#   MODE=stream bench/memory-per-key.sh # stream entries instead: KEYS entries
#       `XADD events N-0 sensor N temp 21.5` in one stream, bytes per entry
#
# Both servers are started on free ports and stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

KEYS=${KEYS:-1000000}
[ "${QUICK:-0}" = 1 ] && KEYS=${KEYS_QUICK:-100000}

for tool in redis-server redis-cli python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

BIN=$(build_coherent "$ROOT")
EPORT=$(free_port)
RPORT=$(free_port)
start_engine "$BIN" "$EPORT"
start_redis "$RPORT"

# The load, in RESP, generated once and fed to both servers identically.
LOAD="$BENCH_TMP/load.resp"
MODE=${MODE:-string}
python3 - "$KEYS" "$MODE" >"$LOAD" <<'EOF'
import sys
n = int(sys.argv[1])
stream = sys.argv[2] == "stream"
out = sys.stdout.buffer
buf = []
def resp(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
for i in range(1, n + 1):
    if stream:
        buf.append(resp(b"XADD", b"events", b"%d-0" % i, b"sensor", b"%d" % i, b"temp", b"21.5"))
    else:
        k = b"key:%d" % i
        v = b"value:%d" % i
        buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    if len(buf) >= 10000:
        out.write(b"".join(buf))
        buf.clear()
out.write(b"".join(buf))
EOF

# measure NAME PORT PID: loads the keys and prints one table row.
measure() {
  local name=$1 port=$2 pid=$3 before after out dbsize
  redis-cli -p "$port" FLUSHALL >/dev/null
  sleep 0.5
  before=$(rss_kib "$pid")
  out=$(redis-cli -p "$port" --pipe <"$LOAD" 2>&1)
  if ! grep -q "errors: 0, replies: $KEYS" <<<"$out"; then
    echo "$name: the load failed: $out" >&2
    return 1
  fi
  sleep 0.5
  after=$(rss_kib "$pid")
  if [ "$MODE" = stream ]; then
    dbsize=$(redis-cli -p "$port" XLEN events)
  else
    dbsize=$(redis-cli -p "$port" DBSIZE)
  fi
  if [ "$dbsize" != "$KEYS" ]; then
    echo "$name: DBSIZE is $dbsize after loading $KEYS keys" >&2
    return 1
  fi
  awk -v n="$name" -v b="$before" -v a="$after" -v k="$KEYS" 'BEGIN {
    printf "| %s | %d | %.1f | %.1f | %.1f |\n", n, k, b / 1024, a / 1024, (a - b) * 1024 / k
  }'
}

echo "engine: $BIN on port $EPORT (pid $ENGINE_PID); redis: $(redis-server --version | awk '{print $3}') on port $RPORT (pid $REDIS_PID)"
if [ "$MODE" = stream ]; then
  echo "entries: $KEYS of the form XADD events N-0 sensor N temp 21.5"
  echo
  echo "| server | entries | RSS before MiB | RSS after MiB | bytes per entry |"
else
  echo "keys: $KEYS of the form SET key:N value:N"
  echo
  echo "| server | keys | RSS before MiB | RSS after MiB | bytes per key |"
fi
echo "|---|---:|---:|---:|---:|"
measure engine "$EPORT" "$ENGINE_PID"
measure redis "$RPORT" "$REDIS_PID"
