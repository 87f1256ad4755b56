//! Signing and verification keys for access tokens (EdDSA over Ed25519, or
//! ES256 over P-256), and the JWKS document that publishes the public halves.
//!
//! One key signs; every key in the set verifies, so a rotated-out key keeps
//! verifying its tokens until it is removed from configuration.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct VerifyKey {
    /// Key id, as in the token header.
    pub kid: String,
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
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
    /// The signing key's algorithm.
    pub signing_alg: Algorithm,
    /// The signing key.
    pub signing: EncodingKey,
    /// Keys accepted for verification (the signing key's public half first).
    pub verify: Vec<VerifyKey>,
}

/// A private key of either supported kind.
enum Private {
    Ed25519(Box<SigningKey>),
    P256(p256::SecretKey),
}

/// A public key of either supported kind.
enum Public {
    Ed25519(VerifyingKey),
    P256(p256::PublicKey),
}

/// The key id: an RFC 7638 thumbprint (the required members in order, no
/// spaces), shortened; stable for the same key.
fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(canonical)[..16])
}

fn verify_key(public: &Public) -> anyhow::Result<VerifyKey> {
    match public {
        Public::Ed25519(public) => {
            let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
            let kid = thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
            Ok(VerifyKey {
                alg: Algorithm::EdDSA,
                key: DecodingKey::from_ed_components(&x)
                    .context("building an Ed25519 verification key")?,
                jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
                kid,
            })
        }
        Public::P256(public) => {
            let point = public.to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                bail!("a P-256 public key without coordinates");
            };
            let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
            let kid = thumbprint(&format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
            ));
            Ok(VerifyKey {
                alg: Algorithm::ES256,
                key: DecodingKey::from_ec_components(&x, &y)
                    .context("building a P-256 verification key")?,
                jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}),
                kid,
            })
        }
    }
}

/// A private key from PEM: Ed25519 in PKCS#8, or P-256 in PKCS#8 or SEC1.
fn parse_private(pem: &str) -> Option<Private> {
    if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
        return Some(Private::Ed25519(Box::new(key)));
    }
    p256::SecretKey::from_pkcs8_pem(pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
        .ok()
        .map(Private::P256)
}

/// A public key from PEM: SPKI of either kind, or the public half of a private key.
fn parse_public(pem: &str) -> Option<Public> {
    if let Ok(key) = VerifyingKey::from_public_key_pem(pem) {
        return Some(Public::Ed25519(key));
    }
    if let Ok(key) = p256::PublicKey::from_public_key_pem(pem) {
        return Some(Public::P256(key));
    }
    parse_private(pem).map(|private| private.public())
}

impl Private {
    fn public(&self) -> Public {
        match self {
            Private::Ed25519(key) => Public::Ed25519(key.verifying_key()),
            Private::P256(key) => Public::P256(key.public_key()),
        }
    }
}

impl KeySet {
    fn from_private(private: &Private) -> anyhow::Result<Self> {
        let public = verify_key(&private.public())?;
        let signing = match private {
            Private::Ed25519(key) => {
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encoding the signing key")?;
                EncodingKey::from_ed_pem(pem.as_bytes())
            }
            Private::P256(key) => {
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encoding the signing key")?;
                EncodingKey::from_ec_pem(pem.as_bytes())
            }
        }
        .context("loading the signing key")?;
        Ok(Self {
            signing_kid: public.kid.clone(),
            signing_alg: public.alg,
            signing,
            verify: vec![public],
        })
    }

    /// A key set signing with the Ed25519 key `signing`.
    pub fn from_signing_key(signing: &SigningKey) -> anyhow::Result<Self> {
        Self::from_private(&Private::Ed25519(Box::new(signing.clone())))
    }

    /// A fresh random Ed25519 key (development mode only).
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_signing_key(&SigningKey::from_bytes(&seed))
    }

    /// Loads the signing key from a PEM file (Ed25519 or P-256).
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let Some(private) = parse_private(&pem) else {
            bail!(
                "{} is not an Ed25519 (PKCS#8) or P-256 (PKCS#8 or SEC1) private key in PEM",
                path.display()
            );
        };
        Self::from_private(&private)
    }

    /// Adds a public key (PEM, SPKI) or private key file whose tokens stay valid.
    pub fn add_verify_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let Some(public) = parse_public(&pem) else {
            bail!("{} holds no Ed25519 or P-256 key in PEM", path.display());
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
pub(crate) mod tests {
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

    /// A P-256 key in PKCS#8 PEM from fixed bytes.
    pub(crate) fn p256_pem(byte: u8) -> String {
        let key = p256::SecretKey::from_slice(&[byte; 32]).unwrap();
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    #[test]
    fn a_p256_key_signs_es256_and_its_jwk_is_an_ec_key_with_both_coordinates() {
        let private = parse_private(&p256_pem(3)).expect("a P-256 key");
        let set = KeySet::from_private(&private).unwrap();
        assert_eq!(set.signing_alg, Algorithm::ES256);
        let jwk = &set.jwks()["keys"][0];
        assert_eq!(
            (
                jwk["kty"].as_str(),
                jwk["crv"].as_str(),
                jwk["alg"].as_str()
            ),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        for coordinate in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[coordinate].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes.len(), 32, "{coordinate}");
        }
        // The same key in SEC1 form is the same key.
        let sec1 = p256::SecretKey::from_slice(&[3u8; 32])
            .unwrap()
            .to_sec1_pem(LineEnding::LF)
            .unwrap();
        let again = KeySet::from_private(&parse_private(&sec1).unwrap()).unwrap();
        assert_eq!(again.signing_kid, set.signing_kid);
    }

    #[test]
    fn text_that_is_no_key_is_refused() {
        assert!(
            parse_private("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_none()
        );
        assert!(parse_public("not a key").is_none());
    }
}
