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
