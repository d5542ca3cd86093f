//! The near cache: an opt-in, bounded in-process copy of values read from the shared
//! cache, kept correct by server-assisted client-side caching (Redis 6+'s `CLIENT
//! TRACKING`, which Coherent's engine implements too).
//!
//! One dedicated connection per [`crate::Cache`] speaks RESP3 with tracking on. Every
//! value that enters the near cache was read by a `GET` on that connection, so the
//! server remembers the key for it and pushes `invalidate` when the key changes. One
//! task reads that connection and handles replies and pushes in the order the server
//! wrote them: a value is stored when its reply is read and dropped when a later push
//! names it, so a push can never be overtaken by the fill it invalidates. (The `redis`
//! crate 0.27 hands RESP3 pushes to a channel apart from replies, which loses exactly
//! that order; and a RESP2 connection redirecting to a subscriber has two sockets to
//! race. Hence this small connection of its own.)
//!
//! When the connection drops, is killed, or stops answering its keepalive PING, the
//! near cache is emptied at once (Redis's rule: without the connection, no
//! invalidation can arrive), and the next read opens a new connection and refills.

use crate::metrics::NearCounters;
use redis::{ConnectionAddr, ConnectionInfo};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// Bounds and timings of the near cache.
#[derive(Debug, Clone)]
pub struct NearOptions {
    /// Most entries held.
    pub max_entries: u64,
    /// Most bytes of keys and values held.
    pub max_bytes: u64,
    /// How long a read on the tracking connection may take; past it the connection is
    /// treated as dead (near cache emptied) and the read goes to the shared cache.
    pub timeout: Duration,
    /// Keepalive PING period on the tracking connection: a connection that stops
    /// answering is dropped (and the near cache with it) within `ping_every + timeout`.
    pub ping_every: Duration,
}

impl Default for NearOptions {
    fn default() -> Self {
        NearOptions {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(1),
            ping_every: Duration::from_secs(1),
        }
    }
}

/// Why a read on the tracking connection failed (the caller then reads the shared
/// cache as without a near cache).
#[derive(Debug, thiserror::Error)]
pub enum NearError {
    /// Connecting or talking to the server failed.
    #[error("tracking connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server refused a command.
    #[error("tracking connection: server replied {0}")]
    Server(String),
    /// No reply within [`NearOptions::timeout`].
    #[error("tracking connection: no reply in time")]
    Timeout,
    /// The connection closed while the read was waiting.
    #[error("tracking connection closed")]
    Closed,
    /// Only a single node over TCP is supported.
    #[error("near cache needs one server over TCP")]
    Unsupported,
}

/// A RESP2/RESP3 value, as much as the tracking connection needs.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Frame>),
    Push(Vec<Frame>),
    Null,
}

/// Entry weight: its bytes, but at least `max_bytes / max_entries`, so that one
/// weight capacity bounds both the bytes and the number of entries.
#[derive(Clone)]
struct Weigh {
    floor: u64,
}

impl quick_cache::Weighter<String, Arc<Vec<u8>>> for Weigh {
    fn weight(&self, key: &String, val: &Arc<Vec<u8>>) -> u64 {
        ((key.len() + val.len()) as u64).max(self.floor)
    }
}

type Store = quick_cache::sync::Cache<String, Arc<Vec<u8>>, Weigh>;

/// What the connection's reader task and the cache share.
struct Shared {
    store: Store,
    counters: Arc<NearCounters>,
}

impl Shared {
    /// Empties the near cache because its connection is gone.
    fn flush(&self) {
        self.store.clear();
        NearCounters::inc(&self.counters.flushes);
    }
}

/// A request waiting for its reply: the key to fill on a hit, and the caller.
struct Pending {
    fill: Option<String>,
    tx: oneshot::Sender<Frame>,
}

/// One tracking connection.
struct Session {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// Requests in the order they were written: replies come back in that order.
    pending: Mutex<VecDeque<Pending>>,
    alive: AtomicBool,
    stop: Notify,
}

impl Session {
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Ends the session: the reader task stops and empties the near cache.
    fn kill(&self) {
        self.alive.store(false, Ordering::Release);
        self.stop.notify_one();
    }

    /// Sends one command; the reply (and, for a GET with `fill`, the fill) comes
    /// through the reader task.
    async fn request(
        &self,
        args: &[&[u8]],
        fill: Option<String>,
        timeout: Duration,
    ) -> Result<Frame, NearError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.writer.lock().await;
            if !self.is_alive() {
                return Err(NearError::Closed);
            }
            // Queued under the writer's lock, so the queue's order is the wire's.
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Pending { fill, tx });
            let bytes = encode(args);
            match tokio::time::timeout(timeout, w.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.kill();
                    return Err(e.into());
                }
                Err(_) => {
                    self.kill();
                    return Err(NearError::Timeout);
                }
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(_)) => Err(NearError::Closed),
            Err(_) => {
                // A server that does not answer cannot be trusted to invalidate.
                self.kill();
                Err(NearError::Timeout)
            }
        }
    }
}

/// The near cache and its tracking connection.
pub(crate) struct NearCache {
    shared: Arc<Shared>,
    opts: NearOptions,
    info: ConnectionInfo,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("opts", &self.opts)
            .field("entries", &self.shared.store.len())
            .finish()
    }
}

impl Drop for NearCache {
    fn drop(&mut self) {
        // The reader task holds the session: end it, or the connection outlives us.
        if let Ok(slot) = self.session.try_lock() {
            if let Some(s) = slot.as_ref() {
                s.kill();
            }
        }
    }
}

impl NearCache {
    /// A near cache over the server `info` describes; connects on first use.
    pub(crate) fn new(
        info: ConnectionInfo,
        opts: NearOptions,
        counters: Arc<NearCounters>,
    ) -> Self {
        let max_entries = opts.max_entries.max(1);
        let max_bytes = opts.max_bytes.max(1);
        let floor = (max_bytes / max_entries).max(1);
        let store = quick_cache::sync::Cache::with_weighter(
            max_entries.min(1 << 20) as usize,
            max_bytes,
            Weigh { floor },
        );
        NearCache {
            shared: Arc::new(Shared { store, counters }),
            opts,
            info,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// The value held for `key`, if any.
    pub(crate) fn get_local(&self, key: &str) -> Option<Arc<Vec<u8>>> {
        self.shared.store.get(key)
    }

    /// Drops `key` (this process just deleted it; the push will follow).
    pub(crate) fn forget(&self, key: &str) {
        self.shared.store.remove(key);
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        self.shared.store.len()
    }

    /// Reads `key` from the shared cache on the tracking connection; a value read is
    /// kept in the near cache until its invalidation arrives.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, NearError> {
        let s = self.session().await?;
        let reply = s
            .request(
                &[b"GET", key.as_bytes()],
                Some(key.to_string()),
                self.opts.timeout,
            )
            .await?;
        match reply {
            Frame::Bulk(v) => Ok(v),
            Frame::Null => Ok(None),
            Frame::Error(e) => Err(NearError::Server(e)),
            other => Err(NearError::Server(format!("unexpected reply {other:?}"))),
        }
    }

    /// Closes the tracking connection (as a network failure would): the near cache is
    /// emptied and the next read reconnects. For tests and shutdown.
    pub(crate) async fn disconnect(&self) {
        if let Some(s) = self.session.lock().await.take() {
            s.kill();
        }
    }

    /// The live session, opening one if there is none.
    async fn session(&self) -> Result<Arc<Session>, NearError> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.is_alive()) {
            return Ok(s.clone());
        }
        let s = tokio::time::timeout(self.opts.timeout * 5, self.open())
            .await
            .map_err(|_| NearError::Timeout)??;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Connects, switches to RESP3 (authenticating), selects the database and turns
    /// tracking on; then starts the reader and the keepalive.
    async fn open(&self) -> Result<Arc<Session>, NearError> {
        let ConnectionAddr::Tcp(host, port) = &self.info.addr else {
            return Err(NearError::Unsupported);
        };
        let stream = TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let r = &self.info.redis;
        let mut hello: Vec<Vec<u8>> = vec![b"HELLO".to_vec(), b"3".to_vec()];
        if let Some(pass) = &r.password {
            let user = r.username.clone().unwrap_or_else(|| "default".into());
            hello.extend([
                b"AUTH".to_vec(),
                user.into_bytes(),
                pass.clone().into_bytes(),
            ]);
        }
        let mut setup: Vec<Vec<Vec<u8>>> = vec![hello];
        if r.db != 0 {
            setup.push(vec![b"SELECT".to_vec(), r.db.to_string().into_bytes()]);
        }
        setup.push(vec![
            b"CLIENT".to_vec(),
            b"TRACKING".to_vec(),
            b"ON".to_vec(),
        ]);
        for cmd in &setup {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            wr.write_all(&encode(&args)).await?;
            if let Frame::Error(e) = read_frame(&mut rd).await? {
                return Err(NearError::Server(e));
            }
        }
        let session = Arc::new(Session {
            writer: tokio::sync::Mutex::new(wr),
            pending: Mutex::new(VecDeque::new()),
            alive: AtomicBool::new(true),
            stop: Notify::new(),
        });
        tokio::spawn(reader(rd, session.clone(), self.shared.clone()));
        tokio::spawn(keepalive(
            Arc::downgrade(&session),
            self.opts.ping_every,
            self.opts.timeout,
        ));
        Ok(session)
    }
}

/// Reads replies and pushes in the server's order until the connection ends, then
/// empties the near cache and fails the requests still waiting.
async fn reader(mut rd: BufReader<OwnedReadHalf>, s: Arc<Session>, shared: Arc<Shared>) {
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = s.stop.notified() => break,
        };
        let Ok(frame) = frame else {
            break;
        };
        match frame {
            Frame::Push(items) => on_push(&shared, items),
            reply => {
                let next = s
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                let Some(p) = next else {
                    // A reply nobody asked for: the stream is out of step.
                    break;
                };
                if let (Some(key), Frame::Bulk(Some(v))) = (&p.fill, &reply) {
                    shared.store.insert(key.clone(), Arc::new(v.clone()));
                    NearCounters::inc(&shared.counters.fills);
                }
                let _ = p.tx.send(reply);
            }
        }
    }
    s.alive.store(false, Ordering::Release);
    shared.flush();
    s.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// An `invalidate` push: its keys leave the near cache; a null (FLUSHDB, FLUSHALL,
/// SWAPDB on the engine) empties it.
fn on_push(shared: &Shared, items: Vec<Frame>) {
    let mut it = items.into_iter();
    let is_invalidate = matches!(it.next(), Some(Frame::Bulk(Some(ref k))) if k == b"invalidate");
    if !is_invalidate {
        return;
    }
    NearCounters::inc(&shared.counters.invalidations);
    match it.next() {
        Some(Frame::Array(keys)) => {
            for k in keys {
                if let Frame::Bulk(Some(k)) = k {
                    if let Ok(k) = std::str::from_utf8(&k) {
                        shared.store.remove(k);
                    }
                }
            }
        }
        _ => shared.store.clear(),
    }
}

/// PINGs the connection every `every`; one that does not answer within `timeout` is
/// killed (so a silently dead connection cannot keep stale entries alive).
async fn keepalive(s: std::sync::Weak<Session>, every: Duration, timeout: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = s.upgrade() else {
            return;
        };
        if !s.is_alive() {
            return;
        }
        if s.request(&[b"PING"], None, timeout).await.is_err() {
            s.kill();
            return;
        }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

type FrameFuture<'a> = Pin<Box<dyn Future<Output = std::io::Result<Frame>> + Send + 'a>>;

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one RESP2/RESP3 value (maps as arrays; doubles, booleans, big numbers as
/// simple strings).
fn read_frame(r: &mut BufReader<OwnedReadHalf>) -> FrameFuture<'_> {
    Box::pin(async move {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") || line.len() < 3 {
            return Err(bad("malformed line"));
        }
        line.truncate(line.len() - 2);
        let rest = String::from_utf8_lossy(&line[1..]).into_owned();
        let num = || rest.parse::<i64>().map_err(|_| bad("bad length"));
        Ok(match line[0] {
            b'+' | b',' | b'#' | b'(' => Frame::Simple(rest),
            b'-' => Frame::Error(rest),
            b':' => Frame::Int(num()?),
            b'_' => Frame::Null,
            b'$' | b'=' => {
                let n = num()?;
                if n < 0 {
                    Frame::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    r.read_exact(&mut b).await?;
                    b.truncate(n as usize);
                    Frame::Bulk(Some(b))
                }
            }
            t @ (b'*' | b'~' | b'>' | b'%') => {
                let n = num()?;
                if n < 0 {
                    return Ok(Frame::Null);
                }
                let n = if t == b'%' { n * 2 } else { n };
                let mut v = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    v.push(read_frame(r).await?);
                }
                if t == b'>' {
                    Frame::Push(v)
                } else {
                    Frame::Array(v)
                }
            }
            _ => return Err(bad("unknown type")),
        })
    })
}
