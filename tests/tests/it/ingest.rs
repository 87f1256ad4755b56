//! Bad input on the way in: a malformed JSONL line or feed message is reported
//! and skipped, and everything else is ingested.

use crate::harness::{TestEnv, count, import_lines, wait_until};
use spotcheck_platform::amqp::{Names, Publisher};
use spotcheck_simulation::demo::generate;
use std::time::Duration;

/// Publishes `messages` (routing key, body) to the environment's feed exchange
/// with confirms, as the marketplace does.
async fn publish_to_feed(env: &TestEnv, messages: &[(String, Vec<u8>)]) {
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "test-feed")
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    publisher
        .publish_all(&env.names().listings_exchange(), messages)
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;
}

/// Opens or closes the test's database to new connections.
async fn allow_connections(admin: &sqlx::PgPool, env: &TestEnv, allow: bool) {
    // The id is the test's own, made of a letter and hex digits.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"ALTER DATABASE "{}" ALLOW_CONNECTIONS {allow}"#,
        env.id
    )))
    .execute(admin)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_jsonl_lines_are_reported_with_their_number_and_the_rest_is_imported() {
    let env = TestEnv::db_only().await;
    let market = generate(11, 3);
    let good = |i: usize| serde_json::to_string(&market[i].listing).unwrap();
    let mut bad_price = market[1].listing.clone();
    bad_price.price = -5.0;
    let lines = vec![
        good(0),
        "{not json".to_owned(),
        serde_json::to_string(&bad_price).unwrap(),
        String::new(),
        good(2),
    ];
    let summary = import_lines(&env, &lines).await;
    let bad: Vec<usize> = summary.bad.iter().map(|b| b.line).collect();
    assert_eq!(bad, vec![2, 3]);
    assert!(
        summary.bad[1].reason.contains("price"),
        "{}",
        summary.bad[1].reason
    );
    assert_eq!(summary.ingest.stored, 2);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM listings").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_feed_message_is_dead_lettered_and_the_rest_is_ingested() {
    let env = TestEnv::start().await;
    let market = generate(12, 2);
    let messages: Vec<(String, Vec<u8>)> = vec![
        (
            "listing.handbags".into(),
            serde_json::to_vec(&market[0].listing).unwrap(),
        ),
        (
            "listing.handbags".into(),
            b"{\"listing_id\": 42, garbage".to_vec(),
        ),
        (
            "listing.watches".into(),
            serde_json::to_vec(&market[1].listing).unwrap(),
        ),
    ];
    publish_to_feed(&env, &messages).await;

    let pool = env.pool.clone();
    wait_until(
        "both good listings ingested",
        Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move { count(&pool, "SELECT count(*) FROM listings").await == 2 }
        },
    )
    .await;
    let dead = Names::dead_queue(&env.names().ingest_queue());
    let mut depth = 0;
    for _ in 0..200 {
        depth = env.queue_depth(&dead).await;
        if depth == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        depth, 1,
        "the malformed message is in the dead-letter queue"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_longer_than_the_redelivery_budget_dead_letters_no_listing() {
    let env = TestEnv::start().await;
    let admin_url = std::env::var("SPOTCHECK_TEST_ADMIN_DB")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    // The database goes away as in a failover: no new connections, and every
    // open one cut.
    allow_connections(&admin, &env, false).await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&env.id)
        .execute(&admin)
        .await
        .unwrap();
    let messages: Vec<(String, Vec<u8>)> = generate(13, 3)
        .iter()
        .map(|d| {
            (
                "listing.any".to_owned(),
                serde_json::to_vec(&d.listing).unwrap(),
            )
        })
        .collect();
    publish_to_feed(&env, &messages).await;
    // Longer than the broker's redelivery budget: 5 hand-backs half a second
    // apart would have sent every listing to the dead-letter queue by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    allow_connections(&admin, &env, true).await;
    let pool = env.pool.clone();
    wait_until(
        "the listings ingested after the outage",
        Duration::from_secs(40),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM listings")
                    .fetch_one(&pool)
                    .await
                    .is_ok_and(|n| n == 3)
            }
        },
    )
    .await;
    let dead = Names::dead_queue(&env.names().ingest_queue());
    assert_eq!(env.queue_depth(&dead).await, 0, "nothing dead-lettered");
}
