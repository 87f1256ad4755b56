//! How far each volunteer's verdicts can be trusted: a per-volunteer confusion
//! estimate (truth x verdict) with a Dirichlet prior, learned from gold answers.
//!
//! A newcomer starts at the prior; every answer whose truth is known adds to
//! one cell. The services store a [`Confusion`] as JSON; `posterior` turns the
//! estimates into a probability that a listing is counterfeit.

use crate::aggregate::Verdict;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Dirichlet pseudo-counts every volunteer starts with, for each truth class.
///
/// The default (4, 1, 0.5) says a newcomer is right 73% of the time, wrong 18%
/// and unsure 9%, i.e. 80% accurate when decisive, and weighs as much as 5.5
/// answers per class: a handful of gold answers is enough to move it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityPrior {
    /// Pseudo-count of right verdicts.
    pub correct: f64,
    /// Pseudo-count of wrong verdicts.
    pub wrong: f64,
    /// Pseudo-count of "unsure" answers.
    pub unsure: f64,
}

impl Default for ReliabilityPrior {
    fn default() -> Self {
        ReliabilityPrior {
            correct: 4.0,
            wrong: 1.0,
            unsure: 0.5,
        }
    }
}

/// A prior that cannot be used.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("reliability prior: every pseudo-count must be finite and > 0, got {0:?}")]
pub struct InvalidPrior(pub ReliabilityPrior);

impl ReliabilityPrior {
    /// Checks that every pseudo-count is finite and positive, so no verdict ever
    /// has probability zero (which would make one vote decide a task alone).
    pub fn validate(&self) -> Result<(), InvalidPrior> {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if ok(self.correct) && ok(self.wrong) && ok(self.unsure) {
            Ok(())
        } else {
            Err(InvalidPrior(*self))
        }
    }
}

/// The column of a verdict in [`Confusion::counts`].
fn column(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Genuine => 0,
        Verdict::Counterfeit => 1,
        Verdict::Unsure => 2,
    }
}

/// A volunteer's confusion estimate: Dirichlet counts of verdicts per truth.
///
/// `counts[t][v]`: row `t` is the truth (0 genuine, 1 counterfeit), column `v`
/// the verdict (0 genuine, 1 counterfeit, 2 unsure); prior plus observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Prior pseudo-counts plus observed (weighted) answers.
    pub counts: [[f64; 3]; 2],
    /// Total weight observed beyond the prior.
    #[serde(default)]
    pub answers: f64,
    /// The part of `answers` learned from agreement with decided tasks (soft
    /// labels) rather than from gold or staff truth.
    #[serde(default)]
    pub agreement: f64,
}

impl Confusion {
    /// A newcomer: the prior alone, the same for both truth classes.
    pub fn prior(prior: &ReliabilityPrior) -> Self {
        let genuine = [prior.correct, prior.wrong, prior.unsure];
        let counterfeit = [prior.wrong, prior.correct, prior.unsure];
        Confusion {
            counts: [genuine, counterfeit],
            answers: 0.0,
            agreement: 0.0,
        }
    }

    /// Records an answer whose truth is known (a gold task, or a task staff
    /// settled). `weight` scales it; non-finite or negative weights are ignored.
    pub fn observe(&mut self, truth_counterfeit: bool, verdict: Verdict, weight: f64) {
        if !(weight.is_finite() && weight > 0.0) {
            return;
        }
        self.counts[usize::from(truth_counterfeit)][column(verdict)] += weight;
        self.answers += weight;
    }

    /// Records an answer on a decided task whose truth is only believed, with
    /// probability `p_counterfeit` that it is counterfeit: the weight is split
    /// between the two truth rows and counted as agreement evidence. Weights
    /// that are not finite and positive, and labels outside [0, 1], are ignored.
    pub fn observe_soft(&mut self, p_counterfeit: f64, verdict: Verdict, weight: f64) {
        if !(weight.is_finite() && weight > 0.0 && (0.0..=1.0).contains(&p_counterfeit)) {
            return;
        }
        self.counts[1][column(verdict)] += weight * p_counterfeit;
        self.counts[0][column(verdict)] += weight * (1.0 - p_counterfeit);
        self.answers += weight;
        self.agreement += weight;
    }

    /// Weight observed from known truth (gold answers and staff outcomes).
    pub fn truth_evidence(&self) -> f64 {
        (self.answers - self.agreement).max(0.0)
    }

    /// The Beta posterior of P(right | truth) for one truth class, as its two
    /// parameters (right, not right): specificity for genuine listings,
    /// sensitivity for counterfeit ones. "Unsure" counts as not right.
    pub fn class_beta(&self, truth_counterfeit: bool) -> (f64, f64) {
        let t = usize::from(truth_counterfeit);
        let row = &self.counts[t];
        (row[t], row.iter().sum::<f64>() - row[t])
    }

    /// How uncertain the estimate still is: the larger of the Beta posterior
    /// standard deviations of sensitivity and specificity. A newcomer at the
    /// default prior is at about 0.175; it shrinks like 1 / sqrt(answers) of
    /// the less observed class.
    pub fn uncertainty(&self) -> f64 {
        let sd = |(a, b): (f64, f64)| {
            let n = a + b;
            (a * b / (n * n * (n + 1.0))).sqrt()
        };
        sd(self.class_beta(false)).max(sd(self.class_beta(true)))
    }

    /// Posterior mean of P(verdict | truth).
    pub fn prob(&self, truth_counterfeit: bool, verdict: Verdict) -> f64 {
        let row = &self.counts[usize::from(truth_counterfeit)];
        row[column(verdict)] / row.iter().sum::<f64>()
    }

    /// ln P(verdict | counterfeit) - ln P(verdict | genuine): how much this
    /// verdict from this volunteer moves the log-odds that a listing is
    /// counterfeit. Positive for evidence of a counterfeit.
    pub fn log_likelihood_ratio(&self, verdict: Verdict) -> f64 {
        self.prob(true, verdict).ln() - self.prob(false, verdict).ln()
    }

    /// Balanced decisive accuracy: the mean over the two truth classes of
    /// P(right | truth, decisive answer). "Unsure" answers are left out (they
    /// are honest and carry almost no evidence); averaging over the classes
    /// keeps a volunteer who always says "genuine" at 0.5 however rare
    /// counterfeits are.
    pub fn accuracy(&self) -> f64 {
        let class = |t: usize| {
            let right = self.counts[t][t];
            right / (right + self.counts[t][1 - t])
        };
        (class(0) + class(1)) / 2.0
    }

    /// How many answers (by weight) were observed beyond the prior.
    pub fn answers(&self) -> f64 {
        self.answers
    }
}

impl Default for Confusion {
    fn default() -> Self {
        Confusion::prior(&ReliabilityPrior::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_is_assumed_fairly_accurate_and_has_no_answers() {
        let c = Confusion::default();
        assert!((c.prob(true, Verdict::Counterfeit) - 4.0 / 5.5).abs() < 1e-12);
        assert!((c.prob(false, Verdict::Counterfeit) - 1.0 / 5.5).abs() < 1e-12);
        assert!((c.accuracy() - 0.8).abs() < 1e-12);
        assert_eq!(c.answers(), 0.0);
        assert!(c.log_likelihood_ratio(Verdict::Counterfeit) > 0.0);
        assert!(c.log_likelihood_ratio(Verdict::Genuine) < 0.0);
        assert_eq!(c.log_likelihood_ratio(Verdict::Unsure), 0.0);
    }

    #[test]
    fn probabilities_of_each_truth_sum_to_one() {
        let mut c = Confusion::default();
        c.observe(true, Verdict::Unsure, 2.0);
        c.observe(false, Verdict::Counterfeit, 1.0);
        for truth in [false, true] {
            let total: f64 = [Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure]
                .into_iter()
                .map(|v| c.prob(truth, v))
                .sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
        assert_eq!(c.answers(), 3.0);
    }

    #[test]
    fn a_volunteer_who_always_says_genuine_converges_to_half_accuracy() {
        let mut c = Confusion::default();
        for i in 0..1000 {
            c.observe(i % 10 == 0, Verdict::Genuine, 1.0);
        }
        assert!((c.accuracy() - 0.5).abs() < 0.02, "{}", c.accuracy());
        // And their "genuine" says nothing about the truth.
        assert!(c.log_likelihood_ratio(Verdict::Genuine).abs() < 0.1);
    }

    #[test]
    fn soft_answers_split_their_weight_between_the_truths_and_count_as_agreement() {
        let mut c = Confusion::default();
        c.observe(true, Verdict::Counterfeit, 2.0);
        c.observe_soft(0.25, Verdict::Genuine, 0.5);
        assert!((c.counts[1][0] - (1.0 + 0.125)).abs() < 1e-12);
        assert!((c.counts[0][0] - (4.0 + 0.375)).abs() < 1e-12);
        assert_eq!(
            (c.answers(), c.agreement, c.truth_evidence()),
            (2.5, 0.5, 2.0)
        );
        let before = c;
        c.observe_soft(1.5, Verdict::Genuine, 1.0);
        c.observe_soft(0.5, Verdict::Genuine, f64::NAN);
        assert_eq!(c, before);
    }

    #[test]
    fn uncertainty_shrinks_with_answers_of_both_classes() {
        let mut c = Confusion::default();
        let fresh = c.uncertainty();
        assert!((fresh - 0.175).abs() < 0.002, "{fresh}");
        for _ in 0..100 {
            c.observe(false, Verdict::Genuine, 1.0);
        }
        // Only genuine listings seen: sensitivity is still as unknown as ever.
        assert!((c.uncertainty() - fresh).abs() < 1e-12);
        for _ in 0..100 {
            c.observe(true, Verdict::Counterfeit, 1.0);
        }
        assert!(c.uncertainty() < 0.04, "{}", c.uncertainty());
    }

    #[test]
    fn zero_negative_and_nan_weights_change_nothing() {
        let mut c = Confusion::default();
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            c.observe(true, Verdict::Counterfeit, w);
        }
        assert_eq!(c, Confusion::default());
    }

    #[test]
    fn the_json_form_round_trips_and_counts_alone_load_with_no_answers() {
        let mut c = Confusion::default();
        c.observe(true, Verdict::Counterfeit, 1.0);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Confusion>(&json).unwrap(), c);
        let bare: Confusion = serde_json::from_str(r#"{"counts":[[4,1,0.5],[1,4,0.5]]}"#).unwrap();
        assert_eq!(bare, Confusion::default());
    }

    #[test]
    fn priors_with_a_zero_or_infinite_count_are_refused() {
        assert!(ReliabilityPrior::default().validate().is_ok());
        let zero = ReliabilityPrior {
            unsure: 0.0,
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let inf = ReliabilityPrior {
            correct: f64::INFINITY,
            ..Default::default()
        };
        assert!(inf.validate().is_err());
    }
}
