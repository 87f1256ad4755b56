//! The state every handler shares, passed explicitly with `Router::with_state`.

use crate::auth::tokens::TokenIssuer;
use crate::config::Config;
use crate::dispatch::OfferBuffer;
use crate::quota::Quotas;
use crate::ratelimit::RateLimits;
use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::standing::StandingCache;
use sqlx::PgPool;
use std::sync::Arc;

/// Shared handles of one worker-api process, behind one `Arc`: every request
/// clones the state a few times (extractors, the guard, the detached claim),
/// and cloning each handle (several hold strings) cost about a twentieth of
/// worker-api's time under load (measured with `perf`).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl AppState {
    /// The state over `handles`.
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(handles))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// The handles themselves.
pub struct Handles {
    /// Every task spawned on behalf of requests and loops, so that shutdown
    /// waits for all of them.
    pub tasks: tokio_util::task::TaskTracker,
    /// PostgreSQL.
    pub pool: PgPool,
    /// Leases in Redis.
    pub leases: LeaseStore,
    /// Access-token issuer and verifier.
    pub tokens: Arc<TokenIssuer>,
    /// Slot offers taken from RabbitMQ, waiting for claims.
    pub offers: OfferBuffer,
    /// Configuration.
    pub config: Arc<Config>,
    /// Per-process rate limits.
    pub limits: Arc<RateLimits>,
    /// Quotas shared by every replica, in Redis.
    pub quotas: Quotas,
    /// The broker connection (for queue figures).
    pub amqp: Arc<lapin::Connection>,
    /// Exchange and queue names.
    pub names: spotcheck_platform::amqp::Names,
    /// Password hashing, a bounded number at once.
    pub hasher: crate::auth::password::Hasher,
    /// Backoff after failed sign-ins, shared by every replica in Redis.
    pub sign_in: crate::backoff::SignInBackoff,
    /// Users' standing, cached in Redis.
    pub standing: StandingCache,
    /// Votes waiting to be committed in the next batch.
    pub ballots: crate::ballot_box::BallotBox,
    /// Answers of claims sent with an `Idempotency-Key`.
    pub idempotency: crate::idempotency::Idempotency,
    /// Whether any gold task exists (refreshed in the background).
    pub gold_pool: crate::gold::GoldPool,
    /// Review slots granted here, so a release here can hand its slot back.
    pub grants: crate::handback::Grants,
}
