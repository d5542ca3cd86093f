//! The embedded engine as a target: DEL commands run in-process through
//! `Engine::execute_batch`, so one transaction's keys go in one atomic batch.
//!
//! The TTL backstop lives in the engine itself: [`EmbeddedTarget::install_backstops`]
//! hands it every rule's `(key glob, ttl_backstop)`, and from then on each write of
//! a covered key (by any client) has its TTL capped.

use super::{DeleteRequest, TargetError};
use crate::rules::Rules;
use bytes::Bytes;
use engine::{Engine, Reply};
use std::future::{ready, Ready};
use std::task::{Context, Poll};

/// Keys per DEL command: large enough to amortise the call, small enough that one
/// command does not hold the store lock for long.
const KEYS_PER_DEL: usize = 512;

/// Deletes keys from an in-process [`Engine`].
#[derive(Debug, Clone)]
pub struct EmbeddedTarget {
    engine: Engine,
    db: usize,
}

impl EmbeddedTarget {
    /// Deletes from database `db` of `engine`.
    pub fn new(engine: Engine, db: usize) -> Self {
        EmbeddedTarget { engine, db }
    }

    /// Installs the TTL backstops of `rules` (every key template of every rule with
    /// a `ttl_backstop`) into the engine, for this target's database, replacing
    /// earlier ones. Returns how many `(glob, TTL)` pairs were installed.
    pub fn install_backstops(&self, rules: &Rules) -> usize {
        let backstops = rules.backstops();
        self.engine.set_ttl_backstops(self.db, &backstops);
        backstops.len()
    }

    /// Writes whose TTL a backstop added or shortened (the "backstop TTLs
    /// applied" metric).
    pub fn backstops_applied(&self) -> u64 {
        self.engine.ttl_backstops_applied()
    }
}

/// The deletes run in `call` (the engine is in process and never waits on I/O), so
/// the response is ready at once.
impl tower::Service<DeleteRequest> for EmbeddedTarget {
    type Response = ();
    type Error = TargetError;
    type Future = Ready<Result<(), TargetError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        ready(self.delete_batch(&req.keys))
    }
}

impl EmbeddedTarget {
    /// Deletes `keys` in one `execute_batch` (DEL commands of [`KEYS_PER_DEL`] keys).
    pub fn delete_batch(&self, keys: &[Bytes]) -> Result<(), TargetError> {
        if keys.is_empty() {
            return Ok(());
        }
        let del = Bytes::from_static(b"DEL");
        let cmds: Vec<Vec<Bytes>> = keys
            .chunks(KEYS_PER_DEL)
            .map(|chunk| {
                let mut c = Vec::with_capacity(chunk.len() + 1);
                c.push(del.clone());
                c.extend(chunk.iter().cloned());
                c
            })
            .collect();
        for reply in self.engine.execute_batch(self.db, cmds) {
            if let Reply::Error(e) = reply {
                return Err(TargetError::Refused(e));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::EngineConfig;

    fn cmd(engine: &Engine, args: &[&str]) -> Reply {
        engine.execute(0, args.iter().map(|a| Bytes::from(a.to_string())).collect())
    }

    #[test]
    fn rules_backstops_cap_ttls_in_the_engine() {
        use crate::duration::HumanDuration;
        use crate::rules::RuleConfig;
        use std::time::Duration;
        let rules = Rules::compile(&[
            RuleConfig {
                table: "app.users".into(),
                keys: vec!["user:{id}".into(), "user:email:{email}".into()],
                columns: None,
                double_delete: HumanDuration::default(),
                ttl_backstop: HumanDuration(Duration::from_secs(3600)),
                value: None,
            },
            RuleConfig {
                table: "app.orders".into(),
                keys: vec!["order:{id}".into()],
                columns: None,
                double_delete: HumanDuration::default(),
                ttl_backstop: HumanDuration::default(),
                value: None,
            },
        ])
        .unwrap();
        let engine = Engine::new(EngineConfig::default());
        let t = EmbeddedTarget::new(engine.clone(), 0);
        assert_eq!(t.install_backstops(&rules), 2);
        let pttl = |k: &str| match cmd(&engine, &["PTTL", k]) {
            Reply::Int(n) => n,
            r => panic!("{r:?}"),
        };
        cmd(&engine, &["SET", "user:1", "v"]);
        cmd(&engine, &["SET", "user:email:a@b.c", "1", "EX", "86400"]);
        cmd(&engine, &["HSET", "user:2", "name", "x"]);
        cmd(&engine, &["SET", "user:3", "v", "EX", "10"]);
        cmd(&engine, &["SET", "order:1", "v"]);
        for k in ["user:1", "user:email:a@b.c", "user:2"] {
            let t = pttl(k);
            assert!(t > 3_590_000 && t <= 3_600_000, "{k}: {t}");
        }
        assert!(pttl("user:3") <= 10_000);
        assert_eq!(pttl("order:1"), -1);
        assert_eq!(t.backstops_applied(), 3);
    }

    #[tokio::test]
    async fn deletes_only_given_keys() {
        let engine = Engine::new(EngineConfig::default());
        for k in ["a", "b", "c"] {
            engine.execute(
                0,
                vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from(k),
                    Bytes::from_static(b"v"),
                ],
            );
        }
        let t = EmbeddedTarget::new(engine.clone(), 0);
        t.delete_batch(&[
            Bytes::from_static(b"a"),
            Bytes::from_static(b"c"),
            Bytes::from_static(b"zz"),
        ])
        .unwrap();
        let exists = |k: &'static str| {
            !matches!(
                engine.execute(0, vec![Bytes::from_static(b"GET"), Bytes::from(k)]),
                Reply::Nil
            )
        };
        assert!(!exists("a"));
        assert!(exists("b"));
        assert!(!exists("c"));
    }
}
