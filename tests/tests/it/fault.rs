//! The fault run in CI, with three worker-api behind one address and two
//! coordinators: a minute of SIGKILLed and restarted worker-api and
//! coordinator processes, Redis flushed and restarted empty, and RabbitMQ
//! connections dropped, under volunteers working at full speed. It runs the
//! real `spotcheck-sim fault` against the built binaries, in a database,
//! namespace and redis-server of its own.

use crate::harness::tempfile_path::TempPath;
use crate::harness::{binary, built_bin_dir};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// The fault window; the drain and the checks come after it.
const FAULT_SECS: &str = "60";
/// Small enough that debug binaries drain well within `DRAIN_SECS` on two cores.
const LISTINGS: u64 = 300;
const VOLUNTEERS: &str = "20";
/// As Kubernetes would run them: three worker-api behind one address (the
/// tool's balancer) and two coordinators.
const APIS: &str = "3";
const COORDINATORS: &str = "2";
const DRAIN_SECS: &str = "120";
/// Set-up, fault window, drain, checks and clean-up together.
const WHOLE_RUN: Duration = Duration::from_secs(420);

fn bin_dir() -> PathBuf {
    for name in ["spotcheck-sim", "coordinator", "worker-api"] {
        binary(name);
    }
    built_bin_dir()
}

fn number(report: &Value, path: &[&str]) -> i64 {
    let v = path.iter().fold(report, |v, key| &v[*key]);
    v.as_i64()
        .unwrap_or_else(|| panic!("{} missing from the report", path.join(".")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minute_of_faults_loses_no_task_counts_no_vote_twice_and_decides_every_task() {
    let bin = bin_dir();
    let id = format!("fault_{}", uuid::Uuid::new_v4().simple());
    let report_file = TempPath::with_contents("");
    let admin_db = std::env::var("SPOTCHECK_TEST_ADMIN_DB")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut child = Command::new(bin.join("spotcheck-sim"))
        .args([
            "fault",
            "--duration-secs",
            FAULT_SECS,
            "--drain-secs",
            DRAIN_SECS,
        ])
        .args([
            "--listings",
            &LISTINGS.to_string(),
            "--volunteers",
            VOLUNTEERS,
        ])
        .args([
            "--apis",
            APIS,
            "--coordinators",
            COORDINATORS,
            "--front",
            "balancer",
        ])
        .args([
            "--db-name",
            &id,
            "--namespace",
            &id,
            "--admin-db-url",
            &admin_db,
        ])
        .arg("--bin-dir")
        .arg(&bin)
        .arg("--json-report")
        .arg(report_file.as_ref())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spotcheck-sim starts");
    let pid = child.id().expect("a running child");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read_all = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text).await;
        text
    };
    let out = tokio::spawn(read_all(Box::new(stdout)));
    let err = tokio::spawn(read_all(Box::new(stderr)));
    let status = match tokio::time::timeout(WHOLE_RUN, child.wait()).await {
        Ok(status) => status.expect("waiting for spotcheck-sim"),
        Err(_) => {
            // Ctrl-C makes the tool stop its processes and drop its database and queues.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
            panic!(
                "the fault run did not end within {WHOLE_RUN:?}:\n{}",
                out.await.unwrap_or_default()
            );
        }
    };
    let (stdout, stderr) = (out.await.unwrap_or_default(), err.await.unwrap_or_default());
    println!("{stdout}");
    eprintln!("{stderr}");

    let text = std::fs::read_to_string(report_file.as_ref()).expect("the report file");
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); the run ended with {status}"));
    assert_eq!(number(&report, &["tasks_lost"]), 0, "I1: tasks lost");
    assert_eq!(
        number(&report, &["votes_double_counted"]),
        0,
        "I2: votes double-counted"
    );
    assert_eq!(
        number(&report, &["findings", "over_collected_votes"]),
        0,
        "I2: over-collected"
    );
    assert_eq!(
        number(&report, &["findings", "duplicate_pairs"]),
        0,
        "I3: duplicate votes"
    );
    assert_eq!(
        number(&report, &["findings", "fence_breaches"]),
        0,
        "I4: fencing"
    );
    assert_eq!(
        number(&report, &["findings", "duplicate_escalations"]),
        0,
        "I5: duplicate escalations"
    );
    assert_eq!(
        number(&report, &["findings", "extra_decisions"]),
        0,
        "I5: extra decisions"
    );
    assert_eq!(
        number(&report, &["findings", "tasks_not_decided"]),
        0,
        "I6: every task decided after the drain"
    );
    assert_eq!(
        number(&report, &["database", "tasks"]),
        LISTINGS as i64,
        "every listing became a task"
    );
    assert_eq!(number(&report, &["database", "open"]), 0);
    // Each task got at least the minimum of 3 votes; adaptive aggregation asks
    // for more where they disagree (over-collection is checked above).
    assert!(number(&report, &["database", "votes"]) >= 3 * LISTINGS as i64);
    for kind in [
        "kill-api",
        "kill-coordinator",
        "flush-redis",
        "restart-redis",
        "close-amqp",
    ] {
        let injected = report["faults_by_kind"][kind].as_i64().unwrap_or(0);
        assert!(injected >= 1, "no {kind} fault was injected");
    }
    assert_eq!(report["settings"]["apis"], 3);
    assert_eq!(report["settings"]["coordinators"], 2);
    let spread = report["balancer_connections"]
        .as_array()
        .expect("the balancer's connection counts");
    assert_eq!(spread.len(), 3);
    assert!(
        spread.iter().all(|n| n.as_u64().unwrap_or(0) > 0),
        "every worker-api served connections through the one address: {spread:?}"
    );
    assert!(status.success(), "spotcheck-sim fault ended with {status}");
    assert!(stdout.trim_end().ends_with("fault run: OK"), "{stdout}");
}
