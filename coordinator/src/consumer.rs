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

/// Consumes `queue` in batches until cancelled: whatever has arrived (at least
/// one delivery, at most `max_batch`) goes to the handler at once, and the
/// answers are settled together after its work committed: dead-letters and
/// retries one by one, then every ack with one `multiple` ack of the last.
/// Deliveries are handled in arrival order, one batch at a time, so every
/// earlier delivery on the channel is settled when the multiple ack goes out.
pub async fn run_batched<F, Fut>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    max_batch: usize,
    cancel: CancellationToken,
    alive: &AtomicBool,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: Future<Output = Vec<(Delivery, Handled)>>,
{
    // A delivery tag that does not grow means a new channel (a resubscription):
    // each channel's acks are settled on their own.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Delivery)>(usize::from(prefetch.max(1)));
    let channel_seen = std::sync::Mutex::new((0u64, 0u64));
    let subscription = Subscription {
        conn,
        queue,
        prefetch,
        cancel: &cancel,
        alive,
    };
    let fill = subscription.run(
        || tx.capacity() == 0,
        |delivery| {
            let generation = {
                let mut seen = channel_seen.lock().expect("channel tag lock");
                if delivery.delivery_tag <= seen.1 {
                    seen.0 += 1;
                }
                seen.1 = delivery.delivery_tag;
                seen.0
            };
            let tx = tx.clone();
            async move {
                // The receiver lives as long as this function.
                let _ = tx.send((generation, delivery)).await;
            }
        },
    );
    let drain = async {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < max_batch.max(1) {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let generations: std::collections::HashMap<u64, u64> =
                batch.iter().map(|(g, d)| (d.delivery_tag, *g)).collect();
            let deliveries = batch.into_iter().map(|(_, d)| d).collect();
            settle_batch(queue, handler(deliveries).await, &generations).await;
        }
    };
    tokio::select! {
        result = fill => result,
        () = drain => Ok(()),
    }
}

/// Settles a handled batch: failures one by one (one pause before handing
/// back the retries), then the acks of each channel with one multiple ack.
async fn settle_batch(
    queue: &str,
    handled: Vec<(Delivery, Handled)>,
    generations: &std::collections::HashMap<u64, u64>,
) {
    let mut last_ack: std::collections::HashMap<u64, Delivery> = Default::default();
    let mut others = Vec::new();
    for (delivery, handled) in handled {
        match handled {
            Handled::Ack => {
                let generation = generations
                    .get(&delivery.delivery_tag)
                    .copied()
                    .unwrap_or(0);
                let later = last_ack
                    .get(&generation)
                    .is_none_or(|d| d.delivery_tag < delivery.delivery_tag);
                if later {
                    last_ack.insert(generation, delivery);
                }
            }
            other => others.push((delivery, other)),
        }
    }
    if others.iter().any(|(_, h)| matches!(h, Handled::Retry(_))) {
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    for (delivery, handled) in others {
        settle_now(queue, delivery, handled).await;
    }
    for delivery in last_ack.into_values() {
        let ack = BasicAckOptions { multiple: true };
        if let Err(e) = timed("ack", delivery.acker.ack(ack)).await {
            tracing::warn!(queue, error = %e, "could not ack a batch; it will be redelivered");
        }
    }
}

/// Acks, dead-letters or hands back (after a pause) a handled delivery.
async fn settle(queue: &str, delivery: Delivery, handled: Handled) {
    if matches!(handled, Handled::Retry(_)) {
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    settle_now(queue, delivery, handled).await;
}

/// Acks, dead-letters or hands back a handled delivery.
async fn settle_now(queue: &str, delivery: Delivery, handled: Handled) {
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
