//! Who used the machine's cores during a window: the benchmark itself, the
//! stack's worker-api and coordinator processes, PostgreSQL, RabbitMQ, Redis
//! and everything else, from `/proc/<pid>/stat` and `/proc/stat`. On a machine
//! where the load generator and the services share the cores, this tells a
//! saturated service from a starved one.

use super::stack::Stack;
use super::tally::Window;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Clock ticks a second of `/proc` CPU times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;
/// Cores used outside the run above which its figures count as disturbed.
const DISTURBED_AT: f64 = 0.25;

/// How the processes of the machine are grouped.
#[derive(Debug, Clone)]
pub struct Watch {
    own: HashMap<u32, &'static str>,
    database: String,
}

/// CPU ticks by group and of the whole machine at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    groups: BTreeMap<&'static str, u64>,
    busy: u64,
    total: u64,
}

/// CPU used over a window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Length of the window.
    pub secs: f64,
    /// Cores used by each group (1.0 is one core busy all the window).
    pub cores: BTreeMap<&'static str, f64>,
    /// Share of all cores busy, in percent.
    pub machine_busy_percent: f64,
    /// The same in one line.
    pub summary: String,
}

impl CpuUse {
    /// A warning when processes outside the run used a good part of a core.
    pub fn disturbance(&self, what: &str) -> Option<String> {
        let other = self.cores.get("other").copied().unwrap_or(0.0);
        (other > DISTURBED_AT).then(|| {
            format!("{what}: processes outside the run used {other:.2} cores of the window; its figures are disturbed")
        })
    }
}

/// The user and system ticks of a `/proc/<pid>/stat` line.
fn process_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of the first line of `/proc/stat`.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The database a PostgreSQL backend serves, from its process title
/// (`postgres: 15/main: <user> <database> <client> <state>`); none for the
/// server's own processes (checkpointer, WAL writer, autovacuum, ...).
fn backend_database(cmdline: &str) -> Option<&str> {
    let title = cmdline.split('\0').next()?;
    let session = title.splitn(3, ": ").nth(2)?;
    let words: Vec<&str> = session.split_whitespace().collect();
    (words.len() >= 3).then(|| words[1])
}

fn group_of_command(comm: &str) -> &'static str {
    match comm {
        "postgres" => "postgres",
        "beam.smp" | "erl_child_setup" | "epmd" => "rabbitmq",
        "redis-server" => "redis",
        _ => "other",
    }
}

impl Watch {
    /// Groups this process, and the stack's worker-api and coordinator processes by role.
    pub fn new(stack: &Stack) -> Self {
        let mut own = HashMap::from([(std::process::id(), "bench")]);
        own.extend(
            stack
                .apis
                .iter()
                .filter_map(|p| Some((p.pid()?, "worker-api"))),
        );
        own.extend(
            stack
                .coordinators
                .iter()
                .filter_map(|p| Some((p.pid()?, "coordinator"))),
        );
        Self {
            own,
            database: stack.id.clone(),
        }
    }

    fn group(&self, pid: u32, stat: &str) -> &'static str {
        if let Some(group) = self.own.get(&pid) {
            return group;
        }
        let comm = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
        let group = group_of_command(comm.map_or("", |(c, _)| c));
        if group != "postgres" {
            return group;
        }
        // Sessions of other databases are someone else's load.
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        match backend_database(&cmdline) {
            Some(db) if db != self.database => "other",
            _ => "postgres",
        }
    }

    /// The ticks of every group now (processes that cannot be read are left out).
    pub fn snapshot(&self) -> Snapshot {
        let mut groups: BTreeMap<&'static str, u64> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(ticks) = process_ticks(&stat) else {
                continue;
            };
            *groups.entry(self.group(pid, &stat)).or_default() += ticks;
        }
        let (busy, total) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| machine_ticks(&s))
            .unwrap_or((0, 0));
        Snapshot {
            at: Instant::now(),
            groups,
            busy,
            total,
        }
    }

    /// The CPU used since `start`.
    pub fn since(&self, start: &Snapshot) -> CpuUse {
        let end = self.snapshot();
        let secs = (end.at - start.at).as_secs_f64().max(f64::EPSILON);
        let cores: BTreeMap<&'static str, f64> = end
            .groups
            .iter()
            .map(|(g, t)| {
                let before = start.groups.get(g).copied().unwrap_or(0);
                (*g, t.saturating_sub(before) as f64 / TICKS_PER_SEC / secs)
            })
            .collect();
        let total = end.total.saturating_sub(start.total).max(1) as f64;
        let busy = 100.0 * end.busy.saturating_sub(start.busy) as f64 / total;
        let parts: Vec<String> = cores.iter().map(|(g, c)| format!("{g} {c:.2}")).collect();
        let summary = format!("cores used: {}; machine {busy:.0}% busy", parts.join(", "));
        CpuUse {
            secs,
            cores,
            machine_busy_percent: busy,
            summary,
        }
    }

    /// Measures the CPU used over `window`, in the background.
    pub fn over(&self, window: Window) -> JoinHandle<CpuUse> {
        let watch = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window.start).await;
            let start = watch.snapshot();
            tokio::time::sleep_until(window.end).await;
            watch.since(&start)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_and_machine_ticks_are_read_from_proc_lines() {
        let stat = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        assert_eq!(process_ticks(stat), Some(300));
        let machine = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n";
        assert_eq!(machine_ticks(machine), Some((150, 1000)));
        assert_eq!(group_of_command("beam.smp"), "rabbitmq");
        let backend = "postgres: 15/main: postgres benchc_x 127.0.0.1(5000) idle\0\0";
        assert_eq!(backend_database(backend), Some("benchc_x"));
        assert_eq!(backend_database("postgres: 15/main: checkpointer \0"), None);
    }

    #[tokio::test]
    async fn this_process_shows_up_as_the_bench() {
        let watch = Watch {
            own: HashMap::from([(std::process::id(), "bench")]),
            database: "benchc_unit".into(),
        };
        let start = watch.snapshot();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let used = watch.since(&start);
        assert!(used.cores.contains_key("bench"), "{used:?}");
        assert!(used.summary.starts_with("cores used: "));
    }
}
