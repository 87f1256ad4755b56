//! The closed-loop clients: each claims, then votes on (or releases) what it
//! got, and claims again at once; an empty claim waits a moment. The same loop
//! drives Spotcheck and the baseline server, which answers the same routes.
//! Each closed-loop client calls over a connection of its own (see
//! [`super::conn`]); the open loop's cycles share the pooled [`Api`] client.

use super::conn::Conn;
use super::tally::{Tally, Window, micros};
use crate::api::{Api, ApiError, Claim};
use crate::truth::Truth;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest pause after a failed call.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long clients may take to finish their last cycle once told to stop.
const FINISH_GRACE: Duration = Duration::from_secs(20);

/// What a client does with a granted claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Vote on it: the volunteer's verdict is the listing's hidden truth.
    Vote,
    /// Release it at once.
    Release,
}

/// What every client of a phase shares.
pub struct Crew {
    /// One client per worker-api replica (or the baseline server).
    pub apis: Vec<Api>,
    /// The hidden truth of every listing generated so far.
    pub truth: Arc<Truth>,
    /// Pause after an empty claim.
    pub empty_backoff: Duration,
}

impl Crew {
    /// The API client `i` talks to.
    pub fn api(&self, i: usize) -> &Api {
        &self.apis[i % self.apis.len()]
    }

    /// The verdict of an honest volunteer on `listing_id`.
    pub fn verdict(&self, listing_id: &str) -> &'static str {
        match self.truth.is_counterfeit(listing_id) {
            Some(true) => "counterfeit",
            _ => "genuine",
        }
    }
}

/// The calls of one cycle, over whichever client makes them.
pub(crate) trait Calls {
    /// Claims a slot: the lease, or `None` when nothing is available.
    async fn claim(&mut self, token: &str) -> Result<Option<Claim>, ApiError>;
    /// Votes `verdict` on the claim.
    async fn vote(&mut self, token: &str, claim: &Claim, verdict: &str) -> Result<(), ApiError>;
    /// Releases the claim.
    async fn release(&mut self, token: &str, claim: &Claim) -> Result<(), ApiError>;
}

impl Calls for &Api {
    async fn claim(&mut self, token: &str) -> Result<Option<Claim>, ApiError> {
        Api::claim(self, token).await
    }
    async fn vote(&mut self, token: &str, claim: &Claim, verdict: &str) -> Result<(), ApiError> {
        Api::vote(self, token, claim, verdict, &[]).await
    }
    async fn release(&mut self, token: &str, claim: &Claim) -> Result<(), ApiError> {
        Api::release(self, token, claim).await
    }
}

impl Calls for Conn {
    async fn claim(&mut self, token: &str) -> Result<Option<Claim>, ApiError> {
        Conn::claim(self, token).await
    }
    async fn vote(&mut self, token: &str, claim: &Claim, verdict: &str) -> Result<(), ApiError> {
        Conn::vote(self, token, claim, verdict).await
    }
    async fn release(&mut self, token: &str, claim: &Claim) -> Result<(), ApiError> {
        Conn::release(self, token, claim).await
    }
}

/// Sleeps `pause`, or less when `stop` fires.
pub async fn pause(pause: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        () = stop.cancelled() => {}
    }
}

/// Claims once and, when granted, votes or releases; records into `tally` what
/// completes inside `window`. Returns whether the claim was empty and the
/// pause to take before the next one.
pub(crate) async fn one_cycle(
    crew: &Crew,
    api: &mut impl Calls,
    token: &str,
    work: Work,
    window: &Window,
    tally: &mut Tally,
) -> Option<Duration> {
    let sent = Instant::now();
    let claim = match api.claim(token).await {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            if window.contains(Instant::now()) {
                tally.empty += 1;
            }
            return Some(crew.empty_backoff);
        }
        Err(e) => {
            if window.contains(Instant::now()) {
                tally.error("claim", &e);
            }
            return Some(e.backoff().min(MAX_ERROR_PAUSE));
        }
    };
    let claimed = Instant::now();
    if window.contains(claimed) {
        tally.granted += 1;
        tally.claim_us.push(micros(claimed - sent));
    }
    finish(crew, api, token, work, &claim, window, tally).await
}

async fn finish(
    crew: &Crew,
    api: &mut impl Calls,
    token: &str,
    work: Work,
    claim: &Claim,
    window: &Window,
    tally: &mut Tally,
) -> Option<Duration> {
    let sent = Instant::now();
    let (call, result) = match work {
        Work::Vote => {
            let verdict = crew.verdict(&claim.listing.listing_id);
            ("vote", api.vote(token, claim, verdict).await)
        }
        Work::Release => ("release", api.release(token, claim).await),
    };
    let done = Instant::now();
    if !window.contains(done) {
        return result.err().map(|e| e.backoff().min(MAX_ERROR_PAUSE));
    }
    match result {
        Ok(()) => {
            tally.cycles += 1;
            let us = micros(done - sent);
            match work {
                Work::Vote => tally.vote_us.push(us),
                Work::Release => tally.release_us.push(us),
            }
            None
        }
        Err(e) => {
            tally.error(call, &e);
            Some(e.backoff().min(MAX_ERROR_PAUSE))
        }
    }
}

/// One client's loop until `stop`; its current cycle is finished first.
async fn client(
    crew: Arc<Crew>,
    i: usize,
    token: String,
    work: Work,
    window: Window,
    stop: CancellationToken,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn = Conn::new(crew.api(i).base());
    while !stop.is_cancelled() {
        if let Some(wait) = one_cycle(&crew, &mut conn, &token, work, &window, &mut tally).await {
            pause(wait, &stop).await;
        }
    }
    tally
}

/// Closed-loop clients, one per token, running until their stop token fires.
pub struct ClosedLoop {
    clients: JoinSet<Tally>,
    stop: CancellationToken,
}

impl ClosedLoop {
    /// Starts a client per token; what completes inside `window` is recorded.
    pub fn start(crew: &Arc<Crew>, tokens: Vec<String>, work: Work, window: Window) -> Self {
        let stop = CancellationToken::new();
        let mut clients = JoinSet::new();
        for (i, token) in tokens.into_iter().enumerate() {
            clients.spawn(client(
                Arc::clone(crew),
                i,
                token,
                work,
                window,
                stop.clone(),
            ));
        }
        Self { clients, stop }
    }

    /// Stops the clients, waits for their last cycles (aborting stragglers
    /// after a grace period) and merges their tallies.
    pub async fn finish(mut self) -> Tally {
        self.stop.cancel();
        let mut total = Tally::default();
        let deadline = Instant::now() + FINISH_GRACE;
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline, self.clients.join_next()).await
        {
            if let Ok(tally) = joined {
                total.merge(tally);
            }
        }
        if !self.clients.is_empty() {
            eprintln!(
                "bench-cycle: {} clients still busy {FINISH_GRACE:?} after the stop; aborted",
                self.clients.len()
            );
            self.clients.abort_all();
        }
        total
    }
}

/// Runs closed-loop clients through the warm-up and the window of `window`, then stops them.
pub async fn closed_window(
    crew: &Arc<Crew>,
    tokens: Vec<String>,
    work: Work,
    window: Window,
) -> Tally {
    let run = ClosedLoop::start(crew, tokens, work, window);
    tokio::time::sleep_until(window.end).await;
    run.finish().await
}
