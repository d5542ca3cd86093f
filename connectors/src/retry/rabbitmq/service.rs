//! Connection handling, publishing with confirms, and the consumer.

use crate::retry::{QueueError, QueuedDelete, RetryConfig, RetryStats};
use crate::targets::DeleteService;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

fn amqp(e: lapin::Error) -> QueueError {
    QueueError::Amqp(e.to_string())
}

/// How long a connection attempt (TCP, AMQP handshake, declarations) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a publisher confirm before treating the channel as dead.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// A consumer idle this long re-reads the queue depth from the broker.
const IDLE_RESYNC: Duration = Duration::from_secs(1);

/// A message to publish: routing key (queue name), body (the key), properties.
type Msg = (String, Bytes, BasicProperties);

/// Pause before reconnect attempt `attempt` (1-based): 100 ms doubling to 5 s,
/// with equal jitter so a restarted broker is not hit by every client at once.
fn reconnect_pause(attempt: u32) -> Duration {
    let capped = (100u64 << attempt.saturating_sub(1).min(6)).min(5_000);
    let half = capped / 2;
    Duration::from_millis(half + fastrand::u64(0..=capped - half))
}

/// The RabbitMQ-backed queue.
pub struct RabbitQueue {
    cfg: RetryConfig,
    url: String,
    /// The publishing connection. Held for a whole `enqueue` (publishes are
    /// serialised) and by the depth resync, so the two never interleave.
    publisher: Mutex<Option<(Connection, Channel)>>,
    stats: RetryStats,
    /// What the depth is made of (never held across an await).
    outstanding: std::sync::Mutex<Outstanding>,
}

/// The deletes queued and not yet landed (or dead-lettered), for an exact depth.
///
/// Every message this process publishes carries a `message_id` of
/// `INSTANCE-SEQ`; its retry copies keep it. A delivery settles its id once:
/// a duplicate (a publish repeated after a lost confirm, a redelivery after a
/// lost ack) of an id already settled changes nothing, so the depth neither
/// drifts nor reaches 0 while a delete is still queued.
#[derive(Debug, Default)]
struct Outstanding {
    /// This process's id prefix.
    instance: String,
    next: u64,
    /// Sequence numbers published by this process and not settled.
    ids: HashSet<u64>,
    /// Messages found on the broker at start (earlier processes) not settled yet.
    foreign: u64,
}

impl Outstanding {
    fn depth(&self) -> u64 {
        self.ids.len() as u64 + self.foreign
    }

    /// Settles the message `id` (None: no id, from an earlier process).
    fn settle(&mut self, id: Option<&str>) {
        let own = id
            .and_then(|id| id.split_once('-'))
            .filter(|(inst, _)| *inst == self.instance)
            .and_then(|(_, seq)| seq.parse::<u64>().ok());
        match own {
            Some(seq) => {
                self.ids.remove(&seq);
            }
            None => self.foreign = self.foreign.saturating_sub(1),
        }
    }
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
            outstanding: std::sync::Mutex::new(Outstanding {
                instance: format!("{:016x}", fastrand::u64(..)),
                ..Outstanding::default()
            }),
        };
        let (conn, ch) = q.connect().await?;
        let depth = q.broker_depth(&ch).await?;
        let dead = q.count(&ch, &q.dead_name()).await?;
        q.outstanding().foreign = depth;
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

    fn outstanding(&self) -> std::sync::MutexGuard<'_, Outstanding> {
        // Poisoning cannot leave the set inconsistent (single-step updates).
        self.outstanding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Settles the messages with these ids and publishes the new depth.
    fn settle<'a>(&self, ids: impl Iterator<Item = Option<&'a str>>) {
        let mut o = self.outstanding();
        for id in ids {
            o.settle(id);
        }
        self.stats.set_depth(o.depth());
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

    /// Ready messages of the retry queue, then of the work queue. In that order: a
    /// message moving from retry to work between the two reads is counted twice
    /// (harmless, corrected next time), never zero times.
    async fn broker_depth(&self, ch: &Channel) -> Result<u64, QueueError> {
        let retry = self.count(ch, &self.retry_name()).await?;
        Ok(retry + self.count(ch, &self.cfg.prefix).await?)
    }

    /// A connection and a confirm-mode channel, with everything declared (again,
    /// after a broker restart: declarations are idempotent), within
    /// [`CONNECT_TIMEOUT`].
    async fn connect(&self) -> Result<(Connection, Channel), QueueError> {
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

    fn props(
        id: Option<&str>,
        position: &str,
        attempts: u32,
        expiration: Option<Duration>,
    ) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(
            "x-attempts".into(),
            AMQPValue::LongLongInt(i64::from(attempts)),
        );
        h.insert(
            "x-position".into(),
            AMQPValue::LongString(LongString::from(position)),
        );
        let mut p = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(h);
        if let Some(id) = id {
            p = p.with_message_id(ShortString::from(id));
        }
        match expiration {
            Some(d) => p.with_expiration(ShortString::from(d.as_millis().max(1).to_string())),
            None => p,
        }
    }

    /// Publishes every message of `msgs` and waits for the confirms; the ones the
    /// broker acked are removed from `msgs`. On an error, `msgs` keeps exactly the
    /// unconfirmed ones (to publish again on a new connection: at worst a
    /// duplicate, never a loss).
    async fn publish_confirmed(ch: &Channel, msgs: &mut Vec<Msg>) -> Result<(), QueueError> {
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

    /// Publishes `keys` to the work queue, persistent, and returns once the broker
    /// confirmed all of them. Unconfirmed messages stay in memory and are published
    /// again after a reconnect (with backoff) until confirmed: the checkpoint may
    /// not move before these deletes are safe, so the caller waits meanwhile.
    pub async fn enqueue(&self, keys: &[Bytes], position: &str) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut g = self.publisher.lock().await;
        // Counted before the first publish: the consumer may take (and settle) a
        // message before its confirm reaches us.
        let mut msgs: Vec<Msg> = {
            let mut o = self.outstanding();
            let msgs = keys
                .iter()
                .map(|k| {
                    let seq = o.next;
                    o.next += 1;
                    o.ids.insert(seq);
                    let id = format!("{}-{seq}", o.instance);
                    let props = Self::props(Some(&id), position, 1, None);
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

    /// Consumes the work queue and deletes through `deletes` until the process ends,
    /// reconnecting with backoff (and re-declaring the queues) whenever the
    /// connection is lost. Unacked deliveries of a lost connection go back to the
    /// queue on the broker's side.
    pub async fn run_worker(self: Arc<Self>, mut deletes: DeleteService) {
        let mut attempt = 0u32;
        loop {
            if let Err(e) = self.consume(&mut deletes, &mut attempt).await {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(error = %e, attempt, "retry queue consumer lost its connection; reconnecting");
                }
            }
            attempt += 1;
            tokio::time::sleep(reconnect_pause(attempt)).await;
        }
    }

    /// Sets the depth from the broker's ready counts, correcting the drift that
    /// redeliveries and duplicate publishes cause. Called only when this consumer
    /// holds no unacked delivery (before consuming, or idle with everything
    /// acked) and no publish is under way (the publisher lock is free), so ready
    /// messages are all there is.
    async fn resync(&self, ch: &Channel) -> Result<(), QueueError> {
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

    async fn consume(
        &self,
        deletes: &mut DeleteService,
        attempt: &mut u32,
    ) -> Result<(), QueueError> {
        let (conn, ch) = self.connect().await?;
        let res = self.consume_on(deletes, attempt, &ch).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(0, "".into())).await;
        res
    }

    async fn consume_on(
        &self,
        deletes: &mut DeleteService,
        attempt: &mut u32,
        ch: &Channel,
    ) -> Result<(), QueueError> {
        let batch = self.cfg.batch.clamp(1, u16::MAX as usize);
        ch.basic_qos(batch as u16, BasicQosOptions::default())
            .await
            .map_err(amqp)?;
        // Before consuming: the broker's count is of ready messages only, and
        // once we consume, the ones pushed to us are unacked and not in it.
        self.resync(ch).await?;
        let mut consumer = ch
            .basic_consume(
                self.cfg.prefix.as_str().into(),
                "coherent-retry".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)?;
        if *attempt > 0 {
            tracing::info!(attempts = *attempt, "retry queue consumer reconnected");
        }
        *attempt = 0;
        loop {
            let first = match tokio::time::timeout(IDLE_RESYNC, consumer.next()).await {
                Err(_) => {
                    self.resync(ch).await?;
                    continue;
                }
                Ok(None) => return Err(QueueError::Amqp("consumer stream ended".into())),
                Ok(Some(d)) => d.map_err(amqp)?,
            };
            let mut deliveries = vec![first];
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
            match deletes.send(&keys).await {
                Ok(()) => {
                    // Acked only now that the delete landed; a lost ack means a
                    // redelivery and a repeated (idempotent) delete.
                    ch.basic_ack(last, BasicAckOptions { multiple: true })
                        .await
                        .map_err(amqp)?;
                    self.stats.count(0, 0, n, 0);
                    self.settle(deliveries.iter().map(|d| message_id(&d.properties)));
                }
                Err(err) => {
                    tracing::warn!(error = %err, keys = n, "retry batch failed");
                    let mut msgs = Vec::with_capacity(deliveries.len());
                    let mut dead = 0u64;
                    let mut settled = Vec::new();
                    for (d, key) in deliveries.iter().zip(keys) {
                        let (attempts, position) = headers(&d.properties);
                        let id = message_id(&d.properties);
                        let attempts = attempts + 1;
                        if attempts >= self.cfg.max_attempts {
                            tracing::error!(key = %String::from_utf8_lossy(&key), %position,
                                attempts, "delete dead-lettered after max_attempts");
                            dead += 1;
                            settled.push(id);
                            msgs.push((
                                self.dead_name(),
                                key,
                                Self::props(id, &position, attempts, None),
                            ));
                        } else {
                            let pause = self.cfg.backoff_for(attempts);
                            msgs.push((
                                self.retry_name(),
                                key,
                                Self::props(id, &position, attempts, Some(pause)),
                            ));
                        }
                    }
                    // Confirmed copies first, then the ack: a crash in between
                    // only duplicates.
                    if let Err(e) = Self::publish_confirmed(ch, &mut msgs).await {
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
                    self.settle(settled.into_iter());
                }
            }
        }
    }
}

fn message_id(p: &BasicProperties) -> Option<&str> {
    p.message_id().as_ref().map(|s| s.as_str())
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
