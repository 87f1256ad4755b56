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

/// The enforcement line of the stats: cases by state and penalties by kind.
pub fn enforcement_summary(stats: &Value) -> String {
    let e = &stats["enforcement"];
    let join = |v: &Value| {
        v.as_object()
            .map(|m| {
                let mut parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
                parts.sort();
                parts.join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    };
    format!(
        "cases: {} | penalties in force: {}",
        join(&e["cases_by_state"]),
        join(&e["penalties_by_kind"])
    )
}

/// Whether every case has left the refutation window (none `notified`).
pub fn windows_over(stats: &Value) -> bool {
    number(stats, &["enforcement", "cases_by_state", "notified"]).unwrap_or(0) == 0
        && number(stats, &["enforcement", "cases_by_state", "expired"]).unwrap_or(0) == 0
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
    Ok(escalations(api, rec, staff)
        .await?
        .into_iter()
        .map(|e| e.listing_id)
        .collect())
}

/// Staff decide every open escalation as the demo's staff would after looking
/// at the listing: confirm a counterfeit (the hidden truth), dismiss the rest.
/// A confirmation opens a case, whose refutation window then runs out (no
/// simulated seller refutes) and the penalty ladder is enforced. Returns how
/// many were confirmed and dismissed.
pub async fn decide_escalations(
    api: &Api,
    rec: &Recorder,
    staff: &mut Session,
    truth: &crate::truth::Truth,
) -> anyhow::Result<(u64, u64)> {
    let (mut confirmed, mut dismissed) = (0, 0);
    for e in escalations(api, rec, staff).await? {
        if e.status != "open" {
            continue;
        }
        let counterfeit = truth.is_counterfeit(&e.listing_id) == Some(true);
        let (decision, note) = if counterfeit {
            ("confirm", "counterfeit on inspection")
        } else {
            ("dismiss", "genuine on inspection")
        };
        let id = e.id.as_str();
        staff
            .call(api, rec, CallKind::Staff, |t| async move {
                api.decide_escalation(&t, id, decision, note).await
            })
            .await?;
        if counterfeit {
            confirmed += 1;
        } else {
            dismissed += 1;
        }
    }
    Ok((confirmed, dismissed))
}

/// Every escalation, following `next_cursor`.
async fn escalations(
    api: &Api,
    rec: &Recorder,
    staff: &mut Session,
) -> anyhow::Result<Vec<crate::api::EscalationItem>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let from = cursor.as_deref();
        let page = staff
            .call(api, rec, CallKind::Staff, |t| async move {
                api.escalations(&t, PAGE, from).await
            })
            .await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(all),
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
