//! `coherent audit` against a private MariaDB and the engine (`coherent serve`): the
//! test writes rows, fills the cache with correct values for some keys, stale values
//! for others and orphans, and the audit's counts must equal that ground truth exactly.
//! Exit codes: 0 when clean, 1 with stale/orphan keys, 2 on an error. Also: every key
//! template of a rule is classified (keys attributed to the most specific template),
//! and rows a writer changes during a rate-limited scan are re-checked, not reported
//! stale.

mod common;

use connectors::testing::MariaDbOptions;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Engine(Child, String);
impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn engine() -> Engine {
    engine_with(&["--listen", "127.0.0.1:0"])
}

/// `coherent serve` (engine only) with `args`; its address as it prints it.
fn engine_with(args: &[&str]) -> Engine {
    let child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--admin-listen", ""])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn coherent");
    // Owned by the guard first, so it is killed and reaped even if reading fails.
    let mut e = Engine(child, String::new());
    let out = e.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines.next().expect("coherent exited").expect("read");
        if let Some(a) = line.strip_prefix("coherent: engine listening on ") {
            e.1 = a.to_string();
            return e;
        }
    }
}

fn json(id: i64, email: &str, name: Option<&str>) -> String {
    serde_json::json!({"id": id, "email": email, "name": name}).to_string()
}

fn audit(cfg: &std::path::Path, out: &std::path::Path) -> (i32, serde_json::Value) {
    let st = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .status()
        .expect("run audit");
    (st.code().unwrap_or(-1), read_report(out))
}

fn read_report(out: &std::path::Path) -> serde_json::Value {
    std::fs::read(out.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The report entry of one key template.
fn entry<'a>(r: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    r["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["key"] == key))
        .unwrap_or_else(|| panic!("no entry for {key} in {r}"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coherent-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

#[test]
fn audit_counts_equal_ground_truth() {
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), IF(seq % 7 = 0, NULL, CONCAT('Name ', seq)) FROM seq_1_to_2000;",
    )
    .expect("schema");
    let e = engine();
    let client = redis::Client::open(format!("redis://{}", e.1)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    let dir = temp_dir("audit");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[admin]\nlisten = \"\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
            e.1,
            db.url()
        ),
    )
    .expect("config");
    let set = |c: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(c).expect("SET");
    };
    // Correct values for ids 1..=300 (name NULL for multiples of 7).
    for id in 1..=300i64 {
        let name = format!("Name {id}");
        let name = (id % 7 != 0).then_some(name.as_str());
        set(
            &mut c,
            &format!("user:{id}"),
            &json(id, &format!("u{id}@x.org"), name),
        );
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
            json(id, &format!("u{id}@x.org"), Some("Old name"))
        };
        set(&mut c, &format!("user:{id}"), &v);
        stale.insert(format!("user:{id}"));
    }
    for id in [5001i64, 5002, 5003, 5004] {
        set(&mut c, &format!("user:{id}"), &json(id, "gone@x.org", None));
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
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[engine]\nlisten = \"{}\"\n[mysql]\nurl = \"mysql://repl:secret@127.0.0.1:1\"\nserver_id = 77\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\nvalue = {{ columns = [\"id\"] }}\n",
            e.1
        ),
    )
    .expect("config");
    let (code, _) = audit(&bad, &dir.join("bad"));
    assert_eq!(code, 2);
    // A Redis Cluster target is refused (exit 2), not audited on the wrong cache.
    let cluster = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(
        &cluster,
        format!("[target]\nkind = \"redis-cluster\"\nnodes = [\"127.0.0.1:1\"]\n{text}"),
    )
    .expect("config");
    let st = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--config"])
        .arg(&cluster)
        .arg("--out")
        .arg(dir.join("cluster"))
        .output()
        .expect("run audit");
    assert_eq!(st.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&st.stderr).contains("redis-cluster"),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
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
        // Under CI the test command installs it (scripts/install-deps.sh): missing is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (scripts/install-deps.sh installs it)"
        );
        eprintln!("SKIP: chromium is not installed (apt-get install -y chromium)");
        return;
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
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL, KEY (email));
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_200;",
    )
    .expect("schema");
    let e = engine();
    let client = redis::Client::open(format!("redis://{}", e.1)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    let set = |c: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(c).expect("SET");
    };
    for id in 1..=100i64 {
        let v = json(id, &format!("u{id}@x.org"), Some(&format!("Name {id}")));
        set(&mut c, &format!("user:{id}"), &v);
        if id <= 60 {
            // 1..=50 correct under the email key too, 51..=60 stale there.
            let v = if id <= 50 {
                v
            } else {
                json(id, &format!("u{id}@x.org"), Some("Old"))
            };
            set(&mut c, &format!("user:email:u{id}@x.org"), &v);
        }
    }
    set(&mut c, "user:9999", &json(9999, "gone@x.org", None));
    // Another rule's key (no renderer, not audited) is not an orphan of user:{id}.
    set(&mut c, "user:session:s1", "opaque");
    set(
        &mut c,
        "user:email:nobody@x.org",
        &json(0, "nobody@x.org", None),
    );
    // The collation finds u1@x.org for it, but no row renders this exact key.
    set(&mut c, "user:email:U1@X.ORG", &json(1, "U1@X.ORG", None));
    let lag = serde_json::json!({"audit": {"invalidation_lag": {
        "le_secs": [0.001, 0.01, 0.1], "counts": [5, 9, 10], "count": 11, "sum_secs": 0.4}}});
    let admin = fake_status(lag.to_string());
    let dir = temp_dir("audit2");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[admin]\nlisten = \"{admin}\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"], keys = [\"user:{{id}}\", \"user:email:{{email}}\"] }}\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:session:{{email}}\"]\n",
            e.1,
            db.url()
        ),
    )
    .expect("config");
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

/// A writer updates rows while a rate-limited audit scans them. The test itself
/// plays the sidecar and the cache-aside reader: after each UPDATE it deletes the
/// key and refills it with the new row, so the cache is correctly invalidated, yet
/// the scan reads some rows before an update and their keys after it. Those are
/// seen in the binlog and re-checked: no stale report.
#[test]
fn audit_rechecks_rows_changed_during_the_scan() {
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_3000;
         CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON app.* TO w@'%';",
    )
    .expect("schema");
    let e = engine();
    let client = redis::Client::open(format!("redis://{}", e.1)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    for id in 1..=300i64 {
        let v = json(id, &format!("u{id}@x.org"), Some(&format!("Name {id}")));
        let _: () = redis::cmd("SET")
            .arg(format!("user:{id}"))
            .arg(v)
            .query(&mut c)
            .expect("SET");
    }
    let dir = temp_dir("audit3");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[admin]\nlisten = \"\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
            e.1,
            db.url()
        ),
    )
    .expect("config");
    // 3000 rows at 1500 rows/s: the scan takes about 2 s; the first progress line
    // comes after about 1 s, when the scan is well past the rows the writer updates.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--max-rows-per-sec", "1500", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run audit");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = format!("mysql://w:w@127.0.0.1:{}/app", db.port());
        let engine = e.1.clone();
        std::thread::spawn(move || -> u64 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(url).await.expect("writer");
                let client = redis::Client::open(format!("redis://{engine}")).expect("client");
                let mut cache = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("cache");
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for id in 1..=300i64 {
                        n += 1;
                        let name = format!("W{n}");
                        conn.exec_drop("UPDATE users SET name = ? WHERE id = ?", (&name, id))
                            .await
                            .expect("update");
                        let key = format!("user:{id}");
                        let _: () = redis::cmd("DEL")
                            .arg(&key)
                            .query_async(&mut cache)
                            .await
                            .expect("DEL");
                        let v = json(id, &format!("u{id}@x.org"), Some(&name));
                        let _: () = redis::cmd("SET")
                            .arg(&key)
                            .arg(v)
                            .query_async(&mut cache)
                            .await
                            .expect("SET");
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                    }
                }
                n
            })
        })
    };
    let err = child.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(err).lines() {
        let line = line.expect("read");
        if line.contains("rows/s") {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        log.push_str(&line);
        log.push('\n');
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let updates = writer.join().expect("writer");
    let code = child.wait().expect("wait").code();
    let r = read_report(&dir.join("out"));
    assert!(updates > 300, "the writer ran during the scan: {updates}");
    assert_eq!(code, Some(0), "no stale report: {r}\n{log}");
    let t = &r["totals"];
    assert_eq!(t["stale"], 0, "{r}");
    assert_eq!(t["orphan"], 0, "{r}");
    assert_eq!(t["rows"], 3000);
    let c = t["consistent"].as_u64().unwrap_or(0);
    let m = t["missing"].as_u64().unwrap_or(0);
    assert_eq!(c + m, 3000, "{r}");
    assert!(c >= 290, "rows 1..=300 are cached and end consistent: {r}");
    assert!(
        r["rechecked"].as_u64().unwrap_or(0) > 0,
        "some rows were read before an update and their key after it: {r}"
    );
    assert!(r["changed_during_scan"].as_u64().unwrap_or(0) > 0, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On external Redis the write time of a value is the lease fill's `written` field
/// (`HGET {key}:lease written`); a plain SET fill has none (unknown age). A user
/// without replication grants still gets an audit, with a note that rows changed
/// during the scan could not be re-checked.
#[test]
fn audit_on_redis_reads_lease_write_times() {
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_100;
         CREATE USER ro@'%' IDENTIFIED BY 'ro'; GRANT SELECT ON app.* TO ro@'%';
         CREATE USER ro@'localhost' IDENTIFIED BY 'ro'; GRANT SELECT ON app.* TO ro@'localhost';",
    )
    .expect("schema");
    assert!(
        connectors::testing::RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let redis_server = connectors::testing::RedisServer::start(&[]).expect("redis-server");
    let client = redis::Client::open(redis_server.url()).expect("client");
    let mut c = client.get_connection().expect("connect redis");
    let set = |c: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(c).expect("SET");
    };
    for id in 1..=10i64 {
        let v = json(id, &format!("u{id}@x.org"), Some(&format!("Name {id}")));
        set(&mut c, &format!("user:{id}"), &v);
    }
    // user:11: a lease fill two minutes ago; user:12: a plain SET (no write time).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let written = now_ms - 120_000;
    set(&mut c, "user:11", &json(11, "u11@x.org", Some("Old")));
    let _: () = redis::cmd("HSET")
        .arg("{user:11}:lease")
        .arg("written")
        .arg(written)
        .query(&mut c)
        .expect("HSET");
    set(&mut c, "user:12", &json(12, "u12@x.org", Some("Old")));
    let dir = temp_dir("audit4");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"\"\n[target]\nkind = \"redis\"\nurl = \"{}\"\n[mysql]\nurl = \"mysql://ro:ro@127.0.0.1:{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
            redis_server.url(),
            db.port()
        ),
    )
    .expect("config");
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

/// With the real sidecar invalidating (binlog pipeline, `[audit] sample = 1`): a
/// writer updates rows and refills their keys while a rate-limited audit scans;
/// nothing is reported stale, and the report carries the sidecar's invalidation
/// lag read from `/status` on the config's `[admin] listen`.
#[test]
fn audit_with_the_running_sidecar() {
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_2000;
         CREATE USER w@'%' IDENTIFIED BY 'w'; GRANT ALL ON app.* TO w@'%';",
    )
    .expect("schema");
    let dir = temp_dir("audit5");
    let rules = "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { format = \"json\", columns = [\"id\", \"email\", \"name\"] }\n";
    let serve_cfg = dir.join("serve.toml");
    std::fs::write(
        &serve_cfg,
        format!(
            "[mysql]\nurl = \"{}\"\nserver_id = 64021\nheartbeat_secs = 1\n[checkpoint]\nstore = \"file\"\npath = \"{}\"\n[retry]\npath = \"{}\"\n[audit]\nsample = 1.0\ndelays_ms = [500]\n{rules}",
            db.url(),
            dir.join("checkpoint").display(),
            dir.join("retry").display()
        ),
    )
    .expect("config");
    let sidecar = common::Sidecar::start(&serve_cfg);
    sidecar.wait_ready(std::time::Duration::from_secs(30));
    let client = redis::Client::open(format!("redis://{}", sidecar.engine)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    for id in 1..=300i64 {
        let v = json(id, &format!("u{id}@x.org"), Some(&format!("Name {id}")));
        let _: () = redis::cmd("SET")
            .arg(format!("user:{id}"))
            .arg(v)
            .query(&mut c)
            .expect("SET");
    }
    // The audit's config: the same database and rules, the sidecar's addresses.
    let audit_cfg = dir.join("audit.toml");
    std::fs::write(
        &audit_cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[admin]\nlisten = \"{}\"\n[mysql]\nurl = \"{}\"\nserver_id = 64021\n{rules}",
            sidecar.engine,
            sidecar.admin,
            db.url()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--max-rows-per-sec", "1000", "--config"])
        .arg(&audit_cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run audit");
    // The writer: UPDATE, then refill the key with the new row (a cache-aside
    // reader); the sidecar deletes the key after each commit.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = format!("mysql://w:w@127.0.0.1:{}/app", db.port());
        let engine = sidecar.engine.clone();
        std::thread::spawn(move || -> u64 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(url).await.expect("writer");
                let client = redis::Client::open(format!("redis://{engine}")).expect("client");
                let mut cache = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("cache");
                let mut n = 0u64;
                'outer: loop {
                    for id in 1..=300i64 {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break 'outer;
                        }
                        n += 1;
                        let name = format!("W{n}");
                        conn.exec_drop("UPDATE users SET name = ? WHERE id = ?", (&name, id))
                            .await
                            .expect("update");
                        let v = json(id, &format!("u{id}@x.org"), Some(&name));
                        let _: () = redis::cmd("SET")
                            .arg(format!("user:{id}"))
                            .arg(v)
                            .query_async(&mut cache)
                            .await
                            .expect("SET");
                    }
                }
                n
            })
        })
    };
    let err = child.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(err).lines() {
        let line = line.expect("read");
        if line.contains("rows/s") {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        log.push_str(&line);
        log.push('\n');
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let updates = writer.join().expect("writer");
    let code = child.wait().expect("wait").code();
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
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL, KEY (email));
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_200;",
    )
    .expect("schema");
    let e = engine_with(&["--listen", "0.0.0.0:0", "--requirepass", "s3cret"]);
    assert!(e.1.starts_with("0.0.0.0:"), "wildcard listen: {}", e.1);
    let port =
        e.1.rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default();
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{port}")).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    let set = |c: &mut redis::Connection, k: &str, v: &str| {
        let _: () = redis::cmd("SET").arg(k).arg(v).query(c).expect("SET");
    };
    for id in 1..=20i64 {
        let v = json(id, &format!("u{id}@x.org"), Some(&format!("Name {id}")));
        set(&mut c, &format!("user:{id}"), &v);
    }
    // The pointers: the id, as a service caching "email -> id" stores it.
    for id in 1..=30i64 {
        set(&mut c, &format!("user:email:u{id}@x.org"), &id.to_string());
    }
    set(&mut c, "user:email:gone@x.org", "999");
    let dir = temp_dir("audit-pointer");
    let config = |password: &str| {
        format!(
            "[engine]\nlisten = \"{}\"\n{password}[admin]\nlisten = \"\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
            e.1,
            db.url()
        )
    };
    let cfg = dir.join("coherent.toml");
    std::fs::write(&cfg, config("requirepass = \"s3cret\"\n")).expect("config");
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
    let nopw = dir.join("nopw.toml");
    std::fs::write(&nopw, config("")).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--config"])
        .arg(&nopw)
        .arg("--out")
        .arg(dir.join("nopw"))
        .output()
        .expect("run audit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
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
    let db = common::mariadb(MariaDbOptions::default());
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), CONCAT('Name ', seq) FROM seq_1_to_3000;",
    )
    .expect("schema");
    let e = engine();
    let client = redis::Client::open(format!("redis://{}", e.1)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    for id in (1..=300i64).chain(2901..=2910) {
        let name = if id > 2900 {
            "Old".to_string()
        } else {
            format!("Name {id}")
        };
        let _: () = redis::cmd("SET")
            .arg(format!("user:{id}"))
            .arg(json(id, &format!("u{id}@x.org"), Some(&name)))
            .query(&mut c)
            .expect("SET");
    }
    let dir = temp_dir("audit-once");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[admin]\nlisten = \"\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
            e.1,
            db.url()
        ),
    )
    .expect("config");
    // 3000 rows at 1000 rows/s: the first progress line comes after about 1 s, when
    // rows 1..=50 are scanned and rows 2901..=2910 are not yet.
    let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["audit", "--max-rows-per-sec", "1000", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run audit");
    let err = child.stderr.take().expect("stderr");
    let mut log = String::new();
    let mut deleted = false;
    for line in BufReader::new(err).lines() {
        let line = line.expect("read");
        if !deleted && line.contains("rows/s") {
            deleted = true;
            db.sql("DELETE FROM app.users WHERE id <= 50 OR id BETWEEN 2901 AND 2910")
                .expect("delete");
        }
        log.push_str(&line);
        log.push('\n');
    }
    let code = child.wait().expect("wait").code();
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
