//! The modification events list commands emit (they drive keyspace notifications,
//! WATCH and blocked clients), in Redis 7.0's names and order.

use bytes::Bytes;
use engine::{Engine, EngineConfig, KeyHook, Reply};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl KeyHook for Recorder {
    fn modified(&self, db: usize, key: &[u8], event: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{db}:{event}:{}", String::from_utf8_lossy(key)));
        }
    }
}

struct Fixture {
    engine: Engine,
    rec: Arc<Recorder>,
}

impl Fixture {
    fn new() -> Fixture {
        let engine = Engine::new(EngineConfig::default());
        let rec = Arc::new(Recorder::default());
        engine.add_key_hook(rec.clone());
        Fixture { engine, rec }
    }

    /// Runs a command and returns its reply and the events it produced.
    fn run(&self, cmd: &str) -> (Reply, Vec<String>) {
        let args: Vec<Bytes> = cmd
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let reply = self.engine.execute(0, args);
        let events = std::mem::take(&mut *self.rec.0.lock().unwrap());
        (reply, events)
    }

    fn events(&self, cmd: &str) -> Vec<String> {
        self.run(cmd).1
    }
}

#[test]
fn push_and_pop_events() {
    let f = Fixture::new();
    assert_eq!(f.events("LPUSH l a b"), ["0:lpush:l"]);
    assert_eq!(f.events("RPUSH l c"), ["0:rpush:l"]);
    assert_eq!(f.events("LPUSHX l d"), ["0:lpush:l"]);
    assert_eq!(f.events("RPUSHX l e"), ["0:rpush:l"]);
    assert!(f.events("LPUSHX missing a").is_empty());
    assert_eq!(f.events("LPOP l"), ["0:lpop:l"]);
    assert_eq!(f.events("RPOP l 2"), ["0:rpop:l"]);
    assert!(f.events("LPOP l 0").is_empty());
    assert_eq!(f.events("LPOP l 5"), ["0:lpop:l", "0:del:l"]);
    assert!(f.events("LPOP l").is_empty());
}

#[test]
fn in_place_edit_events() {
    let f = Fixture::new();
    f.run("RPUSH l a b c a");
    assert_eq!(f.events("LSET l 0 x"), ["0:lset:l"]);
    assert!(f.events("LSET l 9 x").is_empty());
    assert_eq!(f.events("LINSERT l BEFORE b y"), ["0:linsert:l"]);
    assert!(f.events("LINSERT l BEFORE nope y").is_empty());
    assert_eq!(f.events("LREM l 0 a"), ["0:lrem:l"]);
    assert!(f.events("LREM l 0 nope").is_empty());
    // LTRIM notifies even when it keeps everything, as Redis does.
    assert_eq!(f.events("LTRIM l 0 -1"), ["0:ltrim:l"]);
    assert_eq!(f.events("LTRIM l 5 1"), ["0:ltrim:l", "0:del:l"]);
    assert!(f.events("LTRIM l 0 1").is_empty());
    f.run("RPUSH r z");
    assert_eq!(f.events("LREM r 1 z"), ["0:lrem:r", "0:del:r"]);
}

#[test]
fn move_events_push_then_pop() {
    let f = Fixture::new();
    f.run("RPUSH src a b");
    assert_eq!(
        f.events("LMOVE src dst RIGHT LEFT"),
        ["0:lpush:dst", "0:rpop:src"]
    );
    assert_eq!(
        f.events("RPOPLPUSH src dst"),
        ["0:lpush:dst", "0:rpop:src", "0:del:src"]
    );
    assert_eq!(
        f.events("BLMOVE dst dst LEFT RIGHT 0"),
        ["0:rpush:dst", "0:lpop:dst"]
    );
    assert!(f.events("LMOVE missing dst LEFT LEFT").is_empty());
    assert_eq!(
        f.events("LMPOP 2 missing dst LEFT COUNT 5"),
        ["0:lpop:dst", "0:del:dst"]
    );
    f.run("RPUSH b x");
    let (reply, ev) = f.run("BRPOP missing b 0");
    assert_eq!(
        reply,
        Reply::Array(vec![Reply::bulk(b"b"), Reply::bulk(b"x")])
    );
    assert_eq!(ev, ["0:rpop:b", "0:del:b"]);
}
