//! Blocking sorted-set pops (BZPOPMIN, BZPOPMAX, BZMPOP) woken by another client,
//! compared with a real redis-server.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::net::SocketAddr;
use std::time::Duration;

/// Runs one scenario on a server: waiters block, a writer adds data, then every
/// waiter's reply and the remaining set are collected.
fn scenario(addr: SocketAddr, waiters: &[&[&str]], write: &[&str], resp3: bool) -> Vec<Resp> {
    let mut w = Conn::connect(addr);
    w.cmd(&["FLUSHALL"]);
    let mut conns: Vec<Conn> = Vec::new();
    for cmd in waiters {
        let mut c = Conn::connect(addr);
        if resp3 {
            c.cmd(&["HELLO", "3"]);
        }
        let a: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        c.send(&a);
        // Let each waiter block before the next, so the serving order is defined.
        std::thread::sleep(Duration::from_millis(100));
        conns.push(c);
    }
    let mut out = vec![w.cmd(write)];
    for c in &mut conns {
        out.push(c.read());
    }
    out.push(w.cmd(&["ZRANGE", "k", "0", "-1", "WITHSCORES"]));
    out
}

/// Waiting commands, the write that wakes them, and whether they speak RESP3.
type Case<'a> = (Vec<&'a [&'a str]>, &'a [&'a str], bool);

#[test]
fn blocked_pops_are_served_like_redis() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let cases: Vec<Case> = vec![
        (
            vec![&["BZPOPMIN", "k", "5"]],
            &["ZADD", "k", "1", "a", "2", "b"],
            false,
        ),
        (
            vec![&["BZPOPMAX", "other", "k", "0"]],
            &["ZADD", "k", "1", "a", "2", "b"],
            true,
        ),
        (
            vec![
                &["BZPOPMIN", "k", "5"],
                &["BZPOPMAX", "k", "5"],
                &["BZPOPMIN", "k", "0.5"],
            ],
            &["ZADD", "k", "1", "a", "2", "b"],
            false,
        ),
        (
            vec![&["BZMPOP", "5", "2", "x", "k", "MAX", "COUNT", "3"]],
            &["ZADD", "k", "1", "a", "2", "b"],
            true,
        ),
        (
            vec![&["BZMPOP", "5", "1", "k", "MIN"]],
            &["ZADD", "k", "1", "a", "2", "b"],
            false,
        ),
        (vec![&["BZPOPMIN", "k", "0.2"]], &["SET", "j", "1"], true),
    ];
    for (waiters, write, resp3) in cases {
        let r = scenario(redis.addr(), &waiters, write, resp3);
        let e = scenario(engine.addr, &waiters, write, resp3);
        assert_eq!(r, e, "waiters {waiters:?} then {write:?}");
    }
}

/// Waits until the server reports `n` blocked clients (INFO clients), so a writer
/// only starts once its waiter is parked.
fn wait_parked(c: &mut Conn, n: usize) {
    let want = format!("blocked_clients:{n}\r");
    for _ in 0..500 {
        if let Resp::Bulk(Some(info)) = c.cmd(&["INFO", "clients"]) {
            if String::from_utf8_lossy(&info).contains(&want) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no client blocked");
}

/// Issue 19's sequence on one server: a client blocks; another runs a transaction
/// that gives the key the waited-for type and then another type, then makes it the
/// right type again. Returns every reply, the waiter's last.
fn type_changes_in_a_transaction(addr: SocketAddr, wait: &[&str], add: &[&str]) -> Vec<Resp> {
    let mut w = Conn::connect(addr);
    w.cmd(&["FLUSHALL"]);
    let mut waiter = Conn::connect(addr);
    let a: Vec<&[u8]> = wait.iter().map(|s| s.as_bytes()).collect();
    waiter.send(&a);
    wait_parked(&mut w, 1);
    let add_first: Vec<&str> = add
        .iter()
        .map(|s| if *s == "VALUE" { "foo" } else { s })
        .collect();
    let mut out = vec![
        w.cmd(&["MULTI"]),
        w.cmd(&add_first),
        w.cmd(&["DEL", "zset"]),
        w.cmd(&["SET", "zset", "foo"]),
        w.cmd(&["EXEC"]),
    ];
    // Still waiting: the key was a string when the transaction ended. Had it been
    // woken, its one reply would be WRONGTYPE rather than the element added next.
    wait_parked(&mut w, 1);
    out.push(w.cmd(&["DEL", "zset"]));
    let add_then: Vec<&str> = add
        .iter()
        .map(|s| match *s {
            "VALUE" => "bar",
            "0" => "1",
            s => s,
        })
        .collect();
    out.push(w.cmd(&add_then));
    out.push(waiter.read());
    out.push(w.cmd(&["EXISTS", "zset"]));
    out
}

#[test]
fn a_key_of_another_type_at_exec_keeps_every_family_waiting() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let zadd: &[&str] = &["ZADD", "zset", "0", "VALUE"];
    let rpush: &[&str] = &["RPUSH", "zset", "VALUE"];
    let cases: [(&[&str], &[&str]); 6] = [
        (&["BZPOPMIN", "zset", "0"], zadd),
        (&["BZPOPMAX", "zset", "0"], zadd),
        (&["BZMPOP", "0", "1", "zset", "MIN"], zadd),
        (&["BZPOPMIN", "other", "zset", "0"], zadd),
        (&["BLPOP", "zset", "0"], rpush),
        (&["BLMPOP", "0", "1", "zset", "LEFT"], rpush),
    ];
    for (wait, add) in cases {
        let r = type_changes_in_a_transaction(redis.addr(), wait, add);
        let e = type_changes_in_a_transaction(engine.addr, wait, add);
        assert_eq!(r, e, "{wait:?}");
        // Served with the element added after the transaction, not an error.
        assert!(
            !matches!(e[7], Resp::Error(_)),
            "{wait:?} was answered {:?}",
            e[7]
        );
    }
}
