//! Replication (PSYNC2) with real redis-server 7.0 in both directions: full sync of
//! every type with TTLs in several databases, the live stream, partial resyncs after
//! a broken link, promotion, WAIT, the replica gates.

mod common;

use common::dataset::{self, assert_same, pipeline, populate, populate_streams, snapshot, words};
use common::{Conn, EngineServer, RedisServer, Resp};
use std::time::{Duration, Instant};

/// Polls `f` until it is true; panics with `what` after 20 s.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// One field of INFO (any section).
fn info(c: &mut Conn, field: &str) -> String {
    let r = c.cmd(&["INFO", "everything"]);
    let text = match r {
        Resp::Bulk(Some(b)) | Resp::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO: {other:?}"),
    };
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_default()
}

fn link_up(c: &mut Conn) -> bool {
    info(c, "master_link_status") == "up"
}

/// An engine with no sync delay (the tests' replicas connect one at a time).
fn engine() -> EngineServer {
    EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        save: String::new(),
        enable_debug_command: "local".into(),
        repl_diskless_sync_delay: 0,
        ..Default::default()
    })
}

fn redis(extra: &[&str]) -> RedisServer {
    let mut args = vec!["--repl-diskless-sync-delay", "0"];
    args.extend_from_slice(extra);
    RedisServer::start(&args)
}

fn ok(r: Resp) {
    assert_eq!(r, Resp::Simple("OK".into()));
}

/// A function library loaded before the sync (carried by the RDB), and the library
/// commands after it (carried by the stream, as Redis propagates them).
const LIB_A: &[u8] = b"#!lua name=liba\nredis.register_function{function_name='fa', callback=function(keys, args) return 'a' end, flags={'no-writes'}, description='synced'}";
const LIB_B: &[u8] = b"#!lua name=libb\nredis.register_function('fb', function(keys, args) return redis.call('incr', keys[1]) end)";
const LIB_C: &[u8] =
    b"#!lua name=libc\nredis.register_function('fc', function(keys, args) return 'c' end)";

fn function_writes(c: &mut Conn) {
    pipeline(
        c,
        &[
            dataset::cmd(&[b"FUNCTION", b"LOAD", LIB_B]),
            dataset::cmd(&[b"FUNCTION", b"LOAD", LIB_C]),
            words("FUNCTION DELETE libc"),
            words("FCALL fb 1 live:fcall"),
        ],
    );
}

/// The libraries with their code, in name order.
fn libraries(c: &mut Conn) -> Resp {
    c.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted()
}

/// Writes of every kind after the sync: they reach the replica through the stream.
fn live_writes(c: &mut Conn) {
    pipeline(
        c,
        &[
            words("SELECT 2"),
            words("SET live:a 1"),
            words("INCRBYFLOAT live:f 1.5"),
            words("SET live:ttl v EX 1000"),
            words("RPUSH live:l a b c"),
            words("LPOP live:l"),
            words("SADD live:s x y z"),
            words("SPOP live:s"),
            words("ZADD live:z 1 a 2 b"),
            words("HSET live:h f v"),
            words("XADD live:x 1-1 a b"),
            words("MULTI"),
            words("SET live:m1 1"),
            words("SELECT 4"),
            words("SET live:m2 2"),
            words("EXEC"),
            words("SELECT 1"),
            words("DEL hash:lp"),
            words("SET short v PX 50"),
            words("SELECT 9"),
            words("FLUSHDB"),
            words("SWAPDB 0 7"),
            words("SELECT 0"),
        ],
    );
}

#[test]
fn the_engine_replicates_redis_server() {
    let primary = redis(&[]);
    let mut p = Conn::connect(primary.addr());
    populate(&mut p);
    populate_streams(&mut p);
    pipeline(&mut p, &[dataset::cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
    let e = engine();
    let mut r = Conn::connect(e.addr);
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    assert_eq!(
        r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]),
        Resp::Simple("OK Already connected to specified master".into())
    );
    wait_for("the link", || link_up(&mut r));
    assert_same("after the full sync", &snapshot(&mut p), &snapshot(&mut r));
    assert_eq!(libraries(&mut r), libraries(&mut p), "after the full sync");

    live_writes(&mut p);
    function_writes(&mut p);
    // The key that expires at once is gone (the primary's DEL sent) before comparing.
    wait_for("the short key's expiry", || short_gone(&mut p));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    let offset = info(&mut p, "master_repl_offset");
    wait_for("the same offset", || {
        info(&mut r, "slave_repl_offset") == offset
    });
    assert_same("after the stream", &snapshot(&mut p), &snapshot(&mut r));
    assert_eq!(libraries(&mut r), libraries(&mut p), "after the stream");

    // What Sentinel reads.
    assert_eq!(info(&mut r, "role"), "slave");
    assert_eq!(info(&mut r, "master_port"), primary.port.to_string());
    assert_eq!(info(&mut r, "slave_priority"), "100");
    assert_eq!(info(&mut r, "replica_announced"), "1");
    assert_eq!(info(&mut r, "run_id").len(), 40);
    assert_eq!(info(&mut r, "master_replid"), info(&mut p, "master_replid"));
    let Resp::Array(Some(role)) = r.cmd(&["ROLE"]) else {
        panic!("ROLE");
    };
    assert_eq!(role[0], Resp::Bulk(Some(b"slave".to_vec())));
    assert_eq!(role[2], Resp::Int(primary.port as i64));
    assert_eq!(role[3], Resp::Bulk(Some(b"connected".to_vec())));
    assert_eq!(role[4], Resp::Int(offset.parse().unwrap_or(-2)));
    let seen = info(&mut p, "slave0");
    assert!(seen.contains("state=online"), "{seen}");

    // A read-only replica.
    assert_eq!(
        r.cmd(&["SET", "x", "y"]),
        Resp::Error("READONLY You can't write against a read only replica.".into())
    );
    assert_eq!(r.cmd(&["GET", "live:a"]), Resp::Bulk(None));
    // The library commands are writes there too; a no-writes function runs.
    for args in [
        &[
            "FUNCTION",
            "LOAD",
            "#!lua name=x\nredis.register_function('x', function() end)",
        ][..],
        &["FUNCTION", "DELETE", "liba"],
        &["FUNCTION", "FLUSH"],
    ] {
        assert_eq!(
            r.cmd(args),
            Resp::Error("READONLY You can't write against a read only replica.".into())
        );
    }
    assert_eq!(
        r.cmd(&["FCALL_RO", "fa", "0"]),
        Resp::Bulk(Some(b"a".to_vec()))
    );
    assert_eq!(
        r.cmd(&["WAIT", "1", "0"]),
        Resp::Error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.".into())
    );

    // Promotion keeps the old history as replid2.
    let old = info(&mut r, "master_replid");
    let mut roles = e.engine.watch_role();
    ok(r.cmd(&["REPLICAOF", "NO", "ONE"]));
    assert_eq!(info(&mut r, "role"), "master");
    assert_eq!(info(&mut r, "master_replid2"), old);
    assert_eq!(
        info(&mut r, "second_repl_offset"),
        (offset.parse::<i64>().unwrap_or(0) + 1).to_string()
    );
    assert!(roles.has_changed().unwrap_or(false));
    assert_eq!(*roles.borrow_and_update(), engine::Role::Primary);
    ok(r.cmd(&["SET", "x", "y"]));
}

#[test]
fn redis_server_replicates_the_engine() {
    let e = engine();
    let mut p = Conn::connect(e.addr);
    populate(&mut p);
    populate_streams(&mut p);
    pipeline(&mut p, &[dataset::cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
    e.engine
        .set_save_aux("coherent-binlog-position", Some("pos-1".into()));
    let port = e.addr.port().to_string();
    let replica = redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(replica.addr());
    wait_for("the link", || link_up(&mut r));
    assert_same("after the full sync", &snapshot(&mut p), &snapshot(&mut r));
    assert_eq!(libraries(&mut r), libraries(&mut p), "after the full sync");

    live_writes(&mut p);
    function_writes(&mut p);
    // In-process writes replicate too, and the aux (a PUBLISH Redis runs harmlessly).
    let b = |s: &str| bytes::Bytes::copy_from_slice(s.as_bytes());
    e.engine.execute(3, vec![b("SET"), b("inproc"), b("1")]);
    e.engine
        .set_save_aux("coherent-binlog-position", Some("pos-2".into()));
    // The short key expires on the primary: its DEL reaches the replica.
    wait_for("the expired key's DEL", || short_gone(&mut r));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    let offset = info(&mut p, "master_repl_offset");
    wait_for("the same offset", || {
        info(&mut r, "slave_repl_offset") == offset
    });
    assert_same("after the stream", &snapshot(&mut p), &snapshot(&mut r));
    assert_eq!(libraries(&mut r), libraries(&mut p), "after the stream");
    let slave0 = info(&mut p, "slave0");
    assert!(
        slave0.starts_with(&format!(
            "ip=127.0.0.1,port={},state=online,offset=",
            replica.port
        )),
        "{slave0}"
    );
    assert_eq!(info(&mut p, "connected_slaves"), "1");
    let Resp::Bulk(Some(list)) = p.cmd(&["CLIENT", "LIST", "TYPE", "replica"]) else {
        panic!("CLIENT LIST");
    };
    let list = String::from_utf8_lossy(&list).into_owned();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains(" flags=S "), "{list}");
    let Resp::Array(Some(role)) = p.cmd(&["ROLE"]) else {
        panic!("ROLE");
    };
    assert_eq!(role[0], Resp::Bulk(Some(b"master".to_vec())));
    assert_eq!(info(&mut r, "master_replid"), info(&mut p, "master_replid"));
    // WAIT for more replicas than there are times out with the count.
    let start = Instant::now();
    assert_eq!(p.cmd(&["WAIT", "2", "300"]), Resp::Int(1));
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[test]
fn partial_resync_after_a_broken_link_both_ways() {
    // The engine as the replica of redis-server.
    let primary = redis(&[]);
    let mut p = Conn::connect(primary.addr());
    populate(&mut p);
    let e = engine();
    let mut r = Conn::connect(e.addr);
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    wait_for("the link", || link_up(&mut r));
    assert_eq!(p.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), Resp::Int(1));
    pipeline(&mut p, &[words("SET during break")]);
    wait_for("the link again", || {
        link_up(&mut r) && info(&mut p, "sync_partial_ok") == "1"
    });
    assert_eq!(info(&mut p, "sync_full"), "1");
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    assert_same(
        "engine replica after +CONTINUE",
        &snapshot(&mut p),
        &snapshot(&mut r),
    );
    // Broken from the replica's side, as Redis's master client: listed with flags=M,
    // ended by CLIENT KILL TYPE master, continued with PSYNC.
    let list = match r.cmd(&["CLIENT", "LIST", "TYPE", "master"]) {
        Resp::Bulk(Some(b)) | Resp::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("CLIENT LIST: {other:?}"),
    };
    let line = list.lines().next().unwrap_or_default();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(line.contains(" flags=M "), "{line}");
    assert!(
        line.contains(&format!(" addr=127.0.0.1:{} ", primary.port)),
        "{line}"
    );
    assert_eq!(r.cmd(&["CLIENT", "KILL", "TYPE", "master"]), Resp::Int(1));
    pipeline(&mut p, &[words("SET after master")]);
    wait_for("the link after CLIENT KILL TYPE master", || {
        link_up(&mut r) && info(&mut p, "sync_partial_ok") == "2"
    });
    assert_eq!(info(&mut p, "sync_full"), "1");
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    assert_eq!(
        r.cmd(&["GET", "after"]),
        Resp::Bulk(Some(b"master".to_vec()))
    );

    // redis-server as the replica of the engine.
    let e2 = engine();
    let mut p2 = Conn::connect(e2.addr);
    populate(&mut p2);
    let port = e2.addr.port().to_string();
    let replica = redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r2 = Conn::connect(replica.addr());
    wait_for("the link", || link_up(&mut r2));
    assert_eq!(p2.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), Resp::Int(1));
    pipeline(&mut p2, &[words("SET during break")]);
    wait_for("the link again", || {
        link_up(&mut r2) && info(&mut p2, "sync_partial_ok") == "1"
    });
    assert_eq!(info(&mut p2, "sync_full"), "1");
    assert_eq!(p2.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    assert_same(
        "redis replica after +CONTINUE",
        &snapshot(&mut p2),
        &snapshot(&mut r2),
    );
}

#[test]
fn a_promoted_replica_continues_its_old_primarys_replicas() {
    // Primary P (engine) with replicas A (engine) and B (redis-server). P goes;
    // A is promoted; B follows A with +CONTINUE thanks to A's replid2.
    let p = engine();
    let mut pc = Conn::connect(p.addr);
    populate(&mut pc);
    p.engine.set_save_aux(
        "coherent-binlog-position",
        Some("binlog.000007:1234".into()),
    );
    let port = p.addr.port().to_string();
    let a = engine();
    let mut ac = Conn::connect(a.addr);
    ok(ac.cmd(&["REPLICAOF", "127.0.0.1", &port]));
    let b = redis(&["--replicaof", "127.0.0.1", &port]);
    let mut bc = Conn::connect(b.addr());
    wait_for("both links", || link_up(&mut ac) && link_up(&mut bc));
    pipeline(
        &mut pc,
        &[
            words("SET after sync"),
            words("SELECT 3"),
            words("SET in3 v"),
        ],
    );
    e_wait(&mut pc, 2);
    let offset = info(&mut pc, "master_repl_offset");
    wait_for("both at the primary's offset", || {
        info(&mut ac, "slave_repl_offset") == offset && info(&mut bc, "slave_repl_offset") == offset
    });
    let before = snapshot(&mut pc);
    // The binlog position came with the data.
    assert_eq!(
        a.engine.save_aux("coherent-binlog-position").as_deref(),
        Some(&b"binlog.000007:1234"[..])
    );
    // ...and a new one comes in the stream, at its point.
    p.engine
        .set_save_aux("coherent-binlog-position", Some("binlog.000008:99".into()));
    e_wait(&mut pc, 2);
    assert_eq!(
        a.engine.save_aux("coherent-binlog-position").as_deref(),
        Some(&b"binlog.000008:99"[..])
    );
    assert_eq!(
        a.engine.role(),
        engine::Role::Replica {
            host: "127.0.0.1".into(),
            port: p.addr.port(),
            link_up: true
        }
    );
    let offset = info(&mut pc, "master_repl_offset");
    wait_for("both at the primary's offset again", || {
        info(&mut ac, "slave_repl_offset") == offset && info(&mut bc, "slave_repl_offset") == offset
    });
    drop(pc);
    drop(p);
    wait_for("A sees the link down", || !link_up(&mut ac));
    let down: i64 = info(&mut ac, "master_link_down_since_seconds")
        .parse()
        .unwrap_or(-1);
    assert!(down >= 0, "a lost link has a down time");
    ok(ac.cmd(&["REPLICAOF", "NO", "ONE"]));
    ok(bc.cmd(&["REPLICAOF", "127.0.0.1", &a.addr.port().to_string()]));
    wait_for("B follows A", || link_up(&mut bc));
    assert_eq!(info(&mut ac, "sync_partial_ok"), "1");
    assert_eq!(info(&mut ac, "sync_full"), "0");
    // New writes on A reach B, in the right database.
    pipeline(
        &mut ac,
        &[words("SELECT 3"), words("SET from:a 1"), words("SELECT 0")],
    );
    e_wait(&mut ac, 1);
    let after_a = snapshot(&mut ac);
    assert_same("B after the promotion", &after_a, &snapshot(&mut bc));
    assert_eq!(after_a.len(), before.len() + 1);
}

/// Whether `short` (set by `live_writes` with a 50 ms TTL) is gone.
fn short_gone(c: &mut Conn) -> bool {
    pipeline(c, &[words("SELECT 1")]);
    let gone = c.cmd(&["EXISTS", "short"]) == Resp::Int(0);
    pipeline(c, &[words("SELECT 0")]);
    gone
}

fn e_wait(c: &mut Conn, n: i64) {
    assert_eq!(c.cmd(&["WAIT", &n.to_string(), "5000"]), Resp::Int(n));
}

#[test]
fn replica_gates_and_settings() {
    let primary = redis(&[]);
    let e = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        save: String::new(),
        replica_serve_stale_data: false,
        ..Default::default()
    });
    let mut r = Conn::connect(e.addr);
    // Nothing listens here: the link stays down.
    let dead = common::free_port();
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &dead.to_string()]));
    assert_eq!(
        r.cmd(&["GET", "k"]),
        Resp::Error(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
                .into()
        )
    );
    assert_eq!(info(&mut r, "master_link_status"), "down");
    // Never synced: -1, as Redis.
    assert_eq!(info(&mut r, "master_link_down_since_seconds"), "-1");
    ok(r.cmd(&["CONFIG", "SET", "replica-serve-stale-data", "yes"]));
    assert_eq!(r.cmd(&["GET", "k"]), Resp::Bulk(None));
    ok(r.cmd(&["CONFIG", "SET", "slave-read-only", "no"]));
    ok(r.cmd(&["SET", "k", "local"]));
    ok(r.cmd(&["REPLICAOF", "NO", "ONE"]));
    // min-replicas-to-write on a primary without replicas.
    ok(r.cmd(&["CONFIG", "SET", "min-replicas-to-write", "1"]));
    assert_eq!(
        r.cmd(&["SET", "k", "v"]),
        Resp::Error("NOREPLICAS Not enough good replicas to write.".into())
    );
    assert_eq!(
        r.cmd(&["FUNCTION", "FLUSH"]),
        Resp::Error("NOREPLICAS Not enough good replicas to write.".into())
    );
    assert_eq!(r.cmd(&["GET", "k"]), Resp::Bulk(Some(b"local".to_vec())));
    let port = e.addr.port().to_string();
    let mut pc = Conn::connect(primary.addr());
    ok(pc.cmd(&["REPLICAOF", "127.0.0.1", &port]));
    let mut rc = Conn::connect(primary.addr());
    wait_for("the replica counts as good", || {
        link_up(&mut rc) && info(&mut r, "min_slaves_good_slaves") == "1"
    });
    ok(r.cmd(&["SET", "k", "v"]));
    // Settings as Redis names them.
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "repl-backlog-size"]),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"repl-backlog-size".to_vec())),
            Resp::Bulk(Some(b"1048576".to_vec()))
        ]))
    );
    let _ = dataset::DBS;
}

#[test]
fn masterauth_and_masteruser() {
    // A password on the primary: the link stays down until masterauth is set.
    let primary = redis(&["--requirepass", "secret"]);
    let mut p = Conn::connect(primary.addr());
    ok(p.cmd(&["AUTH", "secret"]));
    ok(p.cmd(&["SET", "k", "v"]));
    let e = engine();
    let mut r = Conn::connect(e.addr);
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(info(&mut r, "master_link_status"), "down");
    ok(r.cmd(&["CONFIG", "SET", "masterauth", "secret"]));
    wait_for("the link with masterauth", || link_up(&mut r));
    assert_eq!(r.cmd(&["GET", "k"]), Resp::Bulk(Some(b"v".to_vec())));

    // An ACL user.
    let primary = redis(&[
        "--user", "repl", "on", ">pw", "~*", "&*", "+@all", "--user", "default", "off",
    ]);
    let mut p = Conn::connect(primary.addr());
    ok(p.cmd(&["AUTH", "repl", "pw"]));
    ok(p.cmd(&["SET", "k", "acl"]));
    let e = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        save: String::new(),
        masteruser: Some("repl".into()),
        masterauth: Some("pw".into()),
        replicaof: Some(format!("127.0.0.1 {}", primary.port)),
        ..Default::default()
    });
    let mut r = Conn::connect(e.addr);
    wait_for("the link as an ACL user", || link_up(&mut r));
    assert_eq!(r.cmd(&["GET", "k"]), Resp::Bulk(Some(b"acl".to_vec())));
    assert_eq!(
        r.cmd(&["CONFIG", "GET", "replicaof"]),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"replicaof".to_vec())),
            Resp::Bulk(Some(format!("127.0.0.1 {}", primary.port).into_bytes()))
        ]))
    );

    // The engine as the primary with a password, redis-server replicating it.
    let e = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        save: String::new(),
        requirepass: Some("pw2".into()),
        repl_diskless_sync_delay: 0,
        ..Default::default()
    });
    let mut p = Conn::connect(e.addr);
    ok(p.cmd(&["AUTH", "pw2"]));
    ok(p.cmd(&["SET", "k", "from-engine"]));
    let port = e.addr.port().to_string();
    let replica = redis(&["--masterauth", "pw2", "--replicaof", "127.0.0.1", &port]);
    let mut rc = Conn::connect(replica.addr());
    wait_for("redis-server's link with masterauth", || link_up(&mut rc));
    assert_eq!(
        rc.cmd(&["GET", "k"]),
        Resp::Bulk(Some(b"from-engine".to_vec()))
    );
}

#[test]
fn failover_hands_the_primary_role_to_a_replica() {
    let e = engine();
    let mut p = Conn::connect(e.addr);
    populate(&mut p);
    let port = e.addr.port().to_string();
    let replica = redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(replica.addr());
    wait_for("the link", || link_up(&mut r));
    assert_eq!(
        p.cmd(&["FAILOVER", "ABORT"]),
        Resp::Error("ERR No failover in progress.".into())
    );
    assert_eq!(
        p.cmd(&["FAILOVER", "TO", "127.0.0.1", "1", "TIMEOUT", "100"]),
        Resp::Error("ERR FAILOVER target HOST and PORT is not a replica.".into())
    );
    ok(p.cmd(&["FAILOVER", "TIMEOUT", "5000"]));
    wait_for("the roles swapped", || {
        info(&mut r, "role") == "master" && link_up(&mut p)
    });
    assert_eq!(info(&mut p, "master_port"), replica.port.to_string());
    assert_eq!(info(&mut p, "master_failover_state"), "no-failover");
    // The old primary continued (no full sync) and follows the new one.
    ok(r.cmd(&["SET", "after", "failover"]));
    assert_eq!(r.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    assert_eq!(
        p.cmd(&["GET", "after"]),
        Resp::Bulk(Some(b"failover".to_vec()))
    );
    assert_eq!(info(&mut r, "sync_partial_ok"), "1");
    assert_same("after FAILOVER", &snapshot(&mut r), &snapshot(&mut p));
}

/// A key whose TTL passed but which the primary has not deleted yet travels in the full
/// sync and stays on the replica (reads see nothing) until the primary's DEL, as a Redis
/// replica keeps it.
#[test]
fn a_replica_keeps_expired_keys_of_the_sync_until_the_primarys_del() {
    let primary = redis(&["--enable-debug-command", "yes"]);
    let mut p = Conn::connect(primary.addr());
    ok(p.cmd(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]));
    ok(p.cmd(&["SET", "gone", "v", "PX", "50"]));
    ok(p.cmd(&["SET", "kept", "v"]));
    std::thread::sleep(Duration::from_millis(150));
    let e = engine();
    let mut r = Conn::connect(e.addr);
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    wait_for("the link", || link_up(&mut r));
    assert_eq!(
        r.cmd(&["DBSIZE"]),
        Resp::Int(2),
        "the expired key was dropped"
    );
    assert_eq!(r.cmd(&["GET", "gone"]), Resp::Bulk(None));
    // The primary's lazy expiry sends the DEL.
    assert_eq!(p.cmd(&["GET", "gone"]), Resp::Bulk(None));
    wait_for("the DEL", || r.cmd(&["DBSIZE"]) == Resp::Int(1));
}

/// As Redis's PAUSE_DURING_FAILOVER: from FAILOVER until it ends, clients' writes
/// wait (reads do not); CLIENT UNPAUSE does not end that pause; an abort (here the
/// timeout, the target being frozen) lets the held writes run.
#[test]
fn failover_holds_writes_until_it_ends() {
    let e = engine();
    let mut p = Conn::connect(e.addr);
    let port = e.addr.port().to_string();
    let replica = redis(&["--replicaof", "127.0.0.1", &port]);
    let mut r = Conn::connect(replica.addr());
    wait_for("the link", || link_up(&mut r));
    ok(p.cmd(&["SET", "k", "before"]));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    replica.signal("STOP");
    ok(p.cmd(&["FAILOVER", "TIMEOUT", "1500"]));
    assert_eq!(info(&mut p, "master_failover_state"), "waiting-for-sync");
    let addr = e.addr;
    let writer = std::thread::spawn(move || {
        let mut w = Conn::connect(addr);
        w.cmd(&["SET", "k", "during"])
    });
    std::thread::sleep(Duration::from_millis(300));
    ok(p.cmd(&["CLIENT", "UNPAUSE"]));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        p.cmd(&["GET", "k"]),
        Resp::Bulk(Some(b"before".to_vec())),
        "a write ran during FAILOVER"
    );
    assert!(
        !writer.is_finished(),
        "the writer was answered during FAILOVER"
    );
    wait_for("the abort", || {
        info(&mut p, "master_failover_state") == "no-failover"
    });
    assert_eq!(writer.join().expect("writer"), Resp::Simple("OK".into()));
    assert_eq!(p.cmd(&["GET", "k"]), Resp::Bulk(Some(b"during".to_vec())));
    assert_eq!(info(&mut p, "role"), "master");
    replica.signal("CONT");
}

#[test]
fn a_full_sync_under_writes_reaches_the_same_data() {
    // The snapshot is slowed down (rdb-key-save-delay) so that writes land while it
    // is sent: entries it has not reached yet, ones it has, new keys, deletes. The
    // replica ends up with the primary's data: the snapshot plus the stream after it.
    let e = engine();
    let mut p = Conn::connect(e.addr);
    let fill: Vec<Vec<Vec<u8>>> = (0..20_000)
        .map(|i| words(&format!("SET k:{i} {i}")))
        .collect();
    pipeline(&mut p, &fill);
    ok(p.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "50"]));
    let port = e.addr.port().to_string();
    let replica = redis(&["--replicaof", "127.0.0.1", &port]);
    let addr = e.addr;
    let writer = std::thread::spawn(move || {
        let mut w = Conn::connect(addr);
        let mut n = 0u64;
        for round in 0..40 {
            let mut cmds = Vec::new();
            for j in 0..100u64 {
                let k = (round * 7919 + j * 104_729) % 20_000;
                cmds.push(words(&format!("INCR k:{k}")));
                cmds.push(words(&format!("SET new:{round}:{j} x")));
                cmds.push(words(&format!("DEL k:{}", (k + 13) % 20_000)));
                cmds.push(words(&format!("RPUSH list:{} {round}", j % 5)));
                n += 4;
            }
            pipeline(&mut w, &cmds);
            std::thread::sleep(Duration::from_millis(25));
        }
        n
    });
    let mut r = Conn::connect(replica.addr());
    wait_for("the link", || link_up(&mut r));
    let _ = writer.join();
    e_wait(&mut p, 1);
    let offset = info(&mut p, "master_repl_offset");
    wait_for("the same offset", || {
        info(&mut r, "slave_repl_offset") == offset
    });
    assert_same(
        "after a full sync under writes",
        &snapshot(&mut p),
        &snapshot(&mut r),
    );
}

#[test]
fn a_replica_with_the_aof_on_restarts_with_the_primarys_data() {
    let primary = redis(&[]);
    let mut p = Conn::connect(primary.addr());
    populate(&mut p);
    let dir = std::env::temp_dir().join(format!("coherent-repl-aof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        save: String::new(),
        appendonly: true,
        dir: dir.display().to_string(),
        ..Default::default()
    };
    let e = EngineServer::start_with(cfg.clone());
    let mut r = Conn::connect(e.addr);
    ok(r.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    wait_for("the link", || link_up(&mut r));
    live_writes(&mut p);
    // The key that expires at once is gone (the primary's DEL sent) before comparing.
    wait_for("the short key's expiry", || short_gone(&mut p));
    e_wait(&mut p, 1);
    let offset = info(&mut p, "master_repl_offset");
    wait_for("the same offset", || {
        info(&mut r, "slave_repl_offset") == offset
    });
    wait_for("the AOF rewrite", || {
        info(&mut r, "aof_rewrite_in_progress") == "0"
    });
    let want = snapshot(&mut p);
    drop(r);
    drop(e);
    // A restart loads the AOF: the full sync's data and the stream after it.
    let e = EngineServer::start_with(cfg);
    let mut r = Conn::connect(e.addr);
    assert_same(
        "the replica's AOF after a restart",
        &want,
        &snapshot(&mut r),
    );
    drop(r);
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chain_of_replicas_keeps_the_primarys_offsets() {
    // redis-server -> engine A -> engine B: A passes the primary's stream on byte for
    // byte, so all three report the same offset and B can resync with A's history.
    let primary = redis(&[]);
    let mut p = Conn::connect(primary.addr());
    populate(&mut p);
    let a = engine();
    let mut ac = Conn::connect(a.addr);
    ok(ac.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]));
    wait_for("A's link", || link_up(&mut ac));
    let b = engine();
    let mut bc = Conn::connect(b.addr);
    ok(bc.cmd(&["REPLICAOF", "127.0.0.1", &a.addr.port().to_string()]));
    wait_for("B's link", || link_up(&mut bc));
    live_writes(&mut p);
    wait_for("the short key's expiry", || short_gone(&mut p));
    e_wait(&mut p, 1);
    let offset = info(&mut p, "master_repl_offset");
    wait_for("the same offset along the chain", || {
        info(&mut ac, "slave_repl_offset") == offset && info(&mut bc, "slave_repl_offset") == offset
    });
    let want = snapshot(&mut p);
    assert_same("A", &want, &snapshot(&mut ac));
    assert_same("B", &want, &snapshot(&mut bc));
    assert_eq!(
        info(&mut bc, "master_replid"),
        info(&mut p, "master_replid")
    );
}
