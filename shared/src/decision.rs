//! The vote decision: what a task's votes come to, in one pure function that the
//! coordinator and the simulation both call, so they can never disagree on
//! what is decided, what asks for one more vote and what goes to staff.

use crate::aggregate::{Outcome, Verdict, majority};
use crate::difficulty::DifficultyRule;
use crate::posterior::{RiskThresholds, Step, StoppingRule};
use crate::reliability::Confusion;

/// The stopping rule the services run by default and the crowd benchmark's
/// new policy met its targets with (`docs/crowd.md`): 2 to 10 counting votes,
/// genuine at a posterior of 0.015 or less, counterfeit at 0.9 or more (the
/// risky-listing threshold of [`RiskThresholds`] applies on top). Two votes
/// suffice for most tasks once votes are weighed per class and spammers stop
/// counting early.
pub const LEARNED_STOPPING_RULE: StoppingRule = StoppingRule {
    min_votes: 2,
    max_votes: 10,
    counterfeit_at: 0.9,
    genuine_at: 0.015,
};

/// [`LEARNED_STOPPING_RULE`] with the default risky-listing rules.
pub fn learned_thresholds() -> RiskThresholds {
    RiskThresholds {
        base: LEARNED_STOPPING_RULE,
        ..RiskThresholds::default()
    }
}

/// How tasks are decided.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionRule {
    /// Fixed redundancy: a strict majority of the required votes.
    Majority,
    /// Reliability-weighted posterior with a stopping rule.
    Adaptive {
        /// The prior probability that a sampled listing is counterfeit.
        prior: f64,
        /// Stopping rules by business risk.
        thresholds: RiskThresholds,
        /// Most vote slots a task may ever ask for (counting or not).
        max_slots: u32,
    },
}

/// One vote as the decision sees it: the verdict, and the volunteer's confusion
/// when their votes count (`None`: stopped by the abuse rules, no weight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeighedVote {
    /// The verdict.
    pub verdict: Verdict,
    /// The voter's confusion estimate, when they count.
    pub confusion: Option<Confusion>,
}

/// What a task needs to be judged besides its votes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskFacts<'a> {
    /// Vote slots the task has asked for so far.
    pub slots: u32,
    /// The seller's risk tier.
    pub seller_risk_tier: &'a str,
    /// The listing's price.
    pub price: f64,
}

/// Why an escalation was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscalationReason {
    /// Majority mode: most voters said counterfeit.
    CounterfeitMajority,
    /// Adaptive mode: the posterior crossed the counterfeit threshold.
    CounterfeitPosterior,
    /// Adaptive mode: the votes ran out without a confident answer.
    Uncertain,
}

impl EscalationReason {
    /// The reason as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationReason::CounterfeitMajority => "counterfeit_majority",
            EscalationReason::CounterfeitPosterior => "counterfeit_posterior",
            EscalationReason::Uncertain => "uncertain",
        }
    }
}

/// What the votes came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    /// Not confident yet and slots remain: ask one more volunteer.
    MoreVotes {
        /// The posterior so far.
        posterior: f64,
    },
    /// The task is decided.
    Decided {
        /// The outcome.
        outcome: Outcome,
        /// The posterior (adaptive mode only).
        posterior: Option<f64>,
        /// Whether and why staff see it.
        escalation: Option<EscalationReason>,
    },
}

impl Judgement {
    /// Whether the task goes to staff.
    pub fn escalates(&self) -> bool {
        matches!(
            self,
            Judgement::Decided {
                escalation: Some(_),
                ..
            }
        )
    }
}

impl DecisionRule {
    /// Judges a task that has all the votes it asked for.
    pub fn judge(&self, votes: &[WeighedVote], task: TaskFacts<'_>) -> Judgement {
        self.judge_with(votes, task, &DifficultyRule::NONE)
    }

    /// [`DecisionRule::judge`] with the task's difficulty taken into account:
    /// in adaptive mode the posterior is tempered by `difficulty`, so a task on
    /// which careful volunteers disagree asks for more votes. With
    /// [`DifficultyRule::NONE`] this is exactly `judge`.
    pub fn judge_with(
        &self,
        votes: &[WeighedVote],
        task: TaskFacts<'_>,
        difficulty: &DifficultyRule,
    ) -> Judgement {
        match self {
            DecisionRule::Majority => {
                let verdicts: Vec<Verdict> = votes.iter().map(|v| v.verdict).collect();
                let outcome = majority(&verdicts);
                Judgement::Decided {
                    outcome,
                    posterior: None,
                    escalation: (outcome == Outcome::Counterfeit)
                        .then_some(EscalationReason::CounterfeitMajority),
                }
            }
            DecisionRule::Adaptive {
                prior,
                thresholds,
                max_slots,
            } => {
                let weighing = votes.iter().filter(|v| v.confusion.is_some()).count() as u32;
                let p = difficulty.posterior(
                    *prior,
                    votes.iter().map(|v| (v.confusion.as_ref(), v.verdict)),
                );
                let step = thresholds
                    .rule_for(task.seller_risk_tier, task.price)
                    .step(p, weighing);
                let outcome = match step {
                    Step::Decide(outcome) => outcome,
                    Step::NeedMore if task.slots < *max_slots => {
                        return Judgement::MoreVotes { posterior: p };
                    }
                    Step::NeedMore | Step::Uncertain => Outcome::Uncertain,
                };
                let escalation = match outcome {
                    Outcome::Genuine => None,
                    Outcome::Counterfeit => Some(EscalationReason::CounterfeitPosterior),
                    Outcome::Uncertain => Some(EscalationReason::Uncertain),
                };
                Judgement::Decided {
                    outcome,
                    posterior: Some(p),
                    escalation,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reliability::ReliabilityPrior;

    fn facts(slots: u32) -> TaskFacts<'static> {
        TaskFacts {
            slots,
            seller_risk_tier: "standard",
            price: 10.0,
        }
    }

    fn votes(verdicts: &[Verdict], counting: bool) -> Vec<WeighedVote> {
        let c = Confusion::prior(&ReliabilityPrior::default());
        verdicts
            .iter()
            .map(|v| WeighedVote {
                verdict: *v,
                confusion: counting.then_some(c),
            })
            .collect()
    }

    fn adaptive(max_slots: u32) -> DecisionRule {
        DecisionRule::Adaptive {
            prior: 0.1,
            thresholds: RiskThresholds::default(),
            max_slots,
        }
    }

    #[test]
    fn majority_escalates_a_counterfeit_majority_only() {
        use Verdict::*;
        let judge = |v: &[Verdict]| DecisionRule::Majority.judge(&votes(v, true), facts(3));
        assert!(judge(&[Counterfeit, Counterfeit, Genuine]).escalates());
        let uncertain = judge(&[Counterfeit, Genuine, Unsure]);
        assert_eq!(
            uncertain,
            Judgement::Decided {
                outcome: Outcome::Uncertain,
                posterior: None,
                escalation: None
            }
        );
        assert!(!judge(&[Genuine, Genuine, Unsure]).escalates());
    }

    #[test]
    fn adaptive_asks_for_more_until_the_slots_run_out_then_escalates_as_uncertain() {
        use Verdict::*;
        let split = votes(&[Counterfeit, Genuine, Unsure], true);
        assert!(matches!(
            adaptive(12).judge(&split, facts(3)),
            Judgement::MoreVotes { .. }
        ));
        assert!(matches!(
            adaptive(3).judge(&split, facts(3)),
            Judgement::Decided {
                outcome: Outcome::Uncertain,
                escalation: Some(EscalationReason::Uncertain),
                ..
            }
        ));
        let agree = votes(&[Genuine, Genuine, Genuine], true);
        assert!(matches!(
            adaptive(12).judge(&agree, facts(3)),
            Judgement::Decided {
                outcome: Outcome::Genuine,
                escalation: None,
                ..
            }
        ));
    }

    #[test]
    fn a_disputed_task_asks_for_more_where_the_plain_rule_would_decide() {
        use Verdict::*;
        let mut expert = Confusion::default();
        expert.observe(true, Counterfeit, 60.0);
        expert.observe(false, Genuine, 60.0);
        let votes: Vec<WeighedVote> = [Genuine, Genuine, Counterfeit]
            .into_iter()
            .map(|verdict| WeighedVote {
                verdict,
                confusion: Some(expert),
            })
            .collect();
        let rule = adaptive(12);
        assert!(matches!(
            rule.judge(&votes, facts(3)),
            Judgement::Decided {
                outcome: Outcome::Genuine,
                ..
            }
        ));
        assert_eq!(
            rule.judge(&votes, facts(3)),
            rule.judge_with(&votes, facts(3), &DifficultyRule::NONE)
        );
        let hard = DifficultyRule { discount: 8.0 };
        assert!(matches!(
            rule.judge_with(&votes, facts(3), &hard),
            Judgement::MoreVotes { .. }
        ));
    }

    #[test]
    fn votes_that_do_not_count_weigh_nothing() {
        use Verdict::*;
        let stopped = votes(&[Counterfeit, Counterfeit, Counterfeit], false);
        assert!(matches!(
            adaptive(12).judge(&stopped, facts(3)),
            Judgement::MoreVotes { posterior } if (posterior - 0.1).abs() < 1e-9
        ));
    }
}
