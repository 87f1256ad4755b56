//! A queue subscription that survives broken consumers: when the broker cancels
//! the consumer or it stalls (see [`crate::watchdog`]), it subscribes again on a
//! fresh channel; only when subscribing keeps failing does it return an error,
//! so the process exits for its supervisor to restart it.

use crate::amqp::consume;
use crate::watchdog::{self, StallDetector};
use futures::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Times in a row subscribing may fail before the subscription gives up.
const MAX_RESUBSCRIBES: u32 = 30;

/// Where and how to subscribe.
pub struct Subscription<'a> {
    /// The broker connection (it recovers by itself).
    pub conn: &'a Connection,
    /// The queue.
    pub queue: &'a str,
    /// Unacked deliveries at most.
    pub prefetch: u16,
    /// Stops the subscription.
    pub cancel: &'a CancellationToken,
    /// True while subscribed (for readiness).
    pub alive: &'a AtomicBool,
}

impl Subscription<'_> {
    /// Hands every delivery to `on_delivery` until cancelled. `busy` says whether
    /// the receiver is full (then silence is not a stall).
    pub async fn run<F, Fut>(
        &self,
        busy: impl Fn() -> bool,
        mut on_delivery: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut failures = 0u32;
        let result = loop {
            match self.once(&busy, &mut on_delivery).await {
                Ok(None) => break Ok(()),
                Ok(Some(why)) => {
                    failures = 0;
                    tracing::warn!(queue = self.queue, why, "consumer broke; subscribing again");
                }
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_RESUBSCRIBES {
                        break Err(e.context(format!("could not consume {}", self.queue)));
                    }
                    tracing::warn!(queue = self.queue, error = %e, failures, "could not subscribe; retrying");
                }
            }
            self.alive.store(false, Ordering::Relaxed);
            tokio::select! {
                () = self.cancel.cancelled() => break Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        };
        self.alive.store(false, Ordering::Relaxed);
        result
    }

    /// One subscription: `Ok(None)` when cancelled, `Ok(Some(why))` when it broke.
    async fn once<F, Fut>(
        &self,
        busy: &impl Fn() -> bool,
        on_delivery: &mut F,
    ) -> anyhow::Result<Option<&'static str>>
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = ()>,
    {
        let tag = format!("{}-{}", self.queue, uuid::Uuid::new_v4().simple());
        let (channel, mut consumer) = consume(self.conn, self.queue, &tag, self.prefetch).await?;
        self.alive.store(true, Ordering::Relaxed);
        let mut deliveries = 0u64;
        let mut stall = StallDetector::default();
        let mut pulse = tokio::time::interval(watchdog::CHECK_EVERY);
        pulse.tick().await;
        loop {
            let next = tokio::select! {
                () = self.cancel.cancelled() => return Ok(None),
                _ = pulse.tick() => {
                    let ready = watchdog::ready_messages(&channel, self.queue).await;
                    if stall.observe(deliveries, ready, busy()) {
                        metrics::counter!("spotcheck_consumer_stalls_total", "queue" => self.queue.to_owned())
                            .increment(1);
                        return Ok(Some("stalled: messages wait but none arrive"));
                    }
                    continue;
                }
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    deliveries += 1;
                    on_delivery(delivery).await;
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = self.queue, error = %e, "consumer error; waiting for recovery")
                }
                None => return Ok(Some("the broker cancelled the consumer")),
            }
        }
    }
}
