//! `coherent audit` against a private MariaDB and the engine (`coherent serve`): the
//! test writes rows, fills the cache with correct values for some keys, stale values
//! for others and orphans, and the audit's counts must equal that ground truth exactly.
//! Exit codes: 0 when clean, 1 with stale/orphan keys, 2 on an error.

use connectors::testing::{MariaDb, MariaDbOptions};
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
    let child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", ""])
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
    let report = std::fs::read(out.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (st.code().unwrap_or(-1), report)
}

#[test]
fn audit_counts_equal_ground_truth() {
    if !MariaDb::available() {
        eprintln!("SKIP: mariadbd is not installed");
        return;
    }
    let db = MariaDb::start(MariaDbOptions::default()).expect("start mariadb");
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.users (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, name VARCHAR(100) NULL);
         USE app; INSERT INTO app.users SELECT seq, CONCAT('u', seq, '@x.org'), IF(seq % 7 = 0, NULL, CONCAT('Name ', seq)) FROM seq_1_to_2000;",
    )
    .expect("schema");
    let e = engine();
    let client = redis::Client::open(format!("redis://{}", e.1)).expect("client");
    let mut c = client.get_connection().expect("connect engine");
    let dir = std::env::temp_dir().join(format!("coherent-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("coherent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engine]\nlisten = \"{}\"\n[mysql]\nurl = \"{}\"\nserver_id = 77\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\"]\nvalue = {{ format = \"json\", columns = [\"id\", \"email\", \"name\"] }}\n",
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
    // Clean so far: exit 0, counts exact.
    let (code, r) = audit(&cfg, &dir.join("clean"));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["totals"]["rows"], 2000);
    assert_eq!(r["totals"]["consistent"], 300);
    assert_eq!(r["totals"]["missing"], 1700);
    assert_eq!(r["totals"]["stale"], 0);
    assert_eq!(r["totals"]["orphan"], 0);
    // Stale: 25 keys with an old name, 5 with garbage; orphans: 4 keys without rows;
    // a negative-cache entry for a missing row is not an orphan.
    let mut stale = std::collections::BTreeSet::new();
    for id in (301..=325i64).chain(1001..=1005) {
        let v = if id > 1000 {
            "not json".to_string()
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
    assert_eq!(r["totals"]["consistent"], 300);
    assert_eq!(r["totals"]["stale"], 30);
    assert_eq!(r["totals"]["orphan"], 4);
    assert_eq!(r["totals"]["missing"], 2000 - 330);
    let listed: std::collections::BTreeSet<String> = r["tables"][0]["stale_keys"]
        .as_array()
        .expect("stale keys")
        .iter()
        .map(|s| s["key"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(listed, stale, "exactly the stale keys the test made");
    for s in r["tables"][0]["stale_keys"].as_array().expect("stale") {
        assert!(
            s["written_ms"].as_i64().is_some(),
            "OBJECT WRITTEN reported"
        );
    }
    let html = std::fs::read_to_string(dir.join("dirty/report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("user:301") && !html.contains("http://ex"));
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
    render_in_chromium(&dir.join("dirty/report.html"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Renders the page in headless Chromium and checks a screenshot was produced.
fn render_in_chromium(page: &std::path::Path) {
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
        .unwrap_or_else(|_| page.with_extension("png"));
    let profile = page.with_file_name("chromium-profile");
    let st = Command::new(bin)
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
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run chromium");
    assert!(st.success(), "chromium failed");
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 5000, "screenshot too small: {len} bytes");
}
