//! The example service end to end: a private MariaDB (binlog on, as the sidecar needs
//! it), the engine in-process, the HTTP routes over a real socket. Checks that reads
//! are served from the cache after the first, and that writes (update-then-delete)
//! are visible at once through both keys, old and new email.

use cache_aside::{Cache, CacheClient, NearOptions, Options};
use coherent_example_users::{migrate, router, AppState};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct MariaDb {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl MariaDb {
    fn start() -> MariaDb {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("coherent-example-db-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let st = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db must be installed (apt-get install mariadb-server)");
        assert!(st.success());
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--server-id=1",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={port}"))
            .arg(format!("--log-bin={}", data.join("bin").display()))
            .args(["--binlog-format=ROW", "--binlog-row-image=FULL"])
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        MariaDb { port, child, dir }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.1 request; returns the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hit_the_cache_and_writes_invalidate_both_emails() {
    let db = MariaDb::start();
    let url = format!("mysql://root@127.0.0.1:{}/app", db.port);
    let migrations = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let pool = migrate(&url, &migrations).await.expect("migrate");

    let server = engine::Server::bind(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cache_url = format!("redis://{}", server.local_addr().unwrap());
    tokio::spawn(server.run(std::future::pending()));
    let cache = Cache::new(
        CacheClient::engine(&cache_url).await.unwrap(),
        Options {
            negative_ttl: Some(Duration::from_secs(30)),
            near: Some(NearOptions::default()),
            ..Options::default()
        },
    );
    let state = Arc::new(AppState {
        pool,
        cache: cache.clone(),
        ttl: Duration::from_secs(300),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let r = tokio::task::spawn_blocking(move || {
        vec![
            http(addr, "GET", "/healthz", None),
            // Negative caching of an email, then the user is created: the POST deletes it.
            http(addr, "GET", "/users/by-email/ada@example.com", None),
            http(
                addr,
                "POST",
                "/users",
                Some(r#"{"email":"ada@example.com","name":"Ada"}"#),
            ),
            http(addr, "GET", "/users/1", None), // miss -> load -> fill
            http(addr, "GET", "/users/1", None), // hit
            http(addr, "GET", "/users/by-email/ada@example.com", None),
            http(
                addr,
                "PUT",
                "/users/1",
                Some(r#"{"email":"ada@lovelace.org"}"#),
            ),
            http(addr, "GET", "/users/1", None),
            http(addr, "GET", "/users/by-email/ada@example.com", None),
            http(addr, "GET", "/users/by-email/ada@lovelace.org", None),
            http(addr, "GET", "/users/999", None),
            // A shared hit kept in the near cache, then a near hit.
            http(addr, "GET", "/users/1", None),
            http(addr, "GET", "/users/1", None),
            http(addr, "GET", "/cache/metrics", None),
        ]
    })
    .await
    .unwrap();
    let status: Vec<u16> = r.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        status,
        vec![200, 404, 201, 200, 200, 200, 200, 200, 404, 200, 404, 200, 200, 200],
        "{r:#?}"
    );
    assert!(r[3].1.contains("ada@example.com"));
    assert!(
        r[5].1.contains("\"id\":1"),
        "the negative entry was deleted by the POST"
    );
    assert!(
        r[7].1.contains("ada@lovelace.org"),
        "the PUT deleted user:1"
    );
    assert!(r[9].1.contains("ada@lovelace.org"));
    let m = cache.metrics().snapshot();
    assert!(m.hits >= 1, "{m:?}");
    assert_eq!(m.refused_fills, 0);
    assert!(r[12].1.contains("ada@lovelace.org"));
    assert!(m.near_hits >= 1, "{m:?}");
    assert!(r[13].1.contains("\"near_hits\""), "{}", r[13].1);
    println!("metrics: {}", r[13].1);
}
