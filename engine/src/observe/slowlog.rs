//! The slow log (`slowlog.c`): commands that took at least `slowlog-log-slower-than`
//! microseconds, newest first, at most `slowlog-max-len` of them.

use crate::client::Client;
use crate::net::reply::Reply;
use bytes::Bytes;
use std::collections::VecDeque;

/// Most arguments an entry keeps; the last one kept says how many more there were.
const MAX_ARGC: usize = 32;
/// Longest argument an entry keeps, in bytes.
const MAX_STRING: usize = 128;

/// One logged command.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    id: u64,
    /// Unix seconds.
    time: u64,
    /// Microseconds.
    duration: u64,
    args: Vec<Bytes>,
    addr: String,
    name: Bytes,
}

/// The log.
#[derive(Debug, Default)]
pub(crate) struct SlowLog {
    /// Newest first.
    entries: VecDeque<Entry>,
    next_id: u64,
}

impl SlowLog {
    /// Logs a command, as Redis's `slowlogCreateEntry` trims it: at most 32 arguments
    /// and 128 bytes of each, AUTH's (and HELLO's AUTH) secrets redacted.
    pub(crate) fn push(&mut self, client: &Client, args: &[Bytes], us: u64, time: u64, max: usize) {
        let argc = args.len().min(MAX_ARGC);
        let redact = redacted(args);
        let mut kept = Vec::with_capacity(argc);
        for (i, a) in args.iter().take(argc).enumerate() {
            if argc != args.len() && i == argc - 1 {
                let more = args.len() - argc + 1;
                kept.push(Bytes::from(format!("... ({more} more arguments)")));
            } else if redact.contains(&i) {
                kept.push(Bytes::from_static(b"(redacted)"));
            } else if a.len() > MAX_STRING {
                let mut s = a[..MAX_STRING].to_vec();
                s.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes(),
                );
                kept.push(Bytes::from(s));
            } else {
                kept.push(a.clone());
            }
        }
        self.entries.push_front(Entry {
            id: self.next_id,
            time,
            duration: us,
            args: kept,
            addr: client.addr.clone(),
            name: client.name.clone().unwrap_or_default(),
        });
        self.next_id += 1;
        self.trim(max);
    }

    /// Keeps the newest `max` entries.
    pub(crate) fn trim(&mut self, max: usize) {
        self.entries.truncate(max);
    }

    /// SLOWLOG LEN.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// SLOWLOG RESET (ids go on counting, as in Redis).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// SLOWLOG GET: the newest `n` entries.
    pub(crate) fn get(&self, n: usize) -> Reply {
        Reply::Array(
            self.entries
                .iter()
                .take(n)
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Int(e.id as i64),
                        Reply::Int(e.time as i64),
                        Reply::Int(e.duration as i64),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::Bulk(Bytes::from(e.addr.clone())),
                        Reply::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }
}

/// Positions of arguments Redis replaces with `(redacted)`: AUTH's, and the user and
/// password after HELLO's AUTH.
fn redacted(args: &[Bytes]) -> Vec<usize> {
    let name = crate::util::lower(&args[0]);
    match name.as_str() {
        "auth" => (1..args.len()).collect(),
        "hello" => args
            .iter()
            .position(|a| crate::util::eq_ic(a, "auth"))
            .map(|i| vec![i + 1, i + 2])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}
