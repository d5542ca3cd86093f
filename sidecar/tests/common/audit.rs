//! What the offline-audit tests share: the `app.users` table they seed, the JSON a
//! service caches for one of its rows, connections to the cache, the audit's config,
//! `coherent audit` run to the end or in the background while the test acts on its
//! progress lines, and a writer changing rows during a scan.

use connectors::testing::{MariaDb, MariaDbOptions};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// `user:{id}` caches the row as JSON (columns id, email, name).
pub const USER_RULE: &str = "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { format = \"json\", columns = [\"id\", \"email\", \"name\"] }\n";

/// [`USER_RULE`] with a second template, `user:email:{email}`.
pub const USER_EMAIL_RULE: &str = "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\", \"user:email:{email}\"]\nvalue = { format = \"json\", columns = [\"id\", \"email\", \"name\"] }\n";

/// `app.users (id, email, name)` with rows 1..=`rows`: email `u{id}@x.org`, name
/// `Name {id}`.
#[derive(Default)]
pub struct Users {
    /// How many rows.
    pub rows: u32,
    /// Name NULL for the multiples of 7.
    pub null_names: bool,
    /// An index on email.
    pub email_index: bool,
}

impl Users {
    /// `rows` rows, every name set, no index on email.
    pub fn rows(rows: u32) -> Users {
        Users {
            rows,
            ..Users::default()
        }
    }

    /// A private MariaDB ([`super::mariadb`]) holding it.
    pub fn db(&self) -> MariaDb {
        let db = super::mariadb(MariaDbOptions::default());
        self.seed(&db);
        db
    }

    /// Creates database `app` with the table and its rows.
    pub fn seed(&self, db: &MariaDb) {
        let index = if self.email_index {
            ", KEY (email)"
        } else {
            ""
        };
        let name = if self.null_names {
            "IF(seq % 7 = 0, NULL, CONCAT('Name ', seq))"
        } else {
            "CONCAT('Name ', seq)"
        };
        db.sql(&format!(
            "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL{index});
             USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), {name} FROM seq_1_to_{};",
            self.rows
        ))
        .expect("schema");
    }
}

/// The JSON a service caches for a row ([`USER_RULE`]'s renderer).
pub fn user_json(id: i64, email: &str, name: Option<&str>) -> String {
    serde_json::json!({"id": id, "email": email, "name": name}).to_string()
}

/// [`user_json`] of seeded row `id` (email `u{id}@x.org`) with `name`.
pub fn user_json_named(id: i64, name: Option<&str>) -> String {
    user_json(id, &format!("u{id}@x.org"), name)
}

/// [`user_json`] of seeded row `id` as it was seeded (name `Name {id}`).
pub fn user_json_seeded(id: i64) -> String {
    user_json_named(id, Some(&format!("Name {id}")))
}

/// A connection to the cache at `url` (`redis://...`).
pub fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect to the cache")
}

/// A connection to the engine at `addr` (`host:port`).
pub fn engine_conn(addr: &str) -> redis::Connection {
    redis_conn(&format!("redis://{addr}"))
}

/// SET `key` to `value`.
pub fn set(c: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(c).expect("SET");
}

/// Caches the seeded rows `ids` as they were seeded ([`user_json_seeded`]).
pub fn fill_seeded(c: &mut redis::Connection, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        set(c, &format!("user:{id}"), &user_json_seeded(id));
    }
}

/// The config of `coherent audit`.
pub struct AuditConfig<'a> {
    /// Where the cache is: `[engine]` lines or a `[target]` section.
    pub cache: String,
    /// `[admin] listen`: the sidecar whose `/status` has the invalidation lag ("": none).
    pub admin: &'a str,
    /// `[mysql] url`.
    pub mysql: &'a str,
    /// `[mysql] server_id`.
    pub server_id: u32,
    /// The `[[rules]]`.
    pub rules: &'a str,
}

impl<'a> AuditConfig<'a> {
    /// The cache as `cache` says; no sidecar to read the lag from; server id 77.
    pub fn new(cache: String, mysql: &'a str, rules: &'a str) -> AuditConfig<'a> {
        AuditConfig {
            cache,
            admin: "",
            mysql,
            server_id: 77,
            rules,
        }
    }

    /// [`AuditConfig::new`] with the engine at `addr` as the cache.
    pub fn engine(addr: &str, mysql: &'a str, rules: &'a str) -> AuditConfig<'a> {
        Self::new(format!("[engine]\nlisten = \"{addr}\"\n"), mysql, rules)
    }

    /// Writes it to `path`; the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(
            path,
            format!(
                "{}[admin]\nlisten = \"{}\"\n[mysql]\nurl = \"{}\"\nserver_id = {}\n\n{}",
                self.cache, self.admin, self.mysql, self.server_id, self.rules
            ),
        )
        .expect("config");
        path.to_path_buf()
    }
}

/// What a `coherent audit` run left.
pub struct AuditRun {
    /// Its exit code (None when a signal ended it).
    pub code: Option<i32>,
    /// `report.json` (Null when it wrote none).
    pub report: Value,
    /// Its stderr.
    pub stderr: String,
}

/// `coherent audit --config <cfg> --out <out>`, to the end; its stderr also goes to
/// the test's output.
pub fn run_audit(cfg: &Path, out: &Path) -> AuditRun {
    let o = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run coherent audit");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    eprint!("{stderr}");
    AuditRun {
        code: o.status.code(),
        report: read_report(out),
        stderr,
    }
}

/// [`run_audit`]: the exit code (-1 when a signal ended it) and the report.
pub fn audit(cfg: &Path, out: &Path) -> (i32, Value) {
    let r = run_audit(cfg, out);
    (r.code.unwrap_or(-1), r.report)
}

/// `out/report.json` (Null when there is none).
pub fn read_report(out: &Path) -> Value {
    std::fs::read(out.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The report entry of one key template.
pub fn entry<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["key"] == key))
        .unwrap_or_else(|| panic!("no entry for {key} in {r}"))
}

/// A rate-limited `coherent audit` running in the background (killed and reaped when
/// dropped).
pub struct RunningAudit(Child);

impl Drop for RunningAudit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl RunningAudit {
    /// `coherent audit --max-rows-per-sec <rate> --config <cfg> --out <out>`, its
    /// stderr (the progress lines) piped.
    pub fn spawn(cfg: &Path, out: &Path, rate: u32) -> RunningAudit {
        let child = Command::new(env!("CARGO_BIN_EXE_coherent"))
            .args(["audit", "--max-rows-per-sec", &rate.to_string(), "--config"])
            .arg(cfg)
            .arg("--out")
            .arg(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run audit");
        RunningAudit(child)
    }

    /// Reads its stderr to the end, each line passed to `on_line`, then waits for
    /// it: the exit code and the whole stderr.
    pub fn finish(mut self, mut on_line: impl FnMut(&str)) -> (Option<i32>, String) {
        let err = self.0.stderr.take().expect("stderr");
        let mut log = String::new();
        for line in BufReader::new(err).lines() {
            let line = line.expect("read");
            on_line(&line);
            log.push_str(&line);
            log.push('\n');
        }
        (self.0.wait().expect("wait").code(), log)
    }

    /// [`RunningAudit::finish`] with [`spawn_writer`] changing rows meanwhile, stopped
    /// at the first progress line (or the end): the exit code, the stderr and the
    /// number of updates.
    pub fn finish_while_writing(
        self,
        db: &MariaDb,
        engine: &str,
        delete_first: bool,
    ) -> (Option<i32>, String, u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = spawn_writer(db, engine, delete_first, &stop);
        let (code, log) = self.finish(|line| {
            if line.contains("rows/s") {
                stop.store(true, Ordering::SeqCst);
            }
        });
        stop.store(true, Ordering::SeqCst);
        (code, log, writer.join().expect("writer"))
    }
}

/// The MySQL user [`spawn_writer`] connects as.
pub const WRITER_USER: &str = "CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON app.* TO w@'%';";

/// A writer thread: in a loop over rows 1..=300 of `app.users` (as MySQL user `w`,
/// password `w`), a new name committed, then the key `user:{id}` on the engine at
/// `engine` refilled with the new row, as a cache-aside reader would; with
/// `delete_first` it deletes the key itself before the refill (playing the sidecar).
/// Checks `stop` before each update; returns how many it made.
pub fn spawn_writer(
    db: &MariaDb,
    engine: &str,
    delete_first: bool,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let stop = stop.clone();
    let url = format!("mysql://w:w@127.0.0.1:{}/app", db.port());
    let engine = engine.to_string();
    std::thread::spawn(move || -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::from_url(url).await.expect("writer");
            let client = redis::Client::open(format!("redis://{engine}")).expect("client");
            let mut cache = client
                .get_multiplexed_async_connection()
                .await
                .expect("cache");
            let mut n = 0u64;
            'outer: loop {
                for id in 1..=300i64 {
                    if stop.load(Ordering::SeqCst) {
                        break 'outer;
                    }
                    n += 1;
                    let name = format!("W{n}");
                    conn.exec_drop("UPDATE users SET name = ? WHERE id = ?", (&name, id))
                        .await
                        .expect("update");
                    let key = format!("user:{id}");
                    if delete_first {
                        let _: () = redis::cmd("DEL")
                            .arg(&key)
                            .query_async(&mut cache)
                            .await
                            .expect("DEL");
                    }
                    let _: () = redis::cmd("SET")
                        .arg(&key)
                        .arg(user_json_named(id, Some(&name)))
                        .query_async(&mut cache)
                        .await
                        .expect("SET");
                }
            }
            n
        })
    })
}
