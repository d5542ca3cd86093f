//! The documentation stays true to the repository: every relative link in README.md
//! and docs/**/*.md resolves (the file, and for `#anchor` a heading of it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// README.md and every Markdown file under docs/.
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
    let mut files = vec![repo.join("README.md")];
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
