//! One client connection: read requests, run them under the store lock, write replies,
//! and deliver pub/sub pushes and blocked-command results as they arrive.

use crate::blocking::Blocked;
use crate::client::Client;
use crate::command;
use crate::frame::{self, ProtocolError};
use crate::reply::Reply;
use crate::server::Shared;
use crate::store::ClientInfo;
use bytes::{Bytes, BytesMut};
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
    Io(std::io::Error),
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
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    let kill = Arc::new(Notify::new());
    let client = {
        let mut store = shared.lock();
        let id = store.next_client_id;
        store.next_client_id += 1;
        store.stats.connections += 1;
        let authed = store.config.requirepass.is_none();
        store.pubsub.register(id, push_tx);
        store.clients.insert(
            id,
            ClientInfo {
                id,
                addr: addr.clone(),
                laddr: laddr.clone(),
                name: None,
                db: 0,
                created: Instant::now(),
                last_active: Instant::now(),
                last_cmd: "NULL".into(),
                sub: 0,
                psub: 0,
                multi: -1,
                resp: 2,
                flags: "N".into(),
                kill: kill.clone(),
            },
        );
        Client::new(id, addr, laddr, authed)
    };
    let mut conn = Conn {
        last_name: LastName::default(),
        shared: shared.clone(),
        stream,
        client,
        inbuf: BytesMut::with_capacity(16 * 1024),
        parser: frame::Parser::default(),
        out: BytesMut::with_capacity(16 * 1024),
        push_rx,
        kill,
        shutdown,
    };
    let exit = conn.run().await;
    tracing::debug!(client = conn.client.id, ?exit, "connection closed");
    let mut store = shared.lock();
    let c = &mut conn.client;
    store.blocking.unblock(c.id);
    let watched = std::mem::take(&mut c.watched);
    store.unwatch(c.id, &watched);
    store.pubsub.unregister(c.id, &c.channels, &c.patterns);
    store.clients.remove(&c.id);
    drop(store);
    shared.client_gone();
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

struct Conn {
    last_name: LastName,
    shared: Arc<Shared>,
    stream: TcpStream,
    client: Client,
    inbuf: BytesMut,
    parser: frame::Parser,
    out: BytesMut,
    push_rx: mpsc::UnboundedReceiver<Reply>,
    kill: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

/// What to do after a batch of requests ran.
enum Next {
    Continue,
    Block(oneshot::Receiver<Reply>, Option<std::time::Duration>, Reply),
    Close(Exit),
}

impl Conn {
    async fn run(&mut self) -> Exit {
        loop {
            if *self.shutdown.borrow() {
                return Exit::Shutdown;
            }
            tokio::select! {
                biased;
                _ = self.kill.notified() => return Exit::Killed,
                _ = self.shutdown.changed() => return Exit::Shutdown,
                Some(msg) = self.push_rx.recv() => {
                    msg.encode(&mut self.out, self.client.resp == 3);
                    self.drain_pushes();
                    if let Err(e) = self.flush().await {
                        return Exit::Io(e);
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
            match self.run_batch() {
                Next::Continue => break,
                Next::Close(exit) => {
                    let _ = self.flush().await;
                    return Some(exit);
                }
                Next::Block(rx, timeout, timeout_reply) => {
                    if let Err(e) = self.flush().await {
                        return Some(Exit::Io(e));
                    }
                    match self.wait_blocked(rx, timeout, timeout_reply).await {
                        Ok(reply) => reply.encode(&mut self.out, self.client.resp == 3),
                        Err(exit) => return Some(exit),
                    }
                }
            }
        }
        let limit = self.shared.lock().config.client_query_buffer_limit;
        if self.inbuf.len() as u64 > limit {
            return Some(Exit::QueryBufferLimit);
        }
        if let Err(e) = self.flush().await {
            return Some(Exit::Io(e));
        }
        None
    }

    /// Parses and runs requests under one lock acquisition until the buffer runs dry,
    /// a command blocks, or the connection must close.
    fn run_batch(&mut self) -> Next {
        let shared = self.shared.clone();
        let mut store = shared.lock();
        let max_bulk = store.config.proto_max_bulk_len.min(i64::MAX as u64) as i64;
        // One clock read per batch for CLIENT LIST's idle time.
        let batch_started = Instant::now();
        loop {
            let authed = self.client.authenticated;
            let args = match self.parser.parse(&mut self.inbuf, max_bulk, authed) {
                Ok(Some(args)) => args,
                Ok(None) => return Next::Continue,
                Err(e) => {
                    Reply::Error(format!("ERR {e}")).encode(&mut self.out, self.client.resp == 3);
                    return Next::Close(Exit::Protocol(e));
                }
            };
            if args.is_empty() {
                continue;
            }
            // One table lookup per request, shared by the checks here and `execute`;
            // none at all when the name repeats the previous request's (a pipeline).
            let (spec, repeated) = self.last_name.lookup(&args[0]);
            // Only a blocking command needs its arguments kept (to be re-run when a
            // key gets data); cloning them for every command costs on the hot path.
            let blocking = spec.is_some_and(|s| s.flags & command::BLOCKING != 0);
            let block_args = if blocking { args.clone() } else { Vec::new() };
            // A repeated name leaves the label as it is, unless the label carries a
            // subcommand (`client|list`) that may differ this time.
            let label_sub = spec.is_some_and(|s| s.flags & command::LABEL_SUB != 0);
            if !repeated || label_sub {
                self.update_label(&mut store, &args, spec);
            }
            let reply = command::execute_spec(&mut store, &mut self.client, spec, args);
            self.update_info(&mut store, batch_started);
            // Pushes generated by this very command (a client subscribed to its own
            // keyspace events) go out before the command's reply, as in Redis.
            self.drain_pushes();
            if let Some(req) = self.client.block.take() {
                let (tx, rx) = oneshot::channel();
                store.blocking.block(
                    self.client.id,
                    Blocked {
                        args: block_args,
                        db: self.client.db,
                        resp: self.client.resp,
                        keys: req.keys,
                        tx,
                    },
                );
                return Next::Block(rx, req.timeout, req.timeout_reply);
            }
            reply.encode(&mut self.out, self.client.resp == 3);
            if self.client.close_after_reply {
                return Next::Close(Exit::Quit);
            }
            if store.shutdown_requested {
                drop(store);
                self.shared.trigger_shutdown();
                return Next::Close(Exit::Shutdown);
            }
        }
    }

    /// CLIENT LIST's `cmd=`: the command being run (set before it runs, so CLIENT
    /// LIST of itself shows `client|list`, as in Redis).
    fn update_label(
        &self,
        store: &mut crate::store::Store,
        args: &[Bytes],
        spec: Option<&command::CommandSpec>,
    ) {
        if let Some(info) = store.clients.get_mut(&self.client.id) {
            crate::cmd::client::update_cmd_label(&mut info.last_cmd, args, spec);
        }
    }

    /// The rest of CLIENT LIST's view of this connection, after a command ran.
    fn update_info(&self, store: &mut crate::store::Store, at: Instant) {
        let c = &self.client;
        if let Some(info) = store.clients.get_mut(&c.id) {
            info.db = c.db;
            if info.name != c.name {
                info.name.clone_from(&c.name);
            }
            info.last_active = at;
            info.sub = c.channels.len();
            info.psub = c.patterns.len();
            info.multi = c.multi.as_ref().map_or(-1, |q| q.len() as i64);
            info.resp = c.resp;
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
                    let unblocked = self.shared.lock().blocking.unblock(self.client.id).is_some();
                    if unblocked {
                        return Ok(timeout_reply);
                    }
                    // Served just as the timeout fired: the reply is in the channel.
                    return Ok(rx.await.unwrap_or(timeout_reply));
                }
                _ = self.kill.notified() => return Err(Exit::Killed),
                _ = self.shutdown.changed() => return Err(Exit::Shutdown),
                Some(msg) = self.push_rx.recv() => {
                    msg.encode(&mut self.out, self.client.resp == 3);
                    if let Err(e) = self.flush().await {
                        return Err(Exit::Io(e));
                    }
                }
                // A blocked client that disconnects must stop waiting.
                r = self.stream.read_buf(&mut self.inbuf) => {
                    match r {
                        Ok(0) => return Err(Exit::Eof),
                        Err(e) => return Err(Exit::Io(e)),
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    fn drain_pushes(&mut self) {
        // Checked first: cheaper than a failing `try_recv` after every command.
        if self.push_rx.is_empty() {
            return;
        }
        while let Ok(msg) = self.push_rx.try_recv() {
            msg.encode(&mut self.out, self.client.resp == 3);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}
