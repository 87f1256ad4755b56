//! How long the coordinator's periodic jobs take a run: its
//! `spotcheck_job_seconds{job}` histogram is scraped every 200 ms while a
//! measurement lasts, and the differences between scrapes give each job's
//! runs, mean and longest run over exactly that period.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Every periodic job of the coordinator, as its histogram labels it.
pub const JOBS: [&str; 7] = [
    "gauges",
    "capacity",
    "round_sweep",
    "reaper",
    "lease_audit",
    "deadline_sweep",
    "recalibration",
];
/// Jobs that report a rate of their own instead of keeping under the per-run limit.
pub const OWN_RATE: [&str; 2] = ["round_sweep", "recalibration"];
/// Shorter than any job's pause (the reaper's is 250 ms), so that two scrapes
/// rarely hold more than one run of a job and the longest run is exact.
const SCRAPE_EVERY: Duration = Duration::from_millis(200);

/// Count and sum of every job's histogram in one scrape.
pub type Scrape = BTreeMap<String, (f64, f64)>;

/// Reads the `_count` and `_sum` of `spotcheck_job_seconds` by job from Prometheus text.
pub fn parse(text: &str) -> Scrape {
    let mut jobs = Scrape::new();
    for line in text.lines() {
        let (field, rest) = if let Some(rest) = line.strip_prefix("spotcheck_job_seconds_count{") {
            (0, rest)
        } else if let Some(rest) = line.strip_prefix("spotcheck_job_seconds_sum{") {
            (1, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let job = labels
            .split_once("job=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(job, _)| job);
        let (Some(job), Ok(value)) = (job, value.trim().parse::<f64>()) else {
            continue;
        };
        let entry = jobs.entry(job.to_owned()).or_default();
        if field == 0 {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    jobs
}

/// What one job did over a watched period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct JobFigures {
    /// Runs that finished.
    pub runs: u64,
    /// Their total duration, seconds.
    pub total_secs: f64,
    /// Mean duration of a run, ms.
    pub mean_ms: Option<f64>,
    /// Longest run, ms (when two runs fall between two scrapes, their mean).
    pub max_ms: Option<f64>,
}

/// The differences between consecutive scrapes, accumulated by job.
#[derive(Debug, Default)]
pub struct Tally {
    last: Option<Scrape>,
    jobs: BTreeMap<String, JobFigures>,
}

impl Tally {
    /// Takes one scrape in; the first is the baseline. A job missing from the
    /// baseline had not run yet; a count that went down means a restart.
    pub fn add(&mut self, now: Scrape) {
        if let Some(last) = &self.last {
            for (job, &(count, sum)) in &now {
                let (count0, sum0) = last.get(job).copied().unwrap_or_default();
                let runs = count - count0;
                if runs < 0.5 {
                    continue;
                }
                let secs = (sum - sum0).max(0.0);
                let f = self.jobs.entry(job.clone()).or_default();
                f.runs += runs.round() as u64;
                f.total_secs += secs;
                let mean_ms = secs / runs * 1000.0;
                f.max_ms = Some(f.max_ms.map_or(mean_ms, |m| m.max(mean_ms)));
                f.mean_ms = Some(f.total_secs / f.runs as f64 * 1000.0);
            }
        }
        self.last = Some(now);
    }

    /// Runs of `job` so far.
    pub fn runs(&self, job: &str) -> u64 {
        self.jobs.get(job).map_or(0, |f| f.runs)
    }

    /// Every job of [`JOBS`] (those that did not run with no runs) and any other seen.
    pub fn figures(&self) -> BTreeMap<String, JobFigures> {
        let mut all = self.jobs.clone();
        for job in JOBS {
            all.entry(job.to_owned()).or_default();
        }
        all
    }
}

/// Scrapes a coordinator's `/metrics` in the background until finished.
pub struct Watch {
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    started: Instant,
}

impl Watch {
    /// Starts scraping `url`; the first scrape is the baseline.
    pub async fn start(http: &reqwest::Client, url: &str) -> Self {
        let tally = Arc::new(Mutex::new(Tally::default()));
        if let Some(first) = scrape(http, url).await {
            lock(&tally).add(first);
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(scraper(
            http.clone(),
            url.to_owned(),
            Arc::clone(&tally),
            stop.clone(),
        ));
        Self {
            tally,
            stop,
            task,
            started: Instant::now(),
        }
    }

    /// Waits until each of `jobs` has run at least once, or `limit` passes.
    pub async fn wait_for(&self, jobs: &[&str], limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if jobs.iter().all(|job| lock(&self.tally).runs(job) > 0) {
                return;
            }
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
    }

    /// Stops scraping after one last scrape; returns each job's figures and how long it watched.
    pub async fn finish(
        self,
        http: &reqwest::Client,
        url: &str,
    ) -> (BTreeMap<String, JobFigures>, f64) {
        self.stop.cancel();
        let _ = self.task.await;
        if let Some(last) = scrape(http, url).await {
            lock(&self.tally).add(last);
        }
        let figures = lock(&self.tally).figures();
        (figures, self.started.elapsed().as_secs_f64())
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn scrape(http: &reqwest::Client, url: &str) -> Option<Scrape> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    Some(parse(&resp.text().await.ok()?))
}

async fn scraper(
    http: reqwest::Client,
    url: String,
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SCRAPE_EVERY) => {}
        }
        // A failed scrape is skipped: the next one covers its interval.
        if let Some(now) = scrape(&http, &url).await {
            lock(&tally).add(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE spotcheck_job_seconds summary
spotcheck_job_seconds{job=\"reaper\",quantile=\"0.99\"} 0.002
spotcheck_job_seconds_sum{job=\"reaper\"} 0.5
spotcheck_job_seconds_count{job=\"reaper\"} 100
spotcheck_job_seconds_sum{job=\"gauges\"} 0.25
spotcheck_job_seconds_count{job=\"gauges\"} 5
spotcheck_jobs_other 3
";

    #[test]
    fn the_count_and_sum_of_every_job_are_read_from_the_text() {
        let jobs = parse(TEXT);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs["reaper"], (100.0, 0.5));
        assert_eq!(jobs["gauges"], (5.0, 0.25));
    }

    #[test]
    fn runs_mean_and_longest_run_come_from_the_differences_between_scrapes() {
        let mut tally = Tally::default();
        tally.add(parse(TEXT));
        let at = |reaper: (f64, f64), recal: Option<(f64, f64)>| {
            let mut s = parse(TEXT);
            s.insert("reaper".into(), reaper);
            if let Some(r) = recal {
                s.insert("recalibration".into(), r);
            }
            s
        };
        tally.add(at((101.0, 0.504), None));
        tally.add(at((103.0, 0.524), Some((1.0, 2.0))));
        // A restart: the counts start again from zero and become the new baseline.
        tally.add(at((1.0, 0.001), Some((0.0, 0.0))));
        tally.add(at((2.0, 0.003), None));
        let f = tally.figures();
        let reaper = f["reaper"];
        assert_eq!(reaper.runs, 4);
        assert!((reaper.max_ms.unwrap() - 10.0).abs() < 1e-9);
        assert!((reaper.mean_ms.unwrap() - 26.0 / 4.0).abs() < 1e-9);
        assert_eq!(f["recalibration"].runs, 1);
        assert_eq!(f["gauges"].runs, 0);
        assert_eq!(f["gauges"].mean_ms, None);
        assert!(JOBS.iter().all(|j| f.contains_key(*j)));
    }
}
