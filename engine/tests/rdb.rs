//! The RDB format against real Redis 7.0: DUMP payloads cross between the engine and a
//! private redis-server in both directions, files the engine writes pass
//! `redis-check-rdb` and load into redis-server, and files redis-server saves load
//! into the engine, each time to the same keys, types, encodings, values and TTLs in
//! every database.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use engine::persist::rdb::{Eviction, LoadOptions, WriteOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Databases compared (the default `databases 16` of both servers).
const DBS: usize = 16;

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

/// Sends commands pipelined and returns their replies; panics on an error reply.
fn pipeline(c: &mut Conn, cmds: &[Vec<Vec<u8>>]) -> Vec<Resp> {
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        c.send(&args);
    }
    cmds.iter()
        .map(|cmd| {
            let r = c.read();
            if let Resp::Error(e) = &r {
                panic!("{:?}: {e}", String::from_utf8_lossy(&cmd[0]));
            }
            r
        })
        .collect()
}

/// A command from words (`"SET k v"`), or from byte strings.
fn words(s: &str) -> Vec<Vec<u8>> {
    s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

/// Every type in each of its encodings, TTLs, binary keys and values, in five
/// databases (the same commands for both servers).
fn populate(c: &mut Conn) {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut push = |v: Vec<Vec<u8>>| cmds.push(v);
    push(words("SELECT 0"));
    push(words("SET str:int -12345"));
    push(words("SET str:bigint 9223372036854775807"));
    push(words("SET str:embstr hello"));
    push(cmd(&[
        b"SET",
        b"str:raw",
        "compressible text ".repeat(20).as_bytes(),
    ]));
    push(cmd(&[
        b"SET",
        b"str:random",
        &(0..200u32)
            .map(|i| (i * 97 % 251) as u8)
            .collect::<Vec<_>>(),
    ]));
    push(cmd(&[b"SET", b"str:\x00bin\xff", b"\x00\x01\x02"]));
    push(cmd(&[b"SET", b"str:empty", b""]));
    push(words("SET 42 key-that-is-an-integer"));
    push(words("PEXPIRE str:embstr 100000"));
    push(words("PEXPIREAT str:int 4102444800000"));
    // Lists: one node, several 8 KiB nodes, a node with one big element.
    push(words("RPUSH list:small a b 1 -2 300 70000 12345678901"));
    for chunk in 0..6 {
        let mut c = vec![b"RPUSH".to_vec(), b"list:long".to_vec()];
        c.extend((0..500).map(|i| format!("element-{}", chunk * 500 + i).into_bytes()));
        push(c);
    }
    push(cmd(&[
        b"RPUSH",
        b"list:big",
        b"head",
        &vec![b'B'; 20_000],
        b"tail",
    ]));
    push(words("PEXPIRE list:long 200000"));
    push(words("SELECT 1"));
    // Hashes: listpack, and hashtable by size and by a long value.
    push(words("HSET hash:lp name ada born 1815 n -7"));
    let mut big = vec![b"HSET".to_vec(), b"hash:ht".to_vec()];
    for i in 0..600 {
        big.push(format!("field:{i}").into_bytes());
        big.push(i.to_string().into_bytes());
    }
    push(big);
    push(cmd(&[b"HSET", b"hash:longvalue", b"f", &[b'v'; 100]]));
    // Sets: intsets of each width, hashtables by strings and by size.
    push(words("SADD set:int16 1 2 3 -4"));
    push(words("SADD set:int32 1 100000"));
    push(words("SADD set:int64 1 10000000000"));
    push(words("SADD set:strings a b c 1"));
    let mut big = vec![b"SADD".to_vec(), b"set:bigints".to_vec()];
    big.extend((0..600).map(|i| (i * 3).to_string().into_bytes()));
    push(big);
    push(words("PEXPIRE set:strings 300000"));
    push(words("SELECT 9"));
    // Sorted sets: listpack (integer, fractional, infinite scores) and skiplist.
    push(words(
        "ZADD zset:lp 1 a 2.5 b -inf c inf d 0.1 e 1e20 f -3 g",
    ));
    let mut big = vec![b"ZADD".to_vec(), b"zset:sl".to_vec()];
    for i in 0..300 {
        big.push(format!("{}", i as f64 / 7.0).into_bytes());
        big.push(format!("member:{i}").into_bytes());
    }
    push(big);
    push(cmd(&[b"ZADD", b"zset:longmember", b"1", &[b'm'; 80]]));
    push(words("PEXPIRE zset:sl 400000"));
    push(words("SELECT 15"));
    push(words("SET last db"));
    // Streams: entries with the master's fields and others, tombstones, several
    // blocks, an emptied stream, and consumer groups with pending entries.
    push(words("SELECT 3"));
    push(words("XADD stream:small 1-1 name ada born 1815"));
    push(words("XADD stream:small 1-2 name alan born 1912"));
    push(words("XADD stream:small 5-0 other field n -7"));
    push(words("XADD stream:small 5-1 name grace born 1906"));
    push(words("XDEL stream:small 1-2"));
    push(words("PEXPIRE stream:small 500000"));
    for i in 1..=260 {
        let v = "payload ".repeat(i % 7);
        push(cmd(&[
            b"XADD",
            b"stream:big",
            format!("{i}-{i}").as_bytes(),
            b"n",
            i.to_string().as_bytes(),
            b"text",
            v.as_bytes(),
        ]));
    }
    push(words("XDEL stream:big 100-100 101-101 200-200"));
    push(words("XTRIM stream:big MINID 3-3"));
    push(words("XADD stream:empty 7-7 a b"));
    push(words("XDEL stream:empty 7-7"));
    push(words("XGROUP CREATE stream:big readers 0"));
    push(words("XGROUP CREATE stream:big late $ ENTRIESREAD 3"));
    push(words(
        "XREADGROUP GROUP readers alice COUNT 10 STREAMS stream:big >",
    ));
    push(words(
        "XREADGROUP GROUP readers bob COUNT 5 STREAMS stream:big >",
    ));
    push(words(
        "XREADGROUP GROUP readers bob NOACK COUNT 5 STREAMS stream:big >",
    ));
    push(words("XACK stream:big readers 4-4 5-5"));
    push(words(
        "XCLAIM stream:big readers carol 0 6-6 7-7 TIME 1700000000000",
    ));
    push(words("XGROUP CREATECONSUMER stream:big readers idle"));
    push(words("XGROUP CREATE stream:empty g $"));
    push(words("SELECT 0"));
    pipeline(c, &cmds);
}

/// One key as both servers must agree on it; `ttl` is PTTL (-1 for none).
#[derive(Debug, Clone, PartialEq)]
struct KeyState {
    db: usize,
    key: Vec<u8>,
    kind: Resp,
    encoding: Resp,
    value: Resp,
    ttl: i64,
}

/// Every key of every database with its type, encoding, value and PTTL.
fn snapshot(c: &mut Conn) -> Vec<KeyState> {
    let mut out = Vec::new();
    for db in 0..DBS {
        pipeline(c, &[words(&format!("SELECT {db}"))]);
        let Resp::Array(Some(keys)) = c.cmd(&["KEYS", "*"]) else {
            panic!("KEYS failed");
        };
        let mut keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter_map(|k| match k {
                Resp::Bulk(Some(k)) => Some(k),
                _ => None,
            })
            .collect();
        keys.sort();
        for key in keys {
            let kind = pipeline(c, &[cmd(&[b"TYPE", &key])]).remove(0);
            let read: &[&[u8]] = match &kind {
                Resp::Simple(t) if t == "string" => &[b"GET"],
                Resp::Simple(t) if t == "list" => &[b"LRANGE", b"0", b"-1"],
                Resp::Simple(t) if t == "hash" => &[b"HGETALL"],
                Resp::Simple(t) if t == "set" => &[b"SMEMBERS"],
                Resp::Simple(t) if t == "zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
                // Everything a stream holds: entries, IDs, counters, groups, PELs
                // with their delivery times and counts, consumers' seen times.
                Resp::Simple(t) if t == "stream" => &[b"XINFO", b"STREAM", b"FULL", b"COUNT", b"0"],
                other => panic!("unexpected type {other:?}"),
            };
            let get = if read[0] == b"XINFO" {
                let mut v = vec![read[0].to_vec(), read[1].to_vec(), key.clone()];
                v.extend(read[2..].iter().map(|a| a.to_vec()));
                v
            } else {
                let mut v = vec![read[0].to_vec(), key.clone()];
                v.extend(read[1..].iter().map(|a| a.to_vec()));
                v
            };
            let r = pipeline(
                c,
                &[
                    get,
                    cmd(&[b"OBJECT", b"ENCODING", &key]),
                    cmd(&[b"PTTL", &key]),
                ],
            );
            let value = match &kind {
                Resp::Simple(t) if t == "hash" => r[0].clone().sorted_pairs(),
                Resp::Simple(t) if t == "set" => r[0].clone().sorted(),
                _ => r[0].clone(),
            };
            let Resp::Int(ttl) = r[2] else {
                panic!("PTTL failed");
            };
            out.push(KeyState {
                db,
                key,
                kind,
                encoding: r[1].clone(),
                value,
                ttl,
            });
        }
    }
    pipeline(c, &[words("SELECT 0")]);
    out
}

/// Same keys, types, encodings and values; TTLs both absent or within 10 s of each
/// other (the servers read them at different moments).
fn assert_same(what: &str, a: &[KeyState], b: &[KeyState]) {
    let names = |v: &[KeyState]| -> Vec<(usize, Vec<u8>)> {
        v.iter().map(|k| (k.db, k.key.clone())).collect()
    };
    assert_eq!(names(a), names(b), "{what}: the key sets differ");
    for (x, y) in a.iter().zip(b) {
        let key = String::from_utf8_lossy(&x.key);
        assert_eq!(
            (&x.kind, &x.encoding, &x.value),
            (&y.kind, &y.encoding, &y.value),
            "{what}: db {} key {key:?}",
            x.db
        );
        assert!(
            (x.ttl == -1 && y.ttl == -1)
                || (x.ttl > 0 && y.ttl > 0 && (x.ttl - y.ttl).abs() < 10_000),
            "{what}: db {} key {key:?}: PTTL {} vs {}",
            x.db,
            x.ttl,
            y.ttl
        );
    }
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
        assert_eq!(
            loaded.skipped.functions, 1,
            "{name}: the function library is skipped"
        );
        let mut e = Conn::connect(engine.addr);
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
    let text = info(&mut e);
    assert!(
        text.contains(&format!("rdb_last_load_keys_loaded:{}", theirs.len())),
        "{text}"
    );
}
