//! Integration tests against a private MariaDB 10.11 (started per test on its own
//! port and data directory, stopped by PID), with and without
//! `binlog_row_metadata=FULL`.

use super::decode::{ChangeKind, TableFilter};
use super::source::{Backoff, BinlogSource};
use super::{MysqlConfig, Position, Transaction};
use crate::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore, MysqlCheckpointStore};
use crate::pipeline::Pipeline;
use crate::row::Cell;
use crate::rules::{RuleConfig, Rules};
use crate::targets::stack::{self, StackConfig};
use crate::targets::{DeleteService, EmbeddedTarget};
use crate::testing::{MariaDb, MariaDbOptions};
use bytes::Bytes;
use engine::{Engine, EngineConfig, Reply};
use std::sync::Arc;
use std::time::Duration;

fn server(full: bool) -> MariaDb {
    assert!(
        MariaDb::available(),
        "mariadbd is not installed: run scripts/install-deps.sh"
    );
    MariaDb::start(MariaDbOptions {
        row_metadata_full: full,
        ..Default::default()
    })
    .expect("start private mariadbd")
}

fn app_only() -> Option<TableFilter> {
    Some(Arc::new(|db: &str, _: &str| db == "app"))
}

fn config(db: &MariaDb) -> MysqlConfig {
    let mut c = MysqlConfig::new(db.url(), 64001);
    c.heartbeat_secs = 1;
    c
}

fn fast_backoff() -> Backoff {
    Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_millis(500),
        max_attempts: 200,
    }
}

async fn next(source: &mut BinlogSource) -> Transaction {
    tokio::time::timeout(Duration::from_secs(30), source.next_transaction())
        .await
        .expect("a transaction within 30 s")
        .expect("no source error")
}

/// Database 0 of `engine` as a target, in its stack.
fn embedded(engine: Engine) -> DeleteService {
    stack::build(EmbeddedTarget::new(engine, 0), StackConfig::default(), ())
}

/// Reads one transaction from `source` and applies it (the tests that follow the
/// pipeline transaction by transaction).
async fn step<C: CheckpointStore>(
    pipe: &mut Pipeline<C>,
    source: &mut BinlogSource,
) -> Result<Transaction, crate::PipelineError> {
    let t = source.next_transaction().await?;
    pipe.apply(&t).await?;
    Ok(t)
}

/// Reads transactions until one touches `app.log`, returning those with row changes
/// or DDL (other server-side transactions are not the test's).
async fn until_sentinel(source: &mut BinlogSource) -> Vec<Transaction> {
    let mut out = Vec::new();
    loop {
        let t = next(source).await;
        let done = t.changes.iter().any(|c| c.table == "log");
        if !t.changes.is_empty() || t.ddl.is_some() {
            out.push(t);
        }
        if done {
            return out;
        }
    }
}

fn val(cell: Option<&Cell>) -> Vec<u8> {
    match cell {
        Some(Cell::Value(b)) => b.to_vec(),
        Some(Cell::Null) => b"NULL".to_vec(),
        other => panic!("no value: {other:?}"),
    }
}

const SCHEMA: &str = "CREATE DATABASE app;
CREATE TABLE app.users (
  id INT UNSIGNED PRIMARY KEY,
  email VARCHAR(64) CHARACTER SET latin1,
  name VARCHAR(64),
  score DECIMAL(10,2), born DATE, seen DATETIME(3), t TIME(2), y YEAR,
  ts TIMESTAMP(6) NULL DEFAULT NULL, f FLOAT, d DOUBLE,
  status ENUM('new','paid','gone'), tags SET('a','b','c'), flags BIT(12),
  big BIGINT UNSIGNED, small TINYINT, doc JSON, raw VARBINARY(16)
) ENGINE=InnoDB;
CREATE TABLE app.orders (id BIGINT PRIMARY KEY, user_id INT, total DECIMAL(12,3)) ENGINE=InnoDB;
CREATE TABLE app.log (seq INT PRIMARY KEY) ENGINE=InnoDB;
CREATE TABLE app.other_db_marker (x INT) ENGINE=InnoDB;
CREATE DATABASE elsewhere;
CREATE TABLE elsewhere.t (id INT PRIMARY KEY) ENGINE=InnoDB;";

async fn dml_scenario(full: bool) {
    let db = server(full);
    db.sql(SCHEMA).unwrap();
    let mut source = BinlogSource::new(config(&db), None, app_only()).unwrap();
    // Connect now, so "current" is before the statements below.
    source.ensure_connected().await.unwrap();
    db.sql("INSERT INTO app.log VALUES (0)").unwrap();
    let _ = until_sentinel(&mut source).await;

    db.sql(
        "SET time_zone = '+00:00';
         INSERT INTO app.users VALUES (1, 'a@x', 'Zoë', 12.5, '2001-02-03', '2024-05-06 07:08:09.123',
           '-01:02:03.45', 2024, '2024-01-02 03:04:05.678901', 1.5, 2.25, 'paid', 'c,a', b'101',
           18446744073709551615, -5, '{\"k\": [1, 2]}', X'FF00FE');
         UPDATE app.users SET email = CONVERT(X'636166E9' USING latin1) WHERE id = 1;
         UPDATE app.users SET id = 2 WHERE id = 1;
         BEGIN;
           INSERT INTO app.users (id, email) VALUES (3, 'c@x'), (4, 'd@x');
           INSERT INTO app.orders VALUES (10, 3, 9.5);
           INSERT INTO elsewhere.t VALUES (1);
         COMMIT;
         BEGIN; DELETE FROM app.users WHERE id = 3; ROLLBACK;
         DELETE FROM app.users WHERE id = 2;
         INSERT INTO app.log VALUES (1);",
    )
    .unwrap();
    let txns = until_sentinel(&mut source).await;
    let kinds: Vec<Vec<(ChangeKind, &str)>> = txns
        .iter()
        .map(|t| {
            t.changes
                .iter()
                .map(|c| (c.kind, c.table.as_str()))
                .collect()
        })
        .collect();
    use ChangeKind::*;
    assert_eq!(
        kinds,
        vec![
            vec![(Insert, "users")],
            vec![(Update, "users")],
            vec![(Update, "users")],
            vec![(Insert, "users"), (Insert, "users"), (Insert, "orders")],
            vec![(Delete, "users")],
            vec![(Insert, "log")],
        ],
        "rollback gives nothing, other databases are filtered out"
    );

    // Every column type, rendered as MySQL prints it.
    let row = txns[0].changes[0].after.as_ref().unwrap();
    let expect: &[(&str, &[u8])] = &[
        ("id", b"1"),
        ("email", b"a@x"),
        ("name", "Zoë".as_bytes()),
        ("score", b"12.50"),
        ("born", b"2001-02-03"),
        ("seen", b"2024-05-06 07:08:09.123"),
        ("t", b"-01:02:03.45"),
        ("y", b"2024"),
        ("ts", b"2024-01-02 03:04:05.678901"),
        ("f", b"1.5"),
        ("d", b"2.25"),
        ("status", b"paid"),
        ("tags", b"a,c"),
        ("flags", b"5"),
        ("big", b"18446744073709551615"),
        ("small", b"-5"),
        ("doc", b"{\"k\": [1, 2]}"),
        ("raw", b"\xff\x00\xfe"),
    ];
    for (col, want) in expect {
        assert_eq!(
            val(row.get(col)),
            want.to_vec(),
            "column {col} (full metadata: {full})"
        );
    }

    // Update of a non-key column: before and after images, bytes of any charset kept.
    let up = &txns[1].changes[0];
    assert_eq!(val(up.before.as_ref().unwrap().get("email")), b"a@x");
    assert_eq!(val(up.after.as_ref().unwrap().get("email")), b"caf\xe9");
    // Update of the key column.
    let up = &txns[2].changes[0];
    assert_eq!(val(up.before.as_ref().unwrap().get("id")), b"1");
    assert_eq!(val(up.after.as_ref().unwrap().get("id")), b"2");
    // Multi-row, multi-table transaction.
    assert_eq!(
        val(txns[3].changes[1].after.as_ref().unwrap().get("email")),
        b"d@x"
    );
    assert_eq!(
        val(txns[3].changes[2].after.as_ref().unwrap().get("total")),
        b"9.500"
    );
    assert_eq!(
        val(txns[3].changes[0].after.as_ref().unwrap().get("name")),
        b"NULL"
    );
    // Delete: before image only.
    let del = &txns[4].changes[0];
    assert!(del.after.is_none());
    assert_eq!(val(del.before.as_ref().unwrap().get("id")), b"2");
    // Positions only grow, and carry the MariaDB GTID.
    for w in txns.windows(2) {
        assert!(w[0].position.pos < w[1].position.pos || w[0].position.file < w[1].position.file);
    }
    assert!(!txns[5].position.mariadb_gtid.is_empty());
    assert!(
        txns[5].position.file.starts_with("bin."),
        "{}",
        txns[5].position.file
    );
    let stats = source.stats();
    if full {
        assert_eq!(stats.schema_lookups, 0, "names come from the binlog");
    } else {
        assert!(
            stats.schema_lookups > 0,
            "names come from information_schema"
        );
    }
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dml_with_full_row_metadata() {
    dml_scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dml_without_row_metadata() {
    dml_scenario(false).await;
}

async fn ddl_scenario(full: bool) {
    let db = server(full);
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.u (id INT PRIMARY KEY, email VARCHAR(32));
         CREATE TABLE app.log (seq INT PRIMARY KEY);",
    )
    .unwrap();
    let mut source = BinlogSource::new(config(&db), None, app_only()).unwrap();
    source.ensure_connected().await.unwrap();
    db.sql("INSERT INTO app.log VALUES (0)").unwrap();
    let _ = until_sentinel(&mut source).await;

    db.sql("INSERT INTO app.u VALUES (1, 'a')").unwrap();
    let t = next(&mut source).await;
    assert_eq!(val(t.changes[0].after.as_ref().unwrap().get("email")), b"a");

    db.sql("ALTER TABLE app.u ADD COLUMN nick VARCHAR(16) AFTER id, ADD COLUMN age INT")
        .unwrap();
    let t = next(&mut source).await;
    assert!(t.ddl.as_deref().unwrap_or("").contains("ALTER TABLE"));

    db.sql("UPDATE app.u SET nick = 'n1', email = 'b', age = 7 WHERE id = 1; INSERT INTO app.log VALUES (1)")
        .unwrap();
    let txns = until_sentinel(&mut source).await;
    let c = &txns[0].changes[0];
    let (b, a) = (c.before.as_ref().unwrap(), c.after.as_ref().unwrap());
    assert_eq!(&*a.columns, &["id", "nick", "email", "age"]);
    assert_eq!(val(b.get("nick")), b"NULL");
    assert_eq!(val(b.get("email")), b"a");
    assert_eq!(val(a.get("nick")), b"n1");
    assert_eq!(val(a.get("email")), b"b");
    assert_eq!(val(a.get("age")), b"7");
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_mid_stream_with_full_row_metadata() {
    ddl_scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_mid_stream_without_row_metadata() {
    ddl_scenario(false).await;
}

fn set(engine: &Engine, key: &str) {
    engine.execute(
        0,
        vec![
            Bytes::from_static(b"SET"),
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::from_static(b"cached"),
        ],
    );
}

fn present(engine: &Engine, key: &str) -> bool {
    !matches!(
        engine.execute(
            0,
            vec![
                Bytes::from_static(b"GET"),
                Bytes::copy_from_slice(key.as_bytes())
            ]
        ),
        Reply::Nil
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "coherent-it-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rules(list: &[(&str, &[&str])]) -> Rules {
    Rules::compile(
        &list
            .iter()
            .map(|(t, k)| RuleConfig {
                table: t.to_string(),
                keys: k.iter().map(|s| s.to_string()).collect(),
                columns: None,
                double_delete: crate::duration::HumanDuration::default(),
                ttl_backstop: crate::duration::HumanDuration::default(),
                value: None,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_deletes_the_right_keys_from_the_engine() {
    let db = server(false);
    db.sql(
        "CREATE DATABASE app;
         CREATE TABLE app.users (id INT PRIMARY KEY, email VARCHAR(64), name VARCHAR(64));
         CREATE TABLE app.orders (id BIGINT PRIMARY KEY, user_id INT);
         CREATE TABLE app.log (seq INT PRIMARY KEY);
         INSERT INTO app.users VALUES (1, 'a@x', 'A'), (2, 'c@x', 'C');",
    )
    .unwrap();
    let rules = rules(&[
        ("app.users", &["user:{id}", "user:email:{email}"]),
        ("app.orders", &["order:{id}", "user:{user_id}:orders"]),
        ("app.log", &["log:{seq}"]),
    ]);
    let r2 = rules.clone();
    let filter: TableFilter = Arc::new(move |d: &str, t: &str| r2.covers(d, t));
    let engine = Engine::new(EngineConfig::default());
    let dir = tmp("pipe");
    let store = FileCheckpointStore::new(dir.join("cp"));
    let mut source = BinlogSource::new(config(&db), None, Some(filter)).unwrap();
    let mut pipe = Pipeline::new(
        rules,
        embedded(engine.clone()),
        store.clone(),
        Duration::ZERO,
    );
    // Start streaming (position "current") before the writes.
    source.ensure_connected().await.unwrap();
    db.sql("INSERT INTO app.log VALUES (0)").unwrap();
    loop {
        let t = step(&mut pipe, &mut source).await.unwrap();
        if t.changes.iter().any(|c| c.table == "log") {
            break;
        }
    }
    let keys = [
        "user:1",
        "user:email:a@x",
        "user:email:b@x",
        "user:2",
        "user:email:c@x",
        "order:10",
        "user:1:orders",
        "unrelated",
        "log:1",
    ];
    for k in keys {
        set(&engine, k);
    }
    db.sql(
        "UPDATE app.users SET email = 'b@x' WHERE id = 1;
         BEGIN; DELETE FROM app.users WHERE id = 2; ROLLBACK;
         BEGIN; INSERT INTO app.orders VALUES (10, 1); UPDATE app.users SET name = 'B' WHERE id = 1; COMMIT;
         INSERT INTO app.log VALUES (1);",
    )
    .unwrap();
    let last = loop {
        let t = tokio::time::timeout(Duration::from_secs(30), step(&mut pipe, &mut source))
            .await
            .unwrap()
            .unwrap();
        if t.changes.iter().any(|c| c.table == "log") {
            break t;
        }
    };
    for gone in [
        "user:1",
        "user:email:a@x",
        "user:email:b@x",
        "order:10",
        "user:1:orders",
        "log:1",
    ] {
        assert!(!present(&engine, gone), "{gone} deleted");
    }
    for kept in ["user:2", "user:email:c@x", "unrelated"] {
        assert!(
            present(&engine, kept),
            "{kept} kept (rolled back / unrelated)"
        );
    }
    let cp = store.load().await.unwrap().expect("checkpoint written");
    assert_eq!(
        cp.position, last.position,
        "checkpoint at the last applied transaction"
    );
    assert!(pipe.stats().invalidations >= 6);
    source.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs a pipeline over `app.log` until `seq` `upto` was seen; returns the seqs seen.
async fn run_log_pipeline<S: CheckpointStore + Clone>(
    db: &MariaDb,
    store: &S,
    start: Option<Position>,
    upto: u32,
) -> Vec<u32> {
    let engine = Engine::new(EngineConfig::default());
    let mut source = BinlogSource::new(config(db), start, app_only())
        .unwrap()
        .with_backoff(fast_backoff());
    let mut pipe = Pipeline::new(
        rules(&[("app.log", &["log:{seq}"])]),
        embedded(engine),
        store.clone(),
        Duration::ZERO,
    );
    let mut seen = Vec::new();
    while !seen.contains(&upto) {
        let t = tokio::time::timeout(Duration::from_secs(30), step(&mut pipe, &mut source))
            .await
            .expect("progress")
            .expect("no error");
        for c in &t.changes {
            let v = val(c.after.as_ref().unwrap().get("seq"));
            seen.push(String::from_utf8(v).unwrap().parse().unwrap());
        }
    }
    source.shutdown().await;
    seen
}

fn insert_range(db: &MariaDb, from: u32, to: u32) {
    let sql: String = (from..=to)
        .map(|i| format!("INSERT INTO app.log VALUES ({i});"))
        .collect();
    db.sql(&sql).unwrap();
}

async fn restart_scenario(by_gtid: bool) {
    let db = server(false);
    let dir = tmp("restart");
    let store = FileCheckpointStore::new(dir.join("cp"));
    restart_scenario_with(&db, store, by_gtid).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A pipeline checkpointing into `store` is dropped mid-stream; a new one resumes
/// from the checkpoint: every transaction seen, and not from the start again.
async fn restart_scenario_with<S: CheckpointStore + Clone + 'static>(
    db: &MariaDb,
    store: S,
    by_gtid: bool,
) {
    db.sql("CREATE DATABASE app; CREATE TABLE app.log (seq INT PRIMARY KEY);")
        .unwrap();
    let engine_first = {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = tokio::spawn({
            let url = db.url();
            let store = store.clone();
            async move {
                let mut c = MysqlConfig::new(url, 64001);
                c.heartbeat_secs = 1;
                let mut source = BinlogSource::new(c, None, app_only()).unwrap();
                source.ensure_connected().await.unwrap();
                tx.send(()).unwrap();
                let mut pipe = Pipeline::new(
                    rules(&[("app.log", &["log:{seq}"])]),
                    embedded(Engine::new(EngineConfig::default())),
                    store,
                    Duration::ZERO,
                );
                let mut seen = Vec::new();
                while !seen.contains(&10) {
                    let t = step(&mut pipe, &mut source).await.unwrap();
                    for c in &t.changes {
                        let v = val(c.after.as_ref().unwrap().get("seq"));
                        seen.push(String::from_utf8(v).unwrap().parse::<u32>().unwrap());
                    }
                }
                // Dropped without flush: as if killed after the last checkpoint.
                drop(pipe);
                seen
            }
        });
        // The first run streams from "current": write once it is connected.
        rx.await.unwrap();
        insert_range(db, 1, 20);
        s.await.unwrap()
    };
    // Written while the pipeline is down.
    insert_range(db, 21, 30);
    let mut cp = store.load().await.unwrap().expect("checkpoint").position;
    if !by_gtid {
        // Resume by file and offset only (the path the stray rotate bytes broke).
        cp.mariadb_gtid = Default::default();
    }
    let second = run_log_pipeline(db, &store, Some(cp), 30).await;
    let mut all: Vec<u32> = engine_first.iter().chain(second.iter()).copied().collect();
    all.sort();
    all.dedup();
    let want: Vec<u32> = (1..=30).collect();
    assert!(
        want.iter().all(|s| all.contains(s)),
        "every transaction seen; first run {engine_first:?}, second {second:?}"
    );
    assert!(
        second.iter().min() > Some(&1),
        "resumed after the checkpoint, not from the start: {second:?}"
    );
}

/// The replication user of the test server may also keep the checkpoint table.
fn grant_checkpoint(db: &MariaDb) {
    db.sql(&format!(
        "GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO {}@'%';",
        crate::testing::REPL_USER
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_checkpoint_store_saves_loads_and_overwrites() {
    let db = server(false);
    grant_checkpoint(&db);
    let a = MysqlCheckpointStore::connect(&db.url(), "a").await.unwrap();
    // The migration ran: the table exists, and running it again is harmless.
    let b = MysqlCheckpointStore::connect(&db.url(), "b").await.unwrap();
    assert_eq!(a.load().await.unwrap(), None);
    let mut cp = Checkpoint {
        position: Position {
            file: "bin.000001".into(),
            pos: 1234,
            mariadb_gtid: "0-1-5,2-3-9".parse().unwrap(),
            ..Default::default()
        },
        timestamp: 1_700_000_000,
        saved_at: 1_700_000_001,
    };
    a.save(&cp).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(cp.clone()));
    // Overwrite with a MySQL GTID set: one row per pipeline, replaced.
    cp.position = Position {
        file: "binlog.000007".into(),
        pos: u64::from(u32::MAX) + 10,
        mysql_gtid: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:tag:1-3"
            .parse()
            .unwrap(),
        ..Default::default()
    };
    a.save(&cp).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(cp.clone()));
    // Without GTIDs: file and offset only.
    cp.position = Position {
        file: "bin.000002".into(),
        pos: 4,
        ..Default::default()
    };
    a.save(&cp).await.unwrap();
    assert_eq!(a.load().await.unwrap(), Some(cp.clone()));
    // Other pipelines keep their own row.
    assert_eq!(b.load().await.unwrap(), None);
    let rows = db
        .sql("SELECT pipeline, file, position, gtid IS NULL FROM coherent.checkpoint")
        .unwrap();
    assert_eq!(rows.trim(), "a\tbin.000002\t4\t1");
    // A row that is not a checkpoint is an error that names it, not a silent reset.
    db.sql("UPDATE coherent.checkpoint SET gtid = 'garbage:' WHERE pipeline = 'a'")
        .unwrap();
    let e = a.load().await.unwrap_err().to_string();
    assert!(e.contains("\"a\"") && e.contains("corrupt"), "{e}");
    // A user without rights on the schema gets the server's error at connect.
    db.sql("CREATE USER nobody@'%' IDENTIFIED BY 'x';").unwrap();
    let url = format!("mysql://nobody:x@127.0.0.1:{}", db.port());
    let e = MysqlCheckpointStore::connect(&url, "c")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("coherent.checkpoint"), "{e}");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_mysql_checkpoint_loses_nothing() {
    let db = server(false);
    grant_checkpoint(&db);
    let store = MysqlCheckpointStore::connect(&db.url(), "64001")
        .await
        .unwrap();
    restart_scenario_with(&db, store.clone(), true).await;
    let row = db
        .sql("SELECT file, position, gtid FROM coherent.checkpoint WHERE pipeline = '64001'")
        .unwrap();
    assert!(row.starts_with("bin.0"), "{row}");
    assert!(
        row.trim_end().ends_with(|c: char| c.is_ascii_digit()),
        "{row}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_gtid_start_on_mariadb_is_a_clear_error() {
    let db = server(false);
    let mut c = config(&db);
    c.start = "gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100"
        .parse()
        .unwrap();
    let mut source = BinlogSource::new(c, None, None).unwrap();
    let err = source.ensure_connected().await.unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_retryable(), "{msg}");
    assert!(
        msg.contains("MySQL GTID set") && msg.contains("MariaDB"),
        "{msg}"
    );
    assert!(
        msg.contains("gtid:0-1-100"),
        "says what to use instead: {msg}"
    );
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_checkpoint_by_gtid_loses_nothing() {
    restart_scenario(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_checkpoint_by_file_position_loses_nothing() {
    restart_scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_mariadb_restart_and_kill() {
    let mut db = server(true);
    db.sql("CREATE DATABASE app; CREATE TABLE app.log (seq INT PRIMARY KEY);")
        .unwrap();
    let mut source = BinlogSource::new(config(&db), None, app_only())
        .unwrap()
        .with_backoff(fast_backoff());
    source.ensure_connected().await.unwrap();
    insert_range(&db, 0, 0);
    let _ = until_sentinel(&mut source).await;
    let mut seen = Vec::new();
    insert_range(&db, 1, 5);
    while !seen.contains(&5) {
        for c in next(&mut source).await.changes {
            seen.push(
                String::from_utf8(val(c.after.as_ref().unwrap().get("seq")))
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
    }
    // A clean restart, then a crash (SIGKILL), each followed by more writes.
    db.restart().unwrap();
    insert_range(&db, 6, 10);
    while !seen.contains(&10) {
        for c in next(&mut source).await.changes {
            seen.push(
                String::from_utf8(val(c.after.as_ref().unwrap().get("seq")))
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
    }
    db.kill().unwrap();
    db.restart().unwrap();
    insert_range(&db, 11, 15);
    while !seen.contains(&15) {
        for c in next(&mut source).await.changes {
            seen.push(
                String::from_utf8(val(c.after.as_ref().unwrap().get("seq")))
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
    }
    for s in 1..=15 {
        assert!(seen.contains(&s), "seq {s} seen: {seen:?}");
    }
    assert!(source.stats().reconnects >= 2, "{:?}", source.stats());
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_position_stops_with_a_clear_error() {
    let db = server(false);
    let mut c = config(&db);
    c.start = "file:bin.999999:4".parse().unwrap();
    let mut source = BinlogSource::new(c, None, None)
        .unwrap()
        .with_backoff(Backoff {
            max_attempts: 2,
            ..fast_backoff()
        });
    let err = tokio::time::timeout(Duration::from_secs(30), source.next_transaction())
        .await
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_retryable(), "{msg}");
    assert!(msg.contains("purged"), "{msg}");
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_stream_alive() {
    let db = server(false);
    db.sql("CREATE DATABASE app; CREATE TABLE app.log (seq INT PRIMARY KEY);")
        .unwrap();
    let mut source = BinlogSource::new(config(&db), None, app_only()).unwrap();
    source.ensure_connected().await.unwrap();
    // Idle for more than three heartbeat periods (the watchdog's limit) while a
    // read is pending: only heartbeats keep the watchdog from reconnecting.
    let read = tokio::spawn(async move {
        let t = next(&mut source).await;
        (t, source)
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    insert_range(&db, 1, 1);
    let (t, source) = read.await.unwrap();
    assert_eq!(t.changes.len(), 1);
    assert_eq!(source.stats().reconnects, 0, "no stall was detected");
    source.shutdown().await;
}

/// Catch-up throughput over a backlog; run with
/// `cargo test --release -p coherent-connectors catch_up -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn catch_up_throughput() {
    let rows: u64 = std::env::var("COHERENT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let db = server(false);
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id INT PRIMARY KEY, email VARCHAR(64), name VARCHAR(64));
         CREATE TABLE app.log (seq INT PRIMARY KEY);",
    )
    .unwrap();
    let start = db
        .sql("SHOW MASTER STATUS")
        .unwrap()
        .split('\t')
        .take(2)
        .collect::<Vec<_>>()
        .join(":");
    // Backlog: transactions of 1,000 inserted rows each.
    let mut sql = String::from("USE app;");
    for chunk in 0..rows / 1000 {
        let lo = chunk * 1000 + 1;
        sql.push_str(&format!(
            "INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x'), 'name' FROM seq_{lo}_to_{};",
            lo + 999
        ));
    }
    sql.push_str("INSERT INTO app.log VALUES (1);");
    db.sql(&sql).unwrap();
    let mut c = config(&db);
    c.start = format!("file:{start}").parse().unwrap();
    let mut source = BinlogSource::new(c, None, app_only()).unwrap();
    let dir = tmp("bench");
    let mut pipe = Pipeline::new(
        rules(&[
            ("app.users", &["user:{id}", "user:email:{email}"]),
            ("app.log", &["log:{seq}"]),
        ]),
        embedded(Engine::new(EngineConfig::default())),
        FileCheckpointStore::new(dir.join("cp")),
        Duration::from_millis(200),
    );
    let t0 = std::time::Instant::now();
    loop {
        let t = step(&mut pipe, &mut source).await.unwrap();
        if t.changes.iter().any(|c| c.table == "log") {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let s = pipe.stats().clone();
    println!(
        "catch-up: {} row events, {} keys deleted in {secs:.2} s = {:.0} row events/s",
        s.rows,
        s.invalidations,
        s.rows as f64 / secs
    );
    assert_eq!(s.rows, rows + 1);
    source.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Records when each `user:{id}` key is first deleted from the engine: called by
/// the engine under its store lock on every key modification, so it only stores a
/// timestamp.
#[derive(Debug)]
struct DeleteClock {
    base: std::time::Instant,
    /// Nanoseconds since `base` + 1 at the first delete of id `i`; 0 = not yet.
    deleted: Vec<std::sync::atomic::AtomicU64>,
}

impl engine::KeyHook for DeleteClock {
    fn modified(&self, _db: usize, key: &[u8], event: &str) {
        if event != "del" {
            return;
        }
        let id = key
            .strip_prefix(b"user:")
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse::<usize>().ok());
        if let Some(slot) = id.and_then(|i| self.deleted.get(i)) {
            let ns = self.base.elapsed().as_nanos() as u64 + 1;
            let _ = slot.compare_exchange(
                0,
                ns,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Commit-to-delete lag at a steady write rate; run with
/// `cargo test --release -p coherent-connectors commit_to_delete_lag -- --ignored --nocapture`
/// (bench/binlog-lag.sh does).
///
/// Every row `id` of `app.users` has a cached key `user:{id}` in the embedded
/// engine. A writer updates the rows in id order, `COHERENT_BENCH_BATCH` rows per
/// autocommit UPDATE, paced to `COHERENT_BENCH_RATE` row changes/s for
/// `COHERENT_BENCH_SECS` seconds, and notes when each UPDATE returned (the commit
/// as the application sees it). A [`KeyHook`](engine::KeyHook) on the engine
/// notes when each key is deleted. Lag = delete time - commit return time, both
/// from the same monotonic clock; a delete that lands before the writer's UPDATE
/// returned counts as 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn commit_to_delete_lag() {
    use mysql_async::prelude::Queryable;
    let rate = env_u64("COHERENT_BENCH_RATE", 5_000);
    let secs = env_u64("COHERENT_BENCH_SECS", 20);
    let batch = env_u64("COHERENT_BENCH_BATCH", 10).max(1);
    let rows = rate * secs;
    let db = server(false);
    db.sql(&format!(
        "CREATE DATABASE app;
         CREATE TABLE app.users (id INT PRIMARY KEY, email VARCHAR(64), name VARCHAR(64), visits INT NOT NULL DEFAULT 0);
         USE app; INSERT INTO app.users (id, email, name) SELECT seq, CONCAT('u', seq, '@x'), 'name' FROM seq_1_to_{rows};
         CREATE USER writer@'%' IDENTIFIED BY 'w'; GRANT ALL ON app.* TO writer@'%';"
    ))
    .unwrap();
    let engine = Engine::new(EngineConfig::default());
    for id in 1..=rows {
        set(&engine, &format!("user:{id}"));
    }
    let clock = Arc::new(DeleteClock {
        base: std::time::Instant::now(),
        deleted: (0..=rows)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    });
    engine.add_key_hook(clock.clone());

    let dir = tmp("lag");
    let mut source = BinlogSource::new(config(&db), None, app_only()).unwrap();
    source.ensure_connected().await.unwrap();
    let mut pipe = Pipeline::new(
        rules(&[("app.users", &["user:{id}", "user:email:{email}"])]),
        embedded(engine.clone()),
        FileCheckpointStore::new(dir.join("cp")),
        Duration::from_millis(200),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The production loop: reader and applier, source shut down when it stops.
    let runner = tokio::spawn(async move {
        pipe.run(source, &mut (), async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        pipe
    });

    let url = format!("mysql://writer:w@127.0.0.1:{}/app", db.port());
    let mut conn = mysql_async::Conn::new(mysql_async::Opts::from_url(&url).unwrap())
        .await
        .unwrap();
    let mut committed = vec![0u64; rows as usize + 1];
    let mut sent = vec![0u64; rows as usize + 1];
    let period = Duration::from_nanos(1_000_000_000 * batch / rate);
    let t0 = tokio::time::Instant::now();
    let mut next_id = 1u64;
    let mut tick = 0u32;
    while next_id <= rows {
        tokio::time::sleep_until(t0 + period * tick).await;
        tick += 1;
        let hi = (next_id + batch - 1).min(rows);
        let before = clock.base.elapsed().as_nanos() as u64;
        conn.query_drop(format!(
            "UPDATE users SET visits = visits + 1 WHERE id BETWEEN {next_id} AND {hi}"
        ))
        .await
        .unwrap();
        let at = clock.base.elapsed().as_nanos() as u64;
        for id in next_id..=hi {
            committed[id as usize] = at;
            sent[id as usize] = before;
        }
        next_id = hi + 1;
    }
    let write_secs = t0.elapsed().as_secs_f64();
    // Wait for the last deletes.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let load = |i: usize| clock.deleted[i].load(std::sync::atomic::Ordering::Relaxed);
    while (1..=rows as usize).any(|i| load(i) == 0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    let pipe = runner.await.unwrap();
    conn.disconnect().await.unwrap();

    let mut lags: Vec<u64> = Vec::with_capacity(rows as usize);
    let mut from_sent: Vec<u64> = Vec::with_capacity(rows as usize);
    let mut early = 0u64;
    let mut missing = 0u64;
    for i in 1..=rows as usize {
        match load(i) {
            0 => missing += 1,
            d => {
                let d = d - 1;
                if d < committed[i] {
                    early += 1;
                }
                lags.push(d.saturating_sub(committed[i]));
                from_sent.push(d.saturating_sub(sent[i]));
            }
        }
    }
    lags.sort_unstable();
    from_sent.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1e6
    };
    println!(
        "lag: {rows} row changes in {write_secs:.1} s ({:.0}/s, {batch} rows per transaction): commit-to-delete p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({early} of {rows} deleted before the UPDATE returned); from sending the UPDATE: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {missing} never deleted",
        rows as f64 / write_secs,
        pct(&lags, 0.50),
        pct(&lags, 0.99),
        pct(&lags, 1.0),
        pct(&from_sent, 0.50),
        pct(&from_sent, 0.99),
        pct(&from_sent, 1.0),
    );
    assert_eq!(missing, 0, "every changed row's key was deleted");
    assert!(pipe.stats().rows >= rows);
    let _ = std::fs::remove_dir_all(dir);
}

/// The one "current binlog position" query answers what `SHOW MASTER STATUS` prints,
/// and moves with a write; MariaDB has no executed GTID set column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_position_is_the_servers() {
    let db = server(false);
    let shown = |db: &MariaDb| -> (String, u64) {
        let out = db.sql("SHOW MASTER STATUS").unwrap();
        let mut f = out.split('\t');
        let file = f.next().unwrap_or_default().to_string();
        (file, f.next().unwrap_or_default().trim().parse().unwrap())
    };
    let mut conn = mysql_async::Conn::from_url(db.url()).await.unwrap();
    let before = super::server::current_position(&mut conn)
        .await
        .unwrap()
        .expect("the binlog is on");
    assert_eq!((before.file.clone(), before.pos), shown(&db));
    assert_eq!(before.executed_gtid_set, None);
    db.sql("CREATE DATABASE moved").unwrap();
    let after = super::server::current_position(&mut conn)
        .await
        .unwrap()
        .expect("the binlog is on");
    assert_eq!((after.file.clone(), after.pos), shown(&db));
    assert!(after.pos > before.pos, "{after:?} after {before:?}");
    conn.disconnect().await.unwrap();
}
