//! Blocking list pops over real connections: first-come first-served service, chained
//! wake-ups through BLMOVE, timeouts, disconnects, MULTI and database isolation.

mod common;

use common::{Conn, EngineServer, Resp};
use std::time::{Duration, Instant};

fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

fn pair(k: &str, v: &str) -> Resp {
    Resp::Array(Some(vec![bulk(k), bulk(v)]))
}

fn blocked(srv: &EngineServer) -> usize {
    srv.engine.stats().blocked_clients as usize
}

/// Waits until exactly `n` clients are parked, so that arrival order is deterministic.
fn wait_blocked(srv: &EngineServer, n: usize) {
    let start = Instant::now();
    while blocked(srv) != n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "expected {n} blocked clients, have {}",
            blocked(srv)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that nothing arrives on `c` for a while (the client stays blocked).
fn assert_silent(c: &mut Conn, for_ms: u64) {
    c.set_timeout(Duration::from_millis(for_ms));
    let got = c.try_read();
    assert!(got.is_none(), "client should still be blocked, got {got:?}");
    c.set_timeout(Duration::from_secs(10));
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let srv = EngineServer::start();
    let mut waiters: Vec<Conn> = Vec::new();
    for i in 0..3 {
        let mut c = Conn::connect(srv.addr);
        // Alternate BLPOP and BRPOP: the order of service must not depend on the side.
        let cmd: &[&[u8]] = if i % 2 == 0 {
            &[b"BLPOP", b"other", b"q", b"0"]
        } else {
            &[b"BRPOP", b"q", b"0"]
        };
        c.send(cmd);
        wait_blocked(&srv, i + 1);
        waiters.push(c);
    }
    let mut p = Conn::connect(srv.addr);
    // One element: only the oldest waiter gets it.
    assert_eq!(p.cmd(&["RPUSH", "q", "a"]), Resp::Int(1));
    assert_eq!(waiters[0].read(), pair("q", "a"));
    assert_silent(&mut waiters[1], 150);
    assert_eq!(blocked(&srv), 2);
    // Two more in one command: the next two in the order they blocked.
    assert_eq!(p.cmd(&["RPUSH", "q", "b", "c"]), Resp::Int(2));
    assert_eq!(waiters[1].read(), pair("q", "c"), "BRPOP takes the tail");
    assert_eq!(waiters[2].read(), pair("q", "b"));
    assert_eq!(blocked(&srv), 0);
    assert_eq!(p.cmd(&["LLEN", "q"]), Resp::Int(0));
}

#[test]
fn blmove_wakes_a_waiter_on_its_destination() {
    let srv = EngineServer::start();
    let mut mover = Conn::connect(srv.addr);
    mover.send(&[b"BLMOVE", b"src", b"mid", b"LEFT", b"RIGHT", b"0"]);
    wait_blocked(&srv, 1);
    let mut popper = Conn::connect(srv.addr);
    popper.send(&[b"BLPOP", b"mid", b"0"]);
    wait_blocked(&srv, 2);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["LPUSH", "src", "v"]), Resp::Int(1));
    assert_eq!(mover.read(), bulk("v"));
    assert_eq!(popper.read(), pair("mid", "v"));
    assert_eq!(blocked(&srv), 0);
    assert_eq!(p.cmd(&["LLEN", "src"]), Resp::Int(0));
    assert_eq!(p.cmd(&["LLEN", "mid"]), Resp::Int(0));
    assert_eq!(p.cmd(&["DBSIZE"]), Resp::Int(0));
}

#[test]
fn brpoplpush_served_after_blocking_moves_the_element() {
    let srv = EngineServer::start();
    let mut mover = Conn::connect(srv.addr);
    mover.send(&[b"BRPOPLPUSH", b"src", b"dst", b"0"]);
    wait_blocked(&srv, 1);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["RPUSH", "src", "a", "b"]), Resp::Int(2));
    assert_eq!(mover.read(), bulk("b"));
    assert_eq!(
        p.cmd(&["LRANGE", "dst", "0", "-1"]),
        Resp::Array(Some(vec![bulk("b")]))
    );
    assert_eq!(
        p.cmd(&["LRANGE", "src", "0", "-1"]),
        Resp::Array(Some(vec![bulk("a")]))
    );
}

#[test]
fn blmpop_served_after_blocking_pops_up_to_count() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    c.send(&[b"BLMPOP", b"0", b"2", b"x", b"y", b"RIGHT", b"COUNT", b"2"]);
    wait_blocked(&srv, 1);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["RPUSH", "y", "1", "2", "3"]), Resp::Int(3));
    assert_eq!(
        c.read(),
        Resp::Array(Some(vec![
            bulk("y"),
            Resp::Array(Some(vec![bulk("3"), bulk("2")]))
        ]))
    );
    assert_eq!(p.cmd(&["LLEN", "y"]), Resp::Int(1));
}

#[test]
fn fractional_timeout_returns_null_array() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    let start = Instant::now();
    assert_eq!(c.cmd(&["BLPOP", "missing", "0.2"]), Resp::Array(None));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    // Redis 7.0 answers a timed-out BLMOVE with a null array too.
    assert_eq!(
        c.cmd(&["BLMOVE", "missing", "d", "LEFT", "LEFT", "0.05"]),
        Resp::Array(None)
    );
    assert_eq!(blocked(&srv), 0);
    // The connection is usable afterwards.
    assert_eq!(c.cmd(&["RPUSH", "missing", "x"]), Resp::Int(1));
}

#[test]
fn a_disconnected_waiter_is_not_served() {
    let srv = EngineServer::start();
    let mut gone = Conn::connect(srv.addr);
    gone.send(&[b"BLPOP", b"k", b"0"]);
    wait_blocked(&srv, 1);
    drop(gone);
    wait_blocked(&srv, 0);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["RPUSH", "k", "x"]), Resp::Int(1));
    assert_eq!(p.cmd(&["LLEN", "k"]), Resp::Int(1), "the element stays");
    let mut next = Conn::connect(srv.addr);
    assert_eq!(next.cmd(&["BLPOP", "k", "0"]), pair("k", "x"));
}

#[test]
fn blpop_inside_multi_returns_null_at_exec() {
    // EXEC runs queued commands with `no_block` set (the handler-level check of that
    // flag is the unit test `blocking::tests::no_block_clients_get_the_null_at_once`).
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    assert_eq!(c.cmd(&["MULTI"]), Resp::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["BLPOP", "empty", "0"]),
        Resp::Simple("QUEUED".into())
    );
    assert_eq!(
        c.cmd(&["BLMOVE", "empty", "d", "LEFT", "LEFT", "0"]),
        Resp::Simple("QUEUED".into())
    );
    c.set_timeout(Duration::from_secs(2));
    let start = Instant::now();
    assert_eq!(
        c.cmd(&["EXEC"]),
        Resp::Array(Some(vec![Resp::Array(None), Resp::Bulk(None)]))
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(blocked(&srv), 0);
}

#[test]
fn a_push_in_another_db_does_not_wake_the_waiter() {
    let srv = EngineServer::start();
    let mut w = Conn::connect(srv.addr);
    assert_eq!(w.cmd(&["SELECT", "1"]), Resp::Simple("OK".into()));
    w.send(&[b"BLPOP", b"k", b"0"]);
    wait_blocked(&srv, 1);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["RPUSH", "k", "db0"]), Resp::Int(1));
    assert_silent(&mut w, 200);
    assert_eq!(p.cmd(&["LLEN", "k"]), Resp::Int(1));
    assert_eq!(p.cmd(&["SELECT", "1"]), Resp::Simple("OK".into()));
    assert_eq!(p.cmd(&["RPUSH", "k", "db1"]), Resp::Int(1));
    assert_eq!(w.read(), pair("k", "db1"));
    assert_eq!(p.cmd(&["LLEN", "k"]), Resp::Int(0));
}

#[test]
fn a_waiter_whose_key_becomes_a_string_keeps_waiting() {
    // Redis 7.0 only serves parked clients from keys that hold lists.
    let srv = EngineServer::start();
    let mut w = Conn::connect(srv.addr);
    w.send(&[b"BLPOP", b"k", b"0"]);
    wait_blocked(&srv, 1);
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["SET", "k", "str"]), Resp::Simple("OK".into()));
    assert_silent(&mut w, 150);
    assert_eq!(p.cmd(&["DEL", "k"]), Resp::Int(1));
    assert_eq!(p.cmd(&["RPUSH", "k", "v"]), Resp::Int(1));
    assert_eq!(w.read(), pair("k", "v"));
}

#[test]
fn blmove_to_a_wrong_type_destination_errors_and_passes_the_element_on() {
    // As Redis 7.0: the parked BLMOVE gets WRONGTYPE, the element stays for the next
    // waiter.
    let srv = EngineServer::start();
    let mut p = Conn::connect(srv.addr);
    assert_eq!(p.cmd(&["SET", "dst", "str"]), Resp::Simple("OK".into()));
    let mut mover = Conn::connect(srv.addr);
    mover.send(&[b"BLMOVE", b"src", b"dst", b"LEFT", b"LEFT", b"0"]);
    wait_blocked(&srv, 1);
    let mut popper = Conn::connect(srv.addr);
    popper.send(&[b"BLPOP", b"src", b"0"]);
    wait_blocked(&srv, 2);
    assert_eq!(p.cmd(&["RPUSH", "src", "v"]), Resp::Int(1));
    assert_eq!(
        mover.read(),
        Resp::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
    );
    assert_eq!(popper.read(), pair("src", "v"));
    assert_eq!(p.cmd(&["GET", "dst"]), bulk("str"));
}
