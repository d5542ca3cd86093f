//! Runs the connector's pipeline inside `coherent serve`: binlog -> rules -> the
//! target -> checkpoint, with the connector's own run loop ([`Pipeline::run`]).
//!
//! This module wires it (checkpoint store, target, retry queue and its worker, TTL
//! sweeper, binlog source) and observes it: [`Publisher`] turns each applied
//! transaction into a trace, copies the counters into [`PipelineState`] for
//! `/readyz`, `/status` and `/metrics`, and hands the transaction to the online
//! audit checker.

use crate::sweep::SweptKeys;
use anyhow::{Context as _, Result};
use connectors::binlog::decode::TableFilter;
use connectors::binlog::{BinlogSource, OnPurged, Position, SourceProbe, Transaction};
use connectors::checkpoint::{AnyCheckpointStore, CheckpointStore as _};
use connectors::pipeline::lag::Lag;
use connectors::pipeline::{Observer, Report};
use connectors::retry::{RetryQueue, RetryStatsSnapshot};
use connectors::rules::Rules;
use connectors::targets::stack::{self, StackConfig};
use connectors::targets::AnyTarget;
use connectors::{ConnectorConfig, Pipeline, PipelineError, PipelineStats};
use opentelemetry::context::FutureExt as _;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// The RDB aux field that carries the binlog position the engine's data is consistent
/// with (a [`Position`] as JSON): every delete of every transaction before it had
/// landed in the engine when the snapshot began.
pub const POSITION_AUX: &str = "coherent-binlog-position";

/// How the embedded engine's data stands with the binlog at start.
#[derive(Debug, Clone)]
pub enum EngineStart {
    /// The engine holds nothing persisted (empty, or a file without a position that
    /// was flushed): consistent with any position.
    Empty,
    /// Loaded from a snapshot consistent with this position: the binlog is replayed
    /// from it, and clients get `-LOADING` until the replay caught up.
    Warm(Position),
    /// The target is not the embedded engine: the engine's data is not the cache.
    NotTarget,
}

/// The position a loaded snapshot carries, if any; an error when it carries one that
/// cannot be read.
pub fn snapshot_position(aux: Option<&[u8]>) -> Result<Option<Position>> {
    aux.map(|v| {
        serde_json::from_slice::<Position>(v).map_err(|e| {
            anyhow::anyhow!("the RDB aux field {POSITION_AUX} is not a binlog position: {e}")
        })
    })
    .transpose()
}

/// What the admin server and the metrics read about the pipeline.
#[derive(Debug, Default)]
pub struct PipelineState {
    probe: OnceLock<Arc<SourceProbe>>,
    /// The retry queue, read live: its worker drains it while no transaction arrives,
    /// and `/status` must not show the depth of the last applied transaction.
    retry_queue: OnceLock<LiveRetry>,
    /// The pipeline's lag, read live (it grows while a transaction waits).
    lag: OnceLock<Arc<Lag>>,
    /// Backfills run because the checkpoint's binlog was purged (`on_purged =
    /// "invalidate"`).
    pub purged_backfills: std::sync::atomic::AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stats: PipelineStats,
    /// The error that stopped the pipeline.
    failed: Option<String>,
    /// `[ha]` enabled: this process's role.
    ha: Option<HaStatus>,
    /// Why the pipeline is paused (the embedded engine is a replica).
    paused: Option<String>,
    /// Where the pipeline resumed after the engine's last promotion.
    resumed: Option<Resumed>,
}

/// Where the pipeline resumed when its engine was promoted from replica to primary,
/// as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// `"replicated"`: the binlog position that came with the replicated data (the
    /// marker the old primary's sidecar wrote); `"checkpoint"`: none came, this
    /// sidecar's own checkpoint (or `[mysql] start` without one).
    pub from: &'static str,
    /// The position resumed from (`None`: `[mysql] start`).
    pub position: Option<Position>,
    /// Unix seconds of the promotion.
    pub at: u64,
}

/// `[ha]`: this process's role, as `/status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HaStatus {
    /// `"leader"` or `"standby"`.
    pub role: &'static str,
    /// Unix seconds when it took this role.
    pub since: u64,
    /// The MySQL lock name.
    pub lock: String,
}

impl HaStatus {
    fn new(role: &'static str, lock: &str) -> Self {
        HaStatus {
            role,
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            lock: lock.to_string(),
        }
    }

    /// This process leads (holds the lock).
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// The retry queue as [`PipelineState`] holds it (the queue itself has no `Debug`).
struct LiveRetry(RetryQueue);

impl std::fmt::Debug for LiveRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveRetry").field(&self.0.stats()).finish()
    }
}

/// A point-in-time copy of [`PipelineState`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Counters of the pipeline.
    pub stats: PipelineStats,
    /// Seconds from commit to deletes applied for the last transaction (a lower bound
    /// exact to within 1 s, see `connectors::clock::lag_since`); while a transaction
    /// waits, the age of the oldest waiting one.
    pub lag_seconds: f64,
    /// A binlog stream is open.
    pub connected: bool,
    /// Binlog events received.
    pub events: u64,
    /// Heartbeats received (see `SourceProbe::heartbeats`).
    pub heartbeats: u64,
    /// Transactions the source delivered.
    pub delivered: u64,
    /// Reconnects after a failure.
    pub reconnects: u64,
    /// Wall-clock seconds of the last checkpoint write (0 = none yet).
    pub checkpoint_saved_at: f64,
    /// The last error seen by the source, or the one that stopped the pipeline.
    pub last_error: Option<String>,
    /// Set when the pipeline stopped on an error.
    pub failed: Option<String>,
    /// Counters of the retry queue (depth, retries, dead letters).
    pub retry: RetryStatsSnapshot,
    /// `[ha]` enabled: the role.
    pub ha: Option<HaStatus>,
    /// Set while the pipeline is paused because the embedded engine is a replica:
    /// `"engine is a replica of host:port"`.
    pub paused: Option<String>,
    /// Where the pipeline resumed after the engine's last promotion.
    pub resumed: Option<Resumed>,
}

impl PipelineState {
    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let (stats, failed, ha, paused, resumed) = match self.inner.lock() {
            Ok(g) => (
                g.stats.clone(),
                g.failed.clone(),
                g.ha.clone(),
                g.paused.clone(),
                g.resumed.clone(),
            ),
            Err(_) => Default::default(),
        };
        let probe = self.probe.get();
        Snapshot {
            lag_seconds: self.lag.get().map_or(0.0, |l| l.seconds()),
            connected: probe.is_some_and(|p| p.connected()) && failed.is_none(),
            events: probe.map_or(0, |p| p.events()),
            heartbeats: probe.map_or(0, |p| p.heartbeats()),
            delivered: probe.map_or(0, |p| p.delivered()),
            reconnects: probe.map_or(0, |p| p.reconnects()),
            checkpoint_saved_at: stats.checkpoint_saved_at,
            last_error: failed
                .clone()
                .or_else(|| probe.and_then(|p| p.last_error())),
            failed,
            stats,
            retry: self
                .retry_queue
                .get()
                .map(|q| q.0.stats())
                .unwrap_or_default(),
            ha,
            paused,
            resumed,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut g) = self.inner.lock() {
            f(&mut g);
        }
    }

    fn publish(&self, stats: &PipelineStats) {
        self.update(|g| g.stats.clone_from(stats));
    }
}

/// The online audit checker to feed: its config and counters (`[audit]`, sample > 0).
pub type Audit = (
    crate::audit::online::AuditConfig,
    Arc<crate::audit::online::AuditState>,
);

/// Runs the pipeline until `stop` resolves (then flushes the checkpoint and returns
/// Ok) or it fails (checkpoint flushed up to the last applied transaction, error
/// recorded in `state`, returned). With `audit`, every applied transaction is also
/// handed to the online checker. Keys the TTL sweeper fixes are counted in `swept`.
/// `replicaof` is `[engine] replicaof` (the engine becomes that replica only once its
/// server runs): while the embedded engine is a replica the pipeline is paused.
#[allow(clippy::too_many_arguments)] // the wiring of serve, each part once
pub async fn run(
    cfg: ConnectorConfig,
    rules: Rules,
    engine: engine::Engine,
    state: Arc<PipelineState>,
    audit: Option<Audit>,
    swept: SweptKeys,
    start: EngineStart,
    replicaof: Option<String>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let replica_at_start = !matches!(start, EngineStart::NotTarget)
        && (replicaof.is_some() || replica_of(&engine.role()).is_some());
    // A warm start holds clients off until the replay caught up. A replica replays
    // nothing: its data comes from its primary (a full sync replaces what it loaded).
    let watcher = match &start {
        EngineStart::Warm(_) if replica_at_start => {
            tracing::info!("warm start of a replica: no binlog replay, its primary's data replaces the snapshot");
            engine.set_loading(false);
            None
        }
        EngineStart::Warm(from) => Some(tokio::spawn(catch_up(
            cfg.mysql()?.url.clone(),
            from.clone(),
            engine.clone(),
            state.clone(),
        ))),
        _ => None,
    };
    let res = run_inner(
        cfg,
        rules,
        engine,
        &state,
        audit,
        swept,
        start,
        replica_at_start.then(|| replicaof.unwrap_or_default()),
        stop,
    )
    .await;
    if let Some(w) = watcher {
        w.abort();
    }
    if let Err(e) = &res {
        let msg = format!("{e:#}");
        tracing::error!(error = %msg, "pipeline stopped");
        state.update(|g| g.failed = Some(msg));
    }
    res
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    cfg: ConnectorConfig,
    rules: Rules,
    engine: engine::Engine,
    state: &PipelineState,
    audit: Option<Audit>,
    swept: SweptKeys,
    start: EngineStart,
    paused_at_start: Option<String>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let persisted = engine.clone();
    // The embedded engine's role: the pipeline writes into it only while it is a
    // primary (an external target does not care).
    let follow_role = !matches!(start, EngineStart::NotTarget);
    let mut roles = engine.watch_role();
    // The checker gets transactions only once applied; with sample = 0 there is no
    // feed and the observer sends nothing.
    let (feed, checker) = match audit {
        Some((config, st)) => {
            let (feed, task) = crate::audit::online::spawn(&config, st, &cfg, engine.clone())?;
            (Some(feed), Some(task))
        }
        None => (None, None),
    };
    let mysql = cfg.mysql()?;
    // The data directory (and any other directory a data file is in) is made now,
    // not at load: `check` and `audit` write nothing.
    for file in cfg.data_files() {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
            })?;
        }
    }
    // `server_id = "auto"`: said at start (operators match it with SHOW SLAVE
    // HOSTS), and refused when a connected replica already has it, rather than
    // letting the two disconnect each other forever.
    if let Some(host) = &mysql.auto_host {
        tracing::info!(server_id = mysql.server_id, host = %host, "server_id = \"auto\": derived from the host name");
        let checked =
            connectors::binlog::server::check_auto_server_id(&mysql.url, mysql.server_id, host)
                .await?;
        if !checked {
            tracing::warn!(
                server_id = mysql.server_id,
                "server_id = \"auto\": the user may not list the server's replicas, so a clash with another replica's id is not checked (grant REPLICATION MASTER ADMIN on MariaDB, REPLICATION SLAVE on MySQL)"
            );
        }
    }
    // `[ha]`: wait as a standby (ready, engine serving) until this process holds the
    // lock; only then open anything that writes. `stop` ends the wait too.
    let mut stop = std::pin::pin!(stop);
    let lease = if cfg.ha.enabled {
        let row = cfg
            .checkpoint
            .pipeline
            .clone()
            .unwrap_or_else(|| mysql.server_id.to_string());
        let name = cfg.ha.lock_name(&row);
        let url = cfg.checkpoint.url.as_deref().unwrap_or(&mysql.url);
        state.update(|g| g.ha = Some(HaStatus::new("standby", &name)));
        tracing::info!(lock = %name, "HA: standby, waiting for the leader's lock");
        let mut said = String::new();
        let wait = connectors::ha::acquire(url, &name, &cfg.ha, |why| {
            // Said once per change, not every poll.
            if why != said {
                tracing::info!(lock = %name, "HA: standby, lock {why}");
                said = why.to_string();
            }
        });
        let lease = tokio::select! {
            () = &mut stop => return Ok(()),
            lease = wait => Arc::new(lease),
        };
        tracing::info!(lock = %name, connection_id = lease.connection_id(), "HA: leader (holding the lock); resuming from the last checkpoint");
        state.update(|g| g.ha = Some(HaStatus::new("leader", &name)));
        Some(lease)
    } else {
        None
    };
    // store = "file" or "mysql" (a row in the migrations/ schema, via sqlx).
    let mut store = AnyCheckpointStore::open(&cfg.checkpoint, &mysql.url, mysql.server_id)
        .await?
        .exclusive()?;
    let watch = match &lease {
        Some(l) => {
            store = store.fenced(l.clone());
            Some(l.spawn_watch(cfg.ha.poll()))
        }
        None => None,
    };
    let target = AnyTarget::from_config(&cfg.target, Some(engine)).await?;
    let meter = opentelemetry::global::meter("coherent");
    let label = crate::timed::kind_label(cfg.target.kind);
    // TTL backstop: the embedded engine caps TTLs of keys the rules cover as they are
    // written; external Redis gets the sweeper below instead.
    let capped = target.install_backstops(&rules);
    if capped > 0 {
        tracing::info!(patterns = capped, "TTL backstops installed in the engine");
    }
    // Deletes the target refuses wait in the durable retry queue (the checkpoint may
    // pass them once they are queued); its worker retries them with backoff.
    let queue = RetryQueue::open(&cfg.retry).await?;
    let _ = state.retry_queue.set(LiveRetry(queue.clone()));
    // One stack for the target; every batch, first, second or retried, is timed.
    // The worker's clone shares its concurrency limit.
    let deletes = stack::build(
        target,
        StackConfig::for_target(&cfg.target),
        crate::timed::Timed::new(label, &meter),
    );
    // Paused with the pipeline while the engine is a replica (its deletes would be
    // refused, and must not land there anyway); restarted on promotion.
    let (worker_queue, worker_deletes) = (queue.clone(), deletes.clone());
    let mut worker = paused_at_start
        .is_none()
        .then(|| worker_queue.spawn_worker(worker_deletes.clone()));
    let sweeper = crate::sweep::spawn(&cfg.target, &rules, swept);
    let interval = Duration::from_millis(cfg.checkpoint.interval_ms);
    let r2 = rules.clone();
    let filter: TableFilter = Arc::new(move |db: &str, t: &str| r2.covers(db, t));
    let pipe_rules = rules.clone();
    let backfill_deletes = deletes.clone();
    let first_save = store.clone();
    let mut pipe = Pipeline::new(rules, deletes, store, interval).with_retry_queue(queue);
    let resume = pipe.resume().await?;
    match (&resume, paused_at_start.is_none()) {
        // A replica's start is said when it is promoted.
        (_, false) => {}
        (Some(position), true) => {
            tracing::info!(%position, store = ?cfg.checkpoint.store, "resuming from checkpoint")
        }
        (None, true) => {
            tracing::info!(start = %mysql.start, "no checkpoint yet; starting at [mysql] start")
        }
    }
    let _ = state.lag.set(pipe.lag());
    state.publish(pipe.stats());
    // A warm engine replays from its snapshot's position (at or before the checkpoint:
    // deletes are idempotent, so replaying more is harmless), and its snapshots carry
    // a position only once a checkpoint of this run covers its data. A replica's
    // position is its primary's (it comes with the replicated data): left alone.
    let primary_now = paused_at_start.is_none();
    let (from, aux_engine, set_at_start) = match start {
        EngineStart::Warm(p) => {
            let mut set = None;
            if primary_now {
                tracing::info!(from = %p, checkpoint = ?resume.as_ref().map(|c| c.to_string()), "warm restart: replaying the binlog from the snapshot's position before serving");
                set_position_aux(&persisted, &p);
                set = Some(p.clone());
            }
            (Some(p), Some(persisted.clone()), set)
        }
        EngineStart::Empty => {
            let mut set = None;
            if let Some(c) = resume.as_ref().filter(|_| primary_now) {
                set_position_aux(&persisted, c);
                set = Some(c.clone());
            }
            (resume, Some(persisted.clone()), set)
        }
        EngineStart::NotTarget => (resume, None, None),
    };
    // Where a promotion resumes when no position came with the replicated data: the
    // position this sidecar's own data is consistent with.
    let mut own = from.clone();
    let probe: Arc<SourceProbe> = Arc::default();
    let _ = state.probe.set(probe.clone());
    let open = |from: Option<Position>| -> Result<BinlogSource> {
        Ok(BinlogSource::new(mysql.clone(), from, Some(filter.clone()))?.with_probe(probe.clone()))
    };
    let mut source = None;
    if primary_now {
        let fresh = from.is_none();
        let mut s = open(from)?;
        if fresh {
            if let Some(l) = &lease {
                // `[ha]` with no checkpoint yet: save where "current" (or `start`) put
                // this leader at once. A successor would otherwise start at its own
                // "current" and skip what changed between this start and its own when
                // this leader died before its first save.
                s.ensure_connected().await?;
                if let Some(p) = s.resume_position() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let cp = connectors::checkpoint::Checkpoint {
                        position: p.clone(),
                        timestamp: u32::try_from(now).unwrap_or(u32::MAX),
                        saved_at: now,
                    };
                    first_save.save(&cp).await?;
                    tracing::info!(position = %p, lock = %l.name(), "HA: first checkpoint saved at the start position");
                }
            }
        }
        source = Some(s);
    }
    let mut publisher = Publisher {
        state,
        feed,
        tracer: opentelemetry::global::tracer("coherent"),
        current: None,
        saved_at_start: pipe.stats().checkpoint_saved_at,
        aux: aux_engine.map(|e| (e, set_at_start)),
    };
    let backfill_rules = pipe_rules;
    // A leader stops invalidating as soon as its lock is found lost.
    let lost = async {
        match &lease {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    let stop = async {
        tokio::select! {
            () = stop => {}
            () = lost => {}
        }
    };
    tokio::pin!(stop);
    // `[engine] replicaof` takes effect when the server starts: until then the role
    // still says primary.
    let mut configured = paused_at_start;
    let res = loop {
        // Paused while the engine is a replica: no binlog read, no delete, the
        // checkpoint as it was. On promotion, a new source from the position that came
        // with the replicated data.
        let replica = follow_role
            && (configured.is_some() || replica_of(&roles.borrow_and_update()).is_some());
        if replica {
            if let Some(w) = worker.take() {
                w.abort();
            }
            let promoted = tokio::select! {
                () = &mut stop => false,
                p = while_replica(&mut roles, configured.take(), state) => p,
            };
            if !promoted {
                break Ok(());
            }
            let (from, origin) = promotion_start(&persisted, publisher.own_position(), own.clone());
            match (&from, origin) {
                (Some(p), "replicated") => {
                    tracing::info!(position = %p, "engine promoted to primary: binlog pipeline resumes from the binlog position that came with the replicated data")
                }
                (Some(p), _) => {
                    tracing::warn!(position = %p, "engine promoted to primary: no binlog position came with the replicated data; binlog pipeline resumes from this sidecar's own checkpoint")
                }
                (None, _) => {
                    tracing::warn!(start = %mysql.start, "engine promoted to primary: no binlog position came with the replicated data and there is no checkpoint; binlog pipeline starts at [mysql] start")
                }
            }
            source = Some(open(from.clone())?);
            worker = Some(worker_queue.spawn_worker(worker_deletes.clone()));
            // Snapshots carry a position again once a checkpoint of this run covers
            // the data (until then, the replicated one stays).
            publisher.saved_at_start = pipe.stats().checkpoint_saved_at;
            state.update(|g| {
                g.paused = None;
                g.resumed = Some(Resumed {
                    from: origin,
                    position: from,
                    at: unix_now(),
                });
            });
        }
        let Some(src) = source.take() else {
            break Ok(());
        };
        let mut demoted = false;
        let res = {
            let until = async {
                tokio::select! {
                    () = &mut stop => {}
                    () = demotion(&mut roles, follow_role) => demoted = true,
                }
            };
            pipe.run(src, &mut publisher, until).await
        };
        own = pipe.stats().checkpointed.clone();
        if demoted && res.is_ok() {
            // The run drained and saved its checkpoint; now pause.
            continue;
        }
        let purged = matches!(
            &res,
            Err(PipelineError::Source(
                connectors::binlog::SourceError::Purged { .. }
            ))
        );
        if !purged || mysql.on_purged != OnPurged::Invalidate {
            break res;
        }
        let why = res.err().map(|e| e.to_string()).unwrap_or_default();
        // The position first, then the backfill: a change committed during the
        // backfill is replayed from the binlog after it.
        let position = server_position(&mysql.url).await?;
        tracing::error!(
            error = %why,
            restart_at = %position,
            "THE CHECKPOINT'S BINLOG WAS PURGED: changes since the checkpoint are lost to the binlog; on_purged = \"invalidate\": deleting the keys of every row of every rule table, then resuming at the server's current position"
        );
        state
            .purged_backfills
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = crate::invalidate::Request {
            all: true,
            ..Default::default()
        };
        let counts = crate::invalidate::backfill(
            &backfill_rules,
            &mysql.url,
            backfill_deletes.clone(),
            &req,
        )
        .await?;
        tracing::warn!(
            tables = counts.tables,
            rows = counts.rows,
            keys = counts.keys,
            %position,
            "backfill after a purged binlog done; resuming"
        );
        source = Some(open(Some(position))?);
    };
    if let Some(w) = watch {
        w.abort();
    }
    if let Some(w) = worker {
        w.abort();
    }
    if let Some(c) = checker {
        c.abort();
    }
    if let Some(s) = sweeper {
        s.abort();
    }
    let s = pipe.stats();
    tracing::info!(
        transactions = s.transactions,
        rows = s.rows,
        invalidations = s.invalidations,
        checkpoint = %s.checkpointed.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "pipeline stopped"
    );
    if let Some(l) = lease.as_ref().filter(|l| l.is_lost()) {
        state.update(|g| g.ha = Some(HaStatus::new("standby", l.name())));
        anyhow::bail!(
            "HA: lost the lock {:?}; stopped invalidating and saving checkpoints (a standby takes over; restart this process to make it a standby)",
            l.name()
        );
    }
    Ok(res?)
}

/// `host:port` of the engine's primary while it is a replica.
fn replica_of(role: &engine::Role) -> Option<String> {
    match role {
        engine::Role::Replica { host, port, .. } => Some(format!("{host}:{port}")),
        _ => None,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Resolves when the engine stops being a primary (never for an external target, or
/// when the engine is gone).
async fn demotion(roles: &mut watch::Receiver<engine::Role>, follow_role: bool) {
    if follow_role {
        let demoted = roles.wait_for(|r| replica_of(r).is_some()).await.is_ok();
        if demoted {
            return;
        }
    }
    std::future::pending().await
}

/// The pause: says so in `state` (and the log) and waits until the engine is a
/// primary again; false when the engine is gone. `configured` is `[engine]
/// replicaof` ("host port") when the engine is not a replica yet but is about to be.
async fn while_replica(
    roles: &mut watch::Receiver<engine::Role>,
    configured: Option<String>,
    state: &PipelineState,
) -> bool {
    let pause = |of: &str| {
        tracing::warn!(primary = %of, "the engine is a replica: binlog pipeline paused (no binlog reading, no deletes, the checkpoint stays) until the engine is promoted");
        let why = format!("engine is a replica of {of}");
        state.update(|g| g.paused = Some(why));
    };
    if let Some(c) = configured.filter(|_| replica_of(&roles.borrow()).is_none()) {
        pause(&c.replacen(' ', ":", 1));
        if roles.wait_for(|r| replica_of(r).is_some()).await.is_err() {
            return false;
        }
    }
    let mut said = String::new();
    loop {
        let of = replica_of(&roles.borrow_and_update());
        let Some(of) = of else {
            return true;
        };
        // A REPLICAOF to another primary while paused: said again.
        if of != said {
            pause(&of);
            said = of;
        }
        if roles.changed().await.is_err() {
            return false;
        }
    }
}

/// Where a promoted engine's pipeline resumes: the binlog position that came with the
/// replicated data (the marker its old primary's sidecar wrote, `"replicated"`), or,
/// when none came, `own` (`"checkpoint"`). `mine` is the position this sidecar last
/// recorded itself: found unchanged, no other came.
fn promotion_start(
    engine: &engine::Engine,
    mine: Option<&Position>,
    own: Option<Position>,
) -> (Option<Position>, &'static str) {
    let aux = engine.save_aux(POSITION_AUX);
    match snapshot_position(aux.as_deref()) {
        Ok(Some(p)) if Some(&p) != mine => (Some(p), "replicated"),
        Ok(_) => (own, "checkpoint"),
        Err(e) => {
            tracing::error!(error = %e, "the replicated binlog position cannot be read");
            (own, "checkpoint")
        }
    }
}

/// The sidecar's [`Observer`]: one trace per transaction, the counters for
/// `/status` and `/metrics`, the online audit's feed.
struct Publisher<'a> {
    state: &'a PipelineState,
    feed: Option<crate::audit::online::Feed>,
    tracer: BoxedTracer,
    /// The trace of the transaction being applied.
    current: Option<OtelContext>,
    /// The checkpoint's save time when this run began: a different one is a
    /// checkpoint of this run.
    saved_at_start: f64,
    /// The embedded engine whose snapshots carry the position, and the position last
    /// given to it.
    aux: Option<(engine::Engine, Option<Position>)>,
}

/// Records `p` as the position the engine's next snapshots are consistent with.
fn set_position_aux(engine: &engine::Engine, p: &Position) {
    match serde_json::to_vec(p) {
        Ok(v) => {
            // The AOF gets it as a marker in its stream, after every delete before it.
            match engine.aof_marker(&v) {
                Ok(()) | Err(engine::persist::aof::MarkerError::Off) => {}
                Err(e) => tracing::error!(error = %e, "cannot mark the binlog position in the AOF"),
            }
            engine.set_save_aux(POSITION_AUX, Some(v.into()));
        }
        Err(e) => tracing::error!(error = %e, "cannot record the binlog position for snapshots"),
    }
}

impl Publisher<'_> {
    /// The position this sidecar last recorded in the engine for its snapshots.
    fn own_position(&self) -> Option<&Position> {
        self.aux.as_ref().and_then(|(_, p)| p.as_ref())
    }

    /// After the checkpoint moved in this run, the engine's snapshots carry it: every
    /// delete before it has landed in the engine.
    fn track_checkpoint(&mut self, stats: &PipelineStats) {
        let Some((engine, last)) = &mut self.aux else {
            return;
        };
        // A replica's position is its primary's (the run draining after a demotion
        // must not overwrite it).
        if stats.checkpoint_saved_at == self.saved_at_start || replica_of(&engine.role()).is_some()
        {
            return;
        }
        if let Some(c) = &stats.checkpointed {
            if last.as_ref() != Some(c) {
                set_position_aux(engine, c);
                *last = Some(c.clone());
            }
        }
    }
}

impl Publisher<'_> {
    /// Completes the current transaction's span: keys, the checkpoint, the outcome.
    fn end_span(&mut self, keys: usize, saved: bool, stats: &PipelineStats, error: Option<String>) {
        let Some(cx) = self.current.take() else {
            return;
        };
        let span = cx.span();
        span.set_attribute(KeyValue::new("keys", keys as i64));
        // The checkpoint is written at most once per interval (and waits on second
        // deletes): `saved` says whether this transaction moved it.
        let mut attrs = vec![KeyValue::new("saved", saved)];
        if let Some(p) = &stats.checkpointed {
            attrs.push(KeyValue::new("position", p.to_string()));
        }
        span.add_event("checkpoint", attrs);
        if let Some(e) = error {
            span.set_status(Status::error(e));
        }
        span.end();
    }
}

impl Observer for Publisher<'_> {
    fn instrument<F: Future + Send>(
        &mut self,
        t: &Transaction,
        apply: F,
    ) -> impl Future<Output = F::Output> + Send {
        // One trace per transaction: its deletes are child spans (started by the
        // target's timing under this context), the checkpoint an event.
        let mut span = self.tracer.start("transaction");
        span.set_attribute(KeyValue::new("binlog.position", t.position.to_string()));
        span.set_attribute(KeyValue::new("rows", t.changes.len() as i64));
        let cx = OtelContext::current_with_span(span);
        self.current = Some(cx.clone());
        apply.with_context(cx)
    }

    fn applied(&mut self, r: Report<'_>) {
        self.end_span(
            r.applied.keys,
            r.applied.checkpointed.is_some(),
            r.stats,
            None,
        );
        self.track_checkpoint(r.stats);
        self.state.publish(r.stats);
        if let Some(f) = &self.feed {
            // Deletes handed to the retry queue land later, at a time we do not see
            // here: the checker records no lag for them. Moved, not cloned, to the
            // checker (never waits on it).
            let lag = (r.applied.queued == 0).then_some(r.lag);
            f.offer(r.transaction, r.received_at, lag);
        }
    }

    fn failed(&mut self, _t: &Transaction, error: &PipelineError, stats: &PipelineStats) {
        self.end_span(0, false, stats, Some(error.to_string()));
        self.state.publish(stats);
    }

    fn progress(&mut self, stats: &PipelineStats) {
        self.track_checkpoint(stats);
        self.state.publish(stats);
    }
}

/// Whether `p` is at or past the server position `end`.
fn reached(p: &Position, end: &connectors::binlog::server::ServerPosition) -> bool {
    p.file > end.file || (p.file == end.file && p.pos >= end.pos)
}

/// A warm start's watch: clients get `-LOADING` until the pipeline has applied the
/// binlog up to where it ended when the pipeline started (`SHOW MASTER STATUS`), or,
/// on a quiet server, until a heartbeat arrived after every transaction delivered
/// was applied (the server sends one only once it has sent everything). Then the
/// engine serves.
async fn catch_up(url: String, from: Position, engine: engine::Engine, state: Arc<PipelineState>) {
    let end = match mysql_async::Conn::from_url(url.as_str()).await {
        Ok(mut c) => {
            let end = connectors::binlog::server::current_position(&mut c).await;
            let _ = c.disconnect().await;
            end.ok().flatten()
        }
        Err(e) => {
            tracing::warn!(error = %e, "warm restart: cannot read the binlog's end; waiting for a heartbeat");
            None
        }
    };
    let started = std::time::Instant::now();
    let heartbeats_at_start = state.snapshot().heartbeats;
    loop {
        let s = state.snapshot();
        let applied_this_run = s.stats.transactions > 0;
        let by_end = end.as_ref().is_some_and(|e| {
            reached(&from, e)
                || (applied_this_run && s.stats.applied.as_ref().is_some_and(|a| reached(a, e)))
        });
        // Heartbeats before transactions: read in this order, a heartbeat counted
        // means every transaction counted after it was delivered before it.
        let idle = s.heartbeats > heartbeats_at_start && s.stats.transactions >= s.delivered;
        if by_end || idle {
            engine.set_loading(false);
            tracing::info!(
                applied = ?s.stats.applied.as_ref().map(|p| p.to_string()),
                secs = started.elapsed().as_secs_f64(),
                "warm restart: caught up with the binlog; serving"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server's current binlog position (file, offset and GTID state), where the
/// pipeline resumes after a backfill.
async fn server_position(url: &str) -> Result<Position> {
    use mysql_async::prelude::Queryable;
    let db = crate::audit::db::Db::new(url).context("[mysql] url")?;
    let mut conn = db.conn().await.context("cannot connect to MySQL")?;
    let p = connectors::binlog::server::current_position(&mut conn)
        .await
        .context("cannot read the server's binlog position")?
        .context("the server's binlog is off")?;
    let mut position = Position {
        file: p.file,
        pos: p.pos,
        ..Position::default()
    };
    if let Some(set) = p.executed_gtid_set.filter(|s| !s.trim().is_empty()) {
        position.mysql_gtid = set
            .parse()
            .map_err(|e| anyhow::anyhow!("the server's gtid_executed {set:?}: {e}"))?;
    } else if let Ok(Some(Some(g))) = conn
        .query_first::<Option<String>, _>("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
    {
        // MariaDB: its GTID state, so the resume works by GTID like any other.
        if !g.trim().is_empty() {
            position.mariadb_gtid = g
                .parse()
                .map_err(|e| anyhow::anyhow!("the server's gtid_binlog_pos {g:?}: {e}"))?;
        }
    }
    drop(conn);
    db.disconnect().await;
    Ok(position)
}
