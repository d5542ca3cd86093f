//! The online audit checker of `coherent serve` (`[audit]`), with the real binary
//! against a private MariaDB (and a private redis-server for the external targets):
//! correct refills count as consistent checks, stale fills as exactly one
//! inconsistency per window and key (listed in `/status` with their position and
//! commit time, never checked before commit + delay), a mismatch that a later
//! invalidation clears within the grace is not counted, deleted rows (negative entry
//! fine, a value left behind is not), values without a renderer judged by the write
//! time real lease fills record (LEASESET on the engine, the cache-aside script on
//! Redis), deletes that land late counted `late` instead of checked, deletes refused
//! by the target counted `deferred`, sampling at 0.5 and drops at `max_pending`, and
//! a bad `[audit]` value stops the sidecar with an error naming it.

mod common;

use common::{http_get, mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions, RedisCluster, RedisServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cache-aside library's negative entry ("no such row").
const NOT_FOUND: &str = "\0coherent:not-found";

fn db() -> MariaDb {
    mariadb(MariaDbOptions::default())
}

/// The example schema from migrations/.
fn schema(db: &MariaDb) {
    migrations(db);
}

/// Delays 2 s and 5 s after the commit, mismatches re-read 2.5 s later.
const AUDIT: &str = r#"
[audit]
sample = 1.0
delays_ms = [2000, 5000]
confirm_grace_ms = 2500
"#;

fn write_config(dir: &Path, url: &str, target: &str, audit: &str, rules: &str) -> PathBuf {
    ServeConfig {
        mysql: url,
        server_id: 64011,
        target,
        rest: &format!("{audit}\n{rules}"),
        ..ServeConfig::default()
    }
    .write(dir)
}

fn start(config: &Path) -> Sidecar {
    Sidecar::start_ready(config)
}

/// The `"audit"` object of `/status`.
fn audit(s: &Sidecar) -> Value {
    let (code, body) = s.get("/status");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("status JSON");
    v["audit"].clone()
}

/// Waits until every window has at least `n` checks, then returns the audit object.
fn wait_checks(s: &Sidecar, n: &[u64], within: Duration) -> Value {
    let ok = wait_until(within, || {
        let a = audit(s);
        n.iter()
            .enumerate()
            .all(|(i, n)| a["windows"][i]["checks"].as_u64() >= Some(*n))
    });
    let a = audit(s);
    assert!(ok, "checks did not reach {n:?}: {a:#}\n{}", s.log());
    a
}

/// Waits until the checker has taken `n` sampled keys (their lag or deferral).
fn wait_sampled(s: &Sidecar, n: u64) -> Value {
    let ok = wait_until(Duration::from_secs(30), || {
        let l = &audit(s)["invalidation_lag"];
        l["count"].as_u64().unwrap_or(0) + l["deferred"].as_u64().unwrap_or(0) >= n
    });
    let a = audit(s);
    assert!(ok, "{n} samples not taken: {a:#}\n{}", s.log());
    a
}

/// `(checks, inconsistencies, late)` of window `i`.
fn window(a: &Value, i: usize) -> (u64, u64, u64) {
    let w = &a["windows"][i];
    let n = |f: &str| w[f].as_u64().unwrap_or(u64::MAX);
    (n("checks"), n("inconsistencies"), n("late"))
}

fn set(c: &mut Resp, key: &str, value: &str) {
    assert_eq!(c.cmd(&["SET", key, value]), "+OK", "SET {key}");
}

/// Waits for the sidecar's delete of `key`.
fn wait_gone(c: &mut Resp, key: &str) {
    assert!(
        wait_until(Duration::from_secs(30), || !c.exists(key)),
        "{key} not invalidated within 30 s"
    );
}

/// A fill through the engine's lease: LEASEGET (a miss grants a token), LEASESET.
fn engine_lease_fill(c: &mut Resp, key: &str, value: &str) {
    let got = c.cmd(&["LEASEGET", key]);
    let token = got
        .strip_prefix("lease\n:")
        .unwrap_or_else(|| panic!("LEASEGET {key}: {got:?}"))
        .to_string();
    assert_eq!(
        c.cmd(&["LEASESET", key, &token, value]),
        "+OK",
        "LEASESET {key}"
    );
}

/// A fill through the cache-aside library's lease scripts on Redis (what its
/// `get_or_load` runs): LEASEGET grants our token, LEASESET stores the value and
/// records `written` in the side key.
fn redis_lease_fill(run: &mut dyn FnMut(&[&str]) -> String, key: &str, value: &str) {
    use cache_aside::scripts::{lease_key, LEASEGET, LEASESET};
    let side = lease_key(key);
    let token = fastrand::i64(1..i64::MAX).to_string();
    let got = run(&["EVAL", LEASEGET, "2", key, &side, "10000", &token]);
    assert!(got.starts_with("lease") && got.contains(&token), "{got:?}");
    let ok = run(&["EVAL", LEASESET, "2", key, &side, &token, value, "0"]);
    assert!(ok == "+OK" || ok == "OK", "LEASESET {key}: {ok:?}");
}

fn user_json(id: u32, name: &str, visits: u32) -> String {
    format!(r#"{{"id":{id},"name":"{name}","visits":{visits}}}"#)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sleeps until the wall clock is past `ms` (so a commit after it falls in a later
/// second than a write at `ms - 1000`).
fn sleep_past(ms: u64) {
    let now = now_ms();
    if ms > now {
        std::thread::sleep(Duration::from_millis(ms - now));
    }
}

/// Every listed inconsistency was checked no earlier than its commit + delay.
fn assert_checked_late_enough(listed: &[Value]) {
    for e in listed {
        let ct = e["commit_time"].as_i64().unwrap_or(i64::MAX / 4);
        let delay = e["delay_ms"].as_i64().unwrap_or(i64::MAX / 4);
        let at = e["checked_at_ms"].as_i64().unwrap_or(0);
        assert!(
            at >= ct * 1000 + delay,
            "checked before commit + delay: {e}"
        );
    }
}

fn listed(a: &Value) -> Vec<Value> {
    a["last_inconsistent"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const USERS_RULE: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}"]
double_delete = "0"
value = { format = "json", columns = ["id", "name", "visits"] }
"#;

/// Two templates; the value is the row only under the first (the default of
/// `value.keys`); `user:email:*` holds the id and is judged by write time.
const USERS_EMAIL_RULE: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]
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
    let db = db();
    schema(&db);
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2'),(3,'u3@x','U3'),(4,'u4@x','U4'),(5,'u5@x','U5'),(6,'u6@x','U6'),(7,'u7@x','U7'),(8,'u8@x','U8');
         INSERT INTO app.orders (id, user_id, total) VALUES (10, 1, 5.00);",
    )
    .expect("seed");
    let dir = tmpdir("audit-online-embedded");
    let cfg = write_config(
        &dir,
        &db.url(),
        "kind = \"embedded\"",
        AUDIT,
        &format!("{USERS_RULE}{ORDERS_RULE}"),
    );
    let s = start(&cfg);
    let a = audit(&s);
    assert_eq!(a["sample"], 1.0, "{a:#}");
    assert_eq!(window(&a, 0), (0, 0, 0));
    assert_eq!(a["failed"], Value::Null, "{a:#}");
    let mut c = Resp::connect(&s.engine);

    // (a) Healthy: every update is invalidated and refilled with the new row.
    const N: u64 = 5;
    for id in 1..=N as u32 {
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json(id, &format!("U{id}"), 0),
        );
        db.sql(&format!("UPDATE app.users SET visits = 1 WHERE id = {id}"))
            .expect("update");
        wait_gone(&mut c, &format!("user:{id}"));
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json(id, &format!("U{id}"), 1),
        );
    }
    let a = wait_checks(&s, &[N, N], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (N, 0, 0), "{a:#}");
        assert_eq!(a["windows"][i]["consistency"], 1.0, "{a:#}");
        assert_eq!(a["windows"][i]["nines"], 12.0, "{a:#}");
    }
    assert_eq!(a["windows"][0]["delay_ms"], 2000);
    assert_eq!(a["windows"][1]["delay_ms"], 5000);
    assert_eq!(a["errors"], 0, "{a:#}");
    assert_eq!(a["dropped"], 0, "{a:#}");
    assert_eq!(a["invalidation_lag"]["count"], N, "{a:#}");
    assert_eq!(a["invalidation_lag"]["deferred"], 0, "{a:#}");
    assert_eq!(a["last_inconsistent"], serde_json::json!([]), "{a:#}");

    // (b) Stale: after the delete a plain fill puts the old row back, K times.
    let stale: Vec<u32> = vec![6, 7, 8];
    for &id in &stale {
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json(id, &format!("U{id}"), 0),
        );
        db.sql(&format!(
            "UPDATE app.users SET name = 'new{id}' WHERE id = {id}"
        ))
        .expect("update");
        wait_gone(&mut c, &format!("user:{id}"));
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json(id, &format!("U{id}"), 0),
        );
    }
    let total = N + stale.len() as u64;
    let a = wait_checks(&s, &[total, total], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (total, stale.len() as u64, 0), "{a:#}");
        let ratio = a["windows"][i]["consistency"].as_f64().unwrap_or(-1.0);
        assert!((ratio - 5.0 / 8.0).abs() < 1e-9, "{a:#}");
    }
    let listed = listed(&a);
    // Each key once per window.
    assert_eq!(listed.len(), 2 * stale.len(), "{a:#}");
    assert_checked_late_enough(&listed);
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
            // A plain SET after the delete: the engine still knows when.
            let w = e["written_ms"].as_i64().unwrap_or(0);
            assert!(
                w + 100 > e["commit_time"].as_i64().unwrap_or(0) * 1000,
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
        "coherent_audit_late_total{window=\"2s\"} 0".to_string(),
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
    set(
        &mut c,
        "order:10",
        r#"{"id":10,"user_id":1,"total":"5.00","status":"new"}"#,
    );
    let t0 = Instant::now();
    db.sql("UPDATE app.orders SET status = 'paid' WHERE id = 10")
        .expect("update 1");
    wait_gone(&mut c, "order:10");
    let old = r#"{"id":10,"user_id":1,"total":"5.00","status":"paid"}"#;
    set(&mut c, "order:10", old);
    std::thread::sleep(Duration::from_millis(400).saturating_sub(t0.elapsed()));
    db.sql("UPDATE app.orders SET status = 'shipped' WHERE id = 10")
        .expect("update 2");
    wait_gone(&mut c, "order:10");
    set(&mut c, "order:10", old);
    let before_check = t0.elapsed();
    assert!(
        before_check < Duration::from_millis(1800),
        "too slow to set up the race ({before_check:?}); the check may already have run"
    );
    let total = total + 2;
    let a = wait_checks(&s, &[total, total], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (total, stale.len() as u64, 0), "{a:#}");
    }
    assert!(
        a["cleared"].as_u64() >= Some(1),
        "no mismatch was seen: {a:#}"
    );
    assert_eq!(a["errors"], 0, "{a:#}");
}

/// Deleted rows, the write-time rule on the engine (`OBJECT WRITTEN` of a value
/// filled through LEASESET), and deletes that land late.
#[test]
fn embedded_deletes_write_time_and_late_deletes() {
    let db = db();
    schema(&db);
    db.sql(
        "INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2'),(3,'u3@x','U3'),(4,'u4@x','U4')",
    )
    .expect("seed");
    let dir = tmpdir("audit-online-delete");
    let audit_cfg = "[audit]\nsample = 1.0\ndelays_ms = [1500, 6000]\nconfirm_grace_ms = 1000\n";
    let cfg = write_config(
        &dir,
        &db.url(),
        "kind = \"embedded\"",
        audit_cfg,
        USERS_EMAIL_RULE,
    );
    let s = start(&cfg);
    let mut c = Resp::connect(&s.engine);

    // (1) Write time. A value of the pointer template (no renderer) filled through a
    // lease in db 1 before the commit, then swapped into db 0 after the sidecar's
    // delete: present at the checks with a write time before the commit.
    assert_eq!(c.cmd(&["SELECT", "1"]), "+OK");
    engine_lease_fill(&mut c, "user:email:u3@x", "3");
    let w3: u64 = c
        .cmd(&["OBJECT", "WRITTEN", "user:email:u3@x"])
        .trim_start_matches(':')
        .parse()
        .expect("OBJECT WRITTEN");
    assert_eq!(c.cmd(&["SELECT", "0"]), "+OK");
    sleep_past(w3 + 1100);
    db.sql("UPDATE app.users SET email = 'v3@x' WHERE id = 3")
        .expect("update 3");
    // user:3, user:email:u3@x and user:email:v3@x, deleted (nothing was cached).
    wait_sampled(&s, 3);
    assert_eq!(c.cmd(&["SWAPDB", "0", "1"]), "+OK");
    assert_eq!(c.cmd(&["GET", "user:email:u3@x"]), "3");

    // (2) Deleted rows: user:1 refilled with the negative entry (consistent),
    // user:2 with the old row (inconsistent: the row is gone), user:email:u2@x
    // refilled through a lease after the delete (written after the commit: by the
    // write-time rule, consistent), user:email:u1@x left absent.
    set(&mut c, "user:1", &user_json(1, "U1", 0));
    set(&mut c, "user:2", &user_json(2, "U2", 0));
    db.sql("DELETE FROM app.users WHERE id IN (1, 2)")
        .expect("delete");
    wait_gone(&mut c, "user:1");
    wait_gone(&mut c, "user:2");
    set(&mut c, "user:1", NOT_FOUND);
    set(&mut c, "user:2", &user_json(2, "U2", 0));
    engine_lease_fill(&mut c, "user:email:u2@x", "2");
    let a = wait_checks(&s, &[7, 7], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (7, 2, 0), "{a:#}");
    }
    let l = listed(&a);
    assert_eq!(l.len(), 4, "{a:#}");
    assert_checked_late_enough(&l);
    for e in &l {
        match e["key"].as_str() {
            Some("user:email:u3@x") => {
                assert_eq!(e["cached"], "3", "{e}");
                assert_eq!(e["expected"], Value::Null, "{e}");
                assert_eq!(e["written_ms"].as_u64(), Some(w3), "{e}");
                assert!(
                    e["written_ms"].as_i64().unwrap_or(i64::MAX)
                        < e["commit_time"].as_i64().unwrap_or(0) * 1000,
                    "{e}"
                );
            }
            Some("user:2") => {
                assert_eq!(e["cached"], user_json(2, "U2", 0), "{e}");
                assert_eq!(e["expected"], Value::Null, "row gone: {e}");
            }
            other => panic!("unexpected inconsistent key {other:?}: {a:#}"),
        }
    }

    // (3) Late: the sidecar is stopped while user:4 is updated with its old value
    // cached, past the first delay; resumed, it deletes the key ~3 s after the
    // commit. The 1.5 s window counts both keys late (not as consistent checks); the
    // 6 s window checks them (gone: consistent).
    set(&mut c, "user:4", &user_json(4, "U4", 0));
    // (A panic while stopped still ends the process: Drop sends SIGKILL.)
    s.signal("-STOP");
    db.sql("UPDATE app.users SET name = 'N4' WHERE id = 4")
        .expect("update 4");
    std::thread::sleep(Duration::from_secs(3));
    s.signal("-CONT");
    wait_gone(&mut c, "user:4");
    let a = wait_checks(&s, &[7, 9], Duration::from_secs(40));
    assert_eq!(window(&a, 0), (7, 2, 2), "late, not checked: {a:#}");
    assert_eq!(window(&a, 1), (9, 2, 0), "{a:#}");
    let c0 = a["windows"][0]["consistency"].as_f64().unwrap_or(-1.0);
    assert!(
        (c0 - 5.0 / 7.0).abs() < 1e-9,
        "late is not consistent: {a:#}"
    );
    let lag = &a["invalidation_lag"];
    assert_eq!(lag["count"], 9, "{a:#}");
    // The two late keys' lag is over the first delay.
    let le_1s = lag["counts"][8].as_u64().unwrap_or(0); // le 1.0
    assert!(le_1s <= 7, "{a:#}");
    let (_, metrics) = s.get("/metrics");
    for line in [
        "coherent_audit_late_total{window=\"1500ms\"} 2",
        "coherent_audit_late_total{window=\"6s\"} 0",
        "coherent_audit_checks_total{window=\"1500ms\"} 7",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert_eq!(a["errors"], 0, "{a:#}");
}

/// `sample = 0.5` end to end over one 100-row transaction, with `max_pending = 30`:
/// about half the keys are sampled (bounds that fail with probability ~1e-9), at
/// most 30 wait for checks and the rest are counted dropped.
#[test]
fn embedded_half_sample_and_max_pending() {
    let db = db();
    schema(&db);
    let rows: Vec<String> = (1..=100)
        .map(|i| format!("({i}, 'u{i}@x', 'U{i}')"))
        .collect();
    db.sql(&format!(
        "INSERT INTO app.users (id, email, name) VALUES {}",
        rows.join(",")
    ))
    .expect("seed");
    let dir = tmpdir("audit-online-half");
    let audit_cfg =
        "[audit]\nsample = 0.5\ndelays_ms = [1000, 2000]\nconfirm_grace_ms = 500\nmax_pending = 30\n";
    let cfg = write_config(
        &dir,
        &db.url(),
        "kind = \"embedded\"",
        audit_cfg,
        USERS_RULE,
    );
    let s = start(&cfg);
    db.sql("UPDATE app.users SET visits = visits + 1")
        .expect("update all");
    wait_sampled(&s, 1);
    // The samples of one transaction are taken in one go; let it finish.
    std::thread::sleep(Duration::from_millis(300));
    let a = audit(&s);
    let sampled = a["invalidation_lag"]["count"].as_u64().unwrap_or(0);
    assert!(
        (20..=80).contains(&sampled),
        "sampled {sampled} of 100: {a:#}"
    );
    let kept = sampled.min(30);
    let a = wait_checks(&s, &[kept, kept], Duration::from_secs(30));
    // Settle: nothing more comes.
    std::thread::sleep(Duration::from_millis(500));
    let a2 = audit(&s);
    assert_eq!(a2["windows"], a["windows"], "{a2:#}");
    for i in 0..2 {
        assert_eq!(window(&a, i), (kept, 0, 0), "{a:#}");
    }
    assert_eq!(a["dropped"].as_u64(), Some(sampled - kept), "{a:#}");
    assert_eq!(a["dropped_transactions"], 0, "{a:#}");
    assert_eq!(a["pending"], 0, "{a:#}");
}

#[test]
fn external_redis_lease_fills_and_refused_deletes() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis = RedisServer::start(&[]).expect("start redis-server");
    let db = db();
    schema(&db);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2')")
        .expect("seed");
    let mut c = Resp::connect(&format!("127.0.0.1:{}", redis.port()));
    // The sidecar connects as its own user, so its deletes can be refused later.
    assert_eq!(
        c.cmd(&["ACL", "SETUSER", "sidecar", "on", ">pw", "~*", "&*", "+@all"]),
        "+OK"
    );
    let dir = tmpdir("audit-online-redis");
    let cfg = write_config(
        &dir,
        &db.url(),
        &format!(
            "kind = \"redis\"\nurl = \"redis://sidecar:pw@127.0.0.1:{}\"",
            redis.port()
        ),
        AUDIT,
        USERS_EMAIL_RULE,
    );
    let s = start(&cfg);
    let mut run = |args: &[&str]| c.cmd(args);

    // (1) Healthy: user 2's keys refilled through lease fills after the delete: the
    // row's value, and the email pointer written after the commit.
    for k in ["user:2", "user:email:u2@x"] {
        redis_lease_fill(&mut run, k, "old");
    }
    db.sql("UPDATE app.users SET visits = 3 WHERE id = 2")
        .expect("update 2");
    for k in ["user:2", "user:email:u2@x"] {
        wait_gone(&mut c, k);
    }
    let mut run = |args: &[&str]| c.cmd(args);
    redis_lease_fill(&mut run, "user:2", &user_json(2, "U2", 3));
    redis_lease_fill(&mut run, "user:email:u2@x", "2");
    let a = wait_checks(&s, &[2, 2], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (2, 0, 0), "{a:#}");
    }

    // (2) The target refuses the sidecar's deletes (ACL): they go to the retry queue
    // (deferred: no lag recorded), and the values filled through leases before the
    // commit stay. user:1 is stale by value, user:email:u1@x by its recorded write
    // time.
    assert_eq!(
        c.cmd(&["ACL", "SETUSER", "sidecar", "-unlink", "-del"]),
        "+OK"
    );
    let mut run = |args: &[&str]| c.cmd(args);
    redis_lease_fill(&mut run, "user:1", &user_json(1, "U1", 0));
    redis_lease_fill(&mut run, "user:email:u1@x", "1");
    let w1: u64 = c
        .cmd(&["HGET", "{user:email:u1@x}:lease", "written"])
        .parse()
        .expect("written recorded by LEASESET");
    let w1_value: u64 = c
        .cmd(&["HGET", "{user:1}:lease", "written"])
        .parse()
        .expect("written recorded by LEASESET");
    sleep_past(w1.max(w1_value) + 1100);
    db.sql("UPDATE app.users SET name = 'N1' WHERE id = 1")
        .expect("update 1");
    let a = wait_checks(&s, &[4, 4], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (4, 2, 0), "{a:#}");
    }
    assert_eq!(c.cmd(&["EXISTS", "user:1"]), ":1", "the delete was refused");
    assert_eq!(a["errors"], 0, "{a:#}");
    assert_eq!(a["invalidation_lag"]["count"], 2, "{a:#}");
    assert_eq!(a["invalidation_lag"]["deferred"], 2, "{a:#}");
    let l = listed(&a);
    assert_eq!(l.len(), 4, "{a:#}");
    assert_checked_late_enough(&l);
    for e in &l {
        match e["key"].as_str() {
            Some("user:1") => {
                assert_eq!(e["written_ms"].as_u64(), Some(w1_value), "{e}");
                assert!(
                    e["expected"].as_str().is_some_and(|x| x.contains("N1")),
                    "{e}"
                );
            }
            Some("user:email:u1@x") => {
                assert_eq!(e["written_ms"].as_u64(), Some(w1), "{e}");
                assert_eq!(e["expected"], Value::Null, "{e}");
            }
            other => panic!("unexpected inconsistent key {other:?}: {a:#}"),
        }
    }

    // (3) The cache unreachable: the checks of a new commit are errors, not checks.
    let mut redis = redis;
    redis.kill().expect("kill redis-server");
    db.sql("UPDATE app.users SET visits = 4 WHERE id = 2")
        .expect("update 3");
    let ok = wait_until(Duration::from_secs(40), || {
        audit(&s)["errors"].as_u64() >= Some(4)
    });
    let a = audit(&s);
    assert!(
        ok,
        "no check errors with the cache down: {a:#}\n{}",
        s.log()
    );
    for i in 0..2 {
        assert_eq!(window(&a, i), (4, 2, 0), "{a:#}");
    }
}

#[test]
fn redis_cluster_stale_value() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let cluster = RedisCluster::start().expect("start a redis cluster");
    let db = db();
    schema(&db);
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1,'u1@x','U1'),(2,'u2@x','U2')")
        .expect("seed");
    let dir = tmpdir("audit-online-cluster");
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let cfg = write_config(
        &dir,
        &db.url(),
        &format!("kind = \"redis-cluster\"\nnodes = [{}]", nodes.join(", ")),
        AUDIT,
        USERS_RULE,
    );
    let s = start(&cfg);
    // redis-cli -c follows MOVED to the key's node.
    let node = &cluster.nodes[0];
    let mut cli = |args: &[&str]| {
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
    // user:1 refilled with the old row through a lease (write time recorded by the
    // script), user:2 with the new row.
    redis_lease_fill(&mut cli, "user:1", &user_json(1, "U1", 0));
    let filled: u64 = cli(&["HGET", "{user:1}:lease", "written"])
        .parse()
        .expect("written recorded by LEASESET");
    assert_eq!(cli(&["SET", "user:2", &user_json(2, "N2", 0)]), "OK");
    let a = wait_checks(&s, &[2, 2], Duration::from_secs(40));
    for i in 0..2 {
        assert_eq!(window(&a, i), (2, 1, 0), "{a:#}");
    }
    assert_eq!(a["errors"], 0, "{a:#}");
    let l = listed(&a);
    assert_eq!(l.len(), 2, "{a:#}");
    assert_checked_late_enough(&l);
    for e in &l {
        assert_eq!(e["key"], "user:1", "{e}");
        assert_eq!(e["written_ms"].as_u64(), Some(filled), "{e}");
    }
}

#[test]
fn bad_audit_config_names_the_key() {
    let dir = tmpdir("audit-online-bad");
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
        err.contains("bad.toml:5: [audit] key \"sample\"") && err.contains("2"),
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
    let (code, body) = http_get(&s.admin, "/status");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(v["audit"], Value::Null, "{v:#}");
    assert!(v.get("audit").is_some(), "{v:#}");
    drop(s);
    // Bad values through the environment name the variable: delays out of order,
    // and a delay over a day (DelayQueue would panic on it at run time).
    for (delays, says) in [("5000,1000", "ascending"), ("1000,90000000", "at most")] {
        let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
            .args(["serve", "--admin-listen", "", "--config"])
            .arg(&p)
            .env("COHERENT_AUDIT_DELAYS_MS", delays)
            .output()
            .expect("run coherent");
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("COHERENT_AUDIT_DELAYS_MS")
                && err.contains("delays_ms")
                && err.contains(says),
            "{err}"
        );
    }
}
