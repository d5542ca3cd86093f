//! Rows changed while the offline audit runs: a binlog reader started at the scan's
//! start position collects the keys (every template, before and after images) of
//! every row change of the audited tables. A key first found stale or orphan is
//! re-checked instead of reported when its row changed during the scan, because the
//! scan read the row before the change and the cache after it.
//!
//! Memory: one entry per distinct changed key, so it grows with the write rate times
//! the scan's duration, not with the table.

use connectors::binlog::server::current_position;
use connectors::binlog::source::SourceError;
use connectors::binlog::{BinlogSource, MysqlConfig, Position, StartPosition};
use connectors::rules::{KeyBatch, RuleConfig, RuleError, Rules};
use mysql_async::Conn;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the changes during the scan cannot be followed (the audit goes on without
/// re-checks, with a note).
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// Neither `SHOW MASTER STATUS` nor `SHOW BINARY LOG STATUS` answered.
    #[error("cannot read the server's binlog position: {0}")]
    Position(#[source] mysql_async::Error),
    /// The audited rules do not compile for the reader.
    #[error("rules: {0}")]
    Rules(#[from] RuleError),
    /// The binlog reader could not start or stopped.
    #[error("binlog reader: {0}")]
    Reader(#[source] Arc<SourceError>),
    /// The reader's shared state was poisoned (its task panicked).
    #[error("the binlog reader panicked")]
    Poisoned,
}

impl From<SourceError> for ChangesError {
    fn from(e: SourceError) -> Self {
        ChangesError::Reader(Arc::new(e))
    }
}

/// How long [`Watcher::sync`] waits for the reader to reach the server's position.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// A binlog file and offset as an ordered pair: the file's numeric suffix, offset.
type Mark = (u64, u64);

fn mark(file: &str, pos: u64) -> Mark {
    let n = file
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (n, pos)
}

/// The server's current binlog file and offset; `None` when the binlog is off.
async fn master_status(conn: &mut Conn) -> Result<Option<(String, u64)>, ChangesError> {
    let now = current_position(conn)
        .await
        .map_err(ChangesError::Position)?;
    Ok(now.map(|p| (p.file, p.pos)))
}

#[derive(Default)]
struct Shared {
    keys: HashSet<Vec<u8>>,
    reached: Mark,
    error: Option<Arc<SourceError>>,
}

/// The running binlog reader and the keys it collected.
pub struct Watcher {
    shared: Arc<Mutex<Shared>>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
    start: Mark,
    /// Set once a sync timed out, so the note is given once.
    pub timed_out: bool,
}

impl Watcher {
    /// Starts reading the binlog at the server's current position for the tables of
    /// `rules` (connecting as replica `server_id`). `Ok(None)`: the binlog is off.
    pub async fn start(
        url: &str,
        server_id: u32,
        rules: &[&RuleConfig],
        aux: &mut Conn,
    ) -> Result<Option<Watcher>, ChangesError> {
        let Some((file, pos)) = master_status(aux).await? else {
            return Ok(None);
        };
        // Every template, whatever `columns` says: any change can explain a mismatch.
        let configs: Vec<RuleConfig> = rules
            .iter()
            .map(|r| RuleConfig {
                columns: None,
                ..(*r).clone()
            })
            .collect();
        let compiled = Rules::compile(&configs)?;
        let mut config = MysqlConfig::new(url, server_id);
        config.start = StartPosition::File {
            file: file.clone(),
            pos,
        };
        config.heartbeat_secs = 1;
        let filter_rules = compiled.clone();
        let filter: connectors::binlog::decode::TableFilter =
            Arc::new(move |d: &str, t: &str| filter_rules.covers(d, t));
        let mut source = BinlogSource::new(config, None, Some(filter))?.with_backoff(
            connectors::binlog::source::Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_secs(1),
                max_attempts: 3,
            },
        );
        source.ensure_connected().await?;
        let start = mark(&file, pos);
        let shared = Arc::new(Mutex::new(Shared {
            reached: start,
            ..Default::default()
        }));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (s2, n2) = (shared.clone(), notify.clone());
        let task = tokio::spawn(async move {
            let mut batch = KeyBatch::default();
            loop {
                match source.next_transaction().await {
                    Ok(tx) => {
                        batch.clear();
                        for ch in &tx.changes {
                            // A change the rules cannot render (a column dropped) has no key.
                            let _ = compiled.keys_for(ch, &mut batch);
                        }
                        let Position { file, pos, .. } = &tx.position;
                        if let Ok(mut s) = s2.lock() {
                            s.keys.extend(batch.keys().iter().map(|k| k.to_vec()));
                            s.reached = s.reached.max(mark(file, *pos));
                        }
                        n2.notify_waiters();
                    }
                    Err(e) => {
                        if let Ok(mut s) = s2.lock() {
                            s.error = Some(Arc::new(e));
                        }
                        n2.notify_waiters();
                        source.shutdown().await;
                        return;
                    }
                }
            }
        });
        Ok(Some(Watcher {
            shared,
            notify,
            task,
            start,
            timed_out: false,
        }))
    }

    /// Waits until the reader has seen every transaction the server has logged so
    /// far (so a change committed before the cache was read is known). `Err` when the
    /// reader failed; a timeout (a rotated binlog with no transaction after it leaves
    /// the server's position out of reach) sets `timed_out` and returns Ok.
    pub async fn sync(&mut self, aux: &mut Conn) -> Result<(), ChangesError> {
        let Some((file, pos)) = master_status(aux).await? else {
            return Ok(());
        };
        let target = mark(&file, pos);
        if target <= self.start {
            return Ok(());
        }
        // After one timeout the position is likely out of reach for good (a rotated
        // binlog): later syncs wait less, so the scan is not slowed batch after batch.
        let wait = if self.timed_out {
            SYNC_TIMEOUT / 10
        } else {
            SYNC_TIMEOUT
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a notification in between is not lost.
            let notified = self.notify.notified();
            {
                let s = self.shared.lock().map_err(|_| ChangesError::Poisoned)?;
                if let Some(e) = &s.error {
                    return Err(ChangesError::Reader(e.clone()));
                }
                if s.reached >= target {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.timed_out = true;
                return Ok(());
            }
        }
    }

    /// Whether `key`'s row changed since the scan started (as far as synced).
    pub fn changed(&self, key: &[u8]) -> bool {
        self.shared
            .lock()
            .map(|s| s.keys.contains(key))
            .unwrap_or(false)
    }

    /// Distinct keys seen changing.
    pub fn count(&self) -> u64 {
        self.shared.lock().map(|s| s.keys.len() as u64).unwrap_or(0)
    }

    /// Stops the reader.
    pub fn stop(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::mark;

    #[test]
    fn marks_order_by_file_number_then_offset() {
        assert!(mark("bin.000010", 4) > mark("bin.000009", 9999));
        assert!(mark("bin.000002", 500) > mark("bin.000002", 499));
    }
}
