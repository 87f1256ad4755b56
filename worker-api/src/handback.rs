//! Released slots handed to the next claim on the same replica, without a trip
//! through the database, the outbox relay and the broker.
//!
//! A claim granted here remembers what it was granted with (the task's votes
//! asked and counted and its listing, as the offer carried them). When its
//! holder releases the lease here, the lease ends in Redis but its entry stays,
//! held from the reaper for [`Config::handback_hold_ms`]; the slot goes back to
//! this replica's offer buffer as a hand-back. The next claim that takes it
//! replaces the released entry with its own lease in one Redis script, so the
//! slot is either still covered by the released entry (and the reaper re-offers
//! it once the hold ends, should this replica die or nobody here take it) or by
//! the new lease: never by neither. A hand-back no one here can take is given
//! to the reaper at once.
//!
//! [`Config::handback_hold_ms`]: crate::config::Config::handback_hold_ms

use spotcheck_shared::messages::{MESSAGE_VERSION, OfferedListing, SlotOffer};
use spotcheck_shared::{TaskId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Grants remembered at most; past it, releases go through the reaper.
const MAX_REMEMBERED: usize = 100_000;

/// What a claim was granted with.
#[derive(Debug, Clone)]
struct Grant {
    required: i32,
    counted: i32,
    listing: OfferedListing,
    at: Instant,
}

/// The grants of this replica whose leases may still be released here.
#[derive(Clone, Default)]
pub struct Grants {
    map: Arc<Mutex<HashMap<(TaskId, UserId), Grant>>>,
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TaskId, UserId), Grant>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers a granted review slot.
    pub fn remember(
        &self,
        task: TaskId,
        volunteer: UserId,
        required: i32,
        counted: i32,
        listing: &OfferedListing,
    ) {
        let mut map = self.lock();
        if map.len() < MAX_REMEMBERED {
            map.insert(
                (task, volunteer),
                Grant {
                    required,
                    counted,
                    listing: listing.clone(),
                    at: Instant::now(),
                },
            );
        }
    }

    /// Forgets a grant (its vote was cast).
    pub fn forget(&self, task: TaskId, volunteer: UserId) {
        self.lock().remove(&(task, volunteer));
    }

    /// Takes the grant of a lease being released, as the offer to hand back.
    pub fn take(&self, task: TaskId, volunteer: UserId) -> Option<SlotOffer> {
        let grant = self.lock().remove(&(task, volunteer))?;
        Some(SlotOffer {
            v: MESSAGE_VERSION,
            task_id: task,
            required: Some(grant.required),
            counted: Some(grant.counted),
            listing: Some(grant.listing),
        })
    }

    /// Forgets grants older than `max_age` (their leases have ended by now).
    pub fn purge(&self, max_age: Duration) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, g| g.at.elapsed() < max_age);
        before - map.len()
    }

    /// Grants remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every minute, forgets grants older than `max_age` (leases that ended
/// without a vote or a release here).
pub async fn purge_loop(grants: Grants, max_age: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        grants.purge(max_age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> OfferedListing {
        OfferedListing {
            listing_id: "l-1".into(),
            title: "t".into(),
            description: "d".into(),
            brand: "b".into(),
            category: "c".into(),
            region: "EU".into(),
            price: 10.0,
            currency: "EUR".into(),
            image_urls: Vec::new(),
            seller_id: "s-1".into(),
            typical_price: None,
            signals: Vec::new(),
        }
    }

    #[test]
    fn a_grant_is_handed_back_once_and_forgotten_after_a_vote_or_its_age() {
        let grants = Grants::default();
        let (task, vol, other) = (TaskId::new(), UserId::new(), UserId::new());
        grants.remember(task, vol, 3, 1, &listing());
        grants.remember(task, other, 3, 1, &listing());
        let offer = grants.take(task, vol).expect("remembered");
        assert_eq!(
            (offer.task_id, offer.required, offer.counted),
            (task, Some(3), Some(1))
        );
        assert!(grants.take(task, vol).is_none(), "handed back once");
        grants.forget(task, other);
        assert!(grants.is_empty());
        grants.remember(task, vol, 3, 0, &listing());
        assert_eq!(grants.purge(Duration::from_secs(60)), 0);
        assert_eq!(grants.purge(Duration::ZERO), 1);
        assert!(grants.take(task, vol).is_none());
    }
}
