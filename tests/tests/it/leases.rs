//! The lease protocol under abandonment, contention and Redis data loss.

use crate::harness::{PrivateRedis, TestEnv, claim_within, count, import_lines, wait_until};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_platform::amqp::Publisher;
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::time::{Duration, Instant};

const TTL_SECS: u64 = 1;
const SWEEP_MS: u64 = 200;

/// An environment with leases of `ttl` seconds, `votes` votes per task and `listings` tasks.
async fn env_with(votes: i32, listings: usize, ttl: u64, redis: Option<PrivateRedis>) -> TestEnv {
    let mut env = TestEnv::db_only().await;
    env.min_votes = votes;
    env.redis = redis;
    env.start_coordinator(|c| c.reaper_interval_ms = SWEEP_MS)
        .await;
    env.start_api(|c| c.services.lease_ttl_secs = ttl).await;
    let staff = env.user("staff-leases", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    let lines: Vec<String> = generate(99, listings)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect();
    assert_eq!(
        import_lines(&env, &lines).await.ingest.tasks,
        listings as u64
    );
    env
}

fn task_path(claim: &Value, action: &str) -> String {
    format!("/v1/tasks/{}/{action}", claim["task_id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_lease_is_claimable_again_within_ttl_plus_one_sweep() {
    let env = env_with(1, 1, TTL_SECS, None).await;
    let quitter = env.user("vol-quitter", Role::Volunteer).await;
    let next = env.user("vol-next", Role::Volunteer).await;
    let abandoned = claim_within(&env, &quitter, Duration::from_secs(10)).await;
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&next), None)
        .await;
    assert_eq!(status, 204, "the only slot is leased");

    let started = Instant::now();
    let taken = claim_within(&env, &next, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert_eq!(taken["task_id"], abandoned["task_id"]);
    // TTL plus one sweep, plus the relay's hop through RabbitMQ.
    let bound = Duration::from_millis(TTL_SECS * 1000 + SWEEP_MS + 1500);
    assert!(
        waited <= bound,
        "slot came back after {waited:?}, bound {bound:?}"
    );

    let vote =
        json!({"lease_token": abandoned["lease_token"], "verdict": "genuine", "reasons": []});
    let (status, problem) = env
        .call(
            Method::POST,
            &task_path(&abandoned, "votes"),
            Some(&quitter),
            Some(vote),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (410, Some("lease_expired"))
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn superseded_and_foreign_tokens_are_refused_and_change_nothing() {
    let env = env_with(2, 1, TTL_SECS, None).await;
    let alice = env.user("vol-a", Role::Volunteer).await;
    let bob = env.user("vol-b", Role::Volunteer).await;
    let old = claim_within(&env, &alice, Duration::from_secs(10)).await;
    // Alice is refused the task while she holds it; once her lease lapses and
    // is reaped she gets it again, with a new token.
    let new = claim_within(&env, &alice, Duration::from_secs(10)).await;
    assert_eq!(new["task_id"], old["task_id"]);
    assert_ne!(new["lease_token"], old["lease_token"]);
    let bobs = claim_within(&env, &bob, Duration::from_secs(10)).await;

    for action in ["extend", "release", "votes"] {
        let mut body = json!({"lease_token": old["lease_token"]});
        if action == "votes" {
            body["verdict"] = json!("counterfeit");
            body["reasons"] = json!([]);
        }
        let (status, problem) = env
            .call(
                Method::POST,
                &task_path(&old, action),
                Some(&alice),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("lease_token_mismatch")),
            "superseded token on {action}"
        );
        body["lease_token"] = bobs["lease_token"].clone();
        let (status, problem) = env
            .call(
                Method::POST,
                &task_path(&old, action),
                Some(&alice),
                Some(body),
            )
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (409, Some("lease_token_mismatch")),
            "Bob's token on {action}"
        );
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 0);
    // Both current leases are intact.
    for (token, claim) in [(&alice, &new), (&bob, &bobs)] {
        let body = json!({"lease_token": claim["lease_token"]});
        let (status, _) = env
            .call(
                Method::POST,
                &task_path(claim, "extend"),
                Some(token),
                Some(body),
            )
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_claims_on_a_task_needing_three_votes_grant_exactly_three() {
    let env = env_with(3, 1, 60, None).await;
    let tokens = env.many_volunteers("crowd", 200).await;
    let task: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    // 197 surplus offers of the same task, as duplicates after crashes would be.
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "test-offers")
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let offer = serde_json::to_vec(&json!({"v": 1, "task_id": task})).unwrap();
    let offers: Vec<(String, Vec<u8>)> = (0..197)
        .map(|_| (env.names().tasks_queue(), offer.clone()))
        .collect();
    publisher.publish_all("", &offers).await.unwrap();
    let _ = conn.close(200, "done".into()).await;
    let env = std::sync::Arc::new(env);
    let env2 = env.clone();
    wait_until("offers buffered", Duration::from_secs(10), || {
        let env = env2.clone();
        async move { env.queue_depth(&env.names().tasks_queue()).await == 0 }
    })
    .await;

    let claims = tokens.into_iter().map(|t| {
        let env = env.clone();
        tokio::spawn(async move {
            env.call(Method::POST, "/v1/tasks/claim", Some(&t), None)
                .await
                .0
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 204),
        "{statuses:?}"
    );
}

/// Reviews until every task is decided, tolerating leases lost with Redis.
async fn review_until_done(
    env: &TestEnv,
    tokens: &[String],
    flush_after_votes: Option<usize>,
) -> usize {
    let mut votes = 0;
    let mut flushed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&env.pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await > 0 {
        assert!(Instant::now() < deadline, "tasks still open after a minute");
        let mut held = Vec::new();
        for token in tokens {
            let (status, claim) = env
                .call(Method::POST, "/v1/tasks/claim", Some(token), None)
                .await;
            if status == 200 {
                held.push((token, claim));
            }
        }
        if let Some(after) = flush_after_votes
            && !flushed
            && votes >= after
            && !held.is_empty()
        {
            env.redis.as_ref().unwrap().flushall().await;
            flushed = true;
        }
        for (token, claim) in held {
            let body = json!({"lease_token": claim["lease_token"], "verdict": "counterfeit", "reasons": []});
            let (status, problem) = env
                .call(
                    Method::POST,
                    &task_path(&claim, "votes"),
                    Some(token),
                    Some(body),
                )
                .await;
            match status {
                201 => votes += 1,
                409 if problem["code"] == "lease_not_found" && flushed => {}
                other => panic!("vote answered {other}: {problem}"),
            }
        }
        if votes == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        flush_after_votes.is_none() || flushed,
        "the flush happened mid-run"
    );
    votes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_redis_flushall_mid_run_every_task_completes_and_nothing_is_double_counted() {
    let env = env_with(3, 20, 60, Some(PrivateRedis::start().await)).await;
    let tokens = env.many_volunteers("flush", 6).await;
    let votes = review_until_done(&env, &tokens, Some(15)).await;
    assert_eq!(votes, 60, "exactly the votes asked for were accepted");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 60);
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM tasks WHERE votes_counted = 3 AND state <> 'open'"
        )
        .await,
        20
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 20);
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM escalations").await,
        20,
        "one escalation per task"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_linked_to_the_seller_is_never_offered_the_listing() {
    let env = env_with(1, 1, 60, None).await;
    let staff = env.login("staff-leases").await;
    let linked = env.user("vol-linked", Role::Volunteer).await;
    let other = env.user("vol-other", Role::Volunteer).await;
    let (_, me) = env.call(Method::GET, "/v1/me", Some(&linked), None).await;
    let seller: String = sqlx::query_scalar("SELECT seller_id FROM listings")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let path = format!(
        "/v1/staff/users/{}/seller-links",
        me["user_id"].as_str().unwrap()
    );
    let (status, _) = env
        .call(
            Method::POST,
            &path,
            Some(&staff),
            Some(json!({"seller_id": seller})),
        )
        .await;
    assert_eq!(status, 201);
    // Once the offer waits in worker-api, the linked volunteer is still refused it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = env
            .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
            .await;
        if stats["offers_buffered_here"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the offer never reached worker-api: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..5 {
        let (status, _) = env
            .call(Method::POST, "/v1/tasks/claim", Some(&linked), None)
            .await;
        assert_eq!(
            status, 204,
            "a linked volunteer is never offered the seller's listing"
        );
    }
    claim_within(&env, &other, Duration::from_secs(10)).await;
}
