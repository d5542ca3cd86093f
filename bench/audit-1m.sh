#!/usr/bin/env bash
# The offline audit's throughput and memory: `coherent audit` (release build,
# unthrottled) over a table of ROWS rows against the embedded engine, with half the
# rows cached (even ids), STALE of them stale and ORPHANS orphan keys.
#
#   bench/audit-1m.sh                        # 100,000 then 1,000,000 rows
#   SIZES=1000000 bench/audit-1m.sh          # one size
#
# Prints, per size: rows/s (rows / the report's duration_secs), wall time and peak
# RSS (/usr/bin/time -v "Maximum resident set size"), and the report's counts, which
# must equal what the script cached. Peak RSS at two sizes shows whether memory
# grows with the table (it should not: the scan keeps one 500-key batch).
#
# Everything runs on free ports with its own data dirs (private MariaDB, engine),
# stopped by PID on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source bench/lib.sh
# shellcheck source=scripts/lib/mariadb.sh
source scripts/lib/mariadb.sh

SIZES=${SIZES:-"100000 1000000"}
STALE=${STALE:-100}
ORPHANS=${ORPHANS:-10}

for tool in mariadbd mariadb-install-db mariadb redis-cli python3 cargo /usr/bin/time; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "missing $tool (scripts/install-deps.sh; /usr/bin/time is Debian's time package)" >&2; exit 1; }
done

BIN=$(build_coherent "$ROOT")
MPORT=$(free_port)
mariadb_start "$MPORT"
trap 'mariadb_stop; bench_cleanup' EXIT
# 'audit'@'localhost' too: a fresh datadir may have an anonymous ''@localhost that
# would win over audit@'%' for connections from 127.0.0.1.
mariadb_sql -e "CREATE USER audit@'%' IDENTIFIED BY 'audit';
  CREATE USER audit@'localhost' IDENTIFIED BY 'audit';
  GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO audit@'%';
  GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO audit@'localhost';"
EPORT=$(free_port)
start_engine "$BIN" "$EPORT"

# RESP SET commands for the rows read from stdin (id, email, name as TSV): the JSON
# the cache-aside Json codec stores for {id, email, name}.
resp_sets() {
  python3 -c '
import json, sys
out = sys.stdout.buffer
def cmd(*args):
    out.write(b"*%d\r\n" % len(args))
    for a in args:
        a = a.encode()
        out.write(b"$%d\r\n%s\r\n" % (len(a), a))
for line in sys.stdin:
    i, email, name = line.rstrip("\n").split("\t")
    v = json.dumps({"id": int(i), "email": email, "name": name}, separators=(",", ":"))
    cmd("SET", "user:" + i, v)
'
}

echo "MariaDB $(mariadbd --version | awk '{print $3}'), $(nproc) cores, embedded engine, $(uname -m)"
printf '%-9s %-10s %-9s %-10s %-5s %-8s %s\n' rows rows/s wall_s peak_rss cpu cached counts
for ROWS in $SIZES; do
  redis-cli -p "$EPORT" FLUSHALL >/dev/null
  mariadb_sql -e "DROP DATABASE IF EXISTS app; CREATE DATABASE app;
    CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NOT NULL);
    USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@example.org'), CONCAT('Name ', seq) FROM seq_1_to_${ROWS};"
  # Half the rows cached with their correct value...
  mariadb_sql -N -B -e "SELECT id, email, name FROM app.users WHERE id % 2 = 0" |
    resp_sets | redis-cli -p "$EPORT" --pipe >/dev/null
  # ...STALE of them overwritten with an old name, ORPHANS keys without rows.
  for i in $(seq 1 "$STALE"); do
    id=$((i * 2 * (ROWS / 2 / STALE)))
    printf '%s\t%s\t%s\n' "$id" "u$id@example.org" "Old name"
  done | resp_sets | redis-cli -p "$EPORT" --pipe >/dev/null
  for i in $(seq 1 "$ORPHANS"); do
    id=$((ROWS + i))
    printf '%s\t%s\t%s\n' "$id" "u$id@example.org" "Gone"
  done | resp_sets | redis-cli -p "$EPORT" --pipe >/dev/null
  CACHED=$(redis-cli -p "$EPORT" DBSIZE)
  cat >"$BENCH_TMP/audit.toml" <<EOF
[engine]
listen = "127.0.0.1:$EPORT"
[admin]
listen = ""
[mysql]
url = "mysql://audit:audit@127.0.0.1:$MPORT"
server_id = 77
[[rules]]
table = "app.users"
keys = ["user:{id}"]
value = { format = "json", columns = ["id", "email", "name"] }
EOF
  OUT="$BENCH_TMP/out-$ROWS"
  set +e
  COHERENT_LOG=warn /usr/bin/time -v "$BIN" audit --config "$BENCH_TMP/audit.toml" --out "$OUT" \
    >"$BENCH_TMP/audit.log" 2>&1
  code=$?
  set -e
  if [ "$code" -ne 1 ]; then
    echo "audit exited $code (expected 1: stale and orphan keys exist):" >&2
    grep -v "^\s" "$BENCH_TMP/audit.log" | tail -20 >&2
    exit 1
  fi
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$BENCH_TMP/audit.log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$BENCH_TMP/audit.log")
  cpu=$(awk -F': ' '/Percent of CPU/ {print $2}' "$BENCH_TMP/audit.log")
  python3 - "$OUT/report.json" "$ROWS" "$rss" "$wall" "$CACHED" "$STALE" "$ORPHANS" "$cpu" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
rows, rss, wall, cached, stale, orphans = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
t = r["totals"]
ok = (t["rows"] == int(rows) and t["stale"] == stale and t["orphan"] == orphans
      and t["consistent"] == cached - stale - orphans)
counts = "consistent=%d stale=%d orphan=%d missing=%d%s" % (
    t["consistent"], t["stale"], t["orphan"], t["missing"], "" if ok else "  MISMATCH")
print("%-9s %-10.0f %-9s %-10s %-5s %-8d %s" % (rows, t["rows"] / r["duration_secs"], wall,
      "%.1f MiB" % (rss / 1024), sys.argv[8], cached, counts))
sys.exit(0 if ok else 1)
EOF
done
