//! worker-api's configuration: flags or environment variables, read once.

use crate::ratelimit::proxies::{ForwardedHeader, TrustedProxies};
use anyhow::bail;
use clap::{Parser, Subcommand};
use spotcheck_platform::config::ServiceConfig;
use spotcheck_platform::secrets;
use spotcheck_shared::gold_rate::GoldPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command line of the worker-api binary.
#[derive(Debug, Parser)]
#[command(name = "worker-api", version, about = "Spotcheck worker API")]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration.
    #[command(flatten)]
    pub config: Config,
}

/// worker-api's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create a user; the password is read from standard input.
    CreateUser {
        /// Login name.
        #[arg(long)]
        username: String,
        /// `volunteer`, `staff` or `admin`.
        #[arg(long)]
        role: String,
    },
}

/// Typed configuration of one worker-api process.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Service addresses and names.
    #[command(flatten)]
    pub services: ServiceConfig,
    /// Address the HTTP server listens on.
    #[arg(long, env = "SPOTCHECK_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// PEM private key that signs access tokens: Ed25519 (PKCS#8) or P-256
    /// (PKCS#8 or SEC1); its public half is published in the JWKS.
    #[arg(long, env = "SPOTCHECK_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// Extra PEM keys (comma-separated files, public or private, Ed25519 or
    /// P-256) whose tokens are still accepted, for key rotation.
    #[arg(long, env = "SPOTCHECK_JWT_VERIFY_KEY_FILES", value_delimiter = ',')]
    pub jwt_verify_key_files: Vec<PathBuf>,
    /// `iss` of the access tokens.
    #[arg(long, env = "SPOTCHECK_JWT_ISSUER", default_value = "spotcheck")]
    pub jwt_issuer: String,
    /// `aud` of the access tokens.
    #[arg(long, env = "SPOTCHECK_JWT_AUDIENCE", default_value = "spotcheck-api")]
    pub jwt_audience: String,
    /// Access-token lifetime in seconds.
    #[arg(long, env = "SPOTCHECK_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, env = "SPOTCHECK_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 86_400)]
    pub refresh_token_ttl_secs: u64,
    /// Lease TTL of gold tasks in seconds, when it differs from `SPOTCHECK_LEASE_TTL_SECS`.
    #[arg(long, env = "SPOTCHECK_GOLD_LEASE_TTL_SECS")]
    pub gold_lease_ttl_secs: Option<u64>,
    /// Live leases one volunteer may hold at once.
    #[arg(long, env = "SPOTCHECK_MAX_LEASES_PER_VOLUNTEER", default_value_t = 3)]
    pub max_leases_per_volunteer: u32,
    /// Slot offers buffered by this process (the consumer's prefetch).
    #[arg(long, env = "SPOTCHECK_CLAIM_PREFETCH", default_value_t = 256)]
    pub claim_prefetch: u16,
    /// Seconds an offer may wait in this process before it goes back to the queue
    /// (so a replica with few claims does not sit on slots others could fill).
    #[arg(long, env = "SPOTCHECK_OFFER_MAX_IDLE_SECS", default_value_t = 30)]
    pub offer_max_idle_secs: u64,
    /// How long a slot released here is kept for the next claim here (a
    /// hand-back) before the reaper offers it through the queue; 0 sends every
    /// released slot through the reaper.
    #[arg(long, env = "SPOTCHECK_HANDBACK_HOLD_MS", default_value_t = 10_000)]
    pub handback_hold_ms: u64,
    /// Votes one group commit takes at most.
    #[arg(long, env = "SPOTCHECK_VOTE_BATCH", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub vote_batch: u32,
    /// Vote batches committed side by side by this process. One makes the
    /// largest batches, and costs PostgreSQL least a vote: it gave about 9%
    /// more claim-and-vote cycles than two on 2 cores.
    #[arg(long, env = "SPOTCHECK_VOTE_WRITERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub vote_writers: u32,
    /// A pause before each vote batch's fence, in milliseconds: only for tests
    /// of what a slow commit does. Never set it in service.
    #[arg(
        long,
        env = "SPOTCHECK_TEST_FENCE_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub test_fence_delay_ms: u64,
    /// Seconds between reads of whether any gold task exists (a gold task added
    /// through this process is seen at once).
    #[arg(long, env = "SPOTCHECK_GOLD_POOL_REFRESH_SECS", default_value_t = 5)]
    pub gold_pool_refresh_secs: u64,
    /// Votes a task asks for (used to size dry runs of the sampling rules and
    /// the out-of-round tasks complaints open), as the coordinator's default.
    #[arg(long, env = "SPOTCHECK_MIN_VOTES", default_value_t = 2)]
    pub min_votes: u32,
    /// New complaints one brand owner may file in an hour; past it, new ones and
    /// duplicates alike are answered 429 `complaint_rate_limited`.
    #[arg(long, env = "SPOTCHECK_COMPLAINTS_PER_HOUR", default_value_t = 60)]
    pub complaints_per_hour: u32,
    /// Average volunteer time one vote takes, in seconds (converts votes into
    /// volunteer-hours in dry runs).
    #[arg(long, env = "SPOTCHECK_VOTE_SECONDS", default_value_t = 45.0)]
    pub vote_seconds: f64,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "SPOTCHECK_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "SPOTCHECK_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
    pub request_timeout_secs: u64,
    /// Seconds allowed for a graceful shutdown.
    #[arg(long, env = "SPOTCHECK_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// `json` for JSON log lines, anything else for text.
    #[arg(long, env = "SPOTCHECK_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// An admin account made at start when no account has this name (every
    /// replica may try; one creates it). An existing account is left as it is.
    #[arg(long, env = "SPOTCHECK_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// That admin's first password.
    #[arg(long, env = "SPOTCHECK_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// A file holding that password (instead of `SPOTCHECK_ADMIN_PASSWORD`).
    #[arg(long, env = "SPOTCHECK_ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Rate limits and quotas.
    #[command(flatten)]
    pub limits: LimitsConfig,
    /// Gold tasks in the volunteers' streams.
    #[command(flatten)]
    pub gold: GoldConfig,
    /// The HTTP edge: server limits, operator endpoints, sign-in protection.
    #[command(flatten)]
    pub edge: EdgeConfig,
}

/// How gold tasks are mixed in.
#[derive(Debug, Clone, clap::Args)]
pub struct GoldConfig {
    /// Secret of the keyed draw that makes a claim a gold turn; every replica must share it.
    #[arg(
        long = "gold-key",
        env = "SPOTCHECK_GOLD_KEY",
        default_value = "development-gold-key",
        hide_env_values = true
    )]
    pub key: String,
    /// A file holding the gold key (instead of `SPOTCHECK_GOLD_KEY`).
    #[arg(long = "gold-key-file", env = "SPOTCHECK_GOLD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Share of a newcomer's claims that are gold: what the uncertainty of a
    /// volunteer's estimate asks for at most (0 turns gold turns off).
    #[arg(
        long = "gold-start-rate",
        env = "SPOTCHECK_GOLD_START_RATE",
        default_value_t = GoldPolicy::default().ceiling
    )]
    pub start_rate: f64,
    /// The floor: the share of gold anyone keeps getting, however well known.
    #[arg(
        long = "gold-end-rate",
        env = "SPOTCHECK_GOLD_END_RATE",
        default_value_t = GoldPolicy::default().floor
    )]
    pub end_rate: f64,
    /// Whether a vote on a gold task is answered with feedback (right or not, and the answer).
    #[arg(
        long = "gold-feedback",
        env = "SPOTCHECK_GOLD_FEEDBACK",
        default_value_t = false
    )]
    pub feedback: bool,
}

impl GoldConfig {
    /// The gold rule (validated when the service starts): the share of gold
    /// follows what is still unknown about each volunteer, between the end
    /// and the start rate, and rises with their spammer risk. `None` when
    /// gold turns are off (a start rate of 0).
    pub fn policy(&self) -> Option<GoldPolicy> {
        let default = GoldPolicy::default();
        (self.start_rate > 0.0).then(|| GoldPolicy {
            ceiling: self.start_rate,
            floor: self.end_rate,
            // A floor above the default risk ceiling lifts it: equal rates
            // give every volunteer that share of gold.
            risk_ceiling: default.risk_ceiling.max(self.end_rate),
            ..default
        })
    }

    /// Checks the rates: 0 < end rate <= start rate <= 1, or both 0.
    pub fn validate(&self) -> anyhow::Result<()> {
        let valid = match self.policy() {
            Some(policy) => policy.validate().is_ok(),
            None => self.start_rate == 0.0 && self.end_rate == 0.0,
        };
        anyhow::ensure!(
            valid,
            "SPOTCHECK_GOLD_START_RATE and SPOTCHECK_GOLD_END_RATE: need 0 < end rate <= start rate <= 1, or both 0 (no gold turns)"
        );
        Ok(())
    }
}

/// Rate limits (per process) and quotas (across replicas, in Redis).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Claims a minute per volunteer (the whole minute's worth may come at once).
    #[arg(long, env = "SPOTCHECK_RATE_CLAIM_PER_MIN", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_claim_per_min: u32,
    /// Votes a minute per volunteer.
    #[arg(long, env = "SPOTCHECK_RATE_VOTE_PER_MIN", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_vote_per_min: u32,
    /// Requests a minute per signed-in user on every other route.
    #[arg(long, env = "SPOTCHECK_RATE_OTHER_PER_MIN", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_other_per_min: u32,
    /// Sign-in and refresh requests a minute per client address.
    #[arg(long, env = "SPOTCHECK_RATE_AUTH_PER_MIN", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_auth_per_min: u32,
    /// Seconds between prunes of the rate limiters' keyed state.
    #[arg(long, env = "SPOTCHECK_RATE_PRUNE_SECS", default_value_t = 60)]
    pub rate_prune_secs: u64,
    /// Proxies (comma-separated addresses or CIDR blocks) whose `Forwarded`
    /// and `X-Forwarded-For` headers are believed.
    #[arg(long, env = "SPOTCHECK_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// The header those proxies write the client's address in:
    /// `x-forwarded-for` or `forwarded` (RFC 7239). The other is ignored, since
    /// a proxy passes a client's own copy of it through untouched.
    #[arg(long, env = "SPOTCHECK_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeader::XForwardedFor)]
    pub forwarded_header: ForwardedHeader,
    /// Votes per volunteer per UTC day, across all replicas (0: no quota).
    #[arg(long, env = "SPOTCHECK_DAILY_VOTE_QUOTA", default_value_t = 2000)]
    pub daily_vote_quota: u32,
}

impl Config {
    /// Whether logs are JSON lines.
    pub fn json_logs(&self) -> bool {
        self.log_format.eq_ignore_ascii_case("json")
    }

    /// The lease TTL of a task of `kind`, in milliseconds.
    pub fn lease_ttl_ms(&self, kind: &str) -> u64 {
        let secs = match kind {
            "gold" => self
                .gold_lease_ttl_secs
                .unwrap_or(self.services.lease_ttl_secs),
            _ => self.services.lease_ttl_secs,
        };
        secs.max(1) * 1000
    }

    /// Whether this is a development deployment (generated keys allowed).
    pub fn is_development(&self) -> bool {
        self.services.is_development()
    }

    /// Reads every secret given as a file and checks the configuration as a
    /// whole. [`crate::App::build`] calls it before it connects to anything, so
    /// a bad setting stops the process before any listener, loop or consumer.
    pub fn prepare(&mut self) -> anyhow::Result<()> {
        self.services.read_secret_files()?;
        self.services.check_production()?;
        secrets::take_file(
            "SPOTCHECK_GOLD_KEY",
            &mut self.gold.key,
            &mut self.gold.key_file,
        )?;
        secrets::take_optional_file(
            "SPOTCHECK_ADMIN_PASSWORD",
            &mut self.admin_password,
            &mut self.admin_password_file,
        )?;
        self.gold.validate()?;
        let bootstrap = self.admin_bootstrap()?;
        if self.is_development() {
            return Ok(());
        }
        if self.jwt_key_file.is_none() {
            bail!("SPOTCHECK_JWT_KEY_FILE is required when SPOTCHECK_ENV is not development");
        }
        secrets::check("SPOTCHECK_GOLD_KEY", &self.gold.key, secrets::MIN_KEY_CHARS)?;
        if let Some((_, password)) = bootstrap {
            secrets::check(
                "SPOTCHECK_ADMIN_PASSWORD",
                password,
                secrets::MIN_BOOTSTRAP_PASSWORD_CHARS,
            )?;
        }
        Ok(())
    }

    /// The admin account to make at start, if one is asked for: a name needs a
    /// password, and the password must pass the rule every password passes.
    pub fn admin_bootstrap(&self) -> anyhow::Result<Option<(&str, &str)>> {
        let Some(name) = self.admin_username.as_deref() else {
            return Ok(None);
        };
        let Some(password) = self.admin_password.as_deref() else {
            bail!(
                "SPOTCHECK_ADMIN_USERNAME is set without SPOTCHECK_ADMIN_PASSWORD or \
                 SPOTCHECK_ADMIN_PASSWORD_FILE"
            );
        };
        crate::auth::password::check_strength(password)
            .map_err(|why| anyhow::anyhow!("SPOTCHECK_ADMIN_PASSWORD: {why}"))?;
        Ok(Some((name, password)))
    }

    /// The configuration from defaults alone (tests adjust fields).
    pub fn defaults() -> Self {
        Cli::parse_from(["worker-api"]).config
    }
}

/// The HTTP edge: how long a client may take to send a request, how many
/// connections are served at once, where the operator endpoints listen, and
/// how sign-ins are protected (hashing slots, backoff after failures).
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Seconds a client has to send a request's headers, from their first byte.
    #[arg(long, env = "SPOTCHECK_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a request's body has to arrive in full, once its headers are in.
    #[arg(long, env = "SPOTCHECK_HTTP_BODY_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Seconds a connection with no request in progress is kept open.
    #[arg(long, env = "SPOTCHECK_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, env = "SPOTCHECK_HTTP_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Where `/metrics` (and a detailed `/readyz`) is served, apart from the
    /// API. Unset: public `/metrics` in development, `127.0.0.1:9090` otherwise.
    #[arg(long, env = "SPOTCHECK_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Password hashes computed at once by this process (unset: one per core).
    #[arg(long, env = "SPOTCHECK_MAX_CONCURRENT_HASHES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_hashes: Option<u32>,
    /// Milliseconds a sign-in or account creation waits for a hashing slot
    /// before it is answered `503 busy`.
    #[arg(long, env = "SPOTCHECK_HASH_WAIT_MS", default_value_t = 200)]
    pub hash_wait_ms: u64,
    /// Failed sign-ins one client network may make on one account before it
    /// has to wait between attempts.
    #[arg(long, env = "SPOTCHECK_LOGIN_FREE_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_free_failures: u32,
    /// The longest wait between two attempts of one client network on one
    /// account, in seconds (the wait doubles with each failure up to this).
    #[arg(long, env = "SPOTCHECK_LOGIN_BACKOFF_MAX_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_backoff_max_secs: u64,
    /// Failed sign-ins on one account from all clients in one window above
    /// which every client network gets only one failure free on it.
    #[arg(long, env = "SPOTCHECK_LOGIN_ATTEMPTS_PER_ACCOUNT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_attempts_per_account: u32,
    /// Seconds after which failures are forgotten: a client network's on an
    /// account after this long without another, an account's per window.
    #[arg(long, env = "SPOTCHECK_LOGIN_WINDOW_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_window_secs: u64,
}

impl EdgeConfig {
    /// The default private address of the operator endpoints outside development.
    pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";

    /// Where the operator endpoints listen, or `None` when `/metrics` stays on
    /// the public address (development without `SPOTCHECK_METRICS_ADDR` only).
    pub fn metrics_listen(&self, development: bool) -> Option<SocketAddr> {
        match self.metrics_addr {
            Some(addr) => Some(addr),
            None if development => None,
            None => Self::DEFAULT_METRICS_ADDR.parse().ok(),
        }
    }

    /// Password hashes run at once: the setting, or one per core.
    pub fn hash_slots(&self) -> usize {
        self.max_concurrent_hashes.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |n| n.max(1) as usize,
        )
    }
}
