//! The configuration reference, `coherent config-reference`: every section and key the
//! config file accepts, with its default, its environment variable and what a bad value
//! reports. The keys come from the declarations (the sections' serde structs, the
//! engine's settings table), the defaults from serializing the structs' defaults, the
//! bad-value messages from loading each example through [`Config::load_text`]: only
//! the one-line descriptions of the sidecar's and the connector's keys are written
//! here, and a test holds them to the declared keys. docs/configuration.md embeds the
//! output; `sidecar/tests/docs.rs` fails when the two differ.

use crate::config::{Config, DEFAULT_DATA_DIR};
use connectors::config::fields_of;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Write;

/// One documented key outside `[engine]` (whose rows document themselves).
struct Doc {
    /// The section: `""` for the top level, `rules.value` for a rule's `value` table.
    section: &'static str,
    key: &'static str,
    /// What it does.
    what: &'static str,
    /// A whole config file whose last line sets this key to a value that is refused;
    /// `""` when every value of the right type is accepted.
    bad: &'static str,
}

const MYSQL: &str =
    "[mysql]\nurl = \"mysql://coherent:secret@127.0.0.1:3306\"\nserver_id = 64001\n";

const DOCS: &[Doc] = &[
    Doc { section: "", key: "data_dir", what: "Directory of the data files (the file checkpoint, the embedded retry log); relative `path`s of `[checkpoint]` and `[retry]` are resolved against it. Relative to the working directory; created when the pipeline starts.", bad: "data_dir = \"\"" },
    Doc { section: "admin", key: "listen", what: "Address of the admin HTTP server (`/healthz`, `/readyz`, `/status`, `/metrics`); `\"\"` turns it off. Flag `--admin-listen`.", bad: "[admin]\nlisten = 9180" },
    Doc { section: "admin", key: "ready_max_lag_secs", what: "`/readyz` fails while the binlog lag is above this many seconds.", bad: "[admin]\nready_max_lag_secs = -1" },
    Doc { section: "telemetry", key: "otlp_endpoint", what: "Base URL of an OTLP HTTP/protobuf receiver (metrics to `/v1/metrics`, traces to `/v1/traces`); unset: no push export. No TLS.", bad: "[telemetry]\notlp_endpoint = \"grpc://collector:4317\"" },
    Doc { section: "telemetry", key: "export_interval", what: "Period of the OTLP metrics push.", bad: "[telemetry]\nexport_interval = \"0s\"" },
    Doc { section: "audit", key: "sample", what: "Fraction of invalidated keys the online checker re-checks, 0 to 1; 0 turns it off. Needs `[mysql]`.", bad: "[audit]\nsample = 2" },
    Doc { section: "audit", key: "delays_ms", what: "Delays after the invalidating commit at which each sampled key is checked: ascending, each more than 0 and at most a day.", bad: "[audit]\ndelays_ms = [10000, 1000]" },
    Doc { section: "audit", key: "confirm_grace_ms", what: "A mismatch is read again this much later before it counts (at most an hour).", bad: "[audit]\nconfirm_grace_ms = 7200000" },
    Doc { section: "audit", key: "max_pending", what: "Samples waiting for their checks; new samples beyond it are dropped (counted).", bad: "[audit]\nmax_pending = 0" },
    Doc { section: "audit", key: "last_inconsistent", what: "Inconsistencies kept for `/status` `audit.last_inconsistent`.", bad: "[audit]\nlast_inconsistent = -1" },
    Doc { section: "mysql", key: "url", what: "`mysql://user:password@host:port` of the server whose binlog is tailed; the user needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT on the rule tables.", bad: "[mysql]\nserver_id = 64001\nurl = \"http://db:3306\"" },
    Doc { section: "mysql", key: "server_id", what: "This replica's id, unique among the server's replicas, or `\"auto\"`: derived from the host name (1000000000-1999999999).", bad: "[mysql]\nurl = \"mysql://coherent:secret@127.0.0.1:3306\"\nserver_id = 0" },
    Doc { section: "mysql", key: "start", what: "Where to start without a checkpoint: `\"current\"`, `\"earliest\"`, `\"file:NAME:POS\"`, `\"gtid:...\"` (MariaDB domain-server-seq list or a MySQL GTID set).", bad: "[mysql]\nurl = \"mysql://coherent:secret@127.0.0.1:3306\"\nserver_id = 64001\nstart = \"later\"" },
    Doc { section: "mysql", key: "heartbeat_secs", what: "Seconds between server heartbeats on an idle binlog; the stream is reconnected after three missed ones.", bad: "[mysql]\nurl = \"mysql://coherent:secret@127.0.0.1:3306\"\nserver_id = 64001\nheartbeat_secs = \"5s\"" },
    Doc { section: "mysql", key: "on_purged", what: "What a checkpoint whose binlog the server purged does: `\"fail\"` (stop with the reason) or `\"invalidate\"` (backfill every rule table, go on from the current position).", bad: "[mysql]\nurl = \"mysql://coherent:secret@127.0.0.1:3306\"\nserver_id = 64001\non_purged = \"skip\"" },
    Doc { section: "checkpoint", key: "store", what: "`\"file\"` (a JSON file, replaced atomically) or `\"mysql\"` (a row of `coherent.checkpoint`; required by `[ha]`).", bad: "[checkpoint]\nstore = \"sqlite\"" },
    Doc { section: "checkpoint", key: "path", what: "The checkpoint file (`store = \"file\"`), in `data_dir` when relative.", bad: "[checkpoint]\npath = \"\"" },
    Doc { section: "checkpoint", key: "interval_ms", what: "At most one checkpoint write per this many ms (0: after every transaction; at least 50 with `store = \"mysql\"`).", bad: "[checkpoint]\nstore = \"mysql\"\ninterval_ms = 0" },
    Doc { section: "checkpoint", key: "url", what: "`store = \"mysql\"`: the server holding `coherent.checkpoint` (CREATE, SELECT, INSERT, UPDATE on `coherent.*`); unset: `[mysql] url`.", bad: "[checkpoint]\nstore = \"mysql\"\nurl = \"http://db\"" },
    Doc { section: "checkpoint", key: "pipeline", what: "`store = \"mysql\"`: the row key, shared by the processes of one pipeline; unset: `[mysql] server_id`. Required with `[ha]` and `server_id = \"auto\"`.", bad: "[checkpoint]\nstore = \"mysql\"\npipeline = \"\"" },
    Doc { section: "target", key: "kind", what: "Where deletes go: `\"embedded\"` (this process's engine), `\"redis\"`, `\"redis-cluster\"`.", bad: "[target]\nkind = \"memcached\"" },
    Doc { section: "target", key: "db", what: "Database number in the embedded engine.", bad: "[target]\ndb = -1" },
    Doc { section: "target", key: "url", what: "`kind = \"redis\"`: `redis://[user][:password@]host:port[/db]` (`rediss://` with the `tls` feature).", bad: "[target]\nkind = \"redis\"" },
    Doc { section: "target", key: "nodes", what: "`kind = \"redis-cluster\"`: seed nodes; the masters are found from them.", bad: "[target]\nkind = \"redis-cluster\"\nnodes = []" },
    Doc { section: "target", key: "password", what: "`kind = \"redis-cluster\"`: the nodes' password (a single node takes it in `url`).", bad: "" },
    Doc { section: "target", key: "command", what: "The delete command on external Redis: `\"unlink\"` or `\"del\"`.", bad: "[target]\ncommand = \"expire\"" },
    Doc { section: "target", key: "batch_timeout", what: "A delete batch that has not landed after this long counts as failed (and is queued for retry).", bad: "[target]\nbatch_timeout = \"0s\"" },
    Doc { section: "target", key: "concurrency", what: "Delete batches in flight at once (the pipeline and the retry worker share them).", bad: "[target]\nconcurrency = 0" },
    Doc { section: "target", key: "void_leases", what: "External Redis: also delete each key's lease side key `{key}:lease`, voiding outstanding lease tokens and the recorded write time.", bad: "[target]\nvoid_leases = \"yes\"" },
    Doc { section: "retry", key: "queue", what: "Where failed deletes wait: `\"embedded\"` (an append-only log in `data_dir`) or `\"rabbitmq\"`.", bad: "[retry]\nqueue = \"kafka\"" },
    Doc { section: "retry", key: "path", what: "The embedded queue's log (dead letters in `PATH.dead`), in `data_dir` when relative.", bad: "[retry]\npath = \"\"" },
    Doc { section: "retry", key: "url", what: "`queue = \"rabbitmq\"`: `amqp://user:password@host:port/vhost`.", bad: "[retry]\nqueue = \"rabbitmq\"" },
    Doc { section: "retry", key: "prefix", what: "RabbitMQ: the queue names `PREFIX`, `PREFIX.retry`, `PREFIX.dead`.", bad: "" },
    Doc { section: "retry", key: "max_attempts", what: "Attempts (the first, in-line one included) before a delete is dead-lettered.", bad: "[retry]\nmax_attempts = 0" },
    Doc { section: "retry", key: "backoff", what: "Pause before the first retry; doubles per attempt, with jitter.", bad: "[retry]\nbackoff = \"0ms\"" },
    Doc { section: "retry", key: "max_backoff", what: "Longest pause between retries (at least `backoff`).", bad: "[retry]\nmax_backoff = \"10ms\"" },
    Doc { section: "retry", key: "max_depth", what: "Queued deletes at which the pipeline stops reading the binlog until the queue drains.", bad: "[retry]\nmax_depth = 0" },
    Doc { section: "retry", key: "batch", what: "Deletes per retry batch.", bad: "[retry]\nbatch = 0" },
    Doc { section: "ha", key: "enabled", what: "Run as one of several processes of a pipeline, one leader at a time (a MySQL named lock); needs `[checkpoint] store = \"mysql\"`.", bad: "[ha]\nenabled = true" },
    Doc { section: "ha", key: "lock", what: "The MySQL lock name (1 to 64 characters); unset: `coherent.` + the checkpoint's pipeline.", bad: "[ha]\nlock = \"\"" },
    Doc { section: "ha", key: "poll_ms", what: "How often a standby asks for the lock and the leader re-checks it holds it (50 to 60000).", bad: "[ha]\npoll_ms = 10" },
    Doc { section: "rules", key: "table", what: "`db.table`, or `db.*` for every table of the database.", bad: "[[rules]]\nkeys = [\"user:{id}\"]\ntable = \"users\"" },
    Doc { section: "rules", key: "keys", what: "Key templates with `{column}` placeholders, rendered from the before and the after image of each row change.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id\"]" },
    Doc { section: "rules", key: "columns", what: "Only updates changing one of these columns invalidate (inserts and deletes always do); unset: every update.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\ncolumns = \"email\"" },
    Doc { section: "rules", key: "double_delete", what: "Delete each key again this long after the first delete; `\"0\"` turns it off.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\ndouble_delete = \"soon\"" },
    Doc { section: "rules", key: "ttl_backstop", what: "Longest TTL of a key the rule covers (the engine caps writes; a sweeper fixes external Redis); unset: none.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nttl_backstop = \"forever\"" },
    Doc { section: "rules", key: "value", what: "For the audits: how a row renders into its cached value, an inline table (below).", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { columns = [\"id\"], keys = [\"order:{id}\"] }" },
    Doc { section: "rules.value", key: "format", what: "`\"json\"` (the only format): a JSON object of `columns`, as the cache-aside library's `Json` codec stores a struct of those fields.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { format = \"xml\", columns = [\"id\"] }" },
    Doc { section: "rules.value", key: "columns", what: "The row's columns, in field order.", bad: "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{id}\"]\nvalue = { format = \"json\" }" },
    Doc { section: "rules.value", key: "keys", what: "The templates (as written in `keys`) whose cached value is the rendered row; unset: the first template only.", bad: "" },
];

/// `[engine]` keys of free text, with a value each refuses.
const ENGINE_BAD: &[(&str, &str)] = &[
    ("listen", "\"nowhere\""),
    ("notify_keyspace_events", "\"Q\""),
    ("client_output_buffer_limit", "\"normal 1\""),
    ("appendfilename", "\"dir/appendonly.aof\""),
    ("appenddirname", "\"..\""),
    ("dir", "\"\""),
    ("dbfilename", "\"dir/dump.rdb\""),
    ("save", "\"3600\""),
];

/// A section of the file: where its keys come from, and a minimal table that
/// deserializes (its keys are the required ones).
struct Section {
    /// `""`, `engine`, ..., `rules`, `rules.value`.
    name: &'static str,
    /// The declared keys, in declaration order.
    keys: Vec<&'static str>,
    /// The defaults, serialized from the minimal table's value.
    defaults: toml::Table,
    /// The keys the minimal table had to give.
    required: Vec<&'static str>,
}

/// The section `name` of type `T`, from the minimal table `minimal`.
fn section<T: DeserializeOwned + Serialize>(name: &'static str, minimal: &str) -> Section {
    let min: toml::Table = minimal.parse().expect("a minimal table is TOML");
    let value: T = min
        .clone()
        .try_into()
        .expect("the minimal table deserializes");
    let defaults = toml::Table::try_from(&value).expect("the section serializes");
    let keys = fields_of::<T>().to_vec();
    let required = keys
        .iter()
        .copied()
        .filter(|k| min.contains_key(*k))
        .collect();
    Section {
        name,
        keys,
        defaults,
        required,
    }
}

/// The sections other than `[engine]`, in the order the reference lists them.
fn sections() -> Vec<Section> {
    use connectors::binlog::config::MysqlConfig;
    use connectors::checkpoint::CheckpointConfig;
    use connectors::ha::HaConfig;
    use connectors::retry::RetryConfig;
    use connectors::rules::{RuleConfig, ValueRenderer};
    use connectors::targets::TargetConfig;
    let mut top = toml::Table::new();
    top.insert("data_dir".into(), DEFAULT_DATA_DIR.into());
    vec![
        Section {
            name: "",
            keys: vec!["data_dir"],
            defaults: top,
            required: vec![],
        },
        section::<crate::admin::AdminConfig>("admin", ""),
        section::<crate::telemetry::TelemetryConfig>("telemetry", ""),
        section::<crate::audit::online::AuditConfig>("audit", ""),
        section::<MysqlConfig>("mysql", MYSQL.strip_prefix("[mysql]\n").unwrap_or(MYSQL)),
        section::<CheckpointConfig>("checkpoint", ""),
        section::<TargetConfig>("target", ""),
        section::<RetryConfig>("retry", ""),
        section::<HaConfig>("ha", ""),
        section::<RuleConfig>("rules", "table = \"app.users\"\nkeys = [\"user:{id}\"]"),
        section::<ValueRenderer>("rules.value", "columns = [\"id\"]"),
    ]
}

/// Every key the config file accepts, as (section, key), from the declarations only
/// (not from [`DOCS`]): what the reference must list.
pub fn declared_keys() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = engine::settings_reference()
        .into_iter()
        .map(|d| ("engine".to_string(), d.key.to_string()))
        .collect();
    for s in sections() {
        out.extend(s.keys.iter().map(|k| (s.name.to_string(), k.to_string())));
    }
    out
}

/// The heading of a section in the reference.
fn heading(section: &str) -> String {
    match section {
        "" => "Top level".to_string(),
        "rules" => "`[[rules]]`".to_string(),
        "rules.value" => "`value` of `[[rules]]`".to_string(),
        s => format!("`[{s}]`"),
    }
}

/// The environment variable that sets `key` of `section`.
fn env_var(section: &str, key: &str) -> String {
    let up = key.to_ascii_uppercase();
    match section {
        "" => format!("`COHERENT_{up}`"),
        "rules" => format!("`COHERENT_RULES_<N>_{up}`"),
        "rules.value" => "in `COHERENT_RULES_<N>_VALUE` (an inline table)".to_string(),
        s => format!("`COHERENT_{}_{up}`", s.to_ascii_uppercase()),
    }
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// What loading `file` reports: the error's text, or a note that it was accepted (a
/// test refuses such a reference).
fn report(file: &str) -> String {
    match Config::load_text("coherent.toml", file.to_string(), std::iter::empty()) {
        Ok(_) => "ACCEPTED (not a bad value)".to_string(),
        Err(e) => format!("{e:#}"),
    }
}

/// The bad-value cell: the line that sets the key, and what loading it reports.
fn bad_cell(file: &str) -> String {
    if file.is_empty() {
        return "any value of its type".to_string();
    }
    let line = file.lines().last().unwrap_or("");
    format!("`{}` → {}", line, cell(&report(file)))
}

/// The reference as Markdown.
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Columns: the key; its default (\"required\": no default; \"unset\": off or \
         derived, as the description says); the environment variable that sets it; what \
         it does; a value it refuses, with the message `coherent check-config` prints \
         for it (the file is `coherent.toml`)."
    );
    let engine_title = heading("engine");
    let mut engine = String::new();
    let _ = writeln!(engine, "\n### {engine_title}\n");
    let _ = writeln!(
        engine,
        "Redis's setting names with `_` for `-`, read through the engine's settings \
         table: a value is refused as `CONFIG SET` refuses it. \"CONFIG\" names the \
         parameter for `CONFIG GET`/`CONFIG SET`; \"run time\" says whether `CONFIG SET` \
         may change it.\n"
    );
    let _ = writeln!(
        engine,
        "| key | default | environment variable | what | a bad value → what it reports |"
    );
    let _ = writeln!(engine, "|---|---|---|---|---|");
    for d in engine::settings_reference() {
        let bad = d.bad_example.clone().or_else(|| {
            ENGINE_BAD
                .iter()
                .find(|(k, _)| *k == d.key)
                .map(|(_, v)| v.to_string())
        });
        let bad = match bad {
            Some(v) => bad_cell(&format!("[engine]\n{} = {v}", d.key)),
            None => "any text".to_string(),
        };
        let config = match d.config_name {
            None => "file only".to_string(),
            Some(n) => {
                let mut c = format!("CONFIG `{n}`");
                for a in d.aliases {
                    let _ = write!(c, " (alias `{a}`)");
                }
                c.push_str(if d.runtime {
                    ", run time: yes"
                } else {
                    ", run time: no"
                });
                c
            }
        };
        let default = if d.default.is_empty() {
            "empty".to_string()
        } else {
            format!("`{}`", d.default)
        };
        let _ = writeln!(
            engine,
            "| `{}` | {} | {} | {} Takes {}; {}. | {} |",
            d.key,
            default,
            env_var("engine", d.key),
            cell(&d.doc),
            d.accepts,
            config,
            bad
        );
    }
    for s in sections() {
        let _ = writeln!(out, "\n### {}\n", heading(s.name));
        let _ = writeln!(
            out,
            "| key | default | environment variable | what | a bad value → what it reports |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for key in &s.keys {
            let doc = DOCS.iter().find(|d| d.section == s.name && d.key == *key);
            let (what, bad) = doc.map_or(("UNDOCUMENTED", ""), |d| (d.what, d.bad));
            let default = if s.required.contains(key) {
                "required".to_string()
            } else {
                match s.defaults.get(*key) {
                    Some(v) => format!("`{v}`"),
                    None => "unset".to_string(),
                }
            };
            let _ = writeln!(
                out,
                "| `{key}` | {} | {} | {} | {} |",
                cell(&default),
                env_var(s.name, key),
                what,
                bad_cell(bad)
            );
        }
        if s.name.is_empty() {
            // [engine] follows the top level, as in the file's usual order.
            out.push_str(&engine);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_key_is_documented_and_nothing_else() {
        let declared = declared_keys();
        for d in DOCS {
            assert!(
                declared.iter().any(|(s, k)| s == d.section && k == d.key),
                "DOCS has [{}] {}, which the code does not declare",
                d.section,
                d.key
            );
        }
        for (s, k) in &declared {
            if s == "engine" {
                continue;
            }
            assert!(
                DOCS.iter().any(|d| d.section == s && d.key == k),
                "[{s}] {k} is declared but not in DOCS"
            );
        }
        // The top level holds data_dir and the sections, nothing else.
        let mut top: Vec<&str> = fields_of::<Config>().to_vec();
        top.extend_from_slice(fields_of::<connectors::ConnectorConfig>());
        for k in top {
            assert!(
                k == "data_dir" || sections().iter().any(|s| s.name == k) || k == "engine",
                "top-level key {k} has no section in the reference"
            );
        }
    }

    #[test]
    fn every_bad_example_is_refused_for_its_key() {
        let text = markdown();
        assert!(!text.contains("ACCEPTED"), "{text}");
        assert!(!text.contains("UNDOCUMENTED"), "{text}");
        for d in DOCS.iter().filter(|d| !d.bad.is_empty()) {
            let e = report(d.bad);
            // The message names the key (or, for a nested value, its rule's key).
            let key = if d.section == "rules.value" {
                "value"
            } else {
                d.key
            };
            assert!(e.contains(key), "[{}] {}: {e}", d.section, d.key);
        }
        for (k, v) in ENGINE_BAD {
            let e = report(&format!("[engine]\n{k} = {v}"));
            assert!(e.contains(&format!("key \"{k}\"")), "{k}: {e}");
        }
    }

    #[test]
    fn defaults_come_from_the_code() {
        let text = markdown();
        assert!(text.contains("| `ready_max_lag_secs` | `10.0` |"), "{text}");
        assert!(
            text.contains("| `url` | required | `COHERENT_MYSQL_URL` |"),
            "{text}"
        );
        assert!(text.contains("| `max_attempts` | `20` | `COHERENT_RETRY_MAX_ATTEMPTS` |"));
        assert!(text.contains("| `listen` | `127.0.0.1:6380` | `COHERENT_ENGINE_LISTEN` |"));
    }
}
