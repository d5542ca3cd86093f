//! Test support: a private MariaDB with a row-based binlog, on its own port and data
//! directory, stopped by PID. Never touches a server already running on the machine.
//! Public behind the `testing` feature so the sidecar's tests can reuse it. Also a
//! builder of binlog rows for unit tests.

use crate::binlog::{Cell, Row};
use bytes::Bytes;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct MariaDbOptions {
    /// `--binlog-row-metadata=FULL`: column names in table map events.
    pub row_metadata_full: bool,
    /// Extra `mariadbd` arguments.
    pub extra_args: Vec<String>,
}

/// A running private `mariadbd`.
#[derive(Debug)]
pub struct MariaDb {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    opts: MariaDbOptions,
}

/// The replication user every test server has (REPLICATION SLAVE, REPLICATION
/// CLIENT, SELECT on everything).
pub const REPL_USER: &str = "repl";
/// Its password.
pub const REPL_PASSWORD: &str = "secret";

fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file());
    found
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl MariaDb {
    /// True when `mariadbd`, `mariadb-install-db` and `mariadb` are installed; panics
    /// (fails the test) naming the package when they are not.
    pub fn available() -> bool {
        required(
            "mariadb-server",
            find("mariadbd").is_some()
                && find("mariadb-install-db").is_some()
                && find("mariadb").is_some(),
        )
    }

    /// Initialises a data directory and starts the server; returns once it accepts
    /// queries and the replication user exists.
    pub fn start(opts: MariaDbOptions) -> io::Result<MariaDb> {
        let base = std::env::temp_dir().join(format!(
            "coherent-mariadb-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        // A private tmpdir: mariadbd deletes stray `#sql*` files in its tmpdir at
        // startup, which breaks another server bootstrapping in a shared /tmp.
        std::fs::create_dir_all(base.join("tmp"))?;
        let install = find("mariadb-install-db").ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "mariadb-install-db not installed")
        })?;
        let out = Command::new(install)
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
            ])
            .arg(format!("--datadir={}", base.join("data").display()))
            .arg(format!("--tmpdir={}", base.join("tmp").display()))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&base);
            return Err(io::Error::other(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut db = MariaDb {
            dir: base,
            port: free_port()?,
            child: None,
            opts,
        };
        db.spawn()?;
        db.sql(&format!(
            "CREATE USER {REPL_USER}@'%' IDENTIFIED BY '{REPL_PASSWORD}';\
             GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO {REPL_USER}@'%';"
        ))?;
        Ok(db)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin = find("mariadbd")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mariadbd not installed"))?;
        let d = &self.dir;
        let mut cmd = Command::new(bin);
        cmd.arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg("--server-id=1")
            .arg(format!(
                "--log-bin={}",
                d.join("data").join("bin").display()
            ))
            .arg("--binlog-format=ROW")
            .arg("--binlog-row-image=FULL")
            .arg("--character-set-server=utf8mb4")
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-log-file-size=16M")
            .arg("--skip-name-resolve")
            .arg(format!("--log-error={}", d.join("err.log").display()));
        if self.opts.row_metadata_full {
            cmd.arg("--binlog-row-metadata=FULL");
        }
        cmd.args(&self.opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn()?);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_sql("SELECT 1").is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    return Err(io::Error::other(format!(
                        "mariadbd exited with {status}; see {}",
                        self.dir.join("err.log").display()
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("mariadbd did not become ready in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory root (datadir is `data/` inside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A `mysql://` URL for the replication user.
    pub fn url(&self) -> String {
        format!(
            "mysql://{REPL_USER}:{REPL_PASSWORD}@127.0.0.1:{}",
            self.port
        )
    }

    fn try_sql(&self, sql: &str) -> io::Result<String> {
        let client = find("mariadb").ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "mariadb client not installed")
        })?;
        let out = Command::new(client)
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg("-e")
            .arg(sql)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "SQL failed: {}: {}",
                sql.chars().take(200).collect::<String>(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs SQL as root over the socket; returns the tab-separated output.
    pub fn sql(&self, sql: &str) -> io::Result<String> {
        self.try_sql(sql)
    }

    /// Stops the server cleanly (SIGTERM to its PID) and waits for it.
    pub fn stop(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    c.kill()?;
                    c.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Kills the server with SIGKILL (crash) and waits for it.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::SeqCst) << 32)
}

/// A private `redis-server` on a free port and its own directory, stopped by PID.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// True when `redis-server` and `redis-cli` are installed; panics (fails the
    /// test) naming the package when they are not.
    pub fn available() -> bool {
        required(
            "redis-server",
            find("redis-server").is_some() && find("redis-cli").is_some(),
        )
    }

    /// Starts a server (extra args such as `--cluster-enabled yes`).
    pub fn start(extra: &[&str]) -> io::Result<RedisServer> {
        let dir = std::env::temp_dir().join(format!(
            "coherent-redis-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut s = RedisServer {
            dir,
            port: free_port()?,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin = find("redis-server")
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "redis-server not installed"))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn()?);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .cli(&["PING"])
                .map(|o| o.trim() == "PONG")
                .unwrap_or(false)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other("redis-server did not answer PING in 10 s"))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p PORT args...`, returns stdout.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new(find("redis-cli").unwrap_or_else(|| "redis-cli".into()))
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGSTOP / SIGCONT: a server that stops answering without closing sockets.
    pub fn pause(&self, stop: bool) -> io::Result<()> {
        if let Some(c) = &self.child {
            Command::new("kill")
                .arg(if stop { "-STOP" } else { "-CONT" })
                .arg(c.id().to_string())
                .status()?;
        }
        Ok(())
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.pause(false);
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three private `redis-server` processes joined into a Redis Cluster.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, masters all.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes with `--cluster-enabled yes` and creates the cluster.
    pub fn start() -> io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--cluster-config-file",
                "nodes.conf",
            ])?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new(find("redis-cli").unwrap_or_else(|| "redis-cli".into()))
            .args(["--cluster", "create"])
            .args(&addrs)
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .map(|s| s.contains("cluster_state:ok"))
                    .unwrap_or(false)
            });
            if ok {
                return Ok(RedisCluster { nodes });
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("cluster did not reach cluster_state:ok"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed node URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

/// A private RabbitMQ node: its own node name, AMQP/dist/epmd ports and directories.
#[derive(Debug)]
pub struct RabbitMq {
    dir: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    node: String,
}

impl RabbitMq {
    /// True when `rabbitmq-server` is installed; panics (fails the test) naming the
    /// package when it is not.
    pub fn available() -> bool {
        required(
            "rabbitmq-server",
            find("rabbitmq-server").is_some() && find("rabbitmqctl").is_some(),
        )
    }

    /// Starts the node; returns once `await_startup` succeeded.
    pub fn start() -> io::Result<RabbitMq> {
        let dir = std::env::temp_dir().join(format!(
            "coherent-rabbit-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let port = free_port()?;
        let dist = free_port()?;
        let epmd = free_port()?;
        let node = format!("coherent{}x{}@localhost", std::process::id(), port);
        let d = |p: &str| dir.join(p).display().to_string();
        let path = format!(
            "/usr/lib/rabbitmq/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let env = vec![
            ("HOME".into(), home.display().to_string()),
            ("RABBITMQ_NODENAME".into(), node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT".into(), port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), dist.to_string()),
            ("ERL_EPMD_PORT".into(), epmd.to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
            ("RABBITMQ_LOG_BASE".into(), d("log")),
            ("RABBITMQ_PID_FILE".into(), d("rabbit.pid")),
            ("RABBITMQ_CONFIG_FILE".into(), d("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE".into(), d("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("enabled_plugins")),
            ("RABBITMQ_CONF_ENV_FILE".into(), d("rabbitmq-env.conf")),
            ("PATH".into(), path),
        ];
        let r = RabbitMq {
            dir,
            env,
            port,
            node,
        };
        r.boot()?;
        Ok(r)
    }

    fn cmd(&self, bin: &str) -> Command {
        // The scripts in /usr/lib/rabbitmq/bin, not Debian's /usr/sbin wrappers,
        // which switch user and drop the environment that makes the node private.
        let direct = Path::new("/usr/lib/rabbitmq/bin").join(bin);
        let exe = if direct.is_file() {
            direct
        } else {
            find(bin).unwrap_or_else(|| bin.into())
        };
        let mut c = Command::new(exe);
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn boot(&self) -> io::Result<()> {
        self.cmd("rabbitmq-server").arg("-detached").status()?;
        // await_startup fails at once while the node is not registered yet: poll.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ok = false;
        while !ok && Instant::now() < deadline {
            ok = self
                .cmd("rabbitmqctl")
                .args(["-n", &self.node, "--timeout", "60", "await_startup"])
                .status()?
                .success();
            if !ok {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if !ok {
            return Err(io::Error::other(format!(
                "rabbitmq did not start; logs in {}",
                self.dir.join("log").display()
            )));
        }
        Ok(())
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl list_queues name messages_ready messages_unacknowledged`, one
    /// line per queue (diagnostics).
    pub fn list_queues(&self) -> String {
        let out = self
            .cmd("rabbitmqctl")
            .args([
                "-n",
                &self.node,
                "-q",
                "list_queues",
                "name",
                "messages_ready",
            ])
            .arg("messages_unacknowledged")
            .stdout(Stdio::piped())
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', "; "))
            .unwrap_or_default()
    }

    /// Stops the node (its PID file's process; epmd too).
    pub fn stop(&self) -> io::Result<()> {
        self.cmd("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .status()?;
        Ok(())
    }

    /// Stops and starts the node again on the same ports and data.
    pub fn restart(&self) -> io::Result<()> {
        self.stop()?;
        // The node name stays registered in epmd for a moment after `stop`.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(2));
        self.boot().or_else(|_| {
            std::thread::sleep(Duration::from_secs(3));
            self.boot()
        })
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        let _ = self.stop();
        let epmd = self
            .env
            .iter()
            .find(|(k, _)| k == "ERL_EPMD_PORT")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        // epmd refuses `-kill` while the stopping node is still registered: retry
        // until its port closes, or it outlives the test.
        let port: u16 = epmd.parse().unwrap_or(0);
        for _ in 0..100 {
            let _ = self.cmd("epmd").args(["-port", &epmd, "-kill"]).status();
            if port == 0 || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts a server a test needs is installed. A missing server fails the test in
/// every run (with or without `CI`): a test that returned early would count as passed
/// on a machine that never ran it (`scripts/install-deps.sh` installs them all).
fn required(package: &str, present: bool) -> bool {
    assert!(
        present,
        "{package} is not installed; scripts/install-deps.sh installs it"
    );
    present
}

/// A binlog row of `columns` holding `cells` in order (`None` is SQL NULL), as the
/// binlog reader renders them: for unit tests of what is done with rows.
pub fn row(columns: &[&str], cells: &[Option<&str>]) -> Row {
    Row {
        columns: columns
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .into(),
        cells: cells
            .iter()
            .map(|v| match v {
                Some(s) => Cell::Value(Bytes::copy_from_slice(s.as_bytes())),
                None => Cell::Null,
            })
            .collect(),
    }
}
