//! The route table: every route's method, path, who may call it and which rate
//! limit applies, declared once in [`ROUTES`]. The router is built from it (each
//! route behind the access guard of [`crate::access`], then the body deadline
//! of [`crate::serve::body_deadline`]), and the authorization
//! tests iterate it, so a route cannot be added without both.

pub mod auth;
pub mod cases;
pub mod complaint_review;
pub mod complaints;
pub mod dashboard;
pub mod docs;
pub mod escalations;
pub mod exports;
pub mod health;
pub mod inspections;
pub mod me;
pub mod openapi;
pub mod prevalence;
pub mod sampling;
pub mod seller;
pub mod sellers;
pub mod stats;
pub mod tasks;
pub mod test_purchases;
pub mod users;
pub mod volunteers;
pub mod votes;

use crate::access::{self, Access, Guard};
use crate::error::problem_response;
use crate::ratelimit::Throttle;
use crate::serve::{BodyRules, body_deadline};
use crate::state::AppState;
use crate::web;
use axum::Router;
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};

/// One route of the API.
pub struct RouteSpec {
    /// HTTP method.
    pub method: Method,
    /// Path pattern, as axum writes it (`/v1/tasks/{task_id}/votes`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Which rate limit applies.
    pub throttle: Throttle,
    /// The handler's path (`tasks::claim`), the operation id in the OpenAPI document.
    pub operation: &'static str,
    /// The handler, bound to the method.
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
    /// The handler's operation as `#[utoipa::path]` describes it (its
    /// parameters, bodies and responses, and the schemas they use).
    pub doc: Option<fn() -> openapi::Documented>,
}

/// One [`RouteSpec`]: `route!(METHOD "/path", Access, Throttle => module::handler; doc)`,
/// where `; doc` takes the operation from the handler's `#[utoipa::path]`.
macro_rules! route {
    ($method:ident $path:literal, $access:ident, $throttle:ident => $module:ident :: $handler:ident; doc) => {
        RouteSpec {
            doc: Some(utoipa_axum::paste! { openapi::documented::<$module::[<__path_ $handler>]> }),
            ..route!($method $path, $access, $throttle => $module::$handler)
        }
    };
    ($method:ident $path:literal, $access:ident, $throttle:ident => $module:ident :: $handler:ident) => {
        RouteSpec {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            throttle: Throttle::$throttle,
            operation: concat!(stringify!($module), "::", stringify!($handler)),
            handler: |filter| on(filter, $module::$handler),
            doc: None,
        }
    };
}

/// Every route of the API, and the only place a route's access is declared.
/// (Object-level checks, such as "your own lease", stay in the handlers.)
#[rustfmt::skip]
pub static ROUTES: &[RouteSpec] = &[
    // anyone
    route!(POST "/v1/auth/login",                         Anonymous, Address   => auth::login; doc),
    route!(POST "/v1/auth/refresh",                       Anonymous, Address   => auth::refresh; doc),
    route!(GET  "/.well-known/jwks.json",                 Anonymous, Unlimited => auth::jwks; doc),
    route!(GET  "/healthz",                               Anonymous, Unlimited => health::healthz; doc),
    route!(GET  "/readyz",                                Anonymous, Unlimited => health::readyz; doc),
    route!(GET  "/metrics",                               Anonymous, Unlimited => health::metrics; doc),
    route!(GET  "/openapi.json",                          Anonymous, Unlimited => openapi::document; doc),
    route!(GET  "/app/",                                  Anonymous, Unlimited => web::index; doc),
    route!(GET  "/app/{file}",                            Anonymous, Unlimited => web::asset; doc),
    route!(GET  "/docs/",                                 Anonymous, Unlimited => docs::index; doc),
    route!(GET  "/docs/{file}",                           Anonymous, Unlimited => docs::asset; doc),
    // volunteers
    route!(POST "/v1/tasks/claim",                        Volunteer, Claim     => tasks::claim; doc),
    route!(POST "/v1/tasks/{task_id}/extend",             Volunteer, Subject   => tasks::extend; doc),
    route!(POST "/v1/tasks/{task_id}/release",            Volunteer, Subject   => tasks::release; doc),
    route!(POST "/v1/tasks/{task_id}/votes",              Volunteer, Vote      => votes::vote; doc),
    // any signed-in user
    route!(GET  "/v1/me",                                 SignedIn,  Subject   => me::me; doc),
    // seller accounts (each sees only its own seller's cases)
    route!(GET  "/v1/seller/cases",                       Seller,    Subject   => seller::list; doc),
    route!(GET  "/v1/seller/cases/{case_id}",             Seller,    Subject   => seller::one; doc),
    route!(POST "/v1/seller/cases/{case_id}/refutation",  Seller,    Subject   => seller::refute; doc),
    route!(GET  "/v1/seller/penalties",                   Seller,    Subject   => seller::penalties; doc),
    // brand owners (each sees only its own complaints)
    route!(POST "/v1/complaints",                         BrandOwner, Subject  => complaints::create; doc),
    route!(GET  "/v1/complaints",                         BrandOwner, Subject  => complaints::list; doc),
    route!(GET  "/v1/complaints/{complaint_id}",          BrandOwner, Subject  => complaints::one; doc),
    // staff and admins (which accounts staff may manage is checked per object)
    route!(GET  "/v1/staff/escalations",                  Staff,     Subject   => escalations::list; doc),
    route!(GET  "/v1/staff/escalations/{id}",             Staff,     Subject   => escalations::one; doc),
    route!(POST "/v1/staff/escalations/{id}/decision",    Staff,     Subject   => escalations::decide; doc),
    route!(POST "/v1/staff/escalations/{id}/review",      Staff,     Subject   => escalations::review; doc),
    route!(GET  "/v1/staff/cases",                        Staff,     Subject   => cases::list; doc),
    route!(GET  "/v1/staff/cases/export",                 Staff,     Subject   => cases::export; doc),
    route!(GET  "/v1/staff/cases/{case_id}",              Staff,     Subject   => cases::one; doc),
    route!(POST "/v1/staff/cases/{case_id}/review",       Staff,     Subject   => cases::review; doc),
    route!(POST "/v1/staff/cases/{case_id}/refutation-decision", Staff, Subject => cases::refutation_decision; doc),
    route!(GET  "/v1/staff/sellers/{seller_id}",          Staff,     Subject   => sellers::get; doc),
    route!(PUT  "/v1/staff/sellers/{seller_id}/risk-tier", Staff,    Subject   => sellers::put_tier; doc),
    route!(GET  "/v1/staff/penalty-ladder",               Staff,     Subject   => sellers::get_ladder; doc),
    route!(PUT  "/v1/staff/penalty-ladder",               Staff,     Subject   => sellers::put_ladder; doc),
    route!(POST "/v1/staff/penalties/{penalty_id}/lift",  Staff,     Subject   => sellers::lift; doc),
    route!(GET  "/v1/staff/audit",                        Staff,     Subject   => sellers::audit; doc),
    route!(GET  "/v1/staff/complaints",                   Staff,     Subject   => complaint_review::list; doc),
    route!(POST "/v1/staff/complaints/{complaint_id}/decision", Staff, Subject => complaint_review::decide; doc),
    route!(GET  "/v1/staff/brand-owners",                 Staff,     Subject   => complaint_review::brand_owners; doc),
    route!(POST "/v1/staff/test-purchases",               Staff,     Subject   => test_purchases::record; doc),
    route!(GET  "/v1/staff/sampling-rules",               Staff,     Subject   => sampling::get_rules; doc),
    route!(PUT  "/v1/staff/sampling-rules",               Staff,     Subject   => sampling::put_rules; doc),
    route!(GET  "/v1/staff/sampling-rules/history",       Staff,     Subject   => sampling::history; doc),
    route!(POST "/v1/staff/sampling-rules/dry-run",       Staff,     Subject   => sampling::dry_run; doc),
    route!(GET  "/v1/staff/prevalence",                   Staff,     Subject   => prevalence::prevalence; doc),
    route!(GET  "/v1/staff/tasks/{task_id}",              Staff,     Subject   => inspections::task; doc),
    route!(GET  "/v1/staff/listings/{listing_id}",        Staff,     Subject   => inspections::listing; doc),
    route!(GET  "/v1/staff/stats",                        Staff,     Subject   => stats::stats; doc),
    route!(GET  "/v1/staff/dashboard",                    Staff,     Subject   => dashboard::dashboard; doc),
    route!(GET  "/v1/staff/exports/votes",                Staff,     Subject   => exports::votes; doc),
    route!(GET  "/v1/staff/exports/decisions",            Staff,     Subject   => exports::decisions; doc),
    route!(POST "/v1/staff/gold-tasks",                   Staff,     Subject   => volunteers::add_gold; doc),
    route!(GET  "/v1/staff/volunteers",                   Staff,     Subject   => volunteers::list; doc),
    route!(GET  "/v1/staff/volunteers/{user_id}",         Staff,     Subject   => volunteers::get; doc),
    route!(POST "/v1/staff/volunteers/{user_id}/reinstate-counting", Staff, Subject => volunteers::reinstate_counting; doc),
    route!(GET  "/v1/staff/collusion-flags",              Staff,     Subject   => volunteers::collusion_flags; doc),
    route!(POST "/v1/staff/users",                        Staff,     Subject   => users::create; doc),
    route!(GET  "/v1/staff/users",                        Staff,     Subject   => users::list; doc),
    route!(POST "/v1/staff/users/{user_id}/suspend",      Staff,     Subject   => users::suspend; doc),
    route!(POST "/v1/staff/users/{user_id}/reinstate",    Staff,     Subject   => users::reinstate; doc),
    route!(POST "/v1/staff/users/{user_id}/seller-links", Staff,     Subject   => users::link_seller; doc),
];

/// Every route of [`ROUTES`], each behind its access guard.
pub fn router(state: &AppState) -> Router<AppState> {
    ROUTES
        .iter()
        .fold(Router::new(), |router, spec| {
            let filter = MethodFilter::try_from(spec.method.clone())
                .expect("the route table uses standard methods");
            let guard = from_fn_with_state(Guard::new(state.clone(), spec), access::guard);
            // The body is read (within its deadline) only once the guard has
            // admitted the request: a refused one never costs its body's memory.
            let body = from_fn_with_state(BodyRules::of(&state.config), body_deadline);
            // Routes sharing a path are merged by axum, each method keeping its guard.
            let route = (spec.handler)(filter).route_layer(body).route_layer(guard);
            router.route(spec.path, route)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> Response {
    no_such_route()
}

/// The answer to a path no route serves.
pub fn no_such_route() -> Response {
    problem_response(StatusCode::NOT_FOUND, "not_found", "no such route".into())
}

async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_route_is_declared_once_with_a_standard_method() {
        let mut seen = HashSet::new();
        for spec in ROUTES {
            assert!(
                seen.insert((spec.method.clone(), spec.path)),
                "{} {} twice",
                spec.method,
                spec.path
            );
            assert!(MethodFilter::try_from(spec.method.clone()).is_ok());
            assert!(spec.path.starts_with('/'));
            let signed_in = spec.access != Access::Anonymous;
            let per_subject = matches!(
                spec.throttle,
                Throttle::Claim | Throttle::Vote | Throttle::Subject
            );
            assert_eq!(
                signed_in, per_subject,
                "{} {}: signed-in routes are limited per subject, anonymous ones are not",
                spec.method, spec.path
            );
        }
    }
}
