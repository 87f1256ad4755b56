//! Password hashing with Argon2id, always off the async threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::LazyLock;

/// A hash of a password nobody has, verified when the user does not exist so
/// that failures take the same time either way.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking("not-a-real-password").expect("hashing works"));

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

fn verify_blocking(password: &str, hash: Option<&str>) -> bool {
    let stored = hash.unwrap_or(DUMMY_HASH.as_str());
    let ok = PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    ok && hash.is_some()
}

/// Hashes a password (PHC string).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

/// Whether `password` matches `hash`; with no hash (unknown user) it does the
/// same work and answers false.
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_blocking(&password, hash.as_deref()))
        .await
        .unwrap_or(false)
}

/// Checks a new password's length.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..=9 => Err("password must be at least 10 characters"),
        10..=256 => Ok(()),
        _ => Err("password must be at most 256 characters"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(verify("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify("wrong".into(), Some(h)).await);
        assert!(!verify("not-a-real-password".into(), None).await);
    }
}
