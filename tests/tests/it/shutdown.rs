//! SIGTERM under load: the real binaries drain within their grace period, and
//! no claimed-but-unanswered work is lost.

use crate::harness::{TestEnv, binary, count, free_port, import_lines};
use serde_json::json;
use spotcheck_simulation::demo::generate;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GRACE_SECS: u64 = 5;

fn spawn(env: &TestEnv, name: &str, port: u16) -> Child {
    let mut cmd = Command::new(binary(name));
    let db = env.database_url();
    cmd.env("DATABASE_URL", db)
        .env("SPOTCHECK_AMQP_NAMESPACE", &env.id)
        .env("SPOTCHECK_REDIS_PREFIX", &env.id)
        .env("SPOTCHECK_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())
        .env("SPOTCHECK_LEASE_TTL_SECS", "2")
        .env("SPOTCHECK_MIN_VOTES", "2")
        // Exact counts: a fixed two votes a task (no audit tasks, no extra slots).
        .env("SPOTCHECK_AGGREGATION", "majority")
        .env("SPOTCHECK_REAPER_INTERVAL_MS", "200")
        .env("SPOTCHECK_RELAY_POLL_MS", "100")
        .env("SPOTCHECK_METRICS_ADDR", "127.0.0.1:0")
        .env("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SPOTCHECK_ENV", "production")
        .env("SPOTCHECK_JWT_KEY_FILE", env.key_file.as_ref())
        .env("SPOTCHECK_DB_MAX_CONNECTIONS", "4")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env.secrets() {
        cmd.env(key, value);
    }
    for (key, value) in env.rate_limit_overrides() {
        cmd.env(key, value);
    }
    cmd.spawn().expect("start a binary")
}

/// Sends SIGTERM and returns how long the process took to exit, and whether it exited cleanly.
fn terminate(child: &mut Child) -> (Duration, bool) {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (started.elapsed(), status.success());
        }
        if started.elapsed() > Duration::from_secs(GRACE_SECS + 10) {
            let _ = child.kill();
            panic!("the process ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One volunteer step against `api`: claim, and vote unless told to abandon.
async fn step(http: &reqwest::Client, api: &str, token: &str, abandon: bool) -> Option<bool> {
    let claim = http
        .post(format!("{api}/v1/tasks/claim"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    if claim.status() != 200 {
        return Some(false);
    }
    let claim: serde_json::Value = claim.json().await.ok()?;
    if abandon {
        return Some(false);
    }
    let body = json!({"lease_token": claim["lease_token"], "verdict": "genuine", "reasons": []});
    let url = format!("{api}/v1/tasks/{}/votes", claim["task_id"].as_str()?);
    let vote = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .ok()?;
    Some(vote.status() == 201)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_within_the_grace_period_and_loses_no_claimed_work() {
    let mut env = TestEnv::db_only().await;
    env.min_votes = 2;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ('{\"default_rate\": 1.0}')")
        .execute(&env.pool)
        .await
        .unwrap();
    let listings: Vec<String> = generate(41, 20)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect();
    assert_eq!(import_lines(&env, &listings).await.ingest.tasks, 20);
    let mut coordinator = spawn(&env, "coordinator", 0);
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut worker = spawn(&env, "worker-api", port);
    let http = reqwest::Client::new();

    let tokens = env.many_volunteers("term", 6).await;
    let mut votes = 0;
    let mut phase = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(&env.pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await > 0 {
        assert!(
            Instant::now() < deadline,
            "tasks still open after {votes} votes"
        );
        for (i, token) in tokens.iter().enumerate() {
            // Volunteer 0 abandons everything it claims before the restarts.
            if step(&http, &api, token, i == 0 && phase < 2).await == Some(true) {
                votes += 1;
            }
        }
        if phase == 0 && votes >= 8 {
            let (took, clean) = terminate(&mut worker);
            assert!(clean, "worker-api exits cleanly on SIGTERM");
            assert!(
                took <= Duration::from_secs(GRACE_SECS),
                "worker-api took {took:?}"
            );
            let (took, clean) = terminate(&mut coordinator);
            assert!(clean, "the coordinator exits cleanly on SIGTERM");
            assert!(
                took <= Duration::from_secs(GRACE_SECS),
                "the coordinator took {took:?}"
            );
            coordinator = spawn(&env, "coordinator", 0);
            worker = spawn(&env, "worker-api", port);
            phase = 1;
        } else if phase == 1 && votes >= 16 {
            phase = 2;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(votes, 40, "every task got exactly its two votes");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 20);
    let _ = terminate(&mut worker);
    let _ = terminate(&mut coordinator);
}
