//! Building and running the coordinator: connect, declare, spawn the loops,
//! and stop them all on a signal (or when one of them dies).

use crate::config::Config;
use crate::ingest::Sampler;
use crate::policy::PolicyCache;
use crate::{aggregator, capacity, consumer, feed, reaper, relay, rounds};
use anyhow::Context;
use lapin::Connection;
use spotcheck_platform::amqp::{self, Names, ResilientPublisher};
use spotcheck_platform::db;
use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::standing::StandingCache;
use spotcheck_shared::capacity::Throttle;
use sqlx::PgPool;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Opens the pool and applies pending migrations.
pub async fn connect_and_migrate(config: &Config) -> anyhow::Result<PgPool> {
    let pool = db::connect(
        &config.services.database_url,
        config.services.db_max_connections,
    )
    .await?;
    db::migrate(&pool).await?;
    Ok(pool)
}

/// The `migrate` subcommand.
pub async fn migrate_only(config: &Config) -> anyhow::Result<()> {
    connect_and_migrate(config).await?;
    println!("migrations applied");
    Ok(())
}

/// The sampler described by the configuration.
pub fn sampler(config: &Config) -> Sampler {
    Sampler {
        key: config.sampling_key.as_bytes().to_vec(),
        round_secs: config.round_secs,
        votes_required: config.min_votes,
        throttle: Arc::new(RwLock::new(Throttle::none())),
    }
}

/// A connected coordinator, ready to run.
pub struct App {
    config: Config,
    pool: PgPool,
    amqp: Arc<Connection>,
    publisher: ResilientPublisher,
    leases: LeaseStore,
    standing: StandingCache,
    ops_listener: tokio::net::TcpListener,
}

impl App {
    /// Connects to PostgreSQL (migrating), Redis and RabbitMQ and declares the topology.
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        config.prepare()?;
        config.partition_upkeep()?;
        let pool = connect_and_migrate(&config).await?;
        let redis = config.services.connect_redis().await?;
        let leases = LeaseStore::new(redis.clone(), &config.services.redis_prefix);
        let standing = StandingCache::new(redis, &config.services.redis_prefix);
        let name = format!("coordinator:{}", config.services.amqp_namespace);
        let amqp = amqp::connect(&config.services.amqp_url, &name).await?;
        let names = Names::new(&config.services.amqp_namespace);
        let channel = amqp::timed("open channel", amqp.create_channel()).await?;
        amqp::declare_topology(&channel, &names).await?;
        let amqp = Arc::new(amqp);
        let publisher = ResilientPublisher::new(amqp.clone());
        let ops_listener = tokio::net::TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding {}", config.metrics_addr))?;
        spotcheck_platform::figures::prometheus();
        Ok(Self {
            config,
            pool,
            amqp,
            publisher,
            leases,
            standing,
            ops_listener,
        })
    }

    /// The address of the operator endpoints actually bound.
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.ops_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The database pool (tests inspect state through it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs every loop until `shutdown` resolves or a loop dies; then drains
    /// within the grace period and closes the connections.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let cancel = CancellationToken::new();
        let names = Names::new(&self.config.services.amqp_namespace);
        let sampler = Arc::new(sampler(&self.config));
        let policies = PolicyCache::new(
            self.pool.clone(),
            Duration::from_millis(self.config.policy_refresh_ms),
        );
        let mut loops: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

        let (pool, publisher, c) = (self.pool.clone(), self.publisher.clone(), cancel.clone());
        let (n, leases, batch, poll) = (
            names.clone(),
            self.leases.clone(),
            self.config.relay_batch,
            self.config.relay_poll(),
        );
        loops.spawn(async move {
            (
                "outbox relay",
                relay::run(pool, publisher, n, leases, batch, poll, c).await,
            )
        });

        let (pool, p, c) = (self.pool.clone(), policies.clone(), cancel.clone());
        loops.spawn(async move { ("policy refresher", crate::policy::run(p, c).await) });

        let (pool2, s, p, c) = (
            pool.clone(),
            sampler.clone(),
            policies.clone(),
            cancel.clone(),
        );
        let (interval, batch) = (
            Duration::from_millis(self.config.round_sweep_ms),
            self.config.round_sweep_batch,
        );
        loops.spawn(async move {
            (
                "round sweep",
                rounds::run(pool2, s, p, interval, batch, c).await,
            )
        });

        let (throttle, c) = (sampler.throttle.clone(), cancel.clone());
        let (policy, window, interval) = (
            self.config.capacity_policy(),
            self.config.capacity_window_secs,
            Duration::from_millis(self.config.capacity_interval_ms),
        );
        loops.spawn(async move {
            (
                "capacity monitor",
                capacity::run(pool, policy, window, throttle, interval, c).await,
            )
        });

        if self.config.recalibrate_secs > 0 {
            let (pool, c) = (self.pool.clone(), cancel.clone());
            let (every, days) = (
                Duration::from_secs(self.config.recalibrate_secs),
                self.config.recalibrate_days,
            );
            loops.spawn(async move {
                (
                    "recalibration",
                    crate::recalibrate::run(pool, every, days, c).await,
                )
            });
        }

        let (pool, c) = (self.pool.clone(), cancel.clone());
        let upkeep = self.config.partition_upkeep()?;
        loops.spawn(async move {
            crate::retention::run(pool, upkeep, c).await;
            ("partition upkeep", Ok(()))
        });

        let (pool, leases, c) = (self.pool.clone(), self.leases.clone(), cancel.clone());
        let interval = Duration::from_millis(self.config.reaper_interval_ms);
        loops.spawn(async move { ("lease reaper", reaper::run(pool, leases, interval, c).await) });

        let (pool, clock, c) = (
            self.pool.clone(),
            self.config.services.clock(),
            cancel.clone(),
        );
        let interval = Duration::from_millis(self.config.deadline_sweep_ms);
        loops.spawn(async move {
            (
                "deadline sweep",
                crate::deadlines::run(pool, clock, interval, c).await,
            )
        });

        let (pool, leases, c) = (self.pool.clone(), self.leases.clone(), cancel.clone());
        let audit = self.config.audit();
        loops.spawn(async move {
            (
                "lost-slot audit",
                crate::audit::run(pool, leases, audit, c).await,
            )
        });

        let (pool, c) = (self.pool.clone(), cancel.clone());
        let (every, grace) = (
            Duration::from_millis(self.config.vote_sweep_ms),
            Duration::from_millis(self.config.vote_announce_grace_ms),
        );
        loops.spawn(async move {
            (
                "unannounced-vote sweep",
                crate::announce::run(pool, every, grace, c).await,
            )
        });

        let (pool, conn, c, prefetch) = (
            self.pool.clone(),
            self.amqp.clone(),
            cancel.clone(),
            self.config.prefetch,
        );
        let queue = names.ingest_queue();
        let feed_alive = Arc::new(AtomicBool::new(false));
        let alive = feed_alive.clone();
        let batch = consumer::Batching {
            max: self.config.consumer_batch,
            linger: Duration::from_millis(self.config.consumer_linger_ms),
        };
        loops.spawn(async move {
            let handler = |d| feed::handle(&pool, &sampler, &policies, d);
            (
                "listing feed consumer",
                consumer::run_batched(&conn, &queue, prefetch, batch, c, &alive, handler).await,
            )
        });

        let (pool, conn, c) = (self.pool.clone(), self.amqp.clone(), cancel.clone());
        let aggregation = self.config.aggregation()?;
        let queue = names.votes_queue();
        let votes_alive = Arc::new(AtomicBool::new(false));
        let alive = votes_alive.clone();
        let standing = self.standing.clone();
        loops.spawn(async move {
            let handler = |d| aggregator::handle(&pool, &aggregation, &standing, d);
            (
                "vote aggregator",
                consumer::run_batched(&conn, &queue, prefetch, batch, c, &alive, handler).await,
            )
        });

        let ops = crate::ops::Ops {
            pool: self.pool.clone(),
            leases: self.leases.clone(),
            amqp: self.amqp.clone(),
            names: names.clone(),
            consumers: vec![feed_alive, votes_alive],
        };
        let (o, c) = (ops.clone(), cancel.clone());
        loops.spawn(async move { ("gauges", crate::ops::run_gauges(o, c).await) });
        let c = cancel.clone();
        loops.spawn(async move {
            (
                "operator endpoints",
                crate::ops::serve(self.ops_listener, ops, c).await,
            )
        });

        tracing::info!("coordinator running");
        let died = tokio::select! {
            () = shutdown => None,
            Some(joined) = loops.join_next() => Some(joined),
        };
        cancel.cancel();
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        let drained =
            tokio::time::timeout(grace, async { while loops.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("loops did not stop within the grace period; aborting them");
            loops.abort_all();
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.amqp.close(200, "shutdown".into()),
        )
        .await;
        self.pool.close().await;
        match died {
            None => {
                tracing::info!("coordinator stopped");
                Ok(())
            }
            Some(Ok((name, Ok(())))) => anyhow::bail!("{name} stopped unexpectedly"),
            Some(Ok((name, Err(e)))) => Err(e.context(format!("{name} failed"))),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("a coordinator loop panicked")),
        }
    }
}
