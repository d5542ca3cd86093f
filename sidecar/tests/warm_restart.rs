//! A warm restart that stays consistent: the embedded engine's snapshot carries the
//! binlog position it is consistent with, and a restarted sidecar replays the binlog
//! from there, applying its deletes before any client reads (clients get `-LOADING`,
//! `/readyz` says so). Against a private MariaDB: cache keys, snapshot, change rows
//! while the sidecar is up (after the snapshot) and while it is down, restart: no
//! stale key is ever readable, untouched keys are still warm.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions};
use std::path::Path;
use std::time::Duration;

const RULES: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]

[[rules]]
table = "app.log"
keys = ["log:{seq}"]
"#;

/// A private MariaDB with the example schema, a `app.log` table for sentinels and
/// four users.
fn seeded() -> MariaDb {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("CREATE TABLE app.log (seq INT PRIMARY KEY)")
        .expect("log table");
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A'), (2, 'b@x', 'B'), (3, 'c@x', 'C'), (4, 'd@x', 'D')",
    )
    .expect("seed");
    db
}

/// The keys the tests cache before a restart: four users, one email key, one key no
/// rule covers.
const CACHED: [&str; 6] = [
    "user:1",
    "user:2",
    "user:3",
    "user:4",
    "user:email:c@x",
    "other",
];

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

/// Waits until the checkpoint covers everything the server has written.
fn checkpointed(db: &MariaDb, dir: &Path) {
    let end = gtid_binlog_pos(db);
    assert!(
        wait_until(Duration::from_secs(30), || checkpoint_gtid(
            &dir.join("coherent.checkpoint")
        ) == end),
        "checkpoint did not reach {end}"
    );
}

/// Waits for the end of the running BGSAVE.
fn wait_bgsave(c: &mut Resp) {
    assert!(
        wait_until(Duration::from_secs(30), || c
            .cmd(&["INFO", "persistence"])
            .contains("rdb_bgsave_in_progress:0")),
        "BGSAVE did not end"
    );
}

/// Restarts: until `/readyz` says ready, every read of a changed key must be refused
/// with `-LOADING` or miss; never the old value. Returns the running sidecar.
fn restart_never_stale(cfg: &Path, changed: &[&str]) -> Sidecar {
    let s = Sidecar::start_persisted(cfg);
    let mut c = Resp::connect(&s.engine);
    let mut loading_seen = false;
    let ready = wait_until(Duration::from_secs(60), || {
        for k in changed {
            let r = c.cmd(&["GET", k]);
            assert!(
                r == "(nil)" || r == "-LOADING Redis is loading the dataset in memory",
                "{k} readable as {r:?} after the restart\n{}",
                s.log()
            );
            loading_seen |= r.starts_with("-LOADING");
        }
        let (code, body) = s.get("/readyz");
        if code != 200 {
            assert!(
                body.contains("loading") || body.contains("binlog"),
                "{code} {body}"
            );
        }
        code == 200
    });
    assert!(ready, "not ready after the restart\n{}", s.log());
    for k in changed {
        assert_eq!(c.cmd(&["GET", k]), "(nil)", "{k}");
    }
    // (Whether a read came early enough to see -LOADING is timing; not asserted.)
    let _ = loading_seen;
    assert!(s.log().contains("warm restart"), "{}", s.log());
    s
}

#[test]
fn warm_restart_replays_the_binlog_before_serving() {
    let db = seeded();
    let dir = tmpdir("warm");
    let engine = format!("dir = \"{}\"\nsave = \"3600 1\"", dir.display());
    let cfg = ServeConfig {
        mysql: &db.url(),
        server_id: 64011,
        engine: &engine,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&dir);

    // Cache keys, let the checkpoint cover everything, snapshot.
    let mut s = Sidecar::start_persisted(&cfg);
    s.wait_ready(Duration::from_secs(30));
    let mut c = Resp::connect(&s.engine);
    sync(&db, &mut c, 1);
    for k in CACHED {
        c.set(k);
    }
    checkpointed(&db, &dir);
    assert_eq!(c.cmd(&["BGSAVE"]), "+Background saving started");
    wait_bgsave(&mut c);
    // A change after the snapshot, applied to the live engine only; then kill -9:
    // the file on disk is the older snapshot.
    db.sql("UPDATE app.users SET name = 'B2' WHERE id = 2")
        .expect("update");
    sync(&db, &mut c, 2);
    // The checkpoint passes that change: replaying from the checkpoint would miss it.
    checkpointed(&db, &dir);
    s.signal("-KILL");
    s.wait_exit(Duration::from_secs(10));
    // Changes while it is down.
    db.sql("UPDATE app.users SET name = 'C2' WHERE id = 3")
        .expect("update");
    db.sql("INSERT INTO app.log VALUES (3)").expect("noise");

    let mut s = restart_never_stale(&cfg, &["user:2", "user:3", "user:email:c@x"]);
    let mut c = Resp::connect(&s.engine);
    for k in ["user:1", "user:4", "other"] {
        assert_eq!(c.cmd(&["GET", k]), "cached", "{k} is still warm");
    }
    // The position moves on with the checkpoint; SIGTERM saves (save points set).
    // (A new key: one just deleted by the replay gets its delayed second delete.)
    c.set("user:9");
    sync(&db, &mut c, 4);
    checkpointed(&db, &dir);
    assert!(s.stop().success(), "{}", s.log());
    db.sql("UPDATE app.users SET name = 'A2' WHERE id = 1")
        .expect("update");

    let s = restart_never_stale(&cfg, &["user:1"]);
    let mut c = Resp::connect(&s.engine);
    for k in ["user:9", "user:4", "other"] {
        assert_eq!(c.cmd(&["GET", k]), "cached", "{k} is still warm");
    }
}

#[test]
fn a_snapshot_without_a_binlog_position_is_not_trusted() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    let dir = tmpdir("warm-nopos");
    // An engine-only run leaves a snapshot without a position.
    let plain = dir.join("plain.toml");
    std::fs::write(
        &plain,
        format!(
            "[engine]\nlisten = \"127.0.0.1:0\"\ndir = \"{}\"\nsave = \"3600 1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.display()
        ),
    )
    .expect("config");
    let mut s = Sidecar::start_persisted(&plain);
    Resp::connect(&s.engine).set("user:1");
    assert!(s.stop().success());
    let engine = format!("dir = \"{}\"\nsave = \"3600 1\"", dir.display());
    let cfg = ServeConfig {
        mysql: &db.url(),
        server_id: 64012,
        engine: &engine,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&dir);
    let s = Sidecar::start_persisted(&cfg);
    s.wait_ready(Duration::from_secs(30));
    assert_eq!(Resp::connect(&s.engine).cmd(&["GET", "user:1"]), "(nil)");
    assert!(
        s.log().contains("carries no binlog position"),
        "{}",
        s.log()
    );
}

#[test]
fn warm_restart_from_the_aof_replays_from_its_last_marker() {
    let db = seeded();
    let dir = tmpdir("warm-aof");
    // No save points: what comes back is the AOF alone.
    let engine = format!(
        "dir = \"{}\"\nsave = \"\"\nappendonly = true\nappendfsync = \"always\"",
        dir.display()
    );
    let cfg = ServeConfig {
        mysql: &db.url(),
        server_id: 64013,
        engine: &engine,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&dir);

    let mut s = Sidecar::start_persisted(&cfg);
    s.wait_ready(Duration::from_secs(30));
    let mut c = Resp::connect(&s.engine);
    sync(&db, &mut c, 1);
    for k in CACHED {
        c.set(k);
    }
    // A change applied live, the checkpoint (and so the AOF's marker) past it, then
    // kill -9: nothing of the AOF is lost with appendfsync always.
    db.sql("UPDATE app.users SET name = 'B2' WHERE id = 2")
        .expect("update");
    sync(&db, &mut c, 2);
    checkpointed(&db, &dir);
    s.signal("-KILL");
    s.wait_exit(Duration::from_secs(10));
    assert!(
        dir.join("appendonlydir/appendonly.aof.manifest").exists(),
        "no AOF in {}",
        dir.display()
    );
    // Changes while it is down: the keys the AOF brings back are stale until replayed.
    db.sql("UPDATE app.users SET name = 'C2' WHERE id = 3")
        .expect("update");

    let s = restart_never_stale(&cfg, &["user:2", "user:3", "user:email:c@x"]);
    let mut c = Resp::connect(&s.engine);
    for k in ["user:1", "user:4", "other"] {
        assert_eq!(c.cmd(&["GET", k]), "cached", "{k} is still warm");
    }
}
