//! `demo`: publish the marketplace, set volunteers to work, report progress from
//! the staff stats, stop when everything is reviewed (or time is up, or Ctrl-C),
//! then score the system's escalations against the hidden truth.

use crate::api::Api;
use crate::cli::DemoArgs;
use crate::feed;
use crate::load::{self, Ending, LoadRun};
use crate::staff;
use crate::stats::{Recorder, Report};
use crate::truth::Score;
use serde::Serialize;
use serde_json::Value;
use spotcheck_simulation::demo::{DemoListing, generate};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

/// How often the demo checks whether every task is closed.
const POLL: Duration = Duration::from_secs(2);

/// Everything the demo found, as written by `--json-report`.
#[derive(Debug, Serialize)]
struct DemoReport {
    ending: String,
    load: Report,
    score: Option<Score>,
    stats: Option<Value>,
}

/// `spotcheck-sim demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (seed, count) = (args.market.seed, args.market.count);
    let listings = generate(seed, count);
    let fakes = listings.iter().filter(|d| d.counterfeit).count();
    println!("demo marketplace: {count} listings, {fakes} counterfeit (seed {seed})");
    if !args.skip_publish {
        feed::publish(&args.amqp, &listings).await?;
    }
    drop(listings);

    let api = Api::new(&args.api.api, args.volunteers + 2)?;
    let rec = Arc::new(Recorder::default());
    let mut staff_session = load::admin_session(&api, &rec, &args.api).await?;
    if args.wait_ingest {
        wait_for_ingest(&api, &rec, &mut staff_session, count).await;
    }
    let gold = gold_listings(seed, args.gold);
    add_gold(&api, &rec, &mut staff_session, &gold).await;
    let gold_ids: HashSet<String> = gold
        .iter()
        .map(|d| d.listing.listing_id.as_str().to_owned())
        .collect();
    let crew = load::crew(
        api.clone(),
        Arc::clone(&rec),
        &args.crew,
        seed,
        count,
        &gold,
    );
    let mut run = LoadRun::start(crew, &staff_session, &args.api, args.volunteers).await?;

    let started = Instant::now();
    let deadline = started + args.crew.duration();
    let report_every = Duration::from_secs(args.report_every.max(1));
    let mut last_report = started;
    let mut poll = interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let ending = loop {
        tokio::select! {
            _ = sleep_until(deadline) => break Ending::Deadline,
            _ = &mut ctrl_c => break Ending::Interrupted,
            _ = run.all_stopped() => break Ending::VolunteersDone,
            _ = poll.tick() => {
                let Some(stats) = staff::stats(&api, &rec, &mut staff_session).await else { continue };
                if last_report.elapsed() >= report_every {
                    last_report = Instant::now();
                    print_progress(started, &rec, &stats);
                }
                if staff::all_closed(&stats, count) {
                    break Ending::AllTasksClosed;
                }
            }
        }
    };
    println!("stopping: {ending:?}");
    let crew = run.crew();
    let load = run.finish().await;

    let stats = staff::stats(&api, &rec, &mut staff_session).await;
    if let Some(stats) = &stats {
        println!("final: {}", staff::summary(stats));
    }
    // Gold answers are tests of the volunteers, not inspections: not scored.
    let reviewed: HashSet<String> = rec
        .voted_listings()
        .into_iter()
        .filter(|id| !gold_ids.contains(id))
        .collect();
    let score = match staff::escalated_listings(&api, &rec, &mut staff_session).await {
        Ok(escalated) => Some(Score::compute(&crew.truth, &escalated, &reviewed)),
        Err(e) => {
            eprintln!("could not read the escalations: {e:#}");
            None
        }
    };
    if let Some(score) = &score {
        print!("{score}");
    }
    println!("{load}");
    if args.enforce_secs > 0 {
        enforce(
            &api,
            &rec,
            &mut staff_session,
            &crew.truth,
            args.enforce_secs,
        )
        .await;
    }
    if let Some(path) = &args.crew.json_report {
        let report = DemoReport {
            ending: format!("{ending:?}"),
            load,
            score,
            stats,
        };
        load::write_json(path, &report)?;
    }
    Ok(())
}

/// Staff decide the escalations (confirm the counterfeits, dismiss the rest),
/// then the demo waits up to `secs` for the refutation windows of the cases
/// opened to run out and their penalties to be issued, and prints the result.
async fn enforce(
    api: &Api,
    rec: &Arc<Recorder>,
    staff_session: &mut crate::session::Session,
    truth: &crate::truth::Truth,
    secs: u64,
) {
    match staff::decide_escalations(api, rec, staff_session, truth).await {
        Ok((confirmed, dismissed)) => println!(
            "staff: {confirmed} escalations confirmed (a case each, seller notified), {dismissed} dismissed"
        ),
        Err(e) => {
            eprintln!("could not decide the escalations: {e:#}");
            return;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let stats = staff::stats(api, rec, staff_session).await;
        let over = stats.as_ref().is_some_and(staff::windows_over);
        if over || Instant::now() >= deadline {
            if let Some(stats) = &stats {
                println!("enforcement: {}", staff::enforcement_summary(stats));
            }
            if !over {
                println!("enforcement: some refutation windows are still running after {secs}s");
            }
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `count` gold listings, half counterfeit and half genuine, from a marketplace
/// of their own (ids never clash with the demo's).
fn gold_listings(seed: u64, count: usize) -> Vec<DemoListing> {
    let pool = generate(seed.wrapping_add(0x601d), count.saturating_mul(40).max(400));
    let half = count / 2;
    let fakes = pool.iter().filter(|d| d.counterfeit).take(count - half);
    let genuine = pool.iter().filter(|d| !d.counterfeit).take(half);
    fakes.chain(genuine).cloned().collect()
}

/// Adds the gold listings through the staff API (already present ones are kept).
async fn add_gold(
    api: &Api,
    rec: &Recorder,
    staff: &mut crate::session::Session,
    gold: &[DemoListing],
) {
    let mut added = 0;
    for item in gold {
        let answer = if item.counterfeit {
            "counterfeit"
        } else {
            "genuine"
        };
        let listing = &item.listing;
        match staff
            .call(api, rec, crate::stats::CallKind::Staff, |t| async move {
                api.add_gold_task(&t, listing, answer).await
            })
            .await
        {
            Ok(()) => added += 1,
            Err(e) => eprintln!("gold task {} not added: {e}", listing.listing_id),
        }
    }
    println!(
        "gold tasks: {added} added ({} counterfeit)",
        gold.iter().filter(|d| d.counterfeit).count()
    );
}

/// Waits until the coordinator has ingested `count` listings.
async fn wait_for_ingest(
    api: &Api,
    rec: &Recorder,
    staff: &mut crate::session::Session,
    count: usize,
) {
    let started = Instant::now();
    loop {
        let ingested = staff::stats(api, rec, staff)
            .await
            .and_then(|s| s["listings"].as_u64())
            .unwrap_or(0);
        if ingested >= count as u64 {
            println!(
                "all {count} listings ingested in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_progress(started: Instant, rec: &Recorder, stats: &Value) {
    let (granted, empty, votes, errors) = rec.counts();
    println!(
        "[{:>5}s] {} || sim: claims {granted}, empty {empty}, votes {votes}, errors {errors}",
        started.elapsed().as_secs(),
        staff::summary(stats)
    );
}
