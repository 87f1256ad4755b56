//! The audit log: who did what to which subject, with the values before and after.

use serde_json::Value;
use spotcheck_shared::UserId;
use sqlx::{Executor, Postgres};

/// Appends one entry, in the caller's transaction when given one.
pub async fn record<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    actor: UserId,
    action: &str,
    subject: &str,
    old: Option<Value>,
    new: Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, old, new) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor.0)
    .bind(action)
    .bind(subject)
    .bind(old)
    .bind(new)
    .execute(executor)
    .await?;
    Ok(())
}
