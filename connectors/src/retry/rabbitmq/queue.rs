//! The queue's connection handling, declarations, publishing with confirms, pushes
//! and the depth kept exact against the broker.

use super::message::{self, Msg};
use super::outstanding::Outstanding;
use crate::retry::{now_ms, QueueError, QueuedDelete, RetryConfig, RetryStats};
use bytes::Bytes;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use std::time::Duration;
use tokio::sync::Mutex;

pub(super) fn amqp(e: lapin::Error) -> QueueError {
    QueueError::Amqp(e.to_string())
}

/// How long a connection attempt (TCP, AMQP handshake, declarations) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a publisher confirm before treating the channel as dead.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause before reconnect attempt `attempt` (1-based): 100 ms doubling to 5 s,
/// with equal jitter so a restarted broker is not hit by every client at once.
fn reconnect_pause(attempt: u32) -> Duration {
    let capped = (100u64 << attempt.saturating_sub(1).min(6)).min(5_000);
    let half = capped / 2;
    Duration::from_millis(half + fastrand::u64(0..=capped - half))
}

/// The RabbitMQ-backed queue.
pub struct RabbitQueue {
    pub(super) cfg: RetryConfig,
    url: String,
    /// The publishing connection. Held for a whole push (publishes are serialised)
    /// and by the depth resync, so the two never interleave.
    publisher: Mutex<Option<(Connection, Channel)>>,
    pub(super) stats: RetryStats,
    /// What the depth is made of (never held across an await).
    outstanding: std::sync::Mutex<Outstanding>,
}

impl RabbitQueue {
    /// Connects and declares the queues.
    pub async fn open(cfg: RetryConfig) -> Result<Self, QueueError> {
        let url = cfg.url.clone().ok_or_else(|| {
            QueueError::Config(crate::config::ConfigError::new(
                "retry",
                "url",
                "required for queue = \"rabbitmq\"",
            ))
        })?;
        let q = RabbitQueue {
            cfg,
            url,
            publisher: Mutex::new(None),
            stats: RetryStats::default(),
            outstanding: std::sync::Mutex::new(Outstanding::new(
                format!("{:016x}", fastrand::u64(..)),
                0,
            )),
        };
        let (conn, ch) = q.connect().await?;
        let depth = q.broker_depth(&ch).await?;
        let dead = q.count(&ch, &q.dead_name()).await?;
        q.outstanding().set_foreign(depth);
        q.stats.set_depth(depth);
        q.stats.count(0, 0, 0, dead);
        *q.publisher.lock().await = Some((conn, ch));
        Ok(q)
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, Outstanding> {
        // Poisoning cannot leave the set inconsistent (single-step updates).
        self.outstanding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Settles the messages with these ids and publishes the new depth.
    pub(super) fn settle<'a>(&self, ids: impl Iterator<Item = Option<&'a str>>) {
        let mut o = self.outstanding();
        for id in ids {
            o.settle(id);
        }
        self.stats.set_depth(o.depth());
    }

    pub(super) fn retry_name(&self) -> String {
        format!("{}.retry", self.cfg.prefix)
    }

    pub(super) fn dead_name(&self) -> String {
        format!("{}.dead", self.cfg.prefix)
    }

    async fn count(&self, ch: &Channel, name: &str) -> Result<u64, QueueError> {
        let q = ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        Ok(u64::from(q.message_count()))
    }

    /// Ready messages of the retry queue, then of the work queue. In that order: a
    /// message moving from retry to work between the two reads is counted twice
    /// (harmless, corrected next time), never zero times.
    async fn broker_depth(&self, ch: &Channel) -> Result<u64, QueueError> {
        let retry = self.count(ch, &self.retry_name()).await?;
        Ok(retry + self.count(ch, &self.cfg.prefix).await?)
    }

    /// Sets the depth from the broker's ready counts, correcting the drift that
    /// redeliveries and duplicate publishes cause. Called only when the consumer
    /// holds no unacked delivery (before consuming, or idle with everything
    /// settled) and no publish is under way (the publisher lock is free), so ready
    /// messages are all there is.
    pub(super) async fn resync(&self, ch: &Channel) -> Result<(), QueueError> {
        let Ok(_g) = self.publisher.try_lock() else {
            return Ok(());
        };
        let d = self.broker_depth(ch).await?;
        let was = self.stats.snapshot().depth;
        if d != was {
            tracing::debug!(
                was,
                now = d,
                "retry queue depth resynchronised from the broker"
            );
            self.stats.set_depth(d);
        }
        Ok(())
    }

    /// A connection and a confirm-mode channel, with everything declared (again,
    /// after a broker restart: declarations are idempotent), within
    /// [`CONNECT_TIMEOUT`].
    pub(super) async fn connect(&self) -> Result<(Connection, Channel), QueueError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner())
            .await
            .map_err(|_| QueueError::Amqp("connect timed out".into()))?
    }

    async fn connect_inner(&self) -> Result<(Connection, Channel), QueueError> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(amqp)?;
        let ch = conn.create_channel().await.map_err(amqp)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp)?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(
            self.cfg.prefix.as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(amqp)?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from("")),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(self.cfg.prefix.as_str())),
        );
        ch.queue_declare(self.retry_name().as_str().into(), durable, args)
            .await
            .map_err(amqp)?;
        ch.queue_declare(
            self.dead_name().as_str().into(),
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(amqp)?;
        Ok((conn, ch))
    }

    /// Publishes every message of `msgs` and waits for the confirms; the ones the
    /// broker acked are removed from `msgs`. On an error, `msgs` keeps exactly the
    /// unconfirmed ones (to publish again on a new connection: at worst a
    /// duplicate, never a loss).
    pub(super) async fn publish_confirmed(
        ch: &Channel,
        msgs: &mut Vec<Msg>,
    ) -> Result<(), QueueError> {
        let mut confirms = Vec::with_capacity(msgs.len());
        let mut err = None;
        for (i, (rk, key, props)) in msgs.iter().enumerate() {
            match ch
                .basic_publish(
                    "".into(),
                    rk.as_str().into(),
                    BasicPublishOptions::default(),
                    key,
                    props.clone(),
                )
                .await
            {
                Ok(c) => confirms.push((i, c)),
                Err(e) => {
                    err = Some(amqp(e));
                    break;
                }
            }
        }
        let mut confirmed = vec![false; msgs.len()];
        for (i, c) in confirms {
            match tokio::time::timeout(CONFIRM_TIMEOUT, c).await {
                Ok(Ok(c)) if c.is_ack() => confirmed[i] = true,
                Ok(Ok(_)) => {
                    err.get_or_insert(QueueError::Amqp("publish was nacked by the broker".into()));
                }
                Ok(Err(e)) => {
                    err.get_or_insert(amqp(e));
                }
                Err(_) => {
                    err.get_or_insert(QueueError::Amqp("publisher confirm timed out".into()));
                    break;
                }
            }
        }
        let mut i = 0;
        msgs.retain(|_| {
            let keep = !confirmed[i];
            i += 1;
            keep
        });
        match err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Publishes `keys` to the work queue, persistent, due in `due_in`, and returns
    /// once the broker confirmed all of them. Unconfirmed messages stay in memory and
    /// are published again after a reconnect (with backoff) until confirmed: the
    /// checkpoint may not move before these deletes are safe, so the caller waits
    /// meanwhile.
    pub(super) async fn push_confirmed(
        &self,
        keys: &[Bytes],
        position: &str,
        due_in: Duration,
    ) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut g = self.publisher.lock().await;
        let due = now_ms() + due_in.as_millis() as u64;
        // Counted before the first publish: the consumer may take (and settle) a
        // message before its confirm reaches us.
        let mut msgs: Vec<Msg> = {
            let mut o = self.outstanding();
            let msgs = keys
                .iter()
                .map(|k| {
                    let id = o.publish();
                    let props = message::props(Some(&id), position, 1, due, None);
                    (self.cfg.prefix.clone(), k.clone(), props)
                })
                .collect();
            self.stats.set_depth(o.depth());
            msgs
        };
        self.stats.count(keys.len() as u64, 0, 0, 0);
        let mut attempt = 0u32;
        loop {
            let res = match g.as_ref() {
                Some((_, ch)) => Self::publish_confirmed(ch, &mut msgs).await,
                None => Err(QueueError::Amqp("not connected".into())),
            };
            let Err(e) = res else { break };
            attempt += 1;
            if attempt % 10 == 1 {
                tracing::warn!(error = %e, attempt, unconfirmed = msgs.len(),
                    "retry queue publish failed; reconnecting");
            }
            if let Some((conn, _)) = g.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), conn.close(0, "".into())).await;
            }
            tokio::time::sleep(reconnect_pause(attempt)).await;
            match self.connect().await {
                Ok(c) => *g = Some(c),
                Err(e) => tracing::debug!(error = %e, "retry queue reconnect failed"),
            }
        }
        Ok(())
    }

    /// The dead-letter queue's messages (fetched and requeued: this only looks).
    pub(super) async fn read_dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
        let (conn, ch) = self.connect().await?;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(self.dead_name().as_str().into(), BasicGetOptions::default())
            .await
            .map_err(amqp)?
        {
            let h = message::headers(&m.delivery.properties);
            out.push(QueuedDelete {
                key: Bytes::from(m.delivery.data.clone()),
                position: h.position,
                attempts: h.attempts,
            });
        }
        // Closing without acks returns every fetched message to the queue.
        let _ = conn.close(0, "".into()).await;
        Ok(out)
    }
}
