//! One client connection: read requests, run them under the store lock, write replies,
//! and deliver pub/sub pushes and blocked-command results as they arrive.

use crate::blocking::Blocked;
use crate::client::Client;
use crate::command;
use crate::engine::Shared;
use crate::net::frame::{self, ProtocolError};
use crate::net::reply::Reply;
use crate::outbuf::{reply_size, Output};
use crate::store::Store;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// How a connection ended (logged at debug level).
#[derive(Debug)]
#[allow(dead_code)] // the payloads are read through Debug
enum Exit {
    Eof,
    Quit,
    Killed,
    Shutdown,
    Protocol(ProtocolError),
    QueryBufferLimit,
    /// Over `client-output-buffer-limit` (logged when found).
    OutputBufferLimit,
    /// Idle for longer than `timeout`.
    Timeout,
    Io(std::io::Error),
    /// PSYNC/SYNC: the socket now serves a replica.
    Replica(crate::repl::primary::Plan),
}

/// Serves one accepted socket until it closes.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, shutdown: watch::Receiver<bool>) {
    let addr = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let laddr = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = stream.set_nodelay(true);
    // Registering takes the lock a running script holds: until it ends, answer the
    // requests of a connection arriving meanwhile without it.
    let mut stream = stream;
    let mut early = BytesMut::new();
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    let output: Output = Arc::default();
    let (id, gate, (idle_limit, qbuf_limit)) = loop {
        if shared.script.running() && !serve_during_script(&shared, &mut stream, &mut early).await {
            shared.client_gone();
            return;
        }
        let Some(mut store) = shared.lock_for(std::time::Duration::from_millis(2)) else {
            continue;
        };
        keepalive(&stream, store.config.tcp_keepalive);
        let id = store.connect(
            addr.clone(),
            laddr.clone(),
            push_tx.clone(),
            kill.clone(),
            output.clone(),
        );
        let limits = (
            idle_limit(store.config.timeout, false),
            store.config.client_query_buffer_limit,
        );
        break (id, store.aof.gate.clone(), limits);
    };
    drop(push_tx);
    let mut conn = Conn {
        id,
        resp3: false,
        last_name: LastName::default(),
        shared: shared.clone(),
        stream,
        inbuf: if early.is_empty() {
            BytesMut::with_capacity(BUF_SIZE)
        } else {
            early
        },
        parser: frame::Parser::default(),
        out: BytesMut::with_capacity(BUF_SIZE),
        out_peak: 0,
        peak_since: Instant::now(),
        push_rx,
        kill,
        output,
        idle_limit,
        qbuf_limit,
        shutdown,
        gate,
        pending: None,
        silent_blocked: false,
    };
    let exit = conn.run().await;
    if let Exit::Replica(plan) = exit {
        let Conn {
            stream,
            inbuf,
            kill,
            shutdown,
            ..
        } = conn;
        crate::repl::primary::serve(shared.clone(), stream, inbuf, id, plan, kill, shutdown).await;
        shared.lock().disconnect(id);
        shared.client_gone();
        return;
    }
    tracing::debug!(client = id, ?exit, "connection closed");
    // Not parked on the lock for the length of a running script.
    loop {
        if let Some(mut store) = shared.lock_for(std::time::Duration::from_millis(2)) {
            store.disconnect(id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    shared.client_gone();
}

/// `tcp-keepalive`: probes after `secs` idle, every third of it, 3 of them (Redis's
/// `anetKeepAlive`). A socket that refuses keeps working without.
fn keepalive(stream: &TcpStream, secs: u32) {
    if secs == 0 {
        return;
    }
    let idle = std::time::Duration::from_secs(secs as u64);
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(std::time::Duration::from_secs((secs as u64 / 3).max(1)))
        .with_retries(3);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Serves a connection that arrived while a script runs, before it can register:
/// waits for the script to end, answering BUSY (and SCRIPT KILL & co) once it is past
/// `busy-reply-threshold`. Unparsed input is left in `inbuf`. False: the connection
/// ended (closed, or SHUTDOWN NOSAVE).
async fn serve_during_script(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    inbuf: &mut BytesMut,
) -> bool {
    let run = shared.script.clone();
    let mut parser = frame::Parser::default();
    let mut out = BytesMut::new();
    while run.running() {
        if !run.busy() || inbuf.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
                r = stream.read_buf(inbuf) => match r {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            continue;
        }
        loop {
            match parser.parse(inbuf, i64::MAX, true) {
                Ok(Some(args)) => match busy_reply(shared, &args) {
                    Some(r) => r.encode(&mut out, false),
                    None => return false,
                },
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        if stream.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
    }
    true
}

/// The answer to a request while a script is busy (Redis's `processCommand` during a
/// timed-out script): SCRIPT KILL, FUNCTION KILL and SHUTDOWN NOSAVE act, everything
/// else gets BUSY. `None`: SHUTDOWN NOSAVE, the connection closes.
fn busy_reply(shared: &Shared, args: &[bytes::Bytes]) -> Option<Reply> {
    let run = &shared.script;
    let Some(name) = args.first() else {
        return Some(Reply::error(run.busy_error()));
    };
    let sub = args.get(1).map(|a| a.to_ascii_lowercase());
    Some(
        match (name.to_ascii_lowercase().as_slice(), sub.as_deref()) {
            (b"script", Some(b"kill")) if args.len() == 2 => run.kill(true),
            (b"function", Some(b"kill")) if args.len() == 2 => run.kill(false),
            (b"function", Some(b"stats")) if args.len() == 2 => match run.stats() {
                Ok((running, counts)) => crate::cmd::functions::stats_reply(running, counts),
                Err(e) => Reply::error(e),
            },
            (b"shutdown", _) if args[1..].iter().any(|a| a.eq_ignore_ascii_case(b"nosave")) => {
                run.force_kill();
                shared.trigger_shutdown();
                return None;
            }
            _ => Reply::error(run.busy_error()),
        },
    )
}

/// How long a client may stay idle (`timeout` seconds; 0 for ever). Subscribed
/// clients wait for messages and are exempt, as in Redis; blocked ones too (they
/// wait elsewhere).
fn idle_limit(timeout: u64, subscribed: bool) -> Option<std::time::Duration> {
    (timeout > 0 && !subscribed).then(|| std::time::Duration::from_secs(timeout))
}

/// The previous request's command name, byte for byte, and its table row: a
/// pipeline repeating one command skips the table lookup and the CLIENT LIST label
/// update. Names are copied (not a `Bytes` of the request, which would pin the input
/// buffer); longer names are not cached.
#[derive(Default)]
struct LastName {
    len: usize,
    name: [u8; 16],
    spec: Option<&'static command::CommandSpec>,
}

impl LastName {
    /// The row for `name`, and whether it repeats the previous request's name.
    fn lookup(&mut self, name: &[u8]) -> (Option<&'static command::CommandSpec>, bool) {
        if self.len != 0 && name == &self.name[..self.len] {
            return (self.spec, true);
        }
        let spec = command::lookup(name);
        if name.len() <= self.name.len() {
            self.name[..name.len()].copy_from_slice(name);
            self.len = name.len();
            self.spec = spec;
        } else {
            self.len = 0;
        }
        (spec, false)
    }
}

/// The query and reply buffers' usual size (Redis's `PROTO_IOBUF_LEN` and
/// `PROTO_REPLY_CHUNK_BYTES`).
const BUF_SIZE: usize = 16 * 1024;
/// A buffer grown past this by a large request or reply is given back once empty, as
/// Redis's `clientsCronResizeQueryBuffer`/`clientsCronResizeOutputBuffer` do, so an
/// idle client does not keep the memory of its largest request.
const BUF_SHRINK: usize = 4 * BUF_SIZE;
/// How long the reply buffer's peak (`rbp`) is kept, as Redis's 5-second period.
const PEAK_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

struct Conn {
    /// This connection's client id; its record lives in the store's registry.
    id: u64,
    /// Whether the client speaks RESP3, mirrored from its record after each batch:
    /// pushes arriving between batches are encoded without the lock.
    resp3: bool,
    last_name: LastName,
    shared: Arc<Shared>,
    stream: TcpStream,
    inbuf: BytesMut,
    parser: frame::Parser,
    out: BytesMut,
    /// The most `out` held since `peak_since` (CLIENT LIST `rbp`).
    out_peak: usize,
    peak_since: Instant,
    push_rx: mpsc::UnboundedReceiver<Reply>,
    kill: Arc<Notify>,
    /// Pending output, shared with the pub/sub registry (output buffer limits).
    output: Output,
    /// `timeout` as of the last batch; `None` for no limit or a subscribed client.
    idle_limit: Option<std::time::Duration>,
    /// `client-query-buffer-limit` as of the last batch, for reads while blocked.
    qbuf_limit: u64,
    shutdown: watch::Receiver<bool>,
    /// With the AOF on, replies wait until what their commands wrote or saw is in
    /// the AOF (on disk with `appendfsync always`).
    gate: Arc<crate::persist::aof::Gate>,
    /// A request held by CLIENT PAUSE, run first once the pause ends.
    pending: Option<Vec<bytes::Bytes>>,
    /// CLIENT REPLY OFF/SKIP was in force when the parked command blocked: its
    /// eventual reply is not sent.
    silent_blocked: bool,
}

/// What to do after a batch of requests ran.
enum Next {
    Continue,
    Block(oneshot::Receiver<Reply>, Option<std::time::Duration>, Reply),
    /// CLIENT PAUSE holds the next request until the pause ends (Unix ms) or is
    /// lifted (the receiver changes).
    Paused(u64, watch::Receiver<u64>),
    Close(Exit),
}

impl Conn {
    async fn run(&mut self) -> Exit {
        // Requests that arrived while a script kept the connection from registering.
        if !self.inbuf.is_empty() {
            if let Some(exit) = self.process().await {
                return exit;
            }
        }
        loop {
            if *self.shutdown.borrow() {
                return Exit::Shutdown;
            }
            let limit = self.idle_limit;
            let idle = async move {
                match limit {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.kill.notified() => return Exit::Killed,
                _ = idle => {
                    tracing::debug!(client = self.id, "closing idle client");
                    return Exit::Timeout;
                }
                _ = self.output.wake.notified() => return Exit::OutputBufferLimit,
                _ = self.shutdown.changed() => return Exit::Shutdown,
                Some(msg) = self.push_rx.recv() => {
                    self.output.taken(reply_size(&msg));
                    msg.encode(&mut self.out, self.resp3);
                    self.drain_pushes(self.resp3);
                    if let Err(exit) = self.flush().await {
                        return exit;
                    }
                }
                r = self.stream.read_buf(&mut self.inbuf) => {
                    match r {
                        Ok(0) => return Exit::Eof,
                        Ok(_) => {}
                        Err(e) => return Exit::Io(e),
                    }
                    if let Some(exit) = self.process().await {
                        return exit;
                    }
                }
            }
        }
    }

    /// Runs every complete request in the input buffer, blocking where a command blocks.
    async fn process(&mut self) -> Option<Exit> {
        loop {
            self.wait_for_script().await;
            match self.run_batch() {
                Next::Continue => break,
                Next::Close(exit) => {
                    self.durable().await;
                    let _ = self.flush().await;
                    return Some(exit);
                }
                Next::Block(rx, timeout, timeout_reply) => {
                    self.durable().await;
                    if let Err(exit) = self.flush().await {
                        return Some(exit);
                    }
                    match self.wait_blocked(rx, timeout, timeout_reply).await {
                        Ok(reply) if !self.silent_blocked => {
                            reply.encode(&mut self.out, self.resp3)
                        }
                        Ok(_) => {}
                        Err(exit) => return Some(exit),
                    }
                }
                Next::Paused(end, rx) => {
                    self.durable().await;
                    if let Err(exit) = self.flush().await {
                        return Some(exit);
                    }
                    if let Err(exit) = self.wait_unpaused(end, rx).await {
                        return Some(exit);
                    }
                }
            }
        }
        if self.inbuf.len() as u64 > self.qbuf_limit {
            return Some(Exit::QueryBufferLimit);
        }
        self.durable().await;
        if self.inbuf.is_empty() && self.inbuf.capacity() > BUF_SHRINK {
            // Nothing pending (so no partial request points into it).
            self.inbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        if let Err(exit) = self.flush().await {
            return Some(exit);
        }
        None
    }

    /// Parses and runs requests under one lock acquisition until the buffer runs dry,
    /// a command blocks, or the connection must close. The client's record is checked
    /// out of the registry meanwhile and back in before the lock is released.
    fn run_batch(&mut self) -> Next {
        let shared = self.shared.clone();
        let Some(mut store) = shared.lock_unless_busy() else {
            return self.busy_batch();
        };
        let Some(mut client) = store.clients.checkout(self.id) else {
            // Killed between two batches.
            return Next::Close(Exit::Killed);
        };
        // One clock read per batch for CLIENT LIST's idle time.
        let now = Instant::now();
        client.last_active = now;
        let next = self.run_requests(&mut store, &mut client);
        self.measure(&mut client, now, matches!(next, Next::Block(..)));
        self.resp3 = client.resp == 3;
        self.idle_limit = idle_limit(store.config.timeout, client.subscriptions() > 0);
        self.qbuf_limit = store.config.client_query_buffer_limit;
        store.clients.checkin(client);
        // Redis's beforeSleep: BCAST invalidations collected during the batch.
        store.track_broadcast();
        self.drain_pushes(self.resp3);
        if matches!(next, Next::Close(Exit::Shutdown)) {
            drop(store);
            self.shared.trigger_shutdown();
        }
        next
    }

    /// Waits while another client's script runs, until it ends or passes
    /// `busy-reply-threshold` (then `run_batch` answers BUSY without the lock), so
    /// that no worker thread parks on the lock for the length of a slow script.
    async fn wait_for_script(&self) {
        let run = &self.shared.script;
        let mut spins = 0u32;
        while run.running() && !run.busy() {
            if spins < 64 {
                spins += 1;
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }

    /// Requests while a script is busy (Redis's `processCommand` during a timed-out
    /// script): SCRIPT KILL, FUNCTION KILL and SHUTDOWN NOSAVE act, all else gets BUSY.
    fn busy_batch(&mut self) -> Next {
        loop {
            let args = match self.parser.parse(&mut self.inbuf, i64::MAX, true) {
                Ok(Some(args)) => args,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    Reply::Error(format!("ERR {e}")).encode(&mut self.out, self.resp3);
                    return Next::Close(Exit::Protocol(e));
                }
            };
            let Some(reply) = busy_reply(&self.shared, &args) else {
                return Next::Close(Exit::Shutdown);
            };
            reply.encode(&mut self.out, self.resp3);
        }
    }

    fn run_requests(&mut self, store: &mut Store, client: &mut Client) -> Next {
        let max_bulk = store.config.proto_max_bulk_len.min(i64::MAX as u64) as i64;
        loop {
            let authed = client.authenticated;
            let args = match self.pending.take() {
                Some(args) => args,
                None => match self.parser.parse(&mut self.inbuf, max_bulk, authed) {
                    Ok(Some(args)) => args,
                    Ok(None) => return Next::Continue,
                    Err(e) => {
                        Reply::Error(format!("ERR {e}")).encode(&mut self.out, client.resp == 3);
                        return Next::Close(Exit::Protocol(e));
                    }
                },
            };
            if args.is_empty() {
                continue;
            }
            // One table lookup per request, shared by the checks here and `execute`;
            // none at all when the name repeats the previous request's (a pipeline).
            let (spec, repeated) = self.last_name.lookup(&args[0]);
            if let Some((end, rx)) = store.pause.holds(client, spec, &args) {
                self.pending = Some(args);
                return Next::Paused(end, rx);
            }
            // Only a blocking command needs its arguments kept (to be re-run when a
            // key gets data); cloning them for every command costs on the hot path.
            let blocking = spec.is_some_and(|s| s.flags & command::BLOCKING != 0);
            let block_args = if blocking { args.clone() } else { Vec::new() };
            // CLIENT LIST's `cmd=`: set before the command runs, so CLIENT LIST of
            // itself shows `client|list`, as in Redis. A repeated name leaves the label
            // as it is, unless the label carries a subcommand (`client|list`) that may
            // differ this time.
            let label_sub = spec.is_some_and(|s| s.flags & command::LABEL_SUB != 0);
            if !repeated || label_sub {
                crate::cmd::client::update_cmd_label(&mut client.last_cmd, &args, spec);
            }
            // What CLIENT INFO of this very command reports: the rest of a pipeline
            // still in the query buffer, this command's arguments, the replies so far.
            let b = &mut client.bufs;
            b.qbuf = self.inbuf.len();
            b.argv_mem = args.iter().map(|a| a.len()).sum();
            b.obl = self.out.len();
            b.rbs = self.out.capacity();
            let reply = command::execute_spec(store, client, spec, args);
            // CLIENT REPLY OFF, or SKIP for this command (SKIP itself included): no
            // reply. A SKIP covers the one command after it (Redis's `resetClient`).
            let silent = client.reply_off || client.reply_skip || client.reply_skip_next;
            client.reply_skip = std::mem::take(&mut client.reply_skip_next);
            // Pushes generated by this very command (a client subscribed to its own
            // keyspace events) go out before the command's reply, as in Redis.
            self.drain_pushes(client.resp == 3);
            if let Some(req) = client.block.take() {
                let (tx, rx) = oneshot::channel();
                store.blocking.block(
                    client.id,
                    Blocked {
                        args: req.rerun.unwrap_or(block_args),
                        kind: req.kind,
                        gone: req.gone,
                        db: client.db,
                        keys: req.keys,
                        tx,
                    },
                );
                self.silent_blocked = silent;
                return Next::Block(rx, req.timeout, req.timeout_reply);
            }
            if !silent {
                reply.encode(&mut self.out, client.resp == 3);
            }
            // Client-side caching: invalidations of keys this very command changed
            // follow its reply, as Redis's tracking_pending_keys.
            if store.tracking.has_pending() {
                store.send_pending_invalidations(client);
                self.drain_pushes(client.resp == 3);
            }
            // Output buffer limits on replies: the pubsub class for a subscribed
            // client, the normal class otherwise (unlimited by default).
            let limits = &store.output_limits;
            let (limit, class) = if client.subscriptions() > 0 {
                (limits.pubsub, "pubsub")
            } else {
                (limits.normal, "normal")
            };
            if limit.is_set() {
                self.output.set_writing(self.out.len());
                if self.output.check(limit, client.id, class) {
                    return Next::Close(Exit::OutputBufferLimit);
                }
            }
            if client.close_after_reply {
                return Next::Close(Exit::Quit);
            }
            if let Some(plan) = client.handoff.take() {
                return Next::Close(Exit::Replica(plan));
            }
            if store.shutdown_requested {
                return Next::Close(Exit::Shutdown);
            }
        }
    }

    async fn wait_blocked(
        &mut self,
        mut rx: oneshot::Receiver<Reply>,
        timeout: Option<std::time::Duration>,
        timeout_reply: Reply,
    ) -> Result<Reply, Exit> {
        let sleep = async {
            match timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                r = &mut rx => return Ok(r.unwrap_or(timeout_reply)),
                _ = &mut sleep => {
                    let timed_out = {
                        let mut store = self.shared.lock();
                        store.blocking.unblock(self.id).map(|b| {
                            // A timed-out command counts as a call (as Redis's
                            // `updateStatsOnUnblock`).
                            crate::observe::unblocked(&mut store, &b.args, None);
                            // WAIT answers with the replicas that acknowledged by now.
                            if b.kind == crate::blocking::BlockKind::Wait {
                                crate::repl::wait_timed_out(&mut store, self.id)
                            } else {
                                timeout_reply.clone()
                            }
                        })
                    };
                    if let Some(r) = timed_out {
                        return Ok(r);
                    }
                    // Served just as the timeout fired: the reply is in the channel.
                    return Ok(rx.await.unwrap_or(timeout_reply));
                }
                _ = self.kill.notified() => return Err(Exit::Killed),
                _ = self.output.wake.notified() => return Err(Exit::OutputBufferLimit),
                _ = self.shutdown.changed() => return Err(Exit::Shutdown),
                Some(msg) = self.push_rx.recv() => {
                    self.output.taken(reply_size(&msg));
                    msg.encode(&mut self.out, self.resp3);
                    self.flush().await?;
                }
                // A blocked client that disconnects must stop waiting.
                r = self.stream.read_buf(&mut self.inbuf) => {
                    match r {
                        Ok(0) => return Err(Exit::Eof),
                        Err(e) => return Err(Exit::Io(e)),
                        Ok(_) => {}
                    }
                    // What a blocked client sends waits unparsed: the limit holds
                    // meanwhile too.
                    if self.inbuf.len() as u64 > self.qbuf_limit {
                        return Err(Exit::QueryBufferLimit);
                    }
                }
            }
        }
    }

    /// Waits for a CLIENT PAUSE to end: at `end` (Unix ms) or when lifted.
    async fn wait_unpaused(&mut self, end: u64, mut rx: watch::Receiver<u64>) -> Result<(), Exit> {
        let left = end.saturating_sub(crate::util::now_ms());
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(left)) => Ok(()),
            _ = rx.changed() => Ok(()),
            _ = self.kill.notified() => Err(Exit::Killed),
            _ = self.shutdown.changed() => Err(Exit::Shutdown),
        }
    }

    /// With the AOF on, waits until every write made so far (this client's, and any
    /// other client's it may have read) is written to the AOF, and with `appendfsync
    /// always` fsynced: one write and one fsync of the AOF writer serve every
    /// connection waiting (group commit). Without the AOF nothing is pending and this
    /// returns at once.
    async fn durable(&self) {
        if let Some(target) = self.gate.pending() {
            self.gate.wait(target).await;
        }
    }

    /// Records the buffers in the client's record at the end of a batch, for other
    /// clients' CLIENT LIST: what is left of the query buffer, the arguments held
    /// (a parked command's, or those of a request still arriving), the replies not
    /// yet written, and the reply buffer's peak over the current period.
    fn measure(&mut self, client: &mut Client, now: Instant, blocked: bool) {
        if now.duration_since(self.peak_since) >= PEAK_PERIOD {
            self.out_peak = 0;
            self.peak_since = now;
        }
        self.out_peak = self.out_peak.max(self.out.len());
        let b = &mut client.bufs;
        b.qbuf = self.inbuf.len();
        b.qbuf_free = self.inbuf.capacity() - self.inbuf.len();
        // A parked command keeps its arguments (argv-mem set before it ran).
        if !blocked {
            b.argv_mem = self.parser.partial_args_len();
        }
        b.rbs = self.out.capacity();
        b.rbp = self.out_peak;
        // The batch's replies are written as soon as the lock is released; what the
        // socket does not take at once is recorded by `flush`.
        b.obl = 0;
    }

    /// Records replies waiting for a slow socket (CLIENT LIST `obl`).
    fn publish_pending(&self, n: usize) {
        if let Some(c) = self.shared.lock().clients.get_mut(self.id) {
            c.bufs.obl = n;
        }
    }

    fn drain_pushes(&mut self, resp3: bool) {
        // Checked first: cheaper than a failing `try_recv` after every command.
        if self.push_rx.is_empty() {
            return;
        }
        while let Ok(msg) = self.push_rx.try_recv() {
            self.output.taken(reply_size(&msg));
            msg.encode(&mut self.out, resp3);
        }
    }

    /// Writes the output buffer. A client that does not read leaves this waiting; a
    /// kill or an output buffer limit ends the wait (and the connection).
    async fn flush(&mut self) -> Result<(), Exit> {
        if self.out.is_empty() {
            return Ok(());
        }
        // One non-blocking attempt first: it usually writes everything, and only a
        // socket that does not keep up costs the wait (and two lock acquisitions).
        let written = match self.stream.try_write(&self.out) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(Exit::Io(e)),
        };
        let r = if written < self.out.len() {
            let rest = self.out.len() - written;
            self.publish_pending(rest);
            self.output.set_writing(rest);
            let r = tokio::select! {
                biased;
                _ = self.kill.notified() => Err(Exit::Killed),
                _ = self.output.wake.notified() => Err(Exit::OutputBufferLimit),
                r = self.stream.write_all(&self.out[written..]) => r.map_err(Exit::Io),
            };
            self.output.set_writing(0);
            self.publish_pending(0);
            r
        } else {
            Ok(())
        };
        self.out.clear();
        if self.out.capacity() > BUF_SHRINK {
            self.out = BytesMut::with_capacity(BUF_SIZE);
        }
        r
    }
}
