//! TTL backstop for external Redis: SCAN each rule's key globs and give every key
//! without a TTL the rule's `ttl_backstop`, at a bounded rate.
//!
//! `EXPIRE key secs NX` (Redis 7) sets the TTL only where none exists, in the same
//! command that checks it, so a TTL the application sets meanwhile is never
//! overwritten. On a cluster, run one sweep per master node
//! ([`RedisConn::masters`]).
//!
//! Each key's lease side key ([`cache_aside::scripts::lease_key`]) gets the same backstop, set just
//! before the key's: after a lease fill without a TTL it holds the fill's `written`
//! time (cache-aside library) and has no TTL either, and must not outlive the value
//! once the backstop expires it. The side key's EXPIRE is a no-op when it has a TTL
//! (a lease outstanding, or a fill with a TTL) or does not exist.

use crate::rules::Rules;
use cache_aside::connection::RedisConn;
use cache_aside::scripts::lease_key_bytes;
use std::time::{Duration, Instant};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Keys SCAN returned for the rules' globs.
    pub scanned: u64,
    /// Keys that had no TTL and got the backstop.
    pub fixed: u64,
}

/// Sweep settings.
#[derive(Debug, Clone, Copy)]
pub struct SweepConfig {
    /// Keys examined per second at most.
    pub max_keys_per_sec: u64,
    /// SCAN's COUNT hint.
    pub page: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            max_keys_per_sec: 10_000,
            page: 500,
        }
    }
}

/// One pass over every rule with a backstop, on one node.
pub async fn sweep(
    conn: &RedisConn,
    rules: &Rules,
    cfg: SweepConfig,
) -> redis::RedisResult<SweepReport> {
    let mut report = SweepReport::default();
    let started = Instant::now();
    for (glob, ttl) in rules.backstops() {
        let secs = ttl.as_secs().max(1);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = conn
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&glob)
                        .arg("COUNT")
                        .arg(cfg.page),
                )
                .await?;
            if !keys.is_empty() {
                let mut cmds = Vec::with_capacity(keys.len() * 2);
                for k in &keys {
                    // Side key first, so it expires no later than the key.
                    for key in [lease_key_bytes(k), k.clone()] {
                        let mut c = redis::cmd("EXPIRE");
                        c.arg(key).arg(secs).arg("NX");
                        cmds.push(c);
                    }
                }
                let set: Vec<i64> = conn.each(cmds).await?;
                report.scanned += keys.len() as u64;
                // Every second reply is a key's own EXPIRE.
                report.fixed += set.iter().skip(1).step_by(2).filter(|&&n| n == 1).count() as u64;
                // Rate limit: never run ahead of max_keys_per_sec since the start.
                let due = Duration::from_secs_f64(
                    report.scanned as f64 / cfg.max_keys_per_sec.max(1) as f64,
                );
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    if report.fixed > 0 {
        tracing::info!(
            fixed = report.fixed,
            scanned = report.scanned,
            "TTL backstop applied"
        );
    }
    Ok(report)
}
