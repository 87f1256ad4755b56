//! The authorization matrix, generated from the route table: every route ×
//! every role (anonymous, volunteer, staff, admin) × the caller's own object
//! and someone else's → the expected status. The router is built from the same
//! table, so a new route is tested here or this test fails.
//!
//! Refusals by role come from each route's declared access; what an admitted
//! caller gets is written below per route. Every 401 or 403 must leave the
//! database as it was.

use crate::auth_tokens::fingerprint;
use crate::harness::{PASSWORD, TestEnv, import_lines};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::time::{Duration, Instant};
use worker_api::routes::ROUTES;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Object {
    Own,
    Others,
}

/// What the matrix acts on.
struct World {
    env: TestEnv,
    /// Token and user id of the volunteer, staff member and admin who call.
    callers: Vec<(Role, String, String)>,
    /// Another volunteer's lease (task id, token), and a volunteer to suspend.
    others_lease: (String, String),
    target: String,
    /// The calling volunteer's leases: for extend, release and vote.
    own_leases: Vec<(String, String)>,
    escalation: String,
    /// A listing with a task.
    listing: String,
    made: std::cell::Cell<u32>,
}

/// One request of the matrix and the status an admitted caller gets.
struct Case {
    path: String,
    body: Option<Value>,
    admitted: u16,
}

async fn claim(env: &TestEnv, token: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = env
            .call(Method::POST, "/v1/tasks/claim", Some(token), None)
            .await;
        match status {
            200 => {
                let field = |k: &str| body[k].as_str().expect("a claim field").to_owned();
                return (field("task_id"), field("lease_token"));
            }
            204 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("claim answered {other}: {body}"),
        }
    }
}

async fn user_id(env: &TestEnv, token: &str) -> String {
    let (_, me) = env.call(Method::GET, "/v1/me", Some(token), None).await;
    me["user_id"].as_str().expect("a user id").to_owned()
}

async fn world() -> World {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|_| {}).await;
    env.start_api(|c| c.max_leases_per_volunteer = 10).await;
    let mut callers = Vec::new();
    for (name, role) in [
        ("m-volunteer", Role::Volunteer),
        ("m-staff", Role::Staff),
        ("m-admin", Role::Admin),
    ] {
        let token = env.user(name, role).await;
        let id = user_id(&env, &token).await;
        callers.push((role, token, id));
    }
    let other = env.user("m-other", Role::Volunteer).await;
    let target = user_id(&env, &env.user("m-target", Role::Volunteer).await).await;
    env.set_policy(&callers[1].1, json!({"default_rate": 1.0}))
        .await;
    let lines: Vec<String> = generate(77, 3)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).expect("a listing"))
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 3);
    let mut own_leases = Vec::new();
    for _ in 0..3 {
        own_leases.push(claim(&env, &callers[0].1).await);
    }
    let others_lease = claim(&env, &other).await;
    let escalation: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO escalations (id, task_id, listing_id, reason)
         SELECT gen_random_uuid(), id, listing_id, 'matrix' FROM tasks LIMIT 1 RETURNING id",
    )
    .fetch_one(&env.pool)
    .await
    .expect("an escalation");
    let listing: String = sqlx::query_scalar("SELECT listing_id FROM tasks LIMIT 1")
        .fetch_one(&env.pool)
        .await
        .expect("a listing");
    World {
        listing,
        env,
        callers,
        others_lease,
        target,
        own_leases,
        escalation: escalation.to_string(),
        made: 0.into(),
    }
}

impl World {
    /// The request for `route` by `caller` (`None`: anonymous) on `object`.
    async fn case(
        &self,
        method: &Method,
        route: &str,
        caller: Option<&(Role, String, String)>,
        object: Object,
    ) -> Case {
        let own = object == Object::Own;
        let lease = |i: usize| {
            if own {
                &self.own_leases[i]
            } else {
                &self.others_lease
            }
        };
        let lease_path = |i: usize, verb: &str| format!("/v1/tasks/{}/{verb}", lease(i).0);
        let me = caller.map_or(self.callers[0].2.as_str(), |c| c.2.as_str());
        let user = if own { me } else { self.target.as_str() };
        let case = |path: String, body: Option<Value>, admitted: u16| Case {
            path,
            body,
            admitted,
        };
        match (method.as_str(), route) {
            ("POST", "/v1/auth/login") => {
                let (name, password) = if own {
                    ("m-target", PASSWORD)
                } else {
                    ("m-other", "not-the-password")
                };
                case(
                    route.into(),
                    Some(json!({"username": name, "password": password})),
                    if own { 200 } else { 401 },
                )
            }
            ("POST", "/v1/auth/refresh") => {
                let token = if own {
                    self.env.login_pair("m-target").await["refresh_token"].clone()
                } else {
                    json!("rt_00")
                };
                case(
                    route.into(),
                    Some(json!({"refresh_token": token})),
                    if own { 200 } else { 401 },
                )
            }
            ("POST", "/v1/tasks/claim") => case(route.into(), None, 204),
            ("POST", "/v1/tasks/{task_id}/extend") => case(
                lease_path(0, "extend"),
                Some(json!({"lease_token": lease(0).1})),
                if own { 200 } else { 409 },
            ),
            ("POST", "/v1/tasks/{task_id}/release") => case(
                lease_path(1, "release"),
                Some(json!({"lease_token": lease(1).1})),
                if own { 204 } else { 409 },
            ),
            ("POST", "/v1/tasks/{task_id}/votes") => {
                let body = json!({"lease_token": lease(2).1, "verdict": "genuine", "reasons": []});
                case(
                    lease_path(2, "votes"),
                    Some(body),
                    if own { 201 } else { 409 },
                )
            }
            ("GET", "/v1/staff/escalations/{id}") => case(
                format!("/v1/staff/escalations/{}", self.escalation),
                None,
                200,
            ),
            ("POST", "/v1/staff/escalations/{id}/decision") => case(
                format!("/v1/staff/escalations/{}/decision", self.escalation),
                Some(json!({"decision": "dismiss"})),
                200,
            ),
            ("PUT", "/v1/staff/sampling-rules") => {
                case(route.into(), Some(json!({"default_rate": 1.0})), 200)
            }
            ("POST", "/v1/staff/sampling-rules/dry-run") => {
                case(route.into(), Some(json!({"default_rate": 0.5})), 200)
            }
            ("GET", "/v1/staff/tasks/{task_id}") => case(
                format!("/v1/staff/tasks/{}", self.own_leases[0].0),
                None,
                200,
            ),
            ("GET", "/v1/staff/listings/{listing_id}") => {
                case(format!("/v1/staff/listings/{}", self.listing), None, 200)
            }
            ("POST", "/v1/staff/gold-tasks") => {
                self.made.set(self.made.get() + 1);
                let mut listing =
                    serde_json::to_value(&generate(78, 1)[0].listing).expect("a listing");
                listing["listing_id"] = json!(format!("m-gold-{}", self.made.get()));
                case(
                    route.into(),
                    Some(json!({"listing": listing, "answer": "genuine"})),
                    201,
                )
            }
            ("GET", "/v1/staff/volunteers/{user_id}") => {
                case(format!("/v1/staff/volunteers/{}", self.target), None, 200)
            }
            ("POST", "/v1/staff/volunteers/{user_id}/reinstate-counting") => case(
                format!("/v1/staff/volunteers/{}/reinstate-counting", self.target),
                None,
                200,
            ),
            ("POST", "/v1/staff/users") => {
                self.made.set(self.made.get() + 1);
                let role = if own { "volunteer" } else { "staff" };
                let body = json!({"username": format!("m-made-{}", self.made.get()), "password": PASSWORD, "role": role});
                let staff_only = caller.is_some_and(|c| c.0 == Role::Staff);
                case(
                    route.into(),
                    Some(body),
                    if !own && staff_only { 403 } else { 201 },
                )
            }
            ("POST", "/v1/staff/users/{user_id}/seller-links") => case(
                format!("/v1/staff/users/{user}/seller-links"),
                Some(json!({"seller_id": "matrix-seller"})),
                // Links are recorded for volunteers only; the caller's own account is staff.
                if own { 422 } else { 201 },
            ),
            (
                "POST",
                "/v1/staff/users/{user_id}/suspend" | "/v1/staff/users/{user_id}/reinstate",
            ) => {
                let verb = route.rsplit('/').next().expect("a verb");
                case(
                    format!("/v1/staff/users/{user}/{verb}"),
                    None,
                    if own { 403 } else { 200 },
                )
            }
            ("POST", "/v1/complaints") => {
                let body = json!({"brand": "Matrix", "listing_id": self.listing, "reason": "other",
                                  "description": "matrix", "evidence_urls": []});
                case(route.into(), Some(body), 201)
            }
            // No caller of the matrix owns a complaint: an admitted one finds none.
            ("GET", "/v1/complaints/{complaint_id}") => {
                case(format!("/v1/complaints/{}", uuid::Uuid::nil()), None, 404)
            }
            ("POST", "/v1/staff/complaints/{complaint_id}/decision") => case(
                format!("/v1/staff/complaints/{}/decision", uuid::Uuid::nil()),
                Some(json!({"decision": "reject", "note": "matrix"})),
                404,
            ),
            ("POST", "/v1/staff/test-purchases") => case(
                route.into(),
                Some(
                    json!({"listing_id": self.listing, "purchased_at": "2026-01-05T10:00:00Z",
                            "vendor": "matrix", "result": "authentic"}),
                ),
                201,
            ),
            // Staff take the escalation for review in turn: the admin, who
            // comes after the staff member, finds it held.
            ("POST", "/v1/staff/escalations/{id}/review") => case(
                format!("/v1/staff/escalations/{}/review", self.escalation),
                None,
                if caller.is_some_and(|c| c.0 == Role::Admin) {
                    409
                } else {
                    200
                },
            ),
            ("GET", "/v1/staff/cases/export") => case(
                "/v1/staff/cases/export?seller_id=matrix-seller".into(),
                None,
                200,
            ),
            // The matrix opens no case, so an admitted caller finds none.
            ("GET", "/v1/staff/cases/{case_id}") => {
                case(format!("/v1/staff/cases/{}", uuid::Uuid::nil()), None, 404)
            }
            ("POST", "/v1/staff/cases/{case_id}/review") => case(
                format!("/v1/staff/cases/{}/review", uuid::Uuid::nil()),
                None,
                404,
            ),
            ("POST", "/v1/staff/cases/{case_id}/refutation-decision") => case(
                format!("/v1/staff/cases/{}/refutation-decision", uuid::Uuid::nil()),
                Some(json!({"decision": "reject"})),
                404,
            ),
            ("GET", "/v1/staff/sellers/{seller_id}") => {
                case("/v1/staff/sellers/matrix-nobody".into(), None, 404)
            }
            ("PUT", "/v1/staff/sellers/{seller_id}/risk-tier") => case(
                "/v1/staff/sellers/matrix-seller/risk-tier".into(),
                Some(json!({"tier": "high", "reason": "matrix"})),
                200,
            ),
            ("PUT", "/v1/staff/penalty-ladder") => case(
                route.into(),
                Some(
                    serde_json::to_value(spotcheck_shared::enforcement::Ladder::default())
                        .expect("a ladder"),
                ),
                200,
            ),
            ("POST", "/v1/staff/penalties/{penalty_id}/lift") => case(
                format!("/v1/staff/penalties/{}/lift", uuid::Uuid::nil()),
                Some(json!({"reason": "matrix"})),
                404,
            ),
            // No caller of the matrix is a seller account.
            ("GET", "/v1/seller/cases/{case_id}") => {
                case(format!("/v1/seller/cases/{}", uuid::Uuid::nil()), None, 404)
            }
            ("POST", "/v1/seller/cases/{case_id}/refutation") => case(
                format!("/v1/seller/cases/{}/refutation", uuid::Uuid::nil()),
                Some(json!({"text": "matrix", "evidence_urls": []})),
                404,
            ),
            // Served on the operator address only (as in production); the
            // public one answers like an unknown route.
            ("GET", "/metrics") => case(route.into(), None, 404),
            // The web app's files are public: any of them will do.
            ("GET", "/app/{file}") => case("/app/app.js".into(), None, 200),
            // So are the API reference's.
            ("GET", "/docs/{file}") => case("/docs/swagger-initializer.js".into(), None, 200),
            // Reads without an object: the admitted caller gets them.
            ("GET", _) if !route.contains('{') => case(route.into(), None, 200),
            _ => panic!("{method} {route} has no case in the authorization matrix: add one"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_every_role_on_own_and_others_objects_as_declared() {
    let w = world().await;
    let anonymous: Option<&(Role, String, String)> = None;
    // Refused callers first: their calls must not spend the objects the admitted ones use.
    let order = [
        anonymous,
        Some(&w.callers[1]),
        Some(&w.callers[2]),
        Some(&w.callers[0]),
    ];
    let mut checked = 0;
    for spec in ROUTES {
        for caller in order {
            for object in [Object::Others, Object::Own] {
                let case = w.case(&spec.method, spec.path, caller, object).await;
                let role = caller.map(|c| c.0);
                let expected = match (spec.access.admits(role), role) {
                    (true, _) => case.admitted,
                    (false, None) => 401,
                    (false, Some(_)) => 403,
                };
                let before = fingerprint(&w.env).await;
                let token = caller.map(|c| c.1.as_str());
                let (status, body) = w
                    .env
                    .call(spec.method.clone(), &case.path, token, case.body)
                    .await;
                let who = role.map_or("anonymous", |r| r.as_str());
                assert_eq!(
                    status, expected,
                    "{} {} as {who} on {object:?} object: {body}",
                    spec.method, spec.path
                );
                if matches!(status, 401 | 403) {
                    assert_eq!(
                        fingerprint(&w.env).await,
                        before,
                        "{} {} as {who} changed state",
                        spec.method,
                        spec.path
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, ROUTES.len() * 8);
    // The other volunteer's lease survived every attempt on it.
    let (task, token) = &w.others_lease;
    let other = w.env.login("m-other").await;
    let path = format!("/v1/tasks/{task}/extend");
    let (status, _) = w
        .env
        .call(
            Method::POST,
            &path,
            Some(&other),
            Some(json!({"lease_token": token})),
        )
        .await;
    assert_eq!(status, 200, "the other volunteer still holds their lease");
}
