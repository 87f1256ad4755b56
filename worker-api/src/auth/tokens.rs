//! Access tokens: short-lived JWTs signed with EdDSA, carrying a key id; the
//! algorithm is pinned and `exp`, `nbf`, `iat`, `iss`, `aud` and `sub` are required.
//!
//! A signature check costs tens of microseconds, more than the rest of a claim,
//! and a volunteer sends the same token with every request. So a token that
//! verified is remembered (by its SHA-256) until it expires: a later request
//! with exactly that token skips the signature check, never the expiry. The
//! memory is bounded: past [`MAX_REMEMBERED`] entries the cache starts over.

use super::keys::KeySet;
use dashmap::DashMap;
use jsonwebtoken::{Algorithm, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spotcheck_shared::{Role, UserId};
use std::sync::Arc;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not valid before, Unix seconds.
    pub nbf: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Token id.
    pub jti: String,
}

/// Verified tokens remembered at most (about 100 bytes each).
pub const MAX_REMEMBERED: usize = 200_000;

/// Seconds of clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 5;

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    keys: KeySet,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    eddsa: Validation,
    es256: Validation,
    verified: Arc<DashMap<[u8; 32], (UserId, Claims)>>,
}

/// Why a token was refused (never shown to the client beyond "invalid token").
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The header names no key we know.
    #[error("unknown or missing key id")]
    UnknownKey,
    /// Signature, algorithm, time or audience checks failed.
    #[error("{0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The header's algorithm is not the named key's.
    #[error("the algorithm does not match the key")]
    WrongAlgorithm,
    /// `sub` is not a user id.
    #[error("malformed subject")]
    BadSubject,
}

impl TokenIssuer {
    /// An issuer with these keys, names and lifetime.
    pub fn new(keys: KeySet, issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        // One validation per algorithm: each key verifies only its own
        // algorithm, whatever the token's header asks for.
        let validation = |alg| {
            let mut validation = Validation::new(alg);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = LEEWAY_SECS;
            validation
        };
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl_secs: ttl_secs as i64,
            eddsa: validation(Algorithm::EdDSA),
            es256: validation(Algorithm::ES256),
            verified: Arc::default(),
        }
    }

    /// The key set (for the JWKS route).
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Access-token lifetime in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// A signed access token for `user` with `role`.
    pub fn issue(&self, user: UserId, role: Role, now: i64) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user.to_string(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + self.ttl_secs,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(self.keys.signing_alg);
        header.kid = Some(self.keys.signing_kid.clone());
        Ok(encode(&header, &claims, &self.keys.signing)?)
    }

    /// Verifies a token and returns the user it names.
    pub fn verify(&self, token: &str) -> Result<(UserId, Claims), TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY_SECS as i64;
        if let Some(known) = self.verified.get(&digest) {
            if now <= known.1.exp + leeway {
                return Ok(known.clone());
            }
            drop(known);
            self.verified.remove(&digest);
        }
        let verified = self.verify_signature(token)?;
        if self.verified.len() >= MAX_REMEMBERED {
            self.verified.clear();
        }
        self.verified.insert(digest, verified.clone());
        Ok(verified)
    }

    /// Verifies a token's signature and claims.
    fn verify_signature(&self, token: &str) -> Result<(UserId, Claims), TokenError> {
        let header = decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.find(kid))
            .ok_or(TokenError::UnknownKey)?;
        let validation = match key.alg {
            Algorithm::EdDSA => &self.eddsa,
            Algorithm::ES256 => &self.es256,
            _ => return Err(TokenError::WrongAlgorithm),
        };
        if header.alg != key.alg {
            return Err(TokenError::WrongAlgorithm);
        }
        let data = decode::<Claims>(token, &key.key, validation)?;
        let user = data
            .claims
            .sub
            .parse()
            .map_err(|_| TokenError::BadSubject)?;
        Ok((user, data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            KeySet::generate().unwrap(),
            "spotcheck",
            "spotcheck-api",
            900,
        )
    }

    #[test]
    fn a_remembered_token_still_expires_and_a_changed_one_is_checked_afresh() {
        let issuer = issuer();
        let user = UserId(uuid::Uuid::now_v7());
        let now = chrono::Utc::now().timestamp();
        let token = issuer.issue(user, Role::Volunteer, now).unwrap();
        assert_eq!(issuer.verify(&token).unwrap().0, user);
        assert_eq!(issuer.verify(&token).unwrap().0, user, "from memory");
        let mut forged = token.clone();
        forged.pop();
        assert!(issuer.verify(&forged).is_err());
        // Remembered with an expiry that has passed: refused, and forgotten.
        let (_, mut claims) = issuer.verify(&token).unwrap();
        claims.exp = now - 60;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        issuer.verified.insert(digest, (user, claims));
        let (_, again) = issuer.verify(&token).unwrap();
        assert_ne!(again.exp, now - 60, "the lapsed memory was not used");
        let expired = issuer.issue(user, Role::Volunteer, now - 2_000).unwrap();
        assert!(issuer.verify(&expired).is_err());
        assert!(issuer.verify(&expired).is_err());
    }

    #[test]
    fn a_token_verifies_with_its_issuer_and_not_with_another_key() {
        let a = issuer();
        let now = chrono::Utc::now().timestamp();
        let user = UserId::new();
        let token = a.issue(user, Role::Volunteer, now).unwrap();
        assert_eq!(a.verify(&token).unwrap().0, user);
        assert!(issuer().verify(&token).is_err());
    }

    #[test]
    fn a_p256_issuer_signs_es256_tokens_that_only_it_verifies() {
        let path = std::env::temp_dir().join(format!("p256-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, crate::auth::keys::tests::p256_pem(9)).unwrap();
        let keys = KeySet::from_pem_file(&path);
        std::fs::remove_file(&path).unwrap();
        let a = TokenIssuer::new(keys.unwrap(), "spotcheck", "spotcheck-api", 900);
        let now = chrono::Utc::now().timestamp();
        let user = UserId::new();
        let token = a.issue(user, Role::Volunteer, now).unwrap();
        assert_eq!(decode_header(&token).unwrap().alg, Algorithm::ES256);
        assert_eq!(a.verify(&token).unwrap().0, user);
        assert!(
            issuer().verify(&token).is_err(),
            "an Ed25519 set refuses it"
        );
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let a = issuer();
        let now = chrono::Utc::now().timestamp();
        let old = a.issue(UserId::new(), Role::Staff, now - 3600).unwrap();
        assert!(a.verify(&old).is_err());
        let future = a.issue(UserId::new(), Role::Staff, now + 3600).unwrap();
        assert!(a.verify(&future).is_err());
    }
}
