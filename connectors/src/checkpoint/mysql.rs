//! A checkpoint in a MySQL/MariaDB table (`coherent.checkpoint`, the migrations/
//! schema), one row per pipeline, replaced in one transaction per save.
//!
//! The table lives on a server the operator already backs up and replicates, so a
//! sidecar that loses its disk (a rescheduled pod) still resumes where it was. The
//! writes are binlogged like any other (so the row follows a failover to a
//! replica); the pipeline sees them as transactions without rule matches.

use super::{Checkpoint, CheckpointError, CheckpointStore};
use crate::binlog::Position;
use crate::ha::Lease;
use mysql_async::{Params, Value};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// The migration that creates the table, applied at start (idempotent).
pub const MIGRATION: &str =
    include_str!("../../../migrations/20261125000002_coherent_checkpoint.sql");

/// Checkpoints in `coherent.checkpoint`, keyed by pipeline name.
#[derive(Debug, Clone)]
pub struct MysqlCheckpointStore {
    pool: MySqlPool,
    pipeline: String,
    /// `[ha]`: the leader's lease; saves then go through its lock connection.
    fence: Option<Arc<Lease>>,
}

/// The save statement (`VALUES()` rather than MySQL 8's row alias: MariaDB knows
/// only `VALUES()`).
const SAVE: &str =
    "INSERT INTO coherent.checkpoint (pipeline, file, position, gtid, commit_ts, saved_at) \
     VALUES (?, ?, ?, ?, ?, ?) \
     ON DUPLICATE KEY UPDATE file = VALUES(file), position = VALUES(position), \
     gtid = VALUES(gtid), commit_ts = VALUES(commit_ts), saved_at = VALUES(saved_at)";

impl MysqlCheckpointStore {
    /// Connects to `url` (`mysql://user:password@host:port`), creates the schema
    /// when it is missing, and keys rows by `pipeline`. The user needs CREATE,
    /// SELECT, INSERT and UPDATE on `coherent.*`.
    pub async fn connect(url: &str, pipeline: impl Into<String>) -> Result<Self, CheckpointError> {
        let pipeline = pipeline.into();
        let db = |source| CheckpointError::Database {
            pipeline: pipeline.clone(),
            source,
        };
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db)?;
        for stmt in statements(MIGRATION) {
            // The statements are the migration file compiled into the binary.
            sqlx::query(sqlx::AssertSqlSafe(stmt))
                .execute(&pool)
                .await
                .map_err(db)?;
        }
        Ok(MysqlCheckpointStore {
            pool,
            pipeline,
            fence: None,
        })
    }

    /// Saves from now on run on `lease`'s lock connection, in one transaction with
    /// the check that it still holds the lock ([`Lease::exec_fenced`]): a leader
    /// that lost the lock cannot move the checkpoint.
    pub fn with_fence(mut self, lease: Arc<Lease>) -> Self {
        self.fence = Some(lease);
        self
    }

    /// The row key.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn db(&self, source: sqlx::Error) -> CheckpointError {
        CheckpointError::Database {
            pipeline: self.pipeline.clone(),
            source,
        }
    }

    fn corrupt(&self, reason: String) -> CheckpointError {
        CheckpointError::CorruptRow {
            pipeline: self.pipeline.clone(),
            reason,
        }
    }
}

/// The SQL statements of a migration file (comments dropped, split at `;`).
fn statements(sql: &str) -> Vec<String> {
    let body: String = sql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl CheckpointStore for MysqlCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let row = sqlx::query(
            "SELECT file, position, gtid, commit_ts, saved_at FROM coherent.checkpoint WHERE pipeline = ?",
        )
        .bind(&self.pipeline)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db(e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let get = |e: sqlx::Error| self.corrupt(e.to_string());
        let file: String = row.try_get("file").map_err(get)?;
        let pos: u64 = row.try_get("position").map_err(get)?;
        let gtid: Option<String> = row.try_get("gtid").map_err(get)?;
        let timestamp: u32 = row.try_get("commit_ts").map_err(get)?;
        let saved_at: u64 = row.try_get("saved_at").map_err(get)?;
        let mut position = Position {
            file,
            pos,
            ..Default::default()
        };
        match gtid.as_deref().map(str::trim) {
            None | Some("") => {}
            // A MySQL set has a ':' after each UUID; a MariaDB GTID never does.
            Some(g) if g.contains(':') => {
                position.mysql_gtid = g.parse().map_err(|e| self.corrupt(format!("gtid: {e}")))?
            }
            Some(g) => {
                position.mariadb_gtid = g.parse().map_err(|e| self.corrupt(format!("gtid: {e}")))?
            }
        }
        Ok(Some(Checkpoint {
            position,
            timestamp,
            saved_at,
        }))
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let p = &cp.position;
        let gtid = if !p.mysql_gtid.is_empty() {
            Some(p.mysql_gtid.to_string())
        } else if !p.mariadb_gtid.is_empty() {
            Some(p.mariadb_gtid.to_string())
        } else {
            None
        };
        if let Some(lease) = &self.fence {
            let params = Params::Positional(vec![
                Value::from(self.pipeline.as_str()),
                Value::from(p.file.as_str()),
                Value::from(p.pos),
                Value::from(gtid),
                Value::from(cp.timestamp),
                Value::from(cp.saved_at),
            ]);
            return lease.exec_fenced(SAVE, params).await.map_err(|source| {
                CheckpointError::Fenced {
                    pipeline: self.pipeline.clone(),
                    source,
                }
            });
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db(e))?;
        sqlx::query(SAVE)
            .bind(&self.pipeline)
            .bind(&p.file)
            .bind(p.pos)
            .bind(gtid)
            .bind(cp.timestamp)
            .bind(cp.saved_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db(e))?;
        // Once the commit returns, InnoDB has it durably: no older row can return.
        tx.commit().await.map_err(|e| self.db(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_splits_into_two_statements() {
        let s = statements(MIGRATION);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("CREATE DATABASE IF NOT EXISTS coherent"));
        assert!(s[1].starts_with("CREATE TABLE IF NOT EXISTS coherent.checkpoint"));
        assert!(!s[1].contains("--"));
    }
}
