//! A task's kind and state, as stored and as the API shows them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a task is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// An inspection of a sampled (or complained-about) listing.
    Review,
    /// A listing whose answer is known, mixed in to measure volunteers.
    Gold,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Still collecting votes.
    Open,
    /// Its votes decided it.
    Decided,
    /// Handed to staff as a suspected counterfeit (or as uncertain).
    Escalated,
}

impl TaskKind {
    /// The kind as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Review => "review",
            TaskKind::Gold => "gold",
        }
    }
}

impl TaskState {
    /// The state as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::Decided => "decided",
            TaskState::Escalated => "escalated",
        }
    }
}

impl FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "review" => Ok(TaskKind::Review),
            "gold" => Ok(TaskKind::Gold),
            other => Err(format!("unknown task kind {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for TaskKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(TaskState::Open),
            "decided" => Ok(TaskState::Decided),
            "escalated" => Ok(TaskState::Escalated),
            other => Err(format!("unknown task state {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for TaskState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_read_back_what_they_write() {
        for kind in [TaskKind::Review, TaskKind::Gold] {
            assert_eq!(kind.as_str().parse::<TaskKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for state in [TaskState::Open, TaskState::Decided, TaskState::Escalated] {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert!("closed".parse::<TaskState>().is_err());
    }
}
