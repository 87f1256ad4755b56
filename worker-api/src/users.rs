//! Creating accounts: shared by the staff route and the `create-user` command.

use crate::auth::password;
use spotcheck_shared::{Role, UserId};
use sqlx::PgPool;

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The username is not 3 to 64 characters of letters, digits, `_`, `.` or `-`.
    #[error("username must be 3 to 64 characters of letters, digits, '_', '.' or '-'")]
    BadUsername,
    /// The password is too short or too long.
    #[error("{0}")]
    WeakPassword(&'static str),
    /// Someone has this username.
    #[error("this username is taken")]
    Taken,
    /// No password-hashing slot came free in time.
    #[error(transparent)]
    Busy(#[from] password::Busy),
    /// The database or the hasher failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn username_ok(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The rules a new account's name and password must pass.
fn check_new_account(username: &str, plain: &str) -> Result<(), CreateUserError> {
    if !username_ok(username) {
        return Err(CreateUserError::BadUsername);
    }
    password::check_strength(plain).map_err(CreateUserError::WeakPassword)
}

/// Creates an active account; the password is hashed off the async threads,
/// without a bound on hashes at once (the command line and start-up use it;
/// requests go through [`hash_new_account`] and [`insert_user`]).
pub async fn create_user(
    pool: &PgPool,
    username: &str,
    plain: String,
    role: Role,
) -> Result<UserId, CreateUserError> {
    check_new_account(username, &plain)?;
    let hash = password::hash(plain).await?;
    insert_user(pool, username, hash, role, None).await
}

/// Checks a new account's name and password and hashes the password in a slot
/// of `hasher`; the caller then inserts the account with [`insert_user`].
pub async fn hash_new_account(
    hasher: &password::Hasher,
    username: &str,
    plain: String,
) -> Result<String, CreateUserError> {
    check_new_account(username, &plain)?;
    Ok(hasher.hash(plain).await??)
}

/// Inserts an active account (a seller's with its `seller_id`), in the
/// caller's transaction when given one.
pub async fn insert_user<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    username: &str,
    hash: String,
    role: Role,
    seller_id: Option<&str>,
) -> Result<UserId, CreateUserError> {
    let id = UserId::new();
    let done = sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, seller_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT ON CONSTRAINT users_username_key DO NOTHING",
    )
    .bind(id.0)
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(seller_id)
    .execute(executor)
    .await
    .map_err(anyhow::Error::from)?;
    if done.rows_affected() == 0 {
        return Err(CreateUserError::Taken);
    }
    Ok(id)
}

/// Makes the admin account `username` unless an account of that name exists
/// (its password is then left alone). Replicas starting together may all try:
/// one creates it, the others find it taken.
pub async fn bootstrap_admin(pool: &PgPool, username: &str, plain: &str) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
            .bind(username)
            .fetch_one(pool)
            .await?;
    if exists {
        return Ok(());
    }
    match create_user(pool, username, plain.to_owned(), Role::Admin).await {
        Ok(id) => {
            tracing::info!(%id, username, "made the bootstrap admin account");
            Ok(())
        }
        Err(CreateUserError::Taken) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("SPOTCHECK_ADMIN_USERNAME")),
    }
}
