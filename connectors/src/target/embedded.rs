//! The embedded engine as a target: DEL commands run in-process through
//! `Engine::execute_batch`, so one transaction's keys go in one atomic batch.

use super::{Target, TargetError};
use bytes::Bytes;
use engine::{Engine, Reply};

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
}

impl Target for EmbeddedTarget {
    async fn delete_batch(&self, keys: &[Bytes]) -> Result<(), TargetError> {
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
        .await
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
