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

/// One CLIENT LIST/INFO line's `name=value` fields.
fn client_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A numeric CLIENT LIST field.
fn num(f: &HashMap<String, String>, k: &str) -> usize {
    f.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("field {k} in {f:?}"))
}

/// The fields of client `id` as `observer` sees them.
fn fields_of(observer: &mut Conn, id: i64) -> HashMap<String, String> {
    client_fields(&text(observer.cmd(&[
        "CLIENT",
        "LIST",
        "ID",
        &id.to_string(),
    ])))
}

#[test]
fn client_list_memory_fields_are_measured() {
    let srv = EngineServer::start();
    let mut obs = Conn::connect(srv.addr);
    let mut a = Conn::connect(srv.addr);
    let Resp::Int(id) = a.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer");
    };
    let idle = fields_of(&mut obs, id);
    assert_eq!(num(&idle, "qbuf"), 0, "{idle:?}");
    assert_eq!(num(&idle, "argv-mem"), 0, "{idle:?}");
    assert_eq!(num(&idle, "obl"), 0, "{idle:?}");
    let base_tot = num(&idle, "tot-mem");
    assert!(
        num(&idle, "qbuf-free") > 0 && num(&idle, "rbs") > 0,
        "{idle:?}"
    );
    assert!(base_tot > num(&idle, "rbs"), "{idle:?}");

    // Half of a 300 kB SET: the received bytes wait in the query buffer and the two
    // complete arguments are held.
    let value = vec![b'v'; 300_000];
    let mut head = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$300000\r\n".to_vec();
    head.extend_from_slice(&value[..150_000]);
    a.send_raw(&head);
    let start = Instant::now();
    let mid = loop {
        let f = fields_of(&mut obs, id);
        if num(&f, "qbuf") >= head.len() {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never read: {f:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(num(&mid, "qbuf"), head.len(), "{mid:?}");
    assert_eq!(num(&mid, "argv-mem"), 6, "SET and big: {mid:?}");
    assert!(num(&mid, "tot-mem") >= base_tot + head.len(), "{mid:?}");

    // The rest, then a pipeline: a GET of the value and CLIENT INFO in one write.
    // CLIENT INFO sees the GET's reply waiting in the reply buffer and its own
    // arguments.
    let mut rest = value[150_000..].to_vec();
    rest.extend_from_slice(
        b"\r\n*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n",
    );
    a.send_raw(&rest);
    assert_eq!(a.read(), Resp::Simple("OK".into()));
    assert_eq!(a.read(), Resp::Bulk(Some(value.clone())));
    let own = client_fields(&text(a.read()));
    assert_eq!(num(&own, "argv-mem"), 10, "{own:?}");
    assert!(num(&own, "obl") > 300_000, "{own:?}");
    assert!(num(&own, "rbs") >= num(&own, "obl"), "{own:?}");
    assert!(num(&own, "tot-mem") > 300_000, "{own:?}");

    // Once written, the reply buffer's peak remembers the GET; the buffers shrink
    // back, and nothing is pending.
    assert_eq!(a.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let after = fields_of(&mut obs, id);
    assert_eq!(num(&after, "qbuf"), 0, "{after:?}");
    assert_eq!(num(&after, "argv-mem"), 0, "{after:?}");
    assert!(num(&after, "rbp") > 300_000, "{after:?}");
    assert!(num(&after, "rbs") < 100_000, "{after:?}");
    assert!(num(&after, "tot-mem") < 200_000, "{after:?}");

    // MULTI's queue counts in multi-mem.
    assert_eq!(a.cmd(&["MULTI"]), Resp::Simple("OK".into()));
    assert_eq!(
        a.cmd(&["SET", "k", &"x".repeat(5000)]),
        Resp::Simple("QUEUED".into())
    );
    let queued = fields_of(&mut obs, id);
    assert!(num(&queued, "multi-mem") > 5000, "{queued:?}");
}
