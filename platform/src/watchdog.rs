//! Noticing a consumer that silently stopped receiving: messages wait in its
//! queue, it has room for more, yet nothing has arrived for several checks.
//! The consumer loop then fails, readiness drops, and the process exits for its
//! supervisor to restart it (a known failure mode after broker restarts).

use crate::amqp::timed;
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use std::time::Duration;

/// How often a consumer checks its own pulse.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Consecutive suspicious checks before a consumer counts as stalled.
pub const STRIKES: u32 = 3;

/// The pure decision: fed one observation per check.
#[derive(Debug, Default, Clone)]
pub struct StallDetector {
    last_deliveries: u64,
    strikes: u32,
}

impl StallDetector {
    /// Records a check: `deliveries` received so far, `ready` messages waiting
    /// in the queue (`None` if the queue could not be inspected), `busy` whether
    /// the consumer is full or handling a message. True once stalled.
    pub fn observe(&mut self, deliveries: u64, ready: Option<u32>, busy: bool) -> bool {
        let idle = deliveries == self.last_deliveries;
        self.last_deliveries = deliveries;
        let suspicious = idle && !busy && ready.is_none_or(|n| n > 0);
        self.strikes = if suspicious { self.strikes + 1 } else { 0 };
        self.strikes >= STRIKES
    }
}

/// Messages ready in `queue`, or `None` if the broker did not answer.
pub async fn ready_messages(channel: &Channel, queue: &str) -> Option<u32> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    timed(
        "inspect queue",
        channel.queue_declare(queue.into(), passive, FieldTable::default()),
    )
    .await
    .ok()
    .map(|q| q.message_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_messages_and_no_deliveries_for_three_checks_is_a_stall() {
        let mut d = StallDetector::default();
        assert!(!d.observe(0, Some(5), false));
        assert!(!d.observe(0, Some(5), false));
        assert!(d.observe(0, Some(5), false));
    }

    #[test]
    fn an_empty_queue_a_busy_consumer_or_new_deliveries_are_not_stalls() {
        let mut d = StallDetector::default();
        for _ in 0..10 {
            assert!(!d.observe(0, Some(0), false), "nothing to receive");
        }
        for _ in 0..10 {
            assert!(!d.observe(0, Some(9), true), "full or handling");
        }
        for n in 1..10 {
            assert!(!d.observe(n, Some(9), false), "receiving");
        }
    }

    #[test]
    fn a_broker_that_cannot_be_asked_counts_against_the_consumer() {
        let mut d = StallDetector::default();
        assert!(
            !d.observe(3, None, false),
            "deliveries arrived since the last check"
        );
        assert!(!d.observe(3, None, false));
        assert!(!d.observe(3, None, false));
        assert!(d.observe(3, None, false));
    }
}
