//! The server surface of issue 15 across several connections, each scenario run
//! against a private real redis-server and the engine with the same expectations:
//! MONITOR's lines, CLIENT PAUSE (WRITE and ALL, UNPAUSE), CLIENT UNBLOCK, CLIENT
//! REPLY, SLOWLOG entries; and COMMAND INFO / DOCS of every engine command compared
//! with Redis's.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::net::SocketAddr;
use std::time::Duration;

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

fn bulk(s: &str) -> Resp {
    Resp::Bulk(Some(s.as_bytes().to_vec()))
}

/// Both servers, for a scenario that runs on each.
fn servers() -> (RedisServer, EngineServer) {
    (RedisServer::start(&[]), EngineServer::start())
}

/// Whether a reply arrives within `d` (the connection keeps waiting after).
fn replies_within(c: &mut Conn, d: Duration) -> Option<Resp> {
    c.set_timeout(d);
    let r = c.try_read();
    c.set_timeout(Duration::from_secs(10));
    r
}

/// MONITOR's lines with the time and the client's port taken out.
fn monitor_lines(addr: SocketAddr) -> Vec<String> {
    let mut mon = Conn::connect(addr);
    let mut c = Conn::connect(addr);
    assert_eq!(mon.cmd(&["MONITOR"]), ok());
    c.cmd(&["SET", "k", "a \"b\"\n\\\x01"]);
    c.cmd(&["SELECT", "3"]);
    c.cmd(&["GET", "k"]);
    c.cmd(&["NOSUCHCOMMAND"]);
    c.cmd(&["CONFIG", "GET", "hz"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["INCR", "n"]);
    c.cmd(&["EXEC"]);
    // Scripts show before the commands they run.
    c.cmd(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "n"]);
    c.cmd(&[
        "FUNCTION",
        "LOAD",
        "REPLACE",
        "#!lua name=mon\nredis.register_function('mon', function(keys) return redis.call('get', keys[1]) end)",
    ]);
    c.cmd(&["FCALL", "mon", "1", "n"]);
    c.cmd(&["FCALL", "nosuchfunction", "0"]);
    c.cmd(&["PING", "done"]);
    let mut out = Vec::new();
    loop {
        let Resp::Simple(line) = mon.read() else {
            panic!("MONITOR sends status lines");
        };
        // "+1339518083.107412 [0 127.0.0.1:60866] ..." -> "[0 client] ..."
        let (ts, rest) = line.split_once(' ').expect("time first");
        assert!(ts.parse::<f64>().is_ok(), "{line}");
        let (who, args) = rest.split_once("] ").expect("client");
        let db = who.trim_start_matches('[').split(' ').next().unwrap_or("");
        // A script's commands are `lua`'s.
        let who = if who.ends_with(" lua") {
            "lua"
        } else {
            "client"
        };
        out.push(format!("[{db} {who}] {args}"));
        if args.contains("\"done\"") {
            break;
        }
    }
    out
}

#[test]
fn monitor_lines_match_redis() {
    let (redis, engine) = servers();
    let r = monitor_lines(redis.addr());
    let e = monitor_lines(engine.addr);
    assert_eq!(
        r[0], "[0 client] \"SET\" \"k\" \"a \\\"b\\\"\\n\\\\\\x01\"",
        "{r:?}"
    );
    let script = r
        .iter()
        .position(|l| l.starts_with("[3 client] \"FCALL\" \"mon\""));
    assert_eq!(
        script.and_then(|i| r.get(i + 1)).map(String::as_str),
        Some("[3 lua] \"get\" \"n\""),
        "{r:?}"
    );
    assert_eq!(e, r);
}

fn pause_write(addr: SocketAddr) {
    let mut admin = Conn::connect(addr);
    let mut c = Conn::connect(addr);
    assert_eq!(c.cmd(&["SET", "k", "1"]), ok());
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]), ok());
    // Reads go on; a write (and what comes after it) waits for the pause to end.
    assert_eq!(c.cmd(&["GET", "k"]), bulk("1"));
    c.send(&[b"SET", b"k", b"2"]);
    c.send(&[b"GET", b"k"]);
    assert_eq!(replies_within(&mut c, Duration::from_millis(300)), None);
    assert_eq!(admin.cmd(&["GET", "k"]), bulk("1"));
    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), ok());
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), bulk("2"));
}

#[test]
fn client_pause_write_holds_writes_until_unpause() {
    let (redis, engine) = servers();
    pause_write(redis.addr());
    pause_write(engine.addr);
}

fn pause_all(addr: SocketAddr) {
    let mut admin = Conn::connect(addr);
    let mut c = Conn::connect(addr);
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "700", "ALL"]), ok());
    // Everything waits, reads included, until the pause times out.
    c.send(&[b"PING"]);
    assert_eq!(replies_within(&mut c, Duration::from_millis(200)), None);
    assert_eq!(c.read(), Resp::Simple("PONG".into()));
}

#[test]
fn client_pause_all_holds_everything_until_it_ends() {
    let (redis, engine) = servers();
    pause_all(redis.addr());
    pause_all(engine.addr);
}

fn unblock(addr: SocketAddr) -> (Resp, Resp) {
    let mut admin = Conn::connect(addr);
    let mut waiting = Conn::connect(addr);
    let Resp::Int(id) = waiting.cmd(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID");
    };
    let id = id.to_string();
    waiting.send(&[b"BLPOP", b"nolist", b"0"]);
    // Until it is parked, UNBLOCK finds nothing to release.
    let mut n = Resp::Int(0);
    for _ in 0..100 {
        n = admin.cmd(&["CLIENT", "UNBLOCK", &id]);
        if n == Resp::Int(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(n, Resp::Int(1));
    let timeout_reply = waiting.read();
    waiting.send(&[b"BLPOP", b"nolist", b"0"]);
    for _ in 0..100 {
        if admin.cmd(&["CLIENT", "UNBLOCK", &id, "ERROR"]) == Resp::Int(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (timeout_reply, waiting.read())
}

#[test]
fn client_unblock_releases_a_blocked_client() {
    let (redis, engine) = servers();
    let r = unblock(redis.addr());
    assert_eq!(r.0, Resp::Array(None));
    assert_eq!(unblock(engine.addr), r);
}

fn reply_modes(addr: SocketAddr) -> Vec<Resp> {
    let mut c = Conn::connect(addr);
    c.send(&[b"CLIENT", b"REPLY", b"OFF"]);
    c.send(&[b"SET", b"k", b"v"]);
    c.send(&[b"GET", b"nosuch", b"extra"]);
    c.send(&[b"CLIENT", b"REPLY", b"ON"]);
    c.send(&[b"CLIENT", b"REPLY", b"SKIP"]);
    c.send(&[b"GET", b"k"]);
    c.send(&[b"INCR", b"n"]);
    c.send(&[b"PING", b"end"]);
    (0..3).map(|_| c.read()).collect()
}

#[test]
fn client_reply_off_and_skip_drop_replies() {
    let (redis, engine) = servers();
    let r = reply_modes(redis.addr());
    assert_eq!(r, vec![ok(), Resp::Int(1), bulk("end")]);
    assert_eq!(reply_modes(engine.addr), r);
}

/// SLOWLOG GET 1 after a long command, without its time fields.
fn slowlog_entry(addr: SocketAddr) -> Vec<Resp> {
    let mut c = Conn::connect(addr);
    c.cmd(&["CLIENT", "SETNAME", "slowpoke"]);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        ok()
    );
    c.cmd(&["SLOWLOG", "RESET"]);
    let long = "x".repeat(200);
    let mut args: Vec<String> = vec!["RPUSH".into(), "l".into(), long];
    args.extend((0..40).map(|i| i.to_string()));
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    c.cmd(&refs);
    let Resp::Array(Some(entries)) = c.cmd(&["SLOWLOG", "GET", "1"]) else {
        panic!("SLOWLOG GET");
    };
    c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    let Resp::Array(Some(mut e)) = entries[0].clone() else {
        panic!("entry");
    };
    assert!(matches!(e[1], Resp::Int(t) if t > 0) && matches!(e[2], Resp::Int(_)));
    // id, timestamp, duration, args, addr, name: the address's port differs.
    assert!(matches!(&e[4], Resp::Bulk(Some(a)) if a.starts_with(b"127.0.0.1:")));
    e.remove(4);
    e.remove(2);
    e.remove(1);
    e
}

#[test]
fn slowlog_entries_match_redis() {
    let (redis, engine) = servers();
    let r = slowlog_entry(redis.addr());
    assert_eq!(r.len(), 3);
    assert_eq!(slowlog_entry(engine.addr), r);
}

/// Redis lists a container's subcommands in its dict's order, which changes from
/// one process to the next: sorted for the comparison.
fn subcommands_sorted(r: Resp) -> Resp {
    match r {
        Resp::Array(Some(mut v)) => {
            if v.len() == 10 {
                if let Resp::Array(Some(subs)) = &mut v[9] {
                    subs.sort();
                }
            }
            Resp::Array(Some(v.into_iter().map(subcommands_sorted).collect()))
        }
        Resp::Map(m) => Resp::Map(
            m.into_iter()
                .map(|(k, v)| {
                    let v = match (&k, v) {
                        (Resp::Bulk(Some(n)), Resp::Map(mut subs)) if n == b"subcommands" => {
                            subs.sort();
                            Resp::Map(subs)
                        }
                        (_, v) => subcommands_sorted(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// COMMAND INFO and COMMAND DOCS of `name` over RESP3.
fn metadata(c: &mut Conn, name: &str) -> (Resp, Resp) {
    (
        subcommands_sorted(c.cmd(&["COMMAND", "INFO", name])),
        subcommands_sorted(c.cmd(&["COMMAND", "DOCS", name])),
    )
}

#[test]
fn command_info_and_docs_match_redis_for_every_engine_command() {
    let (redis, engine) = servers();
    let mut r = Conn::connect(redis.addr());
    let mut e = Conn::connect(engine.addr);
    r.cmd(&["HELLO", "3"]);
    e.cmd(&["HELLO", "3"]);
    let Resp::Array(Some(names)) = e.cmd(&["COMMAND", "LIST"]) else {
        panic!("COMMAND LIST");
    };
    let mut compared = 0;
    for n in &names {
        let Resp::Bulk(Some(n)) = n else { continue };
        let name = String::from_utf8_lossy(n).into_owned();
        let (ri, rd) = metadata(&mut r, &name);
        if ri == Resp::Array(Some(vec![Resp::Null])) {
            // Coherent's own commands (LEASEGET, ...): Redis has no row.
            continue;
        }
        let (ei, ed) = metadata(&mut e, &name);
        assert_eq!(ei, ri, "COMMAND INFO {name}");
        assert_eq!(ed, rd, "COMMAND DOCS {name}");
        compared += 1;
    }
    assert!(compared > 150, "only {compared} commands compared");
}

/// INFO commandstats and latencystats after the same commands, with the measured
/// times taken out.
fn stats_text(addr: SocketAddr) -> (String, String) {
    let mut c = Conn::connect(addr);
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    c.cmd(&["SET", "k", "1"]);
    c.cmd(&["INCR", "k"]);
    c.cmd(&["LPUSH", "k", "x"]);
    c.cmd(&["GET"]);
    c.cmd(&["CONFIG", "GET", "hz"]);
    c.cmd(&["CLIENT", "ID"]);
    // A blocked command that times out counts as a call.
    assert_eq!(c.cmd(&["BLPOP", "nolist", "0.05"]), Resp::Array(None));
    // So does a WAIT that times out (no replicas), as one that answers at once.
    assert_eq!(c.cmd(&["WAIT", "1", "50"]), Resp::Int(0));
    assert_eq!(c.cmd(&["WAIT", "0", "0"]), Resp::Int(0));
    let text = |r: Resp| match r {
        Resp::Bulk(Some(b)) | Resp::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO reply {other:?}"),
    };
    let cmd = text(c.cmd(&["INFO", "commandstats"]));
    let lat = text(c.cmd(&["INFO", "latencystats"]));
    let strip = |s: &str, keep_before: &[&str]| -> String {
        s.lines()
            .map(|l| {
                l.split(',')
                    .map(|f| match f.split_once('=') {
                        Some((k, _)) if keep_before.iter().any(|p| k.ends_with(p)) => {
                            format!("{k}=#")
                        }
                        _ => f.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    (
        strip(&cmd, &["usec", "usec_per_call"]),
        strip(&lat, &["p50", "p99", "p99.9"]),
    )
}

#[test]
fn info_commandstats_and_latencystats_match_redis() {
    let (redis, engine) = servers();
    let r = stats_text(redis.addr());
    assert!(
        r.0.contains(
            "cmdstat_lpush:calls=1,usec=#,usec_per_call=#,rejected_calls=0,failed_calls=1"
        ),
        "{}",
        r.0
    );
    assert!(
        r.0.contains("cmdstat_get:calls=0,usec=#,usec_per_call=#,rejected_calls=1,failed_calls=0"),
        "{}",
        r.0
    );
    assert!(
        r.0.contains("cmdstat_wait:calls=2,usec=#,usec_per_call=#,rejected_calls=0,failed_calls=0"),
        "{}",
        r.0
    );
    let e = stats_text(engine.addr);
    // Redis prints commands in its table's order: compared as sets of lines.
    let lines = |s: &str| {
        let mut v: Vec<String> = s.lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(lines(&e.0), lines(&r.0));
    assert_eq!(lines(&e.1), lines(&r.1));
}

/// During a pause an expired key reads as missing but stays (DBSIZE counts it) until
/// the pause ends.
fn expiry_during_pause(addr: SocketAddr) -> Vec<Resp> {
    let mut c = Conn::connect(addr);
    c.cmd(&["FLUSHALL"]);
    c.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    c.cmd(&["SET", "k", "v", "PX", "50"]);
    c.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]);
    std::thread::sleep(Duration::from_millis(120));
    let during = vec![c.cmd(&["GET", "k"]), c.cmd(&["DBSIZE"])];
    c.cmd(&["CLIENT", "UNPAUSE"]);
    let after = vec![c.cmd(&["GET", "k"]), c.cmd(&["DBSIZE"])];
    c.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
    during.into_iter().chain(after).collect()
}

#[test]
fn expired_keys_stay_during_a_pause() {
    let redis = RedisServer::start(&["--enable-debug-command", "local"]);
    let engine = EngineServer::start();
    let r = expiry_during_pause(redis.addr());
    assert_eq!(
        r,
        vec![
            Resp::Bulk(None),
            Resp::Int(1),
            Resp::Bulk(None),
            Resp::Int(0)
        ]
    );
    assert_eq!(expiry_during_pause(engine.addr), r);
}

/// LATENCY HISTOGRAM after three SETs over RESP3, with the buckets reduced to the last
/// cumulative count (the bucket edges depend on the measured times).
fn histogram_shape(addr: SocketAddr) -> Resp {
    let mut c = Conn::connect(addr);
    c.cmd(&["HELLO", "3"]);
    c.cmd(&["CONFIG", "RESETSTAT"]);
    for i in 0..3 {
        c.cmd(&["SET", "h", &i.to_string()]);
    }
    let Resp::Map(cmds) = c.cmd(&["LATENCY", "HISTOGRAM", "set", "get", "config"]) else {
        panic!("a map");
    };
    Resp::Map(
        cmds.into_iter()
            .map(|(name, v)| {
                let Resp::Map(fields) = v else {
                    panic!("a map")
                };
                let fields = fields
                    .into_iter()
                    .map(|(k, v)| match v {
                        Resp::Map(buckets) => {
                            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
                            (k, buckets.last().map(|b| b.1.clone()).unwrap_or(Resp::Null))
                        }
                        v => (k, v),
                    })
                    .collect();
                (name, Resp::Map(fields))
            })
            .collect(),
    )
    .sorted()
}

#[test]
fn latency_histogram_matches_redis() {
    let (redis, engine) = servers();
    let r = histogram_shape(redis.addr());
    assert_eq!(
        r,
        Resp::Map(vec![
            (
                bulk("config|resetstat"),
                Resp::Map(vec![
                    (bulk("calls"), Resp::Int(1)),
                    (bulk("histogram_usec"), Resp::Int(1))
                ])
            ),
            (
                bulk("set"),
                Resp::Map(vec![
                    (bulk("calls"), Resp::Int(3)),
                    (bulk("histogram_usec"), Resp::Int(3))
                ])
            ),
        ])
    );
    assert_eq!(histogram_shape(engine.addr), r);
}
