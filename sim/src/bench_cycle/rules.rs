//! The staff calls of the benchmark: the sampling rules set through
//! `PUT /v1/staff/sampling-rules`, waited on until every coordinator has them
//! in force, and the JWKS check that the tokens minted here name worker-api's key.

use anyhow::Context;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// How long a coordinator may take to put a new rule version in force.
const POLICY_DEADLINE: Duration = Duration::from_secs(15);

/// Sets uniform sampling at `rate`; returns the new version.
pub async fn set_sampling_rate(
    http: &reqwest::Client,
    api: &str,
    staff_token: &str,
    rate: f64,
) -> anyhow::Result<i64> {
    let body = json!({ "default_rate": rate, "floor_rate": 0.0, "rules": [], "boosts": {} });
    let resp = http
        .put(format!("{api}/v1/staff/sampling-rules"))
        .bearer_auth(staff_token)
        .json(&body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .context("PUT /v1/staff/sampling-rules")?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "PUT /v1/staff/sampling-rules answered {status}: {answer}"
    );
    answer["version"]
        .as_i64()
        .context("the sampling rules answer has no version")
}

/// The rule version a coordinator's `/metrics` says is in force.
fn version_in_force(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("spotcheck_sampling_policy_version "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Waits until every coordinator has `version` (or a newer one) in force;
/// returns whether they all did in time.
pub async fn wait_in_force(
    http: &reqwest::Client,
    metrics_urls: &[String],
    version: i64,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + POLICY_DEADLINE;
    for url in metrics_urls {
        loop {
            let text = match http.get(url).timeout(Duration::from_secs(2)).send().await {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if version_in_force(&text).is_some_and(|v| v >= version) {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(true)
}

/// Checks that worker-api publishes `kid` in its JWKS.
pub async fn check_key_id(http: &reqwest::Client, api: &str, kid: &str) -> anyhow::Result<()> {
    let jwks: Value = http
        .get(format!("{api}/.well-known/jwks.json"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .context("GET /.well-known/jwks.json")?
        .json()
        .await
        .context("reading the JWKS")?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        kids.contains(&kid),
        "worker-api's JWKS lists {kids:?}, not the key id {kid} the benchmark derived"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_in_force_is_read_from_the_prometheus_text() {
        let text = "# TYPE spotcheck_sampling_policy_version gauge\nspotcheck_sampling_policy_version 3\nother 1\n";
        assert_eq!(version_in_force(text), Some(3));
        assert_eq!(version_in_force("nothing"), None);
    }
}
