//! Replication as Redis 7.0 does it (PSYNC2), both ways: the engine as a primary that
//! redis-server (or another engine) replicates, and as a replica of one.
//!
//! - `backlog`: the stream replicas read, fed by the write path as a
//!   [`crate::PropagationSink`] (or, on a replica, by the link with the primary's bytes);
//! - `primary`: serving a replica connection after PSYNC/SYNC: full sync (a fork-less
//!   snapshot streamed as RDB) or partial resync from the backlog, then the stream,
//!   reading its `REPLCONF ACK`s;
//! - `replica`: the link to our primary (REPLICAOF): handshake, PSYNC, loading the RDB,
//!   applying the stream as the master client, ACKs.
//!
//! The state here lives in the store, under its lock; network I/O happens in tasks.

pub(crate) mod backlog;
pub(crate) mod primary;
pub(crate) mod replica;

use crate::store::Store;
use backlog::Backlog;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::sync::watch;

/// The engine's replication role, as [`crate::Engine::role`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A primary (Redis's `master`): takes writes.
    Primary,
    /// A replica of `host:port`; `link_up` once synced and streaming.
    Replica {
        /// The primary's host.
        host: String,
        /// The primary's port.
        port: u16,
        /// The link is up (`master_link_status:up`).
        link_up: bool,
    },
}

/// 40 random hex characters (run ids and replication ids).
pub(crate) fn random_id() -> String {
    (0..40)
        .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
        .collect()
}

/// The replica link's state (Redis's `repl_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// Waiting to connect (again).
    Connect,
    /// Connecting.
    Connecting,
    /// Handshake (PING, AUTH, REPLCONF, PSYNC).
    Handshake,
    /// Receiving the RDB.
    Transfer,
    /// Streaming.
    Connected,
}

impl LinkState {
    /// ROLE's state names.
    fn role_name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Transfer => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// Our primary, when we are a replica.
#[derive(Debug)]
pub(crate) struct MasterLink {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) state: LinkState,
    /// Unix seconds the link went down (0: never up).
    pub(crate) down_since: u64,
    /// Unix seconds of the last byte from the primary.
    pub(crate) last_io: u64,
    /// The RDB being received: bytes read and announced size (-1 for `$EOF:`).
    pub(crate) transfer_read: u64,
    pub(crate) transfer_size: i64,
    /// Identifies the link task: a REPLICAOF starts a new one and the old one stops.
    pub(crate) generation: u64,
    /// The master client's database, kept across reconnects (a `+CONTINUE` stream
    /// goes on in it).
    pub(crate) db: usize,
}

/// A replica connection's progress (Redis's `replstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaState {
    WaitBgsave,
    SendBulk,
    Online,
}

/// A connected replica, as INFO and ROLE show it.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaInfo {
    pub(crate) ip: String,
    pub(crate) port: u16,
    pub(crate) state: ReplicaState,
    /// Last offset it acknowledged.
    pub(crate) ack: u64,
    /// Unix seconds of its last ACK.
    pub(crate) ack_time: u64,
}

/// What a connection said with REPLCONF before PSYNC.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplConf {
    pub(crate) port: u16,
    pub(crate) ip: Option<String>,
    pub(crate) eof: bool,
    pub(crate) psync2: bool,
}

/// A client in WAIT.
#[derive(Debug)]
pub(crate) struct Wait {
    pub(crate) client: u64,
    pub(crate) offset: u64,
    pub(crate) replicas: usize,
}

/// FAILOVER's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failover {
    None,
    /// Writes paused until the target caught up with `offset` (or the deadline).
    WaitForSync {
        host: String,
        port: u16,
        force: bool,
        deadline: Option<std::time::Instant>,
        offset: u64,
    },
    /// We are now a replica of the target, asking it to take over.
    InProgress,
}

/// The replication state in the store.
#[derive(Debug)]
pub(crate) struct ReplState {
    /// INFO's `run_id`, fixed for this engine's life.
    pub(crate) run_id: String,
    pub(crate) replid: String,
    pub(crate) replid2: String,
    /// The first offset not valid for `replid2` (-1: none).
    pub(crate) second_offset: i64,
    pub(crate) backlog: Arc<Backlog>,
    /// The backlog is a sink of the write path (from the first replica or REPLICAOF
    /// on; before, nothing is encoded).
    pub(crate) active: bool,
    /// Our primary, when a replica.
    pub(crate) master: Option<MasterLink>,
    pub(crate) replicas: BTreeMap<u64, ReplicaInfo>,
    /// REPLCONF options by connection, until PSYNC.
    pub(crate) conf: HashMap<u64, ReplConf>,
    pub(crate) waits: Vec<Wait>,
    /// Our listening port (REPLCONF listening-port).
    pub(crate) port: u16,
    pub(crate) next_generation: u64,
    pub(crate) failover: Failover,
    /// Replicas online with lag within `min-replicas-max-lag`.
    pub(crate) good_replicas: usize,
    /// Unix seconds the last PING went to the replicas.
    pub(crate) last_ping: u64,
    /// Full syncs served, partial resyncs accepted and refused (INFO stats).
    pub(crate) sync_full: u64,
    pub(crate) sync_partial_ok: u64,
    pub(crate) sync_partial_err: u64,
    role_tx: watch::Sender<Role>,
}

impl ReplState {
    /// A primary with a fresh replication id.
    pub(crate) fn new(backlog_size: u64) -> Self {
        let (role_tx, _) = watch::channel(Role::Primary);
        ReplState {
            run_id: random_id(),
            replid: random_id(),
            replid2: "0".repeat(40),
            second_offset: -1,
            backlog: Arc::new(Backlog::new(backlog_size as usize)),
            active: false,
            master: None,
            replicas: BTreeMap::new(),
            conf: HashMap::new(),
            waits: Vec::new(),
            port: 0,
            next_generation: 1,
            failover: Failover::None,
            good_replicas: 0,
            last_ping: 0,
            sync_full: 0,
            sync_partial_ok: 0,
            sync_partial_err: 0,
            role_tx,
        }
    }

    /// `master_repl_offset`.
    pub(crate) fn offset(&self) -> u64 {
        self.backlog.end()
    }

    /// The current role.
    pub(crate) fn role(&self) -> Role {
        match &self.master {
            None => Role::Primary,
            Some(m) => Role::Replica {
                host: m.host.clone(),
                port: m.port,
                link_up: m.state == LinkState::Connected,
            },
        }
    }

    /// A receiver of role changes.
    pub(crate) fn subscribe_role(&self) -> watch::Receiver<Role> {
        self.role_tx.subscribe()
    }

    /// Publishes the role if it changed.
    pub(crate) fn publish_role(&self) {
        let role = self.role();
        self.role_tx.send_if_modified(|r| {
            if *r != role {
                *r = role;
                true
            } else {
                false
            }
        });
    }

    /// Whether we are a replica.
    pub(crate) fn is_replica(&self) -> bool {
        self.master.is_some()
    }

    /// Whether the link to our primary is up (a primary: always).
    pub(crate) fn link_up(&self) -> bool {
        self.master
            .as_ref()
            .is_none_or(|m| m.state == LinkState::Connected)
    }

    /// Redis's `shiftReplicationId`: the current id becomes the second one, valid up
    /// to this offset, and a new id starts (a promotion).
    pub(crate) fn shift_replid(&mut self) {
        self.replid2 = std::mem::replace(&mut self.replid, random_id());
        self.second_offset = self.offset() as i64 + 1;
    }

    /// Whether a replica at `replid`/`psync_offset` (the next byte it wants) can go on
    /// from our backlog (Redis's `masterTryPartialResynchronization` checks).
    pub(crate) fn can_continue(&self, replid: &str, psync_offset: i64) -> bool {
        if psync_offset < 1 {
            return false;
        }
        let same = replid == self.replid;
        let second = replid == self.replid2 && psync_offset <= self.second_offset;
        (same || second) && self.backlog.covers(psync_offset as u64 - 1)
    }

    /// Forgets a closed connection.
    pub(crate) fn forget(&mut self, id: u64) {
        self.conf.remove(&id);
        if self.replicas.remove(&id).is_some() {
            self.backlog.unregister(id);
        }
        self.waits.retain(|w| w.client != id);
    }

    /// Replicas that acknowledged `offset`.
    pub(crate) fn acked(&self, offset: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| r.state == ReplicaState::Online && r.ack >= offset)
            .count()
    }

    /// Recounts the replicas within `min-replicas-max-lag` (`refreshGoodSlavesCount`).
    pub(crate) fn refresh_good(&mut self, max_lag: u64) {
        let now = crate::util::now_ms() / 1000;
        self.good_replicas = self
            .replicas
            .values()
            .filter(|r| {
                r.state == ReplicaState::Online && now.saturating_sub(r.ack_time) <= max_lag
            })
            .count();
    }
}

impl Store {
    /// Moves FAILOVER to `state`; writes are paused from its start to its end or
    /// abort, as Redis's `PAUSE_DURING_FAILOVER`.
    pub(crate) fn set_failover(&mut self, state: Failover) {
        self.pause.during_failover(state != Failover::None);
        self.repl.failover = state;
        self.sync_pause();
    }

    /// Turns the backlog on as a consumer of the write path (first replica, or
    /// becoming a replica), once.
    pub(crate) fn repl_activate(&mut self) {
        if !self.repl.active {
            self.repl.active = true;
            let sink = self.repl.backlog.clone();
            self.add_propagation_sink(sink);
        }
    }

    /// After an ACK or a replica gone: answers the WAITs now satisfied.
    pub(crate) fn repl_serve_waits(&mut self) {
        if self.repl.waits.is_empty() {
            return;
        }
        let waits = std::mem::take(&mut self.repl.waits);
        for w in waits {
            let n = self.repl.acked(w.offset);
            if n >= w.replicas {
                if let Some(b) = self.blocking.unblock(w.client) {
                    crate::observe::unblocked(self, &b.args, None);
                    let _ = b.tx.send(crate::net::reply::Reply::Int(n as i64));
                }
            } else {
                self.repl.waits.push(w);
            }
        }
    }

    /// Kills every replica connection (their replicas resync with us).
    pub(crate) fn repl_disconnect_replicas(&mut self) {
        let ids: Vec<u64> = self.repl.replicas.keys().copied().collect();
        for id in ids {
            self.clients.kill(id);
            self.repl.forget(id);
        }
        self.repl.backlog.drop_readers();
    }

    /// Once a second from the cron: PING the replicas every
    /// `repl-ping-replica-period`, the good replicas count, FAILOVER's progress.
    pub(crate) fn repl_cron(&mut self) {
        let now = crate::util::now_ms() / 1000;
        if self.repl.active && !self.repl.is_replica() && !self.repl.replicas.is_empty() {
            let period = self.config.repl_ping_replica_period.max(1);
            if now >= self.repl.last_ping + period {
                self.repl.last_ping = now;
                self.repl.backlog.feed_command(&[b"PING"]);
            }
        }
        self.repl.refresh_good(self.config.min_replicas_max_lag);
        primary::failover_cron(self);
    }

    /// Whether writes are refused for want of good replicas (`-NOREPLICAS`).
    pub(crate) fn repl_too_few_replicas(&self) -> bool {
        let c = &self.config;
        !self.repl.is_replica()
            && c.min_replicas_to_write > 0
            && c.min_replicas_max_lag > 0
            && (self.repl.good_replicas as u64) < c.min_replicas_to_write
    }

    /// After CONFIG SET repl-backlog-size.
    pub(crate) fn apply_backlog_size(&mut self) {
        self.repl
            .backlog
            .set_size(self.config.repl_backlog_size as usize);
    }

    /// INFO's replication section.
    pub(crate) fn repl_info(&self, o: &mut String) {
        let r = &self.repl;
        let now = crate::util::now_ms() / 1000;
        let offset = r.offset();
        o.push_str("# Replication\r\n");
        match &r.master {
            None => o.push_str("role:master\r\n"),
            Some(m) => {
                let _ = write!(
                    o,
                    "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{offset}\r\nslave_repl_offset:{offset}\r\n",
                    m.host,
                    m.port,
                    if m.state == LinkState::Connected { "up" } else { "down" },
                    if m.state == LinkState::Connected { now.saturating_sub(m.last_io) as i64 } else { -1 },
                    (m.state == LinkState::Transfer) as u8,
                );
                if m.state == LinkState::Transfer {
                    let size = m.transfer_size;
                    let perc = if size > 0 {
                        m.transfer_read as f64 * 100.0 / size as f64
                    } else {
                        0.0
                    };
                    let _ = write!(
                        o,
                        "master_sync_total_bytes:{size}\r\nmaster_sync_read_bytes:{}\r\nmaster_sync_left_bytes:{}\r\nmaster_sync_perc:{perc:.2}\r\nmaster_sync_last_io_seconds_ago:{}\r\n",
                        m.transfer_read,
                        size - m.transfer_read as i64,
                        now.saturating_sub(m.last_io),
                    );
                }
                if m.state != LinkState::Connected {
                    let down = if m.down_since == 0 {
                        -1
                    } else {
                        now.saturating_sub(m.down_since) as i64
                    };
                    let _ = write!(o, "master_link_down_since_seconds:{down}\r\n");
                }
                let c = &self.config;
                let _ = write!(
                    o,
                    "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
                    c.replica_priority, c.replica_read_only as u8, c.replica_announced as u8
                );
            }
        }
        let _ = write!(o, "connected_slaves:{}\r\n", r.replicas.len());
        if self.config.min_replicas_to_write > 0 && self.config.min_replicas_max_lag > 0 {
            let _ = write!(o, "min_slaves_good_slaves:{}\r\n", r.good_replicas);
        }
        for (n, info) in r.replicas.values().enumerate() {
            let state = match info.state {
                ReplicaState::WaitBgsave => "wait_bgsave",
                ReplicaState::SendBulk => "send_bulk",
                ReplicaState::Online => "online",
            };
            let _ = write!(
                o,
                "slave{n}:ip={},port={},state={state},offset={},lag={}\r\n",
                info.ip,
                info.port,
                info.ack,
                now.saturating_sub(info.ack_time)
            );
        }
        let failover = match r.failover {
            Failover::None => "no-failover",
            Failover::WaitForSync { .. } => "waiting-for-sync",
            Failover::InProgress => "failover-in-progress",
        };
        let histlen = if r.active { r.backlog.histlen() } else { 0 };
        let _ = write!(
            o,
            "master_failover_state:{failover}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{offset}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\nrepl_backlog_histlen:{histlen}\r\n",
            r.replid,
            r.replid2,
            r.second_offset,
            r.active as u8,
            self.config.repl_backlog_size,
            if r.active { offset - histlen + 1 } else { 0 },
        );
    }

    /// ROLE's reply.
    pub(crate) fn repl_role_reply(&self) -> crate::net::reply::Reply {
        use crate::net::reply::Reply;
        let r = &self.repl;
        match &r.master {
            None => Reply::Array(vec![
                Reply::bulk(b"master"),
                Reply::Int(r.offset() as i64),
                Reply::Array(
                    r.replicas
                        .values()
                        .filter(|i| i.state == ReplicaState::Online)
                        .map(|i| {
                            Reply::Array(vec![
                                Reply::bulk(i.ip.as_bytes()),
                                Reply::bulk(i.port.to_string().as_bytes()),
                                Reply::bulk(i.ack.to_string().as_bytes()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Some(m) => Reply::Array(vec![
                Reply::bulk(b"slave"),
                Reply::bulk(m.host.as_bytes()),
                Reply::Int(m.port as i64),
                Reply::bulk(m.state.role_name().as_bytes()),
                Reply::Int(if m.state == LinkState::Connected {
                    r.offset() as i64
                } else {
                    -1
                }),
            ]),
        }
    }
}

/// WAIT's timeout passed for `client`: the replicas that acknowledged its offset.
pub(crate) fn wait_timed_out(store: &mut Store, client: u64) -> crate::net::reply::Reply {
    let pos = store.repl.waits.iter().position(|w| w.client == client);
    let n = match pos {
        Some(i) => {
            let w = store.repl.waits.remove(i);
            store.repl.acked(w.offset)
        }
        None => 0,
    };
    crate::net::reply::Reply::Int(n as i64)
}

/// The replication gates of Redis's `processCommand`, in its order: too few good
/// replicas for a write (`-NOREPLICAS`), a write on a read-only replica
/// (`-READONLY`), a replica whose link is down with `replica-serve-stale-data no`
/// (`-MASTERDOWN`). The master client passes them all.
pub(crate) fn gate(
    store: &Store,
    client: &crate::client::Client,
    spec: &crate::command::CommandSpec,
) -> Option<crate::error::CmdError> {
    use crate::command::{lookup, STALE, WRITE};
    use crate::error::CmdError;
    if client.master {
        return None;
    }
    let write = spec.flags & WRITE != 0
        || (spec.name == "exec"
            && client.multi.iter().flatten().any(|a| {
                a.first()
                    .and_then(|n| lookup(n))
                    .is_some_and(|s| s.flags & WRITE != 0)
            }));
    if write && store.repl_too_few_replicas() {
        return Some(CmdError::Other(
            "NOREPLICAS Not enough good replicas to write.".into(),
        ));
    }
    if !store.repl.is_replica() {
        return None;
    }
    if write && store.config.replica_read_only {
        return Some(CmdError::Other(
            "READONLY You can't write against a read only replica.".into(),
        ));
    }
    if !store.repl.link_up() && !store.config.replica_serve_stale_data && spec.flags & STALE == 0 {
        return Some(CmdError::Other(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
                .into(),
        ));
    }
    None
}
