//! Benchmarks, `#[ignore]`d; run with `bench/delivery.sh` (release build):
//! deletes/s to an external Redis (pipelined) and to the embedded engine, each in
//! the target stack as the sidecar runs it, and the drain rate of a
//! 1,000,000-delete backlog in the embedded queue.

use crate::fault_tests::{redis, tmp};
use crate::retry::{RetryConfig, RetryQueue};
use crate::targets::stack::{self, StackConfig};
use crate::targets::{DeleteService, EmbeddedTarget, TargetConfig};
use crate::testing::RedisServer;
use bytes::Bytes;
use std::time::{Duration, Instant};

fn n() -> usize {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn keys(n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("user:{i}"))).collect()
}

/// Writes every key (value "v") into the redis-server at `url`, so deletes do real work.
pub(crate) async fn fill_redis(url: &str, ks: &[Bytes]) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for c in ks.chunks(10_000) {
        let mut mset = redis::cmd("MSET");
        for k in c {
            mset.arg(&k[..]).arg("v");
        }
        let _: () = mset.query_async(&mut conn).await.unwrap();
    }
}

/// Writes every key into database 0 of `engine`.
fn fill_engine(engine: &engine::Engine, ks: &[Bytes]) {
    for c in ks.chunks(10_000) {
        let mut cmd = vec![Bytes::from_static(b"MSET")];
        for k in c {
            cmd.push(k.clone());
            cmd.push(Bytes::from_static(b"v"));
        }
        engine.execute(0, cmd);
    }
}

fn dbsize(engine: &engine::Engine) -> i64 {
    match engine.execute(0, vec![Bytes::from_static(b"DBSIZE")]) {
        engine::Reply::Int(n) => n,
        r => panic!("DBSIZE replied {r:?}"),
    }
}

/// The embedded engine's database 0 as a target, in its stack (as the sidecar runs it).
fn embedded(engine: &engine::Engine) -> DeleteService {
    stack::build(
        EmbeddedTarget::new(engine.clone(), 0),
        StackConfig::default(),
        (),
    )
}

async fn rate(t: &mut DeleteService, keys: &[Bytes], batch: usize) -> f64 {
    let t0 = Instant::now();
    for c in keys.chunks(batch) {
        t.send(c).await.unwrap();
    }
    keys.len() as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_targets_deletes_per_sec() {
    let n = n();
    let ks = keys(n);
    let s = RedisServer::start(&[]).unwrap();
    let mut redis = redis(&TargetConfig::redis(s.url())).await;
    let engine = engine::Engine::new(engine::EngineConfig::default());
    let mut emb = embedded(&engine);
    for batch in [10usize, 100, 1000] {
        // Fill so deletes do real work.
        fill_engine(&engine, &ks);
        let e = rate(&mut emb, &ks, batch).await;
        assert_eq!(dbsize(&engine), 0);
        fill_redis(&s.url(), &ks).await;
        let r = rate(&mut redis, &ks, batch).await;
        assert_eq!(s.cli(&["DBSIZE"]).unwrap().trim(), "0");
        println!("BENCH deletes/s, {n} keys, {batch} keys per transaction batch: external redis {r:.0}/s, embedded engine {e:.0}/s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_embedded_queue_drain_1m() {
    let n = n();
    let d = tmp("bench-q");
    let s = RedisServer::start(&[]).unwrap();
    let cfg = RetryConfig {
        path: d.join("retry.log"),
        batch: 2000,
        backoff: crate::duration::HumanDuration(Duration::from_millis(1)),
        ..RetryConfig::default()
    };
    let q = RetryQueue::open(&cfg).await.unwrap();
    let ks = keys(n);
    let t0 = Instant::now();
    for c in ks.chunks(10_000) {
        q.enqueue(c, "bin.000001:4").await.unwrap();
    }
    let enq = t0.elapsed();
    drop(q);
    // Reopen: the backlog is replayed from disk, as after a crash.
    let t1 = Instant::now();
    let q = RetryQueue::open(&cfg).await.unwrap();
    let replay = t1.elapsed();
    assert_eq!(q.depth(), n as u64);
    let redis = redis(&TargetConfig::redis(s.url())).await;
    fill_redis(&s.url(), &ks).await;
    let t2 = Instant::now();
    let w = q.spawn_worker(redis);
    while q.depth() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = t2.elapsed();
    w.abort();
    assert_eq!(s.cli(&["DBSIZE"]).unwrap().trim(), "0");
    let engine = engine::Engine::new(engine::EngineConfig::default());
    let cfg2 = RetryConfig {
        path: d.join("retry2.log"),
        ..cfg.clone()
    };
    let q2 = RetryQueue::open(&cfg2).await.unwrap();
    for c in ks.chunks(10_000) {
        q2.enqueue(c, "bin.000001:4").await.unwrap();
    }
    fill_engine(&engine, &ks);
    let t3 = Instant::now();
    let w2 = q2.spawn_worker(embedded(&engine));
    while q2.depth() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_e = t3.elapsed();
    w2.abort();
    assert_eq!(dbsize(&engine), 0);
    println!(
        "BENCH embedded queue: enqueue {n} in {enq:?} ({:.0}/s, fsync per 10k batch); replay {replay:?}; drain to redis {drain:?} ({:.0}/s); drain to embedded engine {drain_e:?} ({:.0}/s)",
        n as f64 / enq.as_secs_f64(),
        n as f64 / drain.as_secs_f64(),
        n as f64 / drain_e.as_secs_f64()
    );
}
