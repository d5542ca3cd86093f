//! The RabbitMQ retry queue (`[retry] queue = "rabbitmq"`).
//!
//! Declared at start-up (all durable): `PREFIX` (the work queue), `PREFIX.retry`
//! (no consumer; `x-dead-letter-exchange = ""`, `x-dead-letter-routing-key =
//! PREFIX`, so a message whose per-message TTL (`expiration` = its backoff) runs out
//! goes back to the work queue) and `PREFIX.dead` (the dead-letter store).
//! Publishes are persistent and wait for publisher confirms; the consumer acks a
//! delivery only after its delete landed, or after its retry / dead copy was
//! confirmed. A lost connection is reopened with backoff; nothing is acked twice
//! or lost, at worst a delete is repeated.
//!
//! Per-message TTLs expire only at the head of a queue, so a short retry can wait
//! behind a longer one: retries are never early, at worst late.

mod service;

#[cfg(test)]
mod integration_tests;

pub use service::RabbitQueue;
