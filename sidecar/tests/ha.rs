//! Running more than one `coherent serve` against one server: `server_id = "auto"`
//! (derived from the host name, refused when a connected replica has it) and
//! `[ha]` (one leader holding a MySQL named lock, standbys taking over), each
//! against a private MariaDB.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::binlog::config::{auto_server_id, host_name};
use connectors::testing::{MariaDbOptions, RedisServer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RULES: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}"]
"#;

/// A pipeline config with `server_id = "auto"` and the embedded engine.
fn auto_config(dir: &Path, url: &str) -> PathBuf {
    let p = ServeConfig {
        mysql: url,
        server_id: 0,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(dir);
    let text = std::fs::read_to_string(&p).expect("read config");
    std::fs::write(&p, text.replace("server_id = 0", "server_id = \"auto\"")).expect("write");
    p
}

#[test]
fn server_id_auto_is_logged_and_refused_when_a_replica_has_it() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    let id = auto_server_id(&host_name());
    let d1 = tmpdir("auto1");
    // Without the grant to list replicas (MariaDB: REPLICATION MASTER ADMIN), the
    // id is used with a warning.
    let first = Sidecar::start_ready(&auto_config(&d1, &db.url()));
    let log = plain(&first.log());
    assert!(log.contains(&format!("server_id={id}")), "{log}");
    assert!(
        log.contains("a clash with another replica's id is not checked"),
        "{log}"
    );
    db.sql("GRANT REPLICATION MASTER ADMIN ON *.* TO repl@'%'")
        .expect("grant");
    // The first registered as replica `id`.
    let hosts = db.sql("SHOW SLAVE HOSTS").expect("show slave hosts");
    assert!(hosts.contains(&id.to_string()), "{hosts}");
    let mut c = Resp::connect(&first.engine);
    c.set("user:1");
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A')")
        .expect("insert");
    assert!(wait_until(Duration::from_secs(30), || !c.exists("user:1")));
    // A second process on the same host derives the same id: refused at start,
    // with the id, the host name and what to do.
    let d2 = tmpdir("auto2");
    let mut second = Sidecar::start(&auto_config(&d2, &db.url()));
    let st = second.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = plain(&second.log());
    assert!(
        log.contains(&format!(
            "server_id = \"auto\" gave {id} (from host name {:?}), but a replica connected to the server already uses server_id {id}",
            host_name()
        )),
        "{log}"
    );
    // The first is unharmed.
    c.set("user:1");
    db.sql("UPDATE app.users SET name = 'B' WHERE id = 1")
        .expect("update");
    assert!(wait_until(Duration::from_secs(30), || !c.exists("user:1")));
}

/// `log` without the ANSI colour codes of the console format.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A daemon's config: `[ha]` with a 200 ms poll, the checkpoint in MariaDB (row
/// "orders"), deletes to the external Redis at `redis`, the retry log in `dir`.
fn ha_config(dir: &Path, mysql: &str, redis: &str) -> PathBuf {
    let p = dir.join("coherent.toml");
    std::fs::write(
        &p,
        format!(
            r#"[engine]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[mysql]
url = "{mysql}"
server_id = 64100
start = "current"
heartbeat_secs = 1

[checkpoint]
store = "mysql"
pipeline = "orders"
interval_ms = 100

[target]
kind = "redis"
url = "{redis}"

[retry]
path = "{retry}"

[ha]
enabled = true
poll_ms = 200
{RULES}"#,
            retry = dir.join("coherent.retry").display(),
        ),
    )
    .expect("write config");
    p
}

/// The `"ha"` object of `/status`.
fn ha_status(s: &Sidecar) -> serde_json::Value {
    let (code, body) = s.get("/status");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
    v["ha"].clone()
}

fn role(s: &Sidecar) -> String {
    ha_status(s)["role"].as_str().unwrap_or("").to_string()
}

/// `coherent_ha_leader` from `/metrics`.
fn leader_metric(s: &Sidecar) -> Option<String> {
    let (_, body) = s.get("/metrics");
    body.lines()
        .find(|l| l.starts_with("coherent_ha_leader"))
        .and_then(|l| l.split_whitespace().last())
        .map(String::from)
}

/// Caches `user:{id}` in Redis for each id, changes each row in its own
/// transaction, and waits until every key is gone (every transaction applied).
fn change_and_wait(
    db: &connectors::testing::MariaDb,
    redis: &RedisServer,
    ids: std::ops::Range<u32>,
    tag: &str,
) {
    for id in ids.clone() {
        redis
            .cli(&["SET", &format!("user:{id}"), "cached"])
            .expect("set");
    }
    for id in ids.clone() {
        db.sql(&format!(
            "INSERT INTO app.users (id, email, name) VALUES ({id}, '{id}@x', '{tag}') ON DUPLICATE KEY UPDATE name = '{tag}'"
        ))
        .expect("change");
    }
    let left = || {
        ids.clone()
            .filter(|id| {
                redis
                    .cli(&["EXISTS", &format!("user:{id}")])
                    .unwrap_or_default()
                    .trim()
                    == "1"
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || left() == 0),
        "{} keys of changed rows still cached ({tag})",
        left()
    );
}

#[test]
fn one_leader_standby_takes_over_after_kill_and_a_fenced_leader_steps_down() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO repl@'%'")
        .expect("grant");
    assert!(RedisServer::available(), "redis-server is not installed");
    let redis = RedisServer::start(&[]).expect("start redis-server");
    let (da, db_, dc) = (tmpdir("ha-a"), tmpdir("ha-b"), tmpdir("ha-c"));
    let mut a = Sidecar::start_ready(&ha_config(&da, &db.url(), &redis.url()));
    assert!(wait_until(Duration::from_secs(30), || role(&a) == "leader"));
    let b = Sidecar::start(&ha_config(&db_, &db.url(), &redis.url()));
    // A standby is healthy and ready, and says so.
    b.wait_ready(Duration::from_secs(30));
    assert_eq!(b.get("/healthz").0, 200);
    let st = ha_status(&b);
    assert_eq!(st["enabled"], true);
    assert_eq!(st["role"], "standby", "{st}");
    assert_eq!(st["lock"], "coherent.orders");
    assert!(st["since"].as_u64().unwrap_or(0) > 1_700_000_000, "{st}");
    assert_eq!(leader_metric(&a).as_deref(), Some("1"));
    assert_eq!(leader_metric(&b).as_deref(), Some("0"));
    change_and_wait(&db, &redis, 1..20, "a");
    // Only the leader tails the binlog.
    assert_eq!(
        db.sql("SHOW SLAVE HOSTS").expect("hosts").lines().count(),
        1
    );

    // kill -9 the leader; rows changed from then on are invalidated by the standby,
    // which resumes from the leader's last checkpoint (nothing skipped).
    a.signal("-KILL");
    a.wait_exit(Duration::from_secs(10));
    let killed = std::time::Instant::now();
    for id in 20..40 {
        redis
            .cli(&["SET", &format!("user:{id}"), "cached"])
            .expect("set");
    }
    change_and_wait(&db, &redis, 20..40, "after-kill");
    assert_eq!(role(&b), "leader");
    eprintln!(
        "takeover and catch-up after kill -9: {:?}",
        killed.elapsed()
    );
    let log_b = plain(&b.log());
    assert!(
        log_b.contains("HA: leader (holding the lock); resuming from the last checkpoint"),
        "{log_b}"
    );
    assert!(log_b.contains("resuming from checkpoint"), "{log_b}");

    // A third process waits; killing the leader's lock connection from another
    // session fences it: it stops and steps down, the third takes over.
    let mut b = b;
    let c = Sidecar::start(&ha_config(&dc, &db.url(), &redis.url()));
    assert!(wait_until(Duration::from_secs(30), || role(&c) == "standby"));
    let holder = db
        .sql("SELECT IS_USED_LOCK('coherent.orders')")
        .expect("holder");
    let holder = holder.trim();
    assert!(holder.parse::<u64>().is_ok(), "{holder}");
    db.sql(&format!("KILL {holder}"))
        .expect("kill lock connection");
    let st = b.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log_b = plain(&b.log());
    assert!(log_b.contains("HA lock lost: stepping down"), "{log_b}");
    assert!(
        log_b.contains(
            "HA: lost the lock \"coherent.orders\"; stopped invalidating and saving checkpoints"
        ),
        "{log_b}"
    );
    assert!(wait_until(Duration::from_secs(30), || role(&c) == "leader"));
    change_and_wait(&db, &redis, 40..60, "after-fence");
    // Everything changed in the run is invalidated.
    change_and_wait(&db, &redis, 1..60, "final");
}

#[test]
fn leader_killed_repeatedly_under_write_load_loses_no_invalidation() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO repl@'%'")
        .expect("grant");
    db.sql("INSERT INTO app.users (id, email, name) SELECT seq, CONCAT(seq, '@x'), 'v0' FROM test.seq_1_to_200")
        .expect("seed");
    assert!(RedisServer::available(), "redis-server is not installed");
    let redis = RedisServer::start(&[]).expect("start redis-server");
    let dirs = [tmpdir("ha-load-0"), tmpdir("ha-load-1")];
    let start = |i: usize| Sidecar::start(&ha_config(&dirs[i], &db.url(), &redis.url()));
    let mut slots = [start(0), start(1)];
    for s in &slots {
        s.wait_ready(Duration::from_secs(30));
    }
    // The writer: rounds of 20 rows, each cached (MSET) and then changed in its
    // own autocommit transaction, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();

        let port = redis.port();
        let sock = db.dir().join("sock");
        std::thread::spawn(move || {
            let mut round = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                let ids: Vec<u32> = (0..20).map(|k| 1 + (round * 20 + k) % 200).collect();
                let mut mset = vec!["-p".to_string(), port.to_string(), "MSET".into()];
                let mut sql = String::new();
                for id in &ids {
                    mset.push(format!("user:{id}"));
                    mset.push("cached".into());
                    sql.push_str(&format!(
                        "UPDATE app.users SET name = 'r{round}' WHERE id = {id};"
                    ));
                }
                let ok = Command::new("redis-cli")
                    .args(&mset)
                    .output()
                    .expect("redis-cli");
                assert!(ok.status.success());
                let out = Command::new("mariadb")
                    .args(["--no-defaults", "-uroot"])
                    .arg(format!("--socket={}", sock.display()))
                    .args(["-e", &sql])
                    .output()
                    .expect("mariadb");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            round
        })
    };
    let mut takeovers = Vec::new();
    for _ in 0..3 {
        // Let the leader work under load, then kill -9 it.
        std::thread::sleep(Duration::from_millis(700));
        let leader = (0..2)
            .find(|&i| role(&slots[i]) == "leader")
            .expect("a leader");
        let other = 1 - leader;
        slots[leader].signal("-KILL");
        slots[leader].wait_exit(Duration::from_secs(10));
        let killed = std::time::Instant::now();
        assert!(
            wait_until(Duration::from_secs(30), || role(&slots[other]) == "leader"),
            "{}",
            slots[other].log()
        );
        takeovers.push(killed.elapsed());
        // The killed one comes back (as its supervisor would restart it): a standby.
        slots[leader] = start(leader);
        slots[leader].wait_ready(Duration::from_secs(30));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    eprintln!("{rounds} rounds of 20 transactions; takeovers after kill -9: {takeovers:?}");
    // Every cached key of a changed row is gone: no invalidation was lost.
    let cached = || {
        (1..=200)
            .filter(|id| {
                redis
                    .cli(&["EXISTS", &format!("user:{id}")])
                    .unwrap_or_default()
                    .trim()
                    == "1"
            })
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || cached() == 0),
        "{} keys of changed rows still cached after {rounds} rounds",
        cached()
    );
    assert!(rounds > 3, "the writer barely ran: {rounds} rounds");
}

#[test]
fn a_frozen_leader_loses_the_lock_to_the_server_timeout_and_steps_down_when_it_wakes() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO repl@'%'")
        .expect("grant");
    assert!(RedisServer::available(), "redis-server is not installed");
    let redis = RedisServer::start(&[]).expect("start redis-server");
    let (da, db_) = (tmpdir("ha-freeze-a"), tmpdir("ha-freeze-b"));
    let mut a = Sidecar::start_ready(&ha_config(&da, &db.url(), &redis.url()));
    assert!(wait_until(Duration::from_secs(30), || role(&a) == "leader"));
    let b = Sidecar::start_ready(&ha_config(&db_, &db.url(), &redis.url()));
    assert_eq!(role(&b), "standby");
    change_and_wait(&db, &redis, 1..5, "a");
    // SIGSTOP: the leader's connections stay open and silent, as after a network
    // loss. The server drops the lock connection after its wait_timeout (5 s with
    // poll_ms = 200), and the standby takes over.
    a.signal("-STOP");
    assert!(wait_until(Duration::from_secs(30), || role(&b) == "leader"));
    change_and_wait(&db, &redis, 5..10, "while-frozen");
    // Woken, the old leader finds its lock connection gone and steps down.
    a.signal("-CONT");
    let st = a.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = plain(&a.log());
    assert!(log.contains("HA lock lost: stepping down"), "{log}");
    change_and_wait(&db, &redis, 1..12, "after");
}
