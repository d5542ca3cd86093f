#!/usr/bin/env bash
# Delivery benchmarks: deletes/s to external Redis and to the embedded engine, and
# the drain rate of a backlog of BENCH_N (default 1,000,000) queued deletes.
# Starts its own redis-server / RabbitMQ on free ports. Usage: bench/delivery.sh [rabbitmq]
set -euo pipefail
cd "$(dirname "$0")/.."
filter="bench_targets_deletes_per_sec bench_embedded_queue_drain_1m"
[ "${1:-}" = rabbitmq ] && filter="bench_rabbitmq_drain_1m"
for f in $filter; do
  cargo test -p coherent-connectors --release --lib -- --ignored --exact --nocapture \
    "$(case $f in bench_rabbitmq*) echo retry::rabbitmq::integration_tests::$f;; *) echo bench_tests::$f;; esac)" \
    2>&1 | grep BENCH
done
