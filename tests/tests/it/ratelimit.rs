//! Rate limits and quotas: a burst beyond a quota gets 429 with `Retry-After`
//! while other subjects carry on; `X-Forwarded-For` counts only from a trusted
//! proxy; the daily vote quota holds across replicas; and the limiter's memory
//! returns to a bound after a flood of distinct keys.

use crate::harness::{TestEnv, import_lines};
use governor::Quota;
use governor::clock::FakeRelativeClock;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};
use worker_api::ratelimit::keyed::KeyedLimiter;

/// One request to the worker-api at `base`, with an optional `X-Forwarded-For`.
pub async fn send(
    env: &TestEnv,
    base: &str,
    (method, path): (Method, &str),
    token: Option<&str>,
    body: Option<Value>,
    forwarded_for: Option<&str>,
) -> (u16, HeaderMap, Value) {
    let mut req = env.http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let response = req.send().await.expect("request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let json = response.json().await.unwrap_or(Value::Null);
    (status, headers, json)
}

/// Asserts a 429 problem with `code` and a `Retry-After` of 1 to `max` seconds.
pub fn assert_limited((status, headers, problem): &(u16, HeaderMap, Value), code: &str, max: u64) {
    assert_eq!(
        (*status, problem["code"].as_str()),
        (429, Some(code)),
        "{problem}"
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=max).contains(&retry), "Retry-After {retry}");
}

pub fn login_body(username: &str, password: &str) -> Option<Value> {
    Some(json!({"username": username, "password": password}))
}

pub const LOGIN: (Method, &str) = (Method::POST, "/v1/auth/login");

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_beyond_a_subjects_quota_gets_429_with_retry_after_and_others_are_unaffected() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.limits.rate_other_per_min = 5).await;
    let (alice, bob) = (
        env.user("burst-alice", Role::Volunteer).await,
        env.user("burst-bob", Role::Volunteer).await,
    );
    let me = (Method::GET, "/v1/me");
    for i in 0..5 {
        let (status, _, _) = send(&env, &env.api, me.clone(), Some(&alice), None, None).await;
        assert_eq!(status, 200, "request {i} is within the quota");
    }
    let limited = send(&env, &env.api, me.clone(), Some(&alice), None, None).await;
    assert_limited(&limited, "rate_limited", 12);
    assert_eq!(
        send(&env, &env.api, me, Some(&bob), None, None).await.0,
        200,
        "another subject is unaffected"
    );
    let claim = send(
        &env,
        &env.api,
        (Method::POST, "/v1/tasks/claim"),
        Some(&alice),
        None,
        None,
    )
    .await;
    assert_eq!(claim.0, 204, "claims have a quota of their own");
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_changes_the_key_only_when_the_peer_is_a_trusted_proxy() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.limits.rate_auth_per_min = 3).await;
    let direct = env.api.clone();
    // From an untrusted peer, every request is the peer's, whatever it forwards.
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        let r = send(
            &env,
            &direct,
            LOGIN,
            None,
            login_body(&format!("nobody-{i}"), "wrong-password"),
            Some(&xff),
        )
        .await;
        assert_eq!(r.0, 401, "attempt {i}");
    }
    let r = send(
        &env,
        &direct,
        LOGIN,
        None,
        login_body("nobody-3", "wrong-password"),
        Some("198.51.100.99"),
    )
    .await;
    assert_limited(&r, "rate_limited", 20);

    env.start_api(|c| {
        c.limits.rate_auth_per_min = 3;
        c.limits.trusted_proxies = "127.0.0.1/32".parse().expect("a block");
    })
    .await;
    let proxied = env.api.clone();
    for i in 0..6 {
        let xff = format!("203.0.113.{i}");
        let r = send(
            &env,
            &proxied,
            LOGIN,
            None,
            login_body(&format!("someone-{i}"), "wrong-password"),
            Some(&xff),
        )
        .await;
        assert_eq!(
            r.0, 401,
            "behind a trusted proxy each client has its own bucket ({i})"
        );
    }
    for i in 0..3 {
        let r = send(
            &env,
            &proxied,
            LOGIN,
            None,
            login_body(&format!("same-{i}"), "wrong-password"),
            Some("1.2.3.4, 203.0.113.50"),
        )
        .await;
        assert_eq!(r.0, 401);
    }
    let r = send(
        &env,
        &proxied,
        LOGIN,
        None,
        login_body("same-3", "wrong-password"),
        Some("9.9.9.9, 203.0.113.50"),
    )
    .await;
    assert_limited(&r, "rate_limited", 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_with_invalid_tokens_count_against_their_address() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.limits.rate_auth_per_min = 3).await;
    let me = (Method::GET, "/v1/me");
    for i in 0..3 {
        let r = send(
            &env,
            &env.api,
            me.clone(),
            Some(&format!("forged.{i}.token")),
            None,
            None,
        )
        .await;
        assert_eq!(r.0, 401, "guess {i}");
    }
    let r = send(&env, &env.api, me, Some("forged.3.token"), None, None).await;
    assert_limited(&r, "rate_limited", 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_vote_quota_holds_across_replicas() {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|_| {}).await;
    env.start_api(|c| c.limits.daily_vote_quota = 1).await;
    let first = env.api.clone();
    env.start_api(|c| c.limits.daily_vote_quota = 1).await;
    let second = env.api.clone();
    let staff = env.user("quota-staff", Role::Staff).await;
    let volunteer = env.user("quota-volunteer", Role::Volunteer).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    let lines: Vec<String> = generate(41, 2)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).expect("json"))
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 2);
    // Offers are spread over both replicas' buffers: claim from either.
    let mut leases = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for base in [&first, &second].into_iter().cycle() {
        if leases.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two tasks became claimable");
        let claim = (Method::POST, "/v1/tasks/claim");
        match send(&env, base, claim, Some(&volunteer), None, None).await {
            (200, _, lease) => leases.push(lease),
            (204, _, _) => tokio::time::sleep(Duration::from_millis(20)).await,
            (status, _, body) => panic!("claim answered {status}: {body}"),
        }
    }
    let vote = |claim: &Value| {
        let path = format!(
            "/v1/tasks/{}/votes",
            claim["task_id"].as_str().expect("a task id")
        );
        (
            path,
            json!({"lease_token": claim["lease_token"], "verdict": "genuine", "reasons": []}),
        )
    };
    let (path, body) = vote(&leases[0]);
    let r = send(
        &env,
        &first,
        (Method::POST, &path),
        Some(&volunteer),
        Some(body),
        None,
    )
    .await;
    assert_eq!(r.0, 201, "the first vote of the day: {}", r.2);
    let (path, body) = vote(&leases[1]);
    let r = send(
        &env,
        &second,
        (Method::POST, &path),
        Some(&volunteer),
        Some(body),
        None,
    )
    .await;
    assert_limited(&r, "daily_quota_exceeded", 86_400);
    let r = send(
        &env,
        &first,
        (Method::POST, "/v1/tasks/claim"),
        Some(&volunteer),
        None,
        None,
    )
    .await;
    assert_limited(&r, "daily_quota_exceeded", 86_400);
    assert_eq!(
        crate::harness::count(&env.pool, "SELECT count(*) FROM votes").await,
        1
    );
}

#[test]
fn after_a_hundred_thousand_distinct_keys_the_limiter_returns_to_a_bound() {
    let clock = FakeRelativeClock::default();
    let quota = Quota::per_minute(NonZeroU32::new(60).expect("non-zero"));
    let limiter =
        KeyedLimiter::<IpAddr, _>::with_clock(quota, Duration::from_secs(60), clock.clone());
    for i in 0..100_000u128 {
        limiter
            .check(&IpAddr::V6(Ipv6Addr::from(i)))
            .expect("a first request passes");
    }
    let (keys, bytes) = (limiter.len(), limiter.table_bytes());
    println!("rate limiter after 100000 distinct keys: {keys} keys, {bytes} table bytes");
    assert_eq!(keys, 100_000);
    // A minute and a half later the next request prunes by itself.
    clock.advance(Duration::from_secs(90));
    limiter
        .check(&IpAddr::from([192, 0, 2, 1]))
        .expect("passes");
    let (after, after_bytes) = (limiter.len(), limiter.table_bytes());
    println!("rate limiter after pruning: {after} keys, {after_bytes} table bytes");
    assert_eq!(after, 1, "only the key just seen is left");
    assert!(after_bytes <= 4096, "memory returned: {after_bytes} bytes");
}
