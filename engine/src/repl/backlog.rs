//! The replication backlog: the command stream as the bytes replicas receive, kept in
//! one buffer that every replica connection reads from at its own offset (as Redis
//! 7.0's shared replication buffer).
//!
//! On a primary it is a [`PropagationSink`]: each execution unit's commands are encoded
//! in the Redis protocol, with a SELECT when the database changes, under the store's
//! lock (buffering only). On a replica the sink is idle and the link feeds the
//! primary's bytes as received ([`Backlog::feed`]), so offsets agree along a chain.
//!
//! The buffer keeps the last `repl-backlog-size` bytes for partial resyncs, and more
//! while a replica's cursor still needs them, up to the replica output buffer's hard
//! limit: a replica further behind than that is dropped (and resyncs).

use crate::keyspace::propagate::{Propagated, PropagationSink};
use crate::net::frame::{encode_command, push_num};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How far a replica may fall behind the backlog's size before it is dropped
/// (Redis's `client-output-buffer-limit replica 256mb`).
const HARD_LIMIT: usize = 256 * 1024 * 1024;

/// A replica connection reading the stream.
#[derive(Debug)]
struct Reader {
    /// Stream bytes before this offset were sent.
    cursor: u64,
    wake: Arc<Notify>,
}

#[derive(Debug)]
struct Inner {
    buf: VecDeque<u8>,
    /// The offset after the last byte (`master_repl_offset`).
    end: u64,
    /// `repl-backlog-size`.
    size: usize,
    /// The database the stream's last command ran in (`slaveseldb`); `None` forces a
    /// SELECT before the next command.
    seldb: Option<usize>,
    /// A replica: the sink ignores the local stream, the link feeds the primary's.
    proxy: bool,
    readers: HashMap<u64, Reader>,
}

/// What a replica connection gets from [`Backlog::read`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The next bytes of the stream.
    Data(Vec<u8>),
    /// Nothing new.
    Idle,
    /// The reader was dropped (too far behind, or a resync of everyone).
    Gone,
}

/// The shared stream buffer.
#[derive(Debug)]
pub(crate) struct Backlog {
    inner: Mutex<Inner>,
}

impl Backlog {
    /// An empty backlog of `size` bytes.
    pub(crate) fn new(size: usize) -> Self {
        Backlog {
            inner: Mutex::new(Inner {
                buf: VecDeque::new(),
                end: 0,
                size,
                seldb: None,
                proxy: false,
                readers: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Consistent between statements: a panic elsewhere must not stop replication.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `master_repl_offset`.
    pub(crate) fn end(&self) -> u64 {
        self.lock().end
    }

    /// Bytes held (`repl_backlog_histlen`).
    pub(crate) fn histlen(&self) -> u64 {
        let i = self.lock();
        i.buf.len().min(i.size) as u64
    }

    /// `repl-backlog-size` changed.
    pub(crate) fn set_size(&self, size: usize) {
        let mut i = self.lock();
        i.size = size.max(1);
        trim(&mut i);
    }

    /// A replica (true) or a primary: who writes the stream.
    pub(crate) fn set_proxy(&self, proxy: bool) {
        let mut i = self.lock();
        i.proxy = proxy;
        i.seldb = None;
    }

    /// The next command gets a SELECT (a new full sync, a promotion).
    pub(crate) fn force_select(&self) {
        self.lock().seldb = None;
    }

    /// Starts over at `offset` with nothing held (a replica after a full sync).
    pub(crate) fn reset(&self, offset: u64) {
        let mut i = self.lock();
        i.buf.clear();
        i.end = offset;
        i.seldb = None;
    }

    /// Appends raw stream bytes (the primary's, on a replica; a PING or GETACK).
    pub(crate) fn feed(&self, bytes: &[u8]) {
        let mut i = self.lock();
        append(&mut i, bytes);
    }

    /// Appends one command outside any database (PING, REPLCONF GETACK).
    pub(crate) fn feed_command(&self, argv: &[&[u8]]) {
        let mut out = Vec::new();
        encode_command(&mut out, argv);
        self.feed(&out);
    }

    /// Whether a replica that has the stream up to `cursor` can continue from here.
    pub(crate) fn covers(&self, cursor: u64) -> bool {
        let i = self.lock();
        cursor <= i.end && cursor >= i.end - i.buf.len() as u64
    }

    /// Registers replica `id` reading from `cursor` (which must be covered, or the
    /// current end); returns what wakes it when the stream grows.
    pub(crate) fn register(&self, id: u64, cursor: u64) -> Option<Arc<Notify>> {
        let mut i = self.lock();
        if cursor > i.end || cursor < i.end - i.buf.len() as u64 {
            return None;
        }
        let wake = Arc::new(Notify::new());
        i.readers.insert(
            id,
            Reader {
                cursor,
                wake: wake.clone(),
            },
        );
        Some(wake)
    }

    /// What wakes replica `id` when the stream grows; `None` when not registered.
    pub(crate) fn waker(&self, id: u64) -> Option<Arc<Notify>> {
        self.lock().readers.get(&id).map(|r| r.wake.clone())
    }

    /// Forgets replica `id`.
    pub(crate) fn unregister(&self, id: u64) {
        let mut i = self.lock();
        i.readers.remove(&id);
        trim(&mut i);
    }

    /// Drops every reader (their connections close and the replicas resync).
    pub(crate) fn drop_readers(&self) {
        let mut i = self.lock();
        for (_, r) in i.readers.drain() {
            r.wake.notify_one();
        }
        trim(&mut i);
    }

    /// Up to `max` bytes of the stream for replica `id`, from its cursor on.
    pub(crate) fn read(&self, id: u64, max: usize) -> Read {
        let mut i = self.lock();
        let start = i.end - i.buf.len() as u64;
        let Some(cursor) = i.readers.get(&id).map(|r| r.cursor) else {
            return Read::Gone;
        };
        if cursor >= i.end {
            return Read::Idle;
        }
        let from = (cursor - start) as usize;
        let n = (i.buf.len() - from).min(max);
        let (a, b) = i.buf.as_slices();
        let mut out = Vec::with_capacity(n);
        if from < a.len() {
            let end = (from + n).min(a.len());
            out.extend_from_slice(&a[from..end]);
            out.extend_from_slice(&b[..from + n - end]);
        } else {
            let f = from - a.len();
            out.extend_from_slice(&b[f..f + n]);
        }
        if let Some(r) = i.readers.get_mut(&id) {
            r.cursor += n as u64;
        }
        trim(&mut i);
        Read::Data(out)
    }
}

fn append(i: &mut Inner, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    i.buf.extend(bytes);
    i.end += bytes.len() as u64;
    for r in i.readers.values() {
        r.wake.notify_one();
    }
    trim(i);
}

/// Drops what no reader needs beyond the backlog's size; readers more than the hard
/// limit behind are dropped first.
fn trim(i: &mut Inner) {
    if i.buf.len() <= i.size {
        return;
    }
    let start = i.end - i.buf.len() as u64;
    if i.buf.len() > i.size + HARD_LIMIT {
        let floor = i.end - (i.size + HARD_LIMIT) as u64;
        let behind: Vec<u64> = i
            .readers
            .iter()
            .filter(|(_, r)| r.cursor < floor)
            .map(|(id, _)| *id)
            .collect();
        for id in behind {
            if let Some(r) = i.readers.remove(&id) {
                tracing::warn!(client = id, "replica too far behind: dropped");
                r.wake.notify_one();
            }
        }
    }
    let keep_from = i.readers.values().map(|r| r.cursor).min().unwrap_or(i.end);
    let by_size = i.end - i.size as u64;
    let cut = by_size.min(keep_from).max(start);
    let n = (cut - start) as usize;
    if n > 0 {
        i.buf.drain(..n);
        if i.buf.capacity() > 4 * i.buf.len().max(i.size) {
            i.buf.shrink_to(i.buf.len().max(i.size));
        }
    }
}

impl PropagationSink for Backlog {
    fn propagate(&self, ops: &[Propagated]) {
        let mut i = self.lock();
        if i.proxy {
            return;
        }
        let mut out = Vec::with_capacity(64 * ops.len());
        for op in ops {
            if i.seldb != Some(op.db) {
                let mut db = Vec::with_capacity(4);
                push_num(&mut db, op.db as u64);
                encode_command(&mut out, &[b"SELECT".as_slice(), &db]);
                i.seldb = Some(op.db);
            }
            encode_command(&mut out, &op.argv);
        }
        append(&mut i, &out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn op(db: usize, s: &str) -> Propagated {
        Propagated {
            db,
            argv: s
                .split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect(),
        }
    }

    #[test]
    fn selects_and_offsets() {
        let b = Backlog::new(1024);
        b.propagate(&[op(0, "SET a 1"), op(2, "DEL a")]);
        let want = b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*2\r\n$3\r\nDEL\r\n$1\r\na\r\n";
        assert_eq!(b.end(), want.len() as u64);
        assert!(b.register(1, 0).is_some());
        assert_eq!(b.read(1, 1 << 20), Read::Data(want.to_vec()));
        assert_eq!(b.read(1, 1 << 20), Read::Idle);
    }

    #[test]
    fn keeps_what_a_reader_needs_and_trims_the_rest() {
        let b = Backlog::new(10);
        b.feed(&[b'x'; 8]);
        assert!(b.register(7, 8).is_some());
        b.feed(&[b'y'; 30]);
        // The reader at 8 still needs everything after it.
        assert!(b.covers(8) && !b.covers(7));
        assert_eq!(b.read(7, 5), Read::Data(vec![b'y'; 5]));
        b.unregister(7);
        assert_eq!(b.histlen(), 10);
        assert!(!b.covers(27) && b.covers(28) && b.covers(38) && !b.covers(39));
        assert!(b.register(8, 20).is_none());
    }
}
