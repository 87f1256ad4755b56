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

/// Shared handles of one worker-api process.
#[derive(Clone)]
pub struct AppState {
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
