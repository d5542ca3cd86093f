//! The `coherent` binary with a `[mysql]` config against a private MariaDB (started by
//! `connectors::testing`, own port and datadir, stopped by PID): keys of changed rows
//! disappear, `kill -9` mid-stream loses no transaction, `/readyz` follows the binlog
//! connection, `/metrics` has the binlog metrics, fatal pipeline errors exit non-zero,
//! and `coherent check` reports what is wrong.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The example schema from migrations/, plus a log table tests use as a sentinel.
fn schema(db: &MariaDb) {
    migrations(db);
    db.sql("CREATE TABLE app.log (seq INT PRIMARY KEY)")
        .expect("log table");
}

const RULES: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]

[[rules]]
table = "app.orders"
keys = ["order:{id}", "user:{user_id}:orders"]
ttl_backstop = "1h"

[[rules]]
table = "app.log"
keys = ["log:{seq}"]
"#;

fn write_config(dir: &Path, url: &str, rules: &str) -> PathBuf {
    ServeConfig {
        mysql: url,
        server_id: 64001,
        admin: "ready_max_lag_secs = 10",
        target: "kind = \"embedded\"",
        rest: rules,
        ..ServeConfig::default()
    }
    .write(dir)
}

/// Sets `log:{seq}` and inserts that row, then waits until the key is gone: every
/// transaction committed before it has then been applied.
fn sync(db: &MariaDb, c: &mut Resp, seq: u32) {
    let key = format!("log:{seq}");
    c.set(&key);
    db.sql(&format!("INSERT INTO app.log VALUES ({seq})"))
        .expect("sentinel");
    assert!(
        wait_until(Duration::from_secs(30), || !c.exists(&key)),
        "{key} not invalidated within 30 s"
    );
}

#[test]
fn invalidates_keys_of_inserted_updated_and_deleted_rows() {
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A'), (2, 'b@x', 'B'), (3, 'c@x', 'C'), (5, 'e@x', 'E');
         INSERT INTO app.orders (id, user_id, total) VALUES (10, 1, 5.00);",
    )
    .expect("seed");
    let dir = tmpdir("basic");
    let cfg = write_config(&dir, &db.url(), RULES);
    let s = Sidecar::start_ready(&cfg);
    let mut c = Resp::connect(&s.engine);
    // TTL backstop of the orders rule: a key it covers written without a TTL (or with
    // a longer one) gets at most 1 h; other keys are left alone.
    c.set("order:77");
    let ttl: i64 = c
        .cmd(&["TTL", "order:77"])
        .trim_start_matches(':')
        .parse()
        .unwrap_or(-9);
    assert!((3590..=3600).contains(&ttl), "order:77 ttl {ttl}");
    assert_eq!(c.cmd(&["SET", "order:78", "v", "EX", "99999"]), "+OK");
    let ttl: i64 = c
        .cmd(&["TTL", "order:78"])
        .trim_start_matches(':')
        .parse()
        .unwrap_or(-9);
    assert!((3590..=3600).contains(&ttl), "order:78 ttl {ttl}");
    c.set("user:77");
    assert_eq!(c.cmd(&["TTL", "user:77"]), ":-1");
    let all = [
        "user:1",
        "user:email:a@x",
        "user:email:new@x",
        "user:2",
        "user:email:b@x",
        "user:3",
        "user:email:c@x",
        "user:4",
        "user:email:d@x",
        "order:10",
        "order:11",
        "user:1:orders",
        "user:5",
        "user:email:e@x",
        "unrelated",
    ];
    for k in all {
        c.set(k);
    }
    db.sql(
        "UPDATE app.users SET email = 'new@x' WHERE id = 1;
         UPDATE app.users SET name = 'Bee' WHERE id = 2;
         DELETE FROM app.users WHERE id = 3;
         INSERT INTO app.users (id, email, name) VALUES (4, 'd@x', 'D');
         BEGIN; UPDATE app.orders SET status = 'paid' WHERE id = 10; INSERT INTO app.orders (id, user_id, total) VALUES (11, 1, 7.50); COMMIT;
         BEGIN; DELETE FROM app.users WHERE id = 5; ROLLBACK;",
    )
    .expect("writes");
    sync(&db, &mut c, 1);
    for gone in &all[..12] {
        assert!(!c.exists(gone), "{gone} should be invalidated");
    }
    for kept in &all[12..] {
        assert!(
            c.exists(kept),
            "{kept} should be kept (rolled back / unrelated)"
        );
    }
    let (code, status) = s.get("/status");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let b = &v["binlog"];
    assert_eq!(b["state"], "streaming", "{status}");
    assert!(b["transactions"].as_u64().unwrap_or(0) >= 6, "{status}");
    assert!(b["invalidations"].as_u64().unwrap_or(0) >= 12, "{status}");
    assert!(
        b["position"]["file"]
            .as_str()
            .unwrap_or("")
            .starts_with("bin."),
        "{status}"
    );
    assert!(!b["gtid"].as_str().unwrap_or("").is_empty(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Transaction `seq` of the write load updates these users (deterministic).
fn users_of(seq: u32) -> [u32; 2] {
    [seq * 7 % 50 + 1, seq * 13 % 50 + 1]
}

const LOAD: u32 = 1000;

fn gtid_binlog_pos(db: &MariaDb) -> String {
    db.sql("SELECT @@GLOBAL.gtid_binlog_pos")
        .expect("gtid")
        .trim()
        .to_string()
}

fn checkpoint_gtid(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["position"]["mariadb_gtid"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn kill_9_mid_stream_then_restart_loses_no_transaction() {
    let mut db = mariadb(MariaDbOptions::default());
    schema(&db);
    let users: String = (1..=50)
        .map(|i| format!("({i}, 'u{i}@x', 'U{i}')"))
        .collect::<Vec<_>>()
        .join(",");
    db.sql(&format!(
        "INSERT INTO app.users (id, email, name) VALUES {users}"
    ))
    .expect("seed");
    let dir = tmpdir("kill9");
    let cfg = write_config(&dir, &db.url(), RULES);
    let cp = dir.join("coherent.checkpoint");

    let mut a = Sidecar::start_ready(&cfg);
    let load: String = (1..=LOAD)
        .map(|seq| {
            let [x, y] = users_of(seq);
            format!(
                "BEGIN; UPDATE app.users SET visits = visits + 1 WHERE id IN ({x}, {y}); INSERT INTO app.log VALUES ({seq}); COMMIT;"
            )
        })
        .collect();
    let writer = {
        let url_sock = db.dir().join("sock");
        std::thread::spawn(move || {
            let out = Command::new("mariadb")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", url_sock.display()))
                .arg("-e")
                .arg(load)
                .output()
                .expect("run the write load");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    // Kill once the sidecar has applied part of the load.
    // (The checkpoint trails the applied position by the double-delete delay, so wait
    // for the file as well.)
    let mid = wait_until(Duration::from_secs(30), || {
        let (_, st) = a.get("/status");
        serde_json::from_str::<serde_json::Value>(&st)
            .ok()
            .and_then(|v| v["binlog"]["transactions"].as_u64())
            .unwrap_or(0)
            >= 300
            && cp.exists()
    });
    assert!(mid, "no progress before the kill: {}", a.log());
    a.signal("-KILL");
    a.wait_exit(Duration::from_secs(10));
    writer.join().expect("writer");
    let at_kill = std::fs::read_to_string(&cp).expect("a checkpoint was written before the kill");

    // Hold MariaDB down while the new sidecar starts and the cache is refilled with a
    // key for every row, as if it had been filled before the crash.
    db.stop().expect("stop mariadb");
    let b = Sidecar::start(&cfg);
    let (code, body) = b.get("/readyz");
    assert_eq!(code, 503, "not ready while MariaDB is down: {body}");
    let mut c = Resp::connect(&b.engine);
    for i in 1..=50 {
        c.set(&format!("user:{i}"));
    }
    for seq in 1..=LOAD {
        c.set(&format!("log:{seq}"));
    }
    db.restart().expect("restart mariadb");
    b.wait_ready(Duration::from_secs(60));
    sync(&db, &mut c, LOAD + 1);

    // Replay restarted at the checkpoint: the transactions after it (and perhaps a few
    // before it, duplicates are fine) were applied again, so the log keys still
    // present are exactly a prefix 1..=k, and everything after k is gone.
    let present: Vec<u32> = (1..=LOAD)
        .filter(|s| c.exists(&format!("log:{s}")))
        .collect();
    let k = present.len() as u32;
    assert_eq!(
        present,
        (1..=k).collect::<Vec<_>>(),
        "a transaction after the checkpoint was not replayed (checkpoint at kill: {at_kill})"
    );
    assert!(k < LOAD, "the kill was not mid-stream");
    eprintln!("kill -9 after {k} of {LOAD} transactions were checkpointed");
    // No user key survives whose row changed after the checkpoint.
    for seq in k + 1..=LOAD {
        for u in users_of(seq) {
            assert!(
                !c.exists(&format!("user:{u}")),
                "user:{u} changed in transaction {seq} (after the checkpoint) is still cached"
            );
        }
    }
    // The checkpoint advances past every transaction once idle.
    let end = gtid_binlog_pos(&db);
    assert!(
        wait_until(Duration::from_secs(10), || checkpoint_gtid(&cp) == end),
        "checkpoint {} not at the server's {end}",
        checkpoint_gtid(&cp)
    );
    let (_, status) = b.get("/status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert!(
        v["binlog"]["reconnects"].as_u64().unwrap_or(0) >= 1
            || !v["binlog"]["last_error"].is_null(),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                .and_then(|rest| rest.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[test]
fn readyz_follows_mariadb_and_metrics_have_sensible_values() {
    let mut db = mariadb(MariaDbOptions::default());
    schema(&db);
    let dir = tmpdir("ready");
    let cfg = write_config(&dir, &db.url(), RULES);
    let mut s = Sidecar::start_ready(&cfg);
    let mut c = Resp::connect(&s.engine);
    for i in 1..=20 {
        c.set(&format!("user:{i}"));
    }
    let rows: String = (1..=20)
        .map(|i| format!("INSERT INTO app.users (id, email, name) VALUES ({i}, 'u{i}@x', 'n');"))
        .collect();
    db.sql(&rows).expect("inserts");
    sync(&db, &mut c, 1);
    // The checkpoint is written once the transactions' second deletes (500 ms by
    // default) have fired.
    let written = wait_until(Duration::from_secs(10), || {
        let (_, m) = s.get("/metrics");
        metric(&m, "coherent_checkpoint_timestamp_seconds") > 0.0
    });
    assert!(written, "no checkpoint written: {}", s.log());
    let (code, m) = s.get("/metrics");
    assert_eq!(code, 200);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let lag = metric(&m, "coherent_binlog_lag_seconds");
    assert!((0.0..2.0).contains(&lag), "lag {lag}");
    assert!(
        metric(&m, "coherent_binlog_events_total") >= 21.0 * 3.0,
        "{m}"
    );
    assert!(metric(&m, "coherent_invalidations_total") >= 41.0, "{m}");
    let cp = metric(&m, "coherent_checkpoint_timestamp_seconds");
    assert!((now - cp).abs() < 30.0, "checkpoint time {cp} vs now {now}");
    assert_eq!(metric(&m, "coherent_reconnects_total"), 0.0);

    // MariaDB down: not ready (binlog not connected).
    db.stop().expect("stop");
    assert!(
        wait_until(Duration::from_secs(15), || s.get("/readyz").0 == 503),
        "readyz still 200 with MariaDB down"
    );
    let (_, body) = s.get("/readyz");
    assert!(body.contains("binlog not connected"), "{body}");
    assert_eq!(s.get("/healthz").0, 200, "alive though not ready");
    // Back up: ready again, one more reconnect.
    db.restart().expect("restart");
    s.wait_ready(Duration::from_secs(60));
    let (_, m) = s.get("/metrics");
    assert!(metric(&m, "coherent_reconnects_total") >= 1.0, "{m}");
    c.set("user:1");
    db.sql("UPDATE app.users SET name = 'x' WHERE id = 1")
        .expect("update");
    assert!(wait_until(Duration::from_secs(30), || !c.exists("user:1")));

    // SIGTERM: clean exit with the checkpoint at the server's last transaction.
    let end = gtid_binlog_pos(&db);
    s.signal("-TERM");
    let st = s.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "exit {st}: {}", s.log());
    assert_eq!(checkpoint_gtid(&dir.join("coherent.checkpoint")), end);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fatal_pipeline_errors_exit_non_zero_with_the_reason() {
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    let dir = tmpdir("fatal");
    // A key on a column the table does not have stops the pipeline at that row.
    let cfg = write_config(
        &dir,
        &db.url(),
        "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{uid}\"]\n",
    );
    let mut s = Sidecar::start_ready(&cfg);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A')")
        .expect("insert");
    let st = s.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = s.log();
    assert!(
        log.contains("uid") && log.contains("binlog pipeline stopped"),
        "{log}"
    );

    // A checkpoint at a binlog the server no longer has (purged).
    let cp = dir.join("coherent.checkpoint");
    std::fs::write(
        &cp,
        r#"{"position":{"file":"bin.000099","pos":4},"timestamp":0,"saved_at":0}"#,
    )
    .expect("write checkpoint");
    let cfg = write_config(&dir, &db.url(), RULES);
    let mut s = Sidecar::start(&cfg);
    let st = s.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = s.log();
    assert!(log.contains("purged"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_reports_binlog_settings_grants_tables_and_columns() {
    let good = mariadb(MariaDbOptions::default());
    schema(&good);
    let dir = tmpdir("check");
    let cfg = write_config(&dir, &good.url(), RULES);
    let (ok, out) = check(&cfg);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("FAIL")).count(),
        0,
        "{out}"
    );
    // MariaDB defaults to binlog_row_metadata = NO_LOG (MySQL to MINIMAL): a warning,
    // not a failure.
    assert!(
        out.lines().any(|l| l.starts_with("WARN")
            && l.contains("binlog_row_metadata is NO_LOG")
            && l.contains("binlog_row_metadata = FULL")),
        "{out}"
    );
    let full = mariadb(MariaDbOptions {
        row_metadata_full: true,
        ..Default::default()
    });
    schema(&full);
    let (ok, full_out) = check(&write_config(&dir, &full.url(), RULES));
    assert!(
        ok && full_out
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("binlog_row_metadata is FULL"))
            && !full_out.contains("WARN"),
        "{ok} {full_out}"
    );
    drop(full);
    for want in [
        "log_bin is ON",
        "binlog_format is ROW",
        "binlog_row_image is FULL",
        "REPLICATION SLAVE",
        "rule app.users",
        "rule app.log",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(want)),
            "{want}: {out}"
        );
    }

    // Missing table, missing placeholder column, misspelt watched column.
    let cfg = write_config(
        &dir,
        &good.url(),
        "[[rules]]\ntable = \"app.nope\"\nkeys = [\"n:{id}\"]\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\", \"user:mail:{mail}\"]\ncolumns = [\"nmae\"]\n",
    );
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("app.nope")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("`mail`") && l.contains("`nmae`")),
        "{out}"
    );

    // A MariaDB GTID checkpoint whose binlog was purged is reported too.
    let cp = dir.join("coherent.checkpoint");
    std::fs::write(
        &cp,
        r#"{"position":{"file":"bin.000099","pos":4,"mariadb_gtid":"0-1-5"},"timestamp":0,"saved_at":0}"#,
    )
    .expect("write checkpoint");
    let (ok, out) = check(&write_config(&dir, &good.url(), RULES));
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL")
            && l.contains("the checkpoint's binlog bin.000099 was purged")),
        "{out}"
    );
    std::fs::remove_file(&cp).expect("remove checkpoint");

    // A user without replication grants.
    good.sql("CREATE USER weak@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON app.* TO weak@'%';")
        .expect("user");
    let url = format!("mysql://weak:pw@127.0.0.1:{}", good.port());
    let cfg = write_config(&dir, &url, RULES);
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 2, "{out}");
    assert!(
        fails[0].contains("lacks REPLICATION SLAVE")
            && fails[0].contains("GRANT REPLICATION SLAVE ON *.* TO 'weak'@'%'"),
        "{out}"
    );
    assert!(fails[1].contains("lacks REPLICATION CLIENT"), "{out}");

    // Wrong password: one FAIL saying how to fix it.
    let cfg = write_config(
        &dir,
        &format!("mysql://weak:nope@127.0.0.1:{}", good.port()),
        RULES,
    );
    let (ok, out) = check(&cfg);
    assert!(
        !ok && out.contains("FAIL  connect") && out.contains("Access denied"),
        "{out}"
    );
    drop(good);

    // A server without the binlog settings.
    let bad = mariadb(MariaDbOptions {
        extra_args: vec![
            "--skip-log-bin".into(),
            "--binlog-format=STATEMENT".into(),
            "--binlog-row-image=MINIMAL".into(),
        ],
        ..Default::default()
    });
    schema(&bad);
    let cfg = write_config(&dir, &bad.url(), RULES);
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    for want in [
        "log_bin is OFF",
        "binlog_format is STATEMENT",
        "binlog_row_image is MINIMAL",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(want)),
            "{want}: {out}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Two `coherent serve` on the same data files: the second exits non-zero with an
/// error naming the checkpoint file and the first one's pid and host, and the first
/// keeps running; once the first is gone the files are free again.
#[test]
fn a_second_serve_on_the_same_data_files_exits_naming_the_holder() {
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    let dir = tmpdir("twice");
    let cfg = write_config(&dir, &db.url(), RULES);
    let mut first = Sidecar::start_ready(&cfg);
    let mut second = Sidecar::start(&cfg);
    let st = second.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = second.log();
    let cp = dir.join("coherent.checkpoint");
    assert!(
        log.contains(&format!(
            "{} is in use by another coherent process (pid {} on host",
            cp.display(),
            first.child.id()
        )),
        "{log}"
    );
    assert!(
        first.child.try_wait().expect("wait").is_none(),
        "the first runs on"
    );
    assert_eq!(first.get("/readyz").0, 200);
    // kill -9: the kernel releases the locks with the process.
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(10));
    let mut third = Sidecar::start_ready(&cfg);
    assert!(third.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

/// CRC-32 (IEEE), as the retry log frames records.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Retry log records `Ack{id}` for `ids`: `len u32 | crc32 u32 | 2 | id u64`.
fn ack_records(ids: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        let mut body = vec![2u8];
        body.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(&body).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// A retry log with a damaged record in the middle stops start-up with the file and
/// the record's offset, and the file is left as it was; a torn tail after the last
/// complete record is cut and the sidecar starts.
#[test]
fn a_damaged_retry_log_stops_start_up_and_a_torn_tail_is_cut() {
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    let dir = tmpdir("retrylog");
    let cfg = write_config(&dir, &db.url(), RULES);
    let retry = dir.join("coherent.retry");
    let mut data = ack_records(1..=3);
    // Each record is 17 bytes; the second one's id loses a bit.
    data[17 + 9] ^= 1;
    std::fs::write(&retry, &data).expect("write the log");
    let mut s = Sidecar::start(&cfg);
    let st = s.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = s.log();
    assert!(
        log.contains(&format!(
            "retry queue file {}: damaged record at byte offset 17 (checksum mismatch), followed by 17 more bytes",
            retry.display()
        )),
        "{log}"
    );
    assert_eq!(std::fs::read(&retry).expect("log"), data, "nothing cut");

    // A torn tail: three whole records, then half of a fourth.
    let mut data = ack_records(1..=3);
    data.extend_from_slice(&ack_records(4..=4)[..10]);
    std::fs::write(&retry, &data).expect("write the log");
    let mut s = Sidecar::start_ready(&cfg);
    assert_eq!(
        std::fs::read(&retry).expect("log"),
        ack_records(1..=3),
        "the torn tail is cut, the whole records kept"
    );
    assert!(s.log().contains("torn tail"), "{}", s.log());
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

/// `[mysql] on_purged = "invalidate"`: a checkpoint at a binlog the server no longer
/// has triggers the backfill of every rule table (the keys of every existing row are
/// deleted from the external Redis, an unrelated key stays), logged loudly and
/// counted in `coherent_binlog_purged_backfills_total`; the pipeline then resumes at
/// the server's current position and invalidates new changes.
#[test]
fn on_purged_invalidate_backfills_every_rule_table_and_resumes() {
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis_server = connectors::testing::RedisServer::start(&[]).expect("redis-server");
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A'), (2, 'b@x', 'B');
         INSERT INTO app.log VALUES (1);",
    )
    .expect("rows");
    let cli = |args: &[&str]| redis_server.cli(args).expect("redis-cli");
    cli(&[
        "MSET",
        "user:1",
        "v",
        "user:2",
        "v",
        "user:email:a@x",
        "v",
        "log:1",
        "v",
        "other",
        "kept",
    ]);
    let dir = tmpdir("onpurged");
    std::fs::write(
        dir.join("coherent.checkpoint"),
        r#"{"position":{"file":"bin.000099","pos":4},"timestamp":0,"saved_at":0}"#,
    )
    .expect("write checkpoint");
    let target = format!("kind = \"redis\"\nurl = \"{}\"", redis_server.url());
    let cfg = ServeConfig {
        mysql: &db.url(),
        server_id: 64002,
        mysql_more: "on_purged = \"invalidate\"",
        target: &target,
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&dir);
    let s = Sidecar::start_ready(&cfg);
    assert_eq!(
        cli(&["EXISTS", "user:1", "user:2", "user:email:a@x", "log:1"]).trim(),
        "0"
    );
    assert_eq!(cli(&["GET", "other"]).trim(), "kept");
    let log = s.log();
    assert!(log.contains("THE CHECKPOINT'S BINLOG WAS PURGED"), "{log}");
    let (_, m) = s.get("/metrics");
    assert_eq!(
        metric(&m, "coherent_binlog_purged_backfills_total"),
        1.0,
        "{m}"
    );
    // Resumed: a new row's key goes.
    cli(&["SET", "user:3", "v"]);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (3, 'c@x', 'C')")
        .expect("insert");
    assert!(
        wait_until(Duration::from_secs(30), || cli(&["EXISTS", "user:3"])
            .trim()
            == "0"),
        "user:3 not invalidated after the backfill: {}",
        s.log()
    );
    let _ = std::fs::remove_dir_all(dir);
}
