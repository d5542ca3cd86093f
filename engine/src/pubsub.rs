//! Channel and pattern subscriptions, and message fan-out.

use crate::net::reply::Reply;
use bytes::Bytes;
use indexmap::IndexSet;
use std::collections::HashMap;
use tokio::sync::mpsc::UnboundedSender;

/// Where a client's out-of-band messages go.
pub type PushSender = UnboundedSender<Reply>;

/// The subscription registry.
#[derive(Debug, Default)]
pub struct PubSub {
    channels: HashMap<Bytes, IndexSet<u64>>,
    patterns: HashMap<Bytes, IndexSet<u64>>,
    senders: HashMap<u64, PushSender>,
}

impl PubSub {
    /// Registers where a client's messages go (done once per connection).
    pub fn register(&mut self, client: u64, tx: PushSender) {
        self.senders.insert(client, tx);
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
            for id in subs {
                if let Some(tx) = self.senders.get(id) {
                    if tx.send(msg.clone()).is_ok() {
                        n += 1;
                    }
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
                for id in subs {
                    if let Some(tx) = self.senders.get(id) {
                        if tx.send(msg.clone()).is_ok() {
                            n += 1;
                        }
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
