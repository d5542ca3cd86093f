//! The network side: RESP requests in ([`frame`]), replies out ([`reply`]), one task
//! per client ([`connection`]) and the listener with its shutdown and expiry cycle
//! ([`server`]).

pub(crate) mod connection;
pub(crate) mod frame;
pub(crate) mod reply;
pub(crate) mod server;
