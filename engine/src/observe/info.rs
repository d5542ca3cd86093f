//! INFO's commandstats, errorstats and latencystats sections, in Redis's format.

use crate::store::Store;
use std::fmt::Write as _;

/// Appends one of the three sections (header included) to `o`.
pub(crate) fn section(store: &Store, name: &str, o: &mut String) {
    let obs = &store.observe;
    match name {
        "commandstats" => {
            o.push_str("# Commandstats\r\n");
            for (cmd, s) in obs.sorted() {
                if s.calls == 0 && s.failed == 0 && s.rejected == 0 {
                    continue;
                }
                let per_call = if s.calls == 0 {
                    0.0
                } else {
                    s.usec as f64 / s.calls as f64
                };
                let _ = write!(
                    o,
                    "cmdstat_{cmd}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                    s.calls, s.usec, s.rejected, s.failed
                );
            }
        }
        "errorstats" => {
            o.push_str("# Errorstats\r\n");
            for (code, n) in &obs.errors {
                let _ = write!(o, "errorstat_{code}:count={n}\r\n");
            }
        }
        _ => {
            o.push_str("# Latencystats\r\n");
            let pcts = crate::config::percentiles(&store.config.latency_tracking_info_percentiles);
            for (cmd, s) in obs.sorted() {
                if s.histogram.total() == 0 {
                    continue;
                }
                let _ = write!(o, "latency_percentiles_usec_{cmd}:");
                for (i, (label, p)) in pcts.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let us = s.histogram.percentile(*p) as f64 / 1000.0;
                    let _ = write!(o, "p{label}={us:.3}");
                }
                o.push_str("\r\n");
            }
        }
    }
}
