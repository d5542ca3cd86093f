//! Server and CLIENT commands over real connections: INFO, CLIENT LIST/KILL,
//! CONFIG SET maxclients, SHUTDOWN.

mod common;

use common::{Conn, EngineServer, Resp};
use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The text of a bulk or verbatim reply.
fn text(r: Resp) -> String {
    match r {
        Resp::Bulk(Some(b)) | Resp::Verbatim(b) => String::from_utf8(b).expect("utf8"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// INFO's text as section -> field -> value.
fn parse_info(s: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for line in s.split("\r\n") {
        if let Some(name) = line.strip_prefix("# ") {
            section = name.to_ascii_lowercase();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = line.split_once(':') {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        } else {
            assert!(line.is_empty(), "unexpected INFO line {line:?}");
        }
    }
    out
}

#[test]
fn info_has_sections_and_counts_clients() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    let mut b = Conn::connect(srv.addr);
    assert_eq!(b.cmd(&["PING"]), Resp::Simple("PONG".into()));
    a.cmd(&["SET", "k", "v"]);
    let info = parse_info(&text(a.cmd(&["INFO"])));
    for s in [
        "server",
        "clients",
        "memory",
        "persistence",
        "stats",
        "replication",
        "cpu",
        "keyspace",
    ] {
        assert!(info.contains_key(s), "missing section {s}: {info:?}");
    }
    assert_eq!(info["server"]["redis_version"], "7.0.15");
    assert_eq!(info["server"]["redis_mode"], "standalone");
    assert_eq!(info["server"]["tcp_port"], srv.addr.port().to_string());
    assert_eq!(info["clients"]["connected_clients"], "2");
    assert_eq!(info["replication"]["role"], "master");
    assert_eq!(info["replication"]["master_replid"].len(), 40);
    assert_eq!(info["keyspace"]["db0"], "keys=1,expires=0,avg_ttl=0");
    assert!(
        info["memory"]["used_memory"]
            .parse::<u64>()
            .expect("number")
            > 0
    );

    drop(b);
    // The closed connection disappears from the count shortly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = parse_info(&text(a.cmd(&["INFO", "clients"])));
        if info["clients"]["connected_clients"] == "1" {
            assert_eq!(info.len(), 1, "only the clients section was asked for");
            break;
        }
        assert!(Instant::now() < deadline, "client count stayed at 2");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_list_shows_named_connection_and_kill_closes_it() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    let mut b = Conn::connect(srv.addr);
    assert_eq!(
        b.cmd(&["CLIENT", "SETNAME", "worker-2"]),
        Resp::Simple("OK".into())
    );
    let Resp::Int(b_id) = b.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer");
    };
    let list = text(a.cmd(&["CLIENT", "LIST"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let line = lines
        .iter()
        .find(|l| l.contains("name=worker-2"))
        .expect("named client listed");
    assert!(line.starts_with(&format!("id={b_id} addr=")), "{line}");
    assert!(line.contains(" cmd=client|id "), "{line}");
    assert!(list.contains(" cmd=client|list "), "{list}");

    let one = text(a.cmd(&["CLIENT", "LIST", "ID", &b_id.to_string()]));
    assert_eq!(one.lines().count(), 1);

    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "ID", &b_id.to_string()]),
        Resp::Int(1)
    );
    b.set_timeout(Duration::from_secs(5));
    b.send(&[b"PING"]);
    assert_eq!(b.try_read(), None, "the killed connection must see EOF");
    let list = text(a.cmd(&["CLIENT", "LIST"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "ID", &b_id.to_string()]),
        Resp::Int(0)
    );
}

#[test]
fn maxclients_refuses_extra_connections() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    assert_eq!(
        a.cmd(&["CONFIG", "SET", "maxclients", "2"]),
        Resp::Simple("OK".into())
    );
    let mut b = Conn::connect(srv.addr);
    assert_eq!(b.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let mut c = Conn::connect(srv.addr);
    assert_eq!(
        c.read(),
        Resp::Error("ERR max number of clients reached".into())
    );
    assert_eq!(c.try_read(), None, "the refused connection is closed");
    // Room again once a client leaves.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = Conn::connect(srv.addr);
        d.send(&[b"PING"]);
        if d.try_read() == Some(Resp::Simple("PONG".into())) {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a client left");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_stops_the_server() {
    let srv = EngineServer::start();
    let mut a = Conn::connect(srv.addr);
    let mut other = Conn::connect(srv.addr);
    assert_eq!(other.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(
        a.cmd(&["SHUTDOWN", "ABORT"]),
        Resp::Error("ERR No shutdown in progress.".into())
    );
    a.send(&[b"SHUTDOWN", b"NOSAVE"]);
    assert_eq!(a.try_read(), None, "SHUTDOWN closes without a reply");
    other.set_timeout(Duration::from_secs(5));
    assert_eq!(other.try_read(), None, "other clients are disconnected");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(srv.addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "server still accepts connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
