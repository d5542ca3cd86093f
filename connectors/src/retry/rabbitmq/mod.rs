//! The RabbitMQ retry queue (`[retry] queue = "rabbitmq"`): storage only
//! ([`crate::retry::store::QueueStore`]); the worker in [`crate::retry::worker`]
//! decides.
//!
//! Declared at start-up (all durable): `PREFIX` (the work queue), `PREFIX.retry`
//! (no consumer; `x-dead-letter-exchange = ""`, `x-dead-letter-routing-key =
//! PREFIX`, so a message whose per-message TTL (`expiration` = its backoff) runs out
//! goes back to the work queue) and `PREFIX.dead` (the dead-letter store).
//! Publishes are persistent and wait for publisher confirms; a delivery is acked
//! only after its delete landed, or after its retry / dead copy was confirmed. A
//! lost connection is reopened with backoff; nothing is acked twice or lost, at
//! worst a delete is repeated.
//!
//! Per-message TTLs expire only at the head of a queue, so a short retry can wait
//! behind a longer one: retries are never early, at worst late.
//!
//! - `queue.rs`: connections, declarations, publishing with confirms, pushes, the
//!   depth (kept exact with `outstanding.rs`);
//! - `consumer.rs`: the worker's side (take, ack, requeue, dead-letter);
//! - `message.rs`: a delete as a message (body, headers, id).

mod consumer;
mod message;
mod outstanding;
mod queue;

#[cfg(test)]
mod integration_tests;

pub use consumer::{Consumer, Delivery};
pub use queue::RabbitQueue;
