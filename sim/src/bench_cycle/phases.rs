//! The load phases: `closed` (claim then vote, no think time), `claims`
//! (claim then release, Spotcheck beside the in-process baseline, the same
//! client loop for both) and `open` (cycles on a fixed schedule). Each measures
//! the window after its warm-up.

use super::Bench;
use super::baseline;
use super::cpu::CpuUse;
use super::load::{Crew, Work, closed_window};
use super::open::open_window;
use super::prefill::{ensure_slots, settle};
use super::report::{Target, Unit};
use super::tally::{LoadFigures, Window};
use crate::api::Api;
use crate::bench_sampler::scratch::Scratch;
use crate::stats::LatencySummary;
use serde_json::json;
use std::sync::Arc;

/// Claim-and-vote cycles a second the closed loop should reach.
pub const CLOSED_TARGET: f64 = 4_000.0;
/// Claims a second Spotcheck should reach with claim-then-release.
pub const CLAIMS_TARGET: f64 = 10_000.0;
/// Spotcheck's claims/s over the baseline's.
pub const RATIO_TARGET: f64 = 2.0;
/// Open-loop claim p99, ms.
pub const OPEN_CLAIM_P99: f64 = 25.0;
/// Open-loop vote p99, ms.
pub const OPEN_VOTE_P99: f64 = 50.0;
/// Offers kept on the queue for claim-then-release (released slots come back).
const CLAIMS_SLOTS: u64 = 20_000;
/// Rows of the baseline's job table.
const BASELINE_JOBS: i64 = 20_000;

fn p50(s: &Option<LatencySummary>) -> Option<f64> {
    s.as_ref().map(|s| s.p50_ms)
}

fn p99(s: &Option<LatencySummary>) -> Option<f64> {
    s.as_ref().map(|s| s.p99_ms)
}

/// Warns when processes outside the run used the cores during `what`'s window.
pub fn note_cpu(bench: &mut Bench<'_>, what: &str, cpu: Option<&CpuUse>) {
    if let Some(warning) = cpu.and_then(|c| c.disturbance(what)) {
        bench.report.warn(warning);
    }
}

/// Warns when claims came back empty inside a window: the rates then understate.
fn warn_empty(bench: &mut Bench<'_>, phase: &str, f: &LoadFigures) {
    if f.claims_empty > 0 {
        bench.report.warn(format!(
            "{phase}: {} claims answered 204 inside the window (no offer ready); rates leave them out",
            f.claims_empty
        ));
    }
}

/// `closed`: volunteers claim and vote in a closed loop without pause.
pub async fn closed(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    let depth = ensure_slots(bench, args.slots_for(CLOSED_TARGET)).await?;
    settle(bench).await?;
    let crew = bench.crew();
    let tokens = bench.users.tokens(0, args.volunteers);
    let window = Window::after(args.warmup(), args.window());
    let cpu = bench.cpu.over(window);
    let f = closed_window(&crew, tokens, Work::Vote, window)
        .await
        .figures(&window);
    let cpu = cpu.await.ok();
    note_cpu(bench, "closed", cpu.as_ref());
    // Votes the aggregation has not taken yet: whether it keeps up with the votes.
    let votes_queued = Scratch::depth(&bench.channel, &bench.names.votes_queue()).await?;
    eprintln!(
        "bench-cycle: closed: {} volunteers: {}; {votes_queued} vote events queued for aggregation at the end",
        args.volunteers,
        f.line()
    );
    warn_empty(bench, "closed", &f);
    let r = &mut *bench.report;
    r.add(
        "closed.cycles_per_sec",
        &format!("closed ({}): claim-and-vote cycles/s", args.volunteers),
        Unit::PerSec,
        Some(f.cycles_per_sec),
        Some(Target::AtLeast(CLOSED_TARGET)),
    );
    r.add(
        "closed.claim_p50_ms",
        "closed: claim p50",
        Unit::Ms,
        p50(&f.claim_ms),
        None,
    );
    r.add(
        "closed.claim_p99_ms",
        "closed: claim p99",
        Unit::Ms,
        p99(&f.claim_ms),
        None,
    );
    r.add(
        "closed.vote_p50_ms",
        "closed: vote p50",
        Unit::Ms,
        p50(&f.vote_ms),
        None,
    );
    r.add(
        "closed.vote_p99_ms",
        "closed: vote p99",
        Unit::Ms,
        p99(&f.vote_ms),
        None,
    );
    r.add(
        "closed.votes_queued",
        "closed: vote events queued for aggregation at the end",
        Unit::Count,
        Some(votes_queued as f64),
        None,
    );
    r.detail(
        "closed",
        json!({ "queue_depth_before": depth, "votes_queued_after": votes_queued, "figures": f, "errors": f.errors, "cpu": cpu }),
    );
    Ok(())
}

/// `claims`: claim then release at once, against Spotcheck and then the baseline.
pub async fn claims(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    ensure_slots(bench, CLAIMS_SLOTS).await?;
    settle(bench).await?;
    let crew = bench.crew();
    let tokens = bench.users.tokens(0, args.claim_clients);
    let window = Window::after(args.warmup(), args.window());
    let cpu = bench.cpu.over(window);
    let spot = closed_window(&crew, tokens.clone(), Work::Release, window)
        .await
        .figures(&window);
    let spot_cpu = cpu.await.ok();
    note_cpu(bench, "claims (Spotcheck)", spot_cpu.as_ref());
    eprintln!(
        "bench-cycle: claims: Spotcheck, {} clients: {}",
        args.claim_clients,
        spot.line()
    );
    warn_empty(bench, "claims", &spot);
    settle(bench).await?;

    let server = baseline::start(
        &bench.stack.db.url()?,
        &bench.minter,
        BASELINE_JOBS,
        args.db_connections,
    )
    .await?;
    let base_crew = Arc::new(Crew {
        apis: vec![Api::new(&server.url, args.claim_clients + 16)?],
        truth: Arc::clone(&crew.truth),
        empty_backoff: args.empty_backoff(),
    });
    let window = Window::after(args.warmup(), args.window());
    let cpu = bench.cpu.over(window);
    let base = closed_window(&base_crew, tokens, Work::Release, window)
        .await
        .figures(&window);
    let base_cpu = cpu.await.ok();
    note_cpu(bench, "claims (baseline)", base_cpu.as_ref());
    drop(server);
    eprintln!(
        "bench-cycle: claims: baseline (JWT + FOR UPDATE SKIP LOCKED), {} clients: {}",
        args.claim_clients,
        base.line()
    );
    let ratio = spot.claims_per_sec / base.claims_per_sec;
    let r = &mut *bench.report;
    r.add(
        "claims.spotcheck_per_sec",
        &format!("claims ({}): Spotcheck claims/s", args.claim_clients),
        Unit::PerSec,
        Some(spot.claims_per_sec),
        Some(Target::AtLeast(CLAIMS_TARGET)),
    );
    r.add(
        "claims.baseline_per_sec",
        "claims: baseline (SKIP LOCKED) claims/s",
        Unit::PerSec,
        Some(base.claims_per_sec),
        None,
    );
    r.add(
        "claims.ratio",
        "claims: Spotcheck / baseline",
        Unit::Ratio,
        Some(ratio),
        Some(Target::AtLeast(RATIO_TARGET)),
    );
    r.add(
        "claims.claim_p99_ms",
        "claims: Spotcheck claim p99",
        Unit::Ms,
        p99(&spot.claim_ms),
        None,
    );
    r.add(
        "claims.baseline_claim_p99_ms",
        "claims: baseline claim p99",
        Unit::Ms,
        p99(&base.claim_ms),
        None,
    );
    let mut errors = spot.errors.clone();
    errors.extend(
        base.errors
            .iter()
            .map(|(k, n)| (format!("baseline {k}"), *n)),
    );
    r.detail(
        "claims",
        json!({
            "spotcheck": spot, "baseline": base, "errors": errors,
            "spotcheck_cpu": spot_cpu, "baseline_cpu": base_cpu,
        }),
    );
    Ok(())
}

/// `open`: cycles started on a fixed schedule, whatever the answers' pace.
pub async fn open(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    ensure_slots(bench, args.slots_for(args.open_rate)).await?;
    settle(bench).await?;
    let crew = bench.crew();
    let tokens = bench.users.tokens(0, args.open_max_in_flight);
    let window = Window::after(args.warmup(), args.window());
    let cpu = bench.cpu.over(window);
    let (tally, schedule) = open_window(&crew, tokens, args.open_rate, window).await;
    let cpu = cpu.await.ok();
    note_cpu(bench, "open", cpu.as_ref());
    let f = tally.figures(&window);
    eprintln!(
        "bench-cycle: open: {:.0}/s offered, {} due, {} dropped, {} late: {}",
        args.open_rate,
        schedule.due,
        schedule.dropped,
        schedule.late,
        f.line()
    );
    warn_empty(bench, "open", &f);
    let r = &mut *bench.report;
    r.add(
        "open.achieved_per_sec",
        &format!("open ({:.0}/s offered): cycles/s achieved", args.open_rate),
        Unit::PerSec,
        Some(f.cycles_per_sec),
        Some(Target::AtLeast(args.open_rate * 0.99)),
    );
    r.add(
        "open.claim_p99_ms",
        "open: claim p99",
        Unit::Ms,
        p99(&f.claim_ms),
        Some(Target::Below(OPEN_CLAIM_P99)),
    );
    r.add(
        "open.vote_p99_ms",
        "open: vote p99",
        Unit::Ms,
        p99(&f.vote_ms),
        Some(Target::Below(OPEN_VOTE_P99)),
    );
    let dropped = schedule.dropped as f64;
    r.add(
        "open.dropped",
        &format!(
            "open: starts dropped (all {} busy)",
            args.open_max_in_flight
        ),
        Unit::Count,
        Some(dropped),
        None,
    );
    r.add(
        "open.late",
        "open: starts late (> 5 ms)",
        Unit::Count,
        Some(schedule.late as f64),
        None,
    );
    r.detail(
        "open",
        json!({ "schedule": schedule, "figures": f, "errors": f.errors, "cpu": cpu }),
    );
    Ok(())
}
