//! The lease protocol in Redis: claim, extend, release, finish and reap, each
//! one atomic Lua script.
//!
//! Keys (all under the `{prefix}` hash tag, so a Redis Cluster keeps them in one slot):
//! - `{p}:leases:<task>`: hash volunteer -> `token|fence|expires_ms`, the task's leases;
//! - `{p}:voters:<task>`: set of volunteers whose vote on the task committed
//!   (moved there from the leases hash atomically when the vote ends its lease);
//! - `{p}:offers:<task>`: slot offers published for the task and not yet taken
//!   by a claim (the relay adds, a claim takes away), which the lost-slot audit reads;
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
use spotcheck_shared::lease_token::LeaseToken;
use spotcheck_shared::{TaskId, UserId};
use std::sync::LazyLock;

/// A granted lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// The opaque token the holder presents.
    pub token: LeaseToken,
    /// Monotonic fencing number of this grant.
    pub fence: i64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: i64,
}

/// One vote to fence at commit.
#[derive(Debug, Clone, Copy)]
pub struct SealRequest<'a> {
    /// The task voted on.
    pub task: TaskId,
    /// The voter.
    pub volunteer: UserId,
    /// The token the vote came with.
    pub token: &'a LeaseToken,
    /// The voter's quota counter for today.
    pub quota_key: &'a str,
}

/// What covers a task's slots in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Lease entries, live or awaiting the reaper.
    pub leases: i64,
    /// Volunteers whose votes committed.
    pub voters: i64,
    /// Offers published and not yet taken by a claim.
    pub offers: i64,
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
    /// Votes counted on it as far as the caller knows (a floor: Redis's own
    /// set of voters counts too).
    pub counted: i32,
    /// Lease lifetime in milliseconds.
    pub ttl_ms: u64,
    /// Live leases one volunteer may hold.
    pub cap: u32,
    /// The new lease's token.
    pub token: &'a LeaseToken,
    /// The volunteer's daily vote quota: refused once it is spent.
    pub quota: Option<QuotaRef<'a>>,
    /// Where the slot comes from.
    pub source: SlotSource,
}

/// Where a claimed slot comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSource {
    /// A slot offer from the queue (review tasks).
    Queue,
    /// The slot of a lease its holder released on this replica, handed to the
    /// next claim without going through the queue: the released lease entry
    /// stays in Redis (so the reaper re-offers it should nobody take it) until
    /// this claim replaces it, in the same script.
    Handback {
        /// Who released it.
        released_by: UserId,
    },
    /// A gold task, served from PostgreSQL: any number may hold it at once.
    Gold,
}

impl SlotSource {
    /// The claim script's name for it.
    fn kind(self) -> &'static str {
        match self {
            SlotSource::Queue => "queue",
            SlotSource::Handback { .. } => "handback",
            SlotSource::Gold => "gold",
        }
    }

    /// Who released a handed-back slot.
    fn released_by(self) -> Option<UserId> {
        match self {
            SlotSource::Handback { released_by } => Some(released_by),
            _ => None,
        }
    }
}

/// A quota counter and its limit.
#[derive(Debug, Clone, Copy)]
pub struct QuotaRef<'a> {
    /// The counter's key.
    pub key: &'a str,
    /// The most it may reach.
    pub limit: u32,
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
    /// The volunteer's daily vote quota is spent.
    QuotaSpent,
    /// A handed-back slot whose released lease is gone (the reaper took it, or
    /// another claim did): the hand-back is void.
    Stale,
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
    /// The volunteer's daily vote quota is spent (a vote is refused, not counted).
    #[error("the daily vote quota is spent")]
    QuotaSpent,
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
local function gone_or_expired(p, task, vol, token)
  if gone(p, task, vol, token) == -4 then return -4 end
  return -3
end
";

static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol = ARGV[1], ARGV[2], ARGV[3]
local required, counted_floor = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl, cap, token = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local quota_key, quota_limit, source, old = ARGV[9], tonumber(ARGV[10]), ARGV[11], ARGV[12]
local from_offer = source ~= 'gold'
local lk = p .. ':leases:' .. task
local vk = p .. ':voters:' .. task
local ek = p .. ':expiry'
-- One read of the task's lease entries serves every check below: the
-- released entry a hand-back replaces, the caller's own, and the live count.
local entries = redis.call('HGETALL', lk)
local live, mine_exp, old_exp = 0, nil, nil
for i = 1, #entries, 2 do
  local _, _, exp = parse(entries[i + 1])
  if exp > now then live = live + 1 end
  if entries[i] == vol then mine_exp = exp end
  if entries[i] == old then old_exp = exp end
end
-- A hand-back is only good while the released lease it replaces is there
-- and ended; once the reaper has re-offered it, it is gone or about to be.
if source == 'handback' and (not old_exp or old_exp > now) then return {{-6}} end
-- The released entry's holder set lost the task when it was released (a stale
-- member, should one remain, is pruned by the holder loop below).
local function replace_old()
  if source == 'handback' then
    redis.call('HDEL', lk, old)
    redis.call('ZREM', ek, task .. '|' .. old)
  end
end
-- An ended lease of this volunteer's on a gold task may be taken again at once;
-- on a review task it waits for the reaper, which offers its slot again.
if mine_exp and (mine_exp > now or from_offer) then return {{-1}} end
if redis.call('SISMEMBER', vk, vol) == 1 then return {{-1}} end
if quota_limit > 0 and tonumber(redis.call('GET', quota_key) or '0') >= quota_limit then return {{-5}} end
local ok = p .. ':offers:' .. task
local counted = math.max(counted_floor, redis.call('SCARD', vk))
if live + counted >= required then
  if source == 'queue' then redis.call('DECR', ok) end
  replace_old()
  return {{0}}
end
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
redis.call('ZADD', ek, exp, task .. '|' .. vol)
if source == 'queue' then redis.call('DECR', ok) end
replace_old()
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
if exp <= now then return {{gone_or_expired(p, task, vol, token)}} end
if ttl > 0 then
  exp = now + ttl
  redis.call('HSET', lk, vol, cur .. '|' .. fence .. '|' .. exp)
  redis.call('ZADD', p .. ':expiry', exp, task .. '|' .. vol)
end
return {{1, fence, exp}}
"
    ))
});

/// The fence at commit of a batch of votes: for each `task, volunteer, token,
/// quota key` (from ARGV[4] on, four at a time), checks that the token is the
/// volunteer's live lease and that today's quota (ARGV[3], 0 for none) is not
/// spent; then charges the quota and keeps the lease (and the reaper) off for
/// ARGV[2] ms while the vote commits. Returns one code per vote: the fence, or
/// a negative lease error (-5: quota spent).
static SEAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, hold, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {{}}
for i = 4, #ARGV, 4 do
  local task, vol, token, qk = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local lk = p .. ':leases:' .. task
  local v = redis.call('HGET', lk, vol)
  local code
  if not v then
    code = gone(p, task, vol, token)
  else
    local cur, fence, exp = parse(v)
    if cur ~= token then code = -2
    elseif exp <= now then code = gone_or_expired(p, task, vol, token)
    elseif limit > 0 and tonumber(redis.call('GET', qk) or '0') >= limit then code = -5
    else
      if limit > 0 then
        if redis.call('INCR', qk) == 1 then redis.call('EXPIRE', qk, 172800) end
      end
      if exp < now + hold then
        exp = now + hold
        redis.call('HSET', lk, vol, cur .. '|' .. fence .. '|' .. exp)
        redis.call('ZADD', p .. ':expiry', exp, task .. '|' .. vol)
      end
      code = fence
    end
  end
  out[#out + 1] = code
end
return out
"
    ))
});

/// Gives back the quota charges of sealed votes whose commit failed
/// (ARGV[2..]: quota keys); the leases stay, so the votes can be sent again.
static UNSEAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "for i = 2, #ARGV do
  if tonumber(redis.call('GET', ARGV[i]) or '0') > 0 then redis.call('DECR', ARGV[i]) end
end
return 1",
    )
});

/// Ends the leases of committed votes (ARGV from 2 on: task, volunteer, token,
/// three at a time): each lease whose token is current leaves the leases hash
/// and its volunteer joins the task's voters, in one step, so the claim cap
/// never counts a vote twice nor misses it; the volunteer's cached standing
/// counts one more answer. Returns how many leases ended.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PARSE}
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 3 do
  local task, vol, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local lk = p .. ':leases:' .. task
  local vk = p .. ':voters:' .. task
  redis.call('SADD', vk, vol)
  redis.call('EXPIRE', vk, 604800)
  local sk = p .. ':standing:' .. vol
  if redis.call('EXISTS', sk) == 1 then redis.call('HINCRBY', sk, 'a', 1) end
  local v = redis.call('HGET', lk, vol)
  if v then
    local cur = parse(v)
    if cur == token then
      redis.call('HDEL', lk, vol)
      redis.call('SREM', p .. ':holder:' .. vol, task)
      redis.call('ZREM', p .. ':expiry', task .. '|' .. vol)
      n = n + 1
    end
  end
end
return n
"
    ))
});

/// For each task of ARGV[2..]: lease entries (live, or expired and awaiting the
/// reaper), voters, and offers not yet taken.
static COVERAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local t = ARGV[i]
  out[#out + 1] = redis.call('HLEN', p .. ':leases:' .. t)
  out[#out + 1] = redis.call('SCARD', p .. ':voters:' .. t)
  out[#out + 1] = tonumber(redis.call('GET', p .. ':offers:' .. t) or '0')
end
return out",
    )
});

/// Makes a lease expire now if the token is current (a release, or a vote that
/// cannot count), so the reaper hands its slot back after ARGV[5] ms. With
/// ARGV[6] = 'released' its tombstone says so at once.
static EXPIRE_NOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol, token, hold, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local lk = p .. ':leases:' .. task
local v = redis.call('HGET', lk, vol)
if not v then return gone(p, task, vol, token) end
local cur, fence, exp = parse(v)
if cur ~= token then return -2 end
if exp <= now then return gone_or_expired(p, task, vol, token) end
redis.call('HSET', lk, vol, cur .. '|' .. fence .. '|' .. now)
redis.call('ZADD', p .. ':expiry', now + hold, task .. '|' .. vol)
-- No longer live, so no longer one of the volunteer's leases under the cap.
redis.call('SREM', p .. ':holder:' .. vol, task)
if reason == 'released' then
  redis.call('SET', p .. ':gone:' .. task .. ':' .. vol, token .. '|released', 'EX', 86400)
end
return 1
"
    ))
});

/// Makes a released lease (ARGV[2] task, ARGV[3] volunteer) due for the reaper
/// now, if it is still there and ended: a hand-back nobody here could take.
static HAND_TO_REAPER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p, task, vol = ARGV[1], ARGV[2], ARGV[3]
local v = redis.call('HGET', p .. ':leases:' .. task, vol)
if not v then return 0 end
local _, _, exp = parse(v)
if exp > now then return 0 end
return redis.call('ZADD', p .. ':expiry', 'XX', 'CH', now, task .. '|' .. vol)
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

/// Removes leases whose slots have been re-offered (ARGV from 2 on: task and
/// volunteer, two at a time), unless renewed meanwhile, and leaves a day-long
/// tombstone so the token is answered "expired" (or "released", when the
/// release already wrote so). Returns how many were removed.
static DROP_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{PARSE}
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 2 do
  local task, vol = ARGV[i], ARGV[i + 1]
  local lk = p .. ':leases:' .. task
  local v = redis.call('HGET', lk, vol)
  local renewed = false
  if v then
    local token, _, exp = parse(v)
    if exp > now then
      renewed = true
    else
      redis.call('HDEL', lk, vol)
      local gk = p .. ':gone:' .. task .. ':' .. vol
      if redis.call('GET', gk) ~= token .. '|released' then
        redis.call('SET', gk, token .. '|expired', 'EX', 86400)
      end
    end
  end
  if not renewed then
    redis.call('SREM', p .. ':holder:' .. vol, task)
    redis.call('ZREM', p .. ':expiry', task .. '|' .. vol)
    n = n + 1
  end
end
return n
"
    ))
});

/// Takes KEYS[1] for ARGV[1] (ARGV[2] ms), or renews it if ARGV[1] holds it.
static HOLD_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1",
    )
});

fn lease_error(code: i64) -> LeaseError {
    match code {
        -2 => LeaseError::WrongToken,
        -3 => LeaseError::Expired,
        -4 => LeaseError::Released,
        -5 => LeaseError::QuotaSpent,
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
        let (quota_key, quota_limit) = req.quota.map_or(("", 0), |q| (q.key, q.limit));
        let reply: Vec<i64> = CLAIM
            .arg(&self.prefix)
            .arg(req.task.to_string())
            .arg(req.volunteer.to_string())
            .arg(req.required)
            .arg(req.counted)
            .arg(req.ttl_ms)
            .arg(req.cap)
            .arg(req.token.as_str())
            .arg(quota_key)
            .arg(quota_limit)
            .arg(req.source.kind())
            .arg(
                req.source
                    .released_by()
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
            )
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match reply.as_slice() {
            [1, fence, exp] => ClaimResult::Granted(Lease {
                token: req.token.clone(),
                fence: *fence,
                expires_at_ms: *exp,
            }),
            [0] => ClaimResult::Full,
            [-2] => ClaimResult::CapReached,
            [-5] => ClaimResult::QuotaSpent,
            [-6] => ClaimResult::Stale,
            _ => ClaimResult::AlreadyHeld,
        })
    }

    /// The fence at commit: checks each vote's lease and quota, charges the
    /// quota and holds the lease for `hold_ms` while the batch commits.
    /// One answer per vote, in order: the lease's fence, or why it is refused.
    pub async fn seal(
        &self,
        votes: &[SealRequest<'_>],
        quota_limit: u32,
        hold_ms: u64,
    ) -> Result<Vec<Result<i64, LeaseError>>, StoreError> {
        if votes.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = SEAL.prepare_invoke();
        invocation.arg(&self.prefix).arg(hold_ms).arg(quota_limit);
        for v in votes {
            invocation
                .arg(v.task.to_string())
                .arg(v.volunteer.to_string())
                .arg(v.token.as_str())
                .arg(v.quota_key);
        }
        let codes: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(codes
            .into_iter()
            .map(|c| if c > 0 { Ok(c) } else { Err(lease_error(c)) })
            .collect())
    }

    /// Gives back the quota charged by [`seal`](Self::seal) for votes whose commit failed.
    pub async fn unseal(&self, quota_keys: &[&str]) -> Result<(), StoreError> {
        if quota_keys.is_empty() {
            return Ok(());
        }
        let mut invocation = UNSEAL.prepare_invoke();
        invocation.arg(&self.prefix);
        for k in quota_keys {
            invocation.arg(*k);
        }
        let _: i64 = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Extends the volunteer's live lease to now + `ttl_ms`; returns its fence and new expiry.
    pub async fn extend(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &LeaseToken,
        ttl_ms: u64,
    ) -> Result<(i64, i64), StoreError> {
        self.check_or_extend(task, volunteer, token, ttl_ms.max(1))
            .await
    }

    async fn check_or_extend(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &LeaseToken,
        ttl_ms: u64,
    ) -> Result<(i64, i64), StoreError> {
        let reply: Vec<i64> = CHECK_OR_EXTEND
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(token.as_str())
            .arg(ttl_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        match reply.as_slice() {
            [1, fence, exp] => Ok((*fence, *exp)),
            [code, ..] => Err(lease_error(*code).into()),
            [] => Err(LeaseError::NotFound.into()),
        }
    }

    /// Ends the leases of votes that committed; returns how many ended.
    pub async fn finish(&self, votes: &[(TaskId, UserId, &LeaseToken)]) -> Result<i64, StoreError> {
        if votes.is_empty() {
            return Ok(0);
        }
        let mut invocation = FINISH.prepare_invoke();
        invocation.arg(&self.prefix);
        for (task, volunteer, token) in votes {
            invocation
                .arg(task.to_string())
                .arg(volunteer.to_string())
                .arg(token.as_str());
        }
        Ok(invocation.invoke_async(&mut self.redis.clone()).await?)
    }

    /// What covers each task's slots in Redis: lease entries, voters, and
    /// offers published but not yet taken (negative counts read as none).
    pub async fn coverage(&self, tasks: &[TaskId]) -> Result<Vec<Coverage>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = COVERAGE.prepare_invoke();
        invocation.arg(&self.prefix);
        for t in tasks {
            invocation.arg(t.to_string());
        }
        let flat: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(flat
            .chunks_exact(3)
            .map(|c| Coverage {
                leases: c[0].max(0),
                voters: c[1].max(0),
                offers: c[2].max(0),
            })
            .collect())
    }

    /// Writes the voters of tasks back (after Redis lost its data), so a claim
    /// again refuses a volunteer a task they voted on.
    pub async fn restore_voters(&self, tasks: &[(TaskId, Vec<UserId>)]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for (task, voters) in tasks.iter().filter(|(_, v)| !v.is_empty()) {
            let key = format!("{}:voters:{task}", self.prefix);
            pipe.cmd("SADD").arg(&key);
            for v in voters {
                pipe.arg(v.to_string());
            }
            pipe.ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(7 * 86_400).ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Counts slot offers just published (one entry per offer), for the audit:
    /// one `INCRBY` per task however many of its offers went out.
    pub async fn count_offers(&self, tasks: &[TaskId]) -> Result<(), StoreError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut per_task: std::collections::HashMap<TaskId, i64> = Default::default();
        for t in tasks {
            *per_task.entry(*t).or_default() += 1;
        }
        let mut pipe = redis::pipe();
        for (t, n) in per_task {
            let key = format!("{}:offers:{t}", self.prefix);
            pipe.cmd("INCRBY").arg(&key).arg(n).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(7 * 86_400).ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(())
    }

    /// Marks the volunteer's live lease expired now, so the reaper re-offers its
    /// slot after `hold_ms`: a release (`end` = released), or a vote that cannot count.
    pub async fn expire_now(
        &self,
        task: TaskId,
        volunteer: UserId,
        token: &LeaseToken,
        hold_ms: u64,
        end: LeaseEnd,
    ) -> Result<(), StoreError> {
        let code: i64 = EXPIRE_NOW
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(volunteer.to_string())
            .arg(token.as_str())
            .arg(hold_ms)
            .arg(end.as_str())
            .invoke_async(&mut self.redis.clone())
            .await?;
        if code == 1 {
            Ok(())
        } else {
            Err(lease_error(code).into())
        }
    }

    /// Hands a released lease to the reaper now (a hand-back nobody on this
    /// replica could take); nothing if a claim replaced it meanwhile.
    pub async fn hand_to_reaper(
        &self,
        task: TaskId,
        released_by: UserId,
    ) -> Result<(), StoreError> {
        let _: i64 = HAND_TO_REAPER
            .arg(&self.prefix)
            .arg(task.to_string())
            .arg(released_by.to_string())
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
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

    /// Removes expired leases whose slots are already re-offered; returns how many.
    pub async fn drop_expired(&self, leases: &[(TaskId, UserId)]) -> Result<i64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut invocation = DROP_EXPIRED.prepare_invoke();
        invocation.arg(&self.prefix);
        for (task, volunteer) in leases {
            invocation.arg(task.to_string()).arg(volunteer.to_string());
        }
        Ok(invocation.invoke_async(&mut self.redis.clone()).await?)
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

    /// Takes or renews the lock `name` for `owner` for `ttl`; false while
    /// another owner holds it.
    pub async fn hold_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let held: i64 = HOLD_LOCK
            .key(format!("{}:lock:{name}", self.prefix))
            .arg(owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(held == 1)
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

    /// The value of a counter under this store (a quota, say); 0 when absent.
    pub async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        let mut conn = self.redis.clone();
        let n: Option<i64> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(n.unwrap_or(0))
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
