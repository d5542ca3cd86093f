//! `[ha]`: several invalidation daemons for one pipeline, one leader at a time.
//!
//! The leader holds a MySQL named lock (`GET_LOCK(name, 0)`) on a connection of its
//! own to the checkpoint server; the others poll for it as standbys. The server
//! releases the lock with the connection, so when the leader dies (kill -9, its host
//! gone) a standby gets it on its next poll and resumes from the leader's last
//! checkpoint (`[checkpoint] store = "mysql"` is required for that).
//!
//! Fencing: a leader's checkpoint is saved on the lock connection itself, in one
//! transaction with `IS_USED_LOCK(name) = CONNECTION_ID()`, so a leader that lost
//! the lock (its connection killed, the server restarted) cannot move the shared
//! checkpoint past what the new leader does. A watch task re-checks the lock every
//! poll and tells the pipeline to stop invalidating when it is gone.

use crate::config::ConfigError;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, TxOpts};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// The `[ha]` section.
///
/// ```toml
/// [ha]
/// enabled = true
/// # lock = "coherent.orders"   # default: "coherent." + the checkpoint's pipeline name
/// # poll_ms = 1000             # standby poll and leader re-check period
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaConfig {
    /// Run as one of several processes, one leader at a time.
    pub enabled: bool,
    /// The MySQL lock name; `coherent.<pipeline>` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// How often a standby asks for the lock and a leader re-checks it holds it.
    pub poll_ms: u64,
}

impl Default for HaConfig {
    fn default() -> Self {
        HaConfig {
            enabled: false,
            lock: None,
            poll_ms: 1000,
        }
    }
}

impl HaConfig {
    /// Checks the section alone (the checkpoint store is checked by
    /// `ConnectorConfig::validate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = &self.lock {
            // MySQL refuses longer lock names (ER_USER_LOCK_WRONG_NAME).
            if l.is_empty() || l.len() > 64 {
                return Err(ConfigError::new("ha", "lock", "must be 1 to 64 characters"));
            }
        }
        if !(50..=60_000).contains(&self.poll_ms) {
            return Err(ConfigError::new(
                "ha",
                "poll_ms",
                "must be between 50 and 60000",
            ));
        }
        Ok(())
    }

    /// The lock name for the pipeline (the checkpoint row) `pipeline`: `lock`, or
    /// `coherent.<pipeline>` cut to MySQL's 64 characters.
    pub fn lock_name(&self, pipeline: &str) -> String {
        match &self.lock {
            Some(l) => l.clone(),
            None => format!("coherent.{pipeline}").chars().take(64).collect(),
        }
    }

    /// The poll period.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    /// The lock connection's `wait_timeout` on the server: five polls, at least 5 s.
    /// A leader cut off from the server (network loss, a frozen process) sends
    /// nothing, and the server drops its connection, and with it the lock, after
    /// this long; a live leader re-checks every poll and never idles that long.
    pub fn server_timeout_secs(&self) -> u64 {
        (self.poll_ms * 5).div_ceil(1000).max(5)
    }

    /// How long a leader's re-check may take before it counts the lock as lost: two
    /// polls, at least 1 s, so it steps down before the server hands the lock on
    /// ([`HaConfig::server_timeout_secs`]).
    pub fn check_timeout(&self) -> Duration {
        Duration::from_millis((self.poll_ms * 2).max(1000))
    }
}

/// Why leadership failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// The lock is no longer held by this process: it must stop writing.
    #[error("lost the HA lock {name:?}: {reason}")]
    Lost {
        /// The lock name.
        name: String,
        /// What showed it.
        reason: String,
    },
}

/// A leader's hold on the lock: the connection that holds it, and whether it still
/// does.
#[derive(Debug)]
pub struct Lease {
    name: String,
    /// See [`HaConfig::check_timeout`].
    check_timeout: Duration,
    connection_id: u32,
    /// `None` once the connection failed (the lock went with it).
    conn: Mutex<Option<Conn>>,
    lost: watch::Sender<bool>,
}

/// Polls for the lock `name` on the server at `url` every `config.poll()` until this
/// process holds it (then it is the leader). A failed connection is retried at the
/// next poll; `on_wait` is told each time the lock is held elsewhere (with the
/// holder's connection id) or the server cannot be reached.
pub async fn acquire(
    url: &str,
    name: &str,
    config: &HaConfig,
    mut on_wait: impl FnMut(&str),
) -> Lease {
    let poll = config.poll();
    let mut conn: Option<Conn> = None;
    loop {
        let attempt = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    let mut c = Conn::from_url(url).await?;
                    let secs = config.server_timeout_secs();
                    c.query_drop(format!("SET SESSION wait_timeout = {secs}"))
                        .await?;
                    conn.insert(c)
                }
            };
            let got: Option<Option<i64>> = c.exec_first("SELECT GET_LOCK(?, 0)", (name,)).await?;
            if got.flatten() == Some(1) {
                return Ok::<_, mysql_async::Error>(None);
            }
            let holder: Option<Option<u64>> =
                c.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
            Ok(Some(match holder.flatten() {
                Some(id) => format!("held by connection {id}"),
                None => "released; retrying".to_string(),
            }))
        }
        .await;
        match attempt {
            Ok(None) => {
                // `conn` is Some after a successful GET_LOCK.
                if let Some(c) = conn.take() {
                    let connection_id = c.id();
                    return Lease {
                        name: name.to_string(),
                        check_timeout: config.check_timeout(),
                        connection_id,
                        conn: Mutex::new(Some(c)),
                        lost: watch::channel(false).0,
                    };
                }
            }
            Ok(Some(why)) => on_wait(&why),
            Err(e) => {
                conn = None;
                on_wait(&format!("cannot ask for the lock: {e}"));
            }
        }
        tokio::time::sleep(poll).await;
    }
}

impl Lease {
    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's id of the connection holding the lock (`KILL` it to make this
    /// process step down).
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    /// Whether the lock was found lost.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lock is found lost.
    pub async fn lost(&self) {
        let mut rx = self.lost.subscribe();
        // Err: the sender is gone, which only happens with the lease.
        let _ = rx.wait_for(|l| *l).await;
    }

    fn mark_lost(&self, reason: &str) -> HaError {
        if !self.is_lost() {
            tracing::error!(lock = %self.name, reason, "HA lock lost: stepping down");
        }
        self.lost.send_replace(true);
        HaError::Lost {
            name: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Asks the server whether the lock connection still holds the lock; marks it
    /// lost when not (or when the connection failed).
    pub async fn check(&self) -> Result<(), HaError> {
        let mut g = self.conn.lock().await;
        let Some(c) = g.as_mut() else {
            return Err(self.mark_lost("the lock connection failed earlier"));
        };
        let r = tokio::time::timeout(
            self.check_timeout,
            c.exec_first::<Option<i64>, _, _>(
                "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
                (&self.name,),
            ),
        )
        .await;
        match r {
            Ok(Ok(Some(Some(1)))) => Ok(()),
            Ok(Ok(_)) => Err(self.mark_lost("the lock is no longer held by this process")),
            Ok(Err(e)) => {
                *g = None;
                Err(self.mark_lost(&format!("the lock connection failed: {e}")))
            }
            Err(_) => {
                // No answer: the server may already have dropped the connection and
                // handed the lock on; the connection is not used again.
                *g = None;
                Err(self.mark_lost(&format!(
                    "the server did not answer the lock check within {:?}",
                    self.check_timeout
                )))
            }
        }
    }

    /// Re-checks the lock every `every` until it is lost (then returns).
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            while me.check().await.is_ok() {
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Runs `stmt` with `params` on the lock connection, in one transaction with the
    /// check that the lock is still held: committed only while this process leads.
    /// Any failure marks the lock lost (the write's outcome is then unknown to a
    /// fenced leader, which must stop either way).
    pub async fn exec_fenced(&self, stmt: &str, params: Params) -> Result<(), HaError> {
        let mut g = self.conn.lock().await;
        let Some(c) = g.as_mut() else {
            return Err(self.mark_lost("the lock connection failed earlier"));
        };
        let r = async {
            let mut tx = c.start_transaction(TxOpts::default()).await?;
            let held: Option<Option<i64>> = tx
                .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (&self.name,))
                .await?;
            if held.flatten() != Some(1) {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.exec_drop(stmt, params).await?;
            tx.commit().await?;
            Ok::<_, mysql_async::Error>(true)
        }
        .await;
        match r {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.mark_lost("the lock is no longer held by this process")),
            Err(e) => {
                *g = None;
                Err(self.mark_lost(&format!("the lock connection failed: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: HaConfig = toml::from_str("enabled = true\n").unwrap();
        assert_eq!(c.poll_ms, 1000);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.lock_name("orders"), "coherent.orders");
        assert_eq!(c.lock_name(&"x".repeat(100)).len(), 64);
        assert_eq!(c.server_timeout_secs(), 5);
        assert_eq!(c.check_timeout(), Duration::from_secs(2));
        let slow: HaConfig = toml::from_str("poll_ms = 3000\n").unwrap();
        assert_eq!(slow.server_timeout_secs(), 15);
        assert!(slow.check_timeout() < Duration::from_secs(slow.server_timeout_secs()));
        let c: HaConfig = toml::from_str("lock = \"\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "lock");
        let c: HaConfig = toml::from_str("poll_ms = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "poll_ms");
        assert!(toml::from_str::<HaConfig>("enable = true\n").is_err());
    }
}
