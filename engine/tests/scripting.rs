//! Lua scripting across clients and connections: redis-py's `Lock` and
//! `register_script`, the `redis` crate's `Script`, and BUSY / SCRIPT KILL /
//! FUNCTION KILL / SHUTDOWN NOSAVE while a script runs on another connection.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::time::{Duration, Instant};

fn run_py(port: u16) {
    common::run_redis_py("redis_py_scripting.py", port, &[], "redis-py scripting: ok");
}

#[test]
fn redis_py_lock_and_register_script_on_the_engine() {
    let srv = EngineServer::start();
    run_py(srv.addr.port());
}

/// The same script against real Redis, so a failure above points at the engine.
#[test]
fn redis_py_scripting_check_passes_against_redis() {
    let redis = RedisServer::start(&[]);
    run_py(redis.port);
}

#[test]
fn redis_crate_script() {
    let srv = EngineServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = redis::Client::open(format!("redis://{}/", srv.addr)).expect("client");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let script = redis::Script::new(
            "local v = redis.call('incrby', KEYS[1], ARGV[1]) return {v, ARGV[2]}",
        );
        // Not loaded yet: the crate gets NOSCRIPT, loads it and retries.
        let r: (i64, String) = script
            .key("counter")
            .arg(5)
            .arg("tag")
            .invoke_async(&mut con)
            .await
            .expect("first invoke");
        assert_eq!(r, (5, "tag".to_string()));
        let r: (i64, String) = script
            .key("counter")
            .arg(2)
            .arg("again")
            .invoke_async(&mut con)
            .await
            .expect("cached invoke");
        assert_eq!(r, (7, "again".to_string()));
        let exists: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(script.get_hash())
            .query_async(&mut con)
            .await
            .expect("exists");
        assert_eq!(exists, vec![true]);
    });
}

fn config_set(c: &mut Conn, k: &str, v: &str) {
    assert_eq!(c.cmd(&["CONFIG", "SET", k, v]), Resp::Simple("OK".into()));
}

/// Waits until `c` gets BUSY for a PING (the script passed the threshold).
fn wait_busy(c: &mut Conn) -> Resp {
    let start = Instant::now();
    loop {
        let r = c.cmd(&["PING"]);
        if let Resp::Error(e) = &r {
            return Resp::Error(e.clone());
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never BUSY: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn busy_and_script_kill_across_connections() {
    let srv = EngineServer::start();
    let mut admin = Conn::connect(srv.addr);
    config_set(&mut admin, "busy-reply-threshold", "100");
    assert_eq!(
        admin.cmd(&["SCRIPT", "KILL"]),
        Resp::Error("NOTBUSY No scripts in execution right now.".into())
    );
    let mut runner = Conn::connect(srv.addr);
    runner.send(&[b"EVAL", b"while true do end", b"0"]);
    let busy = wait_busy(&mut admin);
    assert_eq!(
        busy,
        Resp::Error(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
                .into()
        )
    );
    // A new connection is accepted and gets BUSY too.
    let mut late = Conn::connect(srv.addr);
    assert!(matches!(late.cmd(&["GET", "k"]), Resp::Error(e) if e.starts_with("BUSY")));
    assert_eq!(
        admin.cmd(&["FUNCTION", "KILL"]),
        Resp::Error(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
                .into()
        )
    );
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Simple("OK".into()));
    match runner.read() {
        Resp::Error(e) => assert!(
            e.starts_with("ERR Script killed by user with SCRIPT KILL... script: "),
            "{e}"
        ),
        other => panic!("killed script replied {other:?}"),
    }
    // Served again, by every connection.
    assert_eq!(admin.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(late.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(runner.cmd(&["EVAL", "return 1", "0"]), Resp::Int(1));

    // A script that wrote cannot be killed.
    runner.send(&[
        b"EVAL",
        b"redis.call('set', 'x', 'y') local t = redis.call('time') while tonumber(redis.call('time')[1]) < t[1] + 2 do end return 'done'",
        b"0",
    ]);
    let _ = wait_busy(&mut admin);
    assert!(
        matches!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Error(e) if e.starts_with("UNKILLABLE"))
    );
    assert_eq!(runner.read(), Resp::Bulk(Some(b"done".to_vec())));
    assert_eq!(admin.cmd(&["GET", "x"]), Resp::Bulk(Some(b"y".to_vec())));
}

/// Waits until `c`'s server side closed: EOF, not a read timeout.
fn assert_closed(c: &mut Conn) {
    use std::io::Read;
    let stream = c.raw_stream();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected reply: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("still open: {e}"),
    }
}

/// Sends PING until the server answers PONG (a killed script takes a moment to end).
fn wait_pong(c: &mut Conn) {
    let start = Instant::now();
    loop {
        match c.cmd(&["PING"]) {
            Resp::Simple(s) if s == "PONG" => return,
            Resp::Error(e) if e.starts_with("BUSY") => {}
            other => panic!("PING: {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still BUSY");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Clients in CLIENT LIST.
fn client_count(c: &mut Conn) -> usize {
    match c.cmd(&["CLIENT", "LIST"]) {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).lines().count(),
        other => panic!("CLIENT LIST: {other:?}"),
    }
}

/// A client that goes away while its script is busy: the script is killed (or, when
/// it wrote, runs to its end), the client is unregistered, and the engine serves on.
#[test]
fn a_client_that_disconnects_during_its_busy_script() {
    let srv = EngineServer::start();
    let mut admin = Conn::connect(srv.addr);
    config_set(&mut admin, "busy-reply-threshold", "100");
    let mut runner = Conn::connect(srv.addr);
    runner.send(&[b"EVAL", b"while true do end", b"0"]);
    drop(runner);
    let _ = wait_busy(&mut admin);
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Simple("OK".into()));
    wait_pong(&mut admin);
    let start = Instant::now();
    while client_count(&mut admin) != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "runner still listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A script that wrote cannot be killed: it runs to its end, its writes stay.
    let mut runner = Conn::connect(srv.addr);
    runner.send(&[
        b"EVAL",
        b"redis.call('set', 'x', 'y') local t = redis.call('time') while tonumber(redis.call('time')[1]) < t[1] + 2 do end redis.call('set', 'z', 'w') return 1",
        b"0",
    ]);
    drop(runner);
    let _ = wait_busy(&mut admin);
    assert!(
        matches!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Error(e) if e.starts_with("UNKILLABLE"))
    );
    wait_pong(&mut admin);
    assert_eq!(admin.cmd(&["GET", "z"]), Resp::Bulk(Some(b"w".to_vec())));
    let start = Instant::now();
    while client_count(&mut admin) != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "runner still listed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Served as before, scripts included (no kill flag left over).
    assert_eq!(admin.cmd(&["EVAL", "return 1", "0"]), Resp::Int(1));
    assert_eq!(
        admin.cmd(&["SCRIPT", "KILL"]),
        Resp::Error("NOTBUSY No scripts in execution right now.".into())
    );
}

#[test]
fn shutdown_nosave_stops_a_busy_script() {
    let srv = EngineServer::start();
    let mut admin = Conn::connect(srv.addr);
    config_set(&mut admin, "lua-time-limit", "100");
    let mut runner = Conn::connect(srv.addr);
    runner.send(&[
        b"EVAL",
        b"redis.call('set', 'x', 'y') while true do end",
        b"0",
    ]);
    let _ = wait_busy(&mut admin);
    admin.send(&[b"SHUTDOWN", b"NOSAVE"]);
    assert!(
        admin.try_read().is_none(),
        "SHUTDOWN NOSAVE closes the connection"
    );
    // The script's own client is closed without a reply (as Redis, which exits).
    assert_closed(&mut runner);
    let start = Instant::now();
    while std::net::TcpStream::connect(srv.addr).is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "still listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SPIN_LIB: &str = "#!lua name=spin\n\
redis.register_function('spin', function() while true do end end)\n\
redis.register_function('spinw', function(keys) redis.call('set', keys[1], 'y') local t = redis.call('time') while tonumber(redis.call('time')[1]) < t[1] + 2 do end return 'done' end)";

const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// A busy function seen from other connections: BUSY with FUNCTION's wording,
/// FUNCTION STATS naming it, SCRIPT KILL refused, FUNCTION KILL ending it; a
/// function that wrote is unkillable. Run on the engine and on a real redis-server.
fn busy_function_kill(addr: std::net::SocketAddr) {
    let mut admin = Conn::connect(addr);
    config_set(&mut admin, "busy-reply-threshold", "100");
    assert_eq!(
        admin.cmd(&["FUNCTION", "LOAD", "REPLACE", SPIN_LIB]),
        Resp::Bulk(Some(b"spin".to_vec()))
    );
    assert_eq!(
        admin.cmd(&["FUNCTION", "KILL"]),
        Resp::Error("NOTBUSY No scripts in execution right now.".into())
    );
    let mut runner = Conn::connect(addr);
    runner.send(&[b"FCALL", b"spin", b"0"]);
    assert_eq!(wait_busy(&mut admin), Resp::Error(BUSY_FUNCTION.into()));
    match admin.cmd(&["FUNCTION", "STATS"]) {
        Resp::Array(Some(v)) => {
            assert_eq!(v[0], Resp::Bulk(Some(b"running_script".to_vec())));
            match &v[1] {
                Resp::Array(Some(r)) => {
                    assert_eq!(r[1], Resp::Bulk(Some(b"spin".to_vec())));
                    assert_eq!(
                        r[3],
                        Resp::Array(Some(vec![
                            Resp::Bulk(Some(b"FCALL".to_vec())),
                            Resp::Bulk(Some(b"spin".to_vec())),
                            Resp::Bulk(Some(b"0".to_vec())),
                        ]))
                    );
                    assert!(matches!(r[5], Resp::Int(ms) if ms >= 100), "{r:?}");
                }
                other => panic!("running_script is {other:?}"),
            }
        }
        other => panic!("FUNCTION STATS replied {other:?}"),
    }
    assert_eq!(
        admin.cmd(&["SCRIPT", "KILL"]),
        Resp::Error(BUSY_FUNCTION.into())
    );
    assert_eq!(admin.cmd(&["FUNCTION", "KILL"]), Resp::Simple("OK".into()));
    assert_eq!(
        runner.read(),
        Resp::Error(
            // Redis 7.0's text names SCRIPT KILL for a function too.
            "ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:2."
                .into()
        )
    );
    assert_eq!(admin.cmd(&["PING"]), Resp::Simple("PONG".into()));

    // An EVAL script is not FUNCTION KILL's, nor FUNCTION STATS's.
    runner.send(&[b"EVAL", b"while true do end", b"0"]);
    let busy_eval = wait_busy(&mut admin);
    assert_eq!(admin.cmd(&["FUNCTION", "STATS"]), busy_eval);
    assert!(
        matches!(admin.cmd(&["FUNCTION", "KILL"]), Resp::Error(e) if e.contains("You can only call SCRIPT KILL"))
    );
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Simple("OK".into()));
    assert!(
        matches!(runner.read(), Resp::Error(e) if e.starts_with("ERR Script killed by user with SCRIPT KILL..."))
    );

    // A function that wrote cannot be killed.
    runner.send(&[b"FCALL", b"spinw", b"1", b"x"]);
    let _ = wait_busy(&mut admin);
    assert!(
        matches!(admin.cmd(&["FUNCTION", "KILL"]), Resp::Error(e) if e.starts_with("UNKILLABLE"))
    );
    assert_eq!(runner.read(), Resp::Bulk(Some(b"done".to_vec())));
    assert_eq!(admin.cmd(&["GET", "x"]), Resp::Bulk(Some(b"y".to_vec())));
}

#[test]
fn busy_function_and_function_kill_on_the_engine() {
    let srv = EngineServer::start();
    busy_function_kill(srv.addr);
}

#[test]
fn busy_function_and_function_kill_on_redis() {
    let srv = RedisServer::start(&[]);
    busy_function_kill(srv.addr());
}

/// FCALL inside MULTI/EXEC: queued, run at EXEC in order with the other commands,
/// and a write function's effects inside the transaction.
#[test]
fn fcall_inside_multi() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    let lib = "#!lua name=tx\nredis.register_function('incrby2', function(keys) return redis.call('incrby', keys[1], 2) end)\nredis.register_function{function_name='get', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", lib]),
        Resp::Bulk(Some(b"tx".to_vec()))
    );
    assert_eq!(c.cmd(&["MULTI"]), Resp::Simple("OK".into()));
    for args in [
        &["SET", "n", "1"][..],
        &["FCALL", "incrby2", "1", "n"],
        &["FCALL_RO", "get", "1", "n"],
        &["FCALL_RO", "incrby2", "1", "n"],
        &["FCALL", "missing", "0"],
    ] {
        assert_eq!(c.cmd(args), Resp::Simple("QUEUED".into()));
    }
    assert_eq!(
        c.cmd(&["EXEC"]),
        Resp::Array(Some(vec![
            Resp::Simple("OK".into()),
            Resp::Int(3),
            Resp::Bulk(Some(b"3".to_vec())),
            Resp::Error("ERR Can not execute a script with write flag using *_ro command.".into()),
            Resp::Error("ERR Function not found".into()),
        ]))
    );
    // WATCH sees a function's write.
    assert_eq!(c.cmd(&["WATCH", "n"]), Resp::Simple("OK".into()));
    let mut other = Conn::connect(srv.addr);
    assert_eq!(other.cmd(&["FCALL", "incrby2", "1", "n"]), Resp::Int(5));
    assert_eq!(c.cmd(&["MULTI"]), Resp::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["FCALL", "incrby2", "1", "n"]),
        Resp::Simple("QUEUED".into())
    );
    assert_eq!(c.cmd(&["EXEC"]), Resp::Array(None));
}

/// The same with a single worker thread (`io-threads 1`): the busy script's thread
/// hands the worker over, so BUSY replies and SCRIPT KILL still get through.
#[test]
fn busy_and_script_kill_with_one_worker_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt
        .block_on(engine::Server::bind(engine::EngineConfig {
            listen: "127.0.0.1:0".into(),
            save: String::new(),
            ..Default::default()
        }))
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    rt.spawn(server.run(std::future::pending()));
    let mut admin = Conn::connect(addr);
    config_set(&mut admin, "busy-reply-threshold", "100");
    let mut runner = Conn::connect(addr);
    runner.send(&[b"EVAL", b"while true do end", b"0"]);
    assert!(matches!(wait_busy(&mut admin), Resp::Error(e) if e.starts_with("BUSY")));
    // A connection accepted meanwhile is served too.
    let mut late = Conn::connect(addr);
    assert!(matches!(late.cmd(&["GET", "k"]), Resp::Error(e) if e.starts_with("BUSY")));
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]), Resp::Simple("OK".into()));
    assert!(matches!(runner.read(), Resp::Error(e) if e.starts_with("ERR Script killed")));
    assert_eq!(late.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(runner.cmd(&["EVAL", "return 1", "0"]), Resp::Int(1));
}

/// INFO memory's scripting fields: the same names as Redis 7.0, in the same order,
/// with the counts of cached scripts, functions and libraries.
fn info_scripting_fields(addr: std::net::SocketAddr) -> Vec<String> {
    let mut c = Conn::connect(addr);
    assert!(matches!(
        c.cmd(&["SCRIPT", "LOAD", "return 1"]),
        Resp::Bulk(Some(_))
    ));
    let lib = "#!lua name=infolib\nredis.register_function('i1', function() return 1 end)\nredis.register_function('i2', function() return 2 end)";
    assert!(matches!(
        c.cmd(&["FUNCTION", "LOAD", "REPLACE", lib]),
        Resp::Bulk(Some(_))
    ));
    let Resp::Bulk(Some(text)) = c.cmd(&["INFO", "memory"]) else {
        panic!("INFO memory");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.contains("lua")
            || k.contains("vm_")
            || k.contains("script")
            || k.contains("function")
            || k.contains("librar")
        {
            // Byte counts differ between the servers; names and counts must not.
            let shown = if k.starts_with("number_of") {
                v.to_string()
            } else {
                "n".into()
            };
            out.push(format!("{k}:{shown}"));
        }
    }
    out
}

#[test]
fn info_memory_scripting_fields_match_redis() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let theirs = info_scripting_fields(redis.addr());
    assert!(
        theirs.contains(&"number_of_functions:2".to_string()),
        "{theirs:?}"
    );
    assert_eq!(info_scripting_fields(engine.addr), theirs);
}

/// The engine runs no explicit GC step per script call (Redis does, every 50): Lua's
/// incremental collector must keep the heap bounded by itself while scripts make
/// garbage.
#[test]
fn script_garbage_does_not_pile_up() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    let body = "local t = {} for i = 1, 50 do t[i] = ARGV[1] .. i end return #t";
    let Resp::Bulk(Some(sha)) = c.cmd(&["SCRIPT", "LOAD", body]) else {
        panic!("SCRIPT LOAD failed");
    };
    let sha = String::from_utf8(sha).expect("sha");
    let kb = |c: &mut Conn| match c.cmd(&["EVAL", "return collectgarbage('count')", "0"]) {
        Resp::Int(n) => n,
        other => panic!("collectgarbage: {other:?}"),
    };
    let start = kb(&mut c);
    // About 4 KB of garbage a call, 20 MB in all.
    for i in 0..5000 {
        let arg = format!("{i:0>64}");
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", "k", &arg]), Resp::Int(50));
    }
    let end = kb(&mut c);
    assert!(
        end < start * 3 + 1024,
        "Lua heap grew from {start} KB to {end} KB"
    );
}
