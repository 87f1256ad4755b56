//! Prevalence: the share of counterfeit listings per stratum and overall,
//! estimated from the inspected sample by inverse-probability weighting.
//!
//! Each listing of a round is sampled independently with its recorded inclusion
//! probability `π` (Poisson sampling), so the Horvitz–Thompson total
//! `T̂ = Σ y/π` over the inspected listings is unbiased for the number of
//! counterfeits, and `V̂ = Σ (1 − π) y²/π²` is an unbiased estimate of its
//! variance. Dividing by the stratum's population `N` (every active listing the
//! sampler looked at that round) gives the share. Tasks not yet decided are
//! treated as nonresponse within their stratum: the decided ones stand for them,
//! their probabilities scaled by the stratum's weighted response rate; a stratum
//! with no answer yet is left out of the overall share. When nothing counterfeit
//! was found the upper end of the interval is the exact bound for zero successes
//! in the effective sample size.
//!
//! Only round tasks are units of the sample. An inspection a brand owner's
//! complaint opened (inclusion probability 1, out of round) was chosen by the
//! complainant, not drawn from the frame: counting it would bias the share
//! towards the listings brand owners suspect, so callers leave it out.

use serde::Serialize;
use std::collections::BTreeMap;

/// z for a two-sided 95% normal interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// One inspected listing: its inclusion probability and, once known, whether it
/// turned out counterfeit (staff outcomes override the volunteers' verdict).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// The recorded inclusion probability, in (0, 1].
    pub probability: f64,
    /// `None` while undecided (or left uncertain and not yet seen by staff).
    pub counterfeit: Option<bool>,
}

/// A stratum's population and what its inspections found, as sums (so a
/// database can aggregate them): add units one by one or fill the fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StratumSample {
    /// Listings the sampler looked at in the round.
    pub population: u64,
    /// Listings inspected (tasks).
    pub inspected: u64,
    /// Inspections with a known outcome.
    pub decided: u64,
    /// Inspections found counterfeit.
    pub found: u64,
    /// Σ 1/π over the counterfeit ones.
    pub inv_p: f64,
    /// Σ 1/π² over the counterfeit ones.
    pub inv_p2: f64,
    /// Σ 1/π over every inspected one.
    pub inv_p_inspected: f64,
    /// Σ 1/π over the decided ones.
    pub inv_p_decided: f64,
    /// Σ 1/π² over the decided ones.
    pub inv_p2_decided: f64,
}

impl StratumSample {
    /// Adds one inspected listing.
    pub fn add(&mut self, unit: Unit) {
        let p = unit.probability.clamp(f64::MIN_POSITIVE, 1.0);
        self.inspected += 1;
        self.inv_p_inspected += 1.0 / p;
        if let Some(counterfeit) = unit.counterfeit {
            self.decided += 1;
            self.inv_p_decided += 1.0 / p;
            self.inv_p2_decided += 1.0 / (p * p);
            if counterfeit {
                self.found += 1;
                self.inv_p += 1.0 / p;
                self.inv_p2 += 1.0 / (p * p);
            }
        }
    }
}

/// An estimated counterfeit share with its 95% interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Estimate {
    /// Listings in the population.
    pub listings: u64,
    /// Listings inspected (tasks).
    pub inspected: u64,
    /// Inspections with a known outcome.
    pub decided: u64,
    /// Of those, found counterfeit.
    pub counterfeit_found: u64,
    /// Estimated number of counterfeit listings in the population.
    pub estimated_counterfeit: f64,
    /// Estimated share of counterfeit listings; `None` without decided inspections.
    pub share: Option<f64>,
    /// Standard error of the share.
    pub std_error: Option<f64>,
    /// Lower end of the 95% interval, clamped to [0, 1].
    pub ci_low: Option<f64>,
    /// Upper end of the 95% interval, clamped to [0, 1].
    pub ci_high: Option<f64>,
}

/// Horvitz–Thompson total and variance of one stratum, with its counts.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    listings: u64,
    inspected: u64,
    decided: u64,
    found: u64,
    total: f64,
    variance: f64,
    /// Σ 1/π' and Σ 1/π'² over the decided inspections (Kish's effective size).
    weight: f64,
    weight2: f64,
}

impl Totals {
    fn of(sample: &StratumSample) -> Self {
        let mut t = Totals {
            listings: sample.population.max(sample.inspected),
            inspected: sample.inspected,
            decided: sample.decided,
            ..Totals::default()
        };
        if sample.decided == 0 {
            return t;
        }
        // Nonresponse: π' = π·r with r the stratum's weighted response rate
        // (Σ 1/π over decided ÷ over inspected), so Σ 1/π' = Σ(1/π)/r and
        // Σ (1 − π')/π'² = Σ(1/π²)/r² − Σ(1/π)/r.
        let r = if sample.inv_p_inspected > 0.0 {
            (sample.inv_p_decided / sample.inv_p_inspected).clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            sample.decided as f64 / sample.inspected.max(1) as f64
        };
        t.found = sample.found;
        t.total = sample.inv_p / r;
        t.variance = (sample.inv_p2 / (r * r) - t.total).max(0.0);
        t.weight = sample.inv_p_decided / r;
        t.weight2 = sample.inv_p2_decided / (r * r);
        t
    }

    fn add(&mut self, o: &Totals) {
        self.listings += o.listings;
        self.inspected += o.inspected;
        self.decided += o.decided;
        self.found += o.found;
        self.total += o.total;
        self.variance += o.variance;
        self.weight += o.weight;
        self.weight2 += o.weight2;
    }

    fn estimate(&self) -> Estimate {
        let mut e = Estimate {
            listings: self.listings,
            inspected: self.inspected,
            decided: self.decided,
            counterfeit_found: self.found,
            estimated_counterfeit: self.total,
            ..Estimate::default()
        };
        if self.decided > 0 && self.listings > 0 {
            let n = self.listings as f64;
            let share = self.total / n;
            let se = self.variance.sqrt() / n;
            e.share = Some(share);
            e.std_error = Some(se);
            e.ci_low = Some((share - Z95 * se).clamp(0.0, 1.0));
            e.ci_high = Some((share + Z95 * se).clamp(0.0, 1.0));
            if self.found == 0 && self.weight2 > 0.0 {
                // Nothing found: the variance estimate is 0, but the share is only
                // known to be small. The upper end is the exact (Clopper-Pearson)
                // bound for no successes in Kish's effective sample size.
                let n_eff = self.weight * self.weight / self.weight2;
                e.ci_high = Some(1.0 - 0.025f64.powf(1.0 / n_eff.max(1.0)));
            }
        }
        e
    }
}

/// Estimates per stratum key, and overall.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prevalence {
    /// By stratum key.
    pub strata: BTreeMap<String, Estimate>,
    /// All strata together, except those pending.
    pub overall: Estimate,
    /// Strata with inspections but no known outcome yet: left out of `overall`
    /// (their share is unknown, not zero).
    pub strata_pending: u64,
}

/// Estimates the counterfeit share of each stratum and of their union.
pub fn estimate(strata: &BTreeMap<String, StratumSample>) -> Prevalence {
    let mut all = Totals::default();
    let mut out = Prevalence::default();
    for (key, sample) in strata {
        let t = Totals::of(sample);
        if sample.inspected > 0 && sample.decided == 0 {
            out.strata_pending += 1;
        } else {
            all.add(&t);
        }
        out.strata.insert(key.clone(), t.estimate());
    }
    out.overall = all.estimate();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecided_inspections_are_stood_for_by_the_decided_ones_of_their_stratum() {
        let unit = |counterfeit| Unit {
            probability: 0.5,
            counterfeit,
        };
        let mut sample = StratumSample {
            population: 40,
            ..StratumSample::default()
        };
        for counterfeit in [Some(true), Some(false), None, None] {
            sample.add(unit(counterfeit));
        }
        let strata = BTreeMap::from([("s".to_string(), sample)]);
        let est = estimate(&strata);
        // One of two decided is counterfeit, each decided one stands for 4 listings.
        assert_eq!(est.overall.estimated_counterfeit, 4.0);
        assert_eq!(est.overall.share, Some(0.1));
        assert_eq!((est.overall.inspected, est.overall.decided), (4, 2));
    }

    #[test]
    fn finding_nothing_still_gives_an_interval_that_admits_a_small_share() {
        let mut sample = StratumSample {
            population: 1000,
            ..StratumSample::default()
        };
        for _ in 0..100 {
            sample.add(Unit {
                probability: 0.1,
                counterfeit: Some(false),
            });
        }
        let est = estimate(&BTreeMap::from([("s".to_string(), sample)]));
        let e = &est.strata["s"];
        assert_eq!((e.share, e.ci_low), (Some(0.0), Some(0.0)));
        // No counterfeit in 100 inspected: up to about 3.6% is consistent with that.
        let high = e.ci_high.unwrap();
        assert!((0.03..0.04).contains(&high), "{high}");
    }

    #[test]
    fn a_stratum_waiting_for_answers_is_left_out_of_the_overall_share() {
        let answered = {
            let mut s = StratumSample {
                population: 10,
                ..StratumSample::default()
            };
            s.add(Unit {
                probability: 1.0,
                counterfeit: Some(true),
            });
            s
        };
        let waiting = {
            let mut s = StratumSample {
                population: 90,
                ..StratumSample::default()
            };
            s.add(Unit {
                probability: 0.5,
                counterfeit: None,
            });
            s
        };
        let est = estimate(&BTreeMap::from([
            ("a".to_string(), answered),
            ("b".to_string(), waiting),
        ]));
        assert_eq!(est.strata_pending, 1);
        assert_eq!(est.overall.listings, 10);
        assert_eq!(est.overall.share, Some(0.1));
    }

    #[test]
    fn a_stratum_without_decided_inspections_has_no_estimate() {
        let strata = BTreeMap::from([(
            "s".to_string(),
            StratumSample {
                population: 10,
                ..StratumSample::default()
            },
        )]);
        let est = estimate(&strata);
        assert_eq!(est.strata["s"].share, None);
        assert_eq!(est.overall.listings, 10);
    }
}
