//! A RabbitMQ consumer loop with manual acks after the work commits.
//!
//! The handler's answer is a type, not a string: ack, dead-letter now (the
//! message can never be processed), or retry later (the broker's delivery limit
//! bounds how often).

use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use spotcheck_platform::amqp::timed;
use spotcheck_platform::subscription::Subscription;
use std::future::Future;
use std::sync::atomic::AtomicBool;
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

/// Consumes `queue` until cancelled, settling each delivery by the handler's
/// answer after the handler's work has committed.
pub async fn run<F, Fut>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    cancel: CancellationToken,
    alive: &AtomicBool,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = (Delivery, Handled)>,
{
    let subscription = Subscription {
        conn,
        queue,
        prefetch,
        cancel: &cancel,
        alive,
    };
    // Deliveries are handled one at a time, so the consumer is never "full".
    subscription
        .run(
            || false,
            |delivery| {
                let handler = &handler;
                async move {
                    let (delivery, handled) = handler(delivery).await;
                    settle(queue, delivery, handled).await;
                }
            },
        )
        .await
}

/// Acks, dead-letters or hands back a handled delivery.
async fn settle(queue: &str, delivery: Delivery, handled: Handled) {
    let outcome = match handled {
        Handled::Ack => timed("ack", delivery.acker.ack(BasicAckOptions::default())).await,
        Handled::DeadLetter(reason) => {
            metrics::counter!("spotcheck_dead_lettered_total", "queue" => queue.to_owned())
                .increment(1);
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
