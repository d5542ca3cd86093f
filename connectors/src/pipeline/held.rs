//! Transactions whose checkpoint waits on their second deletes.
//!
//! Each applied transaction gets a sequence number and joins the back of the queue
//! with a count of its second deletes still on the timing wheel. The checkpoint may
//! move to a transaction only when it and every transaction before it have none left,
//! so it never passes a second delete that has not fired (or been queued).
//! Sequence numbers are consecutive, so the entry of `seq` sits at `seq - front.seq`:
//! that arithmetic lives here, once.

use crate::checkpoint::Checkpoint;
use std::collections::VecDeque;

/// One held transaction.
#[derive(Debug)]
struct Held {
    seq: u64,
    checkpoint: Checkpoint,
    /// Second deletes of this transaction still pending on the wheel.
    remaining: usize,
}

/// The held transactions, oldest first.
#[derive(Debug, Default)]
pub(super) struct HeldTransactions {
    queue: VecDeque<Held>,
    next_seq: u64,
}

impl HeldTransactions {
    /// Appends a transaction (no second delete pending yet); returns its number.
    pub(super) fn push(&mut self, checkpoint: Checkpoint) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Held {
            seq,
            checkpoint,
            remaining: 0,
        });
        seq
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Held> {
        let base = self.queue.front()?.seq;
        let i = usize::try_from(seq.checked_sub(base)?).ok()?;
        self.queue.get_mut(i)
    }

    /// One more second delete of transaction `seq` is pending.
    pub(super) fn hold(&mut self, seq: u64) {
        if let Some(h) = self.get_mut(seq) {
            h.remaining += 1;
        }
    }

    /// One second delete of transaction `seq` fired, was queued, or moved to a later
    /// transaction.
    pub(super) fn release(&mut self, seq: u64) {
        if let Some(h) = self.get_mut(seq) {
            h.remaining = h.remaining.saturating_sub(1);
        }
    }

    /// The checkpoint of transaction `seq`, while it is held.
    pub(super) fn checkpoint(&self, seq: u64) -> Option<&Checkpoint> {
        let base = self.queue.front()?.seq;
        let i = usize::try_from(seq.checked_sub(base)?).ok()?;
        self.queue.get(i).map(|h| &h.checkpoint)
    }

    /// Removes the transactions at the front with nothing pending and returns the
    /// checkpoint of the newest of them: the furthest the checkpoint may now move.
    pub(super) fn pop_released(&mut self) -> Option<Checkpoint> {
        let mut newest = None;
        while self.queue.front().is_some_and(|h| h.remaining == 0) {
            newest = self.queue.pop_front().map(|h| h.checkpoint);
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::Position;

    fn cp(pos: u64) -> Checkpoint {
        Checkpoint {
            position: Position {
                file: "bin.000001".into(),
                pos,
                ..Position::default()
            },
            timestamp: 0,
            saved_at: 0,
        }
    }

    #[test]
    fn the_checkpoint_waits_for_the_oldest_pending_second_delete() {
        let mut h = HeldTransactions::default();
        let a = h.push(cp(100));
        h.hold(a);
        let b = h.push(cp(200));
        let c = h.push(cp(300));
        h.hold(c);
        h.hold(c);
        // `a` still waits: nothing may be checkpointed, `b` included.
        assert_eq!(h.pop_released(), None);
        assert_eq!(h.checkpoint(b).map(|c| c.position.pos), Some(200));
        h.release(a);
        // `a` and `b` are clear, `c` is not.
        assert_eq!(h.pop_released().map(|c| c.position.pos), Some(200));
        assert_eq!(h.checkpoint(a), None, "gone once released");
        h.release(c);
        assert_eq!(h.pop_released(), None);
        h.release(c);
        // Releasing what is gone, or too often, changes nothing.
        h.release(a);
        assert_eq!(h.pop_released().map(|c| c.position.pos), Some(300));
        assert_eq!(h.pop_released(), None);
    }
}
