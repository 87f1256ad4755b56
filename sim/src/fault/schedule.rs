//! Which fault comes next, and injecting it: the kinds cycle in order, and
//! kills rotate over the replicas so each one is hit in turn.

use crate::fault::args::FaultKind;
use crate::fault::fleet::Fleet;
use crate::fault::processes::redis_flushall;
use anyhow::{Context, bail};
use serde::Serialize;
use std::time::Duration;
use tokio::process::Command;

/// How long the killed redis-server stays down before it starts again, empty.
const REDIS_DOWNTIME: Duration = Duration::from_secs(1);
/// The longest a `rabbitmqctl` call may take.
const RABBITMQCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// One planned fault: its kind and, for kills, which replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What to do.
    pub kind: FaultKind,
    /// Index of the worker-api or coordinator to kill (0 otherwise).
    pub target: usize,
}

/// The cycle of faults of a run.
#[derive(Debug, Clone)]
pub struct Schedule {
    kinds: Vec<FaultKind>,
    apis: usize,
    coordinators: usize,
    step: usize,
    api_turn: usize,
    coordinator_turn: usize,
}

impl Schedule {
    /// Cycles through `kinds`, killing each of `apis` and `coordinators` replicas in turn.
    pub fn new(kinds: Vec<FaultKind>, apis: usize, coordinators: usize) -> Self {
        Self {
            kinds,
            apis: apis.max(1),
            coordinators: coordinators.max(1),
            step: 0,
            api_turn: 0,
            coordinator_turn: 0,
        }
    }

    /// The next fault.
    pub fn next_fault(&mut self) -> Option<Fault> {
        let kind = *self.kinds.get(self.step % self.kinds.len().max(1))?;
        self.step += 1;
        let target = match kind {
            FaultKind::KillApi => {
                self.api_turn += 1;
                (self.api_turn - 1) % self.apis
            }
            FaultKind::KillCoordinator => {
                self.coordinator_turn += 1;
                (self.coordinator_turn - 1) % self.coordinators
            }
            _ => 0,
        };
        Some(Fault { kind, target })
    }
}

/// A fault as it happened, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Seconds into the run.
    pub at_secs: f64,
    /// The kind, e.g. `kill-api`.
    pub kind: &'static str,
    /// What it hit, e.g. `worker-api#2`.
    pub target: String,
    /// What happened, e.g. `ready again in 1.4 s`, or why it failed.
    pub outcome: String,
    /// Whether it was injected as planned.
    pub injected: bool,
}

/// Injects `fault` into `fleet`; returns what it hit and how it went.
pub async fn inject(
    fault: Fault,
    fleet: &mut Fleet,
    namespace: &str,
) -> (String, anyhow::Result<String>) {
    let http = fleet.http().clone();
    match fault.kind {
        FaultKind::KillApi => {
            let n = fleet.apis.len();
            let proc = &mut fleet.apis[fault.target % n];
            let target = proc.name().to_owned();
            let result = Fleet::kill_and_restart(&http, proc)
                .await
                .map(|took| format!("killed; ready again in {:.1} s", took.as_secs_f64()));
            (target, result)
        }
        FaultKind::KillCoordinator => {
            let n = fleet.coordinators.len();
            let proc = &mut fleet.coordinators[fault.target % n];
            let target = proc.name().to_owned();
            let result = Fleet::kill_and_restart(&http, proc)
                .await
                .map(|took| format!("killed; running again in {:.1} s", took.as_secs_f64()));
            (target, result)
        }
        FaultKind::FlushRedis => {
            let port = fleet.redis_port();
            let result = redis_flushall(port)
                .await
                .map(|()| "every key gone".to_owned());
            (format!("redis :{port}"), result)
        }
        FaultKind::RestartRedis => {
            let port = fleet.redis_port();
            fleet.redis.kill().await;
            tokio::time::sleep(REDIS_DOWNTIME).await;
            let result = fleet.redis.start_ready(&http, 3).await.map(|took| {
                format!(
                    "killed; down {:.1} s, back empty",
                    (REDIS_DOWNTIME + took).as_secs_f64()
                )
            });
            (format!("redis :{port}"), result)
        }
        FaultKind::CloseAmqp => {
            let result = close_amqp_connections(namespace)
                .await
                .map(|n| format!("closed {n} connections"));
            (format!("rabbitmq connections of {namespace}"), result)
        }
    }
}

/// Whether a `rabbitmqctl list_connections` line is a connection of this run's
/// apps, which name theirs `coordinator:<ns>` and `worker-api:<ns>`.
pub fn is_ours(line: &str, namespace: &str) -> bool {
    ["coordinator:", "worker-api:"].iter().any(|app| {
        let name = format!("{app}{namespace}");
        line.match_indices(&name).any(|(at, _)| {
            // `ns` must not be the start of a longer namespace (`ns2`).
            let after = line[at + name.len()..].chars().next();
            !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let run = Command::new("rabbitmqctl")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RABBITMQCTL_TIMEOUT, run)
        .await
        .context("rabbitmqctl timed out")?
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Closes every RabbitMQ connection of the run's apps; returns how many.
pub async fn close_amqp_connections(namespace: &str) -> anyhow::Result<usize> {
    let listing = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "--no-table-headers",
        "-q",
    ])
    .await?;
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| is_ours(line, namespace))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // All at once: each rabbitmqctl call starts a VM and takes a second or two.
    let closing = pids
        .iter()
        .map(|pid| async move { rabbitmqctl(&["close_connection", pid, "fault", "-q"]).await });
    // A connection may close by itself meanwhile; count only those closed here.
    let closed = futures::future::join_all(closing)
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_cycle_and_kills_rotate_over_the_replicas() {
        let mut s = Schedule::new(
            vec![
                FaultKind::KillApi,
                FaultKind::FlushRedis,
                FaultKind::KillCoordinator,
            ],
            2,
            3,
        );
        let got: Vec<(FaultKind, usize)> = (0..9)
            .map(|_| s.next_fault().unwrap())
            .map(|f| (f.kind, f.target))
            .collect();
        assert_eq!(
            got,
            vec![
                (FaultKind::KillApi, 0),
                (FaultKind::FlushRedis, 0),
                (FaultKind::KillCoordinator, 0),
                (FaultKind::KillApi, 1),
                (FaultKind::FlushRedis, 0),
                (FaultKind::KillCoordinator, 1),
                (FaultKind::KillApi, 0),
                (FaultKind::FlushRedis, 0),
                (FaultKind::KillCoordinator, 2),
            ]
        );
        assert_eq!(Schedule::new(vec![], 1, 1).next_fault(), None);
    }

    #[test]
    fn only_this_run_s_connections_are_closed() {
        let line = |name: &str| {
            format!(
                "<rabbit@h.1.2.0>\t[{{\"connection_name\",longstr,<<\"{name}\">>}},{{\"product\",longstr,<<\"lapin\">>}}]"
            )
        };
        assert!(is_ours(&line("coordinator:fault_a"), "fault_a"));
        assert!(is_ours(&line("worker-api:fault_a"), "fault_a"));
        assert!(!is_ours(&line("worker-api:fault_ab"), "fault_a"));
        assert!(!is_ours(&line("spotcheck-sim"), "fault_a"));
        assert!(!is_ours(&line("tests"), "fault_a"));
    }
}
