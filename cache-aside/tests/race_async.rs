//! The race again, through the public API and real concurrency: reader tasks call
//! `get_or_load` (their loader reads a simulated database, then stalls a random time
//! before the fill), writer tasks call `write` (commit, then delete), and a binlog
//! task invalidates each committed key after a random delay. After the writers stop
//! and the invalidations land, the cache must hold no stale value. The same run
//! without leases is printed for comparison (timing-dependent, so not asserted here;
//! the deterministic `race.rs` asserts it).

mod common;

use cache_aside::{Cache, CacheClient, Options};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEYS: u64 = 3;

fn key_of(tag: &str, k: u64) -> String {
    format!("async:{tag}:{k}")
}

async fn run(
    clients: Vec<CacheClient>,
    invalidator: CacheClient,
    leases: bool,
    tag: &str,
) -> usize {
    let db: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let opts = Options {
        leases,
        ttl_jitter: 0.0,
        ..Options::default()
    };
    let tag: Arc<str> = Arc::from(tag);
    let mut readers = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let cache = Cache::new(c.clone(), opts.clone());
        let (db, stop, tag) = (db.clone(), stop.clone(), tag.clone());
        readers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            while !stop.load(Ordering::Relaxed) {
                let k = rng.u64(..KEYS);
                // Most loads are quick; one in five stalls long (a slow query, a GC pause),
                // so its fill lands after quicker, fresher ones.
                let stall = if rng.u8(..5) == 0 { 20 } else { rng.u64(..2) };
                let db = db.clone();
                let _ = cache
                    .get_or_load(&key_of(&tag, k), Duration::from_secs(600), || async move {
                        let v = db.lock().unwrap().get(&k).copied().unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(stall)).await;
                        Ok::<_, std::io::Error>(Some(v))
                    })
                    .await;
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let cache = Cache::new(clients[0].clone(), opts.clone());
        let (db, tx, tag) = (db.clone(), tx.clone(), tag.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(100 + w);
            for _ in 0..150 {
                let k = rng.u64(..KEYS);
                let name = key_of(&tag, k);
                let (db, tx, tag) = (db.clone(), tx.clone(), tag.clone());
                cache
                    .write(&[&name], || async move {
                        *db.lock().unwrap().entry(k).or_insert(0) += 1; // commit
                        let _ = tx.send(key_of(&tag, k)); // into the binlog
                        Ok::<_, std::io::Error>(())
                    })
                    .await
                    .expect("write");
                tokio::time::sleep(Duration::from_millis(rng.u64(..4))).await;
            }
        }));
    }
    drop(tx);
    let binlog = tokio::spawn(async move {
        // Each commit's invalidation lands 0-3 ms after it (the binlog's lag), without
        // queueing behind earlier ones.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut pending = Vec::new();
        while let Some(k) = rx.recv().await {
            let (inv, lag) = (invalidator.clone(), rng.u64(..3000));
            pending.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(lag)).await;
                inv.invalidate(&[&k]).await.expect("binlog invalidate");
            }));
        }
        for p in pending {
            p.await.unwrap();
        }
    });
    for w in writers {
        w.await.unwrap();
    }
    binlog.await.unwrap();
    // Readers keep going a little after the last invalidation, then stop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let mut stale = 0;
    for k in 0..KEYS {
        if let Some(v) = clients[0].get(&key_of(&tag, k)).await.unwrap() {
            let cached: u64 = serde_json::from_slice(&v).unwrap();
            if cached != db.lock().unwrap().get(&k).copied().unwrap_or(0) {
                stale += 1;
            }
        }
    }
    stale
}

async fn both(connect: impl Fn() -> common::ClientFut, name: &str) {
    let mut totals = [0usize; 2];
    for round in 0..3 {
        for (i, leases) in [true, false].into_iter().enumerate() {
            let mut clients = Vec::new();
            for _ in 0..8 {
                clients.push(connect().await);
            }
            let tag = format!("{name}{round}{leases}");
            totals[i] += run(clients, connect().await, leases, &tag).await;
        }
    }
    println!(
        "{name}: stale keys after 3 runs: with leases {}, without {}",
        totals[0], totals[1]
    );
    assert_eq!(totals[0], 0, "{name}: leases must leave no stale value");
}

async fn concurrent_readers_and_writers(kind: common::Kind) {
    let srv = common::Backend::start(kind).await;
    both(srv.connector(), kind.name()).await;
    srv.assert_path_taken().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_and_writers_engine() {
    concurrent_readers_and_writers(common::Kind::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_and_writers_redis() {
    concurrent_readers_and_writers(common::Kind::Redis).await;
}

/// The library's Redis path (the lease scripts, through EVALSHA) on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_and_writers_engine_scripts() {
    concurrent_readers_and_writers(common::Kind::EngineScripts).await;
}
