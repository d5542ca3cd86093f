//! The tower `Service` that sends one delete batch to Redis.
//!
//! One node: the keys go out as one pipeline of `UNLINK k1 .. k512` commands (one
//! round trip). A cluster: keys are grouped by hash slot (a multi-key command must
//! stay in one slot) and each slot's command is sent concurrently on the
//! multiplexed cluster connection, which follows MOVED/ASK redirections itself.

use crate::targets::stack::DeleteRequest;
use crate::targets::{DeleteCommand, TargetError};
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Keys per command on one node: amortises the command, keeps each one short.
const KEYS_PER_COMMAND: usize = 512;

/// A connection to one node (reconnecting) or to a cluster.
#[derive(Clone)]
pub enum RedisConn {
    /// One server, through a reconnecting connection manager.
    Single(Box<ConnectionManager>),
    /// A cluster (slot map refreshed on MOVED).
    Cluster(ClusterConnection),
}

/// Sends one [`DeleteRequest`].
#[derive(Clone)]
pub struct RedisDeleteService {
    conn: RedisConn,
    command: DeleteCommand,
}

impl RedisDeleteService {
    /// A service deleting with `command` over `conn`.
    pub fn new(conn: RedisConn, command: DeleteCommand) -> Self {
        RedisDeleteService { conn, command }
    }
}

fn error(e: redis::RedisError) -> TargetError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        TargetError::Unavailable(e.to_string())
    } else {
        TargetError::Refused(e.to_string())
    }
}

/// Groups `keys` by cluster hash slot, keeping the binlog order within a slot.
pub fn by_slot(keys: &[Bytes]) -> HashMap<u16, Vec<Bytes>> {
    let mut groups: HashMap<u16, Vec<Bytes>> = HashMap::new();
    for k in keys {
        groups
            .entry(redis::cluster_routing::get_slot(k))
            .or_default()
            .push(k.clone());
    }
    groups
}

impl tower::Service<DeleteRequest> for RedisDeleteService {
    type Response = ();
    type Error = TargetError;
    type Future = Pin<Box<dyn Future<Output = Result<(), TargetError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        let conn = self.conn.clone();
        let name = self.command.name();
        Box::pin(async move {
            match conn {
                RedisConn::Single(c) => {
                    let mut c = *c;
                    let mut pipe = redis::pipe();
                    for chunk in req.keys.chunks(KEYS_PER_COMMAND) {
                        pipe.cmd(name)
                            .arg(chunk.iter().map(|k| &k[..]).collect::<Vec<_>>())
                            .ignore();
                    }
                    pipe.query_async::<()>(&mut c).await.map_err(error)
                }
                RedisConn::Cluster(c) => {
                    let sends = by_slot(&req.keys).into_values().map(|keys| {
                        let mut c = c.clone();
                        async move {
                            let mut cmd = redis::cmd(name);
                            for k in &keys {
                                cmd.arg(&k[..]);
                            }
                            cmd.query_async::<i64>(&mut c).await.map(|_| ())
                        }
                    });
                    for r in futures_util::future::join_all(sends).await {
                        r.map_err(error)?;
                    }
                    Ok(())
                }
            }
        })
    }
}
