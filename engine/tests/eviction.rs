//! Eviction under `maxmemory`: the engine stays within its limit on a cache-aside
//! workload and evicts by Redis's policies, and a private redis-server under the same
//! limit and trace gives the reference hit ratio.
//!
//! `used_memory` counts every allocation of this test process (the engine runs in
//! it), so the tests run one at a time (`SERIAL`) to keep each other's memory out of
//! the figure.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const VALUE: usize = 1000;

fn value() -> Vec<u8> {
    vec![b'x'; VALUE]
}

/// A field of an INFO reply.
fn info_field(c: &mut Conn, section: &str, field: &str) -> String {
    let Resp::Bulk(Some(b)) = c.cmd(&["INFO", section]) else {
        panic!("INFO replies a bulk string")
    };
    let text = String::from_utf8_lossy(&b).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .trim()
        .to_string()
}

fn info_u64(c: &mut Conn, section: &str, field: &str) -> u64 {
    info_field(c, section, field)
        .parse()
        .unwrap_or_else(|_| panic!("{field} is a number"))
}

fn ok(r: Resp) {
    assert_eq!(r, Resp::Simple("OK".into()));
}

/// Zipf(s) ranks over `n` keys, drawn with a seeded generator so that both servers
/// see the same trace.
fn zipf_trace(n: usize, s: f64, len: usize, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for k in 1..=n {
        sum += 1.0 / (k as f64).powf(s);
        cdf.push(sum);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len)
        .map(|_| {
            let u = rng.f64() * sum;
            cdf.partition_point(|&c| c < u).min(n - 1) as u32
        })
        .collect()
}

/// The trace with a scan mixed in: every fifth request is a key never asked for
/// before (`u32::MAX - n`), a one-hit wonder.
fn with_scan(trace: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(trace.len() * 5 / 4);
    for (i, &k) in trace.iter().enumerate() {
        out.push(k);
        if i % 4 == 3 {
            out.push(u32::MAX - i as u32);
        }
    }
    out
}

/// Runs the cache-aside trace (GET; SET of a 1,000-byte value on a miss), pipelined
/// in batches; returns the hit ratio (of the keys below 2^31: scan keys are not
/// counted) and the largest `used_memory` seen after a batch.
fn cache_aside(c: &mut Conn, trace: &[u32]) -> (f64, u64) {
    let v = value();
    let mut hits = 0usize;
    let mut max_used = 0;
    for (i, batch) in trace.chunks(200).enumerate() {
        let keys: Vec<String> = batch.iter().map(|k| format!("key:{k}")).collect();
        for k in &keys {
            c.send(&[b"GET", k.as_bytes()]);
        }
        let mut misses = Vec::new();
        for (k, &n) in keys.iter().zip(batch) {
            match c.read() {
                Resp::Bulk(Some(_)) => hits += usize::from(n < 1 << 31),
                Resp::Bulk(None) => misses.push(k),
                r => panic!("GET {k}: {r:?}"),
            }
        }
        for k in &misses {
            c.send(&[b"SET", k.as_bytes(), &v]);
        }
        for k in &misses {
            let r = c.read();
            assert_eq!(r, Resp::Simple("OK".into()), "SET {k}");
        }
        if i % 10 == 0 {
            max_used = max_used.max(info_u64(c, "memory", "used_memory"));
        }
    }
    let counted = trace.iter().filter(|&&k| k < 1 << 31).count();
    (hits as f64 / counted as f64, max_used)
}

fn engine() -> (EngineServer, Conn) {
    let e = EngineServer::start();
    let c = Conn::connect(e.addr);
    (e, c)
}

#[test]
fn cache_aside_stays_within_maxmemory_with_redis_hit_ratio() {
    let _g = serial();
    const MAX: u64 = 32 << 20;
    let trace = zipf_trace(100_000, 0.99, 150_000, 42);
    let (_e, mut ec) = engine();
    ok(ec.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]));
    ok(ec.cmd(&["CONFIG", "SET", "maxmemory", "32mb"]));
    let (engine_hits, engine_max) = cache_aside(&mut ec, &trace);
    let evicted = info_u64(&mut ec, "stats", "evicted_keys");
    let used = info_u64(&mut ec, "memory", "used_memory");
    let keys = match ec.cmd(&["DBSIZE"]) {
        Resp::Int(n) => n,
        r => panic!("{r:?}"),
    };

    let redis = RedisServer::start(&["--maxmemory", "32mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut rc = Conn::connect(redis.addr());
    let (redis_hits, redis_max) = cache_aside(&mut rc, &trace);
    let redis_keys = match rc.cmd(&["DBSIZE"]) {
        Resp::Int(n) => n,
        r => panic!("{r:?}"),
    };
    println!(
        "allkeys-lru, 32mb, {} requests: hit ratio engine {engine_hits:.3} redis {redis_hits:.3}; \
         keys engine {keys} redis {redis_keys}; max used_memory engine {engine_max} redis {redis_max}; \
         engine evicted {evicted}",
        trace.len()
    );
    assert!(evicted > 0, "evicted_keys grows");
    // Redis's rule: memory may pass the limit by what one command allocates, and is
    // brought back before the next one.
    assert!(
        engine_max <= MAX + (1 << 20),
        "used_memory {engine_max} over 32mb"
    );
    assert!(used <= MAX + (1 << 20), "used_memory {used} over 32mb");
    assert!(
        engine_hits >= redis_hits - 0.03,
        "engine hit ratio {engine_hits:.3}, redis {redis_hits:.3}"
    );
}

#[test]
fn noeviction_refuses_writes_once_full_and_reads_and_deletes_go_on() {
    let _g = serial();
    let (_e, mut c) = engine();
    let used = info_u64(&mut c, "memory", "used_memory");
    let limit = (used + (2 << 20)).to_string();
    ok(c.cmd(&["CONFIG", "SET", "maxmemory", &limit]));
    let v = value();
    let mut stored = 0;
    let err = loop {
        let k = format!("k:{stored}");
        c.send(&[b"SET", k.as_bytes(), &v]);
        match c.read() {
            Resp::Simple(_) => stored += 1,
            Resp::Error(e) => break e,
            r => panic!("{r:?}"),
        }
        assert!(stored < 100_000, "never refused");
    };
    assert_eq!(
        err,
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert!(stored > 100, "{stored} keys before the limit");
    assert_eq!(info_u64(&mut c, "stats", "evicted_keys"), 0);
    assert_eq!(c.cmd(&["DBSIZE"]), Resp::Int(stored));
    assert!(matches!(c.cmd(&["GET", "k:0"]), Resp::Bulk(Some(_))));
    // Deleting makes room again.
    let del: Vec<String> = (0..200).map(|i| format!("k:{i}")).collect();
    let mut args = vec!["DEL"];
    args.extend(del.iter().map(|s| s.as_str()));
    assert_eq!(c.cmd(&args), Resp::Int(200));
    ok(c.cmd(&["SET", "again", "v"]));
}

/// Fills `n` keys of 1,000 bytes named `prefix:i`; with `ttl`, key i gets `ttl + i`
/// seconds.
fn fill(c: &mut Conn, prefix: &str, n: usize, ttl: Option<u64>) -> Vec<Resp> {
    let v = value();
    for i in 0..n {
        let k = format!("{prefix}:{i}");
        match ttl {
            Some(t) => {
                let ex = (t + i as u64).to_string();
                c.send(&[b"SET", k.as_bytes(), &v, b"EX", ex.as_bytes()])
            }
            None => c.send(&[b"SET", k.as_bytes(), &v]),
        }
    }
    (0..n).map(|_| c.read()).collect()
}

fn exists(c: &mut Conn, prefix: &str, range: std::ops::Range<usize>) -> usize {
    range
        .filter(|i| c.cmd(&["EXISTS", &format!("{prefix}:{i}")]) == Resp::Int(1))
        .count()
}

#[test]
fn volatile_policies_evict_only_keys_with_a_ttl() {
    let _g = serial();
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let (_e, mut c) = engine();
        ok(c.cmd(&["CONFIG", "SET", "maxmemory-policy", policy]));
        fill(&mut c, "keep", 2000, None);
        let used = info_u64(&mut c, "memory", "used_memory");
        let limit = (used + (1 << 20)).to_string();
        ok(c.cmd(&["CONFIG", "SET", "maxmemory", &limit]));
        // 3 MB of keys with a TTL into 1 MB of room: some of them go, never a `keep`.
        let replies = fill(&mut c, "ttl", 3000, Some(1000));
        assert!(
            replies.iter().all(|r| *r == Resp::Simple("OK".into())),
            "{policy}"
        );
        let evicted = info_u64(&mut c, "stats", "evicted_keys");
        assert!(evicted >= 1000, "{policy}: evicted {evicted}");
        assert_eq!(exists(&mut c, "keep", 0..2000), 2000, "{policy}");
        if policy == "volatile-ttl" {
            // The soonest to expire go first: the later half mostly survived.
            let early = exists(&mut c, "ttl", 0..1500);
            let late = exists(&mut c, "ttl", 1500..3000);
            assert!(late > early, "{policy}: early {early} late {late}");
        }
        // Without keys with a TTL there is nothing to evict: out of memory.
        let more = fill(&mut c, "more", 3000, None);
        assert!(
            more.contains(&Resp::Error(
                "OOM command not allowed when used memory > 'maxmemory'.".into()
            )),
            "{policy}"
        );
        assert_eq!(exists(&mut c, "keep", 0..2000), 2000, "{policy}");
    }
}

#[test]
fn lru_keeps_recent_keys_and_lfu_keeps_frequent_ones() {
    let _g = serial();
    for policy in ["allkeys-lru", "allkeys-lfu"] {
        let (_e, mut c) = engine();
        ok(c.cmd(&["CONFIG", "SET", "maxmemory-policy", policy]));
        // No time limit per command: all of the eviction happens before the reply.
        ok(c.cmd(&["CONFIG", "SET", "maxmemory-eviction-tenacity", "100"]));
        fill(&mut c, "k", 3000, None);
        if policy == "allkeys-lru" {
            // The LRU clock counts seconds.
            std::thread::sleep(Duration::from_millis(1100));
        }
        let hits = if policy == "allkeys-lfu" { 10 } else { 1 };
        for _ in 0..hits {
            for i in 0..1000 {
                c.send(&[b"GET", format!("k:{i}").as_bytes()]);
            }
            for _ in 0..1000 {
                c.read();
            }
        }
        // Room for about half of the keys: cold ones go.
        let used = info_u64(&mut c, "memory", "used_memory");
        let limit = (used - (1500 * 1100)).to_string();
        ok(c.cmd(&["CONFIG", "SET", "maxmemory", &limit]));
        ok(c.cmd(&["SET", "trigger", "v"]));
        let evicted = info_u64(&mut c, "stats", "evicted_keys");
        assert!(evicted >= 1000, "{policy}: evicted {evicted}");
        let hot = exists(&mut c, "k", 0..1000);
        assert!(hot >= 950, "{policy}: {hot} of 1000 hot keys survived");
        if policy == "allkeys-lfu" {
            assert!(
                matches!(c.cmd(&["OBJECT", "FREQ", "k:1"]), Resp::Int(n) if n >= 6),
                "a hot key's counter grew"
            );
        }
    }
}

#[test]
fn an_evicted_key_is_announced_as_evicted() {
    let _g = serial();
    let (e, mut c) = engine();
    ok(c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Ee"]));
    ok(c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]));
    ok(c.cmd(&["CONFIG", "SET", "maxmemory-eviction-tenacity", "100"]));
    let mut sub = Conn::connect(e.addr);
    sub.cmd(&["SUBSCRIBE", "__keyevent@0__:evicted"]);
    fill(&mut c, "k", 100, None);
    ok(c.cmd(&["CONFIG", "SET", "maxmemory", "1"]));
    // CONFIG SET maxmemory evicts at once, as in Redis.
    assert_eq!(c.cmd(&["DBSIZE"]), Resp::Int(0));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        match sub.read() {
            Resp::Array(Some(m)) | Resp::Push(m) => {
                assert_eq!(m[0], Resp::Bulk(Some(b"message".to_vec())));
                if let Resp::Bulk(Some(k)) = &m[2] {
                    seen.insert(String::from_utf8_lossy(k).into_owned());
                }
            }
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(seen.len(), 100);
    assert_eq!(info_u64(&mut c, "stats", "evicted_keys"), 100);
    ok(c.cmd(&["CONFIG", "SET", "maxmemory", "0"]));
}

/// The `maxmemory` that gives the engine in this process the same room for data as
/// a fresh redis-server gets from 32mb: the test's own allocations (the traces, the
/// harness) count in the engine's `used_memory` and must not shrink its data.
fn same_room(engine: &mut Conn) -> String {
    let redis = RedisServer::start(&[]);
    let mut rc = Conn::connect(redis.addr());
    let redis_base = info_u64(&mut rc, "memory", "used_memory");
    let engine_base = info_u64(engine, "memory", "used_memory");
    ((32u64 << 20) + engine_base.saturating_sub(redis_base)).to_string()
}

/// Hit ratio of `policy` on `trace` with 32mb: the engine's, or Redis's.
fn hit_ratio(policy: &str, trace: &[u32], redis: bool) -> f64 {
    let (_e, _r, mut c);
    if redis {
        _r = RedisServer::start(&["--maxmemory", "32mb", "--maxmemory-policy", policy]);
        c = Conn::connect(_r.addr());
    } else {
        (_e, c) = engine();
        ok(c.cmd(&["CONFIG", "SET", "maxmemory-policy", policy]));
        let room = same_room(&mut c);
        ok(c.cmd(&["CONFIG", "SET", "maxmemory", &room]));
    }
    let h = cache_aside(&mut c, trace).0;
    if std::env::var("EVICTION_DEBUG").is_ok() {
        let keys = c.cmd(&["DBSIZE"]);
        let ev = info_u64(&mut c, "stats", "evicted_keys");
        let used = info_u64(&mut c, "memory", "used_memory");
        println!("{policy} redis={redis}: hit {h:.4} keys {keys:?} evicted {ev} used {used}");
    }
    h
}

#[test]
fn tinylfu_admission_matches_redis_best_and_resists_scans() {
    let _g = serial();
    let plain = zipf_trace(200_000, 0.99, 300_000, 7);
    let scan = with_scan(&plain);
    for (name, trace) in [("plain", &plain), ("scan", &scan)] {
        let tiny = hit_ratio("allkeys-tinylfu", trace, false);
        let lru = hit_ratio("allkeys-lru", trace, true);
        let lfu = hit_ratio("allkeys-lfu", trace, true);
        println!("{name}: engine allkeys-tinylfu {tiny:.3}, redis allkeys-lru {lru:.3}, redis allkeys-lfu {lfu:.3}");
        let best = lru.max(lfu);
        // Most misses of these traces are first requests, which no policy can
        // avoid (a simulation with exact counts and an exact LRU gives W-TinyLFU
        // 0.759 plain and 0.740 with the scan): at least Redis's best, within
        // sampling noise (and the engine here holds the test's own memory too).
        assert!(
            tiny >= best - 0.01,
            "{name}: tinylfu {tiny:.3} lru {lru:.3} lfu {lfu:.3}"
        );
        if name == "scan" {
            // One request in five is a key never seen again: LRU lets each one in
            // and push a key out; admission keeps them from displacing the hot set.
            assert!(tiny > lru + 0.03, "{name}: tinylfu {tiny:.3} lru {lru:.3}");
        }
    }
}

#[test]
fn unlink_and_async_flushes_free_big_values_off_the_command_path() {
    let _g = serial();
    let (_e, mut c) = engine();
    let big = |c: &mut Conn, key: &str| {
        let mut args = vec!["SADD".to_string(), key.to_string()];
        args.extend((0..1000).map(|i| format!("member:{i}")));
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        assert_eq!(c.cmd(&a), Resp::Int(1000));
    };
    let freed = |c: &mut Conn| info_u64(c, "memory", "lazyfreed_objects");
    let wait_freed = |c: &mut Conn, more_than: u64| {
        for _ in 0..500 {
            if freed(c) > more_than {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the lazy-free thread freed nothing");
    };
    big(&mut c, "a");
    let before = freed(&mut c);
    assert_eq!(c.cmd(&["UNLINK", "a", "missing"]), Resp::Int(1));
    assert_eq!(c.cmd(&["EXISTS", "a"]), Resp::Int(0));
    wait_freed(&mut c, before);
    // A small value is freed at once, as in Redis (below 64 elements).
    ok(c.cmd(&["SET", "small", "v"]));
    let before = freed(&mut c);
    assert_eq!(c.cmd(&["UNLINK", "small"]), Resp::Int(1));
    big(&mut c, "b");
    ok(c.cmd(&["FLUSHALL", "ASYNC"]));
    assert_eq!(c.cmd(&["DBSIZE"]), Resp::Int(0));
    wait_freed(&mut c, before);
    // DEL with lazyfree-lazy-user-del behaves as UNLINK.
    ok(c.cmd(&["CONFIG", "SET", "lazyfree-lazy-user-del", "yes"]));
    big(&mut c, "c");
    let before = freed(&mut c);
    assert_eq!(c.cmd(&["DEL", "c"]), Resp::Int(1));
    wait_freed(&mut c, before);
    assert_eq!(c.cmd(&["FLUSHDB", "SYNC"]), Resp::Simple("OK".into()));
    assert!(matches!(c.cmd(&["FLUSHDB", "LATER"]), Resp::Error(e) if e == "ERR syntax error"));
}
