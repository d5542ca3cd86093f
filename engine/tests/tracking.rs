//! Client-side caching against a private real redis-server 7.0, byte for byte: each
//! scenario runs the same steps on several named connections to both servers; after
//! each step every connection's bytes (replies and pushes, in order) must be
//! identical. Client ids differ between the servers: `{a}` in a command stands for
//! connection `a`'s id on that server, and an integer reply equal to a connection's
//! id is shown as `:<a>`.

mod common;

use common::{EngineServer, RedisServer};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a step's replies and pushes are given to arrive.
const SETTLE: Duration = Duration::from_millis(15);

/// One server's named connections.
struct Side {
    addr: SocketAddr,
    conns: BTreeMap<String, TcpStream>,
    ids: BTreeMap<String, i64>,
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

impl Side {
    fn new(addr: SocketAddr) -> Side {
        Side {
            addr,
            conns: BTreeMap::new(),
            ids: BTreeMap::new(),
        }
    }

    /// The connection `name`, opened (and its id learnt) on first use.
    fn conn(&mut self, name: &str) -> &mut TcpStream {
        if !self.conns.contains_key(name) {
            let mut s = TcpStream::connect(self.addr).expect("connect");
            s.set_nodelay(true).ok();
            s.write_all(&encode(&[b"CLIENT".to_vec(), b"ID".to_vec()]))
                .expect("write");
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).expect("CLIENT ID reply");
            let text = String::from_utf8_lossy(&buf[..n]);
            let id: i64 = text
                .trim()
                .trim_start_matches(':')
                .parse()
                .expect("CLIENT ID is an integer");
            self.ids.insert(name.to_string(), id);
            self.conns.insert(name.to_string(), s);
        }
        self.conns.get_mut(name).expect("just opened")
    }

    /// Sends `line` (redis-cli syntax, `{name}` replaced by that connection's id).
    fn send(&mut self, name: &str, line: &str) {
        let mut line = line.to_string();
        for (n, id) in &self.ids {
            line = line.replace(&format!("{{{n}}}"), &id.to_string());
        }
        let args = engine::split_args(line.as_bytes()).expect("balanced quotes");
        let bytes = encode(&args);
        self.conn(name).write_all(&bytes).expect("write");
    }

    /// Everything each connection received since the last call, ids shown by name.
    fn drain(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, s) in self.conns.iter_mut() {
            s.set_nonblocking(true).expect("nonblocking");
            let mut got = Vec::new();
            let mut buf = [0u8; 16384];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            s.set_nonblocking(false).expect("blocking");
            let mut text = String::from_utf8_lossy(&got).into_owned();
            for (n, id) in &self.ids {
                text = text.replace(&format!(":{id}\r\n"), &format!(":<{n}>\r\n"));
            }
            out.insert(name.clone(), text);
        }
        out
    }

    fn close(&mut self, name: &str) {
        self.conns.remove(name);
    }
}

/// What each connection of both sides received after a step. A loaded machine may
/// answer later than the settle time, on either server: while some connection's bytes
/// differ between the sides, both keep being read (up to a deadline), so that a late
/// reply is not taken for a different one (and is not left to show up at the next step).
fn drain_both(r: &mut Side, e: &mut Side) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (mut ro, mut eo) = (r.drain(), e.drain());
    let same = |ro: &BTreeMap<String, String>, eo: &BTreeMap<String, String>| {
        ro.keys()
            .chain(eo.keys())
            .all(|n| ro.get(n).map_or("", |s| s) == eo.get(n).map_or("", |s| s))
    };
    while !same(&ro, &eo) && std::time::Instant::now() < deadline {
        std::thread::sleep(SETTLE);
        for (side, out) in [(&mut *r, &mut ro), (&mut *e, &mut eo)] {
            for (n, more) in side.drain() {
                out.entry(n).or_default().push_str(&more);
            }
        }
    }
    (ro, eo)
}

/// Runs `steps` (`conn: command`, `!sleep MS`, `!close conn`) on both servers and
/// returns the differences.
fn run(redis: SocketAddr, engine: SocketAddr, title: &str, steps: &[&str]) -> Vec<String> {
    let mut r = Side::new(redis);
    let mut e = Side::new(engine);
    let mut diffs = Vec::new();
    for step in steps {
        if let Some(ms) = step.strip_prefix("!sleep ") {
            std::thread::sleep(Duration::from_millis(ms.parse().expect("ms")));
        } else if let Some(name) = step.strip_prefix("!close ") {
            r.close(name);
            e.close(name);
        } else {
            let (name, line) = step.split_once(": ").expect("conn: command");
            r.send(name, line);
            e.send(name, line);
        }
        std::thread::sleep(SETTLE);
        let (ro, eo) = drain_both(&mut r, &mut e);
        for (name, rb) in &ro {
            let eb = eo.get(name).cloned().unwrap_or_default();
            if *rb != eb {
                diffs.push(format!(
                    "{title}: after `{step}`, connection {name}:\n   redis:  {rb:?}\n   engine: {eb:?}"
                ));
            }
        }
    }
    // Scenarios leave nothing behind for the next one.
    for side in [&mut r, &mut e] {
        side.send("cleanup", "FLUSHALL");
        side.send("cleanup", "CONFIG SET tracking-table-max-keys 1000000");
        side.send("cleanup", "CONFIG SET notify-keyspace-events \"\"");
    }
    std::thread::sleep(SETTLE);
    diffs
}

const ERRORS: &[&str] = &[
    "a: CLIENT TRACKING",
    "a: CLIENT TRACKING maybe",
    "a: CLIENT TRACKING ON REDIRECT",
    "a: CLIENT TRACKING ON REDIRECT 999999",
    "a: CLIENT TRACKING ON REDIRECT abc",
    "a: CLIENT TRACKING ON REDIRECT 0",
    "a: CLIENT TRACKING ON REDIRECT -1",
    "a: CLIENT TRACKING ON REDIRECT 99999999999999999999999",
    "a: CLIENT TRACKING ON PREFIX",
    "a: CLIENT TRACKING ON PREFIX a",
    "a: CLIENT TRACKING ON OPTIN OPTOUT",
    "a: CLIENT TRACKING ON BCAST OPTIN",
    "a: CLIENT TRACKING ON BCAST OPTOUT",
    "a: CLIENT TRACKING ON bogus",
    "a: CLIENT TRACKING OFF REDIRECT 999999",
    "a: CLIENT TRACKING ON BCAST PREFIX a PREFIX ab",
    "a: CLIENT TRACKING ON BCAST PREFIX ab PREFIX a",
    "a: CLIENT TRACKING ON BCAST PREFIX a PREFIX a",
    "a: CLIENT TRACKING ON BCAST PREFIX a PREFIX b PREFIX bc",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING OFF",
    "a: CLIENT CACHING YES",
    "a: CLIENT CACHING",
    "a: CLIENT CACHING maybe",
    "a: CLIENT CACHING yes no",
    "a: CLIENT GETREDIR x",
    "a: CLIENT TRACKINGINFO x",
    "a: CLIENT GETREDIR",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING ON",
    "a: CLIENT TRACKING ON BCAST",
    "a: CLIENT TRACKING ON OPTIN",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT CACHING maybe",
    "a: CLIENT CACHING no",
    "a: CLIENT CACHING yes",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING ON OPTOUT",
    "a: CLIENT TRACKING OFF",
    "a: CLIENT TRACKING ON OPTOUT NOLOOP",
    "a: CLIENT CACHING yes",
    "a: CLIENT CACHING NO",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING OFF",
    "a: CLIENT TRACKING ON BCAST PREFIX x",
    "a: CLIENT TRACKING ON BCAST PREFIX xy",
    "a: CLIENT TRACKING ON BCAST PREFIX y PREFIX z",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING ON REDIRECT {b}",
    "a: CLIENT TRACKING OFF",
    "a: CLIENT TRACKING on bcast prefix \"\"",
    "a: CLIENT TRACKINGINFO",
    "a: HELLO 3",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT TRACKING OFF",
    "a: CLIENT TRACKING ON REDIRECT {a}",
    "a: CLIENT GETREDIR",
    "a: CLIENT TRACKINGINFO",
];

/// RESP3, default mode: one invalidation per read, the client's own writes after
/// their reply, a null on FLUSHDB/FLUSHALL, any database, MULTI, expiry.
const RESP3_DEFAULT: &[&str] = &[
    "a: HELLO 3",
    "a: CLIENT TRACKING ON",
    "a: GET k",
    "w: SET k 1",
    "w: SET k 2",
    "a: GET k",
    "a: GET k",
    "a: SET k 3",
    "a: MGET k x y",
    "w: DEL x",
    "w: MSET k 1 x 2 z 3",
    "w: DEL y",
    "a: GET k",
    "w: FLUSHDB",
    "a: MGET k x",
    "w: SELECT 1",
    "w: SET k v",
    "w: SET x v",
    "w: SELECT 0",
    "a: MULTI",
    "a: GET k",
    "a: SET k z",
    "a: GET x",
    "a: EXEC",
    "w: SET x 1",
    "a: HGETALL h",
    "w: HSET h f v",
    "a: LRANGE l 0 -1",
    "w: RPUSH l a",
    "w: RPUSH l b",
    "a: STRLEN s",
    "a: EXISTS s",
    "w: APPEND s abc",
    "a: GET k",
    "w: FLUSHALL",
    "a: GET k",
    "a: FLUSHALL",
    "a: INCR n",
    "a: GET n",
    "w: INCR n",
    "a: GET n",
    "w: RENAME n m",
    "a: GET m",
    "w: EXPIRE m 100",
    "a: GET m",
    "w: PERSIST m",
    "a: TTL m",
    "w: PEXPIRE m 20",
    "!sleep 300",
    "a: GET m",
    "w: DEBUG SET-ACTIVE-EXPIRE 0",
    "w: SET e 1 PX 20",
    "a: GET e",
    "!sleep 50",
    "a: GET e",
    "w: SET e 2",
    "w: DEBUG SET-ACTIVE-EXPIRE 1",
    "a: GET k",
    "a: CLIENT TRACKING OFF",
    "w: SET k 1",
    "a: CLIENT TRACKING ON",
    "a: GET k",
    "w: SET k 2",
    "a: CLIENT TRACKINGINFO",
    "a: CLIENT GETREDIR",
];

/// RESP2 through REDIRECT to a subscriber of `__redis__:invalidate`, a RESP3
/// redirect target, a redirect that breaks.
const REDIRECTS: &[&str] = &[
    "b: SUBSCRIBE __redis__:invalidate",
    "a: CLIENT TRACKING ON REDIRECT {b}",
    "a: CLIENT GETREDIR",
    "a: CLIENT TRACKINGINFO",
    "a: GET k",
    "w: SET k 1",
    "a: MGET k j",
    "a: SET k 2",
    "w: SET j 2",
    "a: GET k",
    "w: FLUSHALL",
    "a: GET k",
    "a: FLUSHDB",
    "c: HELLO 3",
    "d: CLIENT TRACKING ON REDIRECT {c}",
    "d: GET q",
    "w: SET q 1",
    "d: GET q",
    "w: FLUSHALL",
    "e: HELLO 3",
    "e: CLIENT TRACKING ON REDIRECT {b}",
    "e: GET q",
    "w: SET q 2",
    "e: GET q",
    "w: FLUSHALL",
    "f: CLIENT TRACKING ON REDIRECT {w}",
    "f: GET q",
    "w: SET q 3",
    "a: GET k",
    "e: GET k",
    "!close b",
    "w: SET k 1",
    "a: CLIENT TRACKINGINFO",
    "e: CLIENT TRACKINGINFO",
    "a: GET k",
    "e: GET k",
    "w: SET k 2",
    "e: CLIENT TRACKING ON",
    "e: CLIENT TRACKINGINFO",
    "e: CLIENT TRACKING OFF",
    "e: CLIENT TRACKINGINFO",
    "e: CLIENT TRACKING ON BCAST",
    "e: RESET",
    "e: CLIENT TRACKINGINFO",
    "e: HELLO 3",
    "w: SET k 3",
    "e: CLIENT TRACKINGINFO",
];

/// BCAST with prefixes, NOLOOP, OPTIN and OPTOUT.
const MODES: &[&str] = &[
    "a: HELLO 3",
    "a: CLIENT TRACKING ON BCAST PREFIX p PREFIX q",
    "w: MSET p1 a q1 b p0 c z d",
    "w: SET z 1",
    "a: SET p2 x",
    "a: GET p2",
    "a: CLIENT TRACKING ON BCAST PREFIX r",
    "a: CLIENT TRACKINGINFO",
    "w: MSET r1 a p1 b",
    "b: HELLO 3",
    "b: CLIENT TRACKING ON BCAST NOLOOP",
    "b: SET x 1",
    "w: SET x 2",
    "b: MSET x 3 y 4",
    "w: DEL y",
    "a: CLIENT TRACKING OFF",
    "b: CLIENT TRACKING OFF",
    "c: HELLO 3",
    "c: CLIENT TRACKING ON NOLOOP",
    "c: GET k",
    "c: SET k 1",
    "w: SET k 2",
    "c: GET k",
    "w: SET k 3",
    "c: CLIENT TRACKING OFF",
    "d: HELLO 3",
    "d: CLIENT TRACKING ON OPTIN",
    "d: GET k",
    "w: SET k 1",
    "d: CLIENT CACHING YES",
    "d: CLIENT TRACKINGINFO",
    "d: GET k",
    "d: GET j",
    "w: MSET k 2 j 2",
    "d: CLIENT CACHING YES",
    "d: MULTI",
    "d: GET k",
    "d: GET j",
    "d: EXEC",
    "d: CLIENT TRACKINGINFO",
    "w: MSET k 3 j 3",
    "d: CLIENT TRACKING OFF",
    "d: CLIENT TRACKING ON OPTOUT",
    "d: GET k",
    "d: CLIENT CACHING NO",
    "d: GET j",
    "w: MSET k 4 j 4",
];

/// Pushes written ahead of the reply of the command that produced them (pub/sub
/// and keyspace events in RESP3, inside EXEC too), tracking's after.
const ORDER: &[&str] = &[
    "a: HELLO 3",
    "a: SUBSCRIBE ch",
    "a: PUBLISH ch hi",
    "a: MULTI",
    "a: PUBLISH ch 1",
    "a: PING",
    "a: PUBLISH ch 2",
    "a: EXEC",
    "a: CLIENT TRACKING ON",
    "a: GET k",
    "a: CONFIG SET notify-keyspace-events KEA",
    "a: PSUBSCRIBE __keyspace@0__:*",
    "a: SET k 1",
    "a: GET k",
    "a: MULTI",
    "a: SET k 2",
    "a: PUBLISH ch 3",
    "a: EXEC",
    "b: SUBSCRIBE __redis__:invalidate",
    "b: PSUBSCRIBE __keyspace@0__:*",
    "c: CLIENT TRACKING ON REDIRECT {b}",
    "c: GET k",
    "w: SET k 3",
    "w: DEL k",
];

/// Reads whose keys the table's positions do not give (numkeys, STREAMS, scripts):
/// tracked by their key specs, as Redis's getKeysFromCommandWithSpecs.
const MOVABLE: &[&str] = &[
    "a: HELLO 3",
    "a: CLIENT TRACKING ON",
    "w: ZADD z1 1 a",
    "w: ZADD z2 2 b",
    "a: ZUNION 2 z1 z2",
    "w: ZADD z2 3 c",
    "a: ZINTERCARD 2 z1 z2",
    "w: ZADD z1 4 d",
    "w: SADD s1 a",
    "a: SINTERCARD 1 s1 LIMIT 5",
    "w: SADD s1 b",
    "w: XADD st 1-1 f v",
    "a: XREAD COUNT 5 STREAMS st 0",
    "w: XADD st 2-1 f v",
    "a: ZDIFF 2 z1 z2",
    "w: DEL z1",
    "w: SET sk v",
    "a: EVAL_RO \"return redis.call('GET', KEYS[1])\" 1 sk",
    "w: SET sk v2",
    "a: EVAL \"return redis.call('GET', KEYS[1])\" 1 sk2",
    "w: SET sk2 v",
    "a: EVAL \"return redis.call('GET', 'sk3')\" 0",
    "w: SET sk3 v",
    "a: FUNCTION LOAD \"#!lua name=lib\nredis.register_function('rd', function(k) return redis.call('GET', k[1]) end)\"",
    "a: FCALL rd 1 sk4",
    "w: SET sk4 v",
    "a: FUNCTION FLUSH",
];

#[test]
fn tracking_matches_redis_byte_for_byte() {
    let redis = RedisServer::start(&["--enable-debug-command", "local"]);
    let engine = EngineServer::start();
    // Ids above any small integer a reply carries, so that shown by name they
    // cannot be confused with one.
    for addr in [redis.addr(), engine.addr] {
        for _ in 0..1000 {
            drop(TcpStream::connect(addr).expect("connect"));
        }
    }
    let mut diffs = Vec::new();
    for (title, steps) in [
        ("errors", ERRORS),
        ("resp3 default", RESP3_DEFAULT),
        ("redirects", REDIRECTS),
        ("modes", MODES),
        ("push order", ORDER),
        ("movable keys", MOVABLE),
    ] {
        diffs.extend(run(redis.addr(), engine.addr, title, steps));
    }
    for d in &diffs {
        eprintln!("{d}");
    }
    assert!(diffs.is_empty(), "{} steps differ from Redis", diffs.len());
}

fn invalidate(keys: &[&str]) -> common::Resp {
    use common::Resp;
    Resp::Push(vec![
        Resp::Bulk(Some(b"invalidate".to_vec())),
        Resp::Array(Some(
            keys.iter()
                .map(|k| Resp::Bulk(Some(k.as_bytes().to_vec())))
                .collect(),
        )),
    ])
}

fn words(line: &str) -> Vec<bytes::Bytes> {
    line.split(' ')
        .map(|w| bytes::Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// A RESP3 connection with tracking on.
fn tracker(addr: SocketAddr) -> common::Conn {
    let mut c = common::Conn::connect(addr);
    c.cmd(&["HELLO", "3"]);
    assert_eq!(
        c.cmd(&["CLIENT", "TRACKING", "ON"]),
        common::Resp::Simple("OK".into())
    );
    c
}

/// The changes Redis has no client command for, or treats differently: the
/// embedding process's writes (the sidecar's binlog deletes), lease fills, SWAPDB,
/// eviction. Each reaches a tracking client as an invalidation.
#[test]
fn every_way_a_key_changes_invalidates_it() {
    use common::Resp;
    let srv = EngineServer::start();
    let mut a = tracker(srv.addr);
    let null_invalidation = Resp::Push(vec![Resp::Bulk(Some(b"invalidate".to_vec())), Resp::Null]);

    // The sidecar's in-process DEL.
    srv.engine.execute(0, words("SET k 1"));
    assert_eq!(a.cmd(&["GET", "k"]), Resp::Bulk(Some(b"1".to_vec())));
    srv.engine.execute(0, words("DEL k"));
    assert_eq!(a.read(), invalidate(&["k"]));
    // In-process, BCAST too.
    let mut b = common::Conn::connect(srv.addr);
    b.cmd(&["HELLO", "3"]);
    b.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"]);
    srv.engine.execute(0, words("SET user:1 a"));
    assert_eq!(b.read(), invalidate(&["user:1"]));
    srv.engine
        .execute_batch(0, vec![words("DEL user:1"), words("SET user:2 x")]);
    assert_eq!(b.read(), invalidate(&["user:1", "user:2"]));

    // A lease read tracks the key; another client's fill invalidates it.
    let Resp::Array(Some(miss)) = a.cmd(&["LEASEGET", "l"]) else {
        panic!("LEASEGET replies an array")
    };
    let mut w = common::Conn::connect(srv.addr);
    let Resp::Array(Some(w_miss)) = w.cmd(&["LEASEGET", "m"]) else {
        panic!("LEASEGET replies an array")
    };
    assert_eq!(miss[0], Resp::Bulk(Some(b"lease".to_vec())));
    let Resp::Int(token) = w_miss[1] else {
        panic!("a token")
    };
    a.cmd(&["LEASEGET", "m"]);
    assert_eq!(
        w.cmd(&["LEASESET", "m", &token.to_string(), "v"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(a.read(), invalidate(&["m"]));
    // A write that voids a lease invalidates the reader of the key.
    w.cmd(&["DEL", "l"]);
    w.cmd(&["SET", "l", "1"]);
    assert_eq!(a.read(), invalidate(&["l"]));

    // SWAPDB: Redis 7.0 sends nothing; the engine sends the flush's null.
    a.cmd(&["GET", "k"]);
    assert_eq!(w.cmd(&["SWAPDB", "0", "1"]), Resp::Simple("OK".into()));
    assert_eq!(a.read(), null_invalidation);
    assert_eq!(b.read(), null_invalidation);

    // Eviction under maxmemory.
    w.cmd(&["FLUSHALL"]);
    assert_eq!(a.read(), null_invalidation);
    assert_eq!(b.read(), null_invalidation);
    w.cmd(&["SET", "big", &"x".repeat(100_000)]);
    a.cmd(&["GET", "big"]);
    w.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
    w.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    w.cmd(&["PING"]);
    w.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(a.read(), invalidate(&["big"]));
}

/// `tracking-table-max-keys`: over the limit, a random key is invalidated before
/// the next command, on both servers alike.
#[test]
fn the_table_limit_invalidates_keys_like_redis() {
    use common::Resp;
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    for addr in [redis.addr(), engine.addr] {
        let mut w = common::Conn::connect(addr);
        w.cmd(&["CONFIG", "SET", "tracking-table-max-keys", "1"]);
        let mut a = tracker(addr);
        let mut b = tracker(addr);
        a.cmd(&["GET", "x"]);
        b.cmd(&["GET", "y"]);
        // Over the limit now: the next command (of anyone) brings the table back.
        assert_eq!(w.cmd(&["PING"]), Resp::Simple("PONG".into()));
        a.set_timeout(Duration::from_millis(200));
        b.set_timeout(Duration::from_millis(200));
        let got: Vec<Resp> = [a.try_read(), b.try_read()].into_iter().flatten().collect();
        assert!(
            got == vec![invalidate(&["x"])] || got == vec![invalidate(&["y"])],
            "{addr}: {got:?}"
        );
        let Resp::Bulk(Some(info)) = w.cmd(&["INFO", "stats"]) else {
            panic!("INFO replies a bulk string")
        };
        let info = String::from_utf8_lossy(&info).into_owned();
        assert!(info.contains("tracking_total_keys:1\r\n"), "{addr}: {info}");
    }
}
