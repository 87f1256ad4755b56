//! Hostile input: oversized bodies, malformed JSON, unknown fields, wrong types,
//! values outside an enum, over-long strings, bad paths and queries. Each gets
//! a 4xx problem JSON with a stable code and a request id, never a 5xx, never
//! plain text, never a detail from inside the service.

use crate::harness::TestEnv;
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;

/// One hostile request and the answer it must get.
struct Probe {
    method: Method,
    path: String,
    token: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// `route` is "METHOD /path"; the body is sent as JSON.
fn probe(
    route: &str,
    token: Option<&str>,
    body: impl Into<Vec<u8>>,
    answer: (u16, &'static str),
) -> Probe {
    let (method, path) = route.split_once(' ').expect("METHOD /path");
    Probe {
        method: method.parse().expect("a method"),
        path: path.to_owned(),
        token: token.map(str::to_owned),
        content_type: Some("application/json"),
        body: body.into(),
        status: answer.0,
        code: answer.1,
    }
}

async fn assert_problem(env: &TestEnv, p: Probe) {
    let mut req = env
        .http
        .request(p.method.clone(), env.url(&p.path))
        .body(p.body);
    if let Some(t) = &p.token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = p.content_type {
        req = req.header("content-type", ct);
    }
    let response = req.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let what = format!("{} {}", p.method, p.path);
    assert_eq!(status, p.status, "{what}: {text}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{what}"
    );
    assert!(
        headers.contains_key("x-request-id"),
        "{what} has a request id"
    );
    let problem: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(problem["code"].as_str(), Some(p.code), "{what}: {problem}");
    assert_eq!(problem["status"], json!(status));
    let detail = problem["detail"].as_str().unwrap_or_default();
    for leak in ["struct ", "::", "sqlx", "panicked", "SELECT", "redis"] {
        assert!(!detail.contains(leak), "{what} leaks {leak:?}: {detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_get_4xx_problems_with_stable_codes() {
    let env = TestEnv::start().await;
    let vol = env.user("input-volunteer", Role::Volunteer).await;
    let staff = env.user("input-staff", Role::Staff).await;
    let (v, s) = (Some(vol.as_str()), Some(staff.as_str()));
    let task = format!("/v1/tasks/{}/votes", uuid::Uuid::now_v7());
    let escalation = format!("/v1/staff/escalations/{}/decision", uuid::Uuid::now_v7());
    let vote = |extra: Value| {
        let mut body = json!({"lease_token": "lt_00", "verdict": "genuine", "reasons": []});
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        body.to_string()
    };
    let big = format!(
        r#"{{"username": "{}", "password": "x"}}"#,
        "a".repeat(70_000)
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (login, refresh) = ("POST /v1/auth/login", "POST /v1/auth/refresh");
    let (users, rules) = ("POST /v1/staff/users", "PUT /v1/staff/sampling-rules");
    let (vote_route, decide) = (format!("POST {task}"), format!("POST {escalation}"));
    let (task, escalation) = (vote_route.as_str(), decide.as_str());
    let long = |field: &str, n: usize, extra: Value| {
        let mut body = extra;
        body[field] = json!("x".repeat(n));
        body.to_string()
    };
    #[rustfmt::skip]
    let probes = vec![
        probe(login, None, big.clone(), (413, "payload_too_large")),
        probe(task, v, big, (413, "payload_too_large")),
        probe(login, None, r#"{"username": "#, (400, "malformed_json")),
        probe(login, None, "", (400, "malformed_json")),
        probe(login, None, vec![0xff, 0xfe, 0x00], (400, "malformed_json")),
        probe(login, None, deep, (422, "invalid_body")),
        probe(login, None, "[]", (422, "invalid_body")),
        probe(login, None, r#"{"username": "a", "password": "b", "admin": true}"#, (422, "invalid_body")),
        probe(login, None, r#"{"username": 1, "password": "b"}"#, (422, "invalid_body")),
        probe(login, None, long("username", 10_000, json!({"password": "p"})), (401, "invalid_credentials")),
        probe(refresh, None, long("refresh_token", 10_000, json!({})), (401, "invalid_refresh_token")),
        probe(task, v, vote(json!({"verdict": "maybe"})), (422, "invalid_body")),
        probe(task, v, vote(json!({"reasons": "fake"})), (422, "invalid_body")),
        probe(task, v, vote(json!({"lease_token": 7})), (422, "invalid_body")),
        probe(task, v, vote(json!({"weight": 10})), (422, "invalid_body")),
        probe(task, v, vote(json!({"note": "n".repeat(2001)})), (422, "validation_failed")),
        probe(task, v, vote(json!({"reasons": vec!["r"; 17]})), (422, "validation_failed")),
        probe(task, v, vote(json!({"reasons": ["NOT A CODE"]})), (422, "validation_failed")),
        probe(task, v, vote(json!({"lease_token": "t".repeat(65)})), (409, "lease_token_mismatch")),
        probe(escalation, s, r#"{"decision": "approve"}"#, (422, "invalid_body")),
        probe(escalation, s, long("note", 4001, json!({"decision": "dismiss"})), (422, "validation_failed")),
        probe(users, s, r#"{"username": "abc", "password": "long-enough-1", "role": "superuser"}"#, (422, "invalid_body")),
        probe(users, s, long("username", 65, json!({"password": "long-enough-1", "role": "volunteer"})), (422, "validation_failed")),
        probe(users, s, long("password", 300, json!({"username": "long-pass", "role": "volunteer"})), (422, "validation_failed")),
        probe(rules, s, r#"{"default_rate": "high"}"#, (422, "invalid_body")),
        probe(rules, s, r#"{"default_rate": 2.0}"#, (422, "invalid_sampling_rules")),
        probe(rules, s, r#"{"default_rate": 0.5, "secret": 1}"#, (422, "invalid_body")),
    ];
    for p in probes {
        assert_problem(&env, p).await;
    }
    let mut untyped = probe(
        login,
        None,
        r#"{"username": "a", "password": "b"}"#,
        (415, "unsupported_media_type"),
    );
    untyped.content_type = None;
    assert_problem(&env, untyped).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_paths_queries_and_methods_get_4xx_problems() {
    let env = TestEnv::start().await;
    let staff = env.user("paths-staff", Role::Staff).await;
    let vol = env.user("paths-volunteer", Role::Volunteer).await;
    let (s, v) = (Some(staff.as_str()), Some(vol.as_str()));
    let escalations = "GET /v1/staff/escalations";
    let q = |query: &str| format!("{escalations}?{query}");
    let extend = r#"{"lease_token": "lt_00"}"#;
    #[rustfmt::skip]
    let probes = vec![
        probe("GET /v1/staff/escalations/not-a-uuid", s, "", (404, "not_found")),
        probe(&q("limit=abc"), s, "", (400, "invalid_query")),
        probe(&q("bogus=1"), s, "", (400, "invalid_query")),
        probe(&q("limit=100000"), s, "", (422, "validation_failed")),
        probe(&q("status=weird"), s, "", (422, "validation_failed")),
        probe(&q("cursor=not-a-uuid"), s, "", (422, "validation_failed")),
        probe("POST /v1/tasks/%FF%FE/extend", v, extend, (400, "bad_request")),
        probe("POST /v1/tasks/not-a-uuid/extend", v, extend, (404, "not_found")),
        probe("DELETE /v1/me", v, "", (405, "method_not_allowed")),
        probe("GET /v1/no/such/route", v, "", (404, "not_found")),
        probe("GET /v1/me", Some("not.a.jwt"), "", (401, "unauthorized")),
    ];
    for p in probes {
        assert_problem(&env, p).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let env = TestEnv::start().await;
    let r = env
        .http
        .get(env.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let r = env
        .http
        .get(env.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let id = r.headers()["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a generated id: {id}");
}
