//! Connection handling, publishing with confirms, and the consumer.

use crate::retry::{QueueError, QueuedDelete, RetryConfig, RetryStats};
use crate::target::Target;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

fn amqp(e: lapin::Error) -> QueueError {
    QueueError::Amqp(e.to_string())
}

/// The RabbitMQ-backed queue.
pub struct RabbitQueue {
    cfg: RetryConfig,
    url: String,
    publisher: Mutex<Option<(Connection, Channel)>>,
    stats: RetryStats,
}

impl RabbitQueue {
    /// Connects and declares the queues.
    pub async fn open(cfg: RetryConfig) -> Result<Self, QueueError> {
        let url = cfg
            .url
            .clone()
            .ok_or_else(|| QueueError::Config("url: required".into()))?;
        let q = RabbitQueue {
            cfg,
            url,
            publisher: Mutex::new(None),
            stats: RetryStats::default(),
        };
        let (conn, ch) = q.connect().await?;
        let depth = q.count(&ch, &q.cfg.prefix).await? + q.count(&ch, &q.retry_name()).await?;
        let dead = q.count(&ch, &q.dead_name()).await?;
        q.stats.set_depth(depth);
        q.stats.count(0, 0, 0, dead);
        *q.publisher.lock().await = Some((conn, ch));
        Ok(q)
    }

    /// The section it was opened with.
    pub fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &RetryStats {
        &self.stats
    }

    fn retry_name(&self) -> String {
        format!("{}.retry", self.cfg.prefix)
    }

    fn dead_name(&self) -> String {
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

    /// A connection and a confirm-mode channel, with everything declared.
    async fn connect(&self) -> Result<(Connection, Channel), QueueError> {
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

    fn props(position: &str, attempts: u32, expiration: Option<Duration>) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(
            "x-attempts".into(),
            AMQPValue::LongLongInt(i64::from(attempts)),
        );
        h.insert(
            "x-position".into(),
            AMQPValue::LongString(LongString::from(position)),
        );
        let p = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(h);
        match expiration {
            Some(d) => p.with_expiration(ShortString::from(d.as_millis().max(1).to_string())),
            None => p,
        }
    }

    /// Publishes each `(routing key, key, props)` and waits for every confirm.
    async fn publish_all(
        ch: &Channel,
        msgs: &[(String, Bytes, BasicProperties)],
    ) -> Result<(), QueueError> {
        let mut confirms = Vec::with_capacity(msgs.len());
        for (rk, key, props) in msgs {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    rk.as_str().into(),
                    BasicPublishOptions::default(),
                    key,
                    props.clone(),
                )
                .await
                .map_err(amqp)?,
            );
        }
        for c in confirms {
            let c = c.await.map_err(amqp)?;
            if !c.is_ack() {
                return Err(QueueError::Amqp("publish was nacked by the broker".into()));
            }
        }
        Ok(())
    }

    /// Publishes `keys` to the work queue, persistent, and returns once the broker
    /// confirmed all of them. Retries through reconnects until it succeeds: the
    /// checkpoint may not move before these deletes are safe.
    pub async fn enqueue(&self, keys: &[Bytes], position: &str) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let props = Self::props(position, 1, None);
        let msgs: Vec<_> = keys
            .iter()
            .map(|k| (self.cfg.prefix.clone(), k.clone(), props.clone()))
            .collect();
        let mut attempt = 0u32;
        loop {
            let mut g = self.publisher.lock().await;
            let res = match g.as_ref() {
                Some((_, ch)) => Self::publish_all(ch, &msgs).await,
                None => Err(QueueError::Amqp("not connected".into())),
            };
            match res {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    if attempt % 10 == 1 {
                        tracing::warn!(error = %e, attempt, "retry queue publish failed; reconnecting");
                    }
                    *g = None;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20))))
                        .await;
                    if let Ok(c) = self.connect().await {
                        *g = Some(c);
                    }
                }
            }
        }
        self.stats.count(keys.len() as u64, 0, 0, 0);
        self.stats.add_depth(keys.len() as i64);
        Ok(())
    }

    /// The dead-letter queue's messages (fetched and requeued: this only looks).
    pub async fn dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
        let (conn, ch) = self.connect().await?;
        let mut out = Vec::new();
        while let Some(m) = ch
            .basic_get(self.dead_name().as_str().into(), BasicGetOptions::default())
            .await
            .map_err(amqp)?
        {
            let (attempts, position) = headers(&m.delivery.properties);
            out.push(QueuedDelete {
                key: Bytes::from(m.delivery.data.clone()),
                position,
                attempts,
            });
        }
        // Closing without acks returns every fetched message to the queue.
        let _ = conn.close(0, "".into()).await;
        Ok(out)
    }

    /// Consumes the work queue and deletes against `target` until the process ends,
    /// reconnecting as needed.
    pub async fn run_worker<T: Target>(self: Arc<Self>, target: T) {
        loop {
            if let Err(e) = self.consume(&target).await {
                tracing::warn!(error = %e, "retry queue consumer lost its connection; reconnecting");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn consume<T: Target>(&self, target: &T) -> Result<(), QueueError> {
        let (_conn, ch) = self.connect().await?;
        let batch = self.cfg.batch.clamp(1, u16::MAX as usize);
        ch.basic_qos(batch as u16, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        let mut consumer = ch
            .basic_consume(
                self.cfg.prefix.as_str().into(),
                "coherent-retry".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        loop {
            let Some(first) = consumer.next().await else {
                return Err(QueueError::Amqp("consumer stream ended".into()));
            };
            let mut deliveries = vec![first.map_err(amqp)?];
            // Gather what is already there, up to a batch, without waiting long.
            while deliveries.len() < batch {
                match tokio::time::timeout(Duration::from_millis(2), consumer.next()).await {
                    Ok(Some(d)) => deliveries.push(d.map_err(amqp)?),
                    Ok(None) => return Err(QueueError::Amqp("consumer stream ended".into())),
                    Err(_) => break,
                }
            }
            let keys: Vec<Bytes> = deliveries
                .iter()
                .map(|d| Bytes::from(d.data.clone()))
                .collect();
            let last = deliveries.last().map(|d| d.delivery_tag).unwrap_or(0);
            let n = keys.len() as u64;
            match target.delete_batch(&keys).await {
                Ok(()) => {
                    ch.basic_ack(last, BasicAckOptions { multiple: true })
                        .await
                        .map_err(amqp)?;
                    self.stats.count(0, 0, n, 0);
                    self.stats.add_depth(-(n as i64));
                }
                Err(err) => {
                    tracing::warn!(error = %err, keys = n, "retry batch failed");
                    let mut msgs = Vec::with_capacity(deliveries.len());
                    let mut dead = 0u64;
                    for (d, key) in deliveries.iter().zip(keys) {
                        let (attempts, position) = headers(&d.properties);
                        let attempts = attempts + 1;
                        if attempts >= self.cfg.max_attempts {
                            tracing::error!(key = %String::from_utf8_lossy(&key), %position,
                                attempts, "delete dead-lettered after max_attempts");
                            dead += 1;
                            msgs.push((
                                self.dead_name(),
                                key,
                                Self::props(&position, attempts, None),
                            ));
                        } else {
                            let pause = self.cfg.backoff_for(attempts);
                            msgs.push((
                                self.retry_name(),
                                key,
                                Self::props(&position, attempts, Some(pause)),
                            ));
                        }
                    }
                    // Confirmed copies first, then the ack: a crash in between
                    // only duplicates.
                    if let Err(e) = Self::publish_all(&ch, &msgs).await {
                        let _ = ch
                            .basic_nack(
                                last,
                                BasicNackOptions {
                                    multiple: true,
                                    requeue: true,
                                },
                            )
                            .await;
                        return Err(e);
                    }
                    ch.basic_ack(last, BasicAckOptions { multiple: true })
                        .await
                        .map_err(amqp)?;
                    self.stats.count(0, n - dead, 0, dead);
                    self.stats.add_depth(-(dead as i64));
                }
            }
        }
    }
}

fn headers(p: &BasicProperties) -> (u32, String) {
    let mut attempts = 1;
    let mut position = String::new();
    if let Some(h) = p.headers() {
        for (k, v) in h.inner() {
            match (k.as_str(), v) {
                ("x-attempts", AMQPValue::LongLongInt(n)) => attempts = (*n).max(0) as u32,
                ("x-position", AMQPValue::LongString(s)) => {
                    position = String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                _ => {}
            }
        }
    }
    (attempts, position)
}
