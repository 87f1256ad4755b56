//! Brand-owner complaints as rules, with no I/O: the reason codes a complaint
//! may give, the brands an account may be linked to, how a duplicate's evidence
//! merges into the open complaint, the round numbers of out-of-round
//! inspections, and a brand owner's complaint precision and the share of a
//! complaint's boost it earns.
//!
//! A complaint's boost reaches the seller's other listings as the
//! [`COMPLAINT_SIGNAL`] risk signal, whose factor staff set in the sampling
//! rules like any other. How many of them get it is scaled by the brand
//! owner's credibility (their precision, upheld ÷ decided, pulled towards a
//! prior so a newcomer gets most of the boost), the way a volunteer's vote
//! weighs by their reliability: each listing gets the signal when a keyed draw
//! falls below the credibility. The sampler records every task's actual
//! inclusion probability, so the estimates stay unbiased whatever was drawn.

use crate::enforcement::MAX_EVIDENCE_URLS;
use crate::sampling::sample_point;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The risk signal a complaint records on the seller's other listings.
pub const COMPLAINT_SIGNAL: &str = "brand_complaint";

/// The longest description a complaint may carry, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 8000;

/// The most brands one brand-owner account may be linked to.
pub const MAX_BRANDS: usize = 100;

/// The longest brand name, in characters.
pub const MAX_BRAND_CHARS: usize = 128;

/// The longest listing or seller id a complaint may name.
pub const MAX_ID_CHARS: usize = 128;

/// Why a brand owner complains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintReason {
    /// The goods are fakes of the brand.
    Counterfeit,
    /// The listing uses the brand's marks without right (names, logos, photos).
    TrademarkMisuse,
    /// Genuine goods, sold by a seller the brand has not authorised.
    UnauthorizedSeller,
    /// Anything else; the description says what.
    Other,
}

impl ComplaintReason {
    /// Every reason code.
    pub const ALL: [ComplaintReason; 4] = [
        ComplaintReason::Counterfeit,
        ComplaintReason::TrademarkMisuse,
        ComplaintReason::UnauthorizedSeller,
        ComplaintReason::Other,
    ];

    /// The code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintReason::Counterfeit => "counterfeit",
            ComplaintReason::TrademarkMisuse => "trademark_misuse",
            ComplaintReason::UnauthorizedSeller => "unauthorized_seller",
            ComplaintReason::Other => "other",
        }
    }
}

/// Where a complaint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintStatus {
    /// Waiting for staff; duplicates merge into it.
    Open,
    /// Staff accepted it: a case was opened against the seller.
    Upheld,
    /// Staff rejected it.
    Rejected,
}

impl ComplaintStatus {
    /// Every status.
    pub const ALL: [ComplaintStatus; 3] = [
        ComplaintStatus::Open,
        ComplaintStatus::Upheld,
        ComplaintStatus::Rejected,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "open",
            ComplaintStatus::Upheld => "upheld",
            ComplaintStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ComplaintStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ComplaintStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ComplaintStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown complaint status {s:?}"))
    }
}

/// Staff's answer to a complaint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintDecision {
    /// The complaint holds: a case is opened against the seller.
    Accept,
    /// The complaint does not hold.
    Reject,
}

impl ComplaintDecision {
    /// The status the decision gives.
    pub fn status(self) -> ComplaintStatus {
        match self {
            ComplaintDecision::Accept => ComplaintStatus::Upheld,
            ComplaintDecision::Reject => ComplaintStatus::Rejected,
        }
    }
}

/// What a decision does to a complaint in `current`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionStep {
    /// Decide it now.
    To(ComplaintStatus),
    /// The same decision again: answer as the first.
    Repeat,
    /// Decided the other way already.
    Conflict,
}

/// The step `decision` takes from `current`.
pub fn decide(current: ComplaintStatus, decision: ComplaintDecision) -> DecisionStep {
    match current {
        ComplaintStatus::Open => DecisionStep::To(decision.status()),
        done if done == decision.status() => DecisionStep::Repeat,
        _ => DecisionStep::Conflict,
    }
}

/// The brands of a new brand-owner account: trimmed, without repeats, in the
/// order given; at least one, at most [`MAX_BRANDS`], each 1 to
/// [`MAX_BRAND_CHARS`] characters without control characters.
pub fn check_brands(brands: &[String]) -> Result<Vec<String>, String> {
    if brands.is_empty() {
        return Err("brands must name at least one brand".into());
    }
    if brands.len() > MAX_BRANDS {
        return Err(format!("brands must hold at most {MAX_BRANDS} names"));
    }
    let mut out: Vec<String> = Vec::with_capacity(brands.len());
    for (i, brand) in brands.iter().enumerate() {
        let brand = brand.trim();
        if brand.is_empty()
            || brand.chars().count() > MAX_BRAND_CHARS
            || brand.chars().any(char::is_control)
        {
            return Err(format!(
                "brands[{i}] must be 1 to {MAX_BRAND_CHARS} characters without control characters"
            ));
        }
        if !out.iter().any(|b| b == brand) {
            out.push(brand.to_owned());
        }
    }
    Ok(out)
}

/// Checks a listing or seller id a request names.
pub fn check_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be 1 to {MAX_ID_CHARS} characters without control characters"
        ));
    }
    Ok(())
}

/// The evidence of an open complaint after a duplicate adds `new`: the links
/// it had, then the new ones it lacked, in order; refused past
/// [`MAX_EVIDENCE_URLS`].
pub fn merge_evidence(existing: &[String], new: &[String]) -> Result<Vec<String>, String> {
    let mut merged = existing.to_vec();
    for url in new {
        if !merged.contains(url) {
            merged.push(url.clone());
        }
    }
    if merged.len() > MAX_EVIDENCE_URLS {
        return Err(format!(
            "the open complaint would hold more than {MAX_EVIDENCE_URLS} evidence links"
        ));
    }
    Ok(merged)
}

/// The round of a listing's next out-of-round inspection, given how many it
/// had: -2, -3, … Round tasks have rounds from 0 and gold tasks -1, so the
/// task table's one task per (listing, round) never sees them collide.
pub fn inspection_round(previous_inspections: i64) -> i64 {
    -2 - previous_inspections.max(0)
}

/// The pseudo-counts a brand owner starts with, as a volunteer starts with a
/// prior confusion: a newcomer's credibility is `upheld / (upheld + rejected)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionPrior {
    /// Complaints counted as upheld before any is decided.
    pub upheld: f64,
    /// Complaints counted as rejected before any is decided.
    pub rejected: f64,
}

impl Default for PrecisionPrior {
    /// A newcomer gets 80% of the boost; a few rejections lower it quickly.
    fn default() -> Self {
        Self {
            upheld: 4.0,
            rejected: 1.0,
        }
    }
}

/// A brand owner's precision: upheld ÷ decided, `None` before any decision.
pub fn precision(upheld: u64, decided: u64) -> Option<f64> {
    (decided > 0).then(|| upheld.min(decided) as f64 / decided as f64)
}

/// The share of a complaint's boost a brand owner earns: their precision
/// pulled towards the prior's, in (0, 1).
pub fn credibility(upheld: u64, decided: u64, prior: &PrecisionPrior) -> f64 {
    let upheld = upheld.min(decided) as f64;
    (upheld + prior.upheld) / (decided as f64 + prior.upheld + prior.rejected)
}

/// Whether a complaint (`complaint_key`: its id's bytes) boosts `listing_id`
/// when its brand owner's credibility is `credibility`: a draw fixed by the
/// pair, so a retry or a replica decides the same.
pub fn boosts_listing(complaint_key: &[u8], listing_id: &str, credibility: f64) -> bool {
    sample_point(complaint_key, listing_id, 0) < credibility
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_and_statuses_read_as_they_are_written() {
        for reason in ComplaintReason::ALL {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json, reason.as_str());
            assert_eq!(
                serde_json::from_value::<ComplaintReason>(json).unwrap(),
                reason
            );
        }
        assert!(serde_json::from_value::<ComplaintReason>("fake".into()).is_err());
        for status in ComplaintStatus::ALL {
            assert_eq!(status.as_str().parse::<ComplaintStatus>(), Ok(status));
        }
        assert!("closed".parse::<ComplaintStatus>().is_err());
    }

    #[test]
    fn an_open_complaint_is_decided_once_and_a_repeat_is_answered_as_the_first() {
        use ComplaintDecision::*;
        use ComplaintStatus::*;
        assert_eq!(decide(Open, Accept), DecisionStep::To(Upheld));
        assert_eq!(decide(Open, Reject), DecisionStep::To(Rejected));
        assert_eq!(decide(Upheld, Accept), DecisionStep::Repeat);
        assert_eq!(decide(Rejected, Reject), DecisionStep::Repeat);
        assert_eq!(decide(Upheld, Reject), DecisionStep::Conflict);
        assert_eq!(decide(Rejected, Accept), DecisionStep::Conflict);
    }

    #[test]
    fn brands_are_trimmed_deduplicated_and_bounded() {
        let b = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            check_brands(&b(&[" Acme ", "Zeta", "Acme"])),
            Ok(b(&["Acme", "Zeta"]))
        );
        assert!(check_brands(&[]).is_err());
        assert!(check_brands(&b(&["  "])).is_err());
        assert!(check_brands(&b(&["a\u{7}b"])).is_err());
        assert!(check_brands(&b(&[&"x".repeat(129)])).is_err());
        assert!(check_brands(&vec!["x".to_string(); 101]).is_err());
        assert!(check_id("listing_id", "L-1").is_ok());
        assert!(check_id("listing_id", "").is_err());
    }

    #[test]
    fn a_duplicates_evidence_is_appended_without_repeats_and_bounded() {
        let a = "https://e.com/a".to_string();
        let b = "https://e.com/b".to_string();
        assert_eq!(
            merge_evidence(std::slice::from_ref(&a), &[b.clone(), a.clone()]),
            Ok(vec![a.clone(), b])
        );
        let full: Vec<String> = (0..20).map(|i| format!("https://e.com/{i}")).collect();
        assert!(merge_evidence(&full, std::slice::from_ref(&full[0])).is_ok());
        assert!(merge_evidence(&full, &[a]).is_err());
    }

    #[test]
    fn out_of_round_inspections_never_share_a_round_with_round_or_gold_tasks() {
        assert_eq!(inspection_round(0), -2);
        assert_eq!(inspection_round(3), -5);
        assert!((0..1000).all(|n| inspection_round(n) < -1));
    }

    #[test]
    fn credibility_starts_high_and_follows_the_record() {
        let prior = PrecisionPrior::default();
        assert_eq!(precision(0, 0), None);
        assert_eq!(precision(3, 4), Some(0.75));
        let newcomer = credibility(0, 0, &prior);
        assert!((newcomer - 0.8).abs() < 1e-12);
        let careful = credibility(19, 20, &prior);
        let careless = credibility(2, 20, &prior);
        assert!(careful > newcomer && careless < 0.3, "{careful} {careless}");
        assert!(credibility(50, 10, &prior) <= 1.0);
    }

    #[test]
    fn the_share_of_listings_boosted_follows_credibility() {
        let listings: Vec<String> = (0..4000).map(|i| format!("L{i}")).collect();
        let share = |c: f64| {
            listings
                .iter()
                .filter(|l| boosts_listing(b"complaint-1", l, c))
                .count() as f64
                / listings.len() as f64
        };
        assert!((share(0.8) - 0.8).abs() < 0.03);
        assert!((share(0.2) - 0.2).abs() < 0.03);
        assert_eq!(share(0.0), 0.0);
        assert_eq!(share(1.0), 1.0);
        assert_eq!(
            boosts_listing(b"k", "L1", 0.5),
            boosts_listing(b"k", "L1", 0.5)
        );
    }
}
