//! Real redis-sentinel (three of them) watching an engine primary with two engine
//! replicas: the primary is killed with SIGKILL, Sentinel promotes a replica (SLAVEOF
//! NO ONE, CONFIG REWRITE, CLIENT KILL in one MULTI) and points the other at it.
//! Writes acknowledged with `WAIT 1` before the kill are all on the new primary.
//!
//! The engines run as child processes of this test binary (the ignored test
//! `child_engine`, started with `--ignored --exact`), so that they can be killed.

mod common;

use common::{free_port, wait_port, Conn, Resp};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Not a test: the body of an engine child process (see the module doc). It serves
/// on `COHERENT_CHILD_LISTEN` until killed.
#[test]
#[ignore = "run by the sentinel test as a child process"]
fn child_engine() {
    let listen = std::env::var("COHERENT_CHILD_LISTEN").expect("COHERENT_CHILD_LISTEN");
    let _server = common::EngineServer::start_with(engine::EngineConfig {
        listen,
        save: String::new(),
        repl_diskless_sync_delay: 0,
        ..Default::default()
    });
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A child engine, killed (SIGKILL) on drop.
struct EngineProcess {
    port: u16,
    child: Child,
}

impl EngineProcess {
    fn start() -> EngineProcess {
        let port = free_port();
        let exe = std::env::current_exe().expect("test binary");
        let child = Command::new(exe)
            .args(["--ignored", "--exact", "child_engine", "--nocapture"])
            .env("COHERENT_CHILD_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the engine child");
        wait_port(port);
        EngineProcess { port, child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-sentinel on its own port and directory, stopped by PID on drop.
struct Sentinel {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Sentinel {
    fn start(primary: u16) -> Sentinel {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("coherent-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor m 127.0.0.1 {primary} 2\nsentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 10000\nsentinel parallel-syncs m 1\nlogfile {}\n",
                dir.display(),
                dir.join("log").display()
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (it runs Sentinel with --sentinel)");
        wait_port(port);
        Sentinel { port, child, dir }
    }
}

impl Sentinel {
    /// Its failover events (`+try-failover`, `+selected-slave`, ...).
    fn events(&self) -> String {
        std::fs::read_to_string(self.dir.join("log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" # ") || l.contains(" * +"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn conn(port: u16) -> Conn {
    Conn::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A field of INFO replication ("" when the connection was killed meanwhile).
fn info(c: &mut Conn, field: &str) -> String {
    c.send(&[b"INFO", b"replication"]);
    let text = match c.try_read() {
        Some(Resp::Bulk(Some(b)) | Resp::Verbatim(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => return String::new(),
    };
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_default()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The primary Sentinel reports.
fn master_addr(s: &mut Conn) -> Option<u16> {
    match s.cmd(&["SENTINEL", "get-master-addr-by-name", "m"]) {
        Resp::Array(Some(v)) if v.len() == 2 => match &v[1] {
            Resp::Bulk(Some(p)) => String::from_utf8_lossy(p).parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn sentinel_promotes_an_engine_replica_when_the_primary_dies() {
    let mut primary = EngineProcess::start();
    let replicas = [EngineProcess::start(), EngineProcess::start()];
    for r in &replicas {
        let mut c = conn(r.port);
        assert_eq!(
            c.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]),
            Resp::Simple("OK".into())
        );
    }
    let mut p = conn(primary.port);
    wait_for("two replicas online", Duration::from_secs(20), || {
        info(&mut p, "connected_slaves") == "2" && info(&mut p, "slave1").contains("state=online")
    });
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port)).collect();
    let mut s0 = conn(sentinels[0].port);
    // Every Sentinel knows both replicas and the other Sentinels.
    wait_for("Sentinel's view", Duration::from_secs(30), || {
        let Resp::Array(Some(m)) = s0.cmd(&["SENTINEL", "master", "m"]) else {
            return false;
        };
        let field = |name: &str| {
            m.chunks(2)
                .find(|kv| kv[0] == Resp::Bulk(Some(name.as_bytes().to_vec())))
                .and_then(|kv| match &kv[1] {
                    Resp::Bulk(Some(v)) => Some(String::from_utf8_lossy(v).into_owned()),
                    _ => None,
                })
        };
        field("num-slaves").as_deref() == Some("2")
            && field("num-other-sentinels").as_deref() == Some("2")
    });
    // Acknowledged writes.
    for i in 0..200 {
        assert_eq!(
            p.cmd(&["SET", &format!("acked:{i}"), &i.to_string()]),
            Resp::Simple("OK".into())
        );
    }
    // Both replicas have them, so whichever is promoted does.
    assert_eq!(p.cmd(&["WAIT", "2", "5000"]), Resp::Int(2));
    let old = primary.port;
    let killed = Instant::now();
    primary.kill();
    wait_for("a promotion", Duration::from_secs(60), || {
        master_addr(&mut s0).is_some_and(|port| port != old)
    });
    let promoted_after = killed.elapsed();
    for s in &sentinels {
        println!("--- sentinel {}\n{}", s.port, s.events());
    }
    let new = master_addr(&mut s0).expect("new primary");
    let other = replicas
        .iter()
        .map(|r| r.port)
        .find(|&p| p != new)
        .expect("the other replica");
    // Sentinel kills normal clients as it reconfigures an instance: a new
    // connection per question until it is done.
    wait_for(
        "the promoted replica says so",
        Duration::from_secs(60),
        || info(&mut conn(new), "role") == "master",
    );
    wait_for("the other replica follows", Duration::from_secs(60), || {
        let mut o = conn(other);
        info(&mut o, "master_port") == new.to_string() && info(&mut o, "master_link_status") == "up"
    });
    let followed_after = killed.elapsed();
    println!(
        "failover with down-after-milliseconds 1000: promoted after {:.2} s, the other replica following after {:.2} s",
        promoted_after.as_secs_f64(),
        followed_after.as_secs_f64()
    );
    let mut n = conn(new);
    let mut o = conn(other);
    for i in 0..200 {
        assert_eq!(
            n.cmd(&["GET", &format!("acked:{i}")]),
            Resp::Bulk(Some(i.to_string().into_bytes())),
            "acknowledged write {i} lost"
        );
    }
    // The new primary takes writes and the other replica gets them.
    assert_eq!(
        n.cmd(&["SET", "after", "failover"]),
        Resp::Simple("OK".into())
    );
    assert_eq!(n.cmd(&["WAIT", "1", "5000"]), Resp::Int(1));
    assert_eq!(
        o.cmd(&["GET", "after"]),
        Resp::Bulk(Some(b"failover".to_vec()))
    );
}
