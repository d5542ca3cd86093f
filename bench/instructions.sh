#!/usr/bin/env bash
# Instructions per command of the engine under callgrind: the repeatable measure on a
# shared machine, where wall-clock figures swing (docs/development.md#instruction-counts).
#
#   bench/instructions.sh                    # set,incr,lpush,sadd at pipeline 16 and 1
#   TESTS=incr PIPELINES=16 bench/instructions.sh
#   N=200000 bench/instructions.sh           # requests per test (default 100,000)
#   COHERENT_BIN=/path/to/coherent bench/instructions.sh   # skip the build (another commit)
#   KEEP=1 bench/instructions.sh             # keep the callgrind files (for callgrind_annotate)
#
# For each test: `coherent serve` under `valgrind --tool=callgrind` (whole process, all
# threads), driven by `redis-benchmark -c 50 -n N -P P -t TEST`, stopped by SHUTDOWN
# NOSAVE; prints the process's instructions divided by N (one-time costs of the run,
# such as start-up, are spread over the N commands). User-space instructions only: the
# socket system calls are not counted. Each server runs on a free port with a data
# directory of its own, and is stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

N=${N:-100000}
TESTS=${TESTS:-set,incr,lpush,sadd}
PIPELINES=${PIPELINES:-16 1}

for tool in valgrind redis-cli redis-benchmark python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

BIN=${COHERENT_BIN:-$(build_coherent "$ROOT")}
OUT=${KEEP:+$(mktemp -d -t coherent-callgrind.XXXXXX)}

# count TEST PIPELINE: prints the instructions per command.
count() {
  local t=$1 p=$2 port aport dir pid total i
  port=$(free_port)
  aport=$(free_port)
  dir="$BENCH_TMP/$t-$p"
  mkdir -p "$dir"
  printf '[engine]\nlisten = "127.0.0.1:%s"\ndir = "%s"\nsave = ""\n[admin]\nlisten = "127.0.0.1:%s"\n' \
    "$port" "$dir" "$aport" >"$dir/coherent.toml"
  COHERENT_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$BIN" serve --config "$dir/coherent.toml" >"$dir/log" 2>&1 &
  pid=$!
  STARTED_PIDS+=("$pid")
  # Start-up under valgrind takes a while.
  for i in $(seq 1 600); do
    [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  redis-benchmark -p "$port" -c 50 -n "$N" -P "$p" -t "$t" -q >"$dir/bench" 2>&1
  redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/callgrind.out")
  if [ -z "$total" ]; then
    echo "no callgrind totals for $t (pipeline $p); log:" >&2
    cat "$dir/log" >&2
    exit 1
  fi
  [ -n "$OUT" ] && cp "$dir/callgrind.out" "$OUT/callgrind.$t.p$p.out"
  echo $((total / N))
}

echo "engine: $BIN; requests per test: $N, clients: 50"
echo
echo "| test | pipeline | instructions per command |"
echo "|---|---:|---:|"
IFS=, read -r -a tests <<<"$TESTS"
for p in $PIPELINES; do
  for t in "${tests[@]}"; do
    echo "| $t | $p | $(count "$t" "$p") |"
  done
done
[ -n "$OUT" ] && echo && echo "callgrind files: $OUT"
exit 0
