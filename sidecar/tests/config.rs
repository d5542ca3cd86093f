//! The config as a user meets it, through the binary: `coherent serve` and `coherent
//! check-config` refuse every bad value at load, before anything listens, with the
//! file, line, section and key; every config shipped in the repository (examples/,
//! docker/, the Kubernetes ConfigMap, the snippets of docs/ and examples/) loads; the data files land
//! in `data_dir`.

mod common;

use common::{wait_until, Sidecar};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The start of every case: no [engine] (the listen address comes from the
/// environment), the admin server off, a pipeline. Lines 1-6; line 7 is blank, so
/// an added section's header is line 8 and its first key line 9.
const BASE: &str =
    "[admin]\nlisten = \"\"\n\n[mysql]\nurl = \"mysql://u:p@127.0.0.1:1\"\nserver_id = 5\n";

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir(&format!("config-{name}"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Runs `coherent <args>` with `env`, killing it if it has not exited within 30 s (a
/// config that should be refused but is accepted would otherwise serve forever).
fn run(args: &[&str], config: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coherent"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("COHERENT_ENGINE_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coherent");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The `coherent: error:` line of a run.
fn error_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("coherent: error:"))
        .unwrap_or_default()
        .to_string()
}

/// One refused config: its text, environment, and the error after `coherent:
/// error: ` with `{file}` for the config's path.
struct Case {
    name: &'static str,
    text: String,
    env: Vec<(&'static str, &'static str)>,
    error: &'static str,
}

fn case(name: &'static str, section: &str, error: &'static str) -> Case {
    Case {
        name,
        text: format!("{BASE}\n{section}\n"),
        env: Vec::new(),
        error,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "target-url",
            "[target]\nkind = \"redis\"\nurl = \"http://cache:6379\"",
            "{file}:10: [target] key \"url\": expected redis://[user][:password@]host:port[/db] (Redis URL did not parse- InvalidClientConfig)",
        ),
        case(
            "target-kind",
            "[target]\nkind = \"memcached\"",
            "{file}:9: [target] key \"kind\": unknown variant `memcached`, expected one of `embedded`, `redis`, `redis-cluster`",
        ),
        case(
            "target-no-url",
            "[target]\nkind = \"redis\"",
            "{file}:8: [target] key \"url\": required for kind = \"redis\"",
        ),
        case(
            "retry-backend",
            "[retry]\nqueue = \"kafka\"",
            "{file}:9: [retry] key \"queue\": unknown variant `kafka`, expected `embedded` or `rabbitmq`",
        ),
        case(
            "retry-zero-backoff",
            "[retry]\nbackoff = \"0\"",
            "{file}:9: [retry] key \"backoff\": must be more than 0, like \"100ms\"",
        ),
        case(
            "retry-negative-backoff",
            "[retry]\nbackoff = -5",
            "{file}:9: [retry] key \"backoff\": invalid duration -5: must not be negative",
        ),
        case(
            "retry-max-backoff",
            "[retry]\nbackoff = \"1s\"\nmax_backoff = \"10ms\"",
            "{file}:10: [retry] key \"max_backoff\": must be at least backoff (1s)",
        ),
        case(
            "retry-amqp-url",
            "[retry]\nqueue = \"rabbitmq\"\nurl = \"http://rabbit\"",
            "{file}:10: [retry] key \"url\": expected amqp://user:password@host:port/vhost (Invalid AMQP scheme: http)",
        ),
        case(
            "engine-unknown",
            "[engine]\nmaxclientz = 5",
            "{file}:9: [engine] key \"maxclientz\": unknown field `maxclientz`, expected one of `listen`, `requirepass`, `protected_mode`, `maxclients`, …",
        ),
        case(
            "engine-value",
            "[engine]\nmaxclients = 0",
            "{file}:9: [engine] key \"maxclients\": argument must be between 1 and 4294967295 inclusive",
        ),
        case(
            "engine-policy",
            "[engine]\nmaxmemory_policy = \"sometimes\"",
            "{file}:9: [engine] key \"maxmemory_policy\": argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction, allkeys-tinylfu",
        ),
        case(
            "checkpoint-interval",
            "[checkpoint]\nstore = \"mysql\"\ninterval_ms = 0",
            "{file}:10: [checkpoint] key \"interval_ms\": must be at least 50 with store = \"mysql\" (each checkpoint write is a binlog transaction the pipeline reads back)",
        ),
        case(
            "checkpoint-store",
            "[checkpoint]\nstore = \"redis\"",
            "{file}:9: [checkpoint] key \"store\": unknown variant `redis`, expected `file` or `mysql`",
        ),
        case(
            "rules-table",
            "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\n\n[[rules]]\ntable = \"orders\"\nkeys = [\"order:{id}\"]",
            "{file}:13: [[rules]][1] key \"table\": \"orders\": expected \"db.table\" or \"db.*\"",
        ),
        case(
            "unknown-section",
            "[targets]\nkind = \"redis\"",
            "{file}:8: [targets]: unknown section; the top-level keys are data_dir, engine, admin, telemetry, audit, mysql, checkpoint, target, retry, ha, rules",
        ),
        Case {
            name: "binlog-server-id",
            text: BASE.replace("server_id = 5", "server_id = 0"),
            env: Vec::new(),
            error: "{file}:6: [mysql] key \"server_id\": must be a non-zero replica id, unique among the server's replicas",
        },
        Case {
            name: "binlog-heartbeat",
            text: BASE.replace("server_id = 5", "server_id = 5\nheartbeat_secs = 0"),
            env: Vec::new(),
            error: "{file}:7: [mysql] key \"heartbeat_secs\": must be between 1 and 3600",
        },
        Case {
            name: "binlog-on-purged",
            text: BASE.replace("server_id = 5", "server_id = 5\non_purged = \"skip\""),
            env: Vec::new(),
            error: "{file}:7: [mysql] key \"on_purged\": unknown variant `skip`, expected `fail` or `invalidate`",
        },
        Case {
            name: "data-dir",
            text: format!("data_dir = \"\"\n{BASE}"),
            env: Vec::new(),
            error: "{file}:1: key \"data_dir\": must not be empty",
        },
        Case {
            name: "env-engine",
            text: BASE.to_string(),
            env: vec![("COHERENT_ENGINE_MAXCLIENTS", "0")],
            error: "environment variable COHERENT_ENGINE_MAXCLIENTS: [engine] key \"maxclients\": argument must be between 1 and 4294967295 inclusive",
        },
        Case {
            name: "env-target",
            text: BASE.to_string(),
            env: vec![("COHERENT_TARGET_KIND", "redis")],
            error: "{file} with environment overrides COHERENT_TARGET_KIND: [target] key \"url\": required for kind = \"redis\"",
        },
    ]
}

#[test]
fn every_bad_value_is_refused_at_load_with_file_line_and_key() {
    let dir = tmpdir("refused");
    for c in cases() {
        let p = dir.join(format!("{}.toml", c.name));
        std::fs::write(&p, &c.text).expect("write");
        let expected = format!(
            "coherent: error: {}",
            c.error.replace("{file}", &p.display().to_string())
        );
        for args in [&["serve"][..], &["check-config"]] {
            let out = run(args, &p, &c.env);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{} ({args:?}): {}",
                c.name,
                String::from_utf8_lossy(&out.stderr)
            );
            // A message ending in "…" is checked up to there (the list of every
            // [engine] key grows with the engine).
            match expected.strip_suffix('…') {
                Some(prefix) => assert!(
                    error_line(&out).starts_with(prefix),
                    "{} ({args:?}): {}",
                    c.name,
                    error_line(&out)
                ),
                None => assert_eq!(error_line(&out), expected, "{} ({args:?})", c.name),
            }
            // Refused before anything was started.
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.contains("listening"), "{}: {stdout}", c.name);
        }
    }
    // The same file without the mistake is accepted (the cases differ only in it).
    let p = dir.join("good.toml");
    std::fs::write(&p, BASE).expect("write");
    let out = run(&["check-config"], &p, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: ok (engine and binlog pipeline)", p.display())
    );
}

/// The Markdown files under `dir` of `repo`, as paths relative to `repo`, sorted.
fn markdown_under(repo: &Path, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![repo.join(dir)];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                let rel = p.strip_prefix(repo).expect("under the repository");
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in md.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// The `coherent.toml` of the Kubernetes ConfigMap (a `|` block, indented 4).
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "coherent.toml: |");
    lines.next().expect("the ConfigMap has coherent.toml");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

#[test]
fn every_shipped_config_loads() {
    let repo = repo();
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).expect(p);
    let dir = tmpdir("shipped");
    let mut configs: Vec<(String, PathBuf)> = vec![
        ("examples/demo.toml".into(), repo.join("examples/demo.toml")),
        (
            "docker/coherent.toml".into(),
            repo.join("docker/coherent.toml"),
        ),
    ];
    let mut snippets = vec![(
        "docker/k8s ConfigMap".to_string(),
        configmap_toml(&read("docker/k8s/user-service.yaml")),
    )];
    // The README has no config of its own; the docs/ pages hold the snippets.
    let mut pages = vec!["examples/README.md".to_string()];
    pages.extend(markdown_under(&repo, "docs"));
    let mut total = 0;
    for md in &pages {
        let blocks = toml_blocks(&read(md));
        total += blocks.len();
        for (i, b) in blocks.into_iter().enumerate() {
            snippets.push((format!("{md} block {i}"), b));
        }
    }
    assert!(total > 10, "only {total} toml blocks in {pages:?}");
    for (i, (name, text)) in snippets.into_iter().enumerate() {
        let p = dir.join(format!("snippet{i}.toml"));
        std::fs::write(&p, text).expect("write");
        configs.push((name, p));
    }
    for (name, p) in &configs {
        let out = run(&["check-config"], p, &[]);
        assert!(
            out.status.success(),
            "{name} ({}) is refused: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn data_files_land_in_data_dir() {
    let dir = tmpdir("datadir");
    let data = dir.join("state");
    let _ = std::fs::remove_dir_all(&data);
    // The checkpoint path is relative (into data_dir); the retry log's default is too.
    // MySQL at a closed port: the pipeline starts, opens its files and keeps
    // reconnecting, which is all this needs.
    let p = dir.join("coherent.toml");
    std::fs::write(
        &p,
        format!(
            "data_dir = \"{}\"\n{BASE}\n[checkpoint]\npath = \"cp/pipeline.checkpoint\"\n\n[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\"]\n",
            data.display()
        ),
    )
    .expect("write");
    let mut sc = Sidecar::start(&p);
    assert!(
        wait_until(Duration::from_secs(20), || data
            .join("coherent.retry")
            .exists()),
        "no retry log in {}: {}",
        data.display(),
        sc.log()
    );
    assert!(
        data.join("cp").is_dir(),
        "the checkpoint's directory in data_dir"
    );
    assert!(sc.stop().success(), "{}", sc.log());
}
