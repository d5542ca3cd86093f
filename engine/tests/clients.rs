//! Real Redis clients against the engine: the `redis` crate (async, tokio), the
//! `redis-cli` binary (argument mode, `--pipe`, `-3`) and redis-py (through
//! `tests/clients/redis_py_check.py`). Where the output is deterministic it is also
//! compared with what the same client prints against a private real redis-server.

mod common;

use common::{EngineServer, RedisServer};
use futures_util::StreamExt;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A single-threaded runtime for the client side; the engine runs on its own runtime,
/// which must be created and dropped outside any async context.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

fn url(addr: SocketAddr) -> String {
    format!("redis://{addr}/")
}

/// Bounds every client call, so a server that never answers fails the test instead of
/// hanging it.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("no reply within 20 s")
}

// ---------------------------------------------------------------- redis crate

#[test]
fn redis_rs_get_set_del() {
    let srv = EngineServer::start();
    rt().block_on(async {
        let client = redis::Client::open(url(srv.addr)).expect("client");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let _: () = bounded(redis::cmd("SET").arg("k").arg("v").query_async(&mut c))
            .await
            .expect("SET");
        let v: Option<String> = bounded(redis::cmd("GET").arg("k").query_async(&mut c))
            .await
            .expect("GET");
        assert_eq!(v.as_deref(), Some("v"));
        // Binary-safe values round-trip unchanged.
        let bin: Vec<u8> = (0..=255u8).collect();
        let _: () = bounded(redis::cmd("SET").arg("bin").arg(&bin).query_async(&mut c))
            .await
            .expect("SET bin");
        let got: Vec<u8> = bounded(redis::cmd("GET").arg("bin").query_async(&mut c))
            .await
            .expect("GET bin");
        assert_eq!(got, bin);
        let n: i64 = bounded(
            redis::cmd("DEL")
                .arg("k")
                .arg("bin")
                .arg("missing")
                .query_async(&mut c),
        )
        .await
        .expect("DEL");
        assert_eq!(n, 2);
        let v: Option<String> = bounded(redis::cmd("GET").arg("k").query_async(&mut c))
            .await
            .expect("GET after DEL");
        assert_eq!(v, None);
        // A server error reaches the client as an error with Redis's code and text.
        let e = bounded(redis::cmd("GET").query_async::<Option<String>>(&mut c))
            .await
            .expect_err("GET without key must fail");
        assert_eq!(e.code(), Some("ERR"), "{e:?}");
        assert!(
            e.to_string()
                .contains("wrong number of arguments for 'get'"),
            "{e}"
        );
    });
}

#[test]
fn redis_rs_pipeline_of_1000() {
    let srv = EngineServer::start();
    rt().block_on(async {
        let client = redis::Client::open(url(srv.addr)).expect("client");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let mut p = redis::pipe();
        for i in 0..500 {
            p.cmd("SET").arg(format!("p:{i}")).arg(format!("v{i}"));
            p.cmd("GET").arg(format!("p:{i}"));
        }
        let replies: Vec<redis::Value> = bounded(p.query_async(&mut c)).await.expect("pipeline");
        assert_eq!(replies.len(), 1000);
        for (i, pair) in replies.chunks(2).enumerate() {
            assert_eq!(pair[0], redis::Value::Okay, "SET #{i}");
            assert_eq!(
                pair[1],
                redis::Value::BulkString(format!("v{i}").into_bytes()),
                "GET #{i}"
            );
        }
        let n: i64 = bounded(redis::cmd("DBSIZE").query_async(&mut c))
            .await
            .expect("DBSIZE");
        assert_eq!(n, 500);
    });
}

#[test]
fn redis_rs_auth_with_requirepass() {
    let srv = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        requirepass: Some("s3cret".into()),
        ..Default::default()
    });
    rt().block_on(async {
        // Without a password every command is refused with NOAUTH.
        let client = redis::Client::open(url(srv.addr)).expect("client");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let e = bounded(
            redis::cmd("GET")
                .arg("k")
                .query_async::<Option<String>>(&mut c),
        )
        .await
        .expect_err("unauthenticated GET must fail");
        assert_eq!(e.code(), Some("NOAUTH"), "{e:?}");

        // A wrong password in the URL makes the connection attempt fail.
        let bad = redis::Client::open(format!("redis://:wrong@{}/", srv.addr)).expect("client");
        let r = bounded(bad.get_multiplexed_async_connection()).await;
        let e = match r {
            Ok(_) => panic!("a wrong password must not connect"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), redis::ErrorKind::AuthenticationFailed, "{e:?}");

        // The right password (sent by the client as AUTH on connect) works.
        let good = redis::Client::open(format!("redis://:s3cret@{}/", srv.addr)).expect("client");
        let mut c = bounded(good.get_multiplexed_async_connection())
            .await
            .expect("connect with password");
        let _: () = bounded(redis::cmd("SET").arg("k").arg("v").query_async(&mut c))
            .await
            .expect("SET");
        let v: Option<String> = bounded(redis::cmd("GET").arg("k").query_async(&mut c))
            .await
            .expect("GET");
        assert_eq!(v.as_deref(), Some("v"));

        // Explicit AUTH on an unauthenticated connection.
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let ok: String = bounded(redis::cmd("AUTH").arg("s3cret").query_async(&mut c))
            .await
            .expect("AUTH");
        assert_eq!(ok, "OK");
        let v: Option<String> = bounded(redis::cmd("GET").arg("k").query_async(&mut c))
            .await
            .expect("GET after AUTH");
        assert_eq!(v.as_deref(), Some("v"));
    });
}

/// Needs SUBSCRIBE/PSUBSCRIBE/PUBLISH (pub/sub family).
#[test]
fn redis_rs_pubsub() {
    let srv = EngineServer::start();
    pubsub_check(srv.addr);
}

/// Needs INCR, LPUSH/LRANGE, HSET/HGETALL (strings, lists, hashes families).
#[test]
fn redis_rs_types() {
    let srv = EngineServer::start();
    types_check(srv.addr);
}

/// The family checks against real Redis, so their failures point at the engine.
#[test]
fn redis_rs_family_checks_pass_against_redis() {
    let redis = RedisServer::start(&[]);
    pubsub_check(redis.addr());
    types_check(redis.addr());
}

fn pubsub_check(addr: SocketAddr) {
    rt().block_on(async {
        let client = redis::Client::open(url(addr)).expect("client");
        let mut ps = bounded(client.get_async_pubsub()).await.expect("pubsub");
        bounded(ps.subscribe("news")).await.expect("SUBSCRIBE");
        bounded(ps.psubscribe("sport.*")).await.expect("PSUBSCRIBE");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let n: i64 = bounded(
            redis::cmd("PUBLISH")
                .arg("news")
                .arg("hello")
                .query_async(&mut c),
        )
        .await
        .expect("PUBLISH news");
        assert_eq!(n, 1);
        let n: i64 = bounded(
            redis::cmd("PUBLISH")
                .arg("sport.tennis")
                .arg("ace")
                .query_async(&mut c),
        )
        .await
        .expect("PUBLISH sport");
        assert_eq!(n, 1);
        let n: i64 = bounded(
            redis::cmd("PUBLISH")
                .arg("nobody")
                .arg("x")
                .query_async(&mut c),
        )
        .await
        .expect("PUBLISH nobody");
        assert_eq!(n, 0);
        let mut stream = ps.on_message();
        let m = bounded(stream.next()).await.expect("message");
        assert_eq!(m.get_channel_name(), "news");
        assert_eq!(m.get_payload::<String>().expect("payload"), "hello");
        assert!(!m.from_pattern());
        let m = bounded(stream.next()).await.expect("pmessage");
        assert_eq!(m.get_channel_name(), "sport.tennis");
        assert_eq!(m.get_payload::<String>().expect("payload"), "ace");
        assert_eq!(m.get_pattern::<String>().expect("pattern"), "sport.*");
    });
}

fn types_check(addr: SocketAddr) {
    rt().block_on(async {
        let client = redis::Client::open(url(addr)).expect("client");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let mut p = redis::pipe();
        p.cmd("INCR").arg("n").cmd("INCRBY").arg("n").arg(41);
        p.cmd("RPUSH").arg("l").arg("a").arg("b").arg("c");
        p.cmd("LRANGE").arg("l").arg(0).arg(-1);
        p.cmd("HSET").arg("h").arg("f").arg("v");
        p.cmd("HGETALL").arg("h");
        let (a, b, len, list, added, h): (
            i64,
            i64,
            i64,
            Vec<String>,
            i64,
            std::collections::HashMap<String, String>,
        ) = bounded(p.query_async(&mut c)).await.expect("pipeline");
        assert_eq!((a, b, len), (1, 42, 3));
        assert_eq!(list, ["a", "b", "c"]);
        assert_eq!(added, 1);
        assert_eq!(h.get("f").map(String::as_str), Some("v"));
    });
}

// ---------------------------------------------------------------- redis-cli

/// Runs `redis-cli -p PORT <args>` and returns (stdout, success).
fn cli(port: u16, args: &[&str]) -> (String, bool) {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

#[test]
fn redis_cli_argument_mode() {
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    let p = srv.addr.port();
    assert_eq!(cli(p, &["SET", "k", "hello world"]), ("OK\n".into(), true));
    assert_eq!(cli(p, &["GET", "k"]), ("hello world\n".into(), true));
    assert_eq!(cli(p, &["--no-raw", "GET", "k"]).0, "\"hello world\"\n");
    assert_eq!(cli(p, &["--no-raw", "GET", "missing"]).0, "(nil)\n");
    assert_eq!(cli(p, &["--no-raw", "DEL", "k", "x"]).0, "(integer) 1\n");
    assert_eq!(
        cli(p, &["--no-raw", "GET"]).0,
        "(error) ERR wrong number of arguments for 'get' command\n"
    );
    assert_eq!(
        cli(p, &["--no-raw", "NOSUCHCMD", "a"]).0,
        "(error) ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' \n"
    );
    // Whatever redis-cli prints for Redis it must print for the engine.
    let cases: &[&[&str]] = &[
        &["SET", "k", "v"],
        &["GET", "k"],
        &["--no-raw", "GET", "k"],
        &["--no-raw", "GET", "missing"],
        &["GET"],
        &["--no-raw", "GET"],
        &["--no-raw", "SET", "k"],
        &["--no-raw", "SELECT", "99"],
        &["--no-raw", "NOSUCHCMD", "a", "b"],
        &["--no-raw", "PING"],
        &["--no-raw", "ECHO", "a\nb"],
        &["--no-raw", "DBSIZE"],
        &["--no-raw", "-n", "3", "SET", "k", "v"],
        &["--no-raw", "-n", "3", "DBSIZE"],
        &["--no-raw", "DEL", "k", "k2"],
    ];
    for args in cases {
        assert_eq!(
            cli(p, args),
            cli(redis.port, args),
            "redis-cli {args:?}: engine (left) vs redis (right)"
        );
    }
}

/// `redis-cli --pipe` with `n` SET commands in RESP; returns redis-cli's output.
fn cli_pipe(port: u16, n: usize) -> (String, bool) {
    let mut input = Vec::with_capacity(n * 48);
    for i in 0..n {
        let (k, v) = (format!("key:{i}"), format!("value:{i}"));
        write!(
            input,
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        )
        .expect("buffer");
    }
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("redis-cli --pipe");
    writer.join().expect("writer");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

#[test]
fn redis_cli_pipe_mode() {
    let srv = EngineServer::start();
    let (out, ok) = cli_pipe(srv.addr.port(), 10_000);
    assert!(ok, "redis-cli --pipe failed: {out}");
    assert!(
        out.contains("errors: 0, replies: 10000"),
        "unexpected --pipe summary: {out}"
    );
    assert_eq!(cli(srv.addr.port(), &["DBSIZE"]).0, "10000\n");
    assert_eq!(cli(srv.addr.port(), &["GET", "key:9999"]).0, "value:9999\n");
}

#[test]
fn redis_cli_resp3_hello() {
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    // The `id` line differs between servers (connection counters); everything else must
    // be printed identically.
    let norm = |s: String| -> String {
        let mut out = Vec::new();
        let mut after_id = false;
        for l in s.lines() {
            let is_id = l == "id" || l.ends_with(") \"id\"");
            if l.contains("\"id\" =>") || after_id {
                out.push("<id>".to_string());
            } else {
                out.push(l.to_string());
            }
            after_id = is_id;
        }
        out.join("\n")
    };
    let (e, ok) = cli(srv.addr.port(), &["-3", "--no-raw", "HELLO", "3"]);
    assert!(ok);
    assert!(e.contains("1# \"server\" => \"redis\""), "{e}");
    assert!(e.contains("3# \"proto\" => (integer) 3"), "{e}");
    let (r, _) = cli(redis.port, &["-3", "--no-raw", "HELLO", "3"]);
    assert_eq!(norm(e), norm(r));
    for args in [
        &["-3", "--no-raw", "GET", "missing"][..],
        &["-3", "--no-raw", "SET", "k", "v"],
        &["-3", "--no-raw", "GET", "k"],
        &["-3", "--no-raw", "HELLO", "4"],
        &["-3", "--no-raw", "HELLO", "2"],
    ] {
        assert_eq!(
            norm(cli(srv.addr.port(), args).0),
            norm(cli(redis.port, args).0),
            "redis-cli {args:?}"
        );
    }
}

// ---------------------------------------------------------------- redis-py

/// Runs the redis-py check against `port`.
fn run_redis_py(port: u16, extra: &[&str]) {
    common::run_redis_py("redis_py_check.py", port, extra, "redis-py check: ok");
}

#[test]
fn redis_py_resp3() {
    let srv = EngineServer::start();
    run_redis_py(srv.addr.port(), &[]);
}

/// The script itself against real Redis, so a failure in `redis_py_resp3` points at the
/// engine and not at the script.
#[test]
fn redis_py_script_passes_against_redis() {
    let redis = RedisServer::start(&[]);
    run_redis_py(redis.port, &["--needs-families"]);
}

/// redis-py in RESP3 over counters, lists, hashes, sets, sorted sets, TTLs,
/// MULTI/EXEC and pub/sub (the script's `--needs-families` part).
#[test]
fn redis_py_resp3_types_pubsub() {
    let srv = EngineServer::start();
    run_redis_py(srv.addr.port(), &["--needs-families"]);
}

// ---------------------------------------------------------------- streams

fn reliable_queue_example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/reliable-queue/reliable_queue.py")
}

/// Runs the reliable-queue example (redis-py: producers, a consumer group, a crashed
/// worker whose jobs another claims with XAUTOCLAIM) against `port`.
fn run_reliable_queue(port: u16, protocol: &str) -> String {
    let out = Command::new("python3")
        .arg(reliable_queue_example())
        .arg("--port")
        .arg(port.to_string())
        .arg("--protocol")
        .arg(protocol)
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the reliable queue example failed (exit {:?}):\n{text}",
        out.status.code()
    );
    text
}

#[test]
fn reliable_queue_example_loses_nothing_on_the_engine() {
    let srv = EngineServer::start();
    // RESP2, then RESP3 (maps where RESP2 has flat arrays).
    for protocol in ["2", "3"] {
        let text = run_reliable_queue(srv.addr.port(), protocol);
        assert!(
            text.contains("20 reclaimed from the crashed worker by XAUTOCLAIM, none lost"),
            "RESP{protocol}: {text}"
        );
    }
}

/// The example against real Redis, so a failure on the engine points at the engine.
#[test]
fn reliable_queue_example_passes_against_redis() {
    let redis = RedisServer::start(&[]);
    for protocol in ["2", "3"] {
        let text = run_reliable_queue(redis.port, protocol);
        assert!(text.contains("none lost"), "RESP{protocol}: {text}");
    }
}

/// The `redis` crate driving streams and a consumer group: XADD with auto IDs from
/// several tasks, XREADGROUP with BLOCK woken by a later XADD, XACK, XPENDING and
/// XAUTOCLAIM, with the crate's own reply parsing.
#[test]
fn redis_rs_streams_and_groups() {
    let srv = EngineServer::start();
    rt().block_on(async {
        let client = redis::Client::open(url(srv.addr)).expect("client");
        let mut c = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let ok: String = bounded(
            redis::cmd("XGROUP")
                .arg(&["CREATE", "q", "g", "$", "MKSTREAM"])
                .query_async(&mut c),
        )
        .await
        .expect("XGROUP CREATE");
        assert_eq!(ok, "OK");
        let mut ids = Vec::new();
        for i in 0..50 {
            let id: String = bounded(
                redis::cmd("XADD")
                    .arg("q")
                    .arg("*")
                    .arg("n")
                    .arg(i)
                    .query_async(&mut c),
            )
            .await
            .expect("XADD");
            ids.push(id);
        }
        let mut sorted = ids.clone();
        sorted.sort_by_key(|id| {
            let (ms, seq) = id.split_once('-').expect("ms-seq");
            (
                ms.parse::<u64>().expect("ms"),
                seq.parse::<u64>().expect("seq"),
            )
        });
        assert_eq!(ids, sorted, "auto IDs grow");
        type Read = Vec<(String, Vec<(String, Vec<(String, String)>)>)>;
        let got: Read = bounded(
            redis::cmd("XREADGROUP")
                .arg(&["GROUP", "g", "a", "COUNT", "30", "STREAMS", "q", ">"])
                .query_async(&mut c),
        )
        .await
        .expect("XREADGROUP");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 30);
        assert_eq!(got[0].1[0].1, vec![("n".to_string(), "0".to_string())]);
        let acked: i64 = bounded(
            redis::cmd("XACK")
                .arg("q")
                .arg("g")
                .arg(&ids[..10])
                .query_async(&mut c),
        )
        .await
        .expect("XACK");
        assert_eq!(acked, 10);
        let (count, first, last, per): (i64, String, String, Vec<(String, String)>) =
            bounded(redis::cmd("XPENDING").arg("q").arg("g").query_async(&mut c))
                .await
                .expect("XPENDING");
        assert_eq!((count, first, last), (20, ids[10].clone(), ids[29].clone()));
        assert_eq!(per, vec![("a".to_string(), "20".to_string())]);
        let (cursor, claimed, deleted): (String, Vec<String>, Vec<String>) = bounded(
            redis::cmd("XAUTOCLAIM")
                .arg(&["q", "g", "b", "0", "0", "COUNT", "5", "JUSTID"])
                .query_async(&mut c),
        )
        .await
        .expect("XAUTOCLAIM");
        assert_eq!(claimed, ids[10..15].to_vec());
        assert_eq!(cursor, ids[15]);
        assert!(deleted.is_empty());

        // A blocked read on its own connection, woken by an XADD on another.
        let mut waiter = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let wait = tokio::spawn(async move {
            let r: Read = redis::cmd("XREADGROUP")
                .arg(&["GROUP", "g", "w", "BLOCK", "0", "STREAMS", "q", ">"])
                .query_async(&mut waiter)
                .await
                .expect("blocked XREADGROUP");
            r
        });
        // The other 20 entries are served at once; then the reader parks.
        let first = bounded(wait).await.expect("join");
        assert_eq!(first[0].1.len(), 20);
        let mut waiter = bounded(client.get_multiplexed_async_connection())
            .await
            .expect("connect");
        let wait = tokio::spawn(async move {
            let r: Read = redis::cmd("XREADGROUP")
                .arg(&["GROUP", "g", "w", "BLOCK", "0", "STREAMS", "q", ">"])
                .query_async(&mut waiter)
                .await
                .expect("blocked XREADGROUP");
            r
        });
        bounded(async {
            while srv.engine.stats().blocked_clients == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let id: String = bounded(
            redis::cmd("XADD")
                .arg(&["q", "*", "late", "1"])
                .query_async(&mut c),
        )
        .await
        .expect("XADD");
        let woken = bounded(wait).await.expect("join");
        assert_eq!(woken[0].1[0].0, id);
        assert_eq!(woken[0].1[0].1, vec![("late".to_string(), "1".to_string())]);
    });
}
