//! The benchmark's report: every headline figure with its unit and target, the
//! phases' details (errors by code, counts), warnings; written as JSON, read
//! back as "previous", and printed as a table of figure, this run, previous,
//! target and whether it is met.

use crate::bench_sampler::report::rate;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// What a figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Events a second.
    PerSec,
    /// Milliseconds.
    Ms,
    /// Seconds.
    Secs,
    /// Megabytes (MiB) of memory.
    Mb,
    /// A ratio of two rates.
    Ratio,
    /// A plain count.
    Count,
}

impl Unit {
    /// `x` written in this unit.
    pub fn show(self, x: f64) -> String {
        match self {
            Unit::PerSec => format!("{}/s", rate(x)),
            Unit::Ms if x < 10.0 => format!("{x:.2} ms"),
            Unit::Ms => format!("{x:.1} ms"),
            Unit::Secs => format!("{x:.1} s"),
            Unit::Mb => format!("{x:.1} MB"),
            Unit::Ratio => format!("{x:.2}x"),
            Unit::Count => rate(x),
        }
    }
}

/// What a figure should reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// At least this much.
    AtLeast(f64),
    /// Strictly below this.
    Below(f64),
}

impl Target {
    /// Whether `x` meets it.
    pub fn met(self, x: f64) -> bool {
        match self {
            Target::AtLeast(t) => x >= t,
            Target::Below(t) => x < t,
        }
    }

    fn show(self, unit: Unit) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", unit.show(t)),
            Target::Below(t) => format!("< {}", unit.show(t)),
        }
    }
}

/// One headline figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Stable key, e.g. `closed.cycles_per_sec`, matched against the previous report.
    pub key: String,
    /// What the table calls it.
    pub label: String,
    /// Its unit.
    pub unit: Unit,
    /// The value measured; `None` when the phase could not measure it.
    pub value: Option<f64>,
    /// Its target, if it has one.
    pub target: Option<Target>,
}

/// A whole run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How the stack and load were set up.
    pub setup: BTreeMap<String, Value>,
    /// The headline figures, in phase order.
    pub figures: Vec<Figure>,
    /// Each phase's details, by phase.
    pub details: BTreeMap<String, Value>,
    /// What did not go as planned.
    pub warnings: Vec<String>,
}

impl Report {
    /// Adds a figure; a value that is not finite is kept as "not measured".
    pub fn add(
        &mut self,
        key: &str,
        label: &str,
        unit: Unit,
        value: Option<f64>,
        target: Option<Target>,
    ) {
        self.figures.push(Figure {
            key: key.to_owned(),
            label: label.to_owned(),
            unit,
            value: value.filter(|v| v.is_finite()),
            target,
        });
    }

    /// Keeps a phase's details.
    pub fn detail(&mut self, phase: &str, details: impl Serialize) {
        let value = serde_json::to_value(details).unwrap_or(Value::Null);
        self.details.insert(phase.to_owned(), value);
    }

    /// Records and prints a warning.
    pub fn warn(&mut self, warning: String) {
        eprintln!("bench-cycle: warning: {warning}");
        self.warnings.push(warning);
    }

    /// Writes the report as pretty JSON, creating the directory if needed.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a report written by an earlier run.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The table of figures beside `previous`, then errors and warnings.
    pub fn table(&self, previous: Option<&Report>) -> String {
        let before = |key: &str| {
            previous
                .and_then(|p| p.figures.iter().find(|f| f.key == key))
                .and_then(|f| f.value)
        };
        let mut rows = vec![["figure", "this run", "previous", "target", "met?"].map(String::from)];
        for f in &self.figures {
            let show = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| f.unit.show(v));
            let met = match (f.target, f.value) {
                (None, _) => String::new(),
                (Some(_), None) => "n/a".into(),
                (Some(t), Some(v)) if t.met(v) => "yes".into(),
                (Some(_), Some(_)) => "NO".into(),
            };
            rows.push([
                f.label.clone(),
                show(f.value),
                if previous.is_some() {
                    show(before(&f.key))
                } else {
                    "-".into()
                },
                f.target.map_or(String::new(), |t| t.show(f.unit)),
                met,
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
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
        for (phase, details) in &self.details {
            if let Some(errors) = details.get("errors").and_then(Value::as_object) {
                let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                let list = if list.is_empty() {
                    "none".to_owned()
                } else {
                    list.join(", ")
                };
                let _ = writeln!(out, "errors in {phase}: {list}");
            }
        }
        for (phase, details) in &self.details {
            for (what, value) in details.as_object().into_iter().flatten() {
                if let Some(summary) = value.get("summary").and_then(Value::as_str) {
                    let _ = writeln!(out, "{phase} ({what}): {summary}");
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cycles: f64) -> Report {
        let mut r = Report::default();
        r.add(
            "closed.cycles_per_sec",
            "closed: cycles/s",
            Unit::PerSec,
            Some(cycles),
            Some(Target::AtLeast(4000.0)),
        );
        r.add(
            "open.claim_p99_ms",
            "open: claim p99",
            Unit::Ms,
            None,
            Some(Target::Below(25.0)),
        );
        r.add(
            "raw.redis_ping_p50_ms",
            "raw: PING p50",
            Unit::Ms,
            Some(0.08),
            None,
        );
        r
    }

    #[test]
    fn targets_are_met_at_or_above_and_strictly_below() {
        assert!(Target::AtLeast(2.0).met(2.0));
        assert!(!Target::Below(25.0).met(25.0));
        assert!(Target::Below(25.0).met(24.9));
    }

    #[test]
    fn the_table_shows_this_run_beside_the_previous_one() {
        let mut now = report(4500.0);
        now.detail(
            "closed",
            serde_json::json!({"errors": {"vote 409 lease_expired": 3}}),
        );
        now.warn("the queue ran dry".into());
        let text = now.table(Some(&report(250.0)));
        let closed = text.lines().find(|l| l.starts_with("closed")).unwrap();
        assert!(
            closed.contains("4,500/s") && closed.contains("250/s"),
            "{closed}"
        );
        assert!(closed.trim_end().ends_with("yes"), "{closed}");
        let open = text.lines().find(|l| l.starts_with("open")).unwrap();
        assert!(open.trim_end().ends_with("n/a"), "{open}");
        assert!(
            text.contains("errors in closed: vote 409 lease_expired: 3"),
            "{text}"
        );
        assert!(text.contains("warning: the queue ran dry"));
        let mut quiet = report(1.0);
        quiet.detail("open", serde_json::json!({"errors": {}}));
        assert!(quiet.table(None).contains("errors in open: none"));
    }

    #[test]
    fn a_report_survives_its_json_round_trip() {
        let dir = std::env::temp_dir().join(format!("benchc-report-{}", std::process::id()));
        let path = dir.join("r.json");
        let mut r = report(1.0);
        r.add("x", "nan", Unit::Count, Some(f64::NAN), None);
        r.write(&path).unwrap();
        let back = Report::read(&path).unwrap();
        assert_eq!(back.figures, r.figures);
        assert_eq!(back.figures[3].value, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
