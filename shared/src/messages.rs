//! Message schemas on RabbitMQ. Each carries a version field `v`.
//!
//! Queues (names prefixed by the configured namespace, `spotcheck` by default):
//! `<ns>.tasks` carries one [`SlotOffer`] per vote a task still needs;
//! `<ns>.votes` carries [`VoteRecorded`] events for the aggregator;
//! `<ns>.ingest` is bound to the `<ns>.listings` feed exchange.

use crate::ids::{TaskId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The message version this code writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// An offer of one vote slot on a task; a claim turns it into a lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotOffer {
    /// Schema version.
    pub v: u32,
    /// The task with an open slot.
    pub task_id: TaskId,
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

/// Where an outbox row goes: the queue suffix after the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `<ns>.tasks`
    Tasks,
    /// `<ns>.votes`
    Votes,
}

impl Topic {
    /// The topic as stored in the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Tasks => "tasks",
            Topic::Votes => "votes",
        }
    }

    /// Parses a stored topic.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tasks" => Some(Topic::Tasks),
            "votes" => Some(Topic::Votes),
            _ => None,
        }
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
        };
        let bytes = serde_json::to_vec(&offer).unwrap();
        assert_eq!(decode::<SlotOffer>(&bytes).unwrap(), offer);
        let future = serde_json::json!({"v": 9, "task_id": offer.task_id});
        assert!(decode::<SlotOffer>(future.to_string().as_bytes()).is_err());
        assert!(decode::<SlotOffer>(b"garbage").is_err());
    }
}
