//! Leases over the wire (raw RESP): LEASEGET grants one token per key per interval,
//! LEASESET fills only with the key's current token, and every modification of the
//! key — DEL (even of the missing key), UNLINK, SET from another client, expiry,
//! FLUSHDB, the sidecar's in-process `Engine::execute_batch` DEL — voids the token.
//! These commands are Coherent's own, so there is no Redis to compare against.

mod common;

use bytes::Bytes;
use common::{Conn, EngineServer, Resp};
use std::io::{Read, Write};
use std::time::Duration;

fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

/// LEASEGET's reply split into its tag and payload.
fn leaseget(c: &mut Conn, key: &str) -> (String, Resp) {
    match c.cmd(&["LEASEGET", key]) {
        Resp::Array(Some(v)) if v.len() == 2 => {
            let tag = match &v[0] {
                Resp::Bulk(Some(t)) => String::from_utf8_lossy(t).into_owned(),
                other => panic!("tag {other:?}"),
            };
            (tag, v[1].clone())
        }
        other => panic!("LEASEGET reply {other:?}"),
    }
}

/// Gets the lease on a missing key; returns the token as sent back by clients.
fn lease(c: &mut Conn, key: &str) -> String {
    match leaseget(c, key) {
        (tag, Resp::Int(t)) if tag == "lease" => {
            assert!(t > 0, "tokens are positive");
            t.to_string()
        }
        other => panic!("expected a lease, got {other:?}"),
    }
}

fn int(r: Resp) -> i64 {
    match r {
        Resp::Int(i) => i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn grant_wait_fill_then_hit() {
    let srv = EngineServer::start();
    let (mut a, mut b) = (Conn::connect(srv.addr), Conn::connect(srv.addr));
    let t = lease(&mut a, "k");
    // The herd: a second reader waits, with the ms left of the lease.
    let (tag, ms) = leaseget(&mut b, "k");
    assert_eq!(tag, "wait");
    let ms = int(ms);
    assert!(ms > 9_000 && ms <= 10_000, "{ms}");
    assert!(int(b.cmd(&["LEASEINFO", "k"])) > 9_000);
    assert_eq!(a.cmd(&["LEASESET", "k", &t, "v1", "EX", "100"]), ok());
    assert_eq!(b.cmd(&["GET", "k"]), bulk("v1"));
    let ttl = int(b.cmd(&["TTL", "k"]));
    assert!((99..=100).contains(&ttl), "{ttl}");
    assert_eq!(leaseget(&mut b, "k"), ("value".into(), bulk("v1")));
    // Consumed: no lease remains, and the token does not fill twice.
    assert_eq!(int(a.cmd(&["LEASEINFO", "k"])), -2);
    b.cmd(&["DEL", "k"]);
    assert_eq!(a.cmd(&["LEASESET", "k", &t, "again"]), Resp::Bulk(None));
    assert_eq!(a.cmd(&["EXISTS", "k"]), Resp::Int(0));
    // PX and no TTL.
    let t = lease(&mut a, "p");
    assert_eq!(a.cmd(&["LEASESET", "p", &t, "x", "px", "50000"]), ok());
    assert!(int(a.cmd(&["PTTL", "p"])) > 49_000);
    let t = lease(&mut a, "n");
    assert_eq!(a.cmd(&["LEASESET", "n", &t, "x"]), ok());
    assert_eq!(int(a.cmd(&["TTL", "n"])), -1);
}

#[test]
fn del_of_the_missing_key_voids_the_token() {
    let srv = EngineServer::start();
    let (mut reader, mut writer) = (Conn::connect(srv.addr), Conn::connect(srv.addr));
    for del in ["DEL", "UNLINK"] {
        let t = lease(&mut reader, "user:1");
        // The writer commits v2 to the database, then deletes: the key is not cached.
        assert_eq!(writer.cmd(&[del, "other", "user:1"]), Resp::Int(0));
        assert_eq!(
            reader.cmd(&["LEASESET", "user:1", &t, "v1-stale"]),
            Resp::Bulk(None),
            "{del} must void the token"
        );
        assert_eq!(reader.cmd(&["EXISTS", "user:1"]), Resp::Int(0));
        assert_eq!(int(reader.cmd(&["LEASEINFO", "user:1"])), -2);
        // Voided: the next reader gets a fresh lease at once, not "wait".
        let t2 = lease(&mut writer, "user:1");
        assert_eq!(writer.cmd(&["LEASESET", "user:1", &t2, "v2"]), ok());
        writer.cmd(&["DEL", "user:1"]);
    }
}

#[test]
fn set_from_another_client_and_other_writes_void_the_token() {
    let srv = EngineServer::start();
    let (mut reader, mut other) = (Conn::connect(srv.addr), Conn::connect(srv.addr));
    let t = lease(&mut reader, "k");
    assert_eq!(other.cmd(&["SET", "k", "fresh"]), ok());
    assert_eq!(
        reader.cmd(&["LEASESET", "k", &t, "stale"]),
        Resp::Bulk(None)
    );
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("fresh"));
    // A failed SET NX on a missing key changes nothing, but it still names the key:
    // voiding too often only refuses a fill.
    other.cmd(&["DEL", "k"]);
    let t = lease(&mut reader, "k");
    other.cmd(&["MSET", "a", "1", "k", "2"]);
    assert_eq!(
        reader.cmd(&["LEASESET", "k", &t, "stale"]),
        Resp::Bulk(None)
    );
    // Inside MULTI/EXEC.
    other.cmd(&["DEL", "k"]);
    let t = lease(&mut reader, "k");
    other.cmd(&["MULTI"]);
    other.cmd(&["DEL", "k"]);
    other.cmd(&["EXEC"]);
    assert_eq!(
        reader.cmd(&["LEASESET", "k", &t, "stale"]),
        Resp::Bulk(None)
    );
    // FLUSHDB voids every token of the database.
    let t = lease(&mut reader, "k");
    other.cmd(&["FLUSHDB"]);
    assert_eq!(
        reader.cmd(&["LEASESET", "k", &t, "stale"]),
        Resp::Bulk(None)
    );
    // A token belongs to its database.
    let t = lease(&mut reader, "k");
    other.cmd(&["SELECT", "1"]);
    assert_eq!(other.cmd(&["LEASESET", "k", &t, "x"]), Resp::Bulk(None));
    other.cmd(&["DEL", "k"]);
    assert_eq!(reader.cmd(&["LEASESET", "k", &t, "ok"]), ok());
}

#[test]
fn in_process_batch_delete_voids_the_token() {
    let srv = EngineServer::start();
    let mut reader = Conn::connect(srv.addr);
    let t = lease(&mut reader, "user:7");
    // The sidecar's embedded target deletes through the in-process API.
    let replies = srv.engine.execute_batch(
        0,
        vec![vec![
            Bytes::from_static(b"DEL"),
            Bytes::from_static(b"user:7"),
        ]],
    );
    assert_eq!(replies, vec![engine::Reply::Int(0)]);
    assert_eq!(
        reader.cmd(&["LEASESET", "user:7", &t, "stale"]),
        Resp::Bulk(None)
    );
}

#[test]
fn expiry_and_leases() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    // An expired key not yet reclaimed is a miss; LEASEGET's own lazy expiry of it
    // (an "expired" event) comes before the grant, so the token stays valid.
    c.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    c.cmd(&["SET", "k", "v", "PX", "30"]);
    std::thread::sleep(Duration::from_millis(60));
    let t = lease(&mut c, "k");
    assert_eq!(c.cmd(&["LEASESET", "k", &t, "v2", "PX", "30"]), ok());
    std::thread::sleep(Duration::from_millis(60));
    let t = lease(&mut c, "k");
    assert_eq!(c.cmd(&["LEASESET", "k", &t, "v3"]), ok());
    // The active cycle reclaims a filled key; the next reader gets a fresh lease.
    c.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
    let t = lease(&mut c, "e");
    assert_eq!(c.cmd(&["LEASESET", "e", &t, "v", "PX", "30"]), ok());
    assert_eq!(leaseget(&mut c, "e"), ("value".into(), bulk("v")));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(int(c.cmd(&["DBSIZE"])), 1, "only k is left");
    let t = lease(&mut c, "e");
    assert_eq!(c.cmd(&["LEASESET", "e", &t, "v"]), ok());
}

#[test]
fn interval_regrant_voids_the_old_token() {
    let srv = EngineServer::start();
    let (mut a, mut b) = (Conn::connect(srv.addr), Conn::connect(srv.addr));
    assert_eq!(a.cmd(&["CONFIG", "SET", "lease-interval-ms", "100"]), ok());
    assert_eq!(
        a.cmd(&["CONFIG", "GET", "lease-interval-ms"]),
        Resp::Array(Some(vec![bulk("lease-interval-ms"), bulk("100")]))
    );
    let old = lease(&mut a, "k");
    let (tag, ms) = leaseget(&mut b, "k");
    assert_eq!(tag, "wait");
    assert!(int(ms) <= 100);
    std::thread::sleep(Duration::from_millis(130));
    let new = lease(&mut b, "k");
    assert_ne!(old, new);
    assert_eq!(a.cmd(&["LEASESET", "k", &old, "old"]), Resp::Bulk(None));
    assert_eq!(b.cmd(&["LEASESET", "k", &new, "new"]), ok());
    assert_eq!(a.cmd(&["GET", "k"]), bulk("new"));
    // A lease that runs out is not refilled late either.
    let t = lease(&mut a, "late");
    std::thread::sleep(Duration::from_millis(130));
    assert_eq!(int(a.cmd(&["LEASEINFO", "late"])), -2);
    assert_eq!(a.cmd(&["LEASESET", "late", &t, "v"]), Resp::Bulk(None));
    assert_eq!(
        a.cmd(&["CONFIG", "SET", "lease-interval-ms", "0"]),
        Resp::Error("ERR CONFIG SET failed (possibly related to argument 'lease-interval-ms') - argument must be between 1 and 9223372036854775807 inclusive".into())
    );
}

#[test]
fn the_table_does_not_leak() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    // A long interval while granting (a slow machine must not see the first ones
    // swept before the count), then a short one.
    a.cmd(&["CONFIG", "SET", "lease-interval-ms", "60000"]);
    for i in 0..1000 {
        lease(&mut a, &format!("k{i}"));
    }
    assert_eq!(srv.engine.stats().leases_outstanding, 1000);
    a.cmd(&["CONFIG", "SET", "lease-interval-ms", "50"]);
    // Nobody fills or deletes: the active cycle sweeps them after the interval.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.engine.stats().leases_outstanding, 0);
    // Consumed and voided leases leave at once.
    let t = lease(&mut a, "c");
    a.cmd(&["LEASESET", "c", &t, "v"]);
    lease(&mut a, "d");
    a.cmd(&["DEL", "d"]);
    assert_eq!(srv.engine.stats().leases_outstanding, 0);
}

#[test]
fn refused_fill_stores_nothing() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    // No lease at all, a wrong token, a zero or negative token.
    for tok in ["12345", "0", "-5"] {
        assert_eq!(a.cmd(&["LEASESET", "k", tok, "v"]), Resp::Bulk(None));
    }
    let t = lease(&mut a, "k");
    let wrong = (t.parse::<i64>().unwrap() ^ 1).to_string();
    assert_eq!(a.cmd(&["LEASESET", "k", &wrong, "v"]), Resp::Bulk(None));
    assert_eq!(a.cmd(&["EXISTS", "k"]), Resp::Int(0));
    // The wrong token did not disturb the holder.
    assert_eq!(a.cmd(&["LEASESET", "k", &t, "v"]), ok());
    assert_eq!(a.cmd(&["DBSIZE"]), Resp::Int(1));
}

#[test]
fn errors_use_redis_wording() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    let err = |s: &str| Resp::Error(s.into());
    assert_eq!(
        a.cmd(&["LEASEGET"]),
        err("ERR wrong number of arguments for 'leaseget' command")
    );
    assert_eq!(
        a.cmd(&["LEASESET", "k", "1"]),
        err("ERR wrong number of arguments for 'leaseset' command")
    );
    assert_eq!(
        a.cmd(&["LEASEINFO"]),
        err("ERR wrong number of arguments for 'leaseinfo' command")
    );
    let t = lease(&mut a, "k");
    for bad in [
        vec!["EX"],
        vec!["EX", "1", "PX", "1"],
        vec!["KEEPTTL"],
        vec!["NX", "1"],
    ] {
        let mut args = vec!["LEASESET", "k", &t, "v"];
        args.extend(bad);
        assert_eq!(a.cmd(&args), err("ERR syntax error"));
    }
    let nan = "ERR value is not an integer or out of range";
    assert_eq!(a.cmd(&["LEASESET", "k", "abc", "v"]), err(nan));
    assert_eq!(a.cmd(&["LEASESET", "k", &t, "v", "EX", "x"]), err(nan));
    let inv = "ERR invalid expire time in 'leaseset' command";
    for (o, v) in [
        ("EX", "0"),
        ("PX", "-1"),
        ("EX", "9223372036854775"),
        ("PX", "9223372036854775807"),
    ] {
        assert_eq!(
            a.cmd(&["LEASESET", "k", &t, "v", o, v]),
            err(inv),
            "{o} {v}"
        );
    }
    // Errors consumed nothing: the token still fills.
    assert_eq!(a.cmd(&["LEASESET", "k", &t, "v", "ex", "10"]), ok());
    // WRONGTYPE as GET.
    a.cmd(&["RPUSH", "list", "x"]);
    assert_eq!(
        a.cmd(&["LEASEGET", "list"]),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
}

/// The exact bytes, in RESP2 and RESP3 (the same: arrays of a bulk tag and a payload;
/// the refused fill is `$-1` in RESP2 and `_` in RESP3).
#[test]
fn resp2_and_resp3_shapes() {
    let srv = EngineServer::start();
    let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let rd = |s: &mut std::net::TcpStream, req: &str, expect_prefix: &str| -> String {
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&buf).starts_with(expect_prefix) || !buf.ends_with(b"\r\n") {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    };
    for proto in ["2", "3"] {
        let key = format!("k{proto}");
        s.write_all(format!("HELLO {proto}\r\n").as_bytes())
            .unwrap();
        // Drain the whole HELLO reply.
        std::thread::sleep(Duration::from_millis(100));
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut chunk = [0u8; 4096];
        let mut hello = Vec::new();
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            hello.extend_from_slice(&chunk[..n]);
        }
        assert!(!hello.starts_with(b"-"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let got = rd(
            &mut s,
            &format!("LEASEGET {key}\r\n"),
            "*2\r\n$5\r\nlease\r\n:",
        );
        let token = got
            .trim_start_matches("*2\r\n$5\r\nlease\r\n:")
            .trim_end()
            .to_string();
        let wait = rd(
            &mut s,
            &format!("LEASEGET {key}\r\n"),
            "*2\r\n$4\r\nwait\r\n:",
        );
        assert!(wait.ends_with("\r\n"));
        let nil = if proto == "2" { "$-1\r\n" } else { "_\r\n" };
        assert_eq!(rd(&mut s, &format!("LEASESET {key} 1 v\r\n"), nil), nil);
        assert_eq!(
            rd(&mut s, &format!("LEASESET {key} {token} hello\r\n"), "+OK"),
            "+OK\r\n"
        );
        assert_eq!(
            rd(&mut s, &format!("LEASEGET {key}\r\n"), "*2\r\n$5\r\nvalue"),
            "*2\r\n$5\r\nvalue\r\n$5\r\nhello\r\n"
        );
        assert_eq!(rd(&mut s, &format!("LEASEINFO {key}\r\n"), ":"), ":-2\r\n");
    }
}
