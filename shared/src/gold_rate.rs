//! How much gold each volunteer sees, by what is still unknown about them:
//! the uncertainty of their confusion estimate and their risk of being a
//! spammer, with a floor so nobody can learn that gold has stopped.
//!
//! The draw itself stays the keyed [`gold::is_gold_turn`](crate::gold::is_gold_turn)
//! (and [`gold::is_counterfeit_gold`](crate::gold::is_counterfeit_gold) for
//! the class), so every replica takes the same decision without talking.

use crate::abuse::{AbusePolicy, VolunteerStats};
use crate::gold::InvalidSchedule;
use crate::reliability::{Confusion, ReliabilityPrior};
use serde::{Deserialize, Serialize};

/// The share of gold driven by what is still unknown about a volunteer,
/// instead of by their experience alone.
///
/// Two needs ask for gold, and the larger one sets the rate:
/// - *uncertainty*: `ceiling x (sd / settled_sd - 1) / (newcomer_sd /
///   settled_sd - 1)`, clamped to [0, 1], where `sd` is
///   [`Confusion::uncertainty`] (the larger Beta posterior standard deviation
///   of sensitivity and specificity). A newcomer at the default prior (sd
///   about 0.175) gets the ceiling; once both classes are known to within
///   `settled_sd`, uncertainty asks for nothing more. Agreement evidence
///   counts, so volunteers whose votes keep matching confident decisions
///   settle sooner.
/// - *spammer risk*: the posterior probability that the volunteer is a spammer,
///   from `spammer_prior` and the abuse rules' sequential tests on their gold
///   answers ([`AbusePolicy::spammer_log_ratio`]) or on their whole confusion
///   estimate ([`AbusePolicy::confusion_log_ratio`]), whichever is higher,
///   times `risk_gain`, up to `risk_ceiling`, fading linearly to nothing over
///   the first `risk_horizon` gold answers: a volunteer whose answers look
///   bad sees more gold, which stops a spammer within few answers.
///
/// The rate never falls below `floor`, so nobody can learn that gold has
/// stopped, and the draw stays the keyed
/// [`is_gold_turn`](crate::gold::is_gold_turn).
///
/// Defaults: floor 0.02, ceiling 0.5, settled at sd 0.12, newcomer sd 0.175,
/// spammer prior 0.15, risk gain 1.5 up to 0.8, fading over 40 gold answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GoldPolicy {
    /// The least share of gold, for anyone.
    pub floor: f64,
    /// The share uncertainty asks for at most (a newcomer's).
    pub ceiling: f64,
    /// Standard deviation at which an estimate counts as settled.
    pub settled_sd: f64,
    /// Standard deviation of a newcomer's estimate (the prior's).
    pub newcomer_sd: f64,
    /// The share of spammers assumed before any gold answer.
    pub spammer_prior: f64,
    /// Gold share per unit of spammer probability.
    pub risk_gain: f64,
    /// The share spammer risk asks for at most.
    pub risk_ceiling: f64,
    /// Gold answers over which the risk term fades to nothing: the abuse
    /// tests stop a spammer well within it, so a volunteer still counting
    /// after that many is in between (careless, say), where more gold no
    /// longer changes what is done with them.
    pub risk_horizon: f64,
}

impl Default for GoldPolicy {
    fn default() -> Self {
        GoldPolicy {
            floor: 0.02,
            ceiling: 0.5,
            settled_sd: 0.12,
            newcomer_sd: 0.175,
            spammer_prior: 0.15,
            risk_gain: 1.5,
            risk_ceiling: 0.8,
            risk_horizon: 40.0,
        }
    }
}

impl GoldPolicy {
    /// Checks 0 < floor <= ceiling <= 1, floor <= risk_ceiling <= 1,
    /// 0 < settled_sd < newcomer_sd, 0 < spammer_prior < 1, risk_gain >= 0
    /// and risk_horizon > 0.
    pub fn validate(&self) -> Result<(), InvalidSchedule> {
        let ok = 0.0 < self.floor
            && self.floor <= self.ceiling
            && self.ceiling <= 1.0
            && self.floor <= self.risk_ceiling
            && self.risk_ceiling <= 1.0
            && 0.0 < self.settled_sd
            && self.settled_sd < self.newcomer_sd
            && self.newcomer_sd.is_finite()
            && 0.0 < self.spammer_prior
            && self.spammer_prior < 1.0
            && self.risk_gain >= 0.0
            && self.risk_gain.is_finite()
            && self.risk_horizon > 0.0;
        if ok { Ok(()) } else { Err(InvalidSchedule) }
    }

    /// The probability that a volunteer with these gold tallies is a spammer
    /// rather than careful, by the abuse rules' hypotheses.
    pub fn spammer_risk(&self, abuse: &AbusePolicy, stats: &VolunteerStats) -> f64 {
        let evidence = abuse.spammer_log_ratio(stats);
        self.risk_of(evidence)
    }

    /// The probability of a spammer from a log-likelihood ratio, spammer over
    /// careful, and `spammer_prior`.
    fn risk_of(&self, evidence: f64) -> f64 {
        let prior = self.spammer_prior.clamp(1e-9, 1.0 - 1e-9);
        let log_odds = (prior / (1.0 - prior)).ln() + evidence;
        1.0 / (1.0 + (-log_odds).exp())
    }

    /// The share of gold for a volunteer with this confusion estimate and
    /// these gold tallies: within [floor, max(ceiling, risk_ceiling)], never
    /// below the floor whatever the inputs.
    pub fn rate(
        &self,
        confusion: &Confusion,
        stats: &VolunteerStats,
        abuse: &AbusePolicy,
        prior: &ReliabilityPrior,
    ) -> f64 {
        let span = self.newcomer_sd / self.settled_sd - 1.0;
        let unknown = (confusion.uncertainty() / self.settled_sd - 1.0) / span;
        let uncertainty = self.ceiling * unknown.clamp(0.0, 1.0);
        // Gold tallies, and the whole estimate (staff outcomes and agreement
        // too): a volunteer whose votes keep disagreeing with confident
        // decisions sees more gold even while their few gold answers look fine.
        let risk = self
            .spammer_risk(abuse, stats)
            .max(self.risk_of(abuse.confusion_log_ratio(confusion, prior)));
        let fade = (1.0 - f64::from(stats.gold_answered()) / self.risk_horizon).max(0.0);
        let risk = (self.risk_gain * risk).min(self.risk_ceiling) * fade;
        let rate = uncertainty.max(risk);
        if rate.is_finite() {
            rate.max(self.floor).min(1.0)
        } else {
            self.floor
        }
    }
}

impl GoldPolicy {
    /// The share of a volunteer's gold turns that should be counterfeit
    /// listings: in proportion to how uncertain each class's estimate is
    /// (Beta posterior variance), within [0.25, 0.75] so both classes keep
    /// being measured. Real work is mostly genuine, so agreement and staff
    /// outcomes settle specificity long before sensitivity, and gold then
    /// goes where the estimate is still weak; a volunteer who always says
    /// "genuine" also meets counterfeit gold sooner.
    pub fn counterfeit_share(&self, confusion: &Confusion) -> f64 {
        let var = |(a, b): (f64, f64)| {
            let n = a + b;
            a * b / (n * n * (n + 1.0))
        };
        let (genuine, counterfeit) = (
            var(confusion.class_beta(false)),
            var(confusion.class_beta(true)),
        );
        let share = counterfeit / (genuine + counterfeit);
        if share.is_finite() {
            share.clamp(0.25, 0.75)
        } else {
            0.5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Verdict;
    use crate::gold::{is_counterfeit_gold, is_gold_turn};
    use proptest::prelude::*;

    fn tallies(genuine: (u32, u32), counterfeit: (u32, u32)) -> VolunteerStats {
        let tally = |(answered, correct)| crate::abuse::GoldTally {
            answered,
            correct,
            unsure: 0,
        };
        VolunteerStats {
            gold_genuine: tally(genuine),
            gold_counterfeit: tally(counterfeit),
            ..Default::default()
        }
    }

    #[test]
    fn a_newcomer_sees_much_gold_and_a_converged_careful_volunteer_little() {
        let (policy, abuse) = (GoldPolicy::default(), AbusePolicy::default());
        policy.validate().unwrap();
        let newcomer = policy.rate(
            &Confusion::default(),
            &VolunteerStats::default(),
            &abuse,
            &ReliabilityPrior::default(),
        );
        assert!(newcomer >= 0.45, "{newcomer}");
        let mut careful = Confusion::default();
        let mut stats = VolunteerStats::default();
        let mut rates = Vec::new();
        for round in 1..=30 {
            for truth in [false, true] {
                let right = if truth {
                    Verdict::Counterfeit
                } else {
                    Verdict::Genuine
                };
                careful.observe(truth, right, 1.0);
                stats.record_gold(truth, true);
            }
            if round % 10 == 9 {
                careful.observe(false, Verdict::Counterfeit, 1.0);
                stats.record_gold(false, false);
            }
            rates.push(policy.rate(&careful, &stats, &abuse, &ReliabilityPrior::default()));
        }
        // Falling (an occasional wrong answer may lift it for a while), never
        // above a newcomer's, and at the floor once both classes are known.
        assert!(rates.iter().all(|r| *r < newcomer), "{rates:?}");
        assert!(rates[3] < rates[0] && rates[0] < newcomer, "{rates:?}");
        assert!(rates[10..].iter().all(|r| *r == policy.floor), "{rates:?}");
    }

    #[test]
    fn a_volunteer_failing_gold_sees_more_of_it_than_a_newcomer() {
        let (policy, abuse) = (GoldPolicy::default(), AbusePolicy::default());
        let newcomer = policy.rate(
            &Confusion::default(),
            &VolunteerStats::default(),
            &abuse,
            &ReliabilityPrior::default(),
        );
        let mut c = Confusion::default();
        c.observe(true, Verdict::Genuine, 4.0);
        c.observe(false, Verdict::Genuine, 4.0);
        let failing = policy.rate(
            &c,
            &tallies((4, 4), (4, 0)),
            &abuse,
            &ReliabilityPrior::default(),
        );
        assert!(failing > newcomer, "{failing} vs {newcomer}");
        assert!(policy.spammer_risk(&abuse, &tallies((4, 4), (4, 0))) > 0.5);
    }

    #[test]
    fn gold_leans_to_the_class_still_unknown_within_bounds() {
        let policy = GoldPolicy::default();
        assert_eq!(policy.counterfeit_share(&Confusion::default()), 0.5);
        let mut c = Confusion::default();
        c.observe(false, Verdict::Genuine, 100.0);
        assert_eq!(policy.counterfeit_share(&c), 0.75);
        c.observe(true, Verdict::Counterfeit, 400.0);
        assert_eq!(policy.counterfeit_share(&c), 0.25);
        let draws = (0..4000)
            .filter(|n| is_counterfeit_gold(b"k", b"v", *n, 0.75))
            .count();
        assert!((2850..3150).contains(&draws), "{draws}");
        let turns: Vec<bool> = (0..64).map(|n| is_gold_turn(b"k", b"v", n, 0.5)).collect();
        let classes: Vec<bool> = (0..64)
            .map(|n| is_counterfeit_gold(b"k", b"v", n, 0.5))
            .collect();
        assert_ne!(turns, classes);
    }

    proptest! {
        #[test]
        fn the_gold_rate_never_drops_below_the_floor(
            cells in prop::array::uniform6(0.0..1e6f64),
            g in (0u32..500, 0u32..500),
            c in (0u32..500, 0u32..500),
            floor in 0.001..0.2f64,
        ) {
            let policy = GoldPolicy { floor, ..Default::default() };
            let mut confusion = Confusion::default();
            for (i, w) in cells.iter().enumerate() {
                let v = [Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure][i % 3];
                confusion.observe(i >= 3, v, *w);
            }
            let stats = tallies((g.0.max(g.1), g.0.min(g.1)), (c.0.max(c.1), c.0.min(c.1)));
            let rate = policy.rate(
                &confusion,
                &stats,
                &AbusePolicy::default(),
                &ReliabilityPrior::default(),
            );
            prop_assert!(rate >= floor && rate <= 1.0, "{rate}");
        }
    }
}
