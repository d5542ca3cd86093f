//! The deletes queued and not yet landed (or dead-lettered), for an exact depth.
//!
//! Every message this process publishes carries a `message_id` of `INSTANCE-SEQ`;
//! its retry copies keep it. A delivery settles its id once: a duplicate (a publish
//! repeated after a lost confirm, a redelivery after a lost ack) of an id already
//! settled changes nothing, so the depth neither drifts nor reaches 0 while a delete
//! is still queued.

use std::collections::HashSet;

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Outstanding {
    /// This process's id prefix.
    instance: String,
    next: u64,
    /// Sequence numbers published by this process and not settled.
    ids: HashSet<u64>,
    /// Messages found on the broker at start (earlier processes) not settled yet.
    foreign: u64,
}

impl Outstanding {
    /// Tracks the messages of process `instance`, with `foreign` messages of
    /// earlier processes already on the broker.
    pub(super) fn new(instance: String, foreign: u64) -> Self {
        Outstanding {
            instance,
            next: 0,
            ids: HashSet::new(),
            foreign,
        }
    }

    /// Deletes queued.
    pub(super) fn depth(&self) -> u64 {
        self.ids.len() as u64 + self.foreign
    }

    /// The id of a new message, counted from now on.
    pub(super) fn publish(&mut self) -> String {
        let seq = self.next;
        self.next += 1;
        self.ids.insert(seq);
        format!("{}-{seq}", self.instance)
    }

    /// Settles the message `id` (None: no id, from an earlier process).
    pub(super) fn settle(&mut self, id: Option<&str>) {
        let own = id
            .and_then(|id| id.split_once('-'))
            .filter(|(inst, _)| *inst == self.instance)
            .and_then(|(_, seq)| seq.parse::<u64>().ok());
        match own {
            Some(seq) => {
                self.ids.remove(&seq);
            }
            None => self.foreign = self.foreign.saturating_sub(1),
        }
    }

    /// The broker says it holds `foreign` messages of earlier processes.
    pub(super) fn set_foreign(&mut self, foreign: u64) {
        self.foreign = foreign;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_settle_once_and_foreign_messages_count_down() {
        let mut o = Outstanding::new("a1".into(), 2);
        let (x, y) = (o.publish(), o.publish());
        assert_eq!(o.depth(), 4);
        o.settle(Some(&x));
        o.settle(Some(&x));
        assert_eq!(o.depth(), 3, "a duplicate of a settled id changes nothing");
        o.settle(None);
        o.settle(Some("b7-0"));
        assert_eq!(o.depth(), 1, "ids of other processes settle foreign ones");
        o.settle(Some(&y));
        o.settle(None);
        assert_eq!(o.depth(), 0);
    }
}
