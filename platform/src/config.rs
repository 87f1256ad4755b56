//! Service addresses and names, read once from the environment (or flags).

use crate::secrets;
use clap::Args;
use std::path::PathBuf;

/// Where the services are and how this deployment names its keys and queues.
#[derive(Debug, Clone, Args)]
pub struct ServiceConfig {
    /// PostgreSQL connection string.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/spotcheck",
        hide_env_values = true
    )]
    pub database_url: String,
    /// A file holding the PostgreSQL connection string (instead of `DATABASE_URL`).
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Redis connection string.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// A file holding the Redis connection string (instead of `REDIS_URL`).
    #[arg(long, env = "REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// RabbitMQ connection string.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// A file holding the RabbitMQ connection string (instead of `AMQP_URL`).
    #[arg(long, env = "AMQP_URL_FILE")]
    pub amqp_url_file: Option<PathBuf>,
    /// `development` allows generated signing keys and the published default
    /// secrets; anything else requires secrets of the deployment's own.
    #[arg(long, env = "SPOTCHECK_ENV", default_value = "development")]
    pub env: String,
    /// Prefix of exchange and queue names (`<ns>.listings`, `<ns>.tasks`, ...).
    #[arg(long, env = "SPOTCHECK_AMQP_NAMESPACE", default_value = "spotcheck")]
    pub amqp_namespace: String,
    /// Prefix (and Redis Cluster hash tag) of every Redis key.
    #[arg(long, env = "SPOTCHECK_REDIS_PREFIX", default_value = "spotcheck")]
    pub redis_prefix: String,
    /// How long a Redis command may wait for its answer, in milliseconds;
    /// past it the command fails (a request waiting on it answers 503).
    #[arg(long, env = "SPOTCHECK_REDIS_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
    /// Largest number of PostgreSQL connections per process.
    #[arg(long, env = "SPOTCHECK_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Seconds a lease lasts without an extend.
    #[arg(long, env = "SPOTCHECK_LEASE_TTL_SECS", default_value_t = 300)]
    pub lease_ttl_secs: u64,
    /// Seconds a seller has to refute a case (three days by default).
    #[arg(long, env = "SPOTCHECK_REFUTATION_WINDOW_SECS", default_value_t = 259_200,
          value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
    pub refutation_window_secs: i64,
    /// Outside production only: a file holding seconds to add to the clock of
    /// deadlines (refutation windows, review holds), so tests need not wait.
    #[arg(long, env = "SPOTCHECK_CLOCK_OFFSET_FILE")]
    pub clock_offset_file: Option<std::path::PathBuf>,
    /// The key of the volunteer pseudonyms in analysts' exports (at least 32
    /// random bytes; keep it for the deployment's life, or pseudonyms change).
    /// Unset outside development, exports with pseudonyms are refused.
    #[arg(
        long,
        env = "SPOTCHECK_PSEUDONYM_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub pseudonym_key: String,
    /// A file holding `SPOTCHECK_PSEUDONYM_KEY`.
    #[arg(long, env = "SPOTCHECK_PSEUDONYM_KEY_FILE")]
    pub pseudonym_key_file: Option<PathBuf>,
}

impl ServiceConfig {
    /// One Redis connection, multiplexed and reconnecting, whose commands fail
    /// after `SPOTCHECK_REDIS_TIMEOUT_MS`.
    pub async fn connect_redis(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        use anyhow::Context;
        let client = redis::Client::open(self.redis_url.as_str()).context("parsing REDIS_URL")?;
        let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(
            std::time::Duration::from_millis(self.redis_timeout_ms),
        ));
        redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .context("connecting to Redis")
    }

    /// Whether this is a development deployment.
    pub fn is_development(&self) -> bool {
        secrets::is_development(&self.env)
    }

    /// The clock of deadlines.
    pub fn clock(&self) -> crate::clock::Clock {
        match &self.clock_offset_file {
            Some(path) => crate::clock::Clock::offset_by_file(path.clone()),
            None => crate::clock::Clock::system(),
        }
    }

    /// The pseudonyms of exports: under the configured key, or under a fixed
    /// development key in development; `None` when production set no key.
    pub fn pseudonyms(&self) -> Option<spotcheck_shared::export::Pseudonyms> {
        use spotcheck_shared::export::Pseudonyms;
        match self.pseudonym_key.as_str() {
            "" if self.is_development() => {
                Some(Pseudonyms::new(b"spotcheck development pseudonyms"))
            }
            "" => None,
            key => Some(Pseudonyms::new(key.as_bytes())),
        }
    }

    /// Refuses settings meant for tests outside development.
    pub fn check_production(&self) -> anyhow::Result<()> {
        if !self.is_development() && self.clock_offset_file.is_some() {
            anyhow::bail!(
                "SPOTCHECK_CLOCK_OFFSET_FILE moves the clock of deadlines and is refused when SPOTCHECK_ENV is not development"
            );
        }
        Ok(())
    }

    /// Reads the connection strings given as `..._FILE` paths.
    pub fn read_secret_files(&mut self) -> anyhow::Result<()> {
        secrets::take_file(
            "DATABASE_URL",
            &mut self.database_url,
            &mut self.database_url_file,
        )?;
        secrets::take_file("REDIS_URL", &mut self.redis_url, &mut self.redis_url_file)?;
        secrets::take_file("AMQP_URL", &mut self.amqp_url, &mut self.amqp_url_file)?;
        secrets::take_file(
            "SPOTCHECK_PSEUDONYM_KEY",
            &mut self.pseudonym_key,
            &mut self.pseudonym_key_file,
        )?;
        Ok(())
    }
}
