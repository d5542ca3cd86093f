//! The worker's side of the RabbitMQ queue: [`QueueStore`] on a consuming
//! connection the worker owns ([`Consumer`]). A delivery is acked only once its
//! delete landed, or once its retry (or dead) copy was confirmed by the broker; any
//! error drops the connection, as does the worker's task ending, so every delivery
//! not acked yet goes back to the queue on the broker's side (at worst a delete
//! repeats, none is lost). The next `take_due` reconnects and re-declares.

use super::message::{self, Msg};
use super::queue::amqp;
use super::RabbitQueue;
use crate::retry::store::{QueueStore, Taken};
use crate::retry::{now_ms, QueueError, QueuedDelete, RetryConfig, RetryStats};
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use std::time::Duration;

/// A consumer idle this long re-reads the queue depth from the broker.
const IDLE_RESYNC: Duration = Duration::from_secs(1);

/// How long to wait for more deliveries to fill a batch once one arrived.
const GATHER: Duration = Duration::from_millis(2);

/// The worker's consuming connection, if one is open (dropping it closes it).
#[derive(Default)]
pub struct Consumer {
    open: Option<Open>,
    /// Connections opened so far: a ticket of an older one cannot be acked.
    generation: u64,
}

struct Open {
    conn: Connection,
    ch: Channel,
    deliveries: lapin::Consumer,
}

/// A delivery the worker holds.
#[derive(Debug)]
pub struct Delivery {
    tag: u64,
    id: Option<String>,
    generation: u64,
}

impl Consumer {
    /// The open connection, if `generation` is its.
    fn current(&self, generation: u64) -> Result<&Open, QueueError> {
        match &self.open {
            Some(c) if generation == self.generation => Ok(c),
            _ => Err(QueueError::Amqp(
                "the consumer connection was lost; its deliveries return to the queue".into(),
            )),
        }
    }

    /// Drops the connection: the broker requeues whatever it delivered unacked.
    async fn close(&mut self) {
        if let Some(c) = self.open.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.conn.close(0, "".into())).await;
        }
    }
}

impl RabbitQueue {
    /// Connects, sets the prefetch to a batch, resynchronises the depth and starts
    /// consuming the work queue.
    async fn start_consumer(&self) -> Result<Open, QueueError> {
        let (conn, ch) = self.connect().await?;
        let consumer = async {
            let batch = self.cfg.batch.clamp(1, u16::MAX as usize);
            ch.basic_qos(batch as u16, BasicQosOptions::default())
                .await
                .map_err(amqp)?;
            // Before consuming: the broker's count is of ready messages only, and
            // once we consume, the ones pushed to us are unacked and not in it.
            self.resync(&ch).await?;
            ch.basic_consume(
                self.cfg.prefix.as_str().into(),
                "coherent-retry".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(amqp)
        }
        .await;
        match consumer {
            Ok(deliveries) => Ok(Open {
                conn,
                ch,
                deliveries,
            }),
            Err(e) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), conn.close(0, "".into())).await;
                Err(e)
            }
        }
    }

    /// Waits for a delivery (resynchronising the depth while idle), then gathers
    /// what else is already there, up to `max`.
    async fn next_deliveries(
        &self,
        c: &mut Open,
        max: usize,
        generation: u64,
    ) -> Result<Vec<Taken<Delivery>>, QueueError> {
        let first = loop {
            match tokio::time::timeout(IDLE_RESYNC, c.deliveries.next()).await {
                Err(_) => self.resync(&c.ch).await?,
                Ok(None) => return Err(QueueError::Amqp("consumer stream ended".into())),
                Ok(Some(d)) => break d.map_err(amqp)?,
            }
        };
        let mut out = vec![taken(first, generation)];
        while out.len() < max {
            match tokio::time::timeout(GATHER, c.deliveries.next()).await {
                Ok(Some(d)) => out.push(taken(d.map_err(amqp)?, generation)),
                Ok(None) => return Err(QueueError::Amqp("consumer stream ended".into())),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Publishes `msgs` (copies of the deliveries of `tickets`) and acks each
    /// delivery once they are confirmed; on an error the connection is dropped.
    async fn republish<'a>(
        &self,
        consumer: &mut Consumer,
        mut msgs: Vec<Msg>,
        tickets: impl Iterator<Item = &'a Delivery> + Clone,
    ) -> Result<(), QueueError> {
        let res = async {
            let generation = tickets.clone().next().map_or(0, |d| d.generation);
            let c = consumer.current(generation)?;
            // Confirmed copies first, then the acks: a crash in between only
            // duplicates. One by one: other deliveries of the batch may not be
            // settled yet.
            Self::publish_confirmed(&c.ch, &mut msgs).await?;
            for d in tickets {
                c.ch.basic_ack(d.tag, BasicAckOptions { multiple: false })
                    .await
                    .map_err(amqp)?;
            }
            Ok(())
        }
        .await;
        if res.is_err() {
            consumer.close().await;
        }
        res
    }
}

/// A delivery as the worker takes it: the key moved out of the body.
fn taken(d: lapin::message::Delivery, generation: u64) -> Taken<Delivery> {
    let h = message::headers(&d.properties);
    let id = message::message_id(&d.properties).map(str::to_owned);
    Taken {
        key: Bytes::from(d.data),
        position: h.position.into(),
        attempts: h.attempts,
        due_ms: h.due_ms,
        ticket: Delivery {
            tag: d.delivery_tag,
            id,
            generation,
        },
    }
}

impl QueueStore for RabbitQueue {
    type Ticket = Delivery;
    type Consumer = Consumer;

    fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    fn stats(&self) -> &RetryStats {
        &self.stats
    }

    async fn push(
        &self,
        keys: &[Bytes],
        position: &str,
        due_in: Duration,
    ) -> Result<(), QueueError> {
        self.push_confirmed(keys, position, due_in).await
    }

    /// Deliveries come in queue order, due or not: a first try waits in the work
    /// queue for its due time (the worker holds it, unacked, until then), a retry
    /// in `PREFIX.retry` through its per-message TTL.
    fn consumer(&self) -> Consumer {
        Consumer::default()
    }

    async fn take_due(
        &self,
        consumer: &mut Consumer,
        max: usize,
    ) -> Result<Vec<Taken<Delivery>>, QueueError> {
        if consumer.open.is_none() {
            let c = self.start_consumer().await?;
            consumer.generation += 1;
            consumer.open = Some(c);
        }
        let generation = consumer.generation;
        let res = match consumer.open.as_mut() {
            Some(c) => self.next_deliveries(c, max, generation).await,
            None => Ok(Vec::new()),
        };
        if res.is_err() {
            consumer.close().await;
        }
        res
    }

    async fn ack(
        &self,
        consumer: &mut Consumer,
        landed: Vec<Taken<Delivery>>,
    ) -> Result<(), QueueError> {
        let Some(last) = landed.iter().map(|t| &t.ticket).max_by_key(|d| d.tag) else {
            return Ok(());
        };
        // Acked only now that the deletes landed; a lost ack means a redelivery and
        // a repeated (idempotent) delete. `multiple`: every earlier delivery of this
        // channel is settled already.
        let res = match consumer.current(last.generation) {
            Ok(c) => {
                c.ch.basic_ack(last.tag, BasicAckOptions { multiple: true })
                    .await
                    .map_err(amqp)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            consumer.close().await;
            return Err(e);
        }
        self.stats.count(0, 0, landed.len() as u64, 0);
        self.settle(landed.iter().map(|t| t.ticket.id.as_deref()));
        Ok(())
    }

    async fn requeue(
        &self,
        consumer: &mut Consumer,
        failed: Vec<(Taken<Delivery>, Duration)>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let retry = self.retry_name();
        let msgs: Vec<Msg> = failed
            .iter()
            .map(|(t, pause)| {
                let due = now + pause.as_millis() as u64;
                let props = message::props(
                    t.ticket.id.as_deref(),
                    &t.position,
                    t.attempts,
                    due,
                    Some(*pause),
                );
                (retry.clone(), t.key.clone(), props)
            })
            .collect();
        self.republish(consumer, msgs, failed.iter().map(|(t, _)| &t.ticket))
            .await?;
        self.stats.count(0, failed.len() as u64, 0, 0);
        Ok(())
    }

    async fn dead_letter(
        &self,
        consumer: &mut Consumer,
        dead: Vec<Taken<Delivery>>,
    ) -> Result<(), QueueError> {
        let name = self.dead_name();
        let msgs: Vec<Msg> = dead
            .iter()
            .map(|t| {
                let props =
                    message::props(t.ticket.id.as_deref(), &t.position, t.attempts, 0, None);
                (name.clone(), t.key.clone(), props)
            })
            .collect();
        self.republish(consumer, msgs, dead.iter().map(|t| &t.ticket))
            .await?;
        self.stats.count(0, 0, 0, dead.len() as u64);
        self.settle(dead.iter().map(|t| t.ticket.id.as_deref()));
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
        self.read_dead_letters().await
    }
}
