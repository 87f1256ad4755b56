//! The figures of a sampler benchmark run, their medians and the printed table.

use std::fmt::Write;
use std::time::Duration;

/// What one run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFigures {
    /// Listings ingested (each stored and given a sampling decision).
    pub listings: u64,
    /// Tasks created (listings sampled in).
    pub tasks: u64,
    /// Slot offers written to the outbox and published by the relay.
    pub offers: u64,
    /// Time of the ingest phase (`import_file`).
    pub ingest: Duration,
    /// Time of the relay phase (`relay_once` until the outbox is empty).
    pub relay: Duration,
    /// Time to publish as many slot-offer-sized messages with confirms, without a database.
    pub raw: Duration,
}

fn per_sec(count: u64, time: Duration) -> f64 {
    if count == 0 || time.is_zero() {
        return 0.0;
    }
    count as f64 / time.as_secs_f64()
}

impl RunFigures {
    /// Listings sampled per second of the ingest phase.
    pub fn listings_per_sec(&self) -> f64 {
        per_sec(self.listings, self.ingest)
    }
    /// Tasks published per second of the relay phase.
    pub fn tasks_per_sec(&self) -> f64 {
        per_sec(self.tasks, self.relay)
    }
    /// Slot offers published per second of the relay phase.
    pub fn offers_per_sec(&self) -> f64 {
        per_sec(self.offers, self.relay)
    }
    /// Listings per second from the first listing read to the last offer confirmed.
    pub fn end_to_end_listings_per_sec(&self) -> f64 {
        per_sec(self.listings, self.ingest + self.relay)
    }
    /// Slot offers per second from the first listing read to the last offer confirmed.
    pub fn end_to_end_offers_per_sec(&self) -> f64 {
        per_sec(self.offers, self.ingest + self.relay)
    }
    /// Raw publishes with confirms per second.
    pub fn raw_per_sec(&self) -> f64 {
        per_sec(self.offers, self.raw)
    }
    /// Relay offers/s over raw publish-with-confirms/s (NaN without offers).
    pub fn relay_ratio(&self) -> f64 {
        self.offers_per_sec() / self.raw_per_sec()
    }
    /// End-to-end offers/s over raw publish-with-confirms/s (NaN without offers).
    pub fn end_to_end_ratio(&self) -> f64 {
        self.end_to_end_offers_per_sec() / self.raw_per_sec()
    }
}

/// The median of `values` (the mean of the two middle ones for an even count);
/// NaN values are left out, and NaN comes back when nothing is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// A rate with thousands separators, or `n/a`.
pub fn rate(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", x.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::from(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "n/a".into()
    }
}

const HEADER: [&str; 11] = [
    "run",
    "tasks",
    "offers",
    "ingest s",
    "listings sampled/s",
    "relay s",
    "tasks published/s",
    "offers published/s",
    "end-to-end listings/s",
    "raw confirms msg/s",
    "offers/raw",
];

/// The table: one line per run, then the medians, then the headline figures.
pub fn table(runs: &[RunFigures]) -> String {
    let mut lines: Vec<[String; 11]> = vec![HEADER.map(str::to_owned)];
    for (i, f) in runs.iter().enumerate() {
        lines.push([
            (i + 1).to_string(),
            f.tasks.to_string(),
            f.offers.to_string(),
            format!("{:.2}", f.ingest.as_secs_f64()),
            rate(f.listings_per_sec()),
            format!("{:.2}", f.relay.as_secs_f64()),
            rate(f.tasks_per_sec()),
            rate(f.offers_per_sec()),
            rate(f.end_to_end_listings_per_sec()),
            rate(f.raw_per_sec()),
            ratio(f.relay_ratio()),
        ]);
    }
    let m = |pick: fn(&RunFigures) -> f64| median(runs.iter().map(pick));
    let summary = Summary::of(runs);
    lines.push([
        "median".into(),
        format!("{:.0}", m(|f| f.tasks as f64)),
        format!("{:.0}", m(|f| f.offers as f64)),
        format!("{:.2}", m(|f| f.ingest.as_secs_f64())),
        rate(summary.listings_per_sec),
        format!("{:.2}", m(|f| f.relay.as_secs_f64())),
        rate(summary.tasks_per_sec),
        rate(summary.offers_per_sec),
        rate(summary.end_to_end_listings_per_sec),
        rate(summary.raw_per_sec),
        ratio(summary.relay_ratio),
    ]);
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:>w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  "));
    }
    let _ = writeln!(
        out,
        "\nlistings sampled/s (ingest, median): {}",
        rate(summary.listings_per_sec)
    );
    let _ = writeln!(
        out,
        "sampler offers published/s ÷ raw publish-with-confirms/s (median of runs): {} ÷ {} = {}",
        rate(summary.offers_per_sec),
        rate(summary.raw_per_sec),
        ratio(summary.relay_ratio)
    );
    let _ = writeln!(
        out,
        "end to end (ingest + relay), offers/s ÷ raw publish-with-confirms/s (median of runs): {} ÷ {} = {}",
        rate(summary.end_to_end_offers_per_sec),
        rate(summary.raw_per_sec),
        ratio(summary.end_to_end_ratio)
    );
    out
}

/// The medians over the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Listings sampled per second (ingest phase).
    pub listings_per_sec: f64,
    /// Tasks published per second (relay phase).
    pub tasks_per_sec: f64,
    /// Slot offers published per second (relay phase).
    pub offers_per_sec: f64,
    /// Listings per second, ingest and relay together.
    pub end_to_end_listings_per_sec: f64,
    /// Slot offers per second, ingest and relay together.
    pub end_to_end_offers_per_sec: f64,
    /// Raw publishes with confirms per second.
    pub raw_per_sec: f64,
    /// Median of the runs' relay offers/s over raw publishes/s.
    pub relay_ratio: f64,
    /// Median of the runs' end-to-end offers/s over raw publishes/s.
    pub end_to_end_ratio: f64,
}

impl Summary {
    /// The medians of `runs`.
    pub fn of(runs: &[RunFigures]) -> Self {
        let m = |pick: fn(&RunFigures) -> f64| median(runs.iter().map(pick));
        Self {
            listings_per_sec: m(RunFigures::listings_per_sec),
            tasks_per_sec: m(RunFigures::tasks_per_sec),
            offers_per_sec: m(RunFigures::offers_per_sec),
            end_to_end_listings_per_sec: m(RunFigures::end_to_end_listings_per_sec),
            end_to_end_offers_per_sec: m(RunFigures::end_to_end_offers_per_sec),
            raw_per_sec: m(RunFigures::raw_per_sec),
            relay_ratio: m(RunFigures::relay_ratio),
            end_to_end_ratio: m(RunFigures::end_to_end_ratio),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(ingest_ms: u64, relay_ms: u64, raw_ms: u64) -> RunFigures {
        RunFigures {
            listings: 10_000,
            tasks: 2_000,
            offers: 6_000,
            ingest: Duration::from_millis(ingest_ms),
            relay: Duration::from_millis(relay_ms),
            raw: Duration::from_millis(raw_ms),
        }
    }

    #[test]
    fn medians_take_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median([f64::NAN]).is_nan());
        assert_eq!(median([f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn rates_and_ratios_follow_from_counts_and_times() {
        let f = figures(2_000, 500, 250);
        assert_eq!(f.listings_per_sec(), 5_000.0);
        assert_eq!(f.tasks_per_sec(), 4_000.0);
        assert_eq!(f.offers_per_sec(), 12_000.0);
        assert_eq!(f.raw_per_sec(), 24_000.0);
        assert_eq!(f.relay_ratio(), 0.5);
        assert_eq!(f.end_to_end_listings_per_sec(), 4_000.0);
        assert_eq!(f.end_to_end_ratio(), 0.1);
    }

    #[test]
    fn a_run_without_offers_has_no_ratio() {
        let mut f = figures(1_000, 0, 0);
        f.tasks = 0;
        f.offers = 0;
        assert!(f.relay_ratio().is_nan());
        assert_eq!(ratio(f.relay_ratio()), "n/a");
    }

    #[test]
    fn rates_print_with_thousands_separators() {
        assert_eq!(rate(1_234_567.4), "1,234,567");
        assert_eq!(rate(999.6), "1,000");
        assert_eq!(rate(12.0), "12");
        assert_eq!(rate(f64::NAN), "n/a");
    }

    #[test]
    fn the_table_has_a_line_per_run_a_median_line_and_the_ratio() {
        let runs = [figures(2_000, 500, 250), figures(1_000, 500, 500)];
        let text = table(&runs);
        assert!(
            text.lines()
                .nth(3)
                .unwrap()
                .trim_start()
                .starts_with("median")
        );
        assert!(
            text.contains("listings sampled/s (ingest, median): 7,500"),
            "{text}"
        );
        assert!(text.contains("= 0.75"), "{text}");
    }
}
