//! SAVE, BGSAVE and LASTSAVE over the network: BGSAVE is a point-in-time snapshot
//! without fork (writes made while it runs never reach the file; keys deleted while it
//! runs still do), files land atomically in `dir`, INFO persistence reports it in
//! Redis 7.0's fields, a failed BGSAVE stops writes with Redis's `-MISCONF`, SHUTDOWN
//! and DEBUG RELOAD save, and the settings behave as Redis's.
//!
//! Saves are made slow deterministically with `rdb-key-save-delay` (Redis's own test
//! knob), so the writes of a test land while the save runs; the test checks that the
//! save was still running after them.

mod common;

use common::{Conn, EngineServer, Resp};
use engine::persist::rdb::LoadOptions;
use engine::{Engine, EngineConfig, Reply};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory of its own for one test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("coherent-snapshot-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn arg(&self) -> String {
        self.0.to_str().expect("utf-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn server(dir: &str, save: &str, delay_us: u64) -> EngineServer {
    EngineServer::start_with(EngineConfig {
        listen: "127.0.0.1:0".into(),
        dir: dir.into(),
        save: save.into(),
        rdb_key_save_delay: delay_us,
        // DEBUG RELOAD and DEBUG SLEEP, from loopback as the private redis-servers.
        enable_debug_command: "local".into(),
        ..Default::default()
    })
}

/// One field of INFO persistence.
fn info_field(c: &mut Conn, name: &str) -> String {
    let text = match c.cmd(&["INFO", "persistence"]) {
        Resp::Bulk(Some(b)) | Resp::Verbatim(b) => String::from_utf8_lossy(&b).into_owned(),
        r => panic!("INFO replied {r:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (60 s at most) for the running BGSAVE to end.
fn wait_bgsave(c: &mut Conn) {
    let start = Instant::now();
    while info_field(c, "rdb_bgsave_in_progress") == "1" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "BGSAVE did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends commands pipelined; panics on an error reply.
fn pipeline(c: &mut Conn, cmds: &[String]) {
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        c.send(&args);
    }
    for cmd in cmds {
        if let Resp::Error(e) = c.read() {
            panic!("{cmd}: {e}");
        }
    }
}

/// The file loaded into an engine of its own.
fn load(path: &Path) -> Engine {
    let e = Engine::new(EngineConfig::default());
    let f = std::fs::File::open(path).expect("the RDB file exists");
    e.load_rdb(std::io::BufReader::new(f), &LoadOptions::default())
        .expect("the file loads");
    e
}

fn run(e: &Engine, db: usize, line: &str) -> Reply {
    e.execute(
        db,
        line.split(' ')
            .map(|w| bytes::Bytes::copy_from_slice(w.as_bytes()))
            .collect(),
    )
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

#[test]
fn bgsave_is_a_point_in_time_snapshot() {
    let dir = TempDir::new("pit");
    // 3000 keys at 300 µs each: the save takes about a second.
    let srv = server(&dir.arg(), "", 300);
    let mut c = Conn::connect(srv.addr);
    let n = 2000;
    let mut fill: Vec<String> = (0..n).map(|i| format!("SET k{i} v{i}")).collect();
    fill.push("RPUSH list a b c".into());
    fill.push("HSET h f1 v1 f2 v2".into());
    fill.push("SET ttl v EX 10000".into());
    fill.push("SELECT 1".into());
    fill.extend((0..500).map(|i| format!("SET one{i} x{i}")));
    fill.push("SELECT 2".into());
    fill.extend((0..500).map(|i| format!("SET two{i} y{i}")));
    fill.push("SELECT 0".into());
    pipeline(&mut c, &fill);

    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    // Writes while it runs: overwrite, delete, create, change collections and TTLs,
    // flush a database, swap two.
    let mut writes: Vec<String> = Vec::new();
    writes.extend((0..n).step_by(7).map(|i| format!("SET k{i} changed")));
    writes.extend((3..n).step_by(11).map(|i| format!("DEL k{i}")));
    writes.extend((0..200).map(|i| format!("SET new{i} fresh")));
    writes.push("RPUSH list d".into());
    writes.push("HDEL h f1".into());
    writes.push("PERSIST ttl".into());
    writes.push("EXPIRE k5 1000".into());
    writes.push("RENAME k1 renamed".into());
    writes.push("SELECT 1".into());
    writes.push("FLUSHDB".into());
    writes.push("SET after-flush 1".into());
    writes.push("SWAPDB 1 2".into());
    writes.push("SELECT 0".into());
    pipeline(&mut c, &writes);
    // The writes went in while the save ran (else this test tests nothing).
    assert_eq!(info_field(&mut c, "rdb_bgsave_in_progress"), "1");
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Error("ERR Background save already in progress".into())
    );
    assert_eq!(
        c.cmd(&["SAVE"]),
        Resp::Error("ERR Background save already in progress".into())
    );
    assert_ne!(info_field(&mut c, "current_save_keys_total"), "0");
    wait_bgsave(&mut c);
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
    assert_eq!(info_field(&mut c, "rdb_saves"), "1");
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["dump.rdb"]);

    // The file is the keyspace as BGSAVE found it.
    let e = load(&dir.path().join("dump.rdb"));
    assert_eq!(run(&e, 0, "DBSIZE"), Reply::Int(n as i64 + 3));
    for i in 0..n {
        assert_eq!(
            run(&e, 0, &format!("GET k{i}")),
            bulk(&format!("v{i}")),
            "k{i}"
        );
    }
    assert_eq!(run(&e, 0, "EXISTS new0 renamed"), Reply::Int(0));
    assert_eq!(run(&e, 0, "TTL k5"), Reply::Int(-1));
    assert!(matches!(run(&e, 0, "TTL ttl"), Reply::Int(t) if t > 9000));
    assert_eq!(run(&e, 0, "LLEN list"), Reply::Int(3));
    assert_eq!(run(&e, 0, "HGET h f1"), bulk("v1"));
    assert_eq!(run(&e, 1, "DBSIZE"), Reply::Int(500));
    assert_eq!(run(&e, 1, "GET one7"), bulk("x7"));
    assert_eq!(run(&e, 2, "DBSIZE"), Reply::Int(500));
    assert_eq!(run(&e, 2, "GET two7"), bulk("y7"));
    // And the live keyspace has the writes.
    assert_eq!(c.cmd(&["GET", "k0"]), Resp::Bulk(Some(b"changed".to_vec())));
    assert_eq!(c.cmd(&["EXISTS", "k3"]), Resp::Int(0));
    assert_eq!(
        info_field(&mut c, "rdb_changes_since_last_save"),
        (writes.len() - 1).to_string(),
        "what was written during the save is not saved"
    );
}

#[test]
fn save_lastsave_info_and_settings() {
    let dir = TempDir::new("save");
    let srv = server(&dir.arg(), "", 0);
    let mut c = Conn::connect(srv.addr);
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_time_sec"), "-1");
    assert_eq!(info_field(&mut c, "aof_enabled"), "0");
    pipeline(&mut c, &["SET a 1".into(), "SET b 2".into()]);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "2");
    let Resp::Int(before) = c.cmd(&["LASTSAVE"]) else {
        panic!("LASTSAVE replies an integer")
    };
    assert_eq!(c.cmd(&["SAVE"]), Resp::Simple("OK".into()));
    let Resp::Int(after) = c.cmd(&["LASTSAVE"]) else {
        panic!("LASTSAVE replies an integer")
    };
    assert!(after >= before);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    assert_eq!(info_field(&mut c, "rdb_saves"), "1");
    let e = load(&dir.path().join("dump.rdb"));
    assert_eq!(run(&e, 0, "GET b"), bulk("2"));
    // A second BGSAVE right after the first one ended.
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    wait_bgsave(&mut c);
    assert_eq!(
        c.cmd(&["BGSAVE", "later"]),
        Resp::Error("ERR syntax error".into())
    );
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_time_sec"), "0");

    // The settings, with Redis's texts.
    let get = |c: &mut Conn, name: &str| match c.cmd(&["CONFIG", "GET", name]) {
        Resp::Array(Some(v)) => v.get(1).cloned(),
        r => panic!("{r:?}"),
    };
    assert_eq!(
        get(&mut c, "dir"),
        Some(Resp::Bulk(Some(
            std::fs::canonicalize(dir.path())
                .expect("dir")
                .to_string_lossy()
                .as_bytes()
                .to_vec()
        )))
    );
    for (name, value, err) in [
        ("dir", "/tmp", "can't set protected config"),
        ("dbfilename", "x.rdb", "can't set protected config"),
        ("save", "10", "Invalid save parameters"),
        ("save", "10 x", "Invalid save parameters"),
        ("rdbcompression", "maybe", "argument must be 'yes' or 'no'"),
    ] {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", name, value]),
            Resp::Error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {err}"
            ))
        );
    }
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "save", "100  5 10 1"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(
        get(&mut c, "save"),
        Some(Resp::Bulk(Some(b"100 5 10 1".to_vec())))
    );
    assert_eq!(
        EngineConfig::default().save,
        "3600 1 300 100 60 10000",
        "Redis's default save points"
    );
    assert_eq!(
        get(&mut c, "stop-writes-on-bgsave-error"),
        Some(Resp::Bulk(Some(b"yes".to_vec())))
    );
}

#[test]
fn a_failed_bgsave_stops_writes_with_misconf() {
    let base = TempDir::new("misconf");
    let dir = base.path().join("gone");
    std::fs::create_dir_all(&dir).expect("dir");
    let srv = server(dir.to_str().expect("utf-8"), "3600 1", 0);
    let mut c = Conn::connect(srv.addr);
    assert_eq!(c.cmd(&["SET", "k", "v"]), Resp::Simple("OK".into()));
    std::fs::remove_dir_all(&dir).expect("remove the dir");
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    wait_bgsave(&mut c);
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "err");
    let misconf = Resp::Error("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.".into());
    assert_eq!(c.cmd(&["SET", "k", "w"]), misconf);
    assert_eq!(c.cmd(&["PING"]), misconf);
    assert_eq!(c.cmd(&["GET", "k"]), Resp::Bulk(Some(b"v".to_vec())));
    // In-process commands (the sidecar's deletes) still land.
    assert_eq!(
        srv.engine.execute(0, vec!["DEL".into(), "k".into()]),
        Reply::Int(1)
    );
    // SAVE fails with Redis's bare error, and nothing was written anywhere.
    assert_eq!(c.cmd(&["SAVE"]), Resp::Error("ERR".into()));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["SET", "k", "w"]), Resp::Simple("OK".into()));
    // Once the directory is back, a good BGSAVE lifts the refusal.
    std::fs::create_dir_all(&dir).expect("dir");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "stop-writes-on-bgsave-error", "yes"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(c.cmd(&["SET", "k", "x"]), misconf);
    c.cmd(&["BGSAVE"]);
    wait_bgsave(&mut c);
    assert_eq!(c.cmd(&["SET", "k", "x"]), Resp::Simple("OK".into()));
}

#[test]
fn shutdown_and_debug_reload_save() {
    let dir = TempDir::new("shutdown");
    let srv = server(&dir.arg(), "3600 1", 0);
    let mut c = Conn::connect(srv.addr);
    pipeline(&mut c, &["SET a 1".into(), "RPUSH l x y".into()]);
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Resp::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["LRANGE", "l", "0", "-1"]).sorted(),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"x".to_vec())),
            Resp::Bulk(Some(b"y".to_vec())),
        ]))
    );
    assert!(dir.path().join("dump.rdb").exists());
    std::fs::remove_file(dir.path().join("dump.rdb")).expect("remove");
    assert_eq!(
        c.cmd(&["DEBUG", "RELOAD", "NOSAVE"]),
        Resp::Error("ERR Error trying to load the RDB dump, check server logs.".into())
    );
    pipeline(&mut c, &["SET b 2".into()]);
    c.send(&[b"SHUTDOWN"]);
    assert_eq!(c.try_read(), None, "SHUTDOWN closes without a reply");
    let e = load(&dir.path().join("dump.rdb"));
    assert_eq!(run(&e, 0, "GET b"), bulk("2"));
}

#[test]
fn shutdown_nosave_and_no_save_points_leave_no_file() {
    let dir = TempDir::new("nosave");
    let srv = server(&dir.arg(), "3600 1", 0);
    let mut c = Conn::connect(srv.addr);
    c.cmd(&["SET", "a", "1"]);
    c.send(&[b"SHUTDOWN", b"NOSAVE"]);
    assert_eq!(c.try_read(), None);
    assert!(!dir.path().join("dump.rdb").exists());
    let srv = server(&dir.arg(), "", 0);
    let mut c = Conn::connect(srv.addr);
    c.cmd(&["SET", "a", "1"]);
    c.send(&[b"SHUTDOWN"]);
    assert_eq!(c.try_read(), None);
    assert!(!dir.path().join("dump.rdb").exists());
    let srv = server(&dir.arg(), "", 0);
    let mut c = Conn::connect(srv.addr);
    c.cmd(&["SET", "a", "1"]);
    c.send(&[b"SHUTDOWN", b"SAVE"]);
    assert_eq!(c.try_read(), None);
    assert!(dir.path().join("dump.rdb").exists());
}

#[test]
fn the_save_schedule_saves_when_a_save_point_is_reached() {
    let dir = TempDir::new("schedule");
    // A save point of 1 second and 3 changes; the cron checks it hz times a second.
    let srv = server(&dir.arg(), "1 3", 0);
    let mut c = Conn::connect(srv.addr);
    pipeline(
        &mut c,
        &["SET a 1".into(), "SET b 2".into(), "SET c 3".into()],
    );
    let start = Instant::now();
    while info_field(&mut c, "rdb_saves") == "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no scheduled save"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_bgsave(&mut c);
    assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
    let e = load(&dir.path().join("dump.rdb"));
    assert_eq!(run(&e, 0, "DBSIZE"), Reply::Int(3));
    // BGSAVE SCHEDULE with nothing running starts at once.
    assert_eq!(
        c.cmd(&["BGSAVE", "SCHEDULE"]),
        Resp::Simple("Background saving started".into())
    );
    wait_bgsave(&mut c);
}

#[test]
fn a_killed_bgsave_leaves_the_next_one_alone() {
    let dir = TempDir::new("killed");
    let srv = server(&dir.arg(), "", 300);
    let mut c = Conn::connect(srv.addr);
    let fill: Vec<String> = (0..1500).map(|i| format!("SET k{i} v{i}")).collect();
    pipeline(&mut c, &fill);
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    // DEBUG RELOAD stops the running save, saves in the foreground and reloads.
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), Resp::Simple("OK".into()));
    assert_eq!(info_field(&mut c, "rdb_bgsave_in_progress"), "0");
    pipeline(&mut c, &["SET k0 second".into()]);
    // A new BGSAVE, while the killed one's thread may still be winding down.
    assert_eq!(
        c.cmd(&["BGSAVE"]),
        Resp::Simple("Background saving started".into())
    );
    let writes: Vec<String> = (0..1500).map(|i| format!("DEL k{i}")).collect();
    pipeline(&mut c, &writes);
    assert_eq!(info_field(&mut c, "rdb_bgsave_in_progress"), "1");
    wait_bgsave(&mut c);
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
    let e = load(&dir.path().join("dump.rdb"));
    assert_eq!(run(&e, 0, "DBSIZE"), Reply::Int(1500));
    assert_eq!(run(&e, 0, "GET k0"), bulk("second"));
    assert_eq!(run(&e, 0, "GET k1499"), bulk("v1499"));
    // Nothing left behind by the killed save (its thread removes its temporary file
    // when it notices).
    let names = || -> Vec<String> {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let start = Instant::now();
    while names() != ["dump.rdb"] {
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", names());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn debug_follows_enable_debug_command() {
    let dir = TempDir::new("debug");
    let refused = Resp::Error("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.".into());
    let srv = EngineServer::start_with(EngineConfig {
        listen: "127.0.0.1:0".into(),
        dir: dir.arg(),
        save: String::new(),
        ..Default::default()
    });
    let mut c = Conn::connect(srv.addr);
    // Redis's default, "no": refused, even DEBUG RELOAD; the embedding process may.
    assert_eq!(c.cmd(&["DEBUG", "RELOAD"]), refused);
    assert_eq!(c.cmd(&["DEBUG", "SLEEP", "0"]), refused);
    assert_eq!(
        srv.engine
            .execute(0, vec!["DEBUG".into(), "SLEEP".into(), "0".into()]),
        Reply::OK
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "enable-debug-command", "yes"]),
        Resp::Error("ERR CONFIG SET failed (possibly related to argument 'enable-debug-command') - can't set immutable config".into())
    );
    for (setting, allowed) in [("yes", true), ("local", true)] {
        let srv = EngineServer::start_with(EngineConfig {
            listen: "127.0.0.1:0".into(),
            dir: dir.arg(),
            save: String::new(),
            enable_debug_command: setting.into(),
            ..Default::default()
        });
        let mut c = Conn::connect(srv.addr);
        assert_eq!(
            c.cmd(&["DEBUG", "RELOAD"]) == Resp::Simple("OK".into()),
            allowed,
            "{setting}"
        );
    }
}
