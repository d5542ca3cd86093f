#!/usr/bin/env bash
# The test command of the README and of CI: installs missing packages, checks
# formatting and lints, then runs every test. Tests start their own private servers
# (redis-server on free ports) and stop them by PID; nothing already running is used.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# The container files, checked without a Docker engine (none runs here): YAML
# structure, hadolint-style Dockerfile rules, and the real binary on their configs.
cargo build -q -p coherent
python3 docker/check.py target/debug/coherent

# One closing line for the whole run: the sum of every cargo test binary's counts.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
