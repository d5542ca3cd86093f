//! `Cache` behaviour against real servers: the herd (200 concurrent readers on one
//! cold key -> one loader call), negative caching, loader errors, refused fills,
//! update-then-delete with retries and the delayed second delete, TTL jitter, and the
//! same flows on a Redis Cluster (with the fills' write times).

mod common;

use cache_aside::{Cache, CacheClient, Error, Options};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    email: String,
}

fn user(id: u64) -> User {
    User {
        id,
        email: format!("u{id}@example.com"),
    }
}

/// 200 readers start together on one cold key, spread over `caches` Cache instances
/// (each its own connection and single-flight table: like that many processes).
/// Returns the loader calls.
async fn herd(caches: Vec<Cache>, key: &str) -> usize {
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let cache = caches[i % caches.len()].clone();
        let (loads, barrier, key) = (loads.clone(), barrier.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache
                .get_or_load(&key, Duration::from_secs(60), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, std::io::Error>(Some(user(1)))
                })
                .await
        }));
    }
    for t in tasks {
        let got = t.await.expect("task").expect("get_or_load");
        assert_eq!(got, Some(user(1)));
    }
    loads.load(Ordering::SeqCst)
}

async fn caches(n: usize, connect: impl Fn() -> common::ClientFut) -> Vec<Cache> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(Cache::new(connect().await, Options::default()));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herd_makes_one_loader_call() {
    for kind in common::KINDS {
        let srv = common::Backend::start(kind).await;
        let name = kind.name();
        for n in [20, 1] {
            let cs = caches(n, srv.connector()).await;
            let key = format!("herd:{name}:{n}");
            let loads = herd(cs.clone(), &key).await;
            let waits: u64 = cs.iter().map(|c| c.metrics().snapshot().lease_waits).sum();
            let joins: u64 = cs
                .iter()
                .map(|c| c.metrics().snapshot().singleflight_joins)
                .sum();
            println!("{name}, 200 readers over {n} cache(s): {loads} loader call(s), {waits} lease waits, {joins} single-flight joins");
            assert_eq!(loads, 1, "{name} with {n} caches");
        }
        srv.assert_path_taken().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_caching_and_loader_errors() {
    for kind in common::KINDS {
        let srv = common::Backend::start(kind).await;
        let (url, client) = (srv.url.clone(), srv.client().await);
        let neg = Cache::new(
            client.clone(),
            Options {
                negative_ttl: Some(Duration::from_secs(30)),
                ..Options::default()
            },
        );
        let calls = AtomicUsize::new(0);
        let missing = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<User>, std::io::Error>(None)
        };
        let ttl = Duration::from_secs(60);
        assert_eq!(
            neg.get_or_load("user:404", ttl, missing).await.unwrap(),
            None
        );
        assert_eq!(
            neg.get_or_load("user:404", ttl, missing).await.unwrap(),
            None
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not-found was cached");
        assert_eq!(neg.metrics().snapshot().negative_hits, 1);
        // Without negative caching, every read goes to the loader.
        let plain = Cache::new(client.clone(), Options::default());
        plain.get_or_load("user:405", ttl, missing).await.unwrap();
        plain.get_or_load("user:405", ttl, missing).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // A loader error is returned and not cached.
        let r = plain
            .get_or_load("user:500", ttl, || async {
                Err::<Option<User>, _>(std::io::Error::other("db down"))
            })
            .await;
        assert!(matches!(r, Err(Error::Loader(_))), "{r:?}");
        assert_eq!(client.get("user:500").await.unwrap(), None);
        let r = plain
            .get_or_load("user:500", ttl, || async {
                Ok::<_, std::io::Error>(Some(user(500)))
            })
            .await;
        assert_eq!(r.unwrap(), Some(user(500)));
        let m = plain.metrics().snapshot();
        assert_eq!((m.load_errors, m.fills), (1, 1));
        // The fill's TTL carries up to 10% jitter.
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_tokio_connection()
            .await
            .unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg("user:500")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!((59_000..=66_000).contains(&pttl), "{pttl}");
        srv.assert_path_taken().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_the_load_refuses_the_fill() {
    for kind in common::KINDS {
        let srv = common::Backend::start(kind).await;
        let client = srv.client().await;
        let cache = Cache::new(client.clone(), Options::default());
        let writer = client.clone();
        // The loader reads v1; meanwhile a writer commits v2 and deletes the key.
        let got = cache
            .get_or_load("user:9", Duration::from_secs(60), || async move {
                writer.invalidate(&["user:9"]).await.unwrap();
                Ok::<_, std::io::Error>(Some(user(1)))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(user(1)), "the caller still gets what it read");
        assert_eq!(
            cache.metrics().snapshot().refused_fills,
            1,
            "{}",
            kind.name()
        );
        assert_eq!(
            client.get("user:9").await.unwrap(),
            None,
            "{}: nothing stale cached",
            kind.name()
        );
        srv.assert_path_taken().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_deletes_after_the_action_and_again_later() {
    for kind in common::KINDS {
        let srv = common::Backend::start(kind).await;
        let client = srv.client().await;
        let cache = Cache::new(
            client.clone(),
            Options {
                second_delete: Some(Duration::from_millis(150)),
                ..Options::default()
            },
        );
        let ttl = Duration::from_secs(60);
        let load = |id| move || async move { Ok::<_, std::io::Error>(Some(user(id))) };
        cache.get_or_load("user:1", ttl, load(1)).await.unwrap();
        cache.get_or_load("user:2", ttl, load(2)).await.unwrap();
        // A failed action deletes nothing.
        let r = cache
            .write(&["user:1"], || async {
                Err::<(), _>(std::io::Error::other("rollback"))
            })
            .await;
        assert!(matches!(r, Err(Error::Write(_))));
        assert!(client.get("user:1").await.unwrap().is_some());
        // A committed action deletes its keys once it returned.
        let n = cache
            .write(&["user:1", "user:2"], || async {
                Ok::<_, std::io::Error>(7)
            })
            .await
            .unwrap();
        assert_eq!(n, 7);
        assert_eq!(client.get("user:1").await.unwrap(), None);
        assert_eq!(client.get("user:2").await.unwrap(), None);
        // A client without leases fills the old row right after: the delayed second
        // delete removes it.
        client
            .set("user:1", b"{\"stale\":true}", None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(client.get("user:1").await.unwrap(), None);
        assert_eq!(cache.metrics().snapshot().deletes, 3);
        srv.assert_path_taken().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deletes_are_retried_and_reported() {
    let srv = common::RedisServer::start();
    let client = CacheClient::redis(&srv.url()).await.unwrap();
    let cache = Cache::new(
        client,
        Options {
            delete_attempts: 3,
            delete_backoff: Duration::from_millis(5),
            ..Options::default()
        },
    );
    drop(srv); // the cache goes away after the database committed
    let r = cache
        .write(&["user:1"], || async { Ok::<_, std::io::Error>(()) })
        .await;
    match r {
        Err(Error::Invalidation { keys, .. }) => assert_eq!(keys, vec!["user:1".to_string()]),
        other => panic!("expected an invalidation error, got {other:?}"),
    }
    let m = cache.metrics().snapshot();
    assert_eq!((m.delete_retries, m.delete_failures), (2, 1));
}

/// Three redis-servers joined into a cluster with redis-cli.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_redis_cluster() {
    let nodes = common::RedisCluster::start(3);
    let urls = nodes.urls();
    let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let client = CacheClient::cluster(&refs).await.expect("cluster connect");
    let cache = Cache::new(client.clone(), Options::default());
    let ttl = Duration::from_secs(60);
    // Keys in many slots, across all three nodes.
    for id in 0..30u64 {
        let key = format!("user:{id}");
        let got = cache
            .get_or_load(&key, ttl, || async {
                Ok::<_, std::io::Error>(Some(user(id)))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(user(id)));
        assert!(client.get(&key).await.unwrap().is_some());
        // The fill's write time sits in the side key, in the key's slot.
        assert!(client.written_ms(&key).await.unwrap().is_some(), "{key}");
    }
    // Lease primitives and voiding.
    let cache_aside::LeaseRead::Lease(t) = client.lease_get("user:x").await.unwrap() else {
        panic!("lease expected");
    };
    assert!(matches!(
        client.lease_get("user:x").await.unwrap(),
        cache_aside::LeaseRead::Wait(_)
    ));
    client.invalidate(&["user:x"]).await.unwrap();
    assert!(!client.lease_set("user:x", t, b"1", None).await.unwrap());
    // Update-then-delete over several slots.
    let keys: Vec<String> = (0..30).map(|i| format!("user:{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    cache
        .write(&refs, || async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap();
    for k in &keys {
        assert_eq!(client.get(k).await.unwrap(), None);
    }
    assert_eq!(cache.metrics().snapshot().deletes, 30);
}

/// After SCRIPT FLUSH the server answers EVALSHA with NOSCRIPT; the client loads the
/// script again and the call succeeds (the engine's NOSCRIPT must be Redis's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_script_flush() {
    for kind in common::SCRIPT_KINDS {
        let srv = common::Backend::start(kind).await;
        let client = srv.client().await;
        assert!(matches!(
            client.lease_get("user:1").await.unwrap(),
            cache_aside::LeaseRead::Lease(_)
        ));
        let mut c = redis::Client::open(srv.url.as_str())
            .unwrap()
            .get_multiplexed_tokio_connection()
            .await
            .unwrap();
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .unwrap();
        let sha = redis::Script::new(cache_aside::scripts::LEASEGET)
            .get_hash()
            .to_string();
        let err = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(0)
            .query_async::<redis::Value>(&mut c)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            redis::ErrorKind::NoScriptError,
            "{}: {err}",
            kind.name()
        );
        assert!(matches!(
            client.lease_get("user:1").await.unwrap(),
            cache_aside::LeaseRead::Wait(_)
        ));
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(exists, vec![1], "{}: loaded again", kind.name());
    }
}
