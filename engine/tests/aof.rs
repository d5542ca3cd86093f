//! The append-only file against real Redis 7.0: the engine's `appendonlydir/` passes
//! `redis-check-aof` and loads into redis-server to the same data, redis-server's
//! loads into the engine, rewrites keep the data, a torn tail is cut (or refused),
//! corrupt files stop the start naming the file, and `appendfsync always` loses no
//! acknowledged write to kill -9.

mod common;
#[path = "aof_support/dataset.rs"]
mod dataset;

use common::{Conn, EngineServer, Resp};
use dataset::{assert_same, pipeline, populate, snapshot, words};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A directory of its own for one test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("coherent-aof-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn aofdir(&self) -> PathBuf {
        self.0.join("appendonlydir")
    }
    fn manifest(&self) -> PathBuf {
        self.aofdir().join("appendonly.aof.manifest")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An engine config with its files in `dir` and `appendonly yes`, plus `extra`
/// `[engine]` keys.
fn config(dir: &Path, extra: &[(&str, &str)]) -> engine::EngineConfig {
    let mut cfg = engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        dir: dir.to_str().expect("utf-8 path").into(),
        appendonly: true,
        appendfsync: "always".into(),
        ..Default::default()
    };
    for (k, v) in extra {
        cfg.set_key(k, engine::SettingValue::Str(v))
            .expect("setting");
    }
    cfg
}

/// Binds an engine; the error text when it refuses to start.
fn try_start(cfg: engine::EngineConfig) -> Result<EngineServer, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(engine::Server::bind(cfg.clone())) {
        Ok(server) => {
            // Bound once to check; the server the test uses binds again.
            drop(server);
            Ok(EngineServer::start_with(cfg))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn info_field(c: &mut Conn, name: &str) -> String {
    let (Resp::Bulk(Some(text)) | Resp::Verbatim(text)) = c.cmd(&["INFO", "persistence"]) else {
        panic!("INFO failed");
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("INFO persistence has no {name}: {text}"))
}

/// Waits for the running AOF rewrite to end (a deadline, not a timing assertion).
fn wait_rewrite(c: &mut Conn) {
    let start = Instant::now();
    while info_field(c, "aof_rewrite_in_progress") != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rewrite never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(c, "aof_last_bgrewrite_status"), "ok");
}

/// `redis-check-aof` on a manifest: its output, and whether it said all is valid.
fn check_aof(manifest: &Path) -> (bool, String) {
    let out = Command::new("redis-check-aof")
        .arg(manifest)
        .output()
        .expect("redis-check-aof must be installed (apt-get install redis-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && text.contains("All AOF files and manifest are valid"),
        text,
    )
}

/// A private redis-server with `appendonly yes` in `dir`, stopped by PID on drop.
struct RedisAof {
    port: u16,
    child: Child,
}

impl RedisAof {
    fn start(dir: &Path, extra: &[&str]) -> RedisAof {
        let port = common::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        common::wait_port(port);
        let mut r = RedisAof { port, child };
        // Loading done: replies are not -LOADING.
        let start = Instant::now();
        loop {
            match r.conn().cmd(&["PING"]) {
                Resp::Simple(s) if s == "PONG" => break,
                other => {
                    assert!(
                        start.elapsed() < Duration::from_secs(20),
                        "redis: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        r
    }
    fn conn(&mut self) -> Conn {
        Conn::connect(([127, 0, 0, 1], self.port).into())
    }
}

impl Drop for RedisAof {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commands the engine rewrites before they reach the AOF (relative TTLs, random
/// or float results, blocking pops): their effects must replay to the same data.
fn nondeterministic(c: &mut Conn) {
    pipeline(
        c,
        &[
            words("SELECT 3"),
            words("SET rel:ex v EX 1000"),
            words("SET f 1.5"),
            words("INCRBYFLOAT f 0.25"),
            words("SADD pops a b c d e"),
            words("SPOP pops 2"),
            words("RPUSH q x y"),
            words("BLPOP q 0"),
            words("EXPIRE pops 5000"),
            words("MULTI"),
            words("INCR counter"),
            words("INCR counter"),
            words("EXEC"),
            words("SELECT 0"),
        ],
    );
}

#[test]
fn engine_aof_passes_redis_check_aof_and_loads_in_redis() {
    let dir = TempDir::new("engine-to-redis");
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    // A rewrite in the middle: the base holds the first half, an incr file the rest.
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Resp::Simple("Background append only file rewriting started".into())
    );
    wait_rewrite(&mut c);
    nondeterministic(&mut c);
    pipeline(
        &mut c,
        &[
            words("SELECT 5"),
            words("SET after rewrite"),
            words("SELECT 0"),
        ],
    );
    let want = snapshot(&mut c);
    assert_eq!(info_field(&mut c, "aof_enabled"), "1");
    assert_eq!(info_field(&mut c, "aof_rewrites"), "1");
    let manifest = std::fs::read_to_string(dir.manifest()).expect("manifest");
    assert_eq!(
        manifest,
        "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n",
        "history files are gone"
    );
    let files: Vec<String> = std::fs::read_dir(dir.aofdir())
        .expect("aof dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");
    drop(c);
    drop(engine);

    let mut redis = RedisAof::start(dir.path(), &[]);
    let got = snapshot(&mut redis.conn());
    assert_same("redis-server loading the engine's AOF", &want, &got);
    drop(redis);
}

#[test]
fn engine_restarts_from_its_own_aof() {
    let dir = TempDir::new("restart");
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    nondeterministic(&mut c);
    let want = snapshot(&mut c);
    drop(c);
    drop(engine);
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let got = snapshot(&mut Conn::connect(engine.addr));
    assert_same("engine reloading its AOF", &want, &got);
}

#[test]
fn command_base_without_rdb_preamble() {
    let dir = TempDir::new("no-preamble");
    let cfg = config(dir.path(), &[("aof_use_rdb_preamble", "no")]);
    let engine = EngineServer::start_with(cfg.clone());
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
    wait_rewrite(&mut c);
    pipeline(&mut c, &[words("SET after rewrite")]);
    let want = snapshot(&mut c);
    let manifest = std::fs::read_to_string(dir.manifest()).expect("manifest");
    assert!(
        manifest.starts_with("file appendonly.aof.2.base.aof seq 2 type b\n"),
        "{manifest}"
    );
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");
    drop(c);
    drop(engine);
    let engine = EngineServer::start_with(cfg);
    assert_same("engine", &want, &snapshot(&mut Conn::connect(engine.addr)));
    drop(engine);
    let mut redis = RedisAof::start(dir.path(), &[]);
    assert_same("redis-server", &want, &snapshot(&mut redis.conn()));
}

#[test]
fn redis_aof_loads_in_the_engine() {
    let dir = TempDir::new("redis-to-engine");
    let mut redis = RedisAof::start(dir.path(), &[]);
    let mut c = redis.conn();
    populate(&mut c);
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrite_in_progress") != "0"
        || info_field(&mut c, "aof_rewrites") != "1"
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    nondeterministic(&mut c);
    let want = snapshot(&mut c);
    drop(c);
    drop(redis);
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let got = snapshot(&mut Conn::connect(engine.addr));
    assert_same("engine loading redis-server's AOF", &want, &got);
}

#[test]
fn config_set_appendonly_starts_with_a_rewrite() {
    let dir = TempDir::new("config-set");
    let mut cfg = config(dir.path(), &[]);
    cfg.appendonly = false;
    let engine = EngineServer::start_with(cfg.clone());
    let mut c = Conn::connect(engine.addr);
    assert_eq!(info_field(&mut c, "aof_enabled"), "0");
    pipeline(&mut c, &[words("SET before on"), words("RPUSH l a b c")]);
    assert!(!dir.aofdir().exists());
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "appendonly", "yes"]),
        Resp::Simple("OK".into())
    );
    pipeline(&mut c, &[words("SET during rewrite")]);
    wait_rewrite(&mut c);
    pipeline(
        &mut c,
        &[
            words("SET after on"),
            words("SELECT 2"),
            words("SET other db"),
        ],
    );
    assert_eq!(info_field(&mut c, "aof_enabled"), "1");
    let want = snapshot(&mut c);
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");
    // Turned off: the files stay as they were; writes no longer reach them.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "appendonly", "no"]),
        Resp::Simple("OK".into())
    );
    pipeline(&mut c, &[words("SET notlogged x")]);
    drop(c);
    drop(engine);
    cfg.appendonly = true;
    let engine = EngineServer::start_with(cfg);
    assert_same(
        "after CONFIG SET appendonly yes",
        &want,
        &snapshot(&mut Conn::connect(engine.addr)),
    );
}

/// Writes a few keys with the engine and stops it: a small AOF to damage.
fn small_aof(dir: &TempDir, extra: &[(&str, &str)]) -> PathBuf {
    let engine = EngineServer::start_with(config(dir.path(), extra));
    let mut c = Conn::connect(engine.addr);
    for i in 0..10 {
        pipeline(&mut c, &[words(&format!("SET k{i} v{i}"))]);
    }
    drop(c);
    drop(engine);
    dir.aofdir().join("appendonly.aof.1.incr.aof")
}

#[test]
fn torn_tail_is_cut_at_the_last_complete_command() {
    let dir = TempDir::new("torn");
    let incr = small_aof(&dir, &[]);
    let whole = std::fs::read(&incr).expect("incr");
    let mut torn = whole.clone();
    torn.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$2\r\nk1");
    std::fs::write(&incr, &torn).expect("write");

    // aof-load-truncated no: refused, naming the file; nothing is changed.
    let err = match try_start(config(dir.path(), &[("aof_load_truncated", "no")])) {
        Err(e) => e,
        Ok(_) => panic!("started over a truncated AOF"),
    };
    assert!(
        err.contains("appendonly.aof.1.incr.aof") && err.contains("unexpected end of file"),
        "{err}"
    );
    assert_eq!(std::fs::read(&incr).expect("incr"), torn);

    // A truncated MULTI is dropped whole as well.
    let mut torn_multi = whole.clone();
    torn_multi
        .extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$1\r\nX\r\n");
    std::fs::write(&incr, &torn_multi).expect("write");
    let engine = try_start(config(dir.path(), &[])).expect("loads");
    let mut c = Conn::connect(engine.addr);
    assert_eq!(c.cmd(&["GET", "k1"]), Resp::Bulk(Some(b"v1".to_vec())));
    assert_eq!(c.cmd(&["DBSIZE"]), Resp::Int(10));
    // The file was cut back to its last complete command, and goes on from there.
    pipeline(&mut c, &[words("SET k10 v10")]);
    drop(c);
    drop(engine);
    let now = std::fs::read(&incr).expect("incr");
    assert!(now.starts_with(&whole) && !now[whole.len()..].starts_with(b"*1\r\n$5\r\nMULTI"));
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    assert_eq!(Conn::connect(engine.addr).cmd(&["DBSIZE"]), Resp::Int(11));
}

#[test]
fn corrupt_files_stop_the_start_naming_the_file() {
    let dir = TempDir::new("corrupt");
    let incr = small_aof(&dir, &[]);
    let base = dir.aofdir().join("appendonly.aof.1.base.rdb");
    let manifest = dir.manifest();
    let start_err = |what: &str| match try_start(config(dir.path(), &[])) {
        Err(e) => e,
        Ok(_) => panic!("started over {what}"),
    };

    // Not the protocol in an incr file.
    let good = std::fs::read(&incr).expect("incr");
    std::fs::write(&incr, [good.as_slice(), b"garbage\r\n"].concat()).expect("write");
    let e = start_err("garbage");
    assert!(
        e.contains("appendonly.aof.1.incr.aof") && e.contains("bad file format"),
        "{e}"
    );
    std::fs::write(&incr, &good).expect("write");

    // A base whose RDB checksum is wrong.
    let good_base = std::fs::read(&base).expect("base");
    let mut bad = good_base.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    std::fs::write(&base, &bad).expect("write");
    let e = start_err("a bad base");
    assert!(
        e.contains("appendonly.aof.1.base.rdb") && e.contains("checksum"),
        "{e}"
    );
    std::fs::write(&base, &good_base).expect("write");

    // A manifest Redis would refuse.
    let good_manifest = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, b"file appendonly.aof.1.base.rdb seq 1 type x\n").expect("write");
    let e = start_err("a bad manifest");
    assert!(
        e.contains("appendonly.aof.manifest") && e.contains("Unknown AOF file type"),
        "{e}"
    );
    // A manifest naming a file that is not there.
    std::fs::write(
        &manifest,
        [
            good_manifest.as_slice(),
            b"file appendonly.aof.9.incr.aof seq 9 type i\n",
        ]
        .concat(),
    )
    .expect("write");
    let e = start_err("a missing file");
    assert!(
        e.contains("appendonly.aof.9.incr.aof") && e.contains("doesn't exist"),
        "{e}"
    );
    std::fs::write(&manifest, &good_manifest).expect("write");

    // Nothing was lost on the way.
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    assert_eq!(Conn::connect(engine.addr).cmd(&["DBSIZE"]), Resp::Int(10));
}
