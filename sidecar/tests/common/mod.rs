//! The harness the sidecar's integration tests share: the `coherent` binary started
//! on free ports (addresses read from its "coherent: ... listening on" lines, killed
//! and reaped by PID when dropped), a private MariaDB, a tiny HTTP GET and RESP
//! client, polling, the example schema, and a config for the binlog pipeline. The
//! offline audit's part is in [`audit`].
// Each test file uses its own part of the harness.
#![allow(dead_code)]

pub mod audit;

use connectors::testing::{MariaDb, MariaDbOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `coherent serve`.
pub struct Sidecar {
    /// The process (killed and reaped on drop).
    pub child: Child,
    /// The engine's RESP address, `host:port`.
    pub engine: String,
    /// The admin HTTP address, `host:port` (empty when the admin listener is off).
    pub admin: String,
    /// Where its stderr goes, when kept.
    stderr: Option<PathBuf>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sidecar {
    /// `coherent serve --config <config>` on free ports, logging at info to a file
    /// next to the config (a new one each start, so a restarted sidecar's log holds
    /// only its own lines).
    pub fn start(config: &Path) -> Sidecar {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let stderr = config.with_extension(format!("{n}.log"));
        let log = std::fs::File::create(&stderr).expect("log file");
        let mut cmd = serve_command();
        cmd.arg("--config")
            .arg(config)
            .env("COHERENT_LOG", "info")
            .stderr(log);
        Self::spawn(cmd, Some(stderr))
    }

    /// [`Sidecar::start`] with environment variables `env` added.
    pub fn start_env(config: &Path, env: &[(String, String)]) -> Sidecar {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let stderr = config.with_extension(format!("env{n}.log"));
        let log = std::fs::File::create(&stderr).expect("log file");
        let mut cmd = serve_command();
        cmd.arg("--config")
            .arg(config)
            .env("COHERENT_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(log);
        Self::spawn(cmd, Some(stderr))
    }

    /// `coherent serve` on free ports with `extra` arguments and no config file;
    /// stderr is discarded.
    pub fn start_args(extra: &[&str]) -> Sidecar {
        let mut cmd = serve_command();
        cmd.args(extra).stderr(Stdio::null());
        Self::spawn(cmd, None)
    }

    /// [`Sidecar::start`] with the config's own `save` (the harness otherwise turns
    /// save points off): for tests of persistence.
    pub fn start_persisted(config: &Path) -> Sidecar {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let stderr = config.with_extension(format!("p{n}.log"));
        let log = std::fs::File::create(&stderr).expect("log file");
        let mut cmd = serve_command();
        cmd.env_remove(NO_SAVE.0)
            .arg("--config")
            .arg(config)
            .env("COHERENT_LOG", "info")
            .stderr(log);
        Self::spawn(cmd, Some(stderr))
    }

    /// [`Sidecar::start`], then waits (30 s at most) until it is ready.
    pub fn start_ready(config: &Path) -> Sidecar {
        let s = Self::start(config);
        s.wait_ready(Duration::from_secs(30));
        s
    }

    /// `coherent serve` with the admin listener off and `args` (`--listen` among
    /// them), no config file; stderr is discarded.
    pub fn engine_only(args: &[&str]) -> Sidecar {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coherent"));
        cmd.env(NO_SAVE.0, NO_SAVE.1);
        cmd.args(["serve", "--admin-listen", ""])
            .args(args)
            .stderr(Stdio::null());
        Self::spawn(cmd, None)
    }

    /// Spawns and reads the listening lines; stdout keeps being drained afterwards so
    /// the child never blocks on a full pipe.
    fn spawn(mut cmd: Command, stderr: Option<PathBuf>) -> Sidecar {
        let child = cmd.stdout(Stdio::piped()).spawn().expect("spawn coherent");
        // Owned by the guard first, so it is killed and reaped even if reading fails.
        let mut sc = Sidecar {
            child,
            engine: String::new(),
            admin: String::new(),
            stderr,
        };
        let out = sc.child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        while sc.engine.is_empty() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("coherent exited early: {}", sc.log()),
            };
            if let Some(a) = line.strip_prefix("coherent: admin listening on ") {
                sc.admin = a.to_string();
            }
            if let Some(a) = line.strip_prefix("coherent: engine listening on ") {
                sc.engine = a.to_string();
            }
        }
        std::thread::spawn(move || for _ in lines {});
        sc
    }

    /// Its stderr so far ("" when discarded).
    pub fn log(&self) -> String {
        self.stderr
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// GET on the admin listener.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.admin, path)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, within: Duration) {
        let ok = wait_until(within, || self.get("/readyz").0 == 200);
        assert!(ok, "not ready: {:?}\n{}", self.get("/readyz"), self.log());
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "coherent did not exit within {within:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`-TERM`, `-KILL`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(Duration::from_secs(20))
    }
}

/// No save points: a test's SIGTERM must not leave a `dump.rdb` in the working
/// directory for the next test to load (tests of persistence remove the variable).
const NO_SAVE: (&str, &str) = ("COHERENT_ENGINE_SAVE", "");

fn serve_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coherent"));
    cmd.env(NO_SAVE.0, NO_SAVE.1);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd
}

/// A config for `coherent serve` running the binlog pipeline: engine and admin on free
/// ports, the binlog from the server's current position with 1 s heartbeats, the
/// checkpoint (saved every 100 ms) and the retry queue as files next to the config.
#[derive(Default)]
pub struct ServeConfig<'a> {
    /// `[mysql] url`.
    pub mysql: &'a str,
    /// `[mysql] server_id`.
    pub server_id: u32,
    /// More `[engine]` lines.
    pub engine: &'a str,
    /// More `[mysql]` lines.
    pub mysql_more: &'a str,
    /// More `[admin]` lines.
    pub admin: &'a str,
    /// The `[target]` lines; "" leaves the section out (the embedded engine).
    pub target: &'a str,
    /// More `[retry]` lines.
    pub retry: &'a str,
    /// The sections that follow (`[audit]`, `[telemetry]`, `[[rules]]`).
    pub rest: &'a str,
}

impl ServeConfig<'_> {
    /// Writes it to `dir/coherent.toml` (checkpoint `dir/coherent.checkpoint`, retry
    /// queue `dir/coherent.retry`); its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let target = match self.target {
            "" => String::new(),
            t => format!("[target]\n{t}\n\n"),
        };
        let p = dir.join("coherent.toml");
        std::fs::write(
            &p,
            format!(
                r#"[engine]
listen = "127.0.0.1:0"
{engine}

[admin]
listen = "127.0.0.1:0"
{admin}

[mysql]
url = "{url}"
server_id = {server_id}
start = "current"
heartbeat_secs = 1
{mysql_more}

[checkpoint]
store = "file"
path = "{cp}"
interval_ms = 100

{target}[retry]
path = "{retry}"
{retry_more}
{rest}"#,
                engine = self.engine,
                admin = self.admin,
                url = self.mysql,
                server_id = self.server_id,
                mysql_more = self.mysql_more,
                cp = dir.join("coherent.checkpoint").display(),
                retry = dir.join("coherent.retry").display(),
                retry_more = self.retry,
                rest = self.rest,
            ),
        )
        .expect("write config");
        p
    }
}

/// Applies the example schema from migrations/ (in file name order).
pub fn migrations(db: &MariaDb) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("migrations/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        db.sql(&std::fs::read_to_string(&f).expect("read migration"))
            .expect("apply migration");
    }
}

/// A private mariadbd (own port and datadir, stopped by PID); missing is a failure.
pub fn mariadb(opts: MariaDbOptions) -> MariaDb {
    assert!(
        MariaDb::available(),
        "mariadbd is not installed: run scripts/install-deps.sh"
    );
    MariaDb::start(opts).expect("start private mariadbd")
}

/// A fresh, empty temporary directory for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("coherent-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// Polls `f` every 50 ms until it holds or `within` passed; the last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// One HTTP/1.1 GET: (status, body); (0, "") when nothing answers.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// A minimal RESP client: commands as arrays of bulk strings, replies as text.
pub struct Resp {
    r: BufReader<TcpStream>,
}

impl Resp {
    /// Connects to the engine.
    pub fn connect(addr: &str) -> Resp {
        let s = TcpStream::connect(addr).expect("connect engine");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        Resp {
            r: BufReader::new(s),
        }
    }

    /// Sends one command; the reply as text: `+OK`, `:1`, `(nil)`, a bulk string's
    /// content, an array's items one per line.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.r.get_mut().write_all(out.as_bytes()).expect("write");
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read");
        let line = line.trim_end().to_string();
        match line.as_bytes().first() {
            Some(b'$') => {
                let n: i64 = line[1..].parse().expect("bulk len");
                if n < 0 {
                    return "(nil)".into();
                }
                let mut buf = vec![0; n as usize + 2];
                self.r.read_exact(&mut buf).expect("bulk");
                String::from_utf8_lossy(&buf[..n as usize]).into_owned()
            }
            Some(b'*') => {
                let n: i64 = line[1..].parse().expect("array len");
                (0..n.max(0))
                    .map(|_| self.reply())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => line,
        }
    }

    /// SET `key` to "cached".
    pub fn set(&mut self, key: &str) {
        assert_eq!(self.cmd(&["SET", key, "cached"]), "+OK");
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &str) -> bool {
        self.cmd(&["EXISTS", key]) == ":1"
    }
}
