//! RabbitMQ: connection, topology, confirmed publishing and consuming.
//!
//! Every work queue is a durable quorum queue with a dead-letter exchange and a
//! delivery limit, so a poison message ends in `<queue>.dead` after a bounded
//! number of deliveries. Every broker call has a timeout.

use anyhow::{Context, anyhow, bail};
use futures::future::join_all;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use std::future::Future;
use std::time::Duration;

/// How long any single broker call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries of one message before it is dead-lettered.
pub const DELIVERY_LIMIT: i64 = 5;

/// Runs a broker call with [`CALL_TIMEOUT`].
pub async fn timed<T, E>(what: &str, fut: impl Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(result) => result.with_context(|| format!("RabbitMQ {what}")),
        Err(_) => bail!("RabbitMQ {what} timed out after {CALL_TIMEOUT:?}"),
    }
}

/// The names of this deployment's exchanges and queues.
#[derive(Debug, Clone)]
pub struct Names {
    ns: String,
}

impl Names {
    /// Names under namespace `ns` (`spotcheck` in production).
    pub fn new(ns: &str) -> Self {
        Self { ns: ns.to_owned() }
    }

    /// The topic exchange the marketplace publishes listings to.
    pub fn listings_exchange(&self) -> String {
        format!("{}.listings", self.ns)
    }
    /// The queue the coordinator ingests the feed from.
    pub fn ingest_queue(&self) -> String {
        format!("{}.ingest", self.ns)
    }
    /// The queue of vote-slot offers that worker-api claims from.
    pub fn tasks_queue(&self) -> String {
        format!("{}.tasks", self.ns)
    }
    /// The queue of vote events the coordinator aggregates.
    pub fn votes_queue(&self) -> String {
        format!("{}.votes", self.ns)
    }
    /// The dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.ns)
    }
    /// The dead-letter queue of a work queue.
    pub fn dead_queue(queue: &str) -> String {
        format!("{queue}.dead")
    }
    /// The work queues.
    pub fn work_queues(&self) -> [String; 3] {
        [self.ingest_queue(), self.tasks_queue(), self.votes_queue()]
    }
    /// The topic exchange enforcement events go out on (routing key
    /// `enforcement.<kind>`), for the marketplace's systems to bind to.
    pub fn enforcement_exchange(&self) -> String {
        format!("{}.enforcement", self.ns)
    }
    /// Where enforcement events that no binding routes are kept (the
    /// enforcement exchange's alternate exchange, and its one queue), so an
    /// event is never dropped while the marketplace's queue is not bound yet.
    pub fn enforcement_unrouted(&self) -> String {
        format!("{}.enforcement.unrouted", self.ns)
    }
    /// Every queue: work queues, their dead-letter queues and the unrouted
    /// enforcement events, for clean-up.
    pub fn all_queues(&self) -> Vec<String> {
        let mut all = Vec::new();
        for queue in self.work_queues() {
            all.push(Self::dead_queue(&queue));
            all.push(queue);
        }
        all.push(self.enforcement_unrouted());
        all
    }
    /// Every exchange, for clean-up.
    pub fn exchanges(&self) -> [String; 4] {
        [
            self.listings_exchange(),
            self.dead_letter_exchange(),
            self.enforcement_exchange(),
            self.enforcement_unrouted(),
        ]
    }
}

/// Connects with automatic recovery of the connection, channels and consumers.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .enable_auto_recover();
    timed("connect", Connection::connect(url, props)).await
}

fn quorum_args(names: &Names, queue: &str, dead_letter: bool) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.dead_letter_exchange().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

/// Declares the exchanges, queues and bindings (idempotent; both binaries call it).
pub async fn declare_topology(channel: &Channel, names: &Names) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    timed(
        "declare listings exchange",
        channel.exchange_declare(
            names.listings_exchange().as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        ),
    )
    .await?;
    timed(
        "declare dead-letter exchange",
        channel.exchange_declare(
            names.dead_letter_exchange().as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        ),
    )
    .await?;
    for queue in names.work_queues() {
        let dead = Names::dead_queue(&queue);
        timed(
            "declare dead-letter queue",
            channel.queue_declare(
                dead.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_args(names, &dead, false),
            ),
        )
        .await?;
        timed(
            "bind dead-letter queue",
            channel.queue_bind(
                dead.as_str().into(),
                names.dead_letter_exchange().as_str().into(),
                queue.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        timed(
            "declare work queue",
            channel.queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                quorum_args(names, &queue, true),
            ),
        )
        .await?;
    }
    let unrouted = names.enforcement_unrouted();
    timed(
        "declare unrouted enforcement exchange",
        channel.exchange_declare(
            unrouted.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        ),
    )
    .await?;
    timed(
        "declare unrouted enforcement queue",
        channel.queue_declare(
            unrouted.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum_args(names, &unrouted, false),
        ),
    )
    .await?;
    timed(
        "bind unrouted enforcement queue",
        channel.queue_bind(
            unrouted.as_str().into(),
            unrouted.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    let mut alternate = FieldTable::default();
    alternate.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(unrouted.as_str().into()),
    );
    timed(
        "declare enforcement exchange",
        channel.exchange_declare(
            names.enforcement_exchange().as_str().into(),
            ExchangeKind::Topic,
            durable,
            alternate,
        ),
    )
    .await?;
    timed(
        "bind ingest queue",
        channel.queue_bind(
            names.ingest_queue().as_str().into(),
            names.listings_exchange().as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    Ok(())
}

/// A channel in confirm mode that publishes persistent JSON messages.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a confirm-mode channel on `conn`.
    pub async fn open(conn: &Connection) -> anyhow::Result<Self> {
        let channel = timed("open channel", conn.create_channel()).await?;
        timed(
            "confirm.select",
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        Ok(Self { channel })
    }

    /// Publishes every message, then waits for all confirms; any nack or
    /// timeout fails the whole batch (the caller retries; consumers are idempotent).
    pub async fn publish_all(
        &self,
        exchange: &str,
        messages: &[(String, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(messages.len());
        for (routing_key, body) in messages {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            let confirm = timed(
                "publish",
                self.channel.basic_publish(
                    exchange.into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    body,
                    props,
                ),
            )
            .await?;
            confirms.push(confirm);
        }
        let results = tokio::time::timeout(CALL_TIMEOUT, join_all(confirms))
            .await
            .map_err(|_| anyhow!("RabbitMQ publisher confirms timed out"))?;
        for result in results {
            let confirmation = result.context("waiting for a publisher confirm")?;
            if confirmation.is_nack() {
                bail!("RabbitMQ refused a message (nack)");
            }
        }
        Ok(())
    }
}

/// A publisher that survives a lost channel: it opens its confirm channel on
/// first use and opens a new one after any failure (the connection itself
/// recovers by itself), so a dropped connection costs one failed batch.
#[derive(Clone)]
pub struct ResilientPublisher {
    conn: std::sync::Arc<Connection>,
    current: std::sync::Arc<tokio::sync::Mutex<Option<Publisher>>>,
}

impl ResilientPublisher {
    /// A publisher on `conn`.
    pub fn new(conn: std::sync::Arc<Connection>) -> Self {
        Self {
            conn,
            current: std::sync::Arc::default(),
        }
    }

    /// As [`Publisher::publish_all`], re-opening the channel when needed. The
    /// lock is held only to find the channel: publishers wait for their
    /// confirms side by side, not one after another.
    pub async fn publish_all(
        &self,
        exchange: &str,
        messages: &[(String, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let publisher = {
            let mut current = self.current.lock().await;
            match current.as_ref() {
                Some(p) => p.clone(),
                None => {
                    let p = Publisher::open(&self.conn).await?;
                    *current = Some(p.clone());
                    p
                }
            }
        };
        let result = publisher.publish_all(exchange, messages).await;
        if result.is_err() {
            let mut current = self.current.lock().await;
            // Only the channel that failed is dropped, not one a neighbour
            // opened meanwhile.
            if current
                .as_ref()
                .is_some_and(|p| p.channel.id() == publisher.channel.id())
            {
                *current = None;
            }
        }
        result
    }
}

/// Opens a channel with `prefetch` unacked deliveries at most and consumes `queue`.
pub async fn consume(
    conn: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> anyhow::Result<(Channel, Consumer)> {
    let channel = timed("open channel", conn.create_channel()).await?;
    timed(
        "basic.qos",
        channel.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await?;
    let consumer = timed(
        "basic.consume",
        channel.basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    Ok((channel, consumer))
}
