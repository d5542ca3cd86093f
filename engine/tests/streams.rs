//! Streams across several connections and at sizes the scripts cannot reach, each
//! scenario run on a private redis-server and on the engine with identical replies:
//! blocked XREADs woken in arrival order, a blocked reader kept waiting while its key
//! is briefly of another type, approximate trimming of whole blocks, and memory per
//! entry.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::net::SocketAddr;
use std::time::Duration;

/// Waits until the server reports `n` blocked clients.
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
    panic!("expected {n} blocked clients");
}

/// Runs `scenario` on both servers and requires the same replies.
fn same_on_both(scenario: fn(SocketAddr) -> Vec<Resp>) {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let r = scenario(redis.addr());
    let e = scenario(engine.addr);
    assert_eq!(r.len(), e.len());
    for (i, (r, e)) in r.iter().zip(&e).enumerate() {
        assert_eq!(r, e, "reply {i} differs");
    }
}

fn send(c: &mut Conn, args: &[&str]) {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    c.send(&a);
}

#[test]
fn blocked_readers_are_served_in_arrival_order() {
    same_on_both(|addr| {
        let mut w = Conn::connect(addr);
        w.cmd(&["FLUSHALL"]);
        w.cmd(&["XADD", "s", "1-1", "a", "1"]);
        let mut readers = Vec::new();
        let cmds: [&[&str]; 4] = [
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            &["XREAD", "BLOCK", "0", "STREAMS", "other", "s", "$", "1-1"],
            &["XREAD", "COUNT", "1", "BLOCK", "0", "STREAMS", "s", "0"],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "5-0"],
        ];
        let mut out = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let mut c = Conn::connect(addr);
            send(&mut c, cmd);
            if i == 2 {
                // Data after 0 exists: served at once.
                out.push(c.read());
                continue;
            }
            wait_parked(&mut w, readers.len() + 1);
            readers.push(c);
        }
        out.push(w.cmd(&["XADD", "s", "2-1", "b", "2"]));
        out.push(readers[0].read());
        out.push(readers[1].read());
        wait_parked(&mut w, 1);
        // The last reader wants entries after 5-0 only.
        out.push(w.cmd(&["XADD", "s", "5-0", "c", "3"]));
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["XADD", "s", "5-1", "d", "4"]));
        out.push(readers[2].read());
        // A timeout answers a null array.
        let mut t = Conn::connect(addr);
        out.push(t.cmd(&["XREAD", "BLOCK", "50", "STREAMS", "s", "$"]));
        out
    });
}

#[test]
fn a_reader_waits_while_its_key_is_not_a_stream() {
    same_on_both(|addr| {
        let mut w = Conn::connect(addr);
        w.cmd(&["FLUSHALL"]);
        let mut r = Conn::connect(addr);
        send(&mut r, &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
        wait_parked(&mut w, 1);
        let mut out = vec![
            w.cmd(&["MULTI"]),
            w.cmd(&["XADD", "s", "1-1", "a", "1"]),
            w.cmd(&["DEL", "s"]),
            w.cmd(&["SET", "s", "x"]),
            w.cmd(&["EXEC"]),
        ];
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["DEL", "s"]));
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["XADD", "s", "5-0", "f", "v"]));
        out.push(r.read());
        out
    });
}

#[test]
fn approximate_trimming_drops_whole_blocks_like_redis() {
    same_on_both(|addr| {
        let mut c = Conn::connect(addr);
        c.cmd(&["FLUSHALL"]);
        let mut out = Vec::new();
        for i in 1..=350 {
            let id = format!("{i}-1");
            let v = i.to_string();
            c.cmd(&["XADD", "big", &id, "f", &v]);
        }
        let steps: [&[&str]; 17] = [
            &["XLEN", "big"],
            &["XTRIM", "big", "MAXLEN", "~", "120"],
            &["XLEN", "big"],
            &["XRANGE", "big", "-", "+", "COUNT", "1"],
            &["XTRIM", "big", "MAXLEN", "~", "10", "LIMIT", "50"],
            &["XTRIM", "big", "MAXLEN", "~", "10", "LIMIT", "100"],
            &["XLEN", "big"],
            &["XTRIM", "big", "MAXLEN", "=", "10"],
            &["XRANGE", "big", "-", "+", "COUNT", "2"],
            &["XADD", "big", "MINID", "~", "400", "400-1", "f", "x"],
            &["XLEN", "big"],
            &["XTRIM", "big", "MINID", "345"],
            &["XRANGE", "big", "-", "+"],
            &["XTRIM", "big", "MAXLEN", "3"],
            &["XRANGE", "big", "-", "+"],
            &["XDEL", "big", "349-1", "350-1", "400-1"],
            &["XRANGE", "big", "-", "+"],
        ];
        for s in steps {
            out.push(c.cmd(s));
        }
        // Blocks close by bytes too: large values fill one before 100 entries.
        let value = "v".repeat(300);
        for i in 1..=60 {
            let id = format!("{i}-0");
            c.cmd(&["XADD", "bytes", &id, "f", &value]);
        }
        out.push(c.cmd(&["XTRIM", "bytes", "MAXLEN", "~", "1"]));
        out.push(c.cmd(&["XLEN", "bytes"]));
        out
    });
}

#[test]
fn blocked_group_readers_share_new_entries_in_arrival_order() {
    same_on_both(|addr| {
        let mut w = Conn::connect(addr);
        w.cmd(&["FLUSHALL"]);
        let mut out = vec![w.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"])];
        let mut readers = Vec::new();
        for name in ["c1", "c2", "c3"] {
            let mut c = Conn::connect(addr);
            send(
                &mut c,
                &[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    name,
                    "COUNT",
                    "1",
                    "BLOCK",
                    "0",
                    "STREAMS",
                    "q",
                    ">",
                ],
            );
            wait_parked(&mut w, readers.len() + 1);
            readers.push(c);
        }
        // Two entries in one transaction: the two oldest readers get one each.
        out.push(w.cmd(&["MULTI"]));
        out.push(w.cmd(&["XADD", "q", "1-0", "job", "a"]));
        out.push(w.cmd(&["XADD", "q", "2-0", "job", "b"]));
        out.push(w.cmd(&["EXEC"]));
        out.push(readers[0].read());
        out.push(readers[1].read());
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["XPENDING", "q", "g"]));
        out.push(w.cmd(&["XADD", "q", "3-0", "job", "c"]));
        out.push(readers[2].read());
        out.push(w.cmd(&["XINFO", "GROUPS", "q"]));
        out
    });
}

#[test]
fn blocked_group_readers_are_released_like_redis() {
    same_on_both(|addr| {
        let mut w = Conn::connect(addr);
        w.cmd(&["FLUSHALL"]);
        let mut out = Vec::new();
        let park = |w: &mut Conn| {
            let mut c = Conn::connect(addr);
            send(
                &mut c,
                &[
                    "XREADGROUP",
                    "GROUP",
                    "g",
                    "c",
                    "BLOCK",
                    "0",
                    "STREAMS",
                    "q",
                    ">",
                ],
            );
            wait_parked(w, 1);
            c
        };
        // XGROUP DESTROY: NOGROUP.
        out.push(w.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]));
        let mut c = park(&mut w);
        out.push(w.cmd(&["XGROUP", "DESTROY", "q", "g"]));
        out.push(c.read());
        // DEL: UNBLOCKED.
        out.push(w.cmd(&["XGROUP", "CREATE", "q", "g", "$"]));
        let mut c = park(&mut w);
        out.push(w.cmd(&["DEL", "q"]));
        out.push(c.read());
        // FLUSHALL: UNBLOCKED.
        out.push(w.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]));
        let mut c = park(&mut w);
        out.push(w.cmd(&["FLUSHALL"]));
        out.push(c.read());
        // The stream replaced by a new one without the group: NOGROUP.
        out.push(w.cmd(&["XGROUP", "CREATE", "q", "g", "$", "MKSTREAM"]));
        let mut c = park(&mut w);
        out.push(w.cmd(&["MULTI"]));
        out.push(w.cmd(&["DEL", "q"]));
        out.push(w.cmd(&["XADD", "q", "1-1", "a", "b"]));
        out.push(w.cmd(&["EXEC"]));
        out.push(c.read());
        // A plain XREAD waits through a DEL and is served by the next XADD.
        let mut r = Conn::connect(addr);
        send(&mut r, &["XREAD", "BLOCK", "0", "STREAMS", "q", "$"]);
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["DEL", "q"]));
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["XADD", "q", "7-7", "x", "y"]));
        out.push(r.read());
        // NOACK: delivered without a pending entry.
        out.push(w.cmd(&["XGROUP", "CREATE", "q", "n", "$"]));
        let mut c = Conn::connect(addr);
        send(
            &mut c,
            &[
                "XREADGROUP",
                "GROUP",
                "n",
                "c",
                "NOACK",
                "BLOCK",
                "0",
                "STREAMS",
                "q",
                ">",
            ],
        );
        wait_parked(&mut w, 1);
        out.push(w.cmd(&["XADD", "q", "8-0", "x", "y"]));
        out.push(c.read());
        out.push(w.cmd(&["XPENDING", "q", "n"]));
        out
    });
}

#[test]
fn a_reader_of_several_streams_is_answered_from_the_ready_one() {
    same_on_both(|addr| {
        let mut w = Conn::connect(addr);
        w.cmd(&["FLUSHALL"]);
        let mut r = Conn::connect(addr);
        send(
            &mut r,
            &["XREAD", "BLOCK", "0", "STREAMS", "a", "b", "$", "$"],
        );
        wait_parked(&mut w, 1);
        let mut out = vec![
            w.cmd(&["MULTI"]),
            w.cmd(&["XADD", "b", "1-1", "x", "1"]),
            w.cmd(&["XADD", "a", "1-1", "y", "2"]),
            w.cmd(&["EXEC"]),
        ];
        out.push(r.read());
        out
    });
}

/// Random command sequences on both servers, compared reply by reply: appends with
/// explicit and `ms-*` IDs, deletes, exact and approximate trims, group reads, acks,
/// claims, and the XINFO figures (radix-tree keys and nodes, lag, entries-read) that
/// depend on how blocks split and how tombstones lie. Small block limits make many
/// blocks. Seeded: a failure names the seed and the step.
#[test]
fn random_stream_workloads_match_redis() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let mut r = Conn::connect(redis.addr());
    let mut e = Conn::connect(engine.addr);
    for seed in 1..=30u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        for c in [&mut r, &mut e] {
            c.cmd(&["FLUSHALL"]);
            let entries = (1 + seed * 2).to_string();
            let bytes = (60 + seed * 40).to_string();
            c.cmd(&["CONFIG", "SET", "stream-node-max-entries", &entries]);
            c.cmd(&["CONFIG", "SET", "stream-node-max-bytes", &bytes]);
            c.cmd(&["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]);
            c.cmd(&["XGROUP", "CREATE", "s", "h", "$"]);
        }
        let mut ms = 1u64;
        for step in 0..600 {
            let cmd: Vec<String> = match rng.u32(0..100) {
                0..=39 => {
                    ms += rng.u64(0..3);
                    let id = if rng.bool() {
                        format!("{ms}-*")
                    } else {
                        format!("{ms}-{}", rng.u64(0..5))
                    };
                    let mut v = vec!["XADD".into(), "s".into()];
                    if rng.u32(0..10) == 0 {
                        v.extend(["MAXLEN".into(), "~".into(), rng.u32(0..40).to_string()]);
                    }
                    v.push(id);
                    let fields = if rng.bool() {
                        &["a", "b"][..]
                    } else {
                        &["a"][..]
                    };
                    for f in fields {
                        v.push((*f).into());
                        v.push("x".repeat(rng.usize(0..30)));
                    }
                    v
                }
                40..=49 => {
                    let a = rng.u64(0..=ms);
                    vec![
                        "XDEL".into(),
                        "s".into(),
                        format!("{a}-0"),
                        format!("{a}-1"),
                    ]
                }
                50..=54 => {
                    let how = if rng.bool() { "MAXLEN" } else { "MINID" };
                    let op = if rng.bool() { "~" } else { "=" };
                    let val = if how == "MAXLEN" {
                        rng.u64(0..30).to_string()
                    } else {
                        format!("{}-0", rng.u64(0..=ms))
                    };
                    vec!["XTRIM".into(), "s".into(), how.into(), op.into(), val]
                }
                55..=64 => {
                    let g = if rng.bool() { "g" } else { "h" };
                    let c = format!("c{}", rng.u32(0..3));
                    vec![
                        "XREADGROUP".into(),
                        "GROUP".into(),
                        g.into(),
                        c,
                        "COUNT".into(),
                        rng.u32(1..6).to_string(),
                        "STREAMS".into(),
                        "s".into(),
                        if rng.u32(0..4) == 0 {
                            "0".into()
                        } else {
                            ">".into()
                        },
                    ]
                }
                65..=72 => {
                    let a = rng.u64(0..=ms);
                    vec![
                        "XACK".into(),
                        "s".into(),
                        "g".into(),
                        format!("{a}-0"),
                        format!("{a}-1"),
                    ]
                }
                73..=77 => vec![
                    "XAUTOCLAIM".into(),
                    "s".into(),
                    "g".into(),
                    "z".into(),
                    "0".into(),
                    "0".into(),
                    "COUNT".into(),
                    rng.u32(1..4).to_string(),
                    "JUSTID".into(),
                ],
                78..=82 => vec!["XINFO".into(), "STREAM".into(), "s".into()],
                83..=87 => vec!["XINFO".into(), "GROUPS".into(), "s".into()],
                88..=92 => vec!["XPENDING".into(), "s".into(), "g".into()],
                93..=95 => vec![
                    "XREVRANGE".into(),
                    "s".into(),
                    "+".into(),
                    "-".into(),
                    "COUNT".into(),
                    "5".into(),
                ],
                _ => vec!["XSETID".into(), "s".into(), format!("{}-9", ms + 1)],
            };
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let (a, b) = (r.cmd(&args), e.cmd(&args));
            assert_eq!(a, b, "seed {seed} step {step}: {cmd:?}");
        }
        let full = ["XRANGE", "s", "-", "+"];
        assert_eq!(r.cmd(&full), e.cmd(&full), "seed {seed}: the final stream");
    }
}

#[test]
fn watch_sees_the_stream_changes_redis_signals() {
    same_on_both(|addr| {
        let cmds: [&[&str]; 16] = [
            &["XADD", "s", "200-0", "a", "b"],
            &["XDEL", "s", "1-0"],
            &["XDEL", "s", "9-9"],
            &["XTRIM", "s", "MAXLEN", "0"],
            &["XSETID", "s", "100-0"],
            &["XGROUP", "CREATE", "s", "g3", "0"],
            &["XGROUP", "CREATE", "s2", "g", "$", "MKSTREAM"],
            &["XGROUP", "SETID", "s", "g", "0"],
            &["XGROUP", "DESTROY", "s", "g2"],
            &["XGROUP", "CREATECONSUMER", "s", "g", "e"],
            &["XGROUP", "DELCONSUMER", "s", "g", "d"],
            &["XREADGROUP", "GROUP", "g2", "c", "STREAMS", "s", ">"],
            &["XACK", "s", "g", "1-0"],
            &["XCLAIM", "s", "g", "e", "0", "1-0"],
            &["XAUTOCLAIM", "s", "g", "e", "0", "0"],
            &["XREAD", "STREAMS", "s", "0"],
        ];
        let mut out = Vec::new();
        for cmd in cmds {
            let mut a = Conn::connect(addr);
            let mut b = Conn::connect(addr);
            b.cmd(&["FLUSHALL"]);
            b.cmd(&["XADD", "s", "1-0", "a", "b"]);
            b.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
            b.cmd(&["XGROUP", "CREATE", "s", "g2", "0"]);
            b.cmd(&["XREADGROUP", "GROUP", "g", "d", "STREAMS", "s", ">"]);
            a.cmd(&["WATCH", "s", "s2"]);
            out.push(b.cmd(cmd));
            a.cmd(&["MULTI"]);
            a.cmd(&["PING"]);
            out.push(a.cmd(&["EXEC"]));
        }
        out
    });
}
