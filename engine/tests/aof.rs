//! The append-only file against real Redis 7.0: the engine's `appendonlydir/` passes
//! `redis-check-aof` and loads into redis-server to the same data, redis-server's
//! loads into the engine, rewrites keep the data, a torn tail is cut (or refused),
//! corrupt files stop the start naming the file, and `appendfsync always` loses no
//! acknowledged write to kill -9.

mod common;

use common::dataset::{assert_same, cmd, pipeline, populate, snapshot, words};
use common::{Conn, EngineServer, Resp};
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

/// Function libraries: one loaded before a rewrite (in the base), the other after (in
/// the incremental file), then replaced.
const LIB_A: &[u8] = b"#!lua name=liba\nredis.register_function{function_name='fa', callback=function(keys, args) return 'a' end, flags={'no-writes'}, description='in the base'}";
const LIB_B: &[u8] = b"#!lua name=libb\nredis.register_function('fb', function(keys, args) return redis.call('incr', keys[1]) end)";
const LIB_B2: &[u8] =
    b"#!lua name=libb\nredis.register_function('fb2', function(keys, args) return 'b2' end)";

/// The libraries with their code, in name order.
fn libraries(c: &mut Conn) -> Resp {
    c.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted()
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
    pipeline(&mut c, &[cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
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
            cmd(&[b"FUNCTION", b"LOAD", LIB_B]),
            cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", LIB_B2]),
            cmd(&[b"FUNCTION", b"LOAD", b"REPLACE", LIB_B]),
        ],
    );
    let want = snapshot(&mut c);
    let want_libs = libraries(&mut c);
    assert!(
        matches!(&want_libs, Resp::Array(Some(l)) if l.len() == 2),
        "{want_libs:?}"
    );
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
    assert_eq!(
        libraries(&mut redis.conn()),
        want_libs,
        "the libraries in redis"
    );
    drop(redis);
}

#[test]
fn engine_restarts_from_its_own_aof() {
    let dir = TempDir::new("restart");
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    nondeterministic(&mut c);
    pipeline(
        &mut c,
        &[
            cmd(&[b"FUNCTION", b"LOAD", LIB_A]),
            cmd(&[b"FUNCTION", b"LOAD", LIB_B]),
            words("FUNCTION DELETE libb"),
            words("FCALL_RO fa 0"),
        ],
    );
    let want = snapshot(&mut c);
    let want_libs = libraries(&mut c);
    drop(c);
    drop(engine);
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let mut c = Conn::connect(engine.addr);
    let got = snapshot(&mut c);
    assert_same("engine reloading its AOF", &want, &got);
    assert_eq!(libraries(&mut c), want_libs);
}

#[test]
fn command_base_without_rdb_preamble() {
    let dir = TempDir::new("no-preamble");
    let cfg = config(dir.path(), &[("aof_use_rdb_preamble", "no")]);
    let engine = EngineServer::start_with(cfg.clone());
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    pipeline(&mut c, &[cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
    wait_rewrite(&mut c);
    pipeline(&mut c, &[words("SET after rewrite")]);
    let want = snapshot(&mut c);
    let want_libs = libraries(&mut c);
    let base = std::fs::read(dir.aofdir().join("appendonly.aof.2.base.aof")).expect("base");
    let load = b"*3\r\n$8\r\nFUNCTION\r\n$4\r\nLOAD\r\n";
    assert!(
        base.windows(load.len()).any(|w| w == load),
        "the base loads the library (Redis's rewriteFunctions)"
    );
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
    assert_eq!(libraries(&mut Conn::connect(engine.addr)), want_libs);
    drop(engine);
    let mut redis = RedisAof::start(dir.path(), &[]);
    assert_same("redis-server", &want, &snapshot(&mut redis.conn()));
    assert_eq!(libraries(&mut redis.conn()), want_libs);
}

#[test]
fn redis_aof_loads_in_the_engine() {
    let dir = TempDir::new("redis-to-engine");
    let mut redis = RedisAof::start(dir.path(), &[]);
    let mut c = redis.conn();
    populate(&mut c);
    pipeline(&mut c, &[cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrite_in_progress") != "0"
        || info_field(&mut c, "aof_rewrites") != "1"
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    nondeterministic(&mut c);
    pipeline(&mut c, &[cmd(&[b"FUNCTION", b"LOAD", LIB_B])]);
    let want = snapshot(&mut c);
    let want_libs = libraries(&mut c);
    drop(c);
    drop(redis);
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let got = snapshot(&mut Conn::connect(engine.addr));
    assert_same("engine loading redis-server's AOF", &want, &got);
    assert_eq!(libraries(&mut Conn::connect(engine.addr)), want_libs);
}

#[test]
fn config_set_appendonly_starts_with_a_rewrite() {
    for fsync in ["always", "everysec"] {
        config_set_appendonly_with(fsync);
    }
}

fn config_set_appendonly_with(fsync: &str) {
    let dir = TempDir::new(&format!("config-set-{fsync}"));
    let mut cfg = config(dir.path(), &[("appendfsync", fsync)]);
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

/// Environment of the crash tests' server process.
const CHILD_DIR: &str = "COHERENT_AOF_CHILD_DIR";
const CHILD_FSYNC: &str = "COHERENT_AOF_CHILD_FSYNC";

/// Not a test of its own: the server process of the crash tests, which run this test
/// binary again with `COHERENT_AOF_CHILD_DIR` set and kill it with SIGKILL. It prints
/// `CHILD-PORT <port>` once it serves.
#[test]
#[ignore = "the crash tests' server process"]
fn crash_child_server() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        panic!("run by the crash tests, with {CHILD_DIR} set");
    };
    let fsync = std::env::var(CHILD_FSYNC).unwrap_or_else(|_| "always".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = engine::Server::bind(config(Path::new(&dir), &[("appendfsync", &fsync)]))
            .await
            .expect("bind");
        println!("CHILD-PORT {}", server.local_addr().expect("addr").port());
        server.run(std::future::pending()).await.expect("run");
    });
}

/// Starts the server process on `dir`; returns it and its port.
fn start_child(dir: &Path, fsync: &str) -> (Child, u16) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "crash_child_server", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_FSYNC, fsync)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server process");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server process ended before serving")
            .expect("read");
        if let Some(p) = line.strip_prefix("CHILD-PORT ") {
            break p.trim().parse::<u16>().expect("port");
        }
    };
    // The rest of its output is not needed; keep the pipe drained.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

/// Clients writing `c<i>:<n> = n` as fast as they can, each remembering the last `n`
/// acknowledged; the server is killed with SIGKILL after `run_for`. Returns the
/// acknowledged count per client.
fn write_then_kill(
    child: &mut Child,
    port: u16,
    clients: usize,
    depth: usize,
    run_for: Duration,
) -> Vec<u64> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(([127, 0, 0, 1], port).into());
                c.set_timeout(Duration::from_secs(5));
                let mut acked = 0u64;
                let mut next = 1u64;
                'outer: while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for k in 0..depth as u64 {
                        let n = (next + k).to_string();
                        let key = format!("c{i}:{n}");
                        c.send(&[b"SET", key.as_bytes(), n.as_bytes()]);
                    }
                    for _ in 0..depth {
                        match c.try_read() {
                            Some(Resp::Simple(s)) if s == "OK" => {
                                acked = next;
                                next += 1;
                            }
                            _ => break 'outer,
                        }
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(run_for);
    // SIGKILL while the clients are still writing.
    child.kill().expect("kill -9");
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect()
}

/// How many acknowledged writes the restarted engine lacks (per client: the keys
/// `1..=acked` must all be there with their values).
fn lost_after_restart(dir: &Path, acked: &[u64]) -> u64 {
    let engine = EngineServer::start_with(config(dir, &[]));
    let mut c = Conn::connect(engine.addr);
    let mut lost = 0;
    for (i, &n) in acked.iter().enumerate() {
        for chunk in (1..=n).collect::<Vec<_>>().chunks(500) {
            let mut args = vec!["MGET".to_string()];
            args.extend(chunk.iter().map(|k| format!("c{i}:{k}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let Resp::Array(Some(vals)) = c.cmd(&args) else {
                panic!("MGET failed");
            };
            for (k, v) in chunk.iter().zip(vals) {
                if v != Resp::Bulk(Some(k.to_string().into_bytes())) {
                    lost += 1;
                }
            }
        }
    }
    lost
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write_with_always() {
    let dir = TempDir::new("kill9-always");
    let mut total = 0;
    // Twice: the second run loads the first run's files, cut mid-write, and appends.
    for round in 0..2 {
        let (mut child, port) = start_child(dir.path(), "always");
        // Pipeline 1 and 16: group commit has many writes to cover at once.
        let acked = write_then_kill(
            &mut child,
            port,
            4,
            if round == 0 { 1 } else { 16 },
            Duration::from_millis(1500),
        );
        let n: u64 = acked.iter().sum();
        assert!(n > 0, "no write was acknowledged");
        let lost = lost_after_restart(dir.path(), &acked);
        println!("appendfsync always, round {round}: {n} writes acknowledged before kill -9, {lost} lost");
        assert_eq!(lost, 0, "acknowledged writes lost with appendfsync always");
        total += n;
        // The next round writes the same keys again from 1: start from a clean slate
        // of keys, but the same AOF directory.
        let engine = EngineServer::start_with(config(dir.path(), &[]));
        Conn::connect(engine.addr).cmd(&["FLUSHALL"]);
    }
    assert!(total > 0);
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof after kill -9: {out}");
}

#[test]
fn kill_9_under_load_with_everysec_loses_no_acknowledged_write() {
    let dir = TempDir::new("kill9-everysec");
    let (mut child, port) = start_child(dir.path(), "everysec");
    let acked = write_then_kill(&mut child, port, 4, 16, Duration::from_millis(1500));
    let n: u64 = acked.iter().sum();
    let lost = lost_after_restart(dir.path(), &acked);
    // SIGKILL leaves the OS's page cache in place, and a write is acknowledged only
    // once written to the file (as Redis does): nothing acknowledged is lost. What
    // everysec risks is the last second on a crash of the machine, which a test here
    // cannot cause; the writer fsyncs at least once a second.
    println!("appendfsync everysec: {n} writes acknowledged before kill -9, {lost} lost");
    assert!(n > 0);
    assert_eq!(lost, 0, "acknowledged writes lost to kill -9 with everysec");
}

#[test]
fn markers_travel_in_the_stream_and_across_rewrites() {
    for preamble in ["yes", "no"] {
        let dir = TempDir::new(&format!("marker-{preamble}"));
        let cfg = config(dir.path(), &[("aof_use_rdb_preamble", preamble)]);
        let engine = EngineServer::start_with(cfg.clone());
        let mut c = Conn::connect(engine.addr);
        pipeline(&mut c, &[words("SET a 1")]);
        engine.engine.aof_marker(b"bin.000001:100").expect("marker");
        pipeline(&mut c, &[words("SET b 2")]);
        engine.engine.aof_marker(b"bin.000001:200").expect("marker");
        assert_eq!(
            engine.engine.aof_marker(b"two\nlines"),
            Err(engine::persist::aof::MarkerError::Invalid)
        );
        drop(c);
        drop(engine);

        // The last marker of the stream comes back at start.
        let engine = EngineServer::start_with(cfg.clone());
        assert_eq!(
            engine.engine.last_aof_marker().as_deref(),
            Some(&b"bin.000001:200"[..])
        );
        let (ok, out) = check_aof(&dir.manifest());
        assert!(ok, "redis-check-aof with markers: {out}");
        // A rewrite carries it into the base.
        let mut c = Conn::connect(engine.addr);
        assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
        wait_rewrite(&mut c);
        drop(c);
        drop(engine);
        let engine = EngineServer::start_with(cfg.clone());
        assert_eq!(
            engine.engine.last_aof_marker().as_deref(),
            Some(&b"bin.000001:200"[..]),
            "preamble {preamble}"
        );
        drop(engine);
        // Redis loads the files all the same.
        let mut redis = RedisAof::start(dir.path(), &[]);
        assert_eq!(
            redis.conn().cmd(&["MGET", "a", "b"]),
            Resp::Array(Some(vec![
                Resp::Bulk(Some(b"1".to_vec())),
                Resp::Bulk(Some(b"2".to_vec())),
            ]))
        );
    }
    // Without an AOF there is no stream to mark.
    let engine = EngineServer::start();
    assert_eq!(
        engine.engine.aof_marker(b"x"),
        Err(engine::persist::aof::MarkerError::Off)
    );
}

/// The `aof_*` (and module fork) lines of INFO persistence, names only, in order.
fn aof_info_names(c: &mut Conn) -> Vec<String> {
    let (Resp::Bulk(Some(text)) | Resp::Verbatim(text)) = c.cmd(&["INFO", "persistence"]) else {
        panic!("INFO failed");
    };
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("aof_") || l.starts_with("module_fork"))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
        .collect()
}

#[test]
fn info_fields_and_automatic_rewrite() {
    let dir = TempDir::new("auto");
    let redis_dir = TempDir::new("auto-redis");
    let mut redis = RedisAof::start(redis_dir.path(), &[]);
    let engine = EngineServer::start_with(config(
        dir.path(),
        &[
            ("auto_aof_rewrite_min_size", "4kb"),
            ("appendfsync", "everysec"),
        ],
    ));
    let mut c = Conn::connect(engine.addr);
    assert_eq!(aof_info_names(&mut c), aof_info_names(&mut redis.conn()));
    assert_eq!(info_field(&mut c, "aof_rewrites"), "0");
    let first_base: u64 = info_field(&mut c, "aof_base_size").parse().expect("size");
    assert!(first_base > 0, "a new AOF starts with a base");
    let value = "v".repeat(100);
    for i in 0..200 {
        pipeline(
            &mut c,
            &[vec![
                b"SET".to_vec(),
                format!("k{i}").into_bytes(),
                value.clone().into_bytes(),
            ]],
        );
    }
    // Past 4kb and 100% growth: the cron starts a rewrite by itself.
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrites") == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no automatic rewrite"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_rewrite(&mut c);
    let manifest = std::fs::read_to_string(dir.manifest()).expect("manifest");
    // One rewrite or more (the writes go on growing the file): a newer base, one
    // incr file, no history left.
    let lines: Vec<&str> = manifest.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].ends_with(" type b")
            && !lines[0].contains(" seq 1 ")
            && lines[1].ends_with(" type i"),
        "{manifest}"
    );
    let size: u64 = info_field(&mut c, "aof_current_size")
        .parse()
        .expect("size");
    let base: u64 = info_field(&mut c, "aof_base_size").parse().expect("size");
    assert!(
        base > first_base && size >= base,
        "base {base}, current {size}"
    );
    // BGREWRITEAOF with the AOF off is refused (Redis would write a base alone).
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "appendonly", "no"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(info_field(&mut c, "aof_enabled"), "0");
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Error(e) if e.contains("AOF is off")));
}

/// The rewrite writes its RDB base from the no-fork snapshot on a thread of its own,
/// made slow with `rdb-key-save-delay`: the writes made while it runs go to the new
/// incremental file and all survive a restart, in the engine and in redis-server.
#[test]
fn writes_during_a_slow_rewrite_survive_a_restart() {
    let dir = TempDir::new("slow-rewrite");
    let cfg = engine::EngineConfig {
        rdb_key_save_delay: 5000,
        ..config(dir.path(), &[("appendfsync", "everysec")])
    };
    let engine = EngineServer::start_with(cfg.clone());
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    let keys: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| {
            vec![
                b"SET".to_vec(),
                format!("k{i}").into_bytes(),
                b"old".to_vec(),
            ]
        })
        .collect();
    pipeline(&mut c, &keys);
    engine.engine.aof_marker(b"bin.000002:42").expect("marker");
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Resp::Simple("Background append only file rewriting started".into())
    );
    assert_eq!(info_field(&mut c, "aof_rewrite_in_progress"), "1");
    // The rewrite is the background job: BGSAVE waits for it, as in Redis.
    assert!(
        matches!(c.cmd(&["BGSAVE"]), Resp::Error(e) if e.contains("Another child process is active"))
    );
    assert!(
        matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Error(e) if e.contains("already in progress"))
    );
    // Overwrites, deletes, new keys, changes of collections and TTLs, while the walk
    // goes on.
    let mut during: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in (0..200).rev() {
        let cmd = match i % 4 {
            0 => format!("SET k{i} new{i}"),
            1 => format!("DEL k{i}"),
            2 => format!("APPEND k{i} -more"),
            _ => format!("SET fresh{i} v{i} EX 10000"),
        };
        during.push(words(&cmd));
    }
    during.push(words("SELECT 2"));
    during.push(words("SET indb2 yes"));
    during.push(words("SELECT 0"));
    pipeline(&mut c, &during);
    nondeterministic(&mut c);
    // Still running after all of them: they were written during the rewrite.
    assert_eq!(info_field(&mut c, "aof_rewrite_in_progress"), "1");
    wait_rewrite(&mut c);
    assert_eq!(info_field(&mut c, "aof_rewrites"), "1");
    assert_eq!(info_field(&mut c, "aof_current_rewrite_time_sec"), "-1");
    pipeline(&mut c, &[words("SET after done")]);
    let want = snapshot(&mut c);
    let manifest = std::fs::read_to_string(dir.manifest()).expect("manifest");
    assert_eq!(
        manifest,
        "file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n",
    );
    drop(c);
    drop(engine);
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");

    let engine = EngineServer::start_with(cfg);
    assert_eq!(
        engine.engine.last_aof_marker().as_deref(),
        Some(&b"bin.000002:42"[..]),
        "the marker is carried into the base"
    );
    let got = snapshot(&mut Conn::connect(engine.addr));
    assert_same("the engine restarted from its AOF", &want, &got);
    drop(engine);

    let mut redis = RedisAof::start(dir.path(), &[]);
    let got = snapshot(&mut redis.conn());
    assert_same("redis-server loading the engine's AOF", &want, &got);
}

/// A slow rewrite stopped by `CONFIG SET appendonly no` leaves no temporary file and
/// no failure behind, and frees the databases for the next background job.
#[test]
fn turning_the_aof_off_kills_a_running_rewrite() {
    let dir = TempDir::new("kill-rewrite");
    let engine = EngineServer::start_with(engine::EngineConfig {
        rdb_key_save_delay: 5000,
        ..config(dir.path(), &[])
    });
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    let keys: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| vec![b"SET".to_vec(), format!("k{i}").into_bytes(), b"v".to_vec()])
        .collect();
    pipeline(&mut c, &keys);
    let manifest_before = std::fs::read_to_string(dir.manifest()).expect("manifest");
    assert!(matches!(c.cmd(&["BGREWRITEAOF"]), Resp::Simple(_)));
    assert_eq!(info_field(&mut c, "aof_rewrite_in_progress"), "1");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "appendonly", "no"]),
        Resp::Simple("OK".into())
    );
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrite_in_progress") != "0" {
        assert!(start.elapsed() < Duration::from_secs(30), "never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(info_field(&mut c, "aof_rewrites"), "0");
    assert_eq!(info_field(&mut c, "aof_rewrites_consecutive_failures"), "0");
    // No base of the killed rewrite, no temporary file: the files stay as they were
    // plus the incremental file opened when the rewrite began.
    let mut files: Vec<String> = std::fs::read_dir(dir.aofdir())
        .expect("aof dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "appendonly.aof.1.base.rdb",
            "appendonly.aof.1.incr.aof",
            "appendonly.aof.2.incr.aof",
            "appendonly.aof.manifest"
        ],
        "manifest before: {manifest_before}"
    );
    // The hooks are gone: a BGSAVE runs and completes.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "rdb-key-save-delay", "0"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    let start = Instant::now();
    while info_field(&mut c, "rdb_bgsave_in_progress") != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "BGSAVE never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
}

/// BGREWRITEAOF during a BGSAVE is scheduled, as in Redis, and runs when it ends.
#[test]
fn bgrewriteaof_during_bgsave_is_scheduled() {
    let dir = TempDir::new("scheduled");
    let engine = EngineServer::start_with(engine::EngineConfig {
        rdb_key_save_delay: 5000,
        ..config(dir.path(), &[])
    });
    let mut c = Conn::connect(engine.addr);
    populate(&mut c);
    let keys: Vec<Vec<Vec<u8>>> = (0..200)
        .map(|i| vec![b"SET".to_vec(), format!("k{i}").into_bytes(), b"v".to_vec()])
        .collect();
    pipeline(&mut c, &keys);
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    assert_eq!(
        c.cmd(&["BGREWRITEAOF"]),
        Resp::Simple("Background append only file rewriting scheduled".into())
    );
    assert_eq!(info_field(&mut c, "aof_rewrite_scheduled"), "1");
    assert_eq!(info_field(&mut c, "aof_rewrite_in_progress"), "0");
    assert_eq!(info_field(&mut c, "rdb_bgsave_in_progress"), "1");
    pipeline(&mut c, &[words("SET during save")]);
    let start = Instant::now();
    while info_field(&mut c, "aof_rewrites") != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the scheduled rewrite never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(info_field(&mut c, "aof_rewrite_scheduled"), "0");
    assert_eq!(info_field(&mut c, "aof_last_bgrewrite_status"), "ok");
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
    let want = snapshot(&mut c);
    drop(c);
    drop(engine);
    let (ok, out) = check_aof(&dir.manifest());
    assert!(ok, "redis-check-aof: {out}");
    let engine = EngineServer::start_with(config(dir.path(), &[]));
    let got = snapshot(&mut Conn::connect(engine.addr));
    assert_same("the engine restarted from its AOF", &want, &got);
}
