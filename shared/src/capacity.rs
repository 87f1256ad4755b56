//! Capacity awareness: the backlog in hours of volunteer work, and how much to
//! throttle new tasks from the lowest-risk strata when it grows too long.
//!
//! Throttling multiplies a listing's inclusion probability by a factor before the
//! sampling draw, and the task records the probability actually used, so
//! inverse-probability estimates stay unbiased while fewer low-risk tasks are made.

use serde::{Deserialize, Serialize};

/// What the coordinator measured: the open work and the recent pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Votes that open tasks still need.
    pub open_votes: u64,
    /// Votes cast during the measuring window.
    pub votes_in_window: u64,
    /// Length of the measuring window in seconds.
    pub window_secs: u64,
}

impl Capacity {
    /// Recent throughput in votes per hour.
    pub fn votes_per_hour(&self) -> f64 {
        self.votes_in_window as f64 * 3600.0 / self.window_secs.max(1) as f64
    }

    /// The backlog as hours of work at the recent pace; `None` while fewer than
    /// `min_votes` votes were cast in the window (the pace is not known yet).
    pub fn backlog_hours(&self, min_votes: u64) -> Option<f64> {
        if self.votes_in_window < min_votes.max(1) {
            return None;
        }
        Some(self.open_votes as f64 / self.votes_per_hour())
    }
}

/// The staff's (operators') limits on the backlog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityPolicy {
    /// Above this many hours of backlog, new low-risk tasks are throttled.
    pub max_backlog_hours: f64,
    /// Seller risk tiers in the order they are throttled: lowest risk first.
    pub throttle_tiers: Vec<String>,
    /// The smallest factor a probability is multiplied by.
    pub min_factor: f64,
    /// Votes the window must hold before the pace counts as measured.
    pub min_window_votes: u64,
}

impl Default for CapacityPolicy {
    fn default() -> Self {
        Self {
            max_backlog_hours: 48.0,
            throttle_tiers: vec!["low".into(), "standard".into()],
            min_factor: 0.1,
            min_window_votes: 20,
        }
    }
}

/// How new tasks are throttled right now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Throttle {
    /// Backlog hours divided by the limit (0 when unknown).
    pub overload: f64,
    /// The factor applied to throttled listings (1 = none).
    pub factor: f64,
    /// The tiers being throttled, lowest risk first.
    pub tiers: Vec<String>,
}

impl Throttle {
    /// No throttling.
    pub fn none() -> Self {
        Self {
            overload: 0.0,
            factor: 1.0,
            tiers: Vec::new(),
        }
    }

    /// The throttle for a measured capacity. Each half-step of overload past the
    /// limit throttles one more tier (lowest risk first); the factor is the
    /// inverse of the overload, bounded below by `min_factor`.
    pub fn for_capacity(capacity: &Capacity, policy: &CapacityPolicy) -> Self {
        let Some(hours) = capacity.backlog_hours(policy.min_window_votes) else {
            return Self::none();
        };
        let overload = hours / policy.max_backlog_hours.max(f64::MIN_POSITIVE);
        if overload <= 1.0 || policy.throttle_tiers.is_empty() {
            return Self {
                overload,
                ..Self::none()
            };
        }
        let tiers =
            (((overload - 1.0) / 0.5).ceil() as usize).clamp(1, policy.throttle_tiers.len());
        Self {
            overload,
            factor: (1.0 / overload).max(policy.min_factor).min(1.0),
            tiers: policy.throttle_tiers[..tiers].to_vec(),
        }
    }

    /// The factor for a listing of `tier`: throttled tiers get the factor, and a
    /// listing raised by a risk signal is never throttled.
    pub fn factor_for(&self, tier: &str, boosted: bool) -> f64 {
        if boosted || !self.tiers.iter().any(|t| t == tier) {
            1.0
        } else {
            self.factor
        }
    }

    /// Whether anything is throttled.
    pub fn active(&self) -> bool {
        self.factor < 1.0 && !self.tiers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cap(open_votes: u64, votes_in_window: u64) -> Capacity {
        Capacity {
            open_votes,
            votes_in_window,
            window_secs: 3600,
        }
    }

    #[test]
    fn the_backlog_is_measured_in_hours_at_the_recent_pace() {
        assert_eq!(cap(600, 100).backlog_hours(20), Some(6.0));
        assert_eq!(
            cap(600, 10).backlog_hours(20),
            None,
            "too few votes to know the pace"
        );
        let half_hour = Capacity {
            window_secs: 1800,
            ..cap(600, 100)
        };
        assert_eq!(half_hour.votes_per_hour(), 200.0);
    }

    #[test]
    fn the_lowest_risk_tiers_are_throttled_first_and_high_risk_never() {
        let policy = CapacityPolicy {
            max_backlog_hours: 10.0,
            ..CapacityPolicy::default()
        };
        assert!(!Throttle::for_capacity(&cap(900, 100), &policy).active());
        let mild = Throttle::for_capacity(&cap(1200, 100), &policy);
        assert_eq!(mild.tiers, ["low"]);
        assert!((mild.factor - 1.0 / 1.2).abs() < 1e-12);
        assert_eq!(mild.factor_for("standard", false), 1.0);
        assert_eq!(
            mild.factor_for("low", true),
            1.0,
            "risk signals are never throttled"
        );
        let heavy = Throttle::for_capacity(&cap(100_000, 100), &policy);
        assert_eq!(heavy.tiers, ["low", "standard"]);
        assert_eq!(heavy.factor, policy.min_factor);
        assert_eq!(heavy.factor_for("high", false), 1.0);
        assert!(!Throttle::for_capacity(&cap(100_000, 5), &policy).active());
    }

    proptest! {
        #[test]
        fn more_backlog_never_throttles_less(a in 0u64..1_000_000, b in 0u64..1_000_000, pace in 20u64..10_000) {
            let policy = CapacityPolicy::default();
            let (lo, hi) = (a.min(b), a.max(b));
            let t_lo = Throttle::for_capacity(&cap(lo, pace), &policy);
            let t_hi = Throttle::for_capacity(&cap(hi, pace), &policy);
            prop_assert!(t_hi.factor <= t_lo.factor);
            prop_assert!(t_hi.tiers.len() >= t_lo.tiers.len());
            prop_assert!(t_hi.factor >= policy.min_factor && t_hi.factor <= 1.0);
        }
    }
}
