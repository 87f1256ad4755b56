//! The life of an escalation: staff confirm or dismiss a suspected counterfeit.
//!
//! A confirmation opens the seller's refutation window; the transition rules
//! live here so the API and any later job apply the same ones.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Default length of the seller's refutation window.
pub const REFUTATION_WINDOW_SECS: i64 = 3 * 24 * 3600;

/// Where an escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscalationStatus {
    /// Waiting for staff.
    Open,
    /// Staff confirmed a counterfeit; the refutation window is running.
    Confirmed,
    /// Staff found no counterfeit.
    Dismissed,
}

/// A staff decision on an open escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffDecision {
    /// It is a counterfeit.
    Confirm,
    /// It is not.
    Dismiss,
}

impl EscalationStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationStatus::Open => "open",
            EscalationStatus::Confirmed => "confirmed",
            EscalationStatus::Dismissed => "dismissed",
        }
    }
}

impl FromStr for EscalationStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(EscalationStatus::Open),
            "confirmed" => Ok(EscalationStatus::Confirmed),
            "dismissed" => Ok(EscalationStatus::Dismissed),
            other => Err(format!("unknown escalation status {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for EscalationStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What applying a decision to an escalation in `current` state does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status.
    To(EscalationStatus),
    /// Already in the state this decision leads to: answer as before, change nothing.
    Repeat,
    /// A different decision was already taken.
    Conflict,
}

/// The transition a staff decision causes from `current`.
pub fn apply(current: EscalationStatus, decision: StaffDecision) -> Transition {
    let target = match decision {
        StaffDecision::Confirm => EscalationStatus::Confirmed,
        StaffDecision::Dismiss => EscalationStatus::Dismissed,
    };
    match current {
        EscalationStatus::Open => Transition::To(target),
        done if done == target => Transition::Repeat,
        _ => Transition::Conflict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_escalations_change_and_repeats_are_harmless() {
        use EscalationStatus::*;
        use StaffDecision::*;
        assert_eq!(apply(Open, Confirm), Transition::To(Confirmed));
        assert_eq!(apply(Open, Dismiss), Transition::To(Dismissed));
        assert_eq!(apply(Confirmed, Confirm), Transition::Repeat);
        assert_eq!(apply(Confirmed, Dismiss), Transition::Conflict);
        assert_eq!(apply(Dismissed, Confirm), Transition::Conflict);
    }
}
