//! The command table and the dispatcher: arity, auth, MULTI queueing, subscribed-mode
//! checks, then the handler, then the work every command leaves behind (expired-key
//! notifications, serving clients blocked on keys that just received data).

use crate::client::Client;
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::Db;
use crate::net::reply::Reply;
use crate::store::Store;
use crate::types::hash::HashLimits;
use crate::types::zset::ZSetLimits;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Writes data.
pub const WRITE: u32 = 1 << 0;
/// Refused unless `enable-debug-command` allows it (DEBUG; Redis's `CMD_PROTECTED`).
pub const PROTECTED: u32 = 1 << 15;
/// Only reads data.
pub const READONLY: u32 = 1 << 1;
/// May grow memory.
pub const DENYOOM: u32 = 1 << 2;
/// Administrative.
pub const ADMIN: u32 = 1 << 3;
/// Pub/sub related.
pub const PUBSUB: u32 = 1 << 4;
/// Not allowed from scripts.
pub const NOSCRIPT: u32 = 1 << 5;
/// May block the client.
pub const BLOCKING: u32 = 1 << 6;
/// Runs in O(1) or O(log N).
pub const FAST: u32 = 1 << 7;
/// Allowed before AUTH.
pub const NO_AUTH: u32 = 1 << 8;
/// Allowed while loading.
pub const LOADING: u32 = 1 << 9;
/// Allowed on a stale replica.
pub const STALE: u32 = 1 << 10;
/// Not queued by MULTI: runs at once (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET).
pub const NO_QUEUE: u32 = 1 << 11;
/// Allowed in RESP2 subscribed mode.
pub const SUB_OK: u32 = 1 << 12;
/// A write that checks lease tokens itself (LEASESET): the dispatcher does not void
/// the leases of its keys, so a refused fill cannot void the holder's token.
pub const LEASE_AWARE: u32 = 1 << 13;

/// Reads a key's value without being read-only (LEASEGET, which grants leases):
/// client-side caching tracks its keys as a read's.
pub const TRACKED_READ: u32 = 1 << 16;

/// Redis's `movablekeys` on a row whose positions name a first key (EVAL_RO's
/// `3 3 1` is only the first of numkeys keys): client-side caching finds such a call's
/// keys by its key specs. Rows with no first key (ZUNION, XREAD) need no flag.
pub const MOVABLE_KEYS: u32 = 1 << 17;

/// A command handler: parses its own arguments (argv[0] is the command name).
pub type Handler = fn(&mut Ctx, &[Bytes]) -> CmdResult;

/// One row of the command table, as Redis's: name, arity, flags and key positions.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Exact argument count when positive, minimum when negative (argv[0] included).
    pub arity: i32,
    pub flags: u32,
    /// Position of the first key (0: no keys).
    pub first_key: i32,
    /// Position of the last key (-1: the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    pub handler: Handler,
}

impl std::fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl CommandSpec {
    /// Shorthand for a table row.
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: (i32, i32, i32),
        handler: Handler,
    ) -> Self {
        CommandSpec {
            name,
            arity,
            flags,
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
            handler,
        }
    }

    /// Flag names as COMMAND INFO lists them.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let names = [
            (WRITE, "write"),
            (READONLY, "readonly"),
            (DENYOOM, "denyoom"),
            (ADMIN, "admin"),
            (PUBSUB, "pubsub"),
            (NOSCRIPT, "noscript"),
            (BLOCKING, "blocking"),
            (LOADING, "loading"),
            (STALE, "stale"),
            (NO_AUTH, "no_auth"),
            (FAST, "fast"),
        ];
        names
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// The key arguments of a call, by the table's positions.
    pub fn keys<'a>(&self, args: &'a [Bytes]) -> Vec<&'a Bytes> {
        if self.first_key <= 0 {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            args.len() as i32 + self.last_key
        } else {
            self.last_key
        };
        let mut out = Vec::new();
        let mut i = self.first_key;
        while i <= last && (i as usize) < args.len() {
            out.push(&args[i as usize]);
            i += self.step.max(1);
        }
        out
    }
}

/// CLIENT LIST shows the command as `name|subcommand` (set by `table()` from
/// `cmd::client::CONTAINERS`, so the connection need not scan that list per command).
pub const LABEL_SUB: u32 = 1 << 14;

/// FNV-1a over the (already lower-cased) name. The table is fixed and built from our
/// own names, so a keyed hash buys nothing here, while SipHash cost ~150 instructions
/// per lookup on the hot path of every command.
#[derive(Default)]
pub struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Table = HashMap<&'static [u8], CommandSpec, std::hash::BuildHasherDefault<NameHasher>>;

/// The command table.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        crate::cmd::all()
            .into_iter()
            .map(|mut c| {
                if crate::cmd::client::CONTAINERS.contains(&c.name) && c.name != "debug" {
                    c.flags |= LABEL_SUB;
                }
                (c.name.as_bytes(), c)
            })
            .collect()
    })
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    table().get(&buf[..name.len()])
}

/// What a handler works with: the shared store and the calling client.
pub struct Ctx<'a> {
    pub(crate) store: &'a mut Store,
    pub(crate) client: &'a mut Client,
}

impl Ctx<'_> {
    /// The time of this command in Unix ms.
    pub fn now(&self) -> u64 {
        self.store.now
    }
    /// The selected database.
    pub fn db(&mut self) -> &mut Db {
        let i = self.client.db;
        &mut self.store.dbs[i]
    }
    /// Announces a change of `key` in the selected database to the write path
    /// (`crate::keyspace`): call it once per key a write changed, after changing it.
    /// `event` is the keyspace-notification name, `class` its class.
    pub fn key_event(&mut self, class: u32, event: &str, key: &[u8]) {
        let db = self.client.db;
        self.store.key_changed(db, key, class, event);
    }
    /// [`Ctx::key_event`] for a change Redis does not signal to WATCH: a stream's
    /// consumer-group state (XGROUP, XREADGROUP, XACK, XCLAIM, XAUTOCLAIM) and XSETID.
    pub fn key_event_unwatched(&mut self, class: u32, event: &str, key: &[u8]) {
        let db = self.client.db;
        self.store.key_changed_unwatched(db, key, class, event);
    }
    /// Whether the command stream has a consumer: build a replacement for
    /// [`Ctx::propagate_as`] only then.
    pub fn propagating(&self) -> bool {
        self.store.propagation.is_on()
    }
    /// Propagates `argv` instead of the command as called (Redis's
    /// `rewriteClientCommandVector`): for relative or random arguments.
    pub fn propagate_as(&mut self, argv: Vec<Bytes>) {
        if self.propagating() {
            self.store.propagation.replace(argv);
        }
    }
    /// Also propagates `argv` in the selected database, ahead of the command's own
    /// (Redis's `alsoPropagate`).
    pub fn also_propagate(&mut self, argv: Vec<Bytes>) {
        let db = self.client.db;
        self.store.propagation.also(db, argv);
    }
    /// Propagates nothing of the command itself (`preventCommandPropagation`).
    pub fn prevent_propagation(&mut self) {
        if self.propagating() {
            self.store.propagation.prevent();
        }
    }
    /// Whether this call re-runs a parked client's command (the dispatcher serving a
    /// key that received data), rather than a client's own request.
    pub fn serving_blocked(&self) -> bool {
        self.store.blocking.is_blocked(self.client.id)
    }
    /// Hash encoding thresholds from the config.
    pub fn hash_limits(&self) -> HashLimits {
        HashLimits {
            max_entries: self.store.config.hash_max_listpack_entries,
            max_value: self.store.config.hash_max_listpack_value,
        }
    }
    /// Sorted set encoding thresholds from the config.
    pub fn zset_limits(&self) -> ZSetLimits {
        ZSetLimits {
            max_entries: self.store.config.zset_max_listpack_entries,
            max_value: self.store.config.zset_max_listpack_value,
        }
    }
    /// Stream block limits from the config.
    pub fn stream_limits(&self) -> crate::types::stream::StreamLimits {
        crate::types::stream::StreamLimits {
            max_bytes: self.store.config.stream_node_max_bytes,
            max_entries: self.store.config.stream_node_max_entries,
        }
    }
    /// `set-max-intset-entries`.
    pub fn intset_max(&self) -> usize {
        self.store.config.set_max_intset_entries
    }
}

fn unknown_command(args: &[Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]);
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for a in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let s = String::from_utf8_lossy(a);
        let s: String = s.chars().take(room).collect();
        rest.push_str(&format!("'{s}' "));
    }
    Reply::Error(format!(
        "ERR unknown command '{name}', with args beginning with: {rest}"
    ))
}

/// Runs one client request through every check, as Redis's `processCommand`.
pub(crate) fn execute(store: &mut Store, client: &mut Client, args: Vec<Bytes>) -> Reply {
    let spec = lookup(&args[0]);
    execute_spec(store, client, spec, args)
}

/// `execute` with the table lookup of `args[0]` already done (the connection looks the
/// name up once per request for its own checks).
pub(crate) fn execute_spec(
    store: &mut Store,
    client: &mut Client,
    spec: Option<&'static CommandSpec>,
    args: Vec<Bytes>,
) -> Reply {
    if store.tracking.is_idle() {
        return checked(store, client, spec, args);
    }
    // Client-side caching: the client's own changes are sent after its reply, and
    // a CLIENT CACHING flag lasts one command (all of a transaction; CLIENT
    // subcommands keep it), as Redis's resetClient.
    store.tracking.begin(client);
    let reply = checked(store, client, spec, args);
    if client.multi.is_none() && spec.is_none_or(|s| s.name != "client") {
        store.tracking.reset_caching(client.id);
    }
    if !store.tracking.has_pending() {
        store.tracking.end();
    }
    reply
}

/// [`execute_spec`]'s checks and the call.
fn checked(
    store: &mut Store,
    client: &mut Client,
    spec: Option<&'static CommandSpec>,
    args: Vec<Bytes>,
) -> Reply {
    // One clock read for the command's time and the start of its duration (`call`),
    // as Redis's call() without a hardware clock (`ustime()` for both): clock reads
    // are among the costliest steps of a pipelined command.
    let start_ns = crate::util::now_ns();
    store.now = start_ns / 1_000_000;
    let Some(spec) = spec else {
        if client.multi.is_some() {
            client.multi_error = true;
        }
        let reply = unknown_command(&args);
        if let Reply::Error(e) = &reply {
            crate::observe::rejected(store, None, &args, e);
        }
        return reply;
    };
    let argc = args.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return reject(
            store,
            client,
            spec,
            &args,
            CmdError::Arity(spec.name.to_string()),
        );
    }
    if spec.flags & PROTECTED != 0 && !protected_allowed(&store.config.enable_debug_command, client)
    {
        return reject(store, client, spec, &args, CmdError::DebugNotAllowed);
    }
    if !client.authenticated && spec.flags & NO_AUTH == 0 {
        return reject(store, client, spec, &args, CmdError::NoAuth);
    }
    // Persistence gates, as Redis's processCommand; the embedding process's own
    // commands (the sidecar's deletes, which must land) pass them.
    if (!store.save.last_bgsave_ok || store.save.loading) && client.id != 0 {
        if crate::persist::save::writes_denied(store)
            && (spec.flags & WRITE != 0 || spec.name == "ping")
        {
            let e = CmdError::Other(MISCONF.into());
            return reject(store, client, spec, &args, e);
        }
        if store.save.loading && spec.flags & LOADING == 0 {
            let e = CmdError::Other("LOADING Redis is loading the dataset in memory".into());
            return reject(store, client, spec, &args, e);
        }
    }
    // A replica applies whatever its primary sends (Redis exempts the master client).
    if store.config.maxmemory != 0 && !client.master && out_of_memory(store, client, spec) {
        return reject(store, client, spec, &args, CmdError::Oom);
    }
    // Redis's processCommand bounds the tracking table here.
    if store.tracking.client_count() > 0 {
        store.track_limit();
    }
    if store.repl.active || store.config.min_replicas_to_write > 0 {
        if let Some(e) = crate::repl::gate(store, client, spec) {
            return reject(store, client, spec, &args, e);
        }
    }
    if client.in_pubsub_mode() && spec.flags & SUB_OK == 0 {
        let e = CmdError::err(format!(
            "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            full_name(spec, &args)
        ));
        return reject(store, client, spec, &args, e);
    }
    if client.multi.is_some() && spec.flags & NO_QUEUE == 0 {
        if let Some(q) = client.multi.as_mut() {
            q.push(args);
        }
        return Reply::Simple("QUEUED");
    }
    store.call_start_ns = start_ns;
    let reply = call(store, client, spec, &args);
    after_command(store);
    // After the expired keys were announced: a read of a key that just expired
    // tracks it again, as in Redis (which deletes it during the read).
    remember_keys(store, client, spec, &args);
    reply
}

/// Client-side caching: a read-only command of a tracking client remembers its keys
/// (Redis's `trackingRememberKeys`, from `call`). Inlined: every command passes here,
/// and nearly all leave at the first test.
#[inline]
pub(crate) fn remember_keys(
    store: &mut Store,
    client: &Client,
    spec: &CommandSpec,
    args: &[Bytes],
) {
    if spec.flags & (READONLY | TRACKED_READ) == 0
        || spec.flags & PUBSUB != 0
        || store.tracking.is_idle()
    {
        return;
    }
    if store.tracking.get(client.id).is_some() {
        if spec.first_key > 0 && spec.flags & MOVABLE_KEYS == 0 {
            store
                .tracking
                .remember(client.id, spec.keys(args).into_iter());
        } else {
            // Movable keys (ZUNION's numkeys, XREAD's STREAMS, EVAL_RO's numkeys, ...):
            // found as COMMAND GETKEYS finds them, as Redis's
            // getKeysFromCommandWithSpecs.
            let found = crate::cmd::command_info::locate_keys(args)
                .map(|(f, _)| f)
                .unwrap_or_default();
            store
                .tracking
                .remember(client.id, found.into_iter().map(|(i, _)| &args[i]));
        }
    }
}

/// The refusal of writes after a failed BGSAVE (`shared.bgsaveerr`).
pub(crate) const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

/// Whether `enable-debug-command` (`no`, `yes`, `local`) lets `client` run DEBUG
/// (Redis's `allowProtectedAction`): `local` means a loopback connection. The
/// embedding process itself (an in-process client, without an address) always may.
fn protected_allowed(setting: &str, client: &Client) -> bool {
    if client.addr.is_empty() {
        return true;
    }
    match setting {
        "yes" => true,
        "local" => {
            let host = client
                .addr
                .rsplit_once(':')
                .map_or(client.addr.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// Frees memory by eviction if the process is over `maxmemory`; true when it could
/// not and the command must be refused (Redis's `processCommand`): a command flagged
/// deny-oom, an EXEC with one queued, or anything but EXEC/DISCARD/QUIT/RESET inside
/// MULTI (queueing takes memory too). Reads and deletes still run.
fn out_of_memory(store: &mut Store, client: &Client, spec: &CommandSpec) -> bool {
    let failed = store.perform_evictions() == crate::keyspace::evict::Evict::Fail;
    // Evicted keys' DELs go out now, ahead of whatever runs next.
    store.propagation.flush();
    if !failed {
        return false;
    }
    let queued_denyoom = || {
        client.multi.iter().flatten().any(|a| {
            a.first()
                .and_then(|n| lookup(n))
                .is_some_and(|s| s.flags & DENYOOM != 0)
        })
    };
    spec.flags & DENYOOM != 0
        || (spec.name == "exec" && queued_denyoom())
        || (client.multi.is_some() && !matches!(spec.name, "exec" | "discard" | "quit" | "reset"))
}

/// Redis 7.0's container commands, whose subcommands have their own names
/// (`pubsub|numsub`) in error messages.
const CONTAINERS: &[&str] = &[
    "acl", "client", "cluster", "command", "config", "function", "latency", "memory", "module",
    "object", "pubsub", "script", "slowlog", "xgroup", "xinfo",
];

/// The command's full name as Redis reports it: `container|subcommand` or `name`.
fn full_name(spec: &CommandSpec, args: &[Bytes]) -> String {
    match args.get(1) {
        Some(sub) if CONTAINERS.contains(&spec.name) => format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ),
        _ => spec.name.to_string(),
    }
}

/// Redis's `rejectCommand`: a rejected command dooms an open transaction, and a
/// rejected EXEC discards it (and the WATCHes) with an `EXECABORT` that names the reason.
fn reject(
    store: &mut Store,
    client: &mut Client,
    spec: &CommandSpec,
    args: &[Bytes],
    e: CmdError,
) -> Reply {
    let mut msg = e.to_string();
    if spec.name == "exec" {
        crate::cmd::transactions::discard_transaction(store, client);
        let reason = msg.strip_prefix("ERR ").unwrap_or(&msg);
        msg = format!("EXECABORT Transaction discarded because of: {reason}");
    } else if client.multi.is_some() {
        client.multi_error = true;
    }
    crate::observe::rejected(store, Some(spec), args, &msg);
    Reply::Error(msg)
}

/// Runs a handler with no checks but the table lookup's (EXEC uses it for queued
/// commands, the blocking machinery for retries), then the write path's per-command
/// work ([`Store::command_done`]).
pub(crate) fn call(
    store: &mut Store,
    client: &mut Client,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Reply {
    store.stats.commands += 1;
    let dirty = store.stats.dirty;
    let outer = store
        .propagation
        .is_on()
        .then(|| store.propagation.begin_command());
    // The dispatcher's clock read when it just made one, else (a command of EXEC or
    // of a script, a test) a read of our own.
    let started = match std::mem::take(&mut store.call_start_ns) {
        0 => crate::util::now_ns(),
        ns => ns,
    };
    let mut ctx = Ctx { store, client };
    let reply = match (spec.handler)(&mut ctx, args) {
        Ok(r) => r,
        Err(e) => e.into(),
    };
    let changed = store.stats.dirty != dirty;
    store.command_done(spec, args, client.db, changed, outer);
    // Counters, slow log, latency monitor, MONITOR feed (`crate::observe`).
    crate::observe::call_done(store, client, spec, args, started, &reply);
    reply
}

/// Work after every top-level command (an execution unit): announce expired keys,
/// hand the unit's propagation to the sinks, then serve blocked clients whose keys
/// received data, oldest first (each its own unit).
pub(crate) fn after_command(store: &mut Store) {
    store.flush_expired();
    store.propagation.flush();
    serve_blocked(store);
}

fn serve_blocked(store: &mut Store) {
    while let Some((db, key)) = store.blocking.next_ready() {
        store.now = crate::util::now_ms();
        for id in store.blocking.waiters_of(db, &key) {
            let Some(b) = store.blocking.get(id) else {
                continue;
            };
            // One rule for every family: served only if the key holds, now that the
            // command or transaction that touched it has ended, the type the client
            // waits for. Others keep waiting (Redis's `handleClientsBlockedOnKeys`).
            // XREADGROUP is the exception Redis makes: its key gone (or of another
            // type) releases it with an error rather than leaving it waiting.
            let now = store.now;
            let holds = store.dbs[db]
                .get_live(&key, now)
                .is_some_and(|e| b.kind.holds(&e.value));
            if !holds {
                if b.gone.is_some() {
                    if let Some(b) = store.blocking.unblock(id) {
                        if let Some(r) = b.gone {
                            let _ = b.tx.send(r);
                        }
                    }
                }
                continue;
            }
            let kind = b.kind;
            let args = b.args.clone();
            let Some(spec) = lookup(&args[0]) else {
                continue;
            };
            // The blocked client's own record: it is in the registry while its
            // connection waits outside the lock.
            let Some(mut client) = store.clients.checkout(id) else {
                continue;
            };
            store.blocking.serving = Some(key.clone());
            let reply = call(store, &mut client, spec, &args);
            store.blocking.serving = None;
            let still_blocked = client.block.take().is_some();
            store.clients.checkin(client);
            if still_blocked {
                // Nothing left for this client: the list or sorted set is empty again,
                // so none after it can be served either. A stream reader waits for
                // entries after its own ID: the next one may still be served.
                if kind == crate::blocking::BlockKind::Stream {
                    continue;
                }
                break;
            }
            if let Some(b) = store.blocking.unblock(id) {
                let _ = b.tx.send(reply);
            }
            store.flush_expired();
            store.propagation.flush();
        }
    }
}
