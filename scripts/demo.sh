#!/usr/bin/env bash
# The README's main command: builds coherent, starts `coherent serve` on its embedded
# defaults (127.0.0.1:6380, or $PORT), shows a short tour with redis-cli, then keeps
# serving until Ctrl-C (or stops at once with --no-wait).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo build --release -p coherent
PORT=${PORT:-6380}
./target/release/coherent serve --listen "127.0.0.1:$PORT" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done

run() { echo "> redis-cli $*"; redis-cli -p "$PORT" "$@"; }
run SET user:42 '{"name":"alice"}' EX 3600
run GET user:42
run TTL user:42
run INCR page_views
run DEL user:42
run GET user:42
run DBSIZE

if [ "${1:-}" != "--no-wait" ]; then
  echo "coherent is serving on 127.0.0.1:$PORT (pid $pid); Ctrl-C stops it."
  wait $pid
fi
