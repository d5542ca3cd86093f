//! Coherent's engine: an in-memory store that speaks the Redis protocol (RESP2/RESP3),
//! so any Redis client can use it.
//!
//! The layout follows Redis and tokio's mini-redis: [`frame`] parses requests,
//! [`reply`] encodes replies, [`db`] holds a keyspace, [`types`] the value types,
//! [`cmd`] one file per command family, [`command`] the table and dispatcher,
//! [`connection`] and [`server`] the network side. [`lease`] holds the lease tokens of
//! LEASEGET/LEASESET (`cmd/leases.rs`), which close the stale-fill race.

pub mod backstop;
pub mod blocking;
pub mod client;
pub mod cmd;
pub mod command;
pub mod config;
pub mod connection;
pub mod db;
pub mod error;
pub mod frame;
pub mod lease;
pub mod longdouble;
pub mod notify;
pub mod persist;
pub mod pubsub;
pub mod reply;
pub mod server;
pub mod store;
pub mod types;
pub mod util;

pub use config::EngineConfig;
pub use reply::Reply;
pub use server::{Engine, Server};
