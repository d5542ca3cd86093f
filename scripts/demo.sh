#!/usr/bin/env bash
# The README's main command. On a fresh Debian machine it installs what is missing
# (mariadb-server, mariadb-client, redis-tools, redis-server; see install-deps.sh),
# builds coherent, starts a private MariaDB with a row binlog on its own port and data
# directory, applies migrations/*.sql, starts `coherent serve --config
# examples/demo.toml`, fills cache keys with redis-cli, runs a small write workload and
# shows the keys of changed rows disappearing. Everything it started is stopped on exit
# (by PID); `--keep` leaves it running until Ctrl-C.
#
# Ports: MariaDB 33306, engine 6380, admin 9180 when free, otherwise free ones (never
# 3306/6379 or anything already listening). Override with DEMO_MYSQL_PORT, PORT,
# ADMIN_PORT. BUILD_PROFILE=debug skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KEEP=0
for a in "$@"; do
  case $a in
    --keep) KEEP=1 ;;
    --no-wait) ;;  # the old name: the demo never waits unless --keep
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
  esac
done

# shellcheck source=lib/mariadb.sh
. scripts/lib/mariadb.sh

./scripts/install-deps.sh
PROFILE=${BUILD_PROFILE:-release}
# "debug" is the folder; cargo calls the profile "dev".
[ "$PROFILE" = debug ] && PROFILE=dev
if [ "$PROFILE" = release ]; then
  cargo build --release -p coherent
else
  cargo build --profile "$PROFILE" -p coherent
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/coherent

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {  # preferred port if free, else a free one from 20000-29999
  local p=$1
  if ! in_use "$p"; then echo "$p"; return; fi
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 10000))
    in_use "$p" || { echo "$p"; return; }
  done
  echo "no free port" >&2; return 1
}
MYSQL_PORT=${DEMO_MYSQL_PORT:-$(pick_port 33306)}
PORT=${PORT:-$(pick_port 6380)}
ADMIN_PORT=${ADMIN_PORT:-$(pick_port 9180)}
WORK=$(mktemp -d /tmp/coherent-demo.XXXXXX)
COHERENT_PID=

cleanup() {
  set +e
  if [ -n "$COHERENT_PID" ]; then
    kill -TERM "$COHERENT_PID" 2>/dev/null
    wait "$COHERENT_PID" 2>/dev/null
  fi
  mariadb_stop
  rm -rf "$WORK"
  echo "demo: stopped coherent and MariaDB, removed $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
rc() { redis-cli -p "$PORT" "$@"; }
http() {  # GET path -> body (HTTP/1.0, no curl needed)
  exec 3<>"/dev/tcp/127.0.0.1/$ADMIN_PORT"
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
http_code() {
  exec 3<>"/dev/tcp/127.0.0.1/$ADMIN_PORT" || { echo 000; return; }
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
  head -1 <&3 | awk '{print $2}'
  exec 3<&-
}

step "private MariaDB on 127.0.0.1:$MYSQL_PORT (binlog ROW, FULL row image)"
mariadb_start "$MYSQL_PORT"
echo "mariadbd pid $MARIADB_PID, datadir $MARIADB_DIR/data"
for f in migrations/*.sql; do
  echo "applying $f"
  mariadb_sql < "$f"
done
mariadb_sql -e "
  CREATE USER coherent@'127.0.0.1' IDENTIFIED BY 'secret';
  GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO coherent@'127.0.0.1';
  INSERT INTO app.users (id, email, name) VALUES
    (1, 'ada@example.com', 'Ada'), (2, 'alan@example.com', 'Alan'),
    (3, 'grace@example.com', 'Grace'), (4, 'edsger@example.com', 'Edsger'),
    (5, 'barbara@example.com', 'Barbara');
  INSERT INTO app.orders (id, user_id, total) VALUES (100, 1, 12.50), (101, 4, 99.00);"

export COHERENT_MYSQL_URL="mysql://coherent:secret@127.0.0.1:$MYSQL_PORT"
export COHERENT_CHECKPOINT_PATH="$WORK/coherent.checkpoint"
export COHERENT_RETRY_PATH="$WORK/coherent.retry"
# The engine's dump.rdb (saved at exit, as Redis with its default save points) goes
# with the rest of the demo's files: a dump from another MariaDB must not be loaded.
export COHERENT_ENGINE_DIR="$WORK"

step "coherent check --config examples/demo.toml"
"$BIN" check --config examples/demo.toml

step "coherent serve --config examples/demo.toml (engine 127.0.0.1:$PORT, admin 127.0.0.1:$ADMIN_PORT)"
COHERENT_LOG=${COHERENT_LOG:-info} "$BIN" serve --config examples/demo.toml \
  --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
  >"$WORK/coherent.out" 2>"$WORK/coherent.log" &
COHERENT_PID=$!
echo "coherent pid $COHERENT_PID, log $WORK/coherent.log"
for i in $(seq 1 200); do
  [ "$(http_code /readyz 2>/dev/null)" = 200 ] && break
  kill -0 "$COHERENT_PID" 2>/dev/null || { cat "$WORK/coherent.log"; exit 1; }
  [ "$i" = 200 ] && { echo "coherent not ready:"; http /readyz; exit 1; }
  sleep 0.05
done
echo "/readyz: $(http /readyz)"

step "fill the cache (as an application would, with redis-cli)"
fill() {
  mariadb_sql -N -B -e "SELECT id, email, name FROM app.users" |
    while IFS=$'\t' read -r id email name; do
      rc SET "user:$id" "{\"id\":$id,\"email\":\"$email\",\"name\":\"$name\"}" >/dev/null
      rc SET "user:email:$email" "$id" >/dev/null
      rc SET "user:$id:orders" "[]" >/dev/null
    done
  mariadb_sql -N -B -e "SELECT id, user_id, total FROM app.orders" |
    while IFS=$'\t' read -r id uid total; do
      rc SET "order:$id" "{\"user\":$uid,\"total\":$total}" >/dev/null
    done
}
fill
show_keys() { rc --scan | sort | tr '\n' ' '; echo; }
echo "cached keys ($(rc DBSIZE)): $(show_keys)"

# Runs SQL, waits until the binlog caught up, prints what disappeared.
change() {
  local what=$1 sql=$2 before after
  before=$(rc --scan | sort)
  mariadb_sql -e "$sql"
  sleep 0.3
  after=$(rc --scan | sort)
  printf '%-46s keys %2d -> %2d   gone: %s\n' "$what" \
    "$(echo "$before" | grep -c .)" "$(echo "$after" | grep -c .)" \
    "$(comm -23 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
}

step "write workload: each committed row change deletes its keys"
change "UPDATE users 1 (visits)" \
  "UPDATE app.users SET visits = visits + 1 WHERE id = 1"
# A reader cached a lookup of the new address before it existed ("not found").
rc SET user:email:turing@example.com none >/dev/null
change "UPDATE users 2 email (old and new email key)" \
  "UPDATE app.users SET email = 'turing@example.com' WHERE id = 2"
change "DELETE users 3" \
  "DELETE FROM app.users WHERE id = 3"
change "INSERT order for user 4" \
  "INSERT INTO app.orders (id, user_id, total) VALUES (102, 4, 19.99)"
change "ROLLBACK of a delete of user 5 (nothing)" \
  "BEGIN; DELETE FROM app.users WHERE id = 5; ROLLBACK"
change "UPDATE ... WHERE id = 999 (no row, nothing)" \
  "UPDATE app.users SET name = 'nobody' WHERE id = 999"
change "one transaction: order 100 paid + user 1 name" \
  "BEGIN; UPDATE app.orders SET status = 'paid' WHERE id = 100; UPDATE app.users SET name = 'Ada L.' WHERE id = 1; COMMIT"
echo "left in the cache: $(show_keys)"

step "refill, then 1000 updates in 10 transactions"
# The last change's second deletes (double_delete, 500 ms) land before the refill,
# not on it: which comes first was a race.
sleep 0.5
fill
n=$(rc DBSIZE)
mariadb_sql -e "$(for t in $(seq 1 10); do
  echo "BEGIN;"
  for i in $(seq 1 100); do echo "UPDATE app.users SET visits = visits + 1 WHERE id = $(( (i % 4) + 1 + (i % 4 >= 2) ));"; done
  echo "COMMIT;"
done)"
sleep 0.3
echo "keys before: $n, after: $(rc DBSIZE) (users 1, 2, 4, 5 invalidated; orders kept: $(rc --scan --pattern 'order:*' | sort | tr '\n' ' '))"

step "/status"
http /status | python3 -c '
import json, sys
s = json.load(sys.stdin)["binlog"]
print("state %s, lag %.3f s, position %s:%s, gtid %s" % (s["state"], s["lag_seconds"],
      s["position"]["file"], s["position"]["pos"], s["gtid"]))
print("transactions %d, rows %d, invalidations %d, binlog events %d, reconnects %d" % (
      s["transactions"], s["rows"], s["invalidations"], s["events"], s["reconnects"]))
print("checkpoint %s:%s" % (s["checkpoint"]["file"], s["checkpoint"]["pos"]) if s["checkpoint"] else "checkpoint: none")'

step "/metrics (binlog)"
http /metrics | grep -E '^coherent_(binlog_lag_seconds|binlog_events_total|invalidations_total|checkpoint_timestamp_seconds|reconnects_total) '

if [ "$KEEP" = 1 ]; then
  echo
  echo "coherent keeps running (Ctrl-C stops everything):"
  printf '  %-58s # %s\n' \
    "redis-cli -p $PORT" "the cache" \
    "mariadb -uroot -S $MARIADB_SOCK app" "the database" \
    "curl -s 127.0.0.1:$ADMIN_PORT/status" "also /readyz, /metrics"
  wait "$COHERENT_PID"
fi
