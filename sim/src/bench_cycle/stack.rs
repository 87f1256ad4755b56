//! The benchmark's own stack: a scratch database `benchc_<uuid>` (migrated),
//! an AMQP namespace and a Redis key prefix of the same name, a signing key,
//! and worker-api and coordinator processes started from the release binaries
//! with that configuration; and how all of it is removed again.

use super::args::BenchCycleArgs;
use crate::fault::processes::{Proc, Role, Spec, free_port};
use crate::fault::world::{Database, WorkDir, delete_amqp_topology, write_signing_key};
use anyhow::Context;
use lapin::options::QueueDeleteOptions;
use spotcheck_platform::amqp::{self, timed};
use std::path::{Path, PathBuf};

/// Rate limits are not under test: far above anything the benchmark sends.
const UNLIMITED: &str = "100000000";
/// Attempts at starting a process.
const START_ATTEMPTS: u32 = 2;

/// Where the service binaries are: `--bin-dir`, else beside the running executable.
pub fn bin_dir(chosen: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match chosen {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    crate::fault::fleet::bin_dir(Some(&dir))
}

/// Every part of the stack, planned before anything is started so that a
/// failure at any point still removes what was made.
pub struct Stack {
    /// `benchc_<uuid>` (or another prefix): database, AMQP namespace and Redis prefix.
    pub id: String,
    /// The scratch database.
    pub db: Database,
    /// Logs and the signing key.
    pub work: WorkDir,
    /// worker-api replicas.
    pub apis: Vec<Proc>,
    /// Coordinator replicas.
    pub coordinators: Vec<Proc>,
    /// The RabbitMQ address.
    pub amqp_url: String,
    /// The Redis address.
    pub redis_url: String,
    http: reqwest::Client,
}

impl Stack {
    /// Plans the stack for `args` with the binaries in `bin_dir`; creates only its work directory.
    pub fn plan(args: &BenchCycleArgs, bin_dir: &Path) -> anyhow::Result<Self> {
        Self::plan_named(args, bin_dir, "benchc", &[])
    }

    /// [`Stack::plan`] with the id `<prefix>_<uuid>` and `coordinator_env` set
    /// on top of the coordinators' own configuration.
    pub fn plan_named(
        args: &BenchCycleArgs,
        bin_dir: &Path,
        prefix: &str,
        coordinator_env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let id = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let work = WorkDir::create(None, &id)?;
        let db = Database::new(&args.stack.database_url, &id);
        let mut stack = Self {
            db,
            work,
            apis: Vec::new(),
            coordinators: Vec::new(),
            amqp_url: args.stack.amqp_url.clone(),
            redis_url: args.stack.redis_url.clone(),
            http: reqwest::Client::new(),
            id,
        };
        let common = stack.common_env(args)?;
        for i in 1..=args.api_replicas {
            let port = free_port()?;
            let mut env = common.clone();
            env.extend(pairs(&[
                ("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{port}")),
                ("SPOTCHECK_ENV", "production".into()),
                (
                    "SPOTCHECK_JWT_KEY_FILE",
                    stack.key_file().display().to_string(),
                ),
                ("SPOTCHECK_RATE_CLAIM_PER_MIN", UNLIMITED.into()),
                ("SPOTCHECK_RATE_VOTE_PER_MIN", UNLIMITED.into()),
                ("SPOTCHECK_RATE_OTHER_PER_MIN", UNLIMITED.into()),
                ("SPOTCHECK_RATE_AUTH_PER_MIN", UNLIMITED.into()),
                ("SPOTCHECK_DAILY_VOTE_QUOTA", "0".into()),
                // Its /metrics is private outside development; nobody reads it here.
                ("SPOTCHECK_METRICS_ADDR", "127.0.0.1:0".into()),
                ("SPOTCHECK_MAX_LEASES_PER_VOLUNTEER", "1000".into()),
                ("SPOTCHECK_GOLD_START_RATE", "0".into()),
                ("SPOTCHECK_GOLD_END_RATE", "0".into()),
            ]));
            let spec = stack.spec(&format!("worker-api-{i}"), Role::Api { port }, bin_dir, env);
            stack.apis.push(Proc::new(spec));
        }
        for i in 1..=args.coordinators {
            let port = free_port()?;
            let mut env = common.clone();
            env.extend(pairs(&[
                ("SPOTCHECK_METRICS_ADDR", format!("127.0.0.1:{port}")),
                ("SPOTCHECK_AGGREGATION", args.aggregation.clone()),
                // Simulated volunteers answer at once; the speed rule would stop them counting.
                ("SPOTCHECK_FAST_VOTE_SECS", "0".into()),
                // The ingest phase changes the rules and waits for them to be in force.
                ("SPOTCHECK_POLICY_REFRESH_MS", "500".into()),
            ]));
            env.extend(pairs(coordinator_env));
            let role = Role::Coordinator { port };
            let spec = stack.spec(&format!("coordinator-{i}"), role, bin_dir, env);
            stack.coordinators.push(Proc::new(spec));
        }
        Ok(stack)
    }

    /// The signing key's file.
    pub fn key_file(&self) -> PathBuf {
        self.work.file("jwt-key.pem")
    }

    fn common_env(&self, args: &BenchCycleArgs) -> anyhow::Result<Vec<(String, String)>> {
        Ok(pairs(&[
            ("DATABASE_URL", self.db.url()?),
            ("REDIS_URL", args.stack.redis_url.clone()),
            ("AMQP_URL", args.stack.amqp_url.clone()),
            ("SPOTCHECK_AMQP_NAMESPACE", self.id.clone()),
            ("SPOTCHECK_REDIS_PREFIX", self.id.clone()),
            ("SPOTCHECK_MIN_VOTES", args.votes.to_string()),
            (
                "SPOTCHECK_DB_MAX_CONNECTIONS",
                args.db_connections.to_string(),
            ),
            ("SPOTCHECK_SHUTDOWN_GRACE_SECS", "3".into()),
            ("SPOTCHECK_LOG_FORMAT", "text".into()),
            (
                "RUST_LOG",
                "info,sqlx=warn,lapin=warn,tower_http=warn".into(),
            ),
            ("NO_COLOR", "1".into()),
        ])
        .into_iter()
        .chain(crate::fault::processes::stack_secrets(&self.id))
        .collect())
    }

    fn spec(&self, name: &str, role: Role, bin_dir: &Path, env: Vec<(String, String)>) -> Spec {
        let program = match role {
            Role::Api { .. } => "worker-api",
            _ => "coordinator",
        };
        Spec {
            name: name.to_owned(),
            role,
            program: bin_dir.join(program),
            args: Vec::new(),
            env,
            log: self.work.file(&format!("{name}.log")),
        }
    }

    /// Creates and migrates the database, declares the namespace's topology and
    /// writes the signing key; returns a pool of `connections` on the database.
    pub async fn create_world(&self, connections: u32) -> anyhow::Result<sqlx::PgPool> {
        self.db.recreate().await?;
        let pool = spotcheck_platform::db::connect(&self.db.url()?, connections).await?;
        spotcheck_platform::db::migrate(&pool).await?;
        write_signing_key(&self.key_file())?;
        Ok(pool)
    }

    /// Starts every worker-api and waits until each answers `/readyz`.
    pub async fn start_apis(&mut self) -> anyhow::Result<()> {
        for api in &mut self.apis {
            api.start_ready(&self.http, START_ATTEMPTS).await?;
        }
        Ok(())
    }

    /// Starts every coordinator and waits until each answers `/readyz`.
    pub async fn start_coordinators(&mut self) -> anyhow::Result<()> {
        for c in &mut self.coordinators {
            c.start_ready(&self.http, START_ATTEMPTS).await?;
        }
        Ok(())
    }

    /// The base URL of every worker-api.
    pub fn api_urls(&self) -> Vec<String> {
        self.apis
            .iter()
            .map(|p| format!("http://127.0.0.1:{}", p.role().port()))
            .collect()
    }

    /// The `/metrics` URL of every coordinator.
    pub fn coordinator_metrics(&self) -> Vec<String> {
        self.coordinators
            .iter()
            .map(|p| format!("http://127.0.0.1:{}/metrics", p.role().port()))
            .collect()
    }

    /// The raw baseline's quorum queue.
    pub fn raw_queue(&self) -> String {
        format!("{}.raw-baseline", self.id)
    }

    /// Kills every process and removes the database, the namespace's queues and
    /// exchanges, the Redis keys under the prefix and (unless `keep_logs`) the
    /// work directory; failures are printed, so every part is attempted.
    pub async fn remove(&mut self, keep_logs: bool) {
        for proc in self.apis.iter_mut().chain(self.coordinators.iter_mut()) {
            proc.kill().await;
        }
        if let Err(e) = self.db.drop_it().await {
            eprintln!("warning: could not drop database {}: {e:#}", self.id);
        }
        if let Err(e) = delete_amqp_topology(&self.amqp_url, &self.id).await {
            eprintln!("warning: could not delete the queues of {}: {e:#}", self.id);
        }
        if let Err(e) = self.delete_raw_queue().await {
            eprintln!("warning: could not delete {}: {e:#}", self.raw_queue());
        }
        if let Err(e) = super::services::delete_redis_keys(&self.redis_url, &self.id).await {
            eprintln!(
                "warning: could not delete the Redis keys of {}: {e:#}",
                self.id
            );
        }
        if self.work.finish(keep_logs) {
            eprintln!("bench-cycle: logs kept in {}", self.work.path.display());
        }
    }

    async fn delete_raw_queue(&self) -> anyhow::Result<()> {
        let conn = amqp::connect(&self.amqp_url, "spotcheck-sim-cleanup").await?;
        let channel = timed("open channel", conn.create_channel()).await?;
        let queue = self.raw_queue();
        timed(
            "delete queue",
            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()),
        )
        .await?;
        let _ = timed("close", conn.close(200, "done".into())).await;
        Ok(())
    }
}

fn pairs(items: &[(&str, String)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn every_process_gets_the_scratch_names_and_its_own_port() {
        let argv = ["spotcheck-sim", "bench-cycle", "--api-replicas", "2"];
        let crate::cli::Command::BenchCycle(args) =
            crate::cli::Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not bench-cycle")
        };
        let stack = Stack::plan(&args, Path::new("bin")).unwrap();
        assert!(stack.id.starts_with("benchc_"));
        let urls = stack.api_urls();
        assert_eq!(urls.len(), 2);
        assert_ne!(urls[0], urls[1]);
        assert_eq!(stack.coordinator_metrics().len(), 1);
        assert!(stack.apis.iter().all(|p| p.pid().is_none()));
        assert!(!stack.work.finish(false));
    }
}
