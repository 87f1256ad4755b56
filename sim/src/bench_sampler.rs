//! `bench-sampler`: how fast the sampler turns listings into published tasks,
//! beside what RabbitMQ publishes with confirms on the same machine in the same run.
//!
//! Each run empties its scratch world, imports the demo marketplace through
//! `coordinator import`'s own function (store, sample, task and outbox rows in one
//! transaction per batch), relays the outbox with the coordinator's relay until
//! every slot offer is confirmed, then publishes as many slot-offer-sized messages
//! with confirms straight to a quorum queue, batched as the relay batches. The
//! table gives each run and the medians, and the ratio of the two publish rates.

pub mod args;
pub mod phases;
pub mod report;
pub mod scratch;

pub use args::BenchSamplerArgs;

use anyhow::{Context, anyhow};
use coordinator::ingest::Sampler;
use lapin::Channel;
use report::RunFigures;
use scratch::{JsonlFile, Scratch};
use spotcheck_platform::amqp::{self, Publisher, ResilientPublisher, timed};
use spotcheck_shared::capacity::Throttle;
use spotcheck_simulation::demo::generate;
use sqlx::PgPool;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The sampling key of the runs (any fixed key gives a fixed sample).
const SAMPLING_KEY: &[u8] = b"spotcheck-bench-sampler";
/// Round length: the coordinator's default, a day.
const ROUND_SECS: i64 = 86_400;

/// `spotcheck-sim bench-sampler`.
pub async fn run(args: BenchSamplerArgs) -> anyhow::Result<()> {
    args.validate()?;
    let scratch = Scratch::new(&args.database_url, &args.amqp_url);
    let file = JsonlFile::write(&scratch.id, &generate(args.seed, args.listings))?;
    eprintln!(
        "bench-sampler: {} listings, rate {}, {} runs; scratch database and namespace {}",
        args.listings, args.rate, args.runs, scratch.id
    );
    let outcome = tokio::select! {
        measured = tokio::time::timeout(args.max_duration(), measure(&args, &scratch, file.path())) => {
            measured.unwrap_or_else(|_| Err(anyhow!("stopped after --max-secs {}", args.max_secs)))
        }
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(e) => Err(anyhow::Error::new(e).context("listening for Ctrl-C")),
        },
    };
    scratch.remove().await;
    let runs = outcome?;
    println!(
        "sampler benchmark: {} listings a run, uniform sampling rate {}, {} votes a task, \
         {} listings an ingest transaction, {} offers a relay batch, {} runs",
        args.listings, args.rate, args.votes, args.batch, args.relay_batch, args.runs
    );
    print!("{}", report::table(&runs));
    Ok(())
}

/// What the runs share: the scratch world, the broker connection and publishers.
struct Bench<'a> {
    args: &'a BenchSamplerArgs,
    scratch: &'a Scratch,
    channel: Channel,
    relay: ResilientPublisher,
    raw: Publisher,
    sampler: Sampler,
    now_secs: i64,
}

async fn measure(
    args: &BenchSamplerArgs,
    scratch: &Scratch,
    file: &Path,
) -> anyhow::Result<Vec<RunFigures>> {
    let pool = scratch.create_database().await?;
    sqlx::query("INSERT INTO sampling_policies (policy) VALUES ($1)")
        .bind(serde_json::to_value(args.policy())?)
        .execute(&pool)
        .await
        .context("setting the sampling policy")?;
    pool.close().await;
    let conn = amqp::connect(&args.amqp_url, &format!("spotcheck-sim:{}", scratch.id)).await?;
    let conn = Arc::new(conn);
    let channel = timed("open channel", conn.create_channel()).await?;
    scratch.declare(&channel).await?;
    let bench = Bench {
        args,
        scratch,
        channel,
        relay: ResilientPublisher::new(conn.clone()),
        raw: Publisher::open(&conn).await?,
        sampler: Sampler {
            key: SAMPLING_KEY.to_vec(),
            round_secs: ROUND_SECS,
            votes_required: args.votes,
            throttle: Arc::new(RwLock::new(Throttle::none())),
        },
        now_secs: chrono::Utc::now().timestamp(),
    };
    let mut runs = Vec::with_capacity(args.runs);
    for n in 1..=args.runs {
        let f = bench
            .one_run(file)
            .await
            .with_context(|| format!("run {n}"))?;
        eprintln!(
            "run {n}/{}: ingest {:.2} s, relay {:.2} s, raw {:.2} s ({} tasks, {} offers)",
            args.runs,
            f.ingest.as_secs_f64(),
            f.relay.as_secs_f64(),
            f.raw.as_secs_f64(),
            f.tasks,
            f.offers
        );
        runs.push(f);
    }
    let _ = timed("close", conn.close(200, "done".into())).await;
    Ok(runs)
}

impl Bench<'_> {
    /// One run on a pool of its own: `coordinator import` is a process of its own,
    /// and connections kept from the run before would reuse query plans made for the
    /// tables as they were then, before they were emptied.
    async fn one_run(&self, file: &Path) -> anyhow::Result<RunFigures> {
        let pool = self.scratch.connect().await?;
        let figures = self.measure_run(&pool, file).await;
        pool.close().await;
        figures
    }

    async fn measure_run(&self, pool: &PgPool, file: &Path) -> anyhow::Result<RunFigures> {
        let names = self.scratch.names();
        self.scratch.reset(pool, &self.channel).await?;

        let (summary, ingest) =
            phases::ingest(pool, &self.sampler, file, self.args.batch, self.now_secs).await?;
        let listings = summary.ingest.stored;
        anyhow::ensure!(
            listings == self.args.listings as u64 && summary.bad.is_empty(),
            "the import stored {listings} of {} listings",
            self.args.listings
        );
        let tasks = summary.ingest.tasks;
        let offers: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(copies), 0)::bigint FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(pool)
        .await?;
        let offers = offers as u64;
        anyhow::ensure!(
            offers == tasks * self.args.votes as u64,
            "{tasks} tasks left {offers} offers in the outbox"
        );

        let tasks_queue = names.tasks_queue();
        let relay = phases::relay(pool, &self.relay, &names, self.args.relay_batch, offers).await?;
        let queued = Scratch::depth(&self.channel, &tasks_queue).await?;
        anyhow::ensure!(
            queued == offers,
            "{tasks_queue} holds {queued} of {offers} offers"
        );

        // The tasks queue is purged at the next run's start, not now: a purge
        // leaves the broker busy for a moment, which would slow the baseline.
        let raw_queue = self.scratch.raw_queue();
        let messages = phases::offer_like_messages(&raw_queue, offers)?;
        let raw = phases::raw_publish(&self.raw, &messages, self.args.relay_batch as usize).await?;
        let queued = Scratch::depth(&self.channel, &raw_queue).await?;
        anyhow::ensure!(
            queued == offers,
            "{raw_queue} holds {queued} of {offers} messages"
        );
        Ok(RunFigures {
            listings,
            tasks,
            offers,
            ingest,
            relay,
            raw,
        })
    }
}
