#!/usr/bin/env bash
# The binlog connector's two figures, against a private MariaDB (started by the
# tests on a free port with their own datadir, stopped by PID) and the embedded
# engine:
#
#   (a) commit-to-delete lag p50/p99/max at a steady write rate
#       (RATE row changes/s for SECS seconds, BATCH rows per transaction);
#   (b) catch-up throughput in row events/s over a backlog of ROWS row changes.
#
#   bench/binlog-lag.sh                       # 5,000/s for 20 s; 1,000,000-row backlog
#   RATE=10000 SECS=10 ROWS=2000000 bench/binlog-lag.sh
#   ONLY=lag bench/binlog-lag.sh              # or ONLY=catchup
#
# How lag is measured (connectors/src/binlog/integration_tests.rs,
# commit_to_delete_lag): every row of app.users has a key user:{id} in the engine;
# a writer in the same process runs autocommit UPDATEs of BATCH rows, paced to
# RATE, and notes when each returns; a KeyHook on the engine notes when each key is
# deleted. Both times come from one monotonic clock, so the lag needs no clock sync.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export COHERENT_BENCH_RATE=${RATE:-5000}
export COHERENT_BENCH_SECS=${SECS:-20}
export COHERENT_BENCH_BATCH=${BATCH:-10}
export COHERENT_BENCH_ROWS=${ROWS:-1000000}
ONLY=${ONLY:-all}

for tool in mariadbd mariadb-install-db mariadb cargo; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

run() {
  cargo test --release -q -p coherent-connectors --lib "$1" -- --ignored --exact --nocapture --test-threads=1 2>&1 |
    grep -E '^(lag|catch-up):|panicked|FAILED' || true
}

echo "MariaDB $(mariadbd --version | awk '{print $3}'), $(nproc) cores, embedded engine target"
if [ "$ONLY" = all ] || [ "$ONLY" = lag ]; then
  run binlog::integration_tests::commit_to_delete_lag
fi
if [ "$ONLY" = all ] || [ "$ONLY" = catchup ]; then
  run binlog::integration_tests::catch_up_throughput
fi
