//! Client-side caching (Redis 6+'s `tracking.c`): which clients read which keys, and
//! the invalidation messages they get when those keys change.
//!
//! A consumer of the write path ([`crate::keyspace`]): every change of a key that
//! Redis signals as modified (client writes, expiry, eviction) invalidates it, a
//! FLUSHDB/FLUSHALL sends every tracking client a null invalidation, and so does a
//! SWAPDB (a deliberate difference: Redis 7.0 sends nothing there, which leaves
//! near caches stale).
//!
//! As in Redis 7.0:
//! - the table is keyed by key name only, whatever the database;
//! - a key read by a tracking client (default mode) is remembered once; its first
//!   change sends one invalidation and forgets it, until the client reads it again;
//! - BCAST clients get, per prefix, the keys changed since the last event-loop turn
//!   (here: the end of a connection's batch of requests, an in-process call or a
//!   cron cycle), sorted, in one message;
//! - the invalidation of a key the calling client changed itself is written after
//!   that command's reply (Redis's `tracking_pending_keys`); NOLOOP suppresses it;
//! - RESP3 clients get `>2 invalidate [keys]`; a RESP2 client redirects to a
//!   connection in pub/sub mode, which gets a `message` on `__redis__:invalidate`;
//! - `tracking-table-max-keys` bounds the table: over it, random keys are
//!   invalidated before the next command.

use crate::client::Client;
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The pub/sub channel RESP2 redirect targets receive invalidations on.
pub(crate) const CHANNEL: &[u8] = b"__redis__:invalidate";

/// One client's tracking options (Redis's `CLIENT_TRACKING_*` flags); present only
/// while tracking is on.
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientTracking {
    pub(crate) bcast: bool,
    pub(crate) optin: bool,
    pub(crate) optout: bool,
    pub(crate) noloop: bool,
    /// CLIENT CACHING YES (OPTIN) or NO (OPTOUT) given for the next command.
    pub(crate) caching: bool,
    /// The redirect target was gone when a message was due.
    pub(crate) broken_redirect: bool,
    /// Where messages go (0: the client itself).
    pub(crate) redirect: u64,
    /// BCAST prefixes, sorted as Redis's radix tree lists them.
    pub(crate) prefixes: BTreeSet<Bytes>,
}

/// Options of one CLIENT TRACKING ON call.
#[derive(Debug, Default)]
pub(crate) struct TrackingOptions {
    pub(crate) redirect: u64,
    pub(crate) bcast: bool,
    pub(crate) optin: bool,
    pub(crate) optout: bool,
    pub(crate) noloop: bool,
    pub(crate) prefixes: Vec<Bytes>,
}

/// A BCAST prefix: its clients and the keys changed under it since the last flush,
/// each with the client that changed it last (for NOLOOP).
#[derive(Debug, Default)]
struct Bcast {
    clients: BTreeSet<u64>,
    keys: BTreeMap<Bytes, Option<u64>>,
}

/// The client running the current command, as message delivery needs it while its
/// record is checked out of the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    id: u64,
    resp: u8,
    pubsub: bool,
}

/// What an invalidation message carries.
enum Payload<'a> {
    /// One key.
    Key(&'a [u8]),
    /// Several keys (a BCAST flush).
    Keys(Vec<Bytes>),
    /// Everything (FLUSHDB/FLUSHALL): a null in the tracking client's protocol.
    Null,
}

/// The tracking state of the whole server.
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    /// Clients with tracking on, by id.
    clients: HashMap<u64, ClientTracking>,
    /// Key name -> ids of clients that read it (Redis's `TrackingTable`); an
    /// index map so that the table limit can pick random keys.
    table: IndexMap<Bytes, IndexSet<u64>>,
    /// Client ids over all keys (`tracking_total_items`).
    items: usize,
    /// BCAST prefixes (Redis's `PrefixTable`).
    prefixes: BTreeMap<Bytes, Bcast>,
    /// The client whose command is running.
    current: Option<Current>,
    /// Invalidations for the current client, written after its reply (`None`: a
    /// flush).
    pending: Vec<Option<Bytes>>,
    /// A BCAST prefix has keys to send.
    bcast_due: bool,
    /// Consecutive table-limit runs that could not get under the limit.
    limit_effort: u32,
}

impl Tracking {
    /// Whether any client has tracking on or any key is remembered: when not, the
    /// write path and the dispatcher skip tracking entirely.
    pub(crate) fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.table.is_empty()
    }

    /// A client's options, if it has tracking on.
    pub(crate) fn get(&self, id: u64) -> Option<&ClientTracking> {
        self.clients.get(&id)
    }

    /// INFO `tracking_clients`.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// INFO `tracking_total_keys`.
    pub(crate) fn key_count(&self) -> usize {
        self.table.len()
    }

    /// INFO `tracking_total_items`.
    pub(crate) fn item_count(&self) -> usize {
        self.items
    }

    /// INFO `tracking_total_prefixes`.
    pub(crate) fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether invalidations wait for the current command's reply.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Redis's `checkPrefixCollisionsOrReply`: the error for prefixes that overlap
    /// each other or one the client has (`Err`: refused). Redis returns the index of
    /// the colliding prefix as its success flag, so a collision among the given
    /// prefixes after the first is answered with the error and then enabled all the
    /// same (`Ok(Some(error))`: Redis replies both); kept, to answer as Redis does.
    pub(crate) fn check_prefixes(
        &self,
        id: u64,
        prefixes: &[Bytes],
    ) -> Result<Option<String>, String> {
        let overlaps = |a: &[u8], b: &[u8]| {
            let n = a.len().min(b.len());
            a[..n] == b[..n]
        };
        let existing = self.clients.get(&id).map(|c| &c.prefixes);
        for (i, p) in prefixes.iter().enumerate() {
            if let Some(have) = existing {
                if let Some(o) = have.iter().find(|o| overlaps(o, p)) {
                    return Err(format!(
                        "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                        c_str(p),
                        c_str(o)
                    ));
                }
            }
            for q in &prefixes[i + 1..] {
                if overlaps(p, q) {
                    let e = format!(
                        "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                        c_str(p),
                        c_str(q)
                    );
                    return if i == 0 { Err(e) } else { Ok(Some(e)) };
                }
            }
        }
        Ok(None)
    }

    /// Redis's `enableTracking`: (re)turns tracking on with `opts` (already checked
    /// against the client's current mode). BCAST prefixes add to those it has.
    pub(crate) fn enable(&mut self, id: u64, opts: TrackingOptions) {
        let st = self.clients.entry(id).or_default();
        st.broken_redirect = false;
        st.redirect = opts.redirect;
        st.bcast = opts.bcast;
        st.optin = opts.optin;
        st.optout = opts.optout;
        st.noloop = opts.noloop;
        if opts.bcast {
            let mut list = opts.prefixes;
            if list.is_empty() {
                list.push(Bytes::new());
            }
            for p in list {
                st.prefixes.insert(p.clone());
                self.prefixes.entry(p).or_default().clients.insert(id);
            }
        }
    }

    /// Redis's `disableTracking` (CLIENT TRACKING OFF, a closed connection): the
    /// client leaves its prefixes; the keys it read stay in the table until they
    /// change, as in Redis.
    pub(crate) fn disable(&mut self, id: u64) {
        let Some(st) = self.clients.remove(&id) else {
            return;
        };
        for p in &st.prefixes {
            if let Some(b) = self.prefixes.get_mut(p) {
                b.clients.remove(&id);
                if b.clients.is_empty() {
                    self.prefixes.remove(p);
                }
            }
        }
    }

    /// CLIENT CACHING YES/NO: marks the next command's keys (not) to be tracked.
    pub(crate) fn set_caching(&mut self, id: u64) {
        if let Some(st) = self.clients.get_mut(&id) {
            st.caching = true;
        }
    }

    /// After a command outside MULTI that is not CLIENT: the CACHING flag was for it.
    pub(crate) fn reset_caching(&mut self, id: u64) {
        if let Some(st) = self.clients.get_mut(&id) {
            st.caching = false;
        }
    }

    /// Redis's `trackingRememberKeys`: after a read-only command of a tracking client
    /// in default mode, remembers its keys (OPTIN only after CACHING YES, OPTOUT
    /// unless CACHING NO).
    pub(crate) fn remember<'a>(&mut self, id: u64, keys: impl Iterator<Item = &'a Bytes>) {
        let Some(st) = self.clients.get(&id) else {
            return;
        };
        if st.bcast || (st.optin && !st.caching) || (st.optout && st.caching) {
            return;
        }
        for k in keys {
            let ids = match self.table.get_mut(k.as_ref()) {
                Some(ids) => ids,
                None => self.table.entry(k.clone()).or_default(),
            };
            if ids.insert(id) {
                self.items += 1;
            }
        }
    }

    /// Sets the client whose command runs now (`None` for the embedding process and
    /// cron work): its own changes are sent after its reply.
    pub(crate) fn begin(&mut self, client: &Client) {
        self.pending.clear();
        self.current = (client.id != 0).then(|| Current {
            id: client.id,
            resp: client.resp,
            pubsub: client.subscriptions() > 0,
        });
    }

    /// Clears the current client (its command and its pending messages are done).
    pub(crate) fn end(&mut self) {
        self.current = None;
    }
}

/// A prefix or key as Redis's `%s` prints it: up to the first NUL byte.
fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Store {
    /// Redis's `trackingInvalidateKey`: `key` changed (by the current client when
    /// `by_client`): every client that read it gets one message and forgets it, and
    /// the BCAST prefixes it falls under note it.
    pub(crate) fn track_invalidate(&mut self, key: &[u8], by_client: bool) {
        if self.tracking.is_idle() {
            return;
        }
        let current = self.tracking.current.map(|c| c.id);
        if !self.tracking.prefixes.is_empty() {
            let modifier = if by_client { current } else { None };
            for (p, b) in self.tracking.prefixes.iter_mut() {
                if key.starts_with(p) {
                    b.keys.insert(Bytes::copy_from_slice(key), modifier);
                    self.tracking.bcast_due = true;
                }
            }
        }
        let Some(ids) = self.tracking.table.swap_remove(key) else {
            return;
        };
        self.tracking.items -= ids.len();
        for id in ids {
            let Some(st) = self.tracking.clients.get(&id) else {
                continue;
            };
            if st.bcast {
                continue;
            }
            if Some(id) == current {
                if !st.noloop {
                    self.tracking
                        .pending
                        .push(Some(Bytes::copy_from_slice(key)));
                }
                continue;
            }
            self.send_invalidation(id, Payload::Key(key));
        }
    }

    /// Redis's `trackingInvalidateKeysOnFlush`: every tracking client gets a null
    /// invalidation (the current one after its reply), and the table is emptied.
    pub(crate) fn track_flush(&mut self) {
        if self.tracking.is_idle() {
            return;
        }
        let current = self.tracking.current.map(|c| c.id);
        let mut ids: Vec<u64> = self.tracking.clients.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if Some(id) == current {
                self.tracking.pending.push(None);
            } else {
                self.send_invalidation(id, Payload::Null);
            }
        }
        self.tracking.table.clear();
        self.tracking.items = 0;
    }

    /// Sends the current client's own invalidations, after its reply was written
    /// (Redis's `trackingHandlePendingKeyInvalidations`), and ends its command.
    pub(crate) fn send_pending_invalidations(&mut self, client: &Client) {
        self.tracking.current = Some(Current {
            id: client.id,
            resp: client.resp,
            pubsub: client.subscriptions() > 0,
        });
        for item in std::mem::take(&mut self.tracking.pending) {
            match item {
                Some(k) => self.send_invalidation(client.id, Payload::Key(&k)),
                None => self.send_invalidation(client.id, Payload::Null),
            }
        }
        self.tracking.end();
    }

    /// Redis's `trackingBroadcastInvalidationMessages` (run in `beforeSleep`): each
    /// BCAST prefix's changed keys go, sorted, in one message to each of its
    /// clients; a NOLOOP client's own changes left out.
    pub(crate) fn track_broadcast(&mut self) {
        if !std::mem::take(&mut self.tracking.bcast_due) {
            return;
        }
        let mut sends = Vec::new();
        for b in self.tracking.prefixes.values_mut() {
            if b.keys.is_empty() {
                continue;
            }
            let keys = std::mem::take(&mut b.keys);
            for &id in &b.clients {
                let noloop = self.tracking.clients.get(&id).is_some_and(|c| c.noloop);
                let list: Vec<Bytes> = keys
                    .iter()
                    .filter(|(_, by)| !noloop || **by != Some(id))
                    .map(|(k, _)| k.clone())
                    .collect();
                if !list.is_empty() {
                    sends.push((id, list));
                }
            }
        }
        for (id, keys) in sends {
            self.send_invalidation(id, Payload::Keys(keys));
        }
    }

    /// Redis's `trackingLimitUsedSlots`, before a command: over
    /// `tracking-table-max-keys`, random keys are invalidated, with more effort each
    /// time the previous run could not get under the limit.
    pub(crate) fn track_limit(&mut self) {
        let max = self.config.tracking_table_max_keys;
        if max == 0 || self.tracking.table.len() <= max {
            self.tracking.limit_effort = 0;
            return;
        }
        let mut effort = 100 * (self.tracking.limit_effort + 1);
        while effort > 0 && !self.tracking.table.is_empty() {
            effort -= 1;
            let i = fastrand::usize(..self.tracking.table.len());
            let Some((k, _)) = self.tracking.table.get_index(i) else {
                break;
            };
            let k = k.clone();
            // Not the current client's change: sent at once, as in Redis.
            let current = self.tracking.current.take();
            self.track_invalidate(&k, false);
            self.tracking.current = current;
            if self.tracking.table.len() <= max {
                self.tracking.limit_effort = 0;
                return;
            }
        }
        self.tracking.limit_effort += 1;
    }

    /// A connection closed: its tracking ends.
    pub(crate) fn track_disconnect(&mut self, id: u64) {
        self.tracking.disable(id);
    }

    /// Whether a client id names a connection (Redis's `lookupClientByID`), its record
    /// checked out or not.
    pub(crate) fn client_exists(&self, id: u64) -> bool {
        self.tracking.current.is_some_and(|c| c.id == id) || self.clients.exists(id)
    }

    /// The protocol and pub/sub mode of a connection.
    fn proto_of(&self, id: u64) -> Option<(u8, bool)> {
        if let Some(c) = self.tracking.current.filter(|c| c.id == id) {
            return Some((c.resp, c.pubsub));
        }
        self.clients
            .get(id)
            .map(|c| (c.resp, c.subscriptions() > 0))
    }

    /// Redis's `sendTrackingMessage`: to the client itself (RESP3) or its redirect
    /// target (RESP3, or RESP2 in pub/sub mode); a gone target marks the redirect
    /// broken and tells a RESP3 client so.
    fn send_invalidation(&mut self, id: u64, payload: Payload) {
        let Some(st) = self.tracking.clients.get(&id) else {
            return;
        };
        let redirect = st.redirect;
        let own_resp = self.proto_of(id).map_or(2, |p| p.0);
        let mut target = id;
        if redirect != 0 {
            if !self.client_exists(redirect) {
                if let Some(st) = self.tracking.clients.get_mut(&id) {
                    st.broken_redirect = true;
                }
                if own_resp == 3 {
                    let msg = Reply::Push(vec![
                        Reply::text("tracking-redir-broken"),
                        Reply::Int(redirect as i64),
                    ]);
                    self.pubsub.push_to(id, &msg);
                }
                return;
            }
            target = redirect;
        }
        let Some((resp, pubsub)) = self.proto_of(target) else {
            return;
        };
        let value = match payload {
            Payload::Key(k) => Reply::Array(vec![Reply::bulk(k)]),
            Payload::Keys(ks) => Reply::Array(ks.into_iter().map(Reply::Bulk).collect()),
            // The null of the tracking client's protocol, whoever receives it.
            Payload::Null => Reply::Raw(Bytes::from_static(if own_resp == 3 {
                b"_\r\n"
            } else {
                b"$-1\r\n"
            })),
        };
        let msg = if resp == 3 {
            Reply::Push(vec![Reply::text("invalidate"), value])
        } else if redirect != 0 && pubsub {
            Reply::Push(vec![Reply::text("message"), Reply::bulk(CHANNEL), value])
        } else {
            // RESP2 without a pub/sub redirect: nowhere to say it.
            return;
        };
        self.pubsub.push_to(target, &msg);
    }
}
