//! Brand owners, complaints and test purchases: a complaint opens an
//! out-of-round inspection at once (kept out of prevalence), merges while
//! open, boosts the seller's other listings by the owner's credibility, and is
//! seen only by its owner; a test purchase opens a case and teaches the
//! volunteers who voted on the listing; each change leaves its audit rows.

use crate::harness::{PASSWORD, TestEnv, claim_within, count, import_lines, wait_until};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::{Listing, ListingId, Role};
use spotcheck_simulation::demo::generate;
use std::time::Duration;

/// A running stack with an admin, a staff member and `listings` (none sampled
/// by the rounds: the default rate is 0).
struct World {
    env: TestEnv,
    admin: String,
    staff: String,
    listings: Vec<Listing>,
}

async fn world_with(listings: Vec<Listing>, per_hour: u32) -> World {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|_| {}).await;
    env.start_api(|c| c.complaints_per_hour = per_hour).await;
    let admin = env.user("c-admin", Role::Admin).await;
    let staff = env.user("c-staff", Role::Staff).await;
    env.set_policy(
        &staff,
        json!({"default_rate": 0.0, "boosts": {"brand_complaint": 5.0}}),
    )
    .await;
    let lines: Vec<String> = listings
        .iter()
        .map(|l| serde_json::to_string(l).expect("a listing"))
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 0);
    World {
        env,
        admin,
        staff,
        listings,
    }
}

async fn world() -> World {
    world_with(generate(41, 3).into_iter().map(|d| d.listing).collect(), 60).await
}

/// Listings of one seller: `n` copies of a demo listing under new ids.
fn storefront(seller: &str, n: usize) -> Vec<Listing> {
    let base = generate(42, 1)[0].listing.clone();
    (0..n)
        .map(|i| {
            let mut l = base.clone();
            l.listing_id = ListingId::parse(&format!("{seller}-l{i}")).expect("a listing id");
            l.seller_id = seller.to_owned();
            l
        })
        .collect()
}

impl World {
    /// Creates a brand owner linked to `brands` through the staff route; their token.
    async fn owner(&self, name: &str, brands: &[&str]) -> String {
        let body = json!({"username": name, "password": PASSWORD, "role": "brand_owner", "brands": brands});
        let (status, created) = self
            .env
            .call(
                Method::POST,
                "/v1/staff/users",
                Some(&self.admin),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        self.env.login(name).await
    }

    fn complaint(&self, i: usize, evidence: &[&str]) -> Value {
        let l = &self.listings[i];
        json!({"brand": l.brand, "listing_id": l.listing_id.as_str(), "reason": "counterfeit",
               "description": "the stitching and the logo are wrong", "evidence_urls": evidence})
    }

    async fn file(&self, owner: &str, body: Value) -> (u16, Value) {
        self.env
            .call(Method::POST, "/v1/complaints", Some(owner), Some(body))
            .await
    }

    /// Three volunteers vote `verdict` on the task they claim (the only one open).
    async fn crowd_votes(&self, prefix: &str, verdict: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..3 {
            let name = format!("{prefix}-{i}");
            let token = self.env.user(&name, Role::Volunteer).await;
            let claim = claim_within(&self.env, &token, Duration::from_secs(10)).await;
            let path = format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap());
            let vote =
                json!({"lease_token": claim["lease_token"], "verdict": verdict, "reasons": []});
            let (status, body) = self
                .env
                .call(Method::POST, &path, Some(&token), Some(vote))
                .await;
            assert_eq!(status, 201, "{body}");
            let (_, me) = self
                .env
                .call(Method::GET, "/v1/me", Some(&token), None)
                .await;
            ids.push(me["user_id"].as_str().expect("a user id").to_owned());
        }
        ids
    }
}

async fn audit_rows(env: &TestEnv) -> i64 {
    count(&env.pool, "SELECT count(*) FROM audit_log").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complaint_about_a_listing_opens_an_inspection_a_volunteer_claims_within_seconds() {
    let w = world().await;
    let owner = w.owner("c-owner", &[&w.listings[0].brand]).await;
    let (status, filed) = w.file(&owner, w.complaint(0, &[])).await;
    assert_eq!(status, 201, "{filed}");
    let (origin, round, p, task_in_complaint): (String, i64, f64, bool) = sqlx::query_as(
        "SELECT t.origin, t.round, t.inclusion_probability, c.task_id = t.id
         FROM tasks t JOIN complaints c ON c.listing_id = t.listing_id",
    )
    .fetch_one(&w.env.pool)
    .await
    .expect("the inspection task");
    assert_eq!(
        (origin.as_str(), p, task_in_complaint),
        ("complaint", 1.0, true)
    );
    assert!(round < -1, "out of round: {round}");
    let volunteer = w.env.user("c-vol", Role::Volunteer).await;
    let claim = claim_within(&w.env, &volunteer, Duration::from_secs(5)).await;
    assert_eq!(
        claim["listing"]["listing_id"],
        w.listings[0].listing_id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_while_the_complaint_is_open_merges_into_it() {
    let w = world().await;
    let owner = w.owner("c-owner", &[&w.listings[0].brand]).await;
    let (a, b) = (
        "https://evidence.example/a.jpg",
        "https://evidence.example/b.jpg",
    );
    let (status, first) = w.file(&owner, w.complaint(0, &[a])).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = w.file(&owner, w.complaint(0, &[b, a])).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["complaint_id"], first["complaint_id"]);
    assert_eq!(
        count(&w.env.pool, "SELECT count(*) FROM complaints").await,
        1
    );
    assert_eq!(count(&w.env.pool, "SELECT count(*) FROM tasks").await, 1);
    let path = format!("/v1/complaints/{}", first["complaint_id"].as_str().unwrap());
    let (_, one) = w.env.call(Method::GET, &path, Some(&owner), None).await;
    assert_eq!(one["evidence_urls"], json!([a, b]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complaint_inspection_stays_out_of_the_prevalence_estimate() {
    let w = world().await;
    let owner = w.owner("c-owner", &[&w.listings[0].brand]).await;
    assert_eq!(w.file(&owner, w.complaint(0, &[])).await.0, 201);
    w.crowd_votes("c-prev", "counterfeit").await;
    let pool = w.env.pool.clone();
    wait_until("the inspection is decided", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move { count(&pool, "SELECT count(*) FROM tasks WHERE state <> 'open'").await == 1 }
    })
    .await;
    let round = count(&w.env.pool, "SELECT round FROM tasks").await;
    let path = format!("/v1/staff/prevalence?round={round}");
    let (status, by_round) = w.env.call(Method::GET, &path, Some(&w.staff), None).await;
    assert_eq!(status, 200, "{by_round}");
    assert_eq!(by_round["overall"]["inspected"], 0, "{by_round}");
    assert_eq!(by_round["strata"], json!({}), "{by_round}");
    let (_, newest) = w
        .env
        .call(Method::GET, "/v1/staff/prevalence", Some(&w.staff), None)
        .await;
    assert!(newest["round"].as_i64().expect("a round") >= 0, "{newest}");
    assert_eq!(newest["overall"]["inspected"], 0, "{newest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_brand_owner_cannot_complain_about_a_brand_they_are_not_linked_to() {
    let w = world().await;
    let owner = w.owner("c-owner", &["Some Other Brand"]).await;
    let before = audit_rows(&w.env).await;
    let (status, problem) = w.file(&owner, w.complaint(0, &[])).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("brand_not_linked"))
    );
    assert_eq!(
        count(&w.env.pool, "SELECT count(*) FROM complaints").await,
        0
    );
    assert_eq!(count(&w.env.pool, "SELECT count(*) FROM tasks").await, 0);
    assert_eq!(audit_rows(&w.env).await, before);
    let (status, _) = w
        .env
        .call(
            Method::POST,
            "/v1/complaints",
            Some(&w.staff),
            Some(w.complaint(0, &[])),
        )
        .await;
    assert_eq!(status, 403, "staff do not file complaints");
}

#[tokio::test(flavor = "multi_thread")]
async fn brand_owners_see_only_their_own_complaints_and_no_volunteer_identities_or_votes() {
    let w = world().await;
    let brand = w.listings[0].brand.clone();
    let alice = w.owner("c-alice", &[&brand]).await;
    let bob = w.owner("c-bob", &[&brand]).await;
    let (_, filed) = w.file(&alice, w.complaint(0, &[])).await;
    let id = filed["complaint_id"].as_str().expect("an id").to_owned();
    let voters = w.crowd_votes("c-seen", "counterfeit").await;
    let pool = w.env.pool.clone();
    wait_until("the inspection is decided", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move { count(&pool, "SELECT count(*) FROM tasks WHERE state <> 'open'").await == 1 }
    })
    .await;
    let path = format!("/v1/complaints/{id}");
    let (status, own) = w.env.call(Method::GET, &path, Some(&alice), None).await;
    assert_eq!((status, own["status"].as_str()), (200, Some("open")));
    let (status, _) = w.env.call(Method::GET, &path, Some(&bob), None).await;
    assert_eq!(status, 404, "another owner's complaint is not found");
    let (_, bobs) = w
        .env
        .call(Method::GET, "/v1/complaints", Some(&bob), None)
        .await;
    assert_eq!(bobs["items"], json!([]));
    let (_, alices) = w
        .env
        .call(Method::GET, "/v1/complaints", Some(&alice), None)
        .await;
    assert_eq!(alices["items"].as_array().map(Vec::len), Some(1));
    for body in [own, alices] {
        let text = body.to_string();
        for voter in &voters {
            assert!(!text.contains(voter.as_str()), "a volunteer id in {text}");
        }
        for word in ["c-seen", "verdict", "vote", "volunteer"] {
            assert!(!text.contains(word), "{word} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counterfeit_test_purchase_opens_a_case_and_teaches_the_listings_voters() {
    let w = world().await;
    // An inspection of the listing (a complaint's), which the crowd gets wrong.
    let owner = w.owner("c-owner", &[&w.listings[1].brand]).await;
    assert_eq!(w.file(&owner, w.complaint(1, &[])).await.0, 201);
    let voters = w.crowd_votes("c-tp", "genuine").await;
    let pool = w.env.pool.clone();
    wait_until("the three votes", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move { count(&pool, "SELECT count(*) FROM votes").await == 3 }
    })
    .await;
    let confusions = || async {
        sqlx::query_scalar::<_, Option<Value>>(
            "SELECT (SELECT confusion FROM volunteer_reliability r WHERE r.volunteer_id = u.id)
             FROM users u WHERE u.id::text = ANY($1) ORDER BY u.id",
        )
        .bind(&voters)
        .fetch_all(&w.env.pool)
        .await
        .expect("confusions")
    };
    let before = confusions().await;
    let listing = w.listings[1].listing_id.as_str();
    let body = json!({"listing_id": listing, "purchased_at": "2026-01-05T10:00:00Z",
                      "vendor": "Mystery Shoppers Ltd", "result": "counterfeit",
                      "evidence_urls": ["https://evidence.example/receipt.pdf"]});
    let (status, recorded) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/test-purchases",
            Some(&w.staff),
            Some(body),
        )
        .await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["votes_scored"], 3);
    let case = recorded["case_id"].as_str().expect("a case");
    let (source, seller): (String, String) =
        sqlx::query_as("SELECT source, seller_id FROM cases WHERE id::text = $1")
            .bind(case)
            .fetch_one(&w.env.pool)
            .await
            .expect("the case");
    assert_eq!(
        (source.as_str(), seller.as_str()),
        ("test_purchase", w.listings[1].seller_id.as_str())
    );
    let after = confusions().await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "every voter's reliability learned the truth");
        assert!(a.is_some());
    }
    // An authentic result opens no case.
    let body = json!({"listing_id": listing, "purchased_at": "2026-01-06T10:00:00Z",
                      "vendor": "Mystery Shoppers Ltd", "result": "authentic"});
    let (status, recorded) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/test-purchases",
            Some(&w.staff),
            Some(body),
        )
        .await;
    assert_eq!((status, recorded.get("case_id")), (201, None), "{recorded}");
    assert_eq!(count(&w.env.pool, "SELECT count(*) FROM cases").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_state_changing_route_of_complaints_and_purchases_leaves_its_audit_rows() {
    let w = world().await;
    let brand = w.listings[0].brand.clone();
    let mut rows = audit_rows(&w.env).await;
    let mut expect = |env_rows: i64, added: i64, what: &str| {
        assert_eq!(env_rows, rows + added, "{what}");
        rows = env_rows;
    };
    let owner = w.owner("c-owner", &[&brand]).await;
    expect(audit_rows(&w.env).await, 1, "user.create");
    let (_, first) = w.file(&owner, w.complaint(0, &[])).await;
    expect(audit_rows(&w.env).await, 1, "complaint.create");
    assert_eq!(
        w.file(&owner, w.complaint(0, &["https://e.example/x"]))
            .await
            .0,
        200
    );
    expect(audit_rows(&w.env).await, 1, "complaint.merge");
    let mut other = w.complaint(1, &[]);
    other["brand"] = json!(brand);
    let (_, second) = w.file(&owner, other).await;
    expect(audit_rows(&w.env).await, 1, "complaint.create");
    let decide = |id: &Value, decision: &str| {
        let path = format!("/v1/staff/complaints/{}/decision", id.as_str().unwrap());
        let body = json!({"decision": decision, "note": "checked with the brand"});
        (path, body)
    };
    let (path, body) = decide(&first["complaint_id"], "reject");
    let (status, rejected) = w
        .env
        .call(Method::POST, &path, Some(&w.staff), Some(body))
        .await;
    assert_eq!(
        (status, rejected["status"].as_str()),
        (200, Some("rejected"))
    );
    expect(audit_rows(&w.env).await, 1, "complaint.decide");
    let (path, body) = decide(&first["complaint_id"], "reject");
    assert_eq!(
        w.env
            .call(Method::POST, &path, Some(&w.staff), Some(body))
            .await
            .0,
        200
    );
    expect(audit_rows(&w.env).await, 0, "a repeated decision");
    let (path, body) = decide(&first["complaint_id"], "accept");
    let (status, problem) = w
        .env
        .call(Method::POST, &path, Some(&w.staff), Some(body))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("complaint_already_decided"))
    );
    expect(audit_rows(&w.env).await, 0, "a conflicting decision");
    let (path, body) = decide(&second["complaint_id"], "accept");
    let (status, accepted) = w
        .env
        .call(Method::POST, &path, Some(&w.staff), Some(body))
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (200, Some("upheld")),
        "{accepted}"
    );
    assert!(accepted["case_id"].is_string(), "{accepted}");
    // One row: the decision names the case it opened.
    expect(
        audit_rows(&w.env).await,
        1,
        "complaint.decide with its case",
    );
    let purchase = json!({"listing_id": w.listings[2].listing_id.as_str(),
                          "purchased_at": "2026-01-05T10:00:00Z", "vendor": "Shopper", "result": "authentic"});
    let (status, _) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/test-purchases",
            Some(&w.staff),
            Some(purchase),
        )
        .await;
    assert_eq!(status, 201);
    expect(audit_rows(&w.env).await, 1, "test_purchase.record");
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(&w.env.pool)
        .await
        .expect("the audit rows");
    let mine: Vec<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("complaint.") || a.starts_with("test_purchase."))
        .collect();
    assert_eq!(
        mine,
        [
            "complaint.create",
            "complaint.merge",
            "complaint.create",
            "complaint.decide",
            "complaint.decide",
            "test_purchase.record"
        ]
    );
    // Staff see the owner's precision from the decided complaints.
    let (_, owners) = w
        .env
        .call(Method::GET, "/v1/staff/brand-owners", Some(&w.staff), None)
        .await;
    assert_eq!(owners["items"][0]["precision"], 0.5, "{owners}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complaint_boosts_the_sellers_other_listings_by_the_owners_credibility() {
    let mut listings = storefront("s-big", 60);
    listings.extend(storefront("s-else", 5));
    let w = world_with(listings, 60).await;
    let brand = w.listings[0].brand.clone();
    let trusted = w.owner("c-trusted", &[&brand]).await;
    let doubted = w.owner("c-doubted", &[&brand]).await;
    // The doubted owner's record: twenty complaints, all rejected.
    sqlx::query(
        "INSERT INTO complaints (id, brand_owner, brand, seller_id, reason, description, status)
         SELECT gen_random_uuid(), u.id, $1, 's-else', 'other', 'old', 'rejected'
         FROM users u, generate_series(1, 20) WHERE u.username = 'c-doubted'",
    )
    .bind(&brand)
    .execute(&w.env.pool)
    .await
    .expect("a record");
    let boosted = |pool: sqlx::PgPool| async move {
        count(
            &pool,
            "SELECT count(*) FROM listings WHERE (signals->>'brand_complaint')::boolean",
        )
        .await
    };
    assert_eq!(w.file(&trusted, w.complaint(0, &[])).await.0, 201);
    let by_trusted = boosted(w.env.pool.clone()).await;
    sqlx::query("UPDATE listings SET signals = signals - 'brand_complaint'")
        .execute(&w.env.pool)
        .await
        .expect("clear the signals");
    assert_eq!(w.file(&doubted, w.complaint(0, &[])).await.0, 201);
    let by_doubted = boosted(w.env.pool.clone()).await;
    assert!(by_trusted > by_doubted + 15, "{by_trusted} vs {by_doubted}");
    assert!(
        by_trusted >= 30,
        "a newcomer gets most of the boost: {by_trusted} of 59"
    );
    let untouched = count(
        &w.env.pool,
        "SELECT count(*) FROM listings WHERE (signals->>'brand_complaint')::boolean
           AND (seller_id = 's-else' OR listing_id = 's-big-l0')",
    )
    .await;
    assert_eq!(
        untouched, 0,
        "other sellers and the listing complained about are not boosted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn complaints_past_the_hourly_limit_are_refused() {
    let w = world_with(generate(43, 3).into_iter().map(|d| d.listing).collect(), 2).await;
    let brands: Vec<&str> = w.listings.iter().map(|l| l.brand.as_str()).collect();
    let owner = w.owner("c-owner", &brands).await;
    assert_eq!(w.file(&owner, w.complaint(0, &[])).await.0, 201);
    assert_eq!(w.file(&owner, w.complaint(1, &[])).await.0, 201);
    let (status, problem) = w.file(&owner, w.complaint(2, &[])).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("complaint_rate_limited"))
    );
    assert_eq!(
        count(&w.env.pool, "SELECT count(*) FROM complaints").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seller_accounts_are_linked_to_their_seller_and_refused_for_a_banned_one() {
    let w = world().await;
    sqlx::query("INSERT INTO sellers (seller_id, banned) VALUES ('s-banned', true)")
        .execute(&w.env.pool)
        .await
        .expect("a banned seller");
    let seller = |name: &str, id: &str| json!({"username": name, "password": PASSWORD, "role": "seller", "seller_id": id});
    let (status, problem) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/users",
            Some(&w.admin),
            Some(seller("c-banned", "s-banned")),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("seller_banned"))
    );
    let (status, _) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/users",
            Some(&w.admin),
            Some(seller("c-seller", "s-open")),
        )
        .await;
    assert_eq!(status, 201);
    let linked = count(
        &w.env.pool,
        "SELECT count(*) FROM users WHERE username = 'c-seller' AND seller_id = 's-open'",
    )
    .await;
    assert_eq!(linked, 1);
    let no_brands =
        json!({"username": "c-nobrand", "password": PASSWORD, "role": "brand_owner", "brands": []});
    let (status, _) = w
        .env
        .call(
            Method::POST,
            "/v1/staff/users",
            Some(&w.admin),
            Some(no_brands),
        )
        .await;
    assert_eq!(status, 422, "a brand owner needs a brand");
}
