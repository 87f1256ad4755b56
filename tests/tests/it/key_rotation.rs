//! Rotating the signing key: while the old key is still published as a
//! verification key, tokens signed by either key work and the JWKS lists both;
//! once it is removed, the old key's tokens fail and the new key's still work.
//! Outside development, no configured key means no start.

use crate::harness::{TestEnv, signing_key_file};
use reqwest::Method;
use spotcheck_shared::Role;
use std::collections::BTreeSet;
use std::path::Path;
use worker_api::auth::keys::KeySet;

fn kid_of(file: &Path) -> String {
    KeySet::from_pem_file(file).expect("a key").signing_kid
}

fn kid_in(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token)
        .expect("a JWT header")
        .kid
}

async fn published_kids(env: &TestEnv) -> BTreeSet<String> {
    let (status, jwks) = env
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(status, 200);
    jwks["keys"]
        .as_array()
        .expect("a key list")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

async fn me_status(env: &TestEnv, token: &str) -> u16 {
    env.call(Method::GET, "/v1/me", Some(token), None).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn during_a_rotation_both_keys_verify_and_after_it_the_old_keys_tokens_fail() {
    let mut env = TestEnv::start().await;
    let old_key = env.key_file.as_ref().to_path_buf();
    let (old_kid, new_key) = (kid_of(&old_key), signing_key_file());
    let new_kid = kid_of(new_key.as_ref());
    let old_token = env.user("rotating-user", Role::Volunteer).await;
    assert_eq!(kid_in(&old_token).as_deref(), Some(old_kid.as_str()));

    // Step 1: sign with the new key, keep verifying the old one.
    let new_path = new_key.as_ref().to_path_buf();
    let (signing, verifying) = (new_path.clone(), old_key.clone());
    env.start_api(move |c| {
        c.jwt_key_file = Some(signing);
        c.jwt_verify_key_files = vec![verifying];
    })
    .await;
    assert_eq!(
        published_kids(&env).await,
        BTreeSet::from([old_kid.clone(), new_kid.clone()]),
        "the JWKS publishes both keys during the rotation"
    );
    let new_token = env.login("rotating-user").await;
    assert_eq!(kid_in(&new_token).as_deref(), Some(new_kid.as_str()));
    assert_eq!(
        me_status(&env, &old_token).await,
        200,
        "an old-key token still works"
    );
    assert_eq!(
        me_status(&env, &new_token).await,
        200,
        "a new-key token works"
    );

    // Step 2, after the access-token lifetime: the old key is removed.
    env.start_api(move |c| c.jwt_key_file = Some(new_path))
        .await;
    assert_eq!(published_kids(&env).await, BTreeSet::from([new_kid]));
    let (status, problem) = env
        .call(Method::GET, "/v1/me", Some(&old_token), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(me_status(&env, &new_token).await, 200);
}

#[test]
fn outside_development_the_service_refuses_to_start_without_a_configured_key() {
    let mut config = worker_api::Config::defaults();
    config.services.env = "production".into();
    config.jwt_key_file = None;
    let refusal = worker_api::app::load_keys(&config)
        .err()
        .expect("no key, no start");
    assert!(
        refusal.to_string().contains("SPOTCHECK_JWT_KEY_FILE"),
        "{refusal}"
    );
    config.services.env = "development".into();
    assert!(
        worker_api::app::load_keys(&config).is_ok(),
        "development generates a key"
    );
    let key = signing_key_file();
    config.services.env = "production".into();
    config.jwt_key_file = Some(key.as_ref().to_path_buf());
    let keys = worker_api::app::load_keys(&config).expect("the configured key");
    assert_eq!(keys.signing_kid, kid_of(key.as_ref()));
}
