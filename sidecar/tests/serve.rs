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
