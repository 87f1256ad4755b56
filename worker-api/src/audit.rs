//! The audit log: who did what to which subject, with the values before and after.
//! One row per change, written in the transaction of the change by
//! [`spotcheck_platform::enforcement::audit`], the one home of the statement.

use serde_json::Value;
use spotcheck_shared::UserId;
use sqlx::PgConnection;

/// Appends one entry by a signed-in user, in the caller's transaction.
pub async fn record(
    conn: &mut PgConnection,
    actor: UserId,
    action: &str,
    subject: &str,
    old: Option<Value>,
    new: Value,
) -> sqlx::Result<()> {
    spotcheck_platform::enforcement::audit(conn, Some(actor.0), action, subject, old, new).await
}
