//! The retry worker: one loop, for every backend. It takes due deletes from the
//! queue's storage ([`QueueStore`]), sends them through the target's stack, and
//! applies the one set of rules:
//!
//! - a queued delete has had one attempt, the pipeline's; its first retry comes one
//!   backoff after it was queued ([`first_retry_in`]), and no delete is sent before
//!   its due time;
//! - a batch that lands is acked;
//! - a batch that fails costs each of its deletes an attempt: below `max_attempts`
//!   it is requeued after [`RetryConfig::backoff_for`] its attempts (exponential,
//!   capped, with jitter); at `max_attempts` it is dead-lettered (logged, counted);
//! - a storage error (a disk write, a lost broker connection) pauses the loop with
//!   backoff and it goes on: what was taken and not settled stays stored (the
//!   broker redelivers it; the embedded log replays it), so at worst a delete repeats.

use super::store::{QueueStore, Taken};
use super::{now_ms, QueueError, RetryConfig};
use crate::targets::DeleteService;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// When a delete the pipeline could not land is first retried.
pub fn first_retry_in(cfg: &RetryConfig) -> Duration {
    cfg.backoff_for(1)
}

/// Pause after `failures` storage errors in a row (1-based): 100 ms doubling to 5 s,
/// with equal jitter so a restarted broker is not hit by every client at once.
fn storage_pause(failures: u32) -> Duration {
    let capped = (100u64 << failures.saturating_sub(1).min(6)).min(5_000);
    let half = capped / 2;
    Duration::from_millis(half + fastrand::u64(0..=capped - half))
}

/// Retries the deletes of `store` through `deletes` until the task is aborted.
pub async fn run<S: QueueStore>(store: Arc<S>, mut deletes: DeleteService) {
    // Owned by this task: aborting it hands back what it took and did not settle.
    let mut consumer = store.consumer();
    let mut failures = 0u32;
    loop {
        match retry_batch(&*store, &mut consumer, &mut deletes).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, "retry queue storage is back");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                if failures % 10 == 1 {
                    tracing::warn!(error = %e, failures, "retry queue storage failed; trying again");
                }
                tokio::time::sleep(storage_pause(failures)).await;
            }
        }
    }
}

/// Takes one batch of due deletes, sends it, and settles it by the rules.
async fn retry_batch<S: QueueStore>(
    store: &S,
    consumer: &mut S::Consumer,
    deletes: &mut DeleteService,
) -> Result<(), QueueError> {
    let batch = store.take_due(consumer, store.config().batch).await?;
    let Some(due) = batch.iter().map(|t| t.due_ms).max() else {
        return Ok(());
    };
    let early = due.saturating_sub(now_ms());
    if early > 0 {
        tokio::time::sleep(Duration::from_millis(early)).await;
    }
    let keys: Vec<Bytes> = batch.iter().map(|t| t.key.clone()).collect();
    let error = match deletes.send(&keys).await {
        Ok(()) => return store.ack(consumer, batch).await,
        Err(e) => e,
    };
    tracing::warn!(error = %error, keys = keys.len(), "retry batch failed");
    let (dead, again) = judge(store.config(), batch);
    // Both are settled even if one fails: what is not stays stored, taken again later.
    let dead = if dead.is_empty() {
        Ok(())
    } else {
        store.dead_letter(consumer, dead).await
    };
    let again = if again.is_empty() {
        Ok(())
    } else {
        store.requeue(consumer, again).await
    };
    dead.and(again)
}

/// Deletes to dead-letter, and deletes to retry with their pause.
type Judged<T> = (Vec<Taken<T>>, Vec<(Taken<T>, Duration)>);

/// Counts the failed attempt of each delete and splits them: dead letters, and
/// retries with their pause.
fn judge<T>(cfg: &RetryConfig, batch: Vec<Taken<T>>) -> Judged<T> {
    let mut dead = Vec::new();
    let mut again = Vec::with_capacity(batch.len());
    for mut t in batch {
        t.attempts += 1;
        if t.attempts >= cfg.max_attempts {
            tracing::error!(key = %String::from_utf8_lossy(&t.key), position = %t.position,
                attempts = t.attempts, "delete dead-lettered after max_attempts");
            dead.push(t);
        } else {
            let pause = cfg.backoff_for(t.attempts);
            again.push((t, pause));
        }
    }
    (dead, again)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(attempts: u32) -> Taken<()> {
        Taken {
            key: Bytes::from_static(b"k"),
            position: "bin.000001:4".into(),
            attempts,
            due_ms: 0,
            ticket: (),
        }
    }

    #[test]
    fn a_failure_costs_an_attempt_and_the_last_one_dead_letters() {
        let cfg = RetryConfig {
            max_attempts: 4,
            ..RetryConfig::default()
        };
        let (dead, again) = judge(&cfg, vec![taken(1), taken(2), taken(3)]);
        assert_eq!(
            again.iter().map(|(t, _)| t.attempts).collect::<Vec<_>>(),
            [2, 3]
        );
        // Attempt 2 waits backoff_for(2) (100 ms doubled, jittered), attempt 3
        // backoff_for(3).
        assert!((100..=200).contains(&again[0].1.as_millis()), "{again:?}");
        assert!((200..=400).contains(&again[1].1.as_millis()), "{again:?}");
        assert_eq!(dead.iter().map(|t| t.attempts).collect::<Vec<_>>(), [4]);
        assert!(first_retry_in(&cfg) <= cfg.backoff.0);
    }

    #[test]
    fn storage_pauses_grow_to_a_cap() {
        for _ in 0..50 {
            assert!((50..=100).contains(&storage_pause(1).as_millis()));
            assert!((2_500..=5_000).contains(&storage_pause(30).as_millis()));
        }
    }
}
