//! Password hashing with Argon2id, always off the async threads, and never
//! more hashes at once than a bound.
//!
//! One Argon2id hash takes about 19 MiB and tens of milliseconds of a core, on
//! purpose. Unbounded, a burst of sign-ins would take every core and all that
//! memory; so a [`Hasher`] admits at most `SPOTCHECK_MAX_CONCURRENT_HASHES`
//! at once, and a caller that cannot get a slot within a short wait is told
//! to come back (`503 busy` with `Retry-After`) instead of queueing without end.
//!
//! A password's length is measured one way everywhere: in characters (Unicode
//! scalar values), by [`length`], between [`MIN_CHARS`] and [`MAX_CHARS`].

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The fewest characters a new password may have.
pub const MIN_CHARS: usize = 10;
/// The most characters a password may have (at creation and at sign-in).
pub const MAX_CHARS: usize = 256;

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

/// Hashes a password (PHC string), without a bound: for the command line and
/// tools. Requests go through a [`Hasher`].
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await?
}

/// Whether `password` matches `hash`; with no hash (unknown user) it does the
/// same work and answers false. Without a bound, like [`hash`].
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_blocking(&password, hash.as_deref()))
        .await
        .unwrap_or(false)
}

/// A password's length, the one way it is measured: Unicode scalar values.
pub fn length(password: &str) -> usize {
    password.chars().count()
}

/// Whether a password is short enough to be worth hashing at sign-in (no
/// account can have a longer one).
pub fn may_match(password: &str) -> bool {
    length(password) <= MAX_CHARS
}

/// Checks a new password's length.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    match length(password) {
        n if n < MIN_CHARS => Err("password must be at least 10 characters"),
        n if n <= MAX_CHARS => Ok(()),
        _ => Err("password must be at most 256 characters"),
    }
}

/// No hashing slot came free within the wait.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("every password-hashing slot is taken; try again shortly")]
pub struct Busy;

impl From<Busy> for crate::error::ApiError {
    fn from(busy: Busy) -> Self {
        // A hash takes well under a second; one second is plenty to retry after.
        crate::error::ApiError::busy(busy.to_string(), Duration::from_secs(1))
    }
}

/// Hashes and verifies passwords, at most `slots` at once in this process.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    wait: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// A slot held while one hash runs; counts itself out when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = self.running.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("spotcheck_password_hashes_running").set(now as f64);
    }
}

impl Hasher {
    /// At most `slots` hashes at once; a caller waits up to `wait` for one.
    pub fn new(slots: usize, wait: Duration) -> Self {
        let slots = slots.max(1);
        metrics::gauge!("spotcheck_password_hash_slots").set(slots as f64);
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            wait,
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The most hashes that ever ran at once here.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    async fn slot(&self) -> Result<Slot, Busy> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                metrics::counter!("spotcheck_password_hashes_refused_total").increment(1);
                Busy
            })?;
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        let peak = self.peak.fetch_max(now, Ordering::AcqRel).max(now);
        metrics::gauge!("spotcheck_password_hashes_running").set(now as f64);
        metrics::gauge!("spotcheck_password_hashes_peak").set(peak as f64);
        Ok(Slot {
            _permit: permit,
            running: self.running.clone(),
        })
    }

    /// Hashes a password (PHC string) in a slot.
    pub async fn hash(&self, password: String) -> Result<anyhow::Result<String>, Busy> {
        let slot = self.slot().await?;
        // The slot moves into the blocking task: even if the caller goes away,
        // the slot is held for as long as the hash really runs.
        let hashed = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash_blocking(&password)
        })
        .await;
        Ok(hashed.map_err(anyhow::Error::from).and_then(|r| r))
    }

    /// Whether `password` matches `hash` (with no hash, the same work and
    /// false), in a slot.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        let slot = self.slot().await?;
        let matched = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_blocking(&password, hash.as_deref())
        })
        .await;
        Ok(matched.unwrap_or(false))
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

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        let wide = "é".repeat(MAX_CHARS);
        assert_eq!(wide.len(), 2 * MAX_CHARS, "two bytes each");
        assert_eq!(length(&wide), MAX_CHARS);
        assert!(check_strength(&wide).is_ok() && may_match(&wide));
        let over = "🔑".repeat(MAX_CHARS + 1);
        assert!(check_strength(&over).is_err() && !may_match(&over));
        assert!(
            check_strength(&"🔑".repeat(MIN_CHARS)).is_ok(),
            "40 bytes, 10 characters"
        );
        assert!(
            check_strength(&"é".repeat(MIN_CHARS - 1)).is_err(),
            "18 bytes, 9 characters"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_hashes_run_at_once_than_the_slots_and_the_rest_are_refused_after_the_wait() {
        let hasher = Hasher::new(2, Duration::from_millis(1));
        let stored = hash("correct horse battery".into()).await.unwrap();
        let tries = (0..12).map(|_| {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tokio::spawn(async move { hasher.verify("wrong".into(), Some(stored)).await })
        });
        let answers = futures::future::join_all(tries).await;
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Ok(Err(Busy))))
            .count();
        assert!(hasher.peak() <= 2, "peak {}", hasher.peak());
        assert!(hasher.peak() >= 1);
        assert!(refused > 0, "a 1 ms wait refuses some of 12 at once");
        let patient = Hasher::new(1, Duration::from_secs(30));
        assert_eq!(patient.verify("x".into(), None).await.ok(), Some(false));
        assert_eq!(patient.peak(), 1);
    }
}
