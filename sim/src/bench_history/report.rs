//! The history benchmark's report: both measurements in full, the seeding,
//! and one table of figure, empty, with history, their ratio, the target and
//! whether the history figure meets it; written as JSON.

use super::jobs::{JOBS, OWN_RATE};
use super::phase::PhaseFigures;
use super::staff::ROUTES;
use crate::bench_cycle::report::{Target, Unit};
use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// With history, a rate may lose at most this share, a latency grow at most by it.
pub const DRIFT: f64 = 0.10;
/// Every staff route's p99 with history, ms.
pub const STAFF_P99_MS: f64 = 200.0;
/// Every periodic job but the two with a rate of their own, ms a run.
pub const JOB_MAX_MS: f64 = 100.0;

/// What a figure with history must do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// With history over empty at least this.
    RatioAtLeast(f64),
    /// With history over empty at most this.
    RatioAtMost(f64),
    /// The figure with history against a fixed target.
    Fixed(Target),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Stable key, e.g. `load.cycles_per_sec`.
    pub key: String,
    /// What the table calls it.
    pub label: String,
    /// Its unit.
    pub unit: Unit,
    /// On the empty database.
    pub empty: Option<f64>,
    /// With the history.
    pub history: Option<f64>,
    /// What the history figure must do.
    pub goal: Option<Goal>,
}

impl Row {
    /// With history over empty.
    pub fn ratio(&self) -> Option<f64> {
        match (self.empty, self.history) {
            (Some(e), Some(h)) if e != 0.0 => Some(h / e),
            _ => None,
        }
    }

    /// Whether the goal is met; `None` without a goal or a figure to judge.
    pub fn met(&self) -> Option<bool> {
        match self.goal? {
            Goal::RatioAtLeast(x) => self.ratio().map(|r| r >= x),
            Goal::RatioAtMost(x) => self.ratio().map(|r| r <= x),
            Goal::Fixed(t) => self.history.map(|h| t.met(h)),
        }
    }

    fn show_goal(&self) -> String {
        match self.goal {
            None => String::new(),
            Some(Goal::RatioAtLeast(x)) => format!("ratio >= {x:.2}"),
            Some(Goal::RatioAtMost(x)) => format!("ratio <= {x:.2}"),
            Some(Goal::Fixed(Target::AtLeast(t))) => format!(">= {}", self.unit.show(t)),
            Some(Goal::Fixed(Target::Below(t))) => format!("< {}", self.unit.show(t)),
        }
    }
}

/// A whole run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How it was set up, the stack's id among it.
    pub setup: BTreeMap<String, Value>,
    /// On the empty database.
    pub empty: Option<PhaseFigures>,
    /// What seed-history wrote and how long it took.
    pub seed: Option<Value>,
    /// With the history.
    pub history: Option<PhaseFigures>,
    /// The table's rows.
    pub rows: Vec<Row>,
    /// What did not go as planned.
    pub warnings: Vec<String>,
}

impl Report {
    /// Fills the rows from the two measurements.
    pub fn tabulate(&mut self) {
        self.rows = rows(self.empty.as_ref(), self.history.as_ref());
    }

    /// Writes the report as pretty JSON, creating the directory if needed.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// The table, then the warnings.
    pub fn table(&self) -> String {
        let mut lines =
            vec![["figure", "empty", "with history", "ratio", "target", "met?"].map(String::from)];
        for row in &self.rows {
            let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| row.unit.show(v));
            let met = match (row.goal, row.met()) {
                (None, _) => String::new(),
                (Some(_), None) => "n/a".into(),
                (Some(_), Some(true)) => "yes".into(),
                (Some(_), Some(false)) => "NO".into(),
            };
            lines.push([
                row.label.clone(),
                show(row.empty),
                show(row.history),
                row.ratio().map_or(String::new(), |r| format!("{r:.2}")),
                row.show_goal(),
                met,
            ]);
        }
        let mut out = String::new();
        let widths: Vec<usize> = (0..6)
            .map(|c| {
                lines
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, w))| match c {
                    0 => format!("{cell:<w$}"),
                    _ => format!("{cell:>w$}"),
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join(" | ").trim_end());
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "{}", rule.join("-|-"));
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// The rows of the table, in a fixed order, whichever measurements exist.
pub fn rows(empty: Option<&PhaseFigures>, history: Option<&PhaseFigures>) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut add =
        |key: String, label: String, unit, pick: &dyn Fn(&PhaseFigures) -> Option<f64>, goal| {
            rows.push(Row {
                key,
                label,
                unit,
                empty: empty.and_then(pick),
                history: history.and_then(pick),
                goal,
            });
        };
    let within_rate = Some(Goal::RatioAtLeast(1.0 - DRIFT));
    let within_latency = Some(Goal::RatioAtMost(1.0 + DRIFT));
    add(
        "size.votes".into(),
        "votes in the database".into(),
        Unit::Count,
        &|p| Some(p.size.votes as f64),
        None,
    );
    add(
        "size.listings".into(),
        "listings in the database".into(),
        Unit::Count,
        &|p| Some(p.size.listings as f64),
        None,
    );
    add(
        "load.cycles_per_sec".into(),
        "closed loop: claim-and-vote cycles/s".into(),
        Unit::PerSec,
        &|p| Some(p.load.cycles_per_sec),
        within_rate,
    );
    add(
        "load.claim_p99_ms".into(),
        "closed loop: claim p99".into(),
        Unit::Ms,
        &|p| p.load.claim_ms.as_ref().map(|s| s.p99_ms),
        within_latency,
    );
    add(
        "load.vote_p99_ms".into(),
        "closed loop: vote p99".into(),
        Unit::Ms,
        &|p| p.load.vote_ms.as_ref().map(|s| s.p99_ms),
        within_latency,
    );
    for route in ROUTES {
        add(
            format!("staff.{route}.p99_ms"),
            format!("GET {route} p99"),
            Unit::Ms,
            &|p| p.staff.get(route).map(|s| s.p99_ms),
            Some(Goal::Fixed(Target::Below(STAFF_P99_MS))),
        );
    }
    for job in JOBS {
        let limit = (!OWN_RATE.contains(&job)).then_some(Goal::Fixed(Target::Below(JOB_MAX_MS)));
        add(
            format!("jobs.{job}.runs"),
            format!("job {job}: runs"),
            Unit::Count,
            &|p| p.jobs.get(job).map(|f| f.runs as f64),
            None,
        );
        add(
            format!("jobs.{job}.mean_ms"),
            format!("job {job}: mean a run"),
            Unit::Ms,
            &|p| p.jobs.get(job).and_then(|f| f.mean_ms),
            None,
        );
        add(
            format!("jobs.{job}.max_ms"),
            format!("job {job}: longest run"),
            Unit::Ms,
            &|p| p.jobs.get(job).and_then(|f| f.max_ms),
            limit,
        );
    }
    add(
        "sweep.per_sec".into(),
        "round sweep: listings covered/s (in batches)".into(),
        Unit::PerSec,
        &|p| p.sweep.per_sec,
        None,
    );
    add(
        "sweep.batch_mean_ms".into(),
        "round sweep: mean a batch".into(),
        Unit::Ms,
        &|p| p.sweep.batches.mean_ms,
        None,
    );
    add(
        "sweep.secs_for_10m".into(),
        "round sweep: 10 M listings take".into(),
        Unit::Secs,
        &|p| p.sweep.secs_for_target,
        Some(Goal::Fixed(Target::Below(tenth_of_round()))),
    );
    add(
        "recalibration.votes_per_sec".into(),
        "recalibration: votes read/s".into(),
        Unit::PerSec,
        &|p| p.recalibrations.votes_per_sec,
        None,
    );
    rows
}

fn tenth_of_round() -> f64 {
    crate::bench_cycle::ROUND_SECS as f64 / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unit: Unit, empty: f64, history: f64, goal: Goal) -> Row {
        Row {
            key: "k".into(),
            label: "figure".into(),
            unit,
            empty: Some(empty),
            history: Some(history),
            goal: Some(goal),
        }
    }

    #[test]
    fn ratio_goals_judge_history_against_empty_and_fixed_goals_the_history_alone() {
        let rate = Goal::RatioAtLeast(1.0 - DRIFT);
        assert_eq!(row(Unit::PerSec, 1000.0, 905.0, rate).met(), Some(true));
        assert_eq!(row(Unit::PerSec, 1000.0, 850.0, rate).met(), Some(false));
        let latency = Goal::RatioAtMost(1.0 + DRIFT);
        assert_eq!(row(Unit::Ms, 10.0, 10.9, latency).met(), Some(true));
        assert_eq!(row(Unit::Ms, 10.0, 12.0, latency).met(), Some(false));
        let staff = Goal::Fixed(Target::Below(STAFF_P99_MS));
        assert_eq!(row(Unit::Ms, 500.0, 150.0, staff).met(), Some(true));
        let mut missing = row(Unit::Ms, 10.0, 0.0, staff);
        missing.history = None;
        assert_eq!((missing.met(), missing.ratio()), (None, None));
    }

    #[test]
    fn without_measurements_every_row_is_there_and_the_table_says_n_a() {
        let mut report = Report {
            rows: rows(None, None),
            ..Report::default()
        };
        report.warnings.push("the run stopped early".into());
        let keys: Vec<&str> = report.rows.iter().map(|r| r.key.as_str()).collect();
        assert!(keys.contains(&"load.cycles_per_sec"));
        assert!(keys.contains(&"staff./v1/staff/volunteers.p99_ms"));
        assert!(
            JOBS.iter()
                .all(|j| keys.contains(&format!("jobs.{j}.max_ms").as_str()))
        );
        let own_rate = report
            .rows
            .iter()
            .find(|r| r.key == "jobs.round_sweep.max_ms");
        assert_eq!(own_rate.unwrap().goal, None);
        let text = report.table();
        let cycles = text.lines().find(|l| l.contains("cycles/s")).unwrap();
        assert!(
            cycles.contains("n/a") && cycles.contains("ratio >= 0.90"),
            "{cycles}"
        );
        assert!(text.ends_with("warning: the run stopped early\n"));
    }
}
