//! What the server records about the commands it runs, as Redis does: per-command
//! and per-error counters (INFO commandstats and errorstats), latency histograms
//! (INFO latencystats, LATENCY HISTOGRAM), the slow log, LATENCY's event samples and
//! the feed of MONITOR clients.
//!
//! The dispatcher reports each call once, after it ran ([`call_done`]), and each
//! command refused before running ([`rejected`]); the commands of `cmd/` (SLOWLOG,
//! LATENCY, MONITOR, INFO, CONFIG RESETSTAT) read and reset what is here. Data flows
//! one way: nothing here calls back into command handlers.

pub(crate) mod histogram;
pub(crate) mod info;
pub(crate) mod latency;
pub(crate) mod monitor;
pub(crate) mod slowlog;

use crate::client::Client;
use crate::command::CommandSpec;
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// Top-level commands' slots in [`Observe::commands`] by their table name: hashed
/// with the command table's cheap hasher, no allocation per call.
type ByName =
    HashMap<&'static str, usize, std::hash::BuildHasherDefault<crate::command::NameHasher>>;

/// Counters of one command (or `container|subcommand`), INFO commandstats' fields.
#[derive(Debug, Default, Clone)]
pub(crate) struct CommandStat {
    pub(crate) calls: u64,
    pub(crate) usec: u64,
    pub(crate) rejected: u64,
    pub(crate) failed: u64,
    /// Durations in nanoseconds (`latency-tracking`).
    pub(crate) histogram: histogram::Histogram,
}

/// Everything recorded; one per store.
#[derive(Debug, Default)]
pub(crate) struct Observe {
    /// Top-level commands' counters (`get`), in the order first called.
    commands: Vec<(&'static str, CommandStat)>,
    /// Each command's slot in `commands`.
    slots: ByName,
    /// The name counted last (its address and length: a `'static` name's address is
    /// never another's) and its slot. A pipeline repeats one command, whose counters
    /// are then found without hashing its name.
    last: Option<(usize, usize, usize)>,
    /// Subcommands of containers, by full name (`config|get`).
    subcommands: HashMap<String, CommandStat>,
    /// Error replies by their first word (`ERR`, `WRONGTYPE`), INFO errorstats.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Every error reply sent (INFO `total_error_replies`).
    pub(crate) error_replies: u64,
    pub(crate) slowlog: slowlog::SlowLog,
    pub(crate) latency: latency::Latency,
    /// Clients in MONITOR mode, by id.
    pub(crate) monitors: Vec<u64>,
}

impl Observe {
    /// CONFIG RESETSTAT: the counters and histograms (not the slow log nor the
    /// latency samples, which have their own RESET).
    pub(crate) fn reset_stats(&mut self) {
        self.commands.clear();
        self.slots.clear();
        self.last = None;
        self.subcommands.clear();
        self.errors.clear();
        self.error_replies = 0;
    }

    /// Counts an error reply under its code (the text's first word).
    fn count_error(&mut self, text: &str) {
        self.error_replies += 1;
        let code = text.split(' ').next().unwrap_or("ERR");
        // Redis keeps at most 128 codes; beyond, new ones are not tracked.
        if self.errors.len() >= 128 && !self.errors.contains_key(code) {
            return;
        }
        *self.errors.entry(code.to_string()).or_default() += 1;
    }

    /// The counters of a call: its subcommand's for a container, else its command's.
    fn stat(&mut self, spec: &CommandSpec, args: &[Bytes]) -> &mut CommandStat {
        if spec.flags & crate::command::LABEL_SUB != 0 && args.len() > 1 {
            let name = full_name(spec, args);
            if name.contains('|') {
                return self.subcommands.entry(name).or_default();
            }
        }
        let name = (spec.name.as_ptr() as usize, spec.name.len());
        let slot = match self.last {
            Some((at, len, slot)) if (at, len) == name => slot,
            _ => {
                let next = self.commands.len();
                let slot = *self.slots.entry(spec.name).or_insert(next);
                if slot == next {
                    self.commands.push((spec.name, CommandStat::default()));
                }
                self.last = Some((name.0, name.1, slot));
                slot
            }
        };
        &mut self.commands[slot].1
    }

    /// Every command's and subcommand's counters, in name order (as INFO prints them).
    pub(crate) fn sorted(&self) -> Vec<(&str, &CommandStat)> {
        let mut v: Vec<(&str, &CommandStat)> = self
            .commands
            .iter()
            .map(|(n, s)| (*n, s))
            .chain(self.subcommands.iter().map(|(n, s)| (n.as_str(), s)))
            .collect();
        v.sort_by_key(|(n, _)| *n);
        v
    }
}

/// The name commandstats and the slow log know a call by: `container|sub` for the
/// subcommands of a container (when the subcommand exists), else the command's name.
pub(crate) fn full_name(spec: &CommandSpec, args: &[Bytes]) -> String {
    match args.get(1) {
        Some(sub) if spec.flags & crate::command::LABEL_SUB != 0 => {
            let name = format!("{}|{}", spec.name, crate::util::lower(sub));
            if crate::cmd::command_meta::has_subcommand(&name) {
                name
            } else {
                spec.name.to_string()
            }
        }
        _ => spec.name.to_string(),
    }
}

/// After a handler ran (`started_ns`, Unix ns, before it): counts the call, its error, its
/// duration, and logs it to the slow log, the latency monitor and MONITOR clients.
/// A call that blocked the client is recorded when it is served instead, as Redis's
/// `updateStatsOnUnblock`, and never shown to MONITOR (Redis 7.0 does not either).
pub(crate) fn call_done(
    store: &mut Store,
    client: &Client,
    spec: &CommandSpec,
    args: &[Bytes],
    started_ns: u64,
    reply: &Reply,
) {
    if client.block.is_some() {
        return;
    }
    // Wall-clock time, as Redis's `ustime()` without a hardware clock; a clock set
    // back counts as no time.
    let ns = crate::util::now_ns().saturating_sub(started_ns);
    let us = ns / 1000;
    let tracking = store.config.latency_tracking;
    let obs = &mut store.observe;
    let failed = matches!(reply, Reply::Error(_));
    if let Reply::Error(e) = reply {
        obs.count_error(e);
    }
    let st = obs.stat(spec, args);
    st.calls += 1;
    st.usec += us;
    if failed {
        st.failed += 1;
    }
    if tracking {
        st.histogram.record(ns);
    }
    let threshold = store.config.latency_monitor_threshold;
    if threshold > 0 && (us / 1000) as i64 >= threshold {
        let event = if spec.flags & crate::command::FAST != 0 {
            "fast-command"
        } else {
            "command"
        };
        store
            .observe
            .latency
            .add(event, us / 1000, store.now / 1000);
    }
    // The metadata (skip flags) only when something would be logged.
    let slower = store.config.slowlog_log_slower_than;
    let slow = slower >= 0 && us as i64 >= slower;
    let monitored = !store.observe.monitors.is_empty() && store.blocking.serving.is_none();
    if !slow && !monitored {
        return;
    }
    let meta = crate::cmd::command_meta::flags(&full_name(spec, args));
    if slow && !meta.skip_slowlog {
        let max = store.config.slowlog_max_len as usize;
        store
            .observe
            .slowlog
            .push(client, args, us, store.now / 1000, max);
    }
    if monitored && !meta.skip_monitor && !meta.admin {
        monitor::feed(store, client, args);
    }
}

/// A blocked command released without being served: its timeout passed, or CLIENT
/// UNBLOCK (`error` is the reply then, if it is one). Counted as a call, as Redis
/// does.
pub(crate) fn unblocked(store: &mut Store, args: &[Bytes], error: Option<&str>) {
    let Some(spec) = args.first().and_then(|n| crate::command::lookup(n)) else {
        return;
    };
    store.stats.commands += 1;
    let obs = &mut store.observe;
    if let Some(e) = error {
        obs.count_error(e);
    }
    // No latency sample: redis-server 7.0.15 records none for these either.
    let st = obs.stat(spec, args);
    st.calls += 1;
    if error.is_some() {
        st.failed += 1;
    }
}

/// A command refused before running (arity, auth, OOM, ...): Redis's `rejected_calls`
/// and the error's count. An unknown command has no row: only its error counts.
pub(crate) fn rejected(store: &mut Store, spec: Option<&CommandSpec>, args: &[Bytes], e: &str) {
    let obs = &mut store.observe;
    obs.count_error(e);
    if let Some(spec) = spec {
        obs.stat(spec, args).rejected += 1;
    }
}

impl Store {
    /// After CONFIG SET slowlog-max-len: drops the oldest entries over the length.
    pub(crate) fn trim_slowlog(&mut self) {
        let max = self.config.slowlog_max_len as usize;
        self.observe.slowlog.trim(max);
    }
}
