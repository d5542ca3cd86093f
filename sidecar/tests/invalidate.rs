//! `coherent invalidate` (the backfill) against a private MariaDB: the embedded
//! engine of a running `coherent serve` and a private redis-server as targets. Rows
//! are read in primary-key order across pages; exactly the keys of the selected rows
//! are deleted, every template of the table's rules; a table no rule covers and bad
//! SQL are refused with exit 2.

mod common;

use common::audit::{engine_conn, redis_conn, set, AuditConfig, Users, USER_EMAIL_RULE};
use common::{tmpdir, Sidecar};
use std::path::Path;
use std::process::Command;

/// `coherent invalidate --config cfg args...`: exit code, stdout + stderr.
fn invalidate(cfg: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["invalidate", "--config"])
        .arg(cfg)
        .args(args)
        .output()
        .expect("run invalidate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn exists(c: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(c)
        .expect("EXISTS")
        == 1
}

/// Caches `user:{id}` and `user:email:u{id}@x.org` for `ids`, and an unrelated key.
fn fill(c: &mut redis::Connection, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        set(c, &format!("user:{id}"), "v");
        set(c, &format!("user:email:u{id}@x.org"), "v");
    }
    set(c, "other", "kept");
}

#[test]
fn invalidate_on_the_embedded_engine_pages_by_primary_key() {
    let db = Users::rows(2500).db();
    let e = Sidecar::engine_only(&["--listen", "127.0.0.1:0"]);
    let mut c = engine_conn(&e.engine);
    fill(&mut c, 1..=2500);
    let dir = tmpdir("invalidate1");
    let url = db.url();
    let cfg =
        AuditConfig::engine(&e.engine, &url, USER_EMAIL_RULE).write(&dir.join("coherent.toml"));

    // --where: only rows 1..=1200 (two pages and a bit), both templates.
    let (code, out) = invalidate(&cfg, &["--table", "app.users", "--where", "id <= 1200"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("invalidated: 1 tables, 1200 rows, 2400 keys deleted"),
        "{out}"
    );
    for id in [1, 999, 1000, 1001, 1200] {
        assert!(!exists(&mut c, &format!("user:{id}")), "user:{id}");
        assert!(!exists(&mut c, &format!("user:email:u{id}@x.org")), "{id}");
    }
    for id in [1201, 2500] {
        assert!(exists(&mut c, &format!("user:{id}")), "user:{id} kept");
    }
    assert!(exists(&mut c, "other"));

    // --all: every rule table, at a rate limit.
    let (code, out) = invalidate(&cfg, &["--all", "--rate", "100000"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("invalidated: 1 tables, 2500 rows, 5000 keys deleted"),
        "{out}"
    );
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(n, 1, "only the unrelated key is left");

    // Refusals: a table no rule covers, bad SQL, neither --table nor --all.
    let (code, out) = invalidate(&cfg, &["--table", "app.nope"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("no [[rules]] entry covers this table"),
        "{out}"
    );
    let (code, out) = invalidate(
        &cfg,
        &["--table", "app.users", "--where", "no_such_col = 1"],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is --where valid SQL?"), "{out}");
    let (code, out) = invalidate(&cfg, &[]);
    assert_eq!(code, Some(2), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalidate_on_an_external_redis() {
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis_server = connectors::testing::RedisServer::start(&[]).expect("redis-server");
    let db = Users::rows(300).db();
    let mut c = redis_conn(&redis_server.url());
    fill(&mut c, 1..=300);
    let dir = tmpdir("invalidate2");
    let url = db.url();
    let cfg = AuditConfig::new(
        format!(
            "[target]\nkind = \"redis\"\nurl = \"{}\"\n",
            redis_server.url()
        ),
        &url,
        USER_EMAIL_RULE,
    )
    .write(&dir.join("coherent.toml"));
    let (code, out) = invalidate(&cfg, &["--table", "app.users", "--where", "id % 2 = 0"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("150 rows, 300 keys deleted"), "{out}");
    assert!(!exists(&mut c, "user:2") && !exists(&mut c, "user:email:u300@x.org"));
    assert!(exists(&mut c, "user:1") && exists(&mut c, "user:email:u299@x.org"));
    let _ = std::fs::remove_dir_all(&dir);
}
