//! `memory`: worker-api's resident memory (VmRSS of `/proc/<pid>/status`) when
//! idle, and after thousands of signed-in volunteers have each made an
//! authenticated request (`GET /v1/me`) with a token of their own.

use super::Bench;
use super::report::{Target, Unit};
use super::stack::Stack;
use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Resident memory target per worker-api, MB.
pub const MEMORY_TARGET_MB: f64 = 150.0;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;

/// A `kB` field (`VmRSS`, `VmHWM`) of a `/proc/<pid>/status` text, in MB.
pub fn status_mb(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn read_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_mb(&status, field).with_context(|| format!("{path} has no {field}"))
}

/// The resident memory of every worker-api, MB.
pub fn rss_of(stack: &Stack) -> anyhow::Result<Vec<f64>> {
    field_of(stack, "VmRSS")
}

fn field_of(stack: &Stack, field: &str) -> anyhow::Result<Vec<f64>> {
    stack
        .apis
        .iter()
        .map(|p| {
            let pid = p
                .pid()
                .with_context(|| format!("{} is not running", p.name()))?;
            read_mb(pid, field)
        })
        .collect()
}

/// Megabytes of each replica, e.g. `20.1, 21.4`.
pub fn show(values: &[f64]) -> String {
    let each: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
    each.join(", ")
}

fn max(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(f64::max)
}

/// `memory`: RSS idle (at start), before the requests, and after every
/// volunteer made one; the largest replica's figure is the one reported.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    let before = rss_of(bench.stack)?;
    let urls = bench.stack.api_urls();
    let count = args.memory_volunteers.min(bench.users.volunteers.len());
    let started = std::time::Instant::now();
    let http = &bench.http;
    let results: Vec<Result<(), String>> = futures::stream::iter(0..count)
        .map(|i| {
            let url = format!("{}/v1/me", urls[i % urls.len()]);
            let token = &bench.users.volunteers[i].token;
            async move {
                match http
                    .get(url)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await
                {
                    Ok(resp) if resp.status().is_success() => Ok(()),
                    Ok(resp) => Err(format!("me {}", resp.status().as_u16())),
                    Err(_) => Err("me transport".to_owned()),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let took = started.elapsed();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        *errors.entry(e.clone()).or_default() += 1;
    }
    let ok = results.len() as u64 - errors.values().sum::<u64>();
    // Let the replicas settle what the last requests allocated.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_of(bench.stack)?;
    let peak = field_of(bench.stack, "VmHWM")?;
    eprintln!(
        "bench-cycle: memory: {ok} of {count} volunteers signed in and answered in {:.1} s; \
         worker-api RSS idle {} MB, before {} MB, after {} MB, peak {} MB",
        took.as_secs_f64(),
        show(&bench.idle_rss_mb),
        show(&before),
        show(&after),
        show(&peak)
    );
    let idle = max(&bench.idle_rss_mb);
    let r = &mut *bench.report;
    r.add(
        "memory.idle_mb",
        "memory: worker-api RSS idle",
        Unit::Mb,
        idle,
        None,
    );
    r.add(
        "memory.after_mb",
        &format!("memory: worker-api RSS after {count} volunteers"),
        Unit::Mb,
        max(&after),
        Some(Target::Below(MEMORY_TARGET_MB)),
    );
    r.add(
        "memory.peak_mb",
        "memory: worker-api peak RSS (VmHWM)",
        Unit::Mb,
        max(&peak),
        None,
    );
    r.detail(
        "memory",
        json!({
            "volunteers": count, "answered": ok, "secs": took.as_secs_f64(),
            "idle_mb": bench.idle_rss_mb, "before_mb": before, "after_mb": after, "peak_mb": peak,
            "errors": errors,
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_in_megabytes() {
        let status = "Name:\tworker-api\nVmHWM:\t  204800 kB\nVmRSS:\t   51200 kB\n";
        assert_eq!(status_mb(status, "VmRSS"), Some(50.0));
        assert_eq!(status_mb(status, "VmHWM"), Some(200.0));
        assert_eq!(status_mb(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let mb = read_mb(std::process::id(), "VmRSS").unwrap();
        assert!(mb > 0.0);
    }
}
