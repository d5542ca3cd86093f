//! Which keys of an applied transaction are checked, and what a check needs to know
//! about each: the row image it came from and whether its value is the rendered row.

use super::error::AuditError;
use bytes::Bytes;
use connectors::binlog::{Cell, Row, RowChange};
use connectors::rules::{KeyTemplate, RuleConfig, Rules};
use std::collections::HashMap;
use std::sync::Arc;

/// The rules as the checker samples them.
pub struct SampleRules {
    rules: Rules,
    /// Per rule, per template: the `value` renderer's columns when that template's
    /// cached value is the rendered row ([`connectors::rules::Rule::value_templates`],
    /// JSON renderers only); `None`: judged by write time.
    columns: Vec<Vec<Option<Arc<[String]>>>>,
}

impl SampleRules {
    /// Compiles the `[[rules]]` (the same ones the pipeline runs).
    pub fn compile(configs: &[RuleConfig]) -> Result<SampleRules, AuditError> {
        let rules = Rules::compile(configs)?;
        let columns = rules
            .rules()
            .iter()
            .map(|r| {
                let cols: Option<Arc<[String]>> = r
                    .value()
                    .filter(|v| v.format == "json")
                    .map(|v| Arc::from(v.columns.clone()));
                (0..r.keys().len())
                    .map(|t| cols.clone().filter(|_| r.value_templates().contains(&t)))
                    .collect()
            })
            .collect();
        Ok(SampleRules { rules, columns })
    }
}

/// A sampled key of one commit.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The key.
    pub key: Bytes,
    /// The `value` renderer's columns when the key's template caches the rendered
    /// row; `None`: judged by write time.
    pub columns: Option<Arc<[String]>>,
    /// Template columns and their values in the image the key came from.
    pub lookup: Vec<(String, Bytes)>,
    /// Database of the change.
    pub db: Arc<str>,
    /// Table of the change.
    pub table: Arc<str>,
    /// Binlog position of the transaction.
    pub position: Arc<str>,
    /// Its commit time (Unix seconds, MySQL's clock).
    pub commit_ts: u32,
    /// Unix seconds (sidecar clock) the checks' delays count from: when the sidecar
    /// received the transaction, which is never before its commit (see
    /// [`Meta::received`]).
    pub base: f64,
    /// Index of the next delay.
    pub next: usize,
}

/// What every sample of one transaction shares.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Binlog position.
    pub position: Arc<str>,
    /// Commit time (Unix seconds, MySQL's clock).
    pub commit_ts: u32,
    /// When the sidecar received the transaction (Unix seconds, its own clock).
    /// Delays are counted from here rather than from the commit time, so a MySQL
    /// clock behind the sidecar's cannot make checks fire early.
    pub received: f64,
}

/// Marks a key of the transaction decided "not sampled" in the index.
const SKIPPED: usize = usize::MAX;

/// The keys of `change` with what a check needs, sampled at `sample` (`draw` gives
/// uniform numbers in [0, 1)), through the same walk as the pipeline's deletes
/// ([`Rules::for_each_key`]). `index` holds the keys of the transaction decided so
/// far: each key is drawn once per transaction, and a sampled key seen again takes
/// the later image (after over before within a change, a later change over an
/// earlier one), as the last state of the row is what the cache must reflect.
pub fn samples_of(
    change: &RowChange,
    rules: &SampleRules,
    sample: f64,
    meta: &Meta,
    index: &mut HashMap<Bytes, usize>,
    out: &mut Vec<Sample>,
    draw: &mut impl FnMut() -> f64,
) {
    let mut names: Option<(Arc<str>, Arc<str>)> = None;
    // A rule error (a column missing from the image) fails the pipeline's own walk
    // too, so the transaction is never applied; the keys found before it are kept.
    let _ = rules.rules.for_each_key(change, |k| {
        let Some(template) = rules
            .rules
            .rules()
            .get(k.rule)
            .and_then(|r| r.keys().get(k.template))
        else {
            return;
        };
        let columns = rules
            .columns
            .get(k.rule)
            .and_then(|r| r.get(k.template))
            .cloned()
            .flatten();
        match index.get(&k.key) {
            Some(&SKIPPED) => return,
            Some(&i) => {
                if let Some(s) = out.get_mut(i) {
                    // The same key from another table's rule keeps its own row.
                    if *s.db == *change.db && *s.table == *change.table {
                        s.lookup = lookup_of(template, k.row);
                        s.columns = columns;
                    }
                }
                return;
            }
            None => {}
        }
        if sample < 1.0 && draw() >= sample {
            index.insert(k.key, SKIPPED);
            return;
        }
        let (db, table) = names
            .get_or_insert_with(|| {
                (
                    Arc::from(change.db.as_str()),
                    Arc::from(change.table.as_str()),
                )
            })
            .clone();
        index.insert(k.key.clone(), out.len());
        out.push(Sample {
            key: k.key,
            columns,
            lookup: lookup_of(template, k.row),
            db,
            table,
            position: meta.position.clone(),
            commit_ts: meta.commit_ts,
            base: meta.received,
            next: 0,
        });
    });
}

fn lookup_of(t: &KeyTemplate, row: &Row) -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = Vec::new();
    for c in t.columns() {
        if out.iter().any(|(x, _)| x == c) {
            continue;
        }
        if let Some(Cell::Value(v)) = row.get(c) {
            out.push((c.to_string(), v.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::binlog::ChangeKind;

    /// A row without NULLs.
    fn row(cols: &[&str], vals: &[&str]) -> Row {
        let vals: Vec<Option<&str>> = vals.iter().map(|v| Some(*v)).collect();
        connectors::testing::row(cols, &vals)
    }

    fn rules(value: &str) -> SampleRules {
        let text = format!(
            "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\"]\n{value}\n"
        );
        let cfg: Vec<RuleConfig> = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("rules").cloned())
            .and_then(|r| r.try_into().ok())
            .expect("rules");
        SampleRules::compile(&cfg).expect("compile")
    }

    fn update(id: &str, email: (&str, &str)) -> RowChange {
        let cols = ["id", "email", "name"];
        RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Update,
            before: Some(row(&cols, &[id, email.0, "A"])),
            after: Some(row(&cols, &[id, email.1, "B"])),
        }
    }

    fn meta() -> Meta {
        Meta {
            position: Arc::from("f:4"),
            commit_ts: 100,
            received: 100.5,
        }
    }

    fn sample_all(change: &RowChange, rules: &SampleRules) -> Vec<Sample> {
        let mut index = HashMap::new();
        let mut out = Vec::new();
        samples_of(
            change,
            rules,
            1.0,
            &meta(),
            &mut index,
            &mut out,
            &mut || 0.0,
        );
        out
    }

    #[test]
    fn samples_carry_rule_image_and_renderer() {
        let rules = rules("value = { columns = [\"id\", \"name\"] }");
        let out = sample_all(&update("7", ("a@x", "b@x")), &rules);
        let keys: Vec<&[u8]> = out.iter().map(|s| &s.key[..]).collect();
        assert_eq!(keys, [&b"user:7"[..], b"user:email:a@x", b"user:email:b@x"]);
        // The renderer belongs to the first template only (no value.keys); lookups
        // use the image the key came from, the after image when both render it.
        assert!(out[0].columns.is_some() && out[1].columns.is_none());
        assert_eq!(out[0].lookup, [("id".to_string(), Bytes::from("7"))]);
        assert_eq!(out[1].lookup[0].1, Bytes::from("a@x"));
        assert_eq!(out[2].lookup[0].1, Bytes::from("b@x"));
        assert_eq!(&*out[0].table, "users");
        assert_eq!(out[0].commit_ts, 100);
        assert_eq!(out[0].base, 100.5);
    }

    #[test]
    fn value_keys_choose_the_compared_templates() {
        let rules = rules("value = { columns = [\"id\"], keys = [\"user:email:{email}\"] }");
        let out = sample_all(&update("7", ("a@x", "a@x")), &rules);
        assert_eq!(out.len(), 2);
        assert!(out[0].columns.is_none(), "user:{{id}} is not listed");
        assert!(out[1].columns.is_some());
        let none = self::rules("");
        assert!(sample_all(&update("7", ("a@x", "a@x")), &none)
            .iter()
            .all(|s| s.columns.is_none()));
    }

    #[test]
    fn delete_uses_the_before_image_and_later_changes_win() {
        let rules = rules("value = { columns = [\"id\", \"name\"] }");
        let cols = ["id", "email", "name"];
        let insert = RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Insert,
            before: None,
            after: Some(row(&cols, &["7", "new@x", "A"])),
        };
        let delete = RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Delete,
            before: Some(row(&cols, &["7", "old@x", "A"])),
            after: None,
        };
        let mut index = HashMap::new();
        let mut out = Vec::new();
        for c in [&insert, &delete] {
            samples_of(c, &rules, 1.0, &meta(), &mut index, &mut out, &mut || 0.0);
        }
        let keys: Vec<&[u8]> = out.iter().map(|s| &s.key[..]).collect();
        assert_eq!(
            keys,
            [&b"user:7"[..], b"user:email:new@x", b"user:email:old@x"]
        );
        // user:7 was last touched by the delete: its lookup is the before image.
        assert_eq!(out[0].lookup, [("id".to_string(), Bytes::from("7"))]);
    }

    #[test]
    fn sampling_rate_bounds() {
        let rules = rules("value = { columns = [\"id\", \"name\"] }");
        let count = |sample: f64, rng: &mut fastrand::Rng| {
            let mut n = 0;
            for i in 0..2000 {
                let mut index = HashMap::new();
                let mut out = Vec::new();
                let id = i.to_string();
                samples_of(
                    &update(&id, ("a@x", "a@x")),
                    &rules,
                    sample,
                    &meta(),
                    &mut index,
                    &mut out,
                    &mut || rng.f64(),
                );
                n += out.len();
            }
            n
        };
        let mut rng = fastrand::Rng::with_seed(7);
        // Two keys per change (the email did not change), each drawn once.
        assert_eq!(count(1.0, &mut rng), 4000);
        assert_eq!(count(0.0, &mut rng), 0);
        let half = count(0.5, &mut rng);
        assert!((1700..2300).contains(&half), "{half}");
        let few = count(0.01, &mut rng);
        assert!((10..80).contains(&few), "{few}");
    }
}
