//! Connected clients: one record per connection, held in the store's registry.
//!
//! The record is what the connection works with (selected database, protocol, auth,
//! MULTI queue, subscriptions) and what CLIENT LIST, CLIENT KILL and INFO read. A
//! connection checks its record out of the registry for the batch of requests it runs
//! under the store lock and checks it back in before releasing the lock, so whoever
//! takes the lock next sees every record in the registry, up to date, with nothing
//! copied after each command. A record that is checked out belongs to the client
//! running the current command: CLIENT LIST adds it from the command's context.

use crate::net::reply::Reply;
use bytes::Bytes;
use indexmap::IndexSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A handler's request to block the client until a key is ready or the timeout passes.
#[derive(Debug, Clone)]
pub(crate) struct BlockRequest {
    /// Keys to wait on, in the selected database.
    pub(crate) keys: Vec<Bytes>,
    /// `None` waits forever.
    pub(crate) timeout: Option<Duration>,
    /// What the client gets if the timeout passes (a null of the command's kind).
    pub(crate) timeout_reply: Reply,
    /// The type the key must hold for the client to be served.
    pub(crate) kind: crate::blocking::BlockKind,
    /// The command to re-run when a key is ready, when it differs from the one called
    /// (XREAD's `$` resolved to the ID it stood for); `None` re-runs the call as it was.
    pub(crate) rerun: Option<Vec<Bytes>>,
    /// The reply that releases the client when its key no longer holds the type
    /// (XREADGROUP's `UNBLOCKED`); `None` keeps it waiting.
    pub(crate) gone: Option<Reply>,
}

/// A connection's buffers as CLIENT LIST/INFO report them (`qbuf`, `qbuf-free`,
/// `argv-mem`, `rbs`, `rbp`, `obl`), measured by the connection itself: when a batch
/// of requests starts, before each command, and when the batch ends, so another
/// client's CLIENT LIST reads what the connection held when it last let go of the lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BufStats {
    /// Bytes received and not yet run (a partial or pipelined request).
    pub(crate) qbuf: usize,
    /// Room left in the query buffer before it must grow.
    pub(crate) qbuf_free: usize,
    /// Bytes of the arguments held: the running or blocked command's, or the complete
    /// arguments of a request still arriving.
    pub(crate) argv_mem: usize,
    /// The reply buffer's size.
    pub(crate) rbs: usize,
    /// The most the reply buffer held in the current 5-second period.
    pub(crate) rbp: usize,
    /// Bytes of replies in the buffer, not yet written to the socket.
    pub(crate) obl: usize,
}

/// One client: a connection's state, or an in-process caller's for one call.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) db: usize,
    /// Protocol version: 2 or 3.
    pub(crate) resp: u8,
    pub(crate) name: Option<Bytes>,
    pub(crate) authenticated: bool,
    /// Commands queued by MULTI; `None` outside a transaction.
    pub(crate) multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC must abort.
    pub(crate) multi_error: bool,
    /// WATCHed keys: (db, key, whether it was already expired when watched).
    pub(crate) watched: Vec<(usize, Bytes, bool)>,
    pub(crate) channels: IndexSet<Bytes>,
    pub(crate) patterns: IndexSet<Bytes>,
    /// Set while EXEC runs: blocking commands then answer at once instead of blocking.
    pub(crate) no_block: bool,
    /// Set by a blocking command that found nothing to serve.
    pub(crate) block: Option<BlockRequest>,
    /// Close the connection once the current reply is written (QUIT, protocol errors).
    pub(crate) close_after_reply: bool,
    /// CLIENT NO-EVICT.
    pub(crate) no_evict: bool,
    /// In MONITOR mode (CLIENT LIST flag `O`).
    pub(crate) monitor: bool,
    /// CLIENT REPLY OFF: no replies at all.
    pub(crate) reply_off: bool,
    /// CLIENT REPLY SKIP: no reply to this command (set from `reply_skip_next` as a
    /// command starts).
    pub(crate) reply_skip: bool,
    /// CLIENT REPLY SKIP was the last command: skip the next reply.
    pub(crate) reply_skip_next: bool,
    /// The remote address, as CLIENT LIST shows it.
    pub(crate) addr: String,
    /// The local address.
    pub(crate) laddr: String,
    /// When the connection was accepted (CLIENT LIST `age=`).
    pub(crate) created: Instant,
    /// When the client last ran a command (CLIENT LIST `idle=`).
    pub(crate) last_active: Instant,
    /// CLIENT LIST `cmd=`: the command being run or last run (`client|list`);
    /// empty before the first (shown as `NULL`).
    pub(crate) last_cmd: String,
    /// Wakes the connection so it closes (CLIENT KILL); `None` for in-process callers.
    pub(crate) kill: Option<Arc<Notify>>,
    /// Set by CLIENT KILL: the record stays until its connection has cleaned up
    /// (unwatched, unsubscribed), but no longer shows nor counts as connected.
    pub(crate) killed: bool,
    /// The connection's pending output (CLIENT LIST `omem`, output buffer limits);
    /// `None` for in-process callers.
    pub(crate) output: Option<crate::outbuf::Output>,
    /// The connection's buffers, for CLIENT LIST.
    pub(crate) bufs: BufStats,
    /// A replica connection (after PSYNC/SYNC): CLIENT LIST flag `S`.
    pub(crate) replica: bool,
    /// The master client of a replica, applying the primary's stream: writes pass
    /// `replica-read-only` and the other replica gates.
    pub(crate) master: bool,
    /// A script's own client (Redis's `CLIENT_SCRIPT`): MONITOR shows it as `lua`.
    pub(crate) script: bool,
    /// Set by PSYNC/SYNC: after the reply the connection is handed to the
    /// replication code ([`crate::repl::primary::serve`]).
    pub(crate) handoff: Option<crate::repl::primary::Plan>,
}

impl Client {
    /// A new connection's state.
    pub(crate) fn new(id: u64, addr: String, laddr: String, authenticated: bool) -> Self {
        let now = Instant::now();
        Client {
            id,
            db: 0,
            resp: 2,
            name: None,
            authenticated,
            multi: None,
            multi_error: false,
            watched: Vec::new(),
            channels: IndexSet::new(),
            patterns: IndexSet::new(),
            no_block: false,
            block: None,
            close_after_reply: false,
            no_evict: false,
            monitor: false,
            reply_off: false,
            reply_skip: false,
            reply_skip_next: false,
            addr,
            laddr,
            created: now,
            last_active: now,
            last_cmd: String::new(),
            kill: None,
            killed: false,
            output: None,
            bufs: BufStats::default(),
            replica: false,
            master: false,
            script: false,
            handoff: None,
        }
    }

    /// A caller that is not a connection (the embedding process, tests): id 0,
    /// authenticated, RESP3, never blocks, not in the registry.
    pub(crate) fn in_process(db: usize) -> Self {
        let mut c = Client::new(0, String::new(), String::new(), true);
        c.db = db;
        c.resp = 3;
        c.no_block = true;
        c
    }

    /// A registry-less client for unit tests.
    #[cfg(test)]
    pub(crate) fn detached(id: u64, db: usize, resp: u8) -> Self {
        let mut c = Client::new(id, String::new(), String::new(), true);
        c.db = db;
        c.resp = resp;
        c
    }

    /// Bytes held by the MULTI queue (`multi-mem`): the queued arguments plus each
    /// queued command's vector, as Redis's `mstate.argv_len_sums` and `multiCmd`s.
    pub(crate) fn multi_mem(&self) -> usize {
        self.multi.as_ref().map_or(0, |q| {
            q.iter()
                .map(|a| {
                    std::mem::size_of::<Vec<Bytes>>()
                        + a.capacity() * std::mem::size_of::<Bytes>()
                        + a.iter().map(|b| b.len()).sum::<usize>()
                })
                .sum::<usize>()
                + q.capacity() * std::mem::size_of::<Vec<Bytes>>()
        })
    }

    /// What the client costs in memory (`tot-mem`), as Redis's `getClientMemoryUsage`:
    /// the record, its query and reply buffers, arguments, MULTI queue, watched keys
    /// and subscriptions.
    pub(crate) fn total_mem(&self) -> usize {
        let b = &self.bufs;
        std::mem::size_of::<Client>()
            + b.qbuf
            + b.qbuf_free
            + b.argv_mem
            + self.multi_mem()
            + b.rbs
            + self.addr.capacity()
            + self.laddr.capacity()
            + self.last_cmd.capacity()
            + self
                .watched
                .iter()
                .map(|(_, k, _)| k.len() + 16)
                .sum::<usize>()
            + self
                .channels
                .iter()
                .chain(self.patterns.iter())
                .map(|c| c.len() + 16)
                .sum::<usize>()
    }

    /// Number of channel and pattern subscriptions.
    pub(crate) fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the client is in RESP2 subscribed mode, where only a few commands are allowed.
    pub(crate) fn in_pubsub_mode(&self) -> bool {
        self.resp == 2 && self.subscriptions() > 0
    }
}

/// Hasher for server-assigned client ids: they are sequential and not chosen by
/// clients, so SipHash's keyed defence buys nothing; a multiplication spreads them
/// over the high bits the table uses.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys go through this hasher; fold anything else in for safety.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The registry of connected clients, by id.
#[derive(Debug)]
pub(crate) struct Clients {
    /// Every connection's record; `None` while checked out (see the module doc).
    /// Boxed, so that checking one out and back in moves a pointer, not the record
    /// (~450 bytes, copied twice per batch of requests otherwise), and the slot stays,
    /// so that it costs one probe each way.
    records: HashMap<u64, Option<Box<Client>>, std::hash::BuildHasherDefault<IdHasher>>,
    /// Connected and not killed, checked out or not (INFO `connected_clients`).
    connected: usize,
    next_id: u64,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            records: HashMap::default(),
            connected: 0,
            next_id: 1,
        }
    }
}

impl Clients {
    /// Registers a new connection's record; returns its id.
    pub(crate) fn connect(
        &mut self,
        addr: String,
        laddr: String,
        authed: bool,
        kill: Arc<Notify>,
        output: crate::outbuf::Output,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut c = Box::new(Client::new(id, addr, laddr, authed));
        c.kill = Some(kill);
        c.output = Some(output);
        self.records.insert(id, Some(c));
        self.connected += 1;
        id
    }

    /// Removes a connection's record for good (its connection closed).
    pub(crate) fn disconnect(&mut self, id: u64) -> Option<Box<Client>> {
        let c = self.records.remove(&id)??;
        if !c.killed {
            self.connected -= 1;
        }
        Some(c)
    }

    /// Takes a record out to run commands with; `None` if it is gone or was killed.
    pub(crate) fn checkout(&mut self, id: u64) -> Option<Box<Client>> {
        let slot = self.records.get_mut(&id)?;
        if slot.as_ref().is_some_and(|c| c.killed) {
            return None;
        }
        slot.take()
    }

    /// A record that is not checked out.
    pub(crate) fn get(&self, id: u64) -> Option<&Client> {
        self.records.get(&id)?.as_deref().filter(|c| !c.killed)
    }

    /// Whether a connection with this id is registered, checked out or not.
    pub(crate) fn exists(&self, id: u64) -> bool {
        self.records.contains_key(&id)
    }

    /// A record that is not checked out, to update from outside a batch.
    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Client> {
        self.records.get_mut(&id)?.as_deref_mut()
    }

    /// Puts a checked-out record back.
    pub(crate) fn checkin(&mut self, client: Box<Client>) {
        match self.records.get_mut(&client.id) {
            Some(slot) => *slot = Some(client),
            None => {
                self.records.insert(client.id, Some(client));
            }
        }
    }

    /// Marks a client killed and wakes its connection, which then closes; returns
    /// false if there is no such (live) client.
    pub(crate) fn kill(&mut self, id: u64) -> bool {
        match self.records.get_mut(&id).and_then(|s| s.as_mut()) {
            Some(c) if !c.killed => {
                c.killed = true;
                self.connected -= 1;
                if let Some(k) = &c.kill {
                    k.notify_one();
                }
                true
            }
            _ => false,
        }
    }

    /// The live records not checked out.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Client> {
        self.records
            .values()
            .filter_map(|s| s.as_deref())
            .filter(|c| !c.killed)
    }

    /// Pending output of every connection (INFO `mem_clients_normal`), and the
    /// largest (`client_recent_max_output_buffer`); the client running a command is
    /// checked out and not counted.
    pub(crate) fn output_bytes(&self) -> (usize, usize) {
        self.iter()
            .filter_map(|c| c.output.as_ref().map(|o| o.omem()))
            .fold((0, 0), |(sum, max), n| (sum + n, max.max(n)))
    }

    /// Connected clients, the one running a command included.
    pub(crate) fn connected(&self) -> usize {
        self.connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_from_connect_to_disconnect() {
        let mut reg = Clients::default();
        let kill = Arc::new(Notify::new());
        let a = reg.connect(
            "1.1.1.1:1".into(),
            String::new(),
            true,
            kill.clone(),
            Arc::default(),
        );
        let b = reg.connect(
            "1.1.1.1:2".into(),
            String::new(),
            true,
            Arc::new(Notify::new()),
            Arc::default(),
        );
        assert_eq!((a, b), (1, 2));
        // A checked-out record still counts as connected but is not listed.
        let mut c = reg.checkout(a).expect("connected");
        assert_eq!(reg.connected(), 2);
        assert_eq!(reg.iter().count(), 1);
        c.db = 3;
        reg.checkin(c);
        assert_eq!(reg.iter().find(|c| c.id == a).map(|c| c.db), Some(3));
        // A killed client is hidden and cannot run commands, but its record stays
        // until the connection has cleaned up.
        assert!(reg.kill(a));
        assert!(!reg.kill(a));
        assert_eq!(reg.connected(), 1);
        assert!(reg.checkout(a).is_none());
        assert!(reg.disconnect(a).is_some_and(|c| c.killed));
        assert_eq!(reg.connected(), 1);
        assert!(reg.disconnect(b).is_some());
        assert_eq!(reg.connected(), 0);
    }
}
