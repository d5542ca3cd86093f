#!/usr/bin/env bash
# Replication, the engine against redis-server side by side in one run (each server
# replicating to one of its own kind: engine -> engine, Redis -> Redis).
#
#  1. Full sync of KEYS keys (default 1,000,000 strings of 100 bytes): the primary is
#     filled, a fresh replica runs REPLICAOF; reported: the time until the replica's
#     link is up with every key, and the primary's memory growth meanwhile (peak RSS
#     minus RSS before; Redis forks for the sync, so its child's private memory, the
#     pages copied on write, is added to its figure).
#  2. Lag under load: with the replica online, redis-benchmark runs SETs against the
#     primary (-n LOAD_N -c 50 -P 16); every 20 ms the primary's master_repl_offset
#     and the replica's slave_repl_offset are read; reported: mean and max bytes
#     behind, the time the replica needs to catch up after the load ends, and the
#     primary's throughput with a replica attached.
#
#   bench/replication.sh
#   KEYS=200000 LOAD_N=200000 bench/replication.sh
#
# Both directions' servers start on free ports with their own directories and are
# stopped by PID on exit. Diskless sync without delay on both (repl-diskless-sync yes,
# repl-diskless-sync-delay 0).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

KEYS=${KEYS:-1000000}
LOAD_N=${LOAD_N:-500000}

for tool in redis-server redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done
python3 -c 'import redis' 2>/dev/null || { echo "missing redis-py (pip install redis)" >&2; exit 1; }

BIN=$(build_coherent "$ROOT")

# The data set, once, as a redis-cli --pipe stream.
python3 - "$KEYS" >"$BENCH_TMP/fill.resp" <<'EOF'
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
for i in range(n):
    k = b"key:%010d" % i
    v = (b"%010d" % i) * 10
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
EOF

# start_one KIND PORT NAME: a server of KIND (engine|redis), PID printed.
start_one() {
  local kind=$1 port=$2 name=$3 pid
  mkdir -p "$BENCH_TMP/$name"
  if [ "$kind" = engine ]; then
    COHERENT_LOG=warn COHERENT_ENGINE_SAVE="" COHERENT_ENGINE_DIR="$BENCH_TMP/$name" \
      COHERENT_ENGINE_REPL_DISKLESS_SYNC_DELAY=0 \
      "$BIN" serve --listen "127.0.0.1:$port" --admin-listen "" >"$BENCH_TMP/$name.log" 2>&1 &
  else
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$BENCH_TMP/$name" --logfile "$BENCH_TMP/$name.log" \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0 &
  fi
  pid=$!
  STARTED_PIDS+=("$pid")
  wait_ping "$port" >&2
  echo "$pid"
}

# The measuring side: one JSON line per server kind.
MEASURE="$BENCH_TMP/measure.py"
cat >"$MEASURE" <<'EOF'
import json, os, subprocess, sys, threading, time
import redis

kind, pport, rport, ppid, keys, load_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
p = redis.Redis(port=pport)
r = redis.Redis(port=rport)

def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for l in f:
                if l.startswith("VmRSS:"):
                    return int(l.split()[1]) * 1024
    except OSError:
        pass
    return 0

def children_private(pid):
    total = 0
    try:
        kids = open("/proc/%d/task/%d/children" % (pid, pid)).read().split()
    except OSError:
        return 0
    for k in kids:
        try:
            for l in open("/proc/%s/smaps_rollup" % k):
                if l.startswith("Private_Dirty:") or l.startswith("Private_Clean:"):
                    total += int(l.split()[1]) * 1024
        except OSError:
            pass
    return total

# 1. Full sync.
assert p.dbsize() == keys, p.dbsize()
time.sleep(1)
before = rss(ppid)
peak = [before, 0]
stop = False
def sample():
    while not stop:
        peak[0] = max(peak[0], rss(ppid))
        peak[1] = max(peak[1], children_private(ppid))
        time.sleep(0.01)
t = threading.Thread(target=sample); t.start()
start = time.monotonic()
r.execute_command("REPLICAOF", "127.0.0.1", pport)
while True:
    info = r.info("replication")
    if info.get("master_link_status") == "up" and r.dbsize() == keys:
        break
    time.sleep(0.005)
sync_s = time.monotonic() - start
stop = True; t.join()
growth = peak[0] - before + peak[1]

# 2. Lag under load.
def offsets():
    a = p.info("replication")["master_repl_offset"]
    b = r.info("replication")["slave_repl_offset"]
    return a, b
lags = []
bench = subprocess.Popen(["redis-benchmark", "-p", str(pport), "-q", "--csv", "-n", str(load_n),
                          "-c", "50", "-P", "16", "-r", "1000000", "-t", "set"],
                         stdout=subprocess.PIPE, text=True)
while bench.poll() is None:
    a, b = offsets()
    lags.append(max(0, a - b))
    time.sleep(0.02)
out = bench.stdout.read()
rps = 0.0
for line in out.splitlines():
    if line.startswith('"SET"'):
        rps = float(line.split(",")[1].strip('"'))
end = time.monotonic()
while True:
    a, b = offsets()
    if b >= a:
        break
    time.sleep(0.001)
catchup = time.monotonic() - end
print(json.dumps({"kind": kind, "sync_s": sync_s, "growth": growth, "rss_before": before,
                  "lag_mean": sum(lags) / max(1, len(lags)), "lag_max": max(lags or [0]),
                  "catchup_s": catchup, "rps": rps}))
EOF

run_kind() {
  local kind=$1 pport rport ppid
  pport=$(free_port); rport=$(free_port)
  ppid=$(start_one "$kind" "$pport" "$kind-primary")
  start_one "$kind" "$rport" "$kind-replica" >/dev/null
  redis-cli -p "$pport" --pipe <"$BENCH_TMP/fill.resp" >/dev/null
  python3 "$MEASURE" "$kind" "$pport" "$rport" "$ppid" "$KEYS" "$LOAD_N"
  kill "$ppid" 2>/dev/null || true
}

echo "replication: $KEYS keys, $LOAD_N SETs of load (redis-benchmark -c 50 -P 16)" >&2
E=$(run_kind engine)
R=$(run_kind redis)
python3 - "$E" "$R" <<'EOF'
import json, sys
e, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
MB = 2 ** 20
print("| figure | engine | Redis 7.0 | engine/Redis |")
print("|---|---|---|---|")
def row(name, key, scale=1.0, fmt="%.2f", better="lower"):
    a, b = e[key] / scale, r[key] / scale
    ratio = a / b if b else float("inf")
    print("| %s (%s is better) | %s | %s | %.2f |" % (name, better, fmt % a, fmt % b, ratio))
row("full sync, s", "sync_s")
row("primary memory growth during the sync, MB", "growth", MB)
row("mean lag under load, bytes", "lag_mean", 1, "%.0f")
row("max lag under load, bytes", "lag_max", 1, "%.0f")
row("catch-up after the load, s", "catchup_s", 1, "%.3f")
row("SET/s on the primary with a replica", "rps", 1, "%.0f", "higher")
EOF
