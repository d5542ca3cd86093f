//! The one Redis connection module against real servers: a single redis-server that
//! restarts under a connection, and a three-master cluster.

mod common;

use cache_aside::connection::{ConnectOptions, Endpoint, RedisConn};
use redis::Value;

fn set(k: &str, v: &str) -> redis::Cmd {
    let mut c = redis::cmd("SET");
    c.arg(k).arg(v);
    c
}

fn get(k: &str) -> redis::Cmd {
    let mut c = redis::cmd("GET");
    c.arg(k);
    c
}

/// A restarted server: the request that meets the dead connection reopens it (the
/// scripts loaded again) and is answered; while the server is down it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_node_connection_is_reopened() {
    let srv = common::RedisServer::start();
    let port = srv.port;
    let script = redis::Script::new("return ARGV[1]");
    let conn = RedisConn::connect(
        &Endpoint::node(&srv.url()).unwrap(),
        &ConnectOptions::new().scripts(vec![script.clone()]),
    )
    .await
    .unwrap();
    assert!(!conn.is_cluster());
    assert_eq!(conn.addr(), format!("127.0.0.1:{port}"));
    let _: () = conn.query(&set("k", "v")).await.unwrap();
    drop(srv);
    assert!(conn.query::<Option<String>>(&get("k")).await.is_err());
    let srv = common::RedisServer::start_on(port, &[]);
    assert_eq!(conn.query::<Option<String>>(&get("k")).await.unwrap(), None);
    let mut inv = script.prepare_invoke();
    inv.arg("hello");
    assert_eq!(conn.invoke::<String>(&inv).await.unwrap(), "hello");
    // The reopened connection has the script already: EVALSHA needs no reload.
    let loaded: Vec<i64> = conn
        .query(redis::cmd("SCRIPT").arg("EXISTS").arg(script.get_hash()))
        .await
        .unwrap();
    assert_eq!(loaded, vec![1]);
    // A batch on one node is one pipeline, replies in order.
    let replies: Vec<Value> = conn
        .each(vec![set("a", "1"), get("a"), get("missing")])
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![Value::Okay, Value::BulkString(b"1".to_vec()), Value::Nil]
    );
    assert_eq!(
        conn.masters().await.unwrap().len(),
        1,
        "a node is its own master"
    );
    drop(srv);
}

/// On a cluster a batch's commands are routed by key, and the masters are each
/// listed once (together they hold every key exactly once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_routes_by_key_and_lists_its_masters() {
    let cluster = common::RedisCluster::start(3);
    let conn = RedisConn::connect(
        &Endpoint::cluster(&cluster.urls()).unwrap(),
        &ConnectOptions::new(),
    )
    .await
    .unwrap();
    assert!(conn.is_cluster());
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let sets = keys.iter().map(|k| set(k, k)).collect();
    let _: Vec<()> = conn.each(sets).await.unwrap();
    let got: Vec<String> = conn
        .each(keys.iter().map(|k| get(k)).collect())
        .await
        .unwrap();
    assert_eq!(got, keys, "replies in command order");
    let masters = conn.masters().await.unwrap();
    assert_eq!(masters.len(), 3);
    let mut total = 0;
    for m in &masters {
        assert!(!m.is_cluster());
        let n: u64 = m.query(&redis::cmd("DBSIZE")).await.unwrap();
        assert!(n > 0, "{} holds none of 200 keys", m.addr());
        total += n;
    }
    assert_eq!(total, 200);
}
