#!/usr/bin/env bash
# Hit ratio, memory and throughput of a cache under maxmemory: the engine against a
# private redis-server, side by side in one run, on the same trace.
#
# The trace is cache-aside: GET a key; on a miss, SET it to a 1,000-byte value.
# Keys are drawn Zipf(0.99) over 200,000 keys, 400,000 requests, from a fixed seed,
# so both servers see exactly the same requests. Each policy runs on a fresh pair of
# servers with `maxmemory 32mb`, once on the plain trace and once with a scan mixed
# in (one request in five is a key never seen before: a one-hit wonder, as a batch
# job or a crawler makes). Reported per row: the hit ratio (of the Zipf requests),
# resident memory at the end (VmRSS), INFO used_memory, keys held, evictions and
# requests per second as the client saw them; then ratios engine/Redis.
#
#   bench/eviction.sh                    # allkeys-lru allkeys-lfu allkeys-tinylfu
#   POLICIES=allkeys-lru bench/eviction.sh
#   REQUESTS=100000 KEYS=50000 bench/eviction.sh
#   QUICK=1 bench/eviction.sh            # 100,000 requests over 50,000 keys
#
# Redis has no `allkeys-tinylfu` (the engine's admission policy); its Redis column
# shows Redis's best policy on the same trace (allkeys-lfu) for comparison.
# Both servers are started on free ports and stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

REQUESTS=${REQUESTS:-400000}
KEYS=${KEYS:-200000}
if [ "${QUICK:-0}" = 1 ]; then REQUESTS=100000; KEYS=50000; fi
MAXMEMORY=${MAXMEMORY:-32mb}
POLICIES=${POLICIES:-allkeys-lru allkeys-lfu allkeys-tinylfu}

for tool in redis-server redis-cli python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
python3 -c 'import redis' 2>/dev/null || { echo "missing redis-py (pip install redis)" >&2; exit 1; }

BIN=$(build_coherent "$ROOT")

# The driver: replays the trace against one server, prints a JSON line.
DRIVER="$BENCH_TMP/driver.py"
cat >"$DRIVER" <<'EOF'
import bisect, json, random, sys, time
import redis

port, requests, nkeys, scan, pid = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                    sys.argv[4] == "1", int(sys.argv[5]))
rng = random.Random(42)
cdf, acc = [], 0.0
for k in range(1, nkeys + 1):
    acc += 1.0 / k ** 0.99
    cdf.append(acc)
trace = []
scan_next = 0
for i in range(requests):
    if scan and i % 5 == 4:
        trace.append(("scan:%d" % scan_next, False))
        scan_next += 1
    else:
        trace.append(("key:%d" % bisect.bisect_left(cdf, rng.random() * acc), True))

r = redis.Redis(port=port)
value = b"v" * 1000
hits = zipf = 0
start = time.monotonic()
BATCH = 100
for b in range(0, len(trace), BATCH):
    batch = trace[b:b + BATCH]
    p = r.pipeline(transaction=False)
    for k, _ in batch:
        p.get(k)
    got = p.execute()
    p = r.pipeline(transaction=False)
    for (k, counted), v in zip(batch, got):
        if counted:
            zipf += 1
            if v is not None:
                hits += 1
        if v is None:
            p.set(k, value)
    p.execute()
elapsed = time.monotonic() - start
info = r.info()
with open("/proc/%d/status" % pid) as f:
    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) * 1024
print(json.dumps({
    "hit": hits / zipf, "rss": rss, "used": info["used_memory"], "keys": r.dbsize(),
    "evicted": info["evicted_keys"], "rps": len(trace) / elapsed,
}))
EOF

# run_one SERVER(engine|redis) POLICY SCAN: a fresh server, the trace, one JSON line.
run_one() {
  local kind=$1 policy=$2 scan=$3 port pid
  port=$(free_port)
  if [ "$kind" = engine ]; then
    start_engine "$BIN" "$port"
    pid=$ENGINE_PID
  else
    start_redis "$port"
    pid=$REDIS_PID
  fi
  redis-cli -p "$port" CONFIG SET maxmemory "$MAXMEMORY" >/dev/null
  redis-cli -p "$port" CONFIG SET maxmemory-policy "$policy" >/dev/null
  python3 "$DRIVER" "$port" "$REQUESTS" "$KEYS" "$scan" "$pid"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "Cache-aside, Zipf(0.99), $REQUESTS requests over $KEYS keys, 1,000-byte values, maxmemory $MAXMEMORY"
echo
echo "| policy | trace | server | hit ratio | RSS MB | used_memory MB | keys | evicted | req/s |"
echo "|---|---|---|---|---|---|---|---|---|"
RATIOS=()
for policy in $POLICIES; do
  redis_policy=$policy
  [ "$policy" = allkeys-tinylfu ] && redis_policy=allkeys-lfu
  for scan in 0 1; do
    trace=plain
    [ "$scan" = 1 ] && trace="+scan"
    e=$(run_one engine "$policy" "$scan")
    r=$(run_one redis "$redis_policy" "$scan")
    python3 - "$policy" "$redis_policy" "$trace" "$e" "$r" <<'EOF'
import json, sys
policy, rpolicy, trace, e, r = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
def row(server, p, d):
    print("| %s | %s | %s | %.3f | %.1f | %.1f | %d | %d | %.0f |" % (
        p, trace, server, d["hit"], d["rss"] / 2**20, d["used"] / 2**20, d["keys"], d["evicted"], d["rps"]))
row("engine", policy, e)
row("redis", rpolicy, r)
print("| %s | %s | engine/redis | %.3f | %.2f | %.2f | %.2f | | %.2f |" % (
    policy, trace, e["hit"] / r["hit"], e["rss"] / r["rss"], e["used"] / r["used"],
    e["keys"] / r["keys"], e["rps"] / r["rps"]))
EOF
  done
done
