//! Who may call what: missing, expired and tampered tokens are 401; a
//! volunteer on a staff route is 403.

use crate::harness::TestEnv;
use reqwest::Method;
use spotcheck_shared::{Role, UserId};
use worker_api::auth::keys::KeySet;
use worker_api::auth::tokens::TokenIssuer;

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_token_on_staff_routes_is_forbidden() {
    let env = TestEnv::start().await;
    let volunteer = env.user("vol-403", Role::Volunteer).await;
    for (method, path) in [
        (Method::GET, "/v1/staff/escalations"),
        (Method::GET, "/v1/staff/sampling-rules"),
        (Method::PUT, "/v1/staff/sampling-rules"),
        (Method::GET, "/v1/staff/stats"),
        (Method::POST, "/v1/staff/users"),
    ] {
        let body = (method != Method::GET).then(|| serde_json::json!({}));
        let (status, problem) = env.call(method.clone(), path, Some(&volunteer), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}"
        );
    }
    let staff = env.user("staff-claim", Role::Staff).await;
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&staff), None)
        .await;
    assert_eq!(status, 403, "staff do not claim tasks");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_expired_tampered_and_foreign_tokens_are_unauthorized() {
    let env = TestEnv::start().await;
    let good = env.user("vol-401", Role::Volunteer).await;
    let (status, _) = env.call(Method::GET, "/v1/me", Some(&good), None).await;
    assert_eq!(status, 200, "the untouched token works");

    let issuer = TokenIssuer::new(
        KeySet::from_pem_file(env.key_file.as_ref()).unwrap(),
        "spotcheck",
        "spotcheck-api",
        900,
    );
    let user_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'vol-401'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let expired = issuer
        .issue(UserId(user_id), Role::Volunteer, now - 3600)
        .unwrap();
    let not_yet = issuer
        .issue(UserId(user_id), Role::Volunteer, now + 3600)
        .unwrap();
    let foreign = TokenIssuer::new(
        KeySet::generate().unwrap(),
        "spotcheck",
        "spotcheck-api",
        900,
    )
    .issue(UserId(user_id), Role::Volunteer, now)
    .unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    let tampered = parts.join(".");

    let (status, problem) = env.call(Method::GET, "/v1/me", None, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthorized")),
        "missing"
    );
    for (name, token) in [
        ("expired", expired),
        ("not yet valid", not_yet),
        ("foreign key", foreign),
        ("tampered", tampered),
    ] {
        let (status, problem) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthorized")),
            "{name}"
        );
        let (status, _) = env
            .call(Method::POST, "/v1/tasks/claim", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{name} on claim");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let env = TestEnv::start().await;
    env.user("known-user", Role::Volunteer).await;
    let body = |u: &str| serde_json::json!({"username": u, "password": "definitely-wrong"});
    let (s1, p1) = env
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(body("known-user")),
        )
        .await;
    let (s2, p2) = env
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(body("nobody-here")),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(p1, p2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_rotates_and_its_reuse_revokes_the_family() {
    let env = TestEnv::start().await;
    env.user("refresher", Role::Volunteer).await;
    let first = env.login_pair("refresher").await;
    let body = |t: &serde_json::Value| serde_json::json!({"refresh_token": t});
    let (status, second) = env
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(body(&first["refresh_token"])),
        )
        .await;
    assert_eq!(status, 200);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (status, problem) = env
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(body(&first["refresh_token"])),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );
    let (status, _) = env
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(body(&second["refresh_token"])),
        )
        .await;
    assert_eq!(
        status, 401,
        "the newest token of a revoked family stops working too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_volunteer_is_refused_on_the_next_request() {
    let env = TestEnv::start().await;
    let staff = env.user("staff-suspender", Role::Staff).await;
    let volunteer = env.user("vol-suspended", Role::Volunteer).await;
    let (_, me) = env
        .call(Method::GET, "/v1/me", Some(&volunteer), None)
        .await;
    let path = format!(
        "/v1/staff/users/{}/suspend",
        me["user_id"].as_str().unwrap()
    );
    let (status, body) = env.call(Method::POST, &path, Some(&staff), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("suspended")));
    let (status, _) = env
        .call(Method::GET, "/v1/me", Some(&volunteer), None)
        .await;
    assert_eq!(status, 401);
}
