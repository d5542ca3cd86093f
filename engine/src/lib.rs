//! Coherent's engine: an in-memory store that speaks the Redis protocol (RESP2/RESP3),
//! so any Redis client can use it.
//!
//! The layout follows Redis and tokio's mini-redis:
//!
//! - `net`: RESP parsing (`frame`) and replies (`reply`), one task per connection
//!   (`connection`), the listener (`server`);
//! - `command`: the command table and the dispatcher; `cmd`: one file per command
//!   family, each exporting its rows of the table;
//! - `keyspace`: the databases (`db`), expiry, WATCH, keyspace notifications, and the
//!   write path every change passes, which fans it out to its consumers (its module
//!   doc says where a write's side effects go), the command stream (`propagate`)
//!   included;
//! - `types`: the value types and their encodings;
//! - `store`: everything the handlers share under one lock; `client`: the one
//!   record per connection; `blocking`, `pubsub`: blocked clients and
//!   subscriptions; `lease`, `backstop`: Coherent's lease tokens and TTL backstops;
//! - `config`: the settings table that CONFIG, the TOML `[engine]` section and INFO
//!   read (and CONFIG REWRITE writes back, `config::rewrite`);
//! - `observe`: what the server records about the commands it runs (INFO
//!   commandstats/errorstats/latencystats, the slow log, latency samples, MONITOR's
//!   feed), reported once per call by the dispatcher; `pause`: CLIENT PAUSE;
//! - `persist`: Redis's file formats (the RDB codec, DUMP payloads);
//! - `repl`: replication (PSYNC2) both ways: the backlog, serving replicas, the link
//!   to our primary.
//!
//! The public surface is what an embedding process needs: [`Engine`] (run commands in
//! process, [`Engine::stats`], hooks and propagation sinks, the replication [`Role`]
//! and its changes, shutdown), [`Server`] (serve it over TCP), [`EngineConfig`] and
//! [`Reply`]. The store stays inside the crate.

pub mod alloc;
pub(crate) mod backstop;
pub(crate) mod blocking;
pub(crate) mod client;
pub(crate) mod cmd;
pub(crate) mod command;
pub(crate) mod config;
mod engine;
pub(crate) mod error;
pub(crate) mod keyspace;
pub(crate) mod lazyfree;
pub(crate) mod lease;
pub(crate) mod longdouble;
pub(crate) mod net;
pub(crate) mod observe;
pub(crate) mod outbuf;
pub(crate) mod pause;
pub mod persist;
pub(crate) mod pubsub;
pub(crate) mod repl;
pub(crate) mod script;
pub(crate) mod store;
pub(crate) mod types;
pub(crate) mod util;

/// Every allocation of a process that links the engine is counted (INFO `used_memory`,
/// the figure `maxmemory` is checked against); see [`alloc`].
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

pub use backstop::Backstop;
pub use config::{
    check_setting, settings_reference, EngineConfig, SettingDoc, SettingError, SettingValue,
};
pub use engine::{Engine, EngineStats};
pub use keyspace::propagate::{Propagated, PropagationSink};
pub use keyspace::KeyHook;
pub use net::frame::split_args;
pub use net::reply::Reply;
pub use net::server::{os_signal, Server};
pub use repl::Role;
pub use util::{now_ms, now_us};
