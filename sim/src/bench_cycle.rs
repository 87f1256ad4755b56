//! `bench-cycle`: the claim-and-vote cycle measured end to end on an isolated
//! stack (its own database, AMQP namespace, Redis prefix, worker-api and
//! coordinator processes), phase by phase: closed loop, claims beside a
//! `FOR UPDATE SKIP LOCKED` baseline, open loop, listing-to-decision latency,
//! worker-api memory, feed ingest, and the raw limits of RabbitMQ and Redis in
//! the same run, with who used the cores in each window. It prints a table
//! against targets and an earlier report, writes its own report as JSON, and
//! removes everything it made, also on error, Ctrl-C or `--max-secs`.
//!
//! ```sh
//! cargo build --release -p spotcheck-sim -p worker-api -p coordinator
//! target/release/spotcheck-sim bench-cycle --out after.json --compare before.json
//! ```

pub mod args;
pub mod auth;
pub mod baseline;
pub mod conn;
pub mod cpu;
pub mod flow;
pub mod load;
pub mod memory;
pub mod open;
pub mod phases;
pub mod prefill;
pub mod raw;
pub mod report;
pub mod rules;
pub mod services;
pub mod stack;
pub mod tally;

pub use args::{BenchCycleArgs, Phase};

use crate::api::Api;
use crate::truth::Truth;
use anyhow::{Context, anyhow};
use coordinator::ingest::Sampler;
use lapin::{Channel, Connection};
use load::Crew;
use report::Report;
use serde_json::json;
use spotcheck_platform::amqp::{self, Names, Publisher, declare_topology, timed};
use spotcheck_shared::capacity::Throttle;
use spotcheck_simulation::demo::{DemoListing, generate};
use sqlx::PgPool;
use stack::Stack;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

/// The coordinators' default `SPOTCHECK_SAMPLING_KEY`, so the import samples as they do.
const SAMPLING_KEY: &[u8] = b"development-sampling-key";
/// The coordinators' default `SPOTCHECK_ROUND_SECS`.
pub(crate) const ROUND_SECS: i64 = 86_400;
/// PostgreSQL connections of the benchmark's own pool.
const OWN_CONNECTIONS: u32 = 8;

/// `spotcheck-sim bench-cycle`.
pub async fn run(args: BenchCycleArgs) -> anyhow::Result<()> {
    args.validate()?;
    let previous = args.compare.as_deref().map(Report::read).transpose()?;
    let bin_dir = stack::bin_dir(args.stack.bin_dir.as_deref())?;
    let mut report = Report {
        started_at: chrono::Utc::now().to_rfc3339(),
        ..Report::default()
    };
    let mut slot: Option<Stack> = None;
    let started = Instant::now();
    let outcome = tokio::select! {
        measured = tokio::time::timeout(args.max_duration(), measure(&args, &bin_dir, &mut slot, &mut report)) => {
            measured.unwrap_or_else(|_| Err(anyhow!("stopped after --max-secs {}", args.max_secs)))
        }
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(e) => Err(anyhow::Error::new(e).context("listening for Ctrl-C")),
        },
    };
    if let Some(stack) = slot.as_mut() {
        eprintln!("bench-cycle: removing {}", stack.id);
        stack.remove(args.stack.keep_logs || outcome.is_err()).await;
    }
    if let Err(e) = &outcome {
        report.warn(format!("the run stopped early: {e:#}"));
    }
    report
        .setup
        .insert("total_secs".into(), json!(started.elapsed().as_secs_f64()));
    report.write(&args.out)?;
    println!(
        "\nbench-cycle: {} worker-api, {} coordinator, {} aggregation, warm-up {} s, window {} s, {} cores shared by everything",
        args.api_replicas,
        args.coordinators,
        args.aggregation,
        args.warmup_secs,
        args.window_secs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", report.table(previous.as_ref()));
    println!(
        "report: {}{}",
        args.out.display(),
        args.compare
            .as_ref()
            .map_or(String::new(), |p| format!(" (previous: {})", p.display()))
    );
    outcome
}

async fn measure(
    args: &BenchCycleArgs,
    bin_dir: &Path,
    slot: &mut Option<Stack>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stack = slot.insert(Stack::plan(args, bin_dir)?);
    eprintln!(
        "bench-cycle: binaries from {}; database, namespace and Redis prefix {}",
        bin_dir.display(),
        stack.id
    );
    let mut bench = Bench::start(args, stack, report).await?;
    for phase in args.selected() {
        let started = Instant::now();
        eprintln!("bench-cycle: phase {}", phase.as_str());
        let result = match phase {
            Phase::Closed => phases::closed(&mut bench).await,
            Phase::Claims => phases::claims(&mut bench).await,
            Phase::Open => phases::open(&mut bench).await,
            Phase::Latency => flow::latency(&mut bench).await,
            Phase::Memory => memory::run(&mut bench).await,
            Phase::Ingest => flow::ingest(&mut bench).await,
            Phase::Raw => raw::run(&mut bench).await,
        };
        if let Err(e) = result {
            bench
                .report
                .warn(format!("phase {} failed: {e:#}", phase.as_str()));
        }
        eprintln!(
            "bench-cycle: phase {} took {:.1} s",
            phase.as_str(),
            started.elapsed().as_secs_f64()
        );
    }
    let _ = timed("close", bench.amqp.close(200, "done".into())).await;
    bench.pool.close().await;
    Ok(())
}

/// What every phase works with.
pub struct Bench<'a> {
    /// The command line.
    pub args: &'a BenchCycleArgs,
    /// The stack under test (mutable, so a benchmark can stop and start its processes).
    pub stack: &'a mut Stack,
    /// The report being filled.
    pub report: &'a mut Report,
    /// A pool on the scratch database.
    pub pool: PgPool,
    /// The benchmark's broker connection.
    pub amqp: Connection,
    /// A channel for queue declares and purges.
    pub channel: Channel,
    /// A confirm-mode publisher.
    pub publisher: Publisher,
    /// The namespace's names.
    pub names: Names,
    /// Mints access tokens.
    pub minter: auth::Minter,
    /// The run's accounts.
    pub users: auth::Users,
    /// One client per worker-api replica.
    pub apis: Vec<Api>,
    /// For staff calls, metrics and memory requests.
    pub http: reqwest::Client,
    /// How `coordinator import` samples, for the pre-fill.
    pub sampler: Sampler,
    /// worker-api's resident memory per replica once started, before any load.
    pub idle_rss_mb: Vec<f64>,
    /// Who uses the cores.
    pub cpu: cpu::Watch,
    truth: Truth,
    markets: u64,
}

impl<'a> Bench<'a> {
    /// Builds the world, the accounts and the processes; every listing is sampled.
    pub(crate) async fn start(
        args: &'a BenchCycleArgs,
        stack: &'a mut Stack,
        report: &'a mut Report,
    ) -> anyhow::Result<Self> {
        let pool = stack.create_world(OWN_CONNECTIONS).await?;
        services::check_connections(&pool, args, OWN_CONNECTIONS).await?;
        let names = Names::new(&stack.id);
        let amqp = amqp::connect(&stack.amqp_url, &format!("spotcheck-sim:{}", stack.id)).await?;
        let channel = timed("open channel", amqp.create_channel()).await?;
        declare_topology(&channel, &names).await?;
        let publisher = Publisher::open(&amqp).await?;
        let ttl = i64::try_from(args.max_secs)? + 600;
        let minter = auth::Minter::from_pem_file(&stack.key_file(), ttl)?;
        let users = auth::create_users(&pool, &minter, args.users_needed()).await?;
        stack.start_apis().await.context("starting worker-api")?;
        let http = reqwest::Client::new();
        let urls = stack.api_urls();
        rules::check_key_id(&http, &urls[0], minter.kid()).await?;
        rules::set_sampling_rate(&http, &urls[0], &users.staff.token, 1.0).await?;
        // Started after the rules change, so the coordinators read it first.
        stack
            .start_coordinators()
            .await
            .context("starting the coordinators")?;
        let idle_rss_mb = memory::rss_of(stack)?;
        eprintln!(
            "bench-cycle: {} worker-api at {} and {} coordinator ready; {} volunteers; worker-api idle RSS {} MB",
            urls.len(),
            urls.join(", "),
            stack.coordinators.len(),
            users.volunteers.len(),
            memory::show(&idle_rss_mb)
        );
        let clients = [args.volunteers, args.claim_clients, args.open_max_in_flight];
        let pool_size = clients
            .into_iter()
            .fold(args.latency_volunteers, usize::max)
            + 16;
        let apis = urls
            .iter()
            .map(|u| Api::new(u, pool_size))
            .collect::<anyhow::Result<_>>()?;
        report.setup.extend([
            ("api_replicas".to_owned(), json!(args.api_replicas)),
            ("coordinators".to_owned(), json!(args.coordinators)),
            ("aggregation".to_owned(), json!(args.aggregation)),
            ("votes_per_task".to_owned(), json!(args.votes)),
            ("warmup_secs".to_owned(), json!(args.warmup_secs)),
            ("window_secs".to_owned(), json!(args.window_secs)),
            ("closed_volunteers".to_owned(), json!(args.volunteers)),
            ("claim_clients".to_owned(), json!(args.claim_clients)),
            ("open_rate".to_owned(), json!(args.open_rate)),
            (
                "open_max_in_flight".to_owned(),
                json!(args.open_max_in_flight),
            ),
            ("empty_backoff_ms".to_owned(), json!(args.empty_backoff_ms)),
            (
                "db_connections_per_process".to_owned(),
                json!(args.db_connections),
            ),
            (
                "cores".to_owned(),
                json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
            ),
        ]);
        let cpu = cpu::Watch::new(stack);
        Ok(Self {
            args,
            stack,
            report,
            pool,
            amqp,
            channel,
            publisher,
            names,
            minter,
            users,
            apis,
            http,
            sampler: Sampler {
                key: SAMPLING_KEY.to_vec(),
                round_secs: ROUND_SECS,
                votes_required: i32::try_from(args.votes)?,
                throttle: Arc::new(RwLock::new(Throttle::none())),
            },
            idle_rss_mb,
            cpu,
            truth: Truth::default(),
            markets: 0,
        })
    }

    /// A fresh demo marketplace of `count` listings (ids never used before in
    /// the run), its truth remembered; returns a tag naming it and the listings.
    pub fn next_market(&mut self, count: usize) -> (String, Vec<DemoListing>) {
        let seed = self.args.seed.wrapping_add(self.markets);
        self.markets += 1;
        let listings = generate(seed, count);
        self.truth = std::mem::take(&mut self.truth).with(&listings);
        (format!("market{seed:x}"), listings)
    }

    /// The clients' shared view: the APIs, the truth so far, the empty-claim pause.
    pub fn crew(&self) -> Arc<Crew> {
        Arc::new(Crew {
            apis: self.apis.clone(),
            truth: Arc::new(self.truth.clone()),
            empty_backoff: self.args.empty_backoff(),
        })
    }
}
