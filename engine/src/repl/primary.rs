//! The primary's side: PSYNC/SYNC decide between a partial resync and a full one, then
//! the connection is handed to [`serve`], which sends the snapshot (a fork-less
//! [`Snapshot`] streamed as an RDB, diskless `$EOF:` or `$<len>`), then the stream
//! from the backlog, and reads the replica's `REPLCONF ACK`s.

use super::backlog::Read;
use super::{Failover, ReplConf, ReplicaInfo, ReplicaState};
use crate::client::Client;
use crate::engine::Shared;
use crate::error::CmdError;
use crate::net::reply::Reply;
use crate::persist::save::{Child, ChildKind};
use crate::persist::snapshot::Snapshot;
use crate::store::Store;
use crate::util::eq_ic;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};

/// How a replica connection starts, decided by PSYNC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A full sync: `eof` for the diskless `$EOF:` form, `announce` for the
    /// `+FULLRESYNC` line (PSYNC; SYNC has none).
    Full { eof: bool, announce: bool },
    /// `+CONTINUE` was sent: the stream follows from the registered cursor.
    Continue,
}

fn unix() -> u64 {
    crate::util::now_ms() / 1000
}

/// REPLCONF (`replconfCommand`): options a replica sends before PSYNC, and its ACKs.
pub(crate) fn replconf(
    store: &mut Store,
    client: &mut Client,
    args: &[Bytes],
) -> Result<Reply, CmdError> {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let id = client.id;
    for p in args[1..].chunks(2) {
        let (opt, val) = (&p[0], &p[1]);
        if eq_ic(opt, "listening-port") {
            let port = crate::util::parse_i64(val)
                .filter(|p| (0..=65535).contains(p))
                .ok_or(CmdError::NotInteger)?;
            store.repl.conf.entry(id).or_default().port = port as u16;
        } else if eq_ic(opt, "ip-address") {
            store.repl.conf.entry(id).or_default().ip =
                Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "capa") {
            let c = store.repl.conf.entry(id).or_default();
            if eq_ic(val, "eof") {
                c.eof = true;
            } else if eq_ic(val, "psync2") {
                c.psync2 = true;
            }
        } else if eq_ic(opt, "ack") || eq_ic(opt, "fack") {
            // ACKs come on the replica's own connection, read by `serve`; one
            // arriving here is from a client that is not a replica: no reply.
            return Ok(Reply::Many(Vec::new()));
        } else if eq_ic(opt, "getack") {
            // Only a primary sends it, to its replicas: answered by the link.
            return Ok(Reply::Many(Vec::new()));
        } else if eq_ic(opt, "rdb-only") || eq_ic(opt, "rdb-filter-only") {
            // Accepted as Redis does; the full sync sends the whole keyspace anyway.
        } else {
            return Err(CmdError::err(format!(
                "Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    Ok(Reply::OK)
}

/// PSYNC replid offset [FAILOVER] / SYNC (`syncCommand`): decides the sync and marks
/// the connection to be handed over to [`serve`] after the reply.
pub(crate) fn psync(
    store: &mut Store,
    client: &mut Client,
    args: &[Bytes],
) -> Result<Reply, CmdError> {
    if client.replica {
        return Ok(Reply::Many(Vec::new()));
    }
    let is_psync = eq_ic(&args[0], "psync");
    if is_psync && args.len() > 3 {
        if !eq_ic(&args[3], "failover") {
            return Err(CmdError::Syntax);
        }
        // FAILOVER from our primary: we take over if we have its history.
        if store.repl.is_replica() && args[1].as_ref() == store.repl.replid.as_bytes() {
            tracing::info!("failover request received for our replid: taking over");
            super::replica::unset_master(store);
        } else {
            return Err(CmdError::err("PSYNC FAILOVER replid must match my replid."));
        }
    }
    if store.repl.is_replica() && !store.repl.link_up() {
        return Err(CmdError::Other(
            "NOMASTERLINK Can't SYNC while not connected with my master".into(),
        ));
    }
    let conf: ReplConf = store.repl.conf.remove(&client.id).unwrap_or_default();
    store.repl_activate();
    let ip = conf.ip.clone().unwrap_or_else(|| {
        client
            .addr
            .rsplit_once(':')
            .map_or(client.addr.clone(), |(h, _)| h.to_string())
    });
    let mut info = ReplicaInfo {
        ip,
        port: conf.port,
        state: ReplicaState::WaitBgsave,
        ack: 0,
        ack_time: unix(),
    };
    client.replica = true;
    if is_psync {
        let replid = String::from_utf8_lossy(&args[1]).into_owned();
        let offset = crate::util::parse_i64(&args[2]).unwrap_or(-1);
        if store.repl.can_continue(&replid, offset) {
            let cursor = offset as u64 - 1;
            if store.repl.backlog.register(client.id, cursor).is_some() {
                info.state = ReplicaState::Online;
                info.ack = cursor;
                store.repl.replicas.insert(client.id, info);
                client.handoff = Some(Plan::Continue);
                store.repl.sync_partial_ok += 1;
                tracing::info!(
                    replica = %client.addr,
                    "partial resynchronization accepted, sending {} bytes of backlog",
                    store.repl.offset() - cursor
                );
                let line = if conf.psync2 {
                    format!("+CONTINUE {}\r\n", store.repl.replid)
                } else {
                    "+CONTINUE\r\n".to_string()
                };
                return Ok(Reply::Raw(Bytes::from(line)));
            }
        }
        tracing::info!(replica = %client.addr, "full resync requested ({replid} {offset})");
        if replid != "?" {
            store.repl.sync_partial_err += 1;
        }
    }
    store.repl.sync_full += 1;
    store.repl.replicas.insert(client.id, info);
    client.handoff = Some(Plan::Full {
        eof: conf.eof && store.config.repl_diskless_sync,
        announce: is_psync,
    });
    Ok(Reply::Many(Vec::new()))
}

/// Serves replica `id` on its socket until it goes (or is killed, or we shut down).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    leftover: BytesMut,
    id: u64,
    plan: Plan,
    kill: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let acked = Arc::new(Notify::new());
    let mut reader = tokio::spawn(read_acks(shared.clone(), rd, leftover, id, acked.clone()));
    let work = async {
        if let Plan::Full { eof, announce } = plan {
            full_sync(&shared, &mut wr, id, eof, announce, &acked).await?;
        }
        feed(&shared, &mut wr, id).await
    };
    let r: std::io::Result<()> = tokio::select! {
        r = work => r,
        _ = kill.notified() => Ok(()),
        _ = shutdown.wait_for(|d| *d) => Ok(()),
        _ = &mut reader => Ok(()),
    };
    if let Err(e) = r {
        tracing::info!(client = id, error = %e, "replica connection lost");
    }
    reader.abort();
    let mut store = shared.lock();
    store.repl.forget(id);
    store.repl_serve_waits();
}

/// Reads what the replica sends: `REPLCONF ACK <offset>`.
async fn read_acks(
    shared: Arc<Shared>,
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    id: u64,
    acked: Arc<Notify>,
) {
    let mut parser = crate::net::frame::Parser::default();
    loop {
        loop {
            let args = match parser.parse(&mut buf, 1 << 20, true) {
                Ok(Some(a)) => a,
                Ok(None) => break,
                Err(_) => return,
            };
            if args.len() >= 3 && eq_ic(&args[0], "replconf") && eq_ic(&args[1], "ack") {
                if let Some(off) = crate::util::parse_i64(&args[2]) {
                    let mut store = shared.lock();
                    if let Some(r) = store.repl.replicas.get_mut(&id) {
                        r.ack = r.ack.max(off.max(0) as u64);
                        r.ack_time = unix();
                    }
                    store.repl_serve_waits();
                    drop(store);
                    acked.notify_one();
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Sends the backlog from the replica's cursor, as it grows.
async fn feed(shared: &Shared, wr: &mut OwnedWriteHalf, id: u64) -> std::io::Result<()> {
    let (backlog, wake) = {
        let store = shared.lock();
        (store.repl.backlog.clone(), store.repl.backlog.waker(id))
    };
    let Some(wake) = wake else {
        return Err(std::io::Error::other("dropped from the backlog"));
    };
    loop {
        match backlog.read(id, 1 << 20) {
            Read::Data(d) => wr.write_all(&d).await?,
            Read::Idle => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Read::Gone => return Err(std::io::Error::other("dropped from the backlog")),
        }
    }
}

/// A `Write` that hands 64 KiB chunks to the socket task (the snapshot runs on a
/// blocking thread; the channel's bound is the back pressure).
struct ChanWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChanWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 16));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "replica gone"))
    }
}

impl std::io::Write for ChanWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 16 {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The full sync: waits for the snapshot slot, begins the snapshot at the current
/// offset (the replica's cursor), sends `+FULLRESYNC` and the RDB.
async fn full_sync(
    shared: &Arc<Shared>,
    wr: &mut OwnedWriteHalf,
    id: u64,
    eof: bool,
    announce: bool,
    acked: &Notify,
) -> std::io::Result<()> {
    let delay = shared.lock().config.repl_diskless_sync_delay;
    let start = Instant::now();
    let mut keepalive = Instant::now();
    let (snapshot, offset, replid, key_delay, cancel) = loop {
        // A newline a second keeps the replica from timing out while it waits (Redis
        // does the same; replicas skip empty lines before the PSYNC reply).
        if keepalive.elapsed() >= Duration::from_secs(1) {
            keepalive = Instant::now();
            wr.write_all(b"\n").await?;
        }
        if eof && start.elapsed() < Duration::from_secs(delay) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        {
            let mut store = shared.lock();
            if !store.repl.replicas.contains_key(&id) {
                return Err(std::io::Error::other("replica dropped"));
            }
            if store.save.child.is_none() && !store.save.loading {
                let opts = crate::persist::save::write_options(&store);
                let snapshot = Snapshot::begin(&mut store, opts);
                let cancel = snapshot.cancel_flag();
                store.save.progress = snapshot.progress();
                store.save.progress_total = store.total_keys() as u64;
                store.save.child = Some(Child {
                    kind: ChildKind::Replication,
                    started: Instant::now(),
                    dirty_at_start: store.stats.dirty,
                    cancel: cancel.clone(),
                });
                let offset = store.repl.offset();
                store.repl.backlog.force_select();
                if store.repl.backlog.register(id, offset).is_none() {
                    return Err(std::io::Error::other("backlog refused the cursor"));
                }
                if let Some(r) = store.repl.replicas.get_mut(&id) {
                    r.state = ReplicaState::SendBulk;
                    r.ack = offset;
                }
                let key_delay = Duration::from_micros(store.config.rdb_key_save_delay);
                tracing::info!(
                    client = id,
                    offset,
                    "starting a full sync ({})",
                    if eof { "diskless" } else { "in memory" }
                );
                break (
                    snapshot,
                    offset,
                    store.repl.replid.clone(),
                    key_delay,
                    cancel,
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if announce {
        wr.write_all(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes())
            .await?;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let job_shared = shared.clone();
    let job = tokio::task::spawn_blocking(move || {
        let w = ChanWriter {
            tx,
            buf: Vec::with_capacity(1 << 16),
        };
        let r = snapshot
            .write(&job_shared, w, key_delay)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|(mut w, _)| w.send());
        // The slot is free again (whatever happened), unless someone cancelled us
        // and another job owns it by now.
        let mut store = job_shared.lock();
        if store
            .save
            .child
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.cancel, &cancel))
        {
            store.save.child = None;
            for db in &mut store.dbs {
                db.set_before_write(None);
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("full sync cancelled"));
        }
        r
    });
    let sent = async {
        if eof {
            let mark = super::random_id();
            wr.write_all(format!("$EOF:{mark}\r\n").as_bytes()).await?;
            while let Some(chunk) = rx.recv().await {
                wr.write_all(&chunk).await?;
            }
            wr.write_all(mark.as_bytes()).await?;
        } else {
            let mut all = Vec::new();
            while let Some(chunk) = rx.recv().await {
                all.extend_from_slice(&chunk);
            }
            wr.write_all(format!("${}\r\n", all.len()).as_bytes())
                .await?;
            wr.write_all(&all).await?;
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    drop(rx);
    let made = job
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    sent?;
    made?;
    // A diskless replica reads up to the mark and nothing after it until it has
    // loaded: the stream waits for its first ACK (Redis's `replicaPutOnline`).
    if eof {
        let _ = tokio::time::timeout(Duration::from_secs(60), acked.notified()).await;
    }
    let mut store = shared.lock();
    if let Some(r) = store.repl.replicas.get_mut(&id) {
        r.state = ReplicaState::Online;
        r.ack_time = unix();
    }
    tracing::info!(client = id, "synchronization with replica succeeded");
    Ok(())
}

/// FAILOVER's progress, from the cron: once the target replica acknowledged the
/// offset at which writes were paused (or FORCE at the deadline), we become its
/// replica and ask it to take over with `PSYNC <replid> <offset> FAILOVER`.
pub(crate) fn failover_cron(store: &mut Store) {
    let Failover::WaitForSync {
        host,
        port,
        force,
        deadline,
        offset,
    } = store.repl.failover.clone()
    else {
        return;
    };
    // Clients' writes wait (see `Store::set_failover`), in-process ones (the
    // sidecar's deletes) do not: the target must have everything up to now.
    let now_offset = store.repl.offset().max(offset);
    let caught_up = store
        .repl
        .replicas
        .values()
        .any(|r| r.port == port && r.ip == host && r.ack >= now_offset);
    let expired = deadline.is_some_and(|d| Instant::now() >= d);
    if caught_up || (expired && force) {
        store.set_failover(Failover::InProgress);
        super::replica::set_master(store, host, port);
    } else if expired {
        tracing::warn!("FAILOVER timed out: aborting");
        store.set_failover(Failover::None);
    }
}
