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
/// How long a batch consumer keeps trying again itself, with growing pauses,
/// before it hands failed deliveries back to the broker. Each hand-back counts
/// toward the queue's delivery limit, so a PostgreSQL failover must not burn
/// them: within this time the deliveries wait here and the consumer takes no
/// more (its prefetch stays full).
const HOLD_RETRIES_FOR: Duration = Duration::from_secs(60);
/// The longest pause between two attempts while holding.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

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

/// How a batch consumer gathers its batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Deliveries a batch holds at most.
    pub max: usize,
    /// How long a batch waits, from its first delivery, for more to arrive
    /// (zero: it takes only what has arrived already).
    pub linger: Duration,
}

/// Consumes `queue` in batches until cancelled: what arrives within the
/// linger of the first delivery (at most `batching.max`) goes to the handler
/// at once, and the answers are settled together after its work committed:
/// dead-letters and retries one by one, then every ack with one `multiple` ack
/// of the last. Deliveries are handled in arrival order, one batch at a time,
/// so every earlier delivery on the channel is settled when the multiple ack
/// goes out.
pub async fn run_batched<F, Fut>(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    batching: Batching,
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
    // Busy while a batch is handled or the hand-over is full: then silence
    // from the broker is not a stall.
    let handling = AtomicBool::new(false);
    let fill = subscription.run(
        || tx.capacity() == 0 || handling.load(std::sync::atomic::Ordering::Relaxed),
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
        // A delivery of a newer channel than the batch's starts the next batch,
        // so a batch's multiple ack always goes to the channel of all its deliveries.
        let mut carried: Option<(u64, Delivery)> = None;
        loop {
            let first = match carried.take() {
                Some(d) => d,
                None => match rx.recv().await {
                    Some(d) => d,
                    None => return,
                },
            };
            let generation = first.0;
            let mut batch = vec![first.1];
            let until = tokio::time::Instant::now() + batching.linger;
            while batch.len() < batching.max.max(1) {
                let next = match rx.try_recv() {
                    Ok(next) => Some(next),
                    Err(_) if batching.linger.is_zero() => None,
                    Err(_) => tokio::time::timeout_at(until, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                };
                match next {
                    Some((g, d)) if g == generation => batch.push(d),
                    Some(other) => {
                        carried = Some(other);
                        break;
                    }
                    None => break,
                }
            }
            handling.store(true, std::sync::atomic::Ordering::Relaxed);
            let handled = handle_holding_retries(queue, &handler, batch, &cancel).await;
            settle_batch(queue, handled).await;
            handling.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    };
    tokio::select! {
        result = fill => result,
        () = drain => Ok(()),
    }
}

/// Whether a failure is an outage of PostgreSQL (no connection, the server
/// shutting down or not yet accepting, as in a failover) rather than anything
/// about the message: only outages are held and tried again here.
pub fn is_outage(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            // Class 08: connection exceptions; 57P01 to 57P03: the server is
            // shutting down or starting (a failover); 55000 only as the refusal of
            // a database closed to connections (maintenance), not as the same code
            // raised by a statement.
            Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57P0")
                    || (code == "55000" && db.message().contains("accepting connections"))
            }),
            _ => false,
        })
}

/// Handles a batch; when every failure in it is an outage ([`is_outage`]),
/// handles those again after growing pauses, for up to [`HOLD_RETRIES_FOR`]
/// (or until cancelled), so that an outage shorter than that costs no
/// redelivery. Other failures are handed back as before, and a message that
/// fails by itself never holds the queue.
async fn handle_holding_retries<F, Fut>(
    queue: &str,
    handler: &F,
    batch: Vec<Delivery>,
    cancel: &CancellationToken,
) -> Vec<(Delivery, Handled)>
where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: Future<Output = Vec<(Delivery, Handled)>>,
{
    let started = tokio::time::Instant::now();
    let mut handled = handler(batch).await;
    let mut pause = RETRY_PAUSE;
    loop {
        let failed = handled
            .iter()
            .filter(|(_, h)| matches!(h, Handled::Retry(_)))
            .count();
        let all_outages = handled.iter().all(|(_, h)| match h {
            Handled::Retry(e) => is_outage(e),
            _ => true,
        });
        if failed == 0 || !all_outages || started.elapsed() + pause > HOLD_RETRIES_FOR {
            return handled;
        }
        if let Some((_, Handled::Retry(e))) =
            handled.iter().find(|(_, h)| matches!(h, Handled::Retry(_)))
        {
            tracing::warn!(queue, failed, error = %e, pause_ms = pause.as_millis() as u64, "PostgreSQL is unavailable; holding the batch and trying again");
        }
        tokio::select! {
            () = cancel.cancelled() => return handled,
            () = tokio::time::sleep(pause) => {}
        }
        let (retry, mut done): (Vec<_>, Vec<_>) = handled
            .into_iter()
            .partition(|(_, h)| matches!(h, Handled::Retry(_)));
        done.extend(handler(retry.into_iter().map(|(d, _)| d).collect()).await);
        handled = done;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Settles a handled batch (all from one channel): failures one by one (one
/// pause before handing back the retries), then every ack with one multiple ack.
async fn settle_batch(queue: &str, handled: Vec<(Delivery, Handled)>) {
    let mut last_ack: Option<Delivery> = None;
    let mut others = Vec::new();
    for (delivery, handled) in handled {
        match handled {
            Handled::Ack => {
                if last_ack
                    .as_ref()
                    .is_none_or(|d| d.delivery_tag < delivery.delivery_tag)
                {
                    last_ack = Some(delivery);
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
    if let Some(delivery) = last_ack {
        let ack = BasicAckOptions { multiple: true };
        match timed("ack", delivery.acker.ack(ack)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(queue, "a batch's channel is gone; it will be redelivered"),
            Err(e) => {
                tracing::warn!(queue, error = %e, "could not ack a batch; it will be redelivered")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lost_connections_count_as_an_outage() {
        assert!(is_outage(&anyhow::Error::from(sqlx::Error::PoolTimedOut)));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_outage(
            &anyhow::Error::from(sqlx::Error::Io(io)).context("reading")
        ));
        assert!(!is_outage(&anyhow::anyhow!("a listing without a seller")));
        assert!(!is_outage(&anyhow::Error::from(sqlx::Error::RowNotFound)));
    }
}
