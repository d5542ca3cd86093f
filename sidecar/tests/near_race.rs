//! Near caches against the binlog (issue 17): readers in several "services", each a
//! `Cache` with its own near cache, read rows of a private MariaDB through the
//! cache-aside library; writers commit updates (half of them also delete the key
//! themselves, half leave it to the binlog); the `coherent` binary tails the binlog and
//! deletes the keys — in its embedded engine, or in a private redis-server (`kind =
//! "redis"`). Once the writers stop and the binlog has been applied, no reader may hold
//! a value older than the database's, in its near cache or the shared one. The same
//! runs again while a killer task keeps killing the tracking connections (`CLIENT KILL`
//! of every client with the `t` flag): each near cache must then empty and refill.

mod common;

use cache_aside::{Cache, CacheClient, NearOptions, Options};
use common::{mariadb, tmpdir, wait_until, ServeConfig, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions, RedisServer};
use mysql_async::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROWS: i64 = 8;
const READERS: usize = 4;
const WRITERS: u64 = 2;
const WRITES_EACH: usize = 250;

fn key(id: i64) -> String {
    format!("item:{id}")
}

const RULES: &str = r#"
[[rules]]
table = "app.items"
keys = ["item:{id}"]

[[rules]]
table = "app.log"
keys = ["log:{seq}"]
"#;

fn schema(db: &MariaDb) {
    db.sql(&format!(
        "CREATE DATABASE IF NOT EXISTS app;
         CREATE TABLE app.items (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
         CREATE TABLE app.log (seq INT PRIMARY KEY);
         INSERT INTO app.items SELECT seq, 0 FROM app.seq_1_to_{ROWS};
         CREATE USER app@'%' IDENTIFIED BY 'app'; GRANT ALL ON app.* TO app@'%';"
    ))
    .expect("schema");
}

fn config(dir: &Path, db: &MariaDb, target: &str, server_id: u32) -> PathBuf {
    ServeConfig {
        mysql: &db.url(),
        server_id,
        admin: "ready_max_lag_secs = 60",
        target,
        retry: "backoff = \"50ms\"\nmax_backoff = \"1s\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(dir)
}

async fn load(pool: &mysql_async::Pool, id: i64) -> Result<Option<i64>, mysql_async::Error> {
    let mut c = pool.get_conn().await?;
    c.exec_first("SELECT v FROM app.items WHERE id = ?", (id,))
        .await
}

/// Kills every tracking connection (CLIENT LIST flag `t`) of the cache server.
async fn kill_trackers(admin: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = match redis::cmd("CLIENT").arg("LIST").query_async(admin).await {
        Ok(l) => l,
        Err(_) => return 0,
    };
    let mut n = 0;
    for line in list.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(id), Some(flags)) = (field("id="), field("flags=")) else {
            continue;
        };
        if flags.contains('t') {
            let r: redis::RedisResult<redis::Value> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(&id)
                .query_async(admin)
                .await;
            if r.is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// Waits until the binlog up to now has been applied: the key of a sentinel row
/// (`log:{seq}`), set first, goes when its insert reaches the cache.
async fn binlog_applied(db: &MariaDb, shared: &CacheClient, seq: u32) {
    let sentinel = format!("log:{seq}");
    shared
        .set(&sentinel, b"1", None)
        .await
        .expect("sentinel set");
    db.sql(&format!("INSERT INTO app.log VALUES ({seq})"))
        .expect("sentinel row");
    for _ in 0..600 {
        if shared.get(&sentinel).await.expect("sentinel get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the binlog was not applied within 30 s");
}

/// One run; returns (stale values found, near hits, near flushes).
async fn run(
    db: &MariaDb,
    cache_url: &str,
    engine: bool,
    kill: bool,
    seq: u32,
) -> (usize, u64, u64) {
    let pool = mysql_async::Pool::from_url(format!("mysql://app:app@127.0.0.1:{}/app", db.port()))
        .expect("pool url");
    let client = || async {
        if engine {
            CacheClient::engine(cache_url).await
        } else {
            CacheClient::redis(cache_url).await
        }
        .expect("cache client")
    };
    let opts = Options {
        ttl_jitter: 0.0,
        near: Some(NearOptions {
            // Quick to notice a dead connection, so the kill runs exercise reconnects.
            timeout: Duration::from_millis(500),
            ping_every: Duration::from_millis(200),
            ..NearOptions::default()
        }),
        ..Options::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut caches = Vec::new();
    let mut readers = Vec::new();
    for i in 0..READERS {
        let cache = Cache::new(client().await, opts.clone());
        caches.push(cache.clone());
        let (pool, stop) = (pool.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64 + 7 * seq as u64);
            while !stop.load(Ordering::Relaxed) {
                let id = rng.i64(1..=ROWS);
                let pool = pool.clone();
                let stall = rng.u64(..3);
                let _ = cache
                    .get_or_load(&key(id), Duration::from_secs(600), || async move {
                        let v = load(&pool, id).await;
                        // A slow query now and then: its fill races the writers.
                        tokio::time::sleep(Duration::from_millis(stall)).await;
                        v
                    })
                    .await;
                if rng.u8(..4) == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let killer = kill.then(|| {
        let stop = stop.clone();
        let url = cache_url.to_string();
        tokio::spawn(async move {
            let mut admin = redis::Client::open(url)
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("admin connection");
            let mut killed = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                killed += kill_trackers(&mut admin).await;
            }
            killed
        })
    });
    let writer_cache = Cache::new(client().await, Options::default());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (pool, cache) = (pool.clone(), writer_cache.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(100 + w + 13 * seq as u64);
            for _ in 0..WRITES_EACH {
                let id = rng.i64(1..=ROWS);
                let mut c = pool.get_conn().await.expect("writer connection");
                c.exec_drop("UPDATE app.items SET v = v + 1 WHERE id = ?", (id,))
                    .await
                    .expect("update");
                drop(c);
                // Half the writers' deletes are "lost" (a crash between commit and
                // delete): only the binlog invalidation remains.
                if rng.bool() {
                    let _ = cache.invalidate(&[&key(id)]).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(..3))).await;
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    // Writes stopped. Wait until the binlog is applied.
    binlog_applied(db, &client().await, seq).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.expect("reader");
    }
    if let Some(k) = killer {
        let killed = k.await.expect("killer");
        assert!(
            killed > 0,
            "the killer found no tracking connection to kill"
        );
    }
    // The pushes of the last deletes are in flight for at most a round trip or two;
    // a stale value is one still there after that.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stale = 0;
    let (mut near_hits, mut flushes) = (0, 0);
    for cache in &caches {
        for id in 1..=ROWS {
            let truth = load(&pool, id).await.expect("truth");
            let pool = pool.clone();
            let got = cache
                .get_or_load(&key(id), Duration::from_secs(600), || async move {
                    load(&pool, id).await
                })
                .await
                .expect("final read");
            if got != truth {
                eprintln!("stale: {} holds {got:?}, the database {truth:?}", key(id));
                stale += 1;
            }
        }
        let m = cache.metrics().snapshot();
        near_hits += m.near_hits;
        flushes += m.near_flushes;
    }
    pool.disconnect().await.expect("pool disconnect");
    (stale, near_hits, flushes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_caches_hold_no_stale_value_once_writes_stop() {
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    let redis = RedisServer::start(&[]).expect("redis-server must be installed");
    let mut seq = 0;
    for (name, engine) in [("engine", true), ("redis", false)] {
        let dir = tmpdir(&format!("near-race-{name}"));
        let target = if engine {
            "kind = \"embedded\"".to_string()
        } else {
            format!("kind = \"redis\"\nurl = \"{}\"", redis.url())
        };
        let cfg = config(&dir, &db, &target, 64100 + seq);
        let s = Sidecar::start_ready(&cfg);
        let url = if engine {
            format!("redis://{}", s.engine)
        } else {
            redis.url()
        };
        for kill in [false, true] {
            seq += 1;
            let (stale, near_hits, flushes) = run(&db, &url, engine, kill, seq).await;
            eprintln!(
                "{name}, tracking connections killed: {kill}: {stale} stale, {near_hits} near hits, {flushes} near flushes"
            );
            assert_eq!(
                stale, 0,
                "{name} (kill: {kill}): stale values once writes stopped"
            );
            assert!(near_hits > 0, "{name}: the near caches were never used");
            if kill {
                assert!(
                    flushes > 0,
                    "{name}: killed connections emptied no near cache"
                );
            }
        }
        drop(s);
        assert!(wait_until(Duration::from_secs(1), || true));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `COHERENT_BENCH_<name>` as a number, or `default`.
fn bench_env(name: &str, default: u64) -> u64 {
    std::env::var(format!("COHERENT_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// p50, p99 and max of `v` (sorted here), in ms.
fn percentiles(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99), at(1.0))
}

/// Commit-to-near-invalidation lag at `rate` row changes/s for `secs` seconds: every
/// changed row is in the near cache before its (single) update; the time is from the
/// UPDATE's return (autocommit) to the key leaving the near cache, one monotonic
/// clock for both.
async fn lag(
    db: &MariaDb,
    url: &str,
    engine: bool,
    rate: u64,
    secs: u64,
    first: i64,
) -> Vec<Duration> {
    let pool = mysql_async::Pool::from_url(format!("mysql://app:app@127.0.0.1:{}/app", db.port()))
        .expect("pool url");
    let n = (rate * secs) as i64;
    let ids: Vec<i64> = (first..first + n).collect();
    db.sql(&format!(
        "INSERT INTO app.items SELECT seq, 0 FROM app.seq_{}_to_{}",
        first,
        first + n - 1
    ))
    .expect("bench rows");
    let client = if engine {
        CacheClient::engine(url).await
    } else {
        CacheClient::redis(url).await
    }
    .expect("cache client");
    let cache = Cache::new(
        client.clone(),
        Options {
            near: Some(NearOptions {
                max_entries: 1_000_000,
                ..NearOptions::default()
            }),
            ..Options::default()
        },
    );
    // The rows' inserts delete their keys too: let them land first. Then fill the
    // shared cache, and read each key once through the near cache.
    binlog_applied(db, &client, first as u32).await;
    // And the delayed second deletes (500 ms by default).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        client.set(&key(*id), b"0", None).await.expect("fill");
    }
    for id in &ids {
        let got: Option<i64> = cache
            .get_or_load(&key(*id), Duration::from_secs(600), || async {
                Ok::<_, std::io::Error>(None)
            })
            .await
            .expect("near fill");
        assert_eq!(got, Some(0));
    }
    assert_eq!(cache.near_len(), ids.len(), "every row in the near cache");
    let committed: Arc<std::sync::Mutex<Vec<(i64, std::time::Instant)>>> = Arc::default();
    let writer = {
        let (pool, committed, ids) = (pool.clone(), committed.clone(), ids.clone());
        tokio::spawn(async move {
            let mut c = pool.get_conn().await.expect("writer connection");
            let start = std::time::Instant::now();
            for (i, id) in ids.iter().enumerate() {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                c.exec_drop("UPDATE app.items SET v = v + 1 WHERE id = ?", (id,))
                    .await
                    .expect("update");
                committed
                    .lock()
                    .expect("lock")
                    .push((*id, std::time::Instant::now()));
            }
        })
    };
    // Watch the committed keys leave the near cache, from a thread of its own that
    // polls every 50 us (finer than the runtime's 1 ms timer, without spinning).
    let watcher = {
        let (cache, committed, total) = (cache.clone(), committed.clone(), ids.len());
        std::thread::spawn(move || {
            let mut lags = Vec::with_capacity(total);
            let mut watching: Vec<(i64, std::time::Instant)> = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(secs + 60);
            while lags.len() < total && std::time::Instant::now() < deadline {
                watching.extend(committed.lock().expect("lock").drain(..));
                watching.retain(|(id, at)| {
                    if cache.near_contains(&key(*id)) {
                        return true;
                    }
                    lags.push(at.elapsed());
                    false
                });
                std::thread::sleep(Duration::from_micros(50));
            }
            lags
        })
    };
    writer.await.expect("writer");
    let lags = tokio::task::spawn_blocking(move || watcher.join().expect("watcher"))
        .await
        .expect("join");
    assert_eq!(lags.len(), ids.len(), "every change reached the near cache");
    pool.disconnect().await.expect("pool disconnect");
    lags
}

/// Latency and throughput of one task reading one key: from the near cache, and with
/// a GET to the shared cache.
async fn hit_vs_get(url: &str, engine: bool, n: u64) -> [(f64, f64, f64); 2] {
    let client = if engine {
        CacheClient::engine(url).await
    } else {
        CacheClient::redis(url).await
    }
    .expect("cache client");
    client.set("bench:hot", b"42", None).await.expect("set");
    let cache = Cache::new(
        client.clone(),
        Options {
            near: Some(NearOptions::default()),
            ..Options::default()
        },
    );
    let read = || async {
        cache
            .get_or_load("bench:hot", Duration::from_secs(600), || async {
                Ok::<Option<i64>, std::io::Error>(None)
            })
            .await
            .expect("read")
    };
    read().await;
    assert!(cache.near_contains("bench:hot"));
    let mut out = [(0.0, 0.0, 0.0); 2];
    for (slot, near) in [(0, true), (1, false)] {
        let mut each = Vec::with_capacity(n as usize);
        let start = std::time::Instant::now();
        for _ in 0..n {
            let t = std::time::Instant::now();
            if near {
                assert_eq!(read().await, Some(42));
            } else {
                assert!(client.get("bench:hot").await.expect("get").is_some());
            }
            each.push(t.elapsed());
        }
        let ops = n as f64 / start.elapsed().as_secs_f64();
        let (p50, p99, _) = percentiles(&mut each);
        out[slot] = (p50 * 1000.0, p99 * 1000.0, ops);
    }
    out
}

/// bench/near-cache.sh: run with `--ignored --nocapture`, in release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/near-cache.sh"]
async fn near_cache_bench() {
    let secs = bench_env("SECS", 5);
    let rates = [bench_env("RATE_LOW", 1000), bench_env("RATE_HIGH", 5000)];
    let hits = bench_env("HITS", 20_000);
    let db = mariadb(MariaDbOptions::default());
    schema(&db);
    let redis = RedisServer::start(&[]).expect("redis-server must be installed");
    let mut first = 1_000_000;
    let mut results = Vec::new();
    for (name, engine) in [("engine", true), ("redis", false)] {
        let dir = tmpdir(&format!("near-bench-{name}"));
        let target = if engine {
            "kind = \"embedded\"".to_string()
        } else {
            format!("kind = \"redis\"\nurl = \"{}\"", redis.url())
        };
        let cfg = config(&dir, &db, &target, 64200 + engine as u32);
        let s = Sidecar::start_ready(&cfg);
        let url = if engine {
            format!("redis://{}", s.engine)
        } else {
            redis.url()
        };
        for rate in rates {
            let mut l = lag(&db, &url, engine, rate, secs, first).await;
            first += (rate * secs) as i64;
            let (p50, p99, max) = percentiles(&mut l);
            println!(
                "lag: {name} {rate}/s: commit to near-cache entry gone p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({} changes)",
                l.len()
            );
            results.push((name, rate, p99));
        }
        let [near, get] = hit_vs_get(&url, engine, hits).await;
        println!(
            "hit: {name}: near-cache hit p50 {:.1} us, p99 {:.1} us, {:.0} ops/s; shared GET p50 {:.1} us, p99 {:.1} us, {:.0} ops/s; near/GET latency p50 1/{:.0}, throughput x{:.0}",
            near.0, near.1, near.2, get.0, get.1, get.2,
            get.0 / near.0.max(0.001),
            near.2 / get.2.max(1.0)
        );
        drop(s);
        let _ = std::fs::remove_dir_all(dir);
    }
    for (name, rate, p99) in results {
        println!(
            "goal: {name} {rate}/s p99 {p99:.2} ms {} 5 ms",
            if p99 < 5.0 { "<" } else { ">=" }
        );
    }
}
