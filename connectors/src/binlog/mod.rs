//! The MySQL/MariaDB binlog source: connects as a replica, streams row events, and
//! hands whole committed transactions, with named row images, to the pipeline.
//!
//! Laid out like a Vector source: [`config`] (the `[mysql]` section), [`source`] (the
//! stream loop, reconnects), [`decode`] (events to transaction boundaries and row
//! images; values render through [`crate::row`]),
//! [`position`] (files, offsets, GTIDs), [`schema`] (column names), [`server`] (the
//! server's current position).

pub mod config;
pub mod decode;
pub mod position;
pub mod probe;
pub mod schema;
pub mod server;
pub mod source;

#[cfg(test)]
mod integration_tests;

pub use crate::row::{Cell, Row};
pub use config::{MysqlConfig, OnPurged};
pub use decode::{ChangeKind, DecodeError};
pub use position::{MariadbGtid, MariadbGtidState, Position, StartPosition};
pub use probe::SourceProbe;
pub use source::{BinlogSource, SourceError, SourceStats};

/// One row change with named, rendered before and after images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// Database (schema) name.
    pub db: String,
    /// Table name.
    pub table: String,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// The row before the change (updates and deletes).
    pub before: Option<Row>,
    /// The row after the change (inserts and updates).
    pub after: Option<Row>,
}

/// A committed transaction (or a standalone DDL statement), in binlog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Row changes of the tables the source was asked for, in binlog order.
    pub changes: Vec<RowChange>,
    /// Resume here to stream the transaction after this one.
    pub position: Position,
    /// Commit time on the server (seconds since the epoch).
    pub timestamp: u32,
    /// The statement, when this is a DDL rather than a row transaction.
    pub ddl: Option<String>,
    /// Binlog events this transaction spanned.
    pub events: u64,
}
