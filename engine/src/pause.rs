//! CLIENT PAUSE (`pauseClients`): for a while, clients' commands wait, all of them
//! (`ALL`) or those that write or may replicate (`WRITE`: writes, PUBLISH, EVAL,
//! PFCOUNT, ..., and an EXEC with such a command queued). Active expiry and eviction
//! stop meanwhile, so that the dataset does not change (Redis does the same, which
//! is what failover tools rely on). A waiting connection keeps its command and runs
//! it when the pause ends (`crate::net::connection`).
//!
//! FAILOVER pauses writes too, for as long as it runs (`PAUSE_DURING_FAILOVER`): a
//! pause of its own, which CLIENT UNPAUSE does not end, so that no write is accepted
//! after the offset the target must reach.

use crate::client::Client;
use crate::command::{CommandSpec, WRITE};
use bytes::Bytes;
use tokio::sync::watch;

/// The pause in force, if any.
#[derive(Debug)]
pub(crate) struct Pause {
    /// Unix ms when it ends; 0 when there is no pause.
    end: u64,
    /// `ALL` rather than `WRITE`.
    all: bool,
    /// Writes held while a FAILOVER runs, whatever `end` says.
    failover: bool,
    /// Bumped when a pause ends early (CLIENT UNPAUSE), to wake waiting connections.
    wake: watch::Sender<u64>,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            end: 0,
            all: false,
            failover: false,
            wake: watch::channel(0).0,
        }
    }
}

impl Pause {
    /// Pauses until `end` (Unix ms); a pause already in force keeps the longer end
    /// and the stronger mode, as Redis's.
    pub(crate) fn pause(&mut self, end: u64, all: bool, now: u64) {
        if self.end <= now {
            self.end = end;
            self.all = all;
        } else {
            self.end = self.end.max(end);
            self.all |= all;
        }
    }

    /// CLIENT UNPAUSE.
    pub(crate) fn unpause(&mut self) {
        self.end = 0;
        self.all = false;
        self.wake.send_modify(|n| *n += 1);
    }

    /// FAILOVER's own write pause: on when it starts, off when it ends or aborts.
    pub(crate) fn during_failover(&mut self, on: bool) {
        if self.failover != on {
            self.failover = on;
            if !on {
                self.wake.send_modify(|n| *n += 1);
            }
        }
    }

    /// Whether a pause (of any kind) is in force: expiry and eviction wait.
    pub(crate) fn active(&self, now: u64) -> bool {
        self.failover || self.end > now
    }

    /// Until when expiry waits (Unix ms; 0: no pause).
    fn expiry_until(&self) -> u64 {
        if self.failover {
            u64::MAX
        } else {
            self.end
        }
    }

    /// Whether `spec` (called with `args` by `client`) must wait; with when the pause
    /// ends and a receiver that changes if it ends earlier.
    pub(crate) fn holds(
        &self,
        client: &Client,
        spec: Option<&CommandSpec>,
        args: &[Bytes],
    ) -> Option<(u64, watch::Receiver<u64>)> {
        // The common case costs two comparisons, no clock read.
        if (self.end == 0 && !self.failover) || client.id == 0 {
            return None;
        }
        let timed = self.end > crate::util::now_ms();
        if !timed && !self.failover {
            return None;
        }
        let end = if self.failover { u64::MAX } else { self.end };
        let held =
            (timed && self.all)
                || spec.is_some_and(|s| may_replicate(s, args))
                || (spec.is_some_and(|s| s.name == "exec")
                    && client.multi.iter().flatten().any(|q| {
                        crate::command::lookup(&q[0]).is_some_and(|s| may_replicate(s, q))
                    }));
        held.then(|| (end, self.wake.subscribe()))
    }
}

/// A write, or a command Redis flags `may_replicate` (PUBLISH, EVAL, PFCOUNT, ...).
fn may_replicate(spec: &CommandSpec, args: &[Bytes]) -> bool {
    spec.flags & WRITE != 0
        || crate::cmd::command_meta::flags(&crate::observe::full_name(spec, args)).may_replicate
}

impl crate::store::Store {
    /// Tells the databases how long a pause lasts: until then a read leaves an
    /// expired key in place (it reads as missing). Called after PAUSE and UNPAUSE.
    pub(crate) fn sync_pause(&mut self) {
        let end = self.pause.expiry_until();
        for db in &mut self.dbs {
            db.expiry_paused_until = end;
        }
    }
}
