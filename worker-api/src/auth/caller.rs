//! The signed-in caller, from `Authorization: Bearer <token>`.
//!
//! The token proves who the caller is; the role and status come from the
//! user's standing on every request (Redis, filled from PostgreSQL and
//! invalidated on every change, see [`spotcheck_platform::standing`]), so a
//! suspension or demotion takes effect on the next request on every replica
//! and a role written into a token by anyone grants nothing. The access guard
//! (see [`crate::access`]) does this for every route before its handler and
//! leaves the [`Caller`] in the request; the extractors here take it from
//! there, or check the token themselves when used without the guard.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use spotcheck_platform::standing::{Standing, StandingError};
use spotcheck_shared::{Role, UserId, UserStatus};
use std::sync::Arc;

/// Any signed-in, active user.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's id.
    pub id: UserId,
    /// The user's current role.
    pub role: Role,
    /// The rest of their standing (whether they count, answers, seller links).
    pub standing: Arc<Standing>,
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    value
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))
}

/// The user a request's bearer token names, once its signature, algorithm,
/// key id, times, issuer and audience check out. Nothing is looked up.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<UserId, ApiError> {
    let token = bearer(headers)?;
    let (id, _claims) = state.tokens.verify(token).map_err(|e| {
        tracing::debug!(error = %e, "refused an access token");
        ApiError::unauthorized("invalid or expired token")
    })?;
    Ok(id)
}

impl Caller {
    /// The user `id` as their standing has it now: refused when unknown or suspended.
    pub async fn load(state: &AppState, id: UserId) -> Result<Self, ApiError> {
        let standing = state
            .standing
            .get(&state.pool, id.0)
            .await
            .map_err(|e| match e {
                StandingError::Db(e) => ApiError::from(e),
                StandingError::Redis(e) => ApiError::from(e),
            })?;
        let Some(standing) = standing else {
            return Err(ApiError::unauthorized("invalid or expired token"));
        };
        if standing.status.parse::<UserStatus>() != Ok(UserStatus::Active) {
            return Err(ApiError::unauthorized("this account is suspended"));
        }
        let role = standing
            .role
            .parse()
            .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?;
        Ok(Caller { id, role, standing })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let id = authenticate(state, &parts.headers)?;
        Caller::load(state, id).await
    }
}

/// Declares an extractor of a signed-in caller whose role the access level
/// admits; other roles get its 403. (The access guard refuses them before the
/// handler already; the extractor also names what the handler expects.)
macro_rules! role_extractor {
    ($(#[$meta:meta])* $name:ident => $access:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $crate::auth::caller::Caller);

        impl axum::extract::FromRequestParts<$crate::state::AppState> for $name {
            type Rejection = $crate::error::ApiError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &$crate::state::AppState,
            ) -> Result<Self, Self::Rejection> {
                let caller =
                    $crate::auth::caller::Caller::from_request_parts(parts, state).await?;
                $crate::access::Access::$access.check(caller.role)?;
                Ok($name(caller))
            }
        }
    };
}
pub(crate) use role_extractor;

role_extractor!(
    /// A signed-in volunteer (other roles get 403).
    Volunteer => Volunteer
);
role_extractor!(
    /// A signed-in staff member or admin (other roles get 403).
    Staff => Staff
);
