//! Against a private RabbitMQ node (own node name, ports, epmd port, dirs).

use crate::checkpoint::{CheckpointStore, FileCheckpointStore};
use crate::fault_tests::{lost, pos, redis, retry_cfg, run, set_all, tmp, tx, wait_for};
use crate::retry::{QueueKind, RetryConfig, RetryQueue};
use crate::targets::{DeleteRequest, DeleteService, TargetConfig, TargetError};
use crate::testing::{RabbitMq, RedisServer};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tower::{Service, ServiceExt};

/// Refuses every other batch, so the queue carries part of the load.
fn flaky(redis: DeleteService, calls: Arc<AtomicU64>) -> DeleteService {
    DeleteService::new(tower::service_fn(move |req: DeleteRequest| {
        let refuse = calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2);
        let mut redis = redis.clone();
        async move {
            if refuse {
                return Err(TargetError::Unavailable("flaky".into()));
            }
            redis.ready().await?.call(req).await
        }
    }))
}

fn rabbit_cfg(r: &RabbitMq, dir: &std::path::Path) -> RetryConfig {
    RetryConfig {
        queue: QueueKind::Rabbitmq,
        url: Some(r.url()),
        ..retry_cfg(dir)
    }
}

/// Refuses every batch while `up` is false, counting the refusals in `refused`.
fn gate(redis: DeleteService, up: Arc<AtomicBool>, refused: Arc<AtomicU64>) -> DeleteService {
    DeleteService::new(tower::service_fn(move |req: DeleteRequest| {
        let open = up.load(Ordering::SeqCst);
        if !open {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        let mut redis = redis.clone();
        async move {
            if !open {
                return Err(TargetError::Unavailable("gate closed".into()));
            }
            redis.ready().await?.call(req).await
        }
    }))
}

/// Messages (ready + unacked) in the work and retry queues, from `rabbitmqctl`.
fn on_broker(r: &RabbitMq) -> u64 {
    r.list_queues()
        .split("; ")
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                [name, ready, unacked] if !name.ends_with(".dead") => {
                    Some(ready.parse::<u64>().ok()? + unacked.parse::<u64>().ok()?)
                }
                _ => None,
            }
        })
        .sum()
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A delivery is acked only after its delete landed: while the target refuses,
/// the messages stay on the broker (retried through the retry queue), survive the
/// worker going away with deliveries in flight, and drain once the target is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_acks_only_after_the_delete_landed() {
    assert!(
        RabbitMq::available() && RedisServer::available(),
        "rabbitmq-server and redis-server are needed: run scripts/install-deps.sh"
    );
    init_log();
    let d = tmp("rabbit-ack");
    let r = RabbitMq::start().unwrap();
    let s = RedisServer::start(&[]).unwrap();
    const N: u64 = 20;
    set_all(&s, 0..N, "stale");
    let redis = redis(&TargetConfig::redis(s.url())).await;
    let (up, refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let gate = gate(redis, up.clone(), refused.clone());
    let q = RetryQueue::open(&rabbit_cfg(&r, &d)).await.unwrap();
    let keys: Vec<Bytes> = (0..N).map(|i| Bytes::from(format!("user:{i}"))).collect();
    q.enqueue(&keys, "bin.000001:4").await.unwrap();
    assert_eq!(q.depth(), N);
    let worker = q.spawn_worker(gate.clone());
    wait_for(|| refused.load(Ordering::SeqCst) >= 4, 30).await;
    // Refused deletes are neither acked away nor counted as delivered.
    assert_eq!(q.stats().delivered, 0);
    assert_eq!(q.depth(), N);
    assert!(q.stats().retries >= N, "{:?}", q.stats());
    assert_eq!(lost(&s, 0..N), N as usize);
    let held = tokio::task::block_in_place(|| on_broker(&r));
    assert!(held >= N, "broker holds {held} of {N}");
    // The worker goes away (deliveries possibly in flight): nothing is lost.
    worker.abort();
    let _ = worker.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = tokio::task::block_in_place(|| on_broker(&r));
    assert!(
        held >= N,
        "broker holds {held} of {N} after the worker stopped"
    );
    up.store(true, Ordering::SeqCst);
    let worker = q.spawn_worker(gate.clone());
    wait_for(|| q.depth() == 0, 60).await;
    assert_eq!(lost(&s, 0..N), 0, "lost deletes");
    assert!(q.stats().delivered >= N);
    assert!(q.dead_letters().await.unwrap().is_empty());
    assert_eq!(tokio::task::block_in_place(|| on_broker(&r)), 0);
    worker.abort();
}

/// RabbitMQ restarted during a load where half the batches fail, both in the
/// pipeline and in the queue's worker: publishes wait for the broker (unconfirmed
/// ones are published again), the consumer reconnects and re-declares, nothing is
/// lost or dead-lettered, and the queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restart_during_load_loses_nothing() {
    assert!(
        RabbitMq::available() && RedisServer::available(),
        "rabbitmq-server and redis-server are needed: run scripts/install-deps.sh"
    );
    init_log();
    let d = tmp("rabbit");
    let r = Arc::new(RabbitMq::start().unwrap());
    let s = RedisServer::start(&[]).unwrap();
    const N: u64 = 400;
    set_all(&s, 0..N, "stale");
    let redis = redis(&TargetConfig::redis(s.url())).await;
    let flaky_pipeline = flaky(redis.clone(), Arc::new(AtomicU64::new(0)));
    let q = RetryQueue::open(&rabbit_cfg(&r, &d)).await.unwrap();
    let worker = q.spawn_worker(flaky(redis.clone(), Arc::new(AtomicU64::new(0))));
    let cp = FileCheckpointStore::new(d.join("cp"));
    let (feed, stop, task) = run(flaky_pipeline, Some(q.clone()), cp.clone(), Duration::ZERO);
    let mut restart = None;
    for n in 0..N {
        feed.send(tx(n, n)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if n == 100 {
            // Restarted on its own thread: the load goes on while the broker is
            // down, so publishes fail, wait and are published again.
            let r = r.clone();
            restart = Some(tokio::task::spawn_blocking(move || {
                let t = std::time::Instant::now();
                let res = r.restart();
                eprintln!("broker restarted in {:?}", t.elapsed());
                res
            }));
        }
    }
    if let Some(h) = restart {
        h.await.unwrap().unwrap();
    }
    // Every transaction applied (its deletes landed or confirmed on the queue)...
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cp.load().await.unwrap().map(|c| c.position) != Some(pos(N - 1)) {
        assert!(std::time::Instant::now() < deadline, "pipeline stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... then the queue drains.
    let t0 = std::time::Instant::now();
    let mut last = 0;
    wait_for(
        || {
            let e = t0.elapsed().as_secs();
            if e / 5 != last {
                last = e / 5;
                eprintln!("{e}s: {:?}; broker: {}", q.stats(), r.list_queues());
            }
            q.depth() == 0 && q.stats().enqueued >= N / 4
        },
        90,
    )
    .await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let (missed, held) = (
        lost(&s, 0..N),
        tokio::task::block_in_place(|| on_broker(&r)),
    );
    assert_eq!(
        (missed, held),
        (0, 0),
        "keys left, messages on the broker at depth 0: {:?}",
        q.stats()
    );
    assert_eq!(q.stats().dead_letters, 0);
    assert!(q.dead_letters().await.unwrap().is_empty());
    assert_eq!(cp.load().await.unwrap().unwrap().position, pos(N - 1));
    eprintln!("rabbitmq retry stats: {:?}", q.stats());
    worker.abort();
}

/// Benchmark: drain 1,000,000 queued deletes from RabbitMQ into redis-server.
/// `cargo test -p coherent-connectors --release --lib -- --ignored bench_ --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_rabbitmq_drain_1m() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let d = tmp("rabbit-bench");
    let r = RabbitMq::start().unwrap();
    let s = RedisServer::start(&[]).unwrap();
    let q = RetryQueue::open(&RetryConfig {
        batch: 2000,
        ..rabbit_cfg(&r, &d)
    })
    .await
    .unwrap();
    let keys: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("user:{i}"))).collect();
    let t0 = std::time::Instant::now();
    for c in keys.chunks(10_000) {
        q.enqueue(c, "bin.000001:4").await.unwrap();
    }
    let enq = t0.elapsed();
    let redis = redis(&TargetConfig::redis(s.url())).await;
    crate::bench_tests::fill_redis(&s.url(), &keys).await;
    let t1 = std::time::Instant::now();
    let worker = q.spawn_worker(redis);
    wait_for(|| q.depth() == 0, 3600).await;
    let drain = t1.elapsed();
    assert_eq!(s.cli(&["DBSIZE"]).unwrap().trim(), "0");
    println!(
        "BENCH rabbitmq: enqueue {n} in {enq:?} ({:.0}/s, confirmed); drain {n} in {drain:?} ({:.0} deletes/s)",
        n as f64 / enq.as_secs_f64(),
        n as f64 / drain.as_secs_f64()
    );
    worker.abort();
}
