//! The delayed-delete scheduler: second deletes on a timing wheel.
//!
//! Backed by `tokio_util::time::DelayQueue`, a hierarchical hashed timing wheel:
//! one entry per pending key, no task or timer per key. A key already waiting is
//! not added twice: its entry moves to the later deadline and to the newer
//! transaction, so a key invalidated twice within the delay gets one second delete
//! (at the later time), not two.
//!
//! Each entry carries the sequence number of the transaction that owns it; the
//! pipeline holds its checkpoint before the oldest transaction that still owns a
//! pending entry, so a crash before a second delete replays it.

use bytes::Bytes;
use std::collections::HashMap;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

/// Pending second deletes.
#[derive(Default)]
pub struct DelayedDeletes {
    wheel: DelayQueue<Bytes>,
    index: HashMap<Bytes, (delay_queue::Key, u64, Instant)>,
}

impl std::fmt::Debug for DelayedDeletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedDeletes")
            .field("pending", &self.index.len())
            .finish()
    }
}

impl DelayedDeletes {
    /// An empty scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `key` for deletion after `delay`, owned by transaction `seq`.
    /// Returns the previous owner when the key was already pending (it now
    /// belongs to `seq`, at the later of the two deadlines).
    pub fn schedule(&mut self, key: Bytes, delay: Duration, seq: u64) -> Option<u64> {
        let deadline = Instant::now() + delay;
        match self.index.get_mut(&key) {
            Some((wkey, owner, at)) => {
                let prev = *owner;
                *owner = seq;
                if deadline > *at {
                    *at = deadline;
                    self.wheel.reset_at(wkey, deadline);
                }
                Some(prev)
            }
            None => {
                let wkey = self.wheel.insert_at(key.clone(), deadline);
                self.index.insert(key, (wkey, seq, deadline));
                None
            }
        }
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn pop_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
        max: usize,
        out: &mut Vec<(Bytes, u64)>,
    ) {
        while out.len() < max {
            match self.wheel.poll_expired(cx) {
                Poll::Ready(Some(exp)) => {
                    let key = exp.into_inner();
                    if let Some((_, owner, _)) = self.index.remove(&key) {
                        out.push((key, owner));
                    }
                }
                _ => break,
            }
        }
    }

    /// Waits until at least one key is due, then returns up to `max` due keys
    /// with their owners. Never resolves while nothing is pending. Cancel-safe.
    pub async fn next_batch(&mut self, max: usize) -> Vec<(Bytes, u64)> {
        if self.is_empty() {
            return std::future::pending().await;
        }
        poll_fn(|cx| {
            let mut out = Vec::new();
            self.pop_ready(cx, max, &mut out);
            if out.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(out)
            }
        })
        .await
    }

    /// The keys already due, without waiting.
    pub fn due_now(&mut self, max: usize) -> Vec<(Bytes, u64)> {
        let mut out = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        self.pop_ready(&mut cx, max, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn coalesces_and_fires_in_order() {
        let mut d = DelayedDeletes::new();
        assert_eq!(
            d.schedule(Bytes::from_static(b"a"), Duration::from_millis(100), 1),
            None
        );
        assert_eq!(
            d.schedule(Bytes::from_static(b"b"), Duration::from_millis(100), 1),
            None
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        // "a" again: moves to 160 ms, now owned by tx 2.
        assert_eq!(
            d.schedule(Bytes::from_static(b"a"), Duration::from_millis(100), 2),
            Some(1)
        );
        assert_eq!(d.len(), 2);
        let first = d.next_batch(100).await;
        assert_eq!(first, vec![(Bytes::from_static(b"b"), 1)]);
        let second = d.next_batch(100).await;
        assert_eq!(second, vec![(Bytes::from_static(b"a"), 2)]);
        assert!(d.is_empty());
        assert!(d.due_now(10).is_empty());
    }
}
