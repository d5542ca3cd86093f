//! The sidecar on a replica: two `coherent serve` processes against one private
//! MariaDB, B's engine a replica of A's. B's binlog pipeline is paused while its engine
//! is a replica (`/status`, `/readyz`, the metric; no binlog read, no delete, no
//! checkpoint); rows change under load while B is promoted (REPLICAOF NO ONE, then
//! A is killed with SIGKILL), and B's pipeline resumes from the binlog position that
//! came with the replicated data: at the end no cached key of a changed row survives
//! in B, and the keys of untouched rows are still there.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RULES: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}"]

[[rules]]
table = "app.log"
keys = ["log:{seq}"]
"#;

/// Users seeded (and cached); the load changes only the first `CHANGED`, so the keys
/// of the others must survive.
const USERS: u32 = 200;
const CHANGED: u32 = 150;
/// Rows changed before the promotion (the others up to `CHANGED` after it).
const EARLY: u32 = 100;

fn seeded() -> MariaDb {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("CREATE TABLE app.log (seq INT PRIMARY KEY)")
        .expect("log table");
    let rows: Vec<String> = (1..=USERS)
        .map(|i| format!("({i}, 'u{i}@x', 'n{i}')"))
        .collect();
    db.sql(&format!(
        "INSERT INTO app.users (id, email, name) VALUES {}",
        rows.join(",")
    ))
    .expect("seed");
    db
}

fn status(s: &Sidecar) -> serde_json::Value {
    let (code, body) = s.get("/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

fn metric(s: &Sidecar, name: &str) -> Option<String> {
    s.get("/metrics").1.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_string)
    })
}

/// A number field of `INFO replication`.
fn repl_offset(c: &mut Resp, field: &str) -> u64 {
    c.cmd(&["INFO", "replication"])
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.parse().ok())
        .unwrap_or(0)
}

/// MariaDB's GTID `domain-server-seq` sequence number.
fn gtid_seq(g: &str) -> u64 {
    g.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_replicas_pipeline_pauses_and_resumes_from_the_replicated_position_on_promotion() {
    let db = seeded();
    let da = tmpdir("replica-a");
    let db_dir = tmpdir("replica-b");
    // Full syncs at once (no 5 s diskless delay).
    let cfg_a = ServeConfig {
        mysql: &db.url(),
        server_id: 64301,
        engine: "repl_diskless_sync_delay = 0",
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&da);
    let a = Sidecar::start_ready(&cfg_a);
    let engine_b = format!(
        "repl_diskless_sync_delay = 0\nreplicaof = \"{}\"",
        a.engine.replacen(':', " ", 1)
    );
    let cfg_b = ServeConfig {
        mysql: &db.url(),
        server_id: 64302,
        engine: &engine_b,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(&db_dir);
    let mut b = Sidecar::start(&cfg_b);
    // Ready as a replica once its link is up.
    b.wait_ready(Duration::from_secs(30));

    // Every user cached in A; the keys reach B by replication.
    let mut ca = Resp::connect(&a.engine);
    for i in 1..=USERS {
        ca.set(&format!("user:{i}"));
    }
    let mut cb = Resp::connect(&b.engine);
    assert!(
        wait_until(Duration::from_secs(30), || cb
            .exists(&format!("user:{USERS}"))),
        "the keys did not reach B\n{}",
        b.log()
    );

    // B's pipeline is paused, and says so.
    let paused_as = format!("engine is a replica of {}", a.engine);
    let st = status(&b);
    assert_eq!(st["binlog"]["state"], "paused", "{st}");
    assert_eq!(st["binlog"]["paused"], paused_as.as_str(), "{st}");
    let (code, body) = b.get("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("replica of"), "{body}");
    assert_eq!(
        metric(&b, "coherent_binlog_paused").as_deref(),
        Some("1"),
        "{}",
        b.get("/metrics").1
    );
    assert_eq!(metric(&a, "coherent_binlog_paused").as_deref(), Some("0"));

    // The load: fill a user's key into A, then change the row (five at a time, each
    // UPDATE its own transaction). Fills stop before the promotion; updates go on
    // through it and after A is gone.
    let fills = AtomicBool::new(true);
    let fills_stopped = AtomicBool::new(false);
    let writing = AtomicBool::new(true);
    let late = AtomicBool::new(false);
    let changed: BTreeSet<u32> = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut ca = Resp::connect(&a.engine);
            let mut changed = BTreeSet::new();
            let mut n = 0u32;
            while writing.load(Ordering::SeqCst) {
                let filling = fills.load(Ordering::SeqCst);
                if !filling {
                    fills_stopped.store(true, Ordering::SeqCst);
                }
                let mut sql = String::new();
                for _ in 0..5 {
                    n += 1;
                    // Before the promotion rows 1..=EARLY, after it the others up
                    // to CHANGED: a row changed during A's freeze is not changed
                    // again after the promotion (which would delete its key anyway).
                    let id = if late.load(Ordering::SeqCst) {
                        EARLY + 1 + n % (CHANGED - EARLY)
                    } else {
                        1 + (n * 7919) % EARLY
                    };
                    if filling {
                        ca.set(&format!("user:{id}"));
                    }
                    sql.push_str(&format!(
                        "UPDATE app.users SET name = 'v{n}' WHERE id = {id};"
                    ));
                    changed.insert(id);
                }
                db.sql(&sql).expect("update");
            }
            (changed, n)
        });
        // A while with B a replica: its pipeline reads and deletes nothing.
        std::thread::sleep(Duration::from_secs(3));
        let st = status(&b);
        assert_eq!(st["binlog"]["state"], "paused", "{st}");
        assert_eq!(st["binlog"]["transactions"], 0, "{st}");
        assert_eq!(st["binlog"]["invalidations"], 0, "{st}");
        assert_eq!(st["binlog"]["events"], 0, "{st}");
        assert!(
            !db_dir.join("coherent.checkpoint").exists(),
            "a paused pipeline wrote a checkpoint"
        );
        // A's pipeline has run meanwhile (its position marker reached B).
        assert!(status(&a)["binlog"]["transactions"].as_u64() > Some(0));

        // Fills stop; the rows' keys are cached again (in A, so in B); then A freezes
        // (SIGSTOP) while rows change: their deletes reach neither A's engine nor B.
        // B is promoted, then A dies. Only a replay from the marker that came with the
        // replicated data (before the freeze) deletes those keys in B: a pipeline
        // starting at the server's current position would miss them.
        fills.store(false, Ordering::SeqCst);
        assert!(wait_until(Duration::from_secs(30), || fills_stopped
            .load(Ordering::SeqCst)));
        for i in 1..=CHANGED {
            ca.set(&format!("user:{i}"));
        }
        // Every refill reached B: B's offset is at or past A's after them.
        let filled = repl_offset(&mut ca, "master_repl_offset");
        assert!(wait_until(Duration::from_secs(30), || repl_offset(
            &mut cb,
            "slave_repl_offset"
        ) >= filled));
        a.signal("-STOP");
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(cb.cmd(&["REPLICAOF", "NO", "ONE"]), "+OK");
        late.store(true, Ordering::SeqCst);
        a.signal("-KILL");
        std::thread::sleep(Duration::from_secs(2));
        writing.store(false, Ordering::SeqCst);
        let (changed, n) = writer.join().expect("writer");
        assert!(n > 50, "only {n} updates");
        changed
    });
    drop(a);

    // B's pipeline resumed and caught up: a sentinel row's key gone means every
    // transaction before it was applied.
    cb.set("log:1");
    db.sql("INSERT INTO app.log VALUES (1)").expect("sentinel");
    assert!(
        wait_until(Duration::from_secs(60), || !cb.exists("log:1")),
        "B's pipeline did not catch up\n{}",
        b.log()
    );
    let stale: Vec<u32> = changed
        .iter()
        .copied()
        .filter(|id| cb.exists(&format!("user:{id}")))
        .collect();
    assert!(
        stale.is_empty(),
        "keys of changed rows survived the promotion in B: {stale:?}\n{}",
        b.log()
    );
    for id in CHANGED + 1..=USERS {
        assert_eq!(
            cb.cmd(&["GET", &format!("user:{id}")]),
            "cached",
            "user:{id}"
        );
    }

    // Resumed from the position that came with the replicated data: A's marker,
    // at or before A's last checkpoint.
    let st = status(&b);
    assert_eq!(st["binlog"]["state"], "streaming", "{st}");
    assert!(st["binlog"]["paused"].is_null(), "{st}");
    assert_eq!(st["binlog"]["resumed"]["from"], "replicated", "{st}");
    let resumed = st["binlog"]["resumed"]["position"]["gtid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let a_cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(da.join("coherent.checkpoint")).expect("A's checkpoint"),
    )
    .expect("checkpoint JSON");
    let a_gtid = a_cp["position"]["mariadb_gtid"].as_str().unwrap_or("");
    assert!(
        gtid_seq(&resumed) > 0 && gtid_seq(&resumed) <= gtid_seq(a_gtid),
        "resumed at {resumed:?}, A's checkpoint {a_gtid:?}"
    );
    assert!(
        b.log()
            .contains("resumes from the binlog position that came with the replicated data"),
        "{}",
        b.log()
    );
    assert!(st["binlog"]["transactions"].as_u64() > Some(0), "{st}");
    assert_eq!(metric(&b, "coherent_binlog_paused").as_deref(), Some("0"));
    assert_eq!(b.get("/readyz").0, 200);

    // Demoted while running (REPLICAOF to an engine C whose data carries no
    // position): the run stops, saves its checkpoint and pauses; promoted again, it
    // resumes from its own checkpoint and says so.
    let c = Sidecar::engine_only(&["--listen", "127.0.0.1:0"]);
    let mut cc = Resp::connect(&c.engine);
    assert_eq!(
        cc.cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]),
        "+OK"
    );
    cc.set("user:199");
    let (host, port) = c.engine.split_once(':').expect("host:port");
    assert_eq!(cb.cmd(&["REPLICAOF", host, port]), "+OK");
    assert!(
        wait_until(Duration::from_secs(30), || status(&b)["binlog"]["paused"]
            == format!("engine is a replica of {}", c.engine).as_str()
            && cb.exists("user:199")),
        "{}
{}",
        status(&b),
        b.log()
    );
    let before = status(&b)["binlog"]["transactions"].clone();
    db.sql("UPDATE app.users SET name = 'late' WHERE id = 199")
        .expect("update");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&b)["binlog"]["transactions"], before);
    assert!(cb.exists("user:199"), "a paused pipeline deleted a key");
    assert_eq!(cb.cmd(&["REPLICAOF", "NO", "ONE"]), "+OK");
    assert!(
        wait_until(Duration::from_secs(30), || !cb.exists("user:199")),
        "the change made while paused was not replayed\n{}",
        b.log()
    );
    let st = status(&b);
    assert_eq!(st["binlog"]["resumed"]["from"], "checkpoint", "{st}");
    assert!(
        b.log()
            .contains("binlog pipeline resumes from this sidecar's own checkpoint"),
        "{}",
        b.log()
    );
    assert!(b.stop().success(), "{}", b.log());
}
