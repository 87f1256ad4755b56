//! Claims and votes: one task per listing and round, one counted vote per
//! volunteer, and no vote without the caller's own live lease.

use crate::harness::{TestEnv, claim_within, count, import_lines};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::time::Duration;

async fn one_task_env() -> (TestEnv, String) {
    let env = TestEnv::start().await;
    let staff = env.user("staff-votes", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    let listing = serde_json::to_string(&generate(5, 1)[0].listing).unwrap();
    let summary = import_lines(&env, &[listing]).await;
    assert_eq!(summary.ingest.tasks, 1);
    (env, staff)
}

/// Claims until the offer has reached worker-api (the relay publishes asynchronously).
async fn claim(env: &TestEnv, token: &str) -> Value {
    claim_within(env, token, Duration::from_secs(5)).await
}

fn vote_path(claim: &Value) -> String {
    format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_listing_imported_twice_gives_one_task() {
    let (env, _) = one_task_env().await;
    let mut listing = generate(5, 1)[0].listing.clone();
    let again = import_lines(&env, &[serde_json::to_string(&listing).unwrap()]).await;
    assert_eq!(
        (
            again.ingest.stored,
            again.ingest.unchanged,
            again.ingest.tasks
        ),
        (0, 1, 0)
    );
    listing.version = 2;
    listing.title = "edited title".into();
    let newer = import_lines(&env, &[serde_json::to_string(&listing).unwrap()]).await;
    assert_eq!(
        (newer.ingest.stored, newer.ingest.tasks),
        (1, 0),
        "a new version in the same round adds no task"
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM tasks").await, 1);
    assert_eq!(count(&env.pool, "SELECT version FROM listings").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_vote_by_the_same_volunteer_is_refused_and_not_counted() {
    let (env, _) = one_task_env().await;
    let volunteer = env.user("vol-twice", Role::Volunteer).await;
    let claimed = claim(&env, &volunteer).await;
    let body = json!({"lease_token": claimed["lease_token"], "verdict": "genuine", "reasons": []});
    let (status, first) = env
        .call(
            Method::POST,
            &vote_path(&claimed),
            Some(&volunteer),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201);
    let (status, repeat) = env
        .call(
            Method::POST,
            &vote_path(&claimed),
            Some(&volunteer),
            Some(body),
        )
        .await;
    assert_eq!(
        (status, &repeat["vote_id"]),
        (201, &first["vote_id"]),
        "a repeat is answered as the first"
    );
    let changed =
        json!({"lease_token": claimed["lease_token"], "verdict": "counterfeit", "reasons": []});
    let (status, problem) = env
        .call(
            Method::POST,
            &vote_path(&claimed),
            Some(&volunteer),
            Some(changed),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("already_voted"))
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM votes").await, 1);
    assert_eq!(
        count(&env.pool, "SELECT votes_counted::bigint FROM tasks").await,
        1
    );
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&volunteer), None)
        .await;
    assert_eq!(
        status, 204,
        "a volunteer is never offered a task they voted on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn votes_without_the_callers_own_live_lease_are_refused() {
    let (env, _) = one_task_env().await;
    let alice = env.user("vol-alice", Role::Volunteer).await;
    let bob = env.user("vol-bob", Role::Volunteer).await;
    let carol = env.user("vol-carol", Role::Volunteer).await;
    let a = claim(&env, &alice).await;
    let b = claim(&env, &bob).await;
    assert_eq!(
        a["task_id"], b["task_id"],
        "both hold a slot of the one task"
    );
    let path = vote_path(&a);
    let vote = |token: Value| json!({"lease_token": token, "verdict": "counterfeit", "reasons": ["price_too_low"]});

    let (status, problem) = env
        .call(
            Method::POST,
            &path,
            Some(&bob),
            Some(json!({"verdict": "genuine", "reasons": []})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("invalid_body")),
        "no token"
    );
    let (status, problem) = env
        .call(
            Method::POST,
            &path,
            Some(&bob),
            Some(vote(json!("lt_0123456789abcdef"))),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("lease_token_mismatch")),
        "unknown token"
    );
    let (status, problem) = env
        .call(
            Method::POST,
            &path,
            Some(&bob),
            Some(vote(a["lease_token"].clone())),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("lease_token_mismatch")),
        "another volunteer's token"
    );
    let (status, problem) = env
        .call(
            Method::POST,
            &path,
            Some(&carol),
            Some(vote(a["lease_token"].clone())),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("lease_not_found")),
        "a token without a lease"
    );
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM votes").await,
        0,
        "nothing was counted"
    );

    let (status, _) = env
        .call(
            Method::POST,
            &path,
            Some(&alice),
            Some(vote(a["lease_token"].clone())),
        )
        .await;
    assert_eq!(status, 201, "the holder's own token works");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_slot_is_claimable_again_and_the_old_token_stops_working() {
    let (env, _) = one_task_env().await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(env.user(&format!("vol-rel-{i}"), Role::Volunteer).await);
    }
    let mut held: Vec<Value> = Vec::new();
    for t in &tokens[..3] {
        held.push(claim(&env, t).await);
    }
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&tokens[3]), None)
        .await;
    assert_eq!(status, 204, "three leases use up the task's three slots");

    let release = format!("/v1/tasks/{}/release", held[0]["task_id"].as_str().unwrap());
    let body = json!({"lease_token": held[0]["lease_token"]});
    let (status, _) = env
        .call(Method::POST, &release, Some(&tokens[0]), Some(body.clone()))
        .await;
    assert_eq!(status, 204);
    let (status, problem) = env
        .call(Method::POST, &release, Some(&tokens[0]), Some(body))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (410, Some("lease_released")),
        "a released token is spent"
    );
    let fourth = claim(&env, &tokens[3]).await;
    assert_eq!(
        fourth["task_id"], held[0]["task_id"],
        "the released slot went to the next volunteer"
    );

    let extend = format!("/v1/tasks/{}/extend", held[1]["task_id"].as_str().unwrap());
    let (status, extended) = env
        .call(
            Method::POST,
            &extend,
            Some(&tokens[1]),
            Some(json!({"lease_token": held[1]["lease_token"]})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        extended["lease_expires_at"].as_str().unwrap()
            >= held[1]["lease_expires_at"].as_str().unwrap()
    );
    let (status, _) = env
        .call(
            Method::POST,
            &extend,
            Some(&tokens[2]),
            Some(json!({"lease_token": held[1]["lease_token"]})),
        )
        .await;
    assert_eq!(status, 409, "another volunteer's token cannot extend");
}
