//! Keyspace notifications of SORT ... STORE, BITFIELD, the HyperLogLog and the GEO
//! commands, compared with a private redis-server's. On each server one connection
//! runs the commands while a second one, subscribed to every keyspace and keyevent
//! channel, records what each command published (a PING after the command marks
//! the end of its events: the subscriber receives messages in publication order).

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};

/// A commanding connection and a subscribed one on the same server.
struct Side {
    cmd: Conn,
    sub: Conn,
}

fn bulk_text(r: &Resp) -> String {
    match r {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

impl Side {
    fn new(addr: std::net::SocketAddr) -> Side {
        let mut cmd = Conn::connect(addr);
        assert_eq!(cmd.cmd(&["FLUSHALL"]), Resp::Simple("OK".into()));
        assert_eq!(
            cmd.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
            Resp::Simple("OK".into())
        );
        let mut sub = Conn::connect(addr);
        sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
        Side { cmd, sub }
    }

    /// Runs one command: its reply, then every event it published, as
    /// `channel payload` lines.
    fn run(&mut self, args: &[&str]) -> (Resp, Vec<String>) {
        let reply = self.cmd.cmd(args);
        self.sub.send(&[b"PING"]);
        let mut events = Vec::new();
        loop {
            match self.sub.read() {
                Resp::Array(Some(v)) if v.first().map(bulk_text).as_deref() == Some("pong") => {
                    break
                }
                Resp::Array(Some(v)) if v.len() == 4 => {
                    events.push(format!("{} {}", bulk_text(&v[2]), bulk_text(&v[3])));
                }
                other => panic!("unexpected message on the subscriber: {other:?}"),
            }
        }
        (reply, events)
    }
}

/// Runs a script of commands on Redis and on the engine and requires the same
/// replies and the same events for each.
fn same_events(script: &[&[&str]]) {
    let redis_srv = RedisServer::start(&[]);
    let engine_srv = EngineServer::start();
    let mut redis = Side::new(redis_srv.addr());
    let mut engine = Side::new(engine_srv.addr);
    let mut checked = 0;
    for args in script {
        let (rr, re) = redis.run(args);
        let (er, ee) = engine.run(args);
        assert_eq!(er, rr, "reply to {args:?}");
        assert_eq!(ee, re, "events of {args:?}");
        checked += re.len();
    }
    assert!(checked > 0, "the script published no events at all");
}

#[test]
fn sort_store_events() {
    same_events(&[
        &["RPUSH", "l", "3", "1", "2"],
        &["SORT", "l", "STORE", "dst"],
        &["SORT", "l", "DESC", "LIMIT", "0", "1", "STORE", "dst"],
        // An empty result deletes the destination (one `del`), then nothing.
        &["SORT", "missing", "STORE", "dst"],
        &["SORT", "missing", "STORE", "dst"],
        &["SORT", "l", "LIMIT", "0", "0", "STORE", "l"],
        &["SORT", "l", "STORE", "l"],
        &["SORT", "l"],
        &["SORT_RO", "l"],
        // Inside a transaction the events come at EXEC, one per store.
        &["MULTI"],
        &["SORT", "l", "STORE", "d1"],
        &["SORT", "l", "ALPHA", "STORE", "d1"],
        &["SORT", "nothing", "STORE", "d1"],
        &["EXEC"],
        // A refused SORT stores nothing.
        &["SET", "s", "x"],
        &["SORT", "s", "STORE", "d2"],
        &["RPUSH", "bad", "a"],
        &["SORT", "bad", "STORE", "d2"],
    ]);
}

#[test]
fn bitfield_events() {
    same_events(&[
        // Created: one `setbit`, even for a write of zero.
        &["BITFIELD", "b", "SET", "u8", "0", "0"],
        // Unchanged value and length: no event.
        &[
            "BITFIELD", "b", "SET", "u8", "0", "0", "INCRBY", "u8", "0", "0",
        ],
        &[
            "BITFIELD", "b", "INCRBY", "u8", "0", "1", "INCRBY", "u8", "0", "1",
        ],
        // Grown: counts as a change even when the written bits were already zero.
        &["BITFIELD", "b", "SET", "u8", "16", "0"],
        &["BITFIELD", "b", "GET", "u8", "0"],
        &["BITFIELD_RO", "b", "GET", "u8", "0"],
        // Every write refused by FAIL on a missing key: created, but no event.
        &["BITFIELD", "f", "OVERFLOW", "FAIL", "SET", "u2", "0", "9"],
        &["EXISTS", "f"],
        &["BITFIELD", "f", "OVERFLOW", "FAIL", "SET", "u2", "0", "1"],
    ]);
}

#[test]
fn hyperloglog_events() {
    same_events(&[
        &["PFADD", "h", "a", "b"],
        // Nothing new: no event.
        &["PFADD", "h", "a"],
        &["PFADD", "h"],
        &["PFADD", "empty"],
        // Caching the cardinality publishes nothing.
        &["PFCOUNT", "h"],
        &["PFCOUNT", "h", "empty"],
        &["PFMERGE", "m", "h", "empty"],
        &["PFMERGE", "m"],
        &["PFDEBUG", "TODENSE", "h"],
        &["PFDEBUG", "GETREG", "m"],
        // A sparse header without opcodes: corrupt.
        &["SET", "bad", "HYLL\x01\0\0\0\0\0\0\0\0\0\0\0"],
        &["PFADD", "bad", "x"],
        &["PFMERGE", "m", "bad"],
    ]);
}

#[test]
fn geo_events() {
    same_events(&[
        &["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
        &["GEOADD", "g", "13.361389", "38.115556", "Palermo"],
        &["GEOADD", "g", "CH", "15.087269", "37.502669", "Catania"],
        &["GEOADD", "g", "XX", "1", "1", "Nobody"],
        &["GEOADD", "g", "200", "1", "Bad"],
        &["GEORADIUS", "g", "15", "37", "200", "km", "STORE", "d"],
        &["GEORADIUS", "g", "15", "37", "200", "km", "STOREDIST", "d"],
        &[
            "GEORADIUSBYMEMBER",
            "g",
            "Palermo",
            "10",
            "km",
            "STORE",
            "d",
        ],
        &[
            "GEOSEARCHSTORE",
            "d",
            "g",
            "FROMLONLAT",
            "15",
            "37",
            "BYBOX",
            "400",
            "400",
            "km",
        ],
        // Nothing found: the destination goes (one del), then nothing happens.
        &[
            "GEOSEARCHSTORE",
            "d",
            "g",
            "FROMLONLAT",
            "0",
            "0",
            "BYRADIUS",
            "1",
            "km",
        ],
        &[
            "GEOSEARCHSTORE",
            "d",
            "g",
            "FROMLONLAT",
            "0",
            "0",
            "BYRADIUS",
            "1",
            "km",
        ],
        &["SET", "d", "x"],
        &["GEORADIUS", "nokey", "0", "0", "1", "km", "STORE", "d"],
        &["GEORADIUS_RO", "g", "15", "37", "200", "km"],
        &[
            "GEOSEARCH",
            "g",
            "FROMMEMBER",
            "Palermo",
            "BYRADIUS",
            "1",
            "km",
        ],
        &["GEOPOS", "g", "Palermo"],
        &["GEODIST", "g", "Palermo", "Catania"],
    ]);
}

#[test]
fn stream_events() {
    same_events(&[
        &["XADD", "s", "1-0", "f", "v"],
        &["XADD", "s", "MAXLEN", "1", "2-0", "f", "v"],
        &["XADD", "nomk", "NOMKSTREAM", "1-0", "f", "v"],
        &["XADD", "s", "1-0", "f", "v"],
        &["XDEL", "s", "2-0", "9-0"],
        &["XDEL", "s", "9-0"],
        &["XADD", "s", "3-0", "f", "v"],
        &["XADD", "s", "4-0", "f", "v"],
        &["XTRIM", "s", "MAXLEN", "1"],
        &["XTRIM", "s", "MAXLEN", "1"],
        &["XSETID", "s", "10-0"],
        &["XGROUP", "CREATE", "s", "g", "0"],
        &["XGROUP", "CREATE", "new", "g", "$", "MKSTREAM"],
        &["XGROUP", "CREATECONSUMER", "s", "g", "c"],
        &["XGROUP", "CREATECONSUMER", "s", "g", "c"],
        &["XREADGROUP", "GROUP", "g", "d", "STREAMS", "s", ">"],
        &["XREADGROUP", "GROUP", "g", "e", "STREAMS", "s", ">"],
        &["XACK", "s", "g", "4-0"],
        &["XADD", "s", "11-0", "f", "v"],
        &["XREADGROUP", "GROUP", "g", "d", "STREAMS", "s", ">"],
        &["XCLAIM", "s", "g", "f", "0", "11-0", "JUSTID"],
        &["XAUTOCLAIM", "s", "g", "h", "0", "0", "JUSTID"],
        &["XGROUP", "SETID", "s", "g", "0"],
        &["XGROUP", "DELCONSUMER", "s", "g", "c"],
        &["XGROUP", "DELCONSUMER", "s", "g", "c"],
        &["XGROUP", "DESTROY", "s", "g"],
        &["XGROUP", "DESTROY", "s", "g"],
        &["COPY", "s", "s2"],
        &["XRANGE", "s2", "-", "+"],
        &["DEL", "s"],
    ]);
}
