//! A governor keyed rate limiter that keeps its own memory bounded.
//!
//! governor keeps one cell per key it has seen and never forgets one by itself,
//! so a flood of distinct keys (addresses, forged subjects) would grow it
//! without end. Here every request first checks whether a prune interval has
//! passed; the one request that wins the race drops every key whose bucket is
//! full again (`retain_recent`: such a key is indistinguishable from one never
//! seen; governor waits one more replenish period to be sure) and returns the
//! table's memory (`shrink_to_fit`). Memory is then bounded by the keys seen in
//! one prune interval plus the quota's window (a minute here).

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, StateStore};
use governor::{Quota, RateLimiter};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// governor's DashMap store, shared so that its capacity can be read.
#[derive(Clone)]
pub struct Table<K: Hash + Eq + Clone>(Arc<DashMap<K, InMemoryState>>);

impl<K: Hash + Eq + Clone> StateStore for Table<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.as_ref().measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Table<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(self.0.as_ref(), drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A keyed limiter that prunes itself.
pub struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, Table<K>, C, NoOpMiddleware<C::Instant>>,
    table: Table<K>,
    start: C::Instant,
    prune_every: Duration,
    /// Nanoseconds after `start` of the last prune.
    last_prune: AtomicU64,
    /// The `limit` label of the key-count gauge, once named.
    name: Option<&'static str>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_minute` requests a minute per key, all of them usable in a burst.
    pub fn per_minute(per_minute: NonZeroU32, prune_every: Duration) -> Self {
        let quota = Quota::per_minute(per_minute);
        Self::with_clock(quota, prune_every, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedLimiter<K, C> {
    /// A limiter on `clock` (tests pass a fake one).
    pub fn with_clock(quota: Quota, prune_every: Duration, clock: C) -> Self {
        let table = Table(Arc::new(DashMap::new()));
        let start = clock.now();
        Self {
            limiter: RateLimiter::new(quota, table.clone(), clock),
            table,
            start,
            prune_every,
            last_prune: AtomicU64::new(0),
            name: None,
        }
    }

    /// Reports the keys left after each prune as `spotcheck_rate_limiter_keys{limit=name}`.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Takes one cell for `key`, or says how long until one is free.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.prune_if_due();
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    fn prune_if_due(&self) {
        let now = u64::from(self.limiter.clock().now().duration_since(self.start));
        let last = self.last_prune.load(Ordering::Relaxed);
        let interval = u64::try_from(self.prune_every.as_nanos()).unwrap_or(u64::MAX);
        // One caller per interval wins the exchange and prunes; the rest go on.
        if now.saturating_sub(last) >= interval
            && self
                .last_prune
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.prune();
            if let Some(name) = self.name {
                metrics::gauge!("spotcheck_rate_limiter_keys", "limit" => name)
                    .set(self.len() as f64);
            }
        }
    }

    /// Drops every key whose bucket is full again and releases the memory.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Bytes of the key table: its capacity in (key, state) slots plus one
    /// control byte each. The keys here own no heap memory of their own.
    pub fn table_bytes(&self) -> usize {
        self.table.0.capacity() * (size_of::<(K, InMemoryState)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::{IpAddr, Ipv6Addr};

    fn limiter(clock: &FakeRelativeClock) -> KeyedLimiter<IpAddr, FakeRelativeClock> {
        let quota = Quota::per_minute(NonZeroU32::new(2).unwrap());
        KeyedLimiter::with_clock(quota, Duration::from_secs(60), clock.clone())
    }

    #[test]
    fn a_key_beyond_its_burst_waits_and_another_key_does_not() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        let a = IpAddr::from([192, 0, 2, 1]);
        assert!(l.check(&a).is_ok() && l.check(&a).is_ok());
        let wait = l.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(l.check(&IpAddr::from([192, 0, 2, 2])).is_ok());
        clock.advance(wait);
        assert!(l.check(&a).is_ok(), "a cell is free again after the wait");
    }

    #[test]
    fn pruning_drops_replenished_keys_and_runs_once_per_interval() {
        let clock = FakeRelativeClock::default();
        let l = limiter(&clock);
        for i in 0..10_000u128 {
            l.check(&IpAddr::V6(Ipv6Addr::from(i))).unwrap();
        }
        assert_eq!(l.len(), 10_000);
        let full = l.table_bytes();
        assert!(full >= 10_000 * 24, "{full} bytes for 10,000 keys");
        // governor forgets a key one replenish period (30 s here) after its
        // bucket is full again.
        clock.advance(Duration::from_secs(61));
        l.prune();
        assert_eq!(l.len(), 0, "every bucket is full again");
        assert!(l.table_bytes() < full / 10, "shrunk to {}", l.table_bytes());
        // The next request after an interval prunes by itself.
        l.check(&IpAddr::from([192, 0, 2, 9])).unwrap();
        clock.advance(Duration::from_secs(61));
        l.check(&IpAddr::from([192, 0, 2, 10])).unwrap();
        assert_eq!(l.len(), 1, "only the key just seen is left");
    }
}
