//! Turning a task's votes into its outcome.
//!
//! For now a plain majority: an outcome needs more than half of the votes.
//! Reliability weighting replaces this later behind the same `Outcome` type.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A volunteer's verdict on a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The listing looks authentic.
    Genuine,
    /// The listing looks counterfeit.
    Counterfeit,
    /// The volunteer cannot tell.
    Unsure,
}

impl Verdict {
    /// The verdict as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Genuine => "genuine",
            Verdict::Counterfeit => "counterfeit",
            Verdict::Unsure => "unsure",
        }
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "genuine" => Ok(Verdict::Genuine),
            "counterfeit" => Ok(Verdict::Counterfeit),
            "unsure" => Ok(Verdict::Unsure),
            other => Err(format!("unknown verdict {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Verdict {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What a task's votes decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A majority found the listing genuine.
    Genuine,
    /// A majority found it counterfeit: it is escalated to staff.
    Counterfeit,
    /// No majority either way.
    Uncertain,
}

impl Outcome {
    /// The outcome as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Genuine => "genuine",
            Outcome::Counterfeit => "counterfeit",
            Outcome::Uncertain => "uncertain",
        }
    }

    /// Whether this outcome goes to staff as an escalation.
    pub fn escalates(self) -> bool {
        self == Outcome::Counterfeit
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "genuine" => Ok(Outcome::Genuine),
            "counterfeit" => Ok(Outcome::Counterfeit),
            "uncertain" => Ok(Outcome::Uncertain),
            other => Err(format!("unknown outcome {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for Outcome {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Strict majority of the votes; anything short of it is `Uncertain`.
///
/// Depends only on the multiset of verdicts, so vote order never matters.
pub fn majority(votes: &[Verdict]) -> Outcome {
    let count = |v: Verdict| votes.iter().filter(|x| **x == v).count();
    let half = votes.len() / 2;
    if votes.is_empty() {
        Outcome::Uncertain
    } else if count(Verdict::Counterfeit) > half {
        Outcome::Counterfeit
    } else if count(Verdict::Genuine) > half {
        Outcome::Genuine
    } else {
        Outcome::Uncertain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;
    use proptest::prelude::*;

    #[test]
    fn a_strict_majority_decides_and_anything_else_is_uncertain() {
        assert_eq!(
            majority(&[Counterfeit, Counterfeit, Genuine]),
            Outcome::Counterfeit
        );
        assert_eq!(majority(&[Genuine, Unsure, Genuine]), Outcome::Genuine);
        assert_eq!(
            majority(&[Genuine, Unsure, Counterfeit]),
            Outcome::Uncertain
        );
        assert_eq!(majority(&[Genuine, Counterfeit]), Outcome::Uncertain);
        assert_eq!(majority(&[]), Outcome::Uncertain);
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(Genuine), Just(Counterfeit), Just(Unsure)]
    }

    proptest! {
        #[test]
        fn the_order_of_votes_never_changes_the_outcome(mut votes in prop::collection::vec(verdict(), 0..9)) {
            let first = majority(&votes);
            votes.reverse();
            prop_assert_eq!(first, majority(&votes));
            votes.sort_by_key(|v| v.as_str());
            prop_assert_eq!(first, majority(&votes));
        }
    }
}
