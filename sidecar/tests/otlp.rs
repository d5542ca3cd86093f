//! OTLP export against a real HTTP receiver started here (a std `TcpListener` that
//! records every request): metrics arrive at /v1/metrics as protobuf, a binlog
//! transaction arrives at /v1/traces as a `transaction` span with its `deletes`, and an
//! endpoint where nothing listens only produces warnings.

mod common;

use common::{http_get, mariadb, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::testing::MariaDbOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// `coherent serve` with `config` written to `dir/coherent.toml`.
fn start(dir: &Path, config: &str) -> Sidecar {
    let path = dir.join("coherent.toml");
    std::fs::write(&path, config).expect("write config");
    Sidecar::start(&path)
}

fn telemetry(endpoint: &str) -> String {
    format!("[telemetry]\notlp_endpoint = \"http://{endpoint}\"\nexport_interval = \"200ms\"\n")
}

#[test]
fn metrics_arrive_at_v1_metrics_as_protobuf() {
    let rx = Receiver::start();
    let dir = tmpdir("metrics");
    let mut sc = start(&dir, &telemetry(&rx.addr));
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
    let mut sc = start(&dir, &telemetry(&format!("127.0.0.1:{port}")));
    let warned = wait_until(Duration::from_secs(20), || {
        sc.log().contains("OTLP export failed")
    });
    assert!(warned, "{}", sc.log());
    assert_eq!(Resp::connect(&sc.engine).cmd(&["PING"]), "+PONG");
    let (code, text) = http_get(&sc.admin, "/metrics");
    assert_eq!(code, 200);
    assert!(text.contains("coherent_engine_keys"), "{text}");
    assert!(sc.stop().success(), "{}", sc.log());
}

#[test]
fn a_binlog_transaction_arrives_as_a_span() {
    let db = mariadb(MariaDbOptions::default());
    db.sql("CREATE DATABASE IF NOT EXISTS app; CREATE TABLE app.log (seq INT PRIMARY KEY)")
        .expect("schema");
    let rx = Receiver::start();
    let dir = tmpdir("traces");
    let url = db.url();
    let rest = format!(
        "[[rules]]\ntable = \"app.log\"\nkeys = [\"log:{{seq}}\"]\n\n{}",
        telemetry(&rx.addr)
    );
    let config = ServeConfig {
        mysql: &url,
        server_id: 64011,
        rest: &rest,
        ..ServeConfig::default()
    }
    .write(&dir);
    let mut sc = Sidecar::start_ready(&config);
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
