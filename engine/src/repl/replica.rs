//! The replica's side: REPLICAOF starts a link task that connects to the primary,
//! does the handshake (PING, AUTH, REPLCONF listening-port, capa eof psync2), asks
//! for `PSYNC <replid> <offset+1>`, loads the RDB of a full sync (`$<len>` or
//! diskless `$EOF:`) or goes on after `+CONTINUE`, then applies the stream as the
//! master client, tracking the offset, with `REPLCONF ACK` every second and on
//! `GETACK`. The primary's bytes go into our backlog as received, so our replicas
//! see the same offsets (PSYNC2 chains and promotions).

use super::{Failover, LinkState, MasterLink};
use crate::client::Client;
use crate::engine::Shared;
use crate::store::Store;
use crate::util::eq_ic;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The channel prefix under which a primary replicates an aux field the embedding
/// process set ([`crate::Engine::set_save_aux`]): a PUBLISH, which Redis replicas
/// run harmlessly, and engine replicas record.
pub(crate) const AUX_CHANNEL: &[u8] = b"__coherent__:aux:";

fn unix() -> u64 {
    crate::util::now_ms() / 1000
}

/// Why the link went down.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary replied {0:?}")]
    Refused(String),
    #[error("cannot load the primary's RDB: {0}")]
    Rdb(#[from] crate::persist::rdb::RdbError),
    #[error("the link was replaced or turned off")]
    Stale,
    #[error("timeout: no data from the primary for {0} s")]
    Timeout(u64),
    #[error("protocol error from the primary: {0}")]
    Protocol(#[from] crate::net::frame::ProtocolError),
    #[error("the master client was killed (CLIENT KILL)")]
    Killed,
}

/// REPLICAOF host port (`replicationSetMaster`): from now on a replica of
/// `host:port`. Our replicas stay (they may continue with us); our replid and offset
/// are what we ask the new primary to continue from.
pub(crate) fn set_master(store: &mut Store, host: String, port: u16) {
    let generation = store.repl.next_generation;
    store.repl.next_generation += 1;
    let db = store.repl.master.as_ref().map_or(0, |m| m.db);
    store.repl.master = Some(MasterLink {
        host: host.clone(),
        port,
        state: LinkState::Connect,
        down_since: 0,
        last_io: 0,
        transfer_read: 0,
        transfer_size: -1,
        generation,
        db,
    });
    store.repl_activate();
    store.repl.backlog.set_proxy(true);
    store.config.replicaof = Some(format!("{host} {port}"));
    // Clients blocked on a primary would wait for writes that can only come from the
    // new primary now; Redis releases them.
    release_blocked(store);
    store.repl.publish_role();
    tracing::info!("REPLICAOF {host}:{port} enabled");
    match (
        store.shared.upgrade(),
        tokio::runtime::Handle::try_current(),
    ) {
        (Some(shared), Ok(rt)) => {
            rt.spawn(run(shared, generation));
        }
        _ => tracing::error!("no runtime to run the replication link on"),
    }
}

/// REPLICAOF NO ONE (`replicationUnsetMaster`): a primary again. The replication id
/// shifts (the old one stays valid as replid2 up to our offset, so replicas of our old
/// primary can continue with us), our replicas reconnect and get a SELECT first.
pub(crate) fn unset_master(store: &mut Store) {
    if store.repl.master.take().is_none() {
        return;
    }
    store.repl.shift_replid();
    store.repl.backlog.set_proxy(false);
    store.repl_disconnect_replicas();
    store.config.replicaof = None;
    store.set_failover(Failover::None);
    store.repl.publish_role();
    tracing::info!(
        replid = %store.repl.replid,
        offset = store.repl.offset(),
        "MASTER MODE enabled"
    );
}

/// Releases clients blocked on keys with Redis's `-UNBLOCKED` error.
fn release_blocked(store: &mut Store) {
    for id in store.blocking.ids() {
        if let Some(b) = store.blocking.unblock(id) {
            let _ = b.tx.send(crate::net::reply::Reply::Error(
                "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)".into(),
            ));
        }
    }
}

/// The link task of `generation`: connects, syncs, streams; reconnects every second
/// after a failure until REPLICAOF changes.
pub(crate) async fn run(shared: Arc<Shared>, generation: u64) {
    let mut shutdown = shared.subscribe_shutdown();
    loop {
        let target = {
            let mut store = shared.lock();
            match store.repl.master.as_mut() {
                Some(m) if m.generation == generation => {
                    m.state = LinkState::Connecting;
                    Some((m.host.clone(), m.port))
                }
                _ => None,
            }
        };
        let Some((host, port)) = target else {
            return;
        };
        let r = tokio::select! {
            r = link(&shared, generation, &host, port) => r,
            _ = shutdown.wait_for(|d| *d) => return,
        };
        match r {
            Err(LinkError::Stale) => return,
            Err(e) => {
                tracing::warn!(primary = %format!("{host}:{port}"), error = %e, "replication link down")
            }
            Ok(()) => {}
        }
        {
            let mut store = shared.lock();
            let Some(m) = store
                .repl
                .master
                .as_mut()
                .filter(|m| m.generation == generation)
            else {
                return;
            };
            // As Redis's `repl_down_since`: set when an established link is lost (a
            // replica that never synced shows -1).
            if m.state == LinkState::Connected {
                m.down_since = unix();
            }
            m.state = LinkState::Connect;
            // A failover whose target refused us: back to being a primary.
            if store.repl.failover == Failover::InProgress {
                tracing::warn!("FAILOVER target refused: primary again");
                unset_master(&mut store);
                return;
            }
            store.repl.publish_role();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|d| *d) => return,
        }
    }
}

/// Buffered reading of the primary's replies.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
}

impl Conn {
    async fn fill(&mut self) -> Result<(), LinkError> {
        if self.rd.read_buf(&mut self.buf).await? == 0 {
            return Err(LinkError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the primary closed the connection",
            )));
        }
        Ok(())
    }

    /// One reply line, without CRLF. Lone newlines (a primary's keepalive while it
    /// prepares the sync) are skipped.
    async fn line(&mut self) -> Result<String, LinkError> {
        loop {
            while self.buf.first() == Some(&b'\n') {
                let _ = self.buf.split_to(1);
            }
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = self.buf.split_to(p + 2);
                return Ok(String::from_utf8_lossy(&l[..p]).into_owned());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LinkError::Refused("an overlong line".into()));
            }
            self.fill().await?;
        }
    }

    async fn command(&mut self, argv: &[&[u8]]) -> Result<String, LinkError> {
        let mut out = Vec::new();
        crate::net::frame::encode_command(&mut out, argv);
        self.wr.write_all(&out).await?;
        self.line().await
    }
}

/// What the link needs from the store at the handshake.
struct Setup {
    auth: Option<(Option<String>, String)>,
    port: u16,
    replid: String,
    offset: u64,
    failover: bool,
    timeout: u64,
}

async fn link(
    shared: &Arc<Shared>,
    generation: u64,
    host: &str,
    port: u16,
) -> Result<(), LinkError> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((host, port)))
        .await
        .map_err(|_| LinkError::Timeout(5))??;
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut c = Conn {
        rd,
        wr,
        buf: BytesMut::with_capacity(1 << 16),
    };
    let setup = {
        let mut store = shared.lock();
        let m = current(&mut store, generation)?;
        m.state = LinkState::Handshake;
        let cfg = &store.config;
        Setup {
            auth: cfg.masterauth.clone().map(|p| (cfg.masteruser.clone(), p)),
            port: store.repl.port,
            replid: store.repl.replid.clone(),
            offset: store.repl.offset(),
            failover: store.repl.failover == Failover::InProgress,
            timeout: cfg.repl_timeout.max(1),
        }
    };
    let pong = c.command(&[b"PING"]).await?;
    // A primary that wants AUTH says so to PING; AUTH follows anyway.
    if pong.starts_with('-')
        && !pong.starts_with("-NOAUTH")
        && !pong.starts_with("-NOPERM")
        && !pong.starts_with("-ERR operation not permitted")
    {
        return Err(LinkError::Refused(pong));
    }
    if let Some((user, pass)) = &setup.auth {
        let r = match user {
            Some(u) => c.command(&[b"AUTH", u.as_bytes(), pass.as_bytes()]).await?,
            None => c.command(&[b"AUTH", pass.as_bytes()]).await?,
        };
        if r.starts_with('-') {
            return Err(LinkError::Refused(r));
        }
    }
    let port_s = setup.port.to_string();
    let r = c
        .command(&[b"REPLCONF", b"listening-port", port_s.as_bytes()])
        .await?;
    if r.starts_with('-') {
        tracing::info!(reply = %r, "primary does not understand REPLCONF listening-port");
    }
    let _ = c
        .command(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    let off = (setup.offset + 1).to_string();
    let reply = if setup.failover {
        c.command(&[
            b"PSYNC",
            setup.replid.as_bytes(),
            off.as_bytes(),
            b"FAILOVER",
        ])
        .await?
    } else {
        c.command(&[b"PSYNC", setup.replid.as_bytes(), off.as_bytes()])
            .await?
    };
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut parts = rest.split(' ');
        let replid = parts.next().unwrap_or_default().to_string();
        let offset = parts
            .next()
            .and_then(|o| o.parse::<u64>().ok())
            .ok_or_else(|| LinkError::Refused(reply.clone()))?;
        full_sync(shared, generation, &mut c, replid, offset).await?;
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new_id = rest.trim();
        let mut store = shared.lock();
        current(&mut store, generation)?;
        if !new_id.is_empty() && new_id != store.repl.replid {
            // The primary's history goes on under a new id: ours is valid up to here.
            store.repl.replid2 = std::mem::replace(&mut store.repl.replid, new_id.to_string());
            store.repl.second_offset = store.repl.offset() as i64 + 1;
            store.repl_disconnect_replicas();
        }
        tracing::info!(
            offset = store.repl.offset(),
            "partial resynchronization accepted (+CONTINUE)"
        );
        connected(&mut store, generation)?;
    } else {
        return Err(LinkError::Refused(reply));
    }
    apply_stream(shared, generation, c, setup.timeout).await
}

/// The link of `generation`, if it is still the current one.
fn current(store: &mut Store, generation: u64) -> Result<&mut MasterLink, LinkError> {
    store
        .repl
        .master
        .as_mut()
        .filter(|m| m.generation == generation)
        .ok_or(LinkError::Stale)
}

fn connected(store: &mut Store, generation: u64) -> Result<(), LinkError> {
    let m = current(store, generation)?;
    m.state = LinkState::Connected;
    m.last_io = unix();
    if store.repl.failover == Failover::InProgress {
        store.set_failover(Failover::None);
    }
    store.repl.publish_role();
    Ok(())
}

/// Receives and loads the RDB of a full sync.
async fn full_sync(
    shared: &Arc<Shared>,
    generation: u64,
    c: &mut Conn,
    replid: String,
    offset: u64,
) -> Result<(), LinkError> {
    {
        let mut store = shared.lock();
        let m = current(&mut store, generation)?;
        m.state = LinkState::Transfer;
        m.transfer_read = 0;
        m.transfer_size = -1;
        m.last_io = unix();
    }
    let header = c.line().await?;
    let body = if let Some(mark) = header.strip_prefix("$EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(LinkError::Refused(header));
        }
        let mut body = Vec::new();
        loop {
            body.extend_from_slice(&c.buf.split());
            if body.len() >= 40 && body[body.len() - 40..] == mark[..] {
                body.truncate(body.len() - 40);
                break body;
            }
            progress(shared, generation, body.len() as u64)?;
            c.fill().await?;
        }
    } else if let Some(n) = header.strip_prefix('$') {
        let n: usize = n.parse().map_err(|_| LinkError::Refused(header.clone()))?;
        {
            let mut store = shared.lock();
            current(&mut store, generation)?.transfer_size = n as i64;
        }
        while c.buf.len() < n {
            progress(shared, generation, c.buf.len() as u64)?;
            c.fill().await?;
        }
        c.buf.split_to(n).to_vec()
    } else {
        return Err(LinkError::Refused(header));
    };
    tracing::info!(bytes = body.len(), "received the primary's RDB, loading");
    let opts = crate::persist::rdb::LoadOptions {
        keep_expired: true,
        ..crate::persist::save::load_options(&shared.lock())
    };
    let loaded = tokio::task::spawn_blocking(move || {
        crate::persist::rdb::read_rdb(&body[..], crate::util::now_ms(), &opts)
    })
    .await
    .map_err(|e| LinkError::Io(std::io::Error::other(e.to_string())))??;
    {
        let mut store = shared.lock();
        current(&mut store, generation)?;
        let loaded = store.load_dbs(loaded)?;
        // The AOF holds none of the loaded data: it starts over with a rewrite, as
        // Redis's `restartAOFAfterSYNC`.
        if store.aof.writer.is_some() {
            store.config.appendonly = false;
            let _ = crate::persist::aof::apply_appendonly(&mut store);
            store.config.appendonly = true;
            if let Err(e) = crate::persist::aof::apply_appendonly(&mut store) {
                tracing::error!(error = %e, "cannot restart the AOF after the full sync");
            }
        }
        // Aux fields the embedding process set on the primary (the binlog position)
        // come with the data.
        for (k, v) in &loaded.aux {
            if k.starts_with(b"coherent-") {
                let name = String::from_utf8_lossy(k).into_owned();
                set_aux(&mut store, &name, v.clone());
            }
        }
        store.repl.replid = replid;
        store.repl.replid2 = "0".repeat(40);
        store.repl.second_offset = -1;
        store.repl.backlog.reset(offset);
        store.repl_disconnect_replicas();
        if let Some(m) = store.repl.master.as_mut() {
            m.db = 0;
        }
        connected(&mut store, generation)?;
        tracing::info!(offset, "MASTER <-> REPLICA sync: finished with success");
    }
    // The initial ACK puts us online (a diskless primary sends nothing before it).
    send_ack(c, offset).await?;
    Ok(())
}

fn progress(shared: &Shared, generation: u64, read: u64) -> Result<(), LinkError> {
    let mut store = shared.lock();
    let m = current(&mut store, generation)?;
    m.transfer_read = read;
    m.last_io = unix();
    Ok(())
}

async fn send_ack(c: &mut Conn, offset: u64) -> Result<(), LinkError> {
    let mut out = Vec::new();
    let off = offset.to_string();
    crate::net::frame::encode_command(&mut out, &[b"REPLCONF".as_slice(), b"ACK", off.as_bytes()]);
    c.wr.write_all(&out).await?;
    Ok(())
}

/// Records an aux field replicated from the primary (`coherent-*`): our own saves
/// carry it, the AOF gets it as a marker.
fn set_aux(store: &mut Store, name: &str, value: Bytes) {
    store
        .save
        .aux
        .retain(|(k, _)| k.as_ref() != name.as_bytes());
    store
        .save
        .aux
        .push((Bytes::copy_from_slice(name.as_bytes()), value.clone()));
    let _ = crate::persist::aof::mark(store, &value);
}

/// Applies the stream as the master client until the link fails or is replaced.
async fn apply_stream(
    shared: &Arc<Shared>,
    generation: u64,
    mut c: Conn,
    timeout: u64,
) -> Result<(), LinkError> {
    let mut parser = crate::net::frame::Parser::default();
    let mut master = Client::in_process(0);
    master.master = true;
    master.resp = 2;
    // As Redis's master client, the link is a client in CLIENT LIST (flags=M) that
    // CLIENT KILL TYPE master (or its id or addr) ends: the link then reconnects and
    // continues with PSYNC.
    let kill = Arc::new(tokio::sync::Notify::new());
    let record = MasterRecord::register(shared, &c, kill.clone());
    // What is read but not yet applied (a command split across reads), as received:
    // applied commands go into our backlog byte for byte.
    let mut raw: Vec<u8> = c.buf.to_vec();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if !c.buf.is_empty() {
            let getack = {
                let mut store = shared.lock();
                let db = current(&mut store, generation)?.db;
                master.db = db;
                let before = c.buf.len();
                let mut getack = false;
                let mut last: Option<Bytes> = None;
                loop {
                    let args = match parser.parse(&mut c.buf, i64::MAX, true) {
                        Ok(Some(a)) => a,
                        Ok(None) => break,
                        Err(e) => return Err(LinkError::Protocol(e)),
                    };
                    if args.is_empty() {
                        continue;
                    }
                    if eq_ic(&args[0], "replconf") {
                        getack |= args.len() >= 2 && eq_ic(&args[1], "getack");
                        continue;
                    }
                    if eq_ic(&args[0], "publish") && args.len() == 3 {
                        if let Some(name) = args[1].strip_prefix(AUX_CHANNEL) {
                            let name = String::from_utf8_lossy(name).into_owned();
                            set_aux(&mut store, &name, args[2].clone());
                        }
                    }
                    last = Some(args[0].clone());
                    let _ = crate::command::execute(&mut store, &mut master, args);
                }
                if let Some(r) = store.clients.get_mut(record.id) {
                    r.db = master.db;
                    r.last_active = std::time::Instant::now();
                    if let Some(name) = last.take() {
                        r.last_cmd = String::from_utf8_lossy(&name).to_ascii_lowercase();
                    }
                }
                let applied = before - c.buf.len();
                store.repl.backlog.feed(&raw[..applied]);
                raw.drain(..applied);
                if let Some(m) = store.repl.master.as_mut() {
                    m.db = master.db;
                    m.last_io = unix();
                }
                getack
            };
            if getack {
                let off = shared.lock().repl.offset();
                send_ack(&mut c, off).await?;
            }
        }
        tokio::select! {
            _ = kill.notified() => return Err(LinkError::Killed),
            r = c.rd.read_buf(&mut c.buf) => {
                let n = r?;
                if n == 0 {
                    return Err(LinkError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the primary closed the connection",
                    )));
                }
                raw.extend_from_slice(&c.buf[c.buf.len() - n..]);
            }
            _ = tick.tick() => {
                let (off, last_io) = {
                    let mut store = shared.lock();
                    let last_io = current(&mut store, generation)?.last_io;
                    (store.repl.offset(), last_io)
                };
                if unix().saturating_sub(last_io) > timeout {
                    return Err(LinkError::Timeout(timeout));
                }
                send_ack(&mut c, off).await?;
            }
        }
    }
}

/// The master client's record in the client registry, removed when the link ends
/// however it ends (error, kill, REPLICAOF, shutdown dropping the task).
struct MasterRecord<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
}

impl<'a> MasterRecord<'a> {
    fn register(shared: &'a Arc<Shared>, c: &Conn, kill: Arc<tokio::sync::Notify>) -> Self {
        let addr = c.rd.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let laddr = c.rd.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut store = shared.lock();
        let id = store
            .clients
            .connect(addr, laddr, true, kill, Arc::default());
        if let Some(r) = store.clients.get_mut(id) {
            r.master = true;
        }
        MasterRecord { shared, id }
    }
}

impl Drop for MasterRecord<'_> {
    fn drop(&mut self) {
        self.shared.lock().disconnect(self.id);
    }
}
