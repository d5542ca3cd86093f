//! The documentation stays true to the repository: every relative link in README.md
//! and docs/**/*.md resolves (the file, and for `#anchor` a heading of it); the
//! configuration reference is what `coherent config-reference` generates and lists
//! every key the code accepts; the metrics of the monitoring page, the alert rules and
//! the dashboard are the ones `coherent serve` exposes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// README.md, docker/ and examples/ READMEs, and every Markdown file under docs/.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let repo = repo();
    let mut files = vec![
        repo.join("README.md"),
        repo.join("docker/README.md"),
        repo.join("examples/README.md"),
    ];
    walk(&repo.join("docs"), &mut files);
    files
}

/// The lines of `md` outside fenced code blocks.
fn prose(md: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    md.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        // Indented blocks are code too (four spaces, not inside a list item's text).
        !fenced && !l.starts_with("    ")
    })
}

/// `line` without its inline code spans.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` in `md`.
fn links(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(md) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            match after.find(')') {
                Some(j) => {
                    out.push(after[..j].trim().to_string());
                    rest = &after[j..];
                }
                None => break,
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`),
/// spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of `md`, with GitHub's `-1`, `-2` for repeats.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(md) {
        let t = line.trim_start();
        if !t.starts_with('#') {
            continue;
        }
        let text = t.trim_start_matches('#');
        if !text.starts_with(' ') {
            continue;
        }
        let base = slug(&without_code_marks(text));
        let mut s = base.clone();
        let mut n = 0;
        while seen.contains(&s) {
            n += 1;
            s = format!("{base}-{n}");
        }
        seen.insert(s);
    }
    seen
}

/// A heading's text as GitHub renders it: code spans keep their text, their
/// backquotes go.
fn without_code_marks(text: &str) -> String {
    text.replace('`', "")
}

#[test]
fn every_relative_link_resolves() {
    let repo = repo();
    let files = markdown_files();
    assert!(files.len() > 10, "docs/ holds the documentation: {files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let name = file
            .strip_prefix(&repo)
            .unwrap_or(file)
            .display()
            .to_string();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().expect("a directory").join(path)
            };
            if !target.exists() {
                broken.push(format!("{name}: {link}: no file {}", target.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&body).contains(anchor) {
                    broken.push(format!(
                        "{name}: {link}: no heading #{anchor} in {}; its anchors are {:?}",
                        target.display(),
                        anchors(&body)
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug(&without_code_marks("Backfill: `coherent invalidate`")),
        "backfill-coherent-invalidate"
    );
    assert_eq!(
        slug(&without_code_marks(
            "Binlog lag and catch-up (`bench/binlog-lag.sh`)"
        )),
        "binlog-lag-and-catch-up-benchbinlog-lagsh"
    );
    assert_eq!(slug("The engine's keys"), "the-engines-keys");
    let a = anchors("# A\n## Metrics\n```\n# not a heading\n```\n### Metrics\n");
    assert_eq!(
        a,
        ["a", "metrics", "metrics-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

const BEGIN: &str = "<!-- BEGIN config-reference -->\n";
const END: &str = "<!-- END config-reference -->";

/// Runs `coherent config-reference ARGS` and returns its standard output.
fn config_reference(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coherent"))
        .arg("config-reference")
        .args(args)
        .output()
        .expect("run coherent config-reference");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The generated block of docs/configuration.md, and where it sits.
fn reference_block(page: &str) -> (usize, usize) {
    let start = page.find(BEGIN).expect("the BEGIN marker") + BEGIN.len();
    let end = page[start..].find(END).expect("the END marker") + start;
    (start, end)
}

/// The reference in docs/configuration.md is what the code generates now. With
/// `UPDATE_DOCS=1` the test rewrites it instead (then check the diff in).
#[test]
fn the_configuration_reference_matches_the_code() {
    let path = repo().join("docs/configuration.md");
    let page = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let (start, end) = reference_block(&page);
    let generated = config_reference(&[]);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{generated}{}", &page[..start], &page[end..]);
        std::fs::write(&path, updated).expect("write docs/configuration.md");
        return;
    }
    assert!(
        page[start..end] == generated,
        "docs/configuration.md's reference differs from `coherent config-reference`: \
         run UPDATE_DOCS=1 cargo test -p coherent --test docs"
    );
}

/// Every key the code accepts (as the declarations list them, independently of the
/// descriptions) has a row under its section's heading in the reference.
#[test]
fn every_accepted_config_key_is_in_the_reference() {
    let page = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("read");
    let (start, end) = reference_block(&page);
    let block = &page[start..end];
    let keys = config_reference(&["--keys"]);
    let mut missing = Vec::new();
    let mut count = 0;
    for line in keys.lines() {
        let (section, key) = line.split_once('\t').expect("section<TAB>key");
        count += 1;
        let heading = match section {
            "" => "### Top level".to_string(),
            "rules" => "### `[[rules]]`".to_string(),
            "rules.value" => "### `value` of `[[rules]]`".to_string(),
            s => format!("### `[{s}]`"),
        };
        let Some(at) = block.find(&format!("{heading}\n")) else {
            missing.push(format!("no heading {heading}"));
            continue;
        };
        let body = &block[at + heading.len()..];
        let body = &body[..body.find("\n### ").unwrap_or(body.len())];
        if !body.contains(&format!("\n| `{key}` |")) {
            missing.push(format!("[{section}] {key}"));
        }
    }
    assert!(count > 90, "only {count} keys declared");
    assert!(
        missing.is_empty(),
        "keys the code accepts but docs/configuration.md does not list: {missing:?}"
    );
}

/// The metric families the sidecar's source registers, as `/metrics` names them: a
/// counter gets `_total`; (name, kind) with kind `counter`, `gauge` or `histogram`.
fn registered_metrics() -> BTreeSet<(String, String)> {
    let src = repo().join("sidecar/src");
    let mut files = Vec::new();
    let mut todo = vec![src];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(std::fs::read_to_string(&p).expect("read"));
            }
        }
    }
    let all = files.join("\n");
    // The one name kept in a constant (timed.rs).
    let constant = |name: &str| -> Option<String> {
        let decl = format!("const {name}: &str = \"");
        let at = all.find(&decl)? + decl.len();
        Some(all[at..at + all[at..].find('"')?].to_string())
    };
    let mut out = BTreeSet::new();
    for (call, kind) in [
        ("_observable_counter(", "counter"),
        ("_counter(", "counter"),
        ("_observable_gauge(", "gauge"),
        ("_gauge(", "gauge"),
        ("_histogram(", "histogram"),
    ] {
        let mut rest = all.as_str();
        while let Some(i) = rest.find(call) {
            let arg_start = i + call.len();
            let arg_end = arg_start + rest[arg_start..].find(')').unwrap_or(0);
            let arg = rest[arg_start..arg_end].trim();
            rest = &rest[arg_end..];
            let name = match arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                Some(n) => n.to_string(),
                None => match constant(arg) {
                    Some(n) => n,
                    None => continue,
                },
            };
            if !name.starts_with("coherent_") {
                continue;
            }
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name
            };
            out.insert((exposed, kind.to_string()));
        }
    }
    out
}

/// The names a family appears under in the exposition (histograms as their series).
fn series_names(families: &BTreeSet<(String, String)>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, kind) in families {
        out.insert(name.clone());
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{s}"));
            }
        }
    }
    out
}

/// Every `coherent_*` word of `text`.
fn metric_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("coherent_") {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + word.len()..];
        out.insert(word);
    }
    out
}

/// The families a running `coherent serve` exposes, from its `# TYPE` lines: with a
/// pipeline (to a MySQL port nothing listens on, so it keeps reconnecting) and the
/// online audit on.
fn served_metrics() -> BTreeSet<(String, String)> {
    let dir = common::tmpdir("docs-metrics");
    let config = dir.join("coherent.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n\n[mysql]\nurl = \"mysql://u:p@127.0.0.1:1\"\nserver_id = 5\n\n[audit]\nsample = 1.0\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\n",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    let sc = common::Sidecar::start(&config);
    let mut text = String::new();
    let seen = common::wait_until(std::time::Duration::from_secs(20), || {
        text = sc.get("/metrics").1;
        text.contains("coherent_audit_checks_total")
    });
    assert!(seen, "no metrics: {text}\n{}", sc.log());
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| n.starts_with("coherent_"))
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect()
}

/// Recorded on first use, so a serve without traffic does not expose them yet.
const LAZY: &[&str] = &[
    "coherent_ha_leader",
    "coherent_delete_latency_seconds",
    "coherent_audit_invalidation_lag_seconds",
];

#[test]
fn alerts_dashboard_and_monitoring_page_use_the_real_metrics() {
    let registered = registered_metrics();
    let served = served_metrics();
    // The source scan finds what the server exposes, and what it does not expose yet
    // is only what is recorded lazily.
    for family in &served {
        assert!(
            registered.contains(family),
            "served {family:?} not found in the source: {registered:?}"
        );
    }
    for (name, _) in &registered {
        assert!(
            served.iter().any(|(n, _)| n == name) || LAZY.contains(&name.as_str()),
            "{name} is registered but not served by an idle coherent serve"
        );
    }
    let names: BTreeSet<String> = registered.iter().map(|(n, _)| n.clone()).collect();
    let series = series_names(&registered);

    // The monitoring page's table lists exactly the families.
    let page = std::fs::read_to_string(repo().join("docs/operations/monitoring.md"))
        .expect("monitoring.md");
    let listed: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("| `coherent_"))
        .map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("coherent_{name}")
        })
        .collect();
    assert_eq!(
        listed, names,
        "docs/operations/monitoring.md's metrics table and the code differ"
    );

    // Every metric the alert rules and the dashboard query exists.
    for file in [
        "docs/operations/prometheus-alerts.yml",
        "docs/operations/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect(file);
        let used = metric_words(&text);
        assert!(used.len() >= 10, "{file} uses only {used:?}");
        let unknown: Vec<_> = used.difference(&series).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the code does not expose: {unknown:?}"
        );
    }
    // The dashboard is JSON Grafana can import.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/operations/grafana-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 10));
}

/// The string literal starting at `text[0]` (a `"`), unescaped, and its length in
/// `text`.
fn string_literal(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.strip_prefix('"')?.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// The start of a message's first literal run of text (between `{...}` arguments)
/// long enough to name it, cut at its first `:`, `(`, `,` or `. `.
fn message_head(message: &str) -> Option<String> {
    let mut runs = Vec::new();
    let mut run = String::new();
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '{' => {
                depth += 1;
                runs.push(std::mem::take(&mut run));
            }
            '}' => depth -= 1,
            c if depth == 0 => run.push(c),
            _ => {}
        }
    }
    runs.push(run);
    runs.into_iter().find_map(|r| {
        let r = r.trim_start_matches([':', ' ']);
        let cut = [": ", " (", ", ", ". "]
            .iter()
            .filter_map(|p| r.find(p))
            .min()
            .unwrap_or(r.len());
        let head = r[..cut].trim();
        (head.len() >= 8).then(|| head.to_string())
    })
}

/// Every message `coherent check` can fail or warn with has its row on the
/// troubleshooting page.
#[test]
fn troubleshooting_covers_every_check_message() {
    let source = std::fs::read_to_string(repo().join("sidecar/src/check.rs")).expect("check.rs");
    let page = std::fs::read_to_string(repo().join("docs/operations/troubleshooting.md"))
        .expect("troubleshooting.md");
    let mut heads = Vec::new();
    for call in ["r.fail(", "r.warn("] {
        let mut rest = source.as_str();
        while let Some(i) = rest.find(call) {
            rest = &rest[i + call.len()..];
            let Some(q) = rest.find('"') else { break };
            // The message is the call's first string literal (maybe inside format!).
            if rest[..q].contains(')') {
                continue;
            }
            if let Some(head) = string_literal(&rest[q..]).and_then(|m| message_head(&m)) {
                heads.push(head);
            }
        }
    }
    assert!(
        heads.len() >= 15,
        "only {} messages found: {heads:?}",
        heads.len()
    );
    let missing: Vec<_> = heads
        .iter()
        .filter(|h| !page.contains(h.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "coherent check messages missing from docs/operations/troubleshooting.md: {missing:?}"
    );
}
