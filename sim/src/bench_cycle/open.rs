//! The open loop: claim-and-vote cycles started on a fixed schedule, whatever
//! the answers' pace. Each cycle takes a volunteer of its own from a free list,
//! so in-flight cycles are bounded by the list's size; a start that finds the
//! list empty is dropped, and one that begins well after its slot is late.

use super::load::{Crew, Work, one_cycle};
use super::tally::{Tally, Window, micros};
use crate::stats::LatencySummary;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A start this long after its slot counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(5);
/// How long in-flight cycles may take to finish after the last start.
const FINISH_GRACE: Duration = Duration::from_secs(20);

/// What the schedule itself did in the window.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// Cycles a second asked for.
    pub offered_per_sec: f64,
    /// Starts due in the window.
    pub due: u64,
    /// Of those, started.
    pub started: u64,
    /// Of those, dropped: every volunteer was busy (the in-flight cap).
    pub dropped: u64,
    /// Of those started, begun more than [`LATE_AFTER`] after their slot.
    pub late: u64,
    /// How late starts were.
    pub lateness_ms: Option<LatencySummary>,
}

/// Runs the open loop at `rate` cycles a second with `tokens.len()` volunteers
/// until `window` ends; returns the cycles' tally and the schedule's figures.
pub async fn open_window(
    crew: &Arc<Crew>,
    tokens: Vec<String>,
    rate: f64,
    window: Window,
) -> (Tally, Schedule) {
    let tokens: Arc<Vec<String>> = Arc::new(tokens);
    let mut free: Vec<usize> = (0..tokens.len()).rev().collect();
    let mut cycles: JoinSet<(usize, Tally)> = JoinSet::new();
    let mut total = Tally::default();
    let mut schedule = Schedule {
        offered_per_sec: rate,
        due: 0,
        started: 0,
        dropped: 0,
        late: 0,
        lateness_ms: None,
    };
    let mut lateness_us = Vec::new();
    let t0 = Instant::now();
    for i in 0u64.. {
        let slot = t0 + Duration::from_secs_f64(i as f64 / rate);
        if slot >= window.end {
            break;
        }
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
        while let Some(joined) = cycles.try_join_next() {
            if let Ok((volunteer, tally)) = joined {
                free.push(volunteer);
                total.merge(tally);
            }
        }
        let measured = window.contains(slot);
        schedule.due += u64::from(measured);
        let Some(volunteer) = free.pop() else {
            schedule.dropped += u64::from(measured);
            continue;
        };
        let late = Instant::now().saturating_duration_since(slot);
        if measured {
            schedule.started += 1;
            schedule.late += u64::from(late > LATE_AFTER);
            lateness_us.push(micros(late));
        }
        let (crew, tokens) = (Arc::clone(crew), Arc::clone(&tokens));
        cycles.spawn(async move {
            let mut tally = Tally::default();
            let mut api = crew.api(volunteer);
            let token = &tokens[volunteer];
            one_cycle(&crew, &mut api, token, Work::Vote, &window, &mut tally).await;
            (volunteer, tally)
        });
    }
    let deadline = Instant::now() + FINISH_GRACE;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, cycles.join_next()).await {
        if let Ok((_, tally)) = joined {
            total.merge(tally);
        }
    }
    if !cycles.is_empty() {
        eprintln!(
            "bench-cycle: {} open-loop cycles unfinished {FINISH_GRACE:?} after the last start; aborted",
            cycles.len()
        );
        cycles.abort_all();
    }
    schedule.lateness_ms = LatencySummary::from_micros(&mut lateness_us);
    (total, schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Api;
    use crate::truth::Truth;

    #[tokio::test]
    async fn starts_beyond_the_in_flight_cap_are_dropped_and_nothing_runs_away() {
        // Nothing listens on port 9: every claim fails fast, or hangs until the
        // cap is reached; either way the loop ends with the window.
        let crew = Arc::new(Crew {
            apis: vec![Api::new("http://127.0.0.1:9", 4).unwrap()],
            truth: Arc::new(Truth::default()),
            empty_backoff: Duration::from_millis(1),
        });
        let window = Window::after(Duration::from_millis(50), Duration::from_millis(200));
        let (tally, schedule) = open_window(&crew, vec!["t".into(); 2], 1000.0, window).await;
        assert!(schedule.due >= 150, "{schedule:?}");
        assert_eq!(schedule.due, schedule.started + schedule.dropped);
        assert_eq!(tally.cycles, 0);
    }
}
