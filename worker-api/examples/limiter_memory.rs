//! How much memory a flood of distinct keys costs the rate limiter, and how much
//! is left once it is pruned: heap bytes measured by a counting allocator.
//!
//! ```sh
//! cargo run --release -p worker-api --example limiter_memory [KEYS]
//! ```
//!
//! The limiter runs on a fake clock, so "a minute later" takes no time.

use governor::Quota;
use governor::clock::FakeRelativeClock;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;
use worker_api::ratelimit::keyed::KeyedLimiter;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes allocated and not yet freed since `region` began.
fn live(region: &Region<'_, System>) -> isize {
    let s = region.change();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}

fn main() {
    let keys: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let clock = FakeRelativeClock::default();
    let region = Region::new(GLOBAL);
    let per_minute = NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN);
    let limiter = KeyedLimiter::<IpAddr, _>::with_clock(
        Quota::per_minute(per_minute),
        Duration::from_secs(60),
        clock.clone(),
    );
    let row = |what: &str, limiter: &KeyedLimiter<IpAddr, FakeRelativeClock>| {
        println!(
            "{what:<28} {:>9} keys {:>12} heap bytes {:>12} table bytes",
            limiter.len(),
            live(&region),
            limiter.table_bytes()
        );
    };
    row("empty", &limiter);
    for i in 0..keys {
        // Distinct client addresses, one request each.
        let _ = limiter.check(&IpAddr::V6(Ipv6Addr::from(u128::from(i))));
    }
    row(&format!("after {keys} distinct keys"), &limiter);
    clock.advance(Duration::from_secs(120));
    limiter.prune();
    row("after pruning", &limiter);
}
