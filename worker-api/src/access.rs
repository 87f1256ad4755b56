//! The guard in front of every handler: who may call the route and how often,
//! both read from the route's entry in the route table ([`crate::routes::ROUTES`]).
//!
//! In order, cheapest first: the client address is rate-limited on anonymous
//! sign-in routes; on every other route the bearer token is verified (no I/O;
//! a request that fails counts against its address like a sign-in), its
//! subject rate-limited, the user's current role and status read from the
//! database, and the role compared with the route's [`Access`]. A request that
//! fails any step is answered here and never reaches the handler. Checks on
//! the object a request names (whose lease, whose account) stay in handlers.

use crate::auth::caller::{Caller, authenticate};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::Throttle;
use crate::routes::RouteSpec;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use spotcheck_shared::Role;
use std::net::SocketAddr;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Anonymous,
    /// Any signed-in, active user.
    SignedIn,
    /// Volunteers only (staff do not review tasks).
    Volunteer,
    /// Staff and admins.
    Staff,
    /// Admins only.
    Admin,
    /// Seller accounts only (each sees its own seller's cases).
    Seller,
    /// Brand-owner accounts only (each sees its own complaints).
    BrandOwner,
}

impl Access {
    /// Whether a caller with `role` (`None`: not signed in) may call the route.
    pub fn admits(self, role: Option<Role>) -> bool {
        match (self, role) {
            (Access::Anonymous, _) => true,
            (_, None) => false,
            (Access::SignedIn, Some(_)) => true,
            (Access::Volunteer, Some(role)) => role == Role::Volunteer,
            (Access::Staff, Some(role)) => role.is_staff(),
            (Access::Admin, Some(role)) => role == Role::Admin,
            (Access::Seller, Some(role)) => role == Role::Seller,
            (Access::BrandOwner, Some(role)) => role == Role::BrandOwner,
        }
    }

    /// `Ok` when this level admits `role`, else its 403.
    pub fn check(self, role: Role) -> Result<(), ApiError> {
        if self.admits(Some(role)) {
            Ok(())
        } else {
            Err(self.refusal())
        }
    }

    fn refusal(self) -> ApiError {
        ApiError::forbidden(match self {
            Access::Volunteer => "only volunteers review tasks",
            Access::Staff => "this route is for staff",
            Access::Admin => "this route is for admins",
            Access::Seller => "this route is for seller accounts",
            Access::BrandOwner => "this route is for brand owners",
            Access::Anonymous | Access::SignedIn => "not allowed",
        })
    }
}

/// The guard's state: the app and the route it stands in front of.
#[derive(Clone)]
pub struct Guard {
    state: AppState,
    spec: &'static RouteSpec,
}

impl Guard {
    /// The guard of `spec`.
    pub fn new(state: AppState, spec: &'static RouteSpec) -> Self {
        Self { state, spec }
    }
}

/// Middleware: admits the request to the handler, or answers it.
pub async fn guard(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    match admit(&guard, &mut req).await {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn admit(guard: &Guard, req: &mut Request) -> ApiResult<()> {
    let (state, spec) = (&guard.state, guard.spec);
    let check_address = |req: &Request| {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        state
            .limits
            .check_address(state.limits.client_ip(peer, req.headers()))
    };
    if spec.access == Access::Anonymous {
        if spec.throttle == Throttle::Address {
            check_address(req)?;
        }
        return Ok(());
    }
    // A request without a valid token is anonymous: it counts against its
    // address, so guessing tokens is throttled like guessing passwords.
    let user = match authenticate(state, req.headers()) {
        Ok(user) => user,
        Err(refusal) => return Err(check_address(req).err().unwrap_or(refusal)),
    };
    state.limits.check_subject(spec.throttle, user)?;
    let caller = Caller::load(state, user).await?;
    if !spec.access.admits(Some(caller.role)) {
        return Err(spec.access.refusal());
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_access_level_admits_exactly_its_roles() {
        let roles = [
            None,
            Some(Role::Volunteer),
            Some(Role::Staff),
            Some(Role::Admin),
            Some(Role::Seller),
            Some(Role::BrandOwner),
        ];
        let admitted = |access: Access| roles.map(|r| access.admits(r));
        let t = true;
        let f = false;
        assert_eq!(admitted(Access::Anonymous), [t, t, t, t, t, t]);
        assert_eq!(admitted(Access::SignedIn), [f, t, t, t, t, t]);
        assert_eq!(admitted(Access::Volunteer), [f, t, f, f, f, f]);
        assert_eq!(admitted(Access::Staff), [f, f, t, t, f, f]);
        assert_eq!(admitted(Access::Admin), [f, f, f, t, f, f]);
        assert_eq!(admitted(Access::Seller), [f, f, f, f, t, f]);
        assert_eq!(admitted(Access::BrandOwner), [f, f, f, f, f, t]);
    }
}
