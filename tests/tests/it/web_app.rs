//! The web app at `/app/` in a real browser: headless Chromium (Debian's
//! `chromium`) driven by the scripts of `tests/web/` through playwright-core,
//! against an isolated stack; what the browser did is then checked in the
//! database. Screenshots go to `tests/web/screenshots/` (ignored by git).

use crate::harness::{PASSWORD, TestEnv, import_lines, seed_escalation};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::path::PathBuf;
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
    let shots = web_dir().join("screenshots");
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

/// A stack with the sampling rate at 1, so every imported listing is a task.
async fn stack() -> (TestEnv, String) {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|_| {}).await;
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

/// An escalated task with two counterfeit votes on a listing whose title holds markup.
async fn escalation(env: &TestEnv, n: usize) -> Uuid {
    let title = format!("Acme tote {TITLE_PAYLOAD}");
    let reasons = ["logo_mismatch", "price_too_low"];
    let listing = format!("web-listing-{n}");
    let (escalation, _) = seed_escalation(
        &env.pool,
        &listing,
        "web-seller",
        &title,
        json!([PHOTO]),
        &reasons,
    )
    .await;
    escalation
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staff_member_confirms_an_escalation_from_the_queue_and_its_case_opens() {
    let (env, other_staff) = stack().await;
    env.user("web-sam", Role::Staff).await;
    let confirm = escalation(&env, 1).await;
    let held = escalation(&env, 2).await;
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
