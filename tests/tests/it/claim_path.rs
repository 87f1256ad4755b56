//! The claim and vote path: cancellation safety, lost leases, the fence at
//! commit, volunteers who do not count, standing across replicas,
//! idempotent claims and votes, and a tolerant feed.

use crate::harness::{
    PrivateRedis, TestEnv, claim_within, count, count_reaches, import_lines, wait_until,
};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_platform::amqp::Publisher;
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::time::{Duration, Instant};

/// An environment with `listings` review tasks of `votes` votes each.
async fn env_with(
    votes: i32,
    listings: usize,
    redis: Option<PrivateRedis>,
    coordinator: impl FnOnce(&mut coordinator::Config),
    api: impl FnOnce(&mut worker_api::Config),
) -> TestEnv {
    let mut env = TestEnv::db_only().await;
    env.min_votes = votes;
    env.redis = redis;
    env.start_coordinator(coordinator).await;
    env.start_api(api).await;
    let staff = env.user("staff-claims", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    let lines: Vec<String> = generate(7, listings)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect();
    assert_eq!(
        import_lines(&env, &lines).await.ingest.tasks,
        listings as u64
    );
    env
}

const REDIS: &str = "redis://127.0.0.1:6379/";

async fn redis(env: &TestEnv) -> redis::aio::MultiplexedConnection {
    let url = env
        .redis
        .as_ref()
        .map(PrivateRedis::url)
        .unwrap_or_else(|| REDIS.to_owned());
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn user_id(env: &TestEnv, token: &str) -> String {
    let (status, me) = env.call(Method::GET, "/v1/me", Some(token), None).await;
    assert_eq!(status, 200, "{me}");
    me["user_id"].as_str().unwrap().to_owned()
}

fn vote_body(claim: &Value, verdict: &str) -> Value {
    json!({"lease_token": claim["lease_token"], "verdict": verdict, "reasons": []})
}

fn votes_path(claim: &Value) -> String {
    format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap())
}

/// Unacknowledged messages of a queue, as the broker counts them.
fn unacked(queue: &str) -> u64 {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "messages_unacknowledged",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(name, _)| *name == queue)
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(0)
}

/// What [`claim_while_redis_is_paused`] leaves: the environment, the claim's
/// answer (`Err` when the client gave up), the user id of the volunteer who
/// claimed, a second volunteer's token, and a connection to the test's Redis.
struct SlowClaim {
    env: TestEnv,
    answer: Option<reqwest::Result<reqwest::Response>>,
    gone_id: String,
    next: String,
    conn: redis::aio::MultiplexedConnection,
}

/// One review task of one vote, and a claim of it that waits on Redis (writes
/// paused for `pause`) while its client gives up after `patience`;
/// worker-api's Redis commands fail after `redis_timeout_ms`. Returns once
/// Redis takes writes again.
async fn claim_while_redis_is_paused(
    redis_timeout_ms: u64,
    pause: Duration,
    patience: Duration,
) -> SlowClaim {
    let env = env_with(
        1,
        1,
        Some(PrivateRedis::start().await),
        |_| {},
        |c| {
            c.services.lease_ttl_secs = 2;
            c.services.redis_timeout_ms = redis_timeout_ms;
        },
    )
    .await;
    let gone = env.user("vol-gone", Role::Volunteer).await;
    let next = env.user("vol-next", Role::Volunteer).await;
    // Both standings cached, and the only offer in worker-api's buffer.
    let gone_id = user_id(&env, &gone).await;
    user_id(&env, &next).await;
    let tasks = env.names().tasks_queue();
    let pool = env.pool.clone();
    wait_until("the offer is buffered", Duration::from_secs(20), || {
        let (pool, queue) = (pool.clone(), tasks.clone());
        async move {
            count(&pool, "SELECT count(*) FROM outbox").await == 0 && unacked(&queue) == 1
        }
    })
    .await;
    // Writes stall (reads go on): the claim takes the offer, then waits on its
    // lease script.
    let mut conn = redis(&env).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let paused_at = Instant::now();
    let answer = env
        .http
        .post(env.url("/v1/tasks/claim"))
        .bearer_auth(&gone)
        .timeout(patience)
        .send()
        .await;
    tokio::time::sleep((pause + Duration::from_millis(200)).saturating_sub(paused_at.elapsed()))
        .await;
    SlowClaim {
        env,
        answer: Some(answer),
        gone_id,
        next,
        conn,
    }
}

/// The task's lease entries, by volunteer id.
async fn lease_entries(
    slow: &mut SlowClaim,
    task: &str,
) -> std::collections::HashMap<String, String> {
    let key = format!("{{{}}}:leases:{task}", slow.env.id);
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut slow.conn)
        .await
        .unwrap()
}

async fn the_task(env: &TestEnv) -> String {
    sqlx::query_scalar("SELECT id::text FROM tasks")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// Another volunteer gets the task within a few seconds and votes, which
/// closes its one slot (so no later offer of it can stand for one left
/// behind); then the tasks queue holds no unacknowledged offer.
async fn the_slot_comes_back_and_no_offer_is_left(slow: &mut SlowClaim) {
    let env = &slow.env;
    let started = Instant::now();
    let taken = claim_within(env, &slow.next, Duration::from_secs(20)).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    let task = the_task(env).await;
    assert_eq!(taken["task_id"], task.as_str());
    let (status, vote) = env
        .call(
            Method::POST,
            &votes_path(&taken),
            Some(&slow.next),
            Some(vote_body(&taken, "genuine")),
        )
        .await;
    assert_eq!(status, 201, "{vote}");
    // The broker's figures lag a little behind the acks.
    let queue = env.names().tasks_queue();
    let deadline = Instant::now() + Duration::from_secs(15);
    while unacked(&queue) != 0 {
        if Instant::now() > deadline {
            // What covers the task, to tell a duplicate offer from a lost ack.
            let offers: Option<i64> = redis::cmd("GET")
                .arg(format!("{{{}}}:offers:{task}", slow.env.id))
                .query_async(&mut slow.conn)
                .await
                .unwrap();
            let leases = lease_entries(slow, &task).await;
            let outbox = count(&slow.env.pool, "SELECT count(*) FROM outbox").await;
            panic!(
                "an offer is left unacknowledged: {} unacked, leases {leases:?}, \
                 offers counted {offers:?}, outbox rows {outbox}",
                unacked(&queue)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_whose_client_left_is_granted_and_its_lease_lapses_for_the_next_volunteer() {
    // Redis answers well within worker-api's limit, but after the client left.
    let mut slow = claim_while_redis_is_paused(
        10_000,
        Duration::from_millis(1500),
        Duration::from_millis(300),
    )
    .await;
    let answer = slow.answer.take().expect("an answer");
    assert!(answer.is_err(), "the client gave up: {answer:?}");
    // The claim went on without its client: the lease is theirs...
    let task = the_task(&slow.env).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leases = lease_entries(&mut slow, &task).await;
        if leases.contains_key(&slow.gone_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the detached claim never granted its lease: {leases:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and it lapses after its TTL like any other, its slot offered again.
    the_slot_comes_back_and_no_offer_is_left(&mut slow).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_whose_lease_script_times_out_puts_its_offer_back() {
    // worker-api gives up on Redis after 300 ms, while the client still waits.
    let mut slow =
        claim_while_redis_is_paused(300, Duration::from_millis(2000), Duration::from_secs(10))
            .await;
    let answer = slow
        .answer
        .take()
        .expect("an answer")
        .expect("the client waited");
    let status = answer.status();
    let problem: Value = answer.json().await.expect("a problem body");
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "unavailable", "{problem}");
    the_slot_comes_back_and_no_offer_is_left(&mut slow).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_lost_from_redis_with_the_sentinel_kept_is_offered_again_by_the_audit() {
    const TTL: u64 = 2;
    const AUDIT_MS: u64 = 300;
    let env = env_with(
        1,
        1,
        None,
        |c| {
            c.services.lease_ttl_secs = TTL;
            c.audit_interval_ms = AUDIT_MS;
            c.audit_grace_ms = 0;
        },
        |c| c.services.lease_ttl_secs = TTL,
    )
    .await;
    let holder = env.user("vol-holder", Role::Volunteer).await;
    let next = env.user("vol-after", Role::Volunteer).await;
    let claim = claim_within(&env, &holder, Duration::from_secs(20)).await;
    let (task, holder_id) = (
        claim["task_id"].as_str().unwrap().to_owned(),
        user_id(&env, &holder).await,
    );
    // The lease's writes are lost (a failover dropped them); the sentinel stays.
    let p = format!("{{{}}}", env.id);
    let mut conn = redis(&env).await;
    let removed: (i64, i64) = redis::pipe()
        .cmd("HDEL")
        .arg(format!("{p}:leases:{task}"))
        .arg(&holder_id)
        .cmd("ZREM")
        .arg(format!("{p}:expiry"))
        .arg(format!("{task}|{holder_id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, (1, 1));
    let sentinel: bool = redis::cmd("EXISTS")
        .arg(format!("{p}:sentinel"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(sentinel);
    let lost_at = Instant::now();
    let again = claim_within(&env, &next, Duration::from_secs(20)).await;
    assert_eq!(again["task_id"], task.as_str());
    // TTL plus an audit period to notice, plus the relay and the broker.
    let bound = Duration::from_millis(TTL * 1000 + 2 * AUDIT_MS + 2500);
    assert!(
        lost_at.elapsed() <= bound,
        "{:?} > {bound:?}",
        lost_at.elapsed()
    );
}

/// Whether the outbox is empty and each of these offer counts is `want`.
async fn offers_counted(pool: sqlx::PgPool, keys: Vec<String>, want: i64) -> bool {
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let counted: Vec<Option<i64>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    count(&pool, "SELECT count(*) FROM outbox").await == 0
        && counted.iter().all(|c| *c == Some(want))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_reads_one_slice_a_run_and_keeps_the_other_slices_suspects() {
    use coordinator::audit::{AuditConfig, Audited, Suspects, audit_once};
    const TASKS: usize = 5;
    // The coordinator's own audit never runs here: the test runs it.
    let env = env_with(1, TASKS, None, |c| c.audit_interval_ms = 3_600_000, |_| {}).await;
    let p = format!("{{{}}}", env.id);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM tasks ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(ids.len(), TASKS);
    let offer_keys: Vec<String> = ids.iter().map(|t| format!("{p}:offers:{t}")).collect();
    wait_until(
        "every offer published and counted",
        Duration::from_secs(15),
        || offers_counted(env.pool.clone(), offer_keys.clone(), 1),
    )
    .await;
    let manager = redis::aio::ConnectionManager::new(redis::Client::open(REDIS).unwrap())
        .await
        .unwrap();
    let leases = spotcheck_platform::lease::LeaseStore::new(manager, &env.id);
    let patience = Duration::from_millis(400);
    let config = AuditConfig {
        interval: Duration::from_millis(300),
        patience,
        replica: "audit-test".to_owned(),
        tasks_per_run: 2,
    };
    let mut suspects = Suspects::default();
    let pass = async |suspects: &mut Suspects| {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(
                audit_once(&env.pool, &leases, &config, suspects)
                    .await
                    .unwrap(),
            );
        }
        runs
    };
    let runs = |offered: [u64; 3]| -> Vec<Audited> {
        [2, 2, 1]
            .into_iter()
            .zip(offered)
            .map(|(read, offered)| Audited { read, offered })
            .collect()
    };
    // Everything is covered: three runs of at most two tasks make a pass.
    assert_eq!(pass(&mut suspects).await, runs([0, 0, 0]));
    assert!(suspects.is_empty());
    // Every offer's count is lost (a failover dropped the writes).
    let mut conn = redis(&env).await;
    let dropped: i64 = redis::cmd("DEL")
        .arg(&offer_keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dropped, TASKS as i64);
    // First seen short: suspected, not offered yet.
    assert_eq!(pass(&mut suspects).await, runs([0, 0, 0]));
    assert_eq!(suspects.len(), TASKS);
    tokio::time::sleep(patience).await;
    // Each slice's suspects outlived the other slices' runs: all five are
    // offered again, each by the run that reads it.
    assert_eq!(pass(&mut suspects).await, runs([2, 2, 1]));
    assert!(suspects.is_empty());
    // Each lost offer is made again once.
    wait_until("every offer made again", Duration::from_secs(15), || {
        offers_counted(env.pool.clone(), offer_keys.clone(), 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vote_that_reaches_its_fence_after_the_lease_expired_is_refused_and_the_slot_comes_back()
{
    let env = env_with(
        1,
        1,
        None,
        |_| {},
        |c| {
            c.services.lease_ttl_secs = 1;
            c.test_fence_delay_ms = 2500;
            c.limits.daily_vote_quota = 5;
        },
    )
    .await;
    let late = env.user("vol-late", Role::Volunteer).await;
    let next = env.user("vol-next-late", Role::Volunteer).await;
    let claim = claim_within(&env, &late, Duration::from_secs(20)).await;
    let (status, problem) = env
        .call(
            Method::POST,
            &votes_path(&claim),
            Some(&late),
            Some(vote_body(&claim, "genuine")),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (410, Some("lease_expired")),
        "{problem}"
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 0);
    assert_eq!(
        count(&env.pool, "SELECT votes_counted::bigint FROM tasks").await,
        0
    );
    // Nothing was charged to the quota.
    let late_id = user_id(&env, &late).await;
    let day = chrono::Utc::now().format("%Y%m%d");
    let charged: Option<i64> = redis::cmd("GET")
        .arg(format!("{{{}}}:quota:{late_id}:{day}", env.id))
        .query_async(&mut redis(&env).await)
        .await
        .unwrap();
    assert_eq!(charged.unwrap_or(0), 0);
    let again = claim_within(&env, &next, Duration::from_secs(10)).await;
    assert_eq!(again["task_id"], claim["task_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_volunteer_gets_gold_only_adds_no_slot_and_reviews_again_once_reinstated() {
    let env = env_with(
        1,
        4,
        None,
        |_| {},
        |c| {
            c.gold.start_rate = 0.0;
            c.gold.end_rate = 0.0;
        },
    )
    .await;
    let staff = env.user("staff-gold", Role::Staff).await;
    let gold_listing = json!({
        "listing_id": "gold-only-1", "version": 1, "seller_id": "s-gold", "brand": "Acme",
        "category": "bags", "region": "r1", "price": 10.0, "currency": "EUR",
        "title": "gold", "description": "", "image_urls": [], "signals": {}
    });
    let (status, gold) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(&staff),
            Some(json!({"listing": gold_listing, "answer": "genuine"})),
        )
        .await;
    assert_eq!(status, 201, "{gold}");
    let volunteer = env.user("vol-stopped", Role::Volunteer).await;
    let other = env.user("vol-other", Role::Volunteer).await;
    let review = claim_within(&env, &volunteer, Duration::from_secs(20)).await;
    assert_ne!(review["task_id"], gold["task_id"], "gold turns are off");
    // The abuse rules stop the volunteer while they hold a review lease.
    let id: uuid::Uuid = user_id(&env, &volunteer).await.parse().unwrap();
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats, counting, flag)
         VALUES ($1, $2, '{}', false, 'gold_failures')",
    )
    .bind(id)
    .bind(json!(spotcheck_shared::reliability::Confusion::default()))
    .execute(&env.pool)
    .await
    .unwrap();
    let redis_client = redis::Client::open(REDIS).unwrap();
    let manager = redis::aio::ConnectionManager::new(redis_client)
        .await
        .unwrap();
    spotcheck_platform::standing::StandingCache::new(manager, &env.id)
        .invalidate(&[id])
        .await
        .unwrap();
    let (status, problem) = env
        .call(
            Method::POST,
            &votes_path(&review),
            Some(&volunteer),
            Some(vote_body(&review, "counterfeit")),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("not_counting")),
        "{problem}"
    );
    assert_eq!(
        count(
            &env.pool,
            "SELECT sum(votes_required)::bigint FROM tasks WHERE kind = 'review'"
        )
        .await,
        4,
        "their vote added no slot"
    );
    // They are served the gold task only, though review tasks are on offer.
    let gold_claim = claim_within(&env, &volunteer, Duration::from_secs(10)).await;
    assert_eq!(gold_claim["task_id"], gold["task_id"]);
    let (status, _) = env
        .call(
            Method::POST,
            &votes_path(&gold_claim),
            Some(&volunteer),
            Some(vote_body(&gold_claim, "genuine")),
        )
        .await;
    assert_eq!(status, 201, "gold answers still count for their record");
    let open_review = count(
        &env.pool,
        "SELECT count(*) FROM tasks WHERE kind = 'review' AND state = 'open'",
    )
    .await;
    assert_eq!(open_review, 4, "review tasks are still on offer");
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&volunteer), None)
        .await;
    assert_eq!(status, 204, "no gold left and no review task for them");
    // The slot they held went back to others (who vote on what they get).
    let wanted = review["task_id"].as_str().unwrap().to_owned();
    let mut reviewed = Vec::new();
    while !reviewed.contains(&wanted) {
        assert!(
            reviewed.len() < 4,
            "the handed-back slot came back: {reviewed:?}"
        );
        let claim = claim_within(&env, &other, Duration::from_secs(20)).await;
        let (status, _) = env
            .call(
                Method::POST,
                &votes_path(&claim),
                Some(&other),
                Some(vote_body(&claim, "genuine")),
            )
            .await;
        assert_eq!(status, 201);
        reviewed.push(claim["task_id"].as_str().unwrap().to_owned());
    }
    // Reinstated, they review again.
    let (status, _) = env
        .call(
            Method::POST,
            &format!("/v1/staff/volunteers/{id}/reinstate-counting"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let mut fresh = serde_json::to_value(&generate(9, 1)[0].listing).unwrap();
    fresh["listing_id"] = json!("after-reinstatement");
    import_lines(&env, &[fresh.to_string()]).await;
    let claim = claim_within(&env, &volunteer, Duration::from_secs(20)).await;
    let kind: String = sqlx::query_scalar("SELECT kind FROM tasks WHERE id::text = $1")
        .bind(claim["task_id"].as_str().unwrap())
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(kind, "review");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspension_through_one_replica_refuses_the_next_claim_on_another() {
    let mut env = env_with(1, 1, None, |_| {}, |_| {}).await;
    let first = env.api.clone();
    env.start_api(|_| {}).await;
    let second = env.api.clone();
    let staff = env.user("staff-suspend", Role::Staff).await;
    let volunteer = env.user("vol-suspended", Role::Volunteer).await;
    let claim = |base: String, token: String| {
        let http = env.http.clone();
        async move {
            http.post(format!("{base}/v1/tasks/claim"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert!(matches!(
        claim(second.clone(), volunteer.clone()).await,
        200 | 204
    ));
    let id = user_id(&env, &volunteer).await;
    let suspended = env
        .http
        .post(format!("{first}/v1/staff/users/{id}/suspend"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(suspended.status(), 200);
    assert_eq!(claim(second, volunteer).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_gets_the_same_lease_and_fifty_identical_votes_count_once() {
    let env = env_with(2, 3, None, |_| {}, |c| c.limits.daily_vote_quota = 10).await;
    let volunteer = env.user("vol-idem", Role::Volunteer).await;
    let claim_with_key = |key: &'static str| {
        let (http, url, token) = (
            env.http.clone(),
            env.url("/v1/tasks/claim"),
            volunteer.clone(),
        );
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let first = loop {
        match claim_with_key("retry-me").await {
            (200, body) => break body,
            (204, _) => tokio::time::sleep(Duration::from_millis(20)).await,
            (status, body) => panic!("claim answered {status}: {body}"),
        }
    };
    let (status, retried) = claim_with_key("retry-me").await;
    assert_eq!(status, 200);
    assert_eq!(retried["lease_token"], first["lease_token"]);
    assert_eq!(retried["task_id"], first["task_id"]);
    let (status, other) = claim_with_key("another-claim").await;
    assert_eq!(status, 200);
    assert_ne!(other["lease_token"], first["lease_token"]);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 0);
    // Fifty copies of one vote at once: one vote, one charge.
    let mut sent = Vec::new();
    for _ in 0..50 {
        let (http, url, token, body) = (
            env.http.clone(),
            env.url(&votes_path(&first)),
            volunteer.clone(),
            vote_body(&first, "counterfeit"),
        );
        sent.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for s in sent {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert(body["vote_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 1);
    let id = user_id(&env, &volunteer).await;
    let day = chrono::Utc::now().format("%Y%m%d");
    let charged: i64 = redis::cmd("GET")
        .arg(format!("{{{}}}:quota:{id}:{day}", env.id))
        .query_async(&mut redis(&env).await)
        .await
        .unwrap();
    assert_eq!(charged, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_listing_with_fields_spotcheck_does_not_know_is_ingested() {
    let env = env_with(1, 1, None, |_| {}, |_| {}).await;
    let mut listing = serde_json::to_value(&generate(8, 1)[0].listing).unwrap();
    listing["listing_id"] = json!("tolerant-1");
    listing["shipping_options"] = json!([{"carrier": "x", "days": 3}]);
    listing["seller"] = json!({"rating": 4.5});
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "tests")
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    publisher
        .publish_all(
            &env.names().listings_exchange(),
            &[("listing.new".into(), serde_json::to_vec(&listing).unwrap())],
        )
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
    count_reaches(
        &env.pool,
        "the listing with unknown fields is ingested",
        "SELECT count(*) FROM listings WHERE listing_id = 'tolerant-1'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let dead = spotcheck_platform::amqp::Names::dead_queue(&env.names().ingest_queue());
    assert_eq!(env.queue_depth(&dead).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_loses_everything_a_volunteer_is_not_leased_a_task_they_voted_on() {
    let env = env_with(2, 1, Some(PrivateRedis::start().await), |_| {}, |_| {}).await;
    let voter = env.user("vol-voted", Role::Volunteer).await;
    let other = env.user("vol-second", Role::Volunteer).await;
    let claim = claim_within(&env, &voter, Duration::from_secs(20)).await;
    let (status, _) = env
        .call(
            Method::POST,
            &votes_path(&claim),
            Some(&voter),
            Some(vote_body(&claim, "genuine")),
        )
        .await;
    assert_eq!(status, 201);
    env.redis.as_ref().unwrap().flushall().await;
    // The reconciler re-offers the open slot and writes the voters back.
    let conn = redis(&env).await;
    let sentinel = format!("{{{}}}:sentinel", env.id);
    wait_until("reconciled", Duration::from_secs(20), || {
        let (mut conn, key) = (conn.clone(), sentinel.clone());
        async move {
            redis::cmd("EXISTS")
                .arg(&key)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap_or(false)
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let (status, body) = env
            .call(Method::POST, "/v1/tasks/claim", Some(&voter), None)
            .await;
        assert_eq!(
            status, 204,
            "the voter is leased their own task again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = claim_within(&env, &other, Duration::from_secs(20)).await;
    assert_eq!(second["task_id"], claim["task_id"]);
}

/// Claims a task as `token` and releases it at once; returns the task.
async fn claim_and_release(env: &TestEnv, token: &str) -> String {
    let claim = claim_within(env, token, Duration::from_secs(10)).await;
    let task = claim["task_id"].as_str().unwrap().to_owned();
    let (status, _) = env
        .call(
            Method::POST,
            &format!("/v1/tasks/{task}/release"),
            Some(token),
            Some(json!({"lease_token": claim["lease_token"]})),
        )
        .await;
    assert_eq!(status, 204);
    task
}

/// Votes on `claim` as `token` and checks the vote was recorded.
async fn vote_counts(env: &TestEnv, token: &str, claim: &Value, verdict: &str) {
    let (status, vote) = env
        .call(
            Method::POST,
            &votes_path(claim),
            Some(token),
            Some(vote_body(claim, verdict)),
        )
        .await;
    assert_eq!(status, 201, "{vote}");
}

/// Whether `volunteer` has a lease entry (live or released) on `task`.
async fn has_lease_entry(env: &TestEnv, task: &str, volunteer: &str) -> bool {
    let mut conn = redis(env).await;
    redis::cmd("HEXISTS")
        .arg(format!("{{{}}}:leases:{task}", env.id))
        .arg(volunteer)
        .query_async::<bool>(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_released_here_goes_to_the_next_claim_here_without_the_reaper() {
    // The reaper sweeps once a minute: a slot that comes back at once came back
    // by hand-back, not through the reaper and the queue.
    let env = env_with(1, 1, None, |c| c.reaper_interval_ms = 60_000, |_| {}).await;
    let first = env.user("vol-release-first", Role::Volunteer).await;
    let second = env.user("vol-release-second", Role::Volunteer).await;
    let task = claim_and_release(&env, &first).await;
    let first_id = user_id(&env, &first).await;
    assert!(
        has_lease_entry(&env, &task, &first_id).await,
        "the released entry stays until a claim replaces it"
    );
    // The volunteer who skipped it is not handed it back.
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&first), None)
        .await;
    assert_eq!(status, 204);
    let started = Instant::now();
    let again = claim_within(&env, &second, Duration::from_secs(2)).await;
    assert_eq!(again["task_id"].as_str(), Some(task.as_str()));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        !has_lease_entry(&env, &task, &first_id).await,
        "the new lease replaced the released entry"
    );
    let second_id = user_id(&env, &second).await;
    assert!(has_lease_entry(&env, &task, &second_id).await);
    assert_eq!(env.queue_depth(&env.names().tasks_queue()).await, 0);
    // And the vote on the handed-back slot counts.
    vote_counts(&env, &second, &again, "genuine").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_back_nobody_on_its_replica_takes_reaches_another_replica_through_the_reaper() {
    let mut env = env_with(
        1,
        1,
        None,
        |c| c.reaper_interval_ms = 100,
        |c| {
            c.handback_hold_ms = 1_000;
            // Should the queue give the re-offered slot back to this replica,
            // it returns it soon, and the other replica gets its turn.
            c.offer_max_idle_secs = 1;
        },
    )
    .await;
    let first_api = env.api.clone();
    env.start_api(|_| {}).await;
    let second_api = env.api.clone();
    let first = env.user("vol-handback-first", Role::Volunteer).await;
    let second = env.user("vol-handback-second", Role::Volunteer).await;
    env.api = first_api;
    let task = claim_and_release(&env, &first).await;
    // Nobody else claims on the first replica: its hand-back goes to the
    // reaper, which offers the slot on the queue, where the second replica
    // takes it.
    env.api = second_api;
    let again = claim_within(&env, &second, Duration::from_secs(10)).await;
    assert_eq!(again["task_id"].as_str(), Some(task.as_str()));
    vote_counts(&env, &second, &again, "counterfeit").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_shuts_down_gives_its_hand_backs_to_the_reaper_at_once() {
    // A hold of a minute: the slot can only come back sooner if the stopping
    // replica hands it to the reaper itself.
    let mut env = env_with(
        1,
        1,
        None,
        |c| c.reaper_interval_ms = 100,
        |c| c.handback_hold_ms = 60_000,
    )
    .await;
    let first = env.user("vol-shutdown-first", Role::Volunteer).await;
    let second = env.user("vol-shutdown-second", Role::Volunteer).await;
    let task = claim_and_release(&env, &first).await;
    env.stop_latest();
    env.start_api(|_| {}).await;
    let again = claim_within(&env, &second, Duration::from_secs(15)).await;
    assert_eq!(again["task_id"].as_str(), Some(task.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tasks_offers_are_one_outbox_row_the_relay_publishes_as_one_message_per_slot() {
    use coordinator::relay::{Relayed, relay_once};
    use spotcheck_platform::amqp::{ResilientPublisher, connect, declare_topology};
    const TASKS: usize = 4;
    const VOTES: i32 = 3;
    let mut env = TestEnv::db_only().await;
    env.min_votes = VOTES;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 1.0}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let lines: Vec<String> = generate(8, TASKS)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, TASKS as u64);
    let (rows, offers): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(copies)::bigint FROM outbox WHERE topic = 'tasks'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(rows, TASKS as i64, "one row a task");
    assert_eq!(
        offers,
        (TASKS as i64) * i64::from(VOTES),
        "standing for a slot each"
    );

    // The relay, as the coordinator runs it, with the queues declared.
    let names = env.names();
    let conn = connect(&env.amqp_url(), "tests").await.unwrap();
    declare_topology(&conn.create_channel().await.unwrap(), &names)
        .await
        .unwrap();
    let publisher = ResilientPublisher::new(std::sync::Arc::new(conn));
    let manager = redis::aio::ConnectionManager::new(redis::Client::open(REDIS).unwrap())
        .await
        .unwrap();
    let leases = spotcheck_platform::lease::LeaseStore::new(manager, &env.id);
    let relayed = relay_once(&env.pool, &publisher, &names, Some(&leases), 100)
        .await
        .unwrap();
    assert_eq!(
        relayed,
        Relayed {
            rows: TASKS,
            messages: TASKS * VOTES as usize
        }
    );
    let p = format!("{{{}}}", env.id);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM tasks")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    let offer_keys: Vec<String> = ids.iter().map(|t| format!("{p}:offers:{t}")).collect();
    assert!(
        offers_counted(env.pool.clone(), offer_keys, i64::from(VOTES)).await,
        "the outbox is empty and each task's offers are counted for the audit"
    );
    assert_eq!(
        env.queue_depth(&names.tasks_queue()).await,
        TASKS as u32 * VOTES as u32,
        "one message a slot on the tasks queue"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_uses_its_copy_of_a_standing_until_the_generation_moves_and_never_for_answers() {
    use spotcheck_platform::standing::StandingCache;
    let env = TestEnv::db_only().await;
    worker_api::users::create_user(
        &env.pool,
        "copy-holder",
        "a long password".into(),
        Role::Volunteer,
    )
    .await
    .unwrap();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'copy-holder'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let manager = redis::aio::ConnectionManager::new(redis::Client::open(REDIS).unwrap())
        .await
        .unwrap();
    let cache = StandingCache::new(manager, &env.id);
    let first = cache.get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!((first.role.as_str(), first.answers), ("volunteer", 0));

    let mut conn = redis(&env).await;
    let entry = format!("{{{}}}:standing:{id}", env.id);
    // The entry changed behind the generation's back: the copy is used...
    let _: () = redis::cmd("HSET")
        .arg(&entry)
        .arg("r")
        .arg("staff")
        .query_async(&mut conn)
        .await
        .unwrap();
    let copy = cache.get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!(copy.role, "volunteer", "the replica's copy, not the entry");
    // ...but the answers, counted up in Redis with each vote, are always read.
    let _: () = redis::cmd("HINCRBY")
        .arg(&entry)
        .arg("a")
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();
    let counted = cache.get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!((counted.role.as_str(), counted.answers), ("volunteer", 3));

    // A change committed and invalidated (the generation moves) is seen at once.
    sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
        .bind(id)
        .execute(&env.pool)
        .await
        .unwrap();
    cache.invalidate(&[id]).await.unwrap();
    let after = cache.get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!(
        (after.role.as_str(), after.status.as_str()),
        ("volunteer", "suspended"),
        "read again from PostgreSQL"
    );
    // An entry gone from Redis (expired, or lost) is read again too.
    sqlx::query("UPDATE users SET status = 'active' WHERE id = $1")
        .bind(id)
        .execute(&env.pool)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&entry)
        .query_async(&mut conn)
        .await
        .unwrap();
    let reloaded = cache.get(&env.pool, id).await.unwrap().unwrap();
    assert_eq!(reloaded.status, "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handed_back_slot_goes_once_to_another_volunteer_never_back_to_its_releaser() {
    use spotcheck_platform::lease::{
        ClaimRequest, ClaimResult, LeaseEnd, LeaseError, LeaseStore, SlotSource, StoreError,
    };
    use spotcheck_shared::lease_token::LeaseToken;
    use spotcheck_shared::{TaskId, UserId};
    let env = TestEnv::db_only().await;
    let manager = redis::aio::ConnectionManager::new(redis::Client::open(REDIS).unwrap())
        .await
        .unwrap();
    let leases = LeaseStore::new(manager, &env.id);
    let task = TaskId(uuid::Uuid::now_v7());
    let [releaser, taker, late] = [(); 3].map(|()| UserId(uuid::Uuid::now_v7()));
    let claim = async |volunteer: UserId, source: SlotSource| {
        let token = LeaseToken::generate(chrono::Utc::now().timestamp_millis());
        let request = ClaimRequest {
            task,
            volunteer,
            required: 1,
            counted: 0,
            ttl_ms: 60_000,
            cap: 5,
            token: &token,
            quota: None,
            source,
        };
        leases.claim(&request).await.unwrap()
    };
    let handback = SlotSource::Handback {
        released_by: releaser,
    };
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let holder_key = format!("{{{}}}:holder:{releaser}", env.id);
    let holds = async |conn: &mut redis::aio::MultiplexedConnection| -> bool {
        redis::cmd("SISMEMBER")
            .arg(&holder_key)
            .arg(task.to_string())
            .query_async(conn)
            .await
            .unwrap()
    };
    // A hand-back of a lease that is still live is void.
    let ClaimResult::Granted(first) = claim(releaser, SlotSource::Queue).await else {
        panic!("the first claim of a one-vote task is granted");
    };
    assert!(holds(&mut conn).await);
    assert_eq!(claim(taker, handback).await, ClaimResult::Stale);
    leases
        .expire_now(task, releaser, &first.token, 60_000, LeaseEnd::Released)
        .await
        .unwrap();
    // The release took the task out of its holder's set, so replacing the
    // released entry need not.
    assert!(!holds(&mut conn).await);
    // Its releaser does not get it back; someone else does, once.
    assert_eq!(claim(releaser, handback).await, ClaimResult::AlreadyHeld);
    let ClaimResult::Granted(second) = claim(taker, handback).await else {
        panic!("another volunteer takes the handed-back slot");
    };
    assert!(!holds(&mut conn).await);
    assert!(second.fence > first.fence);
    assert_eq!(claim(late, handback).await, ClaimResult::Stale);
    // The one slot is covered by the taker's lease alone; the released token
    // is answered as released.
    assert_eq!(claim(late, SlotSource::Queue).await, ClaimResult::Full);
    let coverage = leases.coverage(&[task]).await.unwrap();
    assert_eq!(coverage[0].leases, 1);
    leases
        .extend(task, taker, &second.token, 60_000)
        .await
        .unwrap();
    assert!(matches!(
        leases.extend(task, releaser, &first.token, 60_000).await,
        Err(StoreError::Lease(LeaseError::Released))
    ));
}
