//! LATENCY (`latency.c`): LATEST | HISTORY | RESET | DOCTOR | GRAPH | HISTOGRAM |
//! HELP over the latency monitor and the per-command histograms
//! (`crate::observe`).

use super::subcommand::{help_reply, subcommand};
use crate::command::{CommandSpec, Ctx, LOADING, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::observe::histogram::Histogram;
use crate::observe::latency::Series;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "latency",
        -2,
        LOADING | STALE,
        (0, 0, 0),
        latency,
    )]
}

const SUBS: &[(&str, i32)] = &[
    ("doctor", 2),
    ("graph", 3),
    ("history", 3),
    ("latest", 2),
    ("reset", -2),
    ("histogram", -2),
    ("help", 2),
];

fn latency(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now() / 1000;
    match subcommand("latency", SUBS, args)? {
        "latest" => Ok(Reply::Array(
            ctx.store
                .observe
                .latency
                .events
                .iter()
                .map(|(name, s)| {
                    let (t, ms) = s.samples.back().copied().unwrap_or((0, 0));
                    Reply::Array(vec![
                        Reply::text(*name),
                        Reply::Int(t as i64),
                        Reply::Int(ms as i64),
                        Reply::Int(s.max as i64),
                    ])
                })
                .collect(),
        )),
        "history" => {
            let name = String::from_utf8_lossy(&args[2]);
            let samples = ctx
                .store
                .observe
                .latency
                .events
                .get(name.as_ref())
                .map(|s| s.samples.iter().copied().collect::<Vec<_>>())
                .unwrap_or_default();
            Ok(Reply::Array(
                samples
                    .into_iter()
                    .map(|(t, ms)| Reply::Array(vec![Reply::Int(t as i64), Reply::Int(ms as i64)]))
                    .collect(),
            ))
        }
        "graph" => {
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            match ctx.store.observe.latency.events.get(name.as_str()) {
                Some(s) => Ok(Reply::Verbatim(Bytes::from(graph(&name, s, now)))),
                None => Err(CmdError::err(format!(
                    "No samples available for event '{name}'"
                ))),
            }
        }
        "reset" => {
            let names: Vec<String> = args[2..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Ok(Reply::Int(ctx.store.observe.latency.reset(&names) as i64))
        }
        "doctor" => Ok(Reply::Verbatim(Bytes::from(doctor(ctx, now)))),
        "histogram" => Ok(histogram(ctx, &args[2..])),
        _ => Ok(help_reply(
            "latency",
            &[
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "GRAPH <event>",
                "    Return an ASCII latency graph for the <event> class.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
            ],
        )),
    }
}

/// One command's histogram: `{calls, histogram_usec: {us: cumulative count}}`.
fn cdf(h: &Histogram) -> Reply {
    Reply::Map(vec![
        (Reply::text("calls"), Reply::Int(h.total() as i64)),
        (
            Reply::text("histogram_usec"),
            Reply::Map(
                h.log_view()
                    .into_iter()
                    .map(|(us, n)| (Reply::Int(us as i64), Reply::Int(n as i64)))
                    .collect(),
            ),
        ),
    ])
}

/// LATENCY HISTOGRAM: the named commands (a container's subcommands with it), or
/// every command that ran.
fn histogram(ctx: &Ctx, names: &[Bytes]) -> Reply {
    let stats: std::collections::BTreeMap<&str, _> =
        ctx.store.observe.sorted().into_iter().collect();
    let mut out = Vec::new();
    let mut add = |name: &str| {
        if let Some(s) = stats.get(name).copied() {
            if s.histogram.total() > 0 && !out.iter().any(|(n, _): &(String, Reply)| n == name) {
                out.push((name.to_string(), cdf(&s.histogram)));
            }
        }
    };
    if names.is_empty() {
        for name in stats.keys().copied() {
            add(name);
        }
    } else {
        for n in names {
            let name = crate::util::lower(n);
            add(&name);
            let prefix = format!("{name}|");
            for sub in stats.keys().copied().filter(|k| k.starts_with(&prefix)) {
                add(sub);
            }
        }
    }
    Reply::Map(out.into_iter().map(|(n, r)| (Reply::text(n), r)).collect())
}

/// Redis's `analyzeLatencyForEvent`: samples, average, mean deviation, period.
fn analyze(s: &Series, now: u64) -> (u64, u64, u64, u64) {
    let n = s.samples.len() as u64;
    if n == 0 {
        return (0, 0, 0, 0);
    }
    let sum: u64 = s.samples.iter().map(|x| x.1).sum();
    let avg = sum / n;
    let oldest = s.samples.iter().map(|x| x.0).min().unwrap_or(now);
    let period = now.saturating_sub(oldest).max(1);
    let mad = s
        .samples
        .iter()
        .map(|x| (avg as i64 - x.1 as i64).unsigned_abs())
        .sum::<u64>()
        / n;
    (n, avg, mad, period)
}

/// LATENCY DOCTOR's report (`createLatencyReport`), for the events the engine
/// samples (`command`, `fast-command`).
fn doctor(ctx: &Ctx, now: u64) -> String {
    let cfg = &ctx.store.config;
    let events = &ctx.store.observe.latency.events;
    let threshold = cfg.latency_monitor_threshold.max(0) as u64;
    if events.is_empty() && threshold == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n".into();
    }
    if events.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n".into();
    }
    let mut r = String::from("Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n");
    let (mut slow_enable, mut slow_tune, mut slow_inspect, mut sched, mut large) =
        (false, false, false, false, false);
    for (i, (name, s)) in events.iter().enumerate() {
        let (n, avg, mad, period) = analyze(s, now);
        r.push_str(&format!(
            "{}. {}: {} latency spikes (average {}ms, mean deviation {}ms, period {:.2} sec). Worst all time event {}ms.",
            i + 1,
            name,
            n,
            avg,
            mad,
            period as f64 / n as f64,
            s.max
        ));
        if *name == "command" {
            if cfg.slowlog_log_slower_than == 0 {
                slow_enable = true;
            } else if cfg.slowlog_log_slower_than / 1000 > threshold as i64 {
                slow_tune = true;
            }
            slow_inspect = true;
            large = true;
        }
        if *name == "fast-command" {
            sched = true;
        }
        r.push('\n');
    }
    r.push_str("\nI have a few advices for you:\n\n");
    if slow_enable {
        r.push_str(&format!("- There are latency issues with potentially slow commands you are using. Try to enable the Slow Log Redis feature using the command 'CONFIG SET slowlog-log-slower-than {}'. If the Slow log is disabled Redis is not able to log slow commands execution for you.\n", threshold * 1000));
    }
    if slow_tune {
        r.push_str(&format!("- Your current Slow Log configuration only logs events that are slower than your configured latency monitor threshold. Please use 'CONFIG SET slowlog-log-slower-than {}'.\n", threshold * 1000));
    }
    if slow_inspect {
        r.push_str("- Check your Slow Log to understand what are the commands you are running which are too slow to execute. Please check https://redis.io/commands/slowlog for more information.\n");
    }
    if sched {
        r.push_str("- The system is slow to execute Redis code paths not containing system calls. This usually means the system does not provide Redis CPU time to run for long periods. You should try to:\n  1) Lower the system load.\n  2) Use a computer / VM just for Redis if you are running other software in the same system.\n  3) Check if you have a \"noisy neighbour\" problem.\n  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic latency in your system.\n  5) Check if the problem is allocator-related by recompiling Redis with MALLOC=libc, if you are using Jemalloc. However this may create fragmentation problems.\n");
    }
    if large {
        r.push_str("- Deleting, expiring or evicting (because of maxmemory policy) large objects is a blocking operation. If you have very large objects that are often deleted, expired, or evicted, try to fragment those objects into multiple smaller objects.\n");
    }
    r
}

/// LATENCY GRAPH (`latencyCommandGenSparkeline`): the header, then Redis's filled
/// sparkline of the samples (4 rows, 80 columns per block), each labelled with how
/// long ago it was, written downwards.
fn graph(name: &str, s: &Series, now: u64) -> String {
    let min = s.samples.iter().map(|x| x.1).min().unwrap_or(0);
    let max = s.samples.iter().map(|x| x.1).max().unwrap_or(0);
    let mut out = format!(
        "{name} - high {max} ms, low {min} ms (all time high {} ms)\n",
        s.max
    );
    out.push_str(&"-".repeat(80));
    out.push('\n');
    let samples: Vec<(f64, String)> = s
        .samples
        .iter()
        .map(|&(t, ms)| {
            let ago = now.saturating_sub(t);
            let label = match ago {
                0..=59 => format!("{ago}s"),
                60..=3599 => format!("{}m", ago / 60),
                3600..=86399 => format!("{}h", ago / 3600),
                _ => format!("{}d", ago / 86400),
            };
            (ms as f64, label)
        })
        .collect();
    for (i, chunk) in samples.chunks(80).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        sparkline(&mut out, chunk, min as f64, max as f64);
    }
    out
}

/// Redis's `sparklineRenderRange` with `SPARKLINE_FILL` over 4 rows.
fn sparkline(out: &mut String, samples: &[(f64, String)], min: f64, max: f64) {
    const ROWS: i64 = 4;
    const CHARSET: &[u8] = b"_o#";
    let steps = CHARSET.len() as i64 * ROWS;
    let relmax = if max - min == 0.0 { 1.0 } else { max - min };
    let mut row = 0i64;
    loop {
        let mut chars = vec![b' '; samples.len()];
        let mut more = false;
        for (j, (value, label)) in samples.iter().enumerate() {
            let step = ((((value - min) * steps as f64) as i64) as f64 / relmax) as i64;
            let step = step.clamp(0, steps - 1);
            if row < ROWS {
                more = true;
                let idx = step - (ROWS - row - 1) * CHARSET.len() as i64;
                if (0..CHARSET.len() as i64).contains(&idx) {
                    chars[j] = CHARSET[idx as usize];
                } else if idx >= CHARSET.len() as i64 {
                    chars[j] = b'|';
                }
            } else {
                // One blank row between the graph and the labels.
                if row - ROWS < 1 {
                    more = true;
                    break;
                }
                let at = (row - ROWS - 1) as usize;
                if let Some(&c) = label.as_bytes().get(at) {
                    more = true;
                    chars[j] = c;
                }
            }
        }
        if !more {
            break;
        }
        row += 1;
        out.push_str(&String::from_utf8_lossy(&chars));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_as_redis_draws_it() {
        let s = Series {
            samples: [(97, 23), (99, 50), (100, 13)].into_iter().collect(),
            max: 50,
        };
        // Taken from redis-server 7.0.15's LATENCY GRAPH of the same samples.
        let expected = "command - high 50 ms, low 13 ms (all time high 50 ms)\n".to_string()
            + &"-".repeat(80)
            + "\n # \n | \n_| \n||_\n   \n310\nsss\n";
        assert_eq!(graph("command", &s, 100), expected);
    }
}
