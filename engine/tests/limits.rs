//! Limits that keep one client from hurting the others: DEBUG refused unless
//! `enable-debug-command` allows it (Redis 7's default), and output buffer limits
//! that close a client which stops reading.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};

#[test]
fn debug_is_refused_by_default_with_redis_reply() {
    // Both at their defaults: `enable-debug-command no`.
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    });
    let mut r = Conn::connect(redis.addr());
    let mut e = Conn::connect(engine.addr);
    for cmd in [
        &["DEBUG", "SLEEP", "10"][..],
        &["DEBUG", "SET-ACTIVE-EXPIRE", "0"],
        &["DEBUG"],
        &["CONFIG", "GET", "enable-debug-command"],
        &["CONFIG", "SET", "enable-debug-command", "yes"],
    ] {
        let (rr, er) = (r.cmd(cmd), e.cmd(cmd));
        assert_eq!(er, rr, "{cmd:?}");
    }
    assert!(matches!(
        e.cmd(&["DEBUG", "SLEEP", "10"]),
        Resp::Error(m) if m.starts_with("ERR DEBUG command not allowed.")
    ));
    // Nothing slept: the server answers at once.
    assert_eq!(e.cmd(&["PING"]), Resp::Simple("PONG".into()));

    // `local`: a loopback connection may.
    let local = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        enable_debug_command: "local".into(),
        ..Default::default()
    });
    let mut l = Conn::connect(local.addr);
    assert_eq!(l.cmd(&["DEBUG", "SLEEP", "0"]), Resp::Simple("OK".into()));
    // A bad value in the config is refused as CONFIG SET would refuse it.
    let bad = engine::EngineConfig {
        enable_debug_command: "sometimes".into(),
        ..Default::default()
    };
    assert!(bad.validate().is_err());
}

/// The `omem` of the client named `name` in CLIENT LIST, or `None` when it is gone.
fn omem_of(c: &mut Conn, name: &str) -> Option<u64> {
    let Resp::Bulk(Some(list)) = c.cmd(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST replies a bulk string")
    };
    let list = String::from_utf8_lossy(&list).into_owned();
    let line = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))?;
    line.split(' ')
        .find_map(|f| f.strip_prefix("omem="))
        .and_then(|n| n.parse().ok())
}

fn used_memory(c: &mut Conn) -> u64 {
    let Resp::Bulk(Some(b)) = c.cmd(&["INFO", "memory"]) else {
        panic!("INFO replies a bulk string")
    };
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("used_memory")
}

/// A subscriber that stops reading is closed once its pending output passes the
/// pubsub class's hard limit, while a subscriber that reads gets every message and
/// the publisher is never held up. Returns the largest `omem` seen for the slow one.
fn slow_subscriber_is_closed(addr: std::net::SocketAddr, engine: bool) -> u64 {
    const MESSAGES: usize = 20_000;
    let mut admin = Conn::connect(addr);
    assert_eq!(
        admin.cmd(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 4mb 1mb 60"
        ]),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"client-output-buffer-limit".to_vec())),
            Resp::Bulk(Some(
                b"normal 0 0 0 slave 268435456 67108864 60 pubsub 4194304 1048576 60".to_vec()
            )),
        ]))
    );
    let mut slow = Conn::connect(addr);
    slow.cmd(&["CLIENT", "SETNAME", "slow"]);
    slow.cmd(&["SUBSCRIBE", "ch"]);
    let mut fast = Conn::connect(addr);
    fast.cmd(&["SUBSCRIBE", "ch"]);
    // The publisher waits for the reading subscriber after each batch, so that it
    // never lags by more than a batch (on a loaded machine it could otherwise fall
    // behind by the limit and be closed too, rightly).
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = read.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while n < MESSAGES {
            match fast.read() {
                Resp::Array(Some(m)) | Resp::Push(m) if m.len() == 3 => n += 1,
                r => panic!("{r:?}"),
            }
            seen.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        n
    });
    let before = if engine { used_memory(&mut admin) } else { 0 };
    let mut max_used = 0;
    let mut max_omem = 0;
    let payload = vec![b'm'; 1000];
    let mut publisher = Conn::connect(addr);
    for batch in 0..MESSAGES / 100 {
        for _ in 0..100 {
            publisher.send(&[b"PUBLISH", b"ch", &payload]);
        }
        for _ in 0..100 {
            assert!(matches!(publisher.read(), Resp::Int(_)));
        }
        let published = (batch + 1) * 100;
        let start = std::time::Instant::now();
        while read.load(std::sync::atomic::Ordering::Relaxed) < published {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the reading subscriber stopped receiving"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if batch % 5 == 0 {
            if let Some(o) = omem_of(&mut admin, "slow") {
                max_omem = max_omem.max(o);
            }
            if engine {
                max_used = max_used.max(used_memory(&mut admin));
            }
        }
    }
    assert_eq!(
        reader.join().expect("reader"),
        MESSAGES,
        "the reading subscriber got all"
    );
    // The slow one is gone: CLIENT LIST no longer shows it (the close is scheduled
    // by the publish that passed the limit).
    let mut gone = false;
    for _ in 0..500 {
        if omem_of(&mut admin, "slow").is_none() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(gone, "the slow subscriber was closed");
    // What it can still read ends early, at a closed connection.
    slow.set_timeout(std::time::Duration::from_secs(5));
    let mut got = 0;
    while slow.try_read().is_some() {
        got += 1;
    }
    assert!(got < MESSAGES, "read {got} of {MESSAGES}");
    if engine {
        // 20 MB were published; the process held no more than the limit's worth for
        // the slow subscriber (and the socket's own buffers are the kernel's).
        assert!(
            max_used < before + (12 << 20),
            "used_memory went from {before} to {max_used}"
        );
    }
    max_omem
}

#[test]
fn a_subscriber_that_stops_reading_is_closed_like_redis() {
    let redis = RedisServer::start(&[]);
    let redis_omem = slow_subscriber_is_closed(redis.addr(), false);
    let engine = EngineServer::start();
    let engine_omem = slow_subscriber_is_closed(engine.addr, true);
    println!("largest omem seen for the slow subscriber: engine {engine_omem}, redis {redis_omem}");
    assert!(engine_omem > 0, "CLIENT LIST shows pending output");
}

/// With `timeout 1`, an idle client is closed and a subscribed one is not.
fn idle_clients_are_closed(addr: std::net::SocketAddr) -> Vec<String> {
    let mut admin = Conn::connect(addr);
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "timeout", "1"]),
        Resp::Simple("OK".into())
    );
    let mut idle = Conn::connect(addr);
    idle.cmd(&["CLIENT", "SETNAME", "idle"]);
    let mut sub = Conn::connect(addr);
    sub.cmd(&["CLIENT", "SETNAME", "sub"]);
    sub.cmd(&["SUBSCRIBE", "ch"]);
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let mut now = Conn::connect(addr);
    now.cmd(&["CLIENT", "SETNAME", "now"]);
    let Resp::Bulk(Some(list)) = now.cmd(&["CLIENT", "LIST"]) else {
        panic!("CLIENT LIST replies a bulk string")
    };
    let mut names: Vec<String> = String::from_utf8_lossy(&list)
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("name="))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(now.cmd(&["PUBLISH", "ch", "hi"]), Resp::Int(1));
    assert!(matches!(sub.read(), Resp::Array(Some(m)) if m.len() == 3));
    assert_eq!(
        now.cmd(&["CONFIG", "SET", "timeout", "0"]),
        Resp::Simple("OK".into())
    );
    names
}

#[test]
fn idle_clients_are_closed_after_timeout_like_redis() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let r = idle_clients_are_closed(redis.addr());
    let e = idle_clients_are_closed(engine.addr);
    assert_eq!(e, vec!["now", "sub"]);
    assert_eq!(e, r);
}

/// A blocked client that keeps sending is closed at `client-query-buffer-limit`.
fn blocked_client_hits_query_buffer_limit(addr: std::net::SocketAddr) {
    let mut admin = Conn::connect(addr);
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "client-query-buffer-limit", "1mb"]),
        Resp::Simple("OK".into())
    );
    let mut c = Conn::connect(addr);
    c.send(&[b"BLPOP", b"nothing", b"0"]);
    // Wait until it is blocked.
    for _ in 0..500 {
        if let Resp::Bulk(Some(info)) = admin.cmd(&["INFO", "clients"]) {
            if String::from_utf8_lossy(&info).contains("blocked_clients:1") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // 2 MB of one request that never completes.
    let mut req = b"*2\r\n$3\r\nSET\r\n$3000000\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 2_000_000));
    use std::io::Write;
    let _ = c.raw_stream().write_all(&req);
    c.set_timeout(std::time::Duration::from_secs(10));
    assert!(c.try_read().is_none(), "closed without a reply");
    assert_eq!(admin.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let Resp::Bulk(Some(info)) = admin.cmd(&["INFO", "clients"]) else {
        panic!("INFO")
    };
    assert!(String::from_utf8_lossy(&info).contains("blocked_clients:0"));
}

#[test]
fn the_query_buffer_limit_holds_while_blocked_like_redis() {
    let redis = RedisServer::start(&[]);
    blocked_client_hits_query_buffer_limit(redis.addr());
    let engine = EngineServer::start();
    blocked_client_hits_query_buffer_limit(engine.addr);
}
