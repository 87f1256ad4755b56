//! Sign-in, token refresh and the public keys.

use crate::auth::password;
use crate::auth::refresh::{self, Redeemed};
use crate::backoff::Outcome;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ClientAddr};
use crate::ratelimit::client_net::ClientNet;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spotcheck_shared::{Role, UserId};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /v1/auth/refresh` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

/// The token pair both routes answer with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// A short-lived JWT for `Authorization: Bearer`.
    access_token: String,
    /// Spent by `POST /v1/auth/refresh` for the next pair.
    refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
}

/// The public keys that verify access tokens (RFC 7517).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    /// One JWK per verification key, each with its `kid`.
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

async fn token_pair(
    state: &AppState,
    conn: &mut PgConnection,
    user: UserId,
    role: Role,
    family: Uuid,
) -> ApiResult<TokenPair> {
    let ttl = state.config.refresh_token_ttl_secs as i64;
    let refresh_token = refresh::issue(conn, user, family, ttl).await?;
    let access_token = state
        .tokens
        .issue(user, role, chrono::Utc::now().timestamp())?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs(),
    })
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

fn invalid_refresh_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "invalid or expired refresh token",
    )
}

/// Signs in with a username and password. Failed attempts slow down the
/// client network that makes them, per account and across replicas (see
/// [`crate::backoff`]), as well as per address (by the access guard); the
/// password is checked in one of a bounded number of hashing slots (`503
/// busy` when none comes free in time); and a failure looks and takes the
/// same whether or not the account exists.
#[utoipa::path(post, path = "/v1/auth/login", request_body = Login, responses(
    (status = 200, description = "Signed in.", body = TokenPair),
    (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`account_suspended`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`too_many_login_attempts` or `rate_limited`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`busy`: no password-hashing slot came free in time", body = Problem, content_type = "application/problem+json"),
))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Json<TokenPair>> {
    // Usernames are ASCII (see `users`), so bytes are characters here.
    if body.username.len() > 64 {
        return Err(bad_credentials());
    }
    let net = ClientNet::of(ip);
    let attempt = state.sign_in.admit(&body.username, net).await?;
    // Longer than any account's password: a failure, without the hash.
    if !password::may_match(&body.password) {
        attempt.failed();
        return Err(bad_credentials());
    }
    // Any exit before the password is checked (a database error, the client
    // gone) drops the attempt, which takes it back.
    let row: Option<(Uuid, String, String, String)> =
        sqlx::query_as("SELECT id, password_hash, role, status FROM users WHERE username = $1")
            .bind(&body.username)
            .fetch_optional(&state.pool)
            .await?;
    let hash = row.as_ref().map(|(_, h, _, _)| h.clone());
    // An unknown user costs the same hash as a known one.
    let matched = match state.hasher.verify(body.password, hash).await {
        Ok(matched) => matched,
        Err(busy) => {
            attempt.settle(Outcome::NotChecked).await;
            return Err(busy.into());
        }
    };
    let Some((id, _, role, status)) = row.filter(|_| matched) else {
        attempt.failed();
        return Err(bad_credentials());
    };
    attempt.settle(Outcome::SignedIn).await;
    let role = active_role(&role, &status)?;
    let mut conn = state.pool.acquire().await?;
    let pair = token_pair(&state, &mut conn, UserId(id), role, Uuid::new_v4()).await?;
    tracing::info!(user.id = %id, "signed in");
    Ok(Json(pair))
}

/// The stored role of an account that may sign in; a suspended one is refused.
fn active_role(role: &str, status: &str) -> ApiResult<Role> {
    if status != "active" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "account_suspended",
            "this account is suspended",
        ));
    }
    role.parse()
        .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))
}

/// Spends a refresh token for a new pair; a reused token revokes its family.
#[utoipa::path(post, path = "/v1/auth/refresh", request_body = Refresh, responses(
    (status = 200, description = "A new pair; the presented refresh token is spent.", body = TokenPair),
    (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused` (its family is revoked)", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`account_suspended`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Refresh>,
) -> ApiResult<Json<TokenPair>> {
    if body.refresh_token.len() > 128 {
        return Err(invalid_refresh_token());
    }
    let mut tx = state.pool.begin().await?;
    let (user, family) = match refresh::redeem(&mut tx, &body.refresh_token).await? {
        Redeemed::Ok { user, family } => (user, family),
        Redeemed::Reused => {
            tx.commit().await?;
            tracing::warn!("a spent refresh token was presented again; its family is revoked");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "refresh_token_reused",
                "this refresh token was already used; sign in again",
            ));
        }
        Redeemed::Invalid => return Err(invalid_refresh_token()),
    };
    let (role, status): (String, String) =
        sqlx::query_as("SELECT role, status FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_one(&mut *tx)
            .await?;
    let role = active_role(&role, &status)?;
    let pair = token_pair(&state, &mut tx, user, role, family).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", responses(
    (status = 200, description = "The JSON Web Key Set.", body = Jwks),
))]
pub async fn jwks(State(state): State<AppState>) -> ApiResult<Json<Jwks>> {
    let keys = serde_json::from_value(state.tokens.keys().jwks()).map_err(anyhow::Error::from)?;
    Ok(Json(keys))
}
