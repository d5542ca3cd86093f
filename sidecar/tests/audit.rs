//! `coherent audit` against a private MariaDB and the engine (`coherent serve`): the
//! test writes rows, fills the cache with correct values for some keys, stale values
//! for others and orphans, and the audit's counts must equal that ground truth exactly.
//! Exit codes: 0 when clean, 1 with stale/orphan keys, 2 on an error. Also: every key
//! template of a rule is classified (keys attributed to the most specific template),
//! and rows a writer changes during a rate-limited scan are re-checked, not reported
//! stale.

mod common;

use common::audit::{
    audit, engine_conn, entry, fill_seeded, read_report, redis_conn, run_audit, set, user_json,
    user_json_named, user_json_seeded, AuditConfig, RunningAudit, Users, USER_EMAIL_RULE,
    USER_RULE, WRITER_USER,
};
use common::{tmpdir, ServeConfig, Sidecar};
use std::process::{Command, Stdio};

/// `coherent serve`, engine only, on a free loopback port.
fn engine() -> Sidecar {
    Sidecar::engine_only(&["--listen", "127.0.0.1:0"])
}

#[test]
fn audit_counts_equal_ground_truth() {
    let db = Users {
        rows: 2000,
        null_names: true,
        ..Users::default()
    }
    .db();
    let e = engine();
    let mut c = engine_conn(&e.engine);
    let dir = tmpdir("audit");
    let url = db.url();
    let cfg =
        AuditConfig::engine(&e.engine, &url, USER_EMAIL_RULE).write(&dir.join("coherent.toml"));
    // Correct values for ids 1..=300 (name NULL for multiples of 7).
    for id in 1..=300i64 {
        let name = format!("Name {id}");
        let name = (id % 7 != 0).then_some(name.as_str());
        set(&mut c, &format!("user:{id}"), &user_json_named(id, name));
    }
    // Clean so far: exit 0, counts exact. Both templates are classified: nothing is
    // cached under `user:email:{email}`, so its 2000 keys are missing.
    let (code, r) = audit(&cfg, &dir.join("clean"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["totals"]["rows"], 2000);
    let id = entry(&r, "user:{id}");
    assert_eq!(id["counts"]["rows"], 2000);
    assert_eq!(id["counts"]["consistent"], 300);
    assert_eq!(id["counts"]["missing"], 1700);
    assert_eq!(id["counts"]["stale"], 0);
    assert_eq!(id["counts"]["orphan"], 0);
    assert_eq!(entry(&r, "user:email:{email}")["counts"]["missing"], 2000);
    assert_eq!(r["totals"]["consistent"], 300);
    assert_eq!(r["totals"]["missing"], 1700 + 2000);
    assert_eq!(r["totals"]["stale"], 0);
    assert_eq!(r["totals"]["orphan"], 0);
    assert_eq!(r["rechecked"], 0);
    assert_eq!(r["changed_during_scan"], 0, "binlog read, nothing changed");
    assert_eq!(r["invalidation_lag"], serde_json::Value::Null);
    assert!(
        r["notes"].to_string().contains("no sidecar reachable"),
        "{r}"
    );
    assert!(
        r["notes"]
            .to_string()
            .contains("user:email:{email}: no index"),
        "email is not indexed here: {r}"
    );
    // Stale: 25 keys with an old name, 5 with garbage; orphans: 4 keys without rows;
    // a negative-cache entry for a missing row is not an orphan.
    let mut stale = std::collections::BTreeSet::new();
    for id in (301..=325i64).chain(1001..=1005) {
        let v = if id > 1000 {
            // One value far longer than the report keeps (4 KiB).
            if id == 1005 {
                "y".repeat(10_000)
            } else {
                "not json".to_string()
            }
        } else {
            user_json_named(id, Some("Old name"))
        };
        set(&mut c, &format!("user:{id}"), &v);
        stale.insert(format!("user:{id}"));
    }
    for id in [5001i64, 5002, 5003, 5004] {
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json(id, "gone@x.org", None),
        );
    }
    set(&mut c, "user:6000", "\0coherent:not-found");
    let (code, r) = audit(&cfg, &dir.join("dirty"));
    assert_eq!(code, 1, "{r}");
    let id = entry(&r, "user:{id}");
    assert_eq!(id["counts"]["consistent"], 300);
    assert_eq!(id["counts"]["stale"], 30);
    assert_eq!(id["counts"]["orphan"], 4);
    assert_eq!(id["counts"]["missing"], 2000 - 330);
    assert_eq!(r["totals"]["consistent"], 300);
    assert_eq!(r["totals"]["stale"], 30);
    assert_eq!(r["totals"]["orphan"], 4);
    assert_eq!(r["totals"]["missing"], 2000 - 330 + 2000);
    assert_eq!(r["tables"][0]["key"], "user:{id}", "worst first");
    // Every stale value was written by this test moments ago: known, young ages.
    let age = &r["staleness_age"];
    assert_eq!(age["unknown"], 0, "{age}");
    let ages: Vec<u64> = age["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|c| c.as_u64().unwrap_or(0))
        .collect();
    assert_eq!(ages.iter().sum::<u64>(), 30, "{age}");
    assert_eq!(
        ages[4..].iter().sum::<u64>(),
        0,
        "none older than 10 minutes: {age}"
    );
    let listed: std::collections::BTreeSet<String> = r["tables"][0]["stale_keys"]
        .as_array()
        .expect("stale keys")
        .iter()
        .map(|s| s["key"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(listed, stale, "exactly the stale keys the test made");
    let long = r["tables"][0]["stale_keys"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["key"] == "user:1005"))
        .map(|s| s["cached"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(
        long.starts_with(&"y".repeat(4096)) && long.ends_with("... [truncated, 10000 bytes]"),
        "clipped at 4 KiB with a marker: {} bytes",
        long.len()
    );
    assert!(long.len() < 4200, "{}", long.len());
    for s in r["tables"][0]["stale_keys"].as_array().expect("stale") {
        assert!(
            s["written_ms"].as_i64().is_some(),
            "OBJECT WRITTEN reported"
        );
    }
    let html = std::fs::read_to_string(dir.join("dirty/report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("user:301") && !html.contains("http://ex"));
    for section in [
        "Staleness age",
        "Invalidation lag",
        "Worst tables",
        "Stale keys",
    ] {
        assert!(html.contains(section), "{section}");
    }
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    // Errors: exit 2 (MySQL unreachable).
    let bad = AuditConfig::engine(
        &e.engine,
        "mysql://repl:secret@127.0.0.1:1",
        "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { columns = [\"id\"] }\n",
    )
    .write(&dir.join("bad.toml"));
    let (code, _) = audit(&bad, &dir.join("bad"));
    assert_eq!(code, 2);
    // An unreachable Redis Cluster target is an error (exit 2), not a clean audit.
    let cluster = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cluster,
        format!("[target]\nkind = \"redis-cluster\"\nnodes = [\"127.0.0.1:1\"]\n{text}"),
    )
    .expect("config");
    let st = run_audit(&cluster, &dir.join("cluster"));
    assert_eq!(st.code, Some(2));
    assert!(st.stderr.contains("127.0.0.1:1"), "{}", st.stderr);
    let dirty = read_report(&dir.join("dirty"));
    render_in_chromium(
        &dir.join("dirty/report.html"),
        "",
        &dirty,
        &[
            "<code>user:301</code>",
            "<code>user:5001</code>",
            "Old name",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Renders the page in headless Chromium: a screenshot (kept at
/// `AUDIT_SCREENSHOT`, with `-suffix` before `.png` when a suffix is given, to be
/// looked at), and the DOM Chromium built from the page (`--dump-dom`), which must
/// hold the summary figures of the report `r` (as the page shows them), an SVG chart
/// in each chart container the report calls for, and `expect`.
fn render_in_chromium(
    page: &std::path::Path,
    suffix: &str,
    r: &serde_json::Value,
    expect: &[&str],
) {
    let Some(bin) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new("which")
            .arg(b)
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        // Missing is a failure in every run: a skipped render would count as passed.
        panic!("chromium is not installed (scripts/install-deps.sh installs it)");
    };
    let shot = std::env::var("AUDIT_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .map(|p| match suffix {
            "" => p,
            s => p.with_file_name(format!(
                "{}-{s}.png",
                p.file_stem().and_then(|x| x.to_str()).unwrap_or("audit")
            )),
        })
        .unwrap_or_else(|_| page.with_extension("png"));
    let profile = page.with_file_name("chromium-profile");
    let chromium = |extra: &str| {
        Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--window-size=1000,1200",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(extra)
            .arg(format!("file://{}", page.display()))
            .stderr(Stdio::null())
            .output()
            .expect("run chromium")
    };
    let st = chromium(&format!("--screenshot={}", shot.display()));
    assert!(st.status.success(), "chromium failed");
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 5000, "screenshot too small: {len} bytes");
    let out = chromium("--dump-dom");
    assert!(out.status.success(), "chromium --dump-dom failed");
    let dom = String::from_utf8_lossy(&out.stdout);
    let t = &r["totals"];
    let figures = [
        format!(
            "id=\"sum-consistency\">{:.6}<",
            r["consistency"].as_f64().unwrap_or(-1.0)
        ),
        format!(
            "id=\"sum-nines\">{:.2}<",
            r["nines"].as_f64().unwrap_or(-1.0)
        ),
        format!("id=\"sum-rows\">{}<", t["rows"]),
        format!("id=\"sum-stale\">{}<", t["stale"]),
        format!("id=\"sum-orphan\">{}<", t["orphan"]),
        format!("id=\"sum-rechecked\">{}<", r["rechecked"]),
    ];
    for f in &figures {
        assert!(
            dom.contains(f.as_str()),
            "summary figure {f} not in the DOM"
        );
    }
    let mut charts = vec!["chart-classes", "chart-worst"];
    if t["stale"].as_u64().unwrap_or(0) > 0 {
        charts.push("chart-age");
    }
    if !r["invalidation_lag"].is_null() {
        charts.push("chart-lag");
    }
    for c in charts {
        let at = dom
            .find(&format!("<div id=\"{c}\">"))
            .unwrap_or_else(|| panic!("no {c} in the DOM"));
        assert!(
            dom[at..]
                .trim_start_matches(&format!("<div id=\"{c}\">"))
                .starts_with("<svg"),
            "{c} holds no SVG chart: {}",
            &dom[at..(at + 200).min(dom.len())]
        );
    }
    // Bars: one <rect> per class at least.
    assert!(dom.matches("<rect").count() >= 5, "SVG bars drawn");
    for e in expect {
        assert!(dom.contains(e), "{e} not in the DOM");
    }
}

/// Answers every HTTP request with `body` (a stand-in for the sidecar's `/status`).
fn fake_status(body: String) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A rule with two templates: each is classified on its own, a key matching both
/// globs belongs to the more specific template, a key whose row matches only under
/// a case-insensitive collation is an orphan; the invalidation lag comes from the
/// `/status` of `[admin] listen`.
#[test]
fn audit_classifies_every_template() {
    let db = Users {
        rows: 200,
        email_index: true,
        ..Users::default()
    }
    .db();
    let e = engine();
    let mut c = engine_conn(&e.engine);
    for id in 1..=100i64 {
        let v = user_json_seeded(id);
        set(&mut c, &format!("user:{id}"), &v);
        if id <= 60 {
            // 1..=50 correct under the email key too, 51..=60 stale there.
            let v = if id <= 50 {
                v
            } else {
                user_json_named(id, Some("Old"))
            };
            set(&mut c, &format!("user:email:u{id}@x.org"), &v);
        }
    }
    set(&mut c, "user:9999", &user_json(9999, "gone@x.org", None));
    // Another rule's key (no renderer, not audited) is not an orphan of user:{id}.
    set(&mut c, "user:session:s1", "opaque");
    set(
        &mut c,
        "user:email:nobody@x.org",
        &user_json(0, "nobody@x.org", None),
    );
    // The collation finds u1@x.org for it, but no row renders this exact key.
    set(
        &mut c,
        "user:email:U1@X.ORG",
        &user_json(1, "U1@X.ORG", None),
    );
    let lag = serde_json::json!({"audit": {"invalidation_lag": {
        "le_secs": [0.001, 0.01, 0.1], "counts": [5, 9, 10], "count": 11, "sum_secs": 0.4}}});
    let admin = fake_status(lag.to_string());
    let dir = tmpdir("audit2");
    let url = db.url();
    let cfg = AuditConfig {
        admin: &admin,
        ..AuditConfig::engine(
            &e.engine,
            &url,
            "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\", \"user:email:{email}\"]\nvalue = { format = \"json\", columns = [\"id\", \"email\", \"name\"], keys = [\"user:{id}\", \"user:email:{email}\"] }\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:session:{email}\"]\n",
        )
    }
    .write(&dir.join("coherent.toml"));
    let (code, r) = audit(&cfg, &dir.join("out"));
    assert_eq!(code, 1, "{r}");
    let id = &entry(&r, "user:{id}")["counts"];
    assert_eq!(
        (
            &id["consistent"],
            &id["stale"],
            &id["orphan"],
            &id["missing"]
        ),
        (&100.into(), &0.into(), &1.into(), &100.into()),
        "user:email:* keys are not orphans of user:{{id}}: {r}"
    );
    let em = &entry(&r, "user:email:{email}")["counts"];
    assert_eq!(
        (
            &em["consistent"],
            &em["stale"],
            &em["orphan"],
            &em["missing"]
        ),
        (&50.into(), &10.into(), &2.into(), &140.into()),
        "{r}"
    );
    let orphans = entry(&r, "user:email:{email}")["orphan_keys"].to_string();
    assert!(
        orphans.contains("U1@X.ORG") && orphans.contains("nobody@x.org"),
        "{orphans}"
    );
    assert_eq!(r["totals"]["rows"], 200, "rows counted once per table");
    assert_eq!(r["totals"]["stale"], 10);
    assert_eq!(r["totals"]["orphan"], 3);
    assert!(
        !r["notes"].to_string().contains("no index"),
        "KEY (email): {r}"
    );
    let l = &r["invalidation_lag"];
    assert_eq!(l["count"], 11, "{r}");
    assert_eq!(l["counts"], serde_json::json!([5, 9, 10]));
    assert_eq!(l["source"], format!("http://{admin}/status"));
    let html = std::fs::read_to_string(dir.join("out/report.html")).expect("html");
    assert!(html.contains("11 sampled keys"), "lag chart shown");
    render_in_chromium(
        &dir.join("out/report.html"),
        "templates",
        &r,
        &["11 sampled keys", "<code>user:email:U1@X.ORG</code>"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows changed during the scan are re-checked, not reported stale, whatever the
/// machine's speed. The test holds `LOCK TABLES app.users WRITE`: the audit opens
/// its snapshot, then waits on the table; the test sees that wait in the process
/// list, updates rows 1..=100 and refills their keys with the new rows (playing the
/// sidecar and a cache-aside reader), and releases the lock. The scan then reads
/// the old rows from its snapshot and the new values from the cache: the binlog
/// shows those rows changed during the scan, so exactly they are re-checked, and
/// they end consistent.
#[test]
fn audit_rechecks_rows_changed_during_the_scan() {
    let db = Users::rows(3000).db();
    db.sql("CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON app.* TO w@'%'; GRANT PROCESS ON *.* TO w@'%';")
        .expect("the writer user");
    let e = engine();
    let mut c = engine_conn(&e.engine);
    fill_seeded(&mut c, 1..=300);
    let dir = tmpdir("audit3");
    let url = db.url();
    let cfg = AuditConfig::engine(&e.engine, &url, USER_RULE).write(&dir.join("coherent.toml"));
    let writer = format!("mysql://w:w@127.0.0.1:{}/app", db.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (child, changed) = rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut w = mysql_async::Conn::from_url(writer.as_str())
            .await
            .expect("writer connection");
        w.query_drop("LOCK TABLES users WRITE")
            .await
            .expect("LOCK TABLES");
        let child = RunningAudit::spawn(&cfg, &dir.join("out"), 1_000_000);
        let mut probe = mysql_async::Conn::from_url(writer.as_str())
            .await
            .expect("probe connection");
        // The audit opens its snapshot, then counts the rows: that waits on the lock.
        let mut waited = 0;
        loop {
            let n: Option<i64> = probe
                .query_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE '%users%' AND STATE LIKE '%metadata lock%'",
                )
                .await
                .expect("processlist");
            if n.unwrap_or(0) > 0 {
                break;
            }
            waited += 1;
            assert!(waited < 1200, "the audit never waited on app.users");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut changed = Vec::new();
        for id in 1..=100i64 {
            let name = format!("W{id}");
            w.exec_drop("UPDATE users SET name = ? WHERE id = ?", (&name, id))
                .await
                .expect("update");
            changed.push((id, name));
        }
        (child, changed)
    });
    for (id, name) in &changed {
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json_named(*id, Some(name)),
        );
    }
    // Dropping the runtime closes the writer's connection: the server releases the lock.
    drop(rt);
    let (code, log) = child.finish(|_| {});
    let r = read_report(&dir.join("out"));
    assert_eq!(code, Some(0), "no stale report: {r}\n{log}");
    let t = &r["totals"];
    assert_eq!(t["stale"], 0, "{r}");
    assert_eq!(t["orphan"], 0, "{r}");
    assert_eq!(t["rows"], 3000, "{r}");
    assert_eq!(t["consistent"], 300, "{r}");
    assert_eq!(t["missing"], 2700, "{r}");
    assert_eq!(r["rechecked"], 100, "exactly the changed rows: {r}");
    assert_eq!(r["changed_during_scan"], 100, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On external Redis the write time of a value is the lease fill's `written` field
/// (`HGET {key}:lease written`); a plain SET fill has none (unknown age). A user
/// without replication grants still gets an audit, with a note that rows changed
/// during the scan could not be re-checked.
#[test]
fn audit_on_redis_reads_lease_write_times() {
    let db = Users::rows(100).db();
    db.sql(
        "CREATE USER ro@'%' IDENTIFIED BY 'ro'; GRANT SELECT ON app.* TO ro@'%';
         CREATE USER ro@'localhost' IDENTIFIED BY 'ro'; GRANT SELECT ON app.* TO ro@'localhost';",
    )
    .expect("read-only user");
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis_server = connectors::testing::RedisServer::start(&[]).expect("redis-server");
    let mut c = redis_conn(&redis_server.url());
    fill_seeded(&mut c, 1..=10);
    // user:11: a lease fill two minutes ago; user:12: a plain SET (no write time).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let written = now_ms - 120_000;
    set(&mut c, "user:11", &user_json_named(11, Some("Old")));
    let _: () = redis::cmd("HSET")
        .arg("{user:11}:lease")
        .arg("written")
        .arg(written)
        .query(&mut c)
        .expect("HSET");
    set(&mut c, "user:12", &user_json_named(12, Some("Old")));
    let dir = tmpdir("audit4");
    let ro = format!("mysql://ro:ro@127.0.0.1:{}", db.port());
    let cfg = AuditConfig::new(
        format!(
            "[target]\nkind = \"redis\"\nurl = \"{}\"\n",
            redis_server.url()
        ),
        &ro,
        USER_RULE,
    )
    .write(&dir.join("coherent.toml"));
    let (code, r) = audit(&cfg, &dir.join("out"));
    assert_eq!(code, 1, "{r}");
    let t = &r["totals"];
    assert_eq!(
        (&t["consistent"], &t["stale"]),
        (&10.into(), &2.into()),
        "{r}"
    );
    let stale = r["tables"][0]["stale_keys"].as_array().expect("stale");
    let w = |k: &str| {
        stale
            .iter()
            .find(|s| s["key"] == k)
            .map(|s| s["written_ms"].clone())
            .unwrap_or_else(|| panic!("{k} not listed: {r}"))
    };
    assert_eq!(w("user:11"), serde_json::json!(written), "lease fill time");
    assert_eq!(w("user:12"), serde_json::Value::Null, "plain SET: unknown");
    let age = &r["staleness_age"];
    assert_eq!(age["unknown"], 1, "{age}");
    assert_eq!(
        age["counts"][3], 1,
        "two minutes old: in the <= 10 min bucket: {age}"
    );
    assert_eq!(r["changed_during_scan"], serde_json::Value::Null, "{r}");
    assert!(r["notes"].to_string().contains("binlog"), "{r}");
    // Redis has no OBJECT WRITTEN: the lease hashes are read, and the report says so.
    assert!(
        r["notes"].to_string().contains("has no OBJECT WRITTEN"),
        "{r}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Redis Cluster (three masters): values are read per key through the cluster
/// connection, write times from the lease hashes in each key's slot, and orphans
/// by SCANning every master; the counts equal the ground truth.
#[test]
fn audit_on_redis_cluster() {
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let cluster = connectors::testing::RedisCluster::start().expect("start a redis cluster");
    let db = Users::rows(60).db();
    // redis-cli -c follows MOVED to the key's master.
    let cli = |args: &[&str]| {
        let mut a = vec!["-c"];
        a.extend_from_slice(args);
        cluster.nodes[0]
            .cli(&a)
            .expect("redis-cli")
            .trim()
            .to_string()
    };
    let set = |k: &str, v: &str| assert_eq!(cli(&["SET", k, v]), "OK", "SET {k}");
    // Consistent: 1..=20; stale: 21..=25 (user:21 by a lease fill 2 minutes ago);
    // orphans: 9001..=9010 (no such rows); missing: the other 35 rows.
    for id in 1..=20i64 {
        set(&format!("user:{id}"), &user_json_seeded(id));
    }
    let stale: Vec<String> = (21..=25).map(|id| format!("user:{id}")).collect();
    for (id, k) in (21i64..).zip(&stale) {
        set(k, &user_json_named(id, Some("Old")));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let written = now_ms - 120_000;
    assert_eq!(
        cli(&["HSET", "{user:21}:lease", "written", &written.to_string()]),
        "1"
    );
    let orphans: Vec<String> = (9001..=9010).map(|id| format!("user:{id}")).collect();
    for (id, k) in (9001i64..).zip(&orphans) {
        set(k, &user_json_seeded(id));
    }
    // The keys are spread: every master holds consistent, stale and orphan keys.
    let on = |n: &connectors::testing::RedisServer, keys: &[String]| {
        keys.iter()
            .filter(|k| n.cli(&["EXISTS", k]).expect("redis-cli").trim() == "1")
            .count()
    };
    let consistent: Vec<String> = (1..=20).map(|id| format!("user:{id}")).collect();
    let mut spread = Vec::new();
    for n in &cluster.nodes {
        spread.push((on(n, &consistent), on(n, &stale), on(n, &orphans)));
    }
    assert!(
        spread.iter().all(|&(c, s, o)| c > 0 && o > 0 && s < 5),
        "keys not spread over the masters: {spread:?}"
    );
    let dir = tmpdir("audit-cluster");
    let url = db.url();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let cfg = AuditConfig::new(
        format!(
            "[target]\nkind = \"redis-cluster\"\nnodes = [{}]\n",
            nodes.join(", ")
        ),
        &url,
        USER_RULE,
    )
    .write(&dir.join("coherent.toml"));
    let (code, r) = audit(&cfg, &dir.join("out"));
    assert_eq!(code, 1, "{r}");
    let c = &entry(&r, "user:{id}")["counts"];
    assert_eq!(c["rows"], 60, "{r}");
    assert_eq!(c["consistent"], 20, "{r}");
    assert_eq!(c["stale"], 5, "{r}");
    assert_eq!(c["orphan"], 10, "{r}");
    assert_eq!(c["missing"], 35, "{r}");
    assert_eq!(c["unchecked"], 0, "{r}");
    let listed: std::collections::BTreeMap<String, serde_json::Value> = r["tables"][0]
        ["stale_keys"]
        .as_array()
        .expect("stale keys")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap_or("").to_string(),
                s["written_ms"].clone(),
            )
        })
        .collect();
    let names: Vec<&String> = listed.keys().collect();
    let mut want: Vec<&String> = stale.iter().collect();
    want.sort();
    assert_eq!(names, want, "{r}");
    // The lease hash of user:21 lives in its slot, read through the cluster.
    assert_eq!(listed["user:21"], serde_json::json!(written), "{r}");
    assert_eq!(listed["user:22"], serde_json::Value::Null, "plain SET: {r}");
    let mut listed_orphans: Vec<String> = entry(&r, "user:{id}")["orphan_keys"]
        .as_array()
        .expect("orphan keys")
        .iter()
        .map(|k| k.as_str().unwrap_or("").to_string())
        .collect();
    listed_orphans.sort();
    let mut want = orphans.clone();
    want.sort();
    assert_eq!(listed_orphans, want, "each orphan once: {r}");
    assert!(r["notes"].to_string().contains("3 masters"), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the real sidecar invalidating (binlog pipeline, `[audit] sample = 1`): a
/// writer updates rows and refills their keys while a rate-limited audit scans;
/// nothing is reported stale, and the report carries the sidecar's invalidation
/// lag read from `/status` on the config's `[admin] listen`.
#[test]
fn audit_with_the_running_sidecar() {
    let db = Users::rows(2000).db();
    db.sql(WRITER_USER).expect("writer user");
    let dir = tmpdir("audit5");
    let url = db.url();
    let serve_cfg = ServeConfig {
        mysql: &url,
        server_id: 64021,
        rest: &format!("[audit]\nsample = 1.0\ndelays_ms = [500]\n{USER_RULE}"),
        ..ServeConfig::default()
    }
    .write(&dir);
    let sidecar = Sidecar::start_ready(&serve_cfg);
    let mut c = engine_conn(&sidecar.engine);
    fill_seeded(&mut c, 1..=300);
    // The audit's config: the same database and rules, the sidecar's addresses.
    let audit_cfg = AuditConfig {
        admin: &sidecar.admin,
        server_id: 64021,
        ..AuditConfig::engine(&sidecar.engine, &url, USER_RULE)
    }
    .write(&dir.join("audit.toml"));
    let child = RunningAudit::spawn(&audit_cfg, &dir.join("out"), 1000);
    // The writer: UPDATE, then refill the key with the new row (a cache-aside
    // reader); the sidecar deletes the key after each commit.
    let (code, log, updates) = child.finish_while_writing(&db, &sidecar.engine, false);
    let r = read_report(&dir.join("out"));
    eprintln!(
        "{updates} updates; totals {}, rechecked {}, lag count {}",
        r["totals"], r["rechecked"], r["invalidation_lag"]["count"]
    );
    assert!(updates > 0, "the writer ran during the scan");
    assert_eq!(code, Some(0), "no stale report: {r}\n{log}");
    assert_eq!(r["totals"]["stale"], 0, "{r}");
    assert_eq!(r["totals"]["orphan"], 0, "{r}");
    let lag = &r["invalidation_lag"];
    assert!(
        lag["count"].as_u64().unwrap_or(0) > 0,
        "sampled deletes: {r}"
    );
    assert_eq!(lag["source"], format!("http://{}/status", sidecar.admin));
    assert!(!r["notes"].to_string().contains("no sidecar"), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pointer-style secondary template (`user:email:{email}` caching the id) is not
/// compared by value (the rule's `value.keys` defaults to its first template): its
/// cached keys count `unchecked`, never stale, and its orphans are still found. The
/// engine requires a password and listens on a wildcard address: the audit reaches
/// it on loopback with `[engine] requirepass`; without the password it fails
/// (exit 2), it does not fall back to another way of reading write times.
#[test]
fn audit_pointer_template_on_a_password_engine() {
    let db = Users {
        rows: 200,
        email_index: true,
        ..Users::default()
    }
    .db();
    let e = Sidecar::engine_only(&["--listen", "0.0.0.0:0", "--requirepass", "s3cret"]);
    assert!(
        e.engine.starts_with("0.0.0.0:"),
        "wildcard listen: {}",
        e.engine
    );
    let port = e
        .engine
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    let mut c = redis_conn(&format!("redis://:s3cret@127.0.0.1:{port}"));
    fill_seeded(&mut c, 1..=20);
    // The pointers: the id, as a service caching "email -> id" stores it.
    for id in 1..=30i64 {
        set(&mut c, &format!("user:email:u{id}@x.org"), &id.to_string());
    }
    set(&mut c, "user:email:gone@x.org", "999");
    let dir = tmpdir("audit-pointer");
    let url = db.url();
    let config = AuditConfig::engine(&e.engine, &url, USER_EMAIL_RULE);
    let cfg = AuditConfig {
        cache: format!("{}requirepass = \"s3cret\"\n", config.cache),
        ..config
    }
    .write(&dir.join("coherent.toml"));
    let (code, r) = audit(&cfg, &dir.join("out"));
    assert_eq!(code, 1, "the orphan pointer: {r}");
    let id = entry(&r, "user:{id}");
    assert_eq!(id["compared"], true);
    assert_eq!(
        (&id["counts"]["consistent"], &id["counts"]["missing"]),
        (&20.into(), &180.into()),
        "{r}"
    );
    let em = entry(&r, "user:email:{email}");
    assert_eq!(em["compared"], false, "{r}");
    let n = &em["counts"];
    assert_eq!(
        (
            &n["consistent"],
            &n["stale"],
            &n["unchecked"],
            &n["missing"],
            &n["orphan"]
        ),
        (&0.into(), &0.into(), &30.into(), &170.into(), &1.into()),
        "pointers are unchecked, not stale: {r}"
    );
    assert_eq!(
        em["orphan_keys"],
        serde_json::json!(["user:email:gone@x.org"])
    );
    assert_eq!(r["totals"]["unchecked"], 30);
    assert_eq!(r["totals"]["stale"], 0);
    // Without the orphan the deploy gate passes although 30 pointers are cached.
    let _: () = redis::cmd("DEL")
        .arg("user:email:gone@x.org")
        .query(&mut c)
        .expect("DEL");
    let (code, r) = audit(&cfg, &dir.join("clean"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["totals"]["unchecked"], 30);
    // Without the password: an error naming the refusal, no report.
    let nopw = config.write(&dir.join("nopw.toml"));
    let out = run_audit(&nopw, &dir.join("nopw"));
    let err = out.stderr;
    assert_eq!(out.code, Some(2), "{err}");
    assert!(
        err.contains("NOAUTH") || err.contains("uthentication"),
        "{err}"
    );
    assert!(!dir.join("nopw/report.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rows deleted during a rate-limited scan while their keys stay cached (nothing
/// invalidates them here): each key is counted once. Rows 1..=50 were scanned
/// (consistent) before their delete, so the orphan pass's re-check moves them to
/// orphan; rows 2901..=2910 held stale values, were queued by the scan (their row
/// changed) and are met again by the orphan pass, which must not queue them twice.
#[test]
fn audit_counts_a_key_changed_during_the_scan_once() {
    let db = Users::rows(3000).db();
    let e = engine();
    let mut c = engine_conn(&e.engine);
    for id in (1..=300i64).chain(2901..=2910) {
        let name = if id > 2900 {
            "Old".to_string()
        } else {
            format!("Name {id}")
        };
        set(
            &mut c,
            &format!("user:{id}"),
            &user_json_named(id, Some(&name)),
        );
    }
    let dir = tmpdir("audit-once");
    let url = db.url();
    let cfg = AuditConfig::engine(&e.engine, &url, USER_RULE).write(&dir.join("coherent.toml"));
    // 3000 rows at 1000 rows/s: the first progress line comes after about 1 s, when
    // rows 1..=50 are scanned and rows 2901..=2910 are not yet.
    let child = RunningAudit::spawn(&cfg, &dir.join("out"), 1000);
    let mut deleted = false;
    let (code, log) = child.finish(|line| {
        if !deleted && line.contains("rows/s") {
            deleted = true;
            db.sql("DELETE FROM app.users WHERE id <= 50 OR id BETWEEN 2901 AND 2910")
                .expect("delete");
        }
    });
    let r = read_report(&dir.join("out"));
    assert!(deleted, "a progress line came: {log}");
    assert_eq!(code, Some(1), "{r}\n{log}");
    let t = &r["totals"];
    assert_eq!(t["rows"], 3000, "{r}");
    assert_eq!(
        (&t["consistent"], &t["stale"], &t["orphan"], &t["missing"]),
        (&250.into(), &0.into(), &60.into(), &2690.into()),
        "every key counted once: {r}"
    );
    assert_eq!(r["rechecked"], 60, "each changed key re-checked once: {r}");
    let orphans = entry(&r, "user:{id}")["orphan_keys"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    assert_eq!(orphans, 60, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}
