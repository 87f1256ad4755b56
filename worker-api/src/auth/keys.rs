//! Signing and verification keys for access tokens (EdDSA over Ed25519), and
//! the JWKS document that publishes the public halves.
//!
//! One key signs; every key in the set verifies, so a rotated-out key keeps
//! verifying its tokens until it is removed from configuration.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct VerifyKey {
    /// Key id, as in the token header.
    pub kid: String,
    /// The key.
    pub key: DecodingKey,
    /// Its JWK.
    pub jwk: Value,
}

/// The signing key and every verification key.
#[derive(Clone)]
pub struct KeySet {
    /// Key id of the signing key.
    pub signing_kid: String,
    /// The signing key.
    pub signing: EncodingKey,
    /// Keys accepted for verification (the signing key's public half first).
    pub verify: Vec<VerifyKey>,
}

fn verify_key(public: &VerifyingKey) -> anyhow::Result<VerifyKey> {
    let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
    // RFC 7638-style thumbprint as the key id: stable for the same key.
    let thumb = Sha256::digest(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
    let kid = URL_SAFE_NO_PAD.encode(&thumb[..16]);
    Ok(VerifyKey {
        key: DecodingKey::from_ed_components(&x).context("building an Ed25519 verification key")?,
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        kid,
    })
}

impl KeySet {
    /// A key set signing with `signing`.
    pub fn from_signing_key(signing: &SigningKey) -> anyhow::Result<Self> {
        let pem = signing
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .context("encoding the signing key")?;
        let public = verify_key(&signing.verifying_key())?;
        Ok(Self {
            signing_kid: public.kid.clone(),
            signing: EncodingKey::from_ed_pem(pem.as_bytes()).context("loading the signing key")?,
            verify: vec![public],
        })
    }

    /// A fresh random key (development mode only).
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_signing_key(&SigningKey::from_bytes(&seed))
    }

    /// Loads the signing key from a PKCS#8 PEM file.
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let Ok(signing) = SigningKey::from_pkcs8_pem(&pem) else {
            bail!(
                "{} is not an Ed25519 private key in PKCS#8 PEM",
                path.display()
            );
        };
        Self::from_signing_key(&signing)
    }

    /// Adds a public key (PEM, SPKI) or private key file whose tokens stay valid.
    pub fn add_verify_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let public = match VerifyingKey::from_public_key_pem(&pem) {
            Ok(public) => public,
            Err(_) => SigningKey::from_pkcs8_pem(&pem)
                .map(|k| k.verifying_key())
                .map_err(|_| anyhow::anyhow!("{} holds no Ed25519 key in PEM", path.display()))?,
        };
        let key = verify_key(&public)?;
        if !self.verify.iter().any(|k| k.kid == key.kid) {
            self.verify.push(key);
        }
        Ok(())
    }

    /// The verification key with this id.
    pub fn find(&self, kid: &str) -> Option<&VerifyKey> {
        self.verify.iter().find(|k| k.kid == kid)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.verify.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_id_is_stable_and_the_jwks_lists_every_verification_key() {
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let a = KeySet::from_signing_key(&signing).unwrap();
        let b = KeySet::from_signing_key(&signing).unwrap();
        assert_eq!(a.signing_kid, b.signing_kid);
        let other = KeySet::generate().unwrap();
        assert_ne!(a.signing_kid, other.signing_kid);
        assert_eq!(a.jwks()["keys"][0]["kid"], a.signing_kid.as_str());
    }
}
