//! Sampling through ingest: the sampled share matches the rate, and two
//! independent ingests of the same listings (as two replicas would) agree.

use crate::harness::{TestEnv, import_lines_at};
use spotcheck_shared::demo::generate;
use std::collections::BTreeSet;

async fn sampled_ids(env: &TestEnv, lines: &[String], now: i64) -> BTreeSet<String> {
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 0.2}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let summary = import_lines_at(env, lines, now).await;
    assert_eq!(summary.ingest.stored, 5000);
    let ids: Vec<String> = sqlx::query_scalar("SELECT listing_id FROM tasks")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_of_one_fifth_samples_one_fifth_and_the_same_listings_again_give_the_same_decisions()
{
    let lines: Vec<String> = generate(77, 5000)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect();
    let first = TestEnv::db_only().await;
    let second = TestEnv::db_only().await;
    let round_secs = first.coordinator_config().round_secs;
    let now = chrono::Utc::now().timestamp();
    let a = sampled_ids(&first, &lines, now).await;
    let share = a.len() as f64 / 5000.0;
    assert!((0.18..=0.22).contains(&share), "sampled share {share}");
    let b = sampled_ids(&second, &lines, now).await;
    assert_eq!(
        a, b,
        "the same listings in the same round give the same decisions"
    );
    let third = TestEnv::db_only().await;
    let next_round = sampled_ids(&third, &lines, now + round_secs).await;
    assert_ne!(a, next_round, "the next round draws afresh");
    let overlap = a.intersection(&next_round).count() as f64 / a.len() as f64;
    assert!(
        (0.14..=0.26).contains(&overlap),
        "independent rounds overlap by about the rate: {overlap}"
    );
    let p: Vec<f64> = sqlx::query_scalar("SELECT DISTINCT inclusion_probability FROM tasks")
        .fetch_all(&first.pool)
        .await
        .unwrap();
    assert_eq!(p, vec![0.2], "the probability is stored on every task");
}
