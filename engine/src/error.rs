//! Errors a command replies with. The texts are Redis 7.0's, byte for byte.

use crate::net::reply::Reply;

/// A command failure; its `Display` is the error line without the leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR index out of range")]
    IndexOutOfRange,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR DB index is out of range")]
    DbIndex,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR timeout is not a float or out of range")]
    TimeoutNotFloat,
    #[error("ERR timeout is negative")]
    TimeoutNegative,
    #[error("ERR min or max is not a float")]
    MinMaxNotFloat,
    #[error("ERR min or max not valid string range item")]
    MinMaxNotString,
    #[error("ERR value is out of range, must be positive")]
    NotPositive,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// DEBUG while `enable-debug-command` does not allow it for this client.
    #[error("ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.")]
    DebugNotAllowed,
    /// Over `maxmemory` with nothing left to evict, for a command that may grow memory.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    Oom,
    /// Any other error; the text carries its own prefix (`ERR ...`, `NOPROTO ...`).
    #[error("{0}")]
    Other(String),
}

impl CmdError {
    /// An `ERR`-prefixed error with the given text.
    pub fn err(msg: impl std::fmt::Display) -> CmdError {
        CmdError::Other(format!("ERR {msg}"))
    }
}

impl From<CmdError> for Reply {
    fn from(e: CmdError) -> Reply {
        Reply::Error(e.to_string())
    }
}

/// What a command handler returns.
pub type CmdResult = Result<Reply, CmdError>;
