//! Against private redis-server processes started here (single node and a
//! three-node cluster), on free ports, stopped by PID.

use super::sweeper::{sweep, SweepConfig};
use super::*;
use crate::rules::{RuleConfig, Rules};
use crate::targets::stack::{self, StackConfig};
use crate::targets::{DeleteCommand, DeleteService, TargetConfig};
use crate::testing::{RedisCluster, RedisServer};
use cache_aside::connection::by_slot;
use std::time::{Duration, Instant};

/// The target `cfg` describes, in its stack.
async fn connect(cfg: &TargetConfig) -> Result<DeleteService, TargetError> {
    let t = RedisTarget::connect(cfg).await?;
    Ok(stack::build(t, StackConfig::for_target(cfg), ()))
}

fn keys(prefix: &str, n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("{prefix}:{i}")))
        .collect()
}

fn dbsize(s: &RedisServer) -> u64 {
    s.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap()
}

fn fill(s: &RedisServer, prefix: &str, n: usize) {
    let mut args = vec!["MSET".to_string()];
    for i in 0..n {
        args.push(format!("{prefix}:{i}"));
        args.push("v".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    s.cli(&args).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_pipelined_unlink_and_del() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let s = RedisServer::start(&[]).unwrap();
    for command in [DeleteCommand::Unlink, DeleteCommand::Del] {
        fill(&s, "user", 2000);
        fill(&s, "keep", 10);
        let cfg = TargetConfig {
            command,
            ..TargetConfig::redis(format!("{}/0", s.url()))
        };
        let mut t = connect(&cfg).await.unwrap();
        // 2000 keys: four UNLINK/DEL commands in one pipeline.
        t.send(&keys("user", 2000)).await.unwrap();
        assert_eq!(dbsize(&s), 10, "{command:?}");
        s.cli(&["FLUSHALL"]).unwrap();
    }
    // A database number and a password in the URL.
    s.cli(&["CONFIG", "SET", "requirepass", "pw"]).unwrap();
    let s2 = |args: &[&str]| {
        let mut a = vec!["-a", "pw", "--no-auth-warning", "-n", "3"];
        a.extend_from_slice(args);
        s.cli(&a).unwrap()
    };
    s2(&["SET", "user:1", "x"]);
    let mut t = connect(&TargetConfig::redis(format!(
        "redis://:pw@127.0.0.1:{}/3",
        s.port()
    )))
    .await
    .unwrap();
    // An invalidation also voids the key's lease (the side key the cache-aside
    // library's scripts keep, a hash of `token` or, after a fill, `written`), unless
    // `void_leases = false`.
    s2(&["HSET", "{user:1}:lease", "written", "1764000000000"]);
    t.send(&keys("user", 2)).await.unwrap();
    assert_eq!(s2(&["EXISTS", "user:1"]).trim(), "0");
    assert_eq!(s2(&["EXISTS", "{user:1}:lease"]).trim(), "0");
    let mut keep_leases = connect(&TargetConfig {
        void_leases: false,
        ..TargetConfig::redis(format!("redis://:pw@127.0.0.1:{}/3", s.port()))
    })
    .await
    .unwrap();
    s2(&["SET", "user:1", "x"]);
    s2(&["SET", "{user:1}:lease", "token"]);
    keep_leases.send(&keys("user", 2)).await.unwrap();
    assert_eq!(s2(&["EXISTS", "user:1"]).trim(), "0");
    assert_eq!(s2(&["EXISTS", "{user:1}:lease"]).trim(), "1");
    let bad = RedisTarget::connect(&TargetConfig::redis(format!(
        "redis://:wrong@127.0.0.1:{}/0",
        s.port()
    )))
    .await;
    assert!(bad.is_err());
}

/// One rule, `user:{id}` keys with a 1 h TTL backstop.
fn users_with_1h_backstop() -> Rules {
    Rules::compile(&[RuleConfig {
        table: "app.users".into(),
        keys: vec!["user:{id}".into()],
        columns: None,
        double_delete: Default::default(),
        ttl_backstop: crate::duration::HumanDuration::parse("1h").unwrap(),
        value: None,
    }])
    .unwrap()
}

/// The cache-aside library's lease fill leaves its write time in the side key; the
/// sidecar's invalidation deletes it with the value, and the TTL backstop gives it
/// the value's backstop, so `written` never outlives its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_write_time_goes_with_its_value() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let s = RedisServer::start(&[]).unwrap();
    let lib = cache_aside::CacheClient::redis(&s.url()).await.unwrap();
    let fill = |key: &'static str, ttl: Option<Duration>| {
        let lib = lib.clone();
        async move {
            let cache_aside::LeaseRead::Lease(t) = lib.lease_get(key).await.unwrap() else {
                panic!("{key}: lease expected");
            };
            assert!(lib.lease_set(key, t, b"v", ttl).await.unwrap());
            assert!(lib.written_ms(key).await.unwrap().is_some());
        }
    };
    let side = cache_aside::scripts::lease_key;
    fill("user:1", Some(Duration::from_secs(60))).await;
    fill("user:{2}:n", Some(Duration::from_secs(60))).await;
    let mut t = connect(&TargetConfig::redis(s.url())).await.unwrap();
    t.send(&[Bytes::from("user:1"), Bytes::from("user:{2}:n")])
        .await
        .unwrap();
    assert_eq!(dbsize(&s), 0, "values and side keys deleted");
    assert_eq!(lib.written_ms("user:1").await.unwrap(), None);

    // A fill without a TTL: the backstop reaches the side key too.
    fill("user:3", None).await;
    assert_eq!(s.cli(&["TTL", &side("user:3")]).unwrap().trim(), "-1");
    let rules = users_with_1h_backstop();
    let conn = config::connect(&TargetConfig::redis(s.url()))
        .await
        .unwrap();
    let r = sweep(&conn, &rules, SweepConfig::default()).await.unwrap();
    assert_eq!((r.scanned, r.fixed), (1, 1), "side keys are not counted");
    let ttl = |k: &str| -> i64 { s.cli(&["PTTL", k]).unwrap().trim().parse().unwrap() };
    let (value_ttl, side_ttl) = (ttl("user:3"), ttl(&side("user:3")));
    assert!(value_ttl > 0, "{value_ttl}");
    assert!(
        side_ttl > 0 && side_ttl <= value_ttl,
        "side {side_ttl} value {value_ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_times_out_per_batch() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let s = RedisServer::start(&[]).unwrap();
    let cfg = TargetConfig {
        batch_timeout: crate::duration::HumanDuration(Duration::from_millis(200)),
        ..TargetConfig::redis(s.url())
    };
    let mut t = connect(&cfg).await.unwrap();
    s.pause(true).unwrap();
    let started = Instant::now();
    let err = t.send(&keys("k", 3)).await.unwrap_err();
    // Two attempts of 200 ms plus a 20 ms pause, far below any hang.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, TargetError::Timeout(_) | TargetError::Unavailable(_)),
        "{err}"
    );
    s.pause(false).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_deletes_across_slots() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let c = RedisCluster::start().unwrap();
    let cfg = TargetConfig::redis_cluster(c.urls());
    let target = RedisTarget::connect(&cfg).await.unwrap();
    let conn = target.conn().clone();
    assert!(conn.is_cluster(), "not a cluster connection");
    let ks = keys("user", 3000);
    let slots = by_slot(&ks);
    assert!(slots.len() > 1000, "keys spread over {} slots", slots.len());
    for k in &ks {
        let _: () = conn
            .query(redis::cmd("SET").arg(&k[..]).arg("v"))
            .await
            .unwrap();
    }
    let _: () = conn
        .query(redis::cmd("SET").arg("other").arg("v"))
        .await
        .unwrap();
    // Every node holds some of them.
    for n in &c.nodes {
        assert!(n.cli(&["DBSIZE"]).unwrap().trim().parse::<u64>().unwrap() > 500);
    }
    let mut t = stack::build(target, StackConfig::for_target(&cfg), ());
    t.send(&ks).await.unwrap();
    let total: u64 = c
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).unwrap().trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1, "only the unrelated key is left");
    // Hash tags keep keys in one slot: one command.
    let tagged = vec![Bytes::from("{u1}:a"), Bytes::from("{u1}:b")];
    assert_eq!(by_slot(&tagged).len(), 1);
    t.send(&tagged).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_sets_backstop_on_keys_without_ttl() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let s = RedisServer::start(&[]).unwrap();
    fill(&s, "user", 300);
    fill(&s, "other", 50);
    s.cli(&["EXPIRE", "user:0", "10"]).unwrap();
    let rules = users_with_1h_backstop();
    let conn = config::connect(&TargetConfig::redis(s.url()))
        .await
        .unwrap();
    let started = Instant::now();
    let r = sweep(
        &conn,
        &rules,
        SweepConfig {
            max_keys_per_sec: 1000,
            page: 100,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.scanned, 300);
    assert_eq!(r.fixed, 299, "user:0 kept its own TTL");
    // 300 keys at 1000 keys/s: the rate limit held it to >= ~0.3 s.
    assert!(started.elapsed() >= Duration::from_millis(250));
    let ttl0: i64 = s.cli(&["TTL", "user:0"]).unwrap().trim().parse().unwrap();
    assert!(ttl0 <= 10);
    assert!(
        s.cli(&["TTL", "user:7"])
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
            > 3500
    );
    assert_eq!(s.cli(&["TTL", "other:1"]).unwrap().trim(), "-1");
    let again = sweep(&conn, &rules, SweepConfig::default()).await.unwrap();
    assert_eq!(again.fixed, 0);
}

/// On a cluster the sweep runs on every master `CLUSTER SLOTS` lists (SCAN sees one
/// node's keys): together they give every key its backstop, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_covers_every_cluster_master() {
    let c = RedisCluster::start().unwrap();
    let conn = config::connect(&TargetConfig::redis_cluster(c.urls()))
        .await
        .unwrap();
    let ks = keys("user", 300);
    let sets = ks
        .iter()
        .map(|k| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&k[..]).arg("v");
            cmd
        })
        .collect();
    let _: Vec<()> = conn.each(sets).await.unwrap();
    let masters = conn.masters().await.unwrap();
    assert_eq!(masters.len(), c.nodes.len());
    let rules = users_with_1h_backstop();
    let (mut scanned, mut fixed) = (0, 0);
    for m in &masters {
        let r = sweep(m, &rules, SweepConfig::default()).await.unwrap();
        assert!(r.fixed > 0, "{} held none of the keys", m.addr());
        scanned += r.scanned;
        fixed += r.fixed;
    }
    assert_eq!((scanned, fixed), (300, 300));
    for k in ["user:0", "user:150", "user:299"] {
        let ttl: i64 = conn.query(redis::cmd("TTL").arg(k)).await.unwrap();
        assert!(ttl > 3500, "{k}: {ttl}");
    }
}
