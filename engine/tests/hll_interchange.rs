//! HyperLogLog values are plain strings in Redis's layout, so they move between a
//! private redis-server and the engine in both directions: GET on one side and SET
//! on the other, or DUMP and RESTORE, give an HLL the other side counts, extends and
//! merges to the same bytes.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};

fn bulk(r: Resp) -> Vec<u8> {
    match r {
        Resp::Bulk(Some(b)) => b,
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn call(c: &mut Conn, args: &[&[u8]]) -> Resp {
    c.send(args);
    c.read()
}

/// Adds `n` distinct elements (`prefix:i`) in batches.
fn fill(c: &mut Conn, key: &str, prefix: &str, n: usize) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    for batch in names.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
        args.extend(batch.iter().map(|s| s.as_bytes()));
        call(c, &args);
    }
}

/// The cardinalities worth moving: empty, a few registers, a long sparse string and
/// a dense one.
const SIZES: [(&str, usize); 4] = [("empty", 0), ("small", 12), ("mid", 900), ("dense", 4000)];

/// Builds each size on `from`, copies it to `to` by GET and SET, then checks that both
/// count it alike and that extending it keeps the bytes equal.
fn copy_by_value(from: &mut Conn, to: &mut Conn) {
    for (key, n) in SIZES {
        call(from, &[b"DEL", key.as_bytes()]);
        call(from, &[b"PFADD", key.as_bytes()]);
        fill(from, key, key, n);
        let bytes = bulk(call(from, &[b"GET", key.as_bytes()]));
        assert_eq!(
            call(to, &[b"SET", key.as_bytes(), &bytes]),
            Resp::Simple("OK".into())
        );
        // The cached cardinality is stale after PFADD: both recompute and cache it.
        let count = call(from, &[b"PFCOUNT", key.as_bytes()]);
        assert_eq!(call(to, &[b"PFCOUNT", key.as_bytes()]), count, "{key}");
        assert_eq!(
            call(to, &[b"GET", key.as_bytes()]),
            call(from, &[b"GET", key.as_bytes()]),
            "{key} after PFCOUNT"
        );
        for c in [&mut *from, &mut *to] {
            fill(c, key, "more", 300);
        }
        assert_eq!(
            call(to, &[b"GET", key.as_bytes()]),
            call(from, &[b"GET", key.as_bytes()]),
            "{key} after PFADD"
        );
        assert_eq!(
            call(to, &[b"PFDEBUG", b"ENCODING", key.as_bytes()]),
            call(from, &[b"PFDEBUG", b"ENCODING", key.as_bytes()]),
        );
    }
    // Merging the copies gives the same bytes on both sides.
    for c in [&mut *from, &mut *to] {
        let r = call(c, &[b"PFMERGE", b"all", b"empty", b"small", b"mid"]);
        assert_eq!(r, Resp::Simple("OK".into()));
    }
    assert_eq!(call(to, &[b"GET", b"all"]), call(from, &[b"GET", b"all"]));
    for c in [&mut *from, &mut *to] {
        call(c, &[b"PFMERGE", b"all", b"dense"]);
    }
    assert_eq!(call(to, &[b"GET", b"all"]), call(from, &[b"GET", b"all"]));
    assert_eq!(
        call(to, &[b"PFCOUNT", b"all", b"small"]),
        call(from, &[b"PFCOUNT", b"all", b"small"])
    );
}

#[test]
fn redis_hlls_work_in_the_engine() {
    let redis_srv = RedisServer::start(&[]);
    let engine_srv = EngineServer::start();
    let mut r = Conn::connect(redis_srv.addr());
    let mut e = Conn::connect(engine_srv.addr);
    copy_by_value(&mut r, &mut e);
}

#[test]
fn engine_hlls_work_in_redis() {
    let redis_srv = RedisServer::start(&[]);
    let engine_srv = EngineServer::start();
    let mut r = Conn::connect(redis_srv.addr());
    let mut e = Conn::connect(engine_srv.addr);
    copy_by_value(&mut e, &mut r);
}

#[test]
fn dump_payloads_match_and_restore_both_ways() {
    let redis_srv = RedisServer::start(&[]);
    let engine_srv = EngineServer::start();
    let mut r = Conn::connect(redis_srv.addr());
    let mut e = Conn::connect(engine_srv.addr);
    for (key, n) in SIZES {
        for c in [&mut r, &mut e] {
            call(c, &[b"PFADD", key.as_bytes()]);
            fill(c, key, key, n);
        }
        // Stale and then valid cached cardinality: both payloads are compared.
        for step in ["stale", "cached"] {
            let rd = bulk(call(&mut r, &[b"DUMP", key.as_bytes()]));
            let ed = bulk(call(&mut e, &[b"DUMP", key.as_bytes()]));
            assert_eq!(ed, rd, "DUMP of {key} ({step})");
            let copy = format!("{key}:copy");
            for (c, payload) in [(&mut e, &rd), (&mut r, &ed)] {
                let reply = call(c, &[b"RESTORE", copy.as_bytes(), b"0", payload, b"REPLACE"]);
                assert_eq!(reply, Resp::Simple("OK".into()));
            }
            let count = call(&mut r, &[b"PFCOUNT", copy.as_bytes()]);
            assert_eq!(call(&mut e, &[b"PFCOUNT", copy.as_bytes()]), count);
            call(&mut r, &[b"PFCOUNT", key.as_bytes()]);
            call(&mut e, &[b"PFCOUNT", key.as_bytes()]);
        }
    }
}
