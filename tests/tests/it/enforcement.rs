//! Enforcement end to end: a confirmed escalation becomes a case, the seller
//! sees its evidence and may refute in time, the refutation window is swept
//! by two coordinators with an injected clock, the penalty ladder issues its
//! enforcement events exactly once (read off the exchange), repeat offenders
//! climb the ladder, strikes age out, lifting publishes `lifted`, and every
//! step is in the audit trail.

use crate::harness::{TestEnv, import_lines, lines_of, seed_escalation, wait_until};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const DAY: i64 = 86_400;

/// An environment whose coordinators (two) and worker-api share a clock file.
struct World {
    env: TestEnv,
    clock: PathBuf,
    staff: String,
    other_staff: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.clock);
    }
}

impl World {
    async fn start() -> Self {
        let mut env = TestEnv::db_only().await;
        let clock = std::env::temp_dir().join(format!("{}-clock", env.id));
        std::fs::write(&clock, "0").expect("write the clock file");
        for _ in 0..2 {
            start_coordinator(&mut env, &clock).await;
        }
        start_api(&mut env, &clock).await;
        let events = Arc::new(Mutex::new(Vec::new()));
        consume_events(&env, events.clone()).await;
        let staff = env.user("staff-a", Role::Staff).await;
        let other_staff = env.user("staff-b", Role::Staff).await;
        World {
            env,
            clock,
            staff,
            other_staff,
            events,
        }
    }

    fn advance(&self, secs: i64) {
        let now: i64 = std::fs::read_to_string(&self.clock)
            .expect("read the clock")
            .trim()
            .parse()
            .expect("an offset");
        std::fs::write(&self.clock, (now + secs).to_string()).expect("move the clock");
    }

    /// A seller account for `seller_id`; returns its token.
    async fn seller(&self, username: &str, seller_id: &str) -> String {
        worker_api::users::create_user(
            &self.env.pool,
            username,
            crate::harness::PASSWORD.to_owned(),
            Role::Volunteer,
        )
        .await
        .expect("create a user");
        sqlx::query("UPDATE users SET role = 'seller', seller_id = $2 WHERE username = $1")
            .bind(username)
            .bind(seller_id)
            .execute(&self.env.pool)
            .await
            .expect("make it a seller account");
        self.env.login(username).await
    }

    /// An open escalation of a listing of `seller_id`, with two counterfeit
    /// votes (reasons `logo` and `price`) by two volunteers; returns its id and
    /// the volunteers' ids.
    async fn escalation(&self, seller_id: &str) -> (Uuid, Vec<Uuid>) {
        let listing = format!("L-{}", Uuid::new_v4().simple());
        let title = "Acme bag <script>x</script>";
        seed_escalation(
            &self.env.pool,
            &listing,
            seller_id,
            title,
            json!([]),
            &["logo", "price"],
        )
        .await
    }

    /// Confirms an escalation as `staff`; returns the case id.
    async fn confirm(&self, staff: &str, escalation: Uuid) -> Uuid {
        let (status, body) = self
            .env
            .call(
                Method::POST,
                &format!("/v1/staff/escalations/{escalation}/decision"),
                Some(staff),
                Some(json!({"decision": "confirm", "note": "fake logo"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["case_id"]
            .as_str()
            .expect("a case id")
            .parse()
            .expect("a uuid")
    }

    async fn case(&self, id: Uuid) -> Value {
        let (status, body) = self
            .env
            .call(
                Method::GET,
                &format!("/v1/staff/cases/{id}"),
                Some(&self.staff),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn wait_for_state(&self, id: Uuid, state: &str) {
        let pool = self.env.pool.clone();
        wait_until(
            &format!("case {id} {state}"),
            Duration::from_secs(20),
            || {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar::<_, String>("SELECT state FROM cases WHERE id = $1")
                        .bind(id)
                        .fetch_one(&pool)
                        .await
                        .is_ok_and(|s| s == state)
                }
            },
        )
        .await;
    }

    /// The events published for a case so far.
    fn events_of(&self, case: Uuid) -> Vec<Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| e["case_id"] == json!(case))
            .cloned()
            .collect()
    }

    async fn wait_for_events(&self, case: Uuid, n: usize) -> Vec<Value> {
        wait_until(
            &format!("{n} enforcement events of {case}"),
            Duration::from_secs(20),
            || async { self.events_of(case).len() >= n },
        )
        .await;
        self.events_of(case)
    }
}

/// A coordinator on the shared clock, sweeping deadlines often.
async fn start_coordinator(env: &mut TestEnv, clock: &std::path::Path) {
    let clock = clock.to_path_buf();
    env.start_coordinator(move |config| {
        config.services.clock_offset_file = Some(clock);
        config.deadline_sweep_ms = 100;
    })
    .await;
}

/// worker-api on the shared clock (which is moved only outside production).
async fn start_api(env: &mut TestEnv, clock: &std::path::Path) {
    let clock = clock.to_path_buf();
    env.start_api(move |config| {
        config.services.env = "development".into();
        config.services.clock_offset_file = Some(clock);
    })
    .await;
}

/// Binds a queue of the test's own to the enforcement exchange, as the
/// marketplace would, and collects every event it receives.
async fn consume_events(env: &TestEnv, into: Arc<Mutex<Vec<Value>>>) {
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "enforcement-test")
        .await
        .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    let queue = format!("{}.marketplace", env.id);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare the marketplace queue");
    channel
        .queue_bind(
            queue.as_str().into(),
            env.names().enforcement_exchange().as_str().into(),
            "enforcement.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the marketplace queue");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "marketplace".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    tokio::spawn(async move {
        let _conn = conn;
        while let Some(Ok(delivery)) = consumer.next().await {
            let mut event: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            event["routing_key"] = json!(delivery.routing_key.as_str());
            into.lock().expect("events").push(event);
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
    });
}

fn kinds(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unrefuted_case_is_enforced_once_by_two_coordinators_and_a_late_refutation_is_refused() {
    let mut w = World::start().await;
    let seller = w.seller("seller-one", "S-1").await;
    let (escalation, voters) = w.escalation("S-1").await;
    let case = w.confirm(&w.staff, escalation).await;
    // Confirming again answers as before, with the same case.
    assert_eq!(w.confirm(&w.staff, escalation).await, case);

    // The seller sees the case and its evidence bundle, never who voted or how.
    let (status, mine) = w
        .env
        .call(Method::GET, "/v1/seller/cases", Some(&seller), None)
        .await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1));
    let (status, one) = w
        .env
        .call(
            Method::GET,
            &format!("/v1/seller/cases/{case}"),
            Some(&seller),
            None,
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["state"], "notified");
    assert_eq!(one["evidence"]["reasons"], json!({"logo": 1, "price": 1}));
    assert_eq!(one["evidence"]["staff_note"], "fake logo");
    for body in [&mine, &one] {
        let text = body.to_string();
        for voter in &voters {
            assert!(
                !text.contains(&voter.to_string()),
                "a voter's id reached the seller"
            );
        }
        assert!(
            !text.contains("volunteer") && !text.contains("\"votes\""),
            "{text}"
        );
    }

    // The window runs out: both coordinators sweep; the default ladder's first
    // strike is issued once, one event per penalty, each with its own id.
    w.advance(3 * DAY + 60);
    w.wait_for_state(case, "enforced").await;
    let events = w.wait_for_events(case, 3).await;
    assert_eq!(
        kinds(&events),
        HashSet::from(
            ["delist_listing", "reimburse_buyers", "limit_new_listings"].map(String::from)
        )
    );
    for e in &events {
        assert_eq!(
            e["routing_key"],
            format!("enforcement.{}", e["kind"].as_str().unwrap())
        );
        assert_eq!(e["seller_id"], "S-1");
    }
    let ids: HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");

    // A refutation after the deadline is refused with its own code.
    let (status, refused) = w
        .env
        .call(
            Method::POST,
            &format!("/v1/seller/cases/{case}/refutation"),
            Some(&seller),
            Some(json!({"text": "It is genuine", "evidence_urls": []})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "refutation_window_closed");

    // Restart one coordinator, then enforce a second seller's case: by the time
    // its events arrive, the first case has still issued exactly three.
    // (worker-api was started last: it goes down and comes back too.)
    w.env.stop_latest();
    w.env.stop_latest();
    start_coordinator(&mut w.env, &w.clock).await;
    start_api(&mut w.env, &w.clock).await;
    let (second_escalation, _) = w.escalation("S-2").await;
    let second = w.confirm(&w.staff, second_escalation).await;
    w.advance(3 * DAY + 60);
    w.wait_for_events(second, 3).await;
    assert_eq!(
        w.events_of(case).len(),
        3,
        "the first case's events came once"
    );
    let penalties: i64 = sqlx::query_scalar("SELECT count(*) FROM penalties WHERE case_id = $1")
        .bind(case)
        .fetch_one(&w.env.pool)
        .await
        .expect("count");
    assert_eq!(penalties, 3);

    // The seller sees its penalties in force, with end dates.
    let (status, force) = w
        .env
        .call(Method::GET, "/v1/seller/penalties", Some(&seller), None)
        .await;
    assert_eq!(status, 200, "{force}");
    let items = force["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .any(|p| p["kind"] == "limit_new_listings" && p["until"].is_string())
    );

    // Another seller cannot see this case; other roles cannot use seller routes.
    let stranger = w.seller("seller-two", "S-2").await;
    let (status, _) = w
        .env
        .call(
            Method::GET,
            &format!("/v1/seller/cases/{case}"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .env
        .call(Method::GET, "/v1/seller/cases", Some(&w.staff), None)
        .await;
    assert_eq!(status, 403);

    // The history of the case is its audit trail: confirmed (opening it),
    // expired, enforced, and the penalties issued.
    let detail = w.case(case).await;
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "escalation.decide",
            "case.expired",
            "case.enforced",
            "penalties.issue"
        ]
    );
    assert_eq!(detail["penalties"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refutation_stops_the_clock_and_is_decided_exclusively_by_another_staff_member() {
    let w = World::start().await;
    let seller = w.seller("seller-three", "S-3").await;
    let (escalation, voters) = w.escalation("S-3").await;
    let case = w.confirm(&w.staff, escalation).await;
    let path = format!("/v1/seller/cases/{case}/refutation");
    for bad in [
        json!({"text": "   ", "evidence_urls": []}),
        json!({"text": "ok", "evidence_urls": ["javascript:alert(1)"]}),
        json!({"text": "x".repeat(9000), "evidence_urls": []}),
    ] {
        let (status, body) = w
            .env
            .call(Method::POST, &path, Some(&seller), Some(bad))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "validation_failed");
    }
    let refutation =
        json!({"text": "Invoice attached", "evidence_urls": ["https://example.com/invoice.pdf"]});
    let (status, body) = w
        .env
        .call(Method::POST, &path, Some(&seller), Some(refutation.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["state"], "refuted");
    let (status, again) = w
        .env
        .call(Method::POST, &path, Some(&seller), Some(refutation))
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_refuted"))
    );

    // The clock passes the deadline: a refuted case does not expire. A second
    // case, enforced meanwhile, shows the sweep ran.
    w.advance(3 * DAY + 60);
    let (other, _) = w.escalation("S-4").await;
    let other = w.confirm(&w.staff, other).await;
    w.advance(3 * DAY + 60);
    w.wait_for_state(other, "enforced").await;
    assert_eq!(w.case(case).await["state"], "refuted");

    // The staff member who confirmed does not decide the refutation.
    let decide = format!("/v1/staff/cases/{case}/refutation-decision");
    let (status, body) = w
        .env
        .call(
            Method::POST,
            &decide,
            Some(&w.staff),
            Some(json!({"decision": "reject"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("separation_of_duties"))
    );

    // Exclusive review: B takes it; A sees who holds it.
    let review = format!("/v1/staff/cases/{case}/review");
    let (status, held) = w
        .env
        .call(Method::POST, &review, Some(&w.other_staff), None)
        .await;
    assert_eq!(status, 200, "{held}");
    let holder = held["reviewer"].clone();
    let (status, refused) = w
        .env
        .call(Method::POST, &review, Some(&w.staff), None)
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("held_by_another"))
    );
    assert_eq!(refused["reviewer"], holder);

    // B upholds it: closed without penalty, and the voters relearn the listing as genuine.
    let before: Vec<Value> = sqlx::query_scalar(
        "SELECT confusion FROM volunteer_reliability WHERE volunteer_id = ANY($1) ORDER BY volunteer_id",
    )
    .bind(&voters)
    .fetch_all(&w.env.pool)
    .await
    .expect("reliability");
    let (status, upheld) = w
        .env
        .call(
            Method::POST,
            &decide,
            Some(&w.other_staff),
            Some(json!({"decision": "uphold", "note": "invoice checks out"})),
        )
        .await;
    assert_eq!(status, 200, "{upheld}");
    assert_eq!(upheld["state"], "upheld");
    assert!(
        w.events_of(case).is_empty(),
        "an upheld refutation issues no penalty"
    );
    let after: Vec<Value> = sqlx::query_scalar(
        "SELECT confusion FROM volunteer_reliability WHERE volunteer_id = ANY($1) ORDER BY volunteer_id",
    )
    .bind(&voters)
    .fetch_all(&w.env.pool)
    .await
    .expect("reliability");
    assert_eq!(before.len(), 2);
    assert_ne!(
        before, after,
        "the voters' reliability learned the correction"
    );
    // Deciding again is refused: the case is closed.
    let (status, body) = w
        .env
        .call(
            Method::POST,
            &decide,
            Some(&w.other_staff),
            Some(json!({"decision": "reject"})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("case_state")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeat_offenders_climb_the_ladder_strikes_age_out_and_lifting_publishes_lifted() {
    let w = World::start().await;
    let ladder = json!({"strike_window_days": 30, "strikes_expire_days": 60, "steps": [
        {"strike": 1, "penalties": [{"kind": "delist_listing"}]},
        {"strike": 2, "penalties": [{"kind": "delist_listing"}, {"kind": "limit_new_listings", "days": 10}]},
        {"strike": 3, "penalties": [{"kind": "close_storefront"}, {"kind": "permanent_ban"}]}]});
    let (status, body) = w
        .env
        .call(
            Method::PUT,
            "/v1/staff/penalty-ladder",
            Some(&w.staff),
            Some(ladder.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, bad) = w
        .env
        .call(
            Method::PUT,
            "/v1/staff/penalty-ladder",
            Some(&w.staff),
            Some(json!({"strike_window_days": 30, "strikes_expire_days": 60,
                        "steps": [{"strike": 2, "penalties": [{"kind": "delist_listing"}]}]})),
        )
        .await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (422, Some("invalid_ladder"))
    );

    let mut by_strike: HashMap<i64, HashSet<String>> = HashMap::new();
    for strike in 1..=3 {
        let (escalation, _) = w.escalation("S-9").await;
        let case = w.confirm(&w.staff, escalation).await;
        w.advance(3 * DAY + 60);
        w.wait_for_state(case, "enforced").await;
        let expected = [1, 2, 2][strike as usize - 1];
        let events = w.wait_for_events(case, expected).await;
        by_strike.insert(strike, kinds(&events));
        assert_eq!(w.case(case).await["strike"], json!(strike));
    }
    assert_eq!(by_strike[&1], HashSet::from(["delist_listing".to_owned()]));
    assert_eq!(
        by_strike[&2],
        HashSet::from(["delist_listing", "limit_new_listings"].map(String::from))
    );
    assert_eq!(
        by_strike[&3],
        HashSet::from(["close_storefront", "permanent_ban"].map(String::from))
    );
    let (status, record) = w
        .env
        .call(Method::GET, "/v1/staff/sellers/S-9", Some(&w.staff), None)
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["banned"], true);
    assert_eq!(record["storefront_status"], "closed");
    assert_eq!(record["risk_tier"]["derived"], "critical");
    assert_eq!(record["live_strikes"], 3);
    // The sampler's tier for the seller's listings follows.
    let tiers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT seller_risk_tier FROM listings WHERE seller_id = 'S-9'",
    )
    .fetch_all(&w.env.pool)
    .await
    .expect("tiers");
    assert_eq!(tiers, ["critical"]);

    // The feed's new listings of the seller come in at its tier, marked as a
    // banned seller's; a listing a complaint boosted keeps its signal when the
    // feed sends a newer version without it.
    let mut fresh = generate(91, 2);
    for d in &mut fresh {
        d.listing.seller_id = "S-9".into();
        d.listing.seller_risk_tier = Some("low".into());
    }
    let boosted = fresh[1].listing.listing_id.as_str().to_owned();
    import_lines(&w.env, &lines_of(&fresh[..1])).await;
    import_lines(&w.env, &lines_of(&fresh[1..])).await;
    sqlx::query("UPDATE listings SET signals = signals || '{\"brand_complaint\": true}' WHERE listing_id = $1")
        .bind(&boosted)
        .execute(&w.env.pool)
        .await
        .expect("boost");
    fresh[1].listing.version += 1;
    import_lines(&w.env, &lines_of(&fresh[1..])).await;
    let stored: Vec<(String, Value)> = sqlx::query_as(
        "SELECT seller_risk_tier, signals FROM listings WHERE listing_id = ANY($1) ORDER BY listing_id = $2",
    )
    .bind(fresh.iter().map(|d| d.listing.listing_id.as_str().to_owned()).collect::<Vec<_>>())
    .bind(&boosted)
    .fetch_all(&w.env.pool)
    .await
    .expect("stored listings");
    assert_eq!(stored.len(), 2);
    for (tier, signals) in &stored {
        assert_eq!(tier, "critical");
        assert_eq!(signals["banned_seller"], true, "{signals}");
    }
    assert_eq!(stored[1].1["brand_complaint"], true, "{}", stored[1].1);

    // Lifting the ban publishes `lifted` and gives the storefront back its status.
    let ban = record["penalties"]
        .as_array()
        .expect("penalties")
        .iter()
        .find(|p| p["kind"] == "permanent_ban")
        .expect("a ban")["penalty_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let lift = format!("/v1/staff/penalties/{ban}/lift");
    let (status, lifted) = w
        .env
        .call(
            Method::POST,
            &lift,
            Some(&w.staff),
            Some(json!({"reason": "appeal granted"})),
        )
        .await;
    assert_eq!(status, 200, "{lifted}");
    wait_until("a lifted event", Duration::from_secs(20), || async {
        w.events
            .lock()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "lifted" && e["penalty_id"] == json!(ban))
    })
    .await;
    let (status, again) = w
        .env
        .call(
            Method::POST,
            &lift,
            Some(&w.staff),
            Some(json!({"reason": "twice"})),
        )
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("penalty_already_lifted"))
    );
    let (_, record) = w
        .env
        .call(Method::GET, "/v1/staff/sellers/S-9", Some(&w.staff), None)
        .await;
    assert_eq!(record["banned"], false);

    // Strikes age out: past the expiry the tier comes back down by itself.
    w.advance(61 * DAY);
    let pool = w.env.pool.clone();
    wait_until("strikes aged out", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT derived_tier FROM sellers WHERE seller_id = 'S-9'",
            )
            .fetch_one(&pool)
            .await
            .is_ok_and(|t| t == "standard")
        }
    })
    .await;
    // An override with a reason wins over the derived tier.
    let (status, set) = w
        .env
        .call(
            Method::PUT,
            "/v1/staff/sellers/S-9/risk-tier",
            Some(&w.staff),
            Some(json!({"tier": "high", "reason": "ring investigation"})),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["risk_tier"]["effective"], "high");
    assert_eq!(set["live_strikes"], 0);

    // The audit trail pages newest first, filters by action and by automatic actor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/staff/audit?action=case.&limit=4&cursor={c}"),
            None => "/v1/staff/audit?action=case.&limit=4".to_owned(),
        };
        let (status, page) = w.env.call(Method::GET, &path, Some(&w.staff), None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_i64().expect("an id"));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // Three cases: expired and enforced each.
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(seen.windows(2).all(|p| p[0] > p[1]), "newest first");
    let (_, system) = w
        .env
        .call(
            Method::GET,
            "/v1/staff/audit?actor=system&action=penalties.",
            Some(&w.staff),
            None,
        )
        .await;
    assert_eq!(system["items"].as_array().map(Vec::len), Some(3));
    let (status, body) = w
        .env
        .call(
            Method::GET,
            "/v1/staff/audit?actor=nobody",
            Some(&w.staff),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed"))
    );
}

/// Audit rows written by the user behind `token`.
async fn rows_by(w: &World, token: &str) -> i64 {
    let (_, me) = w.env.call(Method::GET, "/v1/me", Some(token), None).await;
    let id: Uuid = me["user_id"]
        .as_str()
        .expect("a user id")
        .parse()
        .expect("a uuid");
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE actor_id = $1")
        .bind(id)
        .fetch_one(&w.env.pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_state_changing_route_leaves_exactly_one_audit_row_by_its_caller() {
    let w = World::start().await;
    let seller = w.seller("seller-audit", "S-A").await;
    let (escalation, _) = w.escalation("S-A").await;
    let post = |path: String, token: String, body: Option<Value>| {
        let env = &w.env;
        async move { env.call(Method::POST, &path, Some(&token), body).await }
    };
    let put = |path: &'static str, token: String, body: Value| {
        let env = &w.env;
        async move { env.call(Method::PUT, path, Some(&token), Some(body)).await }
    };
    // (route, who, status) in order, each checked for one new row by its caller.
    let staff = w.staff.clone();
    let other = w.other_staff.clone();
    let before = rows_by(&w, &staff).await;
    let (status, _) = post(
        format!("/v1/staff/escalations/{escalation}/review"),
        staff.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rows_by(&w, &staff).await, before + 1, "escalation review");
    let case = w.confirm(&staff, escalation).await;
    assert_eq!(
        rows_by(&w, &staff).await,
        before + 2,
        "escalation decision and its case"
    );
    w.confirm(&staff, escalation).await;
    assert_eq!(
        rows_by(&w, &staff).await,
        before + 2,
        "a repeated decision changes nothing"
    );

    let seller_before = rows_by(&w, &seller).await;
    let (status, _) = post(
        format!("/v1/seller/cases/{case}/refutation"),
        seller.clone(),
        Some(json!({"text": "genuine", "evidence_urls": []})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(rows_by(&w, &seller).await, seller_before + 1, "refutation");

    let other_before = rows_by(&w, &other).await;
    let (status, _) = post(
        format!("/v1/staff/cases/{case}/review"),
        other.clone(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rows_by(&w, &other).await, other_before + 1, "case review");
    let (status, body) = post(
        format!("/v1/staff/cases/{case}/refutation-decision"),
        other.clone(),
        Some(json!({"decision": "reject", "note": "no invoice"})),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("enforced")),
        "{body}"
    );
    assert_eq!(
        rows_by(&w, &other).await,
        other_before + 2,
        "refutation decision"
    );

    let (status, ladder) = w
        .env
        .call(Method::GET, "/v1/staff/penalty-ladder", Some(&staff), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        put("/v1/staff/penalty-ladder", staff.clone(), ladder)
            .await
            .0,
        200
    );
    assert_eq!(rows_by(&w, &staff).await, before + 3, "ladder");
    let tier = json!({"tier": "high", "reason": "watch list"});
    assert_eq!(
        put("/v1/staff/sellers/S-A/risk-tier", staff.clone(), tier)
            .await
            .0,
        200
    );
    assert_eq!(rows_by(&w, &staff).await, before + 4, "risk tier");
    let penalty: Uuid = sqlx::query_scalar("SELECT id FROM penalties WHERE case_id = $1 LIMIT 1")
        .bind(case)
        .fetch_one(&w.env.pool)
        .await
        .expect("a penalty");
    let (status, _) = post(
        format!("/v1/staff/penalties/{penalty}/lift"),
        staff.clone(),
        Some(json!({"reason": "appeal"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rows_by(&w, &staff).await, before + 5, "lift");
    let (status, _) = w
        .env
        .call(
            Method::GET,
            "/v1/staff/cases/export?seller_id=S-A&format=html",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows_by(&w, &staff).await, before + 6, "case file export");
    // What followed the rejection is audited as automatic actions.
    let automatic: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE actor_id IS NULL AND (subject = $1 OR subject = 'seller:S-A') ORDER BY id",
    )
    .bind(format!("case:{case}"))
    .fetch_all(&w.env.pool)
    .await
    .expect("automatic rows");
    assert_eq!(automatic, ["case.enforced", "penalties.issue"]);
}
