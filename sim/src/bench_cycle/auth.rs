//! The benchmark's users and their access tokens: accounts written straight
//! into `users` (no Argon2 sign-in for thousands of volunteers) and JWTs
//! minted here with worker-api's signing key, in exactly the shape worker-api
//! issues (EdDSA, the key's thumbprint as `kid`, the same claims).

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, encode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::path::Path;
use uuid::Uuid;

/// worker-api's default `SPOTCHECK_JWT_ISSUER`.
pub const ISSUER: &str = "spotcheck";
/// worker-api's default `SPOTCHECK_JWT_AUDIENCE`.
pub const AUDIENCE: &str = "spotcheck-api";
/// A well-formed Argon2id PHC string; nobody signs in with it.
const UNUSABLE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2gtY3ljbGUtc2FsdA$\
                             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The claims worker-api puts in an access token.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: String,
    role: &'a str,
    iss: &'a str,
    aud: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
}

/// Mints access tokens with the key worker-api signs with.
pub struct Minter {
    kid: String,
    signing: EncodingKey,
    verifying: DecodingKey,
    ttl_secs: i64,
}

/// The key id worker-api gives an Ed25519 public key: the first 16 bytes of the
/// SHA-256 of its RFC 7638-style JWK, base64url (see worker-api's `auth::keys`).
pub fn key_id(public: &[u8; 32]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public);
    let thumb = Sha256::digest(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
    URL_SAFE_NO_PAD.encode(&thumb[..16])
}

impl Minter {
    /// Reads the PKCS#8 PEM private key at `path`; tokens live `ttl_secs`.
    pub fn from_pem_file(path: &Path, ttl_secs: i64) -> anyhow::Result<Self> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PEM key: {e}", path.display()))?;
        let public = key.verifying_key().to_bytes();
        Ok(Self {
            kid: key_id(&public),
            signing: EncodingKey::from_ed_pem(pem.as_bytes()).context("loading the signing key")?,
            verifying: DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(public))
                .context("building the verification key")?,
            ttl_secs,
        })
    }

    /// The key id tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for the baseline's verification.
    pub fn verifying_key(&self) -> &DecodingKey {
        &self.verifying
    }

    /// A signed access token for `user` with `role`.
    pub fn token(&self, user: Uuid, role: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_string(),
            role,
            iss: ISSUER,
            aud: AUDIENCE,
            exp: now + self.ttl_secs,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.signing).context("signing an access token")
    }
}

/// The checks worker-api makes of a token, for the baseline to make the same.
pub fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    validation
}

/// One account of the run and its token.
#[derive(Debug, Clone)]
pub struct User {
    /// `users.id`.
    pub id: Uuid,
    /// A bearer token for it.
    pub token: String,
}

/// Every account of the run.
#[derive(Debug, Clone)]
pub struct Users {
    /// The staff member who sets the sampling rules.
    pub staff: User,
    /// The volunteers, `benchc-vol-00000` onwards.
    pub volunteers: Vec<User>,
}

impl Users {
    /// The tokens of volunteers `from..from + count` (wrapping around).
    pub fn tokens(&self, from: usize, count: usize) -> Vec<String> {
        let n = self.volunteers.len().max(1);
        (0..count)
            .map(|i| self.volunteers[(from + i) % n].token.clone())
            .collect()
    }
}

/// Inserts a staff account and `volunteers` active volunteers in one statement
/// each, and mints a token for every one of them.
pub async fn create_users(
    pool: &PgPool,
    minter: &Minter,
    volunteers: usize,
) -> anyhow::Result<Users> {
    let staff_id = Uuid::now_v7();
    insert(pool, &[staff_id], &["benchc-staff".to_owned()], "staff").await?;
    let ids: Vec<Uuid> = (0..volunteers).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..volunteers)
        .map(|i| format!("benchc-vol-{i:05}"))
        .collect();
    insert(pool, &ids, &names, "volunteer").await?;
    let staff = User {
        id: staff_id,
        token: minter.token(staff_id, "staff")?,
    };
    let volunteers = ids
        .into_iter()
        .map(|id| {
            Ok(User {
                id,
                token: minter.token(id, "volunteer")?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Users { staff, volunteers })
}

async fn insert(pool: &PgPool, ids: &[Uuid], names: &[String], role: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, status)
         SELECT id, username, $3, $4, 'active' FROM unnest($1::uuid[], $2::text[]) AS u (id, username)",
    )
    .bind(ids)
    .bind(names)
    .bind(UNUSABLE_HASH)
    .bind(role)
    .execute(pool)
    .await
    .with_context(|| format!("creating {} {role} accounts", ids.len()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::decode;

    #[test]
    fn a_minted_token_passes_the_checks_worker_api_makes() {
        let dir = std::env::temp_dir().join(format!("benchc-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        crate::fault::world::write_signing_key(&path).unwrap();
        let minter = Minter::from_pem_file(&path, 600).unwrap();
        let user = Uuid::now_v7();
        let token = minter.token(user, "volunteer").unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(minter.kid()));
        let data =
            decode::<serde_json::Value>(&token, minter.verifying_key(), &validation()).unwrap();
        assert_eq!(data.claims["sub"], user.to_string());
        assert_eq!(data.claims["role"], "volunteer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_key_id_is_the_thumbprint_worker_api_computes() {
        // The same derivation, spelled out: SHA-256 of the canonical JWK, 16 bytes, base64url.
        let kid = key_id(&[7u8; 32]);
        assert_eq!(kid.len(), 22);
        assert_eq!(kid, key_id(&[7u8; 32]));
        assert_ne!(kid, key_id(&[8u8; 32]));
    }
}
