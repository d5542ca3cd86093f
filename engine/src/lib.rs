//! Coherent's engine: an in-memory store that speaks the Redis protocol (RESP2/RESP3),
//! so any Redis client can use it.
//!
//! The layout follows Redis and tokio's mini-redis: [`frame`] parses requests,
//! [`reply`] encodes replies, [`db`] holds a keyspace, [`types`] the value types,
//! [`cmd`] one file per command family, [`command`] the table and dispatcher,
//! [`connection`] and [`server`] the network side. [`lease`] holds the lease tokens of
//! LEASEGET/LEASESET (`cmd/leases.rs`), which close the stale-fill race.
//!
//! The public surface is what an embedding process needs: [`Engine`] (run commands in
//! process, [`Engine::stats`], hooks, shutdown), [`Server`] (serve it over TCP),
//! [`EngineConfig`] and [`Reply`]. The store itself stays inside the crate.

pub(crate) mod backstop;
pub(crate) mod blocking;
pub(crate) mod client;
pub(crate) mod cmd;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod db;
mod engine;
pub(crate) mod error;
pub(crate) mod frame;
pub(crate) mod keyspace;
pub(crate) mod lease;
pub(crate) mod longdouble;
pub(crate) mod notify;
pub(crate) mod pubsub;
pub(crate) mod reply;
pub(crate) mod server;
pub(crate) mod store;
pub(crate) mod types;
pub(crate) mod util;

pub use backstop::Backstop;
pub use config::{check_setting, EngineConfig, SettingError, SettingValue};
pub use engine::{Engine, EngineStats};
pub use frame::split_args;
pub use keyspace::propagate::{Propagated, PropagationSink};
pub use keyspace::KeyHook;
pub use reply::Reply;
pub use server::{os_signal, Server};
pub use util::{now_ms, now_us};
