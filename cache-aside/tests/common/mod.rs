//! Test servers: the engine in-process on a free port, and a private redis-server on
//! its own port and directory, stopped by PID when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the engine on 127.0.0.1:0 in the current runtime; returns its URL and handle.
pub async fn start_engine() -> (String, engine::Engine) {
    let server = engine::Server::bind(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await
    .expect("bind engine");
    let addr = server.local_addr().expect("addr");
    let eng = server.engine();
    tokio::spawn(server.run(std::future::pending()));
    (format!("redis://{addr}"), eng)
}

/// The servers the library's flows run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The engine, with its native leases (`CacheClient::engine`).
    Engine,
    /// A private redis-server, with the lease scripts (`CacheClient::redis`).
    Redis,
    /// The engine driven as a Redis (`CacheClient::redis(engine_url)`): the lease
    /// scripts run on the engine's Lua through EVALSHA.
    EngineScripts,
}

/// Every kind, for tests that run one flow on each.
pub const KINDS: [Kind; 3] = [Kind::Engine, Kind::Redis, Kind::EngineScripts];
/// The kinds that run the lease scripts (the library's Redis path).
pub const SCRIPT_KINDS: [Kind; 2] = [Kind::Redis, Kind::EngineScripts];

impl Kind {
    /// A short name for test output and key prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Engine => "engine",
            Kind::Redis => "redis",
            Kind::EngineScripts => "engine-scripts",
        }
    }
}

/// A running server of one [`Kind`]; stopped when dropped.
pub struct Backend {
    pub kind: Kind,
    pub url: String,
    /// The in-process engine (Engine and EngineScripts).
    pub engine: Option<engine::Engine>,
    redis: Option<RedisServer>,
}

impl Backend {
    /// Starts a server of `kind`: the engine in this runtime, or a redis-server.
    pub async fn start(kind: Kind) -> Backend {
        match kind {
            Kind::Redis => {
                let srv = RedisServer::start();
                Backend {
                    kind,
                    url: srv.url(),
                    engine: None,
                    redis: Some(srv),
                }
            }
            Kind::Engine | Kind::EngineScripts => {
                let (url, eng) = start_engine().await;
                Backend {
                    kind,
                    url,
                    engine: Some(eng),
                    redis: None,
                }
            }
        }
    }

    /// A new client of this kind's path (its own connection).
    pub async fn client(&self) -> cache_aside::CacheClient {
        connect(self.kind, &self.url).await
    }

    /// A connector that makes new clients, for tests that open many.
    pub fn connector(&self) -> impl Fn() -> ClientFut {
        let (kind, url) = (self.kind, self.url.clone());
        move || {
            let url = url.clone();
            Box::pin(async move { connect(kind, &url).await })
        }
    }
}

impl Backend {
    /// Calls of `command` (lower case) in the server's INFO commandstats, 0 if absent.
    pub async fn calls(&self, command: &str) -> u64 {
        let mut c = redis::Client::open(self.url.as_str())
            .expect("url")
            .get_multiplexed_tokio_connection()
            .await
            .expect("connect");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .expect("INFO commandstats");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map(|n| n.parse().expect("calls"))
            .unwrap_or(0)
    }

    /// Asserts that the flow went down this kind's path: native LEASEGET on the
    /// engine, the lease scripts through EVALSHA otherwise (so an engine-scripts run
    /// can't pass by reaching the native commands).
    pub async fn assert_path_taken(&self) {
        let (evalsha, leaseget) = (self.calls("evalsha").await, self.calls("leaseget").await);
        match self.kind {
            Kind::Engine => assert!(evalsha == 0 && leaseget > 0, "{evalsha} {leaseget}"),
            Kind::Redis | Kind::EngineScripts => assert!(
                evalsha > 0 && leaseget == 0,
                "{}: evalsha {evalsha}, leaseget {leaseget}",
                self.kind.name()
            ),
        }
    }
}

/// A boxed future of a new client.
pub type ClientFut =
    std::pin::Pin<Box<dyn std::future::Future<Output = cache_aside::CacheClient> + Send>>;

/// Connects a client of `kind`'s path to `url`.
pub async fn connect(kind: Kind, url: &str) -> cache_aside::CacheClient {
    let r = match kind {
        Kind::Engine => cache_aside::CacheClient::engine(url).await,
        Kind::Redis | Kind::EngineScripts => cache_aside::CacheClient::redis(url).await,
    };
    r.unwrap_or_else(|e| panic!("{}: connect {url}: {e}", kind.name()))
}

/// A private redis-server.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        Self::start_on(port, &[])
    }

    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "coherent-cache-aside-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { port, child, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `n` primaries, each a private redis-server.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .expect("free port");
                RedisServer::start_on(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .arg("--cluster-yes")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Wait until every node reports cluster_state:ok.
        let deadline = Instant::now() + Duration::from_secs(20);
        for s in &nodes {
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &s.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster never became ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|s| s.url()).collect()
    }
}
