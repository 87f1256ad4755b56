//! The listing as the marketplace publishes it, and its validation.
//!
//! The same JSON object is what arrives on the `spotcheck.listings` exchange and
//! what `coordinator import` reads one per line.

use crate::ids::ListingId;
use crate::sampling::Stratum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tier used when the feed does not say how risky a seller is.
pub const DEFAULT_RISK_TIER: &str = "standard";

/// A listing as published by the marketplace (feed and import shape).
///
/// Fields Spotcheck does not know are ignored, never refused: a marketplace
/// that adds a field to its feed must not stop inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Listing {
    /// The marketplace's id of the listing.
    #[schema(value_type = String, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.:-]+$")]
    pub listing_id: ListingId,
    /// Increases with every edit of the listing; ingest keeps the newest.
    pub version: i64,
    /// The seller's id.
    pub seller_id: String,
    /// The brand the listing claims.
    pub brand: String,
    /// Marketplace category, e.g. `handbags`.
    pub category: String,
    /// Where the seller ships from, e.g. `pearl-river-delta`.
    pub region: String,
    /// Asking price in `currency`.
    pub price: f64,
    /// ISO 4217 code, three capital letters.
    pub currency: String,
    /// Listing title.
    pub title: String,
    /// Listing description.
    pub description: String,
    /// Image addresses (http or https).
    pub image_urls: Vec<String>,
    /// Risk signals by name; `true` means present (e.g. `brand_complaint`).
    #[serde(default)]
    pub signals: BTreeMap<String, bool>,
    /// The seller's risk tier, when the feed knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_risk_tier: Option<String>,
    /// `false` once the listing is taken down: it is kept but no longer sampled
    /// in later surveillance rounds. Absent means active.
    #[serde(default = "active_by_default", skip_serializing_if = "is_active")]
    pub active: bool,
}

fn active_by_default() -> bool {
    true
}

fn is_active(active: &bool) -> bool {
    *active
}

/// Why a listing was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListingError {
    /// Not JSON, or not the listing shape.
    #[error("malformed listing: {0}")]
    Malformed(String),
    /// JSON of the right shape with a value out of range.
    #[error("invalid listing field `{field}`: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ListingError {
    ListingError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ListingError> {
    if required && value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    Ok(())
}

impl Listing {
    /// Parses and validates one listing from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ListingError> {
        let listing: Listing =
            serde_json::from_slice(bytes).map_err(|e| ListingError::Malformed(e.to_string()))?;
        listing.validate()?;
        Ok(listing)
    }

    /// Checks ranges and lengths that the type system does not.
    pub fn validate(&self) -> Result<(), ListingError> {
        if self.version < 0 {
            return Err(invalid("version", "must not be negative"));
        }
        check_text("seller_id", &self.seller_id, 128, true)?;
        check_text("brand", &self.brand, 128, true)?;
        check_text("category", &self.category, 64, true)?;
        check_text("region", &self.region, 64, true)?;
        check_text("title", &self.title, 500, true)?;
        check_text("description", &self.description, 10_000, false)?;
        if !self.price.is_finite() || self.price < 0.0 {
            return Err(invalid("price", "must be a finite, non-negative number"));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                "must be three capital letters (ISO 4217)",
            ));
        }
        if self.image_urls.len() > 32 {
            return Err(invalid("image_urls", "at most 32 images"));
        }
        for url in &self.image_urls {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > 2048 {
                return Err(invalid(
                    "image_urls",
                    "each must be an http(s) URL of at most 2048 characters",
                ));
            }
        }
        if self.signals.len() > 32 || self.signals.keys().any(|k| k.is_empty() || k.len() > 64) {
            return Err(invalid(
                "signals",
                "at most 32 signals, names of 1 to 64 characters",
            ));
        }
        if let Some(tier) = &self.seller_risk_tier {
            check_text("seller_risk_tier", tier, 32, true)?;
        }
        Ok(())
    }

    /// The stratum the listing falls in for sampling.
    pub fn stratum(&self) -> Stratum {
        Stratum {
            category: self.category.clone(),
            region: self.region.clone(),
            seller_risk_tier: self
                .seller_risk_tier
                .clone()
                .unwrap_or_else(|| DEFAULT_RISK_TIER.to_owned()),
        }
    }

    /// The names of the signals that are present.
    pub fn active_signals(&self) -> impl Iterator<Item = &str> {
        present(&self.signals)
    }
}

/// The names of the signals set to `true` in a stored signals map.
pub fn present(signals: &BTreeMap<String, bool>) -> impl Iterator<Item = &str> {
    signals
        .iter()
        .filter(|(_, on)| **on)
        .map(|(k, _)| k.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "listing_id": "L1", "version": 1, "seller_id": "S1", "brand": "Acme",
            "category": "handbags", "region": "pearl-river-delta", "price": 12.5,
            "currency": "USD", "title": "Bag", "description": "", "image_urls": ["https://img.example/1.jpg"],
            "signals": {"brand_complaint": true, "price_anomaly": false}
        })
    }

    #[test]
    fn a_well_formed_listing_parses_with_its_stratum_and_signals() {
        let l = Listing::from_json(sample().to_string().as_bytes()).unwrap();
        assert_eq!(l.stratum().seller_risk_tier, DEFAULT_RISK_TIER);
        assert_eq!(
            l.active_signals().collect::<Vec<_>>(),
            vec!["brand_complaint"]
        );
    }

    #[test]
    fn malformed_and_invalid_listings_are_refused_with_the_reason() {
        assert!(matches!(
            Listing::from_json(b"{not json"),
            Err(ListingError::Malformed(_))
        ));
        let mut v = sample();
        v["surprise"] = serde_json::json!({"added": "by the marketplace later"});
        let tolerated = Listing::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(tolerated.listing_id.as_str(), sample()["listing_id"]);
        let mut v = sample();
        v["price"] = serde_json::json!(-1);
        assert!(matches!(
            Listing::from_json(v.to_string().as_bytes()),
            Err(ListingError::Invalid { field: "price", .. })
        ));
        let mut v = sample();
        v["image_urls"] = serde_json::json!(["file:///etc/passwd"]);
        assert!(Listing::from_json(v.to_string().as_bytes()).is_err());
    }
}
