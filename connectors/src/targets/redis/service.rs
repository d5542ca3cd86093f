//! The tower `Service` that sends one delete batch to Redis.
//!
//! One node: the keys go out as one pipeline of `UNLINK k1 .. k512` commands (one
//! round trip). A cluster: keys are grouped by hash slot (a multi-key command must
//! stay in one slot) and each slot's command is sent concurrently on the
//! multiplexed cluster connection, which follows MOVED/ASK redirections itself
//! ([`RedisConn::each`] does both).

use crate::targets::stack::DeleteRequest;
use crate::targets::{DeleteCommand, TargetError};
use bytes::Bytes;
use cache_aside::connection::{by_slot, RedisConn};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Keys per command on one node: amortises the command, keeps each one short.
const KEYS_PER_COMMAND: usize = 512;

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

/// `name k1 k2 ...`.
fn command(name: &str, keys: &[Bytes]) -> redis::Cmd {
    let mut cmd = redis::cmd(name);
    for k in keys {
        cmd.arg(&k[..]);
    }
    cmd
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
            let cmds: Vec<redis::Cmd> = if conn.is_cluster() {
                by_slot(&req.keys)
                    .into_values()
                    .map(|keys| command(name, &keys))
                    .collect()
            } else {
                req.keys
                    .chunks(KEYS_PER_COMMAND)
                    .map(|chunk| command(name, chunk))
                    .collect()
            };
            conn.each::<()>(cmds).await.map(|_| ()).map_err(error)
        })
    }
}
