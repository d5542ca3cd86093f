//! The TCP server: accepts clients up to `maxclients`, runs the active expiry cycle,
//! and shuts down cleanly on SIGTERM, SIGINT or SHUTDOWN.

use crate::config::EngineConfig;
use crate::engine::{Engine, Shared};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
        let appendonly = config.appendonly;
        let engine = Engine::new(config);
        // The AOF when appendonly is yes, as Redis's loadDataFromDisk: a file it
        // cannot read stops the start, naming the file.
        if appendonly {
            crate::persist::aof::open_at_start(&engine)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
        Ok(Server { listener, engine })
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
        let shared = self.engine.shared().clone();
        let mut shutdown_rx = shared.subscribe_shutdown();
        // What the process holds before the first client: INFO used_memory_startup.
        shared.lock().startup_memory = crate::alloc::used_memory();
        {
            // Replicas announce the port they serve on; `replicaof` in the config
            // starts the link to the primary.
            let mut store = shared.lock();
            store.repl.port = self.listener.local_addr().map_or(0, |a| a.port());
            if let Some((host, port)) = store
                .config
                .replicaof
                .as_deref()
                .and_then(|s| s.split_once(' '))
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            {
                crate::repl::replica::set_master(&mut store, host, port);
            }
        }
        let expire = tokio::spawn(expire_loop(shared.clone(), shared.subscribe_shutdown()));
        tokio::pin!(signal);
        let mut accept_cfg = {
            let st = shared.lock();
            (
                st.config.maxclients,
                !st.config.protected_mode || st.config.requirepass.is_some(),
            )
        };
        loop {
            tokio::select! {
                _ = &mut signal => break,
                // wait_for sees a shutdown requested before this loop subscribed.
                // (The guard it returns is not Send: dropped inside the block.)
                _ = async { shutdown_rx.wait_for(|down| *down).await.is_ok() } => break,
                r = self.listener.accept() => {
                    let (mut stream, peer) = match r {
                        Ok(s) => s,
                        Err(e) => {
                            // EMFILE and friends: wait a little rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // A script running holds the lock: take the settings as they
                    // were at the last accept rather than wait for it.
                    if let Some(st) = shared.lock_for(Duration::from_millis(1)) {
                        accept_cfg = (st.config.maxclients, !st.config.protected_mode || st.config.requirepass.is_some());
                    }
                    let (max, open) = accept_cfg;
                    // Redis's protected mode (networking.c clientAcceptHandler): no
                    // password and a peer beyond loopback get the text and a close.
                    if !open && !is_loopback(&peer) {
                        if let Some(mut st) = shared.lock_for(Duration::from_millis(1)) {
                            st.stats.rejected_connections += 1;
                        }
                        let _ = stream.write_all(PROTECTED_MODE_DENIED).await;
                        continue;
                    }
                    if !shared.client_arrived(max) {
                        if let Some(mut st) = shared.lock_for(Duration::from_millis(1)) {
                            st.stats.rejected_connections += 1;
                        }
                        let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                        continue;
                    }
                    let rx = shared.subscribe_shutdown();
                    tokio::spawn(crate::net::connection::serve(shared.clone(), stream, rx));
                }
            }
        }
        shared.trigger_shutdown();
        expire.abort();
        // The AOF's last writes reach the disk before we stop.
        crate::persist::aof::shutdown(&mut shared.lock());
        // Give connections a moment to flush their last replies.
        for _ in 0..50 {
            if shared.connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

/// Redis 7.0's reply to a connection refused by protected mode (networking.c),
/// byte for byte, including its "Setup a an" typo.
pub const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Redis's `connIsLocal`: a loopback peer (127.0.0.0/8, ::1, or either mapped
/// into IPv6).
fn is_loopback(peer: &std::net::SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

async fn expire_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut last_second = 0;
    loop {
        // The cron waits while a script holds the lock (as Redis's does not run
        // during one), rather than park a worker thread on the lock.
        let Some(hz) = shared
            .lock_for(Duration::from_millis(2))
            .map(|s| s.config.hz.max(1))
        else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                _ = shutdown.changed() => return,
            }
        };
        let period = Duration::from_millis(1000 / hz as u64);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let Some(mut store) = shared.lock_for(Duration::from_millis(2)) else {
            continue;
        };
        // Redis spends at most 25% of CPU time on this; a quarter of the period here.
        // A replica leaves expiry to its primary, whose DELs it applies (reads still
        // hide expired keys).
        if !store.repl.is_replica() {
            store.active_expire_cycle(period / 4);
        }
        let second = crate::util::now_ms() / 1000;
        if second != last_second {
            last_second = second;
            store.repl_cron();
        }
        // Redis's eviction time proc: a command that hit the time limit left memory
        // over `maxmemory`; go on without waiting for the next command.
        if store.evicting {
            store.now = crate::util::now_ms();
            store.perform_evictions();
        }
        store.peak_memory = store.peak_memory.max(crate::alloc::used_memory());
        crate::command::after_command(&mut store);
        store.track_broadcast();
        // serverCron's save points and scheduled BGSAVE.
        crate::persist::save::cron(&mut store);
        crate::persist::aof::cron(&mut store);
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
