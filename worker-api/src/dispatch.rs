//! Slot offers from RabbitMQ, buffered in-process for claim requests.
//!
//! A consumer with bounded prefetch fills the buffer (no polling); a claim takes
//! an offer as a [`TakenOffer`], and acks it only once the lease is granted or
//! the offer is known to be surplus. Whatever happens to the claim (an error, a
//! panic, a dropped future), a taken offer that was not settled goes back to the
//! buffer when the guard is dropped, so no offer is ever stranded unacked. An
//! offer that many volunteers could not take (they had voted on that task
//! already) is re-published to the back of the queue, so a buffer full of such
//! offers never starves the others.
//!
//! The buffer also holds hand-backs: slots released on this replica, served to
//! the next claim here without the queue (see [`crate::handback`]). They carry
//! no delivery; one nobody here takes in time goes to the reaper.

use crate::acks::{AckBook, Slot};
use lapin::message::Delivery;
use lapin::options::BasicNackOptions;
use spotcheck_platform::amqp::{ResilientPublisher, timed};
use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::subscription::Subscription;
use spotcheck_shared::messages::{SlotOffer, decode};
use spotcheck_shared::{TaskId, UserId};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Skips after which an offer is re-published instead of kept.
const MAX_SKIPS: u32 = 16;

/// One buffered offer: a delivery from the queue, or a hand-back.
pub struct Offer {
    /// The delivery and where its ack sits, for an offer from the queue.
    delivery: Option<(Delivery, Slot)>,
    /// The offer, or `None` if the message is malformed.
    pub message: Option<SlotOffer>,
    /// For a hand-back, who released the slot.
    pub released_by: Option<UserId>,
    skips: u32,
    since: std::time::Instant,
}

impl Offer {
    /// The task offered, if the message is well-formed.
    pub fn task(&self) -> Option<TaskId> {
        self.message.as_ref().map(|m| m.task_id)
    }
}

/// An offer taken from the buffer for one claim. Settle it, put it back, or
/// drop it: dropped unsettled (the claim failed, panicked or was cancelled),
/// it returns to the front of the buffer.
pub struct TakenOffer {
    buffer: OfferBuffer,
    offer: Option<Offer>,
}

impl TakenOffer {
    /// The offer.
    pub fn offer(&self) -> &Offer {
        self.offer
            .as_ref()
            .expect("a taken offer is held until settled")
    }

    /// Acknowledges or dead-letters it.
    pub async fn settle(mut self, how: Settle) {
        if let Some(offer) = self.offer.take() {
            self.buffer.settle(offer, how).await;
        }
    }

    /// Returns it for another volunteer (see [`OfferBuffer::put_back`]).
    pub fn put_back(mut self) {
        if let Some(offer) = self.offer.take() {
            self.buffer.put_back(offer);
        }
    }
}

impl Drop for TakenOffer {
    fn drop(&mut self) {
        if let Some(offer) = self.offer.take() {
            metrics::counter!("spotcheck_offers_returned_total").increment(1);
            self.buffer
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push_front(offer);
        }
    }
}

/// The shared buffer of offers.
#[derive(Clone)]
pub struct OfferBuffer {
    queue: Arc<Mutex<VecDeque<Offer>>>,
    alive: Arc<AtomicBool>,
    publisher: ResilientPublisher,
    tasks_queue: String,
    leases: LeaseStore,
    /// How long a hand-back may wait here before the reaper gets it.
    handback_idle: std::time::Duration,
    acks: AckBook,
    tasks: TaskTracker,
}

impl OfferBuffer {
    /// An empty buffer that re-publishes to `tasks_queue` through `publisher`
    /// and gives hand-backs idle for `handback_idle` to the reaper of `leases`;
    /// its background re-publishes run on `tasks`.
    pub fn new(
        publisher: ResilientPublisher,
        tasks_queue: String,
        leases: LeaseStore,
        handback_idle: std::time::Duration,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            queue: Arc::default(),
            alive: Arc::default(),
            publisher,
            tasks_queue,
            leases,
            handback_idle,
            acks: AckBook::default(),
            tasks,
        }
    }

    /// Sends the acks of settled offers now (also done every few milliseconds).
    pub async fn flush_acks(&self) -> usize {
        self.acks.flush().await
    }

    /// Hands the slot of a lease `released_by` released here to the next claim.
    pub fn hand_back(&self, offer: SlotOffer, released_by: UserId) {
        metrics::counter!("spotcheck_offers_handed_back_total").increment(1);
        self.queue.lock().expect("offer lock").push_front(Offer {
            delivery: None,
            message: Some(offer),
            released_by: Some(released_by),
            skips: 0,
            since: std::time::Instant::now(),
        });
    }

    /// Gives every buffered hand-back to the reaper now (at shutdown), so their
    /// slots do not wait out the hold; returns how many.
    pub async fn give_up_handbacks(&self) -> usize {
        let handbacks = self.take_where(|o| o.released_by.is_some());
        let n = handbacks.len();
        for offer in handbacks {
            self.settle(offer, Settle::DeadLetter).await;
        }
        n
    }

    /// Takes every buffered offer `pick` chooses, keeping the others in order.
    fn take_where(&self, pick: impl Fn(&Offer) -> bool) -> Vec<Offer> {
        let mut queue = self.queue.lock().expect("offer lock");
        let (taken, kept): (VecDeque<Offer>, VecDeque<Offer>) = queue.drain(..).partition(pick);
        *queue = kept;
        taken.into()
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
    pub fn take(&self) -> Option<TakenOffer> {
        let offer = self.queue.lock().expect("offer lock").pop_front()?;
        Some(TakenOffer {
            buffer: self.clone(),
            offer: Some(offer),
        })
    }

    /// Returns an offer this caller could not take, for another volunteer; one
    /// passed over too often is re-published (in the background, so no claim's
    /// fate can interrupt it).
    fn put_back(&self, mut offer: Offer) {
        offer.skips += 1;
        if offer.skips < MAX_SKIPS {
            self.queue.lock().expect("offer lock").push_back(offer);
            return;
        }
        let buffer = self.clone();
        self.tasks
            .spawn(async move { buffer.republish(offer).await });
    }

    /// Sends an offer back to the queue (to any replica) and acks this copy;
    /// on failure it stays here. A hand-back goes to the reaper instead.
    async fn republish(&self, offer: Offer) {
        let (Some((delivery, _)), Some(_)) = (&offer.delivery, &offer.message) else {
            return self.settle(offer, Settle::DeadLetter).await;
        };
        let body = delivery.data.clone();
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
    /// with few claims never sits on slots that others could fill (hand-backs
    /// idle for their shorter limit go to the reaper).
    pub async fn recycle_stale(&self, max_idle: std::time::Duration) -> usize {
        let stale = self.take_where(|o| {
            let limit = if o.released_by.is_some() {
                self.handback_idle
            } else {
                max_idle
            };
            o.since.elapsed() >= limit
        });
        let n = stale.len();
        for mut offer in stale {
            offer.since = std::time::Instant::now();
            self.republish(offer).await;
        }
        n
    }

    /// Acknowledges (with the next grouped ack, see [`crate::acks`]) or
    /// dead-letters an offer. A hand-back has nothing to acknowledge: taken, it
    /// is done; given up, the reaper gets its slot now.
    async fn settle(&self, offer: Offer, how: Settle) {
        let Some((delivery, slot)) = offer.delivery else {
            if let (Settle::DeadLetter, Some(by), Some(task)) =
                (how, offer.released_by, offer.message.map(|m| m.task_id))
                && let Err(e) = self.leases.hand_to_reaper(task, by).await
            {
                // The hold ends by itself and the reaper re-offers then.
                tracing::warn!(error = %e, "could not hand a released slot to the reaper");
            }
            return;
        };
        let result = match how {
            Settle::Ack => {
                if self.acks.done(slot, delivery.acker) {
                    self.acks.flush().await;
                }
                return;
            }
            Settle::DeadLetter => {
                self.acks.settled_elsewhere(slot);
                metrics::counter!("spotcheck_dead_lettered_total", "queue" => self.tasks_queue.clone()).increment(1);
                let nack = BasicNackOptions {
                    requeue: false,
                    multiple: false,
                };
                timed("nack", delivery.acker.nack(nack)).await
            }
        };
        if let Err(e) = result {
            // The channel predates a reconnect: the broker redelivers, and the
            // claim cap refuses the surplus.
            tracing::warn!(error = %e, "could not settle an offer");
        }
    }

    fn push(&self, delivery: Delivery) {
        let message = match decode::<SlotOffer>(&delivery.data) {
            Ok(offer) => Some(offer),
            Err(e) => {
                tracing::warn!(delivery_tag = delivery.delivery_tag, error = %e, "malformed slot offer");
                None
            }
        };
        let slot = self.acks.received(delivery.delivery_tag);
        self.queue.lock().expect("offer lock").push_back(Offer {
            delivery: Some((delivery, slot)),
            message,
            released_by: None,
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
    /// It can never be used (a hand-back: not here, so its slot goes to the reaper).
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

/// Sends the acks of settled offers every `every` until cancelled, and once more then.
pub async fn ack_loop(buffer: OfferBuffer, every: std::time::Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        if buffer.acks.pending() > 0 {
            buffer.acks.flush().await;
        }
    }
    buffer.acks.flush().await;
}

/// Every half of the shorter idle limit (offers from the queue, hand-backs),
/// returns offers idle longer than their limit to the queue or the reaper.
pub async fn recycle_loop(
    buffer: OfferBuffer,
    max_idle: std::time::Duration,
    cancel: CancellationToken,
) {
    let shortest = if buffer.handback_idle.is_zero() {
        max_idle
    } else {
        max_idle.min(buffer.handback_idle)
    };
    let every = shortest.max(std::time::Duration::from_millis(100)) / 2;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let n = buffer.recycle_stale(max_idle).await;
        if n > 0 {
            metrics::counter!("spotcheck_offers_recycled_total").increment(n as u64);
            tracing::debug!(offers = n, "returned idle offers to the queue");
        }
    }
}
