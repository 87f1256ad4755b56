//! The history benchmark at a small size: the real `spotcheck-sim
//! bench-history` against the built binaries measures the empty database,
//! writes a little history into it, measures again, reports every figure of
//! both measurements, and leaves no database, queue or Redis key of its own behind.

use crate::harness::tempfile_path::TempPath;
use crate::harness::{binary, built_bin_dir};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::Value;
use spotcheck_platform::amqp::Names;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const REDIS_URL: &str = "redis://127.0.0.1:6379/";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Set-up, both measurements, the seeding and the clean-up together.
const WHOLE_RUN: Duration = Duration::from_secs(180);
const STAFF_REQUESTS: u64 = 5;
const ROUTES: [&str; 4] = [
    "/v1/staff/stats",
    "/v1/staff/prevalence",
    "/v1/staff/escalations",
    "/v1/staff/volunteers",
];
const JOBS: [&str; 6] = [
    "gauges",
    "capacity",
    "round_sweep",
    "reaper",
    "lease_audit",
    "recalibration",
];

fn admin_db() -> String {
    std::env::var("SPOTCHECK_TEST_ADMIN_DB")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn number(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, key| &v[key])
        .as_f64()
        .unwrap_or_else(|| panic!("{path} missing from the report"))
}

/// Runs the benchmark; returns its report, stdout and whether it succeeded.
async fn run_small_benchmark(report_file: &TempPath) -> (Value, String, bool) {
    let bin = built_bin_dir();
    for name in ["spotcheck-sim", "coordinator", "worker-api"] {
        binary(name);
    }
    let mut child = Command::new(bin.join("spotcheck-sim"))
        .args(["bench-history", "--votes", "30000", "--months", "2"])
        .args([
            "--warmup-secs",
            "1",
            "--window-secs",
            "2",
            "--windows",
            "2",
            "--burn-in-windows",
            "1",
            "--volunteers",
            "16",
        ])
        .args(["--staff-requests", &STAFF_REQUESTS.to_string()])
        .args(["--prefill-slots", "3000", "--sweep-secs", "5"])
        .args(["--recalibrate-secs", "2", "--jobs-wait-secs", "15"])
        .args(["--quiet-wait-secs", "30", "--max-secs", "150"])
        .args(["--database-url", &admin_db()])
        .args(["--amqp-url", AMQP_URL, "--redis-url", REDIS_URL])
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--out")
        .arg(report_file.as_ref())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spotcheck-sim starts");
    let pid = child.id().expect("a running child");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await;
        text
    });
    let status = match tokio::time::timeout(WHOLE_RUN, child.wait()).await {
        Ok(status) => status.expect("waiting for spotcheck-sim"),
        Err(_) => {
            // Ctrl-C makes the tool stop its processes and remove what it made.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
            panic!("the history benchmark did not end within {WHOLE_RUN:?}");
        }
    };
    let stdout = out.await.unwrap_or_default();
    println!("{stdout}");
    let text = std::fs::read_to_string(report_file.as_ref()).expect("the report file");
    let report = serde_json::from_str(&text).expect("the report is JSON");
    (report, stdout, status.success())
}

/// Whether anything named after `id` is left in PostgreSQL, RabbitMQ, Redis or the temporary directory.
async fn leftovers(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let admin = sqlx::PgPool::connect(&admin_db()).await.expect("admin db");
    let dbs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(id)
        .fetch_one(&admin)
        .await
        .unwrap();
    admin.close().await;
    if dbs > 0 {
        left.push(format!("database {id}"));
    }
    let conn = spotcheck_platform::amqp::connect(AMQP_URL, "bench-history-test")
        .await
        .expect("RabbitMQ");
    let channel = conn.create_channel().await.expect("a channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = Names::new(id).tasks_queue();
    if channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await
        .is_ok()
    {
        left.push(format!("queue {queue}"));
    }
    let _ = conn.close(200, "done".into()).await;
    let mut redis = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{id}}}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    left.extend(keys.into_iter().map(|k| format!("Redis key {k}")));
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(id) {
            left.push(format!("directory {name}"));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_benchmark_reports_every_figure_on_both_databases_and_leaves_nothing_behind() {
    let report_file = TempPath::with_contents("");
    let (report, stdout, succeeded) = run_small_benchmark(&report_file).await;
    assert!(
        succeeded,
        "bench-history failed; warnings: {}",
        report["warnings"]
    );
    let id = report["setup"]["stack_id"]
        .as_str()
        .expect("the stack's id in the report");
    assert!(id.starts_with("benchh_"), "{id}");
    assert_eq!(number(&report, "seed.votes"), 30_000.0);

    for phase in ["empty", "history"] {
        let p = &report[phase];
        assert!(
            number(p, "load.cycles_per_sec") > 0.0,
            "{phase}: no cycle in the window"
        );
        assert!(
            number(p, "load.claim_ms.p99_ms") > 0.0,
            "{phase}: claim p99"
        );
        assert!(number(p, "load.vote_ms.p99_ms") > 0.0, "{phase}: vote p99");
        let windows = p["windows"].as_array().expect("the windows");
        assert_eq!(windows.len(), 2, "{phase}: closed-loop windows");
        assert!(
            windows.iter().all(|w| number(w, "cycles") > 0.0),
            "{phase}: a window without cycles"
        );
        // Two windows: the median is the lower one.
        let slower = windows
            .iter()
            .map(|w| number(w, "cycles_per_sec"))
            .fold(f64::INFINITY, f64::min);
        assert_eq!(number(p, "load.cycles_per_sec"), slower, "{phase}");
        assert_eq!(p["quiet"]["quiet"], true, "{phase}: {}", p["quiet"]);
        for route in ROUTES {
            let calls = number(&p["staff"][route], "count");
            assert_eq!(calls, STAFF_REQUESTS as f64, "{phase}: calls of {route}");
            assert!(
                number(&p["staff"][route], "p99_ms") > 0.0,
                "{phase}: {route}"
            );
        }
        for job in JOBS {
            let runs = number(&p["jobs"][job], "runs");
            assert!(runs >= 1.0, "{phase}: job {job} never ran: {}", p["jobs"]);
            assert!(number(&p["jobs"][job], "max_ms") >= 0.0, "{phase}: {job}");
        }
        assert!(
            number(p, "sweep.listings_swept") > 0.0,
            "{phase}: the round sweep covered nothing: {}",
            p["sweep"]
        );
        assert!(number(p, "sweep.per_sec") > 0.0, "{phase}: sweep rate");
    }
    assert_eq!(number(&report, "empty.size.votes"), 0.0);
    assert!(number(&report, "history.size.votes") >= 30_000.0);

    let rows = report["rows"].as_array().expect("the table's rows");
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no row {key}"))
    };
    for key in [
        "load.cycles_per_sec",
        "load.claim_p99_ms",
        "load.vote_p99_ms",
    ] {
        assert!(row(key)["empty"].is_number() && row(key)["history"].is_number());
    }
    for line in [
        "| with history | ratio |",
        "closed loop: claim-and-vote cycles/s",
    ] {
        assert!(stdout.contains(line), "the table lacks {line:?}:\n{stdout}");
    }
    for route in ROUTES {
        assert!(stdout.contains(&format!("GET {route} p99")), "{stdout}");
    }

    let left = leftovers(id).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
