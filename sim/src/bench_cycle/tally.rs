//! What a load phase records: every call completed inside the measured window
//! (after the warm-up), its latency, the outcome counts and errors by code;
//! each client keeps its own tally, merged once at the end, so recording takes no lock.

use crate::problem::ApiError;
use crate::stats::LatencySummary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The measured window of a phase: calls that complete inside it count.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// End of the warm-up.
    pub start: Instant,
    /// End of the measurement.
    pub end: Instant,
}

impl Window {
    /// A window that opens `warmup` from now and lasts `length`.
    pub fn after(warmup: Duration, length: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + length,
        }
    }

    /// Whether `t` falls inside it.
    pub fn contains(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }

    /// Its length in seconds.
    pub fn secs(&self) -> f64 {
        (self.end - self.start).as_secs_f64()
    }
}

/// Microseconds of a duration, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One client's record of the window.
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of granted claims.
    pub claim_us: Vec<u64>,
    /// Latency of accepted votes.
    pub vote_us: Vec<u64>,
    /// Latency of releases.
    pub release_us: Vec<u64>,
    /// Claims that granted a lease.
    pub granted: u64,
    /// Claims answered `204` (left out of the rates).
    pub empty: u64,
    /// Cycles completed: a granted claim and its vote (or release).
    pub cycles: u64,
    /// Failed calls by `<call> <status> <code>`.
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    /// Adds `other` to this one.
    pub fn merge(&mut self, other: Tally) {
        self.claim_us.extend(other.claim_us);
        self.vote_us.extend(other.vote_us);
        self.release_us.extend(other.release_us);
        self.granted += other.granted;
        self.empty += other.empty;
        self.cycles += other.cycles;
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
    }

    /// Records a failed `call`.
    pub fn error(&mut self, call: &str, e: &ApiError) {
        *self
            .errors
            .entry(format!("{call} {}", e.key()))
            .or_default() += 1;
    }

    /// The figures of the window.
    pub fn figures(mut self, window: &Window) -> LoadFigures {
        let secs = window.secs().max(f64::EPSILON);
        LoadFigures {
            window_secs: window.secs(),
            claims_granted: self.granted,
            claims_empty: self.empty,
            cycles: self.cycles,
            claims_per_sec: self.granted as f64 / secs,
            cycles_per_sec: self.cycles as f64 / secs,
            claim_ms: LatencySummary::from_micros(&mut self.claim_us),
            vote_ms: LatencySummary::from_micros(&mut self.vote_us),
            release_ms: LatencySummary::from_micros(&mut self.release_us),
            errors: self.errors,
        }
    }
}

/// What a load phase measured in its window.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    /// Length of the window.
    pub window_secs: f64,
    /// Claims granted in the window.
    pub claims_granted: u64,
    /// Claims answered `204` in the window.
    pub claims_empty: u64,
    /// Cycles completed in the window.
    pub cycles: u64,
    /// Granted claims a second.
    pub claims_per_sec: f64,
    /// Completed cycles a second.
    pub cycles_per_sec: f64,
    /// Latency of granted claims.
    pub claim_ms: Option<LatencySummary>,
    /// Latency of accepted votes.
    pub vote_ms: Option<LatencySummary>,
    /// Latency of releases.
    pub release_ms: Option<LatencySummary>,
    /// Failed calls by `<call> <status> <code>`.
    pub errors: BTreeMap<String, u64>,
}

impl LoadFigures {
    /// One line: rates, latencies and errors.
    pub fn line(&self) -> String {
        let lat = |name: &str, s: &Option<LatencySummary>| {
            s.as_ref().map_or(String::new(), |s| {
                format!(", {name} p50 {:.1} ms p99 {:.1} ms", s.p50_ms, s.p99_ms)
            })
        };
        let errors: u64 = self.errors.values().sum();
        format!(
            "{:.0} cycles/s, {:.0} claims/s ({} empty){}{}{}, {errors} errors",
            self.cycles_per_sec,
            self.claims_per_sec,
            self.claims_empty,
            lat("claim", &self.claim_ms),
            lat("vote", &self.vote_ms),
            lat("release", &self.release_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_merge_and_give_rates_over_the_window() {
        let window = Window::after(Duration::ZERO, Duration::from_secs(2));
        assert!(window.contains(window.start));
        assert!(!window.contains(window.end));
        let mut a = Tally {
            claim_us: vec![1000, 3000],
            granted: 2,
            cycles: 2,
            ..Tally::default()
        };
        let mut b = Tally {
            claim_us: vec![2000],
            granted: 1,
            cycles: 1,
            empty: 4,
            ..Tally::default()
        };
        b.error("vote", &ApiError::Transport("x".into()));
        a.merge(b);
        let f = a.figures(&window);
        assert_eq!((f.claims_granted, f.claims_empty, f.cycles), (3, 4, 3));
        assert_eq!(f.cycles_per_sec, 1.5);
        assert_eq!(f.claim_ms.unwrap().p50_ms, 2.0);
        assert_eq!(f.errors["vote transport"], 1);
        assert!(f.vote_ms.is_none());
    }
}
