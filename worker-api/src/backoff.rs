//! Sign-in backoff: failed sign-ins slow down the client that makes them, and
//! nobody else, so an attacker cannot keep a named account locked.
//!
//! The rule, per account and client network ([`ClientNet`]: the address for
//! IPv4, the /64 for IPv6):
//!
//! - the first `SPOTCHECK_LOGIN_FREE_FAILURES` (5) failures cost nothing;
//! - after that, each failure makes that client wait before its next attempt on
//!   that account: 1 s, then 2, 4, 8 … up to `SPOTCHECK_LOGIN_BACKOFF_MAX_SECS`
//!   (300); an attempt during the wait is refused (`429
//!   too_many_login_attempts` with `Retry-After`) and neither counts nor
//!   extends the wait;
//! - a client's failures are forgotten after `SPOTCHECK_LOGIN_WINDOW_SECS`
//!   (900) without another one, and at once when it signs in;
//! - across all clients, once an account has had more than
//!   `SPOTCHECK_LOGIN_ATTEMPTS_PER_ACCOUNT` (20) failures in one window, every
//!   client network gets only one free failure on it instead of five: an
//!   attacker spreading guesses over many networks is slowed, yet a client
//!   that has not failed still gets its attempt at once.
//!
//! So a client never waits longer than the cap because of failures, and never
//! waits at all because of failures made from other networks: a volunteer
//! with the right password, at their own address, signs in while someone else
//! guesses. Unknown accounts are counted exactly like real ones.
//!
//! The state lives in Redis, shared by every replica, under the deployment's
//! hash tag, and each step is one script: an attempt is admitted and counted
//! in one atomic step (its wait is reserved before the password is checked),
//! so a burst of parallel attempts cannot slip past the count. The clock is
//! Redis's, the same for every replica.

use crate::config::EdgeConfig;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::client_net::ClientNet;
use redis::Script;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// Admits an attempt of one client on one account, or says how long it waits.
///
/// KEYS[1]: the client's record (hash: `n` attempts, `until` in ms);
/// KEYS[2]: the account's attempts in the window (counter).
/// ARGV: free failures, account ceiling, window in seconds, then the waits in
/// ms after the last free failure, the one after it, … (the last repeats).
/// Returns `{0, gate}` when admitted (`gate`: the wait this attempt set, in
/// ms since the epoch, or 0), else `{milliseconds still to wait, 0}`.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          local gate = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
          if now < gate then return {gate - now, 0} end
          local written = 0
          local free = tonumber(ARGV[1])
          local total = tonumber(redis.call('GET', KEYS[2]) or '0')
          if total >= tonumber(ARGV[2]) then free = 1 end
          local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
          local ttl = tonumber(ARGV[3])
          local k = n - free
          if k >= 0 then
            local steps = #ARGV - 3
            local wait = tonumber(ARGV[4 + math.min(k, steps - 1)])
            written = now + wait
            redis.call('HSET', KEYS[1], 'until', written)
            ttl = math.max(ttl, math.ceil(wait / 1000) + 1)
          end
          redis.call('EXPIRE', KEYS[1], ttl)
          if redis.call('INCR', KEYS[2]) == 1 then
            redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
          end
          return {0, written}",
    )
});

/// Forgets an admitted attempt: ARGV[1] `forget` drops the client's record
/// (it signed in), `refund` takes the one attempt back (it was never checked),
/// lifting the wait only if it is still the one this attempt set (ARGV[2]):
/// a later attempt's wait stays. Either way the account's count goes down by one.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if ARGV[1] == 'forget' then
            redis.call('DEL', KEYS[1])
          elseif redis.call('EXISTS', KEYS[1]) == 1 then
            redis.call('HINCRBY', KEYS[1], 'n', -1)
            local mine = tonumber(ARGV[2])
            if mine > 0 and tonumber(redis.call('HGET', KEYS[1], 'until') or '0') == mine then
              redis.call('HDEL', KEYS[1], 'until')
            end
          end
          if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
            redis.call('DECR', KEYS[2])
          end
          return 0",
    )
});

/// The waits after the last free failure, the next, … doubling from one
/// second to `max` (the last entry, which then repeats).
pub fn schedule(max: Duration) -> Vec<Duration> {
    let max = max.max(Duration::from_secs(1));
    let mut waits = vec![Duration::from_secs(1)];
    while let Some(&last) = waits.last()
        && last < max
    {
        waits.push((last * 2).min(max));
    }
    waits
}

/// The wait before the next attempt after `failures` failures of one client
/// on one account, with `free` of them free: what the script enforces.
pub fn wait_after(failures: u32, free: u32, max: Duration) -> Duration {
    let waits = schedule(max);
    match failures.checked_sub(free.max(1)) {
        None => Duration::ZERO,
        Some(k) => waits[(k as usize).min(waits.len() - 1)],
    }
}

/// `{prefix}:login:<account>:net:<network>` (the client's record) and
/// `{prefix}:login:<account>` (the account's counter), the account being the
/// first 16 bytes of the username's SHA-256: the username is input of any
/// shape, and keys need not show it.
pub fn keys(prefix: &str, username: &str, net: ClientNet) -> (String, String) {
    let digest = Sha256::digest(username.as_bytes());
    let account = format!("{{{prefix}}}:login:{}", hex::encode(&digest[..16]));
    (format!("{account}:net:{net}"), account)
}

/// Sign-in backoff of one deployment, in Redis.
#[derive(Clone)]
pub struct SignInBackoff {
    tasks: TaskTracker,
    redis: ConnectionManager,
    prefix: String,
    free: u32,
    ceiling: u32,
    window_secs: u64,
    waits_ms: Vec<u64>,
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right: the client's failures are forgotten.
    SignedIn,
    /// The password was never checked (no hashing slot): the attempt is taken back.
    NotChecked,
}

impl SignInBackoff {
    /// Backoff under `{prefix}` with the rule of `config`; attempts dropped
    /// unsettled are taken back on `tasks`.
    pub fn new(
        redis: ConnectionManager,
        prefix: &str,
        config: &EdgeConfig,
        tasks: TaskTracker,
    ) -> Self {
        let waits = schedule(Duration::from_secs(config.login_backoff_max_secs));
        Self {
            tasks,
            redis,
            prefix: prefix.to_owned(),
            free: config.login_free_failures.max(1),
            ceiling: config.login_attempts_per_account.max(1),
            window_secs: config.login_window_secs.max(1),
            waits_ms: waits.iter().map(|w| w.as_millis() as u64).collect(),
        }
    }

    fn keys(&self, username: &str, net: ClientNet) -> (String, String) {
        keys(&self.prefix, username, net)
    }

    /// Admits a sign-in attempt on `username` from `net`, counting it as a
    /// failure until the [`Attempt`] is settled otherwise; refuses it while
    /// that client must wait.
    pub async fn admit(&self, username: &str, net: ClientNet) -> ApiResult<Attempt> {
        let (client, account) = self.keys(username, net);
        let mut redis = self.redis.clone();
        let (wait_ms, gate): (u64, u64) = ADMIT
            .key(client)
            .key(account)
            .arg(self.free)
            .arg(self.ceiling)
            .arg(self.window_secs)
            .arg(&self.waits_ms)
            .invoke_async(&mut redis)
            .await?;
        if wait_ms == 0 {
            return Ok(Attempt {
                backoff: self.clone(),
                username: username.to_owned(),
                net,
                gate,
                open: true,
            });
        }
        metrics::counter!("spotcheck_quota_refused_total", "quota" => "login_attempts")
            .increment(1);
        Err(ApiError::too_many(
            "too_many_login_attempts",
            "too many failed sign-ins on this account from your network; wait before trying again",
            Duration::from_millis(wait_ms),
        ))
    }

    async fn settle(&self, username: &str, net: ClientNet, gate: u64, outcome: Outcome) {
        let (client, account) = self.keys(username, net);
        let mode = match outcome {
            Outcome::SignedIn => "forget",
            Outcome::NotChecked => "refund",
        };
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<i64> = SETTLE
            .key(client)
            .key(account)
            .arg(mode)
            .arg(gate)
            .invoke_async(&mut redis)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not settle a sign-in attempt");
        }
    }
}

/// An admitted sign-in attempt, counted as a failure until settled. Only a
/// checked wrong password should stay counted ([`Attempt::failed`]); one
/// dropped unsettled (the request failed before the password was checked, or
/// its client went away) is taken back in the background.
#[must_use = "an attempt dropped unsettled is taken back"]
pub struct Attempt {
    backoff: SignInBackoff,
    username: String,
    net: ClientNet,
    gate: u64,
    open: bool,
}

impl Attempt {
    /// The password was checked and was wrong: the failure stays counted.
    pub fn failed(mut self) {
        self.open = false;
    }

    /// Settles the attempt as `outcome`.
    pub async fn settle(mut self, outcome: Outcome) {
        self.open = false;
        let (backoff, username) = (self.backoff.clone(), std::mem::take(&mut self.username));
        backoff
            .settle(&username, self.net, self.gate, outcome)
            .await;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let (backoff, username, net, gate) = (
            self.backoff.clone(),
            std::mem::take(&mut self.username),
            self.net,
            self.gate,
        );
        let tasks = backoff.tasks.clone();
        tasks.spawn(async move {
            backoff
                .settle(&username, net, gate, Outcome::NotChecked)
                .await
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_after_the_free_failures_and_stops_at_the_cap() {
        let max = Duration::from_secs(300);
        let secs = |failures| wait_after(failures, 5, max).as_secs();
        assert_eq!((0..=4).map(secs).collect::<Vec<_>>(), [0; 5]);
        assert_eq!(
            (5..=14).map(secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
        );
        assert_eq!(secs(1_000_000), 300, "never longer than the cap");
        assert_eq!(wait_after(1, 1, max), Duration::from_secs(1), "one free");
        assert_eq!(
            schedule(Duration::from_millis(10)),
            [Duration::from_secs(1)],
            "at least a second"
        );
    }

    #[test]
    fn keys_share_the_deployments_hash_tag_and_separate_networks_not_addresses() {
        let net = |ip: &str| ClientNet::of(ip.parse().unwrap());
        let (client, account) = keys("sc", "alice", net("2001:db8:1:2::9"));
        assert!(account.starts_with("{sc}:login:") && !account.contains("alice"));
        assert_eq!(client, format!("{account}:net:2001:db8:1:2::/64"));
        assert_eq!(
            keys("sc", "alice", net("2001:db8:1:2:ffff::1")).0,
            client,
            "one /64, one record"
        );
        assert_ne!(keys("sc", "alice", net("2001:db8:1:3::9")).0, client);
        assert_ne!(keys("sc", "bob", net("2001:db8:1:2::9")).1, account);
        assert_eq!(
            keys("sc", "alice", net("::ffff:192.0.2.4")).0,
            format!("{account}:net:192.0.2.4")
        );
    }
}
