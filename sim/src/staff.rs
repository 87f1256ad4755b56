//! What the demo reads from the staff API: the stats summary, read loosely so a
//! field added or missing does not break it, and every escalated listing.

use crate::api::Api;
use crate::session::Session;
use crate::stats::{CallKind, Recorder};
use serde_json::Value;
use std::collections::HashSet;

/// Escalations asked for per page.
const PAGE: u32 = 200;
/// A guard against a server that never ends the pagination.
const MAX_PAGES: usize = 10_000;

/// The number at `path` in `stats`, if there is one.
pub fn number(stats: &Value, path: &[&str]) -> Option<u64> {
    let v = path.iter().try_fold(stats, |v, key| v.get(key))?;
    v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
}

fn show(stats: &Value, path: &[&str]) -> String {
    number(stats, path).map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// One readable line of `GET /v1/staff/stats`.
pub fn summary(stats: &Value) -> String {
    let s = |path: &[&str]| show(stats, path);
    format!(
        "listings {} | tasks {} (open {}, decided {}, escalated {}) | votes {} | \
         decisions genuine {}, counterfeit {}, uncertain {} | \
         escalations open {}, confirmed {}, dismissed {} | leases {} | outbox unsent {}",
        s(&["listings"]),
        s(&["tasks", "total"]),
        s(&["tasks", "open"]),
        s(&["tasks", "decided"]),
        s(&["tasks", "escalated"]),
        s(&["votes"]),
        s(&["decisions", "genuine"]),
        s(&["decisions", "counterfeit"]),
        s(&["decisions", "uncertain"]),
        s(&["escalations", "open"]),
        s(&["escalations", "confirmed"]),
        s(&["escalations", "dismissed"]),
        s(&["leases_tracked"]),
        s(&["outbox_unsent"]),
    )
}

/// Whether every listing is in and every task closed: nothing left to review.
pub fn all_closed(stats: &Value, listings: usize) -> bool {
    let ingested = number(stats, &["listings"]).is_some_and(|n| n >= listings as u64);
    let total = number(stats, &["tasks", "total"]).is_some_and(|n| n > 0);
    let open = number(stats, &["tasks", "open"]) == Some(0);
    ingested && total && open
}

/// Reads the stats, recording the call.
pub async fn stats(api: &Api, rec: &Recorder, staff: &mut Session) -> Option<Value> {
    staff
        .call(api, rec, CallKind::Staff, |t| async move {
            api.staff_stats(&t).await
        })
        .await
        .inspect_err(|e| eprintln!("GET /v1/staff/stats failed: {e}"))
        .ok()
}

/// The listing ids of every escalation, whatever its status, following `next_cursor`.
pub async fn escalated_listings(
    api: &Api,
    rec: &Recorder,
    staff: &mut Session,
) -> anyhow::Result<HashSet<String>> {
    let mut listings = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let from = cursor.as_deref();
        let page = staff
            .call(api, rec, CallKind::Staff, |t| async move {
                api.escalations(&t, PAGE, from).await
            })
            .await?;
        listings.extend(page.items.into_iter().map(|e| e.listing_id));
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(listings),
        }
    }
    anyhow::bail!("escalations did not end after {MAX_PAGES} pages")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(open: u64, listings: u64) -> Value {
        json!({
            "listings": listings, "tasks": {"total": 40, "open": open, "decided": 30, "escalated": 5},
            "votes": 120, "decisions": {"genuine": 25, "counterfeit": 4, "uncertain": 1},
            "escalations": {"open": 5, "confirmed": 0, "dismissed": 0},
            "leases_tracked": 3, "outbox_unsent": 0
        })
    }

    #[test]
    fn the_summary_shows_the_figures_and_marks_missing_ones() {
        let line = summary(&sample(5, 100));
        assert!(
            line.contains("tasks 40 (open 5, decided 30, escalated 5)"),
            "{line}"
        );
        assert!(summary(&json!({})).contains("listings ?"));
    }

    #[test]
    fn the_run_is_over_only_when_everything_is_ingested_and_closed() {
        assert!(all_closed(&sample(0, 100), 100));
        assert!(!all_closed(&sample(1, 100), 100));
        assert!(!all_closed(&sample(0, 99), 100));
        assert!(!all_closed(
            &json!({"listings": 100, "tasks": {"total": 0, "open": 0}}),
            100
        ));
        assert!(!all_closed(&json!({}), 100));
    }
}
