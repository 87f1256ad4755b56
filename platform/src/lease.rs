//! The lease protocol in Redis: claim, extend, release, finish and reap, each
//! one atomic Lua script.
//!
//! Keys (all under the `{prefix}` hash tag, so a Redis Cluster keeps them in one slot):
//! - `{p}:leases:<task>`: hash volunteer -> `token|fence|expires_ms`, the task's leases;
//! - `{p}:voted:<task>`: votes recorded on the task, as seen by worker-api;
//! - `{p}:holder:<volunteer>`: set of tasks the volunteer holds leases on;
//! - `{p}:expiry`: sorted set of `task|volunteer` by expiry, which the reaper sweeps;
//! - `{p}:fence`: the fencing-token counter;
//! - `{p}:sentinel`: present while Redis holds what it was given (see the reconciler);
//! - `{p}:gone:<task>:<volunteer>`: tombstone of a lease that ended without a vote
//!   (`token|expired` or `token|released`), kept a day so a late call gets a clear answer.
//!
//! Rule that keeps slots from being lost: a lease leaves Redis without a vote
//! only after a new slot offer for it has been committed to the outbox
//! (the reaper or a release), so a crash can at worst duplicate an offer; a
//! duplicate is refused at claim by the cap (live leases + counted votes <=
//! required) and dropped once its task closes.

use redis::Script;
use redis::aio::ConnectionManager;
use spotcheck_shared::{TaskId, UserId};
use std::sync::LazyLock;

/// A granted lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The opaque token the holder presents.
    pub token: String,
    /// Monotonic fencing number of this grant.
    pub fence: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: i64,
}

/// A claim attempt: who wants a slot of which task, under what limits.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The task.
    pub task: TaskId,
    /// The volunteer.
    pub volunteer: UserId,
    /// Votes the task asks for.
    pub required: i32,
    /// Votes PostgreSQL has counted on it.
    pub counted: i32,
    /// Lease lifetime in milliseconds.
    pub ttl_ms: u64,
    /// Live leases one volunteer may hold.
    pub cap: u32,
    /// The new lease's token.
    pub token: &'a str,
    /// Volunteers whose votes on the task PostgreSQL has counted.
    pub voters: &'a [UserId],
}

/// What a claim attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimResult {
    /// The lease is granted.
    Granted(Lease),
    /// The task's live leases and counted votes already cover what it needs
    /// (exactly: a voter's lingering lease is not counted twice), so the offer is
    /// surplus; should a live lease expire, the reaper offers its slot again.
    Full,
    /// This volunteer already holds (or just held) a lease on the task.
    AlreadyHeld,
    /// The volunteer holds as many live leases as allowed.
    CapReached,
}

/// Why a lease check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The caller has no lease on this task.
    #[error("no lease on this task")]
    NotFound,
    /// A lease exists but the token is not its current one.
    #[error("the lease token is not the current one")]
    WrongToken,
    /// The lease has expired.
    #[error("the lease has expired")]
    Expired,
    /// The holder released the lease.
    #[error("the lease was released")]
    Released,
}

/// How a lease ended without a vote, as its tombstone remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Its time ran out.
    Expired,
    /// Its holder gave it back.
    Released,
}

impl LeaseEnd {
    fn as_str(self) -> &'static str {
        match self {
            LeaseEnd::Expired => "expired",
            LeaseEnd::Released => "released",
        }
    }
}

/// Errors from the lease store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The lease check failed.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

const NOW: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

const PARSE: &str = r"
local function parse(v)
  local token, fence, exp = string.match(v, '^([^|]+)|(%d+)|(%d+)$')
  return token, tonumber(fence), tonumber(exp)
end
local function gone(p, task, vol, token)
  local g = redis.call('GET', p .. ':gone:' .. task .. ':' .. vol)
  if g == token .. '|expired' then return -3 end
  if g == token .. '|released' then return -4 end
  return -1
end
";

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol = ARGV[1], ARGV[2], ARGV[3]
local required, counted_db = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, cap, token = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local lk = p .. ':leases:' .. task
if redis.call('HEXISTS', lk, vol) == 1 then return {{-1}} end
-- Leases of volunteers whose vote PostgreSQL already counted are not counted
-- again (a vote commits a moment before its lease is ended).
local voters = {{}}
for i = 9, #ARGV do voters[ARGV[i]] = true end
local live = 0
local entries = redis.call('HGETALL', lk)
for i = 1, #entries, 2 do
  local _, _, exp = parse(entries[i + 1])
  if exp > now and not voters[entries[i]] then live = live + 1 end
end
local counted = math.max(counted_db, tonumber(redis.call('GET', p .. ':voted:' .. task) or '0'))
if live + counted >= required then return {{0}} end
local hk = p .. ':holder:' .. vol
local held = 0
for _, t in ipairs(redis.call('SMEMBERS', hk)) do
  local v = redis.call('HGET', p .. ':leases:' .. t, vol)
  if v then
    local _, _, exp = parse(v)
    if exp > now then held = held + 1 end
  else
    redis.call('SREM', hk, t)
  end
end
if held >= cap then return {{-2}} end
local fence = redis.call('INCR', p .. ':fence')
local exp = now + ttl
redis.call('HSET', lk, vol, token .. '|' .. fence .. '|' .. exp)
redis.call('SADD', hk, task)
redis.call('ZADD', p .. ':expiry', exp, task .. '|' .. vol)
return {{1, fence, exp}}
"
    ))
});

/// Checks the token; with ARGV[5] > 0 also moves the expiry to now + ARGV[5] ms.
static CHECK_OR_EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol, token, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local lk = p .. ':leases:' .. task
local v = redis.call('HGET', lk, vol)
if not v then return {{gone(p, task, vol, token)}} end
local cur, fence, exp = parse(v)
if cur ~= token then return {{-2}} end
if exp <= now then return {{-3}} end
if ttl > 0 then
  exp = now + ttl
  redis.call('HSET', lk, vol, cur .. '|' .. fence .. '|' .. exp)
  redis.call('ZADD', p .. ':expiry', exp, task .. '|' .. vol)
end
return {{1, fence, exp}}
"
    ))
});

/// Ends a lease with a counted vote: removes it and bumps the task's vote count,
/// only when the token is current, so a retried call never counts twice.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PARSE}
local p, task, vol, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lk = p .. ':leases:' .. task
local v = redis.call('HGET', lk, vol)
if v then
  local cur = parse(v)
  if cur == token then
    redis.call('HDEL', lk, vol)
    redis.call('SREM', p .. ':holder:' .. vol, task)
    redis.call('ZREM', p .. ':expiry', task .. '|' .. vol)
    local vk = p .. ':voted:' .. task
    local n = redis.call('INCR', vk)
    redis.call('EXPIRE', vk, 86400)
    return n
  end
end
return 0
"
    ))
});

/// Makes a lease expire now if the token is current (release), so the reaper path hands its slot back.
static EXPIRE_NOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol, token, hold = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local lk = p .. ':leases:' .. task
local v = redis.call('HGET', lk, vol)
if not v then return gone(p, task, vol, token) end
local cur, fence, exp = parse(v)
if cur ~= token then return -2 end
if exp <= now then return -3 end
redis.call('HSET', lk, vol, cur .. '|' .. fence .. '|' .. now)
redis.call('ZADD', p .. ':expiry', now + hold, task .. '|' .. vol)
return 1
"
    ))
});

/// Picks up to ARGV[2] expired leases and hides them from other reapers for ARGV[3] ms.
static TAKE_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}
local p, limit, hold = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ek = p .. ':expiry'
local due = redis.call('ZRANGEBYSCORE', ek, '-inf', now, 'LIMIT', 0, limit)
for _, m in ipairs(due) do redis.call('ZADD', ek, now + hold, m) end
return due
"
    ))
});

/// Removes a lease whose slot has been re-offered, unless it was renewed meanwhile,
/// and leaves a day-long tombstone so its token is answered "expired" or "released".
static DROP_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lk = p .. ':leases:' .. task
local v = redis.call('HGET', lk, vol)
if v then
  local token, _, exp = parse(v)
  if exp > now then return 0 end
  redis.call('HDEL', lk, vol)
  redis.call('SET', p .. ':gone:' .. task .. ':' .. vol, token .. '|' .. reason, 'EX', 86400)
end
redis.call('SREM', p .. ':holder:' .. vol, task)
redis.call('ZREM', p .. ':expiry', task .. '|' .. vol)
return 1
"
    ))
});

fn lease_error(code: i64) -> LeaseError {
    match code {
        -2 => LeaseError::WrongToken,
        -3 => LeaseError::Expired,
        -4 => LeaseError::Released,
        _ => LeaseError::NotFound,
    }
}

/// The lease store of one deployment (one key prefix).
#[derive(Clone)]
pub struct LeaseStore {
    redis: ConnectionManager,
    prefix: String,
}

impl LeaseStore {
    /// A store using keys under `{prefix}`.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{{{prefix}}}"),
        }
    }

    /// Tries to lease a slot of the request's task to its volunteer.
    pub async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimResult, StoreError> {
        let mut invocation = CLAIM.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(req.task.to_string())
            .arg(req.volunteer.to_string())
            .arg(req.required)
            .arg(req.counted)
            .arg(req.ttl_ms)
            .arg(req.cap)
            .arg(req.token);
        for voter in req.voters {
            invocation.arg(voter.to_string());
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(match reply.as_slice() {
            [1, fence, exp] => ClaimResult::Granted(Lease {
                token: req.token.to_owned(),
                fence: *fence,
                expires_at_ms: *exp,
            }),
            [0] => ClaimResult::Full,
            [-2] => ClaimResult::CapReached,
            _ => ClaimResult::AlreadyHeld,
        })
    }

    /// Checks that `token` is the volunteer's live lease on `task`; returns its fence and expiry.
    pub async fn check(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &str,
    ) -> Result<(i64, i64), StoreError> {
        self.check_or_extend(task, volunteer, token, 0).await
    }

    /// Extends the volunteer's live lease to now + `ttl_ms`; returns its fence and new expiry.
    pub async fn extend(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &str,
        ttl_ms: u64,
    ) -> Result<(i64, i64), StoreError> {
        self.check_or_extend(task, volunteer, token, ttl_ms.max(1))
            .await
    }

    async fn check_or_extend(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &str,
        ttl_ms: u64,
    ) -> Result<(i64, i64), StoreError> {
        let reply: Vec<i64> = CHECK_OR_EXTEND
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(token)
            .arg(ttl_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        match reply.as_slice() {
            [1, fence, exp] => Ok((*fence, *exp)),
            [code, ..] => Err(lease_error(*code).into()),
            [] => Err(LeaseError::NotFound.into()),
        }
    }

    /// Ends the lease after its vote committed, and counts the vote.
    pub async fn finish(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &str,
    ) -> Result<i64, StoreError> {
        Ok(FINISH
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(token)
            .invoke_async(&mut self.redis.clone())
            .await?)
    }

    /// Marks the volunteer's live lease expired now (a release, or a vote on a closed task).
    ///
    /// The reaper leaves it alone for `hold_ms`, so a caller that re-offers the
    /// slot itself (a release) is not raced; should that caller die, the reaper
    /// re-offers it after the hold.
    pub async fn expire_now(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &str,
        hold_ms: u64,
    ) -> Result<(), StoreError> {
        let code: i64 = EXPIRE_NOW
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(token)
            .arg(hold_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        if code == 1 {
            Ok(())
        } else {
            Err(lease_error(code).into())
        }
    }

    /// Takes up to `limit` expired leases, hidden from other reapers for `hold_ms`.
    pub async fn take_expired(
        &self,
        limit: usize,
        hold_ms: u64,
    ) -> Result<Vec<(TaskId, UserId)>, StoreError> {
        let members: Vec<String> = TAKE_EXPIRED
            .arg(&self.prefix)
            .arg(limit)
            .arg(hold_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| {
                let (t, v) = m.split_once('|')?;
                Some((t.parse().ok()?, v.parse().ok()?))
            })
            .collect())
    }

    /// Removes an expired lease whose slot is already re-offered.
    pub async fn drop_expired(
        &self,
        task: TaskId,
        volunteer: UserId,
        end: LeaseEnd,
    ) -> Result<bool, StoreError> {
        let done: i64 = DROP_EXPIRED
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(end.as_str())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(done == 1)
    }

    /// Whether Redis still holds the lease state it was given: the sentinel is
    /// written after every reconciliation, so its absence means Redis lost its data.
    pub async fn sentinel_present(&self) -> Result<bool, StoreError> {
        let mut conn = self.redis.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("{}:sentinel", self.prefix))
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Takes the reconciliation lock for `ms` milliseconds; false if another replica holds it.
    pub async fn lock_reconcile(&self, ms: u64) -> Result<bool, StoreError> {
        let mut conn = self.redis.clone();
        let ok: Option<String> = redis::cmd("SET")
            .arg(format!("{}:reconcile-lock", self.prefix))
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await?;
        Ok(ok.is_some())
    }

    /// Marks the reconciliation done: writes the sentinel and frees the lock.
    pub async fn mark_reconciled(&self, at_unix: i64) -> Result<(), StoreError> {
        let mut conn = self.redis.clone();
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(format!("{}:sentinel", self.prefix))
            .arg(at_unix)
            .ignore()
            .cmd("DEL")
            .arg(format!("{}:reconcile-lock", self.prefix))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Leases in the expiry index whose time has passed (awaiting the reaper).
    pub async fn expired_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.redis.clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(format!("{}:expiry", self.prefix))
            .arg("-inf")
            .arg(now_ms)
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// Number of leases in the expiry index (live plus awaiting the reaper).
    pub async fn tracked(&self) -> Result<u64, StoreError> {
        let mut conn = self.redis.clone();
        let n: u64 = redis::cmd("ZCARD")
            .arg(format!("{}:expiry", self.prefix))
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }
}
