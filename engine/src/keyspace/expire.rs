//! Active expiry (Redis's `activeExpireCycle`): keys with a TTL are reclaimed even
//! when no client touches them. Lazy expiry is in [`super::db::Db`]'s lookups; both
//! announce the keys they remove through the write path.

use crate::store::Store;
use std::time::{Duration, Instant};

impl Store {
    /// Runs one active expiry pass over every database, as Redis's `activeExpireCycle`:
    /// sample 20 volatile keys per database, repeat while more than a quarter expired,
    /// within a time budget. Also drops lease tokens past their interval.
    pub(crate) fn active_expire_cycle(&mut self, budget: Duration) {
        self.now = crate::util::now_ms();
        // Nothing changes while clients are paused (CLIENT PAUSE).
        if !self.active_expire || self.pause.active(self.now) {
            return;
        }
        let start = Instant::now();
        // `active-expire-effort` 1..10: more keys per sample (Redis's 20 + 5 per step).
        let per_loop = 20 + 5 * (self.config.active_expire_effort.clamp(1, 10) as usize - 1);
        for db in 0..self.dbs.len() {
            loop {
                let (sampled, expired) = self.dbs[db].expire_sample(per_loop, self.now);
                if sampled == 0 || expired * 4 <= sampled || start.elapsed() > budget {
                    break;
                }
            }
        }
        self.leases.sweep(self.now, self.config.lease_interval_ms);
        for db in &mut self.dbs {
            db.resize_tables();
        }
        self.flush_expired();
    }
}
