//! A RabbitMQ consumer loop with manual acks after the work commits.
//!
//! The handler's answer is a type, not a string: ack, dead-letter now (the
//! message can never be processed), or retry later (the broker's delivery limit
//! bounds how often).

use futures::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use spotcheck_platform::amqp::{consume, timed};
use spotcheck_platform::watchdog::{self, StallDetector};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What to do with a delivery once handled.
#[derive(Debug)]
pub enum Handled {
    /// Done (or already done before): acknowledge.
    Ack,
    /// Malformed or impossible: send to the dead-letter queue now.
    DeadLetter(String),
    /// A transient failure: hand back for redelivery after a pause.
    Retry(anyhow::Error),
}

/// Pause before handing back a delivery that failed transiently.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A readable id of a delivery for logs: its message id, or its delivery tag.
pub fn message_ref(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.to_string())
        .unwrap_or_else(|| format!("delivery-tag {}", delivery.delivery_tag))
}

/// Times in a row a consumer may fail to subscribe before the process gives up.
const MAX_RESUBSCRIBES: u32 = 30;

/// Consumes `queue` until cancelled. A consumer that breaks (cancelled by the
/// broker, or stalled) subscribes again on a fresh channel; only when that keeps
/// failing does it return an error, so the process exits for its supervisor.
pub async fn run<F, Fut>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    cancel: CancellationToken,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = (Delivery, Handled)>,
{
    let mut failures = 0u32;
    loop {
        match consume_until_broken(conn, queue, prefetch, &cancel, &handler).await {
            Ok(None) => return Ok(()),
            Ok(Some(why)) => {
                failures = 0;
                tracing::warn!(queue, why, "consumer broke; subscribing again");
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_RESUBSCRIBES {
                    return Err(e.context(format!("could not consume {queue}")));
                }
                tracing::warn!(queue, error = %e, failures, "could not subscribe; retrying");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One subscription: `Ok(None)` when cancelled, `Ok(Some(why))` when it broke.
async fn consume_until_broken<F, Fut>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    cancel: &CancellationToken,
    handler: &F,
) -> anyhow::Result<Option<&'static str>>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = (Delivery, Handled)>,
{
    let tag = format!("{queue}-{}", uuid::Uuid::new_v4().simple());
    let (channel, mut consumer) = consume(conn, queue, &tag, prefetch).await?;
    let mut deliveries = 0u64;
    let mut stall = StallDetector::default();
    let mut pulse = tokio::time::interval(watchdog::CHECK_EVERY);
    pulse.tick().await;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            _ = pulse.tick() => {
                let ready = watchdog::ready_messages(&channel, queue).await;
                if stall.observe(deliveries, ready, false) {
                    metrics::counter!("spotcheck_consumer_stalls_total", "queue" => queue.to_owned()).increment(1);
                    return Ok(Some("stalled: messages wait but none arrive"));
                }
                continue;
            }
            next = consumer.next() => next,
        };
        deliveries += 1;
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                tracing::warn!(queue, error = %e, "consumer error; waiting for recovery");
                continue;
            }
            None => return Ok(Some("the broker cancelled the consumer")),
        };
        let (delivery, handled) = handler(delivery).await;
        let outcome = match handled {
            Handled::Ack => timed("ack", delivery.acker.ack(BasicAckOptions::default())).await,
            Handled::DeadLetter(reason) => {
                metrics::counter!("spotcheck_dead_lettered_total", "queue" => queue.to_owned()).increment(1);
                tracing::warn!(queue, message = %message_ref(&delivery), reason, "dead-lettering a message");
                let nack = BasicNackOptions {
                    requeue: false,
                    multiple: false,
                };
                timed("nack", delivery.acker.nack(nack)).await
            }
            Handled::Retry(e) => {
                tracing::warn!(queue, message = %message_ref(&delivery), error = %e, "handing a message back for retry");
                tokio::time::sleep(RETRY_PAUSE).await;
                let nack = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                timed("nack", delivery.acker.nack(nack)).await
            }
        };
        if let Err(e) = outcome {
            // The channel predates a reconnect: the broker redelivers; handlers are idempotent.
            tracing::warn!(queue, error = %e, "could not settle a delivery; it will be redelivered");
        }
    }
}
