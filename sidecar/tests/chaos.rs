//! The chaos test of the consistency audit (issue 6, "How it is checked").
//!
//! Real parts, all private to the test: a MariaDB with a row binlog, a `redis-server`
//! as the cache (the sidecar's `kind = "redis"` target), the `coherent` binary running
//! the binlog pipeline with the online checker, writers committing updates, and
//! readers going through the cache-aside library with leases. The test injects the
//! three faults of the issue and tracks, itself, every stale value it causes; the
//! online checker (`/status` "audit") and the offline audit (`coherent audit`) must
//! report exactly that ground truth: no false positive, no miss.
//!
//! Phases, in this order (each fault's rows are disjoint, see the `*_ROWS` constants):
//! 1. Healthy: writers + lease readers, sidecar up. Online: every window 0
//!    inconsistencies, consistency exactly 1.0 over all sampled invalidations.
//! 2. `kill -9` of the sidecar mid-load; writes continue while it is down (the
//!    KILL_ROWS keys cached before are now really stale, and the only stale ones:
//!    the writers' rows of this phase are never cached). The offline audit runs while
//!    the sidecar is down and must name exactly the KILL_ROWS keys stale. The sidecar
//!    stays down longer than the largest window after the last commit, then restarts
//!    from the checkpoint: the replay deletes them (nothing lost) and the offline audit
//!    is clean again.
//! 3. The target Redis stopped (SIGSTOP) for seconds while rows change: the deletes go
//!    to the durable retry queue and land after SIGCONT. Nothing lost.
//! 4. Plain `SET` fills without leases, made stale on purpose (the classic race: read
//!    the old row, the writer commits, the sidecar deletes, then SET the old value).
//!    These are the only stale keys at the end: the audit must name exactly them.
//!
//! Phase 4 comes last on purpose: the replay after `kill -9` re-deletes the keys of
//! every transaction after the checkpoint, and retried deletes land late, so a stale
//! value planted before them could be wiped and the ground truth would depend on
//! timing.
//!
//! Ground truth of the online checker (`sample = 1.0`, windows 1 s and 5 s), asserted
//! per phase from the `/status` counters:
//! - phase 1 (first process): checks = invalidations committed in every window, 0
//!   inconsistencies, consistency 1.0, no error, nothing dropped;
//! - phase 2 (the restarted process counts from zero): checks = transactions it
//!   replayed, 0 inconsistencies;
//! - phase 3: 0 checks and 0 inconsistencies, one check error per outage sample and
//!   window (Redis is held stopped until all of them resolved);
//! - phase 4: 1 s window +0 inconsistencies, 5 s window +one per stale key, and
//!   `last_inconsistent` names exactly those keys with their cached value.
//!
//! The test asserts no absolute time: every wait polls a condition with a generous
//! deadline, and the online ground truth is made exact by ordering (the `/status`
//! counters are used as barriers), never by sleeping "long enough".

mod common;

use cache_aside::{Cache, CacheClient, Options};
use common::{mariadb, tmpdir, wait_until, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions, RedisServer};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows 1..=ROWS exist at the start.
const ROWS: i64 = 150;
/// Written by the writers and read by the lease readers throughout.
const LIVE_WRITTEN: RangeInclusive<i64> = 1..=95;
/// Read by the readers (negative entries once deleted), deleted in phase 1.
const DELETED_ROWS: RangeInclusive<i64> = 96..=100;
/// Phase 4: plain SET fills made stale on purpose. Nobody else touches them.
const STALE_ROWS: RangeInclusive<i64> = 101..=106;
/// Phase 3: cached before the Redis stop, updated while it is stopped.
const OUTAGE_ROWS: RangeInclusive<i64> = 111..=130;
/// Phase 2: cached before the kill, updated while the sidecar is down.
const KILL_ROWS: RangeInclusive<i64> = 131..=140;
/// Phase 2: the writers' rows around the kill and while the sidecar is down. Nobody
/// reads them, so they are never cached: while the sidecar is down the stale keys are
/// exactly the KILL_ROWS ones, whatever the moment of the kill (a reader's fill of a
/// row the writers change would make the stale set depend on timing).
const KILL_LOAD_ROWS: RangeInclusive<i64> = 141..=150;

/// The online checker's windows. The gap between them (4 s) is the margin phase 4
/// relies on (see there); short so the test stays short.
const DELAYS_MS: [u64; 2] = [1000, 5000];
/// A mismatch is re-read after this before it counts (the spec's default).
const CONFIRM_GRACE_MS: u64 = 1000;

/// What a service caches for a row: the rule's `value` renderer columns. The fields
/// are in alphabetical order on purpose: the renderer (sidecar/src/audit/render.rs)
/// builds a `serde_json::Map`, which serializes its keys sorted (serde_json without
/// `preserve_order`), so the loader's bytes equal the renderer's byte for byte. (The
/// audits compare parsed JSON, so a different field order would still be equal; the
/// test checks the bytes anyway so the figures are not an artefact of that.)
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct User {
    email: String,
    id: i64,
    name: Option<String>,
    visits: i64,
}

fn key(id: i64) -> String {
    format!("user:{id}")
}

fn write_config(dir: &Path, db: &MariaDb, redis: &RedisServer) -> PathBuf {
    // Every invalidation sampled, so the online counts are exact, not estimates.
    let rest = format!(
        r#"[audit]
sample = 1.0
delays_ms = [{}]
confirm_grace_ms = {CONFIRM_GRACE_MS}

[[rules]]
table = "app.users"
keys = ["user:{{id}}"]
value = {{ format = "json", columns = ["email", "id", "name", "visits"] }}
"#,
        DELAYS_MS.map(|d| d.to_string()).join(", ")
    );
    ServeConfig {
        mysql: &db.url(),
        server_id: 64077,
        admin: "ready_max_lag_secs = 60",
        target: &format!(
            "kind = \"redis\"\nurl = \"{}\"\nbatch_timeout = \"1s\"",
            redis.url()
        ),
        // Short backoffs so deletes queued while Redis is stopped land soon after it is back.
        retry: "backoff = \"50ms\"\nmax_backoff = \"1s\"",
        rest: &rest,
        ..ServeConfig::default()
    }
    .write(dir)
}

/// `/status` as JSON (Null when it does not answer).
fn status(s: &Sidecar) -> serde_json::Value {
    let (code, body) = s.get("/status");
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// `kill -9`, and reap.
fn kill9(s: &mut Sidecar) {
    s.signal("-KILL");
    s.wait_exit(Duration::from_secs(30));
}

fn u64_at(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

fn gtid_binlog_pos(db: &MariaDb) -> String {
    db.sql("SELECT @@GLOBAL.gtid_binlog_pos")
        .expect("gtid")
        .trim()
        .to_string()
}

/// Waits until the sidecar has applied every committed transaction, its second
/// deletes have fired and its retry queue is empty: every delete so far has landed.
fn wait_settled(db: &MariaDb, s: &Sidecar, what: &str) {
    let end = gtid_binlog_pos(db);
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(90), || {
        last = status(s);
        let b = &last["binlog"];
        b["gtid"].as_str() == Some(end.as_str())
            && u64_at(b, &["pending_double_deletes"]) == 0
            && u64_at(b, &["retry", "depth"]) == 0
    });
    assert!(
        ok,
        "{what}: sidecar not settled at {end}: {last}\n{}",
        s.log()
    );
}

// ---------------------------------------------------------------------------------
// The online checker's figures.

#[derive(Debug, Clone, Default, PartialEq)]
struct Window {
    delay_ms: u64,
    checks: u64,
    inconsistencies: u64,
    /// Samples whose delete landed after commit + this delay: not checked here.
    late: u64,
    consistency: f64,
    nines: f64,
}

/// One window's counters moved since an earlier reading.
#[derive(Debug, Clone, Copy)]
struct Delta {
    delay_ms: u64,
    checks: u64,
    inconsistencies: u64,
    late: u64,
}

#[derive(Debug, Clone, Default)]
struct Online {
    pending: u64,
    errors: u64,
    dropped: u64,
    failed: serde_json::Value,
    windows: Vec<Window>,
    /// Invalidation lag of the sampled keys: recorded, and deferred (deletes that went
    /// to the retry queue, no lag), and the cumulative count at each bound.
    lag_count: u64,
    lag_deferred: u64,
    lag_le: Vec<(f64, u64)>,
    last_inconsistent: Vec<serde_json::Value>,
}

impl Online {
    fn read(s: &Sidecar) -> Online {
        let st = status(s);
        let a = &st["audit"];
        assert!(
            a.is_object(),
            "/status has no \"audit\" object though [audit] sample = 1.0: {st}"
        );
        let windows = a["windows"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|w| Window {
                        delay_ms: u64_at(w, &["delay_ms"]),
                        checks: u64_at(w, &["checks"]),
                        inconsistencies: u64_at(w, &["inconsistencies"]),
                        late: u64_at(w, &["late"]),
                        consistency: w["consistency"].as_f64().unwrap_or(-1.0),
                        nines: w["nines"].as_f64().unwrap_or(-1.0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Online {
            pending: u64_at(a, &["pending"]),
            errors: u64_at(a, &["errors"]),
            dropped: u64_at(a, &["dropped"]),
            failed: a["failed"].clone(),
            windows,
            lag_count: u64_at(a, &["invalidation_lag", "count"]),
            lag_deferred: u64_at(a, &["invalidation_lag", "deferred"]),
            lag_le: a["invalidation_lag"]["le_secs"]
                .as_array()
                .into_iter()
                .flatten()
                .zip(
                    a["invalidation_lag"]["counts"]
                        .as_array()
                        .into_iter()
                        .flatten(),
                )
                .map(|(le, n)| (le.as_f64().unwrap_or(-1.0), n.as_u64().unwrap_or(0)))
                .collect(),
            last_inconsistent: a["last_inconsistent"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn w(&self, i: usize) -> &Window {
        &self.windows[i]
    }

    /// Sampled keys whose lag was at most `secs` (a bound of the histogram).
    fn lag_at_most(&self, secs: f64) -> u64 {
        let n = self.lag_le.iter().find(|(le, _)| *le == secs);
        n.unwrap_or_else(|| panic!("no lag bound {secs} s: {self:?}"))
            .1
    }

    /// Waits until no sample is pending (every window of every sample resolved).
    fn wait_idle(s: &Sidecar, what: &str) -> Online {
        let mut o = Online::default();
        let ok = wait_until(Duration::from_secs(90), || {
            o = Online::read(s);
            o.pending == 0
        });
        assert!(ok, "{what}: online checker still pending: {o:?}");
        assert!(o.failed.is_null(), "{what}: the checker failed: {o:?}");
        o
    }

    /// Checks, inconsistencies and late samples per window since `before`.
    fn delta(&self, before: &Online) -> Vec<Delta> {
        self.windows
            .iter()
            .zip(&before.windows)
            .map(|(a, b)| Delta {
                delay_ms: a.delay_ms,
                checks: a.checks - b.checks,
                inconsistencies: a.inconsistencies - b.inconsistencies,
                late: a.late - b.late,
            })
            .collect()
    }

    /// The windows as figures for the report.
    fn figures(&self) -> String {
        self.windows
            .iter()
            .map(|w| {
                format!(
                    "[{} ms: {} checks, {} inconsistencies, {} late, consistency {:.6}, {:.2} nines]",
                    w.delay_ms, w.checks, w.inconsistencies, w.late, w.consistency, w.nines
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

// ---------------------------------------------------------------------------------
// Database and cache access of the writers and readers.

async fn load_user(pool: &mysql_async::Pool, id: i64) -> Result<Option<User>, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    let row: Option<(String, i64, Option<String>, i64)> = c
        .exec_first(
            "SELECT email, id, name, visits FROM app.users WHERE id = ?",
            (id,),
        )
        .await?;
    Ok(row.map(|(email, id, name, visits)| User {
        email,
        id,
        name,
        visits,
    }))
}

/// One committed update of row `id` (a new name, sometimes NULL, and one more visit).
/// Returns whether a row changed (it always does while the row exists).
async fn update_user(pool: &mysql_async::Pool, id: i64) -> Result<bool, mysql_async::Error> {
    let name = (fastrand::u8(..8) != 0).then(|| format!("Name {}", fastrand::u32(..)));
    let mut c = pool.get_conn().await?;
    c.exec_drop(
        "UPDATE app.users SET visits = visits + 1, name = ? WHERE id = ?",
        (name, id),
    )
    .await?;
    Ok(c.affected_rows() == 1)
}

/// Updates rows `ids` in one transaction (as [`update_user`] does each).
async fn update_users_in_one_transaction(
    pool: &mysql_async::Pool,
    ids: &[i64],
) -> Result<u64, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    let mut tx = c.start_transaction(mysql_async::TxOpts::default()).await?;
    let mut n = 0;
    for id in ids {
        let name = format!("Name {}", fastrand::u32(..));
        tx.exec_drop(
            "UPDATE app.users SET visits = visits + 1, name = ? WHERE id = ?",
            (name, id),
        )
        .await?;
        n += tx.affected_rows();
    }
    tx.commit().await?;
    Ok(n)
}

fn ttl() -> Duration {
    Duration::from_secs(600)
}

/// Reads through the cache with leases (what every reader of the test does).
async fn read_through(
    cache: &Cache,
    pool: &mysql_async::Pool,
    id: i64,
) -> Result<Option<User>, cache_aside::Error<mysql_async::Error>> {
    cache
        .get_or_load(&key(id), ttl(), || load_user(pool, id))
        .await
}

/// Background writers and readers.
struct Load {
    stop_writers: Arc<AtomicBool>,
    stop_readers: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    readers: Vec<tokio::task::JoinHandle<Result<(), String>>>,
    /// Rows changed by committed updates, in commit order (one invalidated key each).
    updates: Arc<Mutex<Vec<i64>>>,
    reads: Arc<AtomicU64>,
    read_errors: Arc<AtomicU64>,
}

impl Load {
    fn start(
        rt: &tokio::runtime::Runtime,
        pool: &mysql_async::Pool,
        cache: &Cache,
        writers: usize,
        write_rows: RangeInclusive<i64>,
        readers: usize,
    ) -> Load {
        let stop_writers = Arc::new(AtomicBool::new(false));
        let stop_readers = Arc::new(AtomicBool::new(false));
        let updates = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(AtomicU64::new(0));
        let read_errors = Arc::new(AtomicU64::new(0));
        let w = (0..writers)
            .map(|_| {
                let (pool, stop, updates) = (pool.clone(), stop_writers.clone(), updates.clone());
                let rows: Vec<i64> = write_rows.clone().collect();
                rt.spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let id = rows[fastrand::usize(..rows.len())];
                        match update_user(&pool, id).await {
                            Ok(true) => updates.lock().unwrap_or_else(|p| p.into_inner()).push(id),
                            Ok(false) => return Err(format!("row {id} vanished")),
                            Err(e) => return Err(format!("writer: {e}")),
                        }
                        // A steady load, not a flood: 2 cores are shared.
                        tokio::time::sleep(Duration::from_millis(4)).await;
                    }
                    Ok(())
                })
            })
            .collect();
        let r = (0..readers)
            .map(|_| {
                let (pool, cache, stop) = (pool.clone(), cache.clone(), stop_readers.clone());
                let (reads, errors) = (reads.clone(), read_errors.clone());
                rt.spawn(async move {
                    let rows: Vec<i64> = LIVE_WRITTEN.chain(DELETED_ROWS).collect();
                    while !stop.load(Ordering::SeqCst) {
                        let id = rows[fastrand::usize(..rows.len())];
                        match read_through(&cache, &pool, id).await {
                            Ok(Some(u)) if u.id != id => {
                                return Err(format!("read row {} for {id}", u.id))
                            }
                            Ok(_) => reads.fetch_add(1, Ordering::Relaxed),
                            // Cache errors are counted; the readers go on (a service would).
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Ok(())
                })
            })
            .collect();
        Load {
            stop_writers,
            stop_readers,
            writers: w,
            readers: r,
            updates,
            reads,
            read_errors,
        }
    }

    /// Stops the writers; returns the rows they changed (one entry per commit).
    fn stop_writers(&mut self, rt: &tokio::runtime::Runtime) -> Vec<i64> {
        self.stop_writers.store(true, Ordering::SeqCst);
        for h in self.writers.drain(..) {
            rt.block_on(h).expect("writer task").expect("writer");
        }
        std::mem::take(&mut *self.updates.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops the readers; returns (reads, cache errors).
    fn stop_readers(&mut self, rt: &tokio::runtime::Runtime) -> (u64, u64) {
        self.stop_readers.store(true, Ordering::SeqCst);
        for h in self.readers.drain(..) {
            rt.block_on(h).expect("reader task").expect("reader");
        }
        (
            self.reads.load(Ordering::SeqCst),
            self.read_errors.load(Ordering::SeqCst),
        )
    }

    fn stop(mut self, rt: &tokio::runtime::Runtime) -> (Vec<i64>, (u64, u64)) {
        let u = self.stop_writers(rt);
        (u, self.stop_readers(rt))
    }
}

/// The cache, read synchronously by the test itself (never while Redis is stopped).
fn cache_get(c: &mut redis::Connection, id: i64) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key(id)).query(c).expect("GET")
}

/// How the audit must classify the key of row `id` right now: the test's own ground
/// truth, computed from the cache and the database directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Consistent,
    Stale,
    Missing,
    /// No row; the key is absent or the library's negative entry.
    NoRow,
    Orphan,
}

fn classify(cached: Option<&[u8]>, row: Option<&User>) -> Class {
    const NOT_FOUND: &[u8] = b"\0coherent:not-found";
    match (cached, row) {
        (None, Some(_)) => Class::Missing,
        (None, None) => Class::NoRow,
        (Some(c), None) if c == NOT_FOUND => Class::NoRow,
        (Some(_), None) => Class::Orphan,
        (Some(c), Some(r)) => {
            let same =
                serde_json::from_slice::<serde_json::Value>(c).ok() == serde_json::to_value(r).ok();
            if same {
                Class::Consistent
            } else {
                Class::Stale
            }
        }
    }
}

fn run_audit(cfg: &Path, out: &Path) -> (i32, serde_json::Value) {
    let run = common::audit::run_audit(cfg, out);
    if run.report.is_null() {
        panic!("coherent audit wrote no report: {}", run.stderr);
    }
    (run.code.unwrap_or(-1), run.report)
}

/// Unix ms, the clock the lease fill's `written` record uses.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The test's own classification of every key right now (the ground truth): keys per
/// class, and the stale ones by name. Only meaningful while nothing writes.
fn ground_truth(
    rc: &mut redis::Connection,
    read: &dyn Fn(i64) -> Option<User>,
) -> (BTreeMap<&'static str, u64>, BTreeSet<String>) {
    let mut truth = BTreeMap::<&'static str, u64>::new();
    let mut stale = BTreeSet::new();
    for id in 1..=ROWS {
        let name = match classify(cache_get(rc, id).as_deref(), read(id).as_ref()) {
            Class::Consistent => "consistent",
            Class::Stale => {
                stale.insert(key(id));
                "stale"
            }
            Class::Missing => "missing",
            Class::NoRow => "no row",
            Class::Orphan => "orphan",
        };
        *truth.entry(name).or_default() += 1;
    }
    (truth, stale)
}

/// What the stale keys' write time must be in an offline report.
enum Written {
    /// Lease fills: the fill's record, between these Unix ms (the lower bound less the
    /// record's 100 ms resolution is allowed for).
    Between(i64, i64),
    /// Plain `SET` fills record nothing.
    Unknown,
}

/// Asserts that an offline report is exactly the ground truth: the totals of every
/// class, no orphan, and the stale keys named exactly, each with the value the test
/// knows was cached (`stale`: row id -> cached bytes), the row as it is now, and its
/// write time.
fn assert_report_is_truth(
    what: &str,
    r: &serde_json::Value,
    truth: &BTreeMap<&'static str, u64>,
    stale: &BTreeMap<i64, Vec<u8>>,
    read: &dyn Fn(i64) -> Option<User>,
    written: Written,
) {
    let t = &r["totals"];
    let get = |k: &str| truth.get(k).copied().unwrap_or(0);
    assert_eq!(t["rows"], ROWS - DELETED_ROWS.count() as i64, "{what}: {r}");
    assert_eq!(t["stale"], get("stale"), "{what}: {r}");
    assert_eq!(t["stale"], stale.len() as u64, "{what}: {r}");
    assert_eq!(t["consistent"], get("consistent"), "{what}: {r}");
    assert_eq!(t["missing"], get("missing"), "{what}: {r}");
    assert_eq!(t["orphan"], 0, "{what}: {r}");
    let listed: BTreeMap<String, &serde_json::Value> = r["tables"][0]["stale_keys"]
        .as_array()
        .expect("stale_keys")
        .iter()
        .map(|s| (s["key"].as_str().unwrap_or("").to_string(), s))
        .collect();
    assert_eq!(
        listed.keys().cloned().collect::<BTreeSet<_>>(),
        stale.keys().map(|id| key(*id)).collect::<BTreeSet<_>>(),
        "{what}: the offline audit names exactly the keys the test made stale"
    );
    for (id, old) in stale {
        let s = listed[&key(*id)];
        assert_eq!(
            s["cached"].as_str().map(str::as_bytes),
            Some(&old[..]),
            "{what}: {s}"
        );
        let expected: serde_json::Value =
            serde_json::from_str(s["expected"].as_str().unwrap_or("")).expect("expected json");
        assert_eq!(
            Some(expected),
            serde_json::to_value(read(*id)).ok(),
            "{what}: {s}"
        );
        match written {
            Written::Between(from, to) => {
                let w = s["written_ms"].as_i64();
                assert!(
                    w.is_some_and(|w| w >= from - 100 && w <= to),
                    "{what}: written_ms not the lease fill's time (in {from}..={to}): {s}"
                );
            }
            Written::Unknown => assert!(s["written_ms"].is_null(), "{what}: {s}"),
        }
    }
    // Stale keys by age: all of them known (lease fills) or all unknown (plain SET).
    let age = &r["staleness_age"];
    let known: u64 = age["counts"]
        .as_array()
        .map(|c| c.iter().filter_map(|n| n.as_u64()).sum())
        .unwrap_or(0);
    let unknown = u64_at(age, &["unknown"]);
    let n = stale.len() as u64;
    match written {
        Written::Between(..) => assert_eq!((known, unknown), (n, 0), "{what}: {age}"),
        Written::Unknown => assert_eq!((known, unknown), (0, n), "{what}: {age}"),
    }
}

#[test]
fn chaos_online_and_offline_audits_match_the_ground_truth() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let started = Instant::now();
    let db = mariadb(MariaDbOptions::default());
    db.sql(&format!(
        "CREATE DATABASE app;
         CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL,
                                 name VARCHAR(100) NULL, visits INT NOT NULL DEFAULT 0);
         USE app; INSERT INTO app.users (id, email, name) SELECT seq, CONCAT('u', seq, '@x.org'),
             IF(seq % 7 = 0, NULL, CONCAT('Name ', seq)) FROM seq_1_to_{ROWS};
         CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON app.* TO app@'%';"
    ))
    .expect("schema");
    let redis_srv = RedisServer::start(&[]).expect("start private redis-server");
    let dir = tmpdir("chaos");
    let cfg = write_config(&dir, &db, &redis_srv);
    let cp = dir.join("coherent.checkpoint");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pool = mysql_async::Pool::from_url(format!("mysql://app:app@127.0.0.1:{}/app", db.port()))
        .expect("pool");
    let cache = rt.block_on(async {
        let client = CacheClient::redis(&redis_srv.url())
            .await
            .expect("cache client")
            .with_lease_interval(Duration::from_secs(2));
        Cache::new(
            client,
            Options {
                negative_ttl: Some(Duration::from_secs(600)),
                ..Options::default()
            },
        )
    });
    let mut rc = redis::Client::open(redis_srv.url())
        .expect("redis url")
        .get_connection()
        .expect("connect redis");
    let read = |id: i64| rt.block_on(load_user(&pool, id)).expect("select");
    let fill = |ids: RangeInclusive<i64>| {
        for id in ids {
            rt.block_on(read_through(&cache, &pool, id)).expect("fill");
        }
    };
    let update = |id: i64| assert!(rt.block_on(update_user(&pool, id)).expect("update"));

    // ---- Phase 1: healthy sidecar, writers and lease readers --------------------
    let mut a = Sidecar::start(&cfg);
    a.wait_ready(Duration::from_secs(60));
    // The loader's bytes are the renderer's bytes (see `User`).
    fill(1..=1);
    let u1 = read(1).expect("row 1");
    let rendered = serde_json::json!({
        "id": u1.id, "email": u1.email, "name": u1.name, "visits": u1.visits
    });
    assert_eq!(
        cache_get(&mut rc, 1),
        Some(serde_json::to_vec(&rendered).expect("json")),
        "the cache-aside loader and the audit's renderer must produce the same bytes"
    );
    let o0 = Online::read(&a);
    let load = Load::start(&rt, &pool, &cache, 2, LIVE_WRITTEN, 4);
    assert!(wait_until(Duration::from_secs(60), || load
        .updates
        .lock()
        .map(|u| u.len() >= 300)
        .unwrap_or(false)));
    // Deleted rows: readers then cache negative entries, which are not orphans.
    for id in DELETED_ROWS {
        db.sql(&format!("DELETE FROM app.users WHERE id = {id}"))
            .expect("delete");
    }
    assert!(wait_until(Duration::from_secs(60), || load
        .updates
        .lock()
        .map(|u| u.len() >= 600)
        .unwrap_or(false)));
    let (p1_updates, (p1_reads, p1_read_errors)) = load.stop(&rt);
    wait_settled(&db, &a, "phase 1");
    let p1_invalidations = p1_updates.len() as u64 + DELETED_ROWS.count() as u64;
    let mut figures = BTreeMap::<String, String>::new();
    figures.insert(
        "phase 1 (healthy)".into(),
        format!(
            "{} updates + {} deletes committed, {p1_reads} lease reads ({p1_read_errors} cache errors)",
            p1_updates.len(),
            DELETED_ROWS.count()
        ),
    );
    {
        let o0 = &o0;
        let o1 = Online::wait_idle(&a, "phase 1");
        let d = o1.delta(o0);
        for (i, d) in d.iter().enumerate() {
            // sample = 1.0: every invalidation is sampled and, in every window, either
            // checked or late (a delete that lagged more than the delay: possible on a
            // loaded machine, so not asserted 0 here), and with leases and a healthy
            // sidecar none is inconsistent.
            let delay = d.delay_ms;
            assert_eq!(d.inconsistencies, 0, "phase 1 window {delay} ms: {o1:?}");
            assert_eq!(
                d.checks + d.late,
                p1_invalidations,
                "phase 1 window {delay} ms: checks + late vs invalidations committed: {o1:?}"
            );
            assert_eq!(o1.w(i).consistency, 1.0, "{o1:?}");
        }
        assert_eq!((o1.errors, o1.dropped), (0, 0), "{o1:?}");
        // Every sample's lag recorded (no delete went to the retry queue).
        assert_eq!(
            (o1.lag_count - o0.lag_count, o1.lag_deferred),
            (p1_invalidations, 0),
            "{o1:?}"
        );
        figures.insert("phase 1 online".into(), o1.figures());
    }
    // Offline, the healthy cache is clean.
    let (code, r) = run_audit(&cfg, &dir.join("audit-phase1"));
    assert_eq!(code, 0, "phase 1 offline audit: {r}");
    assert_eq!(r["totals"]["stale"], 0, "{r}");
    assert_eq!(r["totals"]["orphan"], 0, "{r}");
    assert!(r["totals"]["consistent"].as_u64().unwrap_or(0) > 0, "{r}");
    figures.insert("phase 1 offline".into(), format!("{}", r["totals"]));

    // ---- Phase 2: kill -9 of the sidecar mid-load, writes while it is down -------
    let filled_from_ms = now_ms();
    fill(KILL_ROWS);
    // The writers change KILL_LOAD_ROWS only (never cached); the readers keep filling
    // the live rows, which nobody changes in this phase (so every fill is current).
    let mut load = Load::start(&rt, &pool, &cache, 2, KILL_LOAD_ROWS, 4);
    let t0 = u64_at(&status(&a), &["binlog", "transactions"]);
    let cp_before = std::fs::read_to_string(&cp).unwrap_or_default();
    let mid = wait_until(Duration::from_secs(60), || {
        u64_at(&status(&a), &["binlog", "transactions"]) >= t0 + 150
            && std::fs::read_to_string(&cp).unwrap_or_default() != cp_before
    });
    assert!(mid, "no progress before the kill: {}", a.log());
    kill9(&mut a);
    // Writer commits counted from here were committed after the kill or in flight at
    // it: either way after the checkpoint, so the new process replays them.
    let updates_at_kill = load.updates.lock().map(|u| u.len()).unwrap_or(0);
    // Changes the sidecar has not seen: the cached KILL_ROWS values are now stale
    // (really: nothing deletes them until the replay).
    let kill_old: BTreeMap<i64, Vec<u8>> = KILL_ROWS
        .map(|id| {
            let v = cache_get(&mut rc, id);
            (
                id,
                v.unwrap_or_else(|| panic!("user:{id} was filled before the kill")),
            )
        })
        .collect();
    let updated_from_ms = now_ms();
    for id in KILL_ROWS {
        update(id);
    }
    for (id, old) in &kill_old {
        assert_eq!(
            cache_get(&mut rc, *id).as_ref(),
            Some(old),
            "user:{id} must stay stale while the sidecar is down"
        );
        assert_eq!(
            classify(Some(old), read(*id).as_ref()),
            Class::Stale,
            "user:{id}"
        );
    }
    // Writers and readers keep going while it is down, then stop: the offline audit
    // below sees a still cache and database, and the new process's ground truth is
    // the replay alone (see the online figures below).
    let n = load.updates.lock().map(|u| u.len()).unwrap_or(0);
    assert!(wait_until(Duration::from_secs(60), || load
        .updates
        .lock()
        .map(|u| u.len() >= n + 100)
        .unwrap_or(false)));
    let p2_updates = load.stop_writers(&rt);
    // Nothing commits from here until after the restart.
    let last_commit = Instant::now();
    let (p2_reads, p2_read_errors) = load.stop_readers(&rt);

    // Offline audit while the sidecar is down: the KILL_ROWS keys are really stale,
    // and they are the only ones (the ground truth says so, and the audit must name
    // exactly them, with the value cached, the row now, and the lease fill's time).
    let (truth_down, stale_down) = ground_truth(&mut rc, &read);
    assert_eq!(
        stale_down,
        KILL_ROWS.map(key).collect::<BTreeSet<_>>(),
        "ground truth while the sidecar is down: {truth_down:?}"
    );
    assert_eq!(truth_down.get("orphan"), None, "{truth_down:?}");
    let (code, r) = run_audit(&cfg, &dir.join("audit-down"));
    assert_eq!(code, 1, "stale keys while the sidecar is down: exit 1: {r}");
    assert_report_is_truth(
        "phase 2 (sidecar down)",
        &r,
        &truth_down,
        &kill_old,
        &read,
        Written::Between(filled_from_ms, updated_from_ms),
    );
    figures.insert(
        "phase 2 offline (sidecar down)".into(),
        format!("{} exit {code}", r["totals"]),
    );

    // The sidecar stays down for longer than the largest window after the last
    // commit (plus 2 s for the binlog's 1 s timestamps), so every transaction the new
    // process replays lands after its commit + every delay. A lower bound only: a
    // slow machine makes the downtime longer, never the ground truth different.
    let max_delay = Duration::from_millis(DELAYS_MS.iter().copied().max().unwrap_or(0));
    let downtime = max_delay + Duration::from_secs(2);
    std::thread::sleep(downtime.saturating_sub(last_commit.elapsed()));
    let b = Sidecar::start(&cfg);
    b.wait_ready(Duration::from_secs(60));
    wait_settled(&db, &b, "phase 2 (replay after kill -9)");
    // Nothing lost: the replay from the checkpoint deleted every key changed while the
    // sidecar was down.
    for id in KILL_ROWS {
        assert_eq!(
            classify(cache_get(&mut rc, id).as_deref(), read(id).as_ref()),
            Class::Missing,
            "user:{id} (changed while the sidecar was down) must have been deleted by the replay"
        );
    }
    // And the offline audit after the catch-up is clean again.
    let (truth_up, stale_up) = ground_truth(&mut rc, &read);
    assert!(stale_up.is_empty(), "after the replay: {truth_up:?}");
    let (code, r) = run_audit(&cfg, &dir.join("audit-caught-up"));
    assert_eq!(code, 0, "after the replay: exit 0: {r}");
    assert_report_is_truth(
        "phase 2 (after the replay)",
        &r,
        &truth_up,
        &BTreeMap::new(),
        &read,
        Written::Unknown,
    );
    figures.insert(
        "phase 2 offline (after the replay)".into(),
        format!("{} exit {code}", r["totals"]),
    );
    // Phase-2 ground truth online. The checker of the killed process died with it (its
    // counters too); the new one samples every transaction it replays from the
    // checkpoint: each changed one row, so one sample each. All of them were committed
    // before the last commit of the downtime, and the sidecar restarted more than the
    // largest delay after it (see `downtime`), so every replayed delete lands after
    // commit + every delay: each sample is `late` in every window, and none is checked
    // (a check right after the delete would call the keys consistent although they
    // were stale the whole window). Nothing else commits until the replay is done.
    let o2 = {
        let o = Online::wait_idle(&b, "phase 2");
        let applied = u64_at(&status(&b), &["binlog", "transactions"]);
        let committed_down = (p2_updates.len() - updates_at_kill + KILL_ROWS.count()) as u64;
        assert!(
            applied >= committed_down,
            "the new process replays at least the {committed_down} transactions committed while the sidecar was down: {applied}"
        );
        for w in &o.windows {
            assert_eq!(
                (w.late, w.checks, w.inconsistencies),
                (applied, 0, 0),
                "phase 2 (new process): every replayed transaction is late in the {} ms window: {o:?}",
                w.delay_ms
            );
        }
        // The lags behind it: each recorded, all over the largest delay.
        assert_eq!((o.lag_count, o.lag_deferred), (applied, 0), "{o:?}");
        assert_eq!(
            o.lag_at_most(5.0),
            0,
            "lag of a replayed delete <= 5 s: {o:?}"
        );
        assert_eq!((o.errors, o.dropped), (0, 0), "phase 2: {o:?}");
        (o, applied, committed_down)
    };
    figures.insert(
        "phase 2 (kill -9)".into(),
        format!(
            "{} writer updates (of never-cached rows; {} of them after the kill) + {} KILL_ROWS updates while down, whose {} cached keys were stale until the replay deleted them; sidecar down >= {downtime:?} after the last commit; {} transactions replayed by the new process ({} committed while it was down); {p2_reads} lease reads ({p2_read_errors} cache errors)",
            p2_updates.len(),
            p2_updates.len() - updates_at_kill,
            KILL_ROWS.count(),
            KILL_ROWS.count(),
            o2.1,
            o2.2,
        ),
    );
    figures.insert("phase 2 online (new process)".into(), o2.0.figures());

    // ---- Phase 3: the target Redis stopped (SIGSTOP) for seconds -----------------
    // SIGSTOP rather than kill + restart: the server keeps its data, so the values
    // cached before the outage are still there when it comes back and the test can
    // see the queued deletes land (a restart without persistence would empty the
    // cache and hide a lost delete). Clients see what a hung server does: requests
    // that do not answer, the sidecar's batches time out into the retry queue.
    fill(OUTAGE_ROWS);
    let s3 = status(&b);
    let o3 = Online::read(&b);
    // Readers keep running on the live rows (they hang while Redis is stopped and
    // resume after); the only writes are the OUTAGE_ROWS updates, so every sample of
    // this phase is one of them.
    let load = Load::start(&rt, &pool, &cache, 0, LIVE_WRITTEN, 4);
    redis_srv.pause(true).expect("SIGSTOP redis");
    // Two transactions of 10 rows. (Against a hung Redis, the sidecar tries each delete
    // batch in line for its batch timeout, twice, before queueing it: one transaction
    // per 2 x batch_timeout. A row per transaction would make this phase long.)
    let outage: Vec<i64> = OUTAGE_ROWS.collect();
    for ids in outage.chunks(10) {
        let n = rt
            .block_on(update_users_in_one_transaction(&pool, ids))
            .expect("update");
        assert_eq!(n, ids.len() as u64);
    }
    // The deletes (first and second) have timed out into the durable retry queue.
    let queued_before = u64_at(&s3, &["binlog", "retry", "queued"]);
    let end = gtid_binlog_pos(&db);
    let mut last = serde_json::Value::Null;
    let queued = wait_until(Duration::from_secs(60), || {
        last = status(&b);
        last["binlog"]["gtid"].as_str() == Some(end.as_str())
            && u64_at(&last, &["binlog", "pending_double_deletes"]) == 0
            && u64_at(&last, &["binlog", "retry", "queued"]) > queued_before
    });
    assert!(queued, "deletes not queued while Redis is stopped: {last}");
    // Ground truth online for this phase: 0 inconsistencies. The OUTAGE_ROWS values
    // are really stale while Redis is stopped, but nobody can read them: Redis stays
    // stopped until the checker has resolved every window of every outage sample
    // (pending back to 0) as a check error ("cache unreachable", counted apart, not
    // a check). So no check of an outage sample can run after SIGCONT, before the
    // retried delete lands.
    let o3_during = Online::wait_idle(&b, "phase 3 (Redis stopped)");
    redis_srv.pause(false).expect("SIGCONT redis");
    // Nothing lost: the retry queue drains by itself (no new write pushes it) and
    // every delete queued during the outage landed.
    wait_settled(&db, &b, "phase 3 (after SIGCONT)");
    for id in OUTAGE_ROWS {
        assert_eq!(
            classify(cache_get(&mut rc, id).as_deref(), read(id).as_ref()),
            Class::Missing,
            "user:{id} (changed while Redis was stopped) must have been deleted by the retry queue"
        );
    }
    let (_, (p3_reads, p3_read_errors)) = load.stop(&rt);
    // Deletes handed to the retry queue during the outage (first and second deletes of
    // the OUTAGE_ROWS keys): all delivered, none dead-lettered.
    let r = status(&b)["binlog"]["retry"].clone();
    let queued_in_outage = u64_at(&r, &["queued"]) - queued_before;
    assert!(
        queued_in_outage >= OUTAGE_ROWS.count() as u64
            && u64_at(&r, &["delivered"]) >= queued_in_outage
            && u64_at(&r, &["dead_letters"]) == 0,
        "retry queue after the outage: {r}"
    );
    figures.insert("retry queue".into(), r.to_string());
    figures.insert(
        "phase 3 (redis SIGSTOP)".into(),
        format!(
            "{} updates while stopped, {queued_in_outage} deletes to the retry queue, all landed after SIGCONT; {p3_reads} lease reads ({p3_read_errors} cache errors)",
            OUTAGE_ROWS.count(),
        ),
    );
    {
        let (before, during) = (&o3, &o3_during);
        let after = Online::wait_idle(&b, "phase 3");
        for d in after.delta(before) {
            // Unreachable cache: errors, not checks. And not late: deletes handed to
            // the retry queue land at a time the applier does not see, so their
            // samples have no lag (`deferred`) and are checked at every window.
            let delay = d.delay_ms;
            assert_eq!(
                (d.checks, d.inconsistencies, d.late),
                (0, 0, 0),
                "phase 3 window {delay} ms: {after:?}"
            );
        }
        assert_eq!(
            (
                after.lag_deferred - before.lag_deferred,
                after.lag_count - before.lag_count
            ),
            (OUTAGE_ROWS.count() as u64, 0),
            "phase 3: every outage sample deferred, no lag recorded: {after:?}"
        );
        assert_eq!(
            during.errors - before.errors,
            (OUTAGE_ROWS.count() * DELAYS_MS.len()) as u64,
            "one check error per outage sample and window: {during:?}"
        );
        figures.insert(
            "phase 3 online".into(),
            format!(
                "{} check errors while Redis was stopped",
                during.errors - before.errors
            ),
        );
    }

    // ---- Phase 4: plain SET fills without leases, stale on purpose ---------------
    // The classic stale-fill race, played deterministically: the filler read the old
    // row, the writer commits, the sidecar deletes (twice: double delete), then the
    // filler SETs the old value. Recorded as ground truth.
    fill(STALE_ROWS);
    let stale_old: BTreeMap<i64, Vec<u8>> = STALE_ROWS
        .map(|id| (id, cache_get(&mut rc, id).expect("filled")))
        .collect();
    let o4 = Online::wait_idle(&b, "before phase 4");
    let committed = Instant::now();
    for id in STALE_ROWS {
        update(id);
    }
    wait_settled(&db, &b, "phase 4 deletes");
    for id in STALE_ROWS {
        assert_eq!(
            cache_get(&mut rc, id),
            None,
            "user:{id} deleted by the sidecar"
        );
    }
    // Online ground truth per window, made exact by ordering: the stale values are
    // SET after the 1 s window has checked every phase-4 sample (the keys were absent
    // then: consistent) and before the 5 s window checks any (then every one is
    // present, differs from its row, still the same after the grace: inconsistent).
    // The test waits for the first and verifies the second on the checker's own
    // counters; nothing else is invalidated meanwhile, so the counters move only for
    // these samples. Window 1 s: +0 inconsistencies, window 5 s: +STALE_ROWS.
    {
        let o4 = &o4;
        let n = STALE_ROWS.count() as u64;
        let mut o = Online::default();
        // A sample whose delete lagged more than 1 s is late there, not checked.
        let done = wait_until(Duration::from_secs(60), || {
            o = Online::read(&b);
            o.w(0).checks + o.w(0).late == o4.w(0).checks + o4.w(0).late + n
        });
        assert!(done, "1 s window of phase 4 not checked: {o:?}");
    }
    let stale_set = Instant::now();
    for (id, old) in &stale_old {
        let _: () = redis::cmd("SET")
            .arg(key(*id))
            .arg(old)
            .query(&mut rc)
            .expect("plain SET");
    }
    {
        let o4 = &o4;
        let o = Online::read(&b);
        assert_eq!(
            o.w(1).checks,
            o4.w(1).checks,
            "the {} ms window checked a phase-4 sample before the stale SET ({:?} after \
             the commits): the ground truth of that window is not exact; {o:?}",
            DELAYS_MS[1],
            stale_set - committed
        );
    }
    let expected_stale: BTreeSet<String> = STALE_ROWS.map(key).collect();

    // ---- Quiesce, then the final figures -------------------------------------------
    wait_settled(&db, &b, "final");
    // The test's own classification of every key (the ground truth).
    let (truth, truth_stale) = ground_truth(&mut rc, &read);
    // Nothing lost: the only stale keys are the ones the test made stale.
    assert_eq!(truth_stale, expected_stale, "ground truth: {truth:?}");
    assert_eq!(truth.get("orphan"), None, "{truth:?}");

    // Offline: exactly the ground truth. A plain SET records no write time on Redis
    // (and the lease fill's record was deleted with its value).
    let (code, r) = run_audit(&cfg, &dir.join("audit-final"));
    assert_eq!(code, 1, "stale keys found: exit 1: {r}");
    assert_report_is_truth("final", &r, &truth, &stale_old, &read, Written::Unknown);
    let t = &r["totals"];
    figures.insert(
        "final offline".into(),
        format!(
            "{t} (consistency {}, {} nines)",
            r["consistency"], r["nines"]
        ),
    );

    {
        let o4 = &o4;
        let o = Online::wait_idle(&b, "final");
        let d = o.delta(o4);
        let n = STALE_ROWS.count() as u64;
        assert_eq!(
            d[0].inconsistencies, 0,
            "window {} ms: {o:?}",
            d[0].delay_ms
        );
        assert_eq!(
            d[0].checks + d[0].late,
            n,
            "window {} ms: {o:?}",
            d[0].delay_ms
        );
        // The 5 s window's ground truth needs every phase-4 delete in time for it (the
        // 4 s margin between the windows, see above): a delete 5 s late on a quiet
        // sidecar is a failure in its own right.
        assert_eq!(
            (d[1].checks, d[1].inconsistencies, d[1].late),
            (n, n, 0),
            "window {} ms: {o:?}",
            d[1].delay_ms
        );
        // Since the restart (phases 2-4), the whole ground truth of the new process.
        assert_eq!(o.w(0).inconsistencies, 0, "{o:?}");
        assert_eq!(o.w(1).inconsistencies, n, "{o:?}");
        let named: BTreeSet<String> = o
            .last_inconsistent
            .iter()
            .map(|i| i["key"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(named, expected_stale, "last_inconsistent: {o:?}");
        for i in &o.last_inconsistent {
            assert_eq!(i["delay_ms"], DELAYS_MS[1], "{i}");
            assert_eq!(i["table"], "app.users", "{i}");
            assert!(i["written_ms"].is_null(), "{i}");
            let id: i64 = i["key"]
                .as_str()
                .and_then(|k| k.strip_prefix("user:"))
                .and_then(|k| k.parse().ok())
                .expect("key");
            assert_eq!(
                i["cached"].as_str().map(str::as_bytes),
                Some(&stale_old[&id][..]),
                "{i}"
            );
        }
        figures.insert(
            "online since restart".into(),
            o.figures()
                + &format!(
                    " errors {} dropped {} lag recorded {} deferred {}",
                    o.errors, o.dropped, o.lag_count, o.lag_deferred
                ),
        );
    }
    eprintln!("chaos figures ({:.1} s):", started.elapsed().as_secs_f64());
    for (k, v) in &figures {
        eprintln!("  {k}: {v}");
    }
    eprintln!("  ground truth at the end: {truth:?}, stale keys {expected_stale:?}");
    drop(b);
    rt.block_on(pool.disconnect()).ok();
    let _ = std::fs::remove_dir_all(&dir);
}
