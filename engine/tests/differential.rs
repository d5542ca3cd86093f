//! Differential tests: every script in `tests/scripts/` runs against a private real
//! redis-server and against the engine; the replies must be identical.
//!
//! Script lines are commands in redis-cli syntax (quotes and \x escapes allowed).
//! A prefix changes how a reply is compared:
//! - `~` sort the reply's elements (Redis leaves the order unspecified),
//! - `%` sort a flat key/value array by pairs (HGETALL of a large hash),
//! - `?` run on both but do not compare (replies that legitimately differ),
//! - `!sleep MS` pause, for expiry.
//! - `!read` read and compare one more reply from each server (commands that answer
//!   several replies, such as SUBSCRIBE a b, or pushes written before a reply).
//!
//! Lines starting with `#` are comments. Each script starts on fresh connections after
//! FLUSHALL.

mod common;

use common::{Conn, EngineServer, RedisServer, Resp};
use std::path::Path;
use std::time::Duration;

struct Mismatch {
    place: String,
    command: String,
    redis: Resp,
    engine: Resp,
}

fn run_script(
    path: &Path,
    redis: &mut Conn,
    engine: &mut Conn,
    count: &mut usize,
) -> Vec<Mismatch> {
    let text = std::fs::read_to_string(path).expect("read script");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(ms) = line.strip_prefix("!sleep ") {
            std::thread::sleep(Duration::from_millis(ms.trim().parse().expect("sleep ms")));
            continue;
        }
        if line == "!read" {
            let (r, e) = (redis.read(), engine.read());
            *count += 1;
            if r != e {
                out.push(Mismatch {
                    place: format!("{name}:{}", i + 1),
                    command: line.to_string(),
                    redis: r,
                    engine: e,
                });
            }
            continue;
        }
        let (mode, cmd) = match line.as_bytes()[0] {
            b'~' | b'%' | b'?' => (line.as_bytes()[0], &line[1..]),
            _ => (b'=', line),
        };
        let args = engine::split_args(cmd.as_bytes())
            .unwrap_or_else(|| panic!("{name}:{}: unbalanced quotes", i + 1));
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        redis.send(&argv);
        engine.send(&argv);
        let (r, e) = (redis.read(), engine.read());
        *count += 1;
        let (r, e) = match mode {
            b'~' => (r.sorted(), e.sorted()),
            b'%' => (r.sorted_pairs(), e.sorted_pairs()),
            b'?' => continue,
            _ => (r, e),
        };
        if r != e {
            out.push(Mismatch {
                place: format!("{name}:{}", i + 1),
                command: cmd.to_string(),
                redis: r,
                engine: e,
            });
        }
    }
    out
}

#[test]
fn engine_replies_like_redis() {
    let redis_srv = RedisServer::start(&["--enable-debug-command", "local"]);
    let engine_srv = EngineServer::start();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .expect("scripts dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "no scripts in {}", dir.display());
    let only = std::env::var("DIFF_ONLY").ok();
    let mut count = 0;
    let mut mismatches = Vec::new();
    for s in &scripts {
        if let Some(o) = &only {
            if !s.to_string_lossy().contains(o.as_str()) {
                continue;
            }
        }
        let mut r = Conn::connect(redis_srv.addr());
        let mut e = Conn::connect(engine_srv.addr);
        assert_eq!(r.cmd(&["FLUSHALL"]), Resp::Simple("OK".into()));
        assert_eq!(e.cmd(&["FLUSHALL"]), Resp::Simple("OK".into()));
        mismatches.extend(run_script(s, &mut r, &mut e, &mut count));
    }
    for m in mismatches.iter().take(60) {
        eprintln!(
            "{}: {}\n   redis:  {:?}\n   engine: {:?}",
            m.place, m.command, m.redis, m.engine
        );
    }
    eprintln!("{count} commands compared, {} mismatches", mismatches.len());
    assert!(
        mismatches.is_empty(),
        "{} of {count} replies differ from Redis",
        mismatches.len()
    );
    if only.is_none() {
        assert!(
            count >= 1000,
            "only {count} commands compared; the suite promises at least 1000"
        );
    }
}
