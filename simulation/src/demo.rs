//! The demo marketplace: a seeded, deterministic generator of listings with a
//! hidden ground truth, and the answer models of simulated volunteers.
//!
//! Counterfeits concentrate the way the program's public figures describe: about
//! 90% come from ten regions, led by the Pearl River Delta, the Yangtze River
//! Delta and Southeast China; a small share of sellers sells most of them, and
//! risk signals (brand complaints, failed test purchases, prices far below the
//! brand's usual) are far more common on counterfeits.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotcheck_shared::aggregate::Verdict;
use spotcheck_shared::ids::ListingId;
use spotcheck_shared::listing::Listing;
use std::collections::BTreeMap;

/// The ten regions counterfeits concentrate in, most affected first, with weights.
pub const HOT_REGIONS: [(&str, f64); 10] = [
    ("pearl-river-delta", 0.26),
    ("yangtze-river-delta", 0.18),
    ("southeast-china", 0.14),
    ("bohai-rim", 0.08),
    ("central-china", 0.07),
    ("chengdu-chongqing", 0.06),
    ("northeast-china", 0.04),
    ("beibu-gulf", 0.03),
    ("guanzhong", 0.02),
    ("hainan", 0.02),
];

/// Other regions sellers list from; together they hold the remaining listings.
pub const OTHER_REGIONS: [&str; 6] = [
    "north-america",
    "western-europe",
    "japan",
    "korea",
    "australia",
    "south-america",
];

/// Categories with each one's propensity to counterfeiting (relative).
pub const CATEGORIES: [(&str, f64); 8] = [
    ("handbags", 3.0),
    ("watches", 2.5),
    ("sneakers", 2.5),
    ("cosmetics", 1.5),
    ("jewelry", 1.5),
    ("apparel", 1.0),
    ("electronics", 0.8),
    ("toys", 0.5),
];

const BRANDS: [(&str, f64); 10] = [
    ("Aurelia", 900.0),
    ("Borealis", 450.0),
    ("Calder", 250.0),
    ("Dunmore", 120.0),
    ("Eskerfield", 80.0),
    ("Fairholt", 60.0),
    ("Glenmoor", 300.0),
    ("Harrowgate", 1500.0),
    ("Ivel", 40.0),
    ("Juniper & Co", 200.0),
];

/// A generated listing with its hidden truth.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoListing {
    /// What the marketplace publishes.
    pub listing: Listing,
    /// The hidden truth: is it counterfeit?
    pub counterfeit: bool,
}

#[derive(Debug, Clone)]
struct Seller {
    id: String,
    region: String,
    hot: bool,
    tier: &'static str,
    counterfeiter: bool,
    new: bool,
}

fn weighted<'a, T>(rng: &mut ChaCha8Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

fn make_sellers(rng: &mut ChaCha8Rng, count: usize) -> Vec<Seller> {
    (0..count)
        .map(|i| {
            // Half the sellers are in the hot regions; counterfeiters are ~9x likelier there,
            // which puts about 90% of counterfeits in those ten regions.
            let hot = rng.random_bool(0.5);
            let region = if hot {
                (*weighted(rng, &HOT_REGIONS)).to_string()
            } else {
                OTHER_REGIONS[rng.random_range(0..OTHER_REGIONS.len())].to_string()
            };
            let counterfeiter = rng.random_bool(if hot { 0.18 } else { 0.02 });
            let tier = if counterfeiter {
                *weighted(rng, &[("high", 0.5), ("standard", 0.4), ("low", 0.1)])
            } else {
                *weighted(rng, &[("high", 0.05), ("standard", 0.55), ("low", 0.4)])
            };
            Seller {
                id: format!("S{i:05}"),
                region,
                hot,
                tier,
                counterfeiter,
                new: rng.random_bool(0.1),
            }
        })
        .collect()
}

/// Generates `count` listings from `seed`; the same seed always gives the same listings.
pub fn generate(seed: u64, count: usize) -> Vec<DemoListing> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sellers = make_sellers(&mut rng, (count / 8).max(10));
    (0..count)
        .map(|i| {
            let seller = &sellers[rng.random_range(0..sellers.len())];
            let (category, propensity) = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            let (brand, base_price) = BRANDS[rng.random_range(0..BRANDS.len())];
            let p_fake = if seller.counterfeiter {
                (0.25 * propensity).min(0.9)
            } else if seller.hot {
                0.004 * propensity
            } else {
                0.001 * propensity
            };
            let counterfeit = rng.random_bool(p_fake);
            let price_factor = if counterfeit {
                rng.random_range(0.1..0.7)
            } else {
                rng.random_range(0.6..1.3)
            };
            let price = (base_price * price_factor * 100.0).round() / 100.0;
            let mut signals = BTreeMap::new();
            let brand_complaint = rng.random_bool(if counterfeit { 0.35 } else { 0.01 });
            let test_failed = rng.random_bool(if counterfeit { 0.10 } else { 0.002 });
            signals.insert("brand_complaint".to_string(), brand_complaint);
            signals.insert("test_purchase_failed".to_string(), test_failed);
            signals.insert("price_anomaly".to_string(), price_factor < 0.5);
            signals.insert("new_seller".to_string(), seller.new);
            let id = format!("L{seed:x}-{i:06}");
            let images = rng.random_range(1..=4);
            let listing = Listing {
                listing_id: ListingId::parse(&id).expect("generated ids are valid"),
                version: 1,
                seller_id: seller.id.clone(),
                brand: brand.to_string(),
                category: category.to_string(),
                region: seller.region.clone(),
                price,
                currency: "USD".to_string(),
                title: format!("{brand} {category} #{i}"),
                description: format!("{brand} {category}, ships from {}.", seller.region),
                image_urls: (0..images)
                    .map(|k| format!("https://images.example.com/{id}/{k}.jpg"))
                    .collect(),
                signals,
                seller_risk_tier: Some(seller.tier.to_string()),
                active: true,
            };
            DemoListing {
                listing,
                counterfeit,
            }
        })
        .collect()
}

/// How a simulated volunteer answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// Right 95% of the time, rarely unsure.
    Careful,
    /// Right 75% of the time, often unsure.
    Careless,
    /// Answers at random.
    Random,
}

impl Profile {
    /// The profile of the `i`-th volunteer: 70% careful, 20% careless, 10% random.
    pub fn for_index(i: usize) -> Self {
        match i % 10 {
            0..=6 => Profile::Careful,
            7 | 8 => Profile::Careless,
            _ => Profile::Random,
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Careful => "careful",
            Profile::Careless => "careless",
            Profile::Random => "random",
        }
    }

    /// This volunteer's verdict on a listing whose truth is `counterfeit`.
    pub fn answer(self, counterfeit: bool, rng: &mut impl Rng) -> Verdict {
        let right = if counterfeit {
            Verdict::Counterfeit
        } else {
            Verdict::Genuine
        };
        let wrong = if counterfeit {
            Verdict::Genuine
        } else {
            Verdict::Counterfeit
        };
        let (p_right, p_unsure) = match self {
            Profile::Careful => (0.95, 0.02),
            Profile::Careless => (0.75, 0.10),
            Profile::Random => (1.0 / 3.0, 1.0 / 3.0),
        };
        let x: f64 = rng.random();
        if x < p_right {
            right
        } else if x < p_right + p_unsure {
            Verdict::Unsure
        } else {
            wrong
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_marketplace() {
        assert_eq!(generate(7, 200), generate(7, 200));
        assert_ne!(generate(7, 200), generate(8, 200));
    }

    #[test]
    fn every_generated_listing_is_valid() {
        for d in generate(1, 500) {
            d.listing.validate().unwrap();
        }
    }

    #[test]
    fn counterfeits_concentrate_in_the_hot_regions() {
        let all = generate(42, 40_000);
        let fakes: Vec<_> = all.iter().filter(|d| d.counterfeit).collect();
        let share = fakes.len() as f64 / all.len() as f64;
        assert!((0.02..0.12).contains(&share), "counterfeit share {share}");
        let hot = fakes
            .iter()
            .filter(|d| HOT_REGIONS.iter().any(|(r, _)| *r == d.listing.region))
            .count();
        let hot_share = hot as f64 / fakes.len() as f64;
        assert!(
            hot_share > 0.85,
            "hot-region share of counterfeits {hot_share}"
        );
    }

    #[test]
    fn careful_volunteers_are_mostly_right_and_random_ones_are_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let right = |p: Profile, rng: &mut ChaCha8Rng| {
            (0..5000)
                .filter(|_| p.answer(true, rng) == Verdict::Counterfeit)
                .count() as f64
                / 5000.0
        };
        assert!(right(Profile::Careful, &mut rng) > 0.93);
        assert!((right(Profile::Random, &mut rng) - 1.0 / 3.0).abs() < 0.03);
    }
}
