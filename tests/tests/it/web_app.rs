//! The web app at `/app/` in a real browser: headless Chromium (Debian's
//! `chromium`) driven by the scripts of `tests/web/` through playwright-core,
//! against an isolated stack; what the browser did is then checked in the
//! database. Every page is checked with axe-core in the browser, and its
//! screenshots at 390 and 1280 px go to `target/screenshots/` (or to the folder
//! `SPOTCHECK_SCREENSHOTS` names, such as `docs/screenshots`).

use crate::harness::{
    PASSWORD, TestEnv, claim_within, count_reaches, import_lines, seed_escalation, wait_until,
};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_shared::abuse::VolunteerStats;
use spotcheck_shared::reliability::Confusion;
use spotcheck_simulation::demo::generate;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// Markup a hostile seller might write; it must show as text and run nothing.
const TITLE_PAYLOAD: &str =
    "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";
const DESCRIPTION_PAYLOAD: &str = "\"><img src=x onerror=\"window.__pwned=3\"><b>bold</b>";
/// A small picture, so the screenshots show photos without any network.
const PHOTO: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 40 40'%3E%3Crect width='40' height='40' fill='%23cbd5e1'/%3E%3Cpath d='M8 30l9-11 7 8 4-5 6 8z' fill='%2364748b'/%3E%3C/svg%3E";

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// The browser, or a failure that says how to get it: these tests never pass
/// without having run.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium is not installed at {}: the browser tests need Debian's `chromium` package \
         (scripts/test.sh installs it with apt-get; set CHROMIUM to use another build)",
        path.display()
    );
    assert!(
        web_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/web` (scripts/test.sh does)"
    );
    path
}

/// Runs `node tests/web/<script> <args>`; asserts it succeeded and returns
/// the JSON it printed last.
async fn browse(script: &str, args: &[&str]) -> Value {
    let browser = chromium();
    // Under target/ by default, so a test run leaves the checkout as it was;
    // SPOTCHECK_SCREENSHOTS=docs/screenshots refreshes the README's copies.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = match std::env::var_os("SPOTCHECK_SCREENSHOTS") {
        Some(dir) => root.join(dir),
        None => root.join("target/screenshots"),
    };
    let output = tokio::process::Command::new("node")
        .arg(web_dir().join(script))
        .args(args)
        .env("CHROMIUM", browser)
        .env("SCREENSHOTS", shots)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (install Node.js 20 or newer)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last:?}: {e}"))
}

/// Asserts the script checked `pages` with axe-core (it fails on any serious
/// or critical violation, so being listed means none was found).
fn accessible(report: &Value, pages: &[&str]) {
    let checked: Vec<&str> = report["accessible"]
        .as_array()
        .expect("the pages axe-core checked")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(checked, pages);
}

/// A stack with the sampling rate at 1, so every imported listing is a task.
async fn stack() -> (TestEnv, String) {
    stack_with(|_| {}).await
}

/// [`stack`] with the coordinator's configuration adjusted.
async fn stack_with(adjust: impl FnOnce(&mut coordinator::Config)) -> (TestEnv, String) {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(adjust).await;
    env.start_api(|c| c.max_leases_per_volunteer = 10).await;
    let staff = env.user("web-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    (env, staff)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_is_served_from_the_binary_with_its_types_cache_rules_and_security_headers() {
    let env = TestEnv::start().await;
    let page = env
        .http
        .get(env.url("/app/"))
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header("content-security-policy"),
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-cache");
    let etag = header("etag");
    let html = page.text().await.expect("the page's text");
    assert!(html.contains("/app/app.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let script = env
        .http
        .get(env.url("/app/app.js"))
        .send()
        .await
        .expect("a script");
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let again = env
        .http
        .get(env.url("/app/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("a revalidation");
    assert_eq!(again.status(), 304, "an unchanged page costs a 304");
    let (status, body) = env.call(Method::GET, "/app/missing.js", None, None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_on_a_phone_votes_by_key_and_by_tap_skips_and_votes_offline_while_hostile_listing_text_stays_text()
 {
    let (env, _staff) = stack().await;
    let lines: Vec<String> = generate(4242, 12)
        .into_iter()
        .map(|d| {
            let mut listing = serde_json::to_value(&d.listing).expect("a listing");
            let title = listing["title"].as_str().unwrap_or_default().to_owned();
            listing["title"] = json!(format!("{title} {TITLE_PAYLOAD}"));
            listing["description"] = json!(format!("Boxed, with receipt {DESCRIPTION_PAYLOAD}"));
            listing["signals"] = json!({"brand_complaint": true});
            let id = listing["listing_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            listing["image_urls"] = json!([
                format!("https://images.example.com/{id}/0.jpg"),
                format!("https://images.example.com/{id}/\"onerror=\"window.__pwned=4"),
            ]);
            listing.to_string()
        })
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 12);
    env.user("web-vera", Role::Volunteer).await;

    let report = browse("volunteer.mjs", &[&env.api, "web-vera", PASSWORD]).await;

    accessible(
        &report,
        &[
            "volunteer sign-in",
            "volunteer review",
            "volunteer review, desktop",
        ],
    );
    assert_eq!(
        report["typical_price_shown"], true,
        "the price shows beside the category's typical price"
    );
    assert_eq!(report["signals_shown"], json!(["Brand owner complaint"]));
    assert_eq!(report["today"], json!({"votes": 3, "streak": 1}));
    let votes = report["votes"].as_array().expect("the votes made");
    assert_eq!(votes.len(), 3);
    for vote in votes {
        let task: Uuid = vote["task_id"]
            .as_str()
            .expect("a task")
            .parse()
            .expect("a uuid");
        let row: Option<(String, Value, Option<String>)> = sqlx::query_as(
            "SELECT v.verdict, v.reasons, v.note FROM votes v JOIN users u ON u.id = v.volunteer_id
             WHERE u.username = 'web-vera' AND v.task_id = $1",
        )
        .bind(task)
        .fetch_optional(&env.pool)
        .await
        .expect("read the vote");
        let (verdict, reasons, note) = row.unwrap_or_else(|| panic!("no vote on {task}: {vote}"));
        assert_eq!(verdict, vote["verdict"].as_str().expect("a verdict"));
        assert_eq!(reasons, vote["reasons"]);
        assert_eq!(note.as_deref(), vote["note"].as_str());
    }

    // The skipped lease was released: its token no longer extends it, and no vote came of it.
    let skipped = &report["skipped"];
    let task = skipped["task_id"].as_str().expect("the skipped task");
    let token = env.login("web-vera").await;
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tasks/{task}/extend"),
            Some(&token),
            Some(json!({"lease_token": skipped["lease_token"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("lease_released"))
    );
    let task: Uuid = task.parse().expect("a uuid");
    let on_skipped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM votes v JOIN users u ON u.id = v.volunteer_id
         WHERE u.username = 'web-vera' AND v.task_id = $1",
    )
    .bind(task)
    .fetch_one(&env.pool)
    .await
    .expect("count votes");
    assert_eq!(on_skipped, 0);
}

/// An escalated task with two counterfeit votes on a listing whose title holds
/// markup; returns the escalation and its voters.
async fn escalation(env: &TestEnv, n: usize) -> (Uuid, Vec<Uuid>) {
    let title = format!("Acme tote {TITLE_PAYLOAD}");
    let reasons = ["logo_mismatch", "price_too_low"];
    let listing = format!("web-listing-{n}");
    seed_escalation(
        &env.pool,
        &listing,
        "web-seller",
        &title,
        json!([PHOTO]),
        &reasons,
    )
    .await
}

/// Stores a reliability estimate for `volunteer`: right 9 times in 10 on
/// either truth (an accuracy of 90%), and whether their votes count.
async fn reliability_of(env: &TestEnv, volunteer: Uuid, counting: bool) {
    let confusion = Confusion {
        counts: [[9.0, 1.0, 0.0], [1.0, 9.0, 0.0]],
        answers: 10.0,
        agreement: 0.0,
    };
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats, counting, flag, flagged_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $4 THEN NULL ELSE 'low_gold_accuracy' END,
                 CASE WHEN $4 THEN NULL ELSE now() END)",
    )
    .bind(volunteer)
    .bind(json!(confusion))
    .bind(json!(VolunteerStats::default()))
    .bind(counting)
    .execute(&env.pool)
    .await
    .expect("a reliability row");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_member_confirms_an_escalation_from_the_queue_and_its_case_opens() {
    let (env, other_staff) = stack().await;
    env.user("web-sam", Role::Staff).await;
    let (confirm, voters) = escalation(&env, 1).await;
    reliability_of(&env, voters[0], true).await;
    let (held, _) = escalation(&env, 2).await;
    let (status, hold) = env
        .call(
            Method::POST,
            &format!("/v1/staff/escalations/{held}/review"),
            Some(&other_staff),
            None,
        )
        .await;
    assert_eq!(status, 200, "{hold}");
    let (_, other) = env
        .call(Method::GET, "/v1/me", Some(&other_staff), None)
        .await;
    let holder = other["user_id"].as_str().expect("a user id");

    let report = browse(
        "staff.mjs",
        &[
            &env.api,
            "web-sam",
            PASSWORD,
            &confirm.to_string(),
            &held.to_string(),
            holder,
        ],
    )
    .await;

    accessible(&report, &["staff queue", "escalation evidence", "case"]);
    let mut shown: Vec<&str> = report["reliabilities"]
        .as_array()
        .expect("the reliabilities shown")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    shown.sort_unstable();
    assert_eq!(
        shown,
        ["90%", "—"],
        "the voter with an estimate shows it, the other a dash"
    );
    let case: Uuid = report["case_id"]
        .as_str()
        .expect("a case")
        .parse()
        .expect("a uuid");
    let (escalation, state, seller): (Option<Uuid>, String, String) =
        sqlx::query_as("SELECT escalation_id, state, seller_id FROM cases WHERE id = $1")
            .bind(case)
            .fetch_one(&env.pool)
            .await
            .expect("the case is in the database");
    assert_eq!(escalation, Some(confirm));
    assert_eq!(seller, "web-seller");
    assert_eq!(state, "notified");
    let (status, note): (String, Option<String>) =
        sqlx::query_as("SELECT status, decision_note FROM escalations WHERE id = $1")
            .bind(confirm)
            .fetch_one(&env.pool)
            .await
            .expect("the escalation");
    assert_eq!(status, "confirmed");
    assert_eq!(note.as_deref(), Some("logo and stitching are wrong"));
    let still_open: String = sqlx::query_scalar("SELECT status FROM escalations WHERE id = $1")
        .bind(held)
        .fetch_one(&env.pool)
        .await
        .expect("the held escalation");
    assert_eq!(still_open, "open", "the one held by another was left alone");
}

/// The demo marketplace's listings as feed lines.
fn demo_lines(seed: u64, n: usize) -> Vec<String> {
    generate(seed, n)
        .into_iter()
        .map(|d| serde_json::to_string(&d.listing).expect("a listing"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_member_edits_a_rule_sees_the_dry_run_saves_and_the_coordinator_samples_with_the_new_version()
 {
    // Rounds of four seconds, so a round starts soon after the save.
    let (env, _staff) = stack_with(|c| {
        c.round_secs = 4;
        c.round_sweep_ms = 100;
        c.policy_refresh_ms = 100;
    })
    .await;
    let lines = demo_lines(77, 12);
    let category = generate(77, 12)[0].listing.category.clone();
    import_lines(&env, &lines).await;
    env.user("web-sam", Role::Staff).await;

    let report = browse("rules.mjs", &[&env.api, "web-sam", PASSWORD, &category]).await;

    accessible(&report, &["sampling rules", "sampling rules, desktop"]);
    let version = report["version"].as_i64().expect("the saved version");
    let stratum = report["dry_run"]["stratum"].as_str().expect("a stratum");
    assert!(stratum.starts_with(&format!("{category}/")), "{stratum}");
    let (policy, author): (Value, String) = sqlx::query_as(
        "SELECT p.policy, u.username FROM sampling_policies p JOIN users u ON u.id = p.created_by
         WHERE p.id = $1",
    )
    .bind(version)
    .fetch_one(&env.pool)
    .await
    .expect("the saved version");
    assert_eq!(author, "web-sam");
    assert_eq!(
        policy,
        json!({"default_rate": 0.5, "floor_rate": 0.0, "rules": [{"category": category, "rate": 1.0}], "boosts": {}})
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log a JOIN users u ON u.id = a.actor_id
         WHERE a.action = 'sampling_rules.replace' AND u.username = 'web-sam'",
    )
    .fetch_one(&env.pool)
    .await
    .expect("the audit row");
    assert_eq!(audited, 1);
    let history: Vec<&str> = report["history"]
        .as_array()
        .expect("the history's lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        history,
        [
            "Default rate: 1 → 0.5".to_owned(),
            format!("Rule added: {category} / * / * at 1"),
        ]
    );

    // The coordinator's next round samples with the new version: the rule's
    // category at rate 1 by rule 0, the rest at the new default.
    let pool = env.pool.clone();
    wait_until(
        "a round sampled with the new rules",
        Duration::from_secs(30),
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM tasks WHERE policy_id = $1 AND origin = 'round'",
                )
                .bind(version)
                .fetch_one(&pool)
                .await
                .expect("count tasks")
                    > 0
            }
        },
    )
    .await;
    let sampled: Vec<(String, f64, Value)> = sqlx::query_as(
        "SELECT l.category, t.inclusion_probability, t.sampling
         FROM tasks t JOIN listings l ON l.listing_id = t.listing_id WHERE t.policy_id = $1",
    )
    .bind(version)
    .fetch_all(&env.pool)
    .await
    .expect("the new round's tasks");
    for (cat, probability, sampling) in &sampled {
        if *cat == category {
            assert_eq!(*probability, 1.0, "{sampling}");
            assert_eq!(sampling["rule_index"], 0, "{sampling}");
        } else {
            assert_eq!(sampling["base_rate"], 0.5, "{sampling}");
            assert_eq!(sampling["rule_index"], Value::Null, "{sampling}");
        }
    }
}

/// `volunteers` each claim and vote "counterfeit" `per` times through the API.
async fn vote_through_the_api(env: &TestEnv, volunteers: &[&str], per: usize) {
    for name in volunteers {
        env.user(name, Role::Volunteer).await;
        let token = env.login(name).await;
        for _ in 0..per {
            let claim = claim_within(env, &token, Duration::from_secs(20)).await;
            let task = claim["task_id"].as_str().expect("a task");
            let (status, body) = env
                .call(
                    Method::POST,
                    &format!("/v1/tasks/{task}/votes"),
                    Some(&token),
                    Some(json!({"lease_token": claim["lease_token"], "verdict": "counterfeit", "reasons": ["logo_mismatch"]})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_chart_the_votes_decisions_escalations_and_prevalence_that_exist() {
    let (env, _staff) = stack().await;
    assert_eq!(import_lines(&env, &demo_lines(91, 6)).await.ingest.tasks, 6);
    // Three volunteers vote on all six tasks: six counterfeit decisions, six escalations.
    vote_through_the_api(&env, &["web-dana", "web-eli", "web-fay"], 6).await;
    count_reaches(
        &env.pool,
        "every task decided",
        "SELECT count(*) FROM decisions",
        6,
        Duration::from_secs(30),
    )
    .await;
    count_reaches(
        &env.pool,
        "every task escalated",
        "SELECT count(*) FROM escalations",
        6,
        Duration::from_secs(30),
    )
    .await;
    env.user("web-sam", Role::Staff).await;

    let report = browse("dashboard.mjs", &[&env.api, "web-sam", PASSWORD]).await;

    accessible(&report, &["dashboards", "dashboards, desktop"]);
    let votes: i64 = sqlx::query_scalar("SELECT count(*) FROM votes")
        .fetch_one(&env.pool)
        .await
        .expect("count votes");
    assert_eq!(votes, 18);
    assert_eq!(
        report["sums"],
        json!({"votes": 18, "decisions": 6, "escalations": 6}),
        "the charts' points add up to the record"
    );
    assert!(report["nonzero"]["throughput"].as_i64() > Some(0));
    assert!(report["nonzero"]["decisions"].as_i64() > Some(0));
    assert!(
        report["prevalence_points"].as_i64() > Some(0),
        "prevalence has a non-zero share: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_reinstate_a_stopped_volunteer_and_create_suspend_reinstate_and_link_users_from_their_pages()
 {
    let (env, staff) = stack().await;
    env.user("web-sam", Role::Staff).await;
    let (_, me) = env.call(Method::GET, "/v1/me", Some(&staff), None).await;
    let staff_id: Uuid = me["user_id"]
        .as_str()
        .expect("an id")
        .parse()
        .expect("a uuid");
    let id_of = |name: &'static str| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_scalar::<_, Uuid>("SELECT id FROM users WHERE username = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .expect("a user")
        }
    };
    for name in ["web-stopped", "web-sus", "web-cycle", "web-linked"] {
        env.user(name, Role::Volunteer).await;
    }
    let stopped = id_of("web-stopped").await;
    reliability_of(&env, stopped, false).await;
    // Five days of gold answers, right on even days.
    for day in 0..5_i32 {
        let listing = format!("web-gold-{day}");
        sqlx::query(
            "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
                 seller_risk_tier, price, currency, title, description, image_urls, signals, active)
             VALUES ($1, 1, 'gold-seller', 'Acme', 'bags', 'eu', 'standard', 20, 'EUR', 'Gold', '', '[]', '{}', false)",
        )
        .bind(&listing)
        .execute(&env.pool)
        .await
        .expect("a gold listing");
        let task = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO tasks (id, listing_id, listing_version, round, kind, votes_required,
                 inclusion_probability, stratum, sampling)
             VALUES ($1, $2, 1, -1, 'gold', 1, 1, 'bags/eu/standard', '{\"gold\": true}')",
        )
        .bind(task)
        .bind(&listing)
        .execute(&env.pool)
        .await
        .expect("a gold task");
        sqlx::query(
            "INSERT INTO gold_answers (task_id, answer, created_by) VALUES ($1, 'counterfeit', $2)",
        )
        .bind(task)
        .bind(staff_id)
        .execute(&env.pool)
        .await
        .expect("its answer");
        sqlx::query(
            "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence, created_at)
             VALUES ($1, $2, $3, $4, '[]', 1, now() - make_interval(days => $5))",
        )
        .bind(Uuid::now_v7())
        .bind(task)
        .bind(stopped)
        .bind(if day % 2 == 0 { "counterfeit" } else { "genuine" })
        .bind(day)
        .execute(&env.pool)
        .await
        .expect("a gold answer");
    }
    let mut group = vec![id_of("web-sus").await, id_of("web-cycle").await];
    group.sort_unstable();
    sqlx::query("INSERT INTO collusion_flags (members) VALUES ($1)")
        .bind(&group)
        .execute(&env.pool)
        .await
        .expect("a collusion flag");

    let report = browse(
        "people.mjs",
        &[
            &env.api,
            "web-sam",
            PASSWORD,
            &stopped.to_string(),
            "web-sus",
            "web-cycle",
            "web-linked",
            "web-seller-9",
        ],
    )
    .await;

    accessible(
        &report,
        &[
            "volunteers",
            "a volunteer's record",
            "users",
            "users, desktop",
        ],
    );
    assert_eq!(
        report["gold_points"], 3,
        "three days of five answered right"
    );
    let mut members: Vec<&str> = report["group_members"]
        .as_array()
        .expect("the group's members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["web-cycle", "web-sus"]);
    let counting: bool =
        sqlx::query_scalar("SELECT counting FROM volunteer_reliability WHERE volunteer_id = $1")
            .bind(stopped)
            .fetch_one(&env.pool)
            .await
            .expect("the reliability row");
    assert!(counting, "the stopped volunteer counts again");
    let status = |name: &'static str| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT role, status FROM users WHERE username = $1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .expect("a user")
        }
    };
    assert_eq!(
        status("web-newcomer").await,
        ("volunteer".to_owned(), "active".to_owned())
    );
    assert_eq!(status("web-sus").await.1, "suspended");
    assert_eq!(status("web-cycle").await.1, "active");
    let cycle: Vec<Value> = sqlx::query_scalar(
        "SELECT a.new FROM audit_log a WHERE a.action = 'user.status' AND a.subject = $1
         ORDER BY a.id",
    )
    .bind(format!("user:{}", id_of("web-cycle").await))
    .fetch_all(&env.pool)
    .await
    .expect("the status changes");
    assert_eq!(
        cycle,
        [json!({"status": "suspended"}), json!({"status": "active"})],
        "suspended, then reinstated"
    );
    let linked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM volunteer_seller_links WHERE volunteer_id = $1 AND seller_id = 'web-seller-9'",
    )
    .bind(id_of("web-linked").await)
    .fetch_one(&env.pool)
    .await
    .expect("the seller link");
    assert_eq!(linked, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_at_docs_renders_every_operation_of_the_document_under_its_security_policy() {
    let env = TestEnv::start().await;
    let doc: Value = env
        .http
        .get(env.url("/openapi.json"))
        .send()
        .await
        .expect("the document")
        .json()
        .await
        .expect("the document is JSON");
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    let report = browse("docs.mjs", &[&env.api]).await;
    // The script fails on any operation missing from the page, on a page error
    // and on a CSP report in the console; here its counts are checked too.
    assert_eq!(report["operations"], operations);
    assert_eq!(report["shown"], operations, "{report}");
    assert!(
        report["title"]
            .as_str()
            .is_some_and(|t| t.contains("Spotcheck worker API")),
        "{report}"
    );
    assert_eq!(
        report["expanded"]["path"], "/v1/staff/escalations/{id}",
        "{report}"
    );
    let responses = report["expanded"]["responses"].as_array().expect("codes");
    assert!(responses.contains(&json!("200")) && responses.contains(&json!("404")));
}
