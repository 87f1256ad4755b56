//! A listing's whole way: import, sampling, claims and votes over HTTP,
//! aggregation, escalation, and the staff decision.

use crate::harness::{TestEnv, count, import_lines, lines_of, wait_until};
use rand::SeedableRng;
use reqwest::Method;
use serde_json::json;
use spotcheck_shared::Role;
use spotcheck_simulation::demo::{Profile, generate};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Claims and votes as volunteer `index` until no task is left for them.
async fn review(
    env: Arc<TestEnv>,
    token: String,
    index: usize,
    truth: Arc<HashMap<String, bool>>,
) -> usize {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(index as u64);
    let profile = Profile::for_index(index);
    let mut votes = 0;
    let mut empty = 0;
    while empty < 40 {
        let (status, claim) = env
            .call(Method::POST, "/v1/tasks/claim", Some(&token), None)
            .await;
        if status == 204 {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, 200, "claim: {claim}");
        empty = 0;
        let listing = claim["listing"]["listing_id"].as_str().unwrap();
        let verdict = profile.answer(truth[listing], &mut rng);
        let path = format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap());
        let body = json!({"lease_token": claim["lease_token"], "verdict": verdict, "reasons": ["logo_mismatch"]});
        let (status, vote) = env
            .call(Method::POST, &path, Some(&token), Some(body))
            .await;
        assert_eq!(status, 201, "vote: {vote}");
        votes += 1;
    }
    votes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_listings_are_reviewed_by_three_volunteers_each_and_counterfeit_majorities_reach_staff()
 {
    let env = TestEnv::start().await;
    let staff = env.user("staff-e2e", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;

    let market = generate(2026, 300);
    let lines: Vec<String> = lines_of(&market);
    let summary = import_lines(&env, &lines).await;
    assert_eq!(
        (
            summary.ingest.stored,
            summary.ingest.tasks,
            summary.bad.len()
        ),
        (300, 300, 0)
    );

    let truth: Arc<HashMap<String, bool>> = Arc::new(
        market
            .iter()
            .map(|d| (d.listing.listing_id.to_string(), d.counterfeit))
            .collect(),
    );
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(env.user(&format!("volunteer-{i}"), Role::Volunteer).await);
    }
    let env = Arc::new(env);
    let reviewers: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| tokio::spawn(review(env.clone(), t, i, truth.clone())))
        .collect();
    let mut votes = 0;
    for r in reviewers {
        votes += r.await.unwrap();
    }
    assert_eq!(votes, 900, "every task gets exactly three votes");

    let pool = env.pool.clone();
    wait_until("every task decided", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move { count(&pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await == 0 }
    })
    .await;
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM tasks WHERE votes_counted = 3"
        )
        .await,
        300
    );
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM (SELECT task_id FROM votes GROUP BY task_id HAVING count(DISTINCT volunteer_id) = 3) t").await,
        300,
        "three distinct volunteers per task"
    );
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM decisions").await,
        300
    );

    let majority: HashSet<uuid::Uuid> = sqlx::query_scalar(
        "SELECT task_id FROM votes GROUP BY task_id HAVING count(*) FILTER (WHERE verdict = 'counterfeit') >= 2",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let escalated: HashSet<uuid::Uuid> = sqlx::query_scalar("SELECT task_id FROM escalations")
        .fetch_all(&env.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        escalated, majority,
        "escalations are exactly the counterfeit majorities"
    );
    assert!(escalated.len() >= 2, "the demo market yields escalations");

    // Staff page through the open escalations, confirm one and dismiss another.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = env
            .call(
                Method::GET,
                &format!("/v1/staff/escalations?status=open&limit=7&cursor={cursor}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(status, 200);
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        ids.len(),
        escalated.len(),
        "pagination returns every escalation once"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());

    let (status, one) = env
        .call(
            Method::GET,
            &format!("/v1/staff/escalations/{}", ids[0]),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["evidence"]["votes"].as_array().unwrap().len(), 3);
    assert_eq!(one["evidence"]["task"]["inclusion_probability"], 1.0);

    let decide = |id: &str, decision: &str| {
        (
            format!("/v1/staff/escalations/{id}/decision"),
            json!({"decision": decision, "note": "checked"}),
        )
    };
    let (path, body) = decide(&ids[0], "confirm");
    let (status, confirmed) = env
        .call(Method::POST, &path, Some(&staff), Some(body.clone()))
        .await;
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (200, Some("confirmed"))
    );
    assert!(
        confirmed["refutation_deadline"].is_string(),
        "a confirmation opens the refutation window"
    );
    let (status, again) = env
        .call(Method::POST, &path, Some(&staff), Some(body))
        .await;
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("confirmed")),
        "a repeat is answered as the first"
    );
    let (path, body) = decide(&ids[0], "dismiss");
    let (status, conflict) = env
        .call(Method::POST, &path, Some(&staff), Some(body))
        .await;
    assert_eq!(
        (status, conflict["code"].as_str()),
        (409, Some("escalation_already_decided"))
    );

    let (path, body) = decide(&ids[1], "dismiss");
    let (status, dismissed) = env
        .call(Method::POST, &path, Some(&staff), Some(body))
        .await;
    assert_eq!(
        (status, dismissed["status"].as_str()),
        (200, Some("dismissed"))
    );
    assert!(dismissed["refutation_deadline"].is_null());

    let (_, stats) = env
        .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
        .await;
    assert_eq!(stats["escalations"]["confirmed"], 1);
    assert_eq!(stats["escalations"]["dismissed"], 1);
    assert_eq!(stats["votes"], 900);
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM audit_log WHERE action = 'escalation.decide'"
        )
        .await,
        2
    );
}
