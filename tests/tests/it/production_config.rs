//! Production configuration refuses to be unsafe: outside development every
//! secret must be the deployment's own (not a published default, long enough),
//! a refusal names the setting and comes before any connection, every secret
//! can be read from a `..._FILE` path, and the signing key may be P-256 as well
//! as Ed25519, with the JWKS publishing it.

use crate::harness::tempfile_path::TempPath;
use crate::harness::{TestEnv, binary, free_port, signing_key_file, wait_until};
use reqwest::Method;
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Nothing listens here: a binary that reached its first connection would fail
/// with a connection error instead of naming the setting.
const DEAD_DATABASE: &str = "postgres://postgres@127.0.0.1:1/nothing";
const OWN_KEY: &str = "an-own-key-of-at-least-thirty-two-characters";

/// Runs `program` with `env` (on top of production mode and a dead database)
/// and returns its exit success and its standard error.
async fn run_refused(program: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(binary(program));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SPOTCHECK_ENV", "production")
        .env("DATABASE_URL", DEAD_DATABASE)
        .env("SPOTCHECK_HTTP_ADDR", "127.0.0.1:0")
        .env("SPOTCHECK_METRICS_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("a refused binary exits at once")
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A binary, the settings it gets, and what its refusal must say.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn production_with_a_default_or_short_secret_refuses_to_start_naming_the_setting() {
    let key = signing_key_file();
    let key_path = key.as_ref().to_string_lossy().into_owned();
    let cases: Vec<Refusal> = vec![
        // The gold key left at its published default.
        (
            "worker-api",
            vec![("SPOTCHECK_JWT_KEY_FILE", &key_path)],
            "SPOTCHECK_GOLD_KEY is a published default",
        ),
        (
            "worker-api",
            vec![
                ("SPOTCHECK_JWT_KEY_FILE", &key_path),
                ("SPOTCHECK_GOLD_KEY", "development-gold-key"),
            ],
            "SPOTCHECK_GOLD_KEY is a published default",
        ),
        (
            "worker-api",
            vec![
                ("SPOTCHECK_JWT_KEY_FILE", &key_path),
                ("SPOTCHECK_GOLD_KEY", "too-short"),
            ],
            "SPOTCHECK_GOLD_KEY has 9 characters",
        ),
        (
            "worker-api",
            vec![("SPOTCHECK_GOLD_KEY", OWN_KEY)],
            "SPOTCHECK_JWT_KEY_FILE is required",
        ),
        (
            "worker-api",
            vec![
                ("SPOTCHECK_JWT_KEY_FILE", &key_path),
                ("SPOTCHECK_GOLD_KEY", OWN_KEY),
                ("SPOTCHECK_ADMIN_USERNAME", "root-admin"),
                ("SPOTCHECK_ADMIN_PASSWORD", "demo-admin-password"),
            ],
            "SPOTCHECK_ADMIN_PASSWORD is a published default",
        ),
        (
            "worker-api",
            vec![
                ("SPOTCHECK_JWT_KEY_FILE", &key_path),
                ("SPOTCHECK_GOLD_KEY", OWN_KEY),
                ("SPOTCHECK_ADMIN_USERNAME", "root-admin"),
                ("SPOTCHECK_ADMIN_PASSWORD", "only-12-char"),
            ],
            "SPOTCHECK_ADMIN_PASSWORD has 12 characters",
        ),
        (
            "worker-api",
            vec![
                ("SPOTCHECK_JWT_KEY_FILE", &key_path),
                ("SPOTCHECK_GOLD_KEY", OWN_KEY),
                ("SPOTCHECK_ADMIN_USERNAME", "root-admin"),
            ],
            "SPOTCHECK_ADMIN_USERNAME is set without SPOTCHECK_ADMIN_PASSWORD",
        ),
        (
            "coordinator",
            vec![],
            "SPOTCHECK_SAMPLING_KEY is a published default",
        ),
        (
            "coordinator",
            vec![("SPOTCHECK_SAMPLING_KEY", "0123456789")],
            "SPOTCHECK_SAMPLING_KEY has 10 characters",
        ),
    ];
    for (program, env, expected) in cases {
        let (ok, stderr) = run_refused(program, &env).await;
        assert!(!ok, "{program} with {env:?} started");
        assert!(
            stderr.contains(expected),
            "{program} with {env:?}: expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains(OWN_KEY) && !stderr.contains("demo-admin-password"),
            "a refusal never prints a secret: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_given_both_ways_or_as_an_unreadable_file_is_refused() {
    let key = signing_key_file();
    let key_path = key.as_ref().to_string_lossy().into_owned();
    let gold = TempPath::with_contents(OWN_KEY);
    let gold_path = gold.as_ref().to_string_lossy().into_owned();
    let (ok, stderr) = run_refused(
        "worker-api",
        &[
            ("SPOTCHECK_JWT_KEY_FILE", &key_path),
            ("SPOTCHECK_GOLD_KEY", OWN_KEY),
            ("SPOTCHECK_GOLD_KEY_FILE", &gold_path),
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("SPOTCHECK_GOLD_KEY and SPOTCHECK_GOLD_KEY_FILE are both set"),
        "{stderr}"
    );
    let (ok, stderr) = run_refused(
        "coordinator",
        &[("SPOTCHECK_SAMPLING_KEY_FILE", "/nonexistent/sampling-key")],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("SPOTCHECK_SAMPLING_KEY_FILE"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_secret_from_a_file_both_binaries_start_and_the_bootstrap_admin_signs_in() {
    let env = TestEnv::db_only().await;
    let database = TempPath::with_contents(&format!("{}\n", env.db_url));
    let sampling = TempPath::with_contents(&format!("sampling-{OWN_KEY}\n"));
    let gold = TempPath::with_contents(&format!("gold-{OWN_KEY}\n"));
    let admin_password = "a bootstrap password from a file";
    let admin = TempPath::with_contents(&format!("{admin_password}\n"));
    let key = signing_key_file();
    let (api_port, ops_port) = (free_port(), free_port());
    let file = |p: &TempPath| p.as_ref().to_string_lossy().into_owned();
    let common = [
        ("SPOTCHECK_ENV", "production".to_owned()),
        ("DATABASE_URL_FILE", file(&database)),
        ("SPOTCHECK_AMQP_NAMESPACE", env.id.clone()),
        ("SPOTCHECK_REDIS_PREFIX", env.id.clone()),
        ("SPOTCHECK_SHUTDOWN_GRACE_SECS", "2".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let spawn = |program: &str, extra: Vec<(&str, String)>| {
        let mut cmd = Command::new(binary(program));
        cmd.envs(common.iter().cloned())
            .envs(extra)
            .env_remove("DATABASE_URL")
            .env_remove("SPOTCHECK_GOLD_KEY")
            .env_remove("SPOTCHECK_SAMPLING_KEY")
            .env_remove("SPOTCHECK_ADMIN_PASSWORD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd.spawn().expect("start a binary")
    };
    let _coordinator = spawn(
        "coordinator",
        vec![
            ("SPOTCHECK_SAMPLING_KEY_FILE", file(&sampling)),
            ("SPOTCHECK_METRICS_ADDR", format!("127.0.0.1:{ops_port}")),
        ],
    );
    let _api = spawn(
        "worker-api",
        vec![
            ("SPOTCHECK_GOLD_KEY_FILE", file(&gold)),
            ("SPOTCHECK_JWT_KEY_FILE", file(&key)),
            ("SPOTCHECK_ADMIN_USERNAME", "root-admin".to_owned()),
            ("SPOTCHECK_ADMIN_PASSWORD_FILE", file(&admin)),
            ("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{api_port}")),
            ("SPOTCHECK_METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ],
    );
    let http = reqwest::Client::new();
    for url in [
        format!("http://127.0.0.1:{ops_port}/readyz"),
        format!("http://127.0.0.1:{api_port}/readyz"),
    ] {
        let http = http.clone();
        wait_until(&url.clone(), Duration::from_secs(60), move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }
    // The password came from the file, less its line break.
    let login = http
        .post(format!("http://127.0.0.1:{api_port}/v1/auth/login"))
        .json(&json!({"username": "root-admin", "password": admin_password}))
        .send()
        .await
        .expect("login answers");
    assert_eq!(login.status(), 200);
    let body: serde_json::Value = login.json().await.expect("json");
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(
        body["access_token"].as_str().expect("a token"),
    )
    .expect("a JWT")
    .claims;
    assert_eq!(claims["role"], "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_p256_signing_key_signs_es256_tokens_and_the_jwks_publishes_it() {
    use p256::pkcs8::EncodePrivateKey;
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let pem = p256::SecretKey::from_slice(&bytes)
        .expect("a P-256 scalar")
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .expect("PEM");
    let key = TempPath::with_contents(&pem);
    let mut env = TestEnv::db_only().await;
    let path = key.as_ref().to_path_buf();
    env.start_api(move |c| c.jwt_key_file = Some(path)).await;
    let user = format!("es256_{}", &env.id[..8]);
    let token = env.user(&user, spotcheck_shared::Role::Volunteer).await;
    let header = jsonwebtoken::decode_header(&token).expect("a header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let (status, jwks) = env
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(status, 200);
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(jwk["kid"].as_str(), header.kid.as_deref());
    // Verified from the published JWK alone, as a client would.
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y"),
    )
    .expect("a key from the JWK");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["spotcheck-api"]);
    let verified =
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).expect("valid");
    assert!(verified.claims["sub"].is_string());
    let (status, _) = env.call(Method::GET, "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200);
}
