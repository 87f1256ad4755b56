//! The API against its own OpenAPI document, from outside: the served
//! `/openapi.json` passes `openapi-spec-validator`; schemathesis fuzzes a real
//! stack from it signed in as a volunteer, a staff member, an admin, a seller
//! (with a case against it) and a brand owner (with a complaint), and
//! every answer must conform (no 5xx, documented status, content type and
//! schema); and a client generated from it by openapi-python-client signs
//! in, claims and votes. The tools come from the venv of `SPOTCHECK_PYTHON`
//! (scripts/test.sh installs them, pinned); every request goes to loopback.

use crate::harness::{PASSWORD, TestEnv, import_lines, seed_escalation};
use reqwest::Method;
use serde_json::{Value, json};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The venv's `bin` directory holding `tools`, or `None` (with a notice)
/// outside CI when they are missing; in CI their absence fails the test.
fn tools(tools: &[&str]) -> Option<PathBuf> {
    let python = std::env::var("SPOTCHECK_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let bin = Path::new(&python).parent().map(Path::to_path_buf)?;
    let missing: Vec<&&str> = tools.iter().filter(|t| !bin.join(t).is_file()).collect();
    match (missing.is_empty(), std::env::var_os("CI").is_some()) {
        (true, _) => Some(bin),
        (false, true) => {
            panic!("{missing:?} missing beside {python}: scripts/test.sh installs them in CI")
        }
        (false, false) => {
            eprintln!(
                "NOTICE: skipping the contract checks: {missing:?} missing beside {python}; run scripts/test.sh"
            );
            None
        }
    }
}

/// A command that reaches loopback only: no proxy is ever used.
fn local(program: PathBuf) -> Command {
    let mut command = Command::new(program);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true);
    command
}

/// Runs `command`, asserting it succeeds within `limit`; returns its stdout.
async fn succeeds(what: &str, mut command: Command, limit: Duration) -> String {
    let started = Instant::now();
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    stdout
}

/// A stack with claimable tasks, an escalation to look at, and the document
/// it serves, written to a file.
async fn stack(dir: &Path) -> (TestEnv, PathBuf) {
    let mut env = TestEnv::db_only().await;
    env.start_coordinator(|_| {}).await;
    env.start_api(|c| c.max_leases_per_volunteer = 10).await;
    let staff = env.user("contract-staff", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    let lines: Vec<String> = generate(17, 8)
        .into_iter()
        .map(|d| serde_json::to_string(&d.listing).expect("a listing"))
        .collect();
    assert_eq!(import_lines(&env, &lines).await.ingest.tasks, 8);
    let response = env
        .http
        .get(env.url("/openapi.json"))
        .send()
        .await
        .expect("the document");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("the document is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("JSON"))
        .expect("write the document");
    (env, file)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "spotcheck-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// One schemathesis run as `token` over the operations whose path matches
/// `paths`, with every conformance check; it fails on any failure.
async fn fuzz(
    bin: &Path,
    env: &TestEnv,
    doc: &Path,
    dir: &Path,
    role: &str,
    token: &str,
    paths: &str,
) {
    fuzz_with(bin, env, doc, dir, role, token, paths, &[]).await;
}

/// [`fuzz`] with some parameters fixed (`("path.case_id", id)`), so the
/// operations reach the records the stack holds for this caller.
#[allow(clippy::too_many_arguments)]
async fn fuzz_with(
    bin: &Path,
    env: &TestEnv,
    doc: &Path,
    dir: &Path,
    role: &str,
    token: &str,
    paths: &str,
    fixed: &[(&str, String)],
) {
    let mut command = local(bin.join("schemathesis"));
    if !fixed.is_empty() {
        let mut toml = String::from("[parameters]\n");
        for (name, value) in fixed {
            toml.push_str(&format!("{name:?} = {value:?}\n"));
        }
        let config = dir.join(format!("{role}.toml"));
        std::fs::write(&config, toml).expect("write the schemathesis configuration");
        command.arg("--config-file").arg(config);
    }
    command
        .current_dir(dir)
        .arg("run")
        .arg(doc)
        .args(["--url", &env.api])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--include-path-regex", paths])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--workers", "1", "--seed", "1"])
        .args(["--request-timeout", "10", "--generation-database", "none"])
        .args(["--suppress-health-check", "all", "--no-color", "--max-failures", "20"])
        .args(["--warnings", "off"]);
    let out = succeeds(
        &format!("schemathesis as {role}"),
        command,
        Duration::from_secs(120),
    )
    .await;
    assert!(
        out.contains("No issues found"),
        "schemathesis as {role} reported something:\n{out}"
    );
}

/// What a seller and a brand owner find on the stack: their tokens, the case
/// against the seller and the owner's complaint.
struct Parties {
    seller: String,
    case_id: String,
    owner: String,
    complaint_id: String,
}

/// A seller account with a case against it (an escalation of its listing,
/// confirmed by `staff`) and a brand owner, made by `admin`, linked to the
/// listing's brand and complaining about it.
async fn parties(env: &TestEnv, staff: &str, admin: &str) -> Parties {
    let (listing, seller_id) = ("contract-listing", "contract-seller");
    let (escalation, _) = seed_escalation(
        &env.pool,
        listing,
        seller_id,
        "Acme bag",
        json!([]),
        &["logo"],
    )
    .await;
    let confirm = json!({"decision": "confirm", "note": "fake logo"});
    let path = format!("/v1/staff/escalations/{escalation}/decision");
    let (status, decided) = env
        .call(Method::POST, &path, Some(staff), Some(confirm))
        .await;
    assert_eq!(status, 200, "{decided}");
    let case_id = decided["case_id"].as_str().expect("a case").to_owned();
    let accounts = [
        json!({"username": "contract-sam", "password": PASSWORD, "role": "seller",
               "seller_id": seller_id}),
        json!({"username": "contract-bo", "password": PASSWORD, "role": "brand_owner",
               "brands": ["Acme"]}),
    ];
    for account in accounts {
        let (status, created) = env
            .call(Method::POST, "/v1/staff/users", Some(admin), Some(account))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let owner = env.login("contract-bo").await;
    let complaint = json!({"brand": "Acme", "listing_id": listing, "reason": "counterfeit",
                           "description": "the logo is wrong"});
    let (status, filed) = env
        .call(
            Method::POST,
            "/v1/complaints",
            Some(&owner),
            Some(complaint),
        )
        .await;
    assert_eq!(status, 201, "{filed}");
    Parties {
        seller: env.login("contract-sam").await,
        case_id,
        owner,
        complaint_id: filed["complaint_id"]
            .as_str()
            .expect("a complaint")
            .to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_valid_and_the_running_api_conforms_to_it_for_volunteers_staff_admins_sellers_and_brand_owners()
 {
    let Some(bin) = tools(&["openapi-spec-validator", "schemathesis"]) else {
        return;
    };
    let dir = scratch("contract");
    let (env, doc) = stack(&dir).await;

    let mut validate = local(bin.join("openapi-spec-validator"));
    validate.arg(&doc);
    let out = succeeds("openapi-spec-validator", validate, Duration::from_secs(60)).await;
    assert!(out.contains("OK"), "{out}");

    let volunteer = env.user("contract-vera", Role::Volunteer).await;
    let staff = env.login("contract-staff").await;

    // The rules as GET answers them go back through PUT unchanged.
    let (status, read) = env
        .call(Method::GET, "/v1/staff/sampling-rules", Some(&staff), None)
        .await;
    assert_eq!(status, 200, "{read}");
    let (status, written) = env
        .call(
            Method::PUT,
            "/v1/staff/sampling-rules",
            Some(&staff),
            Some(read.clone()),
        )
        .await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["version"], read["version"].as_i64().unwrap() + 1);
    assert_eq!(written["default_rate"], read["default_rate"]);
    assert_eq!(written["rules"], read["rules"]);
    let admin = env.user("contract-ada", Role::Admin).await;
    let parties = parties(&env, &staff, &admin).await;
    // Anonymous routes and the volunteer's own; every staff route; what
    // only an admin may do (create staff and admins) on the user routes.
    let anyone_and_volunteer =
        r"^/(v1/(auth|tasks|me)|healthz|readyz|metrics|openapi\.json|\.well-known|docs|app)";
    fuzz(
        &bin,
        &env,
        &doc,
        &dir,
        "volunteer",
        &volunteer,
        anyone_and_volunteer,
    )
    .await;
    // Every staff route, the exports too (the stack has a pseudonym key and
    // a few dozen rows to export, so each fuzzed export stays small).
    fuzz(&bin, &env, &doc, &dir, "staff", &staff, r"^/v1/staff/").await;
    fuzz(&bin, &env, &doc, &dir, "admin", &admin, r"^/v1/staff/users").await;
    // The seller's and the brand owner's routes, on their own case and complaint.
    let case = [("path.case_id", parties.case_id)];
    fuzz_with(
        &bin,
        &env,
        &doc,
        &dir,
        "seller",
        &parties.seller,
        r"^/v1/seller/",
        &case,
    )
    .await;
    let complaint = [("path.complaint_id", parties.complaint_id)];
    fuzz_with(
        &bin,
        &env,
        &doc,
        &dir,
        "brand-owner",
        &parties.owner,
        r"^/v1/complaints",
        &complaint,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volunteer_client_generated_from_the_document_signs_in_claims_and_votes() {
    let Some(bin) = tools(&["openapi-python-client", "python"]) else {
        return;
    };
    let dir = scratch("client");
    let (env, doc) = stack(&dir).await;
    env.user("contract-client", Role::Volunteer).await;

    let client_dir = dir.join("spotcheck_worker_api_client");
    let mut generate = local(bin.join("openapi-python-client"));
    generate
        .current_dir(&dir)
        .arg("generate")
        .arg("--path")
        .arg(&doc)
        .arg("--output-path")
        .arg(&client_dir)
        .args(["--meta", "none", "--overwrite"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    succeeds(
        "openapi-python-client generate",
        generate,
        Duration::from_secs(120),
    )
    .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/generated_client_vote.py");
    let mut run = local(bin.join("python"));
    // `--meta none` writes the package itself into the output directory.
    run.arg(script)
        .arg(&dir)
        .arg(&env.api)
        .arg("contract-client")
        .arg(PASSWORD);
    let out = succeeds("the generated client", run, Duration::from_secs(60)).await;
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the client printed {out:?}: {e}"));
    let vote_id: uuid::Uuid = last["vote_id"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a vote id");
    let task_id: uuid::Uuid = last["task_id"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a task id");
    let (verdict, reasons, username): (String, Value, String) = sqlx::query_as(
        "SELECT v.verdict, v.reasons, u.username FROM votes v JOIN users u ON u.id = v.volunteer_id
         WHERE v.id = $1 AND v.task_id = $2",
    )
    .bind(vote_id)
    .bind(task_id)
    .fetch_one(&env.pool)
    .await
    .expect("the vote the client cast is recorded");
    assert_eq!(
        (verdict.as_str(), username.as_str()),
        ("counterfeit", "contract-client")
    );
    assert_eq!(reasons, json!(["logo_mismatch"]));
    let _ = std::fs::remove_dir_all(&dir);
}
