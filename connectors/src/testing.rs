//! Test support: a private MariaDB with a row-based binlog, on its own port and data
//! directory, stopped by PID. Never touches a server already running on the machine.
//! Public behind the `testing` feature so the sidecar's tests can reuse it.

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
    /// True when `mariadbd`, `mariadb-install-db` and `mariadb` are installed.
    pub fn available() -> bool {
        find("mariadbd").is_some()
            && find("mariadb-install-db").is_some()
            && find("mariadb").is_some()
    }

    /// Initialises a data directory and starts the server; returns once it accepts
    /// queries and the replication user exists.
    pub fn start(opts: MariaDbOptions) -> io::Result<MariaDb> {
        let base = std::env::temp_dir().join(format!(
            "coherent-mariadb-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        // A private tmpdir: concurrent servers sharing /tmp for their temporary
        // tables made mariadb-install-db fail now and then.
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
