//! Slot offers from RabbitMQ, buffered in-process for claim requests.
//!
//! A consumer with bounded prefetch fills the buffer (no polling); a claim takes
//! an offer, and acks it only once the lease is granted or the offer is known to
//! be surplus. An offer that many volunteers could not take (they had voted on
//! that task already) is re-published to the back of the queue, so a buffer full
//! of such offers never starves the others.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use spotcheck_platform::amqp::{ResilientPublisher, timed};
use spotcheck_platform::subscription::Subscription;
use spotcheck_shared::TaskId;
use spotcheck_shared::messages::{SlotOffer, decode};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Skips after which an offer is re-published instead of kept.
const MAX_SKIPS: u32 = 16;

/// One buffered delivery.
pub struct Offer {
    delivery: Delivery,
    /// The task offered, or `None` if the message is malformed.
    pub task: Option<TaskId>,
    skips: u32,
    since: std::time::Instant,
}

/// The shared buffer of offers.
#[derive(Clone)]
pub struct OfferBuffer {
    queue: Arc<Mutex<VecDeque<Offer>>>,
    alive: Arc<AtomicBool>,
    publisher: ResilientPublisher,
    tasks_queue: String,
}

impl OfferBuffer {
    /// An empty buffer that re-publishes to `tasks_queue` through `publisher`.
    pub fn new(publisher: ResilientPublisher, tasks_queue: String) -> Self {
        Self {
            queue: Arc::default(),
            alive: Arc::default(),
            publisher,
            tasks_queue,
        }
    }

    /// Offers currently buffered.
    pub fn len(&self) -> usize {
        self.queue.lock().expect("offer lock").len()
    }

    /// Whether no offer is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the consumer feeding the buffer is running.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Takes the oldest offer.
    pub fn pop(&self) -> Option<Offer> {
        self.queue.lock().expect("offer lock").pop_front()
    }

    /// Returns an offer this caller could not take, for another volunteer.
    pub async fn put_back(&self, mut offer: Offer) {
        offer.skips += 1;
        if offer.skips < MAX_SKIPS {
            self.queue.lock().expect("offer lock").push_back(offer);
            return;
        }
        self.republish(offer).await;
    }

    /// Sends an offer back to the queue (to any replica) and acks this copy;
    /// on failure it stays here.
    async fn republish(&self, offer: Offer) {
        let Some(task_id) = offer.task else {
            return self.settle(offer, Settle::DeadLetter).await;
        };
        let body = serde_json::to_vec(&spotcheck_platform::outbox::slot_offer(task_id))
            .expect("offers serialize");
        let republished = self
            .publisher
            .publish_all("", &[(self.tasks_queue.clone(), body)])
            .await;
        match republished {
            Ok(()) => self.settle(offer, Settle::Ack).await,
            Err(e) => {
                tracing::warn!(error = %e, "could not re-publish an offer; keeping it");
                self.queue.lock().expect("offer lock").push_back(offer);
            }
        }
    }

    /// Returns offers buffered longer than `max_idle` to the queue, so a replica
    /// with few claims never sits on slots that others could fill.
    pub async fn recycle_stale(&self, max_idle: std::time::Duration) -> usize {
        let stale: Vec<Offer> = {
            let mut queue = self.queue.lock().expect("offer lock");
            let (old, fresh): (VecDeque<Offer>, VecDeque<Offer>) =
                queue.drain(..).partition(|o| o.since.elapsed() >= max_idle);
            *queue = fresh;
            old.into()
        };
        let n = stale.len();
        for mut offer in stale {
            offer.since = std::time::Instant::now();
            self.republish(offer).await;
        }
        n
    }

    /// Acknowledges or dead-letters an offer.
    pub async fn settle(&self, offer: Offer, how: Settle) {
        let result = match how {
            Settle::Ack => timed("ack", offer.delivery.acker.ack(BasicAckOptions::default())).await,
            Settle::DeadLetter => {
                metrics::counter!("spotcheck_dead_lettered_total", "queue" => self.tasks_queue.clone()).increment(1);
                let nack = BasicNackOptions {
                    requeue: false,
                    multiple: false,
                };
                timed("nack", offer.delivery.acker.nack(nack)).await
            }
        };
        if let Err(e) = result {
            // The channel predates a reconnect: the broker redelivers, and the
            // claim cap refuses the surplus.
            tracing::warn!(error = %e, "could not settle an offer");
        }
    }

    fn push(&self, delivery: Delivery) {
        let task = match decode::<SlotOffer>(&delivery.data) {
            Ok(offer) => Some(offer.task_id),
            Err(e) => {
                tracing::warn!(delivery_tag = delivery.delivery_tag, error = %e, "malformed slot offer");
                None
            }
        };
        self.queue.lock().expect("offer lock").push_back(Offer {
            delivery,
            task,
            skips: 0,
            since: std::time::Instant::now(),
        });
    }
}

/// How to settle an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with it (granted, or surplus).
    Ack,
    /// It can never be used.
    DeadLetter,
}

/// Fills `buffer` from `queue` until cancelled (see [`Subscription`] for how a
/// broken or stalled consumer is replaced).
pub async fn run(
    conn: Arc<lapin::Connection>,
    queue: String,
    prefetch: u16,
    buffer: OfferBuffer,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let subscription = Subscription {
        conn: &conn,
        queue: &queue,
        prefetch,
        cancel: &cancel,
        alive: &buffer.alive,
    };
    let full = || buffer.len() >= usize::from(prefetch);
    subscription
        .run(full, |delivery| {
            buffer.push(delivery);
            std::future::ready(())
        })
        .await
}

/// Every half of `max_idle`, returns offers idle longer than `max_idle` to the queue.
pub async fn recycle_loop(
    buffer: OfferBuffer,
    max_idle: std::time::Duration,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(max_idle / 2) => {}
        }
        let n = buffer.recycle_stale(max_idle).await;
        if n > 0 {
            metrics::counter!("spotcheck_offers_recycled_total").increment(n as u64);
            tracing::debug!(offers = n, "returned idle offers to the queue");
        }
    }
}
