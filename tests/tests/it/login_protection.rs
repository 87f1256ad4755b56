//! Sign-in protection: attempts are limited per account whatever address they
//! come from, and a failure is answered the same way, and in about the same
//! time, whether or not the account exists.

use crate::harness::{PASSWORD, TestEnv};
use crate::ratelimit::{LOGIN, assert_limited, login_body, send};
use serde_json::{Value, json};
use spotcheck_shared::Role;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_attempts_are_limited_per_account_from_any_address_alike_for_unknown_accounts() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| {
        c.limits.login_attempts_per_account = 3;
        c.limits.trusted_proxies = "127.0.0.0/8".parse().expect("a block");
    })
    .await;
    env.user("victim", Role::Volunteer).await;
    env.user("bystander", Role::Volunteer).await;
    let mut answers = Vec::new();
    for name in ["victim", "ghost"] {
        let mut seen = Vec::new();
        for i in 0..4 {
            let xff = format!("192.0.2.{i}");
            let (status, _, problem) = send(
                &env,
                &env.api,
                LOGIN,
                None,
                login_body(name, "wrong-password"),
                Some(&xff),
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
    let codes: Vec<(u16, Value)> = answers[0].iter().map(|(s, c, _)| (*s, c.clone())).collect();
    assert_eq!(codes[..3], vec![(401, json!("invalid_credentials")); 3]);
    assert_eq!(codes[3], (429, json!("too_many_login_attempts")));
    let locked = send(
        &env,
        &env.api,
        LOGIN,
        None,
        login_body("victim", PASSWORD),
        Some("192.0.2.200"),
    )
    .await;
    assert_limited(&locked, "too_many_login_attempts", 900);
    let other = send(
        &env,
        &env.api,
        LOGIN,
        None,
        login_body("bystander", PASSWORD),
        None,
    )
    .await;
    assert_eq!(other.0, 200, "another account signs in");
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
