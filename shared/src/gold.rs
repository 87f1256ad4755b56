//! Gold tasks: listings whose truth staff already know, mixed into a
//! volunteer's work to measure them, and the feedback they get after one.
//!
//! A newcomer sees many gold tasks (their reliability is unknown). The share
//! then falls, either with experience alone ([`GoldSchedule`]) or with what is
//! still unknown about the volunteer: how uncertain their confusion estimate
//! is and how likely they are a spammer ([`GoldPolicy`]); both keep a floor
//! that goes on measuring everyone. Whether
//! a given claim is a gold turn is a keyed hash of (volunteer, claim number),
//! so every replica of the service takes the same decision without talking.

use crate::abuse::{AbusePolicy, VolunteerStats};
use crate::aggregate::Verdict;
use crate::reliability::{Confusion, ReliabilityPrior};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

/// The share of claims that are gold, by experience.
///
/// `rate(n) = end_rate + (start_rate - end_rate) * 0.5^(n / half_life)`, where
/// `n` counts the volunteer's answers so far, gold and real alike. Defaults:
/// half of a newcomer's tasks are gold, halving the excess every 40 answers,
/// down to 1 in 20 (about 15 gold answers in the first 40, 24 in the first 80,
/// enough for the abuse rules to judge a spammer early).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GoldSchedule {
    /// The share of gold for a newcomer.
    pub start_rate: f64,
    /// The share it decays toward.
    pub end_rate: f64,
    /// Answers after which the share above `end_rate` has halved.
    pub half_life: f64,
}

impl Default for GoldSchedule {
    fn default() -> Self {
        GoldSchedule {
            start_rate: 0.5,
            end_rate: 0.05,
            half_life: 40.0,
        }
    }
}

/// A schedule that cannot be applied.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("gold schedule: need 0 <= end_rate <= start_rate <= 1 and a finite half_life > 0")]
pub struct InvalidSchedule;

impl GoldSchedule {
    /// Checks 0 <= end_rate <= start_rate <= 1 and 0 < half_life < infinity.
    pub fn validate(&self) -> Result<(), InvalidSchedule> {
        let rates_ok =
            0.0 <= self.end_rate && self.end_rate <= self.start_rate && self.start_rate <= 1.0;
        if rates_ok && self.half_life.is_finite() && self.half_life > 0.0 {
            Ok(())
        } else {
            Err(InvalidSchedule)
        }
    }

    /// The share of gold for a volunteer with `answers_so_far` answers; never
    /// increases with experience and stays within [end_rate, start_rate].
    pub fn rate(&self, answers_so_far: u64) -> f64 {
        let decay = 0.5f64.powf(answers_so_far as f64 / self.half_life);
        let rate = self.end_rate + (self.start_rate - self.end_rate) * decay;
        rate.clamp(self.end_rate, self.start_rate)
    }
}

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
/// stopped, and the draw stays the keyed [`is_gold_turn`].
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

/// Whether `volunteer`'s gold turn number `claim_number` should be a
/// counterfeit listing, at `share` ([`GoldPolicy::counterfeit_share`]): the
/// same keyed draw as [`is_gold_turn`], on a separate domain so the two draws
/// are independent.
pub fn is_counterfeit_gold(key: &[u8], volunteer: &[u8], claim_number: u64, share: f64) -> bool {
    let mut tagged = b"gold-class:".to_vec();
    tagged.extend_from_slice(volunteer);
    is_gold_turn(key, &tagged, claim_number, share)
}

/// Whether `volunteer`'s claim number `claim_number` is a gold turn at `rate`.
///
/// HMAC-SHA256 under `key` of the volunteer id and the claim number, read as a
/// uniform number in [0, 1) and compared with `rate`: deterministic for the
/// same inputs, unpredictable to a volunteer who does not hold the key, and
/// gold on a `rate` share of claims in the long run.
pub fn is_gold_turn(key: &[u8], volunteer: &[u8], claim_number: u64, rate: f64) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    // The claim number is fixed-width and last, so no two inputs collide.
    mac.update(volunteer);
    mac.update(&claim_number.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable, uniform on a grid of [0, 1).
    let uniform = (u64::from_be_bytes(head) >> 11) as f64 / (1u64 << 53) as f64;
    uniform < rate
}

/// What a volunteer is told after answering a gold task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Whether their verdict matched the known truth ("unsure" does not).
    pub correct: bool,
    /// The known truth.
    pub expected: Verdict,
}

impl Feedback {
    /// The feedback on `given` for a gold task whose truth is `expected`.
    pub fn new(expected: Verdict, given: Verdict) -> Self {
        Feedback {
            correct: given == expected,
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_newcomer_gets_the_start_rate_and_a_veteran_nears_the_end_rate() {
        let s = GoldSchedule::default();
        s.validate().unwrap();
        assert_eq!(s.rate(0), 0.5);
        assert!((s.rate(40) - 0.275).abs() < 1e-12);
        assert!((s.rate(2000) - 0.05).abs() < 1e-9);
    }

    #[test]
    fn inconsistent_schedules_are_refused() {
        let base = GoldSchedule::default();
        for bad in [
            GoldSchedule {
                end_rate: 0.6,
                ..base
            },
            GoldSchedule {
                start_rate: 1.5,
                ..base
            },
            GoldSchedule {
                end_rate: -0.1,
                ..base
            },
            GoldSchedule {
                half_life: 0.0,
                ..base
            },
            GoldSchedule {
                half_life: f64::NAN,
                ..base
            },
        ] {
            assert_eq!(bad.validate(), Err(InvalidSchedule), "{bad:?}");
        }
    }

    #[test]
    fn the_gold_turn_is_deterministic_and_depends_on_key_volunteer_and_claim() {
        let turns = |key: &[u8], who: &[u8]| -> Vec<bool> {
            (0..64).map(|n| is_gold_turn(key, who, n, 0.5)).collect()
        };
        assert_eq!(turns(b"k", b"alice"), turns(b"k", b"alice"));
        assert_ne!(turns(b"k", b"alice"), turns(b"k", b"bob"));
        assert_ne!(turns(b"k", b"alice"), turns(b"other", b"alice"));
        assert!(!is_gold_turn(b"k", b"alice", 1, 0.0));
        assert!(is_gold_turn(b"k", b"alice", 1, 1.0));
    }

    #[test]
    fn feedback_is_correct_only_for_the_expected_verdict() {
        assert!(Feedback::new(Verdict::Counterfeit, Verdict::Counterfeit).correct);
        assert!(!Feedback::new(Verdict::Counterfeit, Verdict::Unsure).correct);
        let json =
            serde_json::to_string(&Feedback::new(Verdict::Genuine, Verdict::Counterfeit)).unwrap();
        assert_eq!(json, r#"{"correct":false,"expected":"genuine"}"#);
    }

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

    fn schedule() -> impl Strategy<Value = GoldSchedule> {
        (0.0..=1.0f64, 0.0..=1.0f64, 0.5..500.0f64).prop_map(|(a, b, half_life)| GoldSchedule {
            start_rate: a.max(b),
            end_rate: a.min(b),
            half_life,
        })
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

        #[test]
        fn the_rate_never_rises_and_stays_between_end_and_start(
            s in schedule(),
            n in 0u64..1_000_000,
            more in 0u64..10_000,
        ) {
            let now = s.rate(n);
            prop_assert!(s.end_rate <= now && now <= s.start_rate);
            prop_assert!(s.rate(n + more) <= now);
        }

        #[test]
        fn the_realised_share_of_gold_turns_is_close_to_the_rate(
            rate in 0.0..=1.0f64,
            key in prop::collection::vec(any::<u8>(), 1..32),
            who in any::<u128>(),
        ) {
            let claims = 4000u64;
            let gold = (0..claims)
                .filter(|n| is_gold_turn(&key, &who.to_be_bytes(), *n, rate))
                .count() as f64;
            // Five standard deviations of a binomial share, plus a little slack.
            let sd = (rate * (1.0 - rate) / claims as f64).sqrt();
            prop_assert!((gold / claims as f64 - rate).abs() <= 5.0 * sd + 1e-3);
        }
    }
}
