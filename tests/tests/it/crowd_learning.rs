//! Crowd learning through the real services: the gold rate follows what is
//! still unknown about each volunteer (from their cached standing), a decided
//! audit task teaches its voters by agreement exactly once, and task
//! difficulty asks for more votes where careful volunteers split.

use crate::harness::{TestEnv, claim_within, count, count_reaches, import_lines};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::abuse::{AbusePolicy, VolunteerStats};
use spotcheck_shared::agreement::{AgreementParams, AgreementVote, agreement_updates};
use spotcheck_shared::decision::{Judgement, TaskFacts, WeighedVote};
use spotcheck_shared::gold::{is_counterfeit_gold, is_gold_turn};
use spotcheck_shared::gold_rate::GoldPolicy;
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use spotcheck_shared::{Outcome, Role, Verdict};
use std::time::Duration;
use uuid::Uuid;

/// A fixed gold key and fixed volunteer ids make every gold draw of a run the
/// same as the last one's.
const GOLD_KEY: &str = "crowd-learning-gold-key-fixed-so-every-draw-repeats";

fn listing(id: &str) -> Value {
    json!({"listing_id": id, "version": 1, "seller_id": format!("seller-{id}"), "brand": "Aurelia",
           "category": "handbags", "region": "japan", "price": 120.0, "currency": "USD",
           "title": format!("Bag {id}"), "description": "A bag.",
           "image_urls": ["https://images.example.com/a.jpg"], "signals": {},
           "seller_risk_tier": "standard"})
}

/// Volunteers with the given ids (no password), and their access tokens.
async fn volunteers(env: &TestEnv, ids: &[Uuid]) -> Vec<String> {
    let names: Vec<String> = ids.iter().map(|id| format!("crowd-{id}")).collect();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role)
         SELECT id, name, 'x', 'volunteer' FROM unnest($1::uuid[], $2::text[]) AS u(id, name)",
    )
    .bind(ids)
    .bind(&names)
    .execute(&env.pool)
    .await
    .expect("insert volunteers");
    let keys = worker_api::auth::keys::KeySet::from_pem_file(env.key_file.as_ref()).expect("key");
    let issuer =
        worker_api::auth::tokens::TokenIssuer::new(keys, "spotcheck", "spotcheck-api", 900);
    let now = chrono::Utc::now().timestamp();
    ids.iter()
        .map(|id| {
            issuer
                .issue(spotcheck_shared::UserId(*id), Role::Volunteer, now)
                .expect("token")
        })
        .collect()
}

/// Stores a volunteer's reliability row as the coordinator would have left it.
async fn seed_reliability(env: &TestEnv, id: Uuid, confusion: &Confusion, stats: &VolunteerStats) {
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(serde_json::to_value(confusion).unwrap())
    .bind(serde_json::to_value(stats).unwrap())
    .execute(&env.pool)
    .await
    .expect("a reliability row");
}

/// A careful volunteer measured on `n` gold answers of each class, right on
/// all but a few.
fn measured_careful(n: u32) -> (Confusion, VolunteerStats) {
    let mut confusion = Confusion::prior(&ReliabilityPrior::default());
    let mut stats = VolunteerStats::default();
    for i in 0..n {
        let miss = i % 10 == 9;
        let genuine = if miss && i % 20 == 19 {
            Verdict::Counterfeit
        } else {
            Verdict::Genuine
        };
        let counterfeit = if miss {
            Verdict::Genuine
        } else {
            Verdict::Counterfeit
        };
        for (truth, verdict) in [(false, genuine), (true, counterfeit)] {
            confusion.observe(truth, verdict, 1.0);
            stats.record_gold_answer(truth, verdict);
        }
    }
    (confusion, stats)
}

async fn add_gold(env: &TestEnv, staff: &str, id: &str, answer: &str) -> String {
    let (status, body) = env
        .call(
            Method::POST,
            "/v1/staff/gold-tasks",
            Some(staff),
            Some(json!({"listing": listing(id), "answer": answer})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["task_id"].as_str().unwrap().to_owned()
}

async fn vote(env: &TestEnv, token: &str, claim: &Value, verdict: &str) {
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
}

async fn listing_of(env: &TestEnv, claim: &Value) -> String {
    sqlx::query_scalar("SELECT listing_id FROM tasks WHERE id = $1::uuid")
        .bind(claim["task_id"].as_str().unwrap())
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// The agreement weight and the whole estimate of each volunteer, by id.
async fn estimates(env: &TestEnv, ids: &[Uuid]) -> Vec<(f64, Value)> {
    sqlx::query_as(
        "SELECT coalesce((confusion->>'agreement')::float8, 0), confusion
         FROM volunteer_reliability WHERE volunteer_id = ANY($1) ORDER BY volunteer_id",
    )
    .bind(ids)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_converged_careful_volunteer_is_served_far_less_gold_than_a_newcomer_but_never_none() {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|c| c.aggregation = "adaptive".into())
        .await;
    env.start_api(|c| {
        c.gold.key = GOLD_KEY.into();
    })
    .await;
    let staff = env.user("crowd-gold-staff", Role::Staff).await;
    let counterfeit_gold = add_gold(&env, &staff, "crowd-gold-c", "counterfeit").await;
    let genuine_gold = add_gold(&env, &staff, "crowd-gold-g", "genuine").await;
    let (newcomer, careful) = (Uuid::from_u128(0x5eed_0001), Uuid::from_u128(0x5eed_0002));
    let tokens = volunteers(&env, &[newcomer, careful]).await;
    let (converged, converged_stats) = measured_careful(30);
    seed_reliability(&env, careful, &converged, &converged_stats).await;

    // What the claim route must do, from the shared rule and the same key.
    let policy = GoldPolicy::default();
    let (abuse, prior) = (AbusePolicy::learned(), ReliabilityPrior::default());
    let fresh = Confusion::prior(&prior);
    let newcomer_rate = policy.rate(&fresh, &VolunteerStats::default(), &abuse, &prior);
    let careful_rate = policy.rate(&converged, &converged_stats, &abuse, &prior);
    assert!(
        newcomer_rate > 0.45,
        "a newcomer is all unknown: {newcomer_rate}"
    );
    assert_eq!(
        careful_rate, policy.floor,
        "the careful estimate has settled"
    );

    let mut redis = redis::Client::open(worker_api::Config::defaults().services.redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    const CLAIMS: u64 = 400;
    let mut served = Vec::new();
    for ((id, token), (confusion, rate)) in [newcomer, careful]
        .into_iter()
        .zip(&tokens)
        .zip([(fresh, newcomer_rate), (converged, careful_rate)])
    {
        let mut gold = 0;
        for answers in 0..CLAIMS {
            let (status, claim) = env
                .call(Method::POST, "/v1/tasks/claim", Some(token), None)
                .await;
            let turn = is_gold_turn(GOLD_KEY.as_bytes(), id.as_bytes(), answers, rate);
            // No review task exists: a claim is a gold task or nothing.
            assert_eq!(status == 200, turn, "claim {answers} of {id}: {claim}");
            if turn {
                gold += 1;
                let share = policy.counterfeit_share(&confusion);
                let class = is_counterfeit_gold(GOLD_KEY.as_bytes(), id.as_bytes(), answers, share);
                let want = if class {
                    &counterfeit_gold
                } else {
                    &genuine_gold
                };
                assert_eq!(claim["task_id"], want.as_str(), "the class drawn");
                let path = format!("/v1/tasks/{}/release", claim["task_id"].as_str().unwrap());
                let body = json!({"lease_token": claim["lease_token"]});
                let (status, _) = env.call(Method::POST, &path, Some(token), Some(body)).await;
                assert_eq!(status, 204);
            }
            // The next claim counts one more answer, as a vote's would (the
            // vote script adds it to the cached standing the same way).
            let key = format!("{{{}}}:standing:{id}", env.id);
            let _: i64 = redis::cmd("HINCRBY")
                .arg(&key)
                .arg("a")
                .arg(1)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        served.push(gold);
    }
    let (newcomer_gold, careful_gold) = (served[0], served[1]);
    assert!(careful_gold > 0, "the floor keeps measuring: {served:?}");
    assert!(
        newcomer_gold > 10 * careful_gold,
        "a newcomer meets gold far more often: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decided_audit_task_teaches_its_voters_by_agreement_once_however_often_its_votes_come_again()
 {
    let mut env = TestEnv::db_only().await;
    // Every task an audit task, so this one is.
    let adjust = |c: &mut coordinator::Config| {
        c.aggregation = "adaptive".into();
        c.audit_share = 1.0;
    };
    env.start_coordinator(adjust).await;
    env.start_api(|c| {
        c.gold.start_rate = 0.0;
        c.gold.end_rate = 0.0;
    })
    .await;
    let ids: Vec<Uuid> = (1..=3).map(|i| Uuid::from_u128(0xa0d1_0000 + i)).collect();
    let tokens = volunteers(&env, &ids).await;
    let (careful, stats) = measured_careful(20);
    for id in &ids {
        seed_reliability(&env, *id, &careful, &stats).await;
    }
    let staff = env.user("crowd-audit-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &[listing("crowd-audit-1").to_string()]).await;
    for token in &tokens {
        let claim = claim_within(&env, token, Duration::from_secs(20)).await;
        vote(&env, token, &claim, "genuine").await;
    }
    count_reaches(
        &env.pool,
        "the audit task decided",
        "SELECT count(*) FROM decisions",
        1,
        Duration::from_secs(20),
    )
    .await;

    // Each voter learned what the shared rule says from the others' votes.
    let mut config = env.coordinator_config();
    adjust(&mut config);
    let prior = config.prior_counterfeit;
    let agg = config.aggregation().unwrap();
    let params = AgreementParams {
        audit_share: 1.0,
        ..AgreementParams::default()
    };
    let votes: Vec<AgreementVote<Uuid>> = ids
        .iter()
        .map(|id| AgreementVote {
            voter: *id,
            verdict: Verdict::Genuine,
            confusion: careful,
        })
        .collect();
    let want: Vec<f64> = agreement_updates(prior, &votes, &params)
        .iter()
        .map(|u| u.weight)
        .collect();
    assert_eq!(want.len(), 3);
    let taught = estimates(&env, &ids).await;
    let weights: Vec<f64> = taught.iter().map(|(w, _)| *w).collect();
    assert_eq!(weights, want);
    assert!(weights.iter().all(|w| *w > 0.0), "{weights:?}");

    // Every vote event again, concurrently: the task is decided, nothing more is learned.
    let events: Vec<(Uuid, Uuid, Uuid)> =
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
    assert_eq!(estimates(&env, &ids).await, taught);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_on_which_careful_volunteers_split_asks_for_more_votes_than_an_easy_one() {
    let mut env = TestEnv::db_only().await;
    let adjust = |c: &mut coordinator::Config| {
        c.aggregation = "adaptive".into();
        // No audit tasks: nothing learned between the two decisions.
        c.audit_share = 0.0;
    };
    env.start_coordinator(adjust).await;
    env.start_api(|c| {
        c.gold.start_rate = 0.0;
        c.gold.end_rate = 0.0;
    })
    .await;
    let ids: Vec<Uuid> = (1..=3).map(|i| Uuid::from_u128(0xd1ff_0000 + i)).collect();
    let tokens = volunteers(&env, &ids).await;
    // Careful, and surer of a "counterfeit" than of a "genuine".
    let careful = Confusion {
        counts: [[980.0, 19.0, 1.0], [49.0, 950.0, 1.0]],
        answers: 2000.0,
        agreement: 0.0,
    };
    for id in &ids {
        seed_reliability(&env, *id, &careful, &VolunteerStats::default()).await;
    }

    // Two "genuine" and one "counterfeit" would decide genuine by the plain
    // posterior; the split makes the task harder, so it asks for one more.
    let mut config = env.coordinator_config();
    adjust(&mut config);
    let agg = config.aggregation().unwrap();
    let weighed = |verdicts: &[Verdict]| -> Vec<WeighedVote> {
        verdicts
            .iter()
            .map(|verdict| WeighedVote {
                verdict: *verdict,
                confusion: Some(careful),
            })
            .collect()
    };
    let facts = TaskFacts {
        slots: 3,
        seller_risk_tier: "standard",
        price: 120.0,
    };
    use Verdict::{Counterfeit, Genuine};
    let split = weighed(&[Genuine, Genuine, Counterfeit]);
    assert!(matches!(
        agg.rule.judge(&split, facts),
        Judgement::Decided {
            outcome: Outcome::Genuine,
            ..
        }
    ));
    assert!(matches!(
        agg.rule.judge_with(&split, facts, &agg.difficulty),
        Judgement::MoreVotes { .. }
    ));

    let staff = env.user("crowd-split-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(
        &env,
        &[
            listing("crowd-easy").to_string(),
            listing("crowd-split").to_string(),
        ],
    )
    .await;
    for (i, token) in tokens.iter().enumerate() {
        for _ in 0..2 {
            let claim = claim_within(&env, token, Duration::from_secs(20)).await;
            let verdict = if listing_of(&env, &claim).await == "crowd-split" && i == 2 {
                "counterfeit"
            } else {
                "genuine"
            };
            vote(&env, token, &claim, verdict).await;
        }
    }
    count_reaches(
        &env.pool,
        "the split task asked for a fourth vote",
        "SELECT votes_required::bigint FROM tasks WHERE listing_id = 'crowd-split'",
        4,
        Duration::from_secs(20),
    )
    .await;
    count_reaches(
        &env.pool,
        "the easy task decided",
        "SELECT count(*) FROM decisions d JOIN tasks t ON t.id = d.task_id
         WHERE t.listing_id = 'crowd-easy' AND d.outcome = 'genuine'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let required: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT listing_id, votes_required, state FROM tasks ORDER BY listing_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(
        required,
        [
            ("crowd-easy".into(), 3, "decided".into()),
            ("crowd-split".into(), 4, "open".into())
        ]
    );
}
