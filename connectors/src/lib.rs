//! Coherent's connectors: the MySQL/MariaDB binlog source, the rules that turn row
//! changes into cache keys, the targets that delete them, and the checkpoint.
//!
//! Data flows one way: binlog event ([`binlog::decode`]) -> row change
//! ([`binlog::RowChange`]) -> keys ([`rules`]) -> deletes ([`targets`]) -> checkpoint
//! ([`checkpoint`]), wired by [`pipeline`]. No module reaches back up the chain.
//! [`row`] renders MySQL values and rows (for the decoder, the rules and the audits).

pub mod binlog;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod delayed;
pub mod duration;
pub mod filelock;
pub mod ha;
pub mod pipeline;
pub mod retry;
pub mod row;

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod bench_tests;
pub mod rules;
pub mod targets;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::ConnectorConfig;
pub use pipeline::{Applied, Pipeline, PipelineError, PipelineStats};
