//! `coherent check --config FILE`: verifies the MySQL side before the pipeline runs,
//! one line per check, each failure saying what is wrong and how to fix it.

use crate::config::Loaded;
use connectors::checkpoint::{
    AnyCheckpointStore, CheckpointKind, CheckpointStore, FileCheckpointStore,
};
use connectors::rules::KeyTemplate;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Collects and prints check results.
#[derive(Default)]
struct Report {
    failures: usize,
}

impl Report {
    fn ok(&mut self, what: impl std::fmt::Display) {
        println!("ok    {what}");
    }

    /// Works, with a risk worth fixing; does not fail the run.
    fn warn(&mut self, what: impl std::fmt::Display) {
        println!("WARN  {what}");
    }

    fn fail(&mut self, what: impl std::fmt::Display) {
        self.failures += 1;
        println!("FAIL  {what}");
    }
}

/// Runs every check; true when all passed.
pub async fn run(loaded: &Loaded, file: &str) -> bool {
    let mut r = Report::default();
    let Some((cc, mysql)) = loaded
        .connector
        .as_ref()
        .and_then(|(cc, _)| Some((cc, cc.mysql.as_ref()?)))
    else {
        r.fail(format!(
            "{file} has no [mysql] section: add one with url = \"mysql://USER:PASSWORD@HOST:PORT\" and server_id = N (or set COHERENT_MYSQL_URL and COHERENT_MYSQL_SERVER_ID)"
        ));
        return false;
    };
    check_checkpoint_file(&mut r, cc, mysql).await;
    let opts = match Opts::from_url(&mysql.url) {
        Ok(o) => o,
        Err(e) => {
            r.fail(format!("[mysql] url: {e}"));
            return false;
        }
    };
    let who = format!(
        "{}@{}:{}",
        opts.user().unwrap_or(""),
        opts.ip_or_hostname(),
        opts.tcp_port()
    );
    let mut conn = match tokio::time::timeout(Duration::from_secs(10), Conn::new(opts)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            r.fail(format!(
                "connect to MySQL as {who}: {e}. Fix: check [mysql] url (host, port, user, password) and that the server is running"
            ));
            return false;
        }
        Err(_) => {
            r.fail(format!(
                "connect to MySQL as {who}: no answer in 10 s. Fix: check the host and port in [mysql] url and any firewall"
            ));
            return false;
        }
    };
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    r.ok(format!("connect to MySQL as {who} (server {version})"));
    let mariadb = version.to_ascii_lowercase().contains("mariadb");

    check_variables(&mut r, &mut conn, mysql.server_id).await;
    check_grants(&mut r, &mut conn, mariadb).await;
    check_rules(&mut r, &mut conn, cc).await;
    check_resume_file(&mut r, &mut conn, cc, mysql).await;
    let _ = conn.disconnect().await;
    if r.failures == 0 {
        println!("all checks passed");
    } else {
        println!("{} check(s) failed", r.failures);
    }
    r.failures == 0
}

async fn check_variables(r: &mut Report, conn: &mut Conn, our_id: u32) {
    let vars: Vec<(String, String)> = match conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', 'server_id')",
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            r.fail(format!("read server variables: {e}"));
            return;
        }
    };
    let vars: BTreeMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let get = |k: &str| vars.get(k).cloned().unwrap_or_else(|| "(unset)".into());
    let log_bin = get("log_bin");
    if log_bin.eq_ignore_ascii_case("ON") || log_bin == "1" {
        r.ok("log_bin is ON");
    } else {
        r.fail(format!(
            "log_bin is {log_bin}: the server writes no binlog. Fix: add log_bin = mysql-bin (and server_id = 1) under [mysqld] in the server's config, or start it with --log-bin, then restart it"
        ));
    }
    let format = get("binlog_format");
    if format.eq_ignore_ascii_case("ROW") {
        r.ok("binlog_format is ROW");
    } else {
        r.fail(format!(
            "binlog_format is {format}, not ROW: statement events carry no rows to key on. Fix: binlog_format = ROW under [mysqld] (or SET GLOBAL binlog_format = 'ROW'; clients pick it up when they reconnect)"
        ));
    }
    let image = get("binlog_row_image");
    if image.eq_ignore_ascii_case("FULL") {
        r.ok("binlog_row_image is FULL");
    } else {
        r.fail(format!(
            "binlog_row_image is {image}, not FULL: before images miss the columns keys are built from. Fix: binlog_row_image = FULL under [mysqld] (or SET GLOBAL binlog_row_image = 'FULL')"
        ));
    }
    // Servers before MySQL 8.0.1 / MariaDB 10.5 have no such variable: nothing to say.
    if let Some(meta) = vars.get("binlog_row_metadata") {
        if meta.eq_ignore_ascii_case("FULL") {
            r.ok("binlog_row_metadata is FULL (column names travel with the rows)");
        } else {
            r.warn(format!(
                "binlog_row_metadata is {meta}, not FULL: column names are then read from information_schema, so catching up across an ALTER that adds a column of the same type in the middle of a table can put values under the wrong names until the position passes it. Fix: binlog_row_metadata = FULL under [mysqld] (or SET GLOBAL binlog_row_metadata = 'FULL')"
            ));
        }
    }
    let server_id = get("server_id");
    if server_id == our_id.to_string() {
        r.fail(format!(
            "[mysql] server_id = {our_id} is the server's own server_id: the server refuses such a replica. Fix: pick another [mysql] server_id, unique among the server's replicas"
        ));
    }
}

/// Privileges granted on `*.*`, upper-cased.
fn global_privileges(grants: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in grants {
        let Some(rest) = g.trim().strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, on)) = rest.split_once(" ON ") else {
            continue;
        };
        if !on.trim_start().starts_with("*.*") {
            continue;
        }
        for p in privs.split(',') {
            out.insert(p.trim().to_ascii_uppercase());
        }
    }
    out
}

async fn check_grants(r: &mut Report, conn: &mut Conn, mariadb: bool) {
    let grants: Vec<String> = match conn.query("SHOW GRANTS").await {
        Ok(g) => g,
        Err(e) => {
            r.fail(format!("read the user's grants (SHOW GRANTS): {e}"));
            return;
        }
    };
    let user: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "the user".into());
    let privs = global_privileges(&grants);
    let all = privs.contains("ALL PRIVILEGES") || privs.contains("ALL");
    let has = |names: &[&str]| all || names.iter().any(|n| privs.contains(*n));
    let quoted = user
        .split_once('@')
        .map(|(u, h)| format!("'{u}'@'{h}'"))
        .unwrap_or(user.clone());
    if has(&["REPLICATION SLAVE", "REPLICATION REPLICA"]) {
        r.ok(format!("{user} has REPLICATION SLAVE"));
    } else {
        r.fail(format!(
            "{user} lacks REPLICATION SLAVE on *.* (needed to stream the binlog). Fix: GRANT REPLICATION SLAVE ON *.* TO {quoted}"
        ));
    }
    // MariaDB 10.5+ renamed REPLICATION CLIENT to BINLOG MONITOR.
    if has(&["REPLICATION CLIENT", "BINLOG MONITOR"]) {
        r.ok(format!(
            "{user} has {}",
            if mariadb && privs.contains("BINLOG MONITOR") {
                "BINLOG MONITOR (REPLICATION CLIENT)"
            } else {
                "REPLICATION CLIENT"
            }
        ));
    } else {
        r.fail(format!(
            "{user} lacks REPLICATION CLIENT{} on *.* (needed for SHOW MASTER STATUS and SHOW BINARY LOGS). Fix: GRANT REPLICATION CLIENT ON *.* TO {quoted}",
            if mariadb { " (BINLOG MONITOR)" } else { "" }
        ));
    }
}

async fn check_rules(r: &mut Report, conn: &mut Conn, cc: &connectors::ConnectorConfig) {
    if cc.rules.is_empty() {
        r.fail("no [[rules]]: no row change would invalidate anything. Fix: add [[rules]] table = \"db.table\", keys = [\"prefix:{column}\"]");
        return;
    }
    for rule in &cc.rules {
        let Some((db, table)) = rule.table.split_once('.') else {
            continue;
        };
        let found: Result<Vec<String>, _> = if table == "*" {
            conn.exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
                (db,),
            )
            .await
        } else {
            conn.exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (db, table),
            )
            .await
        };
        // A failed query is not an empty answer: say which, not "no table".
        let tables = match found {
            Ok(t) => t,
            Err(e) => {
                r.fail(format!(
                    "rule {}: information_schema.TABLES could not be read: {e}. Fix: check the user's access to information_schema and the server's health",
                    rule.table
                ));
                continue;
            }
        };
        if tables.is_empty() {
            r.fail(format!(
                "rule {}: no table {} on the server (or the user cannot see it). Fix: create the table, correct [[rules]] table, or GRANT SELECT ON {db}.* to the user",
                rule.table,
                if table == "*" { format!("in database {db}") } else { format!("{db}.{table}") }
            ));
            continue;
        }
        let mut needed: Vec<(String, String)> = Vec::new(); // (column, used by)
        for k in &rule.keys {
            if let Ok(t) = KeyTemplate::parse(k) {
                for c in t.columns() {
                    needed.push((c.to_string(), format!("key \"{k}\"")));
                }
            }
        }
        for c in rule.columns.iter().flatten() {
            needed.push((c.clone(), "columns".to_string()));
        }
        for t in &tables {
            let cols: Vec<String> = match conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (db, t),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    r.fail(format!(
                        "rule {}: information_schema.COLUMNS of {db}.{t} could not be read: {e}",
                        rule.table
                    ));
                    continue;
                }
            };
            let missing: Vec<String> = needed
                .iter()
                .filter(|(c, _)| !cols.iter().any(|have| have == c))
                .map(|(c, by)| format!("`{c}` (used by {by})"))
                .collect();
            if missing.is_empty() {
                let mut used: Vec<&str> = needed.iter().map(|(c, _)| c.as_str()).collect();
                used.dedup();
                r.ok(format!(
                    "rule {}: table {db}.{t} has column(s) {}",
                    rule.table,
                    used.join(", ")
                ));
            } else {
                r.fail(format!(
                    "rule {}: table {db}.{t} has no column {}; its columns are {}. Fix: correct the placeholder or the columns list in [[rules]]",
                    rule.table,
                    missing.join(", "),
                    cols.join(", ")
                ));
            }
        }
    }
}

async fn check_checkpoint_file(
    r: &mut Report,
    cc: &connectors::ConnectorConfig,
    mysql: &connectors::binlog::MysqlConfig,
) {
    if cc.checkpoint.store == CheckpointKind::Mysql {
        // Opening creates the table (the migration is idempotent) and proves the
        // user may write it.
        match AnyCheckpointStore::open(&cc.checkpoint, &mysql.url, mysql.server_id).await {
            Ok(store) => match store.load().await {
                Ok(None) => r.ok(format!(
                    "[checkpoint] store = \"mysql\": table coherent.checkpoint is usable; no checkpoint yet, the pipeline starts at [mysql] start = \"{}\"",
                    mysql.start
                )),
                Ok(Some(cp)) => r.ok(format!(
                    "[checkpoint] store = \"mysql\" resumes after {}",
                    cp.position
                )),
                Err(e) => r.fail(format!("[checkpoint] {e}")),
            },
            Err(e) => r.fail(format!(
                "[checkpoint] store = \"mysql\": {e}. Fix: GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* to the checkpoint user, or use store = \"file\""
            )),
        }
        return;
    }
    let path = &cc.checkpoint.path;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".coherent-check-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            r.fail(format!(
                "[checkpoint] path {}: cannot write in {}: {e}. Fix: create the directory or pick a writable path",
                path.display(),
                dir.display()
            ));
            return;
        }
    }
    match FileCheckpointStore::new(path.clone()).load().await {
        Ok(None) => r.ok(format!(
            "[checkpoint] {} is writable; no checkpoint yet, the pipeline starts at [mysql] start = \"{}\"",
            path.display(),
            mysql.start
        )),
        Ok(Some(cp)) => r.ok(format!(
            "[checkpoint] {} resumes after {}",
            path.display(),
            cp.position
        )),
        Err(e) => r.fail(format!("{e}")),
    }
}

/// A checkpoint's binlog file must still be on the server (not purged).
async fn check_resume_file(
    r: &mut Report,
    conn: &mut Conn,
    cc: &connectors::ConnectorConfig,
    mysql: &connectors::binlog::MysqlConfig,
) {
    let Ok(store) = AnyCheckpointStore::open(&cc.checkpoint, &mysql.url, mysql.server_id).await
    else {
        return;
    };
    let Ok(Some(cp)) = store.load().await else {
        return;
    };
    // A MariaDB GTID checkpoint is checked too: its resume reads from the binlog
    // holding that GTID, which is the file it was saved in (or a later one).
    if cp.position.file.is_empty() {
        r.ok(format!(
            "checkpoint at {} has no binlog file name: whether its binlog was purged shows when the pipeline connects",
            cp.position
        ));
        return;
    }
    let rows = match conn.query::<mysql_async::Row, _>("SHOW BINARY LOGS").await {
        Ok(rows) => rows,
        Err(e) => {
            r.fail(format!(
                "SHOW BINARY LOGS failed ({e}): whether the checkpoint's binlog {} was purged is unknown. Fix: GRANT REPLICATION CLIENT (BINLOG MONITOR on MariaDB) ON *.*",
                cp.position.file
            ));
            return;
        }
    };
    let files: Vec<String> = rows.iter().filter_map(|row| row.get(0)).collect();
    if files.contains(&cp.position.file) {
        r.ok(format!(
            "checkpoint file {} is still on the server",
            cp.position.file
        ));
    } else {
        r.fail(format!(
            "the checkpoint's binlog {} was purged from the server (it has {}). Changes since then cannot be replayed. Fix: FLUSHALL the cache, delete {} and restart (start = \"{}\")",
            cp.position.file,
            files.join(", "),
            cc.checkpoint.path.display(),
            mysql.start
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_global_grants() {
        let g =
            |s: &[&str]| global_privileges(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let p = g(&[
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '*X'",
            "GRANT SELECT ON `app`.* TO `repl`@`%`",
        ]);
        assert!(p.contains("REPLICATION SLAVE") && p.contains("BINLOG MONITOR"));
        assert!(!p.contains("SELECT"));
        assert!(
            g(&["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"])
                .contains("ALL PRIVILEGES")
        );
        assert!(g(&["GRANT USAGE ON *.* TO `x`@`%`"]).contains("USAGE"));
    }
}
