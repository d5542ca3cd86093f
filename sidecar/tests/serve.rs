//! The `coherent` binary as a user runs it: start, serve, admin endpoints, bad config,
//! graceful stop on SIGTERM.

mod common;

use common::{http_get, Resp, Sidecar};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn serves_resp_and_admin_endpoints() {
    let r = Sidecar::start_args(&[]);
    assert_eq!(Resp::connect(&r.engine).cmd(&["SET", "k", "v"]), "+OK");
    assert_eq!(http_get(&r.admin, "/healthz").0, 200);
    assert_eq!(http_get(&r.admin, "/readyz").0, 200);
    let (code, status) = http_get(&r.admin, "/status");
    assert_eq!(code, 200);
    assert!(status.contains("\"keys\":1"), "{status}");
    let (code, metrics) = http_get(&r.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("coherent_engine_keys 1"), "{metrics}");
    assert_eq!(http_get(&r.admin, "/nope").0, 404);
}

#[test]
fn sigterm_stops_gracefully() {
    let mut r = Sidecar::start_args(&[]);
    r.signal("-TERM");
    let st = r.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "exit status {st}");
    assert!(
        TcpStream::connect(&r.engine).is_err(),
        "engine still accepts"
    );
}

/// A config with the engine's files in `dir` and save points on.
fn persisted_config(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("coherent.toml");
    std::fs::write(
        &p,
        format!(
            "[engine]\nlisten = \"127.0.0.1:0\"\ndir = \"{}\"\nsave = \"3600 1\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            dir.display()
        ),
    )
    .expect("write config");
    p
}

#[test]
fn sigterm_saves_and_the_next_start_loads() {
    let dir = common::tmpdir("persist");
    let cfg = persisted_config(&dir);
    let mut r = Sidecar::start_persisted(&cfg);
    let mut c = Resp::connect(&r.engine);
    assert_eq!(c.cmd(&["SET", "k", "v"]), "+OK");
    assert_eq!(c.cmd(&["RPUSH", "l", "a", "b"]), ":2");
    assert_eq!(c.cmd(&["SELECT", "3"]), "+OK");
    assert_eq!(c.cmd(&["SET", "t", "x", "EX", "1000"]), "+OK");
    let st = r.stop();
    assert!(st.success(), "exit status {st}: {}", r.log());
    assert!(dir.join("dump.rdb").exists(), "{}", r.log());

    let r = Sidecar::start_persisted(&cfg);
    let mut c = Resp::connect(&r.engine);
    assert_eq!(c.cmd(&["GET", "k"]), "v");
    assert_eq!(c.cmd(&["LRANGE", "l", "0", "-1"]), "a\nb");
    assert_eq!(c.cmd(&["SELECT", "3"]), "+OK");
    let ttl: i64 = c.cmd(&["TTL", "t"])[1..].parse().expect("a TTL");
    assert!((990..=1000).contains(&ttl), "{ttl}");
    assert!(r.log().contains("persisted data loaded"), "{}", r.log());
}

#[test]
fn a_bad_rdb_file_stops_the_start_and_is_left_alone() {
    let dir = common::tmpdir("badrdb");
    let cfg = persisted_config(&dir);
    let mut r = Sidecar::start_persisted(&cfg);
    let mut c = Resp::connect(&r.engine);
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("key:{i}"), "some value"]), "+OK");
    }
    assert!(r.stop().success());
    let file = dir.join("dump.rdb");
    let good = std::fs::read(&file).expect("saved file");
    // Truncated, then one byte flipped (the checksum catches it), then garbage.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x55;
    for (what, bytes) in [
        ("truncated", good[..good.len() - 20].to_vec()),
        ("flipped", flipped),
        ("garbage", b"not an rdb file at all".to_vec()),
    ] {
        std::fs::write(&file, &bytes).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(&file.display().to_string()) && err.contains("cannot be loaded"),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read(&file).expect("still there"),
            bytes,
            "{what}: the file is left as it was"
        );
    }
}

/// `coherent serve --config <p>`, expected to fail at once: its stderr.
fn serve_fails(p: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--config"])
        .arg(p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("coherent-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[engine]\nlisten = \"127.0.0.1:0\"\ndatabasez = 3\n").expect("write");
    let err = serve_fails(&p);
    assert!(
        err.contains("bad.toml:3: [engine] key \"databasez\""),
        "{err}"
    );

    std::fs::write(&p, "[engine]\nlisten = \"not an address\"\n").expect("write");
    let err = serve_fails(&p);
    assert!(err.contains("listen"), "{err}");
}

/// A non-loopback IPv4 address of this machine (`hostname -I`); none is a failure.
fn host_ip() -> String {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .unwrap_or_else(|| panic!("no non-loopback IPv4 address in `hostname -I`: {text:?}"))
        .to_string()
}

/// Connects to `ip:port`, sends PING and reads until the server closes (or 3 s).
fn first_bytes(ip: &str, port: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(format!("{ip}:{port}")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let _ = s.write_all(b"PING\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn protected_mode_denies_other_hosts_with_redis_text() {
    let ip = host_ip();
    // The reference: redis-server 7.0 on all interfaces, no password.
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed"
    );
    let redis =
        connectors::testing::RedisServer::start(&["--bind", "* -::*"]).expect("start redis-server");
    let want = first_bytes(&ip, &redis.port().to_string());
    assert!(want.starts_with(b"-DENIED Redis is running in protected mode"));
    let s = Sidecar::engine_only(&["--listen", "0.0.0.0:0"]);
    let port = s.engine.rsplit(':').next().expect("port").to_string();
    // Byte for byte, then closed (read_to_end returned).
    assert_eq!(
        String::from_utf8_lossy(&first_bytes(&ip, &port)),
        String::from_utf8_lossy(&want)
    );
    // Loopback is served; the setting reads as in Redis.
    let mut local = Resp::connect(&format!("127.0.0.1:{port}"));
    assert_eq!(local.cmd(&["PING"]), "+PONG");
    assert_eq!(
        local.cmd(&["CONFIG", "GET", "protected-mode"]),
        "protected-mode\nyes"
    );
    // Turned off from loopback, as the text says: other hosts are served.
    assert_eq!(local.cmd(&["CONFIG", "SET", "protected-mode", "no"]), "+OK");
    assert_eq!(first_bytes(&ip, &port), b"+PONG\r\n");
    // With a password, protected mode does not apply: other hosts get NOAUTH.
    assert_eq!(
        local.cmd(&["CONFIG", "SET", "protected-mode", "yes"]),
        "+OK"
    );
    let p = Sidecar::engine_only(&["--listen", "0.0.0.0:0", "--requirepass", "s3cret"]);
    let pport = p.engine.rsplit(':').next().expect("port").to_string();
    let mut remote = Resp::connect(&format!("{ip}:{pport}"));
    assert!(remote.cmd(&["PING"]).starts_with("-NOAUTH"));
    assert_eq!(remote.cmd(&["AUTH", "s3cret"]), "+OK");
    assert_eq!(remote.cmd(&["PING"]), "+PONG");
}

/// CONFIG REWRITE (Redis Sentinel sends it at failover) writes the running settings
/// back into the file's [engine] section, keeping the user's comments and the other
/// sections; the next start runs with them.
#[test]
fn config_rewrite_updates_the_engine_section_in_place() {
    let dir = common::tmpdir("rewrite");
    let cfg = dir.join("coherent.toml");
    let text = format!(
        "# Coherent, hand-written\n[engine]\n# where clients connect\nlisten = \"127.0.0.1:0\"\ndir = \"{}\"\nsave = \"\"\nmaxmemory = \"64mb\" # the cache's budget\nhz = 10\n\n[admin]\n# health checks\nlisten = \"127.0.0.1:0\"\n",
        dir.display()
    );
    std::fs::write(&cfg, &text).expect("write config");
    let mut r = Sidecar::start_persisted(&cfg);
    let mut c = Resp::connect(&r.engine);
    assert_eq!(
        c.cmd(&[
            "CONFIG",
            "SET",
            "hz",
            "20",
            "maxmemory-policy",
            "allkeys-lru"
        ]),
        "+OK"
    );
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), "+OK");
    let after = std::fs::read_to_string(&cfg).expect("read config");
    assert!(
        after.starts_with("# Coherent, hand-written\n[engine]\n# where clients connect\nlisten = \"127.0.0.1:0\"\n"),
        "{after}"
    );
    assert!(
        after.contains("maxmemory = \"64mb\" # the cache's budget\nhz = 20\n"),
        "{after}"
    );
    assert!(
        after.contains("maxmemory_policy = \"allkeys-lru\"\n"),
        "{after}"
    );
    assert!(
        after.ends_with("\n[admin]\n# health checks\nlisten = \"127.0.0.1:0\"\n"),
        "{after}"
    );
    // What Sentinel relies on: the role REPLICAOF gives is written too, and taken
    // back by REPLICAOF NO ONE.
    assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", "1"]), "+OK");
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), "+OK");
    let replica = std::fs::read_to_string(&cfg).expect("read config");
    assert!(
        replica.contains("replicaof = \"127.0.0.1 1\"\n"),
        "{replica}"
    );
    assert_eq!(c.cmd(&["REPLICAOF", "NO", "ONE"]), "+OK");
    assert_eq!(c.cmd(&["CONFIG", "REWRITE"]), "+OK");
    assert!(r.stop().success(), "{}", r.log());
    let r = Sidecar::start_persisted(&cfg);
    let mut c = Resp::connect(&r.engine);
    assert!(c.cmd(&["ROLE"]).starts_with("master"), "{}", r.log());
    assert_eq!(c.cmd(&["CONFIG", "GET", "hz"]), "hz\n20");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory-policy"]),
        "maxmemory-policy\nallkeys-lru"
    );
}

/// Without a config file, CONFIG REWRITE answers as Redis does.
#[test]
fn config_rewrite_without_a_file_is_refused() {
    let r = Sidecar::start_args(&[]);
    assert_eq!(
        Resp::connect(&r.engine).cmd(&["CONFIG", "REWRITE"]),
        "-ERR The server is running without a config file"
    );
}
