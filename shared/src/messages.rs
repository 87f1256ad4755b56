//! Message schemas on RabbitMQ. Each carries a version field `v`.
//!
//! Queues (names prefixed by the configured namespace, `spotcheck` by default):
//! `<ns>.tasks` carries one [`SlotOffer`] per vote a task still needs;
//! `<ns>.votes` carries [`VotesRecorded`] events for the aggregator, one per
//! committed batch of votes (a single [`VoteRecorded`] of the first shape still reads);
//! `<ns>.ingest` is bound to the `<ns>.listings` feed exchange.

use crate::ids::{TaskId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The message version this code writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// An offer of one vote slot on a task; a claim turns it into a lease.
///
/// Besides the task it carries what a claim needs, as the task stood when the
/// offer was written: the votes it asked for and had counted, and the listing
/// the volunteer is shown. So a claim needs no database read. Offers written
/// before these fields existed carry only the task; a claim then reads the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotOffer {
    /// Schema version.
    pub v: u32,
    /// The task with an open slot.
    pub task_id: TaskId,
    /// Votes the task asked for when the offer was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<i32>,
    /// Votes counted on it then (only ever grows, so a floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<i32>,
    /// The listing as a volunteer sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<OfferedListing>,
}

/// The listing as a volunteer sees it in a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OfferedListing {
    /// The marketplace's id of the listing.
    pub listing_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Brand claimed.
    pub brand: String,
    /// Category.
    pub category: String,
    /// Region shipped from.
    pub region: String,
    /// Asking price.
    pub price: f64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Image addresses.
    pub image_urls: Vec<String>,
    /// The seller (conflict-of-interest links are checked against it).
    pub seller_id: String,
    /// The category's typical price in the same currency (the geometric mean of
    /// its listed prices), when any listing of it has been seen.
    #[serde(default)]
    pub typical_price: Option<f64>,
    /// The risk signals present on the listing (why it may be suspicious), by name.
    #[serde(default)]
    pub signals: Vec<String>,
}

/// A vote was committed; the aggregator should look at the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRecorded {
    /// Schema version.
    pub v: u32,
    /// The task voted on.
    pub task_id: TaskId,
    /// The vote's id.
    pub vote_id: Uuid,
    /// Who voted.
    pub volunteer_id: UserId,
}

impl VoteRecorded {
    /// The event of one committed vote, in this version's schema.
    pub fn new(task_id: TaskId, vote_id: Uuid, volunteer_id: UserId) -> Self {
        Self {
            v: MESSAGE_VERSION,
            task_id,
            vote_id,
            volunteer_id,
        }
    }
}

/// A batch of votes was committed together; the aggregator should look at their tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VotesRecorded {
    /// Schema version.
    pub v: u32,
    /// The votes, each as a [`VoteRecorded`] would name it.
    pub votes: Vec<VoteRecorded>,
}

impl VotesRecorded {
    /// The event naming `votes`, in this version's schema.
    pub fn new(votes: Vec<VoteRecorded>) -> Self {
        Self {
            v: MESSAGE_VERSION,
            votes,
        }
    }
}

/// Reads a vote event of either shape: a batch ([`VotesRecorded`]) or, as
/// written before batches, one vote ([`VoteRecorded`]).
pub fn decode_votes(bytes: &[u8]) -> Result<Vec<VoteRecorded>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Batch(VotesRecorded),
        One(VoteRecorded),
    }
    match decode::<Shape>(bytes)? {
        Shape::Batch(batch) if batch.votes.is_empty() => Err("an empty batch of votes".into()),
        Shape::Batch(batch) => Ok(batch.votes),
        Shape::One(vote) => Ok(vec![vote]),
    }
}

/// Where an outbox row goes: the queue suffix after the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `<ns>.tasks`
    Tasks,
    /// `<ns>.votes`
    Votes,
    /// The `<ns>.enforcement` topic exchange, routing key `enforcement.<kind>`.
    Enforcement,
}

impl Topic {
    /// The topic as stored in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Tasks => "tasks",
            Topic::Votes => "votes",
            Topic::Enforcement => "enforcement",
        }
    }

    /// Parses a stored topic.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tasks" => Some(Topic::Tasks),
            "votes" => Some(Topic::Votes),
            "enforcement" => Some(Topic::Enforcement),
            _ => None,
        }
    }
}

/// An enforcement event for the marketplace's systems to carry out: a penalty
/// (`kind` one of the penalty kinds) or the lifting of one (`lifted`).
/// `event_id` stays the same when the event is published again, so consumers
/// deduplicate on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnforcementEvent {
    /// Stable across republishing.
    pub event_id: Uuid,
    /// `delist_listing`, `reimburse_buyers`, `limit_new_listings`,
    /// `public_notice`, `close_storefront`, `confiscate_deposit`,
    /// `permanent_ban` or `lifted`.
    pub kind: String,
    /// The case behind it.
    pub case_id: Uuid,
    /// The seller it applies to.
    pub seller_id: String,
    /// The listing, for listing penalties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_id: Option<String>,
    /// Until when, for a time-limited penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// For `lifted`: the penalty lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalty_id: Option<Uuid>,
    /// For `lifted`: the kind of the penalty lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_kind: Option<String>,
    /// When it was issued.
    pub issued_at: chrono::DateTime<chrono::Utc>,
}

impl EnforcementEvent {
    /// The routing key on the enforcement exchange.
    pub fn routing_key(kind: &str) -> String {
        format!("enforcement.{kind}")
    }
}

/// Decodes a message, refusing versions this code does not know.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if version.v != MESSAGE_VERSION {
        return Err(format!("unsupported message version {}", version.v));
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_unknown_versions_are_refused() {
        let offer = SlotOffer {
            v: MESSAGE_VERSION,
            task_id: TaskId::new(),
            required: Some(3),
            counted: Some(1),
            listing: None,
        };
        let bytes = serde_json::to_vec(&offer).unwrap();
        assert_eq!(decode::<SlotOffer>(&bytes).unwrap(), offer);
        let future = serde_json::json!({"v": 9, "task_id": offer.task_id});
        assert!(decode::<SlotOffer>(future.to_string().as_bytes()).is_err());
        assert!(decode::<SlotOffer>(b"garbage").is_err());
        // An offer of the first shape (the task only) still reads.
        let bare = serde_json::json!({"v": 1, "task_id": offer.task_id});
        let read = decode::<SlotOffer>(bare.to_string().as_bytes()).unwrap();
        assert_eq!((read.required, read.listing), (None, None));
    }

    #[test]
    fn vote_events_read_in_both_shapes() {
        let vote = |n: u128| VoteRecorded {
            v: MESSAGE_VERSION,
            task_id: TaskId(Uuid::from_u128(n)),
            vote_id: Uuid::from_u128(n + 100),
            volunteer_id: UserId(Uuid::from_u128(n + 200)),
        };
        let batch = VotesRecorded {
            v: MESSAGE_VERSION,
            votes: vec![vote(1), vote(2)],
        };
        let bytes = serde_json::to_vec(&batch).unwrap();
        assert_eq!(decode_votes(&bytes).unwrap(), batch.votes);
        let one = serde_json::to_vec(&vote(3)).unwrap();
        assert_eq!(decode_votes(&one).unwrap(), vec![vote(3)]);
        let empty = serde_json::json!({"v": 1, "votes": []});
        assert!(decode_votes(empty.to_string().as_bytes()).is_err());
        let future = serde_json::json!({"v": 2, "votes": [vote(4)]});
        assert!(decode_votes(future.to_string().as_bytes()).is_err());
        assert!(decode_votes(b"{\"v\": 1}").is_err());
    }
}
