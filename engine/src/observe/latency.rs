//! The latency monitor (`latency.c`): for each event (`command`, `fast-command`),
//! the last 160 seconds that had a sample over `latency-monitor-threshold`.

use std::collections::{BTreeMap, VecDeque};

/// Samples kept per event (`LATENCY_TS_LEN`).
const KEEP: usize = 160;

/// One event's samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Series {
    /// (Unix seconds, ms), oldest first; one per second, the worst of that second.
    pub(crate) samples: VecDeque<(u64, u64)>,
    /// The worst ever.
    pub(crate) max: u64,
}

/// Every event's series.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    pub(crate) events: BTreeMap<&'static str, Series>,
}

impl Latency {
    /// `latencyAddSample`: a second already sampled keeps its worst value.
    pub(crate) fn add(&mut self, event: &'static str, ms: u64, now: u64) {
        let s = self.events.entry(event).or_default();
        s.max = s.max.max(ms);
        if let Some(last) = s.samples.back_mut() {
            if last.0 == now {
                last.1 = last.1.max(ms);
                return;
            }
        }
        s.samples.push_back((now, ms));
        if s.samples.len() > KEEP {
            s.samples.pop_front();
        }
    }

    /// LATENCY RESET: the named events (all when none); how many were reset.
    pub(crate) fn reset(&mut self, names: &[String]) -> usize {
        if names.is_empty() {
            let n = self.events.len();
            self.events.clear();
            return n;
        }
        names
            .iter()
            .filter(|n| self.events.remove(n.as_str()).is_some())
            .count()
    }
}
