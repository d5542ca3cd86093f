#!/usr/bin/env bash
# The near cache (issue 17), against a private MariaDB and the `coherent` binary
# tailing its binlog, once with the embedded engine as the cache and once with a
# private redis-server as the target (`kind = "redis"`), side by side in one run:
#
#   (a) the time from a MySQL commit to the near-cache entry being gone: p50/p99/max
#       at RATE_LOW and RATE_HIGH row changes/s for SECS seconds (goal: p99 < 5 ms);
#   (b) a near-cache hit against a shared-cache GET from one task: latency p50/p99
#       and throughput, and their ratios.
#
#   bench/near-cache.sh                         # 1,000/s and 5,000/s for 5 s each
#   RATE_LOW=500 RATE_HIGH=10000 SECS=10 bench/near-cache.sh
#   BUILD_PROFILE=debug bench/near-cache.sh     # no release build (slower figures)
#
# How lag is measured (sidecar/tests/near_race.rs, near_cache_bench): every row that
# will change is first read through a `Cache` with a near cache (so its tracking
# connection holds it); a writer in the same process runs autocommit UPDATEs, one row
# each, paced to the rate, and notes when each returns; a watcher polls the near
# cache and notes when each key left it. One monotonic clock for both; the path is
# commit -> binlog -> coherent -> DEL in the cache -> invalidate push -> near cache.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export COHERENT_BENCH_SECS=${SECS:-5}
export COHERENT_BENCH_RATE_LOW=${RATE_LOW:-1000}
export COHERENT_BENCH_RATE_HIGH=${RATE_HIGH:-5000}
export COHERENT_BENCH_HITS=${HITS:-20000}
PROFILE=${BUILD_PROFILE:-release}

for tool in mariadbd mariadb-install-db mariadb redis-server cargo; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "missing $tool (scripts/install-deps.sh)" >&2; exit 1; }
done

flags=()
[ "$PROFILE" = release ] && flags+=(--release)
echo "MariaDB $(mariadbd --version | awk '{print $3}'), $(redis-server --version | awk '{print $3}'), $(nproc) cores, $PROFILE build"
cargo test "${flags[@]}" -q -p coherent --test near_race near_cache_bench -- \
  --ignored --exact --nocapture --test-threads=1 2>&1 |
  grep -oE '(lag|hit|goal):.*|panicked.*|FAILED.*' || true
