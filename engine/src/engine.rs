//! The engine as the embedding process sees it: run commands in process, read its
//! counters, register hooks, stop it. Everything else stays behind the store's lock
//! inside the crate.

use crate::client::Client;
use crate::command;
use crate::config::EngineConfig;
use crate::keyspace::propagate::PropagationSink;
use crate::keyspace::KeyHook;
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// State shared by the server's tasks and in-process users of the engine.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The running script's state, read without the lock (BUSY replies, KILL).
    pub(crate) script: Arc<crate::script::RunState>,
    /// Accepted connections, counted before they register (for `maxclients`).
    connections: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Locks the store. A panic in a handler must not take the whole server down with a
    /// poisoned lock, so poisoning is ignored: every handler leaves the store consistent
    /// between its own steps.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock()
    }

    /// The lock, if it comes within `wait` (a running script may hold it for long).
    pub(crate) fn lock_for(&self, wait: std::time::Duration) -> Option<MutexGuard<'_, Store>> {
        self.store.try_lock_for(wait)
    }

    /// The lock for a connection: `None` while a script is busy (the caller answers
    /// BUSY), without ever parking for the whole length of a script.
    pub(crate) fn lock_unless_busy(&self) -> Option<MutexGuard<'_, Store>> {
        loop {
            if self.script.busy() {
                return None;
            }
            if let Some(g) = self.lock_for(std::time::Duration::from_millis(2)) {
                return Some(g);
            }
        }
    }

    /// Asks every task to stop.
    pub(crate) fn trigger_shutdown(&self) {
        // send_replace, not send: the value must stick even while nobody subscribes
        // yet (a pipeline failing before the server's accept loop starts).
        self.shutdown.send_replace(true);
    }

    /// A receiver that changes to `true` on shutdown.
    pub(crate) fn subscribe_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Counts an accepted connection; false (and not counted) when `max` are open.
    pub(crate) fn client_arrived(&self, max: usize) -> bool {
        if self.connections.fetch_add(1, Ordering::SeqCst) >= max {
            self.client_gone();
            return false;
        }
        true
    }

    /// Counts a closed connection.
    pub(crate) fn client_gone(&self) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// Open connections.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A snapshot of the engine's counters: what `/status` and `/metrics` show of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Keys in all databases (DBSIZE summed: expired keys not yet reclaimed count).
    pub keys: u64,
    /// Keys with a TTL, all databases.
    pub expires: u64,
    /// Connected clients (INFO `connected_clients`).
    pub connected_clients: u64,
    /// Clients waiting in a blocking command (INFO `blocked_clients`).
    pub blocked_clients: u64,
    /// Commands run since start or CONFIG RESETSTAT (INFO `total_commands_processed`).
    pub commands_processed: u64,
    /// Connections accepted (INFO `total_connections_received`).
    pub connections_received: u64,
    /// Connections refused at `maxclients` (INFO `rejected_connections`).
    pub rejected_connections: u64,
    /// Keys removed because their TTL passed (INFO `expired_keys`).
    pub expired_keys: u64,
    /// Keys removed to stay under `maxmemory` (INFO `evicted_keys`).
    pub evicted_keys: u64,
    /// Keyspace changes since start (Redis's `server.dirty`, never reset here; INFO's
    /// `rdb_changes_since_last_save` counts from the last save).
    pub changes: u64,
    /// Lease tokens outstanding (LEASEGET), including ones past the interval not yet
    /// swept.
    pub leases_outstanding: u64,
    /// Lease tokens granted since start.
    pub leases_granted: u64,
    /// Lease tokens voided by a modification of their key.
    pub leases_voided: u64,
    /// Writes whose TTL a backstop added or shortened.
    pub ttl_backstops_applied: u64,
}

/// An engine usable in-process (the sidecar's embedded target) and by the server.
#[derive(Debug, Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// A new, empty engine.
    pub fn new(config: EngineConfig) -> Self {
        let (tx, _) = watch::channel(false);
        Engine {
            shared: Arc::new_cyclic(|weak| {
                let mut store = Store::new(config);
                store.shared = weak.clone();
                Shared {
                    script: store.scripting.run.clone(),
                    store: Mutex::new(store),
                    connections: AtomicUsize::new(0),
                    shutdown: tx,
                }
            }),
        }
    }

    /// The state the server's tasks share with this handle.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs one command in database `db` as a trusted in-process client.
    pub fn execute(&self, db: usize, args: Vec<Bytes>) -> Reply {
        let mut store = self.shared.lock();
        let mut client = Client::in_process(db);
        if args.is_empty() {
            return Reply::error("ERR empty command");
        }
        let reply = command::execute(&mut store, &mut client, args);
        store.track_broadcast();
        reply
    }

    /// Runs several commands atomically (no other client runs in between).
    pub fn execute_batch(&self, db: usize, cmds: Vec<Vec<Bytes>>) -> Vec<Reply> {
        let mut store = self.shared.lock();
        let mut client = Client::in_process(db);
        let replies = cmds
            .into_iter()
            .map(|args| {
                if args.is_empty() {
                    Reply::error("ERR empty command")
                } else {
                    command::execute(&mut store, &mut client, args)
                }
            })
            .collect();
        store.track_broadcast();
        replies
    }

    /// Writes every database to `out` as an RDB file (Redis 7.0, version 10), as of
    /// this moment: other clients wait while it runs (SAVE's semantics).
    pub fn write_rdb(
        &self,
        out: impl std::io::Write,
        opts: &crate::persist::rdb::WriteOptions,
    ) -> Result<(), crate::persist::rdb::RdbError> {
        let store = self.shared.lock();
        let opts = crate::persist::rdb::WriteOptions {
            functions: store.scripting.functions.codes(),
            ..opts.clone()
        };
        crate::persist::rdb::write_rdb(&store.dbs, crate::util::now_ms(), &opts, out)
    }

    /// Replaces every database with those of an RDB file; returns what the file said
    /// of itself (version, aux fields, what was skipped). Consumers of the write path
    /// see each replaced database as flushed. On an error nothing is replaced.
    pub fn load_rdb(
        &self,
        input: impl std::io::Read,
        opts: &crate::persist::rdb::LoadOptions,
    ) -> Result<crate::persist::rdb::Loaded, crate::persist::rdb::RdbError> {
        let loaded = crate::persist::rdb::read_rdb(input, crate::util::now_ms(), opts)?;
        self.shared.lock().load_dbs(loaded)
    }

    /// Saves the RDB file as shutting down requires, when save points are set
    /// (Redis on SIGTERM): call after [`crate::Server::run`] returned. Nothing when a
    /// SHUTDOWN command already did it (or was told NOSAVE).
    pub fn save_on_exit(&self) -> Result<(), crate::persist::PersistError> {
        self.shared.save_on_exit()
    }

    /// Marks the dataset as loading (or done): while it is, network clients get
    /// `-LOADING Redis is loading the dataset in memory` for every command not
    /// allowed while loading, and INFO says `loading:1`; in-process commands
    /// ([`Engine::execute`]) still run. Coherent holds clients off this way until the
    /// binlog caught up with a loaded snapshot.
    pub fn set_loading(&self, loading: bool) {
        let mut store = self.shared.lock();
        if loading && !store.save.loading {
            store.save.loading_started = crate::util::now_ms() / 1000;
        }
        store.save.loading = loading;
    }

    /// Whether the dataset is marked as loading ([`Engine::set_loading`]).
    pub fn is_loading(&self) -> bool {
        self.shared.lock().save.loading
    }

    /// Sets (or with `None` removes) an aux field written into every RDB file from
    /// now on (SAVE, BGSAVE, shutdown): Coherent records the binlog position the data
    /// is consistent with this way. A BGSAVE records the value set when it began.
    pub fn set_save_aux(&self, name: &str, value: Option<Bytes>) {
        let mut store = self.shared.lock();
        let aux = &mut store.save.aux;
        aux.retain(|(k, _)| k.as_ref() != name.as_bytes());
        if let Some(v) = value {
            // Replicas get it in the stream, at this point of it (a PUBLISH that
            // Redis replicas run harmlessly and engine replicas record).
            if store.repl.active && !store.repl.is_replica() {
                let mut channel = crate::repl::replica::AUX_CHANNEL.to_vec();
                channel.extend_from_slice(name.as_bytes());
                store.repl.backlog.feed_command(&[b"PUBLISH", &channel, &v]);
            }
            store
                .save
                .aux
                .push((Bytes::copy_from_slice(name.as_bytes()), v));
        }
    }

    /// The value of an aux field set by [`Engine::set_save_aux`], or, on a replica,
    /// the primary's (it comes with the full sync's RDB and in the stream): a
    /// promoted replica knows the binlog position its data is consistent with.
    pub fn save_aux(&self, name: &str) -> Option<Bytes> {
        let store = self.shared.lock();
        store
            .save
            .aux
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v.clone())
    }

    /// The replication role now: a primary, or a replica of `host:port`.
    pub fn role(&self) -> crate::Role {
        self.shared.lock().repl.role()
    }

    /// A receiver that sees every change of [`Engine::role`] (REPLICAOF, promotion,
    /// the link going up or down): the embedding process pauses what only a primary
    /// may do while the engine is a replica.
    pub fn watch_role(&self) -> watch::Receiver<crate::Role> {
        self.shared.lock().repl.subscribe_role()
    }

    /// Writes `marker` into the AOF stream at this point, between two commands (for
    /// the binlog position the data is consistent with): an annotation line
    /// `#COHERENT:<marker>` that Redis and `redis-check-aof` skip, carried into the
    /// base of the next rewrite (as the RDB aux field `coherent-marker`, or the same
    /// line). Refused when the AOF is off or the marker is not one short line.
    pub fn aof_marker(&self, marker: &[u8]) -> Result<(), crate::persist::aof::MarkerError> {
        crate::persist::aof::mark(&mut self.shared.lock(), marker)
    }

    /// The last marker the AOF held when it was loaded at start, or written since.
    pub fn last_aof_marker(&self) -> Option<Bytes> {
        self.shared.lock().aof.marker.clone()
    }

    /// Names the config file the engine's settings came from and the TOML section
    /// (table) they are in: CONFIG REWRITE writes the running settings back there.
    /// Without one, CONFIG REWRITE answers Redis's "The server is running without a
    /// config file".
    pub fn set_config_file(&self, path: std::path::PathBuf, section: &str) {
        self.shared.lock().config_file = Some(crate::config::rewrite::ConfigFile {
            path,
            section: section.to_string(),
        });
    }

    /// The engine's counters, read at once.
    pub fn stats(&self) -> EngineStats {
        self.shared.lock().stats()
    }

    /// Adds a hook that sees every modification of the keyspace (see [`KeyHook`]).
    pub fn add_key_hook(&self, hook: Arc<dyn KeyHook>) {
        self.shared.lock().add_hook(hook);
    }

    /// Adds a consumer of the command stream: every change to the keyspace as the
    /// commands that replay it (see [`PropagationSink`]). The AOF and replication
    /// plug in here.
    pub fn add_propagation_sink(&self, sink: Arc<dyn PropagationSink>) {
        self.shared.lock().add_propagation_sink(sink);
    }

    /// Asks the server (if one runs this engine) and every connection to stop.
    pub fn trigger_shutdown(&self) {
        self.shared.trigger_shutdown();
    }

    /// Resolves when a shutdown was requested (SHUTDOWN, or `trigger_shutdown`).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shared.subscribe_shutdown();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
