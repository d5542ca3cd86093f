//! The online audit checker of `coherent serve` (`[audit]`), with the real binary
//! against a private MariaDB (and a private redis-server for the external target):
//! correct refills count as consistent checks, stale fills as exactly one
//! inconsistency per window and key (listed in `/status` with their position and
//! commit time), a mismatch that a later invalidation clears within the grace is not
//! counted, and a bad `[audit]` value stops the sidecar with an error naming it.

use connectors::testing::{MariaDb, MariaDbOptions, RedisCluster, RedisServer};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn mariadb() -> MariaDb {
    assert!(
        MariaDb::available(),
        "mariadbd is not installed: run scripts/install-deps.sh"
    );
    MariaDb::start(MariaDbOptions::default()).expect("start private mariadbd")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "coherent-audit-online-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// The example schema from migrations/.
fn schema(db: &MariaDb) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        db.sql(&std::fs::read_to_string(&f).expect("read migration"))
            .expect("apply migration");
    }
}

/// Delays 2 s and 5 s after the commit, mismatches re-read 2.5 s later.
const AUDIT: &str = r#"
[audit]
sample = 1.0
delays_ms = [2000, 5000]
confirm_grace_ms = 2500
"#;

fn write_config(dir: &Path, url: &str, target: &str, rules: &str) -> PathBuf {
    let p = dir.join("coherent.toml");
    std::fs::write(
        &p,
        format!(
            r#"[engine]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[mysql]
url = "{url}"
server_id = 64011
start = "current"
heartbeat_secs = 1

[checkpoint]
store = "file"
path = "{cp}"
interval_ms = 100

[target]
{target}

[retry]
path = "{retry}"
{AUDIT}
{rules}"#,
            cp = dir.join("coherent.checkpoint").display(),
            retry = dir.join("coherent.retry").display()
        ),
    )
    .expect("write config");
    p
}

struct Sidecar {
    child: Child,
    engine: String,
    admin: String,
    stderr: PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn start(config: &Path) -> Sidecar {
        let stderr = config.with_extension("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(config)
            .env("COHERENT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("spawn coherent");
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let (mut engine, mut admin) = (String::new(), String::new());
        while engine.is_empty() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!(
                    "coherent exited early: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            };
            if let Some(a) = line.strip_prefix("coherent: admin listening on ") {
                admin = a.to_string();
            }
            if let Some(a) = line.strip_prefix("coherent: engine listening on ") {
                engine = a.to_string();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Sidecar {
            child,
            engine,
            admin,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.admin, path)
    }

    fn wait_ready(&self) {
        let ok = wait_until(Duration::from_secs(30), || self.get("/readyz").0 == 200);
        assert!(ok, "not ready: {:?}\n{}", self.get("/readyz"), self.log());
    }

    fn audit(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("status JSON");
        v["audit"].clone()
    }

    /// Waits until every window has `n` checks, then returns the audit object.
    fn wait_checks(&self, n: u64, within: Duration) -> Value {
        let ok = wait_until(within, || {
            let a = self.audit();
            a["windows"]
                .as_array()
                .is_some_and(|w| w.iter().all(|w| w["checks"].as_u64() >= Some(n)))
        });
        let a = self.audit();
        assert!(ok, "checks did not reach {n}: {a:#}\n{}", self.log());
        a
    }
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// A minimal RESP client (engine or redis-server).
struct Resp {
    r: BufReader<TcpStream>,
}

impl Resp {
    fn connect(addr: &str) -> Resp {
        let s = TcpStream::connect(addr).expect("connect cache");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        Resp {
            r: BufReader::new(s),
        }
    }

    fn cmd(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.r.get_mut().write_all(out.as_bytes()).expect("write");
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read");
        let line = line.trim_end().to_string();
        match line.as_bytes().first() {
            Some(b'$') => {
                let n: i64 = line[1..].parse().expect("bulk len");
                if n < 0 {
                    return "(nil)".into();
                }
                let mut buf = vec![0; n as usize + 2];
                self.r.read_exact(&mut buf).expect("bulk");
                String::from_utf8_lossy(&buf[..n as usize]).into_owned()
            }
            _ => line,
        }
    }

    fn set(&mut self, key: &str, value: &str) {
        assert_eq!(self.cmd(&["SET", key, value]), "+OK");
    }

    /// Waits for the sidecar's delete of `key`.
    fn wait_gone(&mut self, key: &str) {
        assert!(
            wait_until(Duration::from_secs(30), || self.cmd(&["EXISTS", key])
                == ":0"),
            "{key} not invalidated within 30 s"
        );
    }
}

fn user_json(id: u32, name: &str, visits: u32) -> String {
    format!(r#"{{"id":{id},"name":"{name}","visits":{visits}}}"#)
}

fn window(a: &Value, i: usize) -> (u64, u64) {
    let w = &a["windows"][i];
    (
        w["checks"].as_u64().unwrap_or(u64::MAX),
        w["inconsistencies"].as_u64().unwrap_or(u64::MAX),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const USERS_RULE: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}"]
double_delete = "0"
value = { format = "json", columns = ["id", "name", "visits"] }
"#;

/// Orders keep the double delete (3 s): it is the later invalidation that clears
/// the false-alarm case.
const ORDERS_RULE: &str = r#"
[[rules]]
table = "app.orders"
keys = ["order:{id}"]
double_delete = "3s"
value = { format = "json", columns = ["id", "user_id", "total", "status"] }
"#;

#[test]
fn embedded_healthy_stale_and_false_alarm() {
    let db = mariadb();
    schema(&db);
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2'),(3,'u3@x','U3'),(4,'u4@x','U4'),(5,'u5@x','U5'),(6,'u6@x','U6'),(7,'u7@x','U7'),(8,'u8@x','U8');
         INSERT INTO app.orders (id, user_id, total) VALUES (10, 1, 5.00);",
    )
    .expect("seed");
    let dir = tmpdir("embedded");
    let cfg = write_config(
        &dir,
        &db.url(),
        "kind = \"embedded\"",
        &format!("{USERS_RULE}{ORDERS_RULE}"),
    );
    let s = Sidecar::start(&cfg);
    s.wait_ready();
    let a = s.audit();
    assert_eq!(a["sample"], 1.0, "{a:#}");
    assert_eq!(window(&a, 0), (0, 0));
    let mut c = Resp::connect(&s.engine);

    // (a) Healthy: every update is invalidated and refilled with the new row.
    const N: u32 = 5;
    for id in 1..=N {
        c.set(&format!("user:{id}"), &user_json(id, &format!("U{id}"), 0));
        db.sql(&format!("UPDATE app.users SET visits = 1 WHERE id = {id}"))
            .expect("update");
        c.wait_gone(&format!("user:{id}"));
        c.set(&format!("user:{id}"), &user_json(id, &format!("U{id}"), 1));
    }
    let a = s.wait_checks(u64::from(N), Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (u64::from(N), 0), "{a:#}");
        assert_eq!(a["windows"][i]["consistency"], 1.0, "{a:#}");
        assert_eq!(a["windows"][i]["nines"], 12.0, "{a:#}");
    }
    assert_eq!(a["windows"][0]["delay_ms"], 2000);
    assert_eq!(a["windows"][1]["delay_ms"], 5000);
    assert_eq!(a["errors"], 0, "{a:#}");
    assert_eq!(a["dropped"], 0, "{a:#}");
    assert_eq!(a["invalidation_lag"]["count"], u64::from(N), "{a:#}");
    assert_eq!(a["last_inconsistent"], serde_json::json!([]), "{a:#}");

    // (b) Stale: after the delete a plain fill puts the old row back, K times.
    let stale: Vec<u32> = vec![6, 7, 8];
    for &id in &stale {
        c.set(&format!("user:{id}"), &user_json(id, &format!("U{id}"), 0));
        db.sql(&format!(
            "UPDATE app.users SET name = 'new{id}' WHERE id = {id}"
        ))
        .expect("update");
        c.wait_gone(&format!("user:{id}"));
        c.set(&format!("user:{id}"), &user_json(id, &format!("U{id}"), 0));
    }
    let total = u64::from(N) + stale.len() as u64;
    let a = s.wait_checks(total, Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (total, stale.len() as u64), "{a:#}");
        let ratio = a["windows"][i]["consistency"].as_f64().unwrap_or(-1.0);
        assert!((ratio - 5.0 / 8.0).abs() < 1e-9, "{a:#}");
    }
    let listed = a["last_inconsistent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Each key once per window.
    assert_eq!(listed.len(), 2 * stale.len(), "{a:#}");
    let now_s = now_ms() / 1000;
    for &id in &stale {
        let key = format!("user:{id}");
        let mine: Vec<&Value> = listed.iter().filter(|e| e["key"] == key.as_str()).collect();
        assert_eq!(mine.len(), 2, "{key}: {a:#}");
        let delays: Vec<u64> = mine.iter().filter_map(|e| e["delay_ms"].as_u64()).collect();
        assert!(delays.contains(&2000) && delays.contains(&5000), "{a:#}");
        for e in mine {
            assert_eq!(e["table"], "app.users", "{e}");
            assert!(
                e["position"].as_str().is_some_and(|p| p.contains(':')),
                "{e}"
            );
            let ct = e["commit_time"].as_u64().unwrap_or(0);
            assert!(ct > 0 && ct <= now_s, "{e}");
            assert_eq!(e["cached"], user_json(id, &format!("U{id}"), 0), "{e}");
            let expected: Value =
                serde_json::from_str(e["expected"].as_str().unwrap_or("")).expect("expected");
            assert_eq!(
                expected,
                serde_json::json!({"id": id, "name": format!("new{id}"), "visits": 0}),
                "{e}"
            );
            assert!(e["written_ms"].as_i64().is_some(), "{e}");
            assert!(
                e["checked_at_ms"].as_i64().unwrap_or(0) >= e["written_ms"].as_i64().unwrap_or(0),
                "{e}"
            );
        }
    }
    let (_, metrics) = s.get("/metrics");
    for line in [
        format!("coherent_audit_checks_total{{window=\"2s\"}} {total}"),
        format!("coherent_audit_checks_total{{window=\"5s\"}} {total}"),
        "coherent_audit_inconsistencies_total{window=\"2s\"} 3".to_string(),
        "coherent_audit_inconsistencies_total{window=\"5s\"} 3".to_string(),
        "coherent_audit_check_errors_total 0".to_string(),
        "coherent_audit_samples_dropped_total 0".to_string(),
        "coherent_audit_consistency_ratio{window=\"2s\"} 0.625".to_string(),
        format!("coherent_audit_invalidation_lag_seconds_count {total}"),
    ] {
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("coherent_audit_consistency_nines{window=\"5s\"} 0.42"),
        "{metrics}"
    );

    // (c) False alarm: the row changes again and a reader refills the old value
    // after that second delete (the classic race); the check at 2 s sees the old
    // value against the new row, but the double delete (3 s after each commit)
    // removes it before the re-read 2.5 s later, so nothing is counted.
    c.set(
        "order:10",
        r#"{"id":10,"user_id":1,"total":"5.00","status":"new"}"#,
    );
    let t0 = Instant::now();
    db.sql("UPDATE app.orders SET status = 'paid' WHERE id = 10")
        .expect("update 1");
    c.wait_gone("order:10");
    let old = r#"{"id":10,"user_id":1,"total":"5.00","status":"paid"}"#;
    c.set("order:10", old);
    std::thread::sleep(Duration::from_millis(400).saturating_sub(t0.elapsed()));
    db.sql("UPDATE app.orders SET status = 'shipped' WHERE id = 10")
        .expect("update 2");
    c.wait_gone("order:10");
    c.set("order:10", old);
    let before_check = t0.elapsed();
    assert!(
        before_check < Duration::from_millis(1800),
        "too slow to set up the race ({before_check:?}); the check may already have run"
    );
    let total = total + 2;
    let a = s.wait_checks(total, Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (total, stale.len() as u64), "{a:#}");
    }
    assert!(
        a["cleared"].as_u64() >= Some(1),
        "no mismatch was seen: {a:#}"
    );
    assert_eq!(a["errors"], 0, "{a:#}");
}

#[test]
fn external_redis_stale_by_value_and_by_write_time() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis = RedisServer::start(&[]).expect("start redis-server");
    let db = mariadb();
    schema(&db);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2')")
        .expect("seed");
    let dir = tmpdir("redis");
    let rules = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]
double_delete = "0"
value = { format = "json", columns = ["id", "name", "visits"] }
"#;
    let cfg = write_config(
        &dir,
        &db.url(),
        &format!("kind = \"redis\"\nurl = \"{}\"", redis.url()),
        rules,
    );
    let s = Sidecar::start(&cfg);
    s.wait_ready();
    let mut c = Resp::connect(&format!("127.0.0.1:{}", redis.port()));
    // User 1: a stale value by content (renderer), filled through a lease that
    // recorded its write time. User 2: both keys refilled correctly, the email key's
    // write time after the commit.
    let before_ms = now_ms().saturating_sub(10_000);
    for k in ["user:1", "user:email:u1@x", "user:2", "user:email:u2@x"] {
        c.set(k, "cached");
    }
    db.sql("UPDATE app.users SET name = 'N1' WHERE id = 1")
        .expect("update 1");
    c.wait_gone("user:1");
    c.wait_gone("user:email:u1@x");
    c.set("user:1", &user_json(1, "U1", 0));
    let filled = now_ms();
    assert_eq!(
        c.cmd(&["HSET", "{user:1}:lease", "written", &filled.to_string()]),
        ":1"
    );
    // The email key (no renderer): a value whose recorded write time is before the
    // commit, i.e. one that survived the delete.
    c.set("user:email:u1@x", "1");
    assert_eq!(
        c.cmd(&[
            "HSET",
            "{user:email:u1@x}:lease",
            "written",
            &before_ms.to_string()
        ]),
        ":1"
    );
    db.sql("UPDATE app.users SET visits = 3 WHERE id = 2")
        .expect("update 2");
    c.wait_gone("user:2");
    c.wait_gone("user:email:u2@x");
    c.set("user:2", &user_json(2, "U2", 3));
    c.set("user:email:u2@x", "2");
    assert_eq!(
        c.cmd(&[
            "HSET",
            "{user:email:u2@x}:lease",
            "written",
            &now_ms().to_string()
        ]),
        ":1"
    );
    let a = s.wait_checks(4, Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (4, 2), "{a:#}");
    }
    assert_eq!(a["errors"], 0, "{a:#}");
    let listed = a["last_inconsistent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 4, "{a:#}");
    for e in &listed {
        match e["key"].as_str() {
            Some("user:1") => {
                assert_eq!(e["written_ms"].as_u64(), Some(filled), "{e}");
                assert!(
                    e["expected"].as_str().is_some_and(|x| x.contains("N1")),
                    "{e}"
                );
            }
            Some("user:email:u1@x") => {
                assert_eq!(e["written_ms"].as_u64(), Some(before_ms), "{e}");
                assert_eq!(e["expected"], Value::Null, "{e}");
            }
            other => panic!("unexpected inconsistent key {other:?}: {a:#}"),
        }
    }

    // The cache unreachable: the checks of a new commit are errors, not checks.
    let mut redis = redis;
    redis.kill().expect("kill redis-server");
    db.sql("UPDATE app.users SET visits = 4 WHERE id = 2")
        .expect("update 3");
    let ok = wait_until(Duration::from_secs(40), || {
        s.audit()["errors"].as_u64() >= Some(4)
    });
    let a = s.audit();
    assert!(
        ok,
        "no check errors with the cache down: {a:#}\n{}",
        s.log()
    );
    for i in 0..2 {
        assert_eq!(window(&a, i), (4, 2), "{a:#}");
    }
}

#[test]
fn redis_cluster_stale_value() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let db = mariadb();
    schema(&db);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2')")
        .expect("seed");
    let dir = tmpdir("cluster");
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let cfg = write_config(
        &dir,
        &db.url(),
        &format!("kind = \"redis-cluster\"\nnodes = [{}]", nodes.join(", ")),
        USERS_RULE,
    );
    let s = Sidecar::start(&cfg);
    s.wait_ready();
    // redis-cli -c follows MOVED to the key's node.
    let node = &cluster.nodes[0];
    let cli = |args: &[&str]| {
        let mut a = vec!["-c"];
        a.extend_from_slice(args);
        node.cli(&a).expect("redis-cli").trim().to_string()
    };
    for id in [1, 2] {
        assert_eq!(cli(&["SET", &format!("user:{id}"), "cached"]), "OK");
    }
    db.sql("UPDATE app.users SET name = 'N1' WHERE id = 1; UPDATE app.users SET name = 'N2' WHERE id = 2")
        .expect("update");
    for id in [1, 2] {
        let key = format!("user:{id}");
        assert!(
            wait_until(Duration::from_secs(30), || cli(&["EXISTS", &key]) == "0"),
            "{key} not invalidated"
        );
    }
    // user:1 refilled with the old row through a "lease" (write time recorded),
    // user:2 with the new row.
    assert_eq!(cli(&["SET", "user:1", &user_json(1, "U1", 0)]), "OK");
    let filled = now_ms();
    assert_eq!(
        cli(&["HSET", "{user:1}:lease", "written", &filled.to_string()]),
        "1"
    );
    assert_eq!(cli(&["SET", "user:2", &user_json(2, "N2", 0)]), "OK");
    let a = s.wait_checks(2, Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (2, 1), "{a:#}");
    }
    assert_eq!(a["errors"], 0, "{a:#}");
    let listed = a["last_inconsistent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 2, "{a:#}");
    for e in &listed {
        assert_eq!(e["key"], "user:1", "{e}");
        assert_eq!(e["written_ms"].as_u64(), Some(filled), "{e}");
    }
}

#[test]
fn bad_audit_config_names_the_key() {
    let dir = tmpdir("bad");
    let p = dir.join("bad.toml");
    std::fs::write(
        &p,
        "[engine]\nlisten = \"127.0.0.1:0\"\n\n[audit]\nsample = 2\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--admin-listen", "", "--config"])
        .arg(&p)
        .output()
        .expect("run coherent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml line 5") && err.contains("[audit] sample") && err.contains("2"),
        "{err}"
    );
    // Without a binlog pipeline there is no checker: "audit" is null.
    let p = dir.join("ok.toml");
    std::fs::write(
        &p,
        "[engine]\nlisten = \"127.0.0.1:0\"\n\n[audit]\nsample = 1.0\n",
    )
    .expect("write");
    let s = Sidecar::start(&p);
    let (code, body) = s.get("/status");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(v["audit"], Value::Null, "{v:#}");
    assert!(v.get("audit").is_some(), "{v:#}");
    drop(s);
    // A bad value through the environment names the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--admin-listen", "", "--config"])
        .arg(&p)
        .env("COHERENT_AUDIT_DELAYS_MS", "5000,1000")
        .output()
        .expect("run coherent");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("COHERENT_AUDIT_DELAYS_MS") && err.contains("delays_ms"),
        "{err}"
    );
}
