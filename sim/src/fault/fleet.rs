//! The fleet of one fault run: its redis-server, worker-api replicas and
//! coordinator replicas, configured alike, started in order, restarted when
//! killed or when they stop by themselves (as a supervisor would), and
//! stopped at the end.

use crate::fault::processes::{Proc, Role, Spec, free_port, run_once};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rounds of a hundred years: the next boundary is decades away.
const ONE_ROUND_SECS: &str = "3153600000";
/// Rate limits and quotas are not under test here: lift them far above full speed.
const UNLIMITED: &str = "1000000";
/// PostgreSQL connections per process: four processes and the tests running
/// beside a CI run must stay within the server's 100.
const DB_CONNECTIONS: &str = "5";
/// Attempts at starting a process before the run gives up.
const START_ATTEMPTS: u32 = 3;

/// What every process of the run shares.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Where `coordinator` and `worker-api` are.
    pub bin_dir: PathBuf,
    /// The run's database.
    pub database_url: String,
    /// RabbitMQ.
    pub amqp_url: String,
    /// AMQP namespace and Redis prefix.
    pub namespace: String,
    /// The PEM key worker-api signs with.
    pub key_file: PathBuf,
    /// Lease lifetime in seconds.
    pub lease_ttl_secs: u64,
    /// Votes per task.
    pub min_votes: u32,
    /// The redis-server program.
    pub redis_server: String,
    /// Where logs (and Redis's working files) go.
    pub work_dir: PathBuf,
}

/// Finds the directory with both binaries: `dir` if given, else `target/release`, else `target/debug`.
pub fn bin_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_both = |d: &Path| d.join("coordinator").is_file() && d.join("worker-api").is_file();
    if let Some(d) = dir {
        anyhow::ensure!(
            has_both(d),
            "{} lacks the coordinator and worker-api binaries (cargo build --bins)",
            d.display()
        );
        return Ok(d.to_path_buf());
    }
    ["target/release", "target/debug"]
        .iter()
        .map(PathBuf::from)
        .find(|d| has_both(d))
        .context("no coordinator and worker-api binaries in target/release or target/debug: run `cargo build --release --bins`, or pass --bin-dir")
}

/// Every process of the run.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    redis_port: u16,
    /// The run's redis-server.
    pub redis: Proc,
    /// worker-api replicas.
    pub apis: Vec<Proc>,
    /// Coordinator replicas.
    pub coordinators: Vec<Proc>,
    http: reqwest::Client,
}

impl Fleet {
    /// Plans `apis` worker-api and `coordinators` coordinator processes on free ports; starts nothing.
    pub fn plan(config: FleetConfig, apis: u16, coordinators: u16) -> anyhow::Result<Self> {
        let redis_port = free_port()?;
        let redis = Proc::new(Spec {
            name: "redis".into(),
            role: Role::Redis { port: redis_port },
            program: config.redis_server.clone().into(),
            args: [
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &config.work_dir.to_string_lossy(),
            ]
            .map(str::to_owned)
            .to_vec(),
            env: Vec::new(),
            log: config.work_dir.join("redis.log"),
        });
        let mut fleet = Self {
            redis_port,
            redis,
            apis: Vec::new(),
            coordinators: Vec::new(),
            http: reqwest::Client::new(),
            config,
        };
        for i in 1..=apis {
            let port = free_port()?;
            let spec = fleet.app_spec(&format!("worker-api#{i}"), Role::Api { port });
            fleet.apis.push(Proc::new(spec));
        }
        for i in 1..=coordinators {
            let port = free_port()?;
            let spec = fleet.app_spec(&format!("coordinator#{i}"), Role::Coordinator { port });
            fleet.coordinators.push(Proc::new(spec));
        }
        Ok(fleet)
    }

    /// The port of the run's Redis.
    pub fn redis_port(&self) -> u16 {
        self.redis_port
    }

    /// The loopback address of every worker-api.
    pub fn api_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.apis
            .iter()
            .filter_map(|p| match p.role() {
                Role::Api { port } => Some(std::net::SocketAddr::from(([127, 0, 0, 1], *port))),
                _ => None,
            })
            .collect()
    }

    /// The worker-api base URLs.
    pub fn api_urls(&self) -> Vec<String> {
        self.apis
            .iter()
            .filter_map(|p| match p.role() {
                Role::Api { port } => Some(format!("http://127.0.0.1:{port}")),
                _ => None,
            })
            .collect()
    }

    /// The environment both binaries read.
    fn common_env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        [
            ("DATABASE_URL", c.database_url.clone()),
            (
                "REDIS_URL",
                format!("redis://127.0.0.1:{}/", self.redis_port),
            ),
            ("AMQP_URL", c.amqp_url.clone()),
            ("SPOTCHECK_AMQP_NAMESPACE", c.namespace.clone()),
            ("SPOTCHECK_REDIS_PREFIX", c.namespace.clone()),
            ("SPOTCHECK_LEASE_TTL_SECS", c.lease_ttl_secs.to_string()),
            ("SPOTCHECK_DB_MAX_CONNECTIONS", DB_CONNECTIONS.into()),
            ("SPOTCHECK_SHUTDOWN_GRACE_SECS", "5".into()),
            ("SPOTCHECK_LOG_FORMAT", "text".into()),
            (
                "RUST_LOG",
                "info,sqlx=warn,lapin=warn,tower_http=warn".into(),
            ),
            ("NO_COLOR", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(super::processes::stack_secrets(&c.namespace))
        .collect()
    }

    fn app_spec(&self, name: &str, role: Role) -> Spec {
        let mut env = self.common_env();
        let program = match &role {
            Role::Api { port } => {
                let c = &self.config;
                env.extend(
                    [
                        ("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{port}")),
                        ("SPOTCHECK_ENV", "production".into()),
                        (
                            "SPOTCHECK_JWT_KEY_FILE",
                            c.key_file.to_string_lossy().into_owned(),
                        ),
                        ("SPOTCHECK_RATE_CLAIM_PER_MIN", UNLIMITED.into()),
                        ("SPOTCHECK_RATE_VOTE_PER_MIN", UNLIMITED.into()),
                        ("SPOTCHECK_RATE_OTHER_PER_MIN", UNLIMITED.into()),
                        ("SPOTCHECK_RATE_AUTH_PER_MIN", UNLIMITED.into()),
                        ("SPOTCHECK_DAILY_VOTE_QUOTA", "0".into()),
                        ("SPOTCHECK_LOGIN_ATTEMPTS_PER_ACCOUNT", UNLIMITED.into()),
                        // Its /metrics is private outside development; nobody reads it here.
                        ("SPOTCHECK_METRICS_ADDR", "127.0.0.1:0".into()),
                        // More than one vote writer, so the per-task queues run under faults.
                        ("SPOTCHECK_VOTE_WRITERS", "2".into()),
                    ]
                    .map(|(k, v)| (k.to_owned(), v)),
                );
                "worker-api"
            }
            _ => {
                env.extend(
                    [
                        (
                            "SPOTCHECK_METRICS_ADDR",
                            format!("127.0.0.1:{}", role.port()),
                        ),
                        ("SPOTCHECK_MIN_VOTES", self.config.min_votes.to_string()),
                        ("SPOTCHECK_REAPER_INTERVAL_MS", "500".into()),
                        // A killed worker-api leaves the votes it committed but
                        // had not announced yet; the sweep finds them within the drain.
                        ("SPOTCHECK_VOTE_SWEEP_MS", "1000".into()),
                        ("SPOTCHECK_VOTE_ANNOUNCE_GRACE_MS", "5000".into()),
                        // One surveillance round for the whole run: with daily
                        // rounds a run across midnight UTC re-samples every
                        // listing, and the listing-to-task count no longer holds.
                        ("SPOTCHECK_ROUND_SECS", ONE_ROUND_SECS.into()),
                        // The simulated volunteers answer at once; the speed rule
                        // would stop them all and every task would end uncertain.
                        ("SPOTCHECK_FAST_VOTE_SECS", "0".into()),
                    ]
                    .map(|(k, v)| (k.to_owned(), v)),
                );
                "coordinator"
            }
        };
        let file = name.replace('#', "-");
        Spec {
            name: name.to_owned(),
            role,
            program: self.config.bin_dir.join(program),
            args: Vec::new(),
            env,
            log: self.config.work_dir.join(format!("{file}.log")),
        }
    }

    /// Starts Redis, then applies the migrations and creates the admin
    /// `username` (worker-api's `create-user`, password on standard input).
    pub async fn start_redis_and_admin(
        &mut self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.redis.start_ready(&self.http, START_ATTEMPTS).await?;
        let worker_api = self.config.bin_dir.join("worker-api");
        let args = ["create-user", "--username", username, "--role", "admin"];
        run_once(
            &worker_api,
            &args,
            &self.common_env(),
            &format!("{password}\n"),
        )
        .await?;
        Ok(())
    }

    /// Starts every worker-api and waits until each is ready.
    pub async fn start_apis(&mut self) -> anyhow::Result<()> {
        for api in &mut self.apis {
            api.start_ready(&self.http, START_ATTEMPTS).await?;
        }
        Ok(())
    }

    /// Starts every coordinator and waits until each runs its loops.
    pub async fn start_coordinators(&mut self) -> anyhow::Result<()> {
        for c in &mut self.coordinators {
            c.start_ready(&self.http, START_ATTEMPTS).await?;
        }
        Ok(())
    }

    /// Kills `proc` with SIGKILL and starts it again; returns how long it took to be ready.
    pub async fn kill_and_restart(
        http: &reqwest::Client,
        proc: &mut Proc,
    ) -> anyhow::Result<Duration> {
        proc.kill().await;
        proc.start_ready(http, START_ATTEMPTS).await
    }

    /// The HTTP client used for readiness probes.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Starts again every process that stopped by itself; returns a line per process revived.
    pub async fn revive_exited(&mut self) -> anyhow::Result<Vec<String>> {
        let mut revived = Vec::new();
        let http = self.http.clone();
        let procs = std::iter::once(&mut self.redis)
            .chain(self.apis.iter_mut())
            .chain(self.coordinators.iter_mut());
        for proc in procs {
            if let Some(status) = proc.exited() {
                let took = proc.start_ready(&http, START_ATTEMPTS).await?;
                revived.push(format!(
                    "{} had stopped by itself ({status}); started again, ready in {:.1} s",
                    proc.name(),
                    took.as_secs_f64()
                ));
            }
        }
        Ok(revived)
    }

    /// Makes sure every process runs and is ready (after the faults stop).
    pub async fn ensure_all_ready(&mut self) -> anyhow::Result<()> {
        let http = self.http.clone();
        let procs = std::iter::once(&mut self.redis)
            .chain(self.apis.iter_mut())
            .chain(self.coordinators.iter_mut());
        for proc in procs {
            if !proc.is_running() || proc.wait_ready(&http).await.is_err() {
                proc.start_ready(&http, START_ATTEMPTS).await?;
            }
        }
        Ok(())
    }

    /// Kills every process (apps first, Redis last).
    pub async fn kill_all(&mut self) {
        for proc in self.apis.iter_mut().chain(self.coordinators.iter_mut()) {
            proc.kill().await;
        }
        self.redis.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FleetConfig {
        FleetConfig {
            bin_dir: "bin".into(),
            database_url: "postgres://db/x".into(),
            amqp_url: "amqp://x".into(),
            namespace: "ns_unit".into(),
            key_file: "key.pem".into(),
            lease_ttl_secs: 3,
            min_votes: 3,
            redis_server: "redis-server".into(),
            work_dir: "work".into(),
        }
    }

    #[test]
    fn every_process_gets_the_run_s_namespace_and_its_own_port() {
        let fleet = Fleet::plan(config(), 2, 2).unwrap();
        let urls = fleet.api_urls();
        assert_eq!(urls.len(), 2);
        assert_ne!(urls[0], urls[1]);
        let env = fleet.app_spec("worker-api#9", Role::Api { port: 1 }).env;
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SPOTCHECK_AMQP_NAMESPACE"), Some("ns_unit"));
        assert_eq!(get("SPOTCHECK_ENV"), Some("production"));
        let redis = format!("redis://127.0.0.1:{}/", fleet.redis_port());
        assert_eq!(get("REDIS_URL"), Some(redis.as_str()));
        assert_eq!(fleet.coordinators.len(), 2);
    }
}
