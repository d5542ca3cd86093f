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
