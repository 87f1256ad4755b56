//! The run's processes: worker-api and coordinator replicas and a private
//! redis-server, each started from its binary with the run's configuration,
//! logged to a file, killed with SIGKILL, started again, and waited on until
//! ready.

use anyhow::{Context, bail};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

/// How long a started process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// What a process is, which decides how it is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// worker-api serving on a loopback port.
    Api {
        /// Its port, the same across restarts.
        port: u16,
    },
    /// A coordinator replica.
    Coordinator {
        /// Port of its operator endpoints (`/readyz`, `/metrics`).
        port: u16,
    },
    /// The run's redis-server on a loopback port.
    Redis {
        /// Its port, the same across restarts.
        port: u16,
    },
}

impl Role {
    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        match self {
            Role::Api { port } | Role::Coordinator { port } | Role::Redis { port } => *port,
        }
    }
}

/// The secrets of a stack this tool starts, as environment variables: its own
/// (never the published defaults, which production mode refuses), derived
/// from the run's unique id so that every replica and every restart shares them.
pub fn stack_secrets(run_id: &str) -> Vec<(String, String)> {
    [
        // Long enough whatever the id: production mode wants 32 characters.
        (
            "SPOTCHECK_SAMPLING_KEY",
            format!("{run_id}-sampling-key-of-this-run-of-the-tool"),
        ),
        (
            "SPOTCHECK_GOLD_KEY",
            format!("{run_id}-gold-key-of-this-run-of-the-tool"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// How to start one process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name in output, e.g. `worker-api#1`.
    pub name: String,
    /// What it is.
    pub role: Role,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set on top of this process's own.
    pub env: Vec<(String, String)>,
    /// Where its standard output and error go, appended across restarts.
    pub log: PathBuf,
}

/// One supervised process.
#[derive(Debug)]
pub struct Proc {
    spec: Spec,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl Proc {
    /// A process not started yet.
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            child: None,
            starts: 0,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What it is.
    pub fn role(&self) -> &Role {
        &self.spec.role
    }

    /// Its operating-system process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts it, in a process group of its own so a Ctrl-C in the terminal
    /// reaches only this tool, which then stops it.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("opening {}", self.spec.log.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "==== spotcheck-sim fault: start {} of {} at {}",
            self.starts,
            self.spec.name,
            chrono::Utc::now().to_rfc3339()
        )?;
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.spec.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// The exit status, if it has stopped by itself (it then counts as not running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Whether it runs.
    pub fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// Waits until it is ready: worker-api and the coordinator answer `/readyz`,
    /// Redis answers PING.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                bail!("{} exited while starting ({status})", self.spec.name);
            }
            if self.probe(http).await {
                return Ok(started.elapsed());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready within {READY_TIMEOUT:?} (see {})",
                    self.spec.name,
                    self.spec.log.display()
                );
            }
            sleep(PROBE_EVERY).await;
        }
    }

    async fn probe(&self, http: &reqwest::Client) -> bool {
        match &self.spec.role {
            Role::Api { port } | Role::Coordinator { port } => http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
            Role::Redis { port } => redis_answers(*port).await,
        }
    }

    /// Starts it and waits until it is ready, trying up to `attempts` times
    /// (a process may fail to start while another fault is still healing).
    pub async fn start_ready(
        &mut self,
        http: &reqwest::Client,
        attempts: u32,
    ) -> anyhow::Result<Duration> {
        let mut last = None;
        for _ in 0..attempts.max(1) {
            self.kill().await;
            self.spawn()?;
            match self.wait_ready(http).await {
                Ok(took) => return Ok(took),
                Err(e) => {
                    eprintln!("{e:#}; starting it again");
                    last = Some(e);
                    sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{} never started", self.spec.name)))
    }
}

/// Whether a Redis on the loopback `port` answers PING.
pub async fn redis_answers(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(pong)) if pong == "PONG"
    )
}

/// Runs FLUSHALL on the Redis at the loopback `port`.
pub async fn redis_flushall(port: u16) -> anyhow::Result<()> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let flush = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await
    };
    tokio::time::timeout(Duration::from_secs(5), flush)
        .await
        .context("FLUSHALL timed out")?
        .context("FLUSHALL")
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs `program args` to completion with `env` and `stdin`, returning its output or failing with it.
pub async fn run_once(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    stdin: &str,
) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes()).await?;
    }
    let out = tokio::time::timeout(READY_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("{} {} timed out", program.display(), args.join(" ")))??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}{}",
            program.display(),
            args.join(" "),
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stacks_keys_are_long_enough_for_production_even_with_a_short_id() {
        for (name, value) in stack_secrets("x") {
            let min = spotcheck_platform::secrets::MIN_KEY_CHARS;
            spotcheck_platform::secrets::check(&name, &value, min).unwrap();
        }
    }

    #[tokio::test]
    async fn a_stopped_process_is_seen_to_have_exited() {
        let dir =
            std::env::temp_dir().join(format!("spotcheck-fault-unit2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut proc = Proc::new(Spec {
            name: "sleeper".into(),
            role: Role::Coordinator { port: 1 },
            program: "sleep".into(),
            args: vec!["30".into()],
            env: vec![],
            log: dir.join("sleeper.log"),
        });
        proc.spawn().unwrap();
        assert!(proc.is_running());
        proc.kill().await;
        assert!(!proc.is_running());
        assert_eq!(proc.starts, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
