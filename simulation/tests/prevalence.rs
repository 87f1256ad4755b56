//! Prevalence estimates checked against the hidden truth of seeded demo
//! marketplaces: exact when everything is inspected, and a 95% interval that
//! covers the hidden rate in at least 90 of 100 marketplaces.

use spotcheck_shared::prevalence::{Prevalence, StratumSample, Unit, estimate};
use spotcheck_shared::sampling::{SamplingPolicy, is_sampled};
use spotcheck_simulation::demo::generate;
use std::collections::BTreeMap;

fn demo_policy() -> SamplingPolicy {
    serde_json::from_str(
        r#"{"default_rate": 0.05, "floor_rate": 0.02,
            "rules": [{"region": "pearl-river-delta", "rate": 0.3},
                      {"region": "yangtze-river-delta", "rate": 0.25},
                      {"seller_risk_tier": "high", "rate": 0.4},
                      {"category": "handbags", "seller_risk_tier": "high", "rate": 0.6}],
            "boosts": {"brand_complaint": 4.0, "test_purchase_failed": 10.0,
                       "price_anomaly": 2.0, "new_seller": 1.5}}"#,
    )
    .unwrap()
}

/// Samples a seeded demo marketplace and returns (the true share, the estimate).
fn survey(seed: u64, listings: usize, policy: &SamplingPolicy) -> (f64, Prevalence) {
    let market = generate(seed, listings);
    let key = seed.to_be_bytes();
    let mut strata: BTreeMap<String, StratumSample> = BTreeMap::new();
    for item in &market {
        let stratum = item.listing.stratum();
        let p = policy
            .inclusion(&stratum, item.listing.active_signals())
            .probability;
        let sample = strata.entry(stratum.key()).or_default();
        sample.population += 1;
        if is_sampled(&key, item.listing.listing_id.as_str(), 1, p) {
            sample.add(Unit {
                probability: p,
                counterfeit: Some(item.counterfeit),
            });
        }
    }
    let truth = market.iter().filter(|d| d.counterfeit).count() as f64 / listings as f64;
    (truth, estimate(&strata))
}

#[test]
fn with_everything_inspected_the_estimate_is_the_truth_with_no_uncertainty() {
    let (truth, est) = survey(5, 2000, &SamplingPolicy::uniform(1.0));
    assert!((est.overall.share.unwrap() - truth).abs() < 1e-12);
    assert_eq!(est.overall.std_error, Some(0.0));
    assert_eq!(est.overall.listings, 2000);
}

#[test]
fn the_95_percent_interval_covers_the_hidden_rate_in_at_least_90_of_100_marketplaces() {
    let policy = demo_policy();
    let mut covered = 0;
    let mut errors = Vec::new();
    for seed in 0..100 {
        let (truth, est) = survey(1000 + seed, 8000, &policy);
        let (lo, hi) = (est.overall.ci_low.unwrap(), est.overall.ci_high.unwrap());
        if lo <= truth && truth <= hi {
            covered += 1;
        }
        errors.push(est.overall.share.unwrap() - truth);
    }
    let bias = errors.iter().sum::<f64>() / errors.len() as f64;
    eprintln!("95% interval covered the hidden rate in {covered} of 100; mean error {bias:+.5}");
    assert!(covered >= 90, "covered {covered} of 100");
    assert!(bias.abs() < 0.003, "mean error {bias}");
}
