//! Exclusive staff review: one staff member holds a case or an escalation for
//! a while; another sees who holds it and until when, and cannot decide it
//! meanwhile. A hold that ran out is free for anyone.

use crate::error::ApiError;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// How long a review hold lasts.
pub const HOLD_SECS: i64 = 900;

/// What can be held.
#[derive(Debug, Clone, Copy)]
pub enum Held {
    /// A row of `cases`.
    Case,
    /// A row of `escalations`.
    Escalation,
}

impl Held {
    fn table(self) -> &'static str {
        match self {
            Held::Case => "cases",
            Held::Escalation => "escalations",
        }
    }
}

/// The holder, if the row is held by someone else now: `409 held_by_another`
/// naming them and the end of their hold.
pub fn refuse_if_held_by_other(
    holder: Option<Uuid>,
    until: Option<DateTime<Utc>>,
    me: Uuid,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    match (holder, until) {
        (Some(h), Some(u)) if h != me && u > now => Err(ApiError::new(
            StatusCode::CONFLICT,
            "held_by_another",
            format!(
                "staff member {h} is reviewing this until {}",
                u.to_rfc3339()
            ),
        )
        .with_extra(json!({"reviewer": h, "review_until": u}))),
        _ => Ok(()),
    }
}

/// Takes (or renews) the hold on a row locked by the caller's transaction;
/// returns its end.
pub async fn take(
    conn: &mut PgConnection,
    what: Held,
    id: Uuid,
    holder: Option<Uuid>,
    until: Option<DateTime<Utc>>,
    me: Uuid,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    refuse_if_held_by_other(holder, until, me, now)?;
    let end = now + Duration::seconds(HOLD_SECS);
    let sql = format!(
        "UPDATE {} SET reviewer = $2, review_until = $3 WHERE id = $1",
        what.table()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(me)
        .bind(end)
        .execute(conn)
        .await?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_hold_of_someone_else_refuses() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let later = now + Duration::seconds(10);
        let earlier = now - Duration::seconds(10);
        assert!(refuse_if_held_by_other(None, None, me, now).is_ok());
        assert!(refuse_if_held_by_other(Some(me), Some(later), me, now).is_ok());
        assert!(refuse_if_held_by_other(Some(other), Some(earlier), me, now).is_ok());
        let refused = refuse_if_held_by_other(Some(other), Some(later), me, now).unwrap_err();
        assert_eq!(refused.code(), "held_by_another");
    }
}
