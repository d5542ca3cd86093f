//! Expiry as a user sees it: an expired key is never returned, and the active cycle
//! reclaims expired keys that no client touches.

mod common;

use common::{Conn, EngineServer, Resp};
use std::time::{Duration, Instant};

fn int(r: Resp) -> i64 {
    match r {
        Resp::Int(i) => i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn expired_keys_are_never_returned_even_without_the_active_cycle() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    assert_eq!(
        c.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]),
        Resp::Simple("OK".into())
    );
    for i in 0..100 {
        c.cmd(&["SET", &format!("k{i}"), "v", "PX", "30"]);
    }
    c.cmd(&["RPUSH", "l", "a"]);
    c.cmd(&["PEXPIRE", "l", "30"]);
    std::thread::sleep(Duration::from_millis(80));
    // Nothing reclaimed them (the cycle is off), yet no read may see them.
    assert_eq!(int(c.cmd(&["DBSIZE"])), 101);
    for i in 0..100 {
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), Resp::Bulk(None));
    }
    assert_eq!(int(c.cmd(&["LLEN", "l"])), 0);
    assert_eq!(int(c.cmd(&["EXISTS", "l"])), 0);
    assert_eq!(c.cmd(&["KEYS", "*"]), Resp::Array(Some(vec![])));
    assert_eq!(
        int(c.cmd(&["DBSIZE"])),
        0,
        "reads reclaim what they find expired"
    );
}

#[test]
fn active_cycle_reclaims_untouched_keys() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    // 20,000 short-lived keys and 100 that stay.
    let mut batch = Vec::new();
    for i in 0..20_000 {
        let k = format!("tmp:{i}");
        batch.push(vec![
            "SET".to_string(),
            k,
            "x".into(),
            "PX".into(),
            "1000".into(),
        ]);
    }
    for i in 0..100 {
        batch.push(vec!["SET".to_string(), format!("keep:{i}"), "y".into()]);
    }
    for cmd in &batch {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        c.send(&args);
    }
    for _ in &batch {
        assert_eq!(c.read(), Resp::Simple("OK".into()));
    }
    // A slow machine may already have reclaimed a few, but most are still there.
    assert!(int(c.cmd(&["DBSIZE"])) > 10_000);
    // No client touches the keys: only the active cycle can bring DBSIZE down.
    let start = Instant::now();
    loop {
        let n = int(c.cmd(&["DBSIZE"]));
        if n == 100 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "active expiry left {n} keys after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let info = match c.cmd(&["INFO", "stats"]) {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("{other:?}"),
    };
    assert!(info.contains("expired_keys:20000"), "{info}");
}
