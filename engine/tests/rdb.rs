//! The RDB format against real Redis 7.0: DUMP payloads cross between the engine and a
//! private redis-server in both directions, files the engine writes pass
//! `redis-check-rdb` and load into redis-server, and files redis-server saves load
//! into the engine, each time to the same keys, types, encodings, values and TTLs in
//! every database.

mod common;

use common::dataset::{assert_same, cmd, pipeline, populate_streams, snapshot, words, KeyState};
use common::{Conn, EngineServer, RedisServer, Resp};
use engine::persist::rdb::{Eviction, LoadOptions, WriteOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of its own for one test's files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("coherent-rdb-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared data set, streams included.
fn populate(c: &mut Conn) {
    common::dataset::populate(c);
    populate_streams(c);
}

/// Moves every key from one server to the other with DUMP and RESTORE (the TTL from
/// PTTL); returns how many payloads were byte-identical to the target's own DUMP of
/// the restored value, and how many were compared.
fn copy_by_dump(from: &mut Conn, to: &mut Conn, keys: &[KeyState]) -> (usize, usize) {
    let (mut same, mut compared) = (0, 0);
    for k in keys {
        let select = words(&format!("SELECT {}", k.db));
        pipeline(from, std::slice::from_ref(&select));
        pipeline(to, &[select]);
        let Resp::Bulk(Some(payload)) = pipeline(from, &[cmd(&[b"DUMP", &k.key])]).remove(0) else {
            panic!("DUMP of {:?} failed", k.key);
        };
        let ttl = k.ttl.max(0).to_string();
        let reply = pipeline(to, &[cmd(&[b"RESTORE", &k.key, ttl.as_bytes(), &payload])]).remove(0);
        assert_eq!(reply, Resp::Simple("OK".into()));
        // Hashtables are written in table order, which differs between the servers.
        if k.encoding != Resp::Bulk(Some(b"hashtable".to_vec())) {
            compared += 1;
            let own = pipeline(to, &[cmd(&[b"DUMP", &k.key])]).remove(0);
            if own == Resp::Bulk(Some(payload.clone())) {
                same += 1;
            } else {
                let own = match own {
                    Resp::Bulk(Some(b)) => b,
                    _ => Vec::new(),
                };
                let at = payload.iter().zip(&own).take_while(|(a, b)| a == b).count();
                eprintln!(
                    "DUMP of {:?} differs from byte {at} of {}/{}: {:?} vs {:?}",
                    String::from_utf8_lossy(&k.key),
                    payload.len(),
                    own.len(),
                    &payload[at.saturating_sub(8)..(at + 24).min(payload.len())],
                    &own[at.saturating_sub(8)..(at + 24).min(own.len())],
                );
            }
        }
    }
    pipeline(from, &[words("SELECT 0")]);
    pipeline(to, &[words("SELECT 0")]);
    (same, compared)
}

/// FUNCTION DUMP of one server restores in the other (two libraries: the payload's
/// order is each server's own), with FUNCTION LIST the same on both.
#[test]
fn function_dumps_cross_both_ways() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let mut r = Conn::connect(redis.addr());
    let mut e = Conn::connect(engine.addr);
    cross_function_dump(&mut r, &mut e);
    cross_function_dump(&mut e, &mut r);
}

fn cross_function_dump(from: &mut Conn, to: &mut Conn) {
    let libs = [
        cmd(&[b"FUNCTION", b"LOAD", LIB_A]),
        cmd(&[b"FUNCTION", b"LOAD", LIB_B]),
    ];
    pipeline(from, &[words("FUNCTION FLUSH")]);
    pipeline(to, &[words("FUNCTION FLUSH")]);
    pipeline(from, &libs);
    let Resp::Bulk(Some(payload)) = pipeline(from, &[words("FUNCTION DUMP")]).remove(0) else {
        panic!("FUNCTION DUMP");
    };
    pipeline(to, &[cmd(&[b"FUNCTION", b"RESTORE", &payload])]);
    let want = pipeline(from, &[words("FUNCTION LIST WITHCODE")])
        .remove(0)
        .sorted();
    let got = pipeline(to, &[words("FUNCTION LIST WITHCODE")])
        .remove(0)
        .sorted();
    assert_eq!(got, want);
    assert_eq!(
        pipeline(to, &[words("FCALL fb 1 n")]),
        vec![Resp::Int(1)],
        "the restored function runs"
    );
    pipeline(to, &[words("DEL n")]);
}

#[test]
fn dump_payloads_cross_both_ways() {
    let redis = RedisServer::start(&[]);
    let engine = EngineServer::start();
    let mut r = Conn::connect(redis.addr());
    let mut e = Conn::connect(engine.addr);
    populate(&mut r);
    let original = snapshot(&mut r);
    assert_eq!(original.len(), 26, "populate makes 26 keys");

    let (same, compared) = copy_by_dump(&mut r, &mut e, &original);
    assert_same("redis -> engine", &original, &snapshot(&mut e));
    assert_eq!(
        same, compared,
        "the engine's DUMP differs from Redis's for some keys"
    );

    pipeline(&mut r, &[words("FLUSHALL")]);
    let (same, compared) = copy_by_dump(&mut e, &mut r, &original);
    assert_same("engine -> redis", &original, &snapshot(&mut r));
    assert_eq!(same, compared);
}

/// Function libraries the engine saves (flags and a description included).
const LIB_A: &[u8] = b"#!lua name=liba\nredis.register_function{function_name='fa', callback=function(keys, args) return 'a' end, flags={'no-writes', 'allow-stale'}, description='the first library'}";
const LIB_B: &[u8] = b"#!lua name=libb\nredis.register_function('fb', function(keys, args) return redis.call('incr', keys[1]) end)";

/// Writes the engine's keyspace to `dir/name` as an RDB file.
fn write_engine_file(
    engine: &EngineServer,
    dir: &TempDir,
    name: &str,
    opts: &WriteOptions,
) -> PathBuf {
    let path = dir.path().join(name);
    let file = std::fs::File::create(&path).expect("create rdb");
    engine
        .engine
        .write_rdb(std::io::BufWriter::new(file), opts)
        .expect("write rdb");
    path
}

/// Runs redis-check-rdb on a file and requires it to pass.
fn check_rdb(path: &Path) {
    let out = Command::new("redis-check-rdb")
        .arg(path)
        .output()
        .expect("redis-check-rdb must be installed (apt-get install redis-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb {}:\n{text}",
        path.display()
    );
}

#[test]
fn engine_files_load_in_redis() {
    let engine = EngineServer::start();
    let mut e = Conn::connect(engine.addr);
    populate(&mut e);
    // A key idle for 1000 s, which the LRU variant carries over (made idle after the
    // snapshot, whose GET is an access).
    pipeline(
        &mut e,
        &[words("SELECT 15"), words("SET idle v"), words("SELECT 0")],
    );
    let ours = snapshot(&mut e);
    // Two function libraries, saved ahead of the databases.
    pipeline(
        &mut e,
        &[
            cmd(&[b"FUNCTION", b"LOAD", LIB_A]),
            cmd(&[b"FUNCTION", b"LOAD", LIB_B]),
        ],
    );
    let functions = pipeline(&mut e, &[words("FUNCTION LIST WITHCODE")])
        .remove(0)
        .sorted();
    pipeline(&mut e, &[words("SELECT 15")]);
    let payload = pipeline(&mut e, &[words("DUMP idle")]).remove(0);
    let Resp::Bulk(Some(payload)) = payload else {
        panic!("DUMP failed");
    };
    pipeline(
        &mut e,
        &[
            cmd(&[
                b"RESTORE",
                b"idle",
                b"0",
                &payload,
                b"REPLACE",
                b"IDLETIME",
                b"1000",
            ]),
            words("SELECT 0"),
        ],
    );
    let dir = TempDir::new("engine-files");
    let variants = [
        ("default.rdb", WriteOptions::default()),
        (
            "plain.rdb",
            WriteOptions {
                compression: false,
                checksum: false,
                ..Default::default()
            },
        ),
        (
            "lru.rdb",
            WriteOptions {
                eviction: Eviction::Lru,
                list_max_listpack_size: 16,
                ..Default::default()
            },
        ),
        (
            "lfu.rdb",
            WriteOptions {
                eviction: Eviction::Lfu,
                ..Default::default()
            },
        ),
    ];
    for (name, opts) in &variants {
        let path = write_engine_file(&engine, &dir, name, opts);
        check_rdb(&path);
        let redis = RedisServer::start(&["--dir", dir.arg(), "--dbfilename", name]);
        let mut r = Conn::connect(redis.addr());
        pipeline(&mut r, &[words("SELECT 15")]);
        let idle = pipeline(&mut r, &[words("OBJECT IDLETIME idle")]).remove(0);
        pipeline(&mut r, &[words("SELECT 0")]);
        assert_same(&format!("{name} in redis"), &ours, &snapshot(&mut r));
        let theirs = pipeline(&mut r, &[words("FUNCTION LIST WITHCODE")]).remove(0);
        assert_eq!(theirs.sorted(), functions, "{name}: the libraries in redis");
        if opts.eviction == Eviction::Lru {
            assert!(
                matches!(idle, Resp::Int(1000..=1100)),
                "{name}: idle {idle:?}"
            );
        } else {
            assert!(matches!(idle, Resp::Int(0..=100)), "{name}: idle {idle:?}");
        }
    }
}

/// Starts a redis-server with `args` saving into `dir`, fills it (every type and
/// encoding, DEBUG POPULATE in two databases, a function library), applies `config`,
/// SAVEs, and returns its keys and the file.
fn redis_save(
    dir: &TempDir,
    name: &str,
    args: &[&str],
    config: &[&str],
) -> (Vec<KeyState>, PathBuf) {
    let mut all = vec!["--dir", dir.arg(), "--enable-debug-command", "local"];
    all.extend_from_slice(args);
    let redis = RedisServer::start(&all);
    let mut r = Conn::connect(redis.addr());
    populate(&mut r);
    let mut cmds = vec![
        words("SELECT 2"),
        words("DEBUG POPULATE 2000 pop 20"),
        words("SELECT 0"),
        words("DEBUG POPULATE 500 zero"),
        cmd(&[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=lib\nredis.register_function('f', function() return 1 end)",
        ]),
    ];
    cmds.extend(config.iter().map(|c| words(c)));
    pipeline(&mut r, &cmds);
    let theirs = snapshot(&mut r);
    assert_eq!(theirs.len(), 26 + 2500);
    pipeline(&mut r, &[words("SAVE")]);
    // `dbfilename` is protected in Redis 7.0: each save is renamed to its own name.
    let path = dir.path().join(name);
    std::fs::rename(dir.path().join("dump.rdb"), &path).expect("redis saved dump.rdb");
    (theirs, path)
}

#[test]
fn redis_files_load_in_the_engine() {
    let dir = TempDir::new("redis-files");
    let saves: [(&str, &[&str], &[&str]); 4] = [
        ("default.rdb", &[], &[]),
        (
            "plain.rdb",
            &["--rdbchecksum", "no", "--rdbcompression", "no"],
            &[],
        ),
        ("lru.rdb", &[], &["CONFIG SET maxmemory-policy allkeys-lru"]),
        ("lfu.rdb", &[], &["CONFIG SET maxmemory-policy allkeys-lfu"]),
    ];
    for (name, args, config) in saves {
        let (theirs, path) = redis_save(&dir, name, args, config);
        let file = std::fs::File::open(&path).expect("open the saved file");
        let engine = EngineServer::start();
        let loaded = engine
            .engine
            .load_rdb(file, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.version, 10);
        assert_eq!(
            loaded.aux("redis-ver").map(|v| v.to_vec()),
            Some(b"7.0.15".to_vec())
        );
        assert_eq!(loaded.functions.len(), 1, "{name}: the function library");
        let mut e = Conn::connect(engine.addr);
        assert_eq!(
            pipeline(&mut e, &[words("FCALL f 0")]),
            vec![Resp::Int(1)],
            "{name}: the library's function runs in the engine"
        );
        assert_same(&format!("{name} in the engine"), &theirs, &snapshot(&mut e));
    }
}

/// Records the modification events of the write path.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl engine::KeyHook for Recorder {
    fn modified(&self, db: usize, key: &[u8], event: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{db}:{event}:{}", String::from_utf8_lossy(key)));
        }
    }
}

#[test]
fn restore_goes_through_the_write_path() {
    use bytes::Bytes;
    use engine::Reply;
    let engine = engine::Engine::new(engine::EngineConfig::default());
    let rec = std::sync::Arc::new(Recorder::default());
    engine.add_key_hook(rec.clone());
    let run = |args: &[&[u8]]| {
        let reply = engine.execute(0, args.iter().map(|a| Bytes::copy_from_slice(a)).collect());
        let events = std::mem::take(&mut *rec.0.lock().expect("recorder"));
        (reply, events)
    };
    run(&[b"SET", b"src", b"v"]);
    let (Reply::Bulk(payload), _) = run(&[b"DUMP", b"src"]) else {
        panic!("DUMP failed");
    };
    assert_eq!(
        run(&[b"RESTORE", b"k", b"0", &payload]),
        (Reply::OK, vec!["0:restore:k".into()])
    );
    // Refused: nothing changed, nothing recorded.
    let (reply, events) = run(&[b"RESTORE", b"k", b"0", &payload]);
    assert!(matches!(reply, Reply::Error(ref e) if e.starts_with("BUSYKEY")));
    assert!(events.is_empty());
    // A replace with a TTL already past deletes the old value.
    let (reply, events) = run(&[b"RESTORE", b"k", b"1", &payload, b"REPLACE", b"ABSTTL"]);
    assert_eq!((reply, events), (Reply::OK, vec!["0:del:k".to_string()]));
    assert_eq!(run(&[b"EXISTS", b"k"]).0, Reply::Int(0));
}

/// INFO persistence as text.
fn info(c: &mut Conn) -> String {
    match pipeline(c, &[words("INFO persistence")]).remove(0) {
        Resp::Bulk(Some(t)) | Resp::Verbatim(t) => String::from_utf8_lossy(&t).into_owned(),
        r => panic!("INFO replied {r:?}"),
    }
}

/// Every key of the snapshot, as DEL commands in its database.
fn delete_all(keys: &[KeyState]) -> Vec<Vec<Vec<u8>>> {
    let mut cmds = Vec::new();
    for k in keys {
        cmds.push(cmd(&[b"SELECT", k.db.to_string().as_bytes()]));
        cmds.push(cmd(&[b"DEL", &k.key]));
    }
    cmds.push(words("SELECT 0"));
    cmds
}

#[test]
fn engine_bgsave_loads_in_redis_while_everything_is_deleted() {
    let dir = TempDir::new("bgsave-files");
    // Slow enough (100 µs a key) for every DEL to land while the walk runs, so the
    // snapshot hook serializes most entries, of every type, before they go.
    let engine = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        dir: dir.arg().into(),
        save: String::new(),
        rdb_key_save_delay: 100,
        ..Default::default()
    });
    let mut e = Conn::connect(engine.addr);
    populate(&mut e);
    let ours = snapshot(&mut e);
    let mut more = Vec::new();
    for i in 0..2000 {
        more.push(cmd(&[b"SET", format!("pad:{i}").as_bytes(), b"x"]));
    }
    pipeline(&mut e, &more);
    pipeline(&mut e, &[cmd(&[b"FUNCTION", b"LOAD", LIB_A])]);
    pipeline(&mut e, &[words("BGSAVE")]);
    pipeline(&mut e, &delete_all(&ours));
    assert!(
        info(&mut e).contains("rdb_bgsave_in_progress:1"),
        "the deletes landed during the save"
    );
    while !info(&mut e).contains("rdb_bgsave_in_progress:0") {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let path = dir.path().join("dump.rdb");
    check_rdb(&path);
    let redis = RedisServer::start(&["--dir", dir.arg(), "--dbfilename", "dump.rdb"]);
    let mut r = Conn::connect(redis.addr());
    let theirs: Vec<KeyState> = snapshot(&mut r)
        .into_iter()
        .filter(|k| !k.key.starts_with(b"pad:"))
        .collect();
    assert_same("the engine's BGSAVE in redis", &ours, &theirs);
    assert_eq!(
        pipeline(&mut r, &[words("FCALL fa 0")]),
        vec![Resp::Bulk(Some(b"a".to_vec()))],
        "the engine's library in redis"
    );
}

#[test]
fn redis_dump_loads_at_engine_start() {
    let dir = TempDir::new("redis-start");
    let (theirs, path) = redis_save(&dir, "dump.rdb", &[], &[]);
    let engine = EngineServer::start_with(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        dir: dir.arg().into(),
        save: String::new(),
        ..Default::default()
    });
    let loaded = engine::persist::load_at_start(&engine.engine)
        .expect("loads")
        .expect("there is a file");
    assert_eq!(loaded.path, path);
    assert_eq!(loaded.keys as usize, theirs.len());
    let mut e = Conn::connect(engine.addr);
    assert_same(
        "redis's dump.rdb at the engine's start",
        &theirs,
        &snapshot(&mut e),
    );
    assert_eq!(pipeline(&mut e, &[words("FCALL f 0")]), vec![Resp::Int(1)]);
    let text = info(&mut e);
    assert!(
        text.contains(&format!("rdb_last_load_keys_loaded:{}", theirs.len())),
        "{text}"
    );
}
