//! Channel and pattern subscriptions, and message fan-out.

use crate::net::reply::Reply;
use crate::outbuf::{reply_size, ClassLimit, Output};
use bytes::Bytes;
use indexmap::IndexSet;
use std::cell::RefCell;
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;

/// Where a client's out-of-band messages go.
pub type PushSender = UnboundedSender<Reply>;

/// The subscription registry.
#[derive(Debug, Default)]
pub struct PubSub {
    channels: HashMap<Bytes, IndexSet<u64>>,
    patterns: HashMap<Bytes, IndexSet<u64>>,
    senders: HashMap<u64, (PushSender, Output)>,
    /// The `pubsub` class's output buffer limits.
    pub(crate) limit: ClassLimit,
    /// While EXEC runs: its client's pushes, held to go inside the transaction's
    /// reply just ahead of the reply of the command that made them, where Redis
    /// writes them.
    capture: RefCell<Option<(u64, Vec<Reply>)>>,
}

impl PubSub {
    /// Registers where a client's messages go (done once per connection).
    pub(crate) fn register(&mut self, client: u64, tx: PushSender, output: Output) {
        self.senders.insert(client, (tx, output));
    }

    /// Queues a push for `client`; false if it is gone. A client over its output
    /// buffer limit gets nothing more and is closed (Redis's `CLIENT_CLOSE_ASAP`).
    fn deliver(&self, client: u64, msg: &Reply) -> bool {
        if let Some((id, held)) = self.capture.borrow_mut().as_mut() {
            if *id == client {
                held.push(msg.clone());
                return true;
            }
        }
        let Some((tx, out)) = self.senders.get(&client) else {
            return false;
        };
        if out.is_closing() {
            return true;
        }
        let size = reply_size(msg);
        out.pushed(size);
        if tx.send(msg.clone()).is_err() {
            out.taken(size);
            return false;
        }
        if self.limit.is_set() {
            out.check(self.limit, client, "pubsub");
        }
        true
    }

    /// Holds `client`'s pushes until [`PubSub::take_captured`] (EXEC's commands).
    pub(crate) fn capture(&self, client: u64) {
        *self.capture.borrow_mut() = Some((client, Vec::new()));
    }

    /// The pushes held since the last call.
    pub(crate) fn take_captured(&self) -> Vec<Reply> {
        self.capture
            .borrow_mut()
            .as_mut()
            .map(|(_, held)| std::mem::take(held))
            .unwrap_or_default()
    }

    /// Stops holding pushes.
    pub(crate) fn end_capture(&self) {
        *self.capture.borrow_mut() = None;
    }

    /// Queues an out-of-band message for one client (client-side caching's
    /// invalidations, MONITOR's lines); false if it is gone.
    pub(crate) fn push_to(&self, client: u64, msg: &Reply) -> bool {
        self.deliver(client, msg)
    }

    /// Forgets a client and all its subscriptions.
    pub fn unregister(
        &mut self,
        client: u64,
        channels: &IndexSet<Bytes>,
        patterns: &IndexSet<Bytes>,
    ) {
        for c in channels {
            self.unsubscribe(client, c);
        }
        for p in patterns {
            self.punsubscribe(client, p);
        }
        self.senders.remove(&client);
    }

    /// Adds a channel subscription.
    pub fn subscribe(&mut self, client: u64, channel: Bytes) {
        self.channels.entry(channel).or_default().insert(client);
    }

    /// Removes a channel subscription.
    pub fn unsubscribe(&mut self, client: u64, channel: &[u8]) {
        if let Some(s) = self.channels.get_mut(channel) {
            s.shift_remove(&client);
            if s.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Adds a pattern subscription.
    pub fn psubscribe(&mut self, client: u64, pattern: Bytes) {
        self.patterns.entry(pattern).or_default().insert(client);
    }

    /// Removes a pattern subscription.
    pub fn punsubscribe(&mut self, client: u64, pattern: &[u8]) {
        if let Some(s) = self.patterns.get_mut(pattern) {
            s.shift_remove(&client);
            if s.is_empty() {
                self.patterns.remove(pattern);
            }
        }
    }

    /// Sends a message to every subscriber; returns how many received it.
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> i64 {
        let mut n = 0;
        if let Some(subs) = self.channels.get(channel) {
            let msg = Reply::Push(vec![
                Reply::text("message"),
                Reply::bulk(channel),
                Reply::bulk(message),
            ]);
            for &id in subs {
                if self.deliver(id, &msg) {
                    n += 1;
                }
            }
        }
        for (pat, subs) in &self.patterns {
            if crate::util::glob_match(pat, channel, false) {
                let msg = Reply::Push(vec![
                    Reply::text("pmessage"),
                    Reply::Bulk(pat.clone()),
                    Reply::bulk(channel),
                    Reply::bulk(message),
                ]);
                for &id in subs {
                    if self.deliver(id, &msg) {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Whether anyone at all listens (lets keyspace notifications skip formatting).
    pub fn has_subscribers(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// Active channels matching an optional pattern (PUBSUB CHANNELS).
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::util::glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of a channel (PUBSUB NUMSUB).
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.get(channel).map_or(0, |s| s.len())
    }

    /// Number of distinct patterns (PUBSUB NUMPAT).
    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }
}
