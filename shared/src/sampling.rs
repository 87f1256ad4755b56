//! Sampling: which listings are inspected in a round, and with what probability.
//!
//! The inclusion probability of a listing comes from the staff's policy: the most
//! specific matching rule (category x region x seller risk tier, then coarser),
//! else the default rate; times the boost of each present risk signal; clamped to
//! `[floor_rate, 1]`. The decision compares a keyed hash of (listing id, round)
//! with that probability, so every replica and every redelivery agrees.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

/// One sampling rule: a rate for the listings matching every field it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Matches this category only, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Matches this region only, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Matches this seller risk tier only, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_risk_tier: Option<String>,
    /// Inclusion rate in [0, 1].
    pub rate: f64,
}

impl Rule {
    fn matches(&self, s: &Stratum) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        field(&self.category, &s.category)
            && field(&self.region, &s.region)
            && field(&self.seller_risk_tier, &s.seller_risk_tier)
    }

    /// How many fields the rule sets; more is more specific.
    fn specificity(&self) -> usize {
        [&self.category, &self.region, &self.seller_risk_tier]
            .iter()
            .filter(|f| f.is_some())
            .count()
    }
}

/// The staff's sampling policy (the body of `PUT /v1/staff/sampling-rules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplingPolicy {
    /// Rate for listings no rule matches.
    pub default_rate: f64,
    /// No listing's probability falls below this, so no stratum goes unobserved.
    #[serde(default)]
    pub floor_rate: f64,
    /// Rules; the most specific match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Multiplicative factor per risk signal name.
    #[serde(default)]
    pub boosts: BTreeMap<String, f64>,
}

impl Default for SamplingPolicy {
    fn default() -> Self {
        Self {
            default_rate: 0.05,
            floor_rate: 0.0,
            rules: Vec::new(),
            boosts: BTreeMap::new(),
        }
    }
}

/// A validation failure of a policy, naming the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// JSON path of the field, e.g. `rules[2].rate`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// The stratum of a listing: the cell of the sampling design it belongs to.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Stratum {
    /// Marketplace category.
    pub category: String,
    /// Seller's region.
    pub region: String,
    /// Seller's risk tier.
    pub seller_risk_tier: String,
}

impl Stratum {
    /// A compact, stable key such as `handbags/pearl-river-delta/high`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.category, self.region, self.seller_risk_tier
        )
    }
}

/// Why a listing has the probability it has: stored on its task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The inclusion probability in [floor, 1].
    pub probability: f64,
    /// The index of the rule that set the base rate, if any rule matched.
    pub rule_index: Option<usize>,
    /// The base rate before boosts.
    pub base_rate: f64,
    /// The boosts applied, by signal name.
    pub boosts: BTreeMap<String, f64>,
    /// The rule that set the base rate, as it read when the listing was sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The factor capacity throttling multiplied the probability by, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<f64>,
}

impl Inclusion {
    /// Whether any risk-signal boost raised this listing's probability.
    pub fn boosted(&self) -> bool {
        self.boosts.values().any(|f| *f > 1.0)
    }

    /// Multiplies the probability by `factor` (capacity throttling), never below
    /// `floor`; the recorded probability stays the one actually used.
    pub fn throttled(mut self, factor: f64, floor: f64) -> Self {
        let p = (self.probability * factor)
            .max(floor.min(1.0))
            .min(self.probability);
        if p < self.probability {
            self.probability = p;
            self.throttle = Some(factor);
        }
        self
    }
}

fn check_rate(field: String, rate: f64) -> Result<(), PolicyError> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(PolicyError {
            field,
            reason: "must be a number in [0, 1]".into(),
        })
    }
}

impl SamplingPolicy {
    /// A policy that samples every listing with the same rate.
    pub fn uniform(rate: f64) -> Self {
        Self {
            default_rate: rate,
            ..Self::default()
        }
    }

    /// Checks rates, boosts and rule keys; the first problem found is returned.
    pub fn validate(&self) -> Result<(), PolicyError> {
        check_rate("default_rate".into(), self.default_rate)?;
        check_rate("floor_rate".into(), self.floor_rate)?;
        if self.rules.len() > 10_000 {
            return Err(PolicyError {
                field: "rules".into(),
                reason: "at most 10000 rules".into(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            check_rate(format!("rules[{i}].rate"), rule.rate)?;
            for (name, value) in [
                ("category", &rule.category),
                ("region", &rule.region),
                ("seller_risk_tier", &rule.seller_risk_tier),
            ] {
                if value
                    .as_deref()
                    .is_some_and(|v| v.is_empty() || v.len() > 64)
                {
                    return Err(PolicyError {
                        field: format!("rules[{i}].{name}"),
                        reason: "must be 1 to 64 characters".into(),
                    });
                }
            }
            if rule.specificity() == 0 {
                return Err(PolicyError {
                    field: format!("rules[{i}]"),
                    reason: "a rule must set category, region or seller_risk_tier; use default_rate for the rest".into(),
                });
            }
            let key = (&rule.category, &rule.region, &rule.seller_risk_tier);
            if !seen.insert(key) {
                return Err(PolicyError {
                    field: format!("rules[{i}]"),
                    reason: "another rule has the same category, region and tier".into(),
                });
            }
        }
        for (name, factor) in &self.boosts {
            if name.is_empty() || name.len() > 64 {
                return Err(PolicyError {
                    field: "boosts".into(),
                    reason: "signal names must be 1 to 64 characters".into(),
                });
            }
            if !factor.is_finite() || *factor <= 0.0 || *factor > 1000.0 {
                return Err(PolicyError {
                    field: format!("boosts.{name}"),
                    reason: "must be a number in (0, 1000]".into(),
                });
            }
        }
        Ok(())
    }

    /// The inclusion probability of a listing in `stratum` with these signals.
    ///
    /// Ties between equally specific rules go to the earlier rule, which
    /// `validate` makes rare by refusing exact duplicates.
    pub fn inclusion<'a>(
        &self,
        stratum: &Stratum,
        signals: impl IntoIterator<Item = &'a str>,
    ) -> Inclusion {
        let best = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(stratum))
            .max_by(|(ia, a), (ib, b)| a.specificity().cmp(&b.specificity()).then(ib.cmp(ia)));
        let (rule_index, base_rate) = match best {
            Some((i, r)) => (Some(i), r.rate),
            None => (None, self.default_rate),
        };
        let mut boosts = BTreeMap::new();
        let mut p = base_rate;
        for signal in signals {
            if let Some(factor) = self.boosts.get(signal) {
                boosts.insert(signal.to_owned(), *factor);
                p *= factor;
            }
        }
        Inclusion {
            probability: p.clamp(self.floor_rate.min(1.0), 1.0),
            rule_index,
            base_rate,
            boosts,
            rule: best.map(|(_, r)| r.clone()),
            throttle: None,
        }
    }
}

/// The sampling decision for one listing in one round: its inclusion (after any
/// capacity throttling) and whether the keyed draw selected it.
pub fn decide<'a>(
    policy: &SamplingPolicy,
    throttle: &crate::capacity::Throttle,
    key: &[u8],
    listing_id: &str,
    stratum: &Stratum,
    signals: impl IntoIterator<Item = &'a str>,
    round: i64,
) -> (Inclusion, bool) {
    let inclusion = policy.inclusion(stratum, signals);
    let factor = throttle.factor_for(&stratum.seller_risk_tier, inclusion.boosted());
    let inclusion = inclusion.throttled(factor, policy.floor_rate);
    let sampled =
        inclusion.probability > 0.0 && is_sampled(key, listing_id, round, inclusion.probability);
    (inclusion, sampled)
}

/// Active listings sharing a stratum and a set of present signals, and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingGroup {
    /// Their stratum.
    pub stratum: Stratum,
    /// The signals present on each of them.
    pub signals: Vec<String>,
    /// How many listings.
    pub listings: u64,
}

/// What a policy would sample from one stratum in one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StratumPlan {
    /// Active listings in the stratum.
    pub listings: u64,
    /// Expected tasks per round: the sum of the listings' inclusion probabilities.
    pub expected_tasks: f64,
}

/// What a policy would sample per round: by stratum key, and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Plan {
    /// Per stratum key (`category/region/tier`).
    pub strata: BTreeMap<String, StratumPlan>,
    /// Active listings in all strata.
    pub listings: u64,
    /// Expected tasks per round in all strata.
    pub expected_tasks: f64,
}

impl SamplingPolicy {
    /// The expected tasks per round this policy gives over `groups` (a dry run,
    /// before any capacity throttling).
    pub fn plan(&self, groups: &[ListingGroup]) -> Plan {
        let mut plan = Plan::default();
        for group in groups {
            let p = self
                .inclusion(&group.stratum, group.signals.iter().map(String::as_str))
                .probability;
            let expected = p * group.listings as f64;
            let entry = plan.strata.entry(group.stratum.key()).or_default();
            entry.listings += group.listings;
            entry.expected_tasks += expected;
            plan.listings += group.listings;
            plan.expected_tasks += expected;
        }
        plan
    }
}

/// A number in [0, 1) fixed by (key, listing id, round): HMAC-SHA256, first 8 bytes.
pub fn sample_point(key: &[u8], listing_id: &str, round: i64) -> f64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(listing_id.as_bytes());
    mac.update(&[0]);
    mac.update(&round.to_be_bytes());
    let bytes = mac.finalize().into_bytes();
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    // 53 bits give an exactly representable, uniform f64 in [0, 1).
    (u64::from_be_bytes(word) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the listing is inspected in `round` at `probability`.
pub fn is_sampled(key: &[u8], listing_id: &str, round: i64, probability: f64) -> bool {
    sample_point(key, listing_id, round) < probability
}

/// The surveillance round containing `unix_secs` for rounds of `round_secs`.
pub fn round_of(unix_secs: i64, round_secs: i64) -> i64 {
    unix_secs.div_euclid(round_secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stratum(c: &str, r: &str, t: &str) -> Stratum {
        Stratum {
            category: c.into(),
            region: r.into(),
            seller_risk_tier: t.into(),
        }
    }

    fn rule(c: Option<&str>, r: Option<&str>, t: Option<&str>, rate: f64) -> Rule {
        Rule {
            category: c.map(Into::into),
            region: r.map(Into::into),
            seller_risk_tier: t.map(Into::into),
            rate,
        }
    }

    #[test]
    fn the_most_specific_matching_rule_wins_then_coarser_then_default() {
        let policy = SamplingPolicy {
            default_rate: 0.01,
            floor_rate: 0.0,
            rules: vec![
                rule(Some("bags"), None, None, 0.1),
                rule(Some("bags"), Some("prd"), None, 0.3),
                rule(Some("bags"), Some("prd"), Some("high"), 0.9),
            ],
            boosts: BTreeMap::new(),
        };
        assert_eq!(
            policy
                .inclusion(&stratum("bags", "prd", "high"), [])
                .probability,
            0.9
        );
        assert_eq!(
            policy
                .inclusion(&stratum("bags", "prd", "low"), [])
                .probability,
            0.3
        );
        assert_eq!(
            policy
                .inclusion(&stratum("bags", "yrd", "low"), [])
                .probability,
            0.1
        );
        let other = policy.inclusion(&stratum("shoes", "prd", "high"), []);
        assert_eq!((other.probability, other.rule_index), (0.01, None));
    }

    #[test]
    fn boosts_multiply_and_the_result_is_clamped_to_floor_and_one() {
        let policy = SamplingPolicy {
            default_rate: 0.2,
            floor_rate: 0.05,
            rules: vec![rule(Some("toys"), None, None, 0.0)],
            boosts: [("brand_complaint".to_string(), 10.0)].into(),
        };
        let boosted = policy.inclusion(&stratum("bags", "x", "y"), ["brand_complaint", "unknown"]);
        assert_eq!(boosted.probability, 1.0);
        assert_eq!(boosted.boosts.len(), 1);
        assert_eq!(
            policy.inclusion(&stratum("toys", "x", "y"), []).probability,
            0.05
        );
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let mut p = SamplingPolicy::uniform(1.5);
        assert_eq!(p.validate().unwrap_err().field, "default_rate");
        p.default_rate = 0.5;
        p.rules.push(rule(Some("a"), None, None, -0.1));
        assert_eq!(p.validate().unwrap_err().field, "rules[0].rate");
        p.rules = vec![rule(None, None, None, 0.1)];
        assert_eq!(p.validate().unwrap_err().field, "rules[0]");
        p.rules = vec![];
        p.boosts.insert("x".into(), f64::NAN);
        assert_eq!(p.validate().unwrap_err().field, "boosts.x");
    }

    #[test]
    fn decisions_are_fixed_per_listing_and_round_and_change_between_rounds() {
        let key = b"k";
        let a = sample_point(key, "L1", 7);
        assert_eq!(a, sample_point(key, "L1", 7));
        assert_ne!(a, sample_point(key, "L1", 8));
        assert_ne!(a, sample_point(b"other", "L1", 7));
    }

    #[test]
    fn the_sampled_share_matches_the_rate() {
        let n = 20_000;
        let hits = (0..n)
            .filter(|i| is_sampled(b"key", &format!("L{i}"), 3, 0.2))
            .count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.015, "share {share}");
    }

    #[test]
    fn a_dry_run_sums_probabilities_per_stratum() {
        let policy = SamplingPolicy {
            default_rate: 0.1,
            floor_rate: 0.0,
            rules: vec![rule(Some("bags"), None, None, 0.5)],
            boosts: [("complaint".to_string(), 2.0)].into(),
        };
        let group = |c: &str, signals: &[&str], listings| ListingGroup {
            stratum: stratum(c, "r", "t"),
            signals: signals.iter().map(|s| s.to_string()).collect(),
            listings,
        };
        let plan = policy.plan(&[
            group("bags", &[], 100),
            group("bags", &["complaint"], 10),
            group("toys", &["complaint"], 50),
            group("toys", &[], 1000),
        ]);
        assert_eq!(plan.listings, 1160);
        assert!((plan.strata["bags/r/t"].expected_tasks - 60.0).abs() < 1e-9);
        assert!((plan.strata["toys/r/t"].expected_tasks - 110.0).abs() < 1e-9);
        assert!((plan.expected_tasks - 170.0).abs() < 1e-9);
    }

    #[test]
    fn throttling_lowers_the_recorded_probability_but_never_below_the_floor() {
        let policy = SamplingPolicy {
            default_rate: 0.4,
            floor_rate: 0.1,
            ..SamplingPolicy::default()
        };
        let inc = policy.inclusion(&stratum("a", "b", "c"), []);
        let halved = inc.clone().throttled(0.5, policy.floor_rate);
        assert_eq!((halved.probability, halved.throttle), (0.2, Some(0.5)));
        let floored = inc.clone().throttled(0.01, policy.floor_rate);
        assert_eq!(floored.probability, 0.1);
        let unchanged = inc.throttled(1.0, policy.floor_rate);
        assert_eq!((unchanged.probability, unchanged.throttle), (0.4, None));
    }

    proptest! {
        #[test]
        fn probabilities_stay_within_floor_and_one(
            default in 0.0f64..=1.0, floor in 0.0f64..=1.0, boost in 0.01f64..100.0
        ) {
            let policy = SamplingPolicy {
                default_rate: default,
                floor_rate: floor,
                rules: vec![],
                boosts: [("s".to_string(), boost)].into(),
            };
            let p = policy.inclusion(&stratum("a", "b", "c"), ["s"]).probability;
            prop_assert!(p >= floor.min(1.0) && p <= 1.0);
        }

        #[test]
        fn sample_points_lie_in_the_unit_interval(id in "[a-z0-9]{1,20}", round in any::<i64>()) {
            let u = sample_point(b"k", &id, round);
            prop_assert!((0.0..1.0).contains(&u));
        }
    }
}
