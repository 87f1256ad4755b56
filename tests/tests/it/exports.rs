//! The analysts' exports: a range exported equals a direct query of it, row for
//! row, through chunk boundaries and ties; pseudonyms are stable under one key
//! and differ under another; raw ids are for admins; gzip on request; the
//! command line writes the same bytes; and a client that goes away stops the
//! export in the database.

use crate::harness::{TestEnv, wait_until};
use reqwest::Method;
use serde_json::Value;
use spotcheck_platform::export::CHUNK_ROWS;
use spotcheck_shared::Role;
use spotcheck_shared::export::{ExportFormat, ExportKind, Pseudonyms};
use std::io::Read;
use std::time::Duration;

const KEY: &str = "export-test-key-a";

/// 40 volunteers voting on `tasks` tasks (3 votes each), cast one every 10 ms
/// from 2026-01-01, three at a time on the same instant (ties broken by id);
/// every task decided, every tenth escalated.
async fn seed(env: &TestEnv, tasks: i64) {
    for sql in [
        "INSERT INTO users (id, username, password_hash, role)
         SELECT gen_random_uuid(), 'seed-vol-' || i, 'x', 'volunteer' FROM generate_series(1, 40) i",
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals)
         SELECT 'seed-' || i, 1, 's-' || (i % 50), 'Acme', 'bags', 'eu', 'standard', 20, 'EUR',
                'Bag ' || i, 'A bag', '[]', '{}' FROM generate_series(1, $1) i",
        "INSERT INTO tasks (id, listing_id, listing_version, round, state, votes_required,
             votes_counted, inclusion_probability, stratum, sampling, created_at)
         SELECT gen_random_uuid(), 'seed-' || i, 1, 1, 'decided', 3, 3, 0.5, 'bags/eu/standard',
                '{}', '2026-01-01T00:00:00Z'::timestamptz + make_interval(secs => i * 0.03)
         FROM generate_series(1, $1) i",
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, note, lease_fence, created_at)
         SELECT gen_random_uuid(), t.id, u.id, CASE WHEN k = 0 THEN 'counterfeit' ELSE 'genuine' END,
                '[\"logo\"]', CASE WHEN k = 1 THEN '=1+1, \"quoted\"' END, 1,
                '2026-01-01T00:00:00Z'::timestamptz
                    + make_interval(secs => floor((n * 3 + k) / 3.0) * 0.01)
         FROM (SELECT id, row_number() OVER (ORDER BY listing_id) AS n FROM tasks) t
         CROSS JOIN generate_series(0, 2) k
         JOIN (SELECT id, row_number() OVER (ORDER BY username) - 1 AS m FROM users
               WHERE username LIKE 'seed-vol-%') u ON u.m = (t.n + k * 7) % 40",
        "INSERT INTO decisions (task_id, outcome, tally, posterior, decided_at)
         SELECT id, 'genuine', '{\"genuine\": 2, \"counterfeit\": 1, \"unsure\": 0}', 0.9,
                created_at + interval '1 minute' FROM tasks",
        "INSERT INTO escalations (id, task_id, listing_id, status, reason)
         SELECT gen_random_uuid(), id, listing_id, 'dismissed', 'counterfeit' FROM tasks
         WHERE listing_id LIKE '%0'",
    ] {
        let query = sqlx::query(sql);
        let query = if sql.contains("$1") {
            query.bind(tasks)
        } else {
            query
        };
        query.execute(&env.pool).await.expect(sql);
    }
}

async fn env_with_key(key: &str) -> TestEnv {
    let mut env = TestEnv::db_only().await;
    let key = key.to_owned();
    env.start_api(move |c| c.services.pseudonym_key = key).await;
    env
}

async fn get(env: &TestEnv, path: &str, token: &str) -> (u16, String) {
    let r = env
        .http
        .get(env.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_range_equals_a_direct_query_of_it_row_for_row() {
    let env = env_with_key(KEY).await;
    let tasks = 4_000; // 12,000 votes: three chunks of votes
    assert!(tasks * 3 > 2 * CHUNK_ROWS);
    seed(&env, tasks).await;
    let staff = env.user("staff-export", Role::Staff).await;
    let (since, until) = ("2026-01-01T00:00:05Z", "2026-01-01T00:01:55Z");
    let (status, body) = get(
        &env,
        &format!("/v1/staff/exports/votes?since={since}&until={until}&format=jsonl"),
        &staff,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let exported: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let direct: Vec<(uuid::Uuid, uuid::Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, volunteer_id, verdict, note FROM votes
         WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz
         ORDER BY created_at, id",
    )
    .bind(since)
    .bind(until)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(direct.len() > CHUNK_ROWS as usize * 2, "{}", direct.len());
    assert_eq!(exported.len(), direct.len());
    let pseudonyms = Pseudonyms::new(KEY.as_bytes());
    for (row, (id, volunteer, verdict, note)) in exported.iter().zip(&direct) {
        assert_eq!(row["vote_id"], id.to_string());
        assert_eq!(row["volunteer"], pseudonyms.of(*volunteer));
        assert_eq!(row["verdict"], verdict.as_str());
        assert_eq!(row["note"].as_str(), note.as_deref());
        assert_eq!(row["reasons"], serde_json::json!(["logo"]));
    }
    // The same range as CSV: a header and one record a vote, with the note's
    // formula defused and quoted.
    let (_, csv) = get(
        &env,
        &format!("/v1/staff/exports/votes?since={since}&until={until}"),
        &staff,
    )
    .await;
    assert!(csv.starts_with(ExportKind::Votes.header()));
    assert_eq!(csv.matches("\r\n").count(), direct.len() + 1);
    assert!(csv.contains(",\"'=1+1, \"\"quoted\"\"\","));
    // Decisions: every one in its range, with its escalation.
    let (_, decisions) = get(
        &env,
        "/v1/staff/exports/decisions?format=jsonl&until=2027-01-01T00:00:00Z",
        &staff,
    )
    .await;
    let rows: Vec<Value> = decisions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as i64, tasks);
    assert_eq!(
        rows.iter()
            .filter(|r| r["escalation_status"] == "dismissed")
            .count() as i64,
        tasks / 10
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0]["decided_at"].as_str() <= w[1]["decided_at"].as_str())
    );
    assert_eq!(rows[0]["votes_counterfeit"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pseudonyms_are_stable_across_exports_and_differ_between_keys_and_raw_ids_are_for_admins() {
    let env = env_with_key(KEY).await;
    seed(&env, 30).await;
    let staff = env.user("staff-pseudo", Role::Staff).await;
    let admin = env.user("admin-pseudo", Role::Admin).await;
    let path = "/v1/staff/exports/votes?format=jsonl";
    let volunteers = |body: &str| -> Vec<String> {
        body.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["volunteer"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let first = volunteers(&get(&env, path, &staff).await.1);
    let again = volunteers(&get(&env, path, &admin).await.1);
    assert_eq!(first.len(), 90);
    assert_eq!(first, again, "stable across exports and callers");
    assert!(first.iter().all(|p| p.starts_with("p_")));

    // Another deployment's key, over the same database.
    let mut other = TestEnv::db_only().await;
    other.pool = env.pool.clone();
    other.db_url = env.db_url.clone();
    other
        .start_api(|c| {
            c.services.database_url = env.db_url.clone();
            c.services.pseudonym_key = "another-deployment".into();
        })
        .await;
    let other_token = other.login("staff-pseudo").await;
    let elsewhere = volunteers(&get(&other, path, &other_token).await.1);
    assert_eq!(elsewhere.len(), first.len());
    assert!(first.iter().zip(&elsewhere).all(|(a, b)| a != b));

    let (status, problem) = get(&env, &format!("{path}&volunteer_ids=raw"), &staff).await;
    assert_eq!(status, 403);
    assert!(problem.contains("\"admin_only\""), "{problem}");
    let (status, raw) = get(&env, &format!("{path}&volunteer_ids=raw"), &admin).await;
    assert_eq!(status, 200);
    let ids = volunteers(&raw);
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    let pseudonyms = Pseudonyms::new(KEY.as_bytes());
    assert!(
        ids.iter()
            .zip(&first)
            .all(|(id, p)| pseudonyms.of(uuid::Uuid::parse_str(id).unwrap()) == *p)
    );

    // Bad ranges and forms are refused with problem JSON.
    for (query, code) in [
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "validation_failed",
        ),
        ("format=xlsx", "invalid_query"),
        ("since=yesterday", "invalid_query"),
    ] {
        let (status, problem) = env
            .call(
                Method::GET,
                &format!("/v1/staff/exports/votes?{query}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(
            (status / 100, problem["code"].as_str()),
            (4, Some(code)),
            "{query}"
        );
    }
    let volunteer = env.user("vol-export", Role::Volunteer).await;
    let (status, _) = env.call(Method::GET, path, Some(&volunteer), None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_production_refuses_pseudonymised_exports() {
    let env = env_with_key("").await;
    let staff = env.user("staff-nokey", Role::Staff).await;
    let (status, problem) = env
        .call(Method::GET, "/v1/staff/exports/votes", Some(&staff), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (503, Some("pseudonym_key_missing"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_on_request_and_the_command_line_write_the_same_bytes() {
    let env = env_with_key(KEY).await;
    seed(&env, 300).await;
    let staff = env.user("staff-gzip", Role::Staff).await;
    let path = "/v1/staff/exports/decisions?until=2026-06-01T00:00:00Z";
    let (_, plain) = get(&env, path, &staff).await;
    let response = env
        .http
        .get(env.url(path))
        .bearer_auth(&staff)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(
        response.headers()["content-type"],
        ExportFormat::Csv.content_type()
    );
    let gz = response.bytes().await.unwrap();
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);
    assert!(
        gz.len() < plain.len() / 3,
        "{} of {}",
        gz.len(),
        plain.len()
    );

    // `coordinator export`, gzipped to a file, with the deployment's key.
    let out = tempfile_path("decisions.csv.gz");
    let mut config = env.coordinator_config();
    config.services.pseudonym_key = KEY.into();
    let args = coordinator::export::ExportArgs {
        what: ExportKind::Decisions,
        since: None,
        until: Some("2026-06-01T00:00:00Z".parse().unwrap()),
        format: ExportFormat::Csv,
        out: Some(out.clone()),
        gzip: true,
        raw_volunteer_ids: false,
    };
    let written = coordinator::export::run(&config, &args).await.unwrap();
    assert_eq!(written as usize, plain.len());
    let mut from_file = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&out).unwrap())
        .read_to_string(&mut from_file)
        .unwrap();
    assert_eq!(from_file, plain);
    let _ = std::fs::remove_file(out);
    // Votes through the command line carry the API's pseudonyms.
    let (_, api_votes) = get(
        &env,
        "/v1/staff/exports/votes?until=2026-06-01T00:00:00Z",
        &staff,
    )
    .await;
    let out = tempfile_path("votes.csv");
    let args = coordinator::export::ExportArgs {
        what: ExportKind::Votes,
        gzip: false,
        out: Some(out.clone()),
        ..args
    };
    coordinator::export::run(&config, &args).await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), api_votes);
    let _ = std::fs::remove_file(out);
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("spotcheck-export-{}-{name}", uuid::Uuid::new_v4()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_export_stops_it_in_the_database() {
    let env = env_with_key(KEY).await;
    seed(&env, 60_000).await; // 180,000 votes: 36 chunks
    let staff = env.user("staff-gone", Role::Staff).await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let mut response = env
        .http
        .get(env.url("/v1/staff/exports/votes?format=jsonl"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    let first = response.chunk().await.unwrap().expect("a first chunk");
    assert!(!first.is_empty());
    drop(response); // the client goes away after the first chunk
    let exporting = |pool: sqlx::PgPool, database: String| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND state = 'active' AND query LIKE '%FROM votes v JOIN tasks t%'
               AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let (pool, db) = (env.pool.clone(), database.clone());
    wait_until("the export's query to end", Duration::from_secs(5), || {
        let (pool, db) = (pool.clone(), db.clone());
        async move { exporting(pool, db).await == 0 }
    })
    .await;
    // And it stays stopped: the rest of the range (over 30 more chunk queries,
    // back to back) would show in these samples.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(exporting(env.pool.clone(), database.clone()).await, 0);
    }
}
