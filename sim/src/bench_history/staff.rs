//! The staff routes that read the whole history, timed: each called a number
//! of times one request after another with a staff token; any answer other
//! than `200` fails the benchmark.

use crate::bench_cycle::tally::micros;
use crate::stats::LatencySummary;
use anyhow::Context;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The routes timed, in the order they are called.
pub const ROUTES: [&str; 4] = [
    "/v1/staff/stats",
    "/v1/staff/prevalence",
    "/v1/staff/escalations",
    "/v1/staff/volunteers",
];
/// Longest a single call may take before the benchmark gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Calls every route of [`ROUTES`] `requests` times; returns their latencies by route.
pub async fn time_routes(
    http: &reqwest::Client,
    api: &str,
    staff_token: &str,
    requests: usize,
) -> anyhow::Result<BTreeMap<String, LatencySummary>> {
    let mut figures = BTreeMap::new();
    for route in ROUTES {
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let sent = Instant::now();
            let resp = http
                .get(format!("{api}{route}"))
                .bearer_auth(staff_token)
                .timeout(CALL_TIMEOUT)
                .send()
                .await
                .with_context(|| format!("GET {route}"))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .with_context(|| format!("reading the answer of GET {route}"))?;
            samples.push(micros(sent.elapsed()));
            anyhow::ensure!(
                status == reqwest::StatusCode::OK,
                "GET {route} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        let summary = LatencySummary::from_micros(&mut samples)
            .with_context(|| format!("no call of {route} was timed"))?;
        figures.insert(route.to_owned(), summary);
    }
    Ok(figures)
}
