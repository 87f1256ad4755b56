//! Reliability learned online from agreement: when a task is decided, each of
//! its counting voters' confusion estimates learns from how their verdict
//! compares with what the *other* voters concluded.
//!
//! The label is soft (a probability, not a verdict) and weighs less than a gold
//! answer. Four guards keep the crowd from teaching itself its own mistakes:
//! - leave-one-out: a voter is judged against the posterior of the other votes
//!   alone, so their own vote is never evidence for itself;
//! - confidence: no update unless that posterior is confident either way;
//! - no single partner: the other votes without the strongest one for the
//!   label must still carry `min_support` of evidence on its side, so two
//!   volunteers who only agree with each other never label each other;
//! - a cap: agreement evidence may reach at most `cap_ratio` times a voter's
//!   gold and staff evidence, so it refines what truth has measured and never
//!   replaces it (a volunteer with no gold answers learns nothing here).
//!
//! Which tasks teach must not depend on the votes: with adaptive stopping, a
//! task gets a third vote *because* someone dissented, so learning from every
//! task with enough votes would mostly learn from dissent and drag every
//! estimate down. Only audit tasks teach: a keyed share of tasks that always
//! take `audit_votes` counting votes, of which exactly those first votes (in
//! the order cast) are passed to [`agreement_updates`]. Whether a vote is
//! among them does not depend on what it says, nor does its label.
//!
//! Every update is computed from the confusions as they were before the task
//! was decided, and the result is sorted by voter, so the same votes in any
//! order give the same updates. The hourly Dawid–Skene recalibration rebuilds
//! the estimates from scratch and stays the anchor.

use crate::aggregate::Verdict;
use crate::posterior::{PRIOR_FLOOR, RiskThresholds, canonical_sum};
use crate::reliability::Confusion;
use serde::{Deserialize, Serialize};

/// The guards and the weight of agreement evidence.
///
/// Defaults: an agreeing answer weighs 0.5 of a gold answer; the leave-one-out
/// posterior must be at least 0.98 sure; the rest must carry at least 1.4 nats
/// (one 80%-accurate vote) without the strongest partner; agreement evidence
/// is capped at 4 times the voter's truth evidence; 5% of tasks are audit
/// tasks of at least 3 votes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgreementParams {
    /// Weight of one agreement observation (a gold answer weighs 1).
    pub weight: f64,
    /// The leave-one-out posterior must be at least this sure either way.
    pub confident_at: f64,
    /// Evidence (nats) the other votes must carry on the label's side once
    /// their strongest vote for it is left out too.
    pub min_support: f64,
    /// Agreement evidence is capped at this multiple of truth evidence.
    pub cap_ratio: f64,
    /// Share of tasks that teach by agreement (audit tasks, drawn by
    /// [`AgreementParams::is_audit_task`]).
    pub audit_share: f64,
    /// An audit task takes at least this many counting votes, and only its
    /// first this many teach.
    pub audit_votes: u32,
}

impl Default for AgreementParams {
    fn default() -> Self {
        AgreementParams {
            weight: 0.5,
            confident_at: 0.98,
            min_support: 1.4,
            cap_ratio: 4.0,
            audit_share: 0.05,
            audit_votes: 3,
        }
    }
}

impl AgreementParams {
    /// Whether `task` is an audit task: a keyed draw (as for gold turns), so
    /// nobody can tell which tasks teach.
    pub fn is_audit_task(&self, key: &[u8], task: &[u8]) -> bool {
        let mut tagged = b"agreement-audit:".to_vec();
        tagged.extend_from_slice(task);
        crate::gold::is_gold_turn(key, &tagged, 0, self.audit_share)
    }

    /// The least counting votes a task needs before it may be decided:
    /// `audit_votes` for an audit task, else the stopping rule's own.
    pub fn min_votes(&self, audit: bool, rule_min_votes: u32) -> u32 {
        if audit {
            rule_min_votes.max(self.audit_votes)
        } else {
            rule_min_votes
        }
    }

    /// The stopping rules for an audit task: `thresholds` with at least
    /// `audit_votes` counting votes before any decision (risky listings too,
    /// since their rule is derived from the base one).
    pub fn audit_thresholds(&self, thresholds: &RiskThresholds) -> RiskThresholds {
        let mut audit = thresholds.clone();
        audit.base.min_votes = self.min_votes(true, audit.base.min_votes);
        audit.base.max_votes = audit.base.max_votes.max(audit.base.min_votes);
        audit
    }
}

/// One counting vote on a decided task, with its voter's estimate at the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgreementVote<V> {
    /// Who voted.
    pub voter: V,
    /// Their verdict.
    pub verdict: Verdict,
    /// Their confusion estimate before this task was decided.
    pub confusion: Confusion,
}

/// What one voter learns from a decided task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgreementUpdate<V> {
    /// The voter.
    pub voter: V,
    /// Their verdict on the task.
    pub verdict: Verdict,
    /// The leave-one-out probability that the listing is counterfeit.
    pub p_counterfeit: f64,
    /// The weight to add (already within the cap at computation time).
    pub weight: f64,
}

impl<V> AgreementUpdate<V> {
    /// Adds this update to `confusion` (the voter's current estimate, which
    /// may have moved since), trimmed to the room the cap leaves there.
    /// Returns the weight actually added.
    pub fn apply(&self, confusion: &mut Confusion, params: &AgreementParams) -> f64 {
        let weight = self.weight.min(room(confusion, params));
        if weight > 0.0 {
            confusion.observe_soft(self.p_counterfeit, self.verdict, weight);
            weight
        } else {
            0.0
        }
    }
}

/// Agreement evidence `confusion` may still take under the cap.
fn room(confusion: &Confusion, params: &AgreementParams) -> f64 {
    let room = params.cap_ratio * confusion.truth_evidence() - confusion.agreement;
    if room.is_finite() { room.max(0.0) } else { 0.0 }
}

/// The updates a decided audit task gives its counting voters, sorted by voter.
///
/// `prior` is the task's prior P(counterfeit); `votes` are the first
/// `audit_votes` counting votes of an audit task (a voter listed twice counts
/// once, by their smallest verdict). Voters whose guard does not pass get no
/// entry.
pub fn agreement_updates<V: Ord + Copy>(
    prior: f64,
    votes: &[AgreementVote<V>],
    params: &AgreementParams,
) -> Vec<AgreementUpdate<V>> {
    let mut votes: Vec<(V, Verdict, f64, &Confusion)> = votes
        .iter()
        .map(|v| {
            let llr = v.confusion.log_likelihood_ratio(v.verdict);
            (v.voter, v.verdict, llr, &v.confusion)
        })
        .collect();
    votes.sort_by(|a, b| a.0.cmp(&b.0).then(rank(a.1).cmp(&rank(b.1))));
    votes.dedup_by_key(|v| v.0);
    let prior = prior.clamp(PRIOR_FLOOR, 1.0 - PRIOR_FLOOR);
    let prior_log_odds = (prior / (1.0 - prior)).ln();
    let mut updates = Vec::new();
    for (i, &(voter, verdict, _, confusion)) in votes.iter().enumerate() {
        let mut others: Vec<f64> = votes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, v)| v.2)
            .filter(|x| x.is_finite())
            .collect();
        if others.len() < 2 {
            continue;
        }
        let log_odds = prior_log_odds + canonical_sum(&mut others.clone());
        let p = 1.0 / (1.0 + (-log_odds).exp());
        if p.max(1.0 - p) < params.confident_at {
            continue;
        }
        // Leave out the strongest vote for the label too: what remains must
        // still carry `min_support` on its side, so no single partner (and not
        // the prior) can make the label alone.
        let side = if p > 0.5 { 1.0 } else { -1.0 };
        let strongest = others
            .iter()
            .enumerate()
            .max_by(|a, b| (a.1 * side).total_cmp(&(b.1 * side)))
            .map(|(j, _)| j)
            .expect("at least two others");
        others.swap_remove(strongest);
        if canonical_sum(&mut others) * side < params.min_support {
            continue;
        }
        let weight = params.weight.min(room(confusion, params));
        if weight > 0.0 {
            updates.push(AgreementUpdate {
                voter,
                verdict,
                p_counterfeit: p,
                weight,
            });
        }
    }
    updates
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Genuine => 0,
        Verdict::Counterfeit => 1,
        Verdict::Unsure => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{DecisionRule, TaskFacts, WeighedVote};
    use crate::difficulty::DifficultyRule;
    use crate::posterior::{RiskThresholds, posterior_counterfeit};
    use Verdict::*;
    use proptest::prelude::*;

    fn trained(right: f64, wrong: f64) -> Confusion {
        let mut c = Confusion::default();
        for (truth, r, w) in [(false, Genuine, Counterfeit), (true, Counterfeit, Genuine)] {
            c.observe(truth, r, right);
            c.observe(truth, w, wrong);
        }
        c
    }

    fn vote(voter: u32, verdict: Verdict, confusion: Confusion) -> AgreementVote<u32> {
        AgreementVote {
            voter,
            verdict,
            confusion,
        }
    }

    #[test]
    fn a_unanimous_task_teaches_every_voter_with_the_others_posterior() {
        let c = trained(30.0, 3.0);
        let votes: Vec<_> = (0..4).map(|v| vote(v, Genuine, c)).collect();
        let updates = agreement_updates(0.1, &votes, &AgreementParams::default());
        assert_eq!(updates.len(), 4);
        let others = posterior_counterfeit(0.1, [(Some(&c), Genuine); 3]);
        for u in &updates {
            assert_eq!(u.p_counterfeit.to_bits(), others.to_bits());
            assert_eq!(u.weight, 0.5);
        }
    }

    #[test]
    fn a_voter_is_judged_by_the_others_alone() {
        // The dissenter's own strong vote would make the full posterior
        // unsure; without it the others are sure, and they say genuine.
        let expert = trained(60.0, 1.0);
        let good = trained(30.0, 3.0);
        let votes = [
            vote(1, Counterfeit, expert),
            vote(2, Genuine, good),
            vote(3, Genuine, good),
            vote(4, Genuine, good),
        ];
        let updates = agreement_updates(0.1, &votes, &AgreementParams::default());
        let dissenter = updates.iter().find(|u| u.voter == 1).expect("judged");
        assert!(dissenter.p_counterfeit < 0.02, "{dissenter:?}");
        assert!(updates.iter().all(|u| u.voter == 1), "{updates:?}");
    }

    #[test]
    fn volunteers_without_truth_evidence_learn_nothing_and_the_cap_holds() {
        let params = AgreementParams::default();
        let good = trained(30.0, 3.0);
        let votes = [
            vote(1, Genuine, Confusion::default()),
            vote(2, Genuine, good),
            vote(3, Genuine, good),
        ];
        let updates = agreement_updates(0.1, &votes, &params);
        assert!(updates.iter().all(|u| u.voter != 1), "{updates:?}");
        let mut c = trained(1.0, 0.0);
        let u = AgreementUpdate {
            voter: 0u32,
            verdict: Genuine,
            p_counterfeit: 0.0,
            weight: 0.5,
        };
        let added: f64 = (0..100).map(|_| u.apply(&mut c, &params)).sum();
        // Two gold answers allow 4 x 2 of agreement evidence, and no more.
        assert!((added - 8.0).abs() < 1e-9, "{added}");
        assert!(c.agreement <= params.cap_ratio * c.truth_evidence() + 1e-9);
    }

    #[test]
    fn audit_tasks_are_a_keyed_share_and_take_the_audit_votes() {
        let params = AgreementParams::default();
        let audits = (0u32..10_000)
            .filter(|t| params.is_audit_task(b"k", &t.to_be_bytes()))
            .count();
        assert!((420..580).contains(&audits), "{audits}");
        assert_eq!(params.min_votes(true, 2), 3);
        assert_eq!(params.min_votes(false, 2), 2);
        assert_eq!(params.min_votes(true, 5), 5);
        let audit = params.audit_thresholds(&RiskThresholds::default());
        assert_eq!(audit.base.min_votes, 3);
        assert_eq!(audit.rule_for("high", 900.0).min_votes, 3);
        audit.validate().unwrap();
    }

    #[test]
    fn two_votes_alone_teach_nothing() {
        let c = trained(60.0, 1.0);
        let votes = [vote(1, Counterfeit, c), vote(2, Counterfeit, c)];
        assert!(agreement_updates(0.1, &votes, &AgreementParams::default()).is_empty());
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![Just(Genuine), Just(Counterfeit), Just(Unsure)]
    }

    /// A volunteer measured on gold: better than chance, within realistic counts.
    fn measured() -> impl Strategy<Value = Confusion> {
        (
            0.0..60.0f64,
            0.0..15.0f64,
            0.0..60.0f64,
            0.0..15.0f64,
            0.0..5.0f64,
        )
            .prop_map(|(rg, wg, rc, wc, unsure)| {
                let mut c = Confusion::default();
                c.observe(false, Genuine, rg);
                c.observe(false, Counterfeit, wg);
                c.observe(true, Counterfeit, rc);
                c.observe(true, Genuine, wc);
                c.observe(true, Unsure, unsure);
                c
            })
    }

    fn facts(slots: u32) -> TaskFacts<'static> {
        TaskFacts {
            slots,
            seller_risk_tier: "standard",
            price: 10.0,
        }
    }

    /// A weight the pair gains when its verdict says more about what it claims.
    fn claim(c: &Confusion, v: Verdict) -> f64 {
        match v {
            Counterfeit => c.log_likelihood_ratio(v),
            _ => -c.log_likelihood_ratio(v),
        }
    }

    proptest! {
        #[test]
        fn the_same_votes_in_any_order_give_the_same_decision_and_updates(
            votes in prop::collection::vec((measured(), verdict()), 0..9),
            prior in 0.01..0.5f64,
            seed in any::<u64>(),
        ) {
            let params = AgreementParams { cap_ratio: 1.0, ..Default::default() };
            let votes: Vec<AgreementVote<u32>> = votes
                .iter()
                .enumerate()
                .map(|(i, (c, v))| vote(i as u32, *v, *c))
                .collect();
            let mut shuffled = votes.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let bits = |u: Vec<AgreementUpdate<u32>>| -> Vec<(u32, u64, u64)> {
                u.iter().map(|u| (u.voter, u.p_counterfeit.to_bits(), u.weight.to_bits())).collect()
            };
            prop_assert_eq!(
                bits(agreement_updates(prior, &votes, &params)),
                bits(agreement_updates(prior, &shuffled, &params))
            );
            let weighed = |v: &[AgreementVote<u32>]| -> Vec<WeighedVote> {
                v.iter().map(|v| WeighedVote { verdict: v.verdict, confusion: Some(v.confusion) }).collect()
            };
            let rule = DecisionRule::Adaptive { prior, thresholds: RiskThresholds::default(), max_slots: 12 };
            let hard = DifficultyRule { discount: 1.5 };
            let slots = votes.len() as u32;
            prop_assert_eq!(
                rule.judge_with(&weighed(&votes), facts(slots), &hard),
                rule.judge_with(&weighed(&shuffled), facts(slots), &hard)
            );
        }

        #[test]
        fn a_pair_that_only_agrees_with_each_other_never_gains_weight(
            pair in (measured(), measured()),
            verdict in prop_oneof![Just(Genuine), Just(Counterfeit)],
            tasks in prop::collection::vec(
                prop::collection::vec((measured(), prop::bool::ANY), 0..5), 1..20),
            prior in 0.01..0.5f64,
        ) {
            let params = AgreementParams::default();
            let opposite = if verdict == Genuine { Counterfeit } else { Genuine };
            let (mut a, mut b) = pair;
            for others in tasks {
                let before = [(claim(&a, verdict), a.accuracy()), (claim(&b, verdict), b.accuracy())];
                let mut votes = vec![vote(0, verdict, a), vote(1, verdict, b)];
                // Everyone else's vote is evidence against the pair's claim, or
                // no evidence at all.
                for (i, (c, decisive)) in others.iter().enumerate() {
                    let against = claim(c, opposite) > 0.0;
                    let v = if *decisive && against { vote(i as u32 + 2, opposite, *c) } else {
                        vote(i as u32 + 2, Unsure, Confusion::default())
                    };
                    votes.push(v);
                }
                for u in agreement_updates(prior, &votes, &params) {
                    match u.voter {
                        0 => { u.apply(&mut a, &params); }
                        1 => { u.apply(&mut b, &params); }
                        _ => {}
                    }
                }
                let after = [(claim(&a, verdict), a.accuracy()), (claim(&b, verdict), b.accuracy())];
                for (x, y) in before.iter().zip(&after) {
                    prop_assert!(y.0 <= x.0 + 1e-12, "weight {} -> {}", x.0, y.0);
                    prop_assert!(y.1 <= x.1 + 1e-12, "accuracy {} -> {}", x.1, y.1);
                }
            }
        }
    }
}
