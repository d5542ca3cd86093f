//! The embedded queue: durability across a crash (the queue dropped without any
//! shutdown, then reopened), draining into a real redis-server, dead letters.

use super::*;
use crate::duration::HumanDuration;
use crate::fault_tests::redis;
use crate::retry::store::QueueStore;
use crate::retry::{RetryConfig, RetryQueue};
use crate::targets::{DeleteRequest, DeleteService, TargetConfig, TargetError};
use crate::testing::RedisServer;
use std::sync::atomic::{AtomicBool, Ordering};

fn cfg(name: &str) -> RetryConfig {
    let d = std::env::temp_dir().join(format!("coherent-q-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    RetryConfig {
        path: d.join("retry.log"),
        backoff: HumanDuration(Duration::from_millis(10)),
        max_backoff: HumanDuration(Duration::from_millis(50)),
        ..RetryConfig::default()
    }
}

/// A target that deletes nothing: it succeeds while `up` is set, fails otherwise.
fn switch(up: Arc<AtomicBool>) -> DeleteService {
    DeleteService::new(tower::service_fn(move |_: DeleteRequest| {
        let ok = up.load(Ordering::SeqCst);
        async move {
            if ok {
                Ok(())
            } else {
                Err(TargetError::Unavailable("down".into()))
            }
        }
    }))
}

async fn wait_for(mut f: impl FnMut() -> bool, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_crash_and_drains_into_redis() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let c = cfg("crash");
    let keys: Vec<Bytes> = (0..5000)
        .map(|i| Bytes::from(format!("user:{i}")))
        .collect();
    {
        let q = RetryQueue::open(&c).await.unwrap();
        q.enqueue(&keys[..3000], "bin.000001:100").await.unwrap();
        q.enqueue(&keys[3000..], "bin.000001:200").await.unwrap();
        assert_eq!(q.depth(), 5000);
        // Dropped here with no shutdown: as after kill -9 (every enqueue was fsync'd).
    }
    // A torn half-record at the end, as a crash mid-write leaves.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&c.path)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1])
        .unwrap();
    let s = RedisServer::start(&[]).unwrap();
    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(String::from_utf8_lossy(k).into_owned());
        args.push("stale".into());
    }
    s.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let q = RetryQueue::open(&c).await.unwrap();
    assert_eq!(q.depth(), 5000, "replayed after the crash");
    let target = redis(&TargetConfig::redis(s.url())).await;
    let worker = q.spawn_worker(target);
    wait_for(|| q.depth() == 0, 20).await;
    assert_eq!(
        s.cli(&["DBSIZE"]).unwrap().trim(),
        "0",
        "every queued delete landed"
    );
    let st = q.stats();
    assert_eq!((st.delivered, st.dead_letters), (5000, 0));
    worker.abort();
    // The worker's clone of the queue holds the file's lock until the task is gone.
    let _ = worker.await;
    drop(q);
    // Acks were logged: reopening finds nothing to do.
    let q = RetryQueue::open(&c).await.unwrap();
    assert_eq!(q.depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_dead_letters() {
    let c = RetryConfig {
        max_attempts: 4,
        ..cfg("dead")
    };
    let q = RetryQueue::open(&c).await.unwrap();
    let up = Arc::new(AtomicBool::new(false));
    let worker = q.spawn_worker(switch(up.clone()));
    q.enqueue(&[Bytes::from("a"), Bytes::from("b")], "bin.000001:4")
        .await
        .unwrap();
    wait_for(|| q.stats().dead_letters == 2, 10).await;
    let st = q.stats();
    assert_eq!(st.depth, 0);
    assert_eq!(st.retries, 4, "attempts 2 and 3 failed for both keys");
    let dead = q.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].position, "bin.000001:4");
    assert_eq!(dead[0].attempts, 4);
    // While it is up, queued deletes land and nothing more is dead-lettered.
    up.store(true, Ordering::SeqCst);
    q.enqueue(&[Bytes::from("c")], "bin.000001:9")
        .await
        .unwrap();
    wait_for(|| q.stats().delivered == 1, 10).await;
    worker.abort();
    // The worker's clone of the queue holds the file's lock until the task is gone.
    let _ = worker.await;
    // Dead letters survive a restart.
    drop(q);
    let q = RetryQueue::open(&c).await.unwrap();
    assert_eq!(q.stats().dead_letters, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacts_when_drained() {
    let c = cfg("compact");
    let q = EmbeddedQueue::open(c.clone()).unwrap();
    let q = Arc::new(q);
    let keys: Vec<Bytes> = (0..40_000).map(|i| Bytes::from(format!("k:{i}"))).collect();
    q.push(&keys, "bin.000001:4", c.backoff_for(1))
        .await
        .unwrap();
    assert!(q.log_size() > 1 << 20);
    let worker = tokio::spawn(crate::retry::worker::run(
        q.clone(),
        switch(Arc::new(AtomicBool::new(true))),
    ));
    wait_for(|| q.stats().snapshot().depth == 0, 20).await;
    worker.abort();
    // The worker's clone of the queue holds the file's lock until the task is gone.
    let _ = worker.await;
    assert!(q.log_size() < 1 << 20, "log compacted to {}", q.log_size());
}
