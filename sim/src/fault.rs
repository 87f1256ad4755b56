//! `fault`: a fault run. It builds an isolated world (its own database, AMQP
//! namespace, redis-server and signing key), starts worker-api and coordinator
//! replicas from their binaries, feeds the demo marketplace and drives
//! volunteers at full speed while it kills and restarts processes, empties or
//! restarts Redis and drops RabbitMQ connections on a schedule; then it drains,
//! checks invariants I1 to I6, reports, and removes everything it made.

pub mod args;
pub mod balancer;
pub mod crowd;
pub mod feeder;
pub mod fleet;
pub mod invariants;
pub mod ledger;
pub mod phases;
pub mod processes;
pub mod report;
pub mod schedule;
pub mod world;

pub use args::{FaultArgs, FaultKind};

use crate::api::Api;
use crate::load::write_json;
use crate::roster::Roster;
use crate::session::Session;
use crate::stats::Recorder;
use crate::truth::Truth;
use anyhow::Context;
use crowd::{Crowd, CrowdRun, Habits};
use fleet::{Fleet, FleetConfig};
use invariants::Snapshot;
use ledger::Ledger;
use phases::{Clock, Run};
use report::FaultReport;
use serde_json::json;
use spotcheck_simulation::demo::generate;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use world::{Database, WorkDir};

/// The admin the run creates with `worker-api create-user`.
const ADMIN: &str = "fault-admin";
/// Prefix of the simulated volunteers' usernames.
const VOLUNTEER_PREFIX: &str = "fault";
/// `spotcheck-sim fault`.
pub async fn run(args: FaultArgs) -> anyhow::Result<()> {
    args.validate()?;
    let bin_dir = fleet::bin_dir(args.bin_dir.as_deref())?;
    let work = WorkDir::create(args.logs.as_deref(), &args.namespace)?;
    let db = Database::new(&args.admin_db_url, &args.db_name);
    println!(
        "fault run: binaries from {}, database {}, namespace {}, logs in {}",
        bin_dir.display(),
        args.db_name,
        args.namespace,
        work.path.display()
    );
    let mut fleet = None;
    let outcome = tokio::select! {
        outcome = run_in(&args, &bin_dir, &work, &db, &mut fleet) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
    };
    let ok = matches!(&outcome, Ok(report) if report.ok);
    // Next to the logs, in case they are kept and nobody saw the output.
    let summary = match &outcome {
        Ok(report) => report.to_string(),
        Err(e) => format!("fault run failed: {e:#}"),
    };
    let _ = std::fs::write(work.file("result.txt"), summary + "\n");
    teardown(&args, &work, &db, fleet.as_mut(), ok).await;
    let report = outcome?;
    println!("{report}");
    if let Some(path) = &args.json_report {
        write_json(path, &report)?;
    }
    anyhow::ensure!(report.ok, "invariants violated");
    Ok(())
}

/// Stops what the run started and removes what it made (the database and
/// logs stay with `--keep`; logs also stay when the run did not pass).
async fn teardown(
    args: &FaultArgs,
    work: &WorkDir,
    db: &Database,
    fleet: Option<&mut Fleet>,
    ok: bool,
) {
    if let Some(fleet) = fleet {
        fleet.kill_all().await;
    }
    if !args.keep
        && let Err(e) = db.drop_it().await
    {
        eprintln!("warning: could not drop database {}: {e:#}", args.db_name);
    }
    if let Err(e) = world::delete_amqp_topology(&args.amqp_url, &args.namespace).await {
        eprintln!(
            "warning: could not delete the queues of {}: {e:#}",
            args.namespace
        );
    }
    if work.finish(args.keep || !ok) {
        println!("logs kept in {}", work.path.display());
    }
}

async fn run_in(
    args: &FaultArgs,
    bin_dir: &Path,
    work: &WorkDir,
    db: &Database,
    slot: &mut Option<Fleet>,
) -> anyhow::Result<FaultReport> {
    let clock = Clock::start();
    db.recreate().await?;
    // Queues left by an interrupted run would hold offers of tasks that no longer exist.
    world::delete_amqp_topology(&args.amqp_url, &args.namespace).await?;
    let key_file = work.file("jwt-key.pem");
    world::write_signing_key(&key_file)?;
    let config = FleetConfig {
        bin_dir: bin_dir.to_path_buf(),
        database_url: db.url()?,
        amqp_url: args.amqp_url.clone(),
        namespace: args.namespace.clone(),
        key_file,
        lease_ttl_secs: args.lease_ttl_secs,
        min_votes: args.min_votes,
        redis_server: args.redis_server.clone(),
        work_dir: work.path.clone(),
    };
    let fleet = slot.insert(Fleet::plan(config, args.apis, args.coordinators)?);
    let admin_password = secret();
    fleet.start_redis_and_admin(ADMIN, &admin_password).await?;
    fleet.start_apis().await?;
    let urls = fleet.api_urls();
    clock.say(format!(
        "redis on :{}; {} worker-api ready at {}",
        fleet.redis_port(),
        urls.len(),
        urls.join(", ")
    ));

    // Dropped when the run ends, which stops the balancer.
    let front_stop = tokio_util::sync::CancellationToken::new();
    let _front_guard = front_stop.clone().drop_guard();
    let (urls, balancer) = match args.front {
        args::Front::Balancer => {
            let backends = fleet.api_addrs();
            let balancer = balancer::start(backends, front_stop).await?;
            clock.say(format!(
                "volunteers reach the {} worker-api through one address, http://{}",
                urls.len(),
                balancer.addr
            ));
            (
                vec![format!("http://{}", balancer.addr)],
                Some(balancer.stats),
            )
        }
        args::Front::RoundRobin => (urls, None),
    };

    let rec = Arc::new(Recorder::default());
    let apis = urls
        .iter()
        .map(|u| match args.front {
            // The manifests put an HTTP ingress in front, which spreads
            // requests one by one; kept-alive connections through a TCP
            // balancer would pin each volunteer to one replica.
            args::Front::Balancer => Api::connection_per_request(u),
            args::Front::RoundRobin => Api::new(u, args.volunteers + 4),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let admin = Session::login(&apis[0], &rec, ADMIN, &admin_password)
        .await
        .context("signing in as the run's admin")?;
    apis[0]
        .put_sampling_rules(admin.access_token(), &json!({ "default_rate": 1.0 }))
        .await
        .context("sampling every listing")?;
    // Started after the rules change, so every coordinator reads the new rules first.
    fleet.start_coordinators().await?;
    clock.say(format!(
        "{} coordinators running; sampling every listing",
        args.coordinators
    ));
    let roster = Roster {
        prefix: VOLUNTEER_PREFIX.into(),
        password: secret(),
        count: args.volunteers,
    };
    let sessions = roster.enlist(&apis[0], &rec, &admin).await?;

    let listings = generate(args.seed, args.listings);
    let listing_ids: Vec<String> = listings
        .iter()
        .map(|d| d.listing.listing_id.as_str().to_owned())
        .collect();
    let crowd = Arc::new(Crowd {
        apis,
        truth: Truth::from_demo(&listings),
        rec,
        ledger: Arc::new(Ledger::default()),
        seed: args.seed,
        habits: Habits {
            abandon_percent: args.abandon_percent,
            release_percent: args.release_percent,
            late_percent: args.late_percent,
            lease_ttl: Duration::from_secs(args.lease_ttl_secs),
        },
        board: Mutex::new(None),
    });
    let pool = spotcheck_platform::db::connect(&db.url()?, 2).await?;
    let published = Arc::new(AtomicUsize::new(0));
    let waves = args.waves();
    let feeding = {
        let (url, ns, n) = (
            args.amqp_url.clone(),
            args.namespace.clone(),
            Arc::clone(&published),
        );
        let over = args.duration();
        AbortOnDropHandle::new(tokio::spawn(async move {
            feeder::feed(&url, &ns, &listings, waves, over, &n).await
        }))
    };
    let volunteers = CrowdRun::start(Arc::clone(&crowd), sessions);
    let load_started = Instant::now();
    clock.say(format!(
        "{} volunteers at work; {} listings published in {waves} waves over {} s; a fault every {} s ({})",
        args.volunteers,
        args.listings,
        args.duration_secs,
        args.fault_every_secs,
        args.kinds().iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    ));

    let mut run = Run {
        args,
        clock,
        pool,
        crowd,
        published,
        unplanned: Vec::new(),
    };
    let faults = run.inject_faults(fleet).await?;
    let published = feeding.await.context("the feed task failed")??;
    run.clock.say(format!(
        "faults stopped after {} injected; making sure every process runs",
        faults.iter().filter(|f| f.injected).count()
    ));
    fleet.ensure_all_ready().await?;
    let drain_started = Instant::now();
    let drained = run.drain(fleet, published).await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    volunteers.finish().await;
    let load = run
        .crowd
        .rec
        .report(args.volunteers, load_started.elapsed());
    run.clock.say(if drained {
        format!("drained in {drain_secs:.1} s; checking the invariants")
    } else {
        format!("tasks still open after {drain_secs:.1} s; checking the invariants")
    });
    let findings = invariants::check(&run.pool, &listing_ids, &run.crowd.ledger)
        .await
        .context("checking the invariants")?;
    let database = Snapshot::read(&run.pool)
        .await
        .context("reading the final figures")?;
    let dead_lettered = world::dead_lettered(&args.amqp_url, &args.namespace)
        .await
        .unwrap_or_default();
    run.pool.close().await;
    let mut report = run.report(
        faults,
        published,
        load,
        drain_secs,
        drained,
        database,
        dead_lettered,
        findings,
    );
    if let Some(stats) = balancer {
        report.balancer_connections = stats.counts();
    }
    Ok(report)
}

/// A random password.
fn secret() -> String {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
