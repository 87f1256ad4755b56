//! Gold tasks: listings whose truth staff already know, mixed into a
//! volunteer's work to measure them, and the feedback they get after one.
//!
//! A newcomer sees many gold tasks (their reliability is unknown). The share
//! then falls, either with experience alone ([`GoldSchedule`]) or with what is
//! still unknown about the volunteer
//! ([`gold_rate::GoldPolicy`](crate::gold_rate::GoldPolicy)); both keep a
//! floor that goes on measuring everyone. Whether a given claim is a gold turn
//! is a keyed hash of (volunteer, claim number), so every replica of the
//! service takes the same decision without talking.

use crate::aggregate::Verdict;
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

/// Whether `volunteer`'s gold turn number `claim_number` should be a
/// counterfeit listing, at `share`
/// ([`GoldPolicy::counterfeit_share`](crate::gold_rate::GoldPolicy::counterfeit_share)): the
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    fn schedule() -> impl Strategy<Value = GoldSchedule> {
        (0.0..=1.0f64, 0.0..=1.0f64, 0.5..500.0f64).prop_map(|(a, b, half_life)| GoldSchedule {
            start_rate: a.max(b),
            end_rate: a.min(b),
            half_life,
        })
    }

    proptest! {
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
