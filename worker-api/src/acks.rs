//! Acknowledgements of slot offers, grouped: a claim's ack is recorded, and a
//! flush a few milliseconds later (or once enough are waiting) acks every
//! settled delivery below the oldest unsettled one of its channel with one
//! `multiple` ack. The broker then handles one settle command for many claims.
//!
//! Delivery tags grow on a channel; a tag that does not grow means a new
//! channel (a resubscription, or lapin's recovery), which starts a new
//! generation, so a multiple ack never covers another channel's deliveries.
//! Settled deliveries above an unsettled one (an offer still buffered or being
//! claimed) are acked one by one at the flush, so a slow offer never holds the
//! others' acks back. Flushes go out one at a time, in order.

use lapin::Acker;
use lapin::options::BasicAckOptions;
use spotcheck_platform::amqp::timed;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Settled deliveries that trigger a flush at once.
pub const FLUSH_AT: usize = 64;

/// Where a delivery sits: its channel's generation and its tag.
pub type Slot = (u64, u64);

#[derive(Default)]
struct Book {
    generation: u64,
    last_tag: u64,
    /// Deliveries received and not yet settled.
    open: BTreeSet<Slot>,
    /// Deliveries settled (to ack) and not yet acked.
    done: BTreeMap<Slot, Acker>,
}

/// The acks of one offer buffer.
#[derive(Clone, Default)]
pub struct AckBook {
    book: Arc<Mutex<Book>>,
    /// One flush at a time: a later multiple ack sent before an earlier one
    /// would settle the earlier one's tag, and the broker closes a channel
    /// that acks an unknown tag.
    sending: Arc<tokio::sync::Mutex<()>>,
}

/// One ack to send: `multiple` covers every open delivery of the channel up to it.
#[derive(Debug, PartialEq, Eq)]
struct Ack<A> {
    acker: A,
    multiple: bool,
    covers: usize,
}

/// What to send for `done` while `open` are unsettled: per generation, one
/// multiple ack for the settled deliveries below its oldest open one, and
/// single acks for the rest.
fn plan<A>(open: &BTreeSet<Slot>, done: BTreeMap<Slot, A>) -> Vec<Ack<A>> {
    let mut acks = Vec::new();
    let mut prefix: Option<(u64, A, usize)> = None;
    for ((generation, tag), acker) in done {
        let oldest_open = open
            .range((generation, 0)..=(generation, u64::MAX))
            .next()
            .map(|s| s.1);
        if oldest_open.is_some_and(|open| tag > open) {
            acks.push(Ack {
                acker,
                multiple: false,
                covers: 1,
            });
            continue;
        }
        prefix = match prefix {
            Some((g, _, n)) if g == generation => Some((g, acker, n + 1)),
            other => {
                if let Some((_, acker, covers)) = other {
                    acks.push(Ack {
                        acker,
                        multiple: true,
                        covers,
                    });
                }
                Some((generation, acker, 1))
            }
        };
    }
    if let Some((_, acker, covers)) = prefix {
        acks.push(Ack {
            acker,
            multiple: true,
            covers,
        });
    }
    acks
}

impl AckBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a delivery as received; returns where it sits.
    pub fn received(&self, tag: u64) -> Slot {
        let mut book = self.lock();
        if tag <= book.last_tag {
            book.generation += 1;
        }
        book.last_tag = tag;
        let slot = (book.generation, tag);
        book.open.insert(slot);
        slot
    }

    /// Forgets a delivery settled another way (dead-lettered or handed back by a nack).
    pub fn settled_elsewhere(&self, slot: Slot) {
        self.lock().open.remove(&slot);
    }

    /// Records a delivery to ack; returns whether enough wait for a flush now.
    pub fn done(&self, slot: Slot, acker: Acker) -> bool {
        let mut book = self.lock();
        book.open.remove(&slot);
        book.done.insert(slot, acker);
        book.done.len() >= FLUSH_AT
    }

    /// Settled deliveries not yet acked.
    pub fn pending(&self) -> usize {
        self.lock().done.len()
    }

    /// Takes what to send now.
    fn take(&self) -> Vec<Ack<Acker>> {
        let mut book = self.lock();
        let done = std::mem::take(&mut book.done);
        plan(&book.open, done)
    }

    /// Sends every pending ack; returns how many deliveries they covered.
    pub async fn flush(&self) -> usize {
        let _one_at_a_time = self.sending.lock().await;
        let mut covered = 0;
        for ack in self.take() {
            let options = BasicAckOptions {
                multiple: ack.multiple,
            };
            match timed("ack", ack.acker.ack(options)).await {
                Ok(true) => covered += ack.covers,
                // The channel is gone (a reconnect): the broker redelivers, and
                // the claim cap refuses the surplus.
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "could not ack offers"),
            }
        }
        metrics::counter!("spotcheck_offer_acks_total").increment(covered as u64);
        covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_falling_tag_starts_a_new_generation() {
        let book = AckBook::default();
        assert_eq!(book.received(1), (0, 1));
        assert_eq!(book.received(2), (0, 2));
        assert_eq!(book.received(1), (1, 1));
        assert_eq!(book.received(5), (1, 5));
    }

    fn ack(acker: Slot, multiple: bool, covers: usize) -> Ack<Slot> {
        Ack {
            acker,
            multiple,
            covers,
        }
    }

    #[test]
    fn settled_deliveries_below_the_oldest_open_one_go_in_one_multiple_ack() {
        // Generation 0: 1-3 settled, 4 open, 5-6 settled. Generation 1: 1-2 settled.
        let open: BTreeSet<Slot> = [(0, 4)].into();
        let done: BTreeMap<Slot, Slot> = [(0, 1), (0, 2), (0, 3), (0, 5), (0, 6), (1, 1), (1, 2)]
            .into_iter()
            .map(|s| (s, s))
            .collect();
        assert_eq!(
            plan(&open, done),
            vec![
                ack((0, 5), false, 1),
                ack((0, 6), false, 1),
                ack((0, 3), true, 3),
                ack((1, 2), true, 2),
            ]
        );
    }

    #[test]
    fn nothing_settled_means_nothing_sent_and_nothing_open_means_one_ack_a_generation() {
        let open: BTreeSet<Slot> = [(0, 1), (0, 2)].into();
        assert!(plan::<Slot>(&open, BTreeMap::new()).is_empty());
        let done: BTreeMap<Slot, Slot> = (1..=100).map(|t| ((3, t), (3, t))).collect();
        assert_eq!(plan(&BTreeSet::new(), done), vec![ack((3, 100), true, 100)]);
    }
}
