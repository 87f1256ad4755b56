//! The lease token: what a claim hands a volunteer and every later call on the
//! lease presents. One type, made and read only here.
//!
//! Shape: `lt_<grant time, hex Unix ms>_<32 hex random>`. The grant time lets a
//! vote measure how long it took; it cannot be forged to any effect, since a
//! call is accepted only with the exact token stored for the lease.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest token accepted from a client.
pub const MAX_LEN: usize = 64;

/// A lease token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, max_length = 64, example = "lt_18c2f0a1b2c_9f86d081884c7d659a2feaa0c55ad015")]
pub struct LeaseToken(String);

/// A token that cannot be a lease token of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed lease token")]
pub struct MalformedToken;

impl LeaseToken {
    /// A fresh token for a lease granted at `now_ms` (Unix milliseconds).
    pub fn generate(now_ms: i64) -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("lt_{:x}_{}", now_ms.max(0), hex::encode(bytes)))
    }

    /// Checks the shape of a token a client sent: non-empty, at most
    /// [`MAX_LEN`] bytes, none of the separators the lease store uses.
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        let ok = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'|');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedToken)
        }
    }

    /// The token as stored and sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the lease was granted (Unix milliseconds), if the token says.
    pub fn granted_ms(&self) -> Option<i64> {
        let rest = self.0.strip_prefix("lt_")?;
        let (ms, _) = rest.split_once('_')?;
        i64::from_str_radix(ms, 16).ok()
    }

    /// Seconds from the grant to `now_ms`, if the token says when it was granted.
    pub fn seconds_since_grant(&self, now_ms: i64) -> Option<f64> {
        self.granted_ms()
            .map(|granted| (now_ms - granted).max(0) as f64 / 1000.0)
    }
}

impl TryFrom<String> for LeaseToken {
    type Error = MalformedToken;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<LeaseToken> for String {
    fn from(t: LeaseToken) -> Self {
        t.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_tells_its_grant_time() {
        let t = LeaseToken::generate(1_700_000_000_123);
        assert_eq!(LeaseToken::parse(t.as_str()), Ok(t.clone()));
        assert_eq!(t.granted_ms(), Some(1_700_000_000_123));
        assert_eq!(t.seconds_since_grant(1_700_000_002_123), Some(2.0));
        assert_ne!(LeaseToken::generate(1), LeaseToken::generate(1));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "a|b", "with space", &"x".repeat(65)] {
            assert_eq!(LeaseToken::parse(bad), Err(MalformedToken), "{bad:?}");
        }
        let foreign = LeaseToken::parse("lt_zz_abc").unwrap();
        assert_eq!(foreign.granted_ms(), None);
    }
}
