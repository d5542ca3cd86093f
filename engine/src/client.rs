//! Per-connection state: selected database, protocol, auth, MULTI queue, subscriptions.

use crate::reply::Reply;
use bytes::Bytes;
use indexmap::IndexSet;
use std::time::Duration;

/// A handler's request to block the client until a key is ready or the timeout passes.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    /// Keys to wait on, in the selected database.
    pub keys: Vec<Bytes>,
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    /// What the client gets if the timeout passes (a null of the command's kind).
    pub timeout_reply: Reply,
}

/// The state of one client connection.
#[derive(Debug)]
pub struct Client {
    pub id: u64,
    pub db: usize,
    /// Protocol version: 2 or 3.
    pub resp: u8,
    pub name: Option<Bytes>,
    pub authenticated: bool,
    /// Commands queued by MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A command failed to queue: EXEC must abort.
    pub multi_error: bool,
    /// WATCHed keys: (db, key, whether it was already expired when watched).
    pub watched: Vec<(usize, Bytes, bool)>,
    pub channels: IndexSet<Bytes>,
    pub patterns: IndexSet<Bytes>,
    /// Set while EXEC runs: blocking commands then answer at once instead of blocking.
    pub no_block: bool,
    /// Set by a blocking command that found nothing to serve.
    pub block: Option<BlockRequest>,
    /// Close the connection once the current reply is written (QUIT, protocol errors).
    pub close_after_reply: bool,
    /// CLIENT NO-EVICT.
    pub no_evict: bool,
    /// The remote address, as CLIENT LIST shows it.
    pub addr: String,
    /// The local address.
    pub laddr: String,
}

impl Client {
    /// A new connection's state.
    pub fn new(id: u64, addr: String, laddr: String, authenticated: bool) -> Self {
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
            addr,
            laddr,
        }
    }

    /// A stand-in used to re-run a blocked client's command on its behalf.
    pub fn detached(id: u64, db: usize, resp: u8) -> Self {
        let mut c = Client::new(id, String::new(), String::new(), true);
        c.db = db;
        c.resp = resp;
        c
    }

    /// Number of channel and pattern subscriptions.
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the client is in RESP2 subscribed mode, where only a few commands are allowed.
    pub fn in_pubsub_mode(&self) -> bool {
        self.resp == 2 && self.subscriptions() > 0
    }
}
