//! The negative token matrix: forged, broken and out-of-date access tokens,
//! minted both by an independent library (PyJWT, `tests/py/mint_tokens.py`)
//! and by our own code, are refused with 401 before any handler runs; a role
//! raised in a correctly signed token grants nothing (403).

use crate::harness::{PASSWORD, TestEnv};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use worker_api::auth::keys::KeySet;

/// Rows whose number any handler reached by these calls would change.
pub async fn fingerprint(env: &TestEnv) -> Vec<i64> {
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE status <> 'active'),
                (SELECT count(*) FROM audit_log), (SELECT count(*) FROM votes),
                (SELECT count(*) FROM sampling_policies),
                (SELECT count(*) FROM escalations WHERE status <> 'open'),
                (SELECT count(*) FROM volunteer_seller_links)",
    )
    .fetch_one(&env.pool)
    .await
    .expect("fingerprint");
    vec![row.0, row.1, row.2, row.3, row.4, row.5, row.6]
}

/// An admin and a volunteer, with their user ids.
async fn admin_and_volunteer(env: &TestEnv) -> (String, String) {
    let mut ids = Vec::new();
    for (name, role) in [
        ("tok-admin", Role::Admin),
        ("tok-volunteer", Role::Volunteer),
    ] {
        let token = env.user(name, role).await;
        let (_, me) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
        ids.push(me["user_id"].as_str().expect("a user id").to_owned());
    }
    (ids[0].clone(), ids[1].clone())
}

/// Every case must be refused and leave no trace; `valid` must work.
async fn assert_matrix(env: &TestEnv, source: &str, tokens: &BTreeMap<String, String>) {
    let valid = tokens.get("valid").expect("a control token");
    let body =
        json!({"username": format!("{source}-valid"), "password": PASSWORD, "role": "volunteer"});
    let (status, _) = env
        .call(Method::POST, "/v1/staff/users", Some(valid), Some(body))
        .await;
    assert_eq!(status, 201, "{source}: the control token must work");
    for (case, token) in tokens.iter().filter(|(case, _)| *case != "valid") {
        let before = fingerprint(env).await;
        let raised = case == "role_raised";
        let (want, code) = if raised {
            (403, "forbidden")
        } else {
            (401, "unauthorized")
        };
        let body =
            json!({"username": format!("{source}-{case}"), "password": PASSWORD, "role": "staff"});
        let (status, problem) = env
            .call(Method::POST, "/v1/staff/users", Some(token), Some(body))
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (want, Some(code)),
            "{source}: {case}"
        );
        let (status, _) = env
            .call(Method::GET, "/v1/staff/stats", Some(token), None)
            .await;
        assert_eq!(status, want, "{source}: {case} on stats");
        let (status, me) = env.call(Method::GET, "/v1/me", Some(token), None).await;
        if raised {
            assert_eq!(
                (status, me["role"].as_str()),
                (200, Some("volunteer")),
                "the role comes from the database"
            );
        } else {
            assert_eq!(status, 401, "{source}: {case} on /v1/me");
        }
        assert_eq!(
            fingerprint(env).await,
            before,
            "{source}: {case} reached a handler"
        );
    }
}

/// The interpreter with PyJWT: `SPOTCHECK_PYTHON` (set by the test command) or `python3`.
fn python_with_pyjwt() -> Option<String> {
    let python = std::env::var("SPOTCHECK_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|out| out.status.success());
    match (ok, std::env::var_os("CI").is_some()) {
        (true, _) => Some(python),
        (false, true) => {
            panic!("{python} with PyJWT[crypto] is required in CI (scripts/test.sh installs it)")
        }
        (false, false) => {
            eprintln!(
                "NOTICE: skipping the PyJWT token matrix: {python} lacks PyJWT[crypto]; run scripts/test.sh"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_minted_by_pyjwt_are_refused_unless_correctly_signed_and_a_raised_role_grants_nothing()
 {
    let Some(python) = python_with_pyjwt() else {
        return;
    };
    let env = TestEnv::start().await;
    let (admin, volunteer) = admin_and_volunteer(&env).await;
    let key: &Path = env.key_file.as_ref();
    let kid = KeySet::from_pem_file(key).expect("the key").signing_kid;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/mint_tokens.py");
    let out = Command::new(&python)
        .arg(script)
        // `--opt=value`: a base64url kid or id may begin with `-`, which argparse
        // would otherwise take for an option.
        .arg(format!("--key={}", key.display()))
        .args([
            format!("--kid={kid}"),
            format!("--sub={admin}"),
            format!("--volunteer={volunteer}"),
        ])
        .output()
        .expect("run the minting script");
    assert!(
        out.status.success(),
        "mint_tokens.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens: BTreeMap<String, String> =
        serde_json::from_slice(&out.stdout).expect("a JSON object of tokens");
    assert!(
        tokens.len() >= 15,
        "every case was minted: {:?}",
        tokens.keys()
    );
    assert_matrix(&env, "pyjwt", &tokens).await;
}

/// Tokens our own library signs, and hand-made ones it would never produce.
fn rust_tokens(key: &Path, admin: &str, volunteer: &str) -> BTreeMap<String, String> {
    let pem = std::fs::read_to_string(key).expect("the key file");
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).expect("an Ed25519 key");
    let kid = KeySet::from_pem_file(key).expect("the key").signing_kid;
    let right = EncodingKey::from_ed_pem(pem.as_bytes()).expect("the encoding key");
    let other_pem = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
        .to_pkcs8_pem(Default::default())
        .expect("a PEM");
    let other = EncodingKey::from_ed_pem(other_pem.as_bytes()).expect("another key");
    let public_pem = signing
        .verifying_key()
        .to_public_key_pem(Default::default())
        .expect("the public PEM");
    let now = chrono::Utc::now().timestamp();
    let claims = |changes: Value| {
        let mut c = json!({"sub": admin, "role": "admin", "iss": "spotcheck", "aud": "spotcheck-api",
            "iat": now, "nbf": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string()});
        for (k, v) in changes.as_object().expect("an object") {
            match v {
                Value::Null => c.as_object_mut().expect("an object").remove(k),
                v => c
                    .as_object_mut()
                    .expect("an object")
                    .insert(k.clone(), v.clone()),
            };
        }
        c
    };
    let sign = |alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).expect("encode")
    };
    let eddsa = |changes: Value| sign(Algorithm::EdDSA, Some(&kid), &claims(changes), &right);
    let segment = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let valid = eddsa(json!({}));
    let mut parts = valid.split('.');
    let (header, _, signature) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
    let none_header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let hs_secret = EncodingKey::from_secret(public_pem.as_bytes());
    BTreeMap::from([
        ("valid", valid.clone()),
        (
            "alg_none",
            format!("{}.{}.", segment(&none_header), segment(&claims(json!({})))),
        ),
        (
            "hs256_public_key_pem_as_secret",
            sign(Algorithm::HS256, Some(&kid), &claims(json!({})), &hs_secret),
        ),
        (
            "wrong_key",
            sign(Algorithm::EdDSA, Some(&kid), &claims(json!({})), &other),
        ),
        (
            "tampered_payload",
            format!(
                "{header}.{}.{signature}",
                segment(&claims(json!({"exp": now + 86_400 * 365})))
            ),
        ),
        (
            "expired",
            eddsa(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
        ),
        (
            "not_yet_valid",
            eddsa(json!({"nbf": now + 3600, "exp": now + 7200})),
        ),
        ("wrong_issuer", eddsa(json!({"iss": "someone-else"}))),
        ("wrong_audience", eddsa(json!({"aud": "another-api"}))),
        (
            "unknown_kid",
            sign(
                Algorithm::EdDSA,
                Some("no-such-key"),
                &claims(json!({})),
                &right,
            ),
        ),
        (
            "no_kid",
            sign(Algorithm::EdDSA, None, &claims(json!({})), &right),
        ),
        (
            "exp_as_string",
            eddsa(json!({"exp": (now + 600).to_string()})),
        ),
        ("no_sub", eddsa(json!({"sub": null}))),
        ("no_exp", eddsa(json!({"exp": null}))),
        (
            "role_raised",
            eddsa(json!({"sub": volunteer, "role": "admin"})),
        ),
    ])
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_made_with_our_own_library_are_refused_the_same_way() {
    let env = TestEnv::start().await;
    let (admin, volunteer) = admin_and_volunteer(&env).await;
    let tokens = rust_tokens(env.key_file.as_ref(), &admin, &volunteer);
    assert_matrix(&env, "rust", &tokens).await;
}
