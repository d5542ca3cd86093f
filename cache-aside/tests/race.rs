//! The stale-fill race, explored: thousands of random interleavings of readers (miss,
//! database read, fill) with writers (update, commit, delete) and the binlog
//! invalidation, against the real cache servers (engine and redis-server) and a
//! simulated database (an in-process versioned map, so schedules are controllable).
//!
//! With leases, no schedule may leave a stale value once the writers stopped and the
//! invalidations landed. Without leases (plain GET/SET) the same schedules must find
//! stale values — otherwise the test would not be able to see the race at all.

mod common;

use cache_aside::{CacheClient, LeaseRead};
use std::collections::{HashMap, VecDeque};

const SCHEDULES: usize = 3000;
const KEYS: usize = 2;
const READERS: usize = 4;
const WRITERS: usize = 2;

/// The simulated database: per key, the committed version; per writer, its
/// uncommitted one (read committed: readers never see it).
#[derive(Default)]
struct Db {
    committed: HashMap<usize, u64>,
}

impl Db {
    fn read(&self, k: usize) -> u64 {
        self.committed.get(&k).copied().unwrap_or(0)
    }
}

enum Reader {
    /// Next: the cache read.
    Start,
    /// Missed (with a token when leases are on): next, the database read.
    Missed(Option<i64>),
    /// Read version v: next, the fill.
    Loaded(Option<i64>, u64),
    Done,
}

enum Writer {
    Start,
    /// Updated in its open transaction: next, commit.
    Updated,
    /// Committed: next, the application's own delete (skipped sometimes: a crash).
    Committed,
    Done,
}

/// Where the binlog invalidation goes (the sidecar's two kinds of target).
#[derive(Clone)]
enum Sidecar {
    /// The embedded engine: in-process DEL through `Engine::execute_batch`.
    Embedded(engine::Engine),
    /// External Redis: the INVALIDATE script.
    External(CacheClient),
}

impl Sidecar {
    async fn invalidate(&self, key: &str) {
        match self {
            Sidecar::Embedded(e) => {
                let r = e.execute_batch(
                    0,
                    vec![vec![
                        bytes::Bytes::from_static(b"DEL"),
                        bytes::Bytes::copy_from_slice(key.as_bytes()),
                    ]],
                );
                assert!(!r[0].is_error(), "{r:?}");
            }
            Sidecar::External(c) => {
                c.invalidate(&[key]).await.expect("invalidate");
            }
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    schedules: usize,
    stale_schedules: usize,
    stale_keys: usize,
    fills: usize,
    refused: usize,
}

async fn explore(client: &CacheClient, sidecar: &Sidecar, leases: bool, tag: &str) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let mut out = Outcome::default();
    for s in 0..SCHEDULES {
        let key = |k: usize| format!("race:{tag}:{s}:{k}");
        let mut db = Db::default();
        let mut readers: Vec<(usize, Reader)> = (0..READERS)
            .map(|_| (rng.usize(..KEYS), Reader::Start))
            .collect();
        let mut writers: Vec<(usize, Writer)> = (0..WRITERS)
            .map(|_| (rng.usize(..KEYS), Writer::Start))
            .collect();
        // Committed changes whose binlog invalidation has not landed yet.
        let mut binlog: VecDeque<usize> = VecDeque::new();
        loop {
            let mut ready: Vec<usize> = Vec::new();
            for (i, (_, r)) in readers.iter().enumerate() {
                if !matches!(r, Reader::Done) {
                    ready.push(i);
                }
            }
            for (i, (_, w)) in writers.iter().enumerate() {
                if !matches!(w, Writer::Done) {
                    ready.push(READERS + i);
                }
            }
            if !binlog.is_empty() {
                ready.push(READERS + WRITERS);
            }
            if ready.is_empty() {
                break;
            }
            let pick = ready[rng.usize(..ready.len())];
            if pick < READERS {
                let (k, st) = &mut readers[pick];
                let name = key(*k);
                *st = match std::mem::replace(st, Reader::Done) {
                    Reader::Start => {
                        if leases {
                            match client.lease_get(&name).await.expect("leaseget") {
                                LeaseRead::Value(_) | LeaseRead::Wait(_) => Reader::Done,
                                LeaseRead::Lease(t) => Reader::Missed(Some(t)),
                            }
                        } else {
                            match client.get(&name).await.expect("get") {
                                Some(_) => Reader::Done,
                                None => Reader::Missed(None),
                            }
                        }
                    }
                    Reader::Missed(t) => Reader::Loaded(t, db.read(*k)),
                    Reader::Loaded(t, v) => {
                        let val = format!("v{v}");
                        match t {
                            Some(t) => {
                                if client
                                    .lease_set(&name, t, val.as_bytes(), None)
                                    .await
                                    .expect("leaseset")
                                {
                                    out.fills += 1;
                                } else {
                                    out.refused += 1;
                                }
                            }
                            None => {
                                client.set(&name, val.as_bytes(), None).await.expect("set");
                                out.fills += 1;
                            }
                        }
                        Reader::Done
                    }
                    Reader::Done => Reader::Done,
                };
            } else if pick < READERS + WRITERS {
                let (k, st) = &mut writers[pick - READERS];
                *st = match std::mem::replace(st, Writer::Done) {
                    Writer::Start => Writer::Updated,
                    Writer::Updated => {
                        *db.committed.entry(*k).or_insert(0) += 1;
                        binlog.push_back(*k);
                        Writer::Committed
                    }
                    Writer::Committed => {
                        // One in five writers dies before its delete: the binlog
                        // invalidation must cover for it.
                        if rng.u8(..5) != 0 {
                            client.invalidate(&[&key(*k)]).await.expect("delete");
                        }
                        Writer::Done
                    }
                    Writer::Done => Writer::Done,
                };
            } else if let Some(k) = binlog.pop_front() {
                sidecar.invalidate(&key(k)).await;
            }
        }
        // The writers stopped and every invalidation landed: check the cache.
        let mut stale = 0;
        for k in 0..KEYS {
            if let Some(v) = client.get(&key(k)).await.expect("get") {
                if v != format!("v{}", db.read(k)).into_bytes() {
                    stale += 1;
                }
            }
        }
        out.schedules += 1;
        out.stale_keys += stale;
        if stale > 0 {
            out.stale_schedules += 1;
        }
    }
    out
}

async fn both_modes(client: &CacheClient, sidecar: &Sidecar, name: &str) {
    let with = explore(client, sidecar, true, &format!("{name}-leases")).await;
    let without = explore(client, sidecar, false, &format!("{name}-plain")).await;
    println!("{name}: with leases    {with:?}");
    println!("{name}: without leases {without:?}");
    assert_eq!(with.schedules, SCHEDULES);
    assert_eq!(
        with.stale_schedules, 0,
        "{name}: leases must leave no stale value"
    );
    assert!(
        with.fills > 0 && with.refused > 0,
        "{name}: the schedules exercised fills and refusals"
    );
    assert!(
        without.stale_schedules > 0,
        "{name}: without leases the same schedules must find stale values"
    );
}

/// One kind's run. The sidecar's invalidations: in-process on the engine with native
/// leases; otherwise the external-Redis target, with its own connection and the
/// INVALIDATE script.
async fn leases_leave_no_stale_values(kind: common::Kind) {
    let srv = common::Backend::start(kind).await;
    let client = srv.client().await;
    let sidecar = match (&srv.engine, kind) {
        (Some(eng), common::Kind::Engine) => Sidecar::Embedded(eng.clone()),
        _ => Sidecar::External(srv.client().await),
    };
    both_modes(&client, &sidecar, kind.name()).await;
    srv.assert_path_taken().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_leases_leave_no_stale_values() {
    leases_leave_no_stale_values(common::Kind::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leases_leave_no_stale_values() {
    leases_leave_no_stale_values(common::Kind::Redis).await;
}

/// The library's Redis path (the lease scripts, through EVALSHA) on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_scripts_leases_leave_no_stale_values() {
    leases_leave_no_stale_values(common::Kind::EngineScripts).await;
}
