//! Service addresses and names, read once from the environment (or flags).

use clap::Args;

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
    /// Redis connection string.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// RabbitMQ connection string.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Prefix of exchange and queue names (`<ns>.listings`, `<ns>.tasks`, ...).
    #[arg(long, env = "SPOTCHECK_AMQP_NAMESPACE", default_value = "spotcheck")]
    pub amqp_namespace: String,
    /// Prefix (and Redis Cluster hash tag) of every Redis key.
    #[arg(long, env = "SPOTCHECK_REDIS_PREFIX", default_value = "spotcheck")]
    pub redis_prefix: String,
    /// Largest number of PostgreSQL connections per process.
    #[arg(long, env = "SPOTCHECK_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Seconds a lease lasts without an extend.
    #[arg(long, env = "SPOTCHECK_LEASE_TTL_SECS", default_value_t = 300)]
    pub lease_ttl_secs: u64,
}
