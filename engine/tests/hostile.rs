//! Hostile input: malformed frames, random bytes, oversized requests. The server must
//! answer protocol errors with Redis's exact text, close only the offending connection,
//! keep serving everybody else, and never panic. Error texts and close behaviour are
//! checked against a private real redis-server fed the same bytes.

mod common;

use common::{read_reply, Conn, EngineServer, RedisServer, Resp};
use std::io::{BufReader, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

/// Panics raised on the engine's runtime threads. The engine runs in this process, and
/// tokio catches a panicking connection task, so a panic would otherwise go unnoticed.
static ENGINE_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_engine_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if name.starts_with("tokio-runtime-worker") {
                ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn assert_no_engine_panic() {
    assert_eq!(
        ENGINE_PANICS.load(Ordering::SeqCst),
        0,
        "the engine panicked (see stderr)"
    );
}

/// How an exchange ended after the last reply.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server closed the connection (EOF or reset).
    Closed,
    /// The connection stayed open (read timed out).
    Open,
}

/// Sends `bytes` (write errors ignored: the server may close mid-way) and collects
/// replies until the connection closes or stays silent for `quiet`.
fn exchange(addr: SocketAddr, bytes: &[u8], quiet: Duration) -> (Vec<Resp>, End) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(quiet)).expect("timeout");
    let _ = s.write_all(bytes);
    let mut rd = BufReader::new(s);
    let mut replies = Vec::new();
    loop {
        match read_reply(&mut rd) {
            Ok(r) => replies.push(r),
            Err(e) => {
                let end = match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => End::Open,
                    _ => End::Closed,
                };
                return (replies, end);
            }
        }
    }
}

fn err(text: &str) -> Resp {
    Resp::Error(text.into())
}

/// Each malformed request with the error Redis 7.0 answers before closing.
fn bad_frames() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut over_inline = b"SET k ".to_vec();
    over_inline.resize(64 * 1024 + 100, b'a');
    let mut over_mbulk = b"*".to_vec();
    over_mbulk.resize(64 * 1024 + 100, b'1');
    let mut over_bulk = b"*1\r\n$".to_vec();
    over_bulk.resize(64 * 1024 + 100, b'1');
    vec![
        (
            "non-numeric multibulk count",
            b"*x\r\n".to_vec(),
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            "multibulk count over INT_MAX",
            b"*2147483648\r\n".to_vec(),
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            "simple string instead of bulk",
            b"*1\r\n+GET\r\n".to_vec(),
            "ERR Protocol error: expected '$', got '+'",
        ),
        (
            "negative bulk length",
            b"*1\r\n$-5\r\n".to_vec(),
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "non-numeric bulk length",
            b"*1\r\n$abc\r\n".to_vec(),
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "bulk length one over proto-max-bulk-len",
            b"*1\r\n$536870913\r\n".to_vec(),
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "bulk length far over proto-max-bulk-len",
            b"*1\r\n$999999999999\r\n".to_vec(),
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "unbalanced quotes inline",
            b"SET \"a b\r\n".to_vec(),
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            "closing quote not followed by space",
            b"SET \"a\"b c\r\n".to_vec(),
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            "inline request over 64 KiB without newline",
            over_inline,
            "ERR Protocol error: too big inline request",
        ),
        (
            "multibulk count header over 64 KiB",
            over_mbulk,
            "ERR Protocol error: too big mbulk count string",
        ),
        (
            "bulk length header over 64 KiB",
            over_bulk,
            "ERR Protocol error: too big bulk count string",
        ),
    ]
}

#[test]
fn protocol_errors_match_redis_and_close() {
    count_engine_panics();
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    let quiet = Duration::from_secs(5);
    for (what, bytes, text) in bad_frames() {
        let want = (vec![err(text)], End::Closed);
        assert_eq!(
            exchange(redis.addr(), &bytes, quiet),
            want,
            "redis, {what}: the test's expectation is wrong"
        );
        assert_eq!(exchange(srv.addr, &bytes, quiet), want, "engine, {what}");
    }
    // The server is still fine.
    assert_eq!(
        Conn::connect(srv.addr).cmd(&["PING"]),
        Resp::Simple("PONG".into())
    );
    assert_no_engine_panic();
}

/// Large but legal headers: Redis waits for the rest instead of refusing them.
#[test]
fn large_legal_headers_wait_for_more() {
    count_engine_panics();
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    let quiet = Duration::from_millis(500);
    for bytes in [
        &b"*1048577\r\n"[..],
        b"*2147483647\r\n$3\r\nSET\r\n",
        b"*1\r\n$536870912\r\nabc",
    ] {
        let want = (vec![], End::Open);
        assert_eq!(exchange(redis.addr(), bytes, quiet), want, "redis");
        assert_eq!(exchange(srv.addr, bytes, quiet), want, "engine");
    }
    assert_no_engine_panic();
}

#[test]
fn replies_before_a_bad_frame_are_sent() {
    count_engine_panics();
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    let bytes = b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n*1\r\n+X\r\nPING\r\n";
    let want = (
        vec![
            Resp::Simple("PONG".into()),
            Resp::Simple("OK".into()),
            Resp::Bulk(Some(b"v".to_vec())),
            err("ERR Protocol error: expected '$', got '+'"),
        ],
        End::Closed,
    );
    let quiet = Duration::from_secs(5);
    assert_eq!(exchange(redis.addr(), bytes, quiet), want, "redis");
    assert_eq!(exchange(srv.addr, bytes, quiet), want, "engine");
    // The SET before the bad frame took effect.
    assert_eq!(
        Conn::connect(srv.addr).cmd(&["GET", "k"]),
        Resp::Bulk(Some(b"v".to_vec()))
    );
    assert_no_engine_panic();
}

#[test]
fn empty_multibulk_and_blank_lines_are_ignored() {
    count_engine_panics();
    let srv = EngineServer::start();
    let redis = RedisServer::start(&[]);
    // Nothing here gets a reply; the first reply is PING's, then ECHO's.
    let bytes = b"*0\r\n\r\n\n   \r\n*-1\r\n\t\r\nPING\r\n*0\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
    let want = (
        vec![
            Resp::Simple("PONG".into()),
            Resp::Bulk(Some(b"hi".to_vec())),
        ],
        End::Open,
    );
    let quiet = Duration::from_millis(500);
    assert_eq!(exchange(redis.addr(), bytes, quiet), want, "redis");
    assert_eq!(exchange(srv.addr, bytes, quiet), want, "engine");
    assert_no_engine_panic();
}

#[test]
fn requests_split_at_every_byte_are_parsed() {
    count_engine_panics();
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    let req = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nGET key\r\n";
    for b in req {
        c.send_raw(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(c.read(), Resp::Simple("OK".into()));
    assert_eq!(c.read(), Resp::Bulk(Some(b"va\r\nl".to_vec())));
    assert_no_engine_panic();
}

/// A client that does SET/GET and checks every reply until `stop` is set; returns how
/// many rounds it completed.
fn steady_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        let mut n = 0usize;
        while !stop.load(Ordering::SeqCst) || n < 10 {
            let (k, v) = (format!("steady:{}", n % 100), format!("value-{n}"));
            assert_eq!(
                c.cmd(&["SET", &k, &v]),
                Resp::Simple("OK".into()),
                "SET {k}"
            );
            assert_eq!(
                c.cmd(&["GET", &k]),
                Resp::Bulk(Some(v.into_bytes())),
                "GET {k}"
            );
            n += 1;
        }
        n
    })
}

/// Sends `junk` on its own connection while draining replies; asserts the server ends
/// the connection (after a protocol error, or after our EOF) instead of hanging.
/// Returns how many reply bytes came back.
fn send_junk(addr: SocketAddr, junk: Vec<u8>, what: String) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut rd = s.try_clone().expect("clone");
        // Drain replies concurrently, or a server that answers each junk line would
        // block on a full socket while we block on writing.
        let reader = std::thread::spawn(move || {
            let mut sink = Vec::new();
            let r = std::io::Read::read_to_end(&mut rd, &mut sink).map_err(|e| e.kind());
            (r, sink.len())
        });
        let mut w = s;
        for chunk in junk.chunks(64 * 1024) {
            if w.write_all(chunk).is_err() {
                break; // closed by the server after a protocol error
            }
        }
        let _ = w.shutdown(Shutdown::Write);
        let (r, n) = reader.join().expect("reader");
        assert!(
            !matches!(r, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{what}: the connection neither answered nor closed"
        );
        n
    })
}

/// 1 MiB of valid SET/GET frames on `junk:` keys with about one byte in 20,000 replaced:
/// reaches deeper into the multibulk parser than pure noise, which usually fails on
/// its first line.
fn mutated_frames(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024 * 1024 + 64);
    while out.len() < 1024 * 1024 {
        let k = format!("junk:{}", rng.u32(0..1000));
        if rng.bool() {
            let v = format!("v{}", rng.u64(..));
            write!(
                out,
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .expect("buffer");
        } else {
            write!(out, "*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).expect("buffer");
        }
    }
    for _ in 0..out.len() / 20_000 {
        let i = rng.usize(..out.len());
        out[i] = rng.u8(..);
    }
    out
}

#[test]
fn random_bytes_do_not_disturb_other_clients() {
    count_engine_panics();
    let srv = EngineServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let steady = steady_client(srv.addr, stop.clone());
    let mut noisy = Vec::new();
    for seed in 0..20u64 {
        let mut rng = fastrand::Rng::with_seed(0xC0FFEE + seed);
        let junk = if seed % 2 == 0 {
            let mut junk = vec![0u8; 1024 * 1024];
            rng.fill(&mut junk);
            junk
        } else {
            mutated_frames(&mut rng)
        };
        noisy.push(send_junk(srv.addr, junk, format!("junk connection {seed}")));
    }
    let mut replied = Vec::new();
    for t in noisy {
        replied.push(t.join().expect("noisy client"));
    }
    eprintln!("reply bytes per junk connection: {replied:?}");
    // The mutated streams start with valid frames, so they were parsed and answered
    // for a while before any protocol error.
    for (i, n) in replied.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        assert!(*n > 0, "mutated stream {i} got no reply at all");
    }
    stop.store(true, Ordering::SeqCst);
    let rounds = steady.join().expect("the steady client saw a wrong reply");
    assert!(rounds >= 10);
    let mut c = Conn::connect(srv.addr);
    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
    // The steady client's keys are intact (the junk only ever names `junk:` keys).
    for i in 0..100 {
        match c.cmd(&["GET", &format!("steady:{i}")]) {
            Resp::Bulk(Some(v)) if v.starts_with(b"value-") => {}
            other => panic!("steady:{i} = {other:?}"),
        }
    }
    assert_no_engine_panic();
}

/// Sends a SET whose 2 MiB value header is followed by 1.5 MiB of body, more than a
/// 1 MiB query buffer limit; returns whether the server closed the connection.
fn overflow_query_buffer(addr: SocketAddr) -> End {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2097152\r\n".to_vec();
    req.resize(req.len() + 1536 * 1024, b'x');
    for chunk in req.chunks(64 * 1024) {
        if s.write_all(chunk).is_err() {
            return End::Closed;
        }
    }
    let mut rd = BufReader::new(s);
    match read_reply(&mut rd) {
        Ok(r) => panic!("no reply expected when the query buffer overflows, got {r:?}"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => End::Open,
        Err(_) => End::Closed,
    }
}

#[test]
fn query_buffer_limit_disconnects_only_the_offender() {
    count_engine_panics();
    let srv = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        client_query_buffer_limit: 1024 * 1024,
        ..Default::default()
    });
    let redis = RedisServer::start(&["--client-query-buffer-limit", "1mb"]);
    assert_eq!(overflow_query_buffer(redis.addr()), End::Closed, "redis");

    let mut other = Conn::connect(srv.addr);
    assert_eq!(other.cmd(&["SET", "a", "1"]), Resp::Simple("OK".into()));
    let stop = Arc::new(AtomicBool::new(false));
    let steady = steady_client(srv.addr, stop.clone());
    assert_eq!(overflow_query_buffer(srv.addr), End::Closed, "engine");
    stop.store(true, Ordering::SeqCst);
    steady.join().expect("the steady client saw a wrong reply");
    // The connection opened before the overflow still works; the big SET never ran.
    assert_eq!(other.cmd(&["GET", "a"]), Resp::Bulk(Some(b"1".to_vec())));
    assert_eq!(other.cmd(&["GET", "big"]), Resp::Bulk(None));
    // A value under the limit is still accepted.
    let v = "y".repeat(512 * 1024);
    assert_eq!(other.cmd(&["SET", "mid", &v]), Resp::Simple("OK".into()));
    assert_eq!(other.cmd(&["GET", "mid"]), Resp::Bulk(Some(v.into_bytes())));
    assert_no_engine_panic();
}

/// Before AUTH, Redis refuses multibulk counts over 10 and bulk lengths over 16384
/// (a defence against unauthenticated memory use).
#[test]
fn unauthenticated_request_limits_match_redis() {
    count_engine_panics();
    let srv = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        requirepass: Some("pw".into()),
        ..Default::default()
    });
    let redis = RedisServer::start(&["--requirepass", "pw"]);
    let quiet = Duration::from_secs(5);
    for (bytes, text) in [
        (
            &b"*11\r\n"[..],
            "ERR Protocol error: unauthenticated multibulk length",
        ),
        (
            &b"*1\r\n$16385\r\n"[..],
            "ERR Protocol error: unauthenticated bulk length",
        ),
    ] {
        let want = (vec![err(text)], End::Closed);
        assert_eq!(exchange(redis.addr(), bytes, quiet), want, "redis");
        assert_eq!(exchange(srv.addr, bytes, quiet), want, "engine");
    }
    assert_no_engine_panic();
}

/// A negative random count of nearly 2^63 would make the server build that many
/// replies; the engine refuses it and keeps serving.
#[test]
fn absurd_random_counts_are_refused() {
    count_engine_panics();
    let srv = EngineServer::start();
    let mut c = common::Conn::connect(srv.addr);
    c.cmd(&["SADD", "s", "a"]);
    c.cmd(&["HSET", "h", "f", "v"]);
    c.cmd(&["ZADD", "z", "1", "m"]);
    for cmd in [
        ["SRANDMEMBER", "s", "-9223372036854775807"],
        ["HRANDFIELD", "h", "-9223372036854775807"],
        ["ZRANDMEMBER", "z", "-9223372036854775807"],
    ] {
        match c.cmd(&cmd) {
            common::Resp::Error(e) => assert!(e.starts_with("ERR value is out of range"), "{e}"),
            other => panic!("{cmd:?}: {other:?}"),
        }
    }
    // Reasonable repeats still work.
    match c.cmd(&["SRANDMEMBER", "s", "-5"]) {
        common::Resp::Array(Some(v)) => assert_eq!(v.len(), 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.cmd(&["PING"]), common::Resp::Simple("PONG".into()));
    assert_no_engine_panic();
}
