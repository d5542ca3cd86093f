//! The online checker's errors.

use connectors::rules::RuleError;
use connectors::targets::TargetError;

/// What can go wrong in the online checker: a bad `[audit]` value at startup, or a
/// check's read of the cache or the database (counted as a check error, not a check).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The config lacks what the checker needs (`[mysql]`).
    #[error("{0}")]
    Config(connectors::config::ConfigError),
    /// The `[[rules]]` do not compile.
    #[error("[[rules]]: {0}")]
    Rules(#[from] RuleError),
    /// `[mysql] url` is not a URL mysql_async understands.
    #[error("[mysql] url: {0}")]
    MysqlUrl(#[source] mysql_async::UrlError),
    /// No connection to the external cache.
    #[error("cannot connect to the cache: {0}")]
    CacheConnect(#[source] TargetError),
    /// The external cache answered with an error.
    #[error("cache read: {0}")]
    CacheRead(#[from] redis::RedisError),
    /// The external cache or the engine answered something a read cannot mean.
    #[error("cache read: unexpected reply {0}")]
    CacheReply(String),
    /// No connection to MySQL.
    #[error("cannot connect to MySQL: {0}")]
    DbConnect(#[source] mysql_async::Error),
    /// The row read failed.
    #[error("row read from {table}: {source}")]
    RowRead {
        /// `db.table`.
        table: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A read took longer than the checker waits.
    #[error("{0} read timed out")]
    Timeout(&'static str),
}
