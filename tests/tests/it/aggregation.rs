//! Aggregation through the real services: gold tasks served like any task and
//! never decided, reliability learned from gold and staff outcomes, the abuse
//! rules and reinstatement, adaptive redundancy, exactly one decision, the
//! Dawid-Skene recalibration with collusion flags, and blind voting.

use crate::harness::{TestEnv, claim_within, count, count_reaches, import_lines, lines_of};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::collections::BTreeSet;
use std::time::Duration;

/// A database with an adaptive coordinator and an API that serves gold on
/// every claim when `gold_always` (and never otherwise), with feedback on.
async fn adaptive_env(gold_always: bool, adjust: impl FnOnce(&mut coordinator::Config)) -> TestEnv {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|c| {
        c.aggregation = "adaptive".into();
        adjust(c);
    })
    .await;
    let rate = if gold_always { 1.0 } else { 0.0 };
    env.start_api(|c| {
        c.gold.start_rate = rate;
        c.gold.end_rate = rate;
        c.gold.feedback = true;
        c.max_leases_per_volunteer = 20;
    })
    .await;
    env
}

fn listing(id: &str, tier: &str) -> Value {
    json!({"listing_id": id, "version": 1, "seller_id": format!("seller-{id}"), "brand": "Aurelia",
           "category": "handbags", "region": "japan", "price": 120.0, "currency": "USD",
           "title": format!("Bag {id}"), "description": "A bag.", "image_urls": ["https://images.example.com/a.jpg"],
           "signals": {}, "seller_risk_tier": tier})
}

async fn add_gold(env: &TestEnv, staff: &str, id: &str, answer: &str) -> String {
    let (status, body) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(staff),
            Some(json!({"listing": listing(id, "standard"), "answer": answer})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().unwrap().to_owned()
}

async fn vote(env: &TestEnv, token: &str, claim: &Value, verdict: &str) -> Value {
    let task = claim["task_id"].as_str().unwrap();
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tasks/{task}/votes"),
            Some(token),
            Some(json!({"lease_token": claim["lease_token"], "verdict": verdict, "reasons": []})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn gold_tasks_look_like_any_task_teach_reliability_and_are_never_decided() {
    let env = adaptive_env(true, |_| {}).await;
    let staff = env.user("gold-staff", Role::Staff).await;
    let gold = add_gold(&env, &staff, "gold-1", "counterfeit").await;
    let (again, problem) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(&staff),
            Some(json!({"listing": listing("gold-1", "standard"), "answer": "genuine"})),
        )
        .await;
    assert_eq!(
        (again, problem["code"].as_str()),
        (409, Some("gold_task_exists"))
    );
    let (bad, problem) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(&staff),
            Some(json!({"listing": listing("gold-2", "standard"), "answer": "unsure"})),
        )
        .await;
    assert_eq!(
        (bad, problem["code"].as_str()),
        (422, Some("validation_failed"))
    );
    // A review task too, to compare the shapes.
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &[listing("review-1", "standard").to_string()]).await;

    let mut answered = Vec::new();
    for (i, verdict) in ["counterfeit", "genuine", "unsure"].iter().enumerate() {
        let token = env.user(&format!("gold-vol-{i}"), Role::Volunteer).await;
        let mut claim = claim_within(&env, &token, Duration::from_secs(10)).await;
        assert_eq!(
            claim["task_id"],
            gold.as_str(),
            "every claim is a gold turn here"
        );
        if i == 0 {
            // Releasing a gold task and claiming again brings the same one back: the
            // gold pool cannot be walked through by skipping.
            let path = format!("/v1/tasks/{gold}/release");
            let body = json!({"lease_token": claim["lease_token"]});
            let (status, _) = env
                .call(Method::POST, &path, Some(&token), Some(body))
                .await;
            assert_eq!(status, 204);
            claim = claim_within(&env, &token, Duration::from_secs(10)).await;
            assert_eq!(claim["task_id"], gold.as_str());
        }
        let body = vote(&env, &token, &claim, verdict).await;
        assert_eq!(body["feedback"]["correct"], *verdict == "counterfeit");
        assert_eq!(body["feedback"]["expected"], "counterfeit");
        answered.push(token);
    }
    // The same volunteer never gets the same gold task twice: their next claim is the review task.
    let review = claim_within(&env, &answered[0], Duration::from_secs(10)).await;
    assert_ne!(review["task_id"], gold.as_str());
    let gold_claim = {
        let token = env.user("gold-vol-shape", Role::Volunteer).await;
        claim_within(&env, &token, Duration::from_secs(10)).await
    };
    assert_eq!(
        keys(&gold_claim),
        keys(&review),
        "a gold claim has the shape of any claim"
    );
    assert_eq!(keys(&gold_claim["listing"]), keys(&review["listing"]));
    let no_feedback = vote(&env, &answered[0], &review, "genuine").await;
    assert!(
        no_feedback.get("feedback").is_none(),
        "review votes get no feedback"
    );

    count_reaches(
        &env.pool,
        "gold answers are accounted",
        "SELECT count(*) FROM votes WHERE accounted_at IS NOT NULL",
        4,
        Duration::from_secs(20),
    )
    .await;
    // Three answers to a gold task asking for one vote are no over-collection.
    let (status, stats) = env
        .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stats["votes_over_collected"], 0, "{stats}");
    let (status, view) = env
        .call(
            Method::GET,
            "/v1/staff/volunteers?limit=200",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let gold_of = |name: &str| {
        view["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["username"] == name)
            .unwrap()["gold"]
            .clone()
    };
    assert_eq!(gold_of("gold-vol-0"), json!({"answered": 1, "correct": 1}));
    assert_eq!(gold_of("gold-vol-1"), json!({"answered": 1, "correct": 0}));
    let (state, decisions, escalations): (String, i64, i64) = sqlx::query_as(
        "SELECT state, (SELECT count(*) FROM decisions WHERE task_id = $1),
                (SELECT count(*) FROM escalations WHERE task_id = $1) FROM tasks WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(&gold).unwrap())
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), decisions, escalations),
        ("open", 0, 0),
        "gold is never decided or escalated"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_failing_gold_stops_counting_is_flagged_and_can_be_reinstated() {
    let env = adaptive_env(true, |_| {}).await;
    let staff = env.user("abuse-staff", Role::Staff).await;
    for i in 0..16 {
        let answer = if i % 2 == 0 { "counterfeit" } else { "genuine" };
        add_gold(&env, &staff, &format!("abuse-gold-{i}"), answer).await;
    }
    let answers: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (uuid::Uuid, String)>("SELECT task_id, answer FROM gold_answers")
            .fetch_all(&env.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(t, a)| (t.to_string(), a))
            .collect();
    let careful = env.user("abuse-careful", Role::Volunteer).await;
    let spammer = env.user("abuse-spammer", Role::Volunteer).await;
    for _ in 0..16 {
        let claim = claim_within(&env, &careful, Duration::from_secs(10)).await;
        let right = answers[claim["task_id"].as_str().unwrap()].clone();
        vote(&env, &careful, &claim, &right).await;
        // The spammer always answers "genuine".
        let claim = claim_within(&env, &spammer, Duration::from_secs(10)).await;
        vote(&env, &spammer, &claim, "genuine").await;
    }
    count_reaches(
        &env.pool,
        "the spammer is stopped",
        "SELECT count(*) FROM volunteer_reliability WHERE NOT counting",
        1,
        Duration::from_secs(20),
    )
    .await;
    let (_, flagged) = env
        .call(
            Method::GET,
            "/v1/staff/volunteers?flagged=true",
            Some(&staff),
            None,
        )
        .await;
    let flagged = flagged["items"].as_array().unwrap();
    assert_eq!(flagged.len(), 1, "only the spammer: {flagged:?}");
    assert_eq!(flagged[0]["username"], "abuse-spammer");
    assert_eq!(flagged[0]["flag"], "low_gold_accuracy");
    assert_eq!(flagged[0]["counting"], false);
    let answered = flagged[0]["gold"]["answered"].as_u64().unwrap();
    assert!(
        answered <= 16,
        "stopped within the gold answers it gave: {answered}"
    );
    let id = flagged[0]["user_id"].as_str().unwrap();
    let (status, reinstated) = env
        .call(
            Method::POST,
            &format!("/v1/staff/volunteers/{id}/reinstate-counting"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200, "{reinstated}");
    assert_eq!(reinstated["counting"], true);
    assert!(reinstated["flag"].is_null());
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM audit_log WHERE action = 'volunteer.reinstate_counting'"
        )
        .await,
        1
    );
    let (_, careful_view) = env
        .call(
            Method::GET,
            "/v1/staff/volunteers?flagged=false",
            Some(&staff),
            None,
        )
        .await;
    let careful_row = careful_view["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["username"] == "abuse-careful")
        .cloned()
        .unwrap();
    assert!(
        careful_row["accuracy"].as_f64().unwrap() > 0.9,
        "{careful_row}"
    );
}

/// Claims the one open review task with each token in turn and votes `verdicts`.
async fn review_votes(env: &TestEnv, tokens: &[String], verdicts: &[&str]) {
    for (token, verdict) in tokens.iter().zip(verdicts) {
        let claim = claim_within(env, token, Duration::from_secs(20)).await;
        vote(env, token, &claim, verdict).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_vote_asks_for_more_votes_and_an_unresolved_task_is_escalated_as_uncertain() {
    let env = adaptive_env(false, |c| {
        c.max_votes = 4;
        c.max_slots = 4;
    })
    .await;
    let staff = env.user("split-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &[listing("split-1", "standard").to_string()]).await;
    let tokens = env.many_volunteers("split", 4).await;
    review_votes(
        &env,
        &tokens[..3],
        &["counterfeit", "counterfeit", "genuine"],
    )
    .await;
    count_reaches(
        &env.pool,
        "a fourth slot is asked for",
        "SELECT votes_required::bigint FROM tasks",
        4,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 0);
    review_votes(&env, &tokens[3..], &["genuine"]).await;
    count_reaches(
        &env.pool,
        "the task is escalated as uncertain",
        "SELECT count(*) FROM escalations WHERE reason = 'uncertain'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let (outcome, posterior): (String, f64) =
        sqlx::query_as("SELECT outcome, posterior FROM decisions")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "uncertain");
    assert!(posterior > 0.05 && posterior < 0.9, "{posterior}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agreement_decides_at_the_minimum_and_repeated_events_never_decide_twice() {
    let env = adaptive_env(false, |_| {}).await;
    let staff = env.user("agree-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(
        &env,
        &[
            listing("agree-1", "standard").to_string(),
            listing("agree-2", "high").to_string(),
        ],
    )
    .await;
    let tokens = env.many_volunteers("agree", 4).await;
    // agree-1: three genuine votes decide genuine at the minimum.
    // agree-2 (a high-risk seller: the lower escalation threshold): three counterfeit votes.
    for token in &tokens[..3] {
        for _ in 0..2 {
            let claim = claim_within(&env, token, Duration::from_secs(20)).await;
            let task = claim["task_id"].as_str().unwrap().to_owned();
            let listing: String =
                sqlx::query_scalar("SELECT listing_id FROM tasks WHERE id = $1::uuid")
                    .bind(&task)
                    .fetch_one(&env.pool)
                    .await
                    .unwrap();
            let verdict = if listing == "agree-1" {
                "genuine"
            } else {
                "counterfeit"
            };
            vote(&env, token, &claim, verdict).await;
        }
    }
    count_reaches(
        &env.pool,
        "both tasks decided",
        "SELECT count(*) FROM decisions",
        2,
        Duration::from_secs(20),
    )
    .await;
    let outcomes: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.listing_id, d.outcome FROM decisions d JOIN tasks t ON t.id = d.task_id ORDER BY 1",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            ("agree-1".into(), "genuine".into()),
            ("agree-2".into(), "counterfeit".into())
        ]
    );
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM escalations WHERE reason = 'counterfeit_posterior'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&env.pool, "SELECT max(votes_required)::bigint FROM tasks").await,
        3
    );
    // Every vote event again, concurrently: still one decision per task.
    let mut config = env.coordinator_config();
    config.aggregation = "adaptive".into();
    let agg = config.aggregation().unwrap();
    let events: Vec<(uuid::Uuid, uuid::Uuid, uuid::Uuid)> =
        sqlx::query_as("SELECT task_id, id, volunteer_id FROM votes")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let mut handles = Vec::new();
    for _ in 0..3 {
        for (task, vote, volunteer) in &events {
            let (pool, agg) = (env.pool.clone(), agg.clone());
            let event = spotcheck_shared::messages::VoteRecorded {
                v: spotcheck_shared::messages::MESSAGE_VERSION,
                task_id: spotcheck_shared::TaskId(*task),
                vote_id: *vote,
                volunteer_id: spotcheck_shared::UserId(*volunteer),
            };
            handles.push(tokio::spawn(async move {
                coordinator::aggregator::on_vote(&pool, &agg, &event)
                    .await
                    .unwrap()
            }));
        }
    }
    for h in handles {
        assert_eq!(
            h.await.unwrap(),
            coordinator::aggregator::Decision::AlreadyDecided
        );
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 2);
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM escalations").await,
        1
    );
    let _ = tokens;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_who_does_not_count_gets_no_review_task_and_staff_outcomes_teach_reliability() {
    let env = adaptive_env(false, |_| {}).await;
    let staff = env.user("weight-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &[listing("weight-1", "high").to_string()]).await;
    let tokens = env.many_volunteers("weight", 4).await;
    let stopped: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE username = 'weight-0'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats, counting, flag)
         VALUES ($1, $2, '{}', false, 'too_fast')",
    )
    .bind(stopped)
    .bind(json!(spotcheck_shared::reliability::Confusion::default()))
    .execute(&env.pool)
    .await
    .unwrap();
    // The review task is on offer, but a volunteer who does not count is
    // served gold only, and there is none.
    let counting = claim_within(&env, &tokens[1], Duration::from_secs(20)).await;
    let (status, _) = env
        .call(Method::POST, "/v1/tasks/claim", Some(&tokens[0]), None)
        .await;
    assert_eq!(
        status, 204,
        "no review task for a volunteer who does not count"
    );
    vote(&env, &tokens[1], &counting, "counterfeit").await;
    review_votes(&env, &tokens[2..], &["counterfeit", "counterfeit"]).await;
    count_reaches(
        &env.pool,
        "escalated",
        "SELECT count(*) FROM escalations",
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        count(&env.pool, "SELECT max(votes_required)::bigint FROM tasks").await,
        3,
        "no slot was added"
    );
    let tally: Value = sqlx::query_scalar("SELECT tally FROM decisions")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(tally["weighing"], 3, "{tally}");
    // Staff confirm: the three voters learn from the outcome.
    let escalation: uuid::Uuid = sqlx::query_scalar("SELECT id FROM escalations")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let (status, _) = env
        .call(
            Method::POST,
            &format!("/v1/staff/escalations/{escalation}/decision"),
            Some(&staff),
            Some(json!({"decision": "confirm"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM votes WHERE scored_at IS NOT NULL"
        )
        .await,
        3
    );
    let learned: Vec<Value> = sqlx::query_scalar(
        "SELECT r.confusion FROM volunteer_reliability r JOIN users u ON u.id = r.volunteer_id
         WHERE u.username LIKE 'weight-%' AND u.username <> 'weight-0'",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(learned.len(), 3);
    for c in learned {
        let c: spotcheck_shared::reliability::Confusion = serde_json::from_value(c).unwrap();
        assert!(c.answers() >= 1.0, "each voter observed the outcome");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recalibration_agrees_with_the_decisions_and_flags_accounts_that_copy_each_other() {
    let env = TestEnv::start().await;
    let staff = env.user("ds-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    // Half the listings counterfeit (Dawid-Skene, like any EM, can be talked into
    // a copying pair's coin when nearly every listing is genuine; the collusion
    // flag is what catches such a pair).
    let market = generate(606, 120);
    assert_eq!(market.len(), 120);
    let lines: Vec<String> = lines_of(&market);
    import_lines(&env, &lines).await;
    let truth: std::collections::HashMap<String, bool> = market
        .iter()
        .enumerate()
        .map(|(i, d)| (d.listing.listing_id.as_str().to_owned(), i % 2 == 0))
        .collect();
    let tasks: Vec<(uuid::Uuid, String)> = sqlx::query_as("SELECT id, listing_id FROM tasks")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    let volunteers: Vec<uuid::Uuid> = (0..8).map(|_| uuid::Uuid::now_v7()).collect();
    for (i, v) in volunteers.iter().enumerate() {
        sqlx::query("INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'volunteer')")
            .bind(v)
            .bind(format!("ds-{i}"))
            .execute(&env.pool)
            .await
            .unwrap();
    }
    // Volunteers 0-5 are right 90% of the time (a fixed pattern); 6 and 7 copy one
    // another's coin flips on every task.
    for (n, (task, listing)) in tasks.iter().enumerate() {
        let t = truth[listing];
        let copied = if (n * 7 + 3) % 10 < 5 {
            "counterfeit"
        } else {
            "genuine"
        };
        for (i, v) in volunteers.iter().enumerate() {
            let verdict = match i {
                6 | 7 => copied,
                _ if (n + i * 3) % 10 == 0 => {
                    if t {
                        "genuine"
                    } else {
                        "counterfeit"
                    }
                }
                _ => {
                    if t {
                        "counterfeit"
                    } else {
                        "genuine"
                    }
                }
            };
            sqlx::query(
                "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
                 VALUES (gen_random_uuid(), $1, $2, $3, '[]', 1)",
            )
            .bind(task)
            .bind(v)
            .bind(verdict)
            .execute(&env.pool)
            .await
            .unwrap();
        }
        let outcome = if t { "counterfeit" } else { "genuine" };
        sqlx::query("INSERT INTO decisions (task_id, outcome, tally) VALUES ($1, $2, '{}')")
            .bind(task)
            .bind(outcome)
            .execute(&env.pool)
            .await
            .unwrap();
    }
    let summary = coordinator::recalibrate::recalibrate(&env.pool, 30)
        .await
        .unwrap()
        .expect("the lock is free");
    assert_eq!(summary.votes, 120 * 8);
    assert_eq!(summary.volunteers, 8);
    assert!(summary.agreement.unwrap() >= 0.99, "{summary:?}");
    assert_eq!(summary.collusion_groups, 1, "{summary:?}");
    let (_, flags) = env
        .call(Method::GET, "/v1/staff/collusion-flags", Some(&staff), None)
        .await;
    let members: BTreeSet<String> = flags["items"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["ds-6".to_string(), "ds-7".to_string()])
    );
    let (_, honest) = env
        .call(
            Method::GET,
            &format!("/v1/staff/volunteers/{}", volunteers[0]),
            Some(&staff),
            None,
        )
        .await;
    let (_, copier) = env
        .call(
            Method::GET,
            &format!("/v1/staff/volunteers/{}", volunteers[6]),
            Some(&staff),
            None,
        )
        .await;
    assert!(
        honest["accuracy"].as_f64().unwrap() > copier["accuracy"].as_f64().unwrap() + 0.2,
        "the EM learns who is reliable: {} vs {}",
        honest["accuracy"],
        copier["accuracy"]
    );
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM recalibrations").await,
        1
    );
}

/// Keys no volunteer-facing answer may carry on an open task (besides a list
/// of `votes`; a count of one's own votes is fine).
const REVEALING: [&str; 8] = [
    "verdict",
    "verdicts",
    "tally",
    "posterior",
    "votes_counted",
    "votes_required",
    "weighing",
    "decision",
];

fn revealing_keys(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                let listed_votes = k == "votes" && (inner.is_array() || inner.is_object());
                if listed_votes || REVEALING.contains(&k.as_str()) {
                    found.push(k.clone());
                }
                revealing_keys(inner, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| revealing_keys(i, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_volunteer_facing_route_reveals_other_votes_or_the_posterior_of_an_open_task() {
    let env = adaptive_env(false, |_| {}).await;
    let staff = env.user("blind-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &[listing("blind-1", "standard").to_string()]).await;
    let others = env.many_volunteers("blind-other", 2).await;
    review_votes(&env, &others, &["counterfeit", "genuine"]).await;
    let secrets: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM votes UNION ALL SELECT volunteer_id::text FROM votes",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let me = env.user("blind-me", Role::Volunteer).await;
    let voter = env.user("blind-voter", Role::Volunteer).await;
    let mut checked = BTreeSet::new();
    for route in worker_api::routes::ROUTES {
        use worker_api::access::Access;
        if !matches!(route.access, Access::Volunteer | Access::SignedIn) {
            continue;
        }
        let key = format!("{} {}", route.method, route.path);
        let answers: Vec<(u16, Value)> = match key.as_str() {
            // Claim, extend and release are checked on one lease, in that order.
            "POST /v1/tasks/{task_id}/extend" | "POST /v1/tasks/{task_id}/release" => {
                assert!(checked.contains(&key), "{key} is checked with the claim");
                continue;
            }
            "POST /v1/tasks/claim" => {
                checked.insert("POST /v1/tasks/{task_id}/extend".to_string());
                checked.insert("POST /v1/tasks/{task_id}/release".to_string());
                let claim = claim_within(&env, &me, Duration::from_secs(20)).await;
                let task = claim["task_id"].as_str().unwrap();
                let body = json!({"lease_token": claim["lease_token"]});
                let extend = env
                    .call(
                        Method::POST,
                        &format!("/v1/tasks/{task}/extend"),
                        Some(&me),
                        Some(body.clone()),
                    )
                    .await;
                let release = env
                    .call(
                        Method::POST,
                        &format!("/v1/tasks/{task}/release"),
                        Some(&me),
                        Some(body),
                    )
                    .await;
                vec![(200, claim), extend, release]
            }
            "POST /v1/tasks/{task_id}/votes" => {
                let claim = claim_within(&env, &voter, Duration::from_secs(20)).await;
                vec![(201, vote(&env, &voter, &claim, "unsure").await)]
            }
            "GET /v1/me" => vec![env.call(Method::GET, "/v1/me", Some(&me), None).await],
            other => panic!("{other} is volunteer-facing: add it to the blind-voting check"),
        };
        for (status, body) in answers {
            assert!(status < 300, "{key} answered {status}: {body}");
            let mut found = Vec::new();
            revealing_keys(&body, &mut found);
            assert!(found.is_empty(), "{key} reveals {found:?}: {body}");
            let text = body.to_string();
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{key} reveals another volunteer's vote: {body}"
                );
            }
        }
        checked.insert(key);
    }
    assert!(
        checked.len() >= 5,
        "every volunteer route was checked: {checked:?}"
    );
    let open: i64 = count(&env.pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await;
    assert_eq!(
        open, 1,
        "the task was still open while its votes were hidden"
    );
}
