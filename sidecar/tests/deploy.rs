//! The deployment files run as they deploy (no Docker engine or cluster here): the
//! config file and environment each compose service and Kubernetes Deployment gives
//! `coherent` are read from the YAML (through python3's PyYAML, which docker/check.py
//! needs too), secrets resolved from the manifest's Secret, and the real binary is
//! started with exactly those, except what must point at this machine: the MySQL URL
//! (a private MariaDB), the Redis target (a private redis-server), the listen ports
//! (free ones, by flag) and `data_dir` (the volume: a temporary directory). Each
//! must reach `/readyz` 200 and invalidate a real key.

mod common;

use common::{mariadb, migrations, tmpdir, wait_until, Resp, Sidecar};
use connectors::testing::{MariaDb, MariaDbOptions, RedisServer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn docker(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docker")
        .join(p)
}

/// The YAML documents of `path`, as JSON.
fn yaml(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .expect("python3 (with PyYAML: scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("yaml as json")
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} missing"))
}

/// The `coherent` container of the Deployment in `docs`: its config file (the
/// ConfigMap's, written to `dir`) and its environment with secrets resolved.
fn k8s_container(docs: &[Value], dir: &Path) -> (PathBuf, Vec<(String, String)>) {
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "coherent")
        .expect("coherent container");
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[..2], ["serve", "--config"]);
    // The mount of the config volume and the ConfigMap behind it.
    let file = Path::new(args[2]);
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .expect("config mount");
    let vol = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("config volume");
    let cm = object(
        docs,
        "ConfigMap",
        vol["configMap"]["name"].as_str().expect("configMap"),
    );
    let key = file
        .file_name()
        .and_then(|f| f.to_str())
        .expect("file name");
    let text = cm["data"][key].as_str().expect("config in ConfigMap");
    let path = dir.join(key);
    std::fs::write(&path, text).expect("write config");
    let mut env = Vec::new();
    for e in c["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("name").to_string();
        let value = match e["valueFrom"]["secretKeyRef"].as_object() {
            Some(r) => {
                let sec = object(docs, "Secret", r["name"].as_str().expect("secret"));
                sec["stringData"][r["key"].as_str().expect("key")]
                    .as_str()
                    .expect("secret key")
                    .to_string()
            }
            None => e["value"].as_str().expect("value").to_string(),
        };
        env.push((name, value));
    }
    (path, env)
}

/// `env` with the entries that must point at this machine replaced.
fn local(mut env: Vec<(String, String)>, over: &[(&str, String)]) -> Vec<(String, String)> {
    for (k, v) in over {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.clone()));
    }
    env
}

fn value_of<'a>(env: &'a [(String, String)], k: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{k} not set"))
}

fn server() -> MariaDb {
    let db = mariadb(MariaDbOptions::default());
    migrations(&db);
    db.sql("GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO repl@'%'")
        .expect("grant");
    db
}

/// The app's side of the sidecar shape: AUTH with the secret, cache `user:1`, change
/// the row, see the key go.
fn app_sees_invalidation(s: &Sidecar, password: &str, db: &MariaDb, tag: &str) {
    s.wait_ready(Duration::from_secs(30));
    let mut c = Resp::connect(&s.engine);
    assert!(
        c.cmd(&["PING"]).starts_with("-NOAUTH"),
        "the engine must want the secret"
    );
    assert_eq!(c.cmd(&["AUTH", password]), "+OK");
    c.set("user:1");
    db.sql(&format!(
        "INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', '{tag}') ON DUPLICATE KEY UPDATE name = '{tag}'"
    ))
    .expect("change");
    assert!(
        wait_until(Duration::from_secs(30), || !c.exists("user:1")),
        "{}",
        s.log()
    );
}

#[test]
fn kubernetes_sidecar_shape_runs_with_its_configmap_and_secret() {
    let db = server();
    let dir = tmpdir("deploy-k8s-sidecar");
    let docs = yaml(&docker("k8s/user-service.yaml"));
    let (cfg, env) = k8s_container(&docs, &dir);
    let password = value_of(&env, "COHERENT_ENGINE_REQUIREPASS").to_string();
    let env = local(
        env,
        &[
            ("COHERENT_MYSQL_URL", db.url()),
            ("COHERENT_DATA_DIR", dir.join("state").display().to_string()),
        ],
    );
    let s = Sidecar::start_env(&cfg, &env);
    app_sees_invalidation(&s, &password, &db, "k8s");
    // The checkpoint is on the scratch volume.
    assert!(wait_until(Duration::from_secs(10), || dir
        .join("state/coherent.checkpoint")
        .exists()));
}

#[test]
fn compose_sidecar_shape_runs_with_the_image_config_and_its_environment() {
    let db = server();
    let dir = tmpdir("deploy-compose");
    let compose = yaml(&docker("compose.yaml"));
    let svc = &compose[0]["services"]["coherent"];
    // The image's CMD reads /etc/coherent/coherent.toml, which is docker/coherent.toml.
    let cfg = dir.join("coherent.toml");
    std::fs::copy(docker("coherent.toml"), &cfg).expect("copy config");
    let env: Vec<(String, String)> = svc["environment"]
        .as_object()
        .expect("environment")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), String::from),
            )
        })
        .collect();
    let password = value_of(&env, "COHERENT_ENGINE_REQUIREPASS").to_string();
    // The app is given the same password.
    let app_url = compose[0]["services"]["app"]["environment"]["CACHE_URL"]
        .as_str()
        .expect("CACHE_URL");
    assert!(app_url.contains(&format!(":{password}@")), "{app_url}");
    let env = local(
        env,
        &[
            ("COHERENT_MYSQL_URL", db.url()),
            ("COHERENT_DATA_DIR", dir.join("state").display().to_string()),
        ],
    );
    let s = Sidecar::start_env(&cfg, &env);
    app_sees_invalidation(&s, &password, &db, "compose");
}

#[test]
fn kubernetes_daemon_shape_runs_two_replicas_one_leader() {
    let db = server();
    assert!(RedisServer::available(), "redis-server is not installed");
    let redis = RedisServer::start(&[]).expect("redis-server");
    let docs = yaml(&docker("k8s/invalidation-daemon.yaml"));
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let replicas = dep["spec"]["replicas"].as_u64().expect("replicas");
    assert_eq!(replicas, 2);
    let mut pods = Vec::new();
    for i in 0..replicas {
        let dir = tmpdir(&format!("deploy-daemon-{i}"));
        let (cfg, env) = k8s_container(&docs, &dir);
        let env = local(
            env,
            &[
                ("COHERENT_MYSQL_URL", db.url()),
                ("COHERENT_TARGET_URL", redis.url()),
                ("COHERENT_DATA_DIR", dir.join("state").display().to_string()),
            ],
        );
        let s = Sidecar::start_env(&cfg, &env);
        // Both ready: the leader streams, the standby waits.
        s.wait_ready(Duration::from_secs(30));
        pods.push(s);
    }
    // Ready comes first (a standby is ready too); the lock is taken just after.
    let roles = || -> Vec<String> {
        let mut r: Vec<String> = pods
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_str(&p.get("/status").1).expect("status");
                v["ha"]["role"].as_str().unwrap_or("").to_string()
            })
            .collect();
        r.sort();
        r
    };
    assert!(
        wait_until(Duration::from_secs(10), || roles() == ["leader", "standby"]),
        "{:?}",
        roles()
    );
    // The leader starts at the server's current position when it has no checkpoint:
    // a write before its stream is open would be before that position (seen on a
    // loaded machine), so the row changes once the leader streams.
    let leader_streams = || {
        pods.iter().any(|p| {
            let v: Value = serde_json::from_str(&p.get("/status").1).expect("status");
            v["ha"]["role"] == "leader" && v["binlog"]["state"] == "streaming"
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), leader_streams),
        "the leader never streamed"
    );
    redis.cli(&["SET", "user:1", "cached"]).expect("set");
    db.sql("INSERT INTO app.users (id, email, name) VALUES (1, 'a@x', 'daemon')")
        .expect("insert");
    assert!(wait_until(Duration::from_secs(30), || {
        redis.cli(&["EXISTS", "user:1"]).unwrap_or_default().trim() == "0"
    }));
}
