//! A user's standing on the hot path: role, status, whether their votes count,
//! how many answers they have given, which sellers they are linked to and what
//! the gold rate reads of their reliability (confusion estimate and gold
//! tallies), cached in Redis so a claim needs no PostgreSQL round trip.
//!
//! PostgreSQL stays the record. Every change of these (suspension, role,
//! abuse stop, reinstatement, seller link) is committed there first and then
//! invalidates the entry ([`StandingCache::invalidate`]), which every replica
//! sees on its next request. A per-user generation number closes the race of a
//! reader that loaded the old row just before the change: its fill is refused
//! when the generation moved meanwhile. Entries also expire after
//! [`ENTRY_TTL_SECS`], which bounds staleness should Redis lose an invalidation.
//! The reliability part changes with every gold answer and decided audit task;
//! it is not invalidated for those, so the gold rate follows a volunteer's
//! estimate with at most that delay (an abuse stop still invalidates at once).
//!
//! Each replica also keeps the standings it read, with the generation read
//! before them: a request whose user's generation is still that one (one `GET`,
//! the same round trip as before) uses the copy, for at most [`LOCAL_TTL`], and
//! reads the entry again otherwise. An invalidation moves the generation, so
//! the next request on every replica still sees the change.

use dashmap::DashMap;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use spotcheck_shared::abuse::VolunteerStats;
use spotcheck_shared::reliability::Confusion;
use sqlx::PgPool;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long an entry lives without being invalidated.
pub const ENTRY_TTL_SECS: u64 = 600;
/// How long a replica uses its copy of a standing while the user's generation
/// stays the same.
pub const LOCAL_TTL: Duration = Duration::from_secs(30);
/// Copies a replica keeps at most (a few hundred bytes each); past it they start over.
pub const MAX_LOCAL: usize = 100_000;

/// What the gold rate reads of a volunteer's reliability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Their confusion estimate (`None`: no row yet, a newcomer's prior).
    #[serde(rename = "c")]
    pub confusion: Option<Confusion>,
    /// Their gold tallies and vote counts.
    #[serde(rename = "s")]
    pub stats: VolunteerStats,
}

/// What the hot path knows of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// `volunteer`, `staff`, `admin`.
    pub role: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Whether their votes carry weight (not stopped by the abuse rules).
    pub counting: bool,
    /// Votes they have given (review and gold), which paces gold turns.
    pub answers: u64,
    /// Sellers they are linked to (conflict of interest).
    pub seller_links: Vec<String>,
    /// Their reliability as the gold rate reads it.
    pub measured: Measured,
}

/// Errors of the cache: the record or the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Writes the entry only if the generation is still ARGV[1].
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 's', ARGV[3], 'c', ARGV[4], 'a', ARGV[5], 'l', ARGV[6], 'q', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1",
    )
});

/// A replica's copy of a standing, with the generation read before it.
struct Copy {
    generation: Option<String>,
    standing: Arc<Standing>,
    read_at: Instant,
}

/// The standing cache of one deployment (keys under `{prefix}`).
#[derive(Clone)]
pub struct StandingCache {
    redis: ConnectionManager,
    prefix: String,
    copies: Arc<DashMap<Uuid, Copy>>,
}

impl StandingCache {
    /// A cache with keys under the `{prefix}` hash tag.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{{{prefix}}}"),
            copies: Arc::default(),
        }
    }

    /// The replica's copy for `user` with `answers`, if read at `generation`
    /// and young enough.
    fn copy(&self, user: Uuid, generation: &Option<String>, answers: u64) -> Option<Arc<Standing>> {
        let mut copy = self.copies.get_mut(&user)?;
        if copy.generation != *generation || copy.read_at.elapsed() >= LOCAL_TTL {
            return None;
        }
        if copy.standing.answers != answers {
            let mut standing = Standing::clone(&copy.standing);
            standing.answers = answers;
            copy.standing = Arc::new(standing);
        }
        Some(Arc::clone(&copy.standing))
    }

    fn keep(&self, user: Uuid, generation: Option<String>, standing: &Arc<Standing>) {
        if self.copies.len() >= MAX_LOCAL {
            self.copies.clear();
        }
        self.copies.insert(
            user,
            Copy {
                generation,
                standing: Arc::clone(standing),
                read_at: Instant::now(),
            },
        );
    }

    fn keys(&self, user: Uuid) -> (String, String) {
        (
            format!("{}:standing:{user}", self.prefix),
            format!("{}:standing-gen:{user}", self.prefix),
        )
    }

    /// The user's standing: the replica's copy while the user's generation
    /// has not moved, else from Redis, or loaded from PostgreSQL and cached.
    /// `None` when the user does not exist.
    pub async fn get(
        &self,
        pool: &PgPool,
        user: Uuid,
    ) -> Result<Option<Arc<Standing>>, StandingError> {
        let (key, gen_key) = self.keys(user);
        if self.copies.contains_key(&user) {
            // The generation, and the answers the lease store counts up with
            // each vote (they pace gold turns, so they are never taken from the copy).
            let (generation, answers): (Option<String>, Option<u64>) = redis::pipe()
                .cmd("GET")
                .arg(&gen_key)
                .cmd("HGET")
                .arg(&key)
                .arg("a")
                .query_async(&mut self.redis.clone())
                .await?;
            if let Some(answers) = answers
                && let Some(standing) = self.copy(user, &generation, answers)
            {
                return Ok(Some(standing));
            }
        }
        // Plain reads in one round trip (no script: cheaper for Redis, and
        // served while writes are paused). The generation is read first: an
        // invalidation between the two reads makes the entry missing, and the
        // fill below is then refused, so a stale entry is never written back.
        let (generation, fields): (Option<String>, Vec<Option<String>>) = redis::pipe()
            .cmd("GET")
            .arg(&gen_key)
            .cmd("HMGET")
            .arg(&key)
            .arg(&["r", "s", "c", "a", "l", "q"])
            .query_async(&mut self.redis.clone())
            .await?;
        if let [
            Some(role),
            Some(status),
            Some(counting),
            Some(answers),
            Some(links),
            Some(measured),
        ] = fields.as_slice()
            && !role.is_empty()
            // An entry without a readable "q" (written before it existed) is
            // a miss: loaded again below.
            && let Ok(measured) = serde_json::from_str::<Measured>(measured)
        {
            let standing = Arc::new(Standing {
                role: role.clone(),
                status: status.clone(),
                counting: counting == "1",
                answers: answers.parse().unwrap_or(0),
                seller_links: serde_json::from_str(links).unwrap_or_default(),
                measured,
            });
            self.keep(user, generation, &standing);
            return Ok(Some(standing));
        }
        let fill_generation = generation.clone().unwrap_or_else(|| "0".into());
        let Some(standing) = load(pool, user).await? else {
            return Ok(None);
        };
        let links = serde_json::to_string(&standing.seller_links).unwrap_or_else(|_| "[]".into());
        let measured = serde_json::to_string(&standing.measured).expect("serializable");
        let _: i64 = FILL
            .key(&key)
            .key(&gen_key)
            .arg(fill_generation)
            .arg(&standing.role)
            .arg(&standing.status)
            .arg(if standing.counting { "1" } else { "0" })
            .arg(standing.answers)
            .arg(links)
            .arg(ENTRY_TTL_SECS)
            .arg(measured)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let standing = Arc::new(standing);
        self.keep(user, generation, &standing);
        Ok(Some(standing))
    }

    /// Forgets the cached standing of `users` after a change to it committed.
    pub async fn invalidate(&self, users: &[Uuid]) -> Result<(), redis::RedisError> {
        if users.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for user in users {
            let (key, gen_key) = self.keys(*user);
            pipe.cmd("INCR").arg(&gen_key).ignore();
            pipe.cmd("EXPIRE").arg(&gen_key).arg(7 * 86_400).ignore();
            pipe.cmd("DEL").arg(&key).ignore();
        }
        pipe.query_async(&mut self.redis.clone()).await
    }
}

/// A user row as [`load`] reads it.
type StandingRow = (
    String,
    String,
    bool,
    i64,
    Vec<String>,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
);

/// The standing as PostgreSQL has it.
pub async fn load(pool: &PgPool, user: Uuid) -> sqlx::Result<Option<Standing>> {
    let row: Option<StandingRow> = sqlx::query_as(
        "SELECT u.role, u.status, coalesce(r.counting, true),
                (SELECT count(*) FROM votes v WHERE v.volunteer_id = u.id),
                ARRAY(SELECT k.seller_id FROM volunteer_seller_links k WHERE k.volunteer_id = u.id ORDER BY 1),
                r.confusion, r.stats
         FROM users u LEFT JOIN volunteer_reliability r ON r.volunteer_id = u.id
         WHERE u.id = $1",
    )
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(role, status, counting, answers, seller_links, confusion, stats)| Standing {
            role,
            status,
            counting,
            answers: answers.max(0) as u64,
            seller_links,
            measured: Measured {
                confusion: confusion.and_then(|c| serde_json::from_value(c).ok()),
                stats: stats
                    .and_then(|s| serde_json::from_value(s).ok())
                    .unwrap_or_default(),
            },
        },
    ))
}
