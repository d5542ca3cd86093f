#!/usr/bin/env bash
# The test command of the README and of CI: installs missing packages, checks
# formatting and lints, then runs every test. Tests start their own private servers
# (redis-server on free ports) and stop them by PID; nothing already running is used.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The container files, checked without a Docker engine (none runs here): YAML
# structure, hadolint-style Dockerfile rules, and the real binary on their configs.
cargo build -q -p coherent
python3 docker/check.py target/debug/coherent
