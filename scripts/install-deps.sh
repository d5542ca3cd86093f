#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: the Rust
# toolchain is assumed; redis-server/redis-tools (reference server, redis-cli,
# redis-benchmark), mariadb-server and rabbitmq-server and chromium (the audit report's render test), python3 and pip come from
# Debian, redis-py and pyyaml from PyPI. A test whose server is missing fails. Nothing is started here.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
# The connector's integration tests start a private mariadbd with a row binlog.
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# The retry queue's RabbitMQ tests start a private node.
{ command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ]; } || need+=(rabbitmq-server)
# The audit's test renders report.html in headless Chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The differential and compatibility tests drive redis-py and read YAML with python3.
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "install-deps: pip install pyyaml"
  python3 -m pip install -q pyyaml || python3 -m pip install -q --break-system-packages pyyaml
fi
if ! python3 -c 'import redis' >/dev/null 2>&1; then
  echo "install-deps: pip install redis"
  python3 -m pip install -q 'redis>=5' || python3 -m pip install -q --break-system-packages 'redis>=5'
fi
