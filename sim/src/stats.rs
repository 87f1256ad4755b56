//! What the simulator measures: latency of every call by kind, outcomes and
//! errors by status and problem code, and the report printed at the end.

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// The kinds of API call whose latency is recorded separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// `POST /v1/auth/login`.
    Login,
    /// `POST /v1/auth/refresh`.
    Refresh,
    /// `POST /v1/staff/users`.
    CreateUser,
    /// `POST /v1/tasks/claim`.
    Claim,
    /// `POST /v1/tasks/{id}/votes`.
    Vote,
    /// `POST /v1/tasks/{id}/release`.
    Release,
    /// The staff routes read by the demo (stats, escalations).
    Staff,
}

impl CallKind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Login => "login",
            CallKind::Refresh => "refresh",
            CallKind::CreateUser => "create_user",
            CallKind::Claim => "claim",
            CallKind::Vote => "vote",
            CallKind::Release => "release",
            CallKind::Staff => "staff",
        }
    }
}

/// The value at quantile `q` (0 to 1) of ascending `sorted`, by nearest rank.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Latency figures of one kind of call, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Calls measured.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest call.
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises latencies given in microseconds (sorts them in place).
    pub fn from_micros(samples: &mut [u64]) -> Option<Self> {
        samples.sort_unstable();
        let ms = |q: f64| percentile(samples, q).map(|us| us as f64 / 1000.0);
        Some(Self {
            count: samples.len(),
            p50_ms: ms(0.5)?,
            p99_ms: ms(0.99)?,
            max_ms: ms(1.0)?,
        })
    }
}

#[derive(Debug, Default)]
struct Tally {
    latencies: BTreeMap<CallKind, Vec<u64>>,
    errors: BTreeMap<String, u64>,
    granted: u64,
    empty: u64,
    votes: u64,
    voted_listings: HashSet<String>,
}

/// Shared by every volunteer task; each lock is held for a push, never across `.await`.
#[derive(Debug, Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Tally) -> T) -> T {
        // A panicking volunteer must not hide everyone else's figures.
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tally)
    }

    /// Records how long one call took, whatever its outcome.
    pub fn latency(&self, kind: CallKind, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.with(|t| t.latencies.entry(kind).or_default().push(us));
    }

    /// Records a failed call under `key` (e.g. `claim 429 rate_limited`).
    pub fn error(&self, key: String) {
        self.with(|t| *t.errors.entry(key).or_default() += 1);
    }

    /// Records a claim that granted a lease.
    pub fn granted(&self) {
        self.with(|t| t.granted += 1);
    }

    /// Records a claim answered `204`: nothing available.
    pub fn empty_claim(&self) {
        self.with(|t| t.empty += 1);
    }

    /// Records an accepted vote on `listing_id`.
    pub fn vote(&self, listing_id: &str) {
        self.with(|t| {
            t.votes += 1;
            t.voted_listings.insert(listing_id.to_owned());
        });
    }

    /// The listings the simulator has voted on so far.
    pub fn voted_listings(&self) -> HashSet<String> {
        self.with(|t| t.voted_listings.clone())
    }

    /// Granted claims, empty claims, votes and errors so far.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        self.with(|t| (t.granted, t.empty, t.votes, t.errors.values().sum()))
    }

    /// The report of everything recorded, over a run of `elapsed`.
    pub fn report(&self, volunteers: usize, elapsed: Duration) -> Report {
        self.with(|t| {
            let secs = elapsed.as_secs_f64().max(f64::EPSILON);
            let latency_ms = t
                .latencies
                .iter_mut()
                .filter_map(|(kind, samples)| {
                    let summary = LatencySummary::from_micros(samples)?;
                    Some((kind.as_str().to_owned(), summary))
                })
                .collect();
            Report {
                volunteers,
                duration_secs: elapsed.as_secs_f64(),
                claims_granted: t.granted,
                claims_empty: t.empty,
                votes: t.votes,
                claims_per_sec: t.granted as f64 / secs,
                votes_per_sec: t.votes as f64 / secs,
                errors: t.errors.clone(),
                latency_ms,
            }
        })
    }
}

/// The load figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Simulated volunteers.
    pub volunteers: usize,
    /// Wall-clock length of the run.
    pub duration_secs: f64,
    /// Claims that granted a lease.
    pub claims_granted: u64,
    /// Claims answered `204`.
    pub claims_empty: u64,
    /// Votes accepted (`201`).
    pub votes: u64,
    /// Granted claims per second.
    pub claims_per_sec: f64,
    /// Accepted votes per second.
    pub votes_per_sec: f64,
    /// Failed calls by `<call> <status> <code>`.
    pub errors: BTreeMap<String, u64>,
    /// Latency by call kind.
    pub latency_ms: BTreeMap<String, LatencySummary>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} volunteers over {:.1} s",
            self.volunteers, self.duration_secs
        )?;
        writeln!(
            f,
            "  claims granted {} ({:.1}/s), empty claims {}, votes {} ({:.1}/s)",
            self.claims_granted,
            self.claims_per_sec,
            self.claims_empty,
            self.votes,
            self.votes_per_sec
        )?;
        if self.errors.is_empty() {
            writeln!(f, "  errors: none")?;
        } else {
            writeln!(f, "  errors:")?;
            for (key, n) in &self.errors {
                writeln!(f, "    {key}: {n}")?;
            }
        }
        writeln!(f, "  latency (ms)      count      p50      p99      max")?;
        for (kind, s) in &self.latency_ms {
            writeln!(
                f,
                "    {kind:<12} {:>9} {:>8.1} {:>8.1} {:>8.1}",
                s.count, s.p50_ms, s.p99_ms, s.max_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_summary_sorts_its_samples_and_reports_milliseconds() {
        let mut us = vec![3000, 1000, 2000];
        let s = LatencySummary::from_micros(&mut us).unwrap();
        assert_eq!((s.count, s.p50_ms, s.p99_ms, s.max_ms), (3, 2.0, 3.0, 3.0));
        assert!(LatencySummary::from_micros(&mut []).is_none());
    }

    #[test]
    fn the_report_counts_outcomes_and_rates() {
        let rec = Recorder::default();
        rec.granted();
        rec.granted();
        rec.empty_claim();
        rec.vote("L1");
        rec.vote("L1");
        rec.error("vote 409 lease_expired".into());
        rec.latency(CallKind::Claim, Duration::from_millis(4));
        let r = rec.report(2, Duration::from_secs(2));
        assert_eq!((r.claims_granted, r.claims_empty, r.votes), (2, 1, 2));
        assert_eq!(r.votes_per_sec, 1.0);
        assert_eq!(r.errors["vote 409 lease_expired"], 1);
        assert_eq!(r.latency_ms["claim"].max_ms, 4.0);
        assert_eq!(rec.voted_listings().len(), 1);
    }
}
