# Private MariaDB for the demo and benchmarks (sourced, not run). Starts `mariadbd` with a
# row-based binlog on its own port and datadir, never the machine's server.
#   mariadb_start PORT      -> sets MARIADB_DIR, MARIADB_PID, MARIADB_SOCK
#   mariadb_sql SQL...      -> runs SQL as root over the socket
#   mariadb_stop            -> stops it by PID and removes the datadir

mariadb_install() {
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    echo "installing mariadb-server (apt-get)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
  fi
}

mariadb_start() {
  local port=$1
  mariadb_install
  MARIADB_DIR=$(mktemp -d /tmp/coherent-mariadb.XXXXXX)
  MARIADB_SOCK=$MARIADB_DIR/sock
  MARIADB_PORT=$port
  # Own tmpdir: mariadbd clears stray #sql* files in its tmpdir when it starts.
  mkdir -p "$MARIADB_DIR/tmp"
  mariadb-install-db --no-defaults --user=root --datadir="$MARIADB_DIR/data" \
    --tmpdir="$MARIADB_DIR/tmp" \
    --auth-root-authentication-method=normal >"$MARIADB_DIR/install.log" 2>&1
  PATH=$PATH:/usr/sbin mariadbd --no-defaults --user=root --datadir="$MARIADB_DIR/data" \
    --socket="$MARIADB_SOCK" --tmpdir="$MARIADB_DIR/tmp" --pid-file="$MARIADB_DIR/pid" --port="$port" \
    --bind-address=127.0.0.1 --server-id=1 --log-bin="$MARIADB_DIR/data/bin" \
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --character-set-server=utf8mb4 --log-error="$MARIADB_DIR/err.log" &
  MARIADB_PID=$!
  for _ in $(seq 1 200); do
    mariadb -uroot -S "$MARIADB_SOCK" -e 'select 1' >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "MariaDB did not start; see $MARIADB_DIR/err.log" >&2
  return 1
}

mariadb_sql() {
  mariadb -uroot -S "$MARIADB_SOCK" "$@"
}

mariadb_stop() {
  if [ -n "${MARIADB_PID:-}" ]; then
    kill "$MARIADB_PID" 2>/dev/null || true
    wait "$MARIADB_PID" 2>/dev/null || true
    MARIADB_PID=
  fi
  [ -n "${MARIADB_DIR:-}" ] && rm -rf "$MARIADB_DIR"
}
