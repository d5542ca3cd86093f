//! OTLP export against a real HTTP receiver started here (a std `TcpListener` that
//! records every request): metrics arrive at /v1/metrics as protobuf, a binlog
//! transaction arrives at /v1/traces as a `transaction` span with its `deletes`, and an
//! endpoint where nothing listens only produces warnings.

use connectors::testing::{MariaDb, MariaDbOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

impl Request {
    fn has(&self, needle: &str) -> bool {
        self.body
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }
}

/// A tiny HTTP/1.1 server answering 200 to everything (keep-alive included).
struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = l.local_addr().expect("addr").to_string();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || serve(s, &g));
            }
        });
        Receiver { addr, got }
    }

    fn find(&self, f: impl Fn(&Request) -> bool) -> Option<Request> {
        self.got.lock().unwrap().iter().find(|r| f(r)).cloned()
    }

    fn paths(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
}

fn serve(s: TcpStream, got: &Mutex<Vec<Request>>) {
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut len, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().unwrap().push(Request {
            path,
            content_type,
            body,
        });
        let ok =
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if w.write_all(ok.as_bytes()).is_err() {
            return;
        }
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("coherent-otlp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

struct Sidecar {
    child: Child,
    engine: String,
    admin: String,
    stderr: PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    fn start(dir: &Path, config: &str) -> Sidecar {
        let path = dir.join("coherent.toml");
        std::fs::write(&path, config).expect("write config");
        let stderr = dir.join("coherent.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&path)
            .env("COHERENT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("log file"))
            .spawn()
            .expect("spawn coherent");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut engine, mut admin) = (String::new(), String::new());
        while engine.is_empty() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!(
                    "coherent exited early: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                ),
            };
            if let Some(a) = line.strip_prefix("coherent: admin listening on ") {
                admin = a.to_string();
            }
            if let Some(a) = line.strip_prefix("coherent: engine listening on ") {
                engine = a.to_string();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Sidecar {
            child,
            engine,
            admin,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "no exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

fn resp_ping(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect engine");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").expect("write");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn telemetry(endpoint: &str) -> String {
    format!("[telemetry]\notlp_endpoint = \"http://{endpoint}\"\nexport_interval = \"200ms\"\n")
}

#[test]
fn metrics_arrive_at_v1_metrics_as_protobuf() {
    let rx = Receiver::start();
    let dir = tmpdir("metrics");
    let mut sc = Sidecar::start(&dir, &telemetry(&rx.addr));
    let found = wait_until(Duration::from_secs(20), || {
        rx.find(|r| r.path == "/v1/metrics" && r.has("coherent_engine_keys"))
            .is_some()
    });
    assert!(found, "no metrics: {:?}\n{}", rx.paths(), sc.log());
    let r = rx
        .find(|r| r.path == "/v1/metrics" && r.has("coherent_engine_keys"))
        .unwrap();
    assert_eq!(r.content_type, "application/x-protobuf");
    assert!(r.has("coherent_engine_commands"), "{r:?}");
    // The resource names the service.
    assert!(r.has("service.name") && r.has("coherent"));
    // Prometheus keeps working next to OTLP.
    let (code, text) = http_get(&sc.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(text.contains("coherent_engine_keys"), "{text}");
    let before = rx.got.lock().unwrap().len();
    assert!(sc.stop().success(), "{}", sc.log());
    // Shutdown flushes: one more push after SIGTERM at the latest.
    assert!(rx.got.lock().unwrap().len() > before, "{}", sc.log());
}

#[test]
fn unreachable_endpoint_warns_and_keeps_serving() {
    // A port nobody listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tmpdir("down");
    let mut sc = Sidecar::start(&dir, &telemetry(&format!("127.0.0.1:{port}")));
    let warned = wait_until(Duration::from_secs(20), || {
        sc.log().contains("OTLP export failed")
    });
    assert!(warned, "{}", sc.log());
    assert_eq!(resp_ping(&sc.engine), "+PONG\r\n");
    let (code, text) = http_get(&sc.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(text.contains("coherent_engine_keys"), "{text}");
    assert!(sc.stop().success(), "{}", sc.log());
}

#[test]
fn a_binlog_transaction_arrives_as_a_span() {
    assert!(
        MariaDb::available(),
        "mariadbd is not installed: run scripts/install-deps.sh"
    );
    let db = MariaDb::start(MariaDbOptions::default()).expect("start private mariadbd");
    db.sql("CREATE DATABASE IF NOT EXISTS app; CREATE TABLE app.log (seq INT PRIMARY KEY)")
        .expect("schema");
    let rx = Receiver::start();
    let dir = tmpdir("traces");
    let config = format!(
        r#"[mysql]
url = "{url}"
server_id = 64011
start = "current"
heartbeat_secs = 1

[checkpoint]
store = "file"
path = "{cp}"
interval_ms = 100

[retry]
path = "{retry}"

[[rules]]
table = "app.log"
keys = ["log:{{seq}}"]

{tel}"#,
        url = db.url(),
        cp = dir.join("coherent.checkpoint").display(),
        retry = dir.join("coherent.retry").display(),
        tel = telemetry(&rx.addr),
    );
    let mut sc = Sidecar::start(&dir, &config);
    let ready = wait_until(Duration::from_secs(30), || {
        http_get(&sc.admin, "/readyz").0 == 200
    });
    assert!(ready, "not ready: {}", sc.log());
    db.sql("INSERT INTO app.log VALUES (1)").expect("insert");
    let found = wait_until(Duration::from_secs(30), || {
        rx.find(|r| r.path == "/v1/traces" && r.has("transaction"))
            .is_some()
    });
    assert!(found, "no span: {:?}\n{}", rx.paths(), sc.log());
    let r = rx
        .find(|r| r.path == "/v1/traces" && r.has("transaction"))
        .unwrap();
    assert_eq!(r.content_type, "application/x-protobuf");
    for part in ["binlog.position", "rows", "keys", "checkpoint"] {
        assert!(r.has(part), "{part} missing from the span");
    }
    // The delete batch is a child span (possibly exported in another request).
    assert!(
        rx.find(|r| r.path == "/v1/traces" && r.has("deletes"))
            .is_some(),
        "no deletes span"
    );
    // The histogram went out over OTLP too.
    let latency = wait_until(Duration::from_secs(10), || {
        rx.find(|r| r.path == "/v1/metrics" && r.has("coherent_delete_latency_seconds"))
            .is_some()
    });
    assert!(latency, "{}", sc.log());
    // And on /metrics, per target and outcome.
    let (_, text) = http_get(&sc.admin, "/metrics");
    assert!(
        text.lines()
            .any(|l| l.starts_with("coherent_delete_latency_seconds_count")
                && l.contains("outcome=\"ok\"")
                && l.contains("target=\"embedded\"")),
        "{text}"
    );
    assert!(sc.stop().success(), "{}", sc.log());
}
