//! Running more than one `coherent serve` against one server: `server_id = "auto"`
//! (derived from the host name, refused when a connected replica has it) and
//! `[ha]` (one leader holding a MySQL named lock, standbys taking over), each
//! against a private MariaDB.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, ServeConfig, Sidecar};
use connectors::binlog::config::{auto_server_id, host_name};
use connectors::testing::MariaDbOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

const RULES: &str = r#"
[[rules]]
table = "app.users"
keys = ["user:{id}"]
"#;

/// A pipeline config with `server_id = "auto"` and the embedded engine.
fn auto_config(dir: &Path, url: &str) -> PathBuf {
    let p = ServeConfig {
        mysql: url,
        server_id: 0,
        target: "kind = \"embedded\"",
        rest: RULES,
        ..ServeConfig::default()
    }
    .write(dir);
    let text = std::fs::read_to_string(&p).expect("read config");
    std::fs::write(&p, text.replace("server_id = 0", "server_id = \"auto\"")).expect("write");
    p
}

#[test]
fn server_id_auto_is_logged_and_refused_when_a_replica_has_it() {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    let id = auto_server_id(&host_name());
    let d1 = tmpdir("auto1");
    // Without the grant to list replicas (MariaDB: REPLICATION MASTER ADMIN), the
    // id is used with a warning.
    let first = Sidecar::start_ready(&auto_config(&d1, &db.url()));
    let log = plain(&first.log());
    assert!(log.contains(&format!("server_id={id}")), "{log}");
    assert!(
        log.contains("a clash with another replica's id is not checked"),
        "{log}"
    );
    db.sql("GRANT REPLICATION MASTER ADMIN ON *.* TO repl@'%'")
        .expect("grant");
    // The first registered as replica `id`.
    let hosts = db.sql("SHOW SLAVE HOSTS").expect("show slave hosts");
    assert!(hosts.contains(&id.to_string()), "{hosts}");
    let mut c = Resp::connect(&first.engine);
    c.set("user:1");
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'A')")
        .expect("insert");
    assert!(wait_until(Duration::from_secs(30), || !c.exists("user:1")));
    // A second process on the same host derives the same id: refused at start,
    // with the id, the host name and what to do.
    let d2 = tmpdir("auto2");
    let mut second = Sidecar::start(&auto_config(&d2, &db.url()));
    let st = second.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    let log = plain(&second.log());
    assert!(
        log.contains(&format!(
            "server_id = \"auto\" gave {id} (from host name {:?}), but a replica connected to the server already uses server_id {id}",
            host_name()
        )),
        "{log}"
    );
    // The first is unharmed.
    c.set("user:1");
    db.sql("UPDATE app.users SET name = 'B' WHERE id = 1")
        .expect("update");
    assert!(wait_until(Duration::from_secs(30), || !c.exists("user:1")));
}

/// `log` without the ANSI colour codes of the console format.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
