//! Building and running worker-api: connect, bind, serve, and drain on a signal.

use crate::auth::keys::KeySet;
use crate::auth::password::Hasher;
use crate::auth::tokens::TokenIssuer;
use crate::backoff::SignInBackoff;
use crate::ballot_box::{Announcer, BallotBox, BallotConfig};
use crate::config::Config;
use crate::dispatch::{self, OfferBuffer};
use crate::gold::GoldPool;
use crate::idempotency::Idempotency;
use crate::quota::Quotas;
use crate::ratelimit::RateLimits;
use crate::state::AppState;
use crate::{rejection, routes};
use anyhow::{Context, bail};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use lapin::Connection;
use spotcheck_platform::amqp::{self, Names, ResilientPublisher};
use spotcheck_platform::db;
use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::standing::StandingCache;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// How often the acks of granted offers go out together (see [`crate::acks`]).
const ACK_EVERY: Duration = Duration::from_millis(5);

/// Loads the signing keys: configured files, or a generated key in development only.
pub fn load_keys(config: &Config) -> anyhow::Result<KeySet> {
    let mut keys = match &config.jwt_key_file {
        Some(path) => KeySet::from_pem_file(path)?,
        None if config.is_development() => {
            tracing::warn!(
                "no SPOTCHECK_JWT_KEY_FILE: signing with a generated key (development only)"
            );
            KeySet::generate()?
        }
        None => bail!("SPOTCHECK_JWT_KEY_FILE is required when SPOTCHECK_ENV is not development"),
    };
    for path in &config.jwt_verify_key_files {
        keys.add_verify_file(path)?;
    }
    Ok(keys)
}

/// The router with its middleware, over `state`.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let body_limit = state.config.max_body_bytes;
    routes::router(&state)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(rejection::panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(axum::middleware::map_response(rejection::ensure_problem))
        .layer(compression())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request.id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Gzip for clients that ask for it, on bodies over 1 KiB (the web app's files,
/// lists and exports); a claim or a vote's answer is smaller and goes as it is.
fn compression() -> CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
    CompressionLayer::new().compress_when(
        SizeAbove::new(1024)
            .and(NotForContentType::GRPC)
            .and(NotForContentType::IMAGES)
            .and(NotForContentType::SSE),
    )
}

/// A connected, bound worker-api, ready to serve.
pub struct App {
    listener: TcpListener,
    /// The operator endpoints' own listener, when `/metrics` is not public.
    metrics_listener: Option<TcpListener>,
    state: AppState,
    amqp: Arc<Connection>,
    tasks_queue: String,
}

impl App {
    /// Connects to the services, applies migrations and binds the listener.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        config.prepare()?;
        let keys = load_keys(&config)?;
        let pool = db::connect(
            &config.services.database_url,
            config.services.db_max_connections,
        )
        .await?;
        db::migrate(&pool).await?;
        if let Some((name, password)) = config.admin_bootstrap()? {
            crate::users::bootstrap_admin(&pool, name, password).await?;
        }
        let redis = config.services.connect_redis().await?;
        let name = format!("worker-api:{}", config.services.amqp_namespace);
        let amqp = Arc::new(amqp::connect(&config.services.amqp_url, &name).await?);
        let names = Names::new(&config.services.amqp_namespace);
        let channel = amqp::timed("open channel", amqp.create_channel()).await?;
        amqp::declare_topology(&channel, &names).await?;
        let publisher = ResilientPublisher::new(amqp.clone());
        spotcheck_platform::figures::prometheus();
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding {}", config.http_addr))?;
        let metrics_listener = crate::ops::bind(&config).await?;
        let tokens = TokenIssuer::new(
            keys,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl_secs,
        );
        let quotas = Quotas::new(redis.clone(), &config.services.redis_prefix, &config.limits);
        let prefix = config.services.redis_prefix.clone();
        let leases = LeaseStore::new(redis.clone(), &prefix);
        let ballots = BallotBox::start(
            pool.clone(),
            leases.clone(),
            Announcer {
                publisher: publisher.clone(),
                queue: names.votes_queue(),
            },
            BallotConfig {
                max_batch: config.vote_batch as usize,
                writers: config.vote_writers as usize,
                fence_delay: Duration::from_millis(config.test_fence_delay_ms),
            },
        );
        let tasks = TaskTracker::new();
        let offers = OfferBuffer::new(
            publisher,
            names.tasks_queue(),
            leases.clone(),
            // Half the hold: the reaper gets a hand-back nobody here took
            // before its hold would give it anyway.
            Duration::from_millis(config.handback_hold_ms / 2),
            tasks.clone(),
        );
        let state = AppState::new(crate::state::Handles {
            tasks: tasks.clone(),
            limits: Arc::new(RateLimits::new(&config.limits)),
            quotas,
            hasher: Hasher::new(
                config.edge.hash_slots(),
                Duration::from_millis(config.edge.hash_wait_ms),
            ),
            sign_in: SignInBackoff::new(redis.clone(), &prefix, &config.edge, tasks.clone()),
            standing: StandingCache::new(redis.clone(), &prefix),
            idempotency: Idempotency::new(redis, &prefix),
            ballots,
            gold_pool: GoldPool::unknown(),
            leases,
            offers,
            grants: crate::handback::Grants::default(),
            tokens: Arc::new(tokens),
            pool,
            config: Arc::new(config),
            amqp: amqp.clone(),
            names: names.clone(),
        });
        Ok(Self {
            listener,
            metrics_listener,
            state,
            amqp,
            tasks_queue: names.tasks_queue(),
        })
    }

    /// The address actually bound (port 0 in tests becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address of the operator endpoints, when they have their own listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` resolves: then stops accepting, lets every task
    /// (requests in flight, connections, background loops) finish within the
    /// grace period, and hands unclaimed offers back.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let tasks = self.state.tasks.clone();
        let grace = Duration::from_secs(self.state.config.shutdown_grace_secs);
        let consumer = tasks.spawn(dispatch::run(
            self.amqp.clone(),
            self.tasks_queue.clone(),
            self.state.config.claim_prefetch,
            self.state.offers.clone(),
            cancel.clone(),
        ));
        tasks.spawn(dispatch::ack_loop(
            self.state.offers.clone(),
            ACK_EVERY,
            cancel.clone(),
        ));
        tasks.spawn(dispatch::recycle_loop(
            self.state.offers.clone(),
            Duration::from_secs(self.state.config.offer_max_idle_secs.max(1)),
            cancel.clone(),
        ));
        tasks.spawn(crate::handback::purge_loop(
            self.state.grants.clone(),
            // A grant outlives its lease by then, however it was extended.
            Duration::from_millis(self.state.config.lease_ttl_ms("review") * 4),
            cancel.clone(),
        ));
        tasks.spawn(self.state.gold_pool.clone().refresh_loop(
            self.state.pool.clone(),
            Duration::from_secs(self.state.config.gold_pool_refresh_secs.max(1)),
            cancel.clone(),
        ));
        let operator = self.metrics_listener.map(|listener| {
            let addr = listener.local_addr().ok();
            tracing::info!(addr = ?addr, "operator endpoints serving");
            let app = crate::ops::router(self.state.clone());
            tasks.spawn(spotcheck_platform::ops::serve(
                listener,
                app,
                cancel.clone(),
            ))
        });
        let operator = async move {
            match operator {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        let server = tasks.spawn(crate::serve::serve(
            self.listener,
            router(self.state.clone()),
            crate::serve::Limits::of(&self.state.config),
            tasks.clone(),
            cancel.clone(),
        ));
        tracing::info!(addr = %self.state.config.http_addr, "worker-api serving");
        let mut server = std::pin::pin!(server);
        let mut consumer = std::pin::pin!(consumer);
        let mut operator = std::pin::pin!(operator);
        let failure = tokio::select! {
            () = shutdown => None,
            result = &mut consumer => Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("the offer consumer stopped"),
                Ok(Err(e)) => e.context("the offer consumer failed"),
                Err(e) => anyhow::Error::new(e).context("the offer consumer panicked"),
            }),
            result = &mut server => Some(match result {
                Ok(()) => anyhow::anyhow!("the HTTP server stopped"),
                Err(e) => anyhow::Error::new(e).context("the HTTP server panicked"),
            }),
            result = &mut operator => Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("the operator endpoints stopped"),
                Ok(Err(e)) => e.context("the operator endpoints failed"),
                Err(e) => anyhow::Error::new(e).context("the operator endpoints panicked"),
            }),
        };
        cancel.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = tasks.len(),
                "tasks still running after the grace period; closing anyway"
            );
        }
        // Votes already queued are committed, answered and announced before the
        // connections close.
        if tokio::time::timeout(Duration::from_secs(5), self.state.ballots.stop())
            .await
            .is_err()
        {
            tracing::warn!("vote writers still busy after 5 s; closing anyway");
        }
        // Slots released here and not taken go to the reaper now; granted
        // offers are acked before the connection closes; closing it returns
        // every other unacked offer to the queue.
        let handbacks = self.state.offers.give_up_handbacks().await;
        if handbacks > 0 {
            tracing::info!(handbacks, "gave released slots to the reaper");
        }
        self.state.offers.flush_acks().await;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.amqp.close(200, "shutdown".into()),
        )
        .await;
        self.state.pool.close().await;
        match failure {
            None => {
                tracing::info!("worker-api stopped");
                Ok(())
            }
            Some(e) => Err(e),
        }
    }
}

/// The `create-user` subcommand: reads the password from standard input.
pub async fn create_user_command(
    config: &Config,
    username: &str,
    role: &str,
) -> anyhow::Result<()> {
    let role = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let pool = db::connect(&config.services.database_url, 2).await?;
    db::migrate(&pool).await?;
    let id = crate::users::create_user(&pool, username, password, role).await?;
    println!("created {} {username} with id {id}", role.as_str());
    Ok(())
}

/// The `migrate` subcommand.
pub async fn migrate_only(config: &Config) -> anyhow::Result<()> {
    let pool = db::connect(&config.services.database_url, 2).await?;
    db::migrate(&pool).await?;
    println!("migrations applied");
    Ok(())
}
