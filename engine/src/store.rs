//! Everything the command handlers share, guarded by one lock: the databases and the
//! registries of clients, subscriptions, blocked clients and WATCHed keys.
//!
//! Like Redis's single thread, one lock makes every command atomic and keeps MULTI,
//! blocking pops and WATCH simple; connections parse and encode outside it. What a
//! change of the keyspace sets off is the write path's (`crate::keyspace`).

use crate::blocking::Blocking;
use crate::client::Clients;
use crate::config::EngineConfig;
use crate::keyspace::db::{Db, ExpiredFlag};
use crate::keyspace::evict::{Policy, Pool};
use crate::keyspace::notify;
use crate::keyspace::propagate::{Propagation, PropagationSink};
use crate::keyspace::watch::Watches;
use crate::keyspace::KeyHook;
use crate::lease::LeaseTable;
use crate::pubsub::{PubSub, PushSender};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// Server-wide counters for INFO.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) commands: u64,
    pub(crate) connections: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) keyspace_hits: u64,
    pub(crate) keyspace_misses: u64,
    pub(crate) expired_keys: u64,
    pub(crate) evicted_keys: u64,
    pub(crate) net_input_bytes: u64,
    pub(crate) net_output_bytes: u64,
    /// Changes since start, like Redis's `server.dirty`.
    pub(crate) dirty: u64,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) dbs: Vec<Db>,
    pub(crate) config: EngineConfig,
    pub(crate) pubsub: PubSub,
    pub(crate) blocking: Blocking,
    /// Raised by a database that expired a key (see [`Store::flush_expired`]).
    pub(crate) expired_flag: ExpiredFlag,
    /// WATCHed keys.
    pub(crate) watches: Watches,
    /// TTL backstops set by the embedding process (see [`crate::backstop`]).
    pub(crate) backstops: crate::backstop::Backstops,
    /// Connected clients (see [`crate::client`]).
    pub(crate) clients: Clients,
    pub(crate) stats: Stats,
    /// The time of the current command, in Unix ms (cached as Redis does).
    pub(crate) now: u64,
    /// The clock read behind `now`, in Unix ns, left by the dispatcher as the start
    /// of the call it is about to make (0: none, a nested call reads the clock).
    pub(crate) call_start_ns: u64,
    pub(crate) started: Instant,
    /// `notify-keyspace-events`, parsed.
    pub(crate) notify_flags: u32,
    /// Set by SHUTDOWN.
    pub(crate) shutdown_requested: bool,
    /// DEBUG SET-ACTIVE-EXPIRE.
    pub(crate) active_expire: bool,
    /// The embedding process's consumers of changes.
    pub(crate) hooks: Vec<Arc<dyn KeyHook>>,
    /// Outstanding lease tokens (LEASEGET/LEASESET); every modification voids them.
    pub(crate) leases: LeaseTable,
    /// The command stream for the AOF and replicas.
    pub(crate) propagation: Propagation,
    /// Saves and loads: SAVE/BGSAVE state, loading, aux fields for the files.
    pub(crate) save: crate::persist::save::SaveState,
    /// The engine around this store, for work on threads of its own (BGSAVE); empty
    /// for a bare store (unit tests).
    pub(crate) shared: std::sync::Weak<crate::engine::Shared>,
    /// The AOF: its writer when on, its durability gate and INFO counters.
    pub(crate) aof: crate::persist::aof::AofState,
    /// `maxmemory-policy`, parsed ([`crate::keyspace::evict`]).
    pub(crate) evict_policy: Policy,
    /// The best eviction candidates sampled so far.
    pub(crate) evict_pool: Pool,
    /// The database the random policies try next.
    pub(crate) evict_next_db: usize,
    /// Over `maxmemory` after a time-limited eviction pass: the cron goes on.
    pub(crate) evicting: bool,
    /// Highest `used_memory` seen (INFO `used_memory_peak`).
    pub(crate) peak_memory: usize,
    /// `used_memory` when the store was created (INFO `used_memory_startup`).
    pub(crate) startup_memory: usize,
    /// Client-side caching: tracking clients, the keys they read, BCAST prefixes.
    pub(crate) tracking: crate::keyspace::tracking::Tracking,
    /// `client-output-buffer-limit`, parsed.
    pub(crate) output_limits: crate::outbuf::OutputLimits,
    /// Replication: role, ids, backlog, replicas, the link to our primary.
    pub(crate) repl: crate::repl::ReplState,
    /// Command and error counters, slow log, latency samples, MONITOR clients.
    pub(crate) observe: crate::observe::Observe,
    /// CLIENT PAUSE.
    pub(crate) pause: crate::pause::Pause,
    /// The file CONFIG REWRITE writes, when the engine was started from one.
    pub(crate) config_file: Option<crate::config::rewrite::ConfigFile>,
    /// Lua scripts and functions ([`crate::script`]).
    pub(crate) scripting: crate::script::Scripting,
}

impl Store {
    /// A store with `config.databases` empty databases.
    pub(crate) fn new(config: EngineConfig) -> Self {
        let notify_flags = notify::parse_flags(&config.notify_keyspace_events).unwrap_or(0);
        let expired_flag = ExpiredFlag::default();
        let repl = crate::repl::ReplState::new(config.repl_backlog_size);
        let mut store = Store {
            dbs: (0..config.databases)
                .map(|_| Db::with_flag(expired_flag.clone()))
                .collect(),
            expired_flag,
            config,
            pubsub: PubSub::default(),
            blocking: Blocking::default(),
            watches: Watches::default(),
            backstops: Default::default(),
            clients: Clients::default(),
            stats: Stats::default(),
            now: crate::util::now_ms(),
            call_start_ns: 0,
            started: Instant::now(),
            notify_flags,
            shutdown_requested: false,
            active_expire: true,
            hooks: Vec::new(),
            leases: LeaseTable::default(),
            propagation: Propagation::default(),
            save: crate::persist::save::SaveState::new(),
            shared: std::sync::Weak::new(),
            aof: Default::default(),
            evict_policy: Policy::NoEviction,
            evict_pool: Pool::default(),
            evict_next_db: 0,
            evicting: false,
            peak_memory: 0,
            startup_memory: crate::alloc::used_memory(),
            output_limits: crate::outbuf::DEFAULT_LIMITS,
            repl,
            tracking: Default::default(),
            observe: Default::default(),
            pause: Default::default(),
            config_file: None,
            scripting: Default::default(),
        };
        store.reload_eviction();
        store.reload_output_limits();
        store
    }

    /// Registers a new connection; returns its client id. Its pushes (pub/sub
    /// messages, keyspace notifications) go to `push`; `kill` wakes it on CLIENT KILL.
    pub(crate) fn connect(
        &mut self,
        addr: String,
        laddr: String,
        push: PushSender,
        kill: Arc<Notify>,
        output: crate::outbuf::Output,
    ) -> u64 {
        self.stats.connections += 1;
        let authed = self.config.requirepass.is_none();
        let id = self
            .clients
            .connect(addr, laddr, authed, kill, output.clone());
        self.pubsub.register(id, push, output);
        id
    }

    /// After CONFIG SET client-output-buffer-limit (and at start): merges the classes
    /// it names over the current limits, as Redis does, and shows the whole result.
    pub(crate) fn reload_output_limits(&mut self) {
        let mut l = self.output_limits;
        // Checked by the settings table already; an error leaves the limits as they were.
        if l.apply(&self.config.client_output_buffer_limit).is_ok() {
            self.output_limits = l;
        }
        self.config.client_output_buffer_limit = self.output_limits.format();
        self.pubsub.limit = self.output_limits.pubsub;
    }

    /// Forgets a closed connection: its blocked command, WATCHes and subscriptions.
    pub(crate) fn disconnect(&mut self, id: u64) {
        self.blocking.unblock(id);
        self.repl.forget(id);
        self.track_disconnect(id);
        match self.clients.disconnect(id) {
            Some(c) => {
                self.watches.unwatch(id, &c.watched);
                self.pubsub.unregister(id, &c.channels, &c.patterns);
            }
            None => self
                .pubsub
                .unregister(id, &Default::default(), &Default::default()),
        }
    }

    /// Adds a modification hook.
    pub(crate) fn add_hook(&mut self, hook: Arc<dyn KeyHook>) {
        self.hooks.push(hook);
    }

    /// Adds a consumer of the command stream.
    pub(crate) fn add_propagation_sink(&mut self, sink: Arc<dyn PropagationSink>) {
        self.propagation.add_sink(sink);
    }

    /// Re-reads `notify-keyspace-events` after CONFIG SET.
    pub(crate) fn reload_notify_flags(&mut self) {
        self.notify_flags = notify::parse_flags(&self.config.notify_keyspace_events).unwrap_or(0);
    }

    /// Publishes a message; returns the receivers (PUBLISH).
    pub(crate) fn publish(&mut self, channel: &[u8], message: &[u8]) -> i64 {
        self.pubsub.publish(channel, message)
    }

    /// Keys in all databases.
    pub(crate) fn total_keys(&self) -> usize {
        self.dbs.iter().map(|d| d.len()).sum()
    }

    /// The counters the embedding process sees ([`crate::Engine::stats`]).
    pub(crate) fn stats(&self) -> crate::EngineStats {
        let st = &self.stats;
        crate::EngineStats {
            keys: self.total_keys() as u64,
            expires: self.dbs.iter().map(|d| d.volatile_len() as u64).sum(),
            connected_clients: self.clients.connected() as u64,
            blocked_clients: self.blocking.count() as u64,
            commands_processed: st.commands,
            connections_received: st.connections,
            rejected_connections: st.rejected_connections,
            expired_keys: st.expired_keys,
            evicted_keys: st.evicted_keys,
            changes: st.dirty,
            leases_outstanding: self.leases.len() as u64,
            leases_granted: self.leases.granted,
            leases_voided: self.leases.voided,
            ttl_backstops_applied: self.backstops.applied(),
        }
    }
}
