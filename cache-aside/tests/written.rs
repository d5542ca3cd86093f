//! The write time of a cached value (`CacheClient::written_ms`): recorded by the
//! engine for every write (`OBJECT WRITTEN`), and on Redis by the lease fill in the
//! key's side key (`written`, with the value's TTL). A side key that holds only
//! `written` is not a lease: readers after a bare `DEL key` get a lease, not a wait.

mod common;

use cache_aside::scripts::lease_key;
use cache_aside::{CacheClient, LeaseRead};
use redis::aio::MultiplexedConnection;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

async fn raw(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_tokio_connection()
        .await
        .expect("connect")
}

async fn pttl(c: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(c)
        .await
        .expect("PTTL")
}

async fn exists(c: &mut MultiplexedConnection, keys: &[&str]) -> i64 {
    redis::cmd("EXISTS")
        .arg(keys)
        .query_async(c)
        .await
        .expect("EXISTS")
}

async fn lease(client: &CacheClient, key: &str) -> i64 {
    match client.lease_get(key).await.expect("lease_get") {
        LeaseRead::Lease(t) => t,
        other => panic!("{key}: expected a lease, got {other:?}"),
    }
}

/// Fills `key` through a lease and returns the (before, after) local times around it.
async fn fill(client: &CacheClient, key: &str, ttl: Option<Duration>) -> (i64, i64) {
    let before = now_ms();
    let t = lease(client, key).await;
    assert!(client
        .lease_set(key, t, b"v1", ttl)
        .await
        .expect("lease_set"));
    (before, now_ms())
}

/// The lease scripts' write times, on `kind` (a server running the scripts).
async fn fill_records_write_time_with_the_values_ttl(kind: common::Kind) {
    let srv = common::Backend::start(kind).await;
    let client = srv.client().await;
    let mut c = raw(&srv.url).await;

    // A fill with a TTL: `written` within the fill, no token, the value's TTL.
    let (before, after) = fill(&client, "user:1", Some(Duration::from_secs(60))).await;
    let w = client.written_ms("user:1").await.unwrap().expect("written");
    assert!((before..=after).contains(&w), "{before} <= {w} <= {after}");
    let side: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(lease_key("user:1"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(side, vec![("written".to_string(), w.to_string())]);
    let value_ttl = pttl(&mut c, "user:1").await;
    let side_ttl = pttl(&mut c, &lease_key("user:1")).await;
    assert!(value_ttl > 0, "{value_ttl}");
    assert!(
        side_ttl > 0 && side_ttl <= value_ttl + 1000,
        "side {side_ttl} value {value_ttl}"
    );
    // The side key goes when the value expires, not later.
    fill(&client, "user:short", Some(Duration::from_millis(200))).await;
    assert!(client.written_ms("user:short").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let side = lease_key("user:short");
    assert_eq!(
        exists(&mut c, &["user:short", &side]).await,
        0,
        "value and side key both expired"
    );

    // A fill without a TTL: neither the value nor the side key expires, even though
    // the side key had the lease interval's PX while the lease was outstanding.
    let t = lease(&client, "user:2").await;
    assert!(pttl(&mut c, &lease_key("user:2")).await > 0);
    assert!(client.lease_set("user:2", t, b"v2", None).await.unwrap());
    assert_eq!(pttl(&mut c, "user:2").await, -1);
    assert_eq!(pttl(&mut c, &lease_key("user:2")).await, -1);
    assert!(client.written_ms("user:2").await.unwrap().is_some());

    // A plain SET records nothing: write time unknown.
    client.set("user:3", b"v3", None).await.unwrap();
    assert_eq!(client.written_ms("user:3").await.unwrap(), None);
    assert_eq!(client.written_ms("user:missing").await.unwrap(), None);

    // INVALIDATE deletes the side key with the value.
    client.invalidate(&["user:1"]).await.unwrap();
    assert_eq!(exists(&mut c, &[&lease_key("user:1")]).await, 0);
    assert_eq!(client.written_ms("user:1").await.unwrap(), None);

    // A refused fill (someone else wrote the key meanwhile) leaves no write time.
    let t = lease(&client, "user:4").await;
    client.set("user:4", b"other", None).await.unwrap();
    assert!(!client.lease_set("user:4", t, b"v4", None).await.unwrap());
    assert_eq!(client.written_ms("user:4").await.unwrap(), None);
    srv.assert_path_taken().await;
}

/// A bare `DEL key` after a fill, on `kind` (a server running the scripts).
async fn side_key_with_only_written_is_no_lease(kind: common::Kind) {
    let srv = common::Backend::start(kind).await;
    let client = srv
        .client()
        .await
        // A long interval: a side key mistaken for a lease would make readers wait.
        .with_lease_interval(Duration::from_secs(60));
    let mut c = raw(&srv.url).await;
    fill(&client, "user:7", Some(Duration::from_secs(60))).await;
    // A client that knows nothing of leases deletes only the value.
    let _: i64 = redis::cmd("DEL")
        .arg("user:7")
        .query_async(&mut c)
        .await
        .unwrap();
    let side: Option<String> = redis::cmd("HGET")
        .arg(lease_key("user:7"))
        .arg("written")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(side.is_some(), "the bare DEL left `written` behind");
    assert_eq!(
        client.written_ms("user:7").await.unwrap(),
        None,
        "no value, no write time"
    );
    // The next reader is granted a lease at once, and a second one waits for it.
    let t = lease(&client, "user:7").await;
    assert!(matches!(
        client.lease_get("user:7").await.unwrap(),
        LeaseRead::Wait(_)
    ));
    let before = now_ms();
    assert!(client
        .lease_set("user:7", t, b"v7", Some(Duration::from_secs(60)))
        .await
        .unwrap());
    let w = client.written_ms("user:7").await.unwrap().expect("written");
    assert!(w >= before, "the new fill's time, {w} >= {before}");
    // The token check is unchanged: a used or made-up token fills nothing.
    let _: i64 = redis::cmd("DEL")
        .arg("user:7")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!client.lease_set("user:7", t, b"x", None).await.unwrap());
    assert_eq!(client.get("user:7").await.unwrap(), None);
    srv.assert_path_taken().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fill_records_write_time_with_the_values_ttl() {
    fill_records_write_time_with_the_values_ttl(common::Kind::Redis).await;
}

/// The lease scripts through EVALSHA on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_scripts_fill_records_write_time_with_the_values_ttl() {
    fill_records_write_time_with_the_values_ttl(common::Kind::EngineScripts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_side_key_with_only_written_is_no_lease() {
    side_key_with_only_written_is_no_lease(common::Kind::Redis).await;
}

/// The lease scripts through EVALSHA on the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_scripts_side_key_with_only_written_is_no_lease() {
    side_key_with_only_written_is_no_lease(common::Kind::EngineScripts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_reports_object_written() {
    let (url, _eng) = common::start_engine().await;
    let client = CacheClient::engine(&url).await.expect("connect");
    let (before, after) = fill(&client, "user:1", Some(Duration::from_secs(60))).await;
    let w = client.written_ms("user:1").await.unwrap().expect("written");
    // The engine keeps 100 ms resolution, rounded down.
    let floor = before - before % 100;
    assert!((floor..=after).contains(&w), "{floor} <= {w} <= {after}");
    // The engine records every write, plain SET included, and nothing for a missing key.
    let before = now_ms();
    client.set("user:2", b"v", None).await.unwrap();
    let w = client.written_ms("user:2").await.unwrap().expect("written");
    assert!((before - before % 100..=now_ms()).contains(&w));
    client.invalidate(&["user:1"]).await.unwrap();
    assert_eq!(client.written_ms("user:1").await.unwrap(), None);
    // The engine keeps no side keys.
    let mut c = raw(&url).await;
    assert_eq!(exists(&mut c, &[&lease_key("user:2")]).await, 0);
}
