//! Reliability-weighted aggregation: the probability that a listing is
//! counterfeit given its votes, and when to stop asking for more.
//!
//! Each counting vote adds its volunteer's log-likelihood ratio to the prior
//! log-odds (naive Bayes over independent volunteers). The terms are summed in
//! a canonical order, so the same votes give bit-identical posteriors however
//! they arrived. A [`StoppingRule`] then decides, needs another vote, or gives
//! up as uncertain; [`RiskThresholds`] picks the rule from the business risk.

use crate::aggregate::{Outcome, Verdict};
use crate::reliability::Confusion;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Share of sampled listings assumed counterfeit before any vote.
pub const DEFAULT_PRIOR_COUNTERFEIT: f64 = 0.1;

/// How far a prior is kept from 0 and 1, so its log-odds stay finite.
pub(crate) const PRIOR_FLOOR: f64 = 1e-9;

/// P(counterfeit | votes), from `prior` and the votes.
///
/// A vote is `(Some(confusion), verdict)` when its volunteer counts and
/// `(None, verdict)` when they do not (stopped by the abuse rules, say): such a
/// vote carries no weight at all. `prior` is clamped into [1e-9, 1 - 1e-9].
/// The result depends only on the multiset of votes, never on their order.
pub fn posterior_counterfeit<'a>(
    prior: f64,
    votes: impl IntoIterator<Item = (Option<&'a Confusion>, Verdict)>,
) -> f64 {
    let prior = prior.clamp(PRIOR_FLOOR, 1.0 - PRIOR_FLOOR);
    let mut terms: Vec<f64> = votes
        .into_iter()
        .filter_map(|(confusion, verdict)| Some(confusion?.log_likelihood_ratio(verdict)))
        .collect();
    let log_odds = (prior / (1.0 - prior)).ln() + canonical_sum(&mut terms);
    1.0 / (1.0 + (-log_odds).exp())
}

/// Sums `terms` in an order fixed by their values alone: the positive ones from
/// smallest up, the negative ones from smallest magnitude up, then the two
/// partial sums. Besides making the sum order-free, this keeps it monotone: a
/// further positive term can never lower it, even by rounding.
pub(crate) fn canonical_sum(terms: &mut [f64]) -> f64 {
    terms.sort_unstable_by(f64::total_cmp);
    let split = terms.partition_point(|x| *x < 0.0);
    let negative: f64 = terms[..split].iter().rev().sum();
    let positive: f64 = terms[split..].iter().sum();
    positive + negative
}

/// When a task has heard enough.
///
/// Defaults: at least 3 and at most 7 counting votes; counterfeit once the
/// posterior reaches 0.9, genuine once it falls to 0.05.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoppingRule {
    /// No decision before this many counting votes.
    pub min_votes: u32,
    /// After this many counting votes without a decision, the task is uncertain.
    pub max_votes: u32,
    /// Decide counterfeit (and escalate) at or above this posterior.
    pub counterfeit_at: f64,
    /// Decide genuine at or below this posterior.
    pub genuine_at: f64,
}

impl Default for StoppingRule {
    fn default() -> Self {
        StoppingRule {
            min_votes: 3,
            max_votes: 7,
            counterfeit_at: 0.9,
            genuine_at: 0.05,
        }
    }
}

/// What to do with a task after its latest vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The votes decided.
    Decide(Outcome),
    /// Ask another volunteer.
    NeedMore,
    /// The vote budget is spent without a decision: escalate as uncertain.
    Uncertain,
}

impl Step {
    /// The task's outcome, once it has one.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Step::Decide(outcome) => Some(outcome),
            Step::NeedMore => None,
            Step::Uncertain => Some(Outcome::Uncertain),
        }
    }
}

/// A stopping rule or risk table that cannot be applied.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("stopping rule: {0}")]
pub struct InvalidRule(pub &'static str);

impl StoppingRule {
    /// Checks 1 <= min_votes <= max_votes and 0 < genuine_at < counterfeit_at < 1.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        if self.min_votes == 0 || self.min_votes > self.max_votes {
            return Err(InvalidRule("need 1 <= min_votes <= max_votes"));
        }
        if !(0.0 < self.genuine_at
            && self.genuine_at < self.counterfeit_at
            && self.counterfeit_at < 1.0)
        {
            return Err(InvalidRule("need 0 < genuine_at < counterfeit_at < 1"));
        }
        Ok(())
    }

    /// The next step for a task whose posterior is `posterior` after
    /// `counted_votes` counting votes. Never decides before `min_votes`;
    /// never asks for more at or beyond `max_votes`.
    pub fn step(&self, posterior: f64, counted_votes: u32) -> Step {
        if counted_votes >= self.min_votes {
            if posterior >= self.counterfeit_at {
                return Step::Decide(Outcome::Counterfeit);
            }
            if posterior <= self.genuine_at {
                return Step::Decide(Outcome::Genuine);
            }
        }
        if counted_votes < self.max_votes {
            Step::NeedMore
        } else {
            Step::Uncertain
        }
    }
}

/// Escalation thresholds that follow business risk: a listing from a risky
/// seller tier, or priced at or above `high_price`, is escalated at a lower
/// posterior (`risky_counterfeit_at`), since a missed counterfeit costs more.
///
/// Defaults: the default [`StoppingRule`], risky tier "high", high price 500,
/// risky threshold 0.7.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskThresholds {
    /// The rule for ordinary listings.
    pub base: StoppingRule,
    /// Seller risk tiers treated as risky.
    pub risky_tiers: Vec<String>,
    /// Prices at or above this are treated as risky.
    pub high_price: f64,
    /// `counterfeit_at` for risky listings (the lower of it and the base's).
    pub risky_counterfeit_at: f64,
}

impl Default for RiskThresholds {
    fn default() -> Self {
        RiskThresholds {
            base: StoppingRule::default(),
            risky_tiers: vec!["high".to_string()],
            high_price: 500.0,
            risky_counterfeit_at: 0.7,
        }
    }
}

impl RiskThresholds {
    /// Checks the base rule, and that the risky rule is valid too.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        self.base.validate()?;
        if self.high_price.is_nan() || self.high_price <= 0.0 {
            return Err(InvalidRule("high_price must be > 0"));
        }
        StoppingRule {
            counterfeit_at: self.risky_counterfeit_at,
            ..self.base
        }
        .validate()
    }

    /// The stopping rule for a listing of this seller tier and price.
    pub fn rule_for(&self, seller_risk_tier: &str, price: f64) -> StoppingRule {
        let risky =
            self.risky_tiers.iter().any(|t| t == seller_risk_tier) || price >= self.high_price;
        if risky {
            StoppingRule {
                counterfeit_at: self.base.counterfeit_at.min(self.risky_counterfeit_at),
                ..self.base
            }
        } else {
            self.base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reliability::ReliabilityPrior;
    use Verdict::*;
    use proptest::prelude::*;

    fn trained(right: f64, wrong: f64, unsure: f64) -> Confusion {
        let mut c = Confusion::default();
        for truth in [false, true] {
            let (r, w) = if truth {
                (Counterfeit, Genuine)
            } else {
                (Genuine, Counterfeit)
            };
            c.observe(truth, r, right);
            c.observe(truth, w, wrong);
            c.observe(truth, Unsure, unsure);
        }
        c
    }

    #[test]
    fn no_votes_leave_the_prior_and_uncounted_votes_weigh_nothing() {
        let c = Confusion::default();
        assert!((posterior_counterfeit(0.1, []) - 0.1).abs() < 1e-12);
        let with_ignored = posterior_counterfeit(0.1, [(None, Counterfeit), (Some(&c), Genuine)]);
        assert_eq!(
            with_ignored,
            posterior_counterfeit(0.1, [(Some(&c), Genuine)])
        );
    }

    #[test]
    fn agreeing_reliable_volunteers_move_the_posterior_past_the_thresholds() {
        let expert = trained(95.0, 3.0, 2.0);
        let fake = posterior_counterfeit(0.1, [(Some(&expert), Counterfeit); 3]);
        assert!(fake > 0.99, "{fake}");
        let real = posterior_counterfeit(0.1, [(Some(&expert), Genuine); 3]);
        assert!(real < 0.001, "{real}");
    }

    #[test]
    fn a_volunteer_who_always_says_genuine_barely_moves_the_posterior() {
        let mut spammer = Confusion::default();
        for i in 0..200 {
            spammer.observe(i % 2 == 0, Genuine, 1.0);
        }
        let p = posterior_counterfeit(0.1, [(Some(&spammer), Genuine); 5]);
        assert!((p - 0.1).abs() < 0.02, "{p}");
    }

    #[test]
    fn the_rule_decides_only_between_min_and_max_votes() {
        let rule = StoppingRule::default();
        rule.validate().unwrap();
        assert_eq!(rule.step(0.99, 2), Step::NeedMore);
        assert_eq!(rule.step(0.99, 3), Step::Decide(Outcome::Counterfeit));
        assert_eq!(rule.step(0.01, 3), Step::Decide(Outcome::Genuine));
        assert_eq!(rule.step(0.5, 6), Step::NeedMore);
        assert_eq!(rule.step(0.5, 7), Step::Uncertain);
        assert_eq!(Step::Uncertain.outcome(), Some(Outcome::Uncertain));
    }

    #[test]
    fn inconsistent_rules_are_refused() {
        let base = StoppingRule::default();
        for bad in [
            StoppingRule {
                min_votes: 0,
                ..base
            },
            StoppingRule {
                min_votes: 8,
                ..base
            },
            StoppingRule {
                genuine_at: 0.95,
                ..base
            },
            StoppingRule {
                counterfeit_at: 1.0,
                ..base
            },
            StoppingRule {
                genuine_at: f64::NAN,
                ..base
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let bad_risk = RiskThresholds {
            risky_counterfeit_at: 0.01,
            ..Default::default()
        };
        assert!(bad_risk.validate().is_err());
    }

    #[test]
    fn risky_tiers_and_high_prices_escalate_at_a_lower_posterior() {
        let risk = RiskThresholds::default();
        risk.validate().unwrap();
        assert_eq!(risk.rule_for("standard", 100.0), risk.base);
        assert_eq!(risk.rule_for("high", 100.0).counterfeit_at, 0.7);
        assert_eq!(risk.rule_for("low", 900.0).counterfeit_at, 0.7);
        assert_eq!(risk.rule_for("low", f64::NAN), risk.base);
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(Genuine), Just(Counterfeit), Just(Unsure)]
    }

    fn confusion() -> impl Strategy<Value = Confusion> {
        (
            prop::array::uniform2(prop::array::uniform3(0.0..50.0f64)),
            prop::bool::ANY,
        )
            .prop_map(|(extra, fresh)| {
                let mut c = Confusion::prior(&ReliabilityPrior::default());
                if !fresh {
                    for (t, row) in extra.iter().enumerate() {
                        for (v, w) in [Genuine, Counterfeit, Unsure].into_iter().zip(row) {
                            c.observe(t == 1, v, *w);
                        }
                    }
                }
                c
            })
    }

    fn votes() -> impl Strategy<Value = Vec<(Option<Confusion>, Verdict)>> {
        prop::collection::vec((prop::option::weighted(0.9, confusion()), verdict()), 0..12)
    }

    fn posterior(prior: f64, votes: &[(Option<Confusion>, Verdict)]) -> f64 {
        posterior_counterfeit(prior, votes.iter().map(|(c, v)| (c.as_ref(), *v)))
    }

    proptest! {
        #[test]
        fn the_order_of_votes_never_changes_a_single_bit(
            votes in votes(),
            prior in 0.001..0.999f64,
            seed in any::<u64>(),
        ) {
            let first = posterior(prior, &votes);
            let mut shuffled = votes.clone();
            shuffled.reverse();
            prop_assert_eq!(first.to_bits(), posterior(prior, &shuffled).to_bits());
            // A seeded Fisher-Yates, so any permutation can come up.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(first.to_bits(), posterior(prior, &shuffled).to_bits());
        }

        #[test]
        fn a_counterfeit_vote_from_a_better_than_chance_volunteer_never_lowers_the_posterior(
            votes in votes(),
            extra in confusion(),
            prior in 0.001..0.999f64,
        ) {
            prop_assume!(extra.prob(true, Counterfeit) > extra.prob(false, Counterfeit));
            let before = posterior(prior, &votes);
            let mut more = votes.clone();
            more.push((Some(extra), Counterfeit));
            prop_assert!(posterior(prior, &more) >= before);
        }

        #[test]
        fn the_rule_never_decides_before_min_votes_and_always_ends_by_max_votes(
            min in 1u32..6,
            extra in 0u32..6,
            counted in 0u32..20,
            posterior in 0.0..=1.0f64,
        ) {
            let rule = StoppingRule { min_votes: min, max_votes: min + extra, ..Default::default() };
            let step = rule.step(posterior, counted);
            if counted < rule.min_votes {
                prop_assert_eq!(step, Step::NeedMore);
            }
            if counted >= rule.max_votes {
                prop_assert_ne!(step, Step::NeedMore);
            }
        }
    }
}
