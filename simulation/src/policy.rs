//! The ways of deciding that the crowd benchmark compares: fixed redundancy
//! and the two adaptive policies, today's and the new one, as settings the
//! engine ([`arena`](crate::arena)) plays.

use spotcheck_shared::abuse::{AbusePolicy, SOFT_STOP_MARGIN};
use spotcheck_shared::agreement::AgreementParams;
use spotcheck_shared::decision::learned_thresholds;
use spotcheck_shared::difficulty::DifficultyRule;
use spotcheck_shared::gold::GoldSchedule;
use spotcheck_shared::gold_rate::GoldPolicy;
use spotcheck_shared::posterior::{DEFAULT_PRIOR_COUNTERFEIT, RiskThresholds};
use spotcheck_shared::reliability::ReliabilityPrior;

/// How an adaptive policy chooses gold turns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GoldRule {
    /// By experience alone (today's rule).
    Schedule(GoldSchedule),
    /// By the uncertainty of the estimate and spammer risk.
    Uncertainty(GoldPolicy),
}

/// An adaptive policy's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Adaptive {
    /// The name in reports.
    pub name: &'static str,
    /// Prior P(counterfeit).
    pub prior: f64,
    /// A newcomer's reliability.
    pub reliability: ReliabilityPrior,
    /// Stopping rules by business risk.
    pub thresholds: RiskThresholds,
    /// Who gets stopped from counting.
    pub abuse: AbusePolicy,
    /// When a claim is a gold turn.
    pub gold: GoldRule,
    /// Learning from agreement with decided tasks (`None`: gold and staff only).
    pub agreement: Option<AgreementParams>,
    /// How disagreement among careful voters asks for more votes.
    pub difficulty: DifficultyRule,
    /// Also stop on the whole confusion estimate, at this many nats above the
    /// gold tests' bar (`None`: gold tallies alone).
    pub soft_stop_margin: Option<f64>,
    /// Whether staff verdicts on escalated tasks teach their voters' estimates.
    pub staff_feedback: bool,
}

impl Adaptive {
    /// The policy the services run today.
    pub fn today() -> Self {
        Adaptive {
            name: "adaptive today",
            prior: DEFAULT_PRIOR_COUNTERFEIT,
            reliability: ReliabilityPrior::default(),
            thresholds: RiskThresholds::default(),
            abuse: AbusePolicy::default(),
            gold: GoldRule::Schedule(GoldSchedule::default()),
            agreement: None,
            difficulty: DifficultyRule::NONE,
            soft_stop_margin: None,
            staff_feedback: true,
        }
    }

    /// The new policy, with the settings the services run (each defined once,
    /// in `shared`): gold by uncertainty and spammer risk
    /// ([`GoldPolicy::default`]), agreement learning on audit tasks
    /// ([`AgreementParams::default`]), difficulty ([`DifficultyRule::LEARNED`]),
    /// a stopping rule that lets clear-cut tasks end at two votes
    /// ([`learned_thresholds`]), and abuse tests tuned for asymmetric
    /// volunteers ([`AbusePolicy::learned`], the whole estimate consulted
    /// [`SOFT_STOP_MARGIN`] nats above the bar).
    pub fn learned() -> Self {
        Adaptive {
            name: "adaptive new",
            prior: DEFAULT_PRIOR_COUNTERFEIT,
            reliability: ReliabilityPrior::default(),
            thresholds: learned_thresholds(),
            abuse: AbusePolicy::learned(),
            gold: GoldRule::Uncertainty(GoldPolicy::default()),
            agreement: Some(AgreementParams::default()),
            difficulty: DifficultyRule::LEARNED,
            soft_stop_margin: Some(SOFT_STOP_MARGIN),
            staff_feedback: true,
        }
    }
}

/// A way of deciding tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// `k` votes, strict majority.
    Majority(u32),
    /// `k` votes, labels from Dawid–Skene over all of them at the end.
    DawidSkene(u32),
    /// Votes until the posterior is confident.
    Adaptive(Box<Adaptive>),
}

impl Policy {
    /// The name in reports.
    pub fn name(&self) -> String {
        match self {
            Policy::Majority(k) => format!("majority-{k}"),
            Policy::DawidSkene(k) => format!("dawid-skene-{k}"),
            Policy::Adaptive(a) => a.name.to_string(),
        }
    }
}
