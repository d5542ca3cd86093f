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
    // Writes stopped. Wait until the binlog is applied: a sentinel row's key goes.
    let sentinel = format!("log:{seq}");
    let shared = client().await;
    shared
        .set(&sentinel, b"1", None)
        .await
        .expect("sentinel set");
    db.sql(&format!("INSERT INTO app.log VALUES ({seq})"))
        .expect("sentinel row");
    let mut applied = false;
    for _ in 0..600 {
        if shared.get(&sentinel).await.expect("sentinel get").is_none() {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(applied, "the binlog was not applied within 30 s");
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
