//! Client output buffer limits (`client-output-buffer-limit`, Redis's
//! `checkClientOutputBufferLimits`): a client whose pending output grows past its
//! class's hard limit, or stays past the soft limit for longer than its seconds, is
//! closed and logged, so that a subscriber that stops reading cannot make the server
//! queue its messages forever. Other clients are not disturbed: a publisher never
//! waits for a subscriber.
//!
//! Each connection shares an [`OutputState`] with whoever queues output for it (the
//! pub/sub registry for pushes, the connection itself for replies): bytes queued and
//! bytes being written, which CLIENT LIST shows as `omem`.

use crate::net::reply::Reply;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// One class's limits (bytes, bytes, seconds; 0 disables each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ClassLimit {
    pub(crate) hard: u64,
    pub(crate) soft: u64,
    pub(crate) soft_seconds: u64,
}

impl ClassLimit {
    /// Whether any limit is set.
    pub(crate) fn is_set(&self) -> bool {
        self.hard != 0 || self.soft != 0
    }
}

/// The limits of the three classes, as `client-output-buffer-limit` sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputLimits {
    pub(crate) normal: ClassLimit,
    pub(crate) replica: ClassLimit,
    pub(crate) pubsub: ClassLimit,
}

/// Redis's defaults: normal unlimited, replica 256mb 64mb 60, pubsub 32mb 8mb 60.
pub(crate) const DEFAULT_LIMITS: OutputLimits = OutputLimits {
    normal: ClassLimit {
        hard: 0,
        soft: 0,
        soft_seconds: 0,
    },
    replica: ClassLimit {
        hard: 256 << 20,
        soft: 64 << 20,
        soft_seconds: 60,
    },
    pubsub: ClassLimit {
        hard: 32 << 20,
        soft: 8 << 20,
        soft_seconds: 60,
    },
};

/// The setting's default text, as CONFIG GET shows it.
pub(crate) const DEFAULT_TEXT: &str =
    "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";

impl OutputLimits {
    /// Applies `text` (`<class> <hard> <soft> <seconds>` groups; classes `normal`,
    /// `replica` or `slave`, `pubsub`; sizes with Redis's units) over these limits;
    /// classes not named keep theirs. Errors are Redis's texts.
    pub(crate) fn apply(&mut self, text: &str) -> Result<(), String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if !words.len().is_multiple_of(4) {
            return Err("Wrong number of arguments in buffer limit configuration.".into());
        }
        let mut next = *self;
        for g in words.chunks(4) {
            let class = match g[0].to_ascii_lowercase().as_str() {
                "normal" => &mut next.normal,
                "replica" | "slave" => &mut next.replica,
                "pubsub" => &mut next.pubsub,
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    )
                }
            };
            let bad = || {
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_string()
            };
            let hard = crate::config::parse_memory(g[1]).map_err(|_| bad())?;
            let soft = crate::config::parse_memory(g[2]).map_err(|_| bad())?;
            let secs = g[3].parse::<u64>().map_err(|_| bad())?;
            *class = ClassLimit {
                hard,
                soft,
                soft_seconds: secs,
            };
        }
        *self = next;
        Ok(())
    }

    /// The text CONFIG GET shows (`slave` is Redis's name there).
    pub(crate) fn format(&self) -> String {
        let c = |l: &ClassLimit| format!("{} {} {}", l.hard, l.soft, l.soft_seconds);
        format!(
            "normal {} slave {} pubsub {}",
            c(&self.normal),
            c(&self.replica),
            c(&self.pubsub)
        )
    }
}

/// What is pending for one client, shared by the connection and the code that queues
/// output for it.
#[derive(Debug, Default)]
pub(crate) struct OutputState {
    /// Bytes of pushes queued for the connection and not yet taken.
    queued: AtomicUsize,
    /// Pushes queued (CLIENT LIST `oll`).
    queued_msgs: AtomicUsize,
    /// Bytes the connection holds encoded and not yet written.
    writing: AtomicUsize,
    /// When the soft limit was first seen passed (Unix seconds; 0: not passed).
    soft_since: AtomicU64,
    /// Over a limit: no more output is queued, the connection closes.
    closing: AtomicBool,
    /// Wakes the connection when it must close (even in the middle of a write).
    pub(crate) wake: Notify,
}

/// The shared state of one connection's output.
pub(crate) type Output = Arc<OutputState>;

impl OutputState {
    /// A push of `bytes` was queued.
    pub(crate) fn pushed(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        self.queued_msgs.fetch_add(1, Ordering::Relaxed);
    }
    /// The connection took a push of `bytes` off the queue.
    pub(crate) fn taken(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        self.queued_msgs.fetch_sub(1, Ordering::Relaxed);
    }
    /// The connection holds `bytes` encoded, not yet written.
    pub(crate) fn set_writing(&self, bytes: usize) {
        self.writing.store(bytes, Ordering::Relaxed);
    }
    /// Pending output in bytes (CLIENT LIST `omem`).
    pub(crate) fn omem(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + self.writing.load(Ordering::Relaxed)
    }
    /// Pushes waiting (CLIENT LIST `oll`).
    pub(crate) fn oll(&self) -> usize {
        self.queued_msgs.load(Ordering::Relaxed)
    }
    /// Whether the client was found over its limit and is closing.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Checks the pending output against `limit` (Redis's rule: the hard limit at
    /// once, the soft limit once it has held for more than its seconds); when over,
    /// marks the client closing and wakes its connection. Returns true when over.
    pub(crate) fn check(&self, limit: ClassLimit, client: u64, class: &str) -> bool {
        if self.is_closing() {
            return true;
        }
        let used = self.omem() as u64;
        let hard = limit.hard != 0 && used >= limit.hard;
        let mut soft = limit.soft != 0 && used >= limit.soft;
        if soft {
            let now = crate::util::now_ms() / 1000;
            let since = self.soft_since.load(Ordering::Relaxed);
            if since == 0 {
                self.soft_since.store(now, Ordering::Relaxed);
                soft = false;
            } else if now.saturating_sub(since) <= limit.soft_seconds {
                soft = false;
            }
        } else {
            self.soft_since.store(0, Ordering::Relaxed);
        }
        if hard || soft {
            self.closing.store(true, Ordering::Relaxed);
            self.wake.notify_one();
            tracing::warn!(
                client,
                class,
                omem = used,
                "client scheduled to be closed ASAP for overcoming of output buffer limits"
            );
        }
        hard || soft
    }
}

/// Bytes a reply takes encoded, close enough for accounting (the same figure on the
/// queueing and the taking side).
pub(crate) fn reply_size(r: &Reply) -> usize {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) | Reply::Raw(b) => b.len() + 16,
        Reply::Push(v) | Reply::Array(v) | Reply::Set(v) | Reply::Many(v) => {
            8 + v.iter().map(reply_size).sum::<usize>()
        }
        Reply::Map(v) => {
            8 + v
                .iter()
                .map(|(k, x)| reply_size(k) + reply_size(x))
                .sum::<usize>()
        }
        Reply::Status(s) | Reply::Error(s) => s.len() + 3,
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_merge_and_show_like_redis() {
        let mut l = DEFAULT_LIMITS;
        assert_eq!(l.format(), DEFAULT_TEXT);
        l.apply("pubsub 1mb 512kb 10").unwrap();
        assert_eq!(
            l.format(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 10"
        );
        l.apply("replica 1 2 3 normal 4 5 6").unwrap();
        assert_eq!(l.replica.hard, 1);
        assert_eq!(l.normal.soft_seconds, 6);
        assert_eq!(l.pubsub.hard, 1 << 20, "classes not named keep theirs");
        let before = l;
        assert!(l.apply("pubsub 1 2").unwrap_err().contains("Wrong number"));
        assert!(l
            .apply("master 1 2 3")
            .unwrap_err()
            .contains("Invalid client class"));
        assert!(l
            .apply("pubsub x 2 3")
            .unwrap_err()
            .contains("soft_seconds"));
        assert!(l
            .apply("pubsub 1 2 -3")
            .unwrap_err()
            .contains("soft_seconds"));
        assert_eq!(l, before, "all or nothing");
    }

    #[test]
    fn hard_at_once_soft_after_its_seconds() {
        let s = OutputState::default();
        let limit = ClassLimit {
            hard: 1000,
            soft: 100,
            soft_seconds: 3600,
        };
        s.pushed(150);
        assert!(!s.check(limit, 1, "pubsub"), "soft: first seen");
        assert!(
            !s.check(limit, 1, "pubsub"),
            "soft: not yet for its seconds"
        );
        s.taken(150);
        s.pushed(10);
        assert!(!s.check(limit, 1, "pubsub"));
        assert_eq!(s.soft_since.load(Ordering::Relaxed), 0, "below soft: reset");
        s.pushed(2000);
        assert!(s.check(limit, 1, "pubsub"), "hard: at once");
        assert!(s.is_closing());
        assert_eq!(s.oll(), 2);
        let zero = ClassLimit {
            soft_seconds: 0,
            ..limit
        };
        let t = OutputState::default();
        t.pushed(150);
        t.soft_since.store(1, Ordering::Relaxed);
        assert!(t.check(zero, 2, "normal"), "soft passed long ago");
    }
}
