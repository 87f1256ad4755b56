//! Refresh tokens: opaque, stored only as SHA-256 hashes, rotated on every use.
//! Presenting a spent token again revokes its whole family (reuse detection).

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use spotcheck_shared::UserId;
use sqlx::PgConnection;
use uuid::Uuid;

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("rt_{}", hex::encode(bytes))
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Issues a token of `family` for `user`; returns the plaintext (shown once).
pub async fn issue(
    conn: &mut PgConnection,
    user: UserId,
    family: Uuid,
    ttl_secs: i64,
) -> sqlx::Result<String> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(digest(&token))
    .bind(family)
    .bind(user.0)
    .bind(ttl_secs as f64)
    .execute(conn)
    .await?;
    Ok(token)
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq)]
pub enum Redeemed {
    /// Valid: it is now spent; issue the next one in `family` for `user`.
    Ok {
        /// The token's owner.
        user: UserId,
        /// Its family.
        family: Uuid,
    },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already spent: the family has just been revoked.
    Reused,
}

/// user, family, expiry, spent, revoked.
type TokenRow = (
    Uuid,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// Spends a refresh token, detecting reuse. Runs in the caller's transaction.
pub async fn redeem(conn: &mut PgConnection, token: &str) -> sqlx::Result<Redeemed> {
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT user_id, family_id, expires_at, spent_at, revoked_at FROM refresh_tokens
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(digest(token))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((user, family, expires_at, spent_at, revoked_at)) = row else {
        return Ok(Redeemed::Invalid);
    };
    if revoked_at.is_some() || expires_at <= Utc::now() {
        return Ok(Redeemed::Invalid);
    }
    if spent_at.is_some() {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family)
            .execute(&mut *conn)
            .await?;
        return Ok(Redeemed::Reused);
    }
    sqlx::query("UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = $1")
        .bind(digest(token))
        .execute(&mut *conn)
        .await?;
    Ok(Redeemed::Ok {
        user: UserId(user),
        family,
    })
}
