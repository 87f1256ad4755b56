//! Sign-in protection: failed sign-ins slow down the client network that makes
//! them (per account, its /64 for IPv6), never anyone else and never for
//! longer than the cap; unknown accounts are treated alike; password hashes
//! run a bounded number at once; and a password's length is counted in
//! characters everywhere.

use crate::harness::{PASSWORD, TestEnv, binary, free_port, wait_until};
use crate::ratelimit::{LOGIN, assert_limited, login_body, send};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use worker_api::ratelimit::proxies::ForwardedHeader;

/// One sign-in through a trusted proxy that forwards for `client` with the
/// standard `Forwarded` header (the worker-api must be told to read it).
async fn login_via_forwarded(
    env: &TestEnv,
    username: &str,
    password: &str,
    client: &str,
) -> (u16, HeaderMap, Value) {
    let node = if client.contains(':') {
        format!("for=\"[{client}]:4711\";proto=https")
    } else {
        format!("for={client};proto=https")
    };
    let response = env
        .http
        .post(env.url(LOGIN.1))
        .header("forwarded", node)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// The `Retry-After` of a response, in seconds.
fn retry_after(headers: &HeaderMap) -> u64 {
    headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds")
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_slow_only_the_network_that_makes_them_and_unknown_accounts_alike() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| {
        c.edge.login_free_failures = 3;
        c.limits.trusted_proxies = "127.0.0.0/8".parse().expect("a block");
    })
    .await;
    env.user("victim", Role::Volunteer).await;
    let mut answers = Vec::new();
    for name in ["victim", "ghost"] {
        let mut seen = Vec::new();
        // Through the proxy with X-Forwarded-For this time; the client's own
        // entry on the left is not believed.
        for i in 0..3 {
            let (status, _, problem) = send(
                &env,
                &env.api,
                LOGIN,
                None,
                login_body(name, "wrong-password"),
                Some(&format!("198.51.100.{i}, 192.0.2.10")),
            )
            .await;
            seen.push((status, problem["code"].clone(), problem["detail"].clone()));
        }
        answers.push(seen);
    }
    assert_eq!(
        answers[0], answers[1],
        "an unknown account is answered exactly like a known one"
    );
    assert_eq!(answers[0][0].0, 401);
    assert_eq!(answers[0][0].1, json!("invalid_credentials"));
    // The three failures were free; then the client waits 1 s, then 2 s: find
    // the end of the first wait, fail once more, and the right password from
    // the same address is refused during the second wait.
    let from_client = |password: &'static str| {
        let env = &env;
        async move {
            send(
                env,
                &env.api,
                LOGIN,
                None,
                login_body("victim", password),
                Some("192.0.2.10"),
            )
            .await
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = from_client("wrong-password").await;
        if r.0 == 401 {
            break;
        }
        assert_limited(&r, "too_many_login_attempts", 1);
        assert!(Instant::now() < deadline, "the first wait ends within 1 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = Instant::now();
    let refused = from_client(PASSWORD).await;
    assert_limited(&refused, "too_many_login_attempts", 2);
    // Another network with the right password is not held back at all.
    let elsewhere = send(
        &env,
        &env.api,
        LOGIN,
        None,
        login_body("victim", PASSWORD),
        Some("203.0.113.200"),
    )
    .await;
    assert_eq!(elsewhere.0, 200, "{}", elsewhere.2);
    // The client itself gets in once its wait is over.
    wait_until(
        "the waiting client signs in",
        Duration::from_secs(5),
        || async { from_client(PASSWORD).await.0 == 200 },
    )
    .await;
    // The wait was 2 s; the rest is the sign-in's own time (a hash) under load.
    let waited = waiting.elapsed();
    assert!(waited <= Duration::from_secs(4), "waited {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attackers_failures_keep_a_volunteer_out_no_longer_than_the_cap() {
    let mut env = TestEnv::db_only().await;
    let cap = 2;
    env.start_api(|c| {
        c.edge.login_backoff_max_secs = cap;
        c.limits.trusted_proxies = "127.0.0.1".parse().expect("a block");
        c.limits.forwarded_header = ForwardedHeader::Forwarded;
    })
    .await;
    env.user("named-volunteer", Role::Volunteer).await;
    // The attacker hammers the account from one /64 for 6 s, rotating addresses.
    let mut statuses = Vec::new();
    let hammering = Instant::now();
    let mut i = 0u32;
    while hammering.elapsed() < Duration::from_secs(6) {
        i += 1;
        let attacker = format!("2001:db8:bad:1::{i:x}");
        let r = login_via_forwarded(&env, "named-volunteer", "guess-guess-guess", &attacker).await;
        if r.0 == 429 {
            assert_eq!(r.2["code"], "too_many_login_attempts");
            assert!(
                retry_after(&r.1) <= cap,
                "never told to wait longer than the cap"
            );
        }
        statuses.push(r.0);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    let tried = statuses.iter().filter(|s| **s == 401).count();
    println!("attacker: {tried} guesses checked, {limited} refused");
    assert!(
        limited > tried,
        "most guesses refused: {tried} checked, {limited} refused"
    );
    // Checked guesses: 5 free, then at most one per wait (1 s, then the cap).
    assert!(tried <= 5 + 6, "{tried} guesses checked in 6 s");
    // The volunteer, at their own address, signs in at once.
    let started = Instant::now();
    let volunteer =
        login_via_forwarded(&env, "named-volunteer", PASSWORD, "2001:db8:600d::1").await;
    assert_eq!(volunteer.0, 200, "{}", volunteer.2);
    assert!(
        started.elapsed() < Duration::from_secs(cap),
        "not held back: {:?}",
        started.elapsed()
    );
    // Even a volunteer behind the attacker's own /64 is in within the cap.
    let started = Instant::now();
    wait_until(
        "sign-in from the attacker's /64",
        Duration::from_secs(cap + 3),
        || async {
            login_via_forwarded(&env, "named-volunteer", PASSWORD, "2001:db8:bad:1::beef")
                .await
                .0
                == 200
        },
    )
    .await;
    // At most the cap, plus the successful sign-in's own time (a hash) under load.
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_secs(cap + 2),
        "waited {waited:?} with a cap of {cap} s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_failed_sign_ins_from_rotating_addresses_in_one_ipv6_slash_64_are_limited() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| {
        c.limits.rate_auth_per_min = 20;
        c.limits.trusted_proxies = "127.0.0.0/8".parse().expect("a block");
        c.limits.forwarded_header = ForwardedHeader::Forwarded;
    })
    .await;
    env.user("target", Role::Volunteer).await;
    // One account: the backoff of its /64; other accounts: the address limit.
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..200u32 {
        let client = format!("2001:db8:1:2:{:x}:{:x}::1", i * 7, i);
        let (status, _, problem) = if i % 2 == 0 {
            login_via_forwarded(&env, "target", "not-the-password", &client).await
        } else {
            login_via_forwarded(&env, &format!("someone-{i}"), "not-the-password", &client).await
        };
        let code = problem["code"].as_str().unwrap_or("-").to_owned();
        *codes.entry(format!("{status} {code}")).or_default() += 1;
    }
    println!("200 sign-ins from one /64: {codes:?}");
    let limited: usize = codes
        .iter()
        .filter(|(k, _)| k.starts_with("429"))
        .map(|(_, n)| n)
        .sum();
    assert!(limited >= 150, "most are limited: {codes:?}");
    assert!(
        codes.contains_key("429 too_many_login_attempts"),
        "{codes:?}"
    );
    assert!(codes.contains_key("429 rate_limited"), "{codes:?}");
    // Another /64 is not held back, on either limit.
    let other = login_via_forwarded(&env, "target", PASSWORD, "2001:db8:1:3::1").await;
    assert_eq!(other.0, 200, "{}", other.2);
    let other =
        login_via_forwarded(&env, "someone-else", "not-the-password", "2001:db8:1:3::2").await;
    assert_eq!(other.0, 401, "{}", other.2);
}

/// A worker-api of its own process, so its metrics are its own.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn password_hashing_never_runs_more_than_the_configured_number_at_once() {
    let env = TestEnv::db_only().await;
    let (port, metrics_port) = (free_port(), free_port());
    let _api = Spawned(
        Command::new(binary("worker-api"))
            .env("DATABASE_URL", env.database_url())
            .env("SPOTCHECK_AMQP_NAMESPACE", &env.id)
            .env("SPOTCHECK_REDIS_PREFIX", &env.id)
            .env("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "SPOTCHECK_METRICS_ADDR",
                format!("127.0.0.1:{metrics_port}"),
            )
            .env("SPOTCHECK_MAX_CONCURRENT_HASHES", "2")
            .env("SPOTCHECK_HASH_WAIT_MS", "100")
            .env("SPOTCHECK_RATE_AUTH_PER_MIN", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start worker-api"),
    );
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until("worker-api ready", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), format!("{api}/readyz"));
        async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let attempts = (0..30).map(|i| {
        let (http, url) = (http.clone(), format!("{api}/v1/auth/login"));
        async move {
            let r = http
                .post(url)
                .json(&json!({"username": format!("nobody-{i}"), "password": "wrong-password"}))
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").cloned();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let checked = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    println!(
        "30 sign-ins at once: {checked} checked, {} busy",
        busy.len()
    );
    assert_eq!(checked + busy.len(), 30, "only 401 or 503: {answers:?}");
    assert!(checked >= 2, "some were hashed");
    assert!(
        !busy.is_empty(),
        "with 2 slots and a 100 ms wait, some of 30 are refused"
    );
    for (_, retry, body) in &busy {
        assert_eq!(body["code"], "busy", "{body}");
        assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
    }
    let metrics = crate::harness::metrics_text(&http, format!("127.0.0.1:{metrics_port}")).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(value("spotcheck_password_hash_slots"), 2.0);
    let peak = value("spotcheck_password_hashes_peak");
    println!("most hashes at once: {peak}");
    assert!((1.0..=2.0).contains(&peak), "peak {peak}");
    assert_eq!(
        value("spotcheck_password_hashes_refused_total"),
        busy.len() as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_byte_password_within_the_character_bound_is_created_and_signs_in() {
    let env = TestEnv::start().await;
    let admin = env.user("mb-admin", Role::Admin).await;
    // 200 characters, 800 bytes: within 256 characters, far over 256 bytes.
    let password = "🔑".repeat(200);
    assert!(password.len() > 256 && password.chars().count() <= 256);
    let (status, body) = env
        .call(
            reqwest::Method::POST,
            "/v1/staff/users",
            Some(&admin),
            Some(json!({"username": "wide", "password": password, "role": "volunteer"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env
        .call(LOGIN.0, LOGIN.1, None, login_body("wide", &password))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    // Over the bound in characters: refused at creation, never matched at sign-in.
    let long = "é".repeat(257);
    let (status, body) = env
        .call(
            reqwest::Method::POST,
            "/v1/staff/users",
            Some(&admin),
            Some(json!({"username": "too-wide", "password": long, "role": "volunteer"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
    let (status, _) = env
        .call(LOGIN.0, LOGIN.1, None, login_body("wide", &long))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_take_about_as_long_for_unknown_accounts_as_for_wrong_passwords() {
    let env = TestEnv::start().await;
    env.user("timed-user", Role::Volunteer).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        for (name, times) in [("timed-user", &mut known), ("no-such-user", &mut unknown)] {
            let started = Instant::now();
            let (status, _) = env
                .call(
                    LOGIN.0,
                    LOGIN.1,
                    None,
                    login_body(name, &format!("wrong-{i}")),
                )
                .await;
            times.push(started.elapsed());
            assert_eq!(status, 401);
        }
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2], unknown[2]);
    println!("median failed sign-in: wrong password {k:?}, unknown account {u:?}");
    // An unknown account without the dummy hash would answer in a fraction of this.
    assert!(
        u * 3 >= k && k * 3 >= u,
        "wrong password {k:?} vs unknown account {u:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_taken_back_keeps_a_wait_another_attempt_set_and_one_dropped_unchecked_is_not_counted()
 {
    use worker_api::backoff::{Outcome, SignInBackoff, keys};
    use worker_api::ratelimit::client_net::ClientNet;
    let env = TestEnv::db_only().await;
    let redis_url = worker_api::Config::defaults().services.redis_url;
    let redis = redis::aio::ConnectionManager::new(redis::Client::open(redis_url).unwrap())
        .await
        .unwrap();
    let mut edge = worker_api::Config::defaults().edge;
    edge.login_free_failures = 2;
    let tasks = tokio_util::task::TaskTracker::new();
    let backoff = SignInBackoff::new(redis.clone(), &env.id, &edge, tasks.clone());
    let field = |key: String, name: &'static str| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("HGET")
                .arg(&key)
                .arg(name)
                .query_async::<Option<u64>>(&mut redis)
                .await
                .unwrap()
        }
    };

    // A is admitted while failures are free; B, at the same time, sets a wait.
    let net = ClientNet::of("192.0.2.1".parse().unwrap());
    let (record, _) = keys(&env.id, "someone", net);
    let a = backoff.admit("someone", net).await.expect("free");
    let b = backoff
        .admit("someone", net)
        .await
        .expect("the last free one");
    let gate = field(record.clone(), "until").await.expect("B set a wait");
    // A was never checked (no hashing slot): taken back, B's wait stays.
    a.settle(Outcome::NotChecked).await;
    b.failed();
    assert_eq!(field(record.clone(), "until").await, Some(gate));
    assert_eq!(field(record, "n").await, Some(1), "only B counts");

    // Attempts dropped before their password was checked (a database error,
    // a client gone) are taken back in the background: none of them counts.
    let other = ClientNet::of("2001:db8:7::1".parse().unwrap());
    let (record, _) = keys(&env.id, "someone-else", other);
    for _ in 0..5 {
        drop(
            backoff
                .admit("someone-else", other)
                .await
                .expect("never held back"),
        );
        tasks.close();
        tasks.wait().await;
        tasks.reopen();
    }
    assert_eq!(field(record.clone(), "n").await, Some(0));
    assert_eq!(field(record, "until").await, None);
}
