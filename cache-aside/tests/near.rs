//! The near cache against the engine and a private real redis-server: filled only from
//! tracked reads, dropped on the invalidation push (another client's write, the
//! embedding process's in-process DEL, a flush), bounded, emptied when its tracking
//! connection drops or is killed, refilled after reconnecting.

mod common;

use cache_aside::{Cache, CacheClient, NearOptions, Options};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn opts(max_entries: u64) -> Options {
    Options {
        near: Some(NearOptions {
            max_entries,
            ..NearOptions::default()
        }),
        ..Options::default()
    }
}

/// Reads `key` through the cache, counting loader calls; the loader returns `v`.
async fn read(cache: &Cache, key: &str, v: &str, loads: &Arc<AtomicU32>) -> Option<String> {
    let loads = loads.clone();
    let v = v.to_string();
    cache
        .get_or_load(key, Duration::from_secs(60), || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Some(v))
        })
        .await
        .expect("read")
}

/// Waits (at most 5 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The whole lifecycle on one server; `other` writes as another client would.
async fn lifecycle(cache: Cache, other: CacheClient, url: &str) {
    let admin = redis::Client::open(url).expect("url");
    let mut admin = admin
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let loads = Arc::new(AtomicU32::new(0));
    // Miss (loader), then a shared hit on the tracking connection (kept), then near.
    assert_eq!(read(&cache, "u:1", "a", &loads).await.as_deref(), Some("a"));
    assert_eq!(read(&cache, "u:1", "x", &loads).await.as_deref(), Some("a"));
    assert_eq!(cache.near_len(), 1);
    assert_eq!(read(&cache, "u:1", "x", &loads).await.as_deref(), Some("a"));
    let m = cache.metrics().snapshot();
    assert_eq!((m.misses, m.shared_hits, m.near_hits), (1, 1, 1), "{m:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    // Another client's write: the push drops it; the next read sees the new value.
    other
        .set("u:1", b"\"b\"", None)
        .await
        .expect("set from another client");
    until("the invalidation", || cache.near_len() == 0).await;
    assert!(cache.metrics().snapshot().invalidations_received >= 1);
    assert_eq!(read(&cache, "u:1", "x", &loads).await.as_deref(), Some("b"));
    assert_eq!(read(&cache, "u:1", "x", &loads).await.as_deref(), Some("b"));
    assert_eq!(cache.metrics().snapshot().near_hits, 2);

    // A delete through the library (update-then-delete) and the shared DEL of
    // another client both clear it.
    cache.invalidate(&["u:1"]).await.expect("invalidate");
    assert_eq!(cache.near_len(), 0);
    assert_eq!(read(&cache, "u:1", "c", &loads).await.as_deref(), Some("c"));
    assert_eq!(read(&cache, "u:1", "x", &loads).await.as_deref(), Some("c"));
    assert_eq!(cache.near_len(), 1);
    other.invalidate(&["u:1"]).await.expect("delete");
    until("the delete's invalidation", || cache.near_len() == 0).await;

    // Bounded: 4 entries at most.
    for i in 0..20 {
        let k = format!("b:{i}");
        read(&cache, &k, "v", &loads).await;
        read(&cache, &k, "v", &loads).await;
    }
    assert!(cache.near_len() <= 4, "{} entries", cache.near_len());
    assert!(cache.near_len() >= 1);

    // The tracking connection dropped: emptied at once, refilled after reconnecting.
    cache.near_disconnect().await;
    until("the flush", || cache.near_len() == 0).await;
    assert_eq!(cache.metrics().snapshot().near_flushes, 1);
    read(&cache, "b:19", "v", &loads).await;
    assert_eq!(cache.near_len(), 1);
    other
        .set("b:19", b"\"w\"", None)
        .await
        .expect("set after reconnect");
    until("the invalidation after reconnecting", || {
        cache.near_len() == 0
    })
    .await;

    // Killed by the server (CLIENT KILL): the same.
    read(&cache, "b:19", "v", &loads).await;
    assert_eq!(cache.near_len(), 1);
    let killed: redis::RedisResult<redis::Value> = kill_others().query_async(&mut admin).await;
    killed.expect("CLIENT KILL");
    until("the flush after CLIENT KILL", || cache.near_len() == 0).await;
    assert_eq!(cache.metrics().snapshot().near_flushes, 2);
    assert_eq!(
        read(&cache, "b:19", "x", &loads).await.as_deref(),
        Some("w")
    );
    assert_eq!(
        read(&cache, "b:19", "x", &loads).await.as_deref(),
        Some("w")
    );
    assert_eq!(cache.near_len(), 1);
    // A flush empties it.
    let flushed: redis::RedisResult<redis::Value> =
        redis::cmd("FLUSHALL").query_async(&mut admin).await;
    flushed.expect("FLUSHALL");
    until("the flush's null invalidation", || cache.near_len() == 0).await;
}

/// `CLIENT KILL TYPE normal SKIPME yes`: every other normal connection, the
/// tracking one included (the shared connection reopens by itself).
fn kill_others() -> redis::Cmd {
    let mut c = redis::cmd("CLIENT");
    c.arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_on_the_engine() {
    let (url, engine) = common::start_engine().await;
    let other = CacheClient::engine(&url).await.expect("engine");
    // The sidecar's in-process delete reaches the near cache too.
    let sidecar = Cache::new(CacheClient::engine(&url).await.expect("engine"), opts(4));
    let loads = Arc::new(AtomicU32::new(0));
    read(&sidecar, "s:1", "a", &loads).await;
    read(&sidecar, "s:1", "a", &loads).await;
    assert_eq!(sidecar.near_len(), 1);
    engine.execute(0, vec!["DEL".into(), "s:1".into()]);
    until("the in-process delete's invalidation", || {
        sidecar.near_len() == 0
    })
    .await;
    let cache = Cache::new(CacheClient::engine(&url).await.expect("engine"), opts(4));
    lifecycle(cache, other, &url).await;
}

/// The near cache over the lease scripts, on `kind` (a server running the scripts).
async fn near_cache_on_scripts(kind: common::Kind) {
    let srv = common::Backend::start(kind).await;
    let cache = Cache::new(srv.client().await, opts(4));
    let other = srv.client().await;
    lifecycle(cache, other, &srv.url).await;
    srv.assert_path_taken().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_on_redis() {
    near_cache_on_scripts(common::Kind::Redis).await;
}

/// The library's Redis path (scripts through EVALSHA) with tracking, on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_cache_on_engine_scripts() {
    near_cache_on_scripts(common::Kind::EngineScripts).await;
}
