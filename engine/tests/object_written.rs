//! OBJECT WRITTEN: when a key's value was last written (Unix ms, 100 ms resolution),
//! nil for a missing key. Coherent's own subcommand, used by the consistency audit.

mod common;

use common::{Conn, EngineServer, Resp};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn int(r: Resp) -> i64 {
    match r {
        Resp::Int(i) => i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn written_tracks_writes_not_reads() {
    let srv = EngineServer::start();
    let mut c = Conn::connect(srv.addr);
    assert_eq!(c.cmd(&["OBJECT", "WRITTEN", "nokey"]), Resp::Bulk(None));
    let before = now_ms();
    c.cmd(&["SET", "k", "v1"]);
    let w1 = int(c.cmd(&["OBJECT", "WRITTEN", "k"]));
    let after = now_ms();
    assert!(w1 % 100 == 0, "100 ms resolution: {w1}");
    assert!(
        w1 > before - 100 && w1 <= after,
        "{before} <= {w1} <= {after}"
    );
    std::thread::sleep(Duration::from_millis(250));
    // A read does not move it.
    c.cmd(&["GET", "k"]);
    assert_eq!(int(c.cmd(&["OBJECT", "WRITTEN", "k"])), w1);
    // A new write does.
    c.cmd(&["SET", "k", "v2"]);
    let w2 = int(c.cmd(&["OBJECT", "WRITTEN", "k"]));
    assert!(w2 >= w1 + 200, "{w2} after {w1}");
    // Arity as the other OBJECT subcommands.
    assert!(matches!(
        c.cmd(&["OBJECT", "WRITTEN"]),
        Resp::Error(e) if e.contains("wrong number of arguments")
    ));
    c.cmd(&["DEL", "k"]);
    assert_eq!(c.cmd(&["OBJECT", "WRITTEN", "k"]), Resp::Bulk(None));
}
