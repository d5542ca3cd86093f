//! The TCP server: accepts clients up to `maxclients`, runs the active expiry cycle,
//! and shuts down cleanly on SIGTERM, SIGINT or SHUTDOWN.

use crate::client::Client;
use crate::command;
use crate::config::EngineConfig;
use crate::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// State shared by the server's tasks and in-process users of the engine.
#[derive(Debug)]
pub struct Shared {
    store: Mutex<Store>,
    clients: AtomicUsize,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Locks the store. A panic in a handler must not take the whole server down with a
    /// poisoned lock, so poisoning is ignored: every handler leaves the store consistent
    /// between its own steps.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks every task to stop.
    pub fn trigger_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub(crate) fn client_gone(&self) {
        self.clients.fetch_sub(1, Ordering::SeqCst);
    }
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
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(config)),
                clients: AtomicUsize::new(0),
                shutdown: tx,
            }),
        }
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Runs one command in database `db` as a trusted in-process client.
    pub fn execute(&self, db: usize, args: Vec<Bytes>) -> Reply {
        let mut store = self.shared.lock();
        let mut client = Client::in_process(db);
        if args.is_empty() {
            return Reply::error("ERR empty command");
        }
        command::execute(&mut store, &mut client, args)
    }

    /// Runs several commands atomically (no other client runs in between).
    pub fn execute_batch(&self, db: usize, cmds: Vec<Vec<Bytes>>) -> Vec<Reply> {
        let mut store = self.shared.lock();
        let mut client = Client::in_process(db);
        cmds.into_iter()
            .map(|args| {
                if args.is_empty() {
                    Reply::error("ERR empty command")
                } else {
                    command::execute(&mut store, &mut client, args)
                }
            })
            .collect()
    }

    /// Resolves when a shutdown was requested (SHUTDOWN, or `trigger_shutdown`).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shared.shutdown.subscribe();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A bound, not yet running, server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    engine: Engine,
}

impl Server {
    /// Validates the config and binds its listen address.
    pub async fn bind(config: EngineConfig) -> std::io::Result<Server> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let listener = TcpListener::bind(&config.listen).await?;
        Ok(Server {
            listener,
            engine: Engine::new(config),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The in-process handle to this server's engine.
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Serves until `signal` resolves or a client sends SHUTDOWN.
    pub async fn run(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        let shared = self.engine.shared.clone();
        let mut shutdown_rx = shared.shutdown.subscribe();
        let expire = tokio::spawn(expire_loop(shared.clone(), shared.shutdown.subscribe()));
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => break,
                _ = shutdown_rx.changed() => break,
                r = self.listener.accept() => {
                    let (mut stream, _) = match r {
                        Ok(s) => s,
                        Err(e) => {
                            // EMFILE and friends: wait a little rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let max = shared.lock().config.maxclients;
                    if shared.clients.fetch_add(1, Ordering::SeqCst) >= max {
                        shared.client_gone();
                        shared.lock().stats.rejected_connections += 1;
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                        continue;
                    }
                    let rx = shared.shutdown.subscribe();
                    tokio::spawn(crate::connection::serve(shared.clone(), stream, rx));
                }
            }
        }
        shared.trigger_shutdown();
        expire.abort();
        // Give connections a moment to flush their last replies.
        for _ in 0..50 {
            if shared.clients.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

async fn expire_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let hz = shared.lock().config.hz.max(1);
        let period = Duration::from_millis(1000 / hz as u64);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let mut store = shared.lock();
        // Redis spends at most 25% of CPU time on this; a quarter of the period here.
        store.active_expire_cycle(period / 4);
        crate::command::after_command(&mut store);
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn os_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
