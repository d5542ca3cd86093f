//! Pub/sub, WATCH and keyspace notifications across several connections to the engine.

mod common;

use common::{Conn, EngineServer, Resp};
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

fn arr(v: Vec<Resp>) -> Resp {
    Resp::Array(Some(v))
}

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

fn queued() -> Resp {
    Resp::Simple("QUEUED".into())
}

/// Gives `key` in db 0 a TTL of `ms` milliseconds, in process.
fn set_ttl(srv: &EngineServer, key: &str, ms: u64) {
    let args = ["PEXPIRE", key, &ms.to_string()]
        .iter()
        .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    assert_eq!(srv.engine.execute(0, args), engine::Reply::Int(1));
}

/// Keys stored in the engine, expired ones not yet reclaimed included.
fn stored_keys(srv: &EngineServer) -> u64 {
    srv.engine.stats().keys
}

/// DEBUG SET-ACTIVE-EXPIRE, in process.
fn set_active_expire(srv: &EngineServer, on: bool) {
    let args = ["DEBUG", "SET-ACTIVE-EXPIRE", if on { "1" } else { "0" }]
        .iter()
        .map(|a| bytes::Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    assert_eq!(srv.engine.execute(0, args), engine::Reply::OK);
}

/// Reads pushes until one equals `want`, failing after a deadline.
fn wait_for(c: &mut Conn, want: &Resp, within: Duration) {
    c.set_timeout(Duration::from_millis(200));
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(r) = c.try_read() {
            if &r == want {
                return;
            }
        }
    }
    panic!("never received {want:?}");
}

#[test]
fn messages_reach_channel_and_pattern_subscribers_in_both_protocols() {
    let srv = EngineServer::start();
    let mut sub2 = Conn::connect(srv.addr);
    let mut sub3 = Conn::connect(srv.addr);
    let mut publisher = Conn::connect(srv.addr);

    assert_eq!(
        sub2.cmd(&["SUBSCRIBE", "news"]),
        arr(vec![bulk("subscribe"), bulk("news"), Resp::Int(1)])
    );
    assert!(matches!(sub3.cmd(&["HELLO", "3"]), Resp::Map(_)));
    assert_eq!(
        sub3.cmd(&["PSUBSCRIBE", "n*"]),
        Resp::Push(vec![bulk("psubscribe"), bulk("n*"), Resp::Int(1)])
    );
    assert_eq!(
        sub3.cmd(&["SUBSCRIBE", "news"]),
        Resp::Push(vec![bulk("subscribe"), bulk("news"), Resp::Int(2)])
    );

    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news", "none"]),
        arr(vec![bulk("news"), Resp::Int(2), bulk("none"), Resp::Int(0)])
    );
    assert_eq!(publisher.cmd(&["PUBSUB", "NUMPAT"]), Resp::Int(1));
    assert_eq!(
        publisher.cmd(&["PUBSUB", "CHANNELS"]),
        arr(vec![bulk("news")])
    );
    // Two channel subscribers and one pattern subscriber.
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "hello"]), Resp::Int(3));

    assert_eq!(
        sub2.read(),
        arr(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
    assert_eq!(
        sub3.read(),
        Resp::Push(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
    assert_eq!(
        sub3.read(),
        Resp::Push(vec![
            bulk("pmessage"),
            bulk("n*"),
            bulk("news"),
            bulk("hello")
        ])
    );

    // A RESP2 subscriber is limited; a RESP3 one may run anything.
    assert_eq!(
        sub2.cmd(&["GET", "k"]),
        Resp::Error(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context".into()
        )
    );
    assert_eq!(sub3.cmd(&["GET", "k"]), Resp::Null);

    // Pattern-only delivery, then unsubscribing stops delivery.
    assert_eq!(publisher.cmd(&["PUBLISH", "nope", "x"]), Resp::Int(1));
    assert_eq!(
        sub3.read(),
        Resp::Push(vec![bulk("pmessage"), bulk("n*"), bulk("nope"), bulk("x")])
    );
    assert_eq!(
        sub2.cmd(&["UNSUBSCRIBE"]),
        arr(vec![bulk("unsubscribe"), bulk("news"), Resp::Int(0)])
    );
    assert_eq!(sub2.cmd(&["GET", "k"]), Resp::Bulk(None));
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news"]),
        arr(vec![bulk("news"), Resp::Int(1)])
    );

    // A closed connection's subscriptions disappear.
    drop(sub3);
    let start = Instant::now();
    loop {
        if publisher.cmd(&["PUBSUB", "NUMPAT"]) == Resp::Int(0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pattern left behind"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(publisher.cmd(&["PUBLISH", "news", "gone"]), Resp::Int(0));
}

/// Runs `MULTI; SET k from-tx; EXEC` and returns EXEC's reply.
fn set_in_tx(c: &mut Conn) -> Resp {
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "k", "from-tx"]), queued());
    c.cmd(&["EXEC"])
}

#[test]
fn watch_sees_other_clients_flushes_and_expiry() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    let mut b = Conn::connect(srv.addr);

    // Another client's write aborts the transaction.
    a.cmd(&["SET", "k", "v"]);
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["SET", "k", "other"]), ok());
    assert_eq!(set_in_tx(&mut a), Resp::Array(None));
    assert_eq!(a.cmd(&["GET", "k"]), bulk("other"));

    // EXEC unwatched: the next transaction runs.
    assert_eq!(set_in_tx(&mut a), arr(vec![ok()]));

    // A write to the same key name in another database does not.
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    b.cmd(&["SELECT", "1"]);
    assert_eq!(b.cmd(&["SET", "k", "db1"]), ok());
    assert_eq!(b.cmd(&["FLUSHDB"]), ok());
    assert_eq!(set_in_tx(&mut a), arr(vec![ok()]));

    // FLUSHALL by another client aborts it.
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["FLUSHALL"]), ok());
    assert_eq!(set_in_tx(&mut a), Resp::Array(None));

    // DEL by another client aborts it.
    a.cmd(&["SET", "k", "v"]);
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    b.cmd(&["SELECT", "0"]);
    assert_eq!(b.cmd(&["DEL", "k"]), Resp::Int(1));
    assert_eq!(set_in_tx(&mut a), Resp::Array(None));

    // The watched key expires and the active cycle deletes it.
    a.cmd(&["SET", "k", "v"]);
    set_ttl(&srv, "k", 50);
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    std::thread::sleep(Duration::from_millis(400));
    // `k` is the only key: the engine stores none.
    assert_eq!(stored_keys(&srv), 0);
    assert_eq!(set_in_tx(&mut a), Resp::Array(None));

    // Logically expired but not yet deleted (no active expiry): still aborts.
    set_active_expire(&srv, false);
    a.cmd(&["SET", "k", "v"]);
    set_ttl(&srv, "k", 50);
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(stored_keys(&srv), 1);
    assert_eq!(set_in_tx(&mut a), Resp::Array(None));

    // Already expired when watched: its deletion is no change, as in Redis 7.0.
    a.cmd(&["SET", "k", "v"]);
    set_ttl(&srv, "k", 20);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["GET", "k"]), Resp::Bulk(None));
    assert_eq!(set_in_tx(&mut a), arr(vec![ok()]));
    set_active_expire(&srv, true);

    // A WATCH on a missing key survives FLUSHALL (nothing existed to be flushed).
    b.cmd(&["DEL", "k"]);
    assert_eq!(a.cmd(&["WATCH", "k"]), ok());
    assert_eq!(b.cmd(&["FLUSHALL"]), ok());
    assert_eq!(set_in_tx(&mut a), arr(vec![ok()]));
}

#[test]
fn keyspace_notifications_reach_subscribers() {
    let srv = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        notify_keyspace_events: "KEA".into(),
        ..Default::default()
    });
    let mut sub = Conn::connect(srv.addr);
    let mut c = Conn::connect(srv.addr);

    sub.cmd(&["SUBSCRIBE", "__keyspace@0__:k"]);
    sub.cmd(&["SUBSCRIBE", "__keyevent@0__:del"]);
    sub.cmd(&["SUBSCRIBE", "__keyevent@0__:expired"]);

    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(
        sub.read(),
        arr(vec![bulk("message"), bulk("__keyspace@0__:k"), bulk("set")])
    );
    assert_eq!(c.cmd(&["DEL", "k"]), Resp::Int(1));
    assert_eq!(
        sub.read(),
        arr(vec![bulk("message"), bulk("__keyspace@0__:k"), bulk("del")])
    );
    assert_eq!(
        sub.read(),
        arr(vec![bulk("message"), bulk("__keyevent@0__:del"), bulk("k")])
    );
    // Writes in another database go to that database's channels.
    c.cmd(&["SELECT", "1"]);
    c.cmd(&["SET", "k", "v"]);
    c.cmd(&["DEL", "k"]);
    c.cmd(&["SELECT", "0"]);
    c.cmd(&["SET", "k", "again"]);
    assert_eq!(
        sub.read(),
        arr(vec![bulk("message"), bulk("__keyspace@0__:k"), bulk("set")])
    );

    // The active expiry cycle deletes a key nobody touches.
    assert_eq!(c.cmd(&["SET", "gone", "v"]), ok());
    set_ttl(&srv, "gone", 50);
    wait_for(
        &mut sub,
        &arr(vec![
            bulk("message"),
            bulk("__keyevent@0__:expired"),
            bulk("gone"),
        ]),
        Duration::from_secs(3),
    );

    // A RESP3 subscriber gets the same as pushes, through a pattern.
    let mut sub3 = Conn::connect(srv.addr);
    sub3.cmd(&["HELLO", "3"]);
    sub3.cmd(&["PSUBSCRIBE", "__keyevent@*__:set"]);
    c.cmd(&["SET", "x", "1"]);
    assert_eq!(
        sub3.read(),
        Resp::Push(vec![
            bulk("pmessage"),
            bulk("__keyevent@*__:set"),
            bulk("__keyevent@0__:set"),
            bulk("x"),
        ])
    );
    // Its own write: the push comes before the command's reply, as in Redis.
    sub3.send(&[b"SET", b"y", b"2"]);
    assert_eq!(
        sub3.read(),
        Resp::Push(vec![
            bulk("pmessage"),
            bulk("__keyevent@*__:set"),
            bulk("__keyevent@0__:set"),
            bulk("y"),
        ])
    );
    assert_eq!(sub3.read(), ok());
}
