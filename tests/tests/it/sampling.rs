//! Sampling: the sampled share matches the rate and replicas agree; rules are
//! validated, audited, dry-run and reach every coordinator; rounds resample;
//! capacity throttling; prevalence estimates.

use crate::harness::{
    TestEnv, binary, count, free_port, import_lines, import_lines_at, import_with, lines_of,
    seeded_votes, wait_until,
};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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
    let lines = demo_lines(77, 5000);
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

fn demo_lines(seed: u64, n: usize) -> Vec<String> {
    lines_of(&generate(seed, n))
}

async fn rules_version(env: &TestEnv, staff: &str) -> i64 {
    let (status, rules) = env
        .call(Method::GET, "/v1/staff/sampling-rules", Some(staff), None)
        .await;
    assert_eq!(status, 200);
    rules["version"].as_i64().expect("a version")
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_rules_get_a_clear_4xx_and_leave_the_rules_in_force_unchanged() {
    let env = TestEnv::start().await;
    let staff = env.user("rules-staff", Role::Staff).await;
    let before = rules_version(&env, &staff).await;
    let cases = [
        (
            json!({"default_rate": 1.5}),
            "invalid_sampling_rules",
            "default_rate",
        ),
        (
            json!({"default_rate": 0.1, "floor_rate": -0.1}),
            "invalid_sampling_rules",
            "floor_rate",
        ),
        (
            json!({"default_rate": 0.1, "rules": [{"category": "bags", "rate": 2}]}),
            "invalid_sampling_rules",
            "rules[0].rate",
        ),
        (
            json!({"default_rate": 0.1, "rules": [{"colour": "red", "rate": 0.1}]}),
            "",
            "colour",
        ),
        (
            json!({"default_rate": 0.1, "rules": [{"rate": 0.1}]}),
            "invalid_sampling_rules",
            "rules[0]",
        ),
        (
            json!({"default_rate": 0.1, "boosts": {"brand_complaint": "high"}}),
            "",
            "",
        ),
        (
            json!({"default_rate": 0.1, "boosts": {"brand_complaint": -2}}),
            "invalid_sampling_rules",
            "boosts.brand_complaint",
        ),
        (
            json!({"default_rate": 0.1, "surprise": true}),
            "",
            "surprise",
        ),
    ];
    for (body, code, mentions) in cases {
        let (status, problem) = env
            .call(
                Method::PUT,
                "/v1/staff/sampling-rules",
                Some(&staff),
                Some(body.clone()),
            )
            .await;
        assert!((400..500).contains(&status), "{body} answered {status}");
        if !code.is_empty() {
            assert_eq!(problem["code"], code, "{body}: {problem}");
        }
        assert!(problem["code"].is_string(), "a stable code for {body}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(mentions),
            "{body}: the detail {detail:?} names {mentions:?}"
        );
        let (dry, _) = env
            .call(
                Method::POST,
                "/v1/staff/sampling-rules/dry-run",
                Some(&staff),
                Some(body.clone()),
            )
            .await;
        assert!((400..500).contains(&dry), "the dry run refuses {body} too");
    }
    assert_eq!(
        rules_version(&env, &staff).await,
        before,
        "nothing was replaced"
    );
    let (_, history) = env
        .call(
            Method::GET,
            "/v1/staff/sampling-rules/history",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        1,
        "only the initial rules"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_most_specific_rule_and_the_boosts_set_each_task_probability_and_staff_see_why() {
    let env = TestEnv::start().await;
    let staff = env.user("why-staff", Role::Staff).await;
    let rules = json!({
        "default_rate": 0.05, "floor_rate": 0.01,
        "rules": [
            {"region": "pearl-river-delta", "rate": 0.3},
            {"category": "handbags", "region": "pearl-river-delta", "rate": 0.5},
            {"category": "handbags", "region": "pearl-river-delta", "seller_risk_tier": "high", "rate": 1.0}
        ],
        "boosts": {"brand_complaint": 2.0}
    });
    env.set_policy(&staff, rules).await;
    let listing = |id: &str, category: &str, tier: &str, complaint: bool| {
        json!({"listing_id": id, "version": 1, "seller_id": "S1", "brand": "Aurelia",
               "category": category, "region": "pearl-river-delta", "price": 10.0,
               "currency": "USD", "title": "t", "description": "d", "image_urls": [],
               "signals": {"brand_complaint": complaint}, "seller_risk_tier": tier})
        .to_string()
    };
    let lines = vec![
        listing("why-1", "handbags", "high", false),
        listing("why-2", "handbags", "low", false),
        listing("why-3", "toys", "low", false),
        listing("why-4", "toys", "low", true),
    ];
    import_lines(&env, &lines).await;
    let p: Vec<(String, f64, Value)> = sqlx::query_as(
        "SELECT l.listing_id, l.p, coalesce(t.sampling, 'null')
         FROM (VALUES ('why-1', 1.0::float8), ('why-2', 0.5), ('why-3', 0.3), ('why-4', 0.6)) l(listing_id, p)
         LEFT JOIN tasks t ON t.listing_id = l.listing_id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let (_, frames): (i64, f64) =
        sqlx::query_as("SELECT sum(listings)::bigint, sum(expected_tasks) FROM sampling_frames")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(
        (frames - 2.4).abs() < 1e-9,
        "the frame sums the probabilities: {frames}"
    );
    let task: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks WHERE listing_id = 'why-1'")
        .fetch_one(&env.pool)
        .await
        .expect("a probability of one always samples");
    for (id, want, sampling) in p {
        if !sampling.is_null() {
            assert_eq!(sampling["probability"].as_f64(), Some(want), "{id}");
        }
    }
    let (status, view) = env
        .call(
            Method::GET,
            &format!("/v1/staff/tasks/{task}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let why = &view["why_inspected"];
    assert_eq!(why["probability"], 1.0);
    assert_eq!(why["stratum"], "handbags/pearl-river-delta/high");
    assert_eq!(why["rule"]["seller_risk_tier"], "high");
    assert_eq!(why["base_rate"], 1.0);
    let (status, listing_view) = env
        .call(Method::GET, "/v1/staff/listings/why-1", Some(&staff), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listing_view["tasks"][0]["task_id"], task.to_string());
    let (missing, problem) = env
        .call(Method::GET, "/v1/staff/listings/nope", Some(&staff), None)
        .await;
    assert_eq!(
        (missing, problem["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_rules_is_audited_with_who_when_old_and_new() {
    let env = TestEnv::start().await;
    let staff = env.user("audit-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 0.2})).await;
    env.set_policy(&staff, json!({"default_rate": 0.3, "floor_rate": 0.1}))
        .await;
    let (status, history) = env
        .call(
            Method::GET,
            "/v1/staff/sampling-rules/history?limit=2",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["new"]["default_rate"], 0.3);
    assert_eq!(items[0]["old"]["default_rate"], 0.2);
    assert_eq!(items[0]["changed_by"]["username"], "audit-staff");
    assert!(items[0]["changed_at"].is_string());
    let before = history["next_before"].as_i64().expect("another page");
    let (_, older) = env
        .call(
            Method::GET,
            &format!("/v1/staff/sampling-rules/history?before={before}"),
            Some(&staff),
            None,
        )
        .await;
    let older = older["items"].as_array().unwrap();
    assert_eq!(older.len(), 1, "the initial rules");
    assert!(older[0]["changed_by"].is_null() && older[0]["old"].is_null());
    let audited = count(
        &env.pool,
        "SELECT count(*) FROM audit_log WHERE action = 'sampling_rules.replace'",
    )
    .await;
    assert_eq!(audited, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_says_what_proposed_rules_would_sample_and_cost_without_changing_anything() {
    let env = TestEnv::start().await;
    let staff = env.user("dry-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 0.0})).await;
    let market = generate(91, 600);
    let lines: Vec<String> = lines_of(&market);
    import_lines(&env, &lines).await;
    let before = rules_version(&env, &staff).await;
    let proposed =
        json!({"default_rate": 0.1, "rules": [{"seller_risk_tier": "high", "rate": 0.5}]});
    let (status, dry) = env
        .call(
            Method::POST,
            "/v1/staff/sampling-rules/dry-run",
            Some(&staff),
            Some(proposed.clone()),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    let policy: spotcheck_shared::SamplingPolicy = serde_json::from_value(proposed).unwrap();
    let want: f64 = market
        .iter()
        .map(|d| {
            policy
                .inclusion(&d.listing.stratum(), d.listing.active_signals())
                .probability
        })
        .sum();
    let got = dry["proposed"]["expected_tasks"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-6, "expected tasks {got} vs {want}");
    assert_eq!(dry["proposed"]["listings"], 600);
    assert_eq!(dry["in_force"]["expected_tasks"], 0.0);
    let hours = dry["proposed"]["volunteer_hours"].as_f64().unwrap();
    assert!((hours - want * 3.0 * 45.0 / 3600.0).abs() < 1e-6, "{hours}");
    let per_stratum: f64 = dry["proposed"]["strata"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["expected_tasks"].as_f64().unwrap())
        .sum();
    assert!((per_stratum - want).abs() < 1e-6);
    assert_eq!(
        rules_version(&env, &staff).await,
        before,
        "a dry run changes nothing"
    );
}

async fn metric(client: &reqwest::Client, addr: &str, name: &str) -> Option<f64> {
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_change_through_one_worker_api_reaches_two_coordinator_processes_within_5_seconds() {
    let env = TestEnv::start().await;
    let staff = env.user("replica-staff", Role::Staff).await;
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let _coordinators: Vec<Running> = addrs
        .iter()
        .map(|addr| {
            Running(
                std::process::Command::new(binary("coordinator"))
                    .env("DATABASE_URL", env.database_url())
                    .env("SPOTCHECK_AMQP_NAMESPACE", &env.id)
                    .env("SPOTCHECK_REDIS_PREFIX", &env.id)
                    .env("SPOTCHECK_METRICS_ADDR", addr)
                    .env("SPOTCHECK_POLICY_REFRESH_MS", "1000")
                    .env("SPOTCHECK_DB_MAX_CONNECTIONS", "4")
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("start a coordinator"),
            )
        })
        .collect();
    let client = reqwest::Client::new();
    let initial = rules_version(&env, &staff).await as f64;
    for addr in &addrs {
        wait_until(
            "the coordinator reads the rules",
            Duration::from_secs(60),
            || async {
                metric(&client, addr, "spotcheck_sampling_policy_version").await == Some(initial)
            },
        )
        .await;
    }
    let started = Instant::now();
    env.set_policy(&staff, json!({"default_rate": 0.42})).await;
    let version = rules_version(&env, &staff).await as f64;
    assert!(version > initial);
    for addr in &addrs {
        wait_until(
            "the new rules are in force",
            Duration::from_secs(5),
            || async {
                metric(&client, addr, "spotcheck_sampling_policy_version").await == Some(version)
            },
        )
        .await;
    }
    let took = started.elapsed();
    eprintln!("both coordinators had the new rules {took:?} after the change");
    assert!(took <= Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_round_samples_active_listings_afresh_and_a_sweep_equals_a_fresh_import_of_that_round()
{
    let lines = demo_lines(78, 2000);
    let swept = TestEnv::db_only().await;
    let fresh = TestEnv::db_only().await;
    for env in [&swept, &fresh] {
        sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 0.25}')")
            .execute(&env.pool)
            .await
            .unwrap();
    }
    let config = swept.coordinator_config();
    let now = chrono::Utc::now().timestamp();
    let next = now + config.round_secs;
    import_lines_at(&swept, &lines, now).await;
    let mut taken_down = lines[..100].to_vec();
    for line in &mut taken_down {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["version"] = json!(2);
        v["active"] = json!(false);
        *line = v.to_string();
    }
    import_lines_at(&swept, &taken_down, now).await;
    let sampler = coordinator::app::sampler(&config);
    let policies =
        coordinator::policy::PolicyCache::new(swept.pool.clone(), Duration::from_secs(1));
    let mut looked_at = 0;
    loop {
        let r = coordinator::rounds::sweep_batch(&swept.pool, &sampler, &policies, next, 300)
            .await
            .unwrap();
        if r.listings == 0 {
            break;
        }
        looked_at += r.listings;
    }
    assert_eq!(
        looked_at, 1900,
        "every active listing once, none taken down"
    );
    let again = coordinator::rounds::sweep_batch(&swept.pool, &sampler, &policies, next, 300)
        .await
        .unwrap();
    assert_eq!(again.listings, 0, "a listing is looked at once per round");
    import_lines_at(&fresh, &lines[100..], next).await;
    let round_of = |env: &TestEnv, round: i64| {
        let pool = env.pool.clone();
        async move {
            let ids: Vec<String> =
                sqlx::query_scalar("SELECT listing_id FROM tasks WHERE round = $1")
                    .bind(round)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            ids.into_iter().collect::<BTreeSet<String>>()
        }
    };
    let r0 = spotcheck_shared::sampling::round_of(now, config.round_secs);
    let first = round_of(&swept, r0).await;
    let second = round_of(&swept, r0 + 1).await;
    assert_eq!(
        second,
        round_of(&fresh, r0 + 1).await,
        "replicas agree on the round's draw"
    );
    assert_ne!(first, second, "the next round draws afresh");
    assert!(second.iter().all(|id| {
        !lines[..100]
            .iter()
            .any(|l| l.contains(&format!("\"{id}\"")))
    }));
    let frame: i64 =
        sqlx::query_scalar("SELECT sum(listings)::bigint FROM sampling_frames WHERE round = $1")
            .bind(r0 + 1)
            .fetch_one(&swept.pool)
            .await
            .unwrap();
    assert_eq!(frame, 1900, "the frame counts the round's population");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_past_the_limit_throttles_the_lowest_risk_tiers_and_records_the_probability_used()
{
    let env = TestEnv::db_only().await;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 1.0, \"floor_rate\": 0.05, \"boosts\": {\"brand_complaint\": 2.0}}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    // 40 tasks of 3 votes: 120 votes of backlog.
    let backlog: Vec<String> = demo_lines(5, 40);
    import_lines_at(&env, &backlog, now).await;
    // 10 votes over the last 50 minutes: a pace of 12 votes an hour, so 10 hours of work.
    let volunteer = seeded_votes(&env.pool, "pace", 9).await;
    sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence, created_at)
         SELECT gen_random_uuid(), id, $1, 'genuine', '[]', 1, now() - interval '50 minutes'
         FROM tasks WHERE id NOT IN (SELECT task_id FROM votes) LIMIT 1",
    )
    .bind(volunteer)
    .execute(&env.pool)
    .await
    .unwrap();
    let mut config = env.coordinator_config();
    config.max_backlog_hours = 4.0; // overload 10 h / 4 h = 2.5: both tiers, factor 0.4
    config.capacity_min_votes = 5;
    let sampler = coordinator::app::sampler(&config);
    let throttle = coordinator::capacity::refresh(
        &env.pool,
        &config.capacity_policy(),
        config.capacity_window_secs,
        &sampler.throttle,
    )
    .await
    .unwrap();
    assert_eq!(throttle.tiers, ["low", "standard"]);
    assert!((throttle.factor - 0.4).abs() < 0.01, "{throttle:?}");
    let listing = |i: usize, tier: &str, complaint: bool| {
        json!({"listing_id": format!("thr-{tier}-{complaint}-{i}"), "version": 1, "seller_id": "S",
               "brand": "B", "category": "toys", "region": "japan", "price": 5.0, "currency": "USD",
               "title": "t", "description": "d", "image_urls": [], "seller_risk_tier": tier,
               "signals": {"brand_complaint": complaint}})
        .to_string()
    };
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(listing(i, "low", false));
        lines.push(listing(i, "high", false));
        lines.push(listing(i, "low", true));
    }
    import_with(&env, &sampler, &lines, now).await;
    let by_kind: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT split_part(listing_id, '-', 2) || '-' || split_part(listing_id, '-', 3),
                count(*), max(inclusion_probability)
         FROM tasks WHERE listing_id LIKE 'thr-%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let get = |k: &str| by_kind.iter().find(|r| r.0 == k).cloned().expect(k);
    let (_, high, p_high) = get("high-false");
    assert_eq!((high, p_high), (300, 1.0), "high risk is never throttled");
    let (_, boosted, _) = get("low-true");
    assert_eq!(boosted, 300, "a risk signal is never throttled");
    let (_, low, p_low) = get("low-false");
    assert!(
        (p_low - throttle.factor).abs() < 1e-12,
        "the probability used is recorded: {p_low}"
    );
    assert!(
        (85..=155).contains(&low),
        "about 0.4 of 300 low-risk listings: {low}"
    );
    let state: Value = sqlx::query_scalar("SELECT throttle FROM capacity_state")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        state["tiers"],
        json!(["low", "standard"]),
        "staff see the throttle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prevalence_is_estimated_from_decided_tasks_with_staff_outcomes_overriding_verdicts() {
    let env = TestEnv::start().await;
    let staff = env.user("prev-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 0.5})).await;
    let market = generate(4242, 1200);
    let lines: Vec<String> = lines_of(&market);
    import_lines(&env, &lines).await;
    let truth: std::collections::HashMap<String, bool> = market
        .iter()
        .map(|d| (d.listing.listing_id.as_str().to_owned(), d.counterfeit))
        .collect();
    let tasks: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, listing_id FROM tasks")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    // Volunteers decide every task correctly, except one genuine listing they call counterfeit.
    let mut wrong = None;
    for (task, listing) in &tasks {
        let mut outcome = if truth[listing] {
            "counterfeit"
        } else {
            "genuine"
        };
        if wrong.is_none() && outcome == "genuine" {
            wrong = Some(*task);
            outcome = "counterfeit";
        }
        sqlx::query("INSERT INTO decisions (task_id, outcome, tally) VALUES ($1, $2, '{}')")
            .bind(task)
            .bind(outcome)
            .execute(&env.pool)
            .await
            .unwrap();
    }
    let found = tasks.iter().filter(|(_, l)| truth[l]).count() as f64;
    let body = estimate(&env, &staff).await;
    let overall = &body["overall"];
    assert_eq!(overall["listings"], 1200);
    assert_eq!(overall["counterfeit_found"].as_f64(), Some(found + 1.0));
    // Every inspected listing stands for two (p = 0.5).
    let share = overall["share"].as_f64().unwrap();
    assert!(
        (share - 2.0 * (found + 1.0) / 1200.0).abs() < 1e-9,
        "{overall}"
    );
    assert!(
        overall["ci_low"].as_f64().unwrap() < share && share < overall["ci_high"].as_f64().unwrap()
    );
    assert!(body["strata"].as_object().unwrap().len() > 5);
    // Staff dismiss the wrongly escalated listing: the estimate follows them.
    sqlx::query(
        "INSERT INTO escalations (id, task_id, listing_id, reason, status)
         SELECT gen_random_uuid(), id, listing_id, 'counterfeit_majority', 'dismissed' FROM tasks WHERE id = $1",
    )
    .bind(wrong.unwrap())
    .execute(&env.pool)
    .await
    .unwrap();
    let after = estimate(&env, &staff).await;
    assert_eq!(after["overall"]["counterfeit_found"].as_f64(), Some(found));
    let true_share = truth.values().filter(|c| **c).count() as f64 / 1200.0;
    let (lo, hi) = (
        after["overall"]["ci_low"].as_f64().unwrap(),
        after["overall"]["ci_high"].as_f64().unwrap(),
    );
    eprintln!(
        "true share {true_share:.4}, estimate {:.4} [{lo:.4}, {hi:.4}]",
        after["overall"]["share"]
    );
}

async fn estimate(env: &TestEnv, staff: &str) -> Value {
    let (status, body) = env
        .call(Method::GET, "/v1/staff/prevalence", Some(staff), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn votes_of_the_first_minutes_are_a_pace_over_those_minutes_not_over_the_whole_window() {
    let env = TestEnv::db_only().await;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 1.0}')")
        .execute(&env.pool)
        .await
        .unwrap();
    import_lines_at(&env, &demo_lines(6, 40), chrono::Utc::now().timestamp()).await;
    // 25 votes just now, 120 votes of backlog: at the pace of these first moments
    // that is minutes of work; spread over a whole hour it would read as hours.
    seeded_votes(&env.pool, "fresh", 25).await;
    let capacity = coordinator::capacity::measure(&env.pool, 3600)
        .await
        .unwrap();
    assert_eq!(
        capacity.window_secs, 60,
        "the span of the votes, at least a minute"
    );
    let hours = capacity.backlog_hours(20).unwrap();
    assert!(hours < 0.1, "{capacity:?}: {hours} h");
    let mut config = env.coordinator_config();
    config.max_backlog_hours = 1.0;
    let throttle = coordinator::capacity::refresh(
        &env.pool,
        &config.capacity_policy(),
        3600,
        &coordinator::app::sampler(&config).throttle,
    )
    .await
    .unwrap();
    assert!(!throttle.active(), "{throttle:?}");
}

/// `lines` with `version` and `active` set on each.
fn versioned(lines: &[String], version: i64, active: bool) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v["version"] = json!(version);
            v["active"] = json!(active);
            v.to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_is_looked_at_once_a_round_whether_new_a_newer_version_or_twice_in_one_batch() {
    let env = TestEnv::db_only().await;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 1.0}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let round_secs = env.coordinator_config().round_secs;
    let now = chrono::Utc::now().timestamp();
    let r0 = spotcheck_shared::sampling::round_of(now, round_secs);
    let lines = demo_lines(79, 60);
    let tasks_in = |round: i64| {
        let pool = env.pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE round = $1")
                .bind(round)
                .fetch_one(&pool)
                .await
                .unwrap();
            let frame: Option<i64> = sqlx::query_scalar(
                "SELECT sum(listings)::bigint FROM sampling_frames WHERE round = $1",
            )
            .bind(round)
            .fetch_one(&pool)
            .await
            .unwrap();
            (n, frame.unwrap_or(0))
        }
    };

    // New: 40 active (one batch holds a listing twice: versions 1 and 2), 20 inactive.
    let mut first = versioned(&lines[..40], 1, true);
    first.extend(versioned(&lines[..1], 2, true));
    first.extend(versioned(&lines[40..], 1, false));
    let summary = import_lines_at(&env, &first, now).await;
    assert_eq!(
        summary.ingest.stored, 61,
        "60 new listings and one newer version"
    );
    assert_eq!(
        tasks_in(r0).await,
        (40, 40),
        "each new active listing once, the repeat in the batch not again, the inactive not"
    );
    let marked: i64 = sqlx::query_scalar("SELECT count(*) FROM listings WHERE last_round = $1")
        .bind(r0)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        marked, 40,
        "the active ones are marked as looked at in the round"
    );

    // Newer versions in the same round: the 40 already looked at are not again;
    // the 20 that were inactive and are now active are, once.
    let mut second = versioned(&lines[..40], 3, true);
    second.extend(versioned(&lines[40..], 2, true));
    import_lines_at(&env, &second, now).await;
    assert_eq!(tasks_in(r0).await, (60, 60));
    import_lines_at(&env, &versioned(&lines[40..], 3, true), now).await;
    assert_eq!(
        tasks_in(r0).await,
        (60, 60),
        "a second newer version: not again"
    );

    // The next round: a newer version is looked at again.
    import_lines_at(&env, &versioned(&lines[..10], 4, true), now + round_secs).await;
    assert_eq!(tasks_in(r0 + 1).await, (10, 10));
    let marked: i64 = sqlx::query_scalar("SELECT count(*) FROM listings WHERE last_round = $1")
        .bind(r0 + 1)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(marked, 10);
}
