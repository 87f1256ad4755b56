//! What the web app shows beyond the record: a claim's typical price and
//! signals, a volunteer's day (votes, quota, streak), the dashboards' series,
//! the user list, gold accuracy per day, and each voter's reliability in an
//! escalation's evidence.

use crate::harness::{TestEnv, claim_within, import_lines, seed_escalation, wait_until};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use spotcheck_shared::{Role, Verdict};
use std::time::Duration;

fn listing(id: &str, category: &str, price: f64, signals: Value) -> String {
    json!({"listing_id": id, "version": 1, "seller_id": format!("seller-{id}"), "brand": "Aurelia",
           "category": category, "region": "japan", "price": price, "currency": "USD",
           "title": format!("Bag {id}"), "description": "A bag.",
           "image_urls": ["https://images.example.com/a.jpg"], "signals": signals,
           "seller_risk_tier": "standard"})
    .to_string()
}

/// A stack with a quota of 5 votes a day, sampling everything, one vote a task.
async fn env() -> (TestEnv, String) {
    let mut env = TestEnv::db_only().await;
    env.min_votes = 1;
    env.start_coordinator(|c| {
        c.capacity_interval_ms = 200;
        // No audit task asks for extra votes: each task is decided by one.
        c.audit_share = 0.0;
    })
    .await;
    env.start_api(|c| c.limits.daily_vote_quota = 5).await;
    let staff = env.user("staff-console", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    (env, staff)
}

async fn vote(env: &TestEnv, token: &str, claim: &Value) {
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap()),
            Some(token),
            Some(json!({"lease_token": claim["lease_token"], "verdict": "genuine", "reasons": []})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_shows_the_categorys_typical_price_and_the_listings_signals() {
    let (env, _) = env().await;
    // Two listings of another category first: they must not move this one's price.
    let mut lines = vec![
        listing("shoe-1", "shoes", 1000.0, json!({})),
        listing("shoe-2", "shoes", 3000.0, json!({})),
    ];
    lines.push(listing(
        "bag-1",
        "handbags",
        50.0,
        json!({"brand_complaint": true, "new_seller": false, "banned_seller": true}),
    ));
    lines.push(listing("bag-2", "handbags", 200.0, json!({})));
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 4);
    let volunteer = env.user("vol-price", Role::Volunteer).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let claim = claim_within(&env, &volunteer, Duration::from_secs(10)).await;
        let l = &claim["listing"];
        let typical = l["typical_price"].as_f64().expect("a typical price");
        let want = if l["category"] == "handbags" {
            100.0 // the geometric mean of 50 and 200
        } else {
            (1000.0f64 * 3000.0).sqrt()
        };
        assert!((typical - want).abs() < 1e-6, "{l}");
        if l["listing_id"] == "bag-1" {
            assert_eq!(l["signals"], json!(["banned_seller", "brand_complaint"]));
        } else {
            assert_eq!(l["signals"], json!([]), "{l}");
        }
        seen.push(l["listing_id"].as_str().unwrap().to_owned());
        vote(&env, &volunteer, &claim).await;
    }
    seen.sort();
    assert_eq!(seen, ["bag-1", "bag-2", "shoe-1", "shoe-2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn me_shows_todays_votes_the_quota_left_and_the_streak() {
    let (env, _) = env().await;
    import_lines(&env, &[listing("streak-1", "handbags", 80.0, json!({}))]).await;
    let volunteer = env.user("vol-streak", Role::Volunteer).await;
    let (_, me) = env
        .call(Method::GET, "/v1/me", Some(&volunteer), None)
        .await;
    assert_eq!(
        (&me["today"], &me["streak_days"]),
        (&json!({"votes": 0, "quota": 5, "quota_left": 5}), &json!(0))
    );
    // Votes on the two days before today (seeded on a stored task).
    let id: uuid::Uuid = uuid::Uuid::parse_str(me["user_id"].as_str().unwrap()).unwrap();
    for days_ago in [1, 2, 4] {
        sqlx::query(
            "INSERT INTO tasks (id, listing_id, listing_version, round, state, votes_required,
                 votes_counted, inclusion_probability, stratum, sampling)
             VALUES ($1, 'streak-1', 1, -$2, 'decided', 1, 1, 1, 'handbags/japan/standard', '{}')",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(days_ago)
        .execute(&env.pool)
        .await
        .expect("a past task");
        sqlx::query(
            "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence, created_at)
             SELECT gen_random_uuid(), t.id, $1, 'genuine', '[]', 1, now() - make_interval(days => $2)
             FROM tasks t WHERE t.round = -$2",
        )
        .bind(id)
        .bind(days_ago)
        .execute(&env.pool)
        .await
        .expect("a past vote");
    }
    let (_, me) = env
        .call(Method::GET, "/v1/me", Some(&volunteer), None)
        .await;
    assert_eq!(me["streak_days"], 2, "yesterday and the day before: {me}");
    let claim = claim_within(&env, &volunteer, Duration::from_secs(10)).await;
    vote(&env, &volunteer, &claim).await;
    let (_, me) = env
        .call(Method::GET, "/v1/me", Some(&volunteer), None)
        .await;
    assert_eq!(
        (&me["today"], &me["streak_days"], &me["counts"]["votes"]),
        (
            &json!({"votes": 1, "quota": 5, "quota_left": 4}),
            &json!(3),
            &json!(4)
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_counts_votes_decisions_and_the_backlog_per_bucket() {
    let (env, staff) = env().await;
    let lines: Vec<String> = (0..3)
        .map(|i| listing(&format!("dash-{i}"), "handbags", 90.0, json!({})))
        .collect();
    import_lines(&env, &lines).await;
    let (env_ref, staff_ref) = (&env, &staff);
    // The capacity job samples the backlog of 3 open votes.
    wait_until("a backlog sample", Duration::from_secs(10), || async move {
        let (_, d) = env_ref
            .call(
                Method::GET,
                "/v1/staff/dashboard?window_secs=3600",
                Some(staff_ref),
                None,
            )
            .await;
        d["buckets"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["backlog_votes"] == 3))
    })
    .await;
    let volunteer = env.user("vol-dash", Role::Volunteer).await;
    for _ in 0..2 {
        let claim = claim_within(&env, &volunteer, Duration::from_secs(10)).await;
        vote(&env, &volunteer, &claim).await;
    }
    let total = |d: &Value, field: &str| -> i64 {
        d["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[field].as_i64().unwrap())
            .sum()
    };
    wait_until("two decisions", Duration::from_secs(10), || async move {
        let (_, d) = env_ref
            .call(
                Method::GET,
                "/v1/staff/dashboard?window_secs=3600",
                Some(staff_ref),
                None,
            )
            .await;
        total(&d, "decisions") == 2
    })
    .await;
    let (status, d) = env
        .call(
            Method::GET,
            "/v1/staff/dashboard?window_secs=3600",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (d["window_secs"].as_i64(), d["bucket_secs"].as_i64()),
        (Some(3600), Some(120))
    );
    let buckets = d["buckets"].as_array().unwrap();
    assert!((30..=32).contains(&buckets.len()), "{}", buckets.len());
    assert_eq!(total(&d, "votes"), 2);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0]["at"].as_str() < w[1]["at"].as_str()),
        "oldest first"
    );
    assert_eq!(
        d["now"]["outbox_unsent"].as_i64().map(|n| n >= 0),
        Some(true)
    );
    assert_eq!(d["now"]["dead_lettered"], 0);
    let (status, problem) = env
        .call(
            Method::GET,
            "/v1/staff/dashboard?window_secs=10",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("validation_failed")),
        "{problem}"
    );
    let (status, _) = env
        .call(Method::GET, "/v1/staff/dashboard", Some(&volunteer), None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_list_users_by_role_status_and_name_page_by_page() {
    let (env, staff) = env().await;
    for name in ["ana_1", "anax2", "bob-3"] {
        env.user(name, Role::Volunteer).await;
    }
    let (_, page) = env
        .call(
            Method::GET,
            "/v1/staff/users?role=volunteer&q=ANA",
            Some(&staff),
            None,
        )
        .await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["ana_1", "anax2"]);
    let (_, page) = env
        .call(Method::GET, "/v1/staff/users?q=a_", Some(&staff), None)
        .await;
    assert_eq!(
        page["items"][0]["username"], "ana_1",
        "_ is matched literally"
    );
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // Page through everyone, one at a time.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = env
            .call(
                Method::GET,
                &format!("/v1/staff/users?limit=1&cursor={cursor}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        4,
        "three volunteers and the staff member: {seen:?}"
    );
    let (_, staff_only) = env
        .call(
            Method::GET,
            "/v1/staff/users?role=staff&status=active",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(staff_only["items"][0]["username"], "staff-console");
    assert_eq!(staff_only["items"][0]["brands"], json!([]));
    let (status, problem) = env
        .call(
            Method::GET,
            "/v1/staff/users?role=wizard",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_query"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gold_accuracy_per_day_and_each_voters_reliability_are_in_the_evidence() {
    let (env, staff) = env().await;
    let (escalation, voters) = seed_escalation(
        &env.pool,
        "esc-rel",
        "seller-rel",
        "Bag",
        json!([]),
        &["logo", "stitching"],
    )
    .await;
    // The first voter has a stored estimate; the second none yet.
    let mut confusion = Confusion::prior(&ReliabilityPrior::default());
    for _ in 0..20 {
        confusion.observe(true, Verdict::Counterfeit, 1.0);
    }
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats) VALUES ($1, $2, '{}')",
    )
    .bind(voters[0])
    .bind(serde_json::to_value(confusion).unwrap())
    .execute(&env.pool)
    .await
    .expect("a stored estimate");
    let (_, body) = env
        .call(
            Method::GET,
            &format!("/v1/staff/escalations/{escalation}"),
            Some(&staff),
            None,
        )
        .await;
    let votes = body["evidence"]["votes"].as_array().unwrap();
    let by = |id: uuid::Uuid| {
        votes
            .iter()
            .find(|v| v["volunteer_id"] == id.to_string())
            .unwrap()
    };
    let r = by(voters[0])["reliability"]
        .as_f64()
        .expect("a reliability");
    assert!((r - confusion.accuracy()).abs() < 1e-9, "{r}");
    assert_eq!(by(voters[1])["reliability"], Value::Null);
    assert!(votes.iter().all(|v| v.get("confusion").is_none()));

    // A gold answer today, right, and one wrong.
    let (status, gold) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(&staff),
            Some(json!({"listing": serde_json::from_str::<Value>(&listing("gold-day", "handbags", 10.0, json!({}))).unwrap(),
                        "answer": "counterfeit"})),
        )
        .await;
    assert_eq!(status, 201, "{gold}");
    for (voter, verdict) in [(voters[0], "counterfeit"), (voters[1], "genuine")] {
        sqlx::query(
            "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
             VALUES (gen_random_uuid(), $1, $2, $3, '[]', 1)",
        )
        .bind(uuid::Uuid::parse_str(gold["task_id"].as_str().unwrap()).unwrap())
        .bind(voter)
        .bind(verdict)
        .execute(&env.pool)
        .await
        .expect("a gold vote");
    }
    let today = chrono::Utc::now().date_naive().to_string();
    for (voter, correct) in [(voters[0], 1), (voters[1], 0)] {
        let (status, v) = env
            .call(
                Method::GET,
                &format!("/v1/staff/volunteers/{voter}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["gold_history"],
            json!([{"day": today, "answered": 1, "correct": correct}])
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_apps_first_load_is_gzipped_and_under_200_kb() {
    let env = TestEnv::start().await;
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let mut paths = vec!["/app/".to_owned()];
    for entry in std::fs::read_dir(&web).expect("the web app's folder") {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "index.html" {
            paths.push(format!("/app/{name}"));
        }
    }
    let mut total = 0;
    for path in &paths {
        let response = env
            .http
            .get(env.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let gzipped = response
            .headers()
            .get("content-encoding")
            .is_some_and(|e| e == "gzip");
        let body = response.bytes().await.unwrap();
        if body.len() > 1024 || gzipped {
            assert!(gzipped, "{path} is {} bytes, not gzipped", body.len());
            assert_eq!(&body[..2], &[0x1f, 0x8b], "{path} is a gzip stream");
        }
        total += body.len();
    }
    assert!(
        total < 200 * 1024,
        "the first load is {total} bytes compressed"
    );
    // A client that does not ask gets the plain file.
    let plain = env.http.get(env.url("/app/app.js")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().contains("import"));
}
