//! Fault tests of the whole delivery path: a scripted transaction source feeding
//! the real pipeline, a real redis-server target (killed, stopped, restarted), the
//! embedded retry queue and the file checkpoint. Each counts lost deletes: keys
//! whose row changed but that are still in the cache after recovery. Must be 0.

use crate::binlog::{ChangeKind, Position, Row, RowChange, SourceError, Transaction};
use crate::checkpoint::{CheckpointStore, FileCheckpointStore};
use crate::duration::HumanDuration;
use crate::pipeline::{Pipeline, TransactionSource};
use crate::retry::{RetryConfig, RetryQueue};
use crate::rules::{RuleConfig, Rules};
use crate::targets::stack::{self, StackConfig};
use crate::targets::{DeleteRequest, DeleteService, RedisTarget, TargetConfig};
use crate::testing::RedisServer;
use bytes::Bytes;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Transactions from a channel (never ends: pends when the sender is gone).
pub(crate) struct ScriptedSource(pub mpsc::UnboundedReceiver<Transaction>);

impl TransactionSource for ScriptedSource {
    async fn next_transaction(&mut self) -> Result<Transaction, SourceError> {
        match self.0.recv().await {
            Some(t) => Ok(t),
            None => std::future::pending().await,
        }
    }
}

/// Transaction `n`: an update of `app.users` row `id`.
pub(crate) fn tx(n: u64, id: u64) -> Transaction {
    let row = |v: &str| Row {
        columns: vec!["id".to_string(), "name".to_string()].into(),
        cells: vec![
            crate::binlog::Cell::Value(Bytes::from(id.to_string())),
            crate::binlog::Cell::Value(Bytes::from(v.to_string())),
        ],
    };
    Transaction {
        changes: vec![RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Update,
            before: Some(row("old")),
            after: Some(row("new")),
        }],
        position: pos(n),
        timestamp: 0,
        ddl: None,
        events: 3,
    }
}

pub(crate) fn pos(n: u64) -> Position {
    Position {
        file: "bin.000001".into(),
        pos: 4 + n * 100,
        mariadb_gtid: format!("0-1-{n}").parse().unwrap_or_default(),
        ..Default::default()
    }
}

pub(crate) fn rules(double_delete: Duration) -> Rules {
    Rules::compile(&[RuleConfig {
        table: "app.users".into(),
        keys: vec!["user:{id}".into()],
        columns: None,
        double_delete: HumanDuration(double_delete),
        ttl_backstop: HumanDuration::default(),
        value: None,
    }])
    .unwrap()
}

pub(crate) fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("coherent-fault-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn retry_cfg(dir: &std::path::Path) -> RetryConfig {
    RetryConfig {
        path: dir.join("retry.log"),
        backoff: HumanDuration(Duration::from_millis(50)),
        max_backoff: HumanDuration(Duration::from_millis(500)),
        max_attempts: 1000,
        ..RetryConfig::default()
    }
}

pub(crate) fn set_all(s: &RedisServer, ids: std::ops::Range<u64>, value: &str) {
    let mut args = vec!["MSET".to_string()];
    for i in ids {
        args.push(format!("user:{i}"));
        args.push(value.into());
    }
    s.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
}

/// Keys of `ids` still in the cache: deletes lost.
pub(crate) fn lost(s: &RedisServer, ids: std::ops::Range<u64>) -> usize {
    let mut args = vec!["EXISTS".to_string()];
    args.extend(ids.map(|i| format!("user:{i}")));
    s.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

pub(crate) async fn wait_for(mut f: impl FnMut() -> bool, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the checkpoint reaches `want`: the pipeline has processed every fed
/// transaction (stopping earlier would leave fed transactions unprocessed, which is a
/// premature stop, not a lost delete).
pub(crate) async fn wait_checkpoint(cp: &FileCheckpointStore, want: Position, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(c)) = cp.load().await {
            if c.position == want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint never reached {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type RunningPipeline = (
    mpsc::UnboundedSender<Transaction>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), crate::PipelineError>>,
);

/// A Redis target as `cfg` says, in its stack.
pub(crate) async fn redis(cfg: &TargetConfig) -> DeleteService {
    let target = RedisTarget::connect(cfg).await.unwrap();
    stack::build(target, StackConfig::for_target(cfg), ())
}

/// Starts a pipeline on a scripted source; returns the feed, the stop switch and
/// the task.
pub(crate) fn run(
    target: DeleteService,
    queue: Option<RetryQueue>,
    checkpoint: FileCheckpointStore,
    double_delete: Duration,
) -> RunningPipeline {
    let (feed, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut p = Pipeline::new(rules(double_delete), target, checkpoint, Duration::ZERO);
    if let Some(q) = queue {
        p = p.with_retry_queue(q);
    }
    let task = tokio::spawn(async move {
        p.run(ScriptedSource(rx), &mut (), async {
            let _ = stopped.await;
        })
        .await
    });
    (feed, stop, task)
}

/// The parts of a target-outage test: a redis-server (started with `args`) holding
/// `n` stale user keys, a Redis target on it with `batch_timeout`, an embedded retry
/// queue whose worker delivers to that target, and a checkpoint file.
struct Rig {
    s: RedisServer,
    target: DeleteService,
    q: RetryQueue,
    worker: tokio::task::JoinHandle<()>,
    cp: FileCheckpointStore,
}

async fn rig(name: &str, args: &[&str], n: u64, batch_timeout: Duration) -> Rig {
    let d = tmp(name);
    let s = RedisServer::start(args).unwrap();
    set_all(&s, 0..n, "stale");
    let cfg = TargetConfig {
        batch_timeout: HumanDuration(batch_timeout),
        ..TargetConfig::redis(s.url())
    };
    let target = redis(&cfg).await;
    let q = RetryQueue::open(&retry_cfg(&d)).await.unwrap();
    let worker = q.spawn_worker(target.clone());
    let cp = FileCheckpointStore::new(d.join("cp"));
    Rig {
        s,
        target,
        q,
        worker,
        cp,
    }
}

/// The target killed for 10 s during a write load, restarted (with its AOF): every
/// delete of the outage is queued durably, the binlog keeps moving, the queue
/// drains afterwards, nothing is lost or dead-lettered, and the checkpoint ends at
/// the last transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_for_10s_during_load_loses_nothing() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    const N: u64 = 600;
    let Rig {
        mut s,
        target,
        q,
        worker,
        cp,
    } = rig(
        "kill",
        &["--appendonly", "yes", "--appendfsync", "always"],
        N,
        Duration::from_millis(300),
    )
    .await;
    let (feed, stop, task) = run(
        target,
        Some(q.clone()),
        cp.clone(),
        Duration::from_millis(200),
    );
    let started = Instant::now();
    let mut killed_at = None;
    for n in 0..N {
        feed.send(tx(n, n)).unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
        if n == 100 {
            s.kill().unwrap();
            killed_at = Some(Instant::now());
        }
        if killed_at.is_some_and(|k| k.elapsed() >= Duration::from_secs(10)) {
            s.restart().unwrap();
            killed_at = None;
        }
    }
    if killed_at.is_some() {
        s.restart().unwrap();
    }
    eprintln!("load ran {:?}", started.elapsed());
    // The outage's deletes went to the queue.
    assert!(q.stats().enqueued > 0, "{:?}", q.stats());
    // Once the checkpoint passed a transaction, its deletes are applied or queued
    // durably: then the queue drains (waiting for an empty queue first raced with
    // batches still timing out into it).
    wait_checkpoint(&cp, pos(N - 1), 60).await;
    wait_for(|| q.depth() == 0, 60).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(lost(&s, 0..N), 0, "lost deletes");
    assert_eq!(q.stats().dead_letters, 0);
    assert!(q.dead_letters().await.unwrap().is_empty());
    assert_eq!(cp.load().await.unwrap().unwrap().position, pos(N - 1));
    eprintln!("retry stats after outage: {:?}", q.stats());
    worker.abort();
}

/// A target slower than the batch timeout (the server stopped with SIGSTOP for
/// 3 s): batches time out, are queued, the checkpoint keeps moving, and after the
/// server resumes the queue drains with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_slower_than_batch_timeout_loses_nothing() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    const N: u64 = 200;
    let Rig {
        s,
        target,
        q,
        worker,
        cp,
    } = rig("slow", &[], N, Duration::from_millis(100)).await;
    let (feed, stop, task) = run(target, Some(q.clone()), cp.clone(), Duration::ZERO);
    s.pause(true).unwrap();
    for n in 0..20 {
        feed.send(tx(n, n)).unwrap();
    }
    // The binlog keeps moving while the target hangs: the checkpoint passes tx 19.
    wait_checkpoint(&cp, pos(19), 20).await;
    s.pause(false).unwrap();
    for n in 20..N {
        feed.send(tx(n, n)).unwrap();
    }
    // As above: the checkpoint first (every delete applied or queued), then the queue
    // drains; a batch may still time out into the queue after the first 20 drained.
    wait_checkpoint(&cp, pos(N - 1), 60).await;
    wait_for(|| q.depth() == 0 && q.stats().enqueued >= 20, 30).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(lost(&s, 0..N), 0, "lost deletes");
    assert_eq!(q.stats().dead_letters, 0);
    assert_eq!(cp.load().await.unwrap().unwrap().position, pos(N - 1));
    worker.abort();
}

/// Counts the batches the pipeline itself sends to `target` (the queue's worker has
/// its own).
fn counting(
    target: DeleteService,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> DeleteService {
    DeleteService::new(tower::service_fn(move |req: DeleteRequest| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut target = target.clone();
        async move {
            use tower::{Service, ServiceExt};
            target.ready().await?.call(req).await
        }
    }))
}

/// A hung target (SIGSTOP) costs the pipeline one timed-out batch, not one per
/// transaction: after a refused batch, the next ones go straight to the retry queue
/// for a second, so the binlog keeps its pace; once the target answers again, batches
/// go to it directly, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_target_is_skipped_while_it_fails() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    const N: u64 = 100;
    let Rig {
        s,
        target,
        q,
        worker,
        cp,
    } = rig("breaker", &[], N, Duration::from_millis(300)).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = counting(target, calls.clone());
    let (feed, stop, task) = run(counted, Some(q.clone()), cp.clone(), Duration::ZERO);
    s.pause(true).unwrap();
    for n in 0..50 {
        feed.send(tx(n, n)).unwrap();
    }
    wait_checkpoint(&cp, pos(49), 60).await;
    let during = calls.load(std::sync::atomic::Ordering::Relaxed);
    let queued = q.stats().enqueued;
    s.pause(false).unwrap();
    // Every transaction of the outage was queued, but the hung target was tried for
    // only a few of them: one per second the outage lasted, not 50 (each try waits
    // the batch timeout, twice).
    assert_eq!(queued, 50, "every delete of the outage is queued");
    assert!(during < 10, "{during} batches sent to a hung target");
    wait_for(|| q.depth() == 0, 30).await;
    // Healthy again: after the open second, batches go to the target directly.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = calls.load(std::sync::atomic::Ordering::Relaxed);
    for n in 50..N {
        feed.send(tx(n, n)).unwrap();
    }
    wait_checkpoint(&cp, pos(N - 1), 60).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::Relaxed) - before,
        N - 50,
        "healthy target gets every batch"
    );
    assert_eq!(q.stats().enqueued, 50, "nothing queued once healthy");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(lost(&s, 0..N), 0, "lost deletes");
    assert_eq!(q.stats().dead_letters, 0);
    worker.abort();
}

/// The second delete removes a stale value written between the first and the
/// second delete (a reader that filled an old value), and a key invalidated twice
/// within the delay gets one second delete, not two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_delete_removes_stale_fill() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let d = tmp("stale");
    let s = RedisServer::start(&[]).unwrap();
    set_all(&s, 0..2, "v1");
    let target = redis(&TargetConfig::redis(s.url())).await;
    let cp = FileCheckpointStore::new(d.join("cp"));
    let (feed, stop, task) = run(target, None, cp.clone(), Duration::from_millis(400));
    feed.send(tx(1, 0)).unwrap();
    wait_for(|| lost(&s, 0..1) == 0, 5).await;
    // A racing reader fills the pre-commit value after the first delete.
    set_all(&s, 0..1, "stale");
    feed.send(tx(2, 0)).unwrap(); // same key again within the delay
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lost(&s, 0..1), 0, "tx 2's first delete");
    set_all(&s, 0..1, "stale");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(lost(&s, 0..1), 1, "still there before the delay");
    // Tx 1's pending second delete moved to tx 2, so the checkpoint may reach tx 1
    // but not tx 2 while that delete is pending.
    let held = cp.load().await.unwrap().map(|c| c.position);
    assert_ne!(held, Some(pos(2)));
    wait_for(|| lost(&s, 0..1) == 0, 5).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(cp.load().await.unwrap().unwrap().position, pos(2));
}

/// The pipeline dropped without flush (as by kill -9) between a first delete and
/// its delayed second one: the checkpoint had not passed the transaction, so the
/// restarted pipeline replays it and the second delete still happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_first_and_second_delete_loses_nothing() {
    assert!(
        RedisServer::available(),
        "redis-server is not installed: run scripts/install-deps.sh"
    );
    let d = tmp("crash");
    let s = RedisServer::start(&[]).unwrap();
    const N: u64 = 50;
    set_all(&s, 0..N, "v1");
    let target = redis(&TargetConfig::redis(s.url())).await;
    let cp = FileCheckpointStore::new(d.join("cp"));
    let (feed, _stop, task) = run(target.clone(), None, cp.clone(), Duration::from_millis(500));
    for n in 0..N {
        feed.send(tx(n, n)).unwrap();
    }
    wait_for(|| lost(&s, 0..N) == 0, 5).await;
    // Killed: no flush, no second deletes.
    task.abort();
    let _ = task.await;
    // Stale fills land after the crash.
    set_all(&s, 0..N, "stale");
    let resume = cp.load().await.unwrap();
    assert!(
        resume.is_none(),
        "checkpoint must not pass pending second deletes"
    );
    // Restart: the source replays from the checkpoint (here: from the start).
    let (feed, stop, task) = run(target, None, cp.clone(), Duration::from_millis(500));
    for n in 0..N {
        feed.send(tx(n, n)).unwrap();
    }
    set_all(&s, 0..N, "stale-again");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(lost(&s, 0..N), 0, "lost deletes");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(cp.load().await.unwrap().unwrap().position, pos(N - 1));
}
