//! The hidden truth of the demo marketplace, and how the system's escalations
//! score against it (precision and recall).

use serde::Serialize;
use spotcheck_simulation::demo::DemoListing;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Whether each generated listing is counterfeit, by listing id.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    counterfeit: HashMap<String, bool>,
}

impl Truth {
    /// The truth of a generated marketplace.
    pub fn from_demo(listings: &[DemoListing]) -> Self {
        let counterfeit = listings
            .iter()
            .map(|d| (d.listing.listing_id.as_str().to_owned(), d.counterfeit))
            .collect();
        Self { counterfeit }
    }

    /// This truth and that of `more` listings.
    pub fn with(mut self, more: &[DemoListing]) -> Self {
        self.counterfeit.extend(
            more.iter()
                .map(|d| (d.listing.listing_id.as_str().to_owned(), d.counterfeit)),
        );
        self
    }

    /// Whether `listing_id` is counterfeit; `None` for a listing not generated here.
    pub fn is_counterfeit(&self, listing_id: &str) -> Option<bool> {
        self.counterfeit.get(listing_id).copied()
    }

    /// How many generated listings there are.
    pub fn len(&self) -> usize {
        self.counterfeit.len()
    }

    /// Whether no listing was generated.
    pub fn is_empty(&self) -> bool {
        self.counterfeit.is_empty()
    }
}

/// Escalations scored against the truth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    /// Distinct listings escalated.
    pub escalated: usize,
    /// Escalated listings that are not in the generated marketplace (left out of precision).
    pub escalated_unknown: usize,
    /// Escalated listings that are truly counterfeit.
    pub escalated_counterfeit: usize,
    /// Distinct listings the simulator voted on.
    pub reviewed: usize,
    /// Truly counterfeit listings among those voted on.
    pub reviewed_counterfeit: usize,
    /// Truly counterfeit listings voted on that were escalated.
    pub reviewed_counterfeit_escalated: usize,
}

impl Score {
    /// Scores `escalated` listing ids against `truth`, with recall taken over `reviewed`.
    pub fn compute(truth: &Truth, escalated: &HashSet<String>, reviewed: &HashSet<String>) -> Self {
        let known: Vec<bool> = escalated
            .iter()
            .filter_map(|id| truth.is_counterfeit(id))
            .collect();
        let reviewed_fakes: Vec<&String> = reviewed
            .iter()
            .filter(|id| truth.is_counterfeit(id) == Some(true))
            .collect();
        Self {
            escalated: escalated.len(),
            escalated_unknown: escalated.len() - known.len(),
            escalated_counterfeit: known.iter().filter(|c| **c).count(),
            reviewed: reviewed.len(),
            reviewed_counterfeit: reviewed_fakes.len(),
            reviewed_counterfeit_escalated: reviewed_fakes
                .iter()
                .filter(|id| escalated.contains(**id))
                .count(),
        }
    }

    /// Share of escalated (known) listings that are truly counterfeit.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.escalated_counterfeit,
            self.escalated - self.escalated_unknown,
        )
    }

    /// Share of reviewed counterfeits that were escalated.
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.reviewed_counterfeit_escalated,
            self.reviewed_counterfeit,
        )
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{:.1}%", 100.0 * x))
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = self.escalated - self.escalated_unknown;
        writeln!(
            f,
            "precision: {} ({} of {} escalated listings are counterfeit; {} not ours)",
            percent(self.precision()),
            self.escalated_counterfeit,
            known,
            self.escalated_unknown
        )?;
        writeln!(
            f,
            "recall:    {} ({} of {} counterfeits among the {} listings voted on were escalated)",
            percent(self.recall()),
            self.reviewed_counterfeit_escalated,
            self.reviewed_counterfeit,
            self.reviewed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_simulation::demo::generate;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn truth(pairs: &[(&str, bool)]) -> Truth {
        Truth {
            counterfeit: pairs.iter().map(|(id, c)| ((*id).to_owned(), *c)).collect(),
        }
    }

    #[test]
    fn the_truth_of_a_generated_marketplace_is_looked_up_by_listing_id() {
        let listings = generate(5, 300);
        let t = Truth::from_demo(&listings);
        assert_eq!(t.len(), 300);
        for d in &listings {
            assert_eq!(
                t.is_counterfeit(d.listing.listing_id.as_str()),
                Some(d.counterfeit)
            );
        }
        assert_eq!(t.is_counterfeit("not-a-generated-id"), None);
    }

    #[test]
    fn precision_and_recall_count_what_they_say() {
        let t = truth(&[
            ("a", true),
            ("b", true),
            ("c", false),
            ("d", true),
            ("e", false),
        ]);
        // Escalated: a (fake), c (genuine), x (unknown). Reviewed: a, b, c, e.
        let s = Score::compute(&t, &set(&["a", "c", "x"]), &set(&["a", "b", "c", "e"]));
        assert_eq!(s.escalated, 3);
        assert_eq!(s.escalated_unknown, 1);
        assert_eq!(s.escalated_counterfeit, 1);
        assert_eq!(s.precision(), Some(0.5));
        assert_eq!(
            (s.reviewed_counterfeit, s.reviewed_counterfeit_escalated),
            (2, 1)
        );
        assert_eq!(s.recall(), Some(0.5));
    }

    #[test]
    fn precision_and_recall_are_undefined_without_a_denominator() {
        let t = truth(&[("a", false)]);
        let s = Score::compute(&t, &HashSet::new(), &set(&["a"]));
        assert_eq!((s.precision(), s.recall()), (None, None));
        assert!(s.to_string().contains("n/a"));
    }
}
