//! The `coherent` binary as a user runs it: start, serve, admin endpoints, bad config,
//! graceful stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running {
    child: Child,
    engine: String,
    admin: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn coherent");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let (mut engine, mut admin) = (String::new(), String::new());
    while engine.is_empty() {
        let line = lines.next().expect("coherent exited early").expect("read");
        if let Some(a) = line.strip_prefix("coherent: admin listening on ") {
            admin = a.to_string();
        }
        if let Some(a) = line.strip_prefix("coherent: engine listening on ") {
            engine = a.to_string();
        }
    }
    Running {
        child,
        engine,
        admin,
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    let code = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body)
}

fn resp(addr: &str, cmd: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect engine");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    line
}

#[test]
fn serves_resp_and_admin_endpoints() {
    let r = start(&[]);
    assert_eq!(resp(&r.engine, "SET k v"), "+OK\r\n");
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
    let mut r = start(&[]);
    let pid = r.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(ok.success());
    let mut code = None;
    for _ in 0..100 {
        if let Some(st) = r.child.try_wait().expect("wait") {
            code = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = code.expect("coherent did not stop within 5 s of SIGTERM");
    assert!(st.success(), "exit status {st}");
    assert!(
        TcpStream::connect(&r.engine).is_err(),
        "engine still accepts"
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("coherent-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("bad.toml");
    std::fs::write(&p, "[engine]\nlisten = \"127.0.0.1:0\"\ndatabasez = 3\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("databasez"),
        "{err}"
    );

    std::fs::write(&p, "[engine]\nlisten = \"not an address\"\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
}
