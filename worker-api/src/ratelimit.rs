//! Rate limits, keyed in this one module: per token subject on signed-in routes
//! (claims, votes and the rest, each with its own quota) and per client address
//! on the anonymous sign-in routes: its network, that is, the address for IPv4
//! and the /64 for IPv6 ([`client_net::ClientNet`]). The route table says which applies where;
//! the access guard calls [`RateLimits::check_subject`] or
//! [`RateLimits::check_address`] before any handler runs.
//!
//! These limits are per process (governor, in memory). Quotas that must hold
//! across replicas (votes per day, sign-in attempts per account) live in Redis:
//! see [`crate::quota`].
//!
//! Keyed state grows with every new key, so it is pruned: once per prune
//! interval, the request that notices the interval has passed drops every key
//! whose bucket is full again (`retain_recent`, which is what a key that never
//! came looks like) and hands the memory back (`shrink_to_fit`). A flood of
//! distinct keys costs memory for one interval at most, and there is no
//! background task to track or stop.

pub mod client_net;
pub mod forwarded;
pub mod keyed;
pub mod proxies;

use crate::config::LimitsConfig;
use crate::error::ApiError;
use client_net::ClientNet;
use keyed::KeyedLimiter;
use proxies::TrustedProxies;
use spotcheck_shared::UserId;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Which limit a route is subject to (declared per route in the route table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Per client address: the anonymous sign-in routes.
    Address,
    /// Per subject, the claim quota.
    Claim,
    /// Per subject, the vote quota.
    Vote,
    /// Per subject, the quota of every other signed-in route.
    Subject,
    /// No limit: probes, metrics and public keys, which cost nothing to answer.
    Unlimited,
}

/// Every per-process limit of one worker-api.
pub struct RateLimits {
    claim: KeyedLimiter<UserId>,
    vote: KeyedLimiter<UserId>,
    subject: KeyedLimiter<UserId>,
    address: KeyedLimiter<ClientNet>,
    proxies: TrustedProxies,
    forwarded_header: proxies::ForwardedHeader,
}

impl RateLimits {
    /// The limits configured in `config`.
    pub fn new(config: &LimitsConfig) -> Self {
        let every = Duration::from_secs(config.rate_prune_secs.max(1));
        // Zero is refused when the configuration is read; one is the floor here too.
        let n = |per_minute: u32| NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            claim: KeyedLimiter::per_minute(n(config.rate_claim_per_min), every).named("claim"),
            vote: KeyedLimiter::per_minute(n(config.rate_vote_per_min), every).named("vote"),
            subject: KeyedLimiter::per_minute(n(config.rate_other_per_min), every).named("subject"),
            address: KeyedLimiter::per_minute(n(config.rate_auth_per_min), every).named("address"),
            proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
        }
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> IpAddr {
        self.proxies.client_ip(peer, headers, self.forwarded_header)
    }

    /// Counts a request from `ip` (its network) on an address-limited route.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.address
            .check(&ClientNet::of(ip))
            .map_err(|wait| limited("address", wait))
    }

    /// Counts a request by `user` on a route limited per subject with `throttle`.
    pub fn check_subject(&self, throttle: Throttle, user: UserId) -> Result<(), ApiError> {
        let (limiter, name) = match throttle {
            Throttle::Claim => (&self.claim, "claim"),
            Throttle::Vote => (&self.vote, "vote"),
            Throttle::Subject => (&self.subject, "subject"),
            Throttle::Address | Throttle::Unlimited => return Ok(()),
        };
        limiter.check(&user).map_err(|wait| limited(name, wait))
    }
}

fn limited(limit: &'static str, wait: Duration) -> ApiError {
    metrics::counter!("spotcheck_rate_limited_total", "limit" => limit).increment(1);
    ApiError::too_many(
        "rate_limited",
        "too many requests; slow down and retry later",
        wait,
    )
}
